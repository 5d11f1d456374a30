//! The SQL store against real databases: a SQLite file and a PostgreSQL
//! server this test starts (or `CPAM_TEST_POSTGRES_URL`).

use cpam_core::ErrorKind;
use cpam_core::audit;
use cpam_core::model::{AuditCategory, AuditEvent, Timestamp};
use cpam_core::store::conformance;
use cpam_core::store::{SqlStore, Store};
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
