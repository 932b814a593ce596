//! The syslog channel: one RFC 5424 message per notice, as a datagram to a unix socket
//! (`/dev/log` by default, which journald or rsyslog reads).
//!
//! `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [netvigil@32473 id=".." rule=".."
//! severity=".." app=".." remote=".." port=".."] reason`. PRI is facility × 8 + level: high is
//! `err` (3), medium `warning` (4), low `notice` (5), info `info` (6). MSGID is the rule. The
//! structured data id uses 32473, the enterprise number RFC 5612 reserves for examples (netvigil
//! has none of its own).

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

use engine::judge::Severity;

use super::{Notice, Sink, Stop};
use crate::config::{SyslogConfig, format_time};

/// Longest message sent (journald and rsyslog accept far more; this keeps one alert small).
const MAX_LEN: usize = 4096;

/// The syslog channel.
#[derive(Debug)]
pub struct Syslog {
    socket: Option<UnixDatagram>,
    path: PathBuf,
    facility: u8,
    app_name: String,
    hostname: String,
    pid: u32,
}

/// RFC 5424 PARAM-VALUE escaping: `"`, `\` and `]` get a backslash.
fn sd_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        if !c.is_control() {
            out.push(c);
        }
    }
    out
}

fn hostname() -> String {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let h: String = h
        .trim()
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    if h.is_empty() { "-".into() } else { h }
}

impl Syslog {
    pub fn new(c: &SyslogConfig) -> Self {
        Self {
            socket: None,
            path: c.socket.clone(),
            facility: c.facility.0,
            app_name: c.app_name.clone(),
            hostname: hostname(),
            pid: std::process::id(),
        }
    }

    /// The datagram for `n`.
    pub fn format(&self, n: &Notice) -> String {
        let level = match n.severity {
            Severity::High => 3,
            Severity::Medium => 4,
            Severity::Low => 5,
            Severity::Info => 6,
        };
        let mut sd = format!(
            "[netvigil@32473 id=\"{}\" rule=\"{}\" severity=\"{}\"",
            sd_escape(&n.id),
            n.rule,
            n.severity.as_str()
        );
        if let Some(a) = &n.app {
            sd.push_str(&format!(" app=\"{}\"", sd_escape(a)));
        }
        if let Some(r) = &n.remote {
            sd.push_str(&format!(" remote=\"{}\"", sd_escape(r)));
        }
        if let Some(p) = n.port {
            sd.push_str(&format!(" port=\"{p}\""));
        }
        sd.push(']');
        let msg: String = n
            .reason
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let ts = format_time(n.ts.max(0) / 1000 * 1000);
        let mut out = format!(
            "<{}>1 {ts} {} {} {} {} {sd} {msg}",
            u32::from(self.facility) * 8 + level,
            self.hostname,
            self.app_name,
            self.pid,
            n.rule
        );
        if out.len() > MAX_LEN {
            let mut cut = MAX_LEN;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
        }
        out
    }
}

impl Sink for Syslog {
    fn name(&self) -> &'static str {
        "syslog"
    }
    fn deliver(&mut self, n: &Notice, _stop: &Stop) -> Result<u32, String> {
        let msg = self.format(n);
        if self.socket.is_none() {
            let sock = UnixDatagram::unbound().map_err(|e| format!("cannot create a socket: {e}"))?;
            // A reader that stopped reading fills its queue: wait a little, never forever.
            sock.set_write_timeout(Some(std::time::Duration::from_secs(2)))
                .map_err(|e| format!("cannot set a timeout: {e}"))?;
            self.socket = Some(sock);
        }
        let Some(sock) = &self.socket else {
            return Err("no socket".into());
        };
        match sock.send_to(msg.as_bytes(), &self.path) {
            Ok(_) => Ok(0),
            Err(e) => {
                self.socket = None;
                Err(format!(
                    "cannot send to {}: {e} (is a syslog daemon or journald listening there? set notify.syslog.socket)",
                    self.path.display()
                ))
            }
        }
    }
}
