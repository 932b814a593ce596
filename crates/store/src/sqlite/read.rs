//! Queries: SQL built from a [`Query`] (every field narrows), rows turned back into the model's
//! types. Flows are stored as columns; their schema-v1 JSON line is written again from them,
//! byte for byte what `FlowRecord::write_json` wrote (a test holds the two together).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use engine::record::{l4_name, write_json_str, write_rfc3339};
use engine::sockets::ProcessInfo;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension};

use super::ip_from_bytes;
use crate::crypto::{SampleKey, SamplePlace};
use crate::model::{
    AlertRow, DeviceId, Query, Rollup, RollupGrain, Sample, SampleDir, Severity, StoreError, StoredFlow,
};

/// A WHERE clause under construction.
#[derive(Default)]
pub(crate) struct Filter {
    pub(crate) sql: String,
    pub(crate) params: Vec<Value>,
}

impl Filter {
    pub(crate) fn and(&mut self, cond: &str) {
        self.sql
            .push_str(if self.sql.is_empty() { " WHERE " } else { " AND " });
        self.sql.push_str(cond);
    }
    /// `?N` for a new parameter.
    pub(crate) fn param(&mut self, v: Value) -> String {
        self.params.push(v);
        format!("?{}", self.params.len())
    }
}

/// `s` for LIKE with `\` as the escape character.
pub(crate) fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// What a host filter means.
pub(crate) enum Host {
    Ip(IpAddr),
    /// A domain, lowercased, without a trailing dot.
    Domain(String),
}

pub(crate) fn parse_host(h: &str) -> Host {
    let t = h.trim();
    let t = t.strip_prefix('[').and_then(|x| x.strip_suffix(']')).unwrap_or(t);
    match t.parse::<IpAddr>() {
        Ok(ip) => Host::Ip(ip),
        Err(_) => Host::Domain(t.trim_end_matches('.').to_ascii_lowercase()),
    }
}

/// Subquery: ids of strings naming the domain or one of its subdomains.
pub(crate) fn domain_ids(f: &mut Filter, d: &str) -> String {
    let exact = f.param(Value::Text(d.to_string()));
    let sub = f.param(Value::Text(format!("%.{}", like_escape(d))));
    format!("(SELECT id FROM strings WHERE s = {exact} COLLATE NOCASE OR s LIKE {sub} ESCAPE '\\')")
}

/// Subquery: ids of strings equal to `s` (case-insensitive).
pub(crate) fn name_ids(f: &mut Filter, s: &str) -> String {
    let p = f.param(Value::Text(s.to_string()));
    format!("(SELECT id FROM strings WHERE s = {p} COLLATE NOCASE)")
}

/// Subquery: ids of exe paths whose file name is `s` (case-insensitive).
pub(crate) fn exe_ids(f: &mut Filter, s: &str) -> String {
    let p = f.param(Value::Text(format!("%/{}", like_escape(s))));
    format!("(SELECT id FROM strings WHERE s LIKE {p} ESCAPE '\\')")
}

fn ip_blob(ip: &IpAddr) -> Value {
    let mut b = [0u8; 16];
    let n = super::ip_bytes(ip, &mut b);
    Value::Blob(b[..n].to_vec())
}

/// The filter of flows (alias `f`).
pub(crate) fn flow_filter(q: &Query, f: &mut Filter, time: bool) {
    if let Some(d) = q.device {
        let p = f.param(Value::Integer(d.0.into()));
        f.and(&format!("f.device = {p}"));
    }
    if let Some(app) = &q.app {
        let names = name_ids(f, app);
        let exes = exe_ids(f, app);
        f.and(&format!(
            "(f.app_id IN {names} OR f.process_id IN (SELECT id FROM processes WHERE exe_id IN {exes}))"
        ));
    }
    if let Some(h) = &q.host {
        match parse_host(h) {
            Host::Ip(ip) => {
                let p = f.param(ip_blob(&ip));
                f.and(&format!("(f.server_ip = {p} OR f.client_ip = {p})"));
            }
            Host::Domain(d) => {
                let ids = domain_ids(f, &d);
                f.and(&format!("f.domain_id IN {ids}"));
            }
        }
    }
    if time {
        if let Some(t) = q.since {
            let p = f.param(Value::Integer(t));
            f.and(&format!("f.start >= {p}"));
        }
        if let Some(t) = q.until {
            let p = f.param(Value::Integer(t));
            f.and(&format!("f.start < {p}"));
        }
    }
}

fn limit_sql(q: &Query) -> String {
    match q.limit {
        Some(n) => format!(" LIMIT {}", n.min(i64::MAX as usize)),
        None => String::new(),
    }
}

pub(crate) fn flows(conn: &Connection, q: &Query) -> rusqlite::Result<Vec<StoredFlow>> {
    let mut f = Filter::default();
    flow_filter(q, &mut f, true);
    let sql = format!(
        "SELECT f.device, f.flow_id, f.start, f.\"end\", f.proto, f.client_ip, f.client_port, \
         f.server_ip, f.server_port, f.vlan, f.bits, ap.s, d.s, a.s, p.pid, e.s, f.process_id, \
         f.pkts_ts, f.bytes_ts, f.payload_ts, f.pkts_tc, f.bytes_tc, f.payload_tc, i.s \
         FROM flows f LEFT JOIN strings ap ON ap.id = f.app_proto_id \
         LEFT JOIN strings i ON i.id = f.iface_id \
         LEFT JOIN strings d ON d.id = f.domain_id LEFT JOIN strings a ON a.id = f.app_id \
         LEFT JOIN processes p ON p.id = f.process_id LEFT JOIN strings e ON e.id = p.exe_id{} \
         ORDER BY f.start DESC, f.id DESC{}",
        f.sql,
        limit_sql(q)
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(f.params.iter()))?;
    let mut procs: HashMap<i64, Option<ProcessInfo>> = HashMap::new();
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let row = FlowRow {
            device: r.get(0)?,
            flow_id: r.get::<_, i64>(1)? as u64,
            start: r.get(2)?,
            end: r.get(3)?,
            proto: r.get(4)?,
            client: SocketAddr::new(ip_from_bytes(&r.get::<_, Vec<u8>>(5)?), r.get(6)?),
            server: SocketAddr::new(ip_from_bytes(&r.get::<_, Vec<u8>>(7)?), r.get(8)?),
            vlan: r.get(9)?,
            bits: r.get(10)?,
            app_proto: r.get(11)?,
            domain: r.get(12)?,
            app: r.get(13)?,
            pid: r.get(14)?,
            exe: r.get(15)?,
            counters: [
                r.get::<_, i64>(17)? as u64,
                r.get::<_, i64>(18)? as u64,
                r.get::<_, i64>(19)? as u64,
                r.get::<_, i64>(20)? as u64,
                r.get::<_, i64>(21)? as u64,
                r.get::<_, i64>(22)? as u64,
            ],
            iface: r.get(23)?,
        };
        let process_id: Option<i64> = r.get(16)?;
        let process = match process_id {
            Some(id) => {
                if let std::collections::hash_map::Entry::Vacant(e) = procs.entry(id) {
                    e.insert(load_process(conn, id)?);
                }
                procs[&id].as_ref()
            }
            None => None,
        };
        let mut json = String::with_capacity(512);
        row.write_json(process, &mut json);
        out.push(StoredFlow {
            device: DeviceId(row.device),
            flow_id: row.flow_id,
            start: row.start,
            end: row.end,
            proto: row.proto,
            client: row.client,
            server: row.server,
            app_proto: row.app_proto,
            domain: row.domain,
            app: row.app,
            pid: row.pid,
            exe: row.exe.map(PathBuf::from),
            packets_to_server: row.counters[0],
            packets_to_client: row.counters[3],
            bytes_to_server: row.counters[1],
            bytes_to_client: row.counters[4],
            json,
        });
    }
    Ok(out)
}

fn load_process(conn: &Connection, id: i64) -> rusqlite::Result<Option<ProcessInfo>> {
    conn.prepare_cached(
        "SELECT p.pid, p.start_time, n.s, e.s, p.ppid, p.cmdline, p.uid, p.user, p.container, p.unit, \
         p.package, p.flags FROM processes p JOIN strings n ON n.id = p.name_id \
         LEFT JOIN strings e ON e.id = p.exe_id WHERE p.id = ?1",
    )?
    .query_row([id], |r| {
        let cmdline: String = r.get(5)?;
        let flags: i64 = r.get(11)?;
        Ok(ProcessInfo {
            pid: r.get(0)?,
            start_time: r.get(1)?,
            name: r.get(2)?,
            exe: r.get::<_, Option<String>>(3)?.map(PathBuf::from),
            ppid: r.get(4)?,
            cmdline: if cmdline.is_empty() {
                Vec::new()
            } else {
                cmdline.split('\0').map(str::to_string).collect()
            },
            uid: r.get(6)?,
            user: r.get(7)?,
            container: r.get(8)?,
            unit: r.get(9)?,
            package: r.get(10)?,
            exe_deleted: flags & 1 != 0,
            exe_in_temp: flags & 2 != 0,
            package_checked: flags & 4 != 0,
            inferred: false,
        })
    })
    .optional()
}

struct FlowRow {
    device: u32,
    flow_id: u64,
    start: i64,
    end: i64,
    proto: u8,
    client: SocketAddr,
    server: SocketAddr,
    vlan: i64,
    bits: i64,
    app_proto: Option<String>,
    domain: Option<String>,
    app: Option<String>,
    pid: Option<u32>,
    exe: Option<String>,
    /// packets, bytes, payload to the server; the same to the client.
    counters: [u64; 6],
    iface: Option<String>,
}

impl FlowRow {
    /// The same bytes as `engine::record::FlowRecord::write_json`.
    fn write_json(&self, process: Option<&ProcessInfo>, out: &mut String) {
        let b = self.bits;
        let client_by = ["syn", "syn_ack", "first_packet", "port_guess", "protocol"]
            .get((b & 0xf) as usize)
            .copied()
            .unwrap_or("syn");
        let state = ["handshake", "established", "closing", "closed", "active"]
            .get((b >> 4 & 0xf) as usize)
            .copied()
            .unwrap_or("active");
        let ended = ["idle_timeout", "reused", "evicted", "end_of_input"]
            .get((b >> 8 & 0xf) as usize)
            .copied()
            .unwrap_or("end_of_input");
        let app_by = if b >> 12 & 0xf == 1 { "port" } else { "content" };
        let source = [
            None,
            Some("tls_sni"),
            Some("quic_sni"),
            Some("http_host"),
            Some("dns"),
        ]
        .get((b >> 16 & 0xf) as usize)
        .copied()
        .flatten();
        let inferred = b >> 20 & 1 == 1;
        let _ = write!(
            out,
            "{{\"type\":\"flow\",\"v\":{},\"id\":{},\"start\":\"",
            engine::SCHEMA_VERSION,
            self.flow_id
        );
        write_rfc3339(out, self.start);
        out.push_str("\",\"end\":\"");
        write_rfc3339(out, self.end);
        let _ = write!(
            out,
            "\",\"l4\":\"{}\",\"client\":{{\"ip\":\"{}\",\"port\":{}}},\"server\":{{\"ip\":\"{}\",\"port\":{}}},\"vlan\":",
            l4_name(self.proto),
            self.client.ip(),
            self.client.port(),
            self.server.ip(),
            self.server.port()
        );
        let (v, w) = (self.vlan & 0xffff, self.vlan >> 16 & 0xffff);
        match (v, w) {
            (0, _) => out.push_str("null"),
            (v, 0) => {
                let _ = write!(out, "{v}");
            }
            (v, w) => {
                let _ = write!(out, "{v},\"vlan_inner\":{w}");
            }
        }
        let c = &self.counters;
        let _ = write!(
            out,
            ",\"client_by\":\"{client_by}\",\"state\":\"{state}\",\"to_server\":{{\"packets\":{},\"bytes\":{},\"payload_bytes\":{}}},\"to_client\":{{\"packets\":{},\"bytes\":{},\"payload_bytes\":{}}},\"ended_by\":\"{ended}\",\"app_proto\":",
            c[0], c[1], c[2], c[3], c[4], c[5]
        );
        match &self.app_proto {
            Some(a) => {
                let _ = write!(out, "\"{a}\",\"app_proto_by\":\"{app_by}\"");
            }
            None => out.push_str("null"),
        }
        out.push_str(",\"domain\":");
        match &self.domain {
            Some(d) => write_json_str(out, d),
            None => out.push_str("null"),
        }
        out.push_str(",\"domain_source\":");
        match source {
            Some(s) => {
                let _ = write!(out, "\"{s}\"");
            }
            None => out.push_str("null"),
        }
        if let Some(i) = &self.iface {
            out.push_str(",\"iface\":");
            write_json_str(out, i);
        }
        if let Some(p) = process {
            out.push_str(",\"process\":");
            if inferred {
                let mut p = p.clone();
                p.inferred = true;
                out.push_str(&engine::connections::process_json(&p));
            } else {
                out.push_str(&engine::connections::process_json(p));
            }
        }
        out.push('}');
    }
}

/// The filter of events (alias `e`).
fn event_filter(q: &Query, f: &mut Filter) {
    if let Some(d) = q.device {
        let p = f.param(Value::Integer(d.0.into()));
        f.and(&format!("e.device = {p}"));
    }
    if let Some(app) = &q.app {
        let names = name_ids(f, app);
        f.and(&format!("e.app_id IN {names}"));
    }
    if let Some(h) = &q.host {
        match parse_host(h) {
            Host::Ip(ip) => {
                let p = f.param(ip_blob(&ip));
                f.and(&format!("(e.server_ip = {p} OR e.client_ip = {p})"));
            }
            Host::Domain(d) => {
                let ids = domain_ids(f, &d);
                f.and(&format!("e.host_id IN {ids}"));
            }
        }
    }
    if let Some(t) = q.since {
        let p = f.param(Value::Integer(t));
        f.and(&format!("e.ts >= {p}"));
    }
    if let Some(t) = q.until {
        let p = f.param(Value::Integer(t));
        f.and(&format!("e.ts < {p}"));
    }
}

pub(crate) fn events(conn: &Connection, q: &Query) -> rusqlite::Result<Vec<String>> {
    let mut f = Filter::default();
    event_filter(q, &mut f);
    let sql = format!(
        "SELECT e.json FROM events e{} ORDER BY e.ts DESC, e.id DESC{}",
        f.sql,
        limit_sql(q)
    );
    let mut stmt = conn.prepare(&sql)?;
    stmt.query_map(rusqlite::params_from_iter(f.params.iter()), |r| r.get(0))?
        .collect()
}

/// The filter of alerts (alias `a`).
pub(crate) fn alert_filter(q: &Query, f: &mut Filter, time: bool) {
    if let Some(d) = q.device {
        let p = f.param(Value::Integer(d.0.into()));
        f.and(&format!("a.device = {p}"));
    }
    if let Some(app) = &q.app {
        let p = f.param(Value::Text(app.clone()));
        f.and(&format!("a.app = {p} COLLATE NOCASE"));
    }
    if let Some(h) = &q.host {
        match parse_host(h) {
            Host::Ip(ip) => {
                let p = f.param(Value::Text(ip.to_string()));
                f.and(&format!("a.remote = {p}"));
            }
            Host::Domain(d) => {
                let exact = f.param(Value::Text(d.clone()));
                let sub = f.param(Value::Text(format!("%.{}", like_escape(&d))));
                f.and(&format!(
                    "(a.remote = {exact} COLLATE NOCASE OR a.remote LIKE {sub} ESCAPE '\\')"
                ));
            }
        }
    }
    if time {
        if let Some(t) = q.since {
            let p = f.param(Value::Integer(t));
            f.and(&format!("a.ts >= {p}"));
        }
        if let Some(t) = q.until {
            let p = f.param(Value::Integer(t));
            f.and(&format!("a.ts < {p}"));
        }
    }
}

pub(crate) fn alerts(conn: &Connection, q: &Query) -> rusqlite::Result<Vec<AlertRow>> {
    let mut f = Filter::default();
    alert_filter(q, &mut f, true);
    let sql = format!(
        "SELECT a.id, a.ts, a.severity, a.rule, a.app, a.remote, a.reason, a.json FROM alerts a{} \
         ORDER BY a.ts DESC, a.rowid DESC{}",
        f.sql,
        limit_sql(q)
    );
    let mut stmt = conn.prepare(&sql)?;
    stmt.query_map(rusqlite::params_from_iter(f.params.iter()), |r| {
        let sev: i64 = r.get(2)?;
        Ok(AlertRow {
            id: r.get(0)?,
            ts: r.get(1)?,
            severity: match sev {
                0 => Severity::Info,
                1 => Severity::Low,
                2 => Severity::Medium,
                _ => Severity::High,
            },
            rule: r.get(3)?,
            app: r.get(4)?,
            remote: r.get(5)?,
            reason: r.get(6)?,
            json: r.get(7)?,
        })
    })?
    .collect()
}

/// The filter of rollups (alias `r`).
pub(crate) fn rollup_filter(q: &Query, f: &mut Filter, time: bool) {
    if let Some(d) = q.device {
        let p = f.param(Value::Integer(d.0.into()));
        f.and(&format!("r.device = {p}"));
    }
    if let Some(app) = &q.app {
        let names = name_ids(f, app);
        f.and(&format!("r.app_id IN {names}"));
    }
    if let Some(h) = &q.host {
        match parse_host(h) {
            Host::Ip(ip) => {
                let p = f.param(Value::Text(ip.to_string()));
                f.and(&format!("r.remote_id IN (SELECT id FROM strings WHERE s = {p})"));
            }
            Host::Domain(d) => {
                let ids = domain_ids(f, &d);
                f.and(&format!("r.remote_id IN {ids}"));
            }
        }
    }
    if time {
        if let Some(t) = q.since {
            let p = f.param(Value::Integer(t));
            f.and(&format!("r.bucket >= {p}"));
        }
        if let Some(t) = q.until {
            let p = f.param(Value::Integer(t));
            f.and(&format!("r.bucket < {p}"));
        }
    }
}

pub(crate) fn rollups(conn: &Connection, grain: RollupGrain, q: &Query) -> rusqlite::Result<Vec<Rollup>> {
    let table = match grain {
        RollupGrain::Minute => "rollup_minute",
        RollupGrain::Hour => "rollup_hour",
    };
    let mut f = Filter::default();
    rollup_filter(q, &mut f, true);
    let sql = format!(
        "SELECT r.device, r.bucket, a.s, m.s, r.flows, r.bytes_ts, r.bytes_tc, r.packets FROM {table} r \
         LEFT JOIN strings a ON a.id = r.app_id LEFT JOIN strings m ON m.id = r.remote_id{} \
         ORDER BY r.bucket DESC, r.bytes_ts + r.bytes_tc DESC{}",
        f.sql,
        limit_sql(q)
    );
    let mut stmt = conn.prepare(&sql)?;
    stmt.query_map(rusqlite::params_from_iter(f.params.iter()), |r| {
        Ok(Rollup {
            device: DeviceId(r.get(0)?),
            bucket: r.get(1)?,
            app: r.get(2)?,
            remote: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
            flows: r.get::<_, i64>(4)? as u64,
            bytes_to_server: r.get::<_, i64>(5)? as u64,
            bytes_to_client: r.get::<_, i64>(6)? as u64,
            packets: r.get::<_, i64>(7)? as u64,
        })
    })?
    .collect()
}

/// A sample as stored, not yet opened.
pub(crate) struct SealedSample {
    device: u32,
    flow_id: u64,
    flow_start: i64,
    dir: SampleDir,
    ts: i64,
    nonce: Vec<u8>,
    sealed: Vec<u8>,
}

impl SealedSample {
    pub(crate) fn open(self, key: &SampleKey) -> Result<Sample, StoreError> {
        let place = SamplePlace {
            device: DeviceId(self.device),
            flow_id: self.flow_id,
            flow_start: self.flow_start,
            dir: self.dir,
        };
        let bytes = key.open(&place, &self.nonce, &self.sealed)?;
        Ok(Sample {
            flow_id: self.flow_id,
            flow_start: self.flow_start,
            dir: self.dir,
            ts: self.ts,
            bytes,
        })
    }
}

/// The filter of samples (alias `s`): by their flow when app or host narrows.
pub(crate) fn sample_filter(q: &Query, f: &mut Filter, time: bool) {
    if let Some(d) = q.device {
        let p = f.param(Value::Integer(d.0.into()));
        f.and(&format!("s.device = {p}"));
    }
    if q.app.is_some() || q.host.is_some() {
        let mut inner = Filter {
            sql: String::new(),
            params: std::mem::take(&mut f.params),
        };
        let narrowed = Query {
            device: None,
            since: None,
            until: None,
            limit: None,
            ..q.clone()
        };
        flow_filter(&narrowed, &mut inner, false);
        f.params = inner.params;
        f.and(&format!(
            "EXISTS (SELECT 1 FROM flows f{} AND f.device = s.device AND f.flow_id = s.flow_id \
             AND f.start = s.flow_start)",
            inner.sql
        ));
    }
    if time {
        if let Some(t) = q.since {
            let p = f.param(Value::Integer(t));
            f.and(&format!("s.flow_start >= {p}"));
        }
        if let Some(t) = q.until {
            let p = f.param(Value::Integer(t));
            f.and(&format!("s.flow_start < {p}"));
        }
    }
}

pub(crate) fn sealed_samples(conn: &Connection, q: &Query) -> rusqlite::Result<Vec<SealedSample>> {
    let mut f = Filter::default();
    sample_filter(q, &mut f, true);
    let sql = format!(
        "SELECT s.device, s.flow_id, s.flow_start, s.dir, s.ts, s.nonce, s.sealed FROM samples s{} \
         ORDER BY s.flow_start DESC, s.flow_id, s.dir{}",
        f.sql,
        limit_sql(q)
    );
    let mut stmt = conn.prepare(&sql)?;
    stmt.query_map(rusqlite::params_from_iter(f.params.iter()), |r| {
        Ok(SealedSample {
            device: r.get(0)?,
            flow_id: r.get::<_, i64>(1)? as u64,
            flow_start: r.get(2)?,
            dir: if r.get::<_, i64>(3)? == 1 {
                SampleDir::ToClient
            } else {
                SampleDir::ToServer
            },
            ts: r.get(4)?,
            nonce: r.get(5)?,
            sealed: r.get(6)?,
        })
    })?
    .collect()
}
