//! The shape both backends share: what goes in ([`Batch`]), what questions come out
//! ([`Query`], [`Purge`]), and the one trait ([`Backend`]) that SQLite and PostgreSQL implement.
//!
//! Time is always nanoseconds since the Unix epoch (`i64`), as in `engine`.

use std::fmt;
use std::path::PathBuf;

use engine::Record;

/// Which machine a batch comes from. `0` is "this machine" (the embedded SQLite store of a
/// single host); the fleet server gives every enrolled agent its own id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(pub u32);

/// How bad an alert is. Ordered: `Info < Low < Medium < High`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
}

impl Severity {
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "info" => Severity::Info,
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            _ => return None,
        })
    }
}

/// An alert as it rests. The judgement code (engine) builds these; the store does not interpret
/// `json` beyond keeping it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertRow {
    /// Stable id: the same alert raised twice has the same id (the second write is ignored).
    pub id: String,
    pub ts: i64,
    pub severity: Severity,
    /// Rule name ("new_app", "new_remote", "inbound_accept", "red_flag", "volume_spike" ...).
    pub rule: String,
    pub app: Option<String>,
    /// Remote host: a domain when known, else the IP address as text.
    pub remote: Option<String>,
    /// One sentence a person can read.
    pub reason: String,
    /// The full alert record as JSON (one object), for export and the dashboard.
    pub json: String,
}

/// Which way a payload sample went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SampleDir {
    ToServer,
    ToClient,
}

/// The first bytes of one direction of a flow, kept only when the user opted in. Plaintext in
/// memory only: a backend encrypts it before it reaches disk.
#[derive(Clone, PartialEq, Eq)]
pub struct Sample {
    /// `FlowRecord::id` of the flow (unique per engine run; with `flow_start` it identifies the
    /// flow in the store).
    pub flow_id: u64,
    pub flow_start: i64,
    pub dir: SampleDir,
    /// Timestamp of the first packet of this direction.
    pub ts: i64,
    pub bytes: Vec<u8>,
}

impl Sample {
    /// The samples of one flow from what the engine kept for it (`Engine::take_samples`): one
    /// per direction that carried payload.
    pub fn from_engine(flow: &engine::FlowRecord, s: engine::FlowSamples) -> Vec<Sample> {
        let engine::FlowSamples { bytes, first_ts } = s;
        let [to_server, to_client] = bytes;
        [
            (SampleDir::ToServer, to_server, first_ts[0]),
            (SampleDir::ToClient, to_client, first_ts[1]),
        ]
        .into_iter()
        .filter(|(_, b, _)| !b.is_empty())
        .map(|(dir, bytes, ts)| Sample {
            flow_id: flow.id,
            flow_start: flow.start,
            dir,
            ts: ts.unwrap_or(flow.start),
            bytes,
        })
        .collect()
    }
}

impl fmt::Debug for Sample {
    // Never print payload bytes (they may be secrets).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sample")
            .field("flow_id", &self.flow_id)
            .field("flow_start", &self.flow_start)
            .field("dir", &self.dir)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// One unit of writing: committed in one transaction, all or nothing.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub device: DeviceId,
    /// Engine records in emission order: flows, connection events, DNS/TLS/QUIC/HTTP/STUN/DHCP.
    pub records: Vec<Record>,
    pub alerts: Vec<AlertRow>,
    pub samples: Vec<Sample>,
    /// Where the batch came from, for exactly-once storage: the fleet agent's device and the
    /// batch's sequence number. A backend records it in the batch's own transaction under a
    /// unique key; a source already recorded makes the write a no-op reported as
    /// [`Written::duplicate`]. The batched [`crate::Writer`] merges batches and ignores it: write
    /// sourced batches with [`Backend::write_batch`].
    pub source: Option<(DeviceId, u64)>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.alerts.is_empty() && self.samples.is_empty()
    }
    pub fn len(&self) -> usize {
        self.records.len() + self.alerts.len() + self.samples.len()
    }
}

/// A filter shared by `history`, `alerts`, `export` and `purge`. Every field narrows; all `None`
/// means everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    pub device: Option<DeviceId>,
    /// The program: process name, or exe file name (exact, case-insensitive).
    pub app: Option<String>,
    /// A domain (matches the domain and its subdomains) or an IP address (either end).
    pub host: Option<String>,
    /// Inclusive lower bound on a record's time (a flow's start).
    pub since: Option<i64>,
    /// Exclusive upper bound.
    pub until: Option<i64>,
    /// At most this many rows, newest first (`None`: all).
    pub limit: Option<usize>,
}

/// A flow as the store gives it back: flat, with interned strings resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredFlow {
    pub device: DeviceId,
    pub flow_id: u64,
    pub start: i64,
    pub end: i64,
    pub proto: u8,
    pub client: std::net::SocketAddr,
    pub server: std::net::SocketAddr,
    /// Application protocol label ("tls", "dns", "http" ...).
    pub app_proto: Option<String>,
    pub domain: Option<String>,
    /// The program that owned the flow (process name), when known.
    pub app: Option<String>,
    pub pid: Option<u32>,
    pub exe: Option<PathBuf>,
    pub packets_to_server: u64,
    pub packets_to_client: u64,
    pub bytes_to_server: u64,
    pub bytes_to_client: u64,
    /// The flow record as JSON (schema v1, one line), for export.
    pub json: String,
}

/// Per-minute or per-hour totals for one (app, remote) pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rollup {
    pub device: DeviceId,
    /// Start of the bucket (ns since the epoch, aligned to the minute or hour).
    pub bucket: i64,
    pub app: Option<String>,
    /// Domain when known, else the remote IP as text.
    pub remote: String,
    pub flows: u64,
    pub bytes_to_server: u64,
    pub bytes_to_client: u64,
    pub packets: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RollupGrain {
    Minute,
    Hour,
}

/// What to delete for good.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Purge {
    All,
    /// Everything (records, samples, alerts, rollups) older than this time.
    Before(i64),
    App(String),
    Host(String),
}

/// What a purge or a retention pass removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    pub flows: u64,
    pub events: u64,
    pub alerts: u64,
    pub samples: u64,
    pub rollups: u64,
    /// Size of the database before and after (bytes; SQLite: the file plus its WAL).
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// Rolling retention: raw records go first, then old rollups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Raw records (flows, events, samples) older than this are deleted (ns; `None`: keep).
    pub raw_max_age: Option<i64>,
    /// Minute rollups older than this are deleted.
    pub minute_rollup_max_age: Option<i64>,
    /// Hour rollups and alerts older than this are deleted.
    pub hour_rollup_max_age: Option<i64>,
    /// The store is kept under this many bytes (SQLite: file + WAL), oldest raw records first.
    pub max_bytes: Option<u64>,
}

impl Default for Retention {
    fn default() -> Self {
        const DAY: i64 = 86_400 * 1_000_000_000;
        Retention {
            raw_max_age: Some(7 * DAY),
            minute_rollup_max_age: Some(30 * DAY),
            hour_rollup_max_age: Some(365 * DAY),
            max_bytes: Some(1 << 30),
        }
    }
}

/// What a write did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub flows: u64,
    pub events: u64,
    pub alerts: u64,
    pub samples: u64,
    /// Alerts whose id was already stored.
    pub duplicate_alerts: u64,
    /// The batch's [`Batch::source`] was already stored: nothing was written.
    pub duplicate: bool,
}

/// Errors name the file or server and say what to do.
#[derive(Debug)]
pub enum StoreError {
    /// The file at the database path is not a netvigil database (or is damaged). It is never
    /// overwritten.
    NotOurs {
        path: PathBuf,
        why: String,
    },
    /// The database was written by a newer netvigil.
    TooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    /// The disk is full: what could not be written is counted by the writer.
    DiskFull {
        path: PathBuf,
    },
    /// Anything else from the database engine, with what we were doing.
    Db {
        doing: &'static str,
        detail: String,
    },
    Io {
        path: PathBuf,
        err: std::io::Error,
    },
    /// Payload sample key missing, unreadable, or a sample failed authentication (tampering).
    Crypto(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::NotOurs { path, why } => write!(
                f,
                "{} is not a netvigil database ({why}); it was left untouched: move it away or pass \
                 another --data-dir",
                path.display()
            ),
            StoreError::TooNew {
                path,
                found,
                supported,
            } => write!(
                f,
                "{} has schema version {found}, newer than this netvigil understands ({supported}); \
                 upgrade netvigil or pass another --data-dir",
                path.display()
            ),
            StoreError::DiskFull { path } => {
                write!(
                    f,
                    "the disk holding {} is full: free some space; capture goes on",
                    path.display()
                )
            }
            StoreError::Db { doing, detail } => write!(f, "database error while {doing}: {detail}"),
            StoreError::Io { path, err } => write!(f, "{}: {err}", path.display()),
            StoreError::Crypto(s) => write!(f, "payload samples: {s}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// A place records rest. Implemented by the SQLite store (one host) and the PostgreSQL store
/// (fleet server). Writers own their backend on one thread; queries may open their own handle.
pub trait Backend: Send {
    /// Writes one batch in one transaction (all or nothing). Alerts with an id already stored
    /// are skipped and counted. Rollups are updated in the same transaction.
    fn write_batch(&mut self, batch: &Batch) -> Result<Written, StoreError>;
    /// Writes several batches, each with its own device and source, one `Written` per batch in
    /// order. PostgreSQL commits them in one transaction (one WAL flush for all: the fleet
    /// server groups its agents' batches); the default writes them one by one.
    fn write_batches(&mut self, batches: &[Batch]) -> Result<Vec<Written>, StoreError> {
        batches.iter().map(|b| self.write_batch(b)).collect()
    }
    /// Flows matching `q`, newest first.
    fn flows(&mut self, q: &Query) -> Result<Vec<StoredFlow>, StoreError>;
    /// Non-flow records (dns, tls, quic, http, stun, dhcp, connection) matching `q` as JSON
    /// lines, newest first.
    fn events(&mut self, q: &Query) -> Result<Vec<String>, StoreError>;
    /// Alerts matching `q`, newest first.
    fn alerts(&mut self, q: &Query) -> Result<Vec<AlertRow>, StoreError>;
    fn rollups(&mut self, grain: RollupGrain, q: &Query) -> Result<Vec<Rollup>, StoreError>;
    /// Decrypted payload samples of the flows matching `q`.
    fn samples(&mut self, q: &Query) -> Result<Vec<Sample>, StoreError>;
    /// Deletes for good and reclaims the space.
    fn purge(&mut self, what: &Purge) -> Result<Removed, StoreError>;
    /// One rolling-retention pass at time `now`.
    fn retain(&mut self, now: i64, policy: &Retention) -> Result<Removed, StoreError>;
    /// Small named state that must survive restarts (anomaly baselines, "seen before" sets).
    fn put_state(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError>;
    fn get_state(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// The highest batch sequence number stored for `device` through [`Batch::source`]
    /// (0: none).
    fn source_seq(&mut self, device: DeviceId) -> Result<u64, StoreError>;
}
