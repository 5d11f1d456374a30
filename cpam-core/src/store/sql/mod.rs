//! [`SqlStore`]: the [`Store`](crate::store::Store) on SQLite or PostgreSQL, through one
//! implementation over [`sqlx::AnyPool`].
//!
//! The SQL is portable: `$n` placeholders (SQLite accepts them too), `TEXT`
//! and `BIGINT` columns, ids generated in Rust. The few places where the
//! backends differ are the transaction that appends to the audit chain and
//! the connection settings; both are chosen from [`Backend`]. Each role
//! trait is implemented once, in its own file: `directory.rs`
//! (`Directory`), `activity.rs` (`SessionLog`, `AuditLog`), `console.rs`
//! (`ConsoleStore`), `vault.rs` (`VaultStore`), `nodes.rs` (`Cluster`); the differences between backends' schemas live in the
//! migrations (`schema.rs`).

mod activity;
mod commit;
#[cfg(test)]
mod commit_tests;
mod console;
mod directory;
mod lookups;
mod nodes;
mod removals;
mod rows;
mod schema;
mod vault;

use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, AssertSqlSafe, Connection as _, Executor as _};

use crate::error::{Error, ErrorKind, Result};

/// How long a SQLite connection waits for another writer before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(15);
/// WAL pages past which a writer checkpoints itself (64 MiB of 4 KiB pages);
/// below it, checkpoints run in the background.
pub(super) const WAL_AUTOCHECKPOINT_PAGES: u32 = 16_384;

/// Which database the pool talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// The SQL [`Store`](crate::store::Store): SQLite (one file shared by the server and the admin
/// commands) or PostgreSQL (several server nodes sharing one database).
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    /// SQLite: session and audit writes share commits (`commit.rs`).
    group: Option<std::sync::Arc<commit::GroupCommit>>,
    /// Control messages between nodes (`nodes.rs`).
    bus: std::sync::Arc<dyn crate::store::ControlBus>,
}

impl SqlStore {
    /// Opens the database at `url` and applies pending migrations.
    ///
    /// `sqlite:///path/cpam.db` (created if missing, WAL mode),
    /// `sqlite::memory:` (one private in-memory database), or
    /// `postgres://user:password@host:port/database`.
    pub async fn connect(url: &str) -> Result<SqlStore> {
        sqlx::any::install_default_drivers();
        let shown = redact_url(url);
        let (backend, url) = if url.starts_with("sqlite:") {
            (Backend::Sqlite, sqlite_url(url))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_string())
        } else {
            return Err(Error::invalid(format!(
                "database url `{shown}` is not supported (expected sqlite:///PATH, sqlite::memory: or postgres://...)"
            )));
        };
        let memory = backend == Backend::Sqlite && url.contains(":memory:");
        let mut options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(30));
        if memory {
            // Every connection to `:memory:` is its own database: keep exactly one, forever.
            options = options
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        } else {
            options = options.max_connections(8);
            if backend == Backend::Sqlite {
                // A connection to a local file does not go stale: no ping
                // before every use (one more round trip on each write).
                options = options.test_before_acquire(false);
            }
        }
        if backend == Backend::Sqlite {
            options = options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    let busy = format!("PRAGMA busy_timeout = {}", SQLITE_BUSY_TIMEOUT.as_millis());
                    conn.execute(AssertSqlSafe(busy)).await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    // With WAL, NORMAL survives a crash of the process without
                    // loss and never corrupts; only an OS crash or power cut
                    // can roll back the last commits. It saves an fsync per
                    // commit, which is most of the cost of opening a session.
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    // Checkpoints run in the background (`commit.rs`); a
                    // writer checkpoints itself only past this bound.
                    let bound = format!("PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}");
                    conn.execute(AssertSqlSafe(bound)).await?;
                    Ok(())
                })
            });
        }
        let open_error = |e: sqlx::Error| {
            let kind = match &e {
                sqlx::Error::Configuration(_) => ErrorKind::InvalidArgument,
                _ => ErrorKind::Storage,
            };
            Error::new(kind, format!("cannot open database `{shown}`: {e}")).with_source(e)
        };
        if !memory {
            // One direct attempt first: the pool would retry an unreachable
            // server until its acquire timeout instead of failing at once.
            let probe = sqlx::AnyConnection::connect(&url)
                .await
                .map_err(open_error)?;
            probe.close().await.map_err(open_error)?;
        }
        let pool = options.connect(&url).await.map_err(open_error)?;
        if backend == Backend::Sqlite && !memory {
            sqlx::query("PRAGMA journal_mode = WAL")
                .fetch_optional(&pool)
                .await
                .map_err(|e| storage(format!("cannot switch database `{shown}` to WAL mode"), e))?;
        }
        schema::migrator(backend).run(&pool).await.map_err(|e| {
            Error::new(
                ErrorKind::Storage,
                format!("cannot migrate database `{shown}`: {e}"),
            )
            .with_source(e)
        })?;
        let group = (backend == Backend::Sqlite)
            .then(|| std::sync::Arc::new(commit::GroupCommit::new(pool.clone(), !memory)));
        let bus = nodes::bus_for(backend, &pool, &url);
        Ok(SqlStore {
            pool,
            backend,
            group,
            bus,
        })
    }

    /// Which backend this store uses: `"sqlite"` or `"postgres"`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    /// Closes every connection; pending operations finish first.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Starts a transaction that holds the write lock from its first statement
    /// (SQLite `BEGIN IMMEDIATE`; a plain `BEGIN` on PostgreSQL, whose row
    /// locks and `LOCK TABLE` serialize writers).
    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Any>> {
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        Ok(tx)
    }
}

/// Adds `mode=rwc` (create if missing) to a SQLite file URL without a mode.
/// `Ok` when a statement touched at least one row; otherwise `NotFound`
/// naming the object (`gatekeeper `gk_…` not found`).
pub(super) fn found(
    done: &sqlx::any::AnyQueryResult,
    what: &str,
    id: &dyn std::fmt::Display,
) -> Result<()> {
    if done.rows_affected() == 0 {
        return Err(Error::not_found(format!("{what} `{id}` not found")));
    }
    Ok(())
}

fn sqlite_url(url: &str) -> String {
    if url.contains(":memory:") || url.contains("mode=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

/// `url` with any password (in the user info or a `password=` query
/// parameter) replaced by `***`, fit for messages and logs. Text that is not
/// a URL is shown as it is unless it might hold a password (an `@` or
/// `password`), which is then not shown at all.
pub fn redact_url(text: &str) -> String {
    let Ok(mut url) = url::Url::parse(text) else {
        let risky = text.contains('@') || text.to_ascii_lowercase().contains("password");
        return if risky {
            "<a url that cannot be parsed>".to_string()
        } else {
            text.to_string()
        };
    };
    if url.password().is_some() && url.set_password(Some("***")).is_err() {
        return "<a url whose password cannot be hidden>".to_string();
    }
    let is_password = |k: &str| k.eq_ignore_ascii_case("password");
    if url.query_pairs().any(|(k, _)| is_password(&k)) {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_password(&k) { "***".into() } else { v };
                (k.into_owned(), v.into_owned())
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

/// A storage error with context.
pub(crate) fn storage(context: impl std::fmt::Display, e: sqlx::Error) -> Error {
    Error::new(ErrorKind::Storage, format!("{context}: {e}")).with_source(e)
}

/// Maps a failed insert or update: a unique violation becomes
/// `Conflict` with `duplicate`, a foreign-key violation `NotFound`
/// with `missing`, anything else a storage error.
pub(crate) fn write_error(
    e: sqlx::Error,
    duplicate: impl FnOnce() -> String,
    missing: impl FnOnce() -> String,
) -> Error {
    let kind = match &e {
        sqlx::Error::Database(db) => Some(db.kind()),
        _ => None,
    };
    match kind {
        Some(sqlx::error::ErrorKind::UniqueViolation) => Error::conflict(duplicate()),
        Some(sqlx::error::ErrorKind::ForeignKeyViolation) => Error::not_found(missing()),
        _ => Error::from(e),
    }
}

/// Whether `e` is a conflict another writer caused (retry the transaction).
pub(crate) fn is_conflict(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            db.kind() == sqlx::error::ErrorKind::UniqueViolation
                || matches!(
                    db.code().as_deref(),
                    Some("5" | "6" | "517" | "40001" | "40P01")
                )
                || db.message().contains("database is locked")
        }
        _ => false,
    }
}

/// A bound value of a query assembled at run time.
#[derive(Debug, Clone)]
pub(crate) enum Param {
    Text(String),
    Int(i64),
}

/// `WHERE` clauses with numbered placeholders, for filters.
#[derive(Debug, Default)]
pub(crate) struct Conditions {
    clauses: Vec<String>,
    params: Vec<Param>,
}

impl Conditions {
    /// Adds `clause`, in which `?` stands for the placeholder of `value`.
    pub(crate) fn push(&mut self, clause: &str, value: Param) {
        self.params.push(value);
        let placeholder = format!("${}", self.params.len());
        self.clauses.push(clause.replace('?', &placeholder));
    }

    /// Adds a clause without a value.
    pub(crate) fn push_plain(&mut self, clause: &str) {
        self.clauses.push(clause.to_string());
    }

    /// Adds a `LIMIT` for `limit` if set (negative means none).
    pub(crate) fn limit(&mut self, limit: Option<i64>) -> String {
        match limit {
            Some(n) if n >= 0 => {
                self.params.push(Param::Int(n));
                format!(" LIMIT ${}", self.params.len())
            }
            _ => String::new(),
        }
    }

    /// ` WHERE a AND b`, or nothing.
    pub(crate) fn where_sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }

    /// Runs `sql` (built from these conditions) and returns its rows.
    pub(crate) async fn fetch_all(self, pool: &AnyPool, sql: String) -> Result<Vec<AnyRow>> {
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for p in self.params {
            q = match p {
                Param::Text(s) => q.bind(s),
                Param::Int(i) => q.bind(i),
            };
        }
        Ok(q.fetch_all(pool).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn in_memory_sqlite_conforms() {
        let store = SqlStore::connect("sqlite::memory:")
            .await
            .expect("in-memory sqlite opens");
        assert_eq!(store.backend_name(), "sqlite");
        crate::store::conformance::run_all(&store).await;
    }

    #[tokio::test]
    async fn unsupported_urls_are_refused_without_the_password() {
        let e = SqlStore::connect("mysql://root:hunter2@db/cpam")
            .await
            .expect_err("mysql is refused");
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.message().contains("mysql://root:***@db/cpam"), "{e}");
        assert!(!e.message().contains("hunter2"), "{e}");
    }

    #[test]
    fn passwords_are_redacted() {
        let check = |url: &str, expect: &str| assert_eq!(redact_url(url), expect);
        check(
            "postgres://cpam:s3cret@db:5432/cpam",
            "postgres://cpam:***@db:5432/cpam",
        );
        check("postgres://cpam@db/cpam", "postgres://cpam@db/cpam");
        check(
            "postgres://db/cpam?user=u&password=x",
            "postgres://db/cpam?user=u&password=***",
        );
        check("sqlite:///var/lib/cpam.db", "sqlite:///var/lib/cpam.db");
        check("postgres://u:p@ss@h/d", "postgres://u:***@h/d");
        check("postgres://:only@h/d", "postgres://:***@h/d");
        check(
            "postgres://h/d?PASSWORD=x&sslmode=require",
            "postgres://h/d?PASSWORD=***&sslmode=require",
        );
        check("sqlite::memory:", "sqlite::memory:");
        check("garbage", "garbage");
        check(
            "not a url: user:hunter2@host",
            "<a url that cannot be parsed>",
        );
    }

    #[test]
    fn sqlite_urls_create_the_file() {
        assert_eq!(sqlite_url("sqlite:///a/b.db"), "sqlite:///a/b.db?mode=rwc");
        assert_eq!(
            sqlite_url("sqlite:///a/b.db?cache=shared"),
            "sqlite:///a/b.db?cache=shared&mode=rwc"
        );
        assert_eq!(
            sqlite_url("sqlite:///a/b.db?mode=ro"),
            "sqlite:///a/b.db?mode=ro"
        );
        assert_eq!(sqlite_url("sqlite::memory:"), "sqlite::memory:");
    }
}
