//! Every record the engine makes from the shared captures (../shared/pcaps, 78 captures from
//! nDPI and Wireshark test suites) is written, read back with `Record::from_json` and written
//! again: the two lines are the same.

use std::path::PathBuf;

fn shared_pcaps() -> PathBuf {
    // NETVIGIL_SHARED, else ../shared beside the checkout (as CI has it).
    let beside = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared"));
    let dir = std::env::var_os("NETVIGIL_SHARED")
        .map_or(beside, PathBuf::from)
        .join("pcaps");
    assert!(
        dir.is_dir(),
        "{} is missing: set NETVIGIL_SHARED to the directory holding pcaps/",
        dir.display()
    );
    dir
}

#[test]
fn every_record_of_the_shared_captures_round_trips() {
    let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
    let mut files = 0;
    for entry in std::fs::read_dir(shared_pcaps()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.ends_with(".pcap") || name.ends_with(".pcapng")) {
            continue;
        }
        files += 1;
        let data = std::fs::read(&path).unwrap();
        let Ok(mut r) = wire::capture::SliceReader::new(&data) else {
            continue;
        };
        let mut e = engine::Engine::new(engine::EngineConfig::default());
        let mut out = Vec::new();
        while let Some(p) = r.next_packet() {
            let Ok(p) = p else { break };
            e.ingest(
                &engine::Frame {
                    ts: p.ts_nanos,
                    link: p.link,
                    orig_len: p.orig_len,
                    data: p.data,
                },
                &mut out,
            );
        }
        e.finish(&mut out);
        let (mut a, mut b) = (String::new(), String::new());
        for rec in &out {
            a.clear();
            b.clear();
            rec.write_json(&mut a);
            let back = engine::Record::from_json(&a).unwrap_or_else(|err| panic!("{name}: {err}: {a}"));
            back.write_json(&mut b);
            assert_eq!(a, b, "{name}: the line read back writes differently");
            *kinds.entry(rec.type_name()).or_default() += 1;
        }
    }
    assert!(files >= 70, "only {files} captures found");
    eprintln!("round-tripped: {kinds:?}");
    for k in ["flow", "dns", "tls", "quic", "http", "stun", "dhcp"] {
        assert!(
            kinds.get(k).copied().unwrap_or(0) > 0,
            "no {k} record in the captures"
        );
    }
}
