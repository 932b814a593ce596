//! `netvigil history`, `alerts`, `export` and `purge`: questions to the SQLite store, and the
//! time arguments they share (RFC 3339, a date, or an age such as `2h`).

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use store::{Backend, Purge, Query, SqliteStore};

use crate::units;

/// Filters shared by history, alerts, export.
#[derive(Debug, Clone, clap::Args)]
pub struct FilterArgs {
    /// Only this program (process name or executable file name, case-insensitive).
    #[arg(long, value_name = "NAME")]
    pub app: Option<String>,
    /// Only this remote: a domain (its subdomains too) or an IP address (either end).
    #[arg(long, value_name = "DOMAIN|IP")]
    pub host: Option<String>,
    /// From this time: RFC 3339 (2026-11-22T03:00:00Z), a date (2026-11-22, UTC), or an age
    /// (30m, 2h, 7d: that long ago).
    #[arg(long, value_name = "TIME", value_parser = parse_time_arg)]
    pub since: Option<i64>,
    /// Up to this time (exclusive); same forms as --since.
    #[arg(long, value_name = "TIME", value_parser = parse_time_arg)]
    pub until: Option<i64>,
    /// Where netvigil keeps its data (default: $XDG_DATA_HOME/netvigil or ~/.local/share/netvigil).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

impl FilterArgs {
    fn query(&self, limit: Option<usize>) -> Query {
        Query {
            device: None,
            app: self.app.clone(),
            host: self.host.clone(),
            since: self.since,
            until: self.until,
            limit,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// At most this many flows, the newest (default: 100 in the table, all with --json).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// One JSON flow record per line (docs/records.md), newest first, instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct AlertsArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// At most this many alerts, the newest.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// One JSON alert per line instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// Every record as a JSON line (flows, DNS/TLS/HTTP/... messages, alerts), oldest first.
    Jsonl,
    /// One flow per row, the columns of `netvigil read --format csv`.
    Csv,
    /// The stored payload samples as packets, each with an "app=..., domain=..." comment.
    Pcapng,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// At most this many of each kind of record, the newest.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Write here instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).multiple(false)
    .args(["all", "before", "app", "host"])))]
pub struct PurgeArgs {
    /// Everything: records, samples, alerts, rollups, saved state.
    #[arg(long)]
    pub all: bool,
    /// Everything older than this time (RFC 3339, a date, or an age such as 30d).
    #[arg(long, value_name = "TIME", value_parser = parse_time_arg)]
    pub before: Option<i64>,
    /// Everything of this program (process name or executable file name).
    #[arg(long, value_name = "NAME")]
    pub app: Option<String>,
    /// Everything about this remote (a domain with its subdomains, or an IP address).
    #[arg(long, value_name = "DOMAIN|IP")]
    pub host: Option<String>,
    /// Where netvigil keeps its data.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// The database file under `--data-dir` or the default data directory.
pub fn db_path(data_dir: Option<&Path>) -> Result<PathBuf> {
    let dir = match data_dir {
        Some(d) => d.to_path_buf(),
        None => {
            store::default_data_dir().context("neither XDG_DATA_HOME nor HOME is set: pass --data-dir DIR")?
        }
    };
    Ok(dir.join(store::sqlite::DB_FILE))
}

/// Opens an existing database; a missing one is an error that says how to make one.
fn open_existing(data_dir: Option<&Path>) -> Result<SqliteStore> {
    let path = db_path(data_dir)?;
    if !path.exists() {
        bail!(
            "no history yet at {}: run `netvigil run` or `netvigil read --store`",
            path.display()
        );
    }
    Ok(SqliteStore::open(&path)?)
}

fn now_ns() -> i64 {
    store::writer::system_now()
}

/// clap value parser for time arguments.
fn parse_time_arg(s: &str) -> Result<i64, String> {
    parse_time(s, now_ns())
}

/// RFC 3339, a date (midnight UTC), or an age ("90s", "30m", "2h", "7d", "2w") before `now`.
pub fn parse_time(s: &str, now: i64) -> Result<i64, String> {
    let t = s.trim();
    let help = "use RFC 3339 (2026-11-22T03:00:00Z), a date (2026-11-22) or an age (30m, 2h, 7d)";
    if t.is_empty() {
        return Err(format!("an empty time: {help}"));
    }
    if let Some(ns) = store::export::parse_rfc3339(t) {
        return Ok(ns);
    }
    if t.len() == 10 && t.as_bytes()[4] == b'-' && t.as_bytes()[7] == b'-' {
        return store::export::parse_rfc3339(&format!("{t}T00:00:00Z"))
            .ok_or_else(|| format!("'{t}' is not a valid date: {help}"));
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit_ns: i64 = match unit {
        "s" => 1_000_000_000,
        "m" | "min" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => 86_400_000_000_000,
        "w" => 7 * 86_400_000_000_000,
        _ => return Err(format!("cannot read '{t}' as a time: {help}")),
    };
    let n: i64 = num
        .parse()
        .map_err(|_| format!("cannot read '{t}' as a time: {help}"))?;
    n.checked_mul(unit_ns)
        .and_then(|d| now.checked_sub(d))
        .ok_or_else(|| format!("'{t}' is too long ago"))
}

fn rfc3339(ns: i64) -> String {
    let mut s = String::new();
    engine::record::write_rfc3339(&mut s, ns);
    s
}

/// "2026-11-22 03:00:01" (UTC).
fn short_time(ns: i64) -> String {
    let s = rfc3339(ns);
    format!("{} {}", &s[..10], &s[11..19])
}

fn out_err(e: io::Error) -> Result<ExitCode> {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(e).context("writing to standard output")
    }
}

/// `netvigil history`.
pub fn history(args: &HistoryArgs) -> Result<ExitCode> {
    let mut db = open_existing(args.filter.data_dir.as_deref())?;
    let limit = if args.json {
        args.limit
    } else {
        Some(args.limit.unwrap_or(100))
    };
    // One more than shown, to say when there is more.
    let q = args.filter.query(limit.map(|n| n.saturating_add(1)));
    let mut flows = db.flows(&q)?;
    let more = limit.is_some_and(|n| flows.len() > n);
    if let Some(n) = limit {
        flows.truncate(n);
    }
    let stdout = io::stdout();
    let mut w = BufWriter::new(stdout.lock());
    let res = (|| -> io::Result<()> {
        if args.json {
            for f in &flows {
                writeln!(w, "{}", f.json)?;
            }
            return w.flush();
        }
        if flows.is_empty() {
            writeln!(w, "no flows match in {}", db.path().display())?;
            return w.flush();
        }
        writeln!(
            w,
            "{:<19}  {:<16}  {:<9}  {:<45}  {:>9}  {:>9}  DOMAIN",
            "START (UTC)", "APP", "PROTO", "CLIENT -> SERVER", "SENT", "RECEIVED"
        )?;
        // Oldest at the top, as a log reads.
        for f in flows.iter().rev() {
            let proto = match &f.app_proto {
                Some(a) => format!("{}/{a}", engine::record::l4_name(f.proto)),
                None => engine::record::l4_name(f.proto),
            };
            let ends = format!("{} -> {}", f.client, f.server);
            writeln!(
                w,
                "{:<19}  {:<16}  {:<9}  {:<45}  {:>9}  {:>9}  {}",
                short_time(f.start),
                truncate(f.app.as_deref().unwrap_or("-"), 16),
                truncate(&proto, 9),
                ends,
                units::bytes(f.bytes_to_server),
                units::bytes(f.bytes_to_client),
                f.domain.as_deref().unwrap_or("-")
            )?;
        }
        if more {
            writeln!(
                w,
                "(the newest {} shown; --limit N for more, --since/--until to narrow)",
                flows.len()
            )?;
        }
        w.flush()
    })();
    match res {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => out_err(e),
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

/// `netvigil alerts`.
pub fn alerts(args: &AlertsArgs) -> Result<ExitCode> {
    let mut db = open_existing(args.filter.data_dir.as_deref())?;
    let alerts = db.alerts(&args.filter.query(args.limit))?;
    let stdout = io::stdout();
    let mut w = BufWriter::new(stdout.lock());
    let res = (|| -> io::Result<()> {
        if args.json {
            for a in &alerts {
                writeln!(w, "{}", a.json)?;
            }
            return w.flush();
        }
        if alerts.is_empty() {
            writeln!(w, "no alerts match in {}", db.path().display())?;
            return w.flush();
        }
        writeln!(
            w,
            "{:<19}  {:<8}  {:<16}  {:<16}  {:<30}  REASON",
            "TIME (UTC)", "SEVERITY", "RULE", "APP", "REMOTE"
        )?;
        for a in alerts.iter().rev() {
            writeln!(
                w,
                "{:<19}  {:<8}  {:<16}  {:<16}  {:<30}  {}",
                short_time(a.ts),
                a.severity.as_str(),
                truncate(&a.rule, 16),
                truncate(a.app.as_deref().unwrap_or("-"), 16),
                truncate(a.remote.as_deref().unwrap_or("-"), 30),
                a.reason
            )?;
        }
        w.flush()
    })();
    match res {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => out_err(e),
    }
}

/// `netvigil export`.
pub fn export(args: &ExportArgs) -> Result<ExitCode> {
    let mut db = open_existing(args.filter.data_dir.as_deref())?;
    let q = args.filter.query(args.limit);
    let to_terminal = args.output.is_none() && io::stdout().is_terminal();
    if args.format == ExportFormat::Pcapng && to_terminal {
        bail!("pcapng is binary: pass -o FILE or redirect standard output to a file");
    }
    let out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(BufWriter::new(
            File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(BufWriter::new(io::stdout().lock())),
    };
    let res = match args.format {
        ExportFormat::Jsonl => store::export::jsonl(&mut db, &q, out),
        ExportFormat::Csv => store::export::csv(&mut db, &q, out),
        ExportFormat::Pcapng => store::export::pcapng(&mut db, &q, out),
    };
    let e = match res {
        Ok(e) => e,
        Err(store::export::ExportError::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => {
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e.into()),
    };
    let dest = args
        .output
        .as_ref()
        .map_or_else(|| "standard output".to_string(), |p| p.display().to_string());
    match args.format {
        ExportFormat::Pcapng => {
            eprintln!("netvigil: exported {} sampled packets to {dest}", e.packets);
            if e.packets == 0 {
                eprintln!(
                    "netvigil: no payload samples match: samples are kept only when enabled (they are off by default)"
                );
            }
            if e.samples_without_flow > 0 {
                eprintln!(
                    "netvigil: {} samples skipped: their flows are no longer stored",
                    e.samples_without_flow
                );
            }
        }
        ExportFormat::Csv => eprintln!("netvigil: exported {} flows to {dest}", e.flows),
        ExportFormat::Jsonl => eprintln!(
            "netvigil: exported {} flows, {} other records, {} alerts to {dest}",
            e.flows, e.events, e.alerts
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// `netvigil purge`: prints what it removed and the size before and after.
pub fn purge(args: &PurgeArgs) -> Result<ExitCode> {
    let what = if args.all {
        Purge::All
    } else if let Some(t) = args.before {
        Purge::Before(t)
    } else if let Some(a) = &args.app {
        Purge::App(a.clone())
    } else if let Some(h) = &args.host {
        Purge::Host(h.clone())
    } else {
        bail!("say what to purge: --all, --before TIME, --app NAME or --host DOMAIN|IP");
    };
    let mut db = open_existing(args.data_dir.as_deref())?;
    let r = db.purge(&what)?;
    let what_text = match &what {
        Purge::All => "everything".to_string(),
        Purge::Before(t) => format!("everything before {}", rfc3339(*t)),
        Purge::App(a) => format!("everything of app {a}"),
        Purge::Host(h) => format!("everything about {h}"),
    };
    println!("purged {what_text} from {}:", db.path().display());
    println!(
        "  removed {} flows, {} other records, {} alerts, {} payload samples, {} rollup rows",
        units::count(r.flows),
        units::count(r.events),
        units::count(r.alerts),
        units::count(r.samples),
        units::count(r.rollups)
    );
    println!(
        "  database size {} -> {} ({} freed)",
        units::bytes(r.bytes_before),
        units::bytes(r.bytes_after),
        units::bytes(r.bytes_before.saturating_sub(r.bytes_after))
    );
    Ok(ExitCode::SUCCESS)
}

/// `netvigil read --store`: records of an offline analysis go to the database through the
/// writer thread (no retention: what the user stores on purpose stays until purged).
pub struct StoreSink {
    writer: store::Writer,
    pending: Vec<engine::Record>,
    samples: Vec<store::Sample>,
    path: PathBuf,
}

impl std::fmt::Debug for StoreSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSink")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl StoreSink {
    /// Opens (creating) the database under `data_dir` or the default data directory.
    pub fn open(data_dir: Option<&Path>) -> Result<Self> {
        let path = db_path(data_dir)?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let db = SqliteStore::open_dir(&dir)?;
        let writer = store::Writer::spawn(
            db,
            store::WriterConfig {
                retention: None,
                ..store::WriterConfig::default()
            },
        );
        Ok(StoreSink {
            writer,
            pending: Vec::with_capacity(4096),
            samples: Vec::new(),
            path,
        })
    }

    /// Queues copies of `records`.
    pub fn add(&mut self, records: &[engine::Record]) -> Result<()> {
        self.pending.extend_from_slice(records);
        if self.pending.len() >= 4096 {
            self.send()?;
        }
        Ok(())
    }

    /// Takes the payload samples of the flows among `records` from the engine (only kept when
    /// `read --store --sample-bytes N` turned them on).
    pub fn take_samples(&mut self, engine: &mut engine::Engine, records: &[engine::Record]) {
        for r in records {
            if let engine::Record::Flow(f) = r
                && let Some(s) = engine.take_samples(f.id)
            {
                self.samples.extend(store::Sample::from_engine(f, s));
            }
        }
    }

    fn send(&mut self) -> Result<()> {
        let batch = store::Batch {
            records: std::mem::take(&mut self.pending),
            samples: std::mem::take(&mut self.samples),
            ..store::Batch::default()
        };
        self.writer.send(batch).map_err(anyhow::Error::from)
    }

    /// Commits everything and says what was stored.
    pub fn finish(mut self) -> Result<()> {
        self.send()?;
        let s = self.writer.close();
        if s.unwritten > 0 {
            bail!(
                "{} of {} records could not be stored in {}: {}",
                s.unwritten,
                s.received,
                self.path.display(),
                s.last_error.unwrap_or_default()
            );
        }
        eprintln!(
            "netvigil: stored {} records in {}",
            units::count(s.written),
            self.path.display()
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn digest_counts_apps_hosts_bytes_new_apps_and_red_flags() {
        let flow =
            |app: Option<&str>, domain: Option<&str>, server: &str, up: u64, down: u64| store::StoredFlow {
                device: store::DeviceId(0),
                flow_id: 1,
                start: 0,
                end: 0,
                proto: 6,
                client: "192.0.2.10:40000".parse().unwrap(),
                server: server.parse().unwrap(),
                app_proto: None,
                domain: domain.map(str::to_string),
                app: app.map(str::to_string),
                pid: None,
                exe: None,
                packets_to_server: 1,
                packets_to_client: 1,
                bytes_to_server: up,
                bytes_to_client: down,
                json: String::new(),
            };
        let alert = |rule: &str, app: &str, remote: Option<&str>| store::AlertRow {
            id: format!("{rule}{app}"),
            ts: 0,
            severity: store::Severity::High,
            rule: rule.to_string(),
            app: Some(app.to_string()),
            remote: remote.map(str::to_string),
            reason: String::new(),
            json: String::new(),
        };
        let flows = [
            flow(
                Some("firefox"),
                Some("github.com"),
                "140.82.112.3:443",
                1_000,
                2_000_000,
            ),
            flow(
                Some("firefox"),
                Some("github.com"),
                "140.82.112.4:443",
                1_000,
                1_000_000,
            ),
            flow(Some("curl"), None, "203.0.113.7:80", 500, 300_000),
            flow(None, None, "198.51.100.1:53", 100, 200),
        ];
        let alerts = [
            alert("new_app", "curl", None),
            alert("new_remote", "curl", Some("203.0.113.7")),
            alert("red_flag", "curl", Some("203.0.113.7")),
        ];
        let f = super::digest_facts(&flows, &alerts, engine::judge::Period::Day);
        assert_eq!((f.apps, f.hosts), (3, 3), "{f:?}");
        assert_eq!((f.bytes_out, f.bytes_in), (2_600, 3_300_200));
        assert_eq!(f.new_apps, ["curl"]);
        assert_eq!(f.red_flags, ["curl (203.0.113.7)"]);
        let text = engine::judge::digest(&f);
        assert!(
            text.contains("3 apps") && text.contains("3 hosts") && text.contains("curl"),
            "{text}"
        );
    }

    const NOW: i64 = 1_795_000_000_000_000_000;

    #[test]
    fn time_forms() {
        assert_eq!(
            parse_time("2026-11-22T03:00:00Z", NOW),
            Ok(1_795_316_400_000_000_000)
        );
        assert_eq!(parse_time("2026-11-22", NOW), Ok(1_795_305_600_000_000_000));
        assert_eq!(parse_time("2h", NOW), Ok(NOW - 7_200_000_000_000));
        assert_eq!(parse_time("30m", NOW), Ok(NOW - 1_800_000_000_000));
        assert_eq!(parse_time("7d", NOW), Ok(NOW - 7 * 86_400_000_000_000));
        for bad in [
            "",
            "yesterday",
            "2h30",
            "-5m",
            "2026-13-01",
            "99999999999999999999d",
        ] {
            let e = parse_time(bad, NOW).unwrap_err();
            assert!(
                e.contains("time") || e.contains("date") || e.contains("long ago"),
                "{bad}: {e}"
            );
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DigestPeriod {
    Hour,
    Day,
}

#[derive(Debug, clap::Args)]
pub struct DigestArgs {
    /// The last hour or the last day.
    #[arg(long, value_enum, default_value_t = DigestPeriod::Day)]
    pub period: DigestPeriod,
    /// Where netvigil keeps its data (default: $XDG_DATA_HOME/netvigil or ~/.local/share/netvigil).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// `netvigil digest`: one paragraph about the last hour or day, from the history: how many
/// programs talked to how many hosts, how much went each way, which programs are new (their
/// `new_app` alerts) and which raised red flags (`red_flag` alerts).
pub fn digest(args: &DigestArgs) -> Result<ExitCode> {
    let mut db = open_existing(args.data_dir.as_deref())?;
    let (span, period) = match args.period {
        DigestPeriod::Hour => (3_600, engine::judge::Period::Hour),
        DigestPeriod::Day => (86_400, engine::judge::Period::Day),
    };
    let q = Query {
        since: Some(now_ns() - span * 1_000_000_000),
        ..Query::default()
    };
    let facts = digest_facts(&db.flows(&q)?, &db.alerts(&q)?, period);
    println!("{}", engine::judge::digest(&facts));
    Ok(ExitCode::SUCCESS)
}

/// The digest's counts from stored flows and alerts. Bytes "out" are what the clients sent
/// (to_server), "in" what they received: on a monitored machine most flows start here.
pub fn digest_facts(
    flows: &[store::StoredFlow],
    alerts: &[store::AlertRow],
    period: engine::judge::Period,
) -> engine::judge::DigestFacts {
    use std::collections::BTreeSet;
    let mut apps = BTreeSet::new();
    let mut hosts = BTreeSet::new();
    let (mut bytes_in, mut bytes_out) = (0u64, 0u64);
    for f in flows {
        apps.insert(f.app.clone().unwrap_or_default());
        hosts.insert(f.domain.clone().unwrap_or_else(|| f.server.ip().to_string()));
        bytes_out += f.bytes_to_server;
        bytes_in += f.bytes_to_client;
    }
    let mut new_apps: Vec<String> = alerts
        .iter()
        .filter(|a| a.rule == "new_app")
        .filter_map(|a| a.app.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    new_apps.sort();
    let red_flags = alerts
        .iter()
        .filter(|a| a.rule == "red_flag")
        .map(|a| {
            let app = a.app.as_deref().unwrap_or("a program we could not identify");
            match &a.remote {
                Some(r) => format!("{app} ({r})"),
                None => app.to_string(),
            }
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    engine::judge::DigestFacts {
        period,
        apps: apps.len(),
        hosts: hosts.len(),
        bytes_in,
        bytes_out,
        new_apps,
        red_flags,
    }
}
