//! The two adapters over the sans-IO [`Decoder`]: a whole file in memory, or a stream.

use super::decoder::{Decoder, Start, Step, header_eof_error};
use super::{CaptureError, Format, Packet};
use std::fmt;
use std::io::{self, Read};

/// Reads a capture held entirely in memory (for example a memory-mapped file).
///
/// ```
/// # fn f(bytes: &[u8]) -> Result<(), wire::capture::CaptureError> {
/// let mut r = wire::capture::SliceReader::new(bytes)?;
/// while let Some(pkt) = r.next_packet() {
///     let pkt = pkt?;
///     println!("{} bytes at {}", pkt.data.len(), pkt.ts_nanos);
/// }
/// if let Some(n) = r.truncated_tail() {
///     eprintln!("warning: the file ends inside a record ({n} bytes ignored)");
/// }
/// # Ok(()) }
/// ```
pub struct SliceReader<'a> {
    data: &'a [u8],
    pos: usize,
    decoder: Decoder,
    done: bool,
    tail: Option<usize>,
}

impl fmt::Debug for SliceReader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SliceReader")
            .field("format", &self.format())
            .field("len", &self.data.len())
            .field("position", &self.pos)
            .field("done", &self.done)
            .field("truncated_tail", &self.tail)
            .finish()
    }
}

impl<'a> SliceReader<'a> {
    /// Checks the magic number and the file header (for pcapng, the first Section Header
    /// Block).
    pub fn new(data: &'a [u8]) -> Result<Self, CaptureError> {
        match Decoder::start(data)? {
            Start::Ready { decoder, consumed } => Ok(SliceReader {
                data,
                pos: consumed,
                decoder,
                done: false,
                tail: None,
            }),
            Start::Need(n) => Err(header_eof_error(data, n)),
        }
    }

    pub fn format(&self) -> Format {
        self.decoder.format()
    }

    /// The next packet. `None` at the clean end of the data, or when the data ends inside a
    /// record (see [`truncated_tail`](Self::truncated_tail)). After an `Err`, always `None`.
    pub fn next_packet(&mut self) -> Option<Result<Packet<'a>, CaptureError>> {
        while !self.done {
            let buf: &'a [u8] = self.data.get(self.pos..).unwrap_or(&[]);
            match self.decoder.step(buf, self.pos as u64) {
                Ok(Step::Packet { meta, consumed }) => {
                    self.pos = self.pos.saturating_add(consumed);
                    return Some(Ok(meta.packet(buf)));
                }
                Ok(Step::Skip { consumed }) => self.pos = self.pos.saturating_add(consumed),
                Ok(Step::Need(_)) => {
                    self.done = true;
                    if !buf.is_empty() {
                        self.tail = Some(buf.len());
                    }
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }

    /// Bytes consumed so far (file header and complete records).
    pub fn position(&self) -> usize {
        self.pos
    }

    /// After `next_packet` returned `None`: `Some(bytes)` if the data ended inside a record
    /// (a warning: the capture was cut short, e.g. by a killed tcpdump), else `None`.
    pub fn truncated_tail(&self) -> Option<usize> {
        self.tail
    }
}

/// Initial read size and minimum buffer size of [`StreamReader`].
const READ_CHUNK: usize = 64 * 1024;

/// A reader's bytes in a growable buffer: `buf[start..end]` is not consumed yet.
struct Buffered<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
}

impl<R: Read> Buffered<R> {
    fn avail(&self) -> &[u8] {
        self.buf.get(self.start..self.end).unwrap_or(&[])
    }

    fn consume(&mut self, n: usize) {
        self.start = self.start.saturating_add(n).min(self.end);
    }

    /// Reads until at least `need` unconsumed bytes are buffered or the reader is exhausted.
    /// `need` is bounded by the decoder (a pcapng block is at most 16 MiB).
    fn fill(&mut self, need: usize) -> io::Result<()> {
        loop {
            let have = self.end - self.start;
            if have >= need || self.eof {
                return Ok(());
            }
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.start = 0;
                self.end = have;
            }
            let target = need.max(READ_CHUNK);
            if self.buf.len() < target {
                self.buf.resize(target, 0);
            } else if self.buf.len() > target.saturating_mul(4) {
                // Give back the memory of an earlier huge block.
                self.buf.truncate(target);
                self.buf.shrink_to_fit();
            }
            let spare = self.buf.get_mut(self.end..).unwrap_or(&mut []);
            let room = spare.len();
            match self.inner.read(spare) {
                Ok(0) => self.eof = true,
                // `min` guards against a reader that claims more than it was given.
                Ok(n) => self.end += n.min(room),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Reads a capture from a stream (stdin, a pipe), holding at most one record plus one read
/// chunk in memory. A lending iterator: each packet borrows the reader's buffer.
pub struct StreamReader<R: Read> {
    src: Buffered<R>,
    /// File offset of `src.avail()[0]`.
    pos: u64,
    decoder: Decoder,
    done: bool,
    tail: Option<usize>,
}

impl<R: Read> fmt::Debug for StreamReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamReader")
            .field("format", &self.format())
            .field("position", &self.pos)
            .field("buffered", &(self.src.end - self.src.start))
            .field("done", &self.done)
            .field("truncated_tail", &self.tail)
            .finish()
    }
}

impl<R: Read> StreamReader<R> {
    /// Reads and checks the magic number and the file header.
    pub fn new(r: R) -> Result<Self, CaptureError> {
        let mut src = Buffered {
            inner: r,
            buf: Vec::new(),
            start: 0,
            end: 0,
            eof: false,
        };
        let mut need = 4;
        loop {
            src.fill(need)?;
            let avail = src.avail();
            match Decoder::start(avail)? {
                Start::Ready { decoder, consumed } => {
                    src.consume(consumed);
                    return Ok(StreamReader {
                        src,
                        pos: consumed as u64,
                        decoder,
                        done: false,
                        tail: None,
                    });
                }
                Start::Need(n) => {
                    if src.eof || n <= avail.len() {
                        return Err(header_eof_error(avail, n));
                    }
                    need = n;
                }
            }
        }
    }

    pub fn format(&self) -> Format {
        self.decoder.format()
    }

    /// The next packet, `Ok(None)` at the end of the stream (clean, or inside a record: see
    /// [`truncated_tail`](Self::truncated_tail)). After an `Err`, always `Ok(None)`.
    pub fn next_packet(&mut self) -> Result<Option<Packet<'_>>, CaptureError> {
        while !self.done {
            let avail = self.src.avail();
            let have = avail.len();
            match self.decoder.step(avail, self.pos) {
                Ok(Step::Packet { meta, consumed }) => {
                    let base = self.src.start;
                    self.src.consume(consumed);
                    self.pos = self.pos.saturating_add(consumed as u64);
                    let record = self.src.buf.get(base..).unwrap_or(&[]);
                    return Ok(Some(meta.packet(record)));
                }
                Ok(Step::Skip { consumed }) => {
                    self.src.consume(consumed);
                    self.pos = self.pos.saturating_add(consumed as u64);
                }
                Ok(Step::Need(n)) => {
                    if self.src.eof || n <= have {
                        self.done = true;
                        if have > 0 {
                            self.tail = Some(have);
                        }
                    } else if let Err(e) = self.src.fill(n) {
                        self.done = true;
                        return Err(CaptureError::Io(e));
                    }
                }
                Err(e) => {
                    self.done = true;
                    return Err(e);
                }
            }
        }
        Ok(None)
    }

    /// Bytes consumed so far (file header and complete records).
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// After `next_packet` returned `Ok(None)`: `Some(bytes)` if the stream ended inside a
    /// record, else `None`.
    pub fn truncated_tail(&self) -> Option<usize> {
        self.tail
    }

    /// The underlying reader (bytes it already gave to the buffer are not returned to it).
    pub fn into_inner(self) -> R {
        self.src.inner
    }
}
