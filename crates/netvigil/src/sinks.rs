//! Where the live monitor's judged records go besides the JSON lines: the history database
//! (through the store's writer thread), the dashboard's live view, and alert delivery. Each
//! is optional; none of them can block the engine thread (the writer and the dispatcher have
//! bounded queues whose overflow is counted).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use engine::judge::{Alert, Alerter, Assessment};
use engine::{Engine, Record};
use store::Backend;

use crate::notify::{Dispatcher, Notice};
use crate::web::{self, LiveView};

/// Key under which the alert baselines rest in the store.
pub const ALERTER_STATE: &str = "judge.alerter";

/// The history database as the live monitor feeds it.
pub struct LiveStore {
    writer: store::Writer,
    batch: store::Batch,
    last_send: Instant,
    pub path: PathBuf,
    samples: bool,
}

impl LiveStore {
    /// Opens (creating) the database in `dir`, restores the alert baselines into `alerter`
    /// when a previous run saved them, and starts the writer thread. Says so when the
    /// database is new (the first-run notice).
    pub fn open(
        dir: &std::path::Path,
        retention: store::Retention,
        samples: bool,
        alerter: &mut Alerter,
    ) -> Result<Self> {
        let path = dir.join(store::sqlite::DB_FILE);
        let fresh = !path.exists();
        let mut db = store::sqlite::SqliteStore::open_dir(dir)?;
        match db.get_state(ALERTER_STATE) {
            Ok(Some(bytes)) => match Alerter::load(&bytes) {
                Ok(a) => *alerter = a,
                Err(e) => eprintln!(
                    "netvigil: warning: the saved alert baselines in {} are unreadable ({e}); starting afresh",
                    path.display()
                ),
            },
            Ok(None) => {}
            Err(e) => eprintln!("netvigil: warning: reading the saved alert baselines: {e}"),
        }
        if fresh {
            eprintln!(
                "netvigil: first run: history is kept in {} (rolling retention; `netvigil purge` deletes it). {}",
                path.display(),
                if samples {
                    "Payload samples are ON: the first bytes of each flow are kept, encrypted."
                } else {
                    "Payloads are never recorded unless you turn samples on in the config."
                }
            );
        }
        let writer = store::Writer::spawn(
            db,
            store::WriterConfig {
                retention: Some(retention),
                ..store::WriterConfig::default()
            },
        );
        Ok(Self {
            writer,
            batch: store::Batch::default(),
            last_send: Instant::now(),
            path,
            samples,
        })
    }

    fn add(&mut self, r: &Record, engine: &mut Engine) {
        if self.samples
            && let Record::Flow(f) = r
            && let Some(s) = engine.take_samples(f.id)
        {
            self.batch.samples.extend(store::Sample::from_engine(f, s));
        }
        self.batch.records.push(r.clone());
    }

    fn add_alert(&mut self, a: &Alert) {
        let mut json = String::new();
        a.write_json(&mut json);
        self.batch.alerts.push(store::AlertRow {
            id: a.id.clone(),
            ts: a.ts,
            severity: store::Severity::parse(a.severity.as_str()).unwrap_or(store::Severity::Info),
            rule: a.rule.as_str().to_string(),
            app: a.app.clone(),
            remote: a.remote.clone(),
            reason: a.reason.clone(),
            json,
        });
    }

    /// Hands the batch to the writer every 250 ms or 2,000 records, never waiting: a full
    /// queue drops the batch and the writer counts it.
    fn maybe_send(&mut self, force: bool) {
        if self.batch.is_empty() {
            return;
        }
        if force || self.batch.len() >= 2000 || self.last_send.elapsed() >= Duration::from_millis(250) {
            let _ = self.writer.try_send(std::mem::take(&mut self.batch));
            self.last_send = Instant::now();
        }
    }

    /// Commits what is left, then saves the alert baselines; returns the writer's counters.
    pub fn close(mut self, alerter: &Alerter) -> store::StatsSnapshot {
        if !self.batch.is_empty() {
            let _ = self.writer.send(std::mem::take(&mut self.batch));
        }
        let stats = self.writer.close();
        save_baselines(&self.path, alerter);
        stats
    }
}

/// Saves the alert baselines through a second connection (the writer keeps its own).
pub fn save_baselines(path: &std::path::Path, alerter: &Alerter) {
    let r = store::sqlite::SqliteStore::open(path)
        .and_then(|mut db| db.put_state(ALERTER_STATE, &alerter.save()));
    if let Err(e) = r {
        eprintln!("netvigil: warning: saving the alert baselines: {e}");
    }
}

/// Every consumer of judged records.
#[derive(Default)]
pub struct Sinks {
    pub store: Option<LiveStore>,
    pub view: Option<Arc<LiveView>>,
    pub server: Option<web::ServerHandle>,
    pub notify: Option<Dispatcher>,
    /// Also notify about every new connection (the opt-in "see everything" mode).
    pub every_connection: bool,
}

impl Sinks {
    /// One judged record.
    pub fn record(&mut self, r: &Record, a: Option<&Assessment>, engine: &mut Engine, now: i64) {
        if let Some(st) = &mut self.store {
            st.add(r, engine);
        }
        if let (Some(v), Some(a)) = (&self.view, a) {
            v.on_record(r, a, now);
        }
        if self.every_connection
            && let (Some(d), Record::Connection(c)) = (&self.notify, r)
            && c.event == engine::connections::ConnEvent::Opened
        {
            let _ = d.send(Notice::connection(
                c.ts,
                c.process.as_ref().map(|p| p.name.as_str()),
                c.direction == Some(engine::connections::Direction::Inbound),
                &c.proto.name(),
                c.remote,
                None,
            ));
        }
    }

    pub fn alert(&mut self, a: &Alert) {
        if let Some(st) = &mut self.store {
            st.add_alert(a);
        }
        if let Some(v) = &self.view {
            v.on_alert(a);
        }
        if let Some(d) = &self.notify {
            d.send_alert(a);
        }
    }

    pub fn snapshot(&self, snap: &engine::sockets::SocketSnapshot) {
        if let Some(v) = &self.view {
            v.on_snapshot(snap);
        }
    }

    /// End of one pass of the main loop.
    pub fn flush(&mut self) {
        if let Some(st) = &mut self.store {
            st.maybe_send(false);
        }
    }

    /// Clean shutdown: the store commits and saves the baselines, queued alerts go out (a few
    /// seconds at most), the dashboard stops. Prints what each stage did.
    pub fn close(mut self, alerter: &Alerter) {
        if let Some(st) = self.store.take() {
            let path = st.path.clone();
            let s = st.close(alerter);
            eprintln!(
                "netvigil: history: {} records written to {}, {} not written{}",
                crate::units::count(s.written),
                path.display(),
                crate::units::count(s.unwritten),
                s.last_error
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default()
            );
        }
        if let Some(d) = self.notify.take() {
            let s = d.shutdown(Duration::from_secs(3));
            if s.dropped > 0 {
                eprintln!("netvigil: alerts: {} dropped (delivery queue full)", s.dropped);
            }
        }
        if let Some(h) = self.server.take() {
            h.stop();
        }
    }
}

/// Starts the dashboard on `listen` with the database at `db` (for its history views).
pub fn start_web(
    listen: std::net::SocketAddr,
    db: Option<PathBuf>,
    judge: &engine::judge::Config,
) -> Result<(Arc<LiveView>, web::ServerHandle)> {
    let view = LiveView::new(
        judge.clone(),
        Some(Box::new(intel::ServiceNames::system())),
        web::Limits::default(),
    );
    let dir = web::settings::config_dir().context("no config directory (HOME is not set)")?;
    let secret = web::load_or_create_secret(&dir).map_err(anyhow::Error::msg)?;
    let mut opts = web::ServeOptions::new(db, secret);
    opts.addr = listen;
    let handle = web::serve(Arc::clone(&view), opts).map_err(anyhow::Error::msg)?;
    eprintln!("netvigil: dashboard on http://{listen}/");
    Ok((view, handle))
}
