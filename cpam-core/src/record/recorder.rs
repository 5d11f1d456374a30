//! The recorder: a [`SessionObserver`] that writes each terminal channel of
//! a session as an asciicast recording in a [`RecordingStore`], and an RDP
//! session's PDUs (what its protocol shows observers as data, PDU by PDU)
//! as one RDP recording (`rdp.rs`).
//!
//! Observer callbacks run on the session's task and never block: a frame is
//! stamped with its time and handed to the channel's writer thread, which
//! decodes UTF-8, encodes asciicast lines and appends a chunk (durable, in
//! the chain) at least every [`RecorderOptions::flush_interval`]. The queue
//! is bounded in bytes; when the writer cannot keep up or cannot write, a
//! mandatory recording ends the session with
//! [`EndReason::RecordingFailed`], an optional one is sealed `incomplete`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::asciicast::{EventKind, Header, Utf8Decoder, event_line, resize_data};
use super::id::RecordingId;
use super::integrity::{SealState, SignedManifest};
use super::rdp::{pdu_line, rdp_header};
use super::store::{RecordingStore, RecordingWriter};
use crate::error::Result;
use crate::model::{EndReason, Session, SessionId, SessionProtocol, Timestamp};
use crate::session::{
    Backlog, Direction, ObserverFactory, SessionControl, SessionObserver, TerminalFrame,
};

/// How sessions are recorded.
#[derive(Debug, Clone)]
pub struct RecorderOptions {
    /// Record what the user typed (`"i"` events); the protocol never sends
    /// input while the target has echo off.
    pub record_input: bool,
    /// A recording that cannot be written ends its session
    /// (`recording_failed`); otherwise it is sealed `incomplete` and the
    /// session goes on.
    pub mandatory: bool,
    /// The longest time written output stays only in memory (at most 1 s).
    pub flush_interval: Duration,
    /// A chunk is appended as soon as this many bytes wait.
    pub max_chunk: usize,
    /// The most bytes a channel's queue holds before the recording counts
    /// as failed.
    pub max_queued_bytes: usize,
}

impl Default for RecorderOptions {
    fn default() -> Self {
        RecorderOptions {
            record_input: false,
            mandatory: true,
            flush_interval: Duration::from_millis(500),
            max_chunk: 1 << 20,
            max_queued_bytes: 32 << 20,
        }
    }
}

/// What each queued frame costs beyond its data (resize storms count too).
const FRAME_COST: usize = 64;

/// Makes a [`SessionRecorder`] for every session that is not a plain TCP
/// splice (register with
/// [`SessionEngine::add_observer_factory`](crate::session::SessionEngine::add_observer_factory));
/// a session records nothing until its protocol opens a terminal channel.
#[derive(Debug)]
pub struct Recorder {
    store: Arc<dyn RecordingStore>,
    options: RecorderOptions,
    writers: Arc<Writers>,
    on_sealed: Option<SealHook>,
}

/// Called (on the writer thread) with each manifest a recorder sealed.
#[derive(Clone)]
pub struct SealHook(pub Arc<dyn Fn(&SignedManifest) + Send + Sync>);

impl std::fmt::Debug for SealHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealHook")
    }
}

/// The writer threads still running.
#[derive(Debug, Default)]
struct Writers {
    count: Mutex<usize>,
    idle: Condvar,
}

impl Recorder {
    /// A recorder writing to `store`. The flush interval is kept between
    /// 10 ms and 1 s.
    pub fn new(store: Arc<dyn RecordingStore>, mut options: RecorderOptions) -> Recorder {
        options.flush_interval = options
            .flush_interval
            .clamp(Duration::from_millis(10), Duration::from_secs(1));
        options.max_chunk = options.max_chunk.max(1);
        Recorder {
            store,
            options,
            writers: Arc::default(),
            on_sealed: None,
        }
    }

    /// Calls `hook` with every manifest sealed (the server audits them).
    pub fn on_sealed(mut self, hook: SealHook) -> Recorder {
        self.on_sealed = Some(hook);
        self
    }

    /// The store recordings go to.
    pub fn store(&self) -> &Arc<dyn RecordingStore> {
        &self.store
    }

    /// An observer recording one session (what the factory attaches).
    pub fn observer(&self, session: &Session) -> Arc<SessionRecorder> {
        Arc::new(SessionRecorder {
            store: self.store.clone(),
            options: self.options.clone(),
            writers: self.writers.clone(),
            on_sealed: self.on_sealed.clone(),
            session: session.id.clone(),
            rdp: session.protocol == SessionProtocol::Rdp,
            state: Mutex::default(),
        })
    }

    /// Waits (blocking) until every recording that was written is sealed,
    /// at most `timeout`; returns whether they all were.
    pub fn wait_sealed(&self, timeout: Duration) -> bool {
        let count = self.writers.count.lock().unwrap_or_else(|p| p.into_inner());
        let (count, _) = self
            .writers
            .idle
            .wait_timeout_while(count, timeout, |n| *n > 0)
            .unwrap_or_else(|p| p.into_inner());
        *count == 0
    }
}

impl ObserverFactory for Recorder {
    fn observers(&self, session: &Session) -> Vec<Arc<dyn SessionObserver>> {
        if session.protocol == SessionProtocol::Tcp {
            return Vec::new();
        }
        vec![self.observer(session)]
    }
}

/// Records the terminal channels of one session.
#[derive(Debug)]
pub struct SessionRecorder {
    store: Arc<dyn RecordingStore>,
    options: RecorderOptions,
    writers: Arc<Writers>,
    on_sealed: Option<SealHook>,
    session: SessionId,
    /// An RDP session: its data is recorded PDU by PDU on channel 0.
    rdp: bool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    control: Option<SessionControl>,
    channels: HashMap<u32, Channel>,
}

/// One channel's queue to its writer thread.
#[derive(Debug)]
struct Channel {
    tx: Sender<Cmd>,
    opened: Instant,
    failure: Failure,
}

/// What a channel's observer side and writer thread share.
#[derive(Debug, Default)]
struct ChannelShared {
    queued: AtomicUsize,
    /// The session's backlog, which counts `queued` too, so its protocol
    /// waits for the disk instead of the queue overflowing.
    backlog: Option<Arc<Backlog>>,
    /// Frames were lost or could not be written: sealed `incomplete`.
    failed: AtomicBool,
}

#[derive(Debug)]
enum Cmd {
    Data {
        t: f64,
        kind: EventKind,
        data: Bytes,
    },
    Resize {
        t: f64,
        cols: u16,
        rows: u16,
    },
    /// One RDP PDU; `up`: from the client towards the target.
    Pdu {
        t: f64,
        up: bool,
        data: Bytes,
    },
    Close,
}

impl ChannelShared {
    /// The session's backlog grows by what was queued.
    fn took(&self, n: usize) {
        if let Some(b) = &self.backlog {
            b.add(n);
        }
    }

    /// The writer is done with `n` queued bytes.
    fn wrote(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::AcqRel);
        if let Some(b) = &self.backlog {
            b.sub(n);
        }
    }
}

impl Cmd {
    fn cost(&self) -> usize {
        match self {
            Cmd::Data { data, .. } | Cmd::Pdu { data, .. } => data.len() * 2 + FRAME_COST,
            _ => FRAME_COST,
        }
    }
}

/// Reports a recording that failed: ends the session when mandatory.
#[derive(Debug, Clone)]
struct Failure {
    control: Option<SessionControl>,
    mandatory: bool,
    id: RecordingId,
    shared: Arc<ChannelShared>,
}

impl Failure {
    fn report(&self, detail: &str) {
        if self.shared.failed.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::error!(recording = %self.id, error = %detail, "recording failed");
        if self.mandatory
            && let Some(c) = &self.control
        {
            c.end(EndReason::RecordingFailed, Some(detail.to_string()));
        }
    }
}

impl SessionRecorder {
    fn open(&self, state: &mut State, channel: u32, header: Header) {
        let id = match RecordingId::new(&self.session, channel) {
            Ok(id) => id,
            Err(e) => {
                tracing::error!(session = %self.session, error = %e, "cannot name a recording");
                return;
            }
        };
        if let Some(old) = state.channels.remove(&channel) {
            let _ = old.tx.send(Cmd::Close);
        }
        let failure = Failure {
            control: state.control.clone(),
            mandatory: self.options.mandatory,
            id: id.clone(),
            shared: Arc::new(ChannelShared {
                backlog: state.control.as_ref().map(|c| c.backlog().clone()),
                ..ChannelShared::default()
            }),
        };
        let (tx, rx) = mpsc::channel();
        let job = Job {
            store: self.store.clone(),
            options: self.options.clone(),
            id,
            header,
            rx,
            failure: failure.clone(),
            on_sealed: self.on_sealed.clone(),
        };
        let writers = self.writers.clone();
        *writers.count.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        let spawned = std::thread::Builder::new()
            .name(format!("cpam-rec-{channel}"))
            .spawn(move || {
                job.run();
                let mut n = writers.count.lock().unwrap_or_else(|p| p.into_inner());
                *n -= 1;
                writers.idle.notify_all();
            });
        if let Err(e) = spawned {
            *self.writers.count.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
            failure.report(&format!("cannot start the recording's writer: {e}"));
            return;
        }
        state.channels.insert(
            channel,
            Channel {
                tx,
                opened: Instant::now(),
                failure,
            },
        );
    }

    /// Queues `make(t)` for `channel` unless the queue is over its bound.
    fn queue(&self, state: &State, channel: u32, make: impl FnOnce(f64) -> Cmd) {
        let Some(ch) = state.channels.get(&channel) else {
            return;
        };
        let shared = &ch.failure.shared;
        if shared.failed.load(Ordering::Acquire) {
            return;
        }
        let cmd = make(ch.opened.elapsed().as_secs_f64());
        let cost = cmd.cost();
        let queued = shared.queued.fetch_add(cost, Ordering::AcqRel) + cost;
        if queued > self.options.max_queued_bytes {
            shared.queued.fetch_sub(cost, Ordering::AcqRel);
            ch.failure
                .report("the recording cannot keep up with the session's output");
            return;
        }
        if ch.tx.send(cmd).is_err() {
            shared.queued.fetch_sub(cost, Ordering::AcqRel);
        } else {
            shared.took(cost);
        }
    }
}

impl SessionObserver for SessionRecorder {
    fn on_start(&self, _session: &Session, control: &SessionControl) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.control = Some(control.clone());
        if self.rdp && !state.channels.contains_key(&0) {
            let header = rdp_header(
                format!("{} rdp", self.session),
                Timestamp::now().millis() / 1000,
            );
            self.open(&mut state, 0, header);
        }
    }

    fn on_data(&self, direction: Direction, data: &[u8]) {
        if !self.rdp {
            return;
        }
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.queue(&state, 0, |t| Cmd::Pdu {
            t,
            up: direction == Direction::Up,
            data: Bytes::copy_from_slice(data),
        });
    }

    fn on_terminal(&self, frame: &TerminalFrame) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match frame {
            TerminalFrame::Open {
                channel,
                cols,
                rows,
                term,
                command,
            } => {
                let mut header = Header::new(*cols, *rows);
                header.timestamp = Some(Timestamp::now().millis() / 1000);
                header.env.term = Some(term.clone()).filter(|t| !t.is_empty());
                header.command = command.clone();
                header.title = Some(format!("{} channel {channel}", self.session));
                self.open(&mut state, *channel, header);
            }
            TerminalFrame::Output { channel, data } => {
                self.queue(&state, *channel, |t| Cmd::Data {
                    t,
                    kind: EventKind::Output,
                    data: data.clone(),
                });
            }
            TerminalFrame::Input { channel, data } => {
                if self.options.record_input {
                    self.queue(&state, *channel, |t| Cmd::Data {
                        t,
                        kind: EventKind::Input,
                        data: data.clone(),
                    });
                }
            }
            TerminalFrame::Resize {
                channel,
                cols,
                rows,
            } => {
                self.queue(&state, *channel, |t| Cmd::Resize {
                    t,
                    cols: *cols,
                    rows: *rows,
                });
            }
            TerminalFrame::Close { channel, .. } => {
                if let Some(ch) = state.channels.remove(channel) {
                    let _ = ch.tx.send(Cmd::Close);
                }
            }
        }
    }

    fn on_end(&self, _session: &Session) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for (_, ch) in state.channels.drain() {
            let _ = ch.tx.send(Cmd::Close);
        }
        state.control = None;
    }
}

/// A writer thread's work: one recording from create to seal.
struct Job {
    store: Arc<dyn RecordingStore>,
    options: RecorderOptions,
    id: RecordingId,
    header: Header,
    rx: Receiver<Cmd>,
    failure: Failure,
    on_sealed: Option<SealHook>,
}

impl Job {
    fn run(self) {
        let started_at = Timestamp::now();
        let mut writer = match self.store.create(&self.id, started_at) {
            Ok(w) => w,
            Err(e) => {
                self.failure
                    .report(&format!("cannot create the recording: {}", e.message()));
                return;
            }
        };
        let closed = match self.write(writer.as_mut()) {
            Ok(closed) => closed,
            Err(e) => {
                self.failure
                    .report(&format!("cannot write the recording: {}", e.message()));
                false
            }
        };
        // What the writer never took is no longer held for the session.
        let left = self.failure.shared.queued.load(Ordering::Acquire);
        self.failure.shared.wrote(left);
        let state = if closed && !self.failure.shared.failed.load(Ordering::Acquire) {
            SealState::Complete
        } else {
            SealState::Incomplete
        };
        match writer.seal(Timestamp::now(), state) {
            Ok(signed) => {
                if let Some(hook) = &self.on_sealed {
                    (hook.0)(&signed);
                }
            }
            Err(e) => self
                .failure
                .report(&format!("cannot seal the recording: {}", e.message())),
        }
    }

    /// Writes until the channel closes (`true`) or its senders are gone.
    fn write(&self, writer: &mut dyn RecordingWriter) -> Result<bool> {
        writer.append(self.header.to_line().as_bytes())?;
        let (mut output, mut input) = (Utf8Decoder::default(), Utf8Decoder::default());
        let mut buf = String::new();
        let mut last_flush = Instant::now();
        let mut last_t = 0.0f64;
        let interval = self.options.flush_interval;
        let closed = loop {
            let wait = interval.saturating_sub(last_flush.elapsed());
            let cmd = match self.rx.recv_timeout(wait) {
                Ok(cmd) => Some(cmd),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break false,
            };
            if let Some(cmd) = cmd {
                self.failure.shared.wrote(cmd.cost());
                match cmd {
                    Cmd::Data { t, kind, data } => {
                        last_t = t;
                        let decoder = if kind == EventKind::Input {
                            &mut input
                        } else {
                            &mut output
                        };
                        let text = decoder.decode(&data);
                        if !text.is_empty() {
                            buf.push_str(&event_line(t, kind, &text));
                        }
                    }
                    Cmd::Resize { t, cols, rows } => {
                        last_t = t;
                        buf.push_str(&event_line(t, EventKind::Resize, &resize_data(cols, rows)));
                    }
                    Cmd::Pdu { t, up, data } => {
                        last_t = t;
                        buf.push_str(&pdu_line(t, up, &data));
                    }
                    Cmd::Close => break true,
                }
            }
            let due = last_flush.elapsed() >= interval;
            if buf.len() >= self.options.max_chunk || (due && !buf.is_empty()) {
                writer.append(buf.as_bytes())?;
                buf.clear();
                last_flush = Instant::now();
            } else if due {
                last_flush = Instant::now();
            }
        };
        for (decoder, kind) in [
            (&mut output, EventKind::Output),
            (&mut input, EventKind::Input),
        ] {
            let rest = decoder.finish();
            if !rest.is_empty() {
                buf.push_str(&event_line(last_t, kind, &rest));
            }
        }
        writer.append(buf.as_bytes())?;
        Ok(closed)
    }
}
