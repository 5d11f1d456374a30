//! Engine events: what changed, pushed to whoever watches (the web
//! console's live pages, an embedding product's event loop).
//!
//! Events are broadcast; a watcher that falls behind by more than
//! [`EVENT_BUFFER`] events loses the oldest ones and is told how many
//! (`RecvError::Lagged`), so a slow watcher never slows sessions down.

use serde::Serialize;

use crate::error::ErrorKind;
use crate::model::{CustomerId, GatekeeperId, Session, Timestamp};

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
        }
    }
}
