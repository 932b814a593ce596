//! The fleet dashboard in a real headless Chromium (Debian's `chromium` and `chromium-driver`)
//! over HTTPS with the self-signed certificate, driven through chromedriver's WebDriver API
//! with a minimal client over std::net. Chromium talks only to loopback (a dead proxy for
//! everything else, background networking off).
//!
//! Walks: the login page, a wrong password, logging in, the devices table, picking a device
//! and seeing its flows, the fleet and patterns views, registering a passkey with
//! chromedriver's virtual authenticator (CTAP2, internal, resident keys), logging out and back
//! in with that passkey, and the phone-sized layout without horizontal overflow. Screenshots
//! at 1280x800 and 390x844 go to `$NETVIGIL_TEST_OUT` (default: a temp folder, printed).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{PASSWORD, SHARED, fleet, start, temp_dir};
use crate::fleet::web::auth::Limits;
use crate::fleet::web::tls;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Plain HTTP/1.1 to chromedriver.
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(90))).unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    let mut status_line = String::new();
    r.read_line(&mut status_line).unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut len = None;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse::<usize>().ok();
        }
    }
    let mut body = Vec::new();
    match len {
        Some(n) => {
            body.resize(n, 0);
            r.read_exact(&mut body).unwrap();
        }
        None => {
            r.read_to_end(&mut body).unwrap();
        }
    }
    (status, String::from_utf8_lossy(&body).into_owned())
}

struct Driver {
    child: Child,
    addr: SocketAddr,
    session: String,
    profile: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        if !self.session.is_empty() && !std::thread::panicking() {
            let _ = http(self.addr, "DELETE", &format!("/session/{}", self.session), "");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn find(paths: &[&str]) -> Option<PathBuf> {
    paths.iter().map(PathBuf::from).find(|p| p.exists())
}

impl Driver {
    fn start(spki: &str) -> Driver {
        let driver = find(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"])
            .expect("chromedriver not found: apt-get install chromium chromium-driver");
        let browser = find(&["/usr/lib/chromium/chromium", "/usr/bin/chromium"])
            .expect("chromium not found: apt-get install chromium chromium-driver");
        let port = free_port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = temp_dir("chromium-profile");
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-extensions".into(),
            "--disable-default-apps".into(),
            "--disable-dev-shm-usage".into(),
            "--proxy-server=http://127.0.0.1:9".into(),
            // The self-signed certificate is trusted by its key (not just clicked through):
            // WebAuthn refuses pages with certificate errors.
            format!("--ignore-certificate-errors-spki-list={spki}"),
            format!("--user-data-dir={}", profile.display()),
            "--window-size=1280,800".into(),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {"binary": browser, "args": args},
        }}});
        let mut d = Driver {
            child,
            addr,
            session: String::new(),
            profile,
        };
        let v = d.call("POST", "/session", Some(caps));
        d.session = v["sessionId"].as_str().expect("a WebDriver session").to_string();
        d
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let (st, text) = http(self.addr, method, path, &body);
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"));
        assert_eq!(st, 200, "{method} {path}: {v}");
        v.get("value").cloned().unwrap_or(v)
    }

    fn s(&self, what: &str, body: Option<Value>, method: &str) -> Value {
        self.call(method, &format!("/session/{}/{what}", self.session), body)
    }

    fn go(&self, url: &str) {
        self.s("url", Some(json!({ "url": url })), "POST");
    }

    fn js(&self, script: &str) -> Value {
        self.s(
            "execute/sync",
            Some(json!({"script": script, "args": []})),
            "POST",
        )
    }

    /// Polls `script` until it returns true (bounded).
    fn wait(&self, script: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.js(script) != json!(true) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; page says: {}",
                self.js("return document.body.innerText.slice(0, 2000)")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn screenshot(&self, path: &Path) {
        let b64 = self.s("screenshot", None, "GET");
        let png = crate::fleet::web::webauthn::b64url_decode(b64.as_str().unwrap()).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(path, png).unwrap();
    }
}

const STATUS: &str = "return document.getElementById('login-status').textContent";

#[test]
fn fleet_dashboard_in_headless_chromium() {
    let out = std::env::var_os("NETVIGIL_TEST_OUT").map_or_else(|| temp_dir("screens"), PathBuf::from);
    std::fs::create_dir_all(&out).unwrap();
    let f = fleet();
    // Device 3 is a gateway: two LAN devices.
    super::write_lan(&mut store::SqliteStore::open(&f.dir.join(crate::fleet::db::RECORDS_FILE)).unwrap());
    let (h, _) = start(&f, Limits::default());
    let cert = tls::WebCert::load_or_create(&crate::fleet::web::web_dir(&f.dir), &[]).unwrap();
    let spki = cert.spki_sha256_base64().unwrap();
    let base = format!("https://localhost:{}", h.addr.port());
    let d = Driver::start(&spki);
    d.go(&format!("{base}/"));
    d.wait("return document.body.dataset.state === 'login'", "the login form");
    assert_eq!(d.js("return location.protocol"), json!("https:"));

    // A wrong password: stays on the login form with the reason.
    d.js("const f = document.getElementById('login-form'); f.user.value = 'alice'; f.password.value = 'not the password'; f.requestSubmit();");
    d.wait(
        &format!("{STATUS}.includes('wrong user name or password')"),
        "the refusal",
    );
    assert_eq!(d.js("return document.body.dataset.state"), json!("login"));
    // The right one.
    d.js(&format!(
        "const f = document.getElementById('login-form'); f.user.value = 'alice'; f.password.value = '{PASSWORD}'; f.requestSubmit();"
    ));
    d.wait("return document.body.dataset.state === 'app'", "the dashboard");
    // The session cookie is HttpOnly: the page's script cannot read it.
    assert_eq!(d.js("return document.cookie"), json!(""));
    d.wait(
        "return document.querySelectorAll('#devices tbody tr').length === 4",
        "the devices table",
    );
    assert_eq!(
        d.js(
            "return [...document.querySelectorAll('#devices tbody tr')].map(r => r.children[1].textContent)"
        ),
        json!(["laptop", "desktop", "pi", "old-phone"])
    );
    assert_eq!(
        d.js("return document.querySelector('#devices tbody tr:last-child td:last-child').textContent"),
        json!("revoked")
    );

    // Pick the laptop: its apps, flows (placed) and alert.
    d.js("const p = document.getElementById('device-picker'); p.value = '1'; p.dispatchEvent(new Event('change'));");
    d.wait("return document.body.dataset.device === '1'", "device 1");
    let rows = d.js("return [...document.querySelectorAll('#device-flows tbody tr')].map(r => [...r.children].map(c => c.textContent))");
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert!(
        rows.iter()
            .any(|r| r[4] == json!(SHARED) && r[5] == json!("Shady Hosting") && r[6] == json!("DE")),
        "{rows:?}"
    );
    assert_eq!(
        d.js("return document.querySelectorAll('#device-apps tbody tr').length"),
        json!(2)
    );
    assert!(
        d.js("return document.getElementById('device-alerts').textContent")
            .as_str()
            .unwrap()
            .contains("for the first time")
    );
    d.screenshot(&out.join("fleet-device-1280x800.png"));
    assert_eq!(
        d.js("return document.getElementById('device-lan-panel').classList.contains('hidden')"),
        json!(true),
        "no LAN devices panel for an agent that is not a gateway"
    );
    // The gateway: its LAN devices, the one seen last first.
    d.js("const p = document.getElementById('device-picker'); p.value = '3'; p.dispatchEvent(new Event('change'));");
    d.wait("return document.body.dataset.device === '3'", "device 3");
    let lan = d.js("return [...document.querySelectorAll('#device-lan tbody tr')].map(r => [...r.children].map(c => c.textContent))");
    let lan = lan.as_array().unwrap();
    assert_eq!(lan.len(), 2, "{lan:?}");
    assert_eq!(
        lan[0].as_array().unwrap()[..5],
        [
            json!("3c:22:fb:00:77:10"),
            json!("Apple, Inc."),
            json!("alices-iphone"),
            json!("Alices-iPhone.local"),
            json!("192.168.77.10")
        ]
    );
    assert_eq!(lan[1][0], json!("00:09:df:00:00:01"));
    assert_eq!(lan[1][5], json!("2026-01-01 00:00:00Z"));
    d.js("document.getElementById('device-lan-panel').scrollIntoView()");
    d.screenshot(&out.join("fleet-lan-devices-1280x800.png"));

    // Fleet view and patterns.
    d.js("document.querySelector('.tab[data-view=fleet]').click()");
    d.wait("return document.body.dataset.fleet === 'hour'", "the fleet view");
    assert!(
        d.js("return document.getElementById('agg-org').textContent")
            .as_str()
            .unwrap()
            .contains("Shady Hosting (AS64500)")
    );
    // The fixture's flows carry no capture interface.
    let by_iface = d.js("return document.getElementById('agg-iface').textContent");
    assert!(by_iface.as_str().unwrap().contains("(unknown)"), "{by_iface}");
    d.js("document.querySelector('.tab[data-view=patterns]').click()");
    d.wait(
        "return document.body.dataset.patterns !== undefined",
        "the patterns view",
    );
    let pat = d.js("return document.getElementById('patterns').textContent");
    assert!(pat.as_str().unwrap().contains(SHARED), "{pat}");
    assert!(pat.as_str().unwrap().contains("old.unlisted-dest.net"), "{pat}");
    d.screenshot(&out.join("fleet-patterns-1280x800.png"));

    // A passkey, with chromedriver's virtual authenticator.
    let auth_id = d.s(
        "webauthn/authenticator",
        Some(
            json!({"protocol": "ctap2", "transport": "internal", "hasResidentKey": true,
                    "hasUserVerification": true, "isUserVerified": true}),
        ),
        "POST",
    );
    assert!(auth_id.as_str().is_some(), "{auth_id}");
    d.js("document.querySelector('.tab[data-view=account]').click()");
    d.wait(
        "return document.body.dataset.passkeys === '0'",
        "the account view",
    );
    d.js("document.getElementById('passkey-add').click()");
    d.wait(
        "return document.getElementById('passkey-status').textContent !== 'waiting for the authenticator…'",
        "the passkey registration",
    );
    assert_eq!(
        d.js("return document.getElementById('passkey-status').textContent"),
        json!("passkey added")
    );
    d.wait(
        "return document.body.dataset.passkeys === '1'",
        "the passkey list",
    );
    let creds = d.s(
        &format!("webauthn/authenticator/{}/credentials", auth_id.as_str().unwrap()),
        None,
        "GET",
    );
    assert_eq!(creds.as_array().unwrap().len(), 1, "{creds}");
    let stored = crate::fleet::web::users::Users::open(&f.fleet_target)
        .get("alice")
        .unwrap()
        .unwrap();
    assert_eq!(stored.passkeys.len(), 1);
    assert_eq!(
        stored.passkeys[0].alg, -7,
        "Chromium's virtual authenticator makes ES256 keys"
    );

    // Log out; back in with the passkey (no user name: a discoverable credential).
    d.js("document.getElementById('logout').click()");
    d.wait("return document.body.dataset.state === 'login'", "logging out");
    d.js("document.getElementById('login-form').user.value = ''; document.getElementById('passkey-login').click()");
    d.wait(
        "return document.body.dataset.state === 'app'",
        "the passkey login",
    );
    d.js("window.__me = null; fetch('/api/me').then(r => r.json()).then(j => window.__me = j)");
    d.wait("return window.__me !== null", "/api/me");
    assert_eq!(d.js("return window.__me.method"), json!("passkey"));
    let after = crate::fleet::web::users::Users::open(&f.fleet_target)
        .get("alice")
        .unwrap()
        .unwrap();
    assert!(after.passkeys[0].last_used_ms.is_some());

    // Phone-sized: still logged in (the cookie), a device picked, no horizontal overflow.
    d.s(
        "goog/cdp/execute",
        Some(json!({"cmd": "Emulation.setDeviceMetricsOverride",
                    "params": {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": true}})),
        "POST",
    );
    d.go(&format!("{base}/"));
    d.wait(
        "return document.body.dataset.state === 'app'",
        "the phone-sized load",
    );
    d.wait(
        "return document.querySelectorAll('#device-picker option').length === 5",
        "the device picker",
    );
    d.js("const p = document.getElementById('device-picker'); p.value = '2'; p.dispatchEvent(new Event('change'));");
    d.wait(
        "return document.body.dataset.device === '2'",
        "device 2 at 390 px",
    );
    assert_eq!(d.js("return window.innerWidth"), json!(390));
    let overflow = d.js("return document.documentElement.scrollWidth - window.innerWidth");
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "horizontal overflow of {overflow} px at 390 px"
    );
    d.screenshot(&out.join("fleet-device-390x844.png"));
    eprintln!("screenshots in {}", out.display());
    drop(d);
    h.stop();
    let _ = std::fs::remove_dir_all(&f.dir);
}
