//! Classic pcap: a 24-byte file header, then records of a 16-byte header (24 bytes in
//! Kuznetsov's "modified pcap") and the captured bytes.

use super::decoder::{PacketMeta, Step};
use super::{
    CaptureError, Format, LinkType, MAX_PCAP_CAPLEN, PCAP_MAGIC_MICROS, PCAP_MAGIC_MODIFIED,
    PCAP_MAGIC_NANOS, rd_u16, rd_u32,
};

pub(crate) const FILE_HEADER_LEN: usize = 24;
const RECORD_HEADER_LEN: usize = 16;
const MODIFIED_RECORD_HEADER_LEN: usize = 24;

#[derive(Debug)]
pub(crate) struct PcapDecoder {
    big_endian: bool,
    nanos: bool,
    record_header_len: usize,
    link: LinkType,
}

impl PcapDecoder {
    /// Parses the file header. `Ok(None)`: fewer than 24 bytes were given.
    pub fn start(buf: &[u8]) -> Result<Option<(Self, usize)>, CaptureError> {
        let Some(hdr) = buf.get(..FILE_HEADER_LEN) else {
            return Ok(None);
        };
        let (big_endian, magic) = match (rd_u32(hdr, 0, false), rd_u32(hdr, 0, true)) {
            (Some(m @ (PCAP_MAGIC_MICROS | PCAP_MAGIC_NANOS | PCAP_MAGIC_MODIFIED)), _) => (false, m),
            (_, Some(m @ (PCAP_MAGIC_MICROS | PCAP_MAGIC_NANOS | PCAP_MAGIC_MODIFIED))) => (true, m),
            _ => return Err(CaptureError::malformed(0, "file header: not a pcap magic number")),
        };
        let major = rd_u16(hdr, 4, big_endian).unwrap_or(0);
        let minor = rd_u16(hdr, 6, big_endian).unwrap_or(0);
        if major != 2 {
            return Err(CaptureError::malformed(
                0,
                format!("file header: unsupported pcap version {major}.{minor} (only 2.x exists)"),
            ));
        }
        // The link-type field: low 16 bits are the LINKTYPE_ value, the upper bits carry
        // FCS information that we do not need.
        let network = rd_u32(hdr, 20, big_endian).unwrap_or(0);
        let link = LinkType((network & 0xffff) as u16);
        let d = PcapDecoder {
            big_endian,
            nanos: magic == PCAP_MAGIC_NANOS,
            record_header_len: if magic == PCAP_MAGIC_MODIFIED {
                MODIFIED_RECORD_HEADER_LEN
            } else {
                RECORD_HEADER_LEN
            },
            link,
        };
        Ok(Some((d, FILE_HEADER_LEN)))
    }

    pub fn format(&self) -> Format {
        Format::Pcap {
            big_endian: self.big_endian,
            nanos: self.nanos,
        }
    }

    pub fn step(&mut self, buf: &[u8], offset: u64) -> Result<Step, CaptureError> {
        let hl = self.record_header_len;
        let Some(hdr) = buf.get(..hl) else {
            return Ok(Step::Need(hl));
        };
        let be = self.big_endian;
        let sec = rd_u32(hdr, 0, be).unwrap_or(0);
        let frac = rd_u32(hdr, 4, be).unwrap_or(0);
        let caplen = rd_u32(hdr, 8, be).unwrap_or(0);
        let orig_len = rd_u32(hdr, 12, be).unwrap_or(0);
        if caplen > MAX_PCAP_CAPLEN {
            return Err(CaptureError::malformed(
                offset,
                format!("captured length {caplen} exceeds the {MAX_PCAP_CAPLEN}-byte limit"),
            ));
        }
        // caplen <= 256 KiB, so this cannot overflow.
        let total = hl.saturating_add(caplen as usize);
        if buf.len() < total {
            return Ok(Step::Need(total));
        }
        // Seconds are unsigned (good until 2106); u32::MAX * 1e9 + u32::MAX * 1000 < i64::MAX.
        let frac_nanos = if self.nanos {
            i64::from(frac)
        } else {
            i64::from(frac) * 1000
        };
        let ts_nanos = i64::from(sec) * 1_000_000_000 + frac_nanos;
        Ok(Step::Packet {
            meta: PacketMeta {
                ts_nanos,
                interface: 0,
                link: self.link,
                orig_len,
                data: hl..total,
            },
            consumed: total,
        })
    }
}
