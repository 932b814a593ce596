//! The shipped domain table, user additions, tracker lists, and the no-panic property of the
//! text parsers (domain table, tracker list, range CSV/TSV, /etc/services).

mod support;

use std::collections::HashSet;
use std::path::Path;

use engine::enrich::{Category, DomainLabel, DomainLabels, Services};
use intel::domains::{EASYPRIVACY_PATHS, SHIPPED_TSV, parse_line, parse_table, parse_tracker_list};
use intel::{DomainTable, RangeDb, ServiceNames, TextFormat};
use proptest::prelude::*;

#[test]
fn every_shipped_line_parses_and_no_suffix_repeats() {
    let mut seen = HashSet::new();
    let mut entries = 0;
    for (i, line) in SHIPPED_TSV.lines().enumerate() {
        match parse_line(line) {
            Ok(Some((suffix, _))) => {
                assert!(
                    seen.insert(suffix.clone()),
                    "line {}: {suffix} appears twice",
                    i + 1
                );
                assert!(suffix.contains('.'), "line {}: {suffix} is a bare TLD", i + 1);
                entries += 1;
            }
            Ok(None) => {}
            Err(e) => panic!("domains.tsv line {}: {e}: {line:?}", i + 1),
        }
    }
    assert!(entries >= 300, "only {entries} entries");
    assert_eq!(parse_table(SHIPPED_TSV).unwrap().len(), entries);
    assert_eq!(DomainTable::shipped().len(), entries);
    // Every category but `other` is used.
    let used: HashSet<Category> = parse_table(SHIPPED_TSV)
        .unwrap()
        .into_iter()
        .map(|(_, e)| e.category)
        .collect();
    for c in Category::ALL {
        assert!(
            c == Category::Other || used.contains(&c),
            "no entry for {}",
            c.as_str()
        );
    }
}

#[test]
fn duplicate_and_bad_lines_are_errors() {
    let e = parse_table("a.com\tcdn\t-\t-\nb.com\tcdn\t-\t-\nA.com.\tads\t-\ttracker\n").unwrap_err();
    assert_eq!(e.line, 3);
    assert!(e.message.contains("a.com appears twice"));
    let e = parse_table("a.com\tcdnx\t-\t-\n").unwrap_err();
    assert!(e.to_string().contains("unknown category \"cdnx\""), "{e}");
    assert!(parse_line("a.com\tcdn\t-").is_err());
    assert!(parse_line("a..com\tcdn\t-\t-").is_err());
    assert!(parse_line("a.com\tcdn\t-\tmaybe").is_err());
}

fn label(t: &DomainTable, d: &str) -> Option<(Category, Option<String>, bool)> {
    t.label(d).map(
        |DomainLabel {
             category,
             vendor,
             tracker,
         }| (category, vendor, tracker),
    )
}

#[test]
fn longest_suffix_on_label_boundaries() {
    let t = DomainTable::shipped();
    let gh = Some((Category::Developer, Some("GitHub".to_string()), false));
    assert_eq!(label(&t, "github.com"), gh);
    assert_eq!(label(&t, "API.GitHub.com."), gh);
    assert_eq!(label(&t, "notgithub.com"), None);
    assert_eq!(label(&t, "com"), None);
    assert_eq!(label(&t, ""), None);
    assert_eq!(label(&t, "."), None);
    // githubassets.com is its own suffix (cdn), not github.com.
    assert_eq!(label(&t, "github.githubassets.com").unwrap().0, Category::Cdn);
    // Longest wins: analytics.google.com is analytics, www.google.com search.
    assert_eq!(
        label(&t, "x.analytics.google.com").unwrap().0,
        Category::Analytics
    );
    assert!(label(&t, "x.analytics.google.com").unwrap().2);
    assert_eq!(label(&t, "www.google.com").unwrap().0, Category::Search);
    let dc = label(&t, "stats.g.doubleclick.net").unwrap();
    assert_eq!((dc.0, dc.2), (Category::Ads, true));
    assert_eq!(
        label(&t, "ssl.google-analytics.com").unwrap().0,
        Category::Analytics
    );
    assert_eq!(
        label(&t, "security.debian.org").unwrap().1.as_deref(),
        Some("Debian")
    );
    assert_eq!(
        label(&t, "cdn.steamstatic.com").unwrap().1.as_deref(),
        Some("Valve")
    );
    assert_eq!(label(&t, "archive.ubuntu.com").unwrap().0, Category::OsUpdate);
}

#[test]
fn user_additions_override_the_shipped_table() {
    let mut t = DomainTable::shipped();
    t.add_user([
        (
            "github.com".to_string(),
            Category::Productivity,
            Some("My Work".to_string()),
            false,
        ),
        ("corp.example".to_string(), Category::Cloud, None, false),
        (
            "track.corp.example.".to_string(),
            Category::Analytics,
            Some("Corp".to_string()),
            true,
        ),
    ])
    .unwrap();
    assert_eq!(
        label(&t, "api.github.com"),
        Some((Category::Productivity, Some("My Work".into()), false))
    );
    assert_eq!(label(&t, "a.corp.example"), Some((Category::Cloud, None, false)));
    assert_eq!(
        label(&t, "x.track.corp.example"),
        Some((Category::Analytics, Some("Corp".into()), true))
    );
    let err = t
        .add_user([("bad domain".to_string(), Category::Cloud, None, false)])
        .unwrap_err();
    assert!(err.contains("bad domain"));
}

#[test]
fn tracker_list_rules() {
    let list = "[Adblock Plus 2.0]\n! Title: test\n||tracker.example^\n||third.example^$third-party\n\
                ||paged.example^$domain=foo.com\n@@||allowed.example^\n||google.*/url?$ping\n\
                /ads/banner.\n##.ad-box\n||cdn.example/path.js\n||Upper.Example.^\n||nodot^\n";
    let (domains, stats) = parse_tracker_list(list);
    assert_eq!(domains, vec!["tracker.example", "third.example", "upper.example"]);
    assert_eq!((stats.domains, stats.ignored, stats.comments), (3, 7, 2));

    let mut t = DomainTable::shipped();
    t.add_tracker_list(list);
    assert_eq!(label(&t, "a.tracker.example"), Some((Category::Ads, None, true)));
    assert_eq!(label(&t, "tracker.example.org"), None);
    assert_eq!(label(&t, "paged.example"), None);
    // A shipped entry that a list names keeps its category and becomes a tracker.
    t.add_tracker_list("||sentry.io^\n");
    assert_eq!(
        label(&t, "o1.ingest.sentry.io"),
        Some((Category::Analytics, Some("Sentry".into()), true))
    );
    assert_eq!(t.tracker_stats().domains, 4);
}

#[test]
fn tracker_list_file_errors_name_the_file() {
    let dir = support::TempDir::new("trackers");
    let p = dir.path().join("empty.txt");
    std::fs::write(&p, "! nothing\n").unwrap();
    let e = DomainTable::empty()
        .load_tracker_list(&p)
        .unwrap_err()
        .to_string();
    assert!(e.contains("empty.txt") && e.contains("no usable entry"), "{e}");
    let e = DomainTable::empty()
        .load_tracker_list(Path::new("/nonexistent/easyprivacy.txt"))
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("/nonexistent/easyprivacy.txt: cannot read it")
    );
}

/// Runs on the real list when Debian's `webext-ublock-origin-firefox` or `-chromium` is
/// installed; says so and returns otherwise.
#[test]
fn debian_easyprivacy_list_if_installed() {
    let Some(path) = EASYPRIVACY_PATHS.iter().map(Path::new).find(|p| p.exists()) else {
        eprintln!("no EasyPrivacy list installed (apt install webext-ublock-origin-firefox); skipped");
        return;
    };
    let mut t = DomainTable::shipped();
    let stats = t.load_tracker_list(path).unwrap();
    assert!(stats.domains > 10_000, "{stats:?}");
    assert!(t.label("www.google-analytics.com").unwrap().tracker);
}

#[test]
fn etc_services_if_present() {
    // Debian's netbase package provides /etc/services; the built-in table stands in otherwise.
    let s = ServiceNames::system();
    assert_eq!(s.name(6, 22), Some("ssh"));
    assert_eq!(s.name(6, 443), Some("https"));
    assert_eq!(s.name(17, 53), Some("domain"));
}

proptest! {
    #[test]
    fn text_parsers_never_panic(text in "\\PC{0,300}") {
        let _ = parse_table(&text);
        let _ = parse_tracker_list(&text);
        let _ = ServiceNames::parse(&text);
        let _ = RangeDb::parse(&text, TextFormat::IpLocationCsv, false);
        let _ = RangeDb::parse(&text, TextFormat::IptoasnTsv, true);
        let t = DomainTable::shipped();
        let _ = t.label(&text);
    }

    #[test]
    fn range_parsers_never_panic_on_near_valid_lines(
        lines in proptest::collection::vec(
            "[0-9a-f:.]{0,20}[,\t][0-9a-f:.]{0,20}[,\t](AS)?[0-9]{0,11}[,\t][A-Za-z\"]{0,3}[,\t]?[ -~]{0,12}",
            0..20,
        ),
        v6 in any::<bool>(),
    ) {
        let text = lines.join("\n");
        for f in [TextFormat::IpLocationCsv, TextFormat::IptoasnTsv] {
            if let Ok(db) = RangeDb::parse(&text, f, v6) {
                let _ = db.get("192.0.2.1".parse().unwrap());
                let _ = db.get("2001:db8::1".parse().unwrap());
                prop_assert!(db.stats().ranges + db.stats().not_routed > 0);
            }
        }
    }

    /// Every range parsed from well-formed lines is found at both of its ends.
    #[test]
    fn ranges_are_found_at_their_ends(mut starts in proptest::collection::btree_set(0u32..u32::MAX - 1000, 1..50)) {
        let starts: Vec<u32> = std::mem::take(&mut starts).into_iter().collect();
        let mut text = String::new();
        let mut expect = Vec::new();
        for (i, w) in starts.windows(2).enumerate() {
            let end = (w[0] + 500).min(w[1] - 1);
            text.push_str(&format!("{}\t{}\t{}\tUS\tOrg {i}\n", std::net::Ipv4Addr::from(w[0]), std::net::Ipv4Addr::from(end), i + 1));
            expect.push((w[0], end, i as u32 + 1));
        }
        prop_assume!(!expect.is_empty());
        let db = RangeDb::parse(&text, TextFormat::IptoasnTsv, false).unwrap();
        for (s, e, asn) in expect {
            for a in [s, e] {
                prop_assert_eq!(db.get(std::net::Ipv4Addr::from(a).into()).unwrap().asn, Some(asn));
            }
            if let Some(after) = e.checked_add(1) {
                let r = db.get(std::net::Ipv4Addr::from(after).into()).map(|r| r.asn);
                prop_assert!(r != Some(Some(asn)));
            }
        }
    }
}
