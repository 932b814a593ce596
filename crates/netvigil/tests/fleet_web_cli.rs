//! The fleet dashboard through the command line: `netvigil server user add|list|remove`
//! (password from stdin, argon2id hash stored, never the password), and `netvigil server`
//! starting the HTTPS dashboard beside the agent listener with a self-signed certificate whose
//! printed fingerprint is the one served, answering 401 without a session and the devices
//! with one. Everything on loopback with free ports.

mod common;

use sha2::{Digest as _, Sha256};

use common::fleet::*;
use common::temp_dir;

#[test]
fn accounts_from_the_command_line_and_the_dashboard_beside_the_agent_listener() {
    let dir = temp_dir("srv");
    let d = dir.to_str().unwrap();
    let pw = "a long enough password";

    // Accounts: from stdin, hashed.
    let out = nv_stdin(
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
    let out = nv_stdin(
        &["server", "user", "add", "alice", "--data-dir", d],
        "another long password\n",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--replace"));
    let out = nv_stdin(&["server", "user", "add", "bob", "--data-dir", d], "short\n");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("too short"));
    let out = nv_stdin(&["server", "user", "list", "--data-dir", d], "");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).split_whitespace().next(),
        Some("alice")
    );
    // --web-cert without --web-key: refused by the argument parser.
    let out = nv_stdin(&["server", "--web-cert", "/nonexistent.pem", "--data-dir", d], "");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--web-key"));

    // The server: agents and the dashboard on free loopback ports.
    let server = start_server(&dir, true);
    let web = server.web.clone().expect("the dashboard address");
    let fp = server.web_fingerprint.clone().expect("the fingerprint");
    let cert = cert_der(&dir);
    let want: Vec<String> = Sha256::digest(&cert).iter().map(|b| format!("{b:02X}")).collect();
    assert_eq!(
        fp,
        want.join(":"),
        "the printed fingerprint is the kept certificate's"
    );

    assert_eq!(https(&web, &cert, "GET", "/api/devices", None, "").0, 401);
    let cookie = login(&web, &cert, "alice", pw);
    let (st, _, body) = https(&web, &cert, "GET", "/api/devices", Some(&cookie), "");
    assert_eq!((st, body.as_str()), (200, r#"{"devices":[]}"#));

    // Removing the account ends its session on the running server.
    let out = nv_stdin(&["server", "user", "remove", "alice", "--data-dir", d], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        https(&web, &cert, "GET", "/api/devices", Some(&cookie), "").0,
        401
    );
    let out = nv_stdin(&["server", "user", "remove", "alice", "--data-dir", d], "");
    assert!(!out.status.success());
    let _ = std::fs::remove_dir_all(&dir);
}
