//! Writing a batch: one transaction with cached prepared statements, strings interned through
//! an in-memory cache, rollups aggregated in memory and upserted once per key.

use std::net::IpAddr;

use engine::Record;
use engine::record::{AppBy, ClientBy, DomainSource, EndReason, FlowRecord, FlowState};
use engine::sockets::ProcessInfo;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::schema::{HOUR_NS, MINUTE_NS};
use super::{IdMap, ip_bytes};
use crate::crypto::{SampleKey, SamplePlace};
use crate::model::{Batch, SampleDir, StoreError, Written};

/// Interned ids this connection already knows. Cleared when a transaction fails and when
/// another connection purged (it bumps `PRAGMA user_version`, the strings generation).
#[derive(Default)]
pub(crate) struct Interner {
    strings: IdMap<Box<str>>,
    ips: IdMap<IpAddr>,
    /// (pid, start time) -> the processes seen with it (usually one; exec changes the name).
    procs: foldhash::HashMap<(u32, Option<i64>), Vec<CachedProc>>,
    generation: i32,
}

struct CachedProc {
    name: Box<str>,
    exe: Option<std::path::PathBuf>,
    name_id: i64,
    exe_id: Option<i64>,
    id: i64,
}

/// Caps on the caches (a long run sees many distinct remote addresses).
const MAX_CACHED: usize = 1 << 20;

impl Interner {
    pub(crate) fn clear(&mut self) {
        self.strings.clear();
        self.ips.clear();
        self.procs.clear();
    }

    fn sync_generation(&mut self, tx: &Connection) -> rusqlite::Result<()> {
        let g: i32 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if g != self.generation {
            self.clear();
            self.generation = g;
        }
        if self.strings.len() > MAX_CACHED || self.ips.len() > MAX_CACHED || self.procs.len() > MAX_CACHED {
            self.clear();
        }
        Ok(())
    }

    pub(crate) fn string(&mut self, tx: &Connection, s: &str) -> rusqlite::Result<i64> {
        if let Some(&id) = self.strings.get(s) {
            return Ok(id);
        }
        let id = intern_db(tx, s)?;
        self.strings.insert(s.into(), id);
        Ok(id)
    }

    fn ip(&mut self, tx: &Connection, ip: IpAddr) -> rusqlite::Result<i64> {
        if let Some(&id) = self.ips.get(&ip) {
            return Ok(id);
        }
        let id = intern_db(tx, &ip.to_string())?;
        self.ips.insert(ip, id);
        Ok(id)
    }

    fn process(&mut self, tx: &Connection, p: &ProcessInfo) -> rusqlite::Result<(i64, Option<i64>, i64)> {
        if let Some(list) = self.procs.get(&(p.pid, p.start_time))
            && let Some(c) = list.iter().find(|c| *c.name == *p.name && c.exe == p.exe)
        {
            return Ok((c.name_id, c.exe_id, c.id));
        }
        let name = self.string(tx, &p.name)?;
        let exe = match &p.exe {
            Some(e) => Some(self.string(tx, &e.to_string_lossy())?),
            None => None,
        };
        let found: Option<i64> = tx
            .prepare_cached(
                "SELECT id FROM processes WHERE pid = ?1 AND start_time IS ?2 AND name_id = ?3 \
                 AND exe_id IS ?4",
            )?
            .query_row(params![p.pid, p.start_time, name, exe], |r| r.get(0))
            .optional()?;
        let id = match found {
            Some(id) => id,
            None => {
                let flags = i64::from(p.exe_deleted)
                    | i64::from(p.exe_in_temp) << 1
                    | i64::from(p.package_checked) << 2;
                tx.prepare_cached(
                    "INSERT INTO processes (pid, start_time, name_id, exe_id, ppid, cmdline, uid, \
                     user, container, unit, package, flags) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )?
                .execute(params![
                    p.pid,
                    p.start_time,
                    name,
                    exe,
                    p.ppid,
                    p.cmdline.join("\0"),
                    p.uid,
                    p.user,
                    p.container,
                    p.unit,
                    p.package,
                    flags
                ])?;
                tx.last_insert_rowid()
            }
        };
        self.procs
            .entry((p.pid, p.start_time))
            .or_default()
            .push(CachedProc {
                name: p.name.as_str().into(),
                exe: p.exe.clone(),
                name_id: name,
                exe_id: exe,
                id,
            });
        Ok((name, exe, id))
    }
}

fn intern_db(tx: &Connection, s: &str) -> rusqlite::Result<i64> {
    let found: Option<i64> = tx
        .prepare_cached("SELECT id FROM strings WHERE s = ?1")?
        .query_row([s], |r| r.get(0))
        .optional()?;
    if let Some(id) = found {
        return Ok(id);
    }
    tx.prepare_cached("INSERT INTO strings (s) VALUES (?1)")?
        .execute([s])?;
    Ok(tx.last_insert_rowid())
}

pub(crate) enum WriteError {
    Db(rusqlite::Error),
    Store(StoreError),
}

impl From<rusqlite::Error> for WriteError {
    fn from(e: rusqlite::Error) -> Self {
        WriteError::Db(e)
    }
}

/// Rollup totals of one (device, bucket, app, remote) key.
#[derive(Clone, Copy, Default)]
pub(crate) struct Totals {
    flows: u64,
    bytes_ts: u64,
    bytes_tc: u64,
    packets: u64,
}

pub(crate) type RollupKey = (u32, i64, i64, i64);

/// Rollups of a batch before they are upserted: per minute as flows come, per hour from the
/// minutes when flushed.
#[derive(Default)]
pub(crate) struct RollupAcc {
    minute: foldhash::HashMap<RollupKey, Totals>,
}

impl Totals {
    fn add(&mut self, t: &Totals) {
        self.flows += t.flows;
        self.bytes_ts += t.bytes_ts;
        self.bytes_tc += t.bytes_tc;
        self.packets += t.packets;
    }
}

impl RollupAcc {
    fn add(&mut self, device: u32, start: i64, app: i64, remote: i64, t: Totals) {
        let bucket = start - start.rem_euclid(MINUTE_NS);
        self.minute
            .entry((device, bucket, app, remote))
            .or_default()
            .add(&t);
    }

    fn flush(&mut self, tx: &Connection) -> rusqlite::Result<()> {
        let mut hour: foldhash::HashMap<RollupKey, Totals> = foldhash::HashMap::default();
        for (&(device, bucket, app, remote), t) in &self.minute {
            let h = bucket - bucket.rem_euclid(HOUR_NS);
            hour.entry((device, h, app, remote)).or_default().add(t);
        }
        for (table, map) in [("rollup_minute", &mut self.minute), ("rollup_hour", &mut hour)] {
            let mut stmt = tx.prepare_cached(&format!(
                "INSERT INTO {table} (device, bucket, app_id, remote_id, flows, bytes_ts, bytes_tc, packets) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                 ON CONFLICT (bucket, device, app_id, remote_id) DO UPDATE SET \
                 flows = flows + excluded.flows, bytes_ts = bytes_ts + excluded.bytes_ts, \
                 bytes_tc = bytes_tc + excluded.bytes_tc, packets = packets + excluded.packets"
            ))?;
            // In key order: neighbouring upserts touch the same pages.
            let mut rows: Vec<(RollupKey, Totals)> = map.drain().collect();
            rows.sort_unstable_by_key(|&((d, b, a, r), _)| (b, d, a, r));
            for ((device, bucket, app, remote), t) in rows {
                stmt.execute(params![
                    device,
                    bucket,
                    app,
                    remote,
                    t.flows as i64,
                    t.bytes_ts as i64,
                    t.bytes_tc as i64,
                    t.packets as i64
                ])?;
            }
        }
        Ok(())
    }
}

pub(crate) fn write_batch(
    conn: &mut Connection,
    cache: &mut Interner,
    key: Option<&SampleKey>,
    batch: &Batch,
) -> Result<Written, WriteError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if let Some((d, seq)) = batch.source {
        let seq = i64::try_from(seq).unwrap_or(i64::MAX);
        let new = tx.execute(
            "INSERT INTO batch_sources (device, seq) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            rusqlite::params![d.0, seq],
        )?;
        if new == 0 {
            // Already stored: the transaction rolls back untouched.
            return Ok(Written {
                duplicate: true,
                ..Written::default()
            });
        }
    }
    cache.sync_generation(&tx)?;
    let mut w = Written::default();
    let mut acc = RollupAcc::default();
    let device = batch.device.0;
    let mut json = String::with_capacity(1024);
    let mut ins = FlowInserter::new(&tx)?;
    for r in &batch.records {
        match r {
            Record::Flow(f) => {
                insert_flow(&tx, &mut ins, cache, device, f, &mut acc)?;
                w.flows += 1;
            }
            other => {
                json.clear();
                other.write_json(&mut json);
                insert_event(&tx, cache, device, other, &json)?;
                w.events += 1;
            }
        }
    }
    drop(ins);
    acc.flush(&tx)?;
    if !batch.alerts.is_empty() {
        let mut stmt = tx.prepare_cached(
            "INSERT OR IGNORE INTO alerts (id, device, ts, severity, rule, app, remote, reason, json) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for a in &batch.alerts {
            let n = stmt.execute(params![
                a.id,
                device,
                a.ts,
                a.severity as i64,
                a.rule,
                a.app,
                a.remote,
                a.reason,
                a.json
            ])?;
            if n == 0 {
                w.duplicate_alerts += 1;
            } else {
                w.alerts += 1;
            }
        }
    }
    if !batch.samples.is_empty() {
        let key = key.ok_or_else(|| WriteError::Store(StoreError::Crypto("no key loaded".into())))?;
        let mut stmt = tx.prepare_cached(
            "INSERT INTO samples (device, flow_id, flow_start, dir, ts, nonce, sealed) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for s in &batch.samples {
            let place = SamplePlace {
                device: batch.device,
                flow_id: s.flow_id,
                flow_start: s.flow_start,
                dir: s.dir,
            };
            let (nonce, sealed) = key.seal(&place, &s.bytes).map_err(WriteError::Store)?;
            stmt.execute(params![
                device,
                s.flow_id as i64,
                s.flow_start,
                dir_code(s.dir),
                s.ts,
                &nonce[..],
                sealed
            ])?;
            w.samples += 1;
        }
    }
    tx.commit()?;
    Ok(w)
}

pub(crate) fn dir_code(d: SampleDir) -> i64 {
    match d {
        SampleDir::ToServer => 0,
        SampleDir::ToClient => 1,
    }
}

/// Columns of a flow row, in order.
const FLOW_COLUMNS: &str = "device, flow_id, start, \"end\", proto, client_ip, client_port, server_ip, \
     server_port, vlan, bits, app_proto_id, domain_id, app_id, process_id, pkts_ts, bytes_ts, payload_ts, \
     pkts_tc, bytes_tc, payload_tc, iface_id";

/// `INSERT INTO flows (...) VALUES (?, ...)`. One row per statement: multi-row VALUES measured
/// slower (SQLite runs them through a co-routine).
fn insert_flow_sql() -> String {
    format!(
        "INSERT INTO flows ({FLOW_COLUMNS}) VALUES ({})",
        vec!["?"; 22].join(", ")
    )
}

/// A flow ready to bind: interned ids resolved.
pub(crate) struct FlowRow {
    device: u32,
    flow_id: i64,
    start: i64,
    end: i64,
    proto: u8,
    client: ([u8; 16], usize),
    client_port: u16,
    server: ([u8; 16], usize),
    server_port: u16,
    vlan: i64,
    bits: i64,
    app_proto: Option<i64>,
    domain: Option<i64>,
    app: Option<i64>,
    process: Option<i64>,
    counters: [i64; 6],
    iface: Option<i64>,
}

impl FlowRow {
    /// Binds this row's values as parameters 1 to 22.
    fn bind(&self, stmt: &mut rusqlite::Statement<'_>) -> rusqlite::Result<()> {
        stmt.raw_bind_parameter(1, self.device)?;
        stmt.raw_bind_parameter(2, self.flow_id)?;
        stmt.raw_bind_parameter(3, self.start)?;
        stmt.raw_bind_parameter(4, self.end)?;
        stmt.raw_bind_parameter(5, self.proto)?;
        stmt.raw_bind_parameter(6, &self.client.0[..self.client.1])?;
        stmt.raw_bind_parameter(7, self.client_port)?;
        stmt.raw_bind_parameter(8, &self.server.0[..self.server.1])?;
        stmt.raw_bind_parameter(9, self.server_port)?;
        stmt.raw_bind_parameter(10, self.vlan)?;
        stmt.raw_bind_parameter(11, self.bits)?;
        stmt.raw_bind_parameter(12, self.app_proto)?;
        stmt.raw_bind_parameter(13, self.domain)?;
        stmt.raw_bind_parameter(14, self.app)?;
        stmt.raw_bind_parameter(15, self.process)?;
        for (i, c) in self.counters.iter().enumerate() {
            stmt.raw_bind_parameter(16 + i, *c)?;
        }
        stmt.raw_bind_parameter(22, self.iface)?;
        Ok(())
    }
}

/// The prepared flow insert of one transaction, bound by hand (no parameter array per row).
pub(crate) struct FlowInserter<'c> {
    stmt: rusqlite::CachedStatement<'c>,
}

impl<'c> FlowInserter<'c> {
    pub(crate) fn new(tx: &'c Connection) -> rusqlite::Result<Self> {
        Ok(FlowInserter {
            stmt: tx.prepare_cached(&insert_flow_sql())?,
        })
    }

    fn push(&mut self, row: FlowRow) -> rusqlite::Result<()> {
        row.bind(&mut self.stmt)?;
        self.stmt.raw_execute()?;
        Ok(())
    }
}

fn insert_flow(
    tx: &Transaction<'_>,
    ins: &mut FlowInserter<'_>,
    cache: &mut Interner,
    device: u32,
    f: &FlowRecord,
    acc: &mut RollupAcc,
) -> rusqlite::Result<()> {
    let app_proto = match f.app.app_proto {
        Some(a) => Some(cache.string(tx, a)?),
        None => None,
    };
    let domain = match &f.app.domain {
        Some(d) => Some(cache.string(tx, d)?),
        None => None,
    };
    let (app, process, inferred) = match &f.process {
        Some(p) => {
            let (name, _exe, id) = cache.process(tx, p)?;
            (Some(name), Some(id), p.inferred)
        }
        // Gateway mode: the LAN device owns the flow.
        None => match &f.device {
            Some(d) => (Some(cache.string(tx, &d.label)?), None, false),
            None => (None, None, false),
        },
    };
    let remote = match domain {
        Some(d) => d,
        None => cache.ip(tx, f.server.ip)?,
    };
    let iface = match &f.iface {
        Some(i) => Some(cache.string(tx, i)?),
        None => None,
    };
    let mut client = ([0u8; 16], 0);
    client.1 = ip_bytes(&f.client.ip, &mut client.0);
    let mut server = ([0u8; 16], 0);
    server.1 = ip_bytes(&f.server.ip, &mut server.0);
    ins.push(FlowRow {
        device,
        flow_id: f.id as i64,
        start: f.start,
        end: f.end,
        proto: f.proto,
        client,
        client_port: f.client.port,
        server,
        server_port: f.server.port,
        vlan: i64::from(f.vlan[0]) | i64::from(f.vlan[1]) << 16,
        bits: flow_bits(f, inferred),
        app_proto,
        domain,
        app,
        process,
        counters: [
            f.to_server.packets as i64,
            f.to_server.bytes as i64,
            f.to_server.payload_bytes as i64,
            f.to_client.packets as i64,
            f.to_client.bytes as i64,
            f.to_client.payload_bytes as i64,
        ],
        iface,
    })?;
    acc.add(
        device,
        f.start,
        app.unwrap_or(0),
        remote,
        Totals {
            flows: 1,
            bytes_ts: f.to_server.bytes,
            bytes_tc: f.to_client.bytes,
            packets: f.to_server.packets + f.to_client.packets,
        },
    );
    Ok(())
}

/// Event kinds as stored.
pub(crate) fn kind_code(r: &Record) -> i64 {
    match r {
        Record::Flow(_) => 0,
        Record::Dns(_) => 1,
        Record::Tls(_) => 2,
        Record::Quic(_) => 3,
        Record::Http(_) => 4,
        Record::Stun(_) => 5,
        Record::Dhcp(_) => 6,
        Record::Connection(_) => 7,
        Record::Device(_) => 8,
    }
}

fn insert_event(
    tx: &Transaction<'_>,
    cache: &mut Interner,
    device: u32,
    r: &Record,
    json: &str,
) -> rusqlite::Result<()> {
    let (meta, host): (Option<&engine::app_record::RecordMeta>, Option<String>) = match r {
        Record::Flow(_) => (None, None),
        Record::Dns(d) => (Some(&d.meta), d.msg.questions.first().map(|q| q.name.clone())),
        Record::Tls(t) => (Some(&t.meta), t.hello.sni.clone()),
        Record::Quic(q) => (Some(&q.meta), q.hello.sni.clone()),
        Record::Http(h) => (
            Some(&h.meta),
            h.request
                .as_ref()
                .and_then(|r| r.host.as_deref())
                .map(|h| strip_port(h).to_string()),
        ),
        Record::Stun(s) => (Some(&s.meta), None),
        Record::Dhcp(d) => (Some(&d.meta), d.dhcp.hostname.clone()),
        Record::Connection(_) | Record::Device(_) => (None, None),
    };
    let (ts, flow_id, client, server, app, host_id) = match (meta, r) {
        (Some(m), _) => {
            let host_id = match &host {
                Some(h) if !h.is_empty() => Some(cache.string(tx, h)?),
                _ => Some(cache.ip(tx, m.server.ip)?),
            };
            (
                m.ts,
                Some(m.flow_id as i64),
                Some(m.client.ip),
                Some(m.server.ip),
                None,
                host_id,
            )
        }
        (None, Record::Connection(c)) => {
            let app = match &c.process {
                Some(p) => Some(cache.string(tx, &p.name)?),
                None => None,
            };
            let host = if c.remote.ip().is_unspecified() {
                None
            } else {
                Some(cache.ip(tx, c.remote.ip())?)
            };
            (c.ts, None, Some(c.local.ip()), Some(c.remote.ip()), app, host)
        }
        // A LAN device (gateway mode): its MAC address as the host, its latest address.
        (None, Record::Device(d)) => {
            let mac = cache.string(tx, &engine::lan::mac_text(&d.device.mac))?;
            let ip = d.device.ipv4.last().map(|a| IpAddr::V4(*a));
            let ip = ip.or_else(|| d.device.ipv6.last().map(|a| IpAddr::V6(*a)));
            (d.ts, None, ip, None, None, Some(mac))
        }
        _ => return Ok(()),
    };
    let (mut cb, mut sb) = ([0u8; 16], [0u8; 16]);
    let client = client.map(|ip| {
        let n = ip_bytes(&ip, &mut cb);
        &cb[..n]
    });
    let server = server.map(|ip| {
        let n = ip_bytes(&ip, &mut sb);
        &sb[..n]
    });
    tx.prepare_cached(
        "INSERT INTO events (device, ts, kind, flow_id, app_id, host_id, client_ip, server_ip, json) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        device,
        ts,
        kind_code(r),
        flow_id,
        app,
        host_id,
        client,
        server,
        json
    ])?;
    Ok(())
}

/// "example.com:8080" -> "example.com"; "[::1]:80" -> "::1".
fn strip_port(h: &str) -> &str {
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match h.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => h,
    }
}

pub(crate) fn flow_bits(f: &FlowRecord, inferred: bool) -> i64 {
    let client_by = match f.client_by {
        ClientBy::Syn => 0,
        ClientBy::SynAck => 1,
        ClientBy::FirstPacket => 2,
        ClientBy::PortGuess => 3,
        ClientBy::Protocol => 4,
    };
    let state = match f.state {
        FlowState::Handshake => 0,
        FlowState::Established => 1,
        FlowState::Closing => 2,
        FlowState::Closed => 3,
        FlowState::Active => 4,
    };
    let ended = match f.ended_by {
        EndReason::IdleTimeout => 0,
        EndReason::Reused => 1,
        EndReason::Evicted => 2,
        EndReason::EndOfInput => 3,
    };
    let app_by = match f.app.app_by {
        AppBy::Content => 0,
        AppBy::Port => 1,
    };
    let source = match f.app.domain_source {
        None => 0,
        Some(DomainSource::TlsSni) => 1,
        Some(DomainSource::QuicSni) => 2,
        Some(DomainSource::HttpHost) => 3,
        Some(DomainSource::Dns) => 4,
    };
    client_by | state << 4 | ended << 8 | app_by << 12 | source << 16 | i64::from(inferred) << 20
}

/// Migration 2: rollups of the flows a version-1 database already holds.
pub(crate) fn fill_rollups_from_flows(tx: &Transaction<'_>, cache: &mut Interner) -> rusqlite::Result<()> {
    let mut acc = RollupAcc::default();
    {
        let mut stmt = tx.prepare(
            "SELECT device, start, app_id, domain_id, server_ip, bytes_ts, bytes_tc, pkts_ts + pkts_tc \
             FROM flows",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let domain: Option<i64> = r.get(3)?;
            let remote = match domain {
                Some(d) => d,
                None => cache.ip(tx, super::ip_from_bytes(&r.get::<_, Vec<u8>>(4)?))?,
            };
            acc.add(
                r.get(0)?,
                r.get(1)?,
                r.get::<_, Option<i64>>(2)?.unwrap_or(0),
                remote,
                Totals {
                    flows: 1,
                    bytes_ts: r.get::<_, i64>(5)? as u64,
                    bytes_tc: r.get::<_, i64>(6)? as u64,
                    packets: r.get::<_, i64>(7)? as u64,
                },
            );
        }
    }
    acc.flush(tx)
}

#[cfg(test)]
mod tests {
    use super::strip_port;

    #[test]
    fn ports_stripped() {
        assert_eq!(strip_port("example.com:8080"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:80"), "::1");
        assert_eq!(strip_port("::1"), "::1");
        assert_eq!(strip_port("a:b"), "a:b");
    }
}
