//! Zero-copy views over protocol headers.
//!
//! Each view is made with `new_checked`, which validates every length the accessors rely on and
//! returns an [`Error`](crate::Error) naming the layer; the accessors then never panic. Views do not
//! decide what comes next: the engine walks the layers (see `engine::decode`).

mod ether;
mod ip;
mod transport;
mod tunnel;

pub use ether::{EtherType, Ethernet, Mpls, Nflog, NullLoopback, Pppoe, Sll, Sll2, Vlan, ppp_to_ethertype};
pub use ip::{IpProto, Ipv4, Ipv6, Ipv6Payload, walk_ipv6_extensions};
pub use transport::{Icmp, Sctp, Tcp, TcpFlags, Udp};
pub use tunnel::{Geneve, Gre, GtpU, Vxlan, teredo_payload};

#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
