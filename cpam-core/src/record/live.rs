//! The live view: the current screen of every live terminal session and a
//! broadcast of what it shows next, for watchers (the console's *Watch*).
//!
//! [`LiveHub`] is an observer factory the server registers on its engine
//! next to the recorder. Per live session it keeps the [`Screen`] of the
//! terminal channel opened last (fed by `on_terminal`) and a
//! `tokio::sync::broadcast` of [`WatchFrame`]s. [`LiveHub::watch`] gives a
//! snapshot of the screen and a receiver taken under the same lock, so
//! nothing is missed or shown twice. A watcher that falls behind gets a
//! fresh snapshot: a slow watcher never blocks the session. What the user
//! types is never broadcast (the screen shows what the target echoed).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::broadcast;

use super::Screen;
use crate::model::{Session, SessionId};
use crate::session::{ObserverFactory, SessionObserver, TerminalFrame};

/// Frames kept for a watcher that is behind before it gets a snapshot.
const BACKLOG: usize = 256;

/// What a watcher receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchFrame {
    /// Redraw everything: the terminal is `cols`×`rows` and `data` paints
    /// the current screen on a blank one.
    Snapshot { cols: u16, rows: u16, data: Vec<u8> },
    /// Bytes the target wrote to the terminal.
    Output(bytes::Bytes),
    /// The terminal was resized.
    Resize { cols: u16, rows: u16 },
    /// The session ended, with why (`terminated: <reason>`, `closed`, ...).
    End(String),
}

type Terminals = Mutex<HashMap<SessionId, Arc<LiveTerminal>>>;

/// The live screens of a server's sessions (see the module docs).
#[derive(Debug, Default)]
pub struct LiveHub {
    sessions: Arc<Terminals>,
}

impl LiveHub {
    /// An empty hub; register it with
    /// [`SessionEngine::add_observer_factory`](crate::session::SessionEngine::add_observer_factory).
    pub fn new() -> Arc<LiveHub> {
        Arc::new(LiveHub::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Arc<LiveTerminal>>> {
        lock(&self.sessions)
    }

    /// Starts watching live session `id`: `None` when it is not live here
    /// or has not opened a terminal yet.
    pub fn watch(&self, id: &SessionId) -> Option<Watch> {
        let term = self.lock().get(id).cloned()?;
        let (snapshot, rx) = term.subscribe()?;
        Some(Watch {
            term,
            first: Some(snapshot),
            rx,
        })
    }

    /// Whether session `id` is live here with a terminal open.
    pub fn has_terminal(&self, id: &SessionId) -> bool {
        self.lock()
            .get(id)
            .is_some_and(|t| t.state().current.is_some())
    }
}

impl ObserverFactory for LiveHub {
    fn observers(&self, session: &Session) -> Vec<Arc<dyn SessionObserver>> {
        let term = Arc::new(LiveTerminal {
            id: session.id.clone(),
            state: Mutex::new(State::default()),
            tx: broadcast::channel(BACKLOG).0,
        });
        self.lock().insert(session.id.clone(), term.clone());
        vec![Arc::new(Observer {
            term,
            hub: Arc::downgrade(&self.sessions),
        })]
    }
}

/// A session being watched; see [`Watch::next`].
#[derive(Debug)]
pub struct Watch {
    term: Arc<LiveTerminal>,
    first: Option<WatchFrame>,
    rx: broadcast::Receiver<WatchFrame>,
}

impl Watch {
    /// The next frame: first the snapshot, then what the screen shows,
    /// a new snapshot after falling behind, [`WatchFrame::End`] once the
    /// session ended, then `None`.
    pub async fn next(&mut self) -> Option<WatchFrame> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        loop {
            match self.rx.recv().await {
                Ok(frame) => return Some(frame),
                Err(broadcast::error::RecvError::Closed) => return None,
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let (snapshot, rx) = self.term.subscribe()?;
                    self.rx = rx;
                    return Some(snapshot);
                }
            }
        }
    }
}

#[derive(Debug, Default)]
struct State {
    screens: HashMap<u32, Screen>,
    /// The channel watchers see: the one opened last and still open.
    current: Option<u32>,
    ended: bool,
}

struct LiveTerminal {
    id: SessionId,
    state: Mutex<State>,
    tx: broadcast::Sender<WatchFrame>,
}

impl std::fmt::Debug for LiveTerminal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveTerminal")
            .field("session", &self.id)
            .finish_non_exhaustive()
    }
}

impl LiveTerminal {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current screen and a receiver of what follows it, taken under
    /// the lock the frames are sent under.
    fn subscribe(&self) -> Option<(WatchFrame, broadcast::Receiver<WatchFrame>)> {
        let state = self.state();
        if state.ended {
            return None;
        }
        let screen = state.current.and_then(|c| state.screens.get(&c))?;
        let (rows, cols) = screen.size();
        let snapshot = WatchFrame::Snapshot {
            cols,
            rows,
            data: screen.snapshot(),
        };
        Some((snapshot, self.tx.subscribe()))
    }

    fn apply(&self, frame: &TerminalFrame) {
        let mut state = self.state();
        let channel = frame.channel();
        let send = |f: WatchFrame| {
            // No watcher is not an error.
            let _ = self.tx.send(f);
        };
        match frame {
            TerminalFrame::Open { cols, rows, .. } => {
                let screen = Screen::new(*cols, *rows);
                let (rows, cols) = screen.size();
                let data = screen.snapshot();
                state.screens.insert(channel, screen);
                state.current = Some(channel);
                send(WatchFrame::Snapshot { cols, rows, data });
            }
            TerminalFrame::Output { data, .. } => {
                if let Some(screen) = state.screens.get_mut(&channel) {
                    screen.process(data);
                }
                if state.current == Some(channel) {
                    send(WatchFrame::Output(data.clone()));
                }
            }
            TerminalFrame::Resize { cols, rows, .. } => {
                if let Some(screen) = state.screens.get_mut(&channel) {
                    screen.resize(*cols, *rows);
                }
                if state.current == Some(channel) {
                    send(WatchFrame::Resize {
                        cols: *cols,
                        rows: *rows,
                    });
                }
            }
            TerminalFrame::Input { .. } => {}
            TerminalFrame::Close { .. } => {
                state.screens.remove(&channel);
                if state.current == Some(channel) {
                    // Another open channel, if any, becomes the one shown.
                    state.current = state.screens.keys().max().copied();
                    if let Some(c) = state.current
                        && let Some(screen) = state.screens.get(&c)
                    {
                        let (rows, cols) = screen.size();
                        send(WatchFrame::Snapshot {
                            cols,
                            rows,
                            data: screen.snapshot(),
                        });
                    }
                }
            }
        }
    }

    fn end(&self, reason: String) {
        let mut state = self.state();
        state.ended = true;
        state.screens.clear();
        state.current = None;
        let _ = self.tx.send(WatchFrame::End(reason));
    }
}

fn lock(t: &Terminals) -> std::sync::MutexGuard<'_, HashMap<SessionId, Arc<LiveTerminal>>> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

/// Feeds a session's terminal; at the end tells watchers why and drops it
/// from the hub.
#[derive(Debug)]
struct Observer {
    term: Arc<LiveTerminal>,
    hub: Weak<Terminals>,
}

impl SessionObserver for Observer {
    fn on_terminal(&self, frame: &TerminalFrame) {
        self.term.apply(frame);
    }

    fn on_end(&self, session: &Session) {
        let reason = match (&session.end_reason, &session.end_detail) {
            (Some(r), Some(d)) if !d.is_empty() => format!("{}: {d}", r.as_str()),
            (Some(r), _) => r.as_str().to_string(),
            (None, _) => "ended".to_string(),
        };
        self.term.end(reason);
        if let Some(hub) = self.hub.upgrade() {
            lock(&hub).remove(&session.id);
        }
    }
}
