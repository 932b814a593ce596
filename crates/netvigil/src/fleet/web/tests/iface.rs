//! The fleet aggregate per capture interface: flows of two devices on `eth0` and `wlan0` (and
//! the fixture's flows, which carry none) give the right per-interface totals over the hour
//! and the day.

use engine::Record;
use store::{Batch, DeviceId};

use super::{Client, PASSWORD, fleet, flow, now_ns, start};
use crate::fleet::db::{Target, open_store};
use crate::fleet::web::auth::Limits;

/// A flow of the fixture's kind on interface `iface`.
fn on(i: u64, iface: &str, start: i64, bytes: u64) -> Record {
    let mut r = flow(i, 0, start, "203.0.113.7", Some("example.org"), bytes);
    if let Record::Flow(f) = &mut r {
        f.iface = Some(iface.into());
    }
    r
}

#[test]
fn aggregates_per_interface() {
    let f = fleet();
    let min = 60_000_000_000i64;
    let now = now_ns();
    // The records file the agent listener writes.
    let mut st = open_store(&Target::Dir(f.dir.clone())).unwrap();
    let batches = [
        (
            1,
            vec![
                on(5001, "eth0", now - 3 * min, 1000),
                on(5002, "eth0", now - 4 * min, 3000),
                on(5003, "wlan0", now - 5 * min, 500),
            ],
        ),
        (
            2,
            vec![
                on(5004, "wlan0", now - 6 * min, 7000),
                // Five hours old: in the day window only.
                on(5005, "eth0", now - 300 * min, 20_000),
            ],
        ),
    ];
    for (dev, records) in batches {
        st.write_batch(&Batch {
            device: DeviceId(dev),
            records,
            ..Batch::default()
        })
        .unwrap();
    }
    drop(st);
    let (h, cert) = start(&f, Limits::default());
    let mut c = Client::new(&h, &cert, &[&rustls::version::TLS13]);
    assert_eq!(c.login("alice", PASSWORD).status, 200);

    let row = |ag: &serde_json::Value, k: &str| -> (u64, u64, u64, u64) {
        let r = ag["by_iface"]
            .as_array()
            .expect("by_iface")
            .iter()
            .find(|r| r["key"] == k)
            .unwrap_or_else(|| panic!("no {k} row in {}", ag["by_iface"]));
        let n = |f: &str| r[f].as_u64().unwrap();
        (n("flows"), n("bytes_in"), n("bytes_out"), n("devices"))
    };
    // The fixture's flows: 9 in the hour, 13 in the day, none with an interface.
    let hour = c.get("/api/fleet/aggregates?window=hour").json();
    assert_eq!(hour["flows"], 9 + 4);
    assert_eq!(row(&hour, "eth0"), (2, 4000, 400, 1));
    assert_eq!(row(&hour, "wlan0"), (2, 7500, 750, 2));
    assert_eq!(row(&hour, "(unknown)").0, 9);
    assert_eq!(hour["by_iface"].as_array().unwrap().len(), 3);
    let day = c.get("/api/fleet/aggregates?window=day").json();
    assert_eq!(row(&day, "eth0"), (3, 24_000, 2400, 2));
    assert_eq!(row(&day, "wlan0"), (2, 7500, 750, 2));
    assert_eq!(row(&day, "(unknown)").0, 13);
    // Biggest first: eth0 (24,000 + 2,400 bytes) before wlan0 over the day.
    assert_eq!(day["by_iface"][0]["key"], "eth0");
    h.stop();
    let _ = std::fs::remove_dir_all(&f.dir);
}
