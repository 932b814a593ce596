//! Properties: judging never panics, whatever the record (any addresses, ports, protocols,
//! byte counts, names, process facts, times, in any order); the score is the sum of the
//! flags' points and the level follows it; the sentence is one line; saved alerter state
//! always loads back to the same bytes, and arbitrary bytes never make `load` panic.

mod judge_common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use engine::connections::{ConnEvent, ConnectionRecord, Direction};
use engine::judge::{Alerter, Config, Judge, Level, assess_connection, assess_flow};
use engine::record::{AppBy, DomainSource};
use engine::sockets::{ProcessInfo, SockProto, TcpInfo};
use engine::{Endpoint, FlowRecord};
use judge_common::*;
use proptest::prelude::*;

const PROTOS: [&str; 14] = [
    "tls",
    "quic",
    "http",
    "dns",
    "mdns",
    "ssh",
    "stun",
    "dtls",
    "dhcp",
    "ntp",
    "wireguard",
    "ssdp",
    "imaps",
    "weird",
];

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|v| IpAddr::V4(Ipv4Addr::from(v))),
        any::<u128>().prop_map(|v| IpAddr::V6(Ipv6Addr::from(v))),
        prop::sample::select(vec![
            ip("127.0.0.1"),
            ip("::1"),
            ip("0.0.0.0"),
            ip("::"),
            ip("255.255.255.255"),
            ip("224.0.0.251"),
            ip("::ffff:8.8.8.8"),
            ip("203.0.113.7"),
            ip("140.82.112.3"),
            ip("198.51.100.9"),
        ]),
    ]
}

fn any_process() -> impl Strategy<Value = Option<ProcessInfo>> {
    prop::option::of(
        (
            prop_oneof![
                Just(String::new()),
                Just("systemd-resolved".to_string()),
                Just("openvpn".to_string()),
                ".{0,20}"
            ],
            prop::option::of(".{0,30}"),
            any::<[bool; 4]>(),
            prop::option::of(".{0,20}"),
        )
            .prop_map(|(name, exe, b, unit)| ProcessInfo {
                name,
                exe: exe.map(Into::into),
                exe_deleted: b[0],
                exe_in_temp: b[1],
                package_checked: b[2],
                package: b[3].then(|| "pkg".to_string()),
                unit,
                ..ProcessInfo::default()
            }),
    )
}

prop_compose! {
    fn any_flow()(
        proto in prop_oneof![Just(6u8), Just(17u8), Just(1u8), Just(58u8), any::<u8>()],
        c in any_ip(), s in any_ip(), cp in any::<u16>(), sp in any::<u16>(),
        start in any::<i64>(), len in any::<i64>(),
        counts in any::<[u64; 4]>(),
        app in prop::option::of((prop::sample::select(PROTOS.to_vec()), any::<bool>())),
        domain in prop::option::of(prop_oneof![".{0,40}", Just("github.com".to_string()), Just("x.doubleclick.net".to_string())]),
        process in any_process(),
    ) -> FlowRecord {
        let mut f = flow(6, "1.2.3.4:1", "5.6.7.8:2", 0, 0);
        f.proto = proto;
        f.client = Endpoint { ip: c, port: cp };
        f.server = Endpoint { ip: s, port: sp };
        f.start = start;
        f.end = start.saturating_add(len);
        f.to_server.bytes = counts[0];
        f.to_server.packets = counts[1] % 4;
        f.to_client.bytes = counts[2];
        f.to_client.packets = counts[3] % 4;
        if let Some((p, content)) = app {
            f.app.set_app(p, if content { AppBy::Content } else { AppBy::Port });
        }
        if let Some(d) = domain {
            f.app.set_domain(&d, DomainSource::TlsSni);
        }
        f.process = process.map(Box::new);
        f
    }
}

prop_compose! {
    fn any_conn()(
        event in prop::sample::select(vec![ConnEvent::Opened, ConnEvent::Closed, ConnEvent::ListeningOnAll]),
        dir in prop::option::of(prop::sample::select(vec![Direction::Inbound, Direction::Outbound])),
        proto in prop::sample::select(vec![SockProto::Tcp, SockProto::Udp, SockProto::Icmp, SockProto::Raw(47), SockProto::Packet]),
        l in any_ip(), r in any_ip(), lp in any::<u16>(), rp in any::<u16>(),
        ts in any::<i64>(),
        tcp in prop::option::of(any::<[u32; 2]>().prop_map(|[a, b]| TcpInfo { total_retrans: a, segs_out: b, bytes_acked: u64::from(a) << 20, bytes_received: u64::from(b), ..TcpInfo::default() })),
        process in any_process(),
    ) -> ConnectionRecord {
        ConnectionRecord {
            ts,
            event,
            proto,
            direction: dir,
            local: SocketAddr::new(l, lp),
            remote: SocketAddr::new(r, rp),
            state: None,
            process,
            tcp,
            uid: 0,
            inode: 0,
        }
    }
}

fn check(a: &engine::judge::Assessment) -> Result<(), TestCaseError> {
    let sum = a.flags.iter().map(|f| f.points).fold(0u32, u32::saturating_add);
    prop_assert_eq!(a.score, sum);
    prop_assert_eq!(a.level(), Level::from_score(sum));
    prop_assert!(!a.explanation.is_empty());
    for f in &a.flags {
        prop_assert!(!f.why.is_empty());
        prop_assert!(f.points == 0 || !f.kind.informational());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn judging_never_panics(flows in prop::collection::vec(any_flow(), 1..12), conns in prop::collection::vec(any_conn(), 0..6), nows in prop::collection::vec(any::<i64>(), 1..8)) {
        let w = World::new();
        let e = w.enrichers();
        let mut cfg = Config::default();
        cfg.alerts.max_apps = 3;
        cfg.alerts.max_remotes_per_app = 4;
        cfg.alerts.max_ports_per_app = 2;
        cfg.alerts.max_recent_ids = 5;
        cfg.alerts.warmup_minutes = 1;
        cfg.alerts.warmup_connections = 1;
        let mut j = Judge::new(cfg.clone());
        let mut alerts = Vec::new();
        for (i, f) in flows.iter().enumerate() {
            check(&assess_flow(f, &e, &cfg))?;
            let now = nows[i % nows.len()];
            check(&j.flow(f, &e, now, &mut alerts))?;
            j.tick(now.wrapping_add(61_000_000_000), &mut alerts);
        }
        for c in &conns {
            check(&assess_connection(c, &e, &cfg))?;
            check(&j.connection(c, &e, c.ts, &mut alerts))?;
        }
        for s in j.apps.summaries(&cfg) {
            prop_assert!(s.privacy <= 100);
            prop_assert!(!s.explanation.is_empty());
        }
        let _ = engine::judge::digest(&j.apps.digest_facts(engine::judge::Period::Hour, &cfg));
        let mut line = String::new();
        for a in &alerts {
            prop_assert_eq!(a.id.len(), 16);
            line.clear();
            a.write_json(&mut line);
            let ok = line.starts_with(r#"{"type":"alert","v":1,"#) && !line.contains('\n');
            prop_assert!(ok, "{}", line);
        }
        let saved = j.alerter.save();
        let back = Alerter::load(&saved).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back.save(), saved);
    }

    #[test]
    fn load_never_panics(mut bytes in prop::collection::vec(any::<u8>(), 0..256), magic in any::<bool>()) {
        if magic && bytes.len() >= 8 {
            bytes[..4].copy_from_slice(b"NVAL");
            bytes[4..8].copy_from_slice(&1u32.to_le_bytes());
        }
        let _ = Alerter::load(&bytes);
    }
}
