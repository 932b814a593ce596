//! `netvigil doctor`: what this machine allows, and how to grant what is missing.

use std::process::ExitCode;

use anyhow::Result;
use os::linux::caps::{self, Cap};

struct Check {
    ok: bool,
    what: String,
    fix: Option<String>,
}

pub fn run() -> Result<ExitCode> {
    let mut checks = Vec::new();
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "netvigil".into());
    // SAFETY-free: getuid via /proc is enough here.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or("?")
        .to_string();
    let eff = caps::effective();
    let root = uid == "0";
    checks.push(Check {
        ok: true,
        what: format!("running as uid {uid}{}", if root { " (root)" } else { "" }),
        fix: None,
    });
    let setcap =
        format!("sudo setcap cap_net_raw,cap_net_admin,cap_sys_ptrace,cap_dac_read_search=eip {exe}");
    checks.push(Check {
        ok: eff.has(Cap::NetRaw),
        what: "packet capture (CAP_NET_RAW): see every packet, its bytes, DNS/TLS/HTTP names".into(),
        fix: (!eff.has(Cap::NetRaw)).then(|| format!("grant it: {setcap}   (or run as root)")),
    });
    checks.push(Check {
        ok: eff.has(Cap::NetAdmin),
        what: "promiscuous mode (CAP_NET_ADMIN): see traffic of other machines on a mirror port or bridge"
            .into(),
        fix: (!eff.has(Cap::NetAdmin)).then(|| format!("grant it: {setcap}")),
    });
    let see_all = eff.has(Cap::SysPtrace) || eff.has(Cap::DacReadSearch) || root;
    checks.push(Check {
        ok: see_all,
        what: "owners of other users' sockets (CAP_SYS_PTRACE or CAP_DAC_READ_SEARCH)".into(),
        fix: (!see_all).then(|| format!("without it only your own processes are named; grant it: {setcap}")),
    });
    // The socket table.
    let mut source = crate::live::SocketSource::new();
    match source.snapshot() {
        Ok(s) => checks.push(Check {
            ok: true,
            what: format!(
                "socket table: {} sockets, {} with a visible owner, {} not visible to this user",
                s.sockets.len(),
                s.owners.len(),
                s.unattributed
            ),
            fix: None,
        }),
        Err(e) => checks.push(Check {
            ok: false,
            what: format!("socket table: {e:#}"),
            fix: Some("netvigil needs /proc and netlink sock_diag; in a container, run with --pid=host --network=host".into()),
        }),
    }
    // Interfaces.
    let ifaces = os::linux::afpacket::list_interfaces();
    checks.push(Check {
        ok: !ifaces.is_empty(),
        what: format!(
            "interfaces: {}",
            ifaces
                .iter()
                .map(|(n, i, t)| format!("{n} (#{i}, type {t})"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        fix: ifaces
            .is_empty()
            .then(|| "no interface found under /sys/class/net".to_string()),
    });
    // Ping sockets.
    if let Ok(r) = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range") {
        let range: Vec<u64> = r.split_whitespace().filter_map(|v| v.parse().ok()).collect();
        let on = matches!(range.as_slice(), [lo, hi] if lo <= hi);
        checks.push(Check {
            ok: true,
            what: if on {
                format!("ping sockets allowed for groups {} to {} (net.ipv4.ping_group_range): their owners are named", range[0], range[1])
            } else {
                "ping sockets are off (net.ipv4.ping_group_range): ping then uses raw sockets, whose owner netvigil does not name yet".to_string()
            },
            fix: None,
        });
    }
    let mut missing = 0;
    for c in &checks {
        println!("{} {}", if c.ok { "ok  " } else { "MISS" }, c.what);
        if let Some(f) = &c.fix {
            missing += 1;
            println!("     -> {f}");
        }
    }
    enrichment();
    if missing == 0 {
        println!("\nnetvigil can see everything it knows how to see on this machine.");
    } else {
        println!(
            "\nWithout capture, `netvigil run` still lists connections, their owners and bytes from the socket table."
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Place databases, the tracker list and service names: what was found, and how to get a
/// place database when there is none.
fn enrichment() {
    let found = intel::discover(&intel::default_dirs(None));
    let (places, errors) = found.load(&[]);
    println!("\nplace databases (looked in {}):", {
        let d: Vec<String> = found.dirs.iter().map(|d| d.display().to_string()).collect();
        d.join(", ")
    });
    for (path, _) in places.sources() {
        let origin = found
            .found
            .iter()
            .find(|f| f.path == path)
            .map_or("", |f| f.known.origin);
        println!("ok   {} ({origin})", path.display());
    }
    for e in &errors {
        println!("BAD  {e}");
    }
    if places.is_empty() {
        println!("MISS {}", intel::HOW_TO_GET.replace('\n', "\n     "));
    } else if !found.missing().is_empty() {
        println!(
            "     (no database gives: {}; see docs/enrichment.md)",
            found.missing().join(", ")
        );
    }
    match intel::domains::EASYPRIVACY_PATHS
        .iter()
        .find(|p| std::path::Path::new(p).exists())
    {
        Some(p) => println!("ok   tracker list {p}"),
        None => println!(
            "     no tracker list (optional): apt install webext-ublock-origin-firefox ships EasyPrivacy; \
             the shipped domain table still marks the best-known trackers"
        ),
    }
    let services = intel::ServiceNames::system();
    println!(
        "{} service names: {} ({} entries){}",
        if services.origin == "built-in" {
            "MISS"
        } else {
            "ok  "
        },
        services.origin,
        services.len(),
        if services.origin == "built-in" {
            "; apt install netbase provides /etc/services"
        } else {
            ""
        }
    );
}
