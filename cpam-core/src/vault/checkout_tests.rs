//! Checkouts: limits, refusals, the credential source's gate, and sessions
//! to credential-injected services (approval needs a checkout, `until` is
//! the checkout's end, checking in or revoking ends live sessions).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::tests::world;
use super::*;
use crate::clock::{Clock, ManualClock};
use crate::hooks::CredentialRequest;
use crate::model::{EndReason, Gatekeeper, SessionId, SessionProtocol, User};
use crate::session::{LiveSession, Originator, Protocol, SessionEngine, Upstream};
use crate::store::AuditFilter;
use crate::tunnel::dialer::{Connection, DialTarget, Dialer};

const HOUR: Duration = Duration::from_secs(3600);
const SOON: Duration = Duration::from_secs(5);

struct Setup {
    w: super::tests::World,
    vault: Arc<Vault>,
    user: User,
    gatekeeper: Gatekeeper,
    engine: Arc<SessionEngine>,
    clock: Arc<ManualClock>,
}

/// `vera` granted `db` (ssh, with a credential) for two hours, and `web`
/// (ssh, no credential); an engine on a manual clock.
async fn setup() -> Setup {
    let w = world().await;
    let vault = w.vault().await;
    vault
        .set_credential(
            &w.db,
            "root",
            CredentialSecret::Password(Secret::new("db-secret".into())),
            "t",
        )
        .await
        .unwrap();
    let user = w.admin.add_user("vera", None, &[], &[]).await.unwrap();
    let now = Timestamp::now();
    for s in ["db", "web"] {
        w.admin
            .add_grant("vera", "acme", s, now, Some(now.add(2 * HOUR)), None)
            .await
            .unwrap();
    }
    w.admin.add_gatekeeper("acme", "gk", HOUR).await.unwrap();
    let mut gatekeeper = w.admin.gatekeeper("gk").await.unwrap();
    gatekeeper.public_key = Some("ssh-ed25519 AAAA".into());
    let clock = Arc::new(ManualClock::new(now));
    let engine = SessionEngine::with_clock(w.store.clone(), w.audit.clone(), clock.clone());
    engine.set_credential_source(Some(Arc::new(VaultCredentialSource::new(vault.clone()))));
    Setup {
        w,
        vault,
        user,
        gatekeeper,
        engine,
        clock,
    }
}

impl Setup {
    fn request<'a>(&'a self, service: &'a Service, d: Option<Duration>) -> CheckoutRequest<'a> {
        CheckoutRequest {
            user: &self.user,
            service,
            duration: d,
            gatekeeper: None,
            credential_gatekeeper: None,
            origin: "test",
        }
    }

    async fn check_out(&self, service: &Service, d: Option<Duration>) -> Result<Checkout> {
        check_out(
            &self.w.store,
            &self.w.audit,
            self.request(service, d),
            self.clock.now(),
        )
        .await
    }

    async fn approve(&self) -> Result<crate::session::Approval> {
        self.engine
            .approve(
                &self.user,
                None,
                &self.gatekeeper,
                &self.w.db,
                &Originator::new("127.0.0.1", 4000),
            )
            .await
    }

    fn credential_request(&self) -> CredentialRequest {
        CredentialRequest {
            session: SessionId("ses_x".into()),
            user: "vera".into(),
            customer: self.w.db.customer_id.clone(),
            service: self.w.db.clone(),
        }
    }

    async fn actions(&self) -> Vec<String> {
        let records = self
            .w
            .store
            .audit_records(&AuditFilter::default())
            .await
            .unwrap();
        records.into_iter().map(|r| r.event.action).collect()
    }
}

use crate::model::Checkout;

#[tokio::test]
async fn checkouts_respect_limits_grants_and_credentials_and_refusals_are_audited() {
    let s = setup().await;
    // No credential stored for `web`.
    let e = s.check_out(&s.w.web, None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.message().contains("no credential"), "{e}");
    // Over the service's limit.
    s.w.admin
        .set_checkout_limit(&s.w.db, Some(Duration::from_secs(1800)))
        .await
        .unwrap();
    let e = s.check_out(&s.w.db, Some(HOUR)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.message().contains("at most 30m"), "{e}");
    assert!(s.check_out(&s.w.db, Some(Duration::ZERO)).await.is_err());
    // A user without a grant.
    let other = s.w.admin.add_user("otto", None, &[], &[]).await.unwrap();
    let req = CheckoutRequest {
        user: &other,
        ..s.request(&s.w.db, None)
    };
    let e = check_out(&s.w.store, &s.w.audit, req, s.clock.now())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert!(
        s.w.store
            .list_checkouts(&Default::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.actions()
            .await
            .iter()
            .filter(|a| *a == "checkout.refused")
            .count(),
        4
    );

    // Within the limit: the default length is the limit.
    let c = s.check_out(&s.w.db, None).await.unwrap();
    assert_eq!(c.expires_at, s.clock.now().add(Duration::from_secs(1800)));
    assert_eq!(c.status(s.clock.now()), "active");
    let e = s.check_out(&s.w.db, None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    // Without a limit, a checkout still never outlasts its grant.
    s.w.admin
        .set_checkout_limit(&s.w.db, Some(10 * HOUR))
        .await
        .unwrap();
    check_in(&s.w.store, &s.w.audit, &s.user, &c.id, s.clock.now())
        .await
        .unwrap();
    let c = s.check_out(&s.w.db, Some(5 * HOUR)).await.unwrap();
    assert_eq!(c.expires_at, s.clock.now().add(2 * HOUR));
    // Someone else's checkout is not found; an ended one is a conflict.
    let e = check_in(&s.w.store, &s.w.audit, &other, &c.id, s.clock.now())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    s.w.admin
        .revoke_checkout(c.id.as_str(), Some("incident"))
        .await
        .unwrap();
    let e =
        s.w.admin
            .revoke_checkout(c.id.as_str(), None)
            .await
            .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    let ended = s.w.store.checkout(&c.id).await.unwrap().unwrap();
    assert_eq!(ended.status(s.clock.now()), "revoked");
    assert_eq!(ended.ended_by.as_deref(), Some("test"));
    let actions = s.actions().await;
    for a in ["checkout.start", "checkout.end", "checkout.revoke"] {
        assert!(
            actions.iter().any(|x| x == a),
            "{a} not audited: {actions:?}"
        );
    }
}

#[tokio::test]
async fn the_credential_source_hands_out_a_credential_only_during_a_checkout() {
    let s = setup().await;
    let e = s
        .engine
        .credential(&s.credential_request())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert!(e.message().contains("no active checkout"), "{e}");
    let c = s.check_out(&s.w.db, Some(HOUR)).await.unwrap();
    let cred = s
        .engine
        .credential(&s.credential_request())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (cred.username.as_str(), cred.secret.expose().as_str()),
        ("root", "db-secret")
    );
    check_in(&s.w.store, &s.w.audit, &s.user, &c.id, Timestamp::now())
        .await
        .unwrap();
    let e = s
        .engine
        .credential(&s.credential_request())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert_eq!(s.vault.current_version(), 1);
}

/// Holds until the session must end.
#[derive(Debug)]
struct Hold;

#[async_trait]
impl Protocol for Hold {
    fn kind(&self) -> SessionProtocol {
        SessionProtocol::Ssh
    }
    async fn run(&self, _user: Connection, _up: Upstream, live: &LiveSession) -> Result<()> {
        live.cancel().cancelled().await;
        Ok(())
    }
}

#[derive(Debug)]
struct Pipe;

#[async_trait]
impl Dialer for Pipe {
    async fn dial(&self, _t: &DialTarget) -> Result<Connection> {
        let (ours, theirs) = tokio::io::duplex(1024);
        std::mem::forget(theirs);
        Ok(Connection::stream(ours))
    }
}

impl Setup {
    async fn run(&self) -> tokio::task::JoinHandle<Result<crate::model::Session>> {
        let approval = self.approve().await.expect("approved");
        let mut events = self.engine.subscribe();
        let engine = self.engine.clone();
        let (user, peer) = tokio::io::duplex(1024);
        std::mem::forget(peer);
        let task = tokio::spawn(async move {
            engine
                .run(
                    approval,
                    Box::new(Connection::stream(user)),
                    Arc::new(Pipe),
                    &Hold,
                )
                .await
        });
        loop {
            match tokio::time::timeout(SOON, events.recv()).await {
                Ok(Ok(crate::events::EngineEvent::SessionStarted { .. })) => break,
                Ok(Ok(_)) => continue,
                other => panic!("no session started: {other:?}"),
            }
        }
        task
    }
}

#[tokio::test]
async fn sessions_need_a_checkout_and_end_when_it_expires() {
    let s = setup().await;
    let e = s.approve().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert!(e.message().contains("no active checkout of `db`"), "{e}");
    let refused =
        s.w.store
            .audit_records(&AuditFilter::default())
            .await
            .unwrap();
    assert!(
        refused
            .iter()
            .any(|r| r.event.action == "session.refused"
                && r.event.detail["reason"] == "no_checkout")
    );

    let c = s.check_out(&s.w.db, Some(HOUR)).await.unwrap();
    assert_eq!(s.approve().await.unwrap().until(), Some(c.expires_at));
    let task = s.run().await;
    s.clock.advance(HOUR);
    let session = tokio::time::timeout(SOON, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(session.end_reason, Some(EndReason::Expired));
}

#[tokio::test]
async fn checking_in_or_revoking_ends_live_sessions_on_recheck() {
    let s = setup().await;
    let c = s.check_out(&s.w.db, Some(HOUR)).await.unwrap();
    let task = s.run().await;
    check_in(&s.w.store, &s.w.audit, &s.user, &c.id, s.clock.now())
        .await
        .unwrap();
    assert_eq!(s.engine.recheck().await.unwrap(), 1);
    let session = tokio::time::timeout(SOON, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(session.end_reason, Some(EndReason::Revoked));
    assert!(
        session
            .end_detail
            .unwrap_or_default()
            .contains("checked_in")
    );

    s.clock.advance(Duration::from_secs(1));
    let c = s.check_out(&s.w.db, Some(HOUR)).await.unwrap();
    let task = s.run().await;
    // A recheck with the checkout still active ends nothing.
    assert_eq!(s.engine.recheck().await.unwrap(), 0);
    s.clock.advance(Duration::from_secs(1));
    s.w.admin
        .revoke_checkout(c.id.as_str(), None)
        .await
        .unwrap();
    assert_eq!(s.engine.recheck().await.unwrap(), 1);
    let session = tokio::time::timeout(SOON, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(session.end_reason, Some(EndReason::Revoked));
    assert!(session.end_detail.unwrap_or_default().contains("revoked"));
}
