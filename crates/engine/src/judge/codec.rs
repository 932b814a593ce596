//! A small hand-written binary codec for the alerter's saved state: little-endian integers,
//! `f64` as bits, strings as a `u32` length and UTF-8 bytes. The reader checks every length
//! against what is left before allocating, and names what it was reading when it fails.

use super::alert::LoadError;

#[derive(Debug, Default)]
pub(crate) struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn f64(&mut self, v: f64) {
        self.u64(v.to_bits());
    }
    pub fn len(&mut self, n: usize) {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }
    pub fn str(&mut self, s: &str) {
        let b = &s.as_bytes()[..s.len().min(u32::MAX as usize)];
        self.len(b.len());
        self.buf.extend_from_slice(b);
    }
    pub fn opt_str(&mut self, s: Option<&str>) {
        match s {
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
            None => self.u8(0),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }
    pub fn at_end(&self) -> bool {
        self.pos == self.buf.len()
    }
    pub fn pos(&self) -> usize {
        self.pos
    }
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], LoadError> {
        let left = self.buf.len() - self.pos;
        if n > left {
            return Err(LoadError::Truncated {
                what,
                at: self.pos,
                need: n,
                have: left,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], LoadError> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    pub fn u8(&mut self, what: &'static str) -> Result<u8, LoadError> {
        Ok(self.arr::<1>(what)?[0])
    }
    pub fn u32(&mut self, what: &'static str) -> Result<u32, LoadError> {
        Ok(u32::from_le_bytes(self.arr(what)?))
    }
    pub fn u64(&mut self, what: &'static str) -> Result<u64, LoadError> {
        Ok(u64::from_le_bytes(self.arr(what)?))
    }
    pub fn i64(&mut self, what: &'static str) -> Result<i64, LoadError> {
        Ok(i64::from_le_bytes(self.arr(what)?))
    }
    /// A finite `f64` (NaN and infinities are rejected: a baseline never holds them).
    pub fn f64(&mut self, what: &'static str) -> Result<f64, LoadError> {
        let v = f64::from_bits(self.u64(what)?);
        if v.is_finite() {
            Ok(v)
        } else {
            Err(LoadError::Invalid {
                what,
                at: self.pos - 8,
            })
        }
    }
    /// A count of items each at least `min_item` bytes long, checked against what is left.
    pub fn count(&mut self, min_item: usize, max: usize, what: &'static str) -> Result<usize, LoadError> {
        let at = self.pos;
        let n = self.u32(what)? as usize;
        let left = self.buf.len() - self.pos;
        if n > max || n.saturating_mul(min_item.max(1)) > left {
            return Err(LoadError::Invalid { what, at });
        }
        Ok(n)
    }
    pub fn str(&mut self, what: &'static str) -> Result<String, LoadError> {
        let at = self.pos;
        let n = self.u32(what)? as usize;
        let b = self.take(n, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| LoadError::Invalid { what, at })
    }
    pub fn opt_str(&mut self, what: &'static str) -> Result<Option<String>, LoadError> {
        let at = self.pos;
        match self.u8(what)? {
            0 => Ok(None),
            1 => Ok(Some(self.str(what)?)),
            _ => Err(LoadError::Invalid { what, at }),
        }
    }
}
