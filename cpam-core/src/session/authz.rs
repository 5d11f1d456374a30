//! What approvals read, kept for a moment: a new session through the same
//! gatekeeper to the same service by the same user is decided without
//! reading the database again.
//!
//! Sans I/O: the engine reads the store and puts what it read here,
//! stamped with the engine's revocation count (`revision`) read *before*
//! the store was read. An entry serves only while the revision is the same
//! and for at most [`TTL`]:
//!
//! - every revocation, re-check and gatekeeper shutdown moves the revision
//!   (after the store holds the change), so a user disabled, a key or
//!   gatekeeper deleted or a grant revoked through the console, the API or
//!   the admin CLI (which tells the running server over its control socket)
//!   is seen by the very next approval;
//! - a change no one announces (a service edited, a store written by other
//!   code) is seen within [`TTL`], the same bound as the 1-second revocation
//!   guarantee.
//!
//! Only reads that can allow are served from here: an approval that a cached
//! read would refuse is decided again on a fresh read (a new grant works at
//! once). Policy itself (time windows, the gatekeeper's state, checkouts,
//! the access hook) is evaluated on every approval.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use crate::model::{Gatekeeper, Grant, Service, ServiceId, Timestamp, User, UserId};

/// How long a read serves at most.
pub const TTL: Duration = Duration::from_secs(1);
/// Entries per map; past it, expired ones go, and if none had, all.
const MAX_ENTRIES: usize = 16_384;

/// Entries by key, each stamped with the revision and time of its read.
type Stamps<K, V> = Mutex<HashMap<K, Stamped<V>>>;

#[derive(Debug)]
struct Stamped<T> {
    revision: u64,
    at: Timestamp,
    value: T,
}

/// The cache: targets by (gatekeeper id, service name), a user's record
/// with their grants for a service, and who holds a signing key (by its
/// fingerprint). A key deleted through the console, the API or the admin CLI
/// is announced as a revocation naming it, which moves the revision on every
/// node of the cluster; one deleted behind the server's back is refused
/// within [`TTL`].
#[derive(Debug, Default)]
pub(super) struct AuthzCache {
    targets: Stamps<(String, String), (Gatekeeper, Service)>,
    access: Stamps<(UserId, ServiceId), (User, Vec<Grant>)>,
    key_owners: Stamps<String, UserId>,
}

impl AuthzCache {
    /// The gatekeeper and service named, if read under `revision` less than [`TTL`] ago.
    pub(super) fn target(
        &self,
        gatekeeper: &str,
        service: &str,
        revision: u64,
        now: Timestamp,
    ) -> Option<(Gatekeeper, Service)> {
        get(
            &self.targets,
            &(gatekeeper.to_string(), service.to_string()),
            revision,
            now,
        )
    }

    pub(super) fn put_target(
        &self,
        gatekeeper: &str,
        service_name: &str,
        value: (Gatekeeper, Service),
        revision: u64,
        now: Timestamp,
    ) {
        put(
            &self.targets,
            (gatekeeper.to_string(), service_name.to_string()),
            value,
            revision,
            now,
        );
    }

    /// The user as stored and their grants for `service`, if read under
    /// `revision` less than [`TTL`] ago.
    pub(super) fn access(
        &self,
        user: &UserId,
        service: &ServiceId,
        revision: u64,
        now: Timestamp,
    ) -> Option<(User, Vec<Grant>)> {
        get(
            &self.access,
            &(user.clone(), service.clone()),
            revision,
            now,
        )
    }

    pub(super) fn put_access(
        &self,
        service: &ServiceId,
        value: (User, Vec<Grant>),
        revision: u64,
        now: Timestamp,
    ) {
        let key = (value.0.id.clone(), service.clone());
        put(&self.access, key, value, revision, now);
    }

    /// The user holding the key of `fingerprint`, if read under `revision`
    /// less than [`TTL`] ago.
    pub(super) fn key_owner(
        &self,
        fingerprint: &str,
        revision: u64,
        now: Timestamp,
    ) -> Option<UserId> {
        get(&self.key_owners, &fingerprint.to_string(), revision, now)
    }

    pub(super) fn put_key_owner(
        &self,
        fingerprint: &str,
        owner: UserId,
        revision: u64,
        now: Timestamp,
    ) {
        put(
            &self.key_owners,
            fingerprint.to_string(),
            owner,
            revision,
            now,
        );
    }
}

fn fresh<T>(e: &Stamped<T>, revision: u64, now: Timestamp) -> bool {
    let age = now.millis().saturating_sub(e.at.millis());
    e.revision == revision && (0..ttl_millis()).contains(&age)
}

fn ttl_millis() -> i64 {
    i64::try_from(TTL.as_millis()).unwrap_or(i64::MAX)
}

fn get<K: Eq + Hash, V: Clone>(
    map: &Stamps<K, V>,
    key: &K,
    revision: u64,
    now: Timestamp,
) -> Option<V> {
    let map = map.lock().unwrap_or_else(|p| p.into_inner());
    map.get(key)
        .filter(|e| fresh(e, revision, now))
        .map(|e| e.value.clone())
}

fn put<K: Eq + Hash, V>(map: &Stamps<K, V>, key: K, value: V, revision: u64, now: Timestamp) {
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    if map.len() >= MAX_ENTRIES {
        map.retain(|_, e| fresh(e, revision, now));
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
    }
    map.insert(
        key,
        Stamped {
            revision,
            at: now,
            value,
        },
    );
}
