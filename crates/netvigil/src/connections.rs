//! `netvigil connections`: one snapshot of the socket table, grouped by program.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Result;
use engine::connections::{ConnTracker, Direction};
use engine::sockets::{ProcessInfo, SocketEntry};

use crate::ConnectionsArgs;
use crate::live::SocketSource;
use crate::units::bytes;

fn is_loopback(e: &SocketEntry) -> bool {
    e.local.ip().is_loopback() && e.remote.ip().is_loopback()
}

/// `--bench N`: N snapshots in one process, as the monitor takes them every poll; the first is
/// cold (process scan, package index), the others warm (owner cache).
fn bench(n: usize) -> Result<ExitCode> {
    let mut source = SocketSource::new();
    let mut times = Vec::with_capacity(n);
    let mut sockets = 0;
    for _ in 0..n.max(2) {
        let t = std::time::Instant::now();
        let snap = source.snapshot()?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        sockets = snap.sockets.len();
    }
    let cold = times[0];
    let mut warm = times[1..].to_vec();
    warm.sort_by(f64::total_cmp);
    let median = warm[warm.len() / 2];
    println!(
        "snapshots: {} of {sockets} sockets; cold {cold:.2} ms; warm median {median:.2} ms (min {:.2}, max {:.2})",
        times.len(),
        warm[0],
        warm[warm.len() - 1]
    );
    Ok(ExitCode::SUCCESS)
}

pub fn run(args: &ConnectionsArgs) -> Result<ExitCode> {
    if let Some(n) = args.bench {
        return bench(n);
    }
    let mut source = SocketSource::new();
    let snap = source.snapshot()?;
    let mut tracker = ConnTracker::new();
    let mut records = Vec::new();
    tracker.update(&snap, &mut records);
    let out = io::stdout();
    let mut w = io::BufWriter::new(out.lock());
    if args.json {
        let mut line = String::new();
        for r in records
            .iter()
            .filter(|r| args.all || !(r.local.ip().is_loopback() && r.remote.ip().is_loopback()))
        {
            line.clear();
            r.write_json(&mut line);
            writeln!(w, "{line}")?;
        }
        w.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    // Group by program: name and exe; unknown owners last.
    type Group<'a> = (Option<&'a ProcessInfo>, Vec<(Direction, &'a SocketEntry)>);
    let mut groups: BTreeMap<(bool, String), Group<'_>> = BTreeMap::new();
    let mut hidden_loopback = 0;
    for (dir, e, p) in tracker.open() {
        if !args.all && is_loopback(e) {
            hidden_loopback += 1;
            continue;
        }
        let key = match p {
            Some(p) => (false, p.name.clone()),
            None => (true, "(owner not visible)".to_string()),
        };
        let g = groups.entry(key).or_insert((p, Vec::new()));
        g.1.push((dir, e));
    }
    let listening: Vec<_> = snap.sockets.iter().filter(|s| s.is_listening()).collect();
    if groups.is_empty() {
        writeln!(
            w,
            "No connections{}.",
            if hidden_loopback > 0 {
                " outside loopback"
            } else {
                ""
            }
        )?;
    }
    for ((_, name), (p, mut conns)) in groups {
        conns.sort_by_key(|(d, e)| (*d as u8, e.remote));
        let detail = p
            .map(|p| {
                let exe = p
                    .exe
                    .as_ref()
                    .map(|e| e.display().to_string())
                    .unwrap_or_default();
                let user = p
                    .user
                    .clone()
                    .or(p.uid.map(|u| u.to_string()))
                    .unwrap_or_default();
                format!(" (pid {}, {exe}, user {user})", p.pid)
            })
            .unwrap_or_default();
        writeln!(
            w,
            "{name}{detail}: {} connection{}",
            conns.len(),
            if conns.len() == 1 { "" } else { "s" }
        )?;
        for (dir, e) in conns {
            let arrow = match dir {
                Direction::Outbound => "->",
                Direction::Inbound => "<-",
            };
            let tcp = e
                .tcp
                .map(|t| {
                    format!(
                        "  rtt {:.1} ms, sent {}, received {}",
                        f64::from(t.rtt_us) / 1000.0,
                        bytes(t.bytes_acked),
                        bytes(t.bytes_received)
                    )
                })
                .unwrap_or_default();
            writeln!(
                w,
                "  {:<8} {:<4} {} {arrow} {}  {}{tcp}",
                dir.as_str(),
                e.proto.name(),
                e.local,
                e.remote,
                e.state.map_or("connected", |s| s.name()),
            )?;
        }
    }
    let all_ifaces: Vec<_> = listening.iter().filter(|s| s.on_all_interfaces()).collect();
    if !all_ifaces.is_empty() {
        writeln!(
            w,
            "\nListening on all interfaces (reachable from the network unless a firewall says no):"
        )?;
        let owners: std::collections::HashMap<u64, u32> = snap.owners.iter().copied().collect();
        for s in all_ifaces {
            let who = owners
                .get(&s.inode)
                .and_then(|pid| snap.processes.iter().find(|p| p.pid == *pid))
                .map_or_else(
                    || "(owner not visible)".to_string(),
                    |p| format!("{} (pid {})", p.name, p.pid),
                );
            writeln!(w, "  {:<4} {:<24} {who}", s.proto.name(), s.local.to_string())?;
        }
    }
    if hidden_loopback > 0 {
        writeln!(
            w,
            "\n{hidden_loopback} loopback connections not shown (--all shows them)."
        )?;
    }
    if snap.unattributed > 0 {
        writeln!(
            w,
            "{} sockets belong to processes netvigil cannot see as this user; `netvigil doctor` says how to grant that.",
            snap.unattributed
        )?;
    }
    w.flush()?;
    Ok(ExitCode::SUCCESS)
}
