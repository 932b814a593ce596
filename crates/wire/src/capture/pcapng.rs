//! pcapng: a sequence of blocks `type:u32 len:u32 body len:u32`, in sections that each start
//! with a Section Header Block carrying that section's byte order.

use super::decoder::{PacketMeta, Step};
use super::{CaptureError, LinkType, MAX_PCAPNG_BLOCK_LEN, PCAPNG_SHB_BYTES, rd_u16, rd_u32, rd_u64};

pub(crate) const BT_SHB: u32 = 0x0a0d_0d0a;
pub(crate) const BT_IDB: u32 = 1;
pub(crate) const BT_PB: u32 = 2;
pub(crate) const BT_SPB: u32 = 3;
pub(crate) const BT_EPB: u32 = 6;
pub(crate) const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;

pub(crate) const OPT_ENDOFOPT: u16 = 0;
pub(crate) const OPT_COMMENT: u16 = 1;
pub(crate) const SHB_USERAPPL: u16 = 4;
pub(crate) const IF_NAME: u16 = 2;
pub(crate) const IF_TSRESOL: u16 = 9;
pub(crate) const IF_TSOFFSET: u16 = 14;

/// Smallest possible block: type, length, trailing length.
const MIN_BLOCK_LEN: u32 = 12;
/// More interfaces than this in one section is treated as corruption.
const MAX_INTERFACES: usize = 1 << 16;

/// Timestamp units per second, from `if_tsresol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TsResol {
    /// 10^-n seconds.
    Pow10(u8),
    /// 2^-n seconds.
    Pow2(u8),
}

impl TsResol {
    fn from_option(v: u8) -> Self {
        if v & 0x80 == 0 {
            TsResol::Pow10(v)
        } else {
            TsResol::Pow2(v & 0x7f)
        }
    }
}

/// Converts a timestamp in `resol` units plus `offset_secs` to nanoseconds since the epoch,
/// saturating at the `i64` range. Never overflows: 2^64 * 10^9 < 2^94 fits an i128.
pub(crate) fn ts_to_nanos(ts: u64, resol: TsResol, offset_secs: i64) -> i64 {
    let ts = i128::from(ts);
    let ns = match resol {
        TsResol::Pow10(n) if n <= 9 => ts * 10i128.pow(u32::from(9 - n)),
        TsResol::Pow10(n) => match 10i128.checked_pow(u32::from(n - 9)) {
            Some(div) => ts / div,
            None => 0,
        },
        // n <= 127, and shifting an i128 by less than 128 is defined.
        TsResol::Pow2(n) => (ts * 1_000_000_000) >> n.min(127),
    };
    let total = ns + i128::from(offset_secs) * 1_000_000_000;
    i64::try_from(total).unwrap_or(if total < 0 { i64::MIN } else { i64::MAX })
}

#[derive(Clone, Copy, Debug)]
struct Interface {
    link: LinkType,
    snaplen: u32,
    resol: TsResol,
    offset_secs: i64,
}

#[derive(Debug)]
pub(crate) struct NgDecoder {
    big_endian: bool,
    interfaces: Vec<Interface>,
}

/// Calls `f(code, value)` for each option in `opts` until `opt_endofopt` or the end. A
/// truncated option list is tolerated (options are informational, the packet is not).
pub(crate) fn for_each_option(opts: &[u8], be: bool, mut f: impl FnMut(u16, &[u8])) {
    let mut pos = 0usize;
    while let (Some(code), Some(len)) = (rd_u16(opts, pos, be), rd_u16(opts, pos.saturating_add(2), be)) {
        if code == OPT_ENDOFOPT {
            break;
        }
        let start = pos.saturating_add(4);
        let Some(value) = opts.get(start..start.saturating_add(usize::from(len))) else {
            break;
        };
        f(code, value);
        pos = start.saturating_add(pad4(usize::from(len)));
    }
}

/// `n` rounded up to a multiple of 4.
pub(crate) fn pad4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

impl NgDecoder {
    pub fn new() -> Self {
        NgDecoder {
            big_endian: false,
            interfaces: Vec::new(),
        }
    }

    fn interface(&self, id: u32, offset: u64) -> Result<Interface, CaptureError> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.interfaces.get(i))
            .copied()
            .ok_or(CaptureError::UnknownInterface {
                offset,
                interface: id,
            })
    }

    pub fn step(&mut self, buf: &[u8], offset: u64) -> Result<Step, CaptureError> {
        let Some(head) = buf.get(..MIN_BLOCK_LEN as usize) else {
            return Ok(Step::Need(MIN_BLOCK_LEN as usize));
        };
        let is_shb = head.get(..4) == Some(&PCAPNG_SHB_BYTES[..]);
        // A Section Header Block carries its own byte order (its type reads the same both ways).
        let be = if is_shb {
            match rd_u32(head, 8, false) {
                Some(BYTE_ORDER_MAGIC) => false,
                Some(m) if m.swap_bytes() == BYTE_ORDER_MAGIC => true,
                _ => {
                    return Err(CaptureError::malformed(
                        offset,
                        "section header block: byte-order magic is neither 0x1a2b3c4d nor 0x4d3c2b1a",
                    ));
                }
            }
        } else {
            self.big_endian
        };
        let btype = rd_u32(head, 0, be).unwrap_or(0);
        let len = rd_u32(head, 4, be).unwrap_or(0);
        if len < MIN_BLOCK_LEN {
            return Err(CaptureError::malformed(
                offset,
                format!("block type 0x{btype:x}: block length {len} is less than the 12-byte minimum"),
            ));
        }
        if !len.is_multiple_of(4) {
            return Err(CaptureError::malformed(
                offset,
                format!("block type 0x{btype:x}: block length {len} is not a multiple of 4"),
            ));
        }
        if len > MAX_PCAPNG_BLOCK_LEN {
            return Err(CaptureError::malformed(
                offset,
                format!(
                    "block type 0x{btype:x}: block length {len} exceeds the {MAX_PCAPNG_BLOCK_LEN}-byte limit"
                ),
            ));
        }
        let len = len as usize; // <= 16 MiB
        let Some(block) = buf.get(..len) else {
            return Ok(Step::Need(len));
        };
        let trailer = rd_u32(block, len - 4, be).unwrap_or(0);
        if trailer != len as u32 {
            return Err(CaptureError::malformed(
                offset,
                format!(
                    "block type 0x{btype:x}: trailing block length {trailer} does not match the leading length {len}"
                ),
            ));
        }
        // The block body, between the 8-byte header and the 4-byte trailer.
        let body = block.get(8..len - 4).unwrap_or(&[]);
        let too_short = |name: &str, min: usize| {
            CaptureError::malformed(
                offset,
                format!(
                    "{name}: block length {len} is too short (at least {} bytes needed)",
                    min + 12
                ),
            )
        };
        match btype {
            BT_SHB => {
                if body.len() < 16 {
                    return Err(too_short("section header block", 16));
                }
                let major = rd_u16(body, 4, be).unwrap_or(0);
                let minor = rd_u16(body, 6, be).unwrap_or(0);
                if major != 1 {
                    return Err(CaptureError::malformed(
                        offset,
                        format!("section header block: unsupported pcapng version {major}.{minor}"),
                    ));
                }
                // A new section: new byte order, no interfaces yet.
                self.big_endian = be;
                self.interfaces.clear();
                Ok(Step::Skip { consumed: len })
            }
            BT_IDB => {
                if body.len() < 8 {
                    return Err(too_short("interface description block", 8));
                }
                if self.interfaces.len() >= MAX_INTERFACES {
                    return Err(CaptureError::malformed(
                        offset,
                        format!("more than {MAX_INTERFACES} interfaces in one section"),
                    ));
                }
                let mut iface = Interface {
                    link: LinkType(rd_u16(body, 0, be).unwrap_or(0)),
                    snaplen: rd_u32(body, 4, be).unwrap_or(0),
                    resol: TsResol::Pow10(6),
                    offset_secs: 0,
                };
                for_each_option(body.get(8..).unwrap_or(&[]), be, |code, value| match code {
                    IF_TSRESOL => {
                        if let Some(&v) = value.first() {
                            iface.resol = TsResol::from_option(v);
                        }
                    }
                    IF_TSOFFSET => {
                        if let Some(v) = rd_u64(value, 0, be) {
                            iface.offset_secs = v as i64;
                        }
                    }
                    _ => {}
                });
                self.interfaces.push(iface);
                Ok(Step::Skip { consumed: len })
            }
            BT_EPB | BT_PB => {
                if body.len() < 20 {
                    let name = if btype == BT_EPB {
                        "enhanced packet block"
                    } else {
                        "packet block"
                    };
                    return Err(too_short(name, 20));
                }
                let id = if btype == BT_EPB {
                    rd_u32(body, 0, be).unwrap_or(0)
                } else {
                    // Obsolete Packet Block: u16 interface id, u16 drops count.
                    u32::from(rd_u16(body, 0, be).unwrap_or(0))
                };
                let ts_hi = rd_u32(body, 4, be).unwrap_or(0);
                let ts_lo = rd_u32(body, 8, be).unwrap_or(0);
                let caplen = rd_u32(body, 12, be).unwrap_or(0);
                let orig_len = rd_u32(body, 16, be).unwrap_or(0);
                let room = body.len() - 20;
                if caplen as usize > room {
                    return Err(CaptureError::malformed(
                        offset,
                        format!(
                            "packet block: captured length {caplen} does not fit in the {len}-byte block"
                        ),
                    ));
                }
                let iface = self.interface(id, offset)?;
                let ts = (u64::from(ts_hi) << 32) | u64::from(ts_lo);
                let start = 28usize;
                Ok(Step::Packet {
                    meta: PacketMeta {
                        ts_nanos: ts_to_nanos(ts, iface.resol, iface.offset_secs),
                        interface: id,
                        link: iface.link,
                        orig_len,
                        data: start..start + caplen as usize,
                    },
                    consumed: len,
                })
            }
            BT_SPB => {
                if body.len() < 4 {
                    return Err(too_short("simple packet block", 4));
                }
                let iface = self.interface(0, offset)?;
                let orig_len = rd_u32(body, 0, be).unwrap_or(0);
                let mut caplen = (body.len() - 4).min(orig_len as usize);
                if iface.snaplen != 0 {
                    caplen = caplen.min(iface.snaplen as usize);
                }
                Ok(Step::Packet {
                    // A Simple Packet Block has no timestamp.
                    meta: PacketMeta {
                        ts_nanos: 0,
                        interface: 0,
                        link: iface.link,
                        orig_len,
                        data: 12..12 + caplen,
                    },
                    consumed: len,
                })
            }
            // NRB, ISB, DSB, custom, local-use and unknown blocks.
            _ => Ok(Step::Skip { consumed: len }),
        }
    }
}
