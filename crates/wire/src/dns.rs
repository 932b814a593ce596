//! DNS messages (RFC 1035 and later record types) as carried by DNS over UDP/TCP, mDNS (RFC 6762)
//! and LLMNR (RFC 4795).
//!
//! [`parse`] decodes a whole message into owned values (names become `String`s in presentation
//! form; DNS is not on the per-packet hot path). Decoding is strict about the 12-byte header and
//! lax after it: a truncated or malformed question or record stops parsing, everything decoded
//! before it is kept, and the error is reported in [`Message::incomplete`].
//!
//! Names: compression pointers must point strictly before the start of the label sequence being
//! read (which alone rules out loops) and at most 128 pointers are followed; a name is at most 255
//! wire octets and 127 labels; label types `0x40` and `0x80` are malformed. Labels are joined with
//! `.` without a trailing dot (the root is `"."`); ASCII case is kept; bytes outside `0x21..=0x7e`
//! and `.`/`\` inside a label are escaped as in RFC 1035 (`\.`, `\\`, `\DDD`).
//!
//! Allocation is bounded by the message length: vectors grow as items are decoded, never from a
//! count in the header.
//!
//! ```
//! let query = [
//!     0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, // id, RD, one question
//!     3, b'w', b'w', b'w', 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'c', b'o', b'm', 0,
//!     0, 1, 0, 1, // A, IN
//! ];
//! let m = wire::dns::parse(&query).unwrap();
//! assert_eq!(m.query_name(), Some("www.example.com"));
//! assert_eq!(m.questions[0].qtype, wire::dns::RrType::A);
//! assert!(m.incomplete.is_none());
//! ```

use std::borrow::Cow;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::cursor::Reader;
use crate::{Error, Layer};

/// Length of the fixed DNS header.
pub const HEADER_LEN: usize = 12;
/// The smallest question on the wire: root name, QTYPE, QCLASS.
const MIN_QUESTION_LEN: usize = 5;
/// The smallest resource record on the wire: root name, TYPE, CLASS, TTL, RDLENGTH.
/// RFC 1035 section 2.3.4: a name is at most 255 octets on the wire (length bytes included).
const MAX_NAME_WIRE_LEN: usize = 255;
/// At most 127 labels fit in 255 octets (plus the root).
const MAX_LABELS: usize = 127;
/// Compression pointers followed per name, at most.
const MAX_POINTER_JUMPS: usize = 128;

fn malformed(what: &'static str) -> Error {
    Error::Malformed {
        layer: Layer::Dns,
        what,
    }
}

/// A resource record TYPE (also QTYPE). Open: unknown values are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RrType(pub u16);

macro_rules! rr_types {
    ($($name:ident = $val:expr, $text:expr;)*) => {
        impl RrType {
            $(pub const $name: RrType = RrType($val);)*

            /// The IANA mnemonic (`"A"`, `"AAAA"`, `"HTTPS"`), or `"TYPE<n>"` (RFC 3597) when
            /// unknown.
            pub fn mnemonic(self) -> Cow<'static, str> {
                match self.0 {
                    $($val => Cow::Borrowed($text),)*
                    n => Cow::Owned(format!("TYPE{n}")),
                }
            }
        }
    };
}

rr_types! {
    A = 1, "A";
    NS = 2, "NS";
    MD = 3, "MD";
    MF = 4, "MF";
    CNAME = 5, "CNAME";
    SOA = 6, "SOA";
    MB = 7, "MB";
    MG = 8, "MG";
    MR = 9, "MR";
    NULL = 10, "NULL";
    WKS = 11, "WKS";
    PTR = 12, "PTR";
    HINFO = 13, "HINFO";
    MINFO = 14, "MINFO";
    MX = 15, "MX";
    TXT = 16, "TXT";
    RP = 17, "RP";
    AFSDB = 18, "AFSDB";
    SIG = 24, "SIG";
    KEY = 25, "KEY";
    AAAA = 28, "AAAA";
    LOC = 29, "LOC";
    NXT = 30, "NXT";
    SRV = 33, "SRV";
    NAPTR = 35, "NAPTR";
    KX = 36, "KX";
    CERT = 37, "CERT";
    DNAME = 39, "DNAME";
    OPT = 41, "OPT";
    APL = 42, "APL";
    DS = 43, "DS";
    SSHFP = 44, "SSHFP";
    IPSECKEY = 45, "IPSECKEY";
    RRSIG = 46, "RRSIG";
    NSEC = 47, "NSEC";
    DNSKEY = 48, "DNSKEY";
    DHCID = 49, "DHCID";
    NSEC3 = 50, "NSEC3";
    NSEC3PARAM = 51, "NSEC3PARAM";
    TLSA = 52, "TLSA";
    SMIMEA = 53, "SMIMEA";
    HIP = 55, "HIP";
    CDS = 59, "CDS";
    CDNSKEY = 60, "CDNSKEY";
    OPENPGPKEY = 61, "OPENPGPKEY";
    CSYNC = 62, "CSYNC";
    ZONEMD = 63, "ZONEMD";
    SVCB = 64, "SVCB";
    HTTPS = 65, "HTTPS";
    SPF = 99, "SPF";
    NID = 104, "NID";
    L32 = 105, "L32";
    L64 = 106, "L64";
    LP = 107, "LP";
    EUI48 = 108, "EUI48";
    EUI64 = 109, "EUI64";
    TKEY = 249, "TKEY";
    TSIG = 250, "TSIG";
    IXFR = 251, "IXFR";
    AXFR = 252, "AXFR";
    MAILB = 253, "MAILB";
    MAILA = 254, "MAILA";
    ANY = 255, "ANY";
    URI = 256, "URI";
    CAA = 257, "CAA";
    TA = 32768, "TA";
    DLV = 32769, "DLV";
}

impl fmt::Display for RrType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.mnemonic())
    }
}

/// The message section a resource record came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Section {
    Answer,
    Authority,
    Additional,
}

impl Section {
    pub const fn as_str(self) -> &'static str {
        match self {
            Section::Answer => "answer",
            Section::Authority => "authority",
            Section::Additional => "additional",
        }
    }
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An entry of the question section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Question {
    /// Presentation form, no trailing dot (root is `"."`).
    pub name: String,
    pub qtype: RrType,
    /// QCLASS with the mDNS unicast-response bit (`0x8000`) masked off.
    pub qclass: u16,
    /// The mDNS "QU" bit (top bit of QCLASS, RFC 6762 section 5.4).
    pub unicast_response: bool,
}

/// A resource record of the answer, authority or additional section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceRecord {
    pub section: Section,
    /// Presentation form, no trailing dot (root is `"."`).
    pub name: String,
    pub rtype: RrType,
    /// CLASS as on the wire (for mDNS the top bit is the cache-flush flag; for OPT it is the UDP
    /// payload size).
    pub class: u16,
    /// TTL as on the wire (for OPT: extended rcode, version and flags).
    pub ttl: u32,
    pub data: RData,
}

/// Decoded RDATA. Types without a decoder, and records whose RDATA does not decode, are
/// [`RData::Other`] with the raw bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    /// CNAME, NS, PTR and DNAME.
    Name(String),
    Mx {
        preference: u16,
        exchange: String,
    },
    /// The character-strings, each in presentation escaping without the quotes (`"` and `\` are
    /// backslash-escaped, bytes outside `0x20..=0x7e` are `\DDD`).
    Txt(Vec<String>),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
    Soa {
        mname: String,
        rname: String,
        serial: u32,
        refresh: u32,
        retry: u32,
        expire: u32,
        minimum: u32,
    },
    /// SVCB and HTTPS (RFC 9460): `params` are (SvcParamKey, raw value) in wire order.
    Svcb {
        priority: u16,
        target: String,
        params: Vec<(u16, Vec<u8>)>,
    },
    /// The EDNS(0) pseudo-record (RFC 6891), decoded from CLASS and TTL; `options` are
    /// (option code, raw value) in wire order.
    Opt {
        udp_size: u16,
        ext_rcode: u8,
        version: u8,
        dnssec_ok: bool,
        options: Vec<(u16, Vec<u8>)>,
    },
    Other(Vec<u8>),
}

impl RData {
    /// Presentation form, e.g. `"93.184.216.34"`, `"10 mail.example.com"`,
    /// `"\"v=spf1 -all\" \"x\""`, `"10 60 5060 sip.example.com"`,
    /// `"1 . alpn=h2,h3 ipv4hint=1.2.3.4"`, or RFC 3597 `"\# 4 0A000001"` for [`RData::Other`].
    ///
    /// SVCB/HTTPS parameters: `alpn`, `port`, `ipv4hint`, `ipv6hint` are decoded, `ech` is shown
    /// as `ech=<len> bytes`, anything else (or a value that does not decode) as
    /// `key<N>=<lowercase hex>` (`key<N>` alone when empty). OPT is shown as
    /// `udp=<size> version=<v> ext_rcode=<r> [do] [<code>:<hex>]...`.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        match self {
            RData::A(a) => out = a.to_string(),
            RData::Aaaa(a) => out = a.to_string(),
            RData::Name(n) => out.push_str(n),
            RData::Mx { preference, exchange } => out = format!("{preference} {exchange}"),
            RData::Txt(strings) => {
                for (i, s) in strings.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push('"');
                    out.push_str(s);
                    out.push('"');
                }
            }
            RData::Srv {
                priority,
                weight,
                port,
                target,
            } => {
                out = format!("{priority} {weight} {port} {target}");
            }
            RData::Soa {
                mname,
                rname,
                serial,
                refresh,
                retry,
                expire,
                minimum,
            } => {
                out = format!("{mname} {rname} {serial} {refresh} {retry} {expire} {minimum}");
            }
            RData::Svcb {
                priority,
                target,
                params,
            } => {
                out = format!("{priority} {target}");
                for (key, value) in params {
                    out.push(' ');
                    push_svc_param(&mut out, *key, value);
                }
            }
            RData::Opt {
                udp_size,
                ext_rcode,
                version,
                dnssec_ok,
                options,
            } => {
                out = format!("udp={udp_size} version={version} ext_rcode={ext_rcode}");
                if *dnssec_ok {
                    out.push_str(" do");
                }
                for (code, value) in options {
                    out.push(' ');
                    out.push_str(&code.to_string());
                    out.push(':');
                    push_hex(&mut out, value, false);
                }
            }
            RData::Other(raw) => {
                out = format!("\\# {}", raw.len());
                if !raw.is_empty() {
                    out.push(' ');
                    push_hex(&mut out, raw, true);
                }
            }
        }
        out
    }
}

impl fmt::Display for RData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

/// A decoded DNS message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub id: u16,
    /// QR: this is a response.
    pub response: bool,
    pub opcode: u8,
    pub authoritative: bool,
    pub truncated: bool,
    pub recursion_desired: bool,
    pub recursion_available: bool,
    /// The 4-bit header RCODE, extended with the first OPT record's upper 8 bits (RFC 6891) when
    /// the additional section has one.
    pub rcode: u16,
    pub questions: Vec<Question>,
    /// Answer, authority and additional records in wire order, each tagged with its section.
    pub records: Vec<ResourceRecord>,
    /// Lax decoding: `Some` when something after the header did not decode. A truncated or
    /// malformed question or record framing stops parsing (everything before it is kept) and is
    /// the error reported here; a record whose framing is intact but whose RDATA does not decode
    /// is kept as [`RData::Other`], parsing goes on, and the first such error is reported unless
    /// parsing later stopped.
    pub incomplete: Option<Error>,
    /// Bytes after the last record the header announced (0 for a well-formed message).
    pub trailing_bytes: usize,
}

impl Message {
    /// The mnemonic of [`Message::rcode`] (`"NOERROR"`, `"NXDOMAIN"`, `"BADVERS"`, ...), or
    /// `"RCODE<n>"`.
    pub fn rcode_name(&self) -> Cow<'static, str> {
        let name = match self.rcode {
            0 => "NOERROR",
            1 => "FORMERR",
            2 => "SERVFAIL",
            3 => "NXDOMAIN",
            4 => "NOTIMP",
            5 => "REFUSED",
            6 => "YXDOMAIN",
            7 => "YXRRSET",
            8 => "NXRRSET",
            9 => "NOTAUTH",
            10 => "NOTZONE",
            11 => "DSOTYPENI",
            16 => "BADVERS",
            17 => "BADKEY",
            18 => "BADTIME",
            19 => "BADMODE",
            20 => "BADNAME",
            21 => "BADALG",
            22 => "BADTRUNC",
            23 => "BADCOOKIE",
            n => return Cow::Owned(format!("RCODE{n}")),
        };
        Cow::Borrowed(name)
    }

    /// The name of the first question.
    pub fn query_name(&self) -> Option<&str> {
        self.questions.first().map(|q| q.name.as_str())
    }

    /// The records of one section, in wire order.
    pub fn section(&self, section: Section) -> impl Iterator<Item = &ResourceRecord> {
        self.records.iter().filter(move |r| r.section == section)
    }
}

/// Is this UDP payload very likely a DNS message, whatever its port? For DNS on non-standard
/// ports (DNSCrypt resolvers answer plain queries on 443, 1053, ...): one to four questions, a
/// standard opcode, every announced record present, nothing left over, names and classes sane.
pub fn looks_like_dns(msg: &[u8]) -> bool {
    let Ok(m) = parse(msg) else { return false };
    m.incomplete.is_none()
        && m.trailing_bytes == 0
        && (1..=4).contains(&m.questions.len())
        && matches!(m.opcode, 0 | 2 | 4 | 5)
        && m.questions
            .iter()
            .all(|q| matches!(q.qclass, 1 | 3 | 4 | 254 | 255) && !q.name.contains('\\'))
}

/// Parses a DNS message (without the TCP length prefix; see [`split_tcp`]).
///
/// Errs only when the 12-byte header is missing ([`Error::Truncated`]) or when questions are
/// announced and not even one fits ([`Error::Malformed`]). Anything wrong after that (a record
/// cut short by the capture, counts larger than the message) is reported in
/// [`Message::incomplete`], with everything before it kept; [`looks_like_dns`] is the strict test.
pub fn parse(msg: &[u8]) -> Result<Message, Error> {
    if msg.len() < HEADER_LEN {
        return Err(Error::Truncated {
            layer: Layer::Dns,
            need: HEADER_LEN,
            have: msg.len(),
        });
    }
    let mut r = Reader::new(msg, Layer::Dns);
    let id = r.u16()?;
    let flags = r.u16()?;
    let qdcount = r.u16()?;
    let ancount = r.u16()?;
    let nscount = r.u16()?;
    let arcount = r.u16()?;
    // Damaged counts (fuzzed or corrupted headers) and records cut short by the capture are read
    // as far as the bytes go (`incomplete` says where it stopped).
    if qdcount > 0 && r.remaining() < MIN_QUESTION_LEN {
        return Err(malformed(
            "a question is announced but the message ends after the header",
        ));
    }
    let header_rcode = flags & 0x000f;
    let mut m = Message {
        id,
        response: flags & 0x8000 != 0,
        opcode: ((flags >> 11) & 0x0f) as u8,
        authoritative: flags & 0x0400 != 0,
        truncated: flags & 0x0200 != 0,
        recursion_desired: flags & 0x0100 != 0,
        recursion_available: flags & 0x0080 != 0,
        rcode: header_rcode,
        questions: Vec::new(),
        records: Vec::new(),
        incomplete: None,
        trailing_bytes: 0,
    };
    if let Err(e) = parse_body(&mut r, &mut m, qdcount, [ancount, nscount, arcount]) {
        m.incomplete = Some(e);
    }
    m.trailing_bytes = r.remaining();
    let ext = m
        .section(Section::Additional)
        .find(|rr| rr.rtype == RrType::OPT)
        .map(|opt| opt.ttl >> 24);
    if let Some(ext) = ext {
        m.rcode = ((ext as u16) << 4) | header_rcode;
    }
    Ok(m)
}

fn parse_body(r: &mut Reader<'_>, m: &mut Message, qdcount: u16, counts: [u16; 3]) -> Result<(), Error> {
    for _ in 0..qdcount {
        let name = read_name(r)?;
        let qtype = RrType(r.u16()?);
        let qclass = r.u16()?;
        m.questions.push(Question {
            name,
            qtype,
            qclass: qclass & 0x7fff,
            unicast_response: qclass & 0x8000 != 0,
        });
    }
    let sections = [Section::Answer, Section::Authority, Section::Additional];
    for (section, count) in sections.into_iter().zip(counts) {
        for _ in 0..count {
            let name = read_name(r)?;
            let rtype = RrType(r.u16()?);
            let class = r.u16()?;
            let ttl = r.u32()?;
            let rdlen = usize::from(r.u16()?);
            let start = r.position();
            let raw = r.bytes(rdlen)?;
            let data = match decode_rdata(r.whole(), start, rdlen, rtype, class, ttl) {
                Ok(data) => data,
                Err(e) => {
                    m.incomplete.get_or_insert(e);
                    RData::Other(raw.to_vec())
                }
            };
            m.records.push(ResourceRecord {
                section,
                name,
                rtype,
                class,
                ttl,
                data,
            });
        }
    }
    Ok(())
}

/// Decodes the RDATA at `msg[start..start + len]`; names in it may point back anywhere before.
fn decode_rdata(
    msg: &[u8],
    start: usize,
    len: usize,
    rtype: RrType,
    class: u16,
    ttl: u32,
) -> Result<RData, Error> {
    let end = start
        .checked_add(len)
        .ok_or(malformed("RDATA length overflows"))?;
    let upto = msg.get(..end).ok_or(Error::Truncated {
        layer: Layer::Dns,
        need: end,
        have: msg.len(),
    })?;
    let mut r = Reader::new(upto, Layer::Dns);
    r.seek(start)?;
    let data = match rtype {
        RrType::A => {
            let b = r.bytes(4)?;
            RData::A(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
        }
        RrType::AAAA => {
            let mut a = [0u8; 16];
            a.copy_from_slice(r.bytes(16)?);
            RData::Aaaa(Ipv6Addr::from(a))
        }
        RrType::CNAME | RrType::NS | RrType::PTR | RrType::DNAME => RData::Name(read_name(&mut r)?),
        RrType::MX => RData::Mx {
            preference: r.u16()?,
            exchange: read_name(&mut r)?,
        },
        RrType::TXT => {
            let mut strings = Vec::new();
            while !r.is_empty() {
                strings.push(escape_char_string(r.vec8()?));
            }
            RData::Txt(strings)
        }
        RrType::SRV => RData::Srv {
            priority: r.u16()?,
            weight: r.u16()?,
            port: r.u16()?,
            target: read_name(&mut r)?,
        },
        RrType::SOA => RData::Soa {
            mname: read_name(&mut r)?,
            rname: read_name(&mut r)?,
            serial: r.u32()?,
            refresh: r.u32()?,
            retry: r.u32()?,
            expire: r.u32()?,
            minimum: r.u32()?,
        },
        RrType::SVCB | RrType::HTTPS => {
            let priority = r.u16()?;
            let target = read_name(&mut r)?;
            RData::Svcb {
                priority,
                target,
                params: read_pairs(&mut r)?,
            }
        }
        RrType::OPT => RData::Opt {
            udp_size: class,
            ext_rcode: (ttl >> 24) as u8,
            version: (ttl >> 16) as u8,
            dnssec_ok: ttl & 0x8000 != 0,
            options: read_pairs(&mut r)?,
        },
        _ => {
            let raw = r.bytes(len)?;
            RData::Other(raw.to_vec())
        }
    };
    r.expect_end("trailing bytes after the RDATA")?;
    Ok(data)
}

/// (u16 key, 16-bit length-prefixed value) pairs up to the end of the reader.
fn read_pairs(r: &mut Reader<'_>) -> Result<Vec<(u16, Vec<u8>)>, Error> {
    let mut pairs = Vec::new();
    while !r.is_empty() {
        let key = r.u16()?;
        let value = r.vec16()?;
        pairs.push((key, value.to_vec()));
    }
    Ok(pairs)
}

/// Reads a possibly compressed name at the reader's position and leaves the reader after it
/// (after the first pointer, if any). The reader's buffer must start at the DNS header.
fn read_name(r: &mut Reader<'_>) -> Result<String, Error> {
    let mut cur = *r;
    let mut seq_start = cur.position();
    let mut jumped = false;
    let mut jumps = 0usize;
    let mut wire_len = 1usize; // the terminating root label
    let mut labels = 0usize;
    let mut out = String::new();
    loop {
        let len = cur.u8()?;
        match len & 0xc0 {
            0x00 if len == 0 => break,
            0x00 => {
                let len = usize::from(len);
                wire_len += 1 + len;
                labels += 1;
                if wire_len > MAX_NAME_WIRE_LEN {
                    return Err(malformed("name longer than 255 octets"));
                }
                if labels > MAX_LABELS {
                    return Err(malformed("name has more than 127 labels"));
                }
                let label = cur.bytes(len)?;
                if !out.is_empty() {
                    out.push('.');
                }
                escape_label(&mut out, label);
            }
            0xc0 => {
                let low = cur.u8()?;
                let target = (usize::from(len & 0x3f) << 8) | usize::from(low);
                if target >= seq_start {
                    return Err(malformed("compression pointer does not point backwards"));
                }
                jumps += 1;
                if jumps > MAX_POINTER_JUMPS {
                    return Err(malformed("too many compression pointers"));
                }
                if !jumped {
                    r.seek(cur.position())?;
                    jumped = true;
                }
                cur.seek(target)?;
                seq_start = target;
            }
            _ => return Err(malformed("reserved label type (0x40 or 0x80)")),
        }
    }
    if !jumped {
        r.seek(cur.position())?;
    }
    if out.is_empty() {
        out.push('.');
    }
    Ok(out)
}

fn push_decimal_escape(out: &mut String, b: u8) {
    out.push('\\');
    out.push(char::from(b'0' + b / 100));
    out.push(char::from(b'0' + (b / 10) % 10));
    out.push(char::from(b'0' + b % 10));
}

/// RFC 1035 master-file escaping of one label.
fn escape_label(out: &mut String, label: &[u8]) {
    for &b in label {
        match b {
            b'.' | b'\\' => {
                out.push('\\');
                out.push(char::from(b));
            }
            0x21..=0x7e => out.push(char::from(b)),
            _ => push_decimal_escape(out, b),
        }
    }
}

/// A character-string as it appears between quotes.
fn escape_char_string(s: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(char::from(b));
            }
            0x20..=0x7e => out.push(char::from(b)),
            _ => push_decimal_escape(&mut out, b),
        }
    }
    out
}

fn push_hex(out: &mut String, bytes: &[u8], upper: bool) {
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    for &b in bytes {
        out.push(char::from(digits[usize::from(b >> 4)]));
        out.push(char::from(digits[usize::from(b & 0x0f)]));
    }
}

/// One SvcParam in presentation form (RFC 9460 section 7, with `ech` abbreviated).
fn push_svc_param(out: &mut String, key: u16, value: &[u8]) {
    let decoded = match key {
        1 => svc_alpn(value),
        3 if value.len() == 2 => Some(format!("port={}", u16::from_be_bytes([value[0], value[1]]))),
        4 if !value.is_empty() && value.len().is_multiple_of(4) => {
            let hints: Vec<String> = value
                .chunks_exact(4)
                .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]).to_string())
                .collect();
            Some(format!("ipv4hint={}", hints.join(",")))
        }
        5 => Some(format!("ech={} bytes", value.len())),
        6 if !value.is_empty() && value.len().is_multiple_of(16) => {
            let hints: Vec<String> = value
                .chunks_exact(16)
                .map(|c| {
                    let mut a = [0u8; 16];
                    a.copy_from_slice(c);
                    Ipv6Addr::from(a).to_string()
                })
                .collect();
            Some(format!("ipv6hint={}", hints.join(",")))
        }
        _ => None,
    };
    match decoded {
        Some(text) => out.push_str(&text),
        None => {
            out.push_str("key");
            out.push_str(&key.to_string());
            if !value.is_empty() {
                out.push('=');
                push_hex(out, value, false);
            }
        }
    }
}

/// `alpn=h2,h3`; `None` when the value is not a non-empty list of non-empty protocol ids.
fn svc_alpn(value: &[u8]) -> Option<String> {
    let mut r = Reader::new(value, Layer::Dns);
    let mut out = String::from("alpn=");
    let mut first = true;
    while !r.is_empty() {
        let id = r.vec8().ok()?;
        if id.is_empty() {
            return None;
        }
        if !first {
            out.push(',');
        }
        first = false;
        for &b in id {
            match b {
                b',' | b'\\' => {
                    out.push('\\');
                    out.push(char::from(b));
                }
                0x21..=0x7e => out.push(char::from(b)),
                _ => push_decimal_escape(&mut out, b),
            }
        }
    }
    if first { None } else { Some(out) }
}

/// Splits DNS-over-TCP stream bytes (RFC 1035 section 4.2.2: each message is prefixed with a
/// 2-byte length) into the messages complete in `stream`, and returns how many bytes they used;
/// the caller keeps `stream[used..]` for the next segment.
pub fn split_tcp(stream: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut r = Reader::new(stream, Layer::Dns);
    let mut out = Vec::new();
    loop {
        let mut next = r;
        match next.vec16() {
            Ok(msg) => {
                out.push(msg);
                r = next;
            }
            Err(_) => break,
        }
    }
    (out, r.position())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A header with the given id, flags and QD/AN/NS/AR counts, followed by `body`.
    fn message(id: u16, flags: u16, counts: [u16; 4], body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&id.to_be_bytes());
        m.extend_from_slice(&flags.to_be_bytes());
        for c in counts {
            m.extend_from_slice(&c.to_be_bytes());
        }
        m.extend_from_slice(body);
        m
    }

    /// `www.example.com A IN` with an EDNS OPT record (RD set).
    const QUERY: [u8; 44] = [
        0xab, 0xcd, // id
        0x01, 0x00, // RD
        0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, // QD=1 AN=0 NS=0 AR=1
        // 12: question
        3, b'w', b'w', b'w', 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'c', b'o', b'm', 0, //
        0x00, 0x01, 0x00, 0x01, // A IN
        // 33: OPT, root, udp 1232, DO
        0x00, 0x00, 0x29, 0x04, 0xd0, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00,
    ];

    /// The answer to [`QUERY`]: a CNAME chain www -> web.example.com -> cdn.example.net, then A and
    /// AAAA for cdn.example.net, all compressed, and the OPT record.
    const RESPONSE: [u8; 135] = [
        0xab, 0xcd, // id
        0x81, 0x80, // QR RD RA, NOERROR
        0x00, 0x01, 0x00, 0x04, 0x00, 0x00, 0x00, 0x01, // QD=1 AN=4 NS=0 AR=1
        // 12: question; "example" at 16
        3, b'w', b'w', b'w', 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'c', b'o', b'm', 0, //
        0x00, 0x01, 0x00, 0x01, //
        // 33: www.example.com CNAME web.example.com (RDATA at 45)
        0xc0, 0x0c, 0x00, 0x05, 0x00, 0x01, 0x00, 0x00, 0x01, 0x2c, 0x00, 0x06, //
        3, b'w', b'e', b'b', 0xc0, 0x10, //
        // 51: web.example.com CNAME cdn.example.net (RDATA at 63)
        0xc0, 0x2d, 0x00, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x11, //
        3, b'c', b'd', b'n', 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'n', b'e', b't', 0, //
        // 80: cdn.example.net A 93.184.216.34
        0xc0, 0x3f, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x1e, 0x00, 0x04, 93, 184, 216, 34, //
        // 96: cdn.example.net AAAA 2606:2800::1
        0xc0, 0x3f, 0x00, 0x1c, 0x00, 0x01, 0x00, 0x00, 0x00, 0x1e, 0x00, 0x10, //
        0x26, 0x06, 0x28, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, //
        // 124: OPT
        0x00, 0x00, 0x29, 0x04, 0xd0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];

    fn texts(m: &Message) -> Vec<(Section, String, String, String)> {
        m.records
            .iter()
            .map(|r| {
                (
                    r.section,
                    r.name.clone(),
                    r.rtype.mnemonic().into_owned(),
                    r.data.to_text(),
                )
            })
            .collect()
    }

    #[test]
    fn query_with_edns() {
        let m = parse(&QUERY).unwrap();
        assert_eq!(m.id, 0xabcd);
        assert!(!m.response && m.recursion_desired && !m.recursion_available);
        assert_eq!((m.opcode, m.rcode, m.rcode_name().as_ref()), (0, 0, "NOERROR"));
        assert_eq!(
            m.questions,
            vec![Question {
                name: "www.example.com".into(),
                qtype: RrType::A,
                qclass: 1,
                unicast_response: false
            }]
        );
        assert_eq!(m.query_name(), Some("www.example.com"));
        assert_eq!(m.records.len(), 1);
        let opt = &m.records[0];
        assert_eq!(
            (opt.section, opt.name.as_str(), opt.rtype),
            (Section::Additional, ".", RrType::OPT)
        );
        assert_eq!(
            opt.data,
            RData::Opt {
                udp_size: 1232,
                ext_rcode: 0,
                version: 0,
                dnssec_ok: true,
                options: vec![]
            }
        );
        assert_eq!(opt.data.to_text(), "udp=1232 version=0 ext_rcode=0 do");
        assert_eq!(m.incomplete, None);
    }

    #[test]
    fn response_with_compressed_cname_chain_a_and_aaaa() {
        let m = parse(&RESPONSE).unwrap();
        assert!(m.response && m.recursion_desired && m.recursion_available && !m.authoritative);
        assert_eq!(m.incomplete, None);
        assert_eq!(m.query_name(), Some("www.example.com"));
        assert_eq!(
            texts(&m),
            vec![
                (
                    Section::Answer,
                    "www.example.com".into(),
                    "CNAME".into(),
                    "web.example.com".into()
                ),
                (
                    Section::Answer,
                    "web.example.com".into(),
                    "CNAME".into(),
                    "cdn.example.net".into()
                ),
                (
                    Section::Answer,
                    "cdn.example.net".into(),
                    "A".into(),
                    "93.184.216.34".into()
                ),
                (
                    Section::Answer,
                    "cdn.example.net".into(),
                    "AAAA".into(),
                    "2606:2800::1".into()
                ),
                (
                    Section::Additional,
                    ".".into(),
                    "OPT".into(),
                    "udp=1232 version=0 ext_rcode=0".into()
                ),
            ]
        );
        assert_eq!(m.records[0].ttl, 300);
        assert_eq!(m.records[2].data, RData::A(Ipv4Addr::new(93, 184, 216, 34)));
        assert_eq!(m.records[3].data, RData::Aaaa("2606:2800::1".parse().unwrap()));
        assert_eq!(m.section(Section::Answer).count(), 4);
    }

    /// `example.com` at offset 12 (as a question name, A IN), so RDATA can point to it with C0 0C.
    const EXAMPLE_COM_Q: [u8; 17] = [
        7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'c', b'o', b'm', 0, 0x00, 0x01, 0x00, 0x01,
    ];

    /// One response with the question `example.com` and a single answer `example.com <rtype>`.
    fn one_answer(rtype: u16, rdata: &[u8]) -> Message {
        let mut body = EXAMPLE_COM_Q.to_vec();
        body.extend_from_slice(&[0xc0, 0x0c]);
        body.extend_from_slice(&rtype.to_be_bytes());
        body.extend_from_slice(&[0x00, 0x01, 0x00, 0x00, 0x0e, 0x10]);
        body.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        body.extend_from_slice(rdata);
        let m = parse(&message(7, 0x8400, [1, 1, 0, 0], &body)).unwrap();
        assert_eq!(m.incomplete, None);
        assert_eq!(m.records.len(), 1);
        assert_eq!(m.records[0].name, "example.com");
        assert_eq!(m.records[0].ttl, 3600);
        m
    }

    #[test]
    fn ptr_record() {
        // 34.216.184.93.in-addr.arpa PTR example.com (target written out, owner compressed)
        let body = [
            2, b'3', b'4', 3, b'2', b'1', b'6', 3, b'1', b'8', b'4', 2, b'9', b'3', 7, b'i', b'n', b'-',
            b'a', b'd', b'd', b'r', 4, b'a', b'r', b'p', b'a', 0, 0x00, 0x0c, 0x00, 0x01, // question
            0xc0, 0x0c, 0x00, 0x0c, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x0d, //
            7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'c', b'o', b'm', 0,
        ];
        let m = parse(&message(1, 0x8180, [1, 1, 0, 0], &body)).unwrap();
        assert_eq!(m.incomplete, None);
        assert_eq!(m.questions[0].name, "34.216.184.93.in-addr.arpa");
        assert_eq!(m.questions[0].qtype, RrType::PTR);
        assert_eq!(m.records[0].name, "34.216.184.93.in-addr.arpa");
        assert_eq!(m.records[0].data, RData::Name("example.com".into()));
    }

    #[test]
    fn mx_record_with_compressed_exchange() {
        let m = one_answer(15, &[0x00, 0x0a, 4, b'm', b'a', b'i', b'l', 0xc0, 0x0c]);
        assert_eq!(
            m.records[0].data,
            RData::Mx {
                preference: 10,
                exchange: "mail.example.com".into()
            }
        );
        assert_eq!(m.records[0].data.to_text(), "10 mail.example.com");
        assert_eq!(m.records[0].rtype.mnemonic(), "MX");
        assert!(m.authoritative);
    }

    #[test]
    fn txt_record_with_two_strings() {
        let mut rdata = vec![11];
        rdata.extend_from_slice(b"v=spf1 -all");
        rdata.push(6);
        rdata.extend_from_slice(b"a\"b\\c\x01");
        let m = one_answer(16, &rdata);
        assert_eq!(
            m.records[0].data,
            RData::Txt(vec!["v=spf1 -all".into(), "a\\\"b\\\\c\\001".into()])
        );
        assert_eq!(m.records[0].data.to_text(), r#""v=spf1 -all" "a\"b\\c\001""#);
    }

    #[test]
    fn srv_record() {
        let mut body = vec![4, b'_', b's', b'i', b'p', 4, b'_', b'u', b'd', b'p'];
        body.extend_from_slice(&EXAMPLE_COM_Q[..13]); // "example.com" at 22
        body.extend_from_slice(&[0x00, 0x21, 0x00, 0x01]);
        body.extend_from_slice(&[
            0xc0, 0x0c, 0x00, 0x21, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x0c,
        ]);
        body.extend_from_slice(&[
            0x00, 0x0a, 0x00, 0x3c, 0x13, 0xc4, 3, b's', b'i', b'p', 0xc0, 0x16,
        ]);
        let m = parse(&message(2, 0x8180, [1, 1, 0, 0], &body)).unwrap();
        assert_eq!(m.incomplete, None);
        assert_eq!(m.query_name(), Some("_sip._udp.example.com"));
        assert_eq!(
            m.records[0].data,
            RData::Srv {
                priority: 10,
                weight: 60,
                port: 5060,
                target: "sip.example.com".into()
            }
        );
        assert_eq!(m.records[0].data.to_text(), "10 60 5060 sip.example.com");
    }

    #[test]
    fn nxdomain_with_soa_in_authority() {
        // nope.example.com A -> NXDOMAIN, authority: example.com SOA
        let mut body = vec![4, b'n', b'o', b'p', b'e'];
        body.extend_from_slice(&EXAMPLE_COM_Q); // "example.com" at 17
        body.extend_from_slice(&[
            0xc0, 0x11, 0x00, 0x06, 0x00, 0x01, 0x00, 0x00, 0x01, 0x2c, 0x00, 39,
        ]);
        body.extend_from_slice(&[3, b'n', b's', b'1', 0xc0, 0x11]); // mname
        body.extend_from_slice(&[
            10, b'h', b'o', b's', b't', b'm', b'a', b's', b't', b'e', b'r', 0xc0, 0x11,
        ]);
        for v in [2_024_010_101u32, 7200, 3600, 1_209_600, 300] {
            body.extend_from_slice(&v.to_be_bytes());
        }
        let m = parse(&message(3, 0x8583, [1, 0, 1, 0], &body)).unwrap();
        assert_eq!(m.incomplete, None);
        assert_eq!((m.rcode, m.rcode_name().as_ref()), (3, "NXDOMAIN"));
        assert!(m.authoritative);
        assert_eq!(m.query_name(), Some("nope.example.com"));
        assert_eq!(m.records.len(), 1);
        let soa = &m.records[0];
        assert_eq!(
            (soa.section, soa.name.as_str(), soa.rtype),
            (Section::Authority, "example.com", RrType::SOA)
        );
        assert_eq!(
            soa.data,
            RData::Soa {
                mname: "ns1.example.com".into(),
                rname: "hostmaster.example.com".into(),
                serial: 2_024_010_101,
                refresh: 7200,
                retry: 3600,
                expire: 1_209_600,
                minimum: 300,
            }
        );
        assert_eq!(
            soa.data.to_text(),
            "ns1.example.com hostmaster.example.com 2024010101 7200 3600 1209600 300"
        );
        assert_eq!(Section::Authority.as_str(), "authority");
    }

    #[test]
    fn https_record_with_params() {
        let rdata = [
            0x00, 0x01, 0x00, // priority 1, target "."
            0x00, 0x01, 0x00, 0x06, 2, b'h', b'2', 2, b'h', b'3', // alpn=h2,h3
            0x00, 0x03, 0x00, 0x02, 0x20, 0xfb, // port=8443
            0x00, 0x04, 0x00, 0x08, 1, 2, 3, 4, 5, 6, 7, 8, // ipv4hint
            0x00, 0x05, 0x00, 0x05, 0xfe, 0x0d, 0x00, 0x01, 0x02, // ech
            0x00, 0x06, 0x00, 0x10, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            1, // ipv6hint
            0xff, 0xa0, 0x00, 0x02, 0xab, 0xcd, // key65440
        ];
        let m = one_answer(65, &rdata);
        let RData::Svcb {
            priority,
            target,
            params,
        } = &m.records[0].data
        else {
            panic!("not SVCB")
        };
        assert_eq!((*priority, target.as_str(), params.len()), (1, ".", 6));
        assert_eq!(params[0], (1, b"\x02h2\x02h3".to_vec()));
        assert_eq!(
            m.records[0].data.to_text(),
            "1 . alpn=h2,h3 port=8443 ipv4hint=1.2.3.4,5.6.7.8 ech=5 bytes ipv6hint=2001:db8::1 key65440=abcd"
        );
        assert_eq!(m.records[0].rtype.mnemonic(), "HTTPS");
        // SVCB alias mode with a compressed target
        let m = one_answer(64, &[0x00, 0x00, 3, b's', b'v', b'c', 0xc0, 0x0c]);
        assert_eq!(m.records[0].data.to_text(), "0 svc.example.com");
    }

    #[test]
    fn opt_extended_rcode_badvers() {
        let body = [
            0x00, 0x00, 0x29, 0x10, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x0a, 0x00, 0x04, 1, 2,
            3, 4,
        ];
        let m = parse(&message(9, 0x8000, [0, 0, 0, 1], &body)).unwrap();
        assert_eq!(m.incomplete, None);
        assert_eq!((m.rcode, m.rcode_name().as_ref()), (16, "BADVERS"));
        assert_eq!(
            m.records[0].data,
            RData::Opt {
                udp_size: 4096,
                ext_rcode: 1,
                version: 0,
                dnssec_ok: false,
                options: vec![(10, vec![1, 2, 3, 4])]
            }
        );
        assert_eq!(
            m.records[0].data.to_text(),
            "udp=4096 version=0 ext_rcode=1 10:01020304"
        );
        let mut other = m.clone();
        other.rcode = 4095;
        assert_eq!(other.rcode_name(), "RCODE4095");
    }

    #[test]
    fn unknown_type_is_rfc3597() {
        let m = one_answer(65534, &[0x0a, 0x00, 0x00, 0x01]);
        assert_eq!(m.records[0].rtype.mnemonic(), "TYPE65534");
        assert_eq!(m.records[0].rtype.to_string(), "TYPE65534");
        assert_eq!(m.records[0].data, RData::Other(vec![0x0a, 0, 0, 1]));
        assert_eq!(m.records[0].data.to_text(), "\\# 4 0A000001");
        assert_eq!(RData::Other(vec![]).to_text(), "\\# 0");
        assert_eq!(RrType(255).mnemonic(), "ANY");
        assert_eq!(RrType::CAA.mnemonic(), "CAA");
    }

    #[test]
    fn malformed_rdata_is_kept_raw_and_parsing_goes_on() {
        // an A record with 3 bytes of RDATA, then a good one
        let mut body = EXAMPLE_COM_Q.to_vec();
        body.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 1, 0, 3, 1, 2, 3]);
        body.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 1, 2, 3, 4]);
        let m = parse(&message(1, 0x8000, [1, 2, 0, 0], &body)).unwrap();
        assert_eq!(m.records.len(), 2);
        assert_eq!(m.records[0].data, RData::Other(vec![1, 2, 3]));
        assert_eq!(m.records[1].data, RData::A(Ipv4Addr::new(1, 2, 3, 4)));
        assert!(matches!(
            m.incomplete,
            Some(Error::Truncated {
                layer: Layer::Dns,
                ..
            })
        ));
        // a CNAME with bytes after its name
        let mut body = EXAMPLE_COM_Q.to_vec();
        body.extend_from_slice(&[0xc0, 0x0c, 0, 5, 0, 1, 0, 0, 0, 1, 0, 3, 0xc0, 0x0c, 0xff]);
        let m = parse(&message(1, 0x8000, [1, 1, 0, 0], &body)).unwrap();
        assert_eq!(m.records[0].data, RData::Other(vec![0xc0, 0x0c, 0xff]));
        assert!(matches!(m.incomplete, Some(Error::Malformed { .. })));
    }

    /// Reads a name at `pos` in `buf`.
    fn name_at(buf: &[u8], pos: usize) -> Result<(String, usize), Error> {
        let mut r = Reader::new(buf, Layer::Dns);
        r.seek(pos)?;
        let n = read_name(&mut r)?;
        Ok((n, r.position()))
    }

    fn is_malformed(r: Result<(String, usize), Error>) -> bool {
        matches!(
            r,
            Err(Error::Malformed {
                layer: Layer::Dns,
                ..
            })
        )
    }

    #[test]
    fn pointer_to_itself_is_an_error() {
        let mut buf = vec![0u8; 12];
        buf.extend_from_slice(&[0xc0, 0x0c]);
        assert!(is_malformed(name_at(&buf, 12)));
        // a label then a pointer back to the start of the same sequence
        let mut buf = vec![0u8; 12];
        buf.extend_from_slice(&[3, b'f', b'o', b'o', 0xc0, 0x0c]);
        assert!(is_malformed(name_at(&buf, 12)));
        // through parse: the question is lost, the message is still Ok
        let m = parse(&message(1, 0, [1, 0, 0, 0], &[0xc0, 0x0c, 0, 1, 0, 1])).unwrap();
        assert!(m.questions.is_empty());
        assert!(matches!(m.incomplete, Some(Error::Malformed { .. })));
    }

    #[test]
    fn two_pointers_to_each_other_are_an_error() {
        let mut buf = vec![0u8; 12];
        buf.extend_from_slice(&[0xc0, 0x0e, 0xc0, 0x0c]);
        assert!(is_malformed(name_at(&buf, 12)));
        assert!(is_malformed(name_at(&buf, 14)));
        let m = parse(&message(1, 0, [1, 0, 0, 0], &[0xc0, 0x0e, 0xc0, 0x0c, 0, 1])).unwrap();
        assert!(m.questions.is_empty() && m.incomplete.is_some());
    }

    #[test]
    fn forward_pointer_is_an_error() {
        let mut buf = vec![0u8; 12];
        buf.extend_from_slice(&[0xc0, 0x10, 0, 0, 1, b'a', 0]);
        assert!(is_malformed(name_at(&buf, 12)));
        // while a backward pointer to the same label works
        let mut buf = vec![0u8; 12];
        buf.extend_from_slice(&[1, b'a', 0, 1, b'b', 0xc0, 0x0c]);
        assert_eq!(name_at(&buf, 15).unwrap(), ("b.a".into(), 19));
        assert_eq!(name_at(&buf, 12).unwrap(), ("a".into(), 15));
    }

    #[test]
    fn pointer_jumps_are_capped_at_128() {
        // a root at 12, then pointers each to the one before
        let mut buf = vec![0u8; 13];
        for i in 0..130usize {
            let target = if i == 0 { 12 } else { 13 + 2 * (i - 1) };
            buf.extend_from_slice(&(0xc000 | target as u16).to_be_bytes());
        }
        let at = |jumps: usize| 13 + 2 * (jumps - 1);
        assert_eq!(name_at(&buf, at(128)).unwrap(), (".".into(), at(128) + 2));
        assert!(is_malformed(name_at(&buf, at(129))));
    }

    #[test]
    fn name_length_limit_is_255_octets() {
        let name = |last: usize| {
            let mut b = vec![0u8; 12];
            for len in [63, 63, 63, last] {
                b.push(len as u8);
                b.extend(std::iter::repeat_n(b'x', len));
            }
            b.push(0);
            b
        };
        // 3 * 64 + 62 + 1 = 255 octets
        let ok = name(61);
        let (n, end) = name_at(&ok, 12).unwrap();
        assert_eq!((n.len(), end), (253, ok.len()));
        // 256 octets
        assert!(is_malformed(name_at(&name(62), 12)));
        // also when the octets come through a pointer
        let mut b = name(61);
        let tail = b.len();
        b.extend_from_slice(&[1, b'y', 0xc0, 0x0c]);
        assert!(is_malformed(name_at(&b, tail)));
        // 127 one-byte labels fit exactly
        let mut b = vec![0u8; 12];
        for _ in 0..127 {
            b.extend_from_slice(&[1, b'z']);
        }
        b.push(0);
        assert_eq!(name_at(&b, 12).unwrap().0.len(), 127 * 2 - 1);
    }

    #[test]
    fn labels_are_escaped_rfc1035_style_and_case_is_kept() {
        let mut buf = vec![0u8; 12];
        buf.extend_from_slice(&[5, b'a', b'.', b'B', 0x07, b'\\', 4, b'W', b' ', 0xff, b'"', 0]);
        assert_eq!(name_at(&buf, 12).unwrap().0, "a\\.B\\007\\\\.W\\032\\255\"");
        assert_eq!(name_at(&[0], 0).unwrap(), (".".into(), 1));
    }

    #[test]
    fn reserved_label_types_are_malformed() {
        for first in [0x40u8, 0x80, 0x7f, 0xbf] {
            let buf = [first, 0, 0];
            assert!(is_malformed(name_at(&buf, 0)), "{first:#x}");
        }
    }

    #[test]
    fn mdns_question_with_unicast_response_bit() {
        let body = [
            9, b'_', b's', b'e', b'r', b'v', b'i', b'c', b'e', b's', 7, b'_', b'd', b'n', b's', b'-', b's',
            b'd', 4, b'_', b'u', b'd', b'p', 5, b'l', b'o', b'c', b'a', b'l', 0, 0x00, 0x0c, 0x80, 0x01,
        ];
        let m = parse(&message(0, 0, [1, 0, 0, 0], &body)).unwrap();
        assert_eq!(m.incomplete, None);
        assert_eq!(
            m.questions[0],
            Question {
                name: "_services._dns-sd._udp.local".into(),
                qtype: RrType::PTR,
                qclass: 1,
                unicast_response: true,
            }
        );
    }

    #[test]
    fn split_tcp_two_messages_and_a_partial_third() {
        let mut stream = Vec::new();
        stream.extend_from_slice(&(QUERY.len() as u16).to_be_bytes());
        stream.extend_from_slice(&QUERY);
        stream.extend_from_slice(&(RESPONSE.len() as u16).to_be_bytes());
        stream.extend_from_slice(&RESPONSE);
        let used_expected = stream.len();
        stream.extend_from_slice(&(QUERY.len() as u16).to_be_bytes());
        stream.extend_from_slice(&QUERY[..20]);
        let (msgs, used) = split_tcp(&stream);
        assert_eq!(msgs, vec![&QUERY[..], &RESPONSE[..]]);
        assert_eq!(used, used_expected);
        assert_eq!(parse(msgs[1]).unwrap().records.len(), 5);
        // only one byte of the next length prefix
        let (msgs, used) = split_tcp(&stream[..QUERY.len() + 3]);
        assert_eq!((msgs.len(), used), (1, QUERY.len() + 2));
        assert_eq!(split_tcp(&[]), (vec![], 0));
    }

    #[test]
    fn header_only_with_huge_counts_is_rejected() {
        let m = message(1, 0, [0xffff, 0xffff, 0xffff, 0xffff], &[]);
        assert!(matches!(
            parse(&m),
            Err(Error::Malformed {
                layer: Layer::Dns,
                ..
            })
        ));
        // one question needs 5 bytes
        assert!(parse(&message(1, 0, [1, 0, 0, 0], &[0, 0, 1, 0])).is_err());
        assert!(
            parse(&message(1, 0, [0, 1, 0, 0], &[0; 10]))
                .unwrap()
                .incomplete
                .is_some()
        );
        assert_eq!(
            parse(&[0; 11]),
            Err(Error::Truncated {
                layer: Layer::Dns,
                need: 12,
                have: 11
            })
        );
        let empty = parse(&[0; 12]).unwrap();
        assert!(empty.questions.is_empty() && empty.records.is_empty() && empty.incomplete.is_none());
    }

    #[test]
    fn truncated_answer_keeps_what_came_before() {
        // cut inside the A record's RDATA
        let m = parse(&RESPONSE[..94]).unwrap();
        assert!(matches!(
            m.incomplete,
            Some(Error::Truncated {
                layer: Layer::Dns,
                ..
            })
        ));
        assert_eq!(m.query_name(), Some("www.example.com"));
        assert_eq!(m.questions.len(), 1);
        assert_eq!(m.records.len(), 2);
        assert_eq!(m.records[1].data, RData::Name("cdn.example.net".into()));
        // cut inside the question's QTYPE, with counts that still fit (5 + 11 <= 18)
        let m = parse(&QUERY[..30]).unwrap();
        assert!(m.questions.is_empty() && m.records.is_empty());
        assert!(matches!(m.incomplete, Some(Error::Truncated { .. })));
        // cut so short that the answers cannot fit: what is there is kept, the rest reported
        let m = parse(&RESPONSE[..20]).unwrap();
        assert!(m.records.is_empty() && m.incomplete.is_some());
        // a damaged header (34817 questions, as in a fuzzed capture) still yields the first one
        let mut damaged = QUERY.to_vec();
        damaged[4..6].copy_from_slice(&34817u16.to_be_bytes());
        let m = parse(&damaged).unwrap();
        assert_eq!(m.query_name(), Some("www.example.com"));
        assert!(m.incomplete.is_some());
    }

    fn valid_response() -> impl Strategy<Value = Vec<u8>> {
        (
            proptest::collection::vec((0usize..RESPONSE.len(), any::<u8>()), 0..8),
            0usize..=RESPONSE.len(),
        )
            .prop_map(|(edits, cut)| {
                let mut m = RESPONSE.to_vec();
                for (at, b) in edits {
                    m[at] = b;
                }
                m.truncate(cut.max(12));
                m
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn parse_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn parse_never_panics_on_mutated_responses(bytes in valid_response()) {
            if let Ok(m) = parse(&bytes) {
                for rr in &m.records {
                    let _ = rr.data.to_text();
                    let _ = rr.rtype.mnemonic();
                    prop_assert!(rr.name.len() <= 255 * 4);
                }
                let _ = m.rcode_name();
            }
        }

        #[test]
        fn split_tcp_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let (msgs, used) = split_tcp(&bytes);
            prop_assert!(used <= bytes.len());
            prop_assert_eq!(msgs.iter().map(|m| m.len() + 2).sum::<usize>(), used);
        }
    }
}
