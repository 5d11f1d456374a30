//! What a session's observers still hold of its output (a recorder's queue
//! to disk), so a protocol can wait for room before it reads more from the
//! target: a slow disk then slows the session down instead of ending it.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// Bytes held for one session by its observers; see the module docs.
#[derive(Debug, Default)]
pub struct Backlog {
    bytes: AtomicUsize,
    drained: Notify,
}

impl Backlog {
    /// Above this many bytes held, [`Backlog::room`] waits.
    pub const HIGH: usize = 8 << 20;

    /// An observer took `n` more bytes.
    pub fn add(&self, n: usize) {
        self.bytes.fetch_add(n, Ordering::AcqRel);
    }

    /// An observer is done with `n` bytes.
    pub fn sub(&self, n: usize) {
        let before = self
            .bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                Some(b.saturating_sub(n))
            })
            .unwrap_or(0);
        if before > Self::HIGH && before.saturating_sub(n) <= Self::HIGH {
            self.drained.notify_waiters();
        }
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }

    /// Returns once at most [`Backlog::HIGH`] bytes are held.
    pub async fn room(&self) {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.bytes() <= Self::HIGH {
                return;
            }
            drained.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::Backlog;

    #[tokio::test]
    async fn room_waits_above_the_mark_and_returns_once_drained() {
        let b = Arc::new(Backlog::default());
        b.room().await;
        b.add(Backlog::HIGH + 10);
        let waiter = tokio::spawn({
            let b = b.clone();
            async move { b.room().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "room() returned above the mark");
        b.sub(5);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "still above the mark");
        b.sub(5);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("room() returned once drained")
            .expect("the waiter ran");
        b.sub(usize::MAX);
        assert_eq!(b.bytes(), 0, "never below zero");
    }
}
