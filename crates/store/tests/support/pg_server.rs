//! A real PostgreSQL server for the tests and the benchmark: `initdb` and `pg_ctl` of the
//! installed PostgreSQL (found with `pg_config --bindir` or under `/usr/lib/postgresql/*/bin`),
//! run as the `postgres` OS user when we are root, in a fresh directory under /tmp, listening
//! only on a unix socket in that directory. It is stopped (`pg_ctl stop -m immediate`) and the
//! directory removed when the guard drops, and, for the server shared by a test binary (a static
//! that never drops), by a watchdog shell that waits for the test process to exit, even when
//! it panicked or was killed.
//!
//! Missing PostgreSQL: with `CI=true` the tests fail with what to install; elsewhere they print
//! a note and skip.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// One running server and its directory.
#[derive(Debug)]
pub struct PgServer {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
    watchdog: Option<Child>,
}

/// Where the server binaries are, or `None`.
pub fn find_bindir() -> Option<PathBuf> {
    let ok =
        |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file() && d.join("postgres").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if ok(&d) {
            return Some(d);
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let d = e.path().join("bin");
            ok(&d).then_some((v, d))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, d)| d)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

fn id_of(flag: &str) -> Result<u32, String> {
    let out = Command::new("id")
        .args([flag, "postgres"])
        .output()
        .map_err(|e| format!("running id: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| "there is no `postgres` OS user (the postgresql-15 package creates it)".to_string())
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl PgServer {
    /// Creates a cluster and starts it with `settings` (`-c name=value` each).
    pub fn start(settings: &[(&str, &str)]) -> Result<PgServer, String> {
        let bin = find_bindir().ok_or_else(missing_message)?;
        let as_postgres = is_root();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = PathBuf::from(format!(
            "/tmp/nvpg-{}-{}-{nanos:x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let mut srv = PgServer {
            bin,
            dir,
            port: 5432,
            as_postgres,
            watchdog: None,
        };
        if as_postgres {
            let (uid, gid) = (id_of("-u")?, id_of("-g")?);
            std::os::unix::fs::chown(&srv.dir, Some(uid), Some(gid))
                .map_err(|e| format!("chown {}: {e}", srv.dir.display()))?;
        }
        srv.spawn_watchdog();
        let data = srv.dir.join("data");
        srv.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap_or_default(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )?;
        let mut opts = format!(
            "-c listen_addresses='' -c unix_socket_directories='{}' -c port={}",
            srv.dir.display(),
            srv.port
        );
        for (k, v) in settings {
            opts.push_str(&format!(" -c {k}={v}"));
        }
        std::fs::write(srv.dir.join("opts"), &opts).map_err(|e| e.to_string())?;
        srv.start_again()?;
        Ok(srv)
    }

    /// Starts the (stopped) server again with the same settings.
    pub fn start_again(&self) -> Result<(), String> {
        let opts = std::fs::read_to_string(self.dir.join("opts")).map_err(|e| e.to_string())?;
        let data = self.dir.join("data");
        let log = self.dir.join("log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap_or_default(),
                "-l",
                log.to_str().unwrap_or_default(),
                "-w",
                "-t",
                "120",
                "-o",
                &opts,
                "start",
            ],
        )
        .map_err(|e| {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            format!("{e}\nserver log:\n{log}")
        })
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`).
    pub fn stop(&self) -> Result<(), String> {
        let data = self.dir.join("data");
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap_or_default(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        )
    }

    fn command(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        let mut c = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        // Tools write into the cwd sometimes; keep them in our directory.
        c.current_dir(&self.dir);
        c
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<(), String> {
        let out = self
            .command(tool)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running {tool}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{tool} {args:?} failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// A shell that waits for this process to end, then stops the server and removes the
    /// directory: cleanup even when no destructor runs.
    fn spawn_watchdog(&mut self) {
        let stop = format!(
            "{}{} -D {}/data -m immediate -w stop",
            if self.as_postgres {
                "runuser -u postgres -- "
            } else {
                ""
            },
            self.bin.join("pg_ctl").display(),
            self.dir.display()
        );
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf '{dir}'",
            pid = std::process::id(),
            dir = self.dir.display()
        );
        self.watchdog = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
    }

    /// The socket directory.
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// A URL for database `db` as the `postgres` superuser over the unix socket.
    pub fn url(&self, db: &str) -> String {
        let enc = self.dir.display().to_string().replace('/', "%2F");
        format!("postgres://postgres@{enc}:{}/{db}", self.port)
    }

    /// key=value form of the same.
    pub fn conninfo(&self, db: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname={db}",
            self.dir.display(),
            self.port
        )
    }

    /// An admin connection to the `postgres` database.
    pub fn admin(&self) -> postgres::Client {
        postgres::Client::connect(&self.conninfo("postgres"), postgres::NoTls)
            .unwrap_or_else(|e| panic!("connecting to the test server: {e}"))
    }

    /// Creates database `name` (dropped when the guard drops).
    pub fn create_db(&self, name: &str) -> TestDb<'_> {
        let mut c = self.admin();
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            c.batch_execute(&sql).unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        }
        TestDb {
            server: self,
            name: name.to_string(),
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

/// A database on a test server, dropped at the end of the test (also on panic).
#[derive(Debug)]
pub struct TestDb<'a> {
    pub server: &'a PgServer,
    pub name: String,
}

impl TestDb<'_> {
    pub fn url(&self) -> String {
        self.server.url(&self.name)
    }
    /// A plain client on this database.
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.server.conninfo(&self.name), postgres::NoTls)
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", self.name))
    }
}

impl Drop for TestDb<'_> {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.server.conninfo("postgres"), postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

fn missing_message() -> String {
    "PostgreSQL server binaries not found (no initdb from `pg_config --bindir` nor under \
     /usr/lib/postgresql/*/bin): install them with `apt-get install postgresql-15` (Debian 12)"
        .to_string()
}

/// Settings of the shared test server. `fsync=off` only makes the tests faster; the benchmark
/// runs with the defaults.
const TEST_SETTINGS: &[(&str, &str)] = &[("fsync", "off"), ("max_connections", "100")];

/// The server shared by every test of this binary, or `None` (after a note) when PostgreSQL is
/// not installed and we are not in CI. In CI (`CI=true`) a missing PostgreSQL fails the test.
pub fn shared() -> Option<&'static PgServer> {
    static SERVER: OnceLock<Option<PgServer>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            if find_bindir().is_none() {
                if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                    panic!(
                        "{}; CI must run these tests against a real server",
                        missing_message()
                    );
                }
                eprintln!("note: skipping the PostgreSQL tests: {}", missing_message());
                return None;
            }
            Some(PgServer::start(TEST_SETTINGS).unwrap_or_else(|e| panic!("starting PostgreSQL: {e}")))
        })
        .as_ref()
}
