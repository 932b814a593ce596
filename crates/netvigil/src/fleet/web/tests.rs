//! The fleet dashboard served for real: HTTPS on loopback with a generated certificate, a
//! SQLite records store and fleet tables in a temporary data directory, filled through
//! `store::Backend::write_batch` with device ids, and a small HTTPS client pinned to the
//! certificate. Checks the session guard over every route (and unknown paths), login, logout,
//! expiry, bad passwords, the login limiter, the origin check, passkeys end to end with
//! software authenticators, and the data routes. `browser` drives headless Chromium.

mod browser;
mod iface;
#[allow(dead_code)]
#[path = "../../../tests/common/pinned.rs"]
mod pinned;

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use engine::Endpoint;
use engine::Record;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use store::{AlertRow, Backend as _, Batch, DeviceId, Severity};

use super::api::{PUBLIC, routes};
use super::auth::{COOKIE, Limits};
use super::webauthn::tests::{Soft, attestation, auth_data_bytes, client_json};
use super::webauthn::{FLAG_AT, FLAG_UP, FLAG_UV, b64url, b64url_decode};
use super::{WebHandle, WebOptions, serve, tls, users};
use crate::fleet::db::{FleetDb, Target};

pub(super) const PASSWORD: &str = "correct horse battery staple";
/// A destination no known list names, seen from devices 1, 2 and 3.
pub(super) const SHARED: &str = "beacon.unlisted-dest.net";
/// Seen from devices 1 and 2 only.
const PAIR: &str = "pair.unlisted-dest.net";

pub(super) fn temp_dir(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "nv-fleetweb-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn now_ns() -> i64 {
    crate::fleet::server::now_ns()
}

fn flow(i: u64, dev_app: usize, start: i64, server: &str, domain: Option<&str>, bytes: u64) -> Record {
    let mut f = store::sqlite::testdata::flow(i, start, 1);
    f.start = start;
    f.end = start + 2_000_000_000;
    f.proto = 6;
    f.client = Endpoint {
        ip: "192.168.1.20".parse().unwrap(),
        port: 40000 + (i % 20000) as u16,
    };
    f.server = Endpoint {
        ip: server.parse().unwrap(),
        port: 443,
    };
    f.app.domain = domain.map(str::to_string);
    f.to_client.bytes = bytes;
    f.to_server.bytes = bytes / 10;
    f.process = Some(Box::new(store::sqlite::testdata::process(dev_app, false)));
    Record::Flow(f)
}

/// A data directory with 4 enrolled devices (4 revoked) and their records.
pub(super) struct Fleet {
    pub dir: PathBuf,
    fleet_target: Target,
    store_target: super::StoreTarget,
}

/// [`fill`] with the fleet tables and records in SQLite files in a new data directory.
pub(super) fn fleet() -> Fleet {
    let dir = temp_dir("data");
    // The records file the server's agent listener writes (fleet::db::open_store).
    let mut st = crate::fleet::db::open_store(&Target::Dir(dir.clone())).unwrap();
    let store_target = super::StoreTarget::Sqlite(dir.join(crate::fleet::db::RECORDS_FILE));
    fill(dir.clone(), Target::Dir(dir), store_target, st.as_mut())
}

/// Enrolls four devices in the fleet tables (the fourth revoked), writes their records into
/// `st` with their device ids, a place database into `dir`, and the account `alice`.
fn fill(
    dir: PathBuf,
    fleet_target: Target,
    store_target: super::StoreTarget,
    st: &mut dyn store::Backend,
) -> Fleet {
    let now = now_ns();
    let mut db = FleetDb::open(&fleet_target).unwrap();
    for (i, name) in ["laptop", "desktop", "pi", "old-phone"].iter().enumerate() {
        let t = db.create_token(now, now + 3_600_000_000_000).unwrap();
        let a = db
            .enroll(&t, &format!("{:064x}", i + 1), name, now)
            .unwrap()
            .unwrap();
        assert_eq!(a.device.0, i as u32 + 1);
    }
    assert!(db.revoke(4, now).unwrap());
    let min = 60_000_000_000i64;
    let mut id = 0u64;
    let mut next = || {
        id += 1;
        id
    };
    // APPS[0] firefox, APPS[2] curl.
    for dev in 1..=4u32 {
        let mut recs = Vec::new();
        // Everyone: a known domain (github.com), at a "Test Net" address.
        recs.push(flow(
            next(),
            0,
            now - 10 * min,
            "203.0.113.10",
            Some("github.com"),
            5000,
        ));
        if dev <= 3 {
            recs.push(flow(next(), 2, now - 9 * min, "198.51.100.7", Some(SHARED), 800));
        }
        if dev <= 2 {
            recs.push(flow(next(), 2, now - 8 * min, "198.51.100.8", Some(PAIR), 300));
        }
        // Five hours ago: in the day window, not the hour.
        recs.push(flow(
            next(),
            0,
            now - 300 * min,
            "203.0.113.11",
            Some("old.unlisted-dest.net"),
            100,
        ));
        let alerts = if dev == 1 {
            vec![AlertRow {
                id: "00000000000000a1".into(),
                ts: now - 9 * min,
                severity: Severity::High,
                rule: "new_remote".into(),
                app: Some("curl".into()),
                remote: Some(SHARED.into()),
                reason: "curl talked to beacon.unlisted-dest.net for the first time".into(),
                json: "{}".into(),
            }]
        } else {
            Vec::new()
        };
        st.write_batch(&Batch {
            device: DeviceId(dev),
            records: recs,
            alerts,
            samples: Vec::new(),
            source: None,
        })
        .unwrap();
    }
    // A place database: 198.51.100.0/24 is "Shady Hosting" in DE, 203.0.113.0/24 "Test Net" in US.
    std::fs::write(
        dir.join("ip2asn-v4.tsv"),
        "198.51.100.0\t198.51.100.255\t64500\tDE\tShady Hosting\n203.0.113.0\t203.0.113.255\t64501\tUS\tTest Net\n",
    )
    .unwrap();
    let u = users::Users::open(&fleet_target);
    u.add("alice", PASSWORD, 1, false).unwrap();
    Fleet {
        dir,
        fleet_target,
        store_target,
    }
}

pub(super) fn options(f: &Fleet, limits: Limits) -> WebOptions {
    let web = super::web_dir(&f.dir);
    let mut places = intel::Places::new();
    places.add_file(&f.dir.join("ip2asn-v4.tsv")).unwrap();
    WebOptions {
        addr: "127.0.0.1:0".parse().unwrap(),
        cert: tls::WebCert::load_or_create(&web, &["localhost".into(), "127.0.0.1".into()]).unwrap(),
        users_dir: web,
        store: f.store_target.clone(),
        fleet: f.fleet_target.clone(),
        limits,
        places: Some(places),
        labels: intel::DomainTable::shipped(),
        cache_ttl: Duration::from_secs(15),
    }
}

pub(super) fn start(f: &Fleet, limits: Limits) -> (WebHandle, CertificateDer<'static>) {
    let o = options(f, limits);
    let cert = o.cert.chain[0].clone();
    (serve(o).unwrap(), cert)
}

// ---- a pinned HTTPS client ------------------------------------------------------------------

/// One HTTPS client: the pinned certificate, the server address, the Host it names, and a
/// cookie jar of one cookie.
pub(super) struct Client {
    cfg: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    pub host: String,
    pub cookie: Option<String>,
}

pub(super) struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Client {
    pub fn new(
        h: &WebHandle,
        cert: &CertificateDer<'static>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Client {
        Client {
            cfg: pinned::pinned_config(cert, versions),
            addr: h.addr,
            host: format!("localhost:{}", h.addr.port()),
            cookie: None,
        }
    }

    pub fn origin(&self) -> String {
        format!("https://{}", self.host)
    }

    pub fn req(&mut self, method: &str, path: &str, body: Option<&Value>, extra: &[(&str, &str)]) -> Resp {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.host,
            body.len()
        );
        if !body.is_empty() {
            head.push_str("Content-Type: application/json\r\n");
        }
        if let Some(c) = &self.cookie {
            head.push_str(&format!("Cookie: {COOKIE}={c}\r\n"));
        }
        for (k, v) in extra {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        head.push_str(&body);
        let conn =
            rustls::ClientConnection::new(self.cfg.clone(), ServerName::try_from("localhost").unwrap())
                .unwrap();
        let tcp = TcpStream::connect(self.addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut s = rustls::StreamOwned::new(conn, tcp);
        s.write_all(head.as_bytes()).unwrap();
        let mut raw = Vec::new();
        match s.read_to_end(&mut raw) {
            Ok(_) => {}
            // axum closes without close_notify after Connection: close.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
            Err(e) => panic!("{method} {path}: {e}"),
        }
        let text = String::from_utf8_lossy(&raw).to_string();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{method} {path}: no status in {text:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let chunked = headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
        let body = if chunked { dechunk(body) } else { body.to_string() };
        let r = Resp {
            status,
            headers,
            body,
        };
        if let Some(c) = r.header("set-cookie") {
            let v = c
                .split(';')
                .next()
                .unwrap_or("")
                .split_once('=')
                .map(|(_, v)| v.to_string());
            self.cookie = v.filter(|v| !v.is_empty());
        }
        r
    }

    pub fn get(&mut self, path: &str) -> Resp {
        self.req("GET", path, None, &[])
    }

    pub fn post(&mut self, path: &str, body: &Value) -> Resp {
        let o = self.origin();
        self.req("POST", path, Some(body), &[("Origin", &o)])
    }

    pub fn login(&mut self, user: &str, password: &str) -> Resp {
        self.post("/api/login", &json!({"user": user, "password": password}))
    }
}

fn dechunk(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

// ---- the session guard --------------------------------------------------------------------

/// (method, path pattern) of every route the router is built from.
fn route_list() -> Vec<(&'static str, &'static str)> {
    routes().into_iter().map(|(m, p, _)| (m, p)).collect()
}

/// A path that matches the pattern (parameters filled).
fn concrete(p: &str) -> String {
    p.replace("{id}", "1")
}

#[test]
fn every_route_but_the_allowed_list_needs_a_session() {
    let f = fleet();
    let (h, cert) = start(&f, Limits::default());
    let mut c = Client::new(&h, &cert, &[&rustls::version::TLS13]);
    let unknown = [
        "/api/nothing",
        "/admin",
        "/api/devices/1/../../etc/passwd",
        "/api/devices/999/flows",
        "/api/devices/x/apps",
        "/APP.JS",
        "/api/login/",
        "/.env",
        "/api/fleet",
    ];
    let mut checked = 0;
    let mut answered_without_session = Vec::new();
    let methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];
    let all = route_list();
    assert_eq!(
        all.len(),
        20,
        "a route was added or removed: walk it, document it"
    );
    let paths: Vec<String> = all
        .iter()
        .map(|(_, p)| concrete(p))
        .chain(unknown.iter().map(|s| s.to_string()))
        .collect();
    for path in &paths {
        for m in methods {
            let o = c.origin();
            let r = c.req(m, path, Some(&json!({})), &[("Origin", &o)]);
            checked += 1;
            let public = PUBLIC
                .iter()
                .any(|(pm, pp)| *pp == path && (*pm == m || (*pm == "GET" && m == "HEAD")));
            if public {
                continue;
            }
            if r.status != 401 {
                answered_without_session.push(format!("{m} {path} -> {}", r.status));
            } else if m != "HEAD" {
                assert!(
                    r.json()["error"].as_str().unwrap().contains("log in"),
                    "{m} {path}"
                );
            }
        }
    }
    assert!(
        answered_without_session.is_empty(),
        "answered without a session: {answered_without_session:#?}"
    );
    assert_eq!(checked, (all.len() + unknown.len()) * methods.len());
    // The allowed list answers as it should without a session.
    assert_eq!(c.get("/").status, 200);
    let js = c.get("/app.js");
    assert_eq!(js.status, 200);
    assert!(js.header("content-type").unwrap().starts_with("text/javascript"));
    // ... and with a session, the same unknown paths are 404 and the routes answer.
    assert_eq!(c.login("alice", PASSWORD).status, 200);
    assert_eq!(c.get("/api/nothing").status, 404);
    for (m, p) in all.iter().filter(|(m, _)| *m == "GET") {
        let r = c.req(m, &concrete(p), None, &[]);
        assert_eq!(r.status, 200, "{m} {p}: {}", r.body);
    }
    h.stop();
    let _ = std::fs::remove_dir_all(&f.dir);
}

#[test]
fn route_table_is_the_one_served() {
    // Every documented route exists (a session gets something other than the fallback's 404
    // for its method) and the allowed list is a subset of the routes.
    let all = route_list();
    for p in PUBLIC {
        assert!(all.contains(p), "{p:?} is public but not a route");
    }
    let f = fleet();
    let (h, cert) = start(&f, Limits::default());
    let mut c = Client::new(&h, &cert, &[&rustls::version::TLS13]);
    assert_eq!(c.login("alice", PASSWORD).status, 200);
    for (m, p) in &all {
        if *p == "/api/logout" {
            continue;
        }
        let o = c.origin();
        let r = c.req(
            m,
            &concrete(p),
            Some(&json!({})).filter(|_| *m == "POST"),
            &[("Origin", &o)],
        );
        let fallback = r.status == 404 && r.body.contains("no such page or route");
        assert!(!fallback, "{m} {p} is not routed");
    }
    let md =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/fleet-dashboard.md"))
            .unwrap();
    for (m, p) in &all {
        assert!(
            md.contains(&format!("`{m} {p}`")),
            "docs/fleet-dashboard.md lacks `{m} {p}`"
        );
    }
    h.stop();
    let _ = std::fs::remove_dir_all(&f.dir);
}

// ---- login ----------------------------------------------------------------------------------

#[test]
fn login_logout_and_cookie_flags() {
    let f = fleet();
    let (h, cert) = start(&f, Limits::default());
    // TLS 1.2 is served too.
    let mut c = Client::new(&h, &cert, &[&rustls::version::TLS12]);
    assert_eq!(c.get("/api/me").status, 401);
    let r = c.login("alice", PASSWORD);
    assert_eq!(r.status, 200, "{}", r.body);
    let set = r.header("set-cookie").unwrap().to_string();
    for flag in [
        "__Host-nv_session=",
        "Secure",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=43200",
    ] {
        assert!(set.contains(flag), "{flag} missing in {set}");
    }
    let token = c.cookie.clone().unwrap();
    assert_eq!(token.len(), 64);
    let me = c.get("/api/me");
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["user"], "alice");
    assert_eq!(me.json()["method"], "password");
    assert_eq!(me.header("cache-control"), Some("no-store"));
    assert!(
        me.header("content-security-policy")
            .unwrap()
            .contains("default-src 'none'")
    );
    // Logout ends the session on the server, not only in the browser.
    let r = c.post("/api/logout", &json!({}));
    assert_eq!(r.status, 200);
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    c.cookie = Some(token);
    assert_eq!(c.get("/api/me").status, 401);
    // A made-up token: no.
    c.cookie = Some("00".repeat(32));
    assert_eq!(c.get("/api/devices").status, 401);
    h.stop();
    let _ = std::fs::remove_dir_all(&f.dir);
}

#[test]
fn bad_passwords_unknown_users_and_the_limiter() {
    let f = fleet();
    let (h, cert) = start(
        &f,
        Limits {
            per_user: 3,
            per_addr: 5,
            ..Limits::default()
        },
    );
    let mut c = Client::new(&h, &cert, &[&rustls::version::TLS13]);
    let r = c.login("alice", "wrong password!");
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "wrong user name or password");
    assert!(r.header("set-cookie").is_none());
    let r = c.login("mallory", PASSWORD);
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "wrong user name or password");
    c.login("alice", "wrong password!!");
    c.login("alice", "wrong password!!!");
    // Three failures for alice: now even the right password is refused for a while.
    let r = c.login("alice", PASSWORD);
    assert_eq!(r.status, 429, "{}", r.body);
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(wait > 800 && wait <= 900, "{wait}");
    assert!(c.cookie.is_none());
    // Another account from the same address still works (address limit 5: 4 failures so far) ...
    users::Users::open(&f.fleet_target)
        .add("bob", "bobs long password", 1, false)
        .unwrap();
    assert_eq!(c.login("bob", "bobs long password").status, 200);
    // ... until the address limit: one more failure, then everything from here waits.
    c.cookie = None;
    assert_eq!(c.login("bob", "nope nope nope").status, 401);
    assert_eq!(c.login("bob", "bobs long password").status, 429);
    // Malformed bodies are a clear 400.
    let r = c.req("POST", "/api/login", None, &[]);
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].as_str().unwrap().contains("JSON"));
    h.stop();
    let _ = std::fs::remove_dir_all(&f.dir);
}

#[test]
fn sessions_expire() {
    let f = fleet();
    let (h, cert) = start(
        &f,
        Limits {
            session_ttl: Duration::from_secs(2),
            ..Limits::default()
        },
    );
    let mut c = Client::new(&h, &cert, &[&rustls::version::TLS13]);
    let r = c.login("alice", PASSWORD);
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=2"));
    assert_eq!(c.get("/api/me").status, 200);
    std::thread::sleep(Duration::from_millis(2300));
    assert_eq!(c.get("/api/me").status, 401);
    h.stop();
    let _ = std::fs::remove_dir_all(&f.dir);
}

#[test]
fn removing_an_account_ends_its_sessions() {
    let f = fleet();
    let (h, cert) = start(&f, Limits::default());
    let mut c = Client::new(&h, &cert, &[&rustls::version::TLS13]);
    assert_eq!(c.login("alice", PASSWORD).status, 200);
    assert_eq!(c.get("/api/me").status, 200);
    assert!(users::Users::open(&f.fleet_target).remove("alice").unwrap());
    assert_eq!(c.get("/api/me").status, 401);
    h.stop();
    let _ = std::fs::remove_dir_all(&f.dir);
}

#[test]
fn cross_origin_state_changes_are_refused() {
    let f = fleet();
    let (h, cert) = start(&f, Limits::default());
    let mut c = Client::new(&h, &cert, &[&rustls::version::TLS13]);
    let body = json!({"user": "alice", "password": PASSWORD});
    for origin in ["https://evil.example", "http://localhost", "null"] {
        let r = c.req("POST", "/api/login", Some(&body), &[("Origin", origin)]);
        assert_eq!(r.status, 403, "{origin}");
        assert!(r.header("set-cookie").is_none());
    }
    let r = c.req(
        "POST",
        "/api/login",
        Some(&body),
        &[("Sec-Fetch-Site", "cross-site")],
    );
    assert_eq!(r.status, 403);
    // Logged in, a cross-origin logout (or passkey registration) is refused too.
    assert_eq!(c.login("alice", PASSWORD).status, 200);
    let r = c.req(
        "POST",
        "/api/passkey/register/begin",
        Some(&json!({})),
        &[("Origin", "https://evil.example")],
    );
    assert_eq!(r.status, 403);
    assert_eq!(c.get("/api/me").status, 200);
    h.stop();
    let _ = std::fs::remove_dir_all(&f.dir);
}

// ---- passkeys over HTTPS with software authenticators ------------------------------------------

fn register(c: &mut Client, soft: &Soft, cred_id: &[u8]) -> Resp {
    let opts = c.post("/api/passkey/register/begin", &json!({}));
    assert_eq!(opts.status, 200, "{}", opts.body);
    let pk = &opts.json()["publicKey"];
    assert_eq!(pk["rp"]["id"], "localhost");
    let ch = b64url_decode(pk["challenge"].as_str().unwrap()).unwrap();
    assert_eq!(ch.len(), 32);
    let auth = auth_data_bytes(
        "localhost",
        FLAG_UP | FLAG_UV | FLAG_AT,
        0,
        Some((cred_id, &soft.cose())),
    );
    let cd = client_json("webauthn.create", &ch, &c.origin());
    c.post(
        "/api/passkey/register/finish",
        &json!({"clientDataJSON": b64url(&cd), "attestationObject": b64url(&attestation(&auth))}),
    )
}

fn assert_login(c: &mut Client, soft: &Soft, cred_id: &[u8], count: u32, user: Option<&str>) -> Resp {
    let begin = c.post("/api/passkey/login/begin", &json!({"user": user}));
    assert_eq!(begin.status, 200, "{}", begin.body);
    let ch = b64url_decode(begin.json()["publicKey"]["challenge"].as_str().unwrap()).unwrap();
    let ad = auth_data_bytes("localhost", FLAG_UP | FLAG_UV, count, None);
    let cd = client_json("webauthn.get", &ch, &c.origin());
    let sig = soft.sign(&[&ad[..], &Sha256::digest(&cd)[..]].concat());
    c.post(
        "/api/passkey/login/finish",
        &json!({"id": b64url(cred_id), "clientDataJSON": b64url(&cd),
                "authenticatorData": b64url(&ad), "signature": b64url(&sig)}),
    )
}

#[test]
fn passkeys_register_and_log_in_es256_and_eddsa() {
    let f = fleet();
    let (h, cert) = start(&f, Limits::default());
    let mut c = Client::new(&h, &cert, &[&rustls::version::TLS13]);
    // Registration needs a session.
    assert_eq!(c.post("/api/passkey/register/begin", &json!({})).status, 401);
    assert_eq!(c.login("alice", PASSWORD).status, 200);
    let (p256, ed) = (Soft::p256(), Soft::ed());
    let r = register(&mut c, &p256, b"p256-cred");
    assert_eq!(r.status, 200, "{}", r.body);
    let r = register(&mut c, &ed, b"ed25519-cred");
    assert_eq!(r.status, 200, "{}", r.body);
    let list = c.get("/api/passkeys").json();
    let algs: Vec<&str> = list["passkeys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["alg"].as_str().unwrap())
        .collect();
    assert_eq!(algs, ["ES256", "EdDSA"]);
    // Log out, log in with each.
    c.post("/api/logout", &json!({}));
    c.cookie = None;
    let r = assert_login(&mut c, &p256, b"p256-cred", 1, None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(c.get("/api/me").json()["method"], "passkey");
    c.cookie = None;
    let r = assert_login(&mut c, &ed, b"ed25519-cred", 7, Some("alice"));
    assert_eq!(r.status, 200, "{}", r.body);
    c.cookie = None;
    // The same counter again (a cloned authenticator): refused.
    let r = assert_login(&mut c, &p256, b"p256-cred", 1, None);
    assert_eq!(r.status, 401);
    assert!(
        r.json()["error"].as_str().unwrap().contains("cloned"),
        "{}",
        r.body
    );
    assert!(c.cookie.is_none());
    // Another key signing for this credential: refused.
    let r = assert_login(&mut c, &Soft::p256(), b"p256-cred", 2, None);
    assert_eq!(r.status, 401);
    assert!(
        r.json()["error"].as_str().unwrap().contains("signature"),
        "{}",
        r.body
    );
    // A replayed answer (challenge already used): refused.
    let begin = c.post("/api/passkey/login/begin", &json!({}));
    let ch = b64url_decode(begin.json()["publicKey"]["challenge"].as_str().unwrap()).unwrap();
    let ad = auth_data_bytes("localhost", FLAG_UP | FLAG_UV, 3, None);
    let cd = client_json("webauthn.get", &ch, &c.origin());
    let sig = p256.sign(&[&ad[..], &Sha256::digest(&cd)[..]].concat());
    let body = json!({"id": b64url(b"p256-cred"), "clientDataJSON": b64url(&cd),
                      "authenticatorData": b64url(&ad), "signature": b64url(&sig)});
    assert_eq!(c.post("/api/passkey/login/finish", &body).status, 200);
    c.cookie = None;
    let r = c.post("/api/passkey/login/finish", &body);
    assert_eq!(r.status, 401);
    assert!(
        r.json()["error"].as_str().unwrap().contains("challenge"),
        "{}",
        r.body
    );
    // The stored counter moved to 3.
    let u = users::Users::open(&f.fleet_target).get("alice").unwrap().unwrap();
    assert_eq!(u.passkeys[0].sign_count, 3);
    assert!(u.passkeys[0].last_used_ms.is_some());
    // An answer made for another origin: refused.
    let begin = c.post("/api/passkey/login/begin", &json!({}));
    let ch = b64url_decode(begin.json()["publicKey"]["challenge"].as_str().unwrap()).unwrap();
    let ad = auth_data_bytes("localhost", FLAG_UP | FLAG_UV, 9, None);
    let cd = client_json("webauthn.get", &ch, "https://evil.example");
    let sig = p256.sign(&[&ad[..], &Sha256::digest(&cd)[..]].concat());
    let r = c.post(
        "/api/passkey/login/finish",
        &json!({"id": b64url(b"p256-cred"), "clientDataJSON": b64url(&cd),
                "authenticatorData": b64url(&ad), "signature": b64url(&sig)}),
    );
    assert_eq!(r.status, 401);
    assert!(
        r.json()["error"].as_str().unwrap().contains("origin"),
        "{}",
        r.body
    );
    h.stop();
    let _ = std::fs::remove_dir_all(&f.dir);
}

// ---- data -------------------------------------------------------------------------------------

#[test]
fn devices_flows_apps_alerts_aggregates_and_patterns() {
    use engine::enrich::DomainLabels as _;
    let labels = intel::DomainTable::shipped();
    assert!(
        labels.label("github.com").is_some(),
        "github.com is a known domain"
    );
    assert!(labels.label(SHARED).is_none() && labels.label(PAIR).is_none());
    let f = fleet();
    let (h, cert) = start(&f, Limits::default());
    let mut c = Client::new(&h, &cert, &[&rustls::version::TLS13]);
    assert_eq!(c.login("alice", PASSWORD).status, 200);

    let d = c.get("/api/devices").json();
    let devs = d["devices"].as_array().unwrap();
    let names: Vec<&str> = devs.iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["laptop", "desktop", "pi", "old-phone"]);
    let flows: Vec<u64> = devs.iter().map(|d| d["flows"].as_u64().unwrap()).collect();
    assert_eq!(flows, [4, 4, 3, 2]);
    let revoked: Vec<bool> = devs.iter().map(|d| d["revoked"].as_bool().unwrap()).collect();
    assert_eq!(revoked, [false, false, false, true]);
    let now_ms = now_ns() / 1_000_000;
    let last = devs[0]["last_seen_ms"].as_i64().unwrap();
    assert!(
        now_ms - last < 10 * 60_000 && now_ms - last > 5 * 60_000,
        "{last} vs {now_ms}"
    );

    // Device 1's flows, newest first, placed.
    let fl = c.get("/api/devices/1/flows").json();
    let rows = fl["flows"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0]["domain"], PAIR);
    assert_eq!(rows[0]["org"], "Shady Hosting");
    assert_eq!(rows[0]["country"], "DE");
    assert_eq!(rows[0]["asn"], 64500);
    assert_eq!(rows[0]["app"], "curl");
    assert!(
        rows.iter()
            .all(|r| r["client"].as_str().unwrap().starts_with("192.168.1.20:"))
    );
    let fl = c.get("/api/devices/3/flows?since=1h").json();
    assert_eq!(
        fl["flows"].as_array().unwrap().len(),
        2,
        "device 3 in the last hour"
    );
    assert_eq!(c.get("/api/devices/99/flows").status, 404);
    assert_eq!(c.get("/api/devices/0/flows").status, 400);
    assert_eq!(c.get("/api/devices/1/flows?limit=0").status, 400);
    assert_eq!(c.get("/api/devices/1/flows?since=yesterdayish").status, 400);

    // Apps of device 1: hour vs day.
    let apps = c.get("/api/devices/1/apps?window=hour").json();
    let a: Vec<(String, u64)> = apps["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["app"].as_str().unwrap().to_string(),
                a["flows"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(a, [("firefox".to_string(), 1), ("curl".to_string(), 2)]);
    let apps = c.get("/api/devices/1/apps?window=day").json();
    let ff = apps["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["app"] == "firefox")
        .unwrap();
    assert_eq!(ff["flows"], 2);
    assert_eq!(c.get("/api/devices/1/apps?window=week").status, 400);

    // Alerts: only device 1 has one.
    let al = c.get("/api/devices/1/alerts").json();
    assert_eq!(al["alerts"][0]["severity"], "high");
    assert_eq!(al["alerts"][0]["remote"], SHARED);
    assert_eq!(
        c.get("/api/devices/2/alerts").json()["alerts"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // Fleet aggregates over the hour: 3 + 3 + 2 + 1 flows (the five-hour-old ones are out).
    let ag = c.get("/api/fleet/aggregates?window=hour").json();
    assert_eq!(ag["flows"], 3 + 3 + 2 + 1);
    assert_eq!(ag["placed_flows"], 3 + 3 + 2 + 1);
    assert_eq!(ag["truncated"], false);
    let by_dev: Vec<(String, u64)> = ag["by_device"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["flows"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(
        by_dev.contains(&("laptop".into(), 3)) && by_dev.contains(&("old-phone".into(), 1)),
        "{by_dev:?}"
    );
    let org = |k: &str| {
        ag["by_org"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == k)
            .cloned()
            .unwrap()
    };
    assert_eq!(org("Test Net")["flows"], 4);
    assert_eq!(org("Test Net")["devices"], 4);
    assert_eq!(org("Test Net")["asn"], 64501);
    assert_eq!(org("Shady Hosting")["flows"], 5);
    let country = |k: &str| {
        ag["by_country"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == k)
            .cloned()
            .unwrap()
    };
    assert_eq!(country("DE")["devices"], 3);
    assert_eq!(country("US")["bytes_in"], 4 * 5000);
    let app = |k: &str| {
        ag["by_app"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == k)
            .cloned()
            .unwrap()
    };
    assert_eq!(app("curl")["flows"], 5);
    let ag_day = c.get("/api/fleet/aggregates?window=day").json();
    assert_eq!(ag_day["flows"], 9 + 4);

    // Patterns over the hour: only SHARED is unknown and seen from 3 devices (PAIR: 2;
    // github.com: known; old.unlisted-dest.net: 4 devices, but only in the day window).
    let p = c.get("/api/fleet/patterns?window=hour").json();
    let dests: Vec<&str> = p["patterns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["destination"].as_str().unwrap())
        .collect();
    assert_eq!(dests, [SHARED]);
    let first = &p["patterns"][0];
    assert_eq!(first["device_count"], 3);
    assert_eq!(first["place"]["org"], "Shady Hosting");
    assert_eq!(first["apps"], json!(["curl"]));
    let p = c.get("/api/fleet/patterns").json();
    let dests: Vec<&str> = p["patterns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["destination"].as_str().unwrap())
        .collect();
    assert_eq!(
        dests,
        ["old.unlisted-dest.net", SHARED],
        "day window, most devices first"
    );
    let p = c.get("/api/fleet/patterns?window=hour&min_devices=2").json();
    assert_eq!(p["patterns"].as_array().unwrap().len(), 2);
    assert_eq!(c.get("/api/fleet/patterns?min_devices=1").status, 400);
    h.stop();
    let _ = std::fs::remove_dir_all(&f.dir);
}

#[test]
fn unplaced_addresses_and_private_destinations() {
    // Without a place database the fields are null and the answer says so; private
    // destinations never make a pattern.
    let f = fleet();
    let mut o = options(&f, Limits::default());
    o.places = None;
    let h = serve(o).unwrap();
    let cert = tls::WebCert::load_or_create(&super::web_dir(&f.dir), &[])
        .unwrap()
        .chain[0]
        .clone();
    let mut st = store::SqliteStore::open(&f.dir.join(crate::fleet::db::RECORDS_FILE)).unwrap();
    for dev in 1..=3 {
        st.write_batch(&Batch {
            device: DeviceId(dev),
            records: vec![flow(
                1000 + u64::from(dev),
                2,
                now_ns() - 60_000_000_000,
                "10.1.2.3",
                None,
                10,
            )],
            ..Batch::default()
        })
        .unwrap();
    }
    let mut c = Client::new(&h, &cert, &[&rustls::version::TLS13]);
    assert_eq!(c.login("alice", PASSWORD).status, 200);
    let ag = c.get("/api/fleet/aggregates").json();
    assert_eq!(ag["places"], false);
    assert_eq!(ag["by_org"][0]["key"], "(unknown)");
    let p = c.get("/api/fleet/patterns?window=hour").json();
    let dests: Vec<&str> = p["patterns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["destination"].as_str().unwrap())
        .collect();
    assert!(!dests.iter().any(|d| d.parse::<IpAddr>().is_ok()), "{dests:?}");
    h.stop();
    let _ = std::fs::remove_dir_all(&f.dir);
}

// ---- PostgreSQL underneath ----------------------------------------------------------------------

/// The store crate's PostgreSQL test harness (initdb + pg_ctl, unix socket only). `fleet::tests`
/// loads it too (private there, so this is a second instance and, when both run in one test
/// binary, a second server).
#[allow(clippy::duplicate_mod)]
#[path = "../../../../store/tests/support/pg_server.rs"]
mod pg_server;

#[test]
fn postgres_store_and_fleet_tables_underneath() {
    let Some(pg) = pg_server::shared() else { return };
    let db = pg.create_db("nv_fleetweb");
    let url = db.url();
    let mut st = store::pg::PgStore::connect(&url, DeviceId(0)).unwrap();
    let f = fill(
        temp_dir("pg"),
        Target::Postgres(url.clone()),
        super::StoreTarget::Postgres(url),
        &mut st,
    );
    let (h, cert) = start(&f, Limits::default());
    let mut c = Client::new(&h, &cert, &[&rustls::version::TLS13]);
    assert_eq!(c.get("/api/devices").status, 401);
    assert_eq!(c.login("alice", PASSWORD).status, 200);
    let d = c.get("/api/devices").json();
    let flows: Vec<u64> = d["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["flows"].as_u64().unwrap())
        .collect();
    assert_eq!(flows, [4, 4, 3, 2]);
    let fl = c.get("/api/devices/2/flows").json();
    let rows = fl["flows"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0]["domain"], PAIR);
    assert_eq!(rows[0]["org"], "Shady Hosting");
    assert_eq!(c.get("/api/fleet/aggregates?window=hour").json()["flows"], 9);
    let p = c.get("/api/fleet/patterns?window=hour").json();
    assert_eq!(p["patterns"][0]["destination"], SHARED);
    assert_eq!(p["patterns"].as_array().unwrap().len(), 1);
    // A gateway agent's LAN devices, from PostgreSQL's events.
    write_lan(&mut st);
    check_lan(&mut c);
    h.stop();
    let _ = std::fs::remove_dir_all(&f.dir);
}

#[test]
fn a_given_certificate_is_served() {
    // A certificate made elsewhere (rcgen: ECDSA P-256, PKCS#8 PEM), given as --web-cert/--web-key.
    let f = fleet();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cp, kp) = (f.dir.join("given.pem"), f.dir.join("given.key"));
    std::fs::write(&cp, tls::pem("CERTIFICATE", ck.cert.der())).unwrap();
    std::fs::write(&kp, tls::pem("PRIVATE KEY", &ck.signing_key.serialize_der())).unwrap();
    let mut o = options(&f, Limits::default());
    o.cert = tls::WebCert::from_pem_files(&cp, &kp).unwrap();
    assert!(!o.cert.generated);
    let h = serve(o).unwrap();
    let der = ck.cert.der().clone();
    let want: Vec<String> = Sha256::digest(der.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    assert_eq!(h.fingerprint, want.join(":"));
    let mut c = Client::new(&h, &der, &[&rustls::version::TLS13]);
    assert_eq!(c.get("/api/me").status, 401);
    assert_eq!(c.login("alice", PASSWORD).status, 200);
    // The generated one is not what is served: a client pinned to it fails the handshake.
    let generated = tls::WebCert::load_or_create(&super::web_dir(&f.dir), &[]).unwrap();
    let cfg = pinned::pinned_config(&generated.chain[0], rustls::DEFAULT_VERSIONS);
    let conn = rustls::ClientConnection::new(cfg, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut s = rustls::StreamOwned::new(conn, TcpStream::connect(h.addr).unwrap());
    assert!(
        s.write_all(b"GET / HTTP/1.1\r\n\r\n")
            .and_then(|_| s.flush())
            .is_err()
    );
    h.stop();
    let _ = std::fs::remove_dir_all(&f.dir);
}

/// Two servers' dashboards on one PostgreSQL database: a session made on one works on the
/// other, a logout on one ends it on both, a restart keeps it, removing the account ends its
/// sessions everywhere, and an old `users.json` of one server is imported for both.
#[test]
fn postgres_two_dashboards_share_accounts_and_sessions() {
    let Some(pg) = pg_server::shared() else { return };
    let db = pg.create_db("nv_fleetweb_two");
    let url = db.url();
    let target = Target::Postgres(url.clone());
    let mut st = store::pg::PgStore::connect(&url, DeviceId(0)).unwrap();
    let f = fill(
        temp_dir("pg2"),
        target.clone(),
        super::StoreTarget::Postgres(url),
        &mut st,
    );
    // Server B has its own data directory, with an accounts file of an older version.
    let b_dir = temp_dir("pg2-b");
    let b_web = super::web_dir(&b_dir);
    std::fs::create_dir_all(&b_web).unwrap();
    let hash = users::hash_password("the old file's password").unwrap();
    let old = json!({"version": 1, "users": [
        {"name": "olduser", "hash": hash, "created_ms": 3, "handle": "b2xk", "passkeys": []}]});
    std::fs::write(b_web.join("users.json"), old.to_string()).unwrap();
    super::accounts(&target, &b_web).unwrap();
    assert!(b_web.join("users.json.imported").exists());
    assert!(!b_web.join("users.json").exists());

    let (ha, cert) = start(&f, Limits::default());
    let (hb, _) = start(&f, Limits::default());
    let mut a = Client::new(&ha, &cert, &[&rustls::version::TLS13]);
    let mut b = Client::new(&hb, &cert, &[&rustls::version::TLS13]);
    // Imported on B's start, known on A.
    assert_eq!(a.login("olduser", "the old file's password").status, 200);
    assert_eq!(a.req("POST", "/api/logout", None, &[]).status, 200);

    // Made on A, valid on B.
    assert_eq!(a.login("alice", PASSWORD).status, 200);
    b.cookie = a.cookie.clone();
    assert_eq!(b.get("/api/me").json()["user"], "alice");
    assert_eq!(b.get("/api/devices").status, 200);
    // Logout on A ends it on B.
    assert_eq!(a.req("POST", "/api/logout", None, &[]).status, 200);
    assert_eq!(b.get("/api/me").status, 401);
    assert_eq!(b.get("/api/devices").status, 401);

    // A restart of A logs nobody out.
    assert_eq!(a.login("alice", PASSWORD).status, 200);
    let kept = a.cookie.clone();
    ha.stop();
    let (ha, _) = start(&f, Limits::default());
    let mut a = Client::new(&ha, &cert, &[&rustls::version::TLS13]);
    a.cookie = kept;
    assert_eq!(a.get("/api/me").json()["user"], "alice");

    // Removing the account (by the admin command's code, on neither server) ends every
    // session of it on both.
    let mut b2 = Client::new(&hb, &cert, &[&rustls::version::TLS13]);
    assert_eq!(b2.login("alice", PASSWORD).status, 200);
    assert_eq!(b2.get("/api/me").status, 200);
    assert!(users::Users::open(&target).remove("alice").unwrap());
    assert_eq!(a.get("/api/me").status, 401);
    assert_eq!(b2.get("/api/me").status, 401);
    assert_eq!(b2.login("alice", PASSWORD).status, 401);
    // Only the tokens' SHA-256 are in the table: the cookie value is not.
    let mut c = db.client();
    let n: i64 = c
        .query_one(
            "SELECT COUNT(*) FROM fleet_sessions WHERE hash = $1",
            &[&a.cookie.clone().unwrap()],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    let kept: i64 = c
        .query_one(
            "SELECT COUNT(*) FROM fleet_sessions WHERE user_name = 'olduser'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(kept, 0, "a logout deletes the row");
    ha.stop();
    hb.stop();
    let _ = std::fs::remove_dir_all(&f.dir);
    let _ = std::fs::remove_dir_all(&b_dir);
}

// ---- LAN devices of a gateway agent -------------------------------------------------------------

/// A gateway agent's `device` record (docs/records.md) at `ts`.
fn lan_record(ts: &str, mac: &str, host: Option<&str>, mdns: &[&str], ipv4: &str) -> Record {
    let line = json!({"type": "device", "v": 1, "ts": ts, "event": "seen", "mac": mac,
        "mac_private": false, "vendor": "Apple, Inc.", "name": host, "hostname": host,
        "vendor_class": null, "mdns_names": mdns, "mdns_instances": [], "ipv4": [ipv4],
        "ipv6": [], "first_seen": "2026-01-02T03:04:05Z", "changed": []});
    Record::from_json(&line.to_string()).unwrap()
}

/// Writes, for device 3: a phone seen, then changed (an mDNS name learnt), with a flow from its
/// address a minute ago; and a TV seen once, long ago.
fn write_lan(st: &mut dyn store::Backend) {
    let mut recent = flow(9001, 0, now_ns() - 60_000_000_000, "203.0.113.11", None, 5);
    if let Record::Flow(f) = &mut recent {
        f.client.ip = "192.168.77.10".parse().unwrap();
    }
    st.write_batch(&Batch {
        device: DeviceId(3),
        records: vec![
            lan_record(
                "2026-01-02T03:04:05Z",
                "3c:22:fb:00:77:10",
                Some("alices-iphone"),
                &[],
                "192.168.77.10",
            ),
            lan_record(
                "2026-01-02T03:05:00Z",
                "3c:22:fb:00:77:10",
                Some("alices-iphone"),
                &["Alices-iPhone.local"],
                "192.168.77.10",
            ),
            lan_record(
                "2026-01-01T00:00:00Z",
                "00:09:df:00:00:01",
                None,
                &["tv.local"],
                "192.168.77.20",
            ),
            recent,
        ],
        ..Batch::default()
    })
    .unwrap();
}

fn check_lan(c: &mut Client) {
    let j = c.get("/api/devices/3/lan").json();
    let devs = j["lan_devices"].as_array().unwrap();
    assert_eq!(devs.len(), 2, "{j}");
    let phone = &devs[0];
    assert_eq!(phone["mac"], "3c:22:fb:00:77:10", "seen a minute ago: first");
    assert_eq!(phone["vendor"], "Apple, Inc.");
    assert_eq!(phone["hostname"], "alices-iphone");
    assert_eq!(
        phone["mdns_name"], "Alices-iPhone.local",
        "the newest record counts"
    );
    let last = phone["last_seen_ms"].as_i64().unwrap();
    let now_ms = now_ns() / 1_000_000;
    assert!(last > now_ms - 120_000 && last <= now_ms, "from the flow: {last}");
    let tv = &devs[1];
    assert_eq!(tv["mac"], "00:09:df:00:00:01");
    assert_eq!(tv["hostname"], Value::Null);
    assert_eq!(tv["mdns_name"], "tv.local");
    assert_eq!(tv["last_seen_ms"], 1_767_225_600_000i64, "its record's time");
    // A device without gateway records: an empty list; an unknown device: 404.
    assert_eq!(c.get("/api/devices/1/lan").json()["lan_devices"], json!([]));
    assert_eq!(c.get("/api/devices/99/lan").status, 404);
}

#[test]
fn lan_devices_of_a_gateway_agent() {
    let f = fleet();
    let mut st = store::SqliteStore::open(&f.dir.join(crate::fleet::db::RECORDS_FILE)).unwrap();
    write_lan(&mut st);
    drop(st);
    let (h, cert) = start(&f, Limits::default());
    let mut c = Client::new(&h, &cert, &[&rustls::version::TLS13]);
    assert_eq!(c.get("/api/devices/3/lan").status, 401);
    assert_eq!(c.login("alice", PASSWORD).status, 200);
    check_lan(&mut c);
    h.stop();
    let _ = std::fs::remove_dir_all(&f.dir);
}
