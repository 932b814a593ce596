//! The numbers of the Windows IP Helper tables and of WinVerifyTrust, turned into netvigil's
//! types. Plain functions compiled everywhere, so the byte-order rules are tested here; the
//! calls themselves are in `crate::windows`.
//!
//! `GetExtendedTcpTable(TCP_TABLE_OWNER_PID_ALL)` rows (`MIB_TCPROW_OWNER_PID`) hold the IPv4
//! address as a `DWORD` whose bytes in memory are the address in network order, the port as a
//! `DWORD` whose low 16 bits are in network order, the state as `MIB_TCP_STATE` (1 CLOSED ...
//! 12 DELETE_TCB) and the owning pid. IPv6 rows (`MIB_TCP6ROW_OWNER_PID`) hold the address as
//! 16 bytes and a scope id. UDP rows have no state and no remote end.

use super::netstat::NetstatSocket;
use engine::sockets::{SockProto, SocketEntry, TcpState};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

/// `MIB_TCP_STATE` values to [`TcpState`] (`MIB_TCP_STATE_DELETE_TCB` is a closing socket).
pub fn mib_tcp_state(state: u32) -> Option<TcpState> {
    Some(match state {
        1 => TcpState::Close,
        2 => TcpState::Listen,
        3 => TcpState::SynSent,
        4 => TcpState::SynRecv,
        5 => TcpState::Established,
        6 => TcpState::FinWait1,
        7 => TcpState::FinWait2,
        8 => TcpState::CloseWait,
        9 => TcpState::Closing,
        10 => TcpState::LastAck,
        11 => TcpState::TimeWait,
        12 => TcpState::Close,
        _ => return None,
    })
}

/// The port of an IP Helper row: the low 16 bits of the `DWORD`, in network byte order.
pub fn mib_port(dw_port: u32) -> u16 {
    let b = dw_port.to_ne_bytes();
    u16::from_be_bytes([b[0], b[1]])
}

/// An IPv4 address and port of an IP Helper row.
pub fn mib_v4(dw_addr: u32, dw_port: u32) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::from(dw_addr.to_ne_bytes())),
        mib_port(dw_port),
    )
}

/// An IPv6 address, scope id and port of an IP Helper row.
pub fn mib_v6(addr: [u8; 16], scope: u32, dw_port: u32) -> SocketAddr {
    SocketAddr::V6(SocketAddrV6::new(
        Ipv6Addr::from(addr),
        mib_port(dw_port),
        0,
        scope,
    ))
}

/// One TCP row of the IP Helper table as a socket list row.
pub fn tcp_row(local: SocketAddr, remote: SocketAddr, state: u32, pid: u32) -> NetstatSocket {
    let state = mib_tcp_state(state);
    // A listening socket's remote address field is not meaningful: show it unspecified.
    let remote = if state == Some(TcpState::Listen) {
        SocketAddr::new(super::unspecified(local.is_ipv6()), 0)
    } else {
        remote
    };
    row(SockProto::Tcp, local, remote, state, pid)
}

/// One UDP row of the IP Helper table as a socket list row (the table has no remote end).
pub fn udp_row(local: SocketAddr, pid: u32) -> NetstatSocket {
    let remote = SocketAddr::new(super::unspecified(local.is_ipv6()), 0);
    row(SockProto::Udp, local, remote, None, pid)
}

fn row(
    proto: SockProto,
    local: SocketAddr,
    remote: SocketAddr,
    state: Option<TcpState>,
    pid: u32,
) -> NetstatSocket {
    NetstatSocket {
        entry: SocketEntry {
            proto,
            local,
            remote,
            state,
            connected: false,
            uid: 0,
            inode: 0,
            rx_queue: 0,
            tx_queue: 0,
            tcp: None,
            interface: None,
        },
        pid: Some(pid),
        dual_stack: false,
        state_guessed: false,
    }
}

/// `TRUST_E_NOSIGNATURE`: the file has no embedded Authenticode signature.
pub const TRUST_E_NOSIGNATURE: i32 = 0x800B_0100_u32 as i32;
/// Returned when the provider cannot handle the file type (not a PE file, a script ...).
pub const TRUST_E_SUBJECT_FORM_UNKNOWN: i32 = 0x800B_0003_u32 as i32;
/// `TRUST_E_PROVIDER_UNKNOWN`.
pub const TRUST_E_PROVIDER_UNKNOWN: i32 = 0x800B_0001_u32 as i32;

/// `(package, package_checked)` for [`engine::sockets::ProcessInfo`] from the result of
/// `WinVerifyTrust(WINTRUST_ACTION_GENERIC_VERIFY_V2)` on the file alone (`WTD_CHOICE_FILE`):
/// - 0: a valid embedded signature: `Some("signed: Authenticode")`;
/// - `TRUST_E_NOSIGNATURE` for a file under the Windows directory: not checked (`false`):
///   Windows' own files are mostly signed through catalogs, which this check does not read, so
///   "no embedded signature" says nothing there;
/// - `TRUST_E_NOSIGNATURE` elsewhere, or a signature that does not verify (bad digest,
///   untrusted root, expired, explicitly distrusted): `None`, checked;
/// - the file type or the provider is unknown: not checked.
pub fn authenticode_package(result: i32, exe: &str, windows_dir: &str) -> (Option<String>, bool) {
    match result {
        0 => (Some("signed: Authenticode".to_string()), true),
        TRUST_E_SUBJECT_FORM_UNKNOWN | TRUST_E_PROVIDER_UNKNOWN => (None, false),
        TRUST_E_NOSIGNATURE if under_dir(exe, windows_dir) => (None, false),
        _ => (None, true),
    }
}

/// `path` is inside `dir` (Windows paths: case-insensitive, `\` or `/`).
fn under_dir(path: &str, dir: &str) -> bool {
    let norm = |s: &str| s.replace('/', "\\").to_lowercase();
    let (p, d) = (norm(path), norm(dir));
    let d = d.trim_end_matches('\\');
    !d.is_empty() && p.len() > d.len() && p.starts_with(d) && p[d.len()..].starts_with('\\')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_order_fields() {
        // 192.168.1.10 stored in memory as c0 a8 01 0a; port 443 as 01 bb 00 00.
        let addr = u32::from_ne_bytes([192, 168, 1, 10]);
        let port = u32::from_ne_bytes([0x01, 0xbb, 0, 0]);
        assert_eq!(mib_v4(addr, port).to_string(), "192.168.1.10:443");
        let mut v6 = [0u8; 16];
        v6[0] = 0xfe;
        v6[1] = 0x80;
        v6[15] = 1;
        assert_eq!(mib_v6(v6, 4, port).to_string(), "[fe80::1%4]:443");
    }

    #[test]
    fn listening_rows_lose_their_remote() {
        let l = mib_v4(0, u32::from_ne_bytes([0, 135, 0, 0]));
        let r = mib_v4(0, u32::from_ne_bytes([0x12, 0x34, 0, 0]));
        let row = tcp_row(l, r, 2, 1234);
        assert_eq!(row.entry.state, Some(TcpState::Listen));
        assert_eq!(row.entry.remote.port(), 0);
        assert!(row.entry.is_listening());
        assert_eq!(tcp_row(l, r, 12, 1).entry.state, Some(TcpState::Close));
        assert_eq!(mib_tcp_state(13), None);
    }

    #[test]
    fn authenticode_results() {
        let win = r"C:\Windows";
        assert_eq!(
            authenticode_package(0, r"C:\Program Files\App\app.exe", win),
            (Some("signed: Authenticode".into()), true)
        );
        assert_eq!(
            authenticode_package(TRUST_E_NOSIGNATURE, r"c:\windows\System32\svchost.exe", win),
            (None, false)
        );
        assert_eq!(
            authenticode_package(TRUST_E_NOSIGNATURE, r"C:\Users\me\AppData\Local\Temp\x.exe", win),
            (None, true)
        );
        assert_eq!(
            authenticode_package(TRUST_E_NOSIGNATURE, r"C:\WindowsApps\x.exe", win),
            (None, true)
        );
        assert_eq!(
            authenticode_package(0x800B_0109_u32 as i32, r"D:\x.exe", win),
            (None, true)
        );
        assert_eq!(
            authenticode_package(TRUST_E_SUBJECT_FORM_UNKNOWN, r"D:\x.bat", win),
            (None, false)
        );
    }
}
