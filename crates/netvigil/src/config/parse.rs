//! TOML text -> [`Config`]: walks the spanned document of the `toml` parser, so every unknown
//! key and bad value is reported with its line, and collects every problem before giving up.

use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use engine::judge::{Severity, SystemDaemon};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::units::{RateLimit, parse_duration, parse_size, parse_time};
use super::{CONNECTION_RULE, ChannelCommon, Config, Facility, Problem, RULES, WebhookPreset, is_rule_name};

type Val<'i> = Spanned<DeValue<'i>>;

struct Ctx<'t> {
    text: &'t str,
    problems: Vec<Problem>,
}

fn set<T>(slot: &mut T, v: Option<T>) {
    if let Some(v) = v {
        *slot = v;
    }
}

impl Ctx<'_> {
    fn line(&self, span: &Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn err(&mut self, span: &Range<usize>, key: &str, message: impl Into<String>) {
        let line = Some(self.line(span));
        self.problems.push(Problem {
            line,
            key: key.to_string(),
            message: message.into(),
        });
    }

    /// The value as written in the file (cut short), for "got ..." in messages.
    fn got(&self, v: &Val<'_>) -> String {
        let s = v.span();
        let raw = self
            .text
            .get(s.start..s.end.min(self.text.len()))
            .unwrap_or("")
            .trim();
        let mut out: String = raw.chars().take(60).collect();
        if raw.chars().count() > 60 {
            out.push_str("...");
        }
        if out.is_empty() { "nothing".into() } else { out }
    }

    fn expected(&mut self, key: &str, v: &Val<'_>, what: &str) {
        let got = self.got(v);
        self.err(&v.span(), key, format!("expected {what}, got {got}"));
    }

    fn unknown(&mut self, key: &str, span: &Range<usize>, known: &[&str]) {
        let section = key.rsplit_once('.').map_or("the top level", |(s, _)| s);
        self.err(
            span,
            key,
            format!("unknown key (the keys of [{section}] are: {})", known.join(", ")),
        );
    }

    fn table<'a, 'i>(&mut self, key: &str, v: &'a Val<'i>) -> Option<&'a DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.expected(key, v, "a table");
                None
            }
        }
    }

    fn bool(&mut self, key: &str, v: &Val<'_>) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.expected(key, v, "true or false");
                None
            }
        }
    }

    fn int(&mut self, key: &str, v: &Val<'_>, min: u64, max: u64) -> Option<u64> {
        let n = match v.get_ref() {
            DeValue::Integer(i) => u64::from_str_radix(i.as_str(), i.radix()).ok(),
            _ => None,
        };
        match n {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.expected(key, v, &format!("a whole number from {min} to {max}"));
                None
            }
        }
    }

    fn float(&mut self, key: &str, v: &Val<'_>, min: f64, max: f64) -> Option<f64> {
        let f = match v.get_ref() {
            DeValue::Float(f) => f.as_str().parse::<f64>().ok(),
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok().map(|n| n as f64),
            _ => None,
        };
        match f {
            Some(f) if f.is_finite() && f >= min && f <= max => Some(f),
            _ => {
                self.expected(key, v, &format!("a number from {min} to {max}"));
                None
            }
        }
    }

    fn string<'a>(&mut self, key: &str, v: &'a Val<'_>) -> Option<&'a str> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.as_ref()),
            _ => {
                self.expected(key, v, "a string in quotes");
                None
            }
        }
    }

    fn array<'a, 'i>(&mut self, key: &str, v: &'a Val<'i>, what: &str) -> Option<&'a [Val<'i>]> {
        match v.get_ref() {
            DeValue::Array(a) => Some(&a[..]),
            _ => {
                self.expected(key, v, &format!("a list of {what} in [ ]"));
                None
            }
        }
    }

    fn strings(&mut self, key: &str, v: &Val<'_>) -> Option<Vec<String>> {
        let items = self.array(key, v, "strings")?;
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for it in items {
            match self.string(key, it) {
                Some(s) if !s.trim().is_empty() => out.push(s.to_string()),
                Some(_) => {
                    self.err(&it.span(), key, "empty entries are not allowed");
                    ok = false;
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn ints<T: TryFrom<u64>>(&mut self, key: &str, v: &Val<'_>, min: u64, max: u64) -> Option<Vec<T>> {
        let items = self.array(key, v, "numbers")?;
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for it in items {
            match self.int(key, it, min, max).and_then(|n| T::try_from(n).ok()) {
                Some(n) => out.push(n),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn duration(&mut self, key: &str, v: &Val<'_>) -> Option<Duration> {
        match v.get_ref() {
            DeValue::String(s) => {
                if let Some(d) = parse_duration(s) {
                    return Some(d);
                }
            }
            DeValue::Integer(i) if i.as_str() == "0" => return Some(Duration::ZERO),
            _ => {}
        }
        self.expected(key, v, "a duration like \"10m\" (units: ms, s, m, h, d)");
        None
    }

    /// A duration, or `"never"` for none.
    fn opt_duration(&mut self, key: &str, v: &Val<'_>, none: &str) -> Option<Option<Duration>> {
        if let DeValue::String(s) = v.get_ref()
            && s.as_ref() == none
        {
            return Some(None);
        }
        if let DeValue::String(s) = v.get_ref()
            && let Some(d) = parse_duration(s)
        {
            return Some(Some(d));
        }
        self.expected(
            key,
            v,
            &format!("a duration like \"7d\" (units: ms, s, m, h, d) or \"{none}\""),
        );
        None
    }

    fn positive_duration(&mut self, key: &str, v: &Val<'_>) -> Option<Duration> {
        let d = self.duration(key, v)?;
        if d.is_zero() {
            self.err(&v.span(), key, "must be longer than 0");
            return None;
        }
        Some(d)
    }

    fn nanos(&mut self, key: &str, v: &Val<'_>) -> Option<i64> {
        self.duration(key, v)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    }

    fn severity(&mut self, key: &str, v: &Val<'_>) -> Option<Severity> {
        if let DeValue::String(s) = v.get_ref()
            && let Some(sev) = Severity::parse(s)
        {
            return Some(sev);
        }
        self.expected(key, v, "one of \"info\", \"low\", \"medium\", \"high\"");
        None
    }

    fn time(&mut self, key: &str, v: &Val<'_>) -> Option<i64> {
        let text = match v.get_ref() {
            DeValue::String(s) => s.to_string(),
            DeValue::Datetime(d) => d.to_string(),
            _ => String::new(),
        };
        let t = parse_time(&text);
        if t.is_none() {
            self.expected(key, v, "a time with its offset like 2025-06-01T18:00:00Z");
        }
        t
    }

    fn rule_name(&mut self, key: &str, span: &Range<usize>, name: &str) -> bool {
        if is_rule_name(name) {
            return true;
        }
        let mut names: Vec<&str> = RULES.iter().map(|r| r.as_str()).collect();
        names.push(CONNECTION_RULE);
        self.err(
            span,
            key,
            format!("unknown rule (the rules are: {})", names.join(", ")),
        );
        false
    }
}

fn entries<'a, 'i>(t: &'a DeTable<'i>) -> impl Iterator<Item = (&'a str, Range<usize>, &'a Val<'i>)> {
    t.iter().map(|(k, v)| (k.get_ref().as_ref(), k.span(), v))
}

/// Parses a whole document; every problem found, or the configuration.
pub(super) fn parse(text: &str) -> Result<Config, Vec<Problem>> {
    let doc = match DeTable::parse(text) {
        Ok(d) => d,
        Err(e) => {
            let mut ctx = Ctx {
                text,
                problems: Vec::new(),
            };
            let span = e.span().unwrap_or(0..0);
            let msg = e.message().trim().to_string();
            ctx.err(&span, "", format!("not valid TOML: {msg}"));
            return Err(ctx.problems);
        }
    };
    let mut ctx = Ctx {
        text,
        problems: Vec::new(),
    };
    let mut c = Config::default();
    const TOP: [&str; 7] = ["capture", "store", "web", "judge", "alerts", "notify", "log"];
    for (key, kspan, v) in entries(doc.get_ref()) {
        let Some(t) = (if TOP.contains(&key) {
            ctx.table(key, v)
        } else {
            None
        }) else {
            if !TOP.contains(&key) {
                ctx.unknown(key, &kspan, &TOP);
            }
            continue;
        };
        match key {
            "capture" => capture(&mut ctx, t, &mut c),
            "store" => store(&mut ctx, t, &mut c),
            "web" => web(&mut ctx, t, &mut c),
            "judge" => judge(&mut ctx, t, &mut c.judge),
            "alerts" => alerts(&mut ctx, t, &mut c),
            "log" => log(&mut ctx, t, &mut c),
            _ => notify(&mut ctx, t, &mut c),
        }
    }
    if ctx.problems.is_empty() {
        Ok(c)
    } else {
        ctx.problems.sort_by_key(|p| p.line);
        Err(ctx.problems)
    }
}

fn capture(ctx: &mut Ctx<'_>, t: &DeTable<'_>, c: &mut Config) {
    const KEYS: [&str; 6] = ["enabled", "interfaces", "filter", "poll_ms", "gateway", "lan"];
    let cap = &mut c.capture;
    for (k, ks, v) in entries(t) {
        let key = format!("capture.{k}");
        match k {
            "enabled" => set(&mut cap.enabled, ctx.bool(&key, v)),
            "interfaces" => set(&mut cap.interfaces, ctx.strings(&key, v)),
            "gateway" => set(&mut cap.gateway, ctx.bool(&key, v)),
            "lan" => {
                if let Some(list) = ctx.strings(&key, v) {
                    let mut out = Vec::with_capacity(list.len());
                    for s in &list {
                        match engine::lan::Prefix::parse(s) {
                            Ok(p) => out.push(p),
                            Err(e) => ctx.err(&v.span(), &key, e.to_string()),
                        }
                    }
                    if out.len() == list.len() {
                        cap.lan = out;
                    }
                }
            }
            "filter" => {
                if let Some(s) = ctx.string(&key, v) {
                    cap.filter = Some(s.trim().to_string()).filter(|s| !s.is_empty());
                }
            }
            "poll_ms" => {
                if let DeValue::String(s) = v.get_ref()
                    && s.as_ref() == "auto"
                {
                    cap.poll_ms = None;
                } else if let DeValue::Integer(_) = v.get_ref() {
                    set(&mut cap.poll_ms, ctx.int(&key, v, 10, 60_000).map(Some));
                } else {
                    ctx.expected(
                        &key,
                        v,
                        "a whole number of milliseconds from 10 to 60000, or \"auto\"",
                    );
                }
            }
            _ => ctx.unknown(&key, &ks, &KEYS),
        }
    }
}

fn store(ctx: &mut Ctx<'_>, t: &DeTable<'_>, c: &mut Config) {
    const KEYS: [&str; 7] = [
        "enabled",
        "data_dir",
        "raw_max_age",
        "minute_rollup_max_age",
        "hour_rollup_max_age",
        "max_size",
        "payload_sample_bytes",
    ];
    let s = &mut c.store;
    for (k, ks, v) in entries(t) {
        let key = format!("store.{k}");
        match k {
            "enabled" => set(&mut s.enabled, ctx.bool(&key, v)),
            "data_dir" => {
                if let Some(p) = ctx.string(&key, v) {
                    let p = PathBuf::from(p);
                    if p.is_absolute() {
                        s.data_dir = Some(p);
                    } else {
                        ctx.expected(&key, v, "an absolute path");
                    }
                }
            }
            "raw_max_age" => set(&mut s.raw_max_age, ctx.opt_duration(&key, v, "never")),
            "minute_rollup_max_age" => set(&mut s.minute_rollup_max_age, ctx.opt_duration(&key, v, "never")),
            "hour_rollup_max_age" => set(&mut s.hour_rollup_max_age, ctx.opt_duration(&key, v, "never")),
            "max_size" => {
                let got = match v.get_ref() {
                    DeValue::String(x) if x.as_ref() == "unlimited" => Some(None),
                    DeValue::String(x) => parse_size(x).filter(|&n| n >= 1 << 20).map(Some),
                    _ => None,
                };
                if got.is_none() {
                    ctx.expected(
                        &key,
                        v,
                        "a size of at least 1MiB like \"1GiB\" or \"500MB\", or \"unlimited\"",
                    );
                }
                set(&mut s.max_size, got);
            }
            "payload_sample_bytes" => set(
                &mut s.payload_sample_bytes,
                ctx.int(&key, v, 0, 65_536).map(|n| n as u32),
            ),
            _ => ctx.unknown(&key, &ks, &KEYS),
        }
    }
}

fn web(ctx: &mut Ctx<'_>, t: &DeTable<'_>, c: &mut Config) {
    const KEYS: [&str; 2] = ["enabled", "listen"];
    for (k, ks, v) in entries(t) {
        let key = format!("web.{k}");
        match k {
            "enabled" => set(&mut c.web.enabled, ctx.bool(&key, v)),
            "listen" => {
                let a = ctx.string(&key, v).map(|s| s.parse::<std::net::SocketAddr>());
                match a {
                    Some(Ok(a)) => c.web.listen = a,
                    Some(Err(_)) => ctx.expected(
                        &key,
                        v,
                        "an address and port like \"127.0.0.1:8077\" or \"[::1]:8077\"",
                    ),
                    None => {}
                }
            }
            _ => ctx.unknown(&key, &ks, &KEYS),
        }
    }
}

fn log(ctx: &mut Ctx<'_>, t: &DeTable<'_>, c: &mut Config) {
    const KEYS: [&str; 1] = ["level"];
    for (k, ks, v) in entries(t) {
        let key = format!("log.{k}");
        match k {
            "level" => match ctx.string(&key, v).map(crate::logging::LogLevel::parse) {
                Some(Some(l)) => c.log.level = l,
                Some(None) => ctx.expected(
                    &key,
                    v,
                    "one of \"off\", \"error\", \"warn\", \"info\", \"debug\", \"trace\"",
                ),
                None => {}
            },
            _ => ctx.unknown(&key, &ks, &KEYS),
        }
    }
}

const JUDGE_KEYS: [&str; 21] = [
    "standard_ports",
    "quic_is_standard",
    "safe_apps",
    "safe_hosts",
    "safe_ports",
    "hosting_asns",
    "cloud_asns",
    "vpn_apps",
    "vendor_suffixes",
    "daemons",
    "upload_ratio",
    "upload_min_bytes",
    "many_remotes",
    "pooling_connections",
    "retrans_min",
    "retrans_percent",
    "rx_queue_after",
    "weights",
    "privacy",
    "rules",
    "local_addrs",
];

fn judge(ctx: &mut Ctx<'_>, t: &DeTable<'_>, j: &mut engine::judge::Config) {
    const BIG: u64 = u64::MAX >> 1;
    for (k, ks, v) in entries(t) {
        let key = format!("judge.{k}");
        match k {
            "standard_ports" => set(&mut j.standard_ports, ctx.ints(&key, v, 1, 65_535)),
            "quic_is_standard" => set(&mut j.quic_is_standard, ctx.bool(&key, v)),
            "safe_apps" => set(&mut j.safe_apps, ctx.strings(&key, v)),
            "safe_hosts" => set(&mut j.safe_hosts, ctx.strings(&key, v)),
            "safe_ports" => set(&mut j.safe_ports, ctx.ints(&key, v, 1, 65_535)),
            "hosting_asns" => set(&mut j.hosting_asns, ctx.ints(&key, v, 1, u64::from(u32::MAX))),
            "cloud_asns" => set(&mut j.cloud_asns, ctx.ints(&key, v, 1, u64::from(u32::MAX))),
            "vpn_apps" => set(&mut j.vpn_apps, ctx.strings(&key, v)),
            "vendor_suffixes" => set(&mut j.vendor_suffixes, ctx.strings(&key, v)),
            "daemons" => set(&mut j.daemons, daemons(ctx, &key, v)),
            "local_addrs" => {
                if let Some(list) = ctx.strings(&key, v) {
                    let mut out = Vec::new();
                    for (s, item) in list.iter().zip(ctx.array(&key, v, "addresses").unwrap_or(&[])) {
                        match s.parse() {
                            Ok(a) => out.push(a),
                            Err(_) => ctx.expected(&key, item, "an IP address like \"192.0.2.7\""),
                        }
                    }
                    j.local_addrs = out;
                }
            }
            "upload_ratio" => set(&mut j.upload_ratio, ctx.int(&key, v, 1, BIG)),
            "upload_min_bytes" => set(&mut j.upload_min_bytes, ctx.int(&key, v, 0, BIG)),
            "many_remotes" => set(
                &mut j.many_remotes,
                ctx.int(&key, v, 1, 1 << 32).map(|n| n as usize),
            ),
            "pooling_connections" => set(
                &mut j.pooling_connections,
                ctx.int(&key, v, 1, u64::from(u32::MAX)).map(|n| n as u32),
            ),
            "retrans_min" => set(
                &mut j.retrans_min,
                ctx.int(&key, v, 0, u64::from(u32::MAX)).map(|n| n as u32),
            ),
            "retrans_percent" => set(&mut j.retrans_percent, ctx.int(&key, v, 0, 100).map(|n| n as u32)),
            "rx_queue_after" => set(&mut j.rx_queue_after, ctx.nanos(&key, v)),
            "weights" => {
                if let Some(t) = ctx.table(&key, v) {
                    weights(ctx, t, &mut j.weights);
                }
            }
            "privacy" => {
                if let Some(t) = ctx.table(&key, v) {
                    privacy(ctx, t, &mut j.privacy);
                }
            }
            "rules" => {
                if let Some(t) = ctx.table(&key, v) {
                    rules(ctx, t, &mut j.alerts);
                }
            }
            _ => ctx.unknown(&key, &ks, &JUDGE_KEYS),
        }
    }
}

fn daemons(ctx: &mut Ctx<'_>, key: &str, v: &Val<'_>) -> Option<Vec<SystemDaemon>> {
    let items = ctx.array(
        key,
        v,
        "tables like { name = \"chronyd\", suffixes = [], ports = [123] }",
    )?;
    let mut out = Vec::new();
    let mut ok = true;
    for it in items {
        let Some(t) = ctx.table(key, it) else {
            ok = false;
            continue;
        };
        let mut d = SystemDaemon {
            name: String::new(),
            suffixes: Vec::new(),
            ports: Vec::new(),
        };
        for (k, ks, v) in entries(t) {
            let key = format!("{key}.{k}");
            match k {
                "name" => set(&mut d.name, ctx.string(&key, v).map(str::to_string)),
                "suffixes" => set(&mut d.suffixes, ctx.strings(&key, v)),
                "ports" => set(&mut d.ports, ctx.ints(&key, v, 1, 65_535)),
                _ => {
                    ctx.unknown(&key, &ks, &["name", "suffixes", "ports"]);
                    ok = false;
                }
            }
        }
        if d.name.trim().is_empty() {
            ctx.err(&it.span(), key, "every daemon needs a name");
            ok = false;
        }
        out.push(d);
    }
    ok.then_some(out)
}

macro_rules! u32_fields {
    ($ctx:expr, $t:expr, $section:literal, $target:expr, [$($f:ident),* $(,)?]) => {{
        const KEYS: &[&str] = &[$(stringify!($f)),*];
        for (k, ks, v) in entries($t) {
            let key = format!(concat!($section, ".{}"), k);
            match k {
                $(stringify!($f) => set(&mut $target.$f, $ctx.int(&key, v, 0, 1000).map(|n| n as u32)),)*
                _ => $ctx.unknown(&key, &ks, KEYS),
            }
        }
    }};
}

fn weights(ctx: &mut Ctx<'_>, t: &DeTable<'_>, w: &mut engine::judge::Weights) {
    u32_fields!(
        ctx,
        t,
        "judge.weights",
        w,
        [
            unpackaged_binary,
            plaintext_http,
            upload_heavy,
            unusual_port,
            no_reverse_dns,
            hosting_provider,
            big_cloud,
            daemon_outside,
            high_retransmissions,
            rx_queue_backlog,
            many_remotes,
            listening_all,
        ]
    );
}

fn privacy(ctx: &mut Ctx<'_>, t: &DeTable<'_>, p: &mut engine::judge::PrivacyWeights) {
    u32_fields!(
        ctx,
        t,
        "judge.privacy",
        p,
        [
            ads,
            analytics,
            social,
            cdn,
            other,
            per_extra_connection,
            max_extra,
        ]
    );
}

fn rules(ctx: &mut Ctx<'_>, t: &DeTable<'_>, a: &mut engine::judge::AlertConfig) {
    const KEYS: [&str; 13] = [
        "idle_after",
        "ewma_alpha",
        "warmup_minutes",
        "warmup_connections",
        "spike_z",
        "spike_min_bytes",
        "burst_min_bytes",
        "burst_ratio",
        "max_step",
        "max_apps",
        "max_remotes_per_app",
        "max_ports_per_app",
        "max_recent_ids",
    ];
    const BIG: u64 = u64::MAX >> 1;
    const MAX32: u64 = u32::MAX as u64;
    for (k, ks, v) in entries(t) {
        let key = format!("judge.rules.{k}");
        match k {
            "idle_after" => set(&mut a.idle_after, ctx.nanos(&key, v)),
            "ewma_alpha" => {
                let f = ctx.float(&key, v, 0.0, 1.0);
                if f == Some(0.0) {
                    ctx.expected(&key, v, "a number above 0 and at most 1");
                } else {
                    set(&mut a.ewma_alpha, f);
                }
            }
            "warmup_minutes" => set(
                &mut a.warmup_minutes,
                ctx.int(&key, v, 0, MAX32).map(|n| n as u32),
            ),
            "warmup_connections" => set(
                &mut a.warmup_connections,
                ctx.int(&key, v, 0, MAX32).map(|n| n as u32),
            ),
            "spike_z" => set(&mut a.spike_z, ctx.float(&key, v, 0.0, 1000.0)),
            "spike_min_bytes" => set(&mut a.spike_min_bytes, ctx.int(&key, v, 0, BIG)),
            "burst_min_bytes" => set(&mut a.burst_min_bytes, ctx.int(&key, v, 0, BIG)),
            "burst_ratio" => set(&mut a.burst_ratio, ctx.int(&key, v, 1, BIG)),
            "max_step" => set(&mut a.max_step, ctx.nanos(&key, v)),
            "max_apps" => set(&mut a.max_apps, ctx.int(&key, v, 1, 1 << 24).map(|n| n as usize)),
            "max_remotes_per_app" => set(
                &mut a.max_remotes_per_app,
                ctx.int(&key, v, 1, 1 << 24).map(|n| n as usize),
            ),
            "max_ports_per_app" => set(
                &mut a.max_ports_per_app,
                ctx.int(&key, v, 1, 65_536).map(|n| n as usize),
            ),
            "max_recent_ids" => set(
                &mut a.max_recent_ids,
                ctx.int(&key, v, 1, 1 << 24).map(|n| n as usize),
            ),
            _ => ctx.unknown(&key, &ks, &KEYS),
        }
    }
}

fn rate_limit(ctx: &mut Ctx<'_>, key: &str, v: &Val<'_>) -> Option<Option<RateLimit>> {
    if let DeValue::String(s) = v.get_ref() {
        if s.as_ref() == "off" {
            return Some(None);
        }
        if let Some(r) = RateLimit::parse(s) {
            return Some(Some(r));
        }
    }
    ctx.expected(
        key,
        v,
        "a limit like \"10/1m\" (at most 10 alerts a minute) or \"off\"",
    );
    None
}

fn alerts(ctx: &mut Ctx<'_>, t: &DeTable<'_>, c: &mut Config) {
    const KEYS: [&str; 10] = [
        "min_severity",
        "dedup_window",
        "rate_limit",
        "rate_limits",
        "snooze",
        "every_connection",
        "queue",
        "self_cpu_percent",
        "self_rss_mb",
        "self_commit_lag",
    ];
    let a = &mut c.alerts;
    for (k, ks, v) in entries(t) {
        let key = format!("alerts.{k}");
        match k {
            "min_severity" => set(&mut a.min_severity, ctx.severity(&key, v)),
            "dedup_window" => set(&mut a.dedup_window, ctx.duration(&key, v)),
            "rate_limit" => set(&mut a.rate_limit, rate_limit(ctx, &key, v)),
            "every_connection" => set(&mut a.every_connection, ctx.bool(&key, v)),
            "queue" => set(&mut a.queue, ctx.int(&key, v, 1, 1 << 20).map(|n| n as usize)),
            "self_cpu_percent" => set(
                &mut a.self_cpu_percent,
                ctx.int(&key, v, 1, 100).map(|n| n as u32),
            ),
            "self_rss_mb" => set(&mut a.self_rss_mb, ctx.int(&key, v, 8, 1 << 20).map(|n| n as u32)),
            "self_commit_lag" => set(&mut a.self_commit_lag, ctx.duration(&key, v)),
            "rate_limits" => {
                let Some(t) = ctx.table(&key, v) else { continue };
                for (rule, rs, rv) in entries(t) {
                    let rkey = format!("{key}.{rule}");
                    if ctx.rule_name(&rkey, &rs, rule)
                        && let Some(r) = rate_limit(ctx, &rkey, rv)
                    {
                        a.rate_limits.insert(rule.to_string(), r);
                    }
                }
            }
            "snooze" => {
                let Some(t) = ctx.table(&key, v) else { continue };
                for (rule, rs, rv) in entries(t) {
                    let rkey = format!("{key}.{rule}");
                    if rule == "all" {
                        set(&mut a.snooze_all, ctx.time(&rkey, rv).map(Some));
                    } else if ctx.rule_name(&rkey, &rs, rule)
                        && let Some(until) = ctx.time(&rkey, rv)
                    {
                        a.snooze.insert(rule.to_string(), until);
                    }
                }
            }
            _ => ctx.unknown(&key, &ks, &KEYS),
        }
    }
}

/// `enabled`, `min_severity`, `connections`: `true` when `k` was one of them.
fn common(ctx: &mut Ctx<'_>, key: &str, k: &str, v: &Val<'_>, c: &mut ChannelCommon) -> bool {
    match k {
        "enabled" => set(&mut c.enabled, ctx.bool(key, v)),
        "min_severity" => set(&mut c.min_severity, ctx.severity(key, v)),
        "connections" => set(&mut c.connections, ctx.bool(key, v)),
        _ => return false,
    }
    true
}

fn notify(ctx: &mut Ctx<'_>, t: &DeTable<'_>, c: &mut Config) {
    const KEYS: [&str; 4] = ["terminal", "desktop", "webhook", "syslog"];
    let n = &mut c.notify;
    for (k, ks, v) in entries(t) {
        let section = format!("notify.{k}");
        if !KEYS.contains(&k) {
            ctx.unknown(&section, &ks, &KEYS);
            continue;
        }
        let Some(t) = ctx.table(&section, v) else { continue };
        for (f, fs, v) in entries(t) {
            let key = format!("{section}.{f}");
            match k {
                "terminal" => {
                    if !common(ctx, &key, f, v, &mut n.terminal.common) {
                        ctx.unknown(&key, &fs, &["enabled", "min_severity", "connections"]);
                    }
                }
                "desktop" => {
                    if common(ctx, &key, f, v, &mut n.desktop.common) {
                        continue;
                    }
                    match f {
                        "bus" => {
                            if let Some(s) = ctx.string(&key, v) {
                                n.desktop.bus = Some(s.trim().to_string()).filter(|s| !s.is_empty());
                            }
                        }
                        "expire" => set(&mut n.desktop.expire, ctx.opt_duration(&key, v, "default")),
                        _ => ctx.unknown(
                            &key,
                            &fs,
                            &["enabled", "min_severity", "connections", "bus", "expire"],
                        ),
                    }
                }
                "webhook" => {
                    let w = &mut n.webhook;
                    if common(ctx, &key, f, v, &mut w.common) {
                        continue;
                    }
                    match f {
                        "url" => {
                            if let Some(s) = ctx.string(&key, v) {
                                let s = s.trim();
                                if s.is_empty() {
                                    w.url = None;
                                } else {
                                    match crate::notify::webhook::Url::parse(s) {
                                        Ok(_) => w.url = Some(s.to_string()),
                                        Err(e) => ctx.err(&v.span(), &key, e),
                                    }
                                }
                            }
                        }
                        "preset" => match ctx.string(&key, v).map(WebhookPreset::parse) {
                            Some(Some(p)) => w.preset = p,
                            Some(None) => {
                                ctx.expected(&key, v, "one of \"json\", \"ntfy\", \"slack\", \"discord\"")
                            }
                            None => {}
                        },
                        "retries" => set(&mut w.retries, ctx.int(&key, v, 0, 100).map(|n| n as u32)),
                        "backoff_initial" => set(&mut w.backoff_initial, ctx.positive_duration(&key, v)),
                        "backoff_max" => set(&mut w.backoff_max, ctx.positive_duration(&key, v)),
                        "timeout" => set(&mut w.timeout, ctx.positive_duration(&key, v)),
                        _ => ctx.unknown(
                            &key,
                            &fs,
                            &[
                                "enabled",
                                "min_severity",
                                "connections",
                                "url",
                                "preset",
                                "retries",
                                "backoff_initial",
                                "backoff_max",
                                "timeout",
                            ],
                        ),
                    }
                }
                _ => {
                    let s = &mut n.syslog;
                    if common(ctx, &key, f, v, &mut s.common) {
                        continue;
                    }
                    match f {
                        "socket" => {
                            if let Some(p) = ctx.string(&key, v) {
                                if p.starts_with('/') {
                                    s.socket = PathBuf::from(p);
                                } else {
                                    ctx.expected(&key, v, "an absolute path like \"/dev/log\"");
                                }
                            }
                        }
                        "facility" => match ctx.string(&key, v).map(Facility::parse) {
                            Some(Some(fa)) => s.facility = fa,
                            Some(None) => {
                                let names = Facility::names();
                                ctx.expected(&key, v, &format!("one of {names}"));
                            }
                            None => {}
                        },
                        "app_name" => {
                            if let Some(a) = ctx.string(&key, v) {
                                if !a.is_empty()
                                    && a.len() <= 48
                                    && a.bytes().all(|b| (33..=126).contains(&b))
                                {
                                    s.app_name = a.to_string();
                                } else {
                                    ctx.expected(
                                        &key,
                                        v,
                                        "1 to 48 printable ASCII characters without spaces",
                                    );
                                }
                            }
                        }
                        _ => ctx.unknown(
                            &key,
                            &fs,
                            &[
                                "enabled",
                                "min_severity",
                                "connections",
                                "socket",
                                "facility",
                                "app_name",
                            ],
                        ),
                    }
                }
            }
        }
    }
    if n.webhook.backoff_max < n.webhook.backoff_initial {
        n.webhook.backoff_max = n.webhook.backoff_initial;
    }
}
