//! Every key parsed, errors with their lines, printing round trips, overrides.

use std::path::Path;
use std::time::Duration;

use engine::judge::Severity;

use super::*;

/// Every key of the file, each with a value other than its default.
pub(crate) const EVERY_KEY: &str = r#"
[capture]
enabled = false
interfaces = ["eth0", "wlan0"]
filter = "tcp port 443"
poll_ms = 750

[store]
enabled = false
data_dir = "/var/lib/netvigil"
raw_max_age = "14d"
minute_rollup_max_age = "never"
hour_rollup_max_age = "400d"
max_size = "500MB"
payload_sample_bytes = 256

[web]
enabled = false
listen = "[::1]:9000"

[log]
level = "debug"

[judge]
standard_ports = [443, 8443]
quic_is_standard = false
safe_apps = ["backupd"]
safe_hosts = ["example.org", "192.0.2.7"]
safe_ports = [9418]
hosting_asns = [64500]
cloud_asns = [64501, 64502]
vpn_apps = ["myvpn"]
vendor_suffixes = ["vendor.example"]
local_addrs = ["192.0.2.10", "2001:db8::10"]
daemons = [{ name = "chronyd", suffixes = ["ntp.example"], ports = [123] }]
upload_ratio = 20
upload_min_bytes = 5000000
many_remotes = 50
pooling_connections = 16
retrans_min = 20
retrans_percent = 10
rx_queue_after = "1m"

[judge.weights]
unpackaged_binary = 4
plaintext_http = 5
upload_heavy = 6
unusual_port = 7
no_reverse_dns = 8
hosting_provider = 9
big_cloud = 10
daemon_outside = 11
high_retransmissions = 12
rx_queue_backlog = 13
many_remotes = 14
listening_all = 15

[judge.privacy]
ads = 20
analytics = 21
social = 22
cdn = 23
other = 24
per_extra_connection = 25
max_extra = 26

[judge.rules]
idle_after = "2d"
ewma_alpha = 0.1
warmup_minutes = 60
warmup_connections = 40
spike_z = 5.5
spike_min_bytes = 20000000
burst_min_bytes = 30000000
burst_ratio = 20
max_step = "20m"
max_apps = 100
max_remotes_per_app = 200
max_ports_per_app = 32
max_recent_ids = 1000

[alerts]
min_severity = "low"
dedup_window = "1h"
rate_limit = "off"
every_connection = true
queue = 64
self_cpu_percent = 7
self_rss_mb = 150
self_commit_lag = "45s"

[alerts.rate_limits]
new_remote = "5/10m"
red_flag = "off"

[alerts.snooze]
all = 2025-06-01T12:00:00Z
volume_spike = "2025-06-02T00:00:00+02:00"

[notify.terminal]
enabled = false
min_severity = "medium"
connections = false

[notify.desktop]
enabled = false
min_severity = "high"
connections = true
bus = "unix:path=/run/user/1000/bus"
expire = "8s"

[notify.webhook]
enabled = false
min_severity = "low"
connections = true
url = "http://127.0.0.1:8080/hook"
preset = "discord"
retries = 2
backoff_initial = "500ms"
backoff_max = "30s"
timeout = "3s"

[notify.syslog]
enabled = true
min_severity = "medium"
connections = false
socket = "/run/systemd/journal/syslog"
facility = "local0"
app_name = "nv"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("config.toml"))
}

#[test]
fn every_key_is_read() {
    let c = parse(EVERY_KEY).unwrap();
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_string()).collect::<Vec<_>>();
    assert_eq!(
        c.capture,
        CaptureConfig {
            enabled: false,
            interfaces: s(&["eth0", "wlan0"]),
            gateway: false,
            lan: Vec::new(),
            filter: Some("tcp port 443".into()),
            poll_ms: Some(750),
        }
    );
    assert_eq!(c.log.level, crate::logging::LogLevel::Debug);
    const DAY: u64 = 86_400;
    assert_eq!(
        c.store,
        StoreConfig {
            enabled: false,
            data_dir: Some("/var/lib/netvigil".into()),
            raw_max_age: Some(Duration::from_secs(14 * DAY)),
            minute_rollup_max_age: None,
            hour_rollup_max_age: Some(Duration::from_secs(400 * DAY)),
            max_size: Some(500_000_000),
            payload_sample_bytes: 256,
        }
    );
    assert_eq!(c.web.listen.to_string(), "[::1]:9000");
    assert!(!c.web.enabled);
    let j = &c.judge;
    assert_eq!(j.standard_ports, [443, 8443]);
    assert!(!j.quic_is_standard);
    assert_eq!(j.safe_apps, s(&["backupd"]));
    assert_eq!(j.safe_hosts, s(&["example.org", "192.0.2.7"]));
    assert_eq!(j.safe_ports, [9418]);
    assert_eq!(j.hosting_asns, [64500]);
    assert_eq!(j.cloud_asns, [64501, 64502]);
    assert_eq!(j.vpn_apps, s(&["myvpn"]));
    assert_eq!(j.vendor_suffixes, s(&["vendor.example"]));
    assert_eq!(j.local_addrs.len(), 2);
    assert_eq!(j.daemons.len(), 1);
    assert_eq!(
        (j.daemons[0].name.as_str(), j.daemons[0].ports.as_slice()),
        ("chronyd", &[123u16][..])
    );
    assert_eq!(
        (
            j.upload_ratio,
            j.upload_min_bytes,
            j.many_remotes,
            j.pooling_connections
        ),
        (20, 5_000_000, 50, 16)
    );
    assert_eq!(
        (j.retrans_min, j.retrans_percent, j.rx_queue_after),
        (20, 10, 60_000_000_000)
    );
    let w = &j.weights;
    assert_eq!(
        [
            w.unpackaged_binary,
            w.plaintext_http,
            w.upload_heavy,
            w.unusual_port,
            w.no_reverse_dns,
            w.hosting_provider,
            w.big_cloud,
            w.daemon_outside,
            w.high_retransmissions,
            w.rx_queue_backlog,
            w.many_remotes,
            w.listening_all
        ],
        [4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
    );
    let p = &j.privacy;
    assert_eq!(
        [
            p.ads,
            p.analytics,
            p.social,
            p.cdn,
            p.other,
            p.per_extra_connection,
            p.max_extra
        ],
        [20, 21, 22, 23, 24, 25, 26]
    );
    let r = &j.alerts;
    assert_eq!(r.idle_after, 2 * 86_400 * 1_000_000_000);
    assert_eq!((r.ewma_alpha, r.spike_z), (0.1, 5.5));
    assert_eq!((r.warmup_minutes, r.warmup_connections), (60, 40));
    assert_eq!(
        (r.spike_min_bytes, r.burst_min_bytes, r.burst_ratio),
        (20_000_000, 30_000_000, 20)
    );
    assert_eq!(r.max_step, 1_200_000_000_000);
    assert_eq!(
        (
            r.max_apps,
            r.max_remotes_per_app,
            r.max_ports_per_app,
            r.max_recent_ids
        ),
        (100, 200, 32, 1000)
    );
    let a = &c.alerts;
    assert_eq!(a.min_severity, Severity::Low);
    assert_eq!(a.dedup_window, Duration::from_secs(3600));
    assert_eq!(a.rate_limit, None);
    assert!(a.every_connection);
    assert_eq!(a.queue, 64);
    assert_eq!((a.self_cpu_percent, a.self_rss_mb), (7, 150));
    assert_eq!(a.self_commit_lag, Duration::from_secs(45));
    assert_eq!(
        a.rate_limits.get("new_remote"),
        Some(&Some(RateLimit {
            count: 5,
            per: Duration::from_secs(600)
        }))
    );
    assert_eq!(a.rate_limits.get("red_flag"), Some(&None));
    assert_eq!(a.snooze_all, Some(1_748_779_200_000_000_000));
    assert_eq!(a.snooze.get("volume_spike"), Some(&(1_748_815_200_000_000_000)));
    let n = &c.notify;
    assert_eq!(
        n.terminal.common,
        ChannelCommon {
            enabled: false,
            min_severity: Severity::Medium,
            connections: false
        }
    );
    assert_eq!(
        (
            n.desktop.common.min_severity,
            n.desktop.bus.as_deref(),
            n.desktop.expire
        ),
        (
            Severity::High,
            Some("unix:path=/run/user/1000/bus"),
            Some(Duration::from_secs(8))
        )
    );
    let h = &n.webhook;
    assert_eq!(
        (
            h.url.as_deref(),
            h.preset,
            h.retries,
            h.backoff_initial,
            h.backoff_max,
            h.timeout
        ),
        (
            Some("http://127.0.0.1:8080/hook"),
            WebhookPreset::Discord,
            2,
            Duration::from_millis(500),
            Duration::from_secs(30),
            Duration::from_secs(3)
        )
    );
    assert!(!h.common.enabled && h.common.connections);
    let y = &n.syslog;
    assert!(y.common.enabled);
    assert_eq!(
        (y.socket.to_str(), y.facility.as_str(), y.app_name.as_str()),
        (Some("/run/systemd/journal/syslog"), "local0", "nv")
    );
}

#[test]
fn printing_round_trips() {
    for c in [Config::default(), parse(EVERY_KEY).unwrap()] {
        let text = c.to_toml();
        let back = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(back, c, "{text}");
        assert_eq!(back.to_toml(), text);
    }
}

#[test]
fn errors_name_the_line_and_the_key() {
    let text = "[alerts]\n# a comment\n\ndedup_window = \"soon\"\n";
    let e = parse(text).unwrap_err();
    assert_eq!(
        e.to_string(),
        "config.toml line 4: alerts.dedup_window: expected a duration like \"10m\" (units: ms, s, m, h, d), got \"soon\""
    );
    // Every problem at once, in line order.
    let text = "\
[capture]
poll_ms = 5
interfacez = [\"eth0\"]

[notify.webhook]
url = \"ftp://ntfy.sh/x\"
preset = \"teams\"

[alerts.snooze]
new_remot = 2025-01-01T00:00:00Z
red_flag = 2025-01-01T00:00:00
[wat]
";
    let e = parse(text).unwrap_err();
    let lines: Vec<(Option<usize>, &str)> = e.problems.iter().map(|p| (p.line, p.key.as_str())).collect();
    assert_eq!(
        lines,
        [
            (Some(2), "capture.poll_ms"),
            (Some(3), "capture.interfacez"),
            (Some(6), "notify.webhook.url"),
            (Some(7), "notify.webhook.preset"),
            (Some(10), "alerts.snooze.new_remot"),
            (Some(11), "alerts.snooze.red_flag"),
            (Some(12), "wat"),
        ],
        "{e}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("line 2: capture.poll_ms: expected a whole number from 10 to 60000, got 5"),
        "{msg}"
    );
    assert!(msg.contains("line 3: capture.interfacez: unknown key (the keys of [capture] are: enabled, interfaces, filter, poll_ms, gateway, lan)"), "{msg}");
    assert!(
        msg.contains("expected a URL like \"https://ntfy.sh/mytopic\""),
        "{msg}"
    );
    assert!(
        msg.contains("unknown rule (the rules are: new_app, new_remote,"),
        "{msg}"
    );
    assert!(
        msg.contains("expected a time with its offset like 2025-06-01T18:00:00Z, got 2025-01-01T00:00:00"),
        "{msg}"
    );
}

#[test]
fn bad_values() {
    for (text, line, key, want) in [
        (
            "[log]\nlevel = \"loud\"",
            2,
            "log.level",
            "one of \"off\", \"error\"",
        ),
        (
            "[store]\nhour_rollup_max_age = \"2y\"",
            2,
            "store.hour_rollup_max_age",
            "or \"never\", got \"2y\"",
        ),
        (
            "[store]\nmax_size = \"10kB\"",
            2,
            "store.max_size",
            "at least 1MiB",
        ),
        (
            "[store]\ndata_dir = \"relative/dir\"",
            2,
            "store.data_dir",
            "an absolute path",
        ),
        (
            "[web]\nlisten = \"localhost\"",
            2,
            "web.listen",
            "an address and port",
        ),
        (
            "[judge]\nsafe_ports = [80, 70000]",
            2,
            "judge.safe_ports",
            "from 1 to 65535, got 70000",
        ),
        (
            "[judge]\nsafe_apps = [\"\"]",
            2,
            "judge.safe_apps",
            "empty entries",
        ),
        (
            "[judge]\nsafe_apps = \"firefox\"",
            2,
            "judge.safe_apps",
            "a list of strings",
        ),
        (
            "[judge]\ndaemons = [{ suffixes = [] }]",
            2,
            "judge.daemons",
            "needs a name",
        ),
        (
            "[judge.rules]\newma_alpha = 0",
            2,
            "judge.rules.ewma_alpha",
            "above 0",
        ),
        (
            "[judge.weights]\nplaintext_http = -1",
            2,
            "judge.weights.plaintext_http",
            "from 0 to 1000, got -1",
        ),
        (
            "[alerts]\nmin_severity = \"critical\"",
            2,
            "alerts.min_severity",
            "one of \"info\"",
        ),
        (
            "[alerts]\nrate_limit = \"lots\"",
            2,
            "alerts.rate_limit",
            "like \"10/1m\"",
        ),
        (
            "[alerts]\nevery_connection = \"yes\"",
            2,
            "alerts.every_connection",
            "true or false, got \"yes\"",
        ),
        (
            "[alerts.rate_limits]\nnope = \"1/1m\"",
            2,
            "alerts.rate_limits.nope",
            "unknown rule",
        ),
        ("alerts = 3", 1, "alerts", "expected a table, got 3"),
        ("[notify.pager]\nx = 1", 1, "notify.pager", "unknown key"),
        (
            "[notify.syslog]\nfacility = \"kern\"",
            2,
            "notify.syslog.facility",
            "one of user, daemon",
        ),
        (
            "[notify.webhook]\ntimeout = \"0\"",
            2,
            "notify.webhook.timeout",
            "longer than 0",
        ),
    ] {
        let e = parse(text).unwrap_err();
        assert_eq!(e.problems.len(), 1, "{text}: {e}");
        let p = &e.problems[0];
        assert_eq!((p.line, p.key.as_str()), (Some(line), key), "{text}: {e}");
        assert!(p.message.contains(want), "{text}: {e}");
    }
    // Not TOML at all: the parser's own message, with its line.
    let e = parse("[capture]\nenabled = true\npoll_ms = = 3\n").unwrap_err();
    assert_eq!(e.problems[0].line, Some(3), "{e}");
    assert!(
        e.to_string().starts_with("config.toml line 3: not valid TOML: "),
        "{e}"
    );
    // A duplicate key is a TOML error too.
    let e = parse("[web]\nenabled = true\nenabled = false\n").unwrap_err();
    assert_eq!(e.problems[0].line, Some(3), "{e}");
}

#[test]
fn empty_file_is_all_defaults_and_overrides_win() {
    let mut c = parse("").unwrap();
    assert_eq!(c, Config::default());
    let mut file =
        parse("[capture]\ninterfaces = [\"eth0\"]\npoll_ms = 3000\n[web]\nenabled = true\n").unwrap();
    file.apply_overrides(&Overrides {
        interfaces: vec!["wlan0".into()],
        filter: Some("udp".into()),
        no_capture: true,
        poll_ms: Some(100),
        data_dir: Some("/tmp/nv".into()),
        no_web: true,
        listen: Some("127.0.0.1:9999".parse().unwrap()),
        gateway: true,
        lan: vec![engine::lan::Prefix::parse("192.168.7.0/24").unwrap()],
        every_connection: true,
        webhook_url: Some("http://127.0.0.1:1/x".into()),
    });
    assert!(file.capture.gateway);
    assert_eq!(file.capture.lan[0].to_string(), "192.168.7.0/24");
    assert_eq!(file.capture.interfaces, ["wlan0"]);
    assert_eq!(file.capture.filter.as_deref(), Some("udp"));
    assert!(!file.capture.enabled && !file.web.enabled && file.alerts.every_connection);
    assert_eq!(file.capture.poll_ms, Some(100));
    assert_eq!(file.store.data_dir.as_deref(), Some(Path::new("/tmp/nv")));
    assert_eq!(file.web.listen.port(), 9999);
    assert_eq!(file.notify.webhook.url.as_deref(), Some("http://127.0.0.1:1/x"));
    // No flags: the file stays as it was.
    let before = c.clone();
    c.apply_overrides(&Overrides::default());
    assert_eq!(c, before);
}

#[test]
fn retention_maps_onto_the_store() {
    let c =
        parse("[store]\nraw_max_age = \"1d\"\nminute_rollup_max_age = \"never\"\nmax_size = \"unlimited\"")
            .unwrap();
    let r = c.store.retention();
    assert_eq!(r.raw_max_age, Some(86_400_000_000_000));
    assert_eq!(r.minute_rollup_max_age, None);
    assert_eq!(r.max_bytes, None);
    assert_eq!(Config::default().store.retention(), store::Retention::default());
}

#[test]
fn parser_never_panics_on_garbage() {
    let base = EVERY_KEY.as_bytes();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..3000 {
        let mut b = base.to_vec();
        for _ in 0..4 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x as usize) % b.len();
            b[i] = b"=[]\"{},.\n #a0-:'"[(x >> 40) as usize % 16];
        }
        if let Ok(t) = std::str::from_utf8(&b) {
            let _ = parse(t);
        }
    }
}

#[test]
fn gateway_keys() {
    let c = parse("[capture]\ngateway = true\nlan = [\"192.168.1.0/24\", \"fd00::/8\"]\n").unwrap();
    assert!(c.capture.gateway);
    assert_eq!(c.capture.lan.len(), 2);
    assert!(
        c.to_toml().contains("lan = [\"192.168.1.0/24\", \"fd00::/8\"]"),
        "{}",
        c.to_toml()
    );
    let msg = parse("[capture]\nlan = [\"192.168.1.0/40\"]\n").unwrap_err();
    let msg = format!("{msg:?}");
    assert!(msg.contains("capture.lan") && msg.contains("0 to 32"), "{msg}");
}
