//! `netstat` output: the socket lists of macOS/BSD (`netstat -an`) and Windows
//! (`netstat -ano`), and TCP counters from `netstat -s` (macOS/BSD, Linux net-tools, Windows).
//!
//! macOS/BSD rows: `tcp4  0  0  127.0.0.1.5000  *.*  LISTEN`: protocol (`tcp4`, `tcp6`,
//! `tcp46` for a dual-stack socket, `udp4` ...), Recv-Q, Send-Q, the local and foreign
//! address with the port after the LAST dot (`fe80::1%lo0.123`, `*.5353`, `*.*`), then the
//! state (TCP only). Lines of other sections (UNIX domain sockets, headers) are ignored.
//!
//! Windows rows: `TCP  [::]:135  [::]:0  LISTENING  1234` and `UDP  0.0.0.0:5353  *:*  2345`.
//! Headers and state names are translated on non-English Windows, so rows are read by column
//! position (TCP rows have five columns, UDP rows four), never by header words; a state word
//! netvigil does not know (a translated one) is guessed from the foreign address
//! ([`NetstatSocket::state_guessed`]).

use super::{Parsed, parse_count, parse_ip, socket_addr, tcp_state_from_name, unspecified};
use engine::sockets::{SockProto, SocketEntry, TcpState};
use std::net::SocketAddr;

/// One row of a netstat socket list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetstatSocket {
    /// The socket (uid 0 and inode 0: netstat names neither).
    pub entry: SocketEntry,
    /// The owning process (Windows `-o`); `None` on macOS.
    pub pid: Option<u32>,
    /// A `tcp46`/`udp46` socket: IPv6 that also accepts IPv4 (its addresses are IPv6).
    pub dual_stack: bool,
    /// The state column held a word netvigil does not know (Windows in another language):
    /// the state was guessed, LISTEN when the foreign address is unspecified, ESTABLISHED
    /// otherwise.
    pub state_guessed: bool,
}

fn entry(proto: SockProto, local: SocketAddr, remote: SocketAddr, state: Option<TcpState>) -> SocketEntry {
    SocketEntry {
        proto,
        local,
        remote,
        state,
        connected: proto != SockProto::Tcp && remote.port() != 0,
        uid: 0,
        inode: 0,
        rx_queue: 0,
        tx_queue: 0,
        tcp: None,
        interface: None,
    }
}

/// Parses macOS/BSD `netstat -an` (also with `-W`, which only widens the address columns).
pub fn parse_netstat_bsd(text: &str) -> Parsed<NetstatSocket> {
    let mut out = Parsed::default();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let Some(first) = f.first() else { continue };
        let (proto, v6, dual) = match first.to_ascii_lowercase().as_str() {
            "tcp4" | "tcp" => (SockProto::Tcp, false, false),
            "tcp6" => (SockProto::Tcp, true, false),
            "tcp46" => (SockProto::Tcp, true, true),
            "udp4" | "udp" => (SockProto::Udp, false, false),
            "udp6" => (SockProto::Udp, true, false),
            "udp46" => (SockProto::Udp, true, true),
            _ => continue, // header, another section
        };
        match bsd_row(&f, proto, v6) {
            Some(entry) => out.entries.push(NetstatSocket {
                entry,
                pid: None,
                dual_stack: dual,
                state_guessed: false,
            }),
            None => out.skipped += 1,
        }
    }
    out
}

fn bsd_row(f: &[&str], proto: SockProto, v6: bool) -> Option<SocketEntry> {
    if f.len() < 5 {
        return None;
    }
    let rx = u32::try_from(parse_count(f[1])?).ok()?;
    let tx = u32::try_from(parse_count(f[2])?).ok()?;
    let local = bsd_addr(f[3], v6)?;
    let remote = bsd_addr(f[4], v6)?;
    let state = match proto {
        SockProto::Tcp => Some(tcp_state_from_name(f.get(5)?)?),
        _ => None,
    };
    Some(SocketEntry {
        rx_queue: rx,
        tx_queue: tx,
        ..entry(proto, local, remote, state)
    })
}

/// `127.0.0.1.5000`, `fe80::1%lo0.123`, `*.5353`, `*.*`.
fn bsd_addr(text: &str, v6: bool) -> Option<SocketAddr> {
    let (host, port) = text.rsplit_once('.')?;
    let port = match port {
        "*" => 0,
        p => p.parse().ok()?,
    };
    if host == "*" {
        return Some(SocketAddr::new(unspecified(v6), port));
    }
    let (ip, scope) = parse_ip(host)?;
    if ip.is_ipv6() != v6 {
        return None;
    }
    Some(socket_addr(ip, port, scope))
}

/// Parses Windows `netstat -ano` (any display language).
pub fn parse_netstat_windows(text: &str) -> Parsed<NetstatSocket> {
    let mut out = Parsed::default();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let Some(first) = f.first() else { continue };
        let proto = match first.to_ascii_uppercase().as_str() {
            "TCP" | "TCPV6" => SockProto::Tcp,
            "UDP" | "UDPV6" => SockProto::Udp,
            _ => continue, // title, header (translated), blank
        };
        match windows_row(&f, proto) {
            Some(row) => out.entries.push(row),
            None => out.skipped += 1,
        }
    }
    out
}

fn windows_row(f: &[&str], proto: SockProto) -> Option<NetstatSocket> {
    let want = if proto == SockProto::Tcp { 5 } else { 4 };
    if f.len() != want {
        return None;
    }
    let local = windows_addr(f[1], None)?;
    let remote = windows_addr(f[2], Some(local.is_ipv6()))?;
    if local.is_ipv6() != remote.is_ipv6() {
        return None;
    }
    let pid: u32 = f[want - 1].parse().ok()?;
    let (state, guessed) = match proto {
        SockProto::Tcp => match tcp_state_from_name(f[3]) {
            Some(s) => (Some(s), false),
            None if remote.ip().is_unspecified() => (Some(TcpState::Listen), true),
            None => (Some(TcpState::Established), true),
        },
        _ => (None, false),
    };
    Some(NetstatSocket {
        entry: entry(proto, local, remote, state),
        pid: Some(pid),
        dual_stack: false,
        state_guessed: guessed,
    })
}

/// `0.0.0.0:135`, `[::]:135`, `[fe80::1%4]:49664`, `*:*` (family from `v6`).
fn windows_addr(text: &str, v6: Option<bool>) -> Option<SocketAddr> {
    if text == "*:*" {
        return Some(SocketAddr::new(unspecified(v6?), 0));
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        rest.split_once("]:")?
    } else {
        text.rsplit_once(':')?
    };
    let port: u16 = match port {
        "*" => 0,
        p => p.parse().ok()?,
    };
    if host == "*" {
        return Some(SocketAddr::new(unspecified(v6?), port));
    }
    let (ip, scope) = parse_ip(host)?;
    if !text.starts_with('[') && ip.is_ipv6() {
        return None; // IPv6 without brackets: the port split is ambiguous
    }
    Some(socket_addr(ip, port, scope))
}

/// TCP stack counters. Each is `None` when the output did not have it (every system prints a
/// different set). Windows prints one section per IP version: they are added.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpCounters {
    /// Segments sent (macOS "packets sent", Linux "segments sent out", Windows "Segments Sent").
    pub segments_sent: Option<u64>,
    /// Segments received.
    pub segments_received: Option<u64>,
    /// Segments retransmitted (macOS: data packets retransmitted).
    pub retransmitted: Option<u64>,
    /// Retransmission timer expirations (macOS).
    pub retransmit_timeouts: Option<u64>,
    /// Connections dropped after too many retransmissions (macOS).
    pub timeout_drops: Option<u64>,
    /// Connections opened by this host (active opens).
    pub connection_requests: Option<u64>,
    /// Connections accepted (passive opens).
    pub connection_accepts: Option<u64>,
    /// Failed connection attempts (macOS "bad connection attempts").
    pub failed_connections: Option<u64>,
    /// Established connections reset (Linux "connection resets received", Windows "Reset
    /// Connections").
    pub established_resets: Option<u64>,
    /// RST segments sent (Linux).
    pub resets_sent: Option<u64>,
    /// Connections dropped (macOS "connections closed (including N drops)").
    pub connection_drops: Option<u64>,
    /// Half-open connections dropped (macOS "embryonic connections dropped").
    pub embryonic_drops: Option<u64>,
    /// Listen queue overflows.
    pub listen_overflows: Option<u64>,
    /// Lines that were read into a counter.
    pub lines_matched: usize,
}

/// Reads the TCP counters of `netstat -s` (or `netstat -s -p tcp`): macOS/BSD (`tcp:` section,
/// `\t123 packets sent`), Linux net-tools (`Tcp:` and `TcpExt:`, `    45 segments
/// retransmitted`) and Windows (`TCP Statistics for IPv4`, `  Segments Retransmitted  = 12`,
/// English only). Counters of other protocols' sections are ignored.
///
/// Note: `sysctl net.inet.tcp.stats` prints the raw `struct tcpstat` (an opaque binary value),
/// not text; `netstat -s -p tcp` is the text form of the same counters, and what is read here.
pub fn parse_tcp_stats(text: &str) -> TcpCounters {
    let mut c = TcpCounters::default();
    let mut in_tcp = true;
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with([' ', '\t']) {
            // A section title: "tcp:", "Tcp:", "TcpExt:", "TCP Statistics for IPv4", "udp:".
            in_tcp = line.to_ascii_lowercase().trim_start().starts_with("tcp");
            continue;
        }
        if !in_tcp {
            continue;
        }
        let (shape, numbers) = normalize(line);
        let Some(&first) = numbers.first() else { continue };
        let slot = match shape.as_str() {
            "# packet sent" | "# segment sent out" | "# segment send out" | "segment sent = #" => {
                &mut c.segments_sent
            }
            "# packet received" | "# segment received" | "segment received = #" => &mut c.segments_received,
            "# data packet (# byte) retransmitted"
            | "# segment retransmitted"
            | "# segment retransmited"
            | "segment retransmitted = #" => &mut c.retransmitted,
            "# retransmit timeout" => &mut c.retransmit_timeouts,
            "# connection dropped by rexmit timeout" => &mut c.timeout_drops,
            "# connection request" | "# active connection opening" | "active open = #" => {
                &mut c.connection_requests
            }
            "# connection accept" | "# passive connection opening" | "passive open = #" => {
                &mut c.connection_accepts
            }
            "# bad connection attempt" | "# failed connection attempt" | "failed connection attempt = #" => {
                &mut c.failed_connections
            }
            "# connection reset received" | "reset connection = #" => &mut c.established_resets,
            "# reset sent" => &mut c.resets_sent,
            "# embryonic connection dropped" => &mut c.embryonic_drops,
            "# listen queue overflow" | "# time the listen queue of a socket overflowed" => {
                &mut c.listen_overflows
            }
            "# connection closed (including # drop)" => {
                let Some(&drops) = numbers.get(1) else { continue };
                add(&mut c.connection_drops, drops);
                c.lines_matched += 1;
                continue;
            }
            _ => continue,
        };
        add(slot, first);
        c.lines_matched += 1;
    }
    c
}

fn add(slot: &mut Option<u64>, v: u64) {
    *slot = Some(slot.unwrap_or(0).saturating_add(v));
}

/// The line with every count replaced by `#`, lower-cased, plurals cut (`packets` ->
/// `packet`), single spaces; and the counts in order. Counts may be grouped (`1,234`).
fn normalize(line: &str) -> (String, Vec<u64>) {
    let mut words: Vec<String> = Vec::new();
    let mut numbers = Vec::new();
    let mut tokens = line.split_whitespace().peekable();
    while let Some(tok) = tokens.next() {
        // Punctuation around a number: "(12345678" "bytes)" "(including" "123" "drops)".
        let open = tok.starts_with('(');
        let inner = tok.trim_start_matches('(');
        let close = inner.ends_with(')');
        let inner = inner.trim_end_matches(')');
        let mut joined = inner.to_string();
        // "1 234" grouped with spaces: join following three-digit tokens.
        if inner.bytes().all(|b| b.is_ascii_digit()) && !inner.is_empty() && inner.len() <= 3 {
            while let Some(next) = tokens.peek() {
                if next.len() == 3 && next.bytes().all(|b| b.is_ascii_digit()) {
                    joined.push(' ');
                    joined.push_str(next);
                    tokens.next();
                } else {
                    break;
                }
            }
        }
        let word = match parse_count(&joined) {
            Some(n) => {
                numbers.push(n);
                "#".to_string()
            }
            None => {
                let w = joined.to_ascii_lowercase();
                match w.strip_suffix('s') {
                    Some(stem) if stem.len() >= 3 && !stem.ends_with('s') => stem.to_string(),
                    _ => w,
                }
            }
        };
        words.push(format!(
            "{}{}{}",
            if open { "(" } else { "" },
            word,
            if close { ")" } else { "" }
        ));
    }
    (words.join(" "), numbers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert_eq!(
            normalize("\t\t234 data packets (56789 bytes) retransmitted"),
            ("# data packet (# byte) retransmitted".into(), vec![234, 56_789])
        );
        assert_eq!(
            normalize("\t5,678 connections closed (including 1 234 drops)"),
            ("# connection closed (including # drop)".into(), vec![5678, 1234])
        );
        assert_eq!(
            normalize("  Segments Retransmitted              = 12"),
            ("segment retransmitted = #".into(), vec![12])
        );
    }

    #[test]
    fn bsd_addresses() {
        assert_eq!(bsd_addr("*.*", false).unwrap().to_string(), "0.0.0.0:0");
        assert_eq!(bsd_addr("*.22", true).unwrap().to_string(), "[::]:22");
        assert_eq!(bsd_addr("::1.8080", true).unwrap().to_string(), "[::1]:8080");
        assert_eq!(
            bsd_addr("fe80::1%lo0.123", true).unwrap().to_string(),
            "[fe80::1]:123"
        );
        assert!(bsd_addr("10.0.0.1.80", true).is_none());
        assert!(bsd_addr("10.0.0.1", false).is_none());
    }
}
