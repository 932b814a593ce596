//! MaxMind DB files (GeoLite2 Country/City/ASN, DB-IP Lite country/city/asn, the ip-location-db
//! country mmdb) read with the `maxminddb` crate.
//!
//! Record layouts read: `country.iso_code` (falling back to `registered_country.iso_code`),
//! `city.names.en`, `autonomous_system_number`, `autonomous_system_organization` (GeoLite2 and
//! DB-IP Lite share them), and a top-level `country_code` (ip-location-db).
//!
//! Before the crate sees a file, its structure is checked here (metadata readable, search tree
//! inside the file, every tree record pointing at a node, "empty", or into the data section),
//! because the crate indexes the tree without bounds checks and would panic on a truncated or
//! forged file. After that check a lookup cannot index outside the buffer; a record that does
//! not decode is treated as unknown.

use std::net::IpAddr;
use std::path::Path;

use engine::enrich::Place;
use maxminddb::{PathElement, Reader};

use crate::error::{LoadError, LoadErrorKind};

const MARKER: &[u8] = b"\xAB\xCD\xEFMaxMind.com";
const SEPARATOR: usize = 16;

/// Which fields a database is asked for (from its `database_type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fields {
    pub asn: bool,
    pub country: bool,
    pub city: bool,
}

/// One opened MaxMind DB file.
pub struct MmdbDb {
    reader: Reader<Vec<u8>>,
    database_type: String,
    ip_version: u16,
    fields: Fields,
}

impl std::fmt::Debug for MmdbDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmdbDb")
            .field("database_type", &self.database_type)
            .field("ip_version", &self.ip_version)
            .field("fields", &self.fields)
            .finish()
    }
}

impl MmdbDb {
    /// Reads and checks a file.
    pub fn load(path: &Path) -> Result<MmdbDb, LoadError> {
        let bytes = std::fs::read(path).map_err(|e| LoadError::new(path, LoadErrorKind::Io(e)))?;
        Self::from_bytes(bytes).map_err(|m| LoadError::new(path, LoadErrorKind::Mmdb(m)))
    }

    /// Checks and opens a database held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<MmdbDb, String> {
        let meta = check(&bytes)?;
        let reader = Reader::from_source(bytes).map_err(|e| e.to_string())?;
        let t = meta.database_type.to_ascii_lowercase();
        let mut fields = Fields {
            asn: t.contains("asn") || t.contains("isp"),
            country: t.contains("country") || t.contains("city"),
            city: t.contains("city"),
        };
        if fields == Fields::default() {
            fields = Fields {
                asn: true,
                country: true,
                city: true,
            };
        }
        Ok(MmdbDb {
            reader,
            database_type: meta.database_type,
            ip_version: meta.ip_version,
            fields,
        })
    }

    /// The metadata's `database_type` ("GeoLite2-ASN", "DBIP-Country-Lite", ...).
    pub fn database_type(&self) -> &str {
        &self.database_type
    }

    /// What this database is asked for.
    pub fn fields(&self) -> Fields {
        self.fields
    }

    /// What the database knows of `ip` (`None` when it has no record for it).
    pub fn place(&self, ip: IpAddr) -> Option<Place> {
        let ip = ip.to_canonical();
        if ip.is_ipv6() && self.ip_version == 4 {
            return None;
        }
        let r = self.reader.lookup(ip).ok()?;
        if !r.has_data() {
            return None;
        }
        let key = PathElement::Key;
        let s = |path: &[PathElement<'_>]| -> Option<String> {
            r.decode_path::<&str>(path)
                .ok()
                .flatten()
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let mut p = Place::default();
        if self.fields.asn {
            p.asn = r
                .decode_path::<u32>(&[key("autonomous_system_number")])
                .ok()
                .flatten()
                .filter(|&a| a != 0);
            p.org = s(&[key("autonomous_system_organization")]);
        }
        if self.fields.country {
            p.country = [
                &[key("country"), key("iso_code")][..],
                &[key("country_code")][..],
                &[key("registered_country"), key("iso_code")][..],
            ]
            .into_iter()
            .find_map(|path| s(path).and_then(|c| country(&c)));
        }
        if self.fields.city {
            p.city = s(&[key("city"), key("names"), key("en")]);
        }
        Some(p)
    }
}

fn country(s: &str) -> Option<[u8; 2]> {
    match s.as_bytes() {
        [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
            Some([a.to_ascii_uppercase(), b.to_ascii_uppercase()])
        }
        _ => None,
    }
}

/// What the structural check needs from the metadata.
#[derive(Debug)]
struct Meta {
    ip_version: u16,
    database_type: String,
}

/// Checks that a lookup in `buf` stays inside it (see the module docs).
fn check(buf: &[u8]) -> Result<Meta, String> {
    let marker = memrfind(buf, MARKER).ok_or("no metadata marker (\\xAB\\xCD\\xEFMaxMind.com) found")?;
    let mut d = Decoder {
        buf: &buf[marker + MARKER.len()..],
        pos: 0,
    };
    let meta = d.value(0)?;
    let Value::Map(entries) = meta else {
        return Err("the metadata is not a map".into());
    };
    let get = |k: &str| entries.iter().find(|(key, _)| key == k).map(|(_, v)| v);
    let uint = |k: &str| match get(k) {
        Some(Value::Uint(n)) => u64::try_from(*n).map_err(|_| format!("metadata {k} is too large")),
        Some(_) => Err(format!("metadata {k} is not an unsigned integer")),
        None => Err(format!("metadata has no {k}")),
    };
    let node_count = uint("node_count")?;
    let record_size = uint("record_size")?;
    let ip_version = uint("ip_version")?;
    let major = uint("binary_format_major_version")?;
    if major != 2 {
        return Err(format!("binary format version {major} (only 2 is known)"));
    }
    if !matches!(record_size, 24 | 28 | 32) {
        return Err(format!("record size {record_size} (expected 24, 28 or 32)"));
    }
    if !matches!(ip_version, 4 | 6) {
        return Err(format!("ip_version {ip_version} (expected 4 or 6)"));
    }
    if node_count == 0 {
        return Err("node_count is 0".into());
    }
    let database_type = match get("database_type") {
        Some(Value::Str(s)) => s.clone(),
        _ => String::new(),
    };
    let tree = node_count
        .checked_mul(record_size)
        .map(|b| b / 4)
        .filter(|&t| {
            t.checked_add(SEPARATOR as u64)
                .is_some_and(|e| e <= marker as u64)
        })
        .ok_or_else(|| {
            format!("the search tree ({node_count} nodes) is larger than the file; it is truncated")
        })? as usize;
    let data_len = (marker - tree - SEPARATOR) as u64;
    let node_bytes = (record_size / 4) as usize;
    for (i, node) in buf[..tree].chunks_exact(node_bytes).enumerate() {
        for side in 0..2 {
            let v = record(node, record_size, side);
            if v <= node_count {
                continue;
            }
            let ok = v
                .checked_sub(node_count + SEPARATOR as u64)
                .is_some_and(|off| off < data_len);
            if !ok {
                return Err(format!(
                    "search tree node {i} points outside the data section (record {v})"
                ));
            }
        }
    }
    Ok(Meta {
        ip_version: ip_version as u16,
        database_type,
    })
}

fn record(node: &[u8], record_size: u64, side: usize) -> u64 {
    let b = |i: usize| u64::from(node[i]);
    match (record_size, side) {
        (24, 0) => b(0) << 16 | b(1) << 8 | b(2),
        (24, _) => b(3) << 16 | b(4) << 8 | b(5),
        (28, 0) => (b(3) & 0xF0) << 20 | b(0) << 16 | b(1) << 8 | b(2),
        (28, _) => (b(3) & 0x0F) << 24 | b(4) << 16 | b(5) << 8 | b(6),
        (_, 0) => b(0) << 24 | b(1) << 16 | b(2) << 8 | b(3),
        (_, _) => b(4) << 24 | b(5) << 16 | b(6) << 8 | b(7),
    }
}

fn memrfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    (0..=hay.len().checked_sub(needle.len())?)
        .rev()
        .find(|&i| hay[i..].starts_with(needle))
}

/// A metadata value, as far as the check needs it.
#[derive(Debug)]
enum Value {
    Uint(u128),
    Str(String),
    Map(Vec<(String, Value)>),
    Other,
}

/// A bounds-checked decoder of the MaxMind DB data format, for the metadata only.
struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Decoder<'_> {
    fn byte(&mut self) -> Result<u8, String> {
        let b = *self.buf.get(self.pos).ok_or("the metadata is cut short")?;
        self.pos += 1;
        Ok(b)
    }

    fn bytes(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or("the metadata is cut short")?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        if depth > 16 {
            return Err("the metadata nests too deeply".into());
        }
        let ctrl = self.byte()?;
        let mut kind = ctrl >> 5;
        if kind == 1 {
            return Err("the metadata uses a pointer".into());
        }
        if kind == 0 {
            kind = self.byte()?.checked_add(7).ok_or("bad extended type")?;
        }
        let size = match ctrl & 0x1F {
            n @ 0..29 => n as usize,
            29 => 29 + self.byte()? as usize,
            30 => 285 + self.bytes(2)?.iter().fold(0usize, |a, &b| a << 8 | b as usize),
            _ => 65_821 + self.bytes(3)?.iter().fold(0usize, |a, &b| a << 8 | b as usize),
        };
        Ok(match kind {
            2 => Value::Str(String::from_utf8_lossy(self.bytes(size)?).into_owned()),
            5 | 6 | 9 | 10 => {
                if size > 16 {
                    return Err("an integer in the metadata is too long".into());
                }
                Value::Uint(
                    self.bytes(size)?
                        .iter()
                        .fold(0u128, |a, &b| a << 8 | u128::from(b)),
                )
            }
            7 => {
                let mut entries = Vec::new();
                for _ in 0..size {
                    let Value::Str(k) = self.value(depth + 1)? else {
                        return Err("a metadata map key is not a string".into());
                    };
                    let v = self.value(depth + 1)?;
                    entries.push((k, v));
                }
                Value::Map(entries)
            }
            11 => {
                for _ in 0..size {
                    self.value(depth + 1)?;
                }
                Value::Other
            }
            3 => {
                self.bytes(8)?;
                Value::Other
            }
            15 => {
                self.bytes(4)?;
                Value::Other
            }
            4 | 8 => {
                self.bytes(size)?;
                Value::Other
            }
            14 => Value::Other,
            t => return Err(format!("unknown data type {t} in the metadata")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_refused_with_a_reason() {
        assert!(MmdbDb::from_bytes(Vec::new()).unwrap_err().contains("marker"));
        let mut junk: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
        assert!(MmdbDb::from_bytes(junk.clone()).is_err());
        // A marker followed by junk.
        junk.extend_from_slice(MARKER);
        junk.extend_from_slice(&[0xE9, 0x41, 0x61]);
        assert!(MmdbDb::from_bytes(junk).is_err());
    }
}
