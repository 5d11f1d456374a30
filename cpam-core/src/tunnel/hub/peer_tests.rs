//! The hub's side of the peer links, in process: another node watches a
//! live terminal this node runs, a key no live node registered is refused
//! and audited, and a silent peer holds up no other.

use std::sync::Arc;
use std::time::Duration;

use super::{Hub, HubConfig};
use crate::audit::StoreAuditSink;
use crate::error::ErrorKind;
use crate::model::{
    CustomerId, Node, ServiceId, Session, SessionId, SessionProtocol, Timestamp, UserId,
};
use crate::record::{LiveHub, WatchFrame};
use crate::session::{ObserverFactory, SessionEngine, SessionObserver, TerminalFrame};
use crate::store::{AuditFilter, SqlStore, Store};
use crate::tunnel::dialer::GatekeeperDialer;
use crate::tunnel::peer::PeerDialer;
use crate::tunnel::{bind_listener, keys};

fn session(id: &str) -> Session {
    Session {
        id: SessionId(id.into()),
        user_id: UserId("usr_v".into()),
        user_name: "vera".into(),
        customer_id: CustomerId("cus_a".into()),
        gatekeeper_id: None,
        protocol: SessionProtocol::Ssh,
        node_id: Some("node-b".into()),
        service_id: ServiceId("svc_a".into()),
        service_name: "db1".into(),
        target: "127.0.0.1:22".parse().expect("a target"),
        grant_id: None,
        started_at: Timestamp::now(),
        ended_at: None,
        bytes_up: 0,
        bytes_down: 0,
        end_reason: None,
        end_detail: None,
    }
}

fn node(id: &str, address: &str, key: &russh::keys::PublicKey) -> Node {
    Node {
        id: id.into(),
        peer_address: address.into(),
        version: "test".into(),
        started_at: Timestamp::now(),
        heartbeat_at: Timestamp::now(),
        node_key: keys::public_openssh(key),
    }
}

fn feed(observers: &[Arc<dyn SessionObserver>], frame: TerminalFrame) {
    for o in observers {
        o.on_terminal(&frame);
    }
}

/// Node-b: a hub serving peers on loopback, with its live terminals.
struct NodeB {
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    live: Arc<LiveHub>,
    hub_key: russh::keys::PublicKey,
    addr: String,
}

async fn node_b() -> NodeB {
    let store: Arc<dyn Store> = Arc::new(SqlStore::connect("sqlite::memory:").await.unwrap());
    let engine = SessionEngine::new(store.clone(), Arc::new(StoreAuditSink::new(store.clone())));
    engine.set_node("node-b").unwrap();
    let host_key = keys::generate().unwrap();
    let hub_key = host_key.public_key().clone();
    let live = LiveHub::new();
    let mut config = HubConfig::new(host_key);
    config.live = Some(live.clone());
    let hub = Hub::with_config(engine, config);
    let listener = bind_listener("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn({
        let hub = hub.clone();
        async move { hub.serve(listener).await }
    });
    NodeB {
        store,
        hub,
        live,
        hub_key,
        addr,
    }
}

/// Registers node-a (whose key it returns) and `others` (id, peer address)
/// as live nodes.
async fn register(store: &Arc<dyn Store>, others: &[(&str, &str)]) -> Arc<russh::keys::PrivateKey> {
    let key_a = Arc::new(keys::generate().unwrap());
    let forever = Timestamp(i64::MAX);
    store
        .register_node(&node("node-a", "127.0.0.1:9", key_a.public_key()), forever)
        .await
        .unwrap();
    for (id, address) in others {
        let row = node(id, address, keys::generate().unwrap().public_key());
        store.register_node(&row, forever).await.unwrap();
    }
    key_a
}

/// Node-a's dialer, signing in with `key` and expecting `hub_key`.
fn node_a(
    store: &Arc<dyn Store>,
    key: Arc<russh::keys::PrivateKey>,
    hub_key: russh::keys::PublicKey,
) -> PeerDialer {
    PeerDialer::new(
        Arc::new(GatekeeperDialer::new()),
        store.clone(),
        "node-a",
        key,
        hub_key,
        Duration::from_secs(6),
    )
}

/// A terminal live on node-b (session `s1`); its observers.
fn terminal(live: &LiveHub) -> Vec<Arc<dyn SessionObserver>> {
    let observers = live.observers(&session("s1"));
    feed(
        &observers,
        TerminalFrame::Open {
            channel: 0,
            cols: 80,
            rows: 24,
            term: "xterm".into(),
            command: None,
        },
    );
    observers
}

#[tokio::test]
async fn another_node_watches_a_live_terminal_and_a_stranger_key_is_refused() {
    let NodeB {
        store,
        hub,
        live,
        hub_key,
        addr,
    } = node_b().await;
    let key_a = register(&store, &[("node-b", &addr)]).await;
    let observers = terminal(&live);
    let output = |data: &'static [u8]| TerminalFrame::Output {
        channel: 0,
        data: bytes::Bytes::from_static(data),
    };
    feed(&observers, output(b"hello from node-b\r\n"));

    let peers = node_a(&store, key_a, hub_key.clone());
    let mut watch = peers
        .watch("node-b", &SessionId("s1".into()))
        .await
        .expect("node-a watches node-b's session");
    match next(&mut watch).await {
        Some(WatchFrame::Snapshot { cols, rows, data }) => {
            assert_eq!((cols, rows), (80, 24));
            assert!(
                String::from_utf8_lossy(&data).contains("hello from node-b"),
                "{:?}",
                String::from_utf8_lossy(&data)
            );
        }
        other => panic!("a snapshot first, got {other:?}"),
    }
    feed(&observers, output(b"and more"));
    assert_eq!(
        next(&mut watch).await,
        Some(WatchFrame::Output(bytes::Bytes::from_static(b"and more")))
    );

    let e = peers
        .watch("node-b", &SessionId("s-unknown".into()))
        .await
        .expect_err("no such live session on node-b");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(e.message().contains("node-b"), "{e}");

    // Signing in as node-a with another key: refused and audited.
    let stranger = node_a(&store, Arc::new(keys::generate().unwrap()), hub_key);
    let e = stranger
        .watch("node-b", &SessionId("s1".into()))
        .await
        .expect_err("a stranger's key");
    assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
    let audit = store.audit_records(&AuditFilter::default()).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|r| r.event.action == "node.refused" && r.event.detail["node"] == "node-a"),
        "{audit:#?}"
    );
    // The real node-a's watch goes on.
    feed(&observers, output(b"still here"));
    assert_eq!(
        next(&mut watch).await,
        Some(WatchFrame::Output(bytes::Bytes::from_static(b"still here")))
    );
    hub.shutdown(Duration::from_secs(1)).await;
}

/// Signing in to a peer that accepts the connection and never answers
/// holds only that peer's link: a live view from a responsive node opens
/// while the other sign-in still waits for its timeout.
#[tokio::test]
async fn a_silent_peer_does_not_hold_up_the_others() {
    let NodeB {
        store,
        hub,
        live,
        hub_key,
        addr,
    } = node_b().await;
    // node-c accepts TCP connections and says nothing, not even its version.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = silent.accept().await {
            held.push(tcp);
        }
    });
    let key_a = register(&store, &[("node-b", &addr), ("node-c", &silent_addr)]).await;
    let _observers = terminal(&live);
    let peers = Arc::new(node_a(&store, key_a, hub_key));
    let stuck = tokio::spawn({
        let peers = peers.clone();
        async move { peers.watch("node-c", &SessionId("s9".into())).await }
    });
    // Let the sign-in to node-c start and take its peer's slot.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!stuck.is_finished(), "node-c never answers");

    let mut watch = peers
        .watch("node-b", &SessionId("s1".into()))
        .await
        .expect("node-a watches node-b's session");
    assert!(
        matches!(next(&mut watch).await, Some(WatchFrame::Snapshot { .. })),
        "a snapshot first"
    );
    assert!(
        !stuck.is_finished(),
        "node-b's live view opened only after the sign-in to node-c gave up"
    );
    let e = stuck.await.unwrap().expect_err("node-c never signs in");
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.message().contains("node-c"), "{e}");
    held.abort();
    hub.shutdown(Duration::from_secs(1)).await;
}

async fn next(w: &mut crate::tunnel::peer::RemoteWatch) -> Option<WatchFrame> {
    tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("a frame in time")
}
