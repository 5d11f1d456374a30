//! Ed25519 keys in OpenSSH format, and their fingerprints.

use std::path::Path;

use russh::keys::ssh_key::{HashAlg, LineEnding};
use russh::keys::{Algorithm, PrivateKey, PublicKey};

use crate::error::{Error, Result};
use crate::secret::Secret;

/// A fresh Ed25519 key.
pub fn generate() -> Result<PrivateKey> {
    PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
        .map_err(|e| Error::internal(format!("cannot generate a key: {e}")))
}

/// The OpenSSH private-key text of `key`.
pub fn private_openssh(key: &PrivateKey) -> Result<Secret<String>> {
    let text = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| Error::internal(format!("cannot encode a key: {e}")))?;
    Ok(Secret::new(text.to_string()))
}

/// Parses OpenSSH private-key text; `what` names where it came from.
pub fn parse_private(text: &str, what: &str) -> Result<PrivateKey> {
    PrivateKey::from_openssh(text)
        .map_err(|e| Error::invalid(format!("{what}: not an OpenSSH private key: {e}")))
}

/// Parses one `ssh-ed25519 AAAA... [comment]` line; `what` names where it came from.
pub fn parse_public(text: &str, what: &str) -> Result<PublicKey> {
    PublicKey::from_openssh(text.trim())
        .map_err(|e| Error::invalid(format!("{what}: not an OpenSSH public key: {e}")))
}

/// `ssh-ed25519 AAAA...` without a comment.
pub fn public_openssh(key: &PublicKey) -> String {
    let mut k = key.clone();
    k.set_comment("");
    k.to_openssh().unwrap_or_default().trim().to_string()
}

/// `SHA256:...`, as OpenSSH prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Writes `key` to `path` with mode 0600.
pub fn save_private(key: &PrivateKey, path: &Path) -> Result<()> {
    let text = private_openssh(key)?;
    write_private_file(path, text.expose().as_bytes())
}

/// Reads a private key file.
pub fn load_private(path: &Path) -> Result<PrivateKey> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::from(e).context(&format!("cannot read key file {}", path.display())))?;
    parse_private(&text, &path.display().to_string())
}

/// Writes `bytes` to `path` with mode 0600, replacing it atomically.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| Error::from(e).context(&format!("cannot write {}", tmp.display())))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
        .map_err(|e| Error::from(e).context(&format!("cannot write {}", path.display())))?;
    Ok(())
}
