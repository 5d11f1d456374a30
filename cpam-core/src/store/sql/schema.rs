//! The schema: `.sql` migrations under `cpam-core/migrations/`, one folder
//! per backend, embedded at compile time.
//!
//! Only portable SQL where the backends agree: `TEXT` and `BIGINT` columns
//! (booleans are 0/1), no blobs, no generated ids (ids are made in Rust),
//! `UNIQUE` constraints for every name the store promises to keep unique.
//! Where they disagree (SQLite cannot drop `NOT NULL` in place) the folders
//! hold different statements for the same version.
//!
//! A migration, once released, is never edited, not even its whitespace:
//! sqlx keeps each applied migration's SHA-384 in `_sqlx_migrations` and
//! refuses a database whose history differs. Versions 1 to 3 were released
//! as strings in the code; their files hold exactly those bytes, so a data
//! dir made then upgrades without any mapping (`tests/store.rs` opens one).
//! Add a new version instead, in both folders.

use sqlx::migrate::Migrator;

use super::Backend;

static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");

/// The migrator of `backend`, applied on connect.
pub(super) fn migrator(backend: Backend) -> &'static Migrator {
    match backend {
        Backend::Sqlite => &SQLITE,
        Backend::Postgres => &POSTGRES,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SHA-384 of versions 1 to 3 as released (stored in every data dir
    /// made before the migrations became files).
    const RELEASED: [(i64, &str); 3] = [
        (
            1,
            "6135ce3f6c05985220d59eccc1f700118249161e2486d148601c438a6f2c1b2922220875de462fbdda89d02dbda00bb7",
        ),
        (
            2,
            "5262ed4296d9e0baed132e57c113b10a7215f4dca40f9dc153b9b9c0f15aa2ffeca1c95ef2111644f9a1cbea97c6aa0c",
        ),
        (
            3,
            "525af470f1aafdb7d7b53892a4425939c9984f4dd4840910b72992ae4a1554687f45998e831ae5b8ee1b30cb714aa3b3",
        ),
    ];

    #[test]
    fn released_migrations_keep_their_checksums() {
        for backend in [Backend::Sqlite, Backend::Postgres] {
            let migrations = migrator(backend).iter().collect::<Vec<_>>();
            for (version, checksum) in RELEASED {
                let m = migrations
                    .iter()
                    .find(|m| m.version == version)
                    .unwrap_or_else(|| panic!("{backend:?} has no migration {version}"));
                assert_eq!(
                    hex::encode(&m.checksum),
                    checksum,
                    "{backend:?} migration {version} was edited after its release"
                );
            }
        }
    }

    #[test]
    fn both_backends_have_the_same_versions() {
        let versions = |b: Backend| migrator(b).iter().map(|m| m.version).collect::<Vec<_>>();
        assert_eq!(versions(Backend::Sqlite), versions(Backend::Postgres));
        assert_eq!(versions(Backend::Sqlite), (1..=8).collect::<Vec<i64>>());
    }

    /// A database of the schema before services had a gatekeeper (5)
    /// upgrades: a customer with one gatekeeper has its services bound to
    /// it; with several or none, its services stay reachable as before.
    #[tokio::test]
    async fn services_are_bound_to_their_customers_only_gatekeeper_on_upgrade() {
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        SQLITE.run_to(5, &pool).await.unwrap();
        let rows = [
            "INSERT INTO customers (id, name, created_at) VALUES ('cus_one', 'one', 0), ('cus_two', 'two', 0), ('cus_none', 'none', 0)",
            "INSERT INTO gatekeepers (id, customer_id, name, created_at) VALUES ('gk_1', 'cus_one', 'gk-1', 0), ('gk_2a', 'cus_two', 'gk-2a', 0), ('gk_2b', 'cus_two', 'gk-2b', 0)",
            "INSERT INTO services (id, customer_id, name, kind, target_host, target_port, created_at) VALUES \
             ('svc_one', 'cus_one', 'ssh', 'custom', '10.0.0.5', 22, 0), \
             ('svc_two', 'cus_two', 'ssh', 'custom', '10.0.0.6', 22, 0), \
             ('svc_none', 'cus_none', 'ssh', 'custom', '10.0.0.7', 22, 0)",
        ];
        for sql in rows {
            sqlx::raw_sql(sql).execute(&pool).await.unwrap();
        }
        SQLITE.run(&pool).await.unwrap();
        let bound: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT id, gatekeeper_id FROM services ORDER BY id")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(
            bound,
            [
                ("svc_none".to_string(), None),
                ("svc_one".to_string(), Some("gk_1".to_string())),
                ("svc_two".to_string(), None),
            ]
        );
    }
}
