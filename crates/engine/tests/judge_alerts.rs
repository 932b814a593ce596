//! Every alert rule, table-driven where it fits, with hand-built records: new app, new remote,
//! idle restart, inbound accepted, red flag, uncommon port, volume spike, upload burst; stable
//! ids; clock changes; caps; save/load round trips and damaged saved state.

mod judge_common;

use engine::FlowRecord;
use engine::connections::{ConnEvent, Direction};
use engine::enrich::Enrichers;
use engine::judge::{Alert, Alerter, Config, Judge, LoadError, Rule, Severity};
use engine::record::DomainSource;
use judge_common::*;

const MIN: i64 = 60 * SEC;

fn at(mut f: FlowRecord, now: i64) -> FlowRecord {
    f.start = now - SEC;
    f.end = now;
    f
}

fn web(app: &str, host: &str, out: u64, inn: u64, now: i64) -> FlowRecord {
    at(
        owned(
            with_app(
                flow(6, "192.168.1.10:50000", "140.82.112.3:443", out, inn),
                "tls",
                Some((host, DomainSource::TlsSni)),
            ),
            prog(app),
        ),
        now,
    )
}

/// (name, flows fed in order, alerts expected).
type Case = (&'static str, Vec<FlowRecord>, Vec<(Rule, Severity)>);

fn rules(a: &[Alert]) -> Vec<Rule> {
    a.iter().map(|x| x.rule).collect()
}

fn run(j: &mut Judge, f: &FlowRecord, now: i64) -> Vec<Alert> {
    let mut out = Vec::new();
    j.flow(f, &Enrichers::default(), now, &mut out);
    out
}

#[test]
fn per_record_rules() {
    let w = World::new();
    let e = w.enrichers();
    let bad = owned(
        with_app(
            flow(6, "192.168.1.10:50018", "203.0.113.7:80", 9_000_000, 1_000),
            "http",
            None,
        ),
        ProcessInfoExt::unpackaged("dropper"),
    );
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("new app and host", vec![web("firefox", "github.com", 1, 1, T0)],
         vec![(Rule::NewApp, Severity::Low), (Rule::NewRemote, Severity::Info)]),
        ("same host again", vec![web("firefox", "github.com", 1, 1, T0), web("firefox", "GitHub.com", 1, 1, T0 + SEC)],
         vec![(Rule::NewApp, Severity::Low), (Rule::NewRemote, Severity::Info)]),
        ("another host", vec![web("firefox", "github.com", 1, 1, T0), web("firefox", "example.org", 1, 1, T0 + SEC)],
         vec![(Rule::NewApp, Severity::Low), (Rule::NewRemote, Severity::Info), (Rule::NewRemote, Severity::Info)]),
        ("unknown program by address", vec![at(flow(6, "192.168.1.10:1", "198.51.100.1:443", 1, 1), T0)],
         vec![(Rule::NewApp, Severity::Low), (Rule::NewRemote, Severity::Info)]),
        ("inbound from the internet", vec![at(owned(flow(6, "198.51.100.7:51000", "192.168.1.10:22", 1, 1), prog("sshd")), T0)],
         vec![(Rule::NewApp, Severity::Low), (Rule::NewRemote, Severity::Info), (Rule::InboundAccept, Severity::Medium)]),
        ("inbound from the lan, twice", vec![
            at(owned(flow(6, "192.168.1.20:51000", "192.168.1.10:22", 1, 1), prog("sshd")), T0),
            at(owned(flow(6, "192.168.1.20:51001", "192.168.1.10:22", 1, 1), prog("sshd")), T0 + MIN)],
         vec![(Rule::NewApp, Severity::Low), (Rule::NewRemote, Severity::Info), (Rule::InboundAccept, Severity::Low)]),
        ("loopback inbound is not news", vec![at(owned(flow(6, "127.0.0.1:51000", "127.0.0.1:5432", 1, 1), prog("postgres")), T0)],
         vec![(Rule::NewApp, Severity::Low), (Rule::NewRemote, Severity::Info)]),
        ("red flow", vec![at(bad, T0)],
         vec![(Rule::NewApp, Severity::Low), (Rule::NewRemote, Severity::Info), (Rule::RedFlag, Severity::High)]),
    ];
    for (name, flows, want) in cases {
        let mut j = Judge::new(Config {
            local_addrs: vec![ip("192.168.1.10")],
            ..Config::default()
        });
        let mut got = Vec::new();
        for f in &flows {
            j.flow(f, &e, f.end, &mut got);
        }
        let g: Vec<_> = got.iter().map(|a| (a.rule, a.severity)).collect();
        assert_eq!(g, want, "{name}: {got:#?}");
        for a in &got {
            assert_eq!(a.id.len(), 16, "{name}");
            assert!(
                !a.reason.is_empty() && !a.reason.contains("{"),
                "{name}: {}",
                a.reason
            );
        }
    }
}

struct ProcessInfoExt;
impl ProcessInfoExt {
    fn unpackaged(name: &str) -> engine::sockets::ProcessInfo {
        engine::sockets::ProcessInfo {
            package: None,
            ..prog(name)
        }
    }
}

#[test]
fn reasons_and_json() {
    let mut j = Judge::new(Config::default());
    let a = run(
        &mut j,
        &at(
            owned(
                flow(6, "198.51.100.7:51000", "192.168.1.10:22", 1, 1),
                prog("sshd"),
            ),
            T0,
        ),
        T0,
    );
    let inbound = a.iter().find(|x| x.rule == Rule::InboundAccept).unwrap();
    assert_eq!(
        inbound.reason,
        "sshd accepted a connection from the internet: 198.51.100.7 reached port 22"
    );
    assert_eq!(
        a[0].reason,
        "sshd used the network for the first time: a connection from 198.51.100.7"
    );
    let mut s = String::new();
    inbound.write_json(&mut s);
    assert_eq!(
        s,
        format!(
            "{{\"type\":\"alert\",\"v\":1,\"id\":\"{}\",\"ts\":\"2024-03-01T00:00:00.000000Z\",\"severity\":\"medium\",\"rule\":\"inbound_accept\",\"app\":\"sshd\",\"remote\":\"198.51.100.7\",\"port\":22,\"bytes\":null,\"score\":null,\"reason\":\"sshd accepted a connection from the internet: 198.51.100.7 reached port 22\"}}",
            inbound.id
        )
    );
    // The same traffic gives the same ids; another day gives another id.
    let mut k = Judge::new(Config::default());
    let b = run(
        &mut k,
        &at(
            owned(
                flow(6, "198.51.100.7:51000", "192.168.1.10:22", 1, 1),
                prog("sshd"),
            ),
            T0,
        ),
        T0,
    );
    assert_eq!(
        a.iter().map(|x| &x.id).collect::<Vec<_>>(),
        b.iter().map(|x| &x.id).collect::<Vec<_>>()
    );
    let day2 = T0 + 86_400 * SEC;
    let c = run(
        &mut k,
        &at(
            owned(
                flow(6, "198.51.100.7:51002", "192.168.1.10:22", 1, 1),
                prog("sshd"),
            ),
            day2,
        ),
        day2,
    );
    assert_eq!(rules(&c), vec![Rule::InboundAccept]);
    assert_ne!(c[0].id, inbound.id);
}

#[test]
fn connection_records_raise_alerts_too() {
    let mut j = Judge::new(Config::default());
    let mut out = Vec::new();
    let c = conn(
        ConnEvent::Opened,
        Some(Direction::Inbound),
        "10.0.0.5:22",
        "203.0.113.7:51000",
        Some(prog("sshd")),
        None,
    );
    j.connection(&c, &Enrichers::default(), T0, &mut out);
    assert_eq!(
        rules(&out),
        vec![Rule::NewApp, Rule::NewRemote, Rule::InboundAccept]
    );
    out.clear();
    let mut closed = c.clone();
    closed.event = ConnEvent::Closed;
    j.connection(&closed, &Enrichers::default(), T0 + SEC, &mut out);
    assert!(out.is_empty(), "{out:#?}");
    let l = conn(
        ConnEvent::ListeningOnAll,
        None,
        "0.0.0.0:8080",
        "0.0.0.0:0",
        Some(prog("python3")),
        None,
    );
    j.connection(&l, &Enrichers::default(), T0 + 2 * SEC, &mut out);
    assert_eq!(rules(&out), vec![Rule::NewApp]);
    assert_eq!(
        out[0].reason,
        "python3 used the network for the first time: it listens on port 8080"
    );
}

#[test]
fn idle_restart_counts_monitored_time() {
    let cfg = Config::default();
    let mut j = Judge::new(cfg);
    let mut now = T0;
    run(&mut j, &web("backup", "example.org", 1, 1, now), now);
    // 25 hours of ticks every 5 minutes, without the app.
    let mut out = Vec::new();
    for _ in 0..(25 * 12) {
        now += 5 * MIN;
        j.tick(now, &mut out);
    }
    assert!(out.is_empty());
    let a = run(&mut j, &web("backup", "example.org", 1, 1, now), now);
    assert_eq!(rules(&a), vec![Rule::IdleRestart]);
    assert_eq!(
        a[0].reason,
        "backup used the network again after 25 hours without any traffic, talking to example.org"
    );
    // A jump of two days with nothing in between (suspend, a clock set forward) is not idle time.
    let mut k = Judge::new(Config::default());
    run(&mut k, &web("backup", "example.org", 1, 1, T0), T0);
    let later = T0 + 2 * 86_400 * SEC;
    assert!(run(&mut k, &web("backup", "example.org", 1, 1, later), later).is_empty());
    assert_eq!(k.alerter.monitored(), 10 * MIN);
}

#[test]
fn uncommon_port_after_warm_up() {
    let mut j = Judge::new(Config::default());
    let mut now = T0;
    // Before warm-up, new ports are learnt silently.
    run(
        &mut j,
        &at(
            owned(flow(6, "192.168.1.10:1", "140.82.112.3:8443", 1, 1), prog("app")),
            now,
        ),
        now,
    );
    for _ in 0..20 {
        now += SEC;
        run(&mut j, &web("app", "github.com", 1, 1, now), now);
    }
    now += SEC;
    let a = run(
        &mut j,
        &at(
            owned(flow(6, "192.168.1.10:1", "140.82.112.3:8443", 1, 1), prog("app")),
            now,
        ),
        now,
    );
    assert!(a.is_empty(), "{a:#?}");
    now += SEC;
    let a = run(
        &mut j,
        &at(
            owned(flow(6, "192.168.1.10:1", "140.82.112.3:6667", 1, 1), prog("app")),
            now,
        ),
        now,
    );
    assert_eq!(rules(&a), vec![Rule::UncommonPort]);
    assert_eq!(a[0].port, Some(6667));
    assert!(
        a[0].reason.starts_with(
            "app used port 6667 for the first time, talking to 140.82.112.3 (it usually uses 8443, 443"
        ),
        "{}",
        a[0].reason
    );
}

/// Feeds `minutes` active minutes of `bytes(i)` (out, in) for `app`, one flow and a tick each.
fn minutes(
    j: &mut Judge,
    app: &str,
    start: i64,
    n: i64,
    bytes: impl Fn(i64) -> (u64, u64),
) -> (i64, Vec<Alert>) {
    let mut out = Vec::new();
    let mut now = start;
    for i in 0..n {
        let (o, inn) = bytes(i);
        j.flow(
            &web(app, "example.org", o, inn, now),
            &Enrichers::default(),
            now,
            &mut out,
        );
        now += MIN;
        j.tick(now, &mut out);
    }
    (now, out)
}

fn only(a: &[Alert], r: Rule) -> Vec<&Alert> {
    a.iter().filter(|x| x.rule == r).collect()
}

#[test]
fn volume_spike_needs_warm_up_size_and_z() {
    let normal = |i: i64| (20_000, 100_000 + (i as u64 % 5) * 10_000);
    // Warmed up (40 active minutes), then 60 MB in one minute: a spike.
    let mut j = Judge::new(Config::default());
    let (now, a) = minutes(&mut j, "player", T0, 40, normal);
    assert!(only(&a, Rule::VolumeSpike).is_empty());
    let (_, a) = minutes(&mut j, "player", now, 1, |_| (100_000, 60_000_000));
    let s = only(&a, Rule::VolumeSpike);
    assert_eq!(s.len(), 1, "{a:#?}");
    assert_eq!((s[0].severity, s[0].bytes), (Severity::Medium, Some(60_100_000)));
    assert!(
        s[0].reason
            .starts_with("player moved 60.1 MB in one minute, about"),
        "{}",
        s[0].reason
    );
    // Not warmed up: no spike.
    let mut j = Judge::new(Config::default());
    let (now, _) = minutes(&mut j, "player", T0, 5, normal);
    let (_, a) = minutes(&mut j, "player", now, 1, |_| (100_000, 60_000_000));
    assert!(only(&a, Rule::VolumeSpike).is_empty());
    // Warmed up but small in absolute terms: no spike.
    let mut j = Judge::new(Config::default());
    let (now, _) = minutes(&mut j, "player", T0, 40, |_| (1_000, 2_000));
    let (_, a) = minutes(&mut j, "player", now, 1, |_| (1_000, 5_000_000));
    assert!(only(&a, Rule::VolumeSpike).is_empty());
    // A usually heavy app moving its usual amount: no spike.
    let mut j = Judge::new(Config::default());
    let (now, _) = minutes(&mut j, "player", T0, 40, |i| {
        (100_000, 50_000_000 + (i as u64 % 3) * 5_000_000)
    });
    let (_, a) = minutes(&mut j, "player", now, 1, |_| (100_000, 58_000_000));
    assert!(only(&a, Rule::VolumeSpike).is_empty(), "{a:#?}");
}

#[test]
fn long_flows_count_at_their_rate() {
    // A 100 MB download over 50 minutes is 2 MB a minute, not a spike.
    let mut j = Judge::new(Config::default());
    let (now, _) = minutes(&mut j, "player", T0, 40, |i| {
        (20_000, 1_000_000 + (i as u64 % 5) * 100_000)
    });
    let mut f = web("player", "example.org", 100_000, 100_000_000, now);
    f.start = now - 50 * MIN;
    let mut out = Vec::new();
    j.flow(&f, &Enrichers::default(), now, &mut out);
    j.tick(now + MIN, &mut out);
    assert!(only(&out, Rule::VolumeSpike).is_empty(), "{out:#?}");
}

#[test]
fn upload_burst() {
    // A fresh app sending 25 MB in a minute and receiving little.
    let mut j = Judge::new(Config::default());
    let (_, a) = minutes(&mut j, "sync", T0, 1, |_| (25_000_000, 100_000));
    let b = only(&a, Rule::UploadBurst);
    assert_eq!(b.len(), 1, "{a:#?}");
    assert_eq!(b[0].severity, Severity::High);
    assert_eq!(
        b[0].reason,
        "sync sent 25.0 MB in one minute while receiving only 100.0 kB: a large one-way upload like this is how data theft can look"
    );
    // Balanced traffic of the same size: no burst.
    let mut j = Judge::new(Config::default());
    let (_, a) = minutes(&mut j, "sync", T0, 1, |_| (25_000_000, 20_000_000));
    assert!(only(&a, Rule::UploadBurst).is_empty());
    // A backup tool that always uploads that much has learnt it.
    let mut j = Judge::new(Config::default());
    let (now, _) = minutes(&mut j, "backup", T0, 40, |i| {
        (24_000_000 + (i as u64 % 4) * 1_000_000, 50_000)
    });
    let (_, a) = minutes(&mut j, "backup", now, 1, |_| (25_000_000, 50_000));
    assert!(only(&a, Rule::UploadBurst).is_empty(), "{a:#?}");
}

#[test]
fn clock_going_back_never_fires_a_spike() {
    let mut j = Judge::new(Config::default());
    let (now, _) = minutes(&mut j, "player", T0, 40, |i| {
        (20_000, 100_000 + (i as u64 % 5) * 10_000)
    });
    let before = j.alerter.monitored();
    let mut out = Vec::new();
    j.flow(
        &web("player", "example.org", 100_000, 60_000_000, now),
        &Enrichers::default(),
        now,
        &mut out,
    );
    // The clock is set back an hour before the minute closes.
    let back = now - 3600 * SEC;
    j.tick(back, &mut out);
    j.tick(back + 2 * MIN, &mut out);
    assert!(out.is_empty(), "{out:#?}");
    assert!(j.alerter.monitored() >= before);
    assert_eq!(j.alerter.monitored(), before + 2 * MIN);
    // Extreme times do not panic.
    j.tick(i64::MIN, &mut out);
    j.tick(i64::MAX, &mut out);
    j.tick(i64::MIN, &mut out);
    j.flow(
        &web("player", "example.org", u64::MAX, u64::MAX, i64::MAX),
        &Enrichers::default(),
        i64::MAX,
        &mut out,
    );
    j.tick(0, &mut out);
}

#[test]
fn caps_bound_memory() {
    let mut cfg = Config::default();
    cfg.alerts.max_apps = 2;
    cfg.alerts.max_remotes_per_app = 3;
    let mut j = Judge::new(cfg);
    for (i, h) in ["a.example", "b.example", "c.example", "d.example"]
        .iter()
        .enumerate()
    {
        let now = T0 + i as i64 * SEC;
        run(&mut j, &web("app", h, 1, 1, now), now);
    }
    assert!(!j.alerter.knows(Some("app"), "a.example"), "oldest host dropped");
    assert!(j.alerter.knows(Some("app"), "d.example"));
    for (i, a) in ["x", "y"].iter().enumerate() {
        let now = T0 + (10 + i as i64) * SEC;
        run(&mut j, &web(a, "a.example", 1, 1, now), now);
    }
    assert_eq!(j.alerter.apps(), 2);
    assert!(
        !j.alerter.knows(Some("app"), "d.example"),
        "least recently seen app dropped"
    );
}

#[test]
fn save_load_round_trip() {
    let mut j = Judge::new(Config::default());
    let (now, _) = minutes(&mut j, "player", T0, 40, |i| {
        (20_000, 100_000 + (i as u64 % 5) * 10_000)
    });
    run(
        &mut j,
        &at(
            owned(
                flow(6, "198.51.100.7:51000", "192.168.1.10:22", 1, 1),
                prog("sshd"),
            ),
            now,
        ),
        now,
    );
    run(
        &mut j,
        &at(flow(17, "192.168.1.10:5000", "198.51.100.1:53", 1, 1), now),
        now,
    );
    let bytes = j.alerter.save();
    let loaded = Alerter::load(&bytes).expect("loads");
    assert_eq!(loaded.save(), bytes, "save(load(x)) == x");
    assert_eq!(loaded.apps(), 3);
    assert_eq!(loaded.monitored(), j.alerter.monitored());
    assert!(loaded.knows(Some("player"), "example.org"));
    assert!(loaded.knows(None, "198.51.100.1"));
    // The loaded baseline still knows the volume: a spike is seen at once.
    let mut k = Judge::new(Config::default());
    k.alerter = loaded;
    let (_, a) = minutes(&mut k, "player", now + MIN, 1, |_| (100_000, 60_000_000));
    assert_eq!(rules(&a), vec![Rule::VolumeSpike]);
    // Already-raised ids are remembered: the same inbound alert on the same day is not raised twice.
    let mut k = Judge::new(Config::default());
    k.alerter = Alerter::load(&bytes).unwrap();
    let a = run(
        &mut k,
        &at(
            owned(
                flow(6, "198.51.100.7:51009", "192.168.1.10:22", 1, 1),
                prog("sshd"),
            ),
            now,
        ),
        now,
    );
    assert!(a.is_empty(), "{a:#?}");
    // An empty alerter round-trips too.
    assert_eq!(Alerter::load(&Alerter::new().save()).unwrap().apps(), 0);
}

#[test]
fn damaged_state_is_an_error_not_a_panic() {
    let mut j = Judge::new(Config::default());
    minutes(&mut j, "player", T0, 5, |_| (1, 1));
    run(
        &mut j,
        &at(flow(17, "192.168.1.10:5000", "198.51.100.1:53", 1, 1), T0),
        T0,
    );
    let good = j.alerter.save();
    assert_eq!(Alerter::load(b"").unwrap_err(), LoadError::BadMagic);
    assert_eq!(
        Alerter::load(b"SQLite format 3\0").unwrap_err(),
        LoadError::BadMagic
    );
    let mut v2 = good.clone();
    v2[4] = 2;
    assert_eq!(Alerter::load(&v2).unwrap_err(), LoadError::UnsupportedVersion(2));
    for n in 0..good.len() {
        assert!(Alerter::load(&good[..n]).is_err(), "truncated at {n}");
    }
    for i in 0..good.len() {
        for bit in [0x01u8, 0x80] {
            let mut b = good.clone();
            b[i] ^= bit;
            let e = Alerter::load(&b).expect_err("a flipped bit is caught");
            assert!(!e.to_string().is_empty());
        }
    }
    let mut long = good.clone();
    long.push(0);
    assert!(Alerter::load(&long).is_err());
    let msg = LoadError::Checksum.to_string();
    assert!(msg.contains("damaged") && msg.contains("delete"), "{msg}");
}
