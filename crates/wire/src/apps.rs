//! Application protocol labels from content, for the engine's first payloads of a flow.
//!
//! [`identify_udp`] and [`identify_tcp`] answer only when the bytes say so: where a rule names a
//! port (NTP on 123, SNMP on 161/162, ...) the port is necessary but never sufficient.
//! [`guess_by_port`] is the separate, marked guess from a well-known port alone.

use crate::cursor::Reader;
use crate::{Error, Layer, stun};
use std::net::Ipv4Addr;

/// A protocol recognised by content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum App {
    Ssh,
    Ntp,
    Dhcp,
    Dhcpv6,
    Smb,
    Rdp,
    WireGuard,
    OpenVpn,
    BitTorrent,
    Dtls,
    Stun,
    Ssdp,
    Mdns,
    Llmnr,
    NetBios,
    Syslog,
    Snmp,
}

impl App {
    /// A short stable label: "ssh", "ntp", "dhcp", ...
    pub const fn name(self) -> &'static str {
        match self {
            App::Ssh => "ssh",
            App::Ntp => "ntp",
            App::Dhcp => "dhcp",
            App::Dhcpv6 => "dhcpv6",
            App::Smb => "smb",
            App::Rdp => "rdp",
            App::WireGuard => "wireguard",
            App::OpenVpn => "openvpn",
            App::BitTorrent => "bittorrent",
            App::Dtls => "dtls",
            App::Stun => "stun",
            App::Ssdp => "ssdp",
            App::Mdns => "mdns",
            App::Llmnr => "llmnr",
            App::NetBios => "netbios",
            App::Syslog => "syslog",
            App::Snmp => "snmp",
        }
    }
}

impl std::fmt::Display for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

fn either(sport: u16, dport: u16, ports: &[u16]) -> bool {
    ports.contains(&sport) || ports.contains(&dport)
}

fn be16(p: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*p.get(at)?, *p.get(at + 1)?]))
}

fn be32(p: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *p.get(at)?,
        *p.get(at + 1)?,
        *p.get(at + 2)?,
        *p.get(at + 3)?,
    ]))
}

/// What the content of one UDP payload says, given the ports; `None` unless the bytes say it.
pub fn identify_udp(payload: &[u8], sport: u16, dport: u16) -> Option<App> {
    let p = payload;
    let port = |ports: &[u16]| either(sport, dport, ports);
    if port(&[67, 68]) && parse_dhcp(p).is_ok() {
        return Some(App::Dhcp);
    }
    if port(&[546, 547]) && is_dhcpv6(p) {
        return Some(App::Dhcpv6);
    }
    if port(&[123]) && is_ntp(p) {
        return Some(App::Ntp);
    }
    if port(&[1900])
        && [&b"M-SEARCH "[..], b"NOTIFY ", b"HTTP/1.1 200"]
            .iter()
            .any(|s| p.starts_with(s))
    {
        return Some(App::Ssdp);
    }
    if port(&[5353]) && is_dns_header(p, &[0]) {
        return Some(App::Mdns);
    }
    if port(&[5355]) && is_dns_header(p, &[0]) {
        return Some(App::Llmnr);
    }
    if port(&[137]) && is_nbns(p) {
        return Some(App::NetBios);
    }
    if port(&[514]) && is_syslog(p) {
        return Some(App::Syslog);
    }
    if port(&[161, 162]) && is_snmp(p) {
        return Some(App::Snmp);
    }
    if let Ok((m, _)) = stun::parse(p)
        && (!m.classic || port(&[3478]))
    {
        return Some(App::Stun);
    }
    if stun::looks_like_dtls(p) {
        return Some(App::Dtls);
    }
    if is_wireguard(p) {
        return Some(App::WireGuard);
    }
    if is_openvpn_reset(p) {
        return Some(App::OpenVpn);
    }
    if is_bittorrent_udp(p) && !port(&[53, 5353, 5355]) {
        return Some(App::BitTorrent);
    }
    None
}

/// What the content of one TCP payload (the start of a direction) says, given the ports.
pub fn identify_tcp(payload: &[u8], sport: u16, dport: u16) -> Option<App> {
    let _ = (sport, dport); // every TCP rule here is by content alone
    let p = payload;
    if ssh_banner(p).is_some() {
        return Some(App::Ssh);
    }
    if is_smb(p) {
        return Some(App::Smb);
    }
    if is_rdp(p) {
        return Some(App::Rdp);
    }
    if p.starts_with(b"\x13BitTorrent protocol") {
        return Some(App::BitTorrent);
    }
    if let Some(len) = be16(p, 0)
        && let Some(frame) = p.get(2..2 + usize::from(len))
        && is_openvpn_reset(frame)
    {
        return Some(App::OpenVpn);
    }
    if let Ok((m, _)) = stun::parse(p)
        && !m.classic
    {
        return Some(App::Stun);
    }
    if stun::split_tcp(p).0.first().is_some_and(|m| !m.classic) {
        return Some(App::Stun);
    }
    None
}

/// The label a well-known server port suggests (either side; when both are known, the lower
/// port). A guess: the engine marks it as such and uses it only when content said nothing.
pub fn guess_by_port(tcp: bool, sport: u16, dport: u16) -> Option<&'static str> {
    let look = if tcp { tcp_port } else { udp_port };
    match (look(sport), look(dport)) {
        (Some(a), Some(b)) => Some(if sport <= dport { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn tcp_port(port: u16) -> Option<&'static str> {
    Some(match port {
        20 => "ftp-data",
        21 => "ftp",
        22 => "ssh",
        23 => "telnet",
        25 => "smtp",
        53 => "dns",
        80 => "http",
        88 => "kerberos",
        110 => "pop3",
        111 => "sunrpc",
        119 => "nntp",
        135 => "msrpc",
        139 => "netbios-ssn",
        143 => "imap",
        179 => "bgp",
        389 => "ldap",
        443 => "https",
        445 => "smb",
        465 => "smtps",
        587 => "submission",
        636 => "ldaps",
        853 => "dns-over-tls",
        873 => "rsync",
        993 => "imaps",
        995 => "pop3s",
        1194 => "openvpn",
        1433 => "mssql",
        1521 => "oracle",
        1883 => "mqtt",
        2049 => "nfs",
        3306 => "mysql",
        3389 => "rdp",
        3478 => "stun",
        5060 => "sip",
        5061 => "sips",
        5222 => "xmpp",
        5432 => "postgresql",
        5672 => "amqp",
        5900 => "vnc",
        6379 => "redis",
        6881 => "bittorrent",
        8080 => "http-alt",
        8443 => "https-alt",
        8883 => "mqtts",
        9092 => "kafka",
        9200 => "elasticsearch",
        11211 => "memcached",
        27017 => "mongodb",
        _ => return None,
    })
}

fn udp_port(port: u16) -> Option<&'static str> {
    Some(match port {
        53 => "dns",
        67 | 68 => "dhcp",
        69 => "tftp",
        123 => "ntp",
        137 => "netbios-ns",
        138 => "netbios-dgm",
        161 => "snmp",
        162 => "snmp-trap",
        443 => "quic",
        500 => "isakmp",
        514 => "syslog",
        520 => "rip",
        546 | 547 => "dhcpv6",
        1194 => "openvpn",
        1812 => "radius",
        1813 => "radius-acct",
        1900 => "ssdp",
        3478 => "stun",
        4500 => "ipsec-nat-t",
        5060 => "sip",
        5353 => "mdns",
        5355 => "llmnr",
        6881 => "bittorrent",
        11211 => "memcached",
        51820 => "wireguard",
        _ => return None,
    })
}

/// The SSH identification string at the start of `payload` ("SSH-2.0-OpenSSH_9.6"): up to the
/// CR or LF, which must be present, printable ASCII, at most 255 bytes, "SSH-" protoversion "-"
/// softwareversion.
pub fn ssh_banner(payload: &[u8]) -> Option<&str> {
    let rest = payload.strip_prefix(b"SSH-")?;
    let end = payload.iter().take(256).position(|&b| b == b'\r' || b == b'\n')?;
    let line = &payload[..end];
    if !line.iter().all(|&b| (0x20..=0x7e).contains(&b)) {
        return None;
    }
    let dash = rest.iter().position(|&b| b == b'-')?;
    let (major, minor) = rest[..dash].split_at(rest[..dash].iter().position(|&b| b == b'.')?);
    let digits = |d: &[u8]| !d.is_empty() && d.iter().all(u8::is_ascii_digit);
    if !digits(major) || !digits(&minor[1..]) || 4 + dash + 1 >= end {
        return None;
    }
    std::str::from_utf8(line).ok()
}

/// NTP: version 1..=4, mode 1..=5, and 48 bytes (68 or 72 with a key ID and MAC).
fn is_ntp(p: &[u8]) -> bool {
    let Some(&b) = p.first() else { return false };
    let (version, mode) = ((b >> 3) & 7, b & 7);
    matches!(p.len(), 48 | 68 | 72) && (1..=4).contains(&version) && (1..=5).contains(&mode)
}

/// DHCPv6: message type 1..=13 and the options walk exactly to the end.
fn is_dhcpv6(p: &[u8]) -> bool {
    let header = match p.first() {
        Some(1..=11) => 4,
        Some(12 | 13) => 34,
        _ => return false,
    };
    let Some(mut opts) = p.get(header..) else {
        return false;
    };
    while !opts.is_empty() {
        let Some(len) = be16(opts, 2) else { return false };
        let Some(next) = opts.get(4 + usize::from(len)..) else {
            return false;
        };
        opts = next;
    }
    true
}

/// A DNS-shaped header: at least 12 bytes, an expected opcode, and at least one record.
fn is_dns_header(p: &[u8], opcodes: &[u8]) -> bool {
    if p.len() < 12 || !opcodes.contains(&((p[2] >> 3) & 0x0f)) {
        return false;
    }
    (0..4).filter_map(|i| be16(p, 4 + 2 * i)).any(|n| n > 0)
}

/// NetBIOS name service: a DNS-shaped header (query, registration, release, WACK, refresh) and a
/// first name of 32 half-ASCII bytes ('A'..='P').
fn is_nbns(p: &[u8]) -> bool {
    is_dns_header(p, &[0, 5, 6, 7, 8])
        && p.get(12) == Some(&0x20)
        && p.get(13..45)
            .is_some_and(|n| n.iter().all(|b| (b'A'..=b'P').contains(b)))
}

/// Syslog: "<PRI>" with PRI of 1 to 3 digits, at most 191.
fn is_syslog(p: &[u8]) -> bool {
    let Some(rest) = p.strip_prefix(b"<") else {
        return false;
    };
    let digits = rest.iter().take(4).take_while(|b| b.is_ascii_digit()).count();
    if !(1..=3).contains(&digits) || rest.get(digits) != Some(&b'>') {
        return false;
    }
    rest[..digits]
        .iter()
        .fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'))
        <= 191
}

/// SNMP: an ASN.1 SEQUENCE whose first element is the INTEGER version 0, 1 or 3.
fn is_snmp(p: &[u8]) -> bool {
    if p.first() != Some(&0x30) {
        return false;
    }
    let at = match p.get(1) {
        Some(0..=0x7f) => 2,
        Some(0x81) => 3,
        Some(0x82) => 4,
        _ => return false,
    };
    matches!(p.get(at..at + 3), Some([0x02, 0x01, 0 | 1 | 3]))
}

/// SMB: a NetBIOS session message header (0x00 and a 3-byte length of at least 32) followed by
/// the SMB1 (0xFF), SMB2 (0xFE) or SMB3 transform (0xFD) protocol id.
fn is_smb(p: &[u8]) -> bool {
    let Some(h) = p.get(..8) else { return false };
    h[0] == 0
        && u32::from_be_bytes([0, h[1], h[2], h[3]]) >= 32
        && (0xfd..=0xff).contains(&h[4])
        && &h[5..8] == b"SMB"
}

/// RDP: TPKT (version 3, length matching the payload) carrying an X.224 Connection Request
/// (0xE0, destination reference 0) whose variable part is what RDP sends: an optional
/// "Cookie: mstshash=..." (or another routing token) line, then nothing or an RDP_NEG_REQ.
/// ISO-TSAP users of TPKT (such as S7comm) carry 0xC0/0xC1/0xC2 parameters instead.
fn is_rdp(p: &[u8]) -> bool {
    if p.len() < 11 || p[0] != 3 || p[1] != 0 {
        return false;
    }
    let len = usize::from(u16::from_be_bytes([p[2], p[3]]));
    if len != p.len() || usize::from(p[4]) + 5 != len || p[5] != 0xe0 || p[6..8] != [0, 0] {
        return false;
    }
    let mut var = &p[11..];
    if var.first().is_some_and(|&b| b.is_ascii_alphabetic()) {
        let Some(crlf) = var.windows(2).position(|w| w == b"\r\n") else {
            return false;
        };
        if !var[..crlf].iter().all(|&b| (0x20..=0x7e).contains(&b)) {
            return false;
        }
        var = &var[crlf + 2..];
    }
    match var {
        [] => true,
        [0x01, _, 0x08, 0x00, ..] => var.len() == 8 || var.len() == 8 + 36,
        _ => false,
    }
}

/// WireGuard: type 1..=4, three zero bytes, and the exact size of the message type.
fn is_wireguard(p: &[u8]) -> bool {
    let Some([t, 0, 0, 0]) = p.get(..4) else {
        return false;
    };
    match t {
        1 => p.len() == 148,
        2 => p.len() == 92,
        3 => p.len() == 64,
        4 => p.len() >= 32 && p.len().is_multiple_of(16),
        _ => false,
    }
}

/// An OpenVPN client hard reset (P_CONTROL_HARD_RESET_CLIENT_V2, key id 0), as the first packet
/// of a session: without tls-auth (no acks, message packet-id 0), with tls-auth (an HMAC of
/// SHA-1, SHA-256 or SHA-512 size, replay packet-id 1, no acks, message packet-id 0), or with
/// tls-crypt (replay packet-id 1 before the tag); or P_CONTROL_HARD_RESET_CLIENT_V3 (tls-crypt-v2).
fn is_openvpn_reset(p: &[u8]) -> bool {
    if !(14..=2048).contains(&p.len()) {
        return false;
    }
    let tls_crypt = p.len() >= 1 + 8 + 8 + 32 + 10 && be32(p, 9) == Some(1);
    match p[0] {
        0x38 => {
            let plain = p[9] == 0 && p[10..14] == [0; 4];
            let tls_auth = [20usize, 32, 64].iter().any(|&h| {
                be32(p, 9 + h) == Some(1)
                    && p.get(17 + h) == Some(&0)
                    && p.get(18 + h..22 + h) == Some(&[0; 4])
            });
            plain || tls_auth || tls_crypt
        }
        0x50 => tls_crypt,
        _ => false,
    }
}

/// BitTorrent over UDP: a DHT query or response ("d1:ad2:id20:" / "d1:rd2:id20:" with the
/// 20-byte id), or a uTP SYN or STATE packet (version 1) whose extensions walk exactly to the
/// end.
fn is_bittorrent_udp(p: &[u8]) -> bool {
    if (p.starts_with(b"d1:ad2:id20:") || p.starts_with(b"d1:rd2:id20:")) && p.len() > 32 && p.ends_with(b"e")
    {
        return true;
    }
    if p.len() < 20 || !matches!(p[0], 0x41 | 0x21) {
        return false;
    }
    let mut ext = p[1];
    let mut at = 20;
    while ext != 0 {
        if ext > 2 {
            return false;
        }
        let (Some(&next), Some(&len)) = (p.get(at), p.get(at + 1)) else {
            return false;
        };
        if len == 0 || (ext == 1 && !len.is_multiple_of(4)) {
            return false;
        }
        at += 2 + usize::from(len);
        ext = next;
    }
    at == p.len()
}

/// A DHCP (BOOTP) message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dhcp {
    /// 1 BOOTREQUEST, 2 BOOTREPLY.
    pub op: u8,
    /// Option 53: 1 DISCOVER, 2 OFFER, 3 REQUEST, 4 DECLINE, 5 ACK, 6 NAK, 7 RELEASE, 8 INFORM.
    pub message_type: Option<u8>,
    /// The first 6 bytes of chaddr.
    pub client_mac: [u8; 6],
    /// Option 12.
    pub hostname: Option<String>,
    /// Option 50.
    pub requested_ip: Option<Ipv4Addr>,
    /// Option 60.
    pub vendor_class: Option<String>,
    /// Option 81, the domain name part (wire-format names decoded to dotted form).
    pub client_fqdn: Option<String>,
    /// Option 55.
    pub parameter_list: Vec<u8>,
}

const DHCP_MAGIC: u32 = 0x6382_5363;

fn text(v: &[u8]) -> Option<String> {
    let v = v.strip_suffix(&[0]).unwrap_or(v);
    (!v.is_empty()).then(|| String::from_utf8_lossy(v).into_owned())
}

/// The name in a Client FQDN option value (flags, two rcodes, then the name: DNS wire format
/// when the E flag is set, ASCII otherwise).
fn fqdn(v: &[u8]) -> Option<String> {
    let (&flags, rest) = v.split_first()?;
    let name = rest.get(2..)?;
    if flags & 0x04 == 0 {
        return text(name);
    }
    let mut labels = Vec::new();
    let mut r = name;
    while let Some((&len, tail)) = r.split_first() {
        if len == 0 || len >= 0xc0 {
            break;
        }
        let label = tail.get(..usize::from(len))?;
        labels.push(String::from_utf8_lossy(label).into_owned());
        r = &tail[usize::from(len)..];
    }
    (!labels.is_empty()).then(|| labels.join("."))
}

/// Parses a DHCP message: the 236-byte BOOTP header (op 1 or 2), the magic cookie 0x63825363,
/// and the options up to End (or the end of the payload). Options that appear more than once are
/// concatenated (RFC 3396). An option overrunning the payload is an error.
pub fn parse_dhcp(payload: &[u8]) -> Result<Dhcp, Error> {
    let mut r = Reader::new(payload, Layer::Dhcp);
    let op = r.u8()?;
    if op != 1 && op != 2 {
        return Err(Error::Malformed {
            layer: Layer::Dhcp,
            what: "op is not 1 or 2",
        });
    }
    r.seek(28)?;
    let mut client_mac = [0u8; 6];
    client_mac.copy_from_slice(r.bytes(6)?);
    r.seek(236)?;
    if r.u32()? != DHCP_MAGIC {
        return Err(Error::Malformed {
            layer: Layer::Dhcp,
            what: "no DHCP magic cookie",
        });
    }
    let mut opts: [Vec<u8>; 7] = Default::default();
    const WANTED: [u8; 7] = [53, 12, 50, 60, 81, 55, 0];
    while !r.is_empty() {
        let code = r.u8()?;
        match code {
            0 => continue,
            255 => break,
            _ => {}
        }
        let value = r.vec8()?;
        if let Some(i) = WANTED[..6].iter().position(|&w| w == code) {
            opts[i].extend_from_slice(value);
        }
    }
    let [mt, host, req, vendor, fq, params, _] = opts;
    Ok(Dhcp {
        op,
        message_type: mt.first().copied(),
        client_mac,
        hostname: text(&host),
        requested_ip: <[u8; 4]>::try_from(req.as_slice()).ok().map(Ipv4Addr::from),
        vendor_class: text(&vendor),
        client_fqdn: fqdn(&fq),
        parameter_list: params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn udp(p: &[u8], sport: u16, dport: u16) -> Option<App> {
        identify_udp(p, sport, dport)
    }

    fn dhcp_discover() -> Vec<u8> {
        let mut p = vec![0u8; 240];
        p[0] = 1; // BOOTREQUEST
        p[1] = 1;
        p[2] = 6;
        p[4..8].copy_from_slice(&[0x39, 0x03, 0xf3, 0x26]);
        p[28..34].copy_from_slice(&[0x00, 0x0b, 0x82, 0x01, 0xfc, 0x42]);
        p[236..240].copy_from_slice(&DHCP_MAGIC.to_be_bytes());
        p.extend_from_slice(&[53, 1, 1]);
        p.extend_from_slice(&[50, 4, 192, 168, 1, 100]);
        p.extend_from_slice(&[12, 6]);
        p.extend_from_slice(b"laptop");
        p.extend_from_slice(&[60, 8]);
        p.extend_from_slice(b"MSFT 5.0");
        p.extend_from_slice(&[81, 3 + 12, 0x04, 0, 0, 6]);
        p.extend_from_slice(b"laptop");
        p.extend_from_slice(&[3]);
        p.extend_from_slice(b"lan");
        p.push(0);
        p.extend_from_slice(&[55, 4, 1, 3, 6, 15]);
        p.extend_from_slice(&[0, 0, 255, 0, 0]);
        p
    }

    #[test]
    fn app_names() {
        assert_eq!(App::Ssh.name(), "ssh");
        assert_eq!(App::WireGuard.to_string(), "wireguard");
        assert_eq!(App::NetBios.name(), "netbios");
    }

    #[test]
    fn ssh() {
        let p = b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n\x00\x00\x05\xdc";
        assert_eq!(ssh_banner(p), Some("SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13"));
        assert_eq!(ssh_banner(b"SSH-1.99-Cisco-1.25\n"), Some("SSH-1.99-Cisco-1.25"));
        assert_eq!(identify_tcp(p, 22, 50000), Some(App::Ssh));
        assert_eq!(identify_tcp(b"SSH-2.0-x\r\n", 40000, 2222), Some(App::Ssh));
        // close negatives
        assert_eq!(ssh_banner(b"SSH-2.0-OpenSSH_9.6"), None, "no line end");
        assert_eq!(ssh_banner(b"SSH-2.0-\r\n"), None, "no software version");
        assert_eq!(ssh_banner(b"SSH-two-x\r\n"), None);
        assert_eq!(ssh_banner(b"SSH-2.0-a\x01b\r\n"), None);
        let long = [&b"SSH-2.0-"[..], &[b'a'; 300], b"\r\n"].concat();
        assert_eq!(ssh_banner(&long), None);
        assert_eq!(identify_tcp(b"ssh-2.0-x\r\n", 22, 50000), None);
        assert_eq!(identify_tcp(b"\x00\x00\x05\xdc\x07\x14", 22, 50000), None);
    }

    #[test]
    fn ntp() {
        let mut p = [0u8; 48];
        p[0] = 0x23; // LI 0, version 4, mode 3 (client)
        assert_eq!(udp(&p, 40000, 123), Some(App::Ntp));
        assert_eq!(udp(&[&p[..], &[0; 20]].concat(), 123, 123), Some(App::Ntp));
        assert_eq!(udp(&[&p[..], &[0; 24]].concat(), 123, 40000), Some(App::Ntp));
        assert_eq!(udp(&p, 40000, 124), None, "port alone is necessary");
        assert_eq!(udp(&p[..47], 40000, 123), None);
        p[0] = 0x27; // mode 7 (private)
        assert_eq!(udp(&p, 40000, 123), None);
        p[0] = 0x03; // version 0
        assert_eq!(udp(&p, 40000, 123), None);
    }

    #[test]
    fn dhcp() {
        let p = dhcp_discover();
        assert_eq!(udp(&p, 68, 67), Some(App::Dhcp));
        let d = parse_dhcp(&p).unwrap();
        assert_eq!(d.op, 1);
        assert_eq!(d.message_type, Some(1));
        assert_eq!(d.client_mac, [0x00, 0x0b, 0x82, 0x01, 0xfc, 0x42]);
        assert_eq!(d.hostname.as_deref(), Some("laptop"));
        assert_eq!(d.requested_ip, Some(Ipv4Addr::new(192, 168, 1, 100)));
        assert_eq!(d.vendor_class.as_deref(), Some("MSFT 5.0"));
        assert_eq!(d.client_fqdn.as_deref(), Some("laptop.lan"));
        assert_eq!(d.parameter_list, [1, 3, 6, 15]);
        // close negatives
        let mut bad = p.clone();
        bad[236] = 0x64;
        assert_eq!(udp(&bad, 68, 67), None);
        assert!(matches!(
            parse_dhcp(&bad),
            Err(Error::Malformed {
                layer: Layer::Dhcp,
                ..
            })
        ));
        let mut bad = p.clone();
        bad[0] = 3;
        assert!(parse_dhcp(&bad).is_err());
        assert_eq!(udp(&p[..239], 68, 67), None);
        assert!(
            matches!(parse_dhcp(&p[..p.len() - 20]), Err(Error::Truncated { .. })),
            "option overruns"
        );
        assert_eq!(udp(&p, 5000, 5001), None);
        // an ASCII client FQDN
        let mut a = p[..240].to_vec();
        a.extend_from_slice(&[81, 3 + 4, 0x01, 0, 0]);
        a.extend_from_slice(b"pc.x");
        assert_eq!(parse_dhcp(&a).unwrap().client_fqdn.as_deref(), Some("pc.x"));
        assert_eq!(parse_dhcp(&a).unwrap().message_type, None);
    }

    #[test]
    fn dhcpv6() {
        // SOLICIT with CLIENTID (DUID-LL) and ELAPSED_TIME
        let mut p = vec![1, 0x10, 0x20, 0x30];
        p.extend_from_slice(&[0, 1, 0, 10, 0, 3, 0, 1, 2, 0, 0, 0, 0, 1]);
        p.extend_from_slice(&[0, 8, 0, 2, 0, 0]);
        assert_eq!(udp(&p, 546, 547), Some(App::Dhcpv6));
        assert_eq!(udp(&p[..4], 546, 547), Some(App::Dhcpv6));
        let mut bad = p.clone();
        bad[0] = 0;
        assert_eq!(udp(&bad, 546, 547), None);
        bad[0] = 14;
        assert_eq!(udp(&bad, 546, 547), None);
        assert_eq!(
            udp(&p[..p.len() - 1], 546, 547),
            None,
            "options do not walk to the end"
        );
        assert_eq!(udp(&p, 5460, 5470), None);
    }

    #[test]
    fn smb() {
        let mut p = vec![0x00, 0x00, 0x00, 0x66, 0xfe, b'S', b'M', b'B', 0x40, 0];
        p.resize(0x66 + 4, 0);
        assert_eq!(identify_tcp(&p, 50000, 445), Some(App::Smb));
        p[4] = 0xff;
        assert_eq!(identify_tcp(&p, 50000, 445), Some(App::Smb));
        p[5] = b's';
        assert_eq!(identify_tcp(&p, 50000, 445), None);
        let mut q = p.clone();
        q[5] = b'S';
        q[0] = 0x85; // NetBIOS keepalive, not a session message
        assert_eq!(identify_tcp(&q, 50000, 445), None);
        assert_eq!(identify_tcp(&[0, 0, 0, 0x66], 50000, 445), None);
    }

    fn rdp_cr(var: &[u8]) -> Vec<u8> {
        let len = 11 + var.len();
        let mut p = vec![
            3,
            0,
            (len >> 8) as u8,
            len as u8,
            (len - 5) as u8,
            0xe0,
            0,
            0,
            0,
            0,
            0,
        ];
        p.extend_from_slice(var);
        p
    }

    #[test]
    fn rdp() {
        let neg = [1, 0, 8, 0, 3, 0, 0, 0];
        let cookie = [&b"Cookie: mstshash=administr\r\n"[..], &neg].concat();
        assert_eq!(identify_tcp(&rdp_cr(&cookie), 50000, 3389), Some(App::Rdp));
        assert_eq!(identify_tcp(&rdp_cr(&neg), 50000, 3389), Some(App::Rdp));
        assert_eq!(
            identify_tcp(&rdp_cr(b"Cookie: mstshash=x\r\n"), 50000, 3389),
            Some(App::Rdp)
        );
        assert_eq!(identify_tcp(&rdp_cr(&[]), 50000, 3389), Some(App::Rdp));
        // close negatives: S7comm's COTP connection request, a wrong TPKT length, a CC TPDU
        let s7 = rdp_cr(&[0xc0, 1, 0x0a, 0xc1, 2, 1, 0, 0xc2, 2, 1, 2]);
        assert_eq!(identify_tcp(&s7, 50000, 102), None);
        let mut bad = rdp_cr(&neg);
        bad[3] += 1;
        assert_eq!(identify_tcp(&bad, 50000, 3389), None);
        let mut cc = rdp_cr(&neg);
        cc[5] = 0xd0;
        assert_eq!(identify_tcp(&cc, 50000, 3389), None);
    }

    #[test]
    fn wireguard() {
        let mut init = vec![1, 0, 0, 0];
        init.resize(148, 0x5a);
        assert_eq!(udp(&init, 40000, 51820), Some(App::WireGuard));
        let mut resp = vec![2, 0, 0, 0];
        resp.resize(92, 7);
        assert_eq!(udp(&resp, 51820, 40000), Some(App::WireGuard));
        let mut cookie = vec![3, 0, 0, 0];
        cookie.resize(64, 7);
        assert_eq!(udp(&cookie, 1, 2), Some(App::WireGuard));
        let mut data = vec![4, 0, 0, 0];
        data.resize(32 + 16 * 5, 9);
        assert_eq!(udp(&data, 1, 2), Some(App::WireGuard));
        // close negatives
        assert_eq!(udp(&init[..147], 40000, 51820), None);
        data.push(0);
        assert_eq!(udp(&data, 1, 2), None);
        let mut r = resp.clone();
        r[2] = 1;
        assert_eq!(udp(&r, 51820, 40000), None);
        let mut five = vec![5, 0, 0, 0];
        five.resize(64, 0);
        assert_eq!(udp(&five, 1, 2), None);
    }

    fn openvpn_plain() -> Vec<u8> {
        let mut p = vec![0x38];
        p.extend_from_slice(&[0x9e, 0x37, 0x11, 0x4c, 0x02, 0xa8, 0xb1, 0x7f]); // session id
        p.push(0); // no acks
        p.extend_from_slice(&[0, 0, 0, 0]); // message packet-id
        p
    }

    #[test]
    fn openvpn() {
        let p = openvpn_plain();
        assert_eq!(udp(&p, 40000, 1194), Some(App::OpenVpn));
        // with tls-auth (HMAC-SHA1): hmac, replay packet-id 1, time, no acks, message packet-id 0
        let mut ta = p[..9].to_vec();
        ta.extend_from_slice(&[0xab; 20]);
        ta.extend_from_slice(&[0, 0, 0, 1, 0x66, 0x00, 0x11, 0x22, 0, 0, 0, 0, 0]);
        assert_eq!(udp(&ta, 40000, 1194), Some(App::OpenVpn));
        let framed = [&(p.len() as u16).to_be_bytes()[..], &p[..]].concat();
        assert_eq!(identify_tcp(&framed, 40000, 443), Some(App::OpenVpn));
        // close negatives
        let mut acked = p.clone();
        acked[9] = 1;
        assert_eq!(udp(&acked, 40000, 1194), None);
        let mut key1 = p.clone();
        key1[0] = 0x39;
        assert_eq!(udp(&key1, 40000, 1194), None);
        assert_eq!(udp(&p[..13], 40000, 1194), None);
        let mut short = framed.clone();
        short[1] += 1;
        assert_eq!(
            identify_tcp(&short, 40000, 443),
            None,
            "length prefix larger than the payload"
        );
        assert_eq!(identify_tcp(&p, 40000, 443), None, "TCP needs the length prefix");
    }

    #[test]
    fn bittorrent() {
        let mut hs = b"\x13BitTorrent protocol".to_vec();
        hs.extend_from_slice(&[0; 8]);
        hs.extend_from_slice(&[0x11; 40]);
        assert_eq!(identify_tcp(&hs, 50000, 6881), Some(App::BitTorrent));
        assert_eq!(identify_tcp(b"\x13BitTorrent protocoX", 50000, 6881), None);
        let q = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe";
        assert_eq!(udp(q, 6881, 6882), Some(App::BitTorrent));
        let r = b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re";
        assert_eq!(udp(r, 6882, 6881), Some(App::BitTorrent));
        assert_eq!(udp(b"d1:ad2:id20:short", 6881, 6882), None);
        // uTP SYN with no extension, and a STATE with a selective ack
        let mut syn = vec![
            0x41, 0, 0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0x10, 0, 0, 0x00, 0x01, 0, 0,
        ];
        assert_eq!(udp(&syn, 50000, 50001), Some(App::BitTorrent));
        let mut state = syn.clone();
        state[0] = 0x21;
        state[1] = 1;
        state.extend_from_slice(&[0, 4, 0xff, 0, 0, 0]);
        assert_eq!(udp(&state, 50001, 50000), Some(App::BitTorrent));
        // close negatives: SYN with payload, unknown extension, version 2, uTP-shaped DNS
        syn.push(0);
        assert_eq!(udp(&syn, 50000, 50001), None);
        let mut bad = state.clone();
        bad[1] = 3;
        assert_eq!(udp(&bad, 50001, 50000), None);
        let mut v2 = state.clone();
        v2[0] = 0x22;
        assert_eq!(udp(&v2, 50001, 50000), None);
        assert_eq!(udp(&syn[..20], 50000, 53), None);
    }

    #[test]
    fn dtls_and_stun() {
        let mut ch = vec![0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x20];
        ch.resize(13 + 0x20, 1);
        assert_eq!(udp(&ch, 50000, 4433), Some(App::Dtls));
        ch[2] = 0x03;
        assert_eq!(udp(&ch, 50000, 4433), None);
        // STUN Binding request with the magic cookie and no attributes, on any port
        let mut b = vec![0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42];
        b.extend_from_slice(&[7; 12]);
        assert_eq!(udp(&b, 50000, 19302), Some(App::Stun));
        assert_eq!(identify_tcp(&b, 50000, 443), Some(App::Stun));
        let framed = [&[0, 20][..], &b].concat();
        assert_eq!(identify_tcp(&framed, 50000, 443), Some(App::Stun));
        // classic (no cookie) only on 3478
        let mut c = b.clone();
        c[4..8].copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(udp(&c, 50000, 3478), Some(App::Stun));
        assert_eq!(udp(&c, 50000, 3479), None);
        b[3] = 4; // length beyond the payload
        assert_eq!(udp(&b, 50000, 19302), None);
    }

    #[test]
    fn ssdp() {
        assert_eq!(
            udp(
                b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\n\r\n",
                50000,
                1900
            ),
            Some(App::Ssdp)
        );
        assert_eq!(udp(b"NOTIFY * HTTP/1.1\r\n", 1900, 1900), Some(App::Ssdp));
        assert_eq!(
            udp(b"HTTP/1.1 200 OK\r\nST: upnp:rootdevice\r\n", 1900, 50000),
            Some(App::Ssdp)
        );
        assert_eq!(udp(b"HTTP/1.1 404 Not Found\r\n", 1900, 50000), None);
        assert_eq!(udp(b"GET / HTTP/1.1\r\n", 50000, 1900), None);
        assert_eq!(udp(b"M-SEARCH * HTTP/1.1\r\n", 50000, 1901), None);
    }

    fn dns_query() -> Vec<u8> {
        let mut p = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        p.extend_from_slice(b"\x07printer\x05local\x00\x00\x01\x00\x01");
        p
    }

    #[test]
    fn mdns_and_llmnr() {
        let q = dns_query();
        assert_eq!(udp(&q, 5353, 5353), Some(App::Mdns));
        assert_eq!(udp(&q, 50000, 5353), Some(App::Mdns));
        assert_eq!(udp(&q, 50000, 5355), Some(App::Llmnr));
        assert_eq!(udp(&q[..11], 5353, 5353), None);
        assert_eq!(udp(&[0; 12], 5353, 5353), None, "no records");
        let mut update = q.clone();
        update[2] = 5 << 3; // opcode UPDATE
        assert_eq!(udp(&update, 5353, 5353), None);
        assert_eq!(udp(&q, 50000, 53), None, "plain DNS is not ours");
    }

    #[test]
    fn netbios_name_service() {
        // a broadcast query for WORKGROUP<00>
        let mut p = vec![0x81, 0x23, 0x01, 0x10, 0, 1, 0, 0, 0, 0, 0, 0, 0x20];
        p.extend_from_slice(b"FHEPFCELEHFCEPFFFACACACACACACAAA");
        p.extend_from_slice(&[0, 0, 0x20, 0, 1]);
        assert_eq!(udp(&p, 137, 137), Some(App::NetBios));
        let mut bad = p.clone();
        bad[20] = b'Z';
        assert_eq!(udp(&bad, 137, 137), None);
        assert_eq!(udp(&dns_query(), 137, 137), None);
        assert_eq!(udp(&p, 138, 138), None);
    }

    #[test]
    fn syslog() {
        assert_eq!(
            udp(b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed", 50000, 514),
            Some(App::Syslog)
        );
        assert_eq!(
            udp(b"<165>1 2003-10-11T22:14:15.003Z host app - - - x", 514, 514),
            Some(App::Syslog)
        );
        assert_eq!(udp(b"<0>x", 50000, 514), Some(App::Syslog));
        assert_eq!(udp(b"<192>x", 50000, 514), None);
        assert_eq!(udp(b"<1234>x", 50000, 514), None);
        assert_eq!(udp(b"<>x", 50000, 514), None);
        assert_eq!(udp(b"34>x", 50000, 514), None);
        assert_eq!(udp(b"<34>x", 50000, 515), None);
    }

    #[test]
    fn snmp() {
        // SNMPv2c get-request, community "public"
        let p = [
            0x30, 0x26, 0x02, 0x01, 0x01, 0x04, 0x06, b'p', b'u', b'b', b'l', b'i', b'c', 0xa0, 0x19, 0x02,
            0x01, 0x01, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x30, 0x0e, 0x30, 0x0c, 0x06, 0x08, 0x2b, 0x06,
            0x01, 0x02, 0x01, 0x01, 0x01, 0x00, 0x05, 0x00,
        ];
        assert_eq!(udp(&p, 50000, 161), Some(App::Snmp));
        assert_eq!(udp(&p, 161, 50000), Some(App::Snmp));
        assert_eq!(udp(&p, 50000, 162), Some(App::Snmp));
        let mut bad = p;
        bad[4] = 2; // no SNMP version 2 on the wire
        assert_eq!(udp(&bad, 50000, 161), None);
        assert_eq!(udp(&[0x30, 0x03, 0x04, 0x01, 0x00], 50000, 161), None);
        assert_eq!(udp(&[0x31, 0x03, 0x02, 0x01, 0x00], 50000, 161), None);
        assert_eq!(udp(&p, 50000, 163), None);
    }

    #[test]
    fn port_guesses() {
        assert_eq!(guess_by_port(true, 50000, 22), Some("ssh"));
        assert_eq!(guess_by_port(true, 25, 50000), Some("smtp"));
        assert_eq!(guess_by_port(true, 993, 41000), Some("imaps"));
        assert_eq!(guess_by_port(false, 40000, 123), Some("ntp"));
        assert_eq!(guess_by_port(false, 123, 123), Some("ntp"));
        assert_eq!(
            guess_by_port(true, 8080, 443),
            Some("https"),
            "the lower well-known port"
        );
        assert_eq!(guess_by_port(false, 53, 51820), Some("dns"));
        assert_eq!(guess_by_port(true, 40000, 41000), None);
        assert_eq!(guess_by_port(false, 40000, 22), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400), sport in any::<u16>(),
                        dport in prop_oneof![Just(67u16), Just(123), Just(137), Just(161), Just(514), Just(546),
                                             Just(1900), Just(3478), Just(5353), Just(5355), any::<u16>()]) {
            let _ = identify_udp(&bytes, sport, dport);
            let _ = identify_tcp(&bytes, sport, dport);
            let _ = guess_by_port(true, sport, dport);
            let _ = ssh_banner(&bytes);
            let _ = parse_dhcp(&bytes);
        }

        #[test]
        fn dhcp_mutations_never_panic(at in 0usize..320, v in any::<u8>(), cut in 0usize..320) {
            let mut p = dhcp_discover();
            if at < p.len() {
                p[at] = v;
            }
            p.truncate(cut);
            if let Ok(d) = parse_dhcp(&p) {
                prop_assert!(d.op == 1 || d.op == 2);
            }
            let _ = identify_udp(&p, 68, 67);
        }
    }
}
