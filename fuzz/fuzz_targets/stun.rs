//! Arbitrary bytes as a STUN datagram and as STUN-over-TCP stream bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire::stun;

fuzz_target!(|data: &[u8]| {
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
        // Bytes after the message are not looked at.
        assert_eq!(stun::parse(&data[..used]).ok(), Some((m, used)));
    }
    let (msgs, used) = stun::split_tcp(data);
    assert!(used <= data.len());
    assert!(msgs.len() <= used / stun::HEADER_LEN);
    let _ = stun::is_channel_data(data);
    let _ = stun::looks_like_dtls(data);
});
