//! The terminal channel: one readable line per notice on standard error (under systemd that is
//! the journal), e.g. `netvigil: alert [medium] inbound_accept sshd 203.0.113.5 port 22: ...`.

use std::io::Write;

use super::{Notice, Sink, Stop};
use crate::config::CONNECTION_RULE;

/// Writes one line per notice.
pub struct Terminal {
    out: Box<dyn Write + Send>,
}

impl std::fmt::Debug for Terminal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Terminal")
    }
}

impl Terminal {
    /// Lines go to `out` (standard error in the monitor).
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self { out }
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
        let line = format!("netvigil: {what} {}\n", n.line());
        self.out
            .write_all(line.as_bytes())
            .and_then(|()| self.out.flush())
            .map_err(|e| format!("cannot write to the terminal: {e}"))?;
        Ok(0)
    }
}
