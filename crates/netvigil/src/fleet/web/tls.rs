//! HTTPS for the fleet dashboard: the certificate (given as PEM files, or a self-signed ECDSA
//! P-256 one made on first run and kept in the data directory), its SHA-256 fingerprint, the
//! rustls configuration (TLS 1.2 and 1.3, ring), and a listener that hands axum finished TLS
//! streams (handshakes run on their own tasks, bounded in number and time, so a slow client
//! never stalls the others).

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::fleet::identity::{der, write_private};

/// A TLS handshake must finish within this.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// Most handshakes in progress at once; more connections wait in the kernel's backlog.
const MAX_HANDSHAKES: usize = 128;

/// The dashboard's certificate chain and key.
#[derive(Clone)]
pub struct WebCert {
    /// Leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    key: Vec<u8>,
    key_kind: KeyKind,
    /// Where it came from (for messages).
    pub source: PathBuf,
    /// Whether this run generated it.
    pub generated: bool,
}

#[derive(Clone, Copy)]
enum KeyKind {
    Pkcs8,
    Sec1,
    Pkcs1,
}

impl std::fmt::Debug for WebCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("WebCert")
            .field("fingerprint", &self.fingerprint())
            .field("source", &self.source)
            .finish()
    }
}

impl WebCert {
    /// SHA-256 of the leaf certificate (DER) as colon-separated upper-case hex, the way
    /// browsers show it.
    pub fn fingerprint(&self) -> String {
        colon_hex(&Sha256::digest(self.chain[0].as_ref()))
    }

    /// SHA-256 of the leaf's SubjectPublicKeyInfo, base64 (Chromium's
    /// `--ignore-certificate-errors-spki-list` takes this).
    #[cfg(test)]
    pub fn spki_sha256_base64(&self) -> Option<String> {
        let spki = spki_of(self.chain[0].as_ref())?;
        Some(crate::fleet::web::webauthn::b64_std(&Sha256::digest(spki)))
    }

    fn private_key(&self) -> PrivateKeyDer<'static> {
        match self.key_kind {
            KeyKind::Pkcs8 => PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone())),
            KeyKind::Sec1 => PrivateKeyDer::Sec1(self.key.clone().into()),
            KeyKind::Pkcs1 => PrivateKeyDer::Pkcs1(self.key.clone().into()),
        }
    }

    /// Reads a PEM certificate chain and its PEM private key (PKCS#8, SEC1 or PKCS#1).
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<WebCert> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .with_context(|| format!("--web-cert {}: cannot read it", cert.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("--web-cert {}: not a PEM certificate file", cert.display()))?;
        if chain.is_empty() {
            bail!(
                "--web-cert {}: no CERTIFICATE block in it; give the PEM certificate (chain), leaf first",
                cert.display()
            );
        }
        let k = PrivateKeyDer::from_pem_file(key).with_context(|| {
            format!(
                "--web-key {}: no PEM private key in it (PKCS#8, EC or RSA)",
                key.display()
            )
        })?;
        let (key_kind, bytes) = match &k {
            PrivateKeyDer::Pkcs8(b) => (KeyKind::Pkcs8, b.secret_pkcs8_der().to_vec()),
            PrivateKeyDer::Sec1(b) => (KeyKind::Sec1, b.secret_sec1_der().to_vec()),
            PrivateKeyDer::Pkcs1(b) => (KeyKind::Pkcs1, b.secret_pkcs1_der().to_vec()),
            _ => bail!("--web-key {}: unsupported key type", key.display()),
        };
        let c = WebCert {
            chain,
            key: bytes,
            key_kind,
            source: cert.to_path_buf(),
            generated: false,
        };
        server_config(&c).with_context(|| {
            format!(
                "--web-cert {} and --web-key {} do not go together (or the key type is not supported)",
                cert.display(),
                key.display()
            )
        })?;
        Ok(c)
    }

    /// Loads `dir/cert.pem` and `dir/key.pem`, or makes a self-signed ECDSA P-256 certificate
    /// for `names` (DNS names and IP addresses) and writes them there (key mode 0600).
    pub fn load_or_create(dir: &Path, names: &[String]) -> Result<WebCert> {
        let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
        if c.exists() && k.exists() {
            return WebCert::from_pem_files(&c, &k).with_context(|| {
                format!(
                    "the dashboard certificate in {} is damaged: delete cert.pem and key.pem there and a new one is made",
                    dir.display()
                )
            });
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let (cert, key) = self_signed(names)?;
        write_private(&k, pem("PRIVATE KEY", &key).as_bytes())?;
        std::fs::write(&c, pem("CERTIFICATE", &cert)).with_context(|| format!("writing {}", c.display()))?;
        Ok(WebCert {
            chain: vec![CertificateDer::from(cert)],
            key,
            key_kind: KeyKind::Pkcs8,
            source: c,
            generated: true,
        })
    }
}

/// The rustls server configuration: TLS 1.2 and 1.3 (ring), HTTP/1.1 by ALPN, no client
/// certificates.
pub fn server_config(c: &WebCert) -> Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(c.chain.clone(), c.private_key())
        .context("the certificate and key")?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Upper-case hex bytes joined by `:`.
pub fn colon_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect::<Vec<_>>().join(":")
}

/// DER as a PEM block with this label.
pub fn pem(label: &str, der: &[u8]) -> String {
    let b64 = crate::fleet::web::webauthn::b64_std(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];

/// A self-signed X.509 v3 certificate for a new ECDSA P-256 key (what browsers accept; they
/// do not take Ed25519 server certificates), with the names as subjectAltName. Returns the
/// certificate and the PKCS#8 key (DER).
pub fn self_signed(names: &[String]) -> Result<(Vec<u8>, Vec<u8>)> {
    use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
        .map_err(|_| anyhow::anyhow!("generating a P-256 key failed"))?;
    let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|e| anyhow::anyhow!("P-256 key: {e}"))?;
    let mut serial = [0u8; 16];
    getrandom::fill(&mut serial).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    serial[0] = (serial[0] & 0x7f) | 0x40;
    let alg = der(0x30, &der(0x06, OID_ECDSA_SHA256));
    let spki = der(
        0x30,
        &[
            der(
                0x30,
                &[der(0x06, OID_EC_PUBLIC_KEY), der(0x06, OID_P256)].concat(),
            ),
            der(0x03, &[&[0u8][..], kp.public_key().as_ref()].concat()),
        ]
        .concat(),
    );
    let cn_text = names.first().map_or("netvigil fleet dashboard", String::as_str);
    let cn = der(
        0x30,
        &der(
            0x31,
            &der(
                0x30,
                &[der(0x06, &[0x55, 0x04, 0x03]), der(0x0c, cn_text.as_bytes())].concat(),
            ),
        ),
    );
    let validity = der(
        0x30,
        &[der(0x17, b"000101000000Z"), der(0x18, b"99991231235959Z")].concat(),
    );
    let mut general_names = Vec::new();
    for n in names {
        match n.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(a)) => general_names.extend(der(0x87, &a.octets())),
            Ok(std::net::IpAddr::V6(a)) => general_names.extend(der(0x87, &a.octets())),
            Err(_) => general_names.extend(der(0x82, n.as_bytes())),
        }
    }
    let san = der(
        0x30,
        &[
            der(0x06, &[0x55, 0x1d, 0x11]),
            der(0x04, &der(0x30, &general_names)),
        ]
        .concat(),
    );
    // basicConstraints: not a CA (critical).
    let bc = der(
        0x30,
        &[
            der(0x06, &[0x55, 0x1d, 0x13]),
            der(0x01, &[0xff]),
            der(0x04, &der(0x30, &[])),
        ]
        .concat(),
    );
    let extensions = der(0xa3, &der(0x30, &[san, bc].concat()));
    let tbs = der(
        0x30,
        &[
            der(0xa0, &der(0x02, &[2])),
            der(0x02, &serial),
            alg.clone(),
            cn.clone(),
            validity,
            cn,
            spki,
            extensions,
        ]
        .concat(),
    );
    let sig = kp
        .sign(&rng, &tbs)
        .map_err(|_| anyhow::anyhow!("signing the certificate failed"))?;
    let bits = der(0x03, &[&[0u8][..], sig.as_ref()].concat());
    let cert = der(0x30, &[tbs, alg, bits].concat());
    Ok((cert, pkcs8.as_ref().to_vec()))
}

/// Reads one DER TLV at the start of `b`: (tag, content, rest).
#[cfg(test)]
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    let (&l0, rest) = rest.split_first()?;
    let (len, rest) = if l0 < 0x80 {
        (usize::from(l0), rest)
    } else {
        let n = usize::from(l0 & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |a, &x| (a << 8) | usize::from(x));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The SubjectPublicKeyInfo (whole TLV) of a DER certificate.
#[cfg(test)]
fn spki_of(cert: &[u8]) -> Option<&[u8]> {
    let (_, c, _) = tlv(cert)?;
    let (_, tbs, _) = tlv(c)?;
    let mut rest = tbs;
    // [0] version (optional), serial, signature, issuer, validity, subject, then SPKI.
    let (tag, _, r) = tlv(rest)?;
    if tag == 0xa0 {
        rest = r;
    }
    for _ in 0..5 {
        let (_, _, r) = tlv(rest)?;
        rest = r;
    }
    let (_, _, after) = tlv(rest)?;
    Some(&rest[..rest.len() - after.len()])
}

/// Accepts TCP connections and completes TLS handshakes off the accept path; axum gets only
/// finished TLS streams.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `listener` (on the current tokio runtime).
    pub fn new(listener: TcpListener, cfg: Arc<rustls::ServerConfig>) -> io::Result<TlsListener> {
        let addr = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(cfg);
        let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let (tcp, peer) = match listener.accept().await {
                    Ok(x) => x,
                    Err(_) => {
                        // Out of file descriptors and the like: wait a little, then go on.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                let _ = tcp.set_nodelay(true);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    if let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp)).await {
                        let _ = tx.send((tls, peer)).await;
                    }
                });
            }
        });
        Ok(TlsListener { rx, addr })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(x) => x,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_certificate_parses_and_serves() {
        let (cert, key) = self_signed(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        let der = CertificateDer::from(cert.clone());
        webpki::EndEntityCert::try_from(&der).expect("webpki parses the certificate");
        let c = WebCert {
            chain: vec![CertificateDer::from(cert.clone())],
            key,
            key_kind: KeyKind::Pkcs8,
            source: PathBuf::new(),
            generated: true,
        };
        server_config(&c).unwrap();
        let spki = spki_of(&cert).unwrap();
        assert_eq!(spki[0], 0x30);
        assert!(spki.windows(OID_P256.len()).any(|w| w == OID_P256));
        assert_eq!(c.fingerprint().len(), 32 * 3 - 1);
    }

    #[test]
    fn pem_files_round_trip_and_mismatch_is_refused() {
        let dir = std::env::temp_dir().join(format!("nv-webtls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = WebCert::load_or_create(&dir, &["localhost".into()]).unwrap();
        assert!(a.generated);
        let b = WebCert::load_or_create(&dir, &["localhost".into()]).unwrap();
        assert!(!b.generated);
        assert_eq!(a.fingerprint(), b.fingerprint());
        // Another key with this certificate: refused with both names in the message.
        let other = dir.join("other");
        let _ = WebCert::load_or_create(&other, &["x".into()]).unwrap();
        let e = WebCert::from_pem_files(&dir.join("cert.pem"), &other.join("key.pem"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("do not go together"), "{e}");
        let e = WebCert::from_pem_files(&dir.join("key.pem"), &dir.join("key.pem"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("CERTIFICATE"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    proptest::proptest! {
        #[test]
        fn spki_walk_never_panics(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = spki_of(&b);
        }
    }
}
