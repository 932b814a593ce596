//! Who is logged in: sessions (random 32-byte tokens; only their SHA-256 is kept, in memory),
//! the failed-login limiter (per account and per client address, over a sliding window), and
//! the one-time WebAuthn challenges. Everything is bounded in size and expires on its own.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Name of the session cookie (`__Host-`: Secure, Path=/ and no Domain are required by the
/// browser, so no subdomain can set or read it).
pub const COOKIE: &str = "__Host-nv_session";
/// Most sessions kept at once.
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
    pub expires: Instant,
    /// Wall-clock expiry (ms since the epoch), for the page.
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
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    failures: Mutex<HashMap<String, Vec<Instant>>>,
    challenges: Mutex<HashMap<Vec<u8>, (Purpose, Instant)>>,
    users_mtime: Mutex<Option<Option<std::time::SystemTime>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Random bytes as lower-case hex.
pub fn random_hex(n: usize) -> Result<String, String> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| format!("no randomness: {e}"))?;
    Ok(crate::fleet::identity::hex(&b))
}

impl Auth {
    /// An empty table.
    pub fn new(limits: Limits) -> Auth {
        Auth {
            limits,
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            challenges: Mutex::new(HashMap::new()),
            users_mtime: Mutex::new(None),
        }
    }

    /// Opens a session; returns the token for the cookie.
    pub fn open(
        &self,
        user: &str,
        method: &'static str,
        now: Instant,
        now_ms: i64,
    ) -> Result<String, String> {
        let token = random_hex(32)?;
        let mut s = lock(&self.sessions);
        if s.len() >= MAX_SESSIONS {
            s.retain(|_, v| v.expires > now);
            if s.len() >= MAX_SESSIONS {
                return Err("too many open sessions: try again later".into());
            }
        }
        s.insert(
            digest(&token),
            Session {
                user: user.to_string(),
                expires: now + self.limits.session_ttl,
                expires_ms: now_ms + self.limits.session_ttl.as_millis() as i64,
                method,
            },
        );
        Ok(token)
    }

    /// The live session of a token (an expired one is removed).
    pub fn get(&self, token: &str, now: Instant) -> Option<Session> {
        let mut s = lock(&self.sessions);
        let k = digest(token);
        match s.get(&k) {
            Some(v) if v.expires > now => Some(v.clone()),
            Some(_) => {
                s.remove(&k);
                None
            }
            None => None,
        }
    }

    /// Ends a session.
    pub fn close(&self, token: &str) {
        lock(&self.sessions).remove(&digest(token));
    }

    /// Ends the sessions of accounts no longer in `users.json` (checked when the file's
    /// modification time changed: one `stat` per request).
    pub fn sync_accounts(&self, users: &super::users::Users) {
        let m = std::fs::metadata(users.path()).and_then(|m| m.modified()).ok();
        {
            let mut seen = lock(&self.users_mtime);
            if *seen == Some(m) {
                return;
            }
            *seen = Some(m);
        }
        let names: std::collections::HashSet<String> = match users.list() {
            Ok(l) => l.into_iter().map(|u| u.name).collect(),
            // Unreadable just now (being replaced): check again next time.
            Err(_) => {
                *lock(&self.users_mtime) = None;
                return;
            }
        };
        lock(&self.sessions).retain(|_, v| names.contains(&v.user));
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

    #[test]
    fn sessions_expire_and_close() {
        let a = Auth::new(Limits {
            session_ttl: Duration::from_secs(10),
            ..Limits::default()
        });
        let t0 = Instant::now();
        let tok = a.open("alice", "password", t0, 0).unwrap();
        assert_eq!(a.get(&tok, t0).unwrap().user, "alice");
        assert!(a.get(&tok, t0 + Duration::from_secs(11)).is_none());
        assert!(a.get(&tok, t0).is_none(), "an expired session is gone for good");
        let tok = a.open("alice", "password", t0, 0).unwrap();
        a.close(&tok);
        assert!(a.get(&tok, t0).is_none());
        assert!(a.get("", t0).is_none());
    }

    #[test]
    fn limiter_blocks_then_frees() {
        let a = Auth::new(Limits {
            per_user: 3,
            per_addr: 5,
            window: Duration::from_secs(60),
            ..Limits::default()
        });
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
        let a = Auth::new(Limits::default());
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
