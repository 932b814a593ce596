//! Passkeys (WebAuthn level 2, relying-party side), with the little CBOR and COSE it needs
//! parsed here: registration (`webauthn.create`: attestation object -> credential id and public
//! key; the attestation statement is not checked, the dashboard asks for `attestation: "none"`)
//! and login (`webauthn.get`: signature over authenticator data and the client data hash).
//! Algorithms: ES256 (ECDSA P-256 with SHA-256, COSE -7) and EdDSA (Ed25519, COSE -8),
//! verified with ring. Checked every time: the type, the one-time challenge, the origin, the
//! rpId hash, the user-present and user-verified flags, and on login the signature counter.
//!
//! Every parser here takes untrusted bytes and never panics (proptest below).

use std::fmt;

use sha2::{Digest, Sha256};

/// COSE algorithm ES256.
pub const ALG_ES256: i64 = -7;
/// COSE algorithm EdDSA (Ed25519 here).
pub const ALG_EDDSA: i64 = -8;

/// Why a WebAuthn answer was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Bad base64, CBOR, JSON or authenticator data.
    Malformed(String),
    WrongType {
        want: &'static str,
        got: String,
    },
    WrongChallenge,
    WrongOrigin {
        want: String,
        got: String,
    },
    WrongRpId,
    UserNotPresent,
    /// The authenticator did not verify the user (PIN, biometrics): a passkey replaces the
    /// password here, so possession alone is not enough.
    UserNotVerified,
    UnsupportedAlgorithm(i64),
    BadSignature,
    /// The counter did not move forward: the authenticator may have been cloned.
    CounterWentBack {
        stored: u32,
        got: u32,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Malformed(s) => write!(f, "malformed passkey answer: {s}"),
            Refusal::WrongType { want, got } => write!(f, "client data type is {got:?}, expected {want}"),
            Refusal::WrongChallenge => write!(f, "unknown, used or expired challenge: start again"),
            Refusal::WrongOrigin { want, got } => write!(f, "origin {got:?} is not {want:?}"),
            Refusal::WrongRpId => write!(f, "the passkey was made for another site (rpId hash)"),
            Refusal::UserNotPresent => write!(f, "the authenticator did not confirm user presence"),
            Refusal::UserNotVerified => write!(
                f,
                "the authenticator did not verify the user (PIN or biometrics): set one up on it and try again"
            ),
            Refusal::UnsupportedAlgorithm(a) => {
                write!(
                    f,
                    "COSE algorithm {a} is not supported (ES256 -7 and EdDSA -8 are)"
                )
            }
            Refusal::BadSignature => write!(f, "the signature does not verify"),
            Refusal::CounterWentBack { stored, got } => write!(
                f,
                "signature counter {got} is not above the stored {stored}: the passkey may have been cloned"
            ),
        }
    }
}

impl std::error::Error for Refusal {}

fn bad(s: impl Into<String>) -> Refusal {
    Refusal::Malformed(s.into())
}

// ---- base64 -------------------------------------------------------------------------------

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn b64_with(alpha: &[u8; 64], data: &[u8], pad: bool) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |a, (i, &b)| a | u32::from(b) << (16 - 8 * i));
        let chars = chunk.len() + 1;
        for i in 0..4 {
            if i < chars {
                out.push(alpha[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64 with padding.
pub fn b64_std(data: &[u8]) -> String {
    b64_with(B64, data, true)
}

/// base64url without padding (what WebAuthn uses in JSON).
pub fn b64url(data: &[u8]) -> String {
    b64_with(B64URL, data, false)
}

/// Decodes base64url (padding and standard-alphabet characters tolerated).
pub fn b64url_decode(s: &str) -> Result<Vec<u8>, Refusal> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return Err(bad("not base64url")),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    if bits >= 6 {
        return Err(bad("base64url of impossible length"));
    }
    Ok(out)
}

// ---- CBOR ---------------------------------------------------------------------------------

/// The CBOR values WebAuthn uses (no tags, no floats, definite lengths only).
#[derive(Clone, Debug, PartialEq)]
pub enum Cbor {
    Int(i128),
    Bytes(Vec<u8>),
    Text(String),
    Array(Vec<Cbor>),
    Map(Vec<(Cbor, Cbor)>),
    Bool(bool),
    Null,
}

impl Cbor {
    /// The value under an integer or text key of a map.
    pub fn get(&self, key: &Cbor) -> Option<&Cbor> {
        match self {
            Cbor::Map(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    fn int(&self) -> Option<i128> {
        match self {
            Cbor::Int(i) => Some(*i),
            _ => None,
        }
    }
    fn bytes(&self) -> Option<&[u8]> {
        match self {
            Cbor::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

const MAX_DEPTH: usize = 8;

/// Decodes one CBOR item from the start of `b`; returns it and the bytes after it.
pub fn cbor_decode(b: &[u8]) -> Result<(Cbor, &[u8]), Refusal> {
    item(b, 0)
}

fn head(b: &[u8]) -> Result<(u8, u64, &[u8]), Refusal> {
    let (&first, rest) = b.split_first().ok_or_else(|| bad("CBOR cut short"))?;
    let (major, info) = (first >> 5, first & 0x1f);
    let (n, rest) = match info {
        0..=23 => (u64::from(info), rest),
        24..=27 => {
            let len = 1usize << (info - 24);
            if rest.len() < len {
                return Err(bad("CBOR cut short"));
            }
            let n = rest[..len].iter().fold(0u64, |a, &x| (a << 8) | u64::from(x));
            (n, &rest[len..])
        }
        _ => {
            return Err(bad(
                "CBOR indefinite lengths and reserved values are not accepted",
            ));
        }
    };
    Ok((major, n, rest))
}

fn item(b: &[u8], depth: usize) -> Result<(Cbor, &[u8]), Refusal> {
    if depth > MAX_DEPTH {
        return Err(bad("CBOR nested too deep"));
    }
    let (major, n, rest) = head(b)?;
    let take = |rest: &[u8]| -> Result<(Vec<u8>, usize), Refusal> {
        let n = usize::try_from(n).map_err(|_| bad("CBOR length too big"))?;
        if rest.len() < n {
            return Err(bad("CBOR string longer than its input"));
        }
        Ok((rest[..n].to_vec(), n))
    };
    match major {
        0 => Ok((Cbor::Int(i128::from(n)), rest)),
        1 => Ok((Cbor::Int(-1 - i128::from(n)), rest)),
        2 => {
            let (v, n) = take(rest)?;
            Ok((Cbor::Bytes(v), &rest[n..]))
        }
        3 => {
            let (v, n) = take(rest)?;
            let s = String::from_utf8(v).map_err(|_| bad("CBOR text is not UTF-8"))?;
            Ok((Cbor::Text(s), &rest[n..]))
        }
        4 | 5 => {
            // Each element takes at least one byte: a count above the input is a lie.
            if n > rest.len() as u64 {
                return Err(bad("CBOR container longer than its input"));
            }
            let mut rest = rest;
            if major == 4 {
                let mut v = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    let (x, r) = item(rest, depth + 1)?;
                    v.push(x);
                    rest = r;
                }
                Ok((Cbor::Array(v), rest))
            } else {
                let mut v = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    let (k, r) = item(rest, depth + 1)?;
                    let (x, r) = item(r, depth + 1)?;
                    v.push((k, x));
                    rest = r;
                }
                Ok((Cbor::Map(v), rest))
            }
        }
        7 => match n {
            20 => Ok((Cbor::Bool(false), rest)),
            21 => Ok((Cbor::Bool(true), rest)),
            22 => Ok((Cbor::Null, rest)),
            _ => Err(bad("CBOR floats and other simple values are not accepted")),
        },
        _ => Err(bad("CBOR tags are not accepted")),
    }
}

// ---- COSE keys ----------------------------------------------------------------------------

/// A credential public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicKey {
    /// ES256: the uncompressed point `04 || x || y` (65 bytes).
    Es256(Vec<u8>),
    /// EdDSA: the 32-byte Ed25519 key.
    Ed25519(Vec<u8>),
}

impl PublicKey {
    /// COSE algorithm number.
    pub fn alg(&self) -> i64 {
        match self {
            PublicKey::Es256(_) => ALG_ES256,
            PublicKey::Ed25519(_) => ALG_EDDSA,
        }
    }
    /// The raw key bytes (as stored).
    pub fn raw(&self) -> &[u8] {
        match self {
            PublicKey::Es256(b) | PublicKey::Ed25519(b) => b,
        }
    }
    /// Rebuilds a key from what [`PublicKey::alg`] and [`PublicKey::raw`] gave.
    pub fn from_stored(alg: i64, raw: Vec<u8>) -> Result<PublicKey, Refusal> {
        match (alg, raw.len()) {
            (ALG_ES256, 65) if raw[0] == 4 => Ok(PublicKey::Es256(raw)),
            (ALG_EDDSA, 32) => Ok(PublicKey::Ed25519(raw)),
            (ALG_ES256 | ALG_EDDSA, _) => Err(bad("stored key has the wrong length")),
            (a, _) => Err(Refusal::UnsupportedAlgorithm(a)),
        }
    }

    /// Verifies `sig` over `msg`.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), Refusal> {
        use ring::signature::{ECDSA_P256_SHA256_ASN1, ED25519, UnparsedPublicKey};
        let r = match self {
            PublicKey::Es256(k) => UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, k).verify(msg, sig),
            PublicKey::Ed25519(k) => UnparsedPublicKey::new(&ED25519, k).verify(msg, sig),
        };
        r.map_err(|_| Refusal::BadSignature)
    }
}

/// Reads a COSE_Key (RFC 9052/9053): EC2 P-256 with ES256, or OKP Ed25519 with EdDSA.
pub fn cose_key(k: &Cbor) -> Result<PublicKey, Refusal> {
    let get = |i: i128| k.get(&Cbor::Int(i));
    let kty = get(1)
        .and_then(Cbor::int)
        .ok_or_else(|| bad("COSE key without kty"))?;
    let alg = get(3)
        .and_then(Cbor::int)
        .ok_or_else(|| bad("COSE key without alg"))?;
    let crv = get(-1).and_then(Cbor::int);
    let x = get(-2).and_then(Cbor::bytes);
    match (kty, alg) {
        (2, a) if a == i128::from(ALG_ES256) => {
            let y = get(-3).and_then(Cbor::bytes);
            match (crv, x, y) {
                (Some(1), Some(x), Some(y)) if x.len() == 32 && y.len() == 32 => {
                    Ok(PublicKey::Es256([&[4u8][..], x, y].concat()))
                }
                _ => Err(bad("ES256 key is not a P-256 point (crv 1, 32-byte x and y)")),
            }
        }
        (1, a) if a == i128::from(ALG_EDDSA) => match (crv, x) {
            (Some(6), Some(x)) if x.len() == 32 => Ok(PublicKey::Ed25519(x.to_vec())),
            _ => Err(bad("EdDSA key is not Ed25519 (crv 6, 32-byte x)")),
        },
        (_, a) => Err(Refusal::UnsupportedAlgorithm(
            i64::try_from(a).unwrap_or(i64::MIN),
        )),
    }
}

// ---- authenticator data and client data -----------------------------------------------------

/// Flags byte of authenticator data: user present.
pub const FLAG_UP: u8 = 0x01;
/// User verified.
pub const FLAG_UV: u8 = 0x04;
/// Attested credential data present.
pub const FLAG_AT: u8 = 0x40;

/// Parsed authenticator data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthData {
    pub rp_id_hash: [u8; 32],
    pub flags: u8,
    pub sign_count: u32,
    /// With `FLAG_AT`: the new credential's id and key.
    pub credential: Option<(Vec<u8>, PublicKey)>,
}

/// Parses authenticator data (WebAuthn 6.1).
pub fn auth_data(b: &[u8]) -> Result<AuthData, Refusal> {
    if b.len() < 37 {
        return Err(bad("authenticator data shorter than 37 bytes"));
    }
    let mut rp_id_hash = [0u8; 32];
    rp_id_hash.copy_from_slice(&b[..32]);
    let flags = b[32];
    let sign_count = u32::from_be_bytes([b[33], b[34], b[35], b[36]]);
    let mut credential = None;
    if flags & FLAG_AT != 0 {
        let rest = &b[37..];
        if rest.len() < 18 {
            return Err(bad("attested credential data cut short"));
        }
        let n = usize::from(u16::from_be_bytes([rest[16], rest[17]]));
        let rest = &rest[18..];
        if n == 0 || n > 1023 || rest.len() < n {
            return Err(bad("credential id length out of range"));
        }
        let id = rest[..n].to_vec();
        let (key, _extensions) = cbor_decode(&rest[n..])?;
        credential = Some((id, cose_key(&key)?));
    }
    Ok(AuthData {
        rp_id_hash,
        flags,
        sign_count,
        credential,
    })
}

/// What the relying party expects of an answer.
#[derive(Clone, Debug)]
pub struct Expect<'a> {
    /// `https://host[:port]` exactly.
    pub origin: &'a str,
    /// The host name the passkey is bound to.
    pub rp_id: &'a str,
}

/// The fields of clientDataJSON that are checked; returns the challenge (decoded) so the caller
/// can take it from its one-time store.
pub fn client_data(json: &[u8], want_type: &'static str, e: &Expect<'_>) -> Result<Vec<u8>, Refusal> {
    let v: serde_json::Value = serde_json::from_slice(json).map_err(|_| bad("clientDataJSON is not JSON"))?;
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or_default().to_string();
    let t = s("type");
    if t != want_type {
        return Err(Refusal::WrongType {
            want: want_type,
            got: t,
        });
    }
    let origin = s("origin");
    if origin != e.origin {
        return Err(Refusal::WrongOrigin {
            want: e.origin.to_string(),
            got: origin,
        });
    }
    if v.get("crossOrigin").and_then(|x| x.as_bool()) == Some(true) {
        return Err(bad("cross-origin (framed) ceremonies are refused"));
    }
    b64url_decode(&s("challenge"))
}

fn check_rp(ad: &AuthData, e: &Expect<'_>) -> Result<(), Refusal> {
    if ad.rp_id_hash[..] != Sha256::digest(e.rp_id.as_bytes())[..] {
        return Err(Refusal::WrongRpId);
    }
    if ad.flags & FLAG_UP == 0 {
        return Err(Refusal::UserNotPresent);
    }
    if ad.flags & FLAG_UV == 0 {
        return Err(Refusal::UserNotVerified);
    }
    Ok(())
}

/// A new passkey, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCredential {
    pub id: Vec<u8>,
    pub key: PublicKey,
    pub sign_count: u32,
}

/// Checks a registration answer. `take_challenge` removes the challenge from the one-time store
/// and says whether it was there (unused, unexpired, for this user).
pub fn verify_registration(
    client_data_json: &[u8],
    attestation_object: &[u8],
    e: &Expect<'_>,
    take_challenge: impl FnOnce(&[u8]) -> bool,
) -> Result<NewCredential, Refusal> {
    let challenge = client_data(client_data_json, "webauthn.create", e)?;
    if !take_challenge(&challenge) {
        return Err(Refusal::WrongChallenge);
    }
    let (att, _) = cbor_decode(attestation_object)?;
    let ad = att
        .get(&Cbor::Text("authData".into()))
        .and_then(Cbor::bytes)
        .ok_or_else(|| bad("attestation object without authData"))?;
    let ad = auth_data(ad)?;
    check_rp(&ad, e)?;
    let (id, key) = ad
        .credential
        .ok_or_else(|| bad("registration without attested credential data"))?;
    Ok(NewCredential {
        id,
        key,
        sign_count: ad.sign_count,
    })
}

/// Checks a login answer against the stored key and counter; returns the new counter.
pub fn verify_assertion(
    client_data_json: &[u8],
    authenticator_data: &[u8],
    signature: &[u8],
    key: &PublicKey,
    stored_count: u32,
    e: &Expect<'_>,
    take_challenge: impl FnOnce(&[u8]) -> bool,
) -> Result<u32, Refusal> {
    let challenge = client_data(client_data_json, "webauthn.get", e)?;
    if !take_challenge(&challenge) {
        return Err(Refusal::WrongChallenge);
    }
    let ad = auth_data(authenticator_data)?;
    check_rp(&ad, e)?;
    let msg = [authenticator_data, &Sha256::digest(client_data_json)[..]].concat();
    key.verify(&msg, signature)?;
    // Counters of 0 on both sides: the authenticator does not count (synced passkeys).
    if (ad.sign_count != 0 || stored_count != 0) && ad.sign_count <= stored_count {
        return Err(Refusal::CounterWentBack {
            stored: stored_count,
            got: ad.sign_count,
        });
    }
    Ok(ad.sign_count)
}

#[cfg(test)]
pub(crate) mod tests {
    //! Vectors made here with ring, the way an authenticator makes them.
    use super::*;
    use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};

    /// CBOR encoding of a few shapes (test side).
    pub fn enc_head(major: u8, n: u64, out: &mut Vec<u8>) {
        let m = major << 5;
        match n {
            0..=23 => out.push(m | n as u8),
            24..=0xff => out.extend([m | 24, n as u8]),
            0x100..=0xffff => {
                out.push(m | 25);
                out.extend((n as u16).to_be_bytes());
            }
            _ => {
                out.push(m | 26);
                out.extend((n as u32).to_be_bytes());
            }
        }
    }
    pub fn enc_int(i: i64, out: &mut Vec<u8>) {
        if i >= 0 {
            enc_head(0, i as u64, out);
        } else {
            enc_head(1, (-1 - i) as u64, out);
        }
    }
    pub fn enc_bytes(b: &[u8], out: &mut Vec<u8>) {
        enc_head(2, b.len() as u64, out);
        out.extend_from_slice(b);
    }
    pub fn enc_text(s: &str, out: &mut Vec<u8>) {
        enc_head(3, s.len() as u64, out);
        out.extend_from_slice(s.as_bytes());
    }

    /// A software authenticator.
    pub enum Soft {
        P256(EcdsaKeyPair),
        Ed(Ed25519KeyPair),
    }

    impl Soft {
        pub fn p256() -> Soft {
            let rng = ring::rand::SystemRandom::new();
            let p = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
            Soft::P256(EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, p.as_ref(), &rng).unwrap())
        }
        pub fn ed() -> Soft {
            let rng = ring::rand::SystemRandom::new();
            let p = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
            Soft::Ed(Ed25519KeyPair::from_pkcs8(p.as_ref()).unwrap())
        }
        pub fn cose(&self) -> Vec<u8> {
            let mut o = Vec::new();
            match self {
                Soft::P256(k) => {
                    let p = k.public_key().as_ref();
                    enc_head(5, 5, &mut o);
                    enc_int(1, &mut o);
                    enc_int(2, &mut o);
                    enc_int(3, &mut o);
                    enc_int(-7, &mut o);
                    enc_int(-1, &mut o);
                    enc_int(1, &mut o);
                    enc_int(-2, &mut o);
                    enc_bytes(&p[1..33], &mut o);
                    enc_int(-3, &mut o);
                    enc_bytes(&p[33..], &mut o);
                }
                Soft::Ed(k) => {
                    enc_head(5, 4, &mut o);
                    enc_int(1, &mut o);
                    enc_int(1, &mut o);
                    enc_int(3, &mut o);
                    enc_int(-8, &mut o);
                    enc_int(-1, &mut o);
                    enc_int(6, &mut o);
                    enc_int(-2, &mut o);
                    enc_bytes(k.public_key().as_ref(), &mut o);
                }
            }
            o
        }
        pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
            match self {
                Soft::P256(k) => k
                    .sign(&ring::rand::SystemRandom::new(), msg)
                    .unwrap()
                    .as_ref()
                    .to_vec(),
                Soft::Ed(k) => k.sign(msg).as_ref().to_vec(),
            }
        }
    }

    pub fn client_json(t: &str, challenge: &[u8], origin: &str) -> Vec<u8> {
        serde_json::json!({"type": t, "challenge": b64url(challenge), "origin": origin, "crossOrigin": false})
            .to_string()
            .into_bytes()
    }

    pub fn auth_data_bytes(rp: &str, flags: u8, count: u32, cred: Option<(&[u8], &[u8])>) -> Vec<u8> {
        let mut a = Sha256::digest(rp.as_bytes()).to_vec();
        a.push(flags);
        a.extend(count.to_be_bytes());
        if let Some((id, cose)) = cred {
            a.extend([0u8; 16]);
            a.extend((id.len() as u16).to_be_bytes());
            a.extend(id);
            a.extend(cose);
        }
        a
    }

    pub fn attestation(auth: &[u8]) -> Vec<u8> {
        let mut o = Vec::new();
        enc_head(5, 3, &mut o);
        enc_text("fmt", &mut o);
        enc_text("none", &mut o);
        enc_text("attStmt", &mut o);
        enc_head(5, 0, &mut o);
        enc_text("authData", &mut o);
        enc_bytes(auth, &mut o);
        o
    }

    const ORIGIN: &str = "https://localhost:8079";
    fn ex() -> Expect<'static> {
        Expect {
            origin: ORIGIN,
            rp_id: "localhost",
        }
    }

    fn round_trip(soft: Soft) {
        let ch = b"challenge-123456".to_vec();
        let cred_id = b"cred-1".to_vec();
        let auth = auth_data_bytes(
            "localhost",
            FLAG_UP | FLAG_UV | FLAG_AT,
            0,
            Some((&cred_id, &soft.cose())),
        );
        let cd = client_json("webauthn.create", &ch, ORIGIN);
        let new = verify_registration(&cd, &attestation(&auth), &ex(), |c| c == ch).unwrap();
        assert_eq!(new.id, cred_id);
        // Stored and read back.
        let key = PublicKey::from_stored(new.key.alg(), new.key.raw().to_vec()).unwrap();

        let ch2 = b"login-challenge".to_vec();
        let ad = auth_data_bytes("localhost", FLAG_UP | FLAG_UV, 5, None);
        let cd = client_json("webauthn.get", &ch2, ORIGIN);
        let sig = soft.sign(&[&ad[..], &Sha256::digest(&cd)[..]].concat());
        assert_eq!(
            verify_assertion(&cd, &ad, &sig, &key, 0, &ex(), |c| c == ch2),
            Ok(5)
        );
        // The same counter again: refused (clone suspicion); a used challenge: refused.
        assert_eq!(
            verify_assertion(&cd, &ad, &sig, &key, 5, &ex(), |_| true),
            Err(Refusal::CounterWentBack { stored: 5, got: 5 })
        );
        assert_eq!(
            verify_assertion(&cd, &ad, &sig, &key, 0, &ex(), |_| false),
            Err(Refusal::WrongChallenge)
        );
        // A flipped bit in the authenticator data: the signature fails.
        let mut ad2 = ad.clone();
        ad2[36] ^= 1;
        assert_eq!(
            verify_assertion(&cd, &ad2, &sig, &key, 0, &ex(), |_| true),
            Err(Refusal::BadSignature)
        );
        // Another origin, another rpId, no user presence, the wrong type.
        let cd_evil = client_json("webauthn.get", &ch2, "https://evil.example");
        assert!(matches!(
            verify_assertion(&cd_evil, &ad, &sig, &key, 0, &ex(), |_| true),
            Err(Refusal::WrongOrigin { .. })
        ));
        let ad_rp = auth_data_bytes("evil.example", FLAG_UP | FLAG_UV, 6, None);
        let sig_rp = soft.sign(&[&ad_rp[..], &Sha256::digest(&cd)[..]].concat());
        assert_eq!(
            verify_assertion(&cd, &ad_rp, &sig_rp, &key, 0, &ex(), |_| true),
            Err(Refusal::WrongRpId)
        );
        let ad_nv = auth_data_bytes("localhost", FLAG_UP, 7, None);
        let sig_nv = soft.sign(&[&ad_nv[..], &Sha256::digest(&cd)[..]].concat());
        assert_eq!(
            verify_assertion(&cd, &ad_nv, &sig_nv, &key, 0, &ex(), |_| true),
            Err(Refusal::UserNotVerified)
        );
        let ad_np = auth_data_bytes("localhost", FLAG_UV, 7, None);
        let sig_np = soft.sign(&[&ad_np[..], &Sha256::digest(&cd)[..]].concat());
        assert_eq!(
            verify_assertion(&cd, &ad_np, &sig_np, &key, 0, &ex(), |_| true),
            Err(Refusal::UserNotPresent)
        );
        let cd_create = client_json("webauthn.create", &ch2, ORIGIN);
        assert!(matches!(
            verify_assertion(&cd_create, &ad, &sig, &key, 0, &ex(), |_| true),
            Err(Refusal::WrongType { .. })
        ));
    }

    #[test]
    fn es256_register_and_login() {
        round_trip(Soft::p256());
    }

    #[test]
    fn eddsa_register_and_login() {
        round_trip(Soft::ed());
    }

    #[test]
    fn a_signature_by_another_key_fails() {
        let (a, b) = (Soft::p256(), Soft::p256());
        let key = cose_key(&cbor_decode(&a.cose()).unwrap().0).unwrap();
        let ad = auth_data_bytes("localhost", FLAG_UP | FLAG_UV, 1, None);
        let cd = client_json("webauthn.get", b"c", ORIGIN);
        let sig = b.sign(&[&ad[..], &Sha256::digest(&cd)[..]].concat());
        assert_eq!(
            verify_assertion(&cd, &ad, &sig, &key, 0, &ex(), |_| true),
            Err(Refusal::BadSignature)
        );
    }

    #[test]
    fn rs256_keys_are_refused_by_name() {
        let mut o = Vec::new();
        enc_head(5, 2, &mut o);
        enc_int(1, &mut o);
        enc_int(3, &mut o);
        enc_int(3, &mut o);
        enc_int(-257, &mut o);
        let k = cbor_decode(&o).unwrap().0;
        assert_eq!(cose_key(&k), Err(Refusal::UnsupportedAlgorithm(-257)));
    }

    #[test]
    fn base64url_round_trip() {
        for n in 0..40u8 {
            let d: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(b64url_decode(&b64url(&d)).unwrap(), d);
        }
        assert_eq!(b64_std(b"hello"), "aGVsbG8=");
        assert!(b64url_decode("a").is_err());
        assert!(b64url_decode("ab$d").is_err());
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = cbor_decode(&b);
            let _ = auth_data(&b);
            let _ = verify_registration(&b, &b, &ex(), |_| true);
            if let Ok((v, _)) = cbor_decode(&b) { let _ = cose_key(&v); }
            let _ = b64url_decode(&String::from_utf8_lossy(&b));
        }

        #[test]
        fn auth_data_with_random_tail_never_panics(tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let mut a = auth_data_bytes("localhost", FLAG_UP | FLAG_UV | FLAG_AT, 1, None);
            a.extend(tail);
            let _ = auth_data(&a);
        }
    }
}
