//! QUIC long headers and Initial packet decryption, for a passive monitor that wants the TLS
//! ClientHello (SNI, ALPN) carried in the client's first Initial packets.
//!
//! - [`split_datagram`] walks the coalesced long-header packets of one UDP datagram
//!   (RFC 9000 section 12.2, RFC 8999 invariants for unknown versions).
//! - [`InitialKeys`] derives the Initial secrets from the client's first Destination Connection
//!   ID (RFC 9001 section 5.2, RFC 9369 section 3.3 for QUIC v2).
//! - [`decrypt_initial`] removes header protection, opens the AEAD and parses the frames an
//!   Initial packet may carry.
//! - [`CryptoStream`] reassembles CRYPTO frame data (the TLS handshake bytes) into a bounded
//!   contiguous prefix.
//!
//! Everything here is total: any input gives a value or an [`Error`], never a panic.

use crate::cursor::Reader;
use crate::{Error, Layer};
use aes::Aes128;
use aes::cipher::{BlockEncrypt, KeyInit};
use aes_gcm::Aes128Gcm;
use aes_gcm::aead::AeadInPlace;
use aes_gcm::aead::generic_array::GenericArray;
use hkdf::Hkdf;
use sha2::Sha256;

#[cfg(test)]
mod tests;

/// QUIC version 1 (RFC 9000).
pub const VERSION_1: u32 = 0x0000_0001;
/// QUIC version 2 (RFC 9369).
pub const VERSION_2: u32 = 0x6b33_43cf;
/// Google QUIC Q050 (QUIC crypto inside IETF-style long headers).
pub const VERSION_Q050: u32 = 0x5130_3530;
/// Google QUIC T050 (TLS 1.3 inside IETF-style long headers).
pub const VERSION_T050: u32 = 0x5430_3530;
/// Google QUIC T051.
pub const VERSION_T051: u32 = 0x5430_3531;

/// Default bound for [`CryptoStream::new`]: 64 KiB of handshake data.
pub const DEFAULT_CRYPTO_MAX_LEN: usize = 64 * 1024;

/// Longest connection ID a known (v1-style) version allows (RFC 9000 section 17.2).
const MAX_CID_LEN: usize = 20;
/// AEAD tag length of AES-128-GCM.
const TAG_LEN: usize = 16;
/// Header protection sample length (RFC 9001 section 5.4.2).
const SAMPLE_LEN: usize = 16;
/// Largest value a QUIC varint can hold; CRYPTO offset + length may not exceed it.
const MAX_VARINT: u64 = (1 << 62) - 1;

/// RFC 9001 section 5.2.
const SALT_V1: [u8; 20] = [
    0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc,
    0xbb, 0x7f, 0x0a,
];
/// RFC 9369 section 3.3.1.
const SALT_V2: [u8; 20] = [
    0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb, 0xf9,
    0xbd, 0x2e, 0xd9,
];
/// draft-ietf-quic-tls-29 to -32.
const SALT_DRAFT_29: [u8; 20] = [
    0xaf, 0xbf, 0xec, 0x28, 0x99, 0x93, 0xd2, 0x4c, 0x9e, 0x97, 0x86, 0xf1, 0x9c, 0x61, 0x11, 0xe0, 0x43,
    0x90, 0xa8, 0x99,
];
/// draft-ietf-quic-tls-23 to -28.
const SALT_DRAFT_23: [u8; 20] = [
    0xc3, 0xee, 0xf7, 0x12, 0xc7, 0x2e, 0xbb, 0x5a, 0x11, 0xa7, 0xd2, 0x43, 0x2b, 0xb4, 0x63, 0x65, 0xbe,
    0xf9, 0xf5, 0x02,
];
/// draft-ietf-quic-tls-22.
const SALT_DRAFT_22: [u8; 20] = [
    0x7f, 0xbc, 0xdb, 0x0e, 0x7c, 0x66, 0xbb, 0xe9, 0x19, 0x3a, 0x96, 0xcd, 0x21, 0x51, 0x9e, 0xbd, 0x7a,
    0x02, 0x64, 0x4a,
];
/// Google QUIC Q050 (Chromium `kQ050Salt`).
const SALT_Q050: [u8; 20] = [
    0x50, 0x45, 0x74, 0xef, 0xd0, 0x66, 0xfe, 0x2f, 0x9d, 0x94, 0x5c, 0xfc, 0xdb, 0xd3, 0xa7, 0xf0, 0xd3,
    0xb5, 0x6b, 0x45,
];
/// Google QUIC T050 (Chromium `kT050Salt`).
const SALT_T050: [u8; 20] = [
    0x7f, 0xf5, 0x79, 0xe5, 0xac, 0xd0, 0x72, 0x91, 0x55, 0x80, 0x30, 0x4c, 0x43, 0xa2, 0x36, 0x7c, 0x60,
    0x48, 0x83, 0x10,
];
/// Google QUIC T051 (Chromium `kT051Salt`).
const SALT_T051: [u8; 20] = [
    0x7a, 0x4e, 0xde, 0xf4, 0xe7, 0xcc, 0xee, 0x5f, 0xa4, 0x50, 0x6c, 0x19, 0x12, 0x4f, 0xc8, 0xcc, 0xda,
    0x6e, 0x03, 0x3d,
];

/// Whether a UDP payload starts with a QUIC long header: the first byte has the Header Form bit
/// (0x80) set and there is room for the first byte, version and both connection ID lengths.
pub fn is_long_header(udp_payload: &[u8]) -> bool {
    udp_payload.len() >= 7 && udp_payload[0] & 0x80 != 0
}

/// The Initial salt of the versions whose Initial keys we can derive: v1 and draft-33/34 (RFC
/// 9001), v2 (RFC 9369), draft-29..32, draft-23..28, draft-22, and Google QUIC Q050/T050/T051.
/// Every one of them uses the v1 long-header layout (token and Length fields), so these are
/// also the versions [`split_datagram`] can walk past.
pub fn initial_salt(version: u32) -> Option<&'static [u8; 20]> {
    match version {
        VERSION_1 | 0xff00_0021 | 0xff00_0022 => Some(&SALT_V1),
        VERSION_2 => Some(&SALT_V2),
        0xff00_001d..=0xff00_0020 => Some(&SALT_DRAFT_29),
        0xff00_0017..=0xff00_001c => Some(&SALT_DRAFT_23),
        0xff00_0016 => Some(&SALT_DRAFT_22),
        VERSION_Q050 => Some(&SALT_Q050),
        VERSION_T050 => Some(&SALT_T050),
        VERSION_T051 => Some(&SALT_T051),
        _ => None,
    }
}

/// Whether `v` is a reserved version used to exercise version negotiation (RFC 9000 section 15):
/// every byte has the low nibble 0xa.
pub const fn is_greasing_version(v: u32) -> bool {
    v & 0x0f0f_0f0f == 0x0a0a_0a0a
}

/// One long-header packet, borrowed from the datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LongPacket<'a> {
    Initial {
        version: u32,
        dcid: &'a [u8],
        scid: &'a [u8],
        token: &'a [u8],
        /// The whole packet, still protected: header (up to and including the protected packet
        /// number) and payload, exactly `pn_offset + Length` bytes.
        header_and_payload: &'a [u8],
        /// Where the (protected) packet number starts within `header_and_payload`.
        pn_offset: usize,
    },
    ZeroRtt {
        version: u32,
        dcid: &'a [u8],
        scid: &'a [u8],
    },
    Handshake {
        version: u32,
        dcid: &'a [u8],
        scid: &'a [u8],
    },
    /// A Retry: `token` is what lies between the SCID and the 16-byte integrity tag (the tag is
    /// not checked). Drafts 22-24 laid Retry out differently (an ODCID field, no tag); for
    /// them `token` holds those raw bytes minus the last 16.
    Retry {
        version: u32,
        dcid: &'a [u8],
        scid: &'a [u8],
        token: &'a [u8],
    },
    VersionNegotiation {
        dcid: &'a [u8],
        scid: &'a [u8],
        versions: Vec<u32>,
    },
    /// A long header of a version whose layout beyond the invariants is unknown (including
    /// greasing versions); it takes the rest of the datagram.
    UnknownVersion {
        version: u32,
        dcid: &'a [u8],
        scid: &'a [u8],
    },
}

impl LongPacket<'_> {
    /// The version field (0 for Version Negotiation).
    pub fn version(&self) -> u32 {
        match self {
            LongPacket::Initial { version, .. }
            | LongPacket::ZeroRtt { version, .. }
            | LongPacket::Handshake { version, .. }
            | LongPacket::Retry { version, .. }
            | LongPacket::UnknownVersion { version, .. } => *version,
            LongPacket::VersionNegotiation { .. } => 0,
        }
    }

    /// The Destination Connection ID.
    pub fn dcid(&self) -> &[u8] {
        match self {
            LongPacket::Initial { dcid, .. }
            | LongPacket::ZeroRtt { dcid, .. }
            | LongPacket::Handshake { dcid, .. }
            | LongPacket::Retry { dcid, .. }
            | LongPacket::VersionNegotiation { dcid, .. }
            | LongPacket::UnknownVersion { dcid, .. } => dcid,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Initial,
    ZeroRtt,
    Handshake,
    Retry,
}

/// The long packet type from the first byte: v2 rotated the code points (RFC 9369 section 3.2).
fn kind(version: u32, first: u8) -> Kind {
    let bits = (first >> 4) & 0x03;
    match (version == VERSION_2, bits) {
        (false, 0) | (true, 1) => Kind::Initial,
        (false, 1) | (true, 2) => Kind::ZeroRtt,
        (false, 2) | (true, 3) => Kind::Handshake,
        _ => Kind::Retry,
    }
}

const fn malformed(what: &'static str) -> Error {
    Error::Malformed {
        layer: Layer::Quic,
        what,
    }
}

fn varint_len(r: &mut Reader<'_>) -> Result<usize, Error> {
    usize::try_from(r.varint()?).map_err(|_| malformed("length does not fit in memory"))
}

/// Parses the long-header packet at the start of `buf`; returns it and how many bytes it took.
fn parse_long(buf: &[u8]) -> Result<(LongPacket<'_>, usize), Error> {
    let mut r = Reader::new(buf, Layer::Quic);
    let first = r.u8()?;
    let version = r.u32()?;
    let dcid = r.vec8()?;
    let scid = r.vec8()?;
    if version == 0 {
        let rest = r.rest();
        if !rest.len().is_multiple_of(4) {
            return Err(malformed("version negotiation list is not a multiple of 4 bytes"));
        }
        let versions = rest
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        return Ok((LongPacket::VersionNegotiation { dcid, scid, versions }, buf.len()));
    }
    if initial_salt(version).is_none() {
        return Ok((LongPacket::UnknownVersion { version, dcid, scid }, buf.len()));
    }
    if dcid.len() > MAX_CID_LEN || scid.len() > MAX_CID_LEN {
        return Err(malformed("connection id longer than 20 bytes"));
    }
    match kind(version, first) {
        Kind::Initial => {
            let n = varint_len(&mut r)?;
            let token = r.bytes(n)?;
            let len = varint_len(&mut r)?;
            let pn_offset = r.position();
            r.skip(len)?;
            let end = r.position();
            let header_and_payload = &buf[..end];
            Ok((
                LongPacket::Initial {
                    version,
                    dcid,
                    scid,
                    token,
                    header_and_payload,
                    pn_offset,
                },
                end,
            ))
        }
        k @ (Kind::ZeroRtt | Kind::Handshake) => {
            let len = varint_len(&mut r)?;
            r.skip(len)?;
            let p = if k == Kind::ZeroRtt {
                LongPacket::ZeroRtt { version, dcid, scid }
            } else {
                LongPacket::Handshake { version, dcid, scid }
            };
            Ok((p, r.position()))
        }
        Kind::Retry => {
            let rest = r.rest();
            let Some(token_len) = rest.len().checked_sub(TAG_LEN) else {
                return Err(Error::Truncated {
                    layer: Layer::Quic,
                    need: TAG_LEN,
                    have: rest.len(),
                });
            };
            let token = &rest[..token_len];
            Ok((
                LongPacket::Retry {
                    version,
                    dcid,
                    scid,
                    token,
                },
                buf.len(),
            ))
        }
    }
}

/// Splits a UDP datagram into its coalesced long-header packets (RFC 9000 section 12.2: each
/// long header of a known version has a Length field; a short-header packet, padding, a Retry,
/// a Version Negotiation or a packet of an unknown version ends the datagram). Returns the
/// packets parsed and an error if the rest could not be parsed.
pub fn split_datagram(payload: &[u8]) -> (Vec<LongPacket<'_>>, Option<Error>) {
    let mut packets = Vec::new();
    let mut rest = payload;
    while let Some(&first) = rest.first() {
        if first & 0x80 == 0 {
            break;
        }
        match parse_long(rest) {
            Ok((p, used)) => {
                packets.push(p);
                rest = rest.get(used..).unwrap_or_default();
            }
            Err(e) => return (packets, Some(e)),
        }
    }
    (packets, None)
}

/// Packet protection keys for Initial packets in one direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialKeys {
    key: [u8; 16],
    iv: [u8; 12],
    hp: [u8; 16],
}

/// HKDF-Expand-Label (RFC 8446 section 7.1) with an empty context.
fn expand_label(hk: &Hkdf<Sha256>, label: &[u8], out: &mut [u8]) -> Option<()> {
    let len = u16::try_from(out.len()).ok()?.to_be_bytes();
    let label_len = [u8::try_from(6 + label.len()).ok()?];
    hk.expand_multi_info(&[&len, &label_len, b"tls13 ", label, &[0]], out)
        .ok()
}

/// `client_initial_secret` or `server_initial_secret` (RFC 9001 section 5.2).
fn initial_secret(version: u32, original_dcid: &[u8], client: bool) -> Option<[u8; 32]> {
    let salt = initial_salt(version)?;
    let (_, initial) = Hkdf::<Sha256>::extract(Some(salt), original_dcid);
    let mut secret = [0u8; 32];
    let label: &[u8] = if client { b"client in" } else { b"server in" };
    expand_label(&initial, label, &mut secret)?;
    Some(secret)
}

impl InitialKeys {
    /// Client-to-server (`client`, from "client in") or server-to-client ("server in") keys
    /// from the client's first Destination Connection ID. `None` for versions without a known
    /// Initial salt.
    pub fn new(version: u32, original_dcid: &[u8], client: bool) -> Option<Self> {
        let secret = initial_secret(version, original_dcid, client)?;
        let hk = Hkdf::<Sha256>::from_prk(&secret).ok()?;
        let (kl, il, hl): (&[u8], &[u8], &[u8]) = if version == VERSION_2 {
            (b"quicv2 key", b"quicv2 iv", b"quicv2 hp")
        } else {
            (b"quic key", b"quic iv", b"quic hp")
        };
        let mut keys = InitialKeys {
            key: [0; 16],
            iv: [0; 12],
            hp: [0; 16],
        };
        expand_label(&hk, kl, &mut keys.key)?;
        expand_label(&hk, il, &mut keys.iv)?;
        expand_label(&hk, hl, &mut keys.hp)?;
        Some(keys)
    }

    /// The AEAD_AES_128_GCM key.
    pub fn key(&self) -> &[u8; 16] {
        &self.key
    }

    /// The AEAD IV (XORed with the packet number to make the nonce).
    pub fn iv(&self) -> &[u8; 12] {
        &self.iv
    }

    /// The header protection key (AES-128-ECB).
    pub fn hp(&self) -> &[u8; 16] {
        &self.hp
    }

    /// The header protection mask: AES-ECB(hp, sample) (RFC 9001 section 5.4.3).
    fn mask(&self, sample: [u8; SAMPLE_LEN]) -> [u8; 16] {
        let cipher = Aes128::new(&GenericArray::from(self.hp));
        let mut block = GenericArray::from(sample);
        cipher.encrypt_block(&mut block);
        block.into()
    }

    /// The AEAD nonce: the IV XOR the packet number, left-padded (RFC 9001 section 5.3).
    fn nonce(&self, pn: u64) -> [u8; 12] {
        let mut nonce = self.iv;
        for (n, p) in nonce[4..].iter_mut().zip(pn.to_be_bytes()) {
            *n ^= p;
        }
        nonce
    }
}

/// An Initial packet's payload, decrypted and parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decrypted {
    /// The packet number as sent (truncated to its 1-4 encoded bytes: a passive monitor has no
    /// largest-acknowledged to expand it against).
    pub packet_number: u64,
    pub frames: Vec<Frame>,
}

/// A frame of an Initial packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Handshake bytes at `offset` in the Initial CRYPTO stream.
    Crypto {
        offset: u64,
        data: Vec<u8>,
    },
    /// A run of PADDING frames (this many bytes).
    Padding(usize),
    Ping,
    /// ACK or ACK_ECN (0x02/0x03), skipped.
    Ack,
    /// CONNECTION_CLOSE: `frame_type` is `Some` for the transport variant (0x1c), `None` for the
    /// application one (0x1d). The reason is decoded lossily as UTF-8.
    ConnectionClose {
        error_code: u64,
        frame_type: Option<u64>,
        reason: String,
    },
    /// A frame type not parsed here; the frames after it were not looked at.
    Other(u64),
}

/// Removes header protection (AES-128-ECB sample mask, RFC 9001 section 5.4) and decrypts the
/// payload (AES-128-GCM, nonce = iv XOR packet number, AAD = the unprotected header), then
/// parses the frames (PADDING, PING, ACK incl. ECN counts, CRYPTO, CONNECTION_CLOSE 0x1c/0x1d;
/// it stops quietly at any other type). Errs when the packet is not an Initial, is too short to
/// sample, the tag does not verify (wrong keys, not QUIC) or a frame overruns the payload.
pub fn decrypt_initial(packet: &LongPacket<'_>, keys: &InitialKeys) -> Result<Decrypted, Error> {
    let LongPacket::Initial {
        header_and_payload: buf,
        pn_offset,
        ..
    } = packet
    else {
        return Err(malformed("not an Initial packet"));
    };
    let buf: &[u8] = buf;
    let pn_offset = *pn_offset;
    if pn_offset < 7 || buf.first().is_none_or(|b| b & 0x80 == 0) {
        return Err(malformed("not a long header"));
    }
    let sample_start = pn_offset.saturating_add(4);
    let sample_end = sample_start.saturating_add(SAMPLE_LEN);
    let Some(sample) = buf.get(sample_start..sample_end) else {
        return Err(Error::Truncated {
            layer: Layer::Quic,
            need: sample_end,
            have: buf.len(),
        });
    };
    let mut sample_arr = [0u8; SAMPLE_LEN];
    sample_arr.copy_from_slice(sample);
    let mask = keys.mask(sample_arr);

    let first = buf[0] ^ (mask[0] & 0x0f);
    let pn_len = usize::from(first & 0x03) + 1;
    let mut header = Vec::with_capacity(pn_offset + pn_len);
    header.push(first);
    header.extend_from_slice(&buf[1..pn_offset]);
    let mut pn = 0u64;
    for (&b, &m) in buf[pn_offset..pn_offset + pn_len].iter().zip(&mask[1..]) {
        let b = b ^ m;
        header.push(b);
        pn = (pn << 8) | u64::from(b);
    }

    let body = &buf[pn_offset + pn_len..];
    let Some(msg_len) = body.len().checked_sub(TAG_LEN) else {
        return Err(Error::Truncated {
            layer: Layer::Quic,
            need: TAG_LEN,
            have: body.len(),
        });
    };
    let (msg, tag) = body.split_at(msg_len);
    let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| malformed("tag length"))?;
    let cipher = Aes128Gcm::new(&GenericArray::from(keys.key));
    let mut plain = msg.to_vec();
    cipher
        .decrypt_in_place_detached(
            &GenericArray::from(keys.nonce(pn)),
            &header,
            &mut plain,
            &GenericArray::from(tag),
        )
        .map_err(|_| malformed("packet protection tag does not verify (wrong keys or not QUIC)"))?;
    let frames = parse_frames(&plain)?;
    Ok(Decrypted {
        packet_number: pn,
        frames,
    })
}

fn parse_frames(payload: &[u8]) -> Result<Vec<Frame>, Error> {
    let mut r = Reader::new(payload, Layer::Quic);
    let mut frames = Vec::new();
    while !r.is_empty() {
        let ty = r.varint()?;
        match ty {
            0x00 => {
                let zeros = r.rest().iter().take_while(|&&b| b == 0).count();
                r.skip(zeros)?;
                frames.push(Frame::Padding(zeros + 1));
            }
            0x01 => frames.push(Frame::Ping),
            0x02 | 0x03 => {
                let _largest = r.varint()?;
                let _delay = r.varint()?;
                let ranges = r.varint()?;
                let _first_range = r.varint()?;
                // Each range takes at least two bytes, so a bogus count fails on the bytes.
                for _ in 0..ranges {
                    let _gap = r.varint()?;
                    let _len = r.varint()?;
                }
                if ty == 0x03 {
                    for _ in 0..3 {
                        r.varint()?;
                    }
                }
                frames.push(Frame::Ack);
            }
            0x06 => {
                let offset = r.varint()?;
                let len = r.varint()?;
                if offset + len > MAX_VARINT {
                    return Err(malformed("CRYPTO frame ends past 2^62-1"));
                }
                let len = usize::try_from(len).map_err(|_| malformed("CRYPTO frame length"))?;
                let data = r.bytes(len)?.to_vec();
                frames.push(Frame::Crypto { offset, data });
            }
            0x1c | 0x1d => {
                let error_code = r.varint()?;
                let frame_type = if ty == 0x1c { Some(r.varint()?) } else { None };
                let n = varint_len(&mut r)?;
                let reason = String::from_utf8_lossy(r.bytes(n)?).into_owned();
                frames.push(Frame::ConnectionClose {
                    error_code,
                    frame_type,
                    reason,
                });
            }
            other => {
                frames.push(Frame::Other(other));
                break;
            }
        }
    }
    Ok(frames)
}

/// Reassembles CRYPTO frame data (split across frames and packets, out of order, overlapping or
/// duplicated) into the contiguous stream prefix that starts at offset 0. Where copies overlap,
/// the first bytes received win. Bounded: data at or past `max_len` is dropped and
/// [`overflowed`](Self::overflowed) is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoStream {
    max_len: usize,
    /// Stream bytes `0..buf.len()`; only the ranges in `filled` are meaningful.
    buf: Vec<u8>,
    /// Received ranges `[start, end)`, sorted, disjoint and not touching.
    filled: Vec<(usize, usize)>,
    overflowed: bool,
}

impl CryptoStream {
    /// A stream that keeps at most `max_len` bytes (see [`DEFAULT_CRYPTO_MAX_LEN`]).
    pub fn new(max_len: usize) -> Self {
        CryptoStream {
            max_len,
            buf: Vec::new(),
            filled: Vec::new(),
            overflowed: false,
        }
    }

    /// Adds the data of one CRYPTO frame.
    pub fn add(&mut self, offset: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let max = u64::try_from(self.max_len).unwrap_or(u64::MAX);
        let end = offset.saturating_add(u64::try_from(data.len()).unwrap_or(u64::MAX));
        if end > max {
            self.overflowed = true;
        }
        if offset >= max {
            return;
        }
        // Both are now at most max_len, which is a usize.
        let (Ok(s), Ok(e)) = (usize::try_from(offset), usize::try_from(end.min(max))) else {
            return;
        };
        if self.buf.len() < e {
            self.buf.resize(e, 0);
        }
        // Copy into the gaps only: bytes already received are kept.
        let mut pos = s;
        for &(a, b) in &self.filled {
            if pos >= e || a >= e {
                break;
            }
            if b <= pos {
                continue;
            }
            if a > pos {
                self.buf[pos..a].copy_from_slice(&data[pos - s..a - s]);
            }
            pos = b;
        }
        if pos < e {
            self.buf[pos..e].copy_from_slice(&data[pos - s..e - s]);
        }
        // Merge [s, e) into the range list.
        let mut merged = Vec::with_capacity(self.filled.len() + 1);
        let (mut ns, mut ne) = (s, e);
        let mut placed = false;
        for &(a, b) in &self.filled {
            if b < ns {
                merged.push((a, b));
            } else if a > ne {
                if !placed {
                    merged.push((ns, ne));
                    placed = true;
                }
                merged.push((a, b));
            } else {
                ns = ns.min(a);
                ne = ne.max(b);
            }
        }
        if !placed {
            merged.push((ns, ne));
        }
        self.filled = merged;
    }

    /// The stream bytes from offset 0 up to the first gap.
    pub fn contiguous(&self) -> &[u8] {
        match self.filled.first() {
            Some(&(0, end)) => self.buf.get(..end).unwrap_or_default(),
            _ => &[],
        }
    }

    /// Whether bytes were received past the first gap (more data is waiting on a hole).
    pub fn has_gap(&self) -> bool {
        !matches!(self.filled.as_slice(), [] | [(0, _)])
    }

    /// Whether some data lay at or past `max_len` and was dropped.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }
}
