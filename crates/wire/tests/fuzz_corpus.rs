//! Replays the committed fuzz corpora of the protocol parsers (`fuzz/corpus/<target>` for dns,
//! tls, quic, http, stun and apps) on stable, with the same checks as the cargo-fuzz targets in
//! `fuzz/fuzz_targets/` (duplicated here on purpose: `fuzz/` is not a workspace member). Each
//! corpus folder must exist and hold at least one file.

use std::path::{Path, PathBuf};

use wire::Error;
use wire::apps::{App, identify_tcp, identify_udp, parse_dhcp, ssh_banner};
use wire::cursor::Parse;
use wire::http::{Message, MessageStream, parse_request, parse_response};
use wire::quic::{
    CryptoStream, DEFAULT_CRYPTO_MAX_LEN, Frame, InitialKeys, LongPacket, decrypt_initial, split_datagram,
};
use wire::tls::{
    ClientHello, Handshake, HandshakeScan, ServerHello, Transport, parse_certificate_message,
    parse_handshake_messages,
};
use wire::{dns, stun};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut files: Vec<(PathBuf, Vec<u8>)> = entries
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, bytes)
        })
        .collect();
    assert!(!files.is_empty(), "{}: empty corpus", dir.display());
    files.sort();
    files
}

fn replay(target: &str, run: fn(&[u8])) {
    for (path, bytes) in corpus(target) {
        // Captured, and shown with the panic message if this input fails.
        println!("replaying {}", path.display());
        run(&bytes);
    }
}

/// 1..=7 bytes, picked by the first input byte.
fn chunk_len(data: &[u8]) -> usize {
    1 + usize::from(data.first().copied().unwrap_or(0)) % 7
}

// ---- dns ----

fn dns_target(data: &[u8]) {
    if let Ok(m) = dns::parse(data) {
        assert!(m.trailing_bytes <= data.len() - dns::HEADER_LEN);
        let _ = (m.rcode_name(), m.query_name());
        for r in &m.records {
            let _ = r.data.to_text();
        }
    }
    if dns::looks_like_dns(data) {
        assert!(dns::parse(data).is_ok(), "looks_like_dns but parse fails");
    }
    let (frames, used) = dns::split_tcp(data);
    assert!(used <= data.len());
    let mut pos = 0;
    for f in &frames {
        assert_eq!(
            usize::from(u16::from_be_bytes([data[pos], data[pos + 1]])),
            f.len()
        );
        assert_eq!(
            &data[pos + 2..pos + 2 + f.len()],
            *f,
            "frame not where its prefix says"
        );
        pos += 2 + f.len();
        let _ = dns::parse(f);
    }
    assert_eq!(pos, used, "frames plus prefixes do not add up to `used`");
    assert!(
        dns::split_tcp(&data[used..]).0.is_empty(),
        "a complete frame left over"
    );
}

// ---- tls ----

fn tls_scan<'a>(chunks: impl Iterator<Item = &'a [u8]>) -> (Vec<Handshake>, Option<Error>, bool) {
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

fn tls_target(data: &[u8]) {
    let whole = tls_scan(std::iter::once(data));
    let chunk = chunk_len(data);
    assert_eq!(
        whole,
        tls_scan(data.chunks(chunk)),
        "chunking changed the scan (chunk {chunk})"
    );
    visit(&whole.0);
    if let Ok(ch) = ClientHello::parse(data) {
        client_hello(&ch);
    }
    let _ = ServerHello::parse(data).map(|sh| sh.version());
    let _ = parse_certificate_message(data);
    let (msgs, used) = parse_handshake_messages(data);
    assert!(used <= data.len());
    visit(&msgs);
}

// ---- quic ----

const CRYPTO_MAX: usize = 600;

/// Pieces `[offset: u16 BE][len: u8][data]` into a `CryptoStream` and a first-write-wins model.
fn crypto_pieces(mut rest: &[u8]) {
    let mut s = CryptoStream::new(CRYPTO_MAX);
    let mut model: Vec<Option<u8>> = vec![None; CRYPTO_MAX];
    let mut overflow = false;
    let mut n = 0;
    while let Some((&[hi, lo, len], tail)) = rest.split_first_chunk::<3>() {
        let (piece, next) = tail.split_at(usize::from(len).min(tail.len()));
        rest = next;
        let offset = usize::from(u16::from_be_bytes([hi, lo]));
        s.add(offset as u64, piece);
        for (i, &b) in piece.iter().enumerate() {
            match model.get_mut(offset + i) {
                Some(slot) => {
                    slot.get_or_insert(b);
                }
                None => overflow = true,
            }
        }
        n += 1;
        if n >= 64 {
            break;
        }
    }
    let prefix: Vec<u8> = model.iter().map_while(|b| *b).collect();
    assert_eq!(
        s.contiguous(),
        prefix.as_slice(),
        "contiguous prefix differs from the model"
    );
    assert_eq!(s.overflowed(), overflow);
    assert_eq!(s.has_gap(), model.iter().skip(prefix.len()).any(Option::is_some));
    s.add(u64::MAX - 1, b"xyz");
    assert!(s.overflowed());
}

fn quic_target(data: &[u8]) {
    let (packets, _err) = split_datagram(data);
    let mut total = 0;
    for p in &packets {
        let _ = (p.version(), p.dcid());
        let LongPacket::Initial {
            header_and_payload,
            pn_offset,
            ..
        } = p
        else {
            continue;
        };
        assert!(*pn_offset <= header_and_payload.len());
        total += header_and_payload.len();
        for client in [true, false] {
            let Some(keys) = InitialKeys::new(p.version(), p.dcid(), client) else {
                continue;
            };
            if let Ok(d) = decrypt_initial(p, &keys) {
                let mut cs = CryptoStream::new(DEFAULT_CRYPTO_MAX_LEN);
                for f in &d.frames {
                    if let Frame::Crypto { offset, data } = f {
                        cs.add(*offset, data);
                    }
                }
                let (_, used) = parse_handshake_messages(cs.contiguous());
                assert!(used <= cs.contiguous().len());
            }
        }
    }
    assert!(total <= data.len());
    crypto_pieces(data);
}

// ---- http ----

fn http_stream<'a>(
    requests: bool,
    sel: u8,
    chunks: impl Iterator<Item = &'a [u8]>,
) -> (Vec<Message>, bool, u64) {
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

fn http_target(data: &[u8]) {
    check_head(data, parse_request);
    check_head(data, parse_response);
    let sel = data.first().copied().unwrap_or(0);
    let chunk = chunk_len(data);
    for requests in [true, false] {
        let whole = http_stream(requests, sel, std::iter::once(data));
        let trickled = http_stream(requests, sel, data.chunks(chunk));
        assert_eq!(whole, trickled, "chunking changed the messages (chunk {chunk})");
    }
}

// ---- stun ----

fn stun_target(data: &[u8]) {
    if let Ok((m, used)) = stun::parse(data) {
        assert!(used <= data.len());
        assert_eq!(used, stun::HEADER_LEN + usize::from(m.length));
        let _ = (
            m.method_name(),
            m.class_name(),
            m.software(),
            m.username(),
            m.realm(),
        );
        let _ = (m.error_code(), m.xor_mapped_address(), m.mapped_address());
        assert_eq!(stun::parse(&data[..used]).ok(), Some((m, used)));
    }
    let (msgs, used) = stun::split_tcp(data);
    assert!(used <= data.len());
    assert!(msgs.len() <= used / stun::HEADER_LEN);
    let _ = stun::is_channel_data(data);
    let _ = stun::looks_like_dtls(data);
}

// ---- apps ----

/// `[source port: u16 BE][destination port: u16 BE][payload]`.
fn apps_target(data: &[u8]) {
    let Some((&[a, b, c, d], p)) = data.split_first_chunk::<4>() else {
        return;
    };
    let (sport, dport) = (u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
    let udp = identify_udp(p, sport, dport);
    assert_eq!(udp, identify_udp(p, dport, sport), "ports are not symmetric");
    if udp == Some(App::Dhcp) {
        assert!(parse_dhcp(p).is_ok());
    }
    let tcp = identify_tcp(p, sport, dport);
    if let Some(banner) = ssh_banner(p) {
        assert!(p.starts_with(banner.as_bytes()) && banner.len() < p.len());
        assert!(banner.starts_with("SSH-"));
        assert_eq!(tcp, Some(App::Ssh));
    }
    let _ = parse_dhcp(p);
}

#[test]
fn dns_corpus() {
    replay("dns", dns_target);
}

#[test]
fn tls_corpus() {
    replay("tls", tls_target);
}

#[test]
fn quic_corpus() {
    replay("quic", quic_target);
}

#[test]
fn http_corpus() {
    replay("http", http_target);
}

#[test]
fn stun_corpus() {
    replay("stun", stun_target);
}

#[test]
fn apps_corpus() {
    replay("apps", apps_target);
}
