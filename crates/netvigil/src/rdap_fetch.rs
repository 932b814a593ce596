//! RDAP (whois) lookups on demand, for the dashboard's `/api/whois/{ip}`: picks the registry's
//! RDAP server from the IANA bootstrap files (RFC 9224), fetches `{server}ip/{addr}` over
//! HTTPS (`crate::https`), parses the answer with `intel::rdap` and keeps it 24 hours in
//! `intel::rdap::RdapCache` (any address of the same network is then answered from memory).
//!
//! The bootstrap files (`ipv4.json`, `ipv6.json`) are either configured files
//! ([`BootstrapSource::Files`]) or fetched once from IANA and kept in
//! `<data_dir>/rdap/` ([`BootstrapSource::Fetch`]); the file's modification time is its date,
//! and a copy older than [`BOOTSTRAP_MAX_AGE_SECS`] is fetched again (the old copy is still
//! used when that fails). Blocking: call [`Rdap::lookup`] from `spawn_blocking` or a thread.
// A configured bootstrap (`Files`), `http_status` and the free `lookup` have no caller outside
// tests yet; the dashboard calls `Rdap::lookup`.
#![cfg_attr(not(test), allow(dead_code))]

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use intel::rdap::{Bootstrap, RdapCache, RdapNetwork};
use serde::Serialize;

use crate::https::{self, Client, ErrorKind};

/// IANA's bootstrap files for IPv4 and IPv6.
pub const IANA_BOOTSTRAP: [&str; 2] = [
    "https://data.iana.org/rdap/ipv4.json",
    "https://data.iana.org/rdap/ipv6.json",
];

/// A kept bootstrap file older than this (30 days) is fetched again.
pub const BOOTSTRAP_MAX_AGE_SECS: u64 = 30 * 24 * 3600;

/// Networks kept in memory.
const CACHE_CAP: usize = 4096;

/// Where the bootstrap files come from.
#[derive(Clone, Debug)]
pub enum BootstrapSource {
    /// These files, read once (a configured copy).
    Files(Vec<PathBuf>),
    /// Fetched from these URLs once and kept in `dir` (when given) as the URL's file name.
    Fetch {
        /// The bootstrap URLs (normally [`IANA_BOOTSTRAP`]).
        urls: Vec<String>,
        /// Where the copies are kept (`<data_dir>/rdap`); `None` keeps them in memory only.
        dir: Option<PathBuf>,
    },
}

/// What the registry says about an address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Whois {
    /// The address asked about.
    pub ip: IpAddr,
    /// The organisation holding the network (registrant, else the first organisation).
    pub org: Option<String>,
    /// The network as CIDR blocks (`192.0.2.0/24`); empty when the answer gives only a range.
    pub cidrs: Vec<String>,
    /// The first and last address of the network, when given.
    pub range: Option<(IpAddr, IpAddr)>,
    /// ISO 3166-1 alpha-2 country code, upper case.
    pub country: Option<String>,
    /// The network's name (`TEST-NET-1`).
    pub name: Option<String>,
    /// The registry's handle for the network.
    pub handle: Option<String>,
    /// The RDAP server that answered (`None` when answered from the cache).
    pub server: Option<String>,
    /// Answered from the 24-hour cache.
    pub cached: bool,
}

impl Whois {
    fn from_network(ip: IpAddr, n: &RdapNetwork, server: Option<String>, cached: bool) -> Whois {
        Whois {
            ip,
            org: n.org.clone(),
            cidrs: n.cidrs.iter().map(|(p, l)| format!("{p}/{l}")).collect(),
            range: n.start.zip(n.end),
            country: n.country.map(|c| String::from_utf8_lossy(&c).into_owned()),
            name: n.name.clone(),
            handle: n.handle.clone(),
            server,
            cached,
        }
    }
}

/// Why a lookup failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WhoisError {
    /// A private, loopback, link-local or unspecified address: no registry holds it.
    NotPublic(IpAddr),
    /// The bootstrap files could not be read or fetched.
    Bootstrap(String),
    /// No registry is listed for the address in the bootstrap files.
    NoServer(IpAddr),
    /// The registry has no record of the address (HTTP 404).
    NotFound {
        /// The address.
        ip: IpAddr,
        /// The server asked.
        server: String,
    },
    /// The request to the registry failed.
    Fetch(https::Error),
    /// The registry's answer is not an RDAP IP network.
    Parse {
        /// The server asked.
        server: String,
        /// What is wrong with the answer.
        problem: String,
    },
}

impl WhoisError {
    /// The HTTP status a web route should answer with: 400 (not a public address), 404 (no
    /// registry or no record), 502 (the registry failed), 503 (no bootstrap data).
    pub fn http_status(&self) -> u16 {
        match self {
            WhoisError::NotPublic(_) => 400,
            WhoisError::NoServer(_) | WhoisError::NotFound { .. } => 404,
            WhoisError::Fetch(_) | WhoisError::Parse { .. } => 502,
            WhoisError::Bootstrap(_) => 503,
        }
    }
}

impl std::fmt::Display for WhoisError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WhoisError::NotPublic(ip) => {
                write!(f, "{ip} is a private or local address: no registry holds it")
            }
            WhoisError::Bootstrap(e) => write!(f, "no RDAP bootstrap data: {e}"),
            WhoisError::NoServer(ip) => {
                write!(f, "no RDAP server is listed for {ip} in the IANA bootstrap")
            }
            WhoisError::NotFound { ip, server } => {
                write!(f, "the RDAP server {server} has no record of {ip}")
            }
            WhoisError::Fetch(e) => write!(f, "RDAP request failed: {e}"),
            WhoisError::Parse { server, problem } => {
                write!(f, "the RDAP server {server} sent an unusable answer: {problem}")
            }
        }
    }
}

impl std::error::Error for WhoisError {}

/// RDAP lookups with their bootstrap and cache; share one (`Arc<Rdap>`) across requests.
#[derive(Debug)]
pub struct Rdap {
    client: Client,
    source: BootstrapSource,
    bootstrap: Mutex<Option<Bootstrap>>,
    cache: Mutex<RdapCache>,
}

impl Rdap {
    /// Lookups against IANA's bootstrap, kept in `<data_dir>/rdap/` when a data directory is
    /// known, trusting the system's root certificates (15 s per request, 1 MiB answers).
    pub fn new(data_dir: Option<&Path>) -> Result<Rdap, WhoisError> {
        let client = Client::new().map_err(WhoisError::Fetch)?;
        Ok(Rdap::with(
            client,
            BootstrapSource::Fetch {
                urls: IANA_BOOTSTRAP.iter().map(|s| s.to_string()).collect(),
                dir: data_dir.map(|d| d.join("rdap")),
            },
        ))
    }

    /// Lookups with a given client and bootstrap source.
    pub fn with(client: Client, source: BootstrapSource) -> Rdap {
        Rdap {
            client: client
                .with_timeouts(Duration::from_secs(5), Duration::from_secs(15))
                .with_max_body(1 << 20),
            source,
            bootstrap: Mutex::new(None),
            cache: Mutex::new(RdapCache::new(CACHE_CAP)),
        }
    }

    /// What the registry says about `ip`, from the cache when fresh.
    pub fn lookup(&self, ip: IpAddr) -> Result<Whois, WhoisError> {
        self.lookup_at(ip, unix_now())
    }

    /// [`Rdap::lookup`] at `now` (seconds since the Unix epoch) for the cache.
    pub fn lookup_at(&self, ip: IpAddr, now: u64) -> Result<Whois, WhoisError> {
        let ip = ip.to_canonical();
        if !is_public(ip) {
            return Err(WhoisError::NotPublic(ip));
        }
        if let Some(n) = lock(&self.cache).get(ip, now) {
            return Ok(Whois::from_network(ip, n, None, true));
        }
        let server = {
            let mut b = lock(&self.bootstrap);
            if b.is_none() {
                *b = Some(self.load_bootstrap()?);
            }
            b.as_ref()
                .and_then(|b| b.server_for(ip))
                .map(str::to_string)
                .ok_or(WhoisError::NoServer(ip))?
        };
        let url = intel::rdap::query_url(&server, ip);
        let resp = self.client.get(&url).map_err(|e| match e.kind {
            ErrorKind::Status { code: 404, .. } => WhoisError::NotFound {
                ip,
                server: server.clone(),
            },
            _ => WhoisError::Fetch(e),
        })?;
        let net = intel::rdap::parse_ip_network(&resp.text()).map_err(|problem| WhoisError::Parse {
            server: server.clone(),
            problem,
        })?;
        let whois = Whois::from_network(ip, &net, Some(server), false);
        if net.contains(ip) {
            lock(&self.cache).insert(net, now);
        }
        Ok(whois)
    }

    fn load_bootstrap(&self) -> Result<Bootstrap, WhoisError> {
        let texts: Vec<(String, String)> = match &self.source {
            BootstrapSource::Files(paths) => paths
                .iter()
                .map(|p| {
                    std::fs::read_to_string(p)
                        .map(|t| (p.display().to_string(), t))
                        .map_err(|e| WhoisError::Bootstrap(format!("cannot read {}: {e}", p.display())))
                })
                .collect::<Result<_, _>>()?,
            BootstrapSource::Fetch { urls, dir } => urls
                .iter()
                .map(|u| self.fetch_bootstrap(u, dir.as_deref()).map(|t| (u.clone(), t)))
                .collect::<Result<_, _>>()?,
        };
        let mut all: Option<Bootstrap> = None;
        for (from, text) in texts {
            let b = Bootstrap::parse(&text).map_err(|e| WhoisError::Bootstrap(format!("{from}: {e}")))?;
            match &mut all {
                Some(a) => a.merge(b),
                None => all = Some(b),
            }
        }
        all.ok_or_else(|| WhoisError::Bootstrap("no bootstrap file is configured".into()))
    }

    /// One bootstrap file: the kept copy when fresh, else fetched (and kept); a stale copy
    /// when the fetch fails.
    fn fetch_bootstrap(&self, url: &str, dir: Option<&Path>) -> Result<String, WhoisError> {
        let file = dir.map(|d| {
            let name = url.rsplit('/').next().filter(|n| !n.is_empty());
            d.join(name.unwrap_or("bootstrap.json"))
        });
        let kept = file.as_ref().and_then(|f| {
            let age = std::fs::metadata(f)
                .and_then(|m| m.modified())
                .ok()?
                .elapsed()
                .unwrap_or_default();
            Some((std::fs::read_to_string(f).ok()?, age))
        });
        if let Some((text, age)) = &kept
            && age.as_secs() < BOOTSTRAP_MAX_AGE_SECS
        {
            return Ok(text.clone());
        }
        match self.client.get(url) {
            Ok(r) => {
                let text = r.text();
                Bootstrap::parse(&text).map_err(|e| WhoisError::Bootstrap(format!("{url}: {e}")))?;
                if let (Some(f), Some(d)) = (&file, dir) {
                    // Best effort: a read-only data directory only costs a fetch next time.
                    let tmp = f.with_extension("json.tmp");
                    let _ = std::fs::create_dir_all(d)
                        .and_then(|()| std::fs::write(&tmp, &text))
                        .and_then(|()| std::fs::rename(&tmp, f));
                }
                Ok(text)
            }
            Err(e) => match kept {
                Some((text, _)) => Ok(text),
                None => Err(WhoisError::Bootstrap(format!("cannot fetch {url}: {e}"))),
            },
        }
    }
}

/// What the registry says about `ip` (the function behind `/api/whois/{ip}`).
pub fn lookup(rdap: &Rdap, ip: IpAddr) -> Result<Whois, WhoisError> {
    rdap.lookup(ip)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Addresses some registry may hold (not private, loopback, link-local, unspecified,
/// multicast, or unique-local IPv6).
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            !(a.is_private()
                || a.is_loopback()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_multicast()
                || a.is_broadcast()
                || a.octets()[0] == 100 && (a.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(a) => {
            let s = a.segments()[0];
            !(a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (s & 0xfe00) == 0xfc00
                || (s & 0xffc0) == 0xfe80)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::https::testing::{Ca, Server, client, ok};

    /// Shaped like an ARIN answer for the IPv4 documentation range.
    const V4_ANSWER: &str = r#"{
      "rdapConformance": ["rdap_level_0", "cidr0", "nro_rdap_profile_0"],
      "objectClassName": "ip network", "handle": "NET-192-0-2-0-1",
      "startAddress": "192.0.2.0", "endAddress": "192.0.2.255", "ipVersion": "v4",
      "name": "TEST-NET-1", "type": "IANA SPECIAL USE", "country": "us",
      "cidr0_cidrs": [{"v4prefix": "192.0.2.0", "length": 24}],
      "entities": [{"objectClassName": "entity", "handle": "IANA", "roles": ["registrant"],
        "vcardArray": ["vcard", [["version", {}, "text", "4.0"],
          ["fn", {}, "text", "Internet Assigned Numbers Authority"], ["kind", {}, "text", "org"]]]}],
      "links": [{"rel": "self", "href": "https://rdap.arin.net/registry/ip/192.0.2.0"}]
    }"#;

    /// Shaped like a RIPE answer for the IPv6 documentation range (cidr only, no country).
    const V6_ANSWER: &str = r#"{"objectClassName":"ip network","handle":"2001:db8::/32",
      "name":"IPV6-DOC-AP","cidr0_cidrs":[{"v6prefix":"2001:db8::","length":32}],
      "startAddress":"2001:db8::","endAddress":"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
      "entities":[{"roles":["technical"],"vcardArray":["vcard",[["fn",{},"text","Documentation Org"],["kind",{},"text","org"]]]}]}"#;

    fn bootstrap(port: u16, v6: bool) -> String {
        let (range, other) = if v6 {
            ("2001:db8::/32", "2001:db9::/32")
        } else {
            ("192.0.2.0/24", "198.51.100.0/24")
        };
        format!(
            r#"{{"version":"1.0","publication":"2026-01-01T00:00:00Z","description":"test",
              "services":[[["{range}"],["http://127.0.0.1:{port}/","https://127.0.0.1:{port}/"]],
                          [["{other}"],["https://127.0.0.1:{port}/other/"]]]}}"#
        )
    }

    /// A loopback RDAP registry (and bootstrap host) counting what it is asked.
    fn registry(ca: &Ca) -> (Server, Arc<AtomicUsize>) {
        let boots = Arc::new(AtomicUsize::new(0));
        let b2 = boots.clone();
        let port_cell = Arc::new(std::sync::OnceLock::<u16>::new());
        let pc = port_cell.clone();
        let srv = Server::start(
            Some(ca.server_cert(&["127.0.0.1"], false)),
            Box::new(move |req| {
                let port = *pc.get().unwrap();
                match req.path.as_str() {
                    "/ip/192.0.2.77" => ok("application/rdap+json", V4_ANSWER.as_bytes()),
                    "/ip/2001:db8::5" => ok("application/rdap+json", V6_ANSWER.as_bytes()),
                    "/boot/ipv4.json" | "/boot/ipv6.json" => {
                        b2.fetch_add(1, Ordering::SeqCst);
                        let v6 = req.path.contains("ipv6");
                        ok("application/json", bootstrap(port, v6).as_bytes())
                    }
                    "/other/ip/198.51.100.1" => b"HTTP/1.1 404 Not Found\r\nContent-Type: application/rdap+json\r\nContent-Length: 41\r\n\r\n{\"errorCode\":404,\"title\":\"Not Found\"}    ".to_vec(),
                    _ => b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n<html>".to_vec(),
                }
            }),
        );
        port_cell.set(srv.port).unwrap();
        (srv, boots)
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "netvigil-rdap-{tag}-{}-{}",
            std::process::id(),
            unix_now()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn looks_up_v4_and_v6_over_tls_then_answers_from_the_cache() {
        let ca = Ca::new();
        let (srv, _) = registry(&ca);
        let dir = temp_dir("files");
        let (b4, b6) = (dir.join("ipv4.json"), dir.join("ipv6.json"));
        std::fs::write(&b4, bootstrap(srv.port, false)).unwrap();
        std::fs::write(&b6, bootstrap(srv.port, true)).unwrap();
        let rdap = Rdap::with(client(&ca), BootstrapSource::Files(vec![b4, b6]));
        let t0 = 1_800_000_000;

        let w = lookup(&rdap, "192.0.2.77".parse().unwrap()).unwrap();
        assert_eq!(w.org.as_deref(), Some("Internet Assigned Numbers Authority"));
        assert_eq!(w.cidrs, ["192.0.2.0/24"]);
        assert_eq!(w.country.as_deref(), Some("US"));
        assert_eq!(w.name.as_deref(), Some("TEST-NET-1"));
        // The https server was preferred over the http one.
        assert_eq!(
            w.server.as_deref(),
            Some(format!("https://127.0.0.1:{}/", srv.port).as_str())
        );
        assert!(!w.cached);

        let w6 = rdap.lookup_at("2001:db8::5".parse().unwrap(), t0).unwrap();
        assert_eq!(
            (w6.org.as_deref(), w6.cidrs.as_slice(), w6.country.as_deref()),
            (
                Some("Documentation Org"),
                &["2001:db8::/32".to_string()][..],
                None
            )
        );
        // Another address of the same network within a day: no request.
        let before = srv.seen().len();
        let again = rdap
            .lookup_at("2001:db8:1::9".parse().unwrap(), t0 + 3600)
            .unwrap();
        assert!(again.cached && again.name.as_deref() == Some("IPV6-DOC-AP"));
        assert_eq!(srv.seen().len(), before);
        // A day later it is asked again (and this address is unknown to the registry).
        let e = rdap
            .lookup_at("2001:db8:1::9".parse().unwrap(), t0 + 24 * 3600)
            .unwrap_err();
        assert!(matches!(e, WhoisError::Parse { .. }), "{e}");
        assert_eq!(srv.seen().len(), before + 1);
        // JSON for the web route.
        let j = serde_json::to_value(&w).unwrap();
        assert_eq!(j["cidrs"][0], "192.0.2.0/24");
        assert_eq!(j["org"], "Internet Assigned Numbers Authority");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bootstrap_is_fetched_once_and_kept_in_the_data_dir() {
        let ca = Ca::new();
        let (srv, boots) = registry(&ca);
        let dir = temp_dir("fetch");
        let source = BootstrapSource::Fetch {
            urls: vec![
                format!("https://127.0.0.1:{}/boot/ipv4.json", srv.port),
                format!("https://127.0.0.1:{}/boot/ipv6.json", srv.port),
            ],
            dir: Some(dir.join("rdap")),
        };
        let rdap = Rdap::with(client(&ca), source.clone());
        let w = rdap.lookup("192.0.2.77".parse().unwrap()).unwrap();
        assert_eq!(w.name.as_deref(), Some("TEST-NET-1"));
        rdap.lookup("2001:db8::5".parse().unwrap()).unwrap();
        assert_eq!(boots.load(Ordering::SeqCst), 2);
        let kept = std::fs::read_to_string(dir.join("rdap/ipv4.json")).unwrap();
        assert!(kept.contains("192.0.2.0/24"));
        // A new instance (a restart) reads the kept copies: no fetch.
        let again = Rdap::with(client(&ca), source.clone());
        again.lookup("192.0.2.77".parse().unwrap()).unwrap();
        assert_eq!(boots.load(Ordering::SeqCst), 2);
        // A copy older than 30 days is fetched again.
        let old = SystemTime::now() - Duration::from_secs(BOOTSTRAP_MAX_AGE_SECS + 60);
        for f in ["ipv4.json", "ipv6.json"] {
            std::fs::File::options()
                .write(true)
                .open(dir.join("rdap").join(f))
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        Rdap::with(client(&ca), source)
            .lookup("192.0.2.77".parse().unwrap())
            .unwrap();
        assert_eq!(boots.load(Ordering::SeqCst), 4);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_default_asks_iana_and_keeps_copies_in_the_data_dir() {
        // Built only: nothing is fetched here (a lookup would be the first fetch).
        match Rdap::new(Some(Path::new("/var/lib/netvigil"))) {
            Ok(r) => match &r.source {
                BootstrapSource::Fetch { urls, dir } => {
                    assert_eq!(urls, &IANA_BOOTSTRAP.map(str::to_string));
                    assert_eq!(dir.as_deref(), Some(Path::new("/var/lib/netvigil/rdap")));
                }
                other => panic!("{other:?}"),
            },
            Err(e) => assert!(e.to_string().contains("ca-certificates"), "{e}"),
        }
    }

    #[test]
    fn errors_say_what_happened() {
        let ca = Ca::new();
        let (srv, _) = registry(&ca);
        let dir = temp_dir("errors");
        let b4 = dir.join("ipv4.json");
        std::fs::write(&b4, bootstrap(srv.port, false)).unwrap();
        let rdap = Rdap::with(client(&ca), BootstrapSource::Files(vec![b4.clone()]));
        let e = rdap.lookup("10.1.2.3".parse().unwrap()).unwrap_err();
        assert_eq!((e.http_status(), e.to_string().contains("private")), (400, true));
        let e = rdap.lookup("203.0.113.5".parse().unwrap()).unwrap_err();
        assert_eq!(e, WhoisError::NoServer("203.0.113.5".parse().unwrap()));
        let e = rdap.lookup("198.51.100.1".parse().unwrap()).unwrap_err();
        assert!(
            matches!(e, WhoisError::NotFound { .. }) && e.http_status() == 404,
            "{e}"
        );
        // A registry whose certificate this client does not trust.
        let stranger = Rdap::with(client(&Ca::new()), BootstrapSource::Files(vec![b4]));
        let e = stranger.lookup("192.0.2.77".parse().unwrap()).unwrap_err();
        assert!(
            e.to_string().contains("unknown issuer") && e.http_status() == 502,
            "{e}"
        );
        // A missing bootstrap file.
        let none = Rdap::with(
            client(&ca),
            BootstrapSource::Files(vec![dir.join("missing.json")]),
        );
        let e = none.lookup("192.0.2.77".parse().unwrap()).unwrap_err();
        assert!(
            e.to_string().contains("missing.json") && e.http_status() == 503,
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
