//! STUN and TURN messages (RFC 8489, RFC 8656, and the classic RFC 3489 form without the magic
//! cookie), TURN ChannelData recognition, STUN over TCP framing, and DTLS record recognition.
//!
//! [`parse`] is strict, because STUN shares ports and datagrams with media: the first two bits
//! are 0, the length is a multiple of 4 and fits, and the attributes walk exactly to the end.

use crate::cursor::Reader;
use crate::{Error, Layer};
use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The magic cookie of RFC 5389/8489 messages.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// The STUN header length.
pub const HEADER_LEN: usize = 20;

/// Attribute types used by the accessors.
pub mod attr {
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    pub const USERNAME: u16 = 0x0006;
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    pub const ERROR_CODE: u16 = 0x0009;
    pub const REALM: u16 = 0x0014;
    pub const NONCE: u16 = 0x0015;
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    /// The pre-RFC 5389 code point some implementations still send.
    pub const XOR_MAPPED_ADDRESS_OLD: u16 = 0x8020;
    pub const SOFTWARE: u16 = 0x8022;
    pub const FINGERPRINT: u16 = 0x8028;
}

/// The class of a STUN message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    Request,
    Indication,
    SuccessResponse,
    ErrorResponse,
}

/// One attribute, its value without padding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribute {
    pub typ: u16,
    pub value: Vec<u8>,
}

/// A STUN message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub class: Class,
    /// 0x001 Binding, 0x003 Allocate, 0x004 Refresh, 0x006 Send, 0x007 Data, 0x008
    /// CreatePermission, 0x009 ChannelBind, ...
    pub method: u16,
    /// The transaction ID; for classic messages, the last 12 of its 16 bytes.
    pub transaction_id: [u8; 12],
    /// RFC 3489 form (no magic cookie).
    pub classic: bool,
    /// The header's length field (attribute bytes).
    pub length: u16,
    pub attributes: Vec<Attribute>,
}

impl Message {
    /// "Binding", "Allocate", ... or the method in hex ("0x0ab") when unknown.
    pub fn method_name(&self) -> Cow<'static, str> {
        let name = match self.method {
            0x001 => "Binding",
            0x002 => "SharedSecret",
            0x003 => "Allocate",
            0x004 => "Refresh",
            0x006 => "Send",
            0x007 => "Data",
            0x008 => "CreatePermission",
            0x009 => "ChannelBind",
            0x00a => "Connect",
            0x00b => "ConnectionBind",
            0x00c => "ConnectionAttempt",
            m => return Cow::Owned(format!("0x{m:03x}")),
        };
        Cow::Borrowed(name)
    }

    /// "request", "indication", "success_response" or "error_response".
    pub fn class_name(&self) -> &'static str {
        match self.class {
            Class::Request => "request",
            Class::Indication => "indication",
            Class::SuccessResponse => "success_response",
            Class::ErrorResponse => "error_response",
        }
    }

    /// The value of the first attribute of this type.
    pub fn attribute(&self, typ: u16) -> Option<&[u8]> {
        self.attributes
            .iter()
            .find(|a| a.typ == typ)
            .map(|a| a.value.as_slice())
    }

    fn text(&self, typ: u16) -> Option<&str> {
        std::str::from_utf8(self.attribute(typ)?).ok()
    }

    /// SOFTWARE (the classic SERVER attribute shares its code point).
    pub fn software(&self) -> Option<&str> {
        self.text(attr::SOFTWARE)
    }

    pub fn username(&self) -> Option<&str> {
        self.text(attr::USERNAME)
    }

    pub fn realm(&self) -> Option<&str> {
        self.text(attr::REALM)
    }

    /// ERROR-CODE as (code, reason).
    pub fn error_code(&self) -> Option<(u16, &str)> {
        let v = self.attribute(attr::ERROR_CODE)?;
        let code = u16::from(*v.get(2)? & 0x07) * 100 + u16::from(*v.get(3)?);
        Some((code, std::str::from_utf8(&v[4..]).ok()?))
    }

    /// XOR-MAPPED-ADDRESS (or its pre-RFC 5389 code point 0x8020), decoded.
    pub fn xor_mapped_address(&self) -> Option<SocketAddr> {
        let v = self
            .attribute(attr::XOR_MAPPED_ADDRESS)
            .or_else(|| self.attribute(attr::XOR_MAPPED_ADDRESS_OLD))?;
        let mut key = [0u8; 16];
        key[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        key[4..].copy_from_slice(&self.transaction_id);
        address(v, Some(&key))
    }

    /// MAPPED-ADDRESS, decoded.
    pub fn mapped_address(&self) -> Option<SocketAddr> {
        address(self.attribute(attr::MAPPED_ADDRESS)?, None)
    }
}

/// An address attribute: reserved, family (1 IPv4, 2 IPv6), port, address; XORed with `key`.
fn address(v: &[u8], key: Option<&[u8; 16]>) -> Option<SocketAddr> {
    let k = |i: usize| key.map_or(0, |k| k[i]);
    let port = u16::from_be_bytes([v.get(2)? ^ k(0), v.get(3)? ^ k(1)]);
    let ip = match (v.get(1)?, v.len()) {
        (1, 8) => {
            let mut a = [0u8; 4];
            for (i, b) in a.iter_mut().enumerate() {
                *b = v[4 + i] ^ k(i);
            }
            IpAddr::V4(Ipv4Addr::from(a))
        }
        (2, 20) => {
            let mut a = [0u8; 16];
            for (i, b) in a.iter_mut().enumerate() {
                *b = v[4 + i] ^ k(i);
            }
            IpAddr::V6(Ipv6Addr::from(a))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

fn malformed(what: &'static str) -> Error {
    Error::Malformed {
        layer: Layer::Stun,
        what,
    }
}

/// The message types RFC 3489 defines (Binding and Shared Secret requests and responses).
fn is_classic_type(t: u16) -> bool {
    matches!(t, 0x0001 | 0x0101 | 0x0111 | 0x0002 | 0x0102 | 0x0112)
}

/// Attribute types a classic message may carry: RFC 3489's 0x0001..=0x000b, and the
/// comprehension-optional range (XOR-MAPPED-ADDRESS 0x8020, SERVER 0x8022, ...).
fn is_classic_attribute(t: u16) -> bool {
    (0x0001..=0x000b).contains(&t) || t >= 0x8000
}

/// Parses one STUN message at the start of `buf`: the message and the bytes it uses
/// (20 + length). Bytes after it are not looked at.
pub fn parse(buf: &[u8]) -> Result<(Message, usize), Error> {
    let mut r = Reader::new(buf, Layer::Stun);
    let typ = r.u16()?;
    let length = r.u16()?;
    let cookie = r.u32()?;
    let tid = r.bytes(12)?;
    if typ & 0xc000 != 0 {
        return Err(malformed("first two bits of the message type are not 0"));
    }
    if length % 4 != 0 {
        return Err(malformed("length is not a multiple of 4"));
    }
    let classic = cookie != MAGIC_COOKIE;
    if classic && !is_classic_type(typ) {
        return Err(malformed("no magic cookie and not an RFC 3489 message type"));
    }
    let mut body = r.sub(usize::from(length))?;
    let mut attributes = Vec::new();
    while !body.is_empty() {
        let at = body.u16()?;
        let len = usize::from(body.u16()?);
        let value = body
            .bytes(len)
            .map_err(|_| malformed("attribute overruns the message"))?;
        let pad = (4 - len % 4) % 4;
        body.skip(pad)
            .map_err(|_| malformed("attribute padding overruns the message"))?;
        if classic && !is_classic_attribute(at) {
            return Err(malformed("attribute type unknown to RFC 3489"));
        }
        attributes.push(Attribute {
            typ: at,
            value: value.to_vec(),
        });
    }
    let mut transaction_id = [0u8; 12];
    transaction_id.copy_from_slice(tid);
    let class = match ((typ >> 7) & 0x2) | ((typ >> 4) & 0x1) {
        0 => Class::Request,
        1 => Class::Indication,
        2 => Class::SuccessResponse,
        _ => Class::ErrorResponse,
    };
    let method = (typ & 0x000f) | ((typ & 0x00e0) >> 1) | ((typ & 0x3e00) >> 2);
    Ok((
        Message {
            class,
            method,
            transaction_id,
            classic,
            length,
            attributes,
        },
        HEADER_LEN + usize::from(length),
    ))
}

/// A TURN ChannelData message (RFC 8656 section 12.4) in one datagram: channel number
/// 0x4000..=0x7FFF, and the 2-byte length fits, leaving at most 3 bytes of padding.
pub fn is_channel_data(buf: &[u8]) -> bool {
    let [a, b, c, d, ..] = *buf else { return false };
    let channel = u16::from_be_bytes([a, b]);
    let len = usize::from(u16::from_be_bytes([c, d]));
    (0x4000..=0x7fff).contains(&channel) && 4 + len <= buf.len() && buf.len() <= 4 + len + 3
}

/// How STUN messages are framed on a TCP stream.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// Back to back (RFC 8489 section 6.2.2), with TURN ChannelData messages (padded to 4).
    Direct,
    /// Each frame behind a 2-byte length (RFC 4571, as in ICE-TCP).
    Rfc4571,
}

fn has_cookie_at(stream: &[u8], at: usize) -> bool {
    stream
        .get(at..at + 4)
        .is_some_and(|c| c == MAGIC_COOKIE.to_be_bytes())
}

fn detect_framing(stream: &[u8]) -> Option<Framing> {
    if has_cookie_at(stream, 4) && stream[0] & 0xc0 == 0 {
        return Some(Framing::Direct);
    }
    if has_cookie_at(stream, 6) {
        let frame = usize::from(u16::from_be_bytes([stream[0], stream[1]]));
        let msg = usize::from(u16::from_be_bytes([stream[4], stream[5]]));
        if frame == HEADER_LEN + msg {
            return Some(Framing::Rfc4571);
        }
    }
    None
}

/// STUN over TCP: the messages at the start of `stream` and the bytes they use. Messages are
/// either back to back (TURN ChannelData messages between them are skipped) or each behind an
/// RFC 4571 2-byte length (frames that are not STUN, such as RTP or DTLS, are skipped); the
/// framing is decided by the first message. Stops at an incomplete message or at bytes that
/// are neither.
pub fn split_tcp(stream: &[u8]) -> (Vec<Message>, usize) {
    let mut out = Vec::new();
    let Some(framing) = detect_framing(stream) else {
        return (out, 0);
    };
    let mut used = 0;
    while used < stream.len() {
        let rest = &stream[used..];
        match framing {
            Framing::Direct => {
                if let Ok((m, n)) = parse(rest) {
                    out.push(m);
                    used += n;
                    continue;
                }
                let [a, _, c, d, ..] = *rest else { break };
                let len = usize::from(u16::from_be_bytes([c, d]));
                let padded = 4 + len.div_ceil(4) * 4;
                if a & 0xc0 == 0x40 && padded <= rest.len() {
                    used += padded;
                } else {
                    break;
                }
            }
            Framing::Rfc4571 => {
                let [a, b, ..] = *rest else { break };
                let len = usize::from(u16::from_be_bytes([a, b]));
                let Some(frame) = rest.get(2..2 + len) else { break };
                if let Ok((m, n)) = parse(frame)
                    && n == len
                {
                    out.push(m);
                }
                used += 2 + len;
            }
        }
    }
    (out, used)
}

/// A DTLS record header (RFC 6347/9147): content type 20..=25, version 0xfeff (1.0), 0xfefd (1.2)
/// or 0xfefc (1.3), and a non-zero length up to 2^14 + 2048 that fits in `payload`.
pub fn looks_like_dtls(payload: &[u8]) -> bool {
    if payload.len() < 13 {
        return false;
    }
    let len = usize::from(u16::from_be_bytes([payload[11], payload[12]]));
    (20..=25).contains(&payload[0])
        && payload[1] == 0xfe
        && matches!(payload[2], 0xff | 0xfd | 0xfc)
        && len > 0
        && len <= (1 << 14) + 2048
        && 13 + len <= payload.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// CRC-32 (IEEE), for checking FINGERPRINT values.
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    /// The FINGERPRINT of a message ending in a FINGERPRINT attribute is right.
    fn fingerprint_ok(msg: &[u8]) -> bool {
        let n = msg.len();
        let fp = u32::from_be_bytes([msg[n - 4], msg[n - 3], msg[n - 2], msg[n - 1]]);
        crc32(&msg[..n - 8]) ^ 0x5354_554e == fp
    }

    /// RFC 5769 section 2.1: sample request.
    const RFC5769_REQUEST: [u8; 108] = [
        0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa,
        0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74, 0x65, 0x73, 0x74, 0x20,
        0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x01, 0xff, 0x80, 0x29, 0x00,
        0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36, 0x00, 0x06, 0x00, 0x09, 0x65, 0x76, 0x74, 0x6a,
        0x3a, 0x68, 0x36, 0x76, 0x59, 0x20, 0x20, 0x20, 0x00, 0x08, 0x00, 0x14, 0x9a, 0xea, 0xa7, 0x0c, 0xbf,
        0xd8, 0xcb, 0x56, 0x78, 0x1e, 0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49, 0xc1, 0xb5, 0x71, 0xa2, 0x80, 0x28,
        0x00, 0x04, 0xe5, 0x7a, 0x3b, 0xcf,
    ];

    /// RFC 5769 section 2.2: sample IPv4 response.
    const RFC5769_IPV4: [u8; 80] = [
        0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa,
        0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63, 0x74, 0x6f,
        0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43, 0x00, 0x08, 0x00,
        0x14, 0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3, 0x8c, 0x74, 0x89, 0xf9, 0x2a, 0xf9, 0xba, 0x53,
        0xf0, 0x6b, 0xe7, 0xd7, 0x80, 0x28, 0x00, 0x04, 0xc0, 0x7d, 0x4c, 0x96,
    ];

    /// RFC 5769 section 2.3: sample IPv6 response.
    const RFC5769_IPV6: [u8; 92] = [
        0x01, 0x01, 0x00, 0x48, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa,
        0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63, 0x74, 0x6f,
        0x72, 0x20, 0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0xa1, 0x47, 0x01, 0x13, 0xa9, 0xfa, 0xa5, 0xd3, 0xf1,
        0x79, 0xbc, 0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9, 0x00, 0x08, 0x00, 0x14, 0xa3, 0x82, 0x95, 0x4e,
        0x4b, 0xe6, 0x7b, 0xf1, 0x17, 0x84, 0xc9, 0x7c, 0x82, 0x92, 0xc2, 0x75, 0xbf, 0xe3, 0xed, 0x41, 0x80,
        0x28, 0x00, 0x04, 0xc8, 0xfb, 0x0b, 0x4c,
    ];

    /// A classic RFC 3489 Binding Request with CHANGE-REQUEST (change IP and port).
    const CLASSIC: [u8; 28] = [
        0x00, 0x01, 0x00, 0x08, 0x5a, 0x0b, 0x1c, 0x2d, 0x3e, 0x4f, 0x50, 0x61, 0x72, 0x83, 0x94, 0xa5, 0xb6,
        0xc7, 0xd8, 0xe9, 0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x00, 0x06,
    ];

    #[test]
    fn rfc5769_vectors_are_the_real_bytes() {
        // the FINGERPRINT CRC covers every byte before it, so this checks the transcription
        assert!(fingerprint_ok(&RFC5769_REQUEST));
        assert!(fingerprint_ok(&RFC5769_IPV4));
        assert!(fingerprint_ok(&RFC5769_IPV6));
    }

    #[test]
    fn binding_request_with_software_username_integrity_fingerprint() {
        let (m, n) = parse(&RFC5769_REQUEST).unwrap();
        assert_eq!(n, 108);
        assert_eq!(
            (m.class, m.method, m.classic, m.length),
            (Class::Request, 0x001, false, 0x58)
        );
        assert_eq!((m.class_name(), m.method_name().as_ref()), ("request", "Binding"));
        assert_eq!(m.transaction_id, RFC5769_REQUEST[8..20]);
        assert_eq!(m.software(), Some("STUN test client"));
        assert_eq!(m.username(), Some("evtj:h6vY"));
        assert_eq!(m.realm(), None);
        let types: Vec<u16> = m.attributes.iter().map(|a| a.typ).collect();
        assert_eq!(types, [0x8022, 0x0024, 0x8029, 0x0006, 0x0008, 0x8028]);
        assert_eq!(m.attribute(attr::MESSAGE_INTEGRITY).map(<[u8]>::len), Some(20));
        // trailing bytes are not used
        let mut longer = RFC5769_REQUEST.to_vec();
        longer.extend_from_slice(&[0; 7]);
        assert_eq!(parse(&longer).unwrap().1, 108);
    }

    #[test]
    fn responses_with_xor_mapped_address() {
        let (m, n) = parse(&RFC5769_IPV4).unwrap();
        assert_eq!(n, RFC5769_IPV4.len());
        assert_eq!(m.class, Class::SuccessResponse);
        assert_eq!(m.class_name(), "success_response");
        assert_eq!(m.software(), Some("test vector"));
        assert_eq!(m.xor_mapped_address(), Some("192.0.2.1:32853".parse().unwrap()));
        assert_eq!(m.mapped_address(), None);
        let (m, _) = parse(&RFC5769_IPV6).unwrap();
        assert_eq!(
            m.xor_mapped_address(),
            Some("[2001:db8:1234:5678:11:2233:4455:6677]:32853".parse().unwrap())
        );
    }

    #[test]
    fn classic_rfc3489_binding_request_and_response() {
        let (m, n) = parse(&CLASSIC).unwrap();
        assert_eq!(n, 28);
        assert!(m.classic);
        assert_eq!((m.class, m.method_name().as_ref()), (Class::Request, "Binding"));
        assert_eq!(m.transaction_id, CLASSIC[8..20]);
        // a classic Binding Response with MAPPED-ADDRESS 198.51.100.7:4660
        let mut resp = vec![0x01, 0x01, 0x00, 0x0c];
        resp.extend_from_slice(&CLASSIC[4..20]);
        resp.extend_from_slice(&[0x00, 0x01, 0x00, 0x08, 0x00, 0x01, 0x12, 0x34, 198, 51, 100, 7]);
        let (m, _) = parse(&resp).unwrap();
        assert_eq!(m.mapped_address(), Some("198.51.100.7:4660".parse().unwrap()));
        // without the cookie, an unknown type or attribute is not STUN
        let mut bad = CLASSIC;
        bad[1] = 0x03; // Allocate did not exist in RFC 3489
        assert!(parse(&bad).is_err());
        let mut bad = CLASSIC;
        bad[21] = 0x24; // PRIORITY is not an RFC 3489 attribute
        assert!(parse(&bad).is_err());
    }

    #[test]
    fn non_stun_rejected() {
        assert!(parse(b"GET / HTTP/1.1\r\n\r\n").is_err());
        assert!(parse(&[0u8; 19]).is_err());
        let mut m = RFC5769_IPV4;
        m[0] = 0x41; // first bits 01: ChannelData, not STUN
        assert!(parse(&m).is_err());
        let mut m = RFC5769_IPV4;
        m[3] = 0x3d; // length not a multiple of 4
        assert!(parse(&m).is_err());
        let mut m = RFC5769_IPV4;
        m[3] = 0x40; // longer than the datagram
        assert!(matches!(parse(&m), Err(Error::Truncated { .. })));
        let mut m = RFC5769_IPV4;
        m[3] = 0x38; // attributes do not walk to the end
        assert!(parse(&m).is_err());
        let mut m = RFC5769_IPV4;
        m[23] = 0xff; // SOFTWARE length overruns
        assert!(parse(&m).is_err());
        // RTP (version 2) is not STUN
        let rtp = [
            0x80, 0x60, 0x12, 0x34, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
        ];
        assert!(parse(&rtp).is_err());
    }

    #[test]
    fn method_and_class_names() {
        let mut alloc_err = RFC5769_IPV4;
        alloc_err[0] = 0x01;
        alloc_err[1] = 0x13; // Allocate error response
        let (m, _) = parse(&alloc_err).unwrap();
        assert_eq!(
            (m.class, m.method_name().as_ref()),
            (Class::ErrorResponse, "Allocate")
        );
        let mut ind = RFC5769_IPV4;
        ind[0] = 0x00;
        ind[1] = 0x16; // Send indication
        let (m, _) = parse(&ind).unwrap();
        assert_eq!((m.class_name(), m.method_name().as_ref()), ("indication", "Send"));
        let mut odd = RFC5769_IPV4;
        odd[0] = 0x00;
        odd[1] = 0x0f;
        assert_eq!(parse(&odd).unwrap().0.method_name(), "0x00f");
    }

    #[test]
    fn channel_data() {
        let mut cd = vec![0x40, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5];
        assert!(is_channel_data(&cd));
        cd.extend_from_slice(&[0, 0, 0]);
        assert!(is_channel_data(&cd));
        cd.push(0);
        assert!(!is_channel_data(&cd));
        assert!(!is_channel_data(&[0x40, 0x01, 0x00, 0x05, 1, 2]));
        assert!(!is_channel_data(&[0x80, 0x01, 0x00, 0x00]));
        assert!(!is_channel_data(&RFC5769_REQUEST));
        assert!(!is_channel_data(b"Hello"));
    }

    #[test]
    fn tcp_stream_back_to_back_with_partial_fourth() {
        let mut s = RFC5769_REQUEST.to_vec();
        s.extend_from_slice(&RFC5769_IPV4);
        s.extend_from_slice(&[0x40, 0x00, 0x00, 0x03, 9, 9, 9, 0]); // ChannelData, padded
        s.extend_from_slice(&RFC5769_IPV6);
        let whole = s.len();
        s.extend_from_slice(&RFC5769_REQUEST[..50]);
        let (msgs, used) = split_tcp(&s);
        assert_eq!(msgs.len(), 3);
        assert_eq!(used, whole);
        assert_eq!(msgs[2].xor_mapped_address().map(|a| a.port()), Some(32853));
        // the partial message completes once the rest arrives
        let (more, n) = split_tcp(&[&s[used..], &RFC5769_REQUEST[50..]].concat());
        assert_eq!((more.len(), n), (1, RFC5769_REQUEST.len()));
        assert_eq!(split_tcp(&s[..10]), (vec![], 0));
        assert_eq!(split_tcp(b"GET / HTTP/1.1\r\n"), (vec![], 0));
    }

    #[test]
    fn tcp_stream_rfc4571_framing() {
        let mut s = Vec::new();
        for m in [
            &RFC5769_REQUEST[..],
            &[0x80, 0x00, 0x00, 0x01, 1, 2, 3, 4][..],
            &RFC5769_IPV4[..],
        ] {
            s.extend_from_slice(&(m.len() as u16).to_be_bytes());
            s.extend_from_slice(m);
        }
        let whole = s.len();
        s.extend_from_slice(&[0x00, 0x5c, 0x01, 0x01]);
        let (msgs, used) = split_tcp(&s);
        assert_eq!(msgs.len(), 2, "the RTP frame is skipped");
        assert_eq!(used, whole);
        assert_eq!(msgs[1].software(), Some("test vector"));
    }

    #[test]
    fn dtls_records() {
        // a record carrying a ClientHello: handshake, version 0xfeff (DTLS 1.0, as in a first
        // flight), epoch 0, sequence 0, length 0x00b2
        let mut ch = vec![0x16, 0xfe, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0xb2];
        ch.extend_from_slice(&[0x01, 0x00, 0x00, 0xa6, 0x00, 0x00]);
        ch.resize(13 + 0xb2, 0);
        assert!(looks_like_dtls(&ch));
        ch[2] = 0xfd;
        assert!(looks_like_dtls(&ch));
        assert!(!looks_like_dtls(&ch[..100]), "length does not fit");
        let mut tls = ch.clone();
        tls[1] = 0x03;
        tls[2] = 0x01; // TLS, not DTLS
        assert!(!looks_like_dtls(&tls));
        let mut bad = ch.clone();
        bad[0] = 0x30;
        assert!(!looks_like_dtls(&bad));
        assert!(!looks_like_dtls(&RFC5769_REQUEST));
        assert!(!looks_like_dtls(&[0x16, 0xfe, 0xfd]));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok((m, n)) = parse(&bytes) {
                prop_assert!(n <= bytes.len());
                let _ = (m.method_name(), m.class_name(), m.software(), m.username(), m.realm());
                let _ = (m.xor_mapped_address(), m.mapped_address(), m.error_code());
            }
            let (_, used) = split_tcp(&bytes);
            prop_assert!(used <= bytes.len());
            let _ = is_channel_data(&bytes);
            let _ = looks_like_dtls(&bytes);
        }

        #[test]
        fn mutated_vectors_never_panic(at in 0usize..92, v in any::<u8>(), cut in 0usize..=92) {
            let mut m = RFC5769_IPV6;
            m[at] = v;
            if let Ok((msg, _)) = parse(&m[..cut]) {
                let _ = (msg.xor_mapped_address(), msg.software(), msg.error_code());
            }
            let _ = split_tcp(&m[..cut]);
        }
    }
}
