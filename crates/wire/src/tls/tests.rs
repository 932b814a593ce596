use super::testdata::*;
use super::*;
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Fixture builders
// ---------------------------------------------------------------------------------------------

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2));
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn u16s(v: &[u16]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_be_bytes()).collect()
}

fn with_len8(b: &[u8]) -> Vec<u8> {
    let mut v = vec![u8::try_from(b.len()).unwrap()];
    v.extend_from_slice(b);
    v
}

fn with_len16(b: &[u8]) -> Vec<u8> {
    let mut v = u16::try_from(b.len()).unwrap().to_be_bytes().to_vec();
    v.extend_from_slice(b);
    v
}

fn with_len24(b: &[u8]) -> Vec<u8> {
    let n = u32::try_from(b.len()).unwrap();
    let mut v = n.to_be_bytes()[1..].to_vec();
    v.extend_from_slice(b);
    v
}

fn ext(ty: u16, data: &[u8]) -> (u16, Vec<u8>) {
    (ty, data.to_vec())
}

fn ext_sni(host: &[u8]) -> (u16, Vec<u8>) {
    let mut entry = vec![0u8];
    entry.extend(with_len16(host));
    ext(EXT_SERVER_NAME, &with_len16(&entry))
}

fn ext_alpn(names: &[&[u8]]) -> (u16, Vec<u8>) {
    let list: Vec<u8> = names.iter().flat_map(|n| with_len8(n)).collect();
    ext(EXT_ALPN, &with_len16(&list))
}

fn ext_u16_list16(ty: u16, v: &[u16]) -> (u16, Vec<u8>) {
    ext(ty, &with_len16(&u16s(v)))
}

fn ext_versions(v: &[u16]) -> (u16, Vec<u8>) {
    ext(EXT_SUPPORTED_VERSIONS, &with_len8(&u16s(v)))
}

fn extensions_block(exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut b = Vec::new();
    for (ty, data) in exts {
        b.extend(ty.to_be_bytes());
        b.extend(with_len16(data));
    }
    with_len16(&b)
}

fn client_hello_body(version: u16, suites: &[u16], exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut b = version.to_be_bytes().to_vec();
    b.extend([0x11; 32]);
    b.extend(with_len8(&[0x22; 32]));
    b.extend(with_len16(&u16s(suites)));
    b.extend(with_len8(&[0]));
    b.extend(extensions_block(exts));
    b
}

fn server_hello_body(random: [u8; 32], suite: u16, exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut b = 0x0303u16.to_be_bytes().to_vec();
    b.extend(random);
    b.extend(with_len8(&[0x33; 32]));
    b.extend(suite.to_be_bytes());
    b.push(0);
    b.extend(extensions_block(exts));
    b
}

fn handshake(ty: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![ty];
    m.extend(with_len24(body));
    m
}

fn record(content_type: u8, payload: &[u8]) -> Vec<u8> {
    let mut r = vec![content_type, 0x03, 0x01];
    r.extend(with_len16(payload));
    r
}

/// The spec's example client (FoxIO JA4.md "Example" and "Raw Output"), rebuilt with GREASE
/// added in the usual Chrome places: ciphers, extensions and signature algorithms in the
/// spec's original order (its JA4_ro).
fn spec_example_hello() -> Vec<u8> {
    let suites = [
        0x3a3a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014,
        0x009c, 0x009d, 0x002f, 0x0035,
    ];
    let exts = vec![
        ext(0x2a2a, &[]),
        ext(0x001b, &[0x02, 0x00, 0x02]),
        ext_sni(b"www.example.com"),
        ext(0x0033, &with_len16(&[])),
        ext_alpn(&[b"h2", b"http/1.1"]),
        ext(0x4469, &[0x00, 0x03, 0x02, b'h', b'2']),
        ext(0x0017, &[]),
        ext(0x002d, &[0x01, 0x01]),
        ext_u16_list16(
            0x000d,
            &[0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601],
        ),
        ext(0x0005, &[0x01, 0x00, 0x00, 0x00, 0x00]),
        ext(0x0023, &[]),
        ext(0x0012, &[]),
        ext_versions(&[0x7a7a, 0x0304, 0x0303]),
        ext(0xff01, &[0x00]),
        ext(0x000b, &[0x01, 0x00]),
        ext_u16_list16(0x000a, &[0x4a4a, 0x001d, 0x0017, 0x0018]),
        ext(0x0015, &[0x00; 8]),
        ext(0x1a1a, &[0x00]),
    ];
    client_hello_body(0x0303, &suites, &exts)
}

/// Strips the record header and handshake header of a one-record ClientHello payload.
fn hello_body_of_record(rec: &[u8]) -> &[u8] {
    assert_eq!(rec[0], 22);
    assert_eq!(rec[5], HANDSHAKE_CLIENT_HELLO);
    let len = usize::from(u16::from_be_bytes([rec[3], rec[4]]));
    assert_eq!(rec.len(), 5 + len, "one whole record");
    &rec[9..]
}

// ---------------------------------------------------------------------------------------------
// Code points
// ---------------------------------------------------------------------------------------------

#[test]
fn tls_grease_values() {
    let all: Vec<u16> = (0..=u16::MAX).filter(|v| is_grease(*v)).collect();
    assert_eq!(all.len(), 16);
    assert_eq!(all[0], 0x0a0a);
    assert_eq!(all[15], 0xfafa);
    assert!(!is_grease(0x0a1a));
    assert!(!is_grease(0x1301));
    assert!(is_ech_extension(0xfe0d) && is_ech_extension(0xff02) && is_ech_extension(0xfe0a));
    assert!(!is_ech_extension(0xfe0e));
}

#[test]
fn tls_looks_like_tls() {
    assert!(looks_like_tls(&[0x16, 0x03, 0x01, 0x02, 0x00]));
    assert!(looks_like_tls(&[0x16, 0x03, 0x04]));
    assert!(!looks_like_tls(&[0x16, 0x03, 0x05]));
    assert!(!looks_like_tls(&[0x17, 0x03, 0x03]));
    assert!(!looks_like_tls(&[0x16, 0x03]));
    assert!(!looks_like_tls(b"GET / HTTP/1.1\r\n"));
    assert!(looks_like_tls(&unhex(CHROME_CH_1)));
}

// ---------------------------------------------------------------------------------------------
// ClientHello
// ---------------------------------------------------------------------------------------------

#[test]
fn tls_client_hello_fields_grease_ech_alpn() {
    let exts = vec![
        ext(0x0a0a, &[]),
        ext_sni(b"Example.COM"),
        ext_alpn(&[b"h3", b"h2", b"http/1.1"]),
        ext_versions(&[0x1a1a, 0x0304, 0x0303]),
        ext_u16_list16(EXT_SUPPORTED_GROUPS, &[0x2a2a, 0x11ec, 0x001d]),
        ext(EXT_EC_POINT_FORMATS, &[0x01, 0x00]),
        ext_u16_list16(EXT_SIGNATURE_ALGORITHMS, &[0x0403, 0x0804]),
        ext(EXT_ENCRYPTED_CLIENT_HELLO, &[0x00, 0x01, 0x02]),
        ext(EXT_QUIC_TRANSPORT_PARAMETERS, &[0x01, 0x02, 0x40, 0x64]),
        ext(0xfafa, &[0x00]),
    ];
    let body = client_hello_body(0x0303, &[0x5a5a, 0x1301, 0x1302], &exts);
    let ch = ClientHello::parse(&body).unwrap();
    assert_eq!(ch.legacy_version, 0x0303);
    assert_eq!(ch.random, [0x11; 32]);
    assert_eq!(ch.session_id, vec![0x22; 32]);
    assert_eq!(ch.cipher_suites, vec![0x5a5a, 0x1301, 0x1302]);
    assert_eq!(ch.compression_methods, vec![0]);
    let types: Vec<u16> = ch.extensions.iter().map(|(t, _)| *t).collect();
    assert_eq!(types, vec![0x0a0a, 0, 16, 43, 10, 11, 13, 0xfe0d, 0x39, 0xfafa]);
    assert_eq!(ch.sni.as_deref(), Some("Example.COM"));
    assert_eq!(ch.alpn, vec!["h3", "h2", "http/1.1"]);
    assert_eq!(ch.supported_versions, vec![0x1a1a, 0x0304, 0x0303]);
    assert_eq!(ch.supported_groups, vec![0x2a2a, 0x11ec, 0x001d]);
    assert_eq!(ch.ec_point_formats, vec![0]);
    assert_eq!(ch.signature_algorithms, vec![0x0403, 0x0804]);
    assert!(ch.ech);
    assert!(ch.quic_transport_parameters);
    assert_eq!(ch.ja4_version(), 0x0304);

    // Draft ECH and the draft QUIC code point.
    let body = client_hello_body(0x0303, &[0x1301], &[ext(0xfe0a, &[]), ext(0xffa5, &[])]);
    let ch = ClientHello::parse(&body).unwrap();
    assert!(ch.ech && ch.quic_transport_parameters);
    assert_eq!(ch.sni, None);
    assert!(ch.alpn.is_empty());

    // A duplicated extension: the first decides, both stay in the raw list.
    let body = client_hello_body(
        0x0303,
        &[0x1301],
        &[ext_sni(b"first.example"), ext_sni(b"second.example")],
    );
    let ch = ClientHello::parse(&body).unwrap();
    assert_eq!(ch.sni.as_deref(), Some("first.example"));
    assert_eq!(ch.extensions.len(), 2);

    // Many extensions (the most a 64 KiB message can hold) parse in linear time.
    let many: Vec<(u16, Vec<u8>)> = (0..16_000u16).map(|t| ext(t.wrapping_mul(7), &[])).collect();
    let ch = ClientHello::parse(&client_hello_body(0x0303, &[0x1301], &many)).unwrap();
    assert_eq!(ch.extensions.len(), 16_000);
    assert!(ch.ja4(Transport::Tcp).starts_with("t12d0199"));
}

#[test]
fn tls_client_hello_without_extensions() {
    // An SSL 3.0 / TLS 1.0 era hello ends after compression_methods.
    let mut body = 0x0300u16.to_be_bytes().to_vec();
    body.extend([0; 32]);
    body.extend([0, 0x00, 0x04, 0x00, 0x0a, 0x00, 0x2f, 0x01, 0x00]);
    let ch = ClientHello::parse(&body).unwrap();
    assert!(ch.extensions.is_empty());
    assert_eq!(ch.cipher_suites, vec![0x000a, 0x002f]);
    assert_eq!(ch.ja3_string(), "768,10-47,,,");
    // Version "s3", no SNI, 2 ciphers, 0 extensions, no ALPN;
    // b = sha256("000a,002f")[:12] = "b2ad0625f3cb"; no extensions: c = "000000000000".
    assert_eq!(ch.ja4(Transport::Tcp), "ts3i020000_b2ad0625f3cb_000000000000");
    assert_eq!(ch.ja4_raw(Transport::Tcp), "ts3i020000_000a,002f_");
}

#[test]
fn tls_client_hello_is_strict_about_lengths() {
    let good = client_hello_body(0x0303, &[0x1301], &[ext_sni(b"a.example"), ext_alpn(&[b"h2"])]);
    assert!(ClientHello::parse(&good).is_ok());
    // Trailing byte after the extensions.
    let mut b = good.clone();
    b.push(0);
    assert!(matches!(
        ClientHello::parse(&b),
        Err(Error::Malformed {
            layer: Layer::Tls,
            ..
        })
    ));
    // Every truncation fails (none is a valid shorter hello, since the extensions block is
    // length-prefixed), except cutting exactly before the extensions block.
    let ext_start = 2 + 32 + 33 + 4 + 2;
    for n in 0..good.len() {
        assert_eq!(
            ClientHello::parse(&good[..n]).is_ok(),
            n == ext_start,
            "truncated to {n}"
        );
    }
    // Odd cipher_suites length.
    let mut b = 0x0303u16.to_be_bytes().to_vec();
    b.extend([0; 32]);
    b.extend([0, 0x00, 0x03, 0x13, 0x01, 0x13, 0x01, 0x00]);
    assert!(ClientHello::parse(&b).is_err());
    // A session_id longer than 32 bytes.
    let mut b = 0x0303u16.to_be_bytes().to_vec();
    b.extend([0; 32]);
    b.extend(with_len8(&[0; 33]));
    b.extend([0x00, 0x02, 0x13, 0x01, 0x01, 0x00]);
    assert!(ClientHello::parse(&b).is_err());
    // Inner lengths of decoded extensions are checked.
    for bad in [
        ext(EXT_SERVER_NAME, &[0x00, 0x05, 0x00, 0x00, 0x09, b'a']),
        ext(EXT_ALPN, &[0x00, 0x03, 0x02, b'h', b'2', 0x00]),
        ext(EXT_ALPN, &[0x00, 0x03, 0x05, b'h', b'2']),
        ext(EXT_SUPPORTED_VERSIONS, &[0x03, 0x03, 0x04, 0x03]),
        ext(EXT_SUPPORTED_GROUPS, &[0x00, 0x04, 0x00, 0x1d]),
        ext(EXT_SIGNATURE_ALGORITHMS, &[0x00, 0x02, 0x04, 0x03, 0x00]),
        ext(EXT_EC_POINT_FORMATS, &[0x02, 0x00]),
    ] {
        let b = client_hello_body(0x0303, &[0x1301], std::slice::from_ref(&bad));
        assert!(ClientHello::parse(&b).is_err(), "{bad:?}");
    }
    // An extension whose length runs past the block.
    let mut b = client_hello_body(0x0303, &[0x1301], &[ext(0x0017, &[])]);
    let n = b.len();
    b[n - 1] = 1;
    assert!(ClientHello::parse(&b).is_err());
}

#[test]
fn tls_sni_escapes_unprintable_and_invalid_utf8() {
    let ch = |host: &[u8]| {
        let b = client_hello_body(0x0303, &[0x1301], &[ext_sni(host)]);
        ClientHello::parse(&b).unwrap().sni.unwrap()
    };
    assert_eq!(ch(b"plain.example"), "plain.example");
    assert_eq!(ch(b"a\x00b\n"), "a\\x00b\\x0a");
    assert_eq!(ch(b"x\xff\xfey"), "x\\xff\\xfey");
    assert_eq!(ch(b"back\\slash"), "back\\x5cslash");
    assert_eq!(ch("bücher.example".as_bytes()), "bücher.example");
    assert_eq!(ch(b""), "");
    // A name list whose first entry is not host_name: the host_name entry is used.
    let mut list = vec![7u8];
    list.extend(with_len16(b"zz"));
    list.push(0);
    list.extend(with_len16(b"h.example"));
    let b = client_hello_body(0x0303, &[0x1301], &[ext(0, &with_len16(&list))]);
    assert_eq!(ClientHello::parse(&b).unwrap().sni.as_deref(), Some("h.example"));
}

#[test]
fn tls_dtls_client_hello_has_a_cookie() {
    let mut body = 0xfefdu16.to_be_bytes().to_vec();
    body.extend([0x44; 32]);
    body.extend(with_len8(&[]));
    body.extend(with_len8(&[0xc0; 20])); // cookie
    body.extend(with_len16(&u16s(&[0xc02b, 0x00ff])));
    body.extend(with_len8(&[0]));
    body.extend(extensions_block(&[ext_versions(&[0xfefc, 0xfefd])]));
    let ch = ClientHello::parse(&body).unwrap();
    assert_eq!(ch.cipher_suites, vec![0xc02b, 0x00ff]);
    // Newest DTLS version offered is DTLS 1.3 (0xfefc, the smaller number).
    assert_eq!(ch.ja4_version(), 0xfefc);
    assert!(ch.ja4(Transport::Dtls).starts_with("dd3i0201"));
    let mut body12 = body.clone();
    body12.truncate(body.len() - extensions_block(&[ext_versions(&[0xfefc, 0xfefd])]).len());
    assert!(
        ClientHello::parse(&body12)
            .unwrap()
            .ja4(Transport::Dtls)
            .starts_with("dd2i0200")
    );
}

// ---------------------------------------------------------------------------------------------
// JA3 / JA4
// ---------------------------------------------------------------------------------------------

#[test]
fn tls_ja4_spec_example() {
    // FoxIO JA4.md: JA4 = t13d1516h2_8daaf6152771_e5627efa2ab1, and its JA4_r.
    let ch = ClientHello::parse(&spec_example_hello()).unwrap();
    assert_eq!(ch.ja4(Transport::Tcp), "t13d1516h2_8daaf6152771_e5627efa2ab1");
    assert_eq!(
        ch.ja4_raw(Transport::Tcp),
        "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_\
         0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_\
         0403,0804,0401,0503,0805,0501,0806,0601"
    );
    assert_eq!(ch.ja4(Transport::Quic), "q13d1516h2_8daaf6152771_e5627efa2ab1");
    // The spec: the same extensions without signature algorithms hash to 6d807ffa2a79.
    let mut no_sigs = ch.clone();
    no_sigs.extensions.retain(|(t, _)| *t != EXT_SIGNATURE_ALGORITHMS);
    no_sigs.extensions.push((EXT_SIGNATURE_ALGORITHMS, Vec::new()));
    no_sigs.signature_algorithms.clear();
    assert_eq!(
        no_sigs.ja4(Transport::Tcp),
        "t13d1516h2_8daaf6152771_6d807ffa2a79"
    );
}

#[test]
fn tls_ja4_and_ja3_hand_computed() {
    // No SNI, TLS 1.2 legacy version and no supported_versions, GREASE everywhere, an ALPN
    // whose first value ends in a non-alphanumeric byte, no signature algorithms.
    let exts = vec![
        ext(0x1a1a, &[]),
        ext_alpn(&[b"h2\xff", b"http/1.1"]),
        ext(EXT_EC_POINT_FORMATS, &[0x01, 0x00]),
        ext_u16_list16(EXT_SUPPORTED_GROUPS, &[0x2a2a, 0x001d, 0x0017]),
        ext(0x0023, &[]),
    ];
    let ch = ClientHello::parse(&client_hello_body(
        0x0303,
        &[0x0a0a, 0xc02f, 0x009c, 0x00ff],
        &exts,
    ))
    .unwrap();
    // Worked by hand (Python):
    //   a: 't' + '12' (0x0303) + 'i' (no SNI) + '03' (c02f,009c,00ff) + '04' (0010,000b,000a,0023)
    //      + ALPN b"h2\xff": last byte not alphanumeric -> hex "6832ff" -> first/last '6','f'
    //   b: sha256("009c,00ff,c02f").hexdigest()[:12]  == "56d1ad0ca1e0"
    //   c: sha256("000a,000b,0023").hexdigest()[:12]  == "a875e5012fde"  (no '_': no sigalgs)
    //   ja3: "771,49199-156-255,16-11-10-35,29-23,0"; md5 == "c377b3263ebb89b876cc64451b44f1d5"
    assert_eq!(ch.ja4(Transport::Tcp), "t12i03046f_56d1ad0ca1e0_a875e5012fde");
    assert_eq!(
        ch.ja4_raw(Transport::Tcp),
        "t12i03046f_009c,00ff,c02f_000a,000b,0023"
    );
    assert_eq!(ch.ja3_string(), "771,49199-156-255,16-11-10-35,29-23,0");
    assert_eq!(ch.ja3(), "c377b3263ebb89b876cc64451b44f1d5");
}

#[test]
fn tls_ja4_alpn_rules() {
    let a = |names: &[&[u8]]| {
        let b = client_hello_body(0x0303, &[0x1301], &[ext_alpn(names)]);
        let ja4 = ClientHello::parse(&b).unwrap().ja4(Transport::Tcp);
        ja4[8..10].to_owned()
    };
    assert_eq!(a(&[b"h2"]), "h2");
    assert_eq!(a(&[b"http/1.1", b"h2"]), "h1");
    assert_eq!(a(&[b"x"]), "xx", "single character is both first and last");
    assert_eq!(a(&[b""]), "00", "empty first value");
    assert_eq!(a(&[]), "00", "empty list");
    // The spec's hex examples.
    assert_eq!(a(&[&[0xab]]), "ab");
    assert_eq!(a(&[&[0xab, 0xcd]]), "ad");
    assert_eq!(a(&[&[0x30, 0xab]]), "3b");
    assert_eq!(a(&[&[0x30, 0x31, 0xab, 0xcd]]), "3d");
    assert_eq!(a(&[&[0x30, 0xab, 0xcd, 0x31]]), "01");
    // No ALPN extension at all.
    let b = client_hello_body(0x0303, &[0x1301], &[]);
    assert_eq!(&ClientHello::parse(&b).unwrap().ja4(Transport::Tcp)[8..10], "00");
}

#[test]
fn tls_ja4_counts_cap_at_99_and_empty_parts() {
    let suites: Vec<u16> = (1..=120).collect();
    let exts: Vec<(u16, Vec<u8>)> = (0x0100..0x0100 + 105).map(|t| ext(t, &[])).collect();
    let ch = ClientHello::parse(&client_hello_body(0x0303, &suites, &exts)).unwrap();
    assert!(ch.ja4(Transport::Tcp).starts_with("t12i999900_"));
    // Only GREASE suites and only SNI/ALPN extensions: both hashes are zeros.
    let ch = ClientHello::parse(&client_hello_body(
        0x0301,
        &[0x0a0a],
        &[ext_sni(b"a.example"), ext_alpn(&[b"h2"])],
    ))
    .unwrap();
    assert_eq!(ch.ja4(Transport::Tcp), "t10d0002h2_000000000000_000000000000");
    assert_eq!(ch.ja4_raw(Transport::Tcp), "t10d0002h2__");
    // The SNI character follows the presence of the extension, even for an IP-literal name
    // (nDPI's own JA4 writes 'i' there; the spec and FoxIO's tools write 'd').
    let ch = ClientHello::parse(&client_hello_body(0x0303, &[0x1301], &[ext_sni(b"192.0.2.7")])).unwrap();
    assert!(ch.ja4(Transport::Tcp).starts_with("t12d0101"));
    // Unknown version.
    let ch = ClientHello::parse(&client_hello_body(0x0305, &[0x1301], &[])).unwrap();
    assert!(ch.ja4(Transport::Tcp).starts_with("t00i0100"));
    // supported_versions holding only GREASE falls back to legacy_version.
    let ch = ClientHello::parse(&client_hello_body(0x0303, &[0x1301], &[ext_versions(&[0x3a3a])])).unwrap();
    assert!(ch.ja4(Transport::Tcp).starts_with("t12i0101"));
}

/// Real ClientHellos from the shared captures. Expected JA4 values are from nDPI's own regression
/// output for those captures (`*.ndpi-expected.out`), JA3 strings and hashes from tshark 4.0
/// (`tls.handshake.ja3_full`, `tls.handshake.ja3`), SNI/ALPN from tshark.
#[test]
fn tls_real_client_hellos_match_ndpi_and_tshark() {
    struct Case {
        hex: &'static str,
        sni: &'static str,
        alpn: &'static [&'static str],
        ja4: &'static str,
        ja3: &'static str,
        ja3_full: &'static str,
        ech: bool,
    }
    let cases = [
        Case {
            hex: CHROME_CH_1,
            sni: "www.iit.cnr.it",
            alpn: &["h2", "http/1.1"],
            ja4: "t13d1516h2_8daaf6152771_e5627efa2ab1",
            ja3: "aa50c12a5dfa717d9d6ab34e97de79d5",
            ja3_full: "771,4867-4865-4866-52393-52392-49195-49199-49196-49200-49171-49172-156-157-47-53,\
                       0-23-65281-10-11-35-16-5-13-18-51-45-43-27-17513-21,29-23-24,0",
            ech: false,
        },
        Case {
            hex: CHROME_CH_2,
            sni: "www.iit.cnr.it",
            alpn: &["h2", "http/1.1"],
            ja4: "t13d1516h2_8daaf6152771_9b887d9acb53",
            ja3: "1b73862eae8f1711440a446b1ef357fd",
            ja3_full: "771,4867-4865-4866-52393-52392-49195-49199-49196-49200-49171-49172-156-157-47-53,\
                       0-23-65281-10-11-35-16-5-13-18-51-45-43-27-17513-41,29-23-24,0",
            ech: false,
        },
        Case {
            hex: CURL_CH,
            sni: "www.ntop.org",
            alpn: &["h2", "http/1.1"],
            ja4: "t12d6707h2_2955a3196ffa_c83f907a73d3",
            ja3: "2a26b1a62e40d25d4de3babc9d532f30",
            ja3_full: "771,52244-52243-52245-49200-49196-49192-49188-49172-49162-163-159-107-106-57-56-\
                       65413-196-195-136-135-129-49202-49198-49194-49190-49167-49157-157-61-53-192-132-\
                       49199-49195-49191-49187-49171-49161-162-158-103-64-51-50-190-189-69-68-49201-\
                       49197-49193-49189-49166-49156-156-60-47-186-65-49170-49160-22-19-49165-49155-10-\
                       255,0-11-10-13-13172-16-21,14-13-25-28-11-12-27-24-9-10-26-22-23-8-6-7-20-21-4-5-\
                       18-19-1-2-3-15-16-17,0-1-2",
            ech: false,
        },
        Case {
            hex: SAFARI_CH,
            sni: "www.ntop.org",
            alpn: &["h2", "h2-16", "h2-15", "h2-14", "spdy/3.1", "spdy/3", "http/1.1"],
            ja4: "t12d2010h2_2a284e3b0c56_f05fdf8c38a9",
            ja3: "a69708a64f853c3bcc214c2c5faf84f3",
            ja3_full: "771,49196-49195-49188-49187-49162-49161-52393-49200-49199-49192-49191-49172-49171-\
                       52392-157-156-61-60-53-47,65281-0-23-13-5-13172-18-16-11-10,29-23-24-25,0",
            ech: false,
        },
        Case {
            hex: ECH_CH,
            sni: "performance.radar.cloudflare.com",
            alpn: &["h2", "http/1.1"],
            ja4: "t13d1516h2_8daaf6152771_02713d6af862",
            ja3: "6820f114cf3b0809ffdcb30cb277848a",
            ja3_full: "771,4865-4866-4867-49195-49199-49196-49200-52393-52392-49171-49172-156-157-47-53,\
                       51-35-65281-45-27-10-23-5-18-43-13-16-0-65037-11-17513,29-23-24,0",
            ech: true,
        },
    ];
    for c in cases {
        let rec = unhex(c.hex);
        let ch = ClientHello::parse(hello_body_of_record(&rec)).unwrap();
        assert_eq!(ch.sni.as_deref(), Some(c.sni));
        assert_eq!(ch.alpn, c.alpn);
        assert_eq!(ch.ech, c.ech, "{}", c.sni);
        assert!(!ch.quic_transport_parameters);
        assert_eq!(ch.ja3_string(), c.ja3_full, "{}", c.sni);
        assert_eq!(ch.ja3(), c.ja3, "{}", c.sni);
        assert_eq!(
            ch.ja4(Transport::Tcp),
            c.ja4,
            "{}: raw {}",
            c.sni,
            ch.ja4_raw(Transport::Tcp)
        );

        // And through the record scanner, in one push and in 7-byte pushes.
        let mut scan = HandshakeScan::new();
        assert_eq!(scan.push(&rec).unwrap(), vec![Handshake::ClientHello(ch.clone())]);
        let mut scan = HandshakeScan::new();
        let got: Vec<Handshake> = rec.chunks(7).flat_map(|c| scan.push(c).unwrap()).collect();
        assert_eq!(got, vec![Handshake::ClientHello(ch)]);
        assert!(!scan.finished());
    }
}

#[test]
fn tls_real_chrome_ja4_raw_is_the_spec_example() {
    // The spec's example fingerprint is this very Chrome version: its JA4_r must match too.
    let rec = unhex(CHROME_CH_1);
    let ch = ClientHello::parse(hello_body_of_record(&rec)).unwrap();
    assert_eq!(
        ch.ja4_raw(Transport::Tcp),
        "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_\
         0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_\
         0403,0804,0401,0503,0805,0501,0806,0601"
    );
    assert_eq!(ch.supported_versions.first().copied().map(is_grease), Some(true));
}

// ---------------------------------------------------------------------------------------------
// ServerHello
// ---------------------------------------------------------------------------------------------

#[test]
fn tls_server_hello_tls13_and_hrr() {
    let exts = [
        ext(EXT_SUPPORTED_VERSIONS, &[0x03, 0x04]),
        ext(0x0033, &[0x00, 0x1d, 0x00, 0x00]),
    ];
    let sh = ServerHello::parse(&server_hello_body([0x55; 32], 0x1301, &exts)).unwrap();
    assert_eq!(sh.legacy_version, 0x0303);
    assert_eq!(sh.cipher_suite, 0x1301);
    assert_eq!(sh.selected_version, Some(0x0304));
    assert_eq!(sh.version(), 0x0304);
    assert_eq!(sh.alpn, None);
    assert!(!sh.hello_retry_request);
    assert_eq!(sh.extensions.len(), 2);

    let sh = ServerHello::parse(&server_hello_body(HELLO_RETRY_REQUEST_RANDOM, 0x1302, &exts)).unwrap();
    assert!(sh.hello_retry_request);

    // TLS 1.2 with ALPN, no supported_versions.
    let sh = ServerHello::parse(&server_hello_body([1; 32], 0xc02f, &[ext_alpn(&[b"h2"])])).unwrap();
    assert_eq!(sh.alpn.as_deref(), Some("h2"));
    assert_eq!(sh.version(), 0x0303);
    // Two ALPN names, or a supported_versions that is not one version: malformed.
    assert!(ServerHello::parse(&server_hello_body([1; 32], 0xc02f, &[ext_alpn(&[b"h2", b"h3"])])).is_err());
    assert!(ServerHello::parse(&server_hello_body([1; 32], 0x1301, &[ext_versions(&[0x0304])])).is_err());
    // Trailing bytes.
    let mut b = server_hello_body([1; 32], 0xc02f, &[]);
    b.push(0);
    assert!(ServerHello::parse(&b).is_err());
}

/// A real TLS 1.2 server flight (ndpi__selfsigned.pcap frame 7): ServerHello, Certificate,
/// ServerKeyExchange, ServerHelloDone in one record. Expected values from tshark (cipher 0xc030,
/// extensions 65281 and 11) and `openssl x509 -noout -subject -issuer -dates` on the extracted
/// certificate (RFC 2253 order `O=ntop.org,ST=Some-State,C=IT`, i.e. DER order reversed; no
/// extensions).
#[test]
fn tls_real_server_flight_with_certificate() {
    let flight = unhex(SELFSIGNED_SERVER_FLIGHT);
    let mut scan = HandshakeScan::new();
    let mut got = Vec::new();
    for b in &flight {
        got.extend(scan.push(std::slice::from_ref(b)).unwrap());
    }
    assert_eq!(got.len(), 4, "{got:?}");
    let Handshake::ServerHello(sh) = &got[0] else {
        panic!("{:?}", got[0])
    };
    assert_eq!(sh.cipher_suite, 0xc030);
    assert_eq!(sh.version(), 0x0303);
    assert_eq!(
        sh.extensions.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
        vec![65281, 11]
    );
    let Handshake::Certificate(certs) = &got[1] else {
        panic!("{:?}", got[1])
    };
    assert_eq!(
        certs,
        &vec![CertInfo {
            subject: "C=IT,ST=Some-State,O=ntop.org".into(),
            issuer: "C=IT,ST=Some-State,O=ntop.org".into(),
            dns_names: vec![],
            not_before: Some("2015-10-10T15:55:47Z".into()),
            not_after: Some("2016-10-09T15:55:47Z".into()),
        }]
    );
    assert_eq!(got[2], Handshake::Other(12));
    assert_eq!(got[3], Handshake::Other(14));
    assert!(!scan.finished());
    // The client's ChangeCipherSpec would end it; here the server's own CCS does.
    assert_eq!(scan.push(&record(20, &[1])).unwrap(), vec![]);
    assert!(scan.finished());
}

// ---------------------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------------------

#[test]
fn tls_certificate_message_openssl_cert() {
    let der = unhex(OPENSSL_CERT_DER);
    let body = with_len24(
        &[
            with_len24(&der),
            with_len24(b"not a certificate"),
            with_len24(&der),
        ]
        .concat(),
    );
    let certs = parse_certificate_message(&body).unwrap();
    assert_eq!(certs.len(), 3);
    let want = CertInfo {
        subject: "CN=test.example,O=Example,C=US".into(),
        issuer: "CN=test.example,O=Example,C=US".into(),
        dns_names: vec!["test.example".into(), "www.test.example".into()],
        not_before: Some("2026-11-22T04:01:26Z".into()),
        not_after: Some("2026-11-23T04:01:26Z".into()),
    };
    assert_eq!(certs[0], want);
    assert_eq!(
        certs[1],
        CertInfo::default(),
        "a bad certificate does not fail the list"
    );
    assert_eq!(certs[2], want);

    // The TLS 1.3 framing (request context, per-entry extensions).
    let mut entry = with_len24(&der);
    entry.extend(with_len16(&[]));
    let mut body13 = with_len8(&[]);
    body13.extend(with_len24(&entry));
    assert_eq!(parse_certificate_message(&body13).unwrap(), vec![want.clone()]);

    // List framing errors fail; every truncation of the certificate is survivable.
    assert!(parse_certificate_message(&body[..body.len() - 1]).is_err());
    assert!(parse_certificate_message(&[]).is_err());
    for n in 0..der.len() {
        let info = cert::cert_info(&der[..n]);
        assert_eq!(info, CertInfo::default(), "truncated to {n}");
    }
}

#[test]
fn tls_certificate_name_escaping_and_times() {
    // A hand-built certificate skeleton: Name with a multi-valued RDN, an unknown attribute, a
    // BMPString, special characters; GeneralizedTime with fractional seconds; SAN with an IP
    // address and a dNSName.
    fn tlv(tag: u8, v: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if v.len() < 0x80 {
            out.push(u8::try_from(v.len()).unwrap());
        } else {
            out.push(0x82);
            out.extend(u16::try_from(v.len()).unwrap().to_be_bytes());
        }
        out.extend_from_slice(v);
        out
    }
    fn atv(oid: &[u8], tag: u8, v: &[u8]) -> Vec<u8> {
        tlv(0x30, &[tlv(0x06, oid), tlv(tag, v)].concat())
    }
    let name = tlv(
        0x30,
        &[
            tlv(0x31, &atv(&[0x55, 0x04, 0x06], 0x13, b"DE")),
            tlv(
                0x31,
                &[
                    atv(&[0x55, 0x04, 0x0a], 0x0c, b"Acme, Inc"),
                    atv(&[0x55, 0x04, 0x0b], 0x0c, b"R+D"),
                ]
                .concat(),
            ),
            tlv(
                0x31,
                &atv(
                    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01],
                    0x16,
                    b"x@y",
                ),
            ),
            tlv(
                0x31,
                &atv(&[0x55, 0x04, 0x03], 0x1e, &[0x00, b'M', 0x00, 0xfc, 0x00, b'\n']),
            ),
        ]
        .concat(),
    );
    let validity = tlv(
        0x30,
        &[tlv(0x18, b"20250131120000.123Z"), tlv(0x17, b"4912312359Z")].concat(),
    );
    let san = tlv(
        0x30,
        &[tlv(0x87, &[10, 0, 0, 1]), tlv(0x82, b"a.example")].concat(),
    );
    let san_ext = tlv(
        0x30,
        &[
            tlv(0x06, &[0x55, 0x1d, 0x11]),
            tlv(0x01, &[0xff]),
            tlv(0x04, &san),
        ]
        .concat(),
    );
    let other_ext = tlv(
        0x30,
        &[tlv(0x06, &[0x55, 0x1d, 0x13]), tlv(0x04, &tlv(0x30, &[]))].concat(),
    );
    let tbs = tlv(
        0x30,
        &[
            tlv(0xa0, &tlv(0x02, &[2])),
            tlv(0x02, &[1]),
            tlv(0x30, &tlv(0x06, &[0x2a, 0x03])),
            name.clone(),
            validity,
            name,
            tlv(0x30, &[]),
            tlv(0xa3, &tlv(0x30, &[other_ext, san_ext].concat())),
        ]
        .concat(),
    );
    let cert = tlv(
        0x30,
        &[tbs, tlv(0x30, &tlv(0x06, &[0x2a, 0x03])), tlv(0x03, &[0])].concat(),
    );
    let info = cert::cert_info(&cert);
    assert_eq!(info.subject, "C=DE,O=Acme\\, Inc+OU=R\\+D,CN=Mü\\x0a");
    assert_eq!(info.issuer, info.subject);
    assert_eq!(info.not_before.as_deref(), Some("2025-01-31T12:00:00Z"));
    assert_eq!(info.not_after.as_deref(), Some("2049-12-31T23:59:00Z"));
    assert_eq!(info.dns_names, vec!["a.example"]);
}

// ---------------------------------------------------------------------------------------------
// Record scanning and QUIC CRYPTO streams
// ---------------------------------------------------------------------------------------------

#[test]
fn tls_scan_client_hello_over_three_records_in_one_byte_pushes() {
    let body = spec_example_hello();
    let msg = handshake(HANDSHAKE_CLIENT_HELLO, &body);
    let (a, rest) = msg.split_at(3); // the first record ends inside the handshake header
    let (b, c) = rest.split_at(100);
    let stream = [record(22, a), record(22, b), record(22, c)].concat();
    let mut scan = HandshakeScan::new();
    for (i, byte) in stream.iter().enumerate() {
        let got = scan.push(std::slice::from_ref(byte)).unwrap();
        if i + 1 < stream.len() {
            assert!(got.is_empty(), "message returned early at byte {i}");
        } else {
            let want = ClientHello::parse(&body).unwrap();
            assert_eq!(got, vec![Handshake::ClientHello(want)]);
        }
    }
    assert!(!scan.finished());
    assert_eq!(scan.push(&[]).unwrap(), vec![], "nothing is returned twice");

    // Application data ends the scan; later bytes (even handshake records) are ignored.
    let mut tail = record(23, &[0xaa; 40]);
    tail.extend(record(22, &handshake(HANDSHAKE_CLIENT_HELLO, &body)));
    assert_eq!(scan.push(&tail[..3]).unwrap(), vec![]);
    assert!(!scan.finished());
    assert_eq!(scan.push(&tail[3..]).unwrap(), vec![]);
    assert!(scan.finished());
    assert_eq!(scan.push(&tail).unwrap(), vec![]);
}

#[test]
fn tls_scan_several_messages_in_one_record_and_alert_ends() {
    let sh = server_hello_body([9; 32], 0x1301, &[ext(EXT_SUPPORTED_VERSIONS, &[0x03, 0x04])]);
    let payload = [handshake(2, &sh), handshake(99, &[1, 2, 3]), handshake(14, &[])].concat();
    let mut stream = record(22, &payload);
    stream.extend(record(21, &[2, 40]));
    let mut scan = HandshakeScan::new();
    let got = scan.push(&stream).unwrap();
    assert_eq!(got.len(), 3);
    assert!(matches!(&got[0], Handshake::ServerHello(s) if s.version() == 0x0304));
    assert_eq!(got[1], Handshake::Other(99));
    assert_eq!(got[2], Handshake::Other(14));
    assert!(scan.finished());
}

#[test]
fn tls_scan_malformed_hello_becomes_other() {
    let mut body = client_hello_body(0x0303, &[0x1301], &[]);
    body.push(0xee); // trailing garbage
    let mut scan = HandshakeScan::new();
    assert_eq!(
        scan.push(&record(22, &handshake(1, &body))).unwrap(),
        vec![Handshake::Other(1)]
    );
}

#[test]
fn tls_scan_rejects_non_tls_at_once() {
    let mut scan = HandshakeScan::new();
    let err = scan.push(b"G").unwrap_err();
    assert!(matches!(
        err,
        Error::Malformed {
            layer: Layer::Tls,
            ..
        }
    ));
    assert!(scan.finished());
    assert_eq!(
        scan.push(b"ET / HTTP/1.1\r\n").unwrap_err(),
        err,
        "the error is sticky"
    );

    let mut scan = HandshakeScan::new();
    assert!(scan.push(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").is_err());
    // Right content type, wrong version; and an SSLv2-style hello.
    assert!(HandshakeScan::new().push(&[0x16, 0x02]).is_err());
    assert!(HandshakeScan::new().push(&[0x16, 0x03, 0x05]).is_err());
    assert!(HandshakeScan::new().push(&[0x80, 0x2e, 0x01]).is_err());
    // Application data first is not a handshake stream either.
    assert!(HandshakeScan::new().push(&record(23, &[0; 8])).is_err());
    // A valid prefix is not rejected early.
    let mut scan = HandshakeScan::new();
    assert_eq!(scan.push(&[0x16, 0x03]).unwrap(), vec![]);
    assert!(!scan.finished());
    // Garbage where a later record header should be.
    let mut scan = HandshakeScan::new();
    let mut s = record(22, &handshake(99, &[]));
    s.extend([0x99, 0x03, 0x03, 0x00, 0x01, 0x00]);
    assert!(
        scan.push(&s).is_ok(),
        "the message before the garbage is returned"
    );
    assert!(scan.finished());
    assert!(scan.push(&[]).is_err());
    // Oversized record.
    let mut scan = HandshakeScan::new();
    assert!(scan.push(&[0x16, 0x03, 0x03, 0xff, 0xff]).is_err());
}

#[test]
fn tls_scan_64k_limit() {
    // A single message announcing more than 64 KiB fails as soon as its header is seen.
    let mut scan = HandshakeScan::new();
    let err = scan.push(&record(22, &[11, 0x01, 0x00, 0x01])).unwrap_err();
    assert!(matches!(err, Error::Malformed { .. }));
    assert!(scan.finished());

    // Many complete small messages: fine up to 64 KiB of handshake data, then an error.
    let msg = handshake(99, &[0u8; 996]); // 1000 bytes
    let rec = record(22, &[msg.clone(), msg.clone(), msg.clone(), msg].concat()); // 4000 bytes
    let mut scan = HandshakeScan::new();
    let mut count = 0;
    let mut failed = false;
    for _ in 0..20 {
        match scan.push(&rec) {
            Ok(got) => count += got.len(),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(failed);
    assert!(scan.finished());
    assert_eq!(
        count, 65,
        "every message inside the first 64 KiB (65 * 1000 bytes) was returned"
    );

    // Exactly 64 KiB is accepted.
    let big = handshake(99, &[0u8; 65536 - 4]);
    let stream: Vec<u8> = big.chunks(16384).flat_map(|c| record(22, c)).collect();
    let mut scan = HandshakeScan::new();
    assert_eq!(scan.push(&stream).unwrap(), vec![Handshake::Other(99)]);
    assert!(!scan.finished());
    assert!(scan.push(&record(22, &[0])).is_err());
}

#[test]
fn tls_parse_handshake_messages_quic_crypto_stream() {
    let mut body = spec_example_hello();
    // A QUIC ClientHello carries quic_transport_parameters; append it to the extensions.
    let ch = ClientHello::parse(&body).unwrap();
    let mut exts = ch.extensions.clone();
    exts.push(ext(
        EXT_QUIC_TRANSPORT_PARAMETERS,
        &[0x04, 0x04, 0x80, 0x10, 0x00, 0x00],
    ));
    body = client_hello_body(0x0303, &ch.cipher_suites, &exts);
    let msg = handshake(1, &body);
    let mut stream = msg.clone();
    stream.extend(handshake(8, &[0, 0]));
    stream.extend(&handshake(2, &[1, 2, 3])[..5]); // incomplete at the end

    let (got, used) = parse_handshake_messages(&stream);
    assert_eq!(used, msg.len() + 6);
    assert_eq!(got.len(), 2);
    let Handshake::ClientHello(ch) = &got[0] else {
        panic!()
    };
    assert!(ch.quic_transport_parameters);
    assert_eq!(&ch.ja4(Transport::Quic)[..11], "q13d1517h2_");
    assert_eq!(got[1], Handshake::Other(8));

    // Prefixes consume only whole messages.
    for n in 0..msg.len() {
        assert_eq!(parse_handshake_messages(&msg[..n]), (vec![], 0));
    }
    // A message announcing more than 64 KiB stops the walk.
    assert_eq!(
        parse_handshake_messages(&[1, 0x01, 0x00, 0x01, 0, 0]),
        (vec![], 0)
    );
}

// ---------------------------------------------------------------------------------------------
// Never panic
// ---------------------------------------------------------------------------------------------

fn exercise(bytes: &[u8]) {
    if let Ok(ch) = ClientHello::parse(bytes) {
        let _ = (ch.ja3(), ch.ja4(Transport::Tcp), ch.ja4_raw(Transport::Dtls));
    }
    let _ = ServerHello::parse(bytes).map(|s| s.version());
    let _ = parse_certificate_message(bytes);
    let _ = cert::cert_info(bytes);
    let (msgs, used) = parse_handshake_messages(bytes);
    assert!(used <= bytes.len());
    for m in msgs {
        if let Handshake::ClientHello(ch) = m {
            let _ = ch.ja4(Transport::Quic);
        }
    }
    let mut scan = HandshakeScan::new();
    let _ = scan.push(bytes);
    // Also with the record layer supplied, so the message layer is reached.
    let mut scan = HandshakeScan::new();
    for chunk in bytes.chunks(16000) {
        let _ = scan.push(&record(22, chunk));
    }
}

fn valid_samples() -> Vec<Vec<u8>> {
    let der = unhex(OPENSSL_CERT_DER);
    vec![
        spec_example_hello(),
        hello_body_of_record(&unhex(CURL_CH)).to_vec(),
        hello_body_of_record(&unhex(ECH_CH)).to_vec(),
        server_hello_body(
            [7; 32],
            0x1301,
            &[ext(EXT_SUPPORTED_VERSIONS, &[3, 4]), ext_alpn(&[b"h2"])],
        ),
        with_len24(&with_len24(&der)),
        der,
        unhex(SELFSIGNED_SERVER_FLIGHT),
        [handshake(1, &spec_example_hello()), handshake(2, &[0; 40])].concat(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn tls_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        exercise(&bytes);
    }

    #[test]
    fn tls_never_panics_on_mutated_valid_messages(
        which in 0usize..8,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut b = valid_samples().swap_remove(which);
        for (at, v) in &edits {
            let i = at.index(b.len());
            b[i] = *v;
        }
        exercise(&b);
        let n = cut.index(b.len() + 1);
        exercise(&b[..n]);
    }

    #[test]
    fn tls_scan_is_chunking_independent(
        cuts in proptest::collection::vec(1usize..300, 1..20),
        flip in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut stream = unhex(SELFSIGNED_SERVER_FLIGHT);
        stream.extend(record(20, &[1]));
        let whole = HandshakeScan::new().push(&stream).unwrap();
        let mut scan = HandshakeScan::new();
        let mut got = Vec::new();
        let mut rest = &stream[..];
        for c in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (a, b) = rest.split_at((*c).min(rest.len()));
            got.extend(scan.push(a).unwrap());
            rest = b;
        }
        prop_assert_eq!(got, whole);
        prop_assert!(scan.finished());

        // A corrupted stream never panics, whatever the chunking.
        let i = flip.index(stream.len());
        stream[i] = byte;
        let mut scan = HandshakeScan::new();
        let mut rest = &stream[..];
        for c in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (a, b) = rest.split_at((*c).min(rest.len()));
            let _ = scan.push(a);
            rest = b;
        }
    }
}
