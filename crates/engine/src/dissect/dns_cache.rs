//! A passive DNS cache: which name the user asked for resolved to which address, with TTLs and a
//! size cap, so that a flow to that address can be named.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

/// Answers are trusted a little past their TTL: applications keep using an address after it
/// expires from their resolver's cache.
const GRACE: i64 = 300 * 1_000_000_000;

#[derive(Debug)]
struct Entry {
    name: String,
    seen: i64,
    expires: i64,
}

#[derive(Debug)]
pub struct DnsCache {
    map: HashMap<IpAddr, Entry>,
    order: VecDeque<(IpAddr, i64)>,
    cap: usize,
}

impl DnsCache {
    pub fn new(cap: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    /// Records that `name` resolved to `addr` at `ts` for `ttl` seconds.
    pub fn insert(&mut self, addr: IpAddr, name: &str, ts: i64, ttl: u32) {
        let expires = ts
            .saturating_add(i64::from(ttl) * 1_000_000_000)
            .saturating_add(GRACE);
        self.map.insert(
            addr,
            Entry {
                name: name.to_string(),
                seen: ts,
                expires,
            },
        );
        self.order.push_back((addr, ts));
        while self.map.len() > self.cap || self.order.len() > self.cap * 2 {
            let Some((old, seen)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&old).is_some_and(|e| e.seen == seen) {
                self.map.remove(&old);
            }
        }
    }

    /// The most recent name for `addr` answered at or before `at` and not yet expired.
    pub fn lookup(&self, addr: &IpAddr, at: i64) -> Option<&str> {
        let e = self.map.get(addr)?;
        (e.seen <= at && at <= e.expires).then_some(e.name.as_str())
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_order_and_cap() {
        let mut c = DnsCache::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let d: IpAddr = "2001:db8::1".parse().unwrap();
        c.insert(a, "one.example", 10, 60);
        assert_eq!(c.lookup(&a, 5), None, "not before the answer was seen");
        assert_eq!(c.lookup(&a, 10), Some("one.example"));
        assert_eq!(
            c.lookup(&a, 10 + 361 * 1_000_000_000),
            None,
            "expired past TTL and grace"
        );
        c.insert(a, "newer.example", 20, 60);
        assert_eq!(c.lookup(&a, 30), Some("newer.example"));
        c.insert(b, "two.example", 30, 60);
        c.insert(d, "three.example", 40, 60);
        assert_eq!(c.len(), 2);
        assert_eq!(c.lookup(&a, 50), None, "the oldest went first");
        assert_eq!(c.lookup(&d, 50), Some("three.example"));
    }
}
