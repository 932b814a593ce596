//! Live capture with `AF_PACKET` sockets and a `TPACKET_V3` memory-mapped receive ring.
//!
//! [`AfPacket::open`] makes one socket per named interface (or one socket bound to ifindex 0
//! for [`Interfaces::All`]), maps a ring of [`RingConfig::block_count`] blocks of
//! [`RingConfig::block_size`] bytes shared with the kernel, and [`AfPacket::next_batch`] hands
//! the frames of every block the kernel has retired to a callback, without copying, then gives
//! the block back. A block is retired when it is full or after
//! [`RingConfig::block_timeout_ms`], so a quiet link still delivers its few frames promptly.
//!
//! The ring is memory the kernel writes; it is read defensively: every offset in a block is
//! checked against the block before a slice is made (see `walk_block`), and a corrupt block is
//! reported as [`CaptureError::CorruptRing`] and given back, never read out of bounds.
//!
//! Sockets are created with protocol 0 (they receive nothing) and only start receiving when
//! they are bound, after the filter and the ring are in place: no frame from another interface
//! or one that the filter rejects can slip into the ring while the socket is being set up.
//!
//! Frames are delivered with the link type of their device ([`link_type_for_arphrd`]):
//! Ethernet and loopback as [`LinkType::ETHERNET`], IP-only devices (tun, WireGuard, GRE, PPP,
//! SIT) as [`LinkType::RAW`]. Frames of devices netvigil cannot decode (802.11 monitor mode,
//! CAN, InfiniBand, ...) are skipped, and a raw-IP frame whose first nibble is neither 4 nor 6
//! too. VLAN tags that the driver stripped into the packet metadata are not re-inserted.
//!
//! Opening needs `CAP_NET_RAW` (see [`CaptureOpenError::NeedsPrivilege`]); nothing is dropped
//! here: the caller drops capabilities once the capture is open.

use std::ffi::CStr;
use std::fmt;
use std::io;
use std::mem::{offset_of, size_of};
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use wire::capture::LinkType;

// ---------------------------------------------------------------------------------------------
// Kernel ABI constants and layouts (uapi/linux/if_packet.h, if_arp.h, filter.h)
// ---------------------------------------------------------------------------------------------

const TPACKET_V3: libc::c_int = 2;
const ETH_P_ALL: u16 = 0x0003;

/// `sizeof(struct tpacket_block_desc)`: version, offset_to_priv, then `tpacket_hdr_v1`.
const BLOCK_HDR_LEN: usize = size_of::<libc::tpacket_block_desc>();
const BLK_STATUS: usize = offset_of!(libc::tpacket_block_desc, hdr);
const BLK_NUM_PKTS: usize = BLK_STATUS + offset_of!(libc::tpacket_hdr_v1, num_pkts);
const BLK_FIRST_PKT: usize = BLK_STATUS + offset_of!(libc::tpacket_hdr_v1, offset_to_first_pkt);

/// `TPACKET_ALIGN(sizeof(struct tpacket3_hdr))`: where the `sockaddr_ll` starts.
const PKT_SLL: usize = (size_of::<libc::tpacket3_hdr>() + 15) & !15;
/// `TPACKET3_HDRLEN`: the frame header and its `sockaddr_ll`; frame data never starts before.
const PKT_HDR_LEN: usize = PKT_SLL + size_of::<libc::sockaddr_ll>();
const PKT_NEXT: usize = offset_of!(libc::tpacket3_hdr, tp_next_offset);
const PKT_SEC: usize = offset_of!(libc::tpacket3_hdr, tp_sec);
const PKT_NSEC: usize = offset_of!(libc::tpacket3_hdr, tp_nsec);
const PKT_SNAPLEN: usize = offset_of!(libc::tpacket3_hdr, tp_snaplen);
const PKT_LEN: usize = offset_of!(libc::tpacket3_hdr, tp_len);
const PKT_MAC: usize = offset_of!(libc::tpacket3_hdr, tp_mac);
const SLL_IFINDEX: usize = PKT_SLL + offset_of!(libc::sockaddr_ll, sll_ifindex);
const SLL_HATYPE: usize = PKT_SLL + offset_of!(libc::sockaddr_ll, sll_hatype);
const SLL_PKTTYPE: usize = PKT_SLL + offset_of!(libc::sockaddr_ll, sll_pkttype);

// The layout the walker (and its tests) rely on, checked against libc at compile time.
const _: () = {
    assert!(BLOCK_HDR_LEN == 48);
    assert!(BLK_STATUS == 8 && BLK_NUM_PKTS == 12 && BLK_FIRST_PKT == 16);
    assert!(PKT_SLL == 48 && PKT_HDR_LEN == 68);
    assert!(PKT_NEXT == 0 && PKT_SEC == 4 && PKT_NSEC == 8 && PKT_SNAPLEN == 12);
    assert!(PKT_LEN == 16 && PKT_MAC == 24);
    assert!(SLL_IFINDEX == 52 && SLL_HATYPE == 56 && SLL_PKTTYPE == 58);
};

const ARPHRD_ETHER: u16 = 1;
const ARPHRD_PPP: u16 = 512;
const ARPHRD_RAWIP: u16 = 519;
const ARPHRD_TUNNEL: u16 = 768;
const ARPHRD_TUNNEL6: u16 = 769;
const ARPHRD_LOOPBACK: u16 = 772;
const ARPHRD_SIT: u16 = 776;
const ARPHRD_IPGRE: u16 = 778;
const ARPHRD_IP6GRE: u16 = 823;
const ARPHRD_NONE: u16 = 0xfffe;

/// The link type frames of a device with `ARPHRD_*` type `hatype` are delivered with, or
/// `None` when netvigil cannot decode that kind of device (its frames are skipped).
///
/// - `ARPHRD_ETHER` (1) and `ARPHRD_LOOPBACK` (772, a zeroed Ethernet header): Ethernet;
/// - `ARPHRD_NONE` (tun, WireGuard), `ARPHRD_PPP`, `ARPHRD_RAWIP`, `ARPHRD_TUNNEL`/`TUNNEL6`,
///   `ARPHRD_SIT`, `ARPHRD_IPGRE`/`IP6GRE`: raw IP ([`LinkType::RAW`]); each frame must start
///   with version nibble 4 or 6 to be delivered;
/// - anything else (802.11 radiotap, CAN, InfiniBand, ...): `None`.
pub const fn link_type_for_arphrd(hatype: u16) -> Option<LinkType> {
    match hatype {
        ARPHRD_ETHER | ARPHRD_LOOPBACK => Some(LinkType::ETHERNET),
        ARPHRD_NONE | ARPHRD_PPP | ARPHRD_RAWIP | ARPHRD_TUNNEL | ARPHRD_TUNNEL6 | ARPHRD_SIT
        | ARPHRD_IPGRE | ARPHRD_IP6GRE => Some(LinkType::RAW),
        _ => None,
    }
}

/// The link type of one frame: the device's, and for raw IP only when the version nibble says
/// IPv4 or IPv6.
fn frame_link(hatype: u16, data: &[u8]) -> Option<LinkType> {
    let link = link_type_for_arphrd(hatype)?;
    if link == LinkType::RAW && !matches!(data.first().map(|b| b >> 4), Some(4 | 6)) {
        return None;
    }
    Some(link)
}

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// Geometry and options of the receive ring (one ring per socket).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingConfig {
    /// Bytes per block; a power of two and a multiple of the page size. Default 1 MiB.
    /// A frame longer than a block is truncated to fit.
    pub block_size: usize,
    /// Blocks in the ring. Default 8 (8 MiB per socket).
    pub block_count: usize,
    /// `tp_frame_size`: a multiple of 16, at least 68 and at most `block_size`. Default 2048.
    /// With `TPACKET_V3` frames are packed by their real size; this only sizes `tp_frame_nr`.
    pub frame_size: usize,
    /// `tp_retire_blk_tov`: the kernel hands over a block that is not full after this many
    /// milliseconds. Default 50; 0 lets the kernel choose.
    pub block_timeout_ms: u32,
    /// Bytes kept of each frame; 0 keeps whole frames.
    pub snaplen: u32,
    /// Put each named interface in promiscuous mode while the capture is open. Ignored for
    /// [`Interfaces::All`] (as libpcap does for "any").
    pub promiscuous: bool,
}

impl Default for RingConfig {
    fn default() -> Self {
        RingConfig {
            block_size: 1 << 20,
            block_count: 8,
            frame_size: 2048,
            block_timeout_ms: 50,
            snaplen: 0,
            promiscuous: false,
        }
    }
}

impl RingConfig {
    fn check(&self, page_size: usize) -> Result<(), String> {
        let RingConfig {
            block_size,
            block_count,
            frame_size,
            ..
        } = *self;
        if !block_size.is_power_of_two() || block_size < page_size {
            return Err(format!(
                "block_size {block_size} must be a power of two and at least the page size \
                 ({page_size} bytes); try {}",
                (1usize << 20).max(page_size)
            ));
        }
        if block_size > u32::MAX as usize / 2 {
            return Err(format!(
                "block_size {block_size} is too large; try 1 MiB (1048576)"
            ));
        }
        if block_count == 0 || block_count > 1 << 16 {
            return Err(format!(
                "block_count {block_count} must be between 1 and 65536; try 8"
            ));
        }
        if block_size.checked_mul(block_count).is_none_or(|t| t > 1 << 34) {
            return Err(format!(
                "the ring of {block_count} blocks of {block_size} bytes is larger than 16 GiB; \
                 use fewer or smaller blocks"
            ));
        }
        if frame_size < PKT_HDR_LEN || !frame_size.is_multiple_of(16) || frame_size > block_size {
            return Err(format!(
                "frame_size {frame_size} must be a multiple of 16 between {} and block_size \
                 ({block_size}); try 2048",
                PKT_HDR_LEN.next_multiple_of(16)
            ));
        }
        Ok(())
    }
}

/// Which interfaces to capture on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Interfaces {
    /// Every interface of the network namespace, including those that appear later (one socket
    /// bound to ifindex 0). Frames sent and received on loopback are seen twice (outgoing and
    /// incoming), as with `tcpdump -i any`.
    All,
    /// These interfaces, by name (one socket each).
    Named(Vec<String>),
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Why a live capture could not be opened. Each variant names the interface (or "all
/// interfaces") and says what to do.
#[derive(Debug)]
pub enum CaptureOpenError {
    /// `socket(AF_PACKET)` was refused: the process lacks `CAP_NET_RAW`.
    NeedsPrivilege { iface: String },
    /// No interface has that name in this network namespace. `available` lists those that do.
    NoSuchInterface { name: String, available: Vec<String> },
    /// The interface exists but its frames cannot be decoded (see [`link_type_for_arphrd`]).
    UnsupportedLink { iface: String, arphrd: u16 },
    /// The configuration cannot work; `what` says why and what to use instead.
    BadConfig { what: String },
    /// The kernel could not allocate or map the ring (usually memory limits).
    RingMemory {
        iface: String,
        bytes: usize,
        source: io::Error,
    },
    /// The kernel rejected the capture filter program.
    FilterRejected { iface: String, source: io::Error },
    /// Another system call failed; `op` names it.
    Io {
        iface: String,
        op: &'static str,
        source: io::Error,
    },
}

impl fmt::Display for CaptureOpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaptureOpenError::NeedsPrivilege { iface } => write!(
                f,
                "capturing on {iface} needs CAP_NET_RAW: run `sudo setcap \
                 cap_net_raw,cap_net_admin=eip $(which netvigil)` or run as root"
            ),
            CaptureOpenError::NoSuchInterface { name, available } => {
                write!(
                    f,
                    "cannot capture on {name}: there is no interface with that name"
                )?;
                if available.is_empty() {
                    f.write_str("; check the name with `ip link`")
                } else {
                    write!(f, "; available: {} (see `ip link`)", available.join(", "))
                }
            }
            CaptureOpenError::UnsupportedLink { iface, arphrd } => write!(
                f,
                "cannot capture on {iface}: its link type (ARPHRD {arphrd}) is not one netvigil \
                 decodes (Ethernet, loopback or raw IP); capture on another interface"
            ),
            CaptureOpenError::BadConfig { what } => write!(f, "invalid capture settings: {what}"),
            CaptureOpenError::RingMemory { iface, bytes, source } => write!(
                f,
                "cannot set up the {} KiB capture ring for {iface}: {source}; use fewer or \
                 smaller blocks, or raise the memory limits (`ulimit -l`, vm.max_map_count)",
                bytes / 1024
            ),
            CaptureOpenError::FilterRejected { iface, source } => write!(
                f,
                "the kernel rejected the capture filter for {iface}: {source}; simplify the \
                 filter or capture without one"
            ),
            CaptureOpenError::Io { iface, op, source } => {
                write!(f, "cannot capture on {iface}: {op} failed: {source}")
            }
        }
    }
}

impl std::error::Error for CaptureOpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CaptureOpenError::RingMemory { source, .. }
            | CaptureOpenError::FilterRejected { source, .. }
            | CaptureOpenError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Why reading a live capture failed. The capture stays usable: the next call carries on.
#[derive(Debug)]
pub enum CaptureError {
    /// `poll(2)` on the capture sockets failed.
    Poll(io::Error),
    /// The interface went down (or its socket reported `ENETDOWN`); capture resumes when it
    /// comes back up.
    InterfaceDown { iface: String },
    /// The socket reported an error.
    Socket { iface: String, source: io::Error },
    /// A ring block did not hold together (an offset or length pointing outside the block).
    /// The block was skipped and given back to the kernel; `offset` is within the block.
    CorruptRing {
        iface: String,
        block: usize,
        offset: usize,
        what: &'static str,
    },
    /// `getsockopt(PACKET_STATISTICS)` failed.
    Stats { iface: String, source: io::Error },
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaptureError::Poll(e) => write!(f, "waiting for captured frames failed: {e}"),
            CaptureError::InterfaceDown { iface } => write!(
                f,
                "{iface} is down; capture resumes when it is up again (`ip link set {iface} up`)"
            ),
            CaptureError::Socket { iface, source } => {
                write!(f, "the capture socket for {iface} reported an error: {source}")
            }
            CaptureError::CorruptRing {
                iface,
                block,
                offset,
                what,
            } => write!(
                f,
                "capture ring of {iface}, block {block}, byte {offset}: {what}; the block was \
                 skipped (please report this, with the kernel version)"
            ),
            CaptureError::Stats { iface, source } => {
                write!(f, "cannot read the capture statistics of {iface}: {source}")
            }
        }
    }
}

impl std::error::Error for CaptureError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CaptureError::Poll(e) => Some(e),
            CaptureError::Socket { source, .. } | CaptureError::Stats { source, .. } => Some(source),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Frames and statistics
// ---------------------------------------------------------------------------------------------

/// One captured frame, borrowed from the ring for the duration of the callback.
#[derive(Clone, Copy, Debug)]
pub struct LiveFrame<'a> {
    /// Nanoseconds since the Unix epoch (kernel receive time).
    pub ts_nanos: i64,
    /// The interface the frame was received or sent on.
    pub ifindex: u32,
    pub link: LinkType,
    /// Length on the wire; `data` is shorter when cut by the snap length or the block size.
    pub orig_len: u32,
    pub data: &'a [u8],
    /// Sent by this host (`PACKET_OUTGOING`), not received.
    pub outgoing: bool,
    /// Seen on a loopback device, where every frame shows up twice (sent and received): count
    /// only one copy, as libpcap does by dropping the outgoing one.
    pub loopback: bool,
}

/// Kernel counters (`PACKET_STATISTICS`), summed over the capture's sockets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Frames that passed the filter since the last call, including the dropped ones (the
    /// kernel adds `tp_drops` into `tp_packets`).
    pub packets: u64,
    /// Frames dropped since the last call because the ring was full.
    pub drops: u64,
    /// Times the ring was found full (the queue "froze") since the last call.
    pub freeze_q: u64,
    /// `packets` since the capture was opened.
    pub total_packets: u64,
    /// `drops` since the capture was opened.
    pub total_drops: u64,
}

// ---------------------------------------------------------------------------------------------
// The block walker (pure; tested on hand-made blocks)
// ---------------------------------------------------------------------------------------------

/// One frame as the kernel laid it out in a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RawFrame<'a> {
    ts_nanos: i64,
    orig_len: u32,
    ifindex: u32,
    hatype: u16,
    pkttype: u8,
    data: &'a [u8],
}

/// A block whose header or frame chain points outside it. `offset` is within the block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct BlockCorrupt {
    offset: usize,
    what: &'static str,
}

fn rd_u16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(
        b.get(off..off.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn rd_u32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(
        b.get(off..off.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// Calls `f` for each frame of a retired `TPACKET_V3` block (the block header's status is not
/// looked at: the caller owns the block). Returns how many frames were passed to `f`.
///
/// Every offset is checked against `block` before use: a frame header must lie inside the
/// block after the block header, its data after its header and inside the block, and each
/// `tp_next_offset` must move forward by at least a frame header. On the first violation the
/// frames before it have been delivered and the violation is returned.
fn walk_block<'a>(block: &'a [u8], mut f: impl FnMut(RawFrame<'a>)) -> Result<usize, BlockCorrupt> {
    let corrupt = |offset, what| Err(BlockCorrupt { offset, what });
    if block.len() < BLOCK_HDR_LEN {
        return corrupt(0, "the block is shorter than its header");
    }
    let (Some(num_pkts), Some(first)) = (rd_u32(block, BLK_NUM_PKTS), rd_u32(block, BLK_FIRST_PKT)) else {
        return corrupt(0, "the block is shorter than its header");
    };
    if num_pkts == 0 {
        return Ok(0);
    }
    let mut off = first as usize;
    if off < BLOCK_HDR_LEN {
        return corrupt(BLK_FIRST_PKT, "the first frame overlaps the block header");
    }
    for i in 0..num_pkts {
        let hdr_end = off.checked_add(PKT_HDR_LEN);
        let Some(hdr) = hdr_end.and_then(|end| block.get(off..end)) else {
            return corrupt(off, "a frame header extends past the end of the block");
        };
        let field32 = |at| rd_u32(hdr, at).unwrap_or(0);
        let mac = usize::from(rd_u16(hdr, PKT_MAC).unwrap_or(0));
        let snaplen = field32(PKT_SNAPLEN) as usize;
        if mac < PKT_HDR_LEN {
            return corrupt(off + PKT_MAC, "frame data overlaps its header (tp_mac too small)");
        }
        let start = off + mac;
        let Some(data) = start.checked_add(snaplen).and_then(|end| block.get(start..end)) else {
            return corrupt(off + PKT_SNAPLEN, "frame data extends past the end of the block");
        };
        f(RawFrame {
            ts_nanos: i64::from(field32(PKT_SEC)) * 1_000_000_000 + i64::from(field32(PKT_NSEC)),
            orig_len: field32(PKT_LEN),
            ifindex: field32(SLL_IFINDEX),
            hatype: rd_u16(hdr, SLL_HATYPE).unwrap_or(0),
            pkttype: hdr.get(SLL_PKTTYPE).copied().unwrap_or(0),
            data,
        });
        if i + 1 < num_pkts {
            let next = field32(PKT_NEXT) as usize;
            if next < PKT_HDR_LEN {
                return corrupt(off + PKT_NEXT, "tp_next_offset does not move past the frame");
            }
            off += next; // off < block.len() and next <= u32::MAX: no overflow on 64-bit.
        }
    }
    Ok(num_pkts as usize)
}

// ---------------------------------------------------------------------------------------------
// Sockets, rings
// ---------------------------------------------------------------------------------------------

/// The mapped ring of one socket, unmapped on drop.
struct Ring {
    base: NonNull<u8>,
    block_size: usize,
    block_count: usize,
    /// The next block to look at (the kernel fills blocks in order).
    next: usize,
}

// SAFETY: the mapping is owned by `Ring` alone (no aliasing `Ring`), it is plain shared memory
// with no thread affinity, and every access goes through `&mut self` methods of `AfPacket`.
unsafe impl Send for Ring {}

impl Ring {
    fn len(&self) -> usize {
        self.block_size * self.block_count
    }

    /// `block_status` of block `i` (< block_count), as an atomic shared with the kernel.
    fn status(&self, i: usize) -> &AtomicU32 {
        debug_assert!(i < self.block_count);
        // SAFETY: block `i` starts `i * block_size` bytes into the mapping of
        // `block_size * block_count` bytes, which lives as long as `self`; `block_status` is a
        // u32 at offset 8 of the page-aligned block, so the pointer is in bounds and 4-aligned.
        // The word is only accessed atomically from Rust (the kernel writes it with barriers
        // on its side, as libpcap relies on too).
        unsafe { AtomicU32::from_ptr(self.base.as_ptr().add(i * self.block_size + BLK_STATUS).cast()) }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: `base` and `len()` are exactly what mmap returned and was given; no slice
        // into the ring outlives the `next_batch` call that made it.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len());
        }
    }
}

struct RingSocket {
    /// Declared before `fd`: unmapped before the socket is closed.
    ring: Ring,
    fd: OwnedFd,
    /// For messages: the interface name or "all interfaces".
    label: String,
}

/// One `AF_PACKET` socket that is not bound yet (it receives nothing).
fn packet_socket(label: &str) -> Result<OwnedFd, CaptureOpenError> {
    // SAFETY: plain system call with constant arguments; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => CaptureOpenError::NeedsPrivilege {
                iface: label.to_owned(),
            },
            _ => CaptureOpenError::Io {
                iface: label.to_owned(),
                op: "socket(AF_PACKET)",
                source: e,
            },
        });
    }
    // SAFETY: `fd` was just returned by socket() and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, val: &T) -> io::Result<()> {
    // SAFETY: `val` points to a live `T` of `size_of::<T>()` bytes for the duration of the call.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (val as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `struct ifreq` with a name; the name must be shorter than `IFNAMSIZ` and free of NULs.
fn ifreq_for(name: &str) -> Option<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['\0', '/']) {
        return None;
    }
    // SAFETY: `ifreq` is plain old data (integers, arrays and a union of such); all zeroes is
    // a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    Some(req)
}

fn ioctl_ifreq(fd: &OwnedFd, request: libc::Ioctl, req: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: SIOCGIF* requests read the name from and write one union member into the
    // `ifreq` that `req` points to, which is valid and exclusively borrowed for the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), request, req as *mut libc::ifreq) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// ifindex and `ARPHRD_*` type of `name`, looked up through `fd` (so in the network namespace
/// the socket belongs to, which is that of the calling thread at creation).
fn lookup_interface(fd: &OwnedFd, name: &str) -> Result<(u32, u16), Option<io::Error>> {
    let mut req = ifreq_for(name).ok_or(None)?;
    ioctl_ifreq(fd, libc::SIOCGIFINDEX, &mut req).map_err(|e| match e.raw_os_error() {
        Some(libc::ENODEV) => None,
        _ => Some(e),
    })?;
    // SAFETY: SIOCGIFINDEX succeeded, so the kernel wrote `ifru_ifindex`.
    let ifindex = unsafe { req.ifr_ifru.ifru_ifindex } as u32;
    ioctl_ifreq(fd, libc::SIOCGIFHWADDR, &mut req).map_err(Some)?;
    // SAFETY: SIOCGIFHWADDR succeeded, so the kernel wrote `ifru_hwaddr`.
    let hatype = unsafe { req.ifr_ifru.ifru_hwaddr.sa_family };
    Ok((ifindex, hatype))
}

/// The name of interface `ifindex` in the calling thread's network namespace
/// (`if_indextoname(3)`), e.g. for a frame of an [`Interfaces::All`] capture on an interface
/// that appeared after the capture opened. `None` when no interface has that index (any more).
pub fn interface_name(ifindex: u32) -> Option<String> {
    if ifindex == 0 {
        return None;
    }
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` has IF_NAMESIZE bytes, the size if_indextoname requires; a null result
    // (no such interface) is checked before the buffer is read.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success if_indextoname wrote a NUL-terminated name into `buf`.
    let name = unsafe { CStr::from_ptr(buf.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

/// Interfaces of the calling thread's network namespace (netlink, via `if_nameindex(3)`).
fn namespace_interfaces() -> Vec<(String, u32)> {
    let mut out = Vec::new();
    // SAFETY: if_nameindex takes no arguments; a null result (failure) is checked.
    let list = unsafe { libc::if_nameindex() };
    if list.is_null() {
        return out;
    }
    let mut p = list;
    loop {
        // SAFETY: `list` is an array terminated by an entry with index 0 and a null name; we
        // stop at that entry, so `p` stays within the array.
        let entry = unsafe { &*p };
        if entry.if_index == 0 || entry.if_name.is_null() {
            break;
        }
        // SAFETY: `if_name` is a NUL-terminated string owned by the list, alive until freed.
        let name = unsafe { CStr::from_ptr(entry.if_name) };
        out.push((name.to_string_lossy().into_owned(), entry.if_index));
        // SAFETY: the current entry is not the terminator, so the next one exists.
        p = unsafe { p.add(1) };
    }
    // SAFETY: `list` came from if_nameindex and is freed once; no borrow of it remains.
    unsafe { libc::if_freenameindex(list) };
    out.sort_by_key(|&(_, i)| i);
    out
}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as usize } else { 4096 }
}

impl RingSocket {
    /// Version, filter, ring and mapping for `fd`, then bind to `ifindex` (0: all).
    fn setup(
        fd: OwnedFd,
        label: &str,
        ifindex: u32,
        cfg: &RingConfig,
        program: Option<&[libc::sock_filter]>,
    ) -> Result<Self, CaptureOpenError> {
        let io_err = |op, source| CaptureOpenError::Io {
            iface: label.to_owned(),
            op,
            source,
        };
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_VERSION, &TPACKET_V3).map_err(|e| {
            io_err(
                "setsockopt(PACKET_VERSION, TPACKET_V3) (kernel 3.2 or later needed)",
                e,
            )
        })?;
        if let Some(program) = program {
            let prog = libc::sock_fprog {
                len: program.len() as u16, // checked against BPF_MAXINSNS by the caller
                filter: program.as_ptr().cast_mut(),
            };
            setsockopt(&fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog).map_err(|source| {
                CaptureOpenError::FilterRejected {
                    iface: label.to_owned(),
                    source,
                }
            })?;
        }
        let bytes = cfg.block_size * cfg.block_count;
        let ring_err = |source| CaptureOpenError::RingMemory {
            iface: label.to_owned(),
            bytes,
            source,
        };
        let req = libc::tpacket_req3 {
            tp_block_size: cfg.block_size as u32,
            tp_block_nr: cfg.block_count as u32,
            tp_frame_size: cfg.frame_size as u32,
            tp_frame_nr: (bytes / cfg.frame_size) as u32,
            tp_retire_blk_tov: cfg.block_timeout_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &req).map_err(|e| {
            match e.raw_os_error() {
                Some(libc::ENOMEM) => ring_err(e),
                _ => io_err("setsockopt(PACKET_RX_RING)", e),
            }
        })?;
        // SAFETY: a fresh shared mapping of the ring the kernel just allocated for `fd`, of
        // exactly its size; nothing else is mapped at the returned address. (No MAP_LOCKED: it
        // needs CAP_IPC_LOCK or a large RLIMIT_MEMLOCK; the ring pages are kernel-pinned.)
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(ring_err(io::Error::last_os_error()));
        }
        let ring = Ring {
            base: NonNull::new(base.cast())
                .ok_or_else(|| ring_err(io::Error::other("mmap returned null")))?,
            block_size: cfg.block_size,
            block_count: cfg.block_count,
            next: 0,
        };
        // SAFETY: sockaddr_ll is plain old data; all zeroes is valid.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL.to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: `sll` is a valid sockaddr_ll and its exact size is passed.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const sll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io_err("bind", io::Error::last_os_error()));
        }
        if cfg.promiscuous && ifindex != 0 {
            let mreq = libc::packet_mreq {
                mr_ifindex: ifindex as i32,
                mr_type: libc::PACKET_MR_PROMISC as u16,
                mr_alen: 0,
                mr_address: [0; 8],
            };
            setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq)
                .map_err(|e| io_err("setsockopt(PACKET_ADD_MEMBERSHIP, promiscuous)", e))?;
        }
        Ok(RingSocket {
            ring,
            fd,
            label: label.to_owned(),
        })
    }

    /// Hands the frames of every retired block (at most one pass over the ring) to `f`.
    fn drain(&mut self, f: &mut impl FnMut(&LiveFrame<'_>)) -> Result<usize, CaptureError> {
        let mut delivered = 0;
        for _ in 0..self.ring.block_count {
            let i = self.ring.next;
            let status = self.ring.status(i);
            if status.load(Ordering::Acquire) & libc::TP_STATUS_USER == 0 {
                break;
            }
            let walked = {
                // SAFETY: block `i` lies inside the mapping (see `Ring::status`) and its status
                // says TP_STATUS_USER (loaded with Acquire above): the kernel does not write it
                // until we store TP_STATUS_KERNEL below, after this slice is gone.
                let block = unsafe {
                    std::slice::from_raw_parts(
                        self.ring.base.as_ptr().add(i * self.ring.block_size).cast_const(),
                        self.ring.block_size,
                    )
                };
                walk_block(block, |raw| {
                    let Some(link) = frame_link(raw.hatype, raw.data) else {
                        return;
                    };
                    delivered += 1;
                    f(&LiveFrame {
                        ts_nanos: raw.ts_nanos,
                        ifindex: raw.ifindex,
                        link,
                        orig_len: raw.orig_len,
                        data: raw.data,
                        outgoing: raw.pkttype == libc::PACKET_OUTGOING,
                        loopback: raw.hatype == ARPHRD_LOOPBACK,
                    });
                })
            };
            // Give the block back; Release orders our reads of it before the kernel's reuse.
            self.ring
                .status(i)
                .store(libc::TP_STATUS_KERNEL, Ordering::Release);
            self.ring.next = (i + 1) % self.ring.block_count;
            if let Err(c) = walked {
                return Err(CaptureError::CorruptRing {
                    iface: self.label.clone(),
                    block: i,
                    offset: c.offset,
                    what: c.what,
                });
            }
        }
        Ok(delivered)
    }

    fn socket_error(&self) -> CaptureError {
        let mut err: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `err` and `len` are valid for writes of the sizes given.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&raw mut err).cast(),
                &mut len,
            )
        };
        let source = if r != 0 {
            io::Error::last_os_error()
        } else {
            io::Error::from_raw_os_error(err)
        };
        match source.raw_os_error() {
            Some(libc::ENETDOWN | libc::ENXIO) => CaptureError::InterfaceDown {
                iface: self.label.clone(),
            },
            _ => CaptureError::Socket {
                iface: self.label.clone(),
                source,
            },
        }
    }

    fn stats(&self) -> Result<libc::tpacket_stats_v3, CaptureError> {
        let mut st = libc::tpacket_stats_v3 {
            tp_packets: 0,
            tp_drops: 0,
            tp_freeze_q_cnt: 0,
        };
        let mut len = size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
        // SAFETY: `st` and `len` are valid for writes; the kernel writes at most `len` bytes.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&raw mut st).cast(),
                &mut len,
            )
        };
        if r != 0 {
            return Err(CaptureError::Stats {
                iface: self.label.clone(),
                source: io::Error::last_os_error(),
            });
        }
        Ok(st)
    }
}

/// Largest classic BPF program the kernel accepts (`BPF_MAXINSNS`).
const BPF_MAXINSNS: usize = 4096;

/// The program to attach: `filter` with its accept lengths capped at `snaplen`, or only
/// `ret #snaplen` when there is no filter but a snap length.
fn effective_program(
    filter: Option<&[libc::sock_filter]>,
    snaplen: u32,
) -> Result<Option<Vec<libc::sock_filter>>, CaptureOpenError> {
    let mut program = match filter {
        None if snaplen == 0 => return Ok(None),
        None => vec![stmt(RET_K, snaplen)],
        Some(p) if p.is_empty() || p.len() > BPF_MAXINSNS => {
            return Err(CaptureOpenError::BadConfig {
                what: format!(
                    "the capture filter has {} instructions; it needs between 1 and {BPF_MAXINSNS}",
                    p.len()
                ),
            });
        }
        Some(p) => p.to_vec(),
    };
    if snaplen != 0 {
        for ins in &mut program {
            if ins.code == RET_K && ins.k != 0 {
                ins.k = ins.k.min(snaplen);
            }
        }
    }
    Ok(Some(program))
}

// ---------------------------------------------------------------------------------------------
// AfPacket
// ---------------------------------------------------------------------------------------------

/// A live capture: one `AF_PACKET` socket with a `TPACKET_V3` ring per named interface, or one
/// for all interfaces. Closing (dropping) it unmaps the rings, closes the sockets and leaves
/// promiscuous mode.
pub struct AfPacket {
    sockets: Vec<RingSocket>,
    interfaces: Vec<(String, u32, LinkType)>,
    /// Which socket `next_batch` looks at first (round robin, so a busy one cannot starve the
    /// others).
    first: usize,
    total_packets: u64,
    total_drops: u64,
}

impl fmt::Debug for AfPacket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AfPacket")
            .field("interfaces", &self.interfaces)
            .field("fds", &self.fds())
            .field("total_packets", &self.total_packets)
            .field("total_drops", &self.total_drops)
            .finish_non_exhaustive()
    }
}

impl AfPacket {
    /// Opens the capture. `filter` is a classic BPF program (see [`compile_filter`]), applied
    /// in the kernel before frames reach the ring.
    ///
    /// Interfaces are looked up in the network namespace of the calling thread.
    pub fn open(
        ifaces: &Interfaces,
        cfg: &RingConfig,
        filter: Option<&[libc::sock_filter]>,
    ) -> Result<Self, CaptureOpenError> {
        cfg.check(page_size())
            .map_err(|what| CaptureOpenError::BadConfig { what })?;
        let program = effective_program(filter, cfg.snaplen)?;
        let program = program.as_deref();
        let mut sockets = Vec::new();
        let mut interfaces = Vec::new();
        match ifaces {
            Interfaces::All => {
                let label = "all interfaces";
                let fd = packet_socket(label)?;
                for (name, ifindex) in namespace_interfaces() {
                    if let Ok((_, hatype)) = lookup_interface(&fd, &name)
                        && let Some(link) = link_type_for_arphrd(hatype)
                    {
                        interfaces.push((name, ifindex, link));
                    }
                }
                sockets.push(RingSocket::setup(fd, label, 0, cfg, program)?);
            }
            Interfaces::Named(names) => {
                if names.is_empty() {
                    return Err(CaptureOpenError::BadConfig {
                        what: "no interface named; name at least one or capture on all".into(),
                    });
                }
                for (i, name) in names.iter().enumerate() {
                    if names[..i].contains(name) {
                        return Err(CaptureOpenError::BadConfig {
                            what: format!("interface {name} is named twice; name it once"),
                        });
                    }
                    let fd = packet_socket(name)?;
                    let (ifindex, hatype) = match lookup_interface(&fd, name) {
                        Ok(found) => found,
                        Err(None) => {
                            return Err(CaptureOpenError::NoSuchInterface {
                                name: name.clone(),
                                available: namespace_interfaces().into_iter().map(|(n, _)| n).collect(),
                            });
                        }
                        Err(Some(source)) => {
                            return Err(CaptureOpenError::Io {
                                iface: name.clone(),
                                op: "looking up the interface (SIOCGIFINDEX/SIOCGIFHWADDR)",
                                source,
                            });
                        }
                    };
                    let Some(link) = link_type_for_arphrd(hatype) else {
                        return Err(CaptureOpenError::UnsupportedLink {
                            iface: name.clone(),
                            arphrd: hatype,
                        });
                    };
                    sockets.push(RingSocket::setup(fd, name, ifindex, cfg, program)?);
                    interfaces.push((name.clone(), ifindex, link));
                }
            }
        }
        Ok(AfPacket {
            sockets,
            interfaces,
            first: 0,
            total_packets: 0,
            total_drops: 0,
        })
    }

    /// Waits up to `timeout` (poll) for frames and calls `f` for each; returns how many were
    /// delivered. Blocks are returned to the kernel after their frames were handed over.
    ///
    /// Returns as soon as at least one frame was delivered, after at most one pass over each
    /// ring, or with `Ok(0)` when `timeout` passes without any. A frame that arrives in a block
    /// which is not full shows up after [`RingConfig::block_timeout_ms`] at the latest.
    /// After an `Err` the capture can be used again (the failing block was given back).
    pub fn next_batch(
        &mut self,
        timeout: Duration,
        mut f: impl FnMut(&LiveFrame<'_>),
    ) -> Result<usize, CaptureError> {
        let deadline = Instant::now().checked_add(timeout);
        let mut pfds: Vec<libc::pollfd> = self
            .sockets
            .iter()
            .map(|s| libc::pollfd {
                fd: s.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        loop {
            let n = self.sockets.len();
            let mut delivered = 0;
            for k in 0..n {
                let s = (self.first + k) % n;
                delivered += self.sockets[s].drain(&mut f)?;
            }
            self.first = (self.first + 1) % n.max(1);
            if delivered > 0 {
                return Ok(delivered);
            }
            let wait_ms = match deadline {
                None => -1,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(0);
                    }
                    // Round up so that a sub-millisecond rest does not spin.
                    left.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32
                }
            };
            for p in &mut pfds {
                p.revents = 0;
            }
            // SAFETY: `pfds` is a valid array of `pfds.len()` pollfd entries for the call.
            let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, wait_ms) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(CaptureError::Poll(e));
            }
            for (p, s) in pfds.iter().zip(&self.sockets) {
                if p.revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
                    return Err(s.socket_error());
                }
            }
        }
    }

    /// Kernel counters since the last call (`PACKET_STATISTICS` with `tpacket_stats_v3`:
    /// `tp_packets`, `tp_drops`, `tp_freeze_q_cnt`), summed over sockets, plus totals since
    /// open. Reading the counters resets them in the kernel.
    pub fn stats(&mut self) -> Result<CaptureStats, CaptureError> {
        let mut out = CaptureStats::default();
        for s in &self.sockets {
            let st = s.stats()?;
            out.packets += u64::from(st.tp_packets);
            out.drops += u64::from(st.tp_drops);
            out.freeze_q += u64::from(st.tp_freeze_q_cnt);
        }
        self.total_packets += out.packets;
        self.total_drops += out.drops;
        out.total_packets = self.total_packets;
        out.total_drops = self.total_drops;
        Ok(out)
    }

    /// The interfaces captured on: name, ifindex and link type. For [`Interfaces::All`], those
    /// of the namespace at open time whose frames can be decoded.
    pub fn interfaces(&self) -> Vec<(String, u32, LinkType)> {
        self.interfaces.clone()
    }

    /// Raw fds, for callers that multiplex (keep them owned by AfPacket).
    pub fn fds(&self) -> Vec<RawFd> {
        self.sockets.iter().map(|s| s.fd.as_raw_fd()).collect()
    }
}

/// Interfaces from `/sys/class/net/*/ifindex` and `/type`: name, ifindex, `ARPHRD_*` type,
/// sorted by ifindex. Interfaces whose files cannot be read are left out.
///
/// `/sys` shows the network namespace it was mounted in, which is not necessarily that of the
/// calling thread (after `setns(2)` without a new mount namespace); [`AfPacket::open`] looks
/// names up through its socket instead.
pub fn list_interfaces() -> Vec<(String, u32, u16)> {
    list_interfaces_in(Path::new("/sys/class/net"))
}

fn list_interfaces_in(dir: &Path) -> Vec<(String, u32, u16)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let read_num = |path: &Path| -> Option<u64> { std::fs::read_to_string(path).ok()?.trim().parse().ok() };
    let mut out: Vec<(String, u32, u16)> = entries
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().into_string().ok()?;
            let ifindex = u32::try_from(read_num(&e.path().join("ifindex"))?).ok()?;
            let hatype = u16::try_from(read_num(&e.path().join("type"))?).ok()?;
            Some((name, ifindex, hatype))
        })
        .collect();
    out.sort_by_key(|&(_, i, _)| i);
    out
}

// ---------------------------------------------------------------------------------------------
// Filters: a tiny expression language compiled to classic BPF by hand
// ---------------------------------------------------------------------------------------------

/// Why a filter expression could not be compiled. Positions count words from 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilterError {
    /// Nothing to compile.
    Empty,
    /// A word the language does not have (e.g. "or", "src", "vlan").
    Unsupported { word: String, position: usize },
    /// A known word where it cannot go (e.g. "and" at the start, "not not").
    Misplaced { word: String, position: usize },
    /// `port` or `host` at the end, without its value.
    MissingValue { after: String },
    /// Not a port number (1-65535 or 0).
    BadPort { word: String, position: usize },
    /// Not an IPv4 or IPv6 address.
    BadHost { word: String, position: usize },
}

const FILTER_SYNTAX: &str = "filters are primitives joined by `and`: tcp, udp, icmp, icmp6, ip, \
    ip6, `port N`, `tcp port N`, `udp port N`, `host ADDR`, each optionally preceded by `not`";

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FilterError::Empty => {
                f.write_str("the capture filter is empty; leave it out to capture everything")
            }
            FilterError::Unsupported { word, position } => write!(
                f,
                "capture filter: unsupported word `{word}` (word {position}); {FILTER_SYNTAX}"
            ),
            FilterError::Misplaced { word, position } => write!(
                f,
                "capture filter: `{word}` cannot go there (word {position}); {FILTER_SYNTAX}"
            ),
            FilterError::MissingValue { after } => {
                write!(
                    f,
                    "capture filter: `{after}` needs a value after it, e.g. `{after} {}`",
                    if after == "host" { "10.0.0.1" } else { "53" }
                )
            }
            FilterError::BadPort { word, position } => write!(
                f,
                "capture filter: `{word}` (word {position}) is not a port number; use 0-65535"
            ),
            FilterError::BadHost { word, position } => write!(
                f,
                "capture filter: `{word}` (word {position}) is not an IPv4 or IPv6 address \
                 (names are not resolved)"
            ),
        }
    }
}

impl std::error::Error for FilterError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Tcp,
    Udp,
    Icmp,
    Icmp6,
    Ip,
    Ip6,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Primitive {
    Proto(Proto),
    /// Either side; `proto` None: TCP or UDP.
    Port {
        proto: Option<Proto>,
        port: u16,
    },
    /// Either side.
    Host(IpAddr),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Term {
    negate: bool,
    prim: Primitive,
}

fn parse_filter(expr: &str) -> Result<Vec<Term>, FilterError> {
    let words: Vec<&str> = expr.split_whitespace().collect();
    if words.is_empty() {
        return Err(FilterError::Empty);
    }
    let mut terms = Vec::new();
    let mut i = 0;
    let misplaced = |i: usize| FilterError::Misplaced {
        word: words[i].to_owned(),
        position: i + 1,
    };
    loop {
        // term := ["not"] primitive
        let negate = matches!(words.get(i), Some(&("not" | "!")));
        if negate {
            i += 1;
        }
        let Some(&w) = words.get(i) else {
            // Only reachable after a trailing "not".
            return Err(misplaced(i - 1));
        };
        let proto = match w {
            "tcp" => Some(Proto::Tcp),
            "udp" => Some(Proto::Udp),
            "icmp" => Some(Proto::Icmp),
            "icmp6" => Some(Proto::Icmp6),
            "ip" => Some(Proto::Ip),
            "ip6" => Some(Proto::Ip6),
            "port" | "host" => None,
            "and" | "&&" | "not" | "!" => return Err(misplaced(i)),
            _ => {
                return Err(FilterError::Unsupported {
                    word: w.to_owned(),
                    position: i + 1,
                });
            }
        };
        let port_follows = matches!(proto, None | Some(Proto::Tcp | Proto::Udp))
            && words.get(i + usize::from(proto.is_some())) == Some(&"port");
        let prim = if port_follows {
            let at = i + usize::from(proto.is_some()) + 1;
            let Some(&value) = words.get(at) else {
                return Err(FilterError::MissingValue { after: "port".into() });
            };
            let port = value.parse::<u16>().map_err(|_| FilterError::BadPort {
                word: value.to_owned(),
                position: at + 1,
            })?;
            i = at + 1;
            Primitive::Port { proto, port }
        } else if let Some(p) = proto {
            i += 1;
            Primitive::Proto(p)
        } else if w == "host" {
            let Some(&value) = words.get(i + 1) else {
                return Err(FilterError::MissingValue { after: "host".into() });
            };
            let addr = value.parse::<IpAddr>().map_err(|_| FilterError::BadHost {
                word: value.to_owned(),
                position: i + 2,
            })?;
            i += 2;
            Primitive::Host(addr)
        } else {
            // "port" not followed as a port primitive cannot happen: it is handled above.
            return Err(misplaced(i));
        };
        terms.push(Term { negate, prim });
        match words.get(i) {
            None => return Ok(terms),
            Some(&("and" | "&&")) => {
                i += 1;
                if i == words.len() {
                    return Err(misplaced(i - 1));
                }
            }
            Some(&("tcp" | "udp" | "icmp" | "icmp6" | "ip" | "ip6" | "port" | "host" | "not" | "!")) => {
                return Err(misplaced(i));
            }
            Some(&w) => {
                return Err(FilterError::Unsupported {
                    word: w.to_owned(),
                    position: i + 1,
                });
            }
        }
    }
}

// Classic BPF opcodes (linux/filter.h, linux/bpf_common.h).
const LD_W_ABS: u16 = 0x20;
const LD_H_ABS: u16 = 0x28;
const LD_B_ABS: u16 = 0x30;
const LD_H_IND: u16 = 0x48;
const LDX_B_MSH: u16 = 0xb1;
const JEQ_K: u16 = 0x15;
const JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;
/// `SKF_AD_OFF + SKF_AD_HATYPE`: the ancillary load of the device's `ARPHRD_*` type.
const AD_HATYPE: u32 = 0xffff_f000 + 28;
/// What an accepting filter returns: keep up to this many bytes (libpcap's default snap length).
const ACCEPT: u32 = wire::capture::MAX_PCAP_CAPLEN;

const ETHERTYPE_IPV4: u32 = 0x0800;
const ETHERTYPE_IPV6: u32 = 0x86dd;

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

/// A jump target: the next instruction, or a label placed later.
#[derive(Clone, Copy)]
enum Tgt {
    Next,
    L(usize),
}

/// A tiny assembler with forward labels.
#[derive(Default)]
struct Asm {
    code: Vec<(u16, u32, Tgt, Tgt)>,
    labels: Vec<Option<usize>>,
}

impl Asm {
    fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }
    fn place(&mut self, l: usize) {
        self.labels[l] = Some(self.code.len());
    }
    fn stmt(&mut self, code: u16, k: u32) {
        self.code.push((code, k, Tgt::Next, Tgt::Next));
    }
    fn jeq(&mut self, k: u32, jt: Tgt, jf: Tgt) {
        self.code.push((JEQ_K, k, jt, jf));
    }
    fn finish(self) -> Vec<libc::sock_filter> {
        let resolve = |at: usize, t: Tgt| -> u8 {
            match t {
                Tgt::Next => 0,
                Tgt::L(l) => {
                    let pos = self.labels[l].expect("every label is placed");
                    // Every jump is local to one primitive (each has its own reject), so the
                    // distance is at most a few dozen instructions.
                    u8::try_from(pos - (at + 1)).expect("cBPF jump within 255 instructions")
                }
            }
        };
        self.code
            .iter()
            .enumerate()
            .map(|(at, &(code, k, jt, jf))| libc::sock_filter {
                code,
                jt: resolve(at, jt),
                jf: resolve(at, jf),
                k,
            })
            .collect()
    }
}

/// Emits the test of `prim`: jumps to `t` when it holds and `f` when not.
fn emit_primitive(asm: &mut Asm, prim: &Primitive, t: Tgt, f: Tgt) {
    match *prim {
        Primitive::Proto(Proto::Ip) => {
            asm.stmt(LD_H_ABS, 12);
            asm.jeq(ETHERTYPE_IPV4, t, f);
        }
        Primitive::Proto(Proto::Ip6) => {
            asm.stmt(LD_H_ABS, 12);
            asm.jeq(ETHERTYPE_IPV6, t, f);
        }
        Primitive::Proto(p) => {
            let (v4, v6) = match p {
                Proto::Tcp => (Some(6), Some(6)),
                Proto::Udp => (Some(17), Some(17)),
                Proto::Icmp => (Some(1), None),
                _ => (None, Some(58)),
            };
            asm.stmt(LD_H_ABS, 12);
            if let Some(n) = v4 {
                let not4 = asm.label();
                asm.jeq(ETHERTYPE_IPV4, Tgt::Next, Tgt::L(not4));
                asm.stmt(LD_B_ABS, 23);
                asm.jeq(n, t, f);
                asm.place(not4);
            }
            if let Some(n) = v6 {
                asm.jeq(ETHERTYPE_IPV6, Tgt::Next, f);
                asm.stmt(LD_B_ABS, 20);
                asm.jeq(n, t, f);
            } else {
                // Unconditional jump to `f` (A is never u32::MAX after a 16-bit load).
                asm.jeq(u32::MAX, t, f);
            }
        }
        Primitive::Port { proto, port } => {
            let protos: &[u32] = match proto {
                Some(Proto::Tcp) => &[6],
                Some(Proto::Udp) => &[17],
                _ => &[6, 17],
            };
            let port = u32::from(port);
            let (ok4, not4, ok6) = (asm.label(), asm.label(), asm.label());
            asm.stmt(LD_H_ABS, 12);
            asm.jeq(ETHERTYPE_IPV4, Tgt::Next, Tgt::L(not4));
            asm.stmt(LD_B_ABS, 23);
            for (i, &p) in protos.iter().enumerate() {
                let miss = if i + 1 == protos.len() { f } else { Tgt::Next };
                asm.jeq(p, Tgt::L(ok4), miss);
            }
            asm.place(ok4);
            // Only the first fragment carries the ports.
            asm.stmt(LD_H_ABS, 20);
            asm.code.push((JSET_K, 0x1fff, f, Tgt::Next));
            asm.stmt(LDX_B_MSH, 14);
            asm.stmt(LD_H_IND, 14);
            asm.jeq(port, t, Tgt::Next);
            asm.stmt(LD_H_IND, 16);
            asm.jeq(port, t, f);
            asm.place(not4);
            asm.jeq(ETHERTYPE_IPV6, Tgt::Next, f);
            asm.stmt(LD_B_ABS, 20);
            for (i, &p) in protos.iter().enumerate() {
                let miss = if i + 1 == protos.len() { f } else { Tgt::Next };
                asm.jeq(p, Tgt::L(ok6), miss);
            }
            asm.place(ok6);
            asm.stmt(LD_H_ABS, 54);
            asm.jeq(port, t, Tgt::Next);
            asm.stmt(LD_H_ABS, 56);
            asm.jeq(port, t, f);
        }
        Primitive::Host(IpAddr::V4(a)) => {
            let a = u32::from(a);
            asm.stmt(LD_H_ABS, 12);
            asm.jeq(ETHERTYPE_IPV4, Tgt::Next, f);
            asm.stmt(LD_W_ABS, 26);
            asm.jeq(a, t, Tgt::Next);
            asm.stmt(LD_W_ABS, 30);
            asm.jeq(a, t, f);
        }
        Primitive::Host(IpAddr::V6(a)) => {
            let words: Vec<u32> = a
                .octets()
                .chunks_exact(4)
                .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            let dst = asm.label();
            asm.stmt(LD_H_ABS, 12);
            asm.jeq(ETHERTYPE_IPV6, Tgt::Next, f);
            for (base, miss) in [(22u32, Tgt::L(dst)), (38, f)] {
                if base == 38 {
                    asm.place(dst);
                }
                for (i, &w) in words.iter().enumerate() {
                    asm.stmt(LD_W_ABS, base + 4 * i as u32);
                    let hit = if i == 3 { t } else { Tgt::Next };
                    asm.jeq(w, hit, miss);
                }
            }
        }
    }
}

/// Compiles a filter expression to a classic BPF program for [`AfPacket::open`], without
/// libpcap.
///
/// The language: primitives joined by `and` (or `&&`), each optionally preceded by `not` (or
/// `!`), which applies to that primitive only:
///
/// - `tcp`, `udp`: IPv4 or IPv6; `icmp`: IPv4; `icmp6`: IPv6; `ip`, `ip6`: the EtherType;
/// - `port N`: TCP or UDP with N as source or destination port, IPv4 or IPv6;
///   `tcp port N`, `udp port N`: the same for one protocol (one primitive, so
///   `not tcp port 22` works); non-first IPv4 fragments never match;
/// - `host ADDR`: an IPv4 or IPv6 address as source or destination.
///
/// Examples: `"tcp"`, `"udp port 53"`, `"host 10.1.2.3 and tcp port 443"`, `"not port 22"`.
///
/// **Ethernet only**: the program first checks that the frame comes from an Ethernet or
/// loopback device (the `SKF_AD_HATYPE` ancillary load) and rejects every other frame, so on
/// an [`Interfaces::All`] capture a filter drops the frames of raw-IP devices (tun, WireGuard).
/// IPv6 extension headers are not followed (the protocol is the first Next Header), and
/// VLAN-tagged frames whose tag is still in the frame do not match.
pub fn compile_filter(expr: &str) -> Result<Vec<libc::sock_filter>, FilterError> {
    let terms = parse_filter(expr)?;
    let mut asm = Asm::default();
    // Ethernet framing only: hatype must be ARPHRD_ETHER or ARPHRD_LOOPBACK.
    let (ether, reject) = (asm.label(), asm.label());
    asm.stmt(LD_W_ABS, AD_HATYPE);
    asm.jeq(u32::from(ARPHRD_ETHER), Tgt::L(ether), Tgt::Next);
    asm.jeq(u32::from(ARPHRD_LOOPBACK), Tgt::L(ether), Tgt::L(reject));
    asm.place(reject);
    asm.stmt(RET_K, 0);
    asm.place(ether);
    for term in &terms {
        let (pass, fail) = (asm.label(), asm.label());
        let (t, f) = if term.negate {
            (Tgt::L(fail), Tgt::L(pass))
        } else {
            (Tgt::L(pass), Tgt::L(fail))
        };
        emit_primitive(&mut asm, &term.prim, t, f);
        asm.place(fail);
        asm.stmt(RET_K, 0);
        asm.place(pass);
    }
    asm.stmt(RET_K, ACCEPT);
    Ok(asm.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syn_filter_accepts_syns_only() {
        use std::net::{Ipv4Addr, Ipv6Addr};
        let prog = syn_filter();
        let (a, b) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let (a6, b6): (Ipv6Addr, Ipv6Addr) = ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap());
        let syn = wire::synth::tcp_ipv4_frame(a, b, 1000, 80, 1, 0, 0x02, b"");
        let synack = wire::synth::tcp_ipv4_frame(b, a, 80, 1000, 1, 2, 0x12, b"");
        let ack = wire::synth::tcp_ipv4_frame(a, b, 1000, 80, 2, 2, 0x10, b"x");
        let syn6 = wire::synth::tcp_ipv6_frame(a6, b6, 1000, 80, 1, 0, 0x02, b"");
        let ack6 = wire::synth::tcp_ipv6_frame(a6, b6, 1000, 80, 1, 0, 0x10, b"");
        let udp = wire::synth::udp_ipv4_frame(a, b, 1000, 53, &[2; 20]);
        for (f, want) in [
            (&syn, true),
            (&synack, true),
            (&ack, false),
            (&syn6, true),
            (&ack6, false),
            (&udp, false),
        ] {
            assert_eq!(run_bpf(&prog, f, ARPHRD_ETHER) != 0, want, "{f:02x?}");
        }
    }
    use std::net::{Ipv4Addr, Ipv6Addr};
    use wire::synth::{self, TcpFlags};

    // ---- a tiny classic BPF interpreter (the subset the compiler emits, kernel semantics) ----

    /// Checks the program like the kernel's checker would (jumps inside, ends in RET).
    fn check_program(prog: &[libc::sock_filter]) {
        assert!(!prog.is_empty() && prog.len() <= BPF_MAXINSNS);
        assert_eq!(prog.last().map(|i| i.code), Some(RET_K), "must end in ret");
        for (pc, ins) in prog.iter().enumerate() {
            if ins.code & 0x07 == 0x05 {
                let far = pc + 1 + usize::from(ins.jt.max(ins.jf));
                assert!(far < prog.len(), "jump at {pc} leaves the program");
            }
        }
    }

    /// Runs `prog` over `pkt` received on a device of type `hatype`; returns the filter's
    /// result (0: reject). A load outside the packet rejects, as in the kernel.
    fn run_bpf(prog: &[libc::sock_filter], pkt: &[u8], hatype: u16) -> u32 {
        check_program(prog);
        let load = |off: u32, size: usize| -> Option<u32> {
            let off = off as usize;
            let b = pkt.get(off..off.checked_add(size)?)?;
            Some(b.iter().fold(0u32, |acc, &x| (acc << 8) | u32::from(x)))
        };
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        loop {
            let ins = prog[pc];
            pc += 1;
            let loaded = match ins.code {
                LD_W_ABS if ins.k == AD_HATYPE => Some(u32::from(hatype)),
                LD_W_ABS => load(ins.k, 4),
                LD_H_ABS => load(ins.k, 2),
                LD_B_ABS => load(ins.k, 1),
                LD_H_IND => load(x.wrapping_add(ins.k), 2),
                0x50 => load(x.wrapping_add(ins.k), 1), // ld b [x + k]
                LDX_B_MSH => {
                    let Some(v) = load(ins.k, 1) else { return 0 };
                    x = 4 * (v & 0xf);
                    continue;
                }
                JEQ_K | JSET_K => {
                    let hit = if ins.code == JEQ_K {
                        a == ins.k
                    } else {
                        a & ins.k != 0
                    };
                    pc += usize::from(if hit { ins.jt } else { ins.jf });
                    continue;
                }
                RET_K => return ins.k,
                other => panic!("opcode {other:#x} not supported by the test interpreter"),
            };
            match loaded {
                Some(v) => a = v,
                None => return 0,
            }
        }
    }

    fn accepts(expr: &str, frame: &[u8]) -> bool {
        let prog = compile_filter(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        run_bpf(&prog, frame, ARPHRD_ETHER) != 0
    }

    const A4: Ipv4Addr = Ipv4Addr::new(10, 1, 2, 3);
    const B4: Ipv4Addr = Ipv4Addr::new(192, 168, 7, 9);
    const A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    const B6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

    struct Frames {
        tcp4_443: Vec<u8>,
        tcp4_22: Vec<u8>,
        udp4_53: Vec<u8>,
        tcp6_443: Vec<u8>,
        udp6_53: Vec<u8>,
        udp6_rev: Vec<u8>,
        icmp4: Vec<u8>,
        icmp6: Vec<u8>,
        arp: Vec<u8>,
        frag4: Vec<u8>,
    }

    fn frames() -> Frames {
        let ack = TcpFlags::ACK;
        let icmp4 = synth::ipv4(
            A4,
            B4,
            synth::PROTO_ICMP,
            1,
            &synth::icmpv4_echo(7, 1, true, b"ping"),
        );
        let icmp6 = synth::ipv6(
            A6,
            B6,
            synth::PROTO_ICMPV6,
            &synth::icmpv6_echo(A6, B6, 7, 1, true, b"x"),
        );
        // A non-first fragment whose payload bytes at the "port" offsets read 53.
        let udp = synth::udp(
            A4.into(),
            B4.into(),
            53,
            53,
            &[0x00, 0x35, 0x00, 0x35, 0, 0, 0, 0, 1, 2, 3, 4],
        );
        let frags = synth::ipv4_fragments(A4, B4, synth::PROTO_UDP, 9, &[&udp[..], &udp[..]].concat(), 8);
        Frames {
            tcp4_443: synth::tcp_ipv4_frame(A4, B4, 40000, 443, 1, 1, ack, b"hello"),
            tcp4_22: synth::tcp_ipv4_frame(B4, A4, 22, 50000, 1, 1, ack, b""),
            udp4_53: synth::udp_ipv4_frame(A4, B4, 5353, 53, b"q"),
            tcp6_443: synth::tcp_ipv6_frame(A6, B6, 40000, 443, 1, 1, ack, b"hi"),
            udp6_53: synth::udp_ipv6_frame(A6, B6, 5353, 53, b"q"),
            udp6_rev: synth::udp_ipv6_frame(B6, A6, 53, 5353, b"r"),
            icmp4: synth::ethernet(synth::MAC_B, synth::MAC_A, synth::ETHERTYPE_IPV4, &icmp4),
            icmp6: synth::ethernet(synth::MAC_B, synth::MAC_A, synth::ETHERTYPE_IPV6, &icmp6),
            arp: synth::ethernet([0xff; 6], synth::MAC_A, 0x0806, &[0u8; 28]),
            frag4: synth::ethernet(synth::MAC_B, synth::MAC_A, synth::ETHERTYPE_IPV4, &frags[1]),
        }
    }

    #[test]
    fn filter_matrix_v4_and_v6() {
        let f = frames();
        let all: [(&str, &[u8]); 10] = [
            ("tcp4_443", &f.tcp4_443),
            ("tcp4_22", &f.tcp4_22),
            ("udp4_53", &f.udp4_53),
            ("tcp6_443", &f.tcp6_443),
            ("udp6_53", &f.udp6_53),
            ("udp6_rev", &f.udp6_rev),
            ("icmp4", &f.icmp4),
            ("icmp6", &f.icmp6),
            ("arp", &f.arp),
            ("frag4", &f.frag4),
        ];
        let cases: &[(&str, &[&str])] = &[
            ("tcp", &["tcp4_443", "tcp4_22", "tcp6_443"]),
            ("udp", &["udp4_53", "udp6_53", "udp6_rev", "frag4"]),
            ("icmp", &["icmp4"]),
            ("icmp6", &["icmp6"]),
            ("ip", &["tcp4_443", "tcp4_22", "udp4_53", "icmp4", "frag4"]),
            ("ip6", &["tcp6_443", "udp6_53", "udp6_rev", "icmp6"]),
            ("udp port 53", &["udp4_53", "udp6_53", "udp6_rev"]),
            ("tcp port 53", &[]),
            ("port 443", &["tcp4_443", "tcp6_443"]),
            ("port 22", &["tcp4_22"]),
            ("port 5353", &["udp4_53", "udp6_53", "udp6_rev"]),
            (
                "host 10.1.2.3",
                &["tcp4_443", "tcp4_22", "udp4_53", "icmp4", "frag4"],
            ),
            ("host 192.168.7.9 and tcp port 443", &["tcp4_443"]),
            ("host 10.1.2.3 and tcp port 443", &["tcp4_443"]),
            ("host 2001:db8::2", &["tcp6_443", "udp6_53", "udp6_rev", "icmp6"]),
            ("host 2001:db8::1 and udp", &["udp6_53", "udp6_rev"]),
            ("host 2001:db8::3", &[]),
            ("host 10.9.9.9", &[]),
            (
                "not port 22",
                &[
                    "tcp4_443", "udp4_53", "tcp6_443", "udp6_53", "udp6_rev", "icmp4", "icmp6", "arp",
                    "frag4",
                ],
            ),
            ("not tcp port 443 and tcp", &["tcp4_22"]),
            ("ip6 && ! udp", &["tcp6_443", "icmp6"]),
            ("not ip and not ip6", &["arp"]),
            ("tcp and udp", &[]),
        ];
        for (expr, want) in cases {
            for (name, frame) in all {
                let expect = want.contains(&name);
                assert_eq!(accepts(expr, frame), expect, "filter {expr:?} on {name}");
            }
        }
    }

    #[test]
    fn filter_accept_length_and_non_ethernet_devices() {
        let f = frames();
        let prog = compile_filter("tcp").unwrap();
        assert_eq!(run_bpf(&prog, &f.tcp4_443, ARPHRD_ETHER), ACCEPT);
        assert_eq!(run_bpf(&prog, &f.tcp4_443, ARPHRD_LOOPBACK), ACCEPT);
        // Frames from raw-IP devices are rejected whatever their bytes.
        assert_eq!(run_bpf(&prog, &f.tcp4_443, ARPHRD_NONE), 0);
        assert_eq!(run_bpf(&compile_filter("not tcp").unwrap(), &f.udp4_53, 801), 0);
    }

    #[test]
    fn filter_rejects_short_frames_without_reading_past_them() {
        let f = frames();
        for expr in ["tcp", "udp port 53", "host 10.1.2.3", "host 2001:db8::1", "icmp6"] {
            let prog = compile_filter(expr).unwrap();
            for cut in 0..f.tcp4_443.len().min(f.udp6_53.len()).min(60) {
                // Truncations of matching frames: must not panic; only whole headers can match.
                run_bpf(&prog, &f.tcp4_443[..cut], ARPHRD_ETHER);
                run_bpf(&prog, &f.udp6_53[..cut], ARPHRD_ETHER);
            }
            assert_eq!(run_bpf(&prog, &f.tcp4_443[..14], ARPHRD_ETHER), 0, "{expr}");
        }
    }

    #[test]
    fn filter_errors_name_the_word() {
        let cases: &[(&str, FilterError)] = &[
            ("", FilterError::Empty),
            ("   ", FilterError::Empty),
            (
                "tcp or udp",
                FilterError::Unsupported {
                    word: "or".into(),
                    position: 2,
                },
            ),
            (
                "src host 10.0.0.1",
                FilterError::Unsupported {
                    word: "src".into(),
                    position: 1,
                },
            ),
            (
                "vlan",
                FilterError::Unsupported {
                    word: "vlan".into(),
                    position: 1,
                },
            ),
            (
                "not not tcp",
                FilterError::Misplaced {
                    word: "not".into(),
                    position: 2,
                },
            ),
            (
                "and tcp",
                FilterError::Misplaced {
                    word: "and".into(),
                    position: 1,
                },
            ),
            (
                "tcp and",
                FilterError::Misplaced {
                    word: "and".into(),
                    position: 2,
                },
            ),
            (
                "tcp udp",
                FilterError::Misplaced {
                    word: "udp".into(),
                    position: 2,
                },
            ),
            (
                "icmp port 3",
                FilterError::Misplaced {
                    word: "port".into(),
                    position: 2,
                },
            ),
            (
                "not",
                FilterError::Misplaced {
                    word: "not".into(),
                    position: 1,
                },
            ),
            ("udp port", FilterError::MissingValue { after: "port".into() }),
            ("host", FilterError::MissingValue { after: "host".into() }),
            (
                "port 70000",
                FilterError::BadPort {
                    word: "70000".into(),
                    position: 2,
                },
            ),
            (
                "tcp and host example.com",
                FilterError::BadHost {
                    word: "example.com".into(),
                    position: 4,
                },
            ),
        ];
        for (expr, want) in cases {
            let got = compile_filter(expr).expect_err(expr);
            assert_eq!(&got, want, "{expr:?}");
            let msg = got.to_string();
            if let FilterError::Unsupported { word, .. } | FilterError::Misplaced { word, .. } = want {
                assert!(msg.contains(&format!("`{word}`")), "{msg}");
            }
        }
    }

    #[test]
    fn snaplen_caps_accepting_returns() {
        assert!(effective_program(None, 0).unwrap().is_none());
        let only = effective_program(None, 96).unwrap().unwrap();
        assert_eq!((only.len(), only[0].code, only[0].k), (1, RET_K, 96));
        let prog = compile_filter("udp").unwrap();
        let capped = effective_program(Some(&prog), 128).unwrap().unwrap();
        let f = frames();
        assert_eq!(run_bpf(&capped, &f.udp4_53, ARPHRD_ETHER), 128);
        assert_eq!(run_bpf(&capped, &f.tcp4_443, ARPHRD_ETHER), 0);
        assert!(matches!(
            effective_program(Some(&[]), 0),
            Err(CaptureOpenError::BadConfig { .. })
        ));
    }

    // ---- the block walker over hand-made TPACKET_V3 blocks ----

    const MAC: usize = 82; // where the kernel puts an Ethernet header for SOCK_RAW (netoff 96)

    fn put32(b: &mut [u8], off: usize, v: u32) {
        b[off..off + 4].copy_from_slice(&v.to_ne_bytes());
    }
    fn put16(b: &mut [u8], off: usize, v: u16) {
        b[off..off + 2].copy_from_slice(&v.to_ne_bytes());
    }

    struct Fr<'a> {
        data: &'a [u8],
        orig_len: u32,
        ifindex: u32,
        hatype: u16,
        pkttype: u8,
    }

    /// A block of `size` bytes laid out like the kernel's: block descriptor, then frames at
    /// 8-aligned offsets each with `tpacket3_hdr`, `sockaddr_ll` and data at `MAC`. Returns the
    /// block and the frame offsets.
    fn make_block(size: usize, frames: &[Fr<'_>]) -> (Vec<u8>, Vec<usize>) {
        let mut b = vec![0u8; size];
        put32(&mut b, 0, 3); // version
        put32(&mut b, BLK_STATUS, libc::TP_STATUS_USER);
        put32(&mut b, BLK_NUM_PKTS, frames.len() as u32);
        put32(&mut b, BLK_FIRST_PKT, BLOCK_HDR_LEN as u32);
        let mut off = BLOCK_HDR_LEN;
        let mut offsets = Vec::new();
        for (i, fr) in frames.iter().enumerate() {
            offsets.push(off);
            let total = (MAC + fr.data.len()).next_multiple_of(8);
            let next = if i + 1 < frames.len() { total as u32 } else { 0 };
            put32(&mut b, off + PKT_NEXT, next);
            put32(&mut b, off + PKT_SEC, 1_700_000_000 + i as u32);
            put32(&mut b, off + PKT_NSEC, 123_456_789);
            put32(&mut b, off + PKT_SNAPLEN, fr.data.len() as u32);
            put32(&mut b, off + PKT_LEN, fr.orig_len);
            put16(&mut b, off + PKT_MAC, MAC as u16);
            put16(&mut b, off + PKT_MAC + 2, (MAC + 14) as u16);
            put16(&mut b, off + PKT_SLL, libc::AF_PACKET as u16);
            put32(&mut b, off + SLL_IFINDEX, fr.ifindex);
            put16(&mut b, off + SLL_HATYPE, fr.hatype);
            b[off + SLL_PKTTYPE] = fr.pkttype;
            b[off + MAC..off + MAC + fr.data.len()].copy_from_slice(fr.data);
            off += total;
        }
        put32(&mut b, BLK_STATUS + 12, off as u32); // blk_len
        (b, offsets)
    }

    /// ts, orig_len, ifindex, hatype, pkttype, data
    type Got = (i64, u32, u32, u16, u8, Vec<u8>);

    fn collect(block: &[u8]) -> (Vec<Got>, Result<usize, BlockCorrupt>) {
        let mut got = Vec::new();
        let r = walk_block(block, |f| {
            got.push((
                f.ts_nanos,
                f.orig_len,
                f.ifindex,
                f.hatype,
                f.pkttype,
                f.data.to_vec(),
            ))
        });
        (got, r)
    }

    fn sample_block() -> (Vec<u8>, Vec<usize>, Vec<Vec<u8>>) {
        let f = frames();
        let datas = vec![f.tcp4_443.clone(), f.udp6_53[..30].to_vec(), f.arp.clone()];
        let frs = [
            Fr {
                data: &datas[0],
                orig_len: datas[0].len() as u32,
                ifindex: 2,
                hatype: ARPHRD_ETHER,
                pkttype: 0,
            },
            Fr {
                data: &datas[1],
                orig_len: f.udp6_53.len() as u32,
                ifindex: 3,
                hatype: ARPHRD_ETHER,
                pkttype: libc::PACKET_OUTGOING,
            },
            Fr {
                data: &datas[2],
                orig_len: 60,
                ifindex: 1,
                hatype: ARPHRD_LOOPBACK,
                pkttype: 1,
            },
        ];
        let (b, offs) = make_block(4096, &frs);
        (b, offs, datas)
    }

    #[test]
    fn walker_reads_a_kernel_style_block() {
        let (b, _, datas) = sample_block();
        let (got, r) = collect(&b);
        assert_eq!(r, Ok(3));
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].0, 1_700_000_000 * 1_000_000_000 + 123_456_789);
        assert_eq!(got[1].0, 1_700_000_001 * 1_000_000_000 + 123_456_789);
        assert_eq!(
            (got[0].1, got[0].2, got[0].3, got[0].4),
            (datas[0].len() as u32, 2, 1, 0)
        );
        assert_eq!(got[0].5, datas[0]);
        assert_eq!((got[1].2, got[1].4), (3, libc::PACKET_OUTGOING));
        assert_eq!(got[1].5, datas[1]);
        assert!(got[1].1 as usize > got[1].5.len(), "snapped frame keeps orig_len");
        assert_eq!(
            (got[2].1, got[2].3, got[2].5.len()),
            (60, ARPHRD_LOOPBACK, datas[2].len())
        );
    }

    #[test]
    fn walker_empty_block() {
        let (b, _) = make_block(4096, &[]);
        assert_eq!(collect(&b).1, Ok(0));
    }

    #[test]
    fn walker_rejects_corrupt_offsets_without_reading_out_of_bounds() {
        let (good, offs, _) = sample_block();
        type Corrupt = fn(&mut Vec<u8>, &[usize]);
        let cases: &[(&str, Corrupt, usize)] = &[
            ("block shorter than its header", |b, _| b.truncate(20), 0),
            (
                "first frame past the end",
                |b, _| put32(b, BLK_FIRST_PKT, 4090),
                0,
            ),
            (
                "first frame at u32::MAX",
                |b, _| put32(b, BLK_FIRST_PKT, u32::MAX),
                0,
            ),
            (
                "first frame inside block header",
                |b, _| put32(b, BLK_FIRST_PKT, 8),
                0,
            ),
            (
                "tp_mac inside the frame header",
                |b, o| put16(b, o[0] + PKT_MAC, 40),
                0,
            ),
            (
                "tp_mac past the end",
                |b, o| put16(b, o[0] + PKT_MAC, u16::MAX),
                0,
            ),
            (
                "snaplen past the end",
                |b, o| put32(b, o[1] + PKT_SNAPLEN, 5000),
                1,
            ),
            (
                "snaplen u32::MAX",
                |b, o| put32(b, o[2] + PKT_SNAPLEN, u32::MAX),
                2,
            ),
            (
                "next offset 0 (no progress)",
                |b, o| put32(b, o[0] + PKT_NEXT, 0),
                1,
            ),
            ("next offset too small", |b, o| put32(b, o[1] + PKT_NEXT, 16), 2),
            (
                "next offset past the end",
                |b, o| put32(b, o[0] + PKT_NEXT, 1 << 31),
                1,
            ),
            ("more packets than written", |b, _| put32(b, BLK_NUM_PKTS, 4), 3),
            ("num_pkts u32::MAX", |b, _| put32(b, BLK_NUM_PKTS, u32::MAX), 3),
        ];
        for (name, corrupt, delivered) in cases {
            let mut b = good.clone();
            corrupt(&mut b, &offs);
            let (got, r) = collect(&b);
            let err = r.expect_err(name);
            assert!(!err.what.is_empty(), "{name}: {err:?}");
            assert_eq!(
                got.len(),
                *delivered,
                "{name}: frames before the damage are delivered"
            );
        }
    }

    #[test]
    fn walker_survives_random_damage() {
        let (good, _, _) = sample_block();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let mut b = good.clone();
            for _ in 0..(rnd() % 4 + 1) {
                // Damage mostly the headers, where offsets live.
                let at = (rnd() % 400) as usize;
                b[at] = rnd() as u8;
            }
            let len = if rnd() % 4 == 0 {
                (rnd() % 4096) as usize
            } else {
                b.len()
            };
            let mut n = 0usize;
            let r = walk_block(&b[..len], |f| {
                assert!(f.data.len() <= len);
                n += 1;
            });
            if let Ok(k) = r {
                assert_eq!(k, n);
            }
        }
    }

    #[test]
    fn link_types_by_device() {
        assert_eq!(link_type_for_arphrd(ARPHRD_ETHER), Some(LinkType::ETHERNET));
        assert_eq!(link_type_for_arphrd(ARPHRD_LOOPBACK), Some(LinkType::ETHERNET));
        for raw in [ARPHRD_NONE, ARPHRD_PPP, ARPHRD_IPGRE, ARPHRD_TUNNEL, ARPHRD_RAWIP] {
            assert_eq!(link_type_for_arphrd(raw), Some(LinkType::RAW), "{raw}");
        }
        assert_eq!(link_type_for_arphrd(801), None); // IEEE 802.11
        assert_eq!(link_type_for_arphrd(280), None); // CAN
        assert_eq!(frame_link(ARPHRD_NONE, &[0x45, 0]), Some(LinkType::RAW));
        assert_eq!(frame_link(ARPHRD_NONE, &[0x60, 0]), Some(LinkType::RAW));
        assert_eq!(frame_link(ARPHRD_NONE, &[0x00, 0]), None);
        assert_eq!(frame_link(ARPHRD_NONE, &[]), None);
        assert_eq!(frame_link(ARPHRD_ETHER, &[]), Some(LinkType::ETHERNET));
    }

    #[test]
    fn ring_config_checks() {
        assert_eq!(RingConfig::default().check(4096), Ok(()));
        let bad = [
            RingConfig {
                block_size: 3 << 20,
                ..RingConfig::default()
            },
            RingConfig {
                block_size: 2048,
                ..RingConfig::default()
            },
            RingConfig {
                block_count: 0,
                ..RingConfig::default()
            },
            RingConfig {
                frame_size: 2040,
                ..RingConfig::default()
            },
            RingConfig {
                frame_size: 32,
                ..RingConfig::default()
            },
        ];
        for cfg in bad {
            let what = cfg.check(4096).expect_err("bad config");
            assert!(what.contains("try"), "{what}");
        }
    }

    #[test]
    fn list_interfaces_reads_sysfs_layout() {
        let dir = std::env::temp_dir().join(format!("netvigil-sysnet-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (name, idx, ty) in [("lo", "1", "772"), ("eth0", "2\n", "1\n"), ("wg0", "5", "65534")] {
            std::fs::create_dir_all(dir.join(name)).unwrap();
            std::fs::write(dir.join(name).join("ifindex"), idx).unwrap();
            std::fs::write(dir.join(name).join("type"), ty).unwrap();
        }
        std::fs::create_dir_all(dir.join("broken")).unwrap();
        let got = list_interfaces_in(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            got,
            vec![
                ("lo".into(), 1, 772),
                ("eth0".into(), 2, 1),
                ("wg0".into(), 5, 0xfffe)
            ]
        );
        assert!(list_interfaces_in(Path::new("/nonexistent/netvigil")).is_empty());
    }

    #[test]
    fn interface_names_by_index() {
        // Every namespace has its loopback; if_nameindex and if_indextoname agree on it.
        let lo = namespace_interfaces()
            .into_iter()
            .find(|(n, _)| n == "lo")
            .expect("lo in the namespace");
        assert_eq!(interface_name(lo.1).as_deref(), Some("lo"));
        assert_eq!(interface_name(0), None);
        assert_eq!(interface_name(u32::MAX), None);
    }

    #[test]
    fn open_without_cap_net_raw_says_what_to_do() {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            return; // root has CAP_NET_RAW; the integration tests cover opening
        }
        let named = Interfaces::Named(vec!["lo".into()]);
        for (ifaces, shown) in [(&Interfaces::All, "all interfaces"), (&named, "lo")] {
            let err = AfPacket::open(ifaces, &RingConfig::default(), None).expect_err("no CAP_NET_RAW");
            assert!(
                matches!(&err, CaptureOpenError::NeedsPrivilege { iface } if iface == shown),
                "{err:?}"
            );
            assert!(err.to_string().contains("setcap cap_net_raw"), "{err}");
        }
    }

    #[test]
    fn privilege_message_says_what_to_do() {
        let e = CaptureOpenError::NeedsPrivilege { iface: "eth0".into() };
        assert_eq!(
            e.to_string(),
            "capturing on eth0 needs CAP_NET_RAW: run `sudo setcap cap_net_raw,cap_net_admin=eip \
             $(which netvigil)` or run as root"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// SYN watcher

/// A second, ring-less AF_PACKET socket that receives only TCP segments with SYN set (IPv4 and
/// IPv6 without extension headers, Ethernet and loopback framing), one `recvfrom` each, so
/// that a connection's owner can be looked up within a fraction of a millisecond of its SYN:
/// the ring above hands frames over in blocks, a few milliseconds late, and a process that
/// lives 20 ms may be gone by then.
#[derive(Debug)]
pub struct SynWatcher {
    fd: OwnedFd,
    buf: Vec<u8>,
}

/// One SYN (or SYN-ACK) seen by the [`SynWatcher`].
#[derive(Debug, Clone, Copy)]
pub struct SynFrame<'a> {
    pub data: &'a [u8],
    /// Sent by this host.
    pub outgoing: bool,
}

/// The cBPF program of [`SynWatcher`]: accept TCP with the SYN flag, reject the rest.
pub fn syn_filter() -> Vec<libc::sock_filter> {
    const LDH_ABS: u16 = (libc::BPF_LD | libc::BPF_H | libc::BPF_ABS) as u16;
    const LDB_ABS: u16 = (libc::BPF_LD | libc::BPF_B | libc::BPF_ABS) as u16;
    const LDB_IND: u16 = (libc::BPF_LD | libc::BPF_B | libc::BPF_IND) as u16;
    const LDX_MSH: u16 = (libc::BPF_LDX | libc::BPF_B | libc::BPF_MSH) as u16;
    const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const JSET: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
    const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let i = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    vec![
        i(LDH_ABS, 0, 0, 12),           // 0: ethertype
        i(JEQ, 0, 7, 0x0800),           // 1: IPv4? else 9
        i(LDB_ABS, 0, 0, 23),           // 2: protocol
        i(JEQ, 0, 11, 6),               // 3: TCP? else reject (15)
        i(LDH_ABS, 0, 0, 20),           // 4: flags and fragment offset
        i(JSET, 9, 0, 0x1fff),          // 5: a later fragment? reject (15)
        i(LDX_MSH, 0, 0, 14),           // 6: x = IPv4 header length
        i(LDB_IND, 0, 0, 14 + 13),      // 7: TCP flags
        i(JSET, 5, 6, 0x02),            // 8: SYN? accept (14) : reject (15)
        i(JEQ, 0, 5, 0x86dd),           // 9: IPv6? else reject (15)
        i(LDB_ABS, 0, 0, 14 + 6),       // 10: next header
        i(JEQ, 0, 3, 6),                // 11: TCP? else reject (15)
        i(LDB_ABS, 0, 0, 14 + 40 + 13), // 12: TCP flags
        i(JSET, 0, 1, 0x02),            // 13: SYN? accept (14) : reject (15)
        i(RET, 0, 0, 256),              // 14: accept the first 256 bytes
        i(RET, 0, 0, 0),                // 15: reject
    ]
}

impl SynWatcher {
    /// Opens the watcher on every interface. Needs CAP_NET_RAW, like the capture.
    pub fn open() -> io::Result<Self> {
        // SAFETY: socket(2) takes no pointers; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let program = syn_filter();
        let prog = libc::sock_fprog {
            len: program.len() as u16,
            filter: program.as_ptr().cast_mut(),
        };
        setsockopt(&fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)?;
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 250_000,
        };
        setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &timeout)?;
        // SAFETY: sockaddr_ll is plain old data; all zeroes is valid.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL.to_be();
        // SAFETY: `sll` is a valid sockaddr_ll and its exact size is passed.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const sll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            fd,
            buf: vec![0; 512],
        })
    }

    /// Waits up to 250 ms for the next SYN; `Ok(None)` on timeout.
    pub fn next_syn(&mut self) -> io::Result<Option<SynFrame<'_>>> {
        // SAFETY: sockaddr_ll is plain old data; all zeroes is valid.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: `self.buf` is a live writable buffer of its length; `sll` and `len` are valid
        // out-parameters of the sizes given.
        let n = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                self.buf.as_mut_ptr().cast(),
                self.buf.len(),
                0,
                (&raw mut sll).cast(),
                &mut len,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(e),
            };
        }
        let n = (n as usize).min(self.buf.len());
        Ok(Some(SynFrame {
            data: &self.buf[..n],
            outgoing: sll.sll_pkttype == libc::PACKET_OUTGOING,
        }))
    }
}
