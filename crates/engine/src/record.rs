//! The record schema (version [`SCHEMA_VERSION`]), documented in `docs/records.md`, and its JSON
//! lines and CSV encodings. Encoders write into a `String` the caller reuses.
//!
//! Names reserved for later record types: `tls`, `quic`, `dns`, `http`, `stun`, `alert`,
//! `connection`.

use std::fmt::Write as _;
use std::net::IpAddr;

/// Bumped when a field changes meaning or disappears (adding a field does not bump it).
pub const SCHEMA_VERSION: u32 = 1;

/// One side of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: IpAddr,
    /// TCP/UDP/SCTP port; the echo identifier for ICMP echo; 0 otherwise.
    pub port: u16,
}

/// Counters of one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirCounters {
    pub packets: u64,
    /// Original frame bytes on the wire (the capture record's original length).
    pub bytes: u64,
    /// Transport payload bytes as the headers declare them.
    pub payload_bytes: u64,
}

/// How the client side was decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientBy {
    /// It sent the SYN.
    Syn,
    /// The first packet seen was a SYN-ACK; its receiver sent the (unseen) SYN.
    SynAck,
    /// It sent the first packet (non-TCP).
    FirstPacket,
    /// The start was missed; a port heuristic decided (a guess).
    PortGuess,
    /// A protocol message settled it: the sender of a TLS ClientHello or an HTTP request.
    Protocol,
}

impl ClientBy {
    pub const fn as_str(self) -> &'static str {
        match self {
            ClientBy::Syn => "syn",
            ClientBy::SynAck => "syn_ack",
            ClientBy::FirstPacket => "first_packet",
            ClientBy::PortGuess => "port_guess",
            ClientBy::Protocol => "protocol",
        }
    }
}

/// Flow state. TCP: handshake, established, closing (FIN seen), closed (RST, or both FINs
/// acknowledged). Other protocols: active.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlowState {
    Handshake,
    Established,
    Closing,
    Closed,
    Active,
}

impl FlowState {
    pub const fn as_str(self) -> &'static str {
        match self {
            FlowState::Handshake => "handshake",
            FlowState::Established => "established",
            FlowState::Closing => "closing",
            FlowState::Closed => "closed",
            FlowState::Active => "active",
        }
    }
}

/// Why a flow record was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndReason {
    IdleTimeout,
    /// A new connection reused the 4-tuple after this one closed.
    Reused,
    /// The table was full and this was the longest idle flow.
    Evicted,
    EndOfInput,
}

impl EndReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            EndReason::IdleTimeout => "idle_timeout",
            EndReason::Reused => "reused",
            EndReason::Evicted => "evicted",
            EndReason::EndOfInput => "end_of_input",
        }
    }
}

/// Where a flow's `domain` came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DomainSource {
    /// The TLS ClientHello's server_name.
    TlsSni,
    /// The QUIC Initial's ClientHello server_name.
    QuicSni,
    /// The HTTP request's Host header.
    HttpHost,
    /// A DNS answer for the server's address, seen before the flow began.
    Dns,
}

impl DomainSource {
    pub const fn as_str(self) -> &'static str {
        match self {
            DomainSource::TlsSni => "tls_sni",
            DomainSource::QuicSni => "quic_sni",
            DomainSource::HttpHost => "http_host",
            DomainSource::Dns => "dns",
        }
    }
    /// Names from the flow itself outrank a DNS answer.
    pub const fn from_flow(self) -> bool {
        !matches!(self, DomainSource::Dns)
    }
}

/// How the application protocol was recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum AppBy {
    /// The payload says so (a parsed message or a protocol signature).
    #[default]
    Content,
    /// Only the port suggests it: a guess.
    Port,
}

/// What the dissectors learned about a flow.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppInfo {
    pub app_proto: Option<&'static str>,
    pub app_by: AppBy,
    pub domain: Option<String>,
    pub domain_source: Option<DomainSource>,
}

impl AppInfo {
    /// Sets the domain unless a better source already named the flow.
    pub fn set_domain(&mut self, name: &str, source: DomainSource) {
        if name.is_empty() {
            return;
        }
        let better = match self.domain_source {
            None => true,
            Some(old) => source.from_flow() && !old.from_flow(),
        };
        if better {
            self.domain = Some(name.to_string());
            self.domain_source = Some(source);
        }
    }
    /// Sets the protocol from content (overrides a port guess, never another content label).
    pub fn set_app(&mut self, app: &'static str, by: AppBy) {
        match (self.app_proto, self.app_by, by) {
            (None, _, _) | (Some(_), AppBy::Port, AppBy::Content) => {
                self.app_proto = Some(app);
                self.app_by = by;
            }
            _ => {}
        }
    }
}

/// A finished (or flushed) flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowRecord {
    pub id: u64,
    /// Nanoseconds since the Unix epoch.
    pub start: i64,
    pub end: i64,
    /// IP protocol number.
    pub proto: u8,
    pub client: Endpoint,
    pub server: Endpoint,
    /// Outer VLAN ids, outermost first; 0 = none.
    pub vlan: [u16; 2],
    pub client_by: ClientBy,
    pub state: FlowState,
    pub to_server: DirCounters,
    pub to_client: DirCounters,
    pub ended_by: EndReason,
    pub app: AppInfo,
    /// The process on this machine that owns the flow's local end (live capture only).
    pub process: Option<Box<crate::sockets::ProcessInfo>>,
    /// Gateway mode: the LAN device at the flow's local end.
    pub device: Option<Box<crate::lan::FlowDevice>>,
    /// Live capture: the network interface the flow was first seen on ("eth0"); `None` for
    /// capture files and socket-table mode.
    pub iface: Option<std::sync::Arc<str>>,
}

impl FlowRecord {
    /// "tcp", "udp", "icmp", ... or the protocol number as text.
    pub fn l4_name(&self) -> String {
        l4_name(self.proto)
    }

    pub fn total_bytes(&self) -> u64 {
        self.to_server.bytes + self.to_client.bytes
    }

    /// One JSON object, no trailing newline.
    pub fn write_json(&self, out: &mut String) {
        out.push_str("{\"type\":\"flow\",\"v\":");
        let _ = write!(out, "{SCHEMA_VERSION},\"id\":{},\"start\":\"", self.id);
        write_rfc3339(out, self.start);
        out.push_str("\",\"end\":\"");
        write_rfc3339(out, self.end);
        let _ = write!(out, "\",\"l4\":\"{}\",\"client\":", self.l4_name());
        write_endpoint(out, &self.client);
        out.push_str(",\"server\":");
        write_endpoint(out, &self.server);
        out.push_str(",\"vlan\":");
        match self.vlan {
            [0, _] => out.push_str("null"),
            [v, 0] => {
                let _ = write!(out, "{v}");
            }
            [v, w] => {
                let _ = write!(out, "{v},\"vlan_inner\":{w}");
            }
        }
        let _ = write!(
            out,
            ",\"client_by\":\"{}\",\"state\":\"{}\",\"to_server\":",
            self.client_by.as_str(),
            self.state.as_str()
        );
        write_dir(out, &self.to_server);
        out.push_str(",\"to_client\":");
        write_dir(out, &self.to_client);
        let _ = write!(out, ",\"ended_by\":\"{}\",\"app_proto\":", self.ended_by.as_str());
        match self.app.app_proto {
            Some(a) => {
                let _ = write!(
                    out,
                    "\"{a}\",\"app_proto_by\":\"{}\"",
                    if self.app.app_by == AppBy::Port {
                        "port"
                    } else {
                        "content"
                    }
                );
            }
            None => out.push_str("null"),
        }
        out.push_str(",\"domain\":");
        match &self.app.domain {
            Some(d) => write_json_str(out, d),
            None => out.push_str("null"),
        }
        out.push_str(",\"domain_source\":");
        match self.app.domain_source {
            Some(d) => {
                let _ = write!(out, "\"{}\"", d.as_str());
            }
            None => out.push_str("null"),
        }
        if let Some(i) = &self.iface {
            out.push_str(",\"iface\":");
            write_json_str(out, i);
        }
        if let Some(p) = &self.process {
            out.push_str(",\"process\":");
            out.push_str(&crate::connections::process_json(p));
        }
        if let Some(d) = &self.device {
            out.push_str(",\"device\":");
            out.push_str(&d.json());
        }
        out.push('}');
    }

    pub const CSV_HEADER: &'static str = "type,id,start,end,l4,client_ip,client_port,server_ip,server_port,vlan,vlan_inner,client_by,state,to_server_packets,to_server_bytes,to_server_payload_bytes,to_client_packets,to_client_bytes,to_client_payload_bytes,ended_by,app_proto,app_proto_by,domain,domain_source";

    /// One CSV row (RFC 4180: the domain is quoted when it needs to be), no trailing newline.
    pub fn write_csv(&self, out: &mut String) {
        let _ = write!(out, "flow,{},", self.id);
        write_rfc3339(out, self.start);
        out.push(',');
        write_rfc3339(out, self.end);
        let vlan = |v: u16| if v == 0 { String::new() } else { v.to_string() };
        let _ = write!(
            out,
            ",{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},",
            self.l4_name(),
            self.client.ip,
            self.client.port,
            self.server.ip,
            self.server.port,
            vlan(self.vlan[0]),
            vlan(self.vlan[1]),
            self.client_by.as_str(),
            self.state.as_str(),
            self.to_server.packets,
            self.to_server.bytes,
            self.to_server.payload_bytes,
            self.to_client.packets,
            self.to_client.bytes,
            self.to_client.payload_bytes,
            self.ended_by.as_str(),
            self.app.app_proto.unwrap_or(""),
            match (self.app.app_proto, self.app.app_by) {
                (None, _) => "",
                (Some(_), AppBy::Content) => "content",
                (Some(_), AppBy::Port) => "port",
            },
        );
        if let Some(d) = &self.app.domain {
            write_csv_field(out, d);
        }
        out.push(',');
        if let Some(d) = self.app.domain_source {
            out.push_str(d.as_str());
        }
    }
}

/// A CSV field, quoted (RFC 4180) when it holds a comma, quote or line break.
pub fn write_csv_field(out: &mut String, s: &str) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

/// "tcp", "udp", ... or the number.
pub fn l4_name(proto: u8) -> String {
    match wire::layers::IpProto(proto).name() {
        Some(n) => n.to_string(),
        None => proto.to_string(),
    }
}

fn write_endpoint(out: &mut String, e: &Endpoint) {
    let _ = write!(out, "{{\"ip\":\"{}\",\"port\":{}}}", e.ip, e.port);
}

fn write_dir(out: &mut String, d: &DirCounters) {
    let _ = write!(
        out,
        "{{\"packets\":{},\"bytes\":{},\"payload_bytes\":{}}}",
        d.packets, d.bytes, d.payload_bytes
    );
}

/// Writes a JSON string literal with the escapes RFC 8259 requires. Runs of bytes that need no
/// escape are copied at once.
pub fn write_json_str(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        // Only ASCII bytes stop the scan, so `start..i` are char boundaries.
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{:04x}", b);
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// RFC 3339 UTC with microseconds, or nanoseconds when the sub-microsecond digits are not zero.
pub fn write_rfc3339(out: &mut String, nanos: i64) {
    let secs = nanos.div_euclid(1_000_000_000);
    let sub = nanos.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    );
    if sub % 1000 == 0 {
        let _ = write!(out, "{:06}Z", sub / 1000);
    } else {
        let _ = write!(out, "{sub:09}Z");
    }
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(n: i64) -> String {
        let mut s = String::new();
        write_rfc3339(&mut s, n);
        s
    }

    #[test]
    fn rfc3339() {
        assert_eq!(ts(1_581_113_120_474_299_000), "2020-02-07T22:05:20.474299Z");
        assert_eq!(ts(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(ts(2_145_916_800_000_000_001), "2038-01-01T00:00:00.000000001Z");
        assert_eq!(ts(-1_000), "1969-12-31T23:59:59.999999Z");
        assert_eq!(ts(951_782_400_000_000_000), "2000-02-29T00:00:00.000000Z");
    }

    #[test]
    fn json_escapes() {
        let mut s = String::new();
        write_json_str(&mut s, "a\"b\\c\n\u{1}é");
        assert_eq!(s, "\"a\\\"b\\\\c\\n\\u0001é\"");
    }
}
