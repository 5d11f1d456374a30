//! The nodes sharing a store: registration, heartbeats, the claim on a lost
//! node, a gatekeeper link moving between nodes, and the control bus.

use std::time::Duration;

use crate::error::ErrorKind;
use crate::model::{Node, Timestamp};
use crate::store::Store;

use super::{T0, expect_error, new_customer, ok, unique};

fn node(id: &str, at: i64) -> Node {
    Node {
        id: id.to_string(),
        peer_address: "127.0.0.1:2222".into(),
        version: "test".into(),
        started_at: Timestamp(at),
        heartbeat_at: Timestamp(at),
        node_key: format!("ssh-ed25519 key-of-{id}"),
    }
}

/// A fresh id registers once; a second registration while its heartbeat is
/// fresh is `Conflict` naming the id; a stale one is taken over; a lost
/// node is claimed by exactly one caller and its heartbeat is then
/// `NotFound`.
pub async fn node_registry(store: &dyn Store) {
    let id = unique("node");
    let t = T0.0 + 1_000;
    ok(
        store
            .register_node(&node(&id, t), Timestamp(t - 6_000))
            .await,
        "register_node",
    );
    match store
        .register_node(&node(&id, t + 1_000), Timestamp(t - 5_000))
        .await
    {
        Err(e) if e.kind() == ErrorKind::Conflict => assert!(
            e.message().contains(&id),
            "store conformance: the duplicate node error does not name the id: {e}"
        ),
        other => panic!(
            "store conformance: a second node with a live id: expected Conflict, got {other:?}"
        ),
    }
    ok(
        store.heartbeat_node(&id, Timestamp(t + 2_000)).await,
        "heartbeat_node",
    );
    let listed = ok(store.list_nodes().await, "list_nodes");
    let row = listed.iter().find(|n| n.id == id).cloned();
    assert_eq!(
        row.map(|n| (n.started_at, n.heartbeat_at, n.node_key)),
        Some((
            Timestamp(t),
            Timestamp(t + 2_000),
            format!("ssh-ed25519 key-of-{id}")
        )),
        "store conformance: list_nodes does not show the node, its heartbeat and its key: {listed:?}"
    );
    assert!(
        !ok(
            store.claim_lost_node(&id, Timestamp(t + 2_000)).await,
            "claim_lost_node"
        ),
        "store conformance: a node with a fresh heartbeat was claimed as lost"
    );
    let (a, b) = tokio::join!(
        store.claim_lost_node(&id, Timestamp(t + 9_000)),
        store.claim_lost_node(&id, Timestamp(t + 9_000)),
    );
    assert_eq!(
        [ok(a, "claim_lost_node"), ok(b, "claim_lost_node")]
            .iter()
            .filter(|c| **c)
            .count(),
        1,
        "store conformance: a lost node must be claimed by exactly one caller"
    );
    expect_error(
        store.heartbeat_node(&id, Timestamp(t + 10_000)).await,
        ErrorKind::NotFound,
        "the heartbeat of a node claimed as lost",
    );
    // The same id after its old process went stale, then a clean stop.
    ok(
        store
            .register_node(&node(&id, t), Timestamp(t - 6_000))
            .await,
        "register_node",
    );
    ok(
        store
            .register_node(&node(&id, t + 20_000), Timestamp(t + 14_000))
            .await,
        "register_node over a stale row",
    );
    assert!(ok(store.remove_node(&id).await, "remove_node"));
    assert!(!ok(store.remove_node(&id).await, "remove_node"));
    ok(store.ping().await, "ping");

    // A gatekeeper that moved to node B stays B's when node A drops its link.
    let c = new_customer(store).await;
    let g = ok(
        store
            .create_gatekeeper(&c.id, &unique("gk-moved"), T0)
            .await,
        "create_gatekeeper",
    );
    let at = Timestamp(T0.0 + 10);
    for (online, by) in [(true, "node-a"), (true, "node-b"), (false, "node-a")] {
        ok(
            store
                .set_gatekeeper_state(&g.id, online, false, Some(by), at)
                .await,
            "set_gatekeeper_state",
        );
    }
    let now = ok(store.gatekeeper(&g.id).await, "gatekeeper").expect("gatekeeper exists");
    assert_eq!(
        (now.online, now.node_id.as_deref()),
        (true, Some("node-b")),
        "store conformance: node-a's link closing took the gatekeeper from node-b"
    );
    ok(
        store
            .set_gatekeeper_state(&g.id, false, false, Some("node-b"), at)
            .await,
        "set_gatekeeper_state",
    );
    let now = ok(store.gatekeeper(&g.id).await, "gatekeeper").expect("gatekeeper exists");
    assert!(
        !now.online,
        "store conformance: the holder's offline did not stick"
    );
}

/// What one subscriber of the control bus publishes, every subscriber
/// (its own included) receives, in order.
pub async fn control_bus(store: &dyn Store) {
    let bus = store.control_bus();
    let mut a = ok(bus.subscribe().await, "subscribe");
    let mut b = ok(store.control_bus().subscribe().await, "subscribe");
    let tag = unique("msg");
    for i in 0..3 {
        ok(bus.publish(&format!("{tag}-{i}")).await, "publish");
    }
    for s in [&mut a, &mut b] {
        let mut got = Vec::new();
        while got.len() < 3 {
            match tokio::time::timeout(Duration::from_secs(5), s.recv()).await {
                Ok(Some(m)) if m.starts_with(&tag) => got.push(m),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        assert_eq!(
            got,
            (0..3).map(|i| format!("{tag}-{i}")).collect::<Vec<_>>(),
            "store conformance: the control bus lost or reordered messages"
        );
    }
}
