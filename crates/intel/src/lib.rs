//! # intel: what is known about a remote end
//!
//! Implements `engine::enrich`'s traits from local data: place and owner databases (MaxMind
//! GeoLite2 and DB-IP mmdb, ip-location-db CSV and mmdb, iptoasn TSV), the shipped domain
//! category table with user additions and an optional tracker list, and /etc/services.
//! Reads files; opens no sockets; no `unsafe`.
#![forbid(unsafe_code)]
