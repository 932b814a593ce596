//! Network-namespace scaffolding for the live tests: two namespaces joined by a veth pair,
//! netvigil and helper processes started inside them, and readers of its JSON lines.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

pub fn need_root() -> bool {
    if is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("the live network-namespace tests need root (CI runs them as root)");
    }
    eprintln!("note: not root; skipping the network-namespace test");
    false
}

pub fn sh(args: &[&str]) {
    let st = Command::new(args[0])
        .args(&args[1..])
        .status()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(st.success(), "{args:?} failed: {st}");
}

/// Two namespaces joined by a veth pair; removed on drop.
pub struct Netns {
    pub a: String,
    pub b: String,
    pub veth_a: String,
    pub veth_b: String,
    pub addr_a: String,
    pub addr_b: String,
    /// One namespace test at a time: timing (a 10 ms process, 3,000 connections a second) is
    /// what several of them measure, and parallel tests would only add noise.
    _serial: std::fs::File,
}

impl Netns {
    pub fn new(tag: &str) -> Self {
        let id = std::process::id() % 200 + 20;
        let n = Netns {
            a: format!("nv{tag}a{id}"),
            b: format!("nv{tag}b{id}"),
            veth_a: format!("nv{tag}{id}a"),
            veth_b: format!("nv{tag}{id}b"),
            addr_a: format!("10.231.{id}.1"),
            addr_b: format!("10.231.{id}.2"),
            _serial: serial_lock(),
        };
        let _ = Command::new("ip")
            .args(["netns", "del", &n.a])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &n.b])
            .stderr(Stdio::null())
            .status();
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

    pub fn exec(&self, ns: &str, args: &[&str]) -> Command {
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
pub struct Guard(pub Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `netvigil run --events -` in `ns` and waits until it says it is watching.
pub fn start_netvigil(
    n: &Netns,
    ns: &str,
    seconds: f64,
    extra: &[&str],
) -> (Guard, std::thread::JoinHandle<String>) {
    let (guard, reader, first) = start_netvigil_mode(n, ns, seconds, extra);
    assert!(
        first.contains("capturing") || first.contains("socket-table"),
        "unexpected first line: {first}"
    );
    (guard, reader)
}

pub fn records(text: &str, typ: &str) -> Vec<String> {
    let prefix = format!("{{\"type\":\"{typ}\"");
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

pub fn json_str<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\":\"");
    let at = line.find(&pat)? + pat.len();
    line[at..].split('"').next()
}

/// The interpreter for the helper scripts: the system one if present (a pyenv shim adds a
/// shell and ~100 ms before python starts, but `exec`s, so the pid is python's either way).
pub fn python() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// Spawns `cmd` and waits (at most 10 s) until a line containing `want` appears on its stdout
/// (or its stderr with `on_stderr`); the other stream is discarded.
pub fn spawn_until(mut cmd: Command, on_stderr: bool, want: &str) -> Guard {
    if on_stderr {
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    } else {
        cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let stream: Box<dyn Read + Send> = if on_stderr {
        Box::new(child.stderr.take().unwrap())
    } else {
        Box::new(child.stdout.take().unwrap())
    };
    let guard = Guard(child);
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for l in BufReader::new(stream).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.contains(want) => return guard,
            Ok(_) => {}
            Err(e) => panic!("{cmd:?} never said {want:?} ({e})"),
        }
    }
}

/// tcpdump in `ns` on `dev` into `pcap`, started only once it says it is listening.
pub fn start_tcpdump(n: &Netns, ns: &str, dev: &str, pcap: &std::path::Path, filter: &str) -> Guard {
    let cmd = n.exec(
        ns,
        &[
            "tcpdump",
            "-Z",
            "root",
            // 32 MiB of kernel buffer: a transfer of megabytes over veth arrives in a few ms.
            "-B",
            "32768",
            "-i",
            dev,
            "-U",
            "-s",
            "0",
            "-w",
            pcap.to_str().unwrap(),
            filter,
        ],
    );
    spawn_until(cmd, true, "listening on")
}

/// Packets and bytes (on the wire) in a capture file.
pub fn pcap_totals(pcap: &std::path::Path) -> (u64, u64) {
    let (mut pk, mut by) = (0u64, 0u64);
    os::read_capture(
        pcap,
        |p| {
            pk += 1;
            by += u64::from(p.orig_len);
        },
        |_, _| {},
    )
    .expect("tcpdump's capture");
    (pk, by)
}

/// (packets, bytes) of one direction ("to_server" or "to_client") of a flow record.
pub fn dir_counts(flow: &str, dir: &str) -> (u64, u64) {
    let rest = flow
        .split(&format!("\"{dir}\":"))
        .nth(1)
        .unwrap_or_else(|| panic!("no {dir} in {flow}"));
    (
        json_u64(rest, "packets").unwrap(),
        json_u64(rest, "bytes").unwrap(),
    )
}

/// The pid and name of a record's `process` object.
pub fn owner(line: &str) -> Option<(u32, &str)> {
    let at = line.find("\"process\":{")?;
    let p = &line[at..];
    let pid = json_u64(p, "pid")? as u32;
    Some((pid, json_str(p, "name")?))
}

/// The records of `typ` whose server (flows) or remote (connections) is `ip`:`port`.
pub fn to_server(text: &str, typ: &str, l4: &str, ip: &str, port: u16) -> Vec<String> {
    let key = if typ == "flow" { "server" } else { "remote" };
    let end = format!("\"{key}\":{{\"ip\":\"{ip}\",\"port\":{port}}}");
    records(text, typ)
        .into_iter()
        .filter(|l| l.contains(&format!("\"l4\":\"{l4}\"")) && l.contains(&end))
        .collect()
}

/// Like `start_netvigil`, also returning the first line of its stderr (its mode).
pub fn start_netvigil_mode(
    n: &Netns,
    ns: &str,
    seconds: f64,
    extra: &[&str],
) -> (Guard, std::thread::JoinHandle<String>, String) {
    let bin = env!("CARGO_BIN_EXE_netvigil");
    let secs = seconds.to_string();
    // History goes to a folder of this test (never the user's data directory).
    let data = temp_dir(&format!("data-{ns}"));
    let data = data.to_str().expect("utf-8 temp path").to_string();
    let mut args = vec![
        bin,
        "run",
        "--events",
        "-",
        "--no-web",
        // No PTR queries: nothing may leave the test's namespaces.
        "--no-rdns",
        "--poll-ms",
        "100",
        "--duration",
        &secs,
    ];
    if !extra.contains(&"--data-dir") {
        args.extend_from_slice(&["--data-dir", &data]);
    }
    args.extend_from_slice(extra);
    let mut child = n
        .exec(ns, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn netvigil");
    let mut stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let guard = Guard(child);
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("netvigil did not start");
    (guard, reader, first)
}

/// One namespace test at a time, across test binaries too (nextest runs binaries in parallel):
/// an exclusive lock on a file, released when the `Netns` is dropped.
fn serial_lock() -> std::fs::File {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::env::temp_dir().join("netvigil-netns-tests.lock"))
        .expect("open the namespace-test lock file");
    f.lock().expect("lock the namespace-test lock file");
    f
}
