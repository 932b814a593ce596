//! Arbitrary bytes as a DNS message and as DNS-over-TCP stream bytes: never panics, the TCP
//! split accounts for every byte it uses, and `looks_like_dns` only vouches for what parses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire::dns;

fuzz_target!(|data: &[u8]| {
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
});
