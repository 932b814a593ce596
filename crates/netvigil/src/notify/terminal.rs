//! The terminal channel: one readable line per notice on standard error (under systemd that is
//! the journal), e.g. `netvigil: alert [medium] inbound_accept sshd 203.0.113.5 port 22: ...`.
//! Under systemd (`JOURNAL_STREAM` set) each line starts with its syslog priority (`<4>` for
//! medium), which journald reads: `journalctl -p warning` shows medium and high alerts.

use std::io::Write;

use engine::judge::Severity;

use super::{Notice, Sink, Stop};
use crate::config::CONNECTION_RULE;

/// Writes one line per notice.
pub struct Terminal {
    out: Box<dyn Write + Send>,
    journal: bool,
}

impl std::fmt::Debug for Terminal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Terminal")
    }
}

impl Terminal {
    /// Lines go to `out` (standard error in the monitor).
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self { out, journal: false }
    }

    /// Lines start with their syslog priority for journald: high `<3>` (err), medium `<4>`
    /// (warning), low `<5>` (notice), info and connections `<6>`.
    pub fn with_priorities(mut self, on: bool) -> Self {
        self.journal = on;
        self
    }
}

impl Sink for Terminal {
    fn name(&self) -> &'static str {
        "terminal"
    }
    fn deliver(&mut self, n: &Notice, _stop: &Stop) -> Result<u32, String> {
        let what = if n.rule == CONNECTION_RULE {
            "connection"
        } else {
            "alert"
        };
        let prio = if !self.journal {
            ""
        } else {
            match n.severity {
                Severity::High => "<3>",
                Severity::Medium => "<4>",
                Severity::Low => "<5>",
                Severity::Info => "<6>",
            }
        };
        let line = format!("{prio}netvigil: {what} {}\n", n.line());
        self.out
            .write_all(line.as_bytes())
            .and_then(|()| self.out.flush())
            .map_err(|e| format!("cannot write to the terminal: {e}"))?;
        Ok(0)
    }
}
