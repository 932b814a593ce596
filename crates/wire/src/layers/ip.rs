//! IPv4 (with options) and IPv6 (with extension headers).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{be16, be32};
use crate::error::need;
use crate::{Error, Layer};

/// An IP protocol number / IPv6 next-header value (open: unknown values survive).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpProto(pub u8);

impl IpProto {
    pub const HOPOPT: Self = Self(0);
    pub const ICMP: Self = Self(1);
    pub const IPIP: Self = Self(4);
    pub const TCP: Self = Self(6);
    pub const UDP: Self = Self(17);
    pub const IPV6: Self = Self(41);
    pub const IPV6_ROUTE: Self = Self(43);
    pub const IPV6_FRAG: Self = Self(44);
    pub const GRE: Self = Self(47);
    pub const ESP: Self = Self(50);
    pub const AH: Self = Self(51);
    pub const ICMPV6: Self = Self(58);
    pub const IPV6_NONXT: Self = Self(59);
    pub const IPV6_OPTS: Self = Self(60);
    pub const SCTP: Self = Self(132);
    pub const MOBILITY: Self = Self(135);
    pub const HIP: Self = Self(139);
    pub const SHIM6: Self = Self(140);

    /// Short lower-case name for records ("tcp", "udp", ...), `None` for numbers without one.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            1 => "icmp",
            2 => "igmp",
            4 => "ipip",
            6 => "tcp",
            17 => "udp",
            41 => "ipv6",
            47 => "gre",
            50 => "esp",
            51 => "ah",
            58 => "icmpv6",
            89 => "ospf",
            103 => "pim",
            112 => "vrrp",
            132 => "sctp",
            136 => "udplite",
            _ => return None,
        })
    }
}

/// An IPv4 header with options. The payload is cut to the total-length field (Ethernet padding
/// removed) and may be shorter than it when the capture was truncated.
#[derive(Clone, Copy, Debug)]
pub struct Ipv4<'a> {
    buf: &'a [u8],
    header_len: usize,
}

impl<'a> Ipv4<'a> {
    pub const MIN_HEADER_LEN: usize = 20;

    pub fn new_checked(buf: &'a [u8]) -> Result<Self, Error> {
        need(Layer::Ipv4, buf, Self::MIN_HEADER_LEN)?;
        if buf[0] >> 4 != 4 {
            return Err(Error::Malformed {
                layer: Layer::Ipv4,
                what: "version is not 4",
            });
        }
        let header_len = usize::from(buf[0] & 0x0f) * 4;
        if header_len < Self::MIN_HEADER_LEN {
            return Err(Error::Malformed {
                layer: Layer::Ipv4,
                what: "header length below 20 bytes",
            });
        }
        need(Layer::Ipv4, buf, header_len)?;
        let total = usize::from(be16(buf, 2));
        if total != 0 && total < header_len {
            return Err(Error::Malformed {
                layer: Layer::Ipv4,
                what: "total length below header length",
            });
        }
        Ok(Self { buf, header_len })
    }
    pub fn header_len(&self) -> usize {
        self.header_len
    }
    /// The total-length field (0 is seen with TSO/GSO captures; see [`Ipv4::payload_len`]).
    pub fn total_len(&self) -> u16 {
        be16(self.buf, 2)
    }
    pub fn dscp(&self) -> u8 {
        self.buf[1] >> 2
    }
    pub fn ident(&self) -> u16 {
        be16(self.buf, 4)
    }
    pub fn dont_fragment(&self) -> bool {
        self.buf[6] & 0x40 != 0
    }
    pub fn more_fragments(&self) -> bool {
        self.buf[6] & 0x20 != 0
    }
    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> usize {
        usize::from(be16(self.buf, 6) & 0x1fff) * 8
    }
    pub fn is_fragment(&self) -> bool {
        self.more_fragments() || self.frag_offset() != 0
    }
    pub fn ttl(&self) -> u8 {
        self.buf[8]
    }
    pub fn protocol(&self) -> IpProto {
        IpProto(self.buf[9])
    }
    pub fn checksum(&self) -> u16 {
        be16(self.buf, 10)
    }
    pub fn src(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.buf[12], self.buf[13], self.buf[14], self.buf[15])
    }
    pub fn dst(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.buf[16], self.buf[17], self.buf[18], self.buf[19])
    }
    pub fn options(&self) -> &'a [u8] {
        &self.buf[20..self.header_len]
    }
    /// Payload length as the header declares it (what was on the wire); when the total-length
    /// field is 0 (segmentation offload), what was captured.
    pub fn payload_len(&self) -> usize {
        match self.total_len() {
            0 => self.buf.len() - self.header_len,
            t => usize::from(t) - self.header_len,
        }
    }
    /// The captured payload, without link-layer padding; shorter than `payload_len` when truncated.
    pub fn payload(&self) -> &'a [u8] {
        let end = (self.header_len + self.payload_len()).min(self.buf.len());
        &self.buf[self.header_len..end]
    }
    /// Bytes the capture is missing from the declared payload.
    pub fn missing(&self) -> usize {
        self.payload_len().saturating_sub(self.payload().len())
    }
}

/// A fixed IPv6 header. Extension headers are walked by [`walk_ipv6_extensions`].
#[derive(Clone, Copy, Debug)]
pub struct Ipv6<'a> {
    buf: &'a [u8],
}

impl<'a> Ipv6<'a> {
    pub const HEADER_LEN: usize = 40;

    pub fn new_checked(buf: &'a [u8]) -> Result<Self, Error> {
        need(Layer::Ipv6, buf, Self::HEADER_LEN)?;
        if buf[0] >> 4 != 6 {
            return Err(Error::Malformed {
                layer: Layer::Ipv6,
                what: "version is not 6",
            });
        }
        Ok(Self { buf })
    }
    pub fn traffic_class(&self) -> u8 {
        ((be16(self.buf, 0) >> 4) & 0xff) as u8
    }
    pub fn flow_label(&self) -> u32 {
        be32(self.buf, 0) & 0x000f_ffff
    }
    pub fn payload_len_field(&self) -> u16 {
        be16(self.buf, 4)
    }
    pub fn next_header(&self) -> IpProto {
        IpProto(self.buf[6])
    }
    pub fn hop_limit(&self) -> u8 {
        self.buf[7]
    }
    pub fn src(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buf[8..24]);
        Ipv6Addr::from(a)
    }
    pub fn dst(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buf[24..40]);
        Ipv6Addr::from(a)
    }
    /// Declared payload length (0 = jumbogram or offload: what was captured).
    pub fn payload_len(&self) -> usize {
        match self.payload_len_field() {
            0 => self.buf.len() - Self::HEADER_LEN,
            n => usize::from(n),
        }
    }
    /// Captured payload (extension headers included), without link-layer padding.
    pub fn payload(&self) -> &'a [u8] {
        let end = (Self::HEADER_LEN + self.payload_len()).min(self.buf.len());
        &self.buf[Self::HEADER_LEN..end]
    }
}

/// What follows the IPv6 extension headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Payload<'a> {
    /// The upper-layer protocol (or 59 "no next header", or ESP which cannot be looked into).
    pub proto: IpProto,
    /// Captured upper-layer bytes.
    pub payload: &'a [u8],
    /// Bytes of extension headers skipped.
    pub ext_len: usize,
    /// `Some((offset_bytes, more, ident))` when a Fragment header was found that really fragments
    /// (an atomic fragment, offset 0 without M, is not reported). Then `proto` is the fragment
    /// header's next header and `payload` the fragmentable part.
    pub fragment: Option<(usize, bool, u32)>,
}

/// Walks IPv6 extension headers (hop-by-hop, routing, fragment, destination options, AH,
/// mobility, HIP, shim6) starting with `next` over `buf` (the IPv6 payload). Stops at the first
/// upper-layer protocol, at ESP, at "no next header", or at a non-first fragment (whose next
/// headers are inside the reassembled datagram).
pub fn walk_ipv6_extensions(mut next: IpProto, buf: &[u8]) -> Result<Ipv6Payload<'_>, Error> {
    const MAX_HEADERS: usize = 16;
    let mut off = 0usize;
    for _ in 0..MAX_HEADERS {
        match next {
            IpProto::HOPOPT
            | IpProto::IPV6_ROUTE
            | IpProto::IPV6_OPTS
            | IpProto::MOBILITY
            | IpProto::HIP
            | IpProto::SHIM6 => {
                need(Layer::Ipv6Ext, &buf[off..], 2)?;
                let len = (usize::from(buf[off + 1]) + 1) * 8;
                need(Layer::Ipv6Ext, &buf[off..], len)?;
                next = IpProto(buf[off]);
                off += len;
            }
            IpProto::AH => {
                need(Layer::Ipv6Ext, &buf[off..], 2)?;
                let len = (usize::from(buf[off + 1]) + 2) * 4;
                need(Layer::Ipv6Ext, &buf[off..], len)?;
                next = IpProto(buf[off]);
                off += len;
            }
            IpProto::IPV6_FRAG => {
                need(Layer::Ipv6Ext, &buf[off..], 8)?;
                let h = &buf[off..];
                let field = be16(h, 2);
                let offset = usize::from(field & 0xfff8);
                let more = field & 1 != 0;
                let ident = be32(h, 4);
                next = IpProto(h[0]);
                off += 8;
                if offset != 0 || more {
                    return Ok(Ipv6Payload {
                        proto: next,
                        payload: &buf[off..],
                        ext_len: off,
                        fragment: Some((offset, more, ident)),
                    });
                }
            }
            _ => {
                return Ok(Ipv6Payload {
                    proto: next,
                    payload: &buf[off..],
                    ext_len: off,
                    fragment: None,
                });
            }
        }
    }
    Err(Error::Malformed {
        layer: Layer::Ipv6Ext,
        what: "more than 16 extension headers",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(total: u16, ihl: u8) -> Vec<u8> {
        let mut h = vec![
            0x40 | ihl,
            0,
            (total >> 8) as u8,
            total as u8,
            0x12,
            0x34,
            0x20,
            0x01,
            64,
            17,
            0,
            0,
        ];
        h.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        h.resize(usize::from(ihl) * 4, 1);
        h
    }

    #[test]
    fn ipv4_fields_and_padding() {
        let mut p = v4(24, 5);
        p.extend_from_slice(&[1, 2, 3, 4, 0, 0, 0, 0]); // 4 bytes of payload + 4 padding
        let ip = Ipv4::new_checked(&p).unwrap();
        assert_eq!(ip.src(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(ip.protocol(), IpProto::UDP);
        assert!(ip.more_fragments());
        assert_eq!(ip.frag_offset(), 8);
        assert_eq!(ip.ident(), 0x1234);
        assert_eq!(ip.payload(), &[1, 2, 3, 4]);
        assert_eq!(ip.missing(), 0);
    }

    #[test]
    fn ipv4_options_and_truncation() {
        let mut p = v4(100, 6);
        p.extend_from_slice(&[9; 10]);
        let ip = Ipv4::new_checked(&p).unwrap();
        assert_eq!(ip.options().len(), 4);
        assert_eq!(ip.payload().len(), 10);
        assert_eq!(ip.missing(), 66);
        let mut short_ihl = v4(40, 5);
        short_ihl[0] = 0x44;
        assert!(matches!(
            Ipv4::new_checked(&short_ihl),
            Err(Error::Malformed { .. })
        ));
        assert!(matches!(
            Ipv4::new_checked(&v4(10, 5)),
            Err(Error::Malformed { .. })
        ));
        assert!(matches!(
            Ipv4::new_checked(&p[..19]),
            Err(Error::Truncated {
                need: 20,
                have: 19,
                ..
            })
        ));
    }

    #[test]
    fn ipv6_extension_walk() {
        // hop-by-hop (8 bytes) -> fragment (offset 0, M=1, id 7) -> UDP
        let mut ext = vec![44, 0, 1, 4, 0, 0, 0, 0];
        ext.extend_from_slice(&[17, 0, 0x00, 0x01, 0, 0, 0, 7]);
        ext.extend_from_slice(&[0xaa; 8]);
        let p = walk_ipv6_extensions(IpProto::HOPOPT, &ext).unwrap();
        assert_eq!(p.proto, IpProto::UDP);
        assert_eq!(p.fragment, Some((0, true, 7)));
        assert_eq!(p.payload, &[0xaa; 8]);
        // an atomic fragment is not a fragment
        let atomic = [6, 0, 0, 0, 0, 0, 0, 9, 1, 2];
        let p = walk_ipv6_extensions(IpProto::IPV6_FRAG, &atomic).unwrap();
        assert_eq!(
            (p.proto, p.fragment, p.payload),
            (IpProto::TCP, None, &[1u8, 2][..])
        );
        assert!(walk_ipv6_extensions(IpProto::HOPOPT, &[17, 1, 0, 0]).is_err());
        // a loop of 17 destination-options headers is malformed, not endless
        let many = [60u8, 0, 0, 0, 0, 0, 0, 0].repeat(17);
        assert!(matches!(
            walk_ipv6_extensions(IpProto::IPV6_OPTS, &many),
            Err(Error::Malformed { .. })
        ));
    }
}
