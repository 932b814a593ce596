//! # store: where records rest
//!
//! Contract (to be filled by the history issue): SQLite by default (one embedded file, WAL mode,
//! migrations, a batched writer thread, retention), PostgreSQL behind the same traits for the
//! fleet server. Depends on `engine` for the record types it stores; never on `os` or the binary.
//!
//! Nothing is stored yet: `netvigil read` streams its records to stdout.
#![forbid(unsafe_code)]
