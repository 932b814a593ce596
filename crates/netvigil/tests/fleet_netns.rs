//! The fleet end to end, with real processes, real network namespaces and a real PostgreSQL
//! (started by this test with initdb/pg_ctl as the `postgres` user, unix socket only): a
//! `netvigil server --db postgres://...` in its own namespace and three agents, each
//! `netvigil run` with packet capture in a namespace of its own (linked to the server's by a
//! veth pair) and loopback traffic of its own. The server is killed with SIGKILL in the middle
//! of the stream and started again: every record each agent printed is in PostgreSQL exactly
//! once, under that agent's device id. Then the refusals, with nothing stored: an unknown key, a
//! revoked key, a spent token, an expired token.

mod common;

#[path = "../../store/tests/support/pg_server.rs"]
mod pg_server;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::fleet::{field, read_to_string_on_thread};
use common::netns::{Guard, Netns, need_root, python, sh};
use common::temp_dir;
use store::Backend as _;

const BIN: &str = env!("CARGO_BIN_EXE_netvigil");
const PORT: u16 = 18_078;

/// Extra namespaces linked to the server's namespace; removed on drop.
struct ExtraNs(Vec<String>);
impl Drop for ExtraNs {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A namespace `ns` joined to `server_ns` by a veth pair on 10.`net`.`id`.0/24 (the server's
/// side is .1, the agent's .2). Returns the server's address on that link.
fn link_agent_ns(server_ns: &str, ns: &str, net: u8, id: u32) -> String {
    let _ = Command::new("ip")
        .args(["netns", "del", ns])
        .stderr(Stdio::null())
        .status();
    sh(&["ip", "netns", "add", ns]);
    let (va, vb) = (format!("nvfs{net}{id}"), format!("nvfa{net}{id}"));
    sh(&[
        "ip", "link", "add", &va, "netns", server_ns, "type", "veth", "peer", "name", &vb, "netns", ns,
    ]);
    let (sa, aa) = (format!("10.{net}.{id}.1"), format!("10.{net}.{id}.2"));
    sh(&[
        "ip",
        "-n",
        server_ns,
        "addr",
        "add",
        &format!("{sa}/24"),
        "dev",
        &va,
    ]);
    sh(&["ip", "-n", ns, "addr", "add", &format!("{aa}/24"), "dev", &vb]);
    for (n, d) in [(server_ns, &va), (ns, &vb)] {
        sh(&["ip", "-n", n, "link", "set", d, "up"]);
        sh(&["ip", "-n", n, "link", "set", "lo", "up"]);
    }
    sa
}

fn in_ns(ns: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).args(args);
    c
}

fn output(mut c: Command) -> String {
    let out = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `netvigil server` in `ns`, started once it says where it listens.
fn start_server(ns: &str, data: &Path, url: &str) -> Guard {
    let mut child = in_ns(
        ns,
        &[
            BIN,
            "server",
            "--listen",
            &format!("0.0.0.0:{PORT}"),
            "--data-dir",
            data.to_str().unwrap(),
            "--db",
            url,
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("netvigil server");
    let mut err = child.stderr.take().unwrap();
    let guard = Guard(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut first = Vec::new();
        let mut b = [0u8; 1];
        while err.read(&mut b).is_ok_and(|n| n == 1) && b[0] != b'\n' {
            first.push(b[0]);
        }
        let _ = tx.send(String::from_utf8_lossy(&first).into_owned());
        // Keep draining (the server logs each connection).
        let _ = std::io::copy(&mut err, &mut std::io::sink());
    });
    let first = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the server did not start");
    assert!(first.contains("listening on"), "{first}");
    guard
}

/// One agent's `netvigil run`: its stdout and stderr, read to the end.
struct Run {
    child: Child,
    out: std::thread::JoinHandle<String>,
    err: std::thread::JoinHandle<String>,
}

fn start_run(ns: &str, data: &Path, config: &Path, seconds: u32) -> Run {
    let mut child = in_ns(
        ns,
        &[
            BIN,
            "--config",
            config.to_str().unwrap(),
            "run",
            "--events",
            "-",
            "--no-web",
            "--no-rdns",
            "--poll-ms",
            "200",
            "--duration",
            &seconds.to_string(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("netvigil run");
    let (o, e) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    Run {
        child,
        out: read_to_string_on_thread(o),
        err: read_to_string_on_thread(e),
    }
}

/// Loopback traffic inside `ns`: `n` TCP connections to a listener of its own, 150 ms apart,
/// and a UDP datagram each time.
fn traffic(ns: &str, n: u32) -> Guard {
    let script = format!(
        "import socket,threading,time\n\
         s=socket.socket();s.bind(('127.0.0.1',0));s.listen(64);p=s.getsockname()[1]\n\
         def srv():\n\
         \x20 while True:\n\
         \x20   c,_=s.accept();c.recv(100);c.sendall(b'y'*700);c.close()\n\
         threading.Thread(target=srv,daemon=True).start()\n\
         u=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         for i in range({n}):\n\
         \x20 c=socket.create_connection(('127.0.0.1',p));c.sendall(b'hello');c.recv(1000);c.close()\n\
         \x20 u.sendto(b'ping',('127.0.0.1',9999));time.sleep(0.15)\n"
    );
    Guard(
        in_ns(ns, &[python(), "-c", &script])
            .stdout(Stdio::null())
            .spawn()
            .expect("python traffic"),
    )
}

/// A record line in a form both sides share: records re-written by the engine (the agent's
/// lines carry the judgement too, the store keeps the record), alerts as they are.
fn canonical(line: &str) -> Option<String> {
    let v = engine::json_read::parse(line).ok()?;
    match v.get("type")?.as_str()? {
        "alert" => Some(line.to_owned()),
        _ => {
            let r = engine::Record::from_value(&v).ok()?;
            let mut s = String::new();
            r.write_json(&mut s);
            Some(s)
        }
    }
}

/// Lines -> how many times each canonical line appears.
fn counts(lines: impl IntoIterator<Item = String>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for l in lines {
        *m.entry(l).or_default() += 1;
    }
    m
}

#[test]
fn three_agents_in_namespaces_deliver_every_record_once_through_a_killed_server() {
    if !need_root() {
        return;
    }
    let Some(pg) = pg_server::shared() else { return };
    let db = pg.create_db("nv_fleet_netns");
    let url = db.url();
    let n = Netns::new("fl");
    let id = std::process::id() % 200 + 20;
    let mut extra = ExtraNs(Vec::new());
    let (ns2, ns3) = (format!("nvfl2{id}"), format!("nvfl3{id}"));
    let s2 = link_agent_ns(&n.a, &ns2, 232, id);
    extra.0.push(ns2.clone());
    let s3 = link_agent_ns(&n.a, &ns3, 233, id);
    extra.0.push(ns3.clone());
    let agents = [(n.b.clone(), n.addr_a.clone()), (ns2, s2), (ns3, s3)];

    let sd = temp_dir("fleet-netns-server");
    let mut server = start_server(&n.a, &sd, &url);
    let fingerprint;
    let mut devices = Vec::new();
    let mut dirs = Vec::new();
    {
        let mut fp = String::new();
        for (i, (ns, saddr)) in agents.iter().enumerate() {
            let t = output(in_ns(
                &n.a,
                &[
                    BIN,
                    "server",
                    "token",
                    "--ttl",
                    "10m",
                    "--data-dir",
                    sd.to_str().unwrap(),
                    "--db",
                    &url,
                ],
            ));
            let (token, f) = (field(&t, "token:"), field(&t, "fingerprint:"));
            fp = f.to_owned();
            let ad = temp_dir(&format!("fleet-netns-agent{i}"));
            let e = output(in_ns(
                ns,
                &[
                    BIN,
                    "agent",
                    "enroll",
                    "--server",
                    &format!("{saddr}:{PORT}"),
                    "--token",
                    token,
                    "--fingerprint",
                    f,
                    "--name",
                    &format!("agent{i}"),
                    "--data-dir",
                    ad.to_str().unwrap(),
                ],
            ));
            let device: u32 = e
                .split("as device ")
                .nth(1)
                .and_then(|d| d.trim().parse().ok())
                .unwrap_or_else(|| panic!("{e}"));
            devices.push(device);
            dirs.push(ad);
        }
        fingerprint = fp;
    }
    assert_eq!(devices.len(), 3);
    assert_eq!(fingerprint.len(), 64);

    // Three agents, with traffic; the server killed (SIGKILL) 4 s in, back 2 s later.
    let started = Instant::now();
    let mut runs = Vec::new();
    let mut load = Vec::new();
    for (i, (ns, _)) in agents.iter().enumerate() {
        let cfg = dirs[i].join("config.toml");
        std::fs::write(&cfg, "").unwrap();
        runs.push(start_run(ns, &dirs[i], &cfg, 14));
    }
    std::thread::sleep(Duration::from_millis(800));
    for (ns, _) in &agents {
        load.push(traffic(ns, 50));
    }
    std::thread::sleep(Duration::from_secs(4));
    server.0.kill().expect("kill -9 the server");
    server.0.wait().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    server = start_server(&n.a, &sd, &url);

    let mut printed = Vec::new();
    for (i, r) in runs.into_iter().enumerate() {
        let Run { mut child, out, err } = r;
        let deadline = Instant::now() + Duration::from_secs(40);
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "agent {i} did not stop");
            std::thread::sleep(Duration::from_millis(100));
        }
        let (out, err) = (out.join().unwrap(), err.join().unwrap());
        assert!(child.wait().unwrap().success(), "agent {i}: {err}");
        let summary = err
            .lines()
            .find_map(|l| l.split_once("netvigil::sinks: fleet: ").map(|(_, r)| r))
            .unwrap_or_else(|| panic!("agent {i}: no fleet summary: {err}"));
        assert!(
            summary.contains(" 0 batches waiting in the spool, 0 records dropped"),
            "agent {i}: {summary}"
        );
        assert!(err.contains("capturing"), "agent {i} captures packets: {err}");
        printed.push(out);
    }
    drop(load);
    assert!(started.elapsed() < Duration::from_secs(90));

    // Every printed record is in PostgreSQL once, under its agent's device.
    let mut st = store::pg::PgStore::connect(&url, store::DeviceId(0)).unwrap();
    for (i, out) in printed.iter().enumerate() {
        let want = counts(out.lines().filter_map(canonical));
        let flows_printed = want
            .keys()
            .filter(|l| l.starts_with("{\"type\":\"flow\""))
            .count();
        assert!(flows_printed >= 20, "agent {i} printed {flows_printed} flows");
        // Live flows name their capture interface; stored equal to printed (below) carries it
        // to the server.
        assert!(
            want.keys()
                .any(|l| l.starts_with("{\"type\":\"flow\"") && l.contains("\"iface\":\"")),
            "agent {i}: no flow names its interface"
        );
        let q = store::Query {
            device: Some(store::DeviceId(devices[i])),
            ..store::Query::default()
        };
        let mut got: Vec<String> = Vec::new();
        got.extend(
            st.flows(&q)
                .unwrap()
                .into_iter()
                .filter_map(|f| canonical(&f.json)),
        );
        got.extend(st.events(&q).unwrap().iter().filter_map(|j| canonical(j)));
        got.extend(st.alerts(&q).unwrap().into_iter().map(|a| a.json));
        let got = counts(got);
        // Alerts are kept once per id (an agent may raise the same alert again); records once.
        let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).take(3).collect();
        let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).take(3).collect();
        assert!(
            missing.is_empty(),
            "agent {i}: printed but not stored: {missing:?}"
        );
        assert!(extra.is_empty(), "agent {i}: stored but never printed: {extra:?}");
        for (line, n) in &got {
            let printed_n = want[line];
            let is_alert = line.starts_with("{\"type\":\"alert\"");
            assert!(
                *n == printed_n || (is_alert && *n == 1),
                "agent {i}: stored {n} times, printed {printed_n} times: {line}"
            );
        }
        eprintln!(
            "agent {i} (device {}): {} records, all stored once",
            devices[i],
            want.values().sum::<usize>()
        );
    }

    // Refusals leave nothing behind: an enrolled agent revoked, then its `run` delivers nothing.
    let before = st
        .flows(&store::Query {
            device: Some(store::DeviceId(devices[0])),
            ..store::Query::default()
        })
        .unwrap()
        .len();
    let seq_before = st.source_seq(store::DeviceId(devices[0])).unwrap();
    output(in_ns(
        &n.a,
        &[
            BIN,
            "server",
            "revoke",
            &devices[0].to_string(),
            "--data-dir",
            sd.to_str().unwrap(),
            "--db",
            &url,
        ],
    ));
    let cfg = dirs[0].join("config.toml");
    let r = start_run(&agents[0].0, &dirs[0], &cfg, 3);
    let _load = traffic(&agents[0].0, 10);
    let Run { mut child, out, err } = r;
    assert!(child.wait().unwrap().success());
    let (_, err) = (out.join().unwrap(), err.join().unwrap());
    let summary = err
        .lines()
        .find_map(|l| l.split_once("netvigil::sinks: fleet: ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("no fleet summary: {err}"));
    assert!(summary.starts_with("0 records delivered"), "{summary}");
    assert!(err.contains("revoked"), "the agent says why: {err}");
    assert_eq!(
        st.flows(&store::Query {
            device: Some(store::DeviceId(devices[0])),
            ..store::Query::default()
        })
        .unwrap()
        .len(),
        before
    );
    assert_eq!(st.source_seq(store::DeviceId(devices[0])).unwrap(), seq_before);
    drop(server);
    drop(extra);
}
