//! Checks of grants, sessions and the audit chain.

use std::future::Future;
use std::pin::Pin;

use crate::audit;
use crate::error::ErrorKind;
use crate::model::{
    AuditCategory, AuditEvent, CustomerId, EndReason, GatekeeperId, GrantId, Schedule, ServiceId,
    ServiceKind, Session, SessionId, SessionProtocol, Timestamp, UserId,
};
use crate::store::{AuditFilter, NewGrant, SessionFilter, Store};

use super::{T0, expect_error, join_all, new_customer, ok, unique};

/// Grants: create, look up, revoke once.
pub async fn grants(store: &dyn Store) {
    let c = new_customer(store).await;
    let u = ok(
        store.create_user(&unique("carol"), None, T0).await,
        "create_user",
    );
    let other = ok(
        store.create_user(&unique("dave"), None, T0).await,
        "create_user",
    );
    let svc = ok(
        store
            .create_service(
                &c.id,
                "rdp",
                ServiceKind::DesktopSharing,
                &"h:3389".parse().expect("target"),
                T0,
                None,
            )
            .await,
        "create_service",
    );
    let schedule = Schedule {
        days: 0b001_1111,
        start_minute: 8 * 60,
        end_minute: 18 * 60,
    };
    let new = NewGrant {
        user_id: u.id.clone(),
        service_id: svc.id.clone(),
        not_before: T0,
        not_after: Some(Timestamp(T0.0 + 86_400_000)),
        schedule: Some(schedule),
        created_by: "admin-cli".into(),
    };
    let g = ok(
        store.create_grant(&new, Timestamp(T0.0 + 1)).await,
        "create_grant",
    );
    assert_eq!(
        (
            &g.user_id,
            &g.service_id,
            g.not_before,
            g.not_after,
            g.schedule,
            g.created_at,
            g.created_by.as_str(),
            g.revoked_at
        ),
        (
            &u.id,
            &svc.id,
            T0,
            new.not_after,
            Some(schedule),
            Timestamp(T0.0 + 1),
            "admin-cli",
            None
        ),
        "store conformance: created grant"
    );
    let open = ok(
        store
            .create_grant(
                &NewGrant {
                    not_after: None,
                    schedule: None,
                    ..new.clone()
                },
                T0,
            )
            .await,
        "create_grant",
    );
    let theirs = ok(
        store
            .create_grant(
                &NewGrant {
                    user_id: other.id.clone(),
                    ..new.clone()
                },
                T0,
            )
            .await,
        "create_grant",
    );
    expect_error(
        store
            .create_grant(
                &NewGrant {
                    user_id: UserId::generate(),
                    ..new.clone()
                },
                T0,
            )
            .await,
        ErrorKind::NotFound,
        "grant for an unknown user",
    );
    assert_eq!(
        ok(store.grant(&g.id).await, "grant"),
        Some(g.clone()),
        "store conformance: grant by id"
    );
    assert_eq!(
        ok(store.grant(&GrantId::generate()).await, "grant"),
        None,
        "store conformance: unknown grant"
    );
    let mut mine = ok(store.list_grants(Some(&u.id)).await, "list_grants");
    mine.sort_by(|a, b| a.id.cmp(&b.id));
    let mut want = vec![g.clone(), open.clone()];
    want.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(mine, want, "store conformance: list_grants(user)");
    assert!(
        ok(store.list_grants(None).await, "list_grants").contains(&theirs),
        "store conformance: list_grants(None)"
    );

    let at = Timestamp(T0.0 + 10);
    assert!(
        ok(store.revoke_grant(&g.id, at).await, "revoke_grant"),
        "store conformance: revoke_grant of a live grant returned false"
    );
    assert!(
        !ok(
            store.revoke_grant(&g.id, Timestamp(at.0 + 1)).await,
            "revoke_grant"
        ),
        "store conformance: revoking twice returned true"
    );
    let revoked = ok(store.grant(&g.id).await, "grant").expect("grant exists");
    assert_eq!(
        revoked.revoked_at,
        Some(at),
        "store conformance: the first revocation time is kept"
    );
    expect_error(
        store.revoke_grant(&GrantId::generate(), at).await,
        ErrorKind::NotFound,
        "revoking an unknown grant",
    );
    let mut for_pair = ok(store.grants_for(&u.id, &svc.id).await, "grants_for");
    for_pair.sort_by(|a, b| a.id.cmp(&b.id));
    let mut want = vec![revoked, open];
    want.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(
        for_pair, want,
        "store conformance: grants_for includes revoked grants"
    );
}

/// Sessions: insert, finish, list newest first, close those a stopped node left open.
pub async fn sessions(store: &dyn Store) {
    let uid = UserId::generate();
    let session = |started: i64| Session {
        id: SessionId::generate(),
        user_id: uid.clone(),
        user_name: "erin".into(),
        customer_id: CustomerId("cus_x".into()),
        gatekeeper_id: Some(GatekeeperId("gk_x".into())),
        service_id: ServiceId("svc_x".into()),
        service_name: "ssh".into(),
        target: "10.0.0.1:22".parse().expect("target"),
        grant_id: Some(GrantId("grt_x".into())),
        protocol: SessionProtocol::Tcp,
        node_id: None,
        started_at: Timestamp(T0.0 + started),
        ended_at: None,
        bytes_up: 0,
        bytes_down: 0,
        end_reason: None,
        end_detail: None,
    };
    let (a, b, c) = (session(1), session(2), session(3));
    for s in [&b, &a, &c] {
        ok(store.insert_session(s).await, "insert_session");
    }
    expect_error(
        store.insert_session(&a).await,
        ErrorKind::Conflict,
        "duplicate session id",
    );
    assert_eq!(
        ok(store.session(&a.id).await, "session"),
        Some(a.clone()),
        "store conformance: session round trip"
    );

    let big = u64::from(u32::MAX) * 3;
    let end = Timestamp(T0.0 + 100);
    ok(
        store
            .finish_session(
                &a.id,
                end,
                big,
                7,
                EndReason::TerminatedBy,
                Some("admin-cli"),
            )
            .await,
        "finish_session",
    );
    let done = ok(store.session(&a.id).await, "session").expect("session exists");
    assert_eq!(
        (
            done.ended_at,
            done.bytes_up,
            done.bytes_down,
            done.end_reason,
            done.end_detail.as_deref()
        ),
        (
            Some(end),
            big,
            7,
            Some(EndReason::TerminatedBy),
            Some("admin-cli")
        ),
        "store conformance: finished session"
    );
    expect_error(
        store
            .finish_session(
                &SessionId::generate(),
                end,
                0,
                0,
                EndReason::Completed,
                None,
            )
            .await,
        ErrorKind::NotFound,
        "finishing an unknown session",
    );

    let filter = SessionFilter {
        user_id: Some(uid.clone()),
        ..SessionFilter::default()
    };
    let ids = |v: Vec<Session>| v.into_iter().map(|s| s.id).collect::<Vec<_>>();
    let all = ok(store.list_sessions(&filter).await, "list_sessions");
    assert_eq!(
        ids(all),
        vec![c.id.clone(), b.id.clone(), a.id.clone()],
        "store conformance: list_sessions is newest first"
    );
    let live = ok(
        store
            .list_sessions(&SessionFilter {
                live_only: true,
                ..filter.clone()
            })
            .await,
        "list_sessions",
    );
    assert_eq!(
        ids(live),
        vec![c.id.clone(), b.id.clone()],
        "store conformance: list_sessions(live_only)"
    );
    let limited = ok(
        store
            .list_sessions(&SessionFilter {
                limit: Some(1),
                ..filter.clone()
            })
            .await,
        "list_sessions",
    );
    assert_eq!(
        ids(limited),
        vec![c.id.clone()],
        "store conformance: list_sessions(limit)"
    );

    let closed = ok(
        store
            .close_node_sessions(&unique("node"), Timestamp(T0.0 + 200), "server restarted")
            .await,
        "close_node_sessions",
    );
    assert!(
        closed >= 2,
        "store conformance: close_node_sessions (sessions without a node) closed {closed}, expected at least 2"
    );
    for id in [&b.id, &c.id] {
        let s = ok(store.session(id).await, "session").expect("session exists");
        assert_eq!(
            (s.ended_at, s.end_reason, s.end_detail.as_deref()),
            (
                Some(Timestamp(T0.0 + 200)),
                Some(EndReason::Error),
                Some("server restarted")
            ),
            "store conformance: orphan session after close_node_sessions (sessions without a node)"
        );
    }
    let done = ok(store.session(&a.id).await, "session").expect("session exists");
    assert_eq!(
        done.end_reason,
        Some(EndReason::TerminatedBy),
        "store conformance: close_node_sessions (sessions without a node) touched an ended session"
    );
    assert!(
        ok(
            store
                .list_sessions(&SessionFilter {
                    live_only: true,
                    ..filter
                })
                .await,
            "list_sessions"
        )
        .is_empty(),
        "store conformance: live sessions after close_node_sessions (sessions without a node)"
    );
}

fn event(
    i: i64,
    category: AuditCategory,
    actor: &str,
    customer: Option<&CustomerId>,
) -> AuditEvent {
    AuditEvent {
        at: Timestamp(T0.0 + i),
        category,
        action: "session.start".into(),
        actor: actor.to_string(),
        customer_id: customer.cloned(),
        session_id: Some(SessionId(format!("ses_{i}"))),
        detail: serde_json::json!({
            "z": i, "a": "ünïcødé \"quoted\"", "nested": {"list": [1, -2, null, true], "empty": {}},
            "big": i64::MAX, "neg": -1
        }),
    }
}

/// The audit chain: appends, filters, a verifiable round trip.
pub async fn audit_log(store: &dyn Store) {
    let before = ok(audit::verify_store(store).await, "verify_store");
    assert!(
        before.is_intact(),
        "store conformance: audit chain broken before the check: {before:?}"
    );
    let first = i64::try_from(before.checked).expect("count fits") + 1;
    let actor = unique("auditor");
    let cus = CustomerId::generate();
    let mut appended = Vec::new();
    for i in 0..6 {
        let category = if i % 2 == 0 {
            AuditCategory::UserActivity
        } else {
            AuditCategory::SystemMessages
        };
        let customer = (i < 3).then_some(&cus);
        let r = ok(
            store
                .append_audit(&event(1_000 + i, category, &actor, customer))
                .await,
            "append_audit",
        );
        assert_eq!(r.seq, first + i, "store conformance: append_audit seq");
        appended.push(r);
    }
    let all = ok(
        store
            .audit_records(&AuditFilter {
                from_seq: Some(first),
                ..AuditFilter::default()
            })
            .await,
        "audit_records",
    );
    assert_eq!(
        all, appended,
        "store conformance: audit records do not round-trip"
    );
    let v = ok(audit::verify_store(store).await, "verify_store");
    assert!(
        v.is_intact(),
        "store conformance: audit chain broken after a round trip: {v:?}"
    );

    let seqs = |f: AuditFilter| {
        let mine = AuditFilter {
            actor: Some(actor.clone()),
            ..f
        };
        async move {
            ok(store.audit_records(&mine).await, "audit_records")
                .into_iter()
                .map(|r| r.seq - first)
                .collect::<Vec<_>>()
        }
    };
    let f = AuditFilter::default;
    assert_eq!(
        seqs(f()).await,
        vec![0, 1, 2, 3, 4, 5],
        "store conformance: audit_records(actor)"
    );
    assert_eq!(
        seqs(AuditFilter {
            category: Some(AuditCategory::SystemMessages),
            ..f()
        })
        .await,
        vec![1, 3, 5],
        "store conformance: audit_records(category)"
    );
    assert_eq!(
        seqs(AuditFilter {
            customer_id: Some(cus.clone()),
            ..f()
        })
        .await,
        vec![0, 1, 2],
        "store conformance: audit_records(customer)"
    );
    assert_eq!(
        seqs(AuditFilter {
            from_seq: Some(first + 4),
            ..f()
        })
        .await,
        vec![4, 5],
        "store conformance: audit_records(from_seq)"
    );
    assert_eq!(
        seqs(AuditFilter {
            limit: Some(2),
            ..f()
        })
        .await,
        vec![0, 1],
        "store conformance: audit_records(limit)"
    );
    let (since, until) = (Timestamp(T0.0 + 1_002), Timestamp(T0.0 + 1_004));
    assert_eq!(
        seqs(AuditFilter {
            since: Some(since),
            until: Some(until),
            ..f()
        })
        .await,
        vec![2, 3],
        "store conformance: audit_records(since inclusive, until exclusive)"
    );
    assert!(
        ok(
            store
                .audit_records(&AuditFilter {
                    actor: Some(unique("nobody")),
                    ..f()
                })
                .await,
            "audit_records"
        )
        .is_empty(),
        "store conformance: audit_records(unknown actor)"
    );
}

/// `tasks` x `per_task` concurrent appends, spread over `stores` (several
/// handles on one database stand for several processes): the chain stays intact.
pub async fn concurrent_audit_appends(stores: &[&dyn Store], tasks: usize, per_task: usize) {
    let first = stores
        .first()
        .expect("store conformance: concurrent_audit_appends needs a store");
    let before = ok(audit::verify_store(*first).await, "verify_store");
    assert!(
        before.is_intact(),
        "store conformance: audit chain broken before the check: {before:?}"
    );
    let actor = unique("writer");
    let writers = (0..tasks)
        .map(|t| {
            let store = stores[t % stores.len()];
            let actor = actor.clone();
            Box::pin(async move {
                let mut seqs = Vec::with_capacity(per_task);
                for i in 0..per_task {
                    let n = i64::try_from(t * 1_000 + i).expect("small");
                    let r = ok(
                        store
                            .append_audit(&event(n, AuditCategory::SystemMessages, &actor, None))
                            .await,
                        "concurrent append_audit",
                    );
                    seqs.push(r.seq);
                }
                seqs
            }) as Pin<Box<dyn Future<Output = Vec<i64>> + Send + '_>>
        })
        .collect();
    let mut seqs: Vec<i64> = join_all(writers).await.into_iter().flatten().collect();
    seqs.sort_unstable();
    seqs.dedup();
    let total = tasks * per_task;
    assert_eq!(
        seqs.len(),
        total,
        "store conformance: concurrent appends returned duplicate seqs"
    );
    let after = ok(audit::verify_store(*first).await, "verify_store");
    assert!(
        after.is_intact(),
        "store conformance: audit chain broken by concurrent appends: {after:?}"
    );
    let added = after.checked - before.checked;
    assert_eq!(
        added, total as u64,
        "store conformance: {added} records after {total} concurrent appends"
    );
    let mine = ok(
        first
            .audit_records(&AuditFilter {
                actor: Some(actor),
                ..AuditFilter::default()
            })
            .await,
        "audit_records",
    );
    assert_eq!(
        mine.len(),
        total,
        "store conformance: records of the concurrent writers"
    );
}
