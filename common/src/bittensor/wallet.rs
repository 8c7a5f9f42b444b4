//! Loading a hotkey from a Bittensor wallet directory (`<path>/<wallet>/hotkeys/<hotkey>`),
//! reading the SDK's JSON keyfile the way `bittensor-wallet` does: `secretPhrase` first, then
//! `secretSeed`, then `privateKey`. A keyfile readable by group or others is refused.
//!
//! An encrypted (`$NACL`) keyfile is decrypted (see [`super::keyfile_crypto`]) with the password
//! from `[wallet] password` (or `SPLATFLEET__WALLET__PASSWORD`) or `[wallet] password_file`; a
//! missing or wrong password is a typed error naming the file and the fix. Key material, the
//! password and the decrypted JSON never appear in errors or logs and are wiped when dropped.

use std::{
    fs,
    io::Read as _,
    path::{Path, PathBuf},
};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{
    keyfile_crypto::{self, NaclError},
    keys::{Hotkey, KeyError},
};
use crate::config::WalletSettings;

/// Keyfiles are a few hundred bytes; anything far larger is not a keyfile.
const MAX_KEYFILE_BYTES: u64 = 64 * 1024;
/// A password file holds one password, not more.
const MAX_PASSWORD_FILE_BYTES: u64 = 4 * 1024;

/// Why a hotkey could not be loaded. Messages name the file and the fix, never the key.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    #[error("hotkey file {path} does not exist (check [wallet] path, name and hotkey)")]
    Missing { path: PathBuf },
    #[error("hotkey file {path} could not be read: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "hotkey file {path} is readable by group or others (mode {mode:03o}); \
         run `chmod 600 {path}` so only its owner can read it"
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("hotkey file {path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("hotkey file {path} is larger than {MAX_KEYFILE_BYTES} bytes; it is not a keyfile")]
    TooLarge { path: PathBuf },
    #[error(
        "hotkey file {path} is encrypted ($NACL) and no password was given; set the \
         SPLATFLEET__WALLET__PASSWORD environment variable, [wallet] password, or \
         [wallet] password_file (a mode-600 file holding the password)"
    )]
    PasswordMissing { path: PathBuf },
    #[error(
        "hotkey file {path} is encrypted ($NACL) and the password is wrong: it does not \
         decrypt the file (authentication failed; if the password is right, the file is corrupt)"
    )]
    WrongPassword { path: PathBuf },
    #[error("hotkey file {path} is encrypted ($NACL) but {reason}")]
    CorruptEncrypted { path: PathBuf, reason: String },
    #[error("wallet password file {path}: {problem}")]
    PasswordFile { path: PathBuf, problem: String },
    #[error("hotkey file {path} is not keyfile JSON: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("hotkey file {path} has none of secretPhrase, secretSeed, privateKey")]
    NoSecret { path: PathBuf },
    #[error("hotkey file {path}: field {field}: {source}")]
    BadKey {
        path: PathBuf,
        field: &'static str,
        source: KeyError,
    },
    #[error("hotkey file {path}: field {field} is not hex")]
    NotHex { path: PathBuf, field: &'static str },
    #[error(
        "hotkey file {path} gives address {derived} but its ss58Address says {declared}; \
         the file is inconsistent"
    )]
    AddressMismatch {
        path: PathBuf,
        derived: String,
        declared: String,
    },
}

/// The JSON keyfile fields splatfleet reads. Secrets stay wrapped until used.
#[derive(Deserialize)]
struct Keyfile {
    #[serde(rename = "secretPhrase", default)]
    secret_phrase: Option<SecretString>,
    #[serde(rename = "secretSeed", default)]
    secret_seed: Option<SecretString>,
    #[serde(rename = "privateKey", default)]
    private_key: Option<SecretString>,
    #[serde(rename = "ss58Address", default)]
    ss58_address: Option<String>,
}

/// `<path>/<name>/hotkeys/<hotkey>`, with a leading `~/` expanded from `$HOME`.
pub fn hotkey_path(settings: &WalletSettings) -> PathBuf {
    expand_home(&settings.path)
        .join(&settings.name)
        .join("hotkeys")
        .join(&settings.hotkey)
}

fn expand_home(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path.to_path_buf(),
    }
}

/// Loads the hotkey the `[wallet]` settings name, decrypting a `$NACL` keyfile with the
/// configured password (the password file is read only when the keyfile is encrypted).
pub fn load_hotkey(settings: &WalletSettings) -> Result<Hotkey, WalletError> {
    let path = hotkey_path(settings);
    let bytes = read_private_file(&path, MAX_KEYFILE_BYTES)?;
    if !keyfile_crypto::is_nacl(&bytes) {
        return parse_keyfile(&path, &bytes);
    }
    let password = match (&settings.password, &settings.password_file) {
        (Some(password), _) => password.clone(),
        (None, Some(file)) => read_password_file(&expand_home(file))?,
        (None, None) => return Err(WalletError::PasswordMissing { path }),
    };
    parse_keyfile_with_password(&path, &bytes, Some(&password))
}

/// Loads a hotkey from one unencrypted keyfile (an encrypted one is
/// [`WalletError::PasswordMissing`]).
pub fn load_hotkey_file(path: &Path) -> Result<Hotkey, WalletError> {
    load_hotkey_file_with_password(path, None)
}

/// Loads a hotkey from one keyfile, decrypting it with `password` if it is `$NACL`-encrypted.
pub fn load_hotkey_file_with_password(
    path: &Path,
    password: Option<&SecretString>,
) -> Result<Hotkey, WalletError> {
    let bytes = read_private_file(path, MAX_KEYFILE_BYTES)?;
    parse_keyfile_with_password(path, &bytes, password)
}

/// Reads a password file: mode 600, at most 4 KiB, UTF-8; one trailing `\n` or `\r\n` is
/// dropped.
fn read_password_file(path: &Path) -> Result<SecretString, WalletError> {
    let problem = |problem: String| WalletError::PasswordFile {
        path: path.to_path_buf(),
        problem,
    };
    let bytes = read_private_file(path, MAX_PASSWORD_FILE_BYTES).map_err(|e| match e {
        WalletError::Missing { .. } => problem("does not exist".into()),
        WalletError::TooOpen { mode, .. } => problem(format!(
            "is readable by group or others (mode {mode:03o}); run `chmod 600 {}`",
            path.display()
        )),
        WalletError::TooLarge { .. } => {
            problem(format!("is larger than {MAX_PASSWORD_FILE_BYTES} bytes"))
        }
        WalletError::NotAFile { .. } => problem("is not a regular file".into()),
        WalletError::Unreadable { source, .. } => problem(format!("could not be read: {source}")),
        other => other,
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let mut bytes = e.into_bytes();
        zeroize::Zeroize::zeroize(&mut bytes);
        problem("is not UTF-8".into())
    })?;
    let mut text = zeroize::Zeroizing::new(text);
    for ending in ["\r\n", "\n"] {
        if text.ends_with(ending) {
            let keep = text.len() - ending.len();
            text.truncate(keep);
            break;
        }
    }
    Ok(SecretString::from(text.as_str()))
}

fn read_private_file(path: &Path, max_bytes: u64) -> Result<Vec<u8>, WalletError> {
    let meta = fs::metadata(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => WalletError::Missing {
            path: path.to_path_buf(),
        },
        _ => WalletError::Unreadable {
            path: path.to_path_buf(),
            source,
        },
    })?;
    if !meta.is_file() {
        return Err(WalletError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    check_permissions(path, &meta)?;
    if meta.len() > max_bytes {
        return Err(WalletError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let mut bytes = Vec::new();
    fs::File::open(path)
        .and_then(|f| f.take(max_bytes + 1).read_to_end(&mut bytes))
        .map_err(|source| WalletError::Unreadable {
            path: path.to_path_buf(),
            source,
        })?;
    if bytes.len() as u64 > max_bytes {
        return Err(WalletError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
}

#[cfg(unix)]
fn check_permissions(path: &Path, meta: &fs::Metadata) -> Result<(), WalletError> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(WalletError::TooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_path: &Path, _meta: &fs::Metadata) -> Result<(), WalletError> {
    Ok(())
}

/// Parses unencrypted keyfile bytes (already read) into a hotkey; `$NACL` bytes are
/// [`WalletError::PasswordMissing`].
pub fn parse_keyfile(path: &Path, bytes: &[u8]) -> Result<Hotkey, WalletError> {
    parse_keyfile_with_password(path, bytes, None)
}

/// Parses keyfile bytes (already read) into a hotkey, decrypting `$NACL` bytes with
/// `password`.
pub fn parse_keyfile_with_password(
    path: &Path,
    bytes: &[u8],
    password: Option<&SecretString>,
) -> Result<Hotkey, WalletError> {
    let path_buf = || path.to_path_buf();
    if !keyfile_crypto::is_nacl(bytes) {
        return parse_json_keyfile(path, bytes);
    }
    let password = password.ok_or_else(|| WalletError::PasswordMissing { path: path_buf() })?;
    let plain = keyfile_crypto::decrypt_nacl(bytes, password).map_err(|e| match e {
        NaclError::WrongPassword => WalletError::WrongPassword { path: path_buf() },
        other => WalletError::CorruptEncrypted {
            path: path_buf(),
            reason: other.to_string(),
        },
    })?;
    if keyfile_crypto::is_nacl(&plain) {
        return Err(WalletError::CorruptEncrypted {
            path: path_buf(),
            reason: "it decrypts to another $NACL box".into(),
        });
    }
    parse_json_keyfile(path, &plain)
}

fn parse_json_keyfile(path: &Path, bytes: &[u8]) -> Result<Hotkey, WalletError> {
    let path_buf = || path.to_path_buf();
    let keyfile: Keyfile = serde_json::from_slice(bytes).map_err(|e| WalletError::Malformed {
        path: path_buf(),
        // serde_json errors name a position and a kind, never the value.
        reason: format!(
            "{} at line {} column {}",
            classify(&e),
            e.line(),
            e.column()
        ),
    })?;
    let hotkey = if let Some(phrase) = &keyfile.secret_phrase {
        Hotkey::from_phrase(phrase.expose_secret()).map_err(|source| WalletError::BadKey {
            path: path_buf(),
            field: "secretPhrase",
            source,
        })?
    } else if let Some(seed) = &keyfile.secret_seed {
        from_hex_field(path, "secretSeed", seed)?
    } else if let Some(key) = &keyfile.private_key {
        from_hex_field(path, "privateKey", key)?
    } else {
        return Err(WalletError::NoSecret { path: path_buf() });
    };
    if let Some(declared) = keyfile.ss58_address {
        if declared != hotkey.ss58() {
            return Err(WalletError::AddressMismatch {
                path: path_buf(),
                derived: hotkey.ss58().to_owned(),
                declared,
            });
        }
    }
    Ok(hotkey)
}

fn classify(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected field type",
        serde_json::error::Category::Eof => "unexpected end",
    }
}

fn from_hex_field(
    path: &Path,
    field: &'static str,
    value: &SecretString,
) -> Result<Hotkey, WalletError> {
    let text = value.expose_secret();
    let text = text.strip_prefix("0x").unwrap_or(text);
    let bytes = hex::decode(text).map_err(|_| WalletError::NotHex {
        path: path.to_path_buf(),
        field,
    })?;
    let bytes = zeroize_on_drop(bytes);
    Hotkey::from_seed_bytes(&bytes.0).map_err(|source| WalletError::BadKey {
        path: path.to_path_buf(),
        field,
        source,
    })
}

/// Overwrites decoded secret bytes when they go out of scope.
struct Wiped(Vec<u8>);

impl Drop for Wiped {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        self.0.zeroize();
    }
}

fn zeroize_on_drop(bytes: Vec<u8>) -> Wiped {
    Wiped(bytes)
}

/// Writes an unencrypted keyfile for a 32-byte seed the way `bittensor-wallet` lays it out,
/// with mode 600 (used by the simulated validators and tests).
pub fn write_seed_keyfile(path: &Path, seed: &[u8; 32]) -> std::io::Result<Hotkey> {
    let hotkey = Hotkey::from_seed_bytes(seed)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    let public = format!("0x{}", hex::encode(hotkey.public_key()));
    let json = serde_json::json!({
        "accountId": public,
        "publicKey": public,
        "secretSeed": format!("0x{}", hex::encode(seed)),
        "ss58Address": hotkey.ss58(),
    });
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    write_private(path, json.to_string().as_bytes())?;
    Ok(hotkey)
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    fs::write(path, bytes)
}
