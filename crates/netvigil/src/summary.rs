//! The `table` format: a summary for a person, built from the records as they stream by, in
//! bounded memory (hosts past a cap are folded into one "other hosts" row).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::Path;

use engine::flow::FlowCounters;
use engine::record::{FlowRecord, write_rfc3339};
use engine::{Engine, Frame, Record};

use crate::units::{bytes, count, duration};

const MAX_HOSTS: usize = 65_536;

pub struct FileSummary {
    name: String,
    format: String,
    links: BTreeMap<&'static str, u64>,
    packets: u64,
    bytes: u64,
    first: Option<i64>,
    last: Option<i64>,
    counters: FlowCounters,
    anomalies: Vec<(String, u64)>,
    notes: Vec<String>,
}

impl FileSummary {
    pub fn new(path: &Path) -> Self {
        Self {
            name: path.display().to_string(),
            format: String::new(),
            links: BTreeMap::new(),
            packets: 0,
            bytes: 0,
            first: None,
            last: None,
            counters: FlowCounters::default(),
            anomalies: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn frame(&mut self, f: &Frame<'_>) {
        self.packets += 1;
        self.bytes += u64::from(f.orig_len);
        *self.links.entry(f.link.name()).or_insert(0) += 1;
        self.first = Some(self.first.map_or(f.ts, |t| t.min(f.ts)));
        self.last = Some(self.last.map_or(f.ts, |t| t.max(f.ts)));
    }

    pub fn finish(&mut self, read: &os::ReadSummary, engine: &Engine) {
        self.format = match read.format {
            wire::capture::Format::Pcap { nanos: true, .. } => "pcap (ns)".into(),
            wire::capture::Format::Pcap { .. } => "pcap".into(),
            wire::capture::Format::PcapNg => "pcapng".into(),
        };
        self.counters = engine.flow_counters();
        self.anomalies = engine.anomalies().sorted();
        if let Some(n) = read.truncated_tail {
            self.notes.push(format!("last record cut short ({n} bytes)"));
        }
        if let Some(e) = &read.error {
            self.notes.push(format!("stopped early: {e}"));
        }
    }
}

#[derive(Default, Clone, Copy)]
struct Totals {
    flows: u64,
    packets: u64,
    bytes: u64,
}

#[derive(Default, Clone, Copy)]
struct HostTotals {
    flows: u64,
    sent: u64,
    received: u64,
}

pub struct Summary {
    top: usize,
    files: Vec<FileSummary>,
    protocols: BTreeMap<String, Totals>,
    hosts: HashMap<IpAddr, HostTotals>,
    other_hosts: HostTotals,
    top_flows: BinaryHeap<Reverse<(u64, u64, FlowKeyed)>>,
    seq: u64,
    /// Application protocols: flows and bytes.
    apps: BTreeMap<String, Totals>,
    /// Names of servers (SNI, Host, DNS): flows and bytes, capped like hosts.
    domains: HashMap<String, Totals>,
    /// Message records by type (dns, tls, http ...).
    messages: BTreeMap<&'static str, u64>,
    /// Scores and sentences (off with `--no-judge`).
    judging: Option<crate::judging::Judging>,
    /// Flows per level (clean, low, medium, high).
    levels: [u64; 4],
    /// The highest-scoring flows: (score, order, sentence, flags).
    worst: BinaryHeap<Reverse<Flagged>>,
}

/// A flow with a score above zero: (score, order, sentence, the flags' reasons).
type Flagged = (u32, u64, String, Vec<String>);

/// A flow record ordered by nothing but its place in the heap's tuple.
struct FlowKeyed(FlowRecord);
impl PartialEq for FlowKeyed {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for FlowKeyed {}
impl PartialOrd for FlowKeyed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for FlowKeyed {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl Summary {
    pub fn new(top: usize) -> Self {
        Self {
            top,
            files: Vec::new(),
            protocols: BTreeMap::new(),
            hosts: HashMap::new(),
            other_hosts: HostTotals::default(),
            top_flows: BinaryHeap::new(),
            seq: 0,
            apps: BTreeMap::new(),
            domains: HashMap::new(),
            messages: BTreeMap::new(),
            judging: None,
            levels: [0; 4],
            worst: BinaryHeap::new(),
        }
    }

    /// Judges every flow: a count per level and the highest scores with their reasons.
    pub fn with_judging(mut self, j: crate::judging::Judging) -> Self {
        self.judging = Some(j);
        self
    }

    pub fn add_file(&mut self, f: FileSummary) {
        self.files.push(f);
    }

    pub fn record(&mut self, r: &Record) {
        let Record::Flow(f) = r else {
            *self.messages.entry(r.type_name()).or_insert(0) += 1;
            return;
        };
        let app = match (f.app.app_proto, f.app.app_by) {
            (Some(a), engine::record::AppBy::Content) => a.to_string(),
            (Some(a), engine::record::AppBy::Port) => format!("{a}?"),
            (None, _) => "unknown".to_string(),
        };
        let t = self.apps.entry(app).or_default();
        t.flows += 1;
        t.packets += f.to_server.packets + f.to_client.packets;
        t.bytes += f.total_bytes();
        if let Some(d) = &f.app.domain {
            let full = self.domains.len() >= MAX_HOSTS;
            if let Some(t) = self.domains.get_mut(d) {
                t.flows += 1;
                t.bytes += f.total_bytes();
            } else if !full {
                self.domains.insert(
                    d.clone(),
                    Totals {
                        flows: 1,
                        packets: 0,
                        bytes: f.total_bytes(),
                    },
                );
            }
        }
        let t = self.protocols.entry(f.l4_name()).or_default();
        t.flows += 1;
        t.packets += f.to_server.packets + f.to_client.packets;
        t.bytes += f.total_bytes();
        for (ip, sent, received) in [
            (f.client.ip, f.to_server.bytes, f.to_client.bytes),
            (f.server.ip, f.to_client.bytes, f.to_server.bytes),
        ] {
            let full = self.hosts.len() >= MAX_HOSTS;
            let h = match self.hosts.get_mut(&ip) {
                Some(h) => h,
                None if full => &mut self.other_hosts,
                None => self.hosts.entry(ip).or_default(),
            };
            h.flows += 1;
            h.sent += sent;
            h.received += received;
        }
        if let Some(a) = self.judging.as_mut().and_then(|j| j.assess(r, None)) {
            self.levels[a.level() as usize] += 1;
            if a.score > 0 {
                let flags = a
                    .flags
                    .iter()
                    .filter(|f| f.points > 0)
                    .map(|f| format!("+{} {}", f.points, f.why))
                    .collect();
                self.worst
                    .push(Reverse((a.score, u64::MAX - self.seq, a.explanation, flags)));
                if self.worst.len() > self.top {
                    self.worst.pop();
                }
            }
        }
        // Keep the `top` largest flows; ties go to the earlier one.
        self.seq += 1;
        self.top_flows.push(Reverse((
            f.total_bytes(),
            u64::MAX - self.seq,
            FlowKeyed(f.clone()),
        )));
        if self.top_flows.len() > self.top {
            self.top_flows.pop();
        }
    }

    pub fn write(&mut self, w: &mut impl Write) -> io::Result<()> {
        for f in &self.files {
            let links: Vec<String> = f
                .links
                .iter()
                .map(|(l, n)| format!("{l} {}", count(*n)))
                .collect();
            write!(
                w,
                "{}: {}, {} packets, {}",
                f.name,
                f.format,
                count(f.packets),
                bytes(f.bytes)
            )?;
            if let (Some(a), Some(b)) = (f.first, f.last) {
                let mut s = String::new();
                write_rfc3339(&mut s, a);
                write!(
                    w,
                    ", from {} over {}",
                    &s[..19].replace('T', " "),
                    duration(b - a)
                )?;
            }
            if !links.is_empty() {
                write!(w, " [{}]", links.join(", "))?;
            }
            writeln!(w)?;
            let c = f.counters;
            writeln!(
                w,
                "  flows: {} created = {} ended idle or reused + {} evicted (table full) + {} at end of file + {} live",
                count(c.created),
                count(c.expired),
                count(c.evicted),
                count(c.flushed),
                count(c.live)
            )?;
            for n in &f.notes {
                writeln!(w, "  note: {n}")?;
            }
        }
        if self.protocols.is_empty() {
            writeln!(w, "\nNo IP traffic.")?;
        } else {
            writeln!(w, "\nProtocols             flows    packets        bytes")?;
            let mut protos: Vec<_> = self.protocols.iter().collect();
            protos.sort_by(|a, b| b.1.bytes.cmp(&a.1.bytes).then_with(|| a.0.cmp(b.0)));
            for (p, t) in protos {
                writeln!(
                    w,
                    "  {p:<16} {:>9} {:>10} {:>12}",
                    count(t.flows),
                    count(t.packets),
                    bytes(t.bytes)
                )?;
            }
            writeln!(
                w,
                "\nTop hosts (by bytes)                        flows         sent     received"
            )?;
            let mut hosts: Vec<_> = self.hosts.iter().collect();
            hosts.sort_by(|a, b| {
                (b.1.sent + b.1.received)
                    .cmp(&(a.1.sent + a.1.received))
                    .then_with(|| a.0.cmp(b.0))
            });
            for (ip, h) in hosts.iter().take(self.top) {
                writeln!(
                    w,
                    "  {:<40} {:>8} {:>12} {:>12}",
                    ip.to_string(),
                    count(h.flows),
                    bytes(h.sent),
                    bytes(h.received)
                )?;
            }
            if self.hosts.len() > self.top {
                writeln!(
                    w,
                    "  ... and {} more hosts",
                    count((self.hosts.len() - self.top) as u64)
                )?;
            }
            if self.other_hosts.flows > 0 {
                writeln!(
                    w,
                    "  (past {} hosts, the rest are counted together: {} flows)",
                    count(MAX_HOSTS as u64),
                    count(self.other_hosts.flows)
                )?;
            }
            writeln!(w, "\nTop flows (by bytes)")?;
            let mut flows: Vec<_> = std::mem::take(&mut self.top_flows).into_vec();
            flows.sort_by(|a, b| b.0.0.cmp(&a.0.0).then(b.0.1.cmp(&a.0.1)));
            for Reverse((_, _, FlowKeyed(f))) in flows {
                let ep = |e: &engine::record::Endpoint| match e.ip {
                    IpAddr::V6(ip) => format!("[{ip}]:{}", e.port),
                    IpAddr::V4(ip) => format!("{ip}:{}", e.port),
                };
                let name = f
                    .app
                    .domain
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default();
                let app = f.app.app_proto.map(|a| format!("/{a}")).unwrap_or_default();
                writeln!(
                    w,
                    "  {:<5} {} -> {}{name}  {}  {} pkts, {} up / {} down, {}{}",
                    format!("{}{app}", f.l4_name()),
                    ep(&f.client),
                    ep(&f.server),
                    f.state.as_str(),
                    count(f.to_server.packets + f.to_client.packets),
                    bytes(f.to_server.bytes),
                    bytes(f.to_client.bytes),
                    duration(f.end - f.start),
                    if f.client_by == engine::record::ClientBy::PortGuess {
                        " (direction guessed)"
                    } else {
                        ""
                    }
                )?;
            }
        }
        if self.judging.is_some() && self.levels.iter().sum::<u64>() > 0 {
            let [clean, low, medium, high] = self.levels;
            writeln!(
                w,
                "\nJudgement: {} flows clean, {} low, {} medium, {} high (scores and flags: docs/records.md)",
                count(clean),
                count(low),
                count(medium),
                count(high)
            )?;
            let mut worst: Vec<_> = std::mem::take(&mut self.worst).into_vec();
            worst.sort_by(|a, b| b.0.0.cmp(&a.0.0).then(b.0.1.cmp(&a.0.1)));
            for Reverse((score, _, sentence, flags)) in worst {
                let level = engine::judge::Level::from_score(score).as_str();
                writeln!(w, "  {score:>2} {level:<6} {sentence}")?;
                for f in flags {
                    writeln!(w, "            {f}")?;
                }
            }
        }
        let mut anomalies: BTreeMap<&str, u64> = BTreeMap::new();
        for f in &self.files {
            for (a, n) in &f.anomalies {
                *anomalies.entry(a).or_insert(0) += n;
            }
        }
        if anomalies.is_empty() {
            writeln!(w, "\nAnomalies: none")?;
        } else {
            writeln!(w, "\nAnomalies (malformed or unusual packets, counted by kind)")?;
            let mut v: Vec<_> = anomalies.into_iter().collect();
            v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
            for (a, n) in v {
                writeln!(w, "  {a:<40} {:>8}", count(n))?;
            }
        }
        Ok(())
    }
}
