//! Forgetting: purge (what the user asked, for good: `secure_delete`, then VACUUM) and rolling
//! retention (by age, then by a size cap: oldest raw records first, then old rollups; the file
//! shrinks through `incremental_vacuum`).

use std::path::Path;

use rusqlite::types::Value;
use rusqlite::{Connection, TransactionBehavior};

use super::read::{Filter, alert_filter, flow_filter, rollup_filter, sample_filter};
use super::schema::{HOUR_NS, MINUTE_NS};
use crate::model::{Purge, Query, Removed, Retention};

/// Rows deleted per transaction by retention (keeps the writer's waits short).
const CHUNK: i64 = 20_000;

fn exec(conn: &Connection, sql: &str, params: &[Value]) -> rusqlite::Result<u64> {
    Ok(conn.execute(sql, rusqlite::params_from_iter(params.iter()))? as u64)
}

/// Deletes what `what` names in one transaction. Interned strings and process facts no longer
/// referenced go too, and `user_version` (the strings generation) is bumped so that writers in
/// other processes drop their cached ids.
pub(crate) fn purge(conn: &mut Connection, what: &Purge) -> rusqlite::Result<Removed> {
    conn.pragma_update(None, "secure_delete", "ON")?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut r = Removed::default();
    match what {
        Purge::All => {
            r.samples = exec(&tx, "DELETE FROM samples", &[])?;
            r.flows = exec(&tx, "DELETE FROM flows", &[])?;
            r.events = exec(&tx, "DELETE FROM events", &[])?;
            r.alerts = exec(&tx, "DELETE FROM alerts", &[])?;
            r.rollups =
                exec(&tx, "DELETE FROM rollup_minute", &[])? + exec(&tx, "DELETE FROM rollup_hour", &[])?;
            exec(&tx, "DELETE FROM state", &[])?;
        }
        Purge::Before(t) => {
            let t = Value::Integer(*t);
            let p = std::slice::from_ref(&t);
            r.samples = exec(&tx, "DELETE FROM samples WHERE flow_start < ?1 OR ts < ?1", p)?;
            r.flows = exec(&tx, "DELETE FROM flows WHERE start < ?1", p)?;
            r.events = exec(&tx, "DELETE FROM events WHERE ts < ?1", p)?;
            r.alerts = exec(&tx, "DELETE FROM alerts WHERE ts < ?1", p)?;
            r.rollups = exec(&tx, "DELETE FROM rollup_minute WHERE bucket < ?1", p)?
                + exec(&tx, "DELETE FROM rollup_hour WHERE bucket < ?1", p)?;
        }
        Purge::App(_) | Purge::Host(_) => {
            let q = match what {
                Purge::App(a) => Query {
                    app: Some(a.clone()),
                    ..Query::default()
                },
                Purge::Host(h) => Query {
                    host: Some(h.clone()),
                    ..Query::default()
                },
                _ => unreachable!("matched above"),
            };
            let mut f = Filter::default();
            sample_filter(&q, &mut f, false);
            r.samples = exec(&tx, &format!("DELETE FROM samples AS s{}", f.sql), &f.params)?;
            let mut f = Filter::default();
            flow_filter(&q, &mut f, false);
            r.flows = exec(&tx, &format!("DELETE FROM flows AS f{}", f.sql), &f.params)?;
            r.events = purge_events(&tx, &q)?;
            let mut f = Filter::default();
            alert_filter(&q, &mut f, false);
            r.alerts = exec(&tx, &format!("DELETE FROM alerts AS a{}", f.sql), &f.params)?;
            let mut f = Filter::default();
            rollup_filter(&q, &mut f, false);
            r.rollups = exec(
                &tx,
                &format!("DELETE FROM rollup_minute AS r{}", f.sql),
                &f.params,
            )? + exec(&tx, &format!("DELETE FROM rollup_hour AS r{}", f.sql), &f.params)?;
            if let Purge::App(a) = what {
                // The app's process facts (command lines may name hosts, users, files).
                exec(
                    &tx,
                    "DELETE FROM processes WHERE name_id IN (SELECT id FROM strings WHERE s = ?1 COLLATE NOCASE)",
                    &[Value::Text(a.clone())],
                )?;
            }
        }
    }
    collect_garbage(&tx)?;
    let g: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    tx.pragma_update(None, "user_version", (g + 1) & 0x7fff_ffff)?;
    tx.commit()?;
    conn.pragma_update(None, "secure_delete", "OFF")?;
    Ok(r)
}

/// Events of an app or host: app through the event's own app, host through its host or
/// addresses, and also the message records of the flows being purged (same flow id and time).
fn purge_events(conn: &Connection, q: &Query) -> rusqlite::Result<u64> {
    use super::read::{Host, domain_ids, name_ids, parse_host};
    let mut f = Filter::default();
    if let Some(app) = &q.app {
        let names = name_ids(&mut f, app);
        f.and(&format!("app_id IN {names}"));
    }
    if let Some(h) = &q.host {
        match parse_host(h) {
            Host::Ip(ip) => {
                let mut b = [0u8; 16];
                let n = super::ip_bytes(&ip, &mut b);
                let p = f.param(Value::Blob(b[..n].to_vec()));
                f.and(&format!("(server_ip = {p} OR client_ip = {p})"));
            }
            Host::Domain(d) => {
                let ids = domain_ids(&mut f, &d);
                f.and(&format!("host_id IN {ids}"));
            }
        }
    }
    exec(conn, &format!("DELETE FROM events{}", f.sql), &f.params)
}

/// Removes interned strings and process facts nothing refers to any more.
fn collect_garbage(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "DELETE FROM processes WHERE id NOT IN (SELECT process_id FROM flows WHERE process_id IS NOT NULL);
         DELETE FROM strings WHERE id NOT IN (
             SELECT app_proto_id FROM flows WHERE app_proto_id IS NOT NULL
             UNION SELECT domain_id FROM flows WHERE domain_id IS NOT NULL
             UNION SELECT app_id FROM flows WHERE app_id IS NOT NULL
             UNION SELECT iface_id FROM flows WHERE iface_id IS NOT NULL
             UNION SELECT name_id FROM processes
             UNION SELECT exe_id FROM processes WHERE exe_id IS NOT NULL
             UNION SELECT app_id FROM events WHERE app_id IS NOT NULL
             UNION SELECT host_id FROM events WHERE host_id IS NOT NULL
             UNION SELECT app_id FROM rollup_minute UNION SELECT remote_id FROM rollup_minute
             UNION SELECT app_id FROM rollup_hour UNION SELECT remote_id FROM rollup_hour);",
    )
}

/// Gives freed pages back to the file system. `full`: VACUUM (rewrites the file: nothing
/// deleted survives in free pages); otherwise `incremental_vacuum`. Then the WAL is
/// checkpointed and truncated.
pub(crate) fn reclaim(conn: &Connection, full: bool) -> rusqlite::Result<()> {
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
    if full {
        conn.execute_batch("VACUUM;")?;
    } else {
        // incremental_vacuum returns no rows but must be stepped to completion.
        let mut stmt = conn.prepare("PRAGMA incremental_vacuum")?;
        let mut rows = stmt.query([])?;
        while rows.next()?.is_some() {}
    }
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(())
}

/// Deletes `sql` (a DELETE with `LIMIT`-style chunking done by the caller) until it removes
/// nothing, each chunk in its own transaction.
fn chunked(conn: &mut Connection, sql: &str, params: &[Value]) -> rusqlite::Result<u64> {
    let mut total = 0;
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = exec(&tx, sql, params)?;
        tx.commit()?;
        total += n;
        if n < CHUNK as u64 {
            return Ok(total);
        }
    }
}

fn used_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    Ok(((pages - free).max(0) * size) as u64)
}

pub(crate) fn retain(
    conn: &mut Connection,
    now: i64,
    policy: &Retention,
    path: &Path,
) -> rusqlite::Result<Removed> {
    let mut r = Removed::default();
    if let Some(age) = policy.raw_max_age {
        let t = [Value::Integer(now.saturating_sub(age))];
        r.flows += chunked(
            conn,
            &format!("DELETE FROM flows WHERE id IN (SELECT id FROM flows WHERE start < ?1 LIMIT {CHUNK})"),
            &t,
        )?;
        r.events += chunked(
            conn,
            &format!("DELETE FROM events WHERE id IN (SELECT id FROM events WHERE ts < ?1 LIMIT {CHUNK})"),
            &t,
        )?;
        r.samples += chunked(
            conn,
            &format!(
                "DELETE FROM samples WHERE id IN (SELECT id FROM samples WHERE flow_start < ?1 LIMIT {CHUNK})"
            ),
            &t,
        )?;
    }
    if let Some(age) = policy.minute_rollup_max_age {
        let t = [Value::Integer(now.saturating_sub(age) - MINUTE_NS)];
        r.rollups += chunked(
            conn,
            &format!(
                "DELETE FROM rollup_minute WHERE (bucket, device, app_id, remote_id) IN (SELECT bucket, device, app_id, remote_id FROM rollup_minute WHERE bucket < ?1 LIMIT {CHUNK})"
            ),
            &t,
        )?;
    }
    if let Some(age) = policy.hour_rollup_max_age {
        let t = [Value::Integer(now.saturating_sub(age) - HOUR_NS)];
        r.rollups += chunked(
            conn,
            &format!(
                "DELETE FROM rollup_hour WHERE (bucket, device, app_id, remote_id) IN (SELECT bucket, device, app_id, remote_id FROM rollup_hour WHERE bucket < ?1 LIMIT {CHUNK})"
            ),
            &t,
        )?;
        r.alerts += chunked(
            conn,
            &format!(
                "DELETE FROM alerts WHERE rowid IN (SELECT rowid FROM alerts WHERE ts < ?1 LIMIT {CHUNK})"
            ),
            &t,
        )?;
    }
    if let Some(cap) = policy.max_bytes {
        shrink_to(conn, cap, path, &mut r)?;
    }
    let freed: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    if freed > 0 {
        reclaim(conn, false)?;
    }
    Ok(r)
}

/// Deletes the oldest raw records (then minute rollups, then hour rollups) until the pages in
/// use fit under `cap` with room for the WAL's checkpointed size.
fn shrink_to(conn: &mut Connection, cap: u64, _path: &Path, r: &mut Removed) -> rusqlite::Result<()> {
    for _round in 0..10_000 {
        let used = used_bytes(conn)?;
        if used <= cap {
            return Ok(());
        }
        let flows: i64 = conn.query_row("SELECT count(*) FROM flows", [], |r| r.get(0))?;
        let events: i64 = conn.query_row("SELECT count(*) FROM events", [], |r| r.get(0))?;
        if flows + events > 0 {
            // Remove about the excess share of raw rows (at least 1000, at most 1/4), oldest first.
            let excess = (used - cap) as f64 / used as f64;
            let n = ((flows + events) as f64 * excess * 1.2).ceil() as i64;
            let n = n.clamp(1000.min(flows + events), ((flows + events) / 4).max(1000));
            let cutoff: Option<i64> = conn.query_row(
                "SELECT max(t) FROM (SELECT start AS t FROM flows UNION ALL SELECT ts FROM events \
                 ORDER BY t LIMIT ?1)",
                [n],
                |r| r.get(0),
            )?;
            let Some(cutoff) = cutoff else { continue };
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            r.flows += tx.execute("DELETE FROM flows WHERE start <= ?1", [cutoff])? as u64;
            r.events += tx.execute("DELETE FROM events WHERE ts <= ?1", [cutoff])? as u64;
            r.samples += tx.execute("DELETE FROM samples WHERE flow_start <= ?1", [cutoff])? as u64;
            tx.commit()?;
            continue;
        }
        let samples: i64 = conn.query_row("SELECT count(*) FROM samples", [], |r| r.get(0))?;
        if samples > 0 {
            r.samples += conn.execute("DELETE FROM samples", [])? as u64;
            continue;
        }
        // No raw records left: the oldest rollups go, minutes before hours.
        for table in ["rollup_minute", "rollup_hour"] {
            let oldest: Option<i64> =
                conn.query_row(&format!("SELECT min(bucket) FROM {table}"), [], |r| r.get(0))?;
            if let Some(b) = oldest {
                r.rollups += conn.execute(&format!("DELETE FROM {table} WHERE bucket <= ?1"), [b])? as u64;
                break;
            }
        }
        let left: i64 = conn.query_row(
            "SELECT (SELECT count(*) FROM rollup_minute) + (SELECT count(*) FROM rollup_hour)",
            [],
            |r| r.get(0),
        )?;
        if left == 0 {
            return Ok(());
        }
    }
    Ok(())
}
