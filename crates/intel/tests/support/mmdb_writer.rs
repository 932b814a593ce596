//! A minimal MaxMind DB writer (https://maxmind.github.io/MaxMind-DB/), enough to build small
//! GeoLite2-, DB-IP- and ip-location-db-shaped databases for tests: a binary search tree with
//! 24-, 28- or 32-bit records, the 16-byte separator, a data section (maps, UTF-8 strings,
//! unsigned integers, doubles, booleans, arrays) and the metadata after
//! `\xAB\xCD\xEFMaxMind.com`. IPv4 networks in an IPv6 tree go under `::/96`, as MaxMind puts
//! them.

use std::net::IpAddr;

/// A data-section value.
#[derive(Clone, Debug)]
pub enum V {
    Map(Vec<(&'static str, V)>),
    Str(String),
    U16(u16),
    U32(u32),
    U64(u64),
    Double(f64),
    Bool(bool),
    Arr(Vec<V>),
}

/// A string value.
pub fn s(x: &str) -> V {
    V::Str(x.to_string())
}

#[derive(Clone, Copy)]
enum Rec {
    Empty,
    Node(usize),
    Data(usize),
}

/// Collects networks, then writes the file.
pub struct Writer {
    database_type: String,
    ip_version: u16,
    record_size: u16,
    nodes: Vec<[Rec; 2]>,
    data: Vec<V>,
}

impl Writer {
    pub fn new(database_type: &str, ip_version: u16, record_size: u16) -> Writer {
        assert!(matches!(ip_version, 4 | 6) && matches!(record_size, 24 | 28 | 32));
        Writer {
            database_type: database_type.into(),
            ip_version,
            record_size,
            nodes: vec![[Rec::Empty; 2]],
            data: Vec::new(),
        }
    }

    /// Adds `net` ("192.0.2.0/24", "2001:db8::/32") with its record. Networks must not nest.
    pub fn insert(&mut self, net: &str, value: V) -> &mut Self {
        let (addr, len) = net.split_once('/').unwrap();
        let addr: IpAddr = addr.parse().unwrap();
        let len: u32 = len.parse().unwrap();
        let total = if self.ip_version == 4 { 32 } else { 128 };
        let (bits, len) = match (addr, self.ip_version) {
            (IpAddr::V4(a), 4) => (u128::from(u32::from(a)), len),
            (IpAddr::V4(a), _) => (u128::from(u32::from(a)), len + 96),
            (IpAddr::V6(a), 6) => (u128::from(a), len),
            (IpAddr::V6(_), _) => panic!("IPv6 network in an IPv4 database"),
        };
        let d = self.data.len();
        self.data.push(value);
        let mut node = 0;
        for i in 0..len {
            let bit = ((bits >> (total - 1 - i)) & 1) as usize;
            if i == len - 1 {
                self.nodes[node][bit] = Rec::Data(d);
                break;
            }
            node = match self.nodes[node][bit] {
                Rec::Node(n) => n,
                Rec::Empty => {
                    self.nodes.push([Rec::Empty; 2]);
                    let n = self.nodes.len() - 1;
                    self.nodes[node][bit] = Rec::Node(n);
                    n
                }
                Rec::Data(_) => panic!("nested networks are not supported by this writer"),
            };
        }
        self
    }

    /// The database file.
    pub fn build(&self) -> Vec<u8> {
        let mut data = Vec::new();
        let mut offsets = Vec::new();
        for v in &self.data {
            offsets.push(data.len());
            encode(&mut data, v);
        }
        let n = self.nodes.len();
        let val = |r: Rec| -> u64 {
            match r {
                Rec::Empty => n as u64,
                Rec::Node(i) => i as u64,
                Rec::Data(d) => (n + 16 + offsets[d]) as u64,
            }
        };
        let mut out = Vec::new();
        for node in &self.nodes {
            let (l, r) = (val(node[0]), val(node[1]));
            match self.record_size {
                24 => {
                    assert!(l < 1 << 24 && r < 1 << 24);
                    out.extend_from_slice(&l.to_be_bytes()[5..]);
                    out.extend_from_slice(&r.to_be_bytes()[5..]);
                }
                28 => {
                    assert!(l < 1 << 28 && r < 1 << 28);
                    out.extend_from_slice(&l.to_be_bytes()[5..]);
                    out.push(((l >> 24) as u8) << 4 | (r >> 24) as u8);
                    out.extend_from_slice(&r.to_be_bytes()[5..]);
                }
                _ => {
                    out.extend_from_slice(&(l as u32).to_be_bytes());
                    out.extend_from_slice(&(r as u32).to_be_bytes());
                }
            }
        }
        out.extend_from_slice(&[0u8; 16]);
        out.extend_from_slice(&data);
        out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
        let meta = V::Map(vec![
            ("binary_format_major_version", V::U16(2)),
            ("binary_format_minor_version", V::U16(0)),
            ("build_epoch", V::U64(1_700_000_000)),
            ("database_type", s(&self.database_type)),
            ("description", V::Map(vec![("en", s("netvigil test database"))])),
            ("ip_version", V::U16(self.ip_version)),
            ("languages", V::Arr(vec![s("en")])),
            ("node_count", V::U32(n as u32)),
            ("record_size", V::U16(self.record_size)),
        ]);
        encode(&mut out, &meta);
        out
    }
}

fn ctrl(out: &mut Vec<u8>, kind: u8, size: usize) {
    let (type_bits, ext) = if kind <= 7 {
        (kind << 5, None)
    } else {
        (0, Some(kind - 7))
    };
    let (first, extra): (u8, Vec<u8>) = if size < 29 {
        (size as u8, vec![])
    } else if size < 285 {
        (29, vec![(size - 29) as u8])
    } else if size < 65_821 {
        (30, ((size - 285) as u16).to_be_bytes().to_vec())
    } else {
        (31, ((size - 65_821) as u32).to_be_bytes()[1..].to_vec())
    };
    out.push(type_bits | first);
    if let Some(e) = ext {
        out.push(e);
    }
    out.extend_from_slice(&extra);
}

fn uint(out: &mut Vec<u8>, kind: u8, v: u64) {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    ctrl(out, kind, 8 - skip);
    out.extend_from_slice(&bytes[skip..]);
}

/// Appends the encoding of `v`.
pub fn encode(out: &mut Vec<u8>, v: &V) {
    match v {
        V::Str(x) => {
            ctrl(out, 2, x.len());
            out.extend_from_slice(x.as_bytes());
        }
        V::Double(d) => {
            ctrl(out, 3, 8);
            out.extend_from_slice(&d.to_be_bytes());
        }
        V::U16(x) => uint(out, 5, u64::from(*x)),
        V::U32(x) => uint(out, 6, u64::from(*x)),
        V::U64(x) => uint(out, 9, *x),
        V::Map(m) => {
            ctrl(out, 7, m.len());
            for (k, v) in m {
                encode(out, &s(k));
                encode(out, v);
            }
        }
        V::Arr(a) => {
            ctrl(out, 11, a.len());
            for v in a {
                encode(out, v);
            }
        }
        V::Bool(b) => ctrl(out, 14, usize::from(*b)),
    }
}
