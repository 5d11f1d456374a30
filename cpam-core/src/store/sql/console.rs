//! [`ConsoleStore`] on SQL: server-wide settings, console sessions and API
//! tokens.

use async_trait::async_trait;
use sqlx::Row as _;
use sqlx::any::AnyRow;

use super::{SqlStore, write_error};
use crate::error::Result;
use crate::model::{ApiToken, Timestamp, TokenId, UserId, WebSession};
use crate::store::ConsoleStore;

const WEB_SESSION: &str = "id_hash, user_id, csrf_token, created_at, last_seen, expires_at";
const API_TOKEN: &str = "id, user_id, name, token_hash, created_at, expires_at, last_used_at";

fn web_session(row: &AnyRow) -> Result<WebSession> {
    Ok(WebSession {
        id_hash: row.try_get("id_hash")?,
        user_id: UserId(row.try_get("user_id")?),
        csrf_token: row.try_get("csrf_token")?,
        created_at: Timestamp(row.try_get("created_at")?),
        last_seen: Timestamp(row.try_get("last_seen")?),
        expires_at: Timestamp(row.try_get("expires_at")?),
    })
}

fn api_token(row: &AnyRow) -> Result<ApiToken> {
    Ok(ApiToken {
        id: TokenId(row.try_get("id")?),
        user_id: UserId(row.try_get("user_id")?),
        name: row.try_get("name")?,
        token_hash: row.try_get("token_hash")?,
        created_at: Timestamp(row.try_get("created_at")?),
        expires_at: row.try_get::<Option<i64>, _>("expires_at")?.map(Timestamp),
        last_used_at: row
            .try_get::<Option<i64>, _>("last_used_at")?
            .map(Timestamp),
    })
}

#[async_trait]
impl ConsoleStore for SqlStore {
    async fn setting(&self, key: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT value FROM settings WHERE name = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("value")).transpose()?)
    }

    async fn put_setting(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn create_web_session(&self, s: &WebSession) -> Result<()> {
        sqlx::query(
            "INSERT INTO web_sessions (id_hash, user_id, csrf_token, created_at, last_seen, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&s.id_hash)
        .bind(s.user_id.as_str())
        .bind(&s.csrf_token)
        .bind(s.created_at.millis())
        .bind(s.last_seen.millis())
        .bind(s.expires_at.millis())
        .execute(&self.pool)
        .await
        .map_err(|e| {
            write_error(
                e,
                || "console session already exists".to_string(),
                || format!("user `{}` not found", s.user_id),
            )
        })?;
        Ok(())
    }

    async fn web_session(&self, id_hash: &str) -> Result<Option<WebSession>> {
        let sql = format!("SELECT {WEB_SESSION} FROM web_sessions WHERE id_hash = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(web_session).transpose()
    }

    async fn touch_web_session(&self, id_hash: &str, at: Timestamp) -> Result<()> {
        sqlx::query("UPDATE web_sessions SET last_seen = $1 WHERE id_hash = $2")
            .bind(at.millis())
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_web_session(&self, id_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM web_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_user_web_sessions(&self, user: &UserId) -> Result<u64> {
        let done = sqlx::query("DELETE FROM web_sessions WHERE user_id = $1")
            .bind(user.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn purge_web_sessions(&self, idle_before: Timestamp, now: Timestamp) -> Result<u64> {
        let done = sqlx::query("DELETE FROM web_sessions WHERE last_seen < $1 OR expires_at <= $2")
            .bind(idle_before.millis())
            .bind(now.millis())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn create_api_token(&self, t: &ApiToken) -> Result<()> {
        sqlx::query(
            "INSERT INTO api_tokens (id, user_id, name, token_hash, created_at, expires_at, last_used_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(t.id.as_str())
        .bind(t.user_id.as_str())
        .bind(&t.name)
        .bind(&t.token_hash)
        .bind(t.created_at.millis())
        .bind(t.expires_at.map(Timestamp::millis))
        .bind(t.last_used_at.map(Timestamp::millis))
        .execute(&self.pool)
        .await
        .map_err(|e| {
            write_error(
                e,
                || format!("token `{}` already exists", t.id),
                || format!("user `{}` not found", t.user_id),
            )
        })?;
        Ok(())
    }

    async fn list_api_tokens(&self, user: &UserId) -> Result<Vec<ApiToken>> {
        let sql = format!(
            "SELECT {API_TOKEN} FROM api_tokens WHERE user_id = $1 ORDER BY created_at, id"
        );
        let found = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user.as_str())
            .fetch_all(&self.pool)
            .await?;
        found.iter().map(api_token).collect()
    }

    async fn api_token_by_hash(&self, hash: &str) -> Result<Option<ApiToken>> {
        let sql = format!("SELECT {API_TOKEN} FROM api_tokens WHERE token_hash = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(api_token).transpose()
    }

    async fn touch_api_token(&self, id: &TokenId, at: Timestamp) -> Result<()> {
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
            .bind(at.millis())
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_api_token(&self, id: &TokenId) -> Result<bool> {
        let done = sqlx::query("DELETE FROM api_tokens WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
