//! Customers, gatekeepers and their registration codes, users, keys, roles
//! and services.

use sqlx::{AssertSqlSafe, Row as _};

use super::{SqlStore, rows, write_error};
use crate::error::{Error, Result};
use crate::model::{
    CodeRefusal, Customer, CustomerId, Gatekeeper, GatekeeperId, Permission, Role, Service,
    ServiceId, ServiceKind, Target, Timestamp, User, UserId, UserKey,
};

impl SqlStore {
    pub(super) async fn create_customer_impl(
        &self,
        name: &str,
        now: Timestamp,
    ) -> Result<Customer> {
        let c = Customer {
            id: CustomerId::generate(),
            name: name.to_string(),
            created_at: now,
        };
        sqlx::query("INSERT INTO customers (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(c.id.as_str())
            .bind(&c.name)
            .bind(now.millis())
            .execute(&self.pool)
            .await
            .map_err(|e| {
                write_error(
                    e,
                    || format!("customer `{name}` already exists"),
                    String::new,
                )
            })?;
        Ok(c)
    }

    pub(super) async fn list_customers_impl(&self) -> Result<Vec<Customer>> {
        let sql = format!("SELECT {} FROM customers ORDER BY name", rows::CUSTOMER);
        let found = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        found.iter().map(rows::customer).collect()
    }

    /// The one row of `table` whose `column` equals `value`, mapped by `map`.
    async fn one_where<T>(
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

    pub(super) async fn create_gatekeeper_impl(
        &self,
        customer: &CustomerId,
        name: &str,
        now: Timestamp,
    ) -> Result<Gatekeeper> {
        let g = Gatekeeper {
            id: GatekeeperId::generate(),
            customer_id: customer.clone(),
            name: name.to_string(),
            public_key: None,
            fingerprint: None,
            registered_at: None,
            created_at: now,
            last_contact: None,
            online: false,
            customer_disabled: false,
            customer_schedule: None,
            node_id: None,
        };
        sqlx::query(
            "INSERT INTO gatekeepers (id, customer_id, name, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(g.id.as_str())
        .bind(customer.as_str())
        .bind(name)
        .bind(now.millis())
        .execute(&self.pool)
        .await
        .map_err(|e| {
            write_error(
                e,
                || format!("gatekeeper `{name}` already exists"),
                || format!("customer `{customer}` not found"),
            )
        })?;
        Ok(g)
    }

    /// `SELECT cols FROM table`, of one customer (ordered by `order_one`) or
    /// of all (ordered by `order_all`).
    async fn rows_of_customer(
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

    pub(super) async fn list_gatekeepers_impl(
        &self,
        customer: Option<&CustomerId>,
    ) -> Result<Vec<Gatekeeper>> {
        let found = self
            .rows_of_customer(rows::GATEKEEPER, "gatekeepers", customer, "name", "name")
            .await?;
        found.iter().map(rows::gatekeeper).collect()
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

    pub(super) async fn set_gatekeeper_schedule_impl(
        &self,
        id: &GatekeeperId,
        schedule: Option<&str>,
    ) -> Result<()> {
        let done = sqlx::query("UPDATE gatekeepers SET customer_schedule = $1 WHERE id = $2")
            .bind(schedule)
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        super::found(&done, "gatekeeper", &id)
    }

    pub(super) async fn set_gatekeeper_state_impl(
        &self,
        id: &GatekeeperId,
        online: bool,
        customer_disabled: bool,
        node_id: Option<&str>,
        at: Timestamp,
    ) -> Result<()> {
        let done = sqlx::query(
            "UPDATE gatekeepers SET online = $1, customer_disabled = $2, node_id = $3, \
             last_contact = $4 WHERE id = $5",
        )
        .bind(i64::from(online))
        .bind(i64::from(customer_disabled))
        .bind(if online { node_id } else { None })
        .bind(at.millis())
        .bind(id.as_str())
        .execute(&self.pool)
        .await?;
        super::found(&done, "gatekeeper", &id)
    }

    /// Marks offline the gatekeepers `node_id` (or an unnamed node) held
    /// online, in one statement; their last contact stays what it was.
    pub(super) async fn release_node_gatekeepers_impl(
        &self,
        node_id: &str,
    ) -> Result<Vec<Gatekeeper>> {
        let sql = format!(
            "UPDATE gatekeepers SET online = 0, node_id = NULL \
             WHERE online = 1 AND (node_id = $1 OR node_id IS NULL) RETURNING {}",
            rows::GATEKEEPER
        );
        let released = sqlx::query(AssertSqlSafe(sql))
            .bind(node_id)
            .fetch_all(&self.pool)
            .await?;
        let mut released = released
            .iter()
            .map(rows::gatekeeper)
            .collect::<Result<Vec<_>>>()?;
        released.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(released)
    }

    pub(super) async fn put_registration_code_impl(
        &self,
        id: &GatekeeperId,
        code_hash: &str,
        expires_at: Timestamp,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM registration_codes WHERE gatekeeper_id = $1 AND used_at IS NULL")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO registration_codes (code_hash, gatekeeper_id, expires_at) VALUES ($1, $2, $3)")
            .bind(code_hash)
            .bind(id.as_str())
            .bind(expires_at.millis())
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                write_error(
                    e,
                    || "registration code already exists".to_string(),
                    || format!("gatekeeper `{id}` not found"),
                )
            })?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn redeem_registration_code_impl(
        &self,
        code_hash: &str,
        public_key: &str,
        fingerprint: &str,
        now: Timestamp,
    ) -> Result<std::result::Result<Gatekeeper, CodeRefusal>> {
        let mut tx = self.begin_write().await?;
        // The conditional update is the claim: of concurrent redeemers, exactly
        // one sees a row affected (PostgreSQL re-checks the condition after the
        // row lock, SQLite runs one writer at a time).
        let claimed = sqlx::query(
            "UPDATE registration_codes SET used_at = $1 \
             WHERE code_hash = $2 AND used_at IS NULL AND expires_at > $1",
        )
        .bind(now.millis())
        .bind(code_hash)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(
            "SELECT gatekeeper_id, used_at FROM registration_codes WHERE code_hash = $1",
        )
        .bind(code_hash)
        .fetch_optional(&mut *tx)
        .await?;
        if claimed.rows_affected() != 1 {
            tx.rollback().await?;
            let refusal = match row {
                None => CodeRefusal::Unknown,
                Some(r) if r.try_get::<Option<i64>, _>("used_at")?.is_some() => {
                    CodeRefusal::AlreadyUsed
                }
                Some(_) => CodeRefusal::Expired,
            };
            return Ok(Err(refusal));
        }
        let gatekeeper_id: String = match row {
            Some(r) => r.try_get("gatekeeper_id")?,
            None => return Err(Error::internal("claimed registration code vanished")),
        };
        sqlx::query("UPDATE gatekeepers SET public_key = $1, fingerprint = $2, registered_at = $3 WHERE id = $4")
            .bind(public_key)
            .bind(fingerprint)
            .bind(now.millis())
            .bind(&gatekeeper_id)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                write_error(
                    e,
                    || format!("key `{fingerprint}` is already enrolled"),
                    || format!("gatekeeper `{gatekeeper_id}` not found"),
                )
            })?;
        let sql = format!("SELECT {} FROM gatekeepers WHERE id = $1", rows::GATEKEEPER);
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(&gatekeeper_id)
            .fetch_one(&mut *tx)
            .await?;
        let gatekeeper = rows::gatekeeper(&row)?;
        tx.commit().await?;
        Ok(Ok(gatekeeper))
    }

    pub(super) async fn create_user_impl(
        &self,
        name: &str,
        password_hash: Option<&str>,
        now: Timestamp,
    ) -> Result<User> {
        let u = User {
            id: UserId::generate(),
            name: name.to_string(),
            password_hash: password_hash.map(str::to_string),
            disabled: false,
            created_at: now,
        };
        sqlx::query("INSERT INTO users (id, name, password_hash, disabled, created_at) VALUES ($1, $2, $3, 0, $4)")
            .bind(u.id.as_str())
            .bind(name)
            .bind(password_hash)
            .bind(now.millis())
            .execute(&self.pool)
            .await
            .map_err(|e| write_error(e, || format!("user `{name}` already exists"), String::new))?;
        Ok(u)
    }

    pub(super) async fn list_users_impl(&self) -> Result<Vec<User>> {
        let sql = format!("SELECT {} FROM users ORDER BY name", rows::USER);
        let found = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        found.iter().map(rows::user).collect()
    }

    pub(super) async fn user_where(
        &self,
        column: &'static str,
        value: &str,
    ) -> Result<Option<User>> {
        self.one_where(rows::USER, "users", column, value, rows::user)
            .await
    }

    pub(super) async fn set_password_hash_impl(
        &self,
        id: &UserId,
        password_hash: Option<&str>,
    ) -> Result<()> {
        let done = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        super::found(&done, "user", &id)
    }

    pub(super) async fn set_user_disabled_impl(&self, id: &UserId, disabled: bool) -> Result<()> {
        let done = sqlx::query("UPDATE users SET disabled = $1 WHERE id = $2")
            .bind(i64::from(disabled))
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        super::found(&done, "user", &id)
    }

    pub(super) async fn add_user_key_impl(&self, key: &UserKey) -> Result<()> {
        sqlx::query(
            "INSERT INTO user_keys (id, user_id, public_key, fingerprint, label, gatekeeper_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(key.id.as_str())
        .bind(key.user_id.as_str())
        .bind(&key.public_key)
        .bind(&key.fingerprint)
        .bind(&key.label)
        .bind(key.gatekeeper_id.as_ref().map(|g| g.as_str()))
        .bind(key.created_at.millis())
        .execute(&self.pool)
        .await
        .map_err(|e| {
            write_error(
                e,
                || format!("key `{}` already exists", key.fingerprint),
                || format!("user `{}` or gatekeeper not found", key.user_id),
            )
        })?;
        Ok(())
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

    pub(super) async fn put_role_impl(&self, role: &Role) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let existing = sqlx::query("SELECT builtin FROM roles WHERE name = $1")
            .bind(&role.name)
            .fetch_optional(&mut *tx)
            .await?;
        match existing {
            Some(r) if r.try_get::<i64, _>("builtin")? != 0 => {
                return Err(Error::invalid(format!(
                    "role `{}` is built in and cannot be replaced",
                    role.name
                )));
            }
            Some(_) => {
                sqlx::query("UPDATE roles SET builtin = $1 WHERE name = $2")
                    .bind(i64::from(role.builtin))
                    .bind(&role.name)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM role_permissions WHERE role_name = $1")
                    .bind(&role.name)
                    .execute(&mut *tx)
                    .await?;
            }
            None => {
                sqlx::query("INSERT INTO roles (name, builtin) VALUES ($1, $2)")
                    .bind(&role.name)
                    .bind(i64::from(role.builtin))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| {
                        write_error(
                            e,
                            || format!("role `{}` already exists", role.name),
                            String::new,
                        )
                    })?;
            }
        }
        let mut permissions = role.permissions.clone();
        permissions.sort();
        permissions.dedup();
        for p in permissions {
            sqlx::query("INSERT INTO role_permissions (role_name, permission) VALUES ($1, $2)")
                .bind(&role.name)
                .bind(p.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn list_roles_impl(&self) -> Result<Vec<Role>> {
        let roles = sqlx::query("SELECT name, builtin FROM roles ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        let perms = sqlx::query("SELECT role_name, permission FROM role_permissions")
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(roles.len());
        for r in &roles {
            let name: String = r.try_get("name")?;
            let mut permissions = Vec::new();
            for p in &perms {
                if p.try_get::<String, _>("role_name")? == name {
                    push_permission(&mut permissions, &p.try_get::<String, _>("permission")?);
                }
            }
            permissions.sort();
            out.push(Role {
                name,
                permissions,
                builtin: r.try_get::<i64, _>("builtin")? != 0,
            });
        }
        Ok(out)
    }

    pub(super) async fn assign_role_impl(&self, user: &UserId, role: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO user_roles (user_id, role_name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(user.as_str())
        .bind(role)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            write_error(e, String::new, || {
                format!("user `{user}` or role `{role}` not found")
            })
        })?;
        Ok(())
    }

    pub(super) async fn user_roles_impl(&self, user: &UserId) -> Result<Vec<String>> {
        let found =
            sqlx::query("SELECT role_name FROM user_roles WHERE user_id = $1 ORDER BY role_name")
                .bind(user.as_str())
                .fetch_all(&self.pool)
                .await?;
        Ok(found
            .iter()
            .map(|r| r.try_get::<String, _>("role_name"))
            .collect::<std::result::Result<_, _>>()?)
    }

    pub(super) async fn user_permissions_impl(&self, user: &UserId) -> Result<Vec<Permission>> {
        let found = sqlx::query(
            "SELECT DISTINCT p.permission FROM role_permissions p \
             JOIN user_roles u ON u.role_name = p.role_name WHERE u.user_id = $1",
        )
        .bind(user.as_str())
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for r in &found {
            push_permission(&mut out, &r.try_get::<String, _>("permission")?);
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    pub(super) async fn create_service_impl(
        &self,
        customer: &CustomerId,
        name: &str,
        kind: ServiceKind,
        target: &Target,
        now: Timestamp,
    ) -> Result<Service> {
        let s = Service {
            id: ServiceId::generate(),
            customer_id: customer.clone(),
            name: name.to_string(),
            kind,
            target: target.clone(),
            created_at: now,
        };
        sqlx::query(
            "INSERT INTO services (id, customer_id, name, kind, target_host, target_port, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(s.id.as_str())
        .bind(customer.as_str())
        .bind(name)
        .bind(kind.as_str())
        .bind(&target.host)
        .bind(i64::from(target.port))
        .bind(now.millis())
        .execute(&self.pool)
        .await
        .map_err(|e| {
            write_error(
                e,
                || format!("service `{name}` already exists for customer `{customer}`"),
                || format!("customer `{customer}` not found"),
            )
        })?;
        Ok(s)
    }

    pub(super) async fn list_services_impl(
        &self,
        customer: Option<&CustomerId>,
    ) -> Result<Vec<Service>> {
        let found = self
            .rows_of_customer(
                rows::SERVICE,
                "services",
                customer,
                "name, id",
                "customer_id, name",
            )
            .await?;
        found.iter().map(rows::service).collect()
    }

    pub(super) async fn service_impl(&self, id: &ServiceId) -> Result<Option<Service>> {
        let sql = format!("SELECT {} FROM services WHERE id = $1", rows::SERVICE);
        let found = sqlx::query(AssertSqlSafe(sql))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        found.as_ref().map(rows::service).transpose()
    }

    pub(super) async fn service_by_name_impl(
        &self,
        customer: &CustomerId,
        name: &str,
    ) -> Result<Option<Service>> {
        let sql = format!(
            "SELECT {} FROM services WHERE customer_id = $1 AND name = $2",
            rows::SERVICE
        );
        let found = sqlx::query(AssertSqlSafe(sql))
            .bind(customer.as_str())
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        found.as_ref().map(rows::service).transpose()
    }
}

/// Adds a stored permission name; names this version does not know (written
/// by a newer one) are skipped.
fn push_permission(out: &mut Vec<Permission>, name: &str) {
    match name.parse() {
        Ok(p) => out.push(p),
        Err(_) => tracing::warn!(permission = name, "skipping unknown stored permission"),
    }
}
