//! The crash test: kill -9 the writer 100 times mid-batch. Alone in its test binary, so
//! that no other test competes with the child writer for the CPU.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use engine::Record;
use store::sqlite::testdata;
use store::{Batch, SqliteStore, Writer, WriterConfig};

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

fn quiet() -> WriterConfig {
    WriterConfig {
        retention: None,
        on_warning: Box::new(|_| {}),
        ..WriterConfig::default()
    }
}

const CHILD_ENV: &str = "NETVIGIL_CRASH_CHILD_DIR";
const PER_BATCH: u64 = 50;

fn wall_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as i64
}

/// The child: writes flows through a Writer until killed. Before sending a batch it logs
/// "last_id sent_at" to `sent.log`; after each commit, the committed batch's last id to
/// `committed.log` (plain writes: a killed process's writes are in the page cache already).
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let first: u64 = std::env::var("NETVIGIL_CRASH_FIRST").unwrap().parse().unwrap();
    let db = SqliteStore::open_dir(&dir).unwrap();
    let open = |name: &str| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(name))
            .unwrap()
    };
    let mut committed = open("committed.log");
    let mut sent = open("sent.log");
    let w = Writer::spawn(
        db,
        WriterConfig {
            max_batch: 500,
            max_delay: Duration::from_secs(1),
            on_commit: Some(Box::new(move |b, _| {
                if let Some(Record::Flow(f)) = b.records.last() {
                    let _ = writeln!(committed, "{}", f.id);
                }
            })),
            ..quiet()
        },
    );
    let mut id = first;
    // Bounded: the parent kills us long before this ends.
    for _ in 0..20_000 {
        let recs = testdata::flows(id, PER_BATCH, T0, SEC / 1000);
        id += PER_BATCH;
        let _ = writeln!(sent, "{} {}", id - 1, wall_ns());
        w.send(batch(recs)).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The complete lines of a log the child writes: the kill can cut the last line short (a torn
/// "12345 1763..." would read as a different flow id), so a line without its newline is left out.
fn read_pairs(path: &Path) -> Vec<Vec<i64>> {
    let text = fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split(' ').map(|x| x.parse().ok()).collect::<Option<Vec<i64>>>())
        .collect()
}

#[test]
fn crash_kill_9_a_hundred_times() {
    let dir = TempDir::new("crash");
    let exe = std::env::current_exe().unwrap();
    let started = Instant::now();
    let mut rng = 0x1234_5678u64;
    let mut in_flight = 0;
    for round in 0..100u64 {
        let first = round * 10_000_000;
        let _ = fs::remove_file(dir.path().join("committed.log"));
        let _ = fs::remove_file(dir.path().join("sent.log"));
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .env("NETVIGIL_CRASH_FIRST", first.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait for the first commit, then kill at a random point.
        let t = Instant::now();
        while read_pairs(&dir.path().join("committed.log")).is_empty() {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "round {round}: the child never committed"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        rng = testdata::mix(rng);
        std::thread::sleep(Duration::from_millis(rng % 150));
        child.kill().unwrap(); // SIGKILL
        let killed_at = wall_ns();
        child.wait().unwrap();

        let db = SqliteStore::open_dir(dir.path()).unwrap_or_else(|e| panic!("round {round}: {e}"));
        db.integrity_check()
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        drop(db);
        let c = rusqlite::Connection::open(dir.path().join("netvigil.db")).unwrap();
        let present = |id: i64| -> bool {
            c.query_row("SELECT count(*) FROM flows WHERE flow_id = ?1", [id], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap()
                == 1
        };
        // Every batch the child saw committed is there.
        let committed = read_pairs(&dir.path().join("committed.log"));
        for line in &committed {
            assert!(
                present(line[0]),
                "round {round}: committed flow {} is missing",
                line[0]
            );
        }
        // At most the last second is missing: every batch sent more than 1 s before the kill
        // is there (batches commit in order, so its last flow is enough).
        let sent = read_pairs(&dir.path().join("sent.log"));
        for line in &sent {
            if line[1] < killed_at - SEC {
                assert!(
                    present(line[0]),
                    "round {round}: flow {} sent {} ms before the kill is missing",
                    line[0],
                    (killed_at - line[1]) / 1_000_000
                );
            }
        }
        let max: i64 = c
            .query_row(
                "SELECT coalesce(max(flow_id), -1) FROM flows WHERE flow_id >= ?1 AND flow_id < ?2",
                [first as i64, first as i64 + 10_000_000],
                |r| r.get(0),
            )
            .unwrap();
        let last_sent = sent.last().map_or(-1, |l| l[0]);
        if max < last_sent {
            in_flight += 1;
        }
        // Rows come in whole batches: never a partial batch.
        let n: i64 = c
            .query_row(
                "SELECT count(*) FROM flows WHERE flow_id >= ?1 AND flow_id < ?2",
                [first as i64, first as i64 + 10_000_000],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n as u64 % PER_BATCH, 0, "round {round}: a partial batch");
        assert_eq!(n, max + 1 - first as i64, "round {round}: a gap");
    }
    eprintln!(
        "100 kills in {:?}; in {in_flight} rounds the last records sent (under a second old) were not committed yet",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(110));
}
