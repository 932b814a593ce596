use super::*;
use crate::capture::{LinkType, SliceReader};
use aes_gcm::aead::AeadInPlace;
use proptest::prelude::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const RFC_DCID: &str = "8394c8f03e515708";

// ---------------------------------------------------------------------------------------------
// RFC 9001 Appendix A (QUIC v1) and RFC 9369 Appendix A (QUIC v2) vectors.
// ---------------------------------------------------------------------------------------------

/// The CRYPTO frame of the client Initial (RFC 9001 A.2 / RFC 9369 A.2), before PADDING to 1162
/// bytes.
const CLIENT_CRYPTO_FRAME: &str = "
    060040f1010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e868
    04fe3a47f06a2b69484c00000413011302010000c000000010000e00000b6578
    616d706c652e636f6dff01000100000a00080006001d00170018001000070005
    04616c706e000500050100000000003300260024001d00209370b2c9caa47fba
    baf4559fedba753de171fa71f50f1ce15d43e994ec74d748002b000302030400
    0d0010000e0403050306030203080408050806002d00020101001c0002400100
    3900320408ffffffffffffffff05048000ffff07048000ffff08011001048000
    75300901100f088394c8f03e51570806048000ffff";

/// The server Initial payload (RFC 9001 A.3 / RFC 9369 A.3): ACK + CRYPTO, no PADDING.
const SERVER_PAYLOAD: &str = "
    02000000000600405a020000560303eefce7f7b37ba1d1632e96677825ddf739
    88cfc79825df566dc5430b9a045a1200130100002e00330024001d00209d3c94
    0d89690b84d08a60993c144eca684d1081287c834d5311bcf32bb9da1a002b00
    020304";

const V1_CLIENT_HEADER: &str = "c300000001088394c8f03e5157080000449e00000002";
const V1_CLIENT_PACKET: &str = "
    c000000001088394c8f03e5157080000449e7b9aec34d1b1c98dd7689fb8ec11
    d242b123dc9bd8bab936b47d92ec356c0bab7df5976d27cd449f63300099f399
    1c260ec4c60d17b31f8429157bb35a1282a643a8d2262cad67500cadb8e7378c
    8eb7539ec4d4905fed1bee1fc8aafba17c750e2c7ace01e6005f80fcb7df6212
    30c83711b39343fa028cea7f7fb5ff89eac2308249a02252155e2347b63d58c5
    457afd84d05dfffdb20392844ae812154682e9cf012f9021a6f0be17ddd0c208
    4dce25ff9b06cde535d0f920a2db1bf362c23e596d11a4f5a6cf3948838a3aec
    4e15daf8500a6ef69ec4e3feb6b1d98e610ac8b7ec3faf6ad760b7bad1db4ba3
    485e8a94dc250ae3fdb41ed15fb6a8e5eba0fc3dd60bc8e30c5c4287e53805db
    059ae0648db2f64264ed5e39be2e20d82df566da8dd5998ccabdae053060ae6c
    7b4378e846d29f37ed7b4ea9ec5d82e7961b7f25a9323851f681d582363aa5f8
    9937f5a67258bf63ad6f1a0b1d96dbd4faddfcefc5266ba6611722395c906556
    be52afe3f565636ad1b17d508b73d8743eeb524be22b3dcbc2c7468d54119c74
    68449a13d8e3b95811a198f3491de3e7fe942b330407abf82a4ed7c1b311663a
    c69890f4157015853d91e923037c227a33cdd5ec281ca3f79c44546b9d90ca00
    f064c99e3dd97911d39fe9c5d0b23a229a234cb36186c4819e8b9c5927726632
    291d6a418211cc2962e20fe47feb3edf330f2c603a9d48c0fcb5699dbfe58964
    25c5bac4aee82e57a85aaf4e2513e4f05796b07ba2ee47d80506f8d2c25e50fd
    14de71e6c418559302f939b0e1abd576f279c4b2e0feb85c1f28ff18f58891ff
    ef132eef2fa09346aee33c28eb130ff28f5b766953334113211996d20011a198
    e3fc433f9f2541010ae17c1bf202580f6047472fb36857fe843b19f5984009dd
    c324044e847a4f4a0ab34f719595de37252d6235365e9b84392b061085349d73
    203a4a13e96f5432ec0fd4a1ee65accdd5e3904df54c1da510b0ff20dcc0c77f
    cb2c0e0eb605cb0504db87632cf3d8b4dae6e705769d1de354270123cb11450e
    fc60ac47683d7b8d0f811365565fd98c4c8eb936bcab8d069fc33bd801b03ade
    a2e1fbc5aa463d08ca19896d2bf59a071b851e6c239052172f296bfb5e724047
    90a2181014f3b94a4e97d117b438130368cc39dbb2d198065ae3986547926cd2
    162f40a29f0c3c8745c0f50fba3852e566d44575c29d39a03f0cda721984b6f4
    40591f355e12d439ff150aab7613499dbd49adabc8676eef023b15b65bfc5ca0
    6948109f23f350db82123535eb8a7433bdabcb909271a6ecbcb58b936a88cd4e
    8f2e6ff5800175f113253d8fa9ca8885c2f552e657dc603f252e1a8e308f76f0
    be79e2fb8f5d5fbbe2e30ecadd220723c8c0aea8078cdfcb3868263ff8f09400
    54da48781893a7e49ad5aff4af300cd804a6b6279ab3ff3afb64491c85194aab
    760d58a606654f9f4400e8b38591356fbf6425aca26dc85244259ff2b19c41b9
    f96f3ca9ec1dde434da7d2d392b905ddf3d1f9af93d1af5950bd493f5aa731b4
    056df31bd267b6b90a079831aaf579be0a39013137aac6d404f518cfd4684064
    7e78bfe706ca4cf5e9c5453e9f7cfd2b8b4c8d169a44e55c88d4a9a7f9474241
    e221af44860018ab0856972e194cd934";
const V1_SERVER_HEADER: &str = "c1000000010008f067a5502a4262b50040750001";
const V1_SERVER_PACKET: &str = "
    cf000000010008f067a5502a4262b5004075c0d95a482cd0991cd25b0aac406a
    5816b6394100f37a1c69797554780bb38cc5a99f5ede4cf73c3ec2493a1839b3
    dbcba3f6ea46c5b7684df3548e7ddeb9c3bf9c73cc3f3bded74b562bfb19fb84
    022f8ef4cdd93795d77d06edbb7aaf2f58891850abbdca3d20398c276456cbc4
    2158407dd074ee";
const V1_RETRY: &str = "ff000000010008f067a5502a4262b5746f6b656e04a265ba2eff4d829058fb3f0f2496ba";

const V2_CLIENT_HEADER: &str = "d36b3343cf088394c8f03e5157080000449e00000002";
const V2_CLIENT_PACKET: &str = "
    d76b3343cf088394c8f03e5157080000449ea0c95e82ffe67b6abcdb4298b485
    dd04de806071bf03dceebfa162e75d6c96058bdbfb127cdfcbf903388e99ad04
    9f9a3dd4425ae4d0992cfff18ecf0fdb5a842d09747052f17ac2053d21f57c5d
    250f2c4f0e0202b70785b7946e992e58a59ac52dea6774d4f03b55545243cf1a
    12834e3f249a78d395e0d18f4d766004f1a2674802a747eaa901c3f10cda5500
    cb9122faa9f1df66c392079a1b40f0de1c6054196a11cbea40afb6ef5253cd68
    18f6625efce3b6def6ba7e4b37a40f7732e093daa7d52190935b8da58976ff33
    12ae50b187c1433c0f028edcc4c2838b6a9bfc226ca4b4530e7a4ccee1bfa2a3
    d396ae5a3fb512384b2fdd851f784a65e03f2c4fbe11a53c7777c023462239dd
    6f7521a3f6c7d5dd3ec9b3f233773d4b46d23cc375eb198c63301c21801f6520
    bcfb7966fc49b393f0061d974a2706df8c4a9449f11d7f3d2dcbb90c6b877045
    636e7c0c0fe4eb0f697545460c806910d2c355f1d253bc9d2452aaa549e27a1f
    ac7cf4ed77f322e8fa894b6a83810a34b361901751a6f5eb65a0326e07de7c12
    16ccce2d0193f958bb3850a833f7ae432b65bc5a53975c155aa4bcb4f7b2c4e5
    4df16efaf6ddea94e2c50b4cd1dfe06017e0e9d02900cffe1935e0491d77ffb4
    fdf85290fdd893d577b1131a610ef6a5c32b2ee0293617a37cbb08b847741c3b
    8017c25ca9052ca1079d8b78aebd47876d330a30f6a8c6d61dd1ab5589329de7
    14d19d61370f8149748c72f132f0fc99f34d766c6938597040d8f9e2bb522ff9
    9c63a344d6a2ae8aa8e51b7b90a4a806105fcbca31506c446151adfeceb51b91
    abfe43960977c87471cf9ad4074d30e10d6a7f03c63bd5d4317f68ff325ba3bd
    80bf4dc8b52a0ba031758022eb025cdd770b44d6d6cf0670f4e990b22347a7db
    848265e3e5eb72dfe8299ad7481a408322cac55786e52f633b2fb6b614eaed18
    d703dd84045a274ae8bfa73379661388d6991fe39b0d93debb41700b41f90a15
    c4d526250235ddcd6776fc77bc97e7a417ebcb31600d01e57f32162a8560cacc
    7e27a096d37a1a86952ec71bd89a3e9a30a2a26162984d7740f81193e8238e61
    f6b5b984d4d3dfa033c1bb7e4f0037febf406d91c0dccf32acf423cfa1e70710
    10d3f270121b493ce85054ef58bada42310138fe081adb04e2bd901f2f13458b
    3d6758158197107c14ebb193230cd1157380aa79cae1374a7c1e5bbcb80ee23e
    06ebfde206bfb0fcbc0edc4ebec309661bdd908d532eb0c6adc38b7ca7331dce
    8dfce39ab71e7c32d318d136b6100671a1ae6a6600e3899f31f0eed19e3417d1
    34b90c9058f8632c798d4490da4987307cba922d61c39805d072b589bd52fdf1
    e86215c2d54e6670e07383a27bbffb5addf47d66aa85a0c6f9f32e59d85a44dd
    5d3b22dc2be80919b490437ae4f36a0ae55edf1d0b5cb4e9a3ecabee93dfc6e3
    8d209d0fa6536d27a5d6fbb17641cde27525d61093f1b28072d111b2b4ae5f89
    d5974ee12e5cf7d5da4d6a31123041f33e61407e76cffcdcfd7e19ba58cf4b53
    6f4c4938ae79324dc402894b44faf8afbab35282ab659d13c93f70412e85cb19
    9a37ddec600545473cfb5a05e08d0b209973b2172b4d21fb69745a262ccde96b
    a18b2faa745b6fe189cf772a9f84cbfc";
const V2_SERVER_HEADER: &str = "d16b3343cf0008f067a5502a4262b50040750001";
const V2_SERVER_PACKET: &str = "
    dc6b3343cf0008f067a5502a4262b5004075d92faaf16f05d8a4398c47089698
    baeea26b91eb761d9b89237bbf87263017915358230035f7fd3945d88965cf17
    f9af6e16886c61bfc703106fbaf3cb4cfa52382dd16a393e42757507698075b2
    c984c707f0a0812d8cd5a6881eaf21ceda98f4bd23f6fe1a3e2c43edd9ce7ca8
    4bed8521e2e140";
const V2_RETRY: &str = "cf6b3343cf0008f067a5502a4262b5746f6b656ec8646ce8bfe33952d955543665dcc7b6";

/// The client Initial plaintext: the CRYPTO frame, then PADDING to 1162 bytes.
fn client_plaintext() -> Vec<u8> {
    let mut p = hex(CLIENT_CRYPTO_FRAME);
    p.resize(1162, 0);
    p
}

/// Test-only sender: seals `payload` under `header` (unprotected, ending with the packet number
/// of `pn_len` bytes at `pn_offset`), then applies header protection.
fn protect(keys: &InitialKeys, header: &[u8], pn_offset: usize, payload: &[u8]) -> Vec<u8> {
    let pn_len = usize::from(header[0] & 0x03) + 1;
    assert_eq!(header.len(), pn_offset + pn_len);
    let pn = header[pn_offset..]
        .iter()
        .fold(0u64, |a, &b| (a << 8) | u64::from(b));
    let cipher = Aes128Gcm::new(&GenericArray::from(keys.key));
    let mut body = payload.to_vec();
    let tag = cipher
        .encrypt_in_place_detached(&GenericArray::from(keys.nonce(pn)), header, &mut body)
        .unwrap();
    let mut out = header.to_vec();
    out.extend_from_slice(&body);
    out.extend_from_slice(&tag);
    let mut sample = [0u8; 16];
    sample.copy_from_slice(&out[pn_offset + 4..pn_offset + 20]);
    let mask = keys.mask(sample);
    out[0] ^= mask[0] & 0x0f;
    for i in 0..pn_len {
        out[pn_offset + i] ^= mask[1 + i];
    }
    out
}

struct KeyVectors {
    version: u32,
    client_secret: &'static str,
    server_secret: &'static str,
    client: [&'static str; 3],
    server: [&'static str; 3],
}

fn check_keys(v: &KeyVectors) {
    let dcid = hex(RFC_DCID);
    assert_eq!(
        initial_secret(v.version, &dcid, true).unwrap().to_vec(),
        hex(v.client_secret)
    );
    assert_eq!(
        initial_secret(v.version, &dcid, false).unwrap().to_vec(),
        hex(v.server_secret)
    );
    for (client, [key, iv, hp]) in [(true, v.client), (false, v.server)] {
        let k = InitialKeys::new(v.version, &dcid, client).unwrap();
        assert_eq!(k.key().to_vec(), hex(key), "key client={client}");
        assert_eq!(k.iv().to_vec(), hex(iv), "iv client={client}");
        assert_eq!(k.hp().to_vec(), hex(hp), "hp client={client}");
    }
}

#[test]
fn quic_rfc9001_a1_key_derivation() {
    // The common initial_secret = HKDF-Extract(v1 salt, DCID).
    let (prk, _) = Hkdf::<Sha256>::extract(Some(&SALT_V1), &hex(RFC_DCID));
    assert_eq!(
        prk.to_vec(),
        hex("7db5df06e7a69e432496adedb00851923595221596ae2ae9fb8115c1e9ed0a44")
    );
    check_keys(&KeyVectors {
        version: VERSION_1,
        client_secret: "c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea",
        server_secret: "3c199828fd139efd216c155ad844cc81fb82fa8d7446fa7d78be803acdda951b",
        client: [
            "1f369613dd76d5467730efcbe3b1a22d",
            "fa044b2f42a3fd3b46fb255c",
            "9f50449e04a0e810283a1e9933adedd2",
        ],
        server: [
            "cf3a5331653c364c88f0f379b6067e37",
            "0ac1493ca1905853b0bba03e",
            "c206b8d9b9f0f37644430b490eeaa314",
        ],
    });
}

#[test]
fn quic_rfc9369_a1_key_derivation() {
    let (prk, _) = Hkdf::<Sha256>::extract(Some(&SALT_V2), &hex(RFC_DCID));
    assert_eq!(
        prk.to_vec(),
        hex("2062e8b3cd8d52092614b8071d0aa1fb7c2e3ac193f78b280e72d8f5751f6aba")
    );
    check_keys(&KeyVectors {
        version: VERSION_2,
        client_secret: "14ec9d6eb9fd7af83bf5a668bc17a7e283766aade7ecd0891f70f9ff7f4bf47b",
        server_secret: "0263db1782731bf4588e7e4d93b7463907cb8cd8200b5da55a8bd488eafc37c1",
        client: [
            "8b1a0bc121284290a29e0971b5cd045d",
            "91f73e2351d8fa91660e909f",
            "45b95e15235d6f45a6b19cbcb0294ba9",
        ],
        server: [
            "82db637861d55e1d011f19ea71d5d2a7",
            "dd13c276499c0249d3310652",
            "edf6d05c83121201b436e16877593c3a",
        ],
    });
}

/// A.2: the client Initial, parsed out of the datagram, opened with the client keys; and the
/// test sender reproduces the RFC's 1200 bytes exactly.
fn check_client_initial(version: u32, header: &str, packet: &str) {
    let datagram = hex(packet);
    assert_eq!(datagram.len(), 1200);
    let (packets, err) = split_datagram(&datagram);
    assert_eq!(err, None);
    assert_eq!(packets.len(), 1);
    let p = &packets[0];
    let LongPacket::Initial {
        version: v,
        dcid,
        scid,
        token,
        header_and_payload,
        pn_offset,
    } = p
    else {
        panic!("not an Initial: {p:?}");
    };
    assert_eq!(
        (*v, *dcid, *scid, *token),
        (version, &hex(RFC_DCID)[..], &[][..], &[][..])
    );
    assert_eq!((header_and_payload.len(), *pn_offset), (1200, 18));

    let keys = InitialKeys::new(version, &hex(RFC_DCID), true).unwrap();
    let d = decrypt_initial(p, &keys).unwrap();
    assert_eq!(d.packet_number, 2);
    let frame = hex(CLIENT_CRYPTO_FRAME);
    assert_eq!(
        d.frames,
        vec![
            Frame::Crypto {
                offset: 0,
                data: frame[4..].to_vec()
            },
            Frame::Padding(1162 - frame.len()),
        ]
    );
    let Frame::Crypto { data, .. } = &d.frames[0] else {
        unreachable!()
    };
    assert!(
        data.starts_with(&hex("010000ed0303ebf8fa56f129")),
        "a ClientHello"
    );

    // The server's keys do not open it.
    let wrong = InitialKeys::new(version, &hex(RFC_DCID), false).unwrap();
    assert!(matches!(decrypt_initial(p, &wrong), Err(Error::Malformed { .. })));

    assert_eq!(protect(&keys, &hex(header), 18, &client_plaintext()), datagram);
}

/// A.3: the server Initial (2-byte packet number, ACK + CRYPTO).
fn check_server_initial(version: u32, header: &str, packet: &str) {
    let datagram = hex(packet);
    let (packets, err) = split_datagram(&datagram);
    assert_eq!(err, None);
    assert_eq!(packets.len(), 1);
    let LongPacket::Initial {
        dcid,
        scid,
        pn_offset,
        ..
    } = &packets[0]
    else {
        panic!("not an Initial: {:?}", packets[0]);
    };
    assert_eq!(
        (*dcid, *scid, *pn_offset),
        (&[][..], &hex("f067a5502a4262b5")[..], 18)
    );
    let keys = InitialKeys::new(version, &hex(RFC_DCID), false).unwrap();
    let d = decrypt_initial(&packets[0], &keys).unwrap();
    assert_eq!(d.packet_number, 1);
    let payload = hex(SERVER_PAYLOAD);
    assert_eq!(
        d.frames,
        vec![
            Frame::Ack,
            Frame::Crypto {
                offset: 0,
                data: payload[9..].to_vec()
            }
        ]
    );
    assert_eq!(protect(&keys, &hex(header), 18, &payload), datagram);
}

#[test]
fn quic_rfc9001_a2_client_initial() {
    check_client_initial(VERSION_1, V1_CLIENT_HEADER, V1_CLIENT_PACKET);
}

#[test]
fn quic_rfc9001_a3_server_initial() {
    check_server_initial(VERSION_1, V1_SERVER_HEADER, V1_SERVER_PACKET);
}

#[test]
fn quic_rfc9369_a2_client_initial() {
    check_client_initial(VERSION_2, V2_CLIENT_HEADER, V2_CLIENT_PACKET);
}

#[test]
fn quic_rfc9369_a3_server_initial() {
    check_server_initial(VERSION_2, V2_SERVER_HEADER, V2_SERVER_PACKET);
}

#[test]
fn quic_rfc_a4_retry_headers() {
    for (version, packet) in [(VERSION_1, V1_RETRY), (VERSION_2, V2_RETRY)] {
        let b = hex(packet);
        let (packets, err) = split_datagram(&b);
        assert_eq!(err, None);
        assert_eq!(
            packets,
            vec![LongPacket::Retry {
                version,
                dcid: &[],
                scid: &hex("f067a5502a4262b5"),
                token: b"token",
            }]
        );
        assert!(decrypt_initial(&packets[0], &InitialKeys::new(version, &[], true).unwrap()).is_err());
    }
}

// ---------------------------------------------------------------------------------------------
// Round trips through the test sender.
// ---------------------------------------------------------------------------------------------

fn type_bits(version: u32, initial: bool) -> u8 {
    match (version == VERSION_2, initial) {
        (false, true) => 0,
        (true, true) => 1,
        (false, false) => 2, // Handshake
        (true, false) => 3,
    }
}

/// An Initial packet with a 2-byte Length, sealed with `keys`.
#[allow(clippy::too_many_arguments)]
fn build_initial(
    keys: &InitialKeys,
    version: u32,
    dcid: &[u8],
    scid: &[u8],
    token: &[u8],
    pn: u32,
    pn_len: usize,
    payload: &[u8],
) -> Vec<u8> {
    let mut h = vec![0xc0 | (type_bits(version, true) << 4) | (pn_len as u8 - 1)];
    h.extend_from_slice(&version.to_be_bytes());
    h.push(dcid.len() as u8);
    h.extend_from_slice(dcid);
    h.push(scid.len() as u8);
    h.extend_from_slice(scid);
    assert!(token.len() < 64);
    h.push(token.len() as u8);
    h.extend_from_slice(token);
    let len = pn_len + payload.len() + 16;
    assert!(len < 0x4000);
    h.extend_from_slice(&(0x4000 | len as u16).to_be_bytes());
    let pn_offset = h.len();
    h.extend_from_slice(&pn.to_be_bytes()[4 - pn_len..]);
    protect(keys, &h, pn_offset, payload)
}

/// A Handshake packet (contents are not decrypted; random bytes do).
fn build_handshake(version: u32, dcid: &[u8], scid: &[u8], body_len: usize) -> Vec<u8> {
    let mut h = vec![0xc0 | (type_bits(version, false) << 4) | 1];
    h.extend_from_slice(&version.to_be_bytes());
    h.push(dcid.len() as u8);
    h.extend_from_slice(dcid);
    h.push(scid.len() as u8);
    h.extend_from_slice(scid);
    h.extend_from_slice(&(0x4000 | body_len as u16).to_be_bytes());
    h.extend((0..body_len).map(|i| (i * 7 + 3) as u8));
    h
}

fn mixed_frames() -> (Vec<u8>, Vec<Frame>) {
    let mut p = Vec::new();
    p.extend_from_slice(&[0x01]); // PING
    // ACK_ECN: largest 10, delay 0x1234 (2-byte varint), 1 range, first range 2, gap 1, len 3,
    // ECN counts 5, 6, 7.
    p.extend_from_slice(&[0x03, 0x0a, 0x52, 0x34, 0x01, 0x02, 0x01, 0x03, 0x05, 0x06, 0x07]);
    p.extend_from_slice(&[0x06, 0x44, 0x00, 0x03, b'a', b'b', b'c']); // CRYPTO at 1024
    p.extend_from_slice(&[0x00, 0x00, 0x00]); // 3 x PADDING
    p.extend_from_slice(&[0x06, 0x00, 0x02, 0x01, 0x00]); // CRYPTO at 0
    p.extend_from_slice(&[0x1c, 0x0a, 0x06, 0x03, b'b', b'a', b'd']); // CONNECTION_CLOSE
    p.extend_from_slice(&[0x1d, 0x40, 0x80, 0x00]); // application close, code 128
    p.extend_from_slice(&[0x08, 0xff, 0xff]); // STREAM: stop here, garbage after
    let frames = vec![
        Frame::Ping,
        Frame::Ack,
        Frame::Crypto {
            offset: 1024,
            data: b"abc".to_vec(),
        },
        Frame::Padding(3),
        Frame::Crypto {
            offset: 0,
            data: vec![1, 0],
        },
        Frame::ConnectionClose {
            error_code: 10,
            frame_type: Some(6),
            reason: "bad".into(),
        },
        Frame::ConnectionClose {
            error_code: 128,
            frame_type: None,
            reason: String::new(),
        },
        Frame::Other(8),
    ];
    (p, frames)
}

#[test]
fn quic_round_trip_every_known_version_and_pn_length() {
    let (payload, frames) = mixed_frames();
    let dcid = hex("0011223344556677");
    for version in [
        VERSION_1,
        VERSION_2,
        0xff00_001d,
        0xff00_0020,
        0xff00_0017,
        0xff00_001c,
        0xff00_0022,
        VERSION_T051,
    ] {
        for client in [true, false] {
            let keys = InitialKeys::new(version, &dcid, client).unwrap();
            for pn_len in 1..=4 {
                let pn = 0x0102_0304u32 & (u32::MAX >> (8 * (4 - pn_len)));
                let b = build_initial(&keys, version, &dcid, b"scid", b"tok", pn, pn_len, &payload);
                let (packets, err) = split_datagram(&b);
                assert_eq!(err, None);
                assert_eq!(packets.len(), 1);
                let LongPacket::Initial { token, scid, .. } = &packets[0] else {
                    panic!()
                };
                assert_eq!((*token, *scid), (&b"tok"[..], &b"scid"[..]));
                let d = decrypt_initial(&packets[0], &keys).unwrap();
                assert_eq!(d.packet_number, u64::from(pn), "{version:#x} pn_len {pn_len}");
                assert_eq!(d.frames, frames);
                // Any flipped bit past the first byte's protected bits fails the tag.
                for i in [5, 20, b.len() / 2, b.len() - 1] {
                    let mut bad = b.clone();
                    bad[i] ^= 0x10;
                    let (ps, _) = split_datagram(&bad);
                    if let Some(p @ LongPacket::Initial { .. }) = ps.first() {
                        assert!(decrypt_initial(p, &keys).is_err(), "flip at {i}");
                    }
                }
            }
        }
    }
}

#[test]
fn quic_truncated_frame_after_good_tag_is_an_error() {
    let dcid = hex(RFC_DCID);
    let keys = InitialKeys::new(VERSION_1, &dcid, true).unwrap();
    // CRYPTO frame claiming 100 bytes with 20 present.
    let mut payload = vec![0x06, 0x00, 0x40, 0x64];
    payload.extend_from_slice(&[0xaa; 20]);
    let b = build_initial(&keys, VERSION_1, &dcid, &[], &[], 0, 4, &payload);
    let (packets, _) = split_datagram(&b);
    assert!(matches!(
        decrypt_initial(&packets[0], &keys),
        Err(Error::Truncated { .. })
    ));
    // Too short to sample.
    let short = LongPacket::Initial {
        version: 1,
        dcid: &dcid,
        scid: &[],
        token: &[],
        header_and_payload: &b[..30],
        pn_offset: 18,
    };
    assert!(matches!(
        decrypt_initial(&short, &keys),
        Err(Error::Truncated { .. })
    ));
    for pn_offset in [0, 6, usize::MAX - 3, usize::MAX] {
        let odd = LongPacket::Initial {
            version: 1,
            dcid: &dcid,
            scid: &[],
            token: &[],
            header_and_payload: &b,
            pn_offset,
        };
        assert!(decrypt_initial(&odd, &keys).is_err(), "pn_offset {pn_offset}");
    }
    let hs = LongPacket::Handshake {
        version: 1,
        dcid: &dcid,
        scid: &[],
    };
    assert!(decrypt_initial(&hs, &keys).is_err());
}

// ---------------------------------------------------------------------------------------------
// split_datagram
// ---------------------------------------------------------------------------------------------

#[test]
fn quic_split_coalesced_initial_handshake_and_padding() {
    for version in [VERSION_1, VERSION_2] {
        let dcid = hex("c0ffee0000000001");
        let keys = InitialKeys::new(version, &dcid, false).unwrap();
        let init = build_initial(&keys, version, &dcid, b"s", &[], 0, 2, &hex(SERVER_PAYLOAD));
        let hs = build_handshake(version, &dcid, b"s", 300);
        let mut d = init.clone();
        d.extend_from_slice(&hs);
        d.extend_from_slice(&[0u8; 40]);
        let (packets, err) = split_datagram(&d);
        assert_eq!(err, None);
        assert_eq!(packets.len(), 2, "{version:#x}");
        let LongPacket::Initial {
            header_and_payload, ..
        } = &packets[0]
        else {
            panic!()
        };
        assert_eq!(*header_and_payload, &init[..]);
        assert_eq!(
            packets[1],
            LongPacket::Handshake {
                version,
                dcid: &dcid,
                scid: b"s"
            }
        );
        assert_eq!(decrypt_initial(&packets[0], &keys).unwrap().frames[0], Frame::Ack);

        // A short-header packet after them ends the datagram too.
        let mut d2 = init.clone();
        d2.extend_from_slice(&[0x40, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let (packets, err) = split_datagram(&d2);
        assert_eq!((packets.len(), err), (1, None));

        // Every truncation is an error (or an empty result), never a panic.
        for n in 0..d.len() {
            let (packets, err) = split_datagram(&d[..n]);
            if n == 0 {
                assert_eq!((packets.len(), err), (0, None));
            } else if n < init.len() {
                assert!(packets.is_empty() && err.is_some(), "prefix {n}");
            } else if n == init.len() {
                assert_eq!((packets.len(), err), (1, None));
            } else if n < init.len() + hs.len() {
                assert!(packets.len() == 1 && err.is_some(), "prefix {n}");
            }
        }
    }
}

#[test]
fn quic_version_negotiation_and_unknown_versions() {
    let vn = hex("c500000000 04 01020304 02 0a0b 00000001 6b3343cf 1a2a3a4a");
    let (packets, err) = split_datagram(&vn);
    assert_eq!(err, None);
    assert_eq!(
        packets,
        vec![LongPacket::VersionNegotiation {
            dcid: &[1, 2, 3, 4],
            scid: &[0x0a, 0x0b],
            versions: vec![1, VERSION_2, 0x1a2a_3a4a],
        }]
    );
    let (_, err) = split_datagram(&vn[..vn.len() - 1]);
    assert!(matches!(err, Some(Error::Malformed { .. })));

    assert!(is_greasing_version(0x1a2a_3a4a));
    assert!(is_greasing_version(0x0a0a_0a0a));
    assert!(!is_greasing_version(VERSION_1));
    assert!(!is_greasing_version(VERSION_2));
    let grease = hex("c01a2a3a4a 08 0102030405060708 00 ffffffff");
    let (packets, err) = split_datagram(&grease);
    assert_eq!(err, None);
    assert_eq!(
        packets,
        vec![LongPacket::UnknownVersion {
            version: 0x1a2a_3a4a,
            dcid: &[1, 2, 3, 4, 5, 6, 7, 8],
            scid: &[],
        }]
    );
    // Unknown versions may have connection IDs up to 255 bytes (RFC 8999).
    let mut long_cid = hex("c0ff123456 21");
    long_cid.extend_from_slice(&[7; 33]);
    long_cid.push(0);
    let (packets, err) = split_datagram(&long_cid);
    assert_eq!((packets.len(), err), (1, None));
    // Known versions may not.
    long_cid[1..5].copy_from_slice(&VERSION_1.to_be_bytes());
    let (packets, err) = split_datagram(&long_cid);
    assert!(packets.is_empty() && matches!(err, Some(Error::Malformed { .. })));
}

#[test]
fn quic_header_predicates_and_salts() {
    assert!(!is_long_header(&[0xc0, 0, 0, 0, 1, 0]));
    assert!(is_long_header(&[0xc0, 0, 0, 0, 1, 0, 0]));
    assert!(!is_long_header(&[0x40, 0, 0, 0, 1, 0, 0]));
    assert!(!is_long_header(&[]));
    assert_eq!(initial_salt(VERSION_1), Some(&SALT_V1));
    assert_eq!(initial_salt(0xff00_0021), Some(&SALT_V1));
    assert_eq!(initial_salt(0xff00_0022), Some(&SALT_V1));
    assert_eq!(initial_salt(0xff00_0023), None);
    assert_eq!(initial_salt(VERSION_2), Some(&SALT_V2));
    assert_eq!(initial_salt(0xff00_001d), Some(&SALT_DRAFT_29));
    assert_eq!(initial_salt(0xff00_0020), Some(&SALT_DRAFT_29));
    assert_eq!(initial_salt(0xff00_001c), Some(&SALT_DRAFT_23));
    assert_eq!(initial_salt(0xff00_0017), Some(&SALT_DRAFT_23));
    assert_eq!(initial_salt(0x0a0a_0a0a), None);
    assert_eq!(initial_salt(0), None);
    assert_eq!(&SALT_V1[..], &hex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a")[..]);
    assert_eq!(&SALT_V2[..], &hex("0dede3def700a6db819381be6e269dcbf9bd2ed9")[..]);
    assert_eq!(
        &SALT_DRAFT_29[..],
        &hex("afbfec289993d24c9e9786f19c6111e04390a899")[..]
    );
    assert_eq!(
        &SALT_DRAFT_23[..],
        &hex("c3eef712c72ebb5a11a7d2432bb46365bef9f502")[..]
    );
    assert!(InitialKeys::new(0x0a0a_0a0a, &[1, 2, 3], true).is_none());
}

// ---------------------------------------------------------------------------------------------
// CryptoStream
// ---------------------------------------------------------------------------------------------

#[test]
fn quic_crypto_stream_reassembly() {
    let msg: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    // Out of order.
    let mut s = CryptoStream::new(DEFAULT_CRYPTO_MAX_LEN);
    s.add(1000, &msg[1000..2000]);
    assert_eq!(s.contiguous(), b"");
    assert!(s.has_gap());
    s.add(2000, &msg[2000..]);
    s.add(0, &msg[..1000]);
    assert_eq!(s.contiguous(), &msg[..]);
    assert!(!s.has_gap() && !s.overflowed());

    // Overlap and duplicates; the first copy wins where they disagree.
    let mut s = CryptoStream::new(DEFAULT_CRYPTO_MAX_LEN);
    s.add(0, &msg[..600]);
    s.add(0, &msg[..600]);
    s.add(500, &[0xee; 50]); // conflicting retransmission inside received data
    s.add(400, &msg[400..1500]);
    s.add(1200, &msg[1200..1300]);
    assert_eq!(s.contiguous(), &msg[..1500]);
    // A piece that bridges two ranges and extends both.
    s.add(2000, &msg[2000..2100]);
    s.add(1400, &msg[1400..2500]);
    assert_eq!(s.contiguous(), &msg[..2500]);
    s.add(0, &[]);
    assert_eq!(s.contiguous().len(), 2500);

    // A gap stays a gap.
    let mut s = CryptoStream::new(DEFAULT_CRYPTO_MAX_LEN);
    s.add(0, &msg[..10]);
    s.add(11, &msg[11..100]);
    assert_eq!(s.contiguous(), &msg[..10]);
    assert!(s.has_gap());
    s.add(10, &msg[10..11]);
    assert_eq!(s.contiguous(), &msg[..100]);

    // The cap.
    let mut s = CryptoStream::new(DEFAULT_CRYPTO_MAX_LEN);
    let big = vec![7u8; 70_000];
    s.add(0, &big);
    assert!(s.overflowed());
    assert_eq!(s.contiguous().len(), 64 * 1024);
    let mut s = CryptoStream::new(DEFAULT_CRYPTO_MAX_LEN);
    s.add(u64::MAX - 2, &[1, 2, 3, 4]);
    s.add(1 << 40, &[1]);
    assert!(s.overflowed());
    assert_eq!(s.contiguous(), b"");
    assert!(!s.has_gap());
    let mut s = CryptoStream::new(4);
    s.add(2, &[3, 4, 5]);
    s.add(0, &[1, 2]);
    assert_eq!((s.contiguous(), s.overflowed()), (&[1, 2, 3, 4][..], true));
}

// ---------------------------------------------------------------------------------------------
// Never panic.
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn quic_split_and_decrypt_never_panic(data in proptest::collection::vec(any::<u8>(), 0..1400),
                                          version in prop_oneof![Just(VERSION_1), Just(VERSION_2), Just(0xff00_001d), Just(0u32), any::<u32>()],
                                          pn_offset in 0usize..64) {
        let mut d = data.clone();
        if d.len() >= 5 {
            d[0] |= 0x80;
            d[1..5].copy_from_slice(&version.to_be_bytes());
        }
        let keys = InitialKeys::new(VERSION_1, &data[..data.len().min(8)], true).unwrap();
        for buf in [&data[..], &d[..]] {
            let (packets, _) = split_datagram(buf);
            for p in &packets {
                let _ = decrypt_initial(p, &keys);
                if let Some(k) = InitialKeys::new(p.version(), p.dcid(), true) {
                    let _ = decrypt_initial(p, &k);
                }
            }
            let raw = LongPacket::Initial {
                version,
                dcid: &[],
                scid: &[],
                token: &[],
                header_and_payload: buf,
                pn_offset,
            };
            let _ = decrypt_initial(&raw, &keys);
        }
    }

    #[test]
    fn quic_frames_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_frames(&data);
    }

    #[test]
    fn quic_crypto_stream_matches_model(pieces in proptest::collection::vec((0usize..300, 0usize..80), 0..30)) {
        let msg: Vec<u8> = (0..400u32).map(|i| (i * 31 % 251) as u8).collect();
        let mut s = CryptoStream::new(256);
        let mut have = vec![false; 256];
        for &(off, len) in &pieces {
            let end = (off + len).min(msg.len());
            s.add(off as u64, &msg[off..end]);
            for h in have.iter_mut().take(end.min(256)).skip(off) {
                *h = true;
            }
        }
        let want = have.iter().take_while(|&&h| h).count();
        prop_assert_eq!(s.contiguous(), &msg[..want]);
    }
}

// ---------------------------------------------------------------------------------------------
// Real captures.
// ---------------------------------------------------------------------------------------------

fn capture(name: &str) -> Option<Vec<u8>> {
    let path = format!("{}/../../../shared/pcaps/{name}", env!("CARGO_MANIFEST_DIR"));
    match std::fs::read(&path) {
        Ok(b) => Some(b),
        Err(e) => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{path}: {e}");
            eprintln!("skipping: {path}: {e}");
            None
        }
    }
}

/// A crude UDP payload extraction: link header, IPv4 (with options) or IPv6 (no extension
/// headers), UDP.
fn udp_payload(link: LinkType, frame: &[u8]) -> Option<&[u8]> {
    let ip = match link {
        LinkType::ETHERNET => {
            let mut off = 12;
            let mut ty = u16::from_be_bytes([*frame.get(off)?, *frame.get(off + 1)?]);
            while ty == 0x8100 || ty == 0x88a8 {
                off += 4;
                ty = u16::from_be_bytes([*frame.get(off)?, *frame.get(off + 1)?]);
            }
            frame.get(off + 2..)?
        }
        LinkType::NULL | LinkType::LOOP => frame.get(4..)?,
        LinkType::LINUX_SLL => frame.get(16..)?,
        LinkType::LINUX_SLL2 => frame.get(20..)?,
        _ => frame,
    };
    let udp = match ip.first()? >> 4 {
        4 if *ip.get(9)? == 17 => ip.get(usize::from(ip[0] & 0x0f) * 4..)?,
        6 if *ip.get(6)? == 17 => ip.get(40..)?,
        _ => return None,
    };
    udp.get(8..)
}

/// Decrypts the client Initials of the first connection of `version` in the capture, with keys
/// from its first DCID, and reassembles their CRYPTO data.
fn client_hello(name: &str, version: u32) -> Option<Vec<u8>> {
    let data = capture(name)?;
    let mut reader = SliceReader::new(&data).unwrap();
    let mut keys: Option<InitialKeys> = None;
    let mut stream = CryptoStream::new(DEFAULT_CRYPTO_MAX_LEN);
    let mut opened = 0;
    while let Some(pkt) = reader.next_packet() {
        let Ok(pkt) = pkt else { break };
        let Some(udp) = udp_payload(pkt.link, pkt.data) else {
            continue;
        };
        let (packets, _) = split_datagram(udp);
        for p in &packets {
            let LongPacket::Initial { version: v, dcid, .. } = p else {
                continue;
            };
            if *v != version {
                continue;
            }
            let k = keys.get_or_insert_with(|| InitialKeys::new(version, dcid, true).unwrap());
            // Server Initials (other keys) and other connections fail the tag: skip them.
            let Ok(d) = decrypt_initial(p, k) else { continue };
            opened += 1;
            for f in d.frames {
                if let Frame::Crypto { offset, data } = f {
                    stream.add(offset, &data);
                }
            }
        }
        let ch = stream.contiguous();
        if ch.len() >= 4 && ch.len() >= 4 + u32::from_be_bytes([0, ch[1], ch[2], ch[3]]) as usize {
            break;
        }
    }
    assert!(opened > 0, "{name}: no client Initial of {version:#x} opened");
    let ch = stream.contiguous().to_vec();
    assert_eq!(ch.first(), Some(&0x01), "{name}: a ClientHello");
    let len = u32::from_be_bytes([0, ch[1], ch[2], ch[3]]) as usize;
    assert!(
        ch.len() >= 4 + len,
        "{name}: the whole ClientHello ({} of {})",
        ch.len(),
        4 + len
    );
    Some(ch)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn quic_capture_v2_ndpi() {
    if let Some(ch) = client_hello("ndpi__quic-v2.pcapng", VERSION_2) {
        assert!(contains(&ch, b"\x00\x04test"), "SNI test");
        assert!(contains(&ch, b"\x02h3"));
    }
}

#[test]
fn quic_capture_v2_zeek() {
    if let Some(ch) = client_hello("zeek__quic__quicv2-http3-443.pcap", VERSION_2) {
        assert!(contains(&ch, b"\x02h3"));
    }
}

#[test]
fn quic_capture_v1_chromium() {
    let name = "zeek__quic__chromium-115.0.5790.110-api-cirrus-com.pcap";
    if let Some(ch) = client_hello(name, VERSION_1) {
        assert!(contains(&ch, b"api.cirrus-ci.com"));
    }
}

#[test]
fn quic_capture_v1_msquic() {
    if let Some(ch) = client_hello("sv__quic-ietf__input.pcap", VERSION_1) {
        assert!(contains(&ch, b"msquic.net"));
        assert!(contains(&ch, b"h3-29"));
    }
}

#[test]
fn quic_capture_v1_firefox_and_fragmented() {
    let name = "zeek__quic__firefox-102.13.0esr-blog-cloudflare-com.pcap";
    if let Some(ch) = client_hello(name, VERSION_1) {
        assert!(contains(&ch, b"blog.cloudflare.com"));
    }
    let name = "zeek__quic__quic-multiple-initial-fragmented-crypto.pcap";
    if let Some(ch) = client_hello(name, VERSION_1) {
        assert!(contains(&ch, b"googleads.g.doubleclick.net"));
    }
    if let Some(ch) = client_hello("ndpi__quic_frags_ch_in_multiple_packets.pcapng", VERSION_1) {
        assert!(contains(&ch, b"hq-interop"));
    }
}

#[test]
fn quic_capture_draft28() {
    if let Some(ch) = client_hello("ndpi__quic_0RTT.pcap", 0xff00_001c) {
        assert!(contains(&ch, b"\x00\x04abcd"));
        assert!(contains(&ch, b"h3-32"));
    }
}
