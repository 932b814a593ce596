//! Payload samples at rest: XChaCha20-Poly1305 under a 32-byte key kept in `samples.key` in the
//! data directory (created with mode 0600; a key file readable by group or others is refused).
//!
//! Every sample gets a fresh random 24-byte nonce. The associated data binds the ciphertext to
//! its place: device, flow id, flow start and direction, so a sample copied to another row (or
//! another direction) fails authentication like a flipped byte does.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::model::{DeviceId, SampleDir, StoreError};

/// File name of the key in the data directory.
pub const KEY_FILE: &str = "samples.key";
/// Length of the random nonce stored with each sample.
pub const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;
const AAD_TAG: &[u8] = b"netvigil-sample-v1";

/// The key that seals payload samples. Never printed.
pub struct SampleKey {
    cipher: XChaCha20Poly1305,
    path: PathBuf,
}

impl std::fmt::Debug for SampleKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SampleKey")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Where a sample belongs: bound into the ciphertext as associated data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SamplePlace {
    pub device: DeviceId,
    /// `FlowRecord::id` and start of the flow the sample belongs to.
    pub flow_id: u64,
    pub flow_start: i64,
    pub dir: SampleDir,
}

impl SamplePlace {
    fn aad(&self) -> [u8; 18 + 4 + 8 + 8 + 1] {
        let mut a = [0u8; 39];
        a[..18].copy_from_slice(AAD_TAG);
        a[18..22].copy_from_slice(&self.device.0.to_be_bytes());
        a[22..30].copy_from_slice(&self.flow_id.to_be_bytes());
        a[30..38].copy_from_slice(&self.flow_start.to_be_bytes());
        a[38] = match self.dir {
            SampleDir::ToServer => 0,
            SampleDir::ToClient => 1,
        };
        a
    }
}

impl SampleKey {
    /// Loads the key from `dir/samples.key`, creating it (32 random bytes, mode 0600) when missing.
    pub fn load_or_create(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(KEY_FILE);
        match Self::load(&path) {
            Ok(k) => Ok(k),
            Err(LoadError::Missing) => Self::create(&path),
            Err(LoadError::Store(e)) => Err(e),
        }
    }

    /// Loads an existing key; a missing key is an error (samples cannot be read without it).
    pub fn load_existing(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(KEY_FILE);
        match Self::load(&path) {
            Ok(k) => Ok(k),
            Err(LoadError::Missing) => Err(StoreError::Crypto(format!(
                "the key {} is missing, so stored samples cannot be decrypted (they are lost without it)",
                path.display()
            ))),
            Err(LoadError::Store(e)) => Err(e),
        }
    }

    fn load(path: &Path) -> Result<Self, LoadError> {
        let mut f = match fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(LoadError::Missing),
            Err(e) => {
                return Err(LoadError::Store(StoreError::Crypto(format!(
                    "cannot read the key {}: {e}",
                    path.display()
                ))));
            }
        };
        let meta = f.metadata().map_err(|e| {
            LoadError::Store(StoreError::Crypto(format!("cannot stat {}: {e}", path.display())))
        })?;
        check_private(path, &meta).map_err(LoadError::Store)?;
        let mut buf = Vec::with_capacity(KEY_LEN + 1);
        Read::by_ref(&mut f)
            .take(KEY_LEN as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(|e| {
                LoadError::Store(StoreError::Crypto(format!(
                    "cannot read the key {}: {e}",
                    path.display()
                )))
            })?;
        let key: [u8; KEY_LEN] = buf.as_slice().try_into().map_err(|_| {
            LoadError::Store(StoreError::Crypto(format!(
                "the key {} is not 32 bytes long ({} read): it is damaged; move it away only if \
                 you accept losing the stored samples",
                path.display(),
                buf.len()
            )))
        })?;
        Ok(Self::from_bytes(key, path.to_path_buf()))
    }

    fn create(path: &Path) -> Result<Self, StoreError> {
        let mut key = [0u8; KEY_LEN];
        getrandom::fill(&mut key)
            .map_err(|e| StoreError::Crypto(format!("no randomness for a new key: {e}")))?;
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let written = opts.open(path).and_then(|mut f| {
            f.write_all(&key)?;
            f.sync_all()
        });
        match written {
            Ok(()) => Ok(Self::from_bytes(key, path.to_path_buf())),
            // Another process created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match Self::load(path) {
                Ok(k) => Ok(k),
                Err(LoadError::Store(e)) => Err(e),
                Err(LoadError::Missing) => Err(StoreError::Crypto(format!(
                    "the key {} vanished while being created",
                    path.display()
                ))),
            },
            Err(e) => Err(StoreError::Crypto(format!(
                "cannot create the key {}: {e}",
                path.display()
            ))),
        }
    }

    fn from_bytes(key: [u8; KEY_LEN], path: PathBuf) -> Self {
        let cipher = XChaCha20Poly1305::new(&key.into());
        SampleKey { cipher, path }
    }

    /// The key file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Seals `plain` for `place`: returns (nonce, ciphertext with its 16-byte tag).
    pub fn seal(&self, place: &SamplePlace, plain: &[u8]) -> Result<([u8; NONCE_LEN], Vec<u8>), StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce)
            .map_err(|e| StoreError::Crypto(format!("no randomness for a nonce: {e}")))?;
        let aad = place.aad();
        let ct = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .map_err(|_| StoreError::Crypto("encryption failed".into()))?;
        Ok((nonce, ct))
    }

    /// Opens a sealed sample; any change to the nonce, ciphertext or place fails.
    pub fn open(&self, place: &SamplePlace, nonce: &[u8], ct: &[u8]) -> Result<Vec<u8>, StoreError> {
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| {
            StoreError::Crypto(format!(
                "a stored sample of flow {} has a {}-byte nonce (24 expected): the database was altered",
                place.flow_id,
                nonce.len()
            ))
        })?;
        let aad = place.aad();
        self.cipher
            .decrypt(&XNonce::from(nonce), Payload { msg: ct, aad: &aad })
            .map_err(|_| {
                StoreError::Crypto(format!(
                    "the stored sample of flow {} failed authentication: it was altered or moved \
                     (or {} is not the key it was sealed with)",
                    place.flow_id,
                    self.path.display()
                ))
            })
    }
}

enum LoadError {
    Missing,
    Store(StoreError),
}

#[cfg(unix)]
fn check_private(path: &Path, meta: &fs::Metadata) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(StoreError::Crypto(format!(
            "the key {} is readable by other users (mode {:o}); refusing to use it: run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path, _meta: &fs::Metadata) -> Result<(), StoreError> {
    Ok(())
}
