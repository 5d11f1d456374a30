//! [`SessionLog`] and [`AuditLog`] on SQL: sessions and the audit chain.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::{AnyConnection, AssertSqlSafe, Row as _};

use super::commit::{Write, Written};

use super::{Backend, Conditions, Param, SqlStore, is_conflict, rows, storage, write_error};
use crate::audit;
use crate::error::{Error, Result};
use crate::model::{AuditEvent, AuditRecord, EndReason, Session, SessionId, Timestamp};
use crate::store::{AuditFilter, AuditLog, SessionFilter, SessionLog};

/// How often an audit append is retried after losing a race to another writer.
const AUDIT_ATTEMPTS: u32 = 20;

#[async_trait]
impl SessionLog for SqlStore {
    async fn insert_session(&self, s: &Session) -> Result<()> {
        if let Some(group) = &self.group {
            return group.write(Write::Session(s.clone())).await.map(|_| ());
        }
        let mut conn = self.pool.acquire().await?;
        insert_session_in(&mut conn, s).await.map_err(|e| {
            write_error(
                e,
                || format!("session `{}` already exists", s.id),
                String::new,
            )
        })
    }

    /// Ends an open session. Ending one that has already ended changes
    /// nothing (the first end wins); an unknown id is `NotFound`.
    async fn finish_session(
        &self,
        id: &SessionId,
        ended_at: Timestamp,
        bytes_up: u64,
        bytes_down: u64,
        reason: EndReason,
        detail: Option<&str>,
    ) -> Result<()> {
        let rows = match &self.group {
            Some(group) => match group
                .write(Write::Finish {
                    id: id.clone(),
                    ended_at,
                    bytes_up,
                    bytes_down,
                    reason,
                    detail: detail.map(str::to_string),
                })
                .await?
            {
                Written::Finished { rows } => rows,
                _ => return Err(Error::internal("the writer answered another write")),
            },
            None => {
                let mut conn = self.pool.acquire().await?;
                finish_session_in(
                    &mut conn,
                    id,
                    ended_at,
                    (bytes_up, bytes_down),
                    reason,
                    detail,
                )
                .await?
            }
        };
        if rows == 0 && self.session(id).await?.is_none() {
            return Err(Error::not_found(format!("session `{id}` not found")));
        }
        Ok(())
    }

    async fn session(&self, id: &SessionId) -> Result<Option<Session>> {
        let sql = format!("SELECT {} FROM sessions WHERE id = $1", rows::SESSION);
        let found = sqlx::query(AssertSqlSafe(sql))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        found.as_ref().map(rows::session).transpose()
    }

    async fn list_sessions(&self, filter: &SessionFilter) -> Result<Vec<Session>> {
        let mut c = Conditions::default();
        if filter.live_only {
            c.push_plain("ended_at IS NULL");
        }
        if let Some(u) = &filter.user_id {
            c.push("user_id = ?", Param::Text(u.to_string()));
        }
        if let Some(cu) = &filter.customer_id {
            c.push("customer_id = ?", Param::Text(cu.to_string()));
        }
        let where_sql = c.where_sql();
        let limit = c.limit(filter.limit);
        let sql = format!(
            "SELECT {} FROM sessions{where_sql} ORDER BY started_at DESC, id DESC{limit}",
            rows::SESSION
        );
        c.fetch_all(&self.pool, sql)
            .await?
            .iter()
            .map(rows::session)
            .collect()
    }

    async fn close_node_sessions(
        &self,
        node_id: &str,
        now: Timestamp,
        detail: &str,
    ) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE sessions SET ended_at = $1, end_reason = $2, end_detail = $3 \
             WHERE ended_at IS NULL AND (node_id = $4 OR node_id IS NULL)",
        )
        .bind(now.millis())
        .bind(EndReason::Error.as_str())
        .bind(detail)
        .bind(node_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl AuditLog for SqlStore {
    async fn append_audit(&self, event: &AuditEvent) -> Result<AuditRecord> {
        let event = event.bounded();
        let event = event.as_ref();
        let detail = serde_json::to_string(&event.detail)
            .map_err(|e| Error::invalid(format!("audit detail cannot be encoded: {e}")))?;
        if let Some(group) = &self.group {
            return match group
                .write(Write::Audit {
                    event: event.clone(),
                    detail,
                })
                .await?
            {
                Written::Audit(record) => Ok(record),
                _ => Err(Error::internal("the writer answered another write")),
            };
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_append_audit(event, &detail).await {
                Ok(record) => return Ok(record),
                Err(e) if attempt < AUDIT_ATTEMPTS && is_conflict(&e) => {
                    tracing::debug!(attempt, error = %e, "audit append lost a race, retrying");
                    let jitter = u64::from(rand::random::<u8>() % 8);
                    tokio::time::sleep(Duration::from_millis(u64::from(attempt) * 2 + jitter))
                        .await;
                }
                Err(e) => return Err(storage("cannot append audit record", e)),
            }
        }
    }

    async fn audit_records(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>> {
        let mut c = Conditions::default();
        if let Some(from) = filter.from_seq {
            c.push("seq >= ?", Param::Int(from));
        }
        if let Some(cat) = filter.category {
            c.push("category = ?", Param::Text(cat.as_str().to_string()));
        }
        if let Some(cu) = &filter.customer_id {
            c.push("customer_id = ?", Param::Text(cu.to_string()));
        }
        if let Some(actor) = &filter.actor {
            c.push("actor = ?", Param::Text(actor.clone()));
        }
        if let Some(since) = filter.since {
            c.push("at >= ?", Param::Int(since.millis()));
        }
        if let Some(until) = filter.until {
            c.push("at < ?", Param::Int(until.millis()));
        }
        let where_sql = c.where_sql();
        let limit = c.limit(filter.limit);
        let sql = format!(
            "SELECT {} FROM audit_log{where_sql} ORDER BY seq{limit}",
            rows::AUDIT
        );
        c.fetch_all(&self.pool, sql)
            .await?
            .iter()
            .map(rows::audit_record)
            .collect()
    }
}

impl SqlStore {
    /// One attempt: under the writer lock, read the chain's head, seal after it, insert.
    async fn try_append_audit(
        &self,
        event: &AuditEvent,
        detail: &str,
    ) -> sqlx::Result<AuditRecord> {
        let mut tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => {
                let mut tx = self.pool.begin().await?;
                sqlx::query("LOCK TABLE audit_log IN EXCLUSIVE MODE")
                    .execute(&mut *tx)
                    .await?;
                tx
            }
        };
        let record = append_audit_in(&mut tx, event, detail).await?;
        tx.commit().await?;
        Ok(record)
    }
}

/// A query on any backend.
pub(super) type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// A new session row; bound by [`bind_session`].
pub(super) const INSERT_SESSION: &str = "INSERT INTO sessions (id, user_id, user_name, customer_id, \
     gatekeeper_id, service_id, service_name, target_host, target_port, grant_id, started_at, \
     ended_at, bytes_up, bytes_down, end_reason, end_detail, protocol, node_id) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)";

/// The end of an open session; bound by [`bind_finish`].
pub(super) const FINISH_SESSION: &str = "UPDATE sessions SET ended_at = $1, bytes_up = $2, \
     bytes_down = $3, end_reason = $4, end_detail = $5 WHERE id = $6 AND ended_at IS NULL";

/// A sealed audit record; bound by [`bind_audit`].
pub(super) const INSERT_AUDIT: &str = "INSERT INTO audit_log (seq, at, category, action, actor, \
     customer_id, session_id, detail, prev_hash, hash) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

/// Binds [`INSERT_SESSION`]'s parameters.
pub(super) fn bind_session<'q>(q: AnyQuery<'q>, s: &Session) -> AnyQuery<'q> {
    q.bind(s.id.to_string())
        .bind(s.user_id.to_string())
        .bind(s.user_name.clone())
        .bind(s.customer_id.to_string())
        .bind(s.gatekeeper_id.as_ref().map(|g| g.to_string()))
        .bind(s.service_id.to_string())
        .bind(s.service_name.clone())
        .bind(s.target.host.clone())
        .bind(i64::from(s.target.port))
        .bind(s.grant_id.as_ref().map(|g| g.to_string()))
        .bind(s.started_at.millis())
        .bind(s.ended_at.map(Timestamp::millis))
        .bind(rows::counter_to_db(s.bytes_up))
        .bind(rows::counter_to_db(s.bytes_down))
        .bind(s.end_reason.map(EndReason::as_str))
        .bind(s.end_detail.clone())
        .bind(s.protocol.as_str())
        .bind(s.node_id.clone())
}

/// Binds [`FINISH_SESSION`]'s parameters.
pub(super) fn bind_finish<'q>(
    q: AnyQuery<'q>,
    id: &SessionId,
    ended_at: Timestamp,
    (bytes_up, bytes_down): (u64, u64),
    reason: EndReason,
    detail: Option<&str>,
) -> AnyQuery<'q> {
    q.bind(ended_at.millis())
        .bind(rows::counter_to_db(bytes_up))
        .bind(rows::counter_to_db(bytes_down))
        .bind(reason.as_str())
        .bind(detail.map(str::to_string))
        .bind(id.to_string())
}

/// Binds [`INSERT_AUDIT`]'s parameters: `record` as sealed from `event`,
/// whose detail is `detail` (JSON text).
pub(super) fn bind_audit<'q>(
    q: AnyQuery<'q>,
    record: &AuditRecord,
    event: &AuditEvent,
    detail: &str,
) -> AnyQuery<'q> {
    q.bind(record.seq)
        .bind(event.at.millis())
        .bind(event.category.as_str())
        .bind(event.action.clone())
        .bind(event.actor.clone())
        .bind(event.customer_id.as_ref().map(|c| c.to_string()))
        .bind(event.session_id.as_ref().map(|s| s.to_string()))
        .bind(detail.to_string())
        .bind(record.prev_hash.clone())
        .bind(record.hash.clone())
}

/// Inserts a session row on `conn`.
pub(super) async fn insert_session_in(conn: &mut AnyConnection, s: &Session) -> sqlx::Result<()> {
    bind_session(sqlx::query(INSERT_SESSION), s)
        .execute(conn)
        .await?;
    Ok(())
}

/// Ends an open session on `conn`; answers how many rows changed (`0`:
/// unknown or already ended).
pub(super) async fn finish_session_in(
    conn: &mut AnyConnection,
    id: &SessionId,
    ended_at: Timestamp,
    bytes: (u64, u64),
    reason: EndReason,
    detail: Option<&str>,
) -> sqlx::Result<u64> {
    let q = bind_finish(
        sqlx::query(FINISH_SESSION),
        id,
        ended_at,
        bytes,
        reason,
        detail,
    );
    Ok(q.execute(conn).await?.rows_affected())
}

/// Seals `event` after the chain's head and inserts it, on `conn`, which
/// must hold the write lock (a write transaction).
pub(super) async fn append_audit_in(
    conn: &mut AnyConnection,
    event: &AuditEvent,
    detail: &str,
) -> sqlx::Result<AuditRecord> {
    let head = audit_head_in(&mut *conn).await?;
    insert_audit_in(conn, head.as_ref(), event, detail).await
}

/// The chain's last record (sequence number and hash), if any.
pub(super) async fn audit_head_in(conn: &mut AnyConnection) -> sqlx::Result<Option<(i64, String)>> {
    let head = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?;
    Ok(match head {
        Some(r) => Some((r.try_get::<i64, _>("seq")?, r.try_get::<String, _>("hash")?)),
        None => None,
    })
}

/// Seals `event` after `head` and inserts it. A head that is no longer the
/// last record fails with a unique violation on the sequence number: the
/// chain cannot fork.
pub(super) async fn insert_audit_in(
    conn: &mut AnyConnection,
    head: Option<&(i64, String)>,
    event: &AuditEvent,
    detail: &str,
) -> sqlx::Result<AuditRecord> {
    let record = audit::seal(head.map(|(s, h)| (*s, h.as_str())), event.clone());
    bind_audit(sqlx::query(INSERT_AUDIT), &record, event, detail)
        .execute(&mut *conn)
        .await?;
    Ok(record)
}
