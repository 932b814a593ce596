//! A short capture through one engine: the flow counters must reconcile after every frame and
//! nothing may stay live after `finish`.
//!
//! Input: 2 bytes pick the link type (as in `decode_frame`), then frames, each as
//! `[time step: 1 byte, x 50 ms][length: 2 bytes big-endian][frame]` (the last frame takes
//! what is left when the length runs past the end).
#![no_main]

use engine::defrag::DefragConfig;
use engine::flow::FlowConfig;
use engine::{Engine, EngineConfig, Frame, Record};
use libfuzzer_sys::fuzz_target;
use wire::capture::LinkType;

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

const SEC: i64 = 1_000_000_000;

/// Small tables and short timeouts, so eviction, expiry and defrag caps are reached.
fn config() -> EngineConfig {
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
    assert_eq!(records.iter().filter(|r| matches!(r, Record::Flow(_))).count() as u64, c.expired + c.evicted + c.flushed, "{c:?}");
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

fuzz_target!(|data: &[u8]| {
    let Some((sel, mut rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let link = LINKS[usize::from(u16::from_be_bytes(*sel)) % LINKS.len()];
    let mut engine = Engine::new(config());
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
});
