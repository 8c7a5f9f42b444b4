//! Keys and wallets: the sr25519 test vector, signing, SS58 checksums, keyfile loading rules.

use std::{fs, os::unix::fs::PermissionsExt as _, path::Path, path::PathBuf};

use splatfleet_common::bittensor::{
    ss58::{self, Ss58Error},
    wallet::{load_hotkey_file, WalletError},
    Hotkey, Verifier,
};

const SEED_ONES_SS58: &str = "5DtDLm5rQHShDqojQpsvcN8tRXHVFaecfDoRet1SU6BFD9Fi";
/// Substrate's development phrase, no derivation path.
const DEV_PHRASE: &str = "bottom drive obey lake curtain smoke basket hold race lonely fit walk";
const DEV_PHRASE_SS58: &str = "5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV";

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("splatfleet-{tag}-{}", uuid::Uuid::new_v4()));
    fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn write_keyfile(dir: &Path, name: &str, json: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, json).expect("write keyfile");
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
    path
}

#[test]
fn seed_of_ones_gives_the_published_address() {
    let hotkey = Hotkey::from_seed_bytes(&[0x11; 32]).expect("seed");
    assert_eq!(hotkey.ss58(), SEED_ONES_SS58);
    assert_eq!(
        ss58::decode_bittensor(SEED_ONES_SS58).expect("decode"),
        hotkey.public_key()
    );
}

#[test]
fn dev_phrase_gives_substrates_root_address() {
    let hotkey = Hotkey::from_phrase(DEV_PHRASE).expect("phrase");
    assert_eq!(hotkey.ss58(), DEV_PHRASE_SS58);
}

#[test]
fn sign_then_verify_and_tampered_message_fails() {
    let hotkey = Hotkey::from_seed_bytes(&[0x11; 32]).expect("seed");
    let verifier = Verifier::from_ss58(hotkey.ss58()).expect("verifier");
    let message = b"1733800000123456789.miner.validator.uuid.hash";
    let signature = hotkey.sign(message);
    assert!(verifier.verify(message, &signature).expect("well-formed"));
    assert!(verifier
        .verify_hex(message, &hotkey.sign_hex(message))
        .expect("hex"));
    let tampered = b"1733800000123456780.miner.validator.uuid.hash";
    assert!(!verifier.verify(tampered, &signature).expect("well-formed"));
    let mut flipped = signature;
    flipped[10] ^= 1;
    assert!(!verifier.verify(message, &flipped).unwrap_or(false));
    let other = Verifier::from_ss58(DEV_PHRASE_SS58).expect("other");
    assert!(!other.verify(message, &signature).expect("well-formed"));
    assert!(verifier.verify(message, &signature[..63]).is_err());
}

#[test]
fn ss58_checksum_and_format_errors() {
    // Change one character: the checksum no longer matches.
    let mut chars: Vec<char> = SEED_ONES_SS58.chars().collect();
    chars[10] = if chars[10] == 'a' { 'b' } else { 'a' };
    let typo: String = chars.into_iter().collect();
    assert_eq!(ss58::decode(&typo), Err(Ss58Error::BadChecksum));
    assert_eq!(ss58::decode("0OIl"), Err(Ss58Error::NotBase58));
    assert!(matches!(
        ss58::decode(&SEED_ONES_SS58[..40]),
        Err(Ss58Error::BadLength(_))
    ));
    let polkadot = ss58::encode(&[0x11; 32], 0);
    assert_eq!(
        ss58::decode_bittensor(&polkadot),
        Err(Ss58Error::WrongPrefix {
            found: 0,
            expected: 42
        })
    );
}

#[test]
fn keyfile_priority_is_phrase_then_seed_then_private_key() {
    let dir = temp_dir("keyfile");
    let seed_ones = format!("0x{}", "11".repeat(32));
    let all = format!(
        r#"{{"secretPhrase": "{DEV_PHRASE}", "secretSeed": "{seed_ones}", "privateKey": null}}"#
    );
    let path = write_keyfile(&dir, "all", &all, 0o600);
    assert_eq!(
        load_hotkey_file(&path).expect("load").ss58(),
        DEV_PHRASE_SS58
    );

    let seed_only =
        format!(r#"{{"secretSeed": "{seed_ones}", "ss58Address": "{SEED_ONES_SS58}"}}"#);
    let path = write_keyfile(&dir, "seed", &seed_only, 0o600);
    assert_eq!(
        load_hotkey_file(&path).expect("load").ss58(),
        SEED_ONES_SS58
    );

    // A 64-byte privateKey as bittensor-wallet writes it (`to_raw_vec`: the secret key bytes).
    let reference = Hotkey::from_seed_bytes(&[0x22; 32]).expect("seed");
    let private = {
        use schnorrkel::{ExpansionMode, MiniSecretKey};
        let mini = MiniSecretKey::from_bytes(&[0x22; 32]).expect("mini");
        hex::encode(mini.expand(ExpansionMode::Ed25519).to_bytes())
    };
    let path = write_keyfile(
        &dir,
        "private",
        &format!(r#"{{"privateKey": "0x{private}"}}"#),
        0o600,
    );
    assert_eq!(
        load_hotkey_file(&path).expect("load").ss58(),
        reference.ss58()
    );
    fs::remove_dir_all(dir).ok();
}

#[test]
fn keyfile_refusals_name_the_problem() {
    let dir = temp_dir("refuse");
    let secret_hex = "11".repeat(32);
    let seed = format!(r#"{{"secretSeed": "0x{secret_hex}"}}"#);
    let open = write_keyfile(&dir, "open", &seed, 0o644);
    let err = load_hotkey_file(&open).expect_err("group-readable");
    assert!(
        matches!(err, WalletError::TooOpen { mode: 0o644, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("chmod 600"));

    let nacl = write_keyfile(&dir, "nacl", "$NACLxxxxxxxxxxxxxxxxxxxxxxxx", 0o600);
    assert!(matches!(
        load_hotkey_file(&nacl),
        Err(WalletError::PasswordMissing { .. })
    ));

    let empty = write_keyfile(&dir, "empty", r#"{"ss58Address": "x"}"#, 0o600);
    assert!(matches!(
        load_hotkey_file(&empty),
        Err(WalletError::NoSecret { .. })
    ));

    let mismatch = write_keyfile(
        &dir,
        "mismatch",
        &format!(r#"{{"secretSeed": "0x{secret_hex}", "ss58Address": "{DEV_PHRASE_SS58}"}}"#),
        0o600,
    );
    assert!(matches!(
        load_hotkey_file(&mismatch),
        Err(WalletError::AddressMismatch { .. })
    ));

    let truncated = format!("{{\"secretSeed\": \"{secret_hex}");
    let garbage = write_keyfile(&dir, "garbage", &truncated, 0o600);
    let err = load_hotkey_file(&garbage).expect_err("truncated JSON");
    assert!(
        !err.to_string().contains(&secret_hex),
        "error leaks the secret: {err}"
    );

    assert!(matches!(
        load_hotkey_file(&dir.join("absent")),
        Err(WalletError::Missing { .. })
    ));
    let hotkey = load_hotkey_file(&write_keyfile(&dir, "ok", &seed, 0o600)).expect("load");
    assert!(!format!("{hotkey:?}").contains(&secret_hex));
    fs::remove_dir_all(dir).ok();
}

#[test]
fn keyfiles_with_a_non_hex_seed_or_of_megabytes_are_refused() {
    let dir = temp_dir("bad-input");
    let not_hex = write_keyfile(&dir, "not-hex", r#"{"secretSeed": "0xnothex"}"#, 0o600);
    assert!(
        matches!(
            load_hotkey_file(&not_hex),
            Err(WalletError::NotHex {
                field: "secretSeed",
                ..
            })
        ),
        "a seed that is not hex"
    );
    let huge = format!(r#"{{"secretSeed": "0x{}"}}"#, "ab".repeat(1 << 20));
    let huge = write_keyfile(&dir, "huge", &huge, 0o600);
    let err = load_hotkey_file(&huge).expect_err("a 2 MB keyfile");
    assert!(matches!(err, WalletError::TooLarge { .. }), "{err:?}");
    assert!(err.to_string().contains("huge"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
