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

/// What a terminal session shows and receives, as a terminal protocol (the
/// SSH proxy, the browser terminal) sees it: the decoded terminal stream of
/// one channel, not the wire bytes. Recorders write it as asciicast; live
/// watchers render it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TerminalFrame {
    /// A terminal channel opened (`channel` numbers the session's terminal
    /// channels from 0), `cols`×`rows`, with the `TERM` it asked for and
    /// the command when it runs one (`exec`) rather than a shell.
    Open {
        channel: u32,
        cols: u16,
        rows: u16,
        term: String,
        command: Option<String>,
    },
    /// Bytes the target wrote to the terminal (stdout and stderr).
    Output { channel: u32, data: bytes::Bytes },
    /// Bytes the user typed; never sent while the target has echo off.
    Input { channel: u32, data: bytes::Bytes },
    /// The user's terminal was resized.
    Resize { channel: u32, cols: u16, rows: u16 },
    /// The channel closed, with the command's exit status when one came.
    Close {
        channel: u32,
        exit_status: Option<u32>,
    },
}

impl TerminalFrame {
    /// The terminal channel the frame belongs to.
    pub fn channel(&self) -> u32 {
        match self {
            TerminalFrame::Open { channel, .. }
            | TerminalFrame::Output { channel, .. }
            | TerminalFrame::Input { channel, .. }
            | TerminalFrame::Resize { channel, .. }
            | TerminalFrame::Close { channel, .. } => *channel,
        }
    }
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

    /// A terminal protocol showed or received something (see
    /// [`TerminalFrame`]); called in order, on the protocol's task.
    fn on_terminal(&self, frame: &TerminalFrame) {
        let _ = frame;
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
