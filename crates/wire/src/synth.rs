//! Packet builders for tests and fixtures.
//!
//! Plain functions that return correct frames as `Vec<u8>`: IPv4 header checksums, TCP and UDP
//! checksums over the IPv4 or IPv6 pseudo-header, ICMPv4/ICMPv6 checksums. Layers nest by value,
//! outermost call last:
//!
//! ```
//! use std::net::Ipv4Addr;
//! use wire::synth::{self, TcpFlags};
//!
//! let (a, b) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
//! let seg = synth::tcp(a.into(), b.into(), 40000, 443, 1, 0, TcpFlags::SYN, &[]);
//! let frame = synth::ethernet(synth::MAC_B, synth::MAC_A, 0x0800, &synth::ipv4(a, b, 6, 0, &seg));
//! // the same frame in one call (and one allocation):
//! assert_eq!(frame, synth::tcp_ipv4_frame(a, b, 40000, 443, 1, 0, TcpFlags::SYN, &[]));
//! ```
//!
//! The `*_frame` helpers write every layer into a single output `Vec`, so generating a million
//! frames costs a million allocations and nothing more.
//!
//! Defaults: IPv4 without options, TTL 64, TOS 0, DF clear; IPv6 with traffic class and flow label
//! 0, hop limit 64; TCP without options, window 65535, urgent pointer 0.
//!
//! # Panics
//!
//! These are fixture builders: they panic (with a message) on requests that cannot be encoded,
//! such as an IP payload over 65535 bytes, a TCP/UDP pseudo-header with mixed address families,
//! or a fragment size that is not a positive multiple of 8.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A locally administered unicast MAC address ("the client").
pub const MAC_A: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x0a];
/// A locally administered unicast MAC address ("the server").
pub const MAC_B: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x0b];

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

/// IP protocol numbers used by the builders.
pub const PROTO_ICMP: u8 = 1;
/// TCP.
pub const PROTO_TCP: u8 = 6;
/// UDP.
pub const PROTO_UDP: u8 = 17;
/// The IPv6 Fragment extension header.
pub const PROTO_IPV6_FRAG: u8 = 44;
/// ICMPv6.
pub const PROTO_ICMPV6: u8 = 58;

const ETH_LEN: usize = 14;
const IPV4_LEN: usize = 20;
const IPV6_LEN: usize = 40;
const IPV6_FRAG_LEN: usize = 8;
const TCP_LEN: usize = 20;
const UDP_LEN: usize = 8;

/// TCP flag bits for [`tcp`] and the `tcp_*_frame` helpers; combine with `|`.
#[derive(Clone, Copy, Debug)]
pub struct TcpFlags;

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

/// The RFC 1071 Internet checksum of the concatenation of `chunks`: the one's complement of the
/// one's-complement sum of its big-endian 16-bit words (an odd total length is padded with a zero
/// byte). Chunks may have odd lengths; words straddle chunk boundaries as in the concatenation.
///
/// The result goes into the checksum field as is (big-endian). Summing data that already holds
/// its correct checksum yields 0.
pub fn internet_checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum: u64 = 0;
    let mut carry: Option<u8> = None;
    for chunk in chunks {
        let mut data: &[u8] = chunk;
        if let (Some(hi), Some((&lo, rest))) = (carry, data.split_first()) {
            sum += u64::from(u16::from_be_bytes([hi, lo]));
            carry = None;
            data = rest;
        }
        let mut words = data.chunks_exact(2);
        for w in &mut words {
            sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
        }
        if let [last] = words.remainder() {
            carry = Some(*last);
        }
    }
    if let Some(hi) = carry {
        sum += u64::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // The loop leaves `sum <= 0xffff`.
    !(sum as u16)
}

/// An Ethernet II frame: `dst`, `src`, `ethertype`, then `payload` (no FCS, no padding).
pub fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ETH_LEN + payload.len());
    put_ethernet(&mut out, dst, src, ethertype);
    out.extend_from_slice(payload);
    out
}

/// An 802.1Q / 802.1ad tag body: the 2-byte TCI (`vid`, written as is, so PCP and DEI may be set
/// in its top 4 bits), the inner EtherType, then `payload`. It goes after an Ethernet header (or
/// an outer tag) whose EtherType is `tpid`; `tpid` is not part of these bytes and only documents
/// the call site. Stacked (QinQ):
///
/// ```
/// # use wire::synth::*;
/// let ip = [0x45u8; 20];
/// let inner = vlan(0x8100, 200, ETHERTYPE_IPV4, &ip);
/// let frame = ethernet(MAC_B, MAC_A, 0x88a8, &vlan(0x88a8, 100, 0x8100, &inner));
/// assert_eq!(&frame[12..22], &[0x88, 0xa8, 0, 100, 0x81, 0x00, 0, 200, 0x08, 0x00]);
/// ```
pub fn vlan(tpid: u16, vid: u16, inner_ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let _ = tpid;
    let mut out = Vec::with_capacity(4 + payload.len());
    out.extend_from_slice(&vid.to_be_bytes());
    out.extend_from_slice(&inner_ethertype.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An IPv4 packet around `payload`: no options, TTL 64, DF clear, not fragmented, with a valid
/// header checksum. `payload` is taken as is (build it with [`tcp`]/[`udp`] for the same
/// addresses so its checksum matches).
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, ident: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(IPV4_LEN + payload.len());
    put_ipv4(&mut out, src, dst, proto, ident, 0, payload.len());
    out.extend_from_slice(payload);
    out
}

/// `payload` split into IPv4 fragments of at most `max_fragment_payload` bytes each (a positive
/// multiple of 8), in order: the same `ident` and `proto`, the fragment offset in 8-byte units,
/// MF set on all but the last. An empty or small enough `payload` yields one unfragmented packet.
/// The total may exceed what one datagram can hold (offsets go up to 65528), to build
/// "ping of death" fixtures.
pub fn ipv4_fragments(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    ident: u16,
    payload: &[u8],
    max_fragment_payload: usize,
) -> Vec<Vec<u8>> {
    check_fragment_size(max_fragment_payload);
    if payload.is_empty() {
        return vec![ipv4(src, dst, proto, ident, payload)];
    }
    let n = payload.len().div_ceil(max_fragment_payload);
    let mut out = Vec::with_capacity(n);
    for (i, part) in payload.chunks(max_fragment_payload).enumerate() {
        let offset = i * max_fragment_payload;
        assert!(offset <= 0xfff8, "IPv4 fragment offset {offset} does not fit");
        let more = i + 1 < n;
        let flags_frag = (u16::from(more) << 13) | (offset / 8) as u16;
        let mut pkt = Vec::with_capacity(IPV4_LEN + part.len());
        put_ipv4(&mut pkt, src, dst, proto, ident, flags_frag, part.len());
        pkt.extend_from_slice(part);
        out.push(pkt);
    }
    out
}

/// An IPv6 packet around `payload`: traffic class and flow label 0, hop limit 64.
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(IPV6_LEN + payload.len());
    put_ipv6(&mut out, src, dst, next_header, payload.len());
    out.extend_from_slice(payload);
    out
}

/// `payload` split into IPv6 packets each carrying a Fragment extension header (next header 44):
/// at most `max_fragment_payload` bytes (a positive multiple of 8) of `payload` each, in order,
/// with `next_header` in every Fragment header, the offset in 8-byte units and M set on all but
/// the last. An empty or small enough `payload` yields one "atomic fragment" (offset 0, M clear).
pub fn ipv6_fragments(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next_header: u8,
    ident: u32,
    payload: &[u8],
    max_fragment_payload: usize,
) -> Vec<Vec<u8>> {
    check_fragment_size(max_fragment_payload);
    let n = payload.len().div_ceil(max_fragment_payload).max(1);
    let mut out = Vec::with_capacity(n);
    let mut parts = payload.chunks(max_fragment_payload);
    for i in 0..n {
        let part = parts.next().unwrap_or(&[]);
        let offset = i * max_fragment_payload;
        assert!(offset <= 0xfff8, "IPv6 fragment offset {offset} does not fit");
        let more = i + 1 < n;
        let mut pkt = Vec::with_capacity(IPV6_LEN + IPV6_FRAG_LEN + part.len());
        put_ipv6(&mut pkt, src, dst, PROTO_IPV6_FRAG, IPV6_FRAG_LEN + part.len());
        pkt.push(next_header);
        pkt.push(0);
        pkt.extend_from_slice(&((offset as u16) | u16::from(more)).to_be_bytes());
        pkt.extend_from_slice(&ident.to_be_bytes());
        pkt.extend_from_slice(part);
        out.push(pkt);
    }
    out
}

/// A TCP segment (no options, window 65535) with its checksum computed over the pseudo-header of
/// `src` and `dst` (both IPv4 or both IPv6). `flags` combines [`TcpFlags`].
#[expect(
    clippy::too_many_arguments,
    reason = "mirrors the header fields; a fixture builder"
)]
pub fn tcp(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(TCP_LEN + payload.len());
    put_tcp(&mut out, src, dst, sport, dport, seq, ack, flags, payload);
    out
}

/// A UDP datagram with its checksum computed over the pseudo-header of `src` and `dst` (both IPv4
/// or both IPv6). A computed checksum of 0 is sent as 0xffff, as RFC 768 requires.
pub fn udp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(UDP_LEN + payload.len());
    put_udp(&mut out, src, dst, sport, dport, payload);
    out
}

/// An ICMPv4 echo request (type 8, `request`) or reply (type 0), code 0, with its checksum.
pub fn icmpv4_echo(ident: u16, seq: u16, request: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&[if request { 8 } else { 0 }, 0, 0, 0]);
    out.extend_from_slice(&ident.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(payload);
    let sum = internet_checksum(&[&out]);
    out[2..4].copy_from_slice(&sum.to_be_bytes());
    out
}

/// An ICMPv4 error message (e.g. `typ` 3 destination unreachable, `code` 3 port unreachable; 11
/// time exceeded) quoting `quoted_ip_packet` (usually the offending IP header and at least the
/// first 8 bytes of its payload). The 4 bytes after the checksum are 0 (no next-hop MTU).
pub fn icmpv4_error(typ: u8, code: u8, quoted_ip_packet: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + quoted_ip_packet.len());
    out.extend_from_slice(&[typ, code, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(quoted_ip_packet);
    let sum = internet_checksum(&[&out]);
    out[2..4].copy_from_slice(&sum.to_be_bytes());
    out
}

/// An ICMPv6 echo request (type 128, `request`) or reply (type 129), code 0, with its checksum
/// over the IPv6 pseudo-header of `src` and `dst`.
pub fn icmpv6_echo(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    ident: u16,
    seq: u16,
    request: bool,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&[if request { 128 } else { 129 }, 0, 0, 0]);
    out.extend_from_slice(&ident.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(payload);
    let sum = l4_checksum(src.into(), dst.into(), PROTO_ICMPV6, &out);
    out[2..4].copy_from_slice(&sum.to_be_bytes());
    out
}

/// An Ethernet frame (`MAC_A` to `MAC_B`) carrying IPv4 (ident 0) carrying a TCP segment, all in
/// one allocation. Same bytes as the nested [`ethernet`]/[`ipv4`]/[`tcp`] calls.
#[expect(
    clippy::too_many_arguments,
    reason = "mirrors the header fields; a fixture builder"
)]
pub fn tcp_ipv4_frame(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(ETH_LEN + IPV4_LEN + TCP_LEN + payload.len());
    put_ethernet(&mut out, MAC_B, MAC_A, ETHERTYPE_IPV4);
    put_ipv4(&mut out, src, dst, PROTO_TCP, 0, 0, TCP_LEN + payload.len());
    put_tcp(
        &mut out,
        src.into(),
        dst.into(),
        sport,
        dport,
        seq,
        ack,
        flags,
        payload,
    );
    out
}

/// An Ethernet frame (`MAC_A` to `MAC_B`) carrying IPv4 (ident 0) carrying a UDP datagram.
pub fn udp_ipv4_frame(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ETH_LEN + IPV4_LEN + UDP_LEN + payload.len());
    put_ethernet(&mut out, MAC_B, MAC_A, ETHERTYPE_IPV4);
    put_ipv4(&mut out, src, dst, PROTO_UDP, 0, 0, UDP_LEN + payload.len());
    put_udp(&mut out, src.into(), dst.into(), sport, dport, payload);
    out
}

/// An Ethernet frame (`MAC_A` to `MAC_B`) carrying IPv6 carrying a TCP segment.
#[expect(
    clippy::too_many_arguments,
    reason = "mirrors the header fields; a fixture builder"
)]
pub fn tcp_ipv6_frame(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(ETH_LEN + IPV6_LEN + TCP_LEN + payload.len());
    put_ethernet(&mut out, MAC_B, MAC_A, ETHERTYPE_IPV6);
    put_ipv6(&mut out, src, dst, PROTO_TCP, TCP_LEN + payload.len());
    put_tcp(
        &mut out,
        src.into(),
        dst.into(),
        sport,
        dport,
        seq,
        ack,
        flags,
        payload,
    );
    out
}

/// An Ethernet frame (`MAC_A` to `MAC_B`) carrying IPv6 carrying a UDP datagram.
pub fn udp_ipv6_frame(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ETH_LEN + IPV6_LEN + UDP_LEN + payload.len());
    put_ethernet(&mut out, MAC_B, MAC_A, ETHERTYPE_IPV6);
    put_ipv6(&mut out, src, dst, PROTO_UDP, UDP_LEN + payload.len());
    put_udp(&mut out, src.into(), dst.into(), sport, dport, payload);
    out
}

// ---- writers appending one layer to `out` ----

fn check_fragment_size(max_fragment_payload: usize) {
    assert!(
        max_fragment_payload > 0 && max_fragment_payload.is_multiple_of(8),
        "max_fragment_payload must be a positive multiple of 8, got {max_fragment_payload}"
    );
}

fn put_ethernet(out: &mut Vec<u8>, dst: [u8; 6], src: [u8; 6], ethertype: u16) {
    out.extend_from_slice(&dst);
    out.extend_from_slice(&src);
    out.extend_from_slice(&ethertype.to_be_bytes());
}

/// Appends a 20-byte IPv4 header for `payload_len` bytes of payload. `flags_frag` is the 16-bit
/// flags + fragment offset field.
fn put_ipv4(
    out: &mut Vec<u8>,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    ident: u16,
    flags_frag: u16,
    payload_len: usize,
) {
    let total = u16::try_from(IPV4_LEN + payload_len)
        .unwrap_or_else(|_| panic!("IPv4 payload of {payload_len} bytes does not fit in 65535"));
    let start = out.len();
    out.extend_from_slice(&[0x45, 0]);
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&ident.to_be_bytes());
    out.extend_from_slice(&flags_frag.to_be_bytes());
    out.extend_from_slice(&[64, proto, 0, 0]);
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
    let sum = internet_checksum(&[&out[start..]]);
    out[start + 10..start + 12].copy_from_slice(&sum.to_be_bytes());
}

fn put_ipv6(out: &mut Vec<u8>, src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, payload_len: usize) {
    let plen = u16::try_from(payload_len)
        .unwrap_or_else(|_| panic!("IPv6 payload of {payload_len} bytes does not fit in 65535"));
    out.extend_from_slice(&[0x60, 0, 0, 0]);
    out.extend_from_slice(&plen.to_be_bytes());
    out.extend_from_slice(&[next_header, 64]);
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
}

#[expect(clippy::too_many_arguments, reason = "mirrors the header fields")]
fn put_tcp(
    out: &mut Vec<u8>,
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) {
    let start = out.len();
    out.extend_from_slice(&sport.to_be_bytes());
    out.extend_from_slice(&dport.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&ack.to_be_bytes());
    out.extend_from_slice(&[(TCP_LEN as u8 / 4) << 4, flags, 0xff, 0xff, 0, 0, 0, 0]);
    out.extend_from_slice(payload);
    let sum = l4_checksum(src, dst, PROTO_TCP, &out[start..]);
    out[start + 16..start + 18].copy_from_slice(&sum.to_be_bytes());
}

fn put_udp(out: &mut Vec<u8>, src: IpAddr, dst: IpAddr, sport: u16, dport: u16, payload: &[u8]) {
    let len = u16::try_from(UDP_LEN + payload.len())
        .unwrap_or_else(|_| panic!("UDP payload of {} bytes does not fit", payload.len()));
    let start = out.len();
    out.extend_from_slice(&sport.to_be_bytes());
    out.extend_from_slice(&dport.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(payload);
    let sum = match l4_checksum(src, dst, PROTO_UDP, &out[start..]) {
        0 => 0xffff,
        s => s,
    };
    out[start + 6..start + 8].copy_from_slice(&sum.to_be_bytes());
}

/// The checksum of `segment` (with its checksum field zero) under the pseudo-header of
/// `src`/`dst`: RFC 793 for IPv4, RFC 8200 section 8.1 for IPv6.
fn l4_checksum(src: IpAddr, dst: IpAddr, proto: u8, segment: &[u8]) -> u16 {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let len = u16::try_from(segment.len())
                .unwrap_or_else(|_| panic!("segment of {} bytes too long for IPv4", segment.len()));
            let len = len.to_be_bytes();
            let pseudo = [0, proto, len[0], len[1]];
            internet_checksum(&[&s.octets(), &d.octets(), &pseudo, segment])
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let len = u32::try_from(segment.len())
                .unwrap_or_else(|_| panic!("segment of {} bytes too long", segment.len()));
            let len = len.to_be_bytes();
            let pseudo = [len[0], len[1], len[2], len[3], 0, 0, 0, proto];
            internet_checksum(&[&s.octets(), &d.octets(), &pseudo, segment])
        }
        _ => panic!("pseudo-header with mixed address families: {src} -> {dst}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const B4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
    const A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    const B6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0xbeef, 2);

    fn be16(b: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([b[at], b[at + 1]])
    }

    /// Verifies a TCP/UDP checksum the way a receiver does: the sum over pseudo-header and
    /// segment, checksum field included, is 0.
    fn l4_verifies(src: IpAddr, dst: IpAddr, proto: u8, seg: &[u8]) -> bool {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let l = (seg.len() as u16).to_be_bytes();
                internet_checksum(&[&s.octets(), &d.octets(), &[0, proto, l[0], l[1]], seg]) == 0
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let l = (seg.len() as u32).to_be_bytes();
                let ph = [l[0], l[1], l[2], l[3], 0, 0, 0, proto];
                internet_checksum(&[&s.octets(), &d.octets(), &ph, seg]) == 0
            }
            _ => false,
        }
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2, checksum 220d.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(internet_checksum(&[&data]), !0xddf2);
        assert_eq!(internet_checksum(&[&data]), 0x220d);
        // Odd chunk boundaries do not change the result.
        assert_eq!(
            internet_checksum(&[&data[..1], &data[1..4], &[], &data[4..7], &data[7..]]),
            0x220d
        );
        // With the checksum appended, the data verifies to 0.
        assert_eq!(internet_checksum(&[&data, &[0x22, 0x0d]]), 0);
        // Odd total length pads with a zero byte.
        assert_eq!(internet_checksum(&[&[0x12, 0x34, 0x56]]), !(0x1234u16 + 0x5600));
        assert_eq!(internet_checksum(&[]), 0xffff);
    }

    #[test]
    fn known_ipv4_header() {
        // The classic worked example header: 4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7.
        let hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01,
            0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(internet_checksum(&[&hdr]), 0xb861);
    }

    #[test]
    fn ipv4_header_fields_and_checksum() {
        let p = ipv4(A4, B4, PROTO_UDP, 0x1234, &[1, 2, 3]);
        assert_eq!(p.len(), 23);
        assert_eq!(p[0], 0x45);
        assert_eq!(be16(&p, 2), 23);
        assert_eq!(be16(&p, 4), 0x1234);
        assert_eq!(be16(&p, 6), 0, "DF clear, not a fragment");
        assert_eq!((p[8], p[9]), (64, PROTO_UDP));
        assert_eq!(&p[12..16], &A4.octets());
        assert_eq!(&p[16..20], &B4.octets());
        assert_eq!(internet_checksum(&[&p[..20]]), 0);
        assert_ne!(be16(&p, 10), 0);
        assert_eq!(&p[20..], &[1, 2, 3]);
    }

    #[test]
    fn ipv6_header_fields() {
        let p = ipv6(A6, B6, PROTO_TCP, &[9; 10]);
        assert_eq!(p.len(), 50);
        assert_eq!(p[0] >> 4, 6);
        assert_eq!(be16(&p, 4), 10);
        assert_eq!((p[6], p[7]), (PROTO_TCP, 64));
        assert_eq!(&p[8..24], &A6.octets());
        assert_eq!(&p[24..40], &B6.octets());
    }

    #[test]
    fn tcp_checksums_verify_both_families() {
        for (s, d) in [
            (IpAddr::from(A4), IpAddr::from(B4)),
            (IpAddr::from(A6), IpAddr::from(B6)),
        ] {
            for payload in [&b""[..], b"x", b"hello, world", &[0xff; 1001]] {
                let seg = tcp(
                    s,
                    d,
                    40000,
                    443,
                    0xdead_beef,
                    7,
                    TcpFlags::SYN | TcpFlags::ACK,
                    payload,
                );
                assert_eq!(seg.len(), 20 + payload.len());
                assert_eq!((be16(&seg, 0), be16(&seg, 2)), (40000, 443));
                assert_eq!(&seg[4..8], &0xdead_beef_u32.to_be_bytes());
                assert_eq!(&seg[8..12], &7u32.to_be_bytes());
                assert_eq!((seg[12], seg[13]), (0x50, 0x12));
                assert!(l4_verifies(s, d, PROTO_TCP, &seg), "{s} {payload:?}");
                // The pseudo-header matters: other addresses do not verify.
                assert!(!l4_verifies(d, d, PROTO_TCP, &seg) || s == d);
            }
        }
    }

    #[test]
    fn udp_checksums_verify_both_families() {
        for (s, d) in [
            (IpAddr::from(A4), IpAddr::from(B4)),
            (IpAddr::from(A6), IpAddr::from(B6)),
        ] {
            for payload in [&b""[..], b"q", b"dns?", &[0x5a; 513]] {
                let dgram = udp(s, d, 5353, 53, payload);
                assert_eq!(be16(&dgram, 4) as usize, dgram.len());
                assert_ne!(be16(&dgram, 6), 0, "0 means no checksum");
                assert!(l4_verifies(s, d, PROTO_UDP, &dgram));
            }
        }
    }

    #[test]
    fn udp_zero_checksum_becomes_ffff() {
        // Find a payload whose checksum computes to 0, then check it is sent as 0xffff.
        let (s, d) = (IpAddr::from(A4), IpAddr::from(B4));
        let mut probe = udp(s, d, 1, 2, &[0, 0]);
        probe[6..8].copy_from_slice(&[0, 0]);
        let need = l4_checksum(s, d, PROTO_UDP, &probe);
        // Adding `need` as a payload word makes the one's-complement sum 0xffff, checksum 0.
        let dgram = udp(s, d, 1, 2, &need.to_be_bytes());
        assert_eq!(be16(&dgram, 6), 0xffff);
        assert!(l4_verifies(s, d, PROTO_UDP, &dgram));
    }

    #[test]
    fn icmp_checksums() {
        let e = icmpv4_echo(0x42, 3, true, b"ping");
        assert_eq!((e[0], e[1]), (8, 0));
        assert_eq!(internet_checksum(&[&e]), 0);
        assert_eq!(icmpv4_echo(0x42, 3, false, b"")[0], 0);

        let orig = ipv4(
            A4,
            B4,
            PROTO_UDP,
            9,
            &udp(A4.into(), B4.into(), 1000, 33434, b"probe"),
        );
        let err = icmpv4_error(3, 3, &orig[..28]);
        assert_eq!((err[0], err[1]), (3, 3));
        assert_eq!(&err[8..], &orig[..28]);
        assert_eq!(internet_checksum(&[&err]), 0);

        let e6 = icmpv6_echo(A6, B6, 1, 2, true, b"abc");
        assert_eq!(e6[0], 128);
        assert!(l4_verifies(A6.into(), B6.into(), PROTO_ICMPV6, &e6));
    }

    #[test]
    fn vlan_tag_layout() {
        let t = vlan(0x8100, 0x2064, ETHERTYPE_IPV6, &[1, 2]);
        assert_eq!(t, [0x20, 0x64, 0x86, 0xdd, 1, 2]);
    }

    #[test]
    fn frame_helpers_match_nested_builders() {
        let flags = TcpFlags::PSH | TcpFlags::ACK;
        let f = tcp_ipv4_frame(A4, B4, 1, 2, 3, 4, flags, b"data");
        let nested = ethernet(
            MAC_B,
            MAC_A,
            ETHERTYPE_IPV4,
            &ipv4(
                A4,
                B4,
                PROTO_TCP,
                0,
                &tcp(A4.into(), B4.into(), 1, 2, 3, 4, flags, b"data"),
            ),
        );
        assert_eq!(f, nested);
        assert_eq!(&f[..6], &MAC_B);
        assert_eq!(&f[6..12], &MAC_A);
        assert_eq!(internet_checksum(&[&f[14..34]]), 0);

        let f = udp_ipv4_frame(A4, B4, 5, 6, b"u");
        let nested = ethernet(
            MAC_B,
            MAC_A,
            ETHERTYPE_IPV4,
            &ipv4(A4, B4, PROTO_UDP, 0, &udp(A4.into(), B4.into(), 5, 6, b"u")),
        );
        assert_eq!(f, nested);

        let f = tcp_ipv6_frame(A6, B6, 1, 2, 3, 4, TcpFlags::FIN, b"");
        let nested = ethernet(
            MAC_B,
            MAC_A,
            ETHERTYPE_IPV6,
            &ipv6(A6, B6, PROTO_TCP, &tcp(A6.into(), B6.into(), 1, 2, 3, 4, 1, b"")),
        );
        assert_eq!(f, nested);

        let f = udp_ipv6_frame(A6, B6, 5, 6, b"v6");
        let nested = ethernet(
            MAC_B,
            MAC_A,
            ETHERTYPE_IPV6,
            &ipv6(A6, B6, PROTO_UDP, &udp(A6.into(), B6.into(), 5, 6, b"v6")),
        );
        assert_eq!(f, nested);
        assert!(l4_verifies(A6.into(), B6.into(), PROTO_UDP, &f[54..]));
    }

    fn payload(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 256) as u8).collect()
    }

    #[test]
    fn ipv4_fragments_reassemble() {
        for (len, max) in [
            (0, 8),
            (1, 8),
            (8, 8),
            (9, 8),
            (1480, 1480),
            (3000, 1480),
            (4000, 512),
        ] {
            let data = payload(len);
            let frags = ipv4_fragments(A4, B4, PROTO_UDP, 77, &data, max);
            assert_eq!(frags.len(), len.div_ceil(max).max(1));
            let mut re = Vec::new();
            for (i, f) in frags.iter().enumerate() {
                assert_eq!(internet_checksum(&[&f[..20]]), 0);
                assert_eq!(be16(f, 2) as usize, f.len());
                assert_eq!(be16(f, 4), 77);
                assert_eq!(f[9], PROTO_UDP);
                let ff = be16(f, 6);
                let more = ff & 0x2000 != 0;
                assert_eq!(ff & 0x4000, 0, "DF clear");
                assert_eq!(more, i + 1 < frags.len());
                let offset = (ff & 0x1fff) as usize * 8;
                assert_eq!(offset, re.len(), "in order, no gaps");
                assert!(f.len() - 20 <= max);
                if more {
                    assert_eq!((f.len() - 20) % 8, 0);
                }
                re.extend_from_slice(&f[20..]);
            }
            assert_eq!(re, data);
        }
    }

    #[test]
    fn ipv6_fragments_reassemble() {
        for (len, max) in [(0, 8), (5, 8), (16, 8), (1232, 1232), (3000, 1232), (65000, 1448)] {
            let data = payload(len);
            let frags = ipv6_fragments(A6, B6, PROTO_UDP, 0xabcd_0123, &data, max);
            assert_eq!(frags.len(), len.div_ceil(max).max(1));
            let mut re = Vec::new();
            for (i, f) in frags.iter().enumerate() {
                assert_eq!(f[6], PROTO_IPV6_FRAG);
                assert_eq!(be16(f, 4) as usize, f.len() - 40);
                assert_eq!(f[40], PROTO_UDP);
                assert_eq!(f[41], 0);
                let off_m = be16(f, 42);
                assert_eq!(off_m & 0b110, 0, "reserved bits clear");
                assert_eq!(off_m & 1 == 1, i + 1 < frags.len());
                assert_eq!((off_m & !7) as usize, re.len());
                assert_eq!(&f[44..48], &0xabcd_0123u32.to_be_bytes());
                re.extend_from_slice(&f[48..]);
            }
            assert_eq!(re, data);
        }
    }

    #[test]
    #[should_panic(expected = "multiple of 8")]
    fn fragment_size_must_be_multiple_of_8() {
        let _ = ipv4_fragments(A4, B4, PROTO_UDP, 1, &[0; 100], 100);
    }

    #[test]
    #[should_panic(expected = "mixed address families")]
    fn mixed_families_panic() {
        let _ = udp(A4.into(), B6.into(), 1, 2, &[]);
    }

    #[test]
    fn syn_flood_is_cheap() {
        // 100k SYN frames; the generator of the 1M-frame fixture uses the same call.
        let mut total = 0usize;
        for i in 0u32..100_000 {
            let src = Ipv4Addr::from(0x0a00_0000 | i);
            let f = tcp_ipv4_frame(src, B4, (i % 50000) as u16 + 1024, 80, i, 0, TcpFlags::SYN, &[]);
            total += f.len();
        }
        assert_eq!(total, 100_000 * 54);
    }

    proptest::proptest! {
        #[test]
        fn checksum_is_chunking_invariant(data: Vec<u8>, cuts: Vec<usize>) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (data.len() + 1)).collect();
            cuts.sort_unstable();
            let mut chunks: Vec<&[u8]> = Vec::new();
            let mut at = 0;
            for c in cuts {
                chunks.push(&data[at..c]);
                at = c;
            }
            chunks.push(&data[at..]);
            proptest::prop_assert_eq!(internet_checksum(&chunks), internet_checksum(&[&data]));
        }

        #[test]
        fn tcp_always_verifies(v6: bool, a: [u8; 16], b: [u8; 16], payload: Vec<u8>, flags: u8) {
            let (s, d) = if v6 {
                (IpAddr::from(a), IpAddr::from(b))
            } else {
                (IpAddr::from([a[0], a[1], a[2], a[3]]), IpAddr::from([b[0], b[1], b[2], b[3]]))
            };
            let seg = tcp(s, d, 1, 2, 3, 4, flags, &payload);
            proptest::prop_assert!(l4_verifies(s, d, PROTO_TCP, &seg));
            let dg = udp(s, d, 1, 2, &payload);
            proptest::prop_assert!(l4_verifies(s, d, PROTO_UDP, &dg));
        }
    }
}
