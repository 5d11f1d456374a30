//! Argon2id password hashes (PHC strings). Hashing runs off the async threads.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use crate::error::{Error, Result};
use crate::secret::Secret;

/// Hashes `password` with Argon2id and a random salt.
pub async fn hash(password: Secret<String>) -> Result<String> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.expose().as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| Error::internal(format!("cannot hash password: {e}")))
    })
    .await
    .map_err(|e| Error::internal(format!("password hashing task failed: {e}")))?
}

/// Whether `password` matches the PHC string `hash`.
pub async fn verify(password: &str, hash: &str) -> bool {
    let password = Secret::new(password.to_string());
    let hash = hash.to_string();
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .verify_password(password.expose().as_bytes(), hash.as_str())
            .is_ok()
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip() {
        let h = hash(Secret::new("correct horse".into()))
            .await
            .expect("hash");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse", &h).await);
        assert!(!verify("wrong", &h).await);
        assert!(!verify("x", "not a hash").await);
    }
}
