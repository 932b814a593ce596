//! `netvigil config --test-alert`: one alert through the terminal, a webhook on 127.0.0.1 (that
//! fails the first requests) and a syslog socket the test binds, as configured in a file.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("netvigil-notify-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Serves up to `n` requests (for at most 20 s): 500 to the first `fail`, then 200; sends each
/// request body to the returned channel.
fn receiver(n: usize, fail: usize) -> (u16, mpsc::Receiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    l.set_nonblocking(true).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(20);
        let mut served = 0;
        while served < n && Instant::now() < end {
            let Ok((mut s, _)) = l.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let body = loop {
                let Ok(k) = s.read(&mut chunk) else { break None };
                if k == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..k]);
                let t = String::from_utf8_lossy(&buf).to_string();
                if let Some((head, body)) = t.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap();
                    if body.len() >= len {
                        break Some(body.to_string());
                    }
                }
            };
            let status = if served < fail { "500 Oops" } else { "200 OK" };
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            served += 1;
            if let Some(b) = body {
                let _ = tx.send(b);
            }
        }
    });
    (port, rx)
}

fn run(dir: &std::path::Path, config: &str) -> std::process::Output {
    let file = dir.join("config.toml");
    std::fs::write(&file, config).unwrap();
    Command::new(env!("CARGO_BIN_EXE_netvigil"))
        .args([
            "--config",
            file.to_str().unwrap(),
            "config",
            "--test-alert",
            "--wait",
            "10",
        ])
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .output()
        .unwrap()
}

#[test]
fn test_alert_reaches_terminal_webhook_with_retries_and_syslog() {
    let dir = tempdir("ok");
    let (port, bodies) = receiver(3, 2);
    let sock = dir.join("log.sock");
    let log = UnixDatagram::bind(&sock).unwrap();
    log.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let out = run(
        &dir,
        &format!(
            "[notify.webhook]\nurl = \"http://127.0.0.1:{port}/hook\"\nretries = 3\nbackoff_initial = \"20ms\"\n\
             [notify.syslog]\nenabled = true\nsocket = \"{}\"\n",
            sock.display()
        ),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("terminal: delivered\n"), "{stdout}");
    assert!(
        stdout.contains("webhook: delivered after 2 retries\n"),
        "{stdout}"
    );
    assert!(stdout.contains("syslog: delivered\n"), "{stdout}");
    assert!(stderr.contains("desktop: off (no D-Bus session bus"), "{stderr}");
    assert!(
        stderr.contains("netvigil: alert [high] test netvigil: This is a test alert"),
        "{stderr}"
    );
    let bodies: Vec<String> = bodies.try_iter().collect();
    assert_eq!(bodies.len(), 3, "two failures and a success");
    assert!(bodies.iter().all(|b| b == &bodies[0]));
    assert!(
        bodies[0].starts_with("{\"type\":\"alert\",\"v\":1,\"id\":\"test\",\"ts\":\""),
        "{}",
        bodies[0]
    );
    assert!(
        bodies[0].contains("\"severity\":\"high\",\"rule\":\"test\""),
        "{}",
        bodies[0]
    );
    let mut buf = [0u8; 4096];
    let n = log.recv(&mut buf).unwrap();
    let msg = String::from_utf8_lossy(&buf[..n]);
    assert!(msg.starts_with("<27>1 "), "daemon.err: {msg}");
    assert!(
        msg.contains(" netvigil ") && msg.contains("rule=\"test\""),
        "{msg}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_dead_webhook_fails_alone() {
    let dir = tempdir("dead");
    // A port nobody listens on: connection refused, retried once, then a failure.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let out = run(
        &dir,
        &format!(
            "[notify.webhook]\nurl = \"http://127.0.0.1:{port}/hook\"\nretries = 1\nbackoff_initial = \"10ms\"\n"
        ),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("terminal: delivered\n"), "{stdout}");
    assert!(stdout.contains("webhook: FAILED"), "{stdout}");
    assert!(
        stderr.contains(
            "notify: alert not delivered channel=\"webhook\" alert=test error=cannot connect to 127.0.0.1:"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("(gave up after 2 attempts)"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}
