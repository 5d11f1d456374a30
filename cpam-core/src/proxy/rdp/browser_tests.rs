//! The browser desktop on the engine, with a fake target: the master
//! password gates it, the in-process client goes through the RDP proxy
//! (the target gets the proxy's connection request, with the vault's
//! username), and the target's refusal reaches the page as the session's
//! end.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ironrdp_pdu::{nego, x224};
use ironrdp_tokio::{FramedWrite as _, TokioFramed};
use tokio::sync::mpsc;

use super::*;
use crate::admin::Admin;
use crate::audit::StoreAuditSink;
use crate::model::{EndReason, Timestamp};
use crate::proxy::rdp::{ProxyCredentials, ProxyTls, StoreCertificatePins};
use crate::session::Originator;
use crate::store::{AuditFilter, SqlStore, Store};
use crate::tunnel::dialer::DialTarget;
use crate::vault::{CheckoutRequest, CredentialSecret, UnsealSecret, Vault, VaultCredentialSource};

const HOUR: Duration = Duration::from_secs(3600);
const MASTER: &str = "vera master password";

/// A target that reads the connection request, keeps it, and refuses.
#[derive(Debug, Default)]
struct RefusingTarget {
    requests: Mutex<Vec<nego::ConnectionRequest>>,
}

#[async_trait]
impl Dialer for Arc<RefusingTarget> {
    async fn dial(&self, _t: &DialTarget) -> Result<Connection> {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let me = self.clone();
        tokio::spawn(async move {
            let mut f = TokioFramed::new(theirs);
            let Ok((_, frame)) = f.read_pdu().await else {
                return;
            };
            if let Ok(r) = ironrdp_core::decode::<x224::X224<nego::ConnectionRequest>>(&frame) {
                me.requests.lock().unwrap().push(r.0);
            }
            let refusal = nego::ConnectionConfirm::Failure {
                code: nego::FailureCode::SSL_NOT_ALLOWED_BY_SERVER,
            };
            let bytes = ironrdp_core::encode_vec(&x224::X224(refusal)).unwrap();
            let _ = f.write_all(&bytes).await;
        });
        Ok(Connection::stream(ours))
    }
}

struct World {
    desktops: BrowserDesktop,
    store: Arc<dyn Store>,
    user: User,
    service: Service,
    target: Arc<RefusingTarget>,
    _dir: tempfile::TempDir,
}

/// `vera` with a master password, a grant and a checkout on `ws1` (kind
/// rdp, the vault's credential `alice`), its customer's gatekeeper online.
async fn world() -> World {
    let now = Timestamp::now();
    let store: Arc<dyn Store> = Arc::new(SqlStore::connect("sqlite::memory:").await.unwrap());
    let audit: Arc<dyn crate::audit::AuditSink> = Arc::new(StoreAuditSink::new(store.clone()));
    let admin = Admin::new(store.clone(), audit.clone(), "test");
    admin.ensure_builtin_roles().await.unwrap();
    admin.add_customer("acme").await.unwrap();
    let service = admin
        .add_service("acme", "ws1", "10.0.0.7:3389", ServiceKind::Rdp)
        .await
        .unwrap();
    let user = admin.add_user("vera", None, &[], &[]).await.unwrap();
    admin
        .add_grant("vera", "acme", "ws1", now, Some(now.add(HOUR)), None)
        .await
        .unwrap();
    let code = admin.add_gatekeeper("acme", "gk", HOUR).await.unwrap();
    let gatekeeper = store
        .redeem_registration_code(
            &crate::tunnel::code_hash(&code.code),
            "ssh-ed25519 AAAA",
            "SHA256:test",
            now,
        )
        .await
        .unwrap()
        .expect("registered");
    store
        .set_gatekeeper_state(&gatekeeper.id, true, false, None, now)
        .await
        .unwrap();
    let hash = crate::password::hash(Secret::new(MASTER.into()))
        .await
        .unwrap();
    store
        .set_master_password_hash(&user.id, Some(&hash), now)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("vault.key");
    crate::vault::create_key_file(&key).unwrap();
    let vault = Vault::unseal(store.clone(), UnsealSecret::key_file(&key).unwrap())
        .await
        .unwrap();
    let canary = Secret::new("target-canary-1".to_string());
    vault
        .set_credential(&service, "alice", CredentialSecret::Password(canary), "t")
        .await
        .unwrap();
    let req = CheckoutRequest {
        user: &user,
        service: &service,
        duration: None,
        gatekeeper: None,
        credential_gatekeeper: None,
        origin: "test",
    };
    crate::vault::check_out(&store, &audit, req, now)
        .await
        .unwrap();
    let engine = SessionEngine::new(store.clone(), audit);
    engine.set_credential_source(Some(Arc::new(VaultCredentialSource::new(vault))));
    let live = LiveHub::new();
    engine.add_observer_factory(live.clone());
    let proxy = Arc::new(RdpProxy::new(
        ProxyTls::self_signed().unwrap(),
        Arc::new(ProxyCredentials::new()),
        Arc::new(StoreCertificatePins::new(store.clone())),
        Default::default(),
    ));
    let target = Arc::new(RefusingTarget::default());
    World {
        desktops: BrowserDesktop {
            engine,
            proxy,
            dialer: Arc::new(target.clone()),
            live,
            throttle: Arc::default(),
        },
        store,
        user,
        service,
        target,
        _dir: dir,
    }
}

impl World {
    async fn open(&self, master: &str) -> (Result<()>, Vec<WatchFrame>) {
        let req = DesktopRequest {
            user: self.user.clone(),
            service: self.service.clone(),
            originator: Originator::new("127.0.0.1", 40000),
            master_password: Secret::new(master.into()),
            width: 1024,
            height: 768,
        };
        let (_input, input_rx) = mpsc::channel(8);
        let (frames_tx, mut frames) = mpsc::channel(64);
        let run = tokio::time::timeout(
            Duration::from_secs(20),
            self.desktops.run(req, input_rx, frames_tx),
        )
        .await
        .expect("the desktop ends by itself");
        let mut got = Vec::new();
        while let Ok(f) = frames.try_recv() {
            got.push(f);
        }
        (run, got)
    }

    async fn actions(&self) -> Vec<String> {
        let records = self
            .store
            .audit_records(&AuditFilter::default())
            .await
            .unwrap();
        records.into_iter().map(|r| r.event.action).collect()
    }
}

#[tokio::test]
async fn a_wrong_master_password_opens_no_session() {
    let w = world().await;
    let (r, frames) = w.open("not the master password").await;
    let e = r.expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
    assert!(e.message().contains("master password"), "{e}");
    assert!(frames.is_empty());
    assert!(w.target.requests.lock().unwrap().is_empty());
    let actions = w.actions().await;
    assert!(
        actions.iter().any(|a| a == "master_password.failure"),
        "{actions:?}"
    );
    assert!(!actions.iter().any(|a| a == "session.start"), "{actions:?}");
}

#[tokio::test]
async fn the_in_process_client_goes_through_the_proxy_and_a_refusal_ends_the_session() {
    let w = world().await;
    let (r, frames) = w.open(MASTER).await;
    let e = r.expect_err("the target refused");
    assert!(e.message().contains("refused the connection"), "{e}");
    assert!(frames.is_empty(), "{frames:?}");
    // The target got the proxy's request: NLA offered (the in-process
    // client's), the vault's username as the cookie.
    let requests = w.target.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(
        requests[0]
            .protocol
            .contains(nego::SecurityProtocol::HYBRID),
        "{requests:?}"
    );
    assert_eq!(
        requests[0].nego_data,
        Some(nego::NegoRequestData::cookie("alice".into()))
    );
    // One session, on the engine's lifecycle, ended with the reason.
    let sessions = w.store.list_sessions(&Default::default()).await.unwrap();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0].protocol, SessionProtocol::Rdp);
    assert_eq!(sessions[0].end_reason, Some(EndReason::Error));
    assert!(
        sessions[0]
            .end_detail
            .as_deref()
            .is_some_and(|d| d.contains("refused the connection")),
        "{sessions:?}"
    );
    let actions = w.actions().await;
    for a in ["rdp.credential_issued", "session.start", "session.end"] {
        assert!(actions.iter().any(|x| x == a), "{a}: {actions:?}");
    }
}
