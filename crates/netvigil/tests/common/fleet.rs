//! Fleet scaffolding for the command-line tests: `netvigil server` started on free loopback
//! ports with its printed addresses read from stderr (the rest drained on a thread), tokens and
//! enrollment through the binary, and a one-request HTTPS client pinned to the dashboard's
//! certificate.

use std::io::{BufRead as _, BufReader, Read, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Output, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};

pub use super::netns::Guard as Kill;

/// `netvigil ARGS`, run to the end.
pub fn nv(args: &[&str]) -> Output {
    super::run(args)
}

/// `netvigil ARGS` with `stdin` written to its standard input, run to the end.
pub fn nv_stdin(args: &[&str], stdin: &str) -> Output {
    let mut c = super::netvigil()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run netvigil");
    c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    c.wait_with_output().unwrap()
}

/// The trimmed rest of the first line of `text` that starts with `key`.
pub fn field<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key:?} in {text}"))
}

/// Reads `r` to the end on a thread (a child's pipe must not fill).
pub fn read_to_string_on_thread(mut r: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

/// A running `netvigil server`, killed on drop.
pub struct Server {
    pub child: Kill,
    /// The agent listener, from "listening on ADDR".
    pub addr: String,
    /// The dashboard, from "dashboard on https://ADDR" (with `--web`).
    pub web: Option<String>,
    /// The dashboard certificate's printed SHA-256 fingerprint (with `--web`).
    pub web_fingerprint: Option<String>,
    /// Every line the server wrote on stderr, the first ones included, once it ends.
    pub log: JoinHandle<Vec<String>>,
}

/// `netvigil server --listen 127.0.0.1:0 [--web 127.0.0.1:0] --data-dir DIR`, returned once it
/// printed its listener (and, with `web`, its dashboard address and certificate fingerprint).
pub fn start_server(data_dir: &Path, web: bool) -> Server {
    let mut args = vec!["server", "--listen", "127.0.0.1:0"];
    if web {
        args.extend(["--web", "127.0.0.1:0"]);
    }
    args.extend(["--data-dir", data_dir.to_str().unwrap()]);
    let mut child = super::netvigil()
        .args(&args)
        .stderr(Stdio::piped())
        .spawn()
        .expect("netvigil server");
    let stderr = child.stderr.take().unwrap();
    let child = Kill(child);
    let mut lines = BufReader::new(stderr).lines();
    let (mut seen, mut addr, mut web_addr, mut fp) = (Vec::new(), None, None, None);
    while addr.is_none() || (web && (web_addr.is_none() || fp.is_none())) {
        let Some(Ok(l)) = lines.next() else {
            panic!(
                "the server ended before saying where it listens:\n{}",
                seen.join("\n")
            )
        };
        if let Some(r) = l.split("listening on ").nth(1) {
            addr = r.split_whitespace().next().map(str::to_string);
        }
        if let Some(a) = l.split("dashboard on https://").nth(1) {
            web_addr = Some(a.trim().to_string());
        }
        if let Some(f) = l.split("SHA-256 fingerprint ").nth(1) {
            fp = Some(f.trim().to_string());
        }
        seen.push(l);
        assert!(seen.len() < 20, "{}", seen.join("\n"));
    }
    let log = std::thread::spawn(move || {
        seen.extend(lines.map_while(Result::ok));
        seen
    });
    Server {
        child,
        addr: addr.unwrap(),
        web: web_addr,
        web_fingerprint: fp,
        log,
    }
}

/// `netvigil server token --ttl 10m`: (token, server fingerprint).
pub fn new_token(server_dir: &Path) -> (String, String) {
    let out = nv(&[
        "server",
        "token",
        "--ttl",
        "10m",
        "--data-dir",
        server_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (token, fingerprint) = (field(&text, "token:"), field(&text, "fingerprint:"));
    (token.to_string(), fingerprint.to_string())
}

/// `netvigil agent enroll` with the server at `addr`, into `agent_dir`.
pub fn enroll(addr: &str, token: &str, fingerprint: &str, agent_dir: &Path) -> Output {
    nv(&[
        "agent",
        "enroll",
        "--server",
        addr,
        "--token",
        token,
        "--fingerprint",
        fingerprint,
        "--data-dir",
        agent_dir.to_str().unwrap(),
    ])
}

/// `netvigil --config CONFIG run` as an enrolled agent in socket-table mode (no capture, no
/// dashboard, no reverse DNS), polling every `poll_ms`, for `secs` seconds, its records on
/// stdout.
pub fn agent_run_args<'a>(
    config: &'a str,
    agent_dir: &'a str,
    poll_ms: &'a str,
    secs: &'a str,
) -> Vec<&'a str> {
    vec![
        "--config",
        config,
        "run",
        "--no-capture",
        "--no-web",
        "--no-rdns",
        "--poll-ms",
        poll_ms,
        "--duration",
        secs,
        "--data-dir",
        agent_dir,
        "--events",
        "-",
    ]
}

/// The `last batch N` numbers of `netvigil server agents`, in its order.
pub fn last_batches(server_dir: &Path) -> Vec<u64> {
    let out = nv(&["server", "agents", "--data-dir", server_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .map(|l| {
            l.split("last batch ")
                .nth(1)
                .and_then(|r| r.trim().parse().ok())
                .unwrap_or_else(|| panic!("no last batch in {l:?}"))
        })
        .collect()
}

/// The dashboard's certificate (DER) as kept in the server's data directory.
pub fn cert_der(dir: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(dir.join("fleet-web/cert.pem"))
        .unwrap()
        .to_vec()
}

/// One HTTPS request pinned to `cert`; (status, Set-Cookie session value, body).
pub fn https(
    addr: &str,
    cert: &[u8],
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: &str,
) -> (u16, Option<String>, String) {
    let cfg = super::pinned::pinned_config(cert, rustls::DEFAULT_VERSIONS);
    let conn = rustls::ClientConnection::new(cfg, ServerName::try_from("localhost").unwrap()).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(c) = cookie {
        req.push_str(&format!("Cookie: __Host-nv_session={c}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    if let Err(e) = s.read_to_end(&mut raw) {
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let cookie = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .and_then(|v| v.split(';').next())
        .and_then(|kv| kv.split_once('='))
        .map(|(_, v)| v.to_string());
    (status, cookie, body.to_string())
}

/// Logs in to the dashboard at `web` with a password: the session cookie's value.
pub fn login(web: &str, cert: &[u8], user: &str, password: &str) -> String {
    let (st, cookie, body) = https(
        web,
        cert,
        "POST",
        "/api/login",
        None,
        &format!(r#"{{"user":"{user}","password":"{password}"}}"#),
    );
    assert_eq!(st, 200, "{body}");
    cookie.expect("a session cookie")
}
