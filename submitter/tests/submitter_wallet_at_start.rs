//! A submitter whose hotkey cannot be loaded stops at start with exit status 78 naming the
//! file, before it connects anywhere or takes a result (it used to find out at its first
//! result, then stop with exit 1, which systemd restarts).

use std::process::Command;

#[test]
fn a_missing_hotkey_is_refused_at_start_naming_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let wallets = dir.path().join("no-such-wallets");
    let path = dir.path().join("splatfleet.toml");
    std::fs::write(
        &path,
        format!(
            "[wallet]\npath = {:?}\nname = \"miner\"\nhotkey = \"default\"\n",
            wallets.display().to_string()
        ),
    )
    .expect("write config");
    let output = Command::new(env!("CARGO_BIN_EXE_splatfleet-submitter"))
        .arg("--config")
        .arg(&path)
        .env_remove("SPLATFLEET_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .expect("run the submitter");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    let file = wallets.join("miner").join("hotkeys").join("default");
    assert!(
        stderr.contains(&file.display().to_string()) && stderr.contains("does not exist"),
        "does not name the hotkey file: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
