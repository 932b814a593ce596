//! Reverse DNS without libc: a small stub resolver that asks the system's nameservers for PTR
//! records over UDP, in the background, with a cache. Implements
//! [`engine::enrich::ReverseDns`]: [`Resolver::lookup`] never blocks.
//!
//! - `/etc/hosts` is read once (a reverse map: the first name of the first line for an
//!   address); an address it names is answered from it and never queried.
//! - Nameservers come from `/etc/resolv.conf` (`nameserver` lines, at most 3, port 53). As an
//!   extension (for tests and local resolvers on other ports) a `nameserver` may carry a port:
//!   `nameserver 127.0.0.1:5353`, `nameserver [::1]:5353`. [`RdnsConfig::nameservers`] overrides
//!   the file. `options` lines are not read: timeouts and attempts are [`RdnsConfig`]'s.
//! - Queries are built here and answers parsed by `wire::dns::parse`; an answer counts only if
//!   its id, the QR bit and the question (name, PTR, IN) match; anything else on the socket is
//!   ignored until the attempt's timeout. A CNAME chain (RFC 2317 classless delegation) is
//!   followed within the answer.
//! - Outcomes: a PTR name -> [`Rdns::Name`]; NXDOMAIN or an answer without PTR ->
//!   [`Rdns::NoName`], cached for [`RdnsConfig::ttl`] like a name; every server timing out,
//!   SERVFAIL/REFUSED, or a truncated answer without the record (no TCP fallback) after
//!   [`RdnsConfig::attempts`] rounds -> also [`Rdns::NoName`] (a lookup that "failed for good",
//!   as the trait says) but cached only for [`RdnsConfig::failure_ttl`], so a passing outage does
//!   not stick for ten minutes.
//! - 1–2 worker threads take addresses from a bounded queue; an address being looked up is
//!   asked once however often [`Resolver::lookup`] is called (in-flight de-duplication); a full
//!   queue answers `Pending` without queueing (counted; the next call tries again).
//! - The cache holds at most [`RdnsConfig::capacity`] addresses: expired entries go first, then
//!   those closest to expiry. Its clock is injectable ([`Clock`]) for tests; the network
//!   timeouts use the real clock.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use engine::enrich::{Rdns, ReverseDns};
use wire::dns::{self, RData, RrType};

/// Settings of a [`Resolver`].
#[derive(Clone, Debug)]
pub struct RdnsConfig {
    /// Reverse map of names (default `/etc/hosts`); a missing file is an empty map.
    pub hosts_path: PathBuf,
    /// Where the nameservers are (default `/etc/resolv.conf`).
    pub resolv_conf_path: PathBuf,
    /// Nameservers to use instead of the resolv.conf ones.
    pub nameservers: Option<Vec<SocketAddr>>,
    /// How long to wait for one server's answer (default 1.5 s).
    pub timeout: Duration,
    /// Rounds over all servers before giving up (default 2).
    pub attempts: u32,
    /// How long a name or "no name" is kept (default 10 min).
    pub ttl: Duration,
    /// How long a failed lookup (timeouts, SERVFAIL) is kept as "no name" (default 1 min).
    pub failure_ttl: Duration,
    /// Addresses kept at most (default 50,000).
    pub capacity: usize,
    /// Worker threads, 1 or 2 (default 2).
    pub threads: usize,
    /// Addresses waiting at most (default 1024).
    pub queue: usize,
}

impl Default for RdnsConfig {
    fn default() -> Self {
        RdnsConfig {
            hosts_path: "/etc/hosts".into(),
            resolv_conf_path: "/etc/resolv.conf".into(),
            nameservers: None,
            timeout: Duration::from_millis(1500),
            attempts: 2,
            ttl: Duration::from_secs(600),
            failure_ttl: Duration::from_secs(60),
            capacity: 50_000,
            threads: 2,
            queue: 1024,
        }
    }
}

/// Why a resolver could not start.
#[derive(Debug)]
pub enum RdnsError {
    /// No nameserver: resolv.conf unreadable or without `nameserver` lines.
    NoNameserver { path: PathBuf, why: String },
    /// A worker thread could not be started.
    Thread(io::Error),
}

impl std::fmt::Display for RdnsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RdnsError::NoNameserver { path, why } => write!(
                f,
                "reverse DNS: no nameserver in {}: {why}; add a `nameserver` line or give \
                 nameservers in the config",
                path.display()
            ),
            RdnsError::Thread(e) => write!(f, "reverse DNS: cannot start a worker thread: {e}"),
        }
    }
}

impl std::error::Error for RdnsError {}

/// The cache's clock.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

/// The real monotonic clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// Counters of a resolver's work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RdnsStats {
    /// Addresses queued for a query.
    pub queued: u64,
    /// Lookups that ended with a name.
    pub names: u64,
    /// Lookups that ended with NXDOMAIN or no PTR record.
    pub no_name: u64,
    /// Lookups that failed (timeouts, SERVFAIL, truncation) on every server.
    pub failed: u64,
    /// Lookups not queued because the queue was full.
    pub dropped: u64,
    /// Datagrams ignored: wrong id, wrong question, not a response, unparseable.
    pub ignored_datagrams: u64,
}

#[derive(Default)]
struct Counters {
    queued: AtomicU64,
    names: AtomicU64,
    no_name: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    ignored: AtomicU64,
}

enum Slot {
    InFlight,
    Done { rdns: Rdns, expires: Instant },
}

struct Shared {
    cfg: RdnsConfig,
    clock: Arc<dyn Clock>,
    hosts: HashMap<IpAddr, String>,
    servers: Vec<SocketAddr>,
    cache: Mutex<HashMap<IpAddr, Slot>>,
    counters: Counters,
}

impl Shared {
    fn cache(&self) -> MutexGuard<'_, HashMap<IpAddr, Slot>> {
        // A worker that panicked while holding the lock leaves a usable map.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A background PTR resolver with a cache (see the module docs).
pub struct Resolver {
    shared: Arc<Shared>,
    tx: SyncSender<IpAddr>,
    workers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("servers", &self.shared.servers)
            .field("hosts", &self.shared.hosts.len())
            .field("workers", &self.workers.len())
            .finish()
    }
}

impl Resolver {
    /// Reads hosts and resolv.conf and starts the workers.
    pub fn new(cfg: RdnsConfig) -> Result<Resolver, RdnsError> {
        Self::with_clock(cfg, Arc::new(SystemClock))
    }

    /// Same, with the cache's clock given (tests).
    pub fn with_clock(cfg: RdnsConfig, clock: Arc<dyn Clock>) -> Result<Resolver, RdnsError> {
        let hosts = std::fs::read_to_string(&cfg.hosts_path)
            .map(|t| parse_hosts(&t))
            .unwrap_or_default();
        let servers = match &cfg.nameservers {
            Some(s) => s.clone(),
            None => {
                let text =
                    std::fs::read_to_string(&cfg.resolv_conf_path).map_err(|e| RdnsError::NoNameserver {
                        path: cfg.resolv_conf_path.clone(),
                        why: e.to_string(),
                    })?;
                parse_resolv_conf(&text)
            }
        };
        if servers.is_empty() {
            return Err(RdnsError::NoNameserver {
                path: cfg.resolv_conf_path.clone(),
                why: "no usable `nameserver` line".into(),
            });
        }
        let (tx, rx) = sync_channel::<IpAddr>(cfg.queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let threads = cfg.threads.clamp(1, 2);
        let shared = Arc::new(Shared {
            cfg,
            clock,
            hosts,
            servers,
            cache: Mutex::new(HashMap::new()),
            counters: Counters::default(),
        });
        let mut workers = Vec::new();
        for i in 0..threads {
            let (s, r) = (Arc::clone(&shared), Arc::clone(&rx));
            let h = std::thread::Builder::new()
                .name(format!("netvigil-rdns-{i}"))
                .spawn(move || worker(&s, &r))
                .map_err(RdnsError::Thread)?;
            workers.push(h);
        }
        Ok(Resolver { shared, tx, workers })
    }

    /// The nameservers asked, in order.
    pub fn nameservers(&self) -> &[SocketAddr] {
        &self.shared.servers
    }

    /// Addresses in the cache (answered and in flight).
    pub fn cached(&self) -> usize {
        self.shared.cache().len()
    }

    /// Counters so far.
    pub fn stats(&self) -> RdnsStats {
        let c = &self.shared.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RdnsStats {
            queued: l(&c.queued),
            names: l(&c.names),
            no_name: l(&c.no_name),
            failed: l(&c.failed),
            dropped: l(&c.dropped),
            ignored_datagrams: l(&c.ignored),
        }
    }

    /// Stops the workers after the lookups they are doing (at most `attempts` x servers x
    /// timeout) and waits for them.
    pub fn shutdown(self) {
        let Resolver { tx, workers, .. } = self;
        drop(tx);
        for w in workers {
            let _ = w.join();
        }
    }
}

impl ReverseDns for Resolver {
    fn lookup(&self, ip: IpAddr) -> Rdns {
        let ip = ip.to_canonical();
        if let Some(name) = self.shared.hosts.get(&ip) {
            return Rdns::Name(name.clone());
        }
        let now = self.shared.clock.now();
        let mut cache = self.shared.cache();
        match cache.get(&ip) {
            Some(Slot::InFlight) => return Rdns::Pending,
            Some(Slot::Done { rdns, expires }) if *expires > now => return rdns.clone(),
            _ => {}
        }
        if cache.len() >= self.shared.cfg.capacity.max(1) && !cache.contains_key(&ip) {
            evict(&mut cache, now, self.shared.cfg.capacity.max(1));
        }
        match self.tx.try_send(ip) {
            Ok(()) => {
                cache.insert(ip, Slot::InFlight);
                self.shared.counters.queued.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        Rdns::Pending
    }
}

/// Makes room: expired entries first, then the answered ones closest to expiry, down to 7/8 of
/// the capacity. In-flight entries stay (there are at most queue + threads of them).
fn evict(cache: &mut HashMap<IpAddr, Slot>, now: Instant, capacity: usize) {
    cache.retain(|_, s| !matches!(s, Slot::Done { expires, .. } if *expires <= now));
    let target = capacity - capacity / 8 - 1;
    if cache.len() <= target {
        return;
    }
    let mut done: Vec<(Instant, IpAddr)> = cache
        .iter()
        .filter_map(|(ip, s)| match s {
            Slot::Done { expires, .. } => Some((*expires, *ip)),
            Slot::InFlight => None,
        })
        .collect();
    done.sort_unstable();
    let excess = cache.len() - target;
    for (_, ip) in done.into_iter().take(excess) {
        cache.remove(&ip);
    }
}

enum Outcome {
    Name(String),
    NoName,
    Failed,
}

fn worker(shared: &Shared, rx: &Mutex<Receiver<IpAddr>>) {
    let ids = std::collections::hash_map::RandomState::new();
    let mut n: u64 = 0;
    loop {
        let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok(ip) = next else { return };
        let mut new_id = || {
            n += 1;
            let mut h = ids.build_hasher();
            h.write_u64(n);
            h.finish() as u16
        };
        let outcome = resolve(shared, ip, &mut new_id);
        let c = &shared.counters;
        let (rdns, ttl) = match outcome {
            Outcome::Name(name) => {
                c.names.fetch_add(1, Ordering::Relaxed);
                (Rdns::Name(name), shared.cfg.ttl)
            }
            Outcome::NoName => {
                c.no_name.fetch_add(1, Ordering::Relaxed);
                (Rdns::NoName, shared.cfg.ttl)
            }
            Outcome::Failed => {
                c.failed.fetch_add(1, Ordering::Relaxed);
                (Rdns::NoName, shared.cfg.failure_ttl)
            }
        };
        let expires = shared.clock.now() + ttl;
        shared.cache().insert(ip, Slot::Done { rdns, expires });
    }
}

fn resolve(shared: &Shared, ip: IpAddr, new_id: &mut dyn FnMut() -> u16) -> Outcome {
    let qname = reverse_name(ip);
    for _ in 0..shared.cfg.attempts.max(1) {
        for server in &shared.servers {
            match query(
                *server,
                &qname,
                new_id(),
                shared.cfg.timeout,
                &shared.counters.ignored,
            ) {
                Outcome::Failed => continue,
                done => return done,
            }
        }
    }
    Outcome::Failed
}

fn query(server: SocketAddr, qname: &str, id: u16, timeout: Duration, ignored: &AtomicU64) -> Outcome {
    let Some(msg) = build_query(id, qname) else {
        return Outcome::Failed;
    };
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let Ok(sock) = UdpSocket::bind(local) else {
        return Outcome::Failed;
    };
    // connect(): the kernel drops datagrams from any other address.
    if sock.connect(server).is_err() || sock.send(&msg).is_err() {
        return Outcome::Failed;
    }
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || sock.set_read_timeout(Some(left)).is_err() {
            return Outcome::Failed;
        }
        let len = match sock.recv(&mut buf) {
            Ok(n) => n,
            // Timeout, or ICMP port unreachable from a dead server.
            Err(_) => return Outcome::Failed,
        };
        match read_answer(&buf[..len], id, qname) {
            Some(o) => return o,
            None => {
                ignored.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// What an answer to our query says; `None` when it is not the answer (wrong id, question,
/// not a response, unparseable), which is then ignored.
fn read_answer(msg: &[u8], id: u16, qname: &str) -> Option<Outcome> {
    let m = dns::parse(msg).ok()?;
    if m.id != id || !m.response {
        return None;
    }
    let q = m.questions.first()?;
    if m.questions.len() != 1
        || q.qtype != RrType::PTR
        || q.qclass != 1
        || !q.name.eq_ignore_ascii_case(qname)
    {
        return None;
    }
    match m.rcode {
        0 => {}
        3 => return Some(Outcome::NoName),
        _ => return Some(Outcome::Failed),
    }
    // Follow CNAMEs from the question name (at most 8), then take the PTR.
    let mut owner = q.name.clone();
    for _ in 0..8 {
        let answers = m
            .records
            .iter()
            .filter(|r| r.section == dns::Section::Answer && r.name.eq_ignore_ascii_case(&owner));
        let mut next = None;
        for r in answers {
            match (&r.rtype, &r.data) {
                (&RrType::PTR, RData::Name(n)) if !n.is_empty() && n != "." => {
                    return Some(Outcome::Name(n.trim_end_matches('.').to_string()));
                }
                (&RrType::CNAME, RData::Name(n)) => next = Some(n.clone()),
                _ => {}
            }
        }
        match next {
            Some(n) => owner = n,
            None => break,
        }
    }
    if m.truncated {
        // The record may be in the part that did not fit; no TCP fallback here.
        return Some(Outcome::Failed);
    }
    Some(Outcome::NoName)
}

/// The PTR owner name of an address: `4.3.2.1.in-addr.arpa`, or the 32 nibbles under
/// `ip6.arpa`.
pub fn reverse_name(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(a) => {
            let o = a.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(a) => {
            let mut s = String::with_capacity(72);
            for b in a.octets().iter().rev() {
                for nib in [b & 0xF, b >> 4] {
                    s.push(char::from_digit(u32::from(nib), 16).unwrap_or('0'));
                    s.push('.');
                }
            }
            s.push_str("ip6.arpa");
            s
        }
    }
}

/// A standard query (RD set) for `name` PTR IN; `None` if a label is empty or too long.
pub fn build_query(id: u16, name: &str) -> Option<Vec<u8>> {
    let mut m = Vec::with_capacity(18 + name.len());
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&12u16.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    (m.len() <= 512).then_some(m)
}

/// The reverse map of an /etc/hosts text: address -> its first name (first line wins).
pub fn parse_hosts(text: &str) -> HashMap<IpAddr, String> {
    let mut map = HashMap::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let mut f = line.split_whitespace();
        let (Some(addr), Some(name)) = (f.next(), f.next()) else {
            continue;
        };
        let addr = addr.split('%').next().unwrap_or(addr);
        if let Ok(ip) = addr.parse::<IpAddr>() {
            map.entry(ip.to_canonical())
                .or_insert_with(|| name.trim_end_matches('.').to_string());
        }
    }
    map
}

/// The nameservers of a resolv.conf text (at most 3, port 53 unless given, see the module
/// docs).
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        if f.next() != Some("nameserver") {
            continue;
        }
        let Some(v) = f.next() else { continue };
        let parsed = v.parse::<SocketAddr>().ok().or_else(|| {
            v.split('%')
                .next()?
                .parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, 53))
        });
        if let Some(s) = parsed
            && out.len() < 3
        {
            out.push(s);
        }
    }
    out
}

/// Loads an /etc/hosts reverse map from a file (missing -> empty).
pub fn load_hosts(path: &Path) -> HashMap<IpAddr, String> {
    std::fs::read_to_string(path)
        .map(|t| parse_hosts(&t))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_name("192.0.2.10".parse().unwrap()),
            "10.2.0.192.in-addr.arpa"
        );
        assert_eq!(
            reverse_name("::ffff:192.0.2.10".parse().unwrap()),
            "10.2.0.192.in-addr.arpa"
        );
        assert_eq!(
            reverse_name("2001:db8::567:89ab".parse().unwrap()),
            "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
        );
    }

    #[test]
    fn query_bytes_parse_back() {
        let q = build_query(0xBEEF, "10.2.0.192.in-addr.arpa").unwrap();
        let m = dns::parse(&q).unwrap();
        assert_eq!((m.id, m.response, m.recursion_desired), (0xBEEF, false, true));
        assert_eq!(m.questions[0].name, "10.2.0.192.in-addr.arpa");
        assert_eq!((m.questions[0].qtype, m.questions[0].qclass), (RrType::PTR, 1));
        assert!(build_query(1, "a..b").is_none());
    }

    #[test]
    fn hosts_and_resolv_conf() {
        let h = parse_hosts(
            "127.0.0.1 localhost\n# c\n192.0.2.1\tgw.lan gw # router\n192.0.2.1 second\nfe80::1%eth0 ll\nbad line\n",
        );
        assert_eq!(
            h.get(&"192.0.2.1".parse().unwrap()).map(String::as_str),
            Some("gw.lan")
        );
        assert_eq!(h.get(&"fe80::1".parse().unwrap()).map(String::as_str), Some("ll"));
        assert_eq!(h.len(), 3);
        let r = parse_resolv_conf(
            "# x\nsearch lan\nnameserver 192.0.2.53\nnameserver 127.0.0.1:5353\nnameserver [::1]:5300\nnameserver fe80::1%eth0\nnameserver junk\n",
        );
        assert_eq!(
            r,
            vec![
                "192.0.2.53:53".parse().unwrap(),
                "127.0.0.1:5353".parse().unwrap(),
                "[::1]:5300".parse().unwrap()
            ]
        );
    }

    #[test]
    fn answers_are_checked() {
        let q = "1.2.0.192.in-addr.arpa";
        // A hand-built response: id 7, QR RD RA, NOERROR, one PTR answer via a compression pointer.
        let mut r = build_query(7, q).unwrap();
        r[2] = 0x81;
        r[3] = 0x80;
        r[7] = 1;
        r.extend_from_slice(&[
            0xC0, 12, 0, 12, 0, 1, 0, 0, 0, 60, 0, 9, 4, b'h', b'o', b's', b't', 2, b'e', b'x', 0,
        ]);
        assert!(matches!(read_answer(&r, 7, q), Some(Outcome::Name(n)) if n == "host.ex"));
        assert!(read_answer(&r, 8, q).is_none(), "wrong id");
        assert!(
            read_answer(&r, 7, "2.2.0.192.in-addr.arpa").is_none(),
            "wrong question"
        );
        let mut nx = r.clone();
        nx[3] = 0x83;
        assert!(matches!(read_answer(&nx, 7, q), Some(Outcome::NoName)));
        let mut sf = r.clone();
        sf[3] = 0x82;
        assert!(matches!(read_answer(&sf, 7, q), Some(Outcome::Failed)));
        let mut query_only = r.clone();
        query_only[2] = 0x01;
        assert!(read_answer(&query_only, 7, q).is_none(), "not a response");
        assert!(read_answer(&r[..5], 7, q).is_none());
    }
}
