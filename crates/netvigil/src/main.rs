//! # netvigil: the binary and composition root
//!
//! Parses the command line, wires sources (`os`) to the engine (`engine`) and the engine's
//! records to their outputs. For now: `netvigil read` (captures in, flow records out).
#![forbid(unsafe_code)]

mod config;
mod connections;
mod doctor;
mod fleet;
mod gateway;
mod history;
mod https;
mod judging;
mod live;
mod logging;
mod notify;
mod rdap_fetch;
mod read;
mod sinks;
mod status;
mod summary;
mod units;
mod web;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// See every connection on this machine, tied to the program that made it.
#[derive(Debug, Parser)]
#[command(name = "netvigil", version, about, long_about = None)]
struct Cli {
    /// What to do; without one, `run` with its defaults.
    #[command(subcommand)]
    command: Option<Command>,
    /// Configuration file (default: $XDG_CONFIG_HOME/netvigil/config.toml, or
    /// ~/.config/netvigil/config.toml; a missing default file means every default applies).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Log level of netvigil's own log lines on standard error (default: `NETVIGIL_LOG`, else
    /// `log.level` in the config, else info).
    #[arg(long, global = true, value_enum, value_name = "LEVEL")]
    log_level: Option<logging::LogLevel>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read packet captures (pcap or pcapng, any extension; "-" for standard input) and report
    /// their flows.
    Read(ReadArgs),
    /// Watch this machine live: packet capture when privileged, the socket table always. The
    /// default command.
    Run(RunArgs),
    /// Ask the running instance (its dashboard's /metrics) how it is doing.
    Status(status::StatusArgs),
    /// One snapshot of this machine's connections, grouped by the program that owns them.
    Connections(ConnectionsArgs),
    /// What this machine allows netvigil to see, and the exact commands to grant what is missing.
    Doctor,
    /// Flows remembered in the database (newest last), filtered by app, host and time.
    History(history::HistoryArgs),
    /// Alerts remembered in the database.
    Alerts(history::AlertsArgs),
    /// Write what the database holds as JSON lines, CSV, or pcapng (payload samples).
    Export(history::ExportArgs),
    /// Forget for good: delete matching records, samples, alerts and rollups, and shrink the file.
    Purge(history::PurgeArgs),
    /// The last hour or day in one paragraph: programs, hosts, traffic, what is new, red flags.
    Digest(history::DigestArgs),
    /// The configuration: check the file, print the effective settings (--print), or send a
    /// test alert through every channel (--test-alert).
    Config(config::cli::ConfigArgs),
    /// Fleet server: receive the records of enrolled agents (TLS 1.3, mutual authentication)
    /// and serve the fleet dashboard over HTTPS; `server token` makes enrollment tokens,
    /// `server agents|rename|revoke` manages agents, `server user` the dashboard's accounts.
    Server(fleet::ServerArgs),
    /// Fleet agent: `agent enroll` registers this machine with a server.
    Agent(fleet::AgentArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Write every record as a JSON line to this file ("-" for standard output).
    #[arg(long, value_name = "FILE|-")]
    pub events: Option<String>,
    /// No web dashboard.
    #[arg(long)]
    pub no_web: bool,
    /// Dashboard address (default 127.0.0.1:8077, or `web.listen` in the config).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<std::net::SocketAddr>,
    /// Keep no history (nothing is written to the database).
    #[arg(long)]
    pub no_store: bool,
    /// Where netvigil keeps its data (created if missing).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Do not look up the PTR names of remote addresses (then no flow gets the "no reverse
    /// DNS" flag).
    #[arg(long)]
    pub no_rdns: bool,
    /// Capture on this interface (repeat for several); default: all interfaces.
    #[arg(long = "interface", short = 'i', value_name = "NAME")]
    pub interfaces: Vec<String>,
    /// Capture filter: "tcp", "udp port 53", "host 10.1.2.3 and tcp port 443", "not port 22".
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
    /// Do not capture packets even when allowed: socket table only.
    #[arg(long)]
    pub no_capture: bool,
    /// How often to read the whole socket table, in milliseconds. Default: 5000 when capturing
    /// (packets report connections as they open; the table is a backstop), 2000 without.
    /// Each read walks the kernel's whole TCP hash table, which is what an idle monitor costs.
    #[arg(long, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub poll_ms: Option<u64>,
    /// Stop after this many seconds (for scripts and tests); default: until SIGINT/SIGTERM.
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Most flows kept in memory at once.
    #[arg(long, default_value_t = 1_000_000)]
    pub max_flows: usize,
    /// Gateway mode: on a router, bridge or mirror port, report the LAN's devices (MAC vendor,
    /// DHCP hostname, mDNS name) and their flows (docs/gateway.md).
    #[arg(long)]
    pub gateway: bool,
    /// Gateway mode: an address prefix of the LAN (repeat for several); default: the private
    /// and link-local ranges.
    #[arg(long, value_name = "PREFIX", value_parser = engine::lan::Prefix::parse)]
    pub lan: Vec<engine::lan::Prefix>,
}

#[derive(Debug, clap::Args)]
pub struct ConnectionsArgs {
    /// One JSON `connection` record per line instead of the grouped table.
    #[arg(long)]
    pub json: bool,
    /// Also list connections on the loopback interface.
    #[arg(long)]
    pub all: bool,
    /// Benchmark: take this many snapshots in one process and print their timings (the
    /// first cold, the rest warm, as the monitor takes them every poll).
    #[arg(long, value_name = "N")]
    pub bench: Option<usize>,
}

#[derive(Debug, clap::Args)]
pub struct ReadArgs {
    /// Capture files to read, in order; each is analysed on its own.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// table: a summary for a person; jsonl: one JSON record per line (docs/records.md); csv:
    /// one flow per row.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Most flows kept in memory at once; past it the longest idle flow is written out early.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub max_flows: u64,
    /// Rows in each section of the table summary.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Never show the progress bar (it is shown only when stderr is a terminal).
    #[arg(long)]
    pub no_progress: bool,
    /// After each file, print its counters (packets, flows created/ended/evicted, anomalies) as
    /// one JSON object on stderr.
    #[arg(long)]
    pub stats: bool,
    /// Leave out the judgement: no score, flags or explanation on flows, no alert records
    /// (jsonl output; the other formats never carry them).
    #[arg(long)]
    pub no_judge: bool,
    /// Also keep per-app baselines and write `alert` records (new apps, new hosts, volume
    /// spikes ...), as the live monitor does (jsonl output).
    #[arg(long, conflicts_with = "no_judge")]
    pub alerts: bool,
    /// Also keep the records in the history database (see `netvigil history`).
    #[arg(long)]
    pub store: bool,
    /// Where netvigil keeps its data, with --store (default: $XDG_DATA_HOME/netvigil or
    /// ~/.local/share/netvigil).
    #[arg(long, value_name = "DIR", requires = "store")]
    pub data_dir: Option<PathBuf>,
    /// With --store: also keep the first N payload bytes of each direction of every flow,
    /// encrypted (samples.key in the data directory); `netvigil export --format pcapng` gives
    /// them back. Default 0: no payload is kept.
    #[arg(long, value_name = "N", default_value_t = 0, requires = "store")]
    pub sample_bytes: usize,
    /// Gateway mode: the capture was taken on a router, bridge or mirror port; report the
    /// LAN's devices and name each flow's device (docs/gateway.md).
    #[arg(long)]
    pub gateway: bool,
    /// Gateway mode: an address prefix of the LAN (repeat for several); default: the private
    /// and link-local ranges.
    #[arg(long, value_name = "PREFIX", value_parser = engine::lan::Prefix::parse, requires = "gateway")]
    pub lan: Vec<engine::lan::Prefix>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Jsonl,
    Csv,
}

/// `run`'s flags at their defaults (for `netvigil` without a command).
fn default_run_args() -> RunArgs {
    #[derive(Parser)]
    struct Only {
        #[command(flatten)]
        run: RunArgs,
    }
    Only::parse_from(["netvigil"]).run
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_level);
    let command = cli.command.unwrap_or_else(|| Command::Run(default_run_args()));
    let result = match command {
        Command::Read(args) => read::run(&args),
        Command::Run(a) => live::run(&live::RunOptions {
            events: a.events,
            interfaces: a.interfaces,
            filter: a.filter,
            no_capture: a.no_capture,
            poll_ms: a.poll_ms,
            duration: a.duration,
            max_flows: a.max_flows,
            data_dir: a.data_dir,
            rdns: !a.no_rdns,
            config: cli.config.clone(),
            no_web: a.no_web,
            no_store: a.no_store,
            listen: a.listen,
            gateway: a.gateway,
            lan: a.lan,
        }),
        Command::Status(a) => status::run(&a, cli.config.as_deref()),
        Command::Connections(a) => connections::run(&a),
        Command::Doctor => doctor::run(),
        Command::History(a) => history::history(&a),
        Command::Alerts(a) => history::alerts(&a),
        Command::Export(a) => history::export(&a),
        Command::Purge(a) => history::purge(&a),
        Command::Digest(a) => history::digest(&a),
        Command::Config(a) => config::cli::run(&a, cli.config.as_deref()),
        Command::Server(a) => fleet::run_server(a),
        Command::Agent(a) => fleet::run_agent(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("netvigil: {e:#}");
            ExitCode::from(2)
        }
    }
}
