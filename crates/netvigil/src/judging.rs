//! The judgement as the binary runs it: the engine's [`Judge`] with the enrichment sources this
//! machine has (place databases found on disk, the shipped domain table, /etc/services, and in
//! the live monitor the reverse-DNS resolver), applied to every flow and connection record.
//!
//! Flow and connection records get four fields in their JSON (`score`, `level`, `flags`,
//! `explanation`, docs/records.md); alerts come out as `alert` records.

use engine::Record;
use engine::enrich::{Enrichers, GeoLookup, ReverseDns};
use engine::judge::{Alert, Assessment, Config, Judge, Subject};

/// Judge plus enrichment sources.
pub struct Judging {
    pub judge: Judge,
    places: Option<intel::Places>,
    labels: intel::DomainTable,
    services: intel::ServiceNames,
    rdns: Option<os::rdns::Resolver>,
    /// Alerts raised and not yet taken.
    pub alerts: Vec<Alert>,
    /// Time of the newest record judged (ns): the clock of an offline read.
    pub last_ts: i64,
    /// Keep per-app totals and raise alerts (off: only each record's own assessment).
    pub alerting: bool,
}

impl Judging {
    /// Loads what this machine has: place databases from the usual folders (none is fine: the
    /// place fields stay empty and `netvigil doctor` says how to get one), the shipped domain
    /// table, /etc/services. Problems with a database file are warnings, never fatal.
    pub fn new(config: Config, rdns: Option<os::rdns::Resolver>) -> Self {
        let found = intel::discover(&intel::default_dirs(None));
        let (places, errors) = found.load(&[]);
        for e in errors {
            tracing::warn!("{e}");
        }
        Self {
            judge: Judge::new(config),
            places: (!places.is_empty()).then_some(places),
            labels: intel::DomainTable::shipped(),
            services: intel::ServiceNames::system(),
            rdns,
            alerts: Vec::new(),
            last_ts: 0,
            alerting: true,
        }
    }

    /// Judges `r` (flows and connections; other records pass through) and writes its JSON line
    /// into `line` (no newline), with the judgement fields added. `now` is the record's time for
    /// an offline read, the wall clock live.
    pub fn judge_into(&mut self, r: &Record, now: Option<i64>, line: &mut String) -> Option<Assessment> {
        r.write_json(line);
        let a = self.assess(r, now)?;
        if line.ends_with('}') {
            line.pop();
            line.push(',');
            a.write_json_fields(line);
            line.push('}');
        }
        Some(a)
    }

    /// Judges a flow or connection record (`None` for the other records).
    pub fn assess(&mut self, r: &Record, now: Option<i64>) -> Option<Assessment> {
        let places = self.places.as_ref().map(|p| p as &dyn GeoLookup);
        let rdns = self.rdns.as_ref().map(|r| r as &dyn ReverseDns);
        let e = Enrichers {
            geo: places,
            labels: Some(&self.labels),
            rdns,
            services: Some(&self.services),
        };
        let a = match r {
            Record::Flow(f) if !self.alerting => {
                engine::judge::assess(&Subject::from_flow(f, &self.judge.config), &e, &self.judge.config)
            }
            Record::Connection(c) if !self.alerting => {
                engine::judge::assess(&Subject::from_connection(c), &e, &self.judge.config)
            }
            Record::Flow(f) => {
                let t = now.unwrap_or(f.end);
                self.last_ts = self.last_ts.max(f.end);
                self.judge.flow(f, &e, t, &mut self.alerts)
            }
            Record::Connection(c) => {
                let t = now.unwrap_or(c.ts);
                self.last_ts = self.last_ts.max(c.ts);
                self.judge.connection(c, &e, t, &mut self.alerts)
            }
            _ => return None,
        };
        Some(a)
    }

    /// Closes finished minutes of the baselines (volume alerts).
    pub fn tick(&mut self, now: i64) {
        self.judge.tick(now, &mut self.alerts);
    }
}
