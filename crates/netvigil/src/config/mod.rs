//! The configuration file: `$XDG_CONFIG_HOME/netvigil/config.toml` (or `--config PATH`),
//! parsed once into validated types with every default filled in (docs/config.md lists every
//! key).
//!
//! - [`Config::load`] finds and reads the file: a missing default file means "all defaults", a
//!   missing file named with `--config` is an error. Unknown keys and bad values are errors
//!   that name the file, the line and the key ([`ConfigError`]).
//! - [`Config::apply_overrides`] applies the command line on top ([`Overrides`]): a flag given
//!   on the command line always wins over the file.
//! - [`Config::to_toml`] prints the effective configuration (`netvigil config --print`); the
//!   printed text parses back to the same configuration.

// Parts of this API are for the live pipeline (`netvigil run`), wired in by live.rs.

pub mod cli;
mod parse;
mod print;
pub mod units;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use engine::judge::{Rule, Severity};

pub use units::{RateLimit, format_time};

/// Every rule an alert can come from, in a fixed order, plus the `connection` notices of the
/// "every connection" mode ([`CONNECTION_RULE`]).
pub const RULES: [Rule; 9] = [
    Rule::NewApp,
    Rule::NewRemote,
    Rule::IdleRestart,
    Rule::InboundAccept,
    Rule::RedFlag,
    Rule::UncommonPort,
    Rule::VolumeSpike,
    Rule::UploadBurst,
    Rule::SelfWatch,
];

/// The rule name of the opt-in "every new connection" notices.
pub const CONNECTION_RULE: &str = "connection";

/// Is `name` a rule an alert can carry (or [`CONNECTION_RULE`])?
pub fn is_rule_name(name: &str) -> bool {
    name == CONNECTION_RULE || RULES.iter().any(|r| r.as_str() == name)
}

// A rule added to the engine without being added to RULES breaks this match: keep them in step.
const _: fn(Rule) -> usize = |r| match r {
    Rule::NewApp => 0,
    Rule::NewRemote => 1,
    Rule::IdleRestart => 2,
    Rule::InboundAccept => 3,
    Rule::RedFlag => 4,
    Rule::UncommonPort => 5,
    Rule::VolumeSpike => 6,
    Rule::UploadBurst => 7,
    Rule::SelfWatch => 8,
};

/// The whole configuration, defaults filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub capture: CaptureConfig,
    pub store: StoreConfig,
    pub web: WebConfig,
    /// The judgement's weights, thresholds and lists (`[judge]`), as the engine takes them.
    pub judge: engine::judge::Config,
    pub alerts: AlertsConfig,
    pub notify: NotifyConfig,
    /// `[log]`: netvigil's own log lines.
    pub log: LogConfig,
}

/// `[log]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// Level of the log lines on standard error (`--log-level` and `NETVIGIL_LOG` win).
    pub level: crate::logging::LogLevel,
}

/// `[capture]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureConfig {
    /// Capture packets when allowed (false: socket table only, as `--no-capture`).
    pub enabled: bool,
    /// Interfaces to capture on; empty: all.
    pub interfaces: Vec<String>,
    /// Capture filter expression; `None`: every packet.
    pub filter: Option<String>,
    /// Socket-table poll interval in ms; `None`: 5000 when capturing, 2000 without.
    pub poll_ms: Option<u64>,
    /// Gateway mode (`--gateway`): report the LAN's devices and their flows (docs/gateway.md).
    pub gateway: bool,
    /// Gateway mode: the LAN's address prefixes; empty: the private and link-local ranges.
    pub lan: Vec<engine::lan::Prefix>,
}

/// `[store]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// Keep records in the database.
    pub enabled: bool,
    /// Where the database lives; `None` only when no default exists (HOME unset).
    pub data_dir: Option<PathBuf>,
    /// Raw records older than this are deleted; `None`: kept forever.
    pub raw_max_age: Option<Duration>,
    pub minute_rollup_max_age: Option<Duration>,
    /// Hour rollups and alerts.
    pub hour_rollup_max_age: Option<Duration>,
    /// The database is kept under this many bytes; `None`: no limit.
    pub max_size: Option<u64>,
    /// Bytes of payload kept per flow direction (0: no payload is ever recorded).
    pub payload_sample_bytes: u32,
}

impl StoreConfig {
    /// The store's retention policy.
    pub fn retention(&self) -> store::Retention {
        let ns = |d: Option<Duration>| d.map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        store::Retention {
            raw_max_age: ns(self.raw_max_age),
            minute_rollup_max_age: ns(self.minute_rollup_max_age),
            hour_rollup_max_age: ns(self.hour_rollup_max_age),
            max_bytes: self.max_size,
        }
    }
}

/// `[web]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
}

/// `[alerts]`: what is raised at all (before the channels' own minimum severity).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertsConfig {
    /// Alerts below this are dropped before any channel.
    pub min_severity: Severity,
    /// The same (rule, app, remote) again within this window is dropped; zero: no dedup.
    pub dedup_window: Duration,
    /// Limit of each rule unless `rate_limits` names it; `None`: unlimited.
    pub rate_limit: Option<RateLimit>,
    /// Per-rule limits (rule name -> limit; `None`: unlimited for that rule).
    pub rate_limits: BTreeMap<String, Option<RateLimit>>,
    /// Snooze everything until this time (ns since the epoch).
    pub snooze_all: Option<i64>,
    /// Snooze one rule until a time (rule name -> ns since the epoch).
    pub snooze: BTreeMap<String, i64>,
    /// Opt-in: a notice for every new connection, inbound or outbound.
    pub every_connection: bool,
    /// Capacity of the delivery queues (the pipeline's queue and each channel's).
    pub queue: usize,
    /// `self_watch`: netvigil's own CPU use over a minute, percent of one core.
    pub self_cpu_percent: u32,
    /// `self_watch`: netvigil's own resident memory, megabytes.
    pub self_rss_mb: u32,
    /// `self_watch`: a history commit later than this after its oldest record.
    pub self_commit_lag: Duration,
}

/// `[notify.*]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifyConfig {
    pub terminal: TerminalConfig,
    pub desktop: DesktopConfig,
    pub webhook: WebhookConfig,
    pub syslog: SyslogConfig,
}

/// What every channel has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelCommon {
    pub enabled: bool,
    /// Alerts below this severity are not sent on this channel.
    pub min_severity: Severity,
    /// Also send the "every connection" notices (when `alerts.every_connection` is on).
    pub connections: bool,
}

/// `[notify.terminal]`: one line per alert on standard error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TerminalConfig {
    pub common: ChannelCommon,
}

/// `[notify.desktop]`: org.freedesktop.Notifications over the D-Bus session bus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesktopConfig {
    pub common: ChannelCommon,
    /// Bus address; `None`: `$DBUS_SESSION_BUS_ADDRESS` (no bus: the channel is off).
    pub bus: Option<String>,
    /// How long a notification stays; `None`: the notification server's default.
    pub expire: Option<Duration>,
}

/// Payload shape of the webhook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookPreset {
    /// The alert record itself (`{"type":"alert","v":1,...}`, docs/records.md).
    Json,
    /// ntfy's JSON publish (`{"topic","title","message","priority","tags"}`).
    Ntfy,
    /// Slack incoming webhook (`{"text": ...}`).
    Slack,
    /// Discord webhook (`{"content": ..., "allowed_mentions": {"parse": []}}`).
    Discord,
}

impl WebhookPreset {
    pub const ALL: [WebhookPreset; 4] = [Self::Json, Self::Ntfy, Self::Slack, Self::Discord];
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Ntfy => "ntfy",
            Self::Slack => "slack",
            Self::Discord => "discord",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// `[notify.webhook]`: an HTTP POST per alert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookConfig {
    pub common: ChannelCommon,
    /// `http://host[:port]/path`; `None`: no webhook.
    pub url: Option<String>,
    pub preset: WebhookPreset,
    /// Further attempts after a failed one (connection error, timeout, 408, 429, 5xx).
    pub retries: u32,
    /// First wait before a retry; doubled each time, with jitter, up to `backoff_max`.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Connect, send and answer timeout of one attempt.
    pub timeout: Duration,
}

/// Syslog facility (RFC 5424 numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facility(pub u8);

impl Facility {
    const NAMES: [(&'static str, u8); 14] = [
        ("user", 1),
        ("daemon", 3),
        ("auth", 4),
        ("syslog", 5),
        ("authpriv", 10),
        ("security", 13),
        ("local0", 16),
        ("local1", 17),
        ("local2", 18),
        ("local3", 19),
        ("local4", 20),
        ("local5", 21),
        ("local6", 22),
        ("local7", 23),
    ];
    pub fn parse(s: &str) -> Option<Self> {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, v)| Facility(*v))
    }
    pub fn as_str(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, v)| *v == self.0)
            .map_or("daemon", |(n, _)| n)
    }
    /// The names accepted, for error messages.
    pub fn names() -> String {
        Self::NAMES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
    }
}

/// `[notify.syslog]`: RFC 5424 datagrams to a unix socket (journald reads /dev/log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyslogConfig {
    pub common: ChannelCommon,
    pub socket: PathBuf,
    pub facility: Facility,
    /// APP-NAME of the messages.
    pub app_name: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            capture: CaptureConfig {
                enabled: true,
                interfaces: Vec::new(),
                filter: None,
                poll_ms: None,
                gateway: false,
                lan: Vec::new(),
            },
            store: StoreConfig::default(),
            web: WebConfig {
                enabled: true,
                listen: SocketAddr::from(([127, 0, 0, 1], 8077)),
            },
            judge: engine::judge::Config::default(),
            log: LogConfig {
                level: crate::logging::LogLevel::Info,
            },
            alerts: AlertsConfig {
                min_severity: Severity::Info,
                dedup_window: Duration::from_secs(600),
                rate_limit: Some(RateLimit {
                    count: 10,
                    per: Duration::from_secs(60),
                }),
                rate_limits: BTreeMap::new(),
                snooze_all: None,
                snooze: BTreeMap::new(),
                every_connection: false,
                queue: 1024,
                self_cpu_percent: 5,
                self_rss_mb: 100,
                self_commit_lag: Duration::from_secs(30),
            },
            notify: NotifyConfig {
                terminal: TerminalConfig {
                    common: ChannelCommon {
                        enabled: true,
                        min_severity: Severity::Info,
                        connections: true,
                    },
                },
                desktop: DesktopConfig {
                    common: ChannelCommon {
                        enabled: true,
                        min_severity: Severity::Low,
                        connections: false,
                    },
                    bus: None,
                    expire: None,
                },
                webhook: WebhookConfig {
                    common: ChannelCommon {
                        enabled: true,
                        min_severity: Severity::Info,
                        connections: false,
                    },
                    url: None,
                    preset: WebhookPreset::Json,
                    retries: 5,
                    backoff_initial: Duration::from_secs(1),
                    backoff_max: Duration::from_secs(60),
                    timeout: Duration::from_secs(10),
                },
                syslog: SyslogConfig {
                    common: ChannelCommon {
                        enabled: false,
                        min_severity: Severity::Info,
                        connections: true,
                    },
                    socket: PathBuf::from("/dev/log"),
                    facility: Facility(3),
                    app_name: "netvigil".into(),
                },
            },
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        const DAY: u64 = 86_400;
        Self {
            enabled: true,
            data_dir: store::default_data_dir(),
            raw_max_age: Some(Duration::from_secs(7 * DAY)),
            minute_rollup_max_age: Some(Duration::from_secs(30 * DAY)),
            hour_rollup_max_age: Some(Duration::from_secs(365 * DAY)),
            max_size: Some(1 << 30),
            payload_sample_bytes: 0,
        }
    }
}

/// One problem in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Dotted key (`alerts.dedup_window`); empty for a syntax error.
    pub key: String,
    pub message: String,
}

/// Why the configuration could not be loaded: the file and every problem found in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// At least one.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}", self.file.display())?;
            if let Some(l) = p.line {
                write!(f, " line {l}")?;
            }
            f.write_str(": ")?;
            if !p.key.is_empty() {
                write!(f, "{}: ", p.key)?;
            }
            f.write_str(&p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Where the configuration came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// This file was read.
    File(PathBuf),
    /// The default file does not exist (or no default place is known): all defaults.
    Defaults(Option<PathBuf>),
}

/// Command-line values that win over the file; `None`/`false`: the file's value stays.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    pub interfaces: Vec<String>,
    pub filter: Option<String>,
    pub no_capture: bool,
    pub poll_ms: Option<u64>,
    pub data_dir: Option<PathBuf>,
    pub no_web: bool,
    pub listen: Option<SocketAddr>,
    /// `--gateway`: turns gateway mode on.
    pub gateway: bool,
    /// `--lan PREFIX` (repeatable): replaces `capture.lan`.
    pub lan: Vec<engine::lan::Prefix>,
    pub every_connection: bool,
    pub webhook_url: Option<String>,
}

/// The default file: `$XDG_CONFIG_HOME/netvigil/config.toml`, else
/// `~/.config/netvigil/config.toml`; `None` when neither variable is set.
pub fn default_path() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
        let p = PathBuf::from(x);
        if p.is_absolute() {
            return Some(p.join("netvigil/config.toml"));
        }
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(PathBuf::from(home).join(".config/netvigil/config.toml"))
}

impl Config {
    /// Loads `explicit` (`--config`; must exist) or the default file (may be missing).
    pub fn load(explicit: Option<&Path>) -> Result<(Self, Source), ConfigError> {
        let (path, must_exist) = match explicit {
            Some(p) => (Some(p.to_path_buf()), true),
            None => (default_path(), false),
        };
        let Some(path) = path else {
            return Ok((Config::default(), Source::Defaults(None)));
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok((Self::parse(&text, &path)?, Source::File(path))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {
                Ok((Config::default(), Source::Defaults(Some(path))))
            }
            Err(e) => Err(ConfigError {
                problems: vec![Problem {
                    line: None,
                    key: String::new(),
                    message: if e.kind() == std::io::ErrorKind::NotFound {
                        "no such file (remove --config to use the defaults, or create it: `netvigil config --print > FILE` writes one)".into()
                    } else {
                        format!("cannot read it: {e}")
                    },
                }],
                file: path,
            }),
        }
    }

    /// Parses the text of a configuration file; `file` names it in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Self, ConfigError> {
        parse::parse(text).map_err(|problems| ConfigError {
            file: file.to_path_buf(),
            problems,
        })
    }

    /// The effective configuration as a TOML document (every key, defaults filled in).
    pub fn to_toml(&self) -> String {
        print::print(self)
    }

    /// Applies command-line values on top of the file's (flags win).
    pub fn apply_overrides(&mut self, o: &Overrides) {
        if !o.interfaces.is_empty() {
            self.capture.interfaces = o.interfaces.clone();
        }
        if let Some(f) = &o.filter {
            self.capture.filter = Some(f.clone()).filter(|f| !f.is_empty());
        }
        if o.no_capture {
            self.capture.enabled = false;
        }
        if o.gateway {
            self.capture.gateway = true;
        }
        if !o.lan.is_empty() {
            self.capture.lan = o.lan.clone();
        }
        if o.poll_ms.is_some() {
            self.capture.poll_ms = o.poll_ms;
        }
        if let Some(d) = &o.data_dir {
            self.store.data_dir = Some(d.clone());
        }
        if o.no_web {
            self.web.enabled = false;
        }
        if let Some(l) = o.listen {
            self.web.listen = l;
        }
        if o.every_connection {
            self.alerts.every_connection = true;
        }
        if let Some(u) = &o.webhook_url {
            self.notify.webhook.url = Some(u.clone());
            self.notify.webhook.common.enabled = true;
        }
    }
}

#[cfg(test)]
mod tests;
