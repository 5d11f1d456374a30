//! Observers: what attaches to a live session (a recorder, live watchers,
//! a file-event producer) and sees its start, its data, its events and its
//! end.
//!
//! Callbacks are synchronous and run on the session's own task: an
//! observer that needs I/O hands the work to a task or a channel of its own,
//! so a slow observer never stalls the bytes. An observer that must stop the
//! session (a mandatory recording that cannot be written) keeps the
//! [`SessionControl`] it gets at the start and calls [`SessionControl::end`]
//! with [`EndReason::RecordingFailed`](crate::model::EndReason::RecordingFailed).

use serde::Serialize;

use super::counters::Direction;
use super::live::SessionControl;
use crate::model::{Session, Timestamp};

/// Something that happened inside a session (a file transferred, a window
/// resized), recorded through [`LiveSession::record_event`](super::LiveSession::record_event).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionEvent {
    pub at: Timestamp,
    /// Dotted name, e.g. `sftp.upload`; audited as `session.<action>`.
    pub action: String,
    pub detail: serde_json::Value,
}

/// Sees one session's life. Every method has an empty default.
pub trait SessionObserver: Send + Sync + std::fmt::Debug {
    /// The session was recorded and is about to run (or the observer was
    /// attached to a session already running).
    fn on_start(&self, session: &Session, control: &SessionControl) {
        let _ = (session, control);
    }

    /// `data` moved in `direction` (called by protocols that see the bytes,
    /// such as the TCP splice, chunk by chunk).
    fn on_data(&self, direction: Direction, data: &[u8]) {
        let _ = (direction, data);
    }

    /// The protocol recorded an event.
    fn on_event(&self, event: &SessionEvent) {
        let _ = event;
    }

    /// The session ended; `session` carries its end reason and byte counts.
    fn on_end(&self, session: &Session) {
        let _ = session;
    }
}

/// Makes observers for every session the engine starts (see
/// [`SessionEngine::add_observer_factory`](super::SessionEngine::add_observer_factory)).
pub trait ObserverFactory: Send + Sync + std::fmt::Debug {
    /// The observers to attach to `session`, if any.
    fn observers(&self, session: &Session) -> Vec<std::sync::Arc<dyn SessionObserver>>;
}
