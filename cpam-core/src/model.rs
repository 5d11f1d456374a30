//! Plain data: ids, the objects cpam manages, and named permissions.
//!
//! No I/O and no clock: times are [`Timestamp`]s handed in by the caller.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

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

/// A named permission. The seed documents' names are used verbatim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[expect(
    non_camel_case_types,
    reason = "permission names are the seed documents' own, verbatim"
)]
#[non_exhaustive]
pub enum Permission {
    VIEW_ADMIN_LOG_USER_ACTIVITY,
    VIEW_ADMIN_LOG_SYSTEM_MESSAGES,
    DOWNLOAD_IPCONNECT,
    MANAGE_CUSTOMERS,
    MANAGE_GATEKEEPERS,
    MANAGE_SERVICES,
    MANAGE_USERS,
    MANAGE_ROLES,
    MANAGE_GRANTS,
    USE_CONNECTION_MANAGER,
    DOWNLOAD_CONNECTION_MANAGER,
    VIEW_SESSIONS,
    TERMINATE_SESSIONS,
    VERIFY_AUDIT_LOG,
    ACCESS_ALL_CUSTOMERS,
    VIEW_OWN_SESSIONS,
    MANAGE_SETTINGS,
}

impl Permission {
    /// Every permission, in declaration order.
    pub const ALL: &'static [Permission] = &[
        Permission::VIEW_ADMIN_LOG_USER_ACTIVITY,
        Permission::VIEW_ADMIN_LOG_SYSTEM_MESSAGES,
        Permission::DOWNLOAD_IPCONNECT,
        Permission::MANAGE_CUSTOMERS,
        Permission::MANAGE_GATEKEEPERS,
        Permission::MANAGE_SERVICES,
        Permission::MANAGE_USERS,
        Permission::MANAGE_ROLES,
        Permission::MANAGE_GRANTS,
        Permission::USE_CONNECTION_MANAGER,
        Permission::DOWNLOAD_CONNECTION_MANAGER,
        Permission::VIEW_SESSIONS,
        Permission::TERMINATE_SESSIONS,
        Permission::VERIFY_AUDIT_LOG,
        Permission::ACCESS_ALL_CUSTOMERS,
        Permission::VIEW_OWN_SESSIONS,
        Permission::MANAGE_SETTINGS,
    ];

    /// The permission's name as written in roles and the seeds.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::VIEW_ADMIN_LOG_USER_ACTIVITY => "VIEW_ADMIN_LOG_USER_ACTIVITY",
            Permission::VIEW_ADMIN_LOG_SYSTEM_MESSAGES => "VIEW_ADMIN_LOG_SYSTEM_MESSAGES",
            Permission::DOWNLOAD_IPCONNECT => "DOWNLOAD_IPCONNECT",
            Permission::MANAGE_CUSTOMERS => "MANAGE_CUSTOMERS",
            Permission::MANAGE_GATEKEEPERS => "MANAGE_GATEKEEPERS",
            Permission::MANAGE_SERVICES => "MANAGE_SERVICES",
            Permission::MANAGE_USERS => "MANAGE_USERS",
            Permission::MANAGE_ROLES => "MANAGE_ROLES",
            Permission::MANAGE_GRANTS => "MANAGE_GRANTS",
            Permission::USE_CONNECTION_MANAGER => "USE_CONNECTION_MANAGER",
            Permission::DOWNLOAD_CONNECTION_MANAGER => "DOWNLOAD_CONNECTION_MANAGER",
            Permission::VIEW_SESSIONS => "VIEW_SESSIONS",
            Permission::TERMINATE_SESSIONS => "TERMINATE_SESSIONS",
            Permission::VERIFY_AUDIT_LOG => "VERIFY_AUDIT_LOG",
            Permission::ACCESS_ALL_CUSTOMERS => "ACCESS_ALL_CUSTOMERS",
            Permission::VIEW_OWN_SESSIONS => "VIEW_OWN_SESSIONS",
            Permission::MANAGE_SETTINGS => "MANAGE_SETTINGS",
        }
    }

    /// What the permission allows, in one sentence for people.
    pub fn description(self) -> &'static str {
        match self {
            Permission::VIEW_ADMIN_LOG_USER_ACTIVITY => {
                "read user-activity entries of the admin log (logins, sessions, changes)"
            }
            Permission::VIEW_ADMIN_LOG_SYSTEM_MESSAGES => {
                "read system-message entries of the admin log (gatekeepers online/offline, server)"
            }
            Permission::DOWNLOAD_IPCONNECT => "download the IP Connect program",
            Permission::MANAGE_CUSTOMERS => "create and delete customers",
            Permission::MANAGE_GATEKEEPERS => {
                "create gatekeepers and issue their registration codes"
            }
            Permission::MANAGE_SERVICES => "create and delete services behind a gatekeeper",
            Permission::MANAGE_USERS => "create, edit and disable users",
            Permission::MANAGE_ROLES => "create, edit and delete custom roles",
            Permission::MANAGE_GRANTS => "grant users services for a time window, and revoke",
            Permission::USE_CONNECTION_MANAGER => "connect to services with the Connection Manager",
            Permission::DOWNLOAD_CONNECTION_MANAGER => {
                "download a Connection Manager profile for a gatekeeper"
            }
            Permission::VIEW_SESSIONS => "see every session of the customers in scope",
            Permission::TERMINATE_SESSIONS => "terminate live sessions of the customers in scope",
            Permission::VERIFY_AUDIT_LOG => "verify the admin log's hash chain",
            Permission::ACCESS_ALL_CUSTOMERS => {
                "see every customer, not only those the user is a member of"
            }
            Permission::VIEW_OWN_SESSIONS => "see one's own sessions",
            Permission::MANAGE_SETTINGS => "change server-wide settings",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Permission {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Permission::ALL
            .iter()
            .copied()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| Error::invalid(format!("unknown permission `{s}`")))
    }
}

/// A role: a named set of permissions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    pub name: String,
    pub permissions: Vec<Permission>,
    pub builtin: bool,
}

/// The built-in roles created by `init`.
pub fn builtin_roles() -> Vec<Role> {
    use Permission as P;
    let role = |name: &str, permissions: Vec<Permission>| Role {
        name: name.to_string(),
        permissions,
        builtin: true,
    };
    vec![
        role("System Administrator", P::ALL.to_vec()),
        role(
            "Vendor",
            vec![
                P::USE_CONNECTION_MANAGER,
                P::DOWNLOAD_CONNECTION_MANAGER,
                P::DOWNLOAD_IPCONNECT,
                P::VIEW_OWN_SESSIONS,
            ],
        ),
        role(
            "Customer Administrator",
            vec![
                P::MANAGE_GATEKEEPERS,
                P::MANAGE_SERVICES,
                P::MANAGE_GRANTS,
                P::VIEW_SESSIONS,
                P::TERMINATE_SESSIONS,
                P::VIEW_ADMIN_LOG_USER_ACTIVITY,
            ],
        ),
        role(
            "Auditor",
            vec![
                P::ACCESS_ALL_CUSTOMERS,
                P::VIEW_ADMIN_LOG_USER_ACTIVITY,
                P::VIEW_ADMIN_LOG_SYSTEM_MESSAGES,
                P::VIEW_SESSIONS,
                P::VERIFY_AUDIT_LOG,
            ],
        ),
    ]
}

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

/// The kind of a service, as in seed 000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceKind {
    DesktopSharing,
    FileTransfer,
    Custom,
}

impl ServiceKind {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceKind::DesktopSharing => "desktop-sharing",
            ServiceKind::FileTransfer => "file-transfer",
            ServiceKind::Custom => "custom",
        }
    }
}

impl FromStr for ServiceKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "desktop-sharing" => Ok(ServiceKind::DesktopSharing),
            "file-transfer" => Ok(ServiceKind::FileTransfer),
            "custom" => Ok(ServiceKind::Custom),
            other => Err(Error::invalid(format!(
                "unknown service kind `{other}` (expected desktop-sharing, file-transfer or custom)"
            ))),
        }
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

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EndReason {
    /// Either side closed the connection.
    Completed,
    /// An operator terminated it (`end_detail` names who).
    TerminatedBy,
    /// The grant's time window closed.
    Expired,
    /// The grant was revoked, or the customer disabled the gatekeeper.
    Revoked,
    /// It was never allowed to start.
    Refused,
    /// A fault ended it.
    Error,
    /// The session's mandatory recording could not be written.
    RecordingFailed,
}

impl EndReason {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Completed => "completed",
            EndReason::TerminatedBy => "terminated_by",
            EndReason::Expired => "expired",
            EndReason::Revoked => "revoked",
            EndReason::Refused => "refused",
            EndReason::Error => "error",
            EndReason::RecordingFailed => "recording_failed",
        }
    }
}

impl FromStr for EndReason {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        [
            EndReason::Completed,
            EndReason::TerminatedBy,
            EndReason::Expired,
            EndReason::Revoked,
            EndReason::Refused,
            EndReason::Error,
            EndReason::RecordingFailed,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
        .ok_or_else(|| Error::invalid(format!("unknown end reason `{s}`")))
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a session carries: how the server handles its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionProtocol {
    /// Bytes spliced unchanged between the user and the target.
    Tcp,
    /// An SSH session the server terminates (credential injection, recording).
    Ssh,
    /// An SFTP session the server reads (per-file audit).
    Sftp,
    /// An RDP session the server terminates.
    Rdp,
    /// A flow of IP Connect, the user's mapped local address.
    IpConnect,
}

impl SessionProtocol {
    /// Every protocol, in declaration order.
    pub const ALL: [SessionProtocol; 5] = [
        SessionProtocol::Tcp,
        SessionProtocol::Ssh,
        SessionProtocol::Sftp,
        SessionProtocol::Rdp,
        SessionProtocol::IpConnect,
    ];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionProtocol::Tcp => "tcp",
            SessionProtocol::Ssh => "ssh",
            SessionProtocol::Sftp => "sftp",
            SessionProtocol::Rdp => "rdp",
            SessionProtocol::IpConnect => "ip_connect",
        }
    }
}

impl FromStr for SessionProtocol {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| Error::invalid(format!("unknown session protocol `{s}`")))
    }
}

impl fmt::Display for SessionProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One connection through the tunnel, from accept to close.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: SessionId,
    pub user_id: UserId,
    pub user_name: String,
    pub customer_id: CustomerId,
    /// The gatekeeper the session runs through; `None` for a direct path
    /// (PSM to a target the server reaches itself).
    pub gatekeeper_id: Option<GatekeeperId>,
    pub service_id: ServiceId,
    pub service_name: String,
    pub target: Target,
    pub grant_id: Option<GrantId>,
    /// How the server handles the session's bytes.
    pub protocol: SessionProtocol,
    /// The server node that runs the session (`None`: a node that was not
    /// named, such as a session recorded before nodes had names).
    pub node_id: Option<String>,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    /// Bytes from the user towards the target.
    pub bytes_up: u64,
    /// Bytes from the target towards the user.
    pub bytes_down: u64,
    pub end_reason: Option<EndReason>,
    /// Who terminated it, or what went wrong.
    pub end_detail: Option<String>,
}

/// The two audit categories of seed 000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditCategory {
    /// What people did: logins, sessions, admin changes. Needs `VIEW_ADMIN_LOG_USER_ACTIVITY`.
    UserActivity,
    /// What the system did: gatekeepers online/offline, faults. Needs `VIEW_ADMIN_LOG_SYSTEM_MESSAGES`.
    SystemMessages,
}

impl AuditCategory {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditCategory::UserActivity => "user-activity",
            AuditCategory::SystemMessages => "system-messages",
        }
    }

    /// The permission needed to read events of this category.
    pub fn permission(self) -> Permission {
        match self {
            AuditCategory::UserActivity => Permission::VIEW_ADMIN_LOG_USER_ACTIVITY,
            AuditCategory::SystemMessages => Permission::VIEW_ADMIN_LOG_SYSTEM_MESSAGES,
        }
    }
}

impl FromStr for AuditCategory {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "user-activity" => Ok(AuditCategory::UserActivity),
            "system-messages" => Ok(AuditCategory::SystemMessages),
            other => Err(Error::invalid(format!(
                "unknown audit category `{other}` (expected user-activity or system-messages)"
            ))),
        }
    }
}

/// An audit event before it is sealed into the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub at: Timestamp,
    pub category: AuditCategory,
    /// Dotted action name, e.g. `session.start`, `login.failure`, `gatekeeper.online`.
    pub action: String,
    /// Who did it: a user name, `gatekeeper:<id>`, `admin-cli` or `system`.
    pub actor: String,
    pub customer_id: Option<CustomerId>,
    pub session_id: Option<SessionId>,
    /// Free-form details; never a secret.
    pub detail: serde_json::Value,
}

/// An audit event sealed into the hash chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// 1-based position in the chain.
    pub seq: i64,
    #[serde(flatten)]
    pub event: AuditEvent,
    /// Hex SHA-256 of the previous record (64 zeros for the first).
    pub prev_hash: String,
    /// Hex SHA-256 over `seq`, the event and `prev_hash`.
    pub hash: String,
}
