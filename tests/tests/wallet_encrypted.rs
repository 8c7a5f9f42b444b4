//! Encrypted (`$NACL`) hotkey files: keyfiles `bittensor-wallet` 4.1.1 encrypted
//! (`tests/fixtures/wallet/`) decrypt with the right password, from the config, its
//! environment override or a password file; a wrong, missing or unreadable password and a
//! truncated or altered file are typed errors that name the file and never the secrets.
//!
//! Each decryption runs argon2i over 512 MiB, so the cases share one test and run in turn.

use std::{fs, os::unix::fs::PermissionsExt as _, path::Path, path::PathBuf};

use secrecy::SecretString;
use splatfleet_common::{
    bittensor::{
        wallet::{load_hotkey, load_hotkey_file, load_hotkey_file_with_password, WalletError},
        Hotkey,
    },
    config::{Config, WalletSettings},
};

/// `hotkey_nacl_phrase`: Substrate's dev phrase.
const DEV_PHRASE_SS58: &str = "5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV";
/// `hotkey_nacl_seed`: seed `0xff…ff`, as btwallet reported it.
const SEED_FF_SS58: &str = "5Dh7jEmH8ZjVrYCQFqxHEi4oSuFR21V4xfAKfyuoQrGw95Yj";
const PASSWORD: &str = "splatfleet-test-password";

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/wallet")
        .join(name);
    fs::read(path).expect("read fixture")
}

fn write_private(path: &Path, bytes: &[u8]) -> PathBuf {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("mkdir");
    }
    fs::write(path, bytes).expect("write");
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod");
    path.to_path_buf()
}

/// The `[wallet]` settings of a config pointing at `dir`, with extra TOML and environment.
fn config(dir: &Path, wallet_toml: &str, env: Vec<(String, String)>) -> WalletSettings {
    let toml = format!(
        "[wallet]\npath = \"{}\"\nname = \"w\"\nhotkey = \"h\"\n{wallet_toml}",
        dir.display()
    );
    Config::from_toml_with_env(&toml, Path::new("t.toml"), env)
        .expect("config")
        .wallet
}

#[test]
fn btwallet_encrypted_hotkey_decrypts_and_failures_are_typed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = fixture("hotkey_nacl_phrase");
    assert!(bytes.starts_with(b"$NACL"));
    let keyfile = write_private(&dir.path().join("w/hotkeys/h"), &bytes);
    write_private(
        &dir.path().join("w/hotkeys/seed"),
        &fixture("hotkey_nacl_seed"),
    );

    // No password anywhere: a typed error saying how to supply one (no key derivation).
    let err = load_hotkey(&config(dir.path(), "", vec![])).expect_err("no password");
    assert!(
        matches!(&err, WalletError::PasswordMissing { path } if path == &keyfile),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("SPLATFLEET__WALLET__PASSWORD") && text.contains("password_file"));
    assert!(matches!(
        load_hotkey_file(&keyfile),
        Err(WalletError::PasswordMissing { .. })
    ));

    // Truncated inside the nonce/tag: refused before key derivation.
    let short = write_private(&dir.path().join("short"), &bytes[..30]);
    let err = load_hotkey_file_with_password(&short, Some(&SecretString::from(PASSWORD)))
        .expect_err("truncated");
    assert!(matches!(err, WalletError::CorruptEncrypted { .. }), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");

    // An unreadable password file is named, and the keyfile is not touched.
    let open_pw = dir.path().join("open-password");
    fs::write(&open_pw, PASSWORD).expect("write");
    fs::set_permissions(&open_pw, fs::Permissions::from_mode(0o644)).expect("chmod");
    let err = load_hotkey(&config(
        dir.path(),
        &format!("password_file = \"{}\"\n", open_pw.display()),
        vec![],
    ))
    .expect_err("open password file");
    assert!(
        matches!(&err, WalletError::PasswordFile { path, .. } if path == &open_pw),
        "{err}"
    );
    assert!(err.to_string().contains("chmod 600"), "{err}");

    // The right password, from the environment override: the dev phrase's address.
    let env = vec![(
        "SPLATFLEET__WALLET__PASSWORD".to_owned(),
        PASSWORD.to_owned(),
    )];
    let hotkey = load_hotkey(&config(dir.path(), "", env)).expect("decrypts");
    assert_eq!(hotkey.ss58(), DEV_PHRASE_SS58);

    // The right password, from a password file with a trailing newline; the seed keyfile.
    let pw_file = write_private(
        &dir.path().join("password"),
        format!("{PASSWORD}\r\n").as_bytes(),
    );
    let mut settings = config(
        dir.path(),
        &format!("password_file = \"{}\"\n", pw_file.display()),
        vec![],
    );
    settings.hotkey = "seed".into();
    let hotkey = load_hotkey(&settings).expect("decrypts");
    assert_eq!(hotkey.ss58(), SEED_FF_SS58);
    assert_eq!(
        hotkey.public_key(),
        Hotkey::from_seed_bytes(&[0xff; 32])
            .expect("seed")
            .public_key()
    );

    // A wrong password: typed, names the file, says the password is wrong, leaks nothing.
    let wrong = "not-the-password";
    let err = load_hotkey(&config(
        dir.path(),
        &format!("password = \"{wrong}\"\n"),
        vec![],
    ))
    .expect_err("wrong password");
    assert!(
        matches!(&err, WalletError::WrongPassword { path } if path == &keyfile),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("password is wrong"), "{text}");
    assert!(text.contains(&keyfile.display().to_string()), "{text}");
    assert!(!text.contains(wrong) && !format!("{err:?}").contains(wrong));

    // One altered ciphertext byte with the right password: authentication fails.
    let mut altered = bytes.clone();
    let last = altered.len() - 1;
    altered[last] ^= 1;
    let altered = write_private(&dir.path().join("altered"), &altered);
    let err = load_hotkey_file_with_password(&altered, Some(&SecretString::from(PASSWORD)))
        .expect_err("altered");
    assert!(matches!(err, WalletError::WrongPassword { .. }), "{err}");
    assert!(err.to_string().contains("corrupt"), "{err}");
}
