//! Schema migrations: a `netvigil.schema_version` table, each migration in its own transaction,
//! the whole pass under a session advisory lock so server processes that start together apply
//! each migration once.

use std::path::PathBuf;

use postgres::Client;

use super::partition::Layout;
use super::{LOCK_MIGRATE, pg_error};
use crate::model::StoreError;

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: u32 = 3;

/// One table split in time: everything but the `PARTITION BY` clause.
const FLOWS: &str = "CREATE TABLE netvigil.flows (
    device            bigint      NOT NULL,
    ts                timestamptz NOT NULL,
    start_ns          bigint      NOT NULL,
    end_ns            bigint      NOT NULL,
    flow_id           bigint      NOT NULL,
    pid               bigint,
    packets_to_server bigint      NOT NULL,
    packets_to_client bigint      NOT NULL,
    bytes_to_server   bigint      NOT NULL,
    bytes_to_client   bigint      NOT NULL,
    client_port       integer     NOT NULL,
    server_port       integer     NOT NULL,
    app_proto         integer,
    domain            integer,
    app               integer,
    exe               integer,
    process           integer,
    proto             smallint    NOT NULL,
    client_ip         inet        NOT NULL,
    server_ip         inet        NOT NULL,
    json              text        NOT NULL
)";

const EVENTS: &str = "CREATE TABLE netvigil.events (
    device    bigint      NOT NULL,
    ts        timestamptz NOT NULL,
    ts_ns     bigint      NOT NULL,
    flow_id   bigint,
    app       integer,
    domain    integer,
    kind      text        NOT NULL,
    client_ip inet,
    server_ip inet,
    json      text        NOT NULL
)";

/// Indexes of the time-split tables in schema version 1 (replaced by [`V2`]).
const SPLIT_INDEXES: &str = "
CREATE INDEX flows_device_ts ON netvigil.flows (device, ts);
CREATE INDEX flows_app ON netvigil.flows (app) WHERE app IS NOT NULL;
CREATE INDEX flows_exe ON netvigil.flows (exe) WHERE exe IS NOT NULL;
CREATE INDEX flows_domain ON netvigil.flows (domain) WHERE domain IS NOT NULL;
CREATE INDEX flows_client_ip ON netvigil.flows (client_ip);
CREATE INDEX flows_server_ip ON netvigil.flows (server_ip);
CREATE INDEX events_device_ts ON netvigil.events (device, ts);
CREATE INDEX events_app ON netvigil.events (app) WHERE app IS NOT NULL;
CREATE INDEX events_domain ON netvigil.events (domain) WHERE domain IS NOT NULL;
CREATE INDEX events_client_ip ON netvigil.events (client_ip) WHERE client_ip IS NOT NULL;
CREATE INDEX events_server_ip ON netvigil.events (server_ip) WHERE server_ip IS NOT NULL;
COMMENT ON COLUMN netvigil.flows.process IS 'netvigil.strings id of the process object; json is the flow line without it (see docs/postgres.md)';
COMMENT ON COLUMN netvigil.flows.start_ns IS 'exact start, ns since the epoch; ts is the same instant floored to the microsecond (partition key)';
";

/// Version 2: the indexes of the time-split tables (created on the parent: every partition
/// gets them) and rollups kept as partial sums.
///
/// Chosen for the write rate (issue 6, docs/postgres.md "Indexes"): a BRIN index on `ts` (rows
/// arrive in about time order and partitions are per day, so block ranges are tight; it costs
/// almost nothing to maintain) serves `since`/`until` and the newest-first windows of
/// `query.rs`; `autosummarize` has autovacuum summarize each block range as soon as it
/// fills, so only the newest, still-filling range is read whole; one GIN index (`btree_gin`
/// operator classes) over every column a filter names
/// (`device`, the interned `app`, `exe`, `domain` ids and both addresses) serves device, app
/// and host filters as bitmap scans. GIN appends new entries to a pending list and merges them
/// in sorted bulk, which costs far less per row than six B-trees did (measured in
/// docs/benchmarks.md).
///
/// Rollups lose their primary key: each batch appends its sums (`write.rs`), readers sum per
/// key, retention compacts (`retain::compact_rollups`); a BRIN index on `bucket` serves time
/// bounds and retention.
const V2: &str = "
CREATE EXTENSION IF NOT EXISTS btree_gin;
DROP INDEX netvigil.flows_device_ts, netvigil.flows_app, netvigil.flows_exe, netvigil.flows_domain,
    netvigil.flows_client_ip, netvigil.flows_server_ip, netvigil.events_device_ts, netvigil.events_app,
    netvigil.events_domain, netvigil.events_client_ip, netvigil.events_server_ip;
CREATE INDEX flows_ts ON netvigil.flows USING brin (ts) WITH (autosummarize = on);
CREATE INDEX flows_keys ON netvigil.flows USING gin (device, app, exe, domain, client_ip, server_ip);
CREATE INDEX events_ts ON netvigil.events USING brin (ts) WITH (autosummarize = on);
CREATE INDEX events_keys ON netvigil.events USING gin (device, app, domain, client_ip, server_ip);
ALTER TABLE netvigil.rollups_minute DROP CONSTRAINT rollups_minute_pkey;
ALTER TABLE netvigil.rollups_hour DROP CONSTRAINT rollups_hour_pkey;
CREATE INDEX rollups_minute_bucket ON netvigil.rollups_minute USING brin (bucket) WITH (autosummarize = on);
CREATE INDEX rollups_hour_bucket ON netvigil.rollups_hour USING brin (bucket) WITH (autosummarize = on);
COMMENT ON TABLE netvigil.rollups_minute IS 'partial sums per (bucket, device, app, remote), one row per key per written batch until retention compacts them: read with GROUP BY (see docs/postgres.md)';
COMMENT ON TABLE netvigil.rollups_hour IS 'as rollups_minute, per hour';
";

/// Version 3: the fleet server's exactly-once record of agent batches (`Batch::source`): one
/// row per (device, sequence number), inserted in the batch's own transaction.
const V3: &str = "
CREATE TABLE netvigil.batch_sources (
    device   bigint      NOT NULL,
    seq      bigint      NOT NULL,
    received timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device, seq)
);
";

const SMALL_TABLES: &str = "
CREATE TABLE netvigil.meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE netvigil.strings (
    id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    s  text NOT NULL UNIQUE
);
CREATE TABLE netvigil.alerts (
    device   bigint      NOT NULL,
    id       text        NOT NULL,
    ts       timestamptz NOT NULL,
    ts_ns    bigint      NOT NULL,
    severity smallint    NOT NULL,
    rule     text        NOT NULL,
    app      text,
    remote   text,
    reason   text        NOT NULL,
    json     text        NOT NULL,
    PRIMARY KEY (device, id)
);
CREATE INDEX alerts_ts ON netvigil.alerts (ts);
CREATE TABLE netvigil.samples (
    device        bigint      NOT NULL,
    flow_id       bigint      NOT NULL,
    flow_start_ns bigint      NOT NULL,
    dir           smallint    NOT NULL,
    ts            timestamptz NOT NULL,
    ts_ns         bigint      NOT NULL,
    nonce         bytea       NOT NULL,
    sealed        bytea       NOT NULL,
    PRIMARY KEY (device, flow_id, flow_start_ns, dir)
);
CREATE INDEX samples_ts ON netvigil.samples (ts);
CREATE TABLE netvigil.rollups_minute (
    device          bigint      NOT NULL,
    bucket          timestamptz NOT NULL,
    app             integer     NOT NULL,
    remote          integer     NOT NULL,
    flows           bigint      NOT NULL,
    bytes_to_server bigint      NOT NULL,
    bytes_to_client bigint      NOT NULL,
    packets         bigint      NOT NULL,
    PRIMARY KEY (bucket, device, app, remote)
);
CREATE TABLE netvigil.rollups_hour (LIKE netvigil.rollups_minute INCLUDING ALL);
CREATE TABLE netvigil.state (
    device  bigint      NOT NULL,
    key     text        NOT NULL,
    value   bytea       NOT NULL,
    updated timestamptz NOT NULL,
    PRIMARY KEY (device, key)
);
COMMENT ON COLUMN netvigil.rollups_minute.app IS 'netvigil.strings id of the program, 0 when unknown';
COMMENT ON COLUMN netvigil.alerts.severity IS '0 info, 1 low, 2 medium, 3 high';
COMMENT ON COLUMN netvigil.samples.sealed IS 'XChaCha20-Poly1305 ciphertext and tag (store::crypto); device, flow_id, flow_start_ns and dir are its associated data';
";

/// The SQL of migration `version` for `layout`.
fn migration(version: u32, layout: Layout) -> String {
    match version {
        1 => {
            let mut sql = String::from(SMALL_TABLES);
            match layout {
                Layout::DayPartitions => {
                    sql.push_str(&format!("{FLOWS} PARTITION BY RANGE (ts);\n"));
                    sql.push_str(&format!("{EVENTS} PARTITION BY RANGE (ts);\n"));
                }
                Layout::Hypertables => {
                    sql.push_str(&format!("{FLOWS};\n{EVENTS};\n"));
                    for t in ["flows", "events"] {
                        sql.push_str(&format!(
                            "SELECT create_hypertable('netvigil.{t}', 'ts', \
                             chunk_time_interval => interval '1 day', create_default_indexes => false);\n"
                        ));
                    }
                }
            }
            sql.push_str(SPLIT_INDEXES);
            sql.push_str(&format!(
                "INSERT INTO netvigil.meta (key, value) VALUES ('layout', '{}'), ('strings_epoch', '0');\n",
                layout.as_str()
            ));
            sql
        }
        3 => V3.to_string(),
        2 => V2.to_string(),
        _ => String::new(),
    }
}

const DESCRIPTIONS: [&str; SCHEMA_VERSION as usize] = [
    "flows, events (split by day), alerts, samples, rollups, state, strings",
    "BRIN time and GIN key indexes; rollups as partial sums (issue 6 write rate)",
    "batch_sources: fleet agent batches stored exactly once",
];

/// Applies pending migrations and returns the layout of the time-split tables.
pub(crate) fn migrate(
    client: &mut Client,
    server: &str,
    allow_timescale: bool,
) -> Result<Layout, StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_MIGRATE])
        .map_err(|e| pg_error(server, "waiting for the migration lock", &e))?;
    let r = migrate_locked(client, server, allow_timescale);
    let unlock = client.execute("SELECT pg_advisory_unlock($1)", &[&LOCK_MIGRATE]);
    let layout = r?;
    unlock.map_err(|e| pg_error(server, "releasing the migration lock", &e))?;
    Ok(layout)
}

fn migrate_locked(client: &mut Client, server: &str, allow_timescale: bool) -> Result<Layout, StoreError> {
    let db = |doing| super::on(server, doing);
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM pg_tables WHERE schemaname = 'netvigil'), \
                    to_regclass('netvigil.schema_version') IS NOT NULL",
            &[],
        )
        .map_err(db("reading the catalog"))?;
    let (tables, has_version): (i64, bool) = (row.get(0), row.get(1));
    if tables > 0 && !has_version {
        return Err(StoreError::NotOurs {
            path: PathBuf::from(format!("the PostgreSQL database {server}")),
            why: "it has a schema \"netvigil\" without netvigil's schema_version table".into(),
        });
    }
    client
        .batch_execute(
            "CREATE SCHEMA IF NOT EXISTS netvigil;
             CREATE TABLE IF NOT EXISTS netvigil.schema_version (
                 version     integer PRIMARY KEY,
                 description text NOT NULL,
                 applied     timestamptz NOT NULL DEFAULT now()
             );",
        )
        .map_err(db(
            "creating the netvigil schema (the user needs CREATE on the database)",
        ))?;
    let current: i32 = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM netvigil.schema_version",
            &[],
        )
        .map_err(db("reading the schema version"))?
        .get(0);
    let current = current.max(0) as u32;
    if current > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: PathBuf::from(format!("the PostgreSQL database {server}")),
            found: current,
            supported: SCHEMA_VERSION,
        });
    }
    let layout = if current == 0 {
        choose_layout(client, allow_timescale)
    } else {
        let v: Option<String> = client
            .query_opt("SELECT value FROM netvigil.meta WHERE key = 'layout'", &[])
            .map_err(db("reading the layout"))?
            .map(|r| r.get(0));
        match v.as_deref().and_then(Layout::parse) {
            Some(l) => l,
            None => {
                return Err(StoreError::NotOurs {
                    path: PathBuf::from(format!("the PostgreSQL database {server}")),
                    why: format!("netvigil.meta names no known layout ({v:?})"),
                });
            }
        }
    };
    for version in current + 1..=SCHEMA_VERSION {
        let mut tx = client.transaction().map_err(db("starting a migration"))?;
        tx.batch_execute(&migration(version, layout))
            .map_err(db("applying a schema migration"))?;
        let v = version as i32;
        tx.execute(
            "INSERT INTO netvigil.schema_version (version, description) VALUES ($1, $2)",
            &[&v, &DESCRIPTIONS[version as usize - 1]],
        )
        .map_err(db("recording a schema migration"))?;
        tx.commit().map_err(db("committing a schema migration"))?;
    }
    Ok(layout)
}

/// TimescaleDB when the extension is installed and can be created (it must also be in
/// `shared_preload_libraries`); plain day partitions otherwise.
fn choose_layout(client: &mut Client, allow_timescale: bool) -> Layout {
    if !allow_timescale {
        return Layout::DayPartitions;
    }
    let available = client
        .query_opt(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'",
            &[],
        )
        .ok()
        .flatten()
        .is_some();
    if available
        && client
            .batch_execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            .is_ok()
    {
        Layout::Hypertables
    } else {
        Layout::DayPartitions
    }
}
