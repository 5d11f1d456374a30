//! Integrator hooks: the places where an embedding product plugs its own
//! decisions and secrets into the session engine.
//!
//! * [`AccessHook`] sees every session the built-in policy allowed and may
//!   still refuse it (a ticketing check, a change window, a second approver).
//! * [`CredentialSource`] supplies the credential a protocol proxy injects
//!   for a session, so the user never sees it.
//!
//! Both are optional and set on [`SessionEngine`](crate::session::SessionEngine).
//! They run on the engine's tokio runtime, inside the session's start path:
//! a slow hook delays that one session, never others.

use serde::Serialize;

use crate::error::Result;
use crate::model::{Customer, CustomerId, Gatekeeper, Grant, Service, SessionId, Timestamp, User};
use crate::secret::Secret;

/// What an [`AccessHook`] decides on: a session the built-in policy allowed.
///
/// Serializes to JSON for hooks across the C ABI and Python; the user's
/// password hash is never serialized.
#[derive(Debug, Clone, Serialize)]
pub struct AccessCheck {
    pub user: User,
    pub customer: Customer,
    pub gatekeeper: Gatekeeper,
    pub service: Service,
    /// The grant that allowed the session.
    pub grant: Grant,
    /// Where the vendor's connection came from, as the Connection Manager
    /// reported it.
    pub originator: String,
    pub at: Timestamp,
}

/// An [`AccessHook`]'s answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookDecision {
    Allow,
    /// Refuse the session; `reason` is audited and shown to the user.
    Deny {
        reason: String,
    },
}

/// A last word on every session the built-in policy allowed.
#[async_trait::async_trait]
pub trait AccessHook: Send + Sync + std::fmt::Debug {
    /// Called after the built-in policy allowed a session; may refuse it.
    async fn check(&self, check: &AccessCheck) -> HookDecision;
}

/// What kind of secret a [`Credential`] carries (defined with the vault's model).
pub use crate::model::CredentialKind;

/// A credential to inject into a session.
#[derive(Debug, Clone)]
pub struct Credential {
    pub username: String,
    pub kind: CredentialKind,
    pub secret: Secret<String>,
}

/// What a [`CredentialSource`] is asked for.
#[derive(Debug, Clone, Serialize)]
pub struct CredentialRequest {
    pub session: SessionId,
    pub user: String,
    pub customer: CustomerId,
    pub service: Service,
}

/// Where the engine gets credentials it injects (a vault, an integrator's
/// own secret store).
#[async_trait::async_trait]
pub trait CredentialSource: Send + Sync + std::fmt::Debug {
    /// The credential to inject for a session; `None` when the service
    /// needs none.
    async fn credential(&self, request: &CredentialRequest) -> Result<Option<Credential>>;
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::ErrorKind;
    use crate::admin::Admin;
    use crate::audit::StoreAuditSink;
    use crate::events::EngineEvent;
    use crate::model::{EndReason, ServiceKind, SessionProtocol};
    use crate::session::{Originator, SessionEngine};
    use crate::store::{AuditFilter, SqlStore, Store};

    #[derive(Debug)]
    struct DenyService(&'static str);

    #[async_trait::async_trait]
    impl AccessHook for DenyService {
        async fn check(&self, check: &AccessCheck) -> HookDecision {
            if check.service.name == self.0 {
                HookDecision::Deny {
                    reason: format!("change window closed for {}", check.customer.name),
                }
            } else {
                HookDecision::Allow
            }
        }
    }

    #[derive(Debug)]
    struct OneCredential;

    #[async_trait::async_trait]
    impl CredentialSource for OneCredential {
        async fn credential(&self, request: &CredentialRequest) -> Result<Option<Credential>> {
            Ok((request.service.name == "db").then(|| Credential {
                username: "svc".into(),
                kind: CredentialKind::Password,
                secret: Secret::new("s3cret".into()),
            }))
        }
    }

    fn origin() -> Originator {
        Originator::new("127.0.0.1", 40000)
    }

    struct World {
        engine: Arc<SessionEngine>,
        store: Arc<dyn Store>,
        user: User,
        gatekeeper: Gatekeeper,
        ssh: Service,
        db: Service,
    }

    async fn world() -> World {
        let store: Arc<dyn Store> = Arc::new(SqlStore::connect("sqlite::memory:").await.unwrap());
        let audit = Arc::new(StoreAuditSink::new(store.clone()));
        let admin = Admin::new(store.clone(), audit.clone(), "test");
        admin.ensure_builtin_roles().await.unwrap();
        admin.add_customer("acme").await.unwrap();
        admin
            .add_gatekeeper("acme", "gk", Duration::from_secs(60))
            .await
            .unwrap();
        let user = admin.add_user("vera", None, &[], &[]).await.unwrap();
        let mut services = Vec::new();
        for name in ["ssh", "db"] {
            services.push(
                admin
                    .add_service("acme", name, "10.0.0.5:22", ServiceKind::Custom)
                    .await
                    .unwrap(),
            );
            admin
                .add_grant("vera", "acme", name, Timestamp::now(), None, None)
                .await
                .unwrap();
        }
        let mut gatekeeper = admin.gatekeeper("gk").await.unwrap();
        gatekeeper.public_key = Some("ssh-ed25519 AAAA".into());
        gatekeeper.registered_at = Some(Timestamp::now());
        let db = services.pop().unwrap();
        let ssh = services.pop().unwrap();
        World {
            engine: SessionEngine::new(store.clone(), audit),
            store,
            user,
            gatekeeper,
            ssh,
            db,
        }
    }

    #[tokio::test]
    async fn an_access_hook_refuses_what_policy_allowed_and_the_refusal_is_audited() {
        let w = world().await;
        w.engine.set_access_hook(Some(Arc::new(DenyService("ssh"))));
        let mut events = w.engine.subscribe();

        let e = w
            .engine
            .approve(&w.user, None, &w.gatekeeper, &w.ssh, &origin())
            .await
            .expect_err("the hook refuses ssh");
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert!(e.message().contains("change window closed for acme"), "{e}");
        match events.recv().await.unwrap() {
            EngineEvent::SessionRefused { kind, reason, .. } => {
                assert_eq!(kind, ErrorKind::PermissionDenied);
                assert!(reason.contains("change window"), "{reason}");
            }
            other => panic!("unexpected event {other:?}"),
        }
        let refused = w
            .store
            .audit_records(&AuditFilter::default())
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.event.action == "session.refused")
            .expect("the refusal is audited");
        assert_eq!(refused.event.detail["reason"], "access_hook");

        // The same hook lets another service through, and the session's
        // start and end are published.
        let approval = w
            .engine
            .approve(&w.user, None, &w.gatekeeper, &w.db, &origin())
            .await
            .expect("the hook allows db");
        let live = w
            .engine
            .start(approval, SessionProtocol::Tcp)
            .await
            .unwrap();
        assert!(matches!(
            events.recv().await.unwrap(),
            EngineEvent::SessionStarted { session } if &session.id == live.id()
        ));
        let id = live.id().clone();
        live.finish(EndReason::Completed, None).await;
        assert!(matches!(
            events.recv().await.unwrap(),
            EngineEvent::SessionEnded { session }
                if session.id == id && session.end_reason == Some(EndReason::Completed)
        ));

        // Cleared, the hook no longer applies.
        w.engine.set_access_hook(None);
        let approval = w
            .engine
            .approve(&w.user, None, &w.gatekeeper, &w.ssh, &origin())
            .await
            .expect("no hook, policy alone allows");
        let live = w
            .engine
            .start(approval, SessionProtocol::Tcp)
            .await
            .unwrap();
        live.finish(EndReason::Completed, None).await;
    }

    #[tokio::test]
    async fn credentials_come_from_the_configured_source() {
        let w = world().await;
        let request = |service: &Service| CredentialRequest {
            session: SessionId("ses_x".into()),
            user: w.user.name.clone(),
            customer: service.customer_id.clone(),
            service: service.clone(),
        };
        let e = w.engine.credential(&request(&w.db)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);

        w.engine
            .set_credential_source(Some(Arc::new(OneCredential)));
        let c = w.engine.credential(&request(&w.db)).await.unwrap().unwrap();
        assert_eq!(c.username, "svc");
        assert_eq!(c.secret.expose(), "s3cret");
        assert_eq!(format!("{c:?}").matches("s3cret").count(), 0);
        assert!(
            w.engine
                .credential(&request(&w.ssh))
                .await
                .unwrap()
                .is_none()
        );
    }
}
