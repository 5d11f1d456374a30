//! The tracker wired to one SSH channel pair: the SSH proxy hands it the
//! `sftp` subsystem's bytes in both directions.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use russh::ChannelWriteHalf;
use serde_json::json;
use tokio::sync::mpsc;

use super::{Event, Fatal, FilePolicy, Tracker, events};
use crate::model::Timestamp;
use crate::session::SessionControl;

/// One `sftp` channel under observation.
#[derive(Debug)]
pub struct SftpHook {
    tracker: Mutex<Tracker>,
    control: SessionControl,
    to_target: std::sync::Arc<ChannelWriteHalf<russh::client::Msg>>,
    /// Packets the proxy answers the vendor itself; the channel's relay
    /// writes them between the target's packets, and closes the vendor's
    /// channel on an empty one.
    to_vendor: mpsc::UnboundedSender<Bytes>,
    broken: AtomicBool,
}

impl SftpHook {
    pub fn new(
        policy: FilePolicy,
        control: SessionControl,
        to_target: std::sync::Arc<ChannelWriteHalf<russh::client::Msg>>,
        to_vendor: mpsc::UnboundedSender<Bytes>,
    ) -> Self {
        Self {
            tracker: Mutex::new(Tracker::new(policy)),
            control,
            to_target,
            to_vendor,
            broken: AtomicBool::new(false),
        }
    }

    fn tracker(&self) -> std::sync::MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The vendor's bytes: passed to the target as far as the policy
    /// allows. `false` when the stream broke and the channel is ending.
    pub async fn up(&self, data: &[u8]) -> bool {
        if self.broken.load(Ordering::Acquire) {
            return false;
        }
        let result = self.tracker().up(data, Timestamp::now());
        match result {
            Ok(out) => {
                for p in out.to_vendor {
                    let _ = self.to_vendor.send(p);
                }
                for p in out.to_target {
                    if self.to_target.data_bytes(p).await.is_err() {
                        return false;
                    }
                }
                self.record(out.events).await;
                true
            }
            Err(fatal) => {
                self.fail(fatal).await;
                false
            }
        }
    }

    /// The target's bytes: returns the packets for the vendor, or `None`
    /// when the stream broke and the channel must end.
    pub async fn down(&self, data: &[u8]) -> Option<Vec<Bytes>> {
        if self.broken.load(Ordering::Acquire) {
            return None;
        }
        let result = self.tracker().down(data, Timestamp::now());
        match result {
            Ok(out) => {
                for p in out.to_target {
                    if self.to_target.data_bytes(p).await.is_err() {
                        return None;
                    }
                }
                self.record(out.events).await;
                Some(out.to_vendor)
            }
            Err(fatal) => {
                self.fail(fatal).await;
                None
            }
        }
    }

    /// The channel or the session ended: files still open are recorded
    /// `incomplete` (once).
    pub async fn finish(&self) {
        let events = self.tracker().finish(Timestamp::now());
        self.record(events).await;
    }

    async fn fail(&self, fatal: Fatal) {
        if self.broken.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::warn!(session = %self.control.id(), error = %fatal, "sftp stream refused; ending the channel");
        let _ = self
            .control
            .record_event(
                events::MALFORMED,
                json!({ "direction": fatal.direction, "reason": fatal.reason }),
            )
            .await;
        self.finish().await;
        let _ = self.to_vendor.send(Bytes::new());
        let _ = self.to_target.eof().await;
        let _ = self.to_target.close().await;
    }

    async fn record(&self, events: Vec<Event>) {
        for e in events {
            if let Err(err) = self.control.record_event(e.action, e.detail).await {
                tracing::warn!(session = %self.control.id(), error = %err, "file event not recorded");
            }
        }
    }
}
