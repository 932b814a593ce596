//! The local web dashboard: an HTTP server (axum, one thread with its own runtime) bound to
//! loopback, serving the page embedded in the binary, a JSON API over the [`LiveView`] and the
//! store, and a Server-Sent Events stream of updates. Routes and examples: docs/api.md.
//!
//! Safety: only the names `localhost`, `127.0.0.1` and `[::1]` (plus any the caller allows)
//! are accepted in `Host` (DNS rebinding); state changes (POST) need the per-install secret in
//! the `nv_token` cookie (SameSite=Strict, HttpOnly; set when the page loads, never in a URL)
//! and, when the browser sends `Origin`, the same origin. Every answer carries a CSP without
//! inline script, `nosniff` and `frame-ancestors 'none'`.

// Built and tested but not called by `netvigil run` yet: pushing rDNS names into the view
// (`LiveView::set_rdns`) and a few accessors. Remove this when the pipeline uses them.
#![allow(dead_code)]

pub mod api;
pub mod health;
pub mod metrics;
pub mod settings;
pub mod state;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

pub use state::{Limits, LiveView};

/// Where the dashboard listens by default.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8077";

/// How to run the server.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub addr: SocketAddr,
    /// The SQLite database for history and export (`None` or a missing file: those routes
    /// say there is no history yet).
    pub store_path: Option<PathBuf>,
    /// Where `POST /api/settings` writes (`None`: the route answers 503 and says why).
    pub settings_path: Option<PathBuf>,
    /// The per-install secret the page gets in its cookie; POSTs must bring it back.
    pub secret: String,
    /// Host names accepted besides localhost, 127.0.0.1 and [::1] (without port).
    pub extra_hosts: Vec<String>,
    /// Read /proc for network health and per-process CPU and memory every this often
    /// (`None`: the pipeline calls [`LiveView::set_health`] itself, or nobody does).
    pub sample_every: Option<Duration>,
    /// Root of the proc file system for the sampler.
    pub proc_root: PathBuf,
    /// Seconds between SSE heartbeats.
    pub heartbeat: Duration,
    /// The pipeline's counters for `GET /metrics` (`None`: that route says there are none).
    pub metrics: Option<Arc<metrics::Metrics>>,
    /// RDAP (whois) lookups for `/api/whois/{ip}` (`None`: the route answers from what the view
    /// knows and says RDAP is off).
    pub rdap: Option<Arc<crate::rdap_fetch::Rdap>>,
    /// Told about settings once saved (`None`: saved only).
    pub on_settings: Option<settings::OnSave>,
}

impl ServeOptions {
    /// Defaults: 127.0.0.1:8077, settings in the config dir, /proc sampled every 2 s.
    pub fn new(store_path: Option<PathBuf>, secret: String) -> Self {
        Self {
            addr: DEFAULT_ADDR.parse().expect("constant address"),
            store_path,
            settings_path: settings::config_dir().map(|d| d.join("settings.json")),
            secret,
            extra_hosts: Vec::new(),
            sample_every: Some(Duration::from_secs(2)),
            proc_root: PathBuf::from("/proc"),
            heartbeat: Duration::from_secs(5),
            metrics: None,
            rdap: None,
            on_settings: None,
        }
    }
}

/// Reads the per-install secret from `dir/web.secret`, creating it (32 random bytes as hex,
/// mode 0600) when missing.
pub fn load_or_create_secret(dir: &Path) -> Result<String, String> {
    let path = dir.join("web.secret");
    if let Ok(s) = std::fs::read_to_string(&path) {
        let s = s.trim().to_string();
        if s.len() >= 32 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(s);
        }
        return Err(format!(
            "{} does not hold a secret (64 hex digits); delete it and a new one is made",
            path.display()
        ));
    }
    let s = random_secret()?;
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    use std::io::Write as _;
    o.open(&path)
        .and_then(|mut f| f.write_all(s.as_bytes()))
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(s)
}

/// 32 random bytes as 64 hex digits.
pub fn random_secret() -> Result<String, String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| format!("no randomness for the dashboard secret: {e}"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// A running server. [`ServerHandle::stop`] (or dropping it) shuts it down: SSE streams end,
/// the listener closes, the threads are joined.
#[derive(Debug)]
pub struct ServerHandle {
    /// The address actually bound (port 0 in the options picks a free one).
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
    sampler: Option<JoinHandle<()>>,
    sampler_stop: Arc<AtomicBool>,
}

impl ServerHandle {
    /// Stops the server and waits for it.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        self.sampler_stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(t) = self.sampler.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// Binds `opts.addr` and serves the dashboard for `view` on a thread of its own. Fails when the
/// address cannot be bound (in use, not allowed), saying which.
pub fn serve(view: Arc<LiveView>, opts: ServeOptions) -> Result<ServerHandle, String> {
    let std_listener = std::net::TcpListener::bind(opts.addr).map_err(|e| {
        format!(
            "the dashboard cannot listen on {}: {e} (another netvigil running? pass --web-addr or --no-web)",
            opts.addr
        )
    })?;
    std_listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let addr = std_listener.local_addr().map_err(|e| e.to_string())?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let sampler_stop = Arc::new(AtomicBool::new(false));
    let sampler = opts.sample_every.map(|every| {
        let view = view.clone();
        let stop = sampler_stop.clone();
        let root = opts.proc_root.clone();
        std::thread::Builder::new()
            .name("web-sampler".into())
            .spawn(move || sample_loop(&view, &root, every, &stop))
            .map_err(|e| e.to_string())
    });
    let sampler = sampler.transpose()?;
    let app = api::router(api::AppState::new(view, &opts, rx.clone()));
    let thread = std::thread::Builder::new()
        .name("web".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "the dashboard cannot start");
                    return;
                }
            };
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(std_listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "the dashboard cannot start");
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
                if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
                    tracing::error!(error = %e, "the dashboard stopped");
                }
            });
        })
        .map_err(|e| e.to_string())?;
    Ok(ServerHandle {
        addr,
        shutdown: Some(tx),
        thread: Some(thread),
        sampler,
        sampler_stop,
    })
}

fn now_ms() -> i64 {
    crate::live::now_nanos().div_euclid(1_000_000)
}

fn sample_loop(view: &LiveView, root: &Path, every: Duration, stop: &AtomicBool) {
    let mut s = health::Sampler::new(root);
    while !stop.load(Ordering::SeqCst) {
        let now = now_ms();
        view.set_health(s.sample(now));
        let pids = view.pids(256);
        view.set_usage(s.usage(&pids, now));
        let mut waited = Duration::ZERO;
        while waited < every && !stop.load(Ordering::SeqCst) {
            let step = Duration::from_millis(100).min(every - waited);
            std::thread::sleep(step);
            waited += step;
        }
    }
}
