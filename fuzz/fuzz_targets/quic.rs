//! Arbitrary bytes as a QUIC datagram: split it, derive Initial keys from each Initial's own
//! DCID (both directions) and try to decrypt it, reassembling any CRYPTO frames. Also the bytes
//! as CRYPTO frame pieces, checked against a byte-map model of `CryptoStream`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire::quic::{CryptoStream, Frame, InitialKeys, LongPacket, decrypt_initial, split_datagram};
use wire::tls::parse_handshake_messages;

/// Small, so that the overflow path is reached.
const MAX: usize = 600;

/// Pieces `[offset: u16 BE][len: u8][data]` (the last takes what is left) into a stream and
/// into a first-write-wins byte map; both must agree on the contiguous prefix.
fn crypto_pieces(mut rest: &[u8]) {
    let mut s = CryptoStream::new(MAX);
    let mut model: Vec<Option<u8>> = vec![None; MAX];
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
    let after_gap = model.iter().skip(prefix.len()).any(Option::is_some);
    assert_eq!(s.has_gap(), after_gap);
    // Far offsets must not allocate or panic.
    s.add(u64::MAX - 1, b"xyz");
    assert!(s.overflowed());
}

fuzz_target!(|data: &[u8]| {
    let (packets, _err) = split_datagram(data);
    let mut total = 0;
    for p in &packets {
        let _ = (p.version(), p.dcid());
        if let LongPacket::Initial {
            header_and_payload,
            pn_offset,
            ..
        } = p
        {
            assert!(*pn_offset <= header_and_payload.len());
            total += header_and_payload.len();
            for client in [true, false] {
                let Some(keys) = InitialKeys::new(p.version(), p.dcid(), client) else {
                    continue;
                };
                if let Ok(d) = decrypt_initial(p, &keys) {
                    let mut cs = CryptoStream::new(wire::quic::DEFAULT_CRYPTO_MAX_LEN);
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
    }
    assert!(total <= data.len());
    crypto_pieces(data);
});
