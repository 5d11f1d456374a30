//! What happened: sessions and audit events.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

use super::{
    CustomerId, GatekeeperId, GrantId, Permission, ServiceId, SessionId, Target, Timestamp, UserId,
};

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

impl EndReason {
    /// Every end reason, in declaration order.
    pub const ALL: [EndReason; 7] = [
        EndReason::Completed,
        EndReason::TerminatedBy,
        EndReason::Expired,
        EndReason::Revoked,
        EndReason::Refused,
        EndReason::Error,
        EndReason::RecordingFailed,
    ];
}

impl FromStr for EndReason {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
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

/// The longest actor name an audit record keeps, in characters; a longer
/// one (an SSH user name is whatever the client sends) is cut, marked `…`.
pub const MAX_ACTOR_CHARS: usize = 128;

impl AuditEvent {
    /// This event with its actor cut to [`MAX_ACTOR_CHARS`].
    pub fn bounded(&self) -> std::borrow::Cow<'_, AuditEvent> {
        if self.actor.chars().count() <= MAX_ACTOR_CHARS {
            return std::borrow::Cow::Borrowed(self);
        }
        let mut event = self.clone();
        event.actor = self.actor.chars().take(MAX_ACTOR_CHARS - 1).collect();
        event.actor.push('…');
        std::borrow::Cow::Owned(event)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_audit_event_keeps_a_bounded_actor() {
        let event = |actor: String| AuditEvent {
            at: Timestamp(0),
            category: AuditCategory::UserActivity,
            action: "login.failure".into(),
            actor,
            customer_id: None,
            session_id: None,
            detail: serde_json::Value::Null,
        };
        let short = event("vendor".into());
        assert_eq!(short.bounded().actor, "vendor");
        let long = event("é".repeat(100_000));
        let bounded = long.bounded();
        assert_eq!(bounded.actor.chars().count(), MAX_ACTOR_CHARS);
        assert!(bounded.actor.ends_with('…'));
    }
}

/// A server node registered in the shared store (see `server::nodes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// The node id (`--node-id`).
    pub id: String,
    /// Where other nodes reach this one (its SSH hub address today).
    pub peer_address: String,
    /// The cpam version the node runs.
    pub version: String,
    pub started_at: Timestamp,
    /// The last heartbeat written; older than the timeout means lost.
    pub heartbeat_at: Timestamp,
    /// The public half of the key this node signs in to other nodes with
    /// (OpenSSH form; made at every start, never stored privately). Empty
    /// for a node that takes no part in the peer relay.
    #[serde(default)]
    pub node_key: String,
}
