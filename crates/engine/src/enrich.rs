//! What the judgement code asks about a remote end, as traits the engine consumes. The
//! implementations live beside their data (the `intel` crate reads the databases and tables,
//! `os` does the network lookups); tests use small in-memory ones.
//!
//! Every lookup here is cheap and never blocks: a slow answer (a PTR query, an RDAP request) is
//! asked for in the background and reported as [`Rdns::Pending`] until it is known.

use std::net::IpAddr;

/// Where an address is and who runs it, from local databases (GeoLite2, DB-IP, ip-location-db,
/// iptoasn). Every field may be missing: a database may know the country but not the ASN.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Place {
    pub asn: Option<u32>,
    /// The AS organisation ("GitHub, Inc.", "Akamai Technologies").
    pub org: Option<String>,
    /// ISO 3166-1 alpha-2, upper case ("US").
    pub country: Option<[u8; 2]>,
    pub city: Option<String>,
}

impl Place {
    pub fn country_str(&self) -> Option<&str> {
        self.country.as_ref().and_then(|c| std::str::from_utf8(c).ok())
    }
}

/// Organisation, ASN and country of an address.
pub trait GeoLookup: Send + Sync {
    /// `None` when no database knows the address (or none is installed).
    fn place(&self, ip: IpAddr) -> Option<Place>;
}

/// What kind of service a domain belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    Streaming,
    Social,
    Messaging,
    /// Advertising and tracking.
    Ads,
    Analytics,
    Cloud,
    Cdn,
    Developer,
    /// Operating system services and software updates.
    OsUpdate,
    Gaming,
    Finance,
    Search,
    Email,
    Productivity,
    News,
    Shopping,
    Vpn,
    Other,
}

impl Category {
    pub const ALL: [Category; 18] = [
        Category::Streaming,
        Category::Social,
        Category::Messaging,
        Category::Ads,
        Category::Analytics,
        Category::Cloud,
        Category::Cdn,
        Category::Developer,
        Category::OsUpdate,
        Category::Gaming,
        Category::Finance,
        Category::Search,
        Category::Email,
        Category::Productivity,
        Category::News,
        Category::Shopping,
        Category::Vpn,
        Category::Other,
    ];
    /// Stable machine name, used in records and config ("ads", "os_update" ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Category::Streaming => "streaming",
            Category::Social => "social",
            Category::Messaging => "messaging",
            Category::Ads => "ads",
            Category::Analytics => "analytics",
            Category::Cloud => "cloud",
            Category::Cdn => "cdn",
            Category::Developer => "developer",
            Category::OsUpdate => "os_update",
            Category::Gaming => "gaming",
            Category::Finance => "finance",
            Category::Search => "search",
            Category::Email => "email",
            Category::Productivity => "productivity",
            Category::News => "news",
            Category::Shopping => "shopping",
            Category::Vpn => "vpn",
            Category::Other => "other",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Category::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// What a domain is, from the shipped suffix table, the user's additions and an optional
/// tracker list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainLabel {
    pub category: Category,
    /// Who runs it ("Google", "Meta", "Cloudflare").
    pub vendor: Option<String>,
    /// Listed as a tracker (by the table or by an EasyPrivacy-style list).
    pub tracker: bool,
}

/// Domain -> label, by the longest matching suffix.
pub trait DomainLabels: Send + Sync {
    fn label(&self, domain: &str) -> Option<DomainLabel>;
}

/// What is known of an address's PTR name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rdns {
    Name(String),
    /// Looked up, and there is none (NXDOMAIN, no PTR, or the lookup failed for good): a fact
    /// worth recording.
    NoName,
    /// Asked for; not known yet.
    Pending,
}

/// Reverse DNS with a cache. `lookup` never blocks: it answers from the cache or queues a
/// background query and says `Pending`.
pub trait ReverseDns: Send + Sync {
    fn lookup(&self, ip: IpAddr) -> Rdns;
}

/// Port -> service name ("https", "ssh"), as /etc/services has them.
pub trait Services: Send + Sync {
    /// `proto` is the IP protocol number (6 TCP, 17 UDP).
    fn name(&self, proto: u8, port: u16) -> Option<&str>;
}

/// All enrichment sources together. Each is optional: without a database the dashboard shows a
/// dash and `netvigil doctor` says how to get one.
#[derive(Default)]
pub struct Enrichers<'a> {
    pub geo: Option<&'a dyn GeoLookup>,
    pub labels: Option<&'a dyn DomainLabels>,
    pub rdns: Option<&'a dyn ReverseDns>,
    pub services: Option<&'a dyn Services>,
}

impl std::fmt::Debug for Enrichers<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrichers")
            .field("geo", &self.geo.is_some())
            .field("labels", &self.labels.is_some())
            .field("rdns", &self.rdns.is_some())
            .field("services", &self.services.is_some())
            .finish()
    }
}
