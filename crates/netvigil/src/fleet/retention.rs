//! The fleet server's retention: the store's own rolling retention (`store::Backend::retain`:
//! raw records past an age, then the oldest past a size, then old rollups) once at start and
//! every hour on a thread of its own, and the pruning of `batch_sources` (one row per stored
//! batch) down to each device's highest sequence number.
//!
//! Why one row per device is enough: an agent sends its batches in sequence order, one at a
//! time, and deletes a batch from its spool only after its ack, so the only batch it can send
//! again after a later one was stored is none; what it may resend is its last unacknowledged
//! batch, whose number is the device's highest. That one row is kept, so the exact-key check in
//! the store's transaction still answers "already stored". A batch numbered below the highest
//! stored one (a replay, or an agent's copy restored from an old backup) is answered "already
//! stored" by the server without writing it (`server::session` compares with the `last_seq` it
//! sent in `Welcome`). docs/fleet-protocol.md, "Retention".

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::db::{RECORDS_FILE, Target, open_store};

/// How often the pass runs.
pub const EVERY: Duration = Duration::from_secs(3600);

const DAY: i64 = 86_400 * 1_000_000_000;

/// The server's retention settings (`--keep`, `--max-size`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Raw records (flows, events, samples) older than this go (ns; `None`: kept).
    pub keep: Option<i64>,
    /// The store is kept under this many bytes, oldest raw records first (`None`: no limit).
    pub max_bytes: Option<u64>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            keep: Some(30 * DAY),
            max_bytes: None,
        }
    }
}

impl Policy {
    /// From the command line: `--keep 30d` (or `forever`), `--max-size 50GiB` (or `none`).
    pub fn parse(keep: &str, max_size: Option<&str>) -> Result<Policy> {
        let keep = match keep.trim() {
            "forever" | "none" => None,
            k => {
                let d = crate::config::units::parse_duration(k)
                    .filter(|d| !d.is_zero())
                    .with_context(|| {
                        format!("--keep {k}: expected an age like 30d, 12h or 90d (or forever)")
                    })?;
                if d < Duration::from_secs(3600) {
                    bail!("--keep {k}: keep at least 1h of records");
                }
                Some(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            }
        };
        let max_bytes = match max_size.map(str::trim) {
            None | Some("none") => None,
            Some(s) => Some(
                crate::config::units::parse_size(s)
                    .filter(|n| *n >= 1 << 20)
                    .with_context(|| {
                        format!("--max-size {s}: expected a size of at least 1MiB, like 500MiB or 50GiB")
                    })?,
            ),
        };
        Ok(Policy { keep, max_bytes })
    }

    /// The store's policy: raw records as set; minute rollups at least 30 days (and at least
    /// as long as raw records), hour rollups and alerts a year (or as long as raw records).
    pub fn store(&self) -> store::Retention {
        let at_least = |floor: i64| self.keep.map(|k| k.max(floor));
        store::Retention {
            raw_max_age: self.keep,
            minute_rollup_max_age: at_least(30 * DAY),
            hour_rollup_max_age: at_least(365 * DAY),
            max_bytes: self.max_bytes,
        }
    }
}

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    pub removed: store::Removed,
    /// `batch_sources` rows deleted.
    pub sources: u64,
}

/// Deletes every `batch_sources` row but each device's highest sequence number. Returns how
/// many went.
pub fn prune_sources(target: &Target) -> Result<u64> {
    match target {
        Target::Dir(d) => {
            let path = d.join(RECORDS_FILE);
            let c =
                rusqlite::Connection::open(&path).with_context(|| format!("opening {}", path.display()))?;
            c.busy_timeout(Duration::from_secs(30))?;
            let n = c
                .execute(
                    "DELETE FROM batch_sources WHERE EXISTS (SELECT 1 FROM batch_sources b
                     WHERE b.device = batch_sources.device AND b.seq > batch_sources.seq)",
                    [],
                )
                .with_context(|| format!("{}: pruning batch_sources", path.display()))?;
            Ok(n as u64)
        }
        Target::Postgres(url) => {
            let mut c = postgres::Client::connect(url, postgres::NoTls)
                .context("connecting to the fleet PostgreSQL database to prune batch_sources")?;
            let n = c
                .execute(
                    "DELETE FROM netvigil.batch_sources s
                     USING (SELECT device, max(seq) AS m FROM netvigil.batch_sources GROUP BY device) x
                     WHERE s.device = x.device AND s.seq < x.m",
                    &[],
                )
                .context("pruning netvigil.batch_sources")?;
            Ok(n)
        }
    }
}

/// One pass at time `now` (ns): the store's retention, then `batch_sources`.
pub fn run_once(target: &Target, policy: &Policy, now: i64) -> Result<Pass> {
    let mut st = open_store(target)?;
    let removed = st
        .retain(now, &policy.store())
        .context("the store's retention pass")?;
    drop(st);
    let sources = prune_sources(target)?;
    Ok(Pass { removed, sources })
}

/// The retention thread; dropping it stops the thread (between passes) and joins it.
#[derive(Debug)]
pub struct Keeper {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Keeper {
    /// Runs a pass now and then every [`EVERY`], logging what each removed; a failed pass is
    /// a warning and the next one tries again.
    pub fn start(target: Target, policy: Policy) -> Result<Keeper> {
        Keeper::start_every(target, policy, EVERY)
    }

    fn start_every(target: Target, policy: Policy, every: Duration) -> Result<Keeper> {
        let (tx, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("fleet-retention".into())
            .spawn(move || {
                loop {
                    match run_once(&target, &policy, super::server::now_ns()) {
                        Ok(p) => tracing::info!(
                            flows = p.removed.flows,
                            events = p.removed.events,
                            alerts = p.removed.alerts,
                            rollups = p.removed.rollups,
                            batch_sources = p.sources,
                            bytes_after = p.removed.bytes_after,
                            "server: retention pass"
                        ),
                        Err(e) => tracing::warn!(
                            error = format_args!("{e:#}"),
                            "server: retention pass failed (tried again in an hour)"
                        ),
                    }
                    match rx.recv_timeout(every) {
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                }
            })
            .context("starting the retention thread")?;
        Ok(Keeper {
            stop: Some(tx),
            thread: Some(thread),
        })
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_and_name_the_problem() {
        let p = Policy::parse("30d", None).unwrap();
        assert_eq!(p, Policy::default());
        let s = p.store();
        assert_eq!(s.raw_max_age, Some(30 * DAY));
        assert_eq!(s.minute_rollup_max_age, Some(30 * DAY));
        assert_eq!(s.hour_rollup_max_age, Some(365 * DAY));
        let p = Policy::parse("400d", Some("50GiB")).unwrap();
        assert_eq!(p.store().hour_rollup_max_age, Some(400 * DAY));
        assert_eq!(p.max_bytes, Some(50 << 30));
        assert_eq!(
            Policy::parse("forever", Some("none"))
                .unwrap()
                .store()
                .raw_max_age,
            None
        );
        for bad in ["", "30x", "0", "10m"] {
            let e = format!("{:#}", Policy::parse(bad, None).unwrap_err());
            assert!(e.contains("--keep"), "{bad}: {e}");
        }
        let e = format!("{:#}", Policy::parse("1d", Some("12")).unwrap_err());
        assert!(e.contains("--max-size"), "{e}");
    }
}
