//! What one client may hold on the hub: connections that have not signed in
//! yet, channels per connection and per user, and how long each may wait.
//!
//! Sans I/O: [`PreAuth`] and [`ChannelSlots`] are counters with guards; the
//! hub enforces what they answer.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::model::UserId;

/// The hub's resource limits (`hub_limits` in a data dir's `config.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HubLimits {
    /// Connections that have not signed in yet, in all; beyond it the
    /// oldest such connection is closed.
    pub max_unauthenticated: usize,
    /// Connections that have not signed in yet from one address; beyond it
    /// that address's oldest such connection is closed.
    pub max_unauthenticated_per_address: usize,
    /// Seconds from the TCP accept to a successful sign-in (version line,
    /// key exchange and authentication together).
    pub login_timeout_secs: u64,
    /// Open channels on one connection; more are refused.
    pub max_channels_per_connection: usize,
    /// Open channels of one user over all their connections; more are refused.
    pub max_channels_per_user: usize,
    /// Seconds a session channel may wait for its `exec` request before it
    /// is closed.
    pub channel_request_timeout_secs: u64,
}

impl Default for HubLimits {
    fn default() -> Self {
        Self {
            max_unauthenticated: 1024,
            max_unauthenticated_per_address: 256,
            login_timeout_secs: 30,
            max_channels_per_connection: 4096,
            max_channels_per_user: 4096,
            channel_request_timeout_secs: 10,
        }
    }
}

impl HubLimits {
    /// [`HubLimits::login_timeout_secs`] as a duration.
    pub fn login_timeout(&self) -> Duration {
        Duration::from_secs(self.login_timeout_secs.max(1))
    }

    /// [`HubLimits::channel_request_timeout_secs`] as a duration.
    pub fn channel_request_timeout(&self) -> Duration {
        Duration::from_secs(self.channel_request_timeout_secs.max(1))
    }
}

/// Connections that have not signed in yet. Admitting one past a limit
/// closes the oldest one instead of refusing the newcomer, so a flood of
/// stalled handshakes cannot keep a real client (which signs in within
/// milliseconds) out.
#[derive(Debug)]
pub(super) struct PreAuth {
    max: usize,
    per_address: usize,
    state: Mutex<PreAuthState>,
}

#[derive(Debug, Default)]
struct PreAuthState {
    /// By connection number (so the first is the oldest).
    waiting: BTreeMap<u64, (IpAddr, CancellationToken)>,
    by_address: HashMap<IpAddr, usize>,
    evicted: u64,
}

/// A connection's place among those not signed in yet; dropping it (on
/// sign-in or close) frees the place.
#[derive(Debug)]
pub(super) struct PreAuthSlot {
    gate: Arc<PreAuth>,
    conn: u64,
    /// Cancelled when a newer connection took this one's place.
    pub(super) evicted: CancellationToken,
}

impl PreAuth {
    pub(super) fn new(limits: &HubLimits) -> Arc<Self> {
        Arc::new(Self {
            max: limits.max_unauthenticated.max(1),
            per_address: limits.max_unauthenticated_per_address.max(1),
            state: Mutex::default(),
        })
    }

    /// Admits connection `conn` from `addr`, closing older ones past a limit.
    pub(super) fn admit(self: &Arc<Self>, conn: u64, addr: IpAddr) -> PreAuthSlot {
        let evicted = CancellationToken::new();
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.by_address.get(&addr).copied().unwrap_or(0) >= self.per_address {
            let oldest = s
                .waiting
                .iter()
                .find(|(_, (a, _))| *a == addr)
                .map(|(c, _)| *c);
            if let Some(c) = oldest {
                s.evict(c);
            }
        }
        if s.waiting.len() >= self.max
            && let Some(c) = s.waiting.keys().next().copied()
        {
            s.evict(c);
        }
        s.waiting.insert(conn, (addr, evicted.clone()));
        *s.by_address.entry(addr).or_default() += 1;
        PreAuthSlot {
            gate: self.clone(),
            conn,
            evicted,
        }
    }

    /// Connections waiting to sign in, and how many were closed for newer ones.
    #[cfg(test)]
    pub(super) fn counts(&self) -> (usize, u64) {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        (s.waiting.len(), s.evicted)
    }
}

impl PreAuthState {
    fn evict(&mut self, conn: u64) {
        if let Some((_, token)) = self.forget(conn) {
            token.cancel();
            self.evicted += 1;
        }
    }

    fn forget(&mut self, conn: u64) -> Option<(IpAddr, CancellationToken)> {
        let (addr, token) = self.waiting.remove(&conn)?;
        if let Some(n) = self.by_address.get_mut(&addr) {
            *n -= 1;
            if *n == 0 {
                self.by_address.remove(&addr);
            }
        }
        Some((addr, token))
    }
}

impl Drop for PreAuthSlot {
    fn drop(&mut self) {
        self.gate
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .forget(self.conn);
    }
}

/// Open channels per user, over all their connections.
#[derive(Debug)]
pub(super) struct ChannelSlots {
    per_connection: usize,
    per_user: usize,
    users: Mutex<HashMap<UserId, usize>>,
}

/// Which limit refused a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChannelLimit {
    Connection,
    User,
}

/// One open channel; dropping it frees its place.
#[derive(Debug)]
pub(super) struct ChannelSlot {
    slots: Arc<ChannelSlots>,
    conn: Arc<std::sync::atomic::AtomicUsize>,
    user: Option<UserId>,
}

impl ChannelSlots {
    pub(super) fn new(limits: &HubLimits) -> Arc<Self> {
        Arc::new(Self {
            per_connection: limits.max_channels_per_connection.max(1),
            per_user: limits.max_channels_per_user.max(1),
            users: Mutex::default(),
        })
    }

    /// Takes a place for a channel of connection `conn` (its open channel
    /// count) signed in as `user` (none: a gatekeeper).
    pub(super) fn take(
        self: &Arc<Self>,
        conn: &Arc<std::sync::atomic::AtomicUsize>,
        user: Option<&UserId>,
    ) -> Result<ChannelSlot, ChannelLimit> {
        use std::sync::atomic::Ordering;
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        if conn.load(Ordering::SeqCst) >= self.per_connection {
            return Err(ChannelLimit::Connection);
        }
        if let Some(u) = user {
            let n = users.entry(u.clone()).or_default();
            if *n >= self.per_user {
                return Err(ChannelLimit::User);
            }
            *n += 1;
        }
        conn.fetch_add(1, Ordering::SeqCst);
        Ok(ChannelSlot {
            slots: self.clone(),
            conn: conn.clone(),
            user: user.cloned(),
        })
    }

    /// Open channels of `user`.
    #[cfg(test)]
    pub(super) fn of_user(&self, user: &UserId) -> usize {
        let users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        users.get(user).copied().unwrap_or(0)
    }
}

impl Drop for ChannelSlot {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering;
        let mut users = self.slots.users.lock().unwrap_or_else(|p| p.into_inner());
        self.conn.fetch_sub(1, Ordering::SeqCst);
        if let Some(u) = &self.user
            && let Some(n) = users.get_mut(u)
        {
            *n -= 1;
            if *n == 0 {
                users.remove(u);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    fn limits(max: usize, per_address: usize) -> HubLimits {
        HubLimits {
            max_unauthenticated: max,
            max_unauthenticated_per_address: per_address,
            ..HubLimits::default()
        }
    }

    #[test]
    fn a_full_gate_closes_the_oldest_waiting_connection_not_the_newcomer() {
        let gate = PreAuth::new(&limits(3, 10));
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let slots: Vec<_> = (1..=3).map(|c| gate.admit(c, a)).collect();
        let newcomer = gate.admit(4, "127.0.0.1".parse().unwrap());
        assert!(slots[0].evicted.is_cancelled());
        assert!(!slots[1].evicted.is_cancelled() && !slots[2].evicted.is_cancelled());
        assert!(!newcomer.evicted.is_cancelled());
        assert_eq!(gate.counts(), (3, 1));
        drop(slots);
        assert_eq!(gate.counts(), (1, 1));
    }

    #[test]
    fn one_address_past_its_limit_loses_its_own_oldest() {
        let gate = PreAuth::new(&limits(100, 2));
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let other = gate.admit(1, b);
        let first = gate.admit(2, a);
        let _second = gate.admit(3, a);
        let third = gate.admit(4, a);
        assert!(first.evicted.is_cancelled());
        assert!(!other.evicted.is_cancelled());
        assert!(!third.evicted.is_cancelled());
        assert_eq!(gate.counts(), (3, 1));
    }

    #[test]
    fn channels_are_capped_per_connection_and_per_user_and_freed_on_drop() {
        let slots = ChannelSlots::new(&HubLimits {
            max_channels_per_connection: 3,
            max_channels_per_user: 4,
            ..HubLimits::default()
        });
        let user = UserId("usr_a".into());
        let (c1, c2) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut held: Vec<_> = (0..3)
            .map(|_| slots.take(&c1, Some(&user)).unwrap())
            .collect();
        assert_eq!(
            slots.take(&c1, Some(&user)).unwrap_err(),
            ChannelLimit::Connection
        );
        held.push(slots.take(&c2, Some(&user)).unwrap());
        assert_eq!(
            slots.take(&c2, Some(&user)).unwrap_err(),
            ChannelLimit::User
        );
        // A gatekeeper's channels count per connection only.
        assert!(slots.take(&c2, None).is_ok());
        held.truncate(1);
        assert_eq!(slots.of_user(&user), 1);
        assert!(slots.take(&c1, Some(&user)).is_ok());
        drop(held);
        assert_eq!(slots.of_user(&user), 0);
    }
}
