//! Who is logged in: sessions (random 32-byte tokens; only their SHA-256 is kept) in the
//! fleet database (`fleet_sessions`), so every server process sharing it accepts them and a
//! restart logs nobody out; a session of a removed account is refused (the lookup joins
//! `fleet_users`). In this process's memory: the failed-login limiter (per account and per
//! client address, over a sliding window: each server counts on its own) and the one-time
//! WebAuthn challenges (a passkey ceremony ends on the server that began it). Everything is
//! bounded in size and expires on its own.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::fleet::db::{SharedDb, Val};

/// Name of the session cookie (`__Host-`: Secure, Path=/ and no Domain are required by the
/// browser, so no subdomain can set or read it).
pub const COOKIE: &str = "__Host-nv_session";
/// Most sessions kept at once (in the database, all servers together).
const MAX_SESSIONS: usize = 10_000;
/// Most challenges pending at once.
const MAX_CHALLENGES: usize = 1_000;
/// Most limiter entries.
const MAX_LIMITER: usize = 100_000;

/// Limits on logins.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// How long a session lasts from login.
    pub session_ttl: Duration,
    /// Failed logins allowed per account in `window`.
    pub per_user: u32,
    /// Failed logins allowed per client address in `window`.
    pub per_addr: u32,
    /// The limiter's window.
    pub window: Duration,
    /// How long a WebAuthn challenge stays valid.
    pub challenge_ttl: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            session_ttl: Duration::from_secs(12 * 3600),
            per_user: 5,
            per_addr: 20,
            window: Duration::from_secs(15 * 60),
            challenge_ttl: Duration::from_secs(120),
        }
    }
}

/// A logged-in user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    /// Wall-clock expiry (ms since the epoch).
    pub expires_ms: i64,
    /// How the user logged in: `password` or `passkey`.
    pub method: &'static str,
}

/// What a pending challenge is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Registering a passkey for this user.
    Register(String),
    /// Logging in.
    Login,
}

/// The session table, limiter and challenges.
#[derive(Debug)]
pub struct Auth {
    pub limits: Limits,
    db: SharedDb,
    failures: Mutex<HashMap<String, Vec<Instant>>>,
    challenges: Mutex<HashMap<Vec<u8>, (Purpose, Instant)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn digest(token: &str) -> Val {
    Val::S(crate::fleet::identity::hex(&Sha256::digest(token.as_bytes())))
}

/// Random bytes as lower-case hex.
pub fn random_hex(n: usize) -> Result<String, String> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| format!("no randomness: {e}"))?;
    Ok(crate::fleet::identity::hex(&b))
}

impl Auth {
    /// A limiter and challenge table in memory, sessions in the fleet database `db`.
    pub fn new(limits: Limits, db: SharedDb) -> Auth {
        Auth {
            limits,
            db,
            failures: Mutex::new(HashMap::new()),
            challenges: Mutex::new(HashMap::new()),
        }
    }

    /// Opens a session for an existing account; returns the token for the cookie. Blocks
    /// (database).
    pub fn open(&self, user: &str, method: &'static str, now_ms: i64) -> Result<String, String> {
        let token = random_hex(32)?;
        let ttl = i64::try_from(self.limits.session_ttl.as_millis()).unwrap_or(i64::MAX / 2);
        let u = Val::S(user.to_string());
        self.db
            .tx(|db| {
                db.exec(
                    "DELETE FROM fleet_sessions WHERE expires_ms <= ?1",
                    &[Val::I(now_ms)],
                )?;
                let n = db
                    .query("SELECT COUNT(*) FROM fleet_sessions", &[])?
                    .first()
                    .map_or(0, |r| r[0].i());
                if n >= MAX_SESSIONS as i64 {
                    anyhow::bail!("too many open sessions: try again later");
                }
                if db
                    .query(
                        "SELECT 1 FROM fleet_users WHERE name = ?1",
                        std::slice::from_ref(&u),
                    )?
                    .is_empty()
                {
                    anyhow::bail!("the account was removed");
                }
                db.exec(
                    "INSERT INTO fleet_sessions (hash, user_name, method, created_ms, expires_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    &[
                        digest(&token),
                        u,
                        Val::S(method.to_string()),
                        Val::I(now_ms),
                        Val::I(now_ms.saturating_add(ttl)),
                    ],
                )?;
                Ok(())
            })
            .map_err(|e| format!("{e:#}"))?;
        Ok(token)
    }

    /// The live session of a token: not expired, not logged out, its account still there
    /// (on any server sharing the database). Blocks (database).
    pub fn get(&self, token: &str, now_ms: i64) -> anyhow::Result<Option<Session>> {
        if token.is_empty() || token.len() > 256 {
            return Ok(None);
        }
        let rows = self.db.with(|db| {
            db.query(
                "SELECT s.user_name, s.method, s.expires_ms FROM fleet_sessions s
                 JOIN fleet_users u ON u.name = s.user_name
                 WHERE s.hash = ?1 AND s.expires_ms > ?2",
                &[digest(token), Val::I(now_ms)],
            )
        })?;
        Ok(rows.first().map(|r| Session {
            user: r[0].s(),
            expires_ms: r[2].i(),
            method: if r[1].s() == "passkey" {
                "passkey"
            } else {
                "password"
            },
        }))
    }

    /// Ends a session (on every server). Blocks (database).
    pub fn close(&self, token: &str) -> anyhow::Result<()> {
        self.db.with(|db| {
            db.exec("DELETE FROM fleet_sessions WHERE hash = ?1", &[digest(token)])
                .map(|_| ())
        })
    }

    fn keys(user: Option<&str>, addr: IpAddr) -> Vec<(String, bool)> {
        let mut k = vec![(format!("a:{addr}"), false)];
        if let Some(u) = user {
            k.push((format!("u:{u}"), true));
        }
        k
    }

    /// `Some(wait)` when logins for this user or from this address are refused for now.
    pub fn blocked(&self, user: Option<&str>, addr: IpAddr, now: Instant) -> Option<Duration> {
        let f = lock(&self.failures);
        let mut wait = None;
        for (k, is_user) in Self::keys(user, addr) {
            let limit = if is_user {
                self.limits.per_user
            } else {
                self.limits.per_addr
            } as usize;
            if let Some(v) = f.get(&k) {
                let recent: Vec<&Instant> = v
                    .iter()
                    .filter(|t| now.duration_since(**t) < self.limits.window)
                    .collect();
                if recent.len() >= limit {
                    // Free again when the oldest failure that counts leaves the window.
                    let oldest = recent[recent.len() - limit];
                    let w = self.limits.window.saturating_sub(now.duration_since(*oldest));
                    wait = Some(wait.map_or(w, |x: Duration| x.max(w)));
                }
            }
        }
        wait
    }

    /// Counts a failed login.
    pub fn failed(&self, user: Option<&str>, addr: IpAddr, now: Instant) {
        let mut f = lock(&self.failures);
        if f.len() >= MAX_LIMITER {
            let w = self.limits.window;
            f.retain(|_, v| v.iter().any(|t| now.duration_since(*t) < w));
        }
        for (k, _) in Self::keys(user, addr) {
            let v = f.entry(k).or_default();
            v.retain(|t| now.duration_since(*t) < self.limits.window);
            v.push(now);
        }
    }

    /// Forgets a user's failures after a good login (the address's stay).
    pub fn succeeded(&self, user: &str) {
        lock(&self.failures).remove(&format!("u:{user}"));
    }

    /// A new challenge (32 random bytes) for `purpose`.
    pub fn challenge(&self, purpose: Purpose, now: Instant) -> Result<Vec<u8>, String> {
        let mut b = vec![0u8; 32];
        getrandom::fill(&mut b).map_err(|e| format!("no randomness: {e}"))?;
        let mut c = lock(&self.challenges);
        c.retain(|_, (_, exp)| *exp > now);
        if c.len() >= MAX_CHALLENGES {
            return Err("too many passkey ceremonies in progress: try again in a minute".into());
        }
        c.insert(b.clone(), (purpose, now + self.limits.challenge_ttl));
        Ok(b)
    }

    /// Takes a challenge (one time): true when it existed, had not expired and was for
    /// `purpose`.
    pub fn take_challenge(&self, challenge: &[u8], purpose: &Purpose, now: Instant) -> bool {
        match lock(&self.challenges).remove(challenge) {
            Some((p, exp)) => exp > now && &p == purpose,
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(tag: &str, limits: Limits) -> (Auth, std::path::PathBuf) {
        let d = std::env::temp_dir().join(format!("nv-auth-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let db = SharedDb::new(&crate::fleet::db::Target::Dir(d.clone()));
        super::super::users::Users::new(db.clone())
            .add("alice", "long enough pw", 1, false)
            .unwrap();
        (Auth::new(limits, db), d)
    }

    #[test]
    fn sessions_expire_and_close() {
        let (a, d) = auth(
            "expire",
            Limits {
                session_ttl: Duration::from_secs(10),
                ..Limits::default()
            },
        );
        let t0 = 1_000_000;
        let tok = a.open("alice", "password", t0).unwrap();
        let s = a.get(&tok, t0).unwrap().unwrap();
        assert_eq!(
            (s.user.as_str(), s.method, s.expires_ms),
            ("alice", "password", t0 + 10_000)
        );
        assert!(a.get(&tok, t0 + 11_000).unwrap().is_none());
        let tok = a.open("alice", "passkey", t0).unwrap();
        assert_eq!(a.get(&tok, t0).unwrap().unwrap().method, "passkey");
        a.close(&tok).unwrap();
        assert!(a.get(&tok, t0).unwrap().is_none());
        assert!(a.get("", t0).unwrap().is_none());
        assert!(
            a.open("nobody", "password", t0).is_err(),
            "no session without an account"
        );
        // Only the token's SHA-256 is in the database.
        let tok = a.open("alice", "password", t0).unwrap();
        drop(a);
        let raw = std::fs::read(d.join(crate::fleet::db::DB_FILE)).unwrap();
        let wal = std::fs::read(d.join(format!("{}-wal", crate::fleet::db::DB_FILE))).unwrap_or_default();
        for bytes in [&raw, &wal] {
            assert!(!bytes.windows(tok.len()).any(|w| w == tok.as_bytes()));
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn limiter_blocks_then_frees() {
        let (a, d) = auth(
            "limiter",
            Limits {
                per_user: 3,
                per_addr: 5,
                window: Duration::from_secs(60),
                ..Limits::default()
            },
        );
        let _ = std::fs::remove_dir_all(&d);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(a.blocked(Some("bob"), ip, t0).is_none(), "attempt {i}");
            a.failed(Some("bob"), ip, t0 + Duration::from_secs(i));
        }
        let w = a
            .blocked(Some("bob"), other, t0 + Duration::from_secs(3))
            .unwrap();
        assert_eq!(w, Duration::from_secs(57));
        assert!(a.blocked(Some("carol"), other, t0).is_none());
        // Two more failures for other names from ip: the address limit.
        a.failed(Some("x"), ip, t0);
        a.failed(Some("y"), ip, t0);
        assert!(a.blocked(Some("carol"), ip, t0).is_some());
        assert!(
            a.blocked(Some("bob"), other, t0 + Duration::from_secs(61))
                .is_none()
        );
    }

    #[test]
    fn challenges_are_one_time_and_expire() {
        let (a, d) = auth("challenge", Limits::default());
        let _ = std::fs::remove_dir_all(&d);
        let t0 = Instant::now();
        let c = a.challenge(Purpose::Login, t0).unwrap();
        assert!(!a.take_challenge(&c, &Purpose::Register("a".into()), t0));
        let c = a.challenge(Purpose::Login, t0).unwrap();
        assert!(a.take_challenge(&c, &Purpose::Login, t0));
        assert!(!a.take_challenge(&c, &Purpose::Login, t0));
        let c = a.challenge(Purpose::Login, t0).unwrap();
        assert!(!a.take_challenge(&c, &Purpose::Login, t0 + Duration::from_secs(121)));
    }
}
