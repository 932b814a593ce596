//! Helpers shared by the integration tests of the `netvigil` binary.
#![allow(dead_code)] // each test file uses its own subset

pub mod fleet;
pub mod netns;
pub mod pinned;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The shared captures (../shared/pcaps beside the checkout). Panics when they are missing and
/// CI=true; otherwise returns None so a developer without them sees a note, not a failure.
pub fn shared_pcaps() -> Option<PathBuf> {
    let dir = std::env::var_os("NETVIGIL_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
        .join("pcaps");
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "{} is missing: CI must run with ../shared beside the checkout",
            dir.display()
        );
    }
    eprintln!("note: {} is missing; skipping this test", dir.display());
    None
}

/// Every capture in the shared folder, sorted.
pub fn shared_captures(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read shared pcaps")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            let n = p.to_string_lossy();
            n.ends_with(".pcap") || n.ends_with(".pcapng") || n.ends_with(".cap")
        })
        .collect();
    v.sort();
    assert!(
        v.len() >= 70,
        "expected the 78 shared captures in {}, found {}",
        dir.display(),
        v.len()
    );
    v
}

pub fn netvigil() -> Command {
    Command::new(env!("CARGO_BIN_EXE_netvigil"))
}

pub fn run(args: &[&str]) -> Output {
    netvigil().args(args).output().expect("run netvigil")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fresh temporary directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("netvigil-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create temp dir");
    d
}

/// Minimal JSON field extraction for flat records (the tests avoid a JSON dependency):
/// the number after `"key":` at its first occurrence after `from`.
pub fn json_u64(line: &str, key: &str) -> Option<u64> {
    let pat = format!("\"{key}\":");
    let at = line.find(&pat)? + pat.len();
    let digits: String = line[at..].chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}
