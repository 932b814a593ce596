//! Fleet mode (docs/fleet-protocol.md): agents on many machines stream their records to one
//! server over mutually authenticated TLS 1.3. `frame` is the wire format, `identity` the keys,
//! certificates and TLS settings, `db` the server's tables, `server` and `agent` the two ends,
//! `web` the server's HTTPS dashboard with its accounts (docs/fleet-dashboard.md).

pub mod agent;
pub mod db;
pub mod frame;
pub mod identity;
pub mod retention;
pub mod server;
pub mod web;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

/// `netvigil server`: receive agents' records.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ServerArgs {
    #[command(subcommand)]
    pub command: Option<ServerCommand>,
    /// Address to listen on for agents.
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:8078")]
    pub listen: std::net::SocketAddr,
    /// Where the server keeps its TLS key, and (without --db) its agents and records (SQLite).
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Keep agents and records in PostgreSQL instead (postgres://USER@HOST:PORT/DATABASE);
    /// several servers may share one database.
    #[arg(long, value_name = "URL", global = true)]
    pub db: Option<String>,
    /// Address of the HTTPS dashboard (docs/fleet-dashboard.md).
    #[arg(long, value_name = "ADDR:PORT", default_value = web::DEFAULT_ADDR)]
    pub web: std::net::SocketAddr,
    /// The dashboard's certificate (PEM, leaf first); without it a self-signed one is made in
    /// DATA_DIR/fleet-web/.
    #[arg(long, value_name = "FILE", requires = "web_key")]
    pub web_cert: Option<PathBuf>,
    /// The private key of --web-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "web_cert")]
    pub web_key: Option<PathBuf>,
    /// Do not serve the dashboard.
    #[arg(long)]
    pub no_web: bool,
    /// Delete agents' raw records older than this (checked at start and hourly): 30d, 90d,
    /// or `forever`.
    #[arg(long, value_name = "AGE", default_value = "30d")]
    pub keep: String,
    /// Keep the record store under this size, oldest records first: 500MiB, 50GiB (default:
    /// no limit).
    #[arg(long, value_name = "SIZE")]
    pub max_size: Option<String>,
}

/// Admin commands of the server.
#[derive(Debug, clap::Subcommand)]
pub enum ServerCommand {
    /// Create a one-time enrollment token (printed once, with the server's fingerprint).
    Token {
        /// How long the token stays valid: 30m, 1h, 2d.
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
    /// List enrolled agents.
    Agents,
    /// Rename an agent.
    Rename { device: u32, name: String },
    /// Revoke an agent: its key is refused from now on (its records stay).
    Revoke { device: u32 },
    /// Dashboard accounts: add, list, remove.
    #[command(subcommand)]
    User(UserCommand),
}

/// Dashboard account commands.
#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Add an account; the password is read from stdin (or asked for twice on a terminal).
    Add {
        name: String,
        /// Set a new password for an existing account.
        #[arg(long)]
        replace: bool,
    },
    /// List accounts and their passkeys.
    List,
    /// Remove an account (its passkeys and sessions too).
    Remove { name: String },
}

/// `netvigil agent`: this machine as a fleet agent.
#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    #[command(subcommand)]
    pub command: AgentCommand,
}

/// Agent commands.
#[derive(Debug, clap::Subcommand)]
pub enum AgentCommand {
    /// Register this machine's key with a server, using a token from `netvigil server token`.
    Enroll {
        #[arg(long, value_name = "HOST:PORT")]
        server: String,
        #[arg(long)]
        token: String,
        /// The server certificate's SHA-256, as `netvigil server token` prints it.
        #[arg(long)]
        fingerprint: String,
        /// Name shown on the server (default: this machine's host name).
        #[arg(long)]
        name: Option<String>,
        /// Where netvigil keeps its data (the agent key goes in fleet-agent/ there).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

fn data_dir(d: Option<PathBuf>) -> Result<PathBuf> {
    d.or_else(store::default_data_dir)
        .context("no data directory: pass --data-dir DIR")
}

/// Parses "90s", "30m", "1h", "2d" into nanoseconds.
pub fn parse_ttl(s: &str) -> Result<i64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .with_context(|| format!("--ttl {s}: expected a number and a unit, like 30m, 1h or 2d"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" | "" => 3600,
        "d" => 86_400,
        _ => bail!("--ttl {s}: unknown unit {unit:?}; use s, m, h or d"),
    };
    if n <= 0 || n > 30 * 86_400 / secs {
        bail!("--ttl {s}: must be between 1 second and 30 days");
    }
    Ok(n * secs * 1_000_000_000)
}

/// How long a stopping server waits for its connections' batches to commit.
pub const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs `netvigil server ...`.
pub fn run_server(a: ServerArgs) -> Result<ExitCode> {
    let dir = data_dir(a.data_dir)?;
    let target = match a.db {
        Some(url) => db::Target::Postgres(url),
        None => db::Target::Dir(dir.clone()),
    };
    let now = server::now_ns();
    match a.command {
        None => {
            let policy = retention::Policy::parse(&a.keep, a.max_size.as_deref())?;
            // Before anything runs: SIGINT/SIGTERM only set a flag from here on.
            let stop = os::linux::signals::stop_flag().context("installing signal handlers")?;
            let s = server::Server::start(&dir, &target, a.listen)?;
            tracing::info!(
                "server: listening on {} (data in {})",
                s.local_addr(),
                dir.display()
            );
            tracing::info!(fingerprint = %s.fingerprint(), "server: certificate fingerprint");
            let web_handle = if a.no_web {
                None
            } else {
                web::start_for_server(
                    a.web,
                    &dir,
                    a.web_cert.as_deref().zip(a.web_key.as_deref()),
                    match &target {
                        db::Target::Postgres(u) => Some(u.as_str()),
                        db::Target::Dir(_) => None,
                    },
                )?
            };
            // After the lines above (tests read the first one for the address).
            let keeper = retention::Keeper::start(target.clone(), policy)?;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            tracing::info!(
                "server: stopping (no new connections; batches in flight are committed and acknowledged)"
            );
            let forced = s.shutdown(STOP_GRACE);
            if forced > 0 {
                tracing::warn!(
                    connections = forced,
                    "server: connections still busy after the grace period were closed (their agents send again)"
                );
            }
            drop(web_handle);
            drop(keeper);
            tracing::info!("server: stopped");
        }
        Some(ServerCommand::User(u)) => web::user_command(&dir, &target, u)?,
        Some(ServerCommand::Token { ttl }) => {
            let ttl = parse_ttl(&ttl)?;
            let id = server::server_identity(&dir)?;
            let token = db::FleetDb::open(&target)?.create_token(now, now + ttl)?;
            println!("token:       {token}");
            println!("fingerprint: {}", id.fingerprint());
            println!(
                "on the agent: netvigil agent enroll --server HOST:PORT --token {token} --fingerprint {}",
                id.fingerprint()
            );
        }
        Some(ServerCommand::Agents) => {
            for ag in db::agents_with_last_batch(&target)? {
                let state = if ag.revoked.is_some() { "revoked" } else { "active" };
                println!(
                    "{:>5}  {:<24} {:<8} key {}  last batch {}",
                    ag.device.0,
                    ag.name,
                    state,
                    &ag.key_id[..16],
                    ag.last_seq
                );
            }
        }
        Some(ServerCommand::Rename { device, name }) => {
            if !db::FleetDb::open(&target)?.rename(device, &name)? {
                bail!("no agent with device id {device} (see netvigil server agents)");
            }
        }
        Some(ServerCommand::Revoke { device }) => {
            if !db::FleetDb::open(&target)?.revoke(device, now)? {
                bail!("no active agent with device id {device} (see netvigil server agents)");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `netvigil agent ...`.
pub fn run_agent(a: AgentArgs) -> Result<ExitCode> {
    match a.command {
        AgentCommand::Enroll {
            server,
            token,
            fingerprint,
            name,
            data_dir: d,
        } => {
            let dir = data_dir(d)?;
            let name = name
                .or_else(|| {
                    std::fs::read_to_string("/etc/hostname")
                        .ok()
                        .map(|h| h.trim().to_owned())
                })
                .unwrap_or_default();
            let e = agent::enroll(&dir, &server, &token, &fingerprint, &name)?;
            println!("enrolled with {} as device {}", e.server, e.device);
        }
    }
    Ok(ExitCode::SUCCESS)
}
