//! Dashboard accounts: names, argon2id password hashes (PHC strings; the password itself is
//! never stored) and passkeys, in the fleet database (`fleet_users`, `fleet_passkeys` in
//! `fleet.db` or the shared PostgreSQL; fleet/db.rs), so every server process on one database
//! knows the same accounts. Each change is one transaction. An accounts file of an older
//! version (`DATA_DIR/fleet-web/users.json`) is imported once ([`Users::import_json`]) and
//! renamed to `users.json.imported`.

use std::path::Path;

use anyhow::{Context, Result, bail};
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use serde::{Deserialize, Serialize};

use super::webauthn::{PublicKey, b64url, b64url_decode};
use crate::fleet::db::{FleetDb, SharedDb, Target, Val};

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

/// The accounts file of older versions (imported once).
#[derive(Debug, Default, Serialize, Deserialize)]
struct File_ {
    #[allow(dead_code, reason = "read for completeness; only version 1 existed")]
    #[serde(default)]
    version: u32,
    users: Vec<User>,
}

/// The accounts, in the fleet database.
#[derive(Clone, Debug)]
pub struct Users {
    db: SharedDb,
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

fn passkey_row(r: &[Val]) -> Passkey {
    Passkey {
        id: r[0].s(),
        alg: r[1].i(),
        key: r[2].s(),
        sign_count: u32::try_from(r[3].i()).unwrap_or(0),
        created_ms: r[4].i(),
        last_used_ms: r[5].opt_i(),
    }
}

const PASSKEY_COLS: &str = "p.id, p.alg, p.pubkey, p.sign_count, p.created_ms, p.last_used_ms";

fn user_rows(db: &mut FleetDb, clause: &str, p: &[Val]) -> Result<Vec<User>> {
    let mut users: Vec<User> = db
        .query(
            &format!("SELECT name, hash, created_ms, handle FROM fleet_users {clause} ORDER BY name"),
            p,
        )?
        .into_iter()
        .map(|r| User {
            name: r[0].s(),
            hash: r[1].s(),
            created_ms: r[2].i(),
            handle: r[3].s(),
            passkeys: Vec::new(),
        })
        .collect();
    for u in &mut users {
        u.passkeys = db
            .query(
                &format!(
                    "SELECT {PASSKEY_COLS} FROM fleet_passkeys p WHERE p.user_name = ?1 ORDER BY p.created_ms, p.id"
                ),
                &[Val::S(u.name.clone())],
            )?
            .iter()
            .map(|r| passkey_row(r))
            .collect();
    }
    Ok(users)
}

fn insert_passkey(db: &mut FleetDb, user: &str, pk: &Passkey) -> Result<()> {
    db.exec(
        "INSERT INTO fleet_passkeys (id, user_name, alg, pubkey, sign_count, created_ms, last_used_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        &[
            Val::S(pk.id.clone()),
            Val::S(user.to_string()),
            Val::I(pk.alg),
            Val::S(pk.key.clone()),
            Val::I(i64::from(pk.sign_count)),
            Val::I(pk.created_ms),
            pk.last_used_ms.map_or(Val::Null, Val::I),
        ],
    )?;
    Ok(())
}

impl Users {
    /// The accounts in the fleet database `db`.
    pub fn new(db: SharedDb) -> Users {
        Users { db }
    }

    /// The accounts in the fleet database at `target` (a connection of their own).
    pub fn open(target: &Target) -> Users {
        Users::new(SharedDb::new(target))
    }

    /// The database handle (sessions use the same connection).
    pub fn db(&self) -> &SharedDb {
        &self.db
    }

    /// Where the accounts are, for messages.
    pub fn describe(&self) -> String {
        match self.db.target() {
            Target::Dir(d) => d.join(crate::fleet::db::DB_FILE).display().to_string(),
            Target::Postgres(_) => "the fleet PostgreSQL database".to_string(),
        }
    }

    /// Imports the accounts file of an older version, `dir/users.json`, if there is one:
    /// accounts (and passkeys) not in the database yet are added, names already there are
    /// kept as they are, and the file is renamed to `users.json.imported`. Returns how many
    /// accounts were added (`None`: no file).
    pub fn import_json(&self, dir: &Path) -> Result<Option<usize>> {
        let path = dir.join("users.json");
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let f: File_ = serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is not a netvigil accounts file: fix it or move it away",
                path.display()
            )
        })?;
        let added = self.db.tx(|db| {
            let mut added = 0;
            for u in &f.users {
                check_name(&u.name).with_context(|| format!("{}: account {:?}", path.display(), u.name))?;
                if !db
                    .query(
                        "SELECT 1 FROM fleet_users WHERE name = ?1",
                        &[Val::S(u.name.clone())],
                    )?
                    .is_empty()
                {
                    continue;
                }
                db.exec(
                    "INSERT INTO fleet_users (name, hash, created_ms, handle) VALUES (?1, ?2, ?3, ?4)",
                    &[
                        Val::S(u.name.clone()),
                        Val::S(u.hash.clone()),
                        Val::I(u.created_ms),
                        Val::S(u.handle.clone()),
                    ],
                )?;
                for pk in &u.passkeys {
                    if db
                        .query(
                            "SELECT 1 FROM fleet_passkeys WHERE id = ?1",
                            &[Val::S(pk.id.clone())],
                        )?
                        .is_empty()
                    {
                        insert_passkey(db, &u.name, pk)?;
                    }
                }
                added += 1;
            }
            Ok(added)
        })?;
        let done = dir.join("users.json.imported");
        std::fs::rename(&path, &done).with_context(|| {
            format!(
                "{} was imported into the fleet database but cannot be renamed to {}: rename it by hand",
                path.display(),
                done.display()
            )
        })?;
        Ok(Some(added))
    }

    /// Every account.
    pub fn list(&self) -> Result<Vec<User>> {
        self.db.with(|db| user_rows(db, "", &[]))
    }

    /// One account.
    pub fn get(&self, name: &str) -> Result<Option<User>> {
        self.db
            .with(|db| user_rows(db, "WHERE name = ?1", &[Val::S(name.to_string())]))
            .map(|mut v| v.pop())
    }

    /// Adds an account, or replaces its password when `replace` is set.
    pub fn add(&self, name: &str, password: &str, now_ms: i64, replace: bool) -> Result<()> {
        check_name(name)?;
        let hash = hash_password(password)?;
        let mut handle = [0u8; 16];
        getrandom::fill(&mut handle).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        self.db.tx(|db| {
            let n = Val::S(name.to_string());
            if !db
                .query(
                    "SELECT 1 FROM fleet_users WHERE name = ?1",
                    std::slice::from_ref(&n),
                )?
                .is_empty()
            {
                if !replace {
                    bail!("user {name} exists already: pass --replace to set a new password");
                }
                db.exec(
                    "UPDATE fleet_users SET hash = ?1 WHERE name = ?2",
                    &[Val::S(hash.clone()), n],
                )?;
                return Ok(());
            }
            db.exec(
                "INSERT INTO fleet_users (name, hash, created_ms, handle) VALUES (?1, ?2, ?3, ?4)",
                &[n, Val::S(hash.clone()), Val::I(now_ms), Val::S(b64url(&handle))],
            )?;
            Ok(())
        })
    }

    /// Removes an account, its passkeys and its sessions (on every server sharing the
    /// database). False when there was none.
    pub fn remove(&self, name: &str) -> Result<bool> {
        self.db.tx(|db| {
            let n = [Val::S(name.to_string())];
            db.exec("DELETE FROM fleet_sessions WHERE user_name = ?1", &n)?;
            db.exec("DELETE FROM fleet_passkeys WHERE user_name = ?1", &n)?;
            Ok(db.exec("DELETE FROM fleet_users WHERE name = ?1", &n)? == 1)
        })
    }

    /// Adds a passkey to an account.
    pub fn add_passkey(&self, name: &str, pk: Passkey) -> Result<()> {
        self.db.tx(|db| {
            if !db
                .query(
                    "SELECT 1 FROM fleet_passkeys WHERE id = ?1",
                    &[Val::S(pk.id.clone())],
                )?
                .is_empty()
            {
                bail!("this passkey is registered already");
            }
            if db
                .query(
                    "SELECT 1 FROM fleet_users WHERE name = ?1",
                    &[Val::S(name.to_string())],
                )?
                .is_empty()
            {
                bail!("the account was removed");
            }
            insert_passkey(db, name, &pk)
        })
    }

    /// The account holding the passkey with this credential id.
    pub fn by_passkey(&self, id: &str) -> Result<Option<(User, Passkey)>> {
        self.db.with(|db| {
            let Some(r) = db
                .query(
                    &format!("SELECT {PASSKEY_COLS}, p.user_name FROM fleet_passkeys p WHERE p.id = ?1"),
                    &[Val::S(id.to_string())],
                )?
                .pop()
            else {
                return Ok(None);
            };
            let pk = passkey_row(&r);
            Ok(user_rows(db, "WHERE name = ?1", &[r[6].clone()])?
                .pop()
                .map(|u| (u, pk)))
        })
    }

    /// Stores a passkey's new counter, only if the stored one is still `expected_old` (two
    /// logins racing with the same counter, on this server or another: the second loses).
    pub fn bump_counter(&self, id: &str, expected_old: u32, new: u32, now_ms: i64) -> Result<bool> {
        self.db.with(|db| {
            Ok(db.exec(
                "UPDATE fleet_passkeys SET sign_count = ?1, last_used_ms = ?2
                 WHERE id = ?3 AND sign_count = ?4",
                &[
                    Val::I(i64::from(new)),
                    Val::I(now_ms),
                    Val::S(id.to_string()),
                    Val::I(i64::from(expected_old)),
                ],
            )? == 1)
        })
    }

    /// Removes one of an account's passkeys.
    pub fn remove_passkey(&self, name: &str, id: &str) -> Result<bool> {
        self.db.with(|db| {
            Ok(db.exec(
                "DELETE FROM fleet_passkeys WHERE id = ?1 AND user_name = ?2",
                &[Val::S(id.to_string()), Val::S(name.to_string())],
            )? == 1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nv-users-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn argon2id_hashes_are_stored_never_passwords() {
        let d = dir("hash");
        let u = Users::open(&Target::Dir(d.clone()));
        u.add("alice", "correct horse battery", 1, false).unwrap();
        drop(u);
        let raw = std::fs::read(d.join(crate::fleet::db::DB_FILE)).unwrap();
        assert!(
            !raw.windows(21).any(|w| w == b"correct horse battery"),
            "the password is in fleet.db"
        );
        let u = Users::open(&Target::Dir(d.clone()));
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
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn names_passwords_and_duplicates_are_checked() {
        let d = dir("checks");
        let u = Users::open(&Target::Dir(d.clone()));
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
    fn passkeys_counters_and_removal() {
        let d = dir("pk");
        let u = Users::open(&Target::Dir(d.clone()));
        u.add("dora", "long enough pw", 1, false).unwrap();
        let pk = Passkey {
            id: "cred1".into(),
            alg: -8,
            key: b64url(&[7u8; 32]),
            sign_count: 3,
            created_ms: 5,
            last_used_ms: None,
        };
        u.add_passkey("dora", pk.clone()).unwrap();
        let e = u.add_passkey("dora", pk.clone()).unwrap_err().to_string();
        assert!(e.contains("registered already"), "{e}");
        assert!(
            u.add_passkey(
                "nobody",
                Passkey {
                    id: "c2".into(),
                    ..pk.clone()
                }
            )
            .is_err()
        );
        let (user, got) = u.by_passkey("cred1").unwrap().unwrap();
        assert_eq!((user.name.as_str(), &got), ("dora", &pk));
        assert!(u.bump_counter("cred1", 3, 4, 99).unwrap());
        assert!(
            !u.bump_counter("cred1", 3, 5, 99).unwrap(),
            "a stale counter loses"
        );
        let p = &u.get("dora").unwrap().unwrap().passkeys[0];
        assert_eq!((p.sign_count, p.last_used_ms), (4, Some(99)));
        assert!(!u.remove_passkey("someone", "cred1").unwrap());
        assert!(u.remove("dora").unwrap());
        assert!(
            u.by_passkey("cred1").unwrap().is_none(),
            "passkeys go with the account"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn an_old_accounts_file_is_imported_once() {
        let d = dir("import");
        let web = d.join("fleet-web");
        std::fs::create_dir_all(&web).unwrap();
        let hash = hash_password("imported password").unwrap();
        let text = serde_json::json!({"version": 1, "users": [
            {"name": "erin", "hash": hash, "created_ms": 7, "handle": "aGFuZGxl",
             "passkeys": [{"id": "k1", "alg": -7, "key": "AAAA", "sign_count": 2,
                           "created_ms": 8, "last_used_ms": null}]},
            {"name": "fred", "hash": hash, "created_ms": 9, "handle": "aGFuZGxm"}]});
        std::fs::write(web.join("users.json"), text.to_string()).unwrap();
        let u = Users::open(&Target::Dir(d.clone()));
        // fred exists already with another password: kept as it is.
        u.add("fred", "the database one", 1, false).unwrap();
        assert_eq!(u.import_json(&web).unwrap(), Some(1));
        assert!(!web.join("users.json").exists());
        assert!(web.join("users.json.imported").exists());
        assert_eq!(u.import_json(&web).unwrap(), None, "imported once");
        let erin = u.get("erin").unwrap().unwrap();
        assert!(verify_password(&erin.hash, "imported password"));
        assert_eq!((erin.created_ms, erin.handle.as_str()), (7, "aGFuZGxl"));
        assert_eq!(erin.passkeys.len(), 1);
        assert_eq!(erin.passkeys[0].sign_count, 2);
        let fred = u.get("fred").unwrap().unwrap();
        assert!(verify_password(&fred.hash, "the database one"));
        // A broken file is an error naming it, and stays where it is.
        std::fs::write(web.join("users.json"), "{not json").unwrap();
        let e = format!("{:#}", u.import_json(&web).unwrap_err());
        assert!(e.contains("users.json") && e.contains("move it away"), "{e}");
        assert!(web.join("users.json").exists());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn garbage_hashes_never_verify() {
        assert!(!verify_password("", "x"));
        assert!(!verify_password("$argon2id$v=19$garbage", "x"));
    }
}
