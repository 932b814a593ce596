//! Application dissectors: which protocol a flow speaks, the names it carries, and one record
//! per message (`dns`, `tls`, `quic`, `http`, `stun`).
//!
//! Only the first payloads of a flow are inspected until the flow is identified and its naming
//! messages are read; then the flow is only counted (`Flow::inspected`). TCP directions are put
//! back in order by [`stream::Stream`] before a parser sees them.

pub mod dns_cache;
pub mod stream;

use std::collections::VecDeque;

use wire::apps;
use wire::cursor::Parse;
use wire::http::{self, Message as HttpMessage, MessageStream};
use wire::tls::{self, Handshake, HandshakeScan, Transport};

use crate::Record;
use crate::app_record::{
    DhcpRecord, DnsRecord, HelloSummary, HttpRecord, QuicRecord, RecordMeta, StunRecord, TlsRecord,
};
use crate::flow::Flow;
use crate::record::{AppBy, ClientBy, DomainSource};
use dns_cache::DnsCache;
use stream::Stream;

/// Payload packets a flow may take to say what it is before we stop looking.
const PROBE_PACKETS: u16 = 8;
/// DNS messages recorded per flow, at most (mDNS flows can live for hours).
const MAX_DNS_MESSAGES: u32 = 10_000;
/// STUN messages recorded per flow, at most.
const MAX_STUN_MESSAGES: u32 = 64;
/// HTTP messages recorded per flow, at most; also the queue of requests awaiting a response.
const MAX_HTTP_MESSAGES: u32 = 10_000;
const MAX_HTTP_PENDING: usize = 32;
/// QUIC datagrams looked at for a ClientHello.
const QUIC_PACKETS: u16 = 16;
/// DNS over TCP: bytes buffered per direction for an incomplete message.
const MAX_DNS_TCP_BUFFER: usize = 65_537;

/// One payload of a flow, as the engine hands it over.
#[derive(Clone, Copy, Debug)]
pub struct Segment<'a> {
    pub ts: i64,
    pub from_client: bool,
    /// TCP sequence number of the first payload byte; `None` for UDP.
    pub seq: Option<u32>,
    pub payload: &'a [u8],
    pub sport: u16,
    pub dport: u16,
}

/// Dissector state of one flow (boxed inside the flow while it is inspected).
#[derive(Debug)]
pub struct Dissect {
    kind: Kind,
    /// TCP: client-to-server and server-to-client streams.
    tcp: Option<Box<[Stream; 2]>>,
    payloads: u16,
    /// Records waiting for more of the conversation (a TLS server flight, an HTTP response).
    tls: Option<Box<TlsRecord>>,
    http_pending: VecDeque<HttpRecord>,
}

#[derive(Debug)]
enum Kind {
    Probe,
    Dns {
        app: &'static str,
        messages: u32,
    },
    DnsTcp {
        bufs: Box<[Vec<u8>; 2]>,
        messages: u32,
    },
    Tls {
        scans: Box<[HandshakeScan; 2]>,
        server_hello: bool,
    },
    Http {
        streams: Box<[MessageStream; 2]>,
        messages: u32,
        connect: bool,
    },
    HttpUdp {
        messages: u32,
    },
    Dhcp {
        messages: u32,
    },
    #[cfg(feature = "quic")]
    Quic(Box<quic::QuicState>),
    Stun {
        messages: u32,
    },
    Done,
}

/// Counters of what the dissectors saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DissectStats {
    pub tls_client_hellos: u64,
    pub quic_client_hellos: u64,
    pub dns_messages: u64,
    pub http_requests: u64,
    pub stun_messages: u64,
    /// TCP segments dropped from reassembly because too much was out of order.
    pub reassembly_drops: u64,
}

/// Owns what outlives a flow: the passive DNS cache.
#[derive(Debug)]
pub struct Dissector {
    pub cache: DnsCache,
    pub stats: DissectStats,
}

impl Default for Dissector {
    fn default() -> Self {
        Self {
            cache: DnsCache::new(100_000),
            stats: DissectStats::default(),
        }
    }
}

/// A SIP request line ("REGISTER sip:... SIP/2.0") or status line ("SIP/2.0 200 OK"), which
/// would otherwise pass for HTTP.
fn is_sip(p: &[u8]) -> bool {
    if p.starts_with(b"SIP/2.0 ") {
        return true;
    }
    let line_end = p.iter().take(512).position(|&b| b == b'\r' || b == b'\n');
    line_end.is_some_and(|e| p[..e].ends_with(b" SIP/2.0"))
}

/// A TLS record header other than a handshake (change_cipher_spec, alert, application data)
/// with a TLS 1.0-1.3 version and a length TLS allows.
fn is_tls_record(p: &[u8]) -> bool {
    p.len() >= 5
        && matches!(p[0], 20..=23)
        && p[1] == 3
        && (1..=4).contains(&p[2])
        && usize::from(u16::from_be_bytes([p[3], p[4]])) <= (1 << 14) + 2048
        && usize::from(u16::from_be_bytes([p[3], p[4]])) > 0
}

/// A STUN message; the classic RFC 3489 form (no magic cookie) is a weak signature, so only
/// on the STUN port.
fn is_stun(p: &[u8], stun_port: bool) -> bool {
    wire::stun::parse(p).is_ok_and(|(m, _)| !m.classic || stun_port)
}

/// A DNS message worth a record: it parses, and something in it was readable (a question, a
/// record, or a clean empty message), so that garbage on port 53 is not reported as DNS.
fn dns_message(p: &[u8]) -> Option<wire::dns::Message> {
    let m = wire::dns::parse(p).ok()?;
    (!m.questions.is_empty() || !m.records.is_empty() || m.incomplete.is_none()).then_some(m)
}

fn meta(flow: &Flow, ts: i64) -> RecordMeta {
    RecordMeta {
        flow_id: flow.id(),
        ts,
        proto: flow.proto(),
        client: flow.client(),
        server: flow.server(),
    }
}

/// The name without a port ("example.com:8080" -> "example.com", "[::1]:80" -> "::1").
fn host_without_port(host: &str) -> &str {
    let h = host.trim();
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match h.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => h,
    }
}

impl Dissect {
    fn new(tcp: bool) -> Self {
        Self {
            kind: Kind::Probe,
            tcp: tcp.then(|| Box::new([Stream::default(), Stream::default()])),
            payloads: 0,
            tls: None,
            http_pending: VecDeque::new(),
        }
    }

    /// The flow ends: records still waiting are written as they are.
    pub fn finish(mut self, out: &mut Vec<Record>) {
        if let Some(t) = self.tls.take() {
            out.push(Record::Tls(t));
        }
        out.extend(self.http_pending.drain(..).map(|h| Record::Http(Box::new(h))));
    }
}

impl Dissector {
    /// Looks at one payload of `flow`. Records go to `out`.
    pub fn payload(&mut self, flow: &mut Flow, seg: &Segment<'_>, out: &mut Vec<Record>) {
        if flow.inspected {
            return;
        }
        let mut d = match flow.dissect.take() {
            Some(d) => d,
            None => Box::new(Dissect::new(seg.seq.is_some())),
        };
        d.payloads = d.payloads.saturating_add(1);
        match seg.seq {
            Some(seq) => {
                let dir = usize::from(!seg.from_client);
                let mut streams = d.tcp.take().unwrap_or_default();
                if let Some(isn) = flow.isn(seg.from_client) {
                    streams[dir].set_isn(isn);
                }
                let before = streams[dir].dropped;
                streams[dir].push(seq, seg.payload, |bytes| {
                    self.tcp_bytes(flow, &mut d, seg, bytes, out)
                });
                self.stats.reassembly_drops += u64::from(streams[dir].dropped - before);
                d.tcp = Some(streams);
            }
            None => self.udp(flow, &mut d, seg, out),
        }
        if matches!(d.kind, Kind::Probe) && d.payloads >= PROBE_PACKETS {
            d.kind = Kind::Done;
        }
        if matches!(d.kind, Kind::Done) {
            if flow.app.app_proto.is_none()
                && let Some(guess) = apps::guess_by_port(seg.seq.is_some(), seg.sport, seg.dport)
            {
                flow.app.set_app(guess, AppBy::Port);
            }
            d.finish(out);
            flow.inspected = true;
        } else {
            flow.dissect = Some(d);
        }
    }

    /// Remembers DNS answers for naming later flows.
    fn learn(&mut self, msg: &wire::dns::Message, ts: i64) {
        if !msg.response {
            return;
        }
        let Some(q) = msg.query_name() else { return };
        for r in &msg.records {
            match r.data {
                wire::dns::RData::A(a) => self.cache.insert(a.into(), q, ts, r.ttl),
                wire::dns::RData::Aaaa(a) => self.cache.insert(a.into(), q, ts, r.ttl),
                _ => {}
            }
        }
    }

    fn dns_record(
        &mut self,
        flow: &Flow,
        app: &'static str,
        seg: &Segment<'_>,
        msg: wire::dns::Message,
        out: &mut Vec<Record>,
    ) {
        self.stats.dns_messages += 1;
        self.learn(&msg, seg.ts);
        out.push(Record::Dns(Box::new(DnsRecord {
            meta: meta(flow, seg.ts),
            app,
            from_client: seg.from_client,
            msg,
        })));
    }

    fn udp(&mut self, flow: &mut Flow, d: &mut Dissect, seg: &Segment<'_>, out: &mut Vec<Record>) {
        let p = seg.payload;
        let port = |n: u16| seg.sport == n || seg.dport == n;
        if matches!(d.kind, Kind::Probe) {
            let dns_app = if port(53) {
                Some("dns")
            } else if port(5353) {
                Some("mdns")
            } else if port(5355) {
                Some("llmnr")
            } else {
                None
            };
            if let Some(app) = dns_app
                && dns_message(p).is_some()
            {
                flow.app.set_app(app, AppBy::Content);
                d.kind = Kind::Dns { app, messages: 0 };
            } else if let Some(k) = quic::probe(p) {
                flow.app.set_app("quic", AppBy::Content);
                d.kind = k;
            } else if is_stun(p, port(3478)) {
                flow.app.set_app("stun", AppBy::Content);
                d.kind = Kind::Stun { messages: 0 };
            } else if wire::stun::looks_like_dtls(p) {
                flow.app.set_app("dtls", AppBy::Content);
                d.kind = Kind::Stun { messages: 0 };
            } else if is_sip(p) {
                flow.app.set_app("sip", AppBy::Content);
                d.kind = Kind::Done;
                return;
            } else if http::looks_like_request(p) || http::looks_like_response(p) {
                // SSDP and other HTTP over UDP: one message per datagram.
                flow.app
                    .set_app(if port(1900) { "ssdp" } else { "http" }, AppBy::Content);
                d.kind = Kind::HttpUdp { messages: 0 };
            } else if let Some(app) = apps::identify_udp(p, seg.sport, seg.dport) {
                flow.app.set_app(app.name(), AppBy::Content);
                if app != apps::App::Dhcp {
                    d.kind = Kind::Done;
                    return;
                }
                d.kind = Kind::Dhcp { messages: 0 };
            } else if wire::dns::looks_like_dns(p) {
                // DNS on a port of its own (DNSCrypt resolvers answer plain queries on 443 ...).
                flow.app.set_app("dns", AppBy::Content);
                d.kind = Kind::Dns {
                    app: "dns",
                    messages: 0,
                };
            } else {
                return;
            }
        }
        match &mut d.kind {
            Kind::Dns { app, messages } => {
                if let Some(msg) = dns_message(p) {
                    *messages += 1;
                    let app = *app;
                    self.dns_record(flow, app, seg, msg, out);
                    if *messages >= MAX_DNS_MESSAGES {
                        d.kind = Kind::Done;
                    }
                }
            }
            Kind::Dhcp { messages } => {
                if let Ok(dhcp) = apps::parse_dhcp(p) {
                    *messages += 1;
                    out.push(Record::Dhcp(Box::new(DhcpRecord {
                        meta: meta(flow, seg.ts),
                        dhcp,
                    })));
                }
                if *messages >= MAX_STUN_MESSAGES || d.payloads >= 256 {
                    d.kind = Kind::Done;
                }
            }
            Kind::HttpUdp { messages } => {
                let msg = match http::parse_request(p) {
                    Parse::Done(req, _) => Some(HttpRecord {
                        meta: meta(flow, seg.ts),
                        request: Some(req),
                        response: None,
                    }),
                    _ => match http::parse_response(p) {
                        Parse::Done(resp, _) => Some(HttpRecord {
                            meta: meta(flow, seg.ts),
                            request: None,
                            response: Some(resp),
                        }),
                        _ => None,
                    },
                };
                if let Some(rec) = msg {
                    *messages += 1;
                    if rec.request.is_some() {
                        self.stats.http_requests += 1;
                    }
                    out.push(Record::Http(Box::new(rec)));
                }
                if *messages >= MAX_HTTP_MESSAGES || d.payloads >= 1024 {
                    d.kind = Kind::Done;
                }
            }
            Kind::Stun { messages } => {
                if let Ok((msg, _)) = wire::stun::parse(p) {
                    *messages += 1;
                    self.stats.stun_messages += 1;
                    flow.app.set_app("stun", AppBy::Content);
                    out.push(Record::Stun(Box::new(StunRecord {
                        meta: meta(flow, seg.ts),
                        from_client: seg.from_client,
                        msg,
                    })));
                    if *messages >= MAX_STUN_MESSAGES {
                        d.kind = Kind::Done;
                    }
                } else if d.payloads >= 256 {
                    d.kind = Kind::Done;
                }
            }
            #[cfg(feature = "quic")]
            Kind::Quic(q) => {
                if let Some(ch) = q.datagram(seg.from_client, p) {
                    self.stats.quic_client_hellos += 1;
                    let hello = HelloSummary::new(&ch.hello, Transport::Quic);
                    if let Some(sni) = &hello.sni {
                        flow.app.set_domain(sni, DomainSource::QuicSni);
                    }
                    out.push(Record::Quic(Box::new(QuicRecord {
                        meta: meta(flow, seg.ts),
                        version: ch.version,
                        hello,
                    })));
                    d.kind = Kind::Done;
                } else if d.payloads >= QUIC_PACKETS || q.failed() {
                    d.kind = Kind::Done;
                }
            }
            _ => d.kind = Kind::Done,
        }
    }

    /// In-order bytes of one TCP direction.
    fn tcp_bytes(
        &mut self,
        flow: &mut Flow,
        d: &mut Dissect,
        seg: &Segment<'_>,
        bytes: &[u8],
        out: &mut Vec<Record>,
    ) {
        let from_client = seg.from_client;
        if matches!(d.kind, Kind::Probe) {
            let port = |n: u16| seg.sport == n || seg.dport == n;
            if is_sip(bytes) {
                flow.app.set_app("sip", AppBy::Content);
                d.kind = Kind::Done;
                return;
            }
            if bytes.starts_with(b"GNUTELLA CONNECT/") || bytes.starts_with(b"GNUTELLA/0.6") {
                flow.app.set_app("gnutella", AppBy::Content);
                d.kind = Kind::Done;
                return;
            }
            if !tls::looks_like_tls(bytes) && is_tls_record(bytes) {
                // Picked up after the handshake: TLS records, but nothing to name them.
                flow.app.set_app("tls", AppBy::Content);
                d.kind = Kind::Done;
                return;
            }
            if tls::looks_like_tls(bytes) {
                d.kind = Kind::Tls {
                    scans: Box::new([HandshakeScan::new(), HandshakeScan::new()]),
                    server_hello: false,
                };
            } else if http::looks_like_request(bytes) || http::looks_like_response(bytes) {
                d.kind = Kind::Http {
                    streams: Box::new([MessageStream::requests(), MessageStream::responses()]),
                    messages: 0,
                    connect: false,
                };
            } else if port(53) {
                d.kind = Kind::DnsTcp {
                    bufs: Box::default(),
                    messages: 0,
                };
            } else if let Some(app) = apps::identify_tcp(bytes, seg.sport, seg.dport) {
                flow.app.set_app(app.name(), AppBy::Content);
                d.kind = Kind::Done;
                return;
            } else if (port(3478) || port(5349) || port(443)) && !wire::stun::split_tcp(bytes).0.is_empty() {
                flow.app.set_app("stun", AppBy::Content);
                d.kind = Kind::Stun { messages: 0 };
            } else {
                return;
            }
        }
        match &mut d.kind {
            Kind::Tls { scans, server_hello } => {
                // Which scan: the sender of a ClientHello is the client. Until the flow's
                // client is certain, index by the flow's current view.
                let dir = usize::from(!from_client);
                let msgs = match scans[dir].push(bytes) {
                    Ok(m) => m,
                    Err(_) => {
                        d.kind = Kind::Done;
                        return;
                    }
                };
                for m in msgs {
                    match m {
                        Handshake::ClientHello(ch) if d.tls.is_none() => {
                            let flipped = flow.settle_client(from_client, ClientBy::Protocol);
                            if flipped {
                                // The sender is the client: swap the scans to follow it.
                                scans.swap(0, 1);
                            }
                            // The record's client is the ClientHello's sender, always.
                            let mut m = meta(flow, seg.ts);
                            if !(from_client || flipped) {
                                std::mem::swap(&mut m.client, &mut m.server);
                            }
                            self.stats.tls_client_hellos += 1;
                            flow.app.set_app("tls", AppBy::Content);
                            let hello = HelloSummary::new(&ch, Transport::Tcp);
                            if let Some(sni) = &hello.sni {
                                flow.app.set_domain(sni, DomainSource::TlsSni);
                            }
                            d.tls = Some(Box::new(TlsRecord {
                                meta: m,
                                hello,
                                server_version: None,
                                server_alpn: None,
                                cipher_suite: None,
                                certificates: Vec::new(),
                            }));
                        }
                        Handshake::ServerHello(sh) => {
                            if let Some(t) = d.tls.as_mut() {
                                t.server_hello(&sh);
                            }
                            *server_hello = true;
                            if sh.version() >= 0x0304 && !wire::tls::is_grease(sh.version()) {
                                // TLS 1.3: the rest of the server's flight is encrypted.
                                d.kind = Kind::Done;
                                return;
                            }
                        }
                        Handshake::Certificate(certs) => {
                            if let Some(t) = d.tls.as_mut() {
                                t.certificates = certs;
                            }
                            d.kind = Kind::Done;
                            return;
                        }
                        _ => {}
                    }
                }
                if let Kind::Tls { scans, server_hello } = &d.kind
                    && (scans[1].finished() || (*server_hello && scans[0].finished()))
                {
                    d.kind = Kind::Done;
                }
            }
            Kind::Http {
                streams,
                messages,
                connect,
            } => {
                let dir = usize::from(!from_client);
                for m in streams[dir].push(bytes) {
                    *messages += 1;
                    match m {
                        HttpMessage::Request(req) => {
                            flow.settle_client(from_client, ClientBy::Protocol);
                            self.stats.http_requests += 1;
                            flow.app.set_app("http", AppBy::Content);
                            if let Some(h) = &req.host {
                                flow.app.set_domain(host_without_port(h), DomainSource::HttpHost);
                            }
                            *connect = req.method.eq_ignore_ascii_case("CONNECT");
                            d.http_pending.push_back(HttpRecord {
                                meta: meta(flow, seg.ts),
                                request: Some(req),
                                response: None,
                            });
                            if d.http_pending.len() > MAX_HTTP_PENDING
                                && let Some(old) = d.http_pending.pop_front()
                            {
                                out.push(Record::Http(Box::new(old)));
                            }
                        }
                        HttpMessage::Response(resp) => {
                            flow.app.set_app("http", AppBy::Content);
                            let status = resp.status;
                            let rec = match d.http_pending.pop_front() {
                                Some(mut r) => {
                                    r.response = Some(resp);
                                    r
                                }
                                None => HttpRecord {
                                    meta: meta(flow, seg.ts),
                                    request: None,
                                    response: Some(resp),
                                },
                            };
                            out.push(Record::Http(Box::new(rec)));
                            if *connect && (200..300).contains(&status) {
                                // A proxy tunnel: what follows is usually TLS.
                                d.kind = Kind::Probe;
                                d.payloads = 0;
                                return;
                            }
                        }
                    }
                }
                if *messages >= MAX_HTTP_MESSAGES || (streams[0].is_done() && streams[1].is_done()) {
                    d.kind = Kind::Done;
                }
            }
            Kind::DnsTcp { bufs, messages } => {
                let dir = usize::from(!from_client);
                let buf = &mut bufs[dir];
                buf.extend_from_slice(bytes);
                let (msgs, used) = wire::dns::split_tcp(buf);
                let parsed: Vec<_> = msgs.iter().filter_map(|m| dns_message(m)).collect();
                buf.drain(..used.min(buf.len()));
                let overflow = buf.len() > MAX_DNS_TCP_BUFFER;
                for msg in parsed {
                    *messages += 1;
                    flow.app.set_app("dns", AppBy::Content);
                    self.dns_record(flow, "dns", seg, msg, out);
                }
                if overflow || *messages >= MAX_DNS_MESSAGES {
                    d.kind = Kind::Done;
                }
            }
            Kind::Stun { messages } => {
                let (msgs, _) = wire::stun::split_tcp(bytes);
                for msg in msgs {
                    *messages += 1;
                    self.stats.stun_messages += 1;
                    out.push(Record::Stun(Box::new(StunRecord {
                        meta: meta(flow, seg.ts),
                        from_client,
                        msg,
                    })));
                }
                if *messages >= MAX_STUN_MESSAGES || d.payloads >= 64 {
                    d.kind = Kind::Done;
                }
            }
            _ => {}
        }
    }
}

#[cfg(feature = "quic")]
mod quic {
    //! QUIC: decrypt the client's Initial packets and read the ClientHello from their CRYPTO
    //! frames.

    use wire::quic::{
        CryptoStream, Frame, InitialKeys, LongPacket, decrypt_initial, initial_salt, split_datagram,
    };
    use wire::tls::{ClientHello, Handshake, parse_handshake_messages};

    use super::Kind;

    const MAX_CRYPTO: usize = 64 << 10;

    #[derive(Debug)]
    pub struct QuicState {
        version: u32,
        /// The Destination Connection ID of the client's first Initial: the Initial keys
        /// derive from it for the whole handshake.
        original_dcid: Option<Vec<u8>>,
        keys: Option<InitialKeys>,
        crypto: CryptoStream,
        failures: u16,
    }

    pub struct Hello {
        pub version: u32,
        pub hello: ClientHello,
    }

    /// Is this datagram a QUIC long-header packet of a version whose Initial keys we know?
    pub fn probe(p: &[u8]) -> Option<Kind> {
        if !wire::quic::is_long_header(p) || p.len() < 5 {
            return None;
        }
        let version = u32::from_be_bytes([p[1], p[2], p[3], p[4]]);
        if initial_salt(version).is_none() {
            // A version whose keys we do not know (greasing 0x?a?a?a?a, Google QUIC, a new
            // one): a long header filling a datagram of 1200+ bytes is still QUIC (RFC 9000
            // 14.1 pads client Initials to 1200).
            let known_family = wire::quic::is_greasing_version(version) || is_google_quic(version);
            return (known_family && p.len() >= 1200 && plausible_long_header(p)).then_some(Kind::Done);
        }
        Some(Kind::Quic(Box::new(QuicState {
            version,
            original_dcid: None,
            keys: None,
            crypto: CryptoStream::new(MAX_CRYPTO),
            failures: 0,
        })))
    }

    /// Google QUIC versions are ASCII: 'Q' or 'T' and three digits ("Q050", "T051").
    fn is_google_quic(v: u32) -> bool {
        let b = v.to_be_bytes();
        matches!(b[0], b'Q' | b'T') && b[1..].iter().all(u8::is_ascii_digit)
    }

    /// Header form and fixed bits set, and connection ids of at most 20 bytes (RFC 9000 17.2).
    fn plausible_long_header(p: &[u8]) -> bool {
        let Some(&dcid_len) = p.get(5) else { return false };
        let Some(&scid_len) = p.get(6 + usize::from(dcid_len)) else {
            return false;
        };
        p[0] & 0xc0 == 0xc0 && dcid_len <= 20 && scid_len <= 20
    }

    impl QuicState {
        pub fn failed(&self) -> bool {
            self.failures >= 4 || self.crypto.overflowed()
        }

        /// One datagram; returns the ClientHello once its CRYPTO bytes are complete.
        pub fn datagram(&mut self, from_client: bool, p: &[u8]) -> Option<Hello> {
            let (packets, _) = split_datagram(p);
            for pkt in &packets {
                let LongPacket::Initial { version, dcid, .. } = pkt else {
                    continue;
                };
                if *version != self.version {
                    continue;
                }
                if !from_client {
                    // A server's Initial cannot start the handshake; without the client's,
                    // it cannot be decrypted here either.
                    continue;
                }
                if self.original_dcid.is_none() {
                    self.original_dcid = Some(dcid.to_vec());
                    self.keys = InitialKeys::new(self.version, dcid, true);
                }
                let Some(keys) = &self.keys else { return None };
                let dec = decrypt_initial(pkt, keys).or_else(|e| {
                    // After a Retry the client derives new keys from the Retry's SCID, which
                    // is the DCID it now sends.
                    InitialKeys::new(self.version, dcid, true).ok_or(e).and_then(|k| {
                        let r = decrypt_initial(pkt, &k);
                        if r.is_ok() {
                            self.keys = Some(k);
                            self.crypto = CryptoStream::new(MAX_CRYPTO);
                        }
                        r
                    })
                });
                match dec {
                    Ok(d) => {
                        for f in d.frames {
                            if let Frame::Crypto { offset, data } = f {
                                self.crypto.add(offset, &data);
                            }
                        }
                    }
                    Err(_) => self.failures += 1,
                }
            }
            let (msgs, _) = parse_handshake_messages(self.crypto.contiguous());
            msgs.into_iter().find_map(|m| match m {
                Handshake::ClientHello(hello) => Some(Hello {
                    version: self.version,
                    hello,
                }),
                _ => None,
            })
        }
    }
}

#[cfg(not(feature = "quic"))]
mod quic {
    pub fn probe(_: &[u8]) -> Option<super::Kind> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_and_tls_records() {
        assert!(is_sip(b"REGISTER sip:example.org SIP/2.0\r\nVia: x\r\n"));
        assert!(is_sip(b"SIP/2.0 401 Unauthorized\r\n"));
        assert!(!is_sip(b"GET / HTTP/1.1\r\n"));
        assert!(is_tls_record(&[23, 3, 3, 0, 40, 1, 2]));
        assert!(!is_tls_record(&[23, 3, 3, 0, 0]));
        assert!(!is_tls_record(b"GET / HTTP/1.1"));
    }

    #[test]
    fn host_ports_are_stripped() {
        assert_eq!(host_without_port("example.com:8080"), "example.com");
        assert_eq!(host_without_port(" example.com "), "example.com");
        assert_eq!(host_without_port("[2001:db8::1]:80"), "2001:db8::1");
        assert_eq!(host_without_port("2001:db8::1"), "2001:db8::1");
    }
}
