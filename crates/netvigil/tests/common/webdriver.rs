//! A minimal WebDriver client for the dashboard's browser tests: starts Debian's `chromedriver`
//! with a headless `chromium` and talks to it over HTTP/1.1 on loopback (std::net only).
//! Chromium reaches only loopback: everything else goes to a dead proxy (127.0.0.1:9; loopback
//! is never proxied); background networking, sync and updates are off.
//!
//! Shared by the unit browser tests (`src/web/tests/browser.rs` and
//! `src/fleet/web/tests/browser.rs`, through `#[path]`) and the live-session test
//! (`tests/web_live_browser.rs`). Needs `chromium` and `chromium-driver`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a loopback port")
        .local_addr()
        .expect("its address")
        .port()
}

/// One HTTP/1.1 request with a Content-Length answer: (status, body).
fn request(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("chromedriver at {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let head = head.to_ascii_lowercase();
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let mut out = Vec::new();
    match len {
        Some(n) => {
            out.resize(n, 0);
            r.read_exact(&mut out).unwrap();
        }
        None => {
            r.read_to_end(&mut out).unwrap();
        }
    }
    (status, String::from_utf8_lossy(&out).into_owned())
}

fn find(paths: &[&str]) -> Option<PathBuf> {
    paths.iter().map(PathBuf::from).find(|p| p.exists())
}

/// A chromedriver process with one headless Chromium session; both end on drop.
pub struct Driver {
    child: Child,
    addr: SocketAddr,
    session: String,
    profile: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        if !self.session.is_empty() && !std::thread::panicking() {
            let _ = request(self.addr, "DELETE", &format!("/session/{}", self.session), "");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Driver {
    /// Starts chromedriver on a free port and opens a session (window 1280x800). `profile` is
    /// a fresh folder for Chromium's profile (removed on drop).
    pub fn start(profile: PathBuf) -> Driver {
        Driver::start_with(profile, None)
    }

    /// As [`Driver::start`], for an HTTPS server whose self-signed certificate has the public
    /// key with this SHA-256 (base64): trusted by its key, not just clicked through (WebAuthn
    /// refuses pages with certificate errors).
    pub fn start_trusting(profile: PathBuf, spki_sha256: &str) -> Driver {
        Driver::start_with(profile, Some(spki_sha256))
    }

    fn start_with(profile: PathBuf, spki_sha256: Option<&str>) -> Driver {
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
        let mut d = Driver {
            child,
            addr,
            session: String::new(),
            profile,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::fs::create_dir_all(&d.profile).unwrap();
        let mut args = vec![
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
            format!("--user-data-dir={}", d.profile.display()),
            "--window-size=1280,800".into(),
        ];
        let mut always = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": browser},
        });
        if let Some(spki) = spki_sha256 {
            args.push(format!("--ignore-certificate-errors-spki-list={spki}"));
            always["acceptInsecureCerts"] = json!(true);
        }
        always["goog:chromeOptions"]["args"] = json!(args);
        let caps = json!({"capabilities": {"alwaysMatch": always}});
        let v = d.call("POST", "/session", Some(caps));
        d.session = v["sessionId"].as_str().expect("a WebDriver session").to_string();
        d
    }

    /// One WebDriver command; panics on an error answer. Returns its `value`.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let (st, text) = request(self.addr, method, path, &body);
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"));
        assert_eq!(st, 200, "{method} {path}: {v}");
        v.get("value").cloned().unwrap_or(v)
    }

    /// A command of this session (`what` after `/session/ID/`).
    pub fn s(&self, what: &str, body: Option<Value>, method: &str) -> Value {
        self.call(method, &format!("/session/{}/{what}", self.session), body)
    }

    /// A Chrome DevTools command (`Emulation.setDeviceMetricsOverride` ...).
    pub fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.s(
            "goog/cdp/execute",
            Some(json!({"cmd": cmd, "params": params})),
            "POST",
        )
    }

    /// Opens `url` in the window.
    pub fn go(&self, url: &str) {
        self.s("url", Some(json!({ "url": url })), "POST");
    }

    /// Runs `script` (a function body) in the page; its return value.
    pub fn js(&self, script: &str) -> Value {
        self.s(
            "execute/sync",
            Some(json!({"script": script, "args": []})),
            "POST",
        )
    }

    /// Polls `script` until it returns true, for at most `secs` seconds; on a time-out the
    /// panic shows the start of the page's text.
    pub fn wait_for(&self, script: &str, what: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.js(script) != json!(true) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; page says: {}",
                self.js("return document.body.innerText.slice(0, 2000)")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Polls `script` until it returns true (at most 20 s).
    pub fn wait(&self, script: &str, what: &str) {
        self.wait_for(script, what, 20);
    }

    /// Sets the viewport (CSS pixels) through the DevTools device-metrics override.
    pub fn viewport(&self, width: u32, height: u32, mobile: bool) {
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        );
    }

    /// Saves a PNG of the viewport to `path`.
    pub fn screenshot(&self, path: &Path) {
        let b64 = self.s("screenshot", None, "GET");
        let png = base64_decode(b64.as_str().expect("base64 text"));
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(path, png).unwrap();
    }
}

/// Standard base64 (padding and unknown bytes skipped).
pub fn base64_decode(s: &str) -> Vec<u8> {
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

/// Where screenshots go: `$NETVIGIL_TEST_OUT` or `fallback`, created.
pub fn out_dir(fallback: PathBuf) -> PathBuf {
    let out = std::env::var_os("NETVIGIL_TEST_OUT").map_or(fallback, PathBuf::from);
    std::fs::create_dir_all(&out).unwrap();
    out
}
