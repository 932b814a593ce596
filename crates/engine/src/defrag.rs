//! IPv4 and IPv6 fragment reassembly.
//!
//! The flow engine hands every IP fragment it meets to [`Defragmenter::push`], keyed by
//! [`FragKey`]. A datagram completes when its last fragment (more = false) has been seen and every
//! byte of `[0, end)` is covered; [`Reassembled`] then says how many fragments (frames) and how
//! many original frame bytes went into it, so the flow table can count every frame exactly once.
//!
//! # Frame accounting
//!
//! Every pushed fragment ends up in exactly one of these places, so that
//! `fragments_seen == fragments_completed + fragments_dropped + fragments_expired +
//! fragments_evicted + fragments_buffered` (see [`DefragStats`]):
//! - [`FragOutcome::Complete`]: counted in [`Reassembled::fragments`] / [`Reassembled::frame_bytes`];
//! - [`FragOutcome::Dropped`]: this fragment, plus any buffered fragments of the same datagram
//!   discarded with it, counted in its `fragments` / `frame_bytes` (the caller counts them);
//! - expired or evicted later: counted only in [`DefragStats`] (`*_expired`, `*_evicted`);
//! - still buffered ([`DefragStats::fragments_buffered`]).
//!
//! # Rules
//!
//! - Overlaps keep the bytes received first ([`Reassembled::overlapped`], [`DefragStats::overlaps`]).
//!   Exact duplicates (retransmits) are overlaps too, and still count as fragments.
//! - A fragment reaching past `max_datagram_len` is dropped ([`DropReason::TooLong`]); one that
//!   contradicts the end fixed by the last fragment is dropped ([`DropReason::Inconsistent`]).
//! - A fragment captured shorter than its IP header claims (snaplen) makes its datagram impossible
//!   to complete: the datagram is discarded, and a marker (no buffer, one `in_flight` slot) drops
//!   the datagram's later fragments at once, until it idles out ([`DropReason::Truncated`]).
//! - A datagram idle (no fragment) for longer than `timeout_nanos` expires, either in
//!   [`Defragmenter::expire`] or when its key is pushed again.
//! - Memory: [`DefragStats::bytes_buffered`] (payload buffers plus their 1-bit-per-byte coverage
//!   maps) never exceeds `max_bytes`, and `in_flight` never exceeds `max_datagrams`: the
//!   datagram idle the longest is evicted first to make room, and a datagram that cannot fit
//!   alone is dropped ([`DropReason::OverCapacity`]). Beyond that, each entry in flight costs a
//!   fixed few hundred bytes of bookkeeping.
//! - Time only comes from the fragments' timestamps and `expire`'s argument; timestamps going
//!   backwards never panic (a datagram's idle time counts from its latest fragment).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

/// Limits of a [`Defragmenter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefragConfig {
    /// Cap on [`DefragStats::bytes_buffered`] over all datagrams in flight. Default 8 MiB.
    pub max_bytes: usize,
    /// Cap on datagrams in flight. Default 4096.
    pub max_datagrams: usize,
    /// A datagram with no fragment for longer than this expires. Default 30 s.
    pub timeout_nanos: i64,
    /// Longest reassembled payload (the fragmentable part: after the IPv4 header or the IPv6
    /// Fragment header). Default 65535.
    pub max_datagram_len: usize,
}

impl Default for DefragConfig {
    fn default() -> Self {
        DefragConfig {
            max_bytes: 8 << 20,
            max_datagrams: 4096,
            timeout_nanos: 30_000_000_000,
            max_datagram_len: 65535,
        }
    }
}

/// Which datagram a fragment belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The IPv4 16-bit Identification or the IPv6 32-bit Fragment Identification.
    pub ident: u32,
    /// The IPv4 protocol; 0 for IPv6 (its upper-layer protocol comes from the fragment at
    /// offset 0, see [`Fragment::next_header`]).
    pub proto: u8,
    /// The outer VLAN id, or 0.
    pub vlan: u16,
}

/// One fragment, as the caller decoded it from a frame.
#[derive(Clone, Copy, Debug)]
pub struct Fragment<'a> {
    /// Offset of `payload` in the datagram, in bytes (the header's 8-byte units times 8).
    pub offset: usize,
    /// The MF (IPv4) / M (IPv6) flag: more fragments follow.
    pub more: bool,
    /// The upper-layer protocol carried: the IPv4 protocol, or the Fragment header's next
    /// header. Taken from the fragment at offset 0.
    pub next_header: u8,
    /// The fragmentable part as captured: may be shorter than `claimed_len` (snaplen).
    pub payload: &'a [u8],
    /// The fragment's length according to its IP header. A `payload` longer than this (link
    /// padding) is cut to it; a shorter one cannot complete ([`DropReason::Truncated`]).
    pub claimed_len: usize,
    /// Original wire length of the frame carrying this fragment.
    pub frame_len: u32,
    /// Capture time; "now" for this key's timeout.
    pub ts_nanos: i64,
}

/// What [`Defragmenter::push`] did with a fragment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FragOutcome {
    /// Buffered; the datagram is not complete yet.
    Pending,
    /// This fragment completed its datagram.
    Complete(Reassembled),
    /// The fragment was not kept: see [`Dropped`].
    Dropped(Dropped),
}

/// A drop: `fragments` fragments totalling `frame_bytes` frame bytes (this one included, plus any
/// buffered fragments of its datagram discarded with it) leave the defragmenter here without
/// being reassembled; the caller counts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dropped {
    pub reason: DropReason,
    pub fragments: u32,
    pub frame_bytes: u64,
}

impl Dropped {
    /// The reason's stable name, for anomaly counters.
    pub const fn name(&self) -> &'static str {
        self.reason.name()
    }
}

/// A reassembled datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reassembled {
    /// The upper-layer protocol, from the fragment at offset 0.
    pub next_header: u8,
    /// The reassembled fragmentable part (for IPv4: what follows the IP header).
    pub payload: Vec<u8>,
    /// Fragments (frames) that went into it, duplicates included.
    pub fragments: u32,
    /// Sum of their `frame_len`.
    pub frame_bytes: u64,
    /// Earliest timestamp among them.
    pub first_ts_nanos: i64,
    /// Some fragments overlapped (the bytes received first were kept).
    pub overlapped: bool,
}

/// Why a fragment (and maybe its datagram) was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum DropReason {
    /// Offset + length beyond `max_datagram_len` (e.g. "ping of death").
    TooLong,
    /// The datagram alone cannot fit in `max_bytes` or `max_datagrams` (the datagram is dropped).
    OverCapacity,
    /// Captured shorter than the IP header claims: the datagram can never complete.
    Truncated,
    /// Disagrees with the datagram's end: a second last fragment with another end, or data past
    /// the end the last fragment fixed.
    Inconsistent,
}

impl DropReason {
    /// A short stable name for anomaly counters.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::TooLong => "frag_too_long",
            DropReason::OverCapacity => "frag_over_capacity",
            DropReason::Truncated => "frag_truncated",
            DropReason::Inconsistent => "frag_inconsistent",
        }
    }
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Counters; see the module docs for how the fragment counts add up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DefragStats {
    /// Fragments pushed.
    pub fragments_seen: u64,
    pub datagrams_completed: u64,
    /// Fragments that went into completed datagrams.
    pub fragments_completed: u64,
    pub datagrams_expired: u64,
    pub fragments_expired: u64,
    pub frame_bytes_expired: u64,
    pub datagrams_evicted: u64,
    pub fragments_evicted: u64,
    pub frame_bytes_evicted: u64,
    /// Fragments returned in [`FragOutcome::Dropped`].
    pub fragments_dropped: u64,
    /// Fragments that overlapped bytes already received (exact duplicates included).
    pub overlaps: u64,
    /// Fragments held by datagrams in flight.
    pub fragments_buffered: u64,
    /// Heap bytes held by datagrams in flight (payload buffers and their coverage maps).
    pub bytes_buffered: usize,
    /// Datagrams in flight, truncation markers included.
    pub in_flight: usize,
}

/// A datagram being reassembled (or, when `poisoned`, a truncation marker).
#[derive(Debug)]
struct Datagram {
    /// Payload bytes at their offsets; zero where not received yet.
    buf: Vec<u8>,
    /// One bit per byte of `buf`: received.
    have: Vec<u64>,
    /// Set bits in `have`.
    covered: usize,
    /// Highest end of any fragment accepted.
    hi: usize,
    /// The end fixed by the last fragment.
    total: Option<usize>,
    next_header: Option<u8>,
    fragments: u32,
    frame_bytes: u64,
    first_ts: i64,
    last_ts: i64,
    /// Tie-breaker in `Defragmenter::order`.
    seq: u64,
    overlapped: bool,
    poisoned: bool,
}

impl DefragStats {
    /// Fragments still waiting in datagrams in flight (same as `fragments_buffered`).
    pub const fn fragments_in_flight(&self) -> u64 {
        self.fragments_buffered
    }
}

impl Datagram {
    fn new(ts: i64) -> Self {
        Datagram {
            buf: Vec::new(),
            have: Vec::new(),
            covered: 0,
            hi: 0,
            total: None,
            next_header: None,
            fragments: 0,
            frame_bytes: 0,
            first_ts: ts,
            last_ts: ts,
            seq: 0,
            overlapped: false,
            poisoned: false,
        }
    }

    fn charge(&self) -> usize {
        charge_for(self.buf.len())
    }
}

/// Bytes held for a buffer of `len` payload bytes and its coverage map.
fn charge_for(len: usize) -> usize {
    len + len.div_ceil(64) * 8
}

/// Reassembles IPv4 and IPv6 fragments; see the module docs.
#[derive(Debug)]
pub struct Defragmenter {
    cfg: DefragConfig,
    map: HashMap<FragKey, Datagram, foldhash::fast::RandomState>,
    /// Datagrams in flight by (latest timestamp, seq): the first one is the oldest.
    order: BTreeMap<(i64, u64), FragKey>,
    next_seq: u64,
    stats: DefragStats,
}

impl Default for Defragmenter {
    fn default() -> Self {
        Defragmenter::new(DefragConfig::default())
    }
}

impl Defragmenter {
    pub fn new(cfg: DefragConfig) -> Self {
        Defragmenter {
            cfg,
            map: HashMap::default(),
            order: BTreeMap::new(),
            next_seq: 0,
            stats: DefragStats::default(),
        }
    }

    pub fn config(&self) -> &DefragConfig {
        &self.cfg
    }

    pub fn stats(&self) -> &DefragStats {
        &self.stats
    }

    /// Adds a fragment of datagram `key`. `frag.ts_nanos` is "now" for this key's timeout: a
    /// datagram idle for longer than the timeout expires before the fragment is considered.
    pub fn push(&mut self, key: FragKey, frag: Fragment<'_>) -> FragOutcome {
        self.stats.fragments_seen += 1;
        let now = frag.ts_nanos;
        let mut current = self.take(&key);
        if let Some(dg) = current.take_if(|dg| now.saturating_sub(dg.last_ts) > self.cfg.timeout_nanos) {
            self.account_expired(&dg);
        }

        let end = match frag.offset.checked_add(frag.claimed_len) {
            Some(end) if end <= self.cfg.max_datagram_len => end,
            _ => return self.reject(key, current, DropReason::TooLong, &frag),
        };

        if current.as_ref().is_some_and(|dg| dg.poisoned) {
            return self.reject(key, current, DropReason::Truncated, &frag);
        }
        if frag.payload.len() < frag.claimed_len {
            return self.poison(key, current, &frag);
        }
        let data = &frag.payload[..frag.claimed_len];

        let (total, hi) = current.as_ref().map_or((None, 0), |dg| (dg.total, dg.hi));
        let consistent = match (frag.more, total) {
            (false, Some(t)) => end == t,
            (false, None) => hi <= end,
            (true, Some(t)) => end <= t,
            (true, None) => true,
        };
        if !consistent {
            return self.reject(key, current, DropReason::Inconsistent, &frag);
        }
        let total = if frag.more { total } else { Some(end) };

        if current.is_none() && frag.offset == 0 && !frag.more {
            // Unfragmented, or an IPv6 atomic fragment: complete on its own, never buffered.
            self.stats.datagrams_completed += 1;
            self.stats.fragments_completed += 1;
            return FragOutcome::Complete(Reassembled {
                next_header: frag.next_header,
                payload: data.to_vec(),
                fragments: 1,
                frame_bytes: u64::from(frag.frame_len),
                first_ts_nanos: now,
                overlapped: false,
            });
        }

        let mut dg = current.unwrap_or_else(|| Datagram::new(now));
        // Grow the buffer to the known end, or geometrically while the end is unknown.
        let new_len = if data.is_empty() || end <= dg.buf.len() {
            dg.buf.len()
        } else {
            match total {
                Some(t) => t,
                None => end.max(dg.buf.len().saturating_mul(2).min(self.cfg.max_datagram_len)),
            }
        };
        let new_charge = charge_for(new_len);
        while self.map.len() >= self.cfg.max_datagrams && self.evict_oldest() {}
        while self.stats.bytes_buffered + new_charge > self.cfg.max_bytes && self.evict_oldest() {}
        if self.map.len() >= self.cfg.max_datagrams
            || self.stats.bytes_buffered + new_charge > self.cfg.max_bytes
        {
            return self.discard(dg, DropReason::OverCapacity, &frag);
        }
        if new_len > dg.buf.len() {
            dg.buf.reserve_exact(new_len - dg.buf.len());
            dg.buf.resize(new_len, 0);
            let words = new_len.div_ceil(64);
            dg.have.reserve_exact(words - dg.have.len());
            dg.have.resize(words, 0);
        }

        let mut overlap = false;
        for (i, &byte) in data.iter().enumerate() {
            let p = frag.offset + i;
            let (word, bit) = (p / 64, 1u64 << (p % 64));
            if dg.have[word] & bit != 0 {
                overlap = true;
            } else {
                dg.have[word] |= bit;
                dg.buf[p] = byte;
                dg.covered += 1;
            }
        }
        if overlap {
            dg.overlapped = true;
            self.stats.overlaps += 1;
        }
        dg.fragments = dg.fragments.saturating_add(1);
        dg.frame_bytes += u64::from(frag.frame_len);
        dg.first_ts = dg.first_ts.min(now);
        dg.last_ts = dg.last_ts.max(now);
        dg.hi = dg.hi.max(end);
        dg.total = total;
        if frag.offset == 0 && dg.next_header.is_none() {
            dg.next_header = Some(frag.next_header);
        }

        match dg.total {
            Some(t) if dg.covered == t => {
                // Bytes past `t` are never accepted (see `consistent`), so all of [0, t) is here.
                self.stats.datagrams_completed += 1;
                self.stats.fragments_completed += u64::from(dg.fragments);
                let mut payload = dg.buf;
                payload.truncate(t);
                FragOutcome::Complete(Reassembled {
                    next_header: dg.next_header.unwrap_or(frag.next_header),
                    payload,
                    fragments: dg.fragments,
                    frame_bytes: dg.frame_bytes,
                    first_ts_nanos: dg.first_ts,
                    overlapped: dg.overlapped,
                })
            }
            _ => {
                self.insert(key, dg);
                FragOutcome::Pending
            }
        }
    }

    /// Drops the datagrams idle for longer than the timeout at `now_nanos`; returns how many
    /// (truncation markers that idle out are removed but not counted). Looks at the oldest
    /// datagram only when there is nothing to do; O(log n) per datagram dropped.
    pub fn expire(&mut self, now_nanos: i64) -> usize {
        let mut expired = 0;
        while let Some((&(last_ts, _), _)) = self.order.first_key_value() {
            if now_nanos.saturating_sub(last_ts) <= self.cfg.timeout_nanos {
                break;
            }
            let Some((_, key)) = self.order.pop_first() else {
                break;
            };
            if let Some(dg) = self.map.remove(&key) {
                self.unaccount(&dg);
                if !dg.poisoned {
                    expired += 1;
                }
                self.account_expired(&dg);
            }
        }
        self.stats.in_flight = self.map.len();
        expired
    }

    /// Removes `key`'s datagram from the tables and from the in-flight counters.
    fn take(&mut self, key: &FragKey) -> Option<Datagram> {
        let dg = self.map.remove(key)?;
        self.order.remove(&(dg.last_ts, dg.seq));
        self.unaccount(&dg);
        Some(dg)
    }

    fn insert(&mut self, key: FragKey, mut dg: Datagram) {
        dg.seq = self.next_seq;
        self.next_seq += 1;
        self.stats.bytes_buffered += dg.charge();
        self.stats.fragments_buffered += u64::from(dg.fragments);
        self.order.insert((dg.last_ts, dg.seq), key);
        self.map.insert(key, dg);
        self.stats.in_flight = self.map.len();
    }

    fn unaccount(&mut self, dg: &Datagram) {
        self.stats.bytes_buffered -= dg.charge();
        self.stats.fragments_buffered -= u64::from(dg.fragments);
        self.stats.in_flight = self.map.len();
    }

    /// Counts a datagram (already taken out) as expired; markers are not datagrams.
    fn account_expired(&mut self, dg: &Datagram) {
        if !dg.poisoned {
            self.stats.datagrams_expired += 1;
            self.stats.fragments_expired += u64::from(dg.fragments);
            self.stats.frame_bytes_expired += dg.frame_bytes;
        }
    }

    /// Evicts the datagram idle the longest; false when none is in flight.
    fn evict_oldest(&mut self) -> bool {
        let Some((_, key)) = self.order.pop_first() else {
            return false;
        };
        if let Some(dg) = self.map.remove(&key) {
            self.unaccount(&dg);
            if !dg.poisoned {
                self.stats.datagrams_evicted += 1;
                self.stats.fragments_evicted += u64::from(dg.fragments);
                self.stats.frame_bytes_evicted += dg.frame_bytes;
            }
        }
        true
    }

    /// Drops `frag` alone; `current` (taken out of the tables) goes back unchanged.
    fn reject(
        &mut self,
        key: FragKey,
        current: Option<Datagram>,
        reason: DropReason,
        frag: &Fragment<'_>,
    ) -> FragOutcome {
        if let Some(mut dg) = current {
            if dg.poisoned {
                // A marker lives while its datagram's fragments keep coming.
                dg.last_ts = dg.last_ts.max(frag.ts_nanos);
            }
            self.insert(key, dg);
        }
        self.stats.fragments_dropped += 1;
        FragOutcome::Dropped(Dropped {
            reason,
            fragments: 1,
            frame_bytes: u64::from(frag.frame_len),
        })
    }

    /// Drops `frag` together with the datagram `dg` (taken out of the tables).
    fn discard(&mut self, dg: Datagram, reason: DropReason, frag: &Fragment<'_>) -> FragOutcome {
        let fragments = dg.fragments.saturating_add(1);
        self.stats.fragments_dropped += u64::from(fragments);
        FragOutcome::Dropped(Dropped {
            reason,
            fragments,
            frame_bytes: dg.frame_bytes + u64::from(frag.frame_len),
        })
    }

    /// `frag` is truncated: drops it with its datagram and leaves a marker for the rest.
    fn poison(&mut self, key: FragKey, current: Option<Datagram>, frag: &Fragment<'_>) -> FragOutcome {
        if current.is_none() && frag.offset == 0 && !frag.more {
            // Not a fragment: nothing else belongs to it, so no marker.
            return self.discard(Datagram::new(frag.ts_nanos), DropReason::Truncated, frag);
        }
        let dg = current.unwrap_or_else(|| Datagram::new(frag.ts_nanos));
        let mut marker = Datagram::new(frag.ts_nanos.max(dg.last_ts));
        marker.poisoned = true;
        let outcome = self.discard(dg, DropReason::Truncated, frag);
        while self.map.len() >= self.cfg.max_datagrams && self.evict_oldest() {}
        if self.map.len() < self.cfg.max_datagrams {
            self.insert(key, marker);
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const SEC: i64 = 1_000_000_000;
    const HDR: u32 = 34; // Ethernet + IPv4 header around each fragment

    fn key(ident: u32) -> FragKey {
        FragKey {
            src: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            dst: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
            ident,
            proto: 17,
            vlan: 0,
        }
    }

    fn frag(offset: usize, more: bool, payload: &[u8], ts_nanos: i64) -> Fragment<'_> {
        Fragment {
            offset,
            more,
            next_header: 17,
            payload,
            claimed_len: payload.len(),
            frame_len: payload.len() as u32 + HDR,
            ts_nanos,
        }
    }

    fn data(len: usize, salt: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ (i >> 8) as u8 ^ salt)
            .collect()
    }

    /// (offset, more) of each piece when `len` bytes are cut into `size`-byte fragments.
    fn cuts(len: usize, size: usize) -> Vec<(usize, usize, bool)> {
        (0..len.div_ceil(size))
            .map(|i| (i * size, (i * size + size).min(len), (i + 1) * size < len))
            .collect()
    }

    fn complete(out: FragOutcome) -> Reassembled {
        match out {
            FragOutcome::Complete(r) => r,
            other => panic!("expected Complete, got {other:?}"),
        }
    }

    fn check_invariants(d: &Defragmenter) {
        let s = d.stats();
        let c = d.config();
        assert!(s.bytes_buffered <= c.max_bytes, "{s:?}");
        assert!(s.in_flight <= c.max_datagrams, "{s:?}");
        assert_eq!(s.in_flight, d.map.len());
        assert_eq!(d.order.len(), d.map.len());
        assert_eq!(
            s.bytes_buffered,
            d.map.values().map(Datagram::charge).sum::<usize>()
        );
        assert_eq!(
            s.fragments_seen,
            s.fragments_completed
                + s.fragments_dropped
                + s.fragments_expired
                + s.fragments_evicted
                + s.fragments_buffered,
            "{s:?}"
        );
    }

    fn push_all(
        d: &mut Defragmenter,
        k: FragKey,
        payload: &[u8],
        order: &[(usize, usize, bool)],
    ) -> Vec<FragOutcome> {
        order
            .iter()
            .map(|&(s, e, more)| d.push(k, frag(s, more, &payload[s..e], 0)))
            .collect()
    }

    #[test]
    fn in_order() {
        let mut d = Defragmenter::default();
        let p = data(3000, 1);
        let pieces = cuts(3000, 1480);
        let mut outs = push_all(&mut d, key(1), &p, &pieces);
        assert_eq!(outs[..2], [FragOutcome::Pending, FragOutcome::Pending]);
        let r = complete(outs.pop().unwrap());
        assert_eq!(r.payload, p);
        assert_eq!(r.next_header, 17);
        assert_eq!(r.fragments, 3);
        assert_eq!(r.frame_bytes, 3000 + 3 * u64::from(HDR));
        assert!(!r.overlapped);
        let s = d.stats();
        assert_eq!(
            (
                s.in_flight,
                s.bytes_buffered,
                s.datagrams_completed,
                s.fragments_completed
            ),
            (0, 0, 1, 3)
        );
        check_invariants(&d);
    }

    #[test]
    fn reverse_order() {
        let mut d = Defragmenter::default();
        let p = data(5000, 2);
        let mut pieces = cuts(5000, 1024);
        pieces.reverse();
        let mut outs = push_all(&mut d, key(1), &p, &pieces);
        assert!(outs[..4].iter().all(|o| *o == FragOutcome::Pending));
        let r = complete(outs.pop().unwrap());
        assert_eq!(r.payload, p);
        assert_eq!(r.fragments, 5);
        check_invariants(&d);
    }

    #[test]
    fn unfragmented_completes_alone() {
        let mut d = Defragmenter::default();
        let r = complete(d.push(key(1), frag(0, false, b"whole", 5)));
        assert_eq!(
            (r.payload.as_slice(), r.fragments, r.first_ts_nanos),
            (&b"whole"[..], 1, 5)
        );
        assert_eq!(d.stats().in_flight, 0);
        // Link padding past the claimed length is cut off.
        let mut f = frag(0, false, b"abcPAD", 0);
        f.claimed_len = 3;
        assert_eq!(complete(d.push(key(2), f)).payload, b"abc");
        check_invariants(&d);
    }

    #[test]
    fn overlaps_keep_first_bytes() {
        let mut d = Defragmenter::default();
        assert_eq!(
            d.push(key(1), frag(0, true, &[b'A'; 16], 0)),
            FragOutcome::Pending
        );
        let r = complete(d.push(key(1), frag(8, false, &[b'B'; 16], 0)));
        assert_eq!(r.payload, [[b'A'; 16].as_slice(), &[b'B'; 8]].concat());
        assert!(r.overlapped);
        assert_eq!(d.stats().overlaps, 1);

        // The other way round: the later bytes arrived first and win.
        assert_eq!(
            d.push(key(2), frag(8, false, &[b'B'; 16], 0)),
            FragOutcome::Pending
        );
        let r = complete(d.push(key(2), frag(0, true, &[b'A'; 16], 0)));
        assert_eq!(r.payload, [[b'A'; 8].as_slice(), &[b'B'; 16]].concat());
        assert!(r.overlapped);
        assert_eq!(d.stats().overlaps, 2);
        check_invariants(&d);
    }

    #[test]
    fn duplicates_are_counted_fragments() {
        let mut d = Defragmenter::default();
        let p = data(2000, 3);
        assert_eq!(d.push(key(1), frag(0, true, &p[..1000], 0)), FragOutcome::Pending);
        assert_eq!(d.push(key(1), frag(0, true, &p[..1000], 1)), FragOutcome::Pending);
        let r = complete(d.push(key(1), frag(1000, false, &p[1000..], 2)));
        assert_eq!(r.payload, p);
        assert_eq!(r.fragments, 3);
        assert_eq!(r.frame_bytes, 3000 + 3 * u64::from(HDR));
        assert!(r.overlapped);
        assert_eq!(d.stats().overlaps, 1);
        assert_eq!(d.stats().fragments_completed, 3);
        check_invariants(&d);
    }

    #[test]
    fn missing_middle_expires() {
        let mut d = Defragmenter::default();
        let p = data(3000, 4);
        assert_eq!(d.push(key(1), frag(0, true, &p[..1000], 0)), FragOutcome::Pending);
        assert_eq!(
            d.push(key(1), frag(2000, false, &p[2000..], SEC)),
            FragOutcome::Pending
        );
        let timeout = d.config().timeout_nanos;
        assert_eq!(
            d.expire(SEC + timeout),
            0,
            "idle exactly the timeout is not longer than it"
        );
        assert_eq!(d.stats().in_flight, 1);
        assert_eq!(d.expire(SEC + timeout + 1), 1);
        let s = d.stats();
        assert_eq!((s.datagrams_expired, s.fragments_expired), (1, 2));
        assert_eq!(s.frame_bytes_expired, 2000 + 2 * u64::from(HDR));
        assert_eq!((s.in_flight, s.bytes_buffered, s.fragments_buffered), (0, 0, 0));
        assert_eq!(d.expire(i64::MAX), 0);
        check_invariants(&d);
    }

    #[test]
    fn stale_datagram_expires_when_its_key_returns() {
        let mut d = Defragmenter::default();
        let p = data(3000, 5);
        let late = d.config().timeout_nanos + 1;
        assert_eq!(d.push(key(1), frag(0, true, &p[..1000], 0)), FragOutcome::Pending);
        assert_eq!(
            d.push(key(1), frag(1000, true, &p[1000..2000], late)),
            FragOutcome::Pending
        );
        assert_eq!(d.stats().fragments_expired, 1);
        assert_eq!(d.stats().datagrams_expired, 1);
        // The old first fragment is gone, so this cannot complete.
        assert_eq!(
            d.push(key(1), frag(2000, false, &p[2000..], late)),
            FragOutcome::Pending
        );
        check_invariants(&d);
    }

    #[test]
    fn ipv6_next_header_comes_from_offset_zero() {
        let mut d = Defragmenter::default();
        let k = FragKey {
            src: IpAddr::V6(Ipv6Addr::LOCALHOST),
            dst: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            ident: 0xdead_beef,
            proto: 0,
            vlan: 7,
        };
        let p = data(3000, 6);
        let mut f = |offset: usize, more: bool, nh: u8| {
            let end = if more { offset + 1000 } else { 3000 };
            d.push(
                k,
                Fragment {
                    next_header: nh,
                    ..frag(offset, more, &p[offset..end], 0)
                },
            )
        };
        assert_eq!(f(2000, false, 99), FragOutcome::Pending);
        assert_eq!(f(1000, true, 98), FragOutcome::Pending);
        let r = complete(f(0, true, 17));
        assert_eq!(r.next_header, 17);
        assert_eq!(r.payload, p);
    }

    #[test]
    fn too_long_and_huge_offsets() {
        let mut d = Defragmenter::default();
        let out = d.push(key(1), frag(65528, false, &[0; 16], 0));
        assert_eq!(
            out,
            FragOutcome::Dropped(Dropped {
                reason: DropReason::TooLong,
                fragments: 1,
                frame_bytes: 16 + 34
            })
        );
        let out = d.push(key(1), frag(usize::MAX, true, &[0; 16], 0));
        assert!(matches!(
            out,
            FragOutcome::Dropped(Dropped {
                reason: DropReason::TooLong,
                ..
            })
        ));
        assert_eq!(d.stats().in_flight, 0);
        assert_eq!(DropReason::TooLong.name(), "frag_too_long");
        check_invariants(&d);
    }

    #[test]
    fn inconsistent_ends() {
        let mut d = Defragmenter::default();
        assert_eq!(d.push(key(1), frag(8, false, &[1; 8], 0)), FragOutcome::Pending);
        let out = d.push(key(1), frag(16, true, &[2; 8], 0));
        assert!(matches!(
            out,
            FragOutcome::Dropped(Dropped {
                reason: DropReason::Inconsistent,
                fragments: 1,
                ..
            })
        ));
        let out = d.push(key(1), frag(0, false, &[3; 8], 0));
        assert!(matches!(
            out,
            FragOutcome::Dropped(Dropped {
                reason: DropReason::Inconsistent,
                ..
            })
        ));
        // The datagram survives and completes.
        let r = complete(d.push(key(1), frag(0, true, &[4; 8], 0)));
        assert_eq!(r.payload, [[4; 8], [1; 8]].concat());
        assert_eq!(r.fragments, 2);
        // A last fragment ending before data already received.
        assert_eq!(d.push(key(2), frag(64, true, &[1; 8], 0)), FragOutcome::Pending);
        let out = d.push(key(2), frag(0, false, &[1; 8], 0));
        assert!(matches!(
            out,
            FragOutcome::Dropped(Dropped {
                reason: DropReason::Inconsistent,
                ..
            })
        ));
        check_invariants(&d);
    }

    #[test]
    fn truncated_fragment_drops_its_datagram() {
        let mut d = Defragmenter::default();
        let p = data(3000, 7);
        assert_eq!(d.push(key(1), frag(0, true, &p[..1000], 0)), FragOutcome::Pending);
        let mut f = frag(1000, true, &p[1000..1100], 1);
        f.claimed_len = 1000;
        f.frame_len = 1034;
        let out = d.push(key(1), f);
        assert_eq!(
            out,
            FragOutcome::Dropped(Dropped {
                reason: DropReason::Truncated,
                fragments: 2,
                frame_bytes: 2068
            })
        );
        // Later fragments of the same datagram are dropped at once; the marker holds no bytes.
        let out = d.push(key(1), frag(2000, false, &p[2000..], 2));
        assert_eq!(
            out,
            FragOutcome::Dropped(Dropped {
                reason: DropReason::Truncated,
                fragments: 1,
                frame_bytes: 1034
            })
        );
        assert_eq!((d.stats().in_flight, d.stats().bytes_buffered), (1, 0));
        assert_eq!(d.stats().fragments_dropped, 3);
        // A truncated datagram that was never fragmented leaves no marker.
        let mut f = frag(0, false, &p[..100], 2);
        f.claimed_len = 1000;
        assert!(matches!(
            d.push(key(9), f),
            FragOutcome::Dropped(Dropped {
                reason: DropReason::Truncated,
                fragments: 1,
                ..
            })
        ));
        assert_eq!(d.stats().in_flight, 1);
        // The marker idles out without counting as an expired datagram.
        assert_eq!(d.expire(2 + d.config().timeout_nanos + 1), 0);
        assert_eq!((d.stats().in_flight, d.stats().datagrams_expired), (0, 0));
        check_invariants(&d);
    }

    #[test]
    fn single_datagram_over_capacity_is_dropped() {
        let mut d = Defragmenter::new(DefragConfig {
            max_bytes: 1000,
            ..DefragConfig::default()
        });
        assert_eq!(d.push(key(1), frag(0, true, &[0; 400], 0)), FragOutcome::Pending);
        let out = d.push(key(1), frag(400, true, &[0; 800], 0));
        assert_eq!(
            out,
            FragOutcome::Dropped(Dropped {
                reason: DropReason::OverCapacity,
                fragments: 2,
                frame_bytes: 1268
            })
        );
        assert_eq!((d.stats().in_flight, d.stats().bytes_buffered), (0, 0));
        check_invariants(&d);

        let mut none = Defragmenter::new(DefragConfig {
            max_datagrams: 0,
            ..DefragConfig::default()
        });
        let out = none.push(key(1), frag(0, true, &[0; 8], 0));
        assert!(matches!(
            out,
            FragOutcome::Dropped(Dropped {
                reason: DropReason::OverCapacity,
                ..
            })
        ));
        assert!(matches!(
            none.push(key(1), frag(0, false, &[0; 8], 0)),
            FragOutcome::Complete(_)
        ));
        check_invariants(&none);
    }

    #[test]
    fn eviction_takes_the_oldest() {
        let mut d = Defragmenter::new(DefragConfig {
            max_datagrams: 2,
            ..DefragConfig::default()
        });
        for (i, ts) in [(1, 10), (2, 5), (3, 20)] {
            assert_eq!(d.push(key(i), frag(0, true, &[0; 8], ts)), FragOutcome::Pending);
        }
        assert!(d.map.contains_key(&key(1)) && d.map.contains_key(&key(3)));
        let s = d.stats();
        assert_eq!(
            (s.datagrams_evicted, s.fragments_evicted, s.frame_bytes_evicted),
            (1, 1, 42)
        );
        check_invariants(&d);
    }

    #[test]
    fn flood_of_first_fragments_stays_within_caps() {
        let mut d = Defragmenter::default();
        let p = [0x5a; 1480];
        for i in 0..100_000u32 {
            let k = FragKey {
                src: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | i)),
                ..key(i)
            };
            assert_eq!(d.push(k, frag(0, true, &p, i64::from(i))), FragOutcome::Pending);
            let s = d.stats();
            assert!(s.bytes_buffered <= d.config().max_bytes);
            assert!(s.in_flight <= d.config().max_datagrams);
        }
        let s = d.stats();
        assert!(s.in_flight > 0);
        assert_eq!(s.datagrams_evicted, 100_000 - s.in_flight as u64);
        check_invariants(&d);
    }

    #[test]
    fn zero_length_fragments() {
        let mut d = Defragmenter::default();
        assert_eq!(d.push(key(1), frag(0, true, &[], 0)), FragOutcome::Pending);
        assert_eq!(d.push(key(1), frag(8, true, &[1; 8], 0)), FragOutcome::Pending);
        assert_eq!(d.push(key(1), frag(0, true, &[2; 8], 0)), FragOutcome::Pending);
        let r = complete(d.push(key(1), frag(16, false, &[], 0)));
        assert_eq!(r.payload, [[2; 8], [1; 8]].concat());
        assert_eq!(r.fragments, 4);
        assert!(!r.overlapped);
        check_invariants(&d);
    }

    fn shuffled_case() -> impl Strategy<Value = (usize, usize, Vec<usize>, Vec<usize>)> {
        // At least two fragments (a single one completes on its own, see `unfragmented_*`).
        (1usize..200)
            .prop_flat_map(|units| (Just(units * 8), units * 8 + 1..units * 8 * 30))
            .prop_flat_map(|(size, len)| {
                let n = len.div_ceil(size);
                (
                    Just(len),
                    Just(size),
                    Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
                    proptest::collection::vec(0..n, 0..4),
                )
            })
    }

    proptest! {
        #[test]
        fn any_order_reassembles((len, size, order, dups) in shuffled_case()) {
            let mut d = Defragmenter::default();
            let p = data(len, 9);
            let pieces = cuts(len, size);
            // Each duplicate follows its original, except for the last piece pushed: the last
            // push is then the one completing the datagram.
            let last_piece = order[order.len() - 1];
            let dups: Vec<usize> = dups.into_iter().filter(|&i| i != last_piece).collect();
            let mut seq = Vec::new();
            for &i in &order {
                seq.push(pieces[i]);
                seq.extend(dups.iter().filter(|&&j| j == i).map(|_| pieces[i]));
            }
            let mut outs = push_all(&mut d, key(1), &p, &seq);
            let last = outs.pop().unwrap();
            prop_assert!(outs.iter().all(|o| *o == FragOutcome::Pending));
            let r = complete(last);
            prop_assert_eq!(&r.payload, &p);
            prop_assert_eq!(r.fragments as usize, seq.len());
            let want_bytes: usize = seq.iter().map(|&(s, e, _)| e - s + HDR as usize).sum();
            prop_assert_eq!(r.frame_bytes, want_bytes as u64);
            prop_assert_eq!(r.overlapped, !dups.is_empty());
            check_invariants(&d);
            prop_assert_eq!(d.stats().in_flight, 0);
        }

        #[test]
        fn arbitrary_input_never_panics_nor_exceeds_caps(
            ops in proptest::collection::vec(
                (0u32..4, 0usize..9000, 0usize..3000, any::<bool>(), 0u8..8, 0i64..4 * SEC, any::<bool>()),
                1..200,
            )
        ) {
            let cfg = DefragConfig { max_bytes: 20_000, max_datagrams: 3, timeout_nanos: 10 * SEC, max_datagram_len: 8192 };
            let mut d = Defragmenter::new(cfg);
            let mut now = 0i64;
            let (mut out_frags, mut out_bytes) = (0u64, 0u64);
            let mut seen_bytes = 0u64;
            for (ident, offset, len, more, trunc, dt, expire) in ops {
                // Mostly forward time, sometimes backwards.
                now += dt - SEC / 2;
                if expire && ident == 0 {
                    d.expire(now);
                    check_invariants(&d);
                    continue;
                }
                let offset = if trunc % 2 == 0 { offset & !7 } else { offset };
                let content: Vec<u8> = (offset..offset + len).map(|p| (p as u8) ^ (ident as u8)).collect();
                let captured = if trunc == 7 { len / 2 } else { len };
                let f = Fragment {
                    offset,
                    more,
                    next_header: 17,
                    payload: &content[..captured],
                    claimed_len: len,
                    frame_len: len as u32 + HDR,
                    ts_nanos: now,
                };
                seen_bytes += u64::from(f.frame_len);
                match d.push(key(ident), f) {
                    FragOutcome::Pending => {}
                    FragOutcome::Complete(r) => {
                        prop_assert!(r.payload.len() <= cfg.max_datagram_len);
                        // Every fragment of a key carries the same bytes at the same place.
                        let want: Vec<u8> = (0..r.payload.len()).map(|p| (p as u8) ^ (ident as u8)).collect();
                        prop_assert_eq!(r.payload, want);
                        out_frags += u64::from(r.fragments);
                        out_bytes += r.frame_bytes;
                    }
                    FragOutcome::Dropped(Dropped { fragments, frame_bytes, .. }) => {
                        out_frags += u64::from(fragments);
                        out_bytes += frame_bytes;
                    }
                }
                check_invariants(&d);
            }
            let s = *d.stats();
            prop_assert_eq!(out_frags, s.fragments_completed + s.fragments_dropped);
            d.expire(i64::MAX);
            let s = d.stats();
            prop_assert_eq!((s.in_flight, s.bytes_buffered, s.fragments_buffered), (0, 0, 0));
            prop_assert_eq!(seen_bytes, out_bytes + s.frame_bytes_expired + s.frame_bytes_evicted);
        }
    }
}
