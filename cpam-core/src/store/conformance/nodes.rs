//! Several server nodes on one store: what each session and gatekeeper link
//! records about its node, and the recovery a node runs when it starts.

use crate::error::ErrorKind;
use crate::model::{
    CustomerId, EndReason, Gatekeeper, GatekeeperId, ServiceId, Session, SessionId,
    SessionProtocol, Timestamp, UserId,
};
use crate::store::Store;

use super::{T0, expect_error, new_customer, ok, unique};

fn session(node: Option<&str>, gatekeeper: Option<GatekeeperId>) -> Session {
    Session {
        id: SessionId::generate(),
        user_id: UserId::generate(),
        user_name: "nadia".into(),
        customer_id: CustomerId("cus_nodes".into()),
        gatekeeper_id: gatekeeper,
        service_id: ServiceId("svc_nodes".into()),
        service_name: "db".into(),
        target: "10.0.0.9:5432".parse().expect("target"),
        grant_id: None,
        protocol: SessionProtocol::Tcp,
        node_id: node.map(str::to_string),
        started_at: T0,
        ended_at: None,
        bytes_up: 0,
        bytes_down: 0,
        end_reason: None,
        end_detail: None,
    }
}

/// Sessions keep their protocol, node and (possibly absent) gatekeeper;
/// `close_node_sessions` ends the open sessions of one node and of no node,
/// and nothing else.
pub async fn node_sessions(store: &dyn Store) {
    let (node_a, node_b) = (unique("node-a"), unique("node-b"));
    let mut direct = session(Some(&node_b), None);
    direct.protocol = SessionProtocol::Ssh;
    let mut rdp = session(Some(&node_a), Some(GatekeeperId("gk_nodes".into())));
    rdp.protocol = SessionProtocol::Rdp;
    for s in [&direct, &rdp] {
        ok(store.insert_session(s).await, "insert_session");
        assert_eq!(
            ok(store.session(&s.id).await, "session").as_ref(),
            Some(s),
            "store conformance: protocol, node and gatekeeper round trip"
        );
    }

    let on_a = rdp;
    let on_b = direct;
    let unnamed = session(None, Some(GatekeeperId("gk_nodes".into())));
    let ended_on_a = session(Some(&node_a), None);
    for s in [&unnamed, &ended_on_a] {
        ok(store.insert_session(s).await, "insert_session");
    }
    let ended = Timestamp(T0.0 + 50);
    ok(
        store
            .finish_session(&ended_on_a.id, ended, 3, 4, EndReason::Completed, None)
            .await,
        "finish_session",
    );

    let now = Timestamp(T0.0 + 100);
    let closed = ok(
        store
            .close_node_sessions(&node_a, now, "server restarted")
            .await,
        "close_node_sessions",
    );
    assert!(
        closed >= 2,
        "store conformance: close_node_sessions closed {closed}, expected at least 2"
    );
    for s in [&on_a, &unnamed] {
        let got = ok(store.session(&s.id).await, "session").expect("session exists");
        assert_eq!(
            (got.ended_at, got.end_reason, got.end_detail.as_deref()),
            (Some(now), Some(EndReason::Error), Some("server restarted")),
            "store conformance: an open session of the restarted node (or of no node) was not closed"
        );
    }
    let other = ok(store.session(&on_b.id).await, "session").expect("session exists");
    assert_eq!(
        other.ended_at, None,
        "store conformance: close_node_sessions closed another node's session"
    );
    let done = ok(store.session(&ended_on_a.id).await, "session").expect("session exists");
    assert_eq!(
        (done.ended_at, done.end_reason),
        (Some(ended), Some(EndReason::Completed)),
        "store conformance: close_node_sessions touched an ended session"
    );
    assert_eq!(
        ok(
            store.close_node_sessions(&node_a, now, "again").await,
            "close_node_sessions"
        ),
        0,
        "store conformance: a second close_node_sessions found sessions to close"
    );
    ok(
        store
            .finish_session(&on_b.id, now, 0, 0, EndReason::Completed, None)
            .await,
        "finish_session",
    );
}

/// A gatekeeper set online records the node holding its link;
/// `release_node_gatekeepers` marks offline the links of one node and of no
/// node, and nothing else.
pub async fn node_gatekeepers(store: &dyn Store) {
    let c = new_customer(store).await;
    let (node_a, node_b) = (unique("node-a"), unique("node-b"));
    let mut made = Vec::new();
    for _ in 0..4 {
        made.push(ok(
            store.create_gatekeeper(&c.id, &unique("gk-node"), T0).await,
            "create_gatekeeper",
        ));
    }
    let [held_by_a, held_by_b, unnamed, offline] = <[Gatekeeper; 4]>::try_from(made)
        .unwrap_or_else(|_| unreachable!("four gatekeepers were made"));
    let at = Timestamp(T0.0 + 10);
    for (g, online, node) in [
        (&held_by_a, true, Some(node_a.as_str())),
        (&held_by_b, true, Some(node_b.as_str())),
        (&unnamed, true, None),
        (&offline, false, Some(node_a.as_str())),
    ] {
        ok(
            store
                .set_gatekeeper_state(&g.id, online, false, node, at)
                .await,
            "set_gatekeeper_state",
        );
    }
    let node_of = |g: Option<Gatekeeper>| g.and_then(|g| g.node_id);
    assert_eq!(
        node_of(ok(store.gatekeeper(&held_by_a.id).await, "gatekeeper")).as_deref(),
        Some(node_a.as_str()),
        "store conformance: an online gatekeeper does not record its node"
    );
    assert_eq!(
        node_of(ok(store.gatekeeper(&offline.id).await, "gatekeeper")),
        None,
        "store conformance: an offline gatekeeper records a node"
    );

    let released = ok(
        store.release_node_gatekeepers(&node_a).await,
        "release_node_gatekeepers",
    );
    let ids = released.iter().map(|g| &g.id).collect::<Vec<_>>();
    for (g, want) in [
        (&held_by_a, true),
        (&unnamed, true),
        (&held_by_b, false),
        (&offline, false),
    ] {
        assert_eq!(
            ids.contains(&&g.id),
            want,
            "store conformance: release_node_gatekeepers({node_a}) returned {ids:?}; {} expected {want}",
            g.name
        );
    }
    assert!(
        released.iter().all(|g| !g.online && g.node_id.is_none()),
        "store conformance: release_node_gatekeepers returned gatekeepers still online: {released:?}"
    );
    for (g, online) in [
        (&held_by_a, false),
        (&unnamed, false),
        (&held_by_b, true),
        (&offline, false),
    ] {
        let now = ok(store.gatekeeper(&g.id).await, "gatekeeper").expect("gatekeeper exists");
        assert_eq!(
            now.online, online,
            "store conformance: after release_node_gatekeepers({node_a}), {} online={}",
            g.name, now.online
        );
        if g.id == held_by_a.id {
            assert_eq!(
                now.last_contact,
                Some(at),
                "store conformance: release_node_gatekeepers changed the last contact"
            );
        }
    }
    assert!(
        ok(
            store.release_node_gatekeepers(&node_a).await,
            "release_node_gatekeepers"
        )
        .is_empty(),
        "store conformance: a second release_node_gatekeepers found links to release"
    );
    expect_error(
        store
            .set_gatekeeper_state(&GatekeeperId::generate(), true, false, Some(&node_a), at)
            .await,
        ErrorKind::NotFound,
        "state of an unknown gatekeeper",
    );
}
