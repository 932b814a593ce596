//! Port -> service name, from a file in /etc/services format (`name port/proto [aliases...]
//! [# comment]`; on Debian the `netbase` package provides /etc/services), with a built-in table
//! of common ports when the file is missing.
//!
//! The first line for a port and protocol wins, as `getservbyport` does.

use std::collections::HashMap;
use std::path::Path;

use engine::enrich::Services;

use crate::error::{LoadError, LoadErrorKind};

/// The usual location.
pub const ETC_SERVICES: &str = "/etc/services";

/// Common ports when no services file is readable: (name, port, tcp, udp).
const BUILTIN: &[(&str, u16, bool, bool)] = &[
    ("ftp-data", 20, true, false),
    ("ftp", 21, true, false),
    ("ssh", 22, true, false),
    ("telnet", 23, true, false),
    ("smtp", 25, true, false),
    ("domain", 53, true, true),
    ("bootps", 67, false, true),
    ("bootpc", 68, false, true),
    ("tftp", 69, false, true),
    ("http", 80, true, true),
    ("kerberos", 88, true, true),
    ("pop3", 110, true, false),
    ("sunrpc", 111, true, true),
    ("ntp", 123, false, true),
    ("netbios-ns", 137, false, true),
    ("netbios-dgm", 138, false, true),
    ("netbios-ssn", 139, true, false),
    ("imap2", 143, true, false),
    ("snmp", 161, false, true),
    ("ldap", 389, true, true),
    ("https", 443, true, true),
    ("microsoft-ds", 445, true, false),
    ("isakmp", 500, false, true),
    ("syslog", 514, false, true),
    ("submissions", 465, true, false),
    ("submission", 587, true, false),
    ("ipp", 631, true, true),
    ("ldaps", 636, true, true),
    ("domain-s", 853, true, true),
    ("imaps", 993, true, false),
    ("pop3s", 995, true, false),
    ("openvpn", 1194, true, true),
    ("ms-sql-s", 1433, true, false),
    ("l2tp", 1701, false, true),
    ("mqtt", 1883, true, false),
    ("nfs", 2049, true, true),
    ("mysql", 3306, true, false),
    ("ms-wbt-server", 3389, true, false),
    ("stun", 3478, true, true),
    ("ipsec-nat-t", 4500, false, true),
    ("sip", 5060, true, true),
    ("sip-tls", 5061, true, false),
    ("xmpp-client", 5222, true, false),
    ("mdns", 5353, false, true),
    ("postgresql", 5432, true, false),
    ("amqp", 5672, true, false),
    ("x11", 6000, true, false),
    ("redis", 6379, true, false),
    ("http-alt", 8080, true, false),
    ("https-alt", 8443, true, false),
    ("mongodb", 27017, true, false),
    ("wireguard", 51820, false, true),
];

/// Service names by protocol and port.
#[derive(Clone, Debug, Default)]
pub struct ServiceNames {
    map: HashMap<(u8, u16), Box<str>>,
    /// Lines that did not parse (skipped).
    pub bad_lines: usize,
    /// Where the names came from (a path, or "built-in").
    pub origin: String,
}

fn proto_number(p: &str) -> Option<u8> {
    match p.to_ascii_lowercase().as_str() {
        "tcp" => Some(6),
        "udp" => Some(17),
        "dccp" => Some(33),
        "sctp" => Some(132),
        _ => None,
    }
}

impl ServiceNames {
    /// Parses /etc/services text; lines that do not parse are counted and skipped.
    pub fn parse(text: &str) -> ServiceNames {
        let mut s = ServiceNames::default();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default();
            let mut fields = line.split_whitespace();
            let (Some(name), Some(pp)) = (fields.next(), fields.next()) else {
                if !line.trim().is_empty() {
                    s.bad_lines += 1;
                }
                continue;
            };
            let parsed = pp
                .split_once('/')
                .and_then(|(port, proto)| Some((port.parse::<u16>().ok()?, proto_number(proto)?)));
            match parsed {
                Some((port, proto)) => {
                    s.map.entry((proto, port)).or_insert_with(|| name.into());
                }
                None => s.bad_lines += 1,
            }
        }
        s
    }

    /// Reads a services file.
    pub fn load(path: &Path) -> Result<ServiceNames, LoadError> {
        let bytes = std::fs::read(path).map_err(|e| LoadError::new(path, LoadErrorKind::Io(e)))?;
        let mut s = Self::parse(&String::from_utf8_lossy(&bytes));
        if s.map.is_empty() {
            return Err(LoadError::new(path, LoadErrorKind::Empty));
        }
        s.origin = path.display().to_string();
        Ok(s)
    }

    /// The built-in table of common ports.
    pub fn builtin() -> ServiceNames {
        let mut s = ServiceNames {
            origin: "built-in".into(),
            ..ServiceNames::default()
        };
        for &(name, port, tcp, udp) in BUILTIN {
            if tcp {
                s.map.insert((6, port), name.into());
            }
            if udp {
                s.map.insert((17, port), name.into());
            }
        }
        s
    }

    /// /etc/services, or the built-in table when it cannot be read (install Debian's `netbase`).
    pub fn system() -> ServiceNames {
        Self::load(Path::new(ETC_SERVICES)).unwrap_or_else(|_| Self::builtin())
    }

    /// Number of (protocol, port) names.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// No name at all.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl Services for ServiceNames {
    fn name(&self, proto: u8, port: u16) -> Option<&str> {
        self.map.get(&(proto, port)).map(|n| &**n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_services_format() {
        let text = "# comment\n\
                    ssh\t\t22/tcp\t\t\t# SSH Remote Login Protocol\n\
                    domain\t\t53/tcp\n\
                    domain\t\t53/udp\n\
                    https\t\t443/tcp\n\
                    bogus\t\t99999/tcp\n\
                    alias-first 7/tcp echo\n\
                    echo-again 7/tcp\n\
                    sctp-thing 9/sctp\n\
                    lonely\n";
        let s = ServiceNames::parse(text);
        assert_eq!(s.name(6, 22), Some("ssh"));
        assert_eq!(s.name(17, 53), Some("domain"));
        assert_eq!(s.name(17, 22), None);
        assert_eq!(s.name(6, 7), Some("alias-first"));
        assert_eq!(s.name(132, 9), Some("sctp-thing"));
        assert_eq!(s.bad_lines, 2);
    }

    #[test]
    fn builtin_has_common_ports() {
        let s = ServiceNames::builtin();
        assert_eq!(s.name(6, 443), Some("https"));
        assert_eq!(s.name(17, 443), Some("https"));
        assert_eq!(s.name(17, 123), Some("ntp"));
        assert_eq!(s.name(6, 123), None);
    }

    #[test]
    fn missing_file_is_a_clear_error() {
        let e = ServiceNames::load(Path::new("/nonexistent/services")).unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent/services: cannot read it"));
    }
}
