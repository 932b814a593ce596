//! The macOS socket table, from the tools every Mac has: `lsof` (sockets and their owners),
//! `netstat -an` (every socket with its queues, also other users' without root), `ps`
//! (process facts), `codesign` (who signed each executable), plus `nettop` (bytes per
//! process) and `netstat -s` (TCP counters) on request.
//!
//! This file only runs the tools (with time limits, see [`crate::tools::run`]) and hands their
//! text to the parsers in [`crate::tools`], which are tested on recorded output on every
//! platform. It is compiled for macOS, and for Linux test builds, where `lsof` and `ps` print
//! the same formats, so that the whole path runs in the tests here; `nettop`, `codesign` and
//! the BSD `netstat` format are only exercised on recorded output.
//!
//! Privilege: without root, lsof shows only the processes of the current user; other users'
//! sockets still come from netstat, without an owner (counted in `unattributed`), as on Linux.

use crate::tools::codesign::{CODESIGN_ARGS, Signature, parse_codesign};
use crate::tools::lsof::{LSOF_ARGS, parse_lsof};
use crate::tools::netstat::{TcpCounters, parse_netstat_bsd, parse_tcp_stats};
use crate::tools::nettop::{NETTOP_ARGS, ProcessBytes, parse_nettop};
use crate::tools::ps::{PS_ARGS, PS_ARGS_ARGS, PS_ENV, parse_ps, parse_ps_args};
use crate::tools::run::{ToolError, ToolOutput, run_tool};
use crate::tools::{Parsed, assemble};
use engine::sockets::{SocketSnapshot, SocketTable};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Most bytes kept of one tool's output (lsof on a busy machine prints a few MiB).
const MAX_OUTPUT: usize = 64 << 20;
/// Signatures remembered at most; the cache is emptied when it is full.
const MAX_SIGNATURES: usize = 4096;

/// Why a macOS snapshot failed.
#[derive(Debug)]
pub enum MacError {
    /// A tool could not be run.
    Tool { tool: &'static str, source: ToolError },
    /// A tool ran and failed; `stderr` is the start of what it said.
    Failed {
        tool: &'static str,
        code: Option<i32>,
        stderr: String,
    },
}

impl fmt::Display for MacError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MacError::Tool { tool, source } => {
                write!(f, "cannot read the socket table with {tool}: {source}")
            }
            MacError::Failed { tool, code, stderr } => {
                write!(f, "{tool} failed")?;
                if let Some(c) = code {
                    write!(f, " (exit code {c})")?;
                }
                if !stderr.is_empty() {
                    write!(f, ": {stderr}")?;
                }
                f.write_str("; run the same command in a terminal to see why")
            }
        }
    }
}

impl std::error::Error for MacError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MacError::Tool { source, .. } => Some(source),
            MacError::Failed { .. } => None,
        }
    }
}

/// What the last snapshot could not do, for a verbose log or `doctor`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotNotes {
    /// Malformed lines skipped, per tool.
    pub skipped: Vec<(&'static str, usize)>,
    /// Tools that failed without failing the snapshot (netstat, codesign), and why.
    pub degraded: Vec<String>,
    /// Executables whose signature is still to be checked (the per-snapshot budget ran out).
    pub signatures_pending: usize,
}

/// The macOS socket table. Keeps a cache of code signatures per executable (path, size and
/// modification time), so codesign runs once per program, not once per snapshot.
#[derive(Debug)]
pub struct MacSockets {
    /// Time limit for lsof, netstat, ps and nettop. Default 20 s.
    pub tool_timeout: Duration,
    /// Time limit for one codesign call. Default 5 s.
    pub codesign_timeout: Duration,
    /// codesign calls per snapshot at most (the rest wait for the next one). Default 16.
    pub codesign_per_snapshot: usize,
    signatures: HashMap<(PathBuf, u64, Option<SystemTime>), Signature>,
    codesign_missing: bool,
    notes: SnapshotNotes,
}

impl Default for MacSockets {
    fn default() -> Self {
        Self::new()
    }
}

fn run(
    tool: &'static str,
    args: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
) -> Result<ToolOutput, MacError> {
    run_tool(tool, args, env, timeout, MAX_OUTPUT).map_err(|source| MacError::Tool { tool, source })
}

fn failed(tool: &'static str, out: &ToolOutput) -> MacError {
    MacError::Failed {
        tool,
        code: out.code,
        stderr: out.stderr.trim().chars().take(300).collect(),
    }
}

impl MacSockets {
    pub fn new() -> Self {
        MacSockets {
            tool_timeout: Duration::from_secs(20),
            codesign_timeout: Duration::from_secs(5),
            codesign_per_snapshot: 16,
            signatures: HashMap::new(),
            codesign_missing: false,
            notes: SnapshotNotes::default(),
        }
    }

    /// What the last snapshot skipped or could not do.
    pub fn notes(&self) -> &SnapshotNotes {
        &self.notes
    }

    /// Bytes in and out per process, from `nettop -P -L 1 -n -x` (cumulative counters).
    pub fn process_bytes(&mut self) -> Result<Parsed<ProcessBytes>, MacError> {
        let out = run("nettop", NETTOP_ARGS, &[], self.tool_timeout)?;
        if out.code != Some(0) && out.stdout.trim().is_empty() {
            return Err(failed("nettop", &out));
        }
        Ok(parse_nettop(&out.stdout))
    }

    /// The TCP stack's counters, from `netstat -s -p tcp`.
    pub fn tcp_counters(&mut self) -> Result<TcpCounters, MacError> {
        let out = run("netstat", &["-s", "-p", "tcp"], &[], self.tool_timeout)?;
        if out.code != Some(0) && out.stdout.trim().is_empty() {
            return Err(failed("netstat", &out));
        }
        Ok(parse_tcp_stats(&out.stdout))
    }

    /// The signature of `exe`: cached, or from codesign while the budget lasts.
    fn signature(&mut self, exe: &Path, budget: &mut usize) -> Option<Signature> {
        let meta = std::fs::metadata(exe).ok()?;
        let key = (exe.to_path_buf(), meta.len(), meta.modified().ok());
        if let Some(s) = self.signatures.get(&key) {
            return Some(s.clone());
        }
        if self.codesign_missing {
            return None;
        }
        if *budget == 0 {
            self.notes.signatures_pending += 1;
            return None;
        }
        *budget -= 1;
        let path = exe.to_string_lossy();
        let mut args = CODESIGN_ARGS.to_vec();
        args.push(&path);
        match run_tool("codesign", &args, &[], self.codesign_timeout, 1 << 20) {
            Ok(out) => {
                let sig = parse_codesign(&format!("{}\n{}", out.stderr, out.stdout));
                if matches!(sig, Signature::Unknown(_)) {
                    self.notes.degraded.push(format!("codesign {path}: {sig:?}"));
                    return Some(sig); // not cached: may work next time
                }
                if self.signatures.len() >= MAX_SIGNATURES {
                    self.signatures.clear();
                }
                self.signatures.insert(key, sig.clone());
                Some(sig)
            }
            Err(e) => {
                if matches!(e, ToolError::NotFound { .. }) {
                    self.codesign_missing = true;
                }
                self.notes.degraded.push(format!("codesign: {e}"));
                None
            }
        }
    }
}

impl SocketTable for MacSockets {
    type Error = MacError;

    fn snapshot(&mut self, now: i64) -> Result<SocketSnapshot, MacError> {
        self.notes = SnapshotNotes::default();
        let lsof = run("lsof", LSOF_ARGS, &[], self.tool_timeout)?;
        // lsof exits 1 when it found nothing to list: an empty table, not an error.
        if lsof.code != Some(0) && !(lsof.code == Some(1) && lsof.stdout.trim().is_empty()) {
            return Err(failed("lsof", &lsof));
        }
        let lsof = parse_lsof(&lsof.stdout);
        let netstat = match run("netstat", &["-anW"], &[], self.tool_timeout) {
            Ok(out) if out.code == Some(0) => parse_netstat_bsd(&out.stdout),
            Ok(out) => {
                self.notes.degraded.push(failed("netstat", &out).to_string());
                Parsed::default()
            }
            Err(e) => {
                self.notes.degraded.push(e.to_string());
                Parsed::default()
            }
        };
        let ps = run("ps", PS_ARGS, PS_ENV, self.tool_timeout)?;
        if ps.code != Some(0) {
            return Err(failed("ps", &ps));
        }
        let ps = parse_ps(&ps.stdout);
        let args = match run("ps", PS_ARGS_ARGS, PS_ENV, self.tool_timeout) {
            Ok(out) if out.code == Some(0) => parse_ps_args(&out.stdout),
            Ok(out) => {
                self.notes.degraded.push(failed("ps", &out).to_string());
                Parsed::default()
            }
            Err(e) => {
                self.notes.degraded.push(e.to_string());
                Parsed::default()
            }
        };
        self.notes.skipped = vec![
            ("lsof", lsof.skipped),
            ("netstat", netstat.skipped),
            ("ps", ps.skipped + args.skipped),
        ];
        let mut budget = self.codesign_per_snapshot;
        let snap = assemble::macos_snapshot(
            now,
            &lsof.entries,
            &netstat.entries,
            &ps.entries,
            &args.entries,
            |exe| self.signature(exe, &mut budget),
        );
        Ok(snap)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    //! Runs the macOS table on Linux, whose lsof and ps print the same formats: real sockets
    //! of this test process, found with their owner.
    use super::*;
    use engine::sockets::{SockProto, TcpState};
    use std::net::{TcpListener, TcpStream};

    fn have(tool: &str) -> bool {
        run_tool(tool, &["-v"], &[], Duration::from_secs(10), 1 << 16).is_ok()
    }

    fn socket_inode(fd: i32) -> Option<u64> {
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
        let s = link.to_string_lossy();
        s.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
    }

    #[test]
    fn finds_own_sockets_with_lsof_and_ps() {
        if !have("lsof") || !have("ps") {
            eprintln!("note: skipping: needs lsof and ps (Debian packages lsof, procps)");
            return;
        }
        use std::os::fd::AsRawFd;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let now = 1_700_000_000_000_000_000;
        let mut table = MacSockets::new();
        let snap = table.snapshot(now).expect("snapshot");
        assert_eq!(snap.taken_at, now);
        let me = std::process::id();
        let owner = |inode: u64| snap.owners.iter().find(|(i, _)| *i == inode).map(|(_, p)| *p);

        let l = snap
            .sockets
            .iter()
            .find(|s| s.proto == SockProto::Tcp && s.local == listener.local_addr().unwrap())
            .expect("the listener");
        assert_eq!(l.state, Some(TcpState::Listen));
        assert!(l.is_listening());
        assert_eq!(owner(l.inode), Some(me));
        // lsof's device field on Linux is the socket inode: the same as /proc says.
        assert_eq!(Some(l.inode), socket_inode(listener.as_raw_fd()));

        let c = snap
            .sockets
            .iter()
            .find(|s| s.local == client.local_addr().unwrap() && s.remote == client.peer_addr().unwrap())
            .expect("the client end");
        assert_eq!(c.state, Some(TcpState::Established));
        assert_eq!(Some(c.inode), socket_inode(client.as_raw_fd()));
        assert!(
            snap.sockets
                .iter()
                .any(|s| s.local == server.local_addr().unwrap()
                    && s.remote == server.peer_addr().unwrap()
                    && owner(s.inode) == Some(me))
        );

        let p = snap.processes.iter().find(|p| p.pid == me).expect("this process");
        assert_eq!(p.ppid, Some(std::os::unix::process::parent_id()));
        // SAFETY: getuid has no preconditions and cannot fail.
        assert_eq!(p.uid, Some(unsafe { libc::getuid() }));
        let start = p.start_time.expect("start time");
        let wall = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64;
        assert!(
            start <= wall && start > wall - 3_600_000_000_000,
            "{start} vs {wall}"
        );
        assert!(!p.cmdline.is_empty());
        // Linux's `comm` is a short name, not the executable's path: no exe, so no signature
        // is looked up and nothing is claimed about one.
        assert_eq!(p.exe, None);
        assert!(!p.package_checked);
        assert_eq!(table.notes().skipped[0], ("lsof", 0));
    }

    #[test]
    fn missing_macos_tools_are_named() {
        if have("nettop") {
            return;
        }
        let e = MacSockets::new().process_bytes().unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("nettop") && msg.contains("not installed"), "{msg}");
    }
}
