//! Dashboard settings: what `POST /api/settings` accepts, how it is checked, and where it is
//! kept (`$XDG_CONFIG_HOME/netvigil/settings.json`, else `~/.config/netvigil/settings.json`).
//!
//! Unknown fields are refused (a typo must not be silently ignored); every number has a range
//! and every error names the field, the value and what is allowed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Everything the settings page edits. Missing fields take their defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// How often the page redraws, in seconds: 1, 2, 5, 10 or 30; 0 means manual.
    pub refresh_interval_s: u32,
    /// Points per flag kind (engine names: "unpackaged_binary", "plaintext_http" ...), 0..=10.
    pub weights: BTreeMap<String, u32>,
    /// Score at which a connection is yellow, orange and red (increasing, 1..=100).
    pub thresholds: Thresholds,
    /// How long a reverse-DNS answer is kept, seconds (60..=604800).
    pub rdns_ttl_s: u64,
    /// How long an RDAP/whois answer is kept, seconds (3600..=2592000).
    pub whois_ttl_s: u64,
    /// Programs never flagged (process names).
    pub known_safe_apps: Vec<String>,
    /// Hosts never flagged (domains and their subdomains, or addresses).
    pub known_safe_hosts: Vec<String>,
    /// Service ports never flagged as unusual.
    pub known_safe_ports: Vec<u16>,
    /// Days raw records are kept in the database (1..=3650).
    pub retention_days: u32,
    /// Keep the first bytes of each direction of a flow (encrypted at rest).
    pub payload_sampling: bool,
    /// How many bytes per direction when sampling (1..=4096).
    pub sample_bytes: u32,
    /// Alerts below this reach no channel ("info", "low", "medium", "high"); absent: the
    /// config file's `alerts.min_severity`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert_min_severity: Option<String>,
    /// Every alert silenced until this time (seconds since the epoch); absent or past: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snooze_until: Option<i64>,
    /// Limit of each rule: "10/1m", or "off"; absent: the config file's `alerts.rate_limit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert_rate_limit: Option<String>,
}

/// Called with the settings `POST /api/settings` has just saved: the running monitor applies
/// them (alert noise control) without a restart.
#[derive(Clone)]
pub struct OnSave(pub std::sync::Arc<dyn Fn(&Settings) + Send + Sync>);

impl std::fmt::Debug for OnSave {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnSave")
    }
}

/// Score thresholds of the levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    pub low: u32,
    pub medium: u32,
    pub high: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        // As engine::judge::Level::from_score: 1-2 low, 3-5 medium, 6+ high.
        Self {
            low: 1,
            medium: 3,
            high: 6,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        let w = engine::judge::Weights::default();
        let weights = [
            ("unpackaged_binary", w.unpackaged_binary),
            ("plaintext_http", w.plaintext_http),
            ("upload_heavy", w.upload_heavy),
            ("unusual_port", w.unusual_port),
            ("no_reverse_dns", w.no_reverse_dns),
            ("hosting_provider", w.hosting_provider),
            ("daemon_outside", w.daemon_outside),
            ("high_retransmissions", w.high_retransmissions),
            ("rx_queue_backlog", w.rx_queue_backlog),
            ("many_remotes", w.many_remotes),
            ("listening_all", w.listening_all),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Self {
            refresh_interval_s: 2,
            weights,
            thresholds: Thresholds::default(),
            rdns_ttl_s: 3600,
            whois_ttl_s: 7 * 86_400,
            known_safe_apps: Vec::new(),
            known_safe_hosts: Vec::new(),
            known_safe_ports: Vec::new(),
            retention_days: 7,
            payload_sampling: false,
            sample_bytes: 256,
            alert_min_severity: None,
            snooze_until: None,
            alert_rate_limit: None,
        }
    }
}

fn range<T: PartialOrd + std::fmt::Display>(field: &str, v: T, lo: T, hi: T) -> Result<(), String> {
    if v < lo || v > hi {
        return Err(format!("{field} is {v}; it must be between {lo} and {hi}"));
    }
    Ok(())
}

impl Settings {
    /// Checks every field; the error names the first bad one and what is allowed.
    pub fn validate(&self) -> Result<(), String> {
        if ![0, 1, 2, 5, 10, 30].contains(&self.refresh_interval_s) {
            return Err(format!(
                "refresh_interval_s is {}; it must be one of 1, 2, 5, 10, 30, or 0 for manual",
                self.refresh_interval_s
            ));
        }
        for (k, v) in &self.weights {
            let known = engine::judge::FlagKind::parse(k).is_some() || k == "big_cloud";
            if !known {
                return Err(format!(
                    "weights has an unknown flag \"{k}\"; known flags: {}",
                    engine::judge::FlagKind::ALL.map(|f| f.as_str()).join(", ")
                ));
            }
            range(&format!("weights.{k}"), *v, 0, 10)?;
        }
        let t = self.thresholds;
        range("thresholds.low", t.low, 1, 100)?;
        range("thresholds.medium", t.medium, 1, 100)?;
        range("thresholds.high", t.high, 1, 100)?;
        if !(t.low < t.medium && t.medium < t.high) {
            return Err(format!(
                "thresholds must increase (low < medium < high); got {} {} {}",
                t.low, t.medium, t.high
            ));
        }
        range("rdns_ttl_s", self.rdns_ttl_s, 60, 604_800)?;
        range("whois_ttl_s", self.whois_ttl_s, 3600, 2_592_000)?;
        range("retention_days", self.retention_days, 1, 3650)?;
        range("sample_bytes", self.sample_bytes, 1, 4096)?;
        for (field, list) in [
            ("known_safe_apps", &self.known_safe_apps),
            ("known_safe_hosts", &self.known_safe_hosts),
        ] {
            if list.len() > 1000 {
                return Err(format!("{field} has {} entries; at most 1000", list.len()));
            }
            if let Some(bad) = list
                .iter()
                .find(|s| s.trim().is_empty() || s.len() > 253 || s.chars().any(char::is_control))
            {
                return Err(format!(
                    "{field} has the entry {bad:?}; entries must be 1 to 253 printable characters"
                ));
            }
        }
        if let Some(s) = &self.alert_min_severity
            && engine::judge::Severity::parse(s).is_none()
        {
            return Err(format!(
                "alert_min_severity is {s:?}; it must be \"info\", \"low\", \"medium\" or \"high\""
            ));
        }
        if let Some(r) = &self.alert_rate_limit
            && r != "off"
            && crate::config::RateLimit::parse(r).is_none()
        {
            return Err(format!(
                "alert_rate_limit is {r:?}; it must be like \"10/1m\" (count/duration) or \"off\""
            ));
        }
        if let Some(t) = self.snooze_until {
            range("snooze_until", t, 0, 253_402_300_799)?;
        }
        if let Some(p) = self.known_safe_ports.iter().find(|p| **p == 0) {
            return Err(format!("known_safe_ports has {p}; ports are 1 to 65535"));
        }
        Ok(())
    }

    /// Reads the file; a missing file gives the defaults. A damaged one is an error naming it.
    pub fn load(path: &Path) -> Result<Settings, String> {
        match std::fs::read_to_string(path) {
            Ok(t) => {
                let s: Settings = serde_json::from_str(&t)
                    .map_err(|e| format!("{}: {e}; fix or delete the file", path.display()))?;
                s.validate().map_err(|e| format!("{}: {e}", path.display()))?;
                Ok(s)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Writes the file atomically (a temporary file renamed over it), creating the folder.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        std::fs::write(&tmp, text + "\n").map_err(|e| format!("writing {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .map_err(|e| format!("renaming {} to {}: {e}", tmp.display(), path.display()))
    }
}

/// `$XDG_CONFIG_HOME/netvigil`, else `~/.config/netvigil`; `None` when neither is set.
pub fn config_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
        let p = PathBuf::from(x);
        if p.is_absolute() {
            return Some(p.join("netvigil"));
        }
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(PathBuf::from(home).join(".config/netvigil"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let s = Settings::default();
        s.validate().unwrap();
        let back: Settings = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn bad_values_are_named() {
        let e = serde_json::from_str::<Settings>(r#"{"refresh":3}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `refresh`"), "{e}");
        let s = Settings {
            refresh_interval_s: 3,
            ..Settings::default()
        };
        assert!(s.validate().unwrap_err().contains("refresh_interval_s is 3"));
        let mut s = Settings::default();
        s.weights.insert("bogus".into(), 1);
        assert!(s.validate().unwrap_err().contains("unknown flag \"bogus\""));
        let s = Settings {
            thresholds: Thresholds {
                low: 3,
                medium: 3,
                high: 6,
            },
            ..Settings::default()
        };
        assert!(s.validate().unwrap_err().contains("must increase"));
    }
}
