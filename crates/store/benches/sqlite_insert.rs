//! Flow records per second into SQLite through the Writer, with every index on.
//!
//! `cargo bench -p store --bench sqlite_insert [-- FLOWS RUNS]` (default 1,000,000 flows, 3
//! runs). Each run: a fresh database in the temp directory ($TMPDIR), a producer thread
//! generating varied flows (`store::sqlite::testdata`: 3,000 domains, about 8,000 server
//! addresses v4 and v6, 30 apps, 7 app protocols) and sending batches of 1,000, the writer
//! committing with its default settings (`NV_BATCH=N` overrides the commit size, to compare);
//! the clock stops when `close()` returns (everything committed). Prints each run (rate, CPU
//! seconds of the process, bytes written per flow, commits, size on disk), the best and the
//! median, and the load average. `NV_BENCH_KEEP=1` keeps the databases for inspection.

use std::time::{Duration, Instant};

use store::sqlite::testdata;
use store::{Batch, SqliteStore, Writer, WriterConfig};

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// CPU seconds (user + system) this process used so far, from /proc/self/stat (100 Hz ticks).
fn cpu_secs() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

/// Bytes this process handed to write(2) so far (/proc/self/io `wchar`).
fn written_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("wchar: ").and_then(|v| v.trim().parse().ok()))
        })
        .unwrap_or(0)
}

fn run(n: u64, idx: usize) -> (f64, u64, Duration, f64) {
    let dir = std::env::temp_dir().join(format!("nv-bench-{}-{idx}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let db = SqliteStore::open_dir(&dir).expect("open");
    let writer = Writer::spawn(
        db,
        WriterConfig {
            // NV_BATCH overrides the writer's default commit size, to compare.
            max_batch: std::env::var("NV_BATCH")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(WriterConfig::default().max_batch),
            retention: None,
            queue: 64,
            ..WriterConfig::default()
        },
    );
    let t0 = 1_763_780_400_000_000_000i64;
    let start = Instant::now();
    let cpu0 = cpu_secs();
    let w0 = written_bytes();
    let per = 1_000u64;
    let mut i = 0;
    while i < n {
        let k = per.min(n - i);
        let b = Batch {
            records: testdata::flows(i, k, t0, 2_000_000),
            ..Batch::default()
        };
        writer.send(b).expect("send");
        i += k;
    }
    let stats = writer.close();
    let took = start.elapsed();
    let cpu = cpu_secs() - cpu0;
    eprintln!(
        "    written: {} bytes per flow, {} commits",
        (written_bytes() - w0) / n,
        stats.commits
    );
    assert_eq!(stats.written, n, "{stats:?}");
    let db = SqliteStore::open_dir(&dir).expect("reopen");
    let size = db.size_on_disk();
    drop(db);
    if std::env::var_os("NV_BENCH_KEEP").is_some() {
        println!("    kept {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    (n as f64 / took.as_secs_f64(), size, stats.max_commit_lag, cpu)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let n: u64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let runs: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3);
    println!(
        "sqlite_insert: {n} flows per run, {runs} runs; load average before: {}",
        loadavg()
    );
    let mut rates = Vec::new();
    for r in 0..runs {
        let (rate, size, lag, cpu) = run(n, r);
        println!(
            "  run {}: {:>9.0} flows/s ({:.2} CPU s, writer + producer), {:.1} MiB on disk ({:.0} bytes/flow), max commit lag {:?}, load {}",
            r + 1,
            rate,
            cpu,
            size as f64 / (1 << 20) as f64,
            size as f64 / n as f64,
            lag,
            loadavg()
        );
        rates.push(rate);
    }
    rates.sort_by(|a, b| a.total_cmp(b));
    println!(
        "best {:.0} flows/s, median {:.0} flows/s; load average after: {}",
        rates[rates.len() - 1],
        rates[rates.len() / 2],
        loadavg()
    );
}
