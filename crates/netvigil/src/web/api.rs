//! Routes of the dashboard: the embedded page, the JSON API, the SSE stream, and the checks
//! every request passes (allowed Host, same-origin POST with the secret cookie, security
//! headers). docs/api.md documents each route.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, Query as UrlQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokio::sync::{broadcast, watch};

use super::ServeOptions;
use super::settings::Settings;
use super::state::LiveView;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
const ICON_SVG: &str = include_str!("assets/icon.svg");

/// Everything a handler needs.
#[derive(Clone, Debug)]
pub struct AppState {
    view: Arc<LiveView>,
    store_path: Option<PathBuf>,
    settings_path: Option<PathBuf>,
    secret: Arc<str>,
    hosts: Arc<Vec<String>>,
    shutdown: watch::Receiver<bool>,
    heartbeat: Duration,
    metrics: Option<Arc<super::metrics::Metrics>>,
    rdap: Option<Arc<crate::rdap_fetch::Rdap>>,
    on_settings: Option<super::settings::OnSave>,
}

impl AppState {
    /// State for [`router`].
    pub fn new(view: Arc<LiveView>, o: &ServeOptions, shutdown: watch::Receiver<bool>) -> Self {
        let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "[::1]"].map(String::from).to_vec();
        hosts.extend(o.extra_hosts.iter().map(|h| h.to_ascii_lowercase()));
        Self {
            view,
            store_path: o.store_path.clone(),
            settings_path: o.settings_path.clone(),
            secret: o.secret.as_str().into(),
            hosts: Arc::new(hosts),
            shutdown,
            heartbeat: o.heartbeat,
            metrics: o.metrics.clone(),
            rdap: o.rdap.clone(),
            on_settings: o.on_settings.clone(),
        }
    }
}

/// The whole application.
pub fn router(st: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route("/icon.svg", get(|| async { asset("image/svg+xml", ICON_SVG) }))
        .route("/api/connections", get(connections))
        .route("/api/connection/{id}", get(connection))
        .route("/api/alerts", get(alerts))
        .route("/api/health", get(health))
        .route("/api/history", get(history))
        .route("/api/whois/{ip}", get(whois))
        .route("/api/process/{pid}", get(process))
        .route("/api/export", get(export))
        .route("/api/settings", get(get_settings).post(post_settings))
        .route("/api/events", get(events))
        .route("/metrics", get(metrics))
        .fallback(|| async { err(StatusCode::NOT_FOUND, "no such page or route; see docs/api.md") })
        .layer(middleware::from_fn_with_state(st.clone(), guard))
        .with_state(st)
}

/// A JSON error: `{"error": "..."}`.
fn err(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, axum::Json(json!({ "error": msg.into() }))).into_response()
}

fn asset(ctype: &'static str, body: &'static str) -> Response {
    (
        [(header::CONTENT_TYPE, ctype), (header::CACHE_CONTROL, "no-cache")],
        body,
    )
        .into_response()
}

/// The Host header's name without port, lower case (`[::1]` keeps its brackets).
fn host_name(h: &str) -> String {
    let h = h.trim().to_ascii_lowercase();
    if h.starts_with('[') {
        return h.split_once(']').map_or(h.clone(), |(a, _)| format!("{a}]"));
    }
    h.rsplit_once(':').map_or(h.clone(), |(a, _)| a.to_string())
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            v.split(';').find_map(|kv| {
                let (k, val) = kv.trim().split_once('=')?;
                (k == name).then(|| val.to_string())
            })
        })
}

/// Compares without an early exit (the secret must not leak through timing).
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn guard(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let name = host_name(host);
    if !st.hosts.contains(&name) {
        return err(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "Host \"{host}\" is not allowed: open the dashboard as http://127.0.0.1 or http://localhost \
                 (other names are refused to stop DNS rebinding)"
            ),
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
            let expected = format!("http://{}", host.to_ascii_lowercase());
            if !origin.eq_ignore_ascii_case(&expected) {
                return err(
                    StatusCode::FORBIDDEN,
                    format!("cross-origin request refused: Origin {origin} is not {expected}"),
                );
            }
        }
        if headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v != "same-origin")
        {
            return err(
                StatusCode::FORBIDDEN,
                "cross-site request refused (Sec-Fetch-Site)",
            );
        }
        match cookie(headers, "nv_token") {
            Some(t) if same_secret(&t, &st.secret) => {}
            _ => {
                return err(
                    StatusCode::FORBIDDEN,
                    "missing or wrong nv_token cookie: load the dashboard page first (scripts: send the \
                     secret from the config dir's web.secret as the nv_token cookie)",
                );
            }
        }
    }
    let is_api = req.uri().path().starts_with("/api/");
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    security_headers(h);
    if is_api {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// The headers every dashboard answer carries (this one and the fleet server's): a strict
/// content security policy (own scripts and styles only, no frames), no MIME sniffing, no
/// framing, no referrer.
pub(crate) fn security_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

async fn index(State(st): State<AppState>) -> Response {
    let cookie = format!("nv_token={}; Path=/; HttpOnly; SameSite=Strict", st.secret);
    let mut r = asset("text/html; charset=utf-8", INDEX_HTML);
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn connections(State(st): State<AppState>, UrlQuery(q): UrlQuery<HashMap<String, String>>) -> Response {
    let closed = q.get("closed").is_none_or(|v| v != "0" && v != "false");
    // Off the server's thread: a rebuild of 10,000 connections takes milliseconds, and SSE
    // streams and other requests go on meanwhile.
    let view = st.view.clone();
    let body = match tokio::task::spawn_blocking(move || view.connections_body(closed)).await {
        Ok(b) => b,
        Err(e) => {
            return err(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("building the answer failed: {e}"),
            );
        }
    };
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn connection(State(st): State<AppState>, UrlPath(id): UrlPath<String>) -> Response {
    match st.view.connection_json(&id) {
        Some(v) => axum::Json(v).into_response(),
        None => err(
            StatusCode::NOT_FOUND,
            format!(
                "no connection \"{id}\" in the live view (closed ones are dropped when there are too many)"
            ),
        ),
    }
}

async fn alerts(State(st): State<AppState>) -> Response {
    axum::Json(st.view.alerts_json()).into_response()
}

async fn health(State(st): State<AppState>) -> Response {
    axum::Json(st.view.health_json()).into_response()
}

/// Prometheus text exposition of the pipeline's counters.
async fn metrics(State(st): State<AppState>) -> Response {
    match &st.metrics {
        Some(m) => (
            [
                (header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            m.render(),
        )
            .into_response(),
        None => err(
            StatusCode::NOT_FOUND,
            "no metrics: this dashboard is not served by `netvigil run`",
        ),
    }
}

async fn whois(State(st): State<AppState>, UrlPath(ip): UrlPath<String>) -> Response {
    let Ok(a) = ip.parse::<IpAddr>() else {
        return err(
            StatusCode::BAD_REQUEST,
            format!("\"{ip}\" is not an IP address (e.g. 93.184.216.34 or 2606:4700::1)"),
        );
    };
    let mut v = st.view.whois_json(a);
    // RDAP on demand (cached 24 h): only for public addresses, off the async executor.
    if let Some(r) = st.rdap.clone()
        && engine::judge::is_global(a)
    {
        v["rdap"] = match tokio::task::spawn_blocking(move || r.lookup(a)).await {
            Ok(Ok(w)) => {
                let mut o = serde_json::to_value(&w).unwrap_or_default();
                o["available"] = true.into();
                o
            }
            Ok(Err(e)) => serde_json::json!({"available": false, "error": e.to_string()}),
            Err(_) => serde_json::json!({"available": false, "error": "the lookup thread failed"}),
        };
    }
    axum::Json(v).into_response()
}

async fn process(State(st): State<AppState>, UrlPath(pid): UrlPath<String>) -> Response {
    let Ok(n) = pid.parse::<u32>() else {
        return err(
            StatusCode::BAD_REQUEST,
            format!("\"{pid}\" is not a process id (a number)"),
        );
    };
    match st.view.process_json(n) {
        Some(v) => axum::Json(v).into_response(),
        None => err(
            StatusCode::NOT_FOUND,
            format!("process {n} has no connection the dashboard has seen"),
        ),
    }
}

/// The store filter from `app`, `host`, `since`, `until`, `limit` (times as `netvigil history`
/// takes them: RFC 3339, a date, or an age such as 2h).
fn store_query(q: &HashMap<String, String>, default_limit: Option<usize>) -> Result<store::Query, String> {
    let now = crate::live::now_nanos();
    let time = |k: &str| -> Result<Option<i64>, String> {
        q.get(k)
            .filter(|v| !v.is_empty())
            .map(|v| crate::history::parse_time(v, now).map_err(|e| format!("{k}: {e}")))
            .transpose()
    };
    let limit = match q.get("limit").filter(|v| !v.is_empty()) {
        Some(v) => Some(
            v.parse::<usize>()
                .ok()
                .filter(|n| (1..=100_000).contains(n))
                .ok_or_else(|| format!("limit: \"{v}\" is not a number from 1 to 100000"))?,
        ),
        None => default_limit,
    };
    let s = |k: &str| q.get(k).filter(|v| !v.is_empty()).cloned();
    let query = store::Query {
        device: None,
        app: s("app"),
        host: s("host"),
        since: time("since")?,
        until: time("until")?,
        limit,
    };
    if let (Some(a), Some(b)) = (query.since, query.until)
        && a >= b
    {
        return Err("since must be before until".into());
    }
    Ok(query)
}

/// An error on its way to [`err`].
type Fail = (StatusCode, String);

/// Opens the store for one request; a missing file is a 404 that says how to get history.
fn open_store(path: Option<&PathBuf>) -> Result<store::SqliteStore, Fail> {
    let Some(p) = path else {
        return Err((
            StatusCode::NOT_FOUND,
            "no database: this dashboard runs without a store (no --data-dir)".into(),
        ));
    };
    if !p.exists() {
        return Err((
            StatusCode::NOT_FOUND,
            format!(
                "no history yet at {}: run `netvigil run` or `netvigil read --store` first",
                p.display()
            ),
        ));
    }
    store::SqliteStore::open(p).map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

async fn history(State(st): State<AppState>, UrlQuery(q): UrlQuery<HashMap<String, String>>) -> Response {
    let query = match store_query(&q, Some(500)) {
        Ok(x) => x,
        Err(e) => return err(StatusCode::BAD_REQUEST, e),
    };
    let path = st.store_path.clone();
    let r = tokio::task::spawn_blocking(move || -> Result<serde_json::Value, Fail> {
        use store::Backend as _;
        let mut db = open_store(path.as_ref())?;
        let e500 = |e: store::StoreError| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        let flows = db.flows(&query).map_err(e500)?;
        let alerts = db.alerts(&query).map_err(e500)?;
        let span = query.until.unwrap_or(i64::MAX).saturating_sub(query.since.unwrap_or(0));
        let grain = if span <= 6 * 3_600_000_000_000 { store::RollupGrain::Minute } else { store::RollupGrain::Hour };
        let rq = store::Query { limit: None, ..query.clone() };
        let rollups = db.rollups(grain, &rq).map_err(e500)?;
        let mut by_app: HashMap<Option<String>, (u64, u64, u64)> = HashMap::new();
        let mut by_host: HashMap<String, (u64, u64, u64)> = HashMap::new();
        let mut timeline: std::collections::BTreeMap<i64, (u64, u64, u64)> = Default::default();
        for r in &rollups {
            for t in [
                by_app.entry(r.app.clone()).or_default(),
                by_host.entry(r.remote.clone()).or_default(),
                timeline.entry(r.bucket).or_default(),
            ] {
                t.0 += r.flows;
                t.1 += r.bytes_to_client;
                t.2 += r.bytes_to_server;
            }
        }
        let table = |m: Vec<(serde_json::Value, (u64, u64, u64))>| -> Vec<serde_json::Value> {
            let mut m = m;
            m.sort_by_key(|(_, (_, i, o))| std::cmp::Reverse(i + o));
            m.into_iter()
                .take(100)
                .map(|(k, (f, i, o))| json!({"name": k, "flows": f, "bytes_in": i, "bytes_out": o}))
                .collect()
        };
        let flows: Vec<_> = flows
            .iter()
            .map(|f| {
                json!({
                    "start_ms": f.start.div_euclid(1_000_000), "end_ms": f.end.div_euclid(1_000_000),
                    "proto": engine::record::l4_name(f.proto), "client": f.client.to_string(),
                    "server": f.server.to_string(), "app": f.app, "pid": f.pid, "domain": f.domain,
                    "app_proto": f.app_proto, "bytes_to_server": f.bytes_to_server,
                    "bytes_to_client": f.bytes_to_client,
                })
            })
            .collect();
        let alerts: Vec<_> = alerts
            .iter()
            .map(|a| {
                json!({"id": a.id, "ts_ms": a.ts.div_euclid(1_000_000), "severity": a.severity.as_str(),
                       "rule": a.rule, "app": a.app, "remote": a.remote, "reason": a.reason})
            })
            .collect();
        Ok(json!({
            "since_ms": query.since.map(|t| t.div_euclid(1_000_000)),
            "until_ms": query.until.map(|t| t.div_euclid(1_000_000)),
            "grain": if grain == store::RollupGrain::Minute { "minute" } else { "hour" },
            "flows": flows,
            "alerts": alerts,
            "by_app": table(by_app.into_iter().map(|(k, v)| (json!(k), v)).collect()),
            "by_host": table(by_host.into_iter().map(|(k, v)| (json!(k), v)).collect()),
            "timeline": timeline.into_iter().map(|(b, (f, i, o))| json!([b.div_euclid(1_000_000), f, i, o])).collect::<Vec<_>>(),
        }))
    })
    .await;
    match r {
        Ok(Ok(v)) => axum::Json(v).into_response(),
        Ok(Err((code, msg))) => err(code, msg),
        Err(e) => err(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("history query failed: {e}"),
        ),
    }
}

async fn export(State(st): State<AppState>, UrlQuery(q): UrlQuery<HashMap<String, String>>) -> Response {
    let format = q.get("format").map_or("json", String::as_str).to_string();
    if format != "json" && format != "csv" {
        return err(
            StatusCode::BAD_REQUEST,
            format!("format \"{format}\" is not known: use json or csv"),
        );
    }
    let query = match store_query(&q, None) {
        Ok(x) => x,
        Err(e) => return err(StatusCode::BAD_REQUEST, e),
    };
    let path = st.store_path.clone();
    let r = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, Fail> {
        let mut db = open_store(path.as_ref())?;
        let mut out = Vec::new();
        let res = if format == "csv" {
            store::export::csv(&mut db, &query, &mut out)
        } else {
            store::export::jsonl(&mut db, &query, &mut out)
        };
        res.map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        Ok(out)
    })
    .await;
    let csv = q.get("format").is_some_and(|f| f == "csv");
    match r {
        Ok(Ok(body)) => (
            [
                (
                    header::CONTENT_TYPE,
                    if csv {
                        "text/csv; charset=utf-8"
                    } else {
                        "application/x-ndjson"
                    },
                ),
                (
                    header::CONTENT_DISPOSITION,
                    if csv {
                        "attachment; filename=\"netvigil.csv\""
                    } else {
                        "attachment; filename=\"netvigil.jsonl\""
                    },
                ),
            ],
            body,
        )
            .into_response(),
        Ok(Err((code, msg))) => err(code, msg),
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, format!("export failed: {e}")),
    }
}

async fn get_settings(State(st): State<AppState>) -> Response {
    let Some(p) = st.settings_path.as_ref() else {
        return axum::Json(json!({"settings": Settings::default(), "path": null})).into_response();
    };
    match Settings::load(p) {
        Ok(s) => axum::Json(json!({"settings": s, "path": p.display().to_string()})).into_response(),
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn post_settings(State(st): State<AppState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let json_ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json_ct {
        return err(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the settings as Content-Type: application/json",
        );
    }
    let s: Settings = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => return err(StatusCode::BAD_REQUEST, format!("settings: {e}")),
    };
    if let Err(e) = s.validate() {
        return err(StatusCode::BAD_REQUEST, format!("settings: {e}"));
    }
    let Some(p) = st.settings_path.clone() else {
        return err(
            StatusCode::SERVICE_UNAVAILABLE,
            "no config folder: set XDG_CONFIG_HOME or HOME so settings can be saved",
        );
    };
    let r = tokio::task::spawn_blocking(move || s.save(&p).map(|()| (s, p))).await;
    match r {
        Ok(Ok((s, p))) => {
            if let Some(f) = &st.on_settings {
                (f.0)(&s);
            }
            axum::Json(json!({"saved": true, "path": p.display().to_string(), "settings": s})).into_response()
        }
        Ok(Err(e)) => err(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// SSE: `conn`, `alert`, `health`, `reload` events as they happen and a `heartbeat` every few
/// seconds; ends when the server stops.
async fn events(State(st): State<AppState>) -> Response {
    let rx = st.view.subscribe();
    let mut beat = tokio::time::interval(st.heartbeat);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let view = st.view.clone();
    let first = Event::default()
        .event("hello")
        .data(json!({"seq": view.seq().0}).to_string());
    let stream = futures_util::stream::unfold(
        (rx, st.shutdown.clone(), beat, view, Some(first)),
        |(mut rx, mut stop, mut beat, view, first)| async move {
            if let Some(f) = first {
                return Some((Ok::<Event, Infallible>(f), (rx, stop, beat, view, None)));
            }
            if *stop.borrow() {
                return None;
            }
            let ev = tokio::select! {
                m = rx.recv() => match m {
                    Ok(m) => Event::default().event(m.event).data(m.data.clone()),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        Event::default().event("reload").data(json!({"missed": n}).to_string())
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = beat.tick() => {
                    let (seq, updated) = view.seq();
                    Event::default().event("heartbeat").data(json!({"seq": seq, "updated_ms": updated}).to_string())
                }
                _ = stop.changed() => return None,
            };
            Some((Ok(ev), (rx, stop, beat, view, None)))
        },
    );
    Sse::new(stream).into_response()
}
