//! A flow's capture interface (`iface`) survives the store: SQLite keeps it in a column of its
//! own (schema version 4, interned) and writes the flow's JSON back byte for byte; a purge
//! keeps the names still in use; a version-3 database gains the column and keeps its rows.
//! PostgreSQL keeps the JSON line as written (checked when a server can be started).

#[path = "support/pg_server.rs"]
mod pg_server;

use std::path::PathBuf;

use engine::Record;
use store::sqlite::testdata;
use store::{Backend, Batch, DeviceId, Purge, Query, SqliteStore};

const T0: i64 = 1_763_780_400_000_000_000; // 2025-11-22T03:00:00Z
const SEC: i64 = 1_000_000_000;

fn temp_dir(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("nv-iface-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// 300 flows: every third on eth0, every third on "wlan \"0\"" (a name that needs escapes),
/// the rest without an interface.
fn records() -> Vec<Record> {
    let mut recs = testdata::flows(0, 300, T0, SEC);
    for (i, r) in recs.iter_mut().enumerate() {
        let Record::Flow(f) = r else { unreachable!() };
        f.iface = match i % 3 {
            0 => Some("eth0".into()),
            1 => Some("wlan \"0\"".into()),
            _ => None,
        };
    }
    recs
}

fn json(r: &Record) -> String {
    let mut s = String::new();
    r.write_json(&mut s);
    s
}

/// Every record stored by `db` reads back as the JSON line the engine wrote.
fn check_round_trip(db: &mut dyn Backend, recs: &[Record]) {
    let stored = db.flows(&Query::default()).unwrap();
    assert_eq!(stored.len(), recs.len());
    for r in recs {
        let Record::Flow(f) = r else { unreachable!() };
        let s = stored.iter().find(|s| s.flow_id == f.id).unwrap();
        assert_eq!(s.json, json(r), "flow {}", f.id);
        match Record::from_json(&s.json).unwrap() {
            Record::Flow(back) => assert_eq!(back.iface, f.iface),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn sqlite_keeps_the_interface() {
    let dir = temp_dir("sqlite");
    let mut db = SqliteStore::open_dir(&dir).unwrap();
    let recs = records();
    db.write_batch(&Batch {
        device: DeviceId(1),
        records: recs.clone(),
        ..Batch::default()
    })
    .unwrap();
    check_round_trip(&mut db, &recs);
    let with: usize = db
        .flows(&Query::default())
        .unwrap()
        .iter()
        .filter(|s| s.json.contains("\"iface\":\"eth0\""))
        .count();
    assert_eq!(with, 100);
    // A purge of the older half collects unused strings: the interface names still in use stay.
    db.purge(&Purge::Before(T0 + 150 * SEC)).unwrap();
    let left = db.flows(&Query::default()).unwrap();
    assert_eq!(left.len(), 150);
    let eth0 = left
        .iter()
        .filter(|s| s.json.contains("\"iface\":\"eth0\""))
        .count();
    let wlan = left
        .iter()
        .filter(|s| s.json.contains(r#""iface":"wlan \"0\"""#))
        .count();
    assert_eq!((eth0, wlan), (50, 50));
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_version_3_database_gains_the_column() {
    let dir = temp_dir("v3");
    let path = dir.join("netvigil.db");
    {
        let db = SqliteStore::create_at_version(&path, 3).unwrap();
        assert_eq!(db.version().unwrap(), 3);
    }
    // A row a version-3 netvigil wrote (no iface_id column yet).
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "INSERT INTO flows (device, flow_id, start, \"end\", proto, client_ip, client_port, server_ip,
                 server_port, vlan, bits, app_proto_id, domain_id, app_id, process_id,
                 pkts_ts, bytes_ts, payload_ts, pkts_tc, bytes_tc, payload_tc)
             VALUES (2, 1, 1763780400000000000, 1763780401000000000, 17, x'c0a8010a', 40001, x'08080808',
                 53, 0, 2, NULL, NULL, NULL, NULL, 1, 80, 40, 1, 120, 80);",
        )
        .unwrap();
    }
    let mut db = SqliteStore::open(&path).unwrap();
    assert_eq!(db.version().unwrap(), store::sqlite::schema::LATEST);
    let old = db.flows(&Query::default()).unwrap();
    assert_eq!(old.len(), 1);
    assert!(!old[0].json.contains("iface"), "{}", old[0].json);
    let recs: Vec<Record> = records()
        .into_iter()
        .filter(|r| matches!(r, Record::Flow(f) if f.id != 1))
        .collect();
    db.write_batch(&Batch {
        device: DeviceId(2),
        records: recs.clone(),
        ..Batch::default()
    })
    .unwrap();
    let stored = db.flows(&Query::default()).unwrap();
    assert_eq!(stored.len(), recs.len() + 1);
    for r in &recs {
        let Record::Flow(f) = r else { unreachable!() };
        let s = stored.iter().find(|s| s.flow_id == f.id).unwrap();
        assert_eq!(s.json, json(r), "flow {}", f.id);
    }
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn postgres_keeps_the_interface() {
    let Some(server) = pg_server::shared() else {
        return;
    };
    let tdb = server.create_db("nv_iface");
    let mut db = store::pg::PgStore::connect(&tdb.url(), DeviceId(0)).unwrap();
    let recs = records();
    db.write_batch(&Batch {
        device: DeviceId(3),
        records: recs.clone(),
        ..Batch::default()
    })
    .unwrap();
    check_round_trip(&mut db, &recs);
}
