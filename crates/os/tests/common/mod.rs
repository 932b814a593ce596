//! Set-up shared by the os crate's live capture tests (afpacket_netns, pcap_netns): two
//! throw-away network namespaces joined by a veth pair, deleted on drop (also on failure), and
//! the check that the machine can run them (root and iproute2; under `CI=true` a missing piece
//! fails the test instead of skipping it).
#![allow(dead_code)] // each test binary uses its own part of it

use std::fs::File;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

/// One namespace lab at a time per test binary: a flood in one test must not disturb the
/// counts of another.
static SERIAL: Mutex<()> = Mutex::new(());

/// Whether `test` can run here (root and `ip`); `how` is the command line that runs it, shown
/// when it is skipped.
pub fn can_run(test: &str, how: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let ip = Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    let why = match (root, ip) {
        (true, true) => return true,
        (false, _) => "it needs root (network namespaces and CAP_NET_RAW)",
        (true, false) => "it needs the `ip` command (iproute2)",
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: {why}; CI must run it as root with iproute2 installed");
    }
    eprintln!("note: skipping {test}: {why}; run `sudo -E {how}`");
    false
}

/// Runs `ip ARGS`, failing the test with its stderr when it fails.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run `ip`");
    assert!(
        out.status.success(),
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Two namespaces with a veth pair between them (IPv4 /24, and IPv6 /64 when asked); deleted
/// on drop, which removes the veths.
pub struct Lab {
    pub ns_a: String,
    pub ns_b: String,
    pub veth_a: String,
    pub veth_b: String,
    pub a4: Ipv4Addr,
    pub b4: Ipv4Addr,
    pub a6: Ipv6Addr,
    pub b6: Ipv6Addr,
    _serial: MutexGuard<'static, ()>,
}

impl Lab {
    /// `prefix` names this binary's namespaces and veths (short: a veth name has at most 15
    /// bytes), `net` is the third byte of its 10.N.x.0/24 and fd00:N:x::/64 networks, `tag`
    /// tells apart the labs of tests in the same binary. IPv6 is configured only with `v6`
    /// (its neighbour discovery adds frames that some counts do not expect).
    pub fn create(prefix: &str, net: u8, tag: char, v6: bool) -> Lab {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let pid = std::process::id();
        let x = (pid % 250) as u8 + 1;
        let lab = Lab {
            ns_a: format!("netvigil-{prefix}{tag}a-{pid}"),
            ns_b: format!("netvigil-{prefix}{tag}b-{pid}"),
            veth_a: format!("{prefix}{tag}a{pid}"),
            veth_b: format!("{prefix}{tag}b{pid}"),
            a4: Ipv4Addr::new(10, net, x, 1),
            b4: Ipv4Addr::new(10, net, x, 2),
            a6: Ipv6Addr::new(0xfd00, u16::from(net), u16::from(x), 0, 0, 0, 0, 1),
            b6: Ipv6Addr::new(0xfd00, u16::from(net), u16::from(x), 0, 0, 0, 0, 2),
            _serial: serial,
        };
        // The guard exists before the first command: a failure below still cleans up.
        ip(&["netns", "add", &lab.ns_a]);
        ip(&["netns", "add", &lab.ns_b]);
        // Created directly inside the namespaces: nothing appears in the root namespace.
        ip(&[
            "link",
            "add",
            &lab.veth_a,
            "netns",
            &lab.ns_a,
            "type",
            "veth",
            "peer",
            "name",
            &lab.veth_b,
            "netns",
            &lab.ns_b,
        ]);
        for (ns, dev, v4, v6addr) in [
            (&lab.ns_a, &lab.veth_a, lab.a4, lab.a6),
            (&lab.ns_b, &lab.veth_b, lab.b4, lab.b6),
        ] {
            ip(&["-n", ns, "addr", "add", &format!("{v4}/24"), "dev", dev]);
            if v6 {
                ip(&[
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("{v6addr}/64"),
                    "dev",
                    dev,
                    "nodad",
                ]);
            }
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        lab
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.ns_a, &self.ns_b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Moves the calling thread (only) into the named namespace.
pub fn enter_netns(name: &str) {
    let f = File::open(format!("/run/netns/{name}")).expect("open the namespace file");
    // SAFETY: `f` is an open namespace file for the call; setns changes only this thread's
    // network namespace.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns({name}): {}", std::io::Error::last_os_error());
}
