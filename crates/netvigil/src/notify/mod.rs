//! Alert delivery: the terminal, desktop notifications (D-Bus), a webhook and syslog, behind
//! noise control ([`filter`]).
//!
//! ```text
//! pipeline --Dispatcher::send (try_send; full: counted as dropped)--> bounded queue
//!   -> router thread: NoiseFilter (dedup, rate limits, snooze, safe lists, min severity),
//!      then each channel's own min severity
//!   -> one bounded queue + one thread per channel (full: dropped, counted for that channel)
//!        terminal | desktop (D-Bus Notify) | webhook (HTTP POST, retries) | syslog (RFC 5424)
//! ```
//!
//! Nothing here blocks the caller: a slow or dead webhook fills only its own queue. Every
//! stage counts what it delivered, failed and dropped ([`Stats`]). [`Dispatcher::shutdown`]
//! delivers what is queued within a grace period, then stops retries and waits.

// Built and tested but not called by `netvigil run` yet: runtime controls (snooze and safe
// lists changed from the dashboard) and per-channel statistics. Remove this when they are.
#![allow(dead_code)]

pub mod filter;
pub mod terminal;
pub mod webhook;

#[cfg(unix)]
pub mod desktop;
#[cfg(unix)]
pub mod syslog;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use engine::judge::{Alert, Severity};

use crate::config::{CONNECTION_RULE, ChannelCommon, Config, format_time};
use filter::{NoiseFilter, NoiseSettings, SafeLists, Verdict};

/// One thing to tell the user: an alert, or (opt-in) a new connection.
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    pub id: String,
    /// Nanoseconds since the epoch.
    pub ts: i64,
    pub severity: Severity,
    /// The alert's rule name, or [`CONNECTION_RULE`].
    pub rule: &'static str,
    pub app: Option<String>,
    pub remote: Option<String>,
    pub port: Option<u16>,
    /// One sentence a person can read.
    pub reason: String,
    /// The record as one JSON object (an `alert` record, or a `connection_notice`).
    pub json: String,
}

impl Notice {
    /// From an engine alert; `json` is its `alert` record.
    pub fn from_alert(a: &Alert) -> Self {
        let mut json = String::new();
        a.write_json(&mut json);
        Self {
            id: a.id.clone(),
            ts: a.ts,
            severity: a.severity,
            rule: a.rule.as_str(),
            app: a.app.clone(),
            remote: a.remote.clone(),
            port: a.port,
            reason: a.reason.clone(),
            json,
        }
    }

    /// A new connection (the opt-in "every connection" mode): `proto` "tcp"/"udp"/...,
    /// `remote` the other end, `domain` its name when known. Severity `info`.
    pub fn connection(
        ts: i64,
        app: Option<&str>,
        inbound: bool,
        proto: &str,
        remote: std::net::SocketAddr,
        domain: Option<&str>,
    ) -> Self {
        let host = domain.map_or_else(|| remote.ip().to_string(), str::to_string);
        let who = app.unwrap_or("an unknown program");
        let reason = if inbound {
            format!(
                "{who} accepted a {} connection from {host} ({remote})",
                proto.to_uppercase()
            )
        } else {
            format!(
                "{who} opened a {} connection to {host} ({remote})",
                proto.to_uppercase()
            )
        };
        let mut json = String::from("{\"type\":\"connection_notice\",\"v\":1,\"ts\":");
        engine::record::write_json_str(&mut json, &format_time(ts));
        json.push_str(",\"app\":");
        match app {
            Some(a) => engine::record::write_json_str(&mut json, a),
            None => json.push_str("null"),
        }
        let _ = write!(
            json,
            ",\"direction\":\"{}\",\"proto\":",
            if inbound { "inbound" } else { "outbound" }
        );
        engine::record::write_json_str(&mut json, proto);
        json.push_str(",\"remote\":");
        engine::record::write_json_str(&mut json, &host);
        let _ = write!(
            json,
            ",\"ip\":\"{}\",\"port\":{},\"reason\":",
            remote.ip(),
            remote.port()
        );
        engine::record::write_json_str(&mut json, &reason);
        json.push('}');
        Self {
            id: format!("conn-{ts:x}-{}", remote.port()),
            ts,
            severity: Severity::Info,
            rule: CONNECTION_RULE,
            app: app.map(str::to_string),
            remote: Some(host),
            port: Some(remote.port()),
            reason,
            json,
        }
    }

    /// A short title: "netvigil: medium alert (inbound_accept)" / "netvigil: new connection".
    pub fn title(&self) -> String {
        if self.rule == CONNECTION_RULE {
            "netvigil: new connection".into()
        } else {
            format!("netvigil: {} alert ({})", self.severity.as_str(), self.rule)
        }
    }

    /// One line for people: `[medium] inbound_accept sshd 203.0.113.5:22: <reason>`.
    pub fn line(&self) -> String {
        let mut s = format!("[{}] {}", self.severity.as_str(), self.rule);
        if let Some(a) = &self.app {
            let _ = write!(s, " {a}");
        }
        match (&self.remote, self.port) {
            (Some(r), Some(p)) => {
                let _ = write!(s, " {r} port {p}");
            }
            (Some(r), None) => {
                let _ = write!(s, " {r}");
            }
            (None, Some(p)) => {
                let _ = write!(s, " port {p}");
            }
            (None, None) => {}
        }
        let _ = write!(s, ": {}", self.reason);
        s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
    }
}

/// Tells a channel thread to stop waiting (shutdown grace period over).
#[derive(Debug, Default)]
pub struct Stop {
    stopped: Mutex<bool>,
    cv: Condvar,
}

impl Stop {
    /// Sleeps `d` unless stopped first; `true` when stopped.
    pub fn sleep(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut s = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        while !*s {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            s = self
                .cv
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
    pub fn is_stopped(&self) -> bool {
        *self.stopped.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn stop(&self) {
        *self.stopped.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cv.notify_all();
    }
}

/// A delivery channel: one notice at a time, on its own thread.
pub trait Sink: Send {
    /// "terminal", "desktop", "webhook", "syslog".
    fn name(&self) -> &'static str;
    /// Delivers `n` (retrying as the channel does, giving up early when `stop` fires). `Ok`
    /// with the number of retries it took, or why it failed.
    fn deliver(&mut self, n: &Notice, stop: &Stop) -> Result<u32, String>;
}

#[derive(Debug, Default)]
struct ChannelCounters {
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    retries: AtomicU64,
}

/// Counters of one channel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelStats {
    pub name: &'static str,
    pub delivered: u64,
    pub failed: u64,
    /// Not delivered: the channel's queue was full, or shutdown came first.
    pub dropped: u64,
    /// Extra attempts (webhook).
    pub retries: u64,
}

/// Counters of the whole dispatcher.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Accepted from the pipeline.
    pub received: u64,
    /// Refused: the dispatcher's queue was full (the pipeline never waits).
    pub dropped: u64,
    /// Held back by noise control, by reason ([`Verdict::as_str`]).
    pub suppressed: Vec<(&'static str, u64)>,
    pub channels: Vec<ChannelStats>,
}

impl Stats {
    /// Suppressed for one reason.
    pub fn suppressed(&self, v: Verdict) -> u64 {
        self.suppressed
            .iter()
            .find(|(k, _)| *k == v.as_str())
            .map_or(0, |x| x.1)
    }
    pub fn channel(&self, name: &str) -> Option<&ChannelStats> {
        self.channels.iter().find(|c| c.name == name)
    }
}

#[derive(Debug)]
struct Shared {
    received: AtomicU64,
    dropped: AtomicU64,
    suppressed: [AtomicU64; 6],
    names: Vec<&'static str>,
    channels: Vec<ChannelCounters>,
    stop: Stop,
    /// Channel threads still running, and a condvar signalled when one ends.
    running: Mutex<usize>,
    done: Condvar,
}

impl Shared {
    fn stats(&self) -> Stats {
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            received: ld(&self.received),
            dropped: ld(&self.dropped),
            suppressed: Verdict::DROPS
                .iter()
                .zip(&self.suppressed)
                .map(|(v, c)| (v.as_str(), ld(c)))
                .collect(),
            channels: self
                .names
                .iter()
                .zip(&self.channels)
                .map(|(name, c)| ChannelStats {
                    name,
                    delivered: ld(&c.delivered),
                    failed: ld(&c.failed),
                    dropped: ld(&c.dropped),
                    retries: ld(&c.retries),
                })
                .collect(),
        }
    }
}

/// Runtime changes (the dashboard's settings).
#[derive(Clone, Debug, PartialEq)]
pub enum Control {
    /// Snooze a rule (`None`: everything) until a time (ns; `None`: wake up now).
    Snooze {
        rule: Option<String>,
        until: Option<i64>,
    },
    /// Replace the known-safe lists.
    SafeLists(SafeLists),
}

/// Noise settings shared with whoever changes them while netvigil runs (the dashboard): the
/// router thread picks up a new version before it routes the next notice. The config file's
/// settings stay the base; the dashboard's are laid on top ([`LiveNoise::set_dashboard`]).
#[derive(Debug)]
pub struct LiveNoise {
    base: NoiseSettings,
    version: AtomicU64,
    current: Mutex<NoiseSettings>,
}

impl LiveNoise {
    /// Starts at `base` (the config file's settings).
    pub fn new(base: NoiseSettings) -> Self {
        Self {
            current: Mutex::new(base.clone()),
            base,
            version: AtomicU64::new(0),
        }
    }

    /// Replaces the settings in effect.
    pub fn set(&self, s: NoiseSettings) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = s;
        self.version.fetch_add(1, Ordering::Release);
    }

    /// The dashboard's settings on top of the base: its known-safe apps, hosts and ports are
    /// added to the config file's; its minimum severity, snooze and rate limit, when given,
    /// replace the config file's (a snooze in the past wakes up; the per-rule limits of the
    /// file stay).
    pub fn set_dashboard(&self, d: &crate::web::settings::Settings) {
        let mut s = self.base.clone();
        let add = |to: &mut Vec<String>, from: &[String]| {
            for x in from {
                let x = x.trim();
                if !to.iter().any(|y| y == x) {
                    to.push(x.to_string());
                }
            }
        };
        add(&mut s.safe.apps, &d.known_safe_apps);
        add(&mut s.safe.hosts, &d.known_safe_hosts);
        for p in &d.known_safe_ports {
            if !s.safe.ports.contains(p) {
                s.safe.ports.push(*p);
            }
        }
        if let Some(sev) = d.alert_min_severity.as_deref().and_then(Severity::parse) {
            s.min_severity = sev;
        }
        if let Some(t) = d.snooze_until {
            s.snooze_all = Some(t.saturating_mul(1_000_000_000));
        }
        if let Some(r) = d.alert_rate_limit.as_deref() {
            s.rate_limit = crate::config::RateLimit::parse(r);
        }
        self.set(s);
    }

    /// The settings in effect.
    pub fn get(&self) -> NoiseSettings {
        self.current.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The settings when they changed since version `seen` (which is then updated).
    pub fn newer(&self, seen: &mut u64) -> Option<NoiseSettings> {
        let v = self.version.load(Ordering::Acquire);
        (v != *seen).then(|| {
            *seen = v;
            self.get()
        })
    }
}

enum Msg {
    Notice(Notice),
    Control(Control),
}

/// A channel as the dispatcher runs it: its sink, minimum severity and whether it takes the
/// "every connection" notices.
pub struct Channel {
    pub sink: Box<dyn Sink>,
    pub min_severity: Severity,
    pub connections: bool,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("sink", &self.sink.name())
            .field("min_severity", &self.min_severity)
            .field("connections", &self.connections)
            .finish()
    }
}

impl Channel {
    fn new(sink: Box<dyn Sink>, c: &ChannelCommon) -> Self {
        Self {
            sink,
            min_severity: c.min_severity,
            connections: c.connections,
        }
    }
}

/// A channel that is off: (name, why).
pub type Off = (&'static str, String);

/// Which channels a configuration turns on, and why the others are off.
#[derive(Debug, Default)]
pub struct Plan {
    pub channels: Vec<Channel>,
    /// Channels that are off, e.g. ("desktop", "no D-Bus session bus").
    pub off: Vec<Off>,
}

impl Plan {
    /// The channels of `cfg`: terminal (standard error), desktop (when a session bus address
    /// is known), webhook (when a URL is set), syslog (when enabled). Errors: a webhook URL or
    /// preset that cannot work.
    pub fn from_config(cfg: &Config) -> Result<Self, String> {
        let n = &cfg.notify;
        let mut plan = Plan::default();
        if n.terminal.common.enabled {
            plan.channels.push(Channel::new(
                Box::new(
                    terminal::Terminal::new(Box::new(std::io::stderr()))
                        .with_priorities(std::env::var_os("JOURNAL_STREAM").is_some_and(|v| !v.is_empty())),
                ),
                &n.terminal.common,
            ));
        } else {
            plan.off.push(("terminal", "disabled in the config".into()));
        }
        if n.desktop.common.enabled {
            let bus = n.desktop.bus.clone().or_else(|| {
                std::env::var("DBUS_SESSION_BUS_ADDRESS")
                    .ok()
                    .filter(|s| !s.is_empty())
            });
            #[cfg(unix)]
            match bus {
                Some(addr) => plan.channels.push(Channel::new(
                    Box::new(desktop::Desktop::new(&addr, n.desktop.expire)?),
                    &n.desktop.common,
                )),
                None => plan.off.push((
                    "desktop",
                    "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set)".into(),
                )),
            }
            #[cfg(not(unix))]
            {
                let _ = bus;
                plan.off
                    .push(("desktop", "D-Bus is not available on this system".into()));
            }
        } else {
            plan.off.push(("desktop", "disabled in the config".into()));
        }
        match (&n.webhook.url, n.webhook.common.enabled) {
            (Some(url), true) => plan.channels.push(Channel::new(
                Box::new(webhook::Webhook::new(url, &n.webhook)?),
                &n.webhook.common,
            )),
            (None, _) => plan.off.push(("webhook", "no url set".into())),
            (_, false) => plan.off.push(("webhook", "disabled in the config".into())),
        }
        if n.syslog.common.enabled {
            #[cfg(unix)]
            plan.channels.push(Channel::new(
                Box::new(syslog::Syslog::new(&n.syslog)),
                &n.syslog.common,
            ));
            #[cfg(not(unix))]
            plan.off
                .push(("syslog", "syslog sockets are not available on this system".into()));
        } else {
            plan.off.push(("syslog", "disabled in the config".into()));
        }
        Ok(plan)
    }
}

/// The alert delivery service: a bounded intake, a router thread with the noise filter, and
/// one thread per channel.
#[derive(Debug)]
pub struct Dispatcher {
    tx: Option<SyncSender<Msg>>,
    router: Option<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Notice(n) => f.debug_tuple("Notice").field(&n.id).finish(),
            Msg::Control(c) => f.debug_tuple("Control").field(c).finish(),
        }
    }
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Dispatcher {
    /// Starts delivery for `cfg` (the channels of [`Plan::from_config`], noise control from
    /// `[alerts]` and the `[judge]` safe lists). Returns the dispatcher and the channels that
    /// are off with the reason (for the first-run notice).
    pub fn from_config(cfg: &Config) -> Result<(Self, Vec<Off>), String> {
        let live = Arc::new(LiveNoise::new(Self::noise_settings(cfg)));
        Self::from_config_live(cfg, live)
    }

    /// The noise settings of `cfg` (`[alerts]` and the `[judge]` safe lists).
    pub fn noise_settings(cfg: &Config) -> NoiseSettings {
        let safe = SafeLists {
            apps: cfg.judge.safe_apps.clone(),
            hosts: cfg.judge.safe_hosts.clone(),
            ports: cfg.judge.safe_ports.clone(),
        };
        NoiseSettings::from_config(&cfg.alerts, safe)
    }

    /// [`Dispatcher::from_config`] whose noise settings follow `live` while it runs.
    pub fn from_config_live(cfg: &Config, live: Arc<LiveNoise>) -> Result<(Self, Vec<Off>), String> {
        let plan = Plan::from_config(cfg)?;
        let mut filter = NoiseFilter::new(&cfg.alerts, SafeLists::default());
        filter.apply(&live.get());
        Ok((
            Self::start_inner(filter, plan.channels, cfg.alerts.queue, now_nanos, Some(live)),
            plan.off,
        ))
    }

    /// Starts delivery to `channels` behind `filter`; `queue` bounds the intake and each
    /// channel's queue. The clock of the filter is the system clock.
    pub fn start(filter: NoiseFilter, channels: Vec<Channel>, queue: usize) -> Self {
        Self::start_with_clock(filter, channels, queue, now_nanos)
    }

    /// [`Dispatcher::start`] with another clock (tests).
    pub fn start_with_clock(
        filter: NoiseFilter,
        channels: Vec<Channel>,
        queue: usize,
        clock: fn() -> i64,
    ) -> Self {
        Self::start_inner(filter, channels, queue, clock, None)
    }

    /// [`Dispatcher::start_with_clock`] whose filter takes the settings of `live` whenever
    /// they change (tests).
    pub fn start_live(
        filter: NoiseFilter,
        channels: Vec<Channel>,
        queue: usize,
        clock: fn() -> i64,
        live: Arc<LiveNoise>,
    ) -> Self {
        Self::start_inner(filter, channels, queue, clock, Some(live))
    }

    fn start_inner(
        mut filter: NoiseFilter,
        channels: Vec<Channel>,
        queue: usize,
        clock: fn() -> i64,
        live: Option<Arc<LiveNoise>>,
    ) -> Self {
        let queue = queue.max(1);
        let shared = Arc::new(Shared {
            received: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            suppressed: Default::default(),
            names: channels.iter().map(|c| c.sink.name()).collect(),
            channels: channels.iter().map(|_| ChannelCounters::default()).collect(),
            stop: Stop::default(),
            running: Mutex::new(channels.len()),
            done: Condvar::new(),
        });
        let mut outs: Vec<(SyncSender<Arc<Notice>>, Severity, bool)> = Vec::new();
        let mut workers = Vec::new();
        for (i, ch) in channels.into_iter().enumerate() {
            let (tx, rx) = sync_channel::<Arc<Notice>>(queue);
            outs.push((tx, ch.min_severity, ch.connections));
            let sh = shared.clone();
            let mut sink = ch.sink;
            let h = std::thread::Builder::new()
                .name(format!("notify-{}", sink.name()))
                .spawn(move || channel_loop(i, &mut *sink, &rx, &sh));
            match h {
                Ok(h) => workers.push(h),
                Err(e) => {
                    tracing::error!(channel = shared.names[i], error = %e, "notify: cannot start a thread");
                    outs.pop();
                    let mut r = shared.running.lock().unwrap_or_else(|e| e.into_inner());
                    *r -= 1;
                }
            }
        }
        let (tx, rx) = sync_channel::<Msg>(queue);
        let sh = shared.clone();
        let router = std::thread::Builder::new()
            .name("notify-router".into())
            .spawn(move || {
                let mut seen = 0u64;
                for m in rx {
                    if let Some(s) = live.as_ref().and_then(|l| l.newer(&mut seen)) {
                        filter.apply(&s);
                    }
                    match m {
                        Msg::Control(Control::Snooze { rule, until }) => {
                            filter.snooze(rule.as_deref(), until)
                        }
                        Msg::Control(Control::SafeLists(s)) => filter.set_safe(s),
                        Msg::Notice(n) => route(&mut filter, n, clock(), &outs, &sh),
                    }
                }
            })
            .ok();
        if router.is_none() {
            tracing::error!("notify: cannot start the router thread; alerts will not be delivered");
        }
        Self {
            tx: router.is_some().then_some(tx),
            router,
            workers,
            shared,
        }
    }

    /// Hands a notice over without waiting; `false` when the queue is full (counted as dropped).
    pub fn send(&self, n: Notice) -> bool {
        let Some(tx) = &self.tx else {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        match tx.try_send(Msg::Notice(n)) {
            Ok(()) => {
                self.shared.received.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// [`Dispatcher::send`] of an engine alert.
    pub fn send_alert(&self, a: &Alert) -> bool {
        self.send(Notice::from_alert(a))
    }

    /// Changes noise control while running (waits for room in the queue: controls are rare
    /// and must not be lost).
    pub fn control(&self, c: Control) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Control(c));
        }
    }

    /// The counters now.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Stops taking notices, delivers what is queued for up to `grace`, then stops retries
    /// and gives the threads one more second; returns the final counters (what was still
    /// queued is counted as dropped).
    pub fn shutdown(mut self, grace: Duration) -> Stats {
        self.tx = None;
        let deadline = Instant::now() + grace;
        if let Some(r) = self.router.take() {
            let _ = r.join();
        }
        let wait_until = |until: Instant| {
            let mut running = self.shared.running.lock().unwrap_or_else(|e| e.into_inner());
            while *running > 0 {
                let now = Instant::now();
                if now >= until {
                    return false;
                }
                running = self
                    .shared
                    .done
                    .wait_timeout(running, until - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            true
        };
        if !wait_until(deadline) {
            self.shared.stop.stop();
            wait_until(Instant::now() + Duration::from_secs(1));
        }
        let running = *self.shared.running.lock().unwrap_or_else(|e| e.into_inner());
        if running == 0 {
            for w in self.workers.drain(..) {
                let _ = w.join();
            }
        }
        self.shared.stats()
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        // Dropped without shutdown: stop retries at once; threads end when their queues do.
        self.tx = None;
        self.shared.stop.stop();
    }
}

fn route(
    filter: &mut NoiseFilter,
    n: Notice,
    now: i64,
    outs: &[(SyncSender<Arc<Notice>>, Severity, bool)],
    sh: &Shared,
) {
    let v = filter.check(&n, now);
    if v != Verdict::Pass {
        if let Some(i) = Verdict::DROPS.iter().position(|d| *d == v) {
            sh.suppressed[i].fetch_add(1, Ordering::Relaxed);
        }
        return;
    }
    let n = Arc::new(n);
    let connection = n.rule == CONNECTION_RULE;
    for (i, (tx, min, conns)) in outs.iter().enumerate() {
        let wanted = if connection { *conns } else { n.severity >= *min };
        if wanted && tx.try_send(n.clone()).is_err() {
            sh.channels[i].dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn channel_loop(i: usize, sink: &mut dyn Sink, rx: &Receiver<Arc<Notice>>, sh: &Shared) {
    let c = &sh.channels[i];
    let mut last_warning: Option<Instant> = None;
    let mut quiet = 0u64;
    for n in rx {
        if sh.stop.is_stopped() {
            c.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        match sink.deliver(&n, &sh.stop) {
            Ok(retries) => {
                c.delivered.fetch_add(1, Ordering::Relaxed);
                c.retries.fetch_add(u64::from(retries), Ordering::Relaxed);
            }
            Err(e) => {
                c.failed.fetch_add(1, Ordering::Relaxed);
                // At most one warning a minute per channel, so a dead endpoint does not flood.
                if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                    tracing::warn!(
                        channel = sink.name(),
                        alert = %n.id,
                        error = %e,
                        failures_since_last_warning = quiet,
                        "notify: alert not delivered"
                    );
                    last_warning = Some(Instant::now());
                    quiet = 0;
                } else {
                    quiet += 1;
                }
            }
        }
    }
    let mut running = sh.running.lock().unwrap_or_else(|e| e.into_inner());
    *running -= 1;
    sh.done.notify_all();
}

#[cfg(test)]
mod tests;
