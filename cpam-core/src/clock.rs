//! The [`Clock`] seam: where the engine reads the time and waits for a
//! moment, so expiry and end-reason races are tested without waiting.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::model::Timestamp;

/// Reads the time and sleeps until a moment.
#[async_trait]
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> Timestamp;
    /// Returns once [`Clock::now`] has reached `at` (at once if it has).
    async fn sleep_until(&self, at: Timestamp);
}

/// The system's wall clock, with tokio's timers.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    async fn sleep_until(&self, at: Timestamp) {
        // Re-check after waking: the wall clock may have been set back.
        loop {
            let wait = Timestamp::now().until(at);
            if wait.is_zero() {
                return;
            }
            tokio::time::sleep(wait).await;
        }
    }
}

/// A clock that moves only when told to ([`ManualClock::advance`],
/// [`ManualClock::set`]); sleepers wake when it passes their moment.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Timestamp>,
    changed: watch::Sender<Timestamp>,
}

impl ManualClock {
    /// A clock standing at `at`.
    pub fn new(at: Timestamp) -> Self {
        Self {
            now: Mutex::new(at),
            changed: watch::channel(at).0,
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now = now.add(by);
        self.changed.send_replace(*now);
    }

    /// Sets the clock to `at` (forward or back).
    pub fn set(&self, at: Timestamp) {
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) = at;
        self.changed.send_replace(at);
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn sleep_until(&self, at: Timestamp) {
        let mut changes = self.changed.subscribe();
        // The sender lives as long as `self`, so waiting cannot fail.
        let _ = changes.wait_for(|now| *now >= at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_wakes_sleepers_only_when_it_passes_their_moment() {
        let clock = std::sync::Arc::new(ManualClock::new(Timestamp(1_000)));
        assert_eq!(clock.now(), Timestamp(1_000));
        let c = clock.clone();
        let sleeper = tokio::spawn(async move { c.sleep_until(Timestamp(5_000)).await });
        clock.advance(Duration::from_secs(3));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished(), "woke at 4s for a 5s moment");
        clock.advance(Duration::from_secs(1));
        tokio::time::timeout(Duration::from_secs(1), sleeper)
            .await
            .expect("wakes once the moment is reached")
            .expect("join");
        assert_eq!(clock.now(), Timestamp(5_000));
        // A moment already past returns at once.
        clock.set(Timestamp(0));
        assert_eq!(clock.now(), Timestamp(0));
        tokio::time::timeout(Duration::from_secs(1), clock.sleep_until(Timestamp(0)))
            .await
            .expect("no wait for the present");
    }

    #[tokio::test]
    async fn the_system_clock_returns_for_a_past_moment() {
        let past = SystemClock.now().add(Duration::ZERO);
        tokio::time::timeout(Duration::from_secs(1), SystemClock.sleep_until(past))
            .await
            .expect("no wait for the past");
    }
}
