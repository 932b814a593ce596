//! Tunnel headers: GRE (incl. PPTP enhanced GRE and ERSPAN), VXLAN, Geneve, GTP-U, Teredo.

use super::ether::EtherType;
use super::{be16, be32};
use crate::error::need;
use crate::{Error, Layer};

/// A GRE header (RFC 2784/2890), or enhanced GRE version 1 (PPTP, RFC 2637).
#[derive(Clone, Copy, Debug)]
pub struct Gre<'a> {
    buf: &'a [u8],
    header_len: usize,
}

impl<'a> Gre<'a> {
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, Error> {
        need(Layer::Gre, buf, 4)?;
        let flags = be16(buf, 0);
        let version = flags & 0x7;
        let mut len = 4;
        match version {
            0 => {
                if flags & 0xc000 != 0 {
                    len += 4; // checksum (+ reserved), also present when only R is set
                }
                if flags & 0x2000 != 0 {
                    len += 4; // key
                }
                if flags & 0x1000 != 0 {
                    len += 4; // sequence
                }
                if flags & 0x4000 != 0 {
                    return Err(Error::Malformed {
                        layer: Layer::Gre,
                        what: "source routing (deprecated) not supported",
                    });
                }
            }
            1 => {
                len += 4; // key (payload length + call id), always present
                if flags & 0x1000 != 0 {
                    len += 4;
                }
                if flags & 0x0080 != 0 {
                    len += 4; // acknowledgment
                }
            }
            _ => {
                return Err(Error::Malformed {
                    layer: Layer::Gre,
                    what: "unknown version",
                });
            }
        }
        need(Layer::Gre, buf, len)?;
        Ok(Self { buf, header_len: len })
    }
    pub fn version(&self) -> u8 {
        (be16(self.buf, 0) & 0x7) as u8
    }
    pub fn protocol(&self) -> EtherType {
        EtherType(be16(self.buf, 2))
    }
    pub fn key(&self) -> Option<u32> {
        let flags = be16(self.buf, 0);
        if flags & 0x2000 == 0 {
            return None;
        }
        let at = if flags & 0xc000 != 0 && self.version() == 0 {
            8
        } else {
            4
        };
        Some(be32(self.buf, at))
    }
    pub fn header_len(&self) -> usize {
        self.header_len
    }
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.header_len..]
    }
    /// ERSPAN type II (8-byte header) or III (12 bytes, plus 8 with the O bit): the mirrored
    /// Ethernet frame.
    pub fn erspan_frame(&self) -> Result<&'a [u8], Error> {
        let p = self.payload();
        let len = match self.protocol() {
            EtherType::ERSPAN_II => 8,
            EtherType::ERSPAN_III => {
                need(Layer::Gre, p, 12)?;
                if p[11] & 0x01 != 0 { 20 } else { 12 }
            }
            _ => {
                return Err(Error::Malformed {
                    layer: Layer::Gre,
                    what: "not ERSPAN",
                });
            }
        };
        need(Layer::Gre, p, len)?;
        Ok(&p[len..])
    }
}

/// VXLAN (RFC 7348) over UDP port 4789: 8 bytes, then an Ethernet frame.
#[derive(Clone, Copy, Debug)]
pub struct Vxlan<'a> {
    buf: &'a [u8],
}

impl<'a> Vxlan<'a> {
    pub const PORT: u16 = 4789;
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, Error> {
        need(Layer::Vxlan, buf, 8)?;
        if buf[0] & 0x08 == 0 {
            return Err(Error::Malformed {
                layer: Layer::Vxlan,
                what: "VNI flag not set",
            });
        }
        Ok(Self { buf })
    }
    pub fn vni(&self) -> u32 {
        be32(self.buf, 4) >> 8
    }
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[8..]
    }
}

/// Geneve (RFC 8926) over UDP port 6081.
#[derive(Clone, Copy, Debug)]
pub struct Geneve<'a> {
    buf: &'a [u8],
    header_len: usize,
}

impl<'a> Geneve<'a> {
    pub const PORT: u16 = 6081;
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, Error> {
        need(Layer::Geneve, buf, 8)?;
        if buf[0] >> 6 != 0 {
            return Err(Error::Malformed {
                layer: Layer::Geneve,
                what: "version is not 0",
            });
        }
        let header_len = 8 + usize::from(buf[0] & 0x3f) * 4;
        need(Layer::Geneve, buf, header_len)?;
        Ok(Self { buf, header_len })
    }
    pub fn protocol(&self) -> EtherType {
        EtherType(be16(self.buf, 2))
    }
    pub fn vni(&self) -> u32 {
        be32(self.buf, 4) >> 8
    }
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.header_len..]
    }
}

/// GTP-U version 1 (3GPP TS 29.281) over UDP port 2152.
#[derive(Clone, Copy, Debug)]
pub struct GtpU<'a> {
    buf: &'a [u8],
    header_len: usize,
}

impl<'a> GtpU<'a> {
    pub const PORT: u16 = 2152;
    /// Message type of a G-PDU (user data).
    pub const G_PDU: u8 = 255;

    pub fn new_checked(buf: &'a [u8]) -> Result<Self, Error> {
        need(Layer::GtpU, buf, 8)?;
        if buf[0] >> 5 != 1 || buf[0] & 0x10 == 0 {
            return Err(Error::Malformed {
                layer: Layer::GtpU,
                what: "not GTP version 1 with PT set",
            });
        }
        let mut len = 8;
        if buf[0] & 0x07 != 0 {
            need(Layer::GtpU, buf, 12)?;
            len = 12;
            let mut next = buf[11];
            let mut guard = 0;
            while buf[0] & 0x04 != 0 && next != 0 {
                guard += 1;
                if guard > 16 {
                    return Err(Error::Malformed {
                        layer: Layer::GtpU,
                        what: "too many extension headers",
                    });
                }
                need(Layer::GtpU, buf, len + 1)?;
                let ext_len = usize::from(buf[len]) * 4;
                if ext_len == 0 {
                    return Err(Error::Malformed {
                        layer: Layer::GtpU,
                        what: "zero-length extension header",
                    });
                }
                need(Layer::GtpU, buf, len + ext_len)?;
                next = buf[len + ext_len - 1];
                len += ext_len;
            }
        }
        Ok(Self { buf, header_len: len })
    }
    pub fn message_type(&self) -> u8 {
        self.buf[1]
    }
    pub fn teid(&self) -> u32 {
        be32(self.buf, 4)
    }
    pub fn payload(&self) -> &'a [u8] {
        let declared = 8 + usize::from(be16(self.buf, 2));
        &self.buf[self.header_len..declared.clamp(self.header_len, self.buf.len())]
    }
}

/// Teredo (RFC 4380) over UDP port 3544: skips the optional authentication and origin
/// indication headers and returns the IPv6 packet, if the payload is one.
pub fn teredo_payload(mut buf: &[u8]) -> Result<&[u8], Error> {
    if buf.len() >= 4 && buf[0] == 0 && buf[1] == 1 {
        let id_len = usize::from(buf[2]);
        let au_len = usize::from(buf[3]);
        let len = 4 + id_len + au_len + 8 + 1;
        need(Layer::Teredo, buf, len)?;
        buf = &buf[len..];
    }
    if buf.len() >= 8 && buf[0] == 0 && buf[1] == 0 {
        buf = &buf[8..];
    }
    need(Layer::Teredo, buf, 40)?;
    if buf[0] >> 4 != 6 {
        return Err(Error::Malformed {
            layer: Layer::Teredo,
            what: "payload is not IPv6",
        });
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gre_variants() {
        let plain = [0x00, 0x00, 0x08, 0x00, 0x45];
        let g = Gre::new_checked(&plain).unwrap();
        assert_eq!((g.protocol(), g.payload()), (EtherType::IPV4, &[0x45u8][..]));
        let keyed = [0x20, 0x00, 0x65, 0x58, 0, 0, 0, 42, 0xff];
        let g = Gre::new_checked(&keyed).unwrap();
        assert_eq!(g.key(), Some(42));
        assert_eq!(g.protocol(), EtherType::TRANSPARENT_ETHERNET);
        assert_eq!(g.payload(), &[0xff]);
        let pptp = [
            0x30, 0x81, 0x88, 0x0b, 0, 4, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0xff, 0x03,
        ];
        let g = Gre::new_checked(&pptp).unwrap();
        assert_eq!((g.version(), g.header_len()), (1, 16));
        assert!(Gre::new_checked(&[0x20, 0, 8, 0, 0]).is_err());
    }

    #[test]
    fn vxlan_geneve_gtp() {
        let v = [0x08, 0, 0, 0, 0, 0, 0x2a, 0, 0xee];
        assert_eq!(Vxlan::new_checked(&v).unwrap().vni(), 42);
        assert!(Vxlan::new_checked(&[0; 8]).is_err());
        let g = [0x01, 0, 0x08, 0x00, 0, 0, 7, 0, 1, 2, 3, 4, 0x45];
        let g = Geneve::new_checked(&g).unwrap();
        assert_eq!((g.vni(), g.payload()), (7, &[0x45u8][..]));
        // GTP-U with the E flag and one 4-byte extension header (PDU session container)
        let gtp = [
            0x34, 0xff, 0, 9, 0, 0, 0, 1, 0, 0, 0, 0x85, 1, 0x10, 0x01, 0x00, 0x45, 0xaa,
        ];
        let g = GtpU::new_checked(&gtp).unwrap();
        assert_eq!((g.message_type(), g.teid()), (255, 1));
        assert_eq!(g.payload(), &[0x45]);
        let loop_ext = [0x34, 0xff, 0, 9, 0, 0, 0, 1, 0, 0, 0, 0x85, 0, 0, 0, 0];
        assert!(GtpU::new_checked(&loop_ext).is_err());
    }

    #[test]
    fn teredo_skips_origin_indication() {
        let mut p = vec![0, 0, 1, 2, 3, 4, 5, 6];
        p.push(0x60);
        p.extend_from_slice(&[0; 39]);
        assert_eq!(teredo_payload(&p).unwrap().len(), 40);
        assert!(teredo_payload(&p[..20]).is_err());
    }
}
