//! Replays the committed fuzz corpora (`fuzz/corpus/<target>`) on stable, with the same checks as
//! the cargo-fuzz targets in `fuzz/fuzz_targets/` (duplicated here on purpose: `fuzz/` is not a
//! workspace member). Each corpus folder must exist and hold at least one file.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use engine::decode::{L4, decode};
use engine::defrag::DefragConfig;
use engine::flow::FlowConfig;
use engine::{Engine, EngineConfig, Frame, Record};
use wire::capture::{LinkType, SliceReader, StreamReader};

const SEC: i64 = 1_000_000_000;

/// Link types picked by the first 2 bytes (big-endian, modulo the length) of a frame input.
const LINKS: [LinkType; 10] = [
    LinkType::ETHERNET,
    LinkType::RAW,
    LinkType::IPV4,
    LinkType::IPV6,
    LinkType::NULL,
    LinkType::LOOP,
    LinkType::LINUX_SLL,
    LinkType::LINUX_SLL2,
    LinkType::NFLOG,
    LinkType(147),
];

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut files: Vec<(PathBuf, Vec<u8>)> = entries
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, bytes)
        })
        .collect();
    assert!(!files.is_empty(), "{}: empty corpus", dir.display());
    files.sort();
    files
}

fn split_link(data: &[u8]) -> Option<(LinkType, &[u8])> {
    let (sel, rest) = data.split_first_chunk::<2>()?;
    Some((LINKS[usize::from(u16::from_be_bytes(*sel)) % LINKS.len()], rest))
}

// ---- capture_reader ----

/// Hands out at most `chunk` bytes per read.
struct Trickle<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.chunk.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

type Outcome = (Vec<(i64, u32, u16, u32, Vec<u8>)>, Option<String>, Option<usize>);

fn read_slice(data: &[u8]) -> Outcome {
    let mut r = match SliceReader::new(data) {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Some(e.to_string()), None),
    };
    let (mut pkts, mut err) = (Vec::new(), None);
    while let Some(p) = r.next_packet() {
        match p {
            Ok(p) => pkts.push((p.ts_nanos, p.interface, p.link.0, p.orig_len, p.data.to_vec())),
            Err(e) => err = Some(e.to_string()),
        }
    }
    assert!(r.next_packet().is_none());
    (pkts, err, r.truncated_tail())
}

fn read_stream(src: impl Read) -> Outcome {
    let mut r = match StreamReader::new(src) {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Some(e.to_string()), None),
    };
    let (mut pkts, mut err) = (Vec::new(), None);
    loop {
        match r.next_packet() {
            Ok(Some(p)) => pkts.push((p.ts_nanos, p.interface, p.link.0, p.orig_len, p.data.to_vec())),
            Ok(None) => break,
            Err(e) => err = Some(e.to_string()),
        }
    }
    assert!(matches!(r.next_packet(), Ok(None)));
    (pkts, err, r.truncated_tail())
}

fn capture_reader(data: &[u8]) {
    let s = read_slice(data);
    assert_eq!(s, read_stream(data), "slice and stream readers disagree");
    let chunk = 1 + data.len() % 7;
    assert_eq!(
        s,
        read_stream(Trickle { data, chunk }),
        "slice and trickled stream disagree"
    );
}

// ---- decode_frame ----

fn decode_frame(data: &[u8]) {
    let Some((link, frame)) = split_link(data) else {
        return;
    };
    let d = decode(link, frame);
    if let Some(a) = d.anomaly {
        assert!(!a.name().is_empty());
    }
    let r = frame.as_ptr_range();
    let within = |p: &[u8]| p.is_empty() || (r.start <= p.as_ptr() && p.as_ptr_range().end <= r.end);
    if let Some(net) = d.net
        && let L4::Tcp { payload, .. } | L4::Udp { payload, .. } | L4::Fragment { payload, .. } = net.l4
    {
        assert!(within(payload), "payload outside the frame");
    }
}

// ---- engine_frames ----

fn small_config() -> EngineConfig {
    EngineConfig {
        flows: FlowConfig {
            max_flows: 8,
            tcp_handshake_timeout: 5 * SEC,
            tcp_established_timeout: 30 * SEC,
            tcp_closing_timeout: 10 * SEC,
            tcp_closed_timeout: 2 * SEC,
            udp_timeout: 10 * SEC,
            other_timeout: 5 * SEC,
        },
        defrag: DefragConfig {
            max_bytes: 4096,
            max_datagrams: 4,
            timeout_nanos: 3 * SEC,
            max_datagram_len: 16384,
        },
        report_new_flows: true,
        sample_bytes: 64,
        // Gateway mode on: the LAN device tracker reads every Ethernet frame too.
        lan: Some(engine::lan::LanConfig::default()),
    }
}

fn check(e: &Engine, records: &[Record]) {
    let c = e.flow_counters();
    assert_eq!(c.created, c.expired + c.evicted + c.flushed + c.live, "{c:?}");
    assert!(c.live <= 8 && c.peak_live <= 8, "{c:?}");
    assert_eq!(
        records.iter().filter(|r| matches!(r, Record::Flow(_))).count() as u64,
        c.expired + c.evicted + c.flushed,
        "{c:?}"
    );
    let packets: u64 = records
        .iter()
        .filter_map(|r| match r {
            Record::Flow(f) => Some(f.to_server.packets + f.to_client.packets),
            _ => None,
        })
        .sum();
    assert!(
        packets <= e.stats().frames,
        "{packets} packets from {:?}",
        e.stats()
    );
}

/// `[link: 2 bytes]` then frames as `[time step: 1 byte, x 50 ms][length: u16 BE][frame]`.
fn engine_frames(data: &[u8]) {
    let Some((link, mut rest)) = split_link(data) else {
        return;
    };
    let mut engine = Engine::new(small_config());
    let mut records = Vec::new();
    let mut ts = 1_700_000_000 * SEC;
    while let Some((&[step, hi, lo], tail)) = rest.split_first_chunk::<3>() {
        let (frame, next) = tail.split_at(usize::from(u16::from_be_bytes([hi, lo])).min(tail.len()));
        rest = next;
        ts += i64::from(step) * (SEC / 20);
        let f = Frame {
            ts,
            link,
            orig_len: frame.len() as u32,
            data: frame,
        };
        engine.ingest(&f, &mut records);
        check(&engine, &records);
    }
    engine.finish(&mut records);
    check(&engine, &records);
    assert_eq!(engine.flow_counters().live, 0);
}

// ---- json_read ----

/// One JSON line through `Record::from_json`: no panic, and an accepted record is a fixed
/// point of writing and reading.
fn json_read(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = engine::json_read::parse(&text);
    if let Ok(rec) = Record::from_json(&text) {
        let mut once = String::new();
        rec.write_json(&mut once);
        let again = Record::from_json(&once)
            .unwrap_or_else(|e| panic!("a written record does not read back: {e}: {once}"));
        let mut twice = String::new();
        again.write_json(&mut twice);
        assert_eq!(once, twice, "written, read and written again: the line changed");
    }
}

fn replay(target: &str, run: fn(&[u8])) {
    for (path, bytes) in corpus(target) {
        // Captured, and shown with the panic message if this input fails.
        println!("replaying {}", path.display());
        run(&bytes);
    }
}

#[test]
fn capture_reader_corpus() {
    replay("capture_reader", capture_reader);
}

#[test]
fn decode_frame_corpus() {
    replay("decode_frame", decode_frame);
}

#[test]
fn engine_frames_corpus() {
    replay("engine_frames", engine_frames);
}

#[test]
fn json_read_corpus() {
    replay("json_read", json_read);
    // The seeds hold a record of every kind the reader knows.
    let kinds: std::collections::BTreeSet<String> = corpus("json_read")
        .iter()
        .filter_map(|(_, b)| Record::from_json(std::str::from_utf8(b).ok()?).ok())
        .map(|r| {
            let mut s = String::new();
            r.write_json(&mut s);
            let t = s.split("\"type\":\"").nth(1).unwrap_or("");
            t[..t.find('"').unwrap_or(0)].to_string()
        })
        .collect();
    assert_eq!(kinds.len(), 9, "{kinds:?}");
}
