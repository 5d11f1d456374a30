//! The SQL store against real databases: a SQLite file and a PostgreSQL
//! server this test starts (or `CPAM_TEST_POSTGRES_URL`).

use cpam_core::ErrorKind;
use cpam_core::audit;
use cpam_core::model::{
    AuditCategory, AuditEvent, EndReason, GatekeeperId, SessionId, SessionProtocol, Timestamp,
};
use cpam_core::store::conformance;
use cpam_core::store::{AuditLog, Directory, SessionLog, SqlStore};
use cpam_tests::postgres::PgFixture;

fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("cpam.db").display())
}

async fn pg_store(pg: &PgFixture) -> (String, SqlStore) {
    let url = pg
        .fresh_database()
        .await
        .expect("a fresh postgres database");
    let store = SqlStore::connect(&url).await.expect("postgres store opens");
    assert_eq!(store.backend_name(), "postgres");
    (url, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_file_conforms() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqlStore::connect(&sqlite_url(&dir))
        .await
        .expect("sqlite store opens");
    assert!(
        dir.path().join("cpam.db").exists(),
        "the database file is created"
    );
    conformance::run_all(&store).await;
    assert!(
        dir.path().join("cpam.db-wal").exists(),
        "the database is in WAL mode"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_conforms() {
    let pg = PgFixture::start().expect("postgres for the store tests");
    let (_, store) = pg_store(&pg).await;
    conformance::run_all(&store).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_writers_in_two_processes_keep_one_chain() {
    // Two pools on one file stand for the server and an admin command.
    let dir = tempfile::tempdir().expect("temp dir");
    let server = SqlStore::connect(&sqlite_url(&dir))
        .await
        .expect("first handle");
    let cli = SqlStore::connect(&sqlite_url(&dir))
        .await
        .expect("second handle");
    conformance::concurrent_audit_appends(&[&server, &cli], 8, 25).await;
    conformance::concurrent_redemption(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_nodes_sharing_a_database_keep_one_chain() {
    let pg = PgFixture::start().expect("postgres for the store tests");
    let (url, a) = pg_store(&pg).await;
    let b = SqlStore::connect(&url).await.expect("second node");
    conformance::concurrent_audit_appends(&[&a, &b], 8, 25).await;
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn sqlite_data_survives_reopening() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = sqlite_url(&dir);
    let store = SqlStore::connect(&url).await.expect("sqlite store opens");
    let c = store
        .create_customer("acme", Timestamp(1))
        .await
        .expect("customer");
    for i in 0..3 {
        let event = AuditEvent {
            at: Timestamp(10 + i),
            category: AuditCategory::UserActivity,
            action: "customer.add".into(),
            actor: "admin-cli".into(),
            customer_id: Some(c.id.clone()),
            session_id: None,
            detail: serde_json::json!({"name": "acme", "i": i}),
        };
        store.append_audit(&event).await.expect("audit");
    }
    store.close().await;
    drop(store);

    let store = SqlStore::connect(&url).await.expect("sqlite store reopens");
    assert_eq!(
        store.customer_by_name("acme").await.expect("lookup"),
        Some(c)
    );
    let v = audit::verify_store(&store).await.expect("verify");
    assert!(v.is_intact() && v.checked == 3, "{v:?}");
    let next = store
        .append_audit(&AuditEvent {
            at: Timestamp(20),
            category: AuditCategory::SystemMessages,
            action: "server.start".into(),
            actor: "system".into(),
            customer_id: None,
            session_id: None,
            detail: serde_json::Value::Null,
        })
        .await
        .expect("append after reopening");
    assert_eq!(next.seq, 4, "the chain continues after reopening");
}

/// A database made by the release with schema version 3 (see the fixture's
/// README) opens with the current code: later migrations apply, every row
/// reads back, new columns take their defaults, and a node's recovery
/// treats the rows without a node as its own.
#[tokio::test]
async fn a_data_dir_from_schema_3_upgrades() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/data-dir-v3");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy(fixture.join("cpam.db"), dir.path().join("cpam.db")).expect("copy fixture");
    let store = SqlStore::connect(&sqlite_url(&dir))
        .await
        .expect("the release's database opens and migrates");

    let acme = store
        .customer_by_name("acme")
        .await
        .expect("customer lookup")
        .expect("customer acme");
    let gk = store
        .gatekeeper_by_name("gk-acme")
        .await
        .expect("gatekeeper lookup")
        .expect("gatekeeper gk-acme");
    assert_eq!(gk.id, GatekeeperId("gk_nfiyoj4ppvuv4xj34e7yafdgdi".into()));
    assert_eq!(gk.customer_id, acme.id);
    assert!(gk.online, "the fixture's gatekeeper was left online");
    assert_eq!(
        gk.node_id, None,
        "no node held links before nodes had names"
    );
    let alice = store
        .user_by_name("alice")
        .await
        .expect("user lookup")
        .expect("user alice");
    assert!(alice.password_hash.is_some(), "alice keeps her password");
    let service = store
        .service_by_name(&acme.id, "db-ssh")
        .await
        .expect("service lookup")
        .expect("service db-ssh");
    assert_eq!(service.target.to_string(), "10.0.0.5:22");
    assert_eq!(
        service.gatekeeper_id.as_ref(),
        Some(&gk.id),
        "the service of a customer with one gatekeeper is that gatekeeper's"
    );
    let grants = store
        .grants_for(&alice.id, &service.id)
        .await
        .expect("grants");
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert!(store.user_roles(&alice.id).await.expect("roles").is_empty());
    assert!(
        !store.list_roles().await.expect("roles").is_empty(),
        "init made the built-in roles"
    );

    let closed = store
        .session(&SessionId("ses_closedfixture00000000000001".into()))
        .await
        .expect("session lookup")
        .expect("the closed session");
    assert_eq!(
        closed.protocol,
        SessionProtocol::Tcp,
        "old sessions are tcp"
    );
    assert_eq!(closed.node_id, None);
    assert_eq!(closed.gatekeeper_id.as_ref(), Some(&gk.id));
    assert_eq!(closed.grant_id.as_ref(), Some(&grants[0].id));
    assert_eq!(
        (closed.bytes_up, closed.bytes_down, closed.end_reason),
        (1234, 5678, Some(EndReason::Completed))
    );
    let open = SessionId("ses_openfixture000000000000001".into());
    assert_eq!(
        store
            .session(&open)
            .await
            .expect("session lookup")
            .expect("the open session")
            .ended_at,
        None
    );
    let v = audit::verify_store(&store).await.expect("verify");
    assert!(v.is_intact() && v.checked == 6, "{v:?}");

    // The first node to start after the upgrade ends what the old server left.
    let now = Timestamp::now();
    assert_eq!(
        store
            .close_node_sessions("node-1", now, "server restarted")
            .await
            .expect("close_node_sessions"),
        1
    );
    let ended = store
        .session(&open)
        .await
        .expect("lookup")
        .expect("session");
    assert_eq!(
        (ended.end_reason, ended.end_detail.as_deref()),
        (Some(EndReason::Error), Some("server restarted"))
    );
    let released = store
        .release_node_gatekeepers("node-1")
        .await
        .expect("release_node_gatekeepers");
    assert_eq!(
        released.iter().map(|g| &g.id).collect::<Vec<_>>(),
        vec![&gk.id]
    );
    // New rows use the new columns.
    store
        .set_gatekeeper_state(&gk.id, true, false, Some("node-1"), now)
        .await
        .expect("gatekeeper online");
    store.close().await;
    drop(store);

    let store = SqlStore::connect(&sqlite_url(&dir))
        .await
        .expect("the upgraded database reopens (its migration history is consistent)");
    let gk = store.gatekeeper(&gk.id).await.expect("lookup").expect("gk");
    assert_eq!(gk.node_id.as_deref(), Some("node-1"));
}

/// The same upgrade on PostgreSQL: a database at schema version 3 holding
/// an open session and an online gatekeeper takes the later migrations
/// (which alter the tables in place there) and keeps every row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_database_from_schema_3_upgrades() {
    let pg = PgFixture::start().expect("postgres for the store tests");
    let url = pg
        .fresh_database()
        .await
        .expect("a fresh postgres database");
    let folder =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../cpam-core/migrations/postgres");
    let all = sqlx::migrate::Migrator::new(folder.as_path())
        .await
        .expect("the postgres migrations");
    let v3 = sqlx::migrate::Migrator::with_migrations(
        all.iter().filter(|m| m.version <= 3).cloned().collect(),
    );
    let pool = sqlx::PgPool::connect(&url).await.expect("postgres pool");
    v3.run(&pool).await.expect("schema version 3");
    sqlx::raw_sql(
        "INSERT INTO customers (id, name, created_at) VALUES ('cus_old', 'acme', 1);
         INSERT INTO gatekeepers (id, customer_id, name, created_at, online)
             VALUES ('gk_old', 'cus_old', 'gk-acme', 1, 1);
         INSERT INTO sessions (id, user_id, user_name, customer_id, gatekeeper_id, service_id,
             service_name, target_host, target_port, started_at)
             VALUES ('ses_old', 'usr_old', 'alice', 'cus_old', 'gk_old', 'svc_old', 'db',
                     '10.0.0.5', 22, 5);",
    )
    .execute(&pool)
    .await
    .expect("rows at schema version 3");
    pool.close().await;

    let store = SqlStore::connect(&url)
        .await
        .expect("the version 3 database opens and migrates");
    let old = store
        .session(&SessionId("ses_old".into()))
        .await
        .expect("lookup")
        .expect("the old session");
    assert_eq!(
        (
            old.protocol,
            old.node_id.as_deref(),
            old.gatekeeper_id.as_ref().map(|g| g.as_str())
        ),
        (SessionProtocol::Tcp, None, Some("gk_old"))
    );
    let mut direct = old.clone();
    direct.id = SessionId("ses_direct".into());
    direct.gatekeeper_id = None;
    direct.protocol = SessionProtocol::Ssh;
    direct.node_id = Some("node-2".into());
    store
        .insert_session(&direct)
        .await
        .expect("a session without a gatekeeper");
    assert_eq!(
        store
            .close_node_sessions("node-1", Timestamp(10), "server restarted")
            .await
            .expect("close_node_sessions"),
        1,
        "node-1 ends the session without a node, not node-2's"
    );
    let released = store
        .release_node_gatekeepers("node-1")
        .await
        .expect("release_node_gatekeepers");
    assert_eq!(
        released.iter().map(|g| g.id.as_str()).collect::<Vec<_>>(),
        vec!["gk_old"]
    );
    store.close().await;
}

#[tokio::test]
async fn bad_urls_name_the_url_without_the_password() {
    let e = SqlStore::connect("garbage")
        .await
        .expect_err("garbage is refused");
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.message().contains("`garbage`"), "{e}");

    let e = SqlStore::connect("sqlite:///nonexistent-dir-cpam/sub/cpam.db")
        .await
        .expect_err("missing directory");
    assert!(
        matches!(e.kind(), ErrorKind::Storage | ErrorKind::InvalidArgument),
        "{e}"
    );
    assert!(
        e.message()
            .contains("sqlite:///nonexistent-dir-cpam/sub/cpam.db"),
        "{e}"
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let url = format!("postgres://cpam:hunter2@127.0.0.1:{port}/cpam");
    let e = SqlStore::connect(&url)
        .await
        .expect_err("nothing listens there");
    assert_eq!(e.kind(), ErrorKind::Storage, "{e}");
    assert!(
        e.message()
            .contains(&format!("postgres://cpam:***@127.0.0.1:{port}/cpam")),
        "{e}"
    );
    assert!(!format!("{e:?}").contains("hunter2"), "{e:?}");
}
