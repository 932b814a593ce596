//! The fleet server: accepts agents over mutually authenticated TLS 1.3 (blocking std::net, one
//! thread per connection, bounded), enrolls keys with one-time tokens, reads each batch's JSON
//! lines back into records (`engine::Record::from_json`, alerts into `store::AlertRow`) on the
//! connection's thread, and writes them through the store (`db::StorePool`) under the agent's
//! device id, with the batch's (device, sequence number) in the same transaction: a batch is
//! stored once, and acknowledged only after its commit.

use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};

use super::db::{FleetDb, StorePool, Target, TokenRefusal};
use super::frame::{self, AckStatus, ErrorCode, Frame};
use super::identity::{self, Identity};

/// Most connections served at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 512;
/// The TLS handshake and the first frame must arrive within this.
const HANDSHAKE: Duration = Duration::from_secs(15);
/// A connection idle this long is closed.
const IDLE: Duration = Duration::from_secs(120);

/// Wall clock, ns since the epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The server's TLS identity, kept in `data_dir/server-tls/` (created on first run).
pub fn server_identity(data_dir: &Path) -> Result<Identity> {
    Identity::load_or_create(&data_dir.join("server-tls"), "netvigil-server")
}

/// A running fleet server.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    fingerprint: String,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<(u64, TcpStream)>>>,
    accept: Option<JoinHandle<()>>,
}

struct Shared {
    tls: Arc<rustls::ServerConfig>,
    db: Mutex<FleetDb>,
    store: StorePool,
    conns: Arc<Mutex<Vec<(u64, TcpStream)>>>,
    next_conn: AtomicU64,
}

impl Server {
    /// Binds `listen`, opens (creating) the fleet database and the record store at `db` and the
    /// TLS identity in `data_dir`, and serves on a thread of its own.
    pub fn start(data_dir: &Path, db: &Target, listen: SocketAddr) -> Result<Server> {
        let id = server_identity(data_dir)?;
        let store = StorePool::open(db)?;
        let db = FleetDb::open(db)?;
        let listener = TcpListener::bind(listen).with_context(|| {
            format!("binding {listen}: is another server running there? pick another --listen")
        })?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::new(Shared {
            tls: identity::server_config(&id)?,
            db: Mutex::new(db),
            store,
            conns: conns.clone(),
            next_conn: AtomicU64::new(0),
        });
        let stop2 = stop.clone();
        let accept = std::thread::Builder::new()
            .name("fleet-accept".into())
            .spawn(move || accept_loop(listener, shared, stop2))?;
        Ok(Server {
            addr,
            fingerprint: id.fingerprint(),
            stop,
            conns,
            accept: Some(accept),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// SHA-256 of the server certificate (give it to agents with their token).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Stops accepting and closes every open connection.
    #[allow(
        dead_code,
        reason = "only tests call it so far (reading back stored batches, stopping a server, decoding a buffer)"
    )]
    pub fn stop(mut self) {
        self.halt();
    }

    /// Stops cleanly: no new connections; each open one stops reading (a batch whose frame
    /// was read is still committed and acknowledged; one only partly received is not, and its
    /// agent sends it again later); waits up to `grace` for the connections to end, then closes
    /// what is left. Returns how many connections had to be closed that way. The store's
    /// writers have nothing left to do once every connection thread is done (each waits for its
    /// batch's commit).
    pub fn shutdown(mut self, grace: Duration) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        for (_, s) in self.conns.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = s.shutdown(Shutdown::Read);
        }
        let deadline = std::time::Instant::now() + grace;
        loop {
            let left = self.conns.lock().unwrap_or_else(|e| e.into_inner()).len();
            if left == 0 {
                return 0;
            }
            if std::time::Instant::now() >= deadline {
                for (_, s) in self.conns.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
                    let _ = s.shutdown(Shutdown::Both);
                }
                return left;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        for (_, s) in self.conns.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.accept.is_some() {
            self.halt();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stop: Arc<AtomicBool>) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
        {
            let mut conns = shared.conns.lock().unwrap_or_else(|e| e.into_inner());
            if conns.len() >= MAX_CONNECTIONS {
                continue;
            }
            if let Ok(c) = stream.try_clone() {
                conns.push((id, c));
            }
        }
        let sh = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("fleet-conn".into())
            .spawn(move || {
                if let Err(e) = serve(stream, &sh) {
                    tracing::warn!(error = format_args!("{e:#}"), "server: connection closed");
                }
                sh.conns
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .retain(|(i, _)| *i != id);
            });
        if spawned.is_err() {
            shared
                .conns
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|(i, _)| *i != id);
        }
    }
}

type Tls = rustls::StreamOwned<rustls::ServerConnection, TcpStream>;

fn refuse(tls: &mut Tls, code: ErrorCode, message: &str) -> Result<()> {
    let _ = frame::write_frame(
        tls,
        &Frame::Error {
            code,
            message: message.to_owned(),
        },
    );
    tls.conn.send_close_notify();
    let _ = tls.conn.complete_io(&mut tls.sock);
    anyhow::bail!("refused: {message}")
}

fn serve(stream: TcpStream, sh: &Shared) -> Result<()> {
    // Short until the first frame (a handshake that stalls holds a connection slot).
    stream.set_read_timeout(Some(HANDSHAKE))?;
    stream.set_write_timeout(Some(IDLE))?;
    let _ = stream.set_nodelay(true);
    let conn = rustls::ServerConnection::new(sh.tls.clone())?;
    let mut tls = rustls::StreamOwned::new(conn, stream);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).context("TLS handshake")?;
    }
    let cert = tls
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .context("no client certificate")?
        .clone();
    let key_id = identity::key_id(&cert)?;
    let first = frame::read_frame(&mut tls);
    tls.sock.set_read_timeout(Some(IDLE))?;
    match first {
        Ok(Frame::Enroll { token, name }) => {
            let name = if name.trim().is_empty() {
                format!("agent-{}", &key_id[..8])
            } else {
                name
            };
            let r = sh
                .db
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .enroll(&token, &key_id, &name, now_ns());
            match r {
                Ok(Ok(agent)) => {
                    frame::write_frame(
                        &mut tls,
                        &Frame::Enrolled {
                            device: agent.device.0,
                        },
                    )?;
                    tls.conn.send_close_notify();
                    let _ = tls.conn.complete_io(&mut tls.sock);
                    tracing::info!(
                        agent = %agent.name,
                        device = agent.device.0,
                        key = &key_id[..16],
                        "server: enrolled an agent"
                    );
                    Ok(())
                }
                Ok(Err(why)) => {
                    let (code, msg) = match why {
                        TokenRefusal::Unknown => (
                            ErrorCode::BadToken,
                            "unknown token: ask the server's admin for a new one (netvigil server token)",
                        ),
                        TokenRefusal::Used => (
                            ErrorCode::BadToken,
                            "this token was already used: ask for a new one (netvigil server token)",
                        ),
                        TokenRefusal::Expired => (
                            ErrorCode::BadToken,
                            "this token has expired: ask for a new one (netvigil server token)",
                        ),
                        TokenRefusal::KeyEnrolled => {
                            (ErrorCode::AlreadyEnrolled, "this agent key is already enrolled")
                        }
                    };
                    refuse(&mut tls, code, msg)
                }
                Err(e) => refuse(&mut tls, ErrorCode::Unavailable, &format!("server database: {e}")),
            }
        }
        Ok(Frame::Hello) => session(&mut tls, sh, &key_id),
        Ok(_) => refuse(&mut tls, ErrorCode::Malformed, "expected Enroll or Hello first"),
        Err(frame::ReadError::Frame(e)) => refuse(&mut tls, ErrorCode::Malformed, &e.to_string()),
        Err(e) => Err(e.into()),
    }
}

/// Checks the key is enrolled and not revoked; the refusal to send otherwise.
fn admit(
    sh: &Shared,
    key_id: &str,
) -> Result<std::result::Result<super::db::Agent, (ErrorCode, &'static str)>> {
    let agent = sh
        .db
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .agent_by_key(key_id)?;
    Ok(match agent {
        None => Err((
            ErrorCode::UnknownAgent,
            "this agent key is not enrolled: run netvigil agent enroll with a token",
        )),
        Some(a) if a.revoked.is_some() => {
            Err((ErrorCode::Revoked, "this agent was revoked by the server's admin"))
        }
        Some(a) => Ok(a),
    })
}

/// A batch body read into a store batch: each line a record (`engine::Record::from_value`) or an
/// `alert`; lines of a record type this server does not know are skipped and counted (a newer
/// agent). Any other line that is not a record is an error naming its line.
pub fn parse_batch(
    device: store::DeviceId,
    seq: u64,
    body: &str,
) -> std::result::Result<(store::Batch, usize), String> {
    let mut b = store::Batch {
        device,
        source: Some((device, seq)),
        ..store::Batch::default()
    };
    let mut skipped = 0;
    for (i, line) in body.lines().enumerate() {
        let v = engine::json_read::parse(line).map_err(|e| format!("record {}: not JSON: {e}", i + 1))?;
        let bad = |e: engine::json_read::ReadError| format!("record {}: {e}", i + 1);
        match v.req_str("type").map_err(bad)? {
            "alert" => b.alerts.push(alert_row(&v, line).map_err(bad)?),
            _ => match engine::Record::from_value(&v) {
                Ok(r) => b.records.push(r),
                Err(engine::json_read::ReadError::UnknownType(_)) => skipped += 1,
                Err(e) => return Err(bad(e)),
            },
        }
    }
    Ok((b, skipped))
}

/// An `alert` line (docs/records.md) as the store keeps it.
fn alert_row(
    v: &engine::json_read::Value<'_>,
    line: &str,
) -> std::result::Result<store::AlertRow, engine::json_read::ReadError> {
    let severity = v.req_str("severity")?;
    Ok(store::AlertRow {
        id: v.req_str("id")?.to_owned(),
        ts: v.req_time("ts")?,
        severity: store::Severity::parse(severity).ok_or(engine::json_read::ReadError::Field {
            field: "severity".into(),
            why: "expected info, low, medium or high",
        })?,
        rule: v.req_str("rule")?.to_owned(),
        app: v.opt_str("app")?.map(str::to_owned),
        remote: v.opt_str("remote")?.map(str::to_owned),
        reason: v.req_str("reason")?.to_owned(),
        json: line.to_owned(),
    })
}

fn session(tls: &mut Tls, sh: &Shared, key_id: &str) -> Result<()> {
    let agent = match admit(sh, key_id)? {
        Ok(a) => a,
        Err((code, msg)) => return refuse(tls, code, msg),
    };
    let last_seq = match sh.store.with(|st| st.source_seq(agent.device)) {
        Ok(n) => n,
        Err(e) => return refuse(tls, ErrorCode::Unavailable, &format!("record store: {e:#}")),
    };
    frame::write_frame(
        tls,
        &Frame::Welcome {
            device: agent.device.0,
            last_seq,
        },
    )?;
    // Below this the device's batches are stored (or were skipped for good): `batch_sources`
    // keeps only each device's highest number (fleet/retention.rs), so an older batch sent
    // again is answered "already stored" here, without writing it.
    let mut floor = last_seq;
    loop {
        let f = match frame::read_frame(tls) {
            Ok(f) => f,
            Err(frame::ReadError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(frame::ReadError::Frame(e)) => return refuse(tls, ErrorCode::Malformed, &e.to_string()),
            Err(e) => return Err(e.into()),
        };
        let Frame::Batch { seq, records } = f else {
            return refuse(tls, ErrorCode::Malformed, "expected a Batch");
        };
        if seq == 0 || seq > i64::MAX as u64 {
            return refuse(
                tls,
                ErrorCode::Malformed,
                "batch sequence numbers run from 1 to 2^63-1",
            );
        }
        // A revocation takes effect at the next batch of an open session.
        if let Err((code, msg)) = admit(sh, key_id)? {
            return refuse(tls, code, msg);
        }
        if seq < floor {
            frame::write_frame(
                tls,
                &Frame::Ack {
                    seq,
                    status: AckStatus::Duplicate,
                },
            )?;
            continue;
        }
        let (batch, skipped) = match parse_batch(agent.device, seq, &records) {
            Ok(b) => b,
            Err(why) => return refuse(tls, ErrorCode::BadRecords, &why),
        };
        drop(records);
        if skipped > 0 {
            eprintln!(
                "netvigil server: device {}: batch {seq}: {skipped} records of types this server does not know were skipped",
                agent.device.0
            );
        }
        let status = match sh.store.write(batch) {
            Ok(w) if w.duplicate => AckStatus::Duplicate,
            Ok(_) => AckStatus::Stored,
            Err(e) => return refuse(tls, ErrorCode::Unavailable, &format!("could not commit: {e:#}")),
        };
        floor = floor.max(seq);
        frame::write_frame(tls, &Frame::Ack { seq, status })?;
    }
}
