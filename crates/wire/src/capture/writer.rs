//! Writers for classic pcap and pcapng (little-endian). They write straight to `W`; wrap a
//! file in a `BufWriter` for speed.

use super::pcapng::{
    BT_EPB, BT_IDB, BT_SHB, BYTE_ORDER_MAGIC, IF_NAME, IF_TSRESOL, OPT_COMMENT, SHB_USERAPPL, pad4,
};
use super::{LinkType, MAX_PCAP_CAPLEN, MAX_PCAPNG_BLOCK_LEN, PCAP_MAGIC_MICROS, PCAP_MAGIC_NANOS};
use std::fmt;
use std::io::{self, Write};

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// `data` cut to `snaplen` (0 = no limit).
fn snap(data: &[u8], snaplen: u32) -> &[u8] {
    if snaplen == 0 {
        data
    } else {
        data.get(..snaplen as usize).unwrap_or(data)
    }
}

/// Writes a classic pcap file (little-endian, microsecond or nanosecond timestamps).
pub struct PcapWriter<W: Write> {
    w: W,
    snaplen: u32,
    nanos: bool,
}

impl<W: Write> fmt::Debug for PcapWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PcapWriter")
            .field("snaplen", &self.snaplen)
            .field("nanos", &self.nanos)
            .finish()
    }
}

impl<W: Write> PcapWriter<W> {
    /// Writes the 24-byte file header. `snaplen` 0 is written as 262144 (no limit);
    /// otherwise packets longer than `snaplen` are cut to it.
    pub fn new(mut w: W, link: LinkType, snaplen: u32, nanos: bool) -> io::Result<Self> {
        let magic = if nanos {
            PCAP_MAGIC_NANOS
        } else {
            PCAP_MAGIC_MICROS
        };
        let header_snaplen = if snaplen == 0 { MAX_PCAP_CAPLEN } else { snaplen };
        let mut h = [0u8; 24];
        h[0..4].copy_from_slice(&magic.to_le_bytes());
        h[4..6].copy_from_slice(&2u16.to_le_bytes());
        h[6..8].copy_from_slice(&4u16.to_le_bytes());
        // thiszone and sigfigs stay 0.
        h[16..20].copy_from_slice(&header_snaplen.to_le_bytes());
        h[20..24].copy_from_slice(&u32::from(link.0).to_le_bytes());
        w.write_all(&h)?;
        Ok(PcapWriter { w, snaplen, nanos })
    }

    /// Writes one record. `ts_nanos` must be within 1970..2106 (pcap seconds are a `u32`);
    /// `data` is cut to the snap length and may capture at most 262144 bytes.
    pub fn write_packet(&mut self, ts_nanos: i64, orig_len: u32, data: &[u8]) -> io::Result<()> {
        let data = snap(data, self.snaplen);
        let caplen = u32::try_from(data.len())
            .ok()
            .filter(|&c| c <= MAX_PCAP_CAPLEN)
            .ok_or_else(|| {
                invalid(format!(
                    "pcap: {} captured bytes exceed the 262144-byte limit",
                    data.len()
                ))
            })?;
        let secs = u32::try_from(ts_nanos.div_euclid(1_000_000_000)).map_err(|_| {
            invalid(format!(
                "pcap: timestamp {ts_nanos} ns is outside the pcap range (1970 to 2106)"
            ))
        })?;
        let sub = ts_nanos.rem_euclid(1_000_000_000) as u32;
        let frac = if self.nanos { sub } else { sub / 1000 };
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&secs.to_le_bytes());
        h[4..8].copy_from_slice(&frac.to_le_bytes());
        h[8..12].copy_from_slice(&caplen.to_le_bytes());
        h[12..16].copy_from_slice(&orig_len.to_le_bytes());
        self.w.write_all(&h)?;
        self.w.write_all(data)
    }

    /// Flushes and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.w.flush()?;
        Ok(self.w)
    }
}

/// Builds one pcapng option (code, length, value, padding) into `out`.
fn push_option(out: &mut Vec<u8>, code: u16, value: &[u8]) -> io::Result<()> {
    let len = u16::try_from(value.len()).map_err(|_| {
        invalid(format!(
            "pcapng: option {code} is {} bytes, at most 65535 fit",
            value.len()
        ))
    })?;
    out.extend_from_slice(&code.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(value);
    out.resize(pad4(out.len()), 0);
    Ok(())
}

/// Writes a whole block: type, length, `body` (already padded to 4), trailing length.
fn write_block(w: &mut impl Write, btype: u32, body: &[&[u8]]) -> io::Result<()> {
    let body_len: usize = body.iter().map(|b| b.len()).sum();
    let total = body_len
        .checked_add(12)
        .and_then(|t| u32::try_from(t).ok())
        .filter(|&t| t <= MAX_PCAPNG_BLOCK_LEN)
        .ok_or_else(|| {
            invalid(format!(
                "pcapng: a {body_len}-byte block body exceeds the 16 MiB limit"
            ))
        })?;
    w.write_all(&btype.to_le_bytes())?;
    w.write_all(&total.to_le_bytes())?;
    for part in body {
        w.write_all(part)?;
    }
    w.write_all(&total.to_le_bytes())
}

/// Writes a pcapng file: one little-endian section, interfaces with nanosecond timestamps,
/// Enhanced Packet Blocks.
pub struct PcapNgWriter<W: Write> {
    w: W,
    /// Snap length of each interface, by id.
    snaplens: Vec<u32>,
    /// Reused per packet for the options.
    scratch: Vec<u8>,
}

impl<W: Write> fmt::Debug for PcapNgWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PcapNgWriter")
            .field("interfaces", &self.snaplens.len())
            .finish()
    }
}

impl<W: Write> PcapNgWriter<W> {
    /// Writes the Section Header Block (version 1.0, unknown section length,
    /// `shb_userappl` "netvigil").
    pub fn new(mut w: W) -> io::Result<Self> {
        let mut body = Vec::with_capacity(32);
        body.extend_from_slice(&BYTE_ORDER_MAGIC.to_le_bytes());
        body.extend_from_slice(&1u16.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(&(-1i64).to_le_bytes());
        push_option(&mut body, SHB_USERAPPL, b"netvigil")?;
        body.extend_from_slice(&[0; 4]); // opt_endofopt
        write_block(&mut w, BT_SHB, &[&body])?;
        Ok(PcapNgWriter {
            w,
            snaplens: Vec::new(),
            scratch: Vec::new(),
        })
    }

    /// Writes an Interface Description Block (`if_tsresol` = 9, i.e. nanoseconds, and
    /// `if_name` when given) and returns the new interface's id. `snaplen` 0 means no limit;
    /// otherwise packets are cut to it.
    pub fn add_interface(&mut self, link: LinkType, snaplen: u32, name: Option<&str>) -> io::Result<u32> {
        let id =
            u32::try_from(self.snaplens.len()).map_err(|_| invalid("pcapng: too many interfaces".into()))?;
        let mut body = Vec::with_capacity(32);
        body.extend_from_slice(&link.0.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(&snaplen.to_le_bytes());
        if let Some(name) = name {
            push_option(&mut body, IF_NAME, name.as_bytes())?;
        }
        push_option(&mut body, IF_TSRESOL, &[9])?;
        body.extend_from_slice(&[0; 4]); // opt_endofopt
        write_block(&mut self.w, BT_IDB, &[&body])?;
        self.snaplens.push(snaplen);
        Ok(id)
    }

    /// Writes an Enhanced Packet Block on `interface` (an id returned by `add_interface`),
    /// with `opt_comment` when `comment` is given. `ts_nanos` must not be negative.
    pub fn write_packet(
        &mut self,
        interface: u32,
        ts_nanos: i64,
        orig_len: u32,
        data: &[u8],
        comment: Option<&str>,
    ) -> io::Result<()> {
        let snaplen = usize::try_from(interface)
            .ok()
            .and_then(|i| self.snaplens.get(i))
            .copied()
            .ok_or_else(|| {
                invalid(format!(
                    "pcapng: interface {interface} was not added (call add_interface first)"
                ))
            })?;
        let ts = u64::try_from(ts_nanos)
            .map_err(|_| invalid(format!("pcapng: timestamp {ts_nanos} ns is before 1970")))?;
        let data = snap(data, snaplen);
        let caplen = u32::try_from(data.len())
            .map_err(|_| invalid(format!("pcapng: {} captured bytes are too many", data.len())))?;
        let mut fixed = [0u8; 20];
        fixed[0..4].copy_from_slice(&interface.to_le_bytes());
        fixed[4..8].copy_from_slice(&((ts >> 32) as u32).to_le_bytes());
        fixed[8..12].copy_from_slice(&(ts as u32).to_le_bytes());
        fixed[12..16].copy_from_slice(&caplen.to_le_bytes());
        fixed[16..20].copy_from_slice(&orig_len.to_le_bytes());
        let padding = &[0u8; 3][..pad4(data.len()) - data.len()];
        self.scratch.clear();
        if let Some(comment) = comment {
            push_option(&mut self.scratch, OPT_COMMENT, comment.as_bytes())?;
            self.scratch.extend_from_slice(&[0; 4]); // opt_endofopt
        }
        write_block(&mut self.w, BT_EPB, &[&fixed, data, padding, &self.scratch])
    }

    /// Flushes and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.w.flush()?;
        Ok(self.w)
    }
}
