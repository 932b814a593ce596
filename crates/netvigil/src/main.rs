//! # netvigil: the binary and composition root
//!
//! Parses the command line, wires sources (`os`) to the engine (`engine`) and the engine's
//! records to their outputs. For now: `netvigil read` (captures in, flow records out).
#![forbid(unsafe_code)]

mod connections;
mod doctor;
mod judging;
mod live;
mod read;
mod summary;
mod units;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// See every connection on this machine, tied to the program that made it.
#[derive(Debug, Parser)]
#[command(name = "netvigil", version, about, long_about = None, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read packet captures (pcap or pcapng, any extension; "-" for standard input) and report
    /// their flows.
    Read(ReadArgs),
    /// Watch this machine live: packet capture when privileged, the socket table always.
    Run(RunArgs),
    /// One snapshot of this machine's connections, grouped by the program that owns them.
    Connections(ConnectionsArgs),
    /// What this machine allows netvigil to see, and the exact commands to grant what is missing.
    Doctor,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Write every record as a JSON line to this file ("-" for standard output).
    #[arg(long, value_name = "FILE|-")]
    pub events: Option<String>,
    /// No web dashboard (the dashboard is not built yet; this is accepted for scripts).
    #[arg(long)]
    pub no_web: bool,
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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Jsonl,
    Csv,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
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
        }),
        Command::Connections(a) => connections::run(&a),
        Command::Doctor => doctor::run(),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("netvigil: {e:#}");
            ExitCode::from(2)
        }
    }
}
