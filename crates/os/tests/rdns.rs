//! The reverse DNS resolver against a fake DNS server on 127.0.0.1 (a thread in this test):
//! PTR answers, NXDOMAIN, silence, SERVFAIL, a wrong-id datagram, a CNAME chain, truncation;
//! /etc/hosts answers; in-flight de-duplication; cache expiry with an injected clock; the size
//! cap. No packet leaves loopback: the resolv.conf the tests write names 127.0.0.1:<port>.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use engine::enrich::{Rdns, ReverseDns};
use os::rdns::{Clock, RdnsConfig, Resolver, reverse_name};

#[derive(Clone)]
enum Reply {
    Ptr(&'static str),
    Nx,
    NoData,
    Silent,
    ServFail,
    /// A datagram with the wrong id first, then the real answer.
    WrongIdFirst(&'static str),
    /// qname CNAME target; target PTR name (RFC 2317).
    Cname(&'static str, &'static str),
    /// TC set, no answer.
    Truncated,
    /// Answer after a delay.
    Delayed(Duration, &'static str),
}

struct FakeDns {
    addr: SocketAddr,
    seen: Arc<Mutex<HashMap<String, usize>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeDns {
    fn start(replies: Vec<(&str, Reply)>) -> FakeDns {
        let replies: HashMap<String, Reply> = replies
            .into_iter()
            .map(|(ip, r)| (reverse_name(ip.parse().unwrap()), r))
            .collect();
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let addr = sock.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (Arc::clone(&seen), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            // Bounded: the test stops it; a hard cap of 60 s in case it does not.
            let end = Instant::now() + Duration::from_secs(60);
            while !stop2.load(Ordering::Relaxed) && Instant::now() < end {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let q = &buf[..n];
                let Ok(m) = wire::dns::parse(q) else { continue };
                let Some(name) = m.query_name().map(str::to_string) else {
                    continue;
                };
                *seen2.lock().unwrap().entry(name.clone()).or_default() += 1;
                let reply = replies.get(&name).cloned().unwrap_or(Reply::Nx);
                let send = |bytes: Vec<u8>| {
                    let _ = sock.send_to(&bytes, from);
                };
                match reply {
                    Reply::Ptr(p) => send(response(q, 0, false, &[ptr_rr(&[0xC0, 12], p)])),
                    Reply::Nx => send(response(q, 3, false, &[])),
                    Reply::NoData => send(response(q, 0, false, &[])),
                    Reply::Silent => {}
                    Reply::ServFail => send(response(q, 2, false, &[])),
                    Reply::WrongIdFirst(p) => {
                        let mut wrong = response(q, 0, false, &[ptr_rr(&[0xC0, 12], "evil.example")]);
                        wrong[0] ^= 0xFF;
                        send(wrong);
                        send(response(q, 0, false, &[ptr_rr(&[0xC0, 12], p)]));
                    }
                    Reply::Cname(target, p) => {
                        let mut cname = vec![0xC0, 12, 0, 5, 0, 1, 0, 0, 0, 60];
                        let t = encode_name(target);
                        cname.extend_from_slice(&(t.len() as u16).to_be_bytes());
                        cname.extend_from_slice(&t);
                        send(response(q, 0, false, &[cname, ptr_rr(&encode_name(target), p)]));
                    }
                    Reply::Truncated => send(response(q, 0, true, &[])),
                    Reply::Delayed(d, p) => {
                        let s = sock.try_clone().unwrap();
                        let bytes = response(q, 0, false, &[ptr_rr(&[0xC0, 12], p)]);
                        std::thread::spawn(move || {
                            std::thread::sleep(d);
                            let _ = s.send_to(&bytes, from);
                        });
                    }
                }
            }
        });
        FakeDns {
            addr,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn queries(&self, ip: &str) -> usize {
        let name = reverse_name(ip.parse().unwrap());
        self.seen.lock().unwrap().get(&name).copied().unwrap_or(0)
    }

    fn total(&self) -> usize {
        self.seen.lock().unwrap().values().sum()
    }
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn encode_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for l in name.trim_end_matches('.').split('.') {
        out.push(l.len() as u8);
        out.extend_from_slice(l.as_bytes());
    }
    out.push(0);
    out
}

fn ptr_rr(owner: &[u8], target: &str) -> Vec<u8> {
    let mut rr = owner.to_vec();
    rr.extend_from_slice(&[0, 12, 0, 1, 0, 0, 0x0E, 0x10]);
    let t = encode_name(target);
    rr.extend_from_slice(&(t.len() as u16).to_be_bytes());
    rr.extend_from_slice(&t);
    rr
}

/// The query turned into a response: same id and question, QR RA set, the given rcode and
/// answer records.
fn response(query: &[u8], rcode: u8, truncated: bool, answers: &[Vec<u8>]) -> Vec<u8> {
    let mut r = query.to_vec();
    r[2] = 0x80 | (query[2] & 0x01) | if truncated { 0x02 } else { 0 };
    r[3] = 0x80 | rcode;
    r[6..8].copy_from_slice(&(answers.len() as u16).to_be_bytes());
    r[8..12].fill(0);
    for a in answers {
        r.extend_from_slice(a);
    }
    r
}

struct Files {
    dir: PathBuf,
}

impl Files {
    fn new(tag: &str, resolv: &str, hosts: &str) -> Files {
        let dir = std::env::temp_dir().join(format!("netvigil-rdns-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("resolv.conf"), resolv).unwrap();
        std::fs::write(dir.join("hosts"), hosts).unwrap();
        Files { dir }
    }
    fn config(&self) -> RdnsConfig {
        RdnsConfig {
            hosts_path: self.dir.join("hosts"),
            resolv_conf_path: self.dir.join("resolv.conf"),
            timeout: Duration::from_millis(200),
            attempts: 2,
            ..RdnsConfig::default()
        }
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Asks until the answer is not Pending (at most 5 s).
fn settle(r: &Resolver, ip: &str) -> Rdns {
    let ip: IpAddr = ip.parse().unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        match r.lookup(ip) {
            Rdns::Pending if Instant::now() < end => std::thread::sleep(Duration::from_millis(5)),
            other => return other,
        }
    }
}

fn name(s: &str) -> Rdns {
    Rdns::Name(s.to_string())
}

#[test]
fn answers_from_a_fake_server_and_from_hosts() {
    let dns = FakeDns::start(vec![
        ("192.0.2.1", Reply::Ptr("one.example.")),
        ("192.0.2.2", Reply::Nx),
        ("192.0.2.3", Reply::Silent),
        ("192.0.2.4", Reply::ServFail),
        ("192.0.2.5", Reply::WrongIdFirst("five.example")),
        (
            "192.0.2.6",
            Reply::Cname("6.0-25.2.0.192.in-addr.arpa", "six.classless.example"),
        ),
        ("192.0.2.7", Reply::NoData),
        ("192.0.2.8", Reply::Truncated),
        ("2001:db8::1", Reply::Ptr("v6.example")),
    ]);
    let files = Files::new(
        "answers",
        &format!("# test\nsearch example\nnameserver {}\n", dns.addr),
        "127.0.0.1 localhost\n198.51.100.7 hosts.example hosts\n",
    );
    let r = Resolver::new(files.config()).unwrap();
    assert_eq!(r.nameservers(), &[dns.addr]);

    // /etc/hosts: answered at once, never asked.
    assert_eq!(r.lookup("198.51.100.7".parse().unwrap()), name("hosts.example"));
    assert_eq!(
        r.lookup("::ffff:198.51.100.7".parse().unwrap()),
        name("hosts.example")
    );
    assert_eq!(dns.queries("198.51.100.7"), 0);

    // The first lookup of an address is Pending.
    assert_eq!(r.lookup("192.0.2.1".parse().unwrap()), Rdns::Pending);
    assert_eq!(settle(&r, "192.0.2.1"), name("one.example"));
    assert_eq!(settle(&r, "192.0.2.2"), Rdns::NoName);
    assert_eq!(settle(&r, "192.0.2.5"), name("five.example"));
    assert_eq!(settle(&r, "192.0.2.6"), name("six.classless.example"));
    assert_eq!(settle(&r, "192.0.2.7"), Rdns::NoName);
    assert_eq!(settle(&r, "2001:db8::1"), name("v6.example"));

    let t = Instant::now();
    assert_eq!(settle(&r, "192.0.2.3"), Rdns::NoName);
    assert!(
        t.elapsed() >= Duration::from_millis(380),
        "gave up after {:?}",
        t.elapsed()
    );
    assert_eq!(dns.queries("192.0.2.3"), 2, "one query per attempt");
    // SERVFAIL and truncation without the record are failures, retried, then NoName.
    assert_eq!(settle(&r, "192.0.2.4"), Rdns::NoName);
    assert_eq!(dns.queries("192.0.2.4"), 2);
    assert_eq!(settle(&r, "192.0.2.8"), Rdns::NoName);
    assert_eq!(dns.queries("192.0.2.8"), 2);

    // Answered once each: the cache answers repeats.
    for ip in ["192.0.2.1", "192.0.2.2", "192.0.2.5", "2001:db8::1"] {
        assert_ne!(r.lookup(ip.parse().unwrap()), Rdns::Pending);
        assert_eq!(dns.queries(ip), 1, "{ip}");
    }
    let s = r.stats();
    assert_eq!((s.names, s.no_name, s.failed), (4, 2, 3), "{s:?}");
    assert!(s.ignored_datagrams >= 1, "{s:?}");
    assert_eq!(s.dropped, 0);
    r.shutdown();
}

struct ManualClock {
    base: Instant,
    offset: Mutex<Duration>,
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.base + *self.offset.lock().unwrap()
    }
}

#[test]
fn in_flight_dedup_and_cache_expiry() {
    let dns = FakeDns::start(vec![
        (
            "192.0.2.9",
            Reply::Delayed(Duration::from_millis(150), "slow.example"),
        ),
        ("192.0.2.10", Reply::Silent),
        ("192.0.2.11", Reply::Nx),
    ]);
    let files = Files::new("expiry", &format!("nameserver {}\n", dns.addr), "");
    let clock = Arc::new(ManualClock {
        base: Instant::now(),
        offset: Mutex::new(Duration::ZERO),
    });
    let cfg = RdnsConfig {
        timeout: Duration::from_millis(400),
        attempts: 1,
        failure_ttl: Duration::from_secs(30),
        ..files.config()
    };
    let r = Resolver::with_clock(cfg, clock.clone()).unwrap();
    let slow: IpAddr = "192.0.2.9".parse().unwrap();
    for _ in 0..100 {
        assert_eq!(r.lookup(slow), Rdns::Pending);
    }
    assert_eq!(settle(&r, "192.0.2.9"), name("slow.example"));
    assert_eq!(
        dns.queries("192.0.2.9"),
        1,
        "one query however often it was asked"
    );

    let advance = |secs: u64| *clock.offset.lock().unwrap() += Duration::from_secs(secs);
    advance(599);
    assert_eq!(r.lookup(slow), name("slow.example"));
    assert_eq!(dns.queries("192.0.2.9"), 1);
    advance(2);
    assert_eq!(r.lookup(slow), Rdns::Pending, "expired after 10 minutes");
    assert_eq!(settle(&r, "192.0.2.9"), name("slow.example"));
    assert_eq!(dns.queries("192.0.2.9"), 2);

    // NXDOMAIN is kept 10 minutes too.
    assert_eq!(settle(&r, "192.0.2.11"), Rdns::NoName);
    advance(599);
    assert_eq!(r.lookup("192.0.2.11".parse().unwrap()), Rdns::NoName);
    assert_eq!(dns.queries("192.0.2.11"), 1);

    // A timeout is NoName for failure_ttl only.
    assert_eq!(settle(&r, "192.0.2.10"), Rdns::NoName);
    advance(29);
    assert_eq!(r.lookup("192.0.2.10".parse().unwrap()), Rdns::NoName);
    advance(2);
    assert_eq!(r.lookup("192.0.2.10".parse().unwrap()), Rdns::Pending);
    assert_eq!(settle(&r, "192.0.2.10"), Rdns::NoName);
    assert_eq!(dns.queries("192.0.2.10"), 2);
}

#[test]
fn cache_size_is_capped() {
    let dns = FakeDns::start(vec![]);
    let files = Files::new("cap", &format!("nameserver {}\n", dns.addr), "");
    let r = Resolver::new(RdnsConfig {
        capacity: 8,
        ..files.config()
    })
    .unwrap();
    for i in 1..=40 {
        assert_eq!(settle(&r, &format!("203.0.113.{i}")), Rdns::NoName);
        assert!(r.cached() <= 8, "{} cached after {i}", r.cached());
    }
    assert_eq!(dns.total(), 40);
    // The newest answer survived the evictions.
    assert_eq!(r.lookup("203.0.113.40".parse().unwrap()), Rdns::NoName);
    assert_eq!(dns.total(), 40);
}

#[test]
fn a_full_queue_answers_pending_and_counts() {
    let dns = FakeDns::start(vec![(
        "192.0.2.20",
        Reply::Delayed(Duration::from_millis(300), "busy.example"),
    )]);
    let files = Files::new("queue", &format!("nameserver {}\n", dns.addr), "");
    let r = Resolver::new(RdnsConfig {
        threads: 1,
        queue: 1,
        timeout: Duration::from_millis(600),
        ..files.config()
    })
    .unwrap();
    assert_eq!(r.lookup("192.0.2.20".parse().unwrap()), Rdns::Pending);
    // Let the worker take it, then fill the queue.
    std::thread::sleep(Duration::from_millis(50));
    for i in 1..=5 {
        assert_eq!(r.lookup(format!("203.0.113.{i}").parse().unwrap()), Rdns::Pending);
    }
    assert!(r.stats().dropped >= 3, "{:?}", r.stats());
    assert_eq!(settle(&r, "192.0.2.20"), name("busy.example"));
    // A dropped address is queued again on the next lookup.
    assert_eq!(settle(&r, "203.0.113.5"), Rdns::NoName);
}

#[test]
fn no_nameserver_is_a_clear_error() {
    let files = Files::new("nons", "search example\n", "");
    let e = Resolver::new(files.config()).unwrap_err().to_string();
    assert!(
        e.contains("resolv.conf") && e.contains("no usable `nameserver` line"),
        "{e}"
    );
    let e = Resolver::new(RdnsConfig {
        resolv_conf_path: "/nonexistent/resolv.conf".into(),
        ..RdnsConfig::default()
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("/nonexistent/resolv.conf"), "{e}");
}
