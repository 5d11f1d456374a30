//! Engine events: what changed, pushed to whoever watches (the web
//! console's live pages, an embedding product's event loop).
//!
//! Events are broadcast; a watcher that falls behind by more than
//! [`EVENT_BUFFER`] events loses the oldest ones and is told how many
//! (`RecvError::Lagged`), so a slow watcher never slows sessions down.

use serde::{Deserialize, Serialize};

use crate::error::ErrorKind;
use crate::model::{CustomerId, GatekeeperId, Session, SessionId, Timestamp, UserId};

/// How many events a watcher may fall behind before it loses some.
pub const EVENT_BUFFER: usize = 1024;

/// Something that happened in the engine or the hub.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EngineEvent {
    GatekeeperOnline {
        gatekeeper: GatekeeperId,
        customer: CustomerId,
        at: Timestamp,
    },
    GatekeeperOffline {
        gatekeeper: GatekeeperId,
        customer: CustomerId,
        at: Timestamp,
    },
    /// The customer switched its gatekeeper off or back on.
    GatekeeperSwitch {
        gatekeeper: GatekeeperId,
        customer: CustomerId,
        disabled: bool,
        at: Timestamp,
    },
    SessionStarted {
        session: Session,
    },
    SessionEnded {
        session: Session,
    },
    SessionRefused {
        user: String,
        customer: Option<CustomerId>,
        service: String,
        kind: ErrorKind,
        reason: String,
        at: Timestamp,
    },
    /// Something the user did inside a live session, as the Admin Log
    /// records it (category `user-activity`): a file moved through File
    /// Transfer (`session.file`, with path, direction, size and SHA-256),
    /// a change on the target's files (`session.file.op`), an SSH command
    /// or subsystem (`session.ssh.exec`, `session.ssh.subsystem`), an RDP
    /// certificate pinned, ... `action` is the audit record's action and
    /// `detail` its detail.
    SessionActivity {
        session_id: SessionId,
        customer: CustomerId,
        user: String,
        action: String,
        detail: serde_json::Value,
        at: Timestamp,
    },
}

impl EngineEvent {
    /// The customer the event concerns, for scoping who may see it.
    pub fn customer(&self) -> Option<&CustomerId> {
        match self {
            EngineEvent::GatekeeperOnline { customer, .. }
            | EngineEvent::GatekeeperOffline { customer, .. }
            | EngineEvent::GatekeeperSwitch { customer, .. } => Some(customer),
            EngineEvent::SessionStarted { session } | EngineEvent::SessionEnded { session } => {
                Some(&session.customer_id)
            }
            EngineEvent::SessionRefused { customer, .. } => customer.as_ref(),
            EngineEvent::SessionActivity { customer, .. } => Some(customer),
        }
    }
}

/// Access an operator took away (a user disabled, a key or a gatekeeper
/// removed): the open connections and live sessions it covers must end.
/// [`SessionEngine::revoke`](crate::session::SessionEngine::revoke) ends
/// the live sessions and tells every subscriber
/// ([`SessionEngine::subscribe_revocations`](crate::session::SessionEngine::subscribe_revocations)),
/// the hub first, which closes the matching SSH connections.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// Every connection and live session of this user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserId>,
    /// Connections that signed in with this key (its `SHA256:` fingerprint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// This gatekeeper's own link, its live sessions, and connections that
    /// signed in with a profile key bound to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gatekeeper: Option<GatekeeperId>,
    /// Why, as the session's end detail and the audit log say it.
    pub reason: String,
}

impl Revocation {
    /// Everything of `user`.
    pub fn user(user: &UserId, reason: impl Into<String>) -> Self {
        Self {
            user: Some(user.clone()),
            reason: reason.into(),
            ..Self::default()
        }
    }

    /// Connections signed in with the key of `fingerprint`.
    pub fn key(fingerprint: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: Some(fingerprint.into()),
            reason: reason.into(),
            ..Self::default()
        }
    }

    /// Everything through `gatekeeper`.
    pub fn gatekeeper(gatekeeper: &GatekeeperId, reason: impl Into<String>) -> Self {
        Self {
            gatekeeper: Some(gatekeeper.clone()),
            reason: reason.into(),
            ..Self::default()
        }
    }
}
