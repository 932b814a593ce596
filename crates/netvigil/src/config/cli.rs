//! `netvigil config`: where the file is, whether it is valid, the effective configuration
//! (`--print`), and a test alert through every channel (`--test-alert`).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use engine::judge::Severity;

use super::{Config, Source};
use crate::notify::{Dispatcher, Notice};

/// Arguments of `netvigil config`.
#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    /// Print the effective configuration as TOML (every key, defaults filled in); the output
    /// is a valid config file.
    #[arg(long, conflicts_with = "test_alert")]
    pub print: bool,
    /// Send one test alert through every enabled channel (terminal, desktop, webhook,
    /// syslog) and report what each did; exit status 1 when one failed.
    #[arg(long)]
    pub test_alert: bool,
    /// With --test-alert: how long to wait for slow channels (webhook retries), in seconds.
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS", requires = "test_alert")]
    pub wait: f64,
}

/// Runs `netvigil config` with the file named by `--config` (or the default one).
pub fn run(args: &ConfigArgs, explicit: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (cfg, source) = Config::load(explicit)?;
    if args.print {
        print!("{}", cfg.to_toml());
        return Ok(ExitCode::SUCCESS);
    }
    match &source {
        Source::File(p) => eprintln!("netvigil: config: {} is valid", p.display()),
        Source::Defaults(Some(p)) => {
            eprintln!(
                "netvigil: config: no file at {} (every default applies)",
                p.display()
            );
        }
        Source::Defaults(None) => {
            eprintln!("netvigil: config: neither XDG_CONFIG_HOME nor HOME is set: every default applies");
        }
    }
    if !args.test_alert {
        eprintln!(
            "netvigil: config: `netvigil config --print` shows every setting; docs/config.md explains them"
        );
        return Ok(ExitCode::SUCCESS);
    }
    test_alert(&cfg, Duration::from_secs_f64(args.wait.clamp(0.0, 3600.0)))
}

fn test_alert(cfg: &Config, wait: Duration) -> anyhow::Result<ExitCode> {
    // The test alert passes every channel's minimum severity and no noise control applies.
    let mut cfg = cfg.clone();
    cfg.alerts.min_severity = Severity::Info;
    cfg.alerts.snooze_all = None;
    cfg.alerts.snooze.clear();
    cfg.judge.safe_apps.clear();
    cfg.judge.safe_hosts.clear();
    cfg.judge.safe_ports.clear();
    let (d, off) = Dispatcher::from_config(&cfg).map_err(anyhow::Error::msg)?;
    for (name, why) in &off {
        eprintln!("netvigil: config: {name}: off ({why})");
    }
    let ts = crate::live::now_nanos();
    let reason = "This is a test alert from `netvigil config --test-alert`: this channel works.";
    let mut json = String::from("{\"type\":\"alert\",\"v\":1,\"id\":\"test\",\"ts\":");
    engine::record::write_json_str(&mut json, &super::format_time(ts));
    json.push_str(
        ",\"severity\":\"high\",\"rule\":\"test\",\"app\":\"netvigil\",\"remote\":null,\"reason\":",
    );
    engine::record::write_json_str(&mut json, reason);
    json.push('}');
    d.send(Notice {
        id: "test".into(),
        ts,
        severity: Severity::High,
        rule: "test",
        app: Some("netvigil".into()),
        remote: None,
        port: None,
        reason: reason.into(),
        json,
    });
    let stats = d.shutdown(wait);
    let mut failed = stats.channels.is_empty();
    for c in &stats.channels {
        let what = if c.delivered > 0 {
            format!(
                "delivered{}",
                if c.retries > 0 {
                    format!(" after {} retries", c.retries)
                } else {
                    String::new()
                }
            )
        } else if c.failed > 0 {
            failed = true;
            "FAILED (see the message above)".into()
        } else {
            failed = true;
            format!("not delivered within {} s", wait.as_secs_f64())
        };
        println!("{}: {what}", c.name);
    }
    if stats.channels.is_empty() {
        println!("no channel is on");
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
