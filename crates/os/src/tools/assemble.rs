//! Joins parsed tool outputs into one [`SocketSnapshot`], the way the Linux socket table joins
//! sock_diag with /proc: sockets, socket -> pid owners, and the facts of each owning process.
//!
//! macOS ([`macos_snapshot`]): lsof names the sockets each process holds (all processes as
//! root, only the user's own otherwise); `netstat -an` lists every socket of the machine with
//! its queues but no owner. A socket lsof lists gets its owner and, where lsof gave none, the
//! state and queues of the matching netstat row; a netstat row that no lsof socket matches is
//! kept without an owner and counted in `unattributed` (as Linux counts sockets of processes
//! it may not look into). The socket key is lsof's `d` field (the socket's kernel address on
//! macOS: the same in every process sharing the socket), or a synthetic key when lsof gave
//! none; a socket shared by several processes belongs to the lowest pid.
//!
//! Windows ([`windows_snapshot`]): every row names its owning pid; pid 0 (TIME_WAIT, and the
//! "System Idle Process") owns nothing.

use super::codesign::Signature;
use super::lsof::LsofSocket;
use super::netstat::NetstatSocket;
use super::ps::PsProcess;
use super::synthetic_inode;
use engine::sockets::{ProcessInfo, SockProto, SocketEntry, SocketSnapshot, TcpState};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

type Key = (SockProto, SocketAddr, SocketAddr);

fn key(e: &SocketEntry) -> Key {
    (e.proto, e.local, e.remote)
}

/// The inode-like key of an lsof socket.
fn lsof_inode(s: &LsofSocket) -> u64 {
    match s.device {
        Some(d) if d != 0 => d,
        _ => {
            let fd: u64 = s.fd.parse().unwrap_or(0);
            synthetic_inode(
                s.proto,
                s.local,
                s.remote,
                (u64::from(s.pid) << 32) | (fd & 0xffff_ffff),
            )
        }
    }
}

/// A macOS executable path in a temporary or cache directory: `/tmp`, `/private/tmp`,
/// `/var/tmp`, the per-user temporary folders under `/var/folders/*/*/T/` (and their
/// `/private` twins), and `~/Library/Caches`.
pub fn mac_exe_in_temp(path: &Path) -> bool {
    let p = path.to_string_lossy();
    let p = p.strip_prefix("/private").unwrap_or(&p);
    if p.starts_with("/tmp/") || p.starts_with("/var/tmp/") {
        return true;
    }
    if let Some(rest) = p.strip_prefix("/var/folders/") {
        let mut parts = rest.splitn(4, '/');
        let (_a, _b, t) = (parts.next(), parts.next(), parts.next());
        return t == Some("T");
    }
    p.starts_with("/Users/") && p.contains("/Library/Caches/")
}

/// Builds a macOS snapshot.
///
/// - `lsof`, `netstat`, `ps`: parsed outputs ([`super::lsof::parse_lsof`],
///   [`super::netstat::parse_netstat_bsd`], [`super::ps::parse_ps`]);
/// - `args`: pid -> command line ([`super::ps::parse_ps_args`]), split on spaces;
/// - `signature`: looks up the code signature of an executable (cached by the caller);
///   `None` means it was not looked up this time (the process is `package_checked = false`).
pub fn macos_snapshot(
    taken_at: i64,
    lsof: &[LsofSocket],
    netstat: &[NetstatSocket],
    ps: &[PsProcess],
    args: &[(u32, String)],
    mut signature: impl FnMut(&Path) -> Option<Signature>,
) -> SocketSnapshot {
    let mut by_inode: BTreeMap<u64, (SocketEntry, u32)> = BTreeMap::new();
    let mut order: Vec<u64> = Vec::new();
    let mut commands: HashMap<u32, (&str, Option<u32>)> = HashMap::new();
    for s in lsof {
        commands.entry(s.pid).or_insert((s.command.as_str(), s.uid));
        let inode = lsof_inode(s);
        match by_inode.get_mut(&inode) {
            Some((_, pid)) => *pid = (*pid).min(s.pid),
            None => {
                order.push(inode);
                let e = SocketEntry {
                    proto: s.proto,
                    local: s.local,
                    remote: s.remote,
                    state: s.state,
                    connected: s.proto != SockProto::Tcp && s.remote.port() != 0,
                    uid: s.uid.unwrap_or(0),
                    inode,
                    rx_queue: s.rx_queue.unwrap_or(0),
                    tx_queue: s.tx_queue.unwrap_or(0),
                    tcp: None,
                    interface: None,
                };
                by_inode.insert(inode, (e, s.pid));
            }
        }
    }
    // Index the lsof sockets by address, to pair each with one netstat row.
    let mut unmatched: HashMap<Key, Vec<u64>> = HashMap::new();
    for inode in &order {
        if let Some((e, _)) = by_inode.get(inode) {
            unmatched.entry(key(e)).or_default().push(*inode);
        }
    }
    let mut extra: Vec<SocketEntry> = Vec::new();
    for row in netstat {
        let k = key(&row.entry);
        match unmatched.get_mut(&k).and_then(Vec::pop) {
            Some(inode) => {
                if let Some((e, _)) = by_inode.get_mut(&inode) {
                    if e.state.is_none() && e.proto == SockProto::Tcp {
                        e.state = row.entry.state;
                    }
                    if e.rx_queue == 0 && e.tx_queue == 0 {
                        e.rx_queue = row.entry.rx_queue;
                        e.tx_queue = row.entry.tx_queue;
                    }
                }
            }
            None => {
                let mut e = row.entry.clone();
                // TIME_WAIT sockets belong to no process (inode 0, as on Linux).
                e.inode = if e.state == Some(TcpState::TimeWait) {
                    0
                } else {
                    synthetic_inode(e.proto, e.local, e.remote, extra.len() as u64)
                };
                extra.push(e);
            }
        }
    }

    let mut sockets = Vec::with_capacity(order.len() + extra.len());
    let mut owners = Vec::with_capacity(order.len());
    for inode in &order {
        if let Some((e, pid)) = by_inode.remove(inode) {
            owners.push((inode.to_owned(), pid));
            sockets.push(e);
        }
    }
    let unattributed = extra.iter().filter(|e| e.inode != 0).count();
    sockets.extend(extra);

    let ps_by_pid: HashMap<u32, &PsProcess> = ps.iter().map(|p| (p.pid, p)).collect();
    let args_by_pid: HashMap<u32, &str> = args.iter().map(|(p, a)| (*p, a.as_str())).collect();
    let mut pids: Vec<u32> = owners.iter().map(|(_, p)| *p).collect();
    pids.sort_unstable();
    pids.dedup();
    let processes = pids
        .into_iter()
        .map(|pid| {
            let (command, lsof_uid) = commands.get(&pid).copied().unwrap_or(("", None));
            let cmdline: Vec<String> = args_by_pid
                .get(&pid)
                .map(|a| a.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default();
            let Some(p) = ps_by_pid.get(&pid) else {
                // Gone between lsof and ps: what lsof said.
                return ProcessInfo {
                    pid,
                    name: command.to_string(),
                    uid: lsof_uid,
                    cmdline,
                    ..ProcessInfo::default()
                };
            };
            let exe = p.comm.starts_with('/').then(|| PathBuf::from(&p.comm));
            let name = if command.is_empty() {
                exe.as_deref()
                    .and_then(Path::file_name)
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| p.comm.clone())
            } else {
                command.to_string()
            };
            let (package, package_checked) = exe
                .as_deref()
                .and_then(&mut signature)
                .map(|s| s.package())
                .unwrap_or((None, false));
            ProcessInfo {
                pid,
                ppid: Some(p.ppid),
                name,
                exe_in_temp: exe.as_deref().is_some_and(mac_exe_in_temp),
                exe,
                cmdline,
                uid: Some(p.uid),
                user: Some(p.user.clone()),
                start_time: p.start_time,
                package,
                package_checked,
                ..ProcessInfo::default()
            }
        })
        .collect();
    SocketSnapshot {
        taken_at,
        sockets,
        owners,
        processes,
        unattributed,
    }
}

/// Builds a Windows snapshot from socket rows with owning pids (IP Helper, or `netstat -ano`
/// as a fallback) and the process list. Processes are reported for the pids that own a socket
/// and are in `processes`.
pub fn windows_snapshot(taken_at: i64, rows: &[NetstatSocket], processes: &[ProcessInfo]) -> SocketSnapshot {
    let mut sockets = Vec::with_capacity(rows.len());
    let mut owners = Vec::new();
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for row in rows {
        let mut e = row.entry.clone();
        let pid = row.pid.filter(|&p| p != 0);
        e.inode = match pid {
            Some(p) => synthetic_inode(e.proto, e.local, e.remote, u64::from(p)),
            None => 0,
        };
        if e.inode != 0 {
            if seen.contains_key(&e.inode) {
                continue; // the same row twice (a race inside the table read)
            }
            seen.insert(e.inode, sockets.len());
        }
        if let Some(p) = pid {
            owners.push((e.inode, p));
        }
        sockets.push(e);
    }
    let mut pids: Vec<u32> = owners.iter().map(|(_, p)| *p).collect();
    pids.sort_unstable();
    pids.dedup();
    let by_pid: HashMap<u32, &ProcessInfo> = processes.iter().map(|p| (p.pid, p)).collect();
    let processes = pids
        .iter()
        .filter_map(|p| by_pid.get(p).map(|&i| i.clone()))
        .collect();
    SocketSnapshot {
        taken_at,
        sockets,
        owners,
        processes,
        // Every row with a pid has its owner; rows without one are TIME_WAIT or the idle
        // process, which Linux does not count either (inode 0).
        unattributed: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_paths() {
        for p in [
            "/tmp/x",
            "/private/tmp/x",
            "/var/folders/zz/abc123/T/x",
            "/private/var/folders/zz/abc123/T/sub/x",
            "/Users/me/Library/Caches/app/bin",
        ] {
            assert!(mac_exe_in_temp(Path::new(p)), "{p}");
        }
        for p in [
            "/Applications/A.app/Contents/MacOS/A",
            "/var/folders/zz/abc123/C/x",
            "/usr/bin/tmp",
        ] {
            assert!(!mac_exe_in_temp(Path::new(p)), "{p}");
        }
    }
}
