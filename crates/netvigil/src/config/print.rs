//! [`Config`] -> TOML text with every key (`netvigil config --print`); what it prints parses back
//! to the same configuration.

use std::fmt::Write as _;
use std::time::Duration;

use super::units::{format_duration, format_size, format_time};
use super::{ChannelCommon, Config, RateLimit};

/// A TOML basic string.
fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn strs(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|s| q(s)).collect();
    format!("[{}]", items.join(", "))
}

fn nums<T: ToString>(v: &[T]) -> String {
    let items: Vec<String> = v.iter().map(T::to_string).collect();
    format!("[{}]", items.join(", "))
}

fn dur(d: Duration) -> String {
    q(&format_duration(d))
}

fn ns(n: i64) -> String {
    dur(Duration::from_nanos(u64::try_from(n).unwrap_or(0)))
}

fn opt_dur(d: Option<Duration>, none: &str) -> String {
    d.map_or_else(|| q(none), dur)
}

fn limit(r: Option<RateLimit>) -> String {
    r.map_or_else(|| q("off"), |r| q(&r.to_string()))
}

/// A float TOML reads back as the same `f64`.
fn float(f: f64) -> String {
    let s = format!("{f:?}");
    if s.contains(['.', 'e', 'E']) || !s.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        s
    } else {
        format!("{s}.0")
    }
}

fn common(out: &mut String, c: &ChannelCommon) {
    let _ = writeln!(out, "enabled = {}", c.enabled);
    let _ = writeln!(out, "min_severity = {}", q(c.min_severity.as_str()));
    let _ = writeln!(out, "connections = {}", c.connections);
}

pub(super) fn print(c: &Config) -> String {
    let mut o = String::new();
    let w = &mut o;
    let _ = writeln!(w, "# netvigil configuration (every key; see docs/config.md)");
    let cap = &c.capture;
    let _ = writeln!(w, "\n[capture]");
    let _ = writeln!(w, "enabled = {}", cap.enabled);
    let _ = writeln!(w, "interfaces = {}", strs(&cap.interfaces));
    let _ = writeln!(w, "filter = {}", q(cap.filter.as_deref().unwrap_or("")));
    let _ = writeln!(w, "gateway = {}", cap.gateway);
    let lan: Vec<String> = cap.lan.iter().map(ToString::to_string).collect();
    let _ = writeln!(w, "lan = {}", strs(&lan));
    match cap.poll_ms {
        Some(ms) => writeln!(w, "poll_ms = {ms}"),
        None => writeln!(w, "poll_ms = \"auto\""),
    }
    .ok();

    let s = &c.store;
    let _ = writeln!(w, "\n[store]");
    let _ = writeln!(w, "enabled = {}", s.enabled);
    match &s.data_dir {
        Some(d) => writeln!(w, "data_dir = {}", q(&d.to_string_lossy())),
        None => writeln!(
            w,
            "# data_dir: no default (neither XDG_DATA_HOME nor HOME is set)"
        ),
    }
    .ok();
    let _ = writeln!(w, "raw_max_age = {}", opt_dur(s.raw_max_age, "never"));
    let _ = writeln!(
        w,
        "minute_rollup_max_age = {}",
        opt_dur(s.minute_rollup_max_age, "never")
    );
    let _ = writeln!(
        w,
        "hour_rollup_max_age = {}",
        opt_dur(s.hour_rollup_max_age, "never")
    );
    let _ = writeln!(
        w,
        "max_size = {}",
        q(&s.max_size.map_or("unlimited".into(), format_size))
    );
    let _ = writeln!(w, "payload_sample_bytes = {}", s.payload_sample_bytes);

    let _ = writeln!(w, "\n[web]");
    let _ = writeln!(w, "enabled = {}", c.web.enabled);
    let _ = writeln!(w, "listen = {}", q(&c.web.listen.to_string()));

    let _ = writeln!(w, "\n[log]");
    let _ = writeln!(w, "level = {}", q(c.log.level.as_str()));

    let j = &c.judge;
    let _ = writeln!(w, "\n[judge]");
    let _ = writeln!(w, "standard_ports = {}", nums(&j.standard_ports));
    let _ = writeln!(w, "quic_is_standard = {}", j.quic_is_standard);
    let _ = writeln!(w, "safe_apps = {}", strs(&j.safe_apps));
    let _ = writeln!(w, "safe_hosts = {}", strs(&j.safe_hosts));
    let _ = writeln!(w, "safe_ports = {}", nums(&j.safe_ports));
    let _ = writeln!(w, "hosting_asns = {}", nums(&j.hosting_asns));
    let _ = writeln!(w, "cloud_asns = {}", nums(&j.cloud_asns));
    let _ = writeln!(w, "vpn_apps = {}", strs(&j.vpn_apps));
    let _ = writeln!(w, "vendor_suffixes = {}", strs(&j.vendor_suffixes));
    let addrs: Vec<String> = j.local_addrs.iter().map(ToString::to_string).collect();
    let _ = writeln!(w, "local_addrs = {}", strs(&addrs));
    let _ = writeln!(w, "upload_ratio = {}", j.upload_ratio);
    let _ = writeln!(w, "upload_min_bytes = {}", j.upload_min_bytes);
    let _ = writeln!(w, "many_remotes = {}", j.many_remotes);
    let _ = writeln!(w, "pooling_connections = {}", j.pooling_connections);
    let _ = writeln!(w, "retrans_min = {}", j.retrans_min);
    let _ = writeln!(w, "retrans_percent = {}", j.retrans_percent);
    let _ = writeln!(w, "rx_queue_after = {}", ns(j.rx_queue_after));
    let _ = writeln!(w, "daemons = [");
    for d in &j.daemons {
        let _ = writeln!(
            w,
            "  {{ name = {}, suffixes = {}, ports = {} }},",
            q(&d.name),
            strs(&d.suffixes),
            nums(&d.ports)
        );
    }
    let _ = writeln!(w, "]");

    let x = &j.weights;
    let _ = writeln!(w, "\n[judge.weights]");
    for (k, v) in [
        ("unpackaged_binary", x.unpackaged_binary),
        ("plaintext_http", x.plaintext_http),
        ("upload_heavy", x.upload_heavy),
        ("unusual_port", x.unusual_port),
        ("no_reverse_dns", x.no_reverse_dns),
        ("hosting_provider", x.hosting_provider),
        ("big_cloud", x.big_cloud),
        ("daemon_outside", x.daemon_outside),
        ("high_retransmissions", x.high_retransmissions),
        ("rx_queue_backlog", x.rx_queue_backlog),
        ("many_remotes", x.many_remotes),
        ("listening_all", x.listening_all),
    ] {
        let _ = writeln!(w, "{k} = {v}");
    }
    let p = &j.privacy;
    let _ = writeln!(w, "\n[judge.privacy]");
    for (k, v) in [
        ("ads", p.ads),
        ("analytics", p.analytics),
        ("social", p.social),
        ("cdn", p.cdn),
        ("other", p.other),
        ("per_extra_connection", p.per_extra_connection),
        ("max_extra", p.max_extra),
    ] {
        let _ = writeln!(w, "{k} = {v}");
    }
    let r = &j.alerts;
    let _ = writeln!(w, "\n[judge.rules]");
    let _ = writeln!(w, "idle_after = {}", ns(r.idle_after));
    let _ = writeln!(w, "ewma_alpha = {}", float(r.ewma_alpha));
    let _ = writeln!(w, "warmup_minutes = {}", r.warmup_minutes);
    let _ = writeln!(w, "warmup_connections = {}", r.warmup_connections);
    let _ = writeln!(w, "spike_z = {}", float(r.spike_z));
    let _ = writeln!(w, "spike_min_bytes = {}", r.spike_min_bytes);
    let _ = writeln!(w, "burst_min_bytes = {}", r.burst_min_bytes);
    let _ = writeln!(w, "burst_ratio = {}", r.burst_ratio);
    let _ = writeln!(w, "max_step = {}", ns(r.max_step));
    let _ = writeln!(w, "max_apps = {}", r.max_apps);
    let _ = writeln!(w, "max_remotes_per_app = {}", r.max_remotes_per_app);
    let _ = writeln!(w, "max_ports_per_app = {}", r.max_ports_per_app);
    let _ = writeln!(w, "max_recent_ids = {}", r.max_recent_ids);

    let a = &c.alerts;
    let _ = writeln!(w, "\n[alerts]");
    let _ = writeln!(w, "min_severity = {}", q(a.min_severity.as_str()));
    let _ = writeln!(w, "dedup_window = {}", dur(a.dedup_window));
    let _ = writeln!(w, "rate_limit = {}", limit(a.rate_limit));
    let _ = writeln!(w, "every_connection = {}", a.every_connection);
    let _ = writeln!(w, "queue = {}", a.queue);
    let _ = writeln!(w, "self_cpu_percent = {}", a.self_cpu_percent);
    let _ = writeln!(w, "self_rss_mb = {}", a.self_rss_mb);
    let _ = writeln!(w, "self_commit_lag = {}", dur(a.self_commit_lag));
    let _ = writeln!(w, "\n[alerts.rate_limits]");
    for (rule, r) in &a.rate_limits {
        let _ = writeln!(w, "{rule} = {}", limit(*r));
    }
    let _ = writeln!(w, "\n[alerts.snooze]");
    if let Some(t) = a.snooze_all {
        let _ = writeln!(w, "all = {}", format_time(t));
    }
    for (rule, t) in &a.snooze {
        let _ = writeln!(w, "{rule} = {}", format_time(*t));
    }

    let n = &c.notify;
    let _ = writeln!(w, "\n[notify.terminal]");
    common(w, &n.terminal.common);

    let _ = writeln!(w, "\n[notify.desktop]");
    common(w, &n.desktop.common);
    let _ = writeln!(w, "bus = {}", q(n.desktop.bus.as_deref().unwrap_or("")));
    let _ = writeln!(w, "expire = {}", opt_dur(n.desktop.expire, "default"));

    let h = &n.webhook;
    let _ = writeln!(w, "\n[notify.webhook]");
    common(w, &h.common);
    let _ = writeln!(w, "url = {}", q(h.url.as_deref().unwrap_or("")));
    let _ = writeln!(w, "preset = {}", q(h.preset.as_str()));
    let _ = writeln!(w, "retries = {}", h.retries);
    let _ = writeln!(w, "backoff_initial = {}", dur(h.backoff_initial));
    let _ = writeln!(w, "backoff_max = {}", dur(h.backoff_max));
    let _ = writeln!(w, "timeout = {}", dur(h.timeout));

    let s = &n.syslog;
    let _ = writeln!(w, "\n[notify.syslog]");
    common(w, &s.common);
    let _ = writeln!(w, "socket = {}", q(&s.socket.to_string_lossy()));
    let _ = writeln!(w, "facility = {}", q(s.facility.as_str()));
    let _ = writeln!(w, "app_name = {}", q(&s.app_name));
    o
}
