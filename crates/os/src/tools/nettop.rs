//! `nettop -P -L 1 -n -x` CSV: bytes in and out per process (macOS).
//!
//! `-P` sums each process's sockets into one row, `-L 1` prints one sample as CSV and exits,
//! `-n` skips name lookups, `-x` prints raw numbers (no "1.2 MiB"). The header is
//! `time,,interface,state,bytes_in,bytes_out,rx_dupe,...` and each row starts with the time
//! and `name.pid`: the pid is after the LAST dot, the name (which may hold dots, spaces and
//! even commas) before it. Columns are found by their header names; without a header the
//! documented positions (4 and 5) are used. nettop's counters are cumulative over the life of
//! each process's sockets; several samples of the same pid keep the last.

use super::{Parsed, parse_count};

/// The arguments netvigil gives nettop.
pub const NETTOP_ARGS: &[&str] = &["-P", "-L", "1", "-n", "-x"];

/// Traffic of one process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessBytes {
    pub pid: u32,
    /// The name nettop shows (possibly shortened by nettop).
    pub name: String,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Parses nettop's CSV. Rows without a `name.pid` (per-connection rows) are ignored; rows whose
/// pid or byte counts do not parse are counted in `skipped`.
pub fn parse_nettop(text: &str) -> Parsed<ProcessBytes> {
    let mut out: Parsed<ProcessBytes> = Parsed::default();
    // (columns in the header, bytes_in index, bytes_out index)
    let mut layout: (Option<usize>, usize, usize) = (None, 4, 5);
    for line in text.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        if f.first().is_some_and(|t| t.trim() == "time") {
            let pos = |name: &str| f.iter().position(|c| c.trim() == name);
            if let (Some(i), Some(o)) = (pos("bytes_in"), pos("bytes_out")) {
                layout = (Some(f.len()), i, o);
            }
            continue;
        }
        // A name with commas makes the row longer than the header: the extra cells belong to
        // the name (column 1).
        let extra = match layout.0 {
            Some(n) if f.len() > n => f.len() - n,
            _ => 0,
        };
        if f.len() < 2 {
            out.skipped += 1;
            continue;
        }
        let name_pid = f[1..=1 + extra.min(f.len() - 2)].join(",");
        if name_pid.trim().is_empty() {
            continue; // a connection row under a process (without -P)
        }
        let at = |i: usize| if i >= 2 { f.get(i + extra) } else { f.get(i) };
        let row = (|| {
            let (name, pid) = name_pid.rsplit_once('.')?;
            let pid: u32 = pid.trim().parse().ok()?;
            let bytes_in = parse_count(at(layout.1)?)?;
            let bytes_out = parse_count(at(layout.2)?)?;
            Some(ProcessBytes {
                pid,
                name: name.to_string(),
                bytes_in,
                bytes_out,
            })
        })();
        match row {
            Some(r) => match out.entries.iter_mut().find(|e| e.pid == r.pid) {
                Some(e) => *e = r,
                None => out.entries.push(r),
            },
            None => out.skipped += 1,
        }
    }
    out
}
