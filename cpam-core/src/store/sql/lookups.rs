//! Lookups shared by several [`Directory`](crate::store::Directory) methods.

use sqlx::AssertSqlSafe;

use super::{SqlStore, rows};
use crate::error::{Error, Result};
use crate::model::{Customer, CustomerId, Gatekeeper, User, UserId, UserKey};

impl SqlStore {
    /// The one row of `table` whose `column` equals `value`, mapped by `map`.
    pub(super) async fn one_where<T>(
        &self,
        cols: &str,
        table: &str,
        column: &'static str,
        value: &str,
        map: fn(&sqlx::any::AnyRow) -> Result<T>,
    ) -> Result<Option<T>> {
        let sql = format!("SELECT {cols} FROM {table} WHERE {column} = $1");
        let found = sqlx::query(AssertSqlSafe(sql))
            .bind(value)
            .fetch_optional(&self.pool)
            .await?;
        found.as_ref().map(map).transpose()
    }

    pub(super) async fn customer_where(
        &self,
        column: &'static str,
        value: &str,
    ) -> Result<Option<Customer>> {
        self.one_where(rows::CUSTOMER, "customers", column, value, rows::customer)
            .await
    }

    /// `SELECT cols FROM table`, of one customer (ordered by `order_one`) or
    /// of all (ordered by `order_all`).
    pub(super) async fn rows_of_customer(
        &self,
        cols: &str,
        table: &str,
        customer: Option<&CustomerId>,
        order_one: &str,
        order_all: &str,
    ) -> Result<Vec<sqlx::any::AnyRow>> {
        Ok(match customer {
            Some(c) => {
                let sql = format!(
                    "SELECT {cols} FROM {table} WHERE customer_id = $1 ORDER BY {order_one}"
                );
                sqlx::query(AssertSqlSafe(sql))
                    .bind(c.as_str())
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                let sql = format!("SELECT {cols} FROM {table} ORDER BY {order_all}");
                sqlx::query(AssertSqlSafe(sql))
                    .fetch_all(&self.pool)
                    .await?
            }
        })
    }

    pub(super) async fn gatekeeper_where(
        &self,
        column: &'static str,
        value: &str,
    ) -> Result<Option<Gatekeeper>> {
        self.one_where(
            rows::GATEKEEPER,
            "gatekeepers",
            column,
            value,
            rows::gatekeeper,
        )
        .await
    }

    pub(super) async fn user_where(
        &self,
        column: &'static str,
        value: &str,
    ) -> Result<Option<User>> {
        self.one_where(rows::USER, "users", column, value, rows::user)
            .await
    }

    pub(super) async fn user_keys_where(
        &self,
        column: &'static str,
        value: &str,
    ) -> Result<Vec<UserKey>> {
        let sql = format!(
            "SELECT {} FROM user_keys WHERE {column} = $1 ORDER BY created_at, id",
            rows::USER_KEY
        );
        let found = sqlx::query(AssertSqlSafe(sql))
            .bind(value)
            .fetch_all(&self.pool)
            .await?;
        found.iter().map(rows::user_key).collect()
    }

    pub(super) async fn require_user(
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
}
