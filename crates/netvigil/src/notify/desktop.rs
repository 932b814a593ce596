//! The desktop channel: `org.freedesktop.Notifications.Notify` over the D-Bus session bus,
//! speaking the D-Bus wire protocol directly (a unix socket, EXTERNAL authentication,
//! little-endian messages): no D-Bus library, no helper process.
//!
//! Only `unix:path=...` bus addresses are supported (what systemd's user bus and
//! `dbus-daemon --session` give); the connection is opened at the first notice and kept.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use engine::judge::Severity;

use super::{Notice, Sink, Stop};

/// Longest message read from the bus (replies here are tiny; this bounds a bad peer).
const MAX_MESSAGE: usize = 1 << 20;
const TIMEOUT: Duration = Duration::from_secs(5);

/// Message types.
pub const METHOD_CALL: u8 = 1;
pub const METHOD_RETURN: u8 = 2;
pub const ERROR: u8 = 3;
pub const SIGNAL: u8 = 4;

/// The socket path of a bus address (`unix:path=/run/user/1000/bus,guid=...`; several
/// addresses separated by `;` are tried in order for the first `unix:path`).
pub fn socket_path(address: &str) -> Result<PathBuf, String> {
    for addr in address.split(';') {
        let Some(params) = addr.trim().strip_prefix("unix:") else {
            continue;
        };
        for kv in params.split(',') {
            if let Some(p) = kv.strip_prefix("path=") {
                return Ok(PathBuf::from(unescape(p)));
            }
        }
    }
    Err(format!(
        "D-Bus address \"{address}\" has no unix:path= part (abstract sockets and TCP are not supported); set notify.desktop.bus"
    ))
}

/// D-Bus address values escape bytes as %XX.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Builds the body or header of a little-endian D-Bus message.
#[derive(Debug, Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn align(&mut self, n: usize) {
        while !self.buf.len().is_multiple_of(n) {
            self.buf.push(0);
        }
    }
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u32(&mut self, v: u32) {
        self.align(4);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i32(&mut self, v: i32) {
        self.align(4);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// A string or object path.
    pub fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }
    pub fn sig(&mut self, s: &str) {
        self.buf.push(s.len() as u8);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }
    /// An array whose elements align to `elem_align`, written by `f`.
    pub fn array(&mut self, elem_align: usize, f: impl FnOnce(&mut Writer)) {
        self.align(4);
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        self.align(elem_align);
        let start = self.buf.len();
        f(self);
        let len = (self.buf.len() - start) as u32;
        self.buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }
}

/// Header field values of a message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub kind: u8,
    pub flags: u8,
    pub serial: u32,
    pub path: Option<String>,
    pub interface: Option<String>,
    pub member: Option<String>,
    pub error_name: Option<String>,
    pub reply_serial: Option<u32>,
    pub destination: Option<String>,
    pub sender: Option<String>,
    pub signature: String,
}

/// A whole message: header and body bytes (little- or big-endian, `le`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub header: Header,
    pub body: Vec<u8>,
    pub le: bool,
}

/// Encodes a message. `fields`: (path, interface, member, destination); `reply_serial` for
/// replies; `body` already marshalled with `signature`.
pub fn encode(
    kind: u8,
    serial: u32,
    fields: [Option<&str>; 4],
    reply_serial: Option<u32>,
    signature: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut w = Writer::default();
    w.u8(b'l');
    w.u8(kind);
    w.u8(0);
    w.u8(1);
    w.u32(body.len() as u32);
    w.u32(serial);
    w.array(8, |w| {
        let [path, interface, member, destination] = fields;
        for (code, sig, v) in [
            (1u8, "o", path),
            (2, "s", interface),
            (3, "s", member),
            (6, "s", destination),
        ] {
            if let Some(v) = v {
                w.align(8);
                w.u8(code);
                w.sig(sig);
                w.str(v);
            }
        }
        if let Some(r) = reply_serial {
            w.align(8);
            w.u8(5);
            w.sig("u");
            w.u32(r);
        }
        if !signature.is_empty() {
            w.align(8);
            w.u8(8);
            w.sig("g");
            w.sig(signature);
        }
    });
    w.align(8);
    w.buf.extend_from_slice(body);
    w.buf
}

/// Reads marshalled values.
#[derive(Debug)]
pub struct Reader<'a> {
    pub b: &'a [u8],
    pub at: usize,
    pub le: bool,
}

impl<'a> Reader<'a> {
    pub fn align(&mut self, n: usize) -> Option<()> {
        let to = self.at.next_multiple_of(n);
        (to <= self.b.len()).then(|| self.at = to)
    }
    pub fn u8(&mut self) -> Option<u8> {
        let v = *self.b.get(self.at)?;
        self.at += 1;
        Some(v)
    }
    pub fn u32(&mut self) -> Option<u32> {
        self.align(4)?;
        let x: [u8; 4] = self.b.get(self.at..self.at + 4)?.try_into().ok()?;
        self.at += 4;
        Some(if self.le {
            u32::from_le_bytes(x)
        } else {
            u32::from_be_bytes(x)
        })
    }
    pub fn str(&mut self) -> Option<&'a str> {
        let n = self.u32()? as usize;
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n + 1;
        (self.at <= self.b.len()).then_some(())?;
        std::str::from_utf8(s).ok()
    }
    pub fn sig(&mut self) -> Option<&'a str> {
        let n = self.u8()? as usize;
        let s = self.b.get(self.at..self.at + n)?;
        self.at += n + 1;
        (self.at <= self.b.len()).then_some(())?;
        std::str::from_utf8(s).ok()
    }
}

/// Parses the header of a whole message (`buf` holds exactly one).
pub fn decode(buf: &[u8]) -> Option<Message> {
    let le = match buf.first()? {
        b'l' => true,
        b'B' => false,
        _ => return None,
    };
    let mut r = Reader { b: buf, at: 1, le };
    let kind = r.u8()?;
    let flags = r.u8()?;
    let _version = r.u8()?;
    let body_len = r.u32()? as usize;
    let serial = r.u32()?;
    let fields_len = r.u32()? as usize;
    let end = r.at.checked_add(fields_len)?;
    let mut h = Header {
        kind,
        flags,
        serial,
        ..Header::default()
    };
    while r.at < end {
        r.align(8)?;
        let code = r.u8()?;
        let sig = r.sig()?;
        match sig {
            "s" | "o" => {
                let v = r.str()?.to_string();
                match code {
                    1 => h.path = Some(v),
                    2 => h.interface = Some(v),
                    3 => h.member = Some(v),
                    4 => h.error_name = Some(v),
                    6 => h.destination = Some(v),
                    7 => h.sender = Some(v),
                    _ => {}
                }
            }
            "u" => {
                let v = r.u32()?;
                if code == 5 {
                    h.reply_serial = Some(v);
                }
            }
            "g" => {
                let v = r.sig()?.to_string();
                if code == 8 {
                    h.signature = v;
                }
            }
            _ => return None,
        }
    }
    r.at = end;
    r.align(8)?;
    let body = buf.get(r.at..r.at.checked_add(body_len)?)?.to_vec();
    Some(Message { header: h, body, le })
}

/// Reads one whole message from `s`.
pub fn read_message(s: &mut impl Read) -> Result<Message, String> {
    let mut fixed = [0u8; 16];
    s.read_exact(&mut fixed)
        .map_err(|e| format!("reading from the bus: {e}"))?;
    let le = fixed[0] == b'l';
    let num = |b: &[u8]| {
        let x: [u8; 4] = b.try_into().unwrap_or([0; 4]);
        (if le {
            u32::from_le_bytes(x)
        } else {
            u32::from_be_bytes(x)
        }) as usize
    };
    let body_len = num(&fixed[4..8]);
    let fields_len = num(&fixed[12..16]);
    let total = (16 + fields_len).next_multiple_of(8) + body_len;
    if total > MAX_MESSAGE || !matches!(fixed[0], b'l' | b'B') {
        return Err("the bus sent a message netvigil cannot read".into());
    }
    let mut buf = fixed.to_vec();
    buf.resize(total, 0);
    s.read_exact(&mut buf[16..])
        .map_err(|e| format!("reading from the bus: {e}"))?;
    decode(&buf).ok_or_else(|| "the bus sent a malformed message".into())
}

/// Connects to the bus at `path`, authenticates (EXTERNAL) and says Hello; returns the stream
/// and the unique name the bus gave.
pub fn connect(path: &std::path::Path) -> Result<(UnixStream, String), String> {
    let mut s = UnixStream::connect(path)
        .map_err(|e| format!("cannot connect to the session bus at {}: {e}", path.display()))?;
    s.set_read_timeout(Some(TIMEOUT))
        .and_then(|()| s.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| e.to_string())?;
    // The kernel tells the bus who we are (SO_PEERCRED); we claim the uid that owns our /proc entry.
    let uid = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").map(|m| m.uid().to_string()).ok()
    };
    let hex: String = uid
        .unwrap_or_default()
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect();
    let auth = if hex.is_empty() {
        "AUTH EXTERNAL\r\n".to_string()
    } else {
        format!("AUTH EXTERNAL {hex}\r\n")
    };
    s.write_all(b"\0")
        .and_then(|()| s.write_all(auth.as_bytes()))
        .map_err(|e| format!("bus authentication: {e}"))?;
    let mut answered = false;
    for _ in 0..3 {
        let line = read_line(&mut s)?;
        if line.starts_with("OK ") || line == "OK" {
            answered = true;
            break;
        } else if line.starts_with("DATA") {
            s.write_all(b"DATA\r\n")
                .map_err(|e| format!("bus authentication: {e}"))?;
        } else {
            return Err(format!(
                "the session bus refused netvigil (EXTERNAL authentication): {line}"
            ));
        }
    }
    if !answered {
        return Err("the session bus did not finish authentication".into());
    }
    s.write_all(b"BEGIN\r\n")
        .map_err(|e| format!("bus authentication: {e}"))?;
    let hello = encode(
        METHOD_CALL,
        1,
        [
            Some("/org/freedesktop/DBus"),
            Some("org.freedesktop.DBus"),
            Some("Hello"),
            Some("org.freedesktop.DBus"),
        ],
        None,
        "",
        &[],
    );
    s.write_all(&hello).map_err(|e| format!("bus Hello: {e}"))?;
    let reply = wait_reply(&mut s, 1)?;
    let name = Reader {
        b: &reply.body,
        at: 0,
        le: reply.le,
    }
    .str()
    .unwrap_or("")
    .to_string();
    Ok((s, name))
}

fn read_line(s: &mut UnixStream) -> Result<String, String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 4096 {
        s.read_exact(&mut byte)
            .map_err(|e| format!("bus authentication: {e}"))?;
        if byte[0] == b'\n' {
            break;
        }
        line.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&line).trim_end().to_string())
}

/// Reads messages until the reply to `serial`; an error reply becomes `Err`.
pub fn wait_reply(s: &mut UnixStream, serial: u32) -> Result<Message, String> {
    for _ in 0..64 {
        let m = read_message(s)?;
        if m.header.reply_serial != Some(serial) {
            continue; // a signal (NameAcquired ...) or something else
        }
        if m.header.kind == ERROR {
            let text = if m.header.signature.starts_with('s') {
                Reader {
                    b: &m.body,
                    at: 0,
                    le: m.le,
                }
                .str()
                .unwrap_or("")
                .to_string()
            } else {
                String::new()
            };
            return Err(format!("{}: {text}", m.header.error_name.unwrap_or_default()));
        }
        return Ok(m);
    }
    Err("no reply from the bus".into())
}

/// The body of a `Notify` call (signature `susssasa{sv}i`).
pub fn notify_body(summary: &str, body: &str, icon: &str, urgency: u8, expire_ms: i32) -> Vec<u8> {
    let mut w = Writer::default();
    w.str("netvigil");
    w.u32(0);
    w.str(icon);
    w.str(summary);
    w.str(body);
    w.array(4, |_| {});
    w.array(8, |w| {
        w.align(8);
        w.str("urgency");
        w.sig("y");
        w.u8(urgency);
    });
    w.i32(expire_ms);
    w.buf
}

/// Escapes the body for notification servers that read markup.
fn markup_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The desktop channel.
#[derive(Debug)]
pub struct Desktop {
    path: PathBuf,
    expire_ms: i32,
    conn: Option<UnixStream>,
    serial: u32,
}

impl Desktop {
    /// `address`: a D-Bus address (`unix:path=...`).
    pub fn new(address: &str, expire: Option<Duration>) -> Result<Self, String> {
        Ok(Self {
            path: socket_path(address)?,
            expire_ms: expire.map_or(-1, |d| i32::try_from(d.as_millis()).unwrap_or(i32::MAX)),
            conn: None,
            serial: 1,
        })
    }

    fn send(&mut self, n: &Notice) -> Result<(), String> {
        if self.conn.is_none() {
            self.conn = Some(connect(&self.path)?.0);
            self.serial = 1;
        }
        let Some(s) = self.conn.as_mut() else {
            return Err("not connected".into());
        };
        self.serial = self.serial.wrapping_add(1).max(2);
        let (urgency, icon) = match n.severity {
            Severity::High => (2, "dialog-warning"),
            Severity::Medium => (1, "dialog-warning"),
            Severity::Low | Severity::Info => (0, "dialog-information"),
        };
        let body = notify_body(
            &n.title(),
            &markup_escape(&n.line()),
            icon,
            urgency,
            self.expire_ms,
        );
        let msg = encode(
            METHOD_CALL,
            self.serial,
            [
                Some("/org/freedesktop/Notifications"),
                Some("org.freedesktop.Notifications"),
                Some("Notify"),
                Some("org.freedesktop.Notifications"),
            ],
            None,
            "susssasa{sv}i",
            &body,
        );
        s.write_all(&msg)
            .map_err(|e| format!("writing to the bus: {e}"))?;
        wait_reply(s, self.serial).map(|_| ())
    }
}

impl Sink for Desktop {
    fn name(&self) -> &'static str {
        "desktop"
    }
    fn deliver(&mut self, n: &Notice, _stop: &Stop) -> Result<u32, String> {
        match self.send(n) {
            Ok(()) => Ok(0),
            Err(e) => {
                // Reconnect once (the bus may have restarted), then give up on this notice.
                self.conn = None;
                if e.starts_with("writing") || e.starts_with("reading") {
                    self.send(n).map(|()| 1).inspect_err(|_| self.conn = None)
                } else {
                    Err(e)
                }
            }
        }
    }
}
