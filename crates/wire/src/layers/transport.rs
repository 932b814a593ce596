//! Transport headers: TCP, UDP, ICMP/ICMPv6, SCTP.

use super::{be16, be32};
use crate::error::need;
use crate::{Error, Layer};

/// TCP flag bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub fn fin(self) -> bool {
        self.0 & Self::FIN != 0
    }
    pub fn syn(self) -> bool {
        self.0 & Self::SYN != 0
    }
    pub fn rst(self) -> bool {
        self.0 & Self::RST != 0
    }
    pub fn ack(self) -> bool {
        self.0 & Self::ACK != 0
    }
}

/// A TCP segment. `new_checked` needs the 20-byte fixed header; options are bounded by the data
/// offset, which must fit in what was captured for [`Tcp::payload`] to be non-empty. A data
/// offset below 5 words is kept (lax: the ports still name the flow) and reported by
/// [`Tcp::data_offset_valid`]; the header is then taken as 20 bytes.
#[derive(Clone, Copy, Debug)]
pub struct Tcp<'a> {
    buf: &'a [u8],
}

impl<'a> Tcp<'a> {
    pub const MIN_HEADER_LEN: usize = 20;
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, Error> {
        need(Layer::Tcp, buf, Self::MIN_HEADER_LEN)?;
        Ok(Self { buf })
    }
    pub fn src_port(&self) -> u16 {
        be16(self.buf, 0)
    }
    pub fn dst_port(&self) -> u16 {
        be16(self.buf, 2)
    }
    pub fn seq(&self) -> u32 {
        be32(self.buf, 4)
    }
    pub fn ack_number(&self) -> u32 {
        be32(self.buf, 8)
    }
    /// Header length from the data offset (at least 20).
    pub fn header_len(&self) -> usize {
        (usize::from(self.buf[12] >> 4) * 4).max(Self::MIN_HEADER_LEN)
    }
    /// `false` when the data offset is below 5 words (a malformed header).
    pub fn data_offset_valid(&self) -> bool {
        self.buf[12] >> 4 >= 5
    }
    /// The anomaly to report for this header, if any.
    pub fn anomaly(&self) -> Option<Error> {
        (!self.data_offset_valid()).then_some(Error::Malformed {
            layer: Layer::Tcp,
            what: "data offset below 5 words",
        })
    }
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buf[13])
    }
    pub fn window(&self) -> u16 {
        be16(self.buf, 14)
    }
    /// Options as captured (may be cut short by the capture).
    pub fn options(&self) -> &'a [u8] {
        &self.buf[20..self.header_len().min(self.buf.len())]
    }
    /// Captured payload (empty when the header itself was cut short).
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.header_len().min(self.buf.len())..]
    }
}

/// A UDP datagram. The payload is cut to the length field when that is shorter than captured.
#[derive(Clone, Copy, Debug)]
pub struct Udp<'a> {
    buf: &'a [u8],
}

impl<'a> Udp<'a> {
    pub const HEADER_LEN: usize = 8;
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, Error> {
        need(Layer::Udp, buf, Self::HEADER_LEN)?;
        Ok(Self { buf })
    }
    pub fn src_port(&self) -> u16 {
        be16(self.buf, 0)
    }
    pub fn dst_port(&self) -> u16 {
        be16(self.buf, 2)
    }
    pub fn length(&self) -> u16 {
        be16(self.buf, 4)
    }
    pub fn checksum(&self) -> u16 {
        be16(self.buf, 6)
    }
    pub fn payload(&self) -> &'a [u8] {
        let len = usize::from(self.length());
        let end = if len >= 8 {
            len.min(self.buf.len())
        } else {
            self.buf.len()
        };
        &self.buf[8..end]
    }
}

/// An ICMP (v4) or ICMPv6 message header.
#[derive(Clone, Copy, Debug)]
pub struct Icmp<'a> {
    buf: &'a [u8],
    v6: bool,
}

impl<'a> Icmp<'a> {
    pub const HEADER_LEN: usize = 8;
    pub fn new_checked(buf: &'a [u8], v6: bool) -> Result<Self, Error> {
        need(if v6 { Layer::Icmpv6 } else { Layer::Icmp }, buf, 4)?;
        Ok(Self { buf, v6 })
    }
    pub fn is_v6(&self) -> bool {
        self.v6
    }
    pub fn icmp_type(&self) -> u8 {
        self.buf[0]
    }
    pub fn code(&self) -> u8 {
        self.buf[1]
    }
    /// Error messages quote the offending packet: destination unreachable, time exceeded,
    /// parameter problem, source quench, redirect (v4); types 1-4 (v6).
    pub fn is_error(&self) -> bool {
        if self.v6 {
            (1..=4).contains(&self.icmp_type())
        } else {
            matches!(self.icmp_type(), 3 | 4 | 5 | 11 | 12)
        }
    }
    /// Echo request or reply: `Some((is_request, identifier, sequence))`.
    pub fn echo(&self) -> Option<(bool, u16, u16)> {
        if self.buf.len() < 8 {
            return None;
        }
        let (req, rep) = if self.v6 { (128, 129) } else { (8, 0) };
        match self.icmp_type() {
            t if t == req => Some((true, be16(self.buf, 4), be16(self.buf, 6))),
            t if t == rep => Some((false, be16(self.buf, 4), be16(self.buf, 6))),
            _ => None,
        }
    }
    /// The quoted IP packet of an error message.
    pub fn quoted(&self) -> Option<&'a [u8]> {
        (self.is_error() && self.buf.len() > 8).then(|| &self.buf[8..])
    }
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.buf.len().min(8)..]
    }
}

/// An SCTP common header (chunks are not decoded).
#[derive(Clone, Copy, Debug)]
pub struct Sctp<'a> {
    buf: &'a [u8],
}

impl<'a> Sctp<'a> {
    pub const HEADER_LEN: usize = 12;
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, Error> {
        need(Layer::Sctp, buf, Self::HEADER_LEN)?;
        Ok(Self { buf })
    }
    pub fn src_port(&self) -> u16 {
        be16(self.buf, 0)
    }
    pub fn dst_port(&self) -> u16 {
        be16(self.buf, 2)
    }
    pub fn verification_tag(&self) -> u32 {
        be32(self.buf, 4)
    }
    /// The first chunk's type (1 = INIT, 2 = INIT ACK ...), when captured.
    pub fn first_chunk_type(&self) -> Option<u8> {
        self.buf.get(12).copied()
    }
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[12..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_header() {
        let mut s = vec![
            0x30, 0x39, 0x01, 0xbb, 0, 0, 0, 1, 0, 0, 0, 0, 0x60, 0x12, 0xff, 0xff, 0, 0, 0, 0,
        ];
        s.extend_from_slice(&[2, 4, 5, 0xb4, b'h', b'i']);
        let t = Tcp::new_checked(&s).unwrap();
        assert_eq!((t.src_port(), t.dst_port(), t.seq()), (12345, 443, 1));
        assert!(t.flags().syn() && t.flags().ack() && !t.flags().fin());
        assert_eq!(t.options(), &[2, 4, 5, 0xb4]);
        assert_eq!(t.payload(), b"hi");
        // data offset beyond what was captured: empty payload, options cut
        assert_eq!(Tcp::new_checked(&s[..22]).unwrap().payload(), b"");
        s[12] = 0x40;
        let bogus = Tcp::new_checked(&s).unwrap();
        assert!(!bogus.data_offset_valid());
        assert_eq!(bogus.header_len(), 20);
        assert!(matches!(
            bogus.anomaly(),
            Some(Error::Malformed {
                layer: Layer::Tcp,
                ..
            })
        ));
    }

    #[test]
    fn udp_length_cuts_padding() {
        let d = [0, 53, 0x30, 0x39, 0, 10, 0, 0, 1, 2, 0, 0, 0];
        let u = Udp::new_checked(&d).unwrap();
        assert_eq!((u.src_port(), u.dst_port()), (53, 12345));
        assert_eq!(u.payload(), &[1, 2]);
    }

    #[test]
    fn icmp_kinds() {
        let echo = [8, 0, 0, 0, 0, 7, 0, 1];
        assert_eq!(
            Icmp::new_checked(&echo, false).unwrap().echo(),
            Some((true, 7, 1))
        );
        let unreach = [3, 3, 0, 0, 0, 0, 0, 0, 0x45];
        let i = Icmp::new_checked(&unreach, false).unwrap();
        assert!(i.is_error());
        assert_eq!(i.quoted(), Some(&[0x45u8][..]));
        assert!(Icmp::new_checked(&[1, 4, 0, 0], true).unwrap().is_error());
        assert!(!Icmp::new_checked(&[128, 0, 0, 0], true).unwrap().is_error());
    }
}
