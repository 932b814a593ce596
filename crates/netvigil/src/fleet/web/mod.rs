//! The fleet server's dashboard (issue #9): HTTPS only (a given certificate, or a self-signed
//! one made on first run), accounts with argon2id password hashes and passkeys, sessions in
//! `__Host-` cookies, and pages over every device's records in the store. It runs on a thread
//! of its own with a tokio runtime, beside the agent listener of `netvigil server`.
//!
//! Modules: `tls` (certificate, listener), `users` (accounts file), `auth` (sessions,
//! login limiter, challenges), `webauthn` (passkey verification with its CBOR/COSE parsing),
//! `data` (store queries and aggregates), `lan` (a gateway agent's LAN devices), `api` (routes and the session guard). Routes and
//! setup: docs/fleet-dashboard.md.

pub mod api;
pub mod auth;
pub mod data;
pub mod lan;
pub mod tls;
pub mod users;
pub mod webauthn;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};

pub use data::StoreTarget;

/// Where the fleet dashboard listens by default (loopback: pass `--web 0.0.0.0:8079` to serve
/// other machines).
pub const DEFAULT_ADDR: &str = "127.0.0.1:8079";

/// The folder in the data directory holding the dashboard's certificate and accounts.
pub fn web_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("fleet-web")
}

/// How to run the dashboard.
#[derive(Debug)]
pub struct WebOptions {
    pub addr: SocketAddr,
    pub cert: tls::WebCert,
    /// Where an accounts file of an older version (`users.json`) is imported from; accounts
    /// and sessions are in the fleet database (`fleet`).
    pub users_dir: PathBuf,
    pub store: StoreTarget,
    pub fleet: crate::fleet::db::Target,
    pub limits: auth::Limits,
    /// Place databases for org/ASN/country (`None`: those fields stay empty).
    pub places: Option<intel::Places>,
    /// Known domains (destinations with a label are not "unknown" in the patterns).
    pub labels: intel::DomainTable,
    /// How long aggregate answers are reused.
    pub cache_ttl: Duration,
}

impl WebOptions {
    /// Defaults for a server whose data directory is `data_dir`: the certificate given, or the
    /// one in `DATA_DIR/fleet-web/` (made on first run for `localhost`, `127.0.0.1`, `::1` and
    /// this machine's host name), the records store next to it (SQLite `fleet-records.db`, where the agent listener writes, or
    /// PostgreSQL when `db_url` is given), place databases found in the usual folders.
    pub fn new(
        addr: SocketAddr,
        data_dir: &Path,
        cert: Option<(&Path, &Path)>,
        db_url: Option<&str>,
    ) -> Result<WebOptions> {
        let dir = web_dir(data_dir);
        let cert = match cert {
            Some((c, k)) => tls::WebCert::from_pem_files(c, k)?,
            None => {
                let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
                if let Ok(h) = std::fs::read_to_string("/etc/hostname") {
                    let h = h.trim();
                    if !h.is_empty() && !names.iter().any(|n| n == h) {
                        names.push(h.to_string());
                    }
                }
                if !addr.ip().is_unspecified() && !addr.ip().is_loopback() {
                    names.push(addr.ip().to_string());
                }
                tls::WebCert::load_or_create(&dir, &names)?
            }
        };
        let (store, fleet) = match db_url {
            Some(u) => (
                StoreTarget::Postgres(u.to_string()),
                crate::fleet::db::Target::Postgres(u.to_string()),
            ),
            None => (
                StoreTarget::Sqlite(data_dir.join(crate::fleet::db::RECORDS_FILE)),
                crate::fleet::db::Target::Dir(data_dir.to_path_buf()),
            ),
        };
        let found = intel::discover(&intel::default_dirs(None));
        let (places, errors) = found.load(&[]);
        for e in errors {
            tracing::warn!(error = %e, "dashboard: a place database could not be loaded");
        }
        Ok(WebOptions {
            addr,
            cert,
            users_dir: dir,
            store,
            fleet,
            limits: auth::Limits::default(),
            places: (!places.is_empty()).then_some(places),
            labels: intel::DomainTable::shipped(),
            cache_ttl: Duration::from_secs(15),
        })
    }
}

/// A running dashboard; stopping (or dropping) it closes the listener and joins its thread.
#[derive(Debug)]
pub struct WebHandle {
    /// The address actually bound.
    pub addr: SocketAddr,
    /// SHA-256 fingerprint of the certificate (colon hex).
    pub fingerprint: String,
    shutdown: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

impl WebHandle {
    /// Stops the dashboard and waits for it.
    #[allow(dead_code, reason = "the server stops it by dropping; tests call it")]
    pub fn stop(mut self) {
        self.stop_inner();
    }
    fn stop_inner(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for WebHandle {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// Builds the application state from the options (the router is `api::router(state)`).
pub fn state(o: WebOptions) -> api::AppState {
    let db = crate::fleet::db::SharedDb::new(&o.fleet);
    api::AppState {
        data: Arc::new(data::Data::new(o.store, o.fleet, o.places, o.labels, o.cache_ttl)),
        auth: Arc::new(auth::Auth::new(o.limits, db.clone())),
        users: users::Users::new(db),
        argon: Arc::new(tokio::sync::Semaphore::new(2)),
    }
}

/// The accounts in the fleet database at `target`, after importing an accounts file of an
/// older version from `web_dir` (`users.json`, then renamed `users.json.imported`) if one is
/// there.
pub fn accounts(target: &crate::fleet::db::Target, web_dir: &Path) -> Result<users::Users> {
    let users = users::Users::open(target);
    if let Some(n) = users.import_json(web_dir)? {
        eprintln!(
            "netvigil server: imported {n} dashboard account(s) from {} into {} (the file is now users.json.imported)",
            web_dir.join("users.json").display(),
            users.describe()
        );
    }
    Ok(users)
}

/// Binds `opts.addr` and serves the dashboard over HTTPS on a thread of its own.
pub fn serve(opts: WebOptions) -> Result<WebHandle> {
    let std_listener = std::net::TcpListener::bind(opts.addr).with_context(|| {
        format!(
            "the fleet dashboard cannot listen on {}: pick another --web ADDR:PORT",
            opts.addr
        )
    })?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let tls_cfg = tls::server_config(&opts.cert)?;
    let fingerprint = opts.cert.fingerprint();
    let st = state(opts);
    // The store handles (the synchronous postgres client runs a runtime of its own) must not
    // be dropped inside this runtime: the thread keeps the last reference and drops it after.
    let keep = (st.data.clone(), st.users.db().clone());
    let app = api::router(st);
    let (tx, rx) = tokio::sync::watch::channel(false);
    let thread = std::thread::Builder::new()
        .name("fleet-web".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "dashboard: cannot start");
                    return;
                }
            };
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(std_listener)
                    .and_then(|l| tls::TlsListener::new(l, tls_cfg))
                {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "dashboard: cannot start");
                        return;
                    }
                };
                let mut rx = rx;
                let shutdown = async move {
                    while !*rx.borrow() {
                        if rx.changed().await.is_err() {
                            break;
                        }
                    }
                };
                let svc = app.into_make_service_with_connect_info::<api::Peer>();
                if let Err(e) = axum::serve(listener, svc).with_graceful_shutdown(shutdown).await {
                    tracing::error!(error = %e, "dashboard: stopped");
                }
            });
            // Handshake tasks still waiting are dropped with the runtime.
            rt.shutdown_timeout(Duration::from_secs(1));
            drop(keep);
        })?;
    Ok(WebHandle {
        addr,
        fingerprint,
        shutdown: Some(tx),
        thread: Some(thread),
    })
}

/// Starts the dashboard for `netvigil server` and prints where it is, its certificate's
/// fingerprint, and how to add the first account when there is none. A certificate that
/// cannot be read is an error; an address that cannot be bound is a warning (`None`): the
/// agents' records are still received.
pub fn start_for_server(
    addr: SocketAddr,
    data_dir: &Path,
    cert: Option<(&Path, &Path)>,
    db_url: Option<&str>,
) -> Result<Option<WebHandle>> {
    let o = WebOptions::new(addr, data_dir, cert, db_url)?;
    let (source, generated) = (o.cert.source.clone(), o.cert.generated);
    let users = accounts(&o.fleet, &o.users_dir)?;
    let h = match serve(o) {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(
                error = format!("{e:#}"),
                "dashboard: not served (agents are still received; pass --web ADDR:PORT or --no-web)"
            );
            return Ok(None);
        }
    };
    eprintln!("netvigil server: dashboard on https://{}", h.addr);
    eprintln!(
        "netvigil server: dashboard certificate {} ({}), SHA-256 fingerprint {}",
        source.display(),
        if generated {
            "self-signed, made now"
        } else {
            "as given or kept"
        },
        h.fingerprint
    );
    if users.list().map(|u| u.is_empty()).unwrap_or(true) {
        eprintln!(
            "netvigil server: no dashboard account yet: run `netvigil server user add NAME` (data dir {})",
            data_dir.display()
        );
    }
    Ok(Some(h))
}

/// Reads a password: one line from stdin, or on a terminal asked twice without echo.
fn read_password() -> Result<String> {
    use std::io::{BufRead as _, IsTerminal as _, Write as _};
    let stdin = std::io::stdin();
    let read_line = || -> Result<String> {
        let mut s = String::new();
        stdin.lock().read_line(&mut s).context("reading the password")?;
        Ok(s.trim_end_matches(['\n', '\r']).to_string())
    };
    if !stdin.is_terminal() {
        return read_line();
    }
    let stty = |arg: &str| {
        let _ = std::process::Command::new("stty")
            .arg(arg)
            .stdin(std::process::Stdio::inherit())
            .status();
    };
    let ask = |prompt: &str| -> Result<String> {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
        stty("-echo");
        let r = read_line();
        stty("echo");
        eprintln!();
        r
    };
    let a = ask("password: ")?;
    let b = ask("again: ")?;
    if a != b {
        anyhow::bail!("the two passwords differ: nothing changed");
    }
    Ok(a)
}

/// Runs `netvigil server user ...`.
pub fn user_command(
    data_dir: &Path,
    target: &crate::fleet::db::Target,
    c: crate::fleet::UserCommand,
) -> Result<()> {
    let users = accounts(target, &web_dir(data_dir))?;
    let now_ms = crate::fleet::server::now_ns().div_euclid(1_000_000);
    match c {
        crate::fleet::UserCommand::Add { name, replace } => {
            users::check_name(&name)?;
            let pw = read_password()?;
            users.add(&name, &pw, now_ms, replace)?;
            println!(
                "{} {name} (argon2id hash in {}); running servers see it at the next login",
                if replace { "password set for" } else { "added" },
                users.describe()
            );
        }
        crate::fleet::UserCommand::List => {
            for u in users.list()? {
                println!("{:<24} {} passkey(s)", u.name, u.passkeys.len());
            }
        }
        crate::fleet::UserCommand::Remove { name } => {
            if !users.remove(&name)? {
                anyhow::bail!("no account {name:?} (see netvigil server user list)");
            }
            println!("removed {name}; their sessions have ended on every server");
        }
    }
    Ok(())
}
