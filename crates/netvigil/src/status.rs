//! `netvigil status`: asks the running instance (its dashboard's `GET /metrics`, plain HTTP/1.1
//! over std::net on loopback) and prints a few lines a person can read, or says that no
//! netvigil is running there.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::web::metrics;

/// `netvigil status` options.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The dashboard of the running instance (default: `web.listen` in the config, else
    /// 127.0.0.1:8077).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
}

/// Exit status when no instance answers (as `systemctl status` for a stopped unit).
const NOT_RUNNING: u8 = 3;

pub fn run(args: &StatusArgs, config: Option<&std::path::Path>) -> Result<ExitCode> {
    let addr = match args.listen {
        Some(a) => a,
        None => match crate::config::Config::load(config) {
            Ok((c, _)) => c.web.listen,
            Err(_) => crate::web::DEFAULT_ADDR.parse().expect("constant address"),
        },
    };
    let body = match fetch(addr, "/metrics") {
        Ok(b) => b,
        Err(Fetch::NoAnswer(e)) => {
            println!("netvigil is not running (no dashboard on {addr}: {e})");
            return Ok(ExitCode::from(NOT_RUNNING));
        }
        Err(Fetch::Other(e)) => bail!("{addr} answered, but not as netvigil's dashboard: {e}"),
    };
    print!(
        "{}",
        describe(addr, &body, crate::live::now_nanos() / 1_000_000_000)
    );
    Ok(ExitCode::SUCCESS)
}

enum Fetch {
    /// Nothing listens, or it does not answer in time.
    NoAnswer(String),
    /// Something answered, wrongly.
    Other(String),
}

/// One GET with `Host: 127.0.0.1` (or `[::1]`), `Connection: close`; the body of a 200.
fn fetch(addr: SocketAddr, path: &str) -> Result<String, Fetch> {
    let t = Duration::from_secs(3);
    let mut s = TcpStream::connect_timeout(&addr, t).map_err(|e| Fetch::NoAnswer(e.to_string()))?;
    let _ = s.set_read_timeout(Some(t));
    let _ = s.set_write_timeout(Some(t));
    let host = match addr {
        SocketAddr::V4(a) if a.ip().is_loopback() => format!("127.0.0.1:{}", a.port()),
        SocketAddr::V6(a) if a.ip().is_loopback() => format!("[::1]:{}", a.port()),
        // Another address: the dashboard only accepts loopback names (an operator who exposed
        // it allowed its own); send the address itself.
        a => a.to_string(),
    };
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: netvigil-status\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .map_err(|e| Fetch::NoAnswer(e.to_string()))?;
    let mut raw = Vec::new();
    s.take(4 << 20)
        .read_to_end(&mut raw)
        .map_err(|e| Fetch::NoAnswer(e.to_string()))?;
    parse_response(&raw).map_err(Fetch::Other)
}

/// Status line and body of an HTTP/1.1 answer (`Content-Length` or chunked, or to the end);
/// the body of a 200, else an error naming the status.
fn parse_response(raw: &[u8]) -> Result<String, String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| "no HTTP header in the answer".to_string())?;
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| "no HTTP status line".to_string())?;
    if status != 200 {
        return Err(format!("HTTP {status}: {}", body.trim()));
    }
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.to_ascii_lowercase().contains("chunked")
    });
    if !chunked {
        return Ok(body.to_string());
    }
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else {
            return Err("a chunked answer cut short".into());
        };
        let n = usize::from_str_radix(size.trim(), 16).map_err(|_| format!("bad chunk size {size:?}"))?;
        if n == 0 {
            return Ok(out);
        }
        let chunk = after.get(..n).ok_or("a chunked answer cut short")?;
        out.push_str(chunk);
        rest = after.get(n..).unwrap_or("").trim_start_matches("\r\n");
    }
}

/// The readable lines for a `/metrics` body; `now_s` is the Unix time now.
fn describe(addr: SocketAddr, body: &str, now_s: i64) -> String {
    let m = metrics::parse(body);
    let get = |k: &str| m.iter().find(|(n, _)| n == k).map_or(0.0, |x| x.1);
    let sum = |prefix: &str| {
        m.iter()
            .filter(|(n, _)| n.starts_with(prefix) && n[prefix.len()..].starts_with('{'))
            .map(|x| x.1)
            .sum::<f64>()
    };
    let n = |v: f64| crate::units::count(v.max(0.0) as u64);
    let up = (now_s - get("netvigil_start_time_seconds") as i64).max(0);
    let up = match up {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min", s / 60),
        s if s < 86_400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        s => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    };
    let drops = get("netvigil_kernel_drops_total");
    let unwritten = get("netvigil_records_unwritten_total");
    let mut out = String::new();
    out.push_str(&format!(
        "netvigil is running: dashboard on http://{addr}/, up {up}\n"
    ));
    out.push_str(&format!(
        "  itself:  {:.1}% CPU (last minute), {:.1} MB memory\n",
        get("netvigil_cpu_percent"),
        get("netvigil_resident_memory_bytes") / 1e6
    ));
    out.push_str(&format!(
        "  packets: {} read, {} dropped by the kernel{}; {} flows\n",
        n(get("netvigil_packets_total")),
        n(drops),
        if drops > 0.0 { " (!)" } else { "" },
        n(get("netvigil_flows_created_total"))
    ));
    out.push_str(&format!(
        "  history: {} records written, {} not written{}, {} queued, commit lag {} ms (max {} ms)\n",
        n(get("netvigil_records_written_total")),
        n(unwritten),
        if unwritten > 0.0 { " (!)" } else { "" },
        n(get("netvigil_store_queued_records")),
        n(get("netvigil_store_lag_milliseconds")),
        n(get("netvigil_store_max_lag_milliseconds"))
    ));
    out.push_str(&format!(
        "  alerts:  {} raised, {} held back by noise control, {} deliveries, {} failed, {} dropped\n",
        n(get("netvigil_alerts_raised_total")),
        n(get("netvigil_alerts_suppressed_total")),
        n(sum("netvigil_alerts_delivered_total")),
        n(sum("netvigil_alerts_failed_total")),
        n(get("netvigil_alerts_dropped_total") + sum("netvigil_alerts_channel_dropped_total"))
    ));
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::web::metrics::Metrics;

    #[test]
    fn describes_a_running_instance_from_its_metrics() {
        let m = Metrics::default();
        m.started_s.store(1_000, Ordering::Relaxed);
        m.packets.store(12_345, Ordering::Relaxed);
        m.kernel_drops.store(3, Ordering::Relaxed);
        m.records_written.store(99, Ordering::Relaxed);
        m.alerts_raised.store(4, Ordering::Relaxed);
        m.channels[0].delivered.store(4, Ordering::Relaxed);
        m.channels[2].delivered.store(3, Ordering::Relaxed);
        m.set_cpu_percent(0.5);
        m.rss_bytes.store(23_100_000, Ordering::Relaxed);
        let text = describe("127.0.0.1:8077".parse().unwrap(), &m.render(), 1_000 + 3_720);
        assert!(
            text.starts_with("netvigil is running: dashboard on http://127.0.0.1:8077/, up 1 h 2 min\n"),
            "{text}"
        );
        assert!(text.contains("0.5% CPU (last minute), 23.1 MB memory"), "{text}");
        assert!(text.contains("3 dropped by the kernel (!)"), "{text}");
        assert!(text.contains("99 records written, 0 not written,"), "{text}");
        assert!(
            text.contains("4 raised, 0 held back by noise control, 7 deliveries"),
            "{text}"
        );
    }

    #[test]
    fn asks_the_dashboard_and_says_when_nothing_runs() {
        let m = Arc::new(Metrics::default());
        m.packets.store(77, Ordering::Relaxed);
        let view = crate::web::LiveView::new(Default::default(), None, Default::default());
        let mut o = crate::web::ServeOptions::new(None, "cd".repeat(32));
        o.addr = "127.0.0.1:0".parse().unwrap();
        o.settings_path = None;
        o.sample_every = None;
        o.metrics = Some(m);
        let h = crate::web::serve(view, o).unwrap();
        let body = fetch(h.addr, "/metrics").unwrap_or_else(|_| panic!("no metrics from {}", h.addr));
        assert!(describe(h.addr, &body, 0).contains("packets: 77 read"), "{body}");
        // A route that is not there: the status names it.
        match fetch(h.addr, "/nope") {
            Err(Fetch::Other(e)) => assert!(e.starts_with("HTTP 404"), "{e}"),
            _ => panic!("/nope answered 200"),
        }
        let addr = h.addr;
        h.stop();
        assert!(matches!(fetch(addr, "/metrics"), Err(Fetch::NoAnswer(_))));
    }

    #[test]
    fn responses_are_parsed_without_panics() {
        assert_eq!(
            parse_response(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
            ),
            Ok("abcde".to_string())
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\n\r\nx y\n"),
            Ok("x y\n".to_string())
        );
        for junk in [
            &b""[..],
            b"HTTP",
            b"\r\n\r\n",
            b"HTTP/1.1 200\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200\r\ntransfer-encoding: chunked\r\n\r\n99\r\nab",
        ] {
            let _ = parse_response(junk);
        }
    }
}
