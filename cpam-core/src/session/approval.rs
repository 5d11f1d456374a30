//! Approvals: policy's (and the access hook's) yes to one session, the only
//! ticket the runner accepts.

use std::fmt;

use serde_json::json;

use super::engine::SessionEngine;
use crate::error::{Error, ErrorKind, Result};
use crate::events::EngineEvent;
use crate::hooks::{AccessCheck, HookDecision};
use crate::model::{
    AuditCategory, AuditEvent, Gatekeeper, GatekeeperId, GrantId, Service, Timestamp, User, UserId,
};
use crate::policy::{self, AccessRequest, Decision};

/// Where a session's user connects from (`ADDRESS:PORT` of their client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Originator {
    pub address: String,
    pub port: u32,
    /// The local `ADDRESS:PORT` the client connected to, when an IP Connect
    /// listener took the connection (audited as `local_address`).
    pub local: Option<String>,
}

impl Originator {
    /// `address:port`.
    pub fn new(address: impl Into<String>, port: u32) -> Self {
        Self {
            address: address.into(),
            port,
            local: None,
        }
    }
}

impl fmt::Display for Originator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.address, self.port)
    }
}

/// A session policy allowed, not yet recorded. Only
/// [`SessionEngine::approve`] makes one, and only
/// [`SessionEngine::run`] consumes it: its fields are private, it has no
/// constructor and it cannot be cloned, so no code can run a session that
/// policy did not allow, nor run one approval twice.
///
/// ```compile_fail
/// use cpam_core::session::Approval;
/// // Private fields: an approval cannot be built outside the engine.
/// fn forge(a: Approval) -> Approval {
///     Approval { until: None, ..a }
/// }
/// ```
///
/// ```compile_fail
/// use cpam_core::session::Approval;
/// // Not `Clone`: one approval runs one session.
/// fn twice(a: &Approval) -> (Approval, Approval) {
///     (a.clone(), a.clone())
/// }
/// ```
///
/// ```compile_fail
/// use std::sync::Arc;
/// use cpam_core::model::SessionProtocol;
/// use cpam_core::session::{Approval, SessionEngine};
/// // No way around the runner: recording a session is the engine's own.
/// async fn start(engine: Arc<SessionEngine>, a: Approval) {
///     let _live = engine.start(a, SessionProtocol::Tcp).await;
/// }
/// ```
#[derive(Debug)]
#[must_use = "an approval does nothing until it runs (SessionEngine::run)"]
pub struct Approval {
    pub(super) user: User,
    pub(super) credential_gatekeeper: Option<GatekeeperId>,
    pub(super) gatekeeper: Gatekeeper,
    pub(super) service: Service,
    pub(super) grant_id: GrantId,
    pub(super) until: Option<Timestamp>,
    pub(super) originator: Originator,
    pub(super) at: Timestamp,
    /// The engine's revocation count before policy was read.
    pub(super) revision: u64,
}

impl Approval {
    /// Who the session is for.
    pub fn user(&self) -> &User {
        &self.user
    }

    /// The gatekeeper the session goes through.
    pub fn gatekeeper(&self) -> &Gatekeeper {
        &self.gatekeeper
    }

    /// The service approved.
    pub fn service(&self) -> &Service {
        &self.service
    }

    /// The grant that allowed it.
    pub fn grant_id(&self) -> &GrantId {
        &self.grant_id
    }

    /// When the session must end, if ever.
    pub fn until(&self) -> Option<Timestamp> {
        self.until
    }

    /// Where the user connects from.
    pub fn originator(&self) -> &Originator {
        &self.originator
    }
}

impl SessionEngine {
    /// Resolves a request by names (a gatekeeper id and a service name of
    /// its customer, as a front door receives them) and approves it; an
    /// unknown service is audited as a refusal.
    pub async fn approve_named(
        &self,
        user: &User,
        credential_gatekeeper: Option<&GatekeeperId>,
        gatekeeper_id: &str,
        service_name: &str,
        originator: &Originator,
    ) -> Result<Approval> {
        let (revision, now) = (self.revision(), self.clock().now());
        if let Some((gk, service)) = self
            .authz
            .target(gatekeeper_id, service_name, revision, now)
        {
            return self
                .approve(user, credential_gatekeeper, &gk, &service, originator)
                .await;
        }
        let store = self.store();
        let gk = store
            .gatekeeper(&GatekeeperId(gatekeeper_id.to_string()))
            .await?
            .ok_or_else(|| Error::not_found(format!("no gatekeeper `{gatekeeper_id}`")))?;
        let Some(service) = store.service_by_name(&gk.customer_id, service_name).await? else {
            let mut detail = json!({
                "service": service_name,
                "gatekeeper": gk.name,
                "reason": "unknown_service",
                "originator": originator.to_string(),
            });
            if let Some(local) = &originator.local {
                detail["local_address"] = json!(local);
            }
            self.record(AuditEvent {
                at: self.clock().now(),
                category: AuditCategory::UserActivity,
                action: "session.refused".into(),
                actor: user.name.clone(),
                customer_id: Some(gk.customer_id.clone()),
                session_id: None,
                detail,
            })
            .await;
            return Err(Error::not_found(format!(
                "no service `{service_name}` for this customer"
            )));
        };
        self.authz.put_target(
            gatekeeper_id,
            service_name,
            (gk.clone(), service.clone()),
            revision,
            now,
        );
        self.approve(user, credential_gatekeeper, &gk, &service, originator)
            .await
    }

    /// Whether the signing key of `fingerprint` still belongs to `user`,
    /// checked before each session its connection opens. Who holds a key is
    /// served from the authorization cache: a key deleted through the
    /// console, the API or the admin CLI is announced as a revocation, which
    /// ends the cached read on every node at once; one deleted behind the
    /// server's back is seen within [`super::AUTHORIZATION_TTL`]. Only a
    /// read that holds is kept.
    pub async fn key_holds(&self, user: &UserId, fingerprint: &str) -> Result<bool> {
        let (revision, now) = (self.revision(), self.clock().now());
        if self.authz.key_owner(fingerprint, revision, now).as_ref() == Some(user) {
            return Ok(true);
        }
        let Some(key) = self.store().user_key_by_fingerprint(fingerprint).await? else {
            return Ok(false);
        };
        let holds = key.user_id == *user;
        if holds {
            self.authz
                .put_key_owner(fingerprint, key.user_id, revision, now);
        }
        Ok(holds)
    }

    /// Approves a session whose client is the server itself (the browser
    /// terminal and desktop): through the service's own gatekeeper, or for
    /// a service of the whole customer the first of its gatekeepers that is
    /// online. `TunnelUnavailable` when that gatekeeper is offline.
    pub async fn approve_in_server(
        &self,
        user: &User,
        service: &Service,
        originator: &Originator,
    ) -> Result<Approval> {
        let gatekeepers = self
            .store()
            .list_gatekeepers(Some(&service.customer_id))
            .await?;
        let gatekeeper = gatekeepers
            .into_iter()
            .filter(|g| service.gatekeeper_id.as_ref().is_none_or(|id| *id == g.id))
            .find(|g| g.online)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::TunnelUnavailable,
                    format!("the gatekeeper of service `{}` is not online", service.name),
                )
            })?;
        self.approve(user, None, &gatekeeper, service, originator)
            .await
    }

    /// Checks policy, the checkout a credential-injected service needs, and
    /// the access hook; the only way to get an [`Approval`]. Its `until` is
    /// the earliest of the grant's end and the checkout's. A refusal is audited, published and returned as an
    /// error of the denial's kind; nothing is recorded for an approval until
    /// it runs, so the runner can dial the target while it records the session.
    pub async fn approve(
        &self,
        user: &User,
        credential_gatekeeper: Option<&GatekeeperId>,
        gatekeeper: &Gatekeeper,
        service: &Service,
        originator: &Originator,
    ) -> Result<Approval> {
        let now = self.clock().now();
        // Read before anything policy depends on: a revocation from here on
        // makes the runner re-check the session once it is registered.
        let revision = self.revision();
        // The user as stored now, not as the caller saw them at sign-in: a
        // user disabled since then is refused on their next session, even
        // over a connection that stays open. A read cached under this
        // revision serves only if it allows; a refusal is decided on a fresh read.
        let cached = self.authz.access(&user.id, &service.id, revision, now);
        let from_cache = cached.is_some();
        let (user, grants) = match cached {
            Some(read) => read,
            None => match self.read_access(user, service, revision, now).await? {
                Some(read) => read,
                None => {
                    return Err(self
                        .refuse_deleted(user, gatekeeper, service, originator, now)
                        .await);
                }
            },
        };
        let req = AccessRequest {
            user: &user,
            service,
            gatekeeper,
            credential_gatekeeper,
        };
        let decided = match policy::decide(&req, &grants, now) {
            Decision::Deny { .. } if from_cache => {
                match self.read_access(&user, service, revision, now).await? {
                    Some((fresh_user, fresh_grants)) => {
                        let req = AccessRequest {
                            user: &fresh_user,
                            ..req
                        };
                        let d = policy::decide(&req, &fresh_grants, now);
                        (fresh_user, fresh_grants, d)
                    }
                    None => {
                        return Err(self
                            .refuse_deleted(&user, gatekeeper, service, originator, now)
                            .await);
                    }
                }
            }
            d => (user, grants, d),
        };
        let (user, grants, decision) = decided;
        let user = &user;
        let (grant_id, until) = match decision {
            Decision::Allow { grant_id, until } => (grant_id, until),
            Decision::Deny { reason } => {
                let detail = json!({ "reason": reason, "message": reason.message() });
                let error = reason.into_error();
                return Err(self
                    .refuse(user, gatekeeper, service, originator, now, error, detail)
                    .await);
            }
        };
        // A service whose credential is injected needs an active checkout
        // too, and the session ends when the checkout does.
        let until = if service.kind.injects_credentials() {
            match crate::vault::active_checkout(self.store(), &user.id, &service.id, now).await? {
                Some(c) => Some(until.map_or(c.expires_at, |u| u.min(c.expires_at))),
                None => {
                    let error = Error::denied(format!(
                        "user `{}` holds no active checkout of `{}`; check the credential out first",
                        user.name, service.name
                    ));
                    let detail = json!({ "reason": "no_checkout", "message": error.message() });
                    return Err(self
                        .refuse(user, gatekeeper, service, originator, now, error, detail)
                        .await);
                }
            }
        } else {
            until
        };
        if let Some(hook) = self.access_hook() {
            let customer = self
                .store()
                .customer(&service.customer_id)
                .await?
                .ok_or_else(|| Error::internal("service without customer"))?;
            let grant = grants
                .iter()
                .find(|g| g.id == grant_id)
                .cloned()
                .ok_or_else(|| Error::internal("allowed by a grant that was not offered"))?;
            let check = AccessCheck {
                user: user.clone(),
                customer,
                gatekeeper: gatekeeper.clone(),
                service: service.clone(),
                grant,
                originator: originator.to_string(),
                at: now,
            };
            if let HookDecision::Deny { reason } = hook.check(&check).await {
                let detail = json!({ "reason": "access_hook", "message": reason });
                let error = Error::new(
                    ErrorKind::PermissionDenied,
                    format!("refused by the access hook: {reason}"),
                );
                return Err(self
                    .refuse(user, gatekeeper, service, originator, now, error, detail)
                    .await);
            }
        }
        Ok(Approval {
            user: user.clone(),
            credential_gatekeeper: credential_gatekeeper.cloned(),
            gatekeeper: gatekeeper.clone(),
            service: service.clone(),
            grant_id,
            until,
            originator: originator.clone(),
            at: now,
            revision,
        })
    }

    /// Reads the user as stored and their grants for `service`, and keeps
    /// them for the next approval; `None` when the user no longer exists.
    async fn read_access(
        &self,
        user: &User,
        service: &Service,
        revision: u64,
        now: Timestamp,
    ) -> Result<Option<(User, Vec<crate::model::Grant>)>> {
        let Some(fresh) = self.store().user(&user.id).await? else {
            return Ok(None);
        };
        let grants = self.store().grants_for(&fresh.id, &service.id).await?;
        self.authz
            .put_access(&service.id, (fresh.clone(), grants.clone()), revision, now);
        Ok(Some((fresh, grants)))
    }

    /// Refuses a session of a user deleted since they signed in.
    async fn refuse_deleted(
        &self,
        user: &User,
        gatekeeper: &Gatekeeper,
        service: &Service,
        originator: &Originator,
        now: Timestamp,
    ) -> Error {
        let error = Error::new(
            crate::ErrorKind::PermissionDenied,
            format!("user `{}` no longer exists", user.name),
        );
        let detail = json!({ "reason": "user_deleted", "message": error.to_string() });
        self.refuse(user, gatekeeper, service, originator, now, error, detail)
            .await
    }

    /// Audits and publishes a refused session; returns the error to report.
    #[expect(
        clippy::too_many_arguments,
        reason = "one call site per refusal source"
    )]
    async fn refuse(
        &self,
        user: &User,
        gatekeeper: &Gatekeeper,
        service: &Service,
        originator: &Originator,
        now: Timestamp,
        error: Error,
        mut detail: serde_json::Value,
    ) -> Error {
        detail["service"] = json!(service.name);
        detail["gatekeeper"] = json!(gatekeeper.name);
        detail["originator"] = json!(originator.to_string());
        if let Some(local) = &originator.local {
            detail["local_address"] = json!(local);
        }
        self.record(AuditEvent {
            at: now,
            category: AuditCategory::UserActivity,
            action: "session.refused".into(),
            actor: user.name.clone(),
            customer_id: Some(service.customer_id.clone()),
            session_id: None,
            detail,
        })
        .await;
        self.publish(EngineEvent::SessionRefused {
            user: user.name.clone(),
            customer: Some(service.customer_id.clone()),
            service: service.name.clone(),
            kind: error.kind(),
            reason: error.to_string(),
            at: now,
        });
        error
    }
}
