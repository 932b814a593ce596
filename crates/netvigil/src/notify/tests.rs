//! Delivery against real endpoints: an HTTP receiver on 127.0.0.1, a unix datagram socket, a
//! private `dbus-daemon`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use engine::judge::{Alert, Rule, Severity};

use super::filter::{NoiseFilter, SafeLists, Verdict};
use super::terminal::Terminal;
use super::webhook::Webhook;
use super::*;
use crate::config::{Config, WebhookConfig, WebhookPreset};

fn alert(rule: Rule, sev: Severity, app: &str, remote: &str) -> Alert {
    Alert {
        id: format!("{:016x}", remote.len() * 7919 + app.len()),
        ts: 1_748_779_200_123_456_789,
        severity: sev,
        rule,
        app: Some(app.into()),
        remote: Some(remote.into()),
        port: Some(443),
        bytes: None,
        score: None,
        reason: format!("{app} talked to {remote} for the first time"),
    }
}

/// One HTTP request as the receiver saw it.
#[derive(Clone, Debug)]
struct Req {
    path: String,
    headers: Vec<(String, String)>,
    body: String,
    at: Instant,
}

/// An HTTP server on 127.0.0.1 that answers 500 to the first `fail_first` requests and 200
/// after, or never answers (`hang`). Stops by itself after `life`.
struct Receiver {
    port: u16,
    reqs: Arc<Mutex<Vec<Req>>>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    fn start(fail_first: usize, hang: bool) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let reqs = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r2, s2) = (reqs.clone(), stop.clone());
        let seen = Arc::new(AtomicUsize::new(0));
        std::thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(60);
            let mut held = Vec::new();
            while Instant::now() < end && !s2.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                        let Some(req) = read_request(&mut s) else { continue };
                        let n = seen.fetch_add(1, Ordering::Relaxed);
                        r2.lock().unwrap().push(req);
                        if hang {
                            held.push(s); // never answered
                            continue;
                        }
                        let status = if n < fail_first {
                            "500 Internal Server Error"
                        } else {
                            "200 OK"
                        };
                        let _ = write!(
                            s,
                            "HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                        );
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self { port, reqs, stop }
    }
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
    fn wait_for(&self, n: usize, limit: Duration) -> Vec<Req> {
        let end = Instant::now() + limit;
        loop {
            let r = self.reqs.lock().unwrap().clone();
            if r.len() >= n || Instant::now() >= end {
                return r;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn read_request(s: &mut TcpStream) -> Option<Req> {
    let r = crate::https::testing::read_request(s, None)?;
    assert_eq!(r.method, "POST");
    Some(Req {
        path: r.path,
        headers: r.headers,
        body: String::from_utf8(r.body).ok()?,
        at: Instant::now(),
    })
}

fn hook_cfg(preset: WebhookPreset, retries: u32) -> WebhookConfig {
    WebhookConfig {
        preset,
        retries,
        backoff_initial: Duration::from_millis(40),
        backoff_max: Duration::from_millis(200),
        timeout: Duration::from_secs(2),
        ..Config::default().notify.webhook
    }
}

fn open_filter() -> NoiseFilter {
    let mut a = Config::default().alerts;
    a.rate_limit = None;
    NoiseFilter::new(&a, SafeLists::default())
}

#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SharedBuf {
    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .map(str::to_string)
            .collect()
    }
}

fn channel(sink: Box<dyn Sink>, min: Severity) -> Channel {
    Channel {
        sink,
        min_severity: min,
        connections: true,
    }
}

/// A JSON string value of `key` in a flat JSON object (enough for these bodies).
fn json_str(body: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\":\"");
    let start = body.find(&pat)? + pat.len();
    let mut out = String::new();
    let mut chars = body[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                c => out.push(c),
            },
            c => out.push(c),
        }
    }
    None
}

#[test]
fn webhook_presets_have_their_json_shapes() {
    let rx = Receiver::start(0, false);
    let a = alert(
        Rule::InboundAccept,
        Severity::Medium,
        "sshd",
        "<b>@everyone&co</b>.example",
    );
    let n = Notice::from_alert(&a);
    let mut record = String::new();
    a.write_json(&mut record);
    let cases = [
        (WebhookPreset::Json, "/hook"),
        (WebhookPreset::Ntfy, "/netvigil-alerts"),
        (WebhookPreset::Slack, "/services/T0/B0/x"),
        (WebhookPreset::Discord, "/api/webhooks/1/abc"),
    ];
    for (i, (preset, path)) in cases.iter().enumerate() {
        let mut w = Webhook::new(&rx.url(path), &hook_cfg(*preset, 0)).unwrap();
        assert_eq!(w.deliver(&n, &Stop::default()), Ok(0), "{preset:?}");
        let got = rx.wait_for(i + 1, Duration::from_secs(5));
        let r = &got[i];
        let ct = r
            .headers
            .iter()
            .find(|(k, _)| k == "content-type")
            .map(|x| x.1.as_str());
        assert_eq!(ct, Some("application/json"));
        let b = &r.body;
        match preset {
            WebhookPreset::Json => {
                assert_eq!(r.path, "/hook");
                assert_eq!(b, &record, "the json preset posts the alert record itself");
                assert!(b.starts_with("{\"type\":\"alert\",\"v\":1,"));
            }
            WebhookPreset::Ntfy => {
                assert_eq!(r.path, "/", "ntfy's JSON publishing goes to the root");
                assert_eq!(json_str(b, "topic").as_deref(), Some("netvigil-alerts"));
                assert_eq!(
                    json_str(b, "title").as_deref(),
                    Some("netvigil: medium alert (inbound_accept)")
                );
                assert!(json_str(b, "message").unwrap().contains("sshd talked to"));
                assert!(b.contains("\"priority\":4"), "{b}");
                assert!(b.contains("\"tags\":[\"medium\",\"inbound_accept\"]"), "{b}");
            }
            WebhookPreset::Slack => {
                assert_eq!(r.path, *path);
                let text = json_str(b, "text").unwrap();
                assert!(
                    text.starts_with("*netvigil: medium alert (inbound_accept)*\n"),
                    "{text}"
                );
                assert!(
                    text.contains("&lt;b&gt;@everyone&amp;co&lt;/b&gt;.example"),
                    "escaped: {text}"
                );
                assert!(!text.contains('<'));
            }
            WebhookPreset::Discord => {
                assert_eq!(json_str(b, "username").as_deref(), Some("netvigil"));
                let content = json_str(b, "content").unwrap();
                assert!(content.starts_with("**netvigil: medium alert (inbound_accept)**\n"));
                assert!(b.ends_with(",\"allowed_mentions\":{\"parse\":[]}}"), "{b}");
            }
        }
    }
}

#[test]
fn webhook_retries_with_growing_waits_then_succeeds() {
    let rx = Receiver::start(3, false);
    let mut w = Webhook::new(&rx.url("/h"), &hook_cfg(WebhookPreset::Json, 5)).unwrap();
    let n = Notice::from_alert(&alert(Rule::RedFlag, Severity::High, "x", "y.example"));
    assert_eq!(w.deliver(&n, &Stop::default()), Ok(3));
    let got = rx.wait_for(4, Duration::from_secs(5));
    assert_eq!(got.len(), 4);
    assert!(got.iter().all(|r| r.body == got[0].body));
    // Waits: 40 ms x 2^n, jittered to [half, all], capped at 200 ms: 20-40, 40-80, 80-160.
    let gaps: Vec<Duration> = got.windows(2).map(|w| w[1].at - w[0].at).collect();
    for (g, lo) in gaps.iter().zip([20u64, 40, 80]) {
        assert!(*g >= Duration::from_millis(lo), "{gaps:?}");
        assert!(*g < Duration::from_millis(lo * 2 + 300), "{gaps:?}");
    }
}

#[test]
fn webhook_gives_up_after_its_retries_and_4xx_is_not_retried() {
    let rx = Receiver::start(usize::MAX, false);
    let mut w = Webhook::new(&rx.url("/h"), &hook_cfg(WebhookPreset::Json, 2)).unwrap();
    let n = Notice::from_alert(&alert(Rule::RedFlag, Severity::High, "x", "y.example"));
    let e = w.deliver(&n, &Stop::default()).unwrap_err();
    assert!(e.contains("500") && e.contains("gave up after 3 attempts"), "{e}");
    assert_eq!(rx.wait_for(3, Duration::from_secs(2)).len(), 3);

    // A server that answers 404: one attempt.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let mut count = 0;
        l.set_nonblocking(true).unwrap();
        let end = Instant::now() + Duration::from_secs(2);
        while Instant::now() < end {
            if let Ok((mut s, _)) = l.accept() {
                s.set_nonblocking(false).unwrap();
                read_request(&mut s);
                let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                count += 1;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        count
    });
    let mut w = Webhook::new(
        &format!("http://127.0.0.1:{port}/x"),
        &hook_cfg(WebhookPreset::Json, 5),
    )
    .unwrap();
    let e = w.deliver(&n, &Stop::default()).unwrap_err();
    assert!(e.contains("404") && e.contains("not retried"), "{e}");
    assert_eq!(t.join().unwrap(), 1);
}

#[test]
fn https_webhooks_post_over_real_tls_and_refuse_a_bad_certificate_at_once() {
    use crate::https::testing::{Ca, Server, client, ok};
    let ca = Ca::new();
    // An ntfy-like server on 127.0.0.1 that fails the first POST with 503, then accepts.
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    let srv = Server::start(
        Some(ca.server_cert(&["localhost", "127.0.0.1"], false)),
        Box::new(move |_| {
            if c2.fetch_add(1, Ordering::SeqCst) == 0 {
                b"HTTP/1.1 503 Busy\r\nRetry-After: 0\r\nContent-Length: 0\r\n\r\n".to_vec()
            } else {
                ok("application/json", b"{\"id\":\"x\"}")
            }
        }),
    );
    let a = alert(Rule::RedFlag, Severity::High, "curl", "c.example");
    let n = Notice::from_alert(&a);
    let url = format!("https://localhost:{}/netvigil-alerts", srv.port);
    let mut w = Webhook::with_client(&url, &hook_cfg(WebhookPreset::Ntfy, 3), client(&ca)).unwrap();
    assert_eq!(
        w.deliver(&n, &Stop::default()),
        Ok(1),
        "retried once after the 503"
    );
    let seen = srv.seen();
    assert_eq!(seen.len(), 2);
    let r = &seen[1];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/"));
    assert_eq!(r.sni.as_deref(), Some("localhost"));
    let body = String::from_utf8(r.body.clone()).unwrap();
    assert_eq!(json_str(&body, "topic").as_deref(), Some("netvigil-alerts"));
    assert_eq!(
        json_str(&body, "title").as_deref(),
        Some("netvigil: high alert (red_flag)")
    );
    assert_eq!(
        body,
        super::webhook::body(WebhookPreset::Ntfy, &n, &crate::https::Url::parse(&url).unwrap())
    );

    // A certificate for another name: refused with the reason, and not retried.
    let other = Server::start(
        Some(ca.server_cert(&["hooks.example"], false)),
        Box::new(|_| ok("text/plain", b"x")),
    );
    let mut w = Webhook::with_client(
        &format!("https://127.0.0.1:{}/h", other.port),
        &hook_cfg(WebhookPreset::Json, 5),
        client(&ca),
    )
    .unwrap();
    let start = Instant::now();
    let e = w.deliver(&n, &Stop::default()).unwrap_err();
    assert!(
        e.contains("certificate was refused") && e.contains("hooks.example") && e.contains("not retried"),
        "{e}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "no backoff for a bad certificate"
    );
    assert!(other.seen().is_empty());
}

#[test]
fn a_dead_webhook_blocks_neither_the_pipeline_nor_the_other_channels() {
    let dead = Receiver::start(0, true);
    let term = SharedBuf::default();
    let dir = tempdir("dead-hook");
    let sock_path = dir.join("log.sock");
    let log = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    log.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut cfg = hook_cfg(WebhookPreset::Json, 3);
    cfg.timeout = Duration::from_secs(30);
    let mut slog = Config::default().notify.syslog;
    slog.socket = sock_path.clone();
    let d = Dispatcher::start(
        open_filter(),
        vec![
            channel(
                Box::new(Webhook::new(&dead.url("/h"), &cfg).unwrap()),
                Severity::Info,
            ),
            channel(Box::new(Terminal::new(Box::new(term.clone()))), Severity::Info),
            channel(Box::new(syslog::Syslog::new(&slog)), Severity::Info),
        ],
        4,
    );
    let t0 = Instant::now();
    for i in 0..200 {
        d.send_alert(&alert(
            Rule::NewRemote,
            Severity::Info,
            "curl",
            &format!("h{i}.example"),
        ));
        if i % 4 == 3 {
            std::thread::sleep(Duration::from_millis(2)); // let the router keep up
        }
    }
    let send_time = t0.elapsed();
    assert!(
        send_time < Duration::from_millis(1500),
        "sending 200 took {send_time:?}"
    );
    // The terminal and syslog get theirs while the webhook is stuck on its first request.
    let end = Instant::now() + Duration::from_secs(5);
    while term.lines().len() < 4 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut buf = [0u8; 8192];
    let n = log.recv(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("new_remote"));
    assert!(term.lines().len() >= 4, "{:?}", term.lines());
    assert_eq!(
        dead.wait_for(1, Duration::from_secs(5)).len(),
        1,
        "one request is hanging"
    );
    let s = d.stats();
    let hook = s.channel("webhook").unwrap();
    assert_eq!(hook.delivered, 0);
    assert!(hook.dropped > 0, "the webhook's full queue drops: {s:?}");
    assert_eq!(s.received + s.dropped, 200);
    // Shutdown: within the grace period plus about a second, though a request still hangs.
    let t1 = Instant::now();
    let fin = d.shutdown(Duration::from_millis(300));
    assert!(
        t1.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        t1.elapsed()
    );
    let term_stats = fin.channel("terminal").unwrap();
    assert_eq!(term_stats.delivered as usize, term.lines().len());
    assert_eq!(term_stats.failed, 0);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn dispatcher_applies_noise_control_and_channel_minimums() {
    let (low, high) = (SharedBuf::default(), SharedBuf::default());
    let mut a = Config::default().alerts;
    a.rate_limit = None;
    let d = Dispatcher::start(
        NoiseFilter::new(
            &a,
            SafeLists {
                apps: vec!["backupd".into()],
                ..SafeLists::default()
            },
        ),
        vec![
            channel(Box::new(Terminal::new(Box::new(low.clone()))), Severity::Info),
            channel(Box::new(Terminal::new(Box::new(high.clone()))), Severity::High),
        ],
        64,
    );
    d.send_alert(&alert(Rule::NewRemote, Severity::Info, "curl", "a.example"));
    d.send_alert(&alert(Rule::NewRemote, Severity::Info, "curl", "a.example")); // duplicate
    d.send_alert(&alert(Rule::NewRemote, Severity::Info, "backupd", "b.example")); // safe app
    d.send_alert(&alert(Rule::RedFlag, Severity::High, "curl", "c.example"));
    d.control(Control::Snooze {
        rule: Some("red_flag".into()),
        until: Some(i64::MAX),
    });
    d.send_alert(&alert(Rule::RedFlag, Severity::High, "curl", "d.example")); // snoozed
    d.send(Notice::connection(
        0,
        Some("curl"),
        false,
        "tcp",
        "192.0.2.1:443".parse().unwrap(),
        None,
    ));
    let s = d.shutdown(Duration::from_secs(5));
    assert_eq!(s.received, 6);
    assert_eq!(s.suppressed(Verdict::Duplicate), 1);
    assert_eq!(s.suppressed(Verdict::Safe), 1);
    assert_eq!(s.suppressed(Verdict::Snoozed), 1);
    assert_eq!(s.suppressed(Verdict::ConnectionsOff), 1);
    let (low, high) = (low.lines(), high.lines());
    assert_eq!(low.len(), 2, "{low:?}");
    assert!(
        low[0].starts_with("netvigil: alert [info] new_remote curl a.example port 443: "),
        "{low:?}"
    );
    assert_eq!(high.len(), 1, "{high:?}");
    assert!(high[0].contains("[high] red_flag curl c.example"), "{high:?}");
}

#[test]
fn every_connection_mode_goes_to_channels_that_take_connections() {
    let (yes, no) = (SharedBuf::default(), SharedBuf::default());
    let mut a = Config::default().alerts;
    a.every_connection = true;
    let d = Dispatcher::start(
        NoiseFilter::new(&a, SafeLists::default()),
        vec![
            channel(Box::new(Terminal::new(Box::new(yes.clone()))), Severity::High),
            Channel {
                sink: Box::new(Terminal::new(Box::new(no.clone()))),
                min_severity: Severity::Info,
                connections: false,
            },
        ],
        64,
    );
    let n = Notice::connection(
        1_748_779_200_000_000_000,
        Some("sshd"),
        true,
        "tcp",
        "203.0.113.9:51000".parse().unwrap(),
        None,
    );
    assert!(n.json.starts_with("{\"type\":\"connection_notice\",\"v\":1,\"ts\":\"2025-06-01T12:00:00Z\",\"app\":\"sshd\",\"direction\":\"inbound\""), "{}", n.json);
    d.send(n);
    d.shutdown(Duration::from_secs(5));
    assert_eq!(yes.lines().len(), 1);
    assert!(
        yes.lines()[0].contains("sshd accepted a TCP connection from 203.0.113.9"),
        "{:?}",
        yes.lines()
    );
    assert!(no.lines().is_empty());
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("netvigil-notify-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn syslog_sends_rfc5424_datagrams_to_the_configured_socket() {
    let dir = tempdir("syslog");
    let path = dir.join("dev-log");
    let log = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    log.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut c = Config::default().notify.syslog;
    c.socket = path.clone();
    c.facility = crate::config::Facility::parse("local3").unwrap();
    let mut s = syslog::Syslog::new(&c);
    let mut a = alert(
        Rule::InboundAccept,
        Severity::High,
        "we\"ird]app\\",
        "203.0.113.5",
    );
    a.reason = "line one\nline two".into();
    s.deliver(&Notice::from_alert(&a), &Stop::default()).unwrap();
    let mut buf = [0u8; 8192];
    let n = log.recv(&mut buf).unwrap();
    let msg = std::str::from_utf8(&buf[..n]).unwrap();
    // local3 = 19; high = err (3): 19*8+3 = 155.
    let pid = std::process::id();
    let prefix = "<155>1 2025-06-01T12:00:00.123456Z ";
    assert!(msg.starts_with(prefix), "{msg}");
    let rest = &msg[prefix.len()..];
    let (_host, rest) = rest.split_once(' ').unwrap();
    let want = format!(
        "netvigil {pid} inbound_accept [netvigil@32473 id=\"{}\" rule=\"inbound_accept\" severity=\"high\" app=\"we\\\"ird\\]app\\\\\" remote=\"203.0.113.5\" port=\"443\"] line one line two",
        a.id
    );
    assert_eq!(rest, want);
    // Nobody listening: an error naming the socket, then it works again once someone is.
    drop(log);
    let _ = std::fs::remove_file(&path);
    let e = s.deliver(&Notice::from_alert(&a), &Stop::default()).unwrap_err();
    assert!(e.contains("dev-log"), "{e}");
    let log = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    log.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.deliver(&Notice::from_alert(&a), &Stop::default()).unwrap();
    assert!(log.recv(&mut buf).unwrap() > 0);
    let _ = std::fs::remove_dir_all(dir);
}

/// A private session bus: `dbus-daemon --session` on a socket in a temporary folder.
struct Bus {
    child: std::process::Child,
    path: std::path::PathBuf,
    dir: std::path::PathBuf,
}

impl Bus {
    fn start() -> Option<Self> {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join("dbus-daemon").is_file()))
            .unwrap_or(false);
        if !found {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "dbus-daemon is missing: CI must install the Debian package `dbus-daemon` (or `dbus`)"
            );
            eprintln!("SKIPPED: dbus-daemon not found (apt-get install dbus-daemon)");
            return None;
        }
        let dir = tempdir(&format!("dbus-{:?}", std::thread::current().id()).replace(['(', ')'], ""));
        let path = dir.join("bus");
        let child = std::process::Command::new("dbus-daemon")
            .arg("--session")
            .arg("--nofork")
            .arg("--nopidfile")
            .arg(format!("--address=unix:path={}", path.display()))
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start dbus-daemon");
        let end = Instant::now() + Duration::from_secs(10);
        while !path.exists() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(path.exists(), "dbus-daemon did not create {}", path.display());
        Some(Self { child, path, dir })
    }
    fn address(&self) -> String {
        format!(
            "unix:path={},guid=0123456789abcdef0123456789abcdef",
            self.path.display()
        )
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the test's notification server received.
#[derive(Debug)]
struct Notified {
    app: String,
    icon: String,
    summary: String,
    body: String,
    urgency: Option<u8>,
    expire: i32,
}

/// Owns org.freedesktop.Notifications on the bus and answers `count` Notify calls.
fn notification_server(
    path: std::path::PathBuf,
    count: usize,
) -> (mpsc::Receiver<Notified>, mpsc::Receiver<()>) {
    let (tx, rx) = mpsc::channel();
    let (ready_tx, ready) = mpsc::channel();
    std::thread::spawn(move || {
        let (mut s, _name) = desktop::connect(&path).unwrap();
        let body = {
            let mut w = desktop::Writer::default();
            w.str("org.freedesktop.Notifications");
            w.u32(4); // DO_NOT_QUEUE
            w.buf
        };
        let m = desktop::encode(
            desktop::METHOD_CALL,
            2,
            [
                Some("/org/freedesktop/DBus"),
                Some("org.freedesktop.DBus"),
                Some("RequestName"),
                Some("org.freedesktop.DBus"),
            ],
            None,
            "su",
            &body,
        );
        s.write_all(&m).unwrap();
        let r = desktop::wait_reply(&mut s, 2).unwrap();
        let got = desktop::Reader {
            b: &r.body,
            at: 0,
            le: r.le,
        }
        .u32();
        assert_eq!(got, Some(1), "primary owner of the name");
        ready_tx.send(()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut serial = 10;
        let mut answered = 0;
        while answered < count {
            let Ok(m) = desktop::read_message(&mut s) else {
                return;
            };
            if m.header.kind != desktop::METHOD_CALL || m.header.member.as_deref() != Some("Notify") {
                continue;
            }
            assert_eq!(m.header.signature, "susssasa{sv}i");
            assert_eq!(
                m.header.interface.as_deref(),
                Some("org.freedesktop.Notifications")
            );
            assert_eq!(m.header.path.as_deref(), Some("/org/freedesktop/Notifications"));
            let mut r = desktop::Reader {
                b: &m.body,
                at: 0,
                le: m.le,
            };
            let app = r.str().unwrap().to_string();
            let _replaces = r.u32().unwrap();
            let icon = r.str().unwrap().to_string();
            let summary = r.str().unwrap().to_string();
            let body = r.str().unwrap().to_string();
            let actions_len = r.u32().unwrap();
            assert_eq!(actions_len, 0);
            let hints_len = r.u32().unwrap() as usize;
            r.align(8).unwrap();
            let hints_end = r.at + hints_len;
            let mut urgency = None;
            while r.at < hints_end {
                r.align(8).unwrap();
                let k = r.str().unwrap();
                let sig = r.sig().unwrap();
                assert_eq!((k, sig), ("urgency", "y"));
                urgency = r.u8();
            }
            let expire = r.u32().unwrap() as i32;
            serial += 1;
            let mut w = desktop::Writer::default();
            w.u32(42);
            let reply = desktop::encode(
                desktop::METHOD_RETURN,
                serial,
                [None, None, None, m.header.sender.as_deref()],
                Some(m.header.serial),
                "u",
                &w.buf,
            );
            s.write_all(&reply).unwrap();
            answered += 1;
            let _ = tx.send(Notified {
                app,
                icon,
                summary,
                body,
                urgency,
                expire,
            });
        }
    });
    (rx, ready)
}

#[test]
fn desktop_notification_reaches_a_notification_server_on_the_session_bus() {
    let Some(bus) = Bus::start() else { return };
    let mut d = desktop::Desktop::new(&bus.address(), Some(Duration::from_secs(8))).unwrap();
    let a = alert(Rule::RedFlag, Severity::High, "evil<script>", "c2.example");

    // Nobody owns org.freedesktop.Notifications yet: the bus answers with an error.
    let e = d.deliver(&Notice::from_alert(&a), &Stop::default()).unwrap_err();
    assert!(e.contains("org.freedesktop.DBus.Error.ServiceUnknown"), "{e}");

    let (got, ready) = notification_server(bus.path.clone(), 2);
    ready
        .recv_timeout(Duration::from_secs(10))
        .expect("the test server owns the name");
    assert_eq!(d.deliver(&Notice::from_alert(&a), &Stop::default()), Ok(0));
    let n = got.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(n.app, "netvigil");
    assert_eq!(n.icon, "dialog-warning");
    assert_eq!(n.summary, "netvigil: high alert (red_flag)");
    assert!(
        n.body
            .starts_with("[high] red_flag evil&lt;script&gt; c2.example port 443: "),
        "{}",
        n.body
    );
    assert_eq!(n.urgency, Some(2));
    assert_eq!(n.expire, 8000);

    // Through the dispatcher, from the configuration (the connection is reused).
    let mut cfg = Config::default();
    cfg.notify.terminal.common.enabled = false;
    cfg.notify.desktop.bus = Some(bus.address());
    let (disp, off) = Dispatcher::from_config(&cfg).unwrap();
    assert!(off.iter().all(|(n, _)| *n != "desktop"), "{off:?}");
    disp.send_alert(&alert(Rule::NewApp, Severity::Low, "newtool", "x.example"));
    let n = got.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(
        (n.summary.as_str(), n.urgency, n.expire),
        ("netvigil: low alert (new_app)", Some(0), -1)
    );
    let s = disp.shutdown(Duration::from_secs(5));
    assert_eq!(
        s.channel("desktop").map(|c| (c.delivered, c.failed)),
        Some((1, 0))
    );
}

#[test]
fn bus_addresses() {
    assert_eq!(
        desktop::socket_path("unix:path=/run/user/1000/bus").unwrap(),
        std::path::PathBuf::from("/run/user/1000/bus")
    );
    assert_eq!(
        desktop::socket_path("unix:abstract=/tmp/x,guid=1;unix:path=/tmp/a%20b,guid=2").unwrap(),
        std::path::PathBuf::from("/tmp/a b")
    );
    assert!(
        desktop::socket_path("unix:abstract=/tmp/dbus-x")
            .unwrap_err()
            .contains("abstract")
    );
    assert!(desktop::socket_path("tcp:host=localhost,port=1").is_err());
}

#[test]
fn bus_message_decoder_never_panics_on_garbage() {
    // Every truncation and a spread of corruptions of a real message.
    let body = desktop::notify_body("s", "b", "i", 1, -1);
    let m = desktop::encode(
        desktop::METHOD_CALL,
        7,
        [Some("/p"), Some("i.f"), Some("M"), Some("d.e")],
        None,
        "susssasa{sv}i",
        &body,
    );
    let whole = desktop::decode(&m).unwrap();
    assert_eq!(whole.header.member.as_deref(), Some("M"));
    assert_eq!(whole.body, body);
    for cut in 0..m.len() {
        let _ = desktop::decode(&m[..cut]);
    }
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..20_000 {
        let mut c = m.clone();
        for _ in 0..3 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x as usize) % c.len();
            c[i] = (x >> 32) as u8;
        }
        let _ = desktop::decode(&c);
        let _ = desktop::read_message(&mut &c[..]);
    }
}

/// One HTTP/1.1 request to the dashboard over a fresh connection: (status, body).
fn http_post(addr: std::net::SocketAddr, path: &str, secret: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://{addr}\r\nCookie: nv_token={secret}\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Waits (at most 5 s) until `buf` holds `n` lines.
fn wait_lines(buf: &SharedBuf, n: usize) -> Vec<String> {
    let end = Instant::now() + Duration::from_secs(5);
    while buf.lines().len() < n && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    buf.lines()
}

/// Settings saved through the real dashboard (`POST /api/settings` with the cookie secret)
/// change the noise control of a running dispatcher, wired as `netvigil run` wires them:
/// known-safe hosts, apps and ports, the minimum severity, a snooze and the rate limit.
#[test]
fn dashboard_settings_reach_the_running_dispatcher() {
    const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let dir = tempdir("live-settings");
    let mut cfg = Config::default();
    cfg.alerts.rate_limit = None;
    cfg.judge.safe_apps = vec!["from-config".into()];
    let live = Arc::new(LiveNoise::new(Dispatcher::noise_settings(&cfg)));
    let out = SharedBuf::default();
    let d = Dispatcher::start_live(
        NoiseFilter::new(&cfg.alerts, SafeLists::default()),
        vec![channel(
            Box::new(Terminal::new(Box::new(out.clone()))),
            Severity::Info,
        )],
        64,
        now_nanos,
        Arc::clone(&live),
    );
    let view = crate::web::LiveView::new(
        engine::judge::Config::default(),
        None,
        crate::web::Limits::default(),
    );
    let mut o = crate::web::ServeOptions::new(None, SECRET.into());
    o.addr = "127.0.0.1:0".parse().unwrap();
    o.settings_path = Some(dir.join("settings.json"));
    o.sample_every = None;
    let ln = Arc::clone(&live);
    o.on_settings = Some(crate::web::settings::OnSave(Arc::new(move |s| {
        ln.set_dashboard(s)
    })));
    let web = crate::web::serve(view, o).unwrap();
    let post = |body: &str| http_post(web.addr, "/api/settings", SECRET, body);
    let port = |mut a: Alert, p: u16| {
        a.port = Some(p);
        a
    };

    // Before: the remote is not known-safe, the alert goes through.
    d.send_alert(&alert(
        Rule::NewRemote,
        Severity::Info,
        "curl",
        "cdn.quiet.example",
    ));
    assert_eq!(wait_lines(&out, 1).len(), 1);

    let (st, body) = post(
        r#"{"known_safe_hosts":["quiet.example","198.51.100.7"],"known_safe_apps":["backupd"],"known_safe_ports":[8443]}"#,
    );
    assert_eq!(st, 200, "{body}");
    assert!(dir.join("settings.json").exists());
    let s = live.get();
    assert_eq!(s.safe.apps, ["from-config", "backupd"], "the file's list is kept");
    d.send_alert(&alert(
        Rule::NewRemote,
        Severity::Info,
        "curl",
        "img.quiet.example",
    )); // safe host
    d.send_alert(&alert(Rule::NewRemote, Severity::Info, "curl", "198.51.100.7")); // safe address
    d.send_alert(&alert(Rule::NewApp, Severity::Low, "backupd", "b.example")); // safe app
    d.send_alert(&port(
        alert(Rule::UncommonPort, Severity::Low, "ssh", "c.example"),
        8443,
    )); // safe port
    d.send_alert(&alert(Rule::NewRemote, Severity::Info, "curl", "loud.example")); // passes
    let lines = wait_lines(&out, 2);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[1].contains("curl loud.example"), "{lines:?}");

    // Minimum severity from the dashboard.
    let (st, body) = post(r#"{"alert_min_severity":"medium"}"#);
    assert_eq!(st, 200, "{body}");
    d.send_alert(&alert(Rule::NewRemote, Severity::Low, "curl", "low.example"));
    d.send_alert(&alert(Rule::RedFlag, Severity::High, "curl", "high.example"));
    let lines = wait_lines(&out, 3);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[2].contains("[high] red_flag curl high.example"),
        "{lines:?}"
    );
    // The safe lists of the previous save are gone: this save has none.
    assert_eq!(live.get().safe.apps, ["from-config"]);

    // Snooze everything until a time in the future, then wake up with a rate limit of one
    // alert an hour.
    let (st, body) = post(r#"{"snooze_until":32503680000}"#);
    assert_eq!(st, 200, "{body}");
    d.send_alert(&alert(Rule::RedFlag, Severity::High, "curl", "snoozed.example"));
    let (st, body) = post(r#"{"snooze_until":1,"alert_rate_limit":"1/1h"}"#);
    assert_eq!(st, 200, "{body}");
    d.send_alert(&alert(Rule::VolumeSpike, Severity::High, "curl", "first.example"));
    d.send_alert(&alert(
        Rule::VolumeSpike,
        Severity::High,
        "curl",
        "second.example",
    ));
    let lines = wait_lines(&out, 4);

    // A bad value is refused, names the field, and changes nothing.
    let (st, body) = post(r#"{"alert_min_severity":"loud"}"#);
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("alert_min_severity"), "{body}");
    let (st, body) = post(r#"{"alert_rate_limit":"lots"}"#);
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("alert_rate_limit"), "{body}");
    web.stop();
    let s = d.shutdown(Duration::from_secs(5));
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines[3].contains("volume_spike curl first.example"), "{lines:?}");
    assert_eq!(s.suppressed(Verdict::Safe), 4);
    assert_eq!(s.suppressed(Verdict::BelowSeverity), 1);
    assert_eq!(s.suppressed(Verdict::Snoozed), 1);
    assert_eq!(s.suppressed(Verdict::RateLimited), 1);
    let _ = std::fs::remove_dir_all(dir);
}

/// Under systemd the terminal lines carry their syslog priority for the journal.
#[test]
fn terminal_lines_carry_journal_priorities_under_systemd() {
    let buf = SharedBuf::default();
    let mut t = Terminal::new(Box::new(buf.clone())).with_priorities(true);
    let stop = Stop::default();
    for (sev, rule) in [
        (Severity::High, Rule::RedFlag),
        (Severity::Medium, Rule::InboundAccept),
        (Severity::Low, Rule::NewApp),
        (Severity::Info, Rule::NewRemote),
    ] {
        t.deliver(&Notice::from_alert(&alert(rule, sev, "curl", "a.example")), &stop)
            .unwrap();
    }
    let lines = buf.lines();
    let prios: Vec<&str> = lines.iter().map(|l| &l[..3]).collect();
    assert_eq!(prios, ["<3>", "<4>", "<5>", "<6>"], "{lines:?}");
    assert!(
        lines[1].starts_with("<4>netvigil: alert [medium] inbound_accept curl"),
        "{lines:?}"
    );
    let plain = SharedBuf::default();
    Terminal::new(Box::new(plain.clone()))
        .deliver(
            &Notice::from_alert(&alert(Rule::RedFlag, Severity::High, "curl", "a.example")),
            &stop,
        )
        .unwrap();
    assert!(plain.lines()[0].starts_with("netvigil: alert [high]"));
}
