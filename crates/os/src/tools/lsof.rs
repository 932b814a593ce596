//! `lsof -F` field output: the sockets of every visible process, with pid, command and uid.
//!
//! netvigil runs `lsof +c 0 -i -n -P -Tqs -FpcuftdPTn` (see [`LSOF_ARGS`]). In field output
//! each line is one field: an identifier character, then the value (lsof's manual, "OUTPUT FOR
//! OTHER PROGRAMS"). A process set starts with `p` (pid) and carries `c` (command), `u` (uid);
//! a file set starts with `f` (fd) and carries `t` (`IPv4`/`IPv6`), `d` (device: the socket's
//! kernel address `0x...` on macOS, a number on Linux), `P` (`TCP`, `UDP` ...), `n` (the
//! addresses) and `T` fields (`TST=ESTABLISHED`, `TQR=0`, `TQS=0`). With `-F0` fields end in
//! NUL instead of NL; both are read.
//!
//! Addresses in `n`: `127.0.0.1:5000->127.0.0.1:60000`, `[::1]:8080`, `[fe80::1%lo0]:123`,
//! `*:5353` (any address), `*:*` (an unconnected UDP socket). A `*` address takes its family
//! from the `t` field (or the other end); `*` as a port is 0.

use super::{Parsed, parse_ip, socket_addr, tcp_state_from_name, unspecified};
use engine::sockets::{SockProto, TcpState};
use std::net::SocketAddr;

/// The arguments netvigil gives lsof: every Internet socket (`-i`), numeric addresses and
/// ports (`-n -P`), whole command names (`+c 0`), queue lengths and state (`-Tqs`), and the
/// fields this parser reads.
pub const LSOF_ARGS: &[&str] = &["+c", "0", "-i", "-n", "-P", "-Tqs", "-FpcuftdPTn"];

/// One Internet socket held by one process, as lsof lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LsofSocket {
    pub pid: u32,
    /// The command name (`c`): whole with `+c 0`, and it may contain spaces.
    pub command: String,
    pub uid: Option<u32>,
    /// The file descriptor (`f`).
    pub fd: String,
    pub proto: SockProto,
    pub local: SocketAddr,
    /// Unspecified (`0.0.0.0:0` / `[::]:0`) when the socket has no peer.
    pub remote: SocketAddr,
    /// `TST=` for TCP; `None` for UDP and when lsof did not report it.
    pub state: Option<TcpState>,
    /// `TQR=` and `TQS=`: bytes waiting to be read and to be sent.
    pub rx_queue: Option<u32>,
    pub tx_queue: Option<u32>,
    /// The `d` field as a number (`0x...` hex on macOS: the socket's kernel address, which is
    /// the same in every process that shares the socket; decimal elsewhere).
    pub device: Option<u64>,
}

#[derive(Default)]
struct Proc {
    pid: Option<u32>,
    command: String,
    uid: Option<u32>,
}

#[derive(Default)]
struct File {
    fd: String,
    v6: Option<bool>,
    proto: Option<String>,
    name: Option<String>,
    state: Option<String>,
    rx: Option<u32>,
    tx: Option<u32>,
    device: Option<u64>,
    bad: bool,
}

/// Parses `lsof -F` output. Files that are not Internet sockets (no `P`/`n`) are ignored;
/// sockets of protocols netvigil does not track are ignored; malformed sockets (an address
/// that does not parse, a file set before any valid `p`) are counted in `skipped`.
pub fn parse_lsof(text: &str) -> Parsed<LsofSocket> {
    let mut out = Parsed::default();
    let mut proc = Proc::default();
    let mut file: Option<File> = None;
    for field in text.split(['\n', '\0']) {
        let field = field.strip_suffix('\r').unwrap_or(field);
        let mut chars = field.chars();
        let Some(id) = chars.next() else { continue };
        let value = chars.as_str();
        match id {
            'p' => {
                finish(file.take(), &proc, &mut out);
                proc = Proc {
                    pid: value.trim().parse().ok(),
                    ..Proc::default()
                };
            }
            'c' => proc.command = value.to_string(),
            'u' => proc.uid = value.trim().parse().ok(),
            'f' => {
                finish(file.take(), &proc, &mut out);
                file = Some(File {
                    fd: value.to_string(),
                    ..File::default()
                });
            }
            _ => {
                let Some(f) = file.as_mut() else { continue };
                match id {
                    't' => {
                        f.v6 = match value {
                            "IPv4" => Some(false),
                            "IPv6" => Some(true),
                            _ => None,
                        }
                    }
                    'P' => f.proto = Some(value.to_string()),
                    'n' => f.name = Some(value.to_string()),
                    'd' => f.device = parse_device(value),
                    'T' => {
                        if let Some(s) = value.strip_prefix("ST=") {
                            f.state = Some(s.to_string());
                        } else if let Some(q) = value.strip_prefix("QR=") {
                            f.rx = q.trim().parse().ok();
                            f.bad |= f.rx.is_none();
                        } else if let Some(q) = value.strip_prefix("QS=") {
                            f.tx = q.trim().parse().ok();
                            f.bad |= f.tx.is_none();
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    finish(file, &proc, &mut out);
    out
}

fn parse_device(value: &str) -> Option<u64> {
    let v = value.trim();
    match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

fn proto_of(name: &str) -> Option<SockProto> {
    Some(match name.to_ascii_uppercase().as_str() {
        "TCP" => SockProto::Tcp,
        "UDP" => SockProto::Udp,
        "UDPLITE" => SockProto::UdpLite,
        "ICMP" => SockProto::Icmp,
        "ICMPV6" | "ICMP6" => SockProto::Icmpv6,
        "SCTP" => SockProto::Sctp,
        _ => return None,
    })
}

fn finish(file: Option<File>, proc: &Proc, out: &mut Parsed<LsofSocket>) {
    let Some(f) = file else { return };
    let (Some(proto_name), Some(name)) = (f.proto.as_deref(), f.name.as_deref()) else {
        return; // not an Internet socket
    };
    let Some(proto) = proto_of(proto_name) else { return };
    match build(&f, proc, proto, name) {
        Some(s) if !f.bad => out.entries.push(s),
        _ => out.skipped += 1,
    }
}

fn build(f: &File, proc: &Proc, proto: SockProto, name: &str) -> Option<LsofSocket> {
    let pid = proc.pid?;
    // Normal (non -F) output appends " (ESTABLISHED)"; addresses never contain spaces.
    let name = name.split(' ').next().unwrap_or(name);
    let (l, r) = match name.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (name, None),
    };
    let lp = endpoint(l)?;
    let rp = match r {
        Some(r) => Some(endpoint(r)?),
        None => None,
    };
    let family_of = |e: &Endpoint| e.ip.map(|(ip, _)| ip.is_ipv6());
    let v6 =
        f.v6.or_else(|| family_of(&lp))
            .or_else(|| rp.as_ref().and_then(family_of))
            .unwrap_or(false);
    let local = lp.addr(v6)?;
    let remote = match rp {
        Some(r) => r.addr(v6)?,
        None => SocketAddr::new(unspecified(v6), 0),
    };
    let state = f.state.as_deref().and_then(tcp_state_from_name);
    Some(LsofSocket {
        pid,
        command: proc.command.clone(),
        uid: proc.uid,
        fd: f.fd.clone(),
        proto,
        local,
        remote,
        state: if proto == SockProto::Tcp { state } else { None },
        rx_queue: f.rx,
        tx_queue: f.tx,
        device: f.device,
    })
}

struct Endpoint {
    ip: Option<(std::net::IpAddr, u32)>,
    port: u16,
}

impl Endpoint {
    fn addr(&self, v6: bool) -> Option<SocketAddr> {
        match self.ip {
            Some((ip, scope)) => {
                if ip.is_ipv6() && !v6 {
                    return None; // an IPv6 address in a socket lsof called IPv4
                }
                Some(socket_addr(ip, self.port, scope))
            }
            None => Some(SocketAddr::new(unspecified(v6), self.port)),
        }
    }
}

/// `addr:port` with `addr` `*`, dotted IPv4 or bracketed IPv6, and `port` a number or `*`.
fn endpoint(text: &str) -> Option<Endpoint> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (h, p) = rest.split_once("]:")?;
        (h, p)
    } else {
        text.rsplit_once(':')?
    };
    let port = match port {
        "*" => 0,
        p => p.parse().ok()?,
    };
    let ip = match host {
        "*" => None,
        h => Some(parse_ip(h)?),
    };
    Some(Endpoint { ip, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let e = endpoint("[fe80::1%lo0]:123").unwrap();
        assert_eq!(e.port, 123);
        assert!(e.ip.unwrap().0.is_ipv6());
        assert!(endpoint("*:*").unwrap().ip.is_none());
        assert_eq!(endpoint("*:5353").unwrap().port, 5353);
        assert!(endpoint("localhost:80").is_none());
        assert!(endpoint("[::1]").is_none());
        assert!(endpoint("1.2.3.4:99999").is_none());
    }
}
