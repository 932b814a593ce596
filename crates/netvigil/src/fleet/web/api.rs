//! Routes of the fleet dashboard and the guard every request passes: only the page's static
//! files and the three login routes answer without a session ([`PUBLIC`]); state changes
//! must come from the dashboard's own origin; every answer carries the security headers.
//! docs/fleet-dashboard.md lists the routes.

// Handlers return a ready error `Response` from their small helpers; it is built once per
// refused request, so its size does not matter.
#![allow(clippy::result_large_err)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path as UrlPath, Query as UrlQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::auth::{Auth, COOKIE, Purpose, Session};
use super::data::{Data, Window};
use super::users::{Passkey, Users, verify_password};
use super::webauthn::{self, Expect, b64url, b64url_decode};

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
const ICON_SVG: &str = include_str!("assets/icon.svg");

/// (method, path) pairs that answer without a session: the page and its static files, and
/// logging in. Everything else, unknown paths included, needs a session.
pub const PUBLIC: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/app.js"),
    ("GET", "/app.css"),
    ("GET", "/icon.svg"),
    ("POST", "/api/login"),
    ("POST", "/api/passkey/login/begin"),
    ("POST", "/api/passkey/login/finish"),
];

/// The client address as the listener saw it.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, super::tls::TlsListener>>
    for Peer
{
    fn connect_info(s: axum::serve::IncomingStream<'_, super::tls::TlsListener>) -> Self {
        Peer(*s.remote_addr())
    }
}

impl axum::extract::connect_info::Connected<SocketAddr> for Peer {
    fn connect_info(a: SocketAddr) -> Self {
        Peer(a)
    }
}

/// Everything a handler needs.
#[derive(Clone, Debug)]
pub struct AppState {
    pub data: Arc<Data>,
    pub auth: Arc<Auth>,
    pub users: Users,
    /// argon2 runs at most this many at once (each takes 19 MiB and tens of ms).
    pub argon: Arc<Semaphore>,
}

/// Every route: (method, path pattern, handler). [`router`] is built from this list and the
/// route-walk test enumerates it, so no route can be added without being walked. Each path
/// appears once.
pub fn routes() -> Vec<(&'static str, &'static str, MethodRouter<AppState>)> {
    vec![
        (
            "GET",
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        ),
        (
            "GET",
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        ),
        (
            "GET",
            "/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        ),
        (
            "GET",
            "/icon.svg",
            get(|| async { asset("image/svg+xml", ICON_SVG) }),
        ),
        ("POST", "/api/login", post(login)),
        ("POST", "/api/logout", post(logout)),
        ("GET", "/api/me", get(me)),
        ("GET", "/api/devices", get(devices)),
        ("GET", "/api/devices/{id}/flows", get(device_flows)),
        ("GET", "/api/devices/{id}/apps", get(device_apps)),
        ("GET", "/api/devices/{id}/alerts", get(device_alerts)),
        ("GET", "/api/devices/{id}/lan", get(device_lan)),
        ("GET", "/api/fleet/aggregates", get(aggregates)),
        ("GET", "/api/fleet/patterns", get(patterns)),
        ("GET", "/api/passkeys", get(passkeys)),
        ("POST", "/api/passkeys/{id}/delete", post(passkey_delete)),
        ("POST", "/api/passkey/register/begin", post(register_begin)),
        ("POST", "/api/passkey/register/finish", post(register_finish)),
        ("POST", "/api/passkey/login/begin", post(login_begin)),
        ("POST", "/api/passkey/login/finish", post(login_finish)),
    ]
}

/// The whole application: [`routes`], a JSON 404 for anything else, and the [`guard`] in
/// front of all of it (the fallback included).
pub fn router(st: AppState) -> Router {
    let mut r = Router::new();
    for (_, path, handler) in routes() {
        r = r.route(path, handler);
    }
    r.fallback(|| async {
        err(
            StatusCode::NOT_FOUND,
            "no such page or route; see docs/fleet-dashboard.md",
        )
    })
    .layer(middleware::from_fn_with_state(st.clone(), guard))
    .with_state(st)
}

/// A JSON error: `{"error": "..."}`.
pub fn err(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, axum::Json(json!({ "error": msg.into() }))).into_response()
}

fn asset(ctype: &'static str, body: &'static str) -> Response {
    (
        [(header::CONTENT_TYPE, ctype), (header::CACHE_CONTROL, "no-cache")],
        body,
    )
        .into_response()
}

fn now_ms() -> i64 {
    crate::fleet::server::now_ns().div_euclid(1_000_000)
}

/// The value of cookie `name`.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
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

fn host(headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The Host header's name without the port (`[::1]` keeps its brackets).
fn host_name(h: &str) -> &str {
    if h.starts_with('[') {
        return h.split_once(']').map_or(h, |(a, _)| &h[..a.len() + 1]);
    }
    h.rsplit_once(':').map_or(h, |(a, _)| a)
}

fn is_public(method: &Method, path: &str) -> bool {
    PUBLIC
        .iter()
        .any(|(m, p)| *p == path && (*m == method.as_str() || (*m == "GET" && method == Method::HEAD)))
}

async fn guard(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let headers = req.headers();
    let h = host(headers);
    if h.is_empty() {
        return err(StatusCode::BAD_REQUEST, "no Host header");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
            let expected = format!("https://{h}");
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
            .is_some_and(|v| v != "same-origin" && v != "none")
        {
            return err(
                StatusCode::FORBIDDEN,
                "cross-site request refused (Sec-Fetch-Site)",
            );
        }
    }
    let path = req.uri().path().to_string();
    if !is_public(req.method(), &path) {
        let session = match cookie(headers, COOKIE) {
            Some(t) => {
                let auth = st.auth.clone();
                match blocking(move || auth.get(&t, now_ms())).await {
                    Ok(s) => s,
                    Err(r) => return headers_on(r, &h),
                }
            }
            None => None,
        };
        match session {
            Some(s) => {
                req.extensions_mut().insert(s);
            }
            None => {
                let mut r = err(
                    StatusCode::UNAUTHORIZED,
                    "log in first: POST /api/login with {\"user\": ..., \"password\": ...}, or use a passkey",
                );
                r.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                return headers_on(r, &h);
            }
        }
    }
    let is_api = path.starts_with("/api/");
    let mut resp = next.run(req).await;
    if is_api {
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    headers_on(resp, &h)
}

fn headers_on(mut resp: Response, host: &str) -> Response {
    let h = resp.headers_mut();
    crate::web::api::security_headers(h);
    // HSTS binds a host name on every port: not for localhost or bare addresses, where other
    // local services may speak plain HTTP.
    let name = host_name(host);
    if name != "localhost" && name.parse::<IpAddr>().is_err() && !name.starts_with('[') {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    resp
}

fn session_cookie(token: &str, max_age: u64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn parse<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| {
        err(
            StatusCode::BAD_REQUEST,
            format!("the body must be a JSON object as docs/fleet-dashboard.md says: {e}"),
        )
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(err(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}"))),
        Err(e) => Err(err(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}"))),
    }
}

async fn logged_in(st: &AppState, user: &str, method: &'static str) -> Response {
    let (auth, u, now) = (st.auth.clone(), user.to_string(), now_ms());
    match blocking(move || auth.open(&u, method, now).map_err(anyhow::Error::msg)).await {
        Ok(token) => {
            st.auth.succeeded(user);
            let max_age = st.auth.limits.session_ttl.as_secs();
            let expires_ms = now.saturating_add(st.auth.limits.session_ttl.as_millis() as i64);
            let mut r = axum::Json(json!({
                "user": user,
                "method": method,
                "expires_ms": expires_ms,
            }))
            .into_response();
            r.headers_mut()
                .insert(header::SET_COOKIE, session_cookie(&token, max_age));
            r
        }
        Err(r) => r,
    }
}

fn too_many(wait: std::time::Duration) -> Response {
    let secs = wait.as_secs().max(1);
    let mut r = err(
        StatusCode::TOO_MANY_REQUESTS,
        format!("too many failed logins: try again in {secs} s"),
    );
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

#[derive(Deserialize)]
struct LoginBody {
    user: String,
    password: String,
}

/// A hash to check against when the user does not exist, so both answers take as long.
fn dummy_hash() -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| super::users::hash_password("not a real password at all").unwrap_or_default())
}

async fn login(
    State(st): State<AppState>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    body: Bytes,
) -> Response {
    let b: LoginBody = match parse(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let addr = peer.ip();
    if let Some(wait) = st.auth.blocked(Some(&b.user), addr, Instant::now()) {
        return too_many(wait);
    }
    let Ok(_permit) = st.argon.clone().acquire_owned().await else {
        return err(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    };
    let users = st.users.clone();
    let name = b.user.clone();
    let ok = blocking(move || {
        let u = users.get(&name)?;
        let hash = u
            .as_ref()
            .map_or_else(|| dummy_hash().to_string(), |u| u.hash.clone());
        Ok(verify_password(&hash, &b.password) && u.is_some())
    })
    .await;
    match ok {
        Ok(true) => logged_in(&st, &b.user, "password").await,
        Ok(false) => {
            st.auth.failed(Some(&b.user), addr, Instant::now());
            err(StatusCode::UNAUTHORIZED, "wrong user name or password")
        }
        Err(r) => r,
    }
}

async fn logout(State(st): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(t) = cookie(&headers, COOKIE) {
        let auth = st.auth.clone();
        if let Err(r) = blocking(move || auth.close(&t)).await {
            return r;
        }
    }
    let mut r = axum::Json(json!({"logged_out": true})).into_response();
    r.headers_mut().insert(header::SET_COOKIE, session_cookie("", 0));
    r
}

async fn me(axum::Extension(s): axum::Extension<Session>) -> Response {
    axum::Json(json!({"user": s.user, "method": s.method, "expires_ms": s.expires_ms})).into_response()
}

async fn devices(State(st): State<AppState>) -> Response {
    let d = st.data.clone();
    match blocking(move || d.devices(Instant::now())).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(r) => r,
    }
}

fn device_id(id: &str) -> Result<u32, Response> {
    id.parse::<u32>().ok().filter(|d| *d > 0).ok_or_else(|| {
        err(
            StatusCode::BAD_REQUEST,
            format!("device {id:?}: expected a device id (a number from 1)"),
        )
    })
}

/// Runs `f` for an existing device (404 otherwise).
async fn for_device(
    st: &AppState,
    id: &str,
    f: impl FnOnce(&Data, u32) -> anyhow::Result<Value> + Send + 'static,
) -> Response {
    let dev = match device_id(id) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let d = st.data.clone();
    match blocking(move || {
        if !d.device_exists(dev)? {
            return Ok(None);
        }
        f(&d, dev).map(Some)
    })
    .await
    {
        Ok(Some(v)) => axum::Json(v).into_response(),
        Ok(None) => err(
            StatusCode::NOT_FOUND,
            format!("no device {dev}: see GET /api/devices"),
        ),
        Err(r) => r,
    }
}

type Params = UrlQuery<std::collections::HashMap<String, String>>;

fn limit_param(p: &Params, default: usize, max: usize) -> Result<usize, Response> {
    match p.get("limit") {
        None => Ok(default),
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                err(
                    StatusCode::BAD_REQUEST,
                    format!("limit {s:?}: a number from 1 to {max}"),
                )
            }),
    }
}

async fn device_flows(State(st): State<AppState>, UrlPath(id): UrlPath<String>, p: Params) -> Response {
    let limit = match limit_param(&p, 200, 10_000) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let since = match p.get("since") {
        None => None,
        Some(s) => match crate::history::parse_time(s, crate::fleet::server::now_ns()) {
            Ok(t) => Some(t),
            Err(e) => return err(StatusCode::BAD_REQUEST, format!("since: {e}")),
        },
    };
    for_device(&st, &id, move |d, dev| d.device_flows(dev, since, limit)).await
}

async fn device_apps(State(st): State<AppState>, UrlPath(id): UrlPath<String>, p: Params) -> Response {
    let w = match Window::parse(p.get("window").map(String::as_str)) {
        Ok(w) => w,
        Err(e) => return err(StatusCode::BAD_REQUEST, e),
    };
    for_device(&st, &id, move |d, dev| {
        d.device_apps(dev, w, crate::fleet::server::now_ns())
    })
    .await
}

async fn device_alerts(State(st): State<AppState>, UrlPath(id): UrlPath<String>, p: Params) -> Response {
    let limit = match limit_param(&p, 200, 10_000) {
        Ok(l) => l,
        Err(r) => return r,
    };
    for_device(&st, &id, move |d, dev| d.device_alerts(dev, limit)).await
}

async fn device_lan(State(st): State<AppState>, UrlPath(id): UrlPath<String>) -> Response {
    for_device(&st, &id, move |d, dev| {
        super::lan::lan_devices(d, dev, crate::fleet::server::now_ns())
    })
    .await
}

async fn aggregates(State(st): State<AppState>, p: Params) -> Response {
    let w = match Window::parse(p.get("window").map(String::as_str)) {
        Ok(w) => w,
        Err(e) => return err(StatusCode::BAD_REQUEST, e),
    };
    let d = st.data.clone();
    match blocking(move || d.aggregates(w, crate::fleet::server::now_ns(), Instant::now())).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(r) => r,
    }
}

async fn patterns(State(st): State<AppState>, p: Params) -> Response {
    let w = match Window::parse(p.get("window").map(String::as_str).or(Some("day"))) {
        Ok(w) => w,
        Err(e) => return err(StatusCode::BAD_REQUEST, e),
    };
    let min = match p.get("min_devices").map(|s| s.parse::<usize>()) {
        None => 3,
        Some(Ok(n)) if (2..=1000).contains(&n) => n,
        Some(_) => return err(StatusCode::BAD_REQUEST, "min_devices: a number from 2 to 1000"),
    };
    let d = st.data.clone();
    match blocking(move || d.patterns(w, min, crate::fleet::server::now_ns(), Instant::now())).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(r) => r,
    }
}

// ---- passkeys -----------------------------------------------------------------------------

fn expect_from(headers: &HeaderMap) -> (String, String) {
    let h = host(headers);
    let rp = host_name(&h)
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    (format!("https://{h}"), rp)
}

async fn passkeys(State(st): State<AppState>, axum::Extension(s): axum::Extension<Session>) -> Response {
    let users = st.users.clone();
    match blocking(move || users.get(&s.user)).await {
        Ok(Some(u)) => axum::Json(json!({
            "passkeys": u.passkeys.iter().map(|p| json!({
                "id": p.id, "alg": if p.alg == webauthn::ALG_ES256 { "ES256" } else { "EdDSA" },
                "created_ms": p.created_ms, "last_used_ms": p.last_used_ms, "sign_count": p.sign_count,
            })).collect::<Vec<_>>()
        }))
        .into_response(),
        Ok(None) => err(StatusCode::NOT_FOUND, "your account was removed"),
        Err(r) => r,
    }
}

async fn passkey_delete(
    State(st): State<AppState>,
    axum::Extension(s): axum::Extension<Session>,
    UrlPath(id): UrlPath<String>,
) -> Response {
    let users = st.users.clone();
    match blocking(move || users.remove_passkey(&s.user, &id)).await {
        Ok(true) => axum::Json(json!({"removed": true})).into_response(),
        Ok(false) => err(StatusCode::NOT_FOUND, "no such passkey on your account"),
        Err(r) => r,
    }
}

async fn register_begin(
    State(st): State<AppState>,
    axum::Extension(s): axum::Extension<Session>,
    headers: HeaderMap,
) -> Response {
    let (_, rp) = expect_from(&headers);
    let users = st.users.clone();
    let name = s.user.clone();
    let u = match blocking(move || users.get(&name)).await {
        Ok(Some(u)) => u,
        Ok(None) => return err(StatusCode::NOT_FOUND, "your account was removed"),
        Err(r) => return r,
    };
    let ch = match st
        .auth
        .challenge(Purpose::Register(s.user.clone()), Instant::now())
    {
        Ok(c) => c,
        Err(e) => return err(StatusCode::SERVICE_UNAVAILABLE, e),
    };
    axum::Json(json!({"publicKey": {
        "challenge": b64url(&ch),
        "rp": {"id": rp, "name": "netvigil fleet"},
        "user": {"id": u.handle, "name": u.name, "displayName": u.name},
        "pubKeyCredParams": [{"type": "public-key", "alg": webauthn::ALG_ES256},
                             {"type": "public-key", "alg": webauthn::ALG_EDDSA}],
        "timeout": st.auth.limits.challenge_ttl.as_millis() as u64,
        "attestation": "none",
        "authenticatorSelection": {"residentKey": "preferred", "userVerification": "required"},
        "excludeCredentials": u.passkeys.iter().map(|p| json!({"type": "public-key", "id": p.id})).collect::<Vec<_>>(),
    }}))
    .into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegisterBody {
    #[serde(rename = "clientDataJSON")]
    client_data_json: String,
    attestation_object: String,
}

fn b64(field: &str, s: &str) -> Result<Vec<u8>, Response> {
    b64url_decode(s).map_err(|_| err(StatusCode::BAD_REQUEST, format!("{field}: not base64url")))
}

async fn register_finish(
    State(st): State<AppState>,
    axum::Extension(s): axum::Extension<Session>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let b: RegisterBody = match parse(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let (cd, att) = match (
        b64("clientDataJSON", &b.client_data_json),
        b64("attestationObject", &b.attestation_object),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let (origin, rp) = expect_from(&headers);
    let e = Expect {
        origin: &origin,
        rp_id: &rp,
    };
    let purpose = Purpose::Register(s.user.clone());
    let new = match webauthn::verify_registration(&cd, &att, &e, |c| {
        st.auth.take_challenge(c, &purpose, Instant::now())
    }) {
        Ok(n) => n,
        Err(e) => return err(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let pk = Passkey {
        id: b64url(&new.id),
        alg: new.key.alg(),
        key: b64url(new.key.raw()),
        sign_count: new.sign_count,
        created_ms: now_ms(),
        last_used_ms: None,
    };
    let users = st.users.clone();
    let id = pk.id.clone();
    match blocking(move || users.add_passkey(&s.user, pk)).await {
        Ok(()) => axum::Json(json!({"registered": true, "id": id})).into_response(),
        Err(r) => r,
    }
}

#[derive(Deserialize, Default)]
struct LoginBeginBody {
    #[serde(default)]
    user: Option<String>,
}

async fn login_begin(
    State(st): State<AppState>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let b: LoginBeginBody = if body.is_empty() {
        LoginBeginBody::default()
    } else {
        match parse(&body) {
            Ok(b) => b,
            Err(r) => return r,
        }
    };
    if let Some(wait) = st.auth.blocked(b.user.as_deref(), peer.ip(), Instant::now()) {
        return too_many(wait);
    }
    let (_, rp) = expect_from(&headers);
    // With a name: that account's passkeys (none when unknown, which tells nothing more than
    // an empty list); without: a discoverable passkey of any account.
    let allow: Vec<Value> = match b.user {
        Some(name) => {
            let users = st.users.clone();
            match blocking(move || users.get(&name)).await {
                Ok(u) => u
                    .map(|u| u.passkeys)
                    .unwrap_or_default()
                    .iter()
                    .map(|p| json!({"type": "public-key", "id": p.id}))
                    .collect(),
                Err(r) => return r,
            }
        }
        None => Vec::new(),
    };
    let ch = match st.auth.challenge(Purpose::Login, Instant::now()) {
        Ok(c) => c,
        Err(e) => return err(StatusCode::SERVICE_UNAVAILABLE, e),
    };
    axum::Json(json!({"publicKey": {
        "challenge": b64url(&ch),
        "rpId": rp,
        "timeout": st.auth.limits.challenge_ttl.as_millis() as u64,
        "userVerification": "required",
        "allowCredentials": allow,
    }}))
    .into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AssertionBody {
    id: String,
    #[serde(rename = "clientDataJSON")]
    client_data_json: String,
    authenticator_data: String,
    signature: String,
}

async fn login_finish(
    State(st): State<AppState>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let addr = peer.ip();
    if let Some(wait) = st.auth.blocked(None, addr, Instant::now()) {
        return too_many(wait);
    }
    let b: AssertionBody = match parse(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let parts = (
        b64("clientDataJSON", &b.client_data_json),
        b64("authenticatorData", &b.authenticator_data),
        b64("signature", &b.signature),
    );
    let (cd, ad, sig) = match parts {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return r,
    };
    let users = st.users.clone();
    let id = b.id.clone();
    let found = match blocking(move || users.by_passkey(&id)).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Some((user, pk)) = found else {
        st.auth.failed(None, addr, Instant::now());
        return err(
            StatusCode::UNAUTHORIZED,
            "unknown passkey: log in with your password and register it",
        );
    };
    let key = match pk.public_key() {
        Ok(k) => k,
        Err(e) => return err(StatusCode::INTERNAL_SERVER_ERROR, format!("stored passkey: {e}")),
    };
    let (origin, rp) = expect_from(&headers);
    let e = Expect {
        origin: &origin,
        rp_id: &rp,
    };
    let r = webauthn::verify_assertion(&cd, &ad, &sig, &key, pk.sign_count, &e, |c| {
        st.auth.take_challenge(c, &Purpose::Login, Instant::now())
    });
    let count = match r {
        Ok(c) => c,
        Err(e) => {
            st.auth.failed(Some(&user.name), addr, Instant::now());
            return err(StatusCode::UNAUTHORIZED, e.to_string());
        }
    };
    let users = st.users.clone();
    let (id, old) = (pk.id.clone(), pk.sign_count);
    match blocking(move || users.bump_counter(&id, old, count, now_ms())).await {
        Ok(true) => logged_in(&st, &user.name, "passkey").await,
        Ok(false) => err(
            StatusCode::UNAUTHORIZED,
            "this passkey was used at the same moment elsewhere: try again",
        ),
        Err(r) => r,
    }
}
