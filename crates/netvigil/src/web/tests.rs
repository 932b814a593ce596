//! Tests of the dashboard: the API over a [`LiveView`] filled with hand-built connection
//! records and with flows replayed from a shared capture, history and export from a real
//! SQLite file, the Host/Origin/secret checks, the SSE stream, and (in `browser`) the page in a
//! real headless Chromium.

mod browser;
mod iface;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::Record;
use engine::connections::{ConnEvent, ConnectionRecord, Direction};
use engine::enrich::{Place, Rdns};
use engine::judge::{Assessment, Config, Flag, FlagKind};
use engine::sockets::{ProcessInfo, SockProto, TcpInfo, TcpState};

use super::{Limits, LiveView, ServeOptions, ServerHandle, serve};

pub(super) const SECRET: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// A fresh folder under the system temp dir, removed by the caller.
pub(super) fn temp_dir(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "nv-web-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub(super) fn process(pid: u32, name: &str, package: Option<&str>) -> ProcessInfo {
    ProcessInfo {
        pid,
        name: name.into(),
        exe: Some(PathBuf::from(format!("/usr/bin/{name}"))),
        cmdline: vec![name.into()],
        package: package.map(String::from),
        package_checked: true,
        ..ProcessInfo::default()
    }
}

pub(super) fn opened(p: &ProcessInfo, local: &str, remote: &str, bytes: (u64, u64)) -> Record {
    Record::Connection(Box::new(ConnectionRecord {
        ts: 1_700_000_000_000_000_000,
        event: ConnEvent::Opened,
        proto: SockProto::Tcp,
        direction: Some(Direction::Outbound),
        local: local.parse().unwrap(),
        remote: remote.parse().unwrap(),
        state: Some(TcpState::Established),
        process: Some(p.clone()),
        tcp: Some(TcpInfo {
            rtt_us: 12_000,
            rttvar_us: 3_000,
            total_retrans: 2,
            bytes_received: bytes.0,
            bytes_acked: bytes.1,
            ..TcpInfo::default()
        }),
        uid: 1000,
        inode: 0,
    }))
}

pub(super) fn assessment(score: u32, org: &str, rdns: Option<&str>) -> Assessment {
    let flags = if score > 0 {
        vec![Flag {
            kind: FlagKind::UnusualPort,
            points: score,
            why: "port 6667 is unusual for this program".into(),
        }]
    } else {
        Vec::new()
    };
    Assessment {
        flags,
        score,
        explanation: format!("test connection scored {score}"),
        remote: String::new(),
        place: Some(Place {
            asn: Some(64_500),
            org: Some(org.into()),
            country: Some(*b"DE"),
            city: None,
        }),
        label: None,
        rdns: Some(rdns.map_or(Rdns::NoName, |n| Rdns::Name(n.into()))),
    }
}

pub(super) const NOW: i64 = 1_700_000_000_000_000_000;

/// firefox: 3 connections (one scored 6), curl: 1, postgres: 1 on loopback.
pub(super) fn filled_view() -> Arc<LiveView> {
    let v = LiveView::new(
        Config::default(),
        Some(Box::new(intel::ServiceNames::builtin())),
        Limits::default(),
    );
    let ff = process(100, "firefox", Some("firefox-esr"));
    let curl = process(200, "curl", None);
    let pg = process(300, "postgres", Some("postgresql-15"));
    v.on_record(
        &opened(&ff, "10.0.0.2:40001", "93.184.216.34:443", (5000, 700)),
        &assessment(0, "Example Org", Some("example.net")),
        NOW,
    );
    v.on_record(
        &opened(&ff, "10.0.0.2:40002", "151.101.1.69:443", (1200, 300)),
        &assessment(0, "Fastly", None),
        NOW,
    );
    v.on_record(
        &opened(&ff, "10.0.0.2:40003", "198.51.100.7:6667", (10, 90_000)),
        &assessment(6, "Shady Hosting", None),
        NOW,
    );
    v.on_record(
        &opened(&curl, "10.0.0.2:40100", "140.82.112.3:443", (800, 100)),
        &assessment(0, "GitHub, Inc.", None),
        NOW,
    );
    v.on_record(
        &opened(&pg, "127.0.0.1:40200", "127.0.0.1:5432", (10, 10)),
        &assessment(0, "", None),
        NOW,
    );
    v
}

pub(super) fn start(view: Arc<LiveView>, store: Option<PathBuf>, settings: Option<PathBuf>) -> ServerHandle {
    let mut o = ServeOptions::new(store, SECRET.into());
    o.addr = "127.0.0.1:0".parse().unwrap();
    o.settings_path = settings;
    o.sample_every = None;
    o.heartbeat = Duration::from_millis(300);
    serve(view, o).unwrap()
}

/// One HTTP/1.1 request over a fresh connection: (status, headers lower-cased, body).
pub(super) fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(90))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let head = head.to_ascii_lowercase();
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let mut body = Vec::new();
    if let Some(n) = len {
        body.resize(n, 0);
        r.read_exact(&mut body).unwrap();
    } else if head.contains("transfer-encoding: chunked") {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        r.read_to_end(&mut body).unwrap();
    }
    (status, head, String::from_utf8_lossy(&body).to_string())
}

pub(super) fn get_json(addr: SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let (st, _, body) = http(addr, "GET", path, &[], "");
    (
        st,
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}")),
    )
}

#[test]
fn connections_are_grouped_by_app_with_judgement() {
    let srv = start(filled_view(), None, None);
    let (st, j) = get_json(srv.addr, "/api/connections");
    assert_eq!(st, 200);
    assert_eq!(j["totals"]["apps"], 3);
    assert_eq!(j["totals"]["connections"], 5);
    assert_eq!(j["totals"]["bytes_in"], 5000 + 1200 + 10 + 800 + 10);
    let apps = j["apps"].as_array().unwrap();
    let ff = apps.iter().find(|a| a["app"] == "firefox").unwrap();
    assert_eq!(ff["connections"], 3);
    assert_eq!(ff["score"], 6);
    assert_eq!(ff["level"], "high");
    assert_eq!(ff["packaged"], true);
    let curl = apps.iter().find(|a| a["app"] == "curl").unwrap();
    assert_eq!(curl["packaged"], false);
    let bad = &ff["conns"][0];
    assert_eq!(bad["remote_ip"], "198.51.100.7");
    assert_eq!(bad["flags"][0]["kind"], "unusual_port");
    assert_eq!(bad["org"], "Shady Hosting");
    assert_eq!(bad["country"], "DE");
    assert_eq!(bad["rdns_state"], "none");
    let https = ff["conns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["remote_port"] == 443)
        .unwrap();
    assert_eq!(https["service"], "https");
    assert_eq!(https["rtt_us"], 12_000);
    let pg = apps.iter().find(|a| a["app"] == "postgres").unwrap();
    assert_eq!(pg["conns"][0]["loopback"], true);

    let (st, w) = get_json(srv.addr, "/api/whois/93.184.216.34");
    assert_eq!(st, 200);
    assert_eq!(w["rdns"], "example.net");
    assert_eq!(w["org"], "Example Org");
    assert_eq!(w["connections"].as_array().unwrap().len(), 1);
    assert_eq!(w["rdap"]["available"], false);
    let (st, e) = get_json(srv.addr, "/api/whois/not-an-ip");
    assert_eq!(st, 400);
    assert!(e["error"].as_str().unwrap().contains("not an IP address"));

    let (st, p) = get_json(srv.addr, "/api/process/100");
    assert_eq!(st, 200);
    assert_eq!(p["name"], "firefox");
    assert_eq!(p["package"], "firefox-esr");
    assert_eq!(p["connections"].as_array().unwrap().len(), 3);
    assert_eq!(get_json(srv.addr, "/api/process/999").0, 404);
    assert_eq!(get_json(srv.addr, "/api/process/x").0, 400);
    srv.stop();
}

#[test]
fn alerts_link_to_their_connection() {
    let v = filled_view();
    v.on_alert(&engine::judge::Alert {
        id: "00000000000000aa".into(),
        ts: NOW,
        severity: engine::judge::Severity::High,
        rule: engine::judge::Rule::RedFlag,
        app: Some("firefox".into()),
        remote: Some("198.51.100.7".into()),
        port: Some(6667),
        bytes: None,
        score: Some(6),
        reason: "firefox talked to 198.51.100.7 on an unusual port".into(),
    });
    let srv = start(v, None, None);
    let (_, j) = get_json(srv.addr, "/api/alerts");
    let a = &j["alerts"][0];
    assert_eq!(a["severity"], "high");
    assert_eq!(a["rule"], "red_flag");
    assert_eq!(a["conn_id"], "tcp|10.0.0.2:40003|198.51.100.7:6667");
    assert!(j["digest"].is_null(), "no digest before the first hour ends: {j}");
}

#[test]
fn the_hour_digest_comes_with_the_alerts() {
    let v = filled_view();
    v.set_digest("hour", "This hour 2 apps talked to 3 hosts.".into(), NOW);
    let srv = start(v, None, None);
    let (_, j) = get_json(srv.addr, "/api/alerts");
    assert_eq!(j["digest"]["period"], "hour");
    assert_eq!(j["digest"]["text"], "This hour 2 apps talked to 3 hosts.");
    assert_eq!(j["digest"]["ts_ms"], NOW / 1_000_000);
}

#[test]
fn host_origin_and_secret_are_checked() {
    let dir = temp_dir("sec");
    let settings = dir.join("cfg/settings.json");
    let srv = start(filled_view(), None, Some(settings.clone()));
    let a = srv.addr;
    let port = a.port();
    // DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends its own name.
    let (st, _, body) = http(
        a,
        "GET",
        "/api/connections",
        &[("Host", &format!("evil.example:{port}"))],
        "",
    );
    assert_eq!(st, 421, "{body}");
    assert!(body.contains("not allowed"));
    for ok in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        "LOCALHOST".into(),
    ] {
        assert_eq!(http(a, "GET", "/api/alerts", &[("Host", &ok)], "").0, 200, "{ok}");
    }
    // The page sets the secret cookie and strict headers.
    let (st, head, html) = http(a, "GET", "/", &[], "");
    assert_eq!(st, 200);
    assert!(html.contains("<script src=\"/app.js\""));
    assert!(head.contains(&format!(
        "set-cookie: nv_token={SECRET}; path=/; httponly; samesite=strict"
    )));
    assert!(head.contains("content-security-policy: default-src 'none'; script-src 'self'"));
    assert!(head.contains("frame-ancestors 'none'"));
    assert!(head.contains("x-content-type-options: nosniff"));
    let body = r#"{"refresh_interval_s":5}"#;
    let cookie = format!("nv_token={SECRET}");
    let same = format!("http://{a}");
    let json = ("Content-Type", "application/json");
    // Cross-origin POST, even with the cookie: refused.
    let (st, _, b) = http(
        a,
        "POST",
        "/api/settings",
        &[json, ("Cookie", &cookie), ("Origin", "http://evil.example")],
        body,
    );
    assert_eq!(st, 403, "{b}");
    assert!(b.contains("cross-origin"));
    let (st, _, _) = http(
        a,
        "POST",
        "/api/settings",
        &[
            json,
            ("Cookie", &cookie),
            ("Origin", &same),
            ("Sec-Fetch-Site", "cross-site"),
        ],
        body,
    );
    assert_eq!(st, 403);
    // Same origin without the secret: refused.
    let (st, _, b) = http(a, "POST", "/api/settings", &[json, ("Origin", &same)], body);
    assert_eq!(st, 403);
    assert!(b.contains("nv_token"));
    let wrong = format!("nv_token={}", SECRET.replace('0', "1"));
    assert_eq!(
        http(
            a,
            "POST",
            "/api/settings",
            &[json, ("Cookie", &wrong), ("Origin", &same)],
            body
        )
        .0,
        403
    );
    assert!(!settings.exists());
    // Invalid settings: 400 naming the field.
    let (st, _, b) = http(
        a,
        "POST",
        "/api/settings",
        &[json, ("Cookie", &cookie), ("Origin", &same)],
        r#"{"refresh_interval_s":3}"#,
    );
    assert_eq!(st, 400);
    assert!(b.contains("refresh_interval_s is 3"), "{b}");
    // Same origin with the secret: saved.
    let (st, _, b) = http(
        a,
        "POST",
        "/api/settings",
        &[json, ("Cookie", &cookie), ("Origin", &same)],
        body,
    );
    assert_eq!(st, 200, "{b}");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&settings).unwrap()).unwrap();
    assert_eq!(saved["refresh_interval_s"], 5);
    let (_, j) = get_json(a, "/api/settings");
    assert_eq!(j["settings"]["refresh_interval_s"], 5);
    srv.stop();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Reads SSE lines until one contains `needle` or the deadline passes.
fn sse_until(r: &mut BufReader<TcpStream>, needle: &str, deadline: Instant) -> Option<String> {
    let mut line = String::new();
    while Instant::now() < deadline {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) => return None,
            Ok(_) if line.contains(needle) => return Some(line.clone()),
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
            }
            Err(_) => return None,
        }
    }
    None
}

#[test]
fn sse_delivers_a_record_pushed_after_connecting() {
    let v = filled_view();
    let srv = start(v.clone(), None, None);
    let mut s = TcpStream::connect(srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    write!(s, "GET /api/events HTTP/1.1\r\nHost: {}\r\n\r\n", srv.addr).unwrap();
    let mut r = BufReader::new(s);
    let deadline = Instant::now() + Duration::from_secs(10);
    assert!(sse_until(&mut r, "text/event-stream", deadline).is_some());
    assert!(sse_until(&mut r, "event: hello", deadline).is_some());
    let p = process(400, "wget", Some("wget"));
    v.on_record(
        &opened(&p, "10.0.0.2:41000", "203.0.113.9:80", (1, 2)),
        &assessment(3, "Test Net", None),
        NOW,
    );
    let data = sse_until(&mut r, "203.0.113.9", deadline).expect("the pushed record arrives");
    let j: serde_json::Value =
        serde_json::from_str(data.trim().strip_prefix("data:").unwrap().trim()).unwrap();
    assert_eq!(j["app"], "wget");
    assert_eq!(j["level"], "medium");
    assert!(
        sse_until(&mut r, "event: heartbeat", deadline).is_some(),
        "heartbeat within the deadline"
    );
    // The stream ends when the server stops (stop() would hang otherwise).
    let t = Instant::now();
    srv.stop();
    assert!(t.elapsed() < Duration::from_secs(5));
}

/// Flows of a shared capture, judged without enrichment: (records, total frame bytes).
pub(super) fn capture_flows(name: &str) -> (Vec<Record>, u64) {
    let shared = std::env::var_os("NETVIGIL_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    let path = shared.join("pcaps").join(name);
    let mut engine = engine::Engine::new(engine::EngineConfig::default());
    let mut records = Vec::new();
    os::read_capture(
        &path,
        |p| {
            let f = engine::Frame {
                ts: p.ts_nanos,
                link: p.link,
                orig_len: p.orig_len,
                data: p.data,
            };
            engine.ingest(&f, &mut records);
        },
        |_, _| {},
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    engine.finish(&mut records);
    let bytes = records
        .iter()
        .filter_map(|r| match r {
            Record::Flow(f) => Some(f.to_server.bytes + f.to_client.bytes),
            _ => None,
        })
        .sum();
    (records, bytes)
}

#[test]
fn replayed_capture_feeds_the_view_and_the_store() {
    let (records, frame_bytes) = capture_flows("ndpi__1kxun.pcap");
    let flows = records.iter().filter(|r| matches!(r, Record::Flow(_))).count();
    assert!(flows > 10);
    let v = LiveView::new(Config::default(), None, Limits::default());
    let mut judge = engine::judge::Judge::new(Config::default());
    let e = engine::enrich::Enrichers::default();
    let mut alerts = Vec::new();
    for r in &records {
        if let Record::Flow(f) = r {
            let a = judge.flow(f, &e, f.end, &mut alerts);
            v.on_record(r, &a, f.end);
        }
    }
    for a in &alerts {
        v.on_alert(a);
    }
    // The store, created through its own API in a temp dir.
    let dir = temp_dir("store");
    let db = dir.join("netvigil.db");
    {
        use store::Backend as _;
        let mut s = store::SqliteStore::open(&db).unwrap();
        let batch = store::Batch {
            records: records.clone(),
            ..store::Batch::default()
        };
        let w = s.write_batch(&batch).unwrap();
        assert_eq!(w.flows as usize, flows);
    }
    let srv = start(v, Some(db.clone()), None);
    let (_, j) = get_json(srv.addr, "/api/connections");
    let t = &j["totals"];
    assert_eq!(
        t["bytes_in"].as_u64().unwrap() + t["bytes_out"].as_u64().unwrap(),
        frame_bytes
    );
    // No process facts in a capture: every connection is under the unknown program.
    assert_eq!(t["apps"], 1);
    assert!(j["apps"][0]["app"].is_null());
    let (_, al) = get_json(srv.addr, "/api/alerts");
    assert_eq!(al["alerts"].as_array().unwrap().len(), alerts.len());

    let (st, h) = get_json(
        srv.addr,
        "/api/history?since=2000-01-01&until=2100-01-01&limit=100000",
    );
    assert_eq!(st, 200, "{h}");
    assert_eq!(h["flows"].as_array().unwrap().len(), flows);
    let hosts: u64 = h["by_host"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["flows"].as_u64().unwrap())
        .sum();
    assert!(hosts > 0 && hosts <= flows as u64);
    let (st, e) = get_json(srv.addr, "/api/history?since=yesterdayish");
    assert_eq!(st, 400);
    assert!(e["error"].as_str().unwrap().starts_with("since:"));

    let (st, head, csv) = http(srv.addr, "GET", "/api/export?format=csv", &[], "");
    assert_eq!(st, 200);
    assert!(head.contains("content-type: text/csv"));
    assert_eq!(csv.lines().count(), flows + 1, "header plus one row per flow");
    let (st, _, jl) = http(srv.addr, "GET", "/api/export?format=json", &[], "");
    assert_eq!(st, 200);
    assert_eq!(
        jl.lines().filter(|l| l.contains("\"type\":\"flow\"")).count(),
        flows
    );
    assert_eq!(http(srv.addr, "GET", "/api/export?format=xml", &[], "").0, 400);
    srv.stop();
    std::fs::remove_dir_all(&dir).unwrap();

    // Without a database: a clear error, not a crash or an empty answer.
    let srv = start(filled_view(), Some(dir.join("missing.db")), None);
    let (st, e) = get_json(srv.addr, "/api/history");
    assert_eq!(st, 404);
    assert!(e["error"].as_str().unwrap().contains("no history yet"));
    assert_eq!(get_json(srv.addr, "/api/export?format=csv").0, 404);
}

#[test]
fn connections_stay_bounded_closed_first() {
    let limits = Limits {
        max_connections: 100,
        ..Limits::default()
    };
    let v = LiveView::new(Config::default(), None, limits);
    let p = process(1, "many", None);
    for i in 0..300u32 {
        let remote = SocketAddr::new(IpAddr::from([198, 51, 100, (i % 250) as u8]), 1000 + i as u16);
        let r = opened(&p, "10.0.0.2:50000", &remote.to_string(), (1, 1));
        v.on_record(&r, &Assessment::default(), NOW + i64::from(i) * 1_000_000);
    }
    assert!(v.len() <= 100, "{}", v.len());
    // The newest connection is kept.
    let j: serde_json::Value = serde_json::from_str(&v.connections_json(true)).unwrap();
    let ids: Vec<&str> = j["apps"][0]["conns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert!(ids.iter().any(|id| id.ends_with(":1299")), "newest kept");
}

#[test]
fn open_connections_are_all_kept_past_the_closed_cap() {
    let limits = Limits {
        max_connections: 1_000,
        max_closed: 50,
        ..Limits::default()
    };
    let v = LiveView::new(Config::default(), None, limits);
    let p = process(1, "many", None);
    let remote = |i: u32| SocketAddr::new(IpAddr::from([198, 51, 100, (i % 250) as u8]), 1000 + i as u16);
    // 300 open connections: more than the closed cap, all kept.
    for i in 0..300u32 {
        let r = opened(&p, "10.0.0.2:50000", &remote(i).to_string(), (1, 1));
        v.on_record(&r, &Assessment::default(), NOW + i64::from(i) * 1_000_000);
    }
    assert_eq!(v.len(), 300);
    // 200 of them close: about 50 closed ones stay (the newest), every open one stays.
    for i in 0..200u32 {
        let mut r = opened(&p, "10.0.0.2:50000", &remote(i).to_string(), (1, 1));
        if let Record::Connection(c) = &mut r {
            c.event = ConnEvent::Closed;
        }
        v.on_record(
            &r,
            &Assessment::default(),
            NOW + 1_000_000_000 + i64::from(i) * 1_000_000,
        );
    }
    let j: serde_json::Value = serde_json::from_str(&v.connections_json(true)).unwrap();
    let conns = j["apps"][0]["conns"].as_array().unwrap();
    let open = conns.iter().filter(|c| c["open"] == true).count();
    let closed = conns.len() - open;
    assert_eq!(open, 100, "every open connection stays");
    // Closed ones are counted every max_closed / 10 updates: at most 10% over their cap.
    assert!((1..=55).contains(&closed), "closed kept: {closed}");
    assert!(
        conns.iter().any(|c| c["id"].as_str().unwrap().ends_with(":1199")),
        "the newest closed one is kept"
    );
}

#[test]
fn api_answers_10k_connections_fast() {
    let v = LiveView::new(Config::default(), None, Limits::default());
    for app in 0..50u32 {
        let p = process(1000 + app, &format!("app{app}"), None);
        for i in 0..200u32 {
            let remote = SocketAddr::new(IpAddr::from([198, 18, (app % 250) as u8, (i % 250) as u8]), 443);
            let local = format!("10.0.0.2:{}", 10_000 + app * 200 + i);
            v.on_record(
                &opened(&p, &local, &remote.to_string(), (100, 100)),
                &assessment(1, "Org", None),
                NOW,
            );
        }
    }
    assert_eq!(v.len(), 10_000);
    let srv = start(v, None, None);
    let mut times = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let (st, _, body) = http(srv.addr, "GET", "/api/connections", &[], "");
        times.push(t.elapsed());
        assert_eq!(st, 200);
        assert!(body.len() > 1_000_000);
    }
    times.sort();
    eprintln!(
        "/api/connections with 10k connections: median {:?}, max {:?}",
        times[10], times[19]
    );
    // Debug build on a shared machine: a guard against pathological slowness only; the issue's
    // 50 ms p99 target is for release builds under a load tool.
    assert!(times[10] < Duration::from_secs(5));
}

/// 10,000 connections of 50 programs, each with `updates` byte samples (the bench's view).
fn view_10k(updates: u32) -> Arc<LiveView> {
    let v = LiveView::new(
        Config::default(),
        Some(Box::new(intel::ServiceNames::builtin())),
        Limits::default(),
    );
    for k in 0..updates.max(1) {
        for app in 0..50u32 {
            let p = process(1000 + app, &format!("app{app}"), None);
            for i in 0..200u32 {
                let remote =
                    SocketAddr::new(IpAddr::from([198, 18, (app % 250) as u8, (i % 250) as u8]), 443);
                let local = format!("10.0.0.2:{}", 10_000 + app * 200 + i);
                let b = 100 + u64::from(k) * 1000;
                v.on_record(
                    &opened(&p, &local, &remote.to_string(), (b, b / 2)),
                    &assessment(app % 7, "Example Hosting Org", None),
                    NOW + i64::from(k) * 2_000_000_000,
                );
            }
        }
    }
    v
}

/// The server `scripts/bench-web.sh` loads: 10,000 connections (4 byte samples each) on a free
/// loopback port, its address written to `$NETVIGIL_WEB_BENCH_ADDR`; it stops when that file
/// is removed or after `$NETVIGIL_WEB_BENCH_SECS` (default 120). With
/// `$NETVIGIL_WEB_BENCH_CHURN_MS` set, one connection changes every that many ms (the cached
/// body is rebuilt after each change: the worst case of a busy live view).
#[test]
#[ignore = "a server for scripts/bench-web.sh (release build and a load tool), not a test"]
fn bench_serve_10k() {
    let file = PathBuf::from(
        std::env::var_os("NETVIGIL_WEB_BENCH_ADDR")
            .expect("set NETVIGIL_WEB_BENCH_ADDR to a file for the address"),
    );
    let secs: u64 = std::env::var("NETVIGIL_WEB_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let churn: Option<u64> = std::env::var("NETVIGIL_WEB_BENCH_CHURN_MS")
        .ok()
        .and_then(|s| s.parse().ok());
    let v = view_10k(4);
    assert_eq!(v.len(), 10_000);
    let body = v.connections_body(true);
    eprintln!(
        "/api/connections body: {} bytes for {} connections",
        body.len(),
        v.len()
    );
    // The rebuild after one change (every other connection's text is kept), 21 times; and a
    // build that serialises every connection (as each request did before the cache).
    let p0 = process(1000, "app0", None);
    let mut builds: Vec<Duration> = (0..21u64)
        .map(|k| {
            v.on_record(
                &opened(&p0, "10.0.0.2:10000", "198.18.0.0:443", (9_000 + k, 100)),
                &assessment(0, "Example Hosting Org", None),
                NOW + 20_000_000_000,
            );
            let t = Instant::now();
            let b = v.connections_body(true);
            let e = t.elapsed();
            assert!(b.len() > 1_000_000);
            e
        })
        .collect();
    builds.sort();
    let mut full: Vec<Duration> = (0..21)
        .map(|_| {
            v.forget_serialised();
            let t = Instant::now();
            let b = v.connections_json(true);
            let e = t.elapsed();
            assert!(b.len() > 1_000_000);
            e
        })
        .collect();
    full.sort();
    eprintln!(
        "rebuild after one change: median {:?}, max {:?}; serialising all 10,000: median {:?}, max {:?}",
        builds[10], builds[20], full[10], full[20]
    );
    let srv = start(v.clone(), None, None);
    std::fs::write(&file, srv.addr.to_string()).unwrap();
    let end = Instant::now() + Duration::from_secs(secs);
    let p = process(1000, "app0", None);
    let mut i = 0u32;
    while file.exists() && Instant::now() < end {
        match churn {
            Some(ms) => {
                i = (i + 1) % 200;
                let local = format!("10.0.0.2:{}", 10_000 + i);
                let remote = format!("198.18.0.{}:443", i % 250);
                v.on_record(
                    &opened(&p, &local, &remote, (5_000 + u64::from(i), 100)),
                    &assessment(0, "Example Hosting Org", None),
                    NOW + 10_000_000_000,
                );
                std::thread::sleep(Duration::from_millis(ms.max(1)));
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    srv.stop();
    let _ = std::fs::remove_file(&file);
}

#[test]
fn the_connections_body_is_rebuilt_after_each_change_only() {
    let v = filled_view();
    let a = v.connections_body(true);
    let b = v.connections_body(true);
    // Unchanged view: the same bytes, shared (no new serialisation).
    assert_eq!(a.as_ptr(), b.as_ptr());
    assert!(
        a == v.connections_json(true).as_bytes(),
        "the cached body is the built one"
    );
    // Closed connections in or out are cached apart.
    assert!(v.connections_body(false) == v.connections_json(false).as_bytes());
    let (f1, f2) = (v.connections_body(false), v.connections_body(false));
    assert_eq!(f1.as_ptr(), f2.as_ptr());
    assert_ne!(
        f1.as_ptr(),
        a.as_ptr(),
        "closed in and out have their own entries"
    );
    assert_eq!(v.connections_body(true).as_ptr(), a.as_ptr());
    // Any change (a record, usage, a digest) gives a new body with the change in it.
    let p = process(500, "wget", Some("wget"));
    v.on_record(
        &opened(&p, "10.0.0.2:41000", "203.0.113.9:80", (1, 2)),
        &assessment(3, "Test Net", None),
        NOW,
    );
    let c = v.connections_body(true);
    assert!(a != c, "a change gives a new body");
    assert!(std::str::from_utf8(&c).unwrap().contains("\"app\":\"wget\""));
    let mut usage = std::collections::HashMap::new();
    usage.insert(
        500,
        super::health::ProcUsage {
            cpu_pct: Some(12.5),
            rss_bytes: Some(4096),
        },
    );
    v.set_usage(usage);
    let d = v.connections_body(true);
    assert!(
        std::str::from_utf8(&d).unwrap().contains("\"cpu_pct\":12.5"),
        "usage must show"
    );
    assert!(d == v.connections_json(true).as_bytes());
}

#[test]
fn snapshot_changes_reach_the_body_and_the_stream() {
    use engine::sockets::{SocketEntry, SocketSnapshot};
    let v = filled_view();
    let mut rx = v.subscribe();
    let entry = |state: TcpState| SocketEntry {
        proto: SockProto::Tcp,
        local: "10.0.0.2:40100".parse().unwrap(),
        remote: "140.82.112.3:443".parse().unwrap(),
        state: Some(state),
        connected: true,
        uid: 1000,
        inode: 77,
        rx_queue: 0,
        tx_queue: 0,
        tcp: None,
        interface: None,
    };
    let snap = |sockets: Vec<SocketEntry>| SocketSnapshot {
        taken_at: NOW + 1_000_000_000,
        sockets,
        ..SocketSnapshot::default()
    };
    let curl = |body: &[u8]| -> serde_json::Value {
        let j: serde_json::Value = serde_json::from_slice(body).unwrap();
        j["apps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["app"] == "curl")
            .unwrap()["conns"][0]
            .clone()
    };
    // The socket table says curl's connection is the same: its queues are now known.
    v.on_snapshot(&snap(vec![entry(TcpState::Established)]));
    let c = curl(&v.connections_body(true));
    assert_eq!(
        (c["state"].as_str(), c["rx_queue"].as_u64()),
        (Some("ESTABLISHED"), Some(0))
    );
    // Only the state changes (no bytes): the body and the stream both say so.
    while rx.try_recv().is_ok() {}
    v.on_snapshot(&snap(vec![entry(TcpState::CloseWait)]));
    assert_eq!(curl(&v.connections_body(true))["state"], "CLOSE_WAIT");
    let m = rx.try_recv().expect("a conn message for the state change");
    assert_eq!(m.event, "conn");
    assert!(m.data.contains("\"state\":\"CLOSE_WAIT\""), "{}", m.data);
    // Gone from the table: closed; and a reverse-DNS answer shows.
    v.on_snapshot(&snap(vec![]));
    let c = curl(&v.connections_body(true));
    assert_eq!(
        (c["state"].as_str(), c["open"].as_bool()),
        (Some("CLOSED"), Some(false))
    );
    v.set_rdns(
        "140.82.112.3".parse().unwrap(),
        &Rdns::Name("lb-140-82-112-3.github.com".into()),
    );
    assert_eq!(
        curl(&v.connections_body(true))["rdns"],
        "lb-140-82-112-3.github.com"
    );
    assert!(v.connections_body(true) == v.connections_json(true).as_bytes());
}

#[test]
fn one_connection_with_its_samples() {
    let v = filled_view();
    let p = process(100, "firefox", Some("firefox-esr"));
    v.on_record(
        &opened(&p, "10.0.0.2:40001", "93.184.216.34:443", (9000, 800)),
        &assessment(0, "Example Org", Some("example.net")),
        NOW + 2_000_000_000,
    );
    let srv = start(v, None, None);
    // The list has no samples ...
    let (_, j) = get_json(srv.addr, "/api/connections");
    assert!(
        j["apps"][0]["conns"][0].get("samples").is_none(),
        "{}",
        j["apps"][0]["conns"][0]
    );
    // ... the connection's own route has them, oldest first.
    let (st, c) = get_json(
        srv.addr,
        "/api/connection/tcp%7C10.0.0.2%3A40001%7C93.184.216.34%3A443",
    );
    assert_eq!(st, 200, "{c}");
    assert_eq!(c["app"], "firefox");
    assert_eq!(
        c["samples"],
        serde_json::json!([
            [1_700_000_000_000i64, 5000, 700],
            [1_700_000_002_000i64, 9000, 800]
        ])
    );
    let (st, e) = get_json(srv.addr, "/api/connection/tcp%7C10.0.0.9%3A1%7C10.0.0.1%3A2");
    assert_eq!(st, 404);
    assert!(e["error"].as_str().unwrap().contains("no connection"));
}
