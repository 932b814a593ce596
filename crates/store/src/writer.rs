//! The writer thread: owns a [`Backend`], receives [`Batch`]es on a bounded channel, and commits
//! them in large transactions, by count ([`WriterConfig::max_batch`] items) or by time (a
//! record is committed at most [`WriterConfig::max_delay`] after it was sent). It runs the
//! rolling retention now and then, and never stops for a failed write: what could not be
//! written is counted ([`StatsSnapshot::unwritten`]) and the error reported once.
//!
//! ```no_run
//! use store::{Batch, Writer, WriterConfig, sqlite::SqliteStore};
//! let db = SqliteStore::open_dir(std::path::Path::new("/tmp/nv")).unwrap();
//! let writer = Writer::spawn(db, WriterConfig::default());
//! writer.send(Batch::default()).unwrap();
//! let stats = writer.close();
//! assert_eq!(stats.unwritten, 0);
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::model::{Backend, Batch, Retention, StoreError, Written};

/// The clock retention reads (ns since the epoch).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;
/// Called after each successful commit with the batch that was committed.
pub type CommitHook = Box<dyn FnMut(&Batch, &Written) + Send>;
/// Called with an error the writer met (once per kind of error every ten minutes at most).
pub type WarnHook = Box<dyn FnMut(&StoreError) + Send>;

/// How the writer batches and maintains.
pub struct WriterConfig {
    /// Commit when this many items (records + alerts + samples) are pending.
    pub max_batch: usize,
    /// Commit so that no item waits longer than this between `send` and its commit.
    pub max_delay: Duration,
    /// Bounded channel capacity, in batches sent.
    pub queue: usize,
    /// Rolling retention policy; `None`: never delete.
    pub retention: Option<Retention>,
    /// How often the retention pass runs (the first one runs at start).
    pub retention_every: Duration,
    /// The wall clock given to retention (defaults to the system clock).
    pub now: Clock,
    /// Called after each commit (tests and the crash test log what was committed).
    pub on_commit: Option<CommitHook>,
    /// Defaults to one line on standard error: "netvigil: store: ...".
    pub on_warning: WarnHook,
}

impl std::fmt::Debug for WriterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterConfig")
            .field("max_batch", &self.max_batch)
            .field("max_delay", &self.max_delay)
            .field("queue", &self.queue)
            .field("retention", &self.retention)
            .field("retention_every", &self.retention_every)
            .finish_non_exhaustive()
    }
}

/// The system clock in ns since the epoch.
pub fn system_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            max_batch: 100_000,
            max_delay: Duration::from_secs(1),
            queue: 256,
            retention: Some(Retention::default()),
            retention_every: Duration::from_secs(300),
            now: Arc::new(system_now),
            on_commit: None,
            on_warning: Box::new(|e| tracing::warn!("{e}")),
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    received: AtomicU64,
    written: AtomicU64,
    unwritten: AtomicU64,
    queued: AtomicU64,
    commits: AtomicU64,
    last_lag_ns: AtomicU64,
    max_lag_ns: AtomicU64,
    disk_full: AtomicBool,
    last_error: Mutex<Option<String>>,
}

/// A cheap, clonable view of the writer's counters (atomics; read from any thread).
#[derive(Clone, Debug)]
pub struct WriterStats(Arc<Counters>);

/// The counters at one moment. Items are records + alerts + samples.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Items handed to `send`/`try_send` (including those refused by a full queue).
    pub received: u64,
    /// Items committed.
    pub written: u64,
    /// Items that could not be written (a failed commit, a full queue on `try_send`).
    pub unwritten: u64,
    /// Items sent but not yet taken by the writer thread.
    pub queued: u64,
    /// Transactions committed.
    pub commits: u64,
    /// Time from the oldest item's arrival to the end of the last commit.
    pub last_commit_lag: Duration,
    /// The largest such lag seen.
    pub max_commit_lag: Duration,
    /// The last write failed because the disk is full.
    pub disk_full: bool,
    /// The last error met, if any.
    pub last_error: Option<String>,
}

impl WriterStats {
    /// Reads every counter (each is read on its own: the set is not one atomic moment).
    pub fn snapshot(&self) -> StatsSnapshot {
        let c = &self.0;
        StatsSnapshot {
            received: c.received.load(Ordering::Relaxed),
            written: c.written.load(Ordering::Relaxed),
            unwritten: c.unwritten.load(Ordering::Relaxed),
            queued: c.queued.load(Ordering::Relaxed),
            commits: c.commits.load(Ordering::Relaxed),
            last_commit_lag: Duration::from_nanos(c.last_lag_ns.load(Ordering::Relaxed)),
            max_commit_lag: Duration::from_nanos(c.max_lag_ns.load(Ordering::Relaxed)),
            disk_full: c.disk_full.load(Ordering::Relaxed),
            last_error: c.last_error.lock().map(|e| e.clone()).unwrap_or(None),
        }
    }
}

enum Msg {
    Batch(Batch, Instant),
    Flush(SyncSender<()>),
}

/// Handle to the writer thread. Dropping it flushes and joins the thread.
pub struct Writer {
    tx: Option<SyncSender<Msg>>,
    thread: Option<JoinHandle<()>>,
    stats: WriterStats,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("stats", &self.stats.snapshot())
            .finish()
    }
}

/// Why a batch was not queued.
#[derive(Debug)]
pub enum SendError {
    /// The queue is full (`try_send` only); the items were counted as unwritten.
    Full,
    /// The writer thread is gone.
    Closed,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Full => write!(f, "the store's write queue is full; the records were not kept"),
            SendError::Closed => write!(f, "the store's writer has stopped"),
        }
    }
}

impl std::error::Error for SendError {}

impl Writer {
    /// Starts the writer thread, which owns `backend` from now on.
    pub fn spawn<B: Backend + 'static>(backend: B, cfg: WriterConfig) -> Writer {
        let (tx, rx) = mpsc::sync_channel(cfg.queue.max(1));
        let stats = WriterStats(Arc::new(Counters::default()));
        let s = stats.clone();
        let thread = std::thread::Builder::new()
            .name("netvigil-store".into())
            .spawn(move || run(backend, cfg, rx, s))
            .expect("spawning the store writer thread");
        Writer {
            tx: Some(tx),
            thread: Some(thread),
            stats,
        }
    }

    /// Queues a batch, waiting for room when the queue is full.
    pub fn send(&self, batch: Batch) -> Result<(), SendError> {
        if batch.is_empty() {
            return Ok(());
        }
        let n = batch.len() as u64;
        let c = &self.stats.0;
        c.received.fetch_add(n, Ordering::Relaxed);
        c.queued.fetch_add(n, Ordering::Relaxed);
        let tx = self.tx.as_ref().ok_or(SendError::Closed)?;
        tx.send(Msg::Batch(batch, Instant::now())).map_err(|_| {
            c.queued.fetch_sub(n, Ordering::Relaxed);
            c.unwritten.fetch_add(n, Ordering::Relaxed);
            SendError::Closed
        })
    }

    /// Queues a batch without waiting: when the queue is full the batch is dropped and counted
    /// as unwritten (capture must not stall behind the disk).
    pub fn try_send(&self, batch: Batch) -> Result<(), SendError> {
        if batch.is_empty() {
            return Ok(());
        }
        let n = batch.len() as u64;
        let c = &self.stats.0;
        c.received.fetch_add(n, Ordering::Relaxed);
        c.queued.fetch_add(n, Ordering::Relaxed);
        let tx = self.tx.as_ref().ok_or(SendError::Closed)?;
        tx.try_send(Msg::Batch(batch, Instant::now())).map_err(|e| {
            c.queued.fetch_sub(n, Ordering::Relaxed);
            c.unwritten.fetch_add(n, Ordering::Relaxed);
            match e {
                TrySendError::Full(_) => SendError::Full,
                TrySendError::Disconnected(_) => SendError::Closed,
            }
        })
    }

    /// Waits until everything sent before this call is committed (or failed).
    pub fn flush(&self) -> Result<(), SendError> {
        let tx = self.tx.as_ref().ok_or(SendError::Closed)?;
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        tx.send(Msg::Flush(ack_tx)).map_err(|_| SendError::Closed)?;
        ack_rx.recv().map_err(|_| SendError::Closed)
    }

    /// The shared counters.
    pub fn stats(&self) -> WriterStats {
        self.stats.clone()
    }

    /// Commits what is pending, stops the thread and returns the final counters.
    pub fn close(mut self) -> StatsSnapshot {
        self.shutdown();
        self.stats.snapshot()
    }

    fn shutdown(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct State<B> {
    backend: B,
    cfg: WriterConfig,
    stats: WriterStats,
    pending: Batch,
    oldest: Option<Instant>,
    last_commit_took: Duration,
    /// When each kind of error was last reported (reported again after [`REWARN`]).
    warned: Vec<(std::mem::Discriminant<StoreError>, Instant)>,
}

/// A kind of error already reported is reported again after this long, not at every batch.
const REWARN: Duration = Duration::from_secs(600);

fn run<B: Backend>(backend: B, cfg: WriterConfig, rx: Receiver<Msg>, stats: WriterStats) {
    let mut st = State {
        backend,
        cfg,
        stats,
        pending: Batch::default(),
        oldest: None,
        last_commit_took: Duration::ZERO,
        warned: Vec::new(),
    };
    let mut next_retention = Instant::now();
    loop {
        let deadline = st.commit_deadline();
        let wait = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => st.cfg.retention_every.min(Duration::from_secs(1)),
        };
        match rx.recv_timeout(wait) {
            Ok(Msg::Batch(b, arrived)) => {
                st.stats.0.queued.fetch_sub(b.len() as u64, Ordering::Relaxed);
                if !st.pending.is_empty() && st.pending.device != b.device {
                    st.commit();
                }
                st.add(b, arrived);
                if st.pending.len() >= st.cfg.max_batch {
                    st.commit();
                }
            }
            Ok(Msg::Flush(ack)) => {
                st.commit();
                let _ = ack.send(());
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                st.commit();
                return;
            }
        }
        if st.commit_deadline().is_some_and(|d| Instant::now() >= d) {
            // Take what is already queued into this transaction: under a backlog every queued
            // batch is past its deadline, and committing them one by one would make each
            // commit rewrite the same index pages and fall further behind.
            let mut stop = false;
            while st.pending.len() < st.cfg.max_batch && !stop {
                match rx.try_recv() {
                    Ok(Msg::Batch(b, arrived)) => {
                        st.stats.0.queued.fetch_sub(b.len() as u64, Ordering::Relaxed);
                        if st.pending.device != b.device {
                            st.commit();
                        }
                        st.add(b, arrived);
                    }
                    Ok(Msg::Flush(ack)) => {
                        st.commit();
                        let _ = ack.send(());
                    }
                    Err(mpsc::TryRecvError::Empty) => stop = true,
                    Err(mpsc::TryRecvError::Disconnected) => stop = true,
                }
            }
            st.commit();
        }
        if st.cfg.retention.is_some() && Instant::now() >= next_retention {
            st.commit();
            st.retain();
            next_retention = Instant::now() + st.cfg.retention_every;
        }
    }
}

impl<B: Backend> State<B> {
    /// When the pending items must be committed: `max_delay` after the oldest arrived, less
    /// what the last commit took (so the commit ends in time), but not before half of
    /// `max_delay`: shrinking transactions when commits are slow would make each one rewrite the
    /// same index pages more often, and the writer slower still.
    fn commit_deadline(&self) -> Option<Instant> {
        let oldest = self.oldest?;
        let margin = self.last_commit_took.min(self.cfg.max_delay / 2);
        Some(oldest + self.cfg.max_delay - margin)
    }

    fn add(&mut self, b: Batch, arrived: Instant) {
        if self.pending.is_empty() {
            self.pending.device = b.device;
        }
        self.oldest = Some(self.oldest.map_or(arrived, |o| o.min(arrived)));
        let Batch {
            device: _,
            mut records,
            mut alerts,
            mut samples,
            source: _,
        } = b;
        if self.pending.records.is_empty() {
            self.pending.records = records;
        } else {
            self.pending.records.append(&mut records);
        }
        self.pending.alerts.append(&mut alerts);
        self.pending.samples.append(&mut samples);
    }

    fn commit(&mut self) {
        if self.pending.is_empty() {
            self.oldest = None;
            return;
        }
        let n = self.pending.len() as u64;
        let started = Instant::now();
        let res = self.backend.write_batch(&self.pending);
        let c = &self.stats.0;
        self.last_commit_took = started.elapsed();
        match res {
            Ok(w) => {
                c.written.fetch_add(n, Ordering::Relaxed);
                c.commits.fetch_add(1, Ordering::Relaxed);
                let lag = self.oldest.map_or(Duration::ZERO, |o| o.elapsed());
                let lag_ns = u64::try_from(lag.as_nanos()).unwrap_or(u64::MAX);
                c.last_lag_ns.store(lag_ns, Ordering::Relaxed);
                c.max_lag_ns.fetch_max(lag_ns, Ordering::Relaxed);
                c.disk_full.store(false, Ordering::Relaxed);
                if let Some(hook) = self.cfg.on_commit.as_mut() {
                    hook(&self.pending, &w);
                }
            }
            Err(e) => {
                c.unwritten.fetch_add(n, Ordering::Relaxed);
                self.warn(&e);
            }
        }
        self.pending.records.clear();
        self.pending.alerts.clear();
        self.pending.samples.clear();
        self.oldest = None;
    }

    fn retain(&mut self) {
        let Some(policy) = self.cfg.retention.clone() else {
            return;
        };
        let now = (self.cfg.now)();
        if let Err(e) = self.backend.retain(now, &policy) {
            self.warn(&e);
        }
    }

    fn warn(&mut self, e: &StoreError) {
        let c = &self.stats.0;
        if matches!(e, StoreError::DiskFull { .. }) {
            c.disk_full.store(true, Ordering::Relaxed);
        }
        if let Ok(mut last) = c.last_error.lock() {
            *last = Some(e.to_string());
        }
        let kind = std::mem::discriminant(e);
        let now = Instant::now();
        match self.warned.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, at)) if now.duration_since(*at) < REWARN => {}
            Some((_, at)) => {
                *at = now;
                (self.cfg.on_warning)(e);
            }
            None => {
                self.warned.push((kind, now));
                (self.cfg.on_warning)(e);
            }
        }
    }
}
