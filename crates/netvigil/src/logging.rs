//! Log lines: `tracing` events written to standard error, one line each.
//!
//! The level comes from `--log-level`, else `NETVIGIL_LOG`, else the config file's `log.level`
//! (applied once the file is read: [`set_config_level`]), else `info`. On a terminal a line is
//! `2026-11-22T09:10:00.123456Z  WARN netvigil::live: message key=value`; under systemd
//! (`JOURNAL_STREAM` set: the journal adds its own time) it is
//! `<4>netvigil::live: message key=value`, the `<N>` prefix being the syslog priority that
//! journald reads from a stream. User-facing command output (records, tables, an error before
//! exit, the first-run notice, alert lines of the terminal channel) is not a log line and does
//! not come through here.

use std::fmt;
use std::sync::OnceLock;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{Registry, reload};

/// A log level as the command line, `NETVIGIL_LOG` and the config file spell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogLevel {
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// Every level's name, in order.
    pub const NAMES: [&'static str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

    /// `"warn"` (case does not matter) -> `Warn`; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        const ALL: [LogLevel; 6] = [
            LogLevel::Off,
            LogLevel::Error,
            LogLevel::Warn,
            LogLevel::Info,
            LogLevel::Debug,
            LogLevel::Trace,
        ];
        let s = s.trim();
        Self::NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(s))
            .map(|i| ALL[i])
    }

    /// The level's name.
    pub const fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    fn filter(self) -> LevelFilter {
        match self {
            LogLevel::Off => LevelFilter::OFF,
            LogLevel::Error => LevelFilter::ERROR,
            LogLevel::Warn => LevelFilter::WARN,
            LogLevel::Info => LevelFilter::INFO,
            LogLevel::Debug => LevelFilter::DEBUG,
            LogLevel::Trace => LevelFilter::TRACE,
        }
    }
}

struct Installed {
    handle: reload::Handle<LevelFilter, Registry>,
    /// The level came from the command line or the environment: the config file does not
    /// change it.
    pinned: bool,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// Installs the subscriber (once per process; later calls do nothing). `flag`: `--log-level`.
/// A `NETVIGIL_LOG` that is not a level is reported on standard error and ignored.
pub fn init(flag: Option<LogLevel>) {
    let env = std::env::var("NETVIGIL_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let from_env = env.as_deref().and_then(LogLevel::parse);
    let level = flag.or(from_env).unwrap_or(LogLevel::Info);
    let journal = std::env::var_os("JOURNAL_STREAM").is_some_and(|v| !v.is_empty());
    let (filter, handle) = reload::Layer::new(level.filter());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .event_format(Line { journal });
    let subscriber = tracing_subscriber::registry().with(filter).with(fmt);
    if tracing::subscriber::set_global_default(subscriber).is_err() {
        return;
    }
    let _ = INSTALLED.set(Installed {
        handle,
        pinned: flag.is_some() || from_env.is_some(),
    });
    if let (Some(v), None) = (&env, from_env) {
        tracing::warn!(
            value = %v,
            "NETVIGIL_LOG is not a level (off, error, warn, info, debug, trace); using {}",
            level.as_str()
        );
    }
}

/// The config file's `log.level`, applied unless `--log-level` or `NETVIGIL_LOG` set one.
pub fn set_config_level(level: LogLevel) {
    if let Some(i) = INSTALLED.get()
        && !i.pinned
    {
        let _ = i.handle.reload(level.filter());
    }
}

/// One event on one line: time, level, target, message and fields; or, for the journal, the
/// syslog priority prefix instead of time and level.
struct Line {
    journal: bool,
}

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut w: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        let level = *meta.level();
        if self.journal {
            // sd-daemon(3) priorities: err 3, warning 4, info 6, debug 7.
            let prio = match level {
                Level::ERROR => 3,
                Level::WARN => 4,
                Level::INFO => 6,
                Level::DEBUG | Level::TRACE => 7,
            };
            write!(w, "<{prio}>{}: ", meta.target())?;
        } else {
            tracing_subscriber::fmt::time::SystemTime.format_time(&mut w)?;
            write!(w, " {:>5} {}: ", level, meta.target())?;
        }
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_by_name() {
        assert_eq!(LogLevel::parse("WARN"), Some(LogLevel::Warn));
        assert_eq!(LogLevel::parse(" debug "), Some(LogLevel::Debug));
        assert_eq!(LogLevel::parse("verbose"), None);
        for n in LogLevel::NAMES {
            assert_eq!(LogLevel::parse(n).unwrap().as_str(), n);
        }
    }
}
