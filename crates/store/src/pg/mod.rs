//! The PostgreSQL backend: the fleet server's store, behind the same [`Backend`] trait as the
//! embedded SQLite file.
//!
//! One [`PgStore`] is one connection (`postgres`, the synchronous client). Several server
//! processes may share one database: migrations run under an advisory lock, partitions are
//! created under another, and interned strings are inserted with `ON CONFLICT DO NOTHING`.
//!
//! Layout (see `docs/postgres.md`): schema `netvigil`; `flows` and `events` partitioned by day
//! on a `timestamptz` column (or TimescaleDB hypertables when that extension can be created);
//! `alerts`, `samples`, `rollups_minute`, `rollups_hour`, `state`, `strings` (interned app names,
//! executables, domains, protocol labels), `meta`, `schema_version`. Every data table has a
//! `device` column. Bulk writes use binary `COPY`; rollups are summed per batch in memory and
//! upserted.

mod partition;
mod query;
mod retain;
mod schema;
mod write;

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use postgres::config::Host;
use postgres::error::SqlState;
use postgres::{Client, Config, NoTls};

use crate::crypto::SampleKey;
use crate::model::{
    AlertRow, Backend, Batch, DeviceId, Purge, Query, Removed, Retention, Rollup, RollupGrain, Sample,
    StoreError, StoredFlow, Written,
};

pub use partition::Layout;
pub use schema::SCHEMA_VERSION;

/// Advisory lock keys (one namespace: the first 32 bits spell "nvgl").
const LOCK_MIGRATE: i64 = 0x6e76_676c_0000_0001;
const LOCK_DDL: i64 = 0x6e76_676c_0000_0002;
const LOCK_STRINGS: i64 = 0x6e76_676c_0000_0003;

/// Options for [`PgStore::connect_with`].
#[derive(Debug, Default)]
pub struct PgOptions {
    /// The key that seals payload samples ([`crate::crypto`], the same key file format as the
    /// SQLite store). Without it, a batch carrying samples is refused and [`Backend::samples`]
    /// fails: nothing is ever stored in clear.
    pub sample_key: Option<SampleKey>,
    /// Never use TimescaleDB even when the extension is available (plain day partitions).
    /// Only read when the schema is first created; the layout is then fixed in `meta`.
    pub no_timescale: bool,
    /// Seconds to wait for the server to answer a connection (default 10).
    pub connect_timeout: Option<Duration>,
}

/// A connection to a netvigil database on a PostgreSQL server.
pub struct PgStore {
    client: Client,
    /// "postgres@/tmp/x:5432/netvigil": names the server in errors (never the password).
    server: String,
    /// The device whose small named state [`Backend::put_state`] reads and writes.
    device: DeviceId,
    key: Option<SampleKey>,
    layout: Layout,
    /// (table, day) partitions known to exist.
    partitions: HashSet<(partition::Table, i64)>,
    /// Interned strings known to be in `netvigil.strings`, and the epoch they belong to.
    strings: foldhash::HashMap<String, i32>,
    strings_epoch: i64,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("server", &self.server)
            .field("device", &self.device)
            .field("layout", &self.layout)
            .field("partitions", &self.partitions.len())
            .field("strings", &self.strings.len())
            .finish()
    }
}

impl PgStore {
    /// Connects to `url` and applies pending migrations. `url` is a libpq-style URL
    /// (`postgres://user@host:5432/netvigil`, `postgres://user@%2Frun%2Fpostgresql/netvigil` or
    /// `postgres:///netvigil?host=/run/postgresql` for a unix socket) or key=value pairs
    /// (`host=/run/postgresql user=netvigil dbname=netvigil`). `device` names whose state
    /// [`Backend::put_state`] keeps; batches carry their own device.
    pub fn connect(url: &str, device: DeviceId) -> Result<PgStore, StoreError> {
        PgStore::connect_with(url, device, PgOptions::default())
    }

    /// [`PgStore::connect`] with options (the payload-sample key, TimescaleDB opt-out).
    pub fn connect_with(url: &str, device: DeviceId, opts: PgOptions) -> Result<PgStore, StoreError> {
        let mut cfg: Config = url.parse().map_err(|e| StoreError::Db {
            doing: "reading the PostgreSQL connection URL",
            detail: format!(
                "{}: {e}; expected postgres://USER@HOST:PORT/DATABASE (unix socket: \
                 postgres://USER@%2Frun%2Fpostgresql/DATABASE) or host=... user=... dbname=...",
                redact(url)
            ),
        })?;
        let server = describe(&cfg);
        if cfg.get_hosts().is_empty() {
            return Err(StoreError::Db {
                doing: "reading the PostgreSQL connection URL",
                detail: format!(
                    "{}: no host: name the server (postgres://USER@HOST:PORT/DATABASE) or its \
                     socket directory (host=/run/postgresql)",
                    redact(url)
                ),
            });
        }
        if cfg.get_user().is_none() {
            return Err(StoreError::Db {
                doing: "reading the PostgreSQL connection URL",
                detail: format!("{}: no user: write postgres://USER@...", redact(url)),
            });
        }
        cfg.application_name("netvigil");
        if cfg.get_connect_timeout().is_none() {
            cfg.connect_timeout(opts.connect_timeout.unwrap_or(Duration::from_secs(10)));
        }
        let mut client = cfg.connect(NoTls).map_err(|e| StoreError::Db {
            doing: "connecting to PostgreSQL",
            detail: format!(
                "{server}: {}; is the server running, and are the URL, user and database right?",
                error_text(&e)
            ),
        })?;
        let layout = schema::migrate(&mut client, &server, !opts.no_timescale)?;
        let mut store = PgStore {
            client,
            server,
            device,
            key: opts.sample_key,
            layout,
            partitions: HashSet::new(),
            strings: foldhash::HashMap::default(),
            strings_epoch: 0,
        };
        store.load_partitions()?;
        Ok(store)
    }

    /// The server this store talks to, as errors name it (no password).
    pub fn server(&self) -> &str {
        &self.server
    }

    /// How `flows` and `events` are split in time.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Sets the device whose state [`Backend::put_state`] and [`Backend::get_state`] use.
    pub fn set_device(&mut self, device: DeviceId) {
        self.device = device;
    }

    /// Names of the day partitions of `flows` (`flows_p20240131` ...), oldest first. Empty
    /// with TimescaleDB (its chunks are its own business).
    pub fn flow_partitions(&mut self) -> Result<Vec<String>, StoreError> {
        let mut v: Vec<(i64, String)> = partition::list(&mut self.client, partition::Table::Flows)
            .map_err(|e| self.db("listing partitions", &e))?;
        v.sort();
        Ok(v.into_iter().map(|(_, n)| n).collect())
    }

    /// Bytes used by the netvigil tables and their indexes.
    pub fn size_bytes(&mut self) -> Result<u64, StoreError> {
        let row = self
            .client
            .query_one(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = 'netvigil' AND c.relkind IN ('r', 'm')",
                &[],
            )
            .map_err(|e| self.db("measuring the database", &e))?;
        Ok(row.get::<_, i64>(0).max(0) as u64)
    }

    /// The raw client, for tests and tools that need SQL the trait does not offer.
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    fn load_partitions(&mut self) -> Result<(), StoreError> {
        self.partitions.clear();
        if self.layout == Layout::Hypertables {
            return Ok(());
        }
        for t in partition::Table::ALL {
            let list = partition::list(&mut self.client, t).map_err(|e| self.db("listing partitions", &e))?;
            for (day, _) in list {
                self.partitions.insert((t, day));
            }
        }
        Ok(())
    }

    /// A database error with what we were doing and which server.
    fn db(&self, doing: &'static str, e: &postgres::Error) -> StoreError {
        pg_error(&self.server, doing, e)
    }
}

/// Maps a driver error: a full disk becomes [`StoreError::DiskFull`], the rest
/// [`StoreError::Db`] naming the server.
pub(crate) fn pg_error(server: &str, doing: &'static str, e: &postgres::Error) -> StoreError {
    if e.code() == Some(&SqlState::DISK_FULL) {
        return StoreError::DiskFull {
            path: PathBuf::from(format!("the PostgreSQL server {server}")),
        };
    }
    StoreError::Db {
        doing,
        detail: format!("{server}: {}", error_text(e)),
    }
}

/// A `map_err` adapter: [`pg_error`] for `server` while `doing`.
pub(crate) fn on<'a>(
    server: &'a str,
    doing: &'static str,
) -> impl FnOnce(postgres::Error) -> StoreError + 'a {
    move |e| pg_error(server, doing, &e)
}

/// The server's message with its SQLSTATE and detail, or the client's error chain.
fn error_text(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{} (SQLSTATE {})", db.message(), db.code().code());
        if let Some(d) = db.detail() {
            s.push_str(": ");
            s.push_str(d);
        }
        if let Some(h) = db.hint() {
            s.push_str("; hint: ");
            s.push_str(h);
        }
        return s;
    }
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(x) = src {
        let t = x.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = x.source();
    }
    s
}

/// "user@host:port/db" from a parsed configuration (never the password).
fn describe(cfg: &Config) -> String {
    let user = cfg.get_user().unwrap_or("?");
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    let hosts: Vec<String> = cfg
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => format!("{name}:{port}"),
            Host::Unix(dir) => format!("{}/.s.PGSQL.{port}", dir.display()),
        })
        .collect();
    let host = if hosts.is_empty() {
        "(no host)".to_string()
    } else {
        hosts.join(",")
    };
    format!("postgres://{user}@{host}/{}", cfg.get_dbname().unwrap_or(user))
}

/// The URL with any password replaced by `***`.
fn redact(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest = &out[scheme_end + 3..];
        let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..auth_end].rfind('@')
            && let Some(colon) = rest[..at].find(':')
        {
            let (a, b) = (scheme_end + 3 + colon + 1, scheme_end + 3 + at);
            out.replace_range(a..b, "***");
        }
    }
    // key=value form and ?password= in URLs.
    for key in ["password=", "password ="] {
        let mut from = 0;
        while let Some(i) = out[from..].find(key) {
            let start = from + i + key.len();
            let end = out[start..]
                .find([' ', '&'])
                .map(|j| start + j)
                .unwrap_or(out.len());
            out.replace_range(start..end, "***");
            from = start + 3;
        }
    }
    out
}

impl Backend for PgStore {
    fn write_batch(&mut self, batch: &Batch) -> Result<Written, StoreError> {
        write::write_batch(self, batch)
    }

    fn write_batches(&mut self, batches: &[Batch]) -> Result<Vec<Written>, StoreError> {
        write::write_batches(self, batches)
    }

    fn flows(&mut self, q: &Query) -> Result<Vec<StoredFlow>, StoreError> {
        query::flows(self, q)
    }

    fn events(&mut self, q: &Query) -> Result<Vec<String>, StoreError> {
        query::events(self, q)
    }

    fn alerts(&mut self, q: &Query) -> Result<Vec<AlertRow>, StoreError> {
        query::alerts(self, q)
    }

    fn rollups(&mut self, grain: RollupGrain, q: &Query) -> Result<Vec<Rollup>, StoreError> {
        query::rollups(self, grain, q)
    }

    fn samples(&mut self, q: &Query) -> Result<Vec<Sample>, StoreError> {
        query::samples(self, q)
    }

    fn purge(&mut self, what: &Purge) -> Result<Removed, StoreError> {
        retain::purge(self, what)
    }

    fn retain(&mut self, now: i64, policy: &Retention) -> Result<Removed, StoreError> {
        retain::retain(self, now, policy)
    }

    fn put_state(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let device = i64::from(self.device.0);
        self.client
            .execute(
                "INSERT INTO netvigil.state (device, key, value, updated) VALUES ($1, $2, $3, now()) \
                 ON CONFLICT (device, key) DO UPDATE SET value = EXCLUDED.value, updated = now()",
                &[&device, &key, &value],
            )
            .map_err(|e| self.db("saving state", &e))?;
        Ok(())
    }

    fn source_seq(&mut self, device: DeviceId) -> Result<u64, StoreError> {
        let d = i64::from(device.0);
        let row = self
            .client
            .query_one(
                "SELECT coalesce(max(seq), 0) FROM netvigil.batch_sources WHERE device = $1",
                &[&d],
            )
            .map_err(|e| self.db("reading batch sequence numbers", &e))?;
        Ok(row.get::<_, i64>(0).max(0) as u64)
    }

    fn get_state(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let device = i64::from(self.device.0);
        let row = self
            .client
            .query_opt(
                "SELECT value FROM netvigil.state WHERE device = $1 AND key = $2",
                &[&device, &key],
            )
            .map_err(|e| self.db("reading state", &e))?;
        Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact("host=h user=u password=secret dbname=d"),
            "host=h user=u password=*** dbname=d"
        );
        assert_eq!(
            redact("postgres://u@h/db?password=x&sslmode=disable"),
            "postgres://u@h/db?password=***&sslmode=disable"
        );
    }

    #[test]
    fn describes_servers() {
        let c: Config = "postgres://nv@%2Ftmp%2Fpg:5433/fleet".parse().unwrap();
        assert_eq!(describe(&c), "postgres://nv@/tmp/pg/.s.PGSQL.5433/fleet");
        let c: Config = "host=db.example user=nv password=pw".parse().unwrap();
        assert_eq!(describe(&c), "postgres://nv@db.example:5432/nv");
    }
}
