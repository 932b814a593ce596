//! The dashboard in a real headless Chromium (Debian's `chromium` and `chromium-driver`),
//! driven through chromedriver's WebDriver HTTP API with a minimal client over std::net.
//! Chromium talks only to the loopback server: everything not on loopback goes to a dead proxy
//! (127.0.0.1:9; loopback is never proxied), background networking and updates are off.
//!
//! Asserts: the app cards and their counts, the localhost toggle, search, sort, the IP detail
//! popover, a record pushed into the LiveView appearing without a reload (SSE), a cross-origin
//! POST refused while the page's own settings form saves, and no horizontal overflow at
//! 390x844. Screenshots at 1280x800 and 390x844 go to `$NETVIGIL_TEST_OUT` (default: a temp
//! folder, printed).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{NOW, assessment, filled_view, http, opened, process, start, temp_dir};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
            let _ = http(
                self.addr,
                "DELETE",
                &format!("/session/{}", self.session),
                &[],
                "",
            );
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
    fn start() -> Driver {
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
        while std::net::TcpStream::connect(addr).is_err() {
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
            format!("--user-data-dir={}", profile.display()),
            "--window-size=1280,800".into(),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
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
        let (st, _, text) = http(
            self.addr,
            method,
            path,
            &[("Content-Type", "application/json")],
            &body,
        );
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
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.js(script) != json!(true) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn screenshot(&self, path: &Path) {
        let b64 = self.s("screenshot", None, "GET");
        let png = base64_decode(b64.as_str().unwrap());
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(path, png).unwrap();
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

const CARDS: &str = "return [...document.querySelectorAll('details.app')].map(d => d.dataset.app)";

#[test]
fn dashboard_in_headless_chromium() {
    if std::env::var_os("NETVIGIL_SKIP_BROWSER").is_some() {
        eprintln!("NETVIGIL_SKIP_BROWSER set: browser test skipped");
        return;
    }
    let out = std::env::var_os("NETVIGIL_TEST_OUT").map_or_else(|| temp_dir("screens"), PathBuf::from);
    std::fs::create_dir_all(&out).unwrap();
    let cfg = temp_dir("browser-cfg");
    let settings = cfg.join("settings.json");
    let view = filled_view();
    let srv = start(view.clone(), None, Some(settings.clone()));
    let base = format!("http://127.0.0.1:{}", srv.addr.port());
    let d = Driver::start();
    d.go(&format!("{base}/"));
    d.wait("return document.body.dataset.ready === '1'", "the first load");

    // Cards: localhost hidden by default, so firefox and curl.
    let mut cards: Vec<String> = serde_json::from_value(d.js(CARDS)).unwrap();
    cards.sort();
    assert_eq!(cards, ["curl", "firefox"]);
    assert_eq!(
        d.js("return document.getElementById('card-conns').textContent"),
        json!("4")
    );
    assert_eq!(
        d.js("return document.getElementById('card-apps').textContent"),
        json!("2")
    );
    let ff = "document.querySelector('details.app[data-app=\"firefox\"]')";
    assert_eq!(
        d.js(&format!("return {ff}.querySelector('.app-count').textContent")),
        json!("3 connections")
    );
    assert_eq!(
        d.js(&format!("return {ff}.querySelector('.badge').textContent")),
        json!("high")
    );
    // Sort by score: firefox (6) first; by name: curl first.
    assert_eq!(d.js(CARDS)[0], json!("firefox"));
    d.js("const s = document.getElementById('sort'); s.value = 'name'; s.dispatchEvent(new Event('input'));");
    assert_eq!(d.js(CARDS), json!(["curl", "firefox"]));
    // Localhost toggle.
    d.js("document.getElementById('show-local').click()");
    assert_eq!(d.js(CARDS), json!(["curl", "firefox", "postgres"]));
    d.js("document.getElementById('show-local').click()");
    // Search by organisation.
    d.js("const q = document.getElementById('search'); q.value = 'github'; q.dispatchEvent(new Event('input'));");
    assert_eq!(d.js(CARDS), json!(["curl"]));
    assert_eq!(
        d.js("return document.getElementById('card-conns').textContent"),
        json!("1")
    );
    d.js("const q = document.getElementById('search'); q.value = ''; q.dispatchEvent(new Event('input'));");

    // Open firefox, its rows, and the IP popover.
    d.js(&format!("{ff}.querySelector('summary').click()"));
    d.wait(
        &format!("return {ff}.querySelectorAll('tbody tr').length === 3"),
        "firefox's rows",
    );
    d.js(&format!(
        "[...{ff}.querySelectorAll('button.linkish')].find(b => b.textContent === '93.184.216.34').click()"
    ));
    d.wait(
        "const p = document.getElementById('popover'); return p.open && p.textContent.includes('Example Org') && p.textContent.includes('example.net')",
        "the IP popover",
    );
    d.js("document.getElementById('popover').close()");
    d.screenshot(&out.join("dashboard-1280x800.png"));

    // SSE: a record pushed now shows up without a reload.
    d.js("window.__noReload = 42");
    let p = process(500, "wget", Some("wget"));
    view.on_record(
        &opened(&p, "10.0.0.2:41000", "203.0.113.9:80", (1, 2)),
        &assessment(3, "Test Net", None),
        NOW,
    );
    d.wait(
        "return !!document.querySelector('details.app[data-app=\"wget\"]')",
        "the pushed record",
    );
    assert_eq!(d.js("return window.__noReload"), json!(42));
    assert_eq!(
        d.js("return document.getElementById('card-conns').textContent"),
        json!("5")
    );

    // The settings form saves (same origin, cookie) ...
    d.js("document.querySelector('.tab[data-view=settings]').click()");
    d.wait(
        "return document.querySelectorAll('#weights input').length > 5",
        "the settings form",
    );
    // (The form shows "saved in PATH" on load too: clear it so the wait is for this POST.)
    d.js("document.getElementById('settings-status').textContent = ''; const f = document.getElementById('settings-form'); f.refresh_interval_s.value = '10'; f.requestSubmit();");
    d.wait(
        "return document.getElementById('settings-status').textContent.startsWith('saved in')",
        "saving",
    );
    let t = std::time::Instant::now();
    while !settings.exists() && t.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&settings).unwrap()).unwrap();
    assert_eq!(saved["refresh_interval_s"], 10);
    // ... and a POST from another origin (http://localhost:PORT is not http://127.0.0.1:PORT) is refused.
    std::fs::remove_file(&settings).unwrap();
    d.go(&format!("http://localhost:{}/", srv.addr.port()));
    d.wait(
        "return document.body.dataset.ready === '1'",
        "the page on localhost",
    );
    d.js(&format!(
        "window.__post = 'pending'; fetch('{base}/api/settings', {{method: 'POST', mode: 'no-cors', credentials: 'include', \
         headers: {{'Content-Type': 'text/plain'}}, body: '{{\"refresh_interval_s\": 1}}'}}).then(() => window.__post = 'sent', () => window.__post = 'failed')"
    ));
    d.wait("return window.__post !== 'pending'", "the cross-origin POST");
    std::thread::sleep(Duration::from_millis(300));
    assert!(!settings.exists(), "a cross-origin POST must not change settings");

    // Phone-sized: no horizontal overflow, cards still there.
    d.s(
        "goog/cdp/execute",
        Some(json!({"cmd": "Emulation.setDeviceMetricsOverride",
                    "params": {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": true}})),
        "POST",
    );
    d.go(&format!("{base}/"));
    d.wait(
        "return document.body.dataset.ready === '1'",
        "the phone-sized load",
    );
    d.js(&format!("{ff}.querySelector('summary').click()"));
    d.wait(
        &format!("return {ff}.querySelectorAll('tbody tr').length === 3"),
        "rows at 390 px",
    );
    assert_eq!(d.js("return window.innerWidth"), json!(390));
    let overflow = d.js("return document.documentElement.scrollWidth - window.innerWidth");
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "horizontal overflow of {overflow} px at 390 px"
    );
    d.screenshot(&out.join("dashboard-390x844.png"));
    eprintln!("screenshots in {}", out.display());
    drop(d);
    srv.stop();
    let _ = std::fs::remove_dir_all(&cfg);
}
