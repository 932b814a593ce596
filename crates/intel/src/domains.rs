//! Domain -> category, vendor and tracker flag ([`DomainTable`], the [`DomainLabels`] the binary
//! hands to the engine).
//!
//! Three layers, later ones winning for the same suffix: the shipped table
//! (`crates/intel/data/domains.tsv`, compiled in; its format and sources are in
//! docs/enrichment.md), the user's additions from the config, and an optional
//! EasyPrivacy/Adblock-style list whose `||domain^` rules mark domains as trackers.
//!
//! Matching: the longest suffix that ends on a label boundary (`api.github.com` matches
//! `github.com`, `notgithub.com` does not), ASCII case-insensitive, a trailing dot ignored.

use std::collections::HashMap;
use std::collections::HashSet;
use std::path::Path;

use engine::enrich::{Category, DomainLabel, DomainLabels};

use crate::error::{LoadError, LoadErrorKind};

/// The shipped table: `suffix<TAB>category<TAB>vendor<TAB>tracker` (`-` for no vendor; tracker
/// is `tracker` or `-`); `#` starts a comment line.
pub const SHIPPED_TSV: &str = include_str!("../data/domains.tsv");

/// One entry of a table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub category: Category,
    pub vendor: Option<Box<str>>,
    pub tracker: bool,
}

/// A line of the table that does not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableError {
    /// 1-based.
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for TableError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for TableError {}

/// Lower-cases, drops one trailing dot, and checks the characters of a domain or suffix.
pub fn normalize(domain: &str) -> Option<String> {
    let d = domain.trim().strip_suffix('.').unwrap_or(domain.trim());
    if d.is_empty()
        || d.len() > 253
        || d.starts_with('.')
        || d.contains("..")
        || !d
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return None;
    }
    Some(d.to_ascii_lowercase())
}

/// Parses one table line (`None` for comments and blank lines).
pub fn parse_line(line: &str) -> Result<Option<(String, Entry)>, String> {
    let line = line.trim_end_matches('\r');
    if line.trim().is_empty() || line.trim_start().starts_with('#') {
        return Ok(None);
    }
    let f: Vec<&str> = line.split('\t').collect();
    let [suffix, category, vendor, tracker] = f.as_slice() else {
        return Err(format!("expected 4 tab-separated fields, found {}", f.len()));
    };
    let suffix = normalize(suffix).ok_or_else(|| format!("{suffix:?} is not a domain suffix"))?;
    let category = Category::parse(category.trim()).ok_or_else(|| {
        let names: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
        format!("unknown category {category:?} (known: {})", names.join(", "))
    })?;
    let vendor = match vendor.trim() {
        "" | "-" => None,
        v => Some(v.into()),
    };
    let tracker = match tracker.trim() {
        "tracker" | "yes" | "1" => true,
        "-" | "no" | "0" | "" => false,
        t => return Err(format!("tracker field {t:?} is neither `tracker` nor `-`")),
    };
    Ok(Some((
        suffix,
        Entry {
            category,
            vendor,
            tracker,
        },
    )))
}

/// Parses a whole table; a suffix given twice is an error.
pub fn parse_table(text: &str) -> Result<Vec<(String, Entry)>, TableError> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        match parse_line(line) {
            Ok(Some((s, e))) => {
                if !seen.insert(s.clone()) {
                    return Err(TableError {
                        line: i + 1,
                        message: format!("{s} appears twice"),
                    });
                }
                out.push((s, e));
            }
            Ok(None) => {}
            Err(message) => return Err(TableError { line: i + 1, message }),
        }
    }
    Ok(out)
}

/// What reading a tracker list found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrackerListStats {
    /// `||domain^` rules taken (also with only `$third-party`).
    pub domains: usize,
    /// Rules of other kinds (paths, wildcards, exceptions, cosmetic filters, rules limited to
    /// some pages), not used.
    pub ignored: usize,
    /// Comment and header lines.
    pub comments: usize,
}

/// The usual places of the EasyPrivacy list shipped by Debian's uBlock Origin packages
/// (`webext-ublock-origin-firefox`, `webext-ublock-origin-chromium`).
pub const EASYPRIVACY_PATHS: &[&str] = &[
    "/usr/share/chromium/extensions/ublock-origin/assets/thirdparties/easylist/easyprivacy.txt",
    "/usr/share/mozilla/extensions/{ec8030f7-c20a-464f-9b0e-13a3a9e97384}/uBlock0@raymondhill.net/assets/thirdparties/easylist/easyprivacy.txt",
    "/usr/share/webext/ublock-origin/assets/thirdparties/easylist/easyprivacy.txt",
];

/// The domains of an Adblock-style list's `||domain^` rules (see [`TrackerListStats`]).
pub fn parse_tracker_list(text: &str) -> (Vec<String>, TrackerListStats) {
    let mut stats = TrackerListStats::default();
    let mut out = Vec::new();
    for line in text.lines() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('!') || l.starts_with('[') {
            stats.comments += 1;
            continue;
        }
        let domain = l.strip_prefix("||").and_then(|rest| {
            let (d, opts) = rest.split_once('^')?;
            let opts_ok = opts.is_empty() || matches!(opts, "$third-party" | "$3p" | "$all");
            opts_ok.then_some(d)
        });
        match domain.and_then(normalize) {
            // A domain needs a dot; `||google.*` style rules were cut by normalize.
            Some(d) if d.contains('.') => {
                out.push(d);
                stats.domains += 1;
            }
            _ => stats.ignored += 1,
        }
    }
    (out, stats)
}

/// Domain labels: shipped table, user additions, tracker list.
#[derive(Clone, Debug)]
pub struct DomainTable {
    entries: HashMap<Box<str>, Entry>,
    trackers: HashSet<Box<str>>,
    tracker_stats: TrackerListStats,
}

impl DomainTable {
    /// The shipped table alone.
    pub fn shipped() -> DomainTable {
        // The table is checked by a test; a bad line could only come from editing it, and is
        // skipped rather than stopping the program.
        let entries = SHIPPED_TSV
            .lines()
            .filter_map(|l| parse_line(l).ok().flatten())
            .map(|(s, e)| (s.into_boxed_str(), e))
            .collect();
        DomainTable {
            entries,
            trackers: HashSet::new(),
            tracker_stats: TrackerListStats::default(),
        }
    }

    /// No entry at all (only user additions and lists).
    pub fn empty() -> DomainTable {
        DomainTable {
            entries: HashMap::new(),
            trackers: HashSet::new(),
            tracker_stats: TrackerListStats::default(),
        }
    }

    /// Adds or replaces entries (the user's, from the config): `(suffix, category, vendor,
    /// tracker)`. A suffix that is not a domain name is returned as an error.
    pub fn add_user<I>(&mut self, additions: I) -> Result<(), String>
    where
        I: IntoIterator<Item = (String, Category, Option<String>, bool)>,
    {
        for (suffix, category, vendor, tracker) in additions {
            let s = normalize(&suffix).ok_or_else(|| format!("{suffix:?} is not a domain suffix"))?;
            self.entries.insert(
                s.into_boxed_str(),
                Entry {
                    category,
                    vendor: vendor.map(String::into_boxed_str),
                    tracker,
                },
            );
        }
        Ok(())
    }

    /// Marks the domains of an Adblock-style list (text) as trackers.
    pub fn add_tracker_list(&mut self, text: &str) -> TrackerListStats {
        let (domains, stats) = parse_tracker_list(text);
        self.trackers
            .extend(domains.into_iter().map(String::into_boxed_str));
        self.tracker_stats.domains += stats.domains;
        self.tracker_stats.ignored += stats.ignored;
        self.tracker_stats.comments += stats.comments;
        stats
    }

    /// Reads an Adblock-style list from a file (see [`EASYPRIVACY_PATHS`]).
    pub fn load_tracker_list(&mut self, path: &Path) -> Result<TrackerListStats, LoadError> {
        let bytes = std::fs::read(path).map_err(|e| LoadError::new(path, LoadErrorKind::Io(e)))?;
        let stats = self.add_tracker_list(&String::from_utf8_lossy(&bytes));
        if stats.domains == 0 {
            return Err(LoadError::new(path, LoadErrorKind::Empty));
        }
        Ok(stats)
    }

    /// Number of suffixes in the table (shipped and user's).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No suffix in the table.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Counts from the tracker lists read so far.
    pub fn tracker_stats(&self) -> TrackerListStats {
        self.tracker_stats
    }

    /// The entry of the longest matching suffix, and whether a tracker list names the domain
    /// or a parent of it.
    fn find(&self, domain: &str) -> (Option<&Entry>, bool) {
        let Some(d) = normalize(domain) else {
            return (None, false);
        };
        let mut entry = None;
        let mut tracker = false;
        let mut rest = d.as_str();
        loop {
            if entry.is_none() {
                entry = self.entries.get(rest);
            }
            tracker = tracker || self.trackers.contains(rest);
            if entry.is_some() && (tracker || self.trackers.is_empty()) {
                break;
            }
            match rest.split_once('.') {
                Some((_, parent)) => rest = parent,
                None => break,
            }
        }
        (entry, tracker)
    }
}

impl DomainLabels for DomainTable {
    fn label(&self, domain: &str) -> Option<DomainLabel> {
        match self.find(domain) {
            (Some(e), listed) => Some(DomainLabel {
                category: e.category,
                vendor: e.vendor.as_deref().map(str::to_string),
                tracker: e.tracker || listed,
            }),
            (None, true) => Some(DomainLabel {
                category: Category::Ads,
                vendor: None,
                tracker: true,
            }),
            (None, false) => None,
        }
    }
}
