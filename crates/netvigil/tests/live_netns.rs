//! `netvigil run` in network namespaces that this test creates: a web server in one, `curl`
//! in the other, netvigil watching each side. Traffic stays between the two namespaces.
//!
//! Needs root (namespaces, capture). Without root: a note, or a failure when CI=true.

mod common;

use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::netns::*;
use common::*;

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
                python(),
                "-c",
                SLOW_HTTP,
                &n.addr_a,
                "8080",
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
    let data_b = temp_dir("curl-history");
    let (nv_b, out_b) = start_netvigil(&n, &n.b, 4.0, &["--data-dir", data_b.to_str().unwrap()]);
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

    // The history database has the same flow with its owner, and curl's first-time alerts.
    let bin = env!("CARGO_BIN_EXE_netvigil");
    let hist = std::process::Command::new(bin)
        .args([
            "history",
            "--json",
            "--data-dir",
            data_b.to_str().unwrap(),
            "--app",
            "curl",
        ])
        .output()
        .expect("netvigil history");
    let hist = String::from_utf8_lossy(&hist.stdout);
    assert!(
        hist.lines()
            .any(|l| l.contains("\"port\":8080}") && l.contains(&format!("\"pid\":{curl_pid},"))),
        "history has curl's flow:\n{hist}"
    );
    let alerts = std::process::Command::new(bin)
        .args(["alerts", "--json", "--data-dir", data_b.to_str().unwrap()])
        .output()
        .expect("netvigil alerts");
    let alerts = String::from_utf8_lossy(&alerts.stdout);
    assert!(
        alerts
            .lines()
            .any(|l| l.contains("\"rule\":\"new_app\"") && l.contains("\"app\":\"curl\"")),
        "a new_app alert for curl is stored:\n{alerts}"
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

// ---- More live scenarios: UDP, IPv6, a short-lived process, socket-table mode, loopback. ----

/// UDP echo server: `-c SCRIPT HOST PORT`; prints "ready" once bound; exits after 15 s idle.
const UDP_ECHO: &str = r#"
import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
s.settimeout(15)
print("ready", flush=True)
try:
    while True:
        d, a = s.recvfrom(4096)
        s.sendto(d, a)
except socket.timeout:
    pass
"#;

/// Connected UDP client: `-c SCRIPT HOST PORT N`: N datagrams, each answered, then 0.2 s.
const UDP_CLIENT: &str = r#"
import socket, sys, time
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.settimeout(2)
s.connect((sys.argv[1], int(sys.argv[2])))
for i in range(int(sys.argv[3])):
    s.send(b"ping %d" % i)
    s.recv(4096)
time.sleep(0.2)
"#;

/// TCP server: `-c SCRIPT HOST PORT`; each connection: one read; if it brought data, a short
/// HTTP answer; then close. Prints "ready" once listening; exits after 15 s without a client.
const TCP_ANSWER: &str = r#"
import socket, sys, threading, time
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(16)
s.settimeout(15)
print("ready", flush=True)
delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
def serve(c):
    c.settimeout(5)
    try:
        if c.recv(4096):
            time.sleep(delay)
            c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    except OSError:
        pass
    c.close()
try:
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
except socket.timeout:
    pass
"#;

/// A web server that answers each GET after 300 ms (`-c SCRIPT HOST PORT DIR`), so that its
/// connections live long enough for every owner lookup to be a certainty: the race of
/// connections that close within a millisecond has its own tests.
const SLOW_HTTP: &str = r#"
import http.server, socket, sys, time, os
class H(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        time.sleep(0.3)
        super().do_GET()
    def log_message(self, *a):
        pass
os.chdir(sys.argv[3])
class S(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
srv = S((sys.argv[1], int(sys.argv[2])), H)
print("Serving HTTP", flush=True)
srv.serve_forever()
"#;

/// TCP client: `-c SCRIPT HOST PORT SECS`: connects, holds the connection SECS, closes, exits.
const TCP_HOLD: &str = r#"
import socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
time.sleep(float(sys.argv[3]))
c.close()
time.sleep(0.2)
"#;

#[test]
fn udp_connected_client_owned_by_its_pid_with_exact_packet_counts() {
    if !need_root() {
        return;
    }
    let n = Netns::new("u");
    let port = "9951";
    let _server = spawn_until(
        n.exec(&n.a, &[python(), "-c", UDP_ECHO, &n.addr_a, port]),
        false,
        "ready",
    );
    let (nv, out) = start_netvigil(&n, &n.b, 3.0, &[]);
    sleep(Duration::from_millis(500));
    let client = n
        .exec(&n.b, &[python(), "-c", UDP_CLIENT, &n.addr_a, port, "5"])
        .spawn()
        .expect("udp client");
    let pid = client.id();
    let st = client.wait_with_output().unwrap().status;
    assert!(st.success(), "udp client: {st}");
    let text = out.join().unwrap();
    drop(nv);

    let flows = to_server(&text, "flow", "udp", &n.addr_a, 9951);
    assert_eq!(flows.len(), 1, "one UDP flow to :{port} in\n{text}");
    let flow = &flows[0];
    let (opid, name) = owner(flow).unwrap_or_else(|| panic!("flow without a process: {flow}"));
    assert_eq!(opid, pid, "flow owner pid: {flow}");
    assert!(name.starts_with("python"), "{flow}");
    assert_eq!(dir_counts(flow, "to_server").0, 5, "{flow}");
    assert_eq!(dir_counts(flow, "to_client").0, 5, "{flow}");
    // The connection record (from the first datagram) has the same owner.
    let conn = to_server(&text, "connection", "udp", &n.addr_a, 9951)
        .into_iter()
        .find(|l| l.contains("\"event\":\"opened\"") && l.contains("\"direction\":\"outbound\""))
        .unwrap_or_else(|| panic!("no outbound UDP connection in\n{text}"));
    assert_eq!(owner(&conn).map(|o| o.0), Some(pid), "{conn}");
}

#[test]
fn curl_over_ipv6_outbound_owned_by_curl_with_tcpdump_bytes() {
    if !need_root() {
        return;
    }
    let n = Netns::new("v6");
    let (ip_a, dev_b) = ("fd00:231::1", n.veth_b.clone());
    let dir = temp_dir("netns-http6");
    std::fs::write(dir.join("index.html"), "y".repeat(30_000)).unwrap();
    let server = spawn_until(
        n.exec(
            &n.a,
            &[python(), "-c", SLOW_HTTP, ip_a, "8080", dir.to_str().unwrap()],
        ),
        false,
        "Serving HTTP",
    );
    let url = format!("http://[{ip_a}]:8080/index.html");
    // The first request also settles neighbour discovery (bounded).
    let t0 = Instant::now();
    while !n
        .exec(
            &n.b,
            &["curl", "-g", "-s", "-o", "/dev/null", "--max-time", "2", &url],
        )
        .status()
        .unwrap()
        .success()
    {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the web server did not answer"
        );
        sleep(Duration::from_millis(100));
    }
    let pcap = dir.join("b6.pcap");
    let dump = start_tcpdump(&n, &n.b, &dev_b, &pcap, "tcp port 8080");
    let (nv, out) = start_netvigil(&n, &n.b, 3.0, &[]);
    sleep(Duration::from_millis(500));
    let curl = n
        .exec(&n.b, &["curl", "-g", "-s", "-o", "/dev/null", &url])
        .spawn()
        .expect("curl");
    let pid = curl.id();
    assert!(curl.wait_with_output().unwrap().status.success());
    let text = out.join().unwrap();
    drop(nv);
    sleep(Duration::from_millis(300));
    drop(dump);
    drop(server);

    let conn = to_server(&text, "connection", "tcp", ip_a, 8080)
        .into_iter()
        .find(|l| l.contains("\"event\":\"opened\"") && l.contains("\"direction\":\"outbound\""))
        .unwrap_or_else(|| panic!("no outbound connection to [{ip_a}]:8080 in\n{text}"));
    assert_eq!(owner(&conn), Some((pid, "curl")), "{conn}");
    let flows = to_server(&text, "flow", "tcp", ip_a, 8080);
    assert_eq!(flows.len(), 1, "one TCP flow to [{ip_a}]:8080 in\n{text}");
    let flow = &flows[0];
    assert_eq!(owner(flow), Some((pid, "curl")), "{flow}");
    assert!(flow.contains("\"app_proto\":\"http\""), "{flow}");
    // Judged: plain HTTP is flagged, and the sentence names the program.
    assert!(flow.contains("\"kind\":\"plaintext_http\""), "{flow}");
    assert!(flow.contains("\"explanation\":\"curl "), "{flow}");
    let (s, c) = (dir_counts(flow, "to_server"), dir_counts(flow, "to_client"));
    assert_eq!(
        (s.0 + c.0, s.1 + c.1),
        pcap_totals(&pcap),
        "netvigil vs tcpdump packets/bytes: {flow}"
    );
}

#[test]
// A curl that lives well under 50 ms: the SYN watcher names it while it lives; a socket-table
// snapshot that lists the socket first holds its owner-less "opened" back one poll so that the
// SYN watcher's answer wins (ConnTracker::update / observe_opened). The server answers after
// 15 ms, so the connection outlives the lookup (~1 ms) while the process still lives only
// ~25 ms; connections that close within a millisecond are the next test's subject.
fn a_process_that_lives_milliseconds_is_still_the_owner() {
    if !need_root() {
        return;
    }
    let n = Netns::new("s");
    let port = "8082";
    let _server = spawn_until(
        n.exec(&n.a, &[python(), "-c", TCP_ANSWER, &n.addr_a, port, "0.015"]),
        false,
        "ready",
    );
    let url = format!("http://{}:{port}/", n.addr_a);
    // Warm up (ARP, page cache for curl); bounded.
    for _ in 0..3 {
        let _ = n
            .exec(&n.b, &["curl", "-s", "-o", "/dev/null", "--max-time", "1", &url])
            .status();
    }
    let (nv, out) = start_netvigil(&n, &n.b, 4.0, &[]);
    sleep(Duration::from_millis(500));
    // nsenter (rather than `ip netns exec`, which also sets up a mount namespace) so the
    // measured lifetime is mostly curl's; it execs, so the pid is curl's. A loaded machine can
    // stretch one run past the point: up to five runs, 200 ms apart, each checked by its pid.
    let netns = format!("--net=/run/netns/{}", n.b);
    let mut runs: Vec<(u32, Duration)> = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let curl = Command::new("nsenter")
            .args([
                netns.as_str(),
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "--max-time",
                "1",
                &url,
            ])
            .spawn()
            .expect("curl");
        let pid = curl.id();
        let st = curl.wait_with_output().unwrap().status;
        let lived = t.elapsed();
        assert!(st.success(), "curl: {st}");
        runs.push((pid, lived));
        if lived < Duration::from_millis(50) {
            break;
        }
        sleep(Duration::from_millis(200));
    }
    eprintln!("short-lived curl runs (pid, lifetime): {runs:?}");
    let text = out.join().unwrap();
    drop(nv);
    let lived = runs.iter().map(|r| r.1).min().unwrap();
    if lived >= Duration::from_millis(50) {
        eprintln!(
            "note: this machine is loaded: the shortest curl lived {lived:?}, not under 50 ms; \
             the owners are still checked"
        );
    }

    let conns = to_server(&text, "connection", "tcp", &n.addr_a, 8082);
    let flows = to_server(&text, "flow", "tcp", &n.addr_a, 8082);
    assert_eq!(
        flows.len(),
        runs.len(),
        "one flow per curl run to :{port} in\n{text}"
    );
    for &(pid, _) in &runs {
        let conn = conns
            .iter()
            .find(|l| {
                l.contains("\"event\":\"opened\"")
                    && l.contains("\"direction\":\"outbound\"")
                    && owner(l).is_some_and(|o| o.0 == pid)
            })
            .unwrap_or_else(|| panic!("no outbound connection to :{port} owned by curl {pid} in\n{text}"));
        assert_eq!(owner(conn), Some((pid, "curl")), "{conn}\nin\n{text}");
        assert_eq!(
            flows.iter().filter(|f| owner(f) == Some((pid, "curl"))).count(),
            1,
            "one flow owned by curl {pid} in\n{text}"
        );
    }
}

#[test]
fn socket_table_mode_sees_a_held_connection_open_and_close() {
    if !need_root() {
        return;
    }
    let n = Netns::new("t");
    let port = "8083";
    let _server = spawn_until(
        n.exec(&n.a, &[python(), "-c", TCP_ANSWER, &n.addr_a, port]),
        false,
        "ready",
    );
    let (nv, out, mode) = start_netvigil_mode(&n, &n.b, 3.5, &["--no-capture"]);
    assert!(mode.contains("socket-table mode"), "first stderr line: {mode}");
    sleep(Duration::from_millis(400));
    let client = n
        .exec(&n.b, &[python(), "-c", TCP_HOLD, &n.addr_a, port, "1.5"])
        .spawn()
        .expect("tcp client");
    let pid = client.id();
    let st = client.wait_with_output().unwrap().status;
    assert!(st.success(), "tcp client: {st}");
    let text = out.join().unwrap();
    drop(nv);

    let conns = to_server(&text, "connection", "tcp", &n.addr_a, 8083);
    let opened = conns
        .iter()
        .find(|l| l.contains("\"event\":\"opened\"") && l.contains("\"direction\":\"outbound\""))
        .unwrap_or_else(|| panic!("no outbound connection to :{port} in\n{text}"));
    let (opid, name) = owner(opened).unwrap_or_else(|| panic!("no owner: {opened}"));
    assert_eq!(opid, pid, "{opened}");
    assert!(name.starts_with("python"), "{opened}");
    let at = text.find(opened.as_str()).unwrap();
    let closed = conns
        .iter()
        .find(|l| l.contains("\"event\":\"closed\"") && l.contains("\"direction\":\"outbound\""))
        .unwrap_or_else(|| panic!("no closed record for the connection in\n{text}"));
    assert!(
        text.find(closed.as_str()).unwrap() > at,
        "closed before opened:\n{text}"
    );
    assert_eq!(owner(closed).map(|o| o.0), Some(pid), "{closed}");
    assert!(
        records(&text, "flow").is_empty(),
        "socket-table mode captured flows:\n{text}"
    );
}

#[test]
fn loopback_packets_are_counted_once() {
    if !need_root() {
        return;
    }
    let n = Netns::new("l");
    let (lo, port, sent) = ("127.0.0.1", "9953", 7u64);
    let dir = temp_dir("netns-lo");
    let _server = spawn_until(
        n.exec(&n.a, &[python(), "-c", UDP_ECHO, lo, port]),
        false,
        "ready",
    );
    let pcap = dir.join("lo.pcap");
    let dump = start_tcpdump(&n, &n.a, "lo", &pcap, "udp port 9953");
    let (nv, out) = start_netvigil(&n, &n.a, 3.0, &[]);
    sleep(Duration::from_millis(500));
    let client = n
        .exec(&n.a, &[python(), "-c", UDP_CLIENT, lo, port, &sent.to_string()])
        .spawn()
        .expect("udp client");
    let pid = client.id();
    assert!(client.wait_with_output().unwrap().status.success());
    let text = out.join().unwrap();
    drop(nv);
    sleep(Duration::from_millis(300));
    drop(dump);

    let flows = to_server(&text, "flow", "udp", lo, 9953);
    assert_eq!(flows.len(), 1, "one UDP flow on lo in\n{text}");
    let flow = &flows[0];
    let (s, c) = (dir_counts(flow, "to_server"), dir_counts(flow, "to_client"));
    assert_eq!((s.0, c.0), (sent, sent), "each datagram once: {flow}");
    assert_eq!(
        (s.0 + c.0, s.1 + c.1),
        pcap_totals(&pcap),
        "netvigil vs tcpdump -i lo: {flow}"
    );
    assert_eq!(owner(flow).map(|o| o.0), Some(pid), "{flow}");
}

/// TCP client: `-c SCRIPT HOST PORT N`: N short connections one after another (request,
/// answer, close), as fast as they go, then exits.
const TCP_MANY: &str = r#"
import socket, sys, time
for i in range(int(sys.argv[3])):
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
    if i == 0:
        time.sleep(0.1)  # the first one lives long enough to be read from its socket
    c.sendall(b"GET / HTTP/1.0\r\n\r\n")
    while c.recv(4096):
        pass
    c.close()
"#;

#[test]
fn hundreds_of_short_connections_a_second_all_owned() {
    if !need_root() {
        return;
    }
    const N: usize = 300;
    let n = Netns::new("m");
    let port = "9961";
    let _server = spawn_until(
        n.exec(&n.a, &[python(), "-c", TCP_ANSWER, &n.addr_a, port]),
        false,
        "ready",
    );
    let (nv, out) = start_netvigil(&n, &n.b, 5.0, &[]);
    sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    let client = n
        .exec(&n.b, &[python(), "-c", TCP_MANY, &n.addr_a, port, &N.to_string()])
        .spawn()
        .expect("tcp client");
    let pid = client.id();
    let st = client.wait_with_output().unwrap().status;
    let took = t0.elapsed();
    assert!(st.success());
    let text = out.join().unwrap();
    drop(nv);
    let rate = N as f64 / took.as_secs_f64();
    eprintln!("{N} connections in {took:?} ({rate:.0}/s)");
    assert!(
        rate >= 100.0,
        "the client made only {rate:.0} connections a second"
    );
    let flows = to_server(&text, "flow", "tcp", &n.addr_a, 9961);
    assert_eq!(flows.len(), N, "one flow per connection");
    let owned = flows
        .iter()
        .filter(|f| owner(f).is_some_and(|(p, _)| p == pid))
        .count();
    let opened = to_server(&text, "connection", "tcp", &n.addr_a, 9961)
        .into_iter()
        .filter(|l| l.contains("\"event\":\"opened\"") && owner(l).is_some_and(|(p, _)| p == pid))
        .count();
    assert_eq!(
        (owned, opened),
        (N, N),
        "every flow and every opened connection names the client"
    );
    // Most are read from their own socket; the rest (closed within a fraction of a millisecond)
    // are inferred from the client's previous connection to the same server, and say so.
    let inferred = flows.iter().filter(|f| f.contains("\"inferred\":true")).count();
    eprintln!("{inferred} of {N} owners inferred");
    assert!(inferred < N, "at least the first owner is read from its socket");
}

/// Ping client over an ICMP datagram ("ping") socket: `-c SCRIPT HOST N`.
const PING: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
s.settimeout(2)
for i in range(int(sys.argv[2])):
    s.sendto(b"\x08\x00\x00\x00\x00\x00\x00" + bytes([i]) + b"netvigil", (sys.argv[1], 0))
    s.recv(1024)
    time.sleep(0.2)
"#;

#[test]
fn ping_socket_owner_and_echo_counts() {
    if !need_root() {
        return;
    }
    let n = Netns::new("p");
    sh(&[
        "ip",
        "netns",
        "exec",
        &n.b,
        "sysctl",
        "-q",
        "-w",
        "net.ipv4.ping_group_range=0 2147483647",
    ]);
    let (nv, out) = start_netvigil(&n, &n.b, 3.0, &[]);
    sleep(Duration::from_millis(500));
    let client = n
        .exec(&n.b, &[python(), "-c", PING, &n.addr_a, "3"])
        .spawn()
        .expect("ping client");
    let pid = client.id();
    assert!(
        client.wait_with_output().unwrap().status.success(),
        "the pings were answered"
    );
    let text = out.join().unwrap();
    drop(nv);
    let flow = records(&text, "flow")
        .into_iter()
        .find(|l| l.contains("\"l4\":\"icmp\"") && l.contains(&format!("\"ip\":\"{}\"", n.addr_a)))
        .unwrap_or_else(|| panic!("no ICMP flow to {} in\n{text}", n.addr_a));
    assert_eq!(owner(&flow).map(|(p, _)| p), Some(pid), "{flow}");
    assert_eq!(
        (dir_counts(&flow, "to_server").0, dir_counts(&flow, "to_client").0),
        (3, 3),
        "{flow}"
    );
    let conn = records(&text, "connection")
        .into_iter()
        .find(|l| l.contains("\"l4\":\"icmp\"") && l.contains("\"event\":\"opened\""))
        .unwrap_or_else(|| panic!("no ICMP connection record in\n{text}"));
    assert_eq!(owner(&conn).map(|(p, _)| p), Some(pid), "{conn}");
}
