//! `netvigil config` as a user runs it: the default file under XDG_CONFIG_HOME, `--config`,
//! errors with the line and key, and `--print` whose output is a config file that prints the
//! same again.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("netvigil-config-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs netvigil with a clean environment for the config lookups.
fn netvigil(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netvigil"))
        .args(args)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"))
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn print_round_trips_and_the_default_file_is_read() {
    let home = tempdir("print");
    // No file: every default, with the data folder from XDG_DATA_HOME.
    let out = netvigil(&home, &["config", "--print"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let defaults = text(&out.stdout);
    let data_dir = format!("data_dir = \"{}\"", home.join("data/netvigil").display());
    assert!(defaults.contains(&data_dir), "{defaults}");
    for want in [
        "listen = \"127.0.0.1:8077\"",
        "payload_sample_bytes = 0",
        "dedup_window = \"10m\"",
        "preset = \"json\"",
        "socket = \"/dev/log\"",
    ] {
        assert!(defaults.contains(want), "{want} in\n{defaults}");
    }
    // The printed text is a config file that prints the same again.
    let file = home.join("printed.toml");
    std::fs::write(&file, &defaults).unwrap();
    let again = netvigil(&home, &["--config", file.to_str().unwrap(), "config", "--print"]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(text(&again.stdout), defaults);

    // A file in the default place is read: its values show in --print.
    std::fs::create_dir_all(home.join("config/netvigil")).unwrap();
    std::fs::write(
        home.join("config/netvigil/config.toml"),
        "[alerts]\ndedup_window = \"1h30m\"\n[notify.webhook]\nurl = \"http://127.0.0.1:9/h\"\npreset = \"ntfy\"\n",
    )
    .unwrap();
    let out = netvigil(&home, &["config", "--print"]);
    let printed = text(&out.stdout);
    assert!(printed.contains("dedup_window = \"1h30m\""), "{printed}");
    assert!(
        printed.contains("url = \"http://127.0.0.1:9/h\"\npreset = \"ntfy\""),
        "{printed}"
    );
    std::fs::write(&file, &printed).unwrap();
    let again = netvigil(&home, &["config", "--print", "--config", file.to_str().unwrap()]);
    assert_eq!(
        text(&again.stdout),
        printed,
        "the global --config may come after the subcommand"
    );
    let check = netvigil(&home, &["config"]);
    assert!(check.status.success());
    assert!(
        text(&check.stderr).contains("config.toml is valid"),
        "{}",
        text(&check.stderr)
    );
    let _ = std::fs::remove_dir_all(home);
}

#[test]
fn bad_files_fail_with_the_line_and_the_key() {
    let home = tempdir("bad");
    let file = home.join("bad.toml");
    std::fs::write(
        &file,
        "# netvigil\n[capture]\npoll_ms = 1000\n\n[alerts]\ndedup_window = \"soon\"\nsnooze_all = true\n",
    )
    .unwrap();
    let out = netvigil(&home, &["--config", file.to_str().unwrap(), "config"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "{} line 6: alerts.dedup_window: expected a duration like \"10m\" (units: ms, s, m, h, d), got \"soon\"",
            file.display()
        )),
        "{err}"
    );
    assert!(err.contains("line 7: alerts.snooze_all: unknown key"), "{err}");
    assert!(out.stdout.is_empty());

    // --config naming a missing file is an error; the default file missing is not.
    let missing = home.join("nope.toml");
    let out = netvigil(
        &home,
        &["--config", missing.to_str().unwrap(), "config", "--print"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("nope.toml: no such file"),
        "{}",
        text(&out.stderr)
    );
    let out = netvigil(&home, &["config"]);
    assert!(out.status.success());
    assert!(
        text(&out.stderr).contains("(every default applies)"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(home);
}
