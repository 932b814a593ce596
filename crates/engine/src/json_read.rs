//! Reading JSON back: one small RFC 8259 parser ([`parse`] into a borrowed [`Value`] tree) for
//! every hand-written reader in the workspace (RDAP answers in `intel`, exported records in
//! `store`, agents' batches on the fleet server), and the record readers
//! ([`crate::Record::from_json`], [`FlowRecord::from_value`], ...) that turn exactly what the
//! writers in `record`, `app_record` and `connections` emit (schema v1, docs/records.md) back
//! into records: writing a record, reading it and writing it again gives the same line.
//!
//! Unknown fields are ignored (a judged line carries `score`, `flags`, ... as well); a missing or
//! mistyped field is a [`ReadError`] naming it. Nothing here panics on any input: nesting is
//! capped at [`MAX_DEPTH`], strings and numbers are checked.
//!
//! To read a new record kind: write `fn from_value(o: &Value) -> Result<Self, ReadError>` for it
//! beside the others (the field helpers [`Value::field`], [`Value::opt_str`], ... do the checks)
//! and add one arm to [`crate::Record::from_value`].

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use wire::apps::Dhcp;
use wire::dns::{Message as DnsMessage, Question, RData, ResourceRecord, RrType, Section};
use wire::http::{Request, Response};
use wire::stun::{Attribute, Class, Message as StunMessage, attr};
use wire::tls::CertInfo;
use wire::{Error as WireError, Layer};

use crate::Record;
use crate::app_record::{
    DhcpRecord, DnsRecord, HelloSummary, HttpRecord, QuicRecord, RecordMeta, StunRecord, TlsRecord,
};
use crate::connections::{ConnEvent, ConnectionRecord, Direction};
use crate::lan::{DeviceEvent, DeviceRecord, FlowDevice, LanDevice, Mac, mac_text};
use crate::record::{
    AppBy, AppInfo, ClientBy, DirCounters, DomainSource, EndReason, Endpoint, FlowRecord, FlowState,
    SCHEMA_VERSION,
};
use crate::sockets::{ProcessInfo, SockProto, TcpInfo, TcpState};

/// Deepest nesting of arrays and objects [`parse`] accepts.
pub const MAX_DEPTH: usize = 64;

/// A JSON value borrowing from the text it was parsed from. Objects keep their members in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    /// A number, as its (validated) text: read it with [`Value::as_u64`], [`Value::as_i64`] or
    /// [`Value::as_f64`].
    Num(&'a str),
    /// A string, unescaped (borrowed when it had no escapes).
    Str(Cow<'a, str>),
    Arr(Vec<Value<'a>>),
    Obj(Vec<(Cow<'a, str>, Value<'a>)>),
}

/// Why a text is not JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JsonError {
    /// Byte offset where reading stopped.
    pub at: usize,
    pub what: &'static str,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.what, self.at)
    }
}

impl std::error::Error for JsonError {}

/// Parses one JSON text (surrounding whitespace allowed, nothing after it).
pub fn parse(text: &str) -> Result<Value<'_>, JsonError> {
    let mut p = Parser { s: text, i: 0 };
    let v = p.value(0)?;
    p.ws();
    if p.i != text.len() {
        return p.err("unexpected text after the value");
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Parser<'a> {
    fn b(&self) -> &'a [u8] {
        self.s.as_bytes()
    }
    fn peek(&self) -> Option<u8> {
        self.b().get(self.i).copied()
    }
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }
    fn err<T>(&self, what: &'static str) -> Result<T, JsonError> {
        Err(JsonError { at: self.i, what })
    }
    fn lit(&mut self, word: &str, v: Value<'a>) -> Result<Value<'a>, JsonError> {
        if self.b()[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            self.err("invalid literal")
        }
    }
    fn digits(&mut self) -> usize {
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i - start
    }
    fn number(&mut self) -> Result<Value<'a>, JsonError> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return self.err("invalid number"),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return self.err("invalid number");
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return self.err("invalid number");
            }
        }
        // Only ASCII was consumed: these are char boundaries.
        Ok(Value::Num(&self.s[start..self.i]))
    }
    fn value(&mut self, depth: usize) -> Result<Value<'a>, JsonError> {
        if depth > MAX_DEPTH {
            return self.err("nesting too deep");
        }
        self.ws();
        match self.peek() {
            None => self.err("unexpected end"),
            Some(b'n') => self.lit("null", Value::Null),
            Some(b't') => self.lit("true", Value::Bool(true)),
            Some(b'f') => self.lit("false", Value::Bool(false)),
            Some(b'"') => self.string().map(Value::Str),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(Value::Arr(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Value::Arr(items));
                        }
                        _ => return self.err("expected , or ]"),
                    }
                }
            }
            Some(b'{') => {
                self.i += 1;
                let mut members = Vec::new();
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Ok(Value::Obj(members));
                }
                loop {
                    self.ws();
                    if self.peek() != Some(b'"') {
                        return self.err("expected a member name");
                    }
                    let k = self.string()?;
                    self.ws();
                    if self.peek() != Some(b':') {
                        return self.err("expected :");
                    }
                    self.i += 1;
                    let v = self.value(depth + 1)?;
                    members.push((k, v));
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Value::Obj(members));
                        }
                        _ => return self.err("expected , or }"),
                    }
                }
            }
            Some(_) => self.err("unexpected character"),
        }
    }
    fn hex4(&mut self) -> Result<u32, JsonError> {
        let Some(h) = self.b().get(self.i..self.i + 4) else {
            return self.err("cut \\u escape");
        };
        let mut n = 0u32;
        for &c in h {
            let d = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return self.err("bad \\u escape"),
            };
            n = n * 16 + u32::from(d);
        }
        self.i += 4;
        Ok(n)
    }
    fn string(&mut self) -> Result<Cow<'a, str>, JsonError> {
        self.i += 1; // the opening quote
        let start = self.i;
        // Fast path: no escapes, borrow.
        loop {
            match self.peek() {
                None => return self.err("unterminated string"),
                Some(b'"') => {
                    let s = &self.s[start..self.i];
                    self.i += 1;
                    return Ok(Cow::Borrowed(s));
                }
                Some(b'\\') => break,
                Some(c) if c < 0x20 => return self.err("control character in string"),
                Some(_) => self.i += 1,
            }
        }
        let mut out = String::with_capacity(self.i - start + 16);
        out.push_str(&self.s[start..self.i]);
        loop {
            let run = self.i;
            while let Some(c) = self.peek() {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.i += 1;
            }
            out.push_str(&self.s[run..self.i]);
            match self.peek() {
                None => return self.err("unterminated string"),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => {
                    self.i += 1;
                    let Some(e) = self.peek() else {
                        return self.err("unterminated escape");
                    };
                    self.i += 1;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let code =
                                if (0xD800..0xDC00).contains(&hi) && self.b()[self.i..].starts_with(b"\\u") {
                                    self.i += 2;
                                    let lo = self.hex4()?;
                                    if (0xDC00..0xE000).contains(&lo) {
                                        0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                                    } else {
                                        0xFFFD
                                    }
                                } else {
                                    hi
                                };
                            char::from_u32(code).unwrap_or('\u{FFFD}')
                        }
                        _ => return self.err("invalid escape"),
                    };
                    out.push(c);
                }
                Some(_) => return self.err("control character in string"),
            }
        }
    }
}

impl<'a> Value<'a> {
    /// The member `k` of an object (`None` for other values or a missing member).
    pub fn get(&self, k: &str) -> Option<&Value<'a>> {
        match self {
            Value::Obj(m) => m.iter().find(|(n, _)| n == k).map(|(_, v)| v),
            _ => None,
        }
    }
    /// The text of a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    /// The items of an array; empty for anything else.
    pub fn as_array(&self) -> &[Value<'a>] {
        match self {
            Value::Arr(a) => a,
            _ => &[],
        }
    }
    /// A number as `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Num(n) => n.parse().ok(),
            _ => None,
        }
    }
    /// A non-negative integer (no fraction, no exponent).
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Num(n) => n.parse().ok(),
            _ => None,
        }
    }
    /// An integer (no fraction, no exponent).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Num(n) => n.parse().ok(),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// A required member.
    pub fn field(&self, k: &str) -> Result<&Value<'a>, ReadError> {
        self.get(k).ok_or_else(|| ReadError::new(k, "missing"))
    }
    /// A required string member.
    pub fn req_str(&self, k: &str) -> Result<&str, ReadError> {
        self.field(k)?
            .as_str()
            .ok_or_else(|| ReadError::new(k, "expected a string"))
    }
    /// A string member that may be `null` or absent.
    pub fn opt_str(&self, k: &str) -> Result<Option<&str>, ReadError> {
        match self.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s)),
            Some(_) => Err(ReadError::new(k, "expected a string or null")),
        }
    }
    /// A required unsigned integer member that fits `T`.
    pub fn req_uint<T: TryFrom<u64>>(&self, k: &str) -> Result<T, ReadError> {
        self.field(k)?
            .as_u64()
            .and_then(|n| T::try_from(n).ok())
            .ok_or_else(|| ReadError::new(k, "expected an unsigned integer in range"))
    }
    /// An unsigned integer member that may be `null` or absent.
    pub fn opt_uint<T: TryFrom<u64>>(&self, k: &str) -> Result<Option<T>, ReadError> {
        match self.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(_) => self.req_uint(k).map(Some),
        }
    }
    /// A required boolean member.
    pub fn req_bool(&self, k: &str) -> Result<bool, ReadError> {
        self.field(k)?
            .as_bool()
            .ok_or_else(|| ReadError::new(k, "expected true or false"))
    }
    /// A required array of strings.
    pub fn req_strs(&self, k: &str) -> Result<Vec<String>, ReadError> {
        match self.field(k)? {
            Value::Arr(a) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| ReadError::new(k, "expected strings"))
                })
                .collect(),
            _ => Err(ReadError::new(k, "expected an array")),
        }
    }
    /// A required RFC 3339 time, as ns since the epoch.
    pub fn req_time(&self, k: &str) -> Result<i64, ReadError> {
        parse_rfc3339(self.req_str(k)?).ok_or_else(|| ReadError::new(k, "expected an RFC 3339 time"))
    }
}

/// Why a JSON line is not a record this reader knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadError {
    /// Not JSON at all.
    Json(JsonError),
    /// A record type this netvigil does not know (a newer agent?).
    UnknownType(String),
    /// A field is missing or holds the wrong kind of value.
    Field { field: String, why: &'static str },
}

impl ReadError {
    fn new(field: &str, why: &'static str) -> Self {
        ReadError::Field {
            field: field.to_owned(),
            why,
        }
    }
    /// The same error with `outer.` in front of the field name.
    fn within(self, outer: &str) -> Self {
        match self {
            ReadError::Field { field, why } => ReadError::Field {
                field: format!("{outer}.{field}"),
                why,
            },
            e => e,
        }
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Json(e) => write!(f, "not JSON: {e}"),
            ReadError::UnknownType(t) => write!(f, "unknown record type {t:?}"),
            ReadError::Field { field, why } => write!(f, "field {field:?}: {why}"),
        }
    }
}

impl std::error::Error for ReadError {}

impl From<JsonError> for ReadError {
    fn from(e: JsonError) -> Self {
        ReadError::Json(e)
    }
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` to ns since the epoch (what
/// [`crate::record::write_rfc3339`] writes, and the usual variants); `None` when it is not that.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac: i64 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 9 {
                frac = frac * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let digits = (i - start).min(9);
        if digits == 0 {
            return None;
        }
        frac *= 10i64.pow(9 - digits as u32);
    }
    let offset = match s.get(i..)? {
        "Z" | "z" => 0,
        tz if tz.len() == 6 && (tz.starts_with('+') || tz.starts_with('-')) && &tz[3..4] == ":" => {
            let oh: i64 = tz.get(1..3)?.parse().ok()?;
            let om: i64 = tz.get(4..6)?.parse().ok()?;
            let o = (oh * 60 + om) * 60;
            if tz.starts_with('-') { -o } else { o }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + se - offset;
    secs.checked_mul(1_000_000_000)?.checked_add(frac)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

// ---------------------------------------------------------------------------------------------
// Names back to values.

/// Most distinct label texts [`intern`] keeps (each at most 64 bytes): what a reader of
/// untrusted lines can make this process keep is bounded.
const MAX_INTERNED: usize = 4096;

/// A `&'static str` for a label text read from JSON (the record types keep app labels and
/// error texts as `&'static str`). Known labels cost nothing; new ones are kept once, up to
/// [`MAX_INTERNED`]; past that (or for texts over 64 bytes) `None`.
fn intern(s: &str) -> Option<&'static str> {
    static KNOWN: &[&str] = &[
        "tls",
        "quic",
        "http",
        "dns",
        "mdns",
        "llmnr",
        "stun",
        "dtls",
        "ssdp",
        "dhcp",
        "ssh",
        "ntp",
        "smb",
        "rdp",
        "wireguard",
        "openvpn",
        "bittorrent",
        "netbios",
        "syslog",
        "snmp",
        "imaps",
    ];
    if let Some(k) = KNOWN.iter().find(|k| **k == s) {
        return Some(k);
    }
    static SEEN: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    if s.len() > 64 {
        return None;
    }
    let mut g = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    let set = g.get_or_insert_with(HashSet::new);
    if let Some(k) = set.get(s) {
        return Some(k);
    }
    if set.len() >= MAX_INTERNED {
        return None;
    }
    let k: &'static str = Box::leak(s.to_owned().into_boxed_str());
    set.insert(k);
    Some(k)
}

fn l4_proto(o: &Value<'_>, k: &str) -> Result<u8, ReadError> {
    let s = o.req_str(k)?;
    match s {
        "tcp" => return Ok(6),
        "udp" => return Ok(17),
        _ => {}
    }
    if let Ok(n) = s.parse::<u8>() {
        return Ok(n);
    }
    (0..=255u8)
        .find(|p| wire::layers::IpProto(*p).name() == Some(s))
        .ok_or_else(|| ReadError::new(k, "unknown IP protocol name"))
}

fn endpoint(o: &Value<'_>, k: &str) -> Result<Endpoint, ReadError> {
    let a = socket_addr(o, k)?;
    Ok(Endpoint {
        ip: a.ip(),
        port: a.port(),
    })
}

fn socket_addr(o: &Value<'_>, k: &str) -> Result<SocketAddr, ReadError> {
    let e = o.field(k)?;
    let ip: IpAddr = e
        .req_str("ip")
        .map_err(|x| x.within(k))?
        .parse()
        .map_err(|_| ReadError::new(k, "ip: expected an IP address"))?;
    let port = e.req_uint::<u16>("port").map_err(|x| x.within(k))?;
    Ok(SocketAddr::new(ip, port))
}

fn pick<T: Copy>(o: &Value<'_>, k: &str, table: &[(&str, T)]) -> Result<T, ReadError> {
    let s = o.req_str(k)?;
    table
        .iter()
        .find(|(n, _)| *n == s)
        .map(|(_, v)| *v)
        .ok_or_else(|| ReadError::new(k, "unknown value"))
}

fn opt_pick<T: Copy>(o: &Value<'_>, k: &str, table: &[(&str, T)]) -> Result<Option<T>, ReadError> {
    match o.opt_str(k)? {
        None => Ok(None),
        Some(_) => pick(o, k, table).map(Some),
    }
}

fn check_version(o: &Value<'_>) -> Result<(), ReadError> {
    let v: u32 = o.req_uint("v")?;
    if v != SCHEMA_VERSION {
        return Err(ReadError::new(
            "v",
            "a schema version this netvigil does not read",
        ));
    }
    Ok(())
}

fn hex_u(s: &str, digits: usize) -> Option<u64> {
    let h = s.strip_prefix("0x")?;
    if h.len() != digits || !h.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(h, 16).ok()
}

fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Records.

impl Record {
    /// Reads one JSON line as the record writers emit it ([`Record::write_json`]).
    pub fn from_json(line: &str) -> Result<Record, ReadError> {
        Record::from_value(&parse(line)?)
    }

    /// Reads a parsed record object; its `type` picks the kind.
    pub fn from_value(o: &Value<'_>) -> Result<Record, ReadError> {
        let typ = o.req_str("type")?;
        Ok(match typ {
            "flow" => Record::Flow(FlowRecord::from_value(o)?),
            "dns" => Record::Dns(Box::new(DnsRecord::from_value(o)?)),
            "tls" => Record::Tls(Box::new(TlsRecord::from_value(o)?)),
            "quic" => Record::Quic(Box::new(QuicRecord::from_value(o)?)),
            "http" => Record::Http(Box::new(HttpRecord::from_value(o)?)),
            "stun" => Record::Stun(Box::new(StunRecord::from_value(o)?)),
            "dhcp" => Record::Dhcp(Box::new(DhcpRecord::from_value(o)?)),
            "connection" => Record::Connection(Box::new(ConnectionRecord::from_value(o)?)),
            "device" => Record::Device(Box::new(DeviceRecord::from_value(o)?)),
            other => return Err(ReadError::UnknownType(other.to_owned())),
        })
    }
}

/// The longest flow `iface` read back (Linux names have at most 15 bytes; other systems'
/// friendly names are longer).
pub const MAX_IFACE_LEN: usize = 64;

impl FlowRecord {
    /// Reads a `flow` object (see [`FlowRecord::write_json`]).
    pub fn from_value(o: &Value<'_>) -> Result<FlowRecord, ReadError> {
        check_version(o)?;
        let vlan = match o.opt_uint::<u16>("vlan")? {
            None => [0, 0],
            Some(v) => [v, o.opt_uint::<u16>("vlan_inner")?.unwrap_or(0)],
        };
        let dir = |k: &str| -> Result<DirCounters, ReadError> {
            let d = o.field(k)?;
            let f = |n: &str| d.req_uint::<u64>(n).map_err(|e| e.within(k));
            Ok(DirCounters {
                packets: f("packets")?,
                bytes: f("bytes")?,
                payload_bytes: f("payload_bytes")?,
            })
        };
        let app_proto = match o.opt_str("app_proto")? {
            None => None,
            Some(a) => {
                Some(intern(a).ok_or_else(|| ReadError::new("app_proto", "too many distinct labels"))?)
            }
        };
        let app_by = match o.opt_str("app_proto_by")? {
            Some("port") => AppBy::Port,
            _ => AppBy::Content,
        };
        let process = match o.get("process") {
            None | Some(Value::Null) => None,
            Some(p) => Some(Box::new(process_from_value(p).map_err(|e| e.within("process"))?)),
        };
        Ok(FlowRecord {
            id: o.req_uint("id")?,
            start: o.req_time("start")?,
            end: o.req_time("end")?,
            proto: l4_proto(o, "l4")?,
            client: endpoint(o, "client")?,
            server: endpoint(o, "server")?,
            vlan,
            client_by: pick(
                o,
                "client_by",
                &[
                    ("syn", ClientBy::Syn),
                    ("syn_ack", ClientBy::SynAck),
                    ("first_packet", ClientBy::FirstPacket),
                    ("port_guess", ClientBy::PortGuess),
                    ("protocol", ClientBy::Protocol),
                ],
            )?,
            state: pick(
                o,
                "state",
                &[
                    ("handshake", FlowState::Handshake),
                    ("established", FlowState::Established),
                    ("closing", FlowState::Closing),
                    ("closed", FlowState::Closed),
                    ("active", FlowState::Active),
                ],
            )?,
            to_server: dir("to_server")?,
            to_client: dir("to_client")?,
            ended_by: pick(
                o,
                "ended_by",
                &[
                    ("idle_timeout", EndReason::IdleTimeout),
                    ("reused", EndReason::Reused),
                    ("evicted", EndReason::Evicted),
                    ("end_of_input", EndReason::EndOfInput),
                ],
            )?,
            app: AppInfo {
                app_proto,
                app_by,
                domain: o.opt_str("domain")?.map(str::to_owned),
                domain_source: opt_pick(
                    o,
                    "domain_source",
                    &[
                        ("tls_sni", DomainSource::TlsSni),
                        ("quic_sni", DomainSource::QuicSni),
                        ("http_host", DomainSource::HttpHost),
                        ("dns", DomainSource::Dns),
                    ],
                )?,
            },
            process,
            device: match o.get("device") {
                None | Some(Value::Null) => None,
                Some(d) => Some(Box::new(
                    FlowDevice::from_value(d).map_err(|e| e.within("device"))?,
                )),
            },
            iface: match o.opt_str("iface")? {
                None => None,
                Some(i) if i.is_empty() || i.len() > MAX_IFACE_LEN => {
                    return Err(ReadError::new(
                        "iface",
                        "expected an interface name of 1 to 64 bytes",
                    ));
                }
                Some(i) => Some(std::sync::Arc::from(i)),
            },
        })
    }
}

/// Reads the `process` object of flow and connection records.
pub fn process_from_value(p: &Value<'_>) -> Result<ProcessInfo, ReadError> {
    if !matches!(p, Value::Obj(_)) {
        return Err(ReadError::new("", "expected an object"));
    }
    let package = p.opt_str("package")?;
    Ok(ProcessInfo {
        pid: p.req_uint("pid")?,
        ppid: p.opt_uint("ppid")?,
        name: p.req_str("name")?.to_owned(),
        exe: p.opt_str("exe")?.map(PathBuf::from),
        cmdline: p.req_strs("cmdline")?,
        uid: p.opt_uint("uid")?,
        user: p.opt_str("user")?.map(str::to_owned),
        start_time: match p.get("start_time") {
            None | Some(Value::Null) => None,
            Some(_) => Some(p.req_time("start_time")?),
        },
        container: p.opt_str("container")?.map(str::to_owned),
        unit: p.opt_str("unit")?.map(str::to_owned),
        exe_deleted: p.req_bool("exe_deleted")?,
        exe_in_temp: p.req_bool("exe_in_temp")?,
        package: package.map(str::to_owned),
        package_checked: package.is_some(),
        inferred: p.get("inferred").and_then(Value::as_bool).unwrap_or(false),
    })
}

impl RecordMeta {
    /// The fields every message record starts with.
    pub fn from_value(o: &Value<'_>) -> Result<RecordMeta, ReadError> {
        check_version(o)?;
        Ok(RecordMeta {
            flow_id: o.req_uint("flow_id")?,
            ts: o.req_time("ts")?,
            proto: l4_proto(o, "l4")?,
            client: endpoint(o, "client")?,
            server: endpoint(o, "server")?,
        })
    }
}

fn tls_version(s: &str) -> Option<u16> {
    Some(match s {
        "SSL 3.0" => 0x0300,
        "TLS 1.0" => 0x0301,
        "TLS 1.1" => 0x0302,
        "TLS 1.2" => 0x0303,
        "TLS 1.3" => 0x0304,
        "DTLS 1.0" => 0xfeff,
        "DTLS 1.2" => 0xfefd,
        "DTLS 1.3" => 0xfefc,
        _ => hex_u(s.strip_prefix("GREASE ").unwrap_or(s), 4)? as u16,
    })
}

impl HelloSummary {
    /// The ClientHello fields of `tls` and `quic` records.
    pub fn from_value(o: &Value<'_>) -> Result<HelloSummary, ReadError> {
        let versions = o
            .req_strs("versions")?
            .iter()
            .map(|v| tls_version(v).ok_or_else(|| ReadError::new("versions", "unknown TLS version")))
            .collect::<Result<_, _>>()?;
        Ok(HelloSummary {
            sni: o.opt_str("sni")?.map(str::to_owned),
            alpn: o.req_strs("alpn")?,
            versions,
            cipher_suites: o.req_uint("cipher_suites")?,
            extensions: o.req_uint("extensions")?,
            ja3: o.req_str("ja3")?.to_owned(),
            ja4: o.req_str("ja4")?.to_owned(),
            ech: o.req_bool("ech")?,
        })
    }
}

impl TlsRecord {
    /// Reads a `tls` object (see [`TlsRecord::write_json`]).
    pub fn from_value(o: &Value<'_>) -> Result<TlsRecord, ReadError> {
        let certificates = match o.field("certificates")? {
            Value::Arr(a) => a
                .iter()
                .map(|c| {
                    Ok(CertInfo {
                        subject: c.req_str("subject")?.to_owned(),
                        issuer: c.req_str("issuer")?.to_owned(),
                        dns_names: c.req_strs("dns_names")?,
                        not_before: c.opt_str("not_before")?.map(str::to_owned),
                        not_after: c.opt_str("not_after")?.map(str::to_owned),
                    })
                })
                .collect::<Result<_, ReadError>>()
                .map_err(|e| e.within("certificates"))?,
            _ => return Err(ReadError::new("certificates", "expected an array")),
        };
        Ok(TlsRecord {
            meta: RecordMeta::from_value(o)?,
            hello: HelloSummary::from_value(o)?,
            server_version: match o.opt_str("server_version")? {
                None => None,
                Some(v) => Some(
                    tls_version(v).ok_or_else(|| ReadError::new("server_version", "unknown TLS version"))?,
                ),
            },
            server_alpn: o.opt_str("server_alpn")?.map(str::to_owned),
            cipher_suite: match o.opt_str("cipher_suite")? {
                None => None,
                Some(c) => {
                    Some(hex_u(c, 4).ok_or_else(|| ReadError::new("cipher_suite", "expected 0xHHHH"))? as u16)
                }
            },
            certificates,
        })
    }
}

impl QuicRecord {
    /// Reads a `quic` object (see [`QuicRecord::write_json`]).
    pub fn from_value(o: &Value<'_>) -> Result<QuicRecord, ReadError> {
        Ok(QuicRecord {
            meta: RecordMeta::from_value(o)?,
            version: hex_u(o.req_str("version")?, 8)
                .ok_or_else(|| ReadError::new("version", "expected 0xHHHHHHHH"))? as u32,
            hello: HelloSummary::from_value(o)?,
        })
    }
}

fn rcode(s: &str) -> Option<u16> {
    const NAMES: [(&str, u16); 20] = [
        ("NOERROR", 0),
        ("FORMERR", 1),
        ("SERVFAIL", 2),
        ("NXDOMAIN", 3),
        ("NOTIMP", 4),
        ("REFUSED", 5),
        ("YXDOMAIN", 6),
        ("YXRRSET", 7),
        ("NXRRSET", 8),
        ("NOTAUTH", 9),
        ("NOTZONE", 10),
        ("DSOTYPENI", 11),
        ("BADVERS", 16),
        ("BADKEY", 17),
        ("BADTIME", 18),
        ("BADMODE", 19),
        ("BADNAME", 20),
        ("BADALG", 21),
        ("BADTRUNC", 22),
        ("BADCOOKIE", 23),
    ];
    if let Some((_, n)) = NAMES.iter().find(|(n, _)| *n == s) {
        return Some(*n);
    }
    s.strip_prefix("RCODE")?.parse().ok()
}

/// The record type a mnemonic names (`"A"`, `"HTTPS"`, `"TYPE65534"`).
fn rr_type(s: &str) -> Option<RrType> {
    if let Some(n) = s.strip_prefix("TYPE").and_then(|n| n.parse::<u16>().ok()) {
        return Some(RrType(n));
    }
    // Every named type has a number below 1024 or in 32768..=32780 (TA, DLV): the names are
    // collected once.
    static NAMED: OnceLock<Vec<(&'static str, u16)>> = OnceLock::new();
    let named = NAMED.get_or_init(|| {
        (0..=1024u16)
            .chain(32768..=32780)
            .filter_map(|n| match RrType(n).mnemonic() {
                Cow::Borrowed(m) => Some((m, n)),
                Cow::Owned(_) => None,
            })
            .collect()
    });
    named.iter().find(|(m, _)| *m == s).map(|(_, n)| RrType(*n))
}

/// RDATA from its presentation text. Typed where the text says everything (addresses, names,
/// MX, SRV, SOA, TXT, RFC 3597 raw bytes), checked by writing it back; texts that do not carry
/// the whole value (SVCB/HTTPS show `ech=N bytes`, OPT) are kept verbatim in [`RData::Name`],
/// whose presentation is its text.
fn rdata(t: RrType, text: &str) -> RData {
    let typed = (|| -> Option<RData> {
        let mut w = text.split(' ');
        let mut next = || w.next();
        Some(match t {
            RrType::A => RData::A(text.parse().ok()?),
            RrType::AAAA => RData::Aaaa(text.parse().ok()?),
            _ if text.starts_with("\\# ") => {
                let rest = &text[3..];
                let (len, hex) = rest.split_once(' ').unwrap_or((rest, ""));
                let bytes = hex_bytes(hex)?;
                if bytes.len() != len.parse::<usize>().ok()? {
                    return None;
                }
                RData::Other(bytes)
            }
            RrType::MX => RData::Mx {
                preference: next()?.parse().ok()?,
                exchange: text.split_once(' ')?.1.to_owned(),
            },
            RrType::SRV => RData::Srv {
                priority: next()?.parse().ok()?,
                weight: next()?.parse().ok()?,
                port: next()?.parse().ok()?,
                target: next()?.to_owned(),
            },
            RrType::SOA => RData::Soa {
                mname: next()?.to_owned(),
                rname: next()?.to_owned(),
                serial: next()?.parse().ok()?,
                refresh: next()?.parse().ok()?,
                retry: next()?.parse().ok()?,
                expire: next()?.parse().ok()?,
                minimum: next()?.parse().ok()?,
            },
            RrType::TXT => RData::Txt(txt_strings(text)?),
            _ => return None,
        })
    })();
    match typed {
        Some(d) if d.to_text() == text => d,
        _ => RData::Name(text.to_owned()),
    }
}

/// `"a" "b\"c"` -> [`a`, `b\"c`] (the strings keep their presentation escapes).
fn txt_strings(text: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !out.is_empty() {
            if b[i] != b' ' {
                return None;
            }
            i += 1;
        }
        if b.get(i) != Some(&b'"') {
            return None;
        }
        i += 1;
        let start = i;
        while i < b.len() && b[i] != b'"' {
            i += if b[i] == b'\\' { 2 } else { 1 };
        }
        out.push(text.get(start..i)?.to_owned());
        i += 1;
    }
    Some(out)
}

/// A `wire::Error` from its text (the `incomplete` field of `dns` records).
fn wire_error(s: &str) -> Option<WireError> {
    const LAYERS: [Layer; 29] = [
        Layer::Ethernet,
        Layer::Vlan,
        Layer::Mpls,
        Layer::Pppoe,
        Layer::LinuxSll,
        Layer::LinuxSll2,
        Layer::Null,
        Layer::Nflog,
        Layer::Ipv4,
        Layer::Ipv6,
        Layer::Ipv6Ext,
        Layer::Tcp,
        Layer::Udp,
        Layer::Icmp,
        Layer::Icmpv6,
        Layer::Sctp,
        Layer::Gre,
        Layer::Vxlan,
        Layer::Geneve,
        Layer::GtpU,
        Layer::Teredo,
        Layer::Capture,
        Layer::Dns,
        Layer::Tls,
        Layer::Quic,
        Layer::Http,
        Layer::Stun,
        Layer::Dhcp,
        Layer::App,
    ];
    let (layer, rest) = s.split_once(": ")?;
    let layer = *LAYERS.iter().find(|l| l.name() == layer)?;
    if let Some(r) = rest.strip_prefix("truncated, need ") {
        let (need, have) = r.split_once(" bytes, have ")?;
        return Some(WireError::Truncated {
            layer,
            need: need.parse().ok()?,
            have: have.parse().ok()?,
        });
    }
    let what = intern(rest.strip_prefix("malformed, ")?)?;
    Some(WireError::Malformed { layer, what })
}

fn direction(o: &Value<'_>) -> Result<bool, ReadError> {
    pick(o, "direction", &[("to_server", true), ("to_client", false)])
}

impl DnsRecord {
    /// Reads a `dns` object (see [`DnsRecord::write_json`]).
    pub fn from_value(o: &Value<'_>) -> Result<DnsRecord, ReadError> {
        let meta = RecordMeta::from_value(o)?;
        let proto = o.req_str("proto")?;
        let app = intern(proto).ok_or_else(|| ReadError::new("proto", "too many distinct labels"))?;
        let questions = match o.field("questions")? {
            Value::Arr(a) => a
                .iter()
                .map(|q| {
                    Ok(Question {
                        name: q.req_str("name")?.to_owned(),
                        qtype: rr_type(q.req_str("type")?)
                            .ok_or_else(|| ReadError::new("type", "unknown record type"))?,
                        qclass: q.req_uint("class")?,
                        unicast_response: false,
                    })
                })
                .collect::<Result<Vec<_>, ReadError>>()
                .map_err(|e| e.within("questions"))?,
            _ => return Err(ReadError::new("questions", "expected an array")),
        };
        let records = match o.field("answers")? {
            Value::Arr(a) => a
                .iter()
                .map(|r| {
                    let rtype = rr_type(r.req_str("type")?)
                        .ok_or_else(|| ReadError::new("type", "unknown record type"))?;
                    Ok(ResourceRecord {
                        section: pick(
                            r,
                            "section",
                            &[
                                ("answer", Section::Answer),
                                ("authority", Section::Authority),
                                ("additional", Section::Additional),
                            ],
                        )?,
                        name: r.req_str("name")?.to_owned(),
                        rtype,
                        class: 1,
                        ttl: r.req_uint("ttl")?,
                        data: rdata(rtype, r.req_str("data")?),
                    })
                })
                .collect::<Result<Vec<_>, ReadError>>()
                .map_err(|e| e.within("answers"))?,
            _ => return Err(ReadError::new("answers", "expected an array")),
        };
        let incomplete = match o.opt_str("incomplete")? {
            None => None,
            Some(s) => {
                Some(wire_error(s).ok_or_else(|| ReadError::new("incomplete", "not a decoding error"))?)
            }
        };
        Ok(DnsRecord {
            meta,
            app,
            from_client: direction(o)?,
            msg: DnsMessage {
                id: o.req_uint("id")?,
                response: o.req_bool("response")?,
                opcode: o.req_uint("opcode")?,
                authoritative: false,
                truncated: o.req_bool("truncated")?,
                recursion_desired: false,
                recursion_available: false,
                rcode: rcode(o.req_str("rcode")?).ok_or_else(|| ReadError::new("rcode", "unknown rcode"))?,
                questions,
                records,
                incomplete,
                trailing_bytes: 0,
            },
        })
    }
}

impl HttpRecord {
    /// Reads an `http` object (see [`HttpRecord::write_json`]).
    pub fn from_value(o: &Value<'_>) -> Result<HttpRecord, ReadError> {
        let request = match o.opt_str("method")? {
            None => None,
            Some(m) => Some(Request {
                method: m.to_owned(),
                target: o.opt_str("path")?.unwrap_or_default().to_owned(),
                version: o.opt_str("version")?.unwrap_or_default().to_owned(),
                host: o.opt_str("host")?.map(str::to_owned),
                user_agent: o.opt_str("user_agent")?.map(str::to_owned),
                content_length: o.opt_uint("request_length")?,
                chunked: false,
                headers: Vec::new(),
            }),
        };
        let response = match o.opt_uint::<u16>("status")? {
            None => None,
            Some(status) => Some(Response {
                version: String::new(),
                status,
                reason: String::new(),
                content_type: o.opt_str("content_type")?.map(str::to_owned),
                content_length: o.opt_uint("response_length")?,
                chunked: false,
                server: o.opt_str("server_software")?.map(str::to_owned),
            }),
        };
        Ok(HttpRecord {
            meta: RecordMeta::from_value(o)?,
            request,
            response,
        })
    }
}

fn stun_method(s: &str) -> Option<u16> {
    Some(match s {
        "Binding" => 0x001,
        "SharedSecret" => 0x002,
        "Allocate" => 0x003,
        "Refresh" => 0x004,
        "Send" => 0x006,
        "Data" => 0x007,
        "CreatePermission" => 0x008,
        "ChannelBind" => 0x009,
        "Connect" => 0x00a,
        "ConnectionBind" => 0x00b,
        "ConnectionAttempt" => 0x00c,
        _ => hex_u(s, 3)? as u16,
    })
}

impl StunRecord {
    /// Reads a `stun` object (see [`StunRecord::write_json`]). The attributes it names come back
    /// as SOFTWARE, USERNAME and MAPPED-ADDRESS attributes.
    pub fn from_value(o: &Value<'_>) -> Result<StunRecord, ReadError> {
        let tid = hex_bytes(o.req_str("transaction_id")?)
            .and_then(|b| <[u8; 12]>::try_from(b).ok())
            .ok_or_else(|| ReadError::new("transaction_id", "expected 24 hex digits"))?;
        let mut attributes = Vec::new();
        if let Some(s) = o.opt_str("software")? {
            attributes.push(Attribute {
                typ: attr::SOFTWARE,
                value: s.as_bytes().to_vec(),
            });
        }
        if let Some(s) = o.opt_str("username")? {
            attributes.push(Attribute {
                typ: attr::USERNAME,
                value: s.as_bytes().to_vec(),
            });
        }
        if let Some(a) = o.opt_str("mapped_address")? {
            let a: SocketAddr = a
                .parse()
                .map_err(|_| ReadError::new("mapped_address", "expected ADDRESS:PORT"))?;
            let mut v = vec![0, if a.is_ipv4() { 1 } else { 2 }];
            v.extend_from_slice(&a.port().to_be_bytes());
            match a.ip() {
                IpAddr::V4(ip) => v.extend_from_slice(&ip.octets()),
                IpAddr::V6(ip) => v.extend_from_slice(&ip.octets()),
            }
            attributes.push(Attribute {
                typ: attr::MAPPED_ADDRESS,
                value: v,
            });
        }
        let length = attributes
            .iter()
            .map(|a| 4 + a.value.len().div_ceil(4) * 4)
            .sum::<usize>();
        Ok(StunRecord {
            meta: RecordMeta::from_value(o)?,
            from_client: direction(o)?,
            msg: StunMessage {
                class: pick(
                    o,
                    "class",
                    &[
                        ("request", Class::Request),
                        ("indication", Class::Indication),
                        ("success_response", Class::SuccessResponse),
                        ("error_response", Class::ErrorResponse),
                    ],
                )?,
                method: stun_method(o.req_str("method")?)
                    .ok_or_else(|| ReadError::new("method", "unknown STUN method"))?,
                transaction_id: tid,
                classic: o.req_bool("classic")?,
                length: u16::try_from(length).unwrap_or(u16::MAX),
                attributes,
            },
        })
    }
}

impl DhcpRecord {
    /// Reads a `dhcp` object (see [`DhcpRecord::write_json`]).
    pub fn from_value(o: &Value<'_>) -> Result<DhcpRecord, ReadError> {
        let mac_text = o.req_str("client_mac")?;
        let mac: Vec<u8> = mac_text
            .split(':')
            .map(|h| {
                if h.len() == 2 {
                    u8::from_str_radix(h, 16).ok()
                } else {
                    None
                }
            })
            .collect::<Option<_>>()
            .unwrap_or_default();
        let client_mac = <[u8; 6]>::try_from(mac)
            .map_err(|_| ReadError::new("client_mac", "expected xx:xx:xx:xx:xx:xx"))?;
        let message_type = match o.opt_str("message_type")? {
            None => None,
            Some(t) => Some(
                (1..=8u8)
                    .find(|n| DhcpRecord::message_type_name(*n) == t)
                    .or((t == "OTHER").then_some(0))
                    .ok_or_else(|| ReadError::new("message_type", "unknown DHCP message type"))?,
            ),
        };
        let requested_ip = match o.opt_str("requested_ip")? {
            None => None,
            Some(a) => Some(
                a.parse::<Ipv4Addr>()
                    .map_err(|_| ReadError::new("requested_ip", "expected an IPv4 address"))?,
            ),
        };
        Ok(DhcpRecord {
            meta: RecordMeta::from_value(o)?,
            dhcp: Dhcp {
                op: pick(o, "op", &[("request", 1), ("reply", 2)])?,
                message_type,
                client_mac,
                hostname: o.opt_str("hostname")?.map(str::to_owned),
                requested_ip,
                vendor_class: o.opt_str("vendor_class")?.map(str::to_owned),
                client_fqdn: o.opt_str("client_fqdn")?.map(str::to_owned),
                parameter_list: Vec::new(),
            },
        })
    }
}

fn sock_proto(s: &str) -> Option<SockProto> {
    Some(match s {
        "tcp" => SockProto::Tcp,
        "udp" => SockProto::Udp,
        "udplite" => SockProto::UdpLite,
        "icmp" => SockProto::Icmp,
        "icmpv6" => SockProto::Icmpv6,
        "sctp" => SockProto::Sctp,
        "packet" => SockProto::Packet,
        _ => SockProto::Raw(s.strip_prefix("raw/")?.parse().ok()?),
    })
}

impl ConnectionRecord {
    /// Reads a `connection` object (see [`ConnectionRecord::write_json`]).
    pub fn from_value(o: &Value<'_>) -> Result<ConnectionRecord, ReadError> {
        check_version(o)?;
        let state = match o.opt_str("state")? {
            None => None,
            Some(s) => Some(
                (1..=12u8)
                    .filter_map(TcpState::from_kernel)
                    .find(|t| t.name() == s)
                    .ok_or_else(|| ReadError::new("state", "unknown TCP state"))?,
            ),
        };
        let tcp = match o.opt_uint::<u64>("bytes_sent")? {
            None => None,
            Some(sent) => Some(TcpInfo {
                bytes_acked: sent,
                bytes_received: o.req_uint("bytes_received")?,
                rtt_us: o.req_uint("rtt_us")?,
                total_retrans: o.req_uint("retransmits")?,
                ..TcpInfo::default()
            }),
        };
        let process = match o.get("process") {
            None | Some(Value::Null) => None,
            Some(p) => Some(process_from_value(p).map_err(|e| e.within("process"))?),
        };
        Ok(ConnectionRecord {
            ts: o.req_time("ts")?,
            event: pick(
                o,
                "event",
                &[
                    ("opened", ConnEvent::Opened),
                    ("closed", ConnEvent::Closed),
                    ("listening", ConnEvent::ListeningOnAll),
                ],
            )?,
            proto: sock_proto(o.req_str("l4")?).ok_or_else(|| ReadError::new("l4", "unknown socket kind"))?,
            direction: opt_pick(
                o,
                "direction",
                &[("outbound", Direction::Outbound), ("inbound", Direction::Inbound)],
            )?,
            local: socket_addr(o, "local")?,
            remote: socket_addr(o, "remote")?,
            state,
            process,
            tcp,
            uid: o.req_uint("uid")?,
            inode: o.req_uint("inode")?,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Gateway mode: LAN devices.

/// A MAC address written as six two-digit hex bytes joined by `:` ([`mac_text`]).
fn mac(o: &Value<'_>, k: &str) -> Result<Mac, ReadError> {
    let s = o.req_str(k)?;
    let mut m = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut m {
        let p = parts.next().filter(|p| p.len() == 2);
        *b = p
            .and_then(|p| u8::from_str_radix(p, 16).ok())
            .ok_or_else(|| ReadError::new(k, "expected a MAC address (aa:bb:cc:dd:ee:ff)"))?;
    }
    if parts.next().is_some() {
        return Err(ReadError::new(k, "expected a MAC address (aa:bb:cc:dd:ee:ff)"));
    }
    Ok(m)
}

fn addrs<T: std::str::FromStr>(o: &Value<'_>, k: &str) -> Result<Vec<T>, ReadError> {
    o.req_strs(k)?
        .iter()
        .map(|a| a.parse().map_err(|_| ReadError::new(k, "expected IP addresses")))
        .collect()
}

impl FlowDevice {
    /// Reads a flow's `device` member (see [`FlowDevice::json`]); the label is derived as the
    /// writer derives it (the name, else the MAC address).
    pub fn from_value(o: &Value<'_>) -> Result<FlowDevice, ReadError> {
        let mac = mac(o, "mac")?;
        let name = o.opt_str("name")?.map(str::to_owned);
        Ok(FlowDevice {
            mac,
            client_side: pick(o, "side", &[("client", true), ("server", false)])?,
            private_mac: o.req_bool("mac_private")?,
            vendor: o.opt_str("vendor")?.map(str::to_owned),
            hostname: o.opt_str("hostname")?.map(str::to_owned),
            mdns_name: o.opt_str("mdns_name")?.map(str::to_owned),
            label: name.clone().unwrap_or_else(|| mac_text(&mac)),
            name,
        })
    }
}

impl DeviceRecord {
    /// Reads a `device` record (see [`DeviceRecord::write_json`]). Its `name` is derived from
    /// the other fields, so it is not read; `last_seen` is the record's time.
    pub fn from_value(o: &Value<'_>) -> Result<DeviceRecord, ReadError> {
        check_version(o)?;
        const CHANGES: [&str; 6] = [
            "ipv4",
            "ipv6",
            "hostname",
            "vendor_class",
            "mdns_name",
            "mdns_instance",
        ];
        let ts = o.req_time("ts")?;
        let changed = o
            .req_strs("changed")?
            .iter()
            .map(|c| {
                CHANGES
                    .iter()
                    .find(|k| **k == c.as_str())
                    .copied()
                    .ok_or_else(|| ReadError::new("changed", "unknown change"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(DeviceRecord {
            ts,
            event: pick(
                o,
                "event",
                &[("seen", DeviceEvent::Seen), ("changed", DeviceEvent::Changed)],
            )?,
            changed,
            device: LanDevice {
                mac: mac(o, "mac")?,
                private_mac: o.req_bool("mac_private")?,
                vendor: o.opt_str("vendor")?.map(str::to_owned),
                hostname: o.opt_str("hostname")?.map(str::to_owned),
                vendor_class: o.opt_str("vendor_class")?.map(str::to_owned),
                mdns_names: o.req_strs("mdns_names")?,
                mdns_instances: o.req_strs("mdns_instances")?,
                ipv4: addrs(o, "ipv4")?,
                ipv6: addrs(o, "ipv6")?,
                first_seen: o.req_time("first_seen")?,
                last_seen: ts,
            },
        })
    }
}

#[cfg(test)]
#[path = "json_read_tests.rs"]
mod tests;
