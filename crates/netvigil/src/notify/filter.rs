//! Noise control: decides which notices reach the channels. Pure: the clock is a parameter.
//!
//! In order: the "every connection" notices need the opt-in; alerts below
//! `alerts.min_severity` go; a known-safe app, host or port (the `[judge]` safe lists) goes; a
//! snoozed rule (or everything, snoozed) goes; the same (rule, app, remote) within
//! `alerts.dedup_window` of the last one let through goes; then each rule's rate limit (a
//! sliding window: at most N let through per period).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use engine::judge::{Severity, has_suffix};

use super::Notice;
use crate::config::{AlertsConfig, CONNECTION_RULE, RateLimit};

/// What the filter decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    Pass,
    /// A connection notice, and `alerts.every_connection` is off.
    ConnectionsOff,
    BelowSeverity,
    /// The app, host or port is on a safe list.
    Safe,
    Snoozed,
    Duplicate,
    RateLimited,
}

impl Verdict {
    /// Every verdict that drops, in a fixed order (for counters).
    pub const DROPS: [Verdict; 6] = [
        Verdict::ConnectionsOff,
        Verdict::BelowSeverity,
        Verdict::Safe,
        Verdict::Snoozed,
        Verdict::Duplicate,
        Verdict::RateLimited,
    ];
    pub const fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::ConnectionsOff => "connections_off",
            Verdict::BelowSeverity => "below_severity",
            Verdict::Safe => "safe",
            Verdict::Snoozed => "snoozed",
            Verdict::Duplicate => "duplicate",
            Verdict::RateLimited => "rate_limited",
        }
    }
}

/// The known-safe lists the filter applies (from `[judge]`, or the dashboard's settings).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SafeLists {
    pub apps: Vec<String>,
    /// Domain suffixes, or IP addresses as text (matched exactly).
    pub hosts: Vec<String>,
    pub ports: Vec<u16>,
}

impl SafeLists {
    fn matches(&self, n: &Notice) -> bool {
        if n.app.as_deref().is_some_and(|a| self.apps.iter().any(|s| s == a)) {
            return true;
        }
        if n.port.is_some_and(|p| self.ports.contains(&p)) {
            return true;
        }
        let Some(remote) = n.remote.as_deref() else {
            return false;
        };
        let remote_ip = remote.parse::<IpAddr>().ok();
        self.hosts.iter().any(|h| match h.parse::<IpAddr>() {
            Ok(ip) => remote_ip == Some(ip),
            Err(_) => remote_ip.is_none() && has_suffix(remote, h),
        })
    }
}

/// The part of noise control that may change while netvigil runs (the dashboard's settings):
/// safe lists, minimum severity, snooze and rate limits. Dedup memory and rate-limit windows
/// survive a change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoiseSettings {
    pub safe: SafeLists,
    pub min_severity: Severity,
    /// Everything snoozed until this time (ns since the epoch).
    pub snooze_all: Option<i64>,
    /// Rule name -> snoozed until (ns since the epoch).
    pub snooze: HashMap<String, i64>,
    /// Limit of a rule `limits` does not name; `None`: unlimited.
    pub rate_limit: Option<RateLimit>,
    pub limits: HashMap<String, Option<RateLimit>>,
}

impl NoiseSettings {
    /// From `[alerts]` and the safe lists.
    pub fn from_config(a: &AlertsConfig, safe: SafeLists) -> Self {
        Self {
            safe,
            min_severity: a.min_severity,
            snooze_all: a.snooze_all,
            snooze: a.snooze.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            rate_limit: a.rate_limit,
            limits: a.rate_limits.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        }
    }
}

/// Most (rule, app, remote) keys remembered for dedup; past it, keys older than the window
/// are forgotten, and if that is not enough, the oldest half.
const MAX_KEYS: usize = 65_536;

type Key = (&'static str, Option<String>, Option<String>);

/// The noise filter's state.
#[derive(Debug)]
pub struct NoiseFilter {
    min_severity: Severity,
    every_connection: bool,
    dedup_window: i64,
    default_limit: Option<RateLimit>,
    limits: HashMap<String, Option<RateLimit>>,
    snooze_all: Option<i64>,
    snooze: HashMap<String, i64>,
    safe: SafeLists,
    /// Last time each key was let through.
    seen: HashMap<Key, i64>,
    /// Times let through in the current window, per rule.
    windows: HashMap<&'static str, VecDeque<i64>>,
}

fn nanos(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

impl NoiseFilter {
    pub fn new(a: &AlertsConfig, safe: SafeLists) -> Self {
        Self {
            min_severity: a.min_severity,
            every_connection: a.every_connection,
            dedup_window: nanos(a.dedup_window),
            default_limit: a.rate_limit,
            limits: a.rate_limits.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            snooze_all: a.snooze_all,
            snooze: a.snooze.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            safe,
            seen: HashMap::new(),
            windows: HashMap::new(),
        }
    }

    /// Snoozes `rule` (`None`: everything) until `until` (ns since the epoch; `None`: wake up).
    pub fn snooze(&mut self, rule: Option<&str>, until: Option<i64>) {
        match (rule, until) {
            (None, u) => self.snooze_all = u,
            (Some(r), Some(u)) => {
                self.snooze.insert(r.to_string(), u);
            }
            (Some(r), None) => {
                self.snooze.remove(r);
            }
        }
    }

    /// Replaces the safe lists.
    pub fn set_safe(&mut self, safe: SafeLists) {
        self.safe = safe;
    }

    /// Replaces what [`NoiseSettings`] holds; what was let through before still counts for
    /// dedup and the rate limits.
    pub fn apply(&mut self, s: &NoiseSettings) {
        self.safe = s.safe.clone();
        self.min_severity = s.min_severity;
        self.snooze_all = s.snooze_all;
        self.snooze = s.snooze.clone();
        self.default_limit = s.rate_limit;
        self.limits = s.limits.clone();
    }

    /// Decides about `n` at time `now` (ns since the epoch); a notice let through is remembered
    /// for dedup and the rate limits.
    pub fn check(&mut self, n: &Notice, now: i64) -> Verdict {
        let connection = n.rule == CONNECTION_RULE;
        if connection && !self.every_connection {
            return Verdict::ConnectionsOff;
        }
        if !connection && n.severity < self.min_severity {
            return Verdict::BelowSeverity;
        }
        if self.safe.matches(n) {
            return Verdict::Safe;
        }
        if self.snooze_all.is_some_and(|u| now < u) || self.snooze.get(n.rule).is_some_and(|&u| now < u) {
            return Verdict::Snoozed;
        }
        let key: Key = (n.rule, n.app.clone(), n.remote.clone());
        if self.dedup_window > 0
            && let Some(&last) = self.seen.get(&key)
            && now >= last
            && now - last < self.dedup_window
        {
            return Verdict::Duplicate;
        }
        let limit = self.limits.get(n.rule).copied().unwrap_or(self.default_limit);
        if let Some(l) = limit {
            let w = self.windows.entry(n.rule).or_default();
            let per = nanos(l.per);
            while w.front().is_some_and(|&t| now - t >= per || t > now) {
                w.pop_front();
            }
            if w.len() >= l.count as usize {
                return Verdict::RateLimited;
            }
            w.push_back(now);
        }
        if self.dedup_window > 0 {
            if self.seen.len() >= MAX_KEYS {
                self.forget(now);
            }
            self.seen.insert(key, now);
        }
        Verdict::Pass
    }

    fn forget(&mut self, now: i64) {
        let window = self.dedup_window;
        self.seen.retain(|_, &mut t| now >= t && now - t < window);
        if self.seen.len() >= MAX_KEYS {
            let mut times: Vec<i64> = self.seen.values().copied().collect();
            times.sort_unstable();
            let cut = times[times.len() / 2];
            self.seen.retain(|_, &mut t| t > cut);
        }
    }

    /// Keys remembered for dedup (bounded by 65536).
    pub fn remembered(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::time::Duration;

    const S: i64 = 1_000_000_000;

    fn notice(rule: &'static str, sev: Severity, app: &str, remote: &str, port: Option<u16>) -> Notice {
        Notice {
            id: format!("{rule}-{app}-{remote}"),
            ts: 0,
            severity: sev,
            rule,
            app: Some(app.to_string()),
            remote: Some(remote.to_string()),
            port,
            reason: format!("{app} talked to {remote}"),
            json: String::new(),
        }
    }

    fn cfg() -> AlertsConfig {
        let mut a = Config::default().alerts;
        a.dedup_window = Duration::from_secs(600);
        a.rate_limit = Some(RateLimit {
            count: 3,
            per: Duration::from_secs(60),
        });
        a
    }

    /// (description, config change, notices as (rule, severity, app, remote, port, time in s), verdicts)
    #[test]
    fn table() {
        type Step = (
            &'static str,
            Severity,
            &'static str,
            &'static str,
            Option<u16>,
            i64,
            Verdict,
        );
        type Case = (&'static str, fn(&mut AlertsConfig, &mut SafeLists), Vec<Step>);
        use Severity::*;
        use Verdict::*;
        let cases: Vec<Case> = vec![
            (
                "dedup by rule, app and remote within the window",
                |_, _| {},
                vec![
                    ("new_remote", Info, "curl", "a.example", None, 0, Pass),
                    ("new_remote", Info, "curl", "a.example", None, 599, Duplicate),
                    ("new_remote", Info, "curl", "b.example", None, 1, Pass),
                    ("new_remote", Info, "wget", "a.example", None, 2, Pass),
                    ("red_flag", High, "curl", "a.example", None, 3, Pass),
                    ("new_remote", Info, "curl", "a.example", None, 600, Pass),
                ],
            ),
            (
                "zero window: no dedup",
                |a, _| a.dedup_window = Duration::ZERO,
                vec![
                    ("new_remote", Info, "curl", "a.example", None, 0, Pass),
                    ("new_remote", Info, "curl", "a.example", None, 1, Pass),
                ],
            ),
            (
                "default rate limit: 3 per minute per rule, sliding",
                |_, _| {},
                vec![
                    ("new_remote", Info, "a", "1.example", None, 0, Pass),
                    ("new_remote", Info, "a", "2.example", None, 10, Pass),
                    ("new_remote", Info, "a", "3.example", None, 20, Pass),
                    ("new_remote", Info, "a", "4.example", None, 30, RateLimited),
                    ("new_app", Low, "b", "x", None, 31, Pass),
                    ("new_remote", Info, "a", "5.example", None, 60, Pass),
                    ("new_remote", Info, "a", "6.example", None, 61, RateLimited),
                    ("new_remote", Info, "a", "7.example", None, 70, Pass),
                ],
            ),
            (
                "a per-rule limit replaces the default; off means unlimited",
                |a, _| {
                    a.rate_limits.insert(
                        "new_remote".into(),
                        Some(RateLimit {
                            count: 1,
                            per: Duration::from_secs(3600),
                        }),
                    );
                    a.rate_limits.insert("red_flag".into(), None);
                },
                vec![
                    ("new_remote", Info, "a", "1.example", None, 0, Pass),
                    ("new_remote", Info, "a", "2.example", None, 1000, RateLimited),
                    ("red_flag", High, "a", "1.example", None, 0, Pass),
                    ("red_flag", High, "a", "2.example", None, 0, Pass),
                    ("red_flag", High, "a", "3.example", None, 0, Pass),
                    ("red_flag", High, "a", "4.example", None, 0, Pass),
                    ("new_remote", Info, "a", "3.example", None, 3600, Pass),
                ],
            ),
            (
                "snooze one rule until a time",
                |a, _| {
                    a.snooze.insert("new_remote".into(), 100 * S);
                },
                vec![
                    ("new_remote", Info, "a", "1.example", None, 99, Snoozed),
                    ("red_flag", High, "a", "1.example", None, 99, Pass),
                    ("new_remote", Info, "a", "1.example", None, 100, Pass),
                ],
            ),
            (
                "snooze everything",
                |a, _| a.snooze_all = Some(50 * S),
                vec![
                    ("red_flag", High, "a", "1.example", None, 0, Snoozed),
                    ("red_flag", High, "a", "1.example", None, 50, Pass),
                ],
            ),
            (
                "minimum severity",
                |a, _| a.min_severity = Medium,
                vec![
                    ("new_remote", Info, "a", "1.example", None, 0, BelowSeverity),
                    ("new_app", Low, "a", "1.example", None, 0, BelowSeverity),
                    ("volume_spike", Medium, "a", "1.example", None, 0, Pass),
                    ("red_flag", High, "a", "1.example", None, 0, Pass),
                ],
            ),
            (
                "safe apps, hosts (suffix or exact address) and ports",
                |_, s| {
                    s.apps = vec!["backupd".into()];
                    s.hosts = vec!["example.org".into(), "192.0.2.7".into()];
                    s.ports = vec![8443];
                },
                vec![
                    ("new_remote", Info, "backupd", "evil.example", None, 0, Safe),
                    ("new_remote", Info, "curl", "cdn.example.org", None, 0, Safe),
                    ("new_remote", Info, "curl", "example.org", None, 0, Safe),
                    ("new_remote", Info, "curl", "notexample.org", None, 0, Pass),
                    ("new_remote", Info, "curl", "192.0.2.7", None, 0, Safe),
                    ("new_remote", Info, "curl", "10.192.0.2.7", None, 0, Pass),
                    ("new_remote", Info, "curl", "192.0.2.70", None, 0, Pass),
                    ("uncommon_port", Low, "curl", "x.example", Some(8443), 0, Safe),
                    ("uncommon_port", Low, "curl", "x.example", Some(8444), 0, Pass),
                ],
            ),
            (
                "connection notices need the opt-in and ignore the minimum severity",
                |a, _| a.min_severity = High,
                vec![(
                    "connection",
                    Info,
                    "curl",
                    "a.example",
                    Some(443),
                    0,
                    ConnectionsOff,
                )],
            ),
            (
                "every connection: on",
                |a, _| {
                    a.min_severity = High;
                    a.every_connection = true;
                },
                vec![
                    ("connection", Info, "curl", "a.example", Some(443), 0, Pass),
                    ("connection", Info, "curl", "a.example", Some(443), 1, Duplicate),
                ],
            ),
        ];
        for (name, change, steps) in cases {
            let mut a = cfg();
            let mut safe = SafeLists::default();
            change(&mut a, &mut safe);
            let mut f = NoiseFilter::new(&a, safe);
            for (i, (rule, sev, app, remote, port, t, want)) in steps.into_iter().enumerate() {
                let got = f.check(&notice(rule, sev, app, remote, port), t * S);
                assert_eq!(got, want, "{name}: step {i} ({rule} {app} {remote} at {t}s)");
            }
        }
    }

    #[test]
    fn runtime_snooze_and_bounded_memory() {
        let mut a = cfg();
        a.rate_limit = None;
        let mut f = NoiseFilter::new(&a, SafeLists::default());
        f.snooze(Some("new_remote"), Some(10 * S));
        assert_eq!(
            f.check(&notice("new_remote", Severity::Info, "a", "x", None), 0),
            Verdict::Snoozed
        );
        f.snooze(Some("new_remote"), None);
        assert_eq!(
            f.check(&notice("new_remote", Severity::Info, "a", "x", None), 0),
            Verdict::Pass
        );
        for i in 0..(MAX_KEYS + 10) {
            let r = format!("h{i}.example");
            let n = notice("new_remote", Severity::Info, "a", &r, None);
            assert_eq!(f.check(&n, 1), Verdict::Pass);
        }
        assert!(f.remembered() <= MAX_KEYS, "{}", f.remembered());
    }
}
