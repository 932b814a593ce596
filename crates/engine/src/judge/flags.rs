//! Threat flags of one flow or connection (issue #5's table), and the receive-queue watch that
//! needs several socket snapshots to say "backing up".
//!
//! Rules beyond the table, each a choice:
//! - Unusual port: for an outbound flow the remote (server) port is judged; for an inbound
//!   flow or a listening socket the remote port is the peer's ephemeral one and says nothing,
//!   so the local service port is judged instead ("accepted a connection on port N").
//! - Plaintext HTTP: an HTTP message seen; or, when the content named no other protocol (no
//!   label, or only a port guess), the service port 80 over TCP.
//! - Remotes on this machine (loopback) get no scored flag but "unpackaged binary"; remotes on
//!   the local network (private, link-local, multicast) get no "unusual port", "no reverse
//!   DNS", "hosting" or "system daemon outside" flag: those describe the internet.
//! - No reverse DNS: the PTR lookup said there is none ([`Rdns::NoName`]) and no name is known
//!   from DNS, SNI or Host; a pending lookup or no resolver is no flag.
//! - High retransmissions need tcp_info (connection records); flow records carry no
//!   retransmission count, so captured flows never get this flag.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::config::{Config, has_suffix};
use super::{Assessment, Flag, FlagKind, Subject, SubjectKind, explain, is_global, is_loopback};
use crate::connections::{ConnectionRecord, Direction};
use crate::enrich::{Enrichers, Rdns};
use crate::record::FlowRecord;
use crate::sockets::{ProcessInfo, SockProto, SocketSnapshot};

/// Flags, score and sentence of a flow record.
pub fn assess_flow(f: &FlowRecord, e: &Enrichers<'_>, cfg: &Config) -> Assessment {
    assess(&Subject::from_flow(f, cfg), e, cfg)
}

/// Flags, score and sentence of a connection record (socket-table mode: bytes and
/// retransmissions from tcp_info).
pub fn assess_connection(c: &ConnectionRecord, e: &Enrichers<'_>, cfg: &Config) -> Assessment {
    assess(&Subject::from_connection(c), e, cfg)
}

fn who(s: &Subject<'_>) -> String {
    s.app().map_or_else(|| "This program".to_string(), str::to_string)
}

/// Flags, score and sentence of any [`Subject`].
pub fn assess(s: &Subject<'_>, e: &Enrichers<'_>, cfg: &Config) -> Assessment {
    let w = &cfg.weights;
    let listening = s.kind == SubjectKind::Listening;
    let rip = s.remote.ip();
    let place = if listening {
        None
    } else {
        e.geo.and_then(|g| g.place(rip))
    };
    let label = s.domain.and_then(|d| e.labels.and_then(|l| l.label(d)));
    // Names of local addresses are neither shown nor judged: no PTR query for them.
    let rdns = if listening || s.domain.is_some() || !is_global(rip) {
        None
    } else {
        e.rdns.map(|r| r.lookup(rip))
    };
    let mut a = Assessment {
        remote: s.remote_key(),
        place,
        label,
        rdns,
        ..Assessment::default()
    };
    let name = who(s);
    let mut add = |kind: FlagKind, points: u32, why: String| {
        a.flags.push(Flag { kind, points, why });
    };

    // Unsigned or unpackaged binary.
    if let Some(why) = s.process.and_then(|p| unpackaged(p, &name)) {
        add(FlagKind::UnpackagedBinary, w.unpackaged_binary, why);
    }
    let on_machine = !listening && is_loopback(rip);
    let internet = !listening && is_global(rip);
    let rname = s.domain.or(match &a.rdns {
        Some(Rdns::Name(n)) => Some(n.as_str()),
        _ => None,
    });
    if !on_machine {
        let port = s.service_port();
        let tcp = s.proto == 6;
        // Plaintext HTTP.
        let http_seen = s.app_proto == Some("http");
        let other_content = s.app_proto.is_some() && s.app_by == crate::record::AppBy::Content;
        if http_seen || (!other_content && tcp && port == 80 && !listening) {
            let why = match (http_seen, s.direction) {
                (true, Direction::Inbound) => format!(
                    "{name} served plain, unencrypted HTTP: anyone on the path can read and change it."
                ),
                (true, _) => format!(
                    "{name} used plain, unencrypted HTTP: anyone on the path can read and change what it sent and received."
                ),
                (false, _) => format!(
                    "{name} used port 80, the port of plain, unencrypted HTTP: anyone on the path can read it."
                ),
            };
            add(FlagKind::PlaintextHttp, w.plaintext_http, why);
        }
        // Upload far above download.
        if let (Some(out), Some(inn)) = (s.bytes_out, s.bytes_in)
            && out > cfg.upload_min_bytes
            && out > inn.saturating_mul(cfg.upload_ratio)
        {
            add(
                FlagKind::UploadHeavy,
                w.upload_heavy,
                format!(
                    "{name} sent {} but received only {}: far more going out than coming in.",
                    explain::human_bytes(out),
                    explain::human_bytes(inn)
                ),
            );
        }
        // Unusual port.
        let judge_port = matches!(s.proto, 6 | 17 | 132) && (internet || listening);
        if judge_port && port != 0 && !cfg.is_standard_port(s.proto, port) {
            let why = if listening {
                format!("{name} listens on port {port}, which is not a common service port.")
            } else if s.direction == Direction::Inbound {
                format!("{name} accepted a connection on port {port}, which is not a common service port.")
            } else {
                format!("{name} connected to port {port}, which is not one of the common service ports.")
            };
            add(FlagKind::UnusualPort, w.unusual_port, why);
        }
        if internet {
            // No reverse DNS.
            if s.domain.is_none() && a.rdns == Some(Rdns::NoName) {
                add(
                    FlagKind::NoReverseDns,
                    w.no_reverse_dns,
                    format!(
                        "{rip} has no name: no reverse DNS entry, and no DNS answer, TLS or HTTP name for it was seen."
                    ),
                );
            }
            // VPS or hosting provider.
            if let Some(asn) = a.place.as_ref().and_then(|p| p.asn) {
                let org = a
                    .place
                    .as_ref()
                    .and_then(|p| p.org.clone())
                    .unwrap_or_else(|| format!("AS{asn}"));
                if cfg.hosting_asns.contains(&asn) {
                    add(
                        FlagKind::HostingProvider,
                        w.hosting_provider,
                        format!(
                            "{rip} is in a hosting network ({org}, AS{asn}) where anyone can rent a server."
                        ),
                    );
                } else if cfg.cloud_asns.contains(&asn) {
                    add(
                        FlagKind::HostingProvider,
                        w.big_cloud,
                        format!(
                            "{rip} is in a big cloud ({org}, AS{asn}), which hosts rented servers as well as well-known services."
                        ),
                    );
                }
            }
            // System daemon talking outside.
            if let Some(p) = s.process
                && let Some(d) = cfg.daemon(&p.name, p.unit.as_deref())
            {
                let vendor = rname.is_some_and(|n| {
                    cfg.vendor_suffixes
                        .iter()
                        .chain(&d.suffixes)
                        .any(|sfx| has_suffix(n, sfx))
                });
                if !vendor && !d.ports.contains(&s.remote.port()) {
                    let target = rname.map_or_else(|| rip.to_string(), str::to_string);
                    add(
                        FlagKind::DaemonOutside,
                        w.daemon_outside,
                        format!(
                            "{} is a system service, and {target} is neither the operating system vendor's nor on this network.",
                            p.name
                        ),
                    );
                }
            }
        }
        // High retransmissions.
        if let Some((retrans, segs)) = s.retrans
            && retrans > cfg.retrans_min
            && u64::from(retrans) * 100 > u64::from(segs) * u64::from(cfg.retrans_percent)
        {
            add(
                FlagKind::HighRetransmissions,
                w.high_retransmissions,
                format!(
                    "{retrans} of {segs} segments had to be sent again: the connection is lossy or being interfered with."
                ),
            );
        }
    }
    // Listening on all interfaces.
    if listening {
        add(
            FlagKind::ListeningAll,
            w.listening_all,
            format!(
                "{name} listens on every network interface (port {}), so other machines can try to connect to it.",
                s.local.port()
            ),
        );
    }
    // Informational.
    if !listening && rip.to_canonical().is_ipv6() {
        add(FlagKind::Ipv6, 0, "The connection uses IPv6.".into());
    }
    let vpn_proto = matches!(s.app_proto, Some("wireguard" | "openvpn"));
    let vpn_label = a
        .label
        .as_ref()
        .is_some_and(|l| l.category == crate::enrich::Category::Vpn);
    let vpn_app = s
        .process
        .is_some_and(|p| cfg.vpn_apps.iter().any(|v| v == &p.name));
    if vpn_proto || vpn_label || vpn_app {
        add(
            FlagKind::VpnApp,
            0,
            if vpn_app {
                format!("{name} is a VPN client: what it carries is hidden inside the tunnel.")
            } else {
                "This is VPN traffic: what it carries is hidden inside the tunnel.".into()
            },
        );
    }
    // Known-safe apps and hosts keep only the informational flags.
    let safe_app = s.app().is_some_and(|n| cfg.is_safe_app(n));
    let safe_host = !listening && cfg.is_safe_host(s.domain, rip);
    if safe_app || safe_host || on_machine {
        a.flags.retain(|f| {
            f.kind.informational()
                || (on_machine && !safe_app && !safe_host && f.kind == FlagKind::UnpackagedBinary)
        });
    }
    a.score = a.flags.iter().map(|f| f.points).fold(0u32, u32::saturating_add);
    a.explanation = explain::explain(s, &a, e);
    a
}

fn unpackaged(p: &ProcessInfo, name: &str) -> Option<String> {
    let exe = p.exe.as_ref().map(|e| e.to_string_lossy().into_owned());
    let exe_txt = exe.as_deref().map(|e| format!(" ({e})")).unwrap_or_default();
    if p.exe_deleted {
        Some(format!(
            "{name}'s program file{exe_txt} was deleted after it started, which is how some malware hides."
        ))
    } else if p.exe_in_temp {
        Some(format!(
            "{name} runs from a temporary or cache folder{exe_txt}, not from an installed location."
        ))
    } else if p.package_checked && p.package.is_none() {
        Some(format!(
            "{name}{exe_txt} does not belong to any installed package."
        ))
    } else {
        None
    }
}

type QueueKey = (SockProto, SocketAddr, SocketAddr);

/// Watches receive queues (Recv-Q) over socket snapshots: a socket whose queue stays above 0
/// for longer than [`Config::rx_queue_after`] is "backing up" (its program does not read what
/// arrives). Each socket is reported once per episode. Bounded: at most `cap` sockets (65 536
/// by default) are watched; time going backwards restarts every episode at the new time.
#[derive(Debug)]
pub struct RxQueueWatch {
    since: HashMap<QueueKey, (i64, bool)>,
    last: Option<i64>,
    cap: usize,
}

impl Default for RxQueueWatch {
    fn default() -> Self {
        Self {
            since: HashMap::new(),
            last: None,
            cap: 65_536,
        }
    }
}

impl RxQueueWatch {
    pub fn with_cap(cap: usize) -> Self {
        Self {
            cap,
            ..Self::default()
        }
    }

    /// Number of sockets with a non-empty queue being watched.
    pub fn watched(&self) -> usize {
        self.since.len()
    }

    /// Feeds one snapshot (its `taken_at` is the time); returns the sockets that have just
    /// been backing up for long enough, with their owner's name and the flag.
    pub fn update(&mut self, snap: &SocketSnapshot, cfg: &Config) -> Vec<(Option<String>, Flag)> {
        let now = snap.taken_at;
        if self.last.is_some_and(|l| now < l) {
            for v in self.since.values_mut() {
                v.0 = now;
            }
        }
        self.last = Some(now);
        let mut seen = std::collections::HashSet::new();
        let mut found = Vec::new();
        let owners: HashMap<u64, u32> = snap.owners.iter().copied().collect();
        for e in &snap.sockets {
            if e.rx_queue == 0 {
                continue;
            }
            let key = (e.proto, e.local, e.remote);
            seen.insert(key);
            if !self.since.contains_key(&key) && self.since.len() >= self.cap {
                continue;
            }
            let entry = self.since.entry(key).or_insert((now, false));
            if !entry.1 && now.saturating_sub(entry.0) > cfg.rx_queue_after {
                entry.1 = true;
                let owner = owners
                    .get(&e.inode)
                    .and_then(|pid| snap.processes.iter().find(|p| p.pid == *pid))
                    .map(|p| p.name.clone());
                let secs = now.saturating_sub(entry.0) / super::SEC;
                let who = owner.clone().unwrap_or_else(|| "A program".into());
                found.push((
                    owner,
                    Flag {
                        kind: FlagKind::RxQueueBacklog,
                        points: cfg.weights.rx_queue_backlog,
                        why: format!(
                            "{who} has left {} unread in its receive queue for {secs} s (socket {} to {}): it is stuck or overloaded.",
                            explain::human_bytes(u64::from(e.rx_queue)),
                            e.local,
                            e.remote
                        ),
                    },
                ));
            }
        }
        self.since.retain(|k, _| seen.contains(k));
        found
    }
}
