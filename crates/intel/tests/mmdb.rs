//! MaxMind DB files built by the test writer, read through the `maxminddb` crate (to show the
//! writer makes real databases) and through `intel` (MmdbDb, Places, discover).

mod support;

use std::net::IpAddr;

use engine::enrich::{GeoLookup, Place};
use intel::places::{Source, discover};
use intel::{MmdbDb, Places};
use maxminddb::{Reader, geoip2};
use proptest::prelude::*;
use support::TempDir;
use support::mmdb_writer::{V, Writer, s};

fn ip(x: &str) -> IpAddr {
    x.parse().unwrap()
}

fn asn(n: u32, org: &str) -> V {
    V::Map(vec![
        ("autonomous_system_number", V::U32(n)),
        ("autonomous_system_organization", s(org)),
    ])
}

fn names(en: &str) -> V {
    V::Map(vec![("de", s(&format!("{en} (de)"))), ("en", s(en))])
}

fn country(iso: &str, name: &str) -> V {
    V::Map(vec![
        ("geoname_id", V::U32(2_750_405)),
        ("is_in_european_union", V::Bool(true)),
        ("iso_code", s(iso)),
        ("names", names(name)),
    ])
}

/// GeoLite2-ASN shape, 24-bit records, IPv6 tree with IPv4 under ::/96.
fn asn_db() -> Vec<u8> {
    let mut w = Writer::new("GeoLite2-ASN", 6, 24);
    w.insert("192.0.2.0/24", asn(64500, "Example One"))
        .insert("198.51.100.0/25", asn(64501, "Example Two"))
        .insert("2001:db8::/32", asn(64502, "Doc Six"));
    w.build()
}

/// GeoLite2-City shape, 28-bit records.
fn city_db(kind: &str) -> Vec<u8> {
    let mut w = Writer::new(kind, 6, 28);
    w.insert(
        "203.0.113.0/24",
        V::Map(vec![
            (
                "city",
                V::Map(vec![("geoname_id", V::U32(1)), ("names", names("Exampleville"))]),
            ),
            (
                "continent",
                V::Map(vec![("code", s("EU")), ("names", names("Europe"))]),
            ),
            ("country", country("NL", "Netherlands")),
            (
                "location",
                V::Map(vec![
                    ("accuracy_radius", V::U16(100)),
                    ("latitude", V::Double(52.37)),
                    ("longitude", V::Double(4.89)),
                    ("time_zone", s("Europe/Amsterdam")),
                ]),
            ),
            ("registered_country", country("NL", "Netherlands")),
            ("subdivisions", V::Arr(vec![V::Map(vec![("iso_code", s("NH"))])])),
        ]),
    )
    // Anycast-like: only the registered country is known.
    .insert(
        "192.0.2.128/25",
        V::Map(vec![("registered_country", country("DE", "Germany"))]),
    )
    .insert(
        "2001:db8:1::/48",
        V::Map(vec![("country", country("JP", "Japan"))]),
    );
    w.build()
}

/// ip-location-db geo-whois-asn-country shape: `country_code` at the top level, 32-bit records.
fn iplocation_country_db() -> Vec<u8> {
    let mut w = Writer::new("geo-whois-asn-country", 6, 32);
    w.insert("192.0.2.0/24", V::Map(vec![("country_code", s("US"))]))
        .insert("198.51.100.0/24", V::Map(vec![("country_code", s("FR"))]))
        .insert("2001:db8::/32", V::Map(vec![("country_code", s("SE"))]));
    w.build()
}

#[test]
fn writer_makes_databases_the_crate_reads() {
    let r = Reader::from_source(asn_db()).unwrap();
    r.verify().unwrap();
    assert_eq!(r.metadata.database_type, "GeoLite2-ASN");
    let a: geoip2::Asn = r.lookup(ip("192.0.2.77")).unwrap().decode().unwrap().unwrap();
    assert_eq!(a.autonomous_system_number, Some(64500));
    assert_eq!(a.autonomous_system_organization, Some("Example One"));
    let a: geoip2::Asn = r
        .lookup(ip("2001:db8:abcd::1"))
        .unwrap()
        .decode()
        .unwrap()
        .unwrap();
    assert_eq!(a.autonomous_system_number, Some(64502));
    let res = r.lookup(ip("198.51.100.200")).unwrap();
    assert!(!res.has_data());
    assert_eq!(
        r.lookup(ip("198.51.100.1"))
            .unwrap()
            .network()
            .unwrap()
            .to_string(),
        "198.51.100.0/25"
    );

    let r = Reader::from_source(city_db("GeoLite2-City")).unwrap();
    r.verify().unwrap();
    let c: geoip2::City = r.lookup(ip("203.0.113.9")).unwrap().decode().unwrap().unwrap();
    assert_eq!(c.city.names.english, Some("Exampleville"));
    assert_eq!(c.country.iso_code, Some("NL"));
    assert_eq!(c.location.time_zone, Some("Europe/Amsterdam"));

    let r = Reader::from_source(iplocation_country_db()).unwrap();
    r.verify().unwrap();
    let cc: Option<String> = r
        .lookup(ip("2001:db8::5"))
        .unwrap()
        .decode_path(&[maxminddb::PathElement::Key("country_code")])
        .unwrap();
    assert_eq!(cc.as_deref(), Some("SE"));
}

#[test]
fn mmdb_db_reads_each_layout() {
    let a = MmdbDb::from_bytes(asn_db()).unwrap();
    assert!(a.fields().asn && !a.fields().country);
    let p = a.place(ip("198.51.100.5")).unwrap();
    assert_eq!((p.asn, p.org.as_deref()), (Some(64501), Some("Example Two")));
    assert_eq!(a.place(ip("198.51.100.128")), None);
    assert_eq!(a.place(ip("::ffff:192.0.2.1")).unwrap().asn, Some(64500));

    for kind in ["GeoLite2-City", "DBIP-City-Lite"] {
        let c = MmdbDb::from_bytes(city_db(kind)).unwrap();
        let p = c.place(ip("203.0.113.200")).unwrap();
        assert_eq!(p.country_str(), Some("NL"), "{kind}");
        assert_eq!(p.city.as_deref(), Some("Exampleville"), "{kind}");
        assert_eq!(p.asn, None);
        // registered_country is the fallback.
        assert_eq!(c.place(ip("192.0.2.200")).unwrap().country_str(), Some("DE"));
        assert_eq!(c.place(ip("192.0.2.1")), None);
        let jp = c.place(ip("2001:db8:1:2::3")).unwrap();
        assert_eq!((jp.country_str(), jp.city.as_deref()), (Some("JP"), None));
    }

    let l = MmdbDb::from_bytes(iplocation_country_db()).unwrap();
    assert_eq!(l.place(ip("198.51.100.255")).unwrap().country_str(), Some("FR"));
    assert_eq!(l.place(ip("203.0.113.1")), None);
}

#[test]
fn ipv4_only_database_answers_none_for_ipv6() {
    let mut w = Writer::new("DBIP-Country-Lite", 4, 24);
    w.insert("192.0.2.0/24", V::Map(vec![("country", country("IT", "Italy"))]));
    let db = MmdbDb::from_bytes(w.build()).unwrap();
    assert_eq!(db.place(ip("192.0.2.3")).unwrap().country_str(), Some("IT"));
    assert_eq!(db.place(ip("2001:db8::1")), None);
    assert_eq!(
        db.place(ip("::ffff:192.0.2.3")).unwrap().country_str(),
        Some("IT")
    );
}

#[test]
fn places_combine_sources_field_by_field() {
    let dir = TempDir::new("places");
    let csv = dir.path().join("asn-ipv4.csv");
    std::fs::write(
        &csv,
        "203.0.113.0,203.0.113.255,64496,\"Csv Org, Ltd\"\n192.0.2.0,192.0.2.255,64499,Csv Two\n",
    )
    .unwrap();
    let mut places = Places::new();
    places.push(
        "country.mmdb",
        Source::Mmdb(MmdbDb::from_bytes(iplocation_country_db()).unwrap()),
    );
    places.push(
        "city.mmdb",
        Source::Mmdb(MmdbDb::from_bytes(city_db("GeoLite2-City")).unwrap()),
    );
    places.add_file(&csv).unwrap();
    places.push("asn.mmdb", Source::Mmdb(MmdbDb::from_bytes(asn_db()).unwrap()));

    // Country from the first source (US, not the city db's DE), ASN from the CSV before the
    // ASN mmdb.
    let p = places.place(ip("192.0.2.200")).unwrap();
    assert_eq!(
        p,
        Place {
            asn: Some(64499),
            org: Some("Csv Two".into()),
            country: Some(*b"US"),
            city: None,
        }
    );
    // City and country from the city db, ASN from the CSV.
    let p = places.place(ip("203.0.113.7")).unwrap();
    assert_eq!(p.country_str(), Some("NL"));
    assert_eq!(p.city.as_deref(), Some("Exampleville"));
    assert_eq!((p.asn, p.org.as_deref()), (Some(64496), Some("Csv Org, Ltd")));
    // IPv6: country from ip-location-db, ASN from the ASN mmdb.
    let p = places.place(ip("2001:db8::9")).unwrap();
    assert_eq!((p.country_str(), p.asn), (Some("SE"), Some(64502)));
    // Nobody knows it.
    assert_eq!(places.place(ip("100.64.0.1")), None);
    assert!(Places::new().place(ip("192.0.2.1")).is_none());
    let pr = places.provides();
    assert!(pr.asn && pr.country && pr.city);
}

#[test]
fn discovery_finds_known_names_and_reports_bad_files() {
    let a = TempDir::new("disc-a");
    let b = TempDir::new("disc-b");
    std::fs::write(a.path().join("GeoLite2-ASN.mmdb"), asn_db()).unwrap();
    std::fs::write(
        a.path().join("dbip-country-lite-2024-04.mmdb"),
        iplocation_country_db(),
    )
    .unwrap();
    // The newer DB-IP release in the same directory wins.
    std::fs::write(
        a.path().join("dbip-country-lite-2024-05.mmdb"),
        city_db("DBIP-Country-Lite"),
    )
    .unwrap();
    std::fs::write(a.path().join("unrelated.mmdb"), b"x").unwrap();
    // A truncated file under a known name.
    let mut cut = city_db("GeoLite2-City");
    cut.truncate(cut.len() / 3);
    std::fs::write(b.path().join("GeoLite2-City.mmdb"), &cut).unwrap();
    // Same name in a later directory: the first directory's is used.
    std::fs::write(b.path().join("GeoLite2-ASN.mmdb"), b"garbage").unwrap();

    let d = discover(&[a.0.clone(), b.0.clone(), "/nonexistent/netvigil".into()]);
    let names: Vec<String> = d.found.iter().map(|f| f.path.display().to_string()).collect();
    assert_eq!(
        names,
        vec![
            b.path().join("GeoLite2-City.mmdb").display().to_string(),
            a.path()
                .join("dbip-country-lite-2024-05.mmdb")
                .display()
                .to_string(),
            a.path().join("GeoLite2-ASN.mmdb").display().to_string(),
        ]
    );
    assert!(d.missing().is_empty());
    let (places, errors) = d.load(&[]);
    assert_eq!(errors.len(), 1);
    let msg = errors[0].to_string();
    assert!(
        msg.contains("GeoLite2-City.mmdb") && msg.contains("not a valid MaxMind DB"),
        "{msg}"
    );
    assert_eq!(places.sources().count(), 2);
    let p = places.place(ip("203.0.113.1")).unwrap();
    assert_eq!(p.country_str(), Some("NL"));

    let empty = discover(&[b.0.join("nothing-here")]);
    assert!(empty.found.is_empty());
    assert_eq!(empty.missing(), vec!["country", "ASN and organisation", "city"]);
}

#[test]
fn every_truncation_is_refused_or_harmless() {
    let full = city_db("GeoLite2-City");
    let probes = ["203.0.113.1", "192.0.2.200", "2001:db8:1::1", "10.0.0.1"].map(ip);
    for len in 0..full.len() {
        if let Ok(db) = MmdbDb::from_bytes(full[..len].to_vec()) {
            for p in probes {
                let _ = db.place(p);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Random byte changes in a valid database: loading fails with a message or lookups give
    /// some answer; nothing panics.
    #[test]
    fn corrupted_databases_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        which in 0usize..3,
    ) {
        let mut db = match which {
            0 => asn_db(),
            1 => city_db("GeoLite2-City"),
            _ => iplocation_country_db(),
        };
        for (at, byte) in edits {
            let i = at.index(db.len());
            db[i] = byte;
        }
        if let Ok(m) = MmdbDb::from_bytes(db) {
            for p in ["192.0.2.1", "198.51.100.1", "203.0.113.1", "2001:db8::1", "2001:db8:1::1", "::1"] {
                let _ = m.place(ip(p));
            }
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), tail in any::<bool>()) {
        let mut b = bytes;
        if tail {
            // Give it a marker so the metadata decoder runs on junk.
            let cut = b.len() / 2;
            b.splice(cut..cut, b"\xAB\xCD\xEFMaxMind.com".iter().copied());
        }
        if let Ok(m) = MmdbDb::from_bytes(b) {
            let _ = m.place(ip("192.0.2.1"));
        }
    }
}

#[test]
fn discovery_skips_superseded_layouts() {
    let a = TempDir::new("disc-sup");
    let csv = "192.0.2.0,192.0.2.255,64500,One\n";
    let num = "3221225984,3221226239,64501,Num\n";
    std::fs::write(a.path().join("asn-ipv4.csv"), csv).unwrap();
    std::fs::write(a.path().join("asn-ipv4-num.csv"), num).unwrap();
    std::fs::write(
        a.path().join("asn-ipv6-num.csv"),
        "42540766411282592856903984951653826560,42540766490510755371168322545197776895,64502,Six\n",
    )
    .unwrap();
    std::fs::write(
        a.path().join("geo-whois-asn-country-ipv4.mmdb"),
        iplocation_country_db(),
    )
    .unwrap();
    std::fs::write(
        a.path().join("geo-whois-asn-country-ipv6.mmdb"),
        iplocation_country_db(),
    )
    .unwrap();
    let d = discover(std::slice::from_ref(&a.0));
    let names: Vec<&str> = d.found.iter().map(|f| f.known.pattern).collect();
    assert_eq!(
        names,
        vec![
            "geo-whois-asn-country-ipv4.mmdb",
            "geo-whois-asn-country-ipv6.mmdb",
            "asn-ipv4.csv",
            "asn-ipv6-num.csv"
        ]
    );
    let (places, errors) = d.load(&[]);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(places.place(ip("192.0.2.1")).unwrap().asn, Some(64500));
    // The -ipv6-num file is read as IPv6 numbers (2001:db8::/32).
    assert_eq!(places.place(ip("2001:db8::1")).unwrap().asn, Some(64502));

    std::fs::write(
        a.path().join("geo-whois-asn-country.mmdb"),
        iplocation_country_db(),
    )
    .unwrap();
    let d = discover(std::slice::from_ref(&a.0));
    assert_eq!(
        d.found
            .iter()
            .filter(|f| f.known.pattern.starts_with("geo-whois"))
            .count(),
        1
    );
}
