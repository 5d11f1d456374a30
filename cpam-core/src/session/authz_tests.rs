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
use crate::model::{Gatekeeper, Service, ServiceKind, Timestamp, User};
use crate::store::{SqlStore, Store};

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
