//! The vault's cryptography: XChaCha20-Poly1305 sealing with associated
//! data, key-encryption keys from a key file or a passphrase (Argon2id), and
//! the associated data that binds each ciphertext to its row.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

use crate::error::{Error, ErrorKind, Result};
use crate::model::{CredentialKind, ServiceId};
use crate::secret::Secret;

/// Length of data keys and key-encryption keys.
pub(crate) const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
/// Length of a passphrase's Argon2id salt.
pub(crate) const SALT_LEN: usize = 16;

/// A 256-bit key, zeroized when dropped.
pub(crate) type Key = Secret<[u8; KEY_LEN]>;

/// A fresh random key.
pub(crate) fn random_key() -> Key {
    use rand::RngExt as _;
    Secret::new(rand::rng().random())
}

/// A fresh random salt, hex.
pub(crate) fn random_salt() -> String {
    use rand::RngExt as _;
    let salt: [u8; SALT_LEN] = rand::rng().random();
    hex::encode(salt)
}

/// Encrypts `plaintext` under `key` bound to `aad`: hex of nonce and ciphertext.
pub(crate) fn seal(key: &Key, aad: &[u8], plaintext: &[u8]) -> Result<String> {
    use rand::RngExt as _;
    let cipher = XChaCha20Poly1305::new_from_slice(key.expose())
        .map_err(|_| Error::internal("vault key has the wrong length"))?;
    let nonce_bytes: [u8; NONCE_LEN] = rand::rng().random();
    let nonce = XNonce::from(nonce_bytes);
    let ciphertext = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| Error::internal("vault encryption failed"))?;
    let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
    out.extend_from_slice(&nonce_bytes);
    out.extend_from_slice(&ciphertext);
    Ok(hex::encode(out))
}

/// Decrypts what [`seal`] made with the same key and `aad`; `what` names the
/// row in the error. A changed byte, another key or another row's
/// associated data all fail the same way.
pub(crate) fn open(key: &Key, aad: &[u8], sealed: &str, what: &str) -> Result<Secret<Vec<u8>>> {
    let refused = || {
        Error::new(
            ErrorKind::Storage,
            format!(
                "{what} cannot be decrypted: it was altered, moved from another row, or sealed with another key"
            ),
        )
    };
    let bytes = hex::decode(sealed).map_err(|_| refused())?;
    if bytes.len() < NONCE_LEN {
        return Err(refused());
    }
    let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
    let nonce = XNonce::try_from(nonce).map_err(|_| refused())?;
    let cipher = XChaCha20Poly1305::new_from_slice(key.expose())
        .map_err(|_| Error::internal("vault key has the wrong length"))?;
    cipher
        .decrypt(
            &nonce,
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map(Secret::new)
        .map_err(|_| refused())
}

/// A 32-byte key from decrypted bytes.
pub(crate) fn key_from(bytes: &Secret<Vec<u8>>, what: &str) -> Result<Key> {
    let array: [u8; KEY_LEN] = bytes.expose().as_slice().try_into().map_err(|_| {
        Error::new(
            ErrorKind::Storage,
            format!("{what} does not hold a {KEY_LEN}-byte key"),
        )
    })?;
    Ok(Secret::new(array))
}

/// The associated data of data key `version` wrapped by the key-encryption key.
pub(crate) fn data_key_aad(version: i64) -> Vec<u8> {
    format!("cpam-vault/data-key/v{version}").into_bytes()
}

/// The associated data of a credential: its service, the data key version,
/// its kind and username, so no ciphertext decrypts in another row.
pub(crate) fn credential_aad(
    service: &ServiceId,
    version: i64,
    kind: CredentialKind,
    username: &str,
) -> Vec<u8> {
    format!(
        "cpam-vault/credential/{service}/v{version}/{}/{}:{username}",
        kind.as_str(),
        username.len()
    )
    .into_bytes()
}

/// The key-encryption key of a key file's 32 bytes (domain-separated).
pub(crate) fn kek_from_file_key(file_key: &Key) -> Key {
    let mut h = Sha256::new();
    h.update(b"cpam-vault-kek\0");
    h.update(file_key.expose());
    Secret::new(h.finalize().into())
}

/// The key-encryption key of a passphrase and its salt (Argon2id, off the
/// async threads).
pub(crate) async fn kek_from_passphrase(
    passphrase: &Secret<String>,
    salt_hex: &str,
) -> Result<Key> {
    let salt = hex::decode(salt_hex)
        .map_err(|_| Error::new(ErrorKind::Storage, "stored vault salt is not hex"))?;
    let passphrase = passphrase.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = [0u8; KEY_LEN];
        argon2::Argon2::default()
            .hash_password_into(passphrase.expose().as_bytes(), &salt, &mut out)
            .map_err(|e| Error::internal(format!("cannot derive the vault key: {e}")))?;
        Ok(Secret::new(out))
    })
    .await
    .map_err(|e| Error::internal(format!("vault key derivation failed: {e}")))?
}
