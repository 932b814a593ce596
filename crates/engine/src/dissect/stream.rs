//! In-order delivery of one TCP direction's bytes to a dissector, with a bounded buffer for
//! segments that arrive early. Retransmitted and overlapping bytes are delivered once.

/// Bytes buffered out of order per direction, at most.
pub const MAX_BUFFERED: usize = 64 << 10;
const MAX_SEGMENTS: usize = 128;

#[derive(Debug, Default)]
pub struct Stream {
    /// Sequence number of the next byte to deliver.
    next: Option<u32>,
    ooo: Vec<(u32, Vec<u8>)>,
    ooo_bytes: usize,
    /// Segments dropped because the buffer was full (the stream has a hole there).
    pub dropped: u32,
    /// Bytes delivered so far.
    pub delivered: u64,
}

/// `a - b` in sequence space, as a signed distance.
fn dist(a: u32, b: u32) -> i64 {
    i64::from(a.wrapping_sub(b) as i32)
}

impl Stream {
    /// The SYN's sequence number: data starts one after it.
    pub fn set_isn(&mut self, isn: u32) {
        if self.next.is_none() {
            self.next = Some(isn.wrapping_add(1));
        }
    }

    /// Accepts a segment; calls `deliver` with each run of bytes that became contiguous.
    pub fn push(&mut self, seq: u32, data: &[u8], mut deliver: impl FnMut(&[u8])) {
        if data.is_empty() {
            return;
        }
        let next = *self.next.get_or_insert(seq);
        let off = dist(seq, next);
        if off > 0 {
            if self.ooo_bytes + data.len() > MAX_BUFFERED || self.ooo.len() >= MAX_SEGMENTS {
                self.dropped += 1;
                return;
            }
            let at = self.ooo.partition_point(|(s, _)| dist(*s, seq) < 0);
            self.ooo.insert(at, (seq, data.to_vec()));
            self.ooo_bytes += data.len();
            return;
        }
        self.take(seq, data, &mut deliver);
        // Drain buffered segments that are now contiguous (or old).
        while let Some((s, _)) = self.ooo.first() {
            let next = self.next.unwrap_or(*s);
            if dist(*s, next) > 0 {
                break;
            }
            let (s, d) = self.ooo.remove(0);
            self.ooo_bytes -= d.len();
            self.take(s, &d, &mut deliver);
        }
    }

    /// Delivers the part of a segment at or before `next` that is new.
    fn take(&mut self, seq: u32, data: &[u8], deliver: &mut impl FnMut(&[u8])) {
        let next = self.next.unwrap_or(seq);
        let skip = (-dist(seq, next)).max(0) as usize;
        if skip < data.len() {
            let new = &data[skip..];
            self.next = Some(next.wrapping_add(new.len() as u32));
            self.delivered += new.len() as u64;
            deliver(new);
        }
    }

    /// Bytes waiting behind a hole.
    pub fn buffered(&self) -> usize {
        self.ooo_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(s: &mut Stream, seq: u32, d: &[u8], out: &mut Vec<u8>) {
        s.push(seq, d, |b| out.extend_from_slice(b));
    }

    #[test]
    fn in_order_out_of_order_overlap_and_wrap() {
        let mut s = Stream::default();
        s.set_isn(u32::MAX - 2); // data starts at u32::MAX - 1: wraps
        let mut out = Vec::new();
        let base = u32::MAX - 1;
        collect(&mut s, base.wrapping_add(4), b"EF", &mut out); // early
        assert!(out.is_empty());
        collect(&mut s, base, b"AB", &mut out);
        collect(&mut s, base.wrapping_add(1), b"BCD", &mut out); // overlap: only CD is new
        assert_eq!(out, b"ABCDEF");
        collect(&mut s, base, b"ABCDEF", &mut out); // retransmission
        assert_eq!(out, b"ABCDEF");
        assert_eq!(s.delivered, 6);
        assert_eq!(s.buffered(), 0);
    }

    #[test]
    fn buffer_is_bounded() {
        let mut s = Stream::default();
        s.set_isn(0);
        let mut out = Vec::new();
        for i in 0..200u32 {
            collect(&mut s, 1000 + i * 1000, &[0; 1000], &mut out);
        }
        assert!(s.buffered() <= MAX_BUFFERED);
        assert!(s.dropped > 0);
        assert!(out.is_empty());
    }
}
