//! In-memory enrichers and record builders shared by the judgement tests.
#![allow(dead_code)] // each test file uses its own subset

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use engine::connections::{ConnEvent, ConnectionRecord, Direction};
use engine::enrich::{
    Category, DomainLabel, DomainLabels, Enrichers, GeoLookup, Place, Rdns, ReverseDns, Services,
};
use engine::record::{AppBy, AppInfo, ClientBy, DirCounters, DomainSource, EndReason, FlowState};
use engine::sockets::{ProcessInfo, SockProto, TcpInfo, TcpState};
use engine::{Endpoint, FlowRecord};

pub const SEC: i64 = 1_000_000_000;
/// 2024-03-01T00:00:00Z.
pub const T0: i64 = 1_709_251_200 * SEC;

/// Places keyed by address.
#[derive(Default)]
pub struct FakeGeo(pub HashMap<IpAddr, Place>);

impl GeoLookup for FakeGeo {
    fn place(&self, ip: IpAddr) -> Option<Place> {
        self.0.get(&ip).cloned()
    }
}

/// Labels by longest suffix.
#[derive(Default)]
pub struct FakeLabels(pub Vec<(String, DomainLabel)>);

impl DomainLabels for FakeLabels {
    fn label(&self, domain: &str) -> Option<DomainLabel> {
        self.0
            .iter()
            .filter(|(s, _)| engine::judge::has_suffix(domain, s))
            .max_by_key(|(s, _)| s.len())
            .map(|(_, l)| l.clone())
    }
}

/// PTR answers keyed by address, with a default for the rest.
pub struct FakeRdns(pub HashMap<IpAddr, Rdns>, pub Rdns);

impl ReverseDns for FakeRdns {
    fn lookup(&self, ip: IpAddr) -> Rdns {
        self.0.get(&ip).cloned().unwrap_or_else(|| self.1.clone())
    }
}

#[derive(Default)]
pub struct FakeServices(pub HashMap<(u8, u16), String>);

impl Services for FakeServices {
    fn name(&self, proto: u8, port: u16) -> Option<&str> {
        self.0.get(&(proto, port)).map(String::as_str)
    }
}

pub fn place(asn: u32, org: &str, cc: &str) -> Place {
    let b = cc.as_bytes();
    Place {
        asn: Some(asn),
        org: Some(org.into()),
        country: Some([b[0], b[1]]),
        city: None,
    }
}

pub fn label(cat: Category, vendor: Option<&str>, tracker: bool) -> DomainLabel {
    DomainLabel {
        category: cat,
        vendor: vendor.map(str::to_string),
        tracker,
    }
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The enrichers of the table tests.
pub struct World {
    pub geo: FakeGeo,
    pub labels: FakeLabels,
    pub rdns: FakeRdns,
    pub services: FakeServices,
}

impl World {
    pub fn new() -> Self {
        let mut geo = FakeGeo::default();
        geo.0
            .insert(ip("140.82.112.3"), place(36459, "GitHub, Inc.", "US"));
        geo.0
            .insert(ip("203.0.113.7"), place(14061, "DigitalOcean, LLC", "NL"));
        geo.0
            .insert(ip("198.51.100.1"), place(16509, "Amazon.com, Inc.", "US"));
        geo.0
            .insert(ip("93.184.216.34"), place(15133, "Edgecast Inc.", "US"));
        geo.0
            .insert(ip("2a00:1450:4001::1"), place(15169, "Google LLC", "DE"));
        let labels = FakeLabels(vec![
            (
                "github.com".into(),
                label(Category::Developer, Some("GitHub"), false),
            ),
            (
                "doubleclick.net".into(),
                label(Category::Ads, Some("Google"), true),
            ),
            (
                "google-analytics.com".into(),
                label(Category::Analytics, Some("Google"), true),
            ),
            ("facebook.net".into(), label(Category::Social, Some("Meta"), true)),
            (
                "cdn.example".into(),
                label(Category::Cdn, Some("Example CDN"), true),
            ),
            (
                "scdn.co".into(),
                label(Category::Streaming, Some("Spotify"), false),
            ),
            ("mullvad.net".into(), label(Category::Vpn, Some("Mullvad"), false)),
        ]);
        let mut r = HashMap::new();
        r.insert(ip("203.0.113.7"), Rdns::NoName);
        r.insert(ip("198.51.100.9"), Rdns::Pending);
        r.insert(
            ip("198.51.100.1"),
            Rdns::Name("ec2-198-51-100-1.compute.amazonaws.com".into()),
        );
        let rdns = FakeRdns(r, Rdns::Name("host.example.net".into()));
        let mut services = FakeServices::default();
        services.0.insert((6, 5432), "postgresql".into());
        Self {
            geo,
            labels,
            rdns,
            services,
        }
    }
    pub fn enrichers(&self) -> Enrichers<'_> {
        Enrichers {
            geo: Some(&self.geo),
            labels: Some(&self.labels),
            rdns: Some(&self.rdns),
            services: Some(&self.services),
        }
    }
}

/// A packaged program.
pub fn prog(name: &str) -> ProcessInfo {
    ProcessInfo {
        pid: 4242,
        name: name.into(),
        exe: Some(PathBuf::from(format!("/usr/bin/{name}"))),
        package: Some(name.into()),
        package_checked: true,
        ..ProcessInfo::default()
    }
}

/// A flow from `client` to `server` ("ip:port" each) over `proto`, with bytes each way.
pub fn flow(proto: u8, client: &str, server: &str, out: u64, inn: u64) -> FlowRecord {
    let c: SocketAddr = client.parse().unwrap();
    let s: SocketAddr = server.parse().unwrap();
    FlowRecord {
        id: 1,
        start: T0,
        end: T0 + 2 * SEC,
        proto,
        client: Endpoint {
            ip: c.ip(),
            port: c.port(),
        },
        server: Endpoint {
            ip: s.ip(),
            port: s.port(),
        },
        vlan: [0, 0],
        client_by: ClientBy::Syn,
        state: FlowState::Closed,
        to_server: DirCounters {
            packets: 10,
            bytes: out,
            payload_bytes: out,
        },
        to_client: DirCounters {
            packets: 10,
            bytes: inn,
            payload_bytes: inn,
        },
        ended_by: EndReason::IdleTimeout,
        app: AppInfo::default(),
        process: None,
        device: None,
        iface: None,
    }
}

pub fn with_app(mut f: FlowRecord, proto: &'static str, domain: Option<(&str, DomainSource)>) -> FlowRecord {
    f.app.set_app(proto, AppBy::Content);
    if let Some((d, src)) = domain {
        f.app.set_domain(d, src);
    }
    f
}

pub fn owned(mut f: FlowRecord, p: ProcessInfo) -> FlowRecord {
    f.process = Some(Box::new(p));
    f
}

/// A connection event.
pub fn conn(
    event: ConnEvent,
    dir: Option<Direction>,
    local: &str,
    remote: &str,
    p: Option<ProcessInfo>,
    tcp: Option<TcpInfo>,
) -> ConnectionRecord {
    ConnectionRecord {
        ts: T0,
        event,
        proto: SockProto::Tcp,
        direction: dir,
        local: local.parse().unwrap(),
        remote: remote.parse().unwrap(),
        state: Some(if event == ConnEvent::ListeningOnAll {
            TcpState::Listen
        } else {
            TcpState::Established
        }),
        process: p,
        tcp,
        uid: 1000,
        inode: 7,
    }
}

/// The shared captures (../shared/pcaps beside the checkout). Panics when they are missing and
/// CI=true; otherwise returns None so a developer without them sees a note, not a failure.
pub fn shared_pcaps() -> Option<PathBuf> {
    let dir = std::env::var_os("NETVIGIL_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
        .join("pcaps");
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "{} is missing: CI must run with ../shared beside the checkout",
            dir.display()
        );
    }
    eprintln!("note: {} is missing; skipping this test", dir.display());
    None
}

/// Every record of a capture, through the engine (default configuration).
pub fn read_capture(path: &Path) -> Vec<engine::Record> {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut r = wire::capture::SliceReader::new(&data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut e = engine::Engine::new(engine::EngineConfig::default());
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        let Ok(p) = p else { break };
        e.ingest(
            &engine::Frame {
                ts: p.ts_nanos,
                link: p.link,
                orig_len: p.orig_len,
                data: p.data,
            },
            &mut out,
        );
    }
    e.finish(&mut out);
    out
}
