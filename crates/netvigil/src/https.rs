//! A lean HTTP/1.1 client for `https://` (and plain `http://`) URLs on `std::net` and rustls
//! (ring provider, TLS 1.2 and 1.3, SNI): one request per connection (`Connection: close`),
//! Content-Length, chunked and read-to-close bodies under a size cap, a connect timeout and an
//! overall deadline, at most [`MAX_REDIRECTS`] redirects (never from `https` down to `http`).
//!
//! Trust: the system's root certificates ([`SYSTEM_ROOTS`], Debian's `ca-certificates` bundle
//! first) unless a [`RootCertStore`] is given ([`Client::with_roots`], used by the tests).
//! Every [`Error`] names the host and what failed: the URL, DNS, the TCP connection, the TLS
//! handshake (with the certificate problem spelled out), the answer, or its HTTP status.
//!
//! Used by the webhook channel (`notify::webhook`) and RDAP lookups (`rdap_fetch`). Blocking:
//! call it from a thread (or `spawn_blocking`), never on an async executor.
// Parts of the API have no caller outside tests yet (post_json is used by tests only).
#![cfg_attr(not(test), allow(dead_code))]

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// Where the system's root certificates are looked for, in order (Debian/Ubuntu, Fedora/RHEL,
/// Alpine/macOS-like, openSUSE).
pub const SYSTEM_ROOTS: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
];

/// Redirects followed at most.
pub const MAX_REDIRECTS: usize = 3;

/// The status line and headers may take at most this many bytes.
const MAX_HEAD: usize = 32 * 1024;

/// A parsed `http://` or `https://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// `https://` (else `http://`).
    pub tls: bool,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// The port (default 443 for https, 80 for http).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
    /// The Host header (`host[:port]`, brackets kept).
    pub authority: String,
}

impl Url {
    /// `http[s]://host[:port][/path][?query]`. Errors say what to write instead.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (tls, rest) = if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!(
                "expected a URL like \"https://ntfy.sh/mytopic\" or \"http://127.0.0.1:8080/hook\", got \"{s}\""
            ));
        };
        let default_port = if tls { 443 } else { 80 };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        if authority.contains('@') {
            return Err("user names and passwords in the URL are not supported".into());
        }
        if path.bytes().any(|b| b <= b' ' || b == 0x7f) || path.contains('#') {
            return Err("the URL path must not contain spaces, control characters or '#'".into());
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let Some((h, after)) = v6.split_once(']') else {
                return Err(format!("bad IPv6 address in \"{s}\""));
            };
            if h.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("bad IPv6 address in \"{s}\""));
            }
            let port = match after {
                "" => default_port,
                p => p
                    .strip_prefix(':')
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| format!("bad port in \"{s}\""))?,
            };
            (h.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_string(),
                    p.parse().map_err(|_| format!("bad port in \"{s}\""))?,
                ),
                None => (authority.to_string(), default_port),
            }
        };
        if host.is_empty()
            || port == 0
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b))
        {
            return Err(format!("bad host or port in \"{s}\""));
        }
        Ok(Self {
            tls,
            host,
            port,
            path,
            authority: authority.to_string(),
        })
    }

    /// Where a `Location` header points from this URL: absolute, `//host/..`, `/path` or
    /// relative to this URL's directory.
    pub fn join(&self, location: &str) -> Result<Url, String> {
        let l = location.trim();
        if l.starts_with("http://") || l.starts_with("https://") {
            return Url::parse(l);
        }
        let scheme = if self.tls { "https" } else { "http" };
        if let Some(rest) = l.strip_prefix("//") {
            return Url::parse(&format!("{scheme}://{rest}"));
        }
        let path = if l.starts_with('/') {
            l.to_string()
        } else {
            let base = self.path.split('?').next().unwrap_or("/");
            let dir = &base[..base.rfind('/').map_or(0, |i| i + 1)];
            format!("{}{l}", if dir.is_empty() { "/" } else { dir })
        };
        Url::parse(&format!("{scheme}://{}{path}", self.authority))
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority, self.path)
    }
}

/// What failed, for [`Error`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The URL itself.
    Url(String),
    /// No usable root certificates (the system store is missing or empty).
    Roots(String),
    /// The host name did not resolve.
    Dns(String),
    /// No TCP connection could be made (refused, unreachable, timed out).
    Connect(String),
    /// The server's certificate was refused (expired, for another name, unknown issuer, ...).
    Certificate(String),
    /// The TLS handshake failed for another reason (no common version or cipher, an alert).
    Tls(String),
    /// No answer (or not all of it) before the deadline; says at which stage.
    Timeout(String),
    /// The connection broke while sending or receiving.
    Io(String),
    /// The answer is not well-formed HTTP/1.x.
    Protocol(String),
    /// The body is larger than the cap (bytes).
    TooLarge(usize),
    /// Too many redirects, or a redirect from https to http.
    Redirect(String),
    /// A non-2xx answer (from [`Client::get`] and [`Client::post_json`]), with `Retry-After`
    /// (seconds) when given and the start of the body.
    Status {
        /// The status code.
        code: u16,
        /// `Retry-After` in seconds, if the server sent one.
        retry_after: Option<u64>,
        /// The first few hundred printable characters of the body.
        detail: String,
    },
}

impl ErrorKind {
    /// Might the same request succeed later (network trouble, timeouts, 408, 429, 5xx)?
    /// Certificate, URL, protocol and other status failures are not transient.
    pub fn is_transient(&self) -> bool {
        match self {
            ErrorKind::Dns(_)
            | ErrorKind::Connect(_)
            | ErrorKind::Timeout(_)
            | ErrorKind::Io(_)
            | ErrorKind::Tls(_) => true,
            ErrorKind::Status { code, .. } => matches!(code, 408 | 429 | 500..=599),
            _ => false,
        }
    }
}

/// A failed request: the host it was for and what failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// The host (of the last hop, after redirects).
    pub host: String,
    /// What failed.
    pub kind: ErrorKind,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = &self.host;
        match &self.kind {
            ErrorKind::Url(e) => write!(f, "bad URL for {h}: {e}"),
            ErrorKind::Roots(e) => write!(f, "cannot check {h}'s certificate: {e}"),
            ErrorKind::Dns(e) => write!(f, "cannot resolve {h}: {e}"),
            ErrorKind::Connect(e) => write!(f, "cannot connect to {h}: {e}"),
            ErrorKind::Certificate(e) => {
                write!(
                    f,
                    "TLS handshake with {h} failed: its certificate was refused: {e}"
                )
            }
            ErrorKind::Tls(e) => write!(f, "TLS handshake with {h} failed: {e}"),
            ErrorKind::Timeout(e) => write!(f, "{h}: {e}"),
            ErrorKind::Io(e) => write!(f, "connection to {h} failed: {e}"),
            ErrorKind::Protocol(e) => write!(f, "{h} sent a bad HTTP answer: {e}"),
            ErrorKind::TooLarge(cap) => write!(f, "{h} sent a body larger than {cap} bytes"),
            ErrorKind::Redirect(e) => write!(f, "{h}: {e}"),
            ErrorKind::Status { code, detail, .. } => {
                write!(f, "{h} answered HTTP {code}")?;
                if !detail.is_empty() {
                    write!(f, ": {detail}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Error {}

/// An answer.
#[derive(Clone, Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names in lower case, values trimmed, in order.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
    /// The URL that answered (after redirects).
    pub url: Url,
}

impl Response {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `Retry-After` in seconds (the date form is not read).
    pub fn retry_after(&self) -> Option<u64> {
        self.header("retry-after")?.trim().parse().ok()
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads the system's root certificates from the first of [`SYSTEM_ROOTS`] that exists.
pub fn system_roots() -> Result<RootCertStore, String> {
    for p in SYSTEM_ROOTS {
        match std::fs::read(p) {
            Ok(pem) => {
                return roots_from_pem(&pem).map_err(|e| format!("{p}: {e}"));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("cannot read {p}: {e}")),
        }
    }
    Err(format!(
        "no root certificate bundle found (looked for {}): install the ca-certificates package",
        SYSTEM_ROOTS.join(", ")
    ))
}

/// A root store from PEM text holding one or more `CERTIFICATE` blocks (others are skipped).
pub fn roots_from_pem(pem: &[u8]) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad PEM: {e}"))?;
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err("no usable CERTIFICATE in the PEM text".into());
    }
    Ok(roots)
}

/// The HTTP(S) client. Cheap to clone (the TLS configuration is shared).
#[derive(Clone, Debug)]
pub struct Client {
    tls: Arc<ClientConfig>,
    connect_timeout: Duration,
    timeout: Duration,
    max_body: usize,
}

impl Client {
    /// A client trusting the system's root certificates ([`system_roots`]); errors when there
    /// are none (install `ca-certificates`). Defaults: 10 s to connect, 30 s in all, 4 MiB
    /// bodies.
    pub fn new() -> Result<Client, Error> {
        let roots = system_roots().map_err(|e| Error {
            host: "any host".into(),
            kind: ErrorKind::Roots(e),
        })?;
        Ok(Client::with_roots(roots))
    }

    /// A client trusting exactly `roots`.
    pub fn with_roots(roots: RootCertStore) -> Client {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("the ring provider supports TLS 1.2 and 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Client {
            tls: Arc::new(tls),
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            max_body: 4 << 20,
        }
    }

    /// Sets the time allowed to connect (per address) and for the whole request, redirects
    /// included (the connect time counts against it too).
    pub fn with_timeouts(mut self, connect: Duration, total: Duration) -> Client {
        self.connect_timeout = connect.max(Duration::from_millis(1));
        self.timeout = total.max(Duration::from_millis(1));
        self
    }

    /// Sets the largest body accepted (bytes).
    pub fn with_max_body(mut self, bytes: usize) -> Client {
        self.max_body = bytes;
        self
    }

    /// GET `url`; a non-2xx answer is an [`ErrorKind::Status`] error.
    pub fn get(&self, url: &str) -> Result<Response, Error> {
        let u = parse_for_error(url)?;
        ok_status(self.send("GET", &u, None, &[])?)
    }

    /// POST `body` as `application/json` to `url`; a non-2xx answer is an
    /// [`ErrorKind::Status`] error.
    pub fn post_json(&self, url: &str, body: &[u8]) -> Result<Response, Error> {
        let u = parse_for_error(url)?;
        ok_status(self.send("POST", &u, Some("application/json"), body)?)
    }

    /// One request, redirects followed (301, 302 and 303 turn a POST into a GET; 307 and 308
    /// keep it); any final status is returned as it is.
    pub fn send(
        &self,
        method: &str,
        url: &Url,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Response, Error> {
        let deadline = Instant::now() + self.timeout;
        let (mut method, mut content_type, mut body) = (method, content_type, body);
        let mut url = url.clone();
        for hop in 0..=MAX_REDIRECTS {
            let resp = self
                .once(method, &url, content_type, body, deadline)
                .map_err(|kind| Error {
                    host: url.host.clone(),
                    kind,
                })?;
            if !matches!(resp.status, 301 | 302 | 303 | 307 | 308) {
                return Ok(resp);
            }
            let Some(loc) = resp.header("location") else {
                return Ok(resp);
            };
            let err = |kind| Error {
                host: url.host.clone(),
                kind,
            };
            if hop == MAX_REDIRECTS {
                return Err(err(ErrorKind::Redirect(format!(
                    "more than {MAX_REDIRECTS} redirects (the last one to {loc})"
                ))));
            }
            let next = url
                .join(loc)
                .map_err(|e| err(ErrorKind::Redirect(format!("bad redirect: {e}"))))?;
            if url.tls && !next.tls {
                return Err(err(ErrorKind::Redirect(format!(
                    "refused a redirect from https to plain http ({next})"
                ))));
            }
            if resp.status == 303 || (matches!(resp.status, 301 | 302) && method == "POST") {
                method = "GET";
                content_type = None;
                body = &[];
            }
            url = next;
        }
        unreachable!("the loop returns at its last hop")
    }

    fn once(
        &self,
        method: &str,
        url: &Url,
        content_type: Option<&str>,
        body: &[u8],
        deadline: Instant,
    ) -> Result<Response, ErrorKind> {
        let mut conn = self.connect(url, deadline)?;
        let mut head = format!(
            "{method} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: netvigil/{}\r\nAccept: */*\r\nConnection: close\r\n",
            url.path,
            url.authority,
            env!("CARGO_PKG_VERSION"),
        );
        if let Some(ct) = content_type {
            head.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        if method != "GET" || !body.is_empty() {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        conn.write_all(head.as_bytes(), deadline)?;
        conn.write_all(body, deadline)?;
        let (status, headers, body) = read_answer(conn, method, self.max_body, deadline)?;
        Ok(Response {
            status,
            headers,
            body,
            url: url.clone(),
        })
    }

    fn connect(&self, url: &Url, deadline: Instant) -> Result<Conn, ErrorKind> {
        let addrs: Vec<_> = (url.host.as_str(), url.port)
            .to_socket_addrs()
            .map_err(|e| ErrorKind::Dns(e.to_string()))?
            .collect();
        if addrs.is_empty() {
            return Err(ErrorKind::Dns("the name has no address".into()));
        }
        let mut last = String::new();
        let mut sock = None;
        for a in &addrs {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ErrorKind::Timeout(format!(
                    "no connection before the deadline ({last})"
                )));
            }
            match TcpStream::connect_timeout(a, left.min(self.connect_timeout)) {
                Ok(s) => {
                    sock = Some(s);
                    break;
                }
                Err(e) => {
                    if !last.is_empty() {
                        last.push_str("; ");
                    }
                    last.push_str(&format!("{a}: {e}"));
                }
            }
        }
        let Some(sock) = sock else {
            return Err(ErrorKind::Connect(last));
        };
        let _ = sock.set_nodelay(true);
        if !url.tls {
            return Ok(Conn::Plain(sock));
        }
        let name = match url.host.parse::<IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(url.host.clone())
                .map_err(|e| ErrorKind::Url(format!("not a valid TLS server name: {e}")))?,
        };
        let mut tls =
            ClientConnection::new(self.tls.clone(), name).map_err(|e| ErrorKind::Tls(e.to_string()))?;
        let mut sock = sock;
        while tls.is_handshaking() {
            set_timeouts(&sock, deadline, "during the TLS handshake")?;
            match tls.complete_io(&mut sock) {
                Ok((0, 0)) if tls.is_handshaking() => {
                    return Err(ErrorKind::Tls(
                        "the server closed the connection during the handshake".into(),
                    ));
                }
                Ok(_) => {}
                Err(e) => return Err(handshake_error(e)),
            }
        }
        Ok(Conn::Tls(Box::new(StreamOwned::new(tls, sock))))
    }
}

/// Status, headers (lower-case names) and body.
type Answer = (u16, Vec<(String, String)>, Vec<u8>);

/// The status, headers and body of an answer read from `conn`.
fn read_answer(conn: Conn, method: &str, max_body: usize, deadline: Instant) -> Result<Answer, ErrorKind> {
    let mut r = Reader {
        conn,
        buf: Vec::new(),
        pos: 0,
        eof: false,
        deadline,
    };
    // Status line and headers (1xx interim answers skipped).
    let (status, headers) = loop {
        let (status, headers) = r.head()?;
        if !(100..200).contains(&status) {
            break (status, headers);
        }
    };
    let h = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let body = if method == "HEAD" || status == 204 || status == 304 {
        Vec::new()
    } else if h("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        r.chunked(max_body)?
    } else if let Some(len) = h("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| ErrorKind::Protocol(format!("bad Content-Length {len:?}")))?;
        if len > max_body {
            return Err(ErrorKind::TooLarge(max_body));
        }
        r.exact(len)?
    } else {
        r.rest(max_body)?
    };
    Ok((status, headers, body))
}

fn parse_for_error(url: &str) -> Result<Url, Error> {
    Url::parse(url).map_err(|e| Error {
        host: url.to_string(),
        kind: ErrorKind::Url(e),
    })
}

fn ok_status(r: Response) -> Result<Response, Error> {
    if (200..300).contains(&r.status) {
        return Ok(r);
    }
    let detail: String = String::from_utf8_lossy(&r.body)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    Err(Error {
        host: r.url.host.clone(),
        kind: ErrorKind::Status {
            code: r.status,
            retry_after: r.retry_after(),
            detail: detail.trim().to_string(),
        },
    })
}

/// Words for a refused certificate or a failed handshake.
fn handshake_error(e: io::Error) -> ErrorKind {
    if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) {
        return ErrorKind::Timeout("no answer during the TLS handshake".into());
    }
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return ErrorKind::Tls(format!("the connection broke during the handshake: {e}"));
    };
    match tls {
        rustls::Error::InvalidCertificate(c) => ErrorKind::Certificate(certificate_words(c)),
        rustls::Error::AlertReceived(a) => ErrorKind::Tls(format!("the server sent alert {a:?}")),
        other => ErrorKind::Tls(other.to_string()),
    }
}

fn certificate_words(c: &CertificateError) -> String {
    match c {
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            format!("it has expired ({c})")
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            format!("it is not valid yet; check this machine's clock ({c})")
        }
        CertificateError::NotValidForName => "it is for another name".into(),
        CertificateError::NotValidForNameContext { expected, presented } => format!(
            "it is for another name (wanted {}, it names {})",
            expected.to_str(),
            if presented.is_empty() {
                "nothing".to_string()
            } else {
                presented.join(", ")
            }
        ),
        CertificateError::UnknownIssuer => {
            "it is issued by an authority this machine does not trust (unknown issuer)".into()
        }
        CertificateError::BadSignature => "its signature does not verify".into(),
        CertificateError::Revoked => "it has been revoked".into(),
        other => other.to_string(),
    }
}

fn set_timeouts(sock: &TcpStream, deadline: Instant, stage: &str) -> Result<(), ErrorKind> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(ErrorKind::Timeout(format!("no answer in time ({stage})")));
    }
    sock.set_read_timeout(Some(left))
        .and_then(|()| sock.set_write_timeout(Some(left)))
        .map_err(|e| ErrorKind::Io(e.to_string()))
}

/// A plain or TLS connection.
enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
    /// Bytes in memory (the parser's no-panic tests).
    #[cfg(test)]
    Mem(io::Cursor<Vec<u8>>),
}

impl Conn {
    fn sock(&self) -> Option<&TcpStream> {
        match self {
            Conn::Plain(s) => Some(s),
            Conn::Tls(t) => Some(&t.sock),
            #[cfg(test)]
            Conn::Mem(_) => None,
        }
    }

    fn write_all(&mut self, data: &[u8], deadline: Instant) -> Result<(), ErrorKind> {
        if let Some(sock) = self.sock() {
            set_timeouts(sock, deadline, "while sending the request")?;
        }
        let r = match self {
            Conn::Plain(s) => s.write_all(data).and_then(|()| s.flush()),
            Conn::Tls(t) => t.write_all(data).and_then(|()| t.flush()),
            #[cfg(test)]
            Conn::Mem(_) => Ok(()),
        };
        r.map_err(|e| io_error(e, "while sending the request"))
    }

    /// Reads some bytes; 0 at the end (a TLS peer that closes without `close_notify` too:
    /// the framing checks catch a cut body).
    fn read(&mut self, buf: &mut [u8], deadline: Instant) -> Result<usize, ErrorKind> {
        loop {
            if let Some(sock) = self.sock() {
                set_timeouts(sock, deadline, "while reading the answer")?;
            }
            let r = match self {
                Conn::Plain(s) => s.read(buf),
                Conn::Tls(t) => t.read(buf),
                #[cfg(test)]
                Conn::Mem(m) => m.read(buf),
            };
            match r {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(io_error(e, "while reading the answer")),
            }
        }
    }
}

fn io_error(e: io::Error, stage: &str) -> ErrorKind {
    if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) {
        ErrorKind::Timeout(format!("no answer in time ({stage})"))
    } else {
        ErrorKind::Io(format!("{e} ({stage})"))
    }
}

/// The answer being read: a buffer over the connection.
struct Reader {
    conn: Conn,
    buf: Vec<u8>,
    pos: usize,
    eof: bool,
    deadline: Instant,
}

impl Reader {
    /// Reads more into the buffer; false at the end.
    fn fill(&mut self) -> Result<bool, ErrorKind> {
        if self.eof {
            return Ok(false);
        }
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = self.conn.read(&mut chunk, self.deadline)?;
        if n == 0 {
            self.eof = true;
            return Ok(false);
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(true)
    }

    /// One line without its CRLF (or LF), at most `max` bytes.
    fn line(&mut self, max: usize) -> Result<String, ErrorKind> {
        loop {
            if let Some(i) = self.buf[self.pos..].iter().position(|&b| b == b'\n') {
                let raw = &self.buf[self.pos..self.pos + i];
                let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
                let s = String::from_utf8_lossy(raw).into_owned();
                self.pos += i + 1;
                return Ok(s);
            }
            if self.buf.len() - self.pos > max {
                return Err(ErrorKind::Protocol(format!("a line longer than {max} bytes")));
            }
            if !self.fill()? {
                return Err(if self.buf.is_empty() {
                    ErrorKind::Io("the server closed the connection without answering".into())
                } else {
                    ErrorKind::Protocol("the answer was cut short".into())
                });
            }
        }
    }

    /// The status line and headers.
    fn head(&mut self) -> Result<(u16, Vec<(String, String)>), ErrorKind> {
        let status_line = self.line(MAX_HEAD)?;
        let mut size = status_line.len() + 2;
        let mut parts = status_line.splitn(3, ' ');
        let proto = parts.next().unwrap_or("");
        let code = parts.next().and_then(|c| c.parse::<u16>().ok());
        let Some(code) = code.filter(|c| proto.starts_with("HTTP/1.") && (100..600).contains(c)) else {
            return Err(ErrorKind::Protocol(format!(
                "not an HTTP/1 status line: {:?}",
                status_line.chars().take(60).collect::<String>()
            )));
        };
        let mut headers = Vec::new();
        loop {
            let l = self.line(MAX_HEAD)?;
            size += l.len() + 2;
            if size > MAX_HEAD {
                return Err(ErrorKind::Protocol(format!(
                    "headers longer than {MAX_HEAD} bytes"
                )));
            }
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        Ok((code, headers))
    }

    fn exact(&mut self, len: usize) -> Result<Vec<u8>, ErrorKind> {
        let mut out = Vec::with_capacity(len.min(1 << 20));
        while out.len() < len {
            if self.pos == self.buf.len() && !self.fill()? {
                return Err(ErrorKind::Protocol(format!(
                    "the body was cut short ({} of {len} bytes)",
                    out.len()
                )));
            }
            let take = (len - out.len()).min(self.buf.len() - self.pos);
            out.extend_from_slice(&self.buf[self.pos..self.pos + take]);
            self.pos += take;
        }
        Ok(out)
    }

    fn rest(&mut self, max: usize) -> Result<Vec<u8>, ErrorKind> {
        let mut out = Vec::new();
        loop {
            out.extend_from_slice(&self.buf[self.pos..]);
            self.pos = self.buf.len();
            if out.len() > max {
                return Err(ErrorKind::TooLarge(max));
            }
            if !self.fill()? {
                return Ok(out);
            }
        }
    }

    fn chunked(&mut self, max: usize) -> Result<Vec<u8>, ErrorKind> {
        let mut out = Vec::new();
        loop {
            let line = self.line(1024)?;
            let hex = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(hex, 16)
                .map_err(|_| ErrorKind::Protocol(format!("bad chunk size {hex:?}")))?;
            if size == 0 {
                // Trailers, up to the empty line (a close right away is accepted).
                loop {
                    match self.line(MAX_HEAD) {
                        Ok(l) if l.is_empty() => return Ok(out),
                        Ok(_) => {}
                        Err(_) if self.eof => return Ok(out),
                        Err(e) => return Err(e),
                    }
                }
            }
            if out.len().saturating_add(size) > max {
                return Err(ErrorKind::TooLarge(max));
            }
            out.extend_from_slice(&self.exact(size)?);
            if !self.line(2)?.is_empty() {
                return Err(ErrorKind::Protocol("a chunk is longer than its size".into()));
            }
        }
    }
}

/// Test support: certificates made on the spot and a TLS (or plain) HTTP server on 127.0.0.1.
#[cfg(test)]
pub(crate) mod testing {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, date_time_ymd};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::{RootCertStore, ServerConfig, ServerConnection, StreamOwned};

    /// A throwaway certificate authority.
    pub struct Ca {
        issuer: CertifiedIssuer<'static, KeyPair>,
    }

    impl Ca {
        /// A new CA ("netvigil test CA").
        pub fn new() -> Ca {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            // A name of its own: two test CAs must not look like the same issuer.
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            p.distinguished_name.push(
                DnType::CommonName,
                format!("netvigil test CA {}-{n}", std::process::id()),
            );
            let issuer = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
            Ca { issuer }
        }

        /// A root store holding only this CA.
        pub fn roots(&self) -> RootCertStore {
            let mut r = RootCertStore::empty();
            r.add(self.issuer.der().clone()).unwrap();
            r
        }

        /// A server certificate for `names` (DNS names or IP addresses); `expired` makes one
        /// that ended in 2021.
        pub fn server_cert(
            &self,
            names: &[&str],
            expired: bool,
        ) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
            let mut p =
                CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
            if expired {
                p.not_before = date_time_ymd(2020, 1, 1);
                p.not_after = date_time_ymd(2021, 1, 1);
            }
            let key = KeyPair::generate().unwrap();
            let cert = p.signed_by(&key, &self.issuer).unwrap();
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
            (cert.der().clone(), key)
        }
    }

    /// One request as the server saw it.
    #[derive(Clone, Debug)]
    pub struct Seen {
        pub method: String,
        pub path: String,
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
        /// The SNI name the client sent (TLS only).
        pub sni: Option<String>,
    }

    /// What the handler answers: the raw bytes after the request (status line, headers, body).
    pub type Handler = dyn Fn(&Seen) -> Vec<u8> + Send + Sync;

    /// A server on 127.0.0.1 answering each request with `handler`; TLS when given a
    /// certificate. Stops when dropped, or by itself after 60 s.
    pub struct Server {
        pub port: u16,
        pub seen: Arc<Mutex<Vec<Seen>>>,
        /// TLS handshakes that failed, with the server's view of why.
        pub failed: Arc<Mutex<Vec<String>>>,
        stop: Arc<AtomicBool>,
    }

    impl Server {
        /// Starts it.
        pub fn start(
            cert: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
            handler: Box<Handler>,
        ) -> Server {
            let tls = cert.map(|(c, k)| {
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                Arc::new(
                    ServerConfig::builder_with_provider(provider)
                        .with_safe_default_protocol_versions()
                        .unwrap()
                        .with_no_client_auth()
                        .with_single_cert(vec![c], k)
                        .unwrap(),
                )
            });
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.set_nonblocking(true).unwrap();
            let port = l.local_addr().unwrap().port();
            let seen = Arc::new(Mutex::new(Vec::new()));
            let failed = Arc::new(Mutex::new(Vec::new()));
            let stop = Arc::new(AtomicBool::new(false));
            let (seen2, failed2, stop2) = (seen.clone(), failed.clone(), stop.clone());
            std::thread::spawn(move || {
                let end = Instant::now() + Duration::from_secs(60);
                let mut served = 0;
                while Instant::now() < end && !stop2.load(Ordering::Relaxed) && served < 200 {
                    let Ok((s, _)) = l.accept() else {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    served += 1;
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
                    match &tls {
                        Some(cfg) => {
                            let mut conn = ServerConnection::new(cfg.clone()).unwrap();
                            let mut s = s;
                            let mut ok = true;
                            while conn.is_handshaking() {
                                if let Err(e) = conn.complete_io(&mut s) {
                                    failed2.lock().unwrap().push(e.to_string());
                                    ok = false;
                                    break;
                                }
                            }
                            if !ok {
                                continue;
                            }
                            let sni = conn.server_name().map(str::to_string);
                            let mut t = StreamOwned::new(conn, s);
                            serve(&mut t, sni, &handler, &seen2);
                            t.conn.send_close_notify();
                            let _ = t.flush();
                        }
                        None => {
                            let mut s = s;
                            serve(&mut s, None, &handler, &seen2);
                        }
                    }
                }
            });
            Server {
                port,
                seen,
                failed,
                stop,
            }
        }

        /// Requests seen so far.
        pub fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
        }
    }

    fn serve(s: &mut (impl Read + Write), sni: Option<String>, handler: &Handler, seen: &Mutex<Vec<Seen>>) {
        let Some(req) = read_request(s, sni) else {
            return;
        };
        let answer = handler(&req);
        seen.lock().unwrap().push(req);
        let _ = s.write_all(&answer);
        let _ = s.flush();
    }

    /// One HTTP/1.1 request (head and a `Content-Length` body) from `s`; `None` when the
    /// client goes away first.
    pub fn read_request(s: &mut impl Read, sni: Option<String>) -> Option<Seen> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let n = s.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let mut lines = head.split("\r\n");
        let first = lines.next()?.to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map_or(Some(0), |(_, v)| v.parse().ok())?;
        let mut body = buf[head_end + 4..].to_vec();
        while body.len() < len {
            let n = s.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        let mut parts = first.split(' ');
        Some(Seen {
            method: parts.next()?.to_string(),
            path: parts.next()?.to_string(),
            headers,
            body,
            sni,
        })
    }

    /// A plain 200 answer with `body` and a Content-Length.
    pub fn ok(content_type: &str, body: &[u8]) -> Vec<u8> {
        let mut a = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        a.extend_from_slice(body);
        a
    }

    /// A client that trusts only `ca`, with short timeouts.
    pub fn client(ca: &Ca) -> super::Client {
        super::Client::with_roots(ca.roots()).with_timeouts(Duration::from_secs(3), Duration::from_secs(5))
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{Ca, Server, client, ok};
    use super::*;

    fn parse(bytes: &[u8], max: usize) -> Result<Answer, ErrorKind> {
        let conn = Conn::Mem(io::Cursor::new(bytes.to_vec()));
        read_answer(conn, "GET", max, Instant::now() + Duration::from_secs(5))
    }

    #[test]
    fn answers_parse_and_bad_ones_are_named() {
        let (s, h, b) = parse(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 201 Created\r\nX-A: b\r\nContent-Length: 3\r\n\r\nabcdef",
            100,
        )
        .unwrap();
        assert_eq!(
            (s, h, b),
            (
                201,
                vec![("x-a".into(), "b".into()), ("content-length".into(), "3".into())],
                b"abc".to_vec()
            )
        );
        let e = |bytes: &[u8]| {
            Error {
                host: "h".into(),
                kind: parse(bytes, 8).unwrap_err(),
            }
            .to_string()
        };
        assert!(e(b"SSH-2.0-OpenSSH\r\n").contains("not an HTTP/1 status line"));
        assert!(e(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab").contains("cut short (2 of 5"));
        assert!(e(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n").contains("larger than 8"));
        assert!(e(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").contains("bad chunk size"));
        assert!(
            e(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n123456789\r\n0\r\n\r\n")
                .contains("larger than 8")
        );
        assert!(e(b"").contains("without answering"));
        let mut long = b"HTTP/1.1 200 OK\r\n".to_vec();
        for _ in 0..2000 {
            long.extend_from_slice(b"X-Filler: 0123456789abcdef\r\n");
        }
        assert!(e(&long).contains("headers longer than"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        #[test]
        fn the_answer_parser_never_panics(
            head in proptest::sample::select(vec![
                &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
                &b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n"[..],
                &b"HTTP/1.1 302 Found\r\n"[..],
                &b""[..],
            ]),
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        ) {
            let mut bytes = head.to_vec();
            bytes.extend_from_slice(&tail);
            if let Ok((_, _, body)) = parse(&bytes, 64) {
                proptest::prop_assert!(body.len() <= 64);
            }
        }
    }

    #[test]
    fn urls_parse_and_join() {
        let u = Url::parse("https://ntfy.sh/alerts").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.path.as_str()),
            (true, "ntfy.sh", 443, "/alerts")
        );
        let u = Url::parse("http://[::1]:9/a?b").unwrap();
        assert_eq!((u.tls, u.port, u.authority.as_str()), (false, 9, "[::1]:9"));
        assert_eq!(u.to_string(), "http://[::1]:9/a?b");
        let base = Url::parse("https://h.example/a/b?q").unwrap();
        assert_eq!(base.join("/x").unwrap().to_string(), "https://h.example/x");
        assert_eq!(base.join("c").unwrap().to_string(), "https://h.example/a/c");
        assert_eq!(
            base.join("//o.example/p").unwrap().to_string(),
            "https://o.example/p"
        );
        assert_eq!(
            base.join("http://p.example").unwrap().to_string(),
            "http://p.example/"
        );
        for bad in [
            "ftp://x",
            "https://",
            "https://h:0/",
            "https://[zz]/",
            "http://h/a b",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn system_store_loads_when_present() {
        // Debian's ca-certificates; CI installs it. Without it the error says what to install.
        match system_roots() {
            Ok(r) => assert!(r.len() > 10, "{} roots", r.len()),
            Err(e) => assert!(e.contains("ca-certificates"), "{e}"),
        }
        assert!(roots_from_pem(b"not pem").is_err());
    }

    #[test]
    fn get_over_tls_with_sni_content_length_and_chunked() {
        let ca = Ca::new();
        let srv = Server::start(
            Some(ca.server_cert(&["localhost", "127.0.0.1"], false)),
            Box::new(|req| {
                match req.path.as_str() {
                "/len" => ok("text/plain", b"hello over tls"),
                "/chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\n".to_vec(),
                "/close" => b"HTTP/1.1 200 OK\r\n\r\nto the end".to_vec(),
                "/big" => ok("text/plain", &[b'x'; 5000]),
                _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope".to_vec(),
            }
            }),
        );
        let c = client(&ca);
        let r = c.get(&format!("https://localhost:{}/len", srv.port)).unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "hello over tls"));
        let r = c.get(&format!("https://127.0.0.1:{}/chunked", srv.port)).unwrap();
        assert_eq!(r.text(), "hello, world");
        let r = c.get(&format!("https://127.0.0.1:{}/close", srv.port)).unwrap();
        assert_eq!(r.text(), "to the end");
        let e = c
            .clone()
            .with_max_body(4096)
            .get(&format!("https://127.0.0.1:{}/big", srv.port))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::TooLarge(4096), "{e}");
        let e = c
            .get(&format!("https://127.0.0.1:{}/missing", srv.port))
            .unwrap_err();
        assert!(
            matches!(&e.kind, ErrorKind::Status { code: 404, detail, .. } if detail == "nope"),
            "{e}"
        );
        assert_eq!(e.to_string(), "127.0.0.1 answered HTTP 404: nope");
        let seen = srv.seen();
        // SNI is sent for a name, never for an address (RFC 6066).
        assert_eq!(seen[0].sni.as_deref(), Some("localhost"));
        assert_eq!(seen[1].sni, None);
        assert!(
            seen[0]
                .headers
                .iter()
                .any(|(k, v)| k == "host" && v == &format!("localhost:{}", srv.port))
        );
    }

    #[test]
    fn post_json_arrives_with_its_body() {
        let ca = Ca::new();
        let srv = Server::start(
            Some(ca.server_cert(&["127.0.0.1"], false)),
            Box::new(|_| ok("application/json", b"{}")),
        );
        let body = br#"{"text":"sshd talked to 203.0.113.9"}"#;
        let r = client(&ca)
            .post_json(&format!("https://127.0.0.1:{}/hook", srv.port), body)
            .unwrap();
        assert_eq!(r.status, 200);
        let s = &srv.seen()[0];
        assert_eq!((s.method.as_str(), s.path.as_str()), ("POST", "/hook"));
        assert_eq!(s.body, body);
        assert!(
            s.headers
                .iter()
                .any(|(k, v)| k == "content-type" && v == "application/json")
        );
    }

    #[test]
    fn wrong_name_expired_and_unknown_issuer_are_refused() {
        let ca = Ca::new();
        let other = Server::start(
            Some(ca.server_cert(&["other.example"], false)),
            Box::new(|_| ok("text/plain", b"x")),
        );
        let e = client(&ca)
            .get(&format!("https://127.0.0.1:{}/", other.port))
            .unwrap_err();
        assert!(matches!(e.kind, ErrorKind::Certificate(_)), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("127.0.0.1") && msg.contains("another name") && msg.contains("other.example"),
            "{msg}"
        );
        assert!(!e.kind.is_transient());
        // The server saw the client's alert (bad certificate) end the handshake.
        let end = Instant::now() + Duration::from_secs(3);
        while other.failed.lock().unwrap().is_empty() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        let failed = other.failed.lock().unwrap().clone();
        assert!(
            failed.len() == 1 && failed[0].contains("BadCertificate"),
            "{failed:?}"
        );

        let expired = Server::start(
            Some(ca.server_cert(&["127.0.0.1"], true)),
            Box::new(|_| ok("text/plain", b"x")),
        );
        let e = client(&ca)
            .get(&format!("https://127.0.0.1:{}/", expired.port))
            .unwrap_err();
        assert!(e.to_string().contains("expired"), "{e}");
        assert!(matches!(e.kind, ErrorKind::Certificate(_)), "{e:?}");

        // A certificate from a CA the client does not trust.
        let e = client(&Ca::new())
            .get(&format!("https://127.0.0.1:{}/", other.port))
            .unwrap_err();
        assert!(e.to_string().contains("unknown issuer"), "{e}");
        // No request was ever served by either server.
        assert!(other.seen().is_empty() && expired.seen().is_empty());
    }

    #[test]
    fn redirects_are_followed_up_to_three_and_never_down_to_http() {
        let ca = Ca::new();
        let srv = Server::start(
            Some(ca.server_cert(&["127.0.0.1"], false)),
            Box::new(|req| {
                let p = req.path.as_str();
                if let Some(n) = p.strip_prefix("/hop/") {
                    let n: u32 = n.parse().unwrap();
                    let to = if n == 0 {
                        "/done".to_string()
                    } else {
                        format!("/hop/{}", n - 1)
                    };
                    format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n").into_bytes()
                } else if p == "/down" {
                    b"HTTP/1.1 301 Moved\r\nLocation: http://127.0.0.1:1/\r\nContent-Length: 0\r\n\r\n"
                        .to_vec()
                } else {
                    ok("text/plain", req.method.as_bytes())
                }
            }),
        );
        let c = client(&ca);
        let base = format!("https://127.0.0.1:{}", srv.port);
        // 3 redirects: followed; the POST became a GET on 302.
        let r = c.post_json(&format!("{base}/hop/2"), b"{}").unwrap();
        assert_eq!((r.text().as_str(), r.url.path.as_str()), ("GET", "/done"));
        let e = c.get(&format!("{base}/hop/3")).unwrap_err();
        assert!(e.to_string().contains("more than 3 redirects"), "{e}");
        let e = c.get(&format!("{base}/down")).unwrap_err();
        assert!(e.to_string().contains("from https to plain http"), "{e}");
    }

    #[test]
    fn connect_and_timeout_errors_name_the_host() {
        let ca = Ca::new();
        let c = client(&ca).with_timeouts(Duration::from_secs(1), Duration::from_millis(600));
        // A closed port on loopback.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let e = c.get(&format!("https://127.0.0.1:{port}/")).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::Connect(_)), "{e:?}");
        assert!(e.to_string().starts_with("cannot connect to 127.0.0.1"), "{e}");
        // A server that accepts and never speaks: the handshake times out.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let start = Instant::now();
        let e = c.get(&format!("https://127.0.0.1:{port}/")).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::Timeout(_)), "{e:?}");
        assert!(e.kind.is_transient());
        assert!(start.elapsed() < Duration::from_secs(3));
        drop(l);
    }
}
