//! The embedded store: one SQLite file (`netvigil.db`) in the data directory, WAL mode,
//! `synchronous=NORMAL`, `auto_vacuum=INCREMENTAL`, numbered migrations ([`schema`]) applied
//! when it is opened.
//!
//! Opening never damages what is at the path: an existing file is first checked by its header
//! (the SQLite magic, WAL mode, netvigil's `application_id`) without opening it as a database;
//! anything else is [`StoreError::NotOurs`] and the file is left byte for byte as it was.

mod maint;
mod read;
pub mod schema;
#[doc(hidden)]
pub mod testdata;
mod write;

use std::fs;
use std::io::Read as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::crypto::SampleKey;
use crate::model::{
    AlertRow, Backend, Batch, DeviceId, Purge, Query, Removed, Retention, Rollup, RollupGrain, Sample,
    StoreError, StoredFlow, Written,
};

/// File name of the database in the data directory.
pub const DB_FILE: &str = "netvigil.db";

/// The data directory: `$XDG_DATA_HOME/netvigil`, else `~/.local/share/netvigil`; `None` when
/// neither `XDG_DATA_HOME` nor `HOME` is set (pass `--data-dir` then).
pub fn default_data_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        let p = PathBuf::from(x);
        if p.is_absolute() {
            return Some(p.join("netvigil"));
        }
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(PathBuf::from(home).join(".local/share/netvigil"))
}

/// A netvigil SQLite database, open for reading and writing. One handle per thread; several
/// processes may open the same file (WAL: readers do not block the writer).
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    dir: PathBuf,
    cache: write::Interner,
    key: Option<SampleKey>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating it and its directory, mode 0700, when missing) `dir/netvigil.db`.
    pub fn open_dir(dir: &Path) -> Result<Self, StoreError> {
        if !dir.exists() {
            let mut b = fs::DirBuilder::new();
            b.recursive(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt;
                b.mode(0o700);
            }
            b.create(dir).map_err(|err| StoreError::Io {
                path: dir.to_path_buf(),
                err,
            })?;
        }
        Self::open(&dir.join(DB_FILE))
    }

    /// Opens the database at `path`, creating it when there is no file (or an empty one), and
    /// applies pending migrations. Payload sample keys live next to it (`samples.key`).
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_impl(path, schema::LATEST)
    }

    /// For migration tests: creates a new database with only the migrations up to `version`.
    #[doc(hidden)]
    pub fn create_at_version(path: &Path, version: u32) -> Result<Self, StoreError> {
        if path.exists() {
            return Err(StoreError::Db {
                doing: "creating a test database",
                detail: format!("{} exists", path.display()),
            });
        }
        Self::open_impl(path, version.min(schema::LATEST))
    }

    fn open_impl(path: &Path, target: u32) -> Result<Self, StoreError> {
        let fresh = match fs::metadata(path) {
            Ok(m) if m.is_dir() => {
                return Err(StoreError::NotOurs {
                    path: path.to_path_buf(),
                    why: "it is a directory".into(),
                });
            }
            Ok(m) => m.len() == 0,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(err) => {
                return Err(StoreError::Io {
                    path: path.to_path_buf(),
                    err,
                });
            }
        };
        if !fresh {
            check_header(path)?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| map_open_err(path, e))?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let mut store = SqliteStore {
            conn,
            path: path.to_path_buf(),
            dir,
            cache: write::Interner::default(),
            key: None,
        };
        store.setup(fresh).map_err(|e| store.damaged(e))?;
        store.migrate(target)?;
        Ok(store)
    }

    fn setup(&mut self, fresh: bool) -> rusqlite::Result<()> {
        let c = &self.conn;
        c.busy_timeout(Duration::from_secs(10))?;
        c.set_prepared_statement_cache_capacity(64);
        if fresh {
            c.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
            c.pragma_update(None, "application_id", schema::APPLICATION_ID)?;
        }
        let mode: String = c.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(rusqlite::Error::InvalidQuery);
        }
        c.pragma_update(None, "synchronous", "NORMAL")?;
        c.pragma_update(None, "cache_size", -65_536)?;
        c.pragma_update(None, "temp_store", "MEMORY")?;
        // Checkpoints of a busy writer stay small; the file does not grow a huge WAL.
        c.pragma_update(None, "wal_autocheckpoint", 16_384)?;
        c.pragma_update(None, "journal_size_limit", 64 << 20)?;
        Ok(())
    }

    fn migrate(&mut self, target: u32) -> Result<(), StoreError> {
        let path = self.path.clone();
        self.conn
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, \
                 applied_at INTEGER NOT NULL)",
            )
            .map_err(|e| self.damaged(e))?;
        let found = self.schema_version().map_err(|e| self.damaged(e))?;
        if found > schema::LATEST {
            return Err(StoreError::TooNew {
                path,
                found,
                supported: schema::LATEST,
            });
        }
        for v in found + 1..=target {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| db_err("starting a migration", e, &path))?;
            // Another process may have migrated meanwhile.
            let now: u32 = tx
                .query_row("SELECT coalesce(max(version), 0) FROM schema_version", [], |r| {
                    r.get(0)
                })
                .map_err(|e| db_err("reading the schema version", e, &path))?;
            if now >= v {
                continue;
            }
            tx.execute_batch(schema::MIGRATIONS[v as usize - 1])
                .map_err(|e| db_err("applying a schema migration", e, &path))?;
            if v == 2 {
                write::fill_rollups_from_flows(&tx, &mut self.cache)
                    .map_err(|e| db_err("computing rollups of stored flows", e, &path))?;
            }
            tx.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (?1, ?2)",
                rusqlite::params![v, unix_now()],
            )
            .map_err(|e| db_err("recording a schema migration", e, &path))?;
            tx.commit()
                .map_err(|e| db_err("committing a schema migration", e, &path))?;
            self.cache.clear();
        }
        Ok(())
    }

    fn schema_version(&self) -> rusqlite::Result<u32> {
        self.conn
            .query_row("SELECT coalesce(max(version), 0) FROM schema_version", [], |r| {
                r.get(0)
            })
    }

    /// The schema version of the open database.
    pub fn version(&self) -> Result<u32, StoreError> {
        self.schema_version()
            .map_err(|e| db_err("reading the schema version", e, &self.path))
    }

    /// The database file.
    /// Sets SQLite's page cache (default 64 MiB, for bulk writes). A long-running monitor that
    /// commits small batches needs far less and keeps its memory small with a few MiB.
    pub fn set_cache_kib(&self, kib: u32) -> Result<(), StoreError> {
        self.conn
            .pragma_update(None, "cache_size", -i64::from(kib))
            .map_err(|e| StoreError::Db {
                doing: "setting the page cache size",
                detail: e.to_string(),
            })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size on disk: the database file plus its WAL (bytes).
    pub fn size_on_disk(&self) -> u64 {
        let wal = wal_path(&self.path);
        fs::metadata(&self.path).map_or(0, |m| m.len()) + fs::metadata(wal).map_or(0, |m| m.len())
    }

    /// `PRAGMA integrity_check`: `Ok(())` when it says "ok", else the problems it listed.
    pub fn integrity_check(&self) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare("PRAGMA integrity_check")
            .map_err(|e| db_err("checking integrity", e, &self.path))?;
        let rows: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .and_then(|it| it.collect())
            .map_err(|e| db_err("checking integrity", e, &self.path))?;
        if rows.len() == 1 && rows[0] == "ok" {
            Ok(())
        } else {
            Err(StoreError::NotOurs {
                path: self.path.clone(),
                why: format!("damaged: integrity check says {}", rows.join("; ")),
            })
        }
    }

    /// Counts of rows per table (flows, events, alerts, samples, minute rollups, hour rollups).
    pub fn counts(&self) -> Result<[u64; 6], StoreError> {
        let mut out = [0u64; 6];
        for (i, t) in [
            "flows",
            "events",
            "alerts",
            "samples",
            "rollup_minute",
            "rollup_hour",
        ]
        .iter()
        .enumerate()
        {
            out[i] = self
                .conn
                .query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get::<_, i64>(0))
                .map_err(|e| db_err("counting rows", e, &self.path))? as u64;
        }
        Ok(out)
    }

    /// Caps the database at `pages` pages (`PRAGMA max_page_count`) for this connection: past
    /// it writes fail as if the disk were full. For tests of the disk-full path.
    #[doc(hidden)]
    pub fn set_page_limit(&self, pages: u64) -> Result<u64, StoreError> {
        self.conn
            .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(|e| db_err("setting a page limit", e, &self.path))
    }

    fn key_for_write(&mut self) -> Result<&SampleKey, StoreError> {
        if self.key.is_none() {
            self.key = Some(SampleKey::load_or_create(&self.dir)?);
        }
        Ok(self.key.as_ref().expect("just set"))
    }

    fn key_for_read(&mut self) -> Result<&SampleKey, StoreError> {
        if self.key.is_none() {
            self.key = Some(SampleKey::load_existing(&self.dir)?);
        }
        Ok(self.key.as_ref().expect("just set"))
    }

    /// Maps an error met while opening to `NotOurs` when SQLite says the file is damaged.
    fn damaged(&self, e: rusqlite::Error) -> StoreError {
        if is_corrupt(&e) {
            StoreError::NotOurs {
                path: self.path.clone(),
                why: format!("damaged ({e})"),
            }
        } else {
            db_err("opening the database", e, &self.path)
        }
    }
}

impl Backend for SqliteStore {
    fn write_batch(&mut self, batch: &Batch) -> Result<Written, StoreError> {
        if !batch.samples.is_empty() {
            self.key_for_write()?;
        }
        let res = write::write_batch(&mut self.conn, &mut self.cache, self.key.as_ref(), batch);
        match res {
            Ok(w) => Ok(w),
            Err(e) => {
                // Ids handed out inside the rolled-back transaction are gone.
                self.cache.clear();
                Err(match e {
                    write::WriteError::Db(e) => db_err("writing a batch", e, &self.path),
                    write::WriteError::Store(e) => e,
                })
            }
        }
    }

    fn flows(&mut self, q: &Query) -> Result<Vec<StoredFlow>, StoreError> {
        read::flows(&self.conn, q).map_err(|e| db_err("reading flows", e, &self.path))
    }

    fn events(&mut self, q: &Query) -> Result<Vec<String>, StoreError> {
        read::events(&self.conn, q).map_err(|e| db_err("reading events", e, &self.path))
    }

    fn alerts(&mut self, q: &Query) -> Result<Vec<AlertRow>, StoreError> {
        read::alerts(&self.conn, q).map_err(|e| db_err("reading alerts", e, &self.path))
    }

    fn rollups(&mut self, grain: RollupGrain, q: &Query) -> Result<Vec<Rollup>, StoreError> {
        read::rollups(&self.conn, grain, q).map_err(|e| db_err("reading rollups", e, &self.path))
    }

    fn samples(&mut self, q: &Query) -> Result<Vec<Sample>, StoreError> {
        let sealed =
            read::sealed_samples(&self.conn, q).map_err(|e| db_err("reading samples", e, &self.path))?;
        if sealed.is_empty() {
            return Ok(Vec::new());
        }
        let key = self.key_for_read()?;
        sealed.into_iter().map(|s| s.open(key)).collect()
    }

    fn purge(&mut self, what: &Purge) -> Result<Removed, StoreError> {
        let before = self.size_on_disk();
        let mut removed = maint::purge(&mut self.conn, what).map_err(|e| db_err("purging", e, &self.path))?;
        self.cache.clear();
        maint::reclaim(&self.conn, true).map_err(|e| db_err("reclaiming space", e, &self.path))?;
        removed.bytes_before = before;
        removed.bytes_after = self.size_on_disk();
        Ok(removed)
    }

    fn retain(&mut self, now: i64, policy: &Retention) -> Result<Removed, StoreError> {
        let before = self.size_on_disk();
        let mut removed = maint::retain(&mut self.conn, now, policy, &self.path)
            .map_err(|e| db_err("applying retention", e, &self.path))?;
        removed.bytes_before = before;
        removed.bytes_after = self.size_on_disk();
        Ok(removed)
    }

    fn put_state(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO state (key, value) VALUES (?1, ?2) \
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            )
            .and_then(|mut s| s.execute(rusqlite::params![key, value]))
            .map(drop)
            .map_err(|e| db_err("saving state", e, &self.path))
    }

    fn source_seq(&mut self, device: DeviceId) -> Result<u64, StoreError> {
        self.conn
            .query_row(
                "SELECT coalesce(max(seq), 0) FROM batch_sources WHERE device = ?1",
                [device.0],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.max(0) as u64)
            .map_err(|e| db_err("reading batch sequence numbers", e, &self.path))
    }

    fn get_state(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        use rusqlite::OptionalExtension;
        self.conn
            .prepare_cached("SELECT value FROM state WHERE key = ?1")
            .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
            .map_err(|e| db_err("reading state", e, &self.path))
    }
}

/// Checks an existing file's header without opening it as a database.
fn check_header(path: &Path) -> Result<(), StoreError> {
    let not_ours = |why: String| StoreError::NotOurs {
        path: path.to_path_buf(),
        why,
    };
    let mut f = fs::File::open(path).map_err(|err| StoreError::Io {
        path: path.to_path_buf(),
        err,
    })?;
    let mut head = [0u8; 100];
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => {
                return Err(StoreError::Io {
                    path: path.to_path_buf(),
                    err,
                });
            }
        }
    }
    if n < 16 || &head[..16] != b"SQLite format 3\0" {
        return Err(not_ours("it is not an SQLite database".into()));
    }
    if n < 100 {
        return Err(not_ours(format!("damaged: its header is cut short ({n} bytes)")));
    }
    let app = i32::from_be_bytes([head[68], head[69], head[70], head[71]]);
    if app != schema::APPLICATION_ID {
        return Err(not_ours(if app == 0 {
            "it is an SQLite database of another program (no netvigil application id)".into()
        } else {
            format!("it is an SQLite database of another program (application id {app:#x})")
        }));
    }
    if head[18] != 2 || head[19] != 2 {
        return Err(not_ours(
            "damaged: netvigil's application id but not in WAL mode".into(),
        ));
    }
    Ok(())
}

fn map_open_err(path: &Path, e: rusqlite::Error) -> StoreError {
    if is_corrupt(&e) {
        StoreError::NotOurs {
            path: path.to_path_buf(),
            why: format!("damaged ({e})"),
        }
    } else {
        db_err("opening the database", e, path)
    }
}

pub(crate) fn is_corrupt(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

/// Maps an SQLite error: disk full gets its own variant (the writer counts and goes on).
pub(crate) fn db_err(doing: &'static str, e: rusqlite::Error, path: &Path) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DiskFull) => StoreError::DiskFull {
            path: path.to_path_buf(),
        },
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
            StoreError::NotOurs {
                path: path.to_path_buf(),
                why: format!("damaged while {doing} ({e})"),
            }
        }
        _ => StoreError::Db {
            doing,
            detail: e.to_string(),
        },
    }
}

pub(crate) fn wal_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push("-wal");
    PathBuf::from(s)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// An address as stored: 4 bytes for IPv4, 16 for IPv6.
pub(crate) fn ip_bytes(ip: &IpAddr, buf: &mut [u8; 16]) -> usize {
    match ip {
        IpAddr::V4(a) => {
            buf[..4].copy_from_slice(&a.octets());
            4
        }
        IpAddr::V6(a) => {
            buf.copy_from_slice(&a.octets());
            16
        }
    }
}

/// The address stored as 4 or 16 bytes (anything else reads as 0.0.0.0).
pub(crate) fn ip_from_bytes(b: &[u8]) -> IpAddr {
    if let Ok(a) = <[u8; 4]>::try_from(b) {
        IpAddr::from(a)
    } else if let Ok(a) = <[u8; 16]>::try_from(b) {
        IpAddr::from(a)
    } else {
        IpAddr::from([0u8, 0, 0, 0])
    }
}

/// Strings already looked up, by kind, so repeated names cost a hash lookup.
pub(crate) type IdMap<K> = foldhash::HashMap<K, i64>;
