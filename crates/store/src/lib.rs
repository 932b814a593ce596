//! # store: where records rest
//!
//! Contract: SQLite by default (one embedded file, WAL mode, migrations, a batched writer
//! thread, retention), PostgreSQL behind the same trait ([`model::Backend`]) for the fleet
//! server. Depends on `engine` for the record types it stores; never on `os` or the binary.
#![forbid(unsafe_code)]

pub mod crypto;
pub mod export;
pub mod model;
pub mod pg;
pub mod sqlite;
pub mod writer;

pub use model::{
    AlertRow, Backend, Batch, DeviceId, Purge, Query, Removed, Retention, Rollup, RollupGrain, Sample,
    SampleDir, Severity, StoreError, StoredFlow, Written,
};
pub use sqlite::{SqliteStore, default_data_dir};
pub use writer::{SendError, StatsSnapshot, Writer, WriterConfig, WriterStats};
