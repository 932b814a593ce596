//! Link layers: Ethernet, 802.1Q/802.1ad tags, MPLS, PPPoE, Linux cooked (SLL, SLL2), BSD
//! null/loopback and Linux NFLOG.

use super::{be16, be32};
use crate::error::need;
use crate::{Error, Layer};

/// An EtherType code point (open: unknown values survive).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EtherType(pub u16);

impl EtherType {
    pub const IPV4: Self = Self(0x0800);
    pub const ARP: Self = Self(0x0806);
    pub const VLAN: Self = Self(0x8100);
    pub const QINQ: Self = Self(0x88a8);
    pub const QINQ_OLD: Self = Self(0x9100);
    pub const IPV6: Self = Self(0x86dd);
    pub const MPLS: Self = Self(0x8847);
    pub const MPLS_MULTICAST: Self = Self(0x8848);
    pub const PPPOE_DISCOVERY: Self = Self(0x8863);
    pub const PPPOE_SESSION: Self = Self(0x8864);
    pub const TRANSPARENT_ETHERNET: Self = Self(0x6558);
    pub const ERSPAN_II: Self = Self(0x88be);
    pub const ERSPAN_III: Self = Self(0x22eb);
    pub const PPP: Self = Self(0x880b);

    /// Is this one of the VLAN tag protocol identifiers?
    pub const fn is_vlan(self) -> bool {
        matches!(self.0, 0x8100 | 0x88a8 | 0x9100)
    }
}

/// An Ethernet II frame (no FCS; an 802.3 length field shows up as an EtherType below 0x0600).
#[derive(Clone, Copy, Debug)]
pub struct Ethernet<'a> {
    buf: &'a [u8],
}

impl<'a> Ethernet<'a> {
    pub const HEADER_LEN: usize = 14;

    pub fn new_checked(buf: &'a [u8]) -> Result<Self, Error> {
        need(Layer::Ethernet, buf, Self::HEADER_LEN)?;
        Ok(Self { buf })
    }
    pub fn dst(&self) -> [u8; 6] {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buf[0..6]);
        m
    }
    pub fn src(&self) -> [u8; 6] {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buf[6..12]);
        m
    }
    pub fn ethertype(&self) -> EtherType {
        EtherType(be16(self.buf, 12))
    }
    /// 802.3 frames carry a length (<= 1500) where Ethernet II carries a type.
    pub fn is_8023(&self) -> bool {
        self.ethertype().0 <= 1500
    }
    /// For 802.3 frames with an LLC/SNAP header (AA AA 03 00 00 00 TYPE): the encapsulated
    /// EtherType and the payload after it.
    pub fn snap(&self) -> Option<(EtherType, &'a [u8])> {
        let p = &self.buf[14..];
        if p.len() >= 8 && p[0] == 0xaa && p[1] == 0xaa && p[2] == 0x03 && p[3..6] == [0, 0, 0] {
            Some((EtherType(be16(p, 6)), &p[8..]))
        } else {
            None
        }
    }
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[14..]
    }
}

/// One 802.1Q / 802.1ad tag (the 4 bytes after a VLAN TPID).
#[derive(Clone, Copy, Debug)]
pub struct Vlan<'a> {
    buf: &'a [u8],
}

impl<'a> Vlan<'a> {
    pub const HEADER_LEN: usize = 4;
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, Error> {
        need(Layer::Vlan, buf, Self::HEADER_LEN)?;
        Ok(Self { buf })
    }
    pub fn vid(&self) -> u16 {
        be16(self.buf, 0) & 0x0fff
    }
    pub fn pcp(&self) -> u8 {
        self.buf[0] >> 5
    }
    pub fn ethertype(&self) -> EtherType {
        EtherType(be16(self.buf, 2))
    }
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[4..]
    }
}

/// An MPLS label stack: the labels up to and including the one with the bottom-of-stack bit.
#[derive(Clone, Copy, Debug)]
pub struct Mpls<'a> {
    buf: &'a [u8],
    depth: usize,
}

impl<'a> Mpls<'a> {
    /// Labels beyond this are treated as malformed (a loop of labels is not a real stack).
    pub const MAX_LABELS: usize = 16;

    pub fn new_checked(buf: &'a [u8]) -> Result<Self, Error> {
        let mut depth = 0;
        loop {
            need(Layer::Mpls, buf, (depth + 1) * 4)?;
            let entry = be32(buf, depth * 4);
            depth += 1;
            if entry & 0x100 != 0 {
                return Ok(Self { buf, depth });
            }
            if depth >= Self::MAX_LABELS {
                return Err(Error::Malformed {
                    layer: Layer::Mpls,
                    what: "more than 16 labels without bottom of stack",
                });
            }
        }
    }
    pub fn labels(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.depth).map(|i| be32(self.buf, i * 4) >> 12)
    }
    pub fn depth(&self) -> usize {
        self.depth
    }
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.depth * 4..]
    }
}

/// A PPPoE session header followed by the PPP protocol field.
#[derive(Clone, Copy, Debug)]
pub struct Pppoe<'a> {
    buf: &'a [u8],
}

impl<'a> Pppoe<'a> {
    pub const HEADER_LEN: usize = 8;
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, Error> {
        need(Layer::Pppoe, buf, Self::HEADER_LEN)?;
        if buf[0] != 0x11 {
            return Err(Error::Malformed {
                layer: Layer::Pppoe,
                what: "version/type is not 1/1",
            });
        }
        Ok(Self { buf })
    }
    pub fn session_id(&self) -> u16 {
        be16(self.buf, 2)
    }
    pub fn ppp_protocol(&self) -> u16 {
        be16(self.buf, 6)
    }
    /// The PPP payload, cut to the PPPoE length field when it is shorter than what was captured.
    pub fn payload(&self) -> &'a [u8] {
        let declared = (be16(self.buf, 4) as usize).saturating_sub(2);
        let p = &self.buf[8..];
        &p[..declared.min(p.len())]
    }
}

/// PPP protocol numbers that carry IP, as EtherTypes.
pub fn ppp_to_ethertype(proto: u16) -> Option<EtherType> {
    match proto {
        0x0021 => Some(EtherType::IPV4),
        0x0057 => Some(EtherType::IPV6),
        0x0281 => Some(EtherType::MPLS),
        _ => None,
    }
}

/// Linux cooked capture v1 (LINKTYPE_LINUX_SLL, 16-byte header).
#[derive(Clone, Copy, Debug)]
pub struct Sll<'a> {
    buf: &'a [u8],
}

impl<'a> Sll<'a> {
    pub const HEADER_LEN: usize = 16;
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, Error> {
        need(Layer::LinuxSll, buf, Self::HEADER_LEN)?;
        Ok(Self { buf })
    }
    pub fn packet_type(&self) -> u16 {
        be16(self.buf, 0)
    }
    pub fn arphrd(&self) -> u16 {
        be16(self.buf, 2)
    }
    pub fn protocol(&self) -> EtherType {
        EtherType(be16(self.buf, 14))
    }
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[16..]
    }
}

/// Linux cooked capture v2 (LINKTYPE_LINUX_SLL2, 20-byte header).
#[derive(Clone, Copy, Debug)]
pub struct Sll2<'a> {
    buf: &'a [u8],
}

impl<'a> Sll2<'a> {
    pub const HEADER_LEN: usize = 20;
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, Error> {
        need(Layer::LinuxSll2, buf, Self::HEADER_LEN)?;
        Ok(Self { buf })
    }
    pub fn protocol(&self) -> EtherType {
        EtherType(be16(self.buf, 0))
    }
    pub fn ifindex(&self) -> u32 {
        be32(self.buf, 4)
    }
    pub fn arphrd(&self) -> u16 {
        be16(self.buf, 8)
    }
    pub fn packet_type(&self) -> u8 {
        self.buf[10]
    }
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[20..]
    }
}

/// BSD null/loopback: a 4-byte address family (host byte order for DLT_NULL, network order for
/// DLT_LOOP) before an IP packet.
#[derive(Clone, Copy, Debug)]
pub struct NullLoopback<'a> {
    buf: &'a [u8],
}

impl<'a> NullLoopback<'a> {
    pub const HEADER_LEN: usize = 4;
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, Error> {
        need(Layer::Null, buf, Self::HEADER_LEN)?;
        Ok(Self { buf })
    }
    /// The family read in whichever byte order gives a small value.
    pub fn family(&self) -> u32 {
        let le = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        let be = be32(self.buf, 0);
        le.min(be)
    }
    /// `Some(true)` for IPv6 families (10 Linux, 24/28/30 BSDs and macOS), `Some(false)` for
    /// AF_INET, `None` otherwise.
    pub fn is_ipv6(&self) -> Option<bool> {
        match self.family() {
            2 => Some(false),
            10 | 24 | 28 | 30 => Some(true),
            _ => None,
        }
    }
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[4..]
    }
}

/// Linux NFLOG (LINKTYPE_NFLOG): a 4-byte header then TLVs in the capturing host's byte order;
/// the packet is in the NFULA_PAYLOAD (type 9) TLV.
#[derive(Clone, Copy, Debug)]
pub struct Nflog<'a> {
    buf: &'a [u8],
}

impl<'a> Nflog<'a> {
    pub const HEADER_LEN: usize = 4;
    const NFULA_PAYLOAD: u16 = 9;

    pub fn new_checked(buf: &'a [u8]) -> Result<Self, Error> {
        need(Layer::Nflog, buf, Self::HEADER_LEN)?;
        Ok(Self { buf })
    }
    /// AF_INET (2) or AF_INET6 (10).
    pub fn family(&self) -> u8 {
        self.buf[0]
    }
    /// The logged packet, or why it could not be found.
    pub fn payload(&self) -> Result<&'a [u8], Error> {
        // TLV lengths are host-endian; try little-endian (almost every capture) then big.
        Self::find(&self.buf[4..], false).or_else(|_| Self::find(&self.buf[4..], true))
    }

    fn find(mut tlvs: &'a [u8], big: bool) -> Result<&'a [u8], Error> {
        while tlvs.len() >= 4 {
            let rd = |i: usize| {
                if big {
                    u16::from_be_bytes([tlvs[i], tlvs[i + 1]])
                } else {
                    u16::from_le_bytes([tlvs[i], tlvs[i + 1]])
                }
            };
            let len = rd(0) as usize;
            let typ = rd(2) & 0x7fff;
            if len < 4 {
                return Err(Error::Malformed {
                    layer: Layer::Nflog,
                    what: "TLV length below 4",
                });
            }
            if typ == Self::NFULA_PAYLOAD {
                let end = len.min(tlvs.len());
                return Ok(&tlvs[4..end]);
            }
            let padded = (len + 3) & !3;
            if padded > tlvs.len() {
                break;
            }
            tlvs = &tlvs[padded..];
        }
        Err(Error::Malformed {
            layer: Layer::Nflog,
            what: "no NFULA_PAYLOAD TLV",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ethernet_and_vlan() {
        let mut f = vec![0xffu8; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&[0x81, 0x00, 0x20, 0x0a, 0x08, 0x00, 0x45]);
        let e = Ethernet::new_checked(&f).unwrap();
        assert!(e.ethertype().is_vlan());
        let v = Vlan::new_checked(e.payload()).unwrap();
        assert_eq!(v.vid(), 10);
        assert_eq!(v.pcp(), 1);
        assert_eq!(v.ethertype(), EtherType::IPV4);
        assert_eq!(v.payload(), &[0x45]);
        assert!(matches!(
            Ethernet::new_checked(&f[..13]),
            Err(Error::Truncated {
                layer: Layer::Ethernet,
                need: 14,
                have: 13
            })
        ));
    }

    #[test]
    fn mpls_stack() {
        // label 16 (not bottom), label 17 (bottom), then an IPv4 nibble.
        let b = [0x00, 0x01, 0x00, 0x40, 0x00, 0x01, 0x11, 0x40, 0x45];
        let m = Mpls::new_checked(&b).unwrap();
        assert_eq!(m.labels().collect::<Vec<_>>(), vec![16, 17]);
        assert_eq!(m.payload(), &[0x45]);
        assert!(Mpls::new_checked(&b[..4]).is_err());
        let endless = [0u8; 80];
        assert!(matches!(
            Mpls::new_checked(&endless),
            Err(Error::Malformed { .. })
        ));
    }

    #[test]
    fn nflog_finds_payload_in_either_byte_order() {
        let mut le = vec![2, 0, 0, 0];
        le.extend_from_slice(&[8, 0, 1, 0, 0, 0, 0, 0]); // type 1, len 8
        le.extend_from_slice(&[6, 0, 9, 0, 0x45, 0x00, 0, 0]); // payload len 6 -> 2 bytes
        assert_eq!(Nflog::new_checked(&le).unwrap().payload().unwrap(), &[0x45, 0x00]);
        let mut be = vec![10, 0, 0, 0];
        be.extend_from_slice(&[0, 6, 0, 9, 0x60, 0x00, 0, 0]);
        assert_eq!(Nflog::new_checked(&be).unwrap().payload().unwrap(), &[0x60, 0x00]);
        assert!(
            Nflog::new_checked(&[2, 0, 0, 0, 1, 0, 0, 0])
                .unwrap()
                .payload()
                .is_err()
        );
    }

    #[test]
    fn null_family_both_orders() {
        assert_eq!(
            NullLoopback::new_checked(&[2, 0, 0, 0]).unwrap().is_ipv6(),
            Some(false)
        );
        assert_eq!(
            NullLoopback::new_checked(&[0, 0, 0, 30]).unwrap().is_ipv6(),
            Some(true)
        );
        assert_eq!(NullLoopback::new_checked(&[7, 0, 0, 0]).unwrap().is_ipv6(), None);
    }
}
