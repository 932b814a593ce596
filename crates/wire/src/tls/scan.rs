//! Handshake messages from the TLS record layer of one TCP direction.

use super::{Framed, Handshake, MAX_HANDSHAKE_BYTES, frame_message, malformed};
use crate::Error;

const CONTENT_CHANGE_CIPHER_SPEC: u8 = 20;
const CONTENT_ALERT: u8 = 21;
const CONTENT_HANDSHAKE: u8 = 22;
const CONTENT_APPLICATION_DATA: u8 = 23;
const CONTENT_HEARTBEAT: u8 = 24;

/// Largest record body accepted: 2^14 plus the 2048 bytes of expansion TLSCiphertext allows.
const MAX_RECORD_BODY: usize = (1 << 14) + 2048;

/// Walks the TLS records of one TCP direction (bytes in order, as reassembled by the engine)
/// and yields the handshake messages they carry.
///
/// Handshake records (content type 22, record version 0x0300..=0x0304) are concatenated and cut
/// into messages, so a message may span records and segments, and a record may hold several
/// messages. The first record of another content type (change_cipher_spec, alert, application
/// data, heartbeat) ends the scan: after it the handshake is encrypted or over.
///
/// Bounded: at most 64 KiB of handshake data is accepted per direction, one partial message is
/// buffered at a time, and nothing is buffered once [`HandshakeScan::finished`] is true.
#[derive(Clone, Debug, Default)]
pub struct HandshakeScan {
    /// The record header being read.
    header: [u8; 5],
    header_len: usize,
    /// Bytes of the current handshake record body still to come.
    body_left: usize,
    /// Handshake bytes not yet cut into messages (at most one partial message).
    pending: Vec<u8>,
    /// Handshake bytes accepted so far.
    total: usize,
    /// A complete, valid record header has been read.
    seen_record: bool,
    finished: bool,
    /// Why the scan stopped, returned by every later `push`.
    error: Option<Error>,
}

impl HandshakeScan {
    pub fn new() -> Self {
        Self::default()
    }

    /// True once change_cipher_spec, alert or application data was seen, the stream turned out
    /// not to be TLS, or the limit was hit: no more handshake messages will come.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// Feeds the next in-order bytes of the direction. Returns the complete handshake messages
    /// not returned before.
    ///
    /// Fails with [`Error::Malformed`] as soon as the first record header is not a TLS
    /// handshake record header (`0x16 0x03 0x00..=0x04`), when a later record header is not TLS,
    /// when a handshake message announces more than 64 KiB, or when more than 64 KiB of
    /// handshake data arrives. The error is sticky (every later call returns it). If messages
    /// were completed in the same call before the failure, they are returned and the error comes
    /// with the next call; `finished()` is true at once either way.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Handshake>, Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let mut out = Vec::new();
        if self.finished {
            return Ok(out);
        }
        match self.consume(bytes, &mut out) {
            Ok(()) => Ok(out),
            Err(e) => {
                self.finished = true;
                self.error = Some(e);
                self.pending = Vec::new();
                if out.is_empty() { Err(e) } else { Ok(out) }
            }
        }
    }

    fn consume(&mut self, mut input: &[u8], out: &mut Vec<Handshake>) -> Result<(), Error> {
        while !input.is_empty() && !self.finished {
            if self.body_left == 0 {
                let take = (5 - self.header_len).min(input.len());
                self.header[self.header_len..self.header_len + take].copy_from_slice(&input[..take]);
                self.header_len += take;
                input = &input[take..];
                if !self.seen_record && !prefix_is_tls(&self.header[..self.header_len]) {
                    return Err(malformed("stream does not start with a TLS handshake record"));
                }
                if self.header_len < 5 {
                    continue;
                }
                self.header_len = 0;
                self.start_record()?;
            } else {
                let take = self.body_left.min(input.len());
                let allowed = MAX_HANDSHAKE_BYTES - self.total;
                let accepted = take.min(allowed);
                self.pending.extend_from_slice(&input[..accepted]);
                self.total += accepted;
                self.body_left -= accepted;
                input = &input[take..];
                self.cut_messages(out)?;
                if take > allowed {
                    return Err(malformed("more than 64 KiB of handshake data"));
                }
            }
        }
        Ok(())
    }

    /// Acts on a complete record header.
    fn start_record(&mut self) -> Result<(), Error> {
        let [content_type, major, minor, len_hi, len_lo] = self.header;
        if major != 3 || minor > 4 {
            return Err(malformed("record version is not TLS"));
        }
        let len = usize::from(u16::from_be_bytes([len_hi, len_lo]));
        match content_type {
            CONTENT_HANDSHAKE => {
                if len > MAX_RECORD_BODY {
                    return Err(malformed("handshake record longer than 2^14 + 2048"));
                }
                self.seen_record = true;
                self.body_left = len;
                Ok(())
            }
            CONTENT_CHANGE_CIPHER_SPEC | CONTENT_ALERT | CONTENT_APPLICATION_DATA | CONTENT_HEARTBEAT => {
                self.finished = true;
                self.pending = Vec::new();
                Ok(())
            }
            _ => Err(malformed("record content type is not TLS")),
        }
    }

    fn cut_messages(&mut self, out: &mut Vec<Handshake>) -> Result<(), Error> {
        let mut pos = 0;
        loop {
            match frame_message(&self.pending[pos..]) {
                Framed::Message(ty, body, taken) => {
                    out.push(Handshake::decode(ty, body));
                    pos += taken;
                }
                Framed::Incomplete => break,
                Framed::TooLong => return Err(malformed("handshake message longer than 64 KiB")),
            }
        }
        self.pending.drain(..pos);
        Ok(())
    }
}

/// Whether the bytes so far can begin a TLS handshake record header.
fn prefix_is_tls(h: &[u8]) -> bool {
    h.iter().enumerate().all(|(i, &b)| match i {
        0 => b == CONTENT_HANDSHAKE,
        1 => b == 3,
        2 => b <= 4,
        _ => true,
    })
}
