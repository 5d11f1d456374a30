//! Who may reach what: customers, their gatekeepers and services, users
//! and their keys, grants.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

use super::{CustomerId, GatekeeperId, GrantId, KeyId, ServiceId, Timestamp, UserId};

/// A customer organisation whose network a gatekeeper opens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    pub id: CustomerId,
    pub name: String,
    pub created_at: Timestamp,
}

/// A gatekeeper: the agent inside one customer network that dials out to the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gatekeeper {
    pub id: GatekeeperId,
    pub customer_id: CustomerId,
    pub name: String,
    /// OpenSSH public key enrolled at registration; `None` until registered.
    pub public_key: Option<String>,
    /// SHA-256 fingerprint of `public_key` (`SHA256:...`).
    pub fingerprint: Option<String>,
    pub registered_at: Option<Timestamp>,
    pub created_at: Timestamp,
    /// Last time the gatekeeper connected, disconnected or reported its state.
    pub last_contact: Option<Timestamp>,
    /// Whether the server currently holds its tunnel.
    pub online: bool,
    /// The customer-side switch as last reported by the gatekeeper.
    pub customer_disabled: bool,
    /// The customer's opening hours for the gatekeeper (`mon-fri 08:00-18:00`,
    /// UTC) as it last reported them; `None` = open whenever switched on.
    #[serde(default)]
    pub customer_schedule: Option<String>,
    /// The server node that holds its link while it is online (`None` when
    /// offline, or when the node was not named).
    #[serde(default)]
    pub node_id: Option<String>,
}

impl Gatekeeper {
    /// Whether the gatekeeper has enrolled its key.
    pub fn is_registered(&self) -> bool {
        self.public_key.is_some()
    }
}

/// Why a one-time registration code was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeRefusal {
    Unknown,
    AlreadyUsed,
    Expired,
}

impl fmt::Display for CodeRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CodeRefusal::Unknown => "unknown registration code",
            CodeRefusal::AlreadyUsed => "registration code already used",
            CodeRefusal::Expired => "registration code expired",
        })
    }
}

/// A user: a vendor engineer, an administrator or a script.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub name: String,
    /// PHC string of the Argon2id hash, if the user has a password.
    #[serde(skip_serializing)]
    pub password_hash: Option<String>,
    pub disabled: bool,
    pub created_at: Timestamp,
}

/// A public key a user authenticates with. A key exported in a Connection
/// Manager profile is bound to that profile's gatekeeper.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserKey {
    pub id: KeyId,
    pub user_id: UserId,
    pub public_key: String,
    pub fingerprint: String,
    pub label: String,
    pub gatekeeper_id: Option<GatekeeperId>,
    pub created_at: Timestamp,
}

/// The kind of a service, as in seed 000, plus `ssh` and `rdp`: an SSH host
/// or an RDP desktop whose credential the server injects from the vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceKind {
    DesktopSharing,
    FileTransfer,
    Custom,
    /// An SSH service whose credential is injected (a privileged session).
    Ssh,
    /// An RDP desktop whose credential is injected (a privileged session).
    Rdp,
}

impl ServiceKind {
    /// Every kind, in declaration order; every surface lists these.
    pub const ALL: &'static [ServiceKind] = &[
        ServiceKind::DesktopSharing,
        ServiceKind::FileTransfer,
        ServiceKind::Custom,
        ServiceKind::Ssh,
        ServiceKind::Rdp,
    ];

    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceKind::DesktopSharing => "desktop-sharing",
            ServiceKind::FileTransfer => "file-transfer",
            ServiceKind::Custom => "custom",
            ServiceKind::Ssh => "ssh",
            ServiceKind::Rdp => "rdp",
        }
    }

    /// Whether sessions to this kind get a credential injected from the
    /// vault, and so need an active checkout.
    pub fn injects_credentials(self) -> bool {
        match self {
            ServiceKind::Ssh | ServiceKind::Rdp => true,
            ServiceKind::DesktopSharing | ServiceKind::FileTransfer | ServiceKind::Custom => false,
        }
    }

    /// The target port when none is given (`None`: the kind has none).
    pub fn default_port(self) -> Option<u16> {
        match self {
            ServiceKind::DesktopSharing => Some(5900),
            ServiceKind::FileTransfer | ServiceKind::Ssh => Some(22),
            ServiceKind::Rdp => Some(3389),
            ServiceKind::Custom => None,
        }
    }
}

impl FromStr for ServiceKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        ServiceKind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = ServiceKind::ALL.iter().map(|k| k.as_str()).collect();
                Error::invalid(format!(
                    "unknown service kind `{s}` (expected one of {})",
                    names.join(", ")
                ))
            })
    }
}

/// A host and port inside a customer network.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Target {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for Target {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::invalid(format!("target `{s}` must be HOST:PORT"));
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (h, p) = rest.split_once("]:").ok_or_else(bad)?;
            (h, p)
        } else {
            s.rsplit_once(':').ok_or_else(bad)?
        };
        let port: u16 = port.parse().map_err(|_| bad())?;
        if host.is_empty() || port == 0 || host.len() > 253 {
            return Err(bad());
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'_'))
        {
            return Err(bad());
        }
        Ok(Target {
            host: host.to_string(),
            port,
        })
    }
}

/// A service of one customer that users may be granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub id: ServiceId,
    pub customer_id: CustomerId,
    /// The gatekeeper whose network the target is in: only sessions through
    /// it reach the service. `None`: any gatekeeper of the customer (a
    /// service made before services had a gatekeeper, for a customer with
    /// several).
    #[serde(default)]
    pub gatekeeper_id: Option<GatekeeperId>,
    pub name: String,
    pub kind: ServiceKind,
    pub target: Target,
    pub created_at: Timestamp,
}

/// A recurring window inside a grant: days of the week and a time of day, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// Bit 0 = Monday ... bit 6 = Sunday.
    pub days: u8,
    /// Minutes after midnight, inclusive.
    pub start_minute: u16,
    /// Minutes after midnight, exclusive; may be less than `start_minute` to wrap midnight.
    pub end_minute: u16,
}

/// Permission for one user to use one service during a time window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub id: GrantId,
    pub user_id: UserId,
    pub service_id: ServiceId,
    pub not_before: Timestamp,
    /// When the grant expires; `None` means it does not.
    pub not_after: Option<Timestamp>,
    pub schedule: Option<Schedule>,
    pub created_at: Timestamp,
    pub created_by: String,
    pub revoked_at: Option<Timestamp>,
}
