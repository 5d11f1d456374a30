//! The proxy between an in-process vendor client and an in-process target
//! server (both russh), on an in-memory store: injection, the master
//! password, host key pins, terminal frames, the input gate and terminate.
//! The same paths run against stock `ssh` and `sshd` in `tests/psm_e2e.rs`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use russh::keys::{Algorithm, PrivateKey};
use russh::server::{Auth, Msg as ServerMsg, Session};
use russh::{Channel, ChannelId, ChannelMsg};

use super::*;
use crate::admin::Admin;
use crate::audit::StoreAuditSink;
use crate::hooks::{CredentialKind, CredentialRequest, CredentialSource};
use crate::model::{Gatekeeper, ServiceKind, Session as SessionRow, Timestamp};
use crate::session::{ObserverFactory, Originator, SessionEngine, SessionObserver, TerminalFrame};
use crate::store::{SqlStore, Store};
use crate::tunnel::dialer::{DialTarget, Dialer};

const HOUR: Duration = Duration::from_secs(3600);
const SOON: Duration = Duration::from_secs(5);
const CANARY: &str = "canary-Vx81-password";
const MASTER: &str = "master-of-puppets";

fn key() -> PrivateKey {
    PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).expect("a key")
}

// ---- the target: a tiny SSH server that logs who signed in ----

#[derive(Debug, Clone, Default)]
struct TargetLog(Arc<Mutex<Vec<String>>>);

impl TargetLog {
    fn push(&self, s: String) {
        self.0.lock().unwrap().push(s);
    }
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

struct FakeTarget {
    log: TargetLog,
}

impl russh::server::Handler for FakeTarget {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        self.log.push(format!("login {user} {password}"));
        Ok(if user == "svc" && password == CANARY {
            Auth::Accept
        } else {
            Auth::reject()
        })
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<ServerMsg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        cols: u32,
        rows: u32,
        _pw: u32,
        _ph: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.log.push(format!("pty {term} {cols}x{rows}"));
        session.channel_success(channel)?;
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        session.data(channel, bytes::Bytes::from_static(b"target$ "))?;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        if data == b"flood" {
            // 64 MiB as fast as the proxy takes them.
            let handle = session.handle();
            tokio::spawn(async move {
                let chunk = bytes::Bytes::from(vec![b'x'; 64 * 1024]);
                for _ in 0..1024 {
                    if handle.data(channel, chunk.clone()).await.is_err() {
                        return;
                    }
                }
                let _ = handle.close(channel).await;
            });
            return Ok(());
        }
        let out = match data {
            b"whoami" => "svc\n".to_string(),
            other => format!("ran {}\n", String::from_utf8_lossy(other)),
        };
        session.data(channel, bytes::Bytes::from(out))?;
        session.exit_status_request(channel, 0)?;
        session.eof(channel)?;
        session.close(channel)?;
        Ok(())
    }

    async fn window_change_request(
        &mut self,
        _channel: ChannelId,
        cols: u32,
        rows: u32,
        _pw: u32,
        _ph: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.log.push(format!("resize {cols}x{rows}"));
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // A shell that echoes, asks for a password on `sudo`, and exits.
        let text = String::from_utf8_lossy(data).to_string();
        if text.starts_with("sudo") {
            session.data(
                channel,
                bytes::Bytes::from_static(b"\r\n[sudo] password for svc: "),
            )?;
        } else if text == "exit\r" {
            session.exit_status_request(channel, 3)?;
            session.close(channel)?;
        } else if !text.contains("hunter2") {
            session.data(channel, bytes::Bytes::from(text))?;
        }
        Ok(())
    }
}

/// Dials an in-process target that presents `host_key`.
#[derive(Debug)]
struct TargetDialer {
    host_key: Mutex<PrivateKey>,
    log: TargetLog,
    /// The target is unreachable.
    down: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl Dialer for TargetDialer {
    async fn dial(&self, _target: &DialTarget) -> crate::Result<Connection> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::new(
                ErrorKind::TunnelUnavailable,
                "cannot reach 10.0.0.5:22: connection refused",
            ));
        }
        let (ours, theirs) = tokio::io::duplex(256 * 1024);
        let config = Arc::new(russh::server::Config {
            keys: vec![self.host_key.lock().unwrap().clone()],
            methods: russh::MethodSet::from(&[russh::MethodKind::Password][..]),
            ..Default::default()
        });
        let log = self.log.clone();
        tokio::spawn(async move {
            if let Ok(running) = russh::server::run_stream(config, theirs, FakeTarget { log }).await
            {
                let _ = running.await;
            }
        });
        Ok(Connection::stream(ours))
    }
}

// ---- the server side's seams ----

#[derive(Debug)]
struct FixedMaster;

#[async_trait]
impl MasterPasswords for FixedMaster {
    async fn verify(&self, _user: &User, password: &Secret<String>) -> crate::Result<()> {
        if password.expose() == MASTER {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::Unauthenticated,
                "wrong master password",
            ))
        }
    }
}

/// Hands out `svc`'s password (or a wrong one once `stale` is set).
#[derive(Debug, Default)]
struct VaultStandIn {
    stale: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl CredentialSource for VaultStandIn {
    async fn credential(&self, _r: &CredentialRequest) -> crate::Result<Option<Credential>> {
        let stale = self.stale.load(std::sync::atomic::Ordering::SeqCst);
        Ok(Some(Credential {
            username: "svc".into(),
            kind: CredentialKind::Password,
            secret: Secret::new(if stale {
                "rotated-away".into()
            } else {
                CANARY.into()
            }),
        }))
    }
}

#[derive(Debug, Default)]
struct Frames(Mutex<Vec<TerminalFrame>>);

impl SessionObserver for Frames {
    fn on_terminal(&self, frame: &TerminalFrame) {
        self.0.lock().unwrap().push(frame.clone());
    }
}

#[derive(Debug)]
struct FramesFactory(Arc<Frames>);

impl ObserverFactory for FramesFactory {
    fn observers(&self, _s: &SessionRow) -> Vec<Arc<dyn SessionObserver>> {
        vec![self.0.clone()]
    }
}

use crate::hooks::Credential;

struct World {
    engine: Arc<SessionEngine>,
    store: Arc<dyn Store>,
    user: User,
    gatekeeper: Gatekeeper,
    service: Service,
    proxy: Arc<SshProxy>,
    dialer: Arc<TargetDialer>,
    frames: Arc<Frames>,
    vault: Arc<VaultStandIn>,
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
        .add_service("acme", "db1", "10.0.0.5:22", ServiceKind::Custom)
        .await
        .unwrap();
    admin
        .add_grant("vera", "acme", "db1", start, Some(start.add(HOUR)), None)
        .await
        .unwrap();
    let mut gatekeeper = admin.gatekeeper("gk").await.unwrap();
    gatekeeper.public_key = Some("ssh-ed25519 AAAA".into());
    gatekeeper.registered_at = Some(start);
    let engine = SessionEngine::new(store.clone(), audit);
    let vault = Arc::new(VaultStandIn::default());
    engine.set_credential_source(Some(vault.clone()));
    let frames = Arc::new(Frames::default());
    engine.add_observer_factory(Arc::new(FramesFactory(frames.clone())));
    let proxy = Arc::new(SshProxy::new(
        key(),
        Arc::new(FixedMaster),
        Arc::new(StorePins::new(store.clone())),
        SshProxyOptions::default(),
    ));
    World {
        engine,
        store,
        user,
        gatekeeper,
        service,
        proxy,
        dialer: Arc::new(TargetDialer {
            host_key: Mutex::new(key()),
            log: TargetLog::default(),
            down: std::sync::atomic::AtomicBool::new(false),
        }),
        frames,
        vault,
    }
}

// ---- the vendor: a russh client ----

struct AnyHostKey;

impl russh::client::Handler for AnyHostKey {
    type Error = russh::Error;
    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

type Vendor = russh::client::Handle<AnyHostKey>;

impl World {
    /// Starts a session and signs the vendor in with `master`; returns the
    /// vendor's handle (when the master password was taken), and the task
    /// running the session.
    async fn connect(
        &self,
        master: &str,
    ) -> (
        Option<Vendor>,
        tokio::task::JoinHandle<crate::Result<SessionRow>>,
    ) {
        let (user, user_peer) = tokio::io::duplex(256 * 1024);
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
        let (engine, proxy, dialer) =
            (self.engine.clone(), self.proxy.clone(), self.dialer.clone());
        let task = tokio::spawn(async move {
            engine
                .run(
                    approval,
                    Box::new(Connection::stream(user)),
                    dialer,
                    proxy.as_ref(),
                )
                .await
        });
        let config = Arc::new(russh::client::Config::default());
        let mut vendor = russh::client::connect_stream(config, user_peer, AnyHostKey)
            .await
            .expect("SSH with the proxy");
        let first = vendor
            .authenticate_keyboard_interactive_start("whoever", None)
            .await
            .expect("keyboard-interactive");
        let russh::client::KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. } = first
        else {
            panic!("expected a prompt, got {first:?}");
        };
        assert_eq!(prompts[0].prompt, "Master password: ");
        assert!(!prompts[0].echo);
        let answer = vendor
            .authenticate_keyboard_interactive_respond(vec![master.to_string()])
            .await
            .expect("an answer");
        let signed_in = matches!(
            answer,
            russh::client::KeyboardInteractiveAuthResponse::Success
        );
        (signed_in.then_some(vendor), task)
    }
}

/// Reads a channel until it closes or `until` appears in its output;
/// returns (stdout, stderr, exit status).
async fn read_channel(
    ch: &mut Channel<russh::client::Msg>,
    until: Option<&str>,
) -> (String, String, Option<u32>) {
    let (mut out, mut err, mut status) = (String::new(), String::new(), None);
    let _ = tokio::time::timeout(SOON, async {
        while let Some(msg) = ch.wait().await {
            match msg {
                ChannelMsg::Data { data } => out.push_str(&String::from_utf8_lossy(&data)),
                ChannelMsg::ExtendedData { data, .. } => {
                    err.push_str(&String::from_utf8_lossy(&data))
                }
                ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                ChannelMsg::Close => break,
                _ => {}
            }
            if until.is_some_and(|u| out.contains(u)) {
                break;
            }
        }
    })
    .await;
    (out, err, status)
}

#[tokio::test]
async fn a_shell_runs_on_the_target_with_the_injected_credential() {
    let w = world().await;
    let (vendor, task) = w.connect(MASTER).await;
    let vendor = vendor.expect("the master password is accepted");
    let mut ch = vendor.channel_open_session().await.unwrap();
    ch.request_pty(true, "xterm-256color", 100, 30, 0, 0, &[])
        .await
        .unwrap();
    ch.request_shell(true).await.unwrap();
    let (out, _, _) = read_channel(&mut ch, Some("target$ ")).await;
    assert!(out.contains("target$ "), "{out:?}");
    ch.data_bytes(bytes::Bytes::from_static(b"echo hello\r"))
        .await
        .unwrap();
    let (out, _, _) = read_channel(&mut ch, Some("echo hello")).await;
    assert!(out.contains("echo hello"), "{out:?}");
    ch.window_change(120, 40, 0, 0).await.unwrap();
    ch.data_bytes(bytes::Bytes::from_static(b"exit\r"))
        .await
        .unwrap();
    let (_, _, status) = read_channel(&mut ch, None).await;
    assert_eq!(
        status,
        Some(3),
        "the target's exit status reaches the vendor"
    );
    vendor
        .disconnect(russh::Disconnect::ByApplication, "", "")
        .await
        .unwrap();
    let ended = tokio::time::timeout(SOON, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(ended.end_reason, Some(crate::model::EndReason::Completed));

    let log = w.dialer.log.all();
    assert!(log.contains(&format!("login svc {CANARY}")), "{log:?}");
    assert!(
        log.contains(&"pty xterm-256color 100x30".to_string()),
        "{log:?}"
    );
    assert!(log.contains(&"resize 120x40".to_string()), "{log:?}");

    let frames = w.frames.0.lock().unwrap().clone();
    assert!(
        matches!(&frames[0], TerminalFrame::Open { channel: 0, cols: 100, rows: 30, term, command: None } if term == "xterm-256color"),
        "{frames:?}"
    );
    let output: Vec<u8> = frames
        .iter()
        .filter_map(|f| match f {
            TerminalFrame::Output { data, .. } => Some(data.to_vec()),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(String::from_utf8_lossy(&output).contains("target$ echo hello"));
    assert!(frames.contains(&TerminalFrame::Input {
        channel: 0,
        data: bytes::Bytes::from_static(b"echo hello\r")
    }));
    assert!(frames.contains(&TerminalFrame::Resize {
        channel: 0,
        cols: 120,
        rows: 40
    }));
    assert!(
        matches!(
            frames.last(),
            Some(TerminalFrame::Close {
                channel: 0,
                exit_status: Some(3)
            })
        ),
        "{frames:?}"
    );
    // The credential is never shown to observers.
    assert!(!format!("{frames:?}").contains(CANARY));
}

#[tokio::test]
async fn exec_runs_a_command_and_the_first_key_is_pinned() {
    let w = world().await;
    let (vendor, _task) = w.connect(MASTER).await;
    let vendor = vendor.unwrap();
    let mut ch = vendor.channel_open_session().await.unwrap();
    ch.exec(true, "whoami").await.unwrap();
    let (out, _, status) = read_channel(&mut ch, None).await;
    assert_eq!((out.as_str(), status), ("svc\n", Some(0)));
    let pinned = StorePins::new(w.store.clone())
        .pinned(&w.service.id)
        .await
        .unwrap();
    let presented = w
        .dialer
        .host_key
        .lock()
        .unwrap()
        .public_key()
        .to_openssh()
        .unwrap();
    assert_eq!(pinned.as_deref(), Some(presented.as_str()));
}

#[tokio::test]
async fn a_wrong_master_password_never_reaches_the_target() {
    let w = world().await;
    let (vendor, _task) = w.connect("not-the-master").await;
    assert!(vendor.is_none(), "a wrong master password is refused");
    assert!(
        !w.dialer
            .log
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("login")),
        "no login on the target before the master password"
    );
}

#[tokio::test]
async fn a_changed_target_host_key_refuses_the_session_with_a_message() {
    let w = world().await;
    let (vendor, _task) = w.connect(MASTER).await;
    let mut ch = vendor.unwrap().channel_open_session().await.unwrap();
    ch.exec(true, "true").await.unwrap();
    let _ = read_channel(&mut ch, None).await;
    // The target now presents another key.
    *w.dialer.host_key.lock().unwrap() = key();
    let (vendor, task) = w.connect(MASTER).await;
    let vendor = vendor.unwrap();
    let mut ch = vendor.channel_open_session().await.unwrap();
    ch.exec(true, "whoami").await.unwrap();
    let (out, err, status) = read_channel(&mut ch, None).await;
    assert_eq!(out, "");
    assert!(err.contains("host key of `db1` changed"), "{err:?}");
    assert_eq!(status, Some(255));
    assert_eq!(
        w.dialer
            .log
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with("login"))
            .count(),
        1,
        "the credential was not sent to the changed target"
    );
    let _ = vendor
        .disconnect(russh::Disconnect::ByApplication, "", "")
        .await;
    let _ = tokio::time::timeout(SOON, task).await;
}

#[tokio::test]
async fn typed_passwords_at_a_prompt_are_not_shown_to_observers() {
    let w = world().await;
    let (vendor, _task) = w.connect(MASTER).await;
    let vendor = vendor.unwrap();
    let mut ch = vendor.channel_open_session().await.unwrap();
    ch.request_pty(true, "xterm", 80, 24, 0, 0, &[])
        .await
        .unwrap();
    ch.request_shell(true).await.unwrap();
    let _ = read_channel(&mut ch, Some("target$ ")).await;
    ch.data_bytes(bytes::Bytes::from_static(b"sudo -i\r"))
        .await
        .unwrap();
    let _ = read_channel(&mut ch, Some("password for svc: ")).await;
    ch.data_bytes(bytes::Bytes::from_static(b"hunter2\r"))
        .await
        .unwrap();
    ch.data_bytes(bytes::Bytes::from_static(b"id\r"))
        .await
        .unwrap();
    let _ = read_channel(&mut ch, Some("id\r")).await;
    let frames = format!("{:?}", w.frames.0.lock().unwrap());
    assert!(frames.contains("sudo -i"), "{frames}");
    assert!(!frames.contains("hunter2"), "{frames}");
    assert!(
        frames.contains("id\\r"),
        "input is shown again after Enter: {frames}"
    );
}

#[tokio::test]
async fn terminate_tells_the_vendor_why_and_closes_within_a_second() {
    let w = world().await;
    let (vendor, task) = w.connect(MASTER).await;
    let vendor = vendor.unwrap();
    let mut ch = vendor.channel_open_session().await.unwrap();
    ch.request_pty(true, "xterm", 80, 24, 0, 0, &[])
        .await
        .unwrap();
    ch.request_shell(true).await.unwrap();
    let _ = read_channel(&mut ch, Some("target$ ")).await;
    let id = w
        .engine
        .live()
        .first()
        .expect("a live session")
        .session
        .id
        .clone();
    let at = std::time::Instant::now();
    assert!(w.engine.terminate(&id, "alice", None));
    let (_, err, _) = read_channel(&mut ch, None).await;
    assert!(
        err.contains("[cpam] session terminated by alice"),
        "{err:?}"
    );
    let ended = tokio::time::timeout(SOON, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(at.elapsed() < Duration::from_secs(2), "{:?}", at.elapsed());
    assert_eq!(
        ended.end_reason,
        Some(crate::model::EndReason::TerminatedBy)
    );
}

#[tokio::test]
async fn a_credential_the_target_refuses_is_told_to_the_vendor_and_audited() {
    let w = world().await;
    w.vault
        .stale
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (vendor, task) = w.connect(MASTER).await;
    let vendor = vendor.expect("the master password is accepted");
    let mut ch = vendor.channel_open_session().await.unwrap();
    ch.exec(true, "whoami").await.unwrap();
    let (out, err, status) = read_channel(&mut ch, None).await;
    assert_eq!(out, "");
    assert!(
        err.contains("the target refused the stored credential for `svc`"),
        "{err:?}"
    );
    assert_eq!(status, Some(255));
    let _ = vendor
        .disconnect(russh::Disconnect::ByApplication, "", "")
        .await;
    let ended = tokio::time::timeout(SOON, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let audit = w
        .store
        .audit_records(&crate::store::AuditFilter::default())
        .await
        .unwrap();
    assert!(
        audit
            .iter()
            .any(|r| r.event.action == "session.ssh.target_refused"
                && r.event.session_id.as_ref() == Some(&ended.id)),
        "the refusal is audited"
    );
    assert!(!format!("{audit:?}").contains("rotated-away"));
}

#[tokio::test]
async fn an_unreachable_target_refuses_the_session() {
    let w = world().await;
    w.dialer
        .down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (user, _user_peer) = tokio::io::duplex(1024);
    let approval = w
        .engine
        .approve(
            &w.user,
            None,
            &w.gatekeeper,
            &w.service,
            &Originator::new("127.0.0.1", 1),
        )
        .await
        .unwrap();
    let refused = w
        .engine
        .run(
            approval,
            Box::new(Connection::stream(user)),
            w.dialer.clone(),
            w.proxy.as_ref(),
        )
        .await
        .expect_err("no session without a target");
    assert_eq!(refused.kind(), ErrorKind::TunnelUnavailable);
    let rows = w
        .store
        .list_sessions(&crate::store::SessionFilter::default())
        .await
        .unwrap();
    assert_eq!(rows[0].end_reason, Some(crate::model::EndReason::Refused));
}

#[tokio::test]
async fn a_vendor_that_stops_reading_holds_up_only_its_own_session() {
    let w = world().await;
    // Session A floods output its vendor never reads.
    let (flooded, _task_a) = w.connect(MASTER).await;
    let flooded = flooded.unwrap();
    let ch_a = flooded.channel_open_session().await.unwrap();
    ch_a.exec(true, "flood").await.unwrap();
    // Session B works meanwhile.
    let (vendor, _task_b) = w.connect(MASTER).await;
    let mut ch = vendor.unwrap().channel_open_session().await.unwrap();
    ch.exec(true, "whoami").await.unwrap();
    let (out, _, status) = read_channel(&mut ch, None).await;
    assert_eq!((out.as_str(), status), ("svc\n", Some(0)));
    // What A's proxy took from its target stays within the vendor's
    // window and a few channel buffers, not the 64 MiB the target offers.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let down = w
        .engine
        .live()
        .iter()
        .map(|l| l.session.bytes_down)
        .max()
        .expect("session A is live");
    assert!(
        down > 64 * 1024,
        "the flood reached the proxy ({down} bytes)"
    );
    assert!(down < 32 * 1024 * 1024, "session A buffered {down} bytes");
    drop(ch_a);
}
