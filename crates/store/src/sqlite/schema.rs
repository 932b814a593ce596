//! The SQLite schema as numbered migrations. Each runs in its own transaction and records its
//! number in `schema_version`; a database is brought to [`LATEST`] when it is opened.
//!
//! Conventions: times are nanoseconds since the epoch; addresses are BLOBs (4 or 16 bytes);
//! repeated strings (apps, domains, exe paths, app protocols, remote IPs as text) live once in
//! `strings` and are referred to by id; `0` means "none" where a key column cannot be NULL.

/// `PRAGMA application_id` of a netvigil database ("NVGL").
pub const APPLICATION_ID: i32 = 0x4E56_474C;

/// The schema version this build writes.
pub const LATEST: u32 = 4;

/// Migration `n` is `MIGRATIONS[n - 1]`.
pub const MIGRATIONS: &[&str] = &[V1, V2, V3, V4];

/// Version 1: raw records, alerts, samples, processes, state.
const V1: &str = r#"
CREATE TABLE strings (
    id INTEGER PRIMARY KEY,
    s TEXT NOT NULL UNIQUE
);
CREATE TABLE processes (
    id INTEGER PRIMARY KEY,
    pid INTEGER NOT NULL,
    start_time INTEGER,
    name_id INTEGER NOT NULL,
    exe_id INTEGER,
    ppid INTEGER,
    cmdline TEXT NOT NULL,
    uid INTEGER,
    user TEXT,
    container TEXT,
    unit TEXT,
    package TEXT,
    -- bit 0 exe_deleted, bit 1 exe_in_temp, bit 2 package_checked
    flags INTEGER NOT NULL
);
CREATE INDEX processes_key ON processes (pid, start_time);
CREATE TABLE flows (
    id INTEGER PRIMARY KEY,
    device INTEGER NOT NULL,
    flow_id INTEGER NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    proto INTEGER NOT NULL,
    client_ip BLOB NOT NULL,
    client_port INTEGER NOT NULL,
    server_ip BLOB NOT NULL,
    server_port INTEGER NOT NULL,
    -- outer VLAN | inner VLAN << 16
    vlan INTEGER NOT NULL,
    -- client_by | state << 4 | ended_by << 8 | app_by << 12 | domain_source << 16 | inferred << 20
    bits INTEGER NOT NULL,
    app_proto_id INTEGER,
    domain_id INTEGER,
    app_id INTEGER,
    -- pid, exe and the other process facts through processes
    process_id INTEGER,
    pkts_ts INTEGER NOT NULL,
    bytes_ts INTEGER NOT NULL,
    payload_ts INTEGER NOT NULL,
    pkts_tc INTEGER NOT NULL,
    bytes_tc INTEGER NOT NULL,
    payload_tc INTEGER NOT NULL
);
CREATE INDEX flows_start ON flows (start);
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    device INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    flow_id INTEGER,
    app_id INTEGER,
    host_id INTEGER,
    client_ip BLOB,
    server_ip BLOB,
    json TEXT NOT NULL
);
CREATE INDEX events_ts ON events (ts);
CREATE TABLE alerts (
    id TEXT PRIMARY KEY,
    device INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    severity INTEGER NOT NULL,
    rule TEXT NOT NULL,
    app TEXT,
    remote TEXT,
    reason TEXT NOT NULL,
    json TEXT NOT NULL
);
CREATE INDEX alerts_ts ON alerts (ts);
CREATE TABLE samples (
    id INTEGER PRIMARY KEY,
    device INTEGER NOT NULL,
    flow_id INTEGER NOT NULL,
    flow_start INTEGER NOT NULL,
    dir INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    nonce BLOB NOT NULL,
    sealed BLOB NOT NULL
);
CREATE INDEX samples_flow ON samples (flow_start, flow_id);
CREATE TABLE state (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
"#;

/// Version 3: the fleet server's exactly-once record of agent batches (`Batch::source`), one
/// row per (device, sequence number) written in the batch's own transaction.
const V3: &str = r#"
CREATE TABLE batch_sources (
    device INTEGER NOT NULL,
    seq    INTEGER NOT NULL,
    PRIMARY KEY (device, seq)
) WITHOUT ROWID;
"#;

/// Version 4: the capture interface of live flows (`FlowRecord::iface`, interned; NULL for
/// capture files and older rows). Adding a nullable column rewrites nothing.
const V4: &str = r#"
ALTER TABLE flows ADD COLUMN iface_id INTEGER;
"#;

/// Version 2: the dashboard's indexes and the per-minute and per-hour rollups (filled from the
/// flows already stored).
///
/// Every index costs CPU per flow, and one keyed by something other than time has many hot leaf
/// pages, all rewritten at each commit; so there are few: time, app, domain (measured, see
/// docs/benchmarks.md: an index on the server address cost 2 µs per flow, more than the
/// domain's). A query by IP address scans the time range it is given (rollups answer
/// per-remote-address questions: their remote is the address when no domain named the flow).
/// Rollups are keyed time first, so their upserts land on the last pages and retention deletes
/// a key range.
const V2: &str = r#"
CREATE INDEX flows_app ON flows (app_id, start) WHERE app_id IS NOT NULL;
CREATE INDEX flows_domain ON flows (domain_id, start) WHERE domain_id IS NOT NULL;
CREATE INDEX events_host ON events (host_id, ts) WHERE host_id IS NOT NULL;
CREATE INDEX events_app ON events (app_id, ts) WHERE app_id IS NOT NULL;
CREATE TABLE rollup_minute (
    device INTEGER NOT NULL,
    bucket INTEGER NOT NULL,
    app_id INTEGER NOT NULL,
    remote_id INTEGER NOT NULL,
    flows INTEGER NOT NULL,
    bytes_ts INTEGER NOT NULL,
    bytes_tc INTEGER NOT NULL,
    packets INTEGER NOT NULL,
    PRIMARY KEY (bucket, device, app_id, remote_id)
) WITHOUT ROWID;
CREATE TABLE rollup_hour (
    device INTEGER NOT NULL,
    bucket INTEGER NOT NULL,
    app_id INTEGER NOT NULL,
    remote_id INTEGER NOT NULL,
    flows INTEGER NOT NULL,
    bytes_ts INTEGER NOT NULL,
    bytes_tc INTEGER NOT NULL,
    packets INTEGER NOT NULL,
    PRIMARY KEY (bucket, device, app_id, remote_id)
) WITHOUT ROWID;
"#;

/// The remote of a flow already stored (domain, else the server address as text) is computed
/// in Rust when flows are written; for the flows a version-1 database already holds, the
/// migration in `mod.rs` fills the rollups after V2's tables exist.
pub const MINUTE_NS: i64 = 60_000_000_000;
/// One hour in nanoseconds.
pub const HOUR_NS: i64 = 3_600_000_000_000;
