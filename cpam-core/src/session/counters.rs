//! Bytes moved by a session, in each direction.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Which way bytes move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the user towards the target.
    Up,
    /// From the target towards the user.
    Down,
}

/// Bytes moved in each direction; a live session owns one.
#[derive(Debug, Default)]
pub struct Counters {
    /// From the user towards the target.
    pub up: AtomicU64,
    /// From the target towards the user.
    pub down: AtomicU64,
}

impl Counters {
    /// `(up, down)` now.
    pub fn snapshot(&self) -> (u64, u64) {
        (
            self.up.load(Ordering::Relaxed),
            self.down.load(Ordering::Relaxed),
        )
    }

    /// Adds `n` bytes moved in `direction`.
    pub fn add(&self, direction: Direction, n: u64) {
        match direction {
            Direction::Up => self.up.fetch_add(n, Ordering::Relaxed),
            Direction::Down => self.down.fetch_add(n, Ordering::Relaxed),
        };
    }
}

/// What a byte pump tells about each chunk it moves: counters only, or a
/// live session's counters and its data observers.
pub trait Meter: Send + Sync {
    /// `data` moved in `direction`.
    fn moved(&self, direction: Direction, data: &[u8]);
}

impl Meter for Counters {
    fn moved(&self, direction: Direction, data: &[u8]) {
        self.add(direction, data.len() as u64);
    }
}

impl<M: Meter + ?Sized> Meter for Arc<M> {
    fn moved(&self, direction: Direction, data: &[u8]) {
        (**self).moved(direction, data);
    }
}
