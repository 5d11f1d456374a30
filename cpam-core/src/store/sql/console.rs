//! What the console adds: deletions, role edits, customer membership, IP
//! Connect modes, server-wide settings, console sessions and API tokens.

use sqlx::Row as _;
use sqlx::any::AnyRow;

use super::{SqlStore, write_error};
use crate::error::{Error, Result};
use crate::model::{
    ApiToken, CustomerId, IpConnectMode, Permission, ServiceId, Timestamp, TokenId, UserId,
    WebSession,
};

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

impl SqlStore {
    pub(super) async fn delete_customer_impl(&self, id: &CustomerId) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let c = id.as_str();
        let gks = "SELECT id FROM gatekeepers WHERE customer_id = $1";
        let svcs = "SELECT id FROM services WHERE customer_id = $1";
        for sql in [
            format!("DELETE FROM registration_codes WHERE gatekeeper_id IN ({gks})"),
            format!("DELETE FROM user_keys WHERE gatekeeper_id IN ({gks})"),
            format!("DELETE FROM grants WHERE service_id IN ({svcs})"),
            "DELETE FROM services WHERE customer_id = $1".to_string(),
            "DELETE FROM gatekeepers WHERE customer_id = $1".to_string(),
            "DELETE FROM user_customers WHERE customer_id = $1".to_string(),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(c)
                .execute(&mut *tx)
                .await?;
        }
        let done = sqlx::query("DELETE FROM customers WHERE id = $1")
            .bind(c)
            .execute(&mut *tx)
            .await?;
        super::found(&done, "customer", &id)?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn delete_service_impl(&self, id: &ServiceId) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM grants WHERE service_id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM services WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        super::found(&done, "service", &id)?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn set_role_permissions_impl(
        &self,
        name: &str,
        permissions: &[Permission],
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let exists = sqlx::query("SELECT builtin FROM roles WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(Error::not_found(format!("no role `{name}`")));
        }
        sqlx::query("DELETE FROM role_permissions WHERE role_name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let mut permissions = permissions.to_vec();
        permissions.sort();
        permissions.dedup();
        for p in permissions {
            sqlx::query("INSERT INTO role_permissions (role_name, permission) VALUES ($1, $2)")
                .bind(name)
                .bind(p.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn delete_role_impl(&self, name: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query("SELECT builtin FROM roles WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        match row {
            None => return Err(Error::not_found(format!("no role `{name}`"))),
            Some(r) if r.try_get::<i64, _>("builtin")? != 0 => {
                return Err(Error::conflict(format!(
                    "role `{name}` is built in and cannot be deleted"
                )));
            }
            Some(_) => {}
        }
        for sql in [
            "DELETE FROM user_roles WHERE role_name = $1",
            "DELETE FROM role_permissions WHERE role_name = $1",
            "DELETE FROM roles WHERE name = $1",
        ] {
            sqlx::query(sql).bind(name).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn set_user_roles_impl(&self, user: &UserId, roles: &[String]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        self.require_user(&mut tx, user).await?;
        sqlx::query("DELETE FROM user_roles WHERE user_id = $1")
            .bind(user.as_str())
            .execute(&mut *tx)
            .await?;
        let mut roles = roles.to_vec();
        roles.sort();
        roles.dedup();
        for r in &roles {
            sqlx::query("INSERT INTO user_roles (user_id, role_name) VALUES ($1, $2)")
                .bind(user.as_str())
                .bind(r)
                .execute(&mut *tx)
                .await
                .map_err(|e| write_error(e, String::new, || format!("no role `{r}`")))?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn require_user(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        user: &UserId,
    ) -> Result<()> {
        let found = sqlx::query("SELECT id FROM users WHERE id = $1")
            .bind(user.as_str())
            .fetch_optional(&mut **tx)
            .await?;
        match found {
            Some(_) => Ok(()),
            None => Err(Error::not_found(format!("user `{user}` not found"))),
        }
    }

    pub(super) async fn set_user_customers_impl(
        &self,
        user: &UserId,
        customers: &[CustomerId],
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        self.require_user(&mut tx, user).await?;
        sqlx::query("DELETE FROM user_customers WHERE user_id = $1")
            .bind(user.as_str())
            .execute(&mut *tx)
            .await?;
        let mut customers = customers.to_vec();
        customers.sort();
        customers.dedup();
        for c in &customers {
            sqlx::query("INSERT INTO user_customers (user_id, customer_id) VALUES ($1, $2)")
                .bind(user.as_str())
                .bind(c.as_str())
                .execute(&mut *tx)
                .await
                .map_err(|e| write_error(e, String::new, || format!("customer `{c}` not found")))?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn user_customers_impl(&self, user: &UserId) -> Result<Vec<CustomerId>> {
        let found = sqlx::query(
            "SELECT customer_id FROM user_customers WHERE user_id = $1 ORDER BY customer_id",
        )
        .bind(user.as_str())
        .fetch_all(&self.pool)
        .await?;
        found
            .iter()
            .map(|r| Ok(CustomerId(r.try_get("customer_id")?)))
            .collect()
    }

    pub(super) async fn set_user_ip_connect_mode_impl(
        &self,
        user: &UserId,
        mode: IpConnectMode,
    ) -> Result<()> {
        let done = sqlx::query("UPDATE users SET ip_connect_mode = $1 WHERE id = $2")
            .bind(mode.as_str())
            .bind(user.as_str())
            .execute(&self.pool)
            .await?;
        super::found(&done, "user", &user)
    }

    pub(super) async fn user_ip_connect_mode_impl(&self, user: &UserId) -> Result<IpConnectMode> {
        let row = sqlx::query("SELECT ip_connect_mode FROM users WHERE id = $1")
            .bind(user.as_str())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::not_found(format!("user `{user}` not found")))?;
        row.try_get::<String, _>("ip_connect_mode")?.parse()
    }

    pub(super) async fn setting_impl(&self, key: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT value FROM settings WHERE name = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("value")).transpose()?)
    }

    pub(super) async fn put_setting_impl(&self, key: &str, value: &str) -> Result<()> {
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

    pub(super) async fn create_web_session_impl(&self, s: &WebSession) -> Result<()> {
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

    pub(super) async fn web_session_impl(&self, id_hash: &str) -> Result<Option<WebSession>> {
        let sql = format!("SELECT {WEB_SESSION} FROM web_sessions WHERE id_hash = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(web_session).transpose()
    }

    pub(super) async fn touch_web_session_impl(&self, id_hash: &str, at: Timestamp) -> Result<()> {
        sqlx::query("UPDATE web_sessions SET last_seen = $1 WHERE id_hash = $2")
            .bind(at.millis())
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(super) async fn delete_web_session_impl(&self, id_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM web_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(super) async fn delete_user_web_sessions_impl(&self, user: &UserId) -> Result<u64> {
        let done = sqlx::query("DELETE FROM web_sessions WHERE user_id = $1")
            .bind(user.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    pub(super) async fn purge_web_sessions_impl(
        &self,
        idle_before: Timestamp,
        now: Timestamp,
    ) -> Result<u64> {
        let done = sqlx::query("DELETE FROM web_sessions WHERE last_seen < $1 OR expires_at <= $2")
            .bind(idle_before.millis())
            .bind(now.millis())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    pub(super) async fn create_api_token_impl(&self, t: &ApiToken) -> Result<()> {
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

    pub(super) async fn list_api_tokens_impl(&self, user: &UserId) -> Result<Vec<ApiToken>> {
        let sql = format!(
            "SELECT {API_TOKEN} FROM api_tokens WHERE user_id = $1 ORDER BY created_at, id"
        );
        let found = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user.as_str())
            .fetch_all(&self.pool)
            .await?;
        found.iter().map(api_token).collect()
    }

    pub(super) async fn api_token_by_hash_impl(&self, hash: &str) -> Result<Option<ApiToken>> {
        let sql = format!("SELECT {API_TOKEN} FROM api_tokens WHERE token_hash = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(api_token).transpose()
    }

    pub(super) async fn touch_api_token_impl(&self, id: &TokenId, at: Timestamp) -> Result<()> {
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
            .bind(at.millis())
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(super) async fn delete_api_token_impl(&self, id: &TokenId) -> Result<bool> {
        let done = sqlx::query("DELETE FROM api_tokens WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
