//! Process lists: `ps -eo pid,ppid,uid,user,lstart,comm`, `ps -eo pid,args` (macOS, BSD,
//! Linux procps) and Windows `tasklist /fo csv /nh`.
//!
//! `ps` pads its columns with spaces; `lstart` is five words (`Mon Jan  8 09:15:02 2024`) and
//! the last column (`comm`, `args`) is the rest of the line, spaces and all (macOS prints the
//! executable's whole path as `comm`: `/Applications/Google Chrome.app/Contents/MacOS/Google
//! Chrome`). netvigil runs ps with `LC_ALL=C TZ=UTC` (see [`PS_ENV`]) so that month and day
//! names are English and `lstart` is UTC; the start time is then exact to the second.

use super::{Parsed, days_from_civil};

/// Environment for every ps call: English names, times in UTC.
pub const PS_ENV: &[(&str, &str)] = &[("LC_ALL", "C"), ("TZ", "UTC")];
/// `ps` arguments for [`parse_ps`] (`-ww`: never cut lines to a terminal width).
pub const PS_ARGS: &[&str] = &["-ww", "-eo", "pid,ppid,uid,user,lstart,comm"];
/// `ps` arguments for [`parse_ps_args`].
pub const PS_ARGS_ARGS: &[&str] = &["-ww", "-eo", "pid,args"];

/// One process as `ps` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PsProcess {
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub user: String,
    /// Start time, nanoseconds since the Unix epoch (lstart read as UTC); `None` when the date
    /// did not parse.
    pub start_time: Option<i64>,
    /// The `comm` column: on macOS the executable's path, elsewhere the short name.
    pub comm: String,
}

/// Splits off `n` whitespace-separated words; returns them and the rest of the line (leading
/// blanks removed, inner spaces kept).
fn words(line: &str, n: usize) -> Option<(Vec<&str>, &str)> {
    let mut out = Vec::with_capacity(n);
    let mut rest = line;
    for _ in 0..n {
        rest = rest.trim_start();
        if rest.is_empty() {
            return None;
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        out.push(&rest[..end]);
        rest = &rest[end..];
    }
    Some((out, rest.trim()))
}

/// Parses `ps -eo pid,ppid,uid,user,lstart,comm`. The header (and any line whose first word is
/// not a pid) is ignored; malformed rows are counted in `skipped`.
pub fn parse_ps(text: &str) -> Parsed<PsProcess> {
    let mut out = Parsed::default();
    for line in text.lines() {
        let Some(first) = line.split_whitespace().next() else {
            continue;
        };
        if first.parse::<u32>().is_err() {
            continue; // header
        }
        let row = (|| {
            let (w, comm) = words(line, 9)?;
            Some(PsProcess {
                pid: w[0].parse().ok()?,
                ppid: w[1].parse().ok()?,
                uid: w[2].parse().ok()?,
                user: w[3].to_string(),
                start_time: lstart(&w[4..9]),
                comm: comm.to_string(),
            })
        })();
        match row {
            Some(p) if !p.comm.is_empty() => out.entries.push(p),
            _ => out.skipped += 1,
        }
    }
    out
}

/// `Mon Jan  8 09:15:02 2024` (already split in words), read as UTC, in nanoseconds.
fn lstart(w: &[&str]) -> Option<i64> {
    let [_weekday, month, day, time, year] = w else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = MONTHS.iter().position(|x| x.eq_ignore_ascii_case(month))? as u32 + 1;
    let d: u32 = day.parse().ok()?;
    let y: i64 = year.parse().ok()?;
    if !(1..=31).contains(&d) || !(1970..=9999).contains(&y) {
        return None;
    }
    let mut hms = time.split(':');
    let h: i64 = hms.next()?.parse().ok()?;
    let mi: i64 = hms.next()?.parse().ok()?;
    let s: i64 = hms.next()?.parse().ok()?;
    if hms.next().is_some() || h > 23 || mi > 59 || s > 60 || h < 0 || mi < 0 || s < 0 {
        return None;
    }
    let secs = days_from_civil(y, m, d) * 86_400 + h * 3600 + mi * 60 + s;
    secs.checked_mul(1_000_000_000)
}

/// Parses `ps -eo pid,args`: pid and the command line as one string (ps joins the arguments
/// with spaces, so an argument that itself holds a space cannot be told apart).
pub fn parse_ps_args(text: &str) -> Parsed<(u32, String)> {
    let mut out = Parsed::default();
    for line in text.lines() {
        let Some(first) = line.split_whitespace().next() else {
            continue;
        };
        let Ok(pid) = first.parse::<u32>() else { continue };
        match words(line, 1) {
            Some((_, args)) => out.entries.push((pid, args.to_string())),
            None => out.skipped += 1,
        }
    }
    out
}

/// One process from `tasklist /fo csv /nh`: `"chrome.exe","1234","Console","1","123,456 K"`
/// (column names and the memory figure are translated; only the first two columns are read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskListProcess {
    pub pid: u32,
    pub image: String,
}

/// Parses `tasklist /fo csv` (with or without `/nh`: a header row has no numeric pid and is
/// ignored).
pub fn parse_tasklist_csv(text: &str) -> Parsed<TaskListProcess> {
    let mut out = Parsed::default();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        let cells = csv_cells(line);
        match (cells.first(), cells.get(1)) {
            (Some(image), Some(pid)) => match pid.trim().parse::<u32>() {
                Ok(pid) if !image.is_empty() => out.entries.push(TaskListProcess {
                    pid,
                    image: image.clone(),
                }),
                Ok(_) => out.skipped += 1,
                Err(_) if pid.chars().any(|c| c.is_ascii_digit()) => out.skipped += 1,
                Err(_) => {} // header
            },
            _ => out.skipped += 1,
        }
    }
    out
}

/// Cells of one CSV line: quoted (`""` inside quotes is a quote) or bare.
fn csv_cells(line: &str) -> Vec<String> {
    let mut cells = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => cells.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    cells.push(cur);
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lstart_is_utc_nanoseconds() {
        assert_eq!(
            lstart(&["Thu", "Jan", "1", "00:00:01", "1970"]),
            Some(1_000_000_000)
        );
        assert_eq!(
            lstart(&["Mon", "Jan", "8", "09:15:02", "2024"]),
            Some(1_704_705_302 * 1_000_000_000)
        );
        assert_eq!(lstart(&["Mon", "Foo", "8", "09:15:02", "2024"]), None);
        assert_eq!(lstart(&["Mon", "Jan", "8", "25:15:02", "2024"]), None);
        assert_eq!(lstart(&["Mon", "Jan", "8", "09:15", "2024"]), None);
    }

    #[test]
    fn csv_quotes() {
        assert_eq!(
            csv_cells(r#""a ""b"", c","12","x""#),
            vec![r#"a "b", c"#.to_string(), "12".into(), "x".into()]
        );
    }
}
