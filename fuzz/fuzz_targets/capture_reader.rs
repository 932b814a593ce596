//! Arbitrary bytes as a capture file: the slice reader and the stream reader must never panic
//! and must give the same packets, the same error and the same truncated tail.
#![no_main]

use std::io::{self, Read};

use libfuzzer_sys::fuzz_target;
use wire::capture::{CaptureError, SliceReader, StreamReader};

/// A reader that hands out at most `chunk` bytes per call, to exercise buffer refills.
struct Trickle<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.chunk.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// (ts, interface, link, orig_len, data) of each packet, then the error and the tail.
type Outcome = (Vec<(i64, u32, u16, u32, Vec<u8>)>, Option<String>, Option<usize>);

fn slice(data: &[u8]) -> Outcome {
    let mut r = match SliceReader::new(data) {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Some(error(&e)), None),
    };
    let mut pkts = Vec::new();
    let mut err = None;
    while let Some(p) = r.next_packet() {
        match p {
            Ok(p) => pkts.push((p.ts_nanos, p.interface, p.link.0, p.orig_len, p.data.to_vec())),
            Err(e) => err = Some(error(&e)),
        }
    }
    assert!(r.next_packet().is_none(), "slice reader yields after its end");
    (pkts, err, r.truncated_tail())
}

fn stream(src: impl Read) -> Outcome {
    let mut r = match StreamReader::new(src) {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Some(error(&e)), None),
    };
    let mut pkts = Vec::new();
    let mut err = None;
    loop {
        match r.next_packet() {
            Ok(Some(p)) => pkts.push((p.ts_nanos, p.interface, p.link.0, p.orig_len, p.data.to_vec())),
            Ok(None) => break,
            Err(e) => err = Some(error(&e)),
        }
    }
    assert!(
        matches!(r.next_packet(), Ok(None)),
        "stream reader yields after its end"
    );
    (pkts, err, r.truncated_tail())
}

fn error(e: &CaptureError) -> String {
    let _ = e.offset();
    e.to_string()
}

fuzz_target!(|data: &[u8]| {
    let s = slice(data);
    assert_eq!(s, stream(data), "slice and stream readers disagree");
    let chunk = 1 + data.len() % 7;
    assert_eq!(
        s,
        stream(Trickle { data, chunk }),
        "slice and trickled stream disagree"
    );
});
