//! Capture file formats: classic pcap and pcapng, read and written without touching the OS.
//!
//! Reading is built from one sans-IO core ([`decoder`]) that looks at the bytes available at
//! the current position and answers "here is a packet, it used N bytes", "this block is not a
//! packet, skip N bytes" or "I need N bytes to decide". Two thin adapters drive it:
//!
//! - [`SliceReader`] over a whole file in memory (the `os` crate memory-maps files);
//! - [`StreamReader`] over any [`std::io::Read`] (stdin, pipes), with a bounded growable buffer.
//!
//! Both give the same packets for the same bytes. Every length is bounded before it is used:
//! a pcap record may capture at most [`MAX_PCAP_CAPLEN`] bytes and a pcapng block may be at
//! most [`MAX_PCAPNG_BLOCK_LEN`] bytes long, so a corrupt length can never make the stream
//! reader allocate without limit. A file that ends inside a record is not an error: the
//! readers stop and report the size of the incomplete tail in `truncated_tail()`.
//!
//! The format is detected from the magic number ([`detect`]), never from the file name.

mod decoder;
mod pcap;
mod pcapng;
mod reader;
mod writer;

#[cfg(test)]
mod tests;

pub use reader::{SliceReader, StreamReader};
pub use writer::{PcapNgWriter, PcapWriter};

use std::fmt;

/// Largest captured length accepted in a classic pcap record (256 KiB, as libpcap).
pub const MAX_PCAP_CAPLEN: u32 = 256 * 1024;
/// Largest pcapng block accepted (16 MiB, as libpcap).
pub const MAX_PCAPNG_BLOCK_LEN: u32 = 16 * 1024 * 1024;

/// A `LINKTYPE_*` value: what the first byte of every packet is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LinkType(pub u16);

impl LinkType {
    /// BSD loopback: a 4-byte host-order address family, then the packet.
    pub const NULL: LinkType = LinkType(0);
    pub const ETHERNET: LinkType = LinkType(1);
    /// Raw IPv4 or IPv6, told apart by the version nibble.
    pub const RAW: LinkType = LinkType(101);
    /// OpenBSD loopback: like NULL but the family is in network byte order.
    pub const LOOP: LinkType = LinkType(108);
    /// Linux "cooked" capture, version 1.
    pub const LINUX_SLL: LinkType = LinkType(113);
    pub const IPV4: LinkType = LinkType(228);
    pub const IPV6: LinkType = LinkType(229);
    pub const NFLOG: LinkType = LinkType(239);
    /// Linux "cooked" capture, version 2.
    pub const LINUX_SLL2: LinkType = LinkType(276);

    /// A short lower-case name ("ethernet", "linux_sll", ...), or "unknown".
    pub const fn name(self) -> &'static str {
        match self.0 {
            0 => "null",
            1 => "ethernet",
            101 => "raw",
            108 => "loop",
            113 => "linux_sll",
            228 => "ipv4",
            229 => "ipv6",
            239 => "nflog",
            276 => "linux_sll2",
            _ => "unknown",
        }
    }
}

impl fmt::Display for LinkType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            "unknown" => write!(f, "linktype {}", self.0),
            name => f.write_str(name),
        }
    }
}

/// One captured packet, borrowing its bytes from the reader.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    /// Nanoseconds since the Unix epoch (saturated at the `i64` range).
    pub ts_nanos: i64,
    /// pcapng: index of the Interface Description Block within the current section.
    /// Classic pcap: always 0.
    pub interface: u32,
    pub link: LinkType,
    /// Length of the packet on the wire, as written in the file (it may be smaller than
    /// `data.len()` in broken files; it is not "corrected").
    pub orig_len: u32,
    /// The captured bytes; shorter than `orig_len` when the capture used a snap length.
    pub data: &'a [u8],
}

/// A capture file format, as told by its magic number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Classic pcap. `nanos`: timestamps have nanosecond (not microsecond) fractions.
    /// Kuznetsov's "modified pcap" (magic `0xa1b2cd34`) is read as `nanos: false`.
    Pcap { big_endian: bool, nanos: bool },
    /// pcapng (each section has its own byte order).
    PcapNg,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Format::Pcap { big_endian, nanos } => write!(
                f,
                "pcap ({}, {}-endian)",
                if *nanos { "nanosecond" } else { "microsecond" },
                if *big_endian { "big" } else { "little" }
            ),
            Format::PcapNg => f.write_str("pcapng"),
        }
    }
}

pub(crate) const PCAP_MAGIC_MICROS: u32 = 0xa1b2_c3d4;
pub(crate) const PCAP_MAGIC_NANOS: u32 = 0xa1b2_3c4d;
pub(crate) const PCAP_MAGIC_MODIFIED: u32 = 0xa1b2_cd34;
pub(crate) const PCAPNG_SHB_BYTES: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// Which format `prefix` (the first bytes of a file) is, by magic number only.
/// `None` when fewer than 4 bytes are given or the magic is not a known one.
pub fn detect(prefix: &[u8]) -> Option<Format> {
    let magic: [u8; 4] = prefix.get(..4)?.try_into().ok()?;
    if magic == PCAPNG_SHB_BYTES {
        return Some(Format::PcapNg);
    }
    for big_endian in [false, true] {
        let m = if big_endian {
            u32::from_be_bytes(magic)
        } else {
            u32::from_le_bytes(magic)
        };
        match m {
            PCAP_MAGIC_MICROS | PCAP_MAGIC_MODIFIED => {
                return Some(Format::Pcap {
                    big_endian,
                    nanos: false,
                });
            }
            PCAP_MAGIC_NANOS => {
                return Some(Format::Pcap {
                    big_endian,
                    nanos: true,
                });
            }
            _ => {}
        }
    }
    None
}

/// Why a capture could not be read (further).
#[derive(Debug)]
pub enum CaptureError {
    /// The magic number is neither pcap nor pcapng. `first_bytes` holds up to 4 leading bytes
    /// (zero-padded), `len` how many bytes were available (the file size for short files).
    NotACapture { first_bytes: [u8; 4], len: usize },
    /// There were no bytes at all.
    Empty,
    /// A header, record or block breaks the format. `offset` is the file offset where the
    /// offending record or block starts (0 for the file header).
    Malformed { offset: u64, what: String },
    /// A pcapng packet block names an interface that has no Interface Description Block in
    /// the current section.
    UnknownInterface { offset: u64, interface: u32 },
    /// Reading the underlying stream failed ([`StreamReader`] only).
    Io(std::io::Error),
}

impl CaptureError {
    pub(crate) fn malformed(offset: u64, what: impl Into<String>) -> Self {
        CaptureError::Malformed {
            offset,
            what: what.into(),
        }
    }

    /// The file offset the error refers to, when it refers to one.
    pub fn offset(&self) -> Option<u64> {
        match self {
            CaptureError::Malformed { offset, .. } | CaptureError::UnknownInterface { offset, .. } => {
                Some(*offset)
            }
            _ => None,
        }
    }
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaptureError::NotACapture { first_bytes, len } => {
                let shown = first_bytes.get(..(*len).min(4)).unwrap_or(&[]);
                f.write_str("not a pcap or pcapng capture (it starts with")?;
                for b in shown {
                    write!(f, " 0x{b:02x}")?;
                }
                if !shown.is_empty() && shown.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
                    // Readable text usually means a wrong file (a log, a CSV, a script).
                    write!(f, " {:?}, text", String::from_utf8_lossy(shown))?;
                }
                if *len < 4 {
                    write!(
                        f,
                        ", and is only {len} byte{} long",
                        if *len == 1 { "" } else { "s" }
                    )?;
                }
                f.write_str("); netvigil reads pcap and pcapng files")
            }
            CaptureError::Empty => f.write_str("the file is empty"),
            CaptureError::Malformed { offset, what } => write!(f, "record at byte {offset}: {what}"),
            CaptureError::UnknownInterface { offset, interface } => write!(
                f,
                "record at byte {offset}: packet refers to interface {interface}, but the section \
                 has no Interface Description Block for it"
            ),
            CaptureError::Io(e) => write!(f, "read error: {e}"),
        }
    }
}

impl std::error::Error for CaptureError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CaptureError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<std::io::Error> for CaptureError {
    fn from(e: std::io::Error) -> Self {
        CaptureError::Io(e)
    }
}

/// Little helpers to read integers of either byte order without panicking.
pub(crate) fn rd_u16(buf: &[u8], off: usize, big: bool) -> Option<u16> {
    let b: [u8; 2] = buf.get(off..off.checked_add(2)?)?.try_into().ok()?;
    Some(if big {
        u16::from_be_bytes(b)
    } else {
        u16::from_le_bytes(b)
    })
}

pub(crate) fn rd_u32(buf: &[u8], off: usize, big: bool) -> Option<u32> {
    let b: [u8; 4] = buf.get(off..off.checked_add(4)?)?.try_into().ok()?;
    Some(if big {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    })
}

pub(crate) fn rd_u64(buf: &[u8], off: usize, big: bool) -> Option<u64> {
    let b: [u8; 8] = buf.get(off..off.checked_add(8)?)?.try_into().ok()?;
    Some(if big {
        u64::from_be_bytes(b)
    } else {
        u64::from_le_bytes(b)
    })
}
