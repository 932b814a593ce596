//! The SQLite store on real files in temporary directories: round trips, queries, alerts,
//! samples, foreign and damaged files, migrations, retention and purge (sizes measured).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use engine::Record;
use engine::app_record::{RecordMeta, TlsRecord};
use store::sqlite::testdata;
use store::{
    AlertRow, Backend, Batch, DeviceId, Purge, Query, Retention, RollupGrain, Sample, SampleDir, Severity,
    SqliteStore, StoreError,
};

const T0: i64 = 1_763_780_400_000_000_000; // 2025-11-22T03:00:00Z
const SEC: i64 = 1_000_000_000;

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "nv-sqlite-{tag}-{}-{}",
            std::process::id(),
            testdata::mix(
                T0 as u64
                    ^ tag.len() as u64
                    ^ std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_nanos() as u64
            )
        ));
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn batch(records: Vec<Record>) -> Batch {
    Batch {
        records,
        ..Batch::default()
    }
}

fn engine_json(r: &Record) -> String {
    let mut s = String::new();
    r.write_json(&mut s);
    s
}

#[test]
fn flows_round_trip_byte_for_byte() {
    let dir = TempDir::new("roundtrip");
    let mut db = SqliteStore::open_dir(dir.path()).unwrap();
    let recs = testdata::flows(0, 3000, T0, SEC / 10);
    let w = db.write_batch(&batch(recs.clone())).unwrap();
    assert_eq!(w.flows, 3000);
    let stored = db.flows(&Query::default()).unwrap();
    assert_eq!(stored.len(), 3000);
    // Newest first.
    assert!(stored.windows(2).all(|w| w[0].start >= w[1].start));
    let by_id: HashMap<u64, &store::StoredFlow> = stored.iter().map(|f| (f.flow_id, f)).collect();
    let mut with_process = 0;
    for r in &recs {
        let Record::Flow(f) = r else { unreachable!() };
        let s = by_id[&f.id];
        assert_eq!(s.json, engine_json(r), "flow {}", f.id);
        assert_eq!(s.start, f.start);
        assert_eq!(s.client.ip(), f.client.ip);
        assert_eq!(s.server.port(), f.server.port);
        assert_eq!(s.domain, f.app.domain);
        assert_eq!(s.app_proto.as_deref(), f.app.app_proto);
        assert_eq!(s.bytes_to_client, f.to_client.bytes);
        assert_eq!(s.app, f.process.as_ref().map(|p| p.name.clone()));
        with_process += usize::from(f.process.is_some());
        // CSV from the stored JSON is what engine writes.
        let mut row = String::new();
        store::export::csv_row(&s.json, &mut row).unwrap();
        let mut want = String::new();
        f.write_csv(&mut want);
        assert_eq!(row, want);
    }
    assert!(with_process > 1000);
    // One row per distinct process, whatever the number of flows.
    let n: i64 = rusqlite::Connection::open(dir.path().join("netvigil.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM processes", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n as usize, testdata::APPS.len());
}

#[test]
fn query_filters() {
    let dir = TempDir::new("filters");
    let mut db = SqliteStore::open_dir(dir.path()).unwrap();
    let recs = testdata::flows(0, 5000, T0, SEC);
    db.write_batch(&batch(recs.clone())).unwrap();
    let flows: Vec<&engine::FlowRecord> = recs
        .iter()
        .map(|r| match r {
            Record::Flow(f) => f,
            _ => unreachable!(),
        })
        .collect();

    // App: case-insensitive process name, or the exe's file name.
    let want = flows
        .iter()
        .filter(|f| f.process.as_ref().is_some_and(|p| p.name == "curl"))
        .count();
    assert!(want > 0);
    let got = db
        .flows(&Query {
            app: Some("CURL".into()),
            ..Query::default()
        })
        .unwrap();
    assert_eq!(got.len(), want);
    assert!(got.iter().all(|f| f.app.as_deref() == Some("curl")));

    // Host: a domain matches itself and its subdomains, never a mere suffix of a label.
    let some = flows.iter().find_map(|f| f.app.domain.clone()).unwrap();
    let parent = some.split_once('.').unwrap().1.to_string(); // "siteN.example.com"
    let want = flows
        .iter()
        .filter(|f| {
            f.app
                .domain
                .as_deref()
                .is_some_and(|d| d.ends_with(&format!(".{parent}")))
        })
        .count();
    let got = db
        .flows(&Query {
            host: Some(parent.clone()),
            ..Query::default()
        })
        .unwrap();
    assert_eq!(got.len(), want);
    assert!(want > 0);
    let exact = flows[0]
        .app
        .domain
        .clone()
        .or(flows[1].app.domain.clone())
        .unwrap();
    let got = db
        .flows(&Query {
            host: Some(exact.to_uppercase()),
            ..Query::default()
        })
        .unwrap();
    assert!(!got.is_empty());
    assert!(got.iter().all(|f| f.domain.as_deref() == Some(exact.as_str())));
    let none = db
        .flows(&Query {
            host: Some(parent[1..].to_string()),
            ..Query::default()
        })
        .unwrap();
    assert!(none.is_empty());

    // An IP on either end.
    let server = flows[7].server.ip;
    let want = flows
        .iter()
        .filter(|f| f.server.ip == server || f.client.ip == server)
        .count();
    let got = db
        .flows(&Query {
            host: Some(server.to_string()),
            ..Query::default()
        })
        .unwrap();
    assert_eq!(got.len(), want);
    let client = flows[7].client.ip;
    let want = flows
        .iter()
        .filter(|f| f.server.ip == client || f.client.ip == client)
        .count();
    let got = db
        .flows(&Query {
            host: Some(client.to_string()),
            ..Query::default()
        })
        .unwrap();
    assert_eq!(got.len(), want);
    assert!(want > 100);

    // Time range: since inclusive, until exclusive; limit keeps the newest.
    let (since, until) = (flows[1000].start, flows[2000].start);
    let want = flows
        .iter()
        .filter(|f| f.start >= since && f.start < until)
        .count();
    let got = db
        .flows(&Query {
            since: Some(since),
            until: Some(until),
            ..Query::default()
        })
        .unwrap();
    assert_eq!(got.len(), want);
    let got = db
        .flows(&Query {
            since: Some(since),
            until: Some(until),
            limit: Some(10),
            ..Query::default()
        })
        .unwrap();
    assert_eq!(got.len(), 10);
    assert_eq!(
        got[0].start,
        flows
            .iter()
            .filter(|f| f.start < until)
            .map(|f| f.start)
            .max()
            .unwrap()
    );

    // Combined, and another device sees nothing.
    let got = db
        .flows(&Query {
            app: Some("firefox".into()),
            host: Some("example.com".into()),
            ..Query::default()
        })
        .unwrap();
    let want = flows
        .iter()
        .filter(|f| f.process.as_ref().is_some_and(|p| p.name == "firefox") && f.app.domain.is_some())
        .count();
    assert_eq!(got.len(), want);
    let got = db
        .flows(&Query {
            device: Some(DeviceId(9)),
            ..Query::default()
        })
        .unwrap();
    assert!(got.is_empty());

    // Rollups add up to the flows.
    let minute = db.rollups(RollupGrain::Minute, &Query::default()).unwrap();
    let hour = db.rollups(RollupGrain::Hour, &Query::default()).unwrap();
    let total: u64 = flows.iter().map(|f| f.to_server.bytes).sum();
    assert_eq!(minute.iter().map(|r| r.bytes_to_server).sum::<u64>(), total);
    assert_eq!(hour.iter().map(|r| r.bytes_to_server).sum::<u64>(), total);
    assert_eq!(hour.iter().map(|r| r.flows).sum::<u64>(), 5000);
    assert!(hour.len() < minute.len());
    let curl_hour = db
        .rollups(
            RollupGrain::Hour,
            &Query {
                app: Some("curl".into()),
                ..Query::default()
            },
        )
        .unwrap();
    let want: u64 = flows
        .iter()
        .filter(|f| f.process.as_ref().is_some_and(|p| p.name == "curl"))
        .map(|f| f.to_client.bytes)
        .sum();
    assert_eq!(curl_hour.iter().map(|r| r.bytes_to_client).sum::<u64>(), want);
    // A flow without a domain is rolled up under its server address.
    let bare = flows.iter().find(|f| f.app.domain.is_none()).unwrap();
    let by_ip = db
        .rollups(
            RollupGrain::Hour,
            &Query {
                host: Some(bare.server.ip.to_string()),
                ..Query::default()
            },
        )
        .unwrap();
    assert!(by_ip.iter().any(|r| r.remote == bare.server.ip.to_string()));
}

fn alert(id: &str, ts: i64, app: &str, remote: &str) -> AlertRow {
    AlertRow {
        id: id.into(),
        ts,
        severity: Severity::Medium,
        rule: "new_remote".into(),
        app: Some(app.into()),
        remote: Some(remote.into()),
        reason: format!("{app} talked to {remote} for the first time"),
        json: format!("{{\"type\":\"alert\",\"id\":\"{id}\"}}"),
    }
}

#[test]
fn alerts_dedup_and_filter() {
    let dir = TempDir::new("alerts");
    let mut db = SqliteStore::open_dir(dir.path()).unwrap();
    let b = Batch {
        alerts: vec![
            alert("a1", T0, "curl", "api.example.com"),
            alert("a2", T0 + SEC, "firefox", "10.0.0.1"),
            alert("a1", T0 + 5 * SEC, "curl", "api.example.com"),
        ],
        ..Batch::default()
    };
    let w = db.write_batch(&b).unwrap();
    assert_eq!((w.alerts, w.duplicate_alerts), (2, 1));
    let w = db
        .write_batch(&Batch {
            alerts: vec![alert("a2", T0, "x", "y")],
            ..Batch::default()
        })
        .unwrap();
    assert_eq!((w.alerts, w.duplicate_alerts), (0, 1));
    let all = db.alerts(&Query::default()).unwrap();
    assert_eq!(
        all.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        ["a2", "a1"]
    );
    assert_eq!(all[1], alert("a1", T0, "curl", "api.example.com"));
    let since = db
        .alerts(&Query {
            since: Some(T0 + 1),
            ..Query::default()
        })
        .unwrap();
    assert_eq!(since.len(), 1);
    let host = db
        .alerts(&Query {
            host: Some("example.com".into()),
            ..Query::default()
        })
        .unwrap();
    assert_eq!(host.len(), 1);
    let ip = db
        .alerts(&Query {
            host: Some("10.0.0.1".into()),
            ..Query::default()
        })
        .unwrap();
    assert_eq!(ip[0].id, "a2");
}

fn tls_record(flow_id: u64, ts: i64, sni: &str) -> Record {
    use engine::app_record::HelloSummary;
    Record::Tls(Box::new(TlsRecord {
        meta: RecordMeta {
            flow_id,
            ts,
            proto: 6,
            client: engine::Endpoint {
                ip: "192.168.1.10".parse().unwrap(),
                port: 40000,
            },
            server: engine::Endpoint {
                ip: "203.0.113.5".parse().unwrap(),
                port: 443,
            },
        },
        hello: HelloSummary {
            sni: Some(sni.into()),
            alpn: vec!["h2".into()],
            versions: vec![0x0304],
            cipher_suites: 10,
            extensions: 12,
            ja3: "abc".into(),
            ja4: "t13d".into(),
            ech: false,
        },
        server_version: None,
        server_alpn: None,
        cipher_suite: None,
        certificates: Vec::new(),
    }))
}

#[test]
fn events_and_state() {
    let dir = TempDir::new("events");
    let mut db = SqliteStore::open_dir(dir.path()).unwrap();
    let recs = vec![
        tls_record(1, T0, "www.example.org"),
        tls_record(2, T0 + SEC, "other.net"),
    ];
    let w = db.write_batch(&batch(recs.clone())).unwrap();
    assert_eq!(w.events, 2);
    let ev = db.events(&Query::default()).unwrap();
    assert_eq!(ev, vec![engine_json(&recs[1]), engine_json(&recs[0])]);
    let ev = db
        .events(&Query {
            host: Some("example.org".into()),
            ..Query::default()
        })
        .unwrap();
    assert_eq!(ev, vec![engine_json(&recs[0])]);
    let ev = db
        .events(&Query {
            host: Some("203.0.113.5".into()),
            ..Query::default()
        })
        .unwrap();
    assert_eq!(ev.len(), 2);
    assert_eq!(db.get_state("baseline").unwrap(), None);
    db.put_state("baseline", b"v1").unwrap();
    db.put_state("baseline", b"v2").unwrap();
    drop(db);
    let mut db = SqliteStore::open_dir(dir.path()).unwrap();
    assert_eq!(db.get_state("baseline").unwrap().as_deref(), Some(&b"v2"[..]));
}

fn assert_not_ours(path: &Path, contents: &[u8], why_has: &str) {
    fs::write(path, contents).unwrap();
    let before = fs::read(path).unwrap();
    let err = SqliteStore::open(path).unwrap_err();
    let msg = err.to_string();
    match &err {
        StoreError::NotOurs { path: p, why } => {
            assert_eq!(p, path);
            assert!(why.contains(why_has), "{why}");
        }
        other => panic!("expected NotOurs, got {other:?}"),
    }
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("--data-dir"), "{msg}");
    assert_eq!(fs::read(path).unwrap(), before, "the file was modified");
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    assert!(
        !Path::new(&wal).exists(),
        "a WAL was created next to a foreign file"
    );
}

#[test]
fn foreign_and_damaged_files_are_left_alone() {
    let dir = TempDir::new("foreign");
    let path = dir.path().join("netvigil.db");
    let random: Vec<u8> = (0..10_000u64).map(|i| testdata::mix(i) as u8).collect();
    assert_not_ours(&path, &random, "not an SQLite database");
    assert_not_ours(
        &path,
        b"these are my notes, not a database\n",
        "not an SQLite database",
    );
    assert_not_ours(&path, b"SQLite format 3\0short", "cut short");

    // Another program's SQLite database (rollback journal, no application id).
    let other = dir.path().join("other.db");
    {
        let c = rusqlite::Connection::open(&other).unwrap();
        c.execute_batch("CREATE TABLE notes (t TEXT); INSERT INTO notes VALUES ('hello');")
            .unwrap();
    }
    let bytes = fs::read(&other).unwrap();
    assert_not_ours(&path, &bytes, "another program");
    // Another program that sets its own application id.
    let other2 = dir.path().join("other2.db");
    {
        let c = rusqlite::Connection::open(&other2).unwrap();
        c.execute_batch("PRAGMA application_id = 1234; PRAGMA journal_mode = WAL; CREATE TABLE t (x);")
            .unwrap();
    }
    let bytes = fs::read(&other2).unwrap();
    assert_not_ours(&path, &bytes, "application id 0x4d2");

    // Our own database, damaged past the header: a clear error, and the file is not rewritten.
    let good = TempDir::new("damaged");
    {
        let mut db = SqliteStore::open_dir(good.path()).unwrap();
        db.write_batch(&batch(testdata::flows(0, 2000, T0, SEC))).unwrap();
    }
    let mut bytes = fs::read(good.path().join("netvigil.db")).unwrap();
    assert!(bytes.len() > 8192);
    for b in &mut bytes[100..] {
        *b = !*b;
    }
    fs::remove_file(&path).unwrap();
    fs::write(&path, &bytes).unwrap();
    let before = fs::read(&path).unwrap();
    match SqliteStore::open(&path) {
        Err(StoreError::NotOurs { why, .. }) => assert!(why.contains("damaged"), "{why}"),
        Ok(mut db) => {
            // SQLite may open a file whose damage is deeper; reading must then fail clearly.
            let r = db.flows(&Query::default());
            assert!(matches!(r, Err(StoreError::NotOurs { .. })), "{r:?}");
        }
        Err(other) => panic!("expected NotOurs, got {other:?}"),
    }
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[test]
fn newer_schema_is_refused() {
    let dir = TempDir::new("toonew");
    let path = dir.path().join("netvigil.db");
    drop(SqliteStore::open(&path).unwrap());
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (99, 0)",
            [],
        )
        .unwrap();
    }
    match SqliteStore::open(&path) {
        Err(e @ StoreError::TooNew { found: 99, .. }) => assert!(e.to_string().contains("upgrade netvigil")),
        other => panic!("expected TooNew, got {other:?}"),
    }
}

#[test]
fn migration_from_version_1_keeps_data_and_builds_rollups() {
    let dir = TempDir::new("migrate");
    let path = dir.path().join("netvigil.db");
    {
        let db = SqliteStore::create_at_version(&path, 1).unwrap();
        assert_eq!(db.version().unwrap(), 1);
    }
    // Rows a version-1 netvigil wrote (no rollup tables, no dashboard indexes yet).
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "INSERT INTO strings (id, s) VALUES (1, 'curl'), (2, 'api.example.com');
             INSERT INTO flows (device, flow_id, start, \"end\", proto, client_ip, client_port, server_ip,
                 server_port, vlan, bits, app_proto_id, domain_id, app_id, process_id,
                 pkts_ts, bytes_ts, payload_ts, pkts_tc, bytes_tc, payload_tc)
             VALUES (0, 1, 1763780400000000000, 1763780401000000000, 6, x'c0a8010a', 40000, x'cb007105',
                 443, 0, 17, NULL, 2, 1, NULL, 3, 300, 100, 4, 4000, 3000),
                    (0, 2, 1763780460000000000, 1763780461000000000, 17, x'c0a8010a', 40001, x'08080808',
                 53, 0, 2, NULL, NULL, NULL, NULL, 1, 80, 40, 1, 120, 80);",
        )
        .unwrap();
        let has: i64 = c
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'rollup_hour'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(has, 0);
    }
    let mut db = SqliteStore::open(&path).unwrap();
    assert_eq!(db.version().unwrap(), store::sqlite::schema::LATEST);
    let flows = db.flows(&Query::default()).unwrap();
    assert_eq!(flows.len(), 2);
    assert_eq!(flows[1].app.as_deref(), Some("curl"));
    assert_eq!(flows[1].domain.as_deref(), Some("api.example.com"));
    let hour = db.rollups(RollupGrain::Hour, &Query::default()).unwrap();
    assert_eq!(hour.len(), 2);
    let curl = hour.iter().find(|r| r.app.as_deref() == Some("curl")).unwrap();
    assert_eq!(
        (curl.remote.as_str(), curl.bytes_to_client, curl.packets),
        ("api.example.com", 4000, 7)
    );
    let dns = hour.iter().find(|r| r.app.is_none()).unwrap();
    assert_eq!(dns.remote, "8.8.8.8");
    // And it keeps working as a current database.
    db.write_batch(&batch(testdata::flows(10, 10, T0, SEC))).unwrap();
    assert_eq!(db.flows(&Query::default()).unwrap().len(), 12);
}

fn sample(flow: &engine::FlowRecord, dir: SampleDir, bytes: &[u8]) -> Sample {
    Sample {
        flow_id: flow.id,
        flow_start: flow.start,
        dir,
        ts: flow.start + 1000,
        bytes: bytes.to_vec(),
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn samples_are_sealed_at_rest() {
    let dir = TempDir::new("samples");
    let mut db = SqliteStore::open_dir(dir.path()).unwrap();
    let recs = testdata::flows(0, 20, T0, SEC);
    let flows: Vec<engine::FlowRecord> = recs
        .iter()
        .map(|r| match r {
            Record::Flow(f) => f.clone(),
            _ => unreachable!(),
        })
        .collect();
    let secret_a = b"GET /secret-token-7f3a9c1e HTTP/1.1\r\nHost: example.com\r\n\r\n".to_vec();
    let secret_b = b"HTTP/1.1 200 OK\r\nSet-Cookie: session=PLAINTEXT-MARKER-55aa\r\n".to_vec();
    let b = Batch {
        records: recs,
        samples: vec![
            sample(&flows[3], SampleDir::ToServer, &secret_a),
            sample(&flows[3], SampleDir::ToClient, &secret_b),
            sample(&flows[4], SampleDir::ToServer, b"second flow payload"),
        ],
        ..Batch::default()
    };
    assert_eq!(db.write_batch(&b).unwrap().samples, 3);
    let key = dir.path().join("samples.key");
    let meta = fs::metadata(&key).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), 32);

    let got = db.samples(&Query::default()).unwrap();
    assert_eq!(got.len(), 3);
    let a = got
        .iter()
        .find(|s| s.flow_id == 3 && s.dir == SampleDir::ToServer)
        .unwrap();
    assert_eq!(a.bytes, secret_a);
    let b2 = got
        .iter()
        .find(|s| s.flow_id == 3 && s.dir == SampleDir::ToClient)
        .unwrap();
    assert_eq!(b2.bytes, secret_b);

    // Neither the database nor its WAL holds the plaintext (checked before and after a checkpoint).
    let files = |d: &Path| -> Vec<Vec<u8>> {
        fs::read_dir(d)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("netvigil.db"))
            .map(|e| fs::read(e.path()).unwrap())
            .collect()
    };
    for bytes in files(dir.path()) {
        assert!(!contains(&bytes, b"secret-token-7f3a9c1e"));
        assert!(!contains(&bytes, b"PLAINTEXT-MARKER-55aa"));
        assert!(!contains(&bytes, b"second flow payload"));
    }
    drop(db);
    for bytes in files(dir.path()) {
        assert!(!contains(&bytes, b"secret-token-7f3a9c1e"));
    }

    // A sample moved to another flow fails authentication.
    let c = rusqlite::Connection::open(dir.path().join("netvigil.db")).unwrap();
    c.execute("UPDATE samples SET flow_id = 4 WHERE flow_id = 3 AND dir = 0", [])
        .unwrap();
    let mut db = SqliteStore::open_dir(dir.path()).unwrap();
    match db.samples(&Query::default()) {
        Err(e @ StoreError::Crypto(_)) => assert!(e.to_string().contains("failed authentication"), "{e}"),
        other => panic!("expected Crypto, got {other:?}"),
    }
    c.execute(
        "UPDATE samples SET flow_id = 3 WHERE flow_id = 4 AND dir = 0 AND length(sealed) > 40",
        [],
    )
    .unwrap();
    assert_eq!(db.samples(&Query::default()).unwrap().len(), 3);
    // One flipped bit in a stored ciphertext.
    let sealed: Vec<u8> = c
        .query_row("SELECT sealed FROM samples WHERE flow_id = 4", [], |r| r.get(0))
        .unwrap();
    let mut bad = sealed.clone();
    bad[3] ^= 0x01;
    c.execute("UPDATE samples SET sealed = ?1 WHERE flow_id = 4", [&bad])
        .unwrap();
    assert!(matches!(
        db.samples(&Query::default()),
        Err(StoreError::Crypto(_))
    ));
    c.execute("UPDATE samples SET sealed = ?1 WHERE flow_id = 4", [&sealed])
        .unwrap();
    assert_eq!(db.samples(&Query::default()).unwrap().len(), 3);
    drop(db);

    // A key readable by others is refused with the fix in the message.
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let mut db = SqliteStore::open_dir(dir.path()).unwrap();
    match db.samples(&Query::default()) {
        Err(e @ StoreError::Crypto(_)) => assert!(e.to_string().contains("chmod 600"), "{e}"),
        other => panic!("expected Crypto, got {other:?}"),
    }
}

#[test]
fn purge_forgets_and_shrinks() {
    for (what, tag) in [
        (Purge::Host("site7.example.com".into()), "host"),
        (Purge::App("firefox".into()), "app"),
        (Purge::Before(T0 + 20_000 * SEC), "before"),
        (Purge::All, "all"),
    ] {
        let dir = TempDir::new(&format!("purge-{tag}"));
        let mut db = SqliteStore::open_dir(dir.path()).unwrap();
        let recs = testdata::flows(0, 40_000, T0, SEC);
        let flows: Vec<engine::FlowRecord> = recs
            .iter()
            .map(|r| match r {
                Record::Flow(f) => f.clone(),
                _ => unreachable!(),
            })
            .collect();
        let samples: Vec<Sample> = flows
            .iter()
            .take(2000)
            .map(|f| sample(f, SampleDir::ToServer, &[0x5a; 64]))
            .collect();
        db.write_batch(&Batch {
            records: recs,
            samples,
            alerts: vec![alert("x", T0, "firefox", "h1.site7.example.com")],
            ..Batch::default()
        })
        .unwrap();
        let q = match &what {
            Purge::Host(h) => Query {
                host: Some(h.clone()),
                ..Query::default()
            },
            Purge::App(a) => Query {
                app: Some(a.clone()),
                ..Query::default()
            },
            Purge::Before(t) => Query {
                until: Some(*t),
                ..Query::default()
            },
            Purge::All => Query::default(),
        };
        let matching = db.flows(&q).unwrap().len() as u64;
        assert!(matching > 0, "{tag}");
        let total = db.flows(&Query::default()).unwrap().len() as u64;
        let removed = db.purge(&what).unwrap();
        assert_eq!(removed.flows, matching, "{tag}");
        assert!(removed.bytes_before > 0);
        assert!(removed.bytes_after < removed.bytes_before, "{tag}: {removed:?}");
        assert_eq!(db.size_on_disk(), removed.bytes_after);
        assert!(db.flows(&q).unwrap().is_empty(), "{tag}");
        assert_eq!(
            db.flows(&Query::default()).unwrap().len() as u64,
            total - matching
        );
        assert!(db.rollups(RollupGrain::Minute, &q).unwrap().is_empty(), "{tag}");
        assert!(removed.rollups > 0, "{tag}");
        db.integrity_check().unwrap();
        drop(db);
        // Forgotten for good: the purged names are nowhere in the files.
        let mut all = Vec::new();
        for e in fs::read_dir(dir.path()).unwrap() {
            let e = e.unwrap();
            if e.file_name().to_string_lossy().starts_with("netvigil.db") {
                all.extend(fs::read(e.path()).unwrap());
            }
        }
        match &what {
            Purge::Host(_) => {
                assert!(!contains(&all, b".site7.example.com"), "domain left on disk");
                assert!(contains(&all, b".site8.example.com"));
            }
            Purge::App(_) => {
                assert!(!contains(&all, b"firefox"), "app name left on disk");
                assert!(contains(&all, b"chrome"));
            }
            Purge::All => assert!(!contains(&all, b"example.com")),
            Purge::Before(_) => {}
        }
    }
}

#[test]
fn retention_by_age_then_size() {
    let dir = TempDir::new("retain");
    let mut db = SqliteStore::open_dir(dir.path()).unwrap();
    const DAY: i64 = 86_400 * SEC;
    // 10 days of flows, one every 10 s.
    let n = 10 * 8640;
    for chunk in 0..10 {
        db.write_batch(&batch(testdata::flows(chunk * 8640, 8640, T0, 10 * SEC)))
            .unwrap();
    }
    let now = T0 + 10 * DAY;
    let size0 = db.size_on_disk();
    let policy = Retention {
        raw_max_age: Some(3 * DAY),
        minute_rollup_max_age: Some(5 * DAY),
        hour_rollup_max_age: Some(8 * DAY),
        max_bytes: None,
    };
    let r = db.retain(now, &policy).unwrap();
    let left = db.flows(&Query::default()).unwrap();
    assert_eq!(r.flows + left.len() as u64, n);
    assert!(left.iter().all(|f| f.start >= now - 3 * DAY));
    assert!(left.len() as u64 >= 3 * 8640 - 10);
    let minute = db.rollups(RollupGrain::Minute, &Query::default()).unwrap();
    assert!(minute.iter().all(|r| r.bucket >= now - 5 * DAY - 60 * SEC));
    assert!(
        minute.iter().any(|r| r.bucket < now - 3 * DAY),
        "minute rollups outlive raw flows"
    );
    let hour = db.rollups(RollupGrain::Hour, &Query::default()).unwrap();
    assert!(
        hour.iter().any(|r| r.bucket < now - 5 * DAY),
        "hour rollups outlive minute rollups"
    );
    assert!(hour.iter().all(|r| r.bucket >= now - 8 * DAY - 3600 * SEC));
    let size1 = db.size_on_disk();
    assert!(
        size1 < size0 * 3 / 4,
        "the file did not shrink: {size0} -> {size1}"
    );

    // Size cap: the oldest raw records go until the file fits.
    let cap = size1 * 2 / 3;
    eprintln!("sizes: {size0} -> {size1}, cap {cap}");
    let r = db
        .retain(
            now,
            &Retention {
                max_bytes: Some(cap),
                ..policy.clone()
            },
        )
        .unwrap();
    let size2 = db.size_on_disk();
    assert!(size2 <= cap, "{size2} > cap {cap}");
    assert_eq!(r.bytes_after, size2);
    let kept = db.flows(&Query::default()).unwrap();
    assert!(!kept.is_empty() && kept.len() < left.len());
    // What was kept is the newest.
    let oldest_kept = kept.iter().map(|f| f.start).min().unwrap();
    let newest_kept = kept.iter().map(|f| f.start).max().unwrap();
    assert_eq!(newest_kept, left.iter().map(|f| f.start).max().unwrap());
    assert!(left.iter().filter(|f| f.start >= oldest_kept).count() == kept.len());
    db.integrity_check().unwrap();
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 48, ..Default::default() })]

    /// Whatever bytes sit at the database path (plain junk, or junk behind a real SQLite header
    /// with netvigil's application id and WAL mode): opening never panics, never succeeds at
    /// reading garbage silently, and never changes the file.
    #[test]
    fn random_files_never_panic_nor_change(
        body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000),
        with_header in proptest::prelude::any::<bool>(),
    ) {
        let dir = TempDir::new("prop");
        let path = dir.path().join("netvigil.db");
        let mut bytes = body.clone();
        if with_header && bytes.len() >= 100 {
            bytes[..16].copy_from_slice(b"SQLite format 3\0");
            bytes[16..18].copy_from_slice(&4096u16.to_be_bytes());
            bytes[18] = 2;
            bytes[19] = 2;
            bytes[68..72].copy_from_slice(&store::sqlite::schema::APPLICATION_ID.to_be_bytes());
        }
        fs::write(&path, &bytes).unwrap();
        match SqliteStore::open(&path) {
            Err(StoreError::NotOurs { .. }) => {}
            Err(e) => panic!("unexpected error: {e}"),
            Ok(mut db) => {
                // Only an empty file becomes a new database; garbage must fail on use.
                if !bytes.is_empty() {
                    let r = db.flows(&Query::default());
                    proptest::prop_assert!(r.is_err(), "read garbage as a database");
                }
            }
        }
        if !bytes.is_empty() {
            proptest::prop_assert_eq!(fs::read(&path).unwrap(), bytes);
        }
    }
}

/// A batch with a source is stored once; the resent batch changes nothing and says so, also
/// after the database was closed and opened again.
#[test]
fn sourced_batches_are_stored_exactly_once() {
    let dir = TempDir::new("sources");
    let sourced = |seq: u64, first: u64| Batch {
        device: DeviceId(5),
        source: Some((DeviceId(5), seq)),
        ..batch(testdata::flows(first, 4, T0, 1_000_000_000))
    };
    {
        let mut db = SqliteStore::open_dir(dir.path()).unwrap();
        assert_eq!(db.source_seq(DeviceId(5)).unwrap(), 0);
        let w = db.write_batch(&sourced(1, 0)).unwrap();
        assert_eq!((w.flows, w.duplicate), (4, false));
        let w = db.write_batch(&sourced(1, 0)).unwrap();
        assert_eq!((w.flows, w.duplicate), (0, true));
        let w = db.write_batch(&sourced(7, 10)).unwrap();
        assert_eq!((w.flows, w.duplicate), (4, false));
    }
    let mut db = SqliteStore::open_dir(dir.path()).unwrap();
    assert!(db.write_batch(&sourced(7, 10)).unwrap().duplicate);
    assert_eq!(db.source_seq(DeviceId(5)).unwrap(), 7);
    assert_eq!(db.source_seq(DeviceId(6)).unwrap(), 0);
    let q = Query {
        device: Some(DeviceId(5)),
        ..Query::default()
    };
    assert_eq!(db.flows(&q).unwrap().len(), 8);
}
