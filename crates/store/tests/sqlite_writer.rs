//! The writer thread over a real SQLite file: commits by count and by time, counters, a full
//! disk, retention (the crash test is in sqlite_crash.rs).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use engine::Record;
use store::sqlite::testdata;
use store::{Backend, Batch, Retention, SqliteStore, Writer, WriterConfig};

const T0: i64 = 1_763_780_400_000_000_000;
const SEC: i64 = 1_000_000_000;

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
        let p = std::env::temp_dir().join(format!("nv-writer-{tag}-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn batch(records: Vec<Record>) -> Batch {
    Batch {
        records,
        ..Batch::default()
    }
}

fn count_flows(dir: &Path) -> i64 {
    let c = rusqlite::Connection::open(dir.join("netvigil.db")).unwrap();
    c.query_row("SELECT count(*) FROM flows", [], |r| r.get(0))
        .unwrap()
}

fn quiet() -> WriterConfig {
    WriterConfig {
        retention: None,
        on_warning: Box::new(|_| {}),
        ..WriterConfig::default()
    }
}

#[test]
fn commits_by_time_within_the_delay() {
    let dir = TempDir::new("time");
    let db = SqliteStore::open_dir(dir.path()).unwrap();
    let w = Writer::spawn(
        db,
        WriterConfig {
            max_batch: 1_000_000,
            max_delay: Duration::from_millis(400),
            ..quiet()
        },
    );
    let sent = Instant::now();
    w.send(batch(testdata::flows(0, 5, T0, SEC))).unwrap();
    assert_eq!(count_flows(dir.path()), 0, "committed before the delay");
    let mut seen = None;
    while sent.elapsed() < Duration::from_secs(3) {
        if count_flows(dir.path()) == 5 {
            seen = Some(sent.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let seen = seen.expect("never committed");
    assert!(seen <= Duration::from_millis(600), "committed after {seen:?}");
    let s = w.stats().snapshot();
    assert_eq!(
        (s.received, s.written, s.unwritten, s.queued, s.commits),
        (5, 5, 0, 0, 1)
    );
    assert!(
        s.last_commit_lag <= Duration::from_millis(450),
        "{:?}",
        s.last_commit_lag
    );
}

#[test]
fn commits_by_count_and_flushes_on_close() {
    let dir = TempDir::new("count");
    let db = SqliteStore::open_dir(dir.path()).unwrap();
    let batches = Arc::new(Mutex::new(Vec::new()));
    let b2 = batches.clone();
    let w = Writer::spawn(
        db,
        WriterConfig {
            max_batch: 100,
            max_delay: Duration::from_secs(60),
            on_commit: Some(Box::new(move |b, written| {
                b2.lock().unwrap().push((b.len(), written.flows));
            })),
            ..quiet()
        },
    );
    for i in 0..5 {
        w.send(batch(testdata::flows(i * 50, 50, T0, SEC))).unwrap();
    }
    let t = Instant::now();
    while w.stats().snapshot().written < 200 && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(w.stats().snapshot().written, 200);
    assert_eq!(count_flows(dir.path()), 200);
    let stats = w.stats();
    let fin = w.close();
    assert_eq!((fin.written, fin.unwritten, fin.commits), (250, 0, 3));
    assert_eq!(stats.snapshot().written, 250);
    assert_eq!(count_flows(dir.path()), 250);
    assert_eq!(*batches.lock().unwrap(), [(100, 100), (100, 100), (50, 50)]);

    // Dropping the handle flushes too.
    let db = SqliteStore::open_dir(dir.path()).unwrap();
    let w = Writer::spawn(
        db,
        WriterConfig {
            max_delay: Duration::from_secs(60),
            ..quiet()
        },
    );
    w.send(batch(testdata::flows(1000, 7, T0, SEC))).unwrap();
    drop(w);
    assert_eq!(count_flows(dir.path()), 257);
}

#[test]
fn disk_full_is_counted_reported_once_and_survived() {
    let dir = TempDir::new("full");
    let db = SqliteStore::open_dir(dir.path()).unwrap();
    // A few pages more than the empty schema: the first batches fit, later ones do not.
    let pages: i64 = {
        let c = rusqlite::Connection::open(dir.path().join("netvigil.db")).unwrap();
        c.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap()
    };
    db.set_page_limit(pages as u64 + 400).unwrap();
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let w2 = warnings.clone();
    let w = Writer::spawn(
        db,
        WriterConfig {
            max_batch: 500,
            on_warning: Box::new(move |e| w2.lock().unwrap().push(e.to_string())),
            ..quiet()
        },
    );
    for i in 0..40 {
        w.send(batch(testdata::flows(i * 500, 500, T0, SEC))).unwrap();
        w.flush().unwrap();
    }
    let s = w.stats().snapshot();
    assert_eq!(s.received, 20_000);
    assert_eq!(s.written + s.unwritten, 20_000);
    assert!(s.written > 0 && s.unwritten > 0, "{s:?}");
    assert!(s.disk_full);
    assert!(s.last_error.as_deref().unwrap().contains("is full"), "{s:?}");
    let warnings = warnings.lock().unwrap().clone();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("disk holding") && warnings[0].contains("capture goes on"));
    let fin = w.close();
    assert_eq!(count_flows(dir.path()) as u64, fin.written);
    SqliteStore::open_dir(dir.path())
        .unwrap()
        .integrity_check()
        .unwrap();
}

#[test]
fn retention_runs_from_the_writer() {
    let dir = TempDir::new("retain");
    let mut db = SqliteStore::open_dir(dir.path()).unwrap();
    db.write_batch(&batch(testdata::flows(0, 1000, T0, SEC))).unwrap();
    let now = Arc::new(AtomicU64::new(T0 as u64));
    let n2 = now.clone();
    let w = Writer::spawn(
        db,
        WriterConfig {
            retention: Some(Retention {
                raw_max_age: Some(86_400 * SEC),
                ..Retention::default()
            }),
            retention_every: Duration::from_millis(50),
            now: Arc::new(move || n2.load(Ordering::Relaxed) as i64),
            ..quiet()
        },
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(count_flows(dir.path()), 1000, "deleted too early");
    now.store((T0 + 2 * 86_400 * SEC) as u64, Ordering::Relaxed);
    let t = Instant::now();
    while count_flows(dir.path()) > 0 && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(count_flows(dir.path()), 0);
    drop(w);
}

// ---- the crash test ----
