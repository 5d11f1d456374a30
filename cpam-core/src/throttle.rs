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

/// One sign-in attempt, counted before its password is checked (so
/// parallel attempts cannot all slip under the limit): report how it went
/// with [`Attempt::succeeded`] or [`Attempt::failed`]; dropped unreported,
/// it stays counted as a failure.
#[derive(Debug)]
#[must_use = "report the attempt's outcome"]
pub struct Attempt<'a> {
    throttle: &'a Throttle,
    at: Instant,
    /// `(key, limit)`; the first is the user's key, cleared on success.
    keys: Vec<(String, usize)>,
}

impl Attempt<'_> {
    /// The password was right: the user's failures are forgotten and this
    /// attempt no longer counts against the others.
    pub fn succeeded(self) {
        let mut map = self.throttle.keys.lock().unwrap_or_else(|p| p.into_inner());
        for (i, (key, _)) in self.keys.iter().enumerate() {
            if i == 0 {
                map.remove(key);
            } else if let Some(f) = map.get_mut(key)
                && let Some(pos) = f.at.iter().position(|t| *t == self.at)
            {
                f.at.remove(pos);
            }
        }
    }

    /// The password was wrong. Returns the key whose lockout this failure
    /// started, if any.
    pub fn failed(self) -> Option<String> {
        let now = Instant::now();
        let mut map = self.throttle.keys.lock().unwrap_or_else(|p| p.into_inner());
        let mut started = None;
        for (key, limit) in &self.keys {
            let Some(f) = map.get_mut(key) else { continue };
            if f.at.len() >= *limit && f.locked_until.is_none_or(|u| u <= now) {
                f.locked_until = Some(now + LOCKOUT);
                f.at.clear();
                started.get_or_insert_with(|| key.clone());
            }
        }
        started
    }
}

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

    /// Starts a sign-in attempt under `keys` (`(key, limit)`, the user's
    /// key first): refused with the seconds left while any key is locked,
    /// or when the attempts already counted (failed or under way) reached a
    /// key's limit, which starts its lockout.
    pub fn attempt(&self, keys: &[(&str, usize)]) -> Result<Attempt<'_>, u64> {
        let now = Instant::now();
        let mut map = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let wait = keys
            .iter()
            .filter_map(|(k, _)| map.get(*k)?.locked_until)
            .filter(|until| *until > now)
            .map(|until| until.duration_since(now).as_secs().max(1))
            .max();
        if let Some(wait) = wait {
            return Err(wait);
        }
        if map.len() >= MAX_TRACKED {
            forget_stale(&mut map, now);
        }
        for (key, limit) in keys {
            let f = map.entry((*key).to_string()).or_default();
            f.at.retain(|t| now.duration_since(*t) < WINDOW);
            if f.at.len() >= *limit {
                f.locked_until = Some(now + LOCKOUT);
                f.at.clear();
                return Err(LOCKOUT.as_secs());
            }
        }
        for (key, _) in keys {
            map.entry((*key).to_string()).or_default().at.push(now);
        }
        Ok(Attempt {
            throttle: self,
            at: now,
            keys: keys.iter().map(|(k, l)| ((*k).to_string(), *l)).collect(),
        })
    }

    /// Counts a failure for `key`; `true` when this one started a lockout.
    pub fn fail(&self, key: &str, limit: usize) -> bool {
        let now = Instant::now();
        let mut map = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED {
            forget_stale(&mut map, now);
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

/// Forgets keys with nothing recent and no lockout running.
fn forget_stale(map: &mut HashMap<String, Failures>, now: Instant) {
    map.retain(|_, f| {
        f.locked_until.is_some_and(|u| u > now)
            || f.at.iter().any(|t| now.duration_since(*t) < WINDOW)
    });
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

    #[test]
    fn parallel_attempts_are_counted_before_their_check() {
        let t = Throttle::default();
        let keys = [("user:a", USER_FAILURES), ("addr:x", ADDRESS_FAILURES)];
        // As many attempts as the limit may be under way at once; the next
        // is refused before any of them was checked.
        let running: Vec<_> = (0..USER_FAILURES)
            .map(|_| t.attempt(&keys).expect("under the limit"))
            .collect();
        assert!(t.attempt(&keys).is_err(), "one attempt past the limit");
        let started: Vec<_> = running.into_iter().filter_map(Attempt::failed).collect();
        assert!(t.locked(&["user:a"]).is_some());
        // The lockout was started by the refused attempt already.
        assert!(started.is_empty(), "{started:?}");
    }

    #[test]
    fn a_success_clears_the_user_and_uncounts_itself_for_the_address() {
        let t = Throttle::default();
        let keys = [("user:a", 3), ("addr:x", 3)];
        t.attempt(&keys).unwrap().failed();
        t.attempt(&keys).unwrap().succeeded();
        t.attempt(&keys).unwrap().failed();
        t.attempt(&keys).unwrap().failed();
        // user:a has 2 failures since its success, addr:x 3: locked.
        assert!(t.attempt(&[("user:a", 3)]).is_ok_and(|a| {
            a.succeeded();
            true
        }));
        assert!(t.locked(&["addr:x"]).is_some());
        let other = [("user:b", 3), ("addr:x", 3)];
        assert!(t.attempt(&other).is_err());
    }
}
