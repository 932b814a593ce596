//! The trait's questions as SQL: a [`Query`] becomes conditions on the time-split tables (the
//! `ts` condition lets PostgreSQL skip whole partitions), with app and domain names resolved to
//! interned ids first.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::SystemTime;

use postgres::types::ToSql;

use super::PgStore;
use super::partition;
use super::write::dir_from;
use crate::crypto::SamplePlace;
use crate::model::{
    AlertRow, DeviceId, Query, Rollup, RollupGrain, Sample, Severity, StoreError, StoredFlow,
};

/// SQL conditions with their parameters, numbered as they are added.
#[derive(Default)]
pub(crate) struct Filter {
    conds: Vec<String>,
    params: Vec<Box<dyn ToSql + Sync>>,
}

impl Filter {
    /// Adds a parameter and returns its placeholder (`$3`).
    pub(crate) fn p(&mut self, v: impl ToSql + Sync + 'static) -> String {
        self.params.push(Box::new(v));
        format!("${}", self.params.len())
    }
    /// Replaces the value of placeholder `$n` (as returned by [`Filter::p`]).
    pub(crate) fn set(&mut self, n: usize, v: impl ToSql + Sync + 'static) {
        self.params[n - 1] = Box::new(v);
    }
    pub(crate) fn cond(&mut self, c: String) {
        self.conds.push(c);
    }
    /// " WHERE a AND b" or "".
    pub(crate) fn where_sql(&self) -> String {
        if self.conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.conds.join(" AND "))
        }
    }
    pub(crate) fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

/// Longest id list a condition offers to the GIN index: GIN runs one scan per listed id, and
/// each scan also reads the index's pending list (up to `gin_pending_list_limit`), so a host
/// such as `example.com` that names thousands of subdomains is filtered row by row instead
/// (after the other conditions' indexes, the time range's BRIN, have narrowed the rows).
const GIN_LIST_MAX: usize = 64;

/// `col = ANY(p)`, kept away from the index when the list is long ([`GIN_LIST_MAX`]).
fn any_of(col: &str, p: &str, n: usize) -> String {
    if n > GIN_LIST_MAX {
        format!("({col} + 0) = ANY({p})")
    } else {
        format!("{col} = ANY({p})")
    }
}

/// What a `--host` names.
pub(crate) enum HostMatch {
    Ip(IpAddr),
    /// Interned ids of the domain and its subdomains.
    Domain(Vec<i32>),
}

/// The domain or address `h` names; domain ids are looked up in `strings`.
pub(crate) fn resolve_host(s: &mut PgStore, h: &str) -> Result<HostMatch, StoreError> {
    let h = h.trim().trim_end_matches('.');
    let bare = h.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(HostMatch::Ip(ip));
    }
    let lower = h.to_lowercase();
    let rows = s
        .client
        .query(
            "SELECT id FROM netvigil.strings \
             WHERE lower(s) = $1 OR right(lower(s), length($1) + 1) = '.' || $1",
            &[&lower],
        )
        .map_err(|e| s.db("looking up a host", &e))?;
    Ok(HostMatch::Domain(rows.iter().map(|r| r.get(0)).collect()))
}

/// Ids of the strings naming program `app`: a process name or an executable's file name,
/// compared without case.
pub(crate) fn resolve_app(s: &mut PgStore, app: &str) -> Result<Vec<i32>, StoreError> {
    let rows = s
        .client
        .query(
            "SELECT id FROM netvigil.strings \
             WHERE lower(s) = lower($1) OR (s LIKE '%/%' AND lower(regexp_replace(s, '^.*/', '')) = lower($1))",
            &[&app],
        )
        .map_err(|e| s.db("looking up an app", &e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The string id of exactly `text`, if interned.
fn string_id(s: &mut PgStore, text: &str) -> Result<Option<i32>, StoreError> {
    let row = s
        .client
        .query_opt("SELECT id FROM netvigil.strings WHERE s = $1", &[&text])
        .map_err(|e| s.db("looking up a string", &e))?;
    Ok(row.map(|r| r.get(0)))
}

/// Time bounds on a split table: `ts` (microseconds, for partition pruning) and the exact ns
/// column.
fn time_conds(f: &mut Filter, alias: &str, ns_col: &str, since: Option<i64>, until: Option<i64>) {
    if let Some(t) = since {
        let (a, b) = (f.p(partition::ts(t)), f.p(t));
        f.cond(format!("{alias}.ts >= {a} AND {alias}.{ns_col} >= {b}"));
    }
    if let Some(t) = until {
        // ns < t  =>  floor_us(ns) <= floor_us(t - 1)
        let (a, b) = (f.p(partition::ts(t.saturating_sub(1))), f.p(t));
        f.cond(format!("{alias}.ts <= {a} AND {alias}.{ns_col} < {b}"));
    }
}

/// The condition for `--host H` on an alias with `client_ip`, `server_ip` and `domain`
/// columns (flows and events); `false` when nothing can match (a domain never stored).
fn host_cond(s: &mut PgStore, h: &str, alias: &str, f: &mut Filter) -> Result<bool, StoreError> {
    match resolve_host(s, h)? {
        HostMatch::Ip(ip) => {
            let p = f.p(ip);
            f.cond(format!("({alias}.client_ip = {p} OR {alias}.server_ip = {p})"));
        }
        HostMatch::Domain(ids) => {
            if ids.is_empty() {
                return Ok(false);
            }
            let n = ids.len();
            let p = f.p(ids);
            f.cond(any_of(&format!("{alias}.domain"), &p, n));
        }
    }
    Ok(true)
}

/// Conditions of `q` on a flows alias, or `None` when nothing can match (an app or host that
/// was never stored).
pub(crate) fn flow_filter(
    s: &mut PgStore,
    q: &Query,
    alias: &str,
    f: &mut Filter,
) -> Result<bool, StoreError> {
    if let Some(d) = q.device {
        let p = f.p(i64::from(d.0));
        f.cond(format!("{alias}.device = {p}"));
    }
    if let Some(app) = &q.app {
        let ids = resolve_app(s, app)?;
        if ids.is_empty() {
            return Ok(false);
        }
        let n = ids.len();
        let p = f.p(ids);
        f.cond(format!(
            "({} OR {})",
            any_of(&format!("{alias}.app"), &p, n),
            any_of(&format!("{alias}.exe"), &p, n)
        ));
    }
    if let Some(h) = &q.host
        && !host_cond(s, h, alias, f)?
    {
        return Ok(false);
    }
    time_conds(f, alias, "start_ns", q.since, q.until);
    Ok(true)
}

/// Conditions of `q` on an events alias (app: the record's own process; host: the domain it
/// names or either address).
pub(crate) fn event_filter(
    s: &mut PgStore,
    q: &Query,
    alias: &str,
    f: &mut Filter,
) -> Result<bool, StoreError> {
    if let Some(d) = q.device {
        let p = f.p(i64::from(d.0));
        f.cond(format!("{alias}.device = {p}"));
    }
    if let Some(app) = &q.app {
        let ids = resolve_app(s, app)?;
        if ids.is_empty() {
            return Ok(false);
        }
        let n = ids.len();
        let p = f.p(ids);
        f.cond(any_of(&format!("{alias}.app"), &p, n));
    }
    if let Some(h) = &q.host
        && !host_cond(s, h, alias, f)?
    {
        return Ok(false);
    }
    time_conds(f, alias, "ts_ns", q.since, q.until);
    Ok(true)
}

/// Conditions of `q` on an alerts alias.
pub(crate) fn alert_filter(q: &Query, alias: &str, f: &mut Filter) {
    if let Some(d) = q.device {
        let p = f.p(i64::from(d.0));
        f.cond(format!("{alias}.device = {p}"));
    }
    if let Some(app) = &q.app {
        let p = f.p(app.clone());
        f.cond(format!("lower({alias}.app) = lower({p})"));
    }
    if let Some(h) = &q.host {
        let h = h.trim().trim_end_matches('.');
        let bare = h.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            let p = f.p(ip.to_string());
            f.cond(format!("{alias}.remote = {p}"));
        } else {
            let p = f.p(h.to_lowercase());
            f.cond(format!(
                "(lower({alias}.remote) = {p} OR right(lower({alias}.remote), length({p}) + 1) = '.' || {p})"
            ));
        }
    }
    time_conds(f, alias, "ts_ns", q.since, q.until);
}

/// Lower time bounds (ns) to try, narrowest first, for a newest-first query with a limit: the
/// time index is BRIN (cheap to keep up, but it cannot return rows in order), so a query for
/// the newest N rows first looks at the last minute before `until` (or before the end of the
/// newest day partition), then 16 times wider, until it finds N rows or the window covers
/// every partition; `None` is the last, unbounded try. Rows outside a window are older than
/// every row inside it (`ts` and the ns column order alike), so the first window with N rows
/// holds the true newest N.
fn windows(s: &PgStore, table: partition::Table, q: &Query) -> Vec<Option<i64>> {
    const MINUTE_NS: i64 = 60 * 1_000_000_000;
    let mut out = Vec::new();
    if q.limit.is_some() && s.layout == partition::Layout::DayPartitions {
        let days = s.partitions.iter().filter(|(t, _)| *t == table).map(|(_, d)| *d);
        let (lo_day, hi_day) = days.fold((i64::MAX, i64::MIN), |(a, b), d| (a.min(d), b.max(d)));
        if lo_day <= hi_day {
            let oldest = lo_day.saturating_mul(partition::DAY_NS);
            let newest = hi_day.saturating_add(1).saturating_mul(partition::DAY_NS);
            let hi = q.until.map_or(newest, |u| u.min(newest));
            let floor = q.since.map_or(oldest, |x| x.max(oldest));
            let mut width = MINUTE_NS;
            while hi.saturating_sub(width) > floor {
                out.push(Some(hi - width));
                width = width.saturating_mul(16);
            }
        }
    }
    out.push(None);
    out
}

/// Adds the window's bounds (`ts >= $a AND ns_col >= $b`, open until set) and returns their
/// placeholders' numbers.
fn window_cond(f: &mut Filter, alias: &str, ns_col: &str) -> (usize, usize) {
    let (a, b) = (f.p(partition::ts(i64::MIN / 2)), f.p(i64::MIN));
    f.cond(format!("{alias}.ts >= {a} AND {alias}.{ns_col} >= {b}"));
    (f.params.len() - 1, f.params.len())
}

/// Runs `sql` once per window of [`windows`] until one returns `limit` rows.
fn run_windows(
    s: &mut PgStore,
    table: partition::Table,
    q: &Query,
    f: &mut Filter,
    slots: (usize, usize),
    sql: &str,
    doing: &'static str,
) -> Result<Vec<postgres::Row>, StoreError> {
    let want = q.limit.unwrap_or(usize::MAX);
    for lo in windows(s, table, q) {
        let lo_ns = lo.unwrap_or(i64::MIN);
        f.set(slots.0, partition::ts(lo_ns.max(i64::MIN / 2)));
        f.set(slots.1, lo_ns);
        let rows = s.client.query(sql, &f.params()).map_err(|e| s.db(doing, &e))?;
        if lo.is_none() || rows.len() >= want {
            return Ok(rows);
        }
    }
    Ok(Vec::new())
}

fn limit(q: &Query, f: &mut Filter) -> String {
    match q.limit {
        Some(n) => {
            let p = f.p(i64::try_from(n).unwrap_or(i64::MAX));
            format!(" LIMIT {p}")
        }
        None => String::new(),
    }
}

pub(crate) fn flows(s: &mut PgStore, q: &Query) -> Result<Vec<StoredFlow>, StoreError> {
    let mut f = Filter::default();
    if !flow_filter(s, q, "f", &mut f)? {
        return Ok(Vec::new());
    }
    let slots = window_cond(&mut f, "f", "start_ns");
    let lim = limit(q, &mut f);
    let sql = format!(
        "SELECT f.device, f.flow_id, f.start_ns, f.end_ns, f.proto, f.client_ip, f.client_port, \
         f.server_ip, f.server_port, sp.s, sd.s, sa.s, f.pid, se.s, f.packets_to_server, \
         f.packets_to_client, f.bytes_to_server, f.bytes_to_client, \
         CASE WHEN spr.s IS NULL THEN f.json ELSE left(f.json, -1) || ',\"process\":' || spr.s || '}}' END \
         FROM netvigil.flows f \
         LEFT JOIN netvigil.strings sp ON sp.id = f.app_proto \
         LEFT JOIN netvigil.strings sd ON sd.id = f.domain \
         LEFT JOIN netvigil.strings sa ON sa.id = f.app \
         LEFT JOIN netvigil.strings se ON se.id = f.exe \
         LEFT JOIN netvigil.strings spr ON spr.id = f.process{} \
         ORDER BY f.ts DESC, f.start_ns DESC, f.flow_id DESC{lim}",
        f.where_sql()
    );
    let rows = run_windows(
        s,
        partition::Table::Flows,
        q,
        &mut f,
        slots,
        &sql,
        "reading flows",
    )?;
    let u = |x: i64| x.max(0) as u64;
    Ok(rows
        .iter()
        .map(|r| {
            let port = |i: usize| r.get::<_, i32>(i).clamp(0, 65_535) as u16;
            StoredFlow {
                device: DeviceId(r.get::<_, i64>(0) as u32),
                flow_id: r.get::<_, i64>(1) as u64,
                start: r.get(2),
                end: r.get(3),
                proto: r.get::<_, i16>(4) as u8,
                client: SocketAddr::new(r.get(5), port(6)),
                server: SocketAddr::new(r.get(7), port(8)),
                app_proto: r.get(9),
                domain: r.get(10),
                app: r.get(11),
                pid: r.get::<_, Option<i64>>(12).map(|p| p as u32),
                exe: r.get::<_, Option<String>>(13).map(PathBuf::from),
                packets_to_server: u(r.get(14)),
                packets_to_client: u(r.get(15)),
                bytes_to_server: u(r.get(16)),
                bytes_to_client: u(r.get(17)),
                json: r.get(18),
            }
        })
        .collect())
}

pub(crate) fn events(s: &mut PgStore, q: &Query) -> Result<Vec<String>, StoreError> {
    let mut f = Filter::default();
    if !event_filter(s, q, "e", &mut f)? {
        return Ok(Vec::new());
    }
    let slots = window_cond(&mut f, "e", "ts_ns");
    let lim = limit(q, &mut f);
    let sql = format!(
        "SELECT e.json FROM netvigil.events e{} ORDER BY e.ts DESC, e.ts_ns DESC{lim}",
        f.where_sql()
    );
    let rows = run_windows(
        s,
        partition::Table::Events,
        q,
        &mut f,
        slots,
        &sql,
        "reading events",
    )?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

pub(crate) fn alerts(s: &mut PgStore, q: &Query) -> Result<Vec<AlertRow>, StoreError> {
    let mut f = Filter::default();
    alert_filter(q, "a", &mut f);
    let lim = limit(q, &mut f);
    let sql = format!(
        "SELECT a.id, a.ts_ns, a.severity, a.rule, a.app, a.remote, a.reason, a.json \
         FROM netvigil.alerts a{} ORDER BY a.ts DESC, a.ts_ns DESC, a.id{lim}",
        f.where_sql()
    );
    let rows = s
        .client
        .query(&sql, &f.params())
        .map_err(|e| s.db("reading alerts", &e))?;
    Ok(rows
        .iter()
        .map(|r| AlertRow {
            id: r.get(0),
            ts: r.get(1),
            severity: match r.get::<_, i16>(2) {
                0 => Severity::Info,
                1 => Severity::Low,
                2 => Severity::Medium,
                _ => Severity::High,
            },
            rule: r.get(3),
            app: r.get(4),
            remote: r.get(5),
            reason: r.get(6),
            json: r.get(7),
        })
        .collect())
}

/// The rollup table of a grain.
pub(crate) fn rollup_table(grain: RollupGrain) -> &'static str {
    match grain {
        RollupGrain::Minute => "rollups_minute",
        RollupGrain::Hour => "rollups_hour",
    }
}

/// The first microsecond at or after `ns`.
fn ts_ceil(ns: i64) -> SystemTime {
    partition::ts(ns.saturating_add(999))
}

pub(crate) fn rollups(s: &mut PgStore, grain: RollupGrain, q: &Query) -> Result<Vec<Rollup>, StoreError> {
    let mut f = Filter::default();
    if let Some(d) = q.device {
        let p = f.p(i64::from(d.0));
        f.cond(format!("r.device = {p}"));
    }
    if let Some(app) = &q.app {
        let ids = resolve_app(s, app)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let p = f.p(ids);
        f.cond(format!("r.app = ANY({p})"));
    }
    if let Some(h) = &q.host {
        let ids = match resolve_host(s, h)? {
            HostMatch::Ip(ip) => string_id(s, &ip.to_string())?.into_iter().collect(),
            HostMatch::Domain(ids) => ids,
        };
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let p = f.p(ids);
        f.cond(format!("r.remote = ANY({p})"));
    }
    if let Some(t) = q.since {
        let p = f.p(ts_ceil(t));
        f.cond(format!("r.bucket >= {p}"));
    }
    if let Some(t) = q.until {
        let p = f.p(ts_ceil(t));
        f.cond(format!("r.bucket < {p}"));
    }
    let lim = limit(q, &mut f);
    // The table holds partial sums (one row per key per written batch, until retention
    // compacts them): sum them per key. Every filter is on a key column, so filtering rows
    // before grouping selects whole keys.
    let sql = format!(
        "SELECT r.device, (extract(epoch FROM r.bucket) * 1000000)::bigint, sa.s, sr.s, r.flows, \
         r.bytes_to_server, r.bytes_to_client, r.packets \
         FROM (SELECT r.device, r.bucket, r.app, r.remote, sum(r.flows)::bigint AS flows, \
               sum(r.bytes_to_server)::bigint AS bytes_to_server, \
               sum(r.bytes_to_client)::bigint AS bytes_to_client, sum(r.packets)::bigint AS packets \
               FROM netvigil.{} r{} GROUP BY r.device, r.bucket, r.app, r.remote) r \
         LEFT JOIN netvigil.strings sa ON sa.id = r.app \
         LEFT JOIN netvigil.strings sr ON sr.id = r.remote \
         ORDER BY r.bucket DESC, r.flows DESC, r.remote, r.device, r.app{lim}",
        rollup_table(grain),
        f.where_sql()
    );
    let rows = s
        .client
        .query(&sql, &f.params())
        .map_err(|e| s.db("reading rollups", &e))?;
    let u = |x: i64| x.max(0) as u64;
    Ok(rows
        .iter()
        .map(|r| Rollup {
            device: DeviceId(r.get::<_, i64>(0) as u32),
            bucket: r.get::<_, i64>(1).saturating_mul(1_000),
            app: r.get(2),
            remote: r.get::<_, Option<String>>(3).unwrap_or_default(),
            flows: u(r.get(4)),
            bytes_to_server: u(r.get(5)),
            bytes_to_client: u(r.get(6)),
            packets: u(r.get(7)),
        })
        .collect())
}

pub(crate) fn samples(s: &mut PgStore, q: &Query) -> Result<Vec<Sample>, StoreError> {
    if s.key.is_none() {
        return Err(StoreError::Crypto(
            "no sample key configured (PgOptions::sample_key): samples cannot be read".into(),
        ));
    }
    let mut f = Filter::default();
    if !flow_filter(s, q, "f", &mut f)? {
        return Ok(Vec::new());
    }
    let lim = limit(q, &mut f);
    let sql = format!(
        "SELECT sm.device, sm.flow_id, sm.flow_start_ns, sm.dir, sm.ts_ns, sm.nonce, sm.sealed \
         FROM netvigil.samples sm JOIN netvigil.flows f \
         ON f.device = sm.device AND f.flow_id = sm.flow_id AND f.start_ns = sm.flow_start_ns{} \
         ORDER BY sm.ts DESC, sm.ts_ns DESC, sm.flow_id, sm.dir{lim}",
        f.where_sql()
    );
    let rows = s
        .client
        .query(&sql, &f.params())
        .map_err(|e| s.db("reading samples", &e))?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let device = DeviceId(r.get::<_, i64>(0) as u32);
        let flow_id = r.get::<_, i64>(1) as u64;
        let flow_start: i64 = r.get(2);
        let code: i16 = r.get(3);
        let dir = dir_from(code).ok_or_else(|| {
            StoreError::Crypto(format!(
                "the stored sample of flow {flow_id} in {} has an unknown direction {code}: the \
                 database was altered",
                s.server
            ))
        })?;
        let place = SamplePlace {
            device,
            flow_id,
            flow_start,
            dir,
        };
        let key = s
            .key
            .as_ref()
            .ok_or_else(|| StoreError::Crypto("no sample key".into()))?;
        let bytes = key.open(&place, r.get(5), r.get(6))?;
        out.push(Sample {
            flow_id,
            flow_start,
            dir,
            ts: r.get(4),
            bytes,
        });
    }
    Ok(out)
}
