//! The history commands on real captures: `read --store`, then `history`, `alerts`, `export`
//! and `purge` against the SQLite file they made, compared with what `read` prints directly.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::*;

const CAPTURES: [&str; 2] = [
    "ndpi__1kxun.pcap",
    "zeek__quic__firefox-102.13.0esr-blog-cloudflare-com.pcap",
];

fn captures(dir: &Path) -> Vec<PathBuf> {
    CAPTURES.iter().map(|c| dir.join(c)).collect()
}

fn args<'a>(fixed: &[&'a str], paths: &'a [PathBuf]) -> Vec<&'a str> {
    let mut v: Vec<&str> = fixed.to_vec();
    v.extend(paths.iter().map(|p| p.to_str().unwrap()));
    v
}

fn lines(s: &str) -> BTreeSet<String> {
    s.lines().map(str::to_string).collect()
}

#[test]
fn store_then_query_export_purge() {
    let Some(shared) = shared_pcaps() else { return };
    let files = captures(&shared);
    let data = temp_dir("history-cli");
    let d = data.to_str().unwrap();

    // Nothing stored yet: the message says how to get history.
    let o = run(&["history", "--data-dir", d]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no history yet at") && stderr(&o).contains("netvigil read --store"),
        "{}",
        stderr(&o)
    );
    assert!(!data.join("netvigil.db").exists(), "a query created the database");

    let o = run(&args(
        &["read", "--store", "--data-dir", d, "--format", "csv"],
        &files,
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("stored"), "{}", stderr(&o));
    let read_csv = stdout(&o);
    let direct = run(&args(&["read", "--format", "jsonl", "--no-judge"], &files));
    assert!(direct.status.success());
    let direct_jsonl = stdout(&direct);
    let direct_flows: BTreeSet<String> = direct_jsonl
        .lines()
        .filter(|l| l.starts_with("{\"type\":\"flow\""))
        .map(str::to_string)
        .collect();
    assert!(direct_flows.len() > 100);

    // history --json: exactly the flow records `read` printed.
    let o = run(&["history", "--data-dir", d, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(lines(&stdout(&o)), direct_flows);

    // export jsonl: every record (flows and messages), the same bytes as read's jsonl.
    let o = run(&["export", "--format", "jsonl", "--data-dir", d]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(lines(&stdout(&o)), lines(&direct_jsonl));

    // export csv: the same rows as read --format csv.
    let o = run(&["export", "--format", "csv", "--data-dir", d]);
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = stdout(&o);
    assert_eq!(csv.lines().next(), read_csv.lines().next(), "header");
    let rows = |s: &str| -> BTreeSet<String> { s.lines().skip(1).map(str::to_string).collect() };
    assert_eq!(rows(&csv), rows(&read_csv));
    let out_file = data.join("flows.csv");
    let o = run(&[
        "export",
        "--format",
        "csv",
        "--data-dir",
        d,
        "-o",
        out_file.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    assert_eq!(std::fs::read_to_string(&out_file).unwrap(), csv);

    // A host filter: the domain and its subdomains, and nothing else.
    let o = run(&["history", "--data-dir", d, "--json", "--host", "google.com"]);
    let google: Vec<String> = stdout(&o).lines().map(str::to_string).collect();
    let domain = |l: &str| -> Option<String> {
        let at = l.find("\"domain\":\"")? + "\"domain\":\"".len();
        Some(l[at..].split('"').next()?.to_string())
    };
    let want = direct_flows
        .iter()
        .filter_map(|l| domain(l))
        .filter(|d| d.eq_ignore_ascii_case("google.com") || d.to_ascii_lowercase().ends_with(".google.com"))
        .count();
    assert!(want > 0);
    assert_eq!(google.len(), want);
    // The table form names the domain and says when there is more.
    let o = run(&["history", "--data-dir", d, "--limit", "3"]);
    assert!(o.status.success());
    let t = stdout(&o);
    assert!(t.starts_with("START (UTC)"), "{t}");
    assert_eq!(t.lines().count(), 1 + 3 + 1, "{t}");
    assert!(t.contains("--limit N for more"));
    // Time filters: the captures are from years ago.
    let o = run(&["history", "--data-dir", d, "--json", "--since", "30d"]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), "");
    let o = run(&["history", "--data-dir", d, "--json", "--until", "2000-01-01"]);
    assert_eq!(stdout(&o), "");
    let o = run(&[
        "history",
        "--data-dir",
        d,
        "--json",
        "--since",
        "2000-01-01T00:00:00Z",
    ]);
    assert_eq!(lines(&stdout(&o)), direct_flows);
    // Bad arguments name the problem.
    let o = run(&["history", "--data-dir", d, "--since", "last tuesday"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("'last tuesday'") && stderr(&o).contains("RFC 3339"),
        "{}",
        stderr(&o)
    );
    let o = run(&["purge", "--data-dir", d, "--all", "--app", "curl"]);
    assert_eq!(o.status.code(), Some(2));
    // Alerts: none stored from a plain read.
    let o = run(&["alerts", "--data-dir", d]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("no alerts match"));
    // pcapng without samples: a valid empty capture and a note.
    let pcap = data.join("samples.pcapng");
    let o = run(&[
        "export",
        "--format",
        "pcapng",
        "--data-dir",
        d,
        "-o",
        pcap.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("off by default"));
    let bytes = std::fs::read(&pcap).unwrap();
    assert_eq!(&bytes[..4], &[0x0a, 0x0d, 0x0d, 0x0a]);

    // Purge one host: its flows go, the others stay, sizes are printed.
    let o = run(&["purge", "--data-dir", d, "--host", "google.com"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let p = stdout(&o);
    assert!(p.contains(&format!("removed {} flows", google.len())), "{p}");
    assert!(p.contains("database size") && p.contains("->"), "{p}");
    let o = run(&["history", "--data-dir", d, "--json", "--host", "google.com"]);
    assert_eq!(stdout(&o), "");
    let o = run(&["history", "--data-dir", d, "--json"]);
    assert_eq!(stdout(&o).lines().count(), direct_flows.len() - google.len());
    let db = data.join("netvigil.db");
    let bytes = std::fs::read(&db).unwrap();
    assert!(
        !bytes.windows(b"google.com".len()).any(|w| w == b"google.com"),
        "the purged host is still in the file"
    );

    // Purge everything: the file shrinks and history is empty.
    let before = std::fs::metadata(&db).unwrap().len();
    let o = run(&["purge", "--data-dir", d, "--all"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let after = std::fs::metadata(&db).unwrap().len();
    assert!(after < before / 2, "{before} -> {after}");
    let o = run(&["history", "--data-dir", d]);
    assert!(stdout(&o).contains("no flows match"), "{}", stdout(&o));
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn foreign_file_in_the_data_dir_is_refused_and_kept() {
    let data = temp_dir("history-foreign");
    let db = data.join("netvigil.db");
    std::fs::write(&db, "my shopping list\n").unwrap();
    for cmd in [
        vec!["history", "--data-dir", data.to_str().unwrap()],
        vec!["purge", "--all", "--data-dir", data.to_str().unwrap()],
    ] {
        let o = run(&cmd);
        assert_eq!(o.status.code(), Some(2));
        let e = stderr(&o);
        assert!(
            e.contains("is not a netvigil database") && e.contains(db.to_str().unwrap()),
            "{e}"
        );
    }
    assert_eq!(std::fs::read_to_string(&db).unwrap(), "my shopping list\n");
    let _ = std::fs::remove_dir_all(&data);
}

/// `read --store --sample-bytes N`: the first payload bytes of each flow direction are stored
/// sealed (never in clear on disk) and come back as packets from `export --format pcapng`.
#[test]
fn samples_from_a_capture_come_back_as_packets() {
    let Some(shared) = shared_pcaps() else { return };
    let cap = shared.join("ndpi__1kxun.pcap");
    let data = temp_dir("history-samples");
    let d = data.to_str().unwrap();
    let o = run(&[
        "read",
        "--store",
        "--sample-bytes",
        "48",
        "--data-dir",
        d,
        cap.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let key = std::fs::metadata(data.join("samples.key")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(key.permissions().mode() & 0o777, 0o600);

    let out = data.join("samples.pcapng");
    let o = run(&[
        "export",
        "--format",
        "pcapng",
        "--data-dir",
        d,
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = std::fs::read(&out).unwrap();
    let capture = std::fs::read(&cap).unwrap();
    let mut db_files = Vec::new();
    for e in std::fs::read_dir(&data).unwrap() {
        let p = e.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("netvigil.db")
        {
            db_files.extend(std::fs::read(p).unwrap());
        }
    }
    let mut r = wire::capture::SliceReader::new(&bytes).unwrap();
    let mut packets = 0;
    let mut http = 0;
    while let Some(p) = r.next_packet() {
        let p = p.unwrap();
        packets += 1;
        // Ethernet + IPv4/IPv6 + TCP (20) or UDP (8): the sample is what follows.
        let ip = &p.data[14..];
        let (l4, proto) = if ip[0] >> 4 == 4 {
            (&ip[usize::from(ip[0] & 15) * 4..], ip[9])
        } else {
            (&ip[40..], ip[6])
        };
        let payload = if proto == 6 { &l4[20..] } else { &l4[8..] };
        assert!(
            !payload.is_empty() && payload.len() <= 48,
            "{} bytes",
            payload.len()
        );
        // The sample's first bytes are in the capture as they were sent.
        let head = &payload[..payload.len().min(8)];
        assert!(
            capture.windows(head.len()).any(|w| w == head),
            "sample not from the capture"
        );
        if payload.starts_with(b"GET /") && payload.len() >= 24 {
            http += 1;
            assert!(
                !db_files.windows(24).any(|w| w == &payload[..24]),
                "plaintext payload found in the database files"
            );
        }
    }
    assert!(packets > 100, "{packets} packets");
    assert!(http > 10, "{http} HTTP requests among the samples");
    let _ = std::fs::remove_dir_all(&data);
}
