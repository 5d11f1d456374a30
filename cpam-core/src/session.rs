//! The session engine: every connection through cpam is a [`LiveSession`]
//! here, from authorization to its end reason.
//!
//! The engine checks policy, writes the Session record and the audit events,
//! keeps the registry of live sessions, arms expiry timers, and ends sessions
//! on request (terminate, revoke, customer switch). Proxies get a
//! [`LiveSession`] with a cancellation token and byte counters; recording,
//! live watchers and credential injection attach at the same place.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use serde_json::json;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::audit::AuditSink;
use crate::error::{Error, ErrorKind, Result};
use crate::events::{EVENT_BUFFER, EngineEvent};
use crate::hooks::{
    AccessCheck, AccessHook, Credential, CredentialRequest, CredentialSource, HookDecision,
};
use crate::model::{
    AuditCategory, AuditEvent, EndReason, Gatekeeper, GatekeeperId, GrantId, Service, Session,
    SessionId, Timestamp, User,
};
use crate::policy::{self, AccessRequest, Decision};
use crate::proxy::tcp::Counters;
use crate::store::Store;

/// A session's end as decided by whoever ended it first.
type EndSlot = Arc<Mutex<Option<(EndReason, Option<String>)>>>;

#[derive(Debug)]
struct Entry {
    session: Session,
    cancel: CancellationToken,
    end: EndSlot,
    counters: Arc<Counters>,
    user: User,
    service: Service,
    gatekeeper: Gatekeeper,
    credential_gatekeeper: Option<GatekeeperId>,
}

/// The registry of live sessions.
#[derive(Debug)]
pub struct SessionEngine {
    store: Arc<dyn Store>,
    audit: Arc<dyn AuditSink>,
    live: Mutex<HashMap<SessionId, Entry>>,
    tasks: TaskTracker,
    hooks: RwLock<Hooks>,
    events: broadcast::Sender<EngineEvent>,
}

#[derive(Debug, Default, Clone)]
struct Hooks {
    access: Option<Arc<dyn AccessHook>>,
    credentials: Option<Arc<dyn CredentialSource>>,
}

/// What a proxy needs to run one authorized session.
#[derive(Debug)]
pub struct LiveSession {
    /// The session record as it started.
    pub session: Session,
    /// Fires when the session must end (terminate, expiry, revoke, shutdown).
    pub cancel: CancellationToken,
    /// Bytes moved; read when the session ends.
    pub counters: Arc<Counters>,
    end: EndSlot,
    engine: Arc<SessionEngine>,
}

/// A session policy allowed, not yet recorded (see [`SessionEngine::approve`]).
#[derive(Debug, Clone)]
pub struct Approval {
    pub user: User,
    pub credential_gatekeeper: Option<GatekeeperId>,
    pub gatekeeper: Gatekeeper,
    pub service: Service,
    pub grant_id: GrantId,
    pub until: Option<Timestamp>,
    pub originator: String,
    pub at: Timestamp,
}

/// One live session as listed by [`SessionEngine::live`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct LiveInfo {
    #[serde(flatten)]
    pub session: Session,
}

impl SessionEngine {
    /// An engine writing to `store` and `audit`.
    pub fn new(store: Arc<dyn Store>, audit: Arc<dyn AuditSink>) -> Arc<Self> {
        Arc::new(Self {
            store,
            audit,
            live: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
            hooks: RwLock::default(),
            events: broadcast::channel(EVENT_BUFFER).0,
        })
    }

    /// Sets (or clears) the hook that sees every session the built-in
    /// policy allowed and may refuse it.
    pub fn set_access_hook(&self, hook: Option<Arc<dyn AccessHook>>) {
        self.hooks.write().unwrap_or_else(|p| p.into_inner()).access = hook;
    }

    /// Sets (or clears) where injected credentials come from.
    pub fn set_credential_source(&self, source: Option<Arc<dyn CredentialSource>>) {
        self.hooks
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .credentials = source;
    }

    /// The credential to inject for a session, from the configured
    /// [`CredentialSource`]. Fails with `NotFound` when none is configured.
    pub async fn credential(&self, request: &CredentialRequest) -> Result<Option<Credential>> {
        let source = self.hooks().credentials;
        match source {
            Some(source) => source.credential(request).await,
            None => Err(Error::not_found("no credential source is configured")),
        }
    }

    /// Watches what happens: sessions starting, ending and refused, and
    /// gatekeepers coming and going.
    pub fn subscribe(&self) -> broadcast::Receiver<EngineEvent> {
        self.events.subscribe()
    }

    /// Publishes an event to every watcher (none is fine).
    pub fn publish(&self, event: EngineEvent) {
        let _ = self.events.send(event);
    }

    fn hooks(&self) -> Hooks {
        self.hooks.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The store the engine writes sessions to.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The audit sink.
    pub fn audit(&self) -> &Arc<dyn AuditSink> {
        &self.audit
    }

    /// Records an audit event; a failing sink is logged, never swallowed silently.
    pub async fn record(&self, event: AuditEvent) {
        if let Err(error) = self.audit.record(event).await {
            tracing::error!(%error, "audit sink failed");
        }
    }

    /// Checks policy and, when allowed, starts a session.
    ///
    /// A refusal is audited and returned as an error of the denial's kind.
    pub async fn authorize(
        self: &Arc<Self>,
        user: &User,
        credential_gatekeeper: Option<&GatekeeperId>,
        gatekeeper: &Gatekeeper,
        service: &Service,
        originator: &str,
    ) -> Result<LiveSession> {
        let approval = self
            .approve(user, credential_gatekeeper, gatekeeper, service, originator)
            .await?;
        self.start(approval).await
    }

    /// The read-only half of [`SessionEngine::authorize`]: checks policy and
    /// audits a refusal. A proxy may dial the target while [`SessionEngine::start`]
    /// records the approved session.
    pub async fn approve(
        &self,
        user: &User,
        credential_gatekeeper: Option<&GatekeeperId>,
        gatekeeper: &Gatekeeper,
        service: &Service,
        originator: &str,
    ) -> Result<Approval> {
        let now = Timestamp::now();
        let grants = self.store.grants_for(&user.id, &service.id).await?;
        let req = AccessRequest {
            user,
            service,
            gatekeeper,
            credential_gatekeeper,
        };
        let (grant_id, until) = match policy::decide(&req, &grants, now) {
            Decision::Allow { grant_id, until } => (grant_id, until),
            Decision::Deny { reason } => {
                let detail = json!({ "reason": reason, "message": reason.message() });
                let error = reason.into_error();
                return Err(self
                    .refuse(user, gatekeeper, service, originator, now, error, detail)
                    .await);
            }
        };
        if let Some(hook) = self.hooks().access {
            let customer = self
                .store
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
            originator: originator.to_string(),
            at: now,
        })
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
        originator: &str,
        now: Timestamp,
        error: Error,
        mut detail: serde_json::Value,
    ) -> Error {
        detail["service"] = json!(service.name);
        detail["gatekeeper"] = json!(gatekeeper.name);
        detail["originator"] = json!(originator);
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

    /// Records an approved session, registers it live and arms its expiry.
    pub async fn start(self: &Arc<Self>, approval: Approval) -> Result<LiveSession> {
        let Approval {
            user,
            credential_gatekeeper,
            gatekeeper,
            service,
            grant_id,
            until,
            originator,
            at: now,
        } = approval;
        let session = Session {
            id: SessionId::generate(),
            user_id: user.id.clone(),
            user_name: user.name.clone(),
            customer_id: service.customer_id.clone(),
            gatekeeper_id: Some(gatekeeper.id.clone()),
            service_id: service.id.clone(),
            service_name: service.name.clone(),
            target: service.target.clone(),
            grant_id: Some(grant_id),
            protocol: crate::model::SessionProtocol::Tcp,
            node_id: None,
            started_at: now,
            ended_at: None,
            bytes_up: 0,
            bytes_down: 0,
            end_reason: None,
            end_detail: None,
        };
        self.store.insert_session(&session).await?;
        self.record(AuditEvent {
            at: now,
            category: AuditCategory::UserActivity,
            action: "session.start".into(),
            actor: user.name.clone(),
            customer_id: Some(service.customer_id.clone()),
            session_id: Some(session.id.clone()),
            detail: json!({
                "service": service.name,
                "target": service.target.to_string(),
                "gatekeeper": gatekeeper.name,
                "originator": originator,
                "until": until.map(|u| u.to_rfc3339()),
            }),
        })
        .await;
        let cancel = CancellationToken::new();
        let end: EndSlot = Arc::default();
        let counters = Arc::new(Counters::default());
        self.live.lock().unwrap_or_else(|p| p.into_inner()).insert(
            session.id.clone(),
            Entry {
                session: session.clone(),
                cancel: cancel.clone(),
                end: end.clone(),
                counters: counters.clone(),
                user,
                service,
                gatekeeper,
                credential_gatekeeper,
            },
        );
        if let Some(until) = until {
            self.arm_expiry(session.id.clone(), until, cancel.clone(), end.clone());
        }
        self.publish(EngineEvent::SessionStarted {
            session: session.clone(),
        });
        Ok(LiveSession {
            session,
            cancel,
            counters,
            end,
            engine: self.clone(),
        })
    }

    fn arm_expiry(&self, id: SessionId, until: Timestamp, cancel: CancellationToken, end: EndSlot) {
        self.tasks.spawn(async move {
            let wait = Timestamp::now().until(until);
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep(wait) => {
                    tracing::info!(session = %id, "grant window closed, ending session");
                    end_with(&end, &cancel, EndReason::Expired, Some("grant window closed".into()));
                }
            }
        });
    }

    /// Ends a live session with reason `terminated_by`. Returns whether it was live.
    pub fn terminate(&self, id: &SessionId, by: &str, reason: Option<&str>) -> bool {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let Some(e) = live.get(id) else { return false };
        let detail = match reason {
            Some(r) if !r.is_empty() => format!("{by}: {r}"),
            _ => by.to_string(),
        };
        end_with(&e.end, &e.cancel, EndReason::TerminatedBy, Some(detail));
        true
    }

    /// Ends every live session through `gatekeeper` with `reason`.
    pub fn end_gatekeeper_sessions(
        &self,
        gatekeeper: &GatekeeperId,
        reason: EndReason,
        detail: &str,
    ) -> usize {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let mut n = 0;
        for e in live
            .values()
            .filter(|e| e.session.gatekeeper_id.as_ref() == Some(gatekeeper))
        {
            end_with(&e.end, &e.cancel, reason, Some(detail.to_string()));
            n += 1;
        }
        n
    }

    /// Ends every live session with `reason` (server shutdown).
    pub fn end_all(&self, reason: EndReason, detail: &str) {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        for e in live.values() {
            end_with(&e.end, &e.cancel, reason, Some(detail.to_string()));
        }
    }

    /// Re-decides every live session against current grants; ends the ones no
    /// longer allowed (`revoked`, or `expired` when a window closed).
    pub async fn recheck(&self) -> Result<usize> {
        let entries: Vec<_> = {
            let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
            live.values()
                .map(|e| {
                    (
                        e.user.clone(),
                        e.service.clone(),
                        e.gatekeeper.clone(),
                        e.credential_gatekeeper.clone(),
                        e.end.clone(),
                        e.cancel.clone(),
                    )
                })
                .collect()
        };
        let now = Timestamp::now();
        let mut ended = 0;
        for (user, service, gatekeeper, cred, end, cancel) in entries {
            let user = self.store.user(&user.id).await?.unwrap_or(user);
            let grants = self.store.grants_for(&user.id, &service.id).await?;
            let req = AccessRequest {
                user: &user,
                service: &service,
                gatekeeper: &gatekeeper,
                credential_gatekeeper: cred.as_ref(),
            };
            if let Decision::Deny { reason } = policy::decide(&req, &grants, now) {
                let end_reason = match reason.kind() {
                    crate::ErrorKind::AccessExpired => EndReason::Expired,
                    _ => EndReason::Revoked,
                };
                end_with(
                    &end,
                    &cancel,
                    end_reason,
                    Some(reason.message().to_string()),
                );
                ended += 1;
            }
        }
        Ok(ended)
    }

    /// The live sessions with their current byte counts.
    pub fn live(&self) -> Vec<LiveInfo> {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.values()
            .map(|e| {
                let mut session = e.session.clone();
                (session.bytes_up, session.bytes_down) = e.counters.snapshot();
                LiveInfo { session }
            })
            .collect()
    }

    /// Waits for the engine's timers to stop (after [`SessionEngine::end_all`]).
    pub async fn close(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

fn end_with(end: &EndSlot, cancel: &CancellationToken, reason: EndReason, detail: Option<String>) {
    let mut slot = end.lock().unwrap_or_else(|p| p.into_inner());
    if slot.is_none() {
        *slot = Some((reason, detail));
    }
    cancel.cancel();
}

impl LiveSession {
    /// The session id.
    pub fn id(&self) -> &SessionId {
        &self.session.id
    }

    /// Records the end: the reason set by whoever cancelled the session, or
    /// `default` when the connection simply ended. Writes the record and the
    /// audit event and leaves the registry.
    pub async fn finish(self, default: EndReason, detail: Option<String>) -> Session {
        let (reason, detail) = self
            .end
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or((default, detail));
        self.cancel.cancel();
        let (up, down) = self.counters.snapshot();
        let now = Timestamp::now();
        self.engine
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.session.id);
        if let Err(error) = self
            .engine
            .store
            .finish_session(&self.session.id, now, up, down, reason, detail.as_deref())
            .await
        {
            tracing::error!(%error, session = %self.session.id, "cannot record the end of a session");
        }
        self.engine
            .record(AuditEvent {
                at: now,
                category: AuditCategory::UserActivity,
                action: "session.end".into(),
                actor: self.session.user_name.clone(),
                customer_id: Some(self.session.customer_id.clone()),
                session_id: Some(self.session.id.clone()),
                detail: json!({
                    "reason": reason,
                    "detail": detail,
                    "bytes_up": up,
                    "bytes_down": down,
                    "service": self.session.service_name,
                }),
            })
            .await;
        let mut s = self.session;
        s.ended_at = Some(now);
        s.bytes_up = up;
        s.bytes_down = down;
        s.end_reason = Some(reason);
        s.end_detail = detail;
        self.engine
            .publish(EngineEvent::SessionEnded { session: s.clone() });
        s
    }
}
