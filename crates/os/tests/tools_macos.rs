//! The macOS tool parsers and the snapshot they make, on outputs written to match the tools'
//! documented formats (see `fixtures/tools/README.md`: none was captured on a Mac).

use engine::sockets::{SockProto, SocketEntry, SocketSnapshot, TcpState};
use os::tools::assemble::macos_snapshot;
use os::tools::codesign::{Signature, parse_codesign};
use os::tools::lsof::parse_lsof;
use os::tools::netstat::{parse_netstat_bsd, parse_tcp_stats};
use os::tools::nettop::parse_nettop;
use os::tools::ps::{parse_ps, parse_ps_args};
use std::net::SocketAddr;
use std::path::Path;

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tools")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn lsof_field_output() {
    let p = parse_lsof(&fixture("lsof_macos.txt"));
    assert_eq!(p.skipped, 2, "localhost:http and the pid `notapid`");
    assert_eq!(p.entries.len(), 14);

    let launchd: Vec<_> = p.entries.iter().filter(|s| s.pid == 1).collect();
    assert_eq!(launchd.len(), 2);
    assert_eq!(
        launchd[0].local,
        sa("[::]:22"),
        "t=IPv6 makes `*` the IPv6 any address"
    );
    assert_eq!(launchd[1].local, sa("0.0.0.0:22"));
    assert!(
        launchd
            .iter()
            .all(|s| s.state == Some(TcpState::Listen) && s.uid == Some(0))
    );

    let chrome: Vec<_> = p.entries.iter().filter(|s| s.pid == 4521).collect();
    assert_eq!(chrome.len(), 3, "three fds of one process");
    assert!(
        chrome
            .iter()
            .all(|s| s.command == "Google Chrome Helper" && s.uid == Some(501))
    );
    assert_eq!(chrome[0].fd, "23");
    assert_eq!(chrome[0].local, sa("192.168.1.20:52344"));
    assert_eq!(chrome[0].remote, sa("142.250.74.110:443"));
    assert_eq!((chrome[0].rx_queue, chrome[0].tx_queue), (Some(0), Some(517)));
    assert_eq!(chrome[0].device, Some(0x5a1c_2e3f_4b5d_7201));
    assert_eq!(chrome[1].remote, sa("[2a00:1450:4001:82a::200e]:443"));
    assert_eq!(chrome[1].state, None, "no TST= field");
    assert_eq!(chrome[2].proto, SockProto::Udp);
    assert_eq!(chrome[2].remote, sa("8.8.8.8:53"));
    assert_eq!(chrome[2].device, None);

    let timed: Vec<_> = p.entries.iter().filter(|s| s.pid == 8000).collect();
    assert_eq!(
        timed[0].local,
        sa("[fe80::1]:123"),
        "the zone name lo0 is not a number: scope 0"
    );
    assert_eq!(timed[1].local, sa("0.0.0.0:0"), "*:*");
    assert_eq!(timed[1].remote, sa("0.0.0.0:0"));

    let node = p.entries.iter().find(|s| s.pid == 7001 && s.fd == "21").unwrap();
    assert_eq!(node.rx_queue, Some(12));
}

#[test]
fn lsof_nul_terminated_fields() {
    // `-F0`: fields end in NUL, each set ends in a newline.
    let text = "p42\0cmy app\0u501\0\nf7\0tIPv4\0PTCP\0n10.0.0.1:80->10.0.0.2:5000\0TST=CLOSE_WAIT\0\n";
    let p = parse_lsof(text);
    assert_eq!(p.skipped, 0);
    assert_eq!(p.entries.len(), 1);
    let s = &p.entries[0];
    assert_eq!((s.pid, s.command.as_str(), s.uid), (42, "my app", Some(501)));
    assert_eq!(s.state, Some(TcpState::CloseWait));
}

#[test]
fn netstat_an_bsd_layout() {
    let p = parse_netstat_bsd(&fixture("netstat_an_macos.txt"));
    assert_eq!(p.skipped, 1, "the row with `not-an-address`");
    assert_eq!(p.entries.len(), 17);
    let e = |i: usize| &p.entries[i].entry;
    assert_eq!(
        (e(0).local, e(0).remote),
        (sa("192.168.1.20:52344"), sa("142.250.74.110:443"))
    );
    assert_eq!((e(0).rx_queue, e(0).tx_queue), (0, 517));
    assert_eq!(e(1).remote, sa("[2a00:1450:4001:82a::200e]:443"));
    assert_eq!(e(1).state, Some(TcpState::SynSent));
    assert_eq!(e(4).rx_queue, 12);
    assert_eq!(e(5).state, Some(TcpState::Listen));
    assert_eq!(e(7).state, Some(TcpState::TimeWait));
    assert_eq!(e(8).local, sa("[::]:22"));
    assert_eq!(e(9).local, sa("0.0.0.0:22"));
    assert!(p.entries[10].dual_stack);
    assert_eq!(e(10).local, sa("[::]:8443"));
    assert!(e(10).is_listening() && e(10).on_all_interfaces());
    assert_eq!(
        (e(11).proto, e(11).state, e(11).connected),
        (SockProto::Udp, None, true)
    );
    assert_eq!(e(14).local, sa("[fe80::1]:123"));
    assert_eq!(e(15).local, sa("0.0.0.0:0"));
    assert!(p.entries.iter().all(|r| r.pid.is_none()));
}

#[test]
fn nettop_bytes_per_process() {
    let p = parse_nettop(&fixture("nettop_macos.csv"));
    assert_eq!(
        p.skipped, 2,
        "`broken` has no pid, curl's `1.2 MiB` is not a number"
    );
    let by = |pid: u32| p.entries.iter().find(|e| e.pid == pid).unwrap();
    assert_eq!(p.entries.len(), 6);
    assert_eq!((by(312).bytes_in, by(312).bytes_out), (1_048_576, 65_536));
    assert_eq!(by(4521).name, "Google Chrome He");
    assert_eq!(by(9001).name, "com.apple.WebKit.Networking", "dots in the name");
    assert_eq!(by(9100).name, "My App, Inc. Helper", "a comma in the name");
    assert_eq!((by(9100).bytes_in, by(9100).bytes_out), (700, 800));
    assert_eq!(
        (by(7001).bytes_in, by(7001).bytes_out),
        (5000, 9000),
        "the later sample wins"
    );
}

#[test]
fn nettop_without_header_uses_documented_positions() {
    let p = parse_nettop("09:41:07.1,app.77,,,10,20,0\n");
    assert_eq!(p.entries.len(), 1);
    assert_eq!(
        (p.entries[0].pid, p.entries[0].bytes_in, p.entries[0].bytes_out),
        (77, 10, 20)
    );
}

#[test]
fn ps_lstart_and_paths_with_spaces() {
    let p = parse_ps(&fixture("ps_lstart_macos.txt"));
    assert_eq!(p.skipped, 1, "the row without comm");
    assert_eq!(p.entries.len(), 8);
    let chrome = p.entries.iter().find(|e| e.pid == 4521).unwrap();
    assert!(
        chrome
            .comm
            .starts_with("/Applications/Google Chrome.app/Contents/")
    );
    assert!(chrome.comm.ends_with("/Contents/MacOS/Google Chrome Helper"));
    assert_eq!(
        (chrome.ppid, chrome.uid, chrome.user.as_str()),
        (4500, 501, "alice")
    );
    // Tue Jan  9 14:03:59 2024 UTC
    assert_eq!(chrome.start_time, Some(1_704_809_039 * 1_000_000_000));
    let launchd = &p.entries[0];
    assert_eq!(
        (launchd.pid, launchd.ppid, launchd.comm.as_str()),
        (1, 0, "/sbin/launchd")
    );

    let a = parse_ps_args(&fixture("ps_args_macos.txt"));
    assert_eq!(a.skipped, 0);
    let node = a.entries.iter().find(|(p, _)| *p == 7001).unwrap();
    assert_eq!(node.1, "node server.js --port 5000");
}

#[test]
fn codesign_displays() {
    let dev = parse_codesign(&fixture("codesign_developer_id.txt"));
    let Signature::Signed {
        identifier,
        team_id,
        authorities,
        adhoc,
    } = &dev
    else {
        panic!("{dev:?}")
    };
    assert_eq!(identifier.as_deref(), Some("com.google.Chrome.helper"));
    assert_eq!(team_id.as_deref(), Some("EQHXZ8M8AV"));
    assert_eq!(authorities.len(), 3);
    assert!(!adhoc);
    assert_eq!(
        dev.package(),
        (
            Some("signed: EQHXZ8M8AV (Developer ID Application: Google LLC (EQHXZ8M8AV))".into()),
            true
        )
    );

    let apple = parse_codesign(&fixture("codesign_apple_platform.txt"));
    assert_eq!(
        apple.package(),
        (Some("signed: Apple (Software Signing)".into()), true)
    );

    let adhoc = parse_codesign(&fixture("codesign_adhoc.txt"));
    assert!(
        matches!(adhoc, Signature::Signed { adhoc: true, .. }),
        "{adhoc:?}"
    );
    assert_eq!(
        adhoc.package(),
        (None, true),
        "ad-hoc carries no identity: unsigned"
    );

    let unsigned = parse_codesign(&fixture("codesign_unsigned.txt"));
    assert_eq!(unsigned, Signature::Unsigned);
    assert_eq!(unsigned.package(), (None, true));

    let missing = parse_codesign(&fixture("codesign_missing_file.txt"));
    assert!(
        matches!(&missing, Signature::Unknown(m) if m.contains("No such file")),
        "{missing:?}"
    );
    assert_eq!(
        missing.package(),
        (None, false),
        "not checked: no flag on a guess"
    );
}

#[test]
fn tcp_counters_macos() {
    let c = parse_tcp_stats(&fixture("netstat_s_macos.txt"));
    assert_eq!(c.segments_sent, Some(123_456));
    assert_eq!(c.segments_received, Some(234_567));
    assert_eq!(c.retransmitted, Some(234));
    assert_eq!(c.retransmit_timeouts, Some(345));
    assert_eq!(c.timeout_drops, Some(6));
    assert_eq!(c.connection_requests, Some(1234));
    assert_eq!(c.connection_accepts, Some(567));
    assert_eq!(c.failed_connections, Some(89));
    assert_eq!(c.listen_overflows, Some(2));
    assert_eq!(c.connection_drops, Some(45));
    assert_eq!(c.embryonic_drops, Some(12));
    assert_eq!(c.established_resets, None);
    assert_eq!(c.lines_matched, 11);
}

#[test]
fn tcp_counters_grouped_digits() {
    let c = parse_tcp_stats(&fixture("netstat_s_macos_grouped.txt"));
    assert_eq!(c.segments_sent, Some(1_234_567));
    assert_eq!(c.retransmitted, Some(2345));
    assert_eq!(c.segments_received, Some(2_345_678));
    assert_eq!(c.connection_requests, Some(12_345));
    assert_eq!(c.connection_drops, Some(1045));
}

#[test]
fn tcp_counters_linux_net_tools() {
    let c = parse_tcp_stats(&fixture("netstat_s_linux.txt"));
    assert_eq!(c.connection_requests, Some(1500));
    assert_eq!(c.connection_accepts, Some(320));
    assert_eq!(c.failed_connections, Some(25));
    assert_eq!(c.established_resets, Some(14));
    assert_eq!(
        c.segments_received,
        Some(98_765),
        "not Udp's 2345 packets received"
    );
    assert_eq!(c.segments_sent, Some(87_654), "not Udp's 2400 packets sent");
    assert_eq!(c.retransmitted, Some(321));
    assert_eq!(c.resets_sent, Some(77));
    assert_eq!(c.listen_overflows, Some(3));
}

fn sock<'a>(snap: &'a SocketSnapshot, proto: SockProto, local: &str, remote: &str) -> Vec<&'a SocketEntry> {
    snap.sockets
        .iter()
        .filter(|s| s.proto == proto && s.local == sa(local) && s.remote == sa(remote))
        .collect()
}

fn owner(snap: &SocketSnapshot, e: &SocketEntry) -> Option<u32> {
    snap.owners.iter().find(|(i, _)| *i == e.inode).map(|(_, p)| *p)
}

#[test]
fn macos_snapshot_from_recorded_outputs() {
    let lsof = parse_lsof(&fixture("lsof_macos.txt")).entries;
    let netstat = parse_netstat_bsd(&fixture("netstat_an_macos.txt")).entries;
    let ps = parse_ps(&fixture("ps_lstart_macos.txt")).entries;
    let args = parse_ps_args(&fixture("ps_args_macos.txt")).entries;
    let mut asked = Vec::new();
    let snap = macos_snapshot(77, &lsof, &netstat, &ps, &args, |exe| {
        asked.push(exe.to_path_buf());
        let p = exe.to_string_lossy();
        let file = if p.contains("Google Chrome") {
            "codesign_developer_id.txt"
        } else if p.ends_with("/node") {
            "codesign_adhoc.txt"
        } else if p.ends_with("/Updater") {
            "codesign_unsigned.txt"
        } else if p == "/usr/libexec/timed" {
            return None; // budget spent: not looked up this time
        } else {
            "codesign_apple_platform.txt"
        };
        Some(parse_codesign(&fixture(file)))
    });
    assert_eq!(snap.taken_at, 77);
    // 13 distinct lsof sockets (node's listener is shared by 7001 and 7100) + 4 netstat-only.
    assert_eq!(snap.sockets.len(), 17);
    assert_eq!(snap.owners.len(), 13);
    assert_eq!(snap.unattributed, 3, "10.0.0.5:8080, *.8443, the second *.5353");

    let listen = sock(&snap, SockProto::Tcp, "127.0.0.1:5000", "0.0.0.0:0");
    assert_eq!(listen.len(), 1, "one socket, two holders");
    assert_eq!(owner(&snap, listen[0]), Some(7001), "the lowest pid");

    let syn = sock(
        &snap,
        SockProto::Tcp,
        "[2001:db8::20]:52345",
        "[2a00:1450:4001:82a::200e]:443",
    );
    assert_eq!(
        syn[0].state,
        Some(TcpState::SynSent),
        "state from netstat where lsof gave none"
    );
    assert_eq!(owner(&snap, syn[0]), Some(4521));

    let chrome = sock(&snap, SockProto::Tcp, "192.168.1.20:52344", "142.250.74.110:443");
    assert_eq!((chrome[0].tx_queue, chrome[0].uid), (517, 501));
    let udp = sock(&snap, SockProto::Udp, "192.168.1.20:61000", "8.8.8.8:53");
    assert!(udp[0].connected);
    assert_eq!(owner(&snap, udp[0]), Some(4521));

    let other = sock(&snap, SockProto::Tcp, "10.0.0.5:8080", "10.0.0.9:51000");
    assert_eq!(owner(&snap, other[0]), None);
    assert_ne!(other[0].inode, 0);
    let tw = sock(&snap, SockProto::Tcp, "192.168.1.20:52000", "93.184.216.34:80");
    assert_eq!((tw[0].inode, tw[0].state), (0, Some(TcpState::TimeWait)));
    let mdns = sock(&snap, SockProto::Udp, "0.0.0.0:5353", "0.0.0.0:0");
    assert_eq!(mdns.len(), 2);
    assert_eq!(mdns.iter().filter(|s| owner(&snap, s) == Some(312)).count(), 1);
    let dual = sock(&snap, SockProto::Tcp, "[::]:8443", "[::]:0");
    assert!(dual[0].is_listening() && dual[0].on_all_interfaces());

    let pids: Vec<u32> = snap.processes.iter().map(|p| p.pid).collect();
    // 7100 only shares 7001's listener, which belongs to the lowest pid.
    assert_eq!(pids, [1, 312, 4521, 7001, 7002, 8000, 8800]);
    let p = |pid: u32| snap.processes.iter().find(|p| p.pid == pid).unwrap();
    let chrome = p(4521);
    assert_eq!(chrome.name, "Google Chrome Helper");
    assert!(
        chrome
            .exe
            .as_ref()
            .unwrap()
            .ends_with("Google Chrome Helper.app/Contents/MacOS/Google Chrome Helper")
    );
    assert_eq!(chrome.cmdline.last().map(String::as_str), Some("--lang=en-GB"));
    assert_eq!(
        (chrome.ppid, chrome.uid, chrome.user.as_deref()),
        (Some(4500), Some(501), Some("alice"))
    );
    assert_eq!(chrome.start_time, Some(1_704_809_039 * 1_000_000_000));
    assert_eq!(
        chrome.package.as_deref(),
        Some("signed: EQHXZ8M8AV (Developer ID Application: Google LLC (EQHXZ8M8AV))")
    );
    assert!(chrome.package_checked && !chrome.exe_in_temp);
    assert_eq!(
        (p(7001).package.as_deref(), p(7001).package_checked),
        (None, true),
        "ad-hoc"
    );
    assert_eq!(
        p(7002).package.as_deref(),
        Some("signed: Apple (Software Signing)")
    );
    let updater = p(8800);
    assert!(updater.exe_in_temp, "{:?}", updater.exe);
    assert_eq!(
        (updater.package.as_deref(), updater.package_checked),
        (None, true)
    );
    assert!(!p(8000).package_checked, "not looked up this time");
    assert_eq!(asked.len(), 7, "one lookup per owning process with an exe path");
}
