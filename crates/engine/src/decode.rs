//! The layer walk: one captured frame to the innermost network and transport headers.
//!
//! The walk follows link layers (Ethernet, 802.1Q/QinQ, MPLS, PPPoE, SLL/SLL2, null/loopback,
//! NFLOG, raw IP), IP (with options and extension headers) and tunnels (GRE incl. ERSPAN and
//! PPTP, IP-in-IP, 6in4, 4in6, VXLAN, Geneve, GTP-U, Teredo) down to the innermost IP header and
//! its transport. Fragments are returned as [`L4::Fragment`]; the engine reassembles them and
//! continues with [`decode_ip_payload`].
//!
//! Which flow a tunnelled frame belongs to: the innermost TCP or UDP header. When a UDP tunnel's
//! inner packet carries neither (Teredo bubbles, an ICMPv6 router solicitation, a GRE keepalive
//! over VXLAN...), the frame stays with the outer UDP flow, as tshark and nDPI count it. Frames
//! with no TCP or UDP at all make flows from their innermost IP header.

use std::net::IpAddr;

use wire::capture::LinkType;
use wire::layers::{
    EtherType, Ethernet, Geneve, Gre, GtpU, Icmp, IpProto, Ipv4, Ipv6, Mpls, Nflog, NullLoopback, Pppoe,
    Sctp, Sll, Sll2, Tcp, Udp, Vlan, Vxlan, ppp_to_ethertype, teredo_payload, walk_ipv6_extensions,
};
use wire::{Error, Layer};

/// The transport part of a decoded packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4<'a> {
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
        seq: u32,
        ack: u32,
        /// Captured payload.
        payload: &'a [u8],
        /// Payload length on the wire (from the IP length fields).
        payload_len: u32,
    },
    Udp {
        sport: u16,
        dport: u16,
        payload: &'a [u8],
        payload_len: u32,
    },
    Icmp {
        v6: bool,
        icmp_type: u8,
        code: u8,
        /// Echo identifier: echo requests and replies of one ping share a flow.
        echo_id: Option<u16>,
        /// An error message quoting another packet's headers: not traffic of that packet's flow.
        error: bool,
    },
    Sctp {
        sport: u16,
        dport: u16,
    },
    /// A protocol without ports (ESP, OSPF, VRRP, ...), or a transport header too short to read.
    Other {
        payload_len: u32,
    },
    /// An IP fragment: the engine reassembles it.
    Fragment {
        offset: usize,
        more: bool,
        ident: u32,
        payload: &'a [u8],
        /// Fragment payload length on the wire.
        payload_len: usize,
    },
}

/// The innermost network header and its transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The IP protocol number carried (for a fragment: the protocol of the datagram).
    pub proto: IpProto,
    pub l4: L4<'a>,
}

/// The result of walking one frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// Outer VLAN ids (802.1Q / 802.1ad), outermost first; 0 = no tag.
    pub vlan: [u16; 2],
    /// How many tunnel headers were passed.
    pub tunnels: u8,
    /// `None` for frames without IP (ARP, LLDP, STP ...).
    pub net: Option<Net<'a>>,
    /// What could not be decoded, if anything (the frame may still have made it to `net`).
    pub anomaly: Option<Anomaly>,
}

/// A named decode problem, counted by the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Anomaly {
    /// A header was shorter than its layer needs, or a field was impossible.
    Wire(Error),
    /// The capture's link type is not one netvigil decodes.
    UnsupportedLink(u16),
    /// An EtherType / protocol netvigil expected to be IP was not.
    NotIp(Layer),
    /// Encapsulations nested deeper than the walk allows.
    TooDeep,
}

impl Anomaly {
    /// A stable name for counters and reports, e.g. `ipv4_truncated`, `tcp_malformed`.
    pub fn name(&self) -> String {
        match self {
            Anomaly::Wire(e) => {
                let (kind, layer) = e.kind();
                format!("{}_{}", layer.name(), kind)
            }
            Anomaly::UnsupportedLink(l) => format!("unsupported_link_type_{l}"),
            Anomaly::NotIp(layer) => format!("{}_payload_not_ip", layer.name()),
            Anomaly::TooDeep => "encapsulation_too_deep".to_string(),
        }
    }
}

const MAX_STEPS: usize = 24;

enum Step<'a> {
    Ether(&'a [u8]),
    Type(EtherType, &'a [u8], Layer),
    /// Raw IP: version from the first nibble.
    Ip(&'a [u8], Layer),
    Ipv4(&'a [u8]),
    Ipv6(&'a [u8]),
    Payload {
        src: IpAddr,
        dst: IpAddr,
        proto: IpProto,
        payload: &'a [u8],
        declared: usize,
    },
}

struct Walk<'a> {
    out: Decoded<'a>,
    /// The UDP header a tunnel was entered through.
    outer_udp: Option<Net<'a>>,
}

/// Decodes one frame of the given link type.
pub fn decode(link: LinkType, data: &[u8]) -> Decoded<'_> {
    let first = match link {
        LinkType::ETHERNET => Step::Ether(data),
        LinkType::RAW => Step::Ip(data, Layer::Capture),
        LinkType::IPV4 => Step::Ipv4(data),
        LinkType::IPV6 => Step::Ipv6(data),
        LinkType::NULL | LinkType::LOOP => match NullLoopback::new_checked(data) {
            Ok(n) => match n.is_ipv6() {
                Some(true) => Step::Ipv6(n.payload()),
                Some(false) => Step::Ipv4(n.payload()),
                None => Step::Ip(n.payload(), Layer::Null),
            },
            Err(e) => return failed(e),
        },
        LinkType::LINUX_SLL => match Sll::new_checked(data) {
            Ok(s) => Step::Type(s.protocol(), s.payload(), Layer::LinuxSll),
            Err(e) => return failed(e),
        },
        LinkType::LINUX_SLL2 => match Sll2::new_checked(data) {
            Ok(s) => Step::Type(s.protocol(), s.payload(), Layer::LinuxSll2),
            Err(e) => return failed(e),
        },
        LinkType::NFLOG => {
            match Nflog::new_checked(data).and_then(|n| n.payload().map(|p| (n.family(), p))) {
                Ok((10, p)) => Step::Ipv6(p),
                Ok((2, p)) => Step::Ipv4(p),
                Ok((_, p)) => Step::Ip(p, Layer::Nflog),
                Err(e) => return failed(e),
            }
        }
        other => {
            return Decoded {
                anomaly: Some(Anomaly::UnsupportedLink(other.0)),
                ..Decoded::default()
            };
        }
    };
    let mut w = Walk {
        out: Decoded::default(),
        outer_udp: None,
    };
    w.run(first);
    w.finish()
}

/// Continues a walk with an IP payload, e.g. a reassembled datagram.
pub fn decode_ip_payload(src: IpAddr, dst: IpAddr, proto: IpProto, payload: &[u8]) -> Decoded<'_> {
    let mut w = Walk {
        out: Decoded::default(),
        outer_udp: None,
    };
    w.run(Step::Payload {
        src,
        dst,
        proto,
        payload,
        declared: payload.len(),
    });
    w.finish()
}

fn failed(e: Error) -> Decoded<'static> {
    Decoded {
        anomaly: Some(Anomaly::Wire(e)),
        ..Decoded::default()
    }
}

impl<'a> Walk<'a> {
    fn finish(mut self) -> Decoded<'a> {
        // A UDP tunnel whose inside has no TCP/UDP (or failed to decode) counts as the tunnel's
        // own UDP traffic.
        if let Some(outer) = self.outer_udp {
            let inner_is_transport = matches!(
                self.out.net,
                Some(Net {
                    l4: L4::Tcp { .. } | L4::Udp { .. } | L4::Fragment { .. },
                    ..
                })
            );
            if !inner_is_transport {
                self.out.net = Some(outer);
            }
        }
        self.out
    }

    fn anomaly(&mut self, a: Anomaly) {
        self.out.anomaly.get_or_insert(a);
    }

    fn run(&mut self, mut step: Step<'a>) {
        for _ in 0..MAX_STEPS {
            let next = match step {
                Step::Ether(b) => match Ethernet::new_checked(b) {
                    Ok(e) if e.is_8023() => match e.snap() {
                        Some((t, p)) => Step::Type(t, p, Layer::Ethernet),
                        None => return, // LLC (STP, CDP ...): not IP, not an anomaly
                    },
                    Ok(e) => Step::Type(e.ethertype(), e.payload(), Layer::Ethernet),
                    Err(e) => return self.anomaly(Anomaly::Wire(e)),
                },
                Step::Type(t, b, from) => match self.ethertype(t, b, from) {
                    Some(s) => s,
                    None => return,
                },
                Step::Ip(b, from) => match b.first().map(|v| v >> 4) {
                    Some(4) => Step::Ipv4(b),
                    Some(6) => Step::Ipv6(b),
                    _ => return self.anomaly(Anomaly::NotIp(from)),
                },
                Step::Ipv4(b) => match Ipv4::new_checked(b) {
                    Ok(ip) => {
                        let (src, dst) = (IpAddr::V4(ip.src()), IpAddr::V4(ip.dst()));
                        if ip.is_fragment() {
                            self.out.net = Some(Net {
                                src,
                                dst,
                                proto: ip.protocol(),
                                l4: L4::Fragment {
                                    offset: ip.frag_offset(),
                                    more: ip.more_fragments(),
                                    ident: u32::from(ip.ident()),
                                    payload: ip.payload(),
                                    payload_len: ip.payload_len(),
                                },
                            });
                            return;
                        }
                        Step::Payload {
                            src,
                            dst,
                            proto: ip.protocol(),
                            payload: ip.payload(),
                            declared: ip.payload_len(),
                        }
                    }
                    Err(e) => return self.anomaly(Anomaly::Wire(e)),
                },
                Step::Ipv6(b) => match Ipv6::new_checked(b) {
                    Ok(ip) => {
                        let (src, dst) = (IpAddr::V6(ip.src()), IpAddr::V6(ip.dst()));
                        let declared = ip.payload_len();
                        match walk_ipv6_extensions(ip.next_header(), ip.payload()) {
                            Ok(p) => {
                                let declared = declared.saturating_sub(p.ext_len);
                                if let Some((offset, more, ident)) = p.fragment {
                                    self.out.net = Some(Net {
                                        src,
                                        dst,
                                        proto: p.proto,
                                        l4: L4::Fragment {
                                            offset,
                                            more,
                                            ident,
                                            payload: p.payload,
                                            payload_len: declared,
                                        },
                                    });
                                    return;
                                }
                                Step::Payload {
                                    src,
                                    dst,
                                    proto: p.proto,
                                    payload: p.payload,
                                    declared,
                                }
                            }
                            Err(e) => {
                                self.out.net = Some(Net {
                                    src,
                                    dst,
                                    proto: ip.next_header(),
                                    l4: L4::Other {
                                        payload_len: declared as u32,
                                    },
                                });
                                return self.anomaly(Anomaly::Wire(e));
                            }
                        }
                    }
                    Err(e) => return self.anomaly(Anomaly::Wire(e)),
                },
                Step::Payload {
                    src,
                    dst,
                    proto,
                    payload,
                    declared,
                } => match self.transport(src, dst, proto, payload, declared) {
                    Some(s) => {
                        self.out.tunnels = self.out.tunnels.saturating_add(1);
                        s
                    }
                    None => return,
                },
            };
            step = next;
        }
        self.anomaly(Anomaly::TooDeep);
    }

    fn ethertype(&mut self, t: EtherType, b: &'a [u8], from: Layer) -> Option<Step<'a>> {
        Some(match t {
            EtherType::IPV4 => Step::Ipv4(b),
            EtherType::IPV6 => Step::Ipv6(b),
            t if t.is_vlan() => match Vlan::new_checked(b) {
                Ok(v) => {
                    if self.out.tunnels == 0
                        && let Some(slot) = self.out.vlan.iter_mut().find(|s| **s == 0)
                    {
                        *slot = v.vid().max(1);
                    }
                    Step::Type(v.ethertype(), v.payload(), Layer::Vlan)
                }
                Err(e) => {
                    self.anomaly(Anomaly::Wire(e));
                    return None;
                }
            },
            EtherType::MPLS | EtherType::MPLS_MULTICAST => match Mpls::new_checked(b) {
                Ok(m) => {
                    let p = m.payload();
                    match p.first().map(|v| v >> 4) {
                        Some(4) => Step::Ipv4(p),
                        Some(6) => Step::Ipv6(p),
                        // Pseudowire with a control word: an Ethernet frame follows.
                        Some(0) if p.len() > 4 => Step::Ether(&p[4..]),
                        _ => {
                            self.anomaly(Anomaly::NotIp(Layer::Mpls));
                            return None;
                        }
                    }
                }
                Err(e) => {
                    self.anomaly(Anomaly::Wire(e));
                    return None;
                }
            },
            EtherType::PPPOE_SESSION => match Pppoe::new_checked(b) {
                Ok(p) => match ppp_to_ethertype(p.ppp_protocol()) {
                    Some(t) => Step::Type(t, p.payload(), Layer::Pppoe),
                    None => return None, // LCP, IPCP ...
                },
                Err(e) => {
                    self.anomaly(Anomaly::Wire(e));
                    return None;
                }
            },
            EtherType::TRANSPARENT_ETHERNET => Step::Ether(b),
            _ => {
                let _ = from;
                return None; // ARP, LLDP, PPPoE discovery, EAPOL ...: not IP traffic
            }
        })
    }

    /// Reads the transport header; returns the next step when it is a tunnel.
    fn transport(
        &mut self,
        src: IpAddr,
        dst: IpAddr,
        proto: IpProto,
        b: &'a [u8],
        declared: usize,
    ) -> Option<Step<'a>> {
        let declared32 = u32::try_from(declared).unwrap_or(u32::MAX);
        let mut net = Net {
            src,
            dst,
            proto,
            l4: L4::Other {
                payload_len: declared32,
            },
        };
        let next = match proto {
            IpProto::TCP => match Tcp::new_checked(b) {
                Ok(t) => {
                    if let Some(e) = t.anomaly() {
                        self.anomaly(Anomaly::Wire(e));
                    }
                    net.l4 = L4::Tcp {
                        sport: t.src_port(),
                        dport: t.dst_port(),
                        flags: t.flags().0,
                        seq: t.seq(),
                        ack: t.ack_number(),
                        payload: t.payload(),
                        payload_len: declared32.saturating_sub(t.header_len() as u32),
                    };
                    None
                }
                Err(e) => {
                    self.anomaly(Anomaly::Wire(e));
                    None
                }
            },
            IpProto::UDP => match Udp::new_checked(b) {
                Ok(u) => {
                    let payload_len = match u.length() {
                        l if l >= 8 => u32::from(l) - 8,
                        _ => declared32.saturating_sub(8),
                    };
                    net.l4 = L4::Udp {
                        sport: u.src_port(),
                        dport: u.dst_port(),
                        payload: u.payload(),
                        payload_len,
                    };
                    let step = self.udp_tunnel(&u);
                    if step.is_some() {
                        self.outer_udp = Some(net);
                    }
                    self.out.net = Some(net);
                    return step;
                }
                Err(e) => {
                    self.anomaly(Anomaly::Wire(e));
                    None
                }
            },
            IpProto::ICMP | IpProto::ICMPV6 => match Icmp::new_checked(b, proto == IpProto::ICMPV6) {
                Ok(i) => {
                    net.l4 = L4::Icmp {
                        v6: i.is_v6(),
                        icmp_type: i.icmp_type(),
                        code: i.code(),
                        echo_id: i.echo().map(|(_, id, _)| id),
                        error: i.is_error(),
                    };
                    None
                }
                Err(e) => {
                    self.anomaly(Anomaly::Wire(e));
                    None
                }
            },
            IpProto::SCTP => match Sctp::new_checked(b) {
                Ok(s) => {
                    net.l4 = L4::Sctp {
                        sport: s.src_port(),
                        dport: s.dst_port(),
                    };
                    None
                }
                Err(e) => {
                    self.anomaly(Anomaly::Wire(e));
                    None
                }
            },
            IpProto::IPIP => Some(Step::Ipv4(b)),
            IpProto::IPV6 => Some(Step::Ipv6(b)),
            IpProto::GRE => match Gre::new_checked(b) {
                Ok(g) => match g.protocol() {
                    EtherType::ERSPAN_II | EtherType::ERSPAN_III => match g.erspan_frame() {
                        Ok(f) => Some(Step::Ether(f)),
                        Err(e) => {
                            self.anomaly(Anomaly::Wire(e));
                            None
                        }
                    },
                    EtherType::PPP => ppp_frame(g.payload()).map(|(t, p)| Step::Type(t, p, Layer::Gre)),
                    t => Some(Step::Type(t, g.payload(), Layer::Gre)),
                },
                Err(e) => {
                    self.anomaly(Anomaly::Wire(e));
                    None
                }
            },
            _ => None,
        };
        // A tunnel whose inside does not decode leaves this header as the innermost one.
        self.out.net = Some(net);
        next
    }

    fn udp_tunnel(&mut self, u: &Udp<'a>) -> Option<Step<'a>> {
        let (s, d) = (u.src_port(), u.dst_port());
        let p = u.payload();
        let port = |n: u16| s == n || d == n;
        if d == Vxlan::PORT {
            return Vxlan::new_checked(p).ok().map(|v| Step::Ether(v.payload()));
        }
        if d == Geneve::PORT {
            return Geneve::new_checked(p).ok().and_then(|g| match g.protocol() {
                EtherType::TRANSPARENT_ETHERNET => Some(Step::Ether(g.payload())),
                t @ (EtherType::IPV4 | EtherType::IPV6) => Some(Step::Type(t, g.payload(), Layer::Geneve)),
                _ => None,
            });
        }
        if port(GtpU::PORT) {
            return GtpU::new_checked(p)
                .ok()
                .filter(|g| g.message_type() == GtpU::G_PDU)
                .map(|g| Step::Ip(g.payload(), Layer::GtpU));
        }
        if port(3544) {
            return teredo_payload(p).ok().map(Step::Ipv6);
        }
        None
    }
}

/// PPP inside enhanced GRE (PPTP): optional address/control bytes, then a 1- or 2-byte protocol.
fn ppp_frame(b: &[u8]) -> Option<(EtherType, &[u8])> {
    let b = if b.starts_with(&[0xff, 0x03]) { &b[2..] } else { b };
    let (proto, rest) = match b.first()? {
        p if p & 1 == 1 => (u16::from(*p), &b[1..]),
        _ if b.len() >= 2 => (u16::from_be_bytes([b[0], b[1]]), &b[2..]),
        _ => return None,
    };
    ppp_to_ethertype(proto).map(|t| (t, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use wire::synth;

    const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    fn tcp_v4(payload: &[u8]) -> Vec<u8> {
        synth::ipv4(
            A,
            B,
            6,
            1,
            &synth::tcp(A.into(), B.into(), 40000, 443, 1, 0, 0x02, payload),
        )
    }

    fn ports(d: &Decoded<'_>) -> Option<(u16, u16)> {
        match d.net?.l4 {
            L4::Tcp { sport, dport, .. } | L4::Udp { sport, dport, .. } => Some((sport, dport)),
            _ => None,
        }
    }

    #[test]
    fn ethernet_vlan_qinq_tcp() {
        let ip = tcp_v4(b"hello");
        let inner = synth::vlan(0x8100, 20, 0x0800, &ip);
        let outer = synth::vlan(0x88a8, 10, 0x8100, &inner);
        let f = synth::ethernet(synth::MAC_B, synth::MAC_A, 0x88a8, &outer);
        let d = decode(LinkType::ETHERNET, &f);
        assert_eq!(d.vlan, [10, 20]);
        assert_eq!(ports(&d), Some((40000, 443)));
        let Some(Net {
            l4:
                L4::Tcp {
                    payload,
                    payload_len,
                    flags,
                    ..
                },
            ..
        }) = d.net
        else {
            panic!("{d:?}")
        };
        assert_eq!((payload, payload_len, flags), (&b"hello"[..], 5, 0x02));
        assert_eq!(d.anomaly, None);
    }

    #[test]
    fn tunnels_reach_the_innermost_flow() {
        let inner = synth::ethernet(synth::MAC_B, synth::MAC_A, 0x0800, &tcp_v4(b"x"));
        // VXLAN
        let mut vx = vec![0x08, 0, 0, 0, 0, 0, 1, 0];
        vx.extend_from_slice(&inner);
        let o = Ipv4Addr::new(192, 0, 2, 1);
        let outer = synth::udp_ipv4_frame(o, o, 50000, 4789, &vx);
        let d = decode(LinkType::ETHERNET, &outer);
        assert_eq!(
            (ports(&d), d.net.unwrap().src),
            (Some((40000, 443)), IpAddr::V4(A))
        );
        // GRE carrying IPv4
        let mut gre = vec![0, 0, 0x08, 0x00];
        gre.extend_from_slice(&tcp_v4(b""));
        let f = synth::ethernet(
            synth::MAC_B,
            synth::MAC_A,
            0x0800,
            &synth::ipv4(o, o, 47, 9, &gre),
        );
        assert_eq!(ports(&decode(LinkType::ETHERNET, &f)), Some((40000, 443)));
        // 6in4
        let (s6, d6): (Ipv6Addr, Ipv6Addr) = ("2001:db8::1".parse().unwrap(), "2001:db8::2".parse().unwrap());
        let v6 = synth::ipv6(s6, d6, 17, &synth::udp(s6.into(), d6.into(), 5353, 53, b"q"));
        let f = synth::ipv4(o, o, 41, 3, &v6);
        let d = decode(LinkType::RAW, &f);
        assert_eq!(
            (ports(&d), d.net.unwrap().dst),
            (Some((5353, 53)), IpAddr::V6(d6))
        );
        // Teredo carrying ICMPv6: stays with the outer UDP flow
        let icmp6 = synth::ipv6(s6, d6, 58, &[133, 0, 0, 0, 0, 0, 0, 0]);
        let f = synth::udp_ipv4_frame(o, o, 3544, 40001, &icmp6);
        assert_eq!(ports(&decode(LinkType::ETHERNET, &f)), Some((3544, 40001)));
    }

    #[test]
    fn fragments_and_icmp_errors() {
        let frags = synth::ipv4_fragments(A, B, 17, 77, &synth::udp(A.into(), B.into(), 1, 2, &[0; 100]), 64);
        let d = decode(LinkType::RAW, &frags[1]);
        let Some(Net {
            l4: L4::Fragment {
                offset, more, ident, ..
            },
            proto,
            ..
        }) = d.net
        else {
            panic!()
        };
        assert_eq!((offset, more, ident, proto), (64, false, 77, IpProto::UDP));
        let quoted = tcp_v4(b"");
        let err = synth::ipv4(B, A, 1, 5, &synth::icmpv4_error(3, 3, &quoted[..28]));
        let d = decode(LinkType::RAW, &err);
        assert!(matches!(
            d.net.unwrap().l4,
            L4::Icmp {
                error: true,
                icmp_type: 3,
                ..
            }
        ));
    }

    #[test]
    fn garbage_is_an_anomaly_not_a_panic() {
        let d = decode(LinkType::ETHERNET, &[0; 10]);
        assert_eq!(d.anomaly.unwrap().name(), "ethernet_truncated");
        let d = decode(LinkType(9999), &[1, 2, 3]);
        assert_eq!(d.anomaly.unwrap().name(), "unsupported_link_type_9999");
        let d = decode(LinkType::RAW, &[0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6]);
        assert_eq!(d.anomaly.unwrap().name(), "ipv4_truncated");
    }
}
