//! Per-channel flow control (cpam fork, see README.md at the crate root).
//!
//! Upstream russh re-opens a channel's window as soon as the session loop
//! *receives* data, then awaits room in the channel's bounded queue: one
//! reader that stops reading stalls the whole connection (every channel,
//! keepalives included). Here the loop never awaits a reader:
//!
//! * it hands a message over with `try_send`; when the queue is full the
//!   message is parked in the channel's [`ChannelRef`](super::ChannelRef),
//!   in order, and the channel's later messages queue behind it. Data never
//!   exceeds the window the peer was granted, so what is parked is bounded
//!   by the window;
//! * the window is given back only for bytes the reader has taken
//!   ([`Flow::took`], counted in [`ChannelReadHalf`](super::ChannelReadHalf));
//! * the reader wakes the loop (the session's unbounded priority queue,
//!   at most one wake-up in flight per channel) when it has taken enough for
//!   a window adjustment or freed room while messages are parked.
//!
//! Lost wake-ups are ruled out by pairing every "publish, then check" on one
//! side with the mirror order on the other (all `SeqCst`):
//! the reader adds to `consumed` (or frees a queue slot), then reads
//! `wake_at` / `parked`; the loop stores `wake_at` / `parked`, then reads
//! `consumed` (or retries the queue) again before it goes back to sleep.
//! Either the reader sees the loop's new mark and wakes it, or the loop sees
//! the reader's progress itself. A wake-up clears `pending` before the loop
//! looks, so progress made while one is queued is seen by that one.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst, fence};

use crate::ChannelMsg;

/// What wakes the session loop for one channel.
pub(crate) type Waker = Box<dyn Fn() + Send + Sync>;

/// The state a channel's reader and its session loop share.
pub(crate) struct Flow {
    /// Window bytes the reader has taken (or the loop discarded for a reader
    /// that is gone), since the channel opened.
    consumed: AtomicU64,
    /// The loop wants a wake-up once `consumed` reaches this.
    wake_at: AtomicU64,
    /// The loop holds parked messages waiting for room in the queue.
    parked: AtomicBool,
    /// A wake-up is queued and not handled yet.
    pending: AtomicBool,
    waker: OnceLock<Waker>,
}

impl std::fmt::Debug for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flow")
            .field("consumed", &self.consumed)
            .field("wake_at", &self.wake_at)
            .field("parked", &self.parked)
            .field("pending", &self.pending)
            .finish()
    }
}

impl Default for Flow {
    fn default() -> Self {
        Self {
            consumed: AtomicU64::new(0),
            wake_at: AtomicU64::new(u64::MAX),
            parked: AtomicBool::new(false),
            pending: AtomicBool::new(false),
            waker: OnceLock::new(),
        }
    }
}

/// The window bytes a message carries.
pub(crate) fn window_bytes(msg: &ChannelMsg) -> u64 {
    match msg {
        ChannelMsg::Data { data } | ChannelMsg::ExtendedData { data, .. } => data.len() as u64,
        _ => 0,
    }
}

impl Flow {
    /// Reader side: it took a message carrying `bytes` of window from the
    /// queue (which freed a slot).
    pub(crate) fn took(&self, bytes: u64) {
        let consumed = self.consumed.fetch_add(bytes, SeqCst) + bytes;
        fence(SeqCst);
        if (bytes > 0 && consumed >= self.wake_at.load(SeqCst)) || self.parked.load(SeqCst) {
            self.wake();
        }
    }

    fn wake(&self) {
        if !self.pending.swap(true, SeqCst) {
            match self.waker.get() {
                Some(wake) => wake(),
                None => self.pending.store(false, SeqCst),
            }
        }
    }

    /// Loop side: installs the waker once.
    pub(crate) fn attach(&self, make: impl FnOnce() -> Waker) {
        if self.waker.get().is_none() {
            let _ = self.waker.set(make());
        }
    }

    /// Loop side: bytes no reader will take (it is gone) count as taken.
    pub(crate) fn discarded(&self, bytes: u64) {
        self.consumed.fetch_add(bytes, SeqCst);
    }

    pub(crate) fn consumed(&self) -> u64 {
        self.consumed.load(SeqCst)
    }

    /// Loop side: asks for a wake-up at `consumed >= at`. False if the
    /// reader is already there (the loop must look again itself).
    pub(crate) fn arm(&self, at: u64) -> bool {
        self.wake_at.store(at, SeqCst);
        fence(SeqCst);
        self.consumed.load(SeqCst) < at
    }

    /// Loop side: whether messages are parked (set before retrying the queue).
    pub(crate) fn set_parked(&self, parked: bool) {
        self.parked.store(parked, SeqCst);
        fence(SeqCst);
    }

    /// Loop side: a wake-up is being handled; later progress wakes again.
    pub(crate) fn woken(&self) {
        self.pending.store(false, SeqCst);
        fence(SeqCst);
    }
}

