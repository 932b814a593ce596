//! A tiny JSON object writer for records: fields in a fixed order, strings escaped per RFC 8259.
//! Hand-written to keep `engine` free of serialisation dependencies and the hot path cheap.

use std::fmt::{Display, Write as _};

use crate::record::{Endpoint, write_json_str, write_rfc3339};

/// Writes one JSON object into a `String`. Call [`Obj::end`] to close it.
pub struct Obj<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Obj<'a> {
    pub fn new(out: &'a mut String) -> Self {
        out.push('{');
        Self { out, first: true }
    }
    fn key(&mut self, k: &str) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        self.out.push('"');
        self.out.push_str(k);
        self.out.push_str("\":");
    }
    pub fn str(&mut self, k: &str, v: &str) -> &mut Self {
        self.key(k);
        write_json_str(self.out, v);
        self
    }
    pub fn opt_str(&mut self, k: &str, v: Option<&str>) -> &mut Self {
        match v {
            Some(v) => self.str(k, v),
            None => self.raw(k, "null"),
        }
    }
    pub fn num(&mut self, k: &str, v: impl Display) -> &mut Self {
        self.key(k);
        let _ = write!(self.out, "{v}");
        self
    }
    pub fn opt_num(&mut self, k: &str, v: Option<impl Display>) -> &mut Self {
        match v {
            Some(v) => self.num(k, v),
            None => self.raw(k, "null"),
        }
    }
    pub fn bool(&mut self, k: &str, v: bool) -> &mut Self {
        self.raw(k, if v { "true" } else { "false" })
    }
    pub fn raw(&mut self, k: &str, json: &str) -> &mut Self {
        self.key(k);
        self.out.push_str(json);
        self
    }
    pub fn time(&mut self, k: &str, nanos: i64) -> &mut Self {
        self.key(k);
        self.out.push('"');
        write_rfc3339(self.out, nanos);
        self.out.push('"');
        self
    }
    pub fn endpoint(&mut self, k: &str, e: &Endpoint) -> &mut Self {
        self.key(k);
        let _ = write!(self.out, "{{\"ip\":\"{}\",\"port\":{}}}", e.ip, e.port);
        self
    }
    pub fn strs<S: AsRef<str>>(&mut self, k: &str, items: impl IntoIterator<Item = S>) -> &mut Self {
        self.key(k);
        self.out.push('[');
        for (i, s) in items.into_iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            write_json_str(self.out, s.as_ref());
        }
        self.out.push(']');
        self
    }
    /// A nested array of objects, each written by `f`.
    pub fn objs<T>(&mut self, k: &str, items: &[T], mut f: impl FnMut(&mut Obj<'_>, &T)) -> &mut Self {
        self.key(k);
        self.out.push('[');
        for (i, it) in items.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            let mut o = Obj::new(self.out);
            f(&mut o, it);
            o.end();
        }
        self.out.push(']');
        self
    }
    pub fn end(&mut self) {
        self.out.push('}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_valid_json() {
        let mut s = String::new();
        Obj::new(&mut s)
            .str("a", "x\"y")
            .num("n", 3)
            .opt_str("o", None)
            .strs("l", ["p", "q"])
            .objs("in", &[1, 2], |o, n| {
                o.num("k", n);
            })
            .bool("b", true)
            .end();
        assert_eq!(
            s,
            r#"{"a":"x\"y","n":3,"o":null,"l":["p","q"],"in":[{"k":1},{"k":2}],"b":true}"#
        );
    }
}
