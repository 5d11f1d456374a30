//! Plain data: ids, the objects cpam manages, and named permissions.
//!
//! No I/O and no clock: times are [`Timestamp`]s handed in by the caller.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

mod activity;
mod console;
mod directory;
mod roles;
mod vault;

pub use activity::*;
pub use console::*;
pub use directory::*;
pub use roles::*;
pub use vault::*;

/// Milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Self {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }

    /// Milliseconds since the epoch.
    pub fn millis(self) -> i64 {
        self.0
    }

    /// This time plus `d` (saturating).
    #[expect(
        clippy::should_implement_trait,
        reason = "saturating and takes a std Duration, unlike `Add`"
    )]
    pub fn add(self, d: std::time::Duration) -> Self {
        Timestamp(
            self.0
                .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    /// The duration from `self` until `later`, zero if `later` is earlier.
    pub fn until(self, later: Timestamp) -> std::time::Duration {
        std::time::Duration::from_millis(u64::try_from(later.0 - self.0).unwrap_or(0))
    }

    /// RFC 3339, UTC, millisecond precision.
    pub fn to_rfc3339(self) -> String {
        let nanos = i128::from(self.0) * 1_000_000;
        match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
            Ok(t) => t
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|_| self.0.to_string()),
            Err(_) => self.0.to_string(),
        }
    }

    /// Parses RFC 3339 (`2026-11-23T10:00:00Z`).
    pub fn parse_rfc3339(s: &str) -> Result<Self> {
        let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map_err(|e| Error::invalid(format!("time `{s}` is not RFC 3339: {e}")))?;
        let ms = t.unix_timestamp_nanos() / 1_000_000;
        Ok(Timestamp(i64::try_from(ms).map_err(|_| {
            Error::invalid(format!("time `{s}` is out of range"))
        })?))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

macro_rules! id_type {
    ($(#[$m:meta])* $name:ident, $prefix:literal) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// The prefix every id of this type carries.
            pub const PREFIX: &'static str = $prefix;

            /// A fresh random id.
            pub fn generate() -> Self {
                $name(format!("{}_{}", $prefix, random_token(16)))
            }

            /// The id as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(/// A customer organisation.
    CustomerId, "cus");
id_type!(/// A gatekeeper installed in one customer network.
    GatekeeperId, "gk");
id_type!(/// A person or script that signs in.
    UserId, "usr");
id_type!(/// A service (host:port) of one customer.
    ServiceId, "svc");
id_type!(/// A grant: user x service x time window.
    GrantId, "grt");
id_type!(/// One connection through the tunnel.
    SessionId, "ses");
id_type!(/// One key enrolled for a user.
    KeyId, "key");
id_type!(/// One API token of a user.
    TokenId, "tok");
id_type!(/// One checkout of a credential by a user.
    CheckoutId, "chk");

/// Lowercase base32 (RFC 4648 alphabet, no padding) of `bytes` random bytes.
pub fn random_token(bytes: usize) -> String {
    use rand::RngExt as _;
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut rng = rand::rng();
    let raw: Vec<u8> = (0..bytes).map(|_| rng.random()).collect();
    let mut out = String::with_capacity(bytes * 8 / 5 + 1);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in raw {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((acc >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((acc << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Checks a role name: like [`validate_name`], plus inner spaces, as in the
/// built-in "System Administrator".
pub fn validate_role_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.trim() == name
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b' ' | b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "role name `{name}` must be 1-64 characters of letters, digits, spaces, `.`, `_` or `-`, without leading or trailing spaces"
        )))
    }
}

/// Checks a name given by an administrator: 1-64 chars of `[A-Za-z0-9._-]`.
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{what} name `{name}` must be 1-64 characters of letters, digits, `.`, `_` or `-`"
        )))
    }
}
