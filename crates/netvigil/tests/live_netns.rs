//! `netvigil run` in network namespaces that this test creates: a web server in one, `curl`
//! in the other, netvigil watching each side. Traffic stays between the two namespaces.
//!
//! Needs root (namespaces, capture). Without root: a note, or a failure when CI=true.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::*;

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

fn need_root() -> bool {
    if is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("the live network-namespace tests need root (CI runs them as root)");
    }
    eprintln!("note: not root; skipping the network-namespace test");
    false
}

fn sh(args: &[&str]) {
    let st = Command::new(args[0])
        .args(&args[1..])
        .status()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(st.success(), "{args:?} failed: {st}");
}

/// Two namespaces joined by a veth pair; removed on drop.
struct Netns {
    a: String,
    b: String,
    veth_a: String,
    veth_b: String,
    addr_a: String,
    addr_b: String,
}

impl Netns {
    fn new(tag: &str) -> Self {
        let id = std::process::id() % 200 + 20;
        let n = Netns {
            a: format!("nv{tag}a{id}"),
            b: format!("nv{tag}b{id}"),
            veth_a: format!("nv{tag}{id}a"),
            veth_b: format!("nv{tag}{id}b"),
            addr_a: format!("10.231.{id}.1"),
            addr_b: format!("10.231.{id}.2"),
        };
        let _ = Command::new("ip").args(["netns", "del", &n.a]).status();
        let _ = Command::new("ip").args(["netns", "del", &n.b]).status();
        sh(&["ip", "netns", "add", &n.a]);
        sh(&["ip", "netns", "add", &n.b]);
        sh(&[
            "ip", "link", "add", &n.veth_a, "netns", &n.a, "type", "veth", "peer", "name", &n.veth_b,
            "netns", &n.b,
        ]);
        for (ns, dev, addr) in [(&n.a, &n.veth_a, &n.addr_a), (&n.b, &n.veth_b, &n.addr_b)] {
            sh(&["ip", "-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
            sh(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("fd00:231::{}/64", &addr[addr.len() - 1..]),
                "dev",
                dev,
                "nodad",
            ]);
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        n
    }

    fn exec(&self, ns: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).args(args);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.a]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.b]).status();
    }
}

/// Kills the child on drop (a failed assertion must not leave servers running).
struct Guard(Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `netvigil run --events -` in `ns` and waits until it says it is watching.
fn start_netvigil(
    n: &Netns,
    ns: &str,
    seconds: f64,
    extra: &[&str],
) -> (Guard, std::thread::JoinHandle<String>) {
    let bin = env!("CARGO_BIN_EXE_netvigil");
    let secs = seconds.to_string();
    let mut args = vec![
        bin,
        "run",
        "--events",
        "-",
        "--no-web",
        "--poll-ms",
        "100",
        "--duration",
        &secs,
    ];
    args.extend_from_slice(extra);
    let mut child = n
        .exec(ns, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn netvigil");
    let mut stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    // Wait for the mode line on stderr.
    let mut lines = BufReader::new(stderr).lines();
    let start = Instant::now();
    let first = lines.next().and_then(|l| l.ok()).unwrap_or_default();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "netvigil did not start"
    );
    assert!(
        first.contains("capturing") || first.contains("socket-table"),
        "unexpected first line: {first}"
    );
    std::thread::spawn(move || for _ in lines {});
    (Guard(child), reader)
}

fn records(text: &str, typ: &str) -> Vec<String> {
    let prefix = format!("{{\"type\":\"{typ}\"");
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

fn json_str<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\":\"");
    let at = line.find(&pat)? + pat.len();
    line[at..].split('"').next()
}

#[test]
fn curl_to_a_web_server_outbound_and_inbound_with_owners_and_bytes() {
    if !need_root() {
        return;
    }
    let n = Netns::new("h");
    let dir = temp_dir("netns-http");
    std::fs::write(dir.join("index.html"), "x".repeat(20_000)).unwrap();
    let server = n
        .exec(
            &n.a,
            &[
                "python3",
                "-m",
                "http.server",
                "8080",
                "--bind",
                &n.addr_a,
                "--directory",
                dir.to_str().unwrap(),
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 http.server");
    let server = Guard(server);
    // Wait until the server answers (bounded).
    let url = format!("http://{}:8080/index.html", n.addr_a);
    let t0 = Instant::now();
    while !n
        .exec(&n.b, &["curl", "-s", "-o", "/dev/null", &url])
        .status()
        .unwrap()
        .success()
    {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the web server did not come up"
        );
        sleep(Duration::from_millis(100));
    }
    sleep(Duration::from_millis(300));
    let pcap = dir.join("b.pcap");
    let dump = Guard(
        n.exec(
            &n.b,
            &[
                "tcpdump",
                "-Z",
                "root",
                "-i",
                &n.veth_b,
                "-U",
                "-s",
                "0",
                "-w",
                pcap.to_str().unwrap(),
                "tcp port 8080",
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tcpdump"),
    );
    let (nv_b, out_b) = start_netvigil(&n, &n.b, 4.0, &[]);
    let (nv_a, out_a) = start_netvigil(&n, &n.a, 4.0, &[]);
    sleep(Duration::from_millis(700));
    let curl = n
        .exec(&n.b, &["curl", "-s", "-o", "/dev/null", &url])
        .spawn()
        .expect("curl");
    let curl_pid = curl.id();
    let out = curl.wait_with_output().unwrap();
    assert!(out.status.success());
    let text_b = out_b.join().unwrap();
    let text_a = out_a.join().unwrap();
    drop(nv_a);
    drop(nv_b);
    sleep(Duration::from_millis(300));
    drop(dump);
    drop(server);

    // Client side: an outbound connection owned by curl.
    let conns = records(&text_b, "connection");
    let out_conn = conns
        .iter()
        .find(|l| {
            l.contains("\"event\":\"opened\"")
                && l.contains("\"direction\":\"outbound\"")
                && l.contains(":8080}")
                && l.contains("\"port\":8080")
        })
        .unwrap_or_else(|| panic!("no outbound connection to :8080 in\n{text_b}"));
    let _ = out_conn;
    // The flow record carries curl as its process (looked up when the SYN was seen).
    let flows: Vec<String> = records(&text_b, "flow")
        .into_iter()
        .filter(|l| l.contains("\"port\":8080}") && l.contains("\"l4\":\"tcp\""))
        .collect();
    assert_eq!(flows.len(), 1, "one TCP flow to :8080 in\n{text_b}");
    let flow = &flows[0];
    assert!(
        flow.contains(&format!("\"process\":{{\"pid\":{curl_pid},")),
        "flow not owned by curl (pid {curl_pid}): {flow}"
    );
    assert_eq!(json_str(flow, "name"), Some("curl"), "{flow}");
    assert!(flow.contains("\"app_proto\":\"http\""), "{flow}");
    // Its bytes equal what tcpdump captured for it.
    let (mut pk, mut by) = (0u64, 0u64);
    os::read_capture(
        &pcap,
        |p| {
            pk += 1;
            by += u64::from(p.orig_len);
        },
        |_, _| {},
    )
    .expect("tcpdump's capture");
    let got_pk = json_u64(flow.split("\"to_server\":").nth(1).unwrap(), "packets").unwrap()
        + json_u64(flow.split("\"to_client\":").nth(1).unwrap(), "packets").unwrap();
    let got_by = json_u64(flow.split("\"to_server\":").nth(1).unwrap(), "bytes").unwrap()
        + json_u64(flow.split("\"to_client\":").nth(1).unwrap(), "bytes").unwrap();
    assert_eq!(
        (got_pk, got_by),
        (pk, by),
        "netvigil vs tcpdump packets/bytes for the flow: {flow}"
    );

    // Server side: an inbound connection owned by the python web server.
    let inbound = records(&text_a, "connection")
        .into_iter()
        .find(|l| l.contains("\"event\":\"opened\"") && l.contains("\"direction\":\"inbound\""))
        .unwrap_or_else(|| panic!("no inbound connection in\n{text_a}"));
    assert!(
        json_str(&inbound, "name").is_some_and(|n| n.starts_with("python")),
        "{inbound}"
    );
}
