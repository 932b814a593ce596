//! Arbitrary bytes as an HTTP/1.x request or response head, and as one direction of a
//! connection through `MessageStream`, fed whole and in 1..7-byte chunks picked by the first
//! byte: both chunkings must find the same messages. Bits 3..6 of the first byte queue request
//! methods (GET, HEAD, CONNECT) on the response stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire::cursor::Parse;
use wire::http::{Message, MessageStream, parse_request, parse_response};

fn stream<'a>(requests: bool, sel: u8, chunks: impl Iterator<Item = &'a [u8]>) -> (Vec<Message>, bool, u64) {
    let mut s = if requests {
        MessageStream::requests()
    } else {
        MessageStream::responses()
    };
    if !requests {
        for (bit, m) in [(3, "GET"), (4, "HEAD"), (5, "CONNECT")] {
            if sel & (1 << bit) != 0 {
                s.push_request_method(m);
            }
        }
    }
    let mut msgs = Vec::new();
    for c in chunks {
        msgs.extend(s.push(c));
    }
    (msgs, s.is_done(), s.resyncs())
}

fn check_head<T: PartialEq + std::fmt::Debug>(data: &[u8], parse: fn(&[u8]) -> Parse<T>) {
    if let Parse::Done(head, n) = parse(data) {
        assert!(n <= data.len());
        match parse(&data[..n]) {
            Parse::Done(again, m) => {
                assert_eq!(m, n);
                assert_eq!(again, head, "head changed when cut to its length");
            }
            _ => panic!("head does not parse when cut to its length {n}"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check_head(data, parse_request);
    check_head(data, parse_response);
    let sel = data.first().copied().unwrap_or(0);
    let chunk = 1 + usize::from(sel) % 7;
    for requests in [true, false] {
        let whole = stream(requests, sel, std::iter::once(data));
        let trickled = stream(requests, sel, data.chunks(chunk));
        assert_eq!(whole, trickled, "chunking changed the messages (chunk {chunk})");
    }
});
