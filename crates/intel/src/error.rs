//! Errors of loading a database or table: each names the file, says what is wrong with it and
//! what the user can do.

use std::fmt;
use std::path::{Path, PathBuf};

/// A file that could not be used.
#[derive(Debug)]
pub struct LoadError {
    /// The file (or a description such as `<memory>` for data given as text).
    pub path: PathBuf,
    /// What went wrong.
    pub kind: LoadErrorKind,
}

/// What went wrong with a file.
#[derive(Debug)]
pub enum LoadErrorKind {
    /// It could not be read.
    Io(std::io::Error),
    /// A text file (CSV, TSV, list) has too many lines that do not parse; `line` is the first
    /// bad one (1-based), `bad` how many were bad out of `lines`.
    Text {
        line: usize,
        message: String,
        bad: usize,
        lines: usize,
    },
    /// The file holds no usable entry at all.
    Empty,
    /// A MaxMind DB file that is not valid.
    Mmdb(String),
    /// The file name does not say which format it is in.
    UnknownFormat,
}

impl LoadError {
    pub(crate) fn new(path: &Path, kind: LoadErrorKind) -> Self {
        LoadError {
            path: path.to_path_buf(),
            kind,
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.path.display();
        match &self.kind {
            LoadErrorKind::Io(e) => write!(f, "{p}: cannot read it: {e}"),
            LoadErrorKind::Text {
                line,
                message,
                bad,
                lines,
            } => write!(
                f,
                "{p}: line {line}: {message} ({bad} of {lines} lines do not parse); \
                 the file is damaged or not in the expected format: download it again"
            ),
            LoadErrorKind::Empty => write!(
                f,
                "{p}: no usable entry in the file; it is empty or not in the expected format"
            ),
            LoadErrorKind::Mmdb(m) => write!(
                f,
                "{p}: not a valid MaxMind DB file: {m}; download it again (a partial download \
                 or a .gz/.tar.gz that was not unpacked looks like this)"
            ),
            LoadErrorKind::UnknownFormat => write!(
                f,
                "{p}: unknown format; expected a .mmdb file, an ip-location-db ASN .csv or an \
                 iptoasn .tsv (unpack .gz files first)"
            ),
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            LoadErrorKind::Io(e) => Some(e),
            _ => None,
        }
    }
}
