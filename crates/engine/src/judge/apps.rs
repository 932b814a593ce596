//! Per-app totals over a period (an hour, a day, a `read` run): connections, bytes, distinct
//! remotes, flags, the score, the privacy score and one sentence.
//!
//! Score: the sum of the points of the app's connections, where the same flag about the same
//! remote host counts once (six pooled connections to one rented server are one finding, not
//! six), plus the app-level flags "many distinct remotes" and "connection pooling" (0 points).
//!
//! Privacy score (0–100, higher is better): 100 minus, for each distinct tracker host the app
//! reached (a domain labelled `tracker`, or whose category is ads or analytics), the weight of
//! its category ([`PrivacyWeights`]: ads 15, analytics 12, social 8, CDN 2, other 6) plus 1 per
//! further connection to it (at most 5 more); never below 0. Each host is a listed reason.
//!
//! Periods: [`Apps::start_period`] starts the next hour's totals but keeps each app's distinct
//! remote addresses seen within a window (a day in the live monitor), so "many distinct
//! remotes" is about that window, not about whatever part of it the current hour holds.
//!
//! Bounded: at most `max_apps` apps (the least recently seen is dropped), 4096 distinct remote
//! addresses and hosts per app (beyond that the counts say "at least"), 256 tracker hosts.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use super::config::{Config, PrivacyWeights};
use super::explain::{flag_words, human_bytes};
use super::{Assessment, Flag, FlagKind, Level, Subject, SubjectKind};
use crate::enrich::Category;

const MAX_REMOTES: usize = 4096;
const MAX_TRACKERS: usize = 256;

/// One flag kind of an app, over its connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppFlag {
    pub kind: FlagKind,
    /// Connections (or app-level findings) that raised it.
    pub count: u32,
    /// Points it added to the app's score.
    pub points: u32,
    /// The first reason seen.
    pub why: String,
}

/// One tracker host behind an app's privacy score.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrivacyReason {
    pub domain: String,
    pub category: Category,
    pub vendor: Option<String>,
    pub connections: u32,
    /// What it took off the privacy score.
    pub points: u32,
}

impl PrivacyReason {
    /// "3 connections to doubleclick.net (ads, Google)".
    pub fn text(&self) -> String {
        let mut s = if self.connections == 1 {
            format!("1 connection to {}", self.domain)
        } else {
            format!("{} connections to {}", self.connections, self.domain)
        };
        let _ = write!(s, " ({}", self.category.as_str());
        if let Some(v) = &self.vendor {
            let _ = write!(s, ", {v}");
        }
        s.push(')');
        s
    }
}

/// An app's totals, as the dashboard and the digest show them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppSummary {
    /// Process name; `None` for traffic whose program is unknown.
    pub app: Option<String>,
    pub connections: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Distinct remote addresses.
    pub remotes: usize,
    /// Distinct remote hosts (domain when known, else address).
    pub hosts: usize,
    pub flags: Vec<AppFlag>,
    pub score: u32,
    pub level: Level,
    /// 0–100, 100 = no tracker seen.
    pub privacy: u8,
    pub privacy_reasons: Vec<PrivacyReason>,
    /// Seen for the first time in this period (the alerter said "new app").
    pub new: bool,
    pub first_seen: i64,
    pub last_seen: i64,
    pub explanation: String,
}

#[derive(Debug, Default)]
struct Acc {
    connections: u64,
    bytes_in: u64,
    bytes_out: u64,
    /// Distinct remote addresses, each with the last time seen (kept across periods).
    remotes: HashMap<IpAddr, i64>,
    hosts: HashMap<String, u32>,
    flags: HashMap<FlagKind, AppFlag>,
    score: u32,
    trackers: HashMap<String, (Category, Option<String>, u32)>,
    /// (flag, remote host) pairs whose points were counted.
    scored: HashSet<(FlagKind, String)>,
    new: bool,
    first_seen: i64,
    last_seen: i64,
}

/// Per-app totals for one period. Feed every assessed flow or connection with [`Apps::add`];
/// read with [`Apps::summaries`]; start a new period with [`Apps::clear`].
#[derive(Debug)]
pub struct Apps {
    map: HashMap<Option<String>, Acc>,
    max_apps: usize,
}

impl Apps {
    pub fn new(max_apps: usize) -> Self {
        Self {
            map: HashMap::new(),
            max_apps: max_apps.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
    pub fn clear(&mut self) {
        self.map.clear();
    }

    /// Starts a new period at `now`: every total starts over, except each app's distinct
    /// remote addresses seen at `now - remember` or later (those older are forgotten; an app
    /// with none left is dropped).
    pub fn start_period(&mut self, now: i64, remember: i64) {
        let since = now.saturating_sub(remember);
        self.map.retain(|_, a| {
            a.remotes.retain(|_, &mut t| t >= since);
            let remotes = std::mem::take(&mut a.remotes);
            *a = Acc {
                remotes,
                first_seen: now,
                last_seen: now,
                ..Acc::default()
            };
            !a.remotes.is_empty()
        });
    }

    /// Did any app do anything in this period (a connection, bytes, a flag)?
    pub fn is_active(&self) -> bool {
        self.map.values().any(Acc::active)
    }

    fn acc(&mut self, app: Option<&str>, ts: i64) -> &mut Acc {
        let key = app.map(str::to_string);
        if !self.map.contains_key(&key)
            && self.map.len() >= self.max_apps
            && let Some(old) = self
                .map
                .iter()
                .min_by(|a, b| a.1.last_seen.cmp(&b.1.last_seen).then_with(|| a.0.cmp(b.0)))
                .map(|(k, _)| k.clone())
        {
            self.map.remove(&old);
        }
        self.map.entry(key).or_insert_with(|| Acc {
            first_seen: ts,
            last_seen: ts,
            ..Acc::default()
        })
    }

    /// Adds one assessed flow or connection event. A connection's `opened` event counts the
    /// connection; its `closed` event adds the bytes (so nothing counts twice).
    pub fn add(&mut self, s: &Subject<'_>, a: &Assessment, cfg: &Config) {
        let _ = cfg;
        let acc = self.acc(s.app(), s.end);
        acc.first_seen = acc.first_seen.min(s.start);
        acc.last_seen = acc.last_seen.max(s.end);
        let counts = matches!(s.kind, SubjectKind::Flow | SubjectKind::Opened);
        if matches!(s.kind, SubjectKind::Flow | SubjectKind::Closed) {
            acc.bytes_in = acc.bytes_in.saturating_add(s.bytes_in.unwrap_or(0));
            acc.bytes_out = acc.bytes_out.saturating_add(s.bytes_out.unwrap_or(0));
        }
        if counts {
            acc.connections += 1;
            let ip = s.remote.ip();
            if let Some(t) = acc.remotes.get_mut(&ip) {
                *t = (*t).max(s.end);
            } else if acc.remotes.len() < MAX_REMOTES {
                acc.remotes.insert(ip, s.end);
            }
            let key = s.remote_key();
            if let Some(n) = acc.hosts.get_mut(&key) {
                *n = n.saturating_add(1);
            } else if acc.hosts.len() < MAX_REMOTES {
                acc.hosts.insert(key, 1);
            }
            if let (Some(d), Some(l)) = (s.domain, &a.label)
                && (l.tracker || matches!(l.category, Category::Ads | Category::Analytics))
            {
                let d = d.to_ascii_lowercase();
                if let Some(t) = acc.trackers.get_mut(&d) {
                    t.2 = t.2.saturating_add(1);
                } else if acc.trackers.len() < MAX_TRACKERS {
                    acc.trackers.insert(d, (l.category, l.vendor.clone(), 1));
                }
            }
        }
        // Flags of a closed event were already counted when it opened, unless the opening
        // was never seen; count the closed event's flags only if they are new for the app.
        // The same finding about the same remote host counts its points once per app.
        let host = s.remote_key();
        for f in &a.flags {
            if s.kind == SubjectKind::Closed && acc.flags.contains_key(&f.kind) {
                continue;
            }
            let fresh = if acc.scored.len() < MAX_REMOTES {
                acc.scored.insert((f.kind, host.clone()))
            } else {
                !acc.scored.contains(&(f.kind, host.clone()))
            };
            add_flag(acc, f, fresh);
        }
    }

    /// Adds a flag found outside a flow (a receive queue backing up) to an app.
    pub fn add_flag(&mut self, app: Option<&str>, f: Flag) {
        let ts = self.map.get(&app.map(str::to_string)).map_or(0, |a| a.last_seen);
        let acc = self.acc(app, ts);
        add_flag(acc, &f, true);
    }

    /// Marks an app as new in this period (the alerter raised "new app" for it).
    pub fn mark_new(&mut self, app: Option<&str>) {
        if let Some(a) = self.map.get_mut(&app.map(str::to_string)) {
            a.new = true;
        }
    }

    /// Every app active in this period, highest score first, then most bytes, then by name.
    pub fn summaries(&self, cfg: &Config) -> Vec<AppSummary> {
        let mut v: Vec<AppSummary> = self
            .map
            .iter()
            .filter(|(_, a)| a.active())
            .map(|(k, a)| summary(k.as_deref(), a, cfg))
            .collect();
        v.sort_by(|a, b| {
            b.score
                .cmp(&a.score)
                .then_with(|| {
                    b.bytes_in
                        .saturating_add(b.bytes_out)
                        .cmp(&a.bytes_in.saturating_add(a.bytes_out))
                })
                .then_with(|| a.app.cmp(&b.app))
        });
        v
    }

    /// Facts for [`super::digest`]: apps, distinct hosts over all apps, bytes, new apps and
    /// one phrase per red app.
    pub fn digest_facts(&self, period: super::Period, cfg: &Config) -> super::DigestFacts {
        let sums = self.summaries(cfg);
        let mut hosts: HashSet<&str> = HashSet::new();
        for a in self.map.values() {
            hosts.extend(a.hosts.keys().map(String::as_str));
        }
        let name = |a: &AppSummary| a.app.clone().unwrap_or_else(|| "an unidentified program".into());
        let mut new_apps: Vec<String> = sums.iter().filter(|a| a.new).map(name).collect();
        new_apps.sort();
        let red_flags = sums
            .iter()
            .filter(|a| a.level == Level::High)
            .map(|a| {
                let kinds: Vec<&str> = a
                    .flags
                    .iter()
                    .filter(|f| f.points > 0)
                    .map(|f| flag_words(f.kind))
                    .collect();
                format!("{} ({})", name(a), kinds.join(", "))
            })
            .collect();
        super::DigestFacts {
            period,
            apps: sums.len(),
            hosts: hosts.len(),
            bytes_in: sums.iter().map(|a| a.bytes_in).fold(0, u64::saturating_add),
            bytes_out: sums.iter().map(|a| a.bytes_out).fold(0, u64::saturating_add),
            new_apps,
            red_flags,
        }
    }
}

impl Acc {
    fn active(&self) -> bool {
        self.connections > 0 || self.bytes_in > 0 || self.bytes_out > 0 || !self.flags.is_empty()
    }
}

fn add_flag(acc: &mut Acc, f: &Flag, scores: bool) {
    let points = if scores { f.points } else { 0 };
    acc.score = acc.score.saturating_add(points);
    let e = acc.flags.entry(f.kind).or_insert_with(|| AppFlag {
        kind: f.kind,
        count: 0,
        points: 0,
        why: f.why.clone(),
    });
    e.count = e.count.saturating_add(1);
    e.points = e.points.saturating_add(points);
}

fn privacy(acc: &Acc, w: &PrivacyWeights) -> (u8, Vec<PrivacyReason>) {
    let mut reasons: Vec<PrivacyReason> = acc
        .trackers
        .iter()
        .map(|(d, (cat, vendor, n))| {
            let base = match cat {
                Category::Ads => w.ads,
                Category::Analytics => w.analytics,
                Category::Social => w.social,
                Category::Cdn => w.cdn,
                _ => w.other,
            };
            let extra = n
                .saturating_sub(1)
                .min(w.max_extra)
                .saturating_mul(w.per_extra_connection);
            PrivacyReason {
                domain: d.clone(),
                category: *cat,
                vendor: vendor.clone(),
                connections: *n,
                points: base.saturating_add(extra),
            }
        })
        .collect();
    reasons.sort_by(|a, b| b.points.cmp(&a.points).then_with(|| a.domain.cmp(&b.domain)));
    let penalty = reasons.iter().map(|r| r.points).fold(0u32, u32::saturating_add);
    (100u32.saturating_sub(penalty) as u8, reasons)
}

fn summary(app: Option<&str>, a: &Acc, cfg: &Config) -> AppSummary {
    let mut flags: Vec<AppFlag> = a.flags.values().cloned().collect();
    let mut score = a.score;
    let who = app.unwrap_or("An unidentified program");
    if a.remotes.len() > cfg.many_remotes {
        let p = cfg.weights.many_remotes;
        score = score.saturating_add(p);
        flags.push(AppFlag {
            kind: FlagKind::ManyRemotes,
            count: 1,
            points: p,
            why: format!(
                "{who} talked to {}{} different addresses, more than the {} most programs need.",
                if a.remotes.len() >= MAX_REMOTES {
                    "at least "
                } else {
                    ""
                },
                a.remotes.len(),
                cfg.many_remotes
            ),
        });
    }
    if let Some((host, n)) = a
        .hosts
        .iter()
        .filter(|(_, n)| **n > cfg.pooling_connections)
        .max_by(|x, y| x.1.cmp(y.1).then_with(|| y.0.cmp(x.0)))
    {
        flags.push(AppFlag {
            kind: FlagKind::ConnectionPooling,
            count: 1,
            points: 0,
            why: format!("{who} opened {n} connections to {host}: it keeps a pool of connections there."),
        });
    }
    flags.sort_by(|x, y| y.points.cmp(&x.points).then_with(|| x.kind.cmp(&y.kind)));
    let (privacy, privacy_reasons) = privacy(a, &cfg.privacy);
    let level = Level::from_score(score);
    let mut s = AppSummary {
        app: app.map(str::to_string),
        connections: a.connections,
        bytes_in: a.bytes_in,
        bytes_out: a.bytes_out,
        remotes: a.remotes.len(),
        hosts: a.hosts.len(),
        flags,
        score,
        level,
        privacy,
        privacy_reasons,
        new: a.new,
        first_seen: a.first_seen,
        last_seen: a.last_seen,
        explanation: String::new(),
    };
    s.explanation = app_sentence(&s);
    s
}

/// "firefox made 42 connections to 17 hosts, receiving 12.3 MB and sending 1.1 MB; it reached
/// 3 trackers; medium concern: plain HTTP, unusual port".
fn app_sentence(s: &AppSummary) -> String {
    let who = s.app.as_deref().unwrap_or("An unidentified program");
    let conns = if s.connections == 1 {
        "1 connection".to_string()
    } else {
        format!("{} connections", s.connections)
    };
    let hosts = if s.hosts == 1 {
        "1 host".to_string()
    } else {
        format!("{} hosts", s.hosts)
    };
    let mut t = format!(
        "{who} made {conns} to {hosts}, receiving {} and sending {}",
        human_bytes(s.bytes_in),
        human_bytes(s.bytes_out)
    );
    match s.privacy_reasons.len() {
        0 => {}
        1 => t.push_str("; it reached 1 tracker"),
        n => {
            let _ = write!(t, "; it reached {n} trackers");
        }
    }
    let scored: Vec<&str> = s
        .flags
        .iter()
        .filter(|f| f.points > 0)
        .map(|f| flag_words(f.kind))
        .collect();
    if scored.is_empty() {
        t.push_str("; nothing looked suspicious");
    } else {
        let _ = write!(t, "; {} concern: {}", s.level.as_str(), scored.join(", "));
    }
    t
}
