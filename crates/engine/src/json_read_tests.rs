//! The reader against the writers: generated records of every kind are written, read and
//! written again (same line); any text at all never panics the reader.

use super::*;
use proptest::prelude::*;
use std::net::Ipv6Addr;

fn line(r: &Record) -> String {
    let mut s = String::new();
    r.write_json(&mut s);
    s
}

fn round_trip(r: &Record) {
    let a = line(r);
    let back = Record::from_json(&a).unwrap_or_else(|e| panic!("{e}: {a}"));
    assert_eq!(a, line(&back));
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b))),
        any::<[u8; 16]>().prop_map(|b| IpAddr::V6(Ipv6Addr::from(b))),
    ]
}

fn addr() -> impl Strategy<Value = SocketAddr> {
    (ip(), any::<u16>()).prop_map(|(i, p)| SocketAddr::new(i, p))
}

fn ep() -> impl Strategy<Value = Endpoint> {
    (ip(), any::<u16>()).prop_map(|(ip, port)| Endpoint { ip, port })
}

/// Any text, control characters and quotes included.
fn text() -> impl Strategy<Value = String> {
    "(\\PC|[\"\\\\\u{0}-\u{1f}\u{7f}])*".prop_map(|s| s.chars().take(24).collect())
}

fn time() -> impl Strategy<Value = i64> {
    prop_oneof![
        0i64..4_102_444_800_000_000_000,
        (0i64..4_102_444_800_000_000).prop_map(|u| u * 1000)
    ]
}

fn process() -> impl Strategy<Value = ProcessInfo> {
    (
        (
            any::<u32>(),
            proptest::option::of(any::<u32>()),
            text(),
            proptest::option::of(text()),
        ),
        (
            proptest::collection::vec(text(), 0..3),
            proptest::option::of(any::<u32>()),
            proptest::option::of(text()),
        ),
        (
            proptest::option::of(time()),
            proptest::option::of(text()),
            proptest::option::of(text()),
        ),
        (
            any::<bool>(),
            any::<bool>(),
            proptest::option::of(proptest::option::of(text())),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (pid, ppid, name, exe),
                (cmdline, uid, user),
                (start_time, container, unit),
                (del, tmp, pkg, inferred),
            )| {
                ProcessInfo {
                    pid,
                    ppid,
                    name,
                    exe: exe.map(PathBuf::from),
                    cmdline,
                    uid,
                    user,
                    start_time,
                    container,
                    unit,
                    exe_deleted: del,
                    exe_in_temp: tmp,
                    package_checked: pkg.is_some(),
                    package: pkg.flatten(),
                    inferred,
                }
            },
        )
}

fn flow() -> impl Strategy<Value = FlowRecord> {
    let dir = any::<(u64, u64, u64)>().prop_map(|(packets, bytes, payload_bytes)| DirCounters {
        packets,
        bytes,
        payload_bytes,
    });
    (
        (any::<u64>(), time(), time(), any::<u8>(), ep(), ep()),
        (
            prop_oneof![
                Just([0u16, 0]),
                (1u16..).prop_map(|v| [v, 0]),
                (1u16.., 1u16..).prop_map(|(a, b)| [a, b])
            ],
            0..5usize,
            0..5usize,
            0..4usize,
        ),
        (dir.clone(), dir),
        (
            proptest::option::of(prop_oneof![Just("tls"), Just("dns"), Just("some_new_app")]),
            any::<bool>(),
            proptest::option::of((text(), 0..4usize)),
            proptest::option::of(process()),
            proptest::option::of(flow_device()),
            proptest::option::of(iface()),
        ),
    )
        .prop_map(
            |(
                (id, start, end, proto, client, server),
                (vlan, cb, st, eb),
                (to_server, to_client),
                (app, port, dom, process, device, iface),
            )| {
                let client_by = [
                    ClientBy::Syn,
                    ClientBy::SynAck,
                    ClientBy::FirstPacket,
                    ClientBy::PortGuess,
                    ClientBy::Protocol,
                ][cb];
                let state = [
                    FlowState::Handshake,
                    FlowState::Established,
                    FlowState::Closing,
                    FlowState::Closed,
                    FlowState::Active,
                ][st];
                let ended_by = [
                    EndReason::IdleTimeout,
                    EndReason::Reused,
                    EndReason::Evicted,
                    EndReason::EndOfInput,
                ][eb];
                let src = [
                    DomainSource::TlsSni,
                    DomainSource::QuicSni,
                    DomainSource::HttpHost,
                    DomainSource::Dns,
                ];
                FlowRecord {
                    id,
                    start,
                    end,
                    proto,
                    client,
                    server,
                    vlan,
                    client_by,
                    state,
                    to_server,
                    to_client,
                    ended_by,
                    app: AppInfo {
                        app_proto: app,
                        app_by: if port { AppBy::Port } else { AppBy::Content },
                        domain_source: dom.as_ref().map(|(_, s)| src[*s]),
                        domain: dom.map(|(d, _)| d),
                    },
                    process: process.map(Box::new),
                    device: device.map(Box::new),
                    iface: iface.map(std::sync::Arc::from),
                }
            },
        )
}

/// An interface name as a flow may carry: 1 to [`crate::json_read::MAX_IFACE_LEN`] bytes,
/// with quotes, backslashes and control characters mixed in.
fn iface() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("eth0".to_string()),
        Just("wlan0".to_string()),
        text().prop_map(|s| {
            let mut out = String::new();
            for c in s.chars() {
                if out.len() + c.len_utf8() > crate::json_read::MAX_IFACE_LEN {
                    break;
                }
                out.push(c);
            }
            if out.is_empty() { "br0".to_string() } else { out }
        }),
    ]
}

fn flow_device() -> impl Strategy<Value = crate::lan::FlowDevice> {
    (
        any::<[u8; 6]>(),
        any::<(bool, bool)>(),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(text()),
    )
        .prop_map(
            |(mac, (client_side, private_mac), vendor, name, hostname, mdns_name)| crate::lan::FlowDevice {
                mac,
                client_side,
                private_mac,
                vendor,
                label: name.clone().unwrap_or_else(|| crate::lan::mac_text(&mac)),
                name,
                hostname,
                mdns_name,
            },
        )
}

fn device() -> impl Strategy<Value = crate::lan::DeviceRecord> {
    use crate::lan::{DeviceEvent, DeviceRecord, LanDevice};
    const CHANGES: [&str; 6] = [
        "ipv4",
        "ipv6",
        "hostname",
        "vendor_class",
        "mdns_name",
        "mdns_instance",
    ];
    (
        (
            time(),
            time(),
            any::<bool>(),
            proptest::collection::vec(0..6usize, 0..3),
        ),
        (
            any::<[u8; 6]>(),
            any::<bool>(),
            proptest::option::of(text()),
            proptest::option::of(text()),
        ),
        (
            proptest::option::of(text()),
            proptest::collection::vec(text(), 0..3),
            proptest::collection::vec(text(), 0..2),
            proptest::collection::vec(any::<[u8; 4]>(), 0..3),
            proptest::collection::vec(any::<[u8; 16]>(), 0..3),
        ),
    )
        .prop_map(
            |(
                (ts, first_seen, seen, changed),
                (mac, private_mac, vendor, hostname),
                (vendor_class, mdns_names, mdns_instances, v4, v6),
            )| DeviceRecord {
                ts,
                event: if seen {
                    DeviceEvent::Seen
                } else {
                    DeviceEvent::Changed
                },
                changed: changed.into_iter().map(|i| CHANGES[i]).collect(),
                device: LanDevice {
                    mac,
                    private_mac,
                    vendor,
                    hostname,
                    vendor_class,
                    mdns_names,
                    mdns_instances,
                    ipv4: v4.into_iter().map(Ipv4Addr::from).collect(),
                    ipv6: v6.into_iter().map(Ipv6Addr::from).collect(),
                    first_seen,
                    last_seen: ts,
                },
            },
        )
}

fn meta() -> impl Strategy<Value = RecordMeta> {
    (any::<u64>(), time(), any::<u8>(), ep(), ep()).prop_map(|(flow_id, ts, proto, client, server)| {
        RecordMeta {
            flow_id,
            ts,
            proto,
            client,
            server,
        }
    })
}

fn hello() -> impl Strategy<Value = HelloSummary> {
    (
        proptest::option::of(text()),
        proptest::collection::vec(text(), 0..3),
        proptest::collection::vec(
            prop_oneof![
                Just(0x0304u16),
                Just(0x0303),
                Just(0x0a0a),
                Just(0xfefd),
                any::<u16>()
            ],
            0..4,
        ),
        any::<(u16, u16, bool)>(),
        "[0-9a-f]{32}",
        "[tq][0-9a-z_]{10,36}",
    )
        .prop_map(|(sni, alpn, versions, (cs, ext, ech), ja3, ja4)| HelloSummary {
            sni,
            alpn,
            versions,
            cipher_suites: cs as usize,
            extensions: ext as usize,
            ja3,
            ja4,
            ech,
        })
}

fn tls() -> impl Strategy<Value = TlsRecord> {
    let cert = (
        text(),
        text(),
        proptest::collection::vec(text(), 0..3),
        proptest::option::of(text()),
        proptest::option::of(text()),
    )
        .prop_map(|(subject, issuer, dns_names, not_before, not_after)| CertInfo {
            subject,
            issuer,
            dns_names,
            not_before,
            not_after,
        });
    (
        meta(),
        hello(),
        proptest::option::of(prop_oneof![Just(0x0304u16), any::<u16>()]),
        proptest::option::of(text()),
        proptest::option::of(any::<u16>()),
        proptest::collection::vec(cert, 0..3),
    )
        .prop_map(
            |(meta, hello, server_version, server_alpn, cipher_suite, certificates)| TlsRecord {
                meta,
                hello,
                server_version,
                server_alpn,
                cipher_suite,
                certificates,
            },
        )
}

fn rdata() -> impl Strategy<Value = RData> {
    let name = "[a-z0-9-]{1,10}(\\.[a-z0-9-]{1,10}){0,3}";
    prop_oneof![
        any::<[u8; 4]>().prop_map(|b| RData::A(Ipv4Addr::from(b))),
        any::<[u8; 16]>().prop_map(|b| RData::Aaaa(Ipv6Addr::from(b))),
        name.prop_map(RData::Name),
        (any::<u16>(), name).prop_map(|(preference, exchange)| RData::Mx { preference, exchange }),
        proptest::collection::vec("([ -!#-\\[\\]-~]|\\\\\"|\\\\\\\\|\\\\[0-9]{3}){0,12}", 0..3)
            .prop_map(RData::Txt),
        (any::<(u16, u16, u16)>(), name).prop_map(|((priority, weight, port), target)| RData::Srv {
            priority,
            weight,
            port,
            target
        }),
        (name, name, any::<(u32, u32, u32, u32, u32)>()).prop_map(
            |(mname, rname, (serial, refresh, retry, expire, minimum))| {
                RData::Soa {
                    mname,
                    rname,
                    serial,
                    refresh,
                    retry,
                    expire,
                    minimum,
                }
            }
        ),
        (
            any::<u16>(),
            name,
            proptest::collection::vec((0u16..8, proptest::collection::vec(any::<u8>(), 0..8)), 0..3)
        )
            .prop_map(|(priority, target, params)| RData::Svcb {
                priority,
                target,
                params
            }),
        (
            any::<(u16, u8, u8, bool)>(),
            proptest::collection::vec((any::<u16>(), proptest::collection::vec(any::<u8>(), 0..6)), 0..2)
        )
            .prop_map(
                |((udp_size, ext_rcode, version, dnssec_ok), options)| RData::Opt {
                    udp_size,
                    ext_rcode,
                    version,
                    dnssec_ok,
                    options
                }
            ),
        proptest::collection::vec(any::<u8>(), 0..12).prop_map(RData::Other),
    ]
}

fn dns() -> impl Strategy<Value = DnsRecord> {
    let rtype = prop_oneof![
        Just(1u16),
        Just(28),
        Just(5),
        Just(15),
        Just(16),
        Just(33),
        Just(6),
        Just(64),
        Just(65),
        Just(41),
        any::<u16>()
    ];
    let question = ("[a-z.]{1,20}", rtype.clone(), any::<u16>()).prop_map(|(name, t, qclass)| Question {
        name,
        qtype: RrType(t),
        qclass,
        unicast_response: false,
    });
    let rr = (0..3usize, "[a-z.]{1,20}", rtype, any::<u32>(), rdata()).prop_map(|(s, name, t, ttl, data)| {
        ResourceRecord {
            section: [Section::Answer, Section::Authority, Section::Additional][s],
            name,
            rtype: RrType(t),
            class: 1,
            ttl,
            data,
        }
    });
    let incomplete = proptest::option::of(prop_oneof![
        (any::<u16>(), any::<u16>()).prop_map(|(need, have)| WireError::Truncated {
            layer: Layer::Dns,
            need: need as usize,
            have: have as usize
        }),
        Just(WireError::Malformed {
            layer: Layer::Dns,
            what: "label too long"
        }),
    ]);
    (
        meta(),
        prop_oneof![Just("dns"), Just("mdns"), Just("llmnr")],
        any::<bool>(),
        (any::<u16>(), any::<bool>(), 0u8..16, any::<bool>(), 0u16..4096),
        proptest::collection::vec(question, 0..3),
        proptest::collection::vec(rr, 0..4),
        incomplete,
    )
        .prop_map(
            |(
                meta,
                app,
                from_client,
                (id, response, opcode, truncated, rcode),
                questions,
                records,
                incomplete,
            )| DnsRecord {
                meta,
                app,
                from_client,
                msg: DnsMessage {
                    id,
                    response,
                    opcode,
                    authoritative: false,
                    truncated,
                    recursion_desired: false,
                    recursion_available: false,
                    rcode,
                    questions,
                    records,
                    incomplete,
                    trailing_bytes: 0,
                },
            },
        )
}

fn http() -> impl Strategy<Value = HttpRecord> {
    let req = (
        text(),
        text(),
        text(),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(any::<u64>()),
    )
        .prop_map(
            |(method, target, version, host, user_agent, content_length)| Request {
                method,
                target,
                version,
                host,
                user_agent,
                content_length,
                chunked: false,
                headers: Vec::new(),
            },
        );
    let resp = (
        any::<u16>(),
        proptest::option::of(text()),
        proptest::option::of(any::<u64>()),
        proptest::option::of(text()),
    )
        .prop_map(|(status, content_type, content_length, server)| Response {
            version: String::new(),
            status,
            reason: String::new(),
            content_type,
            content_length,
            chunked: false,
            server,
        });
    (meta(), proptest::option::of(req), proptest::option::of(resp)).prop_map(|(meta, request, response)| {
        HttpRecord {
            meta,
            request,
            response,
        }
    })
}

fn stun() -> impl Strategy<Value = StunRecord> {
    let addr = addr();
    (
        meta(),
        any::<bool>(),
        (
            0..4usize,
            prop_oneof![Just(1u16), 0u16..0x1000],
            any::<[u8; 12]>(),
            any::<bool>(),
        ),
        (
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::option::of(addr),
        ),
    )
        .prop_map(
            |(meta, from_client, (c, method, transaction_id, classic), (sw, user, mapped))| {
                let mut attributes = Vec::new();
                if let Some(s) = sw {
                    attributes.push(Attribute {
                        typ: attr::SOFTWARE,
                        value: s.into_bytes(),
                    });
                }
                if let Some(s) = user {
                    attributes.push(Attribute {
                        typ: attr::USERNAME,
                        value: s.into_bytes(),
                    });
                }
                if let Some(a) = mapped {
                    let mut v = vec![0, if a.is_ipv4() { 1 } else { 2 }];
                    v.extend_from_slice(&a.port().to_be_bytes());
                    match a.ip() {
                        IpAddr::V4(i) => v.extend_from_slice(&i.octets()),
                        IpAddr::V6(i) => v.extend_from_slice(&i.octets()),
                    }
                    attributes.push(Attribute {
                        typ: attr::MAPPED_ADDRESS,
                        value: v,
                    });
                }
                StunRecord {
                    meta,
                    from_client,
                    msg: StunMessage {
                        class: [
                            Class::Request,
                            Class::Indication,
                            Class::SuccessResponse,
                            Class::ErrorResponse,
                        ][c],
                        method,
                        transaction_id,
                        classic,
                        length: 0,
                        attributes,
                    },
                }
            },
        )
}

fn dhcp() -> impl Strategy<Value = DhcpRecord> {
    (
        meta(),
        prop_oneof![Just(1u8), Just(2)],
        proptest::option::of(0u8..12),
        any::<[u8; 6]>(),
        (
            proptest::option::of(text()),
            proptest::option::of(any::<[u8; 4]>()),
            proptest::option::of(text()),
            proptest::option::of(text()),
        ),
    )
        .prop_map(
            |(meta, op, message_type, client_mac, (hostname, req, vendor_class, client_fqdn))| DhcpRecord {
                meta,
                dhcp: Dhcp {
                    op,
                    message_type,
                    client_mac,
                    hostname,
                    requested_ip: req.map(Ipv4Addr::from),
                    vendor_class,
                    client_fqdn,
                    parameter_list: Vec::new(),
                },
            },
        )
}

fn connection() -> impl Strategy<Value = ConnectionRecord> {
    let sock = prop_oneof![
        Just(SockProto::Tcp),
        Just(SockProto::Udp),
        Just(SockProto::UdpLite),
        any::<u8>().prop_map(SockProto::Raw),
        Just(SockProto::Icmp),
        Just(SockProto::Icmpv6),
        Just(SockProto::Sctp),
        Just(SockProto::Packet),
    ];
    let tcp =
        any::<(u64, u64, u32, u32)>().prop_map(|(bytes_acked, bytes_received, rtt_us, total_retrans)| {
            TcpInfo {
                bytes_acked,
                bytes_received,
                rtt_us,
                total_retrans,
                ..TcpInfo::default()
            }
        });
    (
        (time(), 0..3usize, sock, proptest::option::of(any::<bool>())),
        (addr(), addr(), proptest::option::of(1u8..=12)),
        (
            proptest::option::of(process()),
            proptest::option::of(tcp),
            any::<u32>(),
            any::<u64>(),
        ),
    )
        .prop_map(
            |((ts, ev, proto, dir), (local, remote, state), (process, tcp, uid, inode))| ConnectionRecord {
                ts,
                event: [ConnEvent::Opened, ConnEvent::Closed, ConnEvent::ListeningOnAll][ev],
                proto,
                direction: dir.map(|o| {
                    if o {
                        Direction::Outbound
                    } else {
                        Direction::Inbound
                    }
                }),
                local,
                remote,
                state: state.and_then(TcpState::from_kernel),
                process,
                tcp,
                uid,
                inode,
            },
        )
}

fn record() -> BoxedStrategy<Record> {
    prop_oneof![
        flow().prop_map(Record::Flow).boxed(),
        dns().prop_map(|r| Record::Dns(Box::new(r))).boxed(),
        tls().prop_map(|r| Record::Tls(Box::new(r))).boxed(),
        (meta(), any::<u32>(), hello())
            .prop_map(|(meta, version, hello)| Record::Quic(Box::new(QuicRecord { meta, version, hello })))
            .boxed(),
        http().prop_map(|r| Record::Http(Box::new(r))).boxed(),
        stun().prop_map(|r| Record::Stun(Box::new(r))).boxed(),
        dhcp().prop_map(|r| Record::Dhcp(Box::new(r))).boxed(),
        connection().prop_map(|r| Record::Connection(Box::new(r))).boxed(),
        device().prop_map(|r| Record::Device(Box::new(r))).boxed(),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn write_read_write_gives_the_same_line(r in record()) {
        round_trip(&r);
    }

    #[test]
    fn any_text_never_panics(s in "\\PC{0,300}") {
        let _ = parse(&s);
        let _ = Record::from_json(&s);
        let _ = parse_rfc3339(&s);
    }

    #[test]
    fn json_like_text_never_panics(s in "[\\[\\]{}\",:0-9a-z\\\\ .eE+-]{0,300}") {
        let _ = parse(&s);
        let _ = Record::from_json(&s);
    }

    /// A written record with one byte changed: read or refused, never a panic.
    #[test]
    fn damaged_records_never_panic(r in record(), at in any::<usize>(), b in any::<u8>()) {
        let mut bytes = line(&r).into_bytes();
        let i = at % bytes.len();
        bytes[i] = b;
        if let Ok(s) = std::str::from_utf8(&bytes) {
            let _ = Record::from_json(s);
        }
    }
}

#[test]
fn parses_values() {
    let v = parse(r#" {"a": [1, -2.5e1, true, null, "x\u00e9\ud83d\ude00\n"], "b": {}} "#).unwrap();
    let a = v.get("a").unwrap().as_array();
    assert_eq!(a[1].as_f64(), Some(-25.0));
    assert_eq!(a[0].as_u64(), Some(1));
    assert_eq!(a[4].as_str(), Some("xé😀\n"));
    for bad in [
        "[1,]",
        "{\"a\" 1}",
        "\"abc",
        "1 2",
        "01",
        "1.",
        "-",
        "1e",
        "\"\u{1}\"",
        "{\"a\":}",
    ] {
        assert!(parse(bad).is_err(), "{bad}");
    }
    assert!(parse(&"[".repeat(100)).unwrap_err().what.contains("deep"));
}

#[test]
fn errors_name_the_field() {
    let e = Record::from_json(r#"{"type":"flow","v":1,"id":"x"}"#).unwrap_err();
    assert_eq!(
        e.to_string(),
        "field \"id\": expected an unsigned integer in range"
    );
    let e = Record::from_json(r#"{"type":"gizmo","v":1}"#).unwrap_err();
    assert_eq!(e, ReadError::UnknownType("gizmo".into()));
    let e = Record::from_json(r#"{"type":"flow","v":2}"#).unwrap_err();
    assert!(e.to_string().contains("\"v\""), "{e}");
}

#[test]
fn unknown_fields_are_ignored() {
    let mut s = String::new();
    let r = Record::Connection(Box::new(ConnectionRecord {
        ts: 1,
        event: ConnEvent::Opened,
        proto: SockProto::Tcp,
        direction: Some(Direction::Outbound),
        local: "127.0.0.1:5".parse().unwrap(),
        remote: "[::1]:6".parse().unwrap(),
        state: TcpState::from_kernel(1),
        process: None,
        tcp: None,
        uid: 0,
        inode: 9,
    }));
    r.write_json(&mut s);
    let judged = format!(
        "{},\"score\":3,\"flags\":[{{\"kind\":\"x\"}}]}}",
        &s[..s.len() - 1]
    );
    let back = Record::from_json(&judged).unwrap();
    assert_eq!(back, r);
}
