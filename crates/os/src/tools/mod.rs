//! Parsers of the text that operating-system tools print, and a runner for those tools.
//!
//! netvigil reads the socket table of macOS from `lsof`, `netstat`, `ps`, `nettop` and
//! `codesign`, and can fall back to `netstat -ano` and `tasklist` on Windows. Every parser here
//! is a plain function over `&str`: no I/O, no `unsafe`, compiled on every platform, so that
//! the recorded outputs in `tests/fixtures/tools` are checked on the Linux machines that build
//! netvigil. A parser never panics: malformed lines are skipped and counted
//! ([`Parsed::skipped`]), the way [`crate::procnet`] does.
//!
//! - [`lsof`]: `lsof -F` field output (sockets with pid, command, uid, state, queues);
//! - [`netstat`]: `netstat -an` of macOS/BSD (dotted ports), `netstat -ano` of Windows
//!   (owning pid), and the TCP counters of `netstat -s` ([`netstat::parse_tcp_stats`]);
//! - [`nettop`]: `nettop -P -L 1 -n -x` CSV (bytes per process);
//! - [`ps`]: `ps -eo pid,ppid,uid,user,lstart,comm`, `ps -eo pid,args` and Windows
//!   `tasklist /fo csv /nh`;
//! - [`codesign`]: `codesign -dvvv` (the code signature of a macOS executable);
//! - [`iphlp`]: the rows of the Windows IP Helper tables and WinVerifyTrust results, as plain
//!   numbers (the conversion is tested here, the calls are in `crate::windows`);
//! - [`assemble`]: joins parsed outputs into an [`engine::sockets::SocketSnapshot`];
//! - [`run`]: runs a tool with a timeout and a cap on its output.

pub mod assemble;
pub mod codesign;
pub mod iphlp;
pub mod lsof;
pub mod netstat;
pub mod nettop;
pub mod ps;
pub mod run;

pub use crate::procnet::Parsed;

use engine::sockets::{SockProto, TcpState};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

/// A TCP state as the tools name it: `ESTABLISHED`, `LISTEN` (lsof, BSD netstat), `LISTENING`
/// (Windows netstat), `SYN_RCVD` (BSD), `SYN_RECEIVED` (Windows), `FIN_WAIT_1` (BSD, Windows)
/// or `FIN_WAIT1` (Linux), `Established` (nettop) ... Case does not matter. `CLOSED`,
/// `DELETE_TCB` and `BOUND` read as [`TcpState::Close`]. Anything else is `None`.
pub fn tcp_state_from_name(name: &str) -> Option<TcpState> {
    let upper = name.trim().to_ascii_uppercase().replace(['-', ' '], "_");
    Some(match upper.as_str() {
        "ESTABLISHED" | "ESTAB" => TcpState::Established,
        "LISTEN" | "LISTENING" => TcpState::Listen,
        "SYN_SENT" => TcpState::SynSent,
        "SYN_RCVD" | "SYN_RECEIVED" | "SYN_RECV" => TcpState::SynRecv,
        "FIN_WAIT_1" | "FIN_WAIT1" => TcpState::FinWait1,
        "FIN_WAIT_2" | "FIN_WAIT2" => TcpState::FinWait2,
        "CLOSE_WAIT" => TcpState::CloseWait,
        "CLOSING" => TcpState::Closing,
        "LAST_ACK" => TcpState::LastAck,
        "TIME_WAIT" => TcpState::TimeWait,
        "CLOSED" | "CLOSE" | "DELETE_TCB" | "BOUND" => TcpState::Close,
        _ => return None,
    })
}

/// An IP address as the tools print it: dotted IPv4, IPv6 with or without brackets, with an
/// optional zone (`fe80::1%lo0`, `fe80::1%4`). A numeric zone becomes the scope id; a named
/// zone (an interface name) cannot be turned into an index without asking the OS and reads as
/// scope 0. Returns the address and the scope id.
pub fn parse_ip(text: &str) -> Option<(IpAddr, u32)> {
    let t = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    if let Ok(v4) = t.parse::<Ipv4Addr>() {
        return Some((IpAddr::V4(v4), 0));
    }
    let (addr, zone) = match t.split_once('%') {
        Some((a, z)) => (a, Some(z)),
        None => (t, None),
    };
    let v6 = addr.parse::<Ipv6Addr>().ok()?;
    let scope = match zone {
        Some("") => return None,
        Some(z) => z.parse::<u32>().unwrap_or(0),
        None => 0,
    };
    Some((IpAddr::V6(v6), scope))
}

/// The unspecified address of a family (`0.0.0.0` or `::`).
pub fn unspecified(v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    }
}

/// A socket address with an IPv6 scope id where there is one.
pub fn socket_addr(ip: IpAddr, port: u16, scope: u32) -> SocketAddr {
    match ip {
        IpAddr::V6(v6) if scope != 0 => SocketAddr::V6(SocketAddrV6::new(v6, port, 0, scope)),
        _ => SocketAddr::new(ip, port),
    }
}

/// A counter as a tool prints it. The tools netvigil reads print plain integers whatever the
/// locale (they use `printf("%u")`, not `%'u`), so plain digits are the normal case; grouped
/// forms are also read, because counters are integers: `1,234`, `1.234`, `1'234`, `1 234` (with
/// a space, a no-break space U+00A0 or a narrow no-break space U+202F) all mean 1234. Every
/// group after the first must have exactly three digits, and one separator is used throughout;
/// anything else (`1.5`, `12,34`, `1,234.5`, a sign) is not a counter.
pub fn parse_count(text: &str) -> Option<u64> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse().ok();
    }
    let sep = t.chars().find(|c| !c.is_ascii_digit())?;
    if !matches!(sep, ',' | '.' | '\'' | ' ' | '\u{a0}' | '\u{202f}') {
        return None;
    }
    let mut groups = t.split(sep);
    let first = groups.next()?;
    if first.is_empty() || first.len() > 3 || !first.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut value: u64 = first.parse().ok()?;
    for g in groups {
        if g.len() != 3 || !g.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        value = value.checked_mul(1000)?.checked_add(g.parse::<u64>().ok()?)?;
    }
    Some(value)
}

/// A stable, non-zero key for a socket that the OS names by no inode (Windows rows, lsof
/// without a device field): FNV-1a over the protocol, both addresses and a distinguishing
/// number (the pid, or pid and fd), with the top bit set so it cannot collide with a small
/// real inode. The same socket gets the same key in every snapshot.
pub fn synthetic_inode(proto: SockProto, local: SocketAddr, remote: SocketAddr, salt: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(proto.name().as_bytes());
    for a in [local, remote] {
        match a.ip() {
            IpAddr::V4(v4) => eat(&v4.octets()),
            IpAddr::V6(v6) => eat(&v6.octets()),
        }
        eat(&a.port().to_be_bytes());
    }
    eat(&salt.to_be_bytes());
    h | (1 << 63)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_of_every_tool() {
        for (name, want) in [
            ("ESTABLISHED", TcpState::Established),
            ("Established", TcpState::Established),
            ("LISTENING", TcpState::Listen),
            ("SYN_RCVD", TcpState::SynRecv),
            ("SYN_RECEIVED", TcpState::SynRecv),
            ("FIN_WAIT_1", TcpState::FinWait1),
            ("FIN_WAIT2", TcpState::FinWait2),
            ("DELETE_TCB", TcpState::Close),
            ("TIME_WAIT", TcpState::TimeWait),
        ] {
            assert_eq!(tcp_state_from_name(name), Some(want), "{name}");
        }
        assert_eq!(tcp_state_from_name("ABHÖREN"), None);
        assert_eq!(tcp_state_from_name(""), None);
    }

    #[test]
    fn addresses_with_zones() {
        assert_eq!(parse_ip("[::1]"), Some(("::1".parse().unwrap(), 0)));
        assert_eq!(parse_ip("fe80::1%lo0"), Some(("fe80::1".parse().unwrap(), 0)));
        assert_eq!(parse_ip("[fe80::1%4]"), Some(("fe80::1".parse().unwrap(), 4)));
        assert_eq!(parse_ip("10.0.0.1"), Some(("10.0.0.1".parse().unwrap(), 0)));
        assert_eq!(parse_ip("fe80::1%"), None);
        assert_eq!(parse_ip("host.example"), None);
        let a = socket_addr("fe80::1".parse().unwrap(), 123, 4);
        assert_eq!(a.to_string(), "[fe80::1%4]:123");
    }

    #[test]
    fn counts_plain_and_grouped() {
        assert_eq!(parse_count("0"), Some(0));
        assert_eq!(parse_count("1234567"), Some(1_234_567));
        assert_eq!(parse_count("1,234,567"), Some(1_234_567));
        assert_eq!(parse_count("1.234"), Some(1234));
        assert_eq!(parse_count("1 234"), Some(1234));
        assert_eq!(parse_count("1\u{202f}234\u{202f}000"), Some(1_234_000));
        assert_eq!(parse_count("12'345"), Some(12_345));
        for bad in [
            "",
            "1.5",
            "12,34",
            "1,234.567",
            "-1",
            "1,,234",
            "1234,567",
            "1,234 567",
            "x",
        ] {
            assert_eq!(parse_count(bad), None, "{bad:?}");
        }
        assert_eq!(parse_count("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_count("18,446,744,073,709,551,616"), None);
    }

    #[test]
    fn synthetic_inodes_are_stable_and_distinct() {
        let l: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let r: SocketAddr = "10.0.0.2:443".parse().unwrap();
        let a = synthetic_inode(SockProto::Tcp, l, r, 7);
        assert_eq!(a, synthetic_inode(SockProto::Tcp, l, r, 7));
        assert_ne!(a, synthetic_inode(SockProto::Tcp, l, r, 8));
        assert_ne!(a, synthetic_inode(SockProto::Udp, l, r, 7));
        assert!(a >= 1 << 63);
    }

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
    }
}
