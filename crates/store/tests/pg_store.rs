//! The PostgreSQL store against a real PostgreSQL server that these tests start themselves
//! (`initdb` + `pg_ctl` as the `postgres` user, unix socket in a temp directory; one server per
//! test binary, one database per test): round trips of every record kind, queries, alert
//! dedup, day partitions, retention, purge, concurrent writers, migrations, samples, errors.

#[path = "support/pg_server.rs"]
mod pg_server;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use engine::connections::{ConnEvent, ConnectionRecord, Direction};
use engine::sockets::{SockProto, TcpState};
use engine::{Engine, EngineConfig, Frame, Record};
use pg_server::{PgServer, TestDb, shared};
use store::crypto::SampleKey;
use store::pg::{Layout, PgOptions, PgStore, SCHEMA_VERSION};
use store::sqlite::testdata;
use store::{
    AlertRow, Backend, Batch, DeviceId, Purge, Query, Retention, RollupGrain, Sample, SampleDir, Severity,
    StoreError,
};

const T0: i64 = 1_763_780_400_000_000_000; // 2025-11-22T03:00:00Z
const SEC: i64 = 1_000_000_000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

/// A database on the shared server, or `None` (skip) when PostgreSQL is absent outside CI.
fn db(name: &str) -> Option<TestDb<'static>> {
    shared().map(|s| s.create_db(name))
}

fn open(db: &TestDb<'_>) -> PgStore {
    PgStore::connect(&db.url(), DeviceId(0)).unwrap_or_else(|e| panic!("connect: {e}"))
}

/// A sample key in a fresh directory (removed at the end).
struct KeyDir(PathBuf);

impl KeyDir {
    fn new(tag: &str) -> KeyDir {
        let p = std::env::temp_dir().join(format!("nv-pgkey-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        KeyDir(p)
    }
    fn key(&self) -> SampleKey {
        SampleKey::load_or_create(&self.0).unwrap()
    }
}

impl Drop for KeyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn batch(device: u32, records: Vec<Record>) -> Batch {
    Batch {
        device: DeviceId(device),
        records,
        ..Batch::default()
    }
}

fn json_of(r: &Record) -> String {
    let mut s = String::new();
    r.write_json(&mut s);
    s
}

fn alert(id: &str, ts: i64, app: Option<&str>, remote: Option<&str>) -> AlertRow {
    AlertRow {
        id: id.to_string(),
        ts,
        severity: Severity::Medium,
        rule: "new_remote".into(),
        app: app.map(str::to_string),
        remote: remote.map(str::to_string),
        reason: format!(
            "{} talked to {} for the first time",
            app.unwrap_or("?"),
            remote.unwrap_or("?")
        ),
        json: format!("{{\"type\":\"alert\",\"id\":\"{id}\"}}"),
    }
}

/// Records of every application kind, from the shared captures, until each kind is found.
fn capture_records() -> Vec<Record> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/pcaps"));
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (the shared captures must be beside the checkout)",
                dir.display()
            )
        })
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
        .collect();
    names.sort();
    let want = ["dns", "tls", "quic", "http", "stun", "dhcp"];
    let mut seen: HashMap<&'static str, usize> = HashMap::new();
    let mut out = Vec::new();
    for p in names {
        if want.iter().all(|k| seen.get(k).is_some_and(|n| *n >= 2)) {
            break;
        }
        let data = std::fs::read(&p).unwrap();
        let Ok(mut r) = wire::capture::SliceReader::new(&data) else {
            continue;
        };
        let mut engine = Engine::new(EngineConfig::default());
        let mut recs = Vec::new();
        while let Some(Ok(pkt)) = r.next_packet() {
            engine.ingest(
                &Frame {
                    ts: pkt.ts_nanos,
                    link: pkt.link,
                    orig_len: pkt.orig_len,
                    data: pkt.data,
                },
                &mut recs,
            );
        }
        engine.finish(&mut recs);
        let useful = recs.iter().any(|r| {
            let k = r.type_name();
            k != "flow" && seen.get(k).copied().unwrap_or(0) < 2
        });
        if useful {
            for r in &recs {
                *seen.entry(r.type_name()).or_default() += 1;
            }
            out.extend(recs);
        }
    }
    for k in want {
        assert!(seen.contains_key(k), "no {k} record in the shared captures");
    }
    out
}

fn connection(ts: i64, app: &str) -> Record {
    let mut process = testdata::process(2, false);
    process.name = app.to_string();
    Record::Connection(Box::new(ConnectionRecord {
        ts,
        event: ConnEvent::Opened,
        proto: SockProto::Tcp,
        direction: Some(Direction::Outbound),
        local: "192.168.1.10:40000".parse().unwrap(),
        remote: "198.51.100.7:443".parse().unwrap(),
        state: Some(TcpState::Established),
        process: Some(process),
        tcp: None,
        uid: 1000,
        inode: 4242,
    }))
}

#[test]
fn round_trip_every_record_kind() {
    let Some(db) = db("t_round_trip") else { return };
    let kd = KeyDir::new("rt");
    let opts = PgOptions {
        sample_key: Some(kd.key()),
        ..PgOptions::default()
    };
    let mut s = PgStore::connect_with(&db.url(), DeviceId(7), opts).unwrap();
    assert_eq!(s.layout(), Layout::DayPartitions);

    let mut records = capture_records();
    records.extend(testdata::flows(0, 300, T0, 3 * SEC));
    records.push(connection(T0 + 5 * SEC, "firefox"));
    let flows_in: Vec<&engine::FlowRecord> = records
        .iter()
        .filter_map(|r| if let Record::Flow(f) = r { Some(f) } else { None })
        .collect();
    let samples = vec![
        Sample {
            flow_id: flows_in[0].id,
            flow_start: flows_in[0].start,
            dir: SampleDir::ToServer,
            ts: flows_in[0].start,
            bytes: b"GET /secret HTTP/1.1\r\n".to_vec(),
        },
        Sample {
            flow_id: flows_in[0].id,
            flow_start: flows_in[0].start,
            dir: SampleDir::ToClient,
            ts: flows_in[0].start + 1_000,
            bytes: vec![0, 1, 2, 255],
        },
    ];
    let alerts = vec![alert("a1", T0, Some("curl"), Some("example.com"))];
    let b = Batch {
        device: DeviceId(7),
        records: records.clone(),
        alerts: alerts.clone(),
        samples: samples.clone(),
        source: None,
    };
    let w = s.write_batch(&b).unwrap();
    let n_events = records.len() - flows_in.len();
    assert_eq!(w.flows as usize, flows_in.len());
    assert_eq!(w.events as usize, n_events);
    assert_eq!((w.alerts, w.samples, w.duplicate_alerts), (1, 2, 0));

    // Flows: every field back, JSON byte for byte.
    let got = s.flows(&Query::default()).unwrap();
    assert_eq!(got.len(), flows_in.len());
    let by_key: HashMap<(u64, i64), &store::StoredFlow> =
        got.iter().map(|f| ((f.flow_id, f.start), f)).collect();
    for f in &flows_in {
        let g = by_key[&(f.id, f.start)];
        let mut j = String::new();
        f.write_json(&mut j);
        assert_eq!(g.json, j);
        assert_eq!(g.device, DeviceId(7));
        assert_eq!((g.end, g.proto), (f.end, f.proto));
        assert_eq!(g.client, SocketAddr::new(f.client.ip, f.client.port));
        assert_eq!(g.server, SocketAddr::new(f.server.ip, f.server.port));
        assert_eq!(g.app_proto.as_deref(), f.app.app_proto);
        assert_eq!(g.domain, f.app.domain);
        assert_eq!(g.app.as_deref(), f.process.as_ref().map(|p| p.name.as_str()));
        assert_eq!(g.pid, f.process.as_ref().map(|p| p.pid));
        assert_eq!(g.exe, f.process.as_ref().and_then(|p| p.exe.clone()));
        assert_eq!(
            (
                g.packets_to_server,
                g.packets_to_client,
                g.bytes_to_server,
                g.bytes_to_client
            ),
            (
                f.to_server.packets,
                f.to_client.packets,
                f.to_server.bytes,
                f.to_client.bytes
            )
        );
    }
    // Newest first.
    assert!(got.windows(2).all(|w| w[0].start >= w[1].start));

    // Events: the same multiset of JSON lines.
    let mut want: Vec<String> = records
        .iter()
        .filter(|r| !matches!(r, Record::Flow(_)))
        .map(json_of)
        .collect();
    let mut ev = s.events(&Query::default()).unwrap();
    want.sort();
    ev.sort();
    assert_eq!(ev, want);

    assert_eq!(s.alerts(&Query::default()).unwrap(), alerts);
    let mut back = s.samples(&Query::default()).unwrap();
    back.sort_by_key(|x| x.ts);
    assert_eq!(back, samples);

    // Rollups: totals equal the flows'.
    for grain in [RollupGrain::Minute, RollupGrain::Hour] {
        let r = s.rollups(grain, &Query::default()).unwrap();
        let flows: u64 = r.iter().map(|x| x.flows).sum();
        let bytes: u64 = r.iter().map(|x| x.bytes_to_client).sum();
        assert_eq!(flows as usize, flows_in.len());
        assert_eq!(bytes, flows_in.iter().map(|f| f.to_client.bytes).sum::<u64>());
        let width = if grain == RollupGrain::Minute { MIN } else { HOUR };
        assert!(r.iter().all(|x| x.bucket % width == 0 && x.device == DeviceId(7)));
    }
    // The connection record's process is its app; its remote address is a host.
    let q = Query {
        app: Some("FireFox".into()),
        ..Query::default()
    };
    assert!(
        s.events(&q)
            .unwrap()
            .iter()
            .any(|j| j.contains("\"type\":\"connection\""))
    );
    let q = Query {
        host: Some("198.51.100.7".into()),
        ..Query::default()
    };
    assert_eq!(s.events(&q).unwrap().len(), 1);

    // State.
    assert_eq!(s.get_state("baseline").unwrap(), None);
    s.put_state("baseline", b"v1").unwrap();
    s.put_state("baseline", b"v2").unwrap();
    assert_eq!(s.get_state("baseline").unwrap().as_deref(), Some(&b"v2"[..]));
    s.set_device(DeviceId(8));
    assert_eq!(s.get_state("baseline").unwrap(), None);
}

#[test]
fn queries_filter_by_app_host_time_and_limit() {
    let Some(db) = db("t_queries") else { return };
    let mut s = open(&db);
    let recs = testdata::flows(0, 2000, T0, 2 * SEC);
    s.write_batch(&batch(1, recs[..1000].to_vec())).unwrap();
    s.write_batch(&batch(2, recs[1000..].to_vec())).unwrap();
    let flows: Vec<&engine::FlowRecord> = recs
        .iter()
        .filter_map(|r| if let Record::Flow(f) = r { Some(f) } else { None })
        .collect();

    let app = |f: &engine::FlowRecord| f.process.as_ref().map(|p| p.name.clone());
    let q = Query {
        app: Some("CURL".into()),
        ..Query::default()
    };
    let n = flows.iter().filter(|f| app(f).as_deref() == Some("curl")).count();
    assert!(n > 10);
    assert_eq!(s.flows(&q).unwrap().len(), n);

    // A domain matches itself and its subdomains, not a longer name ending the same way.
    let named = flows.iter().find_map(|f| f.app.domain.clone()).unwrap();
    let target = named.split_once('.').unwrap().1; // "site17.example.com"
    let longer = format!("site1{}", &target[4..]); // "site117.example.com" 
    let n = flows
        .iter()
        .filter(|f| {
            f.app
                .domain
                .as_deref()
                .is_some_and(|d| d == target || d.ends_with(&format!(".{target}")))
        })
        .count();
    assert!(n > 0);
    let q = Query {
        host: Some(target.to_uppercase()),
        ..Query::default()
    };
    let got = s.flows(&q).unwrap();
    assert_eq!(got.len(), n);
    assert!(got.iter().all(|f| f.domain.as_deref().unwrap().ends_with(target)));
    assert!(
        !got.iter()
            .any(|f| f.domain.as_deref().unwrap().ends_with(&longer))
    );

    // An address on either end.
    let ip = flows[5].server.ip;
    let n = flows
        .iter()
        .filter(|f| f.server.ip == ip || f.client.ip == ip)
        .count();
    let q = Query {
        host: Some(ip.to_string()),
        ..Query::default()
    };
    assert_eq!(s.flows(&q).unwrap().len(), n);
    let cip = flows[5].client.ip;
    let n = flows
        .iter()
        .filter(|f| f.server.ip == cip || f.client.ip == cip)
        .count();
    let q = Query {
        host: Some(cip.to_string()),
        ..Query::default()
    };
    assert_eq!(s.flows(&q).unwrap().len(), n);

    // Time bounds (inclusive since, exclusive until), device, limit newest first.
    let (since, until) = (flows[300].start, flows[700].start);
    let n = flows
        .iter()
        .filter(|f| f.start >= since && f.start < until)
        .count();
    let q = Query {
        since: Some(since),
        until: Some(until),
        ..Query::default()
    };
    assert_eq!(s.flows(&q).unwrap().len(), n);
    let q = Query {
        device: Some(DeviceId(2)),
        limit: Some(5),
        ..Query::default()
    };
    let got = s.flows(&q).unwrap();
    let mut newest: Vec<i64> = flows[1000..].iter().map(|f| f.start).collect();
    newest.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(got.iter().map(|f| f.start).collect::<Vec<_>>(), newest[..5]);
    assert!(got.iter().all(|f| f.device == DeviceId(2)));

    // Unknown app or host: nothing (and no error).
    for q in [
        Query {
            app: Some("nosuchapp".into()),
            ..Query::default()
        },
        Query {
            host: Some("nosuch.invalid".into()),
            ..Query::default()
        },
    ] {
        assert!(s.flows(&q).unwrap().is_empty());
        assert!(s.rollups(RollupGrain::Hour, &q).unwrap().is_empty());
    }
    // Rollups by app agree with the flows.
    let q = Query {
        app: Some("curl".into()),
        ..Query::default()
    };
    let r: u64 = s
        .rollups(RollupGrain::Minute, &q)
        .unwrap()
        .iter()
        .map(|x| x.flows)
        .sum();
    assert_eq!(
        r as usize,
        flows.iter().filter(|f| app(f).as_deref() == Some("curl")).count()
    );
}

#[test]
fn alerts_are_deduplicated() {
    let Some(db) = db("t_alerts") else { return };
    let mut s = open(&db);
    let a = alert("x1", T0, Some("curl"), Some("a.example.com"));
    let b = alert("x2", T0 + SEC, Some("ssh"), Some("10.0.0.9"));
    let mut batch1 = batch(1, vec![]);
    batch1.alerts = vec![a.clone(), b.clone(), a.clone()];
    let w = s.write_batch(&batch1).unwrap();
    assert_eq!((w.alerts, w.duplicate_alerts), (2, 1));
    let w = s.write_batch(&batch1).unwrap();
    assert_eq!((w.alerts, w.duplicate_alerts), (0, 3));
    // Another device may raise an alert with the same id.
    let mut batch2 = batch(2, vec![]);
    batch2.alerts = vec![a.clone()];
    assert_eq!(s.write_batch(&batch2).unwrap().alerts, 1);
    assert_eq!(s.alerts(&Query::default()).unwrap().len(), 3);
    let q = Query {
        host: Some("example.com".into()),
        ..Query::default()
    };
    assert_eq!(s.alerts(&q).unwrap().len(), 2);
    let q = Query {
        host: Some("10.0.0.9".into()),
        device: Some(DeviceId(1)),
        ..Query::default()
    };
    assert_eq!(s.alerts(&q).unwrap(), vec![b]);
    let q = Query {
        since: Some(T0 + 1),
        ..Query::default()
    };
    assert_eq!(s.alerts(&q).unwrap().len(), 1);
}

fn partitions_of(s: &mut PgStore) -> Vec<String> {
    s.flow_partitions().unwrap()
}

#[test]
fn partitions_are_created_across_day_boundaries() {
    let Some(db) = db("t_partitions") else { return };
    let mut s = open(&db);
    assert!(partitions_of(&mut s).is_empty());
    let midnight = (T0 / DAY + 1) * DAY; // 2025-11-23T00:00:00Z
    let mut recs = testdata::flows(0, 4, midnight - 2 * SEC, SEC);
    if let Record::Flow(f) = &mut recs[1] {
        f.start = midnight - 1; // the last nanosecond of the 22nd
    }
    if let Record::Flow(f) = &mut recs[2] {
        f.start = midnight; // the first of the 23rd
    }
    s.write_batch(&batch(1, recs.clone())).unwrap();
    // The days written and one day ahead.
    assert_eq!(
        partitions_of(&mut s),
        ["flows_p20251122", "flows_p20251123", "flows_p20251124"]
    );
    let mut c = db.client();
    let rows = c
        .query(
            "SELECT tableoid::regclass::text, start_ns FROM netvigil.flows ORDER BY start_ns",
            &[],
        )
        .unwrap();
    for r in rows {
        let (table, ns): (String, i64) = (r.get(0), r.get(1));
        let want = if ns < midnight {
            "netvigil.flows_p20251122"
        } else {
            "netvigil.flows_p20251123"
        };
        assert_eq!(table, want, "flow at {ns}");
    }
    // A second store learns the existing partitions and writes without DDL.
    let mut s2 = open(&db);
    s2.write_batch(&batch(1, testdata::flows(10, 3, midnight + HOUR, SEC)))
        .unwrap();
    assert_eq!(partitions_of(&mut s2).len(), 3);
    // Queries bounded in time see only their day.
    let q = Query {
        since: Some(midnight),
        ..Query::default()
    };
    assert_eq!(s.flows(&q).unwrap().len(), 2 + 3);
}

#[test]
fn retention_drops_whole_day_partitions() {
    let Some(db) = db("t_retention") else { return };
    let mut s = open(&db);
    let day0 = T0 / DAY * DAY;
    let mut all = Vec::new();
    for d in 0..10 {
        // 50 flows spread over each day, and a DNS-free event stream (connections).
        let mut recs = testdata::flows(0, 50, day0 + d as i64 * DAY + HOUR, 20 * MIN);
        recs.push(connection(day0 + d as i64 * DAY + 2 * HOUR, "curl"));
        all.extend(recs.clone());
        let mut b = batch(1, recs);
        b.alerts = vec![alert(&format!("d{d}"), day0 + d as i64 * DAY, None, None)];
        s.write_batch(&b).unwrap();
    }
    let before = partitions_of(&mut s);
    assert_eq!(before.len(), 11); // 10 days + 1 ahead
    let now = day0 + 9 * DAY + 12 * HOUR;
    let cutoff = now - (3 * DAY + 6 * HOUR); // the middle of day 6
    let policy = Retention {
        raw_max_age: Some(3 * DAY + 6 * HOUR),
        minute_rollup_max_age: Some(5 * DAY),
        hour_rollup_max_age: Some(8 * DAY),
        max_bytes: None,
    };
    let flow_starts: Vec<i64> = all
        .iter()
        .filter_map(|r| {
            if let Record::Flow(f) = r {
                Some(f.start)
            } else {
                None
            }
        })
        .collect();
    let expired = flow_starts.iter().filter(|t| **t < cutoff).count() as u64;
    let removed = s.retain(now, &policy).unwrap();
    assert_eq!(removed.flows, expired);
    assert_eq!(removed.events, 6 + u64::from(day0 + 6 * DAY + 2 * HOUR < cutoff));
    assert_eq!(removed.alerts, 2); // days 0 and 1 are older than 8 days
    assert!(removed.rollups > 0);
    let after = partitions_of(&mut s);
    // Days 0..=5 dropped whole; day 6 kept (partly expired, deleted by age).
    assert_eq!(after.len(), before.len() - 6, "{after:?}");
    assert_eq!(after[0], before[6]);
    let left = s.flows(&Query::default()).unwrap();
    assert_eq!(left.len() as u64, flow_starts.len() as u64 - expired);
    assert!(left.iter().all(|f| f.start >= cutoff));
    assert!(removed.bytes_after < removed.bytes_before, "{removed:?}");
    // Minute rollups older than 5 days are gone, hour rollups older than 8.
    let m = s.rollups(RollupGrain::Minute, &Query::default()).unwrap();
    assert!(m.iter().all(|r| r.bucket >= now - 5 * DAY - MIN));
    let h = s.rollups(RollupGrain::Hour, &Query::default()).unwrap();
    assert!(h.iter().all(|r| r.bucket >= now - 8 * DAY - HOUR));
    assert!(h.iter().any(|r| r.bucket < now - 5 * DAY));
    // Idempotent.
    let again = s.retain(now, &policy).unwrap();
    assert_eq!((again.flows, again.events, again.alerts), (0, 0, 0));

    // A size cap drops the oldest whole days (never today's).
    let size = s.size_bytes().unwrap();
    let cap = Retention {
        raw_max_age: None,
        minute_rollup_max_age: None,
        hour_rollup_max_age: None,
        max_bytes: Some(size / 2),
    };
    let r = s.retain(now, &cap).unwrap();
    assert!(r.flows > 0 && r.bytes_after < r.bytes_before, "{r:?}");
    let left = partitions_of(&mut s);
    assert!(left.len() < after.len());
    assert!(left.contains(&"flows_p20251201".to_string()), "{left:?}"); // today (day 9)
}

#[test]
fn purge_filters() {
    let Some(db) = db("t_purge") else { return };
    let kd = KeyDir::new("purge");
    let opts = PgOptions {
        sample_key: Some(kd.key()),
        ..PgOptions::default()
    };
    let mut s = PgStore::connect_with(&db.url(), DeviceId(0), opts).unwrap();
    let recs = testdata::flows(0, 3000, T0, SEC);
    let flows: Vec<engine::FlowRecord> = recs
        .iter()
        .filter_map(|r| {
            if let Record::Flow(f) = r {
                Some(f.clone())
            } else {
                None
            }
        })
        .collect();
    let mut b = batch(1, recs.clone());
    b.samples = flows[..50]
        .iter()
        .map(|f| Sample {
            flow_id: f.id,
            flow_start: f.start,
            dir: SampleDir::ToServer,
            ts: f.start,
            bytes: b"hello".to_vec(),
        })
        .collect();
    b.alerts = vec![
        alert("p1", T0, Some("curl"), Some("h1.site5.example.com")),
        alert("p2", T0, Some("ssh"), Some("site5.example.com")),
        alert("p3", T0 + 2000 * SEC, Some("git"), Some("other.example.org")),
    ];
    s.write_batch(&b).unwrap();
    let app = |f: &engine::FlowRecord| f.process.as_ref().map(|p| p.name.clone());

    // By app.
    let n_curl = flows.iter().filter(|f| app(f).as_deref() == Some("curl")).count() as u64;
    let samples_curl = flows[..50]
        .iter()
        .filter(|f| app(f).as_deref() == Some("curl"))
        .count() as u64;
    let r = s.purge(&Purge::App("curl".into())).unwrap();
    assert_eq!(r.flows, n_curl);
    assert_eq!(r.samples, samples_curl);
    assert_eq!(r.alerts, 1);
    assert!(r.rollups > 0);
    let q = Query {
        app: Some("curl".into()),
        ..Query::default()
    };
    assert!(s.flows(&q).unwrap().is_empty());
    assert!(s.rollups(RollupGrain::Minute, &q).unwrap().is_empty());
    let mut c = db.client();
    let names: i64 = c
        .query_one(
            "SELECT count(*) FROM netvigil.strings WHERE s IN ('curl', '/usr/bin/curl')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(names, 0, "the purged app's name is forgotten too");

    // By domain (and its subdomains).
    let rest: Vec<&engine::FlowRecord> = flows
        .iter()
        .filter(|f| app(f).as_deref() != Some("curl"))
        .collect();
    let dom = "site5.example.com";
    let n_dom = rest
        .iter()
        .filter(|f| {
            f.app
                .domain
                .as_deref()
                .is_some_and(|d| d == dom || d.ends_with(".site5.example.com"))
        })
        .count() as u64;
    assert!(n_dom > 0);
    let r = s.purge(&Purge::Host(dom.into())).unwrap();
    assert_eq!(r.flows, n_dom);
    assert_eq!(r.alerts, 1); // p2 (p1 went with curl)
    let left: i64 = c
        .query_one(
            "SELECT count(*) FROM netvigil.strings WHERE s LIKE '%site5.example.com'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(left, 0);

    // By address.
    let rest: Vec<&engine::FlowRecord> = rest
        .into_iter()
        .filter(|f| !f.app.domain.as_deref().is_some_and(|d| d.ends_with(dom)))
        .collect();
    let ip: IpAddr = rest[0].server.ip;
    let n_ip = rest
        .iter()
        .filter(|f| f.server.ip == ip || f.client.ip == ip)
        .count() as u64;
    let r = s.purge(&Purge::Host(ip.to_string())).unwrap();
    assert_eq!(r.flows, n_ip);
    let rest: Vec<&engine::FlowRecord> = rest
        .into_iter()
        .filter(|f| f.server.ip != ip && f.client.ip != ip)
        .collect();

    // Before a time.
    let t = T0 + 1500 * SEC;
    let n_old = rest.iter().filter(|f| f.start < t).count() as u64;
    let r = s.purge(&Purge::Before(t)).unwrap();
    assert_eq!(r.flows, n_old);
    assert!(s.flows(&Query::default()).unwrap().iter().all(|f| f.start >= t));
    assert_eq!(
        s.flows(&Query::default()).unwrap().len() as u64,
        rest.len() as u64 - n_old
    );

    // Everything; the store keeps working.
    let r = s.purge(&Purge::All).unwrap();
    assert_eq!(r.flows, rest.len() as u64 - n_old);
    assert_eq!(r.alerts, 1);
    assert!(r.bytes_after < r.bytes_before, "{r:?}");
    assert!(s.flows(&Query::default()).unwrap().is_empty());
    assert!(s.alerts(&Query::default()).unwrap().is_empty());
    let strings: i64 = c
        .query_one("SELECT count(*) FROM netvigil.strings", &[])
        .unwrap()
        .get(0);
    assert_eq!(strings, 0);
    s.write_batch(&batch(1, testdata::flows(0, 10, T0, SEC))).unwrap();
    assert_eq!(s.flows(&Query::default()).unwrap().len(), 10);
    assert!(
        s.flows(&Query::default())
            .unwrap()
            .iter()
            .any(|f| f.app.is_some())
    );
}

#[test]
fn two_writers_share_one_database() {
    let Some(db) = db("t_concurrent") else { return };
    let url = db.url();
    // Both start on an empty database: migrations, partitions, strings and rollups race.
    let workers: Vec<_> = (0..2u32)
        .map(|w| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut s = PgStore::connect(&url, DeviceId(w)).unwrap();
                let mut n = 0;
                for i in 0..20u64 {
                    // Both write the same flows on the same days under device 1, and their own
                    // under device 10 + w; a batch spans a midnight every few rounds.
                    let t = T0 + (i as i64 % 7) * (DAY / 3);
                    let mut recs = testdata::flows(i * 500, 500, t, SEC);
                    recs.push(connection(t, "curl"));
                    s.write_batch(&batch(1, recs.clone())).unwrap();
                    s.write_batch(&batch(10 + w, recs)).unwrap();
                    n += 2;
                }
                n
            })
        })
        .collect();
    let batches: u32 = workers.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(batches, 80);
    let mut s = open(&db);
    let per_writer = 20 * 500;
    let count = |s: &mut PgStore, d: u32| {
        s.flows(&Query {
            device: Some(DeviceId(d)),
            ..Query::default()
        })
        .unwrap()
        .len()
    };
    assert_eq!(count(&mut s, 1), 2 * per_writer);
    assert_eq!(count(&mut s, 10), per_writer);
    assert_eq!(count(&mut s, 11), per_writer);
    assert_eq!(s.events(&Query::default()).unwrap().len(), 80);
    let r: u64 = s
        .rollups(
            RollupGrain::Hour,
            &Query {
                device: Some(DeviceId(1)),
                ..Query::default()
            },
        )
        .unwrap()
        .iter()
        .map(|x| x.flows)
        .sum();
    assert_eq!(r as usize, 2 * per_writer);
    let mut c = db.client();
    let dup: i64 = c
        .query_one("SELECT count(*) - count(DISTINCT s) FROM netvigil.strings", &[])
        .unwrap()
        .get(0);
    assert_eq!(dup, 0);
}

#[test]
fn migrations_are_idempotent_and_guarded() {
    let Some(db) = db("t_migrations") else { return };
    let url = db.url();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || PgStore::connect(&url, DeviceId(0)).map(|_| ()))
        })
        .collect();
    for h in handles {
        h.join().unwrap().unwrap();
    }
    let mut s = open(&db);
    s.write_batch(&batch(1, testdata::flows(0, 10, T0, SEC))).unwrap();
    drop(s);
    let mut s = open(&db);
    assert_eq!(s.flows(&Query::default()).unwrap().len(), 10);
    let mut c = db.client();
    let versions: Vec<i32> = c
        .query(
            "SELECT version FROM netvigil.schema_version ORDER BY version",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, (1..=SCHEMA_VERSION as i32).collect::<Vec<_>>());

    // A newer schema is refused, naming the server.
    c.execute(
        "INSERT INTO netvigil.schema_version (version, description) VALUES (999, 'future')",
        &[],
    )
    .unwrap();
    match PgStore::connect(&url, DeviceId(0)) {
        Err(StoreError::TooNew {
            found: 999,
            supported,
            path,
        }) => {
            assert_eq!(supported, SCHEMA_VERSION);
            assert!(path.to_string_lossy().contains(&db.name), "{path:?}");
        }
        other => panic!("expected TooNew, got {other:?}"),
    }
    // A foreign "netvigil" schema is left alone.
    let foreign = db.server.create_db("t_foreign");
    let mut f = foreign.client();
    f.batch_execute("CREATE SCHEMA netvigil; CREATE TABLE netvigil.flows (x int)")
        .unwrap();
    match PgStore::connect(&foreign.url(), DeviceId(0)) {
        Err(e @ StoreError::NotOurs { .. }) => assert!(e.to_string().contains("not a netvigil database")),
        other => panic!("expected NotOurs, got {other:?}"),
    }
}

#[test]
fn samples_are_sealed_and_tampering_is_detected() {
    let Some(db) = db("t_samples") else { return };
    let kd = KeyDir::new("samples");
    let opts = PgOptions {
        sample_key: Some(kd.key()),
        ..PgOptions::default()
    };
    let mut s = PgStore::connect_with(&db.url(), DeviceId(0), opts).unwrap();
    let recs = testdata::flows(0, 2, T0, SEC);
    let Record::Flow(f) = &recs[0] else { panic!() };
    let secret = b"Authorization: Bearer very-secret-token".to_vec();
    let mut b = batch(3, recs.clone());
    b.samples = vec![Sample {
        flow_id: f.id,
        flow_start: f.start,
        dir: SampleDir::ToServer,
        ts: f.start + 5,
        bytes: secret.clone(),
    }];
    assert_eq!(s.write_batch(&b).unwrap().samples, 1);
    let mut c = db.client();
    let raw: Vec<u8> = c
        .query_one("SELECT nonce || sealed FROM netvigil.samples", &[])
        .unwrap()
        .get(0);
    assert!(!raw.windows(6).any(|w| w == b"Bearer"), "plaintext on disk");
    assert_eq!(s.samples(&Query::default()).unwrap()[0].bytes, secret);

    // Without a key: refused, nothing written.
    let mut nokey = open(&db);
    match nokey.write_batch(&b) {
        Err(StoreError::Crypto(m)) => assert!(m.contains("sample key"), "{m}"),
        other => panic!("expected a Crypto error, got {other:?}"),
    }
    assert!(matches!(
        nokey.samples(&Query::default()),
        Err(StoreError::Crypto(_))
    ));
    assert_eq!(nokey.flows(&Query::default()).unwrap().len(), 2);

    // A flipped byte, or a sample moved to another direction, fails authentication.
    c.execute(
        "UPDATE netvigil.samples SET sealed = set_byte(sealed, 3, get_byte(sealed, 3) # 1)",
        &[],
    )
    .unwrap();
    match s.samples(&Query::default()) {
        Err(StoreError::Crypto(m)) => assert!(m.contains("authentication"), "{m}"),
        other => panic!("expected a Crypto error, got {other:?}"),
    }
    c.execute(
        "UPDATE netvigil.samples SET sealed = set_byte(sealed, 3, get_byte(sealed, 3) # 1), dir = 1",
        &[],
    )
    .unwrap();
    assert!(matches!(s.samples(&Query::default()), Err(StoreError::Crypto(_))));
    c.execute("UPDATE netvigil.samples SET dir = 0", &[]).unwrap();
    assert_eq!(s.samples(&Query::default()).unwrap()[0].bytes, secret);
}

#[test]
fn bad_urls_and_absent_servers_name_the_server() {
    // No server needed for these.
    let e = PgStore::connect("postgres://u:hunter2@host:notaport/db", DeviceId(0)).unwrap_err();
    let m = e.to_string();
    assert!(m.contains("connection URL") && !m.contains("hunter2"), "{m}");
    let e = PgStore::connect("postgres:///db", DeviceId(0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no host"), "{e}");

    // A TCP port nobody listens on (bound then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://nv:hunter2@127.0.0.1:{port}/fleet");
    let m = PgStore::connect(&url, DeviceId(0)).unwrap_err().to_string();
    assert!(
        m.contains(&format!("127.0.0.1:{port}")) && m.contains("fleet"),
        "{m}"
    );
    assert!(
        m.contains("is the server running") && !m.contains("hunter2"),
        "{m}"
    );

    // A socket directory without a server.
    let dir = std::env::temp_dir().join(format!("nv-nopg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let m = PgStore::connect(
        &format!("host={} user=nv dbname=fleet", dir.display()),
        DeviceId(0),
    )
    .unwrap_err()
    .to_string();
    assert!(m.contains(&format!("{}/.s.PGSQL.5432", dir.display())), "{m}");
    let _ = std::fs::remove_dir(&dir);

    // A database that does not exist, on a running server.
    let Some(srv) = shared() else { return };
    let m = PgStore::connect(&srv.url("no_such_db"), DeviceId(0))
        .unwrap_err()
        .to_string();
    assert!(m.contains("no_such_db") && m.contains("does not exist"), "{m}");
}

#[test]
fn server_restart_keeps_data_and_migrations_run_once() {
    // Its own server, stopped and started again.
    if shared().is_none() {
        return;
    }
    let srv = PgServer::start(&[("fsync", "off")]).unwrap();
    let db = srv.create_db("t_restart");
    let mut s = PgStore::connect(&db.url(), DeviceId(0)).unwrap();
    s.write_batch(&batch(1, testdata::flows(0, 100, T0, SEC)))
        .unwrap();
    srv.stop().unwrap();
    let e = s
        .write_batch(&batch(1, testdata::flows(100, 10, T0, SEC)))
        .unwrap_err()
        .to_string();
    assert!(e.contains(&srv.socket_dir().display().to_string()), "{e}");
    drop(s);
    let e = PgStore::connect(&db.url(), DeviceId(0)).unwrap_err().to_string();
    assert!(e.contains("connecting to PostgreSQL"), "{e}");
    srv.start_again().unwrap();
    let mut s = PgStore::connect(&db.url(), DeviceId(0)).unwrap();
    assert_eq!(s.flows(&Query::default()).unwrap().len(), 100);
    s.write_batch(&batch(1, testdata::flows(100, 10, T0, SEC)))
        .unwrap();
    assert_eq!(s.flows(&Query::default()).unwrap().len(), 110);
    let mut c = db.client();
    let n: i64 = c
        .query_one("SELECT count(*) FROM netvigil.schema_version", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, i64::from(SCHEMA_VERSION));
    let by_day: BTreeMap<String, i64> = c
        .query(
            "SELECT tableoid::regclass::text, count(*) FROM netvigil.flows GROUP BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(by_day.values().sum::<i64>(), 110);
    drop(db);
}

/// Rollup answers by (device, bucket, app, remote): (flows, bytes to the server).
type Totals = BTreeMap<(u32, i64, Option<String>, String), (u64, u64)>;

/// Rollups are appended as partial sums per batch: readers sum them per key, and retention
/// compacts them into one row per key without changing any answer.
#[test]
fn rollup_partial_sums_are_summed_and_compacted() {
    let Some(db) = db("t_rollup_parts") else { return };
    let mut s = open(&db);
    // The same 300 flows written in three batches of one device within one minute, then the
    // same again for another device.
    let recs = testdata::flows(0, 300, T0, 100_000_000);
    for dev in [1, 2] {
        for part in recs.chunks(100) {
            s.write_batch(&batch(dev, part.to_vec())).unwrap();
        }
    }
    // Expected totals per (device, bucket, app, remote) computed here from the records.
    let mut want: Totals = BTreeMap::new();
    for dev in [1u32, 2] {
        for r in &recs {
            let Record::Flow(f) = r else { continue };
            let remote = f.app.domain.clone().unwrap_or_else(|| f.server.ip.to_string());
            let key = (
                dev,
                f.start / MIN * MIN,
                f.process.as_ref().map(|p| p.name.clone()),
                remote,
            );
            let e = want.entry(key).or_default();
            e.0 += 1;
            e.1 += f.to_server.bytes;
        }
    }
    let got = |s: &mut PgStore| -> Totals {
        s.rollups(RollupGrain::Minute, &Query::default())
            .unwrap()
            .into_iter()
            .map(|r| {
                (
                    (r.device.0, r.bucket, r.app, r.remote),
                    (r.flows, r.bytes_to_server),
                )
            })
            .collect()
    };
    let rows_now = |db: &TestDb<'_>| -> i64 {
        db.client()
            .query_one("SELECT count(*) FROM netvigil.rollups_minute", &[])
            .unwrap()
            .get(0)
    };
    let before = rows_now(&db);
    assert_eq!(got(&mut s), want);
    assert_eq!(
        s.rollups(RollupGrain::Minute, &Query::default()).unwrap().len(),
        want.len(),
        "one answer row per key"
    );
    assert!(
        before > want.len() as i64,
        "three batches leave partial rows: {before}"
    );
    // Limits apply to keys, newest bucket and most flows first.
    let top = s
        .rollups(
            RollupGrain::Minute,
            &Query {
                limit: Some(3),
                ..Query::default()
            },
        )
        .unwrap();
    assert_eq!(top.len(), 3);
    assert!(
        top.windows(2)
            .all(|w| (w[0].bucket, w[0].flows) >= (w[1].bucket, w[1].flows))
    );
    // Compaction (part of retention) merges the partial rows; answers are unchanged.
    let none = Retention {
        raw_max_age: None,
        minute_rollup_max_age: None,
        hour_rollup_max_age: None,
        max_bytes: None,
    };
    s.retain(T0 + 10 * MIN, &none).unwrap();
    assert_eq!(rows_now(&db), want.len() as i64);
    assert_eq!(got(&mut s), want);
    // Late partial rows of a compacted minute (within the hour the next pass looks back) are
    // summed again, and compacted by the next pass.
    s.write_batch(&batch(1, recs[..50].to_vec())).unwrap();
    for r in &recs[..50] {
        let Record::Flow(f) = r else { continue };
        let remote = f.app.domain.clone().unwrap_or_else(|| f.server.ip.to_string());
        let e = want
            .get_mut(&(
                1,
                f.start / MIN * MIN,
                f.process.as_ref().map(|p| p.name.clone()),
                remote,
            ))
            .unwrap();
        e.0 += 1;
        e.1 += f.to_server.bytes;
    }
    assert_eq!(got(&mut s), want);
    s.retain(T0 + 20 * MIN, &none).unwrap();
    assert_eq!(rows_now(&db), want.len() as i64);
    assert_eq!(got(&mut s), want);
}

/// Newest-first queries with a limit look at widening time windows (the time index is BRIN):
/// the answer is the same as sorting everything, across days and with every filter.
#[test]
fn newest_first_windows_match_a_full_sort() {
    let Some(db) = db("t_windows") else { return };
    let mut s = open(&db);
    // Three days: a busy first day, a sparse second, a few flows on the third.
    s.write_batch(&batch(1, testdata::flows(0, 2000, T0, 30 * SEC)))
        .unwrap();
    s.write_batch(&batch(2, testdata::flows(5000, 20, T0 + DAY, HOUR)))
        .unwrap();
    s.write_batch(&batch(1, testdata::flows(9000, 3, T0 + 2 * DAY, 7 * MIN)))
        .unwrap();
    let all = s.flows(&Query::default()).unwrap();
    assert_eq!(all.len(), 2023);
    for (n, extra) in [(5, 0), (10, 1), (50, 2), (2023, 3), (3000, 4)] {
        let mut q = Query {
            limit: Some(n),
            ..Query::default()
        };
        let mut full = Query::default();
        match extra {
            1 => {
                q.device = Some(DeviceId(1));
                full.device = q.device;
            }
            2 => {
                q.app = Some("firefox".into());
                full.app = q.app.clone();
            }
            3 => {
                q.until = Some(T0 + DAY + 5 * HOUR);
                full.until = q.until;
            }
            4 => {
                q.since = Some(T0 + 3 * HOUR);
                full.since = q.since;
            }
            _ => {}
        }
        let key = |v: Vec<store::StoredFlow>| -> Vec<(u32, u64, i64)> {
            v.into_iter().map(|f| (f.device.0, f.flow_id, f.start)).collect()
        };
        let want: Vec<_> = key(s.flows(&full).unwrap()).into_iter().take(n).collect();
        assert!(!want.is_empty());
        assert_eq!(key(s.flows(&q).unwrap()), want, "limit {n}, case {extra}");
    }
    let events_all = s.events(&Query::default()).unwrap();
    let events_some = s
        .events(&Query {
            limit: Some(2),
            ..Query::default()
        })
        .unwrap();
    assert_eq!(events_some.len(), events_all.len().min(2));
}

/// Batches with a source are stored once: a resent batch is a no-op reported as a duplicate,
/// also when two connections (two fleet servers) race to write the same sources.
#[test]
fn sourced_batches_are_stored_exactly_once_across_connections() {
    let Some(db) = db("sources") else { return };
    let url = db.url();
    let mut a = open(&db);
    let first = Batch {
        source: Some((DeviceId(3), 1)),
        ..batch(3, testdata::flows(0, 10, T0, SEC))
    };
    let w = a.write_batch(&first).unwrap();
    assert_eq!((w.flows, w.duplicate), (10, false));
    let w = a.write_batch(&first).unwrap();
    assert_eq!((w.flows, w.duplicate), (0, true));
    assert_eq!(a.source_seq(DeviceId(3)).unwrap(), 1);
    assert_eq!(a.source_seq(DeviceId(4)).unwrap(), 0);
    // Two writers, the same 40 sourced batches each, at the same time.
    let writers: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut s = PgStore::connect(&url, DeviceId(0)).unwrap();
                let mut stored = 0u64;
                for seq in 2..42u64 {
                    let b = Batch {
                        source: Some((DeviceId(3), seq)),
                        ..batch(3, testdata::flows(seq * 100, 5, T0 + seq as i64 * SEC, SEC))
                    };
                    let w = s.write_batch(&b).unwrap();
                    assert_eq!(w.duplicate, w.flows == 0);
                    stored += w.flows;
                }
                stored
            })
        })
        .collect();
    let stored: u64 = writers.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(stored, 40 * 5, "each batch stored by exactly one writer");
    let q = Query {
        device: Some(DeviceId(3)),
        ..Query::default()
    };
    assert_eq!(a.flows(&q).unwrap().len(), 10 + 40 * 5);
    assert_eq!(a.source_seq(DeviceId(3)).unwrap(), 41);
}

/// Several batches in one transaction: each under its own device, a source already stored or
/// repeated in the group is skipped and reported, the rest written.
#[test]
fn write_batches_groups_devices_and_skips_stored_sources() {
    let Some(db) = db("groups") else { return };
    let mut s = open(&db);
    let sourced = |dev: u32, seq: u64, first: u64| Batch {
        source: Some((DeviceId(dev), seq)),
        ..batch(dev, testdata::flows(first, 3, T0 + first as i64 * SEC, SEC))
    };
    assert!(!s.write_batch(&sourced(1, 1, 0)).unwrap().duplicate);
    let group = [
        sourced(1, 1, 0),
        sourced(1, 2, 10),
        sourced(2, 1, 20),
        sourced(2, 1, 20),
        batch(3, Vec::new()),
    ];
    let w = s.write_batches(&group).unwrap();
    let got: Vec<(u64, bool)> = w.iter().map(|w| (w.flows, w.duplicate)).collect();
    assert_eq!(got, [(0, true), (3, false), (3, false), (0, true), (0, false)]);
    let count = |s: &mut PgStore, d: u32| {
        s.flows(&Query {
            device: Some(DeviceId(d)),
            ..Query::default()
        })
        .unwrap()
        .len()
    };
    assert_eq!((count(&mut s, 1), count(&mut s, 2)), (6, 3));
    assert_eq!(
        (
            s.source_seq(DeviceId(1)).unwrap(),
            s.source_seq(DeviceId(2)).unwrap()
        ),
        (2, 1)
    );
}

/// Two connections writing groups of batches at once, each batch bringing names the database
/// has not seen: no deadlock (sources and names are taken in one sorted order per transaction).
#[test]
fn grouped_writers_at_once_never_deadlock() {
    let Some(db) = db("group_race") else { return };
    let url = db.url();
    drop(open(&db));
    let hs: Vec<_> = (0..2u32)
        .map(|w| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut s = PgStore::connect(&url, DeviceId(0)).unwrap();
                for g in 0..8u64 {
                    let group: Vec<Batch> = (0..4u64)
                        .map(|b| {
                            let dev = 1 + w * 10 + b as u32;
                            let first = (g * 4 + b) * 500 + u64::from(w) * 250;
                            Batch {
                                source: Some((DeviceId(dev), g + 1)),
                                ..batch(dev, testdata::flows(first, 300, T0 + first as i64 * SEC, SEC))
                            }
                        })
                        .collect();
                    for r in s.write_batches(&group).unwrap() {
                        assert_eq!((r.flows, r.duplicate), (300, false));
                    }
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let n = open(&db).flows(&Query::default()).unwrap().len();
    assert_eq!(n, 2 * 8 * 4 * 300);
}
