//! A running session: [`LiveSession`], the handle a protocol gets, and
//! [`SessionControl`], the cheap handle observers keep.
//!
//! A `LiveSession` is drop-guarded: if it goes away without being finished
//! (an early return, a cancelled task, a panic in a protocol), it leaves the
//! registry at once and its row is closed with reason `error` on the engine's
//! task tracker.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::approval::Approval;
use super::backlog::Backlog;
use super::counters::{Counters, Direction, Meter};
use super::engine::{Entry, SessionEngine};
use super::observer::{SessionEvent, SessionObserver, TerminalFrame};
use crate::error::{Error, Result};
use crate::events::EngineEvent;
use crate::model::{
    AuditCategory, AuditEvent, EndReason, Session, SessionId, SessionProtocol, Timestamp,
};

/// What the registry, the session's handle and its observers share.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) session: Session,
    pub(super) protocol: SessionProtocol,
    pub(super) cancel: CancellationToken,
    /// The end as decided by whoever ended the session first.
    end: Mutex<Option<(EndReason, Option<String>)>>,
    pub(super) counters: Counters,
    observers: RwLock<Observers>,
    /// Whether `observers` is non-empty, read on every chunk without a lock.
    observed: AtomicBool,
    /// The engine, for events recorded through a [`SessionControl`].
    engine: std::sync::Weak<SessionEngine>,
    /// Output the observers still hold (a recorder's queue).
    backlog: Arc<Backlog>,
    /// When policy ends the session (`None`: never); a re-check moves it
    /// (a longer grant extends it, a shorter one brings it forward).
    expiry: tokio::sync::watch::Sender<Option<Timestamp>>,
}

/// A session's observers; `closed` once they were told of its end, after
/// which no observer can attach.
#[derive(Debug, Default)]
struct Observers {
    list: Vec<Arc<dyn SessionObserver>>,
    closed: bool,
}

impl Shared {
    /// Moves the time policy ends the session to `until`.
    pub(super) fn set_expiry(&self, until: Option<Timestamp>) {
        self.expiry.send_if_modified(|at| {
            let changed = *at != until;
            *at = until;
            changed
        });
    }

    /// Ends the session with `reason` unless it already has one (the first
    /// reason wins); fires the cancellation token either way. Returns whether
    /// `reason` is the one recorded.
    pub(super) fn end(&self, reason: EndReason, detail: Option<String>) -> bool {
        let first = {
            let mut slot = self.end.lock().unwrap_or_else(|p| p.into_inner());
            let first = slot.is_none();
            if first {
                *slot = Some((reason, detail));
            }
            first
        };
        self.cancel.cancel();
        first
    }

    fn end_reason(&self) -> Option<(EndReason, Option<String>)> {
        self.end.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn observers(&self) -> Vec<Arc<dyn SessionObserver>> {
        self.observers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .list
            .clone()
    }

    /// Attaches `observer` (it sees the start at once) unless the session
    /// already ended; returns whether it did.
    pub(super) fn attach(self: &Arc<Self>, observer: Arc<dyn SessionObserver>) -> bool {
        let mut observers = self.observers.write().unwrap_or_else(|p| p.into_inner());
        if observers.closed {
            return false;
        }
        // Under the lock, so the end cannot be told before the start.
        observer.on_start(
            &self.session,
            &SessionControl {
                shared: self.clone(),
            },
        );
        observers.list.push(observer);
        self.observed.store(true, Ordering::Release);
        true
    }

    fn terminal(&self, frame: &TerminalFrame) {
        if self.observed.load(Ordering::Acquire) {
            let observers = self.observers.read().unwrap_or_else(|p| p.into_inner());
            for o in observers.list.iter() {
                o.on_terminal(frame);
            }
        }
    }

    /// The observers to tell of the end; none can attach afterwards.
    fn close_observers(&self) -> Vec<Arc<dyn SessionObserver>> {
        let mut observers = self.observers.write().unwrap_or_else(|p| p.into_inner());
        observers.closed = true;
        observers.list.clone()
    }
}

impl Shared {
    async fn record_event(
        &self,
        engine: &SessionEngine,
        action: &str,
        detail: serde_json::Value,
    ) -> Result<()> {
        check_action(action)?;
        let event = SessionEvent {
            at: engine.clock().now(),
            action: action.to_string(),
            detail,
        };
        for o in self.observers() {
            o.on_event(&event);
        }
        let s = &self.session;
        let action = format!("session.{}", event.action);
        engine
            .record(AuditEvent {
                at: event.at,
                category: AuditCategory::UserActivity,
                action: action.clone(),
                actor: s.user_name.clone(),
                customer_id: Some(s.customer_id.clone()),
                session_id: Some(s.id.clone()),
                detail: event.detail.clone(),
            })
            .await;
        engine.publish(EngineEvent::SessionActivity {
            session_id: s.id.clone(),
            customer: s.customer_id.clone(),
            user: s.user_name.clone(),
            action,
            detail: event.detail,
            at: event.at,
        });
        Ok(())
    }
}

/// A cheap, cloneable handle on a live session: ends it, and meters its
/// bytes (counters and data observers) for a pump.
#[derive(Debug, Clone)]
pub struct SessionControl {
    shared: Arc<Shared>,
}

impl SessionControl {
    /// The session id.
    pub fn id(&self) -> &SessionId {
        &self.shared.session.id
    }

    /// Ends the session with `reason` unless another reason came first;
    /// returns whether this one was recorded.
    pub fn end(&self, reason: EndReason, detail: Option<String>) -> bool {
        self.shared.end(reason, detail)
    }

    /// Fires when the session must end.
    pub fn cancelled(&self) -> &CancellationToken {
        &self.shared.cancel
    }

    /// Why the session is ending, once someone ended it: the reason and
    /// its detail (who terminated it, what failed).
    pub fn end_reason(&self) -> Option<(EndReason, Option<String>)> {
        self.shared.end_reason()
    }

    /// Records an event inside the session, as
    /// [`LiveSession::record_event`] does.
    pub async fn record_event(&self, action: &str, detail: serde_json::Value) -> Result<()> {
        let engine = self.shared.engine.upgrade().ok_or_else(|| {
            Error::new(
                crate::error::ErrorKind::Cancelled,
                "the session engine is gone",
            )
        })?;
        self.shared.record_event(&engine, action, detail).await
    }

    /// Shows `frame` to every observer (recorders, live watchers). Not
    /// audited: a terminal's stream goes to its recording, not the log.
    pub fn terminal(&self, frame: &TerminalFrame) {
        self.shared.terminal(frame);
    }

    /// The output observers still hold: a protocol awaits
    /// [`Backlog::room`] before it reads more from the target; a recorder
    /// adds what it queues and subtracts what it wrote.
    pub fn backlog(&self) -> &Arc<Backlog> {
        &self.shared.backlog
    }
}

impl Meter for SessionControl {
    fn moved(&self, direction: Direction, data: &[u8]) {
        self.shared.counters.add(direction, data.len() as u64);
        if self.shared.observed.load(Ordering::Acquire) {
            // Under the read lock, without a copy of the list per chunk.
            let observers = self
                .shared
                .observers
                .read()
                .unwrap_or_else(|p| p.into_inner());
            for o in observers.list.iter() {
                o.on_data(direction, data);
            }
        }
    }
}

/// What a protocol gets to run one approved session. Only the engine makes
/// one (see [`SessionEngine::run`]).
#[derive(Debug)]
pub struct LiveSession {
    shared: Arc<Shared>,
    engine: Arc<SessionEngine>,
    finished: bool,
}

impl LiveSession {
    /// The session record as it started.
    pub fn session(&self) -> &Session {
        &self.shared.session
    }

    /// The session id.
    pub fn id(&self) -> &SessionId {
        &self.shared.session.id
    }

    /// The protocol the session runs.
    pub fn protocol(&self) -> SessionProtocol {
        self.shared.protocol
    }

    /// Fires when the session must end (terminate, expiry, revoke, shutdown).
    pub fn cancel(&self) -> &CancellationToken {
        &self.shared.cancel
    }

    /// Bytes moved so far.
    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// The service the session reaches, as approved.
    pub fn service(&self) -> Option<crate::model::Service> {
        self.entry(|e| e.service.clone())
    }

    /// The user the session runs for, as approved.
    pub fn user(&self) -> Option<crate::model::User> {
        self.entry(|e| e.user.clone())
    }

    /// The credential to inject into this session, from the engine's
    /// [`CredentialSource`](crate::hooks::CredentialSource) (the vault by
    /// default); `None` when the source has none for the service.
    pub async fn credential(&self) -> Result<Option<crate::hooks::Credential>> {
        let s = &self.shared.session;
        let service = self.entry(|e| e.service.clone()).ok_or_else(|| {
            Error::new(
                crate::error::ErrorKind::Conflict,
                format!("session {} is no longer live", s.id),
            )
        })?;
        let request = crate::hooks::CredentialRequest {
            session: s.id.clone(),
            user: s.user_name.clone(),
            customer: s.customer_id.clone(),
            service,
        };
        self.engine.credential(&request).await
    }

    fn entry<T>(&self, f: impl FnOnce(&Entry) -> T) -> Option<T> {
        self.engine
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&self.shared.session.id)
            .map(f)
    }

    /// A handle for observers and byte pumps.
    pub fn control(&self) -> SessionControl {
        SessionControl {
            shared: self.shared.clone(),
        }
    }

    /// Ends the session with `reason` unless another reason came first.
    pub fn end(&self, reason: EndReason, detail: Option<String>) -> bool {
        self.shared.end(reason, detail)
    }

    /// Attaches an observer; it sees the start at once. Returns false
    /// when the session already ended.
    pub fn attach(&self, observer: Arc<dyn SessionObserver>) -> bool {
        self.shared.attach(observer)
    }

    /// Shows `frame` to every observer (see [`SessionControl::terminal`]).
    pub fn terminal(&self, frame: &TerminalFrame) {
        self.shared.terminal(frame);
    }

    /// Records something that happened inside the session: every observer
    /// sees it and it is audited as `session.<action>`. `action` is a dotted
    /// lowercase name (`sftp.upload`) other than the engine's own `start`,
    /// `end` and `refused`.
    pub async fn record_event(&self, action: &str, detail: serde_json::Value) -> Result<()> {
        self.shared.record_event(&self.engine, action, detail).await
    }

    /// Records the end: the reason set by whoever ended the session first,
    /// or `default`. Leaves the registry, writes the row and the audit event,
    /// tells the observers and publishes the end.
    pub(crate) async fn finish(mut self, default: EndReason, detail: Option<String>) -> Session {
        let ending = self.ending(default, detail);
        let fallback = ending.shared.session.clone();
        // On a task of its own: the end is written even if the caller stops
        // waiting for it.
        match self.engine.tasks.spawn(ending.write()).await {
            Ok(session) => session,
            Err(error) => {
                tracing::error!(%error, session = %fallback.id, "recording the end of a session failed");
                fallback
            }
        }
    }

    /// Takes the session out of the registry and settles its end reason.
    fn ending(&mut self, default: EndReason, detail: Option<String>) -> Ending {
        self.finished = true;
        self.shared.end(default, detail);
        self.engine
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.shared.session.id);
        Ending {
            shared: self.shared.clone(),
            engine: self.engine.clone(),
        }
    }
}

impl Drop for LiveSession {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let detail = if std::thread::panicking() {
            "the session's protocol panicked"
        } else {
            "the session's protocol stopped without finishing it"
        };
        tracing::warn!(session = %self.shared.session.id, "{detail}");
        let ending = self.ending(EndReason::Error, Some(detail.into()));
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let tracked = self.engine.tasks.track_future(ending.write());
                rt.spawn(tracked);
            }
            Err(_) => tracing::error!(
                session = %self.shared.session.id,
                "no runtime to record the end of a dropped session; it stays open until restart"
            ),
        }
    }
}

/// A session out of the registry whose end is still to be written.
struct Ending {
    shared: Arc<Shared>,
    engine: Arc<SessionEngine>,
}

impl Ending {
    async fn write(self) -> Session {
        let (reason, detail) = self.shared.end_reason().unwrap_or((EndReason::Error, None));
        let (up, down) = self.shared.counters.snapshot();
        let now = self.engine.clock().now();
        let id = &self.shared.session.id;
        if let Err(error) = self
            .engine
            .store()
            .finish_session(id, now, up, down, reason, detail.as_deref())
            .await
        {
            tracing::error!(%error, session = %id, "cannot record the end of a session");
        }
        let mut s = self.shared.session.clone();
        self.engine
            .record(AuditEvent {
                at: now,
                category: AuditCategory::UserActivity,
                action: "session.end".into(),
                actor: s.user_name.clone(),
                customer_id: Some(s.customer_id.clone()),
                session_id: Some(s.id.clone()),
                detail: json!({
                    "reason": reason,
                    "detail": detail,
                    "bytes_up": up,
                    "bytes_down": down,
                    "service": s.service_name,
                }),
            })
            .await;
        s.ended_at = Some(now);
        s.bytes_up = up;
        s.bytes_down = down;
        s.end_reason = Some(reason);
        s.end_detail = detail;
        for o in self.shared.close_observers() {
            o.on_end(&s);
        }
        self.engine
            .publish(EngineEvent::SessionEnded { session: s.clone() });
        s
    }
}

impl SessionEngine {
    /// Records an approved session, registers it live, attaches the
    /// observers and arms its expiry. Only the runner calls this.
    pub(crate) async fn start(
        self: &Arc<Self>,
        approval: Approval,
        protocol: SessionProtocol,
    ) -> Result<LiveSession> {
        let session = new_session(&approval, protocol, self.node());
        let Approval {
            user,
            credential_gatekeeper,
            gatekeeper,
            service,
            until,
            originator,
            revision,
            ..
        } = approval;
        // The session row and its `session.start` record are written at
        // once (on SQLite they share one group commit). No session runs
        // unrecorded or unaudited: if either write fails, it is refused.
        let audited = self.audit().record(AuditEvent {
            at: session.started_at,
            category: AuditCategory::UserActivity,
            action: "session.start".into(),
            actor: user.name.clone(),
            customer_id: Some(service.customer_id.clone()),
            session_id: Some(session.id.clone()),
            detail: {
                let mut d = json!({
                    "service": service.name,
                    "target": service.target.to_string(),
                    "gatekeeper": gatekeeper.name,
                    "originator": originator.to_string(),
                    "protocol": protocol,
                    "until": until.map(|u| u.to_rfc3339()),
                });
                if let Some(local) = &originator.local {
                    d["local_address"] = json!(local);
                }
                d
            },
        });
        let (inserted, recorded) = tokio::join!(self.store().insert_session(&session), audited);
        if let Err(e) = inserted {
            if recorded.is_ok() {
                // The chain says it started: say also that it never ran.
                let refused = AuditEvent {
                    at: self.clock().now(),
                    category: AuditCategory::UserActivity,
                    action: "session.refused".into(),
                    actor: user.name.clone(),
                    customer_id: Some(service.customer_id.clone()),
                    session_id: Some(session.id.clone()),
                    detail: json!({
                        "service": service.name,
                        "gatekeeper": gatekeeper.name,
                        "reason": "not_recorded",
                        "error": e.message(),
                    }),
                };
                if let Err(error) = self.audit().record(refused).await {
                    tracing::error!(%error, session = %session.id, "cannot audit the unrecorded session");
                }
            }
            return Err(e);
        }
        if let Err(e) = recorded {
            let detail = format!("the session.start audit record could not be written: {e}");
            tracing::error!(session = %session.id, %detail, "session refused");
            if let Err(error) = self
                .store()
                .finish_session(
                    &session.id,
                    self.clock().now(),
                    0,
                    0,
                    EndReason::Refused,
                    Some(&detail),
                )
                .await
            {
                tracing::error!(%error, session = %session.id, "cannot close the refused session");
            }
            return Err(Error::new(e.kind(), format!("session refused: {detail}")));
        }
        let shared = Arc::new(Shared {
            session: session.clone(),
            protocol,
            cancel: CancellationToken::new(),
            end: Mutex::new(None),
            counters: Counters::default(),
            observers: RwLock::default(),
            observed: AtomicBool::new(false),
            engine: Arc::downgrade(self),
            backlog: Arc::default(),
            expiry: tokio::sync::watch::Sender::new(until),
        });
        // What a re-check needs, should a revocation race this start.
        let check = (
            user.clone(),
            service.clone(),
            gatekeeper.clone(),
            credential_gatekeeper.clone(),
        );
        self.live.lock().unwrap_or_else(|p| p.into_inner()).insert(
            session.id.clone(),
            Entry {
                shared: shared.clone(),
                user,
                service,
                gatekeeper,
                credential_gatekeeper,
            },
        );
        // Guarded from here on: a failure below still closes the row.
        let live = LiveSession {
            shared,
            engine: self.clone(),
            finished: false,
        };
        // A revocation since the approval may have swept the registry before
        // this session was in it: decide again now that it is. The revision
        // is read after registering and a revocation moves it before its
        // sweep, so either the sweep finds the session or this sees the move.
        if self.revision() != revision {
            let (user, service, gatekeeper, cred) = check;
            let now = self.clock().now();
            if let Err(e) = self
                .recheck_one(
                    user,
                    &service,
                    &gatekeeper,
                    cred.as_ref(),
                    &live.shared,
                    now,
                )
                .await
            {
                live.shared.end(
                    EndReason::Error,
                    Some(format!(
                        "cannot re-check the session after a revocation: {e}"
                    )),
                );
            }
        }
        for factory in self.observer_factories() {
            for observer in factory.observers(&session) {
                live.shared.attach(observer);
            }
        }
        self.arm_expiry(&live.shared);
        self.publish(EngineEvent::SessionStarted { session });
        Ok(live)
    }

    /// Ends the session when its expiry comes, re-reading it whenever a
    /// re-check moves it.
    fn arm_expiry(&self, shared: &Arc<Shared>) {
        let shared = shared.clone();
        let clock = self.clock().clone();
        let mut expiry = shared.expiry.subscribe();
        self.tasks.spawn(async move {
            loop {
                let until = *expiry.borrow_and_update();
                let expired = async {
                    match until {
                        Some(until) => clock.sleep_until(until).await,
                        None => std::future::pending().await,
                    }
                };
                // A move that arrives with the old end wins: the session
                // runs to the end policy gives now.
                tokio::select! {
                    biased;
                    _ = shared.cancel.cancelled() => return,
                    moved = expiry.changed() => if moved.is_err() { return },
                    () = expired => {
                        if *expiry.borrow() != until {
                            continue;
                        }
                        tracing::info!(session = %shared.session.id, "grant window closed, ending session");
                        shared.end(EndReason::Expired, Some("grant window closed".into()));
                        return;
                    }
                }
            }
        });
    }
}

/// An event name a protocol may record: dotted lowercase words, not one of
/// the engine's own.
fn check_action(action: &str) -> Result<()> {
    let well_formed = !action.is_empty()
        && action.len() <= 64
        && action.split('.').all(|w| {
            !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        });
    if !well_formed {
        return Err(Error::invalid(format!(
            "session event `{action}` must be dotted lowercase words, e.g. `sftp.upload`"
        )));
    }
    if matches!(action, "start" | "end" | "refused") {
        return Err(Error::invalid(format!(
            "session event `{action}` is the engine's own"
        )));
    }
    Ok(())
}

/// The one place a session record is built.
fn new_session(approval: &Approval, protocol: SessionProtocol, node: Option<String>) -> Session {
    Session {
        id: SessionId::generate(),
        user_id: approval.user.id.clone(),
        user_name: approval.user.name.clone(),
        customer_id: approval.service.customer_id.clone(),
        gatekeeper_id: Some(approval.gatekeeper.id.clone()),
        protocol,
        node_id: node,
        service_id: approval.service.id.clone(),
        service_name: approval.service.name.clone(),
        target: approval.service.target.clone(),
        grant_id: Some(approval.grant_id.clone()),
        started_at: approval.at,
        ended_at: None,
        bytes_up: 0,
        bytes_down: 0,
        end_reason: None,
        end_detail: None,
    }
}
