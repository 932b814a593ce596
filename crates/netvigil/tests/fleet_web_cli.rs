//! The fleet dashboard through the command line: `netvigil server user add|list|remove`
//! (password from stdin, argon2id hash stored, never the password), and `netvigil server`
//! starting the HTTPS dashboard beside the agent listener with a self-signed certificate whose
//! printed fingerprint is the one served, answering 401 without a session and the devices
//! with one. Everything on loopback with free ports.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest as _, Sha256};

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nv-fleetweb-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn nv(args: &[&str], stdin: &str) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_netvigil"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    c.wait_with_output().unwrap()
}

#[derive(Debug)]
struct Pinned(Vec<u8>, Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.0.as_slice() {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("not the pinned certificate".into()))
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.1.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.1.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.1.signature_verification_algorithms.supported_schemes()
    }
}

/// One HTTPS request pinned to `cert`; (status, Set-Cookie value, body).
fn https(
    addr: &str,
    cert: &[u8],
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: &str,
) -> (u16, Option<String>, String) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned(cert.to_vec(), provider)))
        .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(Arc::new(cfg), ServerName::try_from("localhost").unwrap()).unwrap();
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

fn cert_der(dir: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(dir.join("fleet-web/cert.pem"))
        .unwrap()
        .to_vec()
}

#[test]
fn accounts_from_the_command_line_and_the_dashboard_beside_the_agent_listener() {
    let dir = temp_dir("srv");
    let d = dir.to_str().unwrap();
    let pw = "a long enough password";

    // Accounts: from stdin, hashed.
    let out = nv(
        &["server", "user", "add", "alice", "--data-dir", d],
        &format!("{pw}\n"),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // In the fleet database (fleet.db without --db), as an argon2id hash only.
    let db = rusqlite::Connection::open(dir.join("fleet.db")).unwrap();
    let hash: String = db
        .query_row("SELECT hash FROM fleet_users WHERE name = 'alice'", [], |r| {
            r.get(0)
        })
        .unwrap();
    drop(db);
    assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
    let raw = std::fs::read(dir.join("fleet.db")).unwrap();
    let wal = std::fs::read(dir.join("fleet.db-wal")).unwrap_or_default();
    for bytes in [&raw, &wal] {
        assert!(
            !bytes.windows(pw.len()).any(|w| w == pw.as_bytes()),
            "the password itself is stored"
        );
    }
    let out = nv(
        &["server", "user", "add", "alice", "--data-dir", d],
        "another long password\n",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--replace"));
    let out = nv(&["server", "user", "add", "bob", "--data-dir", d], "short\n");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("too short"));
    let out = nv(&["server", "user", "list", "--data-dir", d], "");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).split_whitespace().next(),
        Some("alice")
    );
    // --web-cert without --web-key: refused by the argument parser.
    let out = nv(&["server", "--web-cert", "/nonexistent.pem", "--data-dir", d], "");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--web-key"));

    // The server: agents and the dashboard on free loopback ports.
    let mut child = Command::new(env!("CARGO_BIN_EXE_netvigil"))
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--web",
            "127.0.0.1:0",
            "--data-dir",
            d,
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("netvigil server");
    let stderr = child.stderr.take().unwrap();
    let _server = Kill(child);
    let mut lines = BufReader::new(stderr).lines();
    let (mut web, mut fp) = (None, None);
    for _ in 0..10 {
        let Some(Ok(l)) = lines.next() else { break };
        if let Some(a) = l.split("dashboard on https://").nth(1) {
            web = Some(a.trim().to_string());
        }
        if let Some(f) = l.split("SHA-256 fingerprint ").nth(1) {
            fp = Some(f.trim().to_string());
        }
        if web.is_some() && fp.is_some() {
            break;
        }
    }
    let (web, fp) = (web.expect("the dashboard address"), fp.expect("the fingerprint"));
    let cert = cert_der(&dir);
    let want: Vec<String> = Sha256::digest(&cert).iter().map(|b| format!("{b:02X}")).collect();
    assert_eq!(
        fp,
        want.join(":"),
        "the printed fingerprint is the kept certificate's"
    );

    assert_eq!(https(&web, &cert, "GET", "/api/devices", None, "").0, 401);
    let (st, cookie, _) = https(
        &web,
        &cert,
        "POST",
        "/api/login",
        None,
        &format!(r#"{{"user":"alice","password":"{pw}"}}"#),
    );
    assert_eq!(st, 200);
    let cookie = cookie.expect("a session cookie");
    let (st, _, body) = https(&web, &cert, "GET", "/api/devices", Some(&cookie), "");
    assert_eq!((st, body.as_str()), (200, r#"{"devices":[]}"#));

    // Removing the account ends its session on the running server.
    let out = nv(&["server", "user", "remove", "alice", "--data-dir", d], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        https(&web, &cert, "GET", "/api/devices", Some(&cookie), "").0,
        401
    );
    let out = nv(&["server", "user", "remove", "alice", "--data-dir", d], "");
    assert!(!out.status.success());
    let _ = std::fs::remove_dir_all(&dir);
}
