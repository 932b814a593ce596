//! The dashboard of a LIVE `netvigil run` in a headless Chromium, all inside a network
//! namespace this test creates: netvigil (capture, store, dashboard on the namespace's
//! loopback) and the browser in namespace b, a web server in namespace a. The test loads the
//! dashboard, then `curl` in namespace b fetches a page from a: the new connection must appear
//! in the page through SSE, without a reload and without a new `/api/connections` fetch, in
//! the card of the program that made it (curl), with its remote address and port.
//!
//! The WebDriver client runs on a thread that joined namespace b (`setns`), so it reaches
//! chromedriver on that namespace's loopback and chromedriver starts Chromium there.
//! Needs root, `curl`, `python3`, `chromium` and `chromium-driver`. Screenshots go to
//! `$NETVIGIL_TEST_OUT`.

mod common;
#[allow(dead_code)]
#[path = "common/webdriver.rs"]
mod webdriver;

use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::process::Stdio;
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use common::netns::*;
use common::*;
use serde_json::json;

/// Web server: `-c SCRIPT HOST PORT`; each answer waits 500 ms, so curl's socket is seen with
/// its owner by the socket-table poll (a 3 ms client may be gone before any lookup).
const SLOW_HTTP: &str = r#"
import http.server, sys, time
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(0.5)
        body = b"hello from namespace a\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), H)
print("Serving HTTP", flush=True)
srv.serve_forever()
"#;

const DASHBOARD_PORT: u16 = 18_078;

/// Moves the calling thread (only it) into the network namespace `name`.
fn enter_netns(name: &str) {
    let f = std::fs::File::open(format!("/var/run/netns/{name}"))
        .unwrap_or_else(|e| panic!("open namespace {name}: {e}"));
    // SAFETY: setns takes a file descriptor we own (open for the whole call) and a constant;
    // it changes only this thread's network namespace and touches no memory of ours.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns({name}): {}", std::io::Error::last_os_error());
}

#[test]
fn a_live_connection_reaches_the_open_dashboard_through_sse() {
    if std::env::var_os("NETVIGIL_SKIP_BROWSER").is_some() {
        eprintln!("NETVIGIL_SKIP_BROWSER set: browser test skipped");
        return;
    }
    if !need_root() {
        return;
    }
    let n = Netns::new("w");
    let dir = temp_dir("web-live");
    let out = webdriver::out_dir(std::env::temp_dir().join("netvigil-web-live-screens"));
    let _server = spawn_until(
        n.exec(&n.a, &[python(), "-c", SLOW_HTTP, &n.addr_a, "8080"]),
        false,
        "Serving HTTP",
    );
    let config = dir.join("config.toml");
    std::fs::write(&config, "[notify.desktop]\nenabled = false\n").unwrap();
    let listen = format!("127.0.0.1:{DASHBOARD_PORT}");
    let data = dir.join("data");
    let mut cmd = n.exec(
        &n.b,
        &[
            env!("CARGO_BIN_EXE_netvigil"),
            "--config",
            config.to_str().unwrap(),
            "run",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            &listen,
            "--no-rdns",
            "--poll-ms",
            "100",
            "--events",
            "/dev/null",
            "--duration",
            "90",
        ],
    );
    // The dashboard's secret goes to a folder of this test, never the user's config.
    cmd.env("XDG_CONFIG_HOME", dir.join("xdg"))
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn netvigil");
    let stderr = child.stderr.take().unwrap();
    let nv = Guard(child);
    let (tx, rx) = channel::<String>();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut log = Vec::new();
    let end = Instant::now() + Duration::from_secs(20);
    while !log.iter().any(|l: &String| l.contains("dashboard on http://")) {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => log.push(l),
            Err(_) => panic!("netvigil's dashboard did not start:\n{}", log.join("\n")),
        }
    }
    assert!(
        log.iter().any(|l| l.contains("capturing packets")),
        "netvigil is not capturing:\n{}",
        log.join("\n")
    );

    let (ns_b, addr_a, profile) = (n.b.clone(), n.addr_a.clone(), dir.join("profile"));
    let browser = std::thread::spawn(move || {
        enter_netns(&ns_b);
        let d = webdriver::Driver::start(profile);
        let base = format!("http://127.0.0.1:{DASHBOARD_PORT}");
        d.go(&format!("{base}/"));
        d.wait_for("return document.body.dataset.ready === '1'", "the dashboard", 30);
        // Updates are applied every second; the stream must be open before the traffic.
        d.js("const s = document.getElementById('interval'); s.value = '1'; s.dispatchEvent(new Event('change')); window.__noReload = 7;");
        d.wait(
            "return document.getElementById('live-dot').className === 'dot on'",
            "the SSE stream",
        );
        let row = format!(
            "[...document.querySelectorAll('details.app[data-app=\"curl\"] tr[data-id]')].find(r => r.dataset.id.includes('|{addr_a}:8080'))"
        );
        assert_eq!(
            d.js(&format!("return !!({row})")),
            json!(false),
            "no curl row before curl ran"
        );
        let t0 = Instant::now();
        let st = std::process::Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "--max-time",
                "5",
                &format!("http://{addr_a}:8080/"),
            ])
            .status()
            .expect("run curl");
        assert!(st.success(), "curl to namespace a failed");
        // The card of curl, opened as soon as it is there, holds the connection.
        d.wait_for(
            "const c = document.querySelector('details.app[data-app=\"curl\"]'); if (c && !c.open) c.querySelector('summary').click(); return !!c",
            "curl's card",
            20,
        );
        d.wait_for(&format!("return !!({row})"), "curl's connection row", 20);
        let seen = t0.elapsed();
        assert_eq!(
            d.js("return window.__noReload"),
            json!(7),
            "the page was reloaded"
        );
        let fetches = d.js(
            "return performance.getEntriesByType('resource').filter(e => e.name.includes('/api/connections')).length",
        );
        assert_eq!(fetches, json!(1), "the row came over SSE, not a new fetch");
        let cells: Vec<String> =
            serde_json::from_value(d.js(&format!("return [...({row}).cells].map(c => c.textContent)")))
                .unwrap();
        assert_eq!(cells[1], addr_a, "{cells:?}");
        assert!(cells[2].starts_with("8080"), "{cells:?}");
        assert!(cells[3].starts_with("tcp"), "{cells:?}");
        d.screenshot(&out.join("live-netns-1280x800.png"));
        eprintln!(
            "curl's connection in the page {} ms after curl started; screenshot in {}",
            seen.as_millis(),
            out.display()
        );
    });
    let r = browser.join();
    drop(nv);
    if let Err(e) = r {
        std::panic::resume_unwind(e);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
