use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::mpsc::Sender;
use tokio::sync::mpsc::error::TrySendError;

use super::flow::{Flow, Waker, window_bytes};
use super::{ChannelReadHalf, WindowSizeRef};
use crate::ChannelMsg;

/// Messages other than data a channel parks before the session loop waits
/// for its reader after all (cpam fork): only a peer flooding one channel
/// with requests its reader does not take gets there, and it stalls only
/// its own connection, as upstream does for every message.
const MAX_PARKED_CONTROLS: usize = 1024;

/// A handle to the [`super::Channel`]'s to be able to transmit messages
/// to it and update it's `window_size`.
///
/// cpam fork: the session loop's end of a channel. It hands messages to the
/// reader without waiting (parking them in order while the queue is full)
/// and counts the window bytes it received; see `flow.rs`.
#[derive(Debug)]
pub struct ChannelRef {
    pub(super) sender: Sender<ChannelMsg>,
    pub(super) window_size: WindowSizeRef,
    pub(crate) flow: Arc<Flow>,
    /// Whether the reader counts what it takes ([`ChannelRef::pair`]); a
    /// `ChannelRef::new` has an unknown reader and its window re-opens on
    /// receipt, as upstream.
    metered: bool,
    parked: VecDeque<ChannelMsg>,
    parked_controls: usize,
    /// Window bytes received since the channel opened.
    received: u64,
}

impl ChannelRef {
    pub fn new(sender: Sender<ChannelMsg>) -> Self {
        Self {
            sender,
            window_size: WindowSizeRef::new(0),
            flow: Arc::default(),
            metered: false,
            parked: VecDeque::new(),
            parked_controls: 0,
            received: 0,
        }
    }

    /// A loop end and the reader that counts what it takes.
    pub(crate) fn pair(buffer: usize, window_size: WindowSizeRef) -> (Self, ChannelReadHalf) {
        let (sender, receiver) = tokio::sync::mpsc::channel(buffer);
        let flow: Arc<Flow> = Arc::default();
        let read_half = ChannelReadHalf {
            receiver,
            flow: flow.clone(),
        };
        let this = Self {
            sender,
            window_size,
            flow,
            metered: true,
            parked: VecDeque::new(),
            parked_controls: 0,
            received: 0,
        };
        (this, read_half)
    }

    pub(crate) fn window_size(&self) -> &WindowSizeRef {
        &self.window_size
    }

    pub(crate) fn received(&self) -> u64 {
        self.received
    }

    /// Installs the loop's waker (once).
    pub(crate) fn attach(&self, make: impl FnOnce() -> Waker) {
        self.flow.attach(make)
    }

    /// Hands `msg` to the reader: never waits on a full queue, except for
    /// a flood of requests past [`MAX_PARKED_CONTROLS`].
    pub(crate) async fn deliver(&mut self, msg: ChannelMsg) {
        let bytes = window_bytes(&msg);
        self.received += bytes;
        if !self.metered {
            self.flow.discarded(bytes);
        }
        if !self.parked.is_empty() {
            self.park(msg);
        } else {
            match self.sender.try_send(msg) {
                Ok(()) => {}
                Err(TrySendError::Full(msg)) => {
                    self.park(msg);
                    self.flow.set_parked(true);
                    // The reader may have freed room before it could see
                    // `parked`: look again.
                    self.flush_parked();
                }
                Err(TrySendError::Closed(msg)) => self.flow.discarded(window_bytes(&msg)),
            }
        }
        while self.parked_controls > MAX_PARKED_CONTROLS {
            let Some(msg) = self.pop_parked() else { break };
            if let Err(e) = self.sender.send(msg).await {
                self.flow.discarded(window_bytes(&e.0));
                self.discard_parked();
            }
        }
    }

    /// Moves parked messages to the queue while it has room.
    pub(crate) fn flush_parked(&mut self) {
        while let Some(msg) = self.pop_parked() {
            match self.sender.try_send(msg) {
                Ok(()) => {}
                Err(TrySendError::Full(msg)) => {
                    self.park_front(msg);
                    return;
                }
                Err(TrySendError::Closed(msg)) => {
                    self.flow.discarded(window_bytes(&msg));
                    self.discard_parked();
                }
            }
        }
        self.flow.set_parked(false);
    }

    /// The reader woke the loop: deliver what waits.
    pub(crate) fn woken(&mut self) {
        self.flow.woken();
        if !self.parked.is_empty() {
            self.flush_parked();
        }
    }

    /// Tells the reader of a window adjustment (informational, dropped
    /// when there is no room, as upstream).
    pub(crate) fn window_adjusted(&self, new_size: u32) {
        if self.parked.is_empty() {
            let _ = self
                .sender
                .try_send(ChannelMsg::WindowAdjusted { new_size });
        }
    }

    fn park(&mut self, msg: ChannelMsg) {
        if window_bytes(&msg) == 0 {
            self.parked_controls += 1;
        }
        self.parked.push_back(msg);
    }

    fn park_front(&mut self, msg: ChannelMsg) {
        if window_bytes(&msg) == 0 {
            self.parked_controls += 1;
        }
        self.parked.push_front(msg);
    }

    fn pop_parked(&mut self) -> Option<ChannelMsg> {
        let msg = self.parked.pop_front()?;
        if window_bytes(&msg) == 0 {
            self.parked_controls -= 1;
        }
        Some(msg)
    }

    fn discard_parked(&mut self) {
        while let Some(msg) = self.pop_parked() {
            self.flow.discarded(window_bytes(&msg));
        }
    }
}

impl Drop for ChannelRef {
    /// A channel closed or a session ended with messages parked: they still
    /// reach the reader, in order, without the loop waiting for it.
    fn drop(&mut self) {
        if self.parked.is_empty() {
            return;
        }
        let parked = std::mem::take(&mut self.parked);
        let sender = self.sender.clone();
        #[cfg(not(target_arch = "wasm32"))]
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                for msg in parked {
                    if sender.send(msg).await.is_err() {
                        break;
                    }
                }
            });
        }
        #[cfg(target_arch = "wasm32")]
        for msg in parked {
            let _ = sender.try_send(msg);
        }
    }
}
