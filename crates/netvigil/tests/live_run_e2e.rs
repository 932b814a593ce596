//! `netvigil run` end to end, in network namespaces this test creates: a web server in one
//! namespace; in the other netvigil (capture, store, dashboard, webhook delivery), a webhook
//! receiver on its loopback, and `curl`. The alert about the never-seen host must reach the
//! webhook, the dashboard's SSE stream and the database within 10 s; the same request again, and
//! a second run over the same data directory, must raise no second `new_remote` alert.
//!
//! Needs root (namespaces, capture), `curl` and `python3`. Without root: a note, or a failure
//! when CI=true.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::netns::*;
use common::*;

/// Webhook receiver: `-c SCRIPT PORT`; answers every POST with 200 and prints its body (one
/// line: the alert JSON) on stdout; prints "ready" once bound; exits after 60 s idle.
const RECEIVER: &str = r#"
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n).decode("utf-8", "replace").replace("\n", " ")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
        print("POST " + self.path + " " + body, flush=True)
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H)
srv.timeout = 60
print("ready", flush=True)
while True:
    srv.handle_request()
"#;

/// Web server: `-c SCRIPT HOST PORT DIR`; each answer waits 300 ms, so curl lives long enough
/// for its owner to be looked up (a client that lives 3 ms may be gone before that: the known
/// limit of owners from packets, see ARCHITECTURE.md).
const SLOW_HTTP: &str = r#"
import http.server, sys, time, os
class H(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        time.sleep(0.3)
        super().do_GET()
    def log_message(self, *a):
        pass
os.chdir(sys.argv[3])
srv = http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), H)
print("Serving HTTP", flush=True)
srv.serve_forever()
"#;

/// A child whose output lines arrive on a channel (a thread drains the pipe).
struct Lines {
    guard: Guard,
    /// Each line with the moment the reader thread got it.
    rx: Receiver<(Instant, String)>,
    seen: Vec<String>,
}

impl Lines {
    fn spawn(mut cmd: Command, stderr: bool) -> Lines {
        if stderr {
            cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        } else {
            cmd.stdout(Stdio::piped()).stderr(Stdio::null());
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let stream: Box<dyn std::io::Read + Send> = if stderr {
            Box::new(child.stderr.take().unwrap())
        } else {
            Box::new(child.stdout.take().unwrap())
        };
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stream).lines().map_while(Result::ok) {
                if tx.send((Instant::now(), l)).is_err() {
                    break;
                }
            }
        });
        Lines {
            guard: Guard(child),
            rx,
            seen: Vec::new(),
        }
    }

    /// Waits until a line satisfies `f` (bounded by `within`); returns it and when it came.
    fn wait(&mut self, within: Duration, f: impl Fn(&str) -> bool) -> Option<(String, Instant)> {
        let end = Instant::now() + within;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok((at, l)) => {
                    let hit = f(&l);
                    self.seen.push(l.clone());
                    if hit {
                        return Some((l, at));
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// Every line so far, after draining what is queued.
    fn all(&mut self) -> String {
        while let Ok((_, l)) = self.rx.try_recv() {
            self.seen.push(l);
        }
        self.seen.join("\n")
    }
}

/// Is `line` a `new_remote` alert (JSON) naming curl and `ip`?
fn new_remote_for(line: &str, ip: &str) -> bool {
    line.contains("\"rule\":\"new_remote\"")
        && line.contains("\"app\":\"curl\"")
        && line.contains(&format!("\"remote\":\"{ip}\""))
}

struct Run {
    nv: Lines,
    hook: Lines,
    sse: Lines,
}

const DASHBOARD: &str = "127.0.0.1:18077";

/// Starts the webhook receiver, netvigil (dashboard, webhook, store in `data`) and an SSE reader,
/// all in namespace b; returns once each is up.
fn start(n: &Netns, dir: &Path, data: &Path, events: &Path, hook_port: u16) -> Run {
    let mut hook = Lines::spawn(
        n.exec(&n.b, &[python(), "-c", RECEIVER, &hook_port.to_string()]),
        false,
    );
    assert!(
        hook.wait(Duration::from_secs(10), |l| l == "ready").is_some(),
        "the webhook receiver did not start"
    );
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[notify.webhook]\nurl = \"http://127.0.0.1:{hook_port}/hook\"\npreset = \"json\"\n\
             min_severity = \"info\"\nretries = 2\nbackoff_initial = \"100ms\"\n\n\
             [notify.desktop]\nenabled = false\n\n[alerts]\nmin_severity = \"info\"\ndedup_window = \"10m\"\n"
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_netvigil");
    let mut cmd = n.exec(
        &n.b,
        &[
            bin,
            "--config",
            config.to_str().unwrap(),
            "run",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            DASHBOARD,
            "--no-rdns",
            "--events",
            events.to_str().unwrap(),
            "--duration",
            "40",
        ],
    );
    // The dashboard's secret goes to a folder of this test, never the user's config.
    cmd.env("XDG_CONFIG_HOME", dir.join("xdg"))
        .env_remove("DBUS_SESSION_BUS_ADDRESS");
    let mut nv = Lines::spawn(cmd, true);
    let up = nv.wait(Duration::from_secs(15), |l| l.contains("dashboard on http://"));
    assert!(up.is_some(), "netvigil's dashboard did not start:\n{}", nv.all());
    assert!(
        nv.all().contains("capturing packets"),
        "netvigil is not capturing:\n{}",
        nv.all()
    );
    let url = format!("http://{DASHBOARD}/api/events");
    let mut sse = Lines::spawn(n.exec(&n.b, &["curl", "-sN", "--max-time", "60", &url]), false);
    assert!(
        sse.wait(Duration::from_secs(10), |l| l == "event: hello")
            .is_some(),
        "no SSE hello from {url}:\n{}",
        sse.all()
    );
    Run { nv, hook, sse }
}

/// SIGTERM to netvigil, then waits (bounded) for its clean exit; returns its stderr.
fn stop(run: &mut Run) -> String {
    let pid = run.nv.guard.0.id().to_string();
    let st = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(st.success());
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(s) = run.nv.guard.0.try_wait().unwrap() {
            let text = run.nv.all();
            sleep(Duration::from_millis(100));
            let text = text + "\n" + &run.nv.all();
            assert!(s.success(), "netvigil exited with {s}:\n{text}");
            return text;
        }
        assert!(
            Instant::now() < end,
            "netvigil did not stop on SIGTERM:\n{}",
            run.nv.all()
        );
        sleep(Duration::from_millis(50));
    }
}

fn curl(n: &Netns, url: &str) {
    let st = n
        .exec(&n.b, &["curl", "-s", "-o", "/dev/null", "--max-time", "5", url])
        .status()
        .unwrap();
    assert!(st.success(), "curl {url} failed");
}

fn stored_alerts(data: &Path) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_netvigil"))
        .args(["alerts", "--json", "--data-dir", data.to_str().unwrap()])
        .output()
        .expect("netvigil alerts");
    assert!(o.status.success(), "netvigil alerts: {}", stderr(&o));
    stdout(&o)
}

/// The slow web server on namespace a's port 8080, serving `index.html` with `body` from
/// `dir/www`; stopped when the guard drops.
fn serve_page(n: &Netns, dir: &Path, body: &str) -> Guard {
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), body).unwrap();
    spawn_until(
        n.exec(
            &n.a,
            &[
                python(),
                "-c",
                SLOW_HTTP,
                &n.addr_a,
                "8080",
                www.to_str().unwrap(),
            ],
        ),
        false,
        "Serving HTTP",
    )
}

#[test]
fn a_new_host_alert_reaches_webhook_sse_and_database_once_across_restarts() {
    if !need_root() {
        return;
    }
    let n = Netns::new("e");
    let dir = temp_dir("e2e-run");
    let data = dir.join("data");
    let _server = serve_page(&n, &dir, "hello from namespace a\n");
    let url = format!("http://{}:8080/index.html", n.addr_a);
    let remote = n.addr_a.clone();

    // ---- First run: a host never seen. ----
    let events1 = dir.join("events1.jsonl");
    let mut run = start(&n, &dir, &data, &events1, 18080);
    sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    curl(&n, &url);
    let hook = run
        .hook
        .wait(Duration::from_secs(10), |l| new_remote_for(l, &remote));
    let hook_at = hook.as_ref().map(|h| h.1.duration_since(t0)).unwrap_or_else(|| {
        panic!(
            "no new_remote alert for curl -> {remote} at the webhook within 10 s:\n{}\nnetvigil:\n{}",
            run.hook.all(),
            run.nv.all()
        )
    });
    let hook_line = hook.unwrap().0;
    assert!(
        hook_line.starts_with("POST /hook {\"type\":\"alert\""),
        "{hook_line}"
    );
    // SSE: `event: alert` then its data line.
    let sse = run.sse.wait(Duration::from_secs(10), |l| {
        l.starts_with("data: ") && new_remote_for(l, &remote)
    });
    let sse_at = sse.as_ref().map(|s| s.1.duration_since(t0)).unwrap_or_else(|| {
        panic!(
            "no new_remote alert on the SSE stream within 10 s:\n{}",
            run.sse.all()
        )
    });
    let sse_text = run.sse.all();
    let before = sse_text
        .lines()
        .take_while(|l| !(l.starts_with("data: ") && new_remote_for(l, &remote)))
        .last();
    assert_eq!(before, Some("event: alert"), "{sse_text}");
    eprintln!(
        "packet to webhook: {} ms, to SSE: {} ms",
        hook_at.as_millis(),
        sse_at.as_millis()
    );

    // The same request again: no second alert on either path.
    curl(&n, &url);
    sleep(Duration::from_secs(3));
    let hooks = run.hook.all();
    let sses = run.sse.all();
    assert_eq!(
        hooks.lines().filter(|l| new_remote_for(l, &remote)).count(),
        1,
        "one webhook new_remote for {remote}:\n{hooks}"
    );
    assert_eq!(
        sses.lines()
            .filter(|l| l.starts_with("data: ") && new_remote_for(l, &remote))
            .count(),
        1,
        "one SSE new_remote for {remote}:\n{sses}"
    );
    // The running instance reports itself: /metrics (Prometheus text) and `netvigil status`.
    sleep(Duration::from_millis(1200)); // the counters are copied once a second
    let m = n
        .exec(&n.b, &["curl", "-s", &format!("http://{DASHBOARD}/metrics")])
        .output()
        .unwrap();
    let m = stdout(&m);
    let metric = |k: &str| {
        m.lines()
            .find_map(|l| l.strip_prefix(&format!("{k} ")))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {k} in /metrics:\n{m}"))
    };
    assert!(metric("netvigil_packets_total") >= 10.0, "{m}");
    assert!(metric("netvigil_flows_created_total") >= 2.0, "{m}");
    assert!(metric("netvigil_alerts_raised_total") >= 2.0, "{m}");
    assert!(
        metric("netvigil_alerts_delivered_total{channel=\"webhook\"}") >= 1.0,
        "{m}"
    );
    assert!(metric("netvigil_resident_memory_bytes") > 1e6, "{m}");
    let status = |args: &[&str]| {
        let bin = env!("CARGO_BIN_EXE_netvigil");
        let mut a = vec![bin, "status", "--listen", DASHBOARD];
        a.extend_from_slice(args);
        n.exec(&n.b, &a).output().unwrap()
    };
    let st = status(&[]);
    assert!(st.status.success(), "{}{}", stdout(&st), stderr(&st));
    assert!(
        stdout(&st).starts_with(&format!("netvigil is running: dashboard on http://{DASHBOARD}/")),
        "{}",
        stdout(&st)
    );
    assert!(stdout(&st).contains("dropped by the kernel"), "{}", stdout(&st));
    let err1 = stop(&mut run);
    assert!(err1.contains("netvigil::sinks: history:"), "{err1}");
    let st = status(&[]);
    assert_eq!(st.status.code(), Some(3), "{}", stdout(&st));
    assert!(
        stdout(&st).starts_with(&format!("netvigil is not running (no dashboard on {DASHBOARD}")),
        "{}",
        stdout(&st)
    );

    // The database has it, once, with curl and the remote.
    let alerts = stored_alerts(&data);
    let stored: Vec<&str> = alerts.lines().filter(|l| new_remote_for(l, &remote)).collect();
    assert_eq!(stored.len(), 1, "one stored new_remote for {remote}:\n{alerts}");
    assert_eq!(
        json_str(stored[0], "id"),
        json_str(&hook_line, "id"),
        "the stored alert is the one delivered"
    );
    let ev1 = std::fs::read_to_string(&events1).unwrap();
    let flows1 = to_server(&ev1, "flow", "tcp", &remote, 8080);
    assert_eq!(flows1.len(), 2, "two curl flows in run 1:\n{ev1}");

    // ---- Second run, same data directory, same traffic. ----
    let events2 = dir.join("events2.jsonl");
    let mut run = start(&n, &dir, &data, &events2, 18081);
    sleep(Duration::from_millis(300));
    curl(&n, &url);
    sleep(Duration::from_secs(3));
    let err2 = stop(&mut run);
    let ev2 = std::fs::read_to_string(&events2).unwrap();
    let flows2 = to_server(&ev2, "flow", "tcp", &remote, 8080);
    assert_eq!(flows2.len(), 1, "run 2 saw curl's flow:\n{ev2}");
    assert_eq!(
        json_str(&flows2[0], "name"),
        Some("curl"),
        "run 2 named curl: {}",
        flows2[0]
    );
    assert!(!err2.contains("first run"), "run 2 is not a first run:\n{err2}");
    let again = |t: &str| t.lines().filter(|l| new_remote_for(l, &remote)).count();
    assert_eq!(
        again(&run.hook.all()),
        0,
        "no webhook alert in run 2:\n{}",
        run.hook.all()
    );
    assert_eq!(
        again(&run.sse.all()),
        0,
        "no SSE alert in run 2:\n{}",
        run.sse.all()
    );
    assert_eq!(
        records(&ev2, "alert")
            .iter()
            .filter(|l| l.contains("\"app\":\"curl\""))
            .count(),
        0,
        "no alert about curl in run 2:\n{ev2}"
    );
    let alerts2 = stored_alerts(&data);
    assert_eq!(again(&alerts2), 1, "still one stored new_remote:\n{alerts2}");
    // History from both runs is there.
    let hist = Command::new(env!("CARGO_BIN_EXE_netvigil"))
        .args([
            "history",
            "--json",
            "--data-dir",
            data.to_str().unwrap(),
            "--app",
            "curl",
        ])
        .output()
        .unwrap();
    let hist = stdout(&hist);
    assert_eq!(
        hist.lines().filter(|l| l.contains("\"port\":8080}")).count(),
        3,
        "three curl flows in the history:\n{hist}"
    );
}

/// Settings saved on the dashboard take effect in the running monitor: a host made known-safe
/// through `POST /api/settings` (with the dashboard's cookie secret) is still judged and shown
/// (the `new_remote` alert reaches the SSE stream) but no longer reaches the alert channels
/// (the webhook), without a restart.
#[test]
fn a_host_made_safe_on_the_dashboard_is_silenced_without_a_restart() {
    if !need_root() {
        return;
    }
    let n = Netns::new("d");
    let dir = temp_dir("e2e-settings");
    let data = dir.join("data");
    let _server = serve_page(&n, &dir, "hello\n");
    let remote = n.addr_a.clone();
    let mut run = start(&n, &dir, &data, &dir.join("events.jsonl"), 18081);
    let secret = std::fs::read_to_string(dir.join("xdg/netvigil/web.secret")).unwrap();
    let body = format!("{{\"known_safe_hosts\":[\"{remote}\"]}}");
    let post = n
        .exec(
            &n.b,
            &[
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "5",
                "-H",
                "Content-Type: application/json",
                "-H",
                &format!("Origin: http://{DASHBOARD}"),
                "-H",
                &format!("Cookie: nv_token={}", secret.trim()),
                "--data-binary",
                &body,
                &format!("http://{DASHBOARD}/api/settings"),
            ],
        )
        .output()
        .unwrap();
    assert_eq!(stdout(&post), "200", "POST /api/settings: {}", stderr(&post));
    assert!(dir.join("xdg/netvigil/settings.json").exists());

    curl(&n, &format!("http://{remote}:8080/index.html"));
    // Raised and shown on the dashboard ...
    let sse = run.sse.wait(Duration::from_secs(10), |l| {
        l.starts_with("data: ") && new_remote_for(l, &remote)
    });
    assert!(
        sse.is_some(),
        "the new_remote alert for {remote} is not on the SSE stream:\n{}\nnetvigil:\n{}",
        run.sse.all(),
        run.nv.all()
    );
    // ... but no channel gets it (the webhook answers within milliseconds on loopback).
    sleep(Duration::from_secs(3));
    let hooks = run.hook.all();
    assert!(
        !hooks.contains(&format!("\"remote\":\"{remote}\"")),
        "an alert about the known-safe {remote} reached the webhook:\n{hooks}"
    );
    let err = stop(&mut run);
    assert!(
        !err.contains(&format!("alert [info] new_remote curl {remote}")),
        "the terminal channel got it too:\n{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
