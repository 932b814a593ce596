//! # intel: what is known about a remote end
//!
//! Implements `engine::enrich`'s traits from local data: place and owner databases (MaxMind
//! GeoLite2 and DB-IP mmdb, ip-location-db CSV and mmdb, iptoasn TSV), the shipped domain
//! category table with user additions and an optional tracker list, and /etc/services; and
//! parses RDAP answers (the fetching is the caller's). Reads files; opens no sockets; no
//! `unsafe`.
//!
//! What the binary does: `discover(&default_dirs(config_dir))` then `Discovery::load(extra)`
//! gives a [`Places`] ([`engine::enrich::GeoLookup`]); [`DomainTable::shipped`] plus
//! [`DomainTable::add_user`] and [`DomainTable::load_tracker_list`] gives the
//! [`engine::enrich::DomainLabels`]; [`ServiceNames::system`] the [`engine::enrich::Services`];
//! [`OuiTable::system`] the MAC vendors of gateway mode ([`engine::lan::MacVendors`]).
//! Sources, licences and file names: docs/enrichment.md.
#![forbid(unsafe_code)]

pub mod domains;
pub mod error;
mod json;
pub mod mmdb;
pub mod oui;
pub mod places;
pub mod ranges;
pub mod rdap;
pub mod services;

pub use domains::DomainTable;
pub use error::{LoadError, LoadErrorKind};
pub use mmdb::MmdbDb;
pub use oui::{MacVendor, OuiTable};
pub use places::{Discovery, HOW_TO_GET, KNOWN_FILES, Places, Source, default_dirs, discover};
pub use ranges::{RangeDb, TextFormat};
pub use services::ServiceNames;
