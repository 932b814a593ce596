//! HTTP/1.x message heads (RFC 9110/9112): requests, responses, and SSDP, which uses the same
//! syntax over UDP; and [`MessageStream`], which follows the message boundaries of one direction of
//! a keep-alive or pipelined connection.
//!
//! Parsing is strict about the start line (so that binary data is rejected at once) and about
//! header lines once they are complete; it accepts CRLF and bare LF line ends, any-case field
//! names, and obsolete line folding. The head is capped at [`MAX_HEAD`] bytes.

use crate::cursor::Parse;
use crate::{Error, Layer};
use std::borrow::Cow;
use std::collections::VecDeque;

/// The largest header block accepted, through the empty line that ends it.
pub const MAX_HEAD: usize = 16 * 1024;
/// How many header fields a [`Request`] keeps in [`Request::headers`].
pub const MAX_HEADERS: usize = 64;
/// Header values in [`Request::headers`] are truncated to this many bytes.
pub const MAX_HEADER_VALUE: usize = 1024;
/// The longest method token accepted.
pub const MAX_METHOD: usize = 20;
/// The longest chunk-size line (with extensions) [`MessageStream`] buffers.
const MAX_CHUNK_LINE: usize = 4096;

/// An HTTP/1.x request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The request-target exactly as sent (origin, absolute, authority or asterisk form).
    pub target: String,
    /// "HTTP/1.1", "HTTP/1.0", ...
    pub version: String,
    /// The first Host header value, surrounding whitespace trimmed, port kept.
    pub host: Option<String>,
    pub user_agent: Option<String>,
    pub content_length: Option<u64>,
    /// The final transfer coding is "chunked".
    pub chunked: bool,
    /// Header fields in order, names as sent; at most [`MAX_HEADERS`], values truncated to
    /// [`MAX_HEADER_VALUE`] bytes.
    pub headers: Vec<(String, String)>,
}

/// An HTTP/1.x response head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub version: String,
    pub status: u16,
    pub reason: String,
    pub content_type: Option<String>,
    pub content_length: Option<u64>,
    pub chunked: bool,
    pub server: Option<String>,
}

/// One message head found by [`MessageStream`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
}

fn malformed(what: &'static str) -> Error {
    Error::Malformed {
        layer: Layer::Http,
        what,
    }
}

fn is_method_byte(b: u8) -> bool {
    b.is_ascii_uppercase() || b == b'-' || b == b'_'
}

/// Methods common enough that a request line without a version (HTTP/0.9 style, or a client
/// that forgot it) is still taken as a request.
fn is_known_method(m: &[u8]) -> bool {
    matches!(
        m,
        b"GET"
            | b"HEAD"
            | b"POST"
            | b"PUT"
            | b"DELETE"
            | b"OPTIONS"
            | b"TRACE"
            | b"CONNECT"
            | b"PATCH"
            | b"CCM_POST"
            | b"PROPFIND"
            | b"PROPPATCH"
            | b"MKCOL"
            | b"COPY"
            | b"MOVE"
            | b"LOCK"
            | b"UNLOCK"
    )
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_target_byte(b: u8) -> bool {
    b > 0x20 && b != 0x7f
}

/// Visible characters, SP, HT and obs-text: what a field value or reason phrase may hold.
fn is_text_byte(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f)
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn trim_ows(mut b: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = b {
        b = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = b {
        b = rest;
    }
    b
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn find_lf(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

/// A start-line scan: `Ok(None)` while the bytes so far are a plausible prefix.
type LineScan<T> = Result<Option<(T, usize)>, Error>;

/// Matches "HTTP/" and a version of digits and dots ("1.1", also the "1." some clients send) at
/// `at`; `Ok(None)` when the buffer ends inside it.
fn version_at(buf: &[u8], at: usize) -> Result<Option<usize>, Error> {
    const PAT: &[u8] = b"HTTP/";
    for (i, &p) in PAT.iter().enumerate() {
        let Some(&b) = buf.get(at + i) else {
            return Ok(None);
        };
        if b != p {
            return Err(malformed("version is not HTTP/x.y"));
        }
    }
    let v0 = at + PAT.len();
    let n = buf[v0.min(buf.len())..]
        .iter()
        .take_while(|b| b.is_ascii_digit() || **b == b'.')
        .count();
    let end = v0 + n;
    match buf.get(end) {
        None => Ok(None),
        Some(_) if n == 0 || n > 5 || !buf[v0].is_ascii_digit() => Err(malformed("version is not HTTP/x.y")),
        Some(_) => Ok(Some(end)),
    }
}

/// Matches CRLF or LF at `at`: the index after it.
fn line_end_at(buf: &[u8], at: usize) -> Result<Option<usize>, Error> {
    match buf.get(at) {
        None => Ok(None),
        Some(b'\n') => Ok(Some(at + 1)),
        Some(b'\r') => match buf.get(at + 1) {
            None => Ok(None),
            Some(b'\n') => Ok(Some(at + 2)),
            Some(_) => Err(malformed("bare CR in start line")),
        },
        Some(_) => Err(malformed("junk at end of start line")),
    }
}

struct RequestLine<'a> {
    method: &'a [u8],
    target: &'a [u8],
    version: &'a [u8],
}

fn request_line(buf: &[u8]) -> LineScan<RequestLine<'_>> {
    let m = buf.iter().take_while(|&&b| is_method_byte(b)).count();
    if m > MAX_METHOD {
        return Err(malformed("method token over 20 bytes"));
    }
    if m == buf.len() {
        return match buf.first() {
            Some(b'-' | b'_') => Err(malformed("method does not start with a letter")),
            _ => Ok(None),
        };
    }
    if m == 0 || !buf[0].is_ascii_uppercase() {
        return Err(malformed("method is not an uppercase token"));
    }
    let lax = is_known_method(&buf[..m]);
    if lax && matches!(buf[m], b'\r' | b'\n') {
        // "OPTIONS\n": a known method alone on its line (servers answer it; tshark shows it).
        let Some(end) = line_end_at(buf, m)? else {
            return Ok(None);
        };
        return Ok(Some((
            RequestLine {
                method: &buf[..m],
                target: &buf[m..m],
                version: &buf[m..m],
            },
            end,
        )));
    }
    if buf[m] != b' ' {
        return Err(malformed("no space after method"));
    }
    let t0 = m + 1;
    let t = buf[t0..].iter().take_while(|&&b| is_target_byte(b)).count();
    let t1 = t0 + t;
    if t1 == buf.len() {
        return Ok(None);
    }
    if t == 0 {
        return Err(malformed("empty request-target"));
    }
    if lax && matches!(buf[t1], b'\r' | b'\n') {
        // HTTP/0.9 style "GET /", or a version glued to the target ("GET /HTTP/1.1").
        let Some(end) = line_end_at(buf, t1)? else {
            return Ok(None);
        };
        return Ok(Some((
            RequestLine {
                method: &buf[..m],
                target: &buf[t0..t1],
                version: &buf[t1..t1],
            },
            end,
        )));
    }
    if buf[t1] != b' ' {
        return Err(malformed("control byte in request-target"));
    }
    let v0 = t1 + 1;
    let Some(v1) = version_at(buf, v0)? else {
        return Ok(None);
    };
    let Some(end) = line_end_at(buf, v1)? else {
        return Ok(None);
    };
    Ok(Some((
        RequestLine {
            method: &buf[..m],
            target: &buf[t0..t1],
            version: &buf[v0..v1],
        },
        end,
    )))
}

struct StatusLine<'a> {
    version: &'a [u8],
    status: u16,
    reason: &'a [u8],
}

fn status_line(buf: &[u8]) -> LineScan<StatusLine<'_>> {
    let Some(v1) = version_at(buf, 0)? else {
        return Ok(None);
    };
    match buf.get(v1) {
        None => return Ok(None),
        Some(b' ') => {}
        Some(_) => return Err(malformed("no space after version")),
    }
    let mut status = 0u16;
    for i in 0..3 {
        match buf.get(v1 + 1 + i) {
            None => return Ok(None),
            Some(&d) if d.is_ascii_digit() => status = status * 10 + u16::from(d - b'0'),
            Some(_) => return Err(malformed("status code is not three digits")),
        }
    }
    if status < 100 {
        return Err(malformed("status code below 100"));
    }
    let s1 = v1 + 4;
    let (reason, end) = match buf.get(s1) {
        None => return Ok(None),
        Some(b' ') => {
            let rest = &buf[s1 + 1..];
            let Some(lf) = find_lf(rest) else {
                return if rest.iter().all(|&b| is_text_byte(b) || b == b'\r') {
                    Ok(None)
                } else {
                    Err(malformed("control byte in reason phrase"))
                };
            };
            let reason = strip_cr(&rest[..lf]);
            if !reason.iter().all(|&b| is_text_byte(b)) {
                return Err(malformed("control byte in reason phrase"));
            }
            (reason, s1 + 1 + lf + 1)
        }
        Some(_) => {
            let Some(end) = line_end_at(buf, s1)? else {
                return Ok(None);
            };
            (&buf[s1..s1], end)
        }
    };
    Ok(Some((
        StatusLine {
            version: &buf[..v1],
            status,
            reason,
        },
        end,
    )))
}

/// The header fields after the start line, through the empty line.
struct Fields<'a> {
    fields: Vec<(&'a [u8], Cow<'a, [u8]>)>,
    head_len: usize,
}

fn fields(buf: &[u8], start: usize) -> Result<Option<Fields<'_>>, Error> {
    let limit = buf.len().min(MAX_HEAD);
    let mut fields: Vec<(&[u8], Cow<'_, [u8]>)> = Vec::new();
    let mut pos = start;
    loop {
        let Some(lf) = buf.get(pos..limit).and_then(find_lf) else {
            return if buf.len() >= MAX_HEAD {
                Err(malformed("header block over 16 KiB"))
            } else {
                Ok(None)
            };
        };
        let line = strip_cr(&buf[pos..pos + lf]);
        pos += lf + 1;
        if line.is_empty() {
            return Ok(Some(Fields {
                fields,
                head_len: pos,
            }));
        }
        if !line.iter().all(|&b| is_text_byte(b)) {
            return Err(malformed("control byte in header line"));
        }
        if matches!(line[0], b' ' | b'\t') {
            // obs-fold: a continuation of the previous field value
            if let Some((_, value)) = fields.last_mut() {
                let more = trim_ows(line);
                if !more.is_empty() {
                    let v = value.to_mut();
                    v.push(b' ');
                    v.extend_from_slice(more);
                }
            }
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(malformed("header line without colon"));
        };
        let name = trim_ows(&line[..colon]);
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(malformed("header name is not a token"));
        }
        fields.push((name, Cow::Borrowed(trim_ows(&line[colon + 1..]))));
    }
}

/// Content-Length and chunked framing from the fields.
fn framing(fields: &[(&[u8], Cow<'_, [u8]>)]) -> Result<(Option<u64>, bool), Error> {
    let mut length: Option<u64> = None;
    let mut last_coding: Option<&[u8]> = None;
    for (name, value) in fields {
        if name.eq_ignore_ascii_case(b"content-length") {
            for part in value.split(|&b| b == b',') {
                let part = trim_ows(part);
                if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
                    return Err(malformed("content-length is not a number"));
                }
                let n = part.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
                if length.is_some_and(|l| l != n) {
                    return Err(malformed("conflicting content-length values"));
                }
                length = Some(n);
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            for part in value.split(|&b| b == b',') {
                let part = trim_ows(part);
                if !part.is_empty() {
                    last_coding = Some(part);
                }
            }
        }
    }
    let chunked = last_coding.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"));
    Ok((length, chunked))
}

fn first_value(fields: &[(&[u8], Cow<'_, [u8]>)], name: &str) -> Option<String> {
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, v)| lossy(v))
}

/// Parses a request head from the start of `buf`: `Done(request, header_len)` once the empty line
/// that ends the head has arrived, `NeedMore(0)` while `buf` is a plausible prefix, `Invalid` as
/// soon as the bytes cannot be a request (or the head exceeds [`MAX_HEAD`]).
pub fn parse_request(buf: &[u8]) -> Parse<Request> {
    let capped = &buf[..buf.len().min(MAX_HEAD)];
    let (line, start) = match request_line(capped) {
        Ok(Some(found)) => found,
        Ok(None) if buf.len() >= MAX_HEAD => return Parse::Invalid(malformed("header block over 16 KiB")),
        Ok(None) => return Parse::NeedMore(0),
        Err(e) => return Parse::Invalid(e),
    };
    let f = match fields(buf, start) {
        Ok(Some(f)) => f,
        Ok(None) => return Parse::NeedMore(0),
        Err(e) => return Parse::Invalid(e),
    };
    let (content_length, chunked) = match framing(&f.fields) {
        Ok(x) => x,
        Err(e) => return Parse::Invalid(e),
    };
    let headers = f
        .fields
        .iter()
        .take(MAX_HEADERS)
        .map(|(n, v)| (lossy(n), lossy(&v[..v.len().min(MAX_HEADER_VALUE)])))
        .collect();
    let req = Request {
        method: lossy(line.method),
        target: lossy(line.target),
        version: lossy(line.version),
        host: first_value(&f.fields, "host"),
        user_agent: first_value(&f.fields, "user-agent"),
        content_length,
        chunked,
        headers,
    };
    Parse::Done(req, f.head_len)
}

/// Parses a response head from the start of `buf`; outcomes as for [`parse_request`].
pub fn parse_response(buf: &[u8]) -> Parse<Response> {
    let capped = &buf[..buf.len().min(MAX_HEAD)];
    let (line, start) = match status_line(capped) {
        Ok(Some(found)) => found,
        Ok(None) if buf.len() >= MAX_HEAD => return Parse::Invalid(malformed("header block over 16 KiB")),
        Ok(None) => return Parse::NeedMore(0),
        Err(e) => return Parse::Invalid(e),
    };
    let f = match fields(buf, start) {
        Ok(Some(f)) => f,
        Ok(None) => return Parse::NeedMore(0),
        Err(e) => return Parse::Invalid(e),
    };
    let (content_length, chunked) = match framing(&f.fields) {
        Ok(x) => x,
        Err(e) => return Parse::Invalid(e),
    };
    let resp = Response {
        version: lossy(line.version),
        status: line.status,
        reason: lossy(line.reason),
        content_type: first_value(&f.fields, "content-type"),
        content_length,
        chunked,
        server: first_value(&f.fields, "server"),
    };
    Parse::Done(resp, f.head_len)
}

/// Cheap check of the first bytes of a segment: an uppercase method token and a space (and, if
/// present, a plausible first byte of the request-target).
pub fn looks_like_request(payload: &[u8]) -> bool {
    let m = payload.iter().take_while(|&&b| is_method_byte(b)).count();
    (1..=MAX_METHOD).contains(&m)
        && payload[0].is_ascii_uppercase()
        && match payload.get(m) {
            Some(b' ') => payload.get(m + 1).is_none_or(|&b| is_target_byte(b)),
            Some(b'\r' | b'\n') => is_known_method(&payload[..m]),
            _ => false,
        }
}

/// Cheap check of the first bytes of a segment: "HTTP/1.".
pub fn looks_like_response(payload: &[u8]) -> bool {
    payload.starts_with(b"HTTP/1.")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Requests,
    Responses,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Expecting a message head (blank lines before it are skipped).
    Head,
    /// Skipping this many body bytes.
    Body(u64),
    /// Expecting a chunk-size line.
    ChunkSize,
    /// Skipping this many chunk-data bytes.
    ChunkData(u64),
    /// Expecting the CRLF after chunk data.
    ChunkEnd,
    /// Skipping trailer fields until the empty line.
    Trailers,
    /// Lost sync: discarding through the next LF, then trying a head again.
    Resync,
    /// The rest of the stream is not HTTP messages (body until close, or a protocol switch).
    Closed,
}

/// Follows the message boundaries in one direction of an HTTP/1.x connection.
///
/// Feed in-order bytes with [`push`](Self::push); every message head found is returned. Bodies
/// are skipped by Content-Length or chunked encoding and never buffered; only an incomplete head
/// (at most [`MAX_HEAD`] bytes) or an incomplete chunk-size or trailer line is kept between
/// pushes. A request with neither Content-Length nor chunked encoding has no body. A response
/// with neither is read until close: the stream is then [`done`](Self::is_done), as after a 101
/// response or a 2xx answer to CONNECT. Responses to HEAD have no body: tell the response stream
/// about request methods, in order, with [`push_request_method`](Self::push_request_method).
/// On a malformed head or chunk line the stream resynchronises: it discards bytes line by line
/// until a line that starts a valid head.
#[derive(Clone, Debug)]
pub struct MessageStream {
    kind: Kind,
    state: State,
    pending: Vec<u8>,
    /// Bytes of the pending head already seen with a complete start line and no new line end.
    head_seen: usize,
    methods: VecDeque<Box<str>>,
    resyncs: u64,
}

impl MessageStream {
    /// A tracker for the client-to-server direction.
    pub fn requests() -> Self {
        Self::new(Kind::Requests)
    }

    /// A tracker for the server-to-client direction.
    pub fn responses() -> Self {
        Self::new(Kind::Responses)
    }

    fn new(kind: Kind) -> Self {
        Self {
            kind,
            state: State::Head,
            pending: Vec::new(),
            head_seen: 0,
            methods: VecDeque::new(),
            resyncs: 0,
        }
    }

    /// True once the rest of the stream carries no more messages (a response body read until
    /// close, a 101 Switching Protocols, or a tunnel after CONNECT).
    pub fn is_done(&self) -> bool {
        self.state == State::Closed
    }

    /// How many times the stream lost sync and skipped bytes.
    pub fn resyncs(&self) -> u64 {
        self.resyncs
    }

    /// For a response stream: the method of the next request on the connection, in order, so that
    /// responses to HEAD are known to have no body and a 2xx answer to CONNECT opens a tunnel. At
    /// most 1024 methods are queued; without any, responses are taken to answer GET.
    pub fn push_request_method(&mut self, method: &str) {
        if self.methods.len() < 1024 {
            self.methods.push_back(method.into());
        }
    }

    /// Feeds the next in-order bytes of the direction; returns the message heads completed.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Message> {
        let mut out = Vec::new();
        if self.pending.is_empty() {
            let used = self.process(bytes, &mut out);
            self.pending
                .extend_from_slice(bytes.get(used..).unwrap_or_default());
        } else {
            let mut buf = std::mem::take(&mut self.pending);
            buf.extend_from_slice(bytes);
            let used = self.process(&buf, &mut out).min(buf.len());
            buf.drain(..used);
            self.pending = buf;
        }
        out
    }

    fn set(&mut self, state: State) {
        self.state = state;
        self.head_seen = 0;
    }

    fn lose_sync(&mut self) {
        self.resyncs += 1;
        self.set(State::Resync);
    }

    fn parse_head(&self, d: &[u8]) -> Parse<Message> {
        match self.kind {
            Kind::Requests => match parse_request(d) {
                Parse::Done(r, n) => Parse::Done(Message::Request(r), n),
                Parse::NeedMore(n) => Parse::NeedMore(n),
                Parse::Invalid(e) => Parse::Invalid(e),
            },
            Kind::Responses => match parse_response(d) {
                Parse::Done(r, n) => Parse::Done(Message::Response(r), n),
                Parse::NeedMore(n) => Parse::NeedMore(n),
                Parse::Invalid(e) => Parse::Invalid(e),
            },
        }
    }

    /// What follows a message head.
    fn after_head(&mut self, msg: &Message) -> State {
        let (length, chunked) = match msg {
            Message::Request(r) => {
                if !r.chunked && r.content_length.is_none() {
                    return State::Head;
                }
                (r.content_length, r.chunked)
            }
            Message::Response(r) => {
                if r.status == 101 {
                    return State::Closed;
                }
                if r.status < 200 {
                    return State::Head;
                }
                let method = self.methods.pop_front();
                let method = method.as_deref().unwrap_or("GET");
                if method == "HEAD" || r.status == 204 || r.status == 304 {
                    return State::Head;
                }
                if method == "CONNECT" && (200..300).contains(&r.status) {
                    return State::Closed;
                }
                if !r.chunked && r.content_length.is_none() {
                    return State::Closed;
                }
                (r.content_length, r.chunked)
            }
        };
        match (chunked, length) {
            (true, _) => State::ChunkSize,
            (false, Some(n)) if n > 0 => State::Body(n),
            _ => State::Head,
        }
    }

    /// Walks `data` from the current state; returns how many bytes are consumed (the rest is an
    /// incomplete head or line, kept for the next push).
    fn process(&mut self, data: &[u8], out: &mut Vec<Message>) -> usize {
        let mut pos = 0;
        while pos < data.len() {
            let d = &data[pos..];
            match self.state {
                State::Closed => return data.len(),
                State::Head => {
                    let blank = d.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
                    if blank > 0 {
                        pos += blank;
                        continue;
                    }
                    // Nothing can change until a new line end arrives (or the cap is reached).
                    if self.head_seen > 0
                        && d.len() < MAX_HEAD
                        && !d.get(self.head_seen..).is_some_and(|n| n.contains(&b'\n'))
                    {
                        self.head_seen = d.len();
                        return pos;
                    }
                    match self.parse_head(d) {
                        Parse::Done(msg, n) => {
                            pos += n;
                            let next = self.after_head(&msg);
                            self.set(next);
                            out.push(msg);
                        }
                        Parse::NeedMore(_) => {
                            if d.contains(&b'\n') {
                                self.head_seen = d.len();
                            }
                            return pos;
                        }
                        Parse::Invalid(_) => self.lose_sync(),
                    }
                }
                State::Resync => match find_lf(d) {
                    Some(lf) => {
                        pos += lf + 1;
                        self.set(State::Head);
                    }
                    None => return data.len(),
                },
                State::Body(n) | State::ChunkData(n) => {
                    let take = n.min(d.len() as u64);
                    pos += take as usize;
                    let left = n - take;
                    self.state = match (self.state, left) {
                        (State::Body(_), 0) => State::Head,
                        (State::Body(_), _) => State::Body(left),
                        (_, 0) => State::ChunkEnd,
                        _ => State::ChunkData(left),
                    };
                }
                State::ChunkSize | State::ChunkEnd | State::Trailers => {
                    let cap = match self.state {
                        State::ChunkSize => MAX_CHUNK_LINE,
                        State::ChunkEnd => 2,
                        _ => MAX_HEAD,
                    };
                    let Some(lf) = find_lf(&d[..d.len().min(cap)]) else {
                        if d.len() >= cap {
                            self.lose_sync();
                            continue;
                        }
                        return pos;
                    };
                    let line = strip_cr(&d[..lf]);
                    let next = match self.state {
                        State::ChunkSize => match chunk_size(line) {
                            Some(0) => State::Trailers,
                            Some(n) => State::ChunkData(n),
                            None => State::Resync,
                        },
                        State::ChunkEnd if line.is_empty() => State::ChunkSize,
                        State::ChunkEnd => State::Resync,
                        _ if line.is_empty() => State::Head,
                        _ => State::Trailers,
                    };
                    if next == State::Resync {
                        self.lose_sync();
                    } else {
                        pos += lf + 1;
                        self.set(next);
                    }
                }
            }
        }
        pos
    }
}

/// The size in a chunk-size line: hex digits, optional whitespace, optional `;` extensions.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return None;
    }
    let rest = trim_ows(&line[digits..]);
    if !rest.is_empty() && rest[0] != b';' {
        return None;
    }
    if !rest.iter().all(|&b| is_text_byte(b)) {
        return None;
    }
    line[..digits].iter().try_fold(0u64, |n, &d| {
        let v = (d as char).to_digit(16)?;
        Some((n << 4) | u64::from(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn done_req(buf: &[u8]) -> (Request, usize) {
        match parse_request(buf) {
            Parse::Done(r, n) => (r, n),
            other => panic!("expected a request, got {other:?}"),
        }
    }

    fn targets(msgs: &[Message]) -> Vec<String> {
        msgs.iter()
            .map(|m| match m {
                Message::Request(r) => format!("{} {}", r.method, r.target),
                Message::Response(r) => format!("{}", r.status),
            })
            .collect()
    }

    const GET: &[u8] = b"GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.5.0\r\n\
Accept: */*\r\n\r\n";

    #[test]
    fn get_with_headers() {
        let (r, n) = done_req(GET);
        assert_eq!(n, GET.len());
        assert_eq!(r.method, "GET");
        assert_eq!(r.target, "/index.html?q=1");
        assert_eq!(r.version, "HTTP/1.1");
        assert_eq!(r.host.as_deref(), Some("example.com"));
        assert_eq!(r.user_agent.as_deref(), Some("curl/8.5.0"));
        assert_eq!(r.content_length, None);
        assert!(!r.chunked);
        assert_eq!(r.headers.len(), 3);
        assert_eq!(r.headers[2], ("Accept".to_string(), "*/*".to_string()));
    }

    #[test]
    fn get_split_across_three_pushes_at_awkward_places() {
        // inside a header name, then inside the final CRLFCRLF
        let name = GET.windows(4).position(|w| w == b"Agen").unwrap();
        let end = GET.len() - 3;
        let mut s = MessageStream::requests();
        assert!(s.push(&GET[..name]).is_empty());
        assert!(s.push(&GET[name..end]).is_empty());
        let msgs = s.push(&GET[end..]);
        assert_eq!(targets(&msgs), ["GET /index.html?q=1"]);
        let Message::Request(r) = &msgs[0] else { panic!() };
        assert_eq!(r.user_agent.as_deref(), Some("curl/8.5.0"));
        // and each prefix of the head alone is NeedMore
        for i in 0..GET.len() {
            assert_eq!(parse_request(&GET[..i]), Parse::NeedMore(0), "prefix {i}");
        }
    }

    #[test]
    fn two_pipelined_requests_in_one_push() {
        let mut bytes = GET.to_vec();
        bytes.extend_from_slice(b"GET /favicon.ico HTTP/1.1\r\nHost: example.com\r\n\r\n");
        let mut s = MessageStream::requests();
        assert_eq!(
            targets(&s.push(&bytes)),
            ["GET /index.html?q=1", "GET /favicon.ico"]
        );
        assert!(!s.is_done());
    }

    #[test]
    fn post_with_content_length_then_get() {
        let bytes = b"POST /api HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nGET / HTTP/\
GET /next HTTP/1.1\r\nHost: a\r\n\r\n";
        let (r, _) = done_req(bytes);
        assert_eq!(r.content_length, Some(11));
        let mut s = MessageStream::requests();
        assert_eq!(targets(&s.push(bytes)), ["POST /api", "GET /next"]);
        // body bytes split across pushes are skipped, not buffered
        let mut s = MessageStream::requests();
        let cut = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 8;
        assert_eq!(targets(&s.push(&bytes[..cut])), ["POST /api"]);
        assert!(s.pending.is_empty());
        assert_eq!(targets(&s.push(&bytes[cut..])), ["GET /next"]);
    }

    const CHUNKED: &[u8] = b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
5;name=value;x=\"q\"\r\nhello\r\nA\r\n0123456789\r\n0\r\nExpires: never\r\nX-Sum: 1\r\n\r\n";

    #[test]
    fn chunked_post_with_extensions_and_trailer_then_get() {
        let (r, _) = done_req(CHUNKED);
        assert!(r.chunked);
        let mut bytes = CHUNKED.to_vec();
        bytes.extend_from_slice(b"GET /after HTTP/1.1\r\n\r\n");
        let mut s = MessageStream::requests();
        assert_eq!(targets(&s.push(&bytes)), ["POST /upload", "GET /after"]);
        assert_eq!(s.resyncs(), 0);
        // byte by byte
        let mut s = MessageStream::requests();
        let mut found = Vec::new();
        for b in &bytes {
            found.extend(s.push(std::slice::from_ref(b)));
        }
        assert_eq!(targets(&found), ["POST /upload", "GET /after"]);
        assert_eq!(s.resyncs(), 0);
    }

    #[test]
    fn chunked_not_final_coding_is_not_chunked() {
        let (r, _) = done_req(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
        assert!(!r.chunked);
    }

    #[test]
    fn host_with_port_and_lowercase_names() {
        let (r, _) = done_req(b"GET / HTTP/1.1\r\nhost:   example.com:8080  \r\nuser-agent: x\r\n\r\n");
        assert_eq!(r.host.as_deref(), Some("example.com:8080"));
        assert_eq!(r.user_agent.as_deref(), Some("x"));
        assert_eq!(r.headers[0].0, "host");
    }

    #[test]
    fn lf_only_line_ends() {
        let buf = b"GET /a HTTP/1.0\nHost: h\nContent-Length: 0\n\nrest";
        let (r, n) = done_req(buf);
        assert_eq!(n, buf.len() - 4);
        assert_eq!(r.version, "HTTP/1.0");
        assert_eq!(r.host.as_deref(), Some("h"));
        assert_eq!(r.content_length, Some(0));
    }

    #[test]
    fn obs_fold_joins_values() {
        let (r, _) = done_req(b"GET / HTTP/1.1\r\nX-Long: a\r\n  b\r\n\r\n");
        assert_eq!(r.headers[0].1, "a b");
    }

    #[test]
    fn response_200_with_type_and_length() {
        let buf = b"HTTP/1.1 200 OK\r\nServer: nginx/1.25.3\r\nContent-Type: text/html; charset=utf-8\r\n\
Content-Length: 1234\r\n\r\n<html>";
        let Parse::Done(r, n) = parse_response(buf) else {
            panic!()
        };
        assert_eq!(n, buf.len() - 6);
        assert_eq!(
            (r.version.as_str(), r.status, r.reason.as_str()),
            ("HTTP/1.1", 200, "OK")
        );
        assert_eq!(r.content_type.as_deref(), Some("text/html; charset=utf-8"));
        assert_eq!(r.content_length, Some(1234));
        assert_eq!(r.server.as_deref(), Some("nginx/1.25.3"));
        assert!(!r.chunked);
        let Parse::Done(r, _) = parse_response(b"HTTP/1.1 204\r\n\r\n") else {
            panic!()
        };
        assert_eq!((r.status, r.reason.as_str()), (204, ""));
        assert!(matches!(
            parse_response(b"HTTP/1.1 20x OK\r\n"),
            Parse::Invalid(_)
        ));
        assert!(matches!(parse_response(b"\x16\x03\x01\x00"), Parse::Invalid(_)));
        assert_eq!(parse_response(b"HTTP/1.1 2"), Parse::NeedMore(0));
    }

    #[test]
    fn response_stream_bodies_head_and_close() {
        let mut s = MessageStream::responses();
        s.push_request_method("GET");
        s.push_request_method("HEAD");
        s.push_request_method("GET");
        s.push_request_method("GET");
        let bytes = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc\
HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n\
HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
HTTP/1.1 200 OK\r\n\r\nbody until close HTTP/1.1 200 OK\r\n\r\n";
        assert_eq!(targets(&s.push(bytes)), ["100", "200", "200", "200", "200"]);
        assert!(s.is_done());
        assert!(s.push(b"HTTP/1.1 200 OK\r\n\r\n").is_empty());
    }

    #[test]
    fn cap_at_16_kib() {
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        while head.len() < MAX_HEAD - 100 {
            head.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        let mut ok = head.clone();
        ok.extend_from_slice(b"\r\n");
        assert!(matches!(parse_request(&ok), Parse::Done(..)));
        while head.len() < MAX_HEAD {
            head.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert!(matches!(parse_request(&head), Parse::Invalid(_)));
        head.extend_from_slice(b"\r\n");
        assert!(matches!(parse_request(&head), Parse::Invalid(_)));
        let long_line = vec![b'a'; MAX_HEAD + 10];
        let mut l = b"GET /".to_vec();
        l.extend_from_slice(&long_line);
        assert!(matches!(parse_request(&l), Parse::Invalid(_)));
        // the stream does not buffer beyond the cap and recovers on the next request
        let mut s = MessageStream::requests();
        assert!(s.push(&l).is_empty());
        assert!(s.pending.len() < MAX_HEAD);
        assert_eq!(
            targets(&s.push(b" HTTP/1.1\r\n\r\nGET /ok HTTP/1.1\r\n\r\n")),
            ["GET /ok"]
        );
    }

    #[test]
    fn garbage_is_invalid_at_once_and_short_prefixes_need_more() {
        for g in [
            &b"\x16\x03\x01\x02\x00"[..],
            b"\x00",
            b"get / HTTP/1.1",
            b"GET  /",
            b"GET /\x01",
            b"-X / ",
        ] {
            assert!(matches!(parse_request(g), Parse::Invalid(_)), "{g:?}");
        }
        assert!(matches!(parse_request(b"GET / HTTP/2x"), Parse::Invalid(_)));
        assert!(matches!(parse_request(b"GET / HTTPS/1.1"), Parse::Invalid(_)));
        assert!(matches!(parse_request(b"GET / HTTP/1.1 x"), Parse::Invalid(_)));
        assert!(matches!(
            parse_request(b"GET / HTTP/1.1\r\nbad header\r\n"),
            Parse::Invalid(_)
        ));
        assert!(matches!(
            parse_request(b"ABCDEFGHIJKLMNOPQRSTU"),
            Parse::Invalid(_)
        ));
        for p in [
            &b""[..],
            b"G",
            b"GET",
            b"GET ",
            b"GET /x",
            b"GET /x HTTP/1",
            b"GET /x HTTP/1.1\r",
        ] {
            assert_eq!(parse_request(p), Parse::NeedMore(0), "{p:?}");
        }
        assert!(matches!(
            parse_request(b"POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n"),
            Parse::Invalid(_)
        ));
        let (r, _) = done_req(b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n");
        assert_eq!(r.content_length, Some(5));
    }

    #[test]
    fn request_lines_without_a_version_for_known_methods() {
        // Seen in zeek's http/methods.pcap and as HTTP/0.9; tshark reports them as requests.
        let (r, _) = done_req(b"GET /\r\n\r\n");
        assert_eq!(
            (r.method.as_str(), r.target.as_str(), r.version.as_str()),
            ("GET", "/", "")
        );
        let (r, _) = done_req(b"OPTIONS\nHost: www.google.com\n\n");
        assert_eq!(
            (r.method.as_str(), r.target.as_str(), r.host.as_deref()),
            ("OPTIONS", "", Some("www.google.com"))
        );
        let (r, _) = done_req(b"GET /HTTP/1.1\nHost: h\n\n");
        assert_eq!(r.target, "/HTTP/1.1");
        // A truncated version, as in zeek's methods.pcap, is still a request.
        let (r, _) = done_req(b"POST / HTTP/1.\nHost: www.google.com\n\n");
        assert_eq!((r.method.as_str(), r.version.as_str()), ("POST", "HTTP/1."));
        // An unknown method still needs a version.
        assert!(matches!(parse_request(b"FOO /\r\n\r\n"), Parse::Invalid(_)));
    }

    #[test]
    fn ssdp_requests() {
        let (r, _) = done_req(
            b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\n\
ST: ssdp:all\r\n\r\n",
        );
        assert_eq!((r.method.as_str(), r.target.as_str()), ("M-SEARCH", "*"));
        assert_eq!(r.host.as_deref(), Some("239.255.255.250:1900"));
        let (r, _) = done_req(b"NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nNTS: ssdp:alive\r\n\r\n");
        assert_eq!(r.method, "NOTIFY");
        assert!(looks_like_request(b"M-SEARCH * HTTP/1.1"));
    }

    #[test]
    fn methods_by_token_rule() {
        for m in [
            "GET",
            "POST",
            "PUT",
            "DELETE",
            "HEAD",
            "OPTIONS",
            "PATCH",
            "TRACE",
            "PROPFIND",
            "SUBSCRIBE",
        ] {
            let line = format!("{m} /x HTTP/1.1\r\n\r\n");
            assert_eq!(done_req(line.as_bytes()).0.method, m);
            assert!(looks_like_request(line.as_bytes()));
        }
        let (r, _) = done_req(b"CONNECT example.com:443 HTTP/1.1\r\n\r\n");
        assert_eq!(r.target, "example.com:443");
    }

    #[test]
    fn fast_path_prefix_checks() {
        assert!(looks_like_request(b"GET /"));
        assert!(looks_like_request(b"POST "));
        assert!(!looks_like_request(b"GET"));
        assert!(!looks_like_request(b"get /"));
        assert!(!looks_like_request(b"GET  "));
        assert!(!looks_like_request(b"\x16\x03\x01"));
        assert!(!looks_like_request(b""));
        assert!(looks_like_response(b"HTTP/1.1 200 OK"));
        assert!(looks_like_response(b"HTTP/1.0 404"));
        assert!(!looks_like_response(b"HTTP/2"));
        assert!(!looks_like_response(b"HTTP"));
    }

    #[test]
    fn resync_after_garbage() {
        let mut s = MessageStream::requests();
        let msgs = s.push(b"\x00\x01binary\r\nmore junk\nGET /found HTTP/1.1\r\n\r\n");
        assert_eq!(targets(&msgs), ["GET /found"]);
        assert!(s.resyncs() >= 1);
        // a bad chunk-size line
        let mut s = MessageStream::requests();
        let msgs =
            s.push(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nGET /again HTTP/1.1\r\n\r\n");
        assert_eq!(targets(&msgs), ["POST /", "GET /again"]);
    }

    const THREE: &[u8] = b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n\
POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789\
POST /three HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nwxyz\r\n0\r\nT: 1\r\n\r\n\
GET /four HTTP/1.1\nHost: b\n\n";

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse_request(&bytes);
            let _ = parse_response(&bytes);
            let _ = looks_like_request(&bytes);
            let _ = looks_like_response(&bytes);
        }

        #[test]
        fn http_like_bytes_never_panic(parts in proptest::collection::vec(
            prop_oneof![
                Just(&b"GET / HTTP/1.1\r\n"[..]), Just(&b"HTTP/1.1 200 OK\r\n"[..]), Just(&b"\r\n"[..]),
                Just(&b"\n"[..]), Just(&b"Content-Length: 3\r\n"[..]), Just(&b"Transfer-Encoding: chunked\r\n"[..]),
                Just(&b"5;a=b\r\n"[..]), Just(&b"0\r\n"[..]), Just(&b"abc"[..]), Just(&b"\x00\xff"[..]),
                Just(&b" folded\r\n"[..]), Just(&b"Content-Length: 99999999999999999999\r\n"[..]),
            ], 0..40),
            cuts in proptest::collection::vec(0usize..400, 0..6),
        ) {
            let bytes: Vec<u8> = parts.concat();
            let _ = parse_request(&bytes);
            let _ = parse_response(&bytes);
            for mut s in [MessageStream::requests(), MessageStream::responses()] {
                let mut at = 0;
                let mut cuts = cuts.clone();
                cuts.sort_unstable();
                for c in cuts.into_iter().chain([bytes.len()]) {
                    let c = c.clamp(at, bytes.len());
                    let _ = s.push(&bytes[at..c]);
                    at = c;
                }
                prop_assert!(s.pending.len() <= MAX_HEAD);
            }
        }

        #[test]
        fn stream_never_panics(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..8)) {
            let mut req = MessageStream::requests();
            let mut resp = MessageStream::responses();
            for c in &chunks {
                let _ = req.push(c);
                let _ = resp.push(c);
            }
        }

        #[test]
        fn same_requests_whatever_the_split(mut cuts in proptest::collection::vec(0..=THREE.len(), 0..12)) {
            cuts.sort_unstable();
            let mut s = MessageStream::requests();
            let mut found = Vec::new();
            let mut at = 0;
            for c in cuts.into_iter().chain([THREE.len()]) {
                found.extend(s.push(&THREE[at..c]));
                at = c;
            }
            prop_assert_eq!(targets(&found), ["GET /one", "POST /two", "POST /three", "GET /four"]);
            prop_assert_eq!(s.resyncs(), 0);
            prop_assert!(s.pending.is_empty());
        }
    }
}
