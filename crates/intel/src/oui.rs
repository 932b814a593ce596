//! MAC address vendors from the IEEE registries (OUI): the organisation that registered the
//! first 24 bits (MA-L), 28 bits (MA-M) or 36 bits (MA-S) of an address.
//!
//! [`OuiTable::system`] reads Debian's `ieee-data` files (`/usr/share/ieee-data/oui.csv`,
//! `mam.csv`, `oui36.csv`: `Registry,Assignment,Organization Name,Organization Address`) when
//! they are installed, and otherwise uses a small table embedded at build time
//! (`data/oui_common.tsv`: Apple, Samsung, Google, Amazon, Sonos, Raspberry Pi, Intel, Realtek,
//! TP-Link, Espressif, ... from the same registry). Lookups take the longest registered prefix.
//! Locally administered addresses (randomised "private" MACs) are never looked up: their first
//! bytes belong to no vendor ([`OuiTable::describe`] says "private address").

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use engine::lan::{Mac, MacVendors, is_private_mac};

use crate::error::{LoadError, LoadErrorKind};

/// Where Debian's `ieee-data` package puts the registries.
pub const IEEE_DATA_DIR: &str = "/usr/share/ieee-data";

/// The embedded fallback: common vendors' MA-L prefixes.
const COMMON: &str = include_str!("../data/oui_common.tsv");

/// Vendors by MAC prefix.
#[derive(Clone, Debug, Default)]
pub struct OuiTable {
    names: Vec<Arc<str>>,
    /// Name -> index into `names` (one copy of each organisation's name).
    index: HashMap<Arc<str>, u32>,
    /// Prefix value -> index into `names`, per prefix length (24, 28, 36 bits).
    l: HashMap<u32, u32>,
    m: HashMap<u32, u32>,
    s: HashMap<u64, u32>,
    /// The files read (empty: the embedded table).
    pub sources: Vec<PathBuf>,
}

/// What a MAC address says about its maker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MacVendor {
    /// The registered organisation.
    Vendor(Arc<str>),
    /// A locally administered (randomised) address: no vendor to name.
    Private,
    /// Not in the table.
    Unknown,
}

impl std::fmt::Display for MacVendor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MacVendor::Vendor(v) => f.write_str(v),
            MacVendor::Private => f.write_str("private address"),
            MacVendor::Unknown => f.write_str("unknown vendor"),
        }
    }
}

fn mac48(m: &Mac) -> u64 {
    m.iter().fold(0u64, |a, b| a << 8 | u64::from(*b))
}

impl OuiTable {
    /// The registries of Debian's `ieee-data` when installed (a file that does not load is
    /// returned as an error, so it can be reported), else the embedded table.
    pub fn system() -> Result<OuiTable, LoadError> {
        Self::from_dir(Path::new(IEEE_DATA_DIR))
    }

    /// `oui.csv`, `mam.csv` and `oui36.csv` in `dir`, the ones present; the embedded table
    /// when `oui.csv` is absent.
    pub fn from_dir(dir: &Path) -> Result<OuiTable, LoadError> {
        let main = dir.join("oui.csv");
        if !main.exists() {
            return Ok(Self::embedded());
        }
        let mut t = OuiTable::default();
        t.load_csv(&main)?;
        for extra in ["mam.csv", "oui36.csv"] {
            let p = dir.join(extra);
            if p.exists() {
                t.load_csv(&p)?;
            }
        }
        t.compact();
        Ok(t)
    }

    /// Frees what only loading needs (the name index) and spare capacity: the table of the
    /// whole registry then takes about half the memory. Names loaded later are not shared.
    pub fn compact(&mut self) {
        self.index = HashMap::new();
        self.names.shrink_to_fit();
        self.l.shrink_to_fit();
        self.m.shrink_to_fit();
        self.s.shrink_to_fit();
    }

    /// The table built into the binary: common vendors only.
    pub fn embedded() -> OuiTable {
        let mut t = OuiTable::default();
        for line in COMMON.lines().filter(|l| !l.starts_with('#')) {
            let Some((name, prefixes)) = line.split_once('\t') else {
                continue;
            };
            let idx = t.name(name);
            for p in prefixes.split_ascii_whitespace() {
                if let Ok(v) = u32::from_str_radix(p, 16) {
                    t.l.insert(v, idx);
                }
            }
        }
        t.compact();
        t
    }

    fn name(&mut self, n: &str) -> u32 {
        if let Some(&i) = self.index.get(n) {
            return i;
        }
        let a: Arc<str> = Arc::from(n);
        let i = self.names.len() as u32;
        self.names.push(a.clone());
        self.index.insert(a, i);
        i
    }

    /// Adds the rows of one registry CSV file.
    pub fn load_csv(&mut self, path: &Path) -> Result<(), LoadError> {
        let bytes = std::fs::read(path).map_err(|e| LoadError::new(path, LoadErrorKind::Io(e)))?;
        let text = String::from_utf8_lossy(&bytes);
        let (added, bad, lines, first_bad) = self.add_csv(&text);
        if added == 0 {
            return Err(LoadError::new(path, LoadErrorKind::Empty));
        }
        if bad * 10 > lines
            && let Some((line, message)) = first_bad
        {
            return Err(LoadError::new(
                path,
                LoadErrorKind::Text {
                    line,
                    message,
                    bad,
                    lines,
                },
            ));
        }
        self.sources.push(path.to_path_buf());
        Ok(())
    }

    /// Parses registry CSV text: (rows added, bad rows, data rows, first bad (line, why)).
    fn add_csv(&mut self, text: &str) -> (usize, usize, usize, Option<(usize, String)>) {
        let (mut added, mut bad, mut lines) = (0, 0, 0);
        let mut first_bad = None;
        let mut fail = |n: usize, why: &str, bad: &mut usize| {
            *bad += 1;
            first_bad.get_or_insert((n, why.to_string()));
        };
        for (i, line) in text.lines().enumerate() {
            if i == 0 && line.starts_with("Registry,") || line.trim().is_empty() {
                continue;
            }
            lines += 1;
            let f = csv_fields(line, 3);
            let [reg, hex, org] = [f.first(), f.get(1), f.get(2)].map(|x| x.map(|s| s.trim()));
            let (Some(reg), Some(hex), Some(org)) = (reg, hex, org) else {
                fail(i + 1, "fewer than 3 fields", &mut bad);
                continue;
            };
            let org = if org.is_empty() { "(no name)" } else { org };
            let ok = match (reg, hex.len()) {
                ("MA-L", 6) => u32::from_str_radix(hex, 16).ok().map(|v| {
                    let n = self.name(org);
                    self.l.insert(v, n);
                }),
                ("MA-M", 7) => u32::from_str_radix(hex, 16).ok().map(|v| {
                    let n = self.name(org);
                    self.m.insert(v, n);
                }),
                ("MA-S" | "IAB", 9) => u64::from_str_radix(hex, 16).ok().map(|v| {
                    let n = self.name(org);
                    self.s.insert(v, n);
                }),
                ("CID", _) => Some(()), // company ids are not MAC prefixes
                _ => None,
            };
            match ok {
                Some(()) => added += 1,
                None => fail(
                    i + 1,
                    "the registry or assignment is not an MA-L/MA-M/MA-S prefix",
                    &mut bad,
                ),
            }
        }
        (added, bad, lines, first_bad)
    }

    /// How many prefixes are known.
    pub fn len(&self) -> usize {
        self.l.len() + self.m.len() + self.s.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The organisation of the longest registered prefix of `mac` (whatever its
    /// locally-administered bit says; see [`OuiTable::describe`]).
    pub fn lookup(&self, mac: &Mac) -> Option<&Arc<str>> {
        let v = mac48(mac);
        let idx = self
            .s
            .get(&(v >> 12))
            .or_else(|| self.m.get(&((v >> 20) as u32)))
            .or_else(|| self.l.get(&((v >> 24) as u32)))?;
        self.names.get(*idx as usize)
    }

    /// The vendor, "private address" for a locally administered MAC, or unknown.
    pub fn describe(&self, mac: &Mac) -> MacVendor {
        if is_private_mac(mac) {
            return MacVendor::Private;
        }
        match self.lookup(mac) {
            Some(v) => MacVendor::Vendor(v.clone()),
            None => MacVendor::Unknown,
        }
    }
}

impl MacVendors for OuiTable {
    fn vendor(&self, mac: &Mac) -> Option<String> {
        match self.describe(mac) {
            MacVendor::Vendor(v) => Some(v.to_string()),
            _ => None,
        }
    }
}

/// The first `n` fields of a CSV line (RFC 4180 quoting; a quoted field may hold commas and
/// doubled quotes).
fn csv_fields(line: &str, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    let mut chars = line.chars().peekable();
    while out.len() < n {
        let mut f = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                if c == '"' {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        f.push('"');
                    } else {
                        break;
                    }
                } else {
                    f.push(c);
                }
            }
            // Up to the next comma.
            for c in chars.by_ref() {
                if c == ',' {
                    break;
                }
            }
            out.push(f);
        } else {
            let mut ended = false;
            for c in chars.by_ref() {
                if c == ',' {
                    ended = true;
                    break;
                }
                f.push(c);
            }
            out.push(f);
            if !ended {
                break;
            }
        }
        if chars.peek().is_none() {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "Registry,Assignment,Organization Name,Organization Address\n\
        MA-L,3C22FB,\"Apple, Inc.\",1 Infinite Loop Cupertino CA US 95014 \n\
        MA-L,70B3D5,IEEE Registration Authority,445 Hoes Lane Piscataway NJ US 08554 \n\
        MA-M,70B3D51,\"Acme \"\"Sensors\"\" GmbH\",Street 1 Berlin DE\n\
        MA-S,70B3D5123,Tiny Things Ltd,Somewhere\n\
        CID,0A1B2C,Some Company,Nowhere\n";

    fn table() -> OuiTable {
        let mut t = OuiTable::default();
        let (added, bad, lines, _) = t.add_csv(CSV);
        assert_eq!((added, bad, lines), (5, 0, 5));
        t
    }

    #[test]
    fn longest_prefix_wins() {
        let t = table();
        let v = |m: Mac| t.lookup(&m).map(|s| s.to_string());
        assert_eq!(v([0x3c, 0x22, 0xfb, 1, 2, 3]).as_deref(), Some("Apple, Inc."));
        assert_eq!(
            v([0x70, 0xb3, 0xd5, 0x12, 0x34, 0x56]).as_deref(),
            Some("Tiny Things Ltd")
        );
        assert_eq!(
            v([0x70, 0xb3, 0xd5, 0x1f, 0xff, 0xff]).as_deref(),
            Some("Acme \"Sensors\" GmbH")
        );
        assert_eq!(
            v([0x70, 0xb3, 0xd5, 0xf0, 0, 0]).as_deref(),
            Some("IEEE Registration Authority")
        );
        assert_eq!(v([0x00, 0x00, 0x01, 0, 0, 0]), None);
    }

    #[test]
    fn private_addresses_name_no_vendor() {
        let t = table();
        // 3e:22:fb is 3c:22:fb with the locally administered bit set.
        let m: Mac = [0x3e, 0x22, 0xfb, 1, 2, 3];
        assert_eq!(t.describe(&m), MacVendor::Private);
        assert_eq!(t.describe(&m).to_string(), "private address");
        assert_eq!(t.vendor(&m), None);
        assert_eq!(
            t.vendor(&[0x3c, 0x22, 0xfb, 1, 2, 3]).as_deref(),
            Some("Apple, Inc.")
        );
        assert_eq!(t.describe(&[0, 0, 1, 0, 0, 0]).to_string(), "unknown vendor");
    }

    #[test]
    fn embedded_table_has_common_vendors() {
        let t = OuiTable::embedded();
        assert!(t.len() > 3000, "{}", t.len());
        for (mac, want) in [
            ([0x3c, 0x22, 0xfb], "Apple, Inc."),
            ([0xb8, 0x27, 0xeb], "Raspberry Pi Foundation"),
            ([0xdc, 0xa6, 0x32], "Raspberry Pi Trading Ltd"),
            ([0xf4, 0xf5, 0xd8], "Google, Inc."),
            ([0x24, 0x0a, 0xc4], "Espressif Inc."),
            ([0x00, 0x0e, 0x58], "Sonos, Inc."),
        ] {
            let m = [mac[0], mac[1], mac[2], 0x10, 0x20, 0x30];
            assert_eq!(t.lookup(&m).map(|s| &**s), Some(want), "{mac:02x?}");
        }
    }

    #[test]
    fn damaged_files_are_reported() {
        let dir = std::env::temp_dir().join(format!("netvigil-oui-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("oui.csv");
        std::fs::write(&p, "Registry,Assignment\nnot,a,registry\nMA-L,XYZ,Bad\n").unwrap();
        let e = OuiTable::from_dir(&dir).unwrap_err();
        assert!(matches!(e.kind, LoadErrorKind::Empty), "{e}");
        std::fs::write(&p, "MA-L,3C22FB,Apple\nMA-L,zz,Bad\n").unwrap();
        let e = OuiTable::from_dir(&dir).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("oui.csv"), "{e}");
        std::fs::remove_file(&p).unwrap();
        // No oui.csv: the embedded table.
        let t = OuiTable::from_dir(&dir).unwrap();
        assert!(t.sources.is_empty() && t.len() > 3000);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Reads the real registry when Debian's ieee-data is installed (CI installs it).
    #[test]
    fn debian_ieee_data() {
        let t = OuiTable::system().expect("the installed registry loads");
        assert!(
            t.sources.iter().any(|p| p.ends_with("oui.csv")),
            "install Debian's ieee-data package (apt-get install ieee-data): {IEEE_DATA_DIR}/oui.csv is missing"
        );
        assert!(t.len() > 30_000, "{}", t.len());
        assert_eq!(
            t.lookup(&[0x3c, 0x22, 0xfb, 0, 0, 1]).map(|s| &**s),
            Some("Apple, Inc.")
        );
        assert_eq!(
            t.lookup(&[0xdc, 0xa6, 0x32, 0, 0, 1]).map(|s| &**s),
            Some("Raspberry Pi Trading Ltd")
        );
    }

    proptest::proptest! {
        #[test]
        fn csv_lines_never_panic(s in "\\PC{0,200}") {
            let mut t = OuiTable::default();
            let _ = t.add_csv(&s);
            let _ = csv_fields(&s, 3);
        }
    }
}
