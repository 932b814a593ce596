//! The fleet server's own tables, in SQLite (file `fleet.db` in the data directory) or in
//! PostgreSQL (several servers may share one database): enrolled agents (by key id, with a device
//! id, a name and a revoked mark) and one-time enrollment tokens (only their SHA-256 is kept).
//! Dashboard accounts live here too (`fleet_users`, `fleet_passkeys`, `fleet_sessions`: only
//! a session token's SHA-256 is kept), so servers sharing a PostgreSQL database share users and
//! sessions, and a restart logs nobody out (see [`SharedDb`]). Each call is one transaction; the SQL is shared (`?N` placeholders become `$N` for
//! PostgreSQL), so both backends run the same statements.
//!
//! The agents' records go to the store ([`open_store`], [`StorePool`]): `store::SqliteStore`
//! file `fleet-records.db` in the data directory, or the same PostgreSQL database through
//! `store::pg::PgStore`. Each batch is one store transaction that also records its (device,
//! sequence number) under a unique key (`store::Batch::source`), so a batch sent twice is stored
//! once, whichever server process gets it.

use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use super::identity::hex;

/// File name of the fleet database inside the server's data directory.
pub const DB_FILE: &str = "fleet.db";
/// File name of the agents' records (SQLite store) inside the server's data directory.
pub const RECORDS_FILE: &str = "fleet-records.db";
/// Store connections (writer threads) one PostgreSQL server process writes through (SQLite:
/// one).
pub const PG_WRITERS: usize = 2;

/// One enrolled agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agent {
    /// The device id records are stored under (never 0: that is "this machine").
    pub device: store::DeviceId,
    /// SHA-256 of the agent key's SubjectPublicKeyInfo, hex.
    pub key_id: String,
    pub name: String,
    /// Enrollment time, ns since the epoch.
    pub enrolled: i64,
    /// When the admin revoked it, if so.
    pub revoked: Option<i64>,
    /// Highest batch sequence number stored (0: none, or not looked up: see
    /// [`agents_with_last_batch`]).
    pub last_seq: u64,
}

/// Why a token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenRefusal {
    Unknown,
    Used,
    Expired,
    /// The key is already enrolled (the token is left unused).
    KeyEnrolled,
}

/// Where the fleet tables live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// SQLite file `fleet.db` in this directory.
    Dir(std::path::PathBuf),
    /// A PostgreSQL URL (postgres://USER@HOST:PORT/DATABASE).
    Postgres(String),
}

/// One SQL value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Val {
    I(i64),
    S(String),
    Null,
}

impl Val {
    pub(crate) fn i(&self) -> i64 {
        if let Val::I(v) = self { *v } else { 0 }
    }
    pub(crate) fn s(&self) -> String {
        if let Val::S(v) = self {
            v.clone()
        } else {
            String::new()
        }
    }
    pub(crate) fn opt_i(&self) -> Option<i64> {
        if let Val::I(v) = self { Some(*v) } else { None }
    }
}

impl rusqlite::ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, Value, ValueRef};
        Ok(match self {
            Val::I(v) => ToSqlOutput::Owned(Value::Integer(*v)),
            Val::S(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Val::Null => ToSqlOutput::Owned(Value::Null),
        })
    }
}

enum Conn {
    Sqlite(rusqlite::Connection),
    Pg(Box<postgres::Client>),
}

/// The fleet server's database.
pub struct FleetDb {
    conn: Conn,
    what: String,
}

impl std::fmt::Debug for FleetDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetDb").field("db", &self.what).finish()
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS fleet_agents (
  device BIGINT PRIMARY KEY, key_id TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
  enrolled BIGINT NOT NULL, revoked BIGINT);
CREATE TABLE IF NOT EXISTS fleet_tokens (
  hash TEXT PRIMARY KEY, created BIGINT NOT NULL, expires BIGINT NOT NULL, used BIGINT, device BIGINT);
CREATE TABLE IF NOT EXISTS fleet_users (
  name TEXT PRIMARY KEY, hash TEXT NOT NULL, created_ms BIGINT NOT NULL, handle TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS fleet_passkeys (
  id TEXT PRIMARY KEY, user_name TEXT NOT NULL, alg BIGINT NOT NULL, pubkey TEXT NOT NULL,
  sign_count BIGINT NOT NULL, created_ms BIGINT NOT NULL, last_used_ms BIGINT);
CREATE TABLE IF NOT EXISTS fleet_sessions (
  hash TEXT PRIMARY KEY, user_name TEXT NOT NULL, method TEXT NOT NULL,
  created_ms BIGINT NOT NULL, expires_ms BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS fleet_sessions_user ON fleet_sessions (user_name);";

fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.trim().as_bytes()))
}

fn redact(url: &str) -> String {
    // postgres://user:password@host -> postgres://user:***@host
    match (url.find("://"), url.rfind('@')) {
        (Some(a), Some(b)) if url[a + 3..b].contains(':') => {
            let colon = a + 3 + url[a + 3..b].find(':').unwrap_or(0);
            format!("{}:***{}", &url[..colon], &url[b..])
        }
        _ => url.to_owned(),
    }
}

impl FleetDb {
    /// Opens (creating the tables) the database at `target`.
    pub fn open(target: &Target) -> Result<FleetDb> {
        match target {
            Target::Dir(d) => FleetDb::open_dir(d),
            Target::Postgres(url) => FleetDb::open_postgres(url),
        }
    }

    /// Opens (creating) `dir/fleet.db`.
    pub fn open_dir(dir: &Path) -> Result<FleetDb> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(DB_FILE);
        let conn =
            rusqlite::Connection::open(&path).with_context(|| format!("opening {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .with_context(|| format!("{}: setting the busy timeout", path.display()))?;
        conn.execute_batch(&format!(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; {SCHEMA}"
        ))
        .with_context(|| format!("{}: not a netvigil fleet database? move it away", path.display()))?;
        Ok(FleetDb {
            conn: Conn::Sqlite(conn),
            what: path.display().to_string(),
        })
    }

    /// Connects to PostgreSQL and creates the fleet tables if missing.
    pub fn open_postgres(url: &str) -> Result<FleetDb> {
        let what = redact(url);
        let mut cfg: postgres::Config = url.parse().with_context(|| {
            format!(
                "--db {what}: expected postgres://USER@HOST:PORT/DATABASE (or host=... user=... dbname=...)"
            )
        })?;
        cfg.application_name("netvigil-fleet");
        if cfg.get_connect_timeout().is_none() {
            cfg.connect_timeout(std::time::Duration::from_secs(10));
        }
        let mut client = cfg.connect(postgres::NoTls).with_context(|| {
            format!("connecting to {what}: is the server running, and are the URL, user and database right?")
        })?;
        client
            .batch_execute(SCHEMA)
            .with_context(|| format!("{what}: creating the fleet tables"))?;
        Ok(FleetDb {
            conn: Conn::Pg(Box::new(client)),
            what,
        })
    }

    pub(crate) fn exec(&mut self, sql: &str, params: &[Val]) -> Result<u64> {
        let r = match &mut self.conn {
            Conn::Sqlite(c) => c
                .execute(sql, rusqlite::params_from_iter(params.iter()))
                .map(|n| n as u64)
                .map_err(anyhow::Error::from),
            Conn::Pg(c) => {
                let p = pg_params(params);
                let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = p.iter().map(|b| b.as_ref()).collect();
                c.execute(&sql.replace('?', "$"), &refs)
                    .map_err(anyhow::Error::from)
            }
        };
        r.with_context(|| format!("fleet database {}", self.what))
    }

    pub(crate) fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Vec<Val>>> {
        let r = match &mut self.conn {
            Conn::Sqlite(c) => (|| {
                let mut st = c.prepare(sql)?;
                let n = st.column_count();
                let rows = st.query_map(rusqlite::params_from_iter(params.iter()), |r| {
                    (0..n)
                        .map(|i| {
                            Ok(match r.get_ref(i)? {
                                rusqlite::types::ValueRef::Integer(v) => Val::I(v),
                                rusqlite::types::ValueRef::Text(t) => {
                                    Val::S(String::from_utf8_lossy(t).into_owned())
                                }
                                _ => Val::Null,
                            })
                        })
                        .collect::<rusqlite::Result<Vec<Val>>>()
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })()
            .map_err(anyhow::Error::from),
            Conn::Pg(c) => {
                let p = pg_params(params);
                let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = p.iter().map(|b| b.as_ref()).collect();
                c.query(&sql.replace('?', "$"), &refs)
                    .map_err(anyhow::Error::from)
                    .map(|rows| {
                        rows.iter()
                            .map(|row| {
                                (0..row.len())
                                    .map(|i| {
                                        use postgres::types::Type;
                                        let t = row.columns()[i].type_();
                                        if *t == Type::TEXT {
                                            row.try_get::<_, Option<String>>(i)
                                                .ok()
                                                .flatten()
                                                .map_or(Val::Null, Val::S)
                                        } else if *t == Type::INT4 {
                                            row.try_get::<_, Option<i32>>(i)
                                                .ok()
                                                .flatten()
                                                .map_or(Val::Null, |v| Val::I(v.into()))
                                        } else {
                                            row.try_get::<_, Option<i64>>(i)
                                                .ok()
                                                .flatten()
                                                .map_or(Val::Null, Val::I)
                                        }
                                    })
                                    .collect()
                            })
                            .collect()
                    })
            }
        };
        r.with_context(|| format!("fleet database {}", self.what))
    }

    pub(crate) fn begin(&mut self) -> Result<()> {
        let r = match &mut self.conn {
            Conn::Sqlite(c) => c.execute_batch("BEGIN IMMEDIATE").map_err(anyhow::Error::from),
            Conn::Pg(c) => c.batch_execute("BEGIN").map_err(anyhow::Error::from),
        };
        r.with_context(|| format!("fleet database {}: starting a transaction", self.what))
    }

    pub(crate) fn end(&mut self, commit: bool) -> Result<()> {
        let sql = if commit { "COMMIT" } else { "ROLLBACK" };
        let r = match &mut self.conn {
            Conn::Sqlite(c) => c.execute_batch(sql).map_err(anyhow::Error::from),
            Conn::Pg(c) => c.batch_execute(sql).map_err(anyhow::Error::from),
        };
        r.with_context(|| format!("fleet database {}: {sql}", self.what))
    }

    /// Creates a one-time token valid until `expires`; returns the token (shown once).
    pub fn create_token(&mut self, now: i64, expires: i64) -> Result<String> {
        let mut b = [0u8; 24];
        getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let token = hex(&b);
        self.exec(
            "INSERT INTO fleet_tokens (hash, created, expires) VALUES (?1, ?2, ?3)",
            &[Val::S(token_hash(&token)), Val::I(now), Val::I(expires)],
        )?;
        Ok(token)
    }

    /// Spends `token` to enroll `key_id` under `name`, in one transaction. The token is spent
    /// by one conditional UPDATE, so two servers sharing a database cannot both spend it.
    pub fn enroll(
        &mut self,
        token: &str,
        key_id: &str,
        name: &str,
        now: i64,
    ) -> Result<Result<Agent, TokenRefusal>> {
        self.begin()?;
        let r = self.enroll_in_tx(token, key_id, name, now);
        let ok = matches!(r, Ok(Ok(_)));
        match self.end(ok) {
            Ok(()) => r,
            Err(e) => {
                let _ = self.end(false);
                Err(e)
            }
        }
    }

    fn enroll_in_tx(
        &mut self,
        token: &str,
        key_id: &str,
        name: &str,
        now: i64,
    ) -> Result<Result<Agent, TokenRefusal>> {
        let h = Val::S(token_hash(token));
        let spent = self.exec(
            "UPDATE fleet_tokens SET used = ?1 WHERE hash = ?2 AND used IS NULL AND expires > ?1",
            &[Val::I(now), h.clone()],
        )?;
        if spent != 1 {
            let row = self.query("SELECT expires, used FROM fleet_tokens WHERE hash = ?1", &[h])?;
            return Ok(Err(match row.first().map(|r| (r[0].i(), r[1].opt_i())) {
                None => TokenRefusal::Unknown,
                Some((_, Some(_))) => TokenRefusal::Used,
                Some(_) => TokenRefusal::Expired,
            }));
        }
        if !self
            .query(
                "SELECT device FROM fleet_agents WHERE key_id = ?1",
                &[Val::S(key_id.to_owned())],
            )?
            .is_empty()
        {
            return Ok(Err(TokenRefusal::KeyEnrolled));
        }
        let device = self
            .query(
                "INSERT INTO fleet_agents (device, key_id, name, enrolled)
                 SELECT COALESCE(MAX(device), 0) + 1, ?1, ?2, ?3 FROM fleet_agents RETURNING device",
                &[Val::S(key_id.to_owned()), Val::S(name.to_owned()), Val::I(now)],
            )?
            .first()
            .map_or(0, |r| r[0].i());
        if !(1..=i64::from(u32::MAX)).contains(&device) {
            anyhow::bail!("fleet database {}: no device id left", self.what);
        }
        self.exec(
            "UPDATE fleet_tokens SET device = ?1 WHERE hash = ?2",
            &[Val::I(device), h],
        )?;
        Ok(Ok(Agent {
            device: store::DeviceId(device as u32),
            key_id: key_id.to_owned(),
            name: name.to_owned(),
            enrolled: now,
            revoked: None,
            last_seq: 0,
        }))
    }

    fn agents_where(&mut self, clause: &str, p: &[Val]) -> Result<Vec<Agent>> {
        let sql = format!(
            "SELECT a.device, a.key_id, a.name, a.enrolled, a.revoked
             FROM fleet_agents a {clause} ORDER BY a.device"
        );
        Ok(self
            .query(&sql, p)?
            .into_iter()
            .map(|r| Agent {
                device: store::DeviceId(r[0].i() as u32),
                key_id: r[1].s(),
                name: r[2].s(),
                enrolled: r[3].i(),
                revoked: r[4].opt_i(),
                last_seq: 0,
            })
            .collect())
    }

    /// The agent with this key id, if enrolled (revoked or not).
    pub fn agent_by_key(&mut self, key_id: &str) -> Result<Option<Agent>> {
        Ok(self
            .agents_where("WHERE a.key_id = ?1", &[Val::S(key_id.to_owned())])?
            .pop())
    }

    /// Every enrolled agent, by device id.
    pub fn agents(&mut self) -> Result<Vec<Agent>> {
        self.agents_where("", &[])
    }

    /// Renames device `device`; false when there is no such agent.
    pub fn rename(&mut self, device: u32, name: &str) -> Result<bool> {
        Ok(self.exec(
            "UPDATE fleet_agents SET name = ?1 WHERE device = ?2",
            &[Val::S(name.to_owned()), Val::I(i64::from(device))],
        )? == 1)
    }

    /// Revokes device `device` (its key is refused from now on; its records stay).
    pub fn revoke(&mut self, device: u32, now: i64) -> Result<bool> {
        Ok(self.exec(
            "UPDATE fleet_agents SET revoked = ?1 WHERE device = ?2 AND revoked IS NULL",
            &[Val::I(now), Val::I(i64::from(device))],
        )? == 1)
    }
}

/// One fleet database connection shared by the dashboard's threads (accounts, sessions),
/// opened on first use and opened again after an error. Its calls block: from async code, run
/// them on a blocking thread (the synchronous PostgreSQL client must not run inside a tokio
/// runtime).
#[derive(Clone)]
pub struct SharedDb {
    target: Target,
    conn: std::sync::Arc<std::sync::Mutex<Option<FleetDb>>>,
}

impl std::fmt::Debug for SharedDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedDb").field("target", &self.target).finish()
    }
}

impl SharedDb {
    /// A handle on `target` (nothing is opened yet).
    pub fn new(target: &Target) -> SharedDb {
        SharedDb {
            target: target.clone(),
            conn: std::sync::Arc::new(std::sync::Mutex::new(None)),
        }
    }

    /// Where the database is.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Runs `f` with the connection; an error drops it (the next call reconnects).
    pub fn with<T>(&self, f: impl FnOnce(&mut FleetDb) -> Result<T>) -> Result<T> {
        let mut g = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if g.is_none() {
            *g = Some(FleetDb::open(&self.target)?);
        }
        let db = g.as_mut().context("no fleet database connection")?;
        let r = f(db);
        if r.is_err() {
            *g = None;
        }
        r
    }

    /// Runs `f` in one transaction (committed when it returns `Ok`).
    pub fn tx<T>(&self, f: impl FnOnce(&mut FleetDb) -> Result<T>) -> Result<T> {
        self.with(|db| {
            db.begin()?;
            match f(db) {
                Ok(v) => {
                    db.end(true)?;
                    Ok(v)
                }
                Err(e) => {
                    let _ = db.end(false);
                    Err(e)
                }
            }
        })
    }
}

/// Every enrolled agent with the highest batch sequence number the store holds for it.
pub fn agents_with_last_batch(target: &Target) -> Result<Vec<Agent>> {
    let mut agents = FleetDb::open(target)?.agents()?;
    let mut st = open_store(target)?;
    for a in &mut agents {
        a.last_seq = st.source_seq(a.device)?;
    }
    Ok(agents)
}

/// Opens (creating, migrating) the store the server keeps agents' records in: SQLite
/// `DIR/fleet-records.db`, or the PostgreSQL database of `--db`. Every call is a new
/// connection; queries (`store::Backend::flows` with `Query.device` ...) may use their own.
pub fn open_store(target: &Target) -> Result<Box<dyn store::Backend>> {
    Ok(match target {
        Target::Dir(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            Box::new(store::SqliteStore::open(&d.join(RECORDS_FILE))?)
        }
        Target::Postgres(url) => Box::new(store::pg::PgStore::connect(url, store::DeviceId(0))?),
    })
}

/// Most records one grouped transaction takes (the store benchmark's best batch size).
pub const GROUP_RECORDS: usize = 20_000;

/// The server's way into the store. Connection threads hand their parsed batches to writer
/// threads (one for SQLite, [`PG_WRITERS`] for PostgreSQL), each with its own connection: a
/// writer takes every batch waiting (up to [`GROUP_RECORDS`] records), sorted by source so two
/// writers never wait on each other in opposite orders, and commits them in one transaction
/// (`store::Backend::write_batches`: one WAL flush for many agents' batches, each with its own
/// device and source). [`StorePool::write`] returns after that commit. Small queries
/// ([`StorePool::with`]) use one more connection. A connection whose write failed is dropped and
/// opened again when next needed.
pub struct StorePool {
    inner: std::sync::Arc<PoolInner>,
    query: std::sync::Mutex<Option<Box<dyn store::Backend>>>,
}

type Reply = std::sync::mpsc::SyncSender<std::result::Result<store::Written, String>>;

struct PoolInner {
    target: Target,
    queue: std::sync::Mutex<(std::collections::VecDeque<(store::Batch, Reply)>, bool)>,
    ready: std::sync::Condvar,
}

impl std::fmt::Debug for StorePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorePool")
            .field("target", &self.inner.target)
            .finish()
    }
}

impl StorePool {
    /// Opens the first connection now (so a wrong URL or a foreign file fails at start) and
    /// starts the writers.
    pub fn open(target: &Target) -> Result<StorePool> {
        let first = open_store(target)?;
        let writers = match target {
            Target::Dir(_) => 1,
            Target::Postgres(_) => PG_WRITERS,
        };
        let inner = std::sync::Arc::new(PoolInner {
            target: target.clone(),
            queue: std::sync::Mutex::new((std::collections::VecDeque::new(), false)),
            ready: std::sync::Condvar::new(),
        });
        let mut first = Some(first);
        for i in 0..writers {
            let inner = inner.clone();
            let conn = first.take();
            std::thread::Builder::new()
                .name(format!("fleet-store-{i}"))
                .spawn(move || writer(&inner, conn))
                .context("starting a store writer thread")?;
        }
        Ok(StorePool {
            inner,
            query: std::sync::Mutex::new(None),
        })
    }

    /// Writes `batch` (grouped with others waiting) and returns once it is committed.
    pub fn write(&self, batch: store::Batch) -> Result<store::Written> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        {
            let mut q = self.inner.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.0.push_back((batch, tx));
        }
        self.inner.ready.notify_one();
        match rx.recv() {
            Ok(r) => r.map_err(anyhow::Error::msg),
            Err(_) => anyhow::bail!("the store writer stopped"),
        }
    }

    /// Runs `f` with the query connection (opened when needed; dropped after an error).
    pub fn with<T>(
        &self,
        f: impl FnOnce(&mut dyn store::Backend) -> Result<T, store::StoreError>,
    ) -> Result<T> {
        let mut g = self.query.lock().unwrap_or_else(|e| e.into_inner());
        if g.is_none() {
            *g = Some(open_store(&self.inner.target)?);
        }
        let r = f(g.as_mut().map(|b| b.as_mut()).context("no store connection")?);
        if r.is_err() {
            *g = None;
        }
        Ok(r?)
    }
}

impl Drop for StorePool {
    fn drop(&mut self) {
        self.inner.queue.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
        self.inner.ready.notify_all();
    }
}

/// One writer thread: takes a group of waiting batches, commits it, answers each.
fn writer(inner: &PoolInner, mut conn: Option<Box<dyn store::Backend>>) {
    loop {
        let group: Vec<(store::Batch, Reply)> = {
            let mut q = inner.queue.lock().unwrap_or_else(|e| e.into_inner());
            while q.0.is_empty() {
                if q.1 {
                    return;
                }
                q = inner.ready.wait(q).unwrap_or_else(|e| e.into_inner());
            }
            let mut group = Vec::new();
            let mut records = 0;
            while let Some((b, _)) = q.0.front() {
                if !group.is_empty() && records + b.records.len() > GROUP_RECORDS {
                    break;
                }
                records += b.records.len();
                group.extend(q.0.pop_front());
            }
            if !q.0.is_empty() {
                inner.ready.notify_one();
            }
            group
        };
        let (mut batches, replies): (Vec<store::Batch>, Vec<Reply>) = group.into_iter().unzip();
        // The same order in every writer: two transactions never wait on each other's sources.
        let mut order: Vec<usize> = (0..batches.len()).collect();
        order.sort_by_key(|&i| batches[i].source);
        let mut sorted: Vec<store::Batch> = Vec::with_capacity(batches.len());
        let mut taken: Vec<Option<store::Batch>> = batches.drain(..).map(Some).collect();
        for &i in &order {
            sorted.extend(taken[i].take());
        }
        let result = (|| -> std::result::Result<Vec<store::Written>, String> {
            if conn.is_none() {
                conn = Some(open_store(&inner.target).map_err(|e| format!("{e:#}"))?);
            }
            let c = conn.as_mut().ok_or("no store connection")?;
            c.write_batches(&sorted).map_err(|e| e.to_string())
        })();
        match result {
            Ok(written) => {
                for (k, w) in written.into_iter().enumerate() {
                    let _ = replies[order[k]].send(Ok(w));
                }
            }
            Err(e) => {
                conn = None;
                for r in &replies {
                    let _ = r.send(Err(e.clone()));
                }
            }
        }
    }
}

fn pg_params(params: &[Val]) -> Vec<Box<dyn postgres::types::ToSql + Sync>> {
    params
        .iter()
        .map(|v| -> Box<dyn postgres::types::ToSql + Sync> {
            match v {
                Val::I(i) => Box::new(*i),
                Val::S(s) => Box::new(s.clone()),
                Val::Null => Box::new(None::<i64>),
            }
        })
        .collect()
}
