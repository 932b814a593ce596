//! Alerts (`alert` records) and the per-app baselines behind them, with a saved form that
//! survives restarts.
//!
//! Rules: `new_app` (never used the network before), `new_remote` (a host this app never
//! talked to: its domain when known, else its address), `idle_restart` (no traffic for
//! [`AlertConfig::idle_after`], then some), `inbound_accept` (a connection from elsewhere was
//! accepted; loopback is ignored), `red_flag` (a flow or connection scored red),
//! `uncommon_port` (after [`AlertConfig::warmup_connections`], a service port the app never
//! used), `volume_spike` (a minute whose bytes are far above the app's exponentially weighted
//! mean: z-score over [`AlertConfig::spike_z`], at least [`AlertConfig::spike_min_bytes`], after
//! [`AlertConfig::warmup_minutes`] active minutes) and `upload_burst` (a minute sending at least
//! [`AlertConfig::burst_min_bytes`], more than [`AlertConfig::burst_ratio`] times what it
//! received, and unusual for the app: z over the threshold, or no baseline yet).
//!
//! Volume baselines count **active minutes** (minutes with traffic), so nights of silence do
//! not drag the mean to zero. A flow's bytes go to the minute its record arrives, scaled to at
//! most one minute of its average rate (`bytes × 60 s / duration` for flows longer than a
//! minute).
//!
//! Time: the alerter keeps its own monitored clock. Each call's `now` advances it by the step
//! since the previous call, but a step longer than [`AlertConfig::max_step`] (suspend, clock
//! set forward, a restart after load) counts as `max_step`, and a step backwards counts as
//! zero: durations are never negative, and the minute in progress is dropped without feeding
//! the baseline or raising a spike. Idle times are monitored time, so "idle for a day" means a
//! day netvigil watched without seeing the app.
//!
//! Ids are stable: a hash of rule, app, remote and the UTC day of `now` (the minute, for
//! volume rules), so replaying the same traffic gives the same ids; an id already raised is
//! not raised again (the last [`AlertConfig::max_recent_ids`] are remembered and saved).
//!
//! Memory is bounded: at most `max_apps` apps, `max_remotes_per_app` hosts and
//! `max_ports_per_app` ports per app; the least recently seen is dropped first (it may then be
//! reported as new again).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;

use super::codec::{Reader, Writer};
use super::config::{Config, SEC};
use super::explain::{flag_words, human_bytes};
use super::{Assessment, Severity, Subject, SubjectKind, is_global, is_loopback};
use crate::connections::Direction;
use crate::json::Obj;
use crate::record::SCHEMA_VERSION;

const MINUTE: i64 = 60 * SEC;
const MAGIC: &[u8; 4] = b"NVAL";
const VERSION: u32 = 1;

/// An alert decided but not raised yet: rule, severity, remote, reason, port, score.
type Pending = (Rule, Severity, Option<String>, String, Option<u16>, Option<u32>);

/// Which rule raised an alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rule {
    NewApp,
    NewRemote,
    IdleRestart,
    InboundAccept,
    RedFlag,
    UncommonPort,
    VolumeSpike,
    UploadBurst,
    /// netvigil watching itself (its CPU, memory, capture drops, store): raised by the live
    /// monitor, never by [`Alerter`].
    SelfWatch,
}

impl Rule {
    pub const fn as_str(self) -> &'static str {
        match self {
            Rule::NewApp => "new_app",
            Rule::NewRemote => "new_remote",
            Rule::IdleRestart => "idle_restart",
            Rule::InboundAccept => "inbound_accept",
            Rule::RedFlag => "red_flag",
            Rule::UncommonPort => "uncommon_port",
            Rule::VolumeSpike => "volume_spike",
            Rule::UploadBurst => "upload_burst",
            Rule::SelfWatch => "self_watch",
        }
    }
}

/// One alert: an `alert` record.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    /// 16 hex digits, stable for the same rule, app, remote and day.
    pub id: String,
    pub ts: i64,
    pub severity: Severity,
    pub rule: Rule,
    /// Process name; `None` when the program is unknown.
    pub app: Option<String>,
    /// Domain when known, else the address as text; `None` for app-wide rules.
    pub remote: Option<String>,
    /// The service port, when the rule is about one connection.
    pub port: Option<u16>,
    /// Bytes in the minute, for the volume rules.
    pub bytes: Option<u64>,
    /// The flow's score, for `red_flag`.
    pub score: Option<u32>,
    /// One sentence a person can read.
    pub reason: String,
}

impl Alert {
    /// `{"type":"alert","v":1,"id":...,"ts":...,"severity":...,"rule":...,"app":...,
    /// "remote":...,"port":...,"bytes":...,"score":...,"reason":...}` (no newline).
    pub fn write_json(&self, out: &mut String) {
        let mut o = Obj::new(out);
        o.str("type", "alert")
            .num("v", SCHEMA_VERSION)
            .str("id", &self.id)
            .time("ts", self.ts)
            .str("severity", self.severity.as_str())
            .str("rule", self.rule.as_str())
            .opt_str("app", self.app.as_deref())
            .opt_str("remote", self.remote.as_deref())
            .opt_num("port", self.port)
            .opt_num("bytes", self.bytes)
            .opt_num("score", self.score)
            .str("reason", &self.reason)
            .end();
    }
}

/// Why saved alerter state could not be loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// Not alerter state at all (the first 4 bytes are not `NVAL`).
    BadMagic,
    /// Written by a newer netvigil.
    UnsupportedVersion(u32),
    /// The checksum does not match: the bytes were damaged.
    Checksum,
    Truncated {
        what: &'static str,
        at: usize,
        need: usize,
        have: usize,
    },
    Invalid {
        what: &'static str,
        at: usize,
    },
    TrailingBytes {
        at: usize,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hint = "delete the saved baselines to start learning again";
        match self {
            LoadError::BadMagic => write!(
                f,
                "the saved alert baselines are not in netvigil's format; {hint}"
            ),
            LoadError::UnsupportedVersion(v) => write!(
                f,
                "the saved alert baselines have format version {v}, this netvigil reads version {VERSION}; upgrade netvigil or {hint}"
            ),
            LoadError::Checksum => write!(
                f,
                "the saved alert baselines are damaged (checksum mismatch); {hint}"
            ),
            LoadError::Truncated { what, at, need, have } => write!(
                f,
                "the saved alert baselines end early: {what} at byte {at} needs {need} bytes, {have} left; {hint}"
            ),
            LoadError::Invalid { what, at } => {
                write!(
                    f,
                    "the saved alert baselines hold an invalid {what} at byte {at}; {hint}"
                )
            }
            LoadError::TrailingBytes { at } => {
                write!(
                    f,
                    "the saved alert baselines have unexpected bytes after byte {at}; {hint}"
                )
            }
        }
    }
}

impl std::error::Error for LoadError {}

/// Exponentially weighted mean and variance of one quantity per active minute.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Ewma {
    n: u32,
    mean: f64,
    var: f64,
}

impl Ewma {
    fn update(&mut self, x: f64, alpha: f64) {
        if self.n == 0 {
            self.mean = x;
            self.var = 0.0;
        } else {
            let diff = x - self.mean;
            let incr = alpha * diff;
            self.mean += incr;
            self.var = (1.0 - alpha) * (self.var + diff * incr);
        }
        self.n = self.n.saturating_add(1);
    }
    /// How many deviations `x` is above the mean; the deviation is at least a quarter of the
    /// mean and 10 kB, so a flat history does not make every small change infinite.
    fn z(&self, x: f64) -> f64 {
        let sd = self.var.max(0.0).sqrt().max(self.mean.abs() * 0.25).max(10_000.0);
        (x - self.mean) / sd
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    minute: i64,
    bytes_in: f64,
    bytes_out: f64,
    open: bool,
}

#[derive(Clone, Debug, Default)]
struct AppState {
    last_seen: i64,
    connections: u64,
    remotes: HashMap<String, i64>,
    ports: HashMap<(u8, u16), i64>,
    total: Ewma,
    upload: Ewma,
    bucket: Bucket,
}

/// Raises alerts from judged flows and connections, learning per-app baselines. Save with
/// [`Alerter::save`], restore with [`Alerter::load`].
#[derive(Debug, Default)]
pub struct Alerter {
    /// Monitored time, nanoseconds (see the module docs).
    clock: i64,
    last_wall: Option<i64>,
    apps: HashMap<Option<String>, AppState>,
    recent: VecDeque<u64>,
    recent_set: HashSet<u64>,
    /// The monitored minute whose finished buckets were last closed.
    scanned: Option<i64>,
}

fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn duration_words(ns: i64) -> String {
    let s = ns.max(0) / SEC;
    if s >= 2 * 86_400 {
        format!("{} days", s / 86_400)
    } else if s >= 2 * 3600 {
        format!("{} hours", s / 3600)
    } else if s >= 120 {
        format!("{} minutes", s / 60)
    } else {
        format!("{s} seconds")
    }
}

impl Alerter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Apps with a baseline.
    pub fn apps(&self) -> usize {
        self.apps.len()
    }

    /// Has `app` (`None`: unknown program) talked to `remote` (a domain or an address)?
    pub fn knows(&self, app: Option<&str>, remote: &str) -> bool {
        self.apps
            .get(&app.map(str::to_string))
            .is_some_and(|a| a.remotes.contains_key(&remote.to_ascii_lowercase()))
    }

    /// Monitored time so far, nanoseconds.
    pub fn monitored(&self) -> i64 {
        self.clock
    }

    fn advance(&mut self, cfg: &Config, now: i64, out: &mut Vec<Alert>) {
        if let Some(last) = self.last_wall {
            let step = now.saturating_sub(last);
            if step < 0 {
                // The clock went back: no time passes, and the minutes in progress are
                // dropped (their bytes cannot be placed in time).
                for a in self.apps.values_mut() {
                    a.bucket = Bucket::default();
                }
            } else {
                self.clock = self.clock.saturating_add(step.min(cfg.alerts.max_step.max(0)));
            }
        }
        self.last_wall = Some(now);
        let minute = self.clock / MINUTE;
        // Buckets only close when the minute changes: scan the apps once per minute.
        if self.scanned == Some(minute) {
            return;
        }
        self.scanned = Some(minute);
        let mut closed: Vec<(Option<String>, Bucket, Ewma, Ewma)> = Vec::new();
        for (k, a) in &mut self.apps {
            if a.bucket.open && a.bucket.minute < minute {
                closed.push((k.clone(), a.bucket, a.total, a.upload));
                let x = a.bucket.bytes_in + a.bucket.bytes_out;
                a.total.update(x, cfg.alerts.ewma_alpha);
                a.upload.update(a.bucket.bytes_out, cfg.alerts.ewma_alpha);
                a.bucket = Bucket::default();
            }
        }
        closed.sort_by(|a, b| a.0.cmp(&b.0));
        let ac = &cfg.alerts;
        for (app, b, total, upload) in closed {
            let x = b.bytes_in + b.bytes_out;
            let who = app
                .clone()
                .unwrap_or_else(|| "A program we could not identify".into());
            let minute_key = (now.div_euclid(MINUTE)).to_le_bytes();
            if total.n >= ac.warmup_minutes && x >= ac.spike_min_bytes as f64 && total.z(x) >= ac.spike_z {
                let times = if total.mean > 0.0 { x / total.mean } else { 0.0 };
                let reason = format!(
                    "{who} moved {} in one minute, about {times:.0} times its usual {} per active minute",
                    human_bytes(x as u64),
                    human_bytes(total.mean as u64)
                );
                self.raise(
                    out,
                    cfg,
                    (Rule::VolumeSpike, Severity::Medium),
                    (app.clone(), None, &minute_key),
                    now,
                    reason,
                    (None, Some(x as u64), None),
                );
            }
            let o = b.bytes_out;
            if o >= ac.burst_min_bytes as f64
                && o > b.bytes_in * ac.burst_ratio as f64
                && (upload.n < ac.warmup_minutes || upload.z(o) >= ac.spike_z)
            {
                let reason = format!(
                    "{who} sent {} in one minute while receiving only {}: a large one-way upload like this is how data theft can look",
                    human_bytes(o as u64),
                    human_bytes(b.bytes_in as u64)
                );
                // Without a baseline yet, one burst alert a day is enough (a backup tool's
                // first half hour would otherwise raise one a minute).
                let day_key = now.div_euclid(86_400 * SEC).to_le_bytes();
                let key: &[u8] = if upload.n < ac.warmup_minutes {
                    &day_key
                } else {
                    &minute_key
                };
                self.raise(
                    out,
                    cfg,
                    (Rule::UploadBurst, Severity::High),
                    (app, None, key),
                    now,
                    reason,
                    (None, Some(o as u64), None),
                );
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn raise(
        &mut self,
        out: &mut Vec<Alert>,
        cfg: &Config,
        (rule, severity): (Rule, Severity),
        (app, remote, period): (Option<String>, Option<String>, &[u8]),
        now: i64,
        reason: String,
        (port, bytes, score): (Option<u16>, Option<u64>, Option<u32>),
    ) {
        let h = fnv(&[
            rule.as_str().as_bytes(),
            app.as_deref().unwrap_or("\u{0}").as_bytes(),
            remote.as_deref().unwrap_or("").as_bytes(),
            period,
        ]);
        if !self.recent_set.insert(h) {
            return;
        }
        self.recent.push_back(h);
        while self.recent.len() > cfg.alerts.max_recent_ids {
            if let Some(old) = self.recent.pop_front() {
                self.recent_set.remove(&old);
            }
        }
        out.push(Alert {
            id: format!("{h:016x}"),
            ts: now,
            severity,
            rule,
            app,
            remote,
            port,
            bytes,
            score,
            reason,
        });
    }

    /// Closes finished minutes (volume rules) at `now`; call on the pipeline's tick.
    pub fn tick(&mut self, cfg: &Config, now: i64, out: &mut Vec<Alert>) {
        self.advance(cfg, now, out);
    }

    /// Learns from one judged flow or connection event and raises what it shows.
    pub fn observe(&mut self, s: &Subject<'_>, a: &Assessment, cfg: &Config, now: i64, out: &mut Vec<Alert>) {
        self.advance(cfg, now, out);
        let ac = &cfg.alerts;
        let key = s.app().map(str::to_string);
        let who = key
            .clone()
            .unwrap_or_else(|| "A program we could not identify".into());
        let day = now.div_euclid(86_400 * SEC).to_le_bytes();
        let clock = self.clock;
        let listening = s.kind == SubjectKind::Listening;
        let remote = (!listening).then(|| s.remote_key());
        let counts = matches!(s.kind, SubjectKind::Flow | SubjectKind::Opened);

        // New app, or an app back from a long silence.
        if !self.apps.contains_key(&key) {
            if self.apps.len() >= ac.max_apps.max(1)
                && let Some(old) = self
                    .apps
                    .iter()
                    .min_by(|x, y| x.1.last_seen.cmp(&y.1.last_seen).then_with(|| x.0.cmp(y.0)))
                    .map(|(k, _)| k.clone())
            {
                self.apps.remove(&old);
            }
            self.apps.insert(
                key.clone(),
                AppState {
                    last_seen: clock,
                    ..AppState::default()
                },
            );
            let what = match &remote {
                Some(r) if s.direction == Direction::Inbound => format!(": a connection from {r}"),
                Some(r) => format!(": it talked to {r}"),
                None => format!(": it listens on port {}", s.local.port()),
            };
            let reason = format!("{who} used the network for the first time{what}");
            self.raise(
                out,
                cfg,
                (Rule::NewApp, Severity::Low),
                (key.clone(), None, b""),
                now,
                reason,
                (None, None, None),
            );
        } else if let Some(st) = self.apps.get(&key)
            && clock.saturating_sub(st.last_seen) >= ac.idle_after
        {
            let reason = format!(
                "{who} used the network again after {} without any traffic{}",
                duration_words(clock.saturating_sub(st.last_seen)),
                remote
                    .as_ref()
                    .map(|r| format!(", talking to {r}"))
                    .unwrap_or_default()
            );
            self.raise(
                out,
                cfg,
                (Rule::IdleRestart, Severity::Low),
                (key.clone(), None, &day),
                now,
                reason,
                (None, None, None),
            );
        }

        // A host never talked to.
        let mut alerts: Vec<Pending> = Vec::new();
        let st = self.apps.get_mut(&key).expect("inserted above");
        st.last_seen = clock;
        if let (Some(r), true) = (&remote, counts) {
            if let Some(t) = st.remotes.get_mut(r) {
                *t = clock;
            } else {
                if st.remotes.len() >= ac.max_remotes_per_app.max(1)
                    && let Some(old) = st
                        .remotes
                        .iter()
                        .min_by(|x, y| x.1.cmp(y.1).then_with(|| x.0.cmp(y.0)))
                        .map(|(k, _)| k.clone())
                {
                    st.remotes.remove(&old);
                }
                st.remotes.insert(r.clone(), clock);
                let verb = if s.direction == Direction::Inbound {
                    "was contacted by"
                } else {
                    "talked to"
                };
                alerts.push((
                    Rule::NewRemote,
                    Severity::Info,
                    Some(r.clone()),
                    format!("{who} {verb} {r} for the first time"),
                    None,
                    None,
                ));
            }
            // A service port never used (outbound only: inbound ports are the peer's).
            if s.direction == Direction::Outbound && !is_loopback(s.remote.ip()) {
                let pk = (s.proto, s.remote.port());
                if let Some(t) = st.ports.get_mut(&pk) {
                    *t = clock;
                } else {
                    if st.connections >= u64::from(ac.warmup_connections) {
                        let mut usual: Vec<(&(u8, u16), &i64)> = st.ports.iter().collect();
                        usual.sort_by(|x, y| y.1.cmp(x.1).then_with(|| x.0.cmp(y.0)));
                        let usual: Vec<String> = usual.iter().take(3).map(|(p, _)| p.1.to_string()).collect();
                        alerts.push((
                            Rule::UncommonPort,
                            Severity::Low,
                            Some(r.clone()),
                            format!(
                                "{who} used port {} for the first time, talking to {r}{}",
                                s.remote.port(),
                                if usual.is_empty() {
                                    String::new()
                                } else {
                                    format!(" (it usually uses {})", usual.join(", "))
                                }
                            ),
                            Some(s.remote.port()),
                            None,
                        ));
                    }
                    if st.ports.len() >= ac.max_ports_per_app.max(1)
                        && let Some(old) = st
                            .ports
                            .iter()
                            .min_by(|x, y| x.1.cmp(y.1).then_with(|| x.0.cmp(y.0)))
                            .map(|(k, _)| *k)
                    {
                        st.ports.remove(&old);
                    }
                    st.ports.insert(pk, clock);
                }
            }
            st.connections += 1;
        }
        // Bytes into the minute in progress.
        if matches!(s.kind, SubjectKind::Flow | SubjectKind::Closed) {
            let dur = s.end.saturating_sub(s.start);
            let scale = if s.kind == SubjectKind::Flow && dur > MINUTE {
                MINUTE as f64 / dur as f64
            } else {
                1.0
            };
            let minute = clock / MINUTE;
            if !st.bucket.open {
                st.bucket = Bucket {
                    minute,
                    open: true,
                    ..Bucket::default()
                };
            }
            st.bucket.bytes_in += s.bytes_in.unwrap_or(0) as f64 * scale;
            st.bucket.bytes_out += s.bytes_out.unwrap_or(0) as f64 * scale;
        }
        // An accepted connection from elsewhere.
        if counts && s.direction == Direction::Inbound && !is_loopback(s.remote.ip()) {
            let ip = s.remote.ip();
            let (sev, where_) = if is_global(ip) {
                (Severity::Medium, "from the internet")
            } else {
                (Severity::Low, "from the local network")
            };
            alerts.push((
                Rule::InboundAccept,
                sev,
                Some(ip.to_string()),
                format!(
                    "{who} accepted a connection {where_}: {ip} reached port {}",
                    s.local.port()
                ),
                Some(s.local.port()),
                None,
            ));
        }
        // Red.
        if a.level() == super::Level::High {
            let kinds: Vec<&str> = a
                .flags
                .iter()
                .filter(|f| f.points > 0)
                .map(|f| flag_words(f.kind))
                .collect();
            let target = remote
                .clone()
                .map_or_else(|| format!("port {}", s.local.port()), |r| r.to_string());
            alerts.push((
                Rule::RedFlag,
                Severity::High,
                remote
                    .clone()
                    .or_else(|| Some(format!("port {}", s.local.port()))),
                format!(
                    "{} with {target} scored {} (red): {}",
                    super::explain::possessive(s, "connection"),
                    a.score,
                    kinds.join(", ")
                ),
                Some(s.service_port()),
                Some(a.score),
            ));
        }
        for (rule, sev, r, reason, port, score) in alerts {
            self.raise(
                out,
                cfg,
                (rule, sev),
                (key.clone(), r, &day),
                now,
                reason,
                (port, None, score),
            );
        }
    }

    /// The baselines and "seen" sets as bytes (a versioned format with a checksum); the minute
    /// in progress is not kept.
    pub fn save(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.buf.extend_from_slice(MAGIC);
        w.u32(VERSION);
        w.i64(self.clock);
        match self.last_wall {
            Some(t) => {
                w.u8(1);
                w.i64(t);
            }
            None => w.u8(0),
        }
        let mut apps: Vec<(&Option<String>, &AppState)> = self.apps.iter().collect();
        apps.sort_by(|a, b| a.0.cmp(b.0));
        w.len(apps.len());
        for (k, a) in apps {
            w.opt_str(k.as_deref());
            w.i64(a.last_seen);
            w.u64(a.connections);
            for e in [a.total, a.upload] {
                w.u32(e.n);
                w.f64(e.mean);
                w.f64(e.var);
            }
            let mut remotes: Vec<(&String, &i64)> = a.remotes.iter().collect();
            remotes.sort();
            w.len(remotes.len());
            for (r, t) in remotes {
                w.str(r);
                w.i64(*t);
            }
            let mut ports: Vec<(&(u8, u16), &i64)> = a.ports.iter().collect();
            ports.sort();
            w.len(ports.len());
            for ((p, port), t) in ports {
                w.u8(*p);
                w.u32(u32::from(*port));
                w.i64(*t);
            }
        }
        w.len(self.recent.len());
        for id in &self.recent {
            w.u64(*id);
        }
        let sum = fnv(&[&w.buf]);
        w.u64(sum);
        w.buf
    }

    /// Restores what [`Alerter::save`] wrote. Damaged or foreign bytes are an error, never a
    /// panic.
    pub fn load(bytes: &[u8]) -> Result<Self, LoadError> {
        if bytes.len() < 4 || &bytes[..4] != MAGIC {
            return Err(LoadError::BadMagic);
        }
        let mut r = Reader::new(bytes);
        r.take(4, "magic")?;
        let v = r.u32("version")?;
        if v != VERSION {
            return Err(LoadError::UnsupportedVersion(v));
        }
        if bytes.len() < 16 {
            return Err(LoadError::Truncated {
                what: "checksum",
                at: bytes.len(),
                need: 8,
                have: bytes.len().saturating_sub(8),
            });
        }
        let (body, sum) = bytes.split_at(bytes.len() - 8);
        let mut s = [0u8; 8];
        s.copy_from_slice(sum);
        if fnv(&[body]) != u64::from_le_bytes(s) {
            return Err(LoadError::Checksum);
        }
        let mut r = Reader::new(body);
        r.take(8, "header")?;
        let mut al = Alerter {
            clock: r.i64("monitored time")?,
            ..Alerter::default()
        };
        if al.clock < 0 {
            return Err(LoadError::Invalid {
                what: "monitored time",
                at: r.pos() - 8,
            });
        }
        al.last_wall = match r.u8("clock flag")? {
            0 => None,
            1 => Some(r.i64("last time")?),
            _ => {
                return Err(LoadError::Invalid {
                    what: "clock flag",
                    at: r.pos() - 1,
                });
            }
        };
        let n = r.count(45, 1 << 20, "app count")?;
        for _ in 0..n {
            let k = r.opt_str("app name")?;
            let mut a = AppState {
                last_seen: r.i64("app last seen")?,
                connections: r.u64("app connections")?,
                ..AppState::default()
            };
            for e in [&mut a.total, &mut a.upload] {
                e.n = r.u32("baseline count")?;
                e.mean = r.f64("baseline mean")?;
                e.var = r.f64("baseline variance")?;
            }
            let m = r.count(12, 1 << 24, "remote count")?;
            for _ in 0..m {
                let h = r.str("remote host")?;
                let t = r.i64("remote last seen")?;
                a.remotes.insert(h, t);
            }
            let m = r.count(13, 1 << 16, "port count")?;
            for _ in 0..m {
                let p = r.u8("port protocol")?;
                let at = r.pos();
                let port =
                    u16::try_from(r.u32("port")?).map_err(|_| LoadError::Invalid { what: "port", at })?;
                let t = r.i64("port last seen")?;
                a.ports.insert((p, port), t);
            }
            if al.apps.insert(k, a).is_some() {
                return Err(LoadError::Invalid {
                    what: "duplicate app",
                    at: r.pos(),
                });
            }
        }
        let m = r.count(8, 1 << 24, "alert id count")?;
        for _ in 0..m {
            let id = r.u64("alert id")?;
            if al.recent_set.insert(id) {
                al.recent.push_back(id);
            }
        }
        if !r.at_end() {
            return Err(LoadError::TrailingBytes { at: r.pos() });
        }
        Ok(al)
    }
}
