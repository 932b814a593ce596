//! RDAP answers and the IANA bootstrap file are read with the workspace's one JSON reader
//! (`engine::json_read`: RFC 8259, nesting capped, never panics); this names it for `rdap`.

pub(crate) use engine::json_read::Value as Json;

/// Parses a whole document.
pub(crate) fn parse(text: &str) -> Result<Json<'_>, String> {
    engine::json_read::parse(text).map_err(|e| e.to_string())
}
