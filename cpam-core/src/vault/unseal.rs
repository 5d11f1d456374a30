//! The server's unseal secret: the key file `vault.key` (32 random bytes,
//! hex or raw, mode 0600) or a passphrase from [`PASSPHRASE_ENV`].

use std::path::{Path, PathBuf};

use super::crypto::{self, KEY_LEN, Key};
use crate::error::{Error, ErrorKind, Result};
use crate::secret::Secret;

/// The environment variable holding the vault's passphrase; when set, it
/// unseals the vault instead of the key file.
pub const PASSPHRASE_ENV: &str = "CPAM_VAULT_PASSPHRASE";

pub(super) const KEY_FILE: &str = "key_file";
pub(super) const PASSPHRASE: &str = "passphrase";

/// What unseals the vault: the key-encryption key comes from it.
#[derive(Debug, Clone)]
pub enum UnsealSecret {
    /// A key file's 32 bytes.
    KeyFile { path: PathBuf, key: Key },
    /// A passphrase, stretched with Argon2id and the vault's stored salt.
    Passphrase(Secret<String>),
}

impl UnsealSecret {
    /// Reads the key file at `path`: 64 hex digits (one line) or 32 raw
    /// bytes. Errors name the file and never quote it.
    pub fn key_file(path: &Path) -> Result<UnsealSecret> {
        let bytes = Secret::new(std::fs::read(path).map_err(|e| {
            let kind = if e.kind() == std::io::ErrorKind::NotFound {
                ErrorKind::NotFound
            } else {
                ErrorKind::Io
            };
            Error::new(
                kind,
                format!("cannot read the vault key file {}: {e}", path.display()),
            )
        })?);
        let raw = bytes.expose();
        let text = std::str::from_utf8(raw).map(str::trim).unwrap_or("");
        let key: [u8; KEY_LEN] = if text.len() == 2 * KEY_LEN {
            let decoded = Secret::new(hex::decode(text).map_err(|_| bad_key_file(path))?);
            decoded
                .expose()
                .as_slice()
                .try_into()
                .map_err(|_| bad_key_file(path))?
        } else if raw.len() == KEY_LEN {
            raw.as_slice().try_into().map_err(|_| bad_key_file(path))?
        } else {
            return Err(bad_key_file(path));
        };
        Ok(UnsealSecret::KeyFile {
            path: path.to_path_buf(),
            key: Secret::new(key),
        })
    }

    /// A passphrase (not empty).
    pub fn passphrase(passphrase: Secret<String>) -> Result<UnsealSecret> {
        if passphrase.expose().is_empty() {
            return Err(Error::invalid(format!(
                "the vault passphrase ({PASSPHRASE_ENV}) is empty"
            )));
        }
        Ok(UnsealSecret::Passphrase(passphrase))
    }

    /// The passphrase in [`PASSPHRASE_ENV`], when set.
    pub fn from_env() -> Option<Result<UnsealSecret>> {
        std::env::var(PASSPHRASE_ENV)
            .ok()
            .map(|p| UnsealSecret::passphrase(Secret::new(p)))
    }

    /// `key_file` or `passphrase`, as recorded with each data key.
    pub fn kind(&self) -> &'static str {
        match self {
            UnsealSecret::KeyFile { .. } => KEY_FILE,
            UnsealSecret::Passphrase(_) => PASSPHRASE,
        }
    }

    /// For messages: which file or variable.
    pub fn describe(&self) -> String {
        match self {
            UnsealSecret::KeyFile { path, .. } => format!("the key file {}", path.display()),
            UnsealSecret::Passphrase(_) => format!("the passphrase in {PASSPHRASE_ENV}"),
        }
    }

    /// The key-encryption key (`salt`: hex, for a passphrase).
    pub(super) async fn kek(&self, salt: Option<&str>) -> Result<Key> {
        match self {
            UnsealSecret::KeyFile { key, .. } => Ok(crypto::kek_from_file_key(key)),
            UnsealSecret::Passphrase(p) => {
                let salt = salt.ok_or_else(|| {
                    Error::new(
                        ErrorKind::Storage,
                        "a passphrase-sealed data key has no salt",
                    )
                })?;
                crypto::kek_from_passphrase(p, salt).await
            }
        }
    }
}

fn bad_key_file(path: &Path) -> Error {
    Error::invalid(format!(
        "the vault key file {} must hold {KEY_LEN} bytes: {} hex digits or the raw bytes",
        path.display(),
        2 * KEY_LEN
    ))
}

/// Creates a key file of 32 random bytes (hex, mode 0600) at `path`; refuses
/// to overwrite an existing file.
pub fn create_key_file(path: &Path) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let key = crypto::random_key();
    let line = Secret::new(format!("{}\n", hex::encode(key.expose())));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            let kind = if e.kind() == std::io::ErrorKind::AlreadyExists {
                ErrorKind::Conflict
            } else {
                ErrorKind::Io
            };
            Error::new(
                kind,
                format!("cannot create the vault key file {}: {e}", path.display()),
            )
        })?;
    f.write_all(line.expose().as_bytes())?;
    f.sync_all()?;
    Ok(())
}
