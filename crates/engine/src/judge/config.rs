//! Every weight, threshold and list of the judgement, with the defaults of issue #5.
//!
//! Choices behind the defaults:
//! - Hosting ASNs (+2): networks that rent virtual servers to anyone by the hour, where a
//!   malicious endpoint costs nothing to set up: DigitalOcean 14061, Linode/Akamai Connected
//!   Cloud 63949, OVH 16276, Hetzner 24940, Vultr/Choopa 20473, Contabo 51167, Scaleway 12876,
//!   Leaseweb 60781 and 16265, M247 9009, Hostinger 47583, DataCamp 212238, GoDaddy 26496,
//!   IONOS 8560, Kamatera 36007, BuyVM/FranTech 53667, RackNerd 36352, HostHatch 63473 and
//!   Tencent Cloud 132203.
//! - Big clouds (+1): they host that too, but also most of the legitimate web, so they weigh
//!   less: Amazon 16509 and 14618, Google Cloud 396982 (not 15169, Google's own services, which
//!   would flag every Google search), Microsoft 8075, Oracle 31898, Alibaba 45102.
//! - System daemons: a remote is fine when it is local (private, loopback, link-local,
//!   multicast), when its name (domain, else reverse DNS) ends with one of the OS vendors'
//!   suffixes or the daemon's own, or when its port is one the daemon exists for (a resolver
//!   on 53, a time server on 123).
//! - Safe lists suppress: a known-safe app or host gets no scored flag (informational flags
//!   stay); a known-safe port is never "unusual".

use std::net::IpAddr;

/// A system service and where it may talk without a flag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemDaemon {
    /// Process name (comm, at most 15 characters on Linux) or systemd unit without `.service`.
    pub name: String,
    /// Domain suffixes it may reach, besides [`Config::vendor_suffixes`].
    pub suffixes: Vec<String>,
    /// Remote ports it exists for (a resolver's 53, NTP's 123).
    pub ports: Vec<u16>,
}

impl SystemDaemon {
    fn new(name: &str, suffixes: &[&str], ports: &[u16]) -> Self {
        Self {
            name: name.into(),
            suffixes: suffixes.iter().map(|s| (*s).to_string()).collect(),
            ports: ports.to_vec(),
        }
    }
}

/// Points of each scored flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Weights {
    pub unpackaged_binary: u32,
    pub plaintext_http: u32,
    pub upload_heavy: u32,
    pub unusual_port: u32,
    pub no_reverse_dns: u32,
    pub hosting_provider: u32,
    pub big_cloud: u32,
    pub daemon_outside: u32,
    pub high_retransmissions: u32,
    pub rx_queue_backlog: u32,
    pub many_remotes: u32,
    pub listening_all: u32,
}

impl Default for Weights {
    fn default() -> Self {
        Self {
            unpackaged_binary: 3,
            plaintext_http: 3,
            upload_heavy: 3,
            unusual_port: 2,
            no_reverse_dns: 2,
            hosting_provider: 2,
            big_cloud: 1,
            daemon_outside: 2,
            high_retransmissions: 1,
            rx_queue_backlog: 1,
            many_remotes: 1,
            listening_all: 1,
        }
    }
}

/// The privacy score: 100 minus a penalty per distinct tracker host (a domain labelled
/// `tracker`, or in the ads or analytics category), by its category, plus
/// `per_extra_connection` for each further connection to it up to `max_extra`; floored at 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrivacyWeights {
    pub ads: u32,
    pub analytics: u32,
    pub social: u32,
    pub cdn: u32,
    /// Trackers of any other category.
    pub other: u32,
    pub per_extra_connection: u32,
    pub max_extra: u32,
}

impl Default for PrivacyWeights {
    fn default() -> Self {
        Self {
            ads: 15,
            analytics: 12,
            social: 8,
            cdn: 2,
            other: 6,
            per_extra_connection: 1,
            max_extra: 5,
        }
    }
}

/// Thresholds of the alert rules and the baselines.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertConfig {
    /// An app unseen for this long (monitored time, nanoseconds) that starts again is reported.
    pub idle_after: i64,
    /// Weight of a new observation in the exponentially weighted mean and variance (0..1).
    pub ewma_alpha: f64,
    /// Active minutes an app needs before its volume baseline is trusted.
    pub warmup_minutes: u32,
    /// Connections an app needs before a port it never used is reported.
    pub warmup_connections: u32,
    /// z-score above which a minute is a spike.
    pub spike_z: f64,
    /// A spike must also move at least this many bytes in the minute.
    pub spike_min_bytes: u64,
    /// An upload burst: at least this many bytes sent in one minute ...
    pub burst_min_bytes: u64,
    /// ... and more than this many times what was received.
    pub burst_ratio: u64,
    /// Steps of the clock longer than this count as this long (suspend, clock set forward,
    /// restart): see [`super::alert`].
    pub max_step: i64,
    /// Caps: apps tracked, remote hosts and ports per app, alert ids remembered.
    pub max_apps: usize,
    pub max_remotes_per_app: usize,
    pub max_ports_per_app: usize,
    pub max_recent_ids: usize,
}

impl Default for AlertConfig {
    fn default() -> Self {
        Self {
            idle_after: 24 * 3600 * SEC,
            ewma_alpha: 0.05,
            warmup_minutes: 30,
            warmup_connections: 20,
            spike_z: 4.0,
            spike_min_bytes: 10_000_000,
            burst_min_bytes: 20_000_000,
            burst_ratio: 10,
            max_step: 600 * SEC,
            max_apps: 1024,
            max_remotes_per_app: 2048,
            max_ports_per_app: 64,
            max_recent_ids: 8192,
        }
    }
}

/// One second in nanoseconds.
pub const SEC: i64 = 1_000_000_000;

/// The judgement's configuration: weights, thresholds and lists. `Default` is issue #5's table.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub weights: Weights,
    pub privacy: PrivacyWeights,
    /// Remote ports that are not "unusual" (TCP and UDP; 123, NTP, over UDP only).
    pub standard_ports: Vec<u16>,
    /// UDP 443 is QUIC: standard for UDP too.
    pub quic_is_standard: bool,
    /// Upload-heavy: bytes out > `upload_ratio` x bytes in ...
    pub upload_ratio: u64,
    /// ... and bytes out > this.
    pub upload_min_bytes: u64,
    /// An app with more distinct remote addresses than this gets the "many remotes" flag.
    pub many_remotes: usize,
    /// An app with more connections than this to one remote host is "pooling" (informational).
    pub pooling_connections: u32,
    /// High retransmissions: more than this many ...
    pub retrans_min: u32,
    /// ... and more than this percentage of segments sent.
    pub retrans_percent: u32,
    /// Receive queue above 0 for longer than this (nanoseconds).
    pub rx_queue_after: i64,
    /// Hosting/VPS ASNs (full hosting weight).
    pub hosting_asns: Vec<u32>,
    /// Big-cloud ASNs (big-cloud weight).
    pub cloud_asns: Vec<u32>,
    pub daemons: Vec<SystemDaemon>,
    /// OS vendors' domain suffixes any daemon may reach.
    pub vendor_suffixes: Vec<String>,
    /// Process names of VPN clients (informational flag).
    pub vpn_apps: Vec<String>,
    /// Known-safe apps (process names): no scored flag.
    pub safe_apps: Vec<String>,
    /// Known-safe hosts: domain suffixes or IP addresses as text; no scored flag.
    pub safe_hosts: Vec<String>,
    /// Known-safe ports: never "unusual".
    pub safe_ports: Vec<u16>,
    /// This machine's own addresses, to tell inbound from outbound in captured flows (the live
    /// pipeline fills them from the interfaces; empty: private-vs-public heuristics).
    pub local_addrs: Vec<IpAddr>,
    pub alerts: AlertConfig,
}

impl Default for Config {
    fn default() -> Self {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_string()).collect::<Vec<_>>();
        Self {
            weights: Weights::default(),
            privacy: PrivacyWeights::default(),
            standard_ports: vec![
                22, 53, 80, 123, 443, 465, 587, 993, 995, 3478, 5228, 5353, 8080, 8443,
            ],
            quic_is_standard: true,
            upload_ratio: 10,
            upload_min_bytes: 1_000_000,
            many_remotes: 20,
            pooling_connections: 8,
            retrans_min: 10,
            retrans_percent: 5,
            rx_queue_after: 30 * SEC,
            hosting_asns: vec![
                14061, 63949, 16276, 24940, 20473, 51167, 12876, 60781, 16265, 9009, 47583, 212238, 26496,
                8560, 36007, 53667, 36352, 63473, 132203,
            ],
            cloud_asns: vec![16509, 14618, 396982, 8075, 31898, 45102],
            daemons: vec![
                SystemDaemon::new("systemd-resolve", &[], &[53, 853, 5353, 5355]),
                SystemDaemon::new("systemd-resolved", &[], &[53, 853, 5353, 5355]),
                SystemDaemon::new("systemd-timesyn", &[], &[123]),
                SystemDaemon::new("systemd-timesyncd", &[], &[123]),
                SystemDaemon::new("systemd-network", &[], &[67, 68, 546, 547]),
                SystemDaemon::new(
                    "NetworkManager",
                    &["gnome.org", "network-manager"],
                    &[53, 67, 68, 546, 547],
                ),
                SystemDaemon::new("dhclient", &[], &[67, 68, 546, 547]),
                SystemDaemon::new("apt", &[], &[]),
                SystemDaemon::new("http", &[], &[]),
                SystemDaemon::new("https", &[], &[]),
                SystemDaemon::new("unattended-upgr", &[], &[]),
                SystemDaemon::new("snapd", &["snapcraft.io", "snapcraftcontent.com"], &[]),
                SystemDaemon::new("packagekitd", &[], &[]),
                SystemDaemon::new("fwupd", &["fwupd.org", "lvfs.org"], &[]),
                SystemDaemon::new("fwupdmgr", &["fwupd.org", "lvfs.org"], &[]),
                SystemDaemon::new("cupsd", &[], &[631]),
                SystemDaemon::new("cups-browsed", &[], &[631]),
                SystemDaemon::new("avahi-daemon", &[], &[5353]),
                SystemDaemon::new("chronyd", &[], &[123]),
                SystemDaemon::new("ntpd", &[], &[123]),
                SystemDaemon::new("ntpsec", &[], &[123]),
                SystemDaemon::new("dnf", &[], &[]),
                SystemDaemon::new("yum", &[], &[]),
                SystemDaemon::new("dnsmasq", &[], &[53]),
                SystemDaemon::new("unbound", &[], &[53, 853]),
                SystemDaemon::new("colord", &[], &[]),
                SystemDaemon::new("geoclue", &["mozilla.com", "beacondb.net"], &[]),
            ],
            vendor_suffixes: s(&[
                "ubuntu.com",
                "canonical.com",
                "launchpad.net",
                "launchpadcontent.net",
                "debian.org",
                "debian.net",
                "fedoraproject.org",
                "redhat.com",
                "centos.org",
                "almalinux.org",
                "rockylinux.org",
                "opensuse.org",
                "suse.com",
                "archlinux.org",
                "pool.ntp.org",
                "ntp.org",
                "ntp.ubuntu.com",
                "time.cloudflare.com",
                "time.google.com",
                "time.apple.com",
                "time.windows.com",
                "gnome.org",
                "kde.org",
            ]),
            vpn_apps: s(&[
                "openvpn",
                "wg",
                "wg-quick",
                "wireguard",
                "tailscaled",
                "nebula",
                "zerotier-one",
                "openconnect",
                "vpnc",
                "charon",
                "mullvad-daemon",
                "protonvpn",
                "nordvpnd",
            ]),
            safe_apps: Vec::new(),
            safe_hosts: Vec::new(),
            safe_ports: Vec::new(),
            local_addrs: Vec::new(),
            alerts: AlertConfig::default(),
        }
    }
}

impl Config {
    /// Is `port` standard for the IP protocol `proto`? 123 (NTP) is standard over UDP only;
    /// UDP 443 (QUIC) only when `quic_is_standard`.
    pub fn is_standard_port(&self, proto: u8, port: u16) -> bool {
        self.safe_ports.contains(&port)
            || (self.standard_ports.contains(&port)
                && (port != 443 || proto != 17 || self.quic_is_standard)
                && (port != 123 || proto == 17))
    }

    /// The daemon entry for a process name or unit, if it is a known system service.
    pub fn daemon(&self, name: &str, unit: Option<&str>) -> Option<&SystemDaemon> {
        let unit = unit.map(|u| u.strip_suffix(".service").unwrap_or(u));
        self.daemons
            .iter()
            .find(|d| d.name == name || Some(d.name.as_str()) == unit)
    }

    /// Is `name` (a domain) or `ip` on the safe-host list?
    pub fn is_safe_host(&self, name: Option<&str>, ip: IpAddr) -> bool {
        self.safe_hosts
            .iter()
            .any(|h| name.is_some_and(|n| has_suffix(n, h)) || h.parse::<IpAddr>().is_ok_and(|a| a == ip))
    }

    pub fn is_safe_app(&self, name: &str) -> bool {
        self.safe_apps.iter().any(|a| a == name)
    }
}

/// `name` is `suffix` or ends with `.suffix` (ASCII case-insensitive, a trailing dot ignored).
pub fn has_suffix(name: &str, suffix: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let suffix = suffix.trim_start_matches('.');
    if suffix.is_empty() || name.len() < suffix.len() {
        return false;
    }
    let cut = name.len() - suffix.len();
    name.is_char_boundary(cut)
        && name[cut..].eq_ignore_ascii_case(suffix)
        && (cut == 0 || name.as_bytes()[cut - 1] == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes() {
        assert!(has_suffix("archive.ubuntu.com", "ubuntu.com"));
        assert!(has_suffix("Ubuntu.COM.", "ubuntu.com"));
        assert!(!has_suffix("notubuntu.com", "ubuntu.com"));
        assert!(!has_suffix("com", "ubuntu.com"));
        assert!(!has_suffix("é.com", ""));
    }

    #[test]
    fn standard_ports() {
        let c = Config::default();
        assert!(c.is_standard_port(6, 443) && c.is_standard_port(17, 443));
        let c = Config {
            quic_is_standard: false,
            ..Config::default()
        };
        assert!(c.is_standard_port(6, 443) && !c.is_standard_port(17, 443));
        assert!(!c.is_standard_port(6, 6667));
        // NTP: every machine's clock daemon talks to UDP 123; TCP 123 is not NTP.
        assert!(c.is_standard_port(17, 123) && !c.is_standard_port(6, 123));
    }
}
