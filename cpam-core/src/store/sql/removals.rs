//! Deletions of directory objects with what depends on them, each in one
//! transaction.

use super::SqlStore;
use sqlx::Row as _;

use crate::error::{Error, Result};
use crate::model::{CustomerId, GatekeeperId, KeyId, ServiceId, UserId};

impl SqlStore {
    pub(super) async fn remove_customer(&self, id: &CustomerId) -> Result<()> {
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

    /// The gatekeeper, its unused registration codes and the profile keys
    /// bound to it; its sessions stay in the history.
    pub(super) async fn remove_gatekeeper(&self, id: &GatekeeperId) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for sql in [
            "DELETE FROM registration_codes WHERE gatekeeper_id = $1",
            "DELETE FROM user_keys WHERE gatekeeper_id = $1",
        ] {
            sqlx::query(sql).bind(id.as_str()).execute(&mut *tx).await?;
        }
        let done = sqlx::query("DELETE FROM gatekeepers WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        super::found(&done, "gatekeeper", &id)?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn remove_service(&self, id: &ServiceId) -> Result<()> {
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

    pub(super) async fn remove_user_key(&self, user: &UserId, id: &KeyId) -> Result<bool> {
        let done = sqlx::query("DELETE FROM user_keys WHERE id = $1 AND user_id = $2")
            .bind(id.as_str())
            .bind(user.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub(super) async fn remove_role(&self, name: &str) -> Result<()> {
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
}
