//! No tool parser panics, whatever the text: arbitrary strings, arbitrary bytes (decoded
//! lossily, as the tool runner does), and recorded lines cut, spliced and salted with the
//! characters these formats give meaning to.

use os::tools::codesign::parse_codesign;
use os::tools::lsof::parse_lsof;
use os::tools::netstat::{parse_netstat_bsd, parse_netstat_windows, parse_tcp_stats};
use os::tools::nettop::parse_nettop;
use os::tools::ps::{parse_ps, parse_ps_args, parse_tasklist_csv};
use os::tools::{parse_count, parse_ip, tcp_state_from_name};
use proptest::prelude::*;
use std::path::Path;

fn all_parsers(text: &str) {
    let lines = text.split(['\n', '\0']).count();
    let p = parse_lsof(text);
    assert!(p.entries.len() + p.skipped <= lines);
    let n = parse_netstat_bsd(text);
    assert!(n.entries.len() + n.skipped <= text.lines().count());
    let w = parse_netstat_windows(text);
    assert!(w.entries.len() + w.skipped <= text.lines().count());
    for r in &w.entries {
        assert!(r.pid.is_some());
    }
    parse_tcp_stats(text);
    let t = parse_nettop(text);
    assert!(t.entries.len() + t.skipped <= text.lines().count());
    parse_ps(text);
    parse_ps_args(text);
    parse_tasklist_csv(text);
    parse_codesign(text).package();
    for word in text.split_whitespace().take(50) {
        parse_count(word);
        parse_ip(word);
        tcp_state_from_name(word);
    }
}

fn corpus_lines() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tools");
    let mut lines = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt" || e == "csv"))
        .collect();
    entries.sort();
    for path in entries {
        let text = std::fs::read_to_string(&path).unwrap();
        lines.extend(text.lines().map(str::to_string));
    }
    assert!(lines.len() > 200, "the fixtures are missing");
    lines
}

const SALT: &[&str] = &[
    ":",
    ".",
    ",",
    "[",
    "]",
    "%",
    "*",
    "->",
    "=",
    "\"",
    "(",
    ")",
    " ",
    "\t",
    "\0",
    "\n",
    "\r",
    "p",
    "f",
    "n",
    "T",
    "ST=",
    "QR=",
    "99999999999999999999",
    "0x",
    "é",
    "\u{202f}",
    "::",
    "255.255.255.255",
    "-1",
    "LISTEN",
    "tcp46",
    "UDP",
    "time",
    "Authority=",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_strings(text in any::<String>()) {
        all_parsers(&text);
    }

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        all_parsers(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn mutated_recorded_lines(
        picks in proptest::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), 0usize..4, any::<prop::sample::Index>()), 1..12)
    ) {
        let lines = corpus_lines();
        let mut text = String::new();
        for (line, cut, op, salt) in picks {
            let l = &lines[line.index(lines.len())];
            let at = cut.index(l.len() + 1);
            let at = (0..=at).rev().find(|&i| l.is_char_boundary(i)).unwrap_or(0);
            let s = SALT[salt.index(SALT.len())];
            match op {
                0 => text.push_str(&l[..at]),
                1 => { text.push_str(&l[..at]); text.push_str(s); text.push_str(&l[at..]); }
                2 => { text.push_str(&l[at..]); text.push_str(s); }
                _ => text.push_str(l),
            }
            text.push('\n');
        }
        all_parsers(&text);
    }
}
