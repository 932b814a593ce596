//! Golden tests: the engine reads shared captures (../shared/pcaps), every flow is judged with
//! fixed fake enrichers and fake owners, and the scores, flags, sentences, per-app summaries,
//! digest and alerts are compared with committed files in `tests/golden/judge/`. Regenerate
//! them with `UPDATE_GOLDEN=1 cargo test -p engine --test judge_golden` and read the diff.
//!
//! Also the alert replay test: a run over a capture, save, load, and a second run over the same
//! traffic raises no "new app" or "new remote" alert and repeats no alert id.
//!
//! The fakes are deterministic functions of the address (see `GoldenGeo` ...), and owners are
//! given by protocol: DNS -> systemd-resolved, HTTP -> curl, TLS/QUIC -> firefox, the rest
//! unknown. They are fixtures, not claims about the captures.

mod judge_common;

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;

use engine::enrich::{Category, DomainLabel, DomainLabels, Enrichers, GeoLookup, Place, Rdns, ReverseDns};
use engine::judge::{self, Alert, Alerter, Config, Judge, Period, Rule};
use engine::sockets::ProcessInfo;
use engine::{FlowRecord, Record};
use judge_common::*;

const CAPTURES: [&str; 8] = [
    "ndpi__443-curl.pcap",
    "ndpi__chrome.pcap",
    "ndpi__http_ipv6.pcap",
    "ndpi__quic.pcap",
    "ndpi__stun.pcap",
    "ndpi__synscan.pcap",
    "zeek__wikipedia.pcap",
    "ndpi__1kxun.pcap",
];

fn h(ip: IpAddr) -> u64 {
    let mut x: u64 = 0xcbf2_9ce4_8422_2325;
    for b in ip.to_string().bytes() {
        x ^= u64::from(b);
        x = x.wrapping_mul(0x0000_0100_0000_01b3);
    }
    x
}

/// One of six places by a hash of the address (the sixth: unknown).
struct GoldenGeo;
impl GeoLookup for GoldenGeo {
    fn place(&self, ip: IpAddr) -> Option<Place> {
        if !judge::is_global(ip) {
            return None;
        }
        Some(match h(ip) % 6 {
            0 => place(36459, "GitHub, Inc.", "US"),
            1 => place(20940, "Akamai International B.V.", "SE"),
            2 => place(14061, "DigitalOcean, LLC", "NL"),
            3 => place(16509, "Amazon.com, Inc.", "US"),
            4 => place(24940, "Hetzner Online GmbH", "DE"),
            _ => return None,
        })
    }
}

struct GoldenLabels(Vec<(&'static str, DomainLabel)>);
impl DomainLabels for GoldenLabels {
    fn label(&self, d: &str) -> Option<DomainLabel> {
        self.0
            .iter()
            .filter(|(s, _)| judge::has_suffix(d, s))
            .max_by_key(|(s, _)| s.len())
            .map(|(_, l)| l.clone())
    }
}

/// A third without a name, a third named, a third pending, by a hash of the address.
struct GoldenRdns;
impl ReverseDns for GoldenRdns {
    fn lookup(&self, ip: IpAddr) -> Rdns {
        match (h(ip) >> 8) % 3 {
            0 => Rdns::NoName,
            1 => Rdns::Name(format!("h{}.example.net", h(ip) % 1000)),
            _ => Rdns::Pending,
        }
    }
}

fn labels() -> GoldenLabels {
    use Category::*;
    GoldenLabels(vec![
        ("google.com", label(Search, Some("Google"), false)),
        ("googleapis.com", label(Cloud, Some("Google"), false)),
        ("gstatic.com", label(Cdn, Some("Google"), false)),
        ("doubleclick.net", label(Ads, Some("Google"), true)),
        ("googlesyndication.com", label(Ads, Some("Google"), true)),
        ("google-analytics.com", label(Analytics, Some("Google"), true)),
        ("scorecardresearch.com", label(Analytics, Some("Comscore"), true)),
        ("facebook.com", label(Social, Some("Meta"), false)),
        ("facebook.net", label(Social, Some("Meta"), true)),
        ("fbcdn.net", label(Cdn, Some("Meta"), false)),
        ("wikipedia.org", label(Other, Some("Wikimedia"), false)),
        ("wikimedia.org", label(Cdn, Some("Wikimedia"), false)),
        ("github.com", label(Developer, Some("GitHub"), false)),
        ("akamaihd.net", label(Cdn, Some("Akamai"), false)),
        ("netflix.com", label(Streaming, Some("Netflix"), false)),
        ("nflxvideo.net", label(Streaming, Some("Netflix"), false)),
        ("apple.com", label(Other, Some("Apple"), false)),
        ("microsoft.com", label(Other, Some("Microsoft"), false)),
    ])
}

fn owner(f: &FlowRecord) -> Option<ProcessInfo> {
    match f.app.app_proto {
        Some("dns") => Some(prog("systemd-resolved")),
        Some("http") => Some(prog("curl")),
        Some("tls" | "quic") => Some(prog("firefox")),
        _ => None,
    }
}

fn flows(path: &Path) -> Vec<FlowRecord> {
    read_capture(path)
        .into_iter()
        .filter_map(|r| match r {
            Record::Flow(mut f) => {
                if let Some(p) = owner(&f) {
                    f.process = Some(Box::new(p));
                }
                Some(f)
            }
            _ => None,
        })
        .collect()
}

/// Judges every flow of a capture with `j`; returns the golden text and the alerts.
fn judge_capture(j: &mut Judge, fl: &[FlowRecord]) -> (String, Vec<Alert>) {
    let geo = GoldenGeo;
    let lab = labels();
    let rd = GoldenRdns;
    let e = Enrichers {
        geo: Some(&geo),
        labels: Some(&lab),
        rdns: Some(&rd),
        services: None,
    };
    let mut t = String::new();
    let mut alerts = Vec::new();
    let mut last = 0;
    for f in fl {
        let a = j.flow(f, &e, f.end, &mut alerts);
        last = last.max(f.end);
        let flags: Vec<String> = a
            .flags
            .iter()
            .map(|x| format!("{}+{}", x.kind.as_str(), x.points))
            .collect();
        let _ = writeln!(
            t,
            "flow {}\t{}\t{}\t{}\t{}",
            f.id,
            a.score,
            a.level().as_str(),
            if flags.is_empty() {
                "-".into()
            } else {
                flags.join(",")
            },
            a.explanation
        );
    }
    j.tick(last + 120 * SEC, &mut alerts);
    for s in j.apps.summaries(&j.config) {
        let _ = writeln!(
            t,
            "app {}\t{}\t{}\tprivacy {}\t{}",
            s.app.as_deref().unwrap_or("-"),
            s.score,
            s.level.as_str(),
            s.privacy,
            s.explanation
        );
        for r in &s.privacy_reasons {
            let _ = writeln!(t, "  privacy -{}\t{}", r.points, r.text());
        }
    }
    let _ = writeln!(
        t,
        "digest\t{}",
        judge::digest(&j.apps.digest_facts(Period::Day, &j.config))
    );
    for a in &alerts {
        let _ = writeln!(
            t,
            "alert {}\t{}\t{}\t{}",
            a.id,
            a.severity.as_str(),
            a.rule.as_str(),
            a.reason
        );
    }
    (t, alerts)
}

#[test]
fn explanations_and_scores_match_golden_files() {
    let Some(dir) = shared_pcaps() else { return };
    let gold = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/judge");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for name in CAPTURES {
        let fl = flows(&dir.join(name));
        assert!(!fl.is_empty(), "{name}: no flows");
        let mut j = Judge::new(Config::default());
        let (text, _) = judge_capture(&mut j, &fl);
        let path = gold.join(format!("{name}.txt"));
        if update {
            std::fs::create_dir_all(&gold).unwrap();
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run with UPDATE_GOLDEN=1 to create it", path.display()));
        if want != text {
            let line = want
                .lines()
                .zip(text.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(want.lines().count().min(text.lines().count()));
            failures.push(format!(
                "{name} differs at line {}:\n  want: {}\n  got:  {}",
                line + 1,
                want.lines().nth(line).unwrap_or("<end>"),
                text.lines().nth(line).unwrap_or("<end>")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n(if the change is intended: UPDATE_GOLDEN=1 cargo test -p engine --test judge_golden)",
        failures.join("\n")
    );
}

#[test]
fn a_second_run_over_the_same_traffic_raises_no_new_host_alerts() {
    let Some(dir) = shared_pcaps() else { return };
    let mut fl = Vec::new();
    for name in ["ndpi__chrome.pcap", "zeek__wikipedia.pcap", "ndpi__1kxun.pcap"] {
        fl.extend(flows(&dir.join(name)));
    }
    let mut first = Judge::new(Config::default());
    let (_, a1) = judge_capture(&mut first, &fl);
    let count = |a: &[Alert], r: Rule| a.iter().filter(|x| x.rule == r).count();
    assert!(count(&a1, Rule::NewApp) >= 3, "{}", count(&a1, Rule::NewApp));
    assert!(
        count(&a1, Rule::NewRemote) >= 50,
        "{}",
        count(&a1, Rule::NewRemote)
    );
    let saved = first.alerter.save();
    let mut second = Judge::new(Config::default());
    second.alerter = Alerter::load(&saved).expect("the saved state loads");
    let (_, a2) = judge_capture(&mut second, &fl);
    assert_eq!(count(&a2, Rule::NewApp), 0, "{a2:#?}");
    assert_eq!(count(&a2, Rule::NewRemote), 0, "{a2:#?}");
    let ids: std::collections::HashSet<&str> = a1.iter().map(|a| a.id.as_str()).collect();
    for a in &a2 {
        assert!(!ids.contains(a.id.as_str()), "raised twice: {a:#?}");
    }
    // The same run from scratch gives the same ids.
    let mut again = Judge::new(Config::default());
    let (_, a3) = judge_capture(&mut again, &fl);
    assert_eq!(
        a1.iter().map(|a| &a.id).collect::<Vec<_>>(),
        a3.iter().map(|a| &a.id).collect::<Vec<_>>()
    );
}

/// Cost of judging (assess + explain + apps + alerts) per flow on the shared captures; prints
/// the figure (run with `--release --nocapture` to measure). Asserts only a loose bound.
#[test]
#[allow(clippy::disallowed_methods)] // a measurement: the test reads the clock, the engine does not
fn judging_cost_per_flow() {
    let Some(dir) = shared_pcaps() else { return };
    let mut fl = Vec::new();
    for name in CAPTURES {
        fl.extend(flows(&dir.join(name)));
    }
    let geo = GoldenGeo;
    let lab = labels();
    let rd = GoldenRdns;
    let e = Enrichers {
        geo: Some(&geo),
        labels: Some(&lab),
        rdns: Some(&rd),
        services: None,
    };
    let cfg = Config::default();
    let rounds = 20;
    let start = std::time::Instant::now();
    let mut n = 0u64;
    for _ in 0..rounds {
        for f in &fl {
            let a = judge::assess_flow(f, &e, &cfg);
            n += u64::from(a.score) + a.explanation.len() as u64;
        }
    }
    let assess = start.elapsed().as_nanos() as f64 / (rounds * fl.len()) as f64;
    let start = std::time::Instant::now();
    let mut j = Judge::new(Config::default());
    let mut alerts = Vec::new();
    for r in 0..rounds {
        for f in &fl {
            let now = f.end + r as i64 * 86_400 * SEC;
            n += u64::from(j.flow(f, &e, now, &mut alerts).score);
        }
    }
    let full = start.elapsed().as_nanos() as f64 / (rounds * fl.len()) as f64;
    eprintln!(
        "judge: {} flows x {rounds}: assess+explain {assess:.0} ns/flow, with apps and alerts {full:.0} ns/flow ({n})",
        fl.len()
    );
    assert!(full < 1_000_000.0, "{full} ns per flow");
}
