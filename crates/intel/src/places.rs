//! Several place databases together ([`Places`], the [`GeoLookup`] the binary hands to the
//! engine), and [`discover`]: which known database files are installed where.
//!
//! For each address the sources are asked in order and the first that knows a field wins, field
//! by field: the country may come from a country mmdb and the ASN from an ASN CSV.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use engine::enrich::{GeoLookup, Place};

use crate::error::{LoadError, LoadErrorKind};
use crate::mmdb::MmdbDb;
use crate::ranges::{RangeDb, TextFormat};

/// What a database can tell.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Provides {
    pub asn: bool,
    pub country: bool,
    pub city: bool,
}

/// One loaded database.
#[derive(Debug)]
pub enum Source {
    Mmdb(MmdbDb),
    Ranges(RangeDb),
}

impl Source {
    /// Opens a file, choosing the reader by its name: `*.mmdb`, `*.csv` (ip-location-db), `*.tsv`
    /// (iptoasn).
    pub fn load(path: &Path) -> Result<Source, LoadError> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_ascii_lowercase();
        if name.ends_with(".mmdb") {
            MmdbDb::load(path).map(Source::Mmdb)
        } else if name.ends_with(".csv") {
            RangeDb::load(path, TextFormat::IpLocationCsv).map(Source::Ranges)
        } else if name.ends_with(".tsv") {
            RangeDb::load(path, TextFormat::IptoasnTsv).map(Source::Ranges)
        } else {
            Err(LoadError::new(path, LoadErrorKind::UnknownFormat))
        }
    }

    /// What this database can tell.
    pub fn provides(&self) -> Provides {
        match self {
            Source::Mmdb(db) => {
                let f = db.fields();
                Provides {
                    asn: f.asn,
                    country: f.country,
                    city: f.city,
                }
            }
            Source::Ranges(db) => {
                let (asn, country) = db.provides();
                Provides {
                    asn,
                    country,
                    city: false,
                }
            }
        }
    }

    fn place(&self, ip: IpAddr) -> Option<Place> {
        match self {
            Source::Mmdb(db) => db.place(ip),
            Source::Ranges(db) => db.get(ip).map(|r| Place {
                asn: r.asn,
                org: r.org.as_deref().map(str::to_string),
                country: r.country,
                city: None,
            }),
        }
    }
}

/// Place databases asked in order, field by field.
#[derive(Debug, Default)]
pub struct Places {
    sources: Vec<(PathBuf, Source)>,
}

impl Places {
    /// No database (every lookup says `None`).
    pub fn new() -> Places {
        Places::default()
    }

    /// Adds a database after those already there (it fills only fields they leave empty).
    pub fn push(&mut self, path: impl Into<PathBuf>, source: Source) {
        self.sources.push((path.into(), source));
    }

    /// Loads a file and adds it.
    pub fn add_file(&mut self, path: &Path) -> Result<(), LoadError> {
        let s = Source::load(path)?;
        self.push(path, s);
        Ok(())
    }

    /// The databases, in the order they are asked.
    pub fn sources(&self) -> impl Iterator<Item = (&Path, &Source)> {
        self.sources.iter().map(|(p, s)| (p.as_path(), s))
    }

    /// No database loaded.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// What the loaded databases can tell together.
    pub fn provides(&self) -> Provides {
        self.sources.iter().fold(Provides::default(), |a, (_, s)| {
            let p = s.provides();
            Provides {
                asn: a.asn || p.asn,
                country: a.country || p.country,
                city: a.city || p.city,
            }
        })
    }
}

impl GeoLookup for Places {
    fn place(&self, ip: IpAddr) -> Option<Place> {
        let mut out = Place::default();
        let mut any = false;
        for (_, s) in &self.sources {
            let Some(p) = s.place(ip) else { continue };
            if out.asn.is_none() && p.asn.is_some() {
                out.asn = p.asn;
                // The organisation goes with the ASN it names.
                out.org = p.org;
            } else if out.org.is_none() && out.asn.is_none() {
                out.org = p.org;
            }
            out.country = out.country.or(p.country);
            out.city = out.city.or(p.city);
            any = true;
            if out.asn.is_some() && out.org.is_some() && out.country.is_some() && out.city.is_some() {
                break;
            }
        }
        let known = out.asn.is_some() || out.org.is_some() || out.country.is_some() || out.city.is_some();
        (any && known).then_some(out)
    }
}

/// The formats of known database files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A MaxMind DB file (GeoLite2, DB-IP Lite, ip-location-db mmdb).
    Mmdb,
    /// ip-location-db ASN or country CSV.
    IpLocationCsv,
    /// iptoasn TSV.
    IptoasnTsv,
}

/// A known database file name (`*` matches any text, e.g. a DB-IP release date).
#[derive(Clone, Copy, Debug)]
pub struct KnownFile {
    pub pattern: &'static str,
    pub kind: Kind,
    pub provides: Provides,
    /// Who publishes it and under which licence.
    pub origin: &'static str,
    /// Not used when a file of one of these patterns was found (the same data in another
    /// layout, or a combined file).
    pub superseded_by: &'static [&'static str],
}

const fn k(
    pattern: &'static str,
    kind: Kind,
    provides: Provides,
    origin: &'static str,
    superseded_by: &'static [&'static str],
) -> KnownFile {
    KnownFile {
        pattern,
        kind,
        provides,
        origin,
        superseded_by,
    }
}

const CITY: Provides = Provides {
    asn: false,
    country: true,
    city: true,
};
const COUNTRY: Provides = Provides {
    asn: false,
    country: true,
    city: false,
};
const ASN: Provides = Provides {
    asn: true,
    country: false,
    city: false,
};
const ASN_COUNTRY: Provides = Provides {
    asn: true,
    country: true,
    city: false,
};
const GEOLITE: &str = "MaxMind GeoLite2 (GeoLite2 EULA)";
const GEOIP: &str = "MaxMind GeoIP2 (commercial)";
const DBIP: &str = "DB-IP Lite (CC BY 4.0)";
const ILD_COUNTRY: &str = "ip-location-db geo-whois-asn-country (CC BY 4.0)";
const ILD_ASN: &str = "ip-location-db asn (CC BY 4.0 and RouteViews)";
const IPTOASN: &str = "iptoasn.com (PDDL)";

/// The file names [`discover`] looks for, best first (the order [`Discovery::load`] asks them).
/// City databases come before country ones so a city and its country agree.
#[rustfmt::skip]
pub const KNOWN_FILES: &[KnownFile] = &[
    k("GeoLite2-City.mmdb", Kind::Mmdb, CITY, GEOLITE, &[]),
    k("GeoIP2-City.mmdb", Kind::Mmdb, CITY, GEOIP, &[]),
    k("dbip-city-lite*.mmdb", Kind::Mmdb, CITY, DBIP, &[]),
    k("GeoLite2-Country.mmdb", Kind::Mmdb, COUNTRY, GEOLITE, &[]),
    k("GeoIP2-Country.mmdb", Kind::Mmdb, COUNTRY, GEOIP, &[]),
    k("dbip-country-lite*.mmdb", Kind::Mmdb, COUNTRY, DBIP, &[]),
    k("geo-whois-asn-country.mmdb", Kind::Mmdb, COUNTRY, ILD_COUNTRY, &[]),
    k("geo-whois-asn-country-ipv4.mmdb", Kind::Mmdb, COUNTRY, ILD_COUNTRY, &["geo-whois-asn-country.mmdb"]),
    k("geo-whois-asn-country-ipv6.mmdb", Kind::Mmdb, COUNTRY, ILD_COUNTRY, &["geo-whois-asn-country.mmdb"]),
    k("GeoLite2-ASN.mmdb", Kind::Mmdb, ASN, GEOLITE, &[]),
    k("dbip-asn-lite*.mmdb", Kind::Mmdb, ASN, DBIP, &[]),
    k("asn-ipv4.csv", Kind::IpLocationCsv, ASN, ILD_ASN, &[]),
    k("asn-ipv6.csv", Kind::IpLocationCsv, ASN, ILD_ASN, &[]),
    k("asn-ipv4-num.csv", Kind::IpLocationCsv, ASN, ILD_ASN, &["asn-ipv4.csv"]),
    k("asn-ipv6-num.csv", Kind::IpLocationCsv, ASN, ILD_ASN, &["asn-ipv6.csv"]),
    k("ip2asn-combined.tsv", Kind::IptoasnTsv, ASN_COUNTRY, IPTOASN, &[]),
    k("ip2asn-v4.tsv", Kind::IptoasnTsv, ASN_COUNTRY, IPTOASN, &["ip2asn-combined.tsv"]),
    k("ip2asn-v6.tsv", Kind::IptoasnTsv, ASN_COUNTRY, IPTOASN, &["ip2asn-combined.tsv"]),
    k("ip2asn-v4-u32.tsv", Kind::IptoasnTsv, ASN_COUNTRY, IPTOASN, &["ip2asn-combined.tsv", "ip2asn-v4.tsv"]),
];

/// Where [`discover`] looks, in order: the config directory (`config_dir`, else
/// `$XDG_CONFIG_HOME/netvigil` or `~/.config/netvigil`), `$XDG_DATA_HOME/netvigil` (or
/// `~/.local/share/netvigil`), `/usr/share/GeoIP`, `/var/lib/GeoIP` (where `geoipupdate`
/// writes).
pub fn default_dirs(config_dir: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let home = |sub: &str| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(sub));
    let config = config_dir.map(Path::to_path_buf).or_else(|| {
        std::env::var_os("XDG_CONFIG_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| home(".config"))
            .map(|c| c.join("netvigil"))
    });
    dirs.extend(config);
    let data_home = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| home(".local/share"));
    if let Some(d) = data_home {
        dirs.push(d.join("netvigil"));
    }
    dirs.push("/usr/share/GeoIP".into());
    dirs.push("/var/lib/GeoIP".into());
    dirs
}

/// A database file found on disk.
#[derive(Clone, Debug)]
pub struct Found {
    pub path: PathBuf,
    pub known: KnownFile,
}

/// What [`discover`] found.
#[derive(Clone, Debug, Default)]
pub struct Discovery {
    /// The directories looked in.
    pub dirs: Vec<PathBuf>,
    /// Known files, in [`KNOWN_FILES`] order (a file name found in two directories: the first).
    pub found: Vec<Found>,
}

impl Discovery {
    /// What the found files can tell together.
    pub fn provides(&self) -> Provides {
        self.found.iter().fold(Provides::default(), |a, f| Provides {
            asn: a.asn || f.known.provides.asn,
            country: a.country || f.known.provides.country,
            city: a.city || f.known.provides.city,
        })
    }

    /// What no found file provides ("ASN and organisation", "country", "city").
    pub fn missing(&self) -> Vec<&'static str> {
        let p = self.provides();
        let mut m = Vec::new();
        if !p.country {
            m.push("country");
        }
        if !p.asn {
            m.push("ASN and organisation");
        }
        if !p.city {
            m.push("city");
        }
        m
    }

    /// Loads every found file (`extra` files, e.g. from the config, are asked first); files
    /// that fail are reported and left out.
    pub fn load(&self, extra: &[PathBuf]) -> (Places, Vec<LoadError>) {
        let mut places = Places::new();
        let mut errors = Vec::new();
        let paths = extra.iter().chain(self.found.iter().map(|f| &f.path));
        for path in paths {
            if let Err(e) = places.add_file(path) {
                errors.push(e);
            }
        }
        (places, errors)
    }
}

/// Looks in `dirs` for the files of [`KNOWN_FILES`].
pub fn discover(dirs: &[PathBuf]) -> Discovery {
    let mut found: Vec<Found> = Vec::new();
    let mut listings: Vec<(PathBuf, Vec<String>)> = Vec::new();
    for dir in dirs {
        let Ok(rd) = std::fs::read_dir(dir) else { continue };
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        listings.push((dir.clone(), names));
    }
    for known in KNOWN_FILES {
        let superseded = known
            .superseded_by
            .iter()
            .any(|by| found.iter().any(|f| f.known.pattern == *by));
        if superseded {
            continue;
        }
        'dirs: for (dir, names) in &listings {
            // A dated pattern (DB-IP) may match several files: the last in name order is newest.
            if let Some(name) = names.iter().rev().find(|n| glob(known.pattern, n)) {
                let path = dir.join(name);
                if !found.iter().any(|f| f.path == path) {
                    found.push(Found { path, known: *known });
                }
                break 'dirs;
            }
        }
    }
    Discovery {
        dirs: dirs.to_vec(),
        found,
    }
}

/// `*`-only glob, ASCII case-insensitive.
fn glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern.eq_ignore_ascii_case(name),
        Some((pre, post)) => {
            name.len() >= pre.len() + post.len()
                && name.is_char_boundary(pre.len())
                && name.is_char_boundary(name.len() - post.len())
                && name[..pre.len()].eq_ignore_ascii_case(pre)
                && name[name.len() - post.len()..].eq_ignore_ascii_case(post)
        }
    }
}

/// How to get a database, for `netvigil doctor` and the docs (one step per line).
pub const HOW_TO_GET: &str = "\
no place database: the dashboard shows a dash for country and owner. To get one (any is enough):
  - free, no account (CC BY 4.0, country + ASN):
      npm pack @ip-location-db/geo-whois-asn-country-mmdb && npm pack @ip-location-db/asn
      tar -xzf ip-location-db-geo-whois-asn-country-mmdb-*.tgz && tar -xzf ip-location-db-asn-*.tgz
      mkdir -p ~/.local/share/netvigil
      cp package/geo-whois-asn-country.mmdb package/asn-ipv4.csv package/asn-ipv6.csv ~/.local/share/netvigil/
  - MaxMind GeoLite2 (free account and licence key at maxmind.com): apt install geoipupdate (contrib),
      put AccountID/LicenseKey and `EditionIDs GeoLite2-ASN GeoLite2-City` in /etc/GeoIP.conf,
      run geoipupdate (it writes /var/lib/GeoIP/GeoLite2-*.mmdb)
  - DB-IP Lite (CC BY 4.0): dbip-country-lite-YYYY-MM.mmdb / dbip-asn-lite-YYYY-MM.mmdb from db-ip.com,
      unpacked (gunzip) into ~/.local/share/netvigil/
  - iptoasn (PDDL): ip2asn-combined.tsv from iptoasn.com, gunzipped into ~/.local/share/netvigil/";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_dated_names_only() {
        assert!(glob("dbip-country-lite*.mmdb", "dbip-country-lite-2024-05.mmdb"));
        assert!(glob("dbip-country-lite*.mmdb", "DBIP-Country-Lite-2024-05.MMDB"));
        assert!(!glob(
            "dbip-country-lite*.mmdb",
            "dbip-country-lite-2024-05.mmdb.gz"
        ));
        assert!(glob("GeoLite2-ASN.mmdb", "GeoLite2-ASN.mmdb"));
        assert!(!glob("GeoLite2-ASN.mmdb", "GeoLite2-ASN.mmdb.bak"));
        assert!(!glob("a*a", "a"));
    }
}
