//! Fleet mode through the binary, on loopback only: a server, a token, an agent enrolled with
//! it, then `netvigil run` on the agent streams its records up (socket-table mode: no
//! privilege needed), the server's agent list shows the batches it committed, and its HTTPS
//! dashboard, logged in with an account added from the command line, shows the same device
//! with the same last batch.

mod common;

use std::time::{Duration, Instant};

use common::fleet::*;
use common::*;

#[test]
fn an_enrolled_agent_streams_its_records_to_the_server() {
    let (server_dir, agent_dir) = (temp_dir("fleet-server"), temp_dir("fleet-agent"));
    let config = agent_dir.join("config.toml");
    std::fs::write(&config, "").unwrap();
    let (s, a, c) = (
        server_dir.to_str().unwrap(),
        agent_dir.to_str().unwrap(),
        config.to_str().unwrap(),
    );

    // The server, agents and dashboard on free loopback ports: the addresses come on stderr.
    let server = start_server(&server_dir, true);
    let addr = server.addr.clone();

    let (token, fingerprint) = new_token(&server_dir);
    let out = enroll(&addr, &token, &fingerprint, &agent_dir);
    assert!(
        out.status.success(),
        "enroll: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The token was spent: a second enrollment with it is refused.
    let again = enroll(&addr, &token, &fingerprint, &temp_dir("fleet-agent-2"));
    assert!(!again.status.success(), "a spent token must be refused");

    // `run` on the enrolled agent, in socket-table mode: a loopback connection held open by
    // this test (and the agent's own connection to the server) make connection records, which
    // go up in batches.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let _accepted = listener.accept().unwrap();
    let t = Instant::now();
    let run = nv(&agent_run_args(c, a, "200", "3"));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "run: {err}");
    assert!(
        err.contains("fleet agent"),
        "run says it streams to the server: {err}"
    );
    let delivered: u64 = err
        .lines()
        .find_map(|l| l.split_once("netvigil::sinks: fleet: ").map(|(_, r)| r))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.replace(',', "").parse().ok())
        .unwrap_or_else(|| panic!("no fleet summary in {err}"));
    let printed = String::from_utf8_lossy(&run.stdout).lines().count() as u64;
    assert!(delivered > 0, "records delivered: {err}");
    assert_eq!(delivered, printed, "every printed record was delivered: {err}");
    assert!(t.elapsed() < Duration::from_secs(30));

    // The server committed them: its agent list shows a batch number above zero.
    let last = last_batches(&server_dir);
    assert_eq!(last.len(), 1, "one enrolled agent: {last:?}");
    assert!(last[0] >= 1, "{last:?}");

    // The dashboard reads what the agent listener stored: an account from the command line,
    // a password login over HTTPS, and the device with the same last batch.
    let pw = "a long enough password";
    let out = nv_stdin(
        &["server", "user", "add", "alice", "--data-dir", s],
        &format!("{pw}\n"),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let web = server.web.as_deref().expect("the dashboard address");
    let cert = cert_der(&server_dir);
    let cookie = login(web, &cert, "alice", pw);
    let (st, _, body) = https(web, &cert, "GET", "/api/devices", Some(&cookie), "");
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let devices = v["devices"].as_array().unwrap_or_else(|| panic!("{body}"));
    assert_eq!(devices.len(), 1, "{body}");
    assert_eq!(devices[0]["last_batch"].as_u64(), Some(last[0]), "{body}");
    assert_eq!(devices[0]["revoked"].as_bool(), Some(false), "{body}");
    drop(server);
    let _ = std::fs::remove_dir_all(&server_dir);
    let _ = std::fs::remove_dir_all(&agent_dir);
}
