//! The sans-IO core shared by both readers.
//!
//! The caller hands [`Decoder::step`] the unconsumed bytes at the current file position and
//! that position's file offset; the decoder answers with a [`Step`]. It never holds on to the
//! bytes, so packet data is described as a range of the given buffer ([`PacketMeta`]) and the
//! adapter slices it.

use super::pcap::PcapDecoder;
use super::pcapng::NgDecoder;
use super::{CaptureError, Format, LinkType, Packet, detect};
use std::ops::Range;

/// A packet found by the decoder; `data` is a range of the buffer given to `step`.
#[derive(Clone, Debug)]
pub(crate) struct PacketMeta {
    pub ts_nanos: i64,
    pub interface: u32,
    pub link: LinkType,
    pub orig_len: u32,
    pub data: Range<usize>,
}

impl PacketMeta {
    /// The packet, given the same buffer that was passed to `step`.
    pub fn packet<'a>(&self, buf: &'a [u8]) -> Packet<'a> {
        Packet {
            ts_nanos: self.ts_nanos,
            interface: self.interface,
            link: self.link,
            orig_len: self.orig_len,
            data: buf.get(self.data.clone()).unwrap_or(&[]),
        }
    }
}

/// What the decoder made of the bytes at the current position.
#[derive(Debug)]
pub(crate) enum Step {
    /// A packet; the record used `consumed` bytes (always > 0).
    Packet { meta: PacketMeta, consumed: usize },
    /// A record that is not a packet (pcapng IDB, NRB, ISB, ...), `consumed` bytes (> 0).
    Skip { consumed: usize },
    /// The record is incomplete: `step` needs at least this many bytes (always more than it
    /// was given). At the end of the input this means a truncated tail.
    Need(usize),
}

/// Result of parsing the file header.
#[derive(Debug)]
pub(crate) enum Start {
    Ready {
        decoder: Decoder,
        consumed: usize,
    },
    /// Need at least this many bytes from offset 0 (more than were given).
    Need(usize),
}

#[derive(Debug)]
pub(crate) enum Decoder {
    Pcap(PcapDecoder),
    PcapNg(NgDecoder),
}

impl Decoder {
    /// Detects the format of `buf` (the file from offset 0) and parses its file header: the
    /// 24-byte pcap header or the first pcapng Section Header Block.
    pub fn start(buf: &[u8]) -> Result<Start, CaptureError> {
        if buf.len() < 4 {
            return Ok(Start::Need(4));
        }
        match detect(buf) {
            None => Err(not_a_capture(buf)),
            Some(Format::Pcap { .. }) => match PcapDecoder::start(buf)? {
                Some((d, consumed)) => Ok(Start::Ready {
                    decoder: Decoder::Pcap(d),
                    consumed,
                }),
                None => Ok(Start::Need(super::pcap::FILE_HEADER_LEN)),
            },
            Some(Format::PcapNg) => {
                let mut d = NgDecoder::new();
                match d.step(buf, 0)? {
                    Step::Skip { consumed } => Ok(Start::Ready {
                        decoder: Decoder::PcapNg(d),
                        consumed,
                    }),
                    Step::Need(n) => Ok(Start::Need(n)),
                    // The first block has the SHB type, so the decoder cannot see a packet.
                    Step::Packet { .. } => Err(CaptureError::malformed(
                        0,
                        "the first block is not a section header",
                    )),
                }
            }
        }
    }

    pub fn format(&self) -> Format {
        match self {
            Decoder::Pcap(d) => d.format(),
            Decoder::PcapNg(_) => Format::PcapNg,
        }
    }

    /// Decodes the record at the start of `buf`, which is at file offset `offset`.
    pub fn step(&mut self, buf: &[u8], offset: u64) -> Result<Step, CaptureError> {
        match self {
            Decoder::Pcap(d) => d.step(buf, offset),
            Decoder::PcapNg(d) => d.step(buf, offset),
        }
    }
}

fn not_a_capture(buf: &[u8]) -> CaptureError {
    let mut first_bytes = [0u8; 4];
    for (dst, src) in first_bytes.iter_mut().zip(buf) {
        *dst = *src;
    }
    CaptureError::NotACapture {
        first_bytes,
        len: buf.len(),
    }
}

/// The error for an input that ended (with `buf` all there was) before its file header was
/// complete; `need` is what [`Decoder::start`] asked for.
pub(crate) fn header_eof_error(buf: &[u8], need: usize) -> CaptureError {
    if buf.is_empty() {
        CaptureError::Empty
    } else if buf.len() < 4 {
        not_a_capture(buf)
    } else {
        CaptureError::malformed(
            0,
            format!(
                "the file ends inside the file header ({} of {need} bytes)",
                buf.len()
            ),
        )
    }
}
