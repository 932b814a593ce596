//! Gateway mode's set-up, shared by `run --gateway` and `read --gateway`: the LAN's prefixes
//! and the MAC vendor table (Debian's ieee-data when installed, else the built-in common
//! vendors), said once on stderr. The device tracking itself is `engine::lan`.

use std::sync::Arc;

use engine::lan::{LanConfig, Prefix};

/// The engine's LAN settings for these prefixes (empty: the private and link-local ranges).
pub fn lan_config(lan: &[Prefix]) -> LanConfig {
    let vendors = match intel::OuiTable::system() {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "gateway: using the built-in table of common MAC vendors");
            intel::OuiTable::embedded()
        }
    };
    let prefixes = if lan.is_empty() {
        Prefix::private_ranges()
    } else {
        lan.to_vec()
    };
    let names: Vec<String> = prefixes.iter().map(ToString::to_string).collect();
    let source = if vendors.sources.is_empty() {
        "the built-in table; install Debian's ieee-data for all of them".to_string()
    } else {
        let files: Vec<String> = vendors.sources.iter().map(|p| p.display().to_string()).collect();
        files.join(", ")
    };
    eprintln!(
        "netvigil: gateway mode: LAN devices on {} ({} MAC vendor prefixes from {source})",
        names.join(", "),
        vendors.len(),
    );
    LanConfig {
        prefixes,
        vendors: Some(Arc::new(vendors)),
        ..LanConfig::default()
    }
}
