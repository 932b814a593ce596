//! Plain-language sentences: one per flow or connection ([`explain`]), and the hourly or daily
//! [`digest`]. Built only from what is known: a protocol named by content gets its phrase
//! ("an encrypted web connection"), a port guess says "usually", an unknown port says its
//! number; byte counts are told when they matter (1 MB or more), in decimal units.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::{Assessment, FlagKind, Subject, SubjectKind, is_global, is_loopback};
use crate::connections::Direction;
use crate::enrich::{Category, Enrichers, Rdns};
use crate::record::AppBy;

/// Bytes in decimal units with one decimal: "512 bytes", "2.3 kB", "45.0 MB", "1.2 GB".
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if n < 1000 {
        return if n == 1 {
            "1 byte".into()
        } else {
            format!("{n} bytes")
        };
    }
    let mut v = n as f64 / 1000.0;
    let mut u = 0;
    // Round first, so 999_999 bytes reads "1.0 MB", not "1000.0 kB".
    while (v * 10.0).round() / 10.0 >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// "GitHub, Inc." -> "GitHub": the legal-form suffixes people do not say.
pub(crate) fn short_org(org: &str) -> &str {
    const TAILS: [&str; 16] = [
        ", Inc.",
        " Inc.",
        ", Inc",
        " Inc",
        ", LLC",
        " LLC",
        " Ltd.",
        " Ltd",
        " Limited",
        " GmbH",
        " Corporation",
        " Corp.",
        " B.V.",
        " S.A.",
        " SAS",
        " AB",
    ];
    let mut s = org.trim();
    for _ in 0..2 {
        for t in TAILS {
            if let Some(x) = s.strip_suffix(t) {
                s = x.trim_end_matches([',', ' ']);
            }
        }
    }
    if s.is_empty() { org.trim() } else { s }
}

/// What a service port is for, in words ("remote login", "encrypted web").
pub(crate) fn port_purpose(proto: u8, port: u16) -> Option<&'static str> {
    let udp = proto == 17;
    Some(match port {
        20 | 21 => "file transfer, FTP",
        22 => "remote login",
        23 => "unencrypted remote login, Telnet",
        25 => "mail delivery",
        53 => "name lookups, DNS",
        67 | 68 => "network set-up, DHCP",
        80 => "web, unencrypted",
        110 => "mail, POP3",
        123 if udp => "clock synchronisation, NTP",
        143 => "mail, IMAP",
        443 if udp => "encrypted web, QUIC",
        443 => "encrypted web",
        445 => "Windows file sharing",
        465 | 587 => "sending mail",
        631 => "printing",
        853 => "encrypted DNS",
        993 => "encrypted mail, IMAP",
        995 => "encrypted mail, POP3",
        1194 => "VPN, OpenVPN",
        3389 => "remote desktop",
        3478 => "calls and video chats, STUN",
        5228 => "push notifications",
        5353 if udp => "local device discovery, mDNS",
        5900 => "screen sharing, VNC",
        8080 => "web, alternative port",
        8443 => "encrypted web, alternative port",
        51820 if udp => "VPN, WireGuard",
        _ => return None,
    })
}

fn l4_word(proto: u8) -> String {
    match proto {
        6 => "TCP".into(),
        17 => "UDP".into(),
        132 => "SCTP".into(),
        1 => "ICMP".into(),
        58 => "ICMPv6".into(),
        p => crate::record::l4_name(p).to_ascii_uppercase(),
    }
}

/// "port 993 (usually imaps)", "port 22 (remote login)", "UDP port 40123" (TCP is not named).
fn port_phrase(s: &Subject<'_>, port: u16, e: Option<&dyn crate::enrich::Services>) -> String {
    let l4 = if s.proto == 6 {
        String::new()
    } else {
        format!("{} ", l4_word(s.proto))
    };
    if let Some(p) = port_purpose(s.proto, port) {
        return format!("{l4}port {port} ({p})");
    }
    if let (Some(guess), AppBy::Port) = (s.app_proto, s.app_by) {
        return format!("{l4}port {port} (usually {guess})");
    }
    if let Some(name) = e.and_then(|sv| sv.name(s.proto, port)) {
        return format!("{l4}port {port} (usually {name})");
    }
    format!("{l4}port {port}")
}

/// The remote end as people read it: "github.com (GitHub, US)", "203.0.113.7 (no name,
/// DigitalOcean, NL)", "192.168.1.1 (local network)".
fn remote_phrase(s: &Subject<'_>, a: &Assessment) -> String {
    let ip: IpAddr = s.remote.ip();
    let host = s.domain.map_or_else(|| ip.to_string(), str::to_string);
    if is_loopback(ip) {
        return format!("{host} (this machine)");
    }
    if !is_global(ip) {
        return format!("{host} (local network)");
    }
    let mut extra: Vec<String> = Vec::new();
    if s.domain.is_none()
        && let Some(Rdns::Name(n)) = &a.rdns
    {
        extra.push(n.clone());
    }
    let org = a.place.as_ref().and_then(|p| p.org.as_deref()).map(short_org);
    let vendor = a.label.as_ref().and_then(|l| l.vendor.as_deref());
    if let Some(o) = org.or(vendor) {
        extra.push(o.to_string());
    }
    if let Some(c) = a.place.as_ref().and_then(|p| p.country_str()) {
        extra.push(c.to_string());
    }
    if extra.is_empty() {
        host
    } else {
        format!("{host} ({})", extra.join(", "))
    }
}

/// The one sentence for a flow or connection event (no final full stop, like a caption).
/// `e.services` names ports the built-in table does not know; the place, label and reverse
/// name come from `a` (as [`super::assess`] filled them).
pub fn explain(s: &Subject<'_>, a: &Assessment, e: &Enrichers<'_>) -> String {
    let services = e.services;
    let who = s
        .app()
        .map_or_else(|| "A program we could not identify".to_string(), str::to_string);
    let r = remote_phrase(s, a);
    let out = s.bytes_out.unwrap_or(0);
    let inn = s.bytes_in.unwrap_or(0);
    let mut t = String::with_capacity(96);
    match s.kind {
        SubjectKind::Listening => {
            let _ = write!(
                t,
                "{who} is listening on every network interface on {}, so other machines can connect to it",
                port_phrase(s, s.local.port(), services)
            );
            return t;
        }
        SubjectKind::Opened | SubjectKind::Closed => {
            let port = s.service_port();
            let pp = port_phrase(s, port, services);
            let (verb, prep) = match (s.kind, s.direction) {
                (SubjectKind::Opened, Direction::Inbound) => (format!("{who} accepted a connection"), "from"),
                (SubjectKind::Opened, Direction::Outbound) => (format!("{who} connected"), "to"),
                (_, Direction::Inbound) => (possessive(s, "connection"), "from"),
                (_, Direction::Outbound) => (possessive(s, "connection"), "to"),
            };
            let _ = write!(t, "{verb} {prep} {r} on {pp}");
            if s.kind == SubjectKind::Closed {
                t.push_str(" closed");
                if s.bytes_out.is_some() {
                    let _ = write!(
                        t,
                        " after sending {} and receiving {}",
                        human_bytes(out),
                        human_bytes(inn)
                    );
                }
            }
            return t;
        }
        SubjectKind::Flow => {}
    }
    let port = s.service_port();
    if s.direction == Direction::Inbound {
        let what = match s.app_proto.filter(|_| s.app_by == AppBy::Content) {
            Some(p) => proto_purpose(p).map_or_else(
                || port_phrase(s, port, services),
                |w| format!("port {port} ({w})"),
            ),
            None => port_phrase(s, port, services),
        };
        if s.answered == Some(false) {
            let _ = write!(t, "{who} was contacted by {r} on {what}, with no answer");
            return t;
        }
        let _ = write!(t, "{who} accepted a connection from {r} on {what}");
        if out >= 1_000_000 || inn >= 1_000_000 {
            let _ = write!(
                t,
                ", sending {} and receiving {}",
                human_bytes(out),
                human_bytes(inn)
            );
        }
        return t;
    }
    let content = s.app_proto.filter(|_| s.app_by == AppBy::Content);
    let streaming = a
        .label
        .as_ref()
        .is_some_and(|l| l.category == Category::Streaming);
    let mut bytes_said = false;
    match content {
        Some("tls") | Some("quic") if streaming && inn >= 1_000_000 && inn > out => {
            let _ = write!(
                t,
                "{who} received {} from the streaming service {r}",
                human_bytes(inn)
            );
            bytes_said = true;
        }
        Some("tls") if port == 443 => {
            let _ = write!(t, "{who} opened an encrypted web connection to {r}");
        }
        Some("tls") => {
            let _ = write!(
                t,
                "{who} opened an encrypted (TLS) connection to {r} on port {port}"
            );
        }
        Some("quic") => {
            let _ = write!(t, "{who} opened an encrypted web connection (QUIC) to {r}");
        }
        Some("http") => {
            if inn >= 10_000 && inn >= out {
                let _ = write!(
                    t,
                    "{who} downloaded {} over plain, unencrypted HTTP from {r}",
                    human_bytes(inn)
                );
            } else if out >= 10_000 {
                let _ = write!(
                    t,
                    "{who} uploaded {} over plain, unencrypted HTTP to {r}",
                    human_bytes(out)
                );
            } else {
                let _ = write!(t, "{who} made a plain, unencrypted HTTP request to {r}");
            }
            bytes_said = true;
        }
        Some(p) => match proto_sentence(p) {
            Some((verb, tail)) => {
                let _ = write!(t, "{who} {verb}");
                if let Some(tail) = tail {
                    let _ = write!(t, " {}", tail.replace("{r}", &r));
                }
            }
            None => generic(&mut t, &who, s, &r, port, services),
        },
        None => generic(&mut t, &who, s, &r, port, services),
    }
    if !bytes_said && (out >= 1_000_000 || inn >= 1_000_000) {
        if inn >= 1_000_000 && out >= 1_000_000 {
            let _ = write!(
                t,
                ", sending {} and receiving {}",
                human_bytes(out),
                human_bytes(inn)
            );
        } else if inn >= 1_000_000 {
            let _ = write!(t, ", receiving {}", human_bytes(inn));
        } else {
            let _ = write!(t, ", sending {}", human_bytes(out));
        }
    }
    t
}

/// "curl's connection", "The connection of a program we could not identify".
pub(crate) fn possessive(s: &Subject<'_>, thing: &str) -> String {
    match s.app() {
        Some(a) => format!("{a}'s {thing}"),
        None => format!("The {thing} of a program we could not identify"),
    }
}

fn generic(
    t: &mut String,
    who: &str,
    s: &Subject<'_>,
    r: &str,
    port: u16,
    services: Option<&dyn crate::enrich::Services>,
) {
    if s.answered == Some(false) && matches!(s.proto, 6 | 17 | 132) {
        let _ = write!(
            t,
            "{who} {} {r} on {}, with no answer",
            if s.proto == 17 {
                "sent traffic to"
            } else {
                "tried to connect to"
            },
            port_phrase(s, port, services)
        );
        return;
    }
    match s.proto {
        6 | 132 => {
            let _ = write!(t, "{who} connected to {r} on {}", port_phrase(s, port, services));
        }
        17 => {
            let _ = write!(
                t,
                "{who} exchanged traffic with {r} on {}",
                port_phrase(s, port, services)
            );
        }
        1 | 58 => {
            let _ = write!(
                t,
                "{who} exchanged {} messages (such as ping) with {r}",
                l4_word(s.proto)
            );
        }
        p => {
            let _ = write!(t, "{who} exchanged {} traffic with {r}", l4_word(p));
        }
    }
}

/// What a content-identified protocol is for, as a service ("remote login").
fn proto_purpose(p: &str) -> Option<&'static str> {
    Some(match p {
        "ssh" => "remote login",
        "http" => "web, unencrypted",
        "tls" => "encrypted",
        "quic" => "encrypted web, QUIC",
        "dns" => "name lookups, DNS",
        "rdp" => "remote desktop",
        "smb" => "Windows file sharing",
        "ntp" => "clock synchronisation, NTP",
        "sip" => "call set-up, SIP",
        _ => return None,
    })
}

/// Verb phrase and an optional object ("{r}" is the remote) for a content-identified protocol.
fn proto_sentence(p: &str) -> Option<(&'static str, Option<&'static str>)> {
    Some(match p {
        "dns" => ("sent DNS queries to", Some("{r}")),
        "mdns" => ("looked up or announced devices on the local network (mDNS)", None),
        "llmnr" => ("looked up local computer names (LLMNR)", None),
        "ssdp" => (
            "searched for or announced devices on the local network (SSDP)",
            None,
        ),
        "netbios" => ("looked up Windows computer names (NetBIOS) with", Some("{r}")),
        "ssh" => ("opened a remote login (SSH) session to", Some("{r}")),
        "stun" => (
            "checked its public address with",
            Some("{r} using STUN, as calls and video chats do"),
        ),
        "dtls" => (
            "exchanged encrypted real-time data (DTLS, as calls use) with",
            Some("{r}"),
        ),
        "dhcp" | "dhcpv6" => ("asked for network settings (DHCP) from", Some("{r}")),
        "ntp" => ("synchronised the clock with", Some("{r} using NTP")),
        "smb" => ("opened a Windows file sharing (SMB) connection to", Some("{r}")),
        "rdp" => ("opened a remote desktop (RDP) connection to", Some("{r}")),
        "wireguard" => ("exchanged VPN (WireGuard) traffic with", Some("{r}")),
        "openvpn" => ("exchanged VPN (OpenVPN) traffic with", Some("{r}")),
        "bittorrent" => (
            "exchanged peer-to-peer file sharing (BitTorrent) traffic with",
            Some("{r}"),
        ),
        "gnutella" => (
            "exchanged peer-to-peer file sharing (Gnutella) traffic with",
            Some("{r}"),
        ),
        "syslog" => ("sent log messages (syslog) to", Some("{r}")),
        "snmp" => ("exchanged network management (SNMP) messages with", Some("{r}")),
        "sip" => ("exchanged call set-up messages (SIP) with", Some("{r}")),
        _ => return None,
    })
}

/// Short words for a flag kind, for lists ("plain HTTP", "unusual port").
pub(crate) fn flag_words(k: FlagKind) -> &'static str {
    match k {
        FlagKind::UnpackagedBinary => "program not from a package",
        FlagKind::PlaintextHttp => "plain HTTP",
        FlagKind::UploadHeavy => "upload far above download",
        FlagKind::UnusualPort => "unusual port",
        FlagKind::NoReverseDns => "host without a name",
        FlagKind::HostingProvider => "rented server",
        FlagKind::DaemonOutside => "system service talking outside",
        FlagKind::HighRetransmissions => "many retransmissions",
        FlagKind::RxQueueBacklog => "receive queue backing up",
        FlagKind::ManyRemotes => "many remote hosts",
        FlagKind::ListeningAll => "listening on every interface",
        FlagKind::Ipv6 => "IPv6",
        FlagKind::VpnApp => "VPN",
        FlagKind::ConnectionPooling => "many connections to one host",
    }
}

/// The period a digest covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Period {
    Hour,
    Day,
    /// Any other span, in words ("Since Monday").
    Custom(String),
}

/// What a digest says: counts, new apps, red flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestFacts {
    pub period: Period,
    pub apps: usize,
    pub hosts: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Apps seen for the first time, by name.
    pub new_apps: Vec<String>,
    /// One short phrase per red (high-level) app: "curl (plain HTTP, rented server)".
    pub red_flags: Vec<String>,
}

fn count(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

fn list(items: &[String], max: usize, sep: &str) -> String {
    let mut s = items.iter().take(max).cloned().collect::<Vec<_>>().join(sep);
    if items.len() > max {
        let _ = write!(s, " and {} more", items.len() - max);
    }
    s
}

/// "Today 14 apps talked to 230 hosts (1.2 GB in, 85.3 MB out); 3 are new: a, b, c; one red
/// flag: curl (plain HTTP)".
pub fn digest(f: &DigestFacts) -> String {
    let when = match &f.period {
        Period::Hour => "In the last hour",
        Period::Day => "Today",
        Period::Custom(s) => s.as_str(),
    };
    if f.apps == 0 {
        return format!("{when} no app used the network");
    }
    let mut t = format!(
        "{when} {} talked to {} ({} in, {} out)",
        count(f.apps, "app", "apps"),
        count(f.hosts, "host", "hosts"),
        human_bytes(f.bytes_in),
        human_bytes(f.bytes_out)
    );
    match f.new_apps.len() {
        0 => t.push_str("; none is new"),
        1 => {
            let _ = write!(t, "; one is new: {}", f.new_apps[0]);
        }
        n => {
            let _ = write!(t, "; {n} are new: {}", list(&f.new_apps, 5, ", "));
        }
    }
    match f.red_flags.len() {
        0 => t.push_str("; no red flag"),
        1 => {
            let _ = write!(t, "; one red flag: {}", f.red_flags[0]);
        }
        n => {
            let _ = write!(t, "; {n} red flags: {}", list(&f.red_flags, 3, "; "));
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes() {
        assert_eq!(human_bytes(0), "0 bytes");
        assert_eq!(human_bytes(1), "1 byte");
        assert_eq!(human_bytes(999), "999 bytes");
        assert_eq!(human_bytes(1000), "1.0 kB");
        assert_eq!(human_bytes(2_345_678), "2.3 MB");
        assert_eq!(human_bytes(999_999), "1.0 MB");
        assert_eq!(human_bytes(u64::MAX), "18446.7 PB");
    }

    #[test]
    fn orgs() {
        assert_eq!(short_org("GitHub, Inc."), "GitHub");
        assert_eq!(short_org("Akamai Technologies, Inc."), "Akamai Technologies");
        assert_eq!(short_org("Hetzner Online GmbH"), "Hetzner Online");
        assert_eq!(short_org(" Inc."), "Inc.");
    }

    #[test]
    fn digests() {
        let mut f = DigestFacts {
            period: Period::Day,
            apps: 14,
            hosts: 230,
            bytes_in: 1_200_000_000,
            bytes_out: 85_300_000,
            new_apps: vec!["a".into(), "b".into(), "c".into()],
            red_flags: vec!["curl (plain HTTP)".into()],
        };
        assert_eq!(
            digest(&f),
            "Today 14 apps talked to 230 hosts (1.2 GB in, 85.3 MB out); 3 are new: a, b, c; one red flag: curl (plain HTTP)"
        );
        f.apps = 0;
        assert_eq!(digest(&f), "Today no app used the network");
        f.apps = 1;
        f.hosts = 1;
        f.new_apps.clear();
        f.red_flags = vec!["x (a, b)".into(), "y (c)".into()];
        f.period = Period::Hour;
        assert_eq!(
            digest(&f),
            "In the last hour 1 app talked to 1 host (1.2 GB in, 85.3 MB out); none is new; 2 red flags: x (a, b); y (c)"
        );
    }
}
