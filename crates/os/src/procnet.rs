//! Parsers for the kernel's text socket tables under `/proc/net`.
//!
//! Plain functions over `&str`: no I/O, no `unsafe`, compiled on every platform so that the
//! recorded tables in the tests run everywhere. The Linux socket table
//! ([`crate::linux::sockets`]) reads the files and hands their text here.
//!
//! Tables and formats (see the kernel's `seq_show` functions):
//! - `/proc/net/{tcp,tcp6,udp,udp6,udplite,udplite6,raw,raw6,icmp,icmp6}` ([`parse_inet`]):
//!   `sl local rem st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...`, addresses
//!   as hex 32-bit words printed in the kernel's (host) byte order;
//! - `/proc/net/packet` ([`parse_packet`]);
//! - `/proc/net/sctp/eps` and `/proc/net/sctp/assocs` ([`parse_sctp_eps`],
//!   [`parse_sctp_assocs`]), addresses as dotted/colon text.
//!
//! Malformed lines are skipped and counted in [`Parsed::skipped`]; a parser never panics.

use engine::sockets::{SockProto, SocketEntry, TcpState};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// What one table gave: its entries and the number of lines that could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed<T> {
    pub entries: Vec<T>,
    /// Non-empty, non-header lines that were malformed and skipped.
    pub skipped: usize,
}

impl<T> Default for Parsed<T> {
    fn default() -> Self {
        Parsed {
            entries: Vec::new(),
            skipped: 0,
        }
    }
}

/// One AF_PACKET socket from `/proc/net/packet`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketSocket {
    pub inode: u64,
    pub uid: u32,
    /// Ethertype the socket receives (host order: 0x0003 is ETH_P_ALL, 0x0800 IPv4 ...).
    pub protocol: u16,
    /// Interface the socket is bound to, 0 for every interface.
    pub ifindex: u32,
    /// The socket is hooked into the receive path (bound and running).
    pub running: bool,
}

/// TCP_ESTABLISHED: a connectionless socket in this state is `connect()`ed.
const STATE_ESTABLISHED: u8 = 1;

/// Parses one of `/proc/net/{tcp,udp,udplite,raw,icmp}` (`v6 == false`) or their `6`
/// variants (`v6 == true`).
///
/// `proto` is the table's protocol. For raw tables pass `SockProto::Raw(_)` with any number:
/// each line's "port" field is the socket's IP protocol and becomes `SockProto::Raw(n)`, with
/// the ports of both addresses set to 0. ICMP tables are the "ping" sockets (`SockProto::Icmp`
/// / `SockProto::Icmpv6`); their port is the ICMP echo identifier.
///
/// Addresses are decoded in this machine's byte order, which is what the kernel printed if the
/// text was read on this machine.
pub fn parse_inet(text: &str, proto: SockProto, v6: bool) -> Parsed<SocketEntry> {
    let mut out = Parsed::default();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else { continue };
        if first == "sl" {
            continue; // header
        }
        match parse_inet_line(first, fields, proto, v6) {
            Some(entry) => out.entries.push(entry),
            None => out.skipped += 1,
        }
    }
    out
}

fn parse_inet_line<'a>(
    first: &str,
    mut f: impl Iterator<Item = &'a str>,
    proto: SockProto,
    v6: bool,
) -> Option<SocketEntry> {
    // "  12:" — slot number.
    let slot = first.strip_suffix(':')?;
    if slot.is_empty() || !slot.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (local_ip, local_port) = hex_endpoint(f.next()?, v6)?;
    let (remote_ip, remote_port) = hex_endpoint(f.next()?, v6)?;
    let state = hex_u32(f.next()?, 2)? as u8;
    let (tx, rx) = f.next()?.split_once(':')?;
    let tx_queue = hex_u32(tx, 8)?;
    let rx_queue = hex_u32(rx, 8)?;
    let _timer = f.next()?; // tr:tm->when
    let _retrnsmt = f.next()?;
    let uid = dec_u64(f.next()?)?;
    let uid = u32::try_from(uid).ok()?;
    let _timeout = dec_i64(f.next()?)?;
    let inode = dec_u64(f.next()?)?;

    let (proto, local_port, remote_port) = match proto {
        SockProto::Raw(_) => (SockProto::Raw(u8::try_from(local_port).ok()?), 0, 0),
        p => (p, local_port, remote_port),
    };
    let is_tcp = proto == SockProto::Tcp;
    let tcp_state = if is_tcp {
        Some(TcpState::from_kernel(state)?)
    } else {
        None
    };
    Some(SocketEntry {
        proto,
        local: SocketAddr::new(local_ip, local_port),
        remote: SocketAddr::new(remote_ip, remote_port),
        state: tcp_state,
        connected: if is_tcp {
            remote_port != 0
        } else {
            state == STATE_ESTABLISHED
        },
        uid,
        inode,
        rx_queue,
        tx_queue,
        tcp: None,
        interface: None,
    })
}

/// "0100007F:0035" (IPv4) or 32 hex digits ":" 4 hex digits (IPv6).
fn hex_endpoint(s: &str, v6: bool) -> Option<(IpAddr, u16)> {
    let (addr, port) = s.split_once(':')?;
    let port = hex_u32(port, 4)? as u16;
    let ip = if v6 {
        if addr.len() != 32 {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
            let word = hex_u32(addr.get(i * 8..i * 8 + 8)?, 8)?;
            chunk.copy_from_slice(&word.to_ne_bytes());
        }
        IpAddr::V6(Ipv6Addr::from(bytes))
    } else {
        if addr.len() != 8 {
            return None;
        }
        IpAddr::V4(Ipv4Addr::from(hex_u32(addr, 8)?.to_ne_bytes()))
    };
    Some((ip, port))
}

/// Hex digits only (no sign, no "0x"), 1 to `max_len` of them.
fn hex_u32(s: &str, max_len: usize) -> Option<u32> {
    if s.is_empty() || s.len() > max_len || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

/// Decimal digits only.
fn dec_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Decimal with an optional leading '-'.
fn dec_i64(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    dec_u64(digits)?;
    s.parse().ok()
}

/// Parses `/proc/net/packet`:
/// `sk RefCnt Type Proto Iface R Rmem User Inode` (Proto in hex, the rest decimal).
pub fn parse_packet(text: &str) -> Parsed<PacketSocket> {
    let mut out = Parsed::default();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.first() {
            None => continue,
            Some(&"sk") => continue, // header
            Some(_) => {}
        }
        match parse_packet_line(&f) {
            Some(p) => out.entries.push(p),
            None => out.skipped += 1,
        }
    }
    out
}

fn parse_packet_line(f: &[&str]) -> Option<PacketSocket> {
    if f.len() < 9 {
        return None;
    }
    hex_u64(f[0])?; // kernel pointer (hashed, or zeros without privilege)
    dec_u64(f[1])?; // refcount
    dec_u64(f[2])?; // socket type
    let protocol = hex_u32(f[3], 4)? as u16;
    let ifindex = dec_i64(f[4])?;
    let running = match f[5] {
        "0" => false,
        "1" => true,
        _ => return None,
    };
    dec_u64(f[6])?; // rmem
    let uid = u32::try_from(dec_u64(f[7])?).ok()?;
    let inode = dec_u64(f[8])?;
    Some(PacketSocket {
        inode,
        uid,
        protocol,
        ifindex: u32::try_from(ifindex).unwrap_or(0),
        running,
    })
}

fn hex_u64(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

/// An address from the SCTP tables ("10.0.0.1", "fe80:0000:...:0001"), with the '*' that marks
/// the primary address stripped. Returns the address and whether it was marked.
fn sctp_addr(token: &str) -> Option<(IpAddr, bool)> {
    let (s, primary) = match token.strip_prefix('*') {
        Some(rest) => (rest, true),
        None => (token, false),
    };
    s.parse::<IpAddr>().ok().map(|ip| (ip, primary))
}

/// The marked (primary) address of a list, else its first.
fn primary_of(addrs: &[(IpAddr, bool)]) -> Option<IpAddr> {
    addrs
        .iter()
        .find(|(_, p)| *p)
        .or_else(|| addrs.first())
        .map(|(ip, _)| *ip)
}

fn unspecified_like(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// Parses `/proc/net/sctp/eps` (net/sctp/proc.c, `sctp_eps_seq_show`):
/// `ENDPT SOCK STY SST HBKT LPORT UID INODE LADDRS...`.
///
/// One entry per endpoint: local address is the first bound address (0.0.0.0 when none is
/// listed), remote is unspecified, `state` is the socket state SST (SCTP numbers its socket
/// states like TCP: 10 listening, 1 established, 7 closed, 8 closing).
pub fn parse_sctp_eps(text: &str) -> Parsed<SocketEntry> {
    let mut out = Parsed::default();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.first() {
            None => continue,
            Some(&"ENDPT") => continue,
            Some(_) => {}
        }
        match parse_sctp_eps_line(&f) {
            Some(e) => out.entries.push(e),
            None => out.skipped += 1,
        }
    }
    out
}

fn parse_sctp_eps_line(f: &[&str]) -> Option<SocketEntry> {
    if f.len() < 8 {
        return None;
    }
    hex_u64(f[0])?;
    hex_u64(f[1])?;
    dec_u64(f[2])?; // socket style
    let sst = u8::try_from(dec_u64(f[3])?).ok()?;
    dec_u64(f[4])?; // hash bucket
    let lport = u16::try_from(dec_u64(f[5])?).ok()?;
    let uid = u32::try_from(dec_u64(f[6])?).ok()?;
    let inode = dec_u64(f[7])?;
    let addrs = f[8..].iter().map(|t| sctp_addr(t)).collect::<Option<Vec<_>>>()?;
    let local_ip = primary_of(&addrs).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    Some(SocketEntry {
        proto: SockProto::Sctp,
        local: SocketAddr::new(local_ip, lport),
        remote: SocketAddr::new(unspecified_like(local_ip), 0),
        state: TcpState::from_kernel(sst),
        connected: false,
        uid,
        inode,
        rx_queue: 0,
        tx_queue: 0,
        tcp: None,
        interface: None,
    })
}

/// SCTP association states (`enum sctp_state`, include/net/sctp/constants.h) as the nearest
/// TCP state.
fn sctp_assoc_state(st: u64) -> Option<TcpState> {
    Some(match st {
        0 => TcpState::Close,        // CLOSED
        1 | 2 => TcpState::SynSent,  // COOKIE_WAIT, COOKIE_ECHOED
        3 => TcpState::Established,  // ESTABLISHED
        4 | 5 => TcpState::FinWait1, // SHUTDOWN_PENDING, SHUTDOWN_SENT
        6 => TcpState::CloseWait,    // SHUTDOWN_RECEIVED
        7 => TcpState::LastAck,      // SHUTDOWN_ACK_SENT
        _ => return None,
    })
}

/// Parses `/proc/net/sctp/assocs` (net/sctp/proc.c, `sctp_assocs_seq_show`):
/// `ASSOC SOCK STY SST ST HBKT ASSOC-ID TX_QUEUE RX_QUEUE UID INODE LPORT RPORT LADDRS <->
/// RADDRS HBINT INS OUTS MAXRT T1X T2X RTXC wmema wmemq sndbuf rcvbuf`.
///
/// One entry per association: local and remote addresses are the ones marked '*' (primary
/// path), else the first listed; `state` is the association state mapped to the nearest TCP
/// state (COOKIE_WAIT/ECHOED -> SynSent, SHUTDOWN_* -> FinWait1/CloseWait/LastAck);
/// `connected` is true.
pub fn parse_sctp_assocs(text: &str) -> Parsed<SocketEntry> {
    let mut out = Parsed::default();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.first() {
            None => continue,
            Some(&"ASSOC") => continue,
            Some(_) => {}
        }
        match parse_sctp_assoc_line(&f) {
            Some(e) => out.entries.push(e),
            None => out.skipped += 1,
        }
    }
    out
}

fn parse_sctp_assoc_line(f: &[&str]) -> Option<SocketEntry> {
    if f.len() < 14 {
        return None;
    }
    hex_u64(f[0])?;
    hex_u64(f[1])?;
    dec_u64(f[2])?; // style
    dec_u64(f[3])?; // socket state
    let st = sctp_assoc_state(dec_u64(f[4])?)?;
    dec_u64(f[5])?; // hash bucket
    dec_i64(f[6])?; // association id
    let tx_queue = u32::try_from(dec_i64(f[7])?).unwrap_or(0);
    let rx_queue = u32::try_from(dec_i64(f[8])?).unwrap_or(0);
    let uid = u32::try_from(dec_u64(f[9])?).ok()?;
    let inode = dec_u64(f[10])?;
    let lport = u16::try_from(dec_u64(f[11])?).ok()?;
    let rport = u16::try_from(dec_u64(f[12])?).ok()?;
    let rest = &f[13..];
    let arrow = rest.iter().position(|t| *t == "<->")?;
    let locals = rest[..arrow]
        .iter()
        .map(|t| sctp_addr(t))
        .collect::<Option<Vec<_>>>()?;
    // Remote addresses run until the first number (HBINT ...).
    let remotes: Vec<(IpAddr, bool)> = rest[arrow + 1..].iter().map_while(|t| sctp_addr(t)).collect();
    let remote_ip = primary_of(&remotes)?;
    let local_ip = primary_of(&locals).unwrap_or(unspecified_like(remote_ip));
    Some(SocketEntry {
        proto: SockProto::Sctp,
        local: SocketAddr::new(local_ip, lport),
        remote: SocketAddr::new(remote_ip, rport),
        state: Some(st),
        connected: true,
        uid,
        inode,
        rx_queue,
        tx_queue,
        tcp: None,
        interface: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    // Recorded on this project's Linux 6.18 x86_64 test machine (a listener, both ends of a
    // loopback connection with the client side already closed: FIN_WAIT2 in the timewait
    // format, uid/inode 0).
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode                                                     
   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 640 1 00000000816f034d 100 0 0 10 0                       
   1: 0100007F:814D 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 112062 1 00000000240b90ab 100 0 0 10 0                    
   2: 0100007F:814D 0100007F:BB6E 08 00000000:00000033 00:00000000 00000000     0        0 112064 1 00000000a45f9e60 20 4 28 10 -1                   
   3: 0100007F:BB6E 0100007F:814D 05 00000000:00000000 03:00001760 00000000     0        0 0 3 0000000083ca0e5f                                      
";

    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:D563 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 112065 1 0000000082e8fb63 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000100007F:A2B4 01 00000010:00000000 01:00000014 00000000  1000        0 4242 1 0000000082e8fb64 20 4 30 10 -1
";

    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops            
 3154: 00000000:82B7 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 112068 2 00000000b0f59527 0        
";

    const UDP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
 3608: 00000000000000000000000001000000:847D 00000000000000000000000001000000:E651 01 00000000:00000000 00:00000000 00000000     0        0 112067 2 00000000c21c3499 0
12268: 00000000000000000000000001000000:E651 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 112066 2 00000000095186c1 0
";

    const RAW: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  26: 00000000:0001 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 112069 2 000000005def7d25 0
 121: 00000000:00FF 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 112071 2 000000000a9e7e85 0
";

    const RAW6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  198: 00000000000000000000000000000000:003A 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 112070 2 00000000d47afbb5 0
";

    // Ping sockets: the machine does not allow them (ping_group_range "1 0"), so this is
    // written from the kernel's format (ping_v4_format_sock, same columns as udp).
    const ICMP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops             
   71: 0100007F:0047 0100007F:0000 01 00000000:00000000 00:00000000 00000000  1000        0 99881 2 0000000000000000 0
";

    const PACKET: &str = "sk               RefCnt Type Proto  Iface R Rmem   User   Inode
0000000007d780b3 3      3    0003   0     1 1668   0      112074
000000005d990b1d 3      2    88cc   1     1 0      0      112075
0000000000000000 2      3    0800   12    0 0      1000   5551
";

    #[cfg(target_endian = "little")]
    #[test]
    fn tcp_recorded() {
        let p = parse_inet(TCP, SockProto::Tcp, false);
        assert_eq!(p.skipped, 0);
        assert_eq!(p.entries.len(), 4);
        let l = &p.entries[1];
        assert_eq!(l.local, v4("127.0.0.1:33101"));
        assert_eq!(l.remote, v4("0.0.0.0:0"));
        assert_eq!(l.state, Some(TcpState::Listen));
        assert!(l.is_listening());
        assert_eq!(l.inode, 112062);
        let s = &p.entries[2];
        assert_eq!(s.remote, v4("127.0.0.1:47982"));
        assert_eq!(s.state, Some(TcpState::CloseWait));
        assert_eq!(s.rx_queue, 0x33);
        assert!(s.connected);
        let tw = &p.entries[3];
        assert_eq!(tw.state, Some(TcpState::FinWait2));
        assert_eq!((tw.uid, tw.inode), (0, 0));
        assert_eq!(p.entries[0].local, v4("0.0.0.0:2024"));
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn tcp6_recorded_and_mapped() {
        let p = parse_inet(TCP6, SockProto::Tcp, true);
        assert_eq!(p.skipped, 0);
        assert_eq!(p.entries[0].local, "[::]:54627".parse().unwrap());
        let m = &p.entries[1];
        assert_eq!(m.local, "[::ffff:127.0.0.1]:8080".parse().unwrap());
        assert_eq!(m.remote, "[::ffff:127.0.0.1]:41652".parse().unwrap());
        assert_eq!((m.uid, m.inode, m.tx_queue), (1000, 4242, 16));
        assert_eq!(m.state, Some(TcpState::Established));
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn udp_connected_flag() {
        let p = parse_inet(UDP, SockProto::Udp, false);
        assert_eq!(p.entries.len(), 1);
        assert!(!p.entries[0].connected);
        assert_eq!(p.entries[0].state, None);
        assert!(p.entries[0].is_listening());
        let p = parse_inet(UDP6, SockProto::Udp, true);
        assert_eq!(p.skipped, 0);
        let c = &p.entries[0];
        assert!(c.connected);
        assert_eq!(c.local, "[::1]:33917".parse().unwrap());
        assert_eq!(c.remote, "[::1]:58961".parse().unwrap());
        assert!(!p.entries[1].connected);
        assert_eq!(p.entries[1].inode, 112066);
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn raw_protocol_from_port() {
        let p = parse_inet(RAW, SockProto::Raw(0), false);
        assert_eq!(p.skipped, 0);
        assert_eq!(p.entries[0].proto, SockProto::Raw(1));
        assert_eq!(p.entries[1].proto, SockProto::Raw(255));
        assert_eq!(p.entries[1].local.port(), 0);
        let p = parse_inet(RAW6, SockProto::Raw(0), true);
        assert_eq!(p.entries[0].proto, SockProto::Raw(58));
        assert!(p.entries[0].local.is_ipv6());
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn icmp_ping() {
        let p = parse_inet(ICMP, SockProto::Icmp, false);
        assert_eq!(p.skipped, 0);
        let e = &p.entries[0];
        assert_eq!(e.proto, SockProto::Icmp);
        assert_eq!(e.local, v4("127.0.0.1:71"));
        assert!(e.connected);
        assert_eq!((e.uid, e.inode), (1000, 99881));
    }

    #[test]
    fn awkward_inet_lines() {
        let text = "\n\n  sl  local_address\n\
            garbage\n\
            0: 0100007F:0035\n\
            x1: 0100007F:0035 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1\n\
            1: 0100007F:0035 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 -1\n\
            2: 0100007F:+035 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1\n\
            3: 0100007F:0035 00000000:0000 FF 00000000:00000000 00:00000000 00000000 0 0 1\n\
            4: 0100007F:0035 00000000:0000 0A 0000000000:0 00:00000000 00000000 0 0 1\n\
            5: 100007F:0035 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1\n\
            6: 0100007F:0035 00000000:0000 0A 00000000:00000000 00:00000000 00000000 99999999999 0 1\n\
            7: 0100007\u{e9}:0035 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1\n\
            \t8:\t0100007F:0035\t00000000:0000\t0A\t00000000:00000000\t00:00000000\t00000000\t0\t0\t77\r\n";
        let p = parse_inet(text, SockProto::Tcp, false);
        assert_eq!(p.skipped, 10, "{p:?}");
        assert_eq!(p.entries.len(), 1);
        assert_eq!(p.entries[0].inode, 77);
        assert_eq!(p.entries[0].local.port(), 53);
        // An IPv6 table read as IPv4 (and the reverse) is all malformed, not misread.
        assert_eq!(parse_inet(TCP6, SockProto::Tcp, false).skipped, 2);
        assert_eq!(parse_inet(TCP, SockProto::Tcp, true).skipped, 4);
        // A raw "port" above 255 is not a protocol.
        let bad_raw = "0: 00000000:0100 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 5";
        assert_eq!(parse_inet(bad_raw, SockProto::Raw(0), false).skipped, 1);
    }

    #[test]
    fn packet_recorded() {
        let p = parse_packet(PACKET);
        assert_eq!(p.skipped, 0);
        assert_eq!(
            p.entries,
            vec![
                PacketSocket {
                    inode: 112074,
                    uid: 0,
                    protocol: 3,
                    ifindex: 0,
                    running: true
                },
                PacketSocket {
                    inode: 112075,
                    uid: 0,
                    protocol: 0x88cc,
                    ifindex: 1,
                    running: true
                },
                PacketSocket {
                    inode: 5551,
                    uid: 1000,
                    protocol: 0x0800,
                    ifindex: 12,
                    running: false
                },
            ]
        );
        let awkward = "sk RefCnt\n00 1 3 0003 0 2 0 0 1\n00 1 3 0003 0 1 0 0\n00 1 3 10003 0 1 0 0 1\n";
        let p = parse_packet(awkward);
        assert_eq!((p.entries.len(), p.skipped), (0, 3));
    }

    // Written from net/sctp/proc.c (this machine's kernel has no SCTP): "%8p %8p %-3d %-3d
    // %-4d %-5d %5u %5llu " then each bound address "%pI4 " / "%pI6 ".
    const SCTP_EPS: &str = " ENDPT     SOCK   STY SST HBKT LPORT   UID INODE LADDRS
ffff88017e0a0200 ffff880299f7fa00 2   10  29   11165   200 299689357 10.0.0.102 10.0.0.70 
ffff880612e81c00 ffff8803c28a1b00 0   10  30   36412     0 273361203 fe80:0000:0000:0000:0200:00ff:fe00:0001 
00000000deadbeef 00000000cafef00d 2   1   31   40000  1000 5123 127.0.0.1 
";

    // "%8p %8p %-3d %-3d %-2d %-4d %4d %8d %8d %7u %5llu %-5d %5d " " " local addresses
    // ("*" marks the primary path's source) "<-> " remote addresses ("*" marks the primary)
    // "\t%8lu %5d %5d %4d %4d %4d %8d %8d %8d %8d %8d".
    const SCTP_ASSOCS: &str = " ASSOC     SOCK   STY SST ST HBKT ASSOC-ID TX_QUEUE RX_QUEUE UID INODE LPORT RPORT LADDRS <-> RADDRS HBINT INS OUTS MAXRT T1X T2X RTXC wmema wmemq sndbuf rcvbuf
ffff8803c28a1000 ffff8803c28a1b00 2   1   3  0       3        0        0    1000  5123 40000 36412  127.0.0.1 <-> *127.0.0.1 \t   30000    10    10   10    0    0        0        1        0   212992   212992
ffff8803c28a2000 ffff880299f7fa00 0   10  3  0       7      512       64     200 299689357 11165 5001  10.0.0.102 *10.0.0.70 <-> 10.0.0.9 *10.0.0.8 \t   30000    10    10   10    0    0        0        1        0   212992   212992
ffff8803c28a3000 ffff880299f7fa00 0   10  1  0       8        0        0     200 299689357 11165 5002  *fe80:0000:0000:0000:0200:00ff:fe00:0001 <-> fe80:0000:0000:0000:0200:00ff:fe00:0002 \t 30000 10 10 10 0 0 0 1 0 1 1
";

    #[test]
    fn sctp_eps_written_from_kernel_format() {
        let p = parse_sctp_eps(SCTP_EPS);
        assert_eq!(p.skipped, 0);
        assert_eq!(p.entries.len(), 3);
        let e = &p.entries[0];
        assert_eq!(e.proto, SockProto::Sctp);
        assert_eq!(e.local, v4("10.0.0.102:11165"));
        assert_eq!(e.remote, v4("0.0.0.0:0"));
        assert_eq!(e.state, Some(TcpState::Listen));
        assert_eq!((e.uid, e.inode), (200, 299689357));
        assert!(e.is_listening());
        assert_eq!(p.entries[1].local, "[fe80::200:ff:fe00:1]:36412".parse().unwrap());
        assert_eq!(p.entries[1].remote, "[::]:0".parse().unwrap());
        assert_eq!(p.entries[2].state, Some(TcpState::Established));
    }

    #[test]
    fn sctp_assocs_written_from_kernel_format() {
        let p = parse_sctp_assocs(SCTP_ASSOCS);
        assert_eq!(p.skipped, 0, "{p:?}");
        assert_eq!(p.entries.len(), 3);
        let a = &p.entries[0];
        assert_eq!(a.local, v4("127.0.0.1:40000"));
        assert_eq!(a.remote, v4("127.0.0.1:36412"));
        assert_eq!(a.state, Some(TcpState::Established));
        assert!(a.connected);
        assert_eq!(a.inode, 5123);
        let b = &p.entries[1];
        assert_eq!(b.local, v4("10.0.0.70:11165"));
        assert_eq!(b.remote, v4("10.0.0.8:5001"));
        assert_eq!((b.tx_queue, b.rx_queue), (512, 64));
        let c = &p.entries[2];
        assert_eq!(c.state, Some(TcpState::SynSent));
        assert_eq!(c.remote, "[fe80::200:ff:fe00:2]:5002".parse().unwrap());
        // No remote address, no "<->", unknown association state: malformed.
        let bad = "ff ff 0 10 3 0 7 0 0 0 1 1 2 10.0.0.1 <-> \t 1 2\n\
                   ff ff 0 10 3 0 7 0 0 0 1 1 2 10.0.0.1 10.0.0.2\n\
                   ff ff 0 10 9 0 7 0 0 0 1 1 2 10.0.0.1 <-> 10.0.0.2\n\
                   ff ff 0 10 3 0 7 0 0 0 1 1 2 10.0.0.1 <-> 10.0.0.2\n";
        let p = parse_sctp_assocs(bad);
        assert_eq!((p.entries.len(), p.skipped), (1, 3));
    }

    /// Xorshift64: a deterministic source of awkward input.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn run_all_parsers(text: &str) {
        for v6 in [false, true] {
            for proto in [SockProto::Tcp, SockProto::Udp, SockProto::Raw(0), SockProto::Icmp] {
                let p = parse_inet(text, proto, v6);
                assert!(p.entries.len() + p.skipped <= text.lines().count());
            }
        }
        parse_packet(text);
        parse_sctp_eps(text);
        parse_sctp_assocs(text);
    }

    /// No parser panics on arbitrary text: random bytes, and recorded lines with tokens
    /// dropped, duplicated, truncated or replaced.
    #[test]
    fn fuzz_no_panic() {
        let corpus: Vec<&str> = [
            TCP,
            TCP6,
            UDP,
            UDP6,
            RAW,
            RAW6,
            ICMP,
            PACKET,
            SCTP_EPS,
            SCTP_ASSOCS,
        ]
        .iter()
        .flat_map(|t| t.lines())
        .collect();
        let alphabet: &[&str] = &[
            ":",
            " ",
            "\t",
            "\n",
            "*",
            "<->",
            "-",
            "0",
            "F",
            "FFFFFFFF",
            "00000000000000000000000000000000",
            "é",
            "\u{0}",
            "18446744073709551616",
            "::",
            ".",
            "255.255.255.255",
            "ffff",
            "+1",
        ];
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for _ in 0..20_000 {
            let mut text = String::new();
            for _ in 0..1 + rng.below(4) {
                let line = corpus[rng.below(corpus.len())];
                let mut tokens: Vec<String> = line.split(' ').map(str::to_string).collect();
                for _ in 0..rng.below(4) {
                    let i = rng.below(tokens.len());
                    match rng.below(5) {
                        0 => {
                            tokens.remove(i);
                            if tokens.is_empty() {
                                tokens.push(String::new());
                            }
                        }
                        1 => tokens.insert(i, alphabet[rng.below(alphabet.len())].to_string()),
                        2 => {
                            let t = &mut tokens[i];
                            let cut = rng.below(t.len() + 1);
                            if t.is_char_boundary(cut) {
                                t.truncate(cut);
                            }
                        }
                        3 => tokens[i] = alphabet[rng.below(alphabet.len())].to_string(),
                        _ => {
                            let bytes: Vec<u8> = (0..rng.below(12)).map(|_| rng.next() as u8).collect();
                            tokens[i] = String::from_utf8_lossy(&bytes).into_owned();
                        }
                    }
                }
                text.push_str(&tokens.join(" "));
                text.push('\n');
            }
            run_all_parsers(&text);
        }
    }
}
