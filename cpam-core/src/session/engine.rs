//! The engine: the registry of live sessions, the integrator's hooks and
//! observers, and the ways a session ends from outside (terminate, revoke,
//! the customer's switch, shutdown).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::broadcast;
use tokio_util::task::TaskTracker;

use super::authz::AuthzCache;
use super::live::Shared;
use super::observer::{ObserverFactory, SessionObserver};
use crate::audit::AuditSink;
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, ErrorKind, Result};
use crate::events::{EVENT_BUFFER, EngineEvent, Revocation};
use crate::hooks::{AccessHook, Credential, CredentialRequest, CredentialSource};
use crate::model::{
    AuditEvent, EndReason, Gatekeeper, GatekeeperId, Service, Session, SessionId, Timestamp, User,
};
use crate::policy::{self, AccessRequest, Decision};
use crate::store::Store;

/// One live session in the registry, with what a re-check needs.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) shared: Arc<Shared>,
    pub(super) user: User,
    pub(super) service: Service,
    pub(super) gatekeeper: Gatekeeper,
    pub(super) credential_gatekeeper: Option<GatekeeperId>,
}

/// The session engine: approvals, the runner and the registry of live sessions.
#[derive(Debug)]
pub struct SessionEngine {
    store: Arc<dyn Store>,
    audit: Arc<dyn AuditSink>,
    clock: Arc<dyn Clock>,
    /// The server node this engine runs on (several may share a database).
    node: std::sync::OnceLock<String>,
    pub(super) live: Mutex<HashMap<SessionId, Entry>>,
    pub(super) tasks: TaskTracker,
    hooks: RwLock<Hooks>,
    events: broadcast::Sender<EngineEvent>,
    revocations: broadcast::Sender<Revocation>,
    /// Moves on every revocation, before the registry is swept: a session
    /// approved under an older value is re-checked once it is registered,
    /// so a revocation racing its start cannot miss it.
    revision: AtomicU64,
    /// What approvals read, served while `revision` holds (`authz.rs`).
    pub(super) authz: AuthzCache,
    /// Where this node's controls go out to the other nodes, once it joined
    /// a cluster (`cluster.rs`).
    pub(super) cluster: Mutex<Option<tokio::sync::mpsc::UnboundedSender<String>>>,
}

#[derive(Debug, Default, Clone)]
struct Hooks {
    access: Option<Arc<dyn AccessHook>>,
    credentials: Option<Arc<dyn CredentialSource>>,
    observers: Vec<Arc<dyn ObserverFactory>>,
}

/// One live session as listed by [`SessionEngine::live`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct LiveInfo {
    #[serde(flatten)]
    pub session: Session,
}

impl SessionEngine {
    /// An engine writing to `store` and `audit`, on the system clock.
    pub fn new(store: Arc<dyn Store>, audit: Arc<dyn AuditSink>) -> Arc<Self> {
        Self::with_clock(store, audit, Arc::new(SystemClock))
    }

    /// An engine reading the time from `clock`.
    pub fn with_clock(
        store: Arc<dyn Store>,
        audit: Arc<dyn AuditSink>,
        clock: Arc<dyn Clock>,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            audit,
            clock,
            node: std::sync::OnceLock::new(),
            live: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
            hooks: RwLock::default(),
            events: broadcast::channel(EVENT_BUFFER).0,
            revocations: broadcast::channel(EVENT_BUFFER).0,
            revision: AtomicU64::new(0),
            authz: AuthzCache::default(),
            cluster: Mutex::new(None),
        })
    }

    /// The engine's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Names the server node this engine runs on; its sessions and the
    /// gatekeeper links its hub holds are recorded with it. Set once, before
    /// the first session; a second call fails.
    pub fn set_node(&self, node: &str) -> Result<()> {
        self.node.set(node.to_string()).map_err(|_| {
            Error::new(
                ErrorKind::Conflict,
                format!(
                    "the engine's node is already set to `{}`",
                    self.node.get().map_or("", |n| n)
                ),
            )
        })
    }

    /// The server node this engine runs on, when named.
    pub fn node(&self) -> Option<String> {
        self.node.get().cloned()
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

    /// Adds a factory whose observers attach to every session started from
    /// now on (a recorder, an event producer).
    pub fn add_observer_factory(&self, factory: Arc<dyn ObserverFactory>) {
        self.hooks
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .observers
            .push(factory);
    }

    /// Attaches `observer` to live session `id` (a live watcher joining);
    /// returns whether the session was live. An attached observer always
    /// sees the start and the end.
    pub fn watch(&self, id: &SessionId, observer: Arc<dyn SessionObserver>) -> bool {
        let shared = {
            let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
            live.get(id).map(|e| e.shared.clone())
        };
        shared.is_some_and(|shared| shared.attach(observer))
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

    /// Watches revocations (the hub closes the connections they name).
    pub fn subscribe_revocations(&self) -> broadcast::Receiver<Revocation> {
        self.revocations.subscribe()
    }

    /// Takes access away at once: ends the live sessions of the revoked
    /// user or through the revoked gatekeeper (reason `revoked`), and tells
    /// the subscribers (the hub closes the matching SSH connections). Call
    /// it after the store holds the change. Returns how many sessions ended
    /// here; the other nodes of a cluster end theirs too
    /// ([`SessionEngine::join_cluster`]).
    pub fn revoke(&self, revocation: &Revocation) -> usize {
        let ended = self.revoke_here(revocation);
        self.announce(super::cluster::Control::Revoke {
            revocation: revocation.clone(),
        });
        ended
    }

    /// [`SessionEngine::revoke`] on this node only.
    pub(super) fn revoke_here(&self, revocation: &Revocation) -> usize {
        self.bump_revision();
        let ended = {
            let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
            let mut n = 0;
            for e in live.values() {
                let s = &e.shared.session;
                let by_user = revocation.user.as_ref() == Some(&s.user_id);
                let by_gk = revocation.gatekeeper.is_some()
                    && (revocation.gatekeeper == s.gatekeeper_id
                        || revocation.gatekeeper == e.credential_gatekeeper);
                if by_user || by_gk {
                    e.shared
                        .end(EndReason::Revoked, Some(revocation.reason.clone()));
                    n += 1;
                }
            }
            n
        };
        let _ = self.revocations.send(revocation.clone());
        ended
    }

    /// The revision a session approved now is checked against.
    pub(super) fn revision(&self) -> u64 {
        self.revision.load(Ordering::SeqCst)
    }

    fn bump_revision(&self) {
        self.revision.fetch_add(1, Ordering::SeqCst);
    }

    fn hooks(&self) -> Hooks {
        self.hooks.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(super) fn access_hook(&self) -> Option<Arc<dyn AccessHook>> {
        self.hooks().access
    }

    pub(super) fn observer_factories(&self) -> Vec<Arc<dyn ObserverFactory>> {
        self.hooks().observers
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

    /// Ends a live session with reason `terminated_by`. Returns whether it was live.
    pub fn terminate(&self, id: &SessionId, by: &str, reason: Option<&str>) -> bool {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let Some(e) = live.get(id) else { return false };
        let detail = match reason {
            Some(r) if !r.is_empty() => format!("{by}: {r}"),
            _ => by.to_string(),
        };
        e.shared.end(EndReason::TerminatedBy, Some(detail));
        true
    }

    /// Ends every live session through `gatekeeper` with `reason`: here,
    /// and on the other nodes (sessions they relay through this node's
    /// link) those that started before now. Returns how many ended here.
    pub fn end_gatekeeper_sessions(
        &self,
        gatekeeper: &GatekeeperId,
        reason: EndReason,
        detail: &str,
    ) -> usize {
        let now = self.clock().now();
        let ended = self.end_gatekeeper_sessions_here(gatekeeper, reason, detail, now);
        self.announce(super::cluster::Control::EndGatekeeper {
            gatekeeper: gatekeeper.clone(),
            reason,
            detail: detail.to_string(),
            before: now,
        });
        ended
    }

    /// [`SessionEngine::end_gatekeeper_sessions`] on this node only, for
    /// sessions started at or before `before`.
    pub(super) fn end_gatekeeper_sessions_here(
        &self,
        gatekeeper: &GatekeeperId,
        reason: EndReason,
        detail: &str,
        before: Timestamp,
    ) -> usize {
        self.bump_revision();
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let mut n = 0;
        for e in live.values().filter(|e| {
            e.shared.session.gatekeeper_id.as_ref() == Some(gatekeeper)
                && e.shared.session.started_at <= before
        }) {
            e.shared.end(reason, Some(detail.to_string()));
            n += 1;
        }
        n
    }

    /// Ends every live session with `reason` (server shutdown).
    pub fn end_all(&self, reason: EndReason, detail: &str) {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        for e in live.values() {
            e.shared.end(reason, Some(detail.to_string()));
        }
    }

    /// Re-decides every live session against current grants and, for
    /// credential-injected services, checkouts; ends the ones no longer
    /// allowed (`revoked`, or `expired` when a window or checkout closed).
    /// Returns how many ended here; the other nodes of a cluster re-check
    /// theirs too.
    pub async fn recheck(&self) -> Result<usize> {
        self.announce(super::cluster::Control::Recheck);
        self.recheck_here().await
    }

    /// [`SessionEngine::recheck`] on this node only.
    pub(super) async fn recheck_here(&self) -> Result<usize> {
        self.bump_revision();
        let entries: Vec<_> = {
            let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
            live.values()
                .map(|e| {
                    (
                        e.user.clone(),
                        e.service.clone(),
                        e.gatekeeper.clone(),
                        e.credential_gatekeeper.clone(),
                        e.shared.clone(),
                    )
                })
                .collect()
        };
        let now = self.clock.now();
        let mut ended = 0;
        for (user, service, gatekeeper, cred, shared) in entries {
            if self
                .recheck_one(user, &service, &gatekeeper, cred.as_ref(), &shared, now)
                .await?
            {
                ended += 1;
            }
        }
        Ok(ended)
    }

    /// Re-decides one live session; ends it when policy no longer allows
    /// it. Returns whether it ended.
    pub(super) async fn recheck_one(
        &self,
        user: User,
        service: &Service,
        gatekeeper: &Gatekeeper,
        credential_gatekeeper: Option<&GatekeeperId>,
        shared: &Shared,
        now: crate::model::Timestamp,
    ) -> Result<bool> {
        let Some(user) = self.store.user(&user.id).await? else {
            shared.end(
                EndReason::Revoked,
                Some(format!("user `{}` no longer exists", user.name)),
            );
            return Ok(true);
        };
        let grants = self.store.grants_for(&user.id, &service.id).await?;
        let req = AccessRequest {
            user: &user,
            service,
            gatekeeper,
            credential_gatekeeper,
        };
        Ok(match policy::decide(&req, &grants, now) {
            Decision::Deny { reason } => {
                let end_reason = match reason.kind() {
                    crate::ErrorKind::AccessExpired => EndReason::Expired,
                    _ => EndReason::Revoked,
                };
                shared.end(end_reason, Some(reason.message().to_string()));
                true
            }
            Decision::Allow { until, .. } => {
                match self.checkout_ended(&user, service, now).await? {
                    Some((end_reason, detail)) => {
                        shared.end(end_reason, Some(detail));
                        true
                    }
                    None => {
                        // The end as it stands now: a new, longer grant extends a
                        // live session, a shorter one brings its end forward.
                        let until = if service.kind.injects_credentials() {
                            crate::vault::active_checkout(&self.store, &user.id, &service.id, now)
                                .await?
                                .map_or(until, |c| {
                                    Some(until.map_or(c.expires_at, |u| u.min(c.expires_at)))
                                })
                        } else {
                            until
                        };
                        shared.set_expiry(until);
                        false
                    }
                }
            }
        })
    }

    /// For a credential-injected service, why `user`'s session must end when
    /// they hold no active checkout any more (checked in, revoked, expired).
    async fn checkout_ended(
        &self,
        user: &User,
        service: &Service,
        now: crate::model::Timestamp,
    ) -> Result<Option<(EndReason, String)>> {
        if !service.kind.injects_credentials()
            || crate::vault::active_checkout(&self.store, &user.id, &service.id, now)
                .await?
                .is_some()
        {
            return Ok(None);
        }
        let latest = self
            .store
            .list_checkouts(&crate::store::CheckoutFilter {
                user_id: Some(user.id.clone()),
                service_id: Some(service.id.clone()),
                active_at: None,
                limit: Some(16),
            })
            .await?;
        // The checkout that ended last says why.
        let last = latest
            .iter()
            .max_by_key(|c| (c.ended_at.unwrap_or(c.expires_at), c.started_at));
        Ok(Some(match last.and_then(|c| c.end_reason) {
            None => (
                EndReason::Expired,
                format!("the checkout of `{}` expired", service.name),
            ),
            Some(end) => (
                EndReason::Revoked,
                format!(
                    "the checkout of `{}` ended ({})",
                    service.name,
                    end.as_str()
                ),
            ),
        }))
    }

    /// The live sessions with their current byte counts.
    pub fn live(&self) -> Vec<LiveInfo> {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.values()
            .map(|e| {
                let mut session = e.shared.session.clone();
                (session.bytes_up, session.bytes_down) = e.shared.counters.snapshot();
                LiveInfo { session }
            })
            .collect()
    }

    /// Waits for the engine's timers and end records to finish (after
    /// [`SessionEngine::end_all`]).
    pub async fn close(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}
