//! The engine's lifecycle on a manual clock and an in-memory store: the
//! runner, the drop guard, expiry, end-reason races and observers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::broadcast;

use super::*;
use crate::admin::Admin;
use crate::audit::StoreAuditSink;
use crate::clock::{Clock, ManualClock};
use crate::error::{Error, ErrorKind, Result};
use crate::events::EngineEvent;
use crate::model::{
    EndReason, Gatekeeper, Service, ServiceKind, Session, SessionId, SessionProtocol, Timestamp,
    User,
};
use crate::proxy::tcp::TcpSplice;
use crate::store::{AuditFilter, SqlStore, Store};
use crate::tunnel::dialer::{Connection, DialTarget, Dialer};

const HOUR: Duration = Duration::from_secs(3600);
/// Generous bound for things that happen at once; never reached when green.
const SOON: Duration = Duration::from_secs(5);

mod expiry;

struct World {
    engine: Arc<SessionEngine>,
    store: Arc<dyn Store>,
    admin: Admin,
    clock: Arc<ManualClock>,
    user: User,
    gatekeeper: Gatekeeper,
    service: Service,
    grant: String,
}

/// A user with a grant for one service valid for the next hour.
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
    let grant = admin
        .add_grant("vera", "acme", "ssh", start, Some(start.add(HOUR)), None)
        .await
        .unwrap();
    let mut gatekeeper = admin.gatekeeper("gk").await.unwrap();
    gatekeeper.public_key = Some("ssh-ed25519 AAAA".into());
    gatekeeper.registered_at = Some(start);
    World {
        engine: SessionEngine::with_clock(store.clone(), audit, clock.clone()),
        store,
        admin,
        clock,
        user,
        gatekeeper,
        service,
        grant: grant.id.0.clone(),
    }
}

impl World {
    async fn approval(&self) -> Approval {
        self.engine
            .approve(
                &self.user,
                None,
                &self.gatekeeper,
                &self.service,
                &Originator::new("127.0.0.1", 40000),
            )
            .await
            .expect("policy allows")
    }

    /// Runs `protocol` in a task with a duplex user stream and a dialer
    /// handing out duplex target streams; returns once the session started.
    async fn spawn(
        &self,
        protocol: Arc<dyn Protocol>,
    ) -> (
        SessionId,
        tokio::task::JoinHandle<Result<Session>>,
        DuplexStream,
        Arc<PipeDialer>,
    ) {
        let mut events = self.engine.subscribe();
        let (user, user_peer) = tokio::io::duplex(64 * 1024);
        let dialer = Arc::new(PipeDialer::default());
        let (engine, approval, d) = (self.engine.clone(), self.approval().await, dialer.clone());
        let task = tokio::spawn(async move {
            engine
                .run(
                    approval,
                    Box::new(Connection::stream(user)),
                    d,
                    protocol.as_ref(),
                )
                .await
        });
        let id = started(&mut events).await;
        (id, task, user_peer, dialer)
    }

    async fn row(&self, id: &SessionId) -> Session {
        self.store.session(id).await.unwrap().expect("a row")
    }

    fn is_live(&self, id: &SessionId) -> bool {
        self.engine.live().iter().any(|l| &l.session.id == id)
    }
}

async fn started(events: &mut broadcast::Receiver<EngineEvent>) -> SessionId {
    loop {
        match tokio::time::timeout(SOON, events.recv()).await {
            Ok(Ok(EngineEvent::SessionStarted { session })) => return session.id,
            Ok(Ok(_)) => continue,
            other => panic!("no session started: {other:?}"),
        }
    }
}

async fn ended(events: &mut broadcast::Receiver<EngineEvent>, id: &SessionId) -> Session {
    loop {
        match tokio::time::timeout(SOON, events.recv()).await {
            Ok(Ok(EngineEvent::SessionEnded { session })) if &session.id == id => return session,
            Ok(Ok(_)) => continue,
            other => panic!("session {id} did not end: {other:?}"),
        }
    }
}

/// Hands out in-memory target streams; keeps the target's ends.
#[derive(Debug, Default)]
struct PipeDialer {
    targets: Mutex<Vec<DuplexStream>>,
    refuse: Option<ErrorKind>,
}

impl PipeDialer {
    fn target(&self) -> DuplexStream {
        self.targets.lock().unwrap().pop().expect("dialed once")
    }
}

#[async_trait]
impl Dialer for PipeDialer {
    async fn dial(&self, t: &DialTarget) -> Result<Connection> {
        if let Some(kind) = self.refuse {
            return Err(Error::new(kind, format!("cannot reach {}", t.target)));
        }
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        self.targets.lock().unwrap().push(theirs);
        Ok(Connection::stream(ours))
    }
}

/// Waits until the session must end.
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

/// Never returns on its own, even when cancelled.
#[derive(Debug)]
struct Stall;

#[async_trait]
impl Protocol for Stall {
    fn kind(&self) -> SessionProtocol {
        SessionProtocol::Rdp
    }
    async fn run(&self, _user: Connection, _up: Upstream, _live: &LiveSession) -> Result<()> {
        std::future::pending().await
    }
}

#[derive(Debug)]
struct Fails;

#[async_trait]
impl Protocol for Fails {
    fn kind(&self) -> SessionProtocol {
        SessionProtocol::Sftp
    }
    async fn run(&self, _user: Connection, up: Upstream, _live: &LiveSession) -> Result<()> {
        let _target = up.connect().await?;
        Err(Error::new(ErrorKind::Protocol, "the target spoke no sftp"))
    }
}

#[derive(Debug)]
struct Panics;

#[async_trait]
impl Protocol for Panics {
    fn kind(&self) -> SessionProtocol {
        SessionProtocol::Tcp
    }
    async fn run(&self, _user: Connection, _up: Upstream, _live: &LiveSession) -> Result<()> {
        panic!("a protocol bug")
    }
}

/// Records one event, then holds.
#[derive(Debug)]
struct Evented;

#[async_trait]
impl Protocol for Evented {
    fn kind(&self) -> SessionProtocol {
        SessionProtocol::Sftp
    }
    async fn run(&self, _user: Connection, _up: Upstream, live: &LiveSession) -> Result<()> {
        for bad in ["", "End", "end", "sftp..upload", "sftp upload"] {
            let e = live.record_event(bad, json!({})).await.expect_err(bad);
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad}");
            assert!(e.message().contains(&format!("`{bad}`")), "{e}");
        }
        live.record_event("sftp.upload", json!({ "path": "/tmp/a" }))
            .await?;
        live.cancel().cancelled().await;
        Ok(())
    }
}

async fn assert_closed_with_error(w: &World, id: &SessionId, detail: &str) {
    assert!(!w.is_live(id), "still in the live registry");
    let row = w.row(id).await;
    assert!(row.ended_at.is_some(), "row left open");
    assert_eq!(row.end_reason, Some(EndReason::Error));
    let got = row.end_detail.unwrap_or_default();
    assert!(got.contains(detail), "{got}");
}

#[tokio::test]
async fn a_protocol_error_ends_the_session_with_reason_error() {
    let w = world().await;
    let (id, task, _user, _dialer) = w.spawn(Arc::new(Fails)).await;
    let s = task.await.unwrap().expect("the session ran");
    assert_eq!(s.end_reason, Some(EndReason::Error));
    assert_closed_with_error(&w, &id, "the target spoke no sftp").await;
}

#[tokio::test]
async fn a_panicking_protocol_leaves_no_live_session_and_a_closed_row() {
    let w = world().await;
    let mut events = w.engine.subscribe();
    let (id, task, _user, _dialer) = w.spawn(Arc::new(Panics)).await;
    assert!(task.await.expect_err("the task panicked").is_panic());
    assert!(!w.is_live(&id), "the guard leaves the registry at once");
    assert_eq!(
        ended(&mut events, &id).await.end_reason,
        Some(EndReason::Error)
    );
    assert_closed_with_error(&w, &id, "panicked").await;
}

#[tokio::test]
async fn a_run_abandoned_midway_leaves_no_live_session_and_a_closed_row() {
    let w = world().await;
    let mut events = w.engine.subscribe();
    let (id, task, _user, _dialer) = w.spawn(Arc::new(Stall)).await;
    assert!(w.is_live(&id));
    task.abort();
    assert!(task.await.expect_err("aborted").is_cancelled());
    ended(&mut events, &id).await;
    assert_closed_with_error(&w, &id, "without finishing").await;
}

#[tokio::test]
async fn a_session_ended_while_it_opens_is_refused_and_closed() {
    let w = world().await;
    // Terminates the session between its start and the end of the dial.
    #[derive(Debug)]
    struct TerminatingDialer(Arc<SessionEngine>);
    #[async_trait]
    impl Dialer for TerminatingDialer {
        async fn dial(&self, _t: &DialTarget) -> Result<Connection> {
            loop {
                if let Some(l) = self.0.live().first() {
                    self.0.terminate(&l.session.id, "ops", None);
                    return Ok(Connection::stream(tokio::io::duplex(16).0));
                }
                tokio::task::yield_now().await;
            }
        }
    }
    let (user, mut user_peer) = tokio::io::duplex(16);
    let e = w
        .engine
        .run(
            w.approval().await,
            Box::new(Connection::stream(user)),
            Arc::new(TerminatingDialer(w.engine.clone())),
            &Hold,
        )
        .await
        .expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    let mut buf = [0u8; 1];
    assert_eq!(user_peer.read(&mut buf).await.unwrap(), 0, "user closed");
    let rows = w.store.list_sessions(&Default::default()).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].end_reason, Some(EndReason::TerminatedBy));
    assert!(w.engine.live().is_empty());
}

#[tokio::test]
async fn an_unreachable_target_refuses_the_user_and_closes_the_row_as_refused() {
    let w = world().await;
    let dialer = Arc::new(PipeDialer {
        refuse: Some(ErrorKind::TunnelUnavailable),
        ..PipeDialer::default()
    });
    let (user, _peer) = tokio::io::duplex(16);
    let e = w
        .engine
        .run(
            w.approval().await,
            Box::new(Connection::stream(user)),
            dialer,
            &TcpSplice,
        )
        .await
        .expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::TunnelUnavailable);
    let rows = w.store.list_sessions(&Default::default()).await.unwrap();
    assert_eq!(rows[0].end_reason, Some(EndReason::Refused));
    assert!(rows[0].ended_at.is_some());
    assert!(w.engine.live().is_empty());
}

/// Everything an observer saw, in order.
#[derive(Debug, Default)]
struct Log(Mutex<Vec<String>>);

impl Log {
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

impl SessionObserver for Log {
    fn on_start(&self, session: &Session, _control: &SessionControl) {
        self.0.lock().unwrap().push(format!("start {}", session.id));
    }
    fn on_data(&self, direction: Direction, data: &[u8]) {
        let text = String::from_utf8_lossy(data);
        self.0.lock().unwrap().push(format!("{direction:?} {text}"));
    }
    fn on_event(&self, event: &SessionEvent) {
        let line = format!("event {} {}", event.action, event.detail);
        self.0.lock().unwrap().push(line);
    }
    fn on_end(&self, session: &Session) {
        let reason = session.end_reason.map(|r| r.as_str()).unwrap_or("none");
        self.0.lock().unwrap().push(format!("end {reason}"));
    }
}

#[derive(Debug, Default)]
struct Factory(Mutex<Vec<Arc<Log>>>);

impl ObserverFactory for Factory {
    fn observers(&self, _session: &Session) -> Vec<Arc<dyn SessionObserver>> {
        let log = Arc::new(Log::default());
        self.0.lock().unwrap().push(log.clone());
        vec![log]
    }
}

#[tokio::test]
async fn observers_see_start_data_and_end_of_a_tcp_splice() {
    let w = world().await;
    let factory = Arc::new(Factory::default());
    w.engine.add_observer_factory(factory.clone());
    let (id, task, mut user, dialer) = w.spawn(Arc::new(TcpSplice)).await;
    let mut target = dialer.target();
    user.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    target.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    target.write_all(b"pong!").await.unwrap();
    let mut buf = [0u8; 5];
    user.read_exact(&mut buf).await.unwrap();
    assert_eq!(
        w.engine.live()[0].session.bytes_up + w.engine.live()[0].session.bytes_down,
        9
    );
    drop(user);
    drop(target);
    let s = task.await.unwrap().unwrap();
    assert_eq!(
        (s.end_reason, s.bytes_up, s.bytes_down),
        (Some(EndReason::Completed), 4, 5)
    );
    let log = factory.0.lock().unwrap()[0].lines();
    assert_eq!(
        log,
        [
            format!("start {id}"),
            "Up ping".into(),
            "Down pong!".into(),
            "end completed".into()
        ]
    );
}

#[tokio::test]
async fn events_reach_observers_the_audit_log_and_subscribers_and_watchers_join_late() {
    let w = world().await;
    let mut events = w.engine.subscribe();
    let factory = Arc::new(Factory::default());
    w.engine.add_observer_factory(factory.clone());
    let (id, task, _user, _dialer) = w.spawn(Arc::new(Evented)).await;
    let watcher = Arc::new(Log::default());
    assert!(w.engine.watch(&id, watcher.clone()));
    assert!(
        !w.engine
            .watch(&SessionId("ses_gone".into()), watcher.clone())
    );
    w.engine.terminate(&id, "ops", None);
    task.await.unwrap().unwrap();
    let log = factory.0.lock().unwrap()[0].lines();
    assert_eq!(
        log,
        [
            format!("start {id}"),
            r#"event sftp.upload {"path":"/tmp/a"}"#.into(),
            "end terminated_by".into()
        ]
    );
    assert_eq!(watcher.lines().first(), Some(&format!("start {id}")));
    assert_eq!(
        watcher.lines().last().map(String::as_str),
        Some("end terminated_by")
    );
    let audited = w
        .store
        .audit_records(&AuditFilter::default())
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.event.action == "session.sftp.upload")
        .expect("the event is audited");
    assert_eq!(audited.event.session_id, Some(id.clone()));
    assert_eq!(audited.event.detail["path"], "/tmp/a");
    // The engine's event stream carries it too (the SDK's C and Python
    // events), between the session's start and end.
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push(e);
    }
    let activity = seen
        .iter()
        .position(|e| {
            matches!(e, EngineEvent::SessionActivity { session_id, action, detail, .. }
                if session_id == &id && action == "session.sftp.upload" && detail["path"] == "/tmp/a")
        })
        .unwrap_or_else(|| panic!("no activity event in {seen:?}"));
    let ended = seen
        .iter()
        .position(|e| matches!(e, EngineEvent::SessionEnded { .. }))
        .expect("the end");
    assert!(activity < ended, "{seen:?}");
}

/// Ends its session as a failed mandatory recording on the first byte.
#[derive(Debug, Default)]
struct FailingRecorder(Mutex<Option<SessionControl>>);

impl SessionObserver for FailingRecorder {
    fn on_start(&self, _session: &Session, control: &SessionControl) {
        *self.0.lock().unwrap() = Some(control.clone());
    }
    fn on_data(&self, _direction: Direction, _data: &[u8]) {
        if let Some(c) = self.0.lock().unwrap().as_ref() {
            c.end(EndReason::RecordingFailed, Some("disk full".into()));
        }
    }
}

#[tokio::test]
async fn a_failing_recorder_ends_the_session_as_recording_failed() {
    let w = world().await;
    let (id, task, mut user, _dialer) = w.spawn(Arc::new(TcpSplice)).await;
    assert!(w.engine.watch(&id, Arc::new(FailingRecorder::default())));
    user.write_all(b"x").await.unwrap();
    let s = task.await.unwrap().unwrap();
    assert_eq!(s.end_reason, Some(EndReason::RecordingFailed));
    assert_eq!(s.end_detail.as_deref(), Some("disk full"));
}

#[tokio::test]
async fn the_live_session_knows_its_protocol() {
    let w = world().await;
    #[derive(Debug)]
    struct Report(Mutex<Option<SessionProtocol>>);
    #[async_trait]
    impl Protocol for Report {
        fn kind(&self) -> SessionProtocol {
            SessionProtocol::IpConnect
        }
        fn dials_itself(&self) -> bool {
            true
        }
        async fn run(&self, _user: Connection, up: Upstream, live: &LiveSession) -> Result<()> {
            *self.0.lock().unwrap() = Some(live.protocol());
            assert!(matches!(up, Upstream::Dialer { .. }), "{up:?}");
            Ok(())
        }
    }
    let report = Arc::new(Report(Mutex::new(None)));
    let (_id, task, _user, dialer) = w.spawn(report.clone()).await;
    task.await.unwrap().unwrap();
    assert_eq!(*report.0.lock().unwrap(), Some(SessionProtocol::IpConnect));
    assert!(
        dialer.targets.lock().unwrap().is_empty(),
        "the runner dialed"
    );
}

#[tokio::test]
async fn approvals_follow_policy_on_the_engine_clock() {
    let w = world().await;
    let from = Originator::new("127.0.0.1", 40000);
    let a = w
        .engine
        .approve(&w.user, None, &w.gatekeeper, &w.service, &from)
        .await
        .expect("inside the grant window");
    assert_eq!(a.until(), Some(w.clock.now().add(HOUR)));
    assert_eq!(a.originator().to_string(), "127.0.0.1:40000");
    drop(a);
    // Past the window on the engine's clock (the wall clock is still inside).
    w.clock.advance(HOUR);
    let e = w
        .engine
        .approve(&w.user, None, &w.gatekeeper, &w.service, &from)
        .await
        .expect_err("the window closed");
    assert_eq!(e.kind(), ErrorKind::AccessExpired);
    let e = w
        .engine
        .approve_named(&w.user, None, &w.gatekeeper.id.0, "nope", &from)
        .await
        .expect_err("unknown service");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.message().contains("`nope`"), "{e}");
    // Refusals are audited and record no session.
    let refused = w
        .store
        .audit_records(&AuditFilter::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.event.action == "session.refused")
        .count();
    assert_eq!(refused, 2);
    assert!(
        w.store
            .list_sessions(&Default::default())
            .await
            .unwrap()
            .is_empty()
    );
}

/// Holds every `session.start` record until released: the window between
/// a session's approval and its registration, widened on purpose.
#[derive(Debug)]
struct SlowStartSink {
    inner: Arc<dyn crate::audit::AuditSink>,
    writing: tokio::sync::Notify,
    release: tokio::sync::Semaphore,
}

#[async_trait]
impl crate::audit::AuditSink for SlowStartSink {
    async fn record(&self, event: crate::model::AuditEvent) -> Result<()> {
        if event.action == "session.start" {
            self.writing.notify_one();
            let _permit = self.release.acquire().await;
        }
        self.inner.record(event).await
    }
}

#[tokio::test]
async fn a_session_approved_just_before_a_revocation_does_not_survive_it() {
    let w = world().await;
    let sink = Arc::new(SlowStartSink {
        inner: Arc::new(StoreAuditSink::new(w.store.clone())),
        writing: tokio::sync::Notify::new(),
        release: tokio::sync::Semaphore::new(0),
    });
    let engine = SessionEngine::with_clock(w.store.clone(), sink.clone(), w.clock.clone());
    let mut events = engine.subscribe();
    let from = Originator::new("127.0.0.1", 40000);
    let approval = engine
        .approve(&w.user, None, &w.gatekeeper, &w.service, &from)
        .await
        .expect("policy allows before the revocation");
    let (user, _user_peer) = tokio::io::duplex(1024);
    let run = tokio::spawn({
        let engine = engine.clone();
        async move {
            engine
                .run(
                    approval,
                    Box::new(Connection::stream(user)),
                    Arc::new(PipeDialer::default()),
                    &Hold,
                )
                .await
        }
    });
    // The session is recorded but not yet live when the grant is revoked:
    // the sweep does not see it.
    tokio::time::timeout(SOON, sink.writing.notified())
        .await
        .expect("the session starts");
    w.admin.revoke_grant(&w.grant).await.expect("revoke");
    // The revocation is stamped with the wall clock: step past it.
    w.clock.advance(Duration::from_secs(1));
    assert_eq!(engine.recheck().await.expect("recheck"), 0);
    sink.release.add_permits(1);

    let outcome = tokio::time::timeout(SOON, run)
        .await
        .expect("the revoked session does not run on")
        .expect("no panic");
    let error = outcome.expect_err("the revoked session is refused");
    assert_eq!(error.kind(), ErrorKind::PermissionDenied, "{error}");
    let id = started(&mut events).await;
    let ended = ended(&mut events, &id).await;
    assert_eq!(ended.end_reason, Some(EndReason::Revoked), "{ended:?}");
    assert!(engine.live().is_empty());
    assert_eq!(w.row(&id).await.end_reason, Some(EndReason::Revoked));
}

/// Fails every `session.start` record, as a full disk or a lost database would.
#[derive(Debug)]
struct FailingStartSink(Arc<dyn crate::audit::AuditSink>);

#[async_trait]
impl crate::audit::AuditSink for FailingStartSink {
    async fn record(&self, event: crate::model::AuditEvent) -> Result<()> {
        if event.action == "session.start" {
            return Err(Error::new(ErrorKind::Storage, "audit log unavailable"));
        }
        self.0.record(event).await
    }
}

#[tokio::test]
async fn a_session_whose_start_cannot_be_audited_is_refused() {
    let w = world().await;
    let sink = Arc::new(FailingStartSink(Arc::new(StoreAuditSink::new(
        w.store.clone(),
    ))));
    let engine = SessionEngine::with_clock(w.store.clone(), sink, w.clock.clone());
    let from = Originator::new("127.0.0.1", 40000);
    let approval = engine
        .approve(&w.user, None, &w.gatekeeper, &w.service, &from)
        .await
        .expect("policy allows");
    let (user, _user_peer) = tokio::io::duplex(1024);
    let dialer = Arc::new(PipeDialer::default());
    let outcome = tokio::time::timeout(
        SOON,
        engine.run(approval, Box::new(Connection::stream(user)), dialer, &Hold),
    )
    .await
    .expect("the refusal is immediate");
    let error = outcome.expect_err("an unaudited session must not run");
    assert_eq!(error.kind(), ErrorKind::Storage, "{error}");
    assert!(error.to_string().contains("session.start"), "{error}");
    assert!(engine.live().is_empty());
    let rows = w.store.list_sessions(&Default::default()).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].end_reason, Some(EndReason::Refused), "{rows:?}");
}

#[tokio::test]
async fn a_session_the_server_opens_goes_through_the_services_own_gatekeeper() {
    let w = world().await;
    let from = Originator::new("127.0.0.1", 40000);
    w.admin.add_gatekeeper("acme", "gk2", HOUR).await.unwrap();
    let gk2 = w.admin.gatekeeper("gk2").await.unwrap();
    let now = w.clock.now();
    // The world's gatekeeper as the hub knows it once it enrolled.
    let code = w.admin.issue_code("gk", HOUR).await.unwrap();
    w.store
        .redeem_registration_code(
            &crate::tunnel::code_hash(&code.code),
            "ssh-ed25519 AAAA",
            "SHA256:gk",
            now,
        )
        .await
        .unwrap()
        .expect("a fresh code");
    // Only the other gatekeeper of the customer is online: the service's
    // network is out of reach.
    w.store
        .set_gatekeeper_state(&gk2.id, true, false, None, now)
        .await
        .unwrap();
    let e = w
        .engine
        .approve_in_server(&w.user, &w.service, &from)
        .await
        .expect_err("the service's gatekeeper is offline");
    assert_eq!(e.kind(), ErrorKind::TunnelUnavailable);
    assert!(e.message().contains("`ssh`"), "{e}");
    w.store
        .set_gatekeeper_state(&w.gatekeeper.id, true, false, None, now)
        .await
        .unwrap();
    let a = w
        .engine
        .approve_in_server(&w.user, &w.service, &from)
        .await
        .expect("through the service's gatekeeper");
    assert_eq!(a.gatekeeper().id, w.gatekeeper.id);
}
