//! Day partitions of the time-split tables: their names (`flows_p20240131`), bounds, creation
//! ahead of the rows that need them, and listing from the catalog.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use postgres::Client;

/// Nanoseconds in a day.
pub(crate) const DAY_NS: i64 = 86_400 * 1_000_000_000;

/// How the time-split tables (`flows`, `events`) are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Declarative `PARTITION BY RANGE (ts)`, one partition per UTC day, created by netvigil.
    DayPartitions,
    /// TimescaleDB hypertables with one-day chunks (used when the extension can be created).
    Hypertables,
}

impl Layout {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Layout::DayPartitions => "partitions",
            Layout::Hypertables => "hypertables",
        }
    }
    pub(crate) fn parse(s: &str) -> Option<Layout> {
        match s {
            "partitions" => Some(Layout::DayPartitions),
            "hypertables" => Some(Layout::Hypertables),
            _ => None,
        }
    }
}

/// A time-split table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Table {
    Flows,
    Events,
}

impl Table {
    pub(crate) const ALL: [Table; 2] = [Table::Flows, Table::Events];

    pub(crate) const fn name(self) -> &'static str {
        match self {
            Table::Flows => "flows",
            Table::Events => "events",
        }
    }
}

/// The UTC day (days since the epoch) holding `ns`.
pub(crate) fn day_of(ns: i64) -> i64 {
    ns.div_euclid(DAY_NS)
}

/// "20240131" for a day number.
pub(crate) fn day_label(day: i64) -> String {
    let mut s = String::with_capacity(32);
    engine::record::write_rfc3339(&mut s, day.saturating_mul(DAY_NS));
    // "2024-01-31T00:00:00.000000Z"
    s[..10].replace('-', "")
}

/// "2024-01-31 00:00:00+00": a timestamptz literal that does not depend on the session's zone.
pub(crate) fn day_literal(day: i64) -> String {
    let mut s = String::with_capacity(32);
    engine::record::write_rfc3339(&mut s, day.saturating_mul(DAY_NS));
    format!("{} 00:00:00+00", &s[..10])
}

/// Partition name of `table` for `day`.
pub(crate) fn partition_name(table: Table, day: i64) -> String {
    format!("{}_p{}", table.name(), day_label(day))
}

/// The day of a partition named by [`partition_name`], or `None` for any other name.
pub(crate) fn parse_partition(table: Table, name: &str) -> Option<i64> {
    let rest = name.strip_prefix(table.name())?.strip_prefix("_p")?;
    if rest.len() != 8 || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let y: i64 = rest[..4].parse().ok()?;
    let m: u32 = rest[4..6].parse().ok()?;
    let d: u32 = rest[6..].parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let day = days_from_civil(y, m, d);
    (day_label(day) == rest).then_some(day)
}

/// Howard Hinnant's civil-to-days (proleptic Gregorian).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `ns` as a timestamp, floored to the microsecond (PostgreSQL's resolution).
pub(crate) fn ts(ns: i64) -> SystemTime {
    let us = ns.div_euclid(1_000);
    if us >= 0 {
        UNIX_EPOCH + Duration::from_micros(us as u64)
    } else {
        UNIX_EPOCH - Duration::from_micros(us.unsigned_abs())
    }
}

/// Partitions of `table` that follow our naming, with their day.
pub(crate) fn list(client: &mut Client, table: Table) -> Result<Vec<(i64, String)>, postgres::Error> {
    let rows = client.query(
        "SELECT c.relname::text FROM pg_inherits i \
         JOIN pg_class c ON c.oid = i.inhrelid \
         JOIN pg_class p ON p.oid = i.inhparent \
         JOIN pg_namespace n ON n.oid = p.relnamespace \
         WHERE n.nspname = 'netvigil' AND p.relname = $1",
        &[&table.name()],
    )?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let name: String = r.get(0);
            parse_partition(table, &name).map(|d| (d, name))
        })
        .collect())
}

/// Creates the partitions of `wanted` (table, day) in one transaction under the DDL advisory
/// lock, so server processes sharing the database never race on the catalog.
pub(crate) fn create(client: &mut Client, wanted: &[(Table, i64)]) -> Result<(), postgres::Error> {
    if wanted.is_empty() {
        return Ok(());
    }
    let mut sql = String::from("BEGIN; SELECT pg_advisory_xact_lock(");
    sql.push_str(&super::LOCK_DDL.to_string());
    sql.push_str(");\n");
    for &(t, day) in wanted {
        sql.push_str(&format!(
            "CREATE TABLE IF NOT EXISTS netvigil.{} PARTITION OF netvigil.{} FOR VALUES FROM ('{}') TO ('{}');\n",
            partition_name(t, day),
            t.name(),
            day_literal(day),
            day_literal(day + 1)
        ));
    }
    sql.push_str("COMMIT;");
    let r = client.batch_execute(&sql);
    if r.is_err() {
        let _ = client.batch_execute("ROLLBACK");
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for day in [-106_000, -1, 0, 1, 19_753, 19_754, 106_000] {
            let n = partition_name(Table::Flows, day);
            assert_eq!(parse_partition(Table::Flows, &n), Some(day), "{n}");
            assert_eq!(parse_partition(Table::Events, &n), None);
        }
        assert_eq!(partition_name(Table::Events, 19_753), "events_p20240131");
        assert_eq!(day_literal(19_753), "2024-01-31 00:00:00+00");
        assert_eq!(parse_partition(Table::Flows, "flows_p20240230"), None);
        assert_eq!(parse_partition(Table::Flows, "flows_p2024013"), None);
        assert_eq!(parse_partition(Table::Flows, "flows_default"), None);
    }

    #[test]
    fn days_and_times() {
        assert_eq!(day_of(0), 0);
        assert_eq!(day_of(-1), -1);
        assert_eq!(day_of(DAY_NS), 1);
        assert_eq!(ts(1_999), UNIX_EPOCH + Duration::from_micros(1));
        assert_eq!(ts(-1), UNIX_EPOCH - Duration::from_micros(1));
    }
}
