//! Network health for the dashboard: plain parsers of `/proc/net/dev` (interfaces),
//! `/proc/net/snmp` and `/proc/net/netstat` (TCP stack counters), and of `/proc/PID/stat` and
//! `/proc/PID/status` (a program's CPU time and resident memory), plus [`Sampler`], which reads
//! them every few seconds and turns counters into rates.
//!
//! The parsers take text and never panic on any input; the readers return `None` when a file
//! is missing (another system, a process that exited).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Serialize;

/// One network interface as `/proc/net/dev` counts it (totals since boot).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Interface {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_drops: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_drops: u64,
    /// Link speed in Mbit/s from `/sys/class/net/NAME/speed` (`None`: unknown, virtual, down).
    pub speed_mbps: Option<u32>,
    /// Receive and send rates in bytes per second over the last sampling step.
    pub rx_rate: f64,
    pub tx_rate: f64,
}

/// Parses `/proc/net/dev`. Lines that do not have the expected 16 counters are skipped.
pub fn parse_net_dev(text: &str) -> Vec<Interface> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.is_empty() || name.contains('|') {
            continue;
        }
        let nums: Vec<u64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        if nums.len() < 16 {
            continue;
        }
        out.push(Interface {
            name: name.to_string(),
            rx_bytes: nums[0],
            rx_packets: nums[1],
            rx_errors: nums[2],
            rx_drops: nums[3],
            tx_bytes: nums[8],
            tx_packets: nums[9],
            tx_errors: nums[10],
            tx_drops: nums[11],
            ..Interface::default()
        });
    }
    out
}

/// Parses the header/value line pairs of `/proc/net/snmp` and `/proc/net/netstat`
/// (`Tcp: RtoAlgorithm RtoMin ...` then `Tcp: 1 200 ...`) into `"Tcp.RetransSegs" -> value`.
/// A pair whose lengths differ is read as far as both go.
pub fn parse_snmp(text: &str) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(head) = lines.next() {
        let Some(values) = lines.next() else { break };
        let (Some((hp, hnames)), Some((vp, vnums))) = (head.split_once(':'), values.split_once(':')) else {
            continue;
        };
        if hp != vp {
            continue;
        }
        for (name, v) in hnames.split_whitespace().zip(vnums.split_whitespace()) {
            if let Ok(n) = v.parse::<i64>() {
                out.insert(format!("{hp}.{name}"), n);
            }
        }
    }
    out
}

/// The TCP counters the dashboard shows (totals since boot), with where each comes from.
pub const TCP_COUNTERS: [(&str, &str); 12] = [
    ("Tcp.ActiveOpens", "connections this machine opened"),
    ("Tcp.PassiveOpens", "connections this machine accepted"),
    ("Tcp.CurrEstab", "connections established now"),
    ("Tcp.AttemptFails", "connection attempts that failed"),
    ("Tcp.EstabResets", "established connections reset"),
    ("Tcp.OutRsts", "resets sent"),
    ("Tcp.RetransSegs", "segments retransmitted"),
    ("Tcp.InErrs", "segments received with errors"),
    (
        "TcpExt.ListenDrops",
        "incoming connections dropped at a listening socket",
    ),
    ("TcpExt.ListenOverflows", "accept queue overflows"),
    ("TcpExt.TCPTimeouts", "retransmission timeouts"),
    ("TcpExt.TCPLostRetransmit", "retransmissions lost again"),
];

/// CPU time (user + system, clock ticks) from `/proc/PID/stat`.
pub fn parse_pid_stat_ticks(text: &str) -> Option<u64> {
    // The command name is in parentheses and may itself contain ") ".
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 (index 0 here); utime is 14, stime 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime.saturating_add(stime))
}

/// Resident memory in bytes from the `VmRSS:` line of `/proc/PID/status`.
pub fn parse_status_rss(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line["VmRSS:".len()..].split_whitespace().next()?.parse().ok()?;
    Some(kb.saturating_mul(1024))
}

/// What the health panel shows at one moment.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Health {
    /// Milliseconds since the epoch of the sample.
    pub ts_ms: i64,
    pub interfaces: Vec<Interface>,
    /// `"Tcp.RetransSegs" -> total` for [`TCP_COUNTERS`] that this system reports.
    pub tcp: BTreeMap<String, i64>,
    /// The same counters per second over the last step.
    pub tcp_rates: BTreeMap<String, f64>,
    /// Bandwidth over time, all interfaces but loopback: `[ts_ms, rx bytes/s, tx bytes/s]`,
    /// oldest first (at most [`BANDWIDTH_POINTS`]).
    pub bandwidth: Vec<(i64, f64, f64)>,
    /// Where the figures come from (for the help text and for systems without /proc).
    pub source: String,
}

/// Points kept for the bandwidth chart (10 minutes at one sample every 2 s).
pub const BANDWIDTH_POINTS: usize = 300;

/// CPU share and memory of one process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct ProcUsage {
    /// Percent of one CPU over the last sampling step (`None` until two samples).
    pub cpu_pct: Option<f64>,
    pub rss_bytes: Option<u64>,
}

/// Reads the files under a proc root every step and keeps what rates need.
#[derive(Debug)]
pub struct Sampler {
    root: std::path::PathBuf,
    last: Option<(i64, Vec<Interface>, BTreeMap<String, i64>)>,
    bandwidth: std::collections::VecDeque<(i64, f64, f64)>,
    cpu: HashMap<u32, (i64, u64)>,
    /// Clock ticks per second of the times in `/proc/PID/stat` (USER_HZ, asked of the system).
    ticks_per_s: f64,
}

impl Sampler {
    /// A sampler reading `/proc` (tests pass another root with the same layout).
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            last: None,
            bandwidth: std::collections::VecDeque::new(),
            cpu: HashMap::new(),
            ticks_per_s: os::clock_ticks() as f64,
        }
    }

    /// The same sampler with another clock-tick rate (for a `/proc` copied from another system).
    pub fn with_clock_ticks(mut self, ticks_per_s: u64) -> Self {
        self.ticks_per_s = ticks_per_s.max(1) as f64;
        self
    }

    /// One sample at `now_ms`: interfaces, TCP counters, their rates.
    pub fn sample(&mut self, now_ms: i64) -> Health {
        let dev = std::fs::read_to_string(self.root.join("net/dev")).unwrap_or_default();
        let mut interfaces = parse_net_dev(&dev);
        for i in &mut interfaces {
            i.speed_mbps = std::fs::read_to_string(Path::new("/sys/class/net").join(&i.name).join("speed"))
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .and_then(|v| u32::try_from(v).ok())
                .filter(|v| *v > 0);
        }
        let mut all = parse_snmp(&std::fs::read_to_string(self.root.join("net/snmp")).unwrap_or_default());
        all.extend(parse_snmp(
            &std::fs::read_to_string(self.root.join("net/netstat")).unwrap_or_default(),
        ));
        let tcp: BTreeMap<String, i64> = TCP_COUNTERS
            .iter()
            .filter_map(|(k, _)| all.get(*k).map(|v| ((*k).to_string(), *v)))
            .collect();
        let mut tcp_rates = BTreeMap::new();
        if let Some((t0, ifs0, tcp0)) = &self.last {
            let dt = (now_ms - t0) as f64 / 1000.0;
            if dt > 0.0 {
                let (mut rx, mut tx) = (0.0, 0.0);
                for i in &mut interfaces {
                    if let Some(p) = ifs0.iter().find(|p| p.name == i.name) {
                        i.rx_rate = i.rx_bytes.saturating_sub(p.rx_bytes) as f64 / dt;
                        i.tx_rate = i.tx_bytes.saturating_sub(p.tx_bytes) as f64 / dt;
                        if i.name != "lo" {
                            rx += i.rx_rate;
                            tx += i.tx_rate;
                        }
                    }
                }
                for (k, v) in &tcp {
                    if let Some(p) = tcp0.get(k) {
                        tcp_rates.insert(k.clone(), (v - p).max(0) as f64 / dt);
                    }
                }
                self.bandwidth.push_back((now_ms, rx, tx));
                while self.bandwidth.len() > BANDWIDTH_POINTS {
                    self.bandwidth.pop_front();
                }
            }
        }
        self.last = Some((now_ms, interfaces.clone(), tcp.clone()));
        Health {
            ts_ms: now_ms,
            interfaces,
            tcp,
            tcp_rates,
            bandwidth: self.bandwidth.iter().copied().collect(),
            source: format!(
                "{0}/net/dev, {0}/net/snmp, {0}/net/netstat, /sys/class/net/*/speed",
                self.root.display()
            ),
        }
    }

    /// CPU share and memory of `pids` at `now_ms` (forgets pids not asked for).
    pub fn usage(&mut self, pids: &[u32], now_ms: i64) -> HashMap<u32, ProcUsage> {
        let mut out = HashMap::new();
        let mut seen = HashMap::new();
        for &pid in pids {
            let dir = self.root.join(pid.to_string());
            let ticks = std::fs::read_to_string(dir.join("stat"))
                .ok()
                .and_then(|t| parse_pid_stat_ticks(&t));
            let rss = std::fs::read_to_string(dir.join("status"))
                .ok()
                .and_then(|t| parse_status_rss(&t));
            let cpu_pct = match (ticks, self.cpu.get(&pid)) {
                (Some(t), Some((t0, k0))) if now_ms > *t0 => Some(
                    t.saturating_sub(*k0) as f64 / self.ticks_per_s * 100.0 / ((now_ms - t0) as f64 / 1000.0),
                ),
                _ => None,
            };
            if let Some(t) = ticks {
                seen.insert(pid, (now_ms, t));
            }
            out.insert(
                pid,
                ProcUsage {
                    cpu_pct,
                    rss_bytes: rss,
                },
            );
        }
        self.cpu = seen;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DEV: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0: 123456789 9876 1 2 0 0 0 5 987654 5432 3 4 0 0 0 0
";

    #[test]
    fn net_dev_fields() {
        let v = parse_net_dev(DEV);
        assert_eq!(v.len(), 2);
        let e = &v[1];
        assert_eq!(e.name, "eth0");
        assert_eq!(
            (e.rx_bytes, e.rx_packets, e.rx_errors, e.rx_drops),
            (123_456_789, 9876, 1, 2)
        );
        assert_eq!(
            (e.tx_bytes, e.tx_packets, e.tx_errors, e.tx_drops),
            (987_654, 5432, 3, 4)
        );
    }

    #[test]
    fn snmp_pairs() {
        let t = "Ip: Forwarding DefaultTTL\nIp: 1 64\nTcp: RtoAlgorithm RetransSegs OutRsts\nTcp: 1 77 -3\n";
        let m = parse_snmp(t);
        assert_eq!(m.get("Tcp.RetransSegs"), Some(&77));
        assert_eq!(m.get("Tcp.OutRsts"), Some(&-3));
        assert_eq!(m.get("Ip.DefaultTTL"), Some(&64));
    }

    #[test]
    fn pid_stat_with_odd_name() {
        let t = "42 (a) b) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 100 0 0";
        assert_eq!(parse_pid_stat_ticks(t), Some(300));
        assert_eq!(
            parse_status_rss("Name:\tx\nVmRSS:\t  2048 kB\n"),
            Some(2048 * 1024)
        );
    }

    #[test]
    fn sampler_rates_from_a_fake_proc() {
        let dir = std::env::temp_dir().join(format!("nv-web-health-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("net")).unwrap();
        std::fs::write(dir.join("net/dev"), DEV).unwrap();
        std::fs::write(dir.join("net/snmp"), "Tcp: RetransSegs\nTcp: 10\n").unwrap();
        let mut s = Sampler::new(&dir);
        let h0 = s.sample(1_000);
        assert!(h0.bandwidth.is_empty());
        std::fs::write(dir.join("net/dev"), DEV.replace("123456789", "123458789")).unwrap();
        std::fs::write(dir.join("net/snmp"), "Tcp: RetransSegs\nTcp: 30\n").unwrap();
        let h1 = s.sample(3_000);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(h1.bandwidth.len(), 1);
        assert!((h1.bandwidth[0].1 - 1000.0).abs() < 1e-9, "{:?}", h1.bandwidth);
        assert!((h1.tcp_rates["Tcp.RetransSegs"] - 10.0).abs() < 1e-9);
    }

    #[test]
    fn cpu_share_uses_the_clock_tick_rate() {
        let dir = std::env::temp_dir().join(format!("nv-web-cpu-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("42")).unwrap();
        let stat = |utime: u64| format!("42 (x) S 1 42 42 0 -1 0 0 0 0 0 {utime} 0 0 0 20 0 1 0 100 0 0");
        std::fs::write(dir.join("42/stat"), stat(1000)).unwrap();
        // 250 ticks a second (a kernel with USER_HZ 250): 500 ticks over 2 s is one full CPU.
        let mut s = Sampler::new(&dir).with_clock_ticks(250);
        assert_eq!(s.usage(&[42], 1_000)[&42].cpu_pct, None);
        std::fs::write(dir.join("42/stat"), stat(1500)).unwrap();
        let u = s.usage(&[42], 3_000);
        // This system's own rate: the default sampler asks it (100 on the usual Linux ABIs).
        let own = Sampler::new(&dir).ticks_per_s;
        std::fs::remove_dir_all(&dir).unwrap();
        assert!((u[&42].cpu_pct.unwrap() - 100.0).abs() < 1e-9, "{u:?}");
        assert!(own >= 1.0 && (own - os::clock_ticks() as f64).abs() < 1e-9);
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC*") {
            let _ = parse_net_dev(&s);
            let _ = parse_snmp(&s);
            let _ = parse_pid_stat_ticks(&s);
            let _ = parse_status_rss(&s);
        }
    }
}
