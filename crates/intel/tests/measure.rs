//! Measurements, not run by default: `cargo test -p intel --release --test measure -- --ignored
//! --nocapture`. Loads a generated 500,000-range ASN CSV (IPv4 and IPv6) and times lookups.
//! `NETVIGIL_TRACKER_LIST=path` also times reading an Adblock-style list.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use engine::enrich::{DomainLabels, GeoLookup};
use intel::{DomainTable, Places, RangeDb, Source, TextFormat};

#[test]
#[ignore]
fn measure_500k_range_csv() {
    let mut text = String::with_capacity(30 << 20);
    for i in 0..400_000u32 {
        let start = 0x0100_0000 + i * 1024;
        let a = Ipv4Addr::from(start);
        let b = Ipv4Addr::from(start + 1023);
        text.push_str(&format!(
            "{a},{b},{},AS Org Number {}\n",
            64_000 + i % 30_000,
            i % 30_000
        ));
    }
    for i in 0..100_000u128 {
        let start = (0x2001_0db8u128 << 96) + (i << 80);
        let a = Ipv6Addr::from(start);
        let b = Ipv6Addr::from(start + (1 << 80) - 1);
        text.push_str(&format!("{a},{b},{},V6 Org {}\n", 65_000 + i % 500, i % 500));
    }
    let t = Instant::now();
    let db = RangeDb::parse(&text, TextFormat::IpLocationCsv, false).unwrap();
    let load = t.elapsed();
    assert_eq!(db.stats().ranges, 500_000);
    let mut places = Places::new();
    places.push("gen.csv", Source::Ranges(db));
    let n = 2_000_000u32;
    let t = Instant::now();
    let mut found = 0u32;
    for i in 0..n {
        let ip = IpAddr::V4(Ipv4Addr::from(
            0x0100_0000u32.wrapping_add(i.wrapping_mul(2_654_435_761) % (400_000 * 1024)),
        ));
        found += u32::from(black_box(places.place(black_box(ip))).is_some());
    }
    let per = t.elapsed().as_nanos() as f64 / f64::from(n);
    assert_eq!(found, n);
    eprintln!(
        "500k ranges ({} MB text): parse+sort {load:?}; Places::place (v4, with org String) {per:.0} ns",
        text.len() >> 20
    );
    let t = Instant::now();
    let db = RangeDb::parse(&text, TextFormat::IpLocationCsv, false).unwrap();
    let t0 = t.elapsed();
    let t = Instant::now();
    for i in 0..n {
        let ip = IpAddr::V4(Ipv4Addr::from(
            0x0100_0000u32.wrapping_add(i.wrapping_mul(2_654_435_761) % (400_000 * 1024)),
        ));
        black_box(db.get(black_box(ip)));
    }
    eprintln!(
        "RangeDb::get (v4, no allocation) {:.0} ns (parse again {t0:?})",
        t.elapsed().as_nanos() as f64 / f64::from(n)
    );

    let labels = DomainTable::shipped();
    let names = [
        "www.google.com",
        "a.b.c.notgithub.com",
        "stats.g.doubleclick.net",
        "x.y.z.example.org",
    ];
    let t = Instant::now();
    for i in 0..n {
        black_box(labels.label(black_box(names[(i % 4) as usize])));
    }
    eprintln!(
        "DomainTable::label {:.0} ns",
        t.elapsed().as_nanos() as f64 / f64::from(n)
    );
    if let Some(p) = std::env::var_os("NETVIGIL_TRACKER_LIST") {
        let mut t2 = DomainTable::shipped();
        let t = Instant::now();
        let s = t2.load_tracker_list(std::path::Path::new(&p)).unwrap();
        eprintln!("tracker list: {s:?} in {:?}", t.elapsed());
        assert!(t2.label("www.google-analytics.com").unwrap().tracker);
    }
}

/// Real files, when `NETVIGIL_GEO_DIR` names a directory holding them (for example the
/// unpacked `@ip-location-db/asn` and `@ip-location-db/geo-whois-asn-country-mmdb` packages):
/// discovery, load time, a few lookups and the lookup cost.
#[test]
#[ignore]
fn measure_real_files() {
    let Some(dir) = std::env::var_os("NETVIGIL_GEO_DIR") else {
        eprintln!("NETVIGIL_GEO_DIR not set; skipped");
        return;
    };
    let d = intel::discover(&[dir.into()]);
    for f in &d.found {
        eprintln!("found {} ({})", f.path.display(), f.known.origin);
    }
    let t = Instant::now();
    let (places, errors) = d.load(&[]);
    eprintln!(
        "loaded {} files in {:?}; errors {errors:?}",
        places.sources().count(),
        t.elapsed()
    );
    for ip in [
        "1.1.1.1",
        "8.8.8.8",
        "140.82.112.3",
        "2606:4700:4700::1111",
        "192.0.2.1",
    ] {
        eprintln!("{ip}: {:?}", places.place(ip.parse().unwrap()));
    }
    let n = 1_000_000u32;
    let t = Instant::now();
    for i in 0..n {
        let ip = IpAddr::V4(Ipv4Addr::from(i.wrapping_mul(2_654_435_761)));
        black_box(places.place(black_box(ip)));
    }
    eprintln!(
        "Places::place over all sources: {:.0} ns",
        t.elapsed().as_nanos() as f64 / f64::from(n)
    );
}
