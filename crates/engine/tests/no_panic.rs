//! Property: whatever the frames, `Engine::ingest`/`finish` never panic and the flow counters
//! reconcile (`created == expired + evicted + flushed + live`, nothing live after `finish`).
//! Inputs: random bytes under every link type, and bit flips / byte writes / truncations of valid
//! frames built with `wire::synth` (plain, fragmented and tunnelled).

use std::net::{Ipv4Addr, Ipv6Addr};

use engine::defrag::DefragConfig;
use engine::flow::FlowConfig;
use engine::{Engine, EngineConfig, Frame, Record};
use proptest::prelude::*;
use wire::capture::LinkType;
use wire::synth::{self, TcpFlags};

const SEC: i64 = 1_000_000_000;

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
    LinkType(147),
];

fn small_config() -> EngineConfig {
    EngineConfig {
        flows: FlowConfig {
            max_flows: 8,
            tcp_handshake_timeout: 5 * SEC,
            tcp_established_timeout: 30 * SEC,
            tcp_closing_timeout: 10 * SEC,
            tcp_closed_timeout: 2 * SEC,
            udp_timeout: 10 * SEC,
            other_timeout: 5 * SEC,
        },
        defrag: DefragConfig {
            max_bytes: 4096,
            max_datagrams: 4,
            timeout_nanos: 3 * SEC,
            max_datagram_len: 16384,
        },
        report_new_flows: true,
        sample_bytes: 64,
        // Gateway mode on: the LAN device tracker reads every Ethernet frame too.
        lan: Some(engine::lan::LanConfig::default()),
    }
}

/// Feeds `(link, time step in 50 ms units, frame)` to one engine, checking the counters.
fn run(frames: &[(LinkType, u8, Vec<u8>)]) -> Result<(), TestCaseError> {
    let mut e = Engine::new(small_config());
    let mut records = Vec::new();
    let mut ts = 1_700_000_000 * SEC;
    let check = |e: &Engine, records: &[Record]| -> Result<(), TestCaseError> {
        let c = e.flow_counters();
        prop_assert_eq!(c.created, c.expired + c.evicted + c.flushed + c.live, "{:?}", c);
        prop_assert!(c.peak_live <= 8, "{:?}", c);
        prop_assert_eq!(
            records.iter().filter(|r| matches!(r, Record::Flow(_))).count() as u64,
            c.expired + c.evicted + c.flushed
        );
        let packets: u64 = records
            .iter()
            .filter_map(|r| match r {
                Record::Flow(f) => Some(f.to_server.packets + f.to_client.packets),
                _ => None,
            })
            .sum();
        prop_assert!(packets <= e.stats().frames);
        Ok(())
    };
    for (link, step, data) in frames {
        ts += i64::from(*step) * (SEC / 20);
        let f = Frame {
            ts,
            link: *link,
            orig_len: data.len() as u32,
            data,
        };
        e.ingest(&f, &mut records);
        check(&e, &records)?;
    }
    e.finish(&mut records);
    check(&e, &records)?;
    prop_assert_eq!(e.flow_counters().live, 0);
    Ok(())
}

/// `ip` (an IPv4 or IPv6 packet, or anything) behind the link header of `link`.
fn wrap(link: LinkType, v6: bool, ip: &[u8]) -> Vec<u8> {
    let et: u16 = if v6 { 0x86dd } else { 0x0800 };
    let mut out = Vec::new();
    match link {
        LinkType::ETHERNET => return synth::ethernet(synth::MAC_B, synth::MAC_A, et, ip),
        LinkType::NULL => out.extend_from_slice(&(if v6 { 24u32 } else { 2 }).to_le_bytes()),
        LinkType::LOOP => out.extend_from_slice(&(if v6 { 24u32 } else { 2 }).to_be_bytes()),
        LinkType::LINUX_SLL => {
            out.extend_from_slice(&[0, 0, 0, 1, 0, 6]);
            out.extend_from_slice(&synth::MAC_A);
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&et.to_be_bytes());
        }
        LinkType::LINUX_SLL2 => {
            out.extend_from_slice(&et.to_be_bytes());
            out.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 1, 0, 6]);
            out.extend_from_slice(&synth::MAC_A);
            out.extend_from_slice(&[0, 0]);
        }
        LinkType::NFLOG => {
            out.extend_from_slice(&[if v6 { 10 } else { 2 }, 0, 0, 1]);
            out.extend_from_slice(&[8, 0, 1, 0, 0x08, 0x00, 3, 0]); // NFULA_PACKET_HDR
            let len = u16::try_from(4 + ip.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&9u16.to_le_bytes()); // NFULA_PAYLOAD
        }
        _ => {} // RAW, IPV4, IPV6, unknown
    }
    out.extend_from_slice(ip);
    out
}

/// Valid frames: `(link, frame)`.
fn valid_frames() -> Vec<(LinkType, Vec<u8>)> {
    let (a, b, o) = (
        Ipv4Addr::new(10, 0, 0, 1),
        Ipv4Addr::new(10, 0, 0, 2),
        Ipv4Addr::new(192, 0, 2, 1),
    );
    let (a6, b6): (Ipv6Addr, Ipv6Addr) = ("2001:db8::1".parse().unwrap(), "2001:db8::2".parse().unwrap());
    let tcp4 = synth::ipv4(
        a,
        b,
        6,
        1,
        &synth::tcp(a.into(), b.into(), 40000, 443, 1, 0, TcpFlags::SYN, b"hi"),
    );
    let udp6 = synth::ipv6(a6, b6, 17, &synth::udp(a6.into(), b6.into(), 5353, 53, b"query"));
    let mut ips: Vec<(bool, Vec<u8>)> = vec![
        (false, tcp4.clone()),
        (true, udp6.clone()),
        (
            false,
            synth::ipv4(a, b, 1, 2, &synth::icmpv4_echo(7, 1, true, b"ping")),
        ),
        (
            true,
            synth::ipv6(a6, b6, 58, &synth::icmpv6_echo(a6, b6, 7, 1, true, b"ping")),
        ),
        (false, synth::ipv4(o, o, 41, 3, &udp6)), // 6in4
        (
            false,
            synth::ipv4(o, o, 47, 4, &[&[0, 0, 0x08, 0x00][..], &tcp4].concat()),
        ), // GRE
    ];
    let vxlan = [
        &[0x08, 0, 0, 0, 0, 0, 1, 0][..],
        &synth::ethernet(synth::MAC_B, synth::MAC_A, 0x0800, &tcp4),
    ]
    .concat();
    ips.push((
        false,
        synth::ipv4(o, o, 17, 5, &synth::udp(o.into(), o.into(), 50000, 4789, &vxlan)),
    ));
    ips.push((
        false,
        synth::ipv4(o, o, 17, 6, &synth::udp(o.into(), o.into(), 3544, 40001, &udp6)),
    )); // Teredo
    let dgram = synth::udp(a.into(), b.into(), 1000, 2000, &[7; 100]);
    ips.extend(
        synth::ipv4_fragments(a, b, 17, 77, &dgram, 32)
            .into_iter()
            .map(|f| (false, f)),
    );
    let dgram6 = synth::udp(a6.into(), b6.into(), 1000, 2000, &[9; 100]);
    ips.extend(
        synth::ipv6_fragments(a6, b6, 17, 78, &dgram6, 48)
            .into_iter()
            .map(|f| (true, f)),
    );
    let mut frames: Vec<(LinkType, Vec<u8>)> = Vec::new();
    for link in LINKS {
        for (v6, ip) in &ips {
            if (link == LinkType::IPV4 && *v6) || (link == LinkType::IPV6 && !*v6) {
                continue;
            }
            frames.push((link, wrap(link, *v6, ip)));
        }
    }
    // Ethernet only: QinQ, MPLS, PPPoE.
    let eth = |et: u16, p: &[u8]| synth::ethernet(synth::MAC_B, synth::MAC_A, et, p);
    let qinq = synth::vlan(0x88a8, 10, 0x8100, &synth::vlan(0x8100, 20, 0x0800, &tcp4));
    frames.push((LinkType::ETHERNET, eth(0x88a8, &qinq)));
    frames.push((
        LinkType::ETHERNET,
        eth(0x8847, &[&[0, 0x01, 0x41, 0x40][..], &tcp4].concat()),
    ));
    let len = u16::try_from(2 + udp6.len()).unwrap();
    let pppoe = [&[0x11, 0, 0, 1][..], &len.to_be_bytes(), &[0, 0x57], &udp6].concat();
    frames.push((LinkType::ETHERNET, eth(0x8864, &pppoe)));
    frames
}

#[derive(Clone, Debug)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Truncate(usize),
}

fn mutate(mut f: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        if f.is_empty() {
            break;
        }
        match *m {
            Mutation::Flip(i, bit) => {
                let n = f.len();
                f[i % n] ^= 1 << (bit % 8);
            }
            Mutation::Set(i, v) => {
                let n = f.len();
                f[i % n] = v;
            }
            Mutation::Truncate(i) => f.truncate(i % f.len()),
        }
    }
    f
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Mutation::Set(i, v)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Random bytes, bare or behind a valid link header, under every link type.
    #[test]
    fn random_frames_never_panic(
        frames in prop::collection::vec(
            (0..LINKS.len(), any::<u8>(), any::<bool>(), any::<bool>(), prop::collection::vec(any::<u8>(), 0..160)),
            1..24,
        )
    ) {
        let frames: Vec<_> = frames
            .into_iter()
            .map(|(l, step, wrapped, v6, mut bytes)| {
                let link = LINKS[l];
                if wrapped {
                    // Make the IP version nibble right so the walk gets past the link layer.
                    if let Some(b) = bytes.first_mut() {
                        *b = (*b & 0x0f) | if v6 { 0x60 } else { 0x40 };
                    }
                    bytes = wrap(link, v6, &bytes);
                }
                (link, step, bytes)
            })
            .collect();
        run(&frames)?;
    }

    /// Sequences of valid frames, each maybe mutated (bit flips, byte writes, truncations).
    #[test]
    fn mutated_valid_frames_never_panic(
        picks in prop::collection::vec(
            (any::<prop::sample::Index>(), 0u8..80, prop::collection::vec(mutation(), 0..4)),
            1..32,
        )
    ) {
        let valid = valid_frames();
        let frames: Vec<_> = picks
            .iter()
            .map(|(i, step, muts)| {
                let (link, f) = i.get(&valid);
                (*link, *step, mutate(f.clone(), muts))
            })
            .collect();
        run(&frames)?;
    }
}

#[test]
fn valid_frames_make_flows_on_every_supported_link() {
    let valid = valid_frames();
    for link in &LINKS[..9] {
        let mut e = Engine::new(EngineConfig::default());
        let mut out = Vec::new();
        for (l, f) in valid.iter().filter(|(l, _)| l == link) {
            let frame = Frame {
                ts: 1,
                link: *l,
                orig_len: f.len() as u32,
                data: f,
            };
            e.ingest(&frame, &mut out);
        }
        e.finish(&mut out);
        assert_eq!(
            e.stats().undecodable_frames,
            0,
            "{link}: {:?}",
            e.anomalies().sorted()
        );
        assert!(e.stats().reassembled >= 1, "{link}: {:?}", e.stats());
        assert!(out.len() >= 3, "{link}: {} flows", out.len());
    }
}
