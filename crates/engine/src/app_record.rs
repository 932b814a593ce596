//! Records of application messages (`dns`, `tls`, `quic`, `http`, `stun`), each tied to its
//! flow by `flow_id` and carrying the flow's client and server endpoints.

use wire::apps::Dhcp;
use wire::dns::Message as DnsMessage;
use wire::http::{Request, Response};
use wire::stun::Message as StunMessage;
use wire::tls::{CertInfo, ClientHello, ServerHello, Transport};

use crate::json::Obj;
use crate::record::{Endpoint, SCHEMA_VERSION, l4_name};

/// What every application record shares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordMeta {
    pub flow_id: u64,
    pub ts: i64,
    pub proto: u8,
    pub client: Endpoint,
    pub server: Endpoint,
}

impl RecordMeta {
    fn write<'a, 'b>(&self, typ: &str, o: &'a mut Obj<'b>) -> &'a mut Obj<'b> {
        o.str("type", typ)
            .num("v", SCHEMA_VERSION)
            .num("flow_id", self.flow_id)
            .time("ts", self.ts)
            .str("l4", &l4_name(self.proto))
            .endpoint("client", &self.client)
            .endpoint("server", &self.server)
    }
}

/// A TLS version code point as people write it.
pub fn tls_version_name(v: u16) -> String {
    match v {
        0x0300 => "SSL 3.0".into(),
        0x0301 => "TLS 1.0".into(),
        0x0302 => "TLS 1.1".into(),
        0x0303 => "TLS 1.2".into(),
        0x0304 => "TLS 1.3".into(),
        0xfeff => "DTLS 1.0".into(),
        0xfefd => "DTLS 1.2".into(),
        0xfefc => "DTLS 1.3".into(),
        v if wire::tls::is_grease(v) => format!("GREASE 0x{v:04x}"),
        v => format!("0x{v:04x}"),
    }
}

/// What a ClientHello tells a monitor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelloSummary {
    pub sni: Option<String>,
    pub alpn: Vec<String>,
    /// Offered versions: supported_versions when present, else the legacy version.
    pub versions: Vec<u16>,
    pub cipher_suites: usize,
    pub extensions: usize,
    pub ja3: String,
    pub ja4: String,
    pub ech: bool,
}

impl HelloSummary {
    pub fn new(ch: &ClientHello, transport: Transport) -> Self {
        let versions = if ch.supported_versions.is_empty() {
            vec![ch.legacy_version]
        } else {
            ch.supported_versions.clone()
        };
        Self {
            sni: ch.sni.clone(),
            alpn: ch.alpn.clone(),
            versions,
            cipher_suites: ch.cipher_suites.len(),
            extensions: ch.extensions.len(),
            ja3: ch.ja3(),
            ja4: ch.ja4(transport),
            ech: ch.ech,
        }
    }

    fn write(&self, o: &mut Obj<'_>) {
        o.opt_str("sni", self.sni.as_deref())
            .strs("alpn", &self.alpn)
            .strs("versions", self.versions.iter().map(|v| tls_version_name(*v)))
            .num("cipher_suites", self.cipher_suites)
            .num("extensions", self.extensions)
            .str("ja4", &self.ja4)
            .str("ja3", &self.ja3)
            .bool("ech", self.ech);
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsRecord {
    pub meta: RecordMeta,
    pub hello: HelloSummary,
    /// The server's choice, when its ServerHello was seen.
    pub server_version: Option<u16>,
    pub server_alpn: Option<String>,
    pub cipher_suite: Option<u16>,
    /// TLS 1.2 and older: the server's certificate chain, leaf first.
    pub certificates: Vec<CertInfo>,
}

impl TlsRecord {
    pub fn server_hello(&mut self, sh: &ServerHello) {
        self.server_version = Some(sh.version());
        self.server_alpn = sh.alpn.clone();
        self.cipher_suite = Some(sh.cipher_suite);
    }

    pub fn write_json(&self, out: &mut String) {
        let mut o = Obj::new(out);
        self.meta.write("tls", &mut o);
        self.hello.write(&mut o);
        o.opt_str(
            "server_version",
            self.server_version.map(tls_version_name).as_deref(),
        )
        .opt_str("server_alpn", self.server_alpn.as_deref())
        .opt_str(
            "cipher_suite",
            self.cipher_suite.map(|c| format!("0x{c:04x}")).as_deref(),
        )
        .objs("certificates", &self.certificates, |o, c| {
            o.str("subject", &c.subject)
                .str("issuer", &c.issuer)
                .strs("dns_names", &c.dns_names)
                .opt_str("not_before", c.not_before.as_deref())
                .opt_str("not_after", c.not_after.as_deref());
        })
        .end();
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuicRecord {
    pub meta: RecordMeta,
    pub version: u32,
    pub hello: HelloSummary,
}

impl QuicRecord {
    pub fn write_json(&self, out: &mut String) {
        let mut o = Obj::new(out);
        self.meta.write("quic", &mut o);
        o.str("version", &format!("0x{:08x}", self.version));
        self.hello.write(&mut o);
        o.end();
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsRecord {
    pub meta: RecordMeta,
    /// "dns", "mdns" or "llmnr".
    pub app: &'static str,
    /// "udp" or "tcp".
    pub from_client: bool,
    pub msg: DnsMessage,
}

impl DnsRecord {
    pub fn write_json(&self, out: &mut String) {
        let m = &self.msg;
        let mut o = Obj::new(out);
        self.meta.write("dns", &mut o);
        o.str("proto", self.app)
            .str(
                "direction",
                if self.from_client {
                    "to_server"
                } else {
                    "to_client"
                },
            )
            .num("id", m.id)
            .bool("response", m.response)
            .num("opcode", m.opcode)
            .str("rcode", &m.rcode_name())
            .bool("truncated", m.truncated)
            .opt_str("query", m.query_name())
            .opt_str(
                "qtype",
                m.questions.first().map(|q| q.qtype.mnemonic()).as_deref(),
            )
            .objs("questions", &m.questions, |o, q| {
                o.str("name", &q.name)
                    .str("type", &q.qtype.mnemonic())
                    .num("class", q.qclass);
            })
            .objs("answers", &m.records, |o, r| {
                o.str("section", r.section.as_str())
                    .str("name", &r.name)
                    .str("type", &r.rtype.mnemonic())
                    .num("ttl", r.ttl)
                    .str("data", &r.data.to_text());
            })
            .opt_str("incomplete", m.incomplete.map(|e| e.to_string()).as_deref())
            .end();
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRecord {
    pub meta: RecordMeta,
    pub request: Option<Request>,
    pub response: Option<Response>,
}

impl HttpRecord {
    pub fn write_json(&self, out: &mut String) {
        let mut o = Obj::new(out);
        self.meta.write("http", &mut o);
        let q = self.request.as_ref();
        o.opt_str("method", q.map(|r| r.method.as_str()))
            .opt_str("host", q.and_then(|r| r.host.as_deref()))
            .opt_str("path", q.map(|r| r.target.as_str()))
            .opt_str("version", q.map(|r| r.version.as_str()))
            .opt_str("user_agent", q.and_then(|r| r.user_agent.as_deref()))
            .opt_num("request_length", q.and_then(|r| r.content_length));
        let s = self.response.as_ref();
        o.opt_num("status", s.map(|r| r.status))
            .opt_str("content_type", s.and_then(|r| r.content_type.as_deref()))
            .opt_num("response_length", s.and_then(|r| r.content_length))
            .opt_str("server_software", s.and_then(|r| r.server.as_deref()))
            .end();
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StunRecord {
    pub meta: RecordMeta,
    pub from_client: bool,
    pub msg: StunMessage,
}

impl StunRecord {
    pub fn write_json(&self, out: &mut String) {
        let m = &self.msg;
        let tid: String = m.transaction_id.iter().map(|b| format!("{b:02x}")).collect();
        let mut o = Obj::new(out);
        self.meta.write("stun", &mut o);
        o.str(
            "direction",
            if self.from_client {
                "to_server"
            } else {
                "to_client"
            },
        )
        .str("class", m.class_name())
        .str("method", &m.method_name())
        .str("transaction_id", &tid)
        .bool("classic", m.classic)
        .opt_str("software", m.software())
        .opt_str("username", m.username())
        .opt_str(
            "mapped_address",
            m.xor_mapped_address()
                .or_else(|| m.mapped_address())
                .map(|a| a.to_string())
                .as_deref(),
        )
        .end();
    }
}

/// A DHCP message: how a LAN device names itself (the gateway agent will use it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhcpRecord {
    pub meta: RecordMeta,
    pub dhcp: Dhcp,
}

impl DhcpRecord {
    pub fn message_type_name(t: u8) -> &'static str {
        match t {
            1 => "DISCOVER",
            2 => "OFFER",
            3 => "REQUEST",
            4 => "DECLINE",
            5 => "ACK",
            6 => "NAK",
            7 => "RELEASE",
            8 => "INFORM",
            _ => "OTHER",
        }
    }

    pub fn write_json(&self, out: &mut String) {
        let d = &self.dhcp;
        let m = d.client_mac;
        let mac = format!(
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        );
        let mut o = Obj::new(out);
        self.meta.write("dhcp", &mut o);
        o.str("op", if d.op == 1 { "request" } else { "reply" })
            .opt_str("message_type", d.message_type.map(Self::message_type_name))
            .str("client_mac", &mac)
            .opt_str("hostname", d.hostname.as_deref())
            .opt_str("client_fqdn", d.client_fqdn.as_deref())
            .opt_str("requested_ip", d.requested_ip.map(|a| a.to_string()).as_deref())
            .opt_str("vendor_class", d.vendor_class.as_deref())
            .end();
    }
}
