//! [`SqlStore`]: the [`Store`] on SQLite or PostgreSQL, through one
//! implementation over [`sqlx::AnyPool`].
//!
//! The SQL is portable: `$n` placeholders (SQLite accepts them too), `TEXT`
//! and `BIGINT` columns, ids generated in Rust. The few places where the
//! backends differ are the transaction that appends to the audit chain and
//! the connection settings; both are chosen from [`Backend`].

mod activity;
mod console;
mod directory;
mod rows;
mod schema;

use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, AssertSqlSafe, Connection as _, Executor as _};

use crate::error::{Error, ErrorKind, Result};
use crate::model::{
    ApiToken, AuditEvent, AuditRecord, CodeRefusal, Customer, CustomerId, EndReason, Gatekeeper,
    GatekeeperId, Grant, GrantId, IpConnectMode, Permission, Role, Service, ServiceId, ServiceKind,
    Session, SessionId, Target, Timestamp, TokenId, User, UserId, UserKey, WebSession,
};
use crate::store::{AuditFilter, NewGrant, SessionFilter, Store};

/// How long a SQLite connection waits for another writer before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(15);

/// Which database the pool talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// The SQL [`Store`]: SQLite (one file shared by the server and the admin
/// commands) or PostgreSQL (several server nodes sharing one database).
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
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
        schema::migrator().run(&pool).await.map_err(|e| {
            Error::new(
                ErrorKind::Storage,
                format!("cannot migrate database `{shown}`: {e}"),
            )
            .with_source(e)
        })?;
        Ok(SqlStore { pool, backend })
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

#[async_trait]
impl Store for SqlStore {
    async fn create_customer(&self, name: &str, now: Timestamp) -> Result<Customer> {
        self.create_customer_impl(name, now).await
    }
    async fn list_customers(&self) -> Result<Vec<Customer>> {
        self.list_customers_impl().await
    }
    async fn customer_by_name(&self, name: &str) -> Result<Option<Customer>> {
        self.customer_where("name", name).await
    }
    async fn customer(&self, id: &CustomerId) -> Result<Option<Customer>> {
        self.customer_where("id", id.as_str()).await
    }

    async fn create_gatekeeper(
        &self,
        customer: &CustomerId,
        name: &str,
        now: Timestamp,
    ) -> Result<Gatekeeper> {
        self.create_gatekeeper_impl(customer, name, now).await
    }
    async fn list_gatekeepers(&self, customer: Option<&CustomerId>) -> Result<Vec<Gatekeeper>> {
        self.list_gatekeepers_impl(customer).await
    }
    async fn gatekeeper(&self, id: &GatekeeperId) -> Result<Option<Gatekeeper>> {
        self.gatekeeper_where("id", id.as_str()).await
    }
    async fn gatekeeper_by_name(&self, name: &str) -> Result<Option<Gatekeeper>> {
        self.gatekeeper_where("name", name).await
    }
    async fn gatekeeper_by_fingerprint(&self, fingerprint: &str) -> Result<Option<Gatekeeper>> {
        self.gatekeeper_where("fingerprint", fingerprint).await
    }
    async fn set_gatekeeper_state(
        &self,
        id: &GatekeeperId,
        online: bool,
        customer_disabled: bool,
        at: Timestamp,
    ) -> Result<()> {
        self.set_gatekeeper_state_impl(id, online, customer_disabled, at)
            .await
    }
    async fn set_gatekeeper_schedule(
        &self,
        id: &GatekeeperId,
        schedule: Option<&str>,
    ) -> Result<()> {
        self.set_gatekeeper_schedule_impl(id, schedule).await
    }
    async fn put_registration_code(
        &self,
        id: &GatekeeperId,
        code_hash: &str,
        expires_at: Timestamp,
    ) -> Result<()> {
        self.put_registration_code_impl(id, code_hash, expires_at)
            .await
    }
    async fn redeem_registration_code(
        &self,
        code_hash: &str,
        public_key: &str,
        fingerprint: &str,
        now: Timestamp,
    ) -> Result<std::result::Result<Gatekeeper, CodeRefusal>> {
        self.redeem_registration_code_impl(code_hash, public_key, fingerprint, now)
            .await
    }

    async fn create_user(
        &self,
        name: &str,
        password_hash: Option<&str>,
        now: Timestamp,
    ) -> Result<User> {
        self.create_user_impl(name, password_hash, now).await
    }
    async fn list_users(&self) -> Result<Vec<User>> {
        self.list_users_impl().await
    }
    async fn user(&self, id: &UserId) -> Result<Option<User>> {
        self.user_where("id", id.as_str()).await
    }
    async fn user_by_name(&self, name: &str) -> Result<Option<User>> {
        self.user_where("name", name).await
    }
    async fn set_password_hash(&self, id: &UserId, password_hash: Option<&str>) -> Result<()> {
        self.set_password_hash_impl(id, password_hash).await
    }
    async fn set_user_disabled(&self, id: &UserId, disabled: bool) -> Result<()> {
        self.set_user_disabled_impl(id, disabled).await
    }
    async fn add_user_key(&self, key: &UserKey) -> Result<()> {
        self.add_user_key_impl(key).await
    }
    async fn user_keys(&self, id: &UserId) -> Result<Vec<UserKey>> {
        self.user_keys_where("user_id", id.as_str()).await
    }
    async fn user_key_by_fingerprint(&self, fingerprint: &str) -> Result<Option<UserKey>> {
        Ok(self
            .user_keys_where("fingerprint", fingerprint)
            .await?
            .into_iter()
            .next())
    }
    async fn put_role(&self, role: &Role) -> Result<()> {
        self.put_role_impl(role).await
    }
    async fn list_roles(&self) -> Result<Vec<Role>> {
        self.list_roles_impl().await
    }
    async fn assign_role(&self, user: &UserId, role: &str) -> Result<()> {
        self.assign_role_impl(user, role).await
    }
    async fn user_roles(&self, user: &UserId) -> Result<Vec<String>> {
        self.user_roles_impl(user).await
    }
    async fn user_permissions(&self, user: &UserId) -> Result<Vec<Permission>> {
        self.user_permissions_impl(user).await
    }

    async fn create_service(
        &self,
        customer: &CustomerId,
        name: &str,
        kind: ServiceKind,
        target: &Target,
        now: Timestamp,
    ) -> Result<Service> {
        self.create_service_impl(customer, name, kind, target, now)
            .await
    }
    async fn list_services(&self, customer: Option<&CustomerId>) -> Result<Vec<Service>> {
        self.list_services_impl(customer).await
    }
    async fn service(&self, id: &ServiceId) -> Result<Option<Service>> {
        self.service_impl(id).await
    }
    async fn service_by_name(&self, customer: &CustomerId, name: &str) -> Result<Option<Service>> {
        self.service_by_name_impl(customer, name).await
    }

    async fn create_grant(&self, grant: &NewGrant, now: Timestamp) -> Result<Grant> {
        self.create_grant_impl(grant, now).await
    }
    async fn list_grants(&self, user: Option<&UserId>) -> Result<Vec<Grant>> {
        self.list_grants_impl(user).await
    }
    async fn grant(&self, id: &GrantId) -> Result<Option<Grant>> {
        self.grant_impl(id).await
    }
    async fn grants_for(&self, user: &UserId, service: &ServiceId) -> Result<Vec<Grant>> {
        self.grants_for_impl(user, service).await
    }
    async fn revoke_grant(&self, id: &GrantId, now: Timestamp) -> Result<bool> {
        self.revoke_grant_impl(id, now).await
    }

    async fn insert_session(&self, session: &Session) -> Result<()> {
        self.insert_session_impl(session).await
    }
    async fn finish_session(
        &self,
        id: &SessionId,
        ended_at: Timestamp,
        bytes_up: u64,
        bytes_down: u64,
        reason: EndReason,
        detail: Option<&str>,
    ) -> Result<()> {
        self.finish_session_impl(id, ended_at, bytes_up, bytes_down, reason, detail)
            .await
    }
    async fn session(&self, id: &SessionId) -> Result<Option<Session>> {
        self.session_impl(id).await
    }
    async fn list_sessions(&self, filter: &SessionFilter) -> Result<Vec<Session>> {
        self.list_sessions_impl(filter).await
    }
    async fn close_orphan_sessions(&self, now: Timestamp, detail: &str) -> Result<u64> {
        self.close_orphan_sessions_impl(now, detail).await
    }

    async fn append_audit(&self, event: &AuditEvent) -> Result<AuditRecord> {
        self.append_audit_impl(event).await
    }
    async fn audit_records(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>> {
        self.audit_records_impl(filter).await
    }

    async fn delete_customer(&self, id: &CustomerId) -> Result<()> {
        self.delete_customer_impl(id).await
    }
    async fn delete_service(&self, id: &ServiceId) -> Result<()> {
        self.delete_service_impl(id).await
    }
    async fn set_role_permissions(&self, name: &str, permissions: &[Permission]) -> Result<()> {
        self.set_role_permissions_impl(name, permissions).await
    }
    async fn delete_role(&self, name: &str) -> Result<()> {
        self.delete_role_impl(name).await
    }
    async fn set_user_roles(&self, user: &UserId, roles: &[String]) -> Result<()> {
        self.set_user_roles_impl(user, roles).await
    }
    async fn set_user_customers(&self, user: &UserId, customers: &[CustomerId]) -> Result<()> {
        self.set_user_customers_impl(user, customers).await
    }
    async fn user_customers(&self, user: &UserId) -> Result<Vec<CustomerId>> {
        self.user_customers_impl(user).await
    }
    async fn set_user_ip_connect_mode(&self, user: &UserId, mode: IpConnectMode) -> Result<()> {
        self.set_user_ip_connect_mode_impl(user, mode).await
    }
    async fn user_ip_connect_mode(&self, user: &UserId) -> Result<IpConnectMode> {
        self.user_ip_connect_mode_impl(user).await
    }
    async fn setting(&self, key: &str) -> Result<Option<String>> {
        self.setting_impl(key).await
    }
    async fn put_setting(&self, key: &str, value: &str) -> Result<()> {
        self.put_setting_impl(key, value).await
    }
    async fn create_web_session(&self, session: &WebSession) -> Result<()> {
        self.create_web_session_impl(session).await
    }
    async fn web_session(&self, id_hash: &str) -> Result<Option<WebSession>> {
        self.web_session_impl(id_hash).await
    }
    async fn touch_web_session(&self, id_hash: &str, at: Timestamp) -> Result<()> {
        self.touch_web_session_impl(id_hash, at).await
    }
    async fn delete_web_session(&self, id_hash: &str) -> Result<()> {
        self.delete_web_session_impl(id_hash).await
    }
    async fn delete_user_web_sessions(&self, user: &UserId) -> Result<u64> {
        self.delete_user_web_sessions_impl(user).await
    }
    async fn purge_web_sessions(&self, idle_before: Timestamp, now: Timestamp) -> Result<u64> {
        self.purge_web_sessions_impl(idle_before, now).await
    }
    async fn create_api_token(&self, token: &ApiToken) -> Result<()> {
        self.create_api_token_impl(token).await
    }
    async fn list_api_tokens(&self, user: &UserId) -> Result<Vec<ApiToken>> {
        self.list_api_tokens_impl(user).await
    }
    async fn api_token_by_hash(&self, token_hash: &str) -> Result<Option<ApiToken>> {
        self.api_token_by_hash_impl(token_hash).await
    }
    async fn touch_api_token(&self, id: &TokenId, at: Timestamp) -> Result<()> {
        self.touch_api_token_impl(id, at).await
    }
    async fn delete_api_token(&self, id: &TokenId) -> Result<bool> {
        self.delete_api_token_impl(id).await
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
