//! The "LAN devices" of a gateway agent (`netvigil run --gateway`, docs/gateway.md): the store
//! keeps each `device` record (docs/records.md) as an event of kind `device`, one when a device
//! is first seen and one each time something about it changes, each with the device's whole
//! state. Per MAC address the newest record is the device; its "last seen" is the newest of that
//! record's time and the end of the newest flow of the last day with one of its addresses.

use std::collections::HashMap;
use std::net::IpAddr;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::data::{Data, StoreTarget};

/// Most LAN devices listed per agent (the agent itself keeps at most 4096).
pub const MAX_DEVICES: usize = 4096;
/// Flows read to find when each LAN device was last seen.
const FLOW_SCAN: usize = 50_000;
const DAY_NS: i64 = 86_400 * 1_000_000_000;

/// The JSON of every `device` record of `device`, oldest first.
fn device_records(target: &StoreTarget, device: u32) -> Result<Vec<String>> {
    match target {
        StoreTarget::Sqlite(path) => {
            let c = rusqlite::Connection::open_with_flags(
                path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .with_context(|| format!("opening {}", path.display()))?;
            c.busy_timeout(std::time::Duration::from_secs(10))?;
            // Kind 8: `Record::Device` in the SQLite store's event kinds.
            let mut st =
                c.prepare("SELECT json FROM events WHERE device = ?1 AND kind = 8 ORDER BY ts, id")?;
            let rows = st
                .query_map([device], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        }
        StoreTarget::Postgres(url) => {
            let mut c = postgres::Client::connect(url, postgres::NoTls)
                .context("connecting to the records database")?;
            let rows = c.query(
                "SELECT json FROM netvigil.events WHERE device = $1 AND kind = 'device' ORDER BY ts_ns",
                &[&i64::from(device)],
            )?;
            Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
        }
    }
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

fn ts_ms(v: &Value, key: &str) -> Option<i64> {
    let s = v.get(key)?.as_str()?;
    crate::history::parse_time(s, 0)
        .ok()
        .map(|ns| ns.div_euclid(1_000_000))
}

/// The LAN devices agent `device` reported, most recently seen first.
pub fn lan_devices(data: &Data, device: u32, now_ns: i64) -> Result<Value> {
    let records = device_records(data.store_target(), device)?;
    // MAC -> newest record (records come oldest first; a later one replaces).
    let mut by_mac: HashMap<String, Value> = HashMap::new();
    for line in &records {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let Some(mac) = v.get("mac").and_then(Value::as_str).map(str::to_owned) else {
            continue;
        };
        if by_mac.len() >= MAX_DEVICES && !by_mac.contains_key(&mac) {
            continue;
        }
        by_mac.insert(mac, v);
    }
    // Address -> newest flow end (ms) over the last day.
    let mut seen: HashMap<IpAddr, i64> = HashMap::new();
    if !by_mac.is_empty() {
        let q = store::Query {
            device: Some(store::DeviceId(device)),
            since: Some(now_ns - DAY_NS),
            limit: Some(FLOW_SCAN),
            ..store::Query::default()
        };
        let flows = data.with_store(|s| s.flows(&q).map_err(anyhow::Error::msg))?;
        for f in &flows {
            let end = f.end.div_euclid(1_000_000);
            for ip in [f.client.ip(), f.server.ip()] {
                let e = seen.entry(ip).or_insert(end);
                *e = (*e).max(end);
            }
        }
    }
    let mut out: Vec<Value> = by_mac
        .into_iter()
        .map(|(mac, v)| {
            let (v4, v6) = (strings(&v, "ipv4"), strings(&v, "ipv6"));
            let changed = ts_ms(&v, "ts");
            let by_flow = v4
                .iter()
                .chain(&v6)
                .filter_map(|a| a.parse::<IpAddr>().ok())
                .filter_map(|a| seen.get(&a).copied())
                .max();
            let last_seen = changed.max(by_flow);
            json!({
                "mac": mac,
                "mac_private": v.get("mac_private").and_then(Value::as_bool).unwrap_or(false),
                "vendor": v.get("vendor").and_then(Value::as_str),
                "name": v.get("name").and_then(Value::as_str),
                "hostname": v.get("hostname").and_then(Value::as_str),
                "mdns_name": strings(&v, "mdns_names").into_iter().next(),
                "ipv4": v4,
                "ipv6": v6,
                "first_seen_ms": ts_ms(&v, "first_seen"),
                "changed_ms": changed,
                "last_seen_ms": last_seen,
            })
        })
        .collect();
    out.sort_by(|a, b| {
        let k = |v: &Value| v["last_seen_ms"].as_i64().unwrap_or(0);
        k(b).cmp(&k(a))
            .then_with(|| a["mac"].as_str().cmp(&b["mac"].as_str()))
    });
    Ok(json!({ "device": device, "lan_devices": out }))
}
