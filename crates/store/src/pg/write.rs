//! Writing one batch: day partitions created first (own transaction), then one transaction
//! with the interned strings, binary `COPY` into `flows` and `events`, alerts and samples with
//! `ON CONFLICT DO NOTHING`, and rollups summed in memory and appended as partial sums (binary
//! `COPY`) in the same transaction.

use std::borrow::Cow;
use std::collections::BTreeSet;

use foldhash::HashMap;
use std::net::IpAddr;
use std::time::SystemTime;

use engine::{FlowRecord, Record};
use postgres::Transaction;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::error::SqlState;
use postgres::types::{ToSql, Type};

use super::partition::{self, Layout, Table};
use super::{LOCK_STRINGS, PgStore};
use crate::crypto::{NONCE_LEN, SamplePlace};
use crate::model::{Batch, SampleDir, StoreError, Written};

const MINUTE_NS: i64 = 60 * 1_000_000_000;
const HOUR_NS: i64 = 60 * MINUTE_NS;

/// Text PostgreSQL accepts: NUL is the one character a `text` value cannot hold.
pub(crate) fn clean(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{fffd}"))
    } else {
        Cow::Borrowed(s)
    }
}

/// Longer names are not interned (a btree entry must fit a third of a page): the record's
/// JSON keeps them, the name columns hold NULL.
pub(crate) const MAX_INTERNED: usize = 2000;

fn short(c: Cow<'_, str>) -> Option<Cow<'_, str>> {
    (c.len() <= MAX_INTERNED).then_some(c)
}

/// u64 counters as `bigint` (saturating: no counter reaches 2^63).
fn big(x: u64) -> i64 {
    i64::try_from(x).unwrap_or(i64::MAX)
}

/// A flow's strings, cleaned: app_proto, domain, app (process name), exe, and the `process`
/// object's JSON (stored once in `strings`, cut out of the flow's JSON).
struct FlowStrings<'a> {
    s: [Option<Cow<'a, str>>; 5],
    /// Rollup remote: the domain, else the server address as text.
    remote: Cow<'a, str>,
}

/// What an event row needs besides its JSON.
struct EventRow<'a> {
    kind: &'static str,
    ts: i64,
    flow_id: Option<u64>,
    client: Option<IpAddr>,
    server: Option<IpAddr>,
    app: Option<Cow<'a, str>>,
    domain: Option<Cow<'a, str>>,
}

/// Host name of an HTTP Host header (without a port).
fn http_host(h: &str) -> &str {
    if h.starts_with('[') {
        return h
            .split(']')
            .next()
            .map(|s| s.trim_start_matches('['))
            .unwrap_or(h);
    }
    match h.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => h,
    }
}

fn meta<'a>(
    m: &engine::app_record::RecordMeta,
    kind: &'static str,
    domain: Option<&'a str>,
) -> Option<EventRow<'a>> {
    Some(EventRow {
        kind,
        ts: m.ts,
        flow_id: Some(m.flow_id),
        client: Some(m.client.ip),
        server: Some(m.server.ip),
        app: None,
        domain: domain.filter(|d| !d.is_empty()).map(clean).and_then(short),
    })
}

fn event_row(r: &Record) -> Option<EventRow<'_>> {
    match r {
        Record::Flow(_) => None,
        Record::Dns(d) => meta(&d.meta, "dns", d.msg.query_name()),
        Record::Tls(t) => meta(&t.meta, "tls", t.hello.sni.as_deref()),
        Record::Quic(q) => meta(&q.meta, "quic", q.hello.sni.as_deref()),
        Record::Http(h) => meta(
            &h.meta,
            "http",
            h.request.as_ref().and_then(|q| q.host.as_deref()).map(http_host),
        ),
        Record::Stun(s) => meta(&s.meta, "stun", None),
        Record::Dhcp(d) => meta(
            &d.meta,
            "dhcp",
            d.dhcp.client_fqdn.as_deref().or(d.dhcp.hostname.as_deref()),
        ),
        Record::Connection(c) => Some(EventRow {
            kind: "connection",
            ts: c.ts,
            flow_id: None,
            client: Some(c.local.ip()),
            server: Some(c.remote.ip()),
            app: c.process.as_ref().map(|p| clean(&p.name)).and_then(short),
            domain: None,
        }),
        // A LAN device (gateway mode): its latest address, its MAC address as the host.
        Record::Device(d) => Some(EventRow {
            kind: "device",
            ts: d.ts,
            flow_id: None,
            client: d
                .device
                .ipv4
                .last()
                .map(|a| IpAddr::V4(*a))
                .or_else(|| d.device.ipv6.last().map(|a| IpAddr::V6(*a))),
            server: None,
            app: None,
            domain: Some(Cow::Owned(engine::lan::mac_text(&d.device.mac))),
        }),
    }
}

fn flow_strings(f: &FlowRecord, process_json: Option<String>) -> FlowStrings<'_> {
    let p = f.process.as_deref();
    let domain = f
        .app
        .domain
        .as_deref()
        .filter(|d| !d.is_empty())
        .map(clean)
        .and_then(short);
    let remote = match &domain {
        Some(d) => d.clone(),
        None => Cow::Owned(f.server.ip.to_string()),
    };
    FlowStrings {
        s: [
            f.app.app_proto.map(Cow::Borrowed),
            domain,
            p.map(|p| clean(&p.name))
                // Gateway mode: the LAN device owns the flow.
                .or_else(|| f.device.as_deref().map(|d| clean(&d.label)))
                .and_then(short),
            p.and_then(|p| p.exe.as_ref())
                .map(|e| match e.to_string_lossy() {
                    Cow::Borrowed(b) => clean(b),
                    Cow::Owned(o) => Cow::Owned(clean(&o).into_owned()),
                })
                .and_then(short),
            process_json.map(Cow::Owned),
        ],
        remote,
    }
}

#[derive(Clone, Copy, Default)]
struct Agg {
    flows: i64,
    bytes_to_server: i64,
    bytes_to_client: i64,
    packets: i64,
}

/// Why one attempt failed.
enum Fail {
    /// A partition this process thought existed is gone (another process's retention).
    MissingPartition,
    Err(StoreError),
}

pub(crate) fn write_batch(s: &mut PgStore, batch: &Batch) -> Result<Written, StoreError> {
    let mut w = write_batches(s, std::slice::from_ref(batch))?;
    Ok(w.pop().unwrap_or_default())
}

/// What writing one batch needs besides the batch: its rows and names, sealed samples, days.
struct Prepared<'a> {
    batch: &'a Batch,
    sealed: Vec<([u8; NONCE_LEN], Vec<u8>)>,
    flows: Vec<(&'a FlowRecord, FlowStrings<'a>, usize)>,
    events: Vec<(EventRow<'a>, usize)>,
    days: BTreeSet<(Table, i64)>,
    /// The one day all flows fall in, when they do (day-partition layout).
    flow_day: Option<i64>,
}

impl Prepared<'_> {
    fn rows(&self) -> Rows<'_, '_> {
        Rows {
            batch: self.batch,
            flow_day: self.flow_day,
            flows: &self.flows,
            events: &self.events,
            sealed: &self.sealed,
        }
    }
}

fn prepare<'a>(s: &PgStore, batch: &'a Batch) -> Result<Prepared<'a>, StoreError> {
    // Seal samples first: nothing in clear ever goes on the wire to the server.
    let sealed: Vec<([u8; NONCE_LEN], Vec<u8>)> = if batch.samples.is_empty() {
        Vec::new()
    } else {
        let key = s.key.as_ref().ok_or_else(|| {
            StoreError::Crypto(
                "this batch carries payload samples but no sample key was configured \
                 (PgOptions::sample_key); nothing was written"
                    .into(),
            )
        })?;
        batch
            .samples
            .iter()
            .map(|x| {
                let place = SamplePlace {
                    device: batch.device,
                    flow_id: x.flow_id,
                    flow_start: x.flow_start,
                    dir: x.dir,
                };
                key.seal(&place, &x.bytes)
            })
            .collect::<Result<_, _>>()?
    };

    // Rows and the names they need. The JSON lines are written later, row by row inside the
    // COPY (`copy_rows`), so the server parses and stores one part of the batch while this
    // side formats the next.
    let mut flows: Vec<(&FlowRecord, FlowStrings<'_>, usize)> = Vec::new();
    let mut events: Vec<(EventRow<'_>, usize)> = Vec::new();
    for (i, r) in batch.records.iter().enumerate() {
        match r {
            Record::Flow(f) => {
                // The process object is the last member of a flow's JSON: kept once in
                // `strings`, cut from the line (read back by joining them).
                let pj = f
                    .process
                    .as_deref()
                    .map(engine::connections::process_json)
                    .filter(|o| o.len() <= MAX_INTERNED && !o.contains('\0'));
                flows.push((f, flow_strings(f, pj), i));
            }
            other => {
                if let Some(e) = event_row(other) {
                    events.push((e, i));
                }
            }
        }
    }

    // Days each split table needs.
    let mut days: BTreeSet<(Table, i64)> = BTreeSet::new();
    if s.layout == Layout::DayPartitions {
        for (f, _, _) in &flows {
            days.insert((Table::Flows, partition::day_of(f.start)));
        }
        for (e, _) in &events {
            days.insert((Table::Events, partition::day_of(e.ts)));
        }
    }

    // One day for every flow (the usual case): COPY goes straight into that day's partition,
    // without routing each row through the parent.
    let flow_day = match (s.layout, days.iter().filter(|(t, _)| *t == Table::Flows).count()) {
        (Layout::DayPartitions, 1) => flows.first().map(|(f, _, _)| partition::day_of(f.start)),
        _ => None,
    };
    Ok(Prepared {
        batch,
        sealed,
        flows,
        events,
        days,
        flow_day,
    })
}

/// Writes several batches in ONE transaction (one commit, one WAL flush): the fleet server
/// groups the batches its agents sent meanwhile. Each batch keeps its own device and source; a
/// batch whose source is already stored (or appears earlier in `batches`) is skipped and
/// reported as a duplicate, the others are written. One `Written` per batch, in order.
pub(crate) fn write_batches(s: &mut PgStore, batches: &[Batch]) -> Result<Vec<Written>, StoreError> {
    let todo: Vec<&Batch> = batches
        .iter()
        .filter(|b| !(b.is_empty() && b.source.is_none()))
        .collect();
    if todo.is_empty() {
        return Ok(vec![Written::default(); batches.len()]);
    }
    let prepared: Vec<Prepared<'_>> = todo.iter().map(|b| prepare(s, b)).collect::<Result<_, _>>()?;
    let days: BTreeSet<(Table, i64)> = prepared.iter().flat_map(|p| p.days.iter().copied()).collect();
    let mut last = None;
    for _attempt in 0..3 {
        ensure_partitions(s, &days)?;
        match attempt(s, &prepared) {
            Ok(written) => {
                // Back in the caller's order, empty unsourced batches included.
                let mut it = written.into_iter();
                return Ok(batches
                    .iter()
                    .map(|b| {
                        if b.is_empty() && b.source.is_none() {
                            Written::default()
                        } else {
                            it.next().unwrap_or_default()
                        }
                    })
                    .collect());
            }
            Err(Fail::MissingPartition) => {
                s.load_partitions()?;
                last = Some("a day partition was dropped while this batch was written");
            }
            Err(Fail::Err(e)) => return Err(e),
        }
    }
    Err(StoreError::Db {
        doing: "writing a batch",
        detail: format!("{}: {}", s.server, last.unwrap_or("gave up after 3 attempts")),
    })
}

struct Rows<'r, 'a> {
    batch: &'a Batch,
    /// The one day all flows fall in, when they do (day-partition layout).
    flow_day: Option<i64>,
    flows: &'r [(&'a FlowRecord, FlowStrings<'a>, usize)],
    events: &'r [(EventRow<'a>, usize)],
    sealed: &'r [([u8; NONCE_LEN], Vec<u8>)],
}

/// Creates the day partitions (and the next day's, ahead) that the cache does not know.
fn ensure_partitions(s: &mut PgStore, days: &BTreeSet<(Table, i64)>) -> Result<(), StoreError> {
    let mut wanted = Vec::new();
    for &(t, d) in days {
        for day in [d, d + 1] {
            if !s.partitions.contains(&(t, day)) && !wanted.contains(&(t, day)) {
                wanted.push((t, day));
            }
        }
    }
    if wanted.is_empty() {
        return Ok(());
    }
    partition::create(&mut s.client, &wanted).map_err(|e| s.db("creating day partitions", &e))?;
    s.partitions.extend(wanted);
    Ok(())
}

fn attempt(s: &mut PgStore, batches: &[Prepared<'_>]) -> Result<Vec<Written>, Fail> {
    let server = s.server.clone();
    let err = |doing: &'static str| {
        let server = server.clone();
        move |e: postgres::Error| {
            let no_partition = e.code() == Some(&SqlState::CHECK_VIOLATION)
                && e.as_db_error()
                    .is_some_and(|d| d.message().starts_with("no partition"));
            // A day partition named directly (rows.flow_day) that another process dropped.
            if no_partition || e.code() == Some(&SqlState::UNDEFINED_TABLE) {
                Fail::MissingPartition
            } else {
                Fail::Err(super::pg_error(&server, doing, &e))
            }
        }
    };
    let mut interned = false;
    let r = (|| {
        let mut tx = s.client.transaction().map_err(err("starting a transaction"))?;
        // Shared with other writers; a purge that deletes unused strings takes it exclusively
        // and bumps the epoch, which invalidates every process's cache.
        tx.execute("SELECT pg_advisory_xact_lock_shared($1)", &[&LOCK_STRINGS])
            .map_err(err("waiting for the strings lock"))?;
        let epoch: i64 = tx
            .query_one(
                "SELECT value::bigint FROM netvigil.meta WHERE key = 'strings_epoch'",
                &[],
            )
            .map_err(err("reading the strings epoch"))?
            .get(0);
        if epoch != s.strings_epoch {
            s.strings.clear();
            s.strings_epoch = epoch;
        }
        // Every source first, then every name (each set sorted: two writers never wait on each
        // other in opposite orders), then the rows of the batches not stored yet.
        let mut fresh = Vec::with_capacity(batches.len());
        for p in batches {
            if let Some((d, seq)) = p.batch.source {
                let (d, seq) = (i64::from(d.0), i64::try_from(seq).unwrap_or(i64::MAX));
                // Two servers writing the same source: the second waits on the key until the
                // first commits (then finds it) or rolls back (then takes it).
                let new = tx
                    .execute(
                        "INSERT INTO netvigil.batch_sources (device, seq) VALUES ($1, $2) \
                         ON CONFLICT DO NOTHING",
                        &[&d, &seq],
                    )
                    .map_err(err("recording the batch's source"))?;
                fresh.push(new != 0);
            } else {
                fresh.push(true);
            }
        }
        interned = intern(&mut tx, &mut s.strings, batches).map_err(err("interning strings"))?;
        let mut out = Vec::with_capacity(batches.len());
        for (p, fresh) in batches.iter().zip(fresh) {
            if !fresh {
                out.push(Written {
                    duplicate: true,
                    ..Written::default()
                });
                continue;
            }
            out.push(copy_rows(&mut tx, &s.strings, &p.rows()).map_err(err("copying records"))?);
        }
        tx.commit().map_err(err("committing a batch"))?;
        Ok(out)
    })();
    if r.is_err() && interned {
        // Ids learned in a transaction that rolled back may not exist.
        s.strings.clear();
    }
    r
}

/// Inserts the strings the cache does not know (sorted: two writers never deadlock) and learns
/// their ids. Returns whether anything was learned.
fn intern<'r>(
    tx: &mut Transaction<'_>,
    cache: &mut HashMap<String, i32>,
    batches: &'r [Prepared<'r>],
) -> Result<bool, postgres::Error> {
    let mut missing: BTreeSet<&'r str> = BTreeSet::new();
    for rows in batches {
        for (_, fs, _) in &rows.flows {
            for v in fs.s.iter().flatten().chain(std::iter::once(&fs.remote)) {
                if !cache.contains_key(v.as_ref()) {
                    missing.insert(v.as_ref());
                }
            }
        }
        for (e, _) in &rows.events {
            for v in [&e.app, &e.domain].into_iter().flatten() {
                if !cache.contains_key(v.as_ref()) {
                    missing.insert(v.as_ref());
                }
            }
        }
    }
    if missing.is_empty() {
        return Ok(false);
    }
    let list: Vec<&str> = missing.into_iter().collect();
    tx.execute(
        "INSERT INTO netvigil.strings (s) SELECT x FROM unnest($1::text[]) AS t(x) ORDER BY x \
         ON CONFLICT (s) DO NOTHING",
        &[&list],
    )?;
    for row in tx.query("SELECT id, s FROM netvigil.strings WHERE s = ANY($1)", &[&list])? {
        cache.insert(row.get(1), row.get(0));
    }
    Ok(true)
}

fn id(cache: &HashMap<String, i32>, x: &Option<Cow<'_, str>>) -> Option<i32> {
    x.as_ref().and_then(|v| cache.get(v.as_ref()).copied())
}

fn copy_rows(
    tx: &mut Transaction<'_>,
    cache: &HashMap<String, i32>,
    rows: &Rows<'_, '_>,
) -> Result<Written, postgres::Error> {
    let batch = rows.batch;
    let device = i64::from(batch.device.0);
    let mut w = Written::default();
    let mut line = String::with_capacity(1024);

    let mut minute: HashMap<(i64, i32, i32), Agg> = HashMap::default();
    let mut hour: HashMap<(i64, i32, i32), Agg> = HashMap::default();
    if !rows.flows.is_empty() {
        let table = match rows.flow_day {
            Some(day) => partition::partition_name(Table::Flows, day),
            None => "flows".to_string(),
        };
        let sink = tx.copy_in(&format!(
            "COPY netvigil.{table} (device, ts, start_ns, end_ns, flow_id, pid, packets_to_server, \
             packets_to_client, bytes_to_server, bytes_to_client, client_port, server_port, \
             app_proto, domain, app, exe, process, proto, client_ip, server_ip, json) \
             FROM STDIN (FORMAT binary)"
        ))?;
        let mut out = BinaryCopyInWriter::new(
            sink,
            &[
                Type::INT8,
                Type::TIMESTAMPTZ,
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::INT4,
                Type::INT4,
                Type::INT4,
                Type::INT4,
                Type::INT4,
                Type::INT4,
                Type::INT4,
                Type::INT2,
                Type::INET,
                Type::INET,
                Type::TEXT,
            ],
        );
        for (f, fs, i) in rows.flows {
            let ts: SystemTime = partition::ts(f.start);
            let pid = f.process.as_ref().map(|p| i64::from(p.pid));
            let mut ids = [
                id(cache, &fs.s[0]),
                id(cache, &fs.s[1]),
                id(cache, &fs.s[2]),
                id(cache, &fs.s[3]),
                id(cache, &fs.s[4]),
            ];
            line.clear();
            batch.records[*i].write_json(&mut line);
            if let Some(obj) = &fs.s[4] {
                let obj = obj.as_ref();
                if line.ends_with('}')
                    && line[..line.len() - 1].ends_with(obj)
                    && line[..line.len() - 1 - obj.len()].ends_with(",\"process\":")
                {
                    line.truncate(line.len() - (obj.len() + ",\"process\":}".len()));
                    line.push('}');
                } else {
                    // Not the expected shape: the line keeps the object, no reference.
                    ids[4] = None;
                }
            }
            let (ps, pc) = (big(f.to_server.packets), big(f.to_client.packets));
            let (bs, bc) = (big(f.to_server.bytes), big(f.to_client.bytes));
            let (cport, sport) = (i32::from(f.client.port), i32::from(f.server.port));
            let proto = i16::from(f.proto);
            // The u64's bits in a bigint.
            let fid = f.id as i64;
            let vals: [&(dyn ToSql + Sync); 21] = [
                &device,
                &ts,
                &f.start,
                &f.end,
                &fid,
                &pid,
                &ps,
                &pc,
                &bs,
                &bc,
                &cport,
                &sport,
                &ids[0],
                &ids[1],
                &ids[2],
                &ids[3],
                &ids[4],
                &proto,
                &f.client.ip,
                &f.server.ip,
                &line.as_str(),
            ];
            out.write(&vals)?;
            let app = ids[2].unwrap_or(0);
            let remote = cache.get(fs.remote.as_ref()).copied().unwrap_or(0);
            for (map, width) in [(&mut minute, MINUTE_NS), (&mut hour, HOUR_NS)] {
                let a = map
                    .entry((f.start.div_euclid(width) * width, app, remote))
                    .or_default();
                a.flows += 1;
                a.bytes_to_server = a.bytes_to_server.saturating_add(bs);
                a.bytes_to_client = a.bytes_to_client.saturating_add(bc);
                a.packets = a.packets.saturating_add(ps.saturating_add(pc));
            }
        }
        w.flows = out.finish()?;
    }

    if !rows.events.is_empty() {
        let sink = tx.copy_in(
            "COPY netvigil.events (device, ts, ts_ns, flow_id, app, domain, kind, client_ip, \
             server_ip, json) FROM STDIN (FORMAT binary)",
        )?;
        let mut out = BinaryCopyInWriter::new(
            sink,
            &[
                Type::INT8,
                Type::TIMESTAMPTZ,
                Type::INT8,
                Type::INT8,
                Type::INT4,
                Type::INT4,
                Type::TEXT,
                Type::INET,
                Type::INET,
                Type::TEXT,
            ],
        );
        for (e, i) in rows.events {
            let ts = partition::ts(e.ts);
            let fid = e.flow_id.map(|x| x as i64);
            let (app, domain) = (id(cache, &e.app), id(cache, &e.domain));
            line.clear();
            batch.records[*i].write_json(&mut line);
            let vals: [&(dyn ToSql + Sync); 10] = [
                &device,
                &ts,
                &e.ts,
                &fid,
                &app,
                &domain,
                &e.kind,
                &e.client,
                &e.server,
                &line.as_str(),
            ];
            out.write(&vals)?;
        }
        w.events = out.finish()?;
    }

    if !batch.alerts.is_empty() {
        let a = &batch.alerts;
        let ids: Vec<Cow<'_, str>> = a.iter().map(|x| clean(&x.id)).collect();
        let ts: Vec<SystemTime> = a.iter().map(|x| partition::ts(x.ts)).collect();
        let ts_ns: Vec<i64> = a.iter().map(|x| x.ts).collect();
        let sev: Vec<i16> = a.iter().map(|x| x.severity as i16).collect();
        let rule: Vec<Cow<'_, str>> = a.iter().map(|x| clean(&x.rule)).collect();
        let app: Vec<Option<Cow<'_, str>>> = a.iter().map(|x| x.app.as_deref().map(clean)).collect();
        let remote: Vec<Option<Cow<'_, str>>> = a.iter().map(|x| x.remote.as_deref().map(clean)).collect();
        let reason: Vec<Cow<'_, str>> = a.iter().map(|x| clean(&x.reason)).collect();
        let json: Vec<Cow<'_, str>> = a.iter().map(|x| clean(&x.json)).collect();
        let (ids, rule, reason, json) = (as_str(&ids), as_str(&rule), as_str(&reason), as_str(&json));
        let (app, remote) = (as_opt(&app), as_opt(&remote));
        let n = tx.execute(
            "INSERT INTO netvigil.alerts (device, id, ts, ts_ns, severity, rule, app, remote, reason, json) \
             SELECT $1, * FROM unnest($2::text[], $3::timestamptz[], $4::int8[], $5::int2[], \
             $6::text[], $7::text[], $8::text[], $9::text[], $10::text[]) \
             ON CONFLICT (device, id) DO NOTHING",
            &[
                &device, &ids, &ts, &ts_ns, &sev, &rule, &app, &remote, &reason, &json,
            ],
        )?;
        w.alerts = n;
        w.duplicate_alerts = a.len() as u64 - n;
    }

    if !batch.samples.is_empty() {
        let sm = &batch.samples;
        let fid: Vec<i64> = sm.iter().map(|x| x.flow_id as i64).collect();
        let start: Vec<i64> = sm.iter().map(|x| x.flow_start).collect();
        let dir: Vec<i16> = sm.iter().map(|x| dir_code(x.dir)).collect();
        let ts: Vec<SystemTime> = sm.iter().map(|x| partition::ts(x.ts)).collect();
        let ts_ns: Vec<i64> = sm.iter().map(|x| x.ts).collect();
        let nonce: Vec<&[u8]> = rows.sealed.iter().map(|(n, _)| n.as_slice()).collect();
        let sealed: Vec<&[u8]> = rows.sealed.iter().map(|(_, c)| c.as_slice()).collect();
        w.samples = tx.execute(
            "INSERT INTO netvigil.samples (device, flow_id, flow_start_ns, dir, ts, ts_ns, nonce, sealed) \
             SELECT $1, * FROM unnest($2::int8[], $3::int8[], $4::int2[], $5::timestamptz[], \
             $6::int8[], $7::bytea[], $8::bytea[]) ON CONFLICT DO NOTHING",
            &[&device, &fid, &start, &dir, &ts, &ts_ns, &nonce, &sealed],
        )?;
    }

    // Rollups: this batch's sums appended as partial rows (one per key), committed with the
    // flows they count. Readers sum them per key (`query::rollups`); retention compacts them
    // (`retain::compact_rollups`). An append costs a fraction of an upsert per key: no unique
    // index to probe, and COPY fills pages in bulk.
    for (table, map) in [("rollups_minute", minute), ("rollups_hour", hour)] {
        if map.is_empty() {
            continue;
        }
        let mut keys: Vec<((i64, i32, i32), Agg)> = map.into_iter().collect();
        // Key order: rows of one bucket stay together (tight BRIN ranges).
        keys.sort_unstable_by_key(|(k, _)| *k);
        let sink = tx.copy_in(&format!(
            "COPY netvigil.{table} (device, bucket, app, remote, flows, bytes_to_server, \
             bytes_to_client, packets) FROM STDIN (FORMAT binary)"
        ))?;
        let mut out = BinaryCopyInWriter::new(
            sink,
            &[
                Type::INT8,
                Type::TIMESTAMPTZ,
                Type::INT4,
                Type::INT4,
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::INT8,
            ],
        );
        for ((bucket, app, remote), a) in &keys {
            let bucket = partition::ts(*bucket);
            let vals: [&(dyn ToSql + Sync); 8] = [
                &device,
                &bucket,
                app,
                remote,
                &a.flows,
                &a.bytes_to_server,
                &a.bytes_to_client,
                &a.packets,
            ];
            out.write(&vals)?;
        }
        out.finish()?;
    }
    Ok(w)
}

fn as_str<'a>(v: &'a [Cow<'_, str>]) -> Vec<&'a str> {
    v.iter().map(|c| c.as_ref()).collect()
}

fn as_opt<'a>(v: &'a [Option<Cow<'_, str>>]) -> Vec<Option<&'a str>> {
    v.iter().map(|c| c.as_deref()).collect()
}

/// How a direction is stored.
pub(crate) fn dir_code(dir: SampleDir) -> i16 {
    match dir {
        SampleDir::ToServer => 0,
        SampleDir::ToClient => 1,
    }
}

/// The direction a stored code names.
pub(crate) fn dir_from(code: i16) -> Option<SampleDir> {
    match code {
        0 => Some(SampleDir::ToServer),
        1 => Some(SampleDir::ToClient),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_hosts() {
        assert_eq!(http_host("example.com:8080"), "example.com");
        assert_eq!(http_host("example.com"), "example.com");
        assert_eq!(http_host("[::1]:80"), "::1");
        assert_eq!(http_host("::1"), "::1");
        assert_eq!(http_host("a:b"), "a:b");
    }

    #[test]
    fn nul_is_replaced() {
        assert_eq!(clean("a\0b"), "a\u{fffd}b");
        assert!(matches!(clean("ab"), Cow::Borrowed(_)));
    }
}
