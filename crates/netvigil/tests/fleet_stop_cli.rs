//! `netvigil server` stops cleanly on SIGTERM, through the binary on loopback: an agent
//! (`netvigil run` in socket-table mode, with loopback connections made by this test) streams
//! batches; SIGTERM mid-stream; the server exits 0 after its dashboard closed, and every batch
//! it acknowledged is in its store (the agent's spool keeps only unacknowledged batches, so the
//! records printed minus those still spooled must all be stored).

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::fleet::*;
use common::*;

const CONNECTION: &str = "\"type\":\"connection\"";

#[test]
fn sigterm_stops_the_server_and_every_acknowledged_batch_is_stored() {
    let (server_dir, agent_dir) = (temp_dir("stop-server"), temp_dir("stop-agent"));
    let config = agent_dir.join("config.toml");
    std::fs::write(&config, "").unwrap();
    let (a, c) = (agent_dir.to_str().unwrap(), config.to_str().unwrap());
    let Server {
        child: mut server,
        addr,
        log,
        ..
    } = start_server(&server_dir, true);
    let pid = server.0.id();

    let (token, fingerprint) = new_token(&server_dir);
    let out = enroll(&addr, &token, &fingerprint, &agent_dir);
    assert!(
        out.status.success(),
        "enroll: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The agent, for 7 s; batches go up at least once a second.
    let mut agent = netvigil()
        .args(agent_run_args(c, a, "100", "7"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("netvigil run");
    let out_reader = read_to_string_on_thread(agent.stdout.take().unwrap());
    let err_reader = read_to_string_on_thread(agent.stderr.take().unwrap());
    let agent = Kill(agent);

    // Loopback connections for 5 s (each open 300 ms, at most 500): connection records.
    let load = std::thread::spawn(|| {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        l.set_nonblocking(true).unwrap();
        let t = Instant::now();
        let mut open = std::collections::VecDeque::new();
        let mut n = 0;
        while t.elapsed() < Duration::from_secs(5) && n < 500 {
            if let Ok(c) = std::net::TcpStream::connect(addr) {
                open.push_back((Instant::now(), c));
                n += 1;
            }
            while let Ok((c, _)) = l.accept() {
                open.push_back((Instant::now(), c));
            }
            while open
                .front()
                .is_some_and(|(t0, _)| t0.elapsed() > Duration::from_millis(300))
            {
                open.pop_front();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });

    std::thread::sleep(Duration::from_millis(3000));
    // SAFETY: kill(2) on the server child's pid, which this test spawned and has not reaped.
    let r = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    assert_eq!(r, 0);
    let t = Instant::now();
    let status = loop {
        if let Some(st) = server.0.try_wait().unwrap() {
            break st;
        }
        assert!(
            t.elapsed() < Duration::from_secs(45),
            "the server did not stop within 45 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = log.join().unwrap().join("\n");
    assert_eq!(status.code(), Some(0), "exit status {status:?}; log:\n{log}");
    assert!(log.contains("server: stopping"), "{log}");
    assert!(log.contains("server: stopped"), "{log}");
    load.join().unwrap();

    // The agent ends on its own (its server is gone: the rest stays in its spool).
    let mut agent = agent;
    let t = Instant::now();
    while agent.0.try_wait().unwrap().is_none() {
        assert!(t.elapsed() < Duration::from_secs(60), "the agent did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    let printed = out_reader.join().unwrap();
    let agent_log = err_reader.join().unwrap();
    let printed = printed.lines().filter(|l| l.contains(CONNECTION)).count();
    let mut spooled = 0;
    for e in std::fs::read_dir(agent_dir.join("fleet-spool")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "batch") {
            let text = std::fs::read_to_string(&p).unwrap();
            spooled += text.lines().filter(|l| l.contains(CONNECTION)).count();
        }
    }
    let acknowledged = printed - spooled;
    let db = rusqlite::Connection::open(server_dir.join("fleet-records.db")).unwrap();
    let stored: i64 = db
        .query_row("SELECT COUNT(*) FROM events WHERE kind = 7", [], |r| r.get(0))
        .unwrap();
    let stored = usize::try_from(stored).unwrap();
    eprintln!(
        "connection records: {printed} printed, {spooled} still spooled, {acknowledged} acknowledged, {stored} stored"
    );
    assert!(
        acknowledged > 0,
        "nothing was acknowledged before the stop: {agent_log}"
    );
    assert!(
        spooled > 0,
        "the stop was not mid-stream: nothing left for later: {agent_log}"
    );
    assert!(
        stored >= acknowledged,
        "{stored} connection records stored, {acknowledged} acknowledged ({printed} printed, {spooled} still spooled)\n{log}\n{agent_log}"
    );
    assert!(stored <= printed, "{stored} stored > {printed} printed");
    let _ = std::fs::remove_dir_all(&server_dir);
    let _ = std::fs::remove_dir_all(&agent_dir);
}
