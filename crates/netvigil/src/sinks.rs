//! Where the live monitor's judged records go besides the JSON lines: the history database
//! (through the store's writer thread), the dashboard's live view, and alert delivery. Each
//! is optional; none of them can block the engine thread (the writer and the dispatcher have
//! bounded queues whose overflow is counted).

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use engine::judge::{Alert, Alerter, Assessment, Rule, Severity};
use engine::{Engine, Record};
use store::Backend;

use crate::notify::{Dispatcher, Notice};
use crate::web::metrics::{CHANNELS, Metrics};
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
        // The live writer commits small batches once a second: 4 MiB of page cache is plenty
        // (the 64 MiB default is for bulk loads), and it is most of an idle monitor's memory.
        db.set_cache_kib(4 * 1024)?;
        match db.get_state(ALERTER_STATE) {
            Ok(Some(bytes)) => match Alerter::load(&bytes) {
                Ok(a) => *alerter = a,
                Err(e) => tracing::warn!(
                    path = %path.display(),
                    error = %e,
                    "the saved alert baselines are unreadable; starting afresh"
                ),
            },
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "reading the saved alert baselines"),
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

    fn add(&mut self, r: Record, engine: &mut Engine) {
        if self.samples
            && let Record::Flow(f) = &r
            && let Some(s) = engine.take_samples(f.id)
        {
            self.batch.samples.extend(store::Sample::from_engine(f, s));
        }
        self.batch.records.push(r);
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

    /// The writer's counters now.
    pub fn stats(&self) -> store::StatsSnapshot {
        self.writer.stats().snapshot()
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
        tracing::warn!(error = %e, "saving the alert baselines");
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
    /// The counters `/metrics` and `netvigil status` report.
    pub metrics: Arc<Metrics>,
    /// Fleet mode: this machine is an enrolled agent; every record line goes to its server.
    pub uplink: Option<crate::fleet::agent::Uplink>,
}

impl Sinks {
    /// One judged record.
    /// One judged record; the store takes it last, by value (no copy per record).
    pub fn record(&mut self, r: Record, a: Option<&Assessment>, engine: &mut Engine, now: i64) {
        if let (Some(v), Some(a)) = (&self.view, a) {
            v.on_record(&r, a, now);
        }
        if self.every_connection
            && let (Some(d), Record::Connection(c)) = (&self.notify, &r)
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
        if let Some(st) = &mut self.store {
            st.add(r, engine);
        }
    }

    pub fn alert(&mut self, a: &Alert) {
        self.metrics.alerts_raised.fetch_add(1, Ordering::Relaxed);
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

    /// Copies the store's and the dispatcher's counters into [`Sinks::metrics`] (once a
    /// second); returns the store's counters for the self-watch.
    pub fn update_metrics(&self) -> Option<store::StatsSnapshot> {
        let m = &self.metrics;
        let st = self.store.as_ref().map(LiveStore::stats);
        if let Some(s) = &st {
            m.records_written.store(s.written, Ordering::Relaxed);
            m.records_unwritten.store(s.unwritten, Ordering::Relaxed);
            m.store_queued.store(s.queued, Ordering::Relaxed);
            m.store_lag_ms
                .store(s.last_commit_lag.as_millis() as u64, Ordering::Relaxed);
            m.store_max_lag_ms
                .store(s.max_commit_lag.as_millis() as u64, Ordering::Relaxed);
        }
        if let Some(d) = &self.notify {
            let s = d.stats();
            m.alerts_dropped.store(s.dropped, Ordering::Relaxed);
            m.alerts_suppressed
                .store(s.suppressed.iter().map(|x| x.1).sum(), Ordering::Relaxed);
            for c in &s.channels {
                if let Some(i) = CHANNELS.iter().position(|n| *n == c.name) {
                    m.channels[i].delivered.store(c.delivered, Ordering::Relaxed);
                    m.channels[i].failed.store(c.failed, Ordering::Relaxed);
                    m.channels[i].dropped.store(c.dropped, Ordering::Relaxed);
                }
            }
        }
        st
    }

    /// End of one pass of the main loop.
    pub fn flush(&mut self) {
        if let Some(st) = &mut self.store {
            st.maybe_send(false);
        }
    }

    /// Clean shutdown: the store commits and saves the baselines, queued alerts go out (a few
    /// seconds at most), the dashboard stops. Prints what each stage did.
    /// A digest sentence: to the dashboard, and to the alert channels as an `info` notice
    /// (rule `digest`; the desktop's default minimum severity, low, leaves it out there).
    pub fn digest(&self, period: &'static str, text: String, now: i64) {
        if let Some(d) = &self.notify {
            let mut json = String::from("{\"type\":\"digest\",\"v\":1,\"period\":");
            engine::record::write_json_str(&mut json, period);
            json.push_str(",\"text\":");
            engine::record::write_json_str(&mut json, &text);
            json.push('}');
            d.send(Notice {
                id: format!("digest-{period}-{}", now / 1_000_000_000),
                ts: now,
                severity: engine::judge::Severity::Info,
                rule: "digest",
                app: None,
                remote: None,
                port: None,
                reason: text.clone(),
                json,
            });
        }
        if let Some(v) = &self.view {
            v.set_digest(period, text, now);
        }
    }

    /// The last 24 hours in one sentence, from the history database (`None` without one).
    pub fn day_digest(&self, now: i64) -> Option<String> {
        let path = &self.store.as_ref()?.path;
        let mut db = store::sqlite::SqliteStore::open(path).ok()?;
        let q = store::Query {
            since: Some(now - 86_400 * 1_000_000_000),
            ..store::Query::default()
        };
        let facts = crate::history::digest_facts(
            &db.flows(&q).ok()?,
            &db.alerts(&q).ok()?,
            engine::judge::Period::Day,
        );
        Some(engine::judge::digest(&facts))
    }

    /// One record's JSON line (no newline), for the fleet server.
    pub fn line(&self, line: &str) {
        if let Some(u) = &self.uplink {
            u.push(line.trim_end().to_string());
        }
    }

    pub fn close(mut self, alerter: &Alerter) {
        if let Some(u) = self.uplink.take() {
            let s = u.close(Duration::from_secs(2));
            tracing::info!(
                delivered = s.delivered_records,
                spooled_batches = s.spooled_batches,
                dropped = s.dropped_records + s.dropped_queue_full,
                "fleet: {} records delivered, {} batches waiting in the spool, {} records dropped{}",
                crate::units::count(s.delivered_records),
                s.spooled_batches,
                s.dropped_records + s.dropped_queue_full,
                s.last_error
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default()
            );
        }
        if let Some(st) = self.store.take() {
            let path = st.path.clone();
            let s = st.close(alerter);
            tracing::info!(
                written = s.written,
                unwritten = s.unwritten,
                "history: {} records written to {}, {} not written{}",
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
                tracing::warn!(dropped = s.dropped, "alerts: dropped (delivery queue full)");
            }
        }
        if let Some(h) = self.server.take() {
            h.stop();
        }
    }
}

/// Closed connections the live dashboard keeps beside every open one (closed ones are in the
/// history). Each costs about 1 KiB: 20,000 (the view's default) was 20 MiB of the monitor's
/// memory when traffic brings many short flows; 5,000 is about 5 MiB.
pub const LIVE_CLOSED_CONNECTIONS: usize = 5_000;
/// Open connections are all shown, up to this many in all (a machine with more is a server
/// that needs the history views, not a live list).
pub const LIVE_CONNECTIONS: usize = 100_000;

/// Starts the dashboard on `listen` with the database at `db` (for its history views).
pub fn start_web(
    listen: std::net::SocketAddr,
    db: Option<PathBuf>,
    judge: &engine::judge::Config,
    metrics: Arc<Metrics>,
    on_settings: Option<web::settings::OnSave>,
) -> Result<(Arc<LiveView>, web::ServerHandle)> {
    let view = LiveView::new(
        judge.clone(),
        Some(Box::new(intel::ServiceNames::system())),
        web::Limits {
            max_connections: LIVE_CONNECTIONS,
            max_closed: LIVE_CLOSED_CONNECTIONS,
            ..web::Limits::default()
        },
    );
    let dir = web::settings::config_dir().context("no config directory (HOME is not set)")?;
    let secret = web::load_or_create_secret(&dir).map_err(anyhow::Error::msg)?;
    let mut opts = web::ServeOptions::new(db, secret);
    opts.addr = listen;
    opts.metrics = Some(metrics);
    opts.on_settings = on_settings;
    // RDAP on demand: the IANA bootstrap is kept beside the database once fetched.
    match crate::rdap_fetch::Rdap::new(opts.store_path.as_deref().and_then(std::path::Path::parent)) {
        Ok(r) => opts.rdap = Some(Arc::new(r)),
        Err(e) => tracing::warn!(error = %e, "whois (RDAP) lookups are off"),
    }
    let handle = web::serve(Arc::clone(&view), opts).map_err(anyhow::Error::msg)?;
    tracing::info!(%listen, "dashboard on http://{listen}/");
    Ok((view, handle))
}

/// When netvigil's own use is worth an alert (rule `self_watch`).
#[derive(Clone, Debug)]
pub struct SelfLimits {
    /// CPU use averaged over [`SelfLimits::cpu_window`], percent of one CPU.
    pub cpu_percent: f64,
    pub cpu_window: Duration,
    /// Resident memory.
    pub rss_bytes: u64,
    /// A commit of the history database later than this after its oldest record.
    pub commit_lag: Duration,
    /// At most one alert per condition this often.
    pub every: Duration,
}

impl Default for SelfLimits {
    /// 5% of a CPU over a minute, 100 MB, a 30 s commit lag, once an hour. Any kernel drop
    /// and any record not written are alerted too.
    fn default() -> Self {
        Self {
            cpu_percent: 5.0,
            cpu_window: Duration::from_secs(60),
            rss_bytes: 100_000_000,
            commit_lag: Duration::from_secs(30),
            every: Duration::from_secs(3600),
        }
    }
}

/// What netvigil measured about itself at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SelfSample {
    /// CPU time used so far (user + system), clock ticks of /proc/self/stat.
    pub cpu_ticks: u64,
    pub rss_bytes: u64,
    /// Kernel capture drops since start.
    pub kernel_drops: u64,
    /// Records that never reached the database, since start.
    pub unwritten: u64,
    /// The last commit's lag.
    pub commit_lag: Duration,
}

impl SelfSample {
    /// Reads /proc/self/stat and /proc/self/status (zeros when they cannot be read).
    pub fn read(kernel_drops: u64, store: Option<&store::StatsSnapshot>) -> Self {
        let ticks = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|t| web::health::parse_pid_stat_ticks(&t));
        let rss = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|t| web::health::parse_status_rss(&t));
        Self {
            cpu_ticks: ticks.unwrap_or(0),
            rss_bytes: rss.unwrap_or(0),
            kernel_drops,
            unwritten: store.map_or(0, |s| s.unwritten),
            commit_lag: store.map_or(Duration::ZERO, |s| s.last_commit_lag),
        }
    }
}

/// Clock ticks per second of /proc/PID/stat (USER_HZ: 100 on every Linux ABI).
const USER_HZ: f64 = 100.0;
const SEC: i64 = 1_000_000_000;

/// netvigil watching itself: its CPU over a sliding window, memory, kernel drops and store
/// health, each compared with [`SelfLimits`]; a condition alerts at most once per
/// [`SelfLimits::every`]. Pure: samples and `now` (ns) come from the caller.
#[derive(Debug, Default)]
pub struct SelfWatch {
    limits: SelfLimits,
    cpu: VecDeque<(i64, u64)>,
    last: Option<SelfSample>,
    alerted: HashMap<&'static str, i64>,
}

impl SelfWatch {
    pub fn new(limits: SelfLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Takes one sample; pushes the alerts it calls for onto `out`; returns the CPU use
    /// (percent of one CPU) over the window so far, `None` before two samples.
    pub fn observe(&mut self, s: &SelfSample, now: i64, out: &mut Vec<Alert>) -> Option<f64> {
        let window = i64::try_from(self.limits.cpu_window.as_nanos()).unwrap_or(i64::MAX);
        self.cpu.push_back((now, s.cpu_ticks));
        while self.cpu.len() > 2 && self.cpu[1].0 <= now - window {
            self.cpu.pop_front();
        }
        let cpu = match (self.cpu.front(), self.cpu.back()) {
            (Some(&(t0, k0)), Some(&(t1, k1))) if t1 > t0 => {
                Some(k1.saturating_sub(k0) as f64 / USER_HZ * 100.0 / ((t1 - t0) as f64 / SEC as f64))
            }
            _ => None,
        };
        let full = self
            .cpu
            .front()
            .is_some_and(|&(t0, _)| now - t0 >= window * 9 / 10);
        let prev = self.last.replace(s.clone()).unwrap_or_default();
        let mb = |b: u64| format!("{:.1} MB", b as f64 / 1e6);
        if let Some(c) = cpu.filter(|&c| full && c > self.limits.cpu_percent) {
            let reason = format!(
                "netvigil used {c:.1}% of a CPU over the last {} s (limit {}%)",
                self.limits.cpu_window.as_secs(),
                self.limits.cpu_percent
            );
            self.raise(out, now, "cpu", Severity::Low, reason);
        }
        if s.rss_bytes > self.limits.rss_bytes {
            let reason = format!(
                "netvigil uses {} of memory (limit {})",
                mb(s.rss_bytes),
                mb(self.limits.rss_bytes)
            );
            self.raise(out, now, "memory", Severity::Low, reason);
        }
        if s.kernel_drops > prev.kernel_drops {
            let reason = format!(
                "the kernel dropped {} packets netvigil did not read in time ({} since start): some flows are counted short",
                s.kernel_drops - prev.kernel_drops,
                s.kernel_drops
            );
            self.raise(out, now, "kernel_drops", Severity::Medium, reason);
        }
        if s.unwritten > prev.unwritten {
            let reason = format!(
                "{} records did not reach the history database ({} since start): it is not keeping up or cannot be written",
                s.unwritten - prev.unwritten,
                s.unwritten
            );
            self.raise(out, now, "store_loss", Severity::Medium, reason);
        } else if s.commit_lag > self.limits.commit_lag {
            let reason = format!(
                "the history database is {} s behind (limit {} s)",
                s.commit_lag.as_secs(),
                self.limits.commit_lag.as_secs()
            );
            self.raise(out, now, "store_lag", Severity::Low, reason);
        }
        cpu
    }

    fn raise(
        &mut self,
        out: &mut Vec<Alert>,
        now: i64,
        what: &'static str,
        severity: Severity,
        reason: String,
    ) {
        let every = i64::try_from(self.limits.every.as_nanos()).unwrap_or(i64::MAX);
        if self.alerted.get(what).is_some_and(|&t| now - t < every) {
            return;
        }
        self.alerted.insert(what, now);
        // Stable for the condition and the hour (FNV-1a), 16 hex digits like every alert id.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let slot = now.div_euclid(every.max(1)).to_le_bytes();
        for b in Rule::SelfWatch.as_str().bytes().chain(what.bytes()).chain(slot) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        out.push(Alert {
            id: format!("{h:016x}"),
            ts: now,
            severity,
            rule: Rule::SelfWatch,
            app: Some("netvigil".into()),
            remote: None,
            port: None,
            bytes: None,
            score: None,
            reason,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ticks: u64, rss: u64, drops: u64, unwritten: u64) -> SelfSample {
        SelfSample {
            cpu_ticks: ticks,
            rss_bytes: rss,
            kernel_drops: drops,
            unwritten,
            commit_lag: Duration::ZERO,
        }
    }

    #[test]
    fn quiet_monitor_raises_nothing_and_measures_cpu() {
        let mut w = SelfWatch::new(SelfLimits::default());
        let mut out = Vec::new();
        let mut cpu = None;
        // 1 tick a second = 1% of a CPU, 20 MB, for two minutes.
        for i in 0..120u64 {
            cpu = w.observe(&sample(i, 20_000_000, 0, 0), i as i64 * SEC, &mut out);
        }
        assert!(out.is_empty(), "{out:#?}");
        let c = cpu.unwrap();
        assert!((c - 1.0).abs() < 0.01, "{c}");
    }

    #[test]
    fn each_condition_alerts_once_an_hour() {
        let mut w = SelfWatch::new(SelfLimits::default());
        let mut out = Vec::new();
        // 10 ticks a second = 10% of a CPU; 150 MB; drops at 30 s and 40 s; records lost at 50 s.
        for i in 0..120u64 {
            let drops = if i >= 40 {
                9
            } else if i >= 30 {
                4
            } else {
                0
            };
            let lost = if i >= 50 { 100 } else { 0 };
            w.observe(
                &sample(i * 10, 150_000_000, drops, lost),
                i as i64 * SEC,
                &mut out,
            );
        }
        let rules: Vec<&str> = out.iter().map(|a| a.rule.as_str()).collect();
        assert!(rules.iter().all(|r| *r == "self_watch"));
        let count = |word: &str| out.iter().filter(|a| a.reason.contains(word)).count();
        assert_eq!(count("of a CPU"), 1, "{out:#?}");
        assert_eq!(count("of memory"), 1, "{out:#?}");
        assert_eq!(count("the kernel dropped"), 1, "{out:#?}");
        assert_eq!(count("did not reach the history"), 1, "{out:#?}");
        assert_eq!(out.len(), 4);
        let cpu = out.iter().find(|a| a.reason.contains("of a CPU")).unwrap();
        // Not before the window is (nearly) full.
        assert!(cpu.ts >= 54 * SEC, "{}", cpu.ts);
        assert!(cpu.reason.contains("10.0% of a CPU"), "{}", cpu.reason);
        assert!(
            out.iter()
                .any(|a| a.reason.contains("150.0 MB") && a.app.as_deref() == Some("netvigil"))
        );
        let drops = out.iter().find(|a| a.reason.contains("kernel")).unwrap();
        assert_eq!(drops.ts, 30 * SEC);
        assert!(drops.reason.contains("dropped 4 packets"), "{}", drops.reason);
        // An hour later the memory condition (still true) alerts again, with another id.
        let mut later = Vec::new();
        w.observe(&sample(1200, 150_000_000, 9, 100), 3700 * SEC, &mut later);
        assert_eq!(later.len(), 1, "{later:#?}");
        assert!(later[0].reason.contains("of memory"));
        let first = out.iter().find(|a| a.reason.contains("of memory")).unwrap();
        assert_ne!(first.id, later[0].id);
        assert_eq!(later[0].id.len(), 16);
    }

    #[test]
    fn store_lag_alerts_when_nothing_is_lost() {
        let mut w = SelfWatch::new(SelfLimits::default());
        let mut out = Vec::new();
        let mut s = sample(0, 1, 0, 0);
        s.commit_lag = Duration::from_secs(45);
        w.observe(&s, 0, &mut out);
        assert_eq!(out.len(), 1);
        assert!(out[0].reason.contains("45 s behind"), "{}", out[0].reason);
    }
}
