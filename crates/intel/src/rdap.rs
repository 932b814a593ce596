//! RDAP (the JSON successor of whois), the parsing half: an IP network answer (RFC 9083
//! section 5.4: handle, name, startAddress/endAddress or the `cidr0_cidrs` extension, country,
//! and the organisation from the entities' vCard `fn`), the IANA bootstrap file (RFC 9224) that
//! says which registry's server to ask for an address, and a 24-hour cache keyed by network.
//!
//! Fetching (HTTPS) is not done here: the caller fetches `query_url(..)` and hands the body to
//! [`parse_ip_network`]. Every function takes untrusted text and returns an error, never panics.

use std::net::IpAddr;

use crate::json::{self, Json};

/// What an RDAP IP network answer says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RdapNetwork {
    pub handle: Option<String>,
    pub name: Option<String>,
    pub start: Option<IpAddr>,
    pub end: Option<IpAddr>,
    /// From `cidr0_cidrs` (prefix, length).
    pub cidrs: Vec<(IpAddr, u8)>,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: Option<[u8; 2]>,
    /// The registrant's name (vCard `fn`), else the first organisation entity's.
    pub org: Option<String>,
    pub parent_handle: Option<String>,
}

impl RdapNetwork {
    /// Does the network hold `ip`?
    pub fn contains(&self, ip: IpAddr) -> bool {
        if let (Some(s), Some(e)) = (self.start, self.end) {
            return in_range(ip, s, e);
        }
        self.cidrs.iter().any(|&(p, len)| prefix_contains(p, len, ip))
    }
}

fn key(ip: IpAddr) -> (u8, u128) {
    match ip.to_canonical() {
        IpAddr::V4(a) => (4, u128::from(u32::from(a))),
        IpAddr::V6(a) => (6, u128::from(a)),
    }
}

fn in_range(ip: IpAddr, s: IpAddr, e: IpAddr) -> bool {
    let (f, v) = key(ip);
    let (fs, vs) = key(s);
    let (fe, ve) = key(e);
    f == fs && f == fe && vs <= v && v <= ve
}

fn prefix_contains(prefix: IpAddr, len: u8, ip: IpAddr) -> bool {
    let (fp, p) = key(prefix);
    let (fi, v) = key(ip);
    let bits: u32 = if fp == 4 { 32 } else { 128 };
    if fp != fi || u32::from(len) > bits {
        return false;
    }
    if len == 0 {
        return true;
    }
    let shift = bits - u32::from(len);
    (p >> shift) == (v >> shift)
}

/// Parses an RDAP IP network answer.
pub fn parse_ip_network(text: &str) -> Result<RdapNetwork, String> {
    let j = json::parse(text)?;
    let class = j.get("objectClassName").and_then(Json::as_str);
    if class != Some("ip network") {
        if let Some(code) = j.get("errorCode").and_then(Json::as_f64) {
            let title = j.get("title").and_then(Json::as_str).unwrap_or("");
            return Err(format!("the RDAP server answered error {code} {title}"));
        }
        return Err(format!(
            "not an RDAP ip network object (objectClassName {class:?})"
        ));
    }
    let s = |k: &str| j.get(k).and_then(Json::as_str).map(str::to_string);
    let addr = |k: &str| {
        j.get(k)
            .and_then(Json::as_str)
            .and_then(|a| a.trim().parse::<IpAddr>().ok())
    };
    let cidrs = j
        .get("cidr0_cidrs")
        .map(Json::as_array)
        .unwrap_or_default()
        .iter()
        .filter_map(|c| {
            let p = c
                .get("v4prefix")
                .or_else(|| c.get("v6prefix"))?
                .as_str()?
                .parse()
                .ok()?;
            let len = c.get("length")?.as_f64()?;
            (0.0..=128.0).contains(&len).then_some((p, len as u8))
        })
        .collect();
    let country = j
        .get("country")
        .and_then(Json::as_str)
        .and_then(|c| match c.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Some([a.to_ascii_uppercase(), b.to_ascii_uppercase()])
            }
            _ => None,
        });
    let mut entities = Vec::new();
    collect_entities(&j, &mut entities, 0);
    let has_role = |e: &Json, r: &str| {
        e.get("roles")
            .map(Json::as_array)
            .unwrap_or_default()
            .iter()
            .any(|x| x.as_str() == Some(r))
    };
    let org = entities
        .iter()
        .filter(|e| has_role(e, "registrant"))
        .find_map(|e| vcard(e, "fn"))
        .or_else(|| {
            entities
                .iter()
                .filter(|e| vcard(e, "kind").as_deref() == Some("org"))
                .find_map(|e| vcard(e, "fn"))
        });
    Ok(RdapNetwork {
        handle: s("handle"),
        name: s("name"),
        start: addr("startAddress"),
        end: addr("endAddress"),
        cidrs,
        country,
        org,
        parent_handle: s("parentHandle"),
    })
}

fn collect_entities<'a, 't>(j: &'a Json<'t>, out: &mut Vec<&'a Json<'t>>, depth: usize) {
    if depth > 4 {
        return;
    }
    for e in j.get("entities").map(Json::as_array).unwrap_or_default() {
        out.push(e);
        collect_entities(e, out, depth + 1);
    }
}

/// A text property of an entity's jCard (RFC 7095): `["vcard", [[name, {}, "text", value], ...]]`.
fn vcard(entity: &Json, name: &str) -> Option<String> {
    let card = entity.get("vcardArray")?.as_array();
    if card.first()?.as_str() != Some("vcard") {
        return None;
    }
    card.get(1)?.as_array().iter().find_map(|prop| {
        let p = prop.as_array();
        (p.first()?.as_str()? == name).then_some(())?;
        // The value may be a string or, for structured properties, an array of strings.
        match p.get(3)? {
            Json::Str(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
            _ => None,
        }
    })
}

/// The IANA bootstrap file for IP addresses (`ipv4.json` or `ipv6.json`, RFC 9224).
#[derive(Clone, Debug, Default)]
pub struct Bootstrap {
    /// (prefix, length, server base URLs).
    entries: Vec<(IpAddr, u8, Vec<String>)>,
}

impl Bootstrap {
    /// Parses a bootstrap file; several (IPv4 and IPv6) can be merged with [`Bootstrap::merge`].
    pub fn parse(text: &str) -> Result<Bootstrap, String> {
        let j = json::parse(text)?;
        let services = j
            .get("services")
            .ok_or("no \"services\" member: not an RDAP bootstrap file")?;
        let mut entries = Vec::new();
        for svc in services.as_array() {
            let [prefixes, urls] = svc.as_array() else {
                return Err("a service entry is not [prefixes, urls]".into());
            };
            let urls: Vec<String> = urls
                .as_array()
                .iter()
                .filter_map(|u| u.as_str().map(str::to_string))
                .collect();
            for p in prefixes.as_array().iter().filter_map(Json::as_str) {
                let Some((addr, len)) = p.split_once('/') else {
                    continue;
                };
                let (Ok(addr), Ok(len)) = (addr.parse::<IpAddr>(), len.parse::<u8>()) else {
                    continue;
                };
                entries.push((addr, len, urls.clone()));
            }
        }
        if entries.is_empty() {
            return Err("the bootstrap file lists no prefix".into());
        }
        Ok(Bootstrap { entries })
    }

    /// Adds another file's entries.
    pub fn merge(&mut self, other: Bootstrap) {
        self.entries.extend(other.entries);
    }

    /// The server base URL for `ip` (longest matching prefix; an `https://` URL preferred).
    pub fn server_for(&self, ip: IpAddr) -> Option<&str> {
        let (_, len, urls) = self
            .entries
            .iter()
            .filter(|(p, len, _)| prefix_contains(*p, *len, ip))
            .max_by_key(|(_, len, _)| *len)?;
        let _ = len;
        urls.iter()
            .find(|u| u.starts_with("https://"))
            .or_else(|| urls.first())
            .map(String::as_str)
    }
}

/// The query URL for `ip` at a server base URL (`<base>/ip/<address>`).
pub fn query_url(base: &str, ip: IpAddr) -> String {
    let sep = if base.ends_with('/') { "" } else { "/" };
    format!("{base}{sep}ip/{}", ip.to_canonical())
}

/// How long an answer is kept.
pub const CACHE_TTL_SECS: u64 = 24 * 3600;

/// Answers kept for [`CACHE_TTL_SECS`], found by any address of their network. `now` is given
/// in seconds (any epoch), so the cache is testable without a clock.
#[derive(Clone, Debug, Default)]
pub struct RdapCache {
    entries: Vec<(u64, RdapNetwork)>,
    cap: usize,
}

impl RdapCache {
    /// A cache of at most `cap` networks (the oldest goes first).
    pub fn new(cap: usize) -> RdapCache {
        RdapCache {
            entries: Vec::new(),
            cap: cap.max(1),
        }
    }

    /// The cached network holding `ip`, if still fresh (the most specific when several are).
    pub fn get(&mut self, ip: IpAddr, now: u64) -> Option<&RdapNetwork> {
        self.entries
            .retain(|(t, _)| now.saturating_sub(*t) < CACHE_TTL_SECS);
        self.entries
            .iter()
            .filter(|(_, n)| n.contains(ip))
            .min_by_key(|(_, n)| size(n))
            .map(|(_, n)| n)
    }

    /// Keeps an answer fetched at `now`.
    pub fn insert(&mut self, net: RdapNetwork, now: u64) {
        if self.entries.len() >= self.cap {
            self.entries.sort_by_key(|(t, _)| *t);
            self.entries.remove(0);
        }
        self.entries.push((now, net));
    }
}

fn size(n: &RdapNetwork) -> u128 {
    match (n.start, n.end) {
        (Some(s), Some(e)) => key(e).1.saturating_sub(key(s).1),
        _ => u128::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Written after RFC 9083's examples and the shape of ARIN/RIPE answers.
    const ARIN_LIKE: &str = r#"{
      "rdapConformance": ["rdap_level_0", "cidr0"],
      "objectClassName": "ip network",
      "handle": "NET-192-0-2-0-1",
      "startAddress": "192.0.2.0",
      "endAddress": "192.0.2.255",
      "ipVersion": "v4",
      "name": "TEST-NET-1",
      "type": "ASSIGNMENT",
      "country": "us",
      "parentHandle": "NET-192-0-0-0-0",
      "cidr0_cidrs": [{"v4prefix": "192.0.2.0", "length": 24}],
      "entities": [
        {"objectClassName": "entity", "handle": "ABUSE-1", "roles": ["abuse"],
         "vcardArray": ["vcard", [["version", {}, "text", "4.0"], ["fn", {}, "text", "Abuse Desk"], ["kind", {}, "text", "group"]]]},
        {"objectClassName": "entity", "handle": "EXAMPLE-ORG", "roles": ["registrant"],
         "vcardArray": ["vcard", [["version", {}, "text", "4.0"], ["fn", {}, "text", "Example Networks, Inc."], ["kind", {}, "text", "org"],
                                  ["adr", {"label": "1 Main St"}, "text", ["", "", "", "", "", "", ""]]]],
         "entities": [{"objectClassName": "entity", "handle": "TECH-1", "roles": ["technical"]}]}
      ],
      "events": [{"eventAction": "registration", "eventDate": "2000-01-01T00:00:00Z"}]
    }"#;

    #[test]
    fn parses_an_ip_network() {
        let n = parse_ip_network(ARIN_LIKE).unwrap();
        assert_eq!(n.handle.as_deref(), Some("NET-192-0-2-0-1"));
        assert_eq!(n.name.as_deref(), Some("TEST-NET-1"));
        assert_eq!(n.country, Some(*b"US"));
        assert_eq!(n.org.as_deref(), Some("Example Networks, Inc."));
        assert_eq!(n.cidrs, vec![("192.0.2.0".parse().unwrap(), 24)]);
        assert!(n.contains("192.0.2.200".parse().unwrap()));
        assert!(!n.contains("192.0.3.0".parse().unwrap()));
        assert_eq!(n.parent_handle.as_deref(), Some("NET-192-0-0-0-0"));
    }

    #[test]
    fn org_without_registrant_role_and_v6_cidr_only() {
        let t = r#"{"objectClassName":"ip network","handle":"2001:db8::/32","name":"DOC-V6",
          "cidr0_cidrs":[{"v6prefix":"2001:db8::","length":32}],
          "entities":[{"roles":["administrative"],"vcardArray":["vcard",[["fn",{},"text","Person"],["kind",{},"text","individual"]]]},
                      {"roles":["technical"],"vcardArray":["vcard",[["fn",{},"text","Doc Org"],["kind",{},"text","org"]]]}]}"#;
        let n = parse_ip_network(t).unwrap();
        assert_eq!(n.org.as_deref(), Some("Doc Org"));
        assert!(n.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!n.contains("2001:db9::1".parse().unwrap()));
        assert!(!n.contains("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn errors_are_reported() {
        let e = parse_ip_network(r#"{"errorCode":404,"title":"Not Found"}"#).unwrap_err();
        assert!(e.contains("404") && e.contains("Not Found"), "{e}");
        assert!(parse_ip_network(r#"{"objectClassName":"domain"}"#).is_err());
        assert!(parse_ip_network("<html>").is_err());
    }

    #[test]
    fn bootstrap_picks_the_longest_prefix_and_https() {
        let t = r#"{"version":"1.0","publication":"2024-01-01T00:00:00Z","services":[
          [["192.0.0.0/8","198.0.0.0/8"],["http://rdap.one.example/rdap/","https://rdap.one.example/rdap/"]],
          [["192.0.2.0/24"],["https://rdap.two.example/"]],
          [["2001:db8::/32"],["https://rdap.six.example"]]]}"#;
        let b = Bootstrap::parse(t).unwrap();
        assert_eq!(
            b.server_for("192.0.2.9".parse().unwrap()),
            Some("https://rdap.two.example/")
        );
        assert_eq!(
            b.server_for("192.0.3.9".parse().unwrap()),
            Some("https://rdap.one.example/rdap/")
        );
        assert_eq!(b.server_for("203.0.113.1".parse().unwrap()), None);
        let six = b.server_for("2001:db8::1".parse().unwrap()).unwrap();
        assert_eq!(
            query_url(six, "2001:db8::1".parse().unwrap()),
            "https://rdap.six.example/ip/2001:db8::1"
        );
        assert!(Bootstrap::parse(r#"{"services":[]}"#).is_err());
    }

    #[test]
    fn cache_expires_after_a_day() {
        let mut c = RdapCache::new(2);
        c.insert(parse_ip_network(ARIN_LIKE).unwrap(), 1000);
        let ip = "192.0.2.1".parse().unwrap();
        assert!(c.get(ip, 1000 + CACHE_TTL_SECS - 1).is_some());
        assert!(c.get(ip, 1000 + CACHE_TTL_SECS).is_none());
    }
}
