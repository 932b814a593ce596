//! TLS handshake parsers for a passive monitor.
//!
//! The engine reassembles one direction of a TCP stream (or the CRYPTO stream of a QUIC
//! connection) and hands the bytes here:
//! - [`HandshakeScan`] walks the TLS record layer of a TCP direction and yields the handshake
//!   messages (a message may span several records and several segments).
//! - [`parse_handshake_messages`] does the same for a QUIC CRYPTO stream (no record layer).
//! - [`ClientHello`], [`ServerHello`] and [`parse_certificate_message`] parse message bodies;
//!   [`ClientHello::ja3`] and [`ClientHello::ja4`] compute the client fingerprints.
//!
//! Nothing here panics on any input, every length is checked against the bytes present, and
//! buffering is bounded (64 KiB of handshake data per direction).

mod cert;
mod fingerprint;
mod scan;
#[cfg(test)]
mod testdata;
#[cfg(test)]
mod tests;

pub use cert::{CertInfo, cert_info, parse_certificate_message};
pub use fingerprint::Transport;
pub use scan::HandshakeScan;

use crate::cursor::Reader;
use crate::{Error, Layer};

/// Handshake message types this module decodes.
pub const HANDSHAKE_CLIENT_HELLO: u8 = 1;
pub const HANDSHAKE_SERVER_HELLO: u8 = 2;
pub const HANDSHAKE_CERTIFICATE: u8 = 11;

/// Extension code points used here.
pub const EXT_SERVER_NAME: u16 = 0x0000;
pub const EXT_SUPPORTED_GROUPS: u16 = 0x000a;
pub const EXT_EC_POINT_FORMATS: u16 = 0x000b;
pub const EXT_SIGNATURE_ALGORITHMS: u16 = 0x000d;
pub const EXT_ALPN: u16 = 0x0010;
pub const EXT_SUPPORTED_VERSIONS: u16 = 0x002b;
pub const EXT_QUIC_TRANSPORT_PARAMETERS: u16 = 0x0039;
pub const EXT_QUIC_TRANSPORT_PARAMETERS_DRAFT: u16 = 0xffa5;
pub const EXT_ENCRYPTED_CLIENT_HELLO: u16 = 0xfe0d;

/// The ServerHello.random of a HelloRetryRequest: SHA-256("HelloRetryRequest") (RFC 8446 4.1.3).
pub const HELLO_RETRY_REQUEST_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91, 0xc2,
    0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// Largest handshake message accepted (and the per-direction buffering bound of [`HandshakeScan`]).
pub const MAX_HANDSHAKE_BYTES: usize = 64 * 1024;

/// GREASE code point (RFC 8701): `0x?a?a` with both bytes equal (0x0a0a, 0x1a1a, ... 0xfafa).
pub const fn is_grease(v: u16) -> bool {
    let [hi, lo] = v.to_be_bytes();
    hi == lo && lo & 0x0f == 0x0a
}

/// True for the extension code points of Encrypted Client Hello: the RFC 9849 value 0xfe0d and the
/// earlier drafts (0xff02, 0xfe08..=0xfe0c).
pub const fn is_ech_extension(v: u16) -> bool {
    matches!(v, 0xfe0d | 0xff02 | 0xfe08..=0xfe0c)
}

fn malformed(what: &'static str) -> Error {
    Error::Malformed {
        layer: Layer::Tls,
        what,
    }
}

/// A ClientHello (RFC 8446 4.1.2, RFC 5246 7.4.1.2), with the extensions a monitor looks at
/// decoded and every extension kept raw in wire order (GREASE included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientHello {
    pub legacy_version: u16,
    pub random: [u8; 32],
    pub session_id: Vec<u8>,
    /// In wire order, GREASE kept.
    pub cipher_suites: Vec<u16>,
    pub compression_methods: Vec<u8>,
    /// `(type, data)` in wire order, GREASE kept.
    pub extensions: Vec<(u16, Vec<u8>)>,
    /// The first host_name of server_name (0). Bytes that are not printable UTF-8 are written as
    /// `\xNN` (see [`escape_bytes`]).
    pub sni: Option<String>,
    /// ALPN (16) protocol names in wire order, escaped like `sni`.
    pub alpn: Vec<String>,
    /// supported_versions (43), client list, GREASE kept.
    pub supported_versions: Vec<u16>,
    /// supported_groups (10), GREASE kept.
    pub supported_groups: Vec<u16>,
    /// ec_point_formats (11).
    pub ec_point_formats: Vec<u8>,
    /// signature_algorithms (13), GREASE kept.
    pub signature_algorithms: Vec<u16>,
    /// encrypted_client_hello (0xfe0d, or a draft code point 0xff02, 0xfe08..=0xfe0c) present.
    pub ech: bool,
    /// quic_transport_parameters (0x39, or the draft code point 0xffa5) present.
    pub quic_transport_parameters: bool,
}

impl ClientHello {
    /// Parses a ClientHello handshake message body (after the 4-byte handshake header).
    ///
    /// Strict about lengths: every vector must fit its enclosing length exactly, and the
    /// decoded extensions (server_name, ALPN, supported_versions, supported_groups,
    /// ec_point_formats, signature_algorithms) must be well formed. A body with a DTLS
    /// `legacy_version` (0xfeff, 0xfefd, 0xfefc) is read with its cookie field (RFC 6347 4.2.1),
    /// which is skipped.
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(body, Layer::Tls);
        let legacy_version = r.u16()?;
        let mut random = [0u8; 32];
        random.copy_from_slice(r.bytes(32)?);
        let session_id = r.vec8()?;
        if session_id.len() > 32 {
            return Err(malformed("client_hello session_id longer than 32 bytes"));
        }
        if is_dtls_version(legacy_version) {
            r.vec8()?; // cookie
        }
        let suites = r.vec16()?;
        if !suites.len().is_multiple_of(2) {
            return Err(malformed("client_hello cipher_suites length is odd"));
        }
        let cipher_suites = u16_list(suites);
        let compression_methods = r.vec8()?.to_vec();
        let extensions = if r.is_empty() {
            Vec::new()
        } else {
            parse_extensions(&mut r)?
        };
        r.expect_end("client_hello has bytes after the extensions")?;

        let mut hello = ClientHello {
            legacy_version,
            random,
            session_id: session_id.to_vec(),
            cipher_suites,
            compression_methods,
            extensions: Vec::new(),
            sni: None,
            alpn: Vec::new(),
            supported_versions: Vec::new(),
            supported_groups: Vec::new(),
            ec_point_formats: Vec::new(),
            signature_algorithms: Vec::new(),
            ech: false,
            quic_transport_parameters: false,
        };
        let mut seen = ExtSeen::default();
        for (ty, data) in &extensions {
            let ty = *ty;
            if is_ech_extension(ty) {
                hello.ech = true;
            }
            if ty == EXT_QUIC_TRANSPORT_PARAMETERS || ty == EXT_QUIC_TRANSPORT_PARAMETERS_DRAFT {
                hello.quic_transport_parameters = true;
            }
            // The first occurrence of a duplicated extension decides (duplicates are a protocol
            // error the server would reject; the raw list keeps them all). Only the few decoded
            // types are tracked, so this stays linear in the number of extensions.
            let decoded = matches!(
                ty,
                EXT_SERVER_NAME
                    | EXT_ALPN
                    | EXT_SUPPORTED_VERSIONS
                    | EXT_SUPPORTED_GROUPS
                    | EXT_EC_POINT_FORMATS
                    | EXT_SIGNATURE_ALGORITHMS
            );
            if !decoded || !seen.first(ty) {
                continue;
            }
            match ty {
                EXT_SERVER_NAME => hello.sni = parse_server_name(data)?,
                EXT_ALPN => {
                    hello.alpn = parse_alpn(data)?.into_iter().map(escape_bytes).collect();
                }
                EXT_SUPPORTED_VERSIONS => {
                    let mut e = Reader::new(data, Layer::Tls);
                    let list = e.vec8()?;
                    e.expect_end("supported_versions has trailing bytes")?;
                    hello.supported_versions = even_u16_list(list, "supported_versions length is odd")?;
                }
                EXT_SUPPORTED_GROUPS => {
                    hello.supported_groups = vec16_u16_list(data, "supported_groups")?;
                }
                EXT_EC_POINT_FORMATS => {
                    let mut e = Reader::new(data, Layer::Tls);
                    hello.ec_point_formats = e.vec8()?.to_vec();
                    e.expect_end("ec_point_formats has trailing bytes")?;
                }
                EXT_SIGNATURE_ALGORITHMS => {
                    hello.signature_algorithms = vec16_u16_list(data, "signature_algorithms")?;
                }
                _ => {}
            }
        }
        hello.extensions = extensions;
        Ok(hello)
    }

    /// The raw data of the first extension of type `ty`.
    pub fn extension(&self, ty: u16) -> Option<&[u8]> {
        self.extensions
            .iter()
            .find(|(t, _)| *t == ty)
            .map(|(_, d)| d.as_slice())
    }
}

/// A ServerHello (or HelloRetryRequest, which shares its format).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerHello {
    pub legacy_version: u16,
    pub random: [u8; 32],
    pub cipher_suite: u16,
    /// `(type, data)` in wire order.
    pub extensions: Vec<(u16, Vec<u8>)>,
    /// supported_versions (43): the version the server selected (TLS 1.3).
    pub selected_version: Option<u16>,
    /// ALPN (16): the protocol the server selected (visible in TLS 1.2; TLS 1.3 sends it
    /// encrypted), escaped like [`ClientHello::sni`].
    pub alpn: Option<String>,
    /// `random` is the RFC 8446 HelloRetryRequest constant.
    pub hello_retry_request: bool,
}

impl ServerHello {
    /// Parses a ServerHello handshake message body (after the 4-byte handshake header). Strict
    /// about lengths. A DTLS `legacy_version` is accepted (the format is the same).
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(body, Layer::Tls);
        let legacy_version = r.u16()?;
        let mut random = [0u8; 32];
        random.copy_from_slice(r.bytes(32)?);
        let session_id = r.vec8()?;
        if session_id.len() > 32 {
            return Err(malformed("server_hello session_id longer than 32 bytes"));
        }
        let cipher_suite = r.u16()?;
        let _compression_method = r.u8()?;
        let extensions = if r.is_empty() {
            Vec::new()
        } else {
            parse_extensions(&mut r)?
        };
        r.expect_end("server_hello has bytes after the extensions")?;

        let mut selected_version = None;
        let mut alpn = None;
        let mut seen = ExtSeen::default();
        for (ty, data) in &extensions {
            if !matches!(*ty, EXT_SUPPORTED_VERSIONS | EXT_ALPN) || !seen.first(*ty) {
                continue;
            }
            match *ty {
                EXT_SUPPORTED_VERSIONS => {
                    let mut e = Reader::new(data, Layer::Tls);
                    selected_version = Some(e.u16()?);
                    e.expect_end("server supported_versions is not one version")?;
                }
                EXT_ALPN => {
                    let mut names = parse_alpn(data)?;
                    if names.len() != 1 {
                        return Err(malformed("server ALPN does not hold exactly one protocol"));
                    }
                    alpn = names.pop().map(escape_bytes);
                }
                _ => {}
            }
        }
        Ok(ServerHello {
            legacy_version,
            random,
            cipher_suite,
            extensions,
            selected_version,
            alpn,
            hello_retry_request: random == HELLO_RETRY_REQUEST_RANDOM,
        })
    }

    /// The negotiated version: `selected_version` if present, else `legacy_version`.
    pub fn version(&self) -> u16 {
        self.selected_version.unwrap_or(self.legacy_version)
    }
}

/// One handshake message as found in a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handshake {
    ClientHello(ClientHello),
    ServerHello(ServerHello),
    /// The certificate chain, leaf first.
    Certificate(Vec<CertInfo>),
    /// Any other message type, or a ClientHello/ServerHello/Certificate whose body did not parse.
    Other(u8),
}

impl Handshake {
    /// Decodes one message body of the given handshake type. Never fails: bodies that do not
    /// parse become [`Handshake::Other`].
    pub fn decode(msg_type: u8, body: &[u8]) -> Handshake {
        match msg_type {
            HANDSHAKE_CLIENT_HELLO => {
                ClientHello::parse(body).map_or(Handshake::Other(msg_type), Handshake::ClientHello)
            }
            HANDSHAKE_SERVER_HELLO => {
                ServerHello::parse(body).map_or(Handshake::Other(msg_type), Handshake::ServerHello)
            }
            HANDSHAKE_CERTIFICATE => {
                parse_certificate_message(body).map_or(Handshake::Other(msg_type), Handshake::Certificate)
            }
            other => Handshake::Other(other),
        }
    }
}

/// Outcome of reading one handshake message header from the front of a buffer.
pub(crate) enum Framed<'a> {
    /// Type, body, and the total bytes taken (4 + body length).
    Message(u8, &'a [u8], usize),
    /// Not enough bytes yet.
    Incomplete,
    /// The announced length is above [`MAX_HANDSHAKE_BYTES`].
    TooLong,
}

pub(crate) fn frame_message(buf: &[u8]) -> Framed<'_> {
    let Some(header) = buf.get(..4) else {
        return Framed::Incomplete;
    };
    let len = u32::from_be_bytes([0, header[1], header[2], header[3]]) as usize;
    if len > MAX_HANDSHAKE_BYTES {
        return Framed::TooLong;
    }
    match buf.get(4..4 + len) {
        Some(body) => Framed::Message(header[0], body, 4 + len),
        None => Framed::Incomplete,
    }
}

/// Handshake messages straight from a QUIC CRYPTO stream (no record layer), from offset 0.
///
/// Returns the complete messages and the number of bytes they took; an incomplete message at
/// the end is left for the caller to complete. A message announcing more than 64 KiB stops the
/// walk (those bytes are not consumed).
pub fn parse_handshake_messages(stream: &[u8]) -> (Vec<Handshake>, usize) {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Framed::Message(ty, body, taken) = frame_message(&stream[pos..]) {
        out.push(Handshake::decode(ty, body));
        pos += taken;
    }
    (out, pos)
}

/// Cheap fast-path check: does this TCP payload start like a TLS handshake record
/// (`0x16 0x03 0x00..=0x04`)?
pub fn looks_like_tls(payload: &[u8]) -> bool {
    matches!(payload, [0x16, 0x03, 0x00..=0x04, ..])
}

/// Renders bytes from the wire as a string without losing information: valid UTF-8 is kept,
/// except control characters and `\`, which (like every byte of invalid UTF-8) are written as
/// `\xNN`.
pub fn escape_bytes(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() || c == '\\' {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(s, "\\x{b:02x}");
                }
            } else {
                s.push(c);
            }
        }
        for b in chunk.invalid() {
            let _ = write!(s, "\\x{b:02x}");
        }
    }
    s
}

const fn is_dtls_version(v: u16) -> bool {
    v >= 0xfe00 && !is_grease(v)
}

/// Which of the decoded extension types were seen (to decode only the first of duplicates).
#[derive(Default)]
struct ExtSeen(Vec<u16>);

impl ExtSeen {
    /// true the first time `ty` is offered.
    fn first(&mut self, ty: u16) -> bool {
        if self.0.contains(&ty) {
            false
        } else {
            self.0.push(ty);
            true
        }
    }
}

fn parse_extensions(r: &mut Reader<'_>) -> Result<Vec<(u16, Vec<u8>)>, Error> {
    let mut e = Reader::new(r.vec16()?, Layer::Tls);
    let mut out = Vec::new();
    while !e.is_empty() {
        let ty = e.u16()?;
        let data = e.vec16()?;
        out.push((ty, data.to_vec()));
    }
    Ok(out)
}

fn u16_list(b: &[u8]) -> Vec<u16> {
    b.chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect()
}

fn even_u16_list(b: &[u8], what: &'static str) -> Result<Vec<u16>, Error> {
    if !b.len().is_multiple_of(2) {
        return Err(malformed(what));
    }
    Ok(u16_list(b))
}

/// An extension body that is exactly one `u16` list with a 2-byte length.
fn vec16_u16_list(data: &[u8], what: &'static str) -> Result<Vec<u16>, Error> {
    let mut e = Reader::new(data, Layer::Tls);
    let list = e.vec16()?;
    e.expect_end(what)?;
    even_u16_list(list, what)
}

/// server_name (RFC 6066 3): the first host_name entry.
fn parse_server_name(data: &[u8]) -> Result<Option<String>, Error> {
    // A server's empty server_name acknowledgement has no body; treat it as "no name".
    if data.is_empty() {
        return Ok(None);
    }
    let mut e = Reader::new(data, Layer::Tls);
    let mut list = Reader::new(e.vec16()?, Layer::Tls);
    e.expect_end("server_name has trailing bytes")?;
    let mut host = None;
    while !list.is_empty() {
        let name_type = list.u8()?;
        let name = list.vec16()?;
        if name_type == 0 && host.is_none() {
            host = Some(escape_bytes(name));
        }
    }
    Ok(host)
}

/// ALPN (RFC 7301 3.1): the protocol names, raw.
pub(crate) fn parse_alpn(data: &[u8]) -> Result<Vec<&[u8]>, Error> {
    let mut e = Reader::new(data, Layer::Tls);
    let mut list = Reader::new(e.vec16()?, Layer::Tls);
    e.expect_end("ALPN has trailing bytes")?;
    let mut out = Vec::new();
    while !list.is_empty() {
        out.push(list.vec8()?);
    }
    Ok(out)
}
