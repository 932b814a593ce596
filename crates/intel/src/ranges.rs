//! Address-range tables from text files: the ip-location-db ASN CSV
//! (`ip_range_start,ip_range_end,autonomous_system_number,autonomous_system_organization`, also
//! its 3-column country CSV `ip_range_start,ip_range_end,country_code`) and the iptoasn TSV
//! (`range_start<TAB>range_end<TAB>AS_number<TAB>country_code<TAB>AS_description`, AS 0 = not
//! routed). Both come as dotted/colon addresses or as numbers (the `-num` and `-u32` variants).
//!
//! Ranges are kept in two sorted vectors (IPv4 as `u32`, IPv6 as `u128`) of 12 and 32 bytes per
//! range, each pointing into a de-duplicated record list, and looked up by binary search. A
//! malformed line is skipped and counted; a file where more than 1% of the lines (and more than
//! ten) are bad, or with no good line at all, is refused with the first bad line named.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use crate::error::{LoadError, LoadErrorKind};

/// What one range says.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RangeRecord {
    pub asn: Option<u32>,
    pub org: Option<Box<str>>,
    pub country: Option<[u8; 2]>,
}

#[derive(Clone, Copy, Debug)]
struct Span<T> {
    start: T,
    end: T,
    record: u32,
}

/// Counts from loading a range file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RangeStats {
    /// Ranges kept (IPv4 and IPv6).
    pub ranges: usize,
    /// Distinct records they point to.
    pub records: usize,
    /// Lines that did not parse (skipped).
    pub bad_lines: usize,
    /// iptoasn lines with AS 0 ("Not routed"), skipped.
    pub not_routed: usize,
    /// Ranges that start inside the previous one (the input should have none; where it has, a
    /// lookup finds the range with the greatest start at or below the address).
    pub overlaps: usize,
}

/// Which text layout a range file has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextFormat {
    /// ip-location-db CSV: `start,end,asn,org` or `start,end,country`.
    IpLocationCsv,
    /// iptoasn TSV: `start<TAB>end<TAB>asn<TAB>country<TAB>description`.
    IptoasnTsv,
}

/// A sorted, searchable table of address ranges.
#[derive(Clone, Debug, Default)]
pub struct RangeDb {
    v4: Vec<Span<u32>>,
    v6: Vec<Span<u128>>,
    records: Vec<RangeRecord>,
    stats: RangeStats,
}

impl RangeDb {
    /// Reads and parses a file (`.csv` or `.tsv` text, not compressed).
    pub fn load(path: &Path, format: TextFormat) -> Result<RangeDb, LoadError> {
        let bytes = std::fs::read(path).map_err(|e| LoadError::new(path, LoadErrorKind::Io(e)))?;
        let text = String::from_utf8_lossy(&bytes);
        let v6_hint = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.contains("v6"));
        Self::parse(&text, format, v6_hint).map_err(|kind| LoadError::new(path, kind))
    }

    /// Parses text. `v6_hint`: numeric addresses are IPv6 (a `-ipv6-num` file); otherwise a
    /// number up to `u32::MAX` is taken as IPv4.
    pub fn parse(text: &str, format: TextFormat, v6_hint: bool) -> Result<RangeDb, LoadErrorKind> {
        let mut b = Builder::default();
        let mut lines = 0usize;
        let mut first_bad: Option<(usize, String)> = None;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim_end_matches('\r');
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            lines += 1;
            let parsed = match format {
                TextFormat::IpLocationCsv => parse_csv_line(line, v6_hint),
                TextFormat::IptoasnTsv => parse_tsv_line(line, v6_hint),
            };
            match parsed {
                Ok(Some((lo, hi, rec))) => b.push(lo, hi, rec),
                Ok(None) => b.stats.not_routed += 1,
                Err(msg) => {
                    // A header line is not an error.
                    if i == 0 && (trimmed.starts_with("ip_range_start") || trimmed.starts_with("range_start"))
                    {
                        lines -= 1;
                        continue;
                    }
                    b.stats.bad_lines += 1;
                    if first_bad.is_none() {
                        first_bad = Some((i + 1, msg));
                    }
                }
            }
        }
        let bad = b.stats.bad_lines;
        let good = b.v4.len() + b.v6.len();
        if let Some((line, message)) = first_bad
            && (good == 0 || (bad > 10 && bad * 100 > lines))
        {
            return Err(LoadErrorKind::Text {
                line,
                message,
                bad,
                lines,
            });
        }
        if good == 0 && b.stats.not_routed == 0 {
            return Err(LoadErrorKind::Empty);
        }
        Ok(b.finish())
    }

    /// The record of the range holding `ip`.
    pub fn get(&self, ip: IpAddr) -> Option<&RangeRecord> {
        let rec = match ip.to_canonical() {
            IpAddr::V4(a) => find(&self.v4, u32::from(a)),
            IpAddr::V6(a) => find(&self.v6, u128::from(a)),
        }?;
        self.records.get(rec as usize)
    }

    /// Counts from loading.
    pub fn stats(&self) -> RangeStats {
        self.stats
    }

    /// No range at all.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Whether any record has an ASN, a country.
    pub(crate) fn provides(&self) -> (bool, bool) {
        let asn = self.records.iter().any(|r| r.asn.is_some());
        let country = self.records.iter().any(|r| r.country.is_some());
        (asn, country)
    }
}

fn find<T: Ord + Copy>(v: &[Span<T>], ip: T) -> Option<u32> {
    let i = v.partition_point(|r| r.start <= ip);
    let r = v.get(i.checked_sub(1)?)?;
    (ip <= r.end).then_some(r.record)
}

#[derive(Default)]
struct Builder {
    v4: Vec<Span<u32>>,
    v6: Vec<Span<u128>>,
    records: Vec<RangeRecord>,
    index: HashMap<RangeRecord, u32>,
    stats: RangeStats,
}

enum Addr {
    V4(u32),
    V6(u128),
}

impl Builder {
    fn push(&mut self, lo: Addr, hi: Addr, rec: RangeRecord) {
        let next = self.records.len() as u32;
        let record = *self.index.entry(rec.clone()).or_insert_with(|| {
            self.records.push(rec);
            next
        });
        match (lo, hi) {
            (Addr::V4(start), Addr::V4(end)) => self.v4.push(Span { start, end, record }),
            (Addr::V6(start), Addr::V6(end)) => self.v6.push(Span { start, end, record }),
            // Checked by the line parsers.
            _ => self.stats.bad_lines += 1,
        }
    }

    fn finish(mut self) -> RangeDb {
        fn sort<T: Ord + Copy>(v: &mut Vec<Span<T>>) -> usize {
            v.sort_unstable_by_key(|s| (s.start, s.end));
            v.shrink_to_fit();
            v.windows(2).filter(|w| w[1].start <= w[0].end).count()
        }
        self.stats.overlaps = sort(&mut self.v4) + sort(&mut self.v6);
        self.stats.ranges = self.v4.len() + self.v6.len();
        self.stats.records = self.records.len();
        self.records.shrink_to_fit();
        RangeDb {
            v4: self.v4,
            v6: self.v6,
            records: self.records,
            stats: self.stats,
        }
    }
}

type Line = Option<(Addr, Addr, RangeRecord)>;

fn parse_addr(s: &str, v6_hint: bool) -> Result<Addr, String> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(match ip {
            IpAddr::V4(a) => Addr::V4(a.into()),
            IpAddr::V6(a) => Addr::V6(a.into()),
        });
    }
    match s.parse::<u128>() {
        Ok(n) if !v6_hint && n <= u128::from(u32::MAX) => Ok(Addr::V4(n as u32)),
        Ok(n) => Ok(Addr::V6(n)),
        Err(_) => Err(format!("{:?} is not an IP address", truncate(s))),
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(40) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn parse_range(lo: &str, hi: &str, v6_hint: bool) -> Result<(Addr, Addr), String> {
    let lo = parse_addr(lo, v6_hint)?;
    let hi = parse_addr(hi, v6_hint)?;
    let ordered = match (&lo, &hi) {
        (Addr::V4(a), Addr::V4(b)) => a <= b,
        (Addr::V6(a), Addr::V6(b)) => a <= b,
        _ => return Err("the range mixes IPv4 and IPv6".into()),
    };
    if !ordered {
        return Err("the range ends before it starts".into());
    }
    Ok((lo, hi))
}

fn parse_asn(s: &str) -> Result<u32, String> {
    let s = s.trim();
    let digits = s.strip_prefix("AS").or_else(|| s.strip_prefix("as")).unwrap_or(s);
    digits
        .parse::<u32>()
        .map_err(|_| format!("{:?} is not an AS number", truncate(s)))
}

fn parse_country(s: &str) -> Result<Option<[u8; 2]>, String> {
    let s = s.trim();
    match s.as_bytes() {
        [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
            Ok(Some([a.to_ascii_uppercase(), b.to_ascii_uppercase()]))
        }
        // iptoasn writes "None" for unknown; "ZZ" and "--" are common placeholders elsewhere.
        _ if s.is_empty() || s == "None" || s == "--" => Ok(None),
        _ => Err(format!("{:?} is not a two-letter country code", truncate(s))),
    }
}

fn org(s: &str) -> Option<Box<str>> {
    let s = s.trim();
    (!s.is_empty() && s != "Not routed").then(|| s.into())
}

/// Unquotes an RFC 4180 field that runs to the end of the line.
fn unquote_rest(s: &str) -> Result<String, String> {
    let Some(inner) = s.strip_prefix('"') else {
        return Ok(s.to_string());
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '"' {
            match chars.next() {
                Some('"') => out.push('"'),
                None => return Ok(out),
                Some(_) => return Err("text after a closing quote".into()),
            }
        } else {
            out.push(c);
        }
    }
    Err("unterminated quoted field".into())
}

fn parse_csv_line(line: &str, v6_hint: bool) -> Result<Line, String> {
    let mut parts = line.splitn(4, ',');
    let (Some(lo), Some(hi), Some(third)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("expected at least 3 comma-separated fields".into());
    };
    let (lo, hi) = parse_range(lo, hi, v6_hint)?;
    let rec = match parts.next() {
        // start,end,asn,org (org may contain commas, quoted or not).
        Some(rest) => RangeRecord {
            asn: Some(parse_asn(third)?),
            org: org(&unquote_rest(rest.trim())?),
            country: None,
        },
        // start,end,country
        None => RangeRecord {
            country: Some(
                parse_country(third)?
                    .ok_or_else(|| format!("{:?} is not a country code", truncate(third)))?,
            ),
            ..RangeRecord::default()
        },
    };
    if rec.asn == Some(0) {
        return Ok(None);
    }
    Ok(Some((lo, hi, rec)))
}

fn parse_tsv_line(line: &str, v6_hint: bool) -> Result<Line, String> {
    let mut parts = line.splitn(5, '\t');
    let (Some(lo), Some(hi), Some(asn), Some(cc)) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("expected 5 tab-separated fields".into());
    };
    let (lo, hi) = parse_range(lo, hi, v6_hint)?;
    let asn = parse_asn(asn)?;
    if asn == 0 {
        return Ok(None);
    }
    let rec = RangeRecord {
        asn: Some(asn),
        org: parts.next().and_then(org),
        country: parse_country(cc)?,
    };
    Ok(Some((lo, hi, rec)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn csv_asn_lookup_and_boundaries() {
        let text = "ip_range_start,ip_range_end,autonomous_system_number,autonomous_system_organization\n\
                    192.0.2.0,192.0.2.255,64500,Example One\n\
                    198.51.100.0,198.51.100.127,64501,\"Example, Two \"\"Inc\"\"\"\n\
                    2001:db8::,2001:db8:ffff:ffff:ffff:ffff:ffff:ffff,64502,Doc Six\n";
        let db = RangeDb::parse(text, TextFormat::IpLocationCsv, false).unwrap();
        assert_eq!(db.stats().ranges, 3);
        assert_eq!(db.stats().bad_lines, 0);
        let r = db.get(ip("192.0.2.0")).unwrap();
        assert_eq!((r.asn, r.org.as_deref()), (Some(64500), Some("Example One")));
        assert_eq!(db.get(ip("192.0.2.255")).unwrap().asn, Some(64500));
        assert!(db.get(ip("192.0.3.0")).is_none());
        assert!(db.get(ip("192.0.1.255")).is_none());
        assert_eq!(
            db.get(ip("198.51.100.5")).unwrap().org.as_deref(),
            Some("Example, Two \"Inc\"")
        );
        assert!(db.get(ip("198.51.100.128")).is_none());
        assert_eq!(db.get(ip("2001:db8:1::1")).unwrap().asn, Some(64502));
        // IPv4-mapped IPv6 is looked up as IPv4.
        assert_eq!(db.get(ip("::ffff:192.0.2.9")).unwrap().asn, Some(64500));
    }

    #[test]
    fn csv_numeric_and_country() {
        let text = "3221225984,3221226239,64500,Num\n";
        let db = RangeDb::parse(text, TextFormat::IpLocationCsv, false).unwrap();
        assert_eq!(db.get(ip("192.0.2.77")).unwrap().asn, Some(64500));
        let text = "192.0.2.0,192.0.2.255,jp\n";
        let db = RangeDb::parse(text, TextFormat::IpLocationCsv, false).unwrap();
        assert_eq!(db.get(ip("192.0.2.1")).unwrap().country, Some(*b"JP"));
    }

    #[test]
    fn tsv_not_routed_and_none_country() {
        let text = "1.0.0.0\t1.0.0.255\t13335\tUS\tCLOUDFLARENET\n\
                    1.0.1.0\t1.0.3.255\t0\tNone\tNot routed\n\
                    203.0.113.0\t203.0.113.255\t64510\tNone\tNo Country\n";
        let db = RangeDb::parse(text, TextFormat::IptoasnTsv, false).unwrap();
        assert_eq!(db.stats().not_routed, 1);
        let r = db.get(ip("1.0.0.1")).unwrap();
        assert_eq!(
            (r.asn, r.country, r.org.as_deref()),
            (Some(13335), Some(*b"US"), Some("CLOUDFLARENET"))
        );
        assert!(db.get(ip("1.0.2.0")).is_none());
        assert_eq!(db.get(ip("203.0.113.1")).unwrap().country, None);
    }

    #[test]
    fn bad_files_name_the_line() {
        let mut text = String::from("192.0.2.0,192.0.2.255,64500,ok\n");
        for _ in 0..20 {
            text.push_str("garbage line\n");
        }
        match RangeDb::parse(&text, TextFormat::IpLocationCsv, false) {
            Err(LoadErrorKind::Text { line, bad, .. }) => assert_eq!((line, bad), (2, 20)),
            other => panic!("{other:?}"),
        }
        // A single bad line among good ones is skipped and counted.
        let text = "192.0.2.0,192.0.2.255,64500,ok\n192.0.2.9,192.0.2.1,1,reversed\n";
        let db = RangeDb::parse(text, TextFormat::IpLocationCsv, false).unwrap();
        assert_eq!(db.stats().bad_lines, 1);
        assert!(matches!(
            RangeDb::parse("", TextFormat::IptoasnTsv, false),
            Err(LoadErrorKind::Empty)
        ));
        assert!(matches!(
            RangeDb::parse("1.2.3.4,::1,5,x\n", TextFormat::IpLocationCsv, false),
            Err(LoadErrorKind::Text { .. })
        ));
    }
}
