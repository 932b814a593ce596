//! The cases users hit and most monitors miss, each in network namespaces this test creates:
//! ping over a raw socket, a raw socket with an unusual protocol, frames built by an AF_PACKET
//! socket, data sent with sendfile, splice, io_uring and sendmmsg/recvmmsg, and netvigil run with
//! every capability dropped. Traffic stays between the two namespaces.
//!
//! Needs root (namespaces, capture). Without root: a note, or a failure when CI=true.

mod common;

use std::process::Stdio;
use std::thread::sleep;
use std::time::Duration;

use common::netns::*;
use common::*;

/// `-c SCRIPT HOST PROTO N`: N datagrams of IP protocol PROTO from a raw socket.
const RAW_SEND: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, int(sys.argv[2]))
for i in range(int(sys.argv[3])):
    s.sendto(b"netvigil raw %d " % i + b"x" * 64, (sys.argv[1], 0))
    time.sleep(0.05)
time.sleep(0.3)
"#;

/// `-c SCRIPT IFACE SRC_MAC DST_MAC SRC_IP DST_IP DPORT N`: N Ethernet frames carrying IPv4/UDP
/// (source port 40000), built by hand and sent from an AF_PACKET socket: no UDP socket exists.
const PACKET_SEND: &str = r#"
import socket, struct, sys, time
iface, smac, dmac, sip, dip, dport, n = sys.argv[1:8]
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff)
    s += s >> 16
    return ~s & 0xffff
payload = b"frame from a packet socket"
udp = struct.pack("!HHHH", 40000, int(dport), 8 + len(payload), 0) + payload
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                 socket.inet_aton(sip), socket.inet_aton(dip))
ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
frame = bytes.fromhex(dmac.replace(":", "")) + bytes.fromhex(smac.replace(":", "")) + b"\x08\x00" + ip + udp
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
for i in range(int(n)):
    s.send(frame)
    time.sleep(0.05)
time.sleep(0.3)
"#;

/// TCP sink: `-c SCRIPT HOST PORT`: each connection is read to its end, then answered with the
/// number of bytes received. Prints "ready"; exits after 15 s without a client.
const TCP_SINK: &str = r#"
import socket, sys, threading
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(16)
s.settimeout(15)
print("ready", flush=True)
def serve(c):
    c.settimeout(5)
    n = 0
    try:
        while True:
            d = c.recv(65536)
            if not d:
                break
            n += len(d)
        c.sendall(str(n).encode())
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

/// `-c SCRIPT HOST PORT METHOD SIZE`: sends SIZE bytes of a file with os.sendfile or through a
/// pipe with os.splice, half-closes, prints the server's count.
const FILE_SEND: &str = r#"
import os, socket, sys, tempfile, time
host, port, method, size = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
f = tempfile.TemporaryFile()
f.write(os.urandom(size))
f.flush()
c = socket.create_connection((host, port), timeout=5)
c.settimeout(None)  # sendfile and splice need a blocking socket
# The connection stays open 300 ms before the data: this test is about the data path, not the
# race of sub-millisecond connections (their owners are inferred; other tests cover them).
time.sleep(0.3)
sent = 0
if method == "sendfile":
    while sent < size:
        sent += os.sendfile(c.fileno(), f.fileno(), sent, size - sent)
else:
    r, w = os.pipe()
    while sent < size:
        k = os.splice(f.fileno(), w, min(size - sent, 65536), offset_src=sent)
        m = 0
        while m < k:
            m += os.splice(r, c.fileno(), k - m)
        sent += k
c.shutdown(socket.SHUT_WR)
print(c.recv(64).decode(), flush=True)
c.close()
time.sleep(0.3)
"#;

/// ctypes declarations of struct mmsghdr, shared by the two sendmmsg/recvmmsg scripts.
const MMSG_DECL: &str = r#"
import ctypes, socket, sys, time
libc = ctypes.CDLL(None, use_errno=True)
class iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
class msghdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32),
                ("iov", ctypes.POINTER(iovec)), ("iovlen", ctypes.c_size_t),
                ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t), ("flags", ctypes.c_int)]
class mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", msghdr), ("len", ctypes.c_uint)]
def vec(bufs):
    iovs = (iovec * len(bufs))()
    msgs = (mmsghdr * len(bufs))()
    for i, b in enumerate(bufs):
        iovs[i].base = ctypes.cast(b, ctypes.c_void_p)
        iovs[i].len = len(b)
        msgs[i].hdr.iov = ctypes.pointer(iovs[i])
        msgs[i].hdr.iovlen = 1
    return iovs, msgs
"#;

/// `-c SCRIPT HOST PORT N`: receives N datagrams with recvmmsg (16 at a time) and prints how
/// many arrived. Prints "ready" first; gives up after 10 s.
const MMSG_SERVER: &str = r#"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
want = int(sys.argv[3])
print("ready", flush=True)
got = 0
deadline = time.time() + 10
bufs = [ctypes.create_string_buffer(2048) for _ in range(16)]
iovs, msgs = vec(bufs)
while got < want and time.time() < deadline:
    n = libc.recvmmsg(s.fileno(), msgs, 16, 0, None)
    if n < 0:
        break
    got += n
print("got", got, flush=True)
"#;

/// `-c SCRIPT HOST PORT N`: a connected UDP socket sends N datagrams with sendmmsg, 16 per call.
const MMSG_CLIENT: &str = r#"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((sys.argv[1], int(sys.argv[2])))
n = int(sys.argv[3])
sent = 0
while sent < n:
    k = min(16, n - sent)
    bufs = [ctypes.create_string_buffer(b"datagram %05d " % (sent + i) + b"y" * 80, 100) for i in range(k)]
    iovs, msgs = vec(bufs)
    r = libc.sendmmsg(s.fileno(), msgs, k, 0)
    if r <= 0:
        sys.exit("sendmmsg failed: errno %d" % ctypes.get_errno())
    sent += r
    time.sleep(0.01)
time.sleep(0.3)
"#;

fn mac_of(n: &Netns, ns: &str, dev: &str) -> String {
    let out = n
        .exec(ns, &["cat", &format!("/sys/class/net/{dev}/address")])
        .output()
        .expect("read a MAC address");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The flow records of IP protocol `l4` between this side and `ip`.
fn flows_to(text: &str, l4: &str, ip: &str) -> Vec<String> {
    records(text, "flow")
        .into_iter()
        .filter(|l| l.contains(&format!("\"l4\":\"{l4}\"")) && l.contains(&format!("\"ip\":\"{ip}\"")))
        .collect()
}

fn inferred(line: &str) -> bool {
    line.find("\"process\":{")
        .is_some_and(|at| line[at..].contains("\"inferred\":true"))
}

#[test]
fn ping_over_a_raw_socket_is_owned_by_ping() {
    if !need_root() {
        return;
    }
    let n = Netns::new("r");
    // Ping sockets off: ping (iputils) falls back to a raw ICMP socket, as it does for root
    // on systems that do not enable ping sockets.
    sh(&[
        "ip",
        "netns",
        "exec",
        &n.b,
        "sysctl",
        "-q",
        "-w",
        "net.ipv4.ping_group_range=1 0",
    ]);
    let (nv, out) = start_netvigil(&n, &n.b, 3.0, &[]);
    sleep(Duration::from_millis(500));
    let ping = n
        .exec(
            &n.b,
            &["ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", &n.addr_a],
        )
        .stdout(Stdio::null())
        .spawn()
        .expect("ping (Debian package iputils-ping)");
    let pid = ping.id();
    assert!(
        ping.wait_with_output().unwrap().status.success(),
        "ping was answered"
    );
    let text = out.join().unwrap();
    drop(nv);
    let flows = flows_to(&text, "icmp", &n.addr_a);
    assert_eq!(flows.len(), 1, "one ICMP flow to {} in\n{text}", n.addr_a);
    let flow = &flows[0];
    assert_eq!(owner(flow), Some((pid, "ping")), "{flow}");
    assert_eq!(
        (dir_counts(flow, "to_server").0, dir_counts(flow, "to_client").0),
        (3, 3),
        "{flow}"
    );
    let conn = records(&text, "connection")
        .into_iter()
        .find(|l| l.contains("\"l4\":\"raw/1\"") && l.contains("\"event\":\"opened\""))
        .unwrap_or_else(|| panic!("no connection record from the raw ICMP socket in\n{text}"));
    assert_eq!(owner(&conn).map(|o| o.0), Some(pid), "{conn}");
}

#[test]
fn a_raw_socket_with_an_unusual_protocol_is_owned_by_its_process() {
    if !need_root() {
        return;
    }
    let n = Netns::new("x");
    let (nv, out) = start_netvigil(&n, &n.b, 3.0, &[]);
    sleep(Duration::from_millis(500));
    // 253: "use for experimentation and testing" (RFC 3692).
    let client = n
        .exec(&n.b, &[python(), "-c", RAW_SEND, &n.addr_a, "253", "4"])
        .spawn()
        .expect("raw sender");
    let pid = client.id();
    assert!(client.wait_with_output().unwrap().status.success());
    let text = out.join().unwrap();
    drop(nv);
    let flows = flows_to(&text, "253", &n.addr_a);
    assert_eq!(flows.len(), 1, "one protocol-253 flow in\n{text}");
    let flow = &flows[0];
    assert_eq!(owner(flow).map(|o| o.0), Some(pid), "{flow}");
    assert!(
        !inferred(flow),
        "a raw socket of that protocol is the sender: {flow}"
    );
    assert_eq!(dir_counts(flow, "to_server").0, 4, "{flow}");
}

#[test]
fn frames_from_an_af_packet_socket_are_seen_and_their_sender_named() {
    if !need_root() {
        return;
    }
    let n = Netns::new("k");
    let (smac, dmac) = (mac_of(&n, &n.b, &n.veth_b), mac_of(&n, &n.a, &n.veth_a));
    let (nv, out) = start_netvigil(&n, &n.b, 3.0, &[]);
    sleep(Duration::from_millis(500));
    let client = n
        .exec(
            &n.b,
            &[
                python(),
                "-c",
                PACKET_SEND,
                &n.veth_b,
                &smac,
                &dmac,
                &n.addr_b,
                &n.addr_a,
                "9000",
                "3",
            ],
        )
        .spawn()
        .expect("packet-socket sender");
    let pid = client.id();
    assert!(client.wait_with_output().unwrap().status.success());
    let text = out.join().unwrap();
    drop(nv);
    let flows = to_server(&text, "flow", "udp", &n.addr_a, 9000);
    assert_eq!(flows.len(), 1, "one UDP flow to :9000 in\n{text}");
    let flow = &flows[0];
    assert_eq!(dir_counts(flow, "to_server").0, 3, "{flow}");
    // No UDP socket sent these: the only other holder of a packet socket did, and the record
    // says the owner was inferred.
    assert_eq!(owner(flow).map(|o| o.0), Some(pid), "{flow}");
    assert!(inferred(flow), "{flow}");
}

/// Runs `client` (in namespace b) against a TCP sink listening on `port` in namespace a, with
/// netvigil and tcpdump watching b. Checks that the sink got `size` bytes, that the flow is owned
/// by the client, that its packets and bytes equal tcpdump's and that its payload holds `size`.
fn check_transfer(n: &Netns, port: u16, size: usize, mut client: std::process::Command, what: &str) {
    let _sink = spawn_until(
        n.exec(&n.a, &[python(), "-c", TCP_SINK, &n.addr_a, &port.to_string()]),
        false,
        "ready",
    );
    let dir = temp_dir(&format!("transfer-{port}"));
    let pcap = dir.join("b.pcap");
    let dump = start_tcpdump(n, &n.b, &n.veth_b, &pcap, &format!("tcp port {port}"));
    let (nv, out) = start_netvigil(n, &n.b, 3.0, &[]);
    sleep(Duration::from_millis(500));
    let child = client.stdout(Stdio::piped()).spawn().expect(what);
    let pid = child.id();
    let o = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{what} client failed: {said}");
    assert!(
        said.contains(&size.to_string()),
        "{what}: the sink counted {said:?}, not {size}"
    );
    let text = out.join().unwrap();
    drop(nv);
    sleep(Duration::from_millis(300));
    drop(dump);
    let flows = to_server(&text, "flow", "tcp", &n.addr_a, port);
    assert_eq!(flows.len(), 1, "{what}: one flow in\n{text}");
    let flow = &flows[0];
    assert_eq!(owner(flow).map(|o| o.0), Some(pid), "{what}: {flow}");
    let (s, c) = (dir_counts(flow, "to_server"), dir_counts(flow, "to_client"));
    assert_eq!(
        (s.0 + c.0, s.1 + c.1),
        pcap_totals(&pcap),
        "{what}: netvigil vs tcpdump packets/bytes: {flow}"
    );
    // Retransmitted segments count again, so the payload is at least what was sent.
    assert!(payload_to_server(flow) >= size as u64, "{what}: {flow}");
}

fn payload_to_server(flow: &str) -> u64 {
    let rest = flow.split("\"to_server\":").nth(1).expect("to_server");
    json_u64(rest, "payload_bytes").expect("payload_bytes")
}

#[test]
fn sendfile_and_splice_transfers_are_owned_and_counted() {
    if !need_root() {
        return;
    }
    let size = 3_000_000usize;
    for (method, port) in [("sendfile", 9961u16), ("splice", 9962)] {
        let n = Netns::new(&method[..2]);
        let client = n.exec(
            &n.b,
            &[
                python(),
                "-c",
                FILE_SEND,
                &n.addr_a,
                &port.to_string(),
                method,
                &size.to_string(),
            ],
        );
        check_transfer(&n, port, size, client, method);
    }
}

#[test]
fn udp_batched_with_sendmmsg_and_recvmmsg_is_owned_and_counted() {
    if !need_root() {
        return;
    }
    let n = Netns::new("m");
    let count = 64;
    let server_script = format!("{MMSG_DECL}{MMSG_SERVER}");
    let client_script = format!("{MMSG_DECL}{MMSG_CLIENT}");
    let mut server = n
        .exec(
            &n.a,
            &[
                python(),
                "-c",
                &server_script,
                &n.addr_a,
                "9971",
                &count.to_string(),
            ],
        )
        .stdout(Stdio::piped())
        .spawn()
        .expect("recvmmsg server");
    let mut server_out = server.stdout.take().unwrap();
    let server = Guard(server);
    let mut first = [0u8; 6];
    std::io::Read::read_exact(&mut server_out, &mut first).expect("server ready");
    let (nv, out) = start_netvigil(&n, &n.b, 3.0, &[]);
    sleep(Duration::from_millis(500));
    let client = n
        .exec(
            &n.b,
            &[
                python(),
                "-c",
                &client_script,
                &n.addr_a,
                "9971",
                &count.to_string(),
            ],
        )
        .spawn()
        .expect("sendmmsg client");
    let pid = client.id();
    assert!(
        client.wait_with_output().unwrap().status.success(),
        "sendmmsg client"
    );
    let text = out.join().unwrap();
    drop(nv);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut server_out, &mut rest).unwrap();
    drop(server);
    assert!(
        rest.contains(&format!("got {count}")),
        "recvmmsg server said {rest:?}"
    );
    let flows = to_server(&text, "flow", "udp", &n.addr_a, 9971);
    assert_eq!(flows.len(), 1, "one flow in\n{text}");
    let flow = &flows[0];
    assert_eq!(owner(flow).map(|o| o.0), Some(pid), "{flow}");
    assert!(!inferred(flow), "{flow}");
    assert_eq!(dir_counts(flow, "to_server").0, count, "{flow}");
}

/// Entry point of the io_uring client (this test binary, run again inside the namespace with
/// NETVIGIL_IO_URING_PEER=HOST:PORT:SIZE). In a normal test run it returns at once.
#[test]
fn io_uring_client_entry() {
    let Ok(spec) = std::env::var("NETVIGIL_IO_URING_PEER") else {
        return;
    };
    let mut parts = spec.split(':');
    let host: std::net::Ipv4Addr = parts.next().unwrap().parse().unwrap();
    let port: u16 = parts.next().unwrap().parse().unwrap();
    let size: usize = parts.next().unwrap().parse().unwrap();
    let answer = uring::transfer(host, port, size).expect("io_uring transfer");
    println!("server counted {answer}");
}

mod uring {
    //! A TCP client whose connect, sends and receive all go through io_uring.
    use io_uring::{IoUring, opcode, types};
    use std::io;

    fn run(ring: &mut IoUring, e: io_uring::squeue::Entry) -> io::Result<i32> {
        // SAFETY: every buffer and address an entry points to outlives this call, which waits
        // for the entry's completion before returning.
        unsafe { ring.submission().push(&e) }.map_err(|_| io::Error::other("submission queue full"))?;
        ring.submit_and_wait(1)?;
        let cqe = ring
            .completion()
            .next()
            .ok_or_else(|| io::Error::other("no completion"))?;
        if cqe.result() < 0 {
            return Err(io::Error::from_raw_os_error(-cqe.result()));
        }
        Ok(cqe.result())
    }

    pub fn transfer(host: std::net::Ipv4Addr, port: u16, size: usize) -> io::Result<String> {
        let mut ring = IoUring::new(8)?;
        // SAFETY: plain socket(2) call; the descriptor is closed below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(host).to_be(),
            },
            sin_zero: [0; 8],
        };
        let len = std::mem::size_of::<libc::sockaddr_in>() as u32;
        run(
            &mut ring,
            opcode::Connect::new(types::Fd(fd), (&raw const addr).cast(), len).build(),
        )?;
        // Open 300 ms before the data, as in the sendfile test.
        std::thread::sleep(std::time::Duration::from_millis(300));
        let chunk = vec![0x5au8; 65536];
        let mut sent = 0;
        while sent < size {
            let k = (size - sent).min(chunk.len());
            sent += run(
                &mut ring,
                opcode::Send::new(types::Fd(fd), chunk.as_ptr(), k as u32).build(),
            )? as usize;
        }
        run(
            &mut ring,
            opcode::Shutdown::new(types::Fd(fd), libc::SHUT_WR).build(),
        )?;
        let mut buf = [0u8; 64];
        let n = run(
            &mut ring,
            opcode::Recv::new(types::Fd(fd), buf.as_mut_ptr(), buf.len() as u32).build(),
        )?;
        std::thread::sleep(std::time::Duration::from_millis(300));
        // SAFETY: fd is ours and closed once.
        unsafe { libc::close(fd) };
        Ok(String::from_utf8_lossy(&buf[..n as usize]).into_owned())
    }
}

#[test]
fn an_io_uring_client_is_owned_and_counted() {
    if !need_root() {
        return;
    }
    let n = Netns::new("i");
    let (port, size) = (9981u16, 2_000_000usize);
    let me = std::env::current_exe().unwrap();
    let mut client = n.exec(
        &n.b,
        &[
            me.to_str().unwrap(),
            "--exact",
            "io_uring_client_entry",
            "--nocapture",
            "--test-threads",
            "1",
        ],
    );
    client.env("NETVIGIL_IO_URING_PEER", format!("{}:{port}:{size}", n.addr_a));
    check_transfer(&n, port, size, client, "io_uring");
}

#[test]
fn with_every_capability_dropped_the_socket_table_still_names_the_owner() {
    if !need_root() {
        return;
    }
    let n = Netns::new("c");
    let _sink = spawn_until(
        n.exec(&n.a, &[python(), "-c", TCP_SINK, &n.addr_a, "9991"]),
        false,
        "ready",
    );
    // Root without any capability (setpriv clears the bounding set): no packet capture.
    let bin = env!("CARGO_BIN_EXE_netvigil");
    let mut child = n
        .exec(
            &n.b,
            &[
                "setpriv",
                "--bounding-set=-all",
                "--inh-caps=-all",
                "--ambient-caps=-all",
                bin,
                "run",
                "--events",
                "-",
                "--no-web",
                "--no-rdns",
                "--no-store",
                "--poll-ms",
                "100",
                "--duration",
                "3",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("setpriv (Debian package util-linux)");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let guard = Guard(child);
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    sleep(Duration::from_millis(700));
    // Holds its connection 1 s: the socket table is read every 100 ms. The client has no
    // capability either, as a user's programs have none: a process without capabilities may
    // not look into one that has more (the kernel's ptrace access check).
    let client = n
        .exec(
            &n.b,
            &[
                "setpriv",
                "--bounding-set=-all",
                "--inh-caps=-all",
                python(),
                "-c",
                "import socket,time,sys\nc=socket.create_connection((sys.argv[1],9991));c.sendall(b'x'*1000);time.sleep(1);c.close()",
                &n.addr_a,
            ],
        )
        .spawn()
        .expect("client");
    let pid = client.id();
    assert!(client.wait_with_output().unwrap().status.success());
    let text = reader.join().unwrap();
    drop(guard);
    let mut err = String::new();
    let _ = std::io::Read::read_to_string(&mut stderr, &mut err);
    assert!(
        err.contains("socket-table mode"),
        "netvigil said which mode it is in: {err}"
    );
    assert!(
        err.contains("CAP_NET_RAW") || err.contains("privilege") || err.contains("permission"),
        "netvigil said why it cannot capture: {err}"
    );
    let opened = to_server(&text, "connection", "tcp", &n.addr_a, 9991)
        .into_iter()
        .find(|l| l.contains("\"event\":\"opened\"") && l.contains("\"direction\":\"outbound\""))
        .unwrap_or_else(|| panic!("no outbound connection in\n{text}\n{err}"));
    assert_eq!(owner(&opened).map(|o| o.0), Some(pid), "{opened}");
    assert!(
        to_server(&text, "connection", "tcp", &n.addr_a, 9991)
            .iter()
            .any(|l| l.contains("\"event\":\"closed\"")),
        "the close is seen too:\n{text}"
    );
}
