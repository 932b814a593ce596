//! Opening and reading capture files (pcap, pcapng) from disk or standard input.
//!
//! A regular file is memory-mapped and read with [`SliceReader`]: no copy, and the pages
//! already read are handed back to the kernel every [`RELEASE_EVERY`] bytes so that reading a
//! multi-gigabyte capture keeps a small resident set. Standard input (`-`), FIFOs and files
//! that cannot be mapped are read with [`StreamReader`].

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use wire::capture::{CaptureError, Format, Packet, SliceReader, StreamReader};

/// How often (in bytes read) `on_progress` is called, roughly.
pub const PROGRESS_EVERY: u64 = 4 << 20;
/// How often (in bytes read) the pages of a mapped file that were already read are released.
pub const RELEASE_EVERY: usize = 16 << 20;

/// What reading one capture gave.
#[derive(Debug)]
pub struct ReadSummary {
    pub format: Format,
    /// Packets delivered to `on_packet`.
    pub packets: u64,
    /// File bytes consumed (headers and complete records).
    pub bytes: u64,
    /// `Some(n)`: the file ended `n` bytes into an incomplete record (it was cut short, for
    /// example by a killed capture). A warning; every complete packet was delivered.
    pub truncated_tail: Option<usize>,
    /// A malformed record stopped reading early; the packets before it were delivered.
    pub error: Option<CaptureError>,
}

/// Why a capture could not be opened. Each variant names the file.
#[derive(Debug)]
pub enum OpenError {
    NotFound {
        path: PathBuf,
    },
    PermissionDenied {
        path: PathBuf,
    },
    IsADirectory {
        path: PathBuf,
    },
    Io {
        path: PathBuf,
        source: io::Error,
    },
    /// The file opened, but it is not a pcap/pcapng capture (or its file header is broken).
    NotACapture {
        path: PathBuf,
        source: CaptureError,
    },
}

impl OpenError {
    pub fn path(&self) -> &Path {
        match self {
            OpenError::NotFound { path }
            | OpenError::PermissionDenied { path }
            | OpenError::IsADirectory { path }
            | OpenError::Io { path, .. }
            | OpenError::NotACapture { path, .. } => path,
        }
    }

    fn from_io(path: &Path, e: io::Error) -> Self {
        let path = path.to_path_buf();
        match e.kind() {
            io::ErrorKind::NotFound => OpenError::NotFound { path },
            io::ErrorKind::PermissionDenied => OpenError::PermissionDenied { path },
            io::ErrorKind::IsADirectory => OpenError::IsADirectory { path },
            _ => OpenError::Io { path, source: e },
        }
    }

    fn from_capture(path: &Path, e: CaptureError) -> Self {
        match e {
            CaptureError::Io(source) => OpenError::from_io(path, source),
            source => OpenError::NotACapture {
                path: path.to_path_buf(),
                source,
            },
        }
    }
}

/// The path as shown to users: `-` is standard input.
struct Shown<'a>(&'a Path);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == Path::new("-") {
            f.write_str("standard input")
        } else {
            write!(f, "{}", self.0.display())
        }
    }
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = Shown(self.path());
        match self {
            OpenError::NotFound { .. } => write!(f, "cannot read {p}: no such file; check the path"),
            OpenError::PermissionDenied { .. } => write!(
                f,
                "cannot read {p}: permission denied; make the file readable by this user or run as one who can read it"
            ),
            OpenError::IsADirectory { .. } => {
                write!(
                    f,
                    "cannot read {p}: it is a directory; name a .pcap or .pcapng file inside it"
                )
            }
            OpenError::Io { source, .. } => write!(f, "cannot read {p}: {source}"),
            OpenError::NotACapture { source, .. } => write!(f, "{p} is not a capture: {source}"),
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpenError::Io { source, .. } => Some(source),
            OpenError::NotACapture { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Reads one capture. `path` "-" means standard input.
///
/// `on_packet` is called for every packet, in file order. `on_progress(done, total)` is called
/// about every 4 MiB and once at the end, with the bytes consumed so far and the file size (0
/// when unknown, e.g. for a pipe).
///
/// `Err` only when the capture cannot be opened or its header is not a capture's; a damaged
/// record later in the file ends reading early and is reported in [`ReadSummary::error`].
pub fn read_capture(
    path: &Path,
    mut on_packet: impl FnMut(&Packet<'_>),
    mut on_progress: impl FnMut(u64, u64),
) -> Result<ReadSummary, OpenError> {
    if path == Path::new("-") {
        let stdin = io::stdin().lock();
        return read_stream(path, stdin, 0, &mut on_packet, &mut on_progress);
    }
    let file = File::open(path).map_err(|e| OpenError::from_io(path, e))?;
    let meta = file.metadata().map_err(|e| OpenError::from_io(path, e))?;
    if meta.is_dir() {
        // Linux lets a directory be opened; reading it fails later with a vaguer error.
        return Err(OpenError::IsADirectory {
            path: path.to_path_buf(),
        });
    }
    if meta.is_file() {
        if meta.len() == 0 {
            return Err(OpenError::NotACapture {
                path: path.to_path_buf(),
                source: CaptureError::Empty,
            });
        }
        // SAFETY: the map is private and read-only (MAP_PRIVATE, PROT_READ), so nothing in
        // this process writes to it. The remaining hazard of every file mapping is another
        // process truncating or rewriting the file while we read: we would then see changed
        // bytes or take SIGBUS. That is the accepted contract of reading a capture by mmap
        // (tcpdump and Wireshark readers share it); the decoder bounds-checks every length
        // against the slice, so changed bytes cannot make it read out of bounds.
        let mapped = unsafe { memmap2::MmapOptions::new().map_copy_read_only(&file) };
        if let Ok(map) = mapped {
            return read_mapped(path, &map, &mut on_packet, &mut on_progress);
        }
        // Some file systems cannot map files: read them as a stream instead.
    }
    let total = if meta.is_file() { meta.len() } else { 0 };
    read_stream(
        path,
        BufReader::with_capacity(64 << 10, file),
        total,
        &mut on_packet,
        &mut on_progress,
    )
}

/// Calls `on_progress` when `done` passed the next mark.
struct Progress<'f, F: FnMut(u64, u64)> {
    f: &'f mut F,
    total: u64,
    next: u64,
}

impl<F: FnMut(u64, u64)> Progress<'_, F> {
    fn update(&mut self, done: u64) {
        if done >= self.next {
            (self.f)(done, self.total);
            self.next = done.saturating_add(PROGRESS_EVERY);
        }
    }

    fn finish(&mut self, done: u64) {
        (self.f)(done, self.total);
    }
}

fn read_mapped(
    path: &Path,
    map: &memmap2::Mmap,
    on_packet: &mut impl FnMut(&Packet<'_>),
    on_progress: &mut impl FnMut(u64, u64),
) -> Result<ReadSummary, OpenError> {
    let data: &[u8] = map;
    let mut reader = SliceReader::new(data).map_err(|e| OpenError::from_capture(path, e))?;
    advise_sequential(map);
    let mut progress = Progress {
        f: on_progress,
        total: data.len() as u64,
        next: PROGRESS_EVERY,
    };
    let page = page_size();
    let mut released = 0usize;
    let mut packets = 0u64;
    let mut error = None;
    loop {
        match reader.next_packet() {
            None => break,
            Some(Ok(p)) => {
                on_packet(&p);
                packets += 1;
            }
            Some(Err(e)) => {
                error = Some(e);
                break;
            }
        }
        // The packet given to `on_packet` is no longer borrowed: everything before the
        // reader's position is done with.
        let pos = reader.position();
        progress.update(pos as u64);
        if pos.saturating_sub(released) >= RELEASE_EVERY {
            let end = pos - pos % page;
            if end > released {
                release_pages(map, released, end - released);
                released = end;
            }
        }
    }
    let pos = reader.position();
    progress.finish(pos as u64);
    Ok(ReadSummary {
        format: reader.format(),
        packets,
        bytes: pos as u64,
        truncated_tail: reader.truncated_tail(),
        error,
    })
}

fn read_stream<R: Read>(
    path: &Path,
    r: R,
    total: u64,
    on_packet: &mut impl FnMut(&Packet<'_>),
    on_progress: &mut impl FnMut(u64, u64),
) -> Result<ReadSummary, OpenError> {
    let mut reader = StreamReader::new(r).map_err(|e| OpenError::from_capture(path, e))?;
    let mut progress = Progress {
        f: on_progress,
        total,
        next: PROGRESS_EVERY,
    };
    let mut packets = 0u64;
    let mut error = None;
    loop {
        match reader.next_packet() {
            Ok(Some(p)) => {
                on_packet(&p);
                packets += 1;
            }
            Ok(None) => break,
            Err(e) => {
                error = Some(e);
                break;
            }
        }
        progress.update(reader.position());
    }
    progress.finish(reader.position());
    Ok(ReadSummary {
        format: reader.format(),
        packets,
        bytes: reader.position(),
        truncated_tail: reader.truncated_tail(),
        error,
    })
}

#[cfg(unix)]
fn advise_sequential(map: &memmap2::Mmap) {
    // Only a hint (more read-ahead); failing to give it changes nothing else.
    let _ = map.advise(memmap2::Advice::Sequential);
}

#[cfg(not(unix))]
fn advise_sequential(_map: &memmap2::Mmap) {}

/// Drops `map[offset..offset + len]` from this process's resident set.
#[cfg(unix)]
fn release_pages(map: &memmap2::Mmap, offset: usize, len: usize) {
    // SAFETY: MADV_DONTNEED is "unchecked" in memmap2 because on a writable or anonymous map
    // it throws away data (the next access sees zeros or the file's bytes instead of what was
    // written). Our map is a read-only private file map that nobody can have written to, so
    // the next access to a released page simply reads it again from the file: the bytes are
    // unchanged. Besides, we never read those bytes again: `offset..offset + len` lies
    // entirely before the reader's position, and the packets borrowed from it have already
    // been handed to `on_packet` and dropped. The range is page-aligned and in bounds.
    let released = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, len) };
    // Only a memory-use optimisation: failing changes nothing.
    let _ = released;
}

#[cfg(not(unix))]
fn release_pages(_map: &memmap2::Mmap, _offset: usize, _len: usize) {}

#[cfg(unix)]
fn page_size() -> usize {
    // SAFETY: sysconf only reads a system constant; it takes no pointers and is thread-safe.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n)
        .ok()
        .filter(|&n| n > 0 && n.is_power_of_two())
        .unwrap_or(4096)
}

#[cfg(not(unix))]
fn page_size() -> usize {
    4096
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use wire::capture::{LinkType, PcapNgWriter, PcapWriter};

    /// A fresh path in the temp dir; removed when dropped.
    struct TempPath(PathBuf);

    impl TempPath {
        fn new(name: &str) -> Self {
            static N: AtomicU64 = AtomicU64::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            TempPath(std::env::temp_dir().join(format!("netvigil-os-{}-{n}-{name}", std::process::id())))
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
            let _ = std::fs::remove_dir(&self.0);
        }
    }

    #[derive(Debug, PartialEq)]
    struct Got {
        ts: i64,
        interface: u32,
        link: LinkType,
        orig_len: u32,
        data: Vec<u8>,
    }

    /// The summary, the packets and the `on_progress` calls.
    type ReadAll = (ReadSummary, Vec<Got>, Vec<(u64, u64)>);

    fn read_all(path: &Path) -> Result<ReadAll, OpenError> {
        let mut got = Vec::new();
        let mut progress = Vec::new();
        let summary = read_capture(
            path,
            |p| {
                got.push(Got {
                    ts: p.ts_nanos,
                    interface: p.interface,
                    link: p.link,
                    orig_len: p.orig_len,
                    data: p.data.to_vec(),
                })
            },
            |done, total| progress.push((done, total)),
        )?;
        Ok((summary, got, progress))
    }

    fn pcapng_file() -> Vec<u8> {
        let mut w = PcapNgWriter::new(Vec::new()).unwrap();
        let eth = w.add_interface(LinkType::ETHERNET, 0, Some("eth0")).unwrap();
        let raw = w.add_interface(LinkType::RAW, 0, None).unwrap();
        for i in 0..10u8 {
            let iface = if i % 2 == 0 { eth } else { raw };
            w.write_packet(iface, 1_000 + i64::from(i), 60, &[i; 60], None)
                .unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn reads_a_pcapng_file() {
        let bytes = pcapng_file();
        let tmp = TempPath::new("ok.pcapng");
        std::fs::write(&tmp.0, &bytes).unwrap();
        let (summary, got, progress) = read_all(&tmp.0).unwrap();
        assert_eq!(summary.format, Format::PcapNg);
        assert_eq!(summary.packets, 10);
        assert_eq!(summary.bytes, bytes.len() as u64);
        assert_eq!(summary.truncated_tail, None);
        assert!(summary.error.is_none());
        assert_eq!(got.len(), 10);
        assert_eq!(
            got[3],
            Got {
                ts: 1_003,
                interface: 1,
                link: LinkType::RAW,
                orig_len: 60,
                data: vec![3; 60]
            }
        );
        assert_eq!(progress, vec![(bytes.len() as u64, bytes.len() as u64)]);
    }

    #[test]
    fn missing_file_is_not_found() {
        let tmp = TempPath::new("missing.pcap");
        let err = read_all(&tmp.0).unwrap_err();
        assert!(matches!(err, OpenError::NotFound { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&tmp.0.display().to_string()), "{msg}");
        assert!(msg.contains("no such file"), "{msg}");
    }

    #[test]
    fn text_file_is_not_a_capture() {
        let tmp = TempPath::new("notes.txt");
        std::fs::write(&tmp.0, "hello, these are notes\n").unwrap();
        let err = read_all(&tmp.0).unwrap_err();
        assert!(
            matches!(
                err,
                OpenError::NotACapture {
                    source: CaptureError::NotACapture { .. },
                    ..
                }
            ),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("{} is not a capture: not a pcap", tmp.0.display())),
            "{msg}"
        );

        std::fs::write(&tmp.0, "").unwrap();
        let err = read_all(&tmp.0).unwrap_err();
        assert!(
            matches!(
                err,
                OpenError::NotACapture {
                    source: CaptureError::Empty,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string().ends_with("is not a capture: the file is empty"),
            "{err}"
        );
    }

    #[test]
    fn directory_is_reported() {
        let tmp = TempPath::new("dir");
        std::fs::create_dir(&tmp.0).unwrap();
        let err = read_all(&tmp.0).unwrap_err();
        assert!(matches!(err, OpenError::IsADirectory { .. }), "{err:?}");
        assert!(err.to_string().contains("is a directory"), "{err}");
    }

    #[test]
    fn cut_file_reports_truncated_tail() {
        let bytes = pcapng_file();
        let tmp = TempPath::new("cut.pcapng");
        // Each EPB here is 32 + 60 = 92 bytes; cut 50 bytes into the last one.
        std::fs::write(&tmp.0, &bytes[..bytes.len() - 42]).unwrap();
        let (summary, got, _) = read_all(&tmp.0).unwrap();
        assert_eq!(summary.packets, 9);
        assert_eq!(got.len(), 9);
        assert_eq!(summary.truncated_tail, Some(50));
        assert!(summary.error.is_none());
        assert_eq!(summary.bytes, (bytes.len() - 92) as u64);
    }

    #[test]
    fn malformed_record_stops_early_with_packets_delivered() {
        let mut w = PcapWriter::new(Vec::new(), LinkType::ETHERNET, 0, false).unwrap();
        w.write_packet(1_000, 4, &[1, 2, 3, 4]).unwrap();
        let mut bytes = w.finish().unwrap();
        bytes.extend([0; 8]);
        bytes.extend(1_000_000u32.to_le_bytes());
        bytes.extend(1_000_000u32.to_le_bytes());
        let tmp = TempPath::new("bad.pcap");
        std::fs::write(&tmp.0, &bytes).unwrap();
        let (summary, got, _) = read_all(&tmp.0).unwrap();
        assert_eq!(got.len(), 1);
        let err = summary.error.expect("an error");
        assert_eq!(err.offset(), Some(44));
    }

    #[test]
    fn big_file_progress_and_page_release() {
        // ~20 MiB, so progress fires several times and pages are released once.
        let mut w = PcapWriter::new(Vec::new(), LinkType::ETHERNET, 0, true).unwrap();
        let data = vec![0xabu8; 1500];
        let n = 14_000u64;
        for i in 0..n {
            w.write_packet(i as i64, 1500, &data).unwrap();
        }
        let bytes = w.finish().unwrap();
        let tmp = TempPath::new("big.pcap");
        std::fs::write(&tmp.0, &bytes).unwrap();
        let total = bytes.len() as u64;
        let mut count = 0u64;
        let mut all_ok = true;
        let mut progress = Vec::new();
        let summary = read_capture(
            &tmp.0,
            |p| {
                all_ok &= p.data == &data[..] && p.ts_nanos == count as i64;
                count += 1;
            },
            |d, t| progress.push((d, t)),
        )
        .unwrap();
        assert_eq!((summary.packets, count, summary.bytes), (n, n, total));
        assert!(all_ok);
        assert!(progress.len() >= 4 && progress.len() <= 6, "{progress:?}");
        assert!(
            progress
                .windows(2)
                .all(|w| w[1].0 > w[0].0 && w[1].0 - w[0].0 >= PROGRESS_EVERY.min(total - w[0].0))
        );
        assert!(progress.iter().all(|&(_, t)| t == total));
        assert_eq!(progress.last(), Some(&(total, total)));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn fifo_falls_back_to_stream() {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let bytes = pcapng_file();
        let tmp = TempPath::new("fifo");
        let c = CString::new(tmp.0.as_os_str().as_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
        let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
        assert_eq!(rc, 0, "mkfifo: {}", io::Error::last_os_error());
        let path = tmp.0.clone();
        let writer = std::thread::spawn(move || std::fs::write(path, bytes));
        let (summary, got, progress) = read_all(&tmp.0).unwrap();
        writer.join().unwrap().unwrap();
        assert_eq!((summary.packets, got.len()), (10, 10));
        assert_eq!(progress.last().map(|p| p.1), Some(0), "a FIFO has no known size");
    }
}
