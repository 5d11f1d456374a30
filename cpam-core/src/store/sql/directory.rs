//! [`Directory`] on SQL: customers, gatekeepers and their registration
//! codes, users, keys, roles, services, grants, deletions and memberships.

use async_trait::async_trait;
use sqlx::{AssertSqlSafe, Row as _};

use super::{Conditions, Param, SqlStore, rows, write_error};
use crate::error::{Error, Result};
use crate::model::{
    CodeRefusal, Customer, CustomerId, Gatekeeper, GatekeeperId, Grant, GrantId, IpConnectMode,
    KeyId, Permission, Role, Service, ServiceId, ServiceKind, Target, Timestamp, User, UserId,
    UserKey,
};
use crate::store::{Directory, NewGrant};

#[async_trait]
impl Directory for SqlStore {
    async fn create_customer(&self, name: &str, now: Timestamp) -> Result<Customer> {
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

    async fn list_customers(&self) -> Result<Vec<Customer>> {
        let sql = format!("SELECT {} FROM customers ORDER BY name", rows::CUSTOMER);
        let found = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        found.iter().map(rows::customer).collect()
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

    async fn list_gatekeepers(&self, customer: Option<&CustomerId>) -> Result<Vec<Gatekeeper>> {
        let found = self
            .rows_of_customer(rows::GATEKEEPER, "gatekeepers", customer, "name", "name")
            .await?;
        found.iter().map(rows::gatekeeper).collect()
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
        node_id: Option<&str>,
        at: Timestamp,
    ) -> Result<()> {
        // Offline from a named node: only while that node (or none) holds
        // the link; a gatekeeper that moved to another node stays its.
        let sql = match (online, node_id) {
            (false, Some(_)) => {
                "UPDATE gatekeepers SET online = $1, customer_disabled = $2, node_id = NULL, \
                 last_contact = $4 WHERE id = $5 AND (node_id IS NULL OR node_id = $3)"
            }
            _ => {
                "UPDATE gatekeepers SET online = $1, customer_disabled = $2, node_id = $3, \
                 last_contact = $4 WHERE id = $5"
            }
        };
        let done = sqlx::query(sql)
            .bind(i64::from(online))
            .bind(i64::from(customer_disabled))
            .bind(node_id)
            .bind(at.millis())
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 && !online && self.gatekeeper(id).await?.is_some() {
            return Ok(());
        }
        super::found(&done, "gatekeeper", &id)
    }

    /// Marks offline the gatekeepers `node_id` (or an unnamed node) held
    /// online, in one statement; their last contact stays what it was.
    async fn release_node_gatekeepers(&self, node_id: &str) -> Result<Vec<Gatekeeper>> {
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

    async fn set_gatekeeper_schedule(
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

    async fn put_registration_code(
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

    async fn redeem_registration_code(
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

    async fn create_user(
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

    async fn list_users(&self) -> Result<Vec<User>> {
        let sql = format!("SELECT {} FROM users ORDER BY name", rows::USER);
        let found = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        found.iter().map(rows::user).collect()
    }

    async fn user(&self, id: &UserId) -> Result<Option<User>> {
        self.user_where("id", id.as_str()).await
    }

    async fn user_by_name(&self, name: &str) -> Result<Option<User>> {
        self.user_where("name", name).await
    }

    async fn set_password_hash(&self, id: &UserId, password_hash: Option<&str>) -> Result<()> {
        let done = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        super::found(&done, "user", &id)
    }

    async fn set_user_disabled(&self, id: &UserId, disabled: bool) -> Result<()> {
        let done = sqlx::query("UPDATE users SET disabled = $1 WHERE id = $2")
            .bind(i64::from(disabled))
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        super::found(&done, "user", &id)
    }

    async fn add_user_key(&self, key: &UserKey) -> Result<()> {
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

    async fn delete_user_key(&self, user: &UserId, id: &KeyId) -> Result<bool> {
        self.remove_user_key(user, id).await
    }

    async fn put_role(&self, role: &Role) -> Result<()> {
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

    async fn list_roles(&self) -> Result<Vec<Role>> {
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

    async fn assign_role(&self, user: &UserId, role: &str) -> Result<()> {
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

    async fn user_roles(&self, user: &UserId) -> Result<Vec<String>> {
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

    async fn user_permissions(&self, user: &UserId) -> Result<Vec<Permission>> {
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

    async fn create_service(
        &self,
        customer: &CustomerId,
        name: &str,
        kind: ServiceKind,
        target: &Target,
        now: Timestamp,
        gatekeeper: Option<&GatekeeperId>,
    ) -> Result<Service> {
        let s = Service {
            id: ServiceId::generate(),
            customer_id: customer.clone(),
            gatekeeper_id: gatekeeper.cloned(),
            name: name.to_string(),
            kind,
            target: target.clone(),
            created_at: now,
        };
        sqlx::query(
            "INSERT INTO services (id, customer_id, name, kind, target_host, target_port, created_at, gatekeeper_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(s.id.as_str())
        .bind(customer.as_str())
        .bind(name)
        .bind(kind.as_str())
        .bind(&target.host)
        .bind(i64::from(target.port))
        .bind(now.millis())
        .bind(gatekeeper.map(GatekeeperId::as_str))
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

    async fn list_services(&self, customer: Option<&CustomerId>) -> Result<Vec<Service>> {
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

    async fn service(&self, id: &ServiceId) -> Result<Option<Service>> {
        let sql = format!("SELECT {} FROM services WHERE id = $1", rows::SERVICE);
        let found = sqlx::query(AssertSqlSafe(sql))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        found.as_ref().map(rows::service).transpose()
    }

    async fn service_by_name(&self, customer: &CustomerId, name: &str) -> Result<Option<Service>> {
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

    async fn create_grant(&self, grant: &NewGrant, now: Timestamp) -> Result<Grant> {
        let g = Grant {
            id: GrantId::generate(),
            user_id: grant.user_id.clone(),
            service_id: grant.service_id.clone(),
            not_before: grant.not_before,
            not_after: grant.not_after,
            schedule: grant.schedule,
            created_at: now,
            created_by: grant.created_by.clone(),
            revoked_at: None,
        };
        sqlx::query(
            "INSERT INTO grants (id, user_id, service_id, not_before, not_after, schedule_days, \
             schedule_start_minute, schedule_end_minute, created_at, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(g.id.as_str())
        .bind(g.user_id.as_str())
        .bind(g.service_id.as_str())
        .bind(g.not_before.millis())
        .bind(g.not_after.map(Timestamp::millis))
        .bind(g.schedule.map(|s| i64::from(s.days)))
        .bind(g.schedule.map(|s| i64::from(s.start_minute)))
        .bind(g.schedule.map(|s| i64::from(s.end_minute)))
        .bind(now.millis())
        .bind(&g.created_by)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            write_error(
                e,
                || format!("grant `{}` already exists", g.id),
                || {
                    format!(
                        "user `{}` or service `{}` not found",
                        g.user_id, g.service_id
                    )
                },
            )
        })?;
        Ok(g)
    }

    async fn list_grants(&self, user: Option<&UserId>) -> Result<Vec<Grant>> {
        let mut c = Conditions::default();
        if let Some(u) = user {
            c.push("user_id = ?", Param::Text(u.to_string()));
        }
        let sql = format!(
            "SELECT {} FROM grants{} ORDER BY created_at, id",
            rows::GRANT,
            c.where_sql()
        );
        c.fetch_all(&self.pool, sql)
            .await?
            .iter()
            .map(rows::grant)
            .collect()
    }

    async fn grant(&self, id: &GrantId) -> Result<Option<Grant>> {
        let sql = format!("SELECT {} FROM grants WHERE id = $1", rows::GRANT);
        let found = sqlx::query(AssertSqlSafe(sql))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        found.as_ref().map(rows::grant).transpose()
    }

    async fn grants_for(&self, user: &UserId, service: &ServiceId) -> Result<Vec<Grant>> {
        let sql = format!(
            "SELECT {} FROM grants WHERE user_id = $1 AND service_id = $2 ORDER BY created_at, id",
            rows::GRANT
        );
        let found = sqlx::query(AssertSqlSafe(sql))
            .bind(user.as_str())
            .bind(service.as_str())
            .fetch_all(&self.pool)
            .await?;
        found.iter().map(rows::grant).collect()
    }

    /// `Ok(true)` when this call revoked the grant, `Ok(false)` when it was
    /// already revoked, `NotFound` when there is no such grant.
    async fn revoke_grant(&self, id: &GrantId, now: Timestamp) -> Result<bool> {
        let done =
            sqlx::query("UPDATE grants SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now.millis())
                .bind(id.as_str())
                .execute(&self.pool)
                .await?;
        if done.rows_affected() == 1 {
            return Ok(true);
        }
        match self.grant(id).await? {
            Some(_) => Ok(false),
            None => Err(Error::not_found(format!("grant `{id}` not found"))),
        }
    }

    async fn delete_customer(&self, id: &CustomerId) -> Result<()> {
        self.remove_customer(id).await
    }

    async fn delete_gatekeeper(&self, id: &GatekeeperId) -> Result<()> {
        self.remove_gatekeeper(id).await
    }

    async fn delete_service(&self, id: &ServiceId) -> Result<()> {
        self.remove_service(id).await
    }

    async fn set_role_permissions(&self, name: &str, permissions: &[Permission]) -> Result<()> {
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

    async fn delete_role(&self, name: &str) -> Result<()> {
        self.remove_role(name).await
    }

    async fn set_user_roles(&self, user: &UserId, roles: &[String]) -> Result<()> {
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

    async fn set_user_customers(&self, user: &UserId, customers: &[CustomerId]) -> Result<()> {
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

    async fn user_customers(&self, user: &UserId) -> Result<Vec<CustomerId>> {
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

    async fn set_user_ip_connect_mode(&self, user: &UserId, mode: IpConnectMode) -> Result<()> {
        let done = sqlx::query("UPDATE users SET ip_connect_mode = $1 WHERE id = $2")
            .bind(mode.as_str())
            .bind(user.as_str())
            .execute(&self.pool)
            .await?;
        super::found(&done, "user", &user)
    }

    async fn user_ip_connect_mode(&self, user: &UserId) -> Result<IpConnectMode> {
        let row = sqlx::query("SELECT ip_connect_mode FROM users WHERE id = $1")
            .bind(user.as_str())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::not_found(format!("user `{user}` not found")))?;
        row.try_get::<String, _>("ip_connect_mode")?.parse()
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
