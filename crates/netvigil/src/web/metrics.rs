//! The running monitor's own counters: updated by the pipeline (`netvigil run`, about once a
//! second), read by the dashboard's `GET /metrics` in the Prometheus text exposition format
//! (version 0.0.4) and by `netvigil status`. Plain atomics: the pipeline never waits for a reader.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// The alert channels, in the order of [`Metrics::channels`].
pub const CHANNELS: [&str; 4] = ["terminal", "desktop", "webhook", "syslog"];

/// Delivery counters of one alert channel.
#[derive(Debug, Default)]
pub struct ChannelMetrics {
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
}

/// Everything `/metrics` reports. Totals are since netvigil started.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Unix time (seconds) netvigil started.
    pub started_s: AtomicU64,
    /// Frames the engine read.
    pub packets: AtomicU64,
    /// Frames the kernel dropped because the capture ring was full.
    pub kernel_drops: AtomicU64,
    /// Batches of frames lost between the capture thread and the engine (only at shutdown).
    pub batches_lost: AtomicU64,
    /// Flows the engine created.
    pub flows_created: AtomicU64,
    /// Records committed to the history database.
    pub records_written: AtomicU64,
    /// Records that never reached the database (queue full, write errors).
    pub records_unwritten: AtomicU64,
    /// Records waiting in the store writer's queue.
    pub store_queued: AtomicU64,
    /// Age of the oldest record in the last commit, milliseconds.
    pub store_lag_ms: AtomicU64,
    /// The largest such age since start, milliseconds.
    pub store_max_lag_ms: AtomicU64,
    /// Alerts raised by the judgement and the self-watch.
    pub alerts_raised: AtomicU64,
    /// Alerts held back by noise control (dedup, rate limits, snooze, safe lists, severity).
    pub alerts_suppressed: AtomicU64,
    /// Alerts refused by the delivery intake (its queue was full).
    pub alerts_dropped: AtomicU64,
    /// Per channel, as [`CHANNELS`].
    pub channels: [ChannelMetrics; 4],
    /// netvigil's CPU use over the last minute, percent of one CPU, as `f64` bits.
    cpu_percent_bits: AtomicU64,
    /// netvigil's resident memory, bytes.
    pub rss_bytes: AtomicU64,
}

/// One metric: name, type, help.
const HELP: &[(&str, &str, &str)] = &[
    (
        "netvigil_start_time_seconds",
        "gauge",
        "Unix time netvigil started.",
    ),
    ("netvigil_packets_total", "counter", "Frames the engine read."),
    (
        "netvigil_kernel_drops_total",
        "counter",
        "Frames the kernel dropped because netvigil did not read its capture ring in time.",
    ),
    (
        "netvigil_capture_batches_lost_total",
        "counter",
        "Batches of frames lost between the capture thread and the engine.",
    ),
    (
        "netvigil_flows_created_total",
        "counter",
        "Flows the engine created.",
    ),
    (
        "netvigil_records_written_total",
        "counter",
        "Records committed to the history database.",
    ),
    (
        "netvigil_records_unwritten_total",
        "counter",
        "Records that never reached the history database.",
    ),
    (
        "netvigil_store_queued_records",
        "gauge",
        "Records waiting in the store writer's queue.",
    ),
    (
        "netvigil_store_lag_milliseconds",
        "gauge",
        "Age of the oldest record of the last commit.",
    ),
    (
        "netvigil_store_max_lag_milliseconds",
        "gauge",
        "Largest commit lag since start.",
    ),
    ("netvigil_alerts_raised_total", "counter", "Alerts raised."),
    (
        "netvigil_alerts_suppressed_total",
        "counter",
        "Alerts held back by noise control.",
    ),
    (
        "netvigil_alerts_dropped_total",
        "counter",
        "Alerts refused because the delivery queue was full.",
    ),
    (
        "netvigil_alerts_delivered_total",
        "counter",
        "Alerts delivered, per channel.",
    ),
    (
        "netvigil_alerts_failed_total",
        "counter",
        "Alerts a channel failed to deliver.",
    ),
    (
        "netvigil_alerts_channel_dropped_total",
        "counter",
        "Alerts a channel dropped (its queue was full, or shutdown came first).",
    ),
    (
        "netvigil_cpu_percent",
        "gauge",
        "netvigil's CPU use over the last minute, percent of one CPU.",
    ),
    (
        "netvigil_resident_memory_bytes",
        "gauge",
        "netvigil's resident memory.",
    ),
];

impl Metrics {
    /// Sets the CPU gauge.
    pub fn set_cpu_percent(&self, pct: f64) {
        self.cpu_percent_bits.store(pct.to_bits(), Ordering::Relaxed);
    }

    /// The CPU gauge.
    pub fn cpu_percent(&self) -> f64 {
        f64::from_bits(self.cpu_percent_bits.load(Ordering::Relaxed))
    }

    /// The Prometheus text exposition (`text/plain; version=0.0.4`).
    pub fn render(&self) -> String {
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::with_capacity(4096);
        for &(name, typ, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {typ}");
            let one = |v: u64| format!("{name} {v}\n");
            let per_channel = |f: &dyn Fn(&ChannelMetrics) -> u64| {
                CHANNELS
                    .iter()
                    .zip(&self.channels)
                    .map(|(c, m)| format!("{name}{{channel=\"{c}\"}} {}\n", f(m)))
                    .collect::<String>()
            };
            let line = match name {
                "netvigil_start_time_seconds" => one(ld(&self.started_s)),
                "netvigil_packets_total" => one(ld(&self.packets)),
                "netvigil_kernel_drops_total" => one(ld(&self.kernel_drops)),
                "netvigil_capture_batches_lost_total" => one(ld(&self.batches_lost)),
                "netvigil_flows_created_total" => one(ld(&self.flows_created)),
                "netvigil_records_written_total" => one(ld(&self.records_written)),
                "netvigil_records_unwritten_total" => one(ld(&self.records_unwritten)),
                "netvigil_store_queued_records" => one(ld(&self.store_queued)),
                "netvigil_store_lag_milliseconds" => one(ld(&self.store_lag_ms)),
                "netvigil_store_max_lag_milliseconds" => one(ld(&self.store_max_lag_ms)),
                "netvigil_alerts_raised_total" => one(ld(&self.alerts_raised)),
                "netvigil_alerts_suppressed_total" => one(ld(&self.alerts_suppressed)),
                "netvigil_alerts_dropped_total" => one(ld(&self.alerts_dropped)),
                "netvigil_alerts_delivered_total" => per_channel(&|m| ld(&m.delivered)),
                "netvigil_alerts_failed_total" => per_channel(&|m| ld(&m.failed)),
                "netvigil_alerts_channel_dropped_total" => per_channel(&|m| ld(&m.dropped)),
                "netvigil_cpu_percent" => format!("{name} {:.3}\n", self.cpu_percent()),
                "netvigil_resident_memory_bytes" => one(ld(&self.rss_bytes)),
                _ => String::new(),
            };
            out.push_str(&line);
        }
        out
    }
}

/// Reads the text exposition back: `(name with labels, value)` per sample line; comments and
/// lines that are not `NAME VALUE` are skipped (never panics on any text).
pub fn parse(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.trim().rsplit_once(' ')?;
            Some((k.trim().to_string(), v.parse::<f64>().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_gives_every_metric_with_help_type_and_value() {
        let m = Metrics::default();
        m.packets.store(1234, Ordering::Relaxed);
        m.kernel_drops.store(7, Ordering::Relaxed);
        m.channels[2].delivered.store(3, Ordering::Relaxed);
        m.set_cpu_percent(0.25);
        m.rss_bytes.store(20 << 20, Ordering::Relaxed);
        let text = m.render();
        for &(name, typ, _) in HELP {
            assert!(
                text.contains(&format!("# TYPE {name} {typ}\n")),
                "{name}:\n{text}"
            );
        }
        let got = parse(&text);
        let get = |k: &str| got.iter().find(|(n, _)| n == k).map(|x| x.1);
        assert_eq!(get("netvigil_packets_total"), Some(1234.0));
        assert_eq!(get("netvigil_kernel_drops_total"), Some(7.0));
        assert_eq!(
            get("netvigil_alerts_delivered_total{channel=\"webhook\"}"),
            Some(3.0)
        );
        assert_eq!(
            get("netvigil_alerts_delivered_total{channel=\"terminal\"}"),
            Some(0.0)
        );
        assert_eq!(get("netvigil_cpu_percent"), Some(0.25));
        assert_eq!(
            get("netvigil_resident_memory_bytes"),
            Some(20.0 * 1024.0 * 1024.0)
        );
        // Every sample line is NAME VALUE: what Prometheus parses.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let (k, v) = l.rsplit_once(' ').unwrap();
            assert!(k.starts_with("netvigil_") && v.parse::<f64>().is_ok(), "{l}");
        }
        assert_eq!(got.len(), HELP.len() - 3 + 3 * CHANNELS.len());
    }

    /// The dashboard's `GET /metrics`: live values, the Host check, and a 404 without a pipeline.
    #[test]
    fn dashboard_serves_metrics_as_they_change() {
        use std::sync::Arc;
        use std::time::Duration;

        use crate::web::tests::http;
        use crate::web::{LiveView, ServeOptions, serve};

        let m = Arc::new(Metrics::default());
        m.packets.store(5, Ordering::Relaxed);
        let view = LiveView::new(Default::default(), None, Default::default());
        let mut o = ServeOptions::new(None, "ab".repeat(32));
        o.addr = "127.0.0.1:0".parse().unwrap();
        o.settings_path = None;
        o.sample_every = None;
        o.heartbeat = Duration::from_millis(300);
        o.metrics = Some(Arc::clone(&m));
        let h = serve(Arc::clone(&view), o.clone()).unwrap();
        let (st, head, body) = http(h.addr, "GET", "/metrics", &[("Host", "127.0.0.1")], "");
        assert_eq!(st, 200, "{body}");
        assert!(head.contains("content-type: text/plain; version=0.0.4"), "{head}");
        let get = |b: &str, k: &str| parse(b).into_iter().find(|(n, _)| n == k).map(|x| x.1);
        assert_eq!(get(&body, "netvigil_packets_total"), Some(5.0), "{body}");
        m.packets.store(9, Ordering::Relaxed);
        m.alerts_raised.fetch_add(2, Ordering::Relaxed);
        let (_, _, body) = http(h.addr, "GET", "/metrics", &[], "");
        assert_eq!(get(&body, "netvigil_packets_total"), Some(9.0), "{body}");
        assert_eq!(get(&body, "netvigil_alerts_raised_total"), Some(2.0), "{body}");
        let (st, _, _) = http(h.addr, "GET", "/metrics", &[("Host", "evil.example")], "");
        assert_eq!(st, 421);
        h.stop();
        o.metrics = None;
        o.addr = "127.0.0.1:0".parse().unwrap();
        let h = serve(view, o).unwrap();
        let (st, _, body) = http(h.addr, "GET", "/metrics", &[], "");
        assert_eq!(st, 404, "{body}");
        assert!(body.contains("not served by `netvigil run`"), "{body}");
        h.stop();
    }

    #[test]
    fn parse_never_panics_on_junk() {
        for t in ["", "#", " ", "a", "a b c", "x NaN", "\u{0} 1", "é 1e309", "a  "] {
            let _ = parse(t);
        }
    }
}
