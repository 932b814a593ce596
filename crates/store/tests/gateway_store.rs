//! Gateway mode in both stores: `device` records are kept as events (found by the device's MAC
//! address as the host), and a flow owned by a LAN device has the device's name as its app (its
//! MAC address when it has no name). SQLite in a temp directory; PostgreSQL started by the test
//! (skipped outside CI when absent, as in pg_store.rs).

#[path = "support/pg_server.rs"]
mod pg_server;

use std::net::Ipv4Addr;

use engine::Record;
use engine::lan::{DeviceEvent, DeviceRecord, FlowDevice, LanDevice};
use store::sqlite::testdata;
use store::{Backend, Batch, DeviceId, Query, SqliteStore};

const T0: i64 = 1_763_780_400_000_000_000;
const SEC: i64 = 1_000_000_000;
const MAC: [u8; 6] = [0x3c, 0x22, 0xfb, 0x11, 0x22, 0x33];
const PRIV: [u8; 6] = [0x5a, 0x11, 0x22, 0x33, 0x44, 0x55];

fn device_record() -> Record {
    Record::Device(Box::new(DeviceRecord {
        ts: T0,
        event: DeviceEvent::Changed,
        changed: vec!["hostname"],
        device: LanDevice {
            mac: MAC,
            private_mac: false,
            vendor: Some("Apple, Inc.".into()),
            hostname: Some("alices-iphone".into()),
            vendor_class: None,
            mdns_names: vec!["Alices-iPhone.local".into()],
            mdns_instances: Vec::new(),
            ipv4: vec![Ipv4Addr::new(192, 168, 1, 10)],
            ipv6: Vec::new(),
            first_seen: T0 - SEC,
            last_seen: T0,
        },
    }))
}

fn flows() -> Vec<Record> {
    let mut v = testdata::flows(0, 3, T0, SEC);
    for (r, (mac, name)) in v.iter_mut().zip([(MAC, Some("alices-iphone")), (PRIV, None)]) {
        if let Record::Flow(f) = r {
            f.process = None;
            f.device = Some(Box::new(FlowDevice {
                mac,
                client_side: true,
                private_mac: mac == PRIV,
                vendor: None,
                name: name.map(str::to_string),
                hostname: name.map(str::to_string),
                mdns_name: None,
                label: name.map_or_else(|| engine::lan::mac_text(&mac), str::to_string),
            }));
        }
    }
    v
}

fn check(s: &mut dyn Backend) {
    let mut records = flows();
    records.push(device_record());
    let w = s
        .write_batch(&Batch {
            device: DeviceId(3),
            records,
            ..Batch::default()
        })
        .unwrap();
    assert_eq!((w.flows, w.events), (3, 1));
    let ev = s
        .events(&Query {
            host: Some("3c:22:fb:11:22:33".into()),
            ..Query::default()
        })
        .unwrap();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert!(
        ev[0].starts_with("{\"type\":\"device\"") && ev[0].contains("alices-iphone"),
        "{ev:?}"
    );
    let mut apps: Vec<Option<String>> = s
        .flows(&Query::default())
        .unwrap()
        .into_iter()
        .map(|f| f.app)
        .collect();
    apps.sort();
    let want_third = testdata::flows(2, 1, T0, SEC)
        .into_iter()
        .find_map(|r| {
            if let Record::Flow(f) = r {
                Some(f.process.map(|p| p.name))
            } else {
                None
            }
        })
        .unwrap();
    let mut want = vec![
        Some("alices-iphone".to_string()),
        Some("5a:11:22:33:44:55".to_string()),
        want_third,
    ];
    want.sort();
    assert_eq!(apps, want);
    let by_app = s
        .flows(&Query {
            app: Some("alices-iphone".into()),
            ..Query::default()
        })
        .unwrap();
    assert_eq!(by_app.len(), 1);
}

#[test]
fn sqlite_keeps_devices() {
    let dir = std::env::temp_dir().join(format!("nv-gateway-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut s = SqliteStore::open_dir(&dir).unwrap();
    check(&mut s);
    drop(s);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn postgres_keeps_devices() {
    let Some(server) = pg_server::shared() else { return };
    let db = server.create_db("t_gateway");
    let mut s = store::pg::PgStore::connect(&db.url(), DeviceId(0)).unwrap();
    check(&mut s);
}
