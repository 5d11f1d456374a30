//! [`VaultStore`] on SQL: wrapped data keys, encrypted credentials,
//! checkouts, checkout limits and master password hashes.

use async_trait::async_trait;
use sqlx::Row as _;
use sqlx::any::AnyRow;

use super::{Conditions, Param, SqlStore, found, write_error};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{
    Checkout, CheckoutEnd, CheckoutId, CustomerId, ServiceId, StoredCredential, Timestamp, UserId,
    VaultKeyRecord,
};
use crate::store::{CheckoutFilter, VaultStore};

const VAULT_KEY: &str = "version, kek, salt, wrapped, created_at, retired_at";
const CREDENTIAL: &str =
    "service_id, username, kind, key_version, ciphertext, updated_at, updated_by";
const CHECKOUT: &str = "id, user_id, user_name, customer_id, service_id, service_name, \
     started_at, expires_at, ended_at, end_reason, ended_by";

fn corrupt(what: &str, detail: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Storage,
        format!("stored {what} is invalid: {detail}"),
    )
}

fn vault_key(row: &AnyRow) -> Result<VaultKeyRecord> {
    Ok(VaultKeyRecord {
        version: row.try_get("version")?,
        kek: row.try_get("kek")?,
        salt: row.try_get("salt")?,
        wrapped: row.try_get("wrapped")?,
        created_at: Timestamp(row.try_get("created_at")?),
        retired_at: row.try_get::<Option<i64>, _>("retired_at")?.map(Timestamp),
    })
}

fn credential(row: &AnyRow) -> Result<StoredCredential> {
    let kind: String = row.try_get("kind")?;
    Ok(StoredCredential {
        service_id: ServiceId(row.try_get("service_id")?),
        username: row.try_get("username")?,
        kind: kind
            .parse()
            .map_err(|_| corrupt("credential kind", &kind))?,
        key_version: row.try_get("key_version")?,
        ciphertext: row.try_get("ciphertext")?,
        updated_at: Timestamp(row.try_get("updated_at")?),
        updated_by: row.try_get("updated_by")?,
    })
}

fn checkout(row: &AnyRow) -> Result<Checkout> {
    let end: Option<String> = row.try_get("end_reason")?;
    let end_reason = end
        .map(|e| {
            e.parse::<CheckoutEnd>()
                .map_err(|_| corrupt("checkout end", &e))
        })
        .transpose()?;
    Ok(Checkout {
        id: CheckoutId(row.try_get("id")?),
        user_id: UserId(row.try_get("user_id")?),
        user_name: row.try_get("user_name")?,
        customer_id: CustomerId(row.try_get("customer_id")?),
        service_id: ServiceId(row.try_get("service_id")?),
        service_name: row.try_get("service_name")?,
        started_at: Timestamp(row.try_get("started_at")?),
        expires_at: Timestamp(row.try_get("expires_at")?),
        ended_at: row.try_get::<Option<i64>, _>("ended_at")?.map(Timestamp),
        end_reason,
        ended_by: row.try_get("ended_by")?,
    })
}

#[async_trait]
impl VaultStore for SqlStore {
    async fn vault_keys(&self) -> Result<Vec<VaultKeyRecord>> {
        let sql = format!("SELECT {VAULT_KEY} FROM vault_keys ORDER BY version");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(vault_key).collect()
    }

    async fn insert_vault_key(&self, k: &VaultKeyRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO vault_keys (version, kek, salt, wrapped, created_at, retired_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(k.version)
        .bind(&k.kek)
        .bind(k.salt.as_deref())
        .bind(k.wrapped.as_deref())
        .bind(k.created_at.millis())
        .bind(k.retired_at.map(Timestamp::millis))
        .execute(&self.pool)
        .await
        .map_err(|e| {
            write_error(
                e,
                || format!("vault key version {} already exists", k.version),
                || format!("vault key version {}", k.version),
            )
        })?;
        Ok(())
    }

    async fn retire_vault_key(&self, version: i64, at: Timestamp) -> Result<()> {
        let done = sqlx::query(
            "UPDATE vault_keys SET wrapped = NULL, retired_at = COALESCE(retired_at, $1) \
             WHERE version = $2 AND NOT EXISTS \
             (SELECT 1 FROM vault_credentials WHERE key_version = $3)",
        )
        .bind(at.millis())
        .bind(version)
        .bind(version)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() > 0 {
            return Ok(());
        }
        let exists = sqlx::query("SELECT version FROM vault_keys WHERE version = $1")
            .bind(version)
            .fetch_optional(&self.pool)
            .await?;
        match exists {
            None => Err(Error::not_found(format!(
                "vault key version {version} not found"
            ))),
            Some(_) => Err(Error::conflict(format!(
                "vault key version {version} still encrypts credentials"
            ))),
        }
    }

    async fn put_credential(&self, c: &StoredCredential) -> Result<()> {
        sqlx::query(
            "INSERT INTO vault_credentials \
             (service_id, username, kind, key_version, ciphertext, updated_at, updated_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (service_id) DO UPDATE SET username = excluded.username, \
             kind = excluded.kind, key_version = excluded.key_version, \
             ciphertext = excluded.ciphertext, updated_at = excluded.updated_at, \
             updated_by = excluded.updated_by",
        )
        .bind(c.service_id.as_str())
        .bind(&c.username)
        .bind(c.kind.as_str())
        .bind(c.key_version)
        .bind(&c.ciphertext)
        .bind(c.updated_at.millis())
        .bind(&c.updated_by)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            write_error(
                e,
                || format!("credential of service `{}` already exists", c.service_id),
                || {
                    format!(
                        "service `{}` or vault key version {} not found",
                        c.service_id, c.key_version
                    )
                },
            )
        })?;
        Ok(())
    }

    async fn credential(&self, service: &ServiceId) -> Result<Option<StoredCredential>> {
        let sql = format!("SELECT {CREDENTIAL} FROM vault_credentials WHERE service_id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(service.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(credential).transpose()
    }

    async fn list_credentials(&self) -> Result<Vec<StoredCredential>> {
        let sql = format!("SELECT {CREDENTIAL} FROM vault_credentials ORDER BY service_id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(credential).collect()
    }

    async fn reencrypt_credential(
        &self,
        service: &ServiceId,
        from_version: i64,
        old_ciphertext: &str,
        to_version: i64,
        new_ciphertext: &str,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE vault_credentials SET key_version = $1, ciphertext = $2 \
             WHERE service_id = $3 AND key_version = $4 AND ciphertext = $5",
        )
        .bind(to_version)
        .bind(new_ciphertext)
        .bind(service.as_str())
        .bind(from_version)
        .bind(old_ciphertext)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            write_error(
                e,
                || format!("credential of service `{service}` already exists"),
                || format!("vault key version {to_version} not found"),
            )
        })?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_credential(&self, service: &ServiceId) -> Result<bool> {
        let done = sqlx::query("DELETE FROM vault_credentials WHERE service_id = $1")
            .bind(service.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn checkout_limit(&self, service: &ServiceId) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT max_secs FROM checkout_limits WHERE service_id = $1")
            .bind(service.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("max_secs")).transpose()?)
    }

    async fn set_checkout_limit(&self, service: &ServiceId, max_secs: Option<i64>) -> Result<()> {
        match max_secs {
            None => {
                sqlx::query("DELETE FROM checkout_limits WHERE service_id = $1")
                    .bind(service.as_str())
                    .execute(&self.pool)
                    .await?;
            }
            Some(secs) => {
                sqlx::query(
                    "INSERT INTO checkout_limits (service_id, max_secs) VALUES ($1, $2) \
                     ON CONFLICT (service_id) DO UPDATE SET max_secs = excluded.max_secs",
                )
                .bind(service.as_str())
                .bind(secs)
                .execute(&self.pool)
                .await
                .map_err(|e| {
                    write_error(
                        e,
                        || format!("checkout limit of `{service}` already exists"),
                        || format!("service `{service}` not found"),
                    )
                })?;
            }
        }
        Ok(())
    }

    async fn insert_checkout(&self, c: &Checkout) -> Result<()> {
        sqlx::query(
            "INSERT INTO checkouts (id, user_id, user_name, customer_id, service_id, service_name, \
             started_at, expires_at, ended_at, end_reason, ended_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(c.id.as_str())
        .bind(c.user_id.as_str())
        .bind(&c.user_name)
        .bind(c.customer_id.as_str())
        .bind(c.service_id.as_str())
        .bind(&c.service_name)
        .bind(c.started_at.millis())
        .bind(c.expires_at.millis())
        .bind(c.ended_at.map(Timestamp::millis))
        .bind(c.end_reason.map(CheckoutEnd::as_str))
        .bind(c.ended_by.as_deref())
        .execute(&self.pool)
        .await
        .map_err(|e| {
            write_error(
                e,
                || format!("checkout `{}` already exists", c.id),
                || format!("checkout `{}`", c.id),
            )
        })?;
        Ok(())
    }

    async fn checkout(&self, id: &CheckoutId) -> Result<Option<Checkout>> {
        let sql = format!("SELECT {CHECKOUT} FROM checkouts WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(checkout).transpose()
    }

    async fn list_checkouts(&self, filter: &CheckoutFilter) -> Result<Vec<Checkout>> {
        let mut c = Conditions::default();
        if let Some(u) = &filter.user_id {
            c.push("user_id = ?", Param::Text(u.0.clone()));
        }
        if let Some(s) = &filter.service_id {
            c.push("service_id = ?", Param::Text(s.0.clone()));
        }
        if let Some(at) = filter.active_at {
            c.push_plain("ended_at IS NULL");
            c.push("expires_at > ?", Param::Int(at.millis()));
        }
        let where_sql = c.where_sql();
        let limit = c.limit(filter.limit);
        let sql = format!(
            "SELECT {CHECKOUT} FROM checkouts{where_sql} ORDER BY started_at DESC, id{limit}"
        );
        let rows = c.fetch_all(&self.pool, sql).await?;
        rows.iter().map(checkout).collect()
    }

    async fn end_checkout(
        &self,
        id: &CheckoutId,
        at: Timestamp,
        reason: CheckoutEnd,
        by: &str,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE checkouts SET ended_at = $1, end_reason = $2, ended_by = $3 \
             WHERE id = $4 AND ended_at IS NULL",
        )
        .bind(at.millis())
        .bind(reason.as_str())
        .bind(by)
        .bind(id.as_str())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() > 0 {
            return Ok(true);
        }
        match self.checkout(id).await? {
            Some(_) => Ok(false),
            None => Err(Error::not_found(format!("checkout `{id}` not found"))),
        }
    }

    async fn master_password_hash(&self, user: &UserId) -> Result<Option<String>> {
        let row = sqlx::query("SELECT hash FROM master_passwords WHERE user_id = $1")
            .bind(user.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("hash")).transpose()?)
    }

    async fn set_master_password_hash(
        &self,
        user: &UserId,
        hash: Option<&str>,
        at: Timestamp,
    ) -> Result<()> {
        let exists = sqlx::query("SELECT id FROM users WHERE id = $1")
            .bind(user.as_str())
            .fetch_optional(&self.pool)
            .await?;
        if exists.is_none() {
            return Err(Error::not_found(format!("user `{user}` not found")));
        }
        let done = match hash {
            None => {
                sqlx::query("DELETE FROM master_passwords WHERE user_id = $1")
                    .bind(user.as_str())
                    .execute(&self.pool)
                    .await?
            }
            Some(hash) => sqlx::query(
                "INSERT INTO master_passwords (user_id, hash, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (user_id) DO UPDATE SET hash = excluded.hash, \
                 updated_at = excluded.updated_at",
            )
            .bind(user.as_str())
            .bind(hash)
            .bind(at.millis())
            .execute(&self.pool)
            .await
            .map_err(|e| {
                write_error(
                    e,
                    || format!("master password of `{user}` already exists"),
                    || format!("user `{user}` not found"),
                )
            })?,
        };
        if hash.is_some() {
            found(&done, "user", user)?;
        }
        Ok(())
    }
}
