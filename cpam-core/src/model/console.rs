//! What the web console keeps: IP Connect modes, console sessions, API tokens.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

use super::{Timestamp, TokenId, UserId};

/// How IP Connect reaches services for a user (seed 001's "IP Connect Mode").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IpConnectMode {
    /// Use the server-wide setting (a per-user value only).
    Global,
    Legacy,
    Driver,
    DriverWithLegacyFallback,
    Off,
}

impl IpConnectMode {
    /// Every mode, in the order the console offers them.
    pub const ALL: &'static [IpConnectMode] = &[
        IpConnectMode::Global,
        IpConnectMode::Legacy,
        IpConnectMode::Driver,
        IpConnectMode::DriverWithLegacyFallback,
        IpConnectMode::Off,
    ];

    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            IpConnectMode::Global => "global",
            IpConnectMode::Legacy => "legacy",
            IpConnectMode::Driver => "driver",
            IpConnectMode::DriverWithLegacyFallback => "driver-with-legacy-fallback",
            IpConnectMode::Off => "off",
        }
    }
}

impl FromStr for IpConnectMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        IpConnectMode::ALL
            .iter()
            .copied()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown IP Connect mode `{s}` (expected global, legacy, driver, driver-with-legacy-fallback or off)"
                ))
            })
    }
}

impl fmt::Display for IpConnectMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A signed-in console session. Only the SHA-256 of its cookie value is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSession {
    /// Hex SHA-256 of the cookie value.
    pub id_hash: String,
    pub user_id: UserId,
    /// The token state-changing requests must echo in `X-CSRF-Token`.
    pub csrf_token: String,
    pub created_at: Timestamp,
    pub last_seen: Timestamp,
    /// The absolute end, whatever the activity.
    pub expires_at: Timestamp,
}

/// A bearer token for scripts. Only the SHA-256 of the token is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiToken {
    pub id: TokenId,
    pub user_id: UserId,
    pub name: String,
    #[serde(skip)]
    pub token_hash: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
}
