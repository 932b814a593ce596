//! One frame through the layer walk: the first 2 bytes pick the link type, the rest is the frame.
#![no_main]

use engine::decode::{L4, decode};
use libfuzzer_sys::fuzz_target;
use wire::capture::LinkType;

const LINKS: [LinkType; 10] = [
    LinkType::ETHERNET,
    LinkType::RAW,
    LinkType::IPV4,
    LinkType::IPV6,
    LinkType::NULL,
    LinkType::LOOP,
    LinkType::LINUX_SLL,
    LinkType::LINUX_SLL2,
    LinkType::NFLOG,
    LinkType(147), // LINKTYPE_USER0: not decoded
];

fuzz_target!(|data: &[u8]| {
    let Some((sel, frame)) = data.split_first_chunk::<2>() else {
        return;
    };
    let link = LINKS[usize::from(u16::from_be_bytes(*sel)) % LINKS.len()];
    let d = decode(link, frame);
    if let Some(a) = d.anomaly {
        assert!(!a.name().is_empty());
    }
    // Every slice handed back borrows from the frame.
    let r = frame.as_ptr_range();
    let within = |p: &[u8]| p.is_empty() || (r.start <= p.as_ptr() && p.as_ptr_range().end <= r.end);
    if let Some(net) = d.net {
        match net.l4 {
            L4::Tcp { payload, .. } | L4::Udp { payload, .. } | L4::Fragment { payload, .. } => {
                assert!(within(payload), "payload outside the frame");
            }
            _ => {}
        }
    }
});
