//! The TLS Certificate message and a minimal, bounded DER walker for the X.509 fields a monitor
//! shows: subject, issuer, validity and subjectAltName dNSName entries.
//!
//! The walker follows the fixed shape of `Certificate` (RFC 5280 4.1) rather than recursing
//! generically, so its depth is bounded by construction; every length is checked against the
//! enclosing element.

use std::fmt::Write as _;

use super::{escape_bytes, malformed};
use crate::cursor::Reader;
use crate::{Error, Layer};

/// What a monitor shows of one X.509 certificate. Fields are empty (or `None`) when the
/// certificate could not be read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertInfo {
    /// The subject Name as `CN=example.com,O=Example Inc,C=US`: attributes CN, O, OU, C, ST, L
    /// (others are left out) in DER order, multi-valued RDNs joined with `+`. `,` `+` `"` `<` `>`
    /// `;` in values are backslash-escaped; `\`, control characters and undecodable bytes appear
    /// as `\xNN` (see [`super::escape_bytes`]).
    pub subject: String,
    /// The issuer Name, same format.
    pub issuer: String,
    /// subjectAltName (2.5.29.17) dNSName entries, in order.
    pub dns_names: Vec<String>,
    /// notBefore as `2025-01-31T12:00:00Z` (UTCTime years 50..99 are 19xx; fractional seconds
    /// are dropped); `None` if not in a form this parser reads (`Z` suffix required).
    pub not_before: Option<String>,
    /// notAfter, same format.
    pub not_after: Option<String>,
}

/// Parses a TLS Certificate handshake body: the TLS 1.2 form (`u24` list of `u24`-prefixed DER
/// certificates), or, when that framing does not fit, the TLS 1.3 form (request context, then
/// entries each followed by extensions).
///
/// Each certificate is decoded on its own; one that fails yields a [`CertInfo`] with empty
/// fields instead of failing the list. Only the list framing can fail.
pub fn parse_certificate_message(body: &[u8]) -> Result<Vec<CertInfo>, Error> {
    match parse_tls12(body) {
        Ok(list) => Ok(list),
        Err(e12) => parse_tls13(body).map_err(|_| e12),
    }
}

fn parse_tls12(body: &[u8]) -> Result<Vec<CertInfo>, Error> {
    let mut r = Reader::new(body, Layer::Tls);
    let mut list = Reader::new(r.vec24()?, Layer::Tls);
    r.expect_end("certificate message has bytes after the list")?;
    let mut out = Vec::new();
    while !list.is_empty() {
        out.push(cert_info(list.vec24()?));
    }
    Ok(out)
}

fn parse_tls13(body: &[u8]) -> Result<Vec<CertInfo>, Error> {
    let mut r = Reader::new(body, Layer::Tls);
    r.vec8()?; // certificate_request_context
    let mut list = Reader::new(r.vec24()?, Layer::Tls);
    r.expect_end("certificate message has bytes after the list")?;
    let mut out = Vec::new();
    while !list.is_empty() {
        let der = list.vec24()?;
        list.vec16()?; // per-entry extensions
        out.push(cert_info(der));
    }
    Ok(out)
}

/// Decodes one DER certificate; empty fields if it does not parse.
pub fn cert_info(der: &[u8]) -> CertInfo {
    parse_cert(der).unwrap_or_default()
}

// DER tags used here.
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const CTX_VERSION: u8 = 0xa0;
const CTX_EXTENSIONS: u8 = 0xa3;
const GN_DNS_NAME: u8 = 0x82;

const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

/// One DER element: tag byte and contents.
struct Tlv<'a> {
    tag: u8,
    value: &'a [u8],
}

fn der_err(what: &'static str) -> Error {
    malformed(what)
}

/// Reads one element (low tag numbers only; definite lengths of up to 4 bytes).
fn read_tlv<'a>(r: &mut Reader<'a>) -> Result<Tlv<'a>, Error> {
    let tag = r.u8()?;
    if tag & 0x1f == 0x1f {
        return Err(der_err("DER high tag number form"));
    }
    let first = r.u8()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return Err(der_err("DER length form not supported"));
        }
        let mut len = 0usize;
        for &b in r.bytes(n)? {
            len = (len << 8) | usize::from(b);
        }
        len
    };
    Ok(Tlv {
        tag,
        value: r.bytes(len)?,
    })
}

fn expect<'a>(r: &mut Reader<'a>, tag: u8, what: &'static str) -> Result<&'a [u8], Error> {
    let t = read_tlv(r)?;
    if t.tag != tag {
        return Err(der_err(what));
    }
    Ok(t.value)
}

fn peek_tag(r: &Reader<'_>) -> Option<u8> {
    r.rest().first().copied()
}

fn parse_cert(der: &[u8]) -> Result<CertInfo, Error> {
    let mut outer = Reader::new(der, Layer::Tls);
    let cert = expect(&mut outer, SEQUENCE, "certificate is not a SEQUENCE")?;
    let mut c = Reader::new(cert, Layer::Tls);
    let tbs = expect(&mut c, SEQUENCE, "tbsCertificate is not a SEQUENCE")?;
    let mut t = Reader::new(tbs, Layer::Tls);
    if peek_tag(&t) == Some(CTX_VERSION) {
        read_tlv(&mut t)?;
    }
    read_tlv(&mut t)?; // serialNumber
    expect(&mut t, SEQUENCE, "signature algorithm is not a SEQUENCE")?;
    let issuer = name_string(expect(&mut t, SEQUENCE, "issuer is not a SEQUENCE")?)?;
    let validity = expect(&mut t, SEQUENCE, "validity is not a SEQUENCE")?;
    let mut v = Reader::new(validity, Layer::Tls);
    let not_before = time_string(&read_tlv(&mut v)?);
    let not_after = time_string(&read_tlv(&mut v)?);
    let subject = name_string(expect(&mut t, SEQUENCE, "subject is not a SEQUENCE")?)?;
    expect(&mut t, SEQUENCE, "subjectPublicKeyInfo is not a SEQUENCE")?;
    let mut dns_names = Vec::new();
    while !t.is_empty() {
        let field = read_tlv(&mut t)?;
        if field.tag == CTX_EXTENSIONS {
            let mut x = Reader::new(field.value, Layer::Tls);
            let exts = expect(&mut x, SEQUENCE, "extensions is not a SEQUENCE")?;
            dns_names = san_dns_names(exts)?;
        }
    }
    Ok(CertInfo {
        subject,
        issuer,
        dns_names,
        not_before,
        not_after,
    })
}

/// Extensions ::= SEQUENCE OF Extension; returns the dNSNames of subjectAltName.
fn san_dns_names(exts: &[u8]) -> Result<Vec<String>, Error> {
    let mut r = Reader::new(exts, Layer::Tls);
    while !r.is_empty() {
        let ext = expect(&mut r, SEQUENCE, "extension is not a SEQUENCE")?;
        let mut e = Reader::new(ext, Layer::Tls);
        let oid = expect(&mut e, OID, "extension id is not an OID")?;
        if oid != OID_SUBJECT_ALT_NAME {
            continue;
        }
        // critical BOOLEAN DEFAULT FALSE, then extnValue OCTET STRING.
        let mut value = read_tlv(&mut e)?;
        if value.tag != OCTET_STRING {
            value = read_tlv(&mut e)?;
        }
        if value.tag != OCTET_STRING {
            return Err(der_err("subjectAltName value is not an OCTET STRING"));
        }
        let mut v = Reader::new(value.value, Layer::Tls);
        let names = expect(&mut v, SEQUENCE, "GeneralNames is not a SEQUENCE")?;
        let mut n = Reader::new(names, Layer::Tls);
        let mut out = Vec::new();
        while !n.is_empty() {
            let gn = read_tlv(&mut n)?;
            if gn.tag == GN_DNS_NAME {
                out.push(escape_bytes(gn.value));
            }
        }
        return Ok(out);
    }
    Ok(Vec::new())
}

fn attribute_label(oid: &[u8]) -> Option<&'static str> {
    match oid {
        [0x55, 0x04, 0x03] => Some("CN"),
        [0x55, 0x04, 0x06] => Some("C"),
        [0x55, 0x04, 0x07] => Some("L"),
        [0x55, 0x04, 0x08] => Some("ST"),
        [0x55, 0x04, 0x0a] => Some("O"),
        [0x55, 0x04, 0x0b] => Some("OU"),
        _ => None,
    }
}

/// Name ::= SEQUENCE OF RelativeDistinguishedName (SET OF AttributeTypeAndValue), in DER order.
fn name_string(name: &[u8]) -> Result<String, Error> {
    let mut r = Reader::new(name, Layer::Tls);
    let mut out = String::new();
    while !r.is_empty() {
        let rdn = expect(&mut r, SET, "RelativeDistinguishedName is not a SET")?;
        let mut s = Reader::new(rdn, Layer::Tls);
        let mut first_in_rdn = true;
        while !s.is_empty() {
            let atv = expect(&mut s, SEQUENCE, "AttributeTypeAndValue is not a SEQUENCE")?;
            let mut a = Reader::new(atv, Layer::Tls);
            let oid = expect(&mut a, OID, "attribute type is not an OID")?;
            let value = read_tlv(&mut a)?;
            let Some(label) = attribute_label(oid) else {
                continue;
            };
            if !out.is_empty() {
                out.push(if first_in_rdn { ',' } else { '+' });
            }
            first_in_rdn = false;
            out.push_str(label);
            out.push('=');
            push_escaped_value(&mut out, &decode_string(&value));
        }
    }
    Ok(out)
}

/// The text of a directory string, escaped like [`escape_bytes`] where it is not valid text.
fn decode_string(t: &Tlv<'_>) -> String {
    match t.tag {
        // BMPString: UTF-16BE.
        0x1e if t.value.len().is_multiple_of(2) => {
            let units = t.value.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]]));
            let s: String = char::decode_utf16(units)
                .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
                .collect();
            escape_bytes(s.as_bytes())
        }
        // UniversalString: UTF-32BE.
        0x1c if t.value.len().is_multiple_of(4) => {
            let s: String = t
                .value
                .chunks_exact(4)
                .map(|c| {
                    char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                        .unwrap_or(char::REPLACEMENT_CHARACTER)
                })
                .collect();
            escape_bytes(s.as_bytes())
        }
        // UTF8String, PrintableString, IA5String, TeletexString, VisibleString and anything else.
        _ => escape_bytes(t.value),
    }
}

/// RFC 4514-style escaping of the characters that would make the string ambiguous.
fn push_escaped_value(out: &mut String, value: &str) {
    for c in value.chars() {
        if matches!(c, ',' | '+' | '"' | '<' | '>' | ';') {
            out.push('\\');
        }
        out.push(c);
    }
}

fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    b.iter().try_fold(0u32, |acc, d| {
        acc.checked_mul(10)?.checked_add(u32::from(d - b'0'))
    })
}

/// UTCTime `YYMMDDHHMM[SS]Z` or GeneralizedTime `YYYYMMDDHHMM[SS][.fff]Z` to
/// `YYYY-MM-DDTHH:MM:SSZ`.
fn time_string(t: &Tlv<'_>) -> Option<String> {
    let v = t.value;
    let (year, rest) = match t.tag {
        UTC_TIME => {
            let yy = digits(v.get(..2)?)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, v.get(2..)?)
        }
        GENERALIZED_TIME => (digits(v.get(..4)?)?, v.get(4..)?),
        _ => return None,
    };
    let rest = rest.strip_suffix(b"Z")?;
    let month = digits(rest.get(0..2)?)?;
    let day = digits(rest.get(2..4)?)?;
    let hour = digits(rest.get(4..6)?)?;
    let minute = digits(rest.get(6..8)?)?;
    let second = match rest.get(8..) {
        None | Some([]) => 0,
        Some(s) => {
            let (whole, frac) = match s.iter().position(|&b| b == b'.' || b == b',') {
                Some(i) if t.tag == GENERALIZED_TIME => (&s[..i], Some(&s[i + 1..])),
                _ => (s, None),
            };
            if whole.len() != 2 || frac.is_some_and(|f| f.is_empty() || !f.iter().all(u8::is_ascii_digit)) {
                return None;
            }
            digits(whole)?
        }
    };
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut s = String::with_capacity(20);
    let _ = write!(
        s,
        "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z"
    );
    Some(s)
}
