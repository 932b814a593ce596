//! The fleet agent: enrollment (`netvigil agent enroll`) and the [`Uplink`] that takes record
//! JSON lines from the pipeline, seals them into numbered batches in a bounded spool directory
//! (oldest dropped first and counted), and sends them to the server over TLS 1.3, deleting a
//! batch only once the server acknowledged it. Reconnects back off (1 s, x1.6, jitter, 120 s).

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::frame::{self, AckStatus, Frame};
use super::identity::{self, Identity};

/// Where enrollment leaves the agent's key, certificate and server (inside the data directory).
pub fn agent_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("fleet-agent")
}

/// What an enrolled agent knows about its server (file `server` in [`agent_dir`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enrollment {
    /// HOST:PORT as given.
    pub server: String,
    /// Pinned SHA-256 fingerprint of the server certificate (hex).
    pub fingerprint: String,
    pub device: u32,
}

impl Enrollment {
    /// Reads the enrollment saved in `dir` (see [`agent_dir`]).
    pub fn load(dir: &Path) -> Result<Enrollment> {
        let p = dir.join("server");
        let text = std::fs::read_to_string(&p).with_context(|| {
            format!(
                "{}: this agent is not enrolled: run netvigil agent enroll first",
                p.display()
            )
        })?;
        let mut l = text.lines();
        let (Some(server), Some(fp), Some(dev)) = (l.next(), l.next(), l.next()) else {
            bail!("{} is damaged: delete it and enroll again", p.display());
        };
        Ok(Enrollment {
            server: server.to_owned(),
            fingerprint: identity::parse_fingerprint(fp)?,
            device: dev
                .parse()
                .with_context(|| format!("{} is damaged: delete it and enroll again", p.display()))?,
        })
    }
}

fn resolve(server: &str) -> Result<SocketAddr> {
    server
        .to_socket_addrs()
        .with_context(|| format!("--server {server}: expected HOST:PORT"))?
        .next()
        .with_context(|| format!("--server {server}: the name resolves to no address"))
}

/// One TLS connection to the server (pinned fingerprint, agent certificate presented).
pub type Conn = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Connects and completes the TLS 1.3 handshake.
pub fn connect(addr: SocketAddr, id: &Identity, fingerprint: &str, timeout: Duration) -> Result<Conn> {
    let tcp = TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("connecting to {addr}"))?;
    tcp.set_read_timeout(Some(timeout))?;
    tcp.set_write_timeout(Some(timeout))?;
    let _ = tcp.set_nodelay(true);
    let name = rustls::pki_types::ServerName::try_from("netvigil-server").context("server name")?;
    let conn = rustls::ClientConnection::new(identity::client_config(id, fingerprint)?, name)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .with_context(|| format!("TLS handshake with {addr} (is the fingerprint right?)"))?;
    }
    Ok(tls)
}

/// Enrolls this machine: makes (or reuses) the agent key in `agent_dir(data_dir)`, spends the
/// token over a connection that pins the server's fingerprint, and saves the server's address.
pub fn enroll(
    data_dir: &Path,
    server: &str,
    token: &str,
    fingerprint: &str,
    name: &str,
) -> Result<Enrollment> {
    let fingerprint = identity::parse_fingerprint(fingerprint)?;
    let dir = agent_dir(data_dir);
    let id = Identity::load_or_create(&dir, "netvigil-agent")?;
    let mut tls = connect(resolve(server)?, &id, &fingerprint, Duration::from_secs(15))?;
    frame::write_frame(
        &mut tls,
        &Frame::Enroll {
            token: token.trim().to_owned(),
            name: name.to_owned(),
        },
    )?;
    match frame::read_frame(&mut tls).context("reading the server's answer")? {
        Frame::Enrolled { device } => {
            let e = Enrollment {
                server: server.to_owned(),
                fingerprint,
                device,
            };
            std::fs::write(
                dir.join("server"),
                format!("{}\n{}\n{}\n", e.server, e.fingerprint, e.device),
            )
            .with_context(|| format!("writing {}", dir.join("server").display()))?;
            Ok(e)
        }
        Frame::Error { message, .. } => bail!("the server refused enrollment: {message}"),
        other => bail!("unexpected answer from the server: {other:?}"),
    }
}

/// Reconnect delays: 1 s, then x1.6 each failure up to 120 s, each with +-20% jitter.
#[derive(Clone, Debug)]
pub struct Backoff {
    pub initial: Duration,
    pub factor: f64,
    pub max: Duration,
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Duration::from_secs(1), 1.6, Duration::from_secs(120))
    }
}

impl Backoff {
    pub fn new(initial: Duration, factor: f64, max: Duration) -> Backoff {
        Backoff {
            initial,
            factor,
            max,
            next: initial,
        }
    }
    /// The delay before the next attempt; `r` in [0, 1) picks the jitter.
    pub fn delay(&mut self, r: f64) -> Duration {
        let base = self.next;
        self.next = self.next.mul_f64(self.factor).min(self.max);
        base.mul_f64(0.8 + 0.4 * r.clamp(0.0, 1.0)).min(self.max)
    }
    /// After a success: start again from `initial`.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

fn random01() -> f64 {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// How the uplink runs.
#[derive(Clone, Debug)]
pub struct UplinkConfig {
    /// The data directory the agent was enrolled in (key and server are read from it).
    pub data_dir: PathBuf,
    /// Where batches wait for the server (default: `data_dir/fleet-spool`).
    pub spool_dir: PathBuf,
    /// The spool is kept under this many bytes, oldest batches dropped first (counted).
    pub max_spool_bytes: u64,
    /// A batch is sealed at this many records ...
    pub batch_records: usize,
    /// ... or when its first record is this old.
    pub batch_age: Duration,
    /// Records waiting for the spool thread; past it `push` drops (counted).
    pub queue: usize,
    pub backoff: Backoff,
    /// Connect/read timeout of one attempt.
    pub timeout: Duration,
}

impl UplinkConfig {
    /// Defaults: 256 MiB spool, batches of 1,000 records or 1 s.
    pub fn new(data_dir: &Path) -> UplinkConfig {
        UplinkConfig {
            data_dir: data_dir.to_owned(),
            spool_dir: data_dir.join("fleet-spool"),
            max_spool_bytes: 256 << 20,
            batch_records: 1000,
            batch_age: Duration::from_secs(1),
            queue: 65_536,
            backoff: Backoff::default(),
            timeout: Duration::from_secs(30),
        }
    }
}

/// Counters of an uplink (all since it started, apart from what is spooled now).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UplinkStats {
    pub spooled_batches: u64,
    pub spooled_bytes: u64,
    /// Records in batches dropped from the spool because it was full.
    pub dropped_records: u64,
    /// Records `push` dropped because the queue to the spool thread was full.
    pub dropped_queue_full: u64,
    pub delivered_batches: u64,
    pub delivered_records: u64,
    /// Batches the server said it already had.
    pub duplicates: u64,
    pub connected: bool,
    pub last_error: Option<String>,
}

struct Spooled {
    seq: u64,
    path: PathBuf,
    bytes: u64,
    records: u64,
}

struct State {
    dir: PathBuf,
    files: VecDeque<Spooled>,
    next_seq: u64,
    max_bytes: u64,
    stop: bool,
    stats: UplinkStats,
}

impl State {
    fn open(dir: &Path, max_bytes: u64) -> Result<State> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating the spool {}", dir.display()))?;
        let mut files = Vec::new();
        for e in std::fs::read_dir(dir).with_context(|| format!("reading the spool {}", dir.display()))? {
            let e = e?;
            let name = e.file_name();
            let Some(seq) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".batch"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let body = std::fs::read_to_string(e.path()).unwrap_or_default();
            files.push(Spooled {
                seq,
                path: e.path(),
                bytes: body.len() as u64,
                records: body.lines().count() as u64,
            });
        }
        files.sort_by_key(|f| f.seq);
        let saved = std::fs::read_to_string(dir.join("next_seq"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(1);
        let next_seq = saved.max(files.last().map_or(1, |f| f.seq + 1));
        let mut s = State {
            dir: dir.to_owned(),
            files: files.into(),
            next_seq,
            max_bytes,
            stop: false,
            stats: UplinkStats::default(),
        };
        s.refresh();
        Ok(s)
    }

    fn refresh(&mut self) {
        self.stats.spooled_batches = self.files.len() as u64;
        self.stats.spooled_bytes = self.files.iter().map(|f| f.bytes).sum();
    }

    /// The server already has batches up to `last_seq` but our counter is behind: this agent lost
    /// its spool state (the directory was deleted). Every batch spooled now was made after that
    /// loss, so none was sent: renumber them after `last_seq` (oldest first) so the server does
    /// not take them for duplicates, and continue from there.
    fn catch_up(&mut self, last_seq: u64) -> Result<bool> {
        if self.next_seq > last_seq {
            return Ok(false);
        }
        let mut seq = last_seq + 1;
        for f in &mut self.files {
            let path = self.dir.join(format!("{seq:020}.batch"));
            std::fs::rename(&f.path, &path).with_context(|| format!("renumbering {}", f.path.display()))?;
            f.path = path;
            f.seq = seq;
            seq += 1;
        }
        self.save_next_seq(seq)?;
        self.next_seq = seq;
        Ok(true)
    }

    fn save_next_seq(&self, next: u64) -> Result<()> {
        let tmp = self.dir.join("next_seq.tmp");
        std::fs::write(&tmp, next.to_string())?;
        std::fs::rename(&tmp, self.dir.join("next_seq"))?;
        Ok(())
    }

    /// Writes a sealed batch (sequence number saved first, file renamed into place), then
    /// drops the oldest batches beyond the bound.
    fn seal(&mut self, body: &str) -> Result<()> {
        let seq = self.next_seq;
        self.save_next_seq(seq + 1)?;
        self.next_seq = seq + 1;
        let path = self.dir.join(format!("{seq:020}.batch"));
        let tmp = self.dir.join(format!("{seq:020}.tmp"));
        {
            use std::io::Write as _;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(body.as_bytes())?;
            f.sync_data()?;
        }
        std::fs::rename(&tmp, &path)?;
        self.files.push_back(Spooled {
            seq,
            path,
            bytes: body.len() as u64,
            records: body.lines().count() as u64,
        });
        let mut total: u64 = self.files.iter().map(|f| f.bytes).sum();
        while total > self.max_bytes {
            let Some(old) = self.files.pop_front() else { break };
            let _ = std::fs::remove_file(&old.path);
            total -= old.bytes;
            self.stats.dropped_records += old.records;
        }
        self.refresh();
        Ok(())
    }
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    dropped_queue_full: AtomicU64,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The agent's record stream to the server. Create one with [`Uplink::start`], call
/// [`Uplink::push`] with each record's JSON line, and [`Uplink::close`] at shutdown.
pub struct Uplink {
    tx: Option<SyncSender<String>>,
    shared: Arc<Shared>,
    spooler: Option<JoinHandle<()>>,
    sender: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Uplink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uplink").field("stats", &self.stats()).finish()
    }
}

impl Uplink {
    /// Reads the enrollment and key from `cfg.data_dir`, opens the spool (batches left by a
    /// previous run are sent first), and starts the spool and sender threads.
    pub fn start(cfg: UplinkConfig) -> Result<Uplink> {
        let dir = agent_dir(&cfg.data_dir);
        let enrollment = Enrollment::load(&dir)?;
        let id = Identity::load_or_create(&dir, "netvigil-agent")?;
        let state = State::open(&cfg.spool_dir, cfg.max_spool_bytes)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            wake: Condvar::new(),
            dropped_queue_full: AtomicU64::new(0),
        });
        let (tx, rx) = std::sync::mpsc::sync_channel(cfg.queue.max(1));
        let (s1, s2) = (shared.clone(), shared.clone());
        let c2 = cfg.clone();
        let spooler = std::thread::Builder::new()
            .name("fleet-spool".into())
            .spawn(move || spool_loop(rx, &s1, &cfg))?;
        let sender = std::thread::Builder::new()
            .name("fleet-send".into())
            .spawn(move || send_loop(&s2, &c2, &enrollment, &id))?;
        Ok(Uplink {
            tx: Some(tx),
            shared,
            spooler: Some(spooler),
            sender: Some(sender),
        })
    }

    /// Queues one record (one JSON object, no newline). Never blocks: when the queue is full the
    /// record is dropped and counted.
    pub fn push(&self, json_line: String) {
        if let Some(tx) = &self.tx
            && let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = tx.try_send(json_line)
        {
            self.shared.dropped_queue_full.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Current counters.
    pub fn stats(&self) -> UplinkStats {
        let mut s = self.shared.lock().stats.clone();
        s.dropped_queue_full = self.shared.dropped_queue_full.load(Ordering::Relaxed);
        s
    }

    /// Seals what is queued into the spool, tries to deliver for at most `grace`, then stops.
    /// What is not delivered stays in the spool for the next start.
    pub fn close(mut self, grace: Duration) -> UplinkStats {
        drop(self.tx.take());
        if let Some(h) = self.spooler.take() {
            let _ = h.join();
        }
        let end = Instant::now() + grace;
        {
            let mut st = self.shared.lock();
            while !st.files.is_empty() && Instant::now() < end {
                st = self
                    .shared
                    .wake
                    .wait_timeout(st, Duration::from_millis(50))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            st.stop = true;
        }
        self.shared.wake.notify_all();
        if let Some(h) = self.sender.take() {
            let _ = h.join();
        }
        self.stats()
    }
}

impl Drop for Uplink {
    fn drop(&mut self) {
        drop(self.tx.take());
        self.shared.lock().stop = true;
        self.shared.wake.notify_all();
    }
}

fn spool_loop(rx: Receiver<String>, sh: &Shared, cfg: &UplinkConfig) {
    let mut body = String::new();
    let mut count = 0usize;
    let mut first: Option<Instant> = None;
    let seal = |body: &mut String, count: &mut usize| {
        if *count == 0 {
            return;
        }
        let r = sh.lock().seal(body);
        if let Err(e) = r {
            let mut st = sh.lock();
            st.stats.dropped_records += *count as u64;
            st.stats.last_error = Some(format!("spool: {e:#}"));
        }
        sh.wake.notify_all();
        body.clear();
        *count = 0;
    };
    loop {
        let wait = first.map_or(Duration::from_secs(3600), |t| {
            cfg.batch_age.saturating_sub(t.elapsed())
        });
        match rx.recv_timeout(wait) {
            Ok(line) => {
                let line = line.trim_end_matches(['\n', '\r']);
                if line.is_empty() || line.contains('\n') {
                    continue;
                }
                body.push_str(line);
                body.push('\n');
                count += 1;
                first.get_or_insert_with(Instant::now);
                if count >= cfg.batch_records {
                    seal(&mut body, &mut count);
                    first = None;
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                seal(&mut body, &mut count);
                first = None;
            }
            Err(RecvTimeoutError::Disconnected) => {
                seal(&mut body, &mut count);
                return;
            }
        }
    }
}

/// Waits `d` or until stopped; true when stopped.
fn pause(sh: &Shared, d: Duration) -> bool {
    let end = Instant::now() + d;
    let mut st = sh.lock();
    while !st.stop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        st = sh
            .wake
            .wait_timeout(st, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    true
}

fn send_loop(sh: &Shared, cfg: &UplinkConfig, e: &Enrollment, id: &Identity) {
    let mut backoff = cfg.backoff.clone();
    let mut conn: Option<Conn> = None;
    loop {
        // Next batch to send (or wait for one).
        let next = {
            let mut st = sh.lock();
            loop {
                if st.stop {
                    return;
                }
                if let Some(f) = st.files.front() {
                    break (f.seq, f.path.clone(), f.records);
                }
                st = sh
                    .wake
                    .wait_timeout(st, Duration::from_millis(500))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        };
        let (seq, path, records) = next;
        let result = (|| -> Result<Option<AckStatus>> {
            if conn.is_none() {
                let mut c = connect(resolve(&e.server)?, id, &e.fingerprint, cfg.timeout)?;
                frame::write_frame(&mut c, &Frame::Hello)?;
                match frame::read_frame(&mut c)? {
                    Frame::Welcome { last_seq, .. } => {
                        if sh.lock().catch_up(last_seq)? {
                            // Batches were renumbered: pick the front one again.
                            conn = Some(c);
                            return Ok(None);
                        }
                    }
                    Frame::Error { message, .. } => bail!("the server refused this agent: {message}"),
                    other => bail!("unexpected answer from the server: {other:?}"),
                }
                conn = Some(c);
            }
            let Some(c) = conn.as_mut() else {
                bail!("not connected")
            };
            let body =
                std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            frame::write_frame(c, &Frame::Batch { seq, records: body })?;
            match frame::read_frame(c)? {
                Frame::Ack { seq: s, status } if s == seq => Ok(Some(status)),
                Frame::Error { message, .. } => bail!("the server refused batch {seq}: {message}"),
                other => bail!("unexpected answer from the server: {other:?}"),
            }
        })();
        match result {
            Ok(None) => {}
            Ok(Some(status)) => {
                backoff.reset();
                let _ = std::fs::remove_file(&path);
                let mut st = sh.lock();
                if st.files.front().is_some_and(|f| f.seq == seq) {
                    st.files.pop_front();
                }
                st.stats.connected = true;
                st.stats.delivered_batches += 1;
                st.stats.delivered_records += records;
                if status == AckStatus::Duplicate {
                    st.stats.duplicates += 1;
                }
                st.refresh();
                drop(st);
                sh.wake.notify_all();
            }
            Err(err) => {
                conn = None;
                // A batch that vanished from the spool (dropped while in flight) is not retried.
                if !path.exists() {
                    continue;
                }
                {
                    let mut st = sh.lock();
                    st.stats.connected = false;
                    st.stats.last_error = Some(format!("{err:#}"));
                }
                if pause(sh, backoff.delay(random01())) {
                    return;
                }
            }
        }
    }
}
