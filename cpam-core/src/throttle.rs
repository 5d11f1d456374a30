//! Failed sign-in bookkeeping shared by every front door that checks a
//! password (the web console's login; the SSH hub can take the same one):
//! after [`USER_FAILURES`] failures for one user name (or
//! [`ADDRESS_FAILURES`] from one address) within [`WINDOW`], sign-ins are
//! refused for [`LOCKOUT`], even with the right password. In memory, per
//! process; keys are free-form (`user:NAME`, `addr:IP`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed logins for one user name that start a lockout.
pub const USER_FAILURES: usize = 5;
/// Failed logins from one client address that start a lockout.
pub const ADDRESS_FAILURES: usize = 20;
/// The window failures are counted in.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// How long a lockout lasts.
pub const LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// Beyond this many tracked keys, stale ones are forgotten.
const MAX_TRACKED: usize = 10_000;

/// Failed-login bookkeeping, in memory.
#[derive(Debug, Default)]
pub struct Throttle {
    keys: Mutex<HashMap<String, Failures>>,
}

#[derive(Debug, Default)]
struct Failures {
    at: Vec<Instant>,
    locked_until: Option<Instant>,
}

impl Throttle {
    /// Seconds left on the longest lockout among `keys`, if any.
    pub fn locked(&self, keys: &[&str]) -> Option<u64> {
        let now = Instant::now();
        let map = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter()
            .filter_map(|k| map.get(*k)?.locked_until)
            .filter(|until| *until > now)
            .map(|until| until.duration_since(now).as_secs().max(1))
            .max()
    }

    /// Counts a failure for `key`; `true` when this one started a lockout.
    pub fn fail(&self, key: &str, limit: usize) -> bool {
        let now = Instant::now();
        let mut map = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED {
            // Forget keys with nothing recent and no lockout running.
            map.retain(|_, f| {
                f.locked_until.is_some_and(|u| u > now)
                    || f.at.iter().any(|t| now.duration_since(*t) < WINDOW)
            });
        }
        let f = map.entry(key.to_string()).or_default();
        f.at.retain(|t| now.duration_since(*t) < WINDOW);
        f.at.push(now);
        if f.at.len() >= limit && f.locked_until.is_none_or(|u| u <= now) {
            f.locked_until = Some(now + LOCKOUT);
            f.at.clear();
            return true;
        }
        false
    }

    /// Forgets the failures of `key` (after a successful login).
    pub fn clear(&self, key: &str) {
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_locks_at_the_limit_and_clears() {
        let t = Throttle::default();
        for _ in 0..USER_FAILURES - 1 {
            assert!(!t.fail("user:a", USER_FAILURES));
        }
        assert_eq!(t.locked(&["user:a"]), None);
        assert!(t.fail("user:a", USER_FAILURES));
        assert!(t.locked(&["user:a", "addr:x"]).is_some());
        assert_eq!(t.locked(&["user:b"]), None);
        t.clear("user:a");
        assert_eq!(t.locked(&["user:a"]), None);
    }
}
