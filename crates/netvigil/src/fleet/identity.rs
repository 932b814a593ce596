//! Who is who in the fleet: Ed25519 keys (ring) with self-signed certificates built here, the
//! key id (SHA-256 of the SubjectPublicKeyInfo), certificate fingerprints, and the rustls
//! configurations: TLS 1.3 only, no 0-RTT, mutual authentication. The server accepts any
//! Ed25519 client certificate at the handshake (the signature proves the key) and decides by
//! the key id right after it; the agent accepts exactly the server certificate whose SHA-256
//! fingerprint it was given.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use sha2::{Digest, Sha256};

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the 32 key bytes follow.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// An Ed25519 key with its self-signed certificate (what an agent or the server presents).
#[derive(Clone)]
pub struct Identity {
    /// The certificate (DER).
    pub cert: CertificateDer<'static>,
    /// The private key (PKCS#8 DER).
    key: Vec<u8>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("Identity")
            .field("fingerprint", &fingerprint(&self.cert))
            .finish()
    }
}

impl Identity {
    /// A new Ed25519 key (ring) and a self-signed X.509 v3 certificate for it naming `name`
    /// (built by hand: no certificate library needed for this one shape).
    pub fn generate(name: &str) -> Result<Identity> {
        use ring::signature::{Ed25519KeyPair, KeyPair as _};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| anyhow::anyhow!("generating an Ed25519 key failed"))?;
        let kp =
            Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|e| anyhow::anyhow!("Ed25519 key: {e}"))?;
        let mut serial = [0u8; 16];
        getrandom::fill(&mut serial).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let tbs = tbs_certificate(name, serial, kp.public_key().as_ref());
        let sig = kp.sign(&tbs);
        let cert = der(0x30, &[tbs, ed25519_alg(), bit_string(sig.as_ref())].concat());
        Ok(Identity {
            cert: CertificateDer::from(cert),
            key: pkcs8.as_ref().to_vec(),
        })
    }

    /// Loads `cert.der` and `key.der` from `dir`, or creates them (key file mode 0600).
    pub fn load_or_create(dir: &Path, name: &str) -> Result<Identity> {
        let (c, k) = (dir.join("cert.der"), dir.join("key.der"));
        if c.exists() && k.exists() {
            let cert = std::fs::read(&c).with_context(|| format!("reading {}", c.display()))?;
            let key = std::fs::read(&k).with_context(|| format!("reading {}", k.display()))?;
            let id = Identity {
                cert: CertificateDer::from(cert),
                key,
            };
            key_id(&id.cert).with_context(|| {
                format!(
                    "{} is not an Ed25519 certificate: delete it and {} to make new ones",
                    c.display(),
                    k.display()
                )
            })?;
            return Ok(id);
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let id = Identity::generate(name)?;
        write_private(&k, &id.key)?;
        std::fs::write(&c, id.cert.as_ref()).with_context(|| format!("writing {}", c.display()))?;
        Ok(id)
    }

    /// The private key for rustls.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone()))
    }

    /// SHA-256 of the certificate, hex (what the agent pins).
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert)
    }

    /// SHA-256 of the SubjectPublicKeyInfo, hex (how the server knows an agent).
    #[allow(
        dead_code,
        reason = "only tests call it so far (reading back stored batches, stopping a server, decoding a buffer)"
    )]
    pub fn key_id(&self) -> String {
        key_id(&self.cert).unwrap_or_default()
    }
}

/// One DER TLV (also used by the dashboard's certificate maker, `fleet::web::tls`).
pub(crate) fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let len = (n as u32).to_be_bytes();
        let skip = len.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (4 - skip) as u8);
        out.extend_from_slice(&len[skip..]);
    }
    out.extend_from_slice(content);
    out
}

fn bit_string(bytes: &[u8]) -> Vec<u8> {
    der(0x03, &[&[0u8][..], bytes].concat())
}

/// AlgorithmIdentifier for Ed25519 (RFC 8410: OID 1.3.101.112, no parameters).
fn ed25519_alg() -> Vec<u8> {
    der(0x30, &der(0x06, &[0x2b, 0x65, 0x70]))
}

/// Name with one commonName (OID 2.5.4.3) as UTF8String.
fn common_name(name: &str) -> Vec<u8> {
    let atv = der(
        0x30,
        &[der(0x06, &[0x55, 0x04, 0x03]), der(0x0c, name.as_bytes())].concat(),
    );
    der(0x30, &der(0x31, &atv))
}

/// TBSCertificate: v3, positive serial, Ed25519, issuer = subject = `name`, valid from
/// 2000-01-01 with no well-defined end (RFC 5280 4.1.2.5: 99991231235959Z), the key's SPKI.
fn tbs_certificate(name: &str, mut serial: [u8; 16], public_key: &[u8]) -> Vec<u8> {
    serial[0] = (serial[0] & 0x7f) | 0x40; // positive, no leading zero byte
    let validity = der(
        0x30,
        &[der(0x17, b"000101000000Z"), der(0x18, b"99991231235959Z")].concat(),
    );
    let spki = der(0x30, &[ed25519_alg(), bit_string(public_key)].concat());
    let cn = common_name(name);
    der(
        0x30,
        &[
            der(0xa0, &der(0x02, &[2])),
            der(0x02, &serial),
            ed25519_alg(),
            cn.clone(),
            validity,
            cn,
            spki,
        ]
        .concat(),
    )
}

/// Writes a secret file readable by its owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let mut f = o
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// SHA-256 of a certificate's DER, hex.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    hex(&Sha256::digest(cert.as_ref()))
}

/// A fingerprint as the user typed it: hex with optional `:` separators, any case.
pub fn parse_fingerprint(s: &str) -> Result<String> {
    let clean: String = s
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    if clean.len() != 64 || !clean.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!(
            "--fingerprint must be the 64 hex digits of the server certificate's SHA-256 (as `netvigil server` prints it)"
        );
    }
    Ok(clean)
}

/// The SubjectPublicKeyInfo of an Ed25519 certificate, or why not.
fn ed25519_spki(cert: &CertificateDer<'_>) -> Result<Vec<u8>, rustls::Error> {
    let ee = webpki::EndEntityCert::try_from(cert)
        .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
    let spki = ee.subject_public_key_info();
    let der = spki.as_ref().to_vec();
    if der.len() != 44 || der[..12] != ED25519_SPKI_PREFIX {
        return Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Other(rustls::OtherError(Arc::new(NotEd25519))),
        ));
    }
    Ok(der)
}

#[derive(Debug)]
struct NotEd25519;
impl std::fmt::Display for NotEd25519 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fleet certificates must carry an Ed25519 key")
    }
}
impl std::error::Error for NotEd25519 {}

/// SHA-256 of an Ed25519 certificate's SubjectPublicKeyInfo, hex.
pub fn key_id(cert: &CertificateDer<'_>) -> Result<String, rustls::Error> {
    Ok(hex(&Sha256::digest(ed25519_spki(cert)?)))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn verify13(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    if dss.scheme != SignatureScheme::ED25519 {
        return Err(rustls::Error::PeerMisbehaved(
            rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
        ));
    }
    rustls::crypto::verify_tls13_signature(message, cert, dss, &provider().signature_verification_algorithms)
}

/// Server side: demands a client certificate, accepts any well-formed Ed25519 one (the TLS 1.3
/// CertificateVerify signature proves the key); the server then looks the key id up.
#[derive(Debug)]
struct AnyEd25519Client;

impl ClientCertVerifier for AnyEd25519Client {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn client_auth_mandatory(&self) -> bool {
        true
    }
    fn verify_client_cert(
        &self,
        ee: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        ed25519_spki(ee)?;
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify13(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// Agent side: the server is exactly the certificate with this SHA-256 fingerprint.
#[derive(Debug)]
struct PinnedServer {
    fingerprint: String,
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        ee: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if fingerprint(ee) != self.fingerprint {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify13(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// The server's TLS configuration: TLS 1.3 only, client certificate required, no early data.
pub fn server_config(id: &Identity) -> Result<Arc<rustls::ServerConfig>> {
    let mut c = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3 setup")?
        .with_client_cert_verifier(Arc::new(AnyEd25519Client))
        .with_single_cert(vec![id.cert.clone()], id.private_key())
        .context("server certificate")?;
    c.max_early_data_size = 0;
    c.send_tls13_tickets = 0;
    Ok(Arc::new(c))
}

/// The agent's TLS configuration: TLS 1.3 only, the server pinned by fingerprint, the agent's
/// certificate presented, no early data, no resumption.
pub fn client_config(id: &Identity, server_fingerprint: &str) -> Result<Arc<rustls::ClientConfig>> {
    let mut c = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3 setup")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedServer {
            fingerprint: server_fingerprint.to_owned(),
        }))
        .with_client_auth_cert(vec![id.cert.clone()], id.private_key())
        .context("agent certificate")?;
    c.enable_early_data = false;
    c.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_id_is_the_key_not_the_certificate() {
        let a = Identity::generate("a").unwrap();
        let b = Identity::generate("a").unwrap();
        assert_ne!(a.key_id(), b.key_id());
        assert_eq!(a.key_id().len(), 64);
        assert_ne!(a.key_id(), a.fingerprint());
        let dir = tempdir();
        let c = Identity::load_or_create(&dir, "x").unwrap();
        let d = Identity::load_or_create(&dir, "y").unwrap();
        assert_eq!(c.key_id(), d.key_id(), "a stored identity is reused");
        assert!(key_id(&CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])).is_err());
    }

    #[test]
    fn fingerprints_are_parsed_leniently_but_checked() {
        let f = "AB:".repeat(31) + "AB";
        assert_eq!(parse_fingerprint(&f).unwrap(), "ab".repeat(32));
        assert!(parse_fingerprint("abc").is_err());
    }

    fn tempdir() -> std::path::PathBuf {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).unwrap();
        let d = std::env::temp_dir().join(format!("nv-fleet-id-{}", hex(&b)));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
