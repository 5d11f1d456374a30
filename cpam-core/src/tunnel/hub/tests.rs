//! The hub as a front door: a vendor's channel reaches the target through
//! the dialer of the hub's configuration, and the runner records it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Hub, HubConfig};
use crate::admin::Admin;
use crate::audit::StoreAuditSink;
use crate::error::Result;
use crate::events::EngineEvent;
use crate::model::{EndReason, ServiceKind, Timestamp};
use crate::session::SessionEngine;
use crate::store::{SessionFilter, SqlStore, Store};
use crate::tunnel::connect::ConnectClient;
use crate::tunnel::dialer::{Connection, DialTarget, Dialer, DirectDialer, GatekeeperDialer};
use crate::tunnel::{bind_listener, gatekeeper, keys};

/// Dials directly and counts its dials.
#[derive(Debug, Default)]
struct Counting(AtomicUsize);

#[async_trait]
impl Dialer for Counting {
    async fn dial(&self, target: &DialTarget) -> Result<Connection> {
        self.0.fetch_add(1, Ordering::Relaxed);
        DirectDialer.dial(target).await
    }
}

#[tokio::test]
async fn a_vendor_channel_goes_through_the_configured_dialer() {
    // An echo target on loopback.
    let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target_addr = target.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = target.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });

    let store: Arc<dyn Store> = Arc::new(SqlStore::connect("sqlite::memory:").await.unwrap());
    let sink = Arc::new(StoreAuditSink::new(store.clone()));
    let engine = SessionEngine::new(store.clone(), sink.clone());
    let host_key = keys::generate().unwrap();
    let server_key = keys::public_openssh(host_key.public_key());
    let dialer = Arc::new(Counting::default());
    let gatekeepers = Arc::new(GatekeeperDialer::new());
    let hub = Hub::with_config(
        engine,
        HubConfig {
            host_key,
            gatekeepers: gatekeepers.clone(),
            dialer: dialer.clone(),
            throttle: Arc::default(),
            privileged_ssh: None,
            privileged_rdp: None,
            limits: Default::default(),
            ssh_passwords: false,
            live: None,
        },
    );
    let listener = bind_listener("127.0.0.1:0".parse().unwrap()).unwrap();
    let server = listener.local_addr().unwrap().to_string();
    tokio::spawn({
        let hub = hub.clone();
        async move { hub.serve(listener).await }
    });

    let admin = Admin::new(store.clone(), sink, "test");
    admin.ensure_builtin_roles().await.unwrap();
    admin.add_customer("acme").await.unwrap();
    let code = admin
        .add_gatekeeper("acme", "gk", Duration::from_secs(600))
        .await
        .unwrap();
    // Registered but never connected: the gatekeeper dialer could not reach
    // the target, the configured one can.
    let state = tempfile::tempdir().unwrap();
    gatekeeper::register(&server, &code.code, state.path(), None)
        .await
        .unwrap();
    admin.add_user("vendor", None, &[], &[]).await.unwrap();
    admin
        .add_service(
            "acme",
            "echo",
            &target_addr.to_string(),
            ServiceKind::Custom,
        )
        .await
        .unwrap();
    admin
        .add_grant("vendor", "acme", "echo", Timestamp::now(), None, None)
        .await
        .unwrap();
    let profile = admin
        .export_profile("vendor", "gk", &server, &server_key)
        .await
        .unwrap();
    let gk = admin.gatekeeper("gk").await.unwrap();
    assert!(!gatekeepers.is_online(&gk.id));

    let mut events = hub.engine().subscribe();
    let client = ConnectClient::new(profile).unwrap();
    let channel = client
        .open("echo", "127.0.0.1:1".parse().unwrap())
        .await
        .unwrap();
    let mut stream = channel.into_stream();
    stream.write_all(b"through the front door").await.unwrap();
    let mut buf = [0u8; 22];
    stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"through the front door");
    assert_eq!(dialer.0.load(Ordering::Relaxed), 1);
    drop(stream);

    let s = loop {
        match tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
            Ok(Ok(EngineEvent::SessionEnded { session })) => break session,
            Ok(Ok(_)) => continue,
            other => panic!("the session did not end: {other:?}"),
        }
    };
    let sessions = store
        .list_sessions(&SessionFilter::default())
        .await
        .unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].end_reason, Some(EndReason::Completed));
    assert_eq!(s.end_reason, Some(EndReason::Completed));
    assert_eq!((s.bytes_up, s.bytes_down), (22, 22));
    assert!(hub.engine().live().is_empty());
}

/// Accepts any server key (the test's own hub).
#[derive(Debug)]
struct AnyServer;

impl russh::client::Handler for AnyServer {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> std::result::Result<bool, Self::Error> {
        Ok(true)
    }
}

/// One SSH password sign-in; true when the hub accepted it.
async fn password_login(addr: std::net::SocketAddr, user: &str, password: &str) -> bool {
    let config = Arc::new(russh::client::Config::default());
    let mut handle = russh::client::connect(config, addr, AnyServer)
        .await
        .expect("the hub accepts the connection");
    handle
        .authenticate_password(user, password)
        .await
        .expect("the hub answers the sign-in")
        .success()
}

#[tokio::test]
async fn ssh_password_sign_ins_lock_out_like_the_console() {
    let store: Arc<dyn Store> = Arc::new(SqlStore::connect("sqlite::memory:").await.unwrap());
    let sink = Arc::new(StoreAuditSink::new(store.clone()));
    let admin = Admin::new(store.clone(), sink.clone(), "test");
    admin
        .add_user(
            "alice",
            Some(crate::Secret::new("the right password".to_string())),
            &[],
            &[],
        )
        .await
        .unwrap();
    let engine = SessionEngine::new(store.clone(), sink);
    let mut config = HubConfig::new(keys::generate().unwrap());
    config.ssh_passwords = true;
    let hub = Hub::with_config(engine, config);
    let listener = bind_listener("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = {
        let hub = hub.clone();
        tokio::spawn(async move { hub.serve(listener).await })
    };
    assert!(password_login(addr, "alice", "the right password").await);
    for _ in 0..crate::throttle::USER_FAILURES {
        assert!(!password_login(addr, "alice", "a wrong one").await);
    }
    assert!(
        !password_login(addr, "alice", "the right password").await,
        "the right password still signs in after {} failures",
        crate::throttle::USER_FAILURES
    );
    // The console shares this throttle: the same key is locked there.
    assert!(hub.throttle().locked(&["user:alice"]).is_some());
    let refusals = store
        .audit_records(&crate::store::AuditFilter::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.event.action == "login.failure" && r.event.detail["reason"] == "locked out")
        .count();
    assert_eq!(
        refusals, 1,
        "the refused sign-in during the lockout is audited"
    );
    hub.shutdown(Duration::from_secs(1)).await;
    serving.abort();
}

/// A hub on loopback with customer `acme`, registered gatekeeper `gk`,
/// service `echo` (a loopback echo target) granted to `vendor`, and
/// vendor's profile for `gk`.
async fn deployed() -> (Arc<Hub>, Arc<dyn Store>, crate::tunnel::profile::Profile) {
    let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target_addr = target.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = target.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let store: Arc<dyn Store> = Arc::new(SqlStore::connect("sqlite::memory:").await.unwrap());
    let sink = Arc::new(StoreAuditSink::new(store.clone()));
    let host_key = keys::generate().unwrap();
    let server_key = keys::public_openssh(host_key.public_key());
    let mut config = HubConfig::new(host_key);
    config.dialer = Arc::new(DirectDialer);
    let hub = Hub::with_config(SessionEngine::new(store.clone(), sink.clone()), config);
    let listener = bind_listener("127.0.0.1:0".parse().unwrap()).unwrap();
    let server = listener.local_addr().unwrap().to_string();
    tokio::spawn({
        let hub = hub.clone();
        async move { hub.serve(listener).await }
    });
    let admin = Admin::new(store.clone(), sink, "test");
    admin.ensure_builtin_roles().await.unwrap();
    admin.add_customer("acme").await.unwrap();
    let code = admin
        .add_gatekeeper("acme", "gk", Duration::from_secs(600))
        .await
        .unwrap();
    let state = tempfile::tempdir().unwrap();
    gatekeeper::register(&server, &code.code, state.path(), None)
        .await
        .unwrap();
    admin.add_user("vendor", None, &[], &[]).await.unwrap();
    let target = target_addr.to_string();
    admin
        .add_service("acme", "echo", &target, ServiceKind::Custom)
        .await
        .unwrap();
    admin
        .add_grant("vendor", "acme", "echo", Timestamp::now(), None, None)
        .await
        .unwrap();
    let profile = admin
        .export_profile("vendor", "gk", &server, &server_key)
        .await
        .unwrap();
    (hub, store, profile)
}

#[tokio::test]
async fn a_key_deleted_without_a_revocation_opens_nothing_more_on_its_connection() {
    let (_hub, store, profile) = deployed().await;
    let client = ConnectClient::new(profile).unwrap();
    let from: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
    drop(client.open("echo", from).await.expect("the key works"));
    // Deleted straight in the store, as another node sharing it would: no
    // revocation reaches this hub, the connection stays open.
    let vendor = store.user_by_name("vendor").await.unwrap().unwrap();
    let key = store.user_keys(&vendor.id).await.unwrap().remove(0);
    assert!(store.delete_user_key(&vendor.id, &key.id).await.unwrap());
    // Who holds a key is read again once the authorization cache's bound
    // has passed (a revocation would end it at once).
    tokio::time::sleep(crate::session::AUTHORIZATION_TTL).await;
    let refused = client.open("echo", from).await;
    assert!(refused.is_err(), "a deleted key opened a session");
    let audited = store
        .audit_records(&crate::store::AuditFilter::default())
        .await
        .unwrap()
        .into_iter()
        .any(|r| r.event.action == "session.refused" && r.event.detail["reason"] == "key_deleted");
    assert!(audited, "the refusal is audited");
}

#[tokio::test]
async fn a_revocation_closes_the_connections_it_names() {
    let (hub, store, profile) = deployed().await;
    let client = ConnectClient::new(profile).unwrap();
    let from: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
    drop(client.open("echo", from).await.expect("signed in"));
    let vendor = store.user_by_name("vendor").await.unwrap().unwrap();
    let other = crate::model::UserId::generate();
    let by_other = crate::events::Revocation::user(&other, "someone else");
    assert_eq!(hub.close_revoked(&by_other).await, 0);
    let by_vendor = crate::events::Revocation::user(&vendor.id, "vendor disabled");
    assert_eq!(hub.close_revoked(&by_vendor).await, 1);
    let closed = store
        .audit_records(&crate::store::AuditFilter::default())
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.event.action == "login.revoked")
        .expect("the close is audited");
    assert_eq!(closed.event.actor, "vendor");
    assert_eq!(closed.event.detail["reason"], "vendor disabled");
}

/// A hub on loopback with users `plain` (no role), `vendor` (role Vendor)
/// and `auditor` (role Auditor), each with the password `pw`.
async fn hub_with_role_users(ssh_passwords: bool) -> (Arc<Hub>, std::net::SocketAddr) {
    let store: Arc<dyn Store> = Arc::new(SqlStore::connect("sqlite::memory:").await.unwrap());
    crate::server::ensure_builtin_roles(&store).await.unwrap();
    let sink = Arc::new(StoreAuditSink::new(store.clone()));
    let admin = Admin::new(store.clone(), sink.clone(), "test");
    for (name, role) in [
        ("plain", None),
        ("vendor", Some("Vendor")),
        ("auditor", Some("Auditor")),
    ] {
        let roles: Vec<String> = role.map(str::to_string).into_iter().collect();
        admin
            .add_user(
                name,
                Some(crate::Secret::new("pw".to_string())),
                &[],
                &roles,
            )
            .await
            .unwrap();
    }
    let mut config = HubConfig::new(keys::generate().unwrap());
    config.ssh_passwords = ssh_passwords;
    let hub = Hub::with_config(SessionEngine::new(store, sink), config);
    let listener = bind_listener("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn({
        let hub = hub.clone();
        async move { hub.serve(listener).await }
    });
    (hub, addr)
}

#[tokio::test]
async fn ssh_password_sign_ins_are_off_unless_configured() {
    let (hub, addr) = hub_with_role_users(false).await;
    assert!(!password_login(addr, "vendor", "pw").await);
    hub.shutdown(Duration::from_secs(1)).await;
    let (hub, addr) = hub_with_role_users(true).await;
    assert!(password_login(addr, "vendor", "pw").await);
    hub.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn only_users_allowed_the_connection_manager_sign_in_over_ssh() {
    let (hub, addr) = hub_with_role_users(true).await;
    assert!(password_login(addr, "vendor", "pw").await, "role Vendor");
    assert!(
        password_login(addr, "plain", "pw").await,
        "a user without any role (made before roles) keeps working"
    );
    assert!(
        !password_login(addr, "auditor", "pw").await,
        "role Auditor lacks USE_CONNECTION_MANAGER"
    );
    hub.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn parallel_password_guesses_cannot_pass_the_lockout() {
    let (hub, addr) = hub_with_role_users(true).await;
    // 3 x the limit at once: every one is counted before it is checked.
    let guesses: Vec<_> = (0..3 * crate::throttle::USER_FAILURES)
        .map(|_| tokio::spawn(password_login(addr, "vendor", "wrong")))
        .collect();
    for g in guesses {
        assert!(!g.await.unwrap());
    }
    assert!(
        !password_login(addr, "vendor", "pw").await,
        "the right password right after the parallel guesses"
    );
    assert!(hub.throttle().locked(&["user:vendor"]).is_some());
    let checked = hub
        .engine()
        .store()
        .audit_records(&crate::store::AuditFilter::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|r| {
            r.event.action == "login.failure"
                && r.event.detail["reason"] == "wrong user or password"
        })
        .count();
    assert!(
        checked <= crate::throttle::USER_FAILURES,
        "{checked} parallel guesses were checked (limit {})",
        crate::throttle::USER_FAILURES
    );
    hub.shutdown(Duration::from_secs(1)).await;
}
