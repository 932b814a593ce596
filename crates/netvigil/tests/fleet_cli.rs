//! Fleet mode through the binary, on loopback only: a server, a token, an agent enrolled with
//! it, then `netvigil run` on the agent streams its records up (socket-table mode: no
//! privilege needed), and the server's agent list shows the batches it committed.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nv(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_netvigil"))
        .args(args)
        .output()
        .expect("run netvigil")
}

fn field<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key:?} in {text}"))
}

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

    // The server, on a free loopback port: its address and fingerprint come on stderr.
    let mut child = Command::new(env!("CARGO_BIN_EXE_netvigil"))
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir", s])
        .stderr(Stdio::piped())
        .spawn()
        .expect("netvigil server");
    let stderr = child.stderr.take().unwrap();
    let _server = Kill(child);
    let mut lines = BufReader::new(stderr).lines();
    let listening = lines.next().expect("the server says where it listens").unwrap();
    let addr = listening
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("{listening}"))
        .to_string();

    let out = nv(&["server", "token", "--ttl", "10m", "--data-dir", s]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (token, fingerprint) = (field(&text, "token:"), field(&text, "fingerprint:"));

    let out = nv(&[
        "agent",
        "enroll",
        "--server",
        &addr,
        "--token",
        token,
        "--fingerprint",
        fingerprint,
        "--data-dir",
        a,
    ]);
    assert!(
        out.status.success(),
        "enroll: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The token was spent: a second enrollment with it is refused.
    let again = nv(&[
        "agent",
        "enroll",
        "--server",
        &addr,
        "--token",
        token,
        "--fingerprint",
        fingerprint,
        "--data-dir",
        temp_dir("fleet-agent-2").to_str().unwrap(),
    ]);
    assert!(!again.status.success(), "a spent token must be refused");

    // `run` on the enrolled agent, in socket-table mode: a loopback connection held open by
    // this test (and the agent's own connection to the server) make connection records, which
    // go up in batches.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let _accepted = listener.accept().unwrap();
    let t = Instant::now();
    let run = nv(&[
        "--config",
        c,
        "run",
        "--no-capture",
        "--no-web",
        "--no-rdns",
        "--poll-ms",
        "200",
        "--duration",
        "3",
        "--data-dir",
        a,
        "--events",
        "-",
    ]);
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
    let agents = nv(&["server", "agents", "--data-dir", s]);
    let agents = String::from_utf8_lossy(&agents.stdout);
    let last: u64 = agents
        .split("last batch ")
        .nth(1)
        .and_then(|r| r.trim().parse().ok())
        .unwrap_or_else(|| panic!("{agents}"));
    assert!(last >= 1, "{agents}");
}
