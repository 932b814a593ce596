//! Values written as text in the configuration: durations (`"10m"`, `"1h30m"`, `"250ms"`),
//! sizes (`"1GiB"`, `"500MB"`), rate limits (`"5/10m"`) and times (RFC 3339, `2025-06-01T12:00:00Z`),
//! parsed and printed back in the same form.

use std::time::Duration;

/// At most `count` alerts per `per`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub count: u32,
    pub per: Duration,
}

impl RateLimit {
    /// `"5/10m"`: at least 1 alert per a non-zero duration.
    pub fn parse(s: &str) -> Option<Self> {
        let (n, d) = s.split_once('/')?;
        let count: u32 = n.trim().parse().ok().filter(|&c| c > 0)?;
        let per = parse_duration(d.trim())?;
        (!per.is_zero()).then_some(Self { count, per })
    }
}

impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.count, format_duration(self.per))
    }
}

const UNITS: [(&str, u64); 6] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
    ("", 0),
];

/// `"90s"`, `"10m"`, `"1h30m"`, `"7d"`, `"250ms"`, `"0"` (units d h m s ms; whole numbers).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(Duration::ZERO);
    }
    if s.is_empty() {
        return None;
    }
    let mut rest = s;
    let mut total_ms: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let ulen = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..ulen];
        rest = &rest[ulen..];
        let (_, ms) = UNITS.iter().find(|(u, ms)| *u == unit && *ms > 0)?;
        total_ms = total_ms.checked_add(n.checked_mul(*ms)?)?;
    }
    Some(Duration::from_millis(total_ms))
}

/// The shortest text [`parse_duration`] reads back as `d` (milliseconds precision).
pub fn format_duration(d: Duration) -> String {
    let mut ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return "0".into();
    }
    let mut out = String::new();
    for (u, size) in UNITS {
        if size == 0 {
            break;
        }
        if ms >= size {
            out.push_str(&(ms / size).to_string());
            out.push_str(u);
            ms %= size;
        }
    }
    out
}

const SIZES: [(&str, u64); 9] = [
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("TB", 1_000_000_000_000),
    ("GB", 1_000_000_000),
    ("MB", 1_000_000),
    ("kB", 1_000),
    ("B", 1),
];

/// `"1GiB"`, `"500MB"`, `"64KiB"`, `"1000"` (bytes).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let n: u64 = s[..digits].parse().ok()?;
    let unit = s[digits..].trim();
    if unit.is_empty() {
        return Some(n);
    }
    let (_, mult) = SIZES.iter().find(|(u, _)| u.eq_ignore_ascii_case(unit))?;
    n.checked_mul(*mult)
}

/// The largest exact unit: `1073741824` -> `"1GiB"`.
pub fn format_size(n: u64) -> String {
    for (u, size) in SIZES {
        if n >= size && n.is_multiple_of(size) && size > 1 {
            return format!("{}{u}", n / size);
        }
    }
    n.to_string()
}

/// RFC 3339 with an offset: `2025-06-01T12:00:00Z`, `2025-06-01 14:00:00.5+02:00`; nanoseconds
/// since the epoch. A time without an offset is refused (ambiguous).
pub fn parse_time(s: &str) -> Option<i64> {
    let b = s.trim().as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = b.get(r)?;
        if t.iter().all(u8::is_ascii_digit) {
            std::str::from_utf8(t).ok()?.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d, h, mi, sec) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos: i64 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let frac = &b[start..i];
        if frac.is_empty() {
            return None;
        }
        for k in 0..9 {
            nanos = nanos * 10 + frac.get(k).map_or(0, |c| i64::from(c - b'0'));
        }
    }
    let offset_min: i64 = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        c @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let m = oh * 60 + om;
            if *c == b'-' { -m } else { m }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec.min(59) - offset_min * 60;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// `2025-06-01T12:00:00Z` (UTC; fractional seconds only when there are any).
pub fn format_time(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let frac = ns.rem_euclid(1_000_000_000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let mut s = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    if frac != 0 {
        let f = format!("{frac:09}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for (s, ms) in [
            ("10m", 600_000),
            ("1h30m", 5_400_000),
            ("250ms", 250),
            ("7d", 604_800_000),
            ("0", 0),
            ("90s", 90_000),
        ] {
            assert_eq!(parse_duration(s), Some(Duration::from_millis(ms)), "{s}");
        }
        for bad in [
            "soon",
            "",
            "10",
            "m",
            "10x",
            "-5s",
            "1.5h",
            "99999999999999999999d",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        for ms in [1u64, 999, 1000, 61_000, 5_400_000, 86_400_000 * 365, 3_723_004] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse_duration(&format_duration(d)), Some(d));
        }
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("500MB"), Some(500_000_000));
        assert_eq!(parse_size("64 kib"), Some(65_536));
        assert_eq!(parse_size("1000"), Some(1000));
        assert_eq!(parse_size("1 zB"), None);
        assert_eq!(parse_size("GiB"), None);
        assert_eq!(parse_size("99999999999TiB"), None);
        for n in [0u64, 1, 1000, 1 << 30, 3 * (1 << 20), 1_500_000, 12345] {
            assert_eq!(parse_size(&format_size(n)), Some(n), "{n}");
        }
    }

    #[test]
    fn rate_limits() {
        let r = RateLimit::parse("5/10m").unwrap();
        assert_eq!((r.count, r.per), (5, Duration::from_secs(600)));
        assert_eq!(r.to_string(), "5/10m");
        for bad in ["0/1m", "5/0", "5", "x/1m", "5/soon"] {
            assert_eq!(RateLimit::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_time("2025-06-01T12:00:00Z"),
            Some(1_748_779_200_000_000_000)
        );
        assert_eq!(
            parse_time("2025-06-01T14:00:00+02:00"),
            Some(1_748_779_200_000_000_000)
        );
        assert_eq!(
            parse_time("2025-06-01 12:00:00.5Z"),
            Some(1_748_779_200_500_000_000)
        );
        for bad in [
            "2025-06-01T12:00:00",
            "2025-02-30T00:00:00Z",
            "tomorrow",
            "2025-06-01T25:00:00Z",
            "",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
        for ns in [
            0i64,
            1_748_779_200_000_000_000,
            951_782_400_123_000_000,
            -86_400_000_000_000,
        ] {
            assert_eq!(parse_time(&format_time(ns)), Some(ns), "{}", format_time(ns));
        }
    }
}
