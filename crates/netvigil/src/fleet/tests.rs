//! Fleet tests over real TLS on 127.0.0.1 with real SQLite files in temporary directories.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::agent::{self, Backoff, Uplink, UplinkConfig};
use super::db::{FleetDb, Target};
use super::frame::{self, AckStatus, ErrorCode, Frame};
use super::identity::{self, Identity};
use super::server::{self, Server};

struct Tmp(PathBuf);
impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
fn tmp(tag: &str) -> Tmp {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap();
    let d = std::env::temp_dir().join(format!("nv-fleet-{tag}-{}", identity::hex(&b)));
    std::fs::create_dir_all(&d).unwrap();
    Tmp(d)
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn token(dir: &Path, ttl_ns: i64) -> String {
    let now = server::now_ns();
    FleetDb::open_dir(dir)
        .unwrap()
        .create_token(now, now + ttl_ns)
        .unwrap()
}

const HOUR: i64 = 3_600_000_000_000;

/// Flow record `i` as an agent sends it (one JSON line, no newline).
fn rec(i: usize) -> String {
    let mut s = String::new();
    store::sqlite::testdata::flows(i as u64, 1, 1_763_780_400_000_000_000, 1_000_000_000)[0]
        .write_json(&mut s);
    s
}

/// The flow records the server's store holds for `device`, in flow id order, as JSON lines.
fn stored_in(target: &Target, device: u32) -> Vec<String> {
    let mut st = super::db::open_store(target).unwrap();
    let mut flows = st
        .flows(&store::Query {
            device: Some(store::DeviceId(device)),
            ..store::Query::default()
        })
        .unwrap();
    flows.sort_by_key(|f| f.flow_id);
    flows.into_iter().map(|f| f.json).collect()
}

fn stored(dir: &Path, device: u32) -> Vec<String> {
    stored_in(&Target::Dir(dir.to_path_buf()), device)
}

/// A session for an enrolled identity: Hello, then the server's answer.
fn hello(s: &Server, id: &Identity) -> (agent::Conn, Frame) {
    let mut c = agent::connect(s.local_addr(), id, s.fingerprint(), Duration::from_secs(5)).unwrap();
    frame::write_frame(&mut c, &Frame::Hello).unwrap();
    let f = frame::read_frame(&mut c).unwrap();
    (c, f)
}

fn send(c: &mut agent::Conn, seq: u64, body: &str) -> Frame {
    frame::write_frame(
        c,
        &Frame::Batch {
            seq,
            records: body.to_owned(),
        },
    )
    .unwrap();
    frame::read_frame(c).unwrap()
}

#[test]
fn enrollment_works_once_and_the_token_cannot_be_reused() {
    let (sd, ad, ad2) = (tmp("srv"), tmp("agent"), tmp("agent2"));
    let s = Server::start(&sd.0, &Target::Dir(sd.0.clone()), loopback()).unwrap();
    let t = token(&sd.0, HOUR);
    let addr = s.local_addr().to_string();
    let e = agent::enroll(&ad.0, &addr, &t, s.fingerprint(), "laptop").unwrap();
    assert!(e.device >= 1);
    let agents = FleetDb::open_dir(&sd.0).unwrap().agents().unwrap();
    assert_eq!(agents.len(), 1);
    assert_eq!(agents[0].name, "laptop");
    let id = Identity::load_or_create(&agent::agent_dir(&ad.0), "x").unwrap();
    assert_eq!(
        agents[0].key_id,
        id.key_id(),
        "the server knows the agent by its key"
    );
    // Reuse by another machine: refused, nothing created.
    let err = agent::enroll(&ad2.0, &addr, &t, s.fingerprint(), "thief").unwrap_err();
    assert!(format!("{err:#}").contains("already used"), "{err:#}");
    assert_eq!(FleetDb::open_dir(&sd.0).unwrap().agents().unwrap().len(), 1);
    // A wrong fingerprint: the agent refuses the server at the handshake.
    let t2 = token(&sd.0, HOUR);
    let err = agent::enroll(&ad2.0, &addr, &t2, &"00".repeat(32), "x").unwrap_err();
    assert!(format!("{err:#}").contains("handshake"), "{err:#}");
    assert_eq!(FleetDb::open_dir(&sd.0).unwrap().agents().unwrap().len(), 1);
}

#[test]
fn an_expired_token_is_refused() {
    let (sd, ad) = (tmp("srv"), tmp("agent"));
    let s = Server::start(&sd.0, &Target::Dir(sd.0.clone()), loopback()).unwrap();
    let now = server::now_ns();
    let t = FleetDb::open_dir(&sd.0)
        .unwrap()
        .create_token(now - 2 * HOUR, now - HOUR)
        .unwrap();
    let err = agent::enroll(&ad.0, &s.local_addr().to_string(), &t, s.fingerprint(), "x").unwrap_err();
    assert!(format!("{err:#}").contains("expired"), "{err:#}");
    nothing_stored(&sd.0);
}

#[test]
fn unknown_and_revoked_keys_are_refused_and_store_nothing() {
    let (sd, ad) = (tmp("srv"), tmp("agent"));
    let s = Server::start(&sd.0, &Target::Dir(sd.0.clone()), loopback()).unwrap();
    let stranger = Identity::generate("stranger").unwrap();
    let (mut c, f) = hello(&s, &stranger);
    assert!(
        matches!(
            f,
            Frame::Error {
                code: ErrorCode::UnknownAgent,
                ..
            }
        ),
        "{f:?}"
    );
    // The connection is closed after the refusal: a batch gets no ack.
    let _ = frame::write_frame(
        &mut c,
        &Frame::Batch {
            seq: 1,
            records: rec(1) + "\n",
        },
    );
    assert!(frame::read_frame(&mut c).is_err());
    nothing_stored(&sd.0);

    let e = agent::enroll(
        &ad.0,
        &s.local_addr().to_string(),
        &token(&sd.0, HOUR),
        s.fingerprint(),
        "pc",
    )
    .unwrap();
    let id = Identity::load_or_create(&agent::agent_dir(&ad.0), "x").unwrap();
    let (mut c, f) = hello(&s, &id);
    assert_eq!(
        f,
        Frame::Welcome {
            device: e.device,
            last_seq: 0
        }
    );
    assert_eq!(
        send(&mut c, 1, &(rec(1) + "\n")),
        Frame::Ack {
            seq: 1,
            status: AckStatus::Stored
        }
    );
    assert!(
        FleetDb::open_dir(&sd.0)
            .unwrap()
            .revoke(e.device, server::now_ns())
            .unwrap()
    );
    // The open session is refused at its next batch; a new session at Hello.
    let f = send(&mut c, 2, &(rec(2) + "\n"));
    assert!(
        matches!(
            f,
            Frame::Error {
                code: ErrorCode::Revoked,
                ..
            }
        ),
        "{f:?}"
    );
    let (_, f) = hello(&s, &id);
    assert!(
        matches!(
            f,
            Frame::Error {
                code: ErrorCode::Revoked,
                ..
            }
        ),
        "{f:?}"
    );
    assert_eq!(stored(&sd.0, e.device), vec![rec(1)]);
}

#[test]
fn a_client_without_certificate_or_with_tls12_only_is_refused() {
    let sd = tmp("srv");
    let s = Server::start(&sd.0, &Target::Dir(sd.0.clone()), loopback()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    #[derive(Debug)]
    struct AcceptAny;
    impl rustls::client::danger::ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            rustls::crypto::ring::default_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }
    let id = Identity::generate("a").unwrap();
    let handshake = |cfg: rustls::ClientConfig| -> Result<(), String> {
        let tcp = std::net::TcpStream::connect(s.local_addr()).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let name = rustls::pki_types::ServerName::try_from("netvigil-server").unwrap();
        let mut tls = rustls::StreamOwned::new(
            rustls::ClientConnection::new(std::sync::Arc::new(cfg), name).unwrap(),
            tcp,
        );
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).map_err(|e| e.to_string())?;
        }
        // TLS 1.3 client auth failures surface on the first read after the handshake.
        frame::write_frame(&mut tls, &Frame::Hello).map_err(|e| e.to_string())?;
        frame::read_frame(&mut tls).map(|_| ()).map_err(|e| e.to_string())
    };
    let tls12 = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(AcceptAny))
        .with_client_auth_cert(vec![id.cert.clone()], id.private_key())
        .unwrap();
    let err = handshake(tls12).unwrap_err();
    assert!(
        err.to_lowercase().contains("version") || err.contains("alert"),
        "{err}"
    );
    let no_cert = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(AcceptAny))
        .with_no_client_auth();
    let err = handshake(no_cert).unwrap_err();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    nothing_stored(&sd.0);
}

/// No agent, no record, no batch sequence number anywhere.
fn nothing_stored(dir: &Path) {
    assert!(FleetDb::open_dir(dir).unwrap().agents().unwrap().is_empty());
    let mut st = super::db::open_store(&Target::Dir(dir.to_path_buf())).unwrap();
    assert!(st.flows(&store::Query::default()).unwrap().is_empty());
    assert!(st.events(&store::Query::default()).unwrap().is_empty());
    for d in 0..4 {
        assert_eq!(st.source_seq(store::DeviceId(d)).unwrap(), 0);
    }
}

#[test]
fn a_batch_is_stored_once_when_the_ack_is_lost_or_the_server_restarts() {
    let (sd, ad) = (tmp("srv"), tmp("agent"));
    let s = Server::start(&sd.0, &Target::Dir(sd.0.clone()), loopback()).unwrap();
    let e = agent::enroll(
        &ad.0,
        &s.local_addr().to_string(),
        &token(&sd.0, HOUR),
        s.fingerprint(),
        "pc",
    )
    .unwrap();
    let id = Identity::load_or_create(&agent::agent_dir(&ad.0), "x").unwrap();
    let body = format!("{}\n{}\n", rec(1), rec(2));
    // Ack lost: send, drop the connection before reading the answer.
    {
        let (mut c, _) = hello(&s, &id);
        frame::write_frame(
            &mut c,
            &Frame::Batch {
                seq: 1,
                records: body.clone(),
            },
        )
        .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while stored(&sd.0, e.device).len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (mut c, _) = hello(&s, &id);
    assert_eq!(
        send(&mut c, 1, &body),
        Frame::Ack {
            seq: 1,
            status: AckStatus::Duplicate
        }
    );
    drop(c);
    // Server restarted on the same data: still a duplicate.
    let fp = s.fingerprint().to_owned();
    s.stop();
    let s = Server::start(&sd.0, &Target::Dir(sd.0.clone()), loopback()).unwrap();
    assert_eq!(s.fingerprint(), fp, "the server keeps its certificate");
    let (mut c, f) = hello(&s, &id);
    assert_eq!(
        f,
        Frame::Welcome {
            device: e.device,
            last_seq: 1
        }
    );
    assert_eq!(
        send(&mut c, 1, &body),
        Frame::Ack {
            seq: 1,
            status: AckStatus::Duplicate
        }
    );
    assert_eq!(
        send(&mut c, 2, &(rec(3) + "\n")),
        Frame::Ack {
            seq: 2,
            status: AckStatus::Stored
        }
    );
    // Garbage records are refused, not stored.
    assert!(matches!(
        send(&mut c, 3, "not json\n"),
        Frame::Error {
            code: ErrorCode::BadRecords,
            ..
        }
    ));
    assert_eq!(stored(&sd.0, e.device), vec![rec(1), rec(2), rec(3)]);
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_spool_keeps_records_while_the_server_is_down_and_delivers_them_later() {
    let (sd, ad) = (tmp("srv"), tmp("agent"));
    let s = Server::start(&sd.0, &Target::Dir(sd.0.clone()), loopback()).unwrap();
    let addr = s.local_addr();
    let e = agent::enroll(
        &ad.0,
        &addr.to_string(),
        &token(&sd.0, HOUR),
        s.fingerprint(),
        "pc",
    )
    .unwrap();
    let mut cfg = UplinkConfig::new(&ad.0);
    cfg.batch_records = 10;
    cfg.batch_age = Duration::from_millis(50);
    cfg.backoff = Backoff::new(Duration::from_millis(20), 1.6, Duration::from_millis(200));
    cfg.timeout = Duration::from_secs(5);
    let up = Uplink::start(cfg.clone()).unwrap();
    for i in 0..25 {
        up.push(rec(i));
    }
    wait_for("first delivery", Duration::from_secs(10), || {
        up.stats().delivered_records == 25
    });
    s.stop();
    for i in 25..60 {
        up.push(rec(i));
    }
    wait_for("spooling", Duration::from_secs(10), || {
        up.stats().spooled_batches == 4
    });
    assert!(up.stats().last_error.is_some());
    assert_eq!(stored(&sd.0, e.device).len(), 25);
    let s = Server::start(&sd.0, &Target::Dir(sd.0.clone()), addr).unwrap();
    wait_for("delivery after restart", Duration::from_secs(10), || {
        up.stats().delivered_records == 60
    });
    let st = up.close(Duration::from_secs(2));
    assert_eq!(
        (st.spooled_batches, st.dropped_records, st.dropped_queue_full),
        (0, 0, 0)
    );
    let got = stored(&sd.0, e.device);
    assert_eq!(
        got,
        (0..60).map(rec).collect::<Vec<_>>(),
        "every record once, in order"
    );
    drop(s);
}

#[test]
fn a_full_spool_drops_the_oldest_batches_and_counts_them() {
    let (sd, ad) = (tmp("srv"), tmp("agent"));
    let s = Server::start(&sd.0, &Target::Dir(sd.0.clone()), loopback()).unwrap();
    let addr = s.local_addr();
    let e = agent::enroll(
        &ad.0,
        &addr.to_string(),
        &token(&sd.0, HOUR),
        s.fingerprint(),
        "pc",
    )
    .unwrap();
    s.stop();
    let mut cfg = UplinkConfig::new(&ad.0);
    cfg.batch_records = 10;
    cfg.batch_age = Duration::from_secs(60);
    cfg.backoff = Backoff::new(Duration::from_millis(20), 1.6, Duration::from_millis(100));
    let batch_bytes: u64 = (0..10).map(|i| rec(i).len() as u64 + 1).sum();
    cfg.max_spool_bytes = batch_bytes * 3 + 5; // room for 3 batches of ids 0..10
    let up = Uplink::start(cfg.clone()).unwrap();
    for i in 0..50 {
        up.push(rec(i % 10));
    }
    wait_for("spooling", Duration::from_secs(10), || {
        up.stats().dropped_records == 20
    });
    assert_eq!(up.stats().spooled_batches, 3);
    let st = up.close(Duration::from_millis(100));
    assert_eq!(st.dropped_records, 20);
    // A new uplink on the same spool delivers the three newest batches with new sequence numbers.
    let s = Server::start(&sd.0, &Target::Dir(sd.0.clone()), addr).unwrap();
    let up = Uplink::start(cfg).unwrap();
    wait_for("delivery", Duration::from_secs(10), || {
        up.stats().delivered_batches == 3
    });
    up.push(rec(99));
    let st = up.close(Duration::from_secs(5));
    assert_eq!(st.spooled_batches, 0);
    let agents = super::db::agents_with_last_batch(&Target::Dir(sd.0.clone())).unwrap();
    assert_eq!(agents[0].last_seq, 6);
    assert_eq!(stored(&sd.0, e.device).len(), 31);
    drop(s);
}

#[test]
fn backoff_grows_by_1_6_with_jitter_up_to_the_cap() {
    let mut b = Backoff::default();
    let mid: Vec<u64> = (0..12).map(|_| b.delay(0.5).as_millis() as u64).collect();
    assert_eq!(&mid[..4], &[1000, 1600, 2560, 4096]);
    assert_eq!(*mid.last().unwrap(), 120_000);
    let mut b = Backoff::default();
    let (lo, hi) = (b.clone().delay(0.0), b.delay(0.999));
    assert!(lo >= Duration::from_millis(800) && hi <= Duration::from_millis(1200) && lo < hi);
    b.reset();
    assert_eq!(b.delay(0.5), Duration::from_secs(1));
}

#[test]
fn ttl_parsing_names_the_problem() {
    assert_eq!(super::parse_ttl("1h").unwrap(), HOUR);
    assert_eq!(super::parse_ttl("30m").unwrap(), HOUR / 2);
    assert!(super::parse_ttl("1y").is_err());
    assert!(super::parse_ttl("0s").is_err());
    assert!(super::parse_ttl("").is_err());
}

/// The store crate's PostgreSQL test harness (initdb + pg_ctl in a temporary directory, unix
/// socket only), shared rather than copied.
#[path = "../../../store/tests/support/pg_server.rs"]
mod pg_server;

#[test]
fn postgres_two_servers_share_one_database_and_store_each_batch_once() {
    let Some(pg) = pg_server::shared() else { return };
    let db = pg.create_db("nv_fleet_once");
    let target = Target::Postgres(db.url());
    let (sd, ad) = (tmp("srv"), tmp("agent"));
    // Two server processes' worth: same TLS identity (data dir), same database, two ports.
    let a = Server::start(&sd.0, &target, loopback()).unwrap();
    let b = Server::start(&sd.0, &target, loopback()).unwrap();
    let now = server::now_ns();
    let t = FleetDb::open(&target)
        .unwrap()
        .create_token(now, now + HOUR)
        .unwrap();
    let e = agent::enroll(&ad.0, &a.local_addr().to_string(), &t, a.fingerprint(), "pc").unwrap();
    let err = agent::enroll(&ad.0, &b.local_addr().to_string(), &t, b.fingerprint(), "pc").unwrap_err();
    assert!(format!("{err:#}").contains("already used"), "{err:#}");
    let id = Identity::load_or_create(&agent::agent_dir(&ad.0), "x").unwrap();
    let body = format!("{}\n{}\n", rec(1), rec(2));
    let (mut ca, _) = hello(&a, &id);
    assert_eq!(
        send(&mut ca, 1, &body),
        Frame::Ack {
            seq: 1,
            status: AckStatus::Stored
        }
    );
    let (mut cb, f) = hello(&b, &id);
    assert_eq!(
        f,
        Frame::Welcome {
            device: e.device,
            last_seq: 1
        }
    );
    assert_eq!(
        send(&mut cb, 1, &body),
        Frame::Ack {
            seq: 1,
            status: AckStatus::Duplicate
        }
    );
    assert_eq!(
        send(&mut cb, 2, &(rec(3) + "\n")),
        Frame::Ack {
            seq: 2,
            status: AckStatus::Stored
        }
    );
    let mut fdb = FleetDb::open(&target).unwrap();
    assert_eq!(stored_in(&target, e.device), vec![rec(1), rec(2), rec(3)]);
    assert!(fdb.revoke(e.device, server::now_ns()).unwrap());
    let (_, f) = hello(&a, &id);
    assert!(
        matches!(
            f,
            Frame::Error {
                code: ErrorCode::Revoked,
                ..
            }
        ),
        "{f:?}"
    );
    // An expired token on PostgreSQL: refused, nothing created.
    let t = fdb.create_token(now - 2 * HOUR, now - HOUR).unwrap();
    let ad2 = tmp("agent2");
    let err = agent::enroll(&ad2.0, &a.local_addr().to_string(), &t, a.fingerprint(), "x").unwrap_err();
    assert!(format!("{err:#}").contains("expired"), "{err:#}");
    assert_eq!(fdb.agents().unwrap().len(), 1);
    drop((ca, cb));
    a.stop();
    b.stop();
}

#[test]
fn an_agent_that_lost_its_spool_state_is_not_taken_for_a_duplicate() {
    let (sd, ad) = (tmp("srv"), tmp("agent"));
    let s = Server::start(&sd.0, &Target::Dir(sd.0.clone()), loopback()).unwrap();
    let e = agent::enroll(
        &ad.0,
        &s.local_addr().to_string(),
        &token(&sd.0, HOUR),
        s.fingerprint(),
        "pc",
    )
    .unwrap();
    let mut cfg = UplinkConfig::new(&ad.0);
    cfg.batch_records = 5;
    cfg.batch_age = Duration::from_millis(30);
    cfg.backoff = Backoff::new(Duration::from_millis(20), 1.6, Duration::from_millis(100));
    let up = Uplink::start(cfg.clone()).unwrap();
    for i in 0..15 {
        up.push(rec(i));
    }
    wait_for("delivery", Duration::from_secs(10), || {
        up.stats().delivered_records == 15
    });
    up.close(Duration::from_secs(1));
    std::fs::remove_dir_all(&cfg.spool_dir).unwrap();
    let up = Uplink::start(cfg).unwrap();
    for i in 15..25 {
        up.push(rec(i));
    }
    wait_for("delivery after the loss", Duration::from_secs(10), || {
        up.stats().delivered_records == 10
    });
    let st = up.close(Duration::from_secs(1));
    assert_eq!(st.duplicates, 0);
    assert_eq!(stored(&sd.0, e.device), (0..25).map(rec).collect::<Vec<_>>());
}

#[test]
fn a_batch_body_is_read_into_records_and_alerts_and_bad_lines_are_named() {
    let alert = r#"{"type":"alert","v":1,"id":"00ff","ts":"2025-11-22T03:00:00.000000Z","severity":"high","rule":"red_flag","app":"curl","remote":"example.com","port":443,"bytes":null,"score":7,"reason":"curl scored 7."}"#;
    let body = format!(
        "{}\n{alert}\n{{\"type\":\"lan_device\",\"v\":1}}\n{}\n",
        rec(1),
        rec(2)
    );
    let (b, skipped) = server::parse_batch(store::DeviceId(4), 9, &body).unwrap();
    assert_eq!((b.records.len(), b.alerts.len(), skipped), (2, 1, 1));
    assert_eq!(b.source, Some((store::DeviceId(4), 9)));
    assert_eq!(b.alerts[0].severity, store::Severity::High);
    assert_eq!(b.alerts[0].json, alert);
    let mut line = String::new();
    b.records[1].write_json(&mut line);
    assert_eq!(line, rec(2));
    let bad = format!("{}\n{{\"type\":\"flow\",\"v\":1,\"id\":-3}}\n", rec(1));
    let err = server::parse_batch(store::DeviceId(4), 9, &bad).unwrap_err();
    assert!(err.starts_with("record 2: field \"id\""), "{err}");
    let err = server::parse_batch(store::DeviceId(4), 9, "{\"v\":1}\n").unwrap_err();
    assert!(err.contains("\"type\""), "{err}");
}

/// CPU seconds (user + system) of process `pid` ("self" or a number), from /proc.
fn cpu_of(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

/// Benchmark (`scripts/fleet-ingest-bench.sh`): records per second the fleet server takes from
/// 20 agents into PostgreSQL. The agents are threads of this process speaking the real protocol
/// (`agent::connect`: TLS 1.3 with their own enrolled keys; `Batch` frames of 1,000 flow
/// records, each waiting for its `Ack`, as `Uplink` does); the server is `Server` with
/// `--db postgres://...` on a PostgreSQL the benchmark starts (as `cargo bench -p store --bench
/// pg_insert` does: fsync on, `max_wal_size=4GB`, `shared_buffers=256MB`). The clock runs
/// from the first batch sent to the last ack; then every record is counted in the database.
/// `NV_BENCH_FLOWS` (default 1,000,000), `NV_BENCH_RUNS` (default 3).
#[test]
#[ignore = "benchmark: scripts/fleet-ingest-bench.sh (minutes of CPU)"]
fn bench_fleet_ingest_from_20_agents_into_postgres() {
    const AGENTS: usize = 20;
    const PER_BATCH: usize = 1000;
    let env = |k: &str, d: usize| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let total = env("NV_BENCH_FLOWS", 1_000_000).div_ceil(AGENTS * PER_BATCH) * AGENTS * PER_BATCH;
    let runs = env("NV_BENCH_RUNS", 3).max(1);
    let pg = pg_server::PgServer::start(&[("max_wal_size", "4GB"), ("shared_buffers", "256MB")])
        .unwrap_or_else(|e| panic!("starting PostgreSQL: {e}"));
    // Each agent's batches, made before the clock starts: agent a sends flows with ids
    // a*10^9.., one every 2 ms of its own clock.
    let t = Instant::now();
    let per_agent = total / AGENTS;
    let bodies: Vec<Vec<String>> = (0..AGENTS)
        .map(|a| {
            (0..per_agent / PER_BATCH)
                .map(|b| {
                    let first = a as u64 * 1_000_000_000 + (b * PER_BATCH) as u64;
                    let mut body = String::with_capacity(PER_BATCH * 700);
                    for r in store::sqlite::testdata::flows(
                        first,
                        PER_BATCH as u64,
                        1_763_780_400_000_000_000 + (b * PER_BATCH) as i64 * 2_000_000,
                        2_000_000,
                    ) {
                        r.write_json(&mut body);
                        body.push('\n');
                    }
                    body
                })
                .collect()
        })
        .collect();
    eprintln!(
        "fleet ingest: {total} flow records, {AGENTS} agents x {} batches of {PER_BATCH}, made in {:.1} s ({:.0} bytes a record)",
        per_agent / PER_BATCH,
        t.elapsed().as_secs_f64(),
        bodies[0][0].len() as f64 / PER_BATCH as f64
    );
    let mut rates = Vec::new();
    for run in 0..runs {
        let db = pg.create_db(&format!("fleet_bench_{run}"));
        let target = Target::Postgres(db.url());
        let sd = tmp("bench-srv");
        let s = Server::start(&sd.0, &target, loopback()).unwrap();
        let mut fdb = FleetDb::open(&target).unwrap();
        let now = server::now_ns();
        let ids: Vec<(Identity, Tmp)> = (0..AGENTS)
            .map(|i| {
                let ad = tmp(&format!("bench-agent{i}"));
                let t = fdb.create_token(now, now + HOUR).unwrap();
                agent::enroll(
                    &ad.0,
                    &s.local_addr().to_string(),
                    &t,
                    s.fingerprint(),
                    &format!("a{i}"),
                )
                .unwrap();
                (
                    Identity::load_or_create(&agent::agent_dir(&ad.0), "x").unwrap(),
                    ad,
                )
            })
            .collect();
        let mut admin = db.client();
        let backends = |c: &mut postgres::Client| -> Vec<String> {
            c.query(
                "SELECT pid::text FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
        };
        // Connect every agent (Hello/Welcome) before the clock starts.
        let mut conns: Vec<agent::Conn> = ids
            .iter()
            .map(|(id, _)| {
                let (c, f) = hello(&s, id);
                assert!(matches!(f, Frame::Welcome { last_seq: 0, .. }), "{f:?}");
                c
            })
            .collect();
        let cpu0 = cpu_of("self");
        let pids0 = backends(&mut admin);
        let srv0: f64 = pids0.iter().map(|p| cpu_of(p)).sum();
        let t = Instant::now();
        std::thread::scope(|sc| {
            for (c, batches) in conns.iter_mut().zip(&bodies) {
                sc.spawn(move || {
                    for (i, body) in batches.iter().enumerate() {
                        let seq = i as u64 + 1;
                        frame::write_frame(
                            c,
                            &Frame::Batch {
                                seq,
                                records: body.clone(),
                            },
                        )
                        .unwrap();
                        match frame::read_frame(c).unwrap() {
                            Frame::Ack {
                                seq: s,
                                status: AckStatus::Stored,
                            } if s == seq => {}
                            other => panic!("batch {seq}: {other:?}"),
                        }
                    }
                });
            }
        });
        let secs = t.elapsed().as_secs_f64();
        let cpu_proc = cpu_of("self") - cpu0;
        let pids = backends(&mut admin);
        let srv: f64 = pids.iter().map(|p| cpu_of(p)).sum::<f64>() - srv0;
        let n: i64 = admin
            .query_one("SELECT count(*) FROM netvigil.flows", &[])
            .unwrap()
            .get(0);
        assert_eq!(n as usize, total, "every record stored once");
        let rate = total as f64 / secs;
        rates.push(rate);
        println!(
            "run {}: {total} records in {secs:.2} s = {rate:.0} records/s; CPU per million records: \
             fleet server + agents {:.1} s, PostgreSQL {:.1} s ({} backends); load {}",
            run + 1,
            cpu_proc * 1e6 / total as f64,
            srv * 1e6 / total as f64,
            pids.len(),
            std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .trim()
        );
        drop(conns);
        s.stop();
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "fleet ingest: median {:.0} records/s, best {:.0} over {runs} runs of {total} records from {AGENTS} agents",
        rates[rates.len() / 2],
        rates[rates.len() - 1]
    );
}

/// Flow record `i` that started `ago_ns` before now, as an agent sends it.
fn rec_ago(i: usize, ago_ns: i64) -> String {
    let mut s = String::new();
    store::sqlite::testdata::flows(i as u64, 1, server::now_ns() - ago_ns, 1_000_000_000)[0]
        .write_json(&mut s);
    s
}

fn sources_rows(dir: &Path) -> Vec<(i64, i64)> {
    let c = rusqlite::Connection::open(dir.join(super::db::RECORDS_FILE)).unwrap();
    let mut st = c
        .prepare("SELECT device, seq FROM batch_sources ORDER BY device, seq")
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn retention_removes_old_records_and_keeps_the_newest_batch_number() {
    use super::retention::{Keeper, Policy, run_once};
    let (sd, ad) = (tmp("srv"), tmp("agent"));
    let target = Target::Dir(sd.0.clone());
    let s = Server::start(&sd.0, &target, loopback()).unwrap();
    let t = token(&sd.0, HOUR);
    let e = agent::enroll(&ad.0, &s.local_addr().to_string(), &t, s.fingerprint(), "pc").unwrap();
    let id = Identity::load_or_create(&agent::agent_dir(&ad.0), "x").unwrap();
    let (mut c, _) = hello(&s, &id);
    // Batches 1 and 2: 40 days old; 3: an hour old.
    let old = format!("{}\n{}\n", rec_ago(1, 40 * 24 * HOUR), rec_ago(2, 40 * 24 * HOUR));
    assert!(matches!(
        send(&mut c, 1, &old),
        Frame::Ack {
            status: AckStatus::Stored,
            ..
        }
    ));
    let old2 = rec_ago(3, 40 * 24 * HOUR) + "\n";
    assert!(matches!(
        send(&mut c, 2, &old2),
        Frame::Ack {
            status: AckStatus::Stored,
            ..
        }
    ));
    let fresh = rec_ago(4, HOUR) + "\n";
    assert!(matches!(
        send(&mut c, 3, &fresh),
        Frame::Ack {
            status: AckStatus::Stored,
            ..
        }
    ));
    drop(c);
    assert_eq!(stored(&sd.0, e.device).len(), 4);
    let dev = i64::from(e.device);
    assert_eq!(sources_rows(&sd.0), vec![(dev, 1), (dev, 2), (dev, 3)]);

    let pass = run_once(&target, &Policy::parse("30d", None).unwrap(), server::now_ns()).unwrap();
    assert_eq!(pass.removed.flows, 3, "{pass:?}");
    assert_eq!(pass.sources, 2);
    assert_eq!(stored(&sd.0, e.device), vec![fresh.trim_end().to_string()]);
    assert_eq!(
        sources_rows(&sd.0),
        vec![(dev, 3)],
        "only the newest batch number stays"
    );

    // The agent sends old batches again: "already stored", nothing written; the newest one
    // too; then it goes on with 4.
    let (mut c, f) = hello(&s, &id);
    assert_eq!(
        f,
        Frame::Welcome {
            device: e.device,
            last_seq: 3
        }
    );
    for (seq, body) in [(1, &old), (2, &old2), (3, &fresh)] {
        assert_eq!(
            send(&mut c, seq, body),
            Frame::Ack {
                seq,
                status: AckStatus::Duplicate
            },
            "batch {seq}"
        );
    }
    assert_eq!(stored(&sd.0, e.device).len(), 1);
    let next = rec_ago(5, 0) + "\n";
    assert_eq!(
        send(&mut c, 4, &next),
        Frame::Ack {
            seq: 4,
            status: AckStatus::Stored
        }
    );
    assert_eq!(stored(&sd.0, e.device).len(), 2);
    drop(c);

    // The thread runs a pass at once: batch 3's row goes, 4 stays.
    let k = Keeper::start(target.clone(), Policy::default()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while sources_rows(&sd.0) != vec![(dev, 4)] {
        assert!(Instant::now() < deadline, "{:?}", sources_rows(&sd.0));
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(k);
    s.stop();
}

#[test]
fn postgres_retention_prunes_batch_sources_per_device() {
    let Some(pg) = pg_server::shared() else { return };
    let db = pg.create_db("nv_fleet_retain");
    let target = Target::Postgres(db.url());
    let sd = tmp("srv");
    let s = Server::start(&sd.0, &target, loopback()).unwrap();
    let mut devices = Vec::new();
    for name in ["a", "b"] {
        let ad = tmp("agent");
        let now = server::now_ns();
        let t = FleetDb::open(&target)
            .unwrap()
            .create_token(now, now + HOUR)
            .unwrap();
        let e = agent::enroll(&ad.0, &s.local_addr().to_string(), &t, s.fingerprint(), name).unwrap();
        let id = Identity::load_or_create(&agent::agent_dir(&ad.0), "x").unwrap();
        let (mut c, _) = hello(&s, &id);
        for seq in 1..=3u64 {
            let ago = if seq < 3 { 40 * 24 * HOUR } else { HOUR };
            let body = rec_ago(seq as usize + 10 * devices.len(), ago) + "\n";
            assert!(matches!(
                send(&mut c, seq, &body),
                Frame::Ack {
                    status: AckStatus::Stored,
                    ..
                }
            ));
        }
        devices.push((e.device, id, ad));
    }
    let pass =
        super::retention::run_once(&target, &super::retention::Policy::default(), server::now_ns()).unwrap();
    assert_eq!(pass.sources, 4);
    assert_eq!(pass.removed.flows, 4, "{pass:?}");
    let rows: Vec<(i64, i64)> = db
        .client()
        .query(
            "SELECT device, seq FROM netvigil.batch_sources ORDER BY device",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let want: Vec<(i64, i64)> = devices.iter().map(|d| (i64::from(d.0), 3)).collect();
    assert_eq!(rows, want);
    for (dev, id, _) in &devices {
        assert_eq!(stored_in(&target, *dev).len(), 1);
        let (mut c, _) = hello(&s, id);
        let again = rec_ago(99, 40 * 24 * HOUR) + "\n";
        assert_eq!(
            send(&mut c, 1, &again),
            Frame::Ack {
                seq: 1,
                status: AckStatus::Duplicate
            }
        );
        assert_eq!(stored_in(&target, *dev).len(), 1);
    }
    s.stop();
}
