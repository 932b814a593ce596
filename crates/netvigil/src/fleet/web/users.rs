//! Dashboard accounts: names, argon2id password hashes (PHC strings; the password itself is
//! never stored) and passkeys, in one JSON file (`DATA_DIR/fleet-web/users.json`, mode 0600).
//! Every change is a read-modify-write under an exclusive lock on `users.lock`, written to a
//! temporary file and renamed, so `netvigil server user add` and a running server (which
//! updates passkey counters) never lose each other's changes.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use serde::{Deserialize, Serialize};

use super::webauthn::{PublicKey, b64url, b64url_decode};

/// Shortest password accepted.
pub const MIN_PASSWORD: usize = 10;
/// Longest password accepted (argon2 takes any length; this bounds the work per attempt).
pub const MAX_PASSWORD: usize = 1024;

/// One account.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct User {
    pub name: String,
    /// argon2id PHC string (`$argon2id$v=19$m=...`).
    pub hash: String,
    pub created_ms: i64,
    /// Random WebAuthn user handle (base64url), fixed for the account.
    pub handle: String,
    #[serde(default)]
    pub passkeys: Vec<Passkey>,
}

/// One registered passkey.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Passkey {
    /// Credential id (base64url).
    pub id: String,
    /// COSE algorithm (-7 ES256, -8 EdDSA).
    pub alg: i64,
    /// Raw public key (base64url): the P-256 point or the Ed25519 key.
    pub key: String,
    pub sign_count: u32,
    pub created_ms: i64,
    pub last_used_ms: Option<i64>,
}

impl Passkey {
    /// The public key, for verification.
    pub fn public_key(&self) -> Result<PublicKey> {
        let raw = b64url_decode(&self.key).map_err(|e| anyhow::anyhow!("{e}"))?;
        PublicKey::from_stored(self.alg, raw).map_err(|e| anyhow::anyhow!("{e}"))
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File_ {
    version: u32,
    users: Vec<User>,
}

/// The accounts file.
#[derive(Clone, Debug)]
pub struct Users {
    path: PathBuf,
}

/// A user name: 1-64 characters of letters, digits, `.`, `_`, `-`, `@`.
pub fn check_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
    {
        bail!("user name {name:?}: use 1 to 64 letters, digits, '.', '_', '-' or '@'");
    }
    Ok(())
}

/// An argon2id hash (default parameters: 19 MiB, 2 passes, 1 lane) with a random salt.
pub fn hash_password(password: &str) -> Result<String> {
    if password.chars().count() < MIN_PASSWORD {
        bail!("the password is too short: use at least {MIN_PASSWORD} characters");
    }
    if password.len() > MAX_PASSWORD {
        bail!("the password is longer than {MAX_PASSWORD} bytes");
    }
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let h = argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?;
    Ok(h.to_string())
}

/// Whether `password` matches the PHC string `hash` (constant time inside argon2).
pub fn verify_password(hash: &str, password: &str) -> bool {
    if password.len() > MAX_PASSWORD {
        return false;
    }
    PasswordHash::new(hash).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

impl Users {
    /// The file `dir/users.json` (created on the first change).
    pub fn new(dir: &Path) -> Users {
        Users {
            path: dir.join("users.json"),
        }
    }

    /// Where the accounts are.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> Result<File> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let lock_path = dir.join("users.lock");
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        f.lock()
            .with_context(|| format!("locking {}", lock_path.display()))?;
        Ok(f)
    }

    fn read(&self) -> Result<File_> {
        match std::fs::read(&self.path) {
            Ok(b) => serde_json::from_slice(&b).with_context(|| {
                format!(
                    "{} is not a netvigil accounts file: fix it or move it away",
                    self.path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(File_ {
                version: 1,
                users: Vec::new(),
            }),
            Err(e) => Err(e).with_context(|| format!("reading {}", self.path.display())),
        }
    }

    fn write(&self, f: &File_) -> Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(f)?;
        crate::fleet::identity::write_private(&tmp, &text)?;
        File::open(&tmp).and_then(|f| f.sync_all()).ok();
        std::fs::rename(&tmp, &self.path).with_context(|| format!("replacing {}", self.path.display()))?;
        Ok(())
    }

    /// Applies `change` to the accounts under the lock and saves them.
    fn update<T>(&self, change: impl FnOnce(&mut Vec<User>) -> Result<T>) -> Result<T> {
        let _lock = self.lock()?;
        let mut f = self.read()?;
        let out = change(&mut f.users)?;
        f.version = 1;
        self.write(&f)?;
        Ok(out)
    }

    /// Every account.
    pub fn list(&self) -> Result<Vec<User>> {
        Ok(self.read()?.users)
    }

    /// One account.
    pub fn get(&self, name: &str) -> Result<Option<User>> {
        Ok(self.read()?.users.into_iter().find(|u| u.name == name))
    }

    /// Adds an account, or replaces its password when `replace` is set.
    pub fn add(&self, name: &str, password: &str, now_ms: i64, replace: bool) -> Result<()> {
        check_name(name)?;
        let hash = hash_password(password)?;
        let mut handle = [0u8; 16];
        getrandom::fill(&mut handle).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        self.update(|users| {
            if let Some(u) = users.iter_mut().find(|u| u.name == name) {
                if !replace {
                    bail!("user {name} exists already: pass --replace to set a new password");
                }
                u.hash = hash;
                return Ok(());
            }
            users.push(User {
                name: name.to_string(),
                hash,
                created_ms: now_ms,
                handle: b64url(&handle),
                passkeys: Vec::new(),
            });
            Ok(())
        })
    }

    /// Removes an account (and its passkeys). False when there was none.
    pub fn remove(&self, name: &str) -> Result<bool> {
        self.update(|users| {
            let before = users.len();
            users.retain(|u| u.name != name);
            Ok(users.len() != before)
        })
    }

    /// Adds a passkey to an account.
    pub fn add_passkey(&self, name: &str, pk: Passkey) -> Result<()> {
        self.update(|users| {
            if users.iter().flat_map(|u| &u.passkeys).any(|p| p.id == pk.id) {
                bail!("this passkey is registered already");
            }
            let u = users
                .iter_mut()
                .find(|u| u.name == name)
                .context("the account was removed")?;
            u.passkeys.push(pk);
            Ok(())
        })
    }

    /// The account holding the passkey with this credential id.
    pub fn by_passkey(&self, id: &str) -> Result<Option<(User, Passkey)>> {
        Ok(self.read()?.users.into_iter().find_map(|u| {
            let p = u.passkeys.iter().find(|p| p.id == id)?.clone();
            Some((u, p))
        }))
    }

    /// Stores a passkey's new counter, only if it is still above the stored one (two logins
    /// racing with the same counter: the second loses).
    pub fn bump_counter(&self, id: &str, expected_old: u32, new: u32, now_ms: i64) -> Result<bool> {
        self.update(|users| {
            let Some(p) = users
                .iter_mut()
                .flat_map(|u| u.passkeys.iter_mut())
                .find(|p| p.id == id)
            else {
                return Ok(false);
            };
            if p.sign_count != expected_old {
                return Ok(false);
            }
            p.sign_count = new;
            p.last_used_ms = Some(now_ms);
            Ok(true)
        })
    }

    /// Removes one of an account's passkeys.
    pub fn remove_passkey(&self, name: &str, id: &str) -> Result<bool> {
        self.update(|users| {
            let Some(u) = users.iter_mut().find(|u| u.name == name) else {
                return Ok(false);
            };
            let before = u.passkeys.len();
            u.passkeys.retain(|p| p.id != id);
            Ok(u.passkeys.len() != before)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nv-users-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn argon2id_hashes_are_stored_never_passwords() {
        let d = dir("hash");
        let u = Users::new(&d);
        u.add("alice", "correct horse battery", 1, false).unwrap();
        let text = std::fs::read_to_string(u.path()).unwrap();
        assert!(!text.contains("correct horse battery"), "{text}");
        let a = u.get("alice").unwrap().unwrap();
        assert!(
            a.hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{}",
            a.hash
        );
        assert!(verify_password(&a.hash, "correct horse battery"));
        assert!(!verify_password(&a.hash, "correct horse batterY"));
        // A second account with the same password gets another salt.
        u.add("bob", "correct horse battery", 1, false).unwrap();
        assert_ne!(u.get("bob").unwrap().unwrap().hash, a.hash);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(u.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn names_passwords_and_duplicates_are_checked() {
        let d = dir("checks");
        let u = Users::new(&d);
        assert!(u.add("a b", "long enough pw", 1, false).is_err());
        let e = u.add("carol", "short", 1, false).unwrap_err().to_string();
        assert!(e.contains("too short"), "{e}");
        u.add("carol", "long enough pw", 1, false).unwrap();
        let e = u
            .add("carol", "another long pw", 1, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--replace"), "{e}");
        u.add("carol", "another long pw", 1, true).unwrap();
        assert!(verify_password(
            &u.get("carol").unwrap().unwrap().hash,
            "another long pw"
        ));
        assert!(u.remove("carol").unwrap());
        assert!(!u.remove("carol").unwrap());
        assert!(u.list().unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn garbage_hashes_never_verify() {
        assert!(!verify_password("", "x"));
        assert!(!verify_password("$argon2id$v=19$garbage", "x"));
    }
}
