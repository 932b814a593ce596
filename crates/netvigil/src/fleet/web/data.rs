//! What the fleet dashboard shows, read from the records store (`store::Backend`, queried per
//! device with `Query.device`) and the fleet tables (`FleetDb`: names, revoked marks): the
//! devices, one device's flows, apps and alerts, fleet-wide totals per device, app,
//! organisation/ASN, country and capture interface over a rolling window, and destinations outside the known
//! lists seen from several devices. Remote addresses are placed with the `intel` place
//! databases when some are installed (answers cached per address); aggregate answers are
//! cached for a few seconds. All functions block: the routes call them on tokio's blocking
//! pool.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use engine::enrich::{DomainLabels as _, GeoLookup as _, Place};
use serde_json::{Value, json};
use store::{Backend, DeviceId, Query, RollupGrain};

use crate::fleet::db::{FleetDb, Target};

/// Most flows read to place remote addresses for one aggregate (each carries its JSON record:
/// about 40 MB at this cap); beyond it the answer says `"truncated": true`.
pub const MAX_FLOWS: usize = 50_000;
/// Most addresses kept in the place cache (emptied when full).
const MAX_PLACES: usize = 100_000;

/// Where the records are.
#[derive(Clone, Debug)]
pub enum StoreTarget {
    /// A SQLite store file (`fleet-records.db` in the server's data directory).
    Sqlite(PathBuf),
    /// A PostgreSQL URL.
    Postgres(String),
}

/// A rolling window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    Hour,
    Day,
}

impl Window {
    /// `hour` or `day` (also `1h`, `24h`, `1d`).
    pub fn parse(s: Option<&str>) -> Result<Window, String> {
        match s.unwrap_or("hour") {
            "hour" | "1h" => Ok(Window::Hour),
            "day" | "24h" | "1d" => Ok(Window::Day),
            other => Err(format!("window {other:?}: use hour or day")),
        }
    }
    fn ns(self) -> i64 {
        match self {
            Window::Hour => 3_600_000_000_000,
            Window::Day => 86_400_000_000_000,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Window::Hour => "hour",
            Window::Day => "day",
        }
    }
}

/// The data side of the dashboard.
pub struct Data {
    store_target: StoreTarget,
    fleet_target: Target,
    store: Mutex<Option<Box<dyn Backend>>>,
    fleet: Mutex<Option<FleetDb>>,
    places: Option<intel::Places>,
    labels: intel::DomainTable,
    place_cache: Mutex<HashMap<IpAddr, Option<Place>>>,
    cache: Mutex<HashMap<String, (Instant, Value)>>,
    cache_ttl: Duration,
}

impl std::fmt::Debug for Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Data")
            .field("store", &self.store_target)
            .field("places", &self.places.is_some())
            .finish()
    }
}

fn ns_to_ms(ns: i64) -> i64 {
    ns.div_euclid(1_000_000)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Data {
    /// `places`: the place databases (`None`: org, ASN and country stay empty); `labels`: the
    /// known-domain lists (shipped table, user additions, tracker lists).
    pub fn new(
        store_target: StoreTarget,
        fleet_target: Target,
        places: Option<intel::Places>,
        labels: intel::DomainTable,
        cache_ttl: Duration,
    ) -> Data {
        Data {
            store_target,
            fleet_target,
            store: Mutex::new(None),
            fleet: Mutex::new(None),
            places,
            labels,
            place_cache: Mutex::new(HashMap::new()),
            cache: Mutex::new(HashMap::new()),
            cache_ttl,
        }
    }

    /// Where the records are.
    pub fn store_target(&self) -> &StoreTarget {
        &self.store_target
    }

    pub(super) fn with_store<T>(&self, f: impl FnOnce(&mut dyn Backend) -> Result<T>) -> Result<T> {
        let mut g = lock(&self.store);
        if g.is_none() {
            let b: Box<dyn Backend> = match &self.store_target {
                StoreTarget::Sqlite(p) => Box::new(store::SqliteStore::open(p).map_err(anyhow::Error::msg)?),
                StoreTarget::Postgres(u) => {
                    Box::new(store::pg::PgStore::connect(u, DeviceId(0)).map_err(anyhow::Error::msg)?)
                }
            };
            *g = Some(b);
        }
        let b = g.as_mut().context("store")?;
        let r = f(b.as_mut());
        if r.is_err() {
            // A broken connection is reopened on the next request.
            *g = None;
        }
        r
    }

    fn with_fleet<T>(&self, f: impl FnOnce(&mut FleetDb) -> Result<T>) -> Result<T> {
        let mut g = lock(&self.fleet);
        if g.is_none() {
            *g = Some(FleetDb::open(&self.fleet_target)?);
        }
        let r = f(g.as_mut().context("fleet db")?);
        if r.is_err() {
            *g = None;
        }
        r
    }

    fn place(&self, ip: IpAddr) -> Option<Place> {
        let places = self.places.as_ref()?;
        let mut c = lock(&self.place_cache);
        if let Some(p) = c.get(&ip) {
            return p.clone();
        }
        if c.len() >= MAX_PLACES {
            c.clear();
        }
        let p = places.place(ip);
        c.insert(ip, p.clone());
        p
    }

    fn cached(&self, key: &str, now: Instant, make: impl FnOnce() -> Result<Value>) -> Result<Value> {
        if let Some((t, v)) = lock(&self.cache).get(key)
            && now.duration_since(*t) < self.cache_ttl
        {
            return Ok(v.clone());
        }
        let v = make()?;
        let mut c = lock(&self.cache);
        c.retain(|_, (t, _)| now.duration_since(*t) < self.cache_ttl);
        c.insert(key.to_string(), (now, v.clone()));
        Ok(v)
    }

    /// Whether the device exists in the fleet tables.
    pub fn device_exists(&self, device: u32) -> Result<bool> {
        Ok(self
            .with_fleet(|f| f.agents())?
            .iter()
            .any(|a| a.device.0 == device))
    }

    /// Every enrolled device: name, revoked, last seen (newest flow end), flows stored (from
    /// the hour rollups).
    pub fn devices(&self, now: Instant) -> Result<Value> {
        self.cached("devices", now, || self.devices_now())
    }

    fn devices_now(&self) -> Result<Value> {
        let agents = self.with_fleet(|f| f.agents())?;
        let mut out = Vec::new();
        for a in agents {
            let q = Query {
                device: Some(a.device),
                limit: Some(1),
                ..Query::default()
            };
            // The last batch comes from the store (the fleet database does not keep it), as
            // `netvigil server agents` reads it.
            let (last, flows, last_batch) = self.with_store(|s| {
                let last = s.flows(&q)?.first().map(|f| f.end.max(f.start));
                let flows: u64 = s
                    .rollups(
                        RollupGrain::Hour,
                        &Query {
                            device: Some(a.device),
                            ..Query::default()
                        },
                    )?
                    .iter()
                    .map(|r| r.flows)
                    .sum();
                Ok((last, flows, s.source_seq(a.device)?))
            })?;
            out.push(json!({
                "device": a.device.0,
                "name": a.name,
                "enrolled_ms": ns_to_ms(a.enrolled),
                "revoked": a.revoked.is_some(),
                "revoked_ms": a.revoked.map(ns_to_ms),
                "last_seen_ms": last.map(ns_to_ms),
                "flows": flows,
                "last_batch": last_batch,
            }));
        }
        Ok(json!({ "devices": out }))
    }

    fn place_json(&self, ip: IpAddr) -> Value {
        let p = self.place(ip);
        json!({
            "org": p.as_ref().and_then(|p| p.org.clone()),
            "asn": p.as_ref().and_then(|p| p.asn),
            "country": p.as_ref().and_then(|p| p.country_str().map(str::to_string)),
        })
    }

    /// One device's newest flows (at most `limit`) since `since` (ns).
    pub fn device_flows(&self, device: u32, since: Option<i64>, limit: usize) -> Result<Value> {
        let q = Query {
            device: Some(DeviceId(device)),
            since,
            limit: Some(limit),
            ..Query::default()
        };
        let flows = self.with_store(|s| s.flows(&q).map_err(anyhow::Error::msg))?;
        let rows: Vec<Value> = flows
            .iter()
            .map(|f| {
                let mut v = json!({
                    "start_ms": ns_to_ms(f.start),
                    "end_ms": ns_to_ms(f.end),
                    "proto": proto_name(f.proto),
                    "client": f.client.to_string(),
                    "server": f.server.to_string(),
                    "app": f.app,
                    "pid": f.pid,
                    "domain": f.domain,
                    "app_proto": f.app_proto,
                    "bytes_to_server": f.bytes_to_server,
                    "bytes_to_client": f.bytes_to_client,
                });
                if let (Value::Object(m), Value::Object(p)) = (&mut v, self.place_json(f.server.ip())) {
                    m.extend(p);
                }
                v
            })
            .collect();
        Ok(json!({ "device": device, "flows": rows }))
    }

    /// One device's apps over the window (from the rollups).
    pub fn device_apps(&self, device: u32, w: Window, now_ns: i64) -> Result<Value> {
        let grain = match w {
            Window::Hour => RollupGrain::Minute,
            Window::Day => RollupGrain::Hour,
        };
        let q = Query {
            device: Some(DeviceId(device)),
            since: Some(now_ns - w.ns()),
            ..Query::default()
        };
        let rollups = self.with_store(|s| s.rollups(grain, &q).map_err(anyhow::Error::msg))?;
        let mut apps: BTreeMap<String, (u64, u64, u64, BTreeSet<String>)> = BTreeMap::new();
        for r in rollups {
            let e = apps
                .entry(r.app.unwrap_or_else(|| "(unknown)".into()))
                .or_default();
            e.0 += r.flows;
            e.1 += r.bytes_to_client;
            e.2 += r.bytes_to_server;
            e.3.insert(r.remote);
        }
        let mut rows: Vec<Value> = apps
            .into_iter()
            .map(|(app, (flows, bin, bout, remotes))| {
                json!({"app": app, "flows": flows, "bytes_in": bin, "bytes_out": bout, "remotes": remotes.len()})
            })
            .collect();
        rows.sort_by_key(|v| {
            std::cmp::Reverse(v["bytes_in"].as_u64().unwrap_or(0) + v["bytes_out"].as_u64().unwrap_or(0))
        });
        Ok(json!({ "device": device, "window": w.name(), "apps": rows }))
    }

    /// One device's newest alerts.
    pub fn device_alerts(&self, device: u32, limit: usize) -> Result<Value> {
        let q = Query {
            device: Some(DeviceId(device)),
            limit: Some(limit),
            ..Query::default()
        };
        let alerts = self.with_store(|s| s.alerts(&q).map_err(anyhow::Error::msg))?;
        let rows: Vec<Value> = alerts
            .iter()
            .map(|a| {
                json!({"id": a.id, "ts_ms": ns_to_ms(a.ts), "severity": a.severity.as_str(), "rule": a.rule,
                       "app": a.app, "remote": a.remote, "reason": a.reason})
            })
            .collect();
        Ok(json!({ "device": device, "alerts": rows }))
    }

    fn window_flows(&self, w: Window, now_ns: i64) -> Result<(Vec<store::StoredFlow>, bool)> {
        let q = Query {
            since: Some(now_ns - w.ns()),
            limit: Some(MAX_FLOWS + 1),
            ..Query::default()
        };
        let mut flows = self.with_store(|s| s.flows(&q).map_err(anyhow::Error::msg))?;
        let truncated = flows.len() > MAX_FLOWS;
        flows.truncate(MAX_FLOWS);
        Ok((flows, truncated))
    }

    /// Every device's rollups over the window: per minute for the hour, per hour for the day.
    fn window_rollups(&self, w: Window, now_ns: i64) -> Result<Vec<store::Rollup>> {
        let grain = match w {
            Window::Hour => RollupGrain::Minute,
            Window::Day => RollupGrain::Hour,
        };
        let q = Query {
            since: Some(now_ns - w.ns()),
            ..Query::default()
        };
        self.with_store(|s| s.rollups(grain, &q).map_err(anyhow::Error::msg))
    }

    fn names(&self) -> Result<HashMap<u32, String>> {
        Ok(self
            .with_fleet(|f| f.agents())?
            .into_iter()
            .map(|a| (a.device.0, a.name))
            .collect())
    }

    /// Fleet-wide totals over the window: per device and app from the rollups (exact), per
    /// organisation/ASN and country from the newest flows (at most [`MAX_FLOWS`]: their
    /// server addresses are placed one by one), per interface from the same flows' `iface`.
    pub fn aggregates(&self, w: Window, now_ns: i64, now: Instant) -> Result<Value> {
        self.cached(&format!("agg:{}", w.name()), now, || {
            let names = self.names()?;
            let rollups = self.window_rollups(w, now_ns)?;
            let (flows, truncated) = self.window_flows(w, now_ns)?;
            let (mut dev, mut app) = (BTreeMap::new(), BTreeMap::new());
            let mut total = 0;
            for r in &rollups {
                let t = Totals {
                    flows: r.flows,
                    bin: r.bytes_to_client,
                    bout: r.bytes_to_server,
                };
                total += r.flows;
                add(&mut dev, r.device.0.to_string(), r.device.0, &t);
                add(&mut app, r.app.clone().unwrap_or_else(|| "(unknown)".into()), r.device.0, &t);
            }
            let (mut org, mut country, mut iface) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
            let mut asn_of: HashMap<String, Option<u32>> = HashMap::new();
            for f in &flows {
                let t = Totals {
                    flows: 1,
                    bin: f.bytes_to_client,
                    bout: f.bytes_to_server,
                };
                let p = self.place(f.server.ip());
                let o = p
                    .as_ref()
                    .and_then(|p| p.org.clone())
                    .unwrap_or_else(|| "(unknown)".into());
                asn_of.entry(o.clone()).or_insert(p.as_ref().and_then(|p| p.asn));
                add(&mut org, o, f.device.0, &t);
                let c = p
                    .as_ref()
                    .and_then(|p| p.country_str().map(str::to_string))
                    .unwrap_or_else(|| "(unknown)".into());
                add(&mut country, c, f.device.0, &t);
                let i = iface_of(&f.json).unwrap_or_else(|| "(unknown)".into());
                add(&mut iface, i, f.device.0, &t);
            }
            Ok(json!({
                "window": w.name(),
                "since_ms": ns_to_ms(now_ns - w.ns()),
                "flows": total,
                "placed_flows": flows.len(),
                "truncated": truncated,
                "places": self.places.is_some(),
                "by_device": rows(dev, &|k| json!({"name": k.parse::<u32>().ok().and_then(|d| names.get(&d).cloned())})),
                "by_app": rows(app, &|_| json!({})),
                "by_org": rows(org, &|k| json!({"asn": asn_of.get(k).copied().flatten()})),
                "by_country": rows(country, &|_| json!({})),
                "by_iface": rows(iface, &|_| json!({})),
            }))
        })
    }

    /// Destinations not in the known lists (a domain without a label, or an address with no
    /// domain) seen from at least `min_devices` devices over the window, from the rollups
    /// (whose remote is the domain when known, else the address). Local addresses (private,
    /// loopback, link-local) are left out: every LAN has its router. Each destination shown
    /// is placed by one of its addresses.
    pub fn patterns(&self, w: Window, min_devices: usize, now_ns: i64, now: Instant) -> Result<Value> {
        self.cached(&format!("pat:{}:{min_devices}", w.name()), now, || {
            let names = self.names()?;
            let rollups = self.window_rollups(w, now_ns)?;
            #[derive(Default)]
            struct D {
                devices: BTreeSet<u32>,
                apps: BTreeSet<String>,
                flows: u64,
                bytes: u64,
                first: i64,
                last: i64,
            }
            let mut m: BTreeMap<String, D> = BTreeMap::new();
            for r in &rollups {
                let key = match r.remote.parse::<IpAddr>() {
                    Ok(ip) if !engine::judge::is_global(ip) => continue,
                    Ok(ip) => ip.to_string(),
                    Err(_) if self.labels.label(&r.remote).is_some() => continue,
                    Err(_) => r.remote.to_ascii_lowercase(),
                };
                let e = m.entry(key).or_insert_with(|| D {
                    first: r.bucket,
                    last: r.bucket,
                    ..D::default()
                });
                e.devices.insert(r.device.0);
                if let Some(a) = &r.app {
                    e.apps.insert(a.clone());
                }
                e.flows += r.flows;
                e.bytes += r.bytes_to_client + r.bytes_to_server;
                e.first = e.first.min(r.bucket);
                e.last = e.last.max(r.bucket);
            }
            let mut found: Vec<(String, D)> = m
                .into_iter()
                .filter(|(_, d)| d.devices.len() >= min_devices)
                .collect();
            found.sort_by(|a, b| {
                b.1.devices
                    .len()
                    .cmp(&a.1.devices.len())
                    .then(b.1.bytes.cmp(&a.1.bytes))
            });
            found.truncate(200);
            let mut out = Vec::new();
            for (dest, d) in found {
                let ip = match dest.parse::<IpAddr>() {
                    Ok(ip) => Some(ip),
                    Err(_) => {
                        let q = Query {
                            host: Some(dest.clone()),
                            since: Some(now_ns - w.ns()),
                            limit: Some(1),
                            ..Query::default()
                        };
                        self.with_store(|s| s.flows(&q).map_err(anyhow::Error::msg))?
                            .first()
                            .map(|f| f.server.ip())
                    }
                };
                let devs: Vec<Value> = d
                    .devices
                    .iter()
                    .map(|x| json!({"device": x, "name": names.get(x)}))
                    .collect();
                out.push(json!({
                    "destination": dest, "devices": devs, "device_count": d.devices.len(),
                    "apps": d.apps, "flows": d.flows, "bytes": d.bytes,
                    "first_ms": ns_to_ms(d.first), "last_ms": ns_to_ms(d.last),
                    "example_ip": ip.map(|i| i.to_string()),
                    "place": ip.map(|ip| self.place_json(ip)).unwrap_or(Value::Null),
                }));
            }
            Ok(json!({
                "window": w.name(),
                "min_devices": min_devices,
                "patterns": out,
            }))
        })
    }
}

/// The `iface` of a stored flow record (the capture interface, live flows only).
fn iface_of(flow_json: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Iface {
        iface: Option<String>,
    }
    serde_json::from_str::<Iface>(flow_json).ok()?.iface
}

/// Sums for one aggregate row.
struct Totals {
    flows: u64,
    bin: u64,
    bout: u64,
}

#[derive(Default)]
struct Row {
    flows: u64,
    bin: u64,
    bout: u64,
    devices: BTreeSet<u32>,
}

fn add(m: &mut BTreeMap<String, Row>, k: String, device: u32, t: &Totals) {
    let r = m.entry(k).or_default();
    r.flows += t.flows;
    r.bin += t.bin;
    r.bout += t.bout;
    r.devices.insert(device);
}

/// The 100 biggest rows (bytes both ways), each with `extra(key)`'s fields.
fn rows(m: BTreeMap<String, Row>, extra: &dyn Fn(&str) -> Value) -> Vec<Value> {
    let mut v: Vec<(u64, Value)> = m
        .into_iter()
        .map(|(k, t)| {
            let mut row = json!({"key": k, "flows": t.flows, "bytes_in": t.bin, "bytes_out": t.bout,
                                 "devices": t.devices.len()});
            if let (Value::Object(r), Value::Object(e)) = (&mut row, extra(&k)) {
                r.extend(e);
            }
            (t.bin + t.bout, row)
        })
        .collect();
    v.sort_by_key(|(b, _)| std::cmp::Reverse(*b));
    v.into_iter().map(|(_, r)| r).take(100).collect()
}

fn proto_name(p: u8) -> String {
    match p {
        6 => "tcp".into(),
        17 => "udp".into(),
        1 => "icmp".into(),
        58 => "icmpv6".into(),
        n => n.to_string(),
    }
}
