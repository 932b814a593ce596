//! Export what a backend holds: JSON lines (the records as `netvigil read --format jsonl`
//! writes them, plus alerts), CSV (one flow per row, the columns of `netvigil read --format
//! csv`), and pcapng (the decrypted payload samples as packets, each with a comment naming the
//! app and domain, so Wireshark opens them).
//!
//! Works over any [`Backend`]: CSV is derived from each flow's stored JSON line.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Write};
use std::net::IpAddr;

use engine::json_read as json;
use engine::record::{FlowRecord, write_csv_field};
use wire::capture::{LinkType, PcapNgWriter};
use wire::synth::{self, TcpFlags};

use crate::model::{Backend, Query, SampleDir, StoreError, StoredFlow};

/// What an export wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exported {
    /// Flow records written (jsonl, csv).
    pub flows: u64,
    /// Message records (dns, tls, ...) and alerts written (jsonl).
    pub events: u64,
    pub alerts: u64,
    /// pcapng: packets written (one per sample).
    pub packets: u64,
    /// pcapng: samples whose flow is no longer stored (no addresses to build a packet).
    pub samples_without_flow: u64,
}

/// Why an export stopped.
#[derive(Debug)]
pub enum ExportError {
    Store(StoreError),
    /// Writing the output failed.
    Io(io::Error),
    /// A stored flow's JSON line could not be read back (CSV).
    BadRecord(String),
}

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExportError::Store(e) => write!(f, "{e}"),
            ExportError::Io(e) => write!(f, "writing the export: {e}"),
            ExportError::BadRecord(s) => write!(f, "a stored flow cannot be exported as CSV: {s}"),
        }
    }
}

impl std::error::Error for ExportError {}

impl From<StoreError> for ExportError {
    fn from(e: StoreError) -> Self {
        ExportError::Store(e)
    }
}

impl From<io::Error> for ExportError {
    fn from(e: io::Error) -> Self {
        ExportError::Io(e)
    }
}

/// JSON lines, oldest first: flows and message records interleaved by time, then alerts.
/// `q.limit` caps each kind.
pub fn jsonl<B: Backend + ?Sized>(
    b: &mut B,
    q: &Query,
    mut out: impl Write,
) -> Result<Exported, ExportError> {
    let mut flows = b.flows(q)?;
    let events = b.events(q)?;
    let alerts = b.alerts(q)?;
    flows.reverse();
    let mut ev: Vec<(i64, String)> = events
        .into_iter()
        .map(|j| (json_ts(&j).unwrap_or(0), j))
        .collect();
    ev.reverse();
    ev.sort_by_key(|e| e.0);
    let mut e = Exported::default();
    let mut it = ev.into_iter().peekable();
    for f in &flows {
        while let Some((ts, _)) = it.peek() {
            if *ts > f.start {
                break;
            }
            let (_, j) = it.next().expect("peeked");
            writeln!(out, "{j}")?;
            e.events += 1;
        }
        writeln!(out, "{}", f.json)?;
        e.flows += 1;
    }
    for (_, j) in it {
        writeln!(out, "{j}")?;
        e.events += 1;
    }
    for a in alerts.iter().rev() {
        writeln!(out, "{}", a.json)?;
        e.alerts += 1;
    }
    out.flush()?;
    Ok(e)
}

/// The `ts` of a message record's JSON, in ns.
fn json_ts(j: &str) -> Option<i64> {
    let v = json::parse(j).ok()?;
    parse_rfc3339(v.get("ts")?.as_str()?)
}

/// CSV, oldest first, with `FlowRecord::CSV_HEADER`.
pub fn csv<B: Backend + ?Sized>(b: &mut B, q: &Query, mut out: impl Write) -> Result<Exported, ExportError> {
    let flows = b.flows(q)?;
    writeln!(out, "{}", FlowRecord::CSV_HEADER)?;
    let mut line = String::with_capacity(512);
    for f in flows.iter().rev() {
        line.clear();
        csv_row(&f.json, &mut line).map_err(ExportError::BadRecord)?;
        line.push('\n');
        out.write_all(line.as_bytes())?;
    }
    out.flush()?;
    Ok(Exported {
        flows: flows.len() as u64,
        ..Exported::default()
    })
}

/// One CSV row from a flow's JSON line (the same text `FlowRecord::write_csv` writes).
pub fn csv_row(json_line: &str, out: &mut String) -> Result<(), String> {
    use json::Value;
    let v = json::parse(json_line).map_err(|e| e.to_string())?;
    if v.get("type").and_then(Value::as_str) != Some("flow") {
        return Err("not a flow record".into());
    }
    let text = |v: Option<&Value>| -> String {
        match v {
            Some(Value::Str(s)) => s.to_string(),
            Some(Value::Num(n)) => n.to_string(),
            Some(Value::Bool(b)) => b.to_string(),
            _ => String::new(),
        }
    };
    let get = |path: &[&str]| -> Option<&Value> {
        let mut cur = &v;
        for p in path {
            cur = cur.get(p)?;
        }
        Some(cur)
    };
    out.push_str("flow");
    let plain = [
        &["id"][..],
        &["start"],
        &["end"],
        &["l4"],
        &["client", "ip"],
        &["client", "port"],
        &["server", "ip"],
        &["server", "port"],
        &["vlan"],
        &["vlan_inner"],
        &["client_by"],
        &["state"],
        &["to_server", "packets"],
        &["to_server", "bytes"],
        &["to_server", "payload_bytes"],
        &["to_client", "packets"],
        &["to_client", "bytes"],
        &["to_client", "payload_bytes"],
        &["ended_by"],
        &["app_proto"],
        &["app_proto_by"],
    ];
    for p in plain {
        out.push(',');
        out.push_str(&text(get(p)));
    }
    out.push(',');
    if let Some(Value::Str(d)) = get(&["domain"]) {
        write_csv_field(out, d);
    }
    out.push(',');
    out.push_str(&text(get(&["domain_source"])));
    Ok(())
}

/// pcapng: one packet per decrypted sample (Ethernet + IPv4/IPv6 + TCP/UDP around the sample's
/// bytes, client to server or back), oldest first, each with the comment
/// `app=..., domain=..., flow=ID, dir=to_server|to_client`.
pub fn pcapng<B: Backend + ?Sized>(b: &mut B, q: &Query, out: impl Write) -> Result<Exported, ExportError> {
    let mut samples = b.samples(q)?;
    samples.sort_by_key(|s| (s.ts, s.flow_id, matches!(s.dir, SampleDir::ToClient)));
    let flow_q = Query {
        limit: None,
        ..q.clone()
    };
    let flows: HashMap<(u64, i64), StoredFlow> = if samples.is_empty() {
        HashMap::new()
    } else {
        b.flows(&flow_q)?
            .into_iter()
            .map(|f| ((f.flow_id, f.start), f))
            .collect()
    };
    let mut w = PcapNgWriter::new(out)?;
    let ifc = w.add_interface(LinkType::ETHERNET, 0, Some("netvigil-samples"))?;
    let mut e = Exported::default();
    let mut comment = String::new();
    for s in &samples {
        let Some(f) = flows.get(&(s.flow_id, s.flow_start)) else {
            e.samples_without_flow += 1;
            continue;
        };
        let (src, dst) = match s.dir {
            SampleDir::ToServer => (f.client, f.server),
            SampleDir::ToClient => (f.server, f.client),
        };
        // An IP datagram holds at most 65535 bytes.
        let payload = &s.bytes[..s.bytes.len().min(65_000)];
        let Some(frame) = frame(f.proto, src.ip(), dst.ip(), src.port(), dst.port(), payload) else {
            e.samples_without_flow += 1;
            continue;
        };
        comment.clear();
        use std::fmt::Write as _;
        let _ = write!(
            comment,
            "app={}, domain={}, flow={}, dir={}",
            f.app.as_deref().unwrap_or("-"),
            f.domain.as_deref().unwrap_or("-"),
            f.flow_id,
            match s.dir {
                SampleDir::ToServer => "to_server",
                SampleDir::ToClient => "to_client",
            }
        );
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        w.write_packet(ifc, s.ts.max(0), len, &frame, Some(&comment))?;
        e.packets += 1;
    }
    w.finish()?;
    Ok(e)
}

/// An Ethernet frame carrying `payload` from `src` to `dst`; `None` for mixed address families.
fn frame(proto: u8, src: IpAddr, dst: IpAddr, sport: u16, dport: u16, payload: &[u8]) -> Option<Vec<u8>> {
    let flags = TcpFlags::PSH | TcpFlags::ACK;
    Some(match (src, dst, proto) {
        (IpAddr::V4(a), IpAddr::V4(b), synth::PROTO_TCP) => {
            synth::tcp_ipv4_frame(a, b, sport, dport, 1, 1, flags, payload)
        }
        (IpAddr::V4(a), IpAddr::V4(b), synth::PROTO_UDP) => {
            synth::udp_ipv4_frame(a, b, sport, dport, payload)
        }
        (IpAddr::V6(a), IpAddr::V6(b), synth::PROTO_TCP) => {
            synth::tcp_ipv6_frame(a, b, sport, dport, 1, 1, flags, payload)
        }
        (IpAddr::V6(a), IpAddr::V6(b), synth::PROTO_UDP) => {
            synth::udp_ipv6_frame(a, b, sport, dport, payload)
        }
        (IpAddr::V4(a), IpAddr::V4(b), p) => synth::ethernet(
            synth::MAC_B,
            synth::MAC_A,
            synth::ETHERTYPE_IPV4,
            &synth::ipv4(a, b, p, 0, payload),
        ),
        (IpAddr::V6(a), IpAddr::V6(b), p) => synth::ethernet(
            synth::MAC_B,
            synth::MAC_A,
            synth::ETHERTYPE_IPV6,
            &synth::ipv6(a, b, p, payload),
        ),
        _ => return None,
    })
}

pub use engine::json_read::parse_rfc3339;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        for n in [
            0i64,
            1_581_113_120_474_299_000,
            2_145_916_800_000_000_001,
            951_782_400_000_000_000,
        ] {
            let mut s = String::new();
            engine::record::write_rfc3339(&mut s, n);
            assert_eq!(parse_rfc3339(&s), Some(n), "{s}");
        }
        assert_eq!(
            parse_rfc3339("2026-11-22T03:00:00+01:00"),
            parse_rfc3339("2026-11-22T02:00:00Z")
        );
        assert_eq!(parse_rfc3339("2026-02-30T03:00:00Z"), None);
        assert_eq!(parse_rfc3339("2026-11-22T03:00:00"), None);
    }

    #[test]
    fn json_reads_escapes() {
        let v = json::parse(r#"{"a":"x\"\u00e9\ud83d\ude00","b":[1,-2.5e3,null,true],"c":{}}"#).unwrap();
        assert_eq!(v.get("a").unwrap().as_str(), Some("x\"é😀"));
        assert!(json::parse("{\"a\":").is_err());
        assert!(json::parse(&"[".repeat(1000)).is_err());
    }

    proptest::proptest! {
        #[test]
        fn json_never_panics(s in ".{0,200}") {
            let _ = json::parse(&s);
            let mut out = String::new();
            let _ = csv_row(&s, &mut out);
            let _ = parse_rfc3339(&s);
        }

        #[test]
        fn json_bytes_never_panic(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let s = String::from_utf8_lossy(&b);
            let _ = json::parse(&s);
        }
    }
}
