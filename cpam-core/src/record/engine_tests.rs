//! The recorder on a real engine: a test protocol emits terminal frames,
//! the recorder writes them, and a recording that cannot be written ends a
//! mandatory session with `recording_failed`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::*;
use crate::admin::Admin;
use crate::audit::StoreAuditSink;
use crate::error::{Error, ErrorKind, Result};
use crate::model::{EndReason, Gatekeeper, Service, ServiceKind, SessionProtocol, Timestamp, User};
use crate::session::{LiveSession, Originator, Protocol, SessionEngine, TerminalFrame, Upstream};
use crate::store::{SqlStore, Store};
use crate::tunnel::dialer::{Connection, DirectDialer};

const HOUR: Duration = Duration::from_secs(3600);

struct World {
    engine: Arc<SessionEngine>,
    user: User,
    gatekeeper: Gatekeeper,
    service: Service,
}

async fn world() -> World {
    let start = Timestamp::now();
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
        engine: SessionEngine::new(store, audit),
        user,
        gatekeeper,
        service,
    }
}

/// A terminal protocol that plays `frames`, then (when `wait`) runs until
/// the session is ended from outside.
#[derive(Debug)]
struct Script {
    frames: Vec<TerminalFrame>,
    wait: bool,
}

#[async_trait]
impl Protocol for Script {
    fn kind(&self) -> SessionProtocol {
        SessionProtocol::Ssh
    }

    fn dials_itself(&self) -> bool {
        true
    }

    async fn run(&self, _user: Connection, _up: Upstream, live: &LiveSession) -> Result<()> {
        for f in &self.frames {
            live.terminal(f);
            tokio::task::yield_now().await;
        }
        if self.wait {
            tokio::time::timeout(Duration::from_secs(10), live.cancel().cancelled())
                .await
                .map_err(|_| Error::internal("the session was not ended"))?;
        }
        Ok(())
    }
}

impl World {
    async fn run(&self, recorder: Arc<Recorder>, script: Script) -> crate::model::Session {
        self.engine.add_observer_factory(recorder);
        let approval = self
            .engine
            .approve(
                &self.user,
                None,
                &self.gatekeeper,
                &self.service,
                &Originator::new("127.0.0.1", 40000),
            )
            .await
            .expect("policy allows");
        let (user, _peer) = tokio::io::duplex(1024);
        self.engine
            .run(
                approval,
                Box::new(Connection::stream(user)),
                Arc::new(DirectDialer),
                &script,
            )
            .await
            .expect("the session ran")
    }
}

fn out(data: &'static [u8]) -> TerminalFrame {
    TerminalFrame::Output {
        channel: 0,
        data: Bytes::from_static(data),
    }
}

fn open(channel: u32) -> TerminalFrame {
    TerminalFrame::Open {
        channel,
        cols: 80,
        rows: 24,
        term: "xterm".into(),
        command: None,
    }
}

fn store() -> (tempfile::TempDir, Arc<FileRecordingStore>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = RecordingKey::from_seed(&[3; 32]);
    let store = Arc::new(FileRecordingStore::open(dir.path(), key).expect("store"));
    (dir, store)
}

#[tokio::test]
async fn a_session_is_recorded_per_channel_and_sealed() {
    let w = world().await;
    let (_dir, store) = store();
    let recorder = Arc::new(Recorder::new(store.clone(), RecorderOptions::default()));
    let euro = "€".as_bytes();
    let frames = vec![
        open(0),
        out(b"$ "),
        TerminalFrame::Input {
            channel: 0,
            data: Bytes::from_static(b"secret-typed"),
        },
        TerminalFrame::Output {
            channel: 0,
            data: Bytes::copy_from_slice(&euro[..1]),
        },
        TerminalFrame::Output {
            channel: 0,
            data: Bytes::copy_from_slice(&euro[1..]),
        },
        TerminalFrame::Resize {
            channel: 0,
            cols: 120,
            rows: 40,
        },
        open(1),
        TerminalFrame::Output {
            channel: 1,
            data: Bytes::from_static(b"exec output"),
        },
        TerminalFrame::Close {
            channel: 1,
            exit_status: Some(0),
        },
        out(b" done\r\n"),
    ];
    let session = w
        .run(
            recorder.clone(),
            Script {
                frames,
                wait: false,
            },
        )
        .await;
    assert_eq!(session.end_reason, Some(EndReason::Completed));
    assert!(recorder.wait_sealed(Duration::from_secs(10)));
    let list = store
        .list(&RecordingFilter::session(&session.id))
        .expect("list");
    assert_eq!(list.len(), 2);
    for info in &list {
        assert_eq!(info.state, Some(SealState::Complete));
        store.verify(&info.id).expect("verifies");
    }
    let id = RecordingId::new(&session.id, 0).expect("id");
    let events: Vec<_> = store
        .events(&id)
        .expect("events")
        .collect::<Result<_>>()
        .expect("parse");
    let output: String = events
        .iter()
        .filter(|e| e.kind == EventKind::Output)
        .map(|e| e.data.as_str())
        .collect();
    assert_eq!(output, "$ € done\r\n");
    assert!(
        events
            .iter()
            .all(|e| e.kind != EventKind::Input && !e.data.contains("secret")),
        "input is not recorded unless asked for"
    );
    assert!(
        events
            .iter()
            .any(|e| e.kind == EventKind::Resize && e.data == "120x40")
    );
    let times: Vec<f64> = events.iter().map(|e| e.t).collect();
    assert!(times.windows(2).all(|p| p[0] <= p[1]), "{times:?}");
    let exec = RecordingId::new(&session.id, 1).expect("id");
    assert_eq!(
        store.events(&exec).expect("events").header().title,
        Some(format!("{} channel 1", session.id))
    );
}

#[tokio::test]
async fn input_is_recorded_when_the_policy_says_so() {
    let w = world().await;
    let (_dir, store) = store();
    let options = RecorderOptions {
        record_input: true,
        ..RecorderOptions::default()
    };
    let recorder = Arc::new(Recorder::new(store.clone(), options));
    let frames = vec![
        open(0),
        TerminalFrame::Input {
            channel: 0,
            data: Bytes::from_static(b"ls\r"),
        },
    ];
    let session = w
        .run(
            recorder.clone(),
            Script {
                frames,
                wait: false,
            },
        )
        .await;
    assert!(recorder.wait_sealed(Duration::from_secs(10)));
    let id = RecordingId::new(&session.id, 0).expect("id");
    let events: Vec<_> = store
        .events(&id)
        .expect("events")
        .collect::<Result<_>>()
        .expect("parse");
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].kind, events[0].data.as_str()),
        (EventKind::Input, "ls\r")
    );
}

/// A store that cannot create recordings (a full or read-only disk).
#[derive(Debug)]
struct Broken;

impl RecordingStore for Broken {
    fn create(&self, _: &RecordingId, _: Timestamp) -> Result<Box<dyn RecordingWriter>> {
        Err(Error::new(ErrorKind::Io, "no space left on device"))
    }
    fn list(&self, _: &RecordingFilter) -> Result<Vec<RecordingInfo>> {
        Ok(Vec::new())
    }
    fn open(&self, id: &RecordingId) -> Result<Box<dyn std::io::Read + Send>> {
        Err(Error::not_found(format!("no recording {id}")))
    }
    fn manifest(&self, _: &RecordingId) -> Result<Option<SignedManifest>> {
        Ok(None)
    }
    fn verify(&self, id: &RecordingId) -> Result<Verified> {
        Err(Error::not_found(format!("no recording {id}")))
    }
    fn seal_abandoned(&self) -> Result<Vec<RecordingId>> {
        Ok(Vec::new())
    }
}

#[tokio::test]
async fn a_mandatory_recording_that_cannot_be_written_ends_the_session() {
    let w = world().await;
    let recorder = Arc::new(Recorder::new(Arc::new(Broken), RecorderOptions::default()));
    let session = w
        .run(
            recorder,
            Script {
                frames: vec![open(0), out(b"hello")],
                wait: true,
            },
        )
        .await;
    assert_eq!(session.end_reason, Some(EndReason::RecordingFailed));
    let detail = session.end_detail.unwrap_or_default();
    assert!(detail.contains("no space left"), "{detail}");
}

#[tokio::test]
async fn a_recording_that_cannot_keep_up_ends_a_mandatory_session() {
    let w = world().await;
    let (_dir, store) = store();
    let options = RecorderOptions {
        max_queued_bytes: 256,
        ..RecorderOptions::default()
    };
    let recorder = Arc::new(Recorder::new(store.clone(), options));
    let big = TerminalFrame::Output {
        channel: 0,
        data: Bytes::from(vec![b'x'; 4096]),
    };
    let session = w
        .run(
            recorder.clone(),
            Script {
                frames: vec![open(0), big],
                wait: true,
            },
        )
        .await;
    assert_eq!(session.end_reason, Some(EndReason::RecordingFailed));
    assert!(
        session
            .end_detail
            .unwrap_or_default()
            .contains("cannot keep up")
    );
    assert!(recorder.wait_sealed(Duration::from_secs(10)));
    let id = RecordingId::new(&session.id, 0).expect("id");
    assert_eq!(
        store.verify(&id).expect("verifies").state,
        SealState::Incomplete
    );
}

#[tokio::test]
async fn an_optional_recording_that_cannot_keep_up_is_sealed_incomplete() {
    let w = world().await;
    let (_dir, store) = store();
    let options = RecorderOptions {
        max_queued_bytes: 256,
        mandatory: false,
        ..RecorderOptions::default()
    };
    let recorder = Arc::new(Recorder::new(store.clone(), options));
    let big = TerminalFrame::Output {
        channel: 0,
        data: Bytes::from(vec![b'x'; 4096]),
    };
    let session = w
        .run(
            recorder.clone(),
            Script {
                frames: vec![open(0), big, out(b"after")],
                wait: false,
            },
        )
        .await;
    assert_eq!(session.end_reason, Some(EndReason::Completed));
    assert!(recorder.wait_sealed(Duration::from_secs(10)));
    let id = RecordingId::new(&session.id, 0).expect("id");
    assert_eq!(
        store.verify(&id).expect("verifies").state,
        SealState::Incomplete
    );
}

#[tokio::test]
async fn plain_tcp_sessions_get_no_recorder() {
    let (_dir, store) = store();
    let recorder = Recorder::new(store, RecorderOptions::default());
    let w = world().await;
    let mut s = crate::model::Session {
        id: crate::model::SessionId::generate(),
        user_id: w.user.id.clone(),
        user_name: "vera".into(),
        customer_id: w.service.customer_id.clone(),
        gatekeeper_id: None,
        protocol: SessionProtocol::Tcp,
        node_id: None,
        service_id: w.service.id.clone(),
        service_name: "ssh".into(),
        target: w.service.target.clone(),
        grant_id: None,
        started_at: Timestamp::now(),
        ended_at: None,
        bytes_up: 0,
        bytes_down: 0,
        end_reason: None,
        end_detail: None,
    };
    use crate::session::ObserverFactory as _;
    assert!(recorder.observers(&s).is_empty());
    s.protocol = SessionProtocol::Ssh;
    assert_eq!(recorder.observers(&s).len(), 1);
}

#[tokio::test]
async fn a_10_mib_line_and_a_resize_storm_are_recorded_whole() {
    let w = world().await;
    let (_dir, store) = store();
    let recorder = Arc::new(Recorder::new(store.clone(), RecorderOptions::default()));
    let mut frames = vec![open(0)];
    // 10 MiB without a newline, in 32 KiB frames, each cutting a
    // three-byte character in two.
    let unit = "ab€".repeat(32 * 1024 / 5);
    let mut sent = 0usize;
    let mut carry = Vec::new();
    while sent < 10 << 20 {
        let mut data = std::mem::take(&mut carry);
        data.extend_from_slice(unit.as_bytes());
        carry = data.split_off(data.len() - 2);
        sent += data.len();
        frames.push(TerminalFrame::Output {
            channel: 0,
            data: Bytes::from(data),
        });
    }
    frames.push(TerminalFrame::Output {
        channel: 0,
        data: Bytes::from(carry),
    });
    for i in 0..5_000u16 {
        frames.push(TerminalFrame::Resize {
            channel: 0,
            cols: 80 + i % 50,
            rows: 24,
        });
    }
    let session = w
        .run(
            recorder.clone(),
            Script {
                frames,
                wait: false,
            },
        )
        .await;
    assert_eq!(session.end_reason, Some(EndReason::Completed));
    assert!(recorder.wait_sealed(Duration::from_secs(30)));
    let id = RecordingId::new(&session.id, 0).expect("id");
    assert_eq!(
        store.verify(&id).expect("verifies").state,
        SealState::Complete
    );
    let (mut output, mut resizes) = (0usize, 0usize);
    for e in store.events(&id).expect("events") {
        let e = e.expect("parses");
        match e.kind {
            EventKind::Output => {
                assert!(!e.data.contains('\u{fffd}'), "a character was split");
                output += e.data.len();
            }
            EventKind::Resize => resizes += 1,
            _ => {}
        }
    }
    assert_eq!(output, sent + 2);
    assert_eq!(resizes, 5_000);
}
