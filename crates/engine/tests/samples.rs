//! Payload samples (opt-in): the first N bytes of each direction of a flow, kept by the engine
//! until the pipeline takes them with the flow's record.

use std::net::Ipv4Addr;

use engine::{Engine, EngineConfig, Frame, Record};
use wire::capture::LinkType;
use wire::synth::{self, TcpFlags};

const SEC: i64 = 1_000_000_000;

fn frames() -> Vec<(i64, Vec<u8>)> {
    let (c, s) = (Ipv4Addr::new(192, 0, 2, 10), Ipv4Addr::new(198, 51, 100, 7));
    let tcp = |from_client: bool, seq: u32, flags: u8, payload: &[u8]| {
        if from_client {
            synth::tcp_ipv4_frame(c, s, 40000, 8080, seq, 0, flags, payload)
        } else {
            synth::tcp_ipv4_frame(s, c, 8080, 40000, seq, 0, flags, payload)
        }
    };
    vec![
        (SEC, tcp(true, 100, TcpFlags::SYN, &[])),
        (SEC + 1, tcp(false, 500, TcpFlags::SYN | TcpFlags::ACK, &[])),
        (
            SEC + 2,
            tcp(
                true,
                101,
                TcpFlags::ACK | TcpFlags::PSH,
                b"GET /secret HTTP/1.1\r\n",
            ),
        ),
        (
            SEC + 3,
            tcp(
                true,
                123,
                TcpFlags::ACK | TcpFlags::PSH,
                b"Host: example.org\r\n\r\n",
            ),
        ),
        (
            SEC + 4,
            tcp(false, 501, TcpFlags::ACK | TcpFlags::PSH, b"HTTP/1.1 200 OK\r\n"),
        ),
        (SEC + 5, tcp(true, 144, TcpFlags::FIN | TcpFlags::ACK, &[])),
    ]
}

fn run(sample_bytes: usize) -> (Engine, Vec<Record>) {
    let mut e = Engine::new(EngineConfig {
        sample_bytes,
        ..EngineConfig::default()
    });
    let mut out = Vec::new();
    for (ts, f) in frames() {
        e.ingest(
            &Frame {
                ts,
                link: LinkType::ETHERNET,
                orig_len: f.len() as u32,
                data: &f,
            },
            &mut out,
        );
    }
    e.finish(&mut out);
    (e, out)
}

#[test]
fn the_first_bytes_of_each_direction_are_kept_in_order_and_capped() {
    let (mut e, out) = run(30);
    let Some(Record::Flow(f)) = out.iter().find(|r| matches!(r, Record::Flow(_))) else {
        panic!("no flow in {out:?}");
    };
    let s = e.take_samples(f.id).expect("samples of the flow");
    // 22 + 21 bytes sent by the client, capped at 30, in arrival order.
    assert_eq!(s.bytes[0], b"GET /secret HTTP/1.1\r\nHost: ex");
    assert_eq!(s.bytes[1], b"HTTP/1.1 200 OK\r\n");
    assert_eq!(s.first_ts, [Some(SEC + 2), Some(SEC + 4)]);
    assert!(e.take_samples(f.id).is_none(), "taken once");
    assert!(!format!("{s:?}").contains("secret"), "Debug never shows payload");
}

#[test]
fn off_by_default() {
    let (mut e, out) = run(0);
    for r in &out {
        if let Record::Flow(f) = r {
            assert!(e.take_samples(f.id).is_none());
        }
    }
}
