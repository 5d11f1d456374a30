//! The live view: the current screen of every live terminal session (or
//! the desktop of every remote desktop session) and a broadcast of what it
//! shows next, for watchers (the console's *Watch*).
//!
//! A remote desktop session's PDUs (`on_data`) are decoded as they pass
//! into its [`Desktop`](super::Desktop) (feature `rdp`); a watcher gets
//! the whole desktop as a PNG, then each changed region as a PNG tile
//! (encoded once while someone watches, shared by every watcher).
//!
//! [`LiveHub`] is an observer factory the server registers on its engine
//! next to the recorder. Per live session it keeps the [`Screen`] of the
//! terminal channel opened last (fed by `on_terminal`) and a
//! `tokio::sync::broadcast` of [`WatchFrame`]s. [`LiveHub::watch`] gives a
//! snapshot of the screen and a receiver taken under the same lock, so
//! nothing is missed or shown twice. A watcher that falls behind gets a
//! fresh snapshot: a slow watcher never blocks the session. What the user
//! types is never broadcast (the screen shows what the target echoed).
//!
//! Output is parsed into the screen as it comes only while someone
//! watches; otherwise it waits unparsed and is drawn when a watcher joins.
//! Past 1 MiB waiting, only the last 256 KiB are kept, redrawn on a blank
//! screen (the way a session join replays recent output): a bulk `cat`
//! nobody watches costs a copy, not a terminal emulation.

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
    /// Redraw everything (a remote desktop): the desktop is
    /// `width`×`height` pixels and `png` shows all of it.
    Desktop {
        width: u16,
        height: u16,
        png: bytes::Bytes,
    },
    /// A region of the desktop changed: `png` shows it, its top left
    /// corner at (`x`, `y`).
    Tile { x: u16, y: u16, png: bytes::Bytes },
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
            ended: false,
            rx,
        })
    }

    /// Whether session `id` is live here with something to show: a
    /// terminal open, or a remote desktop whose size is known.
    pub fn has_terminal(&self, id: &SessionId) -> bool {
        self.lock().get(id).is_some_and(|t| {
            let state = t.state();
            state.current.is_some() || state.desktop_shown()
        })
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
            desktop: session.protocol == crate::model::SessionProtocol::Rdp,
        })]
    }
}

/// A session being watched; see [`Watch::next`].
#[derive(Debug)]
pub struct Watch {
    term: Arc<LiveTerminal>,
    first: Option<WatchFrame>,
    rx: broadcast::Receiver<WatchFrame>,
    /// [`WatchFrame::End`] was returned: nothing follows it. (The sender
    /// lives as long as the terminal this watch holds, so the channel
    /// itself never closes under a watcher.)
    ended: bool,
}

impl Watch {
    /// The next frame: first the snapshot, then what the screen shows,
    /// a new snapshot after falling behind, [`WatchFrame::End`] once the
    /// session ended, then `None`.
    pub async fn next(&mut self) -> Option<WatchFrame> {
        if self.ended {
            return None;
        }
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        match self.rx.recv().await {
            Ok(frame) => {
                self.ended = matches!(frame, WatchFrame::End(_));
                Some(frame)
            }
            Err(broadcast::error::RecvError::Closed) => None,
            Err(broadcast::error::RecvError::Lagged(_)) => {
                let (snapshot, rx) = self.term.subscribe()?;
                self.rx = rx;
                Some(snapshot)
            }
        }
    }
}

/// Output a terminal nobody watches keeps unparsed before it is cut to
/// its last [`REPLAY_KEEP`] bytes (parsing every byte of a session that
/// nobody watches would cost more than the rest of the proxy).
const PENDING_MAX: usize = 1 << 20;
/// What a cut keeps: a watcher joining then sees the screen these bytes
/// draw on a blank terminal, as a session join replays recent output.
const REPLAY_KEEP: usize = 256 << 10;

/// One terminal channel's screen: parsed as the output comes while someone
/// watches, otherwise only when a watcher joins (`pending` waits).
#[derive(Debug)]
struct Term {
    screen: Screen,
    pending: Vec<u8>,
}

impl Term {
    fn new(cols: u16, rows: u16) -> Term {
        Term {
            screen: Screen::new(cols, rows),
            pending: Vec::new(),
        }
    }

    /// Draws what is pending.
    fn catch_up(&mut self) -> &Screen {
        if !self.pending.is_empty() {
            self.screen.process(&self.pending);
            self.pending.clear();
        }
        &self.screen
    }

    fn output(&mut self, data: &[u8], watched: bool) {
        if watched {
            self.catch_up();
            self.screen.process(data);
            return;
        }
        self.pending.extend_from_slice(data);
        if self.pending.len() > PENDING_MAX {
            // Keep the tail from a line start, on a blank screen.
            let from = self.pending.len() - REPLAY_KEEP;
            let cut = self.pending[from..]
                .iter()
                .position(|b| *b == b'\n')
                .map_or(from, |i| from + i + 1);
            self.pending.drain(..cut);
            let (rows, cols) = self.screen.size();
            self.screen = Screen::new(cols, rows);
        }
    }

    fn snapshot(&mut self) -> WatchFrame {
        let screen = self.catch_up();
        let (rows, cols) = screen.size();
        WatchFrame::Snapshot {
            cols,
            rows,
            data: screen.snapshot(),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    screens: HashMap<u32, Term>,
    /// The channel watchers see: the one opened last and still open.
    current: Option<u32>,
    /// A remote desktop session's desktop, decoded from its PDUs.
    #[cfg(feature = "rdp")]
    desktop: Option<super::Desktop>,
    ended: bool,
}

impl State {
    #[cfg(feature = "rdp")]
    fn desktop_shown(&self) -> bool {
        self.desktop.as_ref().is_some_and(|d| d.size().is_some())
    }

    #[cfg(not(feature = "rdp"))]
    fn desktop_shown(&self) -> bool {
        false
    }

    /// The whole desktop, when there is one to show.
    #[cfg(feature = "rdp")]
    fn desktop_snapshot(&self) -> Option<WatchFrame> {
        let desktop = self.desktop.as_ref()?;
        let (width, height) = desktop.size()?;
        let all = super::Rect {
            x: 0,
            y: 0,
            width,
            height,
        };
        let png = desktop.png(all).ok()?;
        Some(WatchFrame::Desktop {
            width,
            height,
            png: png.into(),
        })
    }

    #[cfg(not(feature = "rdp"))]
    fn desktop_snapshot(&self) -> Option<WatchFrame> {
        None
    }
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
        let mut state = self.state();
        if state.ended {
            return None;
        }
        if let Some(snapshot) = state.desktop_snapshot() {
            return Some((snapshot, self.tx.subscribe()));
        }
        let current = state.current?;
        let snapshot = state.screens.get_mut(&current)?.snapshot();
        Some((snapshot, self.tx.subscribe()))
    }

    fn apply(&self, frame: &TerminalFrame) {
        let mut state = self.state();
        let channel = frame.channel();
        let send = |f: WatchFrame| {
            // No watcher is not an error.
            let _ = self.tx.send(f);
        };
        let watched = self.tx.receiver_count() > 0;
        match frame {
            TerminalFrame::Open { cols, rows, .. } => {
                let (cols, rows) = size(*cols, *rows);
                let mut term = Term::new(cols, rows);
                let snapshot = term.snapshot();
                state.screens.insert(channel, term);
                state.current = Some(channel);
                send(snapshot);
            }
            TerminalFrame::Output { data, .. } => {
                let current = state.current == Some(channel);
                if let Some(term) = state.screens.get_mut(&channel) {
                    term.output(data, watched && current);
                }
                if current {
                    send(WatchFrame::Output(data.clone()));
                }
            }
            TerminalFrame::Resize { cols, rows, .. } => {
                let (cols, rows) = size(*cols, *rows);
                if let Some(term) = state.screens.get_mut(&channel) {
                    term.catch_up();
                    term.screen.resize(cols, rows);
                }
                if state.current == Some(channel) {
                    send(WatchFrame::Resize { cols, rows });
                }
            }
            TerminalFrame::Input { .. } => {}
            TerminalFrame::Close { .. } => {
                state.screens.remove(&channel);
                if state.current == Some(channel) {
                    // Another open channel, if any, becomes the one shown.
                    state.current = state.screens.keys().max().copied();
                    if let Some(c) = state.current
                        && let Some(term) = state.screens.get_mut(&c)
                    {
                        send(term.snapshot());
                    }
                }
            }
        }
    }

    /// One PDU of a remote desktop session: decoded into the desktop; the
    /// region it changed goes to the watchers, if any.
    #[cfg(feature = "rdp")]
    fn desktop_pdu(&self, up: bool, pdu: &[u8]) {
        let mut state = self.state();
        if state.ended {
            return;
        }
        let desktop = state.desktop.get_or_insert_with(super::Desktop::new);
        let Some(changed) = desktop.feed(up, pdu) else {
            return;
        };
        if self.tx.receiver_count() == 0 || changed.width == 0 || changed.height == 0 {
            return;
        }
        match desktop.png(changed) {
            Ok(png) => {
                let _ = self.tx.send(WatchFrame::Tile {
                    x: changed.x,
                    y: changed.y,
                    png: png.into(),
                });
            }
            Err(error) => tracing::debug!(%error, "cannot encode a desktop tile"),
        }
    }

    fn end(&self, reason: String) {
        let mut state = self.state();
        state.ended = true;
        state.screens.clear();
        state.current = None;
        #[cfg(feature = "rdp")]
        {
            state.desktop = None;
        }
        let _ = self.tx.send(WatchFrame::End(reason));
    }
}

/// A terminal that gave no size (`ssh -tt` without a terminal of its own
/// sends 0×0) is shown as 80×24, the size programs assume then.
fn size(cols: u16, rows: u16) -> (u16, u16) {
    (
        if cols == 0 { 80 } else { cols },
        if rows == 0 { 24 } else { rows },
    )
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
    /// A remote desktop session: its PDUs draw the desktop.
    desktop: bool,
}

impl SessionObserver for Observer {
    fn on_data(&self, direction: crate::session::Direction, data: &[u8]) {
        #[cfg(feature = "rdp")]
        if self.desktop {
            self.term
                .desktop_pdu(direction == crate::session::Direction::Up, data);
        }
        #[cfg(not(feature = "rdp"))]
        let _ = (direction, data, self.desktop);
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        CustomerId, EndReason, ServiceId, Session, SessionId, SessionProtocol, Timestamp, UserId,
    };

    fn session(id: &str) -> Session {
        Session {
            id: SessionId(id.into()),
            user_id: UserId("usr_v".into()),
            user_name: "vera".into(),
            customer_id: CustomerId("cus_a".into()),
            gatekeeper_id: None,
            protocol: SessionProtocol::Ssh,
            node_id: None,
            service_id: ServiceId("svc_a".into()),
            service_name: "db1".into(),
            target: "127.0.0.1:22".parse().expect("a target"),
            grant_id: None,
            started_at: Timestamp::now(),
            ended_at: None,
            bytes_up: 0,
            bytes_down: 0,
            end_reason: None,
            end_detail: None,
        }
    }

    fn open(hub: &LiveHub, id: &str) -> Vec<Arc<dyn SessionObserver>> {
        hub.observers(&session(id))
    }

    fn frame(o: &[Arc<dyn SessionObserver>], f: TerminalFrame) {
        for o in o {
            o.on_terminal(&f);
        }
    }

    fn output(data: &'static [u8]) -> TerminalFrame {
        TerminalFrame::Output {
            channel: 0,
            data: bytes::Bytes::from_static(data),
        }
    }

    #[tokio::test]
    async fn output_nobody_watches_is_replayed_from_its_tail_for_a_late_watcher() {
        let hub = LiveHub::new();
        let o = open(&hub, "s2");
        frame(
            &o,
            TerminalFrame::Open {
                channel: 0,
                cols: 80,
                rows: 24,
                term: "xterm".into(),
                command: None,
            },
        );
        // 3 MiB of numbered lines, then a last line.
        let mut bulk = Vec::new();
        for i in 0..100_000u32 {
            bulk.extend_from_slice(format!("bulk line {i:06} ..........\r\n").as_bytes());
        }
        for chunk in bulk.chunks(32 * 1024) {
            frame(
                &o,
                TerminalFrame::Output {
                    channel: 0,
                    data: bytes::Bytes::copy_from_slice(chunk),
                },
            );
        }
        frame(&o, output(b"the end\r\n"));
        let pending = {
            let term = hub
                .lock()
                .get(&SessionId("s2".into()))
                .cloned()
                .expect("live");
            let state = term.state();
            state
                .screens
                .get(&0)
                .map(|t| t.pending.len())
                .expect("a screen")
        };
        assert!(
            pending <= PENDING_MAX,
            "unparsed output is bounded: {pending}"
        );
        let mut w = hub.watch(&SessionId("s2".into())).expect("a terminal");
        let Some(WatchFrame::Snapshot { data, .. }) = w.next().await else {
            panic!("a snapshot first");
        };
        let mut screen = Screen::new(80, 24);
        screen.process(&data);
        let text = screen.contents();
        assert!(text.contains("bulk line 099999"), "{text}");
        assert!(text.contains("the end"), "{text}");
        // While watched, output is drawn as it comes.
        frame(&o, output(b"watched\r\n"));
        assert!(matches!(w.next().await, Some(WatchFrame::Output(d)) if &d[..] == b"watched\r\n"));
        let term = hub
            .lock()
            .get(&SessionId("s2".into()))
            .cloned()
            .expect("live");
        assert!(term.state().screens[&0].pending.is_empty());
    }

    #[tokio::test]
    async fn a_late_watcher_sees_the_screen_then_the_output_and_never_the_input() {
        let hub = LiveHub::new();
        let o = open(&hub, "s1");
        assert!(
            hub.watch(&SessionId("s1".into())).is_none(),
            "no terminal yet"
        );
        frame(
            &o,
            TerminalFrame::Open {
                channel: 0,
                cols: 0,
                rows: 0,
                term: "xterm".into(),
                command: None,
            },
        );
        frame(&o, output(b"psm-42\r\n"));
        let mut w = hub.watch(&SessionId("s1".into())).expect("a watch");
        match w.next().await {
            Some(WatchFrame::Snapshot { cols, rows, data }) => {
                assert_eq!((cols, rows), (80, 24));
                assert!(String::from_utf8_lossy(&data).contains("psm-42"));
            }
            other => panic!("expected a snapshot, got {other:?}"),
        }
        frame(
            &o,
            TerminalFrame::Input {
                channel: 0,
                data: bytes::Bytes::from_static(b"secret"),
            },
        );
        frame(&o, output(b"next"));
        assert_eq!(
            w.next().await,
            Some(WatchFrame::Output(bytes::Bytes::from_static(b"next")))
        );
        let mut s = session("s1");
        s.end_reason = Some(EndReason::Completed);
        for o in &o {
            o.on_end(&s);
        }
        assert!(matches!(w.next().await, Some(WatchFrame::End(r)) if r.contains("completed")));
        let after = tokio::time::timeout(std::time::Duration::from_secs(5), w.next()).await;
        assert_eq!(after.ok(), Some(None), "nothing follows the end");
        assert!(
            hub.watch(&SessionId("s1".into())).is_none(),
            "dropped at the end"
        );
    }

    #[tokio::test]
    async fn a_watcher_that_falls_behind_gets_a_fresh_snapshot() {
        let hub = LiveHub::new();
        let o = open(&hub, "s2");
        frame(
            &o,
            TerminalFrame::Open {
                channel: 0,
                cols: 20,
                rows: 5,
                term: "xterm".into(),
                command: None,
            },
        );
        let mut w = hub.watch(&SessionId("s2".into())).expect("a watch");
        assert!(matches!(w.next().await, Some(WatchFrame::Snapshot { .. })));
        for _ in 0..(BACKLOG + 10) {
            frame(&o, output(b"x"));
        }
        frame(&o, output(b"\r\nlast"));
        match w.next().await {
            Some(WatchFrame::Snapshot { data, .. }) => {
                assert!(String::from_utf8_lossy(&data).contains("last"));
            }
            other => panic!("expected a fresh snapshot, got {other:?}"),
        }
    }
}
