//! The approval cache against a real store: what it serves, and the
//! revocations and the time bound that end it.

use std::sync::Arc;
use std::time::Duration;

use super::{AUTHORIZATION_TTL, Originator, SessionEngine};
use crate::admin::Admin;
use crate::audit::StoreAuditSink;
use crate::clock::ManualClock;
use crate::error::ErrorKind;
use crate::events::Revocation;
use crate::model::{Gatekeeper, KeyId, Service, ServiceKind, Timestamp, User, UserId, UserKey};
use crate::store::{ControlBus, LocalBus, SqlStore, Store};

const HOUR: Duration = Duration::from_secs(3600);

struct World {
    engine: Arc<SessionEngine>,
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    user: User,
    gatekeeper: Gatekeeper,
    service: Service,
}

async fn world() -> World {
    let start = Timestamp::now();
    let clock = Arc::new(ManualClock::new(start));
    let store: Arc<dyn Store> = Arc::new(SqlStore::connect("sqlite::memory:").await.unwrap());
    let audit = Arc::new(StoreAuditSink::new(store.clone()));
    let admin = Admin::new(store.clone(), audit.clone(), "test");
    admin.ensure_builtin_roles().await.unwrap();
    admin.add_customer("acme").await.unwrap();
    admin.add_gatekeeper("acme", "gk", HOUR).await.unwrap();
    let user = admin.add_user("vera", None, &[], &[]).await.unwrap();
    let service = admin
        .add_service("acme", "ssh", "10.0.0.5:22", ServiceKind::Custom)
        .await
        .unwrap();
    admin
        .add_grant("vera", "acme", "ssh", start, Some(start.add(HOUR)), None)
        .await
        .unwrap();
    let mut gatekeeper = admin.gatekeeper("gk").await.unwrap();
    gatekeeper.public_key = Some("ssh-ed25519 AAAA".into());
    gatekeeper.registered_at = Some(start);
    World {
        engine: SessionEngine::with_clock(store.clone(), audit, clock.clone()),
        store,
        clock,
        user,
        gatekeeper,
        service,
    }
}

impl World {
    async fn approve(&self) -> crate::Result<()> {
        self.engine
            .approve(
                &self.user,
                None,
                &self.gatekeeper,
                &self.service,
                &Originator::new("127.0.0.1", 40000),
            )
            .await
            .map(drop)
    }
}

#[tokio::test]
async fn approvals_reuse_what_they_read_until_a_revocation_or_the_time_bound() {
    let w = world().await;
    w.approve().await.expect("allowed");
    // Changed behind the engine's back: the next approval does not read
    // the database again.
    w.store.set_user_disabled(&w.user.id, true).await.unwrap();
    w.approve()
        .await
        .expect("served from what the first approval read");
    // Never longer than the time bound.
    w.clock.advance(AUTHORIZATION_TTL);
    let refused = w
        .approve()
        .await
        .expect_err("read afresh once the bound passed");
    assert_eq!(refused.kind(), ErrorKind::PermissionDenied, "{refused}");

    // A revocation is seen by the very next approval.
    w.store.set_user_disabled(&w.user.id, false).await.unwrap();
    w.approve().await.expect("enabled again");
    w.store.set_user_disabled(&w.user.id, true).await.unwrap();
    w.engine
        .revoke(&Revocation::user(&w.user.id, "user vera disabled"));
    let refused = w
        .approve()
        .await
        .expect_err("refused right after the revocation");
    assert_eq!(refused.kind(), ErrorKind::PermissionDenied, "{refused}");
}

#[tokio::test]
async fn a_refusal_is_never_served_from_the_cache() {
    let w = world().await;
    w.store.set_user_disabled(&w.user.id, true).await.unwrap();
    w.approve().await.expect_err("disabled");
    w.store.set_user_disabled(&w.user.id, false).await.unwrap();
    w.approve().await.expect("enabled again: allowed at once");
    // And a cached read that would refuse is decided on a fresh one.
    w.clock.advance(HOUR + HOUR);
    w.approve().await.expect_err("the grant has ended");
}

/// A key of `user`, as enrolled.
fn key_of(user: &User) -> UserKey {
    UserKey {
        id: KeyId::generate(),
        user_id: user.id.clone(),
        public_key: "ssh-ed25519 AAAA".into(),
        fingerprint: "SHA256:vera-laptop".into(),
        label: "laptop".into(),
        gatekeeper_id: None,
        created_at: Timestamp::now(),
    }
}

#[tokio::test]
async fn who_holds_a_key_is_read_again_after_its_revocation_on_every_node() {
    let w = world().await;
    // A second node sharing the store; both joined to one control bus.
    let other = SessionEngine::with_clock(
        w.store.clone(),
        Arc::new(StoreAuditSink::new(w.store.clone())),
        w.clock.clone(),
    );
    w.engine.set_node("node-a").unwrap();
    other.set_node("node-b").unwrap();
    let bus: Arc<dyn ControlBus> = Arc::new(LocalBus::default());
    let _a = w.engine.join_cluster(bus.clone()).await.unwrap();
    let _b = other.join_cluster(bus).await.unwrap();
    let nodes = [&w.engine, &other];
    let key = key_of(&w.user);
    let fp = key.fingerprint.clone();
    w.store.add_user_key(&key).await.unwrap();
    for node in nodes {
        assert!(node.key_holds(&w.user.id, &fp).await.unwrap(), "enrolled");
        assert!(
            !node.key_holds(&UserId::generate(), &fp).await.unwrap(),
            "someone else's key"
        );
    }

    // Deleted behind the engines' back: what they read serves, never longer
    // than the time bound.
    assert!(w.store.delete_user_key(&w.user.id, &key.id).await.unwrap());
    for node in nodes {
        assert!(node.key_holds(&w.user.id, &fp).await.unwrap(), "cached");
    }
    w.clock.advance(AUTHORIZATION_TTL);
    for node in nodes {
        assert!(
            !node.key_holds(&w.user.id, &fp).await.unwrap(),
            "bound passed"
        );
    }

    // Deleted and revoked on node a: refused there at once and, once the
    // bus carried the revocation, on node b, with the clock standing still
    // (so the time bound cannot be what ends the cached read).
    w.store.add_user_key(&key).await.unwrap();
    for node in nodes {
        assert!(
            node.key_holds(&w.user.id, &fp).await.unwrap(),
            "enrolled again"
        );
    }
    assert!(w.store.delete_user_key(&w.user.id, &key.id).await.unwrap());
    w.engine
        .revoke(&Revocation::key(&fp, "key of vera deleted"));
    assert!(
        !w.engine.key_holds(&w.user.id, &fp).await.unwrap(),
        "refused on the node that deleted it"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while other.key_holds(&w.user.id, &fp).await.unwrap() {
        assert!(
            std::time::Instant::now() < deadline,
            "node b still serves the deleted key 5 s after its revocation"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
