//! Live capture through libpcap (the `pcap` crate; cargo feature `libpcap`): the capture route
//! for macOS (BPF devices), the BSDs and Windows (Npcap), with the same shape as the Linux
//! AF_PACKET source (`crate::linux::afpacket::AfPacket`): open one, several or all
//! interfaces with an optional filter, take frames in batches (timestamp, link type, data),
//! read the kernel's drop counters.
//!
//! - The filter is a tcpdump expression compiled by libpcap (`pcap_compile`) and applied in
//!   the kernel (BPF) or by Npcap's driver.
//! - [`PcapInterfaces::All`] is libpcap's `any` device on Linux (cooked `LINUX_SLL` frames),
//!   and every interface that is up and has a link type netvigil decodes elsewhere (libpcap
//!   has no `any` device there).
//! - Handles are non-blocking; in immediate mode except on Linux, where libpcap's TPACKET_V3
//!   ring hands frames over within 10 ms. [`PcapCapture::next_batch`] waits on their
//!   file descriptors with `poll(2)` on Unix (at most 100 ms at a time, so a BPF device whose
//!   `poll` misbehaves, as on old macOS, still gets read), and checks them every millisecond on
//!   Windows.
//! - Timestamps are libpcap's microseconds (nanosecond precision is not available from every
//!   libpcap, notably Npcap), given in nanoseconds.
//! - [`PcapCapture::stats`] turns `pcap_stats` (totals since open, 32-bit, wrapping) into
//!   counts since the last call and totals, like `AfPacket::stats`.
//!
//! Privilege: Linux needs CAP_NET_RAW (and CAP_NET_ADMIN for promiscuous mode); macOS read
//! access to `/dev/bpf*` (root, or the `access_bpf` group that Wireshark's ChmodBPF sets up);
//! Windows, Npcap installed (non-administrators may capture if Npcap was installed so).

use pcap::{Active, Capture, Device};
use std::fmt;
use std::time::{Duration, Instant};
use wire::capture::LinkType;

/// Which interfaces to capture on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PcapInterfaces {
    /// Every interface (`any` on Linux; each interface that is up elsewhere).
    All,
    /// These interfaces, by the name libpcap uses (`en0`, `eth0`, `\Device\NPF_{GUID}`).
    Named(Vec<String>),
}

/// Capture settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PcapConfig {
    /// Bytes kept of each frame. Default 262144 (whole frames).
    pub snaplen: i32,
    /// The kernel buffer per interface, bytes. Default 8 MiB.
    pub buffer_size: i32,
    /// Promiscuous mode on named interfaces. Default off.
    pub promiscuous: bool,
}

impl Default for PcapConfig {
    fn default() -> Self {
        PcapConfig {
            snaplen: 262_144,
            buffer_size: 8 << 20,
            promiscuous: false,
        }
    }
}

/// One captured frame, borrowed for the duration of the callback.
#[derive(Clone, Copy, Debug)]
pub struct PcapFrame<'a> {
    /// Nanoseconds since the Unix epoch (microsecond resolution).
    pub ts_nanos: i64,
    /// Index of the interface in [`PcapCapture::interfaces`].
    pub iface: usize,
    pub link: LinkType,
    /// Length on the wire; `data` is shorter when cut by the snap length.
    pub orig_len: u32,
    pub data: &'a [u8],
}

/// libpcap's counters, summed over the interfaces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PcapStats {
    /// Frames that passed the filter since the last call (on Linux including the dropped ones,
    /// as the kernel counts them).
    pub packets: u64,
    /// Frames dropped since the last call because the buffer was full.
    pub drops: u64,
    /// Frames the interface or its driver dropped since the last call (not every platform
    /// counts them).
    pub if_drops: u64,
    pub total_packets: u64,
    pub total_drops: u64,
    pub total_if_drops: u64,
}

/// Why a libpcap capture could not be opened. Each variant names the interface and says what
/// to do.
#[derive(Debug)]
pub enum PcapOpenError {
    /// The system refused access to the capture device.
    NeedsPrivilege { iface: String, detail: String },
    /// libpcap knows no interface of that name. `available` lists those it knows.
    NoSuchInterface { name: String, available: Vec<String> },
    /// The interface's frames are of a link type netvigil does not decode.
    UnsupportedLink { iface: String, dlt: i32 },
    /// libpcap could not compile the filter expression.
    BadFilter { filter: String, detail: String },
    /// The settings cannot work.
    BadConfig { what: String },
    /// Another libpcap call failed; `op` names it.
    Pcap {
        iface: String,
        op: &'static str,
        detail: String,
    },
}

fn privilege_hint() -> &'static str {
    if cfg!(target_os = "linux") {
        "run `sudo setcap cap_net_raw,cap_net_admin=eip $(which netvigil)` or run as root"
    } else if cfg!(target_os = "macos") {
        "capturing needs read access to /dev/bpf*: run with sudo, or install Wireshark's \
         ChmodBPF (it adds an access_bpf group) and join that group"
    } else if cfg!(windows) {
        "install Npcap (https://npcap.com), allowing non-administrators to capture, or run as \
         Administrator"
    } else {
        "run as root or give your user read access to the BPF devices (/dev/bpf*)"
    }
}

impl fmt::Display for PcapOpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PcapOpenError::NeedsPrivilege { iface, detail } => write!(
                f,
                "not allowed to capture on {iface} ({detail}): {}",
                privilege_hint()
            ),
            PcapOpenError::NoSuchInterface { name, available } => {
                write!(
                    f,
                    "cannot capture on {name}: libpcap knows no interface of that name"
                )?;
                if available.is_empty() {
                    f.write_str("; list interfaces with `tcpdump -D`")
                } else {
                    write!(f, "; available: {}", available.join(", "))
                }
            }
            PcapOpenError::UnsupportedLink { iface, dlt } => write!(
                f,
                "cannot capture on {iface}: its link type (DLT {dlt}) is not one netvigil decodes \
                 (Ethernet, BSD loopback, raw IP, Linux cooked); capture on another interface"
            ),
            PcapOpenError::BadFilter { filter, detail } => write!(
                f,
                "the capture filter `{filter}` is not valid: {detail}; check it with `tcpdump -d '{filter}'`"
            ),
            PcapOpenError::BadConfig { what } => write!(f, "invalid capture settings: {what}"),
            PcapOpenError::Pcap { iface, op, detail } => {
                write!(f, "cannot capture on {iface}: {op} failed: {detail}")
            }
        }
    }
}

impl std::error::Error for PcapOpenError {}

/// Why reading a libpcap capture failed.
#[derive(Debug)]
pub enum PcapError {
    /// Reading frames from an interface failed (it went away, the device closed).
    Read { iface: String, detail: String },
    /// `pcap_stats` failed.
    Stats { iface: String, detail: String },
    /// Waiting for frames failed.
    Poll(std::io::Error),
}

impl fmt::Display for PcapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PcapError::Read { iface, detail } => write!(f, "reading frames from {iface} failed: {detail}"),
            PcapError::Stats { iface, detail } => {
                write!(f, "cannot read the capture statistics of {iface}: {detail}")
            }
            PcapError::Poll(e) => write!(f, "waiting for captured frames failed: {e}"),
        }
    }
}

impl std::error::Error for PcapError {}

/// A libpcap data link type (`DLT_*`, what `pcap_datalink` returns) as the capture-file
/// link type netvigil decodes (`LINKTYPE_*`), or `None` for one it does not decode. The two
/// numberings agree except for raw IP and OpenBSD's loopback (`DLT_RAW` is 12, or 14 on
/// OpenBSD, where 12 is `DLT_LOOP`).
pub fn link_type_from_dlt(dlt: i32, openbsd: bool) -> Option<LinkType> {
    Some(match dlt {
        0 => LinkType::NULL,
        1 => LinkType::ETHERNET,
        12 if openbsd => LinkType::LOOP,
        12 => LinkType::RAW,
        14 if openbsd => LinkType::RAW,
        101 => LinkType::RAW,
        108 => LinkType::LOOP,
        113 => LinkType::LINUX_SLL,
        228 => LinkType::IPV4,
        229 => LinkType::IPV6,
        276 => LinkType::LINUX_SLL2,
        _ => return None,
    })
}

fn classify_open(iface: &str, op: &'static str, e: pcap::Error) -> PcapOpenError {
    let detail = e.to_string();
    let lower = detail.to_lowercase();
    if lower.contains("permission") || lower.contains("not permitted") || lower.contains("access is denied") {
        PcapOpenError::NeedsPrivilege {
            iface: iface.to_string(),
            detail,
        }
    } else if lower.contains("no such device")
        || lower.contains("doesn't exist")
        || lower.contains("not found")
    {
        PcapOpenError::NoSuchInterface {
            name: iface.to_string(),
            available: device_names(),
        }
    } else {
        PcapOpenError::Pcap {
            iface: iface.to_string(),
            op,
            detail,
        }
    }
}

/// The interfaces libpcap knows (`pcap_findalldevs`); empty when it cannot list them.
pub fn device_names() -> Vec<String> {
    Device::list()
        .map(|l| l.into_iter().map(|d| d.name).collect())
        .unwrap_or_default()
}

struct Handle {
    name: String,
    link: LinkType,
    cap: Capture<Active>,
    /// `pcap_stats` totals at the last `stats` call.
    last: (u32, u32, u32),
}

/// A live libpcap capture on one or more interfaces.
pub struct PcapCapture {
    handles: Vec<Handle>,
    first: usize,
    totals: (u64, u64, u64),
}

impl fmt::Debug for PcapCapture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PcapCapture")
            .field("interfaces", &self.interfaces())
            .field("totals", &self.totals)
            .finish_non_exhaustive()
    }
}

impl PcapCapture {
    /// Opens the capture and applies `filter` (a tcpdump expression) to every interface.
    pub fn open(
        ifaces: &PcapInterfaces,
        cfg: &PcapConfig,
        filter: Option<&str>,
    ) -> Result<Self, PcapOpenError> {
        if cfg.snaplen <= 0 || cfg.buffer_size <= 0 {
            return Err(PcapOpenError::BadConfig {
                what: format!(
                    "snaplen ({}) and buffer_size ({}) must be positive; try 262144 and 8388608",
                    cfg.snaplen, cfg.buffer_size
                ),
            });
        }
        let names: Vec<(String, bool)> = match ifaces {
            PcapInterfaces::Named(names) => {
                if names.is_empty() {
                    return Err(PcapOpenError::BadConfig {
                        what: "no interface named; name at least one or capture on all".into(),
                    });
                }
                for (i, n) in names.iter().enumerate() {
                    if names[..i].contains(n) {
                        return Err(PcapOpenError::BadConfig {
                            what: format!("interface {n} is named twice; name it once"),
                        });
                    }
                }
                names.iter().map(|n| (n.clone(), true)).collect()
            }
            PcapInterfaces::All if cfg!(target_os = "linux") => vec![("any".to_string(), true)],
            PcapInterfaces::All => Device::list()
                .map_err(|e| classify_open("all interfaces", "listing interfaces (pcap_findalldevs)", e))?
                .into_iter()
                .filter(|d| d.flags.is_up())
                .map(|d| (d.name, false))
                .collect(),
        };
        let mut handles = Vec::with_capacity(names.len());
        let mut first_skipped = None;
        for (name, required) in names {
            match open_one(&name, cfg, filter) {
                Ok(h) => handles.push(h),
                // Listing everything: interfaces that cannot be decoded or opened are left out
                // (a filter error is the same for all and is reported).
                Err(e @ (PcapOpenError::UnsupportedLink { .. } | PcapOpenError::Pcap { .. }))
                    if !required =>
                {
                    first_skipped.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        if handles.is_empty() {
            return Err(first_skipped.unwrap_or(PcapOpenError::BadConfig {
                what: "no interface is up; name one with -i (list them with `tcpdump -D`)".into(),
            }));
        }
        Ok(PcapCapture {
            handles,
            first: 0,
            totals: (0, 0, 0),
        })
    }

    /// The interfaces captured on, with their link types, in the order of
    /// [`PcapFrame::iface`].
    pub fn interfaces(&self) -> Vec<(String, LinkType)> {
        self.handles.iter().map(|h| (h.name.clone(), h.link)).collect()
    }

    /// Waits up to `timeout` for frames and calls `f` for each; returns how many were
    /// delivered. Returns as soon as one pass over the interfaces delivered frames, or with
    /// `Ok(0)` when `timeout` passes without any.
    pub fn next_batch(
        &mut self,
        timeout: Duration,
        mut f: impl FnMut(&PcapFrame<'_>),
    ) -> Result<usize, PcapError> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let n = self.handles.len();
            let mut delivered = 0;
            for k in 0..n {
                let i = (self.first + k) % n;
                let h = &mut self.handles[i];
                let link = h.link;
                let got = h
                    .cap
                    .dispatch(None, |p| {
                        let ts = &p.header.ts;
                        // `time_t`/`suseconds_t` are i64 here but i32 on other platforms.
                        #[allow(clippy::useless_conversion)]
                        let ts_nanos = i64::from(ts.tv_sec)
                            .saturating_mul(1_000_000_000)
                            .saturating_add(i64::from(ts.tv_usec).saturating_mul(1000));
                        f(&PcapFrame {
                            ts_nanos,
                            iface: i,
                            link,
                            orig_len: p.header.len,
                            data: p.data,
                        });
                    })
                    .map_err(|e| PcapError::Read {
                        iface: h.name.clone(),
                        detail: e.to_string(),
                    })?;
                delivered += got;
            }
            self.first = (self.first + 1) % n.max(1);
            if delivered > 0 {
                return Ok(delivered);
            }
            let left = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(0);
                    }
                    left
                }
                None => Duration::from_millis(100),
            };
            self.wait(left.min(Duration::from_millis(100)))?;
        }
    }

    #[cfg(unix)]
    fn wait(&self, dur: Duration) -> Result<(), PcapError> {
        use std::os::fd::AsRawFd;
        let mut pfds: Vec<libc::pollfd> = self
            .handles
            .iter()
            .map(|h| libc::pollfd {
                fd: h.cap.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let ms = dur.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
        // SAFETY: `pfds` is a valid array of `pfds.len()` pollfd entries for the call.
        let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(PcapError::Poll(e));
            }
        }
        Ok(())
    }

    #[cfg(not(unix))]
    fn wait(&self, dur: Duration) -> Result<(), PcapError> {
        std::thread::sleep(dur.min(Duration::from_millis(1)));
        Ok(())
    }

    /// Counters since the last call, and totals since open, summed over the interfaces.
    pub fn stats(&mut self) -> Result<PcapStats, PcapError> {
        let mut out = PcapStats::default();
        for h in &mut self.handles {
            let s = h.cap.stats().map_err(|e| PcapError::Stats {
                iface: h.name.clone(),
                detail: e.to_string(),
            })?;
            let (r, d, i) = h.last;
            out.packets += u64::from(s.received.wrapping_sub(r));
            out.drops += u64::from(s.dropped.wrapping_sub(d));
            out.if_drops += u64::from(s.if_dropped.wrapping_sub(i));
            h.last = (s.received, s.dropped, s.if_dropped);
        }
        self.totals.0 += out.packets;
        self.totals.1 += out.drops;
        self.totals.2 += out.if_drops;
        (out.total_packets, out.total_drops, out.total_if_drops) = self.totals;
        Ok(out)
    }
}

fn open_one(name: &str, cfg: &PcapConfig, filter: Option<&str>) -> Result<Handle, PcapOpenError> {
    let inactive = Capture::from_device(name).map_err(|e| classify_open(name, "pcap_create", e))?;
    let mut cap = inactive
        .snaplen(cfg.snaplen)
        .buffer_size(cfg.buffer_size)
        .promisc(cfg.promiscuous && name != "any")
        // Linux: TPACKET_V3 blocks handed over within the 10 ms timeout (immediate mode would
        // switch libpcap to TPACKET_V2, whose fixed slots of snaplen bytes make a 4 MiB buffer
        // hold a few dozen frames). BPF and Npcap: deliver each frame at once.
        .immediate_mode(!cfg!(target_os = "linux"))
        .timeout(10)
        .open()
        .map_err(|e| classify_open(name, "pcap_activate", e))?;
    let dlt = cap.get_datalink().0;
    let link =
        link_type_from_dlt(dlt, cfg!(target_os = "openbsd")).ok_or(PcapOpenError::UnsupportedLink {
            iface: name.to_string(),
            dlt,
        })?;
    if let Some(expr) = filter {
        cap.filter(expr, true).map_err(|e| PcapOpenError::BadFilter {
            filter: expr.to_string(),
            detail: e.to_string(),
        })?;
    }
    let cap = cap.setnonblock().map_err(|e| PcapOpenError::Pcap {
        iface: name.to_string(),
        op: "pcap_setnonblock",
        detail: e.to_string(),
    })?;
    Ok(Handle {
        name: name.to_string(),
        link,
        cap,
        last: (0, 0, 0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dlt_numbers() {
        assert_eq!(link_type_from_dlt(1, false), Some(LinkType::ETHERNET));
        assert_eq!(link_type_from_dlt(0, false), Some(LinkType::NULL));
        assert_eq!(link_type_from_dlt(12, false), Some(LinkType::RAW));
        assert_eq!(link_type_from_dlt(12, true), Some(LinkType::LOOP));
        assert_eq!(link_type_from_dlt(14, true), Some(LinkType::RAW));
        assert_eq!(link_type_from_dlt(14, false), None);
        assert_eq!(link_type_from_dlt(113, false), Some(LinkType::LINUX_SLL));
        assert_eq!(link_type_from_dlt(127, false), None, "802.11 radiotap");
    }
}
