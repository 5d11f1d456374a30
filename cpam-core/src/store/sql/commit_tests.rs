//! The group commit's tests: batches, failures, checkpoints, the chain's
//! head and a batch dropped mid-way.
use std::sync::Arc;

use crate::error::ErrorKind;
use crate::model::{
    AuditCategory, AuditEvent, CustomerId, ServiceId, Session, SessionId, SessionProtocol,
    Timestamp, UserId,
};
use crate::store::sql::SqlStore;
use crate::store::{AuditFilter, AuditLog as _, SessionFilter, SessionLog as _};

fn event(n: usize) -> AuditEvent {
    AuditEvent {
        at: Timestamp(1_700_000_000_000 + n as i64),
        category: AuditCategory::UserActivity,
        action: "session.start".into(),
        actor: format!("group-commit-{n}"),
        customer_id: None,
        session_id: None,
        detail: serde_json::json!({ "n": n }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_audit_appends_share_commits_and_keep_one_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("cpam.db").display());
    let store = Arc::new(SqlStore::connect(&url).await.expect("open"));
    let before = store.group_commits();
    let n = 200;
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.append_audit(&event(i)).await })
        })
        .collect();
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.expect("join").expect("append").seq);
    }
    let commits = store.group_commits() - before;
    assert!(
        commits < n as u64 / 2,
        "{n} concurrent appends took {commits} commits; they should share them"
    );
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), n, "every append has its own place in the chain");
    let records = store
        .audit_records(&AuditFilter::default())
        .await
        .expect("records");
    let ours = records
        .iter()
        .filter(|r| r.event.actor.starts_with("group-commit-"))
        .count();
    assert_eq!(ours, n);
    let verified = crate::audit::verify(&records);
    assert!(verified.first_broken.is_none(), "{verified:?}");
}

fn session(id: &str) -> Session {
    Session {
        id: SessionId(id.into()),
        user_id: UserId("usr_gc".into()),
        user_name: "gc".into(),
        customer_id: CustomerId("cus_gc".into()),
        gatekeeper_id: None,
        service_id: ServiceId("svc_gc".into()),
        service_name: "db".into(),
        target: "10.0.0.9:5432".parse().expect("target"),
        grant_id: None,
        protocol: SessionProtocol::Tcp,
        node_id: None,
        started_at: Timestamp(1_700_000_000_000),
        ended_at: None,
        bytes_up: 0,
        bytes_down: 0,
        end_reason: None,
        end_detail: None,
    }
}

/// Batches run without savepoints until a write fails: then only that
/// write is refused, and every other write of its batch still commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_write_is_refused_alone_and_its_batch_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("cpam.db").display());
    let store = Arc::new(SqlStore::connect(&url).await.expect("open"));
    store
        .insert_session(&session("ses_taken"))
        .await
        .expect("first insert");
    let n = 120;
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                match i % 3 {
                    0 => store.insert_session(&session("ses_taken")).await.err(),
                    1 => store
                        .insert_session(&session(&format!("ses_{i}")))
                        .await
                        .err(),
                    _ => store.append_audit(&event(i)).await.err(),
                }
            })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        let error = t.await.expect("join");
        if i % 3 == 0 {
            let e = error.expect("a second session `ses_taken` is refused");
            assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
            assert!(e.message().contains("ses_taken"), "{e}");
        } else {
            assert!(error.is_none(), "write {i} failed: {error:?}");
        }
    }
    let sessions = store
        .list_sessions(&SessionFilter::default())
        .await
        .expect("sessions");
    assert_eq!(sessions.len(), 1 + n / 3, "ses_taken once, and every ses_N");
    let records = store
        .audit_records(&AuditFilter::default())
        .await
        .expect("records");
    assert_eq!(records.len(), n / 3, "every audit append committed");
    let verified = crate::audit::verify(&records);
    assert!(verified.first_broken.is_none(), "{verified:?}");
}

/// A database file's WAL is checkpointed by a background task, not by
/// the writer on the session's start path; nothing is lost doing so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_file_is_checkpointed_in_the_background() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("cpam.db").display());
    let store = SqlStore::connect(&url).await.expect("open");
    let bound: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
        .fetch_one(&store.pool)
        .await
        .expect("pragma");
    assert_eq!(
        bound,
        i64::from(super::WAL_AUTOCHECKPOINT_PAGES),
        "writers checkpoint themselves only past the bound"
    );
    let n = 4 * super::commit::CHECKPOINT_EVERY as usize;
    for i in 0..n {
        store.append_audit(&event(i)).await.expect("append");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.background_checkpoints() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no background checkpoint after {n} commits"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let records = store
        .audit_records(&AuditFilter::default())
        .await
        .expect("records");
    assert_eq!(records.len(), n);
    assert!(crate::audit::verify(&records).first_broken.is_none());
    let memory = SqlStore::connect("sqlite::memory:").await.expect("memory");
    for i in 0..n {
        memory.append_audit(&event(i)).await.expect("append");
    }
    assert_eq!(memory.background_checkpoints(), 0, "no WAL in memory");
}

/// A batch's statement list runs in a transaction the driver does not
/// track: dropped mid-way (the runtime shutting down), its connection is
/// closed, not returned to the pool holding the write lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_dropped_mid_way_does_not_keep_the_write_lock() {
    use sqlx::{Connection as _, Executor as _};
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("cpam.db");
    let url = format!("sqlite://{}", file.display());
    let store = SqlStore::connect(&url).await.expect("open");
    let mut conn = store.pool.acquire().await.expect("acquire");
    conn.execute("BEGIN IMMEDIATE").await.expect("begin");
    drop(super::commit::Unfinished(Some(conn)));
    // Another process asks for the write lock without waiting.
    let mut other = sqlx::AnyConnection::connect(&format!("{url}?mode=rw"))
        .await
        .expect("connect");
    other
        .execute("PRAGMA busy_timeout = 0")
        .await
        .expect("pragma");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match other.execute("BEGIN IMMEDIATE").await {
            Ok(_) => break,
            Err(e) => assert!(
                std::time::Instant::now() < deadline,
                "the dropped batch's connection still holds the write lock: {e}"
            ),
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    other.execute("ROLLBACK").await.expect("rollback");
    store
        .append_audit(&event(1))
        .await
        .expect("the store still writes");
}

/// The writer keeps the chain's head between commits; another process
/// appending to the same file meanwhile (the admin CLI) neither forks
/// the chain nor makes an append fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_from_another_process_between_commits_keep_one_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("cpam.db").display());
    let server = SqlStore::connect(&url).await.expect("open");
    let cli = SqlStore::connect(&url).await.expect("open again");
    let mut seqs = Vec::new();
    for i in 0..30 {
        seqs.push(server.append_audit(&event(i)).await.expect("server").seq);
        if i % 3 == 0 {
            seqs.push(cli.append_audit(&event(1000 + i)).await.expect("cli").seq);
        }
    }
    let expected: Vec<i64> = (1..=seqs.len() as i64).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, expected, "one dense sequence");
    let records = server
        .audit_records(&AuditFilter::default())
        .await
        .expect("records");
    assert_eq!(records.len(), 40);
    let verified = crate::audit::verify(&records);
    assert!(verified.first_broken.is_none(), "{verified:?}");
}
