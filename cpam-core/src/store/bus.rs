//! The control bus: how a terminate, a revocation or a re-check made on one
//! node reaches the node that holds the session.
//!
//! Messages are opaque text (the engine's JSON); the bus only carries them
//! to every subscriber, the sender's own included, at most once and in
//! order per sender. PostgreSQL carries them with `NOTIFY` on one channel
//! ([`super::SqlStore`]); a single node uses [`LocalBus`], in process.

use async_trait::async_trait;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::error::Result;

/// How many messages a subscriber may fall behind before it loses some.
pub(crate) const BUS_BUFFER: usize = 1024;

/// Carries control messages between the nodes sharing a store.
#[async_trait]
pub trait ControlBus: Send + Sync + std::fmt::Debug {
    /// Sends `message` to every subscriber of every node.
    async fn publish(&self, message: &str) -> Result<()>;
    /// Starts receiving; messages published before this call are not seen.
    async fn subscribe(&self) -> Result<ControlSubscription>;
}

/// The messages of one subscriber; dropping it stops the task feeding it.
#[derive(Debug)]
pub struct ControlSubscription {
    rx: mpsc::Receiver<String>,
    feeder: Option<JoinHandle<()>>,
}

impl ControlSubscription {
    /// A subscription fed through `rx` by `feeder` (stopped on drop).
    pub fn new(rx: mpsc::Receiver<String>, feeder: Option<JoinHandle<()>>) -> Self {
        ControlSubscription { rx, feeder }
    }

    /// The next message; `None` once the bus is gone.
    pub async fn recv(&mut self) -> Option<String> {
        self.rx.recv().await
    }
}

impl Drop for ControlSubscription {
    fn drop(&mut self) {
        if let Some(feeder) = self.feeder.take() {
            feeder.abort();
        }
    }
}

/// The in-process bus of a single node.
#[derive(Debug, Clone)]
pub struct LocalBus {
    tx: broadcast::Sender<String>,
}

impl Default for LocalBus {
    fn default() -> Self {
        LocalBus {
            tx: broadcast::channel(BUS_BUFFER).0,
        }
    }
}

#[async_trait]
impl ControlBus for LocalBus {
    async fn publish(&self, message: &str) -> Result<()> {
        // No subscriber is not an error: nobody holds a session to reach.
        let _ = self.tx.send(message.to_string());
        Ok(())
    }

    async fn subscribe(&self) -> Result<ControlSubscription> {
        let mut from = self.tx.subscribe();
        let (tx, rx) = mpsc::channel(BUS_BUFFER);
        let feeder = tokio::spawn(async move {
            loop {
                match from.recv().await {
                    Ok(m) => {
                        if tx.send(m).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(lost = n, "control bus subscriber fell behind");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(ControlSubscription::new(rx, Some(feeder)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_bus_delivers_to_every_subscriber_in_order() {
        let bus = LocalBus::default();
        let (mut a, mut b) = (
            bus.subscribe().await.unwrap(),
            bus.subscribe().await.unwrap(),
        );
        for m in ["one", "two"] {
            bus.publish(m).await.unwrap();
        }
        for s in [&mut a, &mut b] {
            assert_eq!(s.recv().await.as_deref(), Some("one"));
            assert_eq!(s.recv().await.as_deref(), Some("two"));
        }
    }
}
