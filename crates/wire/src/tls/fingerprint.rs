//! JA3 (salesforce/ja3) and JA4 (FoxIO JA4 technical details) client fingerprints.

use std::fmt::Write as _;

use md5::{Digest as _, Md5};
use sha2::Sha256;

use super::{ClientHello, EXT_ALPN, EXT_SERVER_NAME, is_grease, parse_alpn};

/// What carried the ClientHello: the first character of JA4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// TLS over TCP: `t`.
    Tcp,
    /// QUIC: `q`.
    Quic,
    /// DTLS: `d`.
    Dtls,
}

impl Transport {
    pub const fn ja4_char(self) -> char {
        match self {
            Transport::Tcp => 't',
            Transport::Quic => 'q',
            Transport::Dtls => 'd',
        }
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn join_decimal<T: std::fmt::Display>(values: impl Iterator<Item = T>) -> String {
    let mut s = String::new();
    for (i, v) in values.enumerate() {
        if i > 0 {
            s.push('-');
        }
        let _ = write!(s, "{v}");
    }
    s
}

fn join_hex4(values: impl Iterator<Item = u16>) -> String {
    let mut s = String::new();
    for (i, v) in values.enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{v:04x}");
    }
    s
}

/// First 12 hex characters of SHA-256; `000000000000` for an empty list (JA4 spec).
fn hash12(s: &str) -> String {
    if s.is_empty() {
        return "000000000000".to_owned();
    }
    let mut h = hex_lower(&Sha256::digest(s.as_bytes()));
    h.truncate(12);
    h
}

/// The JA4 two-character version code.
fn ja4_version_code(v: u16) -> &'static str {
    match v {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0002 => "s2",
        0xfeff => "d1",
        0xfefd => "d2",
        0xfefc => "d3",
        _ => "00",
    }
}

/// Orders versions from oldest to newest. DTLS versions count down on the wire (0xfeff = DTLS
/// 1.0, 0xfefd = 1.2, 0xfefc = 1.3), so "highest" for them means the newest, not the largest
/// number.
fn version_rank(v: u16) -> u32 {
    if v >= 0xfe00 {
        0x1_0000 + u32::from(0xffff - v)
    } else {
        u32::from(v)
    }
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// The JA4 ALPN characters from the raw first protocol name.
fn ja4_alpn(first: Option<&[u8]>) -> String {
    let Some(name) = first else { return "00".to_owned() };
    let (Some(&a), Some(&z)) = (name.first(), name.last()) else {
        return "00".to_owned();
    };
    if is_alnum(a) && is_alnum(z) {
        let mut s = String::with_capacity(2);
        s.push(char::from(a));
        s.push(char::from(z));
        s
    } else {
        // Non-alphanumeric first or last byte: first and last characters of the hex form of the
        // whole value.
        let h = hex_lower(name);
        let mut s = String::with_capacity(2);
        s.extend(h.chars().next());
        s.extend(h.chars().next_back());
        s
    }
}

impl ClientHello {
    /// JA3 string: `SSLVersion,Ciphers,Extensions,EllipticCurves,EllipticCurvePointFormats`, each
    /// field a `-` joined list of decimal values in wire order with GREASE values removed
    /// (an absent list is an empty field). SSLVersion is `legacy_version`.
    pub fn ja3_string(&self) -> String {
        let mut s = String::new();
        let _ = write!(s, "{},", self.legacy_version);
        s.push_str(&join_decimal(
            self.cipher_suites.iter().filter(|v| !is_grease(**v)),
        ));
        s.push(',');
        s.push_str(&join_decimal(
            self.extensions.iter().map(|(t, _)| *t).filter(|t| !is_grease(*t)),
        ));
        s.push(',');
        s.push_str(&join_decimal(
            self.supported_groups.iter().filter(|v| !is_grease(**v)),
        ));
        s.push(',');
        s.push_str(&join_decimal(self.ec_point_formats.iter()));
        s
    }

    /// JA3: lowercase hex MD5 of [`ClientHello::ja3_string`].
    pub fn ja3(&self) -> String {
        hex_lower(&Md5::digest(self.ja3_string().as_bytes()))
    }

    /// The JA4 TLS version: the newest non-GREASE value of supported_versions if that
    /// extension holds one, else `legacy_version`.
    pub fn ja4_version(&self) -> u16 {
        self.supported_versions
            .iter()
            .copied()
            .filter(|v| !is_grease(*v))
            .max_by_key(|v| version_rank(*v))
            .unwrap_or(self.legacy_version)
    }

    /// The three JA4 parts before hashing: `(a, ciphers, extensions[_sigalgs])`.
    fn ja4_parts(&self, transport: Transport) -> (String, String, String) {
        let ciphers: Vec<u16> = self
            .cipher_suites
            .iter()
            .copied()
            .filter(|v| !is_grease(*v))
            .collect();
        let exts: Vec<u16> = self
            .extensions
            .iter()
            .map(|(t, _)| *t)
            .filter(|t| !is_grease(*t))
            .collect();
        let has_sni = exts.contains(&EXT_SERVER_NAME);
        let first_alpn = self
            .extension(EXT_ALPN)
            .and_then(|d| parse_alpn(d).ok())
            .and_then(|names| names.first().copied());

        let mut a = String::with_capacity(10);
        a.push(transport.ja4_char());
        a.push_str(ja4_version_code(self.ja4_version()));
        a.push(if has_sni { 'd' } else { 'i' });
        let _ = write!(a, "{:02}{:02}", ciphers.len().min(99), exts.len().min(99));
        a.push_str(&ja4_alpn(first_alpn));

        let mut sorted_ciphers = ciphers;
        sorted_ciphers.sort_unstable();
        let b = join_hex4(sorted_ciphers.into_iter());

        let mut sorted_exts: Vec<u16> = exts
            .into_iter()
            .filter(|t| *t != EXT_SERVER_NAME && *t != EXT_ALPN)
            .collect();
        sorted_exts.sort_unstable();
        let mut c = join_hex4(sorted_exts.into_iter());
        let sigs = join_hex4(
            self.signature_algorithms
                .iter()
                .copied()
                .filter(|v| !is_grease(*v)),
        );
        if !c.is_empty() && !sigs.is_empty() {
            c.push('_');
            c.push_str(&sigs);
        }
        (a, b, c)
    }

    /// JA4 fingerprint, e.g. `t13d1516h2_8daaf6152771_e5627efa2ab1`.
    ///
    /// GREASE values are ignored everywhere (ciphers, extensions, versions, signature
    /// algorithms). The extension count includes SNI and ALPN; the extension hash leaves them
    /// out. An empty cipher list, or an empty extension list (after removing SNI and ALPN),
    /// gives `000000000000` for that part.
    pub fn ja4(&self, transport: Transport) -> String {
        let (a, b, c) = self.ja4_parts(transport);
        format!("{a}_{}_{}", hash12(&b), hash12(&c))
    }

    /// JA4_r: [`ClientHello::ja4`] before hashing (sorted ciphers, sorted extensions without SNI
    /// and ALPN, then `_` and the signature algorithms in wire order).
    pub fn ja4_raw(&self, transport: Transport) -> String {
        let (a, b, c) = self.ja4_parts(transport);
        format!("{a}_{b}_{c}")
    }
}
