//! Made-up but realistic flow records for tests and benchmarks: thousands of domains and remote
//! addresses, tens of apps, IPv4 and IPv6, every enum value of the record at some point.
//! Deterministic (a counter-based mixer, no clock, no randomness).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use engine::record::{AppBy, AppInfo, ClientBy, DirCounters, DomainSource, EndReason, FlowRecord, FlowState};
use engine::sockets::ProcessInfo;
use engine::{Endpoint, Record};

/// SplitMix64: a good spread from a counter.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The apps flows are attributed to.
pub const APPS: &[&str] = &[
    "firefox",
    "chrome",
    "curl",
    "wget",
    "ssh",
    "git",
    "apt",
    "systemd-resolve",
    "spotify",
    "slack",
    "zoom",
    "code",
    "python3",
    "node",
    "java",
    "dockerd",
    "containerd",
    "NetworkManager",
    "chronyd",
    "thunderbird",
    "signal-desktop",
    "discord",
    "steam",
    "rsync",
    "sshd",
    "nginx",
    "postgres",
    "redis",
    "telegram",
    "dropbox",
];

const APP_PROTOS: &[&str] = &["tls", "quic", "http", "dns", "ssh", "ntp", "stun"];

/// Flow number `i` starting at `t0` (ns), about `step` ns after the previous one.
pub fn flow(i: u64, t0: i64, step: i64) -> FlowRecord {
    let r = mix(i);
    let r2 = mix(i ^ 0xdead_beef);
    // Each app talks mostly to its own 100 domains (a few popular ones most often); a domain
    // resolves to one of two addresses; unnamed flows go to a pool of 2,000 other addresses.
    let app_i = (r2 >> 32) as usize % APPS.len();
    let u = ((r2 >> 4) % 10_000) as f64 / 10_000.0;
    let domain_n = app_i as u64 * 100 + (u * u * 100.0) as u64;
    let named = r2 % 10 < 7;
    let server_n = if named {
        domain_n * 2 + (r >> 3) % 2
    } else {
        6000 + (r >> 8) % 2000
    };
    let v6 = server_n.is_multiple_of(7);
    let (client, server) = if v6 {
        (
            IpAddr::V6(Ipv6Addr::new(
                0xfd00,
                0,
                0,
                0,
                0,
                0,
                0,
                0x10 + (r >> 40) as u16 % 4,
            )),
            IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                (server_n >> 8) as u16,
                0,
                0,
                0,
                0,
                server_n as u16,
            )),
        )
    } else {
        (
            IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10 + (r >> 40) as u8 % 4)),
            IpAddr::V4(Ipv4Addr::new(
                (100 + (server_n >> 16) % 100) as u8,
                (server_n >> 8) as u8,
                server_n as u8,
                (server_n % 251) as u8 | 1,
            )),
        )
    };
    let proto = if r.is_multiple_of(5) { 17 } else { 6 };
    let app_proto = if r2.is_multiple_of(6) {
        None
    } else {
        Some(APP_PROTOS[(r2 >> 20) as usize % APP_PROTOS.len()])
    };
    let with_process = !r2.is_multiple_of(4);
    let start = t0 + i as i64 * step + (r % 1000) as i64;
    let pkts = 1 + (r >> 12) % 200;
    FlowRecord {
        id: i,
        start,
        end: start + ((r >> 20) % 5_000_000_000) as i64,
        proto,
        client: Endpoint {
            ip: client,
            port: 32768 + (r >> 24) as u16 % 28000,
        },
        server: Endpoint {
            ip: server,
            port: [443, 80, 53, 22, 123, 8443][(r >> 30) as usize % 6],
        },
        vlan: match r2 % 50 {
            0 => [10, 0],
            1 => [100, 20],
            _ => [0, 0],
        },
        client_by: [
            ClientBy::Syn,
            ClientBy::SynAck,
            ClientBy::FirstPacket,
            ClientBy::PortGuess,
            ClientBy::Protocol,
        ][(r2 >> 8) as usize % 5],
        state: [
            FlowState::Handshake,
            FlowState::Established,
            FlowState::Closing,
            FlowState::Closed,
            FlowState::Active,
        ][(r2 >> 12) as usize % 5],
        to_server: DirCounters {
            packets: pkts,
            bytes: pkts * 90 + (r2 >> 40) % 9000,
            payload_bytes: pkts * 30,
        },
        to_client: DirCounters {
            packets: pkts + 3,
            bytes: pkts * 800 + (r >> 44) % 90000,
            payload_bytes: pkts * 700,
        },
        ended_by: [
            EndReason::IdleTimeout,
            EndReason::Reused,
            EndReason::Evicted,
            EndReason::EndOfInput,
        ][(r2 >> 16) as usize % 4],
        app: AppInfo {
            app_proto,
            app_by: if r2.is_multiple_of(9) {
                AppBy::Port
            } else {
                AppBy::Content
            },
            domain: named.then(|| format!("h{}.site{}.example.com", domain_n % 7, domain_n)),
            domain_source: named.then_some(
                [
                    DomainSource::TlsSni,
                    DomainSource::QuicSni,
                    DomainSource::HttpHost,
                    DomainSource::Dns,
                ][(r2 >> 24) as usize % 4],
            ),
        },
        process: with_process.then(|| Box::new(process(app_i, r2.is_multiple_of(3)))),
        device: None,
        iface: None,
    }
}

/// Process `app_i` of [`APPS`] (a few pids per app).
pub fn process(app_i: usize, inferred: bool) -> ProcessInfo {
    let name = APPS[app_i % APPS.len()];
    ProcessInfo {
        pid: 1000 + app_i as u32 * 3,
        ppid: Some(1),
        name: name.to_string(),
        exe: Some(PathBuf::from(format!("/usr/bin/{name}"))),
        cmdline: vec![name.to_string(), "--flag".into(), format!("arg {app_i}")],
        uid: Some(1000),
        user: Some("alice".into()),
        start_time: Some(1_700_000_000_000_000_000 + app_i as i64),
        container: (app_i % 10 == 3).then(|| "0123456789ab".to_string()),
        unit: (app_i % 5 == 1).then(|| format!("{name}.service")),
        exe_deleted: app_i % 11 == 2,
        exe_in_temp: app_i % 13 == 4,
        package: (app_i.is_multiple_of(2)).then(|| name.to_string()),
        package_checked: !app_i.is_multiple_of(3),
        inferred,
    }
}

/// `n` flows as records, numbered from `first`.
pub fn flows(first: u64, n: u64, t0: i64, step: i64) -> Vec<Record> {
    (first..first + n)
        .map(|i| Record::Flow(flow(i, t0, step)))
        .collect()
}
