//! Forgetting: rolling retention (whole day partitions or TimescaleDB chunks dropped, the
//! partly expired day deleted by age) and purges (deleted, then the touched tables rewritten
//! with `VACUUM FULL` so the bytes leave the data files, and unused interned names deleted).

use super::partition::{self, DAY_NS, Layout, Table};
use super::query::{self, Filter, HostMatch};
use super::{LOCK_DDL, LOCK_STRINGS, PgStore};
use crate::model::{Purge, Removed, Retention, RollupGrain, StoreError};

pub(crate) fn retain(s: &mut PgStore, now: i64, policy: &Retention) -> Result<Removed, StoreError> {
    let mut r = Removed {
        bytes_before: s.size_bytes()?,
        ..Removed::default()
    };
    if let Some(age) = policy.raw_max_age {
        drop_raw_before(s, now.saturating_sub(age), &mut r)?;
    }
    for grain in [RollupGrain::Minute, RollupGrain::Hour] {
        compact_rollups(s, grain, now)?;
    }
    if let Some(age) = policy.minute_rollup_max_age {
        r.rollups += delete_rollups(s, RollupGrain::Minute, now.saturating_sub(age))?;
    }
    if let Some(age) = policy.hour_rollup_max_age {
        let cutoff = now.saturating_sub(age);
        r.rollups += delete_rollups(s, RollupGrain::Hour, cutoff)?;
        r.alerts += exec(
            s,
            "deleting old alerts",
            "DELETE FROM netvigil.alerts WHERE ts_ns < $1",
            cutoff,
        )?;
    }
    if let Some(max) = policy.max_bytes {
        // Whole days of raw records, oldest first, never today's: only dropping returns space
        // to the operating system at once (a DELETE leaves it for reuse inside the tables).
        let today = partition::day_of(now);
        while s.size_bytes()? > max {
            let Some(oldest) = oldest_raw_day(s)? else { break };
            if oldest >= today {
                break;
            }
            drop_raw_before(s, (oldest + 1) * DAY_NS, &mut r)?;
        }
    }
    r.bytes_after = s.size_bytes()?;
    Ok(r)
}

pub(crate) fn purge(s: &mut PgStore, what: &Purge) -> Result<Removed, StoreError> {
    let mut r = Removed {
        bytes_before: s.size_bytes()?,
        ..Removed::default()
    };
    match what {
        Purge::All => purge_all(s, &mut r)?,
        Purge::Before(t) => {
            drop_raw_before(s, *t, &mut r)?;
            r.rollups += delete_rollups(s, RollupGrain::Minute, *t)?;
            r.rollups += delete_rollups(s, RollupGrain::Hour, *t)?;
            r.alerts += exec(
                s,
                "purging alerts",
                "DELETE FROM netvigil.alerts WHERE ts_ns < $1",
                *t,
            )?;
            gc_strings(s)?;
            let mut rels = vec!["netvigil.alerts".to_string(), "netvigil.samples".into()];
            rels.extend(["netvigil.rollups_minute".into(), "netvigil.rollups_hour".into()]);
            if s.layout == Layout::DayPartitions {
                // The day the cutoff falls in was only partly deleted.
                let day = partition::day_of(*t);
                for tb in Table::ALL {
                    if s.partitions.contains(&(tb, day)) {
                        rels.push(format!("netvigil.{}", partition::partition_name(tb, day)));
                    }
                }
            } else {
                rels.extend(["netvigil.flows".into(), "netvigil.events".into()]);
            }
            vacuum_full(s, &rels)?;
        }
        Purge::App(app) => {
            let ids = query::resolve_app(s, app)?;
            if !ids.is_empty() {
                let mut f = Filter::default();
                let p = f.p(ids.clone());
                f.cond(format!("(app = ANY({p}) OR exe = ANY({p}))"));
                delete_flows(s, &f, &mut r)?;
                let mut f = Filter::default();
                let p = f.p(ids.clone());
                f.cond(format!("app = ANY({p})"));
                r.events += delete_where(s, "events", &f)?;
                for g in ["rollups_minute", "rollups_hour"] {
                    r.rollups += delete_where(s, g, &f)?;
                }
            }
            let mut f = Filter::default();
            let p = f.p(app.clone());
            f.cond(format!("lower(app) = lower({p})"));
            r.alerts += delete_where(s, "alerts", &f)?;
            gc_strings(s)?;
            vacuum_all(s)?;
        }
        Purge::Host(h) => {
            let (flow_cond, rollup_ids) = match query::resolve_host(s, h)? {
                HostMatch::Ip(ip) => {
                    let mut f = Filter::default();
                    let p = f.p(ip);
                    f.cond(format!("(client_ip = {p} OR server_ip = {p})"));
                    let text = ip.to_string();
                    let id = s
                        .client
                        .query_opt("SELECT id FROM netvigil.strings WHERE s = $1", &[&text])
                        .map_err(|e| s.db("looking up a host", &e))?
                        .map(|r| r.get::<_, i32>(0));
                    (Some(f), id.into_iter().collect::<Vec<i32>>())
                }
                HostMatch::Domain(ids) if ids.is_empty() => (None, ids),
                HostMatch::Domain(ids) => {
                    let mut f = Filter::default();
                    let p = f.p(ids.clone());
                    f.cond(format!("domain = ANY({p})"));
                    (Some(f), ids)
                }
            };
            if let Some(f) = flow_cond {
                delete_flows(s, &f, &mut r)?;
                r.events += delete_where(s, "events", &f)?;
            }
            if !rollup_ids.is_empty() {
                let mut f = Filter::default();
                let p = f.p(rollup_ids.clone());
                f.cond(format!("remote = ANY({p})"));
                for g in ["rollups_minute", "rollups_hour"] {
                    r.rollups += delete_where(s, g, &f)?;
                }
            }
            let mut f = Filter::default();
            let q = crate::model::Query {
                host: Some(h.clone()),
                ..Default::default()
            };
            query::alert_filter(&q, "netvigil.alerts", &mut f);
            r.alerts += delete_where(s, "alerts", &f)?;
            gc_strings(s)?;
            vacuum_all(s)?;
        }
    }
    r.bytes_after = s.size_bytes()?;
    Ok(r)
}

fn exec(s: &mut PgStore, doing: &'static str, sql: &str, t: i64) -> Result<u64, StoreError> {
    s.client.execute(sql, &[&t]).map_err(|e| s.db(doing, &e))
}

/// `DELETE FROM netvigil.<table>` with `f`'s conditions.
fn delete_where(s: &mut PgStore, table: &str, f: &Filter) -> Result<u64, StoreError> {
    let sql = format!("DELETE FROM netvigil.{table}{}", f.where_sql());
    s.client
        .execute(&sql, &f.params())
        .map_err(|e| s.db("purging", &e))
}

/// Deletes the flows matching `f` and the samples of those flows.
fn delete_flows(s: &mut PgStore, f: &Filter, r: &mut Removed) -> Result<(), StoreError> {
    let sql = format!(
        "WITH d AS (DELETE FROM netvigil.flows{} RETURNING device, flow_id, start_ns), \
         x AS (DELETE FROM netvigil.samples sm USING d \
               WHERE sm.device = d.device AND sm.flow_id = d.flow_id AND sm.flow_start_ns = d.start_ns \
               RETURNING 1) \
         SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM x)",
        f.where_sql()
    );
    let row = s
        .client
        .query_one(&sql, &f.params())
        .map_err(|e| s.db("purging flows", &e))?;
    r.flows += row.get::<_, i64>(0) as u64;
    r.samples += row.get::<_, i64>(1) as u64;
    Ok(())
}

/// Merges the partial rollup rows (one per key per written batch) of buckets that closed
/// before `now` into one row per key, from where the last pass stopped (`meta`
/// `rollups_compacted_minute` / `_hour`, minus an hour for late flows) up to the bucket that
/// holds `now`. Only keys with more than one row are rewritten. Returns the rows removed.
///
/// Safe with concurrent writers and compactions (READ COMMITTED): the statement deletes and
/// re-inserts only rows its snapshot sees; a row another compaction deleted first is skipped,
/// never summed twice; rows committed later stay for the next pass. Readers always sum per
/// key, so a pass that stops half-way changes no answer.
pub(crate) fn compact_rollups(s: &mut PgStore, grain: RollupGrain, now: i64) -> Result<u64, StoreError> {
    const MINUTE_NS: i64 = 60 * 1_000_000_000;
    const HOUR_NS: i64 = 60 * MINUTE_NS;
    let (width, key) = match grain {
        RollupGrain::Minute => (MINUTE_NS, "rollups_compacted_minute"),
        RollupGrain::Hour => (HOUR_NS, "rollups_compacted_hour"),
    };
    let upto = now.div_euclid(width) * width;
    let from: Option<i64> = s
        .client
        .query_opt("SELECT value::bigint FROM netvigil.meta WHERE key = $1", &[&key])
        .map_err(|e| s.db("reading the rollup compaction mark", &e))?
        .map(|r| r.get::<_, i64>(0).saturating_sub(HOUR_NS));
    let table = query::rollup_table(grain);
    let mut conds = vec!["bucket < $1".to_string()];
    let upto_ts = partition::ts(upto);
    let from_ts = from.map(partition::ts);
    let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> = vec![&upto_ts];
    if let Some(f) = &from_ts {
        conds.push("bucket >= $2".into());
        params.push(f);
    }
    let w = conds.join(" AND ");
    let sql = format!(
        "WITH dup AS (SELECT device, bucket, app, remote FROM netvigil.{table} WHERE {w} \
                      GROUP BY device, bucket, app, remote HAVING count(*) > 1), \
         del AS (DELETE FROM netvigil.{table} t USING dup \
                 WHERE t.device = dup.device AND t.bucket = dup.bucket AND t.app = dup.app \
                   AND t.remote = dup.remote \
                 RETURNING t.*), \
         ins AS (INSERT INTO netvigil.{table} (device, bucket, app, remote, flows, bytes_to_server, \
                     bytes_to_client, packets) \
                 SELECT device, bucket, app, remote, sum(flows), sum(bytes_to_server), \
                        sum(bytes_to_client), sum(packets) \
                 FROM del GROUP BY device, bucket, app, remote RETURNING 1) \
         SELECT (SELECT count(*) FROM del) - (SELECT count(*) FROM ins)"
    );
    let server = s.server.clone();
    let err = |doing| super::on(&server, doing);
    let mut tx = s.client.transaction().map_err(err("starting a transaction"))?;
    let removed: i64 = tx
        .query_one(&sql, &params)
        .map_err(err("compacting rollups"))?
        .get(0);
    tx.execute(
        "INSERT INTO netvigil.meta (key, value) VALUES ($1, $2::bigint::text) \
         ON CONFLICT (key) DO UPDATE SET value = greatest(netvigil.meta.value::bigint, EXCLUDED.value::bigint)::text",
        &[&key, &upto],
    )
    .map_err(err("saving the rollup compaction mark"))?;
    tx.commit().map_err(err("committing a rollup compaction"))?;
    Ok(removed.max(0) as u64)
}

fn delete_rollups(s: &mut PgStore, grain: RollupGrain, cutoff: i64) -> Result<u64, StoreError> {
    // bucket_ns < cutoff  <=>  bucket_us < ceil(cutoff / 1000)
    let t = partition::ts(cutoff.saturating_add(999));
    let sql = format!(
        "DELETE FROM netvigil.{} WHERE bucket < $1",
        query::rollup_table(grain)
    );
    s.client
        .execute(&sql, &[&t])
        .map_err(|e| s.db("deleting old rollups", &e))
}

/// Removes flows, events and samples older than `cutoff`: whole days dropped, the rest of the
/// day that holds `cutoff` deleted row by row.
fn drop_raw_before(s: &mut PgStore, cutoff: i64, r: &mut Removed) -> Result<(), StoreError> {
    let last = partition::ts(cutoff.saturating_sub(1));
    for t in Table::ALL {
        let ns = match t {
            Table::Flows => "start_ns",
            Table::Events => "ts_ns",
        };
        // Count first (exact figures for the report), then drop and delete.
        let sql = format!(
            "SELECT count(*) FROM netvigil.{} WHERE ts <= $1 AND {ns} < $2",
            t.name()
        );
        let n = s
            .client
            .query_one(&sql, &[&last, &cutoff])
            .map_err(|e| s.db("counting expired records", &e))?
            .get::<_, i64>(0) as u64;
        match t {
            Table::Flows => r.flows += n,
            Table::Events => r.events += n,
        }
        if n == 0 && s.layout == Layout::Hypertables {
            continue;
        }
        let first_kept_day = partition::day_of(cutoff);
        match s.layout {
            Layout::DayPartitions => {
                let parts = partition::list(&mut s.client, t).map_err(|e| s.db("listing partitions", &e))?;
                let expired: Vec<(i64, String)> =
                    parts.into_iter().filter(|(d, _)| *d < first_kept_day).collect();
                if !expired.is_empty() {
                    let mut sql = format!("BEGIN; SELECT pg_advisory_xact_lock({LOCK_DDL});\n");
                    for (_, name) in &expired {
                        sql.push_str(&format!("DROP TABLE IF EXISTS netvigil.{name};\n"));
                    }
                    sql.push_str("COMMIT;");
                    if let Err(e) = s.client.batch_execute(&sql) {
                        let _ = s.client.batch_execute("ROLLBACK");
                        return Err(s.db("dropping expired day partitions", &e));
                    }
                    for (d, _) in &expired {
                        s.partitions.remove(&(t, *d));
                    }
                }
            }
            Layout::Hypertables => {
                let day_start = partition::ts(first_kept_day * DAY_NS);
                let sql = format!(
                    "SELECT count(*) FROM drop_chunks('netvigil.{}', older_than => $1::timestamptz)",
                    t.name()
                );
                s.client
                    .query_one(&sql, &[&day_start])
                    .map_err(|e| s.db("dropping expired TimescaleDB chunks", &e))?;
            }
        }
        let sql = format!("DELETE FROM netvigil.{} WHERE ts <= $1 AND {ns} < $2", t.name());
        s.client
            .execute(&sql, &[&last, &cutoff])
            .map_err(|e| s.db("deleting expired records", &e))?;
    }
    r.samples += exec(
        s,
        "deleting expired samples",
        "DELETE FROM netvigil.samples WHERE ts_ns < $1",
        cutoff,
    )?;
    Ok(())
}

/// The oldest day that holds raw records.
fn oldest_raw_day(s: &mut PgStore) -> Result<Option<i64>, StoreError> {
    let row = s
        .client
        .query_one(
            "SELECT least((SELECT min(start_ns) FROM netvigil.flows), (SELECT min(ts_ns) FROM netvigil.events))",
            &[],
        )
        .map_err(|e| s.db("finding the oldest records", &e))?;
    Ok(row.get::<_, Option<i64>>(0).map(partition::day_of))
}

fn purge_all(s: &mut PgStore, r: &mut Removed) -> Result<(), StoreError> {
    let row = s
        .client
        .query_one(
            "SELECT (SELECT count(*) FROM netvigil.flows), (SELECT count(*) FROM netvigil.events), \
             (SELECT count(*) FROM netvigil.alerts), (SELECT count(*) FROM netvigil.samples), \
             (SELECT count(*) FROM netvigil.rollups_minute) + (SELECT count(*) FROM netvigil.rollups_hour)",
            &[],
        )
        .map_err(|e| s.db("counting records", &e))?;
    let n = |i: usize| row.get::<_, i64>(i) as u64;
    (r.flows, r.events, r.alerts, r.samples, r.rollups) = (n(0), n(1), n(2), n(3), n(4));
    let sql = format!(
        "BEGIN; SELECT pg_advisory_xact_lock({LOCK_STRINGS});
         TRUNCATE netvigil.flows, netvigil.events, netvigil.alerts, netvigil.samples,
                  netvigil.rollups_minute, netvigil.rollups_hour, netvigil.strings;
         UPDATE netvigil.meta SET value = (value::bigint + 1)::text WHERE key = 'strings_epoch';
         COMMIT;"
    );
    if let Err(e) = s.client.batch_execute(&sql) {
        let _ = s.client.batch_execute("ROLLBACK");
        return Err(s.db("purging everything", &e));
    }
    s.strings.clear();
    Ok(())
}

/// Deletes the interned strings no row refers to any more (names of purged apps and hosts,
/// process objects), under the strings lock, and bumps the epoch so every writer drops its
/// cache.
fn gc_strings(s: &mut PgStore) -> Result<(), StoreError> {
    let refs = [
        ("flows", "app_proto"),
        ("flows", "domain"),
        ("flows", "app"),
        ("flows", "exe"),
        ("flows", "process"),
        ("events", "app"),
        ("events", "domain"),
        ("rollups_minute", "app"),
        ("rollups_minute", "remote"),
        ("rollups_hour", "app"),
        ("rollups_hour", "remote"),
    ];
    let mut sql = String::from("DELETE FROM netvigil.strings st WHERE ");
    let conds: Vec<String> = refs
        .iter()
        .map(|(t, c)| format!("NOT EXISTS (SELECT 1 FROM netvigil.{t} x WHERE x.{c} = st.id)"))
        .collect();
    sql.push_str(&conds.join(" AND "));
    let server = s.server.clone();
    let err = |doing| super::on(&server, doing);
    let mut tx = s.client.transaction().map_err(err("starting a transaction"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_STRINGS])
        .map_err(err("waiting for the strings lock"))?;
    tx.execute(&sql, &[]).map_err(err("deleting unused names"))?;
    tx.execute(
        "UPDATE netvigil.meta SET value = (value::bigint + 1)::text WHERE key = 'strings_epoch'",
        &[],
    )
    .map_err(err("bumping the strings epoch"))?;
    tx.commit().map_err(err("committing"))?;
    s.strings.clear();
    Ok(())
}

fn vacuum_all(s: &mut PgStore) -> Result<(), StoreError> {
    let rels: Vec<String> = [
        "flows",
        "events",
        "alerts",
        "samples",
        "rollups_minute",
        "rollups_hour",
        "strings",
    ]
    .iter()
    .map(|t| format!("netvigil.{t}"))
    .collect();
    vacuum_full(s, &rels)
}

/// Rewrites `rels` so deleted rows leave the data files (takes each table's exclusive lock
/// while it runs).
fn vacuum_full(s: &mut PgStore, rels: &[String]) -> Result<(), StoreError> {
    let sql = format!("VACUUM (FULL) {}", rels.join(", "));
    s.client
        .batch_execute(&sql)
        .map_err(|e| s.db("reclaiming space (VACUUM FULL)", &e))
}
