//! Bulk insert into the PostgreSQL store: at least 1,000,000 realistic flow records (thousands of
//! domains and addresses, tens of apps, IPv4 and IPv6; `store::sqlite::testdata`) written with
//! binary COPY through `Backend::write_batch`, into a real server this benchmark starts itself
//! (the test harness: `initdb` + `pg_ctl` as the `postgres` user, unix socket, server defaults:
//! fsync and synchronous_commit on, logged tables).
//!
//! `cargo bench -p store --bench pg_insert`. Environment: `NV_BENCH_FLOWS` (default 1,000,000),
//! `NV_BENCH_BATCH` (flows per batch, default 20,000), `NV_BENCH_RUNS` (default 3, each into a
//! fresh database), `NV_BENCH_WRITERS` (connections writing batches at the same time, each on
//! its own thread, as the fleet server's store pool does; default 1), `NV_BENCH_SQL` (SQL run after the schema is made, before timing: for
//! trying index variants without rebuilding). Prints each run (wall-clock rate, and the CPU
//! seconds of this process and of the server's processes, which a loaded machine disturbs
//! less) and the best and median rates.

#[path = "../tests/support/pg_server.rs"]
mod pg_server;

use std::time::Instant;

use store::pg::PgStore;
use store::sqlite::testdata;
use store::{Backend, Batch, DeviceId, Query};

const T0: i64 = 1_763_780_400_000_000_000; // 2025-11-22T03:00:00Z

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU seconds (user + system) of process `pid` from /proc (clock ticks are 1/100 s).
fn cpu_of(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // After the command name in parentheses: state is field 3; utime, stime are 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

/// CPU seconds of every process whose parent is `ppid` (the server's backends and helpers;
/// exited backends are not counted, so measure while the connection is open).
fn cpu_of_children(ppid: &str) -> f64 {
    let mut sum = 0.0;
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(1))
            .unwrap_or("");
        if parent == ppid {
            sum += cpu_of(pid);
        }
    }
    sum
}

/// The 1-minute load average.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_default()
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing useful: run a small
    // smoke pass then, so CI exercises the code without spending minutes.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let total = if smoke {
        20_000
    } else {
        env("NV_BENCH_FLOWS", 1_000_000)
    };
    let per_batch = env("NV_BENCH_BATCH", 20_000).max(1);
    let runs = if smoke { 1 } else { env("NV_BENCH_RUNS", 3).max(1) };

    if pg_server::find_bindir().is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("PostgreSQL is not installed: apt-get install postgresql-15");
        }
        eprintln!("pg_insert: PostgreSQL is not installed (apt-get install postgresql-15); skipped");
        return;
    }
    // Only settings a production fleet server would also use: a larger WAL between checkpoints
    // and a bigger buffer cache. Durability settings stay at their defaults.
    let server = pg_server::PgServer::start(&[("max_wal_size", "4GB"), ("shared_buffers", "256MB")])
        .unwrap_or_else(|e| panic!("starting PostgreSQL: {e}"));

    // Batches made before timing: 20 devices, one flow every 2 ms of each (about an hour).
    let t = Instant::now();
    let batches: Vec<Batch> = (0..total.div_ceil(per_batch))
        .map(|b| {
            let first = (b * per_batch) as u64;
            let n = per_batch.min(total - b * per_batch) as u64;
            Batch {
                device: DeviceId(b as u32 % 20),
                records: testdata::flows(first, n, T0, 2_000_000),
                ..Batch::default()
            }
        })
        .collect();
    eprintln!(
        "pg_insert: {} flows in {} batches of {per_batch} made in {:.1} s",
        total,
        batches.len(),
        t.elapsed().as_secs_f64()
    );

    let mut rates = Vec::new();
    for run in 0..runs {
        let db = server.create_db(&format!("bench_{run}"));
        let mut store = PgStore::connect(&db.url(), DeviceId(0)).unwrap_or_else(|e| panic!("{e}"));
        if let Ok(sql) = std::env::var("NV_BENCH_SQL") {
            store
                .client()
                .batch_execute(&sql)
                .unwrap_or_else(|e| panic!("NV_BENCH_SQL: {e}"));
        }
        let postmaster: String = store
            .client()
            .query_one("SELECT pg_postmaster_start_time()::text, pg_backend_pid()", &[])
            .ok()
            .and_then(|r| {
                let pid: i32 = r.get(1);
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                stat.rsplit_once(')')
                    .and_then(|(_, r)| r.split_whitespace().nth(1))
                    .map(str::to_string)
            })
            .unwrap_or_default();
        let wal_lsn = |c: &mut postgres::Client| -> String {
            c.query_one("SELECT pg_current_wal_lsn()::text", &[])
                .map(|r| r.get(0))
                .unwrap_or_default()
        };
        let wal0 = wal_lsn(store.client());
        let load0 = load();
        let (cpu_client0, cpu_server0) = (cpu_of("self"), cpu_of_children(&postmaster));
        let t = Instant::now();
        let writers = env("NV_BENCH_WRITERS", 1).max(1);
        // The writers' connections stay open until their server CPU is read.
        let mut keep: Vec<PgStore> = Vec::new();
        let written = if writers == 1 {
            let mut written = 0u64;
            for b in &batches {
                written += store.write_batch(b).unwrap_or_else(|e| panic!("{e}")).flows;
            }
            written
        } else {
            // Each writer opens its connection before the clock matters little (one connect,
            // schema already made); batches are taken in order from a shared counter.
            let next = std::sync::atomic::AtomicUsize::new(0);
            let url = db.url();
            std::thread::scope(|sc| {
                let hs: Vec<_> = (0..writers)
                    .map(|_| {
                        sc.spawn(|| {
                            let mut st =
                                PgStore::connect(&url, DeviceId(0)).unwrap_or_else(|e| panic!("{e}"));
                            let mut n = 0u64;
                            loop {
                                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                let Some(b) = batches.get(i) else { break };
                                n += st.write_batch(b).unwrap_or_else(|e| panic!("{e}")).flows;
                            }
                            (n, st)
                        })
                    })
                    .collect();
                hs.into_iter()
                    .map(|h| {
                        let (n, st) = h.join().unwrap();
                        keep.push(st);
                        n
                    })
                    .sum()
            })
        };
        // The retention job's rollup compaction, as a fleet server runs it, counted in the
        // time: every bucket has closed by then.
        let none = store::Retention {
            raw_max_age: None,
            minute_rollup_max_age: None,
            hour_rollup_max_age: None,
            max_bytes: None,
        };
        let end = T0 + total as i64 * 2_000_000 + 3_600_000_000_000;
        store.retain(end, &none).unwrap_or_else(|e| panic!("{e}"));
        let secs = t.elapsed().as_secs_f64();
        let cpu_client = cpu_of("self") - cpu_client0;
        let cpu_server = cpu_of_children(&postmaster) - cpu_server0;
        drop(keep);
        let wal1 = wal_lsn(store.client());
        let wal: f64 = store
            .client()
            .query_one(
                "SELECT pg_wal_lsn_diff($1::text::pg_lsn, $2::text::pg_lsn)::float8",
                &[&wal1, &wal0],
            )
            .map(|r| r.get(0))
            .unwrap_or(0.0);
        assert_eq!(written as usize, total);
        let rate = written as f64 / secs;
        let size = store.size_bytes().unwrap_or(0);
        println!(
            "run {}: {written} flows in {secs:.2} s = {rate:.0} flows/s ({:.0} bytes/flow on disk with \
             indexes, {:.0} bytes/flow of WAL); CPU: client {cpu_client:.1} s, server {cpu_server:.1} s = {:.0} flows per CPU-s; \
             load {load0} -> {}",
            run + 1,
            size as f64 / written as f64,
            wal / written as f64,
            written as f64 / (cpu_client + cpu_server),
            load()
        );
        if run == 0 {
            // The rows are really there and queryable.
            let q = Query {
                limit: Some(3),
                ..Query::default()
            };
            assert_eq!(store.flows(&q).unwrap().len(), 3);
            // The dashboard's questions on this data, timed, and the plans of their filters
            // (after ANALYZE and the BRIN summaries, which autovacuum makes on a running server:
            // `autosummarize` asks it to as each block range fills).
            store
                .client()
                .batch_execute("ANALYZE")
                .unwrap_or_else(|e| panic!("{e}"));
            store
                .client()
                .query(
                    "SELECT brin_summarize_new_values(c.oid) FROM pg_class c \
                     JOIN pg_am a ON a.oid = c.relam WHERE a.amname = 'brin' AND c.relkind = 'i'",
                    &[],
                )
                .unwrap_or_else(|e| panic!("{e}"));
            let mid = T0 + total as i64 * 1_000_000;
            let cases: [(&str, Query); 7] = [
                (
                    "newest 100",
                    Query {
                        limit: Some(100),
                        ..Query::default()
                    },
                ),
                (
                    "device 7, newest 100",
                    Query {
                        device: Some(DeviceId(7)),
                        limit: Some(100),
                        ..Query::default()
                    },
                ),
                (
                    "app firefox, newest 100",
                    Query {
                        app: Some("firefox".into()),
                        limit: Some(100),
                        ..Query::default()
                    },
                ),
                (
                    "host site1234 domain",
                    Query {
                        host: Some("site1234.example.com".into()),
                        ..Query::default()
                    },
                ),
                (
                    "host 2001:db8:17::1776 (IP)",
                    Query {
                        host: Some("2001:db8:17::1776".into()),
                        ..Query::default()
                    },
                ),
                (
                    "one minute (since/until)",
                    Query {
                        since: Some(mid),
                        until: Some(mid + 60_000_000_000),
                        ..Query::default()
                    },
                ),
                (
                    "app + host + 10 minutes",
                    Query {
                        app: Some("chrome".into()),
                        host: Some("example.com".into()),
                        since: Some(mid),
                        until: Some(mid + 600_000_000_000),
                        ..Query::default()
                    },
                ),
            ];
            for (name, q) in &cases {
                let t = Instant::now();
                let n = store.flows(q).unwrap_or_else(|e| panic!("{e}")).len();
                println!(
                    "  query {name}: {n} flows in {:.1} ms",
                    t.elapsed().as_secs_f64() * 1e3
                );
            }
            if std::env::var("NV_BENCH_EXPLAIN").is_ok() {
                let c = store.client();
                for sql in [
                    "SELECT * FROM netvigil.flows WHERE device = 7 AND ts >= now() - interval '100 years' ORDER BY ts DESC LIMIT 100",
                    "SELECT * FROM netvigil.flows WHERE app = ANY(ARRAY[5,6]) OR exe = ANY(ARRAY[5,6])",
                    "SELECT * FROM netvigil.flows WHERE domain = ANY(ARRAY[100,200])",
                    "SELECT * FROM netvigil.flows WHERE client_ip = '2001:db8:17::1776' OR server_ip = '2001:db8:17::1776'",
                    "SELECT * FROM netvigil.flows WHERE ts >= '2025-11-22 03:10:00+00' AND ts < '2025-11-22 03:11:00+00'",
                ] {
                    println!("  EXPLAIN {sql}");
                    for r in c
                        .query(&format!("EXPLAIN (ANALYZE, COSTS OFF) {sql}"), &[])
                        .unwrap()
                    {
                        println!("    {}", r.get::<_, String>(0));
                    }
                }
            }
        }
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    let best = rates[rates.len() - 1];
    let median = rates[rates.len() / 2];
    println!(
        "pg_insert: best {best:.0} flows/s, median {median:.0} flows/s over {runs} runs of {total} flows, \
         batches of {per_batch}"
    );
}
