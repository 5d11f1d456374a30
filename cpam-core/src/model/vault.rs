//! The vault's plain data: what kind of credential a service holds, data
//! keys and encrypted credentials as stored, and checkouts.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

use super::{CheckoutId, CustomerId, ServiceId, Timestamp, UserId};

/// What kind of secret a credential carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    Password,
    /// An OpenSSH private key.
    PrivateKey,
}

impl CredentialKind {
    /// Every kind.
    pub const ALL: &'static [CredentialKind] =
        &[CredentialKind::Password, CredentialKind::PrivateKey];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Password => "password",
            CredentialKind::PrivateKey => "private_key",
        }
    }
}

impl fmt::Display for CredentialKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CredentialKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        CredentialKind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown credential kind `{s}` (expected password or private_key)"
                ))
            })
    }
}

/// One data key as stored: wrapped by the key-encryption key, never in clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultKeyRecord {
    /// Increases by one with every rotation.
    pub version: i64,
    /// Which unseal secret wrapped it: `key_file` or `passphrase`.
    pub kek: String,
    /// Hex of the passphrase's Argon2id salt (`passphrase` only).
    pub salt: Option<String>,
    /// Hex of nonce and ciphertext; `None` once the version is retired.
    pub wrapped: Option<String>,
    pub created_at: Timestamp,
    pub retired_at: Option<Timestamp>,
}

/// One service's credential as stored: the secret only encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCredential {
    pub service_id: ServiceId,
    pub username: String,
    pub kind: CredentialKind,
    /// The data key version it is encrypted under.
    pub key_version: i64,
    /// Hex of nonce and ciphertext.
    pub ciphertext: String,
    pub updated_at: Timestamp,
    pub updated_by: String,
}

/// How a checkout ended before it expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckoutEnd {
    /// The user checked the credential back in.
    CheckedIn,
    /// An administrator revoked it.
    Revoked,
}

impl CheckoutEnd {
    /// Every way a checkout ends early.
    pub const ALL: &'static [CheckoutEnd] = &[CheckoutEnd::CheckedIn, CheckoutEnd::Revoked];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckoutEnd::CheckedIn => "checked_in",
            CheckoutEnd::Revoked => "revoked",
        }
    }
}

impl FromStr for CheckoutEnd {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        CheckoutEnd::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| Error::invalid(format!("unknown checkout end `{s}`")))
    }
}

/// A user's time-limited right to have a service's credential injected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkout {
    pub id: CheckoutId,
    pub user_id: UserId,
    pub user_name: String,
    pub customer_id: CustomerId,
    pub service_id: ServiceId,
    pub service_name: String,
    pub started_at: Timestamp,
    /// When it ends unless checked in or revoked first.
    pub expires_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub end_reason: Option<CheckoutEnd>,
    /// Who checked it in or revoked it.
    pub ended_by: Option<String>,
}

impl Checkout {
    /// Whether it allows injection at `now`.
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.ended_at.is_none() && now < self.expires_at
    }

    /// `active`, `expired`, `checked_in` or `revoked` at `now`.
    pub fn status(&self, now: Timestamp) -> &'static str {
        match self.end_reason {
            Some(end) => end.as_str(),
            None if now < self.expires_at => "active",
            None => "expired",
        }
    }
}
