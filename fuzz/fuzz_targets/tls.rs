//! Arbitrary bytes as one direction of a TLS connection (through `HandshakeScan`, fed whole and
//! in 1..7-byte chunks picked by the first byte: both must give the same messages and the same
//! outcome) and as a raw handshake message body or QUIC CRYPTO stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire::Error;
use wire::tls::{
    ClientHello, Handshake, HandshakeScan, ServerHello, Transport, parse_certificate_message,
    parse_handshake_messages,
};

/// The messages, then the sticky error (if any) and `finished()`.
fn scan<'a>(chunks: impl Iterator<Item = &'a [u8]>) -> (Vec<Handshake>, Option<Error>, bool) {
    let mut s = HandshakeScan::new();
    let mut msgs = Vec::new();
    for c in chunks {
        match s.push(c) {
            Ok(m) => msgs.extend(m),
            Err(_) => break,
        }
    }
    let err = s.push(&[]).err();
    assert!(err.is_none() || s.finished(), "error but not finished");
    (msgs, err, s.finished())
}

fn client_hello(ch: &ClientHello) {
    let _ = (ch.ja3(), ch.ja3_string());
    for t in [Transport::Tcp, Transport::Quic, Transport::Dtls] {
        let _ = (ch.ja4(t), ch.ja4_raw(t));
    }
}

fn visit(msgs: &[Handshake]) {
    for m in msgs {
        if let Handshake::ClientHello(ch) = m {
            client_hello(ch);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let whole = scan(std::iter::once(data));
    let chunk = 1 + usize::from(data.first().copied().unwrap_or(0)) % 7;
    let trickled = scan(data.chunks(chunk));
    assert_eq!(whole, trickled, "chunking changed the scan (chunk {chunk})");
    visit(&whole.0);

    if let Ok(ch) = ClientHello::parse(data) {
        client_hello(&ch);
    }
    let _ = ServerHello::parse(data).map(|sh| sh.version());
    let _ = parse_certificate_message(data);
    let (msgs, used) = parse_handshake_messages(data);
    assert!(used <= data.len());
    visit(&msgs);
});
