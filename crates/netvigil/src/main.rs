//! # netvigil: the binary and composition root
//!
//! Parses the command line, wires sources (`os`) to the engine (`engine`) and the engine's
//! records to their outputs. For now: `netvigil read` (captures in, flow records out).
#![forbid(unsafe_code)]

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
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("netvigil: {e:#}");
            ExitCode::from(2)
        }
    }
}
