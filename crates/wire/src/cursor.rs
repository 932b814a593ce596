//! A small cursor for reading TLV formats (DNS, TLS, QUIC, STUN) in wire order: every read is
//! bounds-checked and fails with [`Error::Truncated`] naming the layer; nothing allocates.

use crate::{Error, Layer};

/// Reads big-endian fields from a byte slice, front to back.
#[derive(Clone, Copy, Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    layer: Layer,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], layer: Layer) -> Self {
        Self { buf, pos: 0, layer }
    }
    pub fn layer(&self) -> Layer {
        self.layer
    }
    /// Bytes read so far.
    pub fn position(&self) -> usize {
        self.pos
    }
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }
    /// The unread bytes (the cursor does not move).
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }
    /// The whole buffer this reader walks (for formats with back-references, like DNS names).
    pub fn whole(&self) -> &'a [u8] {
        self.buf
    }
    /// Moves to an absolute position within the buffer.
    pub fn seek(&mut self, pos: usize) -> Result<(), Error> {
        if pos > self.buf.len() {
            return Err(Error::Truncated {
                layer: self.layer,
                need: pos,
                have: self.buf.len(),
            });
        }
        self.pos = pos;
        Ok(())
    }
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if n > self.remaining() {
            return Err(Error::Truncated {
                layer: self.layer,
                need: n,
                have: self.remaining(),
            });
        }
        let b = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(b)
    }
    pub fn skip(&mut self, n: usize) -> Result<(), Error> {
        self.bytes(n).map(|_| ())
    }
    pub fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.bytes(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16, Error> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    pub fn u24(&mut self) -> Result<u32, Error> {
        let b = self.bytes(3)?;
        Ok(u32::from_be_bytes([0, b[0], b[1], b[2]]))
    }
    pub fn u32(&mut self) -> Result<u32, Error> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn u64(&mut self) -> Result<u64, Error> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    /// A QUIC variable-length integer (RFC 9000 section 16).
    pub fn varint(&mut self) -> Result<u64, Error> {
        let first = *self.rest().first().ok_or(Error::Truncated {
            layer: self.layer,
            need: 1,
            have: 0,
        })?;
        let len = 1usize << (first >> 6);
        let b = self.bytes(len)?;
        let mut v = u64::from(b[0] & 0x3f);
        for &x in &b[1..] {
            v = (v << 8) | u64::from(x);
        }
        Ok(v)
    }
    /// A vector with a 1-byte length prefix.
    pub fn vec8(&mut self) -> Result<&'a [u8], Error> {
        let n = self.u8()? as usize;
        self.bytes(n)
    }
    /// A vector with a 2-byte length prefix.
    pub fn vec16(&mut self) -> Result<&'a [u8], Error> {
        let n = self.u16()? as usize;
        self.bytes(n)
    }
    /// A vector with a 3-byte length prefix.
    pub fn vec24(&mut self) -> Result<&'a [u8], Error> {
        let n = self.u24()? as usize;
        self.bytes(n)
    }
    /// A sub-reader over the next `n` bytes (the cursor moves past them).
    pub fn sub(&mut self, n: usize) -> Result<Reader<'a>, Error> {
        Ok(Reader::new(self.bytes(n)?, self.layer))
    }
    /// Fails with `Malformed { what }` when bytes are left over.
    pub fn expect_end(&self, what: &'static str) -> Result<(), Error> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(Error::Malformed {
                layer: self.layer,
                what,
            })
        }
    }
}

/// The outcome of parsing a message from a byte stream that may still be arriving.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parse<T> {
    /// The message, and how many stream bytes it took.
    Done(T, usize),
    /// The bytes so far are a valid prefix; at least this many more are needed (0: unknown).
    NeedMore(usize),
    /// The bytes are not this protocol, or are malformed.
    Invalid(Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_in_order_and_bounds_every_length() {
        let b = [1, 0, 2, 0, 0, 3, 2, 0xaa, 0xbb, 0x40, 0x25, 9];
        let mut r = Reader::new(&b, Layer::Tls);
        assert_eq!(r.u8().unwrap(), 1);
        assert_eq!(r.u16().unwrap(), 2);
        assert_eq!(r.u24().unwrap(), 3);
        assert_eq!(r.vec8().unwrap(), &[0xaa, 0xbb]);
        assert_eq!(r.varint().unwrap(), 0x25);
        assert!(r.expect_end("trailing").is_err());
        assert_eq!(
            r.u16(),
            Err(Error::Truncated {
                layer: Layer::Tls,
                need: 2,
                have: 1
            })
        );
        assert_eq!(r.position(), 11, "a failed read does not move the cursor");
        let mut v = Reader::new(&[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c], Layer::Quic);
        assert_eq!(v.varint().unwrap(), 151_288_809_941_952_652);
        let mut big = Reader::new(&[0x00, 0xff, 1], Layer::Dns);
        assert!(big.vec16().is_err());
    }
}
