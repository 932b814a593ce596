//! `codesign -dvvv PATH` (macOS): who signed an executable, for the "unsigned" flag.
//!
//! codesign writes its display to standard error as `Key=Value` lines: `Identifier=`,
//! `Authority=` once per certificate of the chain (leaf first), `TeamIdentifier=` (`not set`
//! for Apple's own and ad-hoc signatures), `Signature=adhoc` for an ad-hoc signature. An
//! unsigned file gives `PATH: code object is not signed at all`.
//!
//! How a signature becomes [`engine::sockets::ProcessInfo::package`] (see
//! [`Signature::package`]), the macOS counterpart of "which dpkg/rpm package owns the exe":
//! - signed with a certificate: `Some("signed: TEAMID (Leaf Authority)")`, or `Some("signed:
//!   Apple (Software Signing)")` for Apple's platform binaries, which have no team;
//! - ad-hoc signed (no identity: what the linker puts on every Apple-silicon binary) or not
//!   signed: `None` ("unsigned"), with `package_checked = true`;
//! - codesign failed (file gone, no permission, timeout): not checked (`package_checked =
//!   false`), so no flag is raised on a guess.

/// The arguments netvigil gives codesign before the path.
pub const CODESIGN_ARGS: &[&str] = &["-dvvv"];

/// What codesign said about one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signature {
    Signed {
        identifier: Option<String>,
        /// `TeamIdentifier=`, `None` when "not set".
        team_id: Option<String>,
        /// The certificate chain, leaf first. Empty for ad-hoc signatures.
        authorities: Vec<String>,
        adhoc: bool,
    },
    /// "code object is not signed at all".
    Unsigned,
    /// codesign could not tell (its first line of output says why).
    Unknown(String),
}

impl Signature {
    /// `(package, package_checked)` for [`engine::sockets::ProcessInfo`] (see the module docs).
    pub fn package(&self) -> (Option<String>, bool) {
        match self {
            Signature::Signed {
                team_id,
                authorities,
                adhoc,
                ..
            } => {
                let Some(leaf) = authorities.first().filter(|_| !adhoc) else {
                    return (None, true);
                };
                let who = match team_id {
                    Some(t) => t.as_str(),
                    None if leaf == "Software Signing"
                        || authorities.iter().any(|a| a == "Apple Root CA") =>
                    {
                        "Apple"
                    }
                    None => "no team",
                };
                (Some(format!("signed: {who} ({leaf})")), true)
            }
            Signature::Unsigned => (None, true),
            Signature::Unknown(_) => (None, false),
        }
    }
}

/// Reads codesign's display (standard error; standard output may be appended, it is
/// normally empty).
pub fn parse_codesign(text: &str) -> Signature {
    let mut identifier = None;
    let mut team_id = None;
    let mut authorities = Vec::new();
    let mut adhoc = false;
    let mut any_key = false;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.ends_with("code object is not signed at all") {
            return Signature::Unsigned;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match key {
            "Identifier" => identifier = Some(value.to_string()),
            "TeamIdentifier" => {
                team_id = (value != "not set" && !value.is_empty()).then(|| value.to_string())
            }
            "Authority" => authorities.push(value.to_string()),
            "Signature" if value == "adhoc" => adhoc = true,
            "Executable" | "Format" | "CodeDirectory v" | "CDHash" | "Signature size" => {}
            _ => continue,
        }
        any_key = true;
    }
    if any_key && (identifier.is_some() || adhoc || !authorities.is_empty()) {
        Signature::Signed {
            identifier,
            team_id,
            authorities,
            adhoc,
        }
    } else {
        let first = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("no output");
        Signature::Unknown(first.chars().take(200).collect())
    }
}
