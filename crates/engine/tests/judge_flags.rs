//! Table-driven tests of every threat flag, the score levels, the per-app aggregation (many
//! remotes, pooling, privacy score) and the plain-language sentences, on hand-built flow and
//! connection records with in-memory enrichers (`judge_common`).

mod judge_common;

use engine::FlowRecord;
use engine::connections::{ConnEvent, Direction};
use engine::enrich::Enrichers;
use engine::judge::{self, Apps, Config, FlagKind, Level, Subject, assess_connection, assess_flow};
use engine::record::{AppBy, DomainSource};
use engine::sockets::{ProcessInfo, SockProto, SocketEntry, SocketSnapshot, TcpInfo};
use judge_common::*;

/// (name, record, flags expected with their points).
type Case<R> = (&'static str, R, Vec<(FlagKind, u32)>);

fn kinds(a: &engine::judge::Assessment) -> Vec<(FlagKind, u32)> {
    let mut v: Vec<_> = a.flags.iter().map(|f| (f.kind, f.points)).collect();
    v.sort();
    v
}

fn tls(server: &str, domain: &str) -> FlowRecord {
    with_app(
        flow(6, "192.168.1.10:50000", server, 2_000, 30_000),
        "tls",
        Some((domain, DomainSource::TlsSni)),
    )
}

fn unpackaged(name: &str) -> ProcessInfo {
    ProcessInfo {
        package: None,
        exe: Some(format!("/opt/{name}/{name}").into()),
        ..prog(name)
    }
}

#[test]
fn every_flow_flag() {
    let w = World::new();
    let e = w.enrichers();
    let cfg = Config::default();
    let deleted = ProcessInfo {
        exe_deleted: true,
        ..prog("sh")
    };
    let in_tmp = ProcessInfo {
        exe_in_temp: true,
        exe: Some("/tmp/x/miner".into()),
        ..prog("miner")
    };
    let unchecked = ProcessInfo {
        package: None,
        package_checked: false,
        ..prog("tool")
    };
    let daemon = |n: &str| prog(n);
    let guess = |mut f: FlowRecord, p: &'static str| {
        f.app.set_app(p, AppBy::Port);
        f
    };
    use FlagKind::*;
    #[rustfmt::skip]
    let cases: Vec<Case<FlowRecord>> = vec![
        ("clean tls", owned(tls("140.82.112.3:443", "github.com"), prog("firefox")), vec![]),
        ("not in any package", owned(tls("140.82.112.3:443", "github.com"), unpackaged("agent")), vec![(UnpackagedBinary, 3)]),
        ("deleted exe", owned(tls("140.82.112.3:443", "github.com"), deleted), vec![(UnpackagedBinary, 3)]),
        ("exe in /tmp", owned(tls("140.82.112.3:443", "github.com"), in_tmp), vec![(UnpackagedBinary, 3)]),
        ("package not looked up", owned(tls("140.82.112.3:443", "github.com"), unchecked), vec![]),
        ("http seen", with_app(flow(6, "192.168.1.10:50001", "93.184.216.34:8080", 500, 2_300_000), "http", Some(("example.org", DomainSource::HttpHost))), vec![(PlaintextHttp, 3)]),
        ("port 80, nothing said", flow(6, "192.168.1.10:50002", "140.82.112.3:80", 500, 900), vec![(PlaintextHttp, 3)]),
        ("port 80 only guessed", guess(flow(6, "192.168.1.10:50002", "140.82.112.3:80", 500, 900), "http"), vec![(PlaintextHttp, 3)]),
        ("tls on port 80", with_app(flow(6, "192.168.1.10:50003", "140.82.112.3:80", 500, 900), "tls", None), vec![]),
        ("udp port 80 is no http", flow(17, "192.168.1.10:50003", "140.82.112.3:80", 500, 900), vec![]),
        ("clean, other app", owned(tls("140.82.112.3:443", "github.com"), prog("rclone")), vec![]),
        ("upload 5 MB vs 100 kB", flow(6, "192.168.1.10:50004", "140.82.112.3:443", 5_000_000, 100_000), vec![(UploadHeavy, 3)]),
        ("upload 5 MB vs 600 kB", flow(6, "192.168.1.10:50004", "140.82.112.3:443", 5_000_000, 600_000), vec![]),
        ("upload 900 kB vs 0", flow(6, "192.168.1.10:50004", "140.82.112.3:443", 900_000, 0), vec![]),
        ("unusual tcp port", flow(6, "192.168.1.10:50005", "140.82.112.3:6667", 100, 100), vec![(UnusualPort, 2)]),
        ("udp 443 is quic", with_app(flow(17, "192.168.1.10:50006", "140.82.112.3:443", 100, 100), "quic", Some(("github.com", DomainSource::QuicSni))), vec![]),
        ("lan printer port", flow(6, "192.168.1.10:50007", "192.168.1.5:9100", 100, 100), vec![]),
        ("inbound judged on local port", flow(6, "198.51.100.77:51000", "192.168.1.10:2222", 100, 100), vec![(UnusualPort, 2)]),
        ("inbound ssh", flow(6, "198.51.100.77:51000", "192.168.1.10:22", 100, 100), vec![]),
        ("no rdns, hosting", flow(6, "192.168.1.10:50008", "203.0.113.7:443", 100, 100), vec![(UnusualPort, 0), (NoReverseDns, 2), (HostingProvider, 2)].into_iter().filter(|k| k.1 > 0).collect()),
        ("rdns pending", flow(6, "192.168.1.10:50009", "198.51.100.9:443", 100, 100), vec![]),
        ("domain known, no rdns", tls("203.0.113.7:443", "api.example.com"), vec![(HostingProvider, 2)]),
        ("big cloud", tls("198.51.100.1:443", "bucket.example.com"), vec![(HostingProvider, 1)]),
        ("daemon outside", owned(with_app(flow(6, "192.168.1.10:50010", "93.184.216.34:443", 100, 100), "tls", Some(("tracker.example.org", DomainSource::TlsSni))), daemon("systemd-resolved")), vec![(DaemonOutside, 2)]),
        ("daemon to vendor", owned(with_app(flow(6, "192.168.1.10:50011", "93.184.216.34:80", 100, 100), "http", Some(("archive.ubuntu.com", DomainSource::HttpHost))), daemon("http")), vec![(PlaintextHttp, 3)]),
        ("daemon on its port", owned(with_app(flow(17, "192.168.1.10:50012", "93.184.216.34:123", 48, 48), "ntp", None), daemon("chronyd")), vec![]),
        ("resolver on 53", owned(with_app(flow(17, "192.168.1.10:50013", "93.184.216.34:53", 60, 120), "dns", None), daemon("systemd-resolved")), vec![]),
        ("daemon by unit", owned(flow(6, "192.168.1.10:50014", "93.184.216.34:443", 100, 100), ProcessInfo { unit: Some("fwupd.service".into()), ..prog("fwupd-helper") }), vec![(DaemonOutside, 2)]),
        ("ipv6 informational", tls("[2a00:1450:4001::1]:443", "www.google.com"), vec![(Ipv6, 0)]),
        ("vpn protocol", with_app(flow(17, "192.168.1.10:50015", "198.51.100.9:51820", 100, 100), "wireguard", None), vec![(UnusualPort, 2), (VpnApp, 0)]),
        ("vpn client", owned(flow(17, "192.168.1.10:50016", "198.51.100.9:1194", 100, 100), prog("openvpn")), vec![(UnusualPort, 2), (VpnApp, 0)]),
        ("vpn domain", tls("140.82.112.3:443", "de1.mullvad.net"), vec![(VpnApp, 0)]),
        ("loopback keeps only unpackaged", owned(with_app(flow(6, "127.0.0.1:50017", "127.0.0.1:80", 5_000_000, 10), "http", None), unpackaged("dev")), vec![(UnpackagedBinary, 3)]),
        ("everything", owned(with_app(flow(6, "192.168.1.10:50018", "203.0.113.7:80", 9_000_000, 1_000), "http", None), unpackaged("x")), vec![(UnpackagedBinary, 3), (PlaintextHttp, 3), (UploadHeavy, 3), (NoReverseDns, 2), (HostingProvider, 2)]),
    ];
    for (name, f, mut want) in cases {
        let a = assess_flow(&f, &e, &cfg);
        want.sort();
        assert_eq!(kinds(&a), want, "{name}: {:#?}", a.flags);
        let score: u32 = want.iter().map(|k| k.1).sum();
        assert_eq!(a.score, score, "{name}");
        assert_eq!(a.level(), Level::from_score(score), "{name}");
        assert!(!a.explanation.is_empty(), "{name}");
        for fl in &a.flags {
            assert!(fl.why.ends_with('.') && fl.why.len() > 15, "{name}: {}", fl.why);
        }
    }
}

#[test]
fn weights_and_lists_are_configurable() {
    let w = World::new();
    let e = w.enrichers();
    let f = flow(6, "192.168.1.10:50005", "140.82.112.3:6667", 100, 100);
    let mut cfg = Config::default();
    cfg.weights.unusual_port = 5;
    assert_eq!(assess_flow(&f, &e, &cfg).score, 5);
    cfg.safe_ports.push(6667);
    assert_eq!(assess_flow(&f, &e, &cfg).score, 0);
    let q = flow(17, "192.168.1.10:50006", "140.82.112.3:443", 100, 100);
    cfg.quic_is_standard = false;
    assert!(assess_flow(&q, &e, &cfg).has(FlagKind::UnusualPort));
    // Safe apps and hosts keep only informational flags.
    let bad = owned(
        with_app(
            flow(6, "192.168.1.10:50018", "203.0.113.7:80", 9_000_000, 1_000),
            "http",
            Some(("ci.example.com", DomainSource::HttpHost)),
        ),
        unpackaged("runner"),
    );
    let cfg = Config::default();
    assert_eq!(assess_flow(&bad, &e, &cfg).level(), Level::High);
    let safe_app = Config {
        safe_apps: vec!["runner".into()],
        ..Config::default()
    };
    assert_eq!(assess_flow(&bad, &e, &safe_app).score, 0);
    let safe_host = Config {
        safe_hosts: vec!["example.com".into()],
        ..Config::default()
    };
    assert_eq!(assess_flow(&bad, &e, &safe_host).score, 0);
    let safe_ip = Config {
        safe_hosts: vec!["203.0.113.7".into()],
        ..Config::default()
    };
    assert_eq!(assess_flow(&bad, &e, &safe_ip).score, 0);
    // Hosting lists.
    let no_hosting = Config {
        hosting_asns: vec![],
        ..Config::default()
    };
    let h = tls("203.0.113.7:443", "api.example.com");
    assert_eq!(assess_flow(&h, &e, &no_hosting).score, 0);
    // Local addresses decide the direction.
    let f = flow(6, "192.168.1.20:50000", "192.168.1.10:2222", 100, 100);
    let out = Subject::from_flow(&f, &Config::default());
    assert_eq!((out.direction, out.remote.port()), (Direction::Outbound, 2222));
    let local = Config {
        local_addrs: vec![ip("192.168.1.10")],
        ..Config::default()
    };
    let inn = Subject::from_flow(&f, &local);
    assert_eq!((inn.direction, inn.local.port()), (Direction::Inbound, 2222));
}

#[test]
fn connection_flags() {
    let w = World::new();
    let e = w.enrichers();
    let cfg = Config::default();
    let t = |retrans: u32, segs: u32| TcpInfo {
        total_retrans: retrans,
        segs_out: segs,
        bytes_acked: 1_200,
        bytes_received: 20_400,
        ..TcpInfo::default()
    };
    use FlagKind::*;
    #[rustfmt::skip]
    let cases: Vec<Case<engine::connections::ConnectionRecord>> = vec![
        ("retrans 50/200", conn(ConnEvent::Closed, Some(Direction::Outbound), "10.0.0.5:40000", "140.82.112.3:443", Some(prog("curl")), Some(t(50, 200))), vec![(HighRetransmissions, 1)]),
        ("retrans 8/100", conn(ConnEvent::Closed, Some(Direction::Outbound), "10.0.0.5:40000", "140.82.112.3:443", Some(prog("curl")), Some(t(8, 100))), vec![]),
        ("retrans 11/1000", conn(ConnEvent::Closed, Some(Direction::Outbound), "10.0.0.5:40000", "140.82.112.3:443", Some(prog("curl")), Some(t(11, 1000))), vec![]),
        ("listening all", conn(ConnEvent::ListeningOnAll, None, "0.0.0.0:8080", "0.0.0.0:0", Some(prog("python3")), None), vec![(ListeningAll, 1)]),
        ("listening odd port", conn(ConnEvent::ListeningOnAll, None, "[::]:6000", "[::]:0", Some(unpackaged("x11")), None), vec![(ListeningAll, 1), (UnusualPort, 2), (UnpackagedBinary, 3)]),
        ("socket upload", conn(ConnEvent::Closed, Some(Direction::Outbound), "10.0.0.5:40001", "140.82.112.3:443", Some(prog("scp")), Some(TcpInfo { bytes_acked: 50_000_000, bytes_received: 40_000, ..TcpInfo::default() })), vec![(UploadHeavy, 3)]),
        ("inbound sshd", conn(ConnEvent::Opened, Some(Direction::Inbound), "10.0.0.5:22", "203.0.113.7:51000", Some(prog("sshd")), None), vec![(NoReverseDns, 2), (HostingProvider, 2)]),
    ];
    for (name, c, mut want) in cases {
        let a = assess_connection(&c, &e, &cfg);
        want.sort();
        assert_eq!(kinds(&a), want, "{name}: {:#?}", a.flags);
    }
}

#[test]
fn receive_queue_backing_up() {
    let cfg = Config::default();
    let mut wq = judge::RxQueueWatch::default();
    let entry = |q: u32| SocketEntry {
        proto: SockProto::Tcp,
        local: "10.0.0.5:40000".parse().unwrap(),
        remote: "140.82.112.3:443".parse().unwrap(),
        state: None,
        connected: true,
        uid: 1000,
        inode: 9,
        rx_queue: q,
        tx_queue: 0,
        tcp: None,
        interface: None,
    };
    let snap = |t: i64, q: u32| SocketSnapshot {
        taken_at: T0 + t * SEC,
        sockets: vec![entry(q)],
        owners: vec![(9, 4242)],
        processes: vec![prog("stuck")],
        unattributed: 0,
    };
    let mut got = |t, q| wq.update(&snap(t, q), &cfg);
    assert!(got(0, 100).is_empty());
    assert!(got(20, 100).is_empty(), "20 s is not long");
    let f = got(31, 4000);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].0.as_deref(), Some("stuck"));
    assert_eq!((f[0].1.kind, f[0].1.points), (FlagKind::RxQueueBacklog, 1));
    assert!(f[0].1.why.contains("4.0 kB"), "{}", f[0].1.why);
    assert!(got(60, 4000).is_empty(), "reported once per episode");
    assert!(got(61, 0).is_empty(), "drained");
    assert!(got(70, 10).is_empty(), "a new episode starts");
    assert!(
        got(5, 10).is_empty(),
        "time went back: the episode restarts, no panic"
    );
    assert!(got(30, 10).is_empty());
    assert_eq!(got(40, 10).len(), 1);
}

#[test]
fn apps_aggregate_score_remotes_pooling_and_privacy() {
    let w = World::new();
    let e = w.enrichers();
    let cfg = Config::default();
    let mut apps = Apps::new(16);
    let mut feed = |f: &FlowRecord| {
        let s = Subject::from_flow(f, &cfg);
        let a = judge::assess(&s, &e, &cfg);
        apps.add(&s, &a, &cfg);
    };
    // 21 distinct addresses for "crawler": many remotes (+1).
    for i in 0..21 {
        feed(&owned(
            flow(
                6,
                "192.168.1.10:40000",
                &format!("198.51.100.{}:443", 100 + i),
                10,
                10,
            ),
            prog("crawler"),
        ));
    }
    // 20 for "fine": not many.
    for i in 0..20 {
        feed(&owned(
            flow(
                6,
                "192.168.1.10:40000",
                &format!("198.51.100.{}:443", 100 + i),
                10,
                10,
            ),
            prog("fine"),
        ));
    }
    // Browser: 9 connections to github.com (pooling), trackers, one plain HTTP (+3).
    for _ in 0..9 {
        feed(&owned(tls("140.82.112.3:443", "github.com"), prog("firefox")));
    }
    for _ in 0..3 {
        feed(&owned(
            tls("140.82.112.3:443", "stats.g.doubleclick.net"),
            prog("firefox"),
        ));
    }
    feed(&owned(
        tls("140.82.112.3:443", "www.google-analytics.com"),
        prog("firefox"),
    ));
    feed(&owned(
        tls("140.82.112.3:443", "connect.facebook.net"),
        prog("firefox"),
    ));
    feed(&owned(
        tls("140.82.112.3:443", "img.cdn.example"),
        prog("firefox"),
    ));
    feed(&owned(tls("140.82.112.3:443", "open.scdn.co"), prog("firefox")));
    feed(&owned(
        with_app(
            flow(6, "192.168.1.10:50001", "93.184.216.34:80", 500, 2_300_000),
            "http",
            Some(("example.org", DomainSource::HttpHost)),
        ),
        prog("firefox"),
    ));
    let sums = apps.summaries(&cfg);
    let get = |n: &str| sums.iter().find(|a| a.app.as_deref() == Some(n)).unwrap().clone();
    let c = get("crawler");
    assert_eq!((c.remotes, c.score, c.level), (21, 1, Level::Low));
    assert!(c.flags.iter().any(|f| f.kind == FlagKind::ManyRemotes));
    let f = get("fine");
    assert_eq!((f.remotes, f.score, f.level), (20, 0, Level::Clean));
    assert!(
        f.explanation.ends_with("nothing looked suspicious"),
        "{}",
        f.explanation
    );
    let b = get("firefox");
    assert_eq!(b.connections, 17);
    assert_eq!(b.score, 3);
    assert_eq!(b.level, Level::Medium);
    assert!(
        b.flags
            .iter()
            .any(|f| f.kind == FlagKind::ConnectionPooling && f.points == 0)
    );
    // Privacy: ads 15 + 2 extra connections, analytics 12, social 8, CDN 2 = 39 -> 61.
    assert_eq!(b.privacy, 61, "{:#?}", b.privacy_reasons);
    assert_eq!(b.privacy_reasons.len(), 4);
    assert_eq!(
        b.privacy_reasons[0].text(),
        "3 connections to stats.g.doubleclick.net (ads, Google)"
    );
    assert_eq!(b.privacy_reasons[0].points, 17);
    assert_eq!(
        b.explanation,
        "firefox made 17 connections to 7 hosts, receiving 2.8 MB and sending 32.5 kB; it reached 4 trackers; medium concern: plain HTTP"
    );
    assert_eq!(sums[0].app.as_deref(), Some("firefox"), "highest score first");
    // The same finding about the same host counts once: 6 connections to a rented server.
    let mut pool = Apps::new(4);
    for _ in 0..6 {
        let f = owned(tls("203.0.113.7:443", "api.example.com"), prog("client"));
        let s = Subject::from_flow(&f, &cfg);
        pool.add(&s, &judge::assess(&s, &e, &cfg), &cfg);
    }
    let p = &pool.summaries(&cfg)[0];
    assert_eq!((p.score, p.level, p.flags[0].count), (2, Level::Low, 6));
    // Digest over these apps.
    apps.mark_new(Some("crawler"));
    let facts = apps.digest_facts(judge::Period::Day, &cfg);
    assert_eq!(
        (facts.apps, facts.new_apps.clone()),
        (3, vec!["crawler".to_string()])
    );
    let d = judge::digest(&facts);
    assert!(d.starts_with("Today 3 apps talked to 28 hosts"), "{d}");
    assert!(d.contains("; one is new: crawler; no red flag"), "{d}");
    // The cap on apps drops the least recently seen.
    let mut small = Apps::new(2);
    for (i, n) in ["a", "b", "c"].iter().enumerate() {
        let mut f = owned(flow(6, "192.168.1.10:40000", "140.82.112.3:443", 1, 1), prog(n));
        f.end = T0 + i as i64 * SEC;
        f.start = f.end;
        let s = Subject::from_flow(&f, &cfg);
        small.add(&s, &judge::assess(&s, &Enrichers::default(), &cfg), &cfg);
    }
    let names: Vec<_> = small.summaries(&cfg).into_iter().filter_map(|a| a.app).collect();
    assert_eq!(names.len(), 2);
    assert!(!names.contains(&"a".to_string()));
}

#[test]
fn sentences() {
    let w = World::new();
    let full = w.enrichers();
    let none = Enrichers::default();
    let cfg = Config::default();
    let mut spotify = owned(
        with_app(
            flow(6, "192.168.1.10:50000", "93.184.216.34:443", 200_000, 45_200_000),
            "tls",
            Some(("audio-fa.scdn.co", DomainSource::TlsSni)),
        ),
        prog("Spotify"),
    );
    spotify.end = spotify.start + 600 * SEC;
    let mut guess = flow(6, "192.168.1.10:50020", "140.82.112.3:993", 100, 100);
    guess.app.set_app("imaps", AppBy::Port);
    let mut f7 = flow(6, "192.168.1.10:50021", "140.82.112.3:7000", 100, 100);
    f7.app.set_app("afs3", AppBy::Port);
    #[rustfmt::skip]
    let mut flows: Vec<(&Enrichers<'_>, FlowRecord, &str)> = vec![
        (&full, owned(tls("140.82.112.3:443", "github.com"), prog("firefox")),
         "firefox opened an encrypted web connection to github.com (GitHub, US)"),
        (&none, owned(with_app(flow(6, "192.168.1.10:50001", "93.184.216.34:80", 500, 2_300_000), "http", Some(("example.org", DomainSource::HttpHost))), prog("curl")),
         "curl downloaded 2.3 MB over plain, unencrypted HTTP from example.org"),
        (&none, with_app(flow(17, "192.168.1.10:50002", "192.0.2.53:53", 60, 120), "dns", None),
         "A program we could not identify sent DNS queries to 192.0.2.53"),
        (&none, owned(flow(6, "203.0.113.7:51000", "192.168.1.10:22", 3_000, 4_000), prog("sshd")),
         "sshd accepted a connection from 203.0.113.7 on port 22 (remote login)"),
        (&full, spotify, "Spotify received 45.2 MB from the streaming service audio-fa.scdn.co (Edgecast, US)"),
        (&full, guess, "A program we could not identify connected to 140.82.112.3 (host.example.net, GitHub, US) on port 993 (encrypted mail, IMAP)"),
        (&full, f7, "A program we could not identify connected to 140.82.112.3 (host.example.net, GitHub, US) on port 7000 (usually afs3)"),
        (&full, flow(6, "192.168.1.10:50022", "140.82.112.3:5432", 100, 100),
         "A program we could not identify connected to 140.82.112.3 (host.example.net, GitHub, US) on port 5432 (usually postgresql)"),
        (&full, flow(17, "192.168.1.10:50023", "192.168.1.1:40000", 100, 100),
         "A program we could not identify exchanged traffic with 192.168.1.1 (local network) on UDP port 40000"),
        (&full, flow(1, "192.168.1.10:7", "140.82.112.3:7", 100, 100),
         "A program we could not identify exchanged ICMP messages (such as ping) with 140.82.112.3 (host.example.net, GitHub, US)"),
        (&none, with_app(flow(6, "192.168.1.10:50024", "198.51.100.1:22", 3_000_000, 1_000), "ssh", None),
         "A program we could not identify opened a remote login (SSH) session to 198.51.100.1, sending 3.0 MB"),
        (&none, with_app(flow(17, "192.168.1.10:5353", "224.0.0.251:5353", 100, 0), "mdns", None),
         "A program we could not identify looked up or announced devices on the local network (mDNS)"),
        (&none, with_app(flow(17, "192.168.1.10:50025", "198.51.100.1:3478", 100, 100), "stun", None),
         "A program we could not identify checked its public address with 198.51.100.1 using STUN, as calls and video chats do"),
        (&full, with_app(flow(17, "192.168.1.10:50026", "[2a00:1450:4001::1]:443", 100, 100), "quic", Some(("www.google.com", DomainSource::QuicSni))),
         "A program we could not identify opened an encrypted web connection (QUIC) to www.google.com (Google, DE)"),
        (&none, with_app(flow(6, "192.168.1.10:50027", "198.51.100.1:8883", 100, 100), "tls", None),
         "A program we could not identify opened an encrypted (TLS) connection to 198.51.100.1 on port 8883"),
        (&none, with_app(flow(6, "192.168.1.10:50028", "127.0.0.1:8000", 100, 12_000), "http", None),
         "A program we could not identify downloaded 12.0 kB over plain, unencrypted HTTP from 127.0.0.1 (this machine)"),
    ];
    let mut unanswered = flow(6, "192.168.1.10:50030", "198.51.100.1:31337", 60, 0);
    unanswered.to_client.packets = 0;
    flows.push((
        &none,
        unanswered,
        "A program we could not identify tried to connect to 198.51.100.1 on port 31337, with no answer",
    ));
    let mut knock = flow(6, "198.51.100.1:50031", "192.168.1.10:23", 60, 0);
    knock.to_client.packets = 0;
    flows.push((&none, knock, "A program we could not identify was contacted by 198.51.100.1 on port 23 (unencrypted remote login, Telnet), with no answer"));
    flows.push((&none, flow(17, "141.142.220.202:5353", "224.0.0.251:5353", 100, 0), "A program we could not identify exchanged traffic with 224.0.0.251 (local network) on UDP port 5353 (local device discovery, mDNS)"));
    for (e, f, want) in flows {
        assert_eq!(assess_flow(&f, e, &cfg).explanation, want);
    }
    let t = TcpInfo {
        bytes_acked: 1_200,
        bytes_received: 20_400,
        ..TcpInfo::default()
    };
    #[rustfmt::skip]
    let conns = vec![
        (conn(ConnEvent::Opened, Some(Direction::Inbound), "10.0.0.5:22", "203.0.113.7:51000", Some(prog("sshd")), None),
         "sshd accepted a connection from 203.0.113.7 on port 22 (remote login)"),
        (conn(ConnEvent::Opened, Some(Direction::Outbound), "10.0.0.5:40000", "198.51.100.1:443", Some(prog("curl")), Some(t)),
         "curl connected to 198.51.100.1 on port 443 (encrypted web)"),
        (conn(ConnEvent::Closed, Some(Direction::Outbound), "10.0.0.5:40000", "198.51.100.1:443", Some(prog("curl")), Some(t)),
         "curl's connection to 198.51.100.1 on port 443 (encrypted web) closed after sending 1.2 kB and receiving 20.4 kB"),
        (conn(ConnEvent::ListeningOnAll, None, "0.0.0.0:8080", "0.0.0.0:0", Some(prog("python3")), None),
         "python3 is listening on every network interface on port 8080 (web, alternative port), so other machines can connect to it"),
    ];
    for (c, want) in conns {
        assert_eq!(assess_connection(&c, &none, &cfg).explanation, want);
    }
}

#[test]
fn judgement_fields_as_json() {
    let w = World::new();
    let f = owned(
        with_app(
            flow(6, "192.168.1.10:50018", "203.0.113.7:80", 9_000_000, 1_000),
            "http",
            None,
        ),
        unpackaged("x\"y"),
    );
    let a = assess_flow(&f, &w.enrichers(), &Config::default());
    let mut s = String::from("{");
    a.write_json_fields(&mut s);
    s.push('}');
    assert!(s.starts_with("{\"score\":13,\"level\":\"high\",\"flags\":[{\"kind\":\"unpackaged_binary\",\"points\":3,\"why\":\"x\\\"y (/opt/"), "{s}");
    assert!(
        s.contains("\"explanation\":\"x\\\"y uploaded 9.0 MB over plain"),
        "{s}"
    );
}

/// The live monitor starts a new period every hour (the hourly digest); "many distinct
/// remotes" counts the addresses of the last day, not of the current hour only.
#[test]
fn distinct_remotes_outlive_the_hourly_period() {
    const HOUR: i64 = 3600 * SEC;
    const DAY: i64 = 24 * HOUR;
    let cfg = Config::default();
    let e = Enrichers::default();
    let mut apps = Apps::new(8);
    let add = |apps: &mut Apps, i: u32, t: i64| {
        let mut f = owned(
            flow(6, "192.168.1.10:40000", &format!("198.51.100.{i}:443"), 10, 10),
            prog("crawler"),
        );
        (f.start, f.end) = (t, t);
        let s = Subject::from_flow(&f, &cfg);
        apps.add(&s, &judge::assess(&s, &e, &cfg), &cfg);
    };
    for i in 0..15 {
        add(&mut apps, i, T0);
    }
    apps.start_period(T0 + HOUR, DAY);
    assert!(!apps.is_active(), "nothing happened in the new hour yet");
    assert!(apps.summaries(&cfg).is_empty());
    // 11 connections this hour, 5 of them to addresses of the hour before: 21 in the day.
    for i in 10..21 {
        add(&mut apps, i, T0 + HOUR + SEC);
    }
    let c = &apps.summaries(&cfg)[0];
    assert_eq!((c.connections, c.remotes), (11, 21));
    assert!(c.flags.iter().any(|f| f.kind == FlagKind::ManyRemotes));
    assert!(apps.digest_facts(judge::Period::Hour, &cfg).apps == 1);
    // A day later the first hour's addresses are forgotten (10..21 were seen again later).
    apps.start_period(T0 + HOUR + DAY, DAY);
    add(&mut apps, 30, T0 + HOUR + DAY + SEC);
    let c = &apps.summaries(&cfg)[0];
    assert_eq!((c.connections, c.remotes), (1, 12));
    assert!(!c.flags.iter().any(|f| f.kind == FlagKind::ManyRemotes));
    // Two days of silence: the app is gone.
    apps.start_period(T0 + 4 * DAY, DAY);
    apps.start_period(T0 + 4 * DAY + HOUR, DAY);
    assert!(apps.is_empty());
}
