//! Export from a real SQLite store: pcapng of decrypted samples read back with wire's reader
//! (payload, addresses, per-packet comments), JSON lines and CSV.

use std::collections::HashSet;
use std::fs;
use std::net::IpAddr;
use std::path::PathBuf;

use engine::Record;
use store::sqlite::testdata;
use store::{Backend, Batch, Query, Sample, SampleDir, SqliteStore};
use wire::capture::SliceReader;

const T0: i64 = 1_763_780_400_000_000_000;
const SEC: i64 = 1_000_000_000;

fn temp(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let p = std::env::temp_dir().join(format!("nv-export-{tag}-{}-{nanos}", std::process::id()));
    fs::create_dir_all(&p).unwrap();
    p
}

/// The `opt_comment` (code 1) of every Enhanced Packet Block, in file order (little-endian
/// files, as PcapNgWriter writes them).
fn epb_comments(file: &[u8]) -> Vec<Option<String>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 12 <= file.len() {
        let typ = u32::from_le_bytes(file[i..i + 4].try_into().unwrap());
        let len = u32::from_le_bytes(file[i + 4..i + 8].try_into().unwrap()) as usize;
        assert!(len >= 12 && i + len <= file.len(), "bad block at {i}");
        if typ == 6 {
            let body = &file[i + 8..i + len - 4];
            let caplen = u32::from_le_bytes(body[12..16].try_into().unwrap()) as usize;
            let mut o = 20 + caplen.div_ceil(4) * 4;
            let mut comment = None;
            while o + 4 <= body.len() {
                let code = u16::from_le_bytes([body[o], body[o + 1]]);
                let olen = u16::from_le_bytes([body[o + 2], body[o + 3]]) as usize;
                if code == 0 {
                    break;
                }
                if code == 1 {
                    comment = Some(String::from_utf8(body[o + 4..o + 4 + olen].to_vec()).unwrap());
                }
                o += 4 + olen.div_ceil(4) * 4;
            }
            out.push(comment);
        }
        i += len;
    }
    out
}

#[test]
fn pcapng_carries_decrypted_samples_with_comments() {
    let dir = temp("pcapng");
    let mut db = SqliteStore::open_dir(&dir).unwrap();
    let recs = testdata::flows(0, 200, T0, SEC);
    let flows: Vec<engine::FlowRecord> = recs
        .iter()
        .map(|r| match r {
            Record::Flow(f) => f.clone(),
            _ => unreachable!(),
        })
        .collect();
    // Samples of TCP and UDP flows, IPv4 and IPv6, both directions.
    let mut picked = Vec::new();
    for want in [(6u8, false), (6, true), (17, false), (17, true)] {
        let f = flows
            .iter()
            .find(|f| f.proto == want.0 && f.client.ip.is_ipv6() == want.1 && f.app.domain.is_some())
            .unwrap_or_else(|| panic!("no flow like {want:?}"));
        picked.push(f.clone());
    }
    let mut samples = Vec::new();
    for (k, f) in picked.iter().enumerate() {
        for (d, dir) in [SampleDir::ToServer, SampleDir::ToClient].into_iter().enumerate() {
            samples.push(Sample {
                flow_id: f.id,
                flow_start: f.start,
                dir,
                ts: f.start + (d as i64 + 1) * 1000,
                bytes: format!("payload {k} {d} of flow {}", f.id).into_bytes(),
            });
        }
    }
    db.write_batch(&Batch {
        records: recs,
        samples: samples.clone(),
        ..Batch::default()
    })
    .unwrap();

    let mut out = Vec::new();
    let e = store::export::pcapng(&mut db, &Query::default(), &mut out).unwrap();
    assert_eq!(e.packets, 8);
    let comments = epb_comments(&out);
    assert_eq!(comments.len(), 8);
    let mut r = SliceReader::new(&out).unwrap();
    let mut seen = HashSet::new();
    let mut n = 0;
    while let Some(p) = r.next_packet() {
        let p = p.unwrap();
        let comment = comments[n].clone().expect("every packet has a comment");
        n += 1;
        // Which sample is this? Its payload ends the frame.
        let s = samples
            .iter()
            .find(|s| p.data.ends_with(&s.bytes))
            .expect("payload present");
        assert_eq!(p.ts_nanos, s.ts);
        let f = picked.iter().find(|f| f.id == s.flow_id).unwrap();
        let app = f.process.as_ref().map_or("-".to_string(), |p| p.name.clone());
        assert_eq!(
            comment,
            format!(
                "app={app}, domain={}, flow={}, dir={}",
                f.app.domain.as_deref().unwrap(),
                f.id,
                if s.dir == SampleDir::ToServer {
                    "to_server"
                } else {
                    "to_client"
                }
            )
        );
        // The frame decodes to the flow's addresses, in the sample's direction.
        let frame = engine::Frame {
            ts: p.ts_nanos,
            link: p.link,
            orig_len: p.orig_len,
            data: p.data,
        };
        let mut eng = engine::Engine::new(engine::EngineConfig::default());
        let mut out_recs = Vec::new();
        eng.ingest(&frame, &mut out_recs);
        eng.finish(&mut out_recs);
        let got = out_recs
            .iter()
            .find_map(|r| match r {
                Record::Flow(g) => Some(g.clone()),
                _ => None,
            })
            .expect("the frame makes a flow");
        let ends: HashSet<(IpAddr, u16)> =
            [(got.client.ip, got.client.port), (got.server.ip, got.server.port)].into();
        let want: HashSet<(IpAddr, u16)> =
            [(f.client.ip, f.client.port), (f.server.ip, f.server.port)].into();
        assert_eq!(ends, want);
        assert_eq!(got.proto, f.proto);
        seen.insert((s.flow_id, s.dir == SampleDir::ToServer));
    }
    assert_eq!(n, 8);
    assert_eq!(seen.len(), 8);

    // Wireshark's reader agrees, when it is installed (CI installs tshark).
    let file = dir.join("samples.pcapng");
    fs::write(&file, &out).unwrap();
    if let Ok(o) = std::process::Command::new("tshark")
        .args([
            "-r",
            file.to_str().unwrap(),
            "-T",
            "fields",
            "-e",
            "frame.comment",
            "-e",
            "ip.src",
            "-e",
            "ipv6.src",
        ])
        .output()
    {
        assert!(
            o.status.success(),
            "tshark: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let text = String::from_utf8(o.stdout).unwrap();
        let got: Vec<&str> = text.lines().map(|l| l.split('\t').next().unwrap()).collect();
        let want: Vec<&str> = comments.iter().map(|c| c.as_deref().unwrap()).collect();
        assert_eq!(got, want);
    }

    // Filters apply: one host's samples only.
    let host = picked[0].app.domain.clone().unwrap();
    let mut out = Vec::new();
    let e = store::export::pcapng(
        &mut db,
        &Query {
            host: Some(host.clone()),
            ..Query::default()
        },
        &mut out,
    )
    .unwrap();
    let want = picked
        .iter()
        .filter(|f| f.app.domain.as_deref() == Some(host.as_str()))
        .count() as u64
        * 2;
    assert_eq!(e.packets, want);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn jsonl_and_csv_hold_every_record() {
    let dir = temp("jsonl");
    let mut db = SqliteStore::open_dir(&dir).unwrap();
    let recs = testdata::flows(0, 500, T0, SEC);
    db.write_batch(&Batch {
        records: recs.clone(),
        ..Batch::default()
    })
    .unwrap();
    let mut out = Vec::new();
    let e = store::export::jsonl(&mut db, &Query::default(), &mut out).unwrap();
    assert_eq!(e.flows, 500);
    let text = String::from_utf8(out).unwrap();
    let got: Vec<&str> = text.lines().collect();
    let mut want: Vec<(i64, String)> = recs
        .iter()
        .map(|r| {
            let mut s = String::new();
            r.write_json(&mut s);
            let Record::Flow(f) = r else { unreachable!() };
            (f.start, s)
        })
        .collect();
    want.sort();
    assert_eq!(
        got,
        want.iter().map(|w| w.1.as_str()).collect::<Vec<_>>(),
        "oldest first, same bytes"
    );

    let mut out = Vec::new();
    store::export::csv(
        &mut db,
        &Query {
            limit: Some(10),
            ..Query::default()
        },
        &mut out,
    )
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], engine::FlowRecord::CSV_HEADER);
    assert_eq!(lines.len(), 11);
    let newest: Vec<String> = want[490..]
        .iter()
        .map(|(_, j)| {
            let mut row = String::new();
            store::export::csv_row(j, &mut row).unwrap();
            row
        })
        .collect();
    assert_eq!(
        lines[1..],
        newest.iter().map(String::as_str).collect::<Vec<_>>()[..]
    );
    fs::remove_dir_all(&dir).unwrap();
}
