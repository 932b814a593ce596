//! The fleet wire format (docs/fleet-protocol.md, v1): length-prefixed frames with a version byte
//! and a type byte. Plain functions over bytes; decoding never panics on garbage, bounds every
//! length before allocating, and names what is wrong.

use std::fmt;
use std::io::{self, Read, Write};

/// Protocol version carried in every frame.
pub const VERSION: u8 = 1;
/// Largest frame body (version + type + payload) accepted: 16 MiB.
pub const MAX_FRAME: usize = 16 << 20;

const T_ENROLL: u8 = 1;
const T_ENROLLED: u8 = 2;
const T_HELLO: u8 = 3;
const T_WELCOME: u8 = 4;
const T_BATCH: u8 = 5;
const T_ACK: u8 = 6;
const T_ERROR: u8 = 7;

/// Why the server refused something (the `code` of an [`Frame::Error`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum ErrorCode {
    /// The frame could not be decoded, or came out of order.
    Malformed = 1,
    /// The client key is not enrolled.
    UnknownAgent = 2,
    /// The agent was revoked by the admin.
    Revoked = 3,
    /// The enrollment token is unknown, used or expired.
    BadToken = 4,
    /// This key is already enrolled.
    AlreadyEnrolled = 5,
    /// The server could not commit (database trouble); try again later.
    Unavailable = 6,
    /// A batch's records are not JSON lines.
    BadRecords = 7,
}

impl ErrorCode {
    /// The code for a number on the wire (unknown numbers become `Malformed`).
    pub fn from_u16(v: u16) -> ErrorCode {
        match v {
            2 => ErrorCode::UnknownAgent,
            3 => ErrorCode::Revoked,
            4 => ErrorCode::BadToken,
            5 => ErrorCode::AlreadyEnrolled,
            6 => ErrorCode::Unavailable,
            7 => ErrorCode::BadRecords,
            _ => ErrorCode::Malformed,
        }
    }
}

/// Whether a batch was stored now or had been stored before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckStatus {
    Stored = 0,
    Duplicate = 1,
}

/// One protocol message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Agent -> server: register the key of this TLS client certificate with a one-time token.
    Enroll { token: String, name: String },
    /// Server -> agent: the key is registered under this device id.
    Enrolled { device: u32 },
    /// Agent -> server: an enrolled agent starts a session.
    Hello,
    /// Server -> agent: session accepted; `last_seq` is the highest batch sequence stored.
    Welcome { device: u32, last_seq: u64 },
    /// Agent -> server: records as JSON lines, each ending in `\n`.
    Batch { seq: u64, records: String },
    /// Server -> agent: the batch `seq` is committed.
    Ack { seq: u64, status: AckStatus },
    /// Either way: refusal; the connection is closed after it.
    Error { code: ErrorCode, message: String },
}

/// What is wrong with bytes that should be a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The length prefix is below 2 or above [`MAX_FRAME`].
    BadLength(u32),
    /// The version byte is not [`VERSION`].
    Version(u8),
    /// An unknown type byte.
    Type(u8),
    /// The payload of this type is too short or too long.
    Payload { kind: &'static str, why: &'static str },
    /// A text field is not UTF-8.
    Utf8 { kind: &'static str },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::BadLength(n) => write!(f, "frame length {n} out of range (2..={MAX_FRAME})"),
            FrameError::Version(v) => {
                write!(
                    f,
                    "protocol version {v} not supported (this netvigil speaks {VERSION}): upgrade the older side"
                )
            }
            FrameError::Type(t) => write!(f, "unknown frame type {t}"),
            FrameError::Payload { kind, why } => write!(f, "{kind} frame: {why}"),
            FrameError::Utf8 { kind } => write!(f, "{kind} frame: text is not UTF-8"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Encodes one frame: `u32` big-endian length of what follows, version, type, payload.
pub fn encode(frame: &Frame) -> Vec<u8> {
    let mut body = vec![VERSION, 0];
    match frame {
        Frame::Enroll { token, name } => {
            body[1] = T_ENROLL;
            push_str16(&mut body, token);
            push_str16(&mut body, name);
        }
        Frame::Enrolled { device } => {
            body[1] = T_ENROLLED;
            body.extend_from_slice(&device.to_be_bytes());
        }
        Frame::Hello => body[1] = T_HELLO,
        Frame::Welcome { device, last_seq } => {
            body[1] = T_WELCOME;
            body.extend_from_slice(&device.to_be_bytes());
            body.extend_from_slice(&last_seq.to_be_bytes());
        }
        Frame::Batch { seq, records } => {
            body[1] = T_BATCH;
            body.extend_from_slice(&seq.to_be_bytes());
            body.extend_from_slice(records.as_bytes());
        }
        Frame::Ack { seq, status } => {
            body[1] = T_ACK;
            body.extend_from_slice(&seq.to_be_bytes());
            body.push(*status as u8);
        }
        Frame::Error { code, message } => {
            body[1] = T_ERROR;
            body.extend_from_slice(&(*code as u16).to_be_bytes());
            body.extend_from_slice(message.as_bytes());
        }
    }
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

fn push_str16(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.floor_char_boundary(u16::MAX as usize)];
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

/// Decodes the first frame of `buf`: `Ok(None)` when more bytes are needed, else the frame and
/// how many bytes it took.
#[allow(
    dead_code,
    reason = "only tests call it so far (reading back stored batches, stopping a server, decoding a buffer)"
)]
pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
    let Some(len) = buf.get(..4) else { return Ok(None) };
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]);
    check_len(len)?;
    let Some(body) = buf.get(4..4 + len as usize) else {
        return Ok(None);
    };
    Ok(Some((decode_body(body)?, 4 + len as usize)))
}

fn check_len(len: u32) -> Result<(), FrameError> {
    if !(2..=MAX_FRAME as u32).contains(&len) {
        return Err(FrameError::BadLength(len));
    }
    Ok(())
}

/// Decodes a frame body (version, type, payload: the bytes after the length prefix).
pub fn decode_body(body: &[u8]) -> Result<Frame, FrameError> {
    let (&version, rest) = body.split_first().ok_or(FrameError::BadLength(0))?;
    if version != VERSION {
        return Err(FrameError::Version(version));
    }
    let (&kind, p) = rest.split_first().ok_or(FrameError::BadLength(1))?;
    let short = |kind| FrameError::Payload {
        kind,
        why: "too short",
    };
    let exact = |kind, n: usize| {
        if p.len() == n {
            Ok(())
        } else {
            Err(FrameError::Payload {
                kind,
                why: "wrong length",
            })
        }
    };
    Ok(match kind {
        T_ENROLL => {
            let (token, p) = take_str16(p, "enroll")?;
            let (name, p) = take_str16(p, "enroll")?;
            if !p.is_empty() {
                return Err(FrameError::Payload {
                    kind: "enroll",
                    why: "trailing bytes",
                });
            }
            Frame::Enroll { token, name }
        }
        T_ENROLLED => {
            exact("enrolled", 4)?;
            Frame::Enrolled {
                device: u32::from_be_bytes([p[0], p[1], p[2], p[3]]),
            }
        }
        T_HELLO => {
            exact("hello", 0)?;
            Frame::Hello
        }
        T_WELCOME => {
            exact("welcome", 12)?;
            Frame::Welcome {
                device: u32::from_be_bytes([p[0], p[1], p[2], p[3]]),
                last_seq: be_u64(&p[4..12]),
            }
        }
        T_BATCH => {
            let (seq, text) = (p.get(..8).ok_or(short("batch"))?, &p[8.min(p.len())..]);
            let records = std::str::from_utf8(text).map_err(|_| FrameError::Utf8 { kind: "batch" })?;
            Frame::Batch {
                seq: be_u64(seq),
                records: records.to_owned(),
            }
        }
        T_ACK => {
            exact("ack", 9)?;
            let status = match p[8] {
                0 => AckStatus::Stored,
                1 => AckStatus::Duplicate,
                _ => {
                    return Err(FrameError::Payload {
                        kind: "ack",
                        why: "unknown status",
                    });
                }
            };
            Frame::Ack {
                seq: be_u64(&p[..8]),
                status,
            }
        }
        T_ERROR => {
            let code = p.get(..2).ok_or(short("error"))?;
            let message = std::str::from_utf8(&p[2..]).map_err(|_| FrameError::Utf8 { kind: "error" })?;
            Frame::Error {
                code: ErrorCode::from_u16(u16::from_be_bytes([code[0], code[1]])),
                message: message.to_owned(),
            }
        }
        t => return Err(FrameError::Type(t)),
    })
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

fn take_str16<'a>(p: &'a [u8], kind: &'static str) -> Result<(String, &'a [u8]), FrameError> {
    let n = p.get(..2).ok_or(FrameError::Payload {
        kind,
        why: "too short",
    })?;
    let n = u16::from_be_bytes([n[0], n[1]]) as usize;
    let s = p.get(2..2 + n).ok_or(FrameError::Payload {
        kind,
        why: "text longer than the frame",
    })?;
    let s = std::str::from_utf8(s).map_err(|_| FrameError::Utf8 { kind })?;
    Ok((s.to_owned(), &p[2 + n..]))
}

/// Errors of [`read_frame`].
#[derive(Debug)]
pub enum ReadError {
    Io(io::Error),
    Frame(FrameError),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "connection: {e}"),
            ReadError::Frame(e) => write!(f, "protocol: {e}"),
        }
    }
}

impl std::error::Error for ReadError {}

/// Reads one frame from a stream (blocking). The length is checked before the body is allocated.
pub fn read_frame(r: &mut impl Read) -> Result<Frame, ReadError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).map_err(ReadError::Io)?;
    let len = u32::from_be_bytes(len);
    check_len(len).map_err(ReadError::Frame)?;
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body).map_err(ReadError::Io)?;
    decode_body(&body).map_err(ReadError::Frame)
}

/// Writes one frame and flushes.
pub fn write_frame(w: &mut impl Write, frame: &Frame) -> io::Result<()> {
    w.write_all(&encode(frame))?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all() -> Vec<Frame> {
        vec![
            Frame::Enroll {
                token: "t0k".into(),
                name: "laptop".into(),
            },
            Frame::Enrolled { device: 7 },
            Frame::Hello,
            Frame::Welcome {
                device: 7,
                last_seq: 99,
            },
            Frame::Batch {
                seq: u64::MAX,
                records: "{\"type\":\"flow\"}\n".into(),
            },
            Frame::Ack {
                seq: 3,
                status: AckStatus::Duplicate,
            },
            Frame::Error {
                code: ErrorCode::Revoked,
                message: "revoked".into(),
            },
        ]
    }

    #[test]
    fn every_frame_round_trips_and_needs_all_its_bytes() {
        for f in all() {
            let b = encode(&f);
            assert_eq!(decode(&b).unwrap(), Some((f.clone(), b.len())));
            assert_eq!(decode(&b[..b.len() - 1]).unwrap(), None, "{f:?}");
            assert_eq!(read_frame(&mut &b[..]).unwrap(), f);
        }
    }

    #[test]
    fn bad_version_length_and_type_are_named() {
        let mut b = encode(&Frame::Hello);
        b[4] = 2;
        assert_eq!(decode(&b), Err(FrameError::Version(2)));
        assert_eq!(
            decode(&[0xff, 0xff, 0xff, 0xff]),
            Err(FrameError::BadLength(u32::MAX))
        );
        assert_eq!(decode(&[0, 0, 0, 2, 1, 99]), Err(FrameError::Type(99)));
        assert!(decode(&[0, 0, 0, 3, 1, T_ACK, 0]).is_err());
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
            let _ = decode_body(&bytes);
            let _ = read_frame(&mut &bytes[..]);
        }

        #[test]
        fn mutated_frames_never_panic(i in 0usize..7, pos in 0usize..64, val in any::<u8>()) {
            let mut b = encode(&all()[i]);
            let p = pos % b.len();
            b[p] = val;
            let _ = decode(&b);
        }
    }
}
