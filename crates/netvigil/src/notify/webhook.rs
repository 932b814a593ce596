//! The webhook channel: one HTTP POST per notice, with a JSON body shaped by a preset (the
//! alert record itself, ntfy, Slack, Discord), over `crate::https` (`https://` with the system's
//! root certificates, or plain `http://`).
//!
//! Retries: a connection error, a timeout, 408, 429 and 5xx are retried up to `retries` times,
//! waiting `backoff_initial × 2^n` capped at `backoff_max`, each wait drawn at random between
//! half and all of it (jitter, so many netvigils do not retry in step); a `Retry-After` of at
//! most `backoff_max` seconds is honoured. Other answers (4xx) and refused certificates fail at
//! once.

use std::time::Duration;

use engine::judge::Severity;

use super::{Notice, Sink, Stop};
use crate::config::{WebhookConfig, WebhookPreset};
pub use crate::https::Url;
use crate::https::{Client, ErrorKind};

/// The outcome of one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// 2xx.
    Ok(u16),
    /// Worth another try (connection error, timeout, 408, 429, 5xx), with the server's
    /// Retry-After in seconds when it gave one.
    Retry(String, Option<u64>),
    /// Not worth another try (other status codes, a refused certificate).
    Fail(String),
}

/// One POST of `body` (redirects followed); never longer than about the client's timeout.
pub fn post(client: &Client, url: &Url, content_type: &str, body: &[u8]) -> Attempt {
    match client.send("POST", url, Some(content_type), body) {
        Ok(r) => match r.status {
            200..=299 => Attempt::Ok(r.status),
            408 | 429 | 500..=599 => {
                Attempt::Retry(format!("the server answered {}", r.status), r.retry_after())
            }
            code => Attempt::Fail(format!(
                "the server answered {code} (not retried: check the URL and the preset)"
            )),
        },
        // A garbled answer is retried too (a proxy restarting), as before TLS came.
        Err(e) if e.kind.is_transient() || matches!(e.kind, ErrorKind::Protocol(_)) => {
            Attempt::Retry(e.to_string(), None)
        }
        Err(e) => Attempt::Fail(format!("{e} (not retried)")),
    }
}

/// A small random number generator for jitter (xorshift, seeded by the std hasher's keys).
#[derive(Debug)]
struct Jitter(u64);

impl Jitter {
    fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0x6e65_7476_6967_696c);
        Self(h.finish() | 1)
    }
    /// In [0, 1).
    fn next(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The wait before retry number `n` (0-based): `initial × 2^n`, capped at `max`, then a random
/// part of it between a half and all (`r` in [0, 1)).
pub fn backoff(initial: Duration, max: Duration, n: u32, r: f64) -> Duration {
    let full = initial.saturating_mul(1u32 << n.min(20)).min(max);
    full.mul_f64(0.5 + 0.5 * r.clamp(0.0, 1.0))
}

/// The body of a notice in a preset's shape, and its content type.
pub fn body(preset: WebhookPreset, n: &Notice, url: &Url) -> String {
    let mut out = String::new();
    let s = |out: &mut String, v: &str| engine::record::write_json_str(out, v);
    match preset {
        WebhookPreset::Json => out.push_str(&n.json),
        WebhookPreset::Ntfy => {
            let topic = ntfy_topic(url).unwrap_or_default();
            let priority = match n.severity {
                Severity::Info => 2,
                Severity::Low => 3,
                Severity::Medium => 4,
                Severity::High => 5,
            };
            out.push_str("{\"topic\":");
            s(&mut out, &topic);
            out.push_str(",\"title\":");
            s(&mut out, &n.title());
            out.push_str(",\"message\":");
            s(&mut out, &n.line());
            out.push_str(&format!(",\"priority\":{priority},\"tags\":["));
            s(&mut out, n.severity.as_str());
            out.push(',');
            s(&mut out, n.rule);
            out.push_str("]}");
        }
        WebhookPreset::Slack => {
            // Slack reads &, < and > as markup: escape them (names come from the network).
            let text = format!("*{}*\n{}", n.title(), n.line())
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;");
            out.push_str("{\"text\":");
            s(&mut out, &text);
            out.push('}');
        }
        WebhookPreset::Discord => {
            // At most 2000 characters; no mentions (an "@everyone" in a host name pings no one).
            let text: String = format!("**{}**\n{}", n.title(), n.line())
                .chars()
                .take(2000)
                .collect();
            out.push_str("{\"username\":\"netvigil\",\"content\":");
            s(&mut out, &text);
            out.push_str(",\"allowed_mentions\":{\"parse\":[]}}");
        }
    }
    out
}

/// ntfy's topic: the last path segment of the URL users copy from ntfy (`http://host/topic`).
fn ntfy_topic(url: &Url) -> Option<String> {
    let path = url.path.split('?').next().unwrap_or("");
    let topic = path.trim_end_matches('/').rsplit('/').next()?;
    (!topic.is_empty()).then(|| topic.to_string())
}

/// The webhook channel.
#[derive(Debug)]
pub struct Webhook {
    url: Url,
    /// Where the POST goes (ntfy's JSON publishing goes to the server's root).
    target: Url,
    preset: WebhookPreset,
    retries: u32,
    initial: Duration,
    max: Duration,
    client: Client,
    jitter: Jitter,
}

impl Webhook {
    /// Errors: a URL that is not `http://` or `https://`, an ntfy URL without a topic, an
    /// `https://` URL on a machine without root certificates.
    pub fn new(url: &str, c: &WebhookConfig) -> Result<Self, String> {
        let parsed = Url::parse(url).map_err(|e| format!("notify.webhook.url: {e}"))?;
        let client = if parsed.tls {
            Client::new().map_err(|e| format!("notify.webhook.url: {e}"))?
        } else {
            // Plain http: no certificate is ever checked.
            Client::with_roots(rustls::RootCertStore::empty())
        };
        Self::with_client(url, c, client)
    }

    /// [`Webhook::new`] with a given client (its roots; the timeouts are set from `c`).
    pub fn with_client(url: &str, c: &WebhookConfig, client: Client) -> Result<Self, String> {
        let url = Url::parse(url).map_err(|e| format!("notify.webhook.url: {e}"))?;
        let mut target = url.clone();
        if c.preset == WebhookPreset::Ntfy {
            let Some(topic) = ntfy_topic(&url) else {
                return Err(format!(
                    "notify.webhook.url: the ntfy preset needs the topic in the URL, like \"{}://{}/mytopic\"",
                    if url.tls { "https" } else { "http" },
                    url.authority
                ));
            };
            let base = url.path.split('?').next().unwrap_or("/").trim_end_matches('/');
            let root = base.strip_suffix(topic.as_str()).unwrap_or("/");
            target.path = if root.is_empty() {
                "/".into()
            } else {
                root.to_string()
            };
        }
        Ok(Self {
            url,
            target,
            preset: c.preset,
            retries: c.retries,
            initial: c.backoff_initial,
            max: c.backoff_max.max(c.backoff_initial),
            client: client.with_timeouts(c.timeout, c.timeout),
            jitter: Jitter::new(),
        })
    }
}

impl Sink for Webhook {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn deliver(&mut self, n: &Notice, stop: &Stop) -> Result<u32, String> {
        let payload = body(self.preset, n, &self.url);
        let mut attempt = 0u32;
        loop {
            let why = match post(&self.client, &self.target, "application/json", payload.as_bytes()) {
                Attempt::Ok(_) => return Ok(attempt),
                Attempt::Fail(why) => return Err(why),
                Attempt::Retry(why, after) => {
                    if attempt >= self.retries {
                        return Err(format!("{why} (gave up after {} attempts)", attempt + 1));
                    }
                    let mut wait = backoff(self.initial, self.max, attempt, self.jitter.next());
                    if let Some(s) = after.map(Duration::from_secs).filter(|s| *s <= self.max) {
                        wait = wait.max(s);
                    }
                    (why, wait)
                }
            };
            if stop.sleep(why.1) {
                return Err(format!("{} (shutting down: not retried)", why.0));
            }
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Url::parse("http://127.0.0.1:8080/hook?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 8080, "/hook?x=1")
        );
        let u = Url::parse("http://[::1]:9/a").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.authority.as_str()),
            ("::1", 9, "[::1]:9")
        );
        let u = Url::parse("http://ntfy.local").unwrap();
        assert_eq!((u.port, u.path.as_str()), (80, "/"));
        let u = Url::parse("http://h?q").unwrap();
        assert_eq!(u.path, "/?q");
        let u = Url::parse("https://ntfy.sh/x").unwrap();
        assert_eq!((u.tls, u.port, u.path.as_str()), (true, 443, "/x"));
        for bad in [
            "ftp://x",
            "https://",
            "http://",
            "http://h:0/",
            "http://h:99999/",
            "http://u:p@h/",
            "http://h/a b",
            "http://[::1/",
            "http://h\r\nX: y/",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
        assert!(
            Url::parse("ftp://x")
                .unwrap_err()
                .contains("https://ntfy.sh/mytopic")
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_and_a_cap() {
        let (i, m) = (Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(
            backoff(i, m, 0, 0.999_999),
            Duration::from_millis(100) - Duration::from_nanos(50)
        );
        assert_eq!(backoff(i, m, 0, 0.0), Duration::from_millis(50));
        assert_eq!(backoff(i, m, 2, 0.0), Duration::from_millis(200));
        assert_eq!(backoff(i, m, 10, 0.0), Duration::from_millis(500));
        assert_eq!(backoff(i, m, 31, 0.0), Duration::from_millis(500));
        let mut j = Jitter::new();
        let draws: Vec<f64> = (0..1000).map(|_| j.next()).collect();
        assert!(draws.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = draws.iter().sum::<f64>() / 1000.0;
        assert!((0.4..0.6).contains(&mean), "{mean}");
    }

    #[test]
    fn ntfy_posts_to_the_root_with_the_topic_in_the_body() {
        let c = crate::config::Config::default().notify.webhook;
        let c = WebhookConfig {
            preset: WebhookPreset::Ntfy,
            ..c
        };
        let w = Webhook::new("http://127.0.0.1:1/alerts-42", &c).unwrap();
        assert_eq!(w.target.path, "/");
        let w = Webhook::new("http://127.0.0.1:1/ntfy/alerts", &c).unwrap();
        assert_eq!(w.target.path, "/ntfy/");
        assert!(
            Webhook::new("http://127.0.0.1:1/", &c)
                .unwrap_err()
                .contains("topic")
        );
    }
}
