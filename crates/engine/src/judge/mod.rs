//! Judgement: threat flags and scores per flow and connection ([`assess_flow`],
//! [`assess_connection`]), per-app totals and a privacy score ([`Apps`]), alerts with baselines
//! that persist ([`Alerter`]), and plain-language sentences ([`explain`], [`digest`]).
//!
//! Pure like the rest of the engine: `now` is a parameter, enrichment comes through the traits
//! of [`crate::enrich`], nothing here blocks or reads the clock. [`Judge`] bundles the parts
//! for a pipeline: call [`Judge::flow`] per flow record, [`Judge::connection`] per connection
//! record, [`Judge::snapshot`] per socket snapshot and [`Judge::tick`] on the pipeline's tick.

mod alert;
mod apps;
mod codec;
mod config;
mod explain;
mod flags;

use std::net::{IpAddr, SocketAddr};

pub use alert::{Alert, Alerter, LoadError, Rule};
pub use apps::{AppFlag, AppSummary, Apps, PrivacyReason};
pub use config::{AlertConfig, Config, PrivacyWeights, SEC, SystemDaemon, Weights, has_suffix};
pub use explain::{DigestFacts, Period, digest, explain, human_bytes};
pub use flags::{RxQueueWatch, assess, assess_connection, assess_flow};

use crate::connections::{ConnEvent, ConnectionRecord, Direction};
use crate::enrich::{DomainLabel, Enrichers, Place, Rdns};
use crate::record::{AppBy, DomainSource, FlowRecord};
use crate::sockets::{ProcessInfo, SockProto, SocketSnapshot, TcpState};

/// How worrying a score is: 0 clean (green), 1–2 low (yellow), 3–5 medium (orange), 6+ high (red).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    Clean,
    Low,
    Medium,
    High,
}

impl Level {
    pub const fn from_score(score: u32) -> Self {
        match score {
            0 => Level::Clean,
            1..=2 => Level::Low,
            3..=5 => Level::Medium,
            _ => Level::High,
        }
    }
    /// "clean", "low", "medium", "high".
    pub const fn as_str(self) -> &'static str {
        match self {
            Level::Clean => "clean",
            Level::Low => "low",
            Level::Medium => "medium",
            Level::High => "high",
        }
    }
    /// "green", "yellow", "orange", "red".
    pub const fn color(self) -> &'static str {
        match self {
            Level::Clean => "green",
            Level::Low => "yellow",
            Level::Medium => "orange",
            Level::High => "red",
        }
    }
}

/// How bad an alert is. Ordered: `Info < Low < Medium < High` (the store's `Severity` has the
/// same names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
}

impl Severity {
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "info" => Severity::Info,
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            _ => return None,
        })
    }
}

/// What a flag is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FlagKind {
    UnpackagedBinary,
    PlaintextHttp,
    UploadHeavy,
    UnusualPort,
    NoReverseDns,
    HostingProvider,
    DaemonOutside,
    HighRetransmissions,
    RxQueueBacklog,
    ManyRemotes,
    ListeningAll,
    /// Informational (0 points).
    Ipv6,
    /// Informational (0 points).
    VpnApp,
    /// Informational (0 points): many connections of one app to one host.
    ConnectionPooling,
}

impl FlagKind {
    pub const ALL: [FlagKind; 14] = [
        FlagKind::UnpackagedBinary,
        FlagKind::PlaintextHttp,
        FlagKind::UploadHeavy,
        FlagKind::UnusualPort,
        FlagKind::NoReverseDns,
        FlagKind::HostingProvider,
        FlagKind::DaemonOutside,
        FlagKind::HighRetransmissions,
        FlagKind::RxQueueBacklog,
        FlagKind::ManyRemotes,
        FlagKind::ListeningAll,
        FlagKind::Ipv6,
        FlagKind::VpnApp,
        FlagKind::ConnectionPooling,
    ];
    /// Stable machine name ("unpackaged_binary", "plaintext_http" ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            FlagKind::UnpackagedBinary => "unpackaged_binary",
            FlagKind::PlaintextHttp => "plaintext_http",
            FlagKind::UploadHeavy => "upload_heavy",
            FlagKind::UnusualPort => "unusual_port",
            FlagKind::NoReverseDns => "no_reverse_dns",
            FlagKind::HostingProvider => "hosting_provider",
            FlagKind::DaemonOutside => "daemon_outside",
            FlagKind::HighRetransmissions => "high_retransmissions",
            FlagKind::RxQueueBacklog => "rx_queue_backlog",
            FlagKind::ManyRemotes => "many_remotes",
            FlagKind::ListeningAll => "listening_all",
            FlagKind::Ipv6 => "ipv6",
            FlagKind::VpnApp => "vpn_app",
            FlagKind::ConnectionPooling => "connection_pooling",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        FlagKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
    /// Informational kinds never carry points.
    pub const fn informational(self) -> bool {
        matches!(
            self,
            FlagKind::Ipv6 | FlagKind::VpnApp | FlagKind::ConnectionPooling
        )
    }
}

/// One reason for concern, with its points and one readable sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flag {
    pub kind: FlagKind,
    pub points: u32,
    pub why: String,
}

/// The judgement of one flow or connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Assessment {
    pub flags: Vec<Flag>,
    /// Sum of the flags' points.
    pub score: u32,
    /// One sentence: what happened, from what is known.
    pub explanation: String,
    /// The remote host as people should read it: a domain when known, else the address.
    pub remote: String,
    pub place: Option<Place>,
    pub label: Option<DomainLabel>,
    pub rdns: Option<Rdns>,
}

impl Assessment {
    pub fn level(&self) -> Level {
        Level::from_score(self.score)
    }
    /// Adds a flag found elsewhere (a receive queue watched over time) and its points.
    pub fn push(&mut self, f: Flag) {
        self.score = self.score.saturating_add(f.points);
        self.flags.push(f);
    }
    pub fn has(&self, kind: FlagKind) -> bool {
        self.flags.iter().any(|f| f.kind == kind)
    }

    /// The judgement fields as JSON members (no braces), for adding to a record's object:
    /// `"score":N,"level":"...","flags":[{"kind","points","why"}],"explanation":"..."`.
    pub fn write_json_fields(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = write!(
            out,
            "\"score\":{},\"level\":\"{}\",\"flags\":[",
            self.score,
            self.level().as_str()
        );
        for (i, f) in self.flags.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                "{{\"kind\":\"{}\",\"points\":{},\"why\":",
                f.kind.as_str(),
                f.points
            );
            crate::record::write_json_str(out, &f.why);
            out.push('}');
        }
        out.push_str("],\"explanation\":");
        crate::record::write_json_str(out, &self.explanation);
    }
}

/// What kind of event a [`Subject`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SubjectKind {
    /// A finished flow from packets.
    Flow,
    /// A connection opened (socket table).
    Opened,
    /// A connection closed (socket table; byte counts are final).
    Closed,
    /// A socket listening on every interface.
    Listening,
}

/// A flow or a connection event seen from this machine: local and remote ends, owner, what is
/// known of the protocol and the bytes. Built by [`Subject::from_flow`] or
/// [`Subject::from_connection`]; everything the judgement looks at.
#[derive(Clone, Debug)]
pub struct Subject<'a> {
    pub kind: SubjectKind,
    /// First packet (flows) or the event time (connections), nanoseconds since the epoch.
    pub start: i64,
    /// Last packet (flows) or the event time.
    pub end: i64,
    /// IP protocol number (6 TCP, 17 UDP, ...).
    pub proto: u8,
    pub direction: Direction,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub process: Option<&'a ProcessInfo>,
    /// Gateway mode: the LAN device at the local end (its name, else its MAC address); it is
    /// the app when no process is known.
    pub device: Option<&'a str>,
    pub app_proto: Option<&'static str>,
    pub app_by: AppBy,
    pub domain: Option<&'a str>,
    pub domain_source: Option<DomainSource>,
    /// Bytes this machine sent and received (`None` when not known: UDP sockets, events
    /// without tcp_info).
    pub bytes_out: Option<u64>,
    pub bytes_in: Option<u64>,
    /// (total retransmissions, segments sent) from tcp_info.
    pub retrans: Option<(u32, u32)>,
    pub state: Option<TcpState>,
    /// Did the server side send anything back (flows: a packet to the client)? `None` when
    /// not known (connection events).
    pub answered: Option<bool>,
}

/// IP protocol number of a socket protocol.
pub fn sock_proto_number(p: SockProto) -> u8 {
    match p {
        SockProto::Tcp => 6,
        SockProto::Udp => 17,
        SockProto::UdpLite => 136,
        SockProto::Sctp => 132,
        SockProto::Icmp => 1,
        SockProto::Icmpv6 => 58,
        SockProto::Raw(n) => n,
        SockProto::Packet => 0,
    }
}

impl<'a> Subject<'a> {
    /// A flow record seen from this machine. Which end is local: an address in
    /// `cfg.local_addrs`; without that list, the server is local (the flow is inbound) only
    /// when the client's address is public and the server's is not; otherwise the client is
    /// local (outbound). A flow to a multicast or broadcast address is always outbound.
    pub fn from_flow(f: &'a FlowRecord, cfg: &Config) -> Self {
        let inbound = if let Some(d) = &f.device {
            // Gateway mode: the LAN device's end is the local one.
            !d.client_side
        } else if cfg.local_addrs.is_empty() {
            is_global(f.client.ip) && !is_global(f.server.ip) && !is_group(f.server.ip)
        } else {
            cfg.local_addrs.contains(&f.server.ip) && !cfg.local_addrs.contains(&f.client.ip)
        };
        let client = SocketAddr::new(f.client.ip, f.client.port);
        let server = SocketAddr::new(f.server.ip, f.server.port);
        let (direction, local, remote, out, inn) = if inbound {
            (
                Direction::Inbound,
                server,
                client,
                f.to_client.bytes,
                f.to_server.bytes,
            )
        } else {
            (
                Direction::Outbound,
                client,
                server,
                f.to_server.bytes,
                f.to_client.bytes,
            )
        };
        let answered = Some(f.to_client.packets > 0);
        Self {
            kind: SubjectKind::Flow,
            start: f.start,
            end: f.end.max(f.start),
            proto: f.proto,
            direction,
            local,
            remote,
            process: f.process.as_deref(),
            device: f.device.as_deref().map(|d| d.label.as_str()),
            app_proto: f.app.app_proto,
            app_by: f.app.app_by,
            domain: f.app.domain.as_deref(),
            domain_source: f.app.domain_source,
            bytes_out: Some(out),
            bytes_in: Some(inn),
            retrans: None,
            state: None,
            answered,
        }
    }

    /// A connection event. Socket-table mode sees no payload: bytes and retransmissions come
    /// from tcp_info (TCP only), the protocol is a port guess at most (left `None`).
    pub fn from_connection(c: &'a ConnectionRecord) -> Self {
        let kind = match c.event {
            ConnEvent::Opened => SubjectKind::Opened,
            ConnEvent::Closed => SubjectKind::Closed,
            ConnEvent::ListeningOnAll => SubjectKind::Listening,
        };
        Self {
            kind,
            start: c.ts,
            end: c.ts,
            proto: sock_proto_number(c.proto),
            direction: c.direction.unwrap_or(Direction::Inbound),
            local: c.local,
            remote: c.remote,
            process: c.process.as_ref(),
            device: None,
            app_proto: None,
            app_by: AppBy::Port,
            domain: None,
            domain_source: None,
            bytes_out: c.tcp.map(|t| t.bytes_acked),
            bytes_in: c.tcp.map(|t| t.bytes_received),
            retrans: c.tcp.map(|t| (t.total_retrans, t.segs_out)),
            state: c.state,
            answered: None,
        }
    }

    /// The owner's process name, if known; in gateway mode, else the LAN device.
    pub fn app(&self) -> Option<&'a str> {
        self.process
            .map(|p| p.name.as_str())
            .filter(|n| !n.is_empty())
            .or(self.device)
    }

    /// The port of the service: the remote's for outbound, the local one for inbound and
    /// listening sockets.
    pub fn service_port(&self) -> u16 {
        match (self.kind, self.direction) {
            (SubjectKind::Listening, _) | (_, Direction::Inbound) => self.local.port(),
            _ => self.remote.port(),
        }
    }

    /// The remote host as a key: the domain when known, else the address.
    pub fn remote_key(&self) -> String {
        match self.domain {
            Some(d) => d.to_ascii_lowercase(),
            None => self.remote.ip().to_string(),
        }
    }
}

/// Is `ip` routable on the internet (not private, loopback, link-local, multicast, CGNAT,
/// documentation-free unspecified or broadcast)? IPv4-mapped IPv6 addresses are judged as IPv4.
pub fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            !(a.is_private()
                || a.is_loopback()
                || a.is_link_local()
                || a.is_multicast()
                || a.is_broadcast()
                || a.is_unspecified()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || o[0] >= 240)
        }
        IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                return is_global(IpAddr::V4(v4));
            }
            let s = a.segments();
            !(a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80)
        }
    }
}

/// Is `ip` a multicast or (limited) broadcast address?
pub fn is_group(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(a) => a.is_multicast() || a.is_broadcast(),
        IpAddr::V6(a) => a.is_multicast(),
    }
}

/// Is `ip` this machine itself (loopback, or unspecified)?
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(a.is_loopback(), |v| v.is_loopback()),
        IpAddr::V4(a) => a.is_loopback(),
    }
}

/// The judgement parts a pipeline needs, together: configuration, per-app totals for the
/// current period, alerts with their baselines, and the receive-queue watch.
#[derive(Debug)]
pub struct Judge {
    pub config: Config,
    pub apps: Apps,
    pub alerter: Alerter,
    pub rx_queues: RxQueueWatch,
}

impl Judge {
    pub fn new(config: Config) -> Self {
        Self {
            apps: Apps::new(config.alerts.max_apps),
            alerter: Alerter::new(),
            rx_queues: RxQueueWatch::default(),
            config,
        }
    }

    /// Judges one flow record: assessment (returned), per-app totals, alerts (to `alerts`).
    pub fn flow(
        &mut self,
        f: &FlowRecord,
        e: &Enrichers<'_>,
        now: i64,
        alerts: &mut Vec<Alert>,
    ) -> Assessment {
        let s = Subject::from_flow(f, &self.config);
        self.subject(&s, e, now, alerts)
    }

    /// Judges one connection record.
    pub fn connection(
        &mut self,
        c: &ConnectionRecord,
        e: &Enrichers<'_>,
        now: i64,
        alerts: &mut Vec<Alert>,
    ) -> Assessment {
        let s = Subject::from_connection(c);
        self.subject(&s, e, now, alerts)
    }

    /// Judges any subject (see [`Subject`]).
    pub fn subject(
        &mut self,
        s: &Subject<'_>,
        e: &Enrichers<'_>,
        now: i64,
        alerts: &mut Vec<Alert>,
    ) -> Assessment {
        let a = assess(s, e, &self.config);
        self.apps.add(s, &a, &self.config);
        let before = alerts.len();
        self.alerter.observe(s, &a, &self.config, now, alerts);
        if alerts[before..].iter().any(|x| x.rule == Rule::NewApp) {
            self.apps.mark_new(s.app());
        }
        a
    }

    /// Feeds a socket snapshot to the receive-queue watch; sockets that just crossed the
    /// threshold add their flag to their owner's app totals and are returned.
    pub fn snapshot(&mut self, snap: &SocketSnapshot) -> Vec<(Option<String>, Flag)> {
        let found = self.rx_queues.update(snap, &self.config);
        for (app, f) in &found {
            self.apps.add_flag(app.as_deref(), f.clone());
        }
        found
    }

    /// The pipeline's tick: closes finished minutes of the baselines (spike alerts).
    pub fn tick(&mut self, now: i64, alerts: &mut Vec<Alert>) {
        self.alerter.tick(&self.config, now, alerts);
    }
}
