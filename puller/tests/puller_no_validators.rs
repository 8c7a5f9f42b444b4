//! A puller whose discovery can never yield a validator (the default `source = "static"` with
//! an empty list) refuses to start with exit status 78 and a message naming the keys, instead
//! of sitting idle.

use std::{path::Path, process::Command};

const PULLER: &str = env!("CARGO_BIN_EXE_splatfleet-puller");

/// Runs the puller on `config_text` and returns its exit code and stderr. The refusal comes
/// before any connection, so no broker or database is needed.
fn run_puller(dir: &Path, config_text: &str) -> (Option<i32>, String) {
    let path = dir.join("splatfleet.toml");
    std::fs::write(&path, config_text).expect("write config");
    let output = Command::new(PULLER)
        .arg("--config")
        .arg(&path)
        .env_remove("SPLATFLEET_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .expect("run the puller");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_static_discovery_without_validators_is_refused_naming_the_keys() {
    let dir = tempfile::tempdir().expect("temp dir");
    let empty_file = dir.path().join("validators.toml");
    std::fs::write(&empty_file, "# no validators yet\n").expect("write validators file");
    let cases = [
        ("the default config".to_owned(), String::new()),
        (
            "static, empty inline list".to_owned(),
            "[discovery]\nsource = \"static\"\nvalidators = []\n".to_owned(),
        ),
        (
            "static, empty validators_file".to_owned(),
            format!(
                "[discovery]\nsource = \"static\"\nvalidators_file = {:?}\n",
                empty_file.display().to_string()
            ),
        ),
    ];
    for (case, text) in cases {
        let (code, stderr) = run_puller(dir.path(), &text);
        assert_eq!(code, Some(78), "{case}: {stderr}");
        for key in [
            "discovery.source",
            "discovery.validators",
            "discovery.validators_file",
        ] {
            assert!(
                stderr.contains(key),
                "{case}: does not name {key}: {stderr}"
            );
        }
        assert!(!stderr.contains("panicked"), "{case}: {stderr}");
    }
}

#[test]
fn an_unreadable_validators_file_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("absent.toml");
    let (code, stderr) = run_puller(
        dir.path(),
        &format!(
            "[discovery]\nvalidators_file = {:?}\n",
            missing.display().to_string()
        ),
    );
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("discovery.validators_file"), "{stderr}");
    assert!(stderr.contains("absent.toml"), "{stderr}");
}

/// A hotkey that cannot be loaded is found at start, not when the first validator is (which
/// was exit 1 and a restart every few seconds under systemd): exit 78 naming the file.
#[test]
fn a_missing_hotkey_is_refused_at_start_naming_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let wallets = dir.path().join("no-such-wallets");
    let text = format!(
        "[wallet]\npath = {:?}\nname = \"miner\"\nhotkey = \"default\"\n\n\
         [[discovery.validators]]\nuid = 0\nhotkey = \"5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty\"\n\
         ip = \"127.0.0.1\"\nport = 9\nstake = 25000.0\n",
        wallets.display().to_string()
    );
    let (code, stderr) = run_puller(dir.path(), &text);
    assert_eq!(code, Some(78), "{stderr}");
    let file = wallets.join("miner").join("hotkeys").join("default");
    assert!(
        stderr.contains(&file.display().to_string()) && stderr.contains("does not exist"),
        "does not name the hotkey file: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
