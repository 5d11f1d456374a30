//! The console's operations, by object rather than by name; each one audited.
//! Callers resolve objects through [`crate::access`] first, so a foreign
//! object never reaches these.

use std::time::Duration;

use serde_json::json;

use super::{Admin, IssuedCode};
use crate::access::{IP_CONNECT_MODE_SETTING, token_hash};
use crate::error::{Error, Result};
use crate::model::{
    ApiToken, Customer, CustomerId, Gatekeeper, Grant, IpConnectMode, Permission, Role, Schedule,
    Service, Session, Timestamp, TokenId, User, UserKey, validate_name,
};
use crate::secret::Secret;
use crate::session::SessionEngine;
use crate::store::{NewGrant, Store};

/// The server-wide IP Connect mode when none was set.
pub const DEFAULT_IP_CONNECT_MODE: IpConnectMode = IpConnectMode::DriverWithLegacyFallback;

/// The server-wide IP Connect mode as stored (the default when never set).
pub async fn server_ip_connect_mode(store: &dyn Store) -> Result<IpConnectMode> {
    match store.setting(IP_CONNECT_MODE_SETTING).await? {
        Some(v) => v.parse(),
        None => Ok(DEFAULT_IP_CONNECT_MODE),
    }
}

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub name: String,
    pub password: Option<Secret<String>>,
    pub roles: Vec<String>,
    pub customers: Vec<CustomerId>,
    pub ip_connect_mode: IpConnectMode,
}

/// Changes to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserUpdate {
    pub disabled: Option<bool>,
    pub roles: Option<Vec<String>>,
    pub customers: Option<Vec<CustomerId>>,
    pub ip_connect_mode: Option<IpConnectMode>,
    pub password: Option<Secret<String>>,
}

impl Admin {
    pub(super) async fn customer_of(&self, id: &CustomerId) -> Result<Customer> {
        self.store
            .customer(id)
            .await?
            .ok_or_else(|| Error::not_found(format!("no customer `{id}`")))
    }

    async fn check_roles(&self, roles: &[String]) -> Result<()> {
        let known = self.store.list_roles().await?;
        match roles.iter().find(|r| !known.iter().any(|k| &k.name == *r)) {
            Some(r) => Err(Error::not_found(format!("no role `{r}`"))),
            None => Ok(()),
        }
    }

    async fn check_customers(&self, customers: &[CustomerId]) -> Result<()> {
        for c in customers {
            self.customer_of(c).await?;
        }
        Ok(())
    }

    /// Creates a gatekeeper of `customer` without a registration code yet.
    pub async fn create_gatekeeper(&self, customer: &Customer, name: &str) -> Result<Gatekeeper> {
        validate_name("gatekeeper", name)?;
        let gk = self
            .store
            .create_gatekeeper(&customer.id, name, Timestamp::now())
            .await?;
        self.record(
            "admin.gatekeeper.add",
            Some(customer),
            json!({ "gatekeeper": name, "id": gk.id }),
        )
        .await?;
        Ok(gk)
    }

    /// A new one-time code for `gk`; the previous unused one stops working.
    pub async fn issue_gatekeeper_code(
        &self,
        gk: &Gatekeeper,
        ttl: Duration,
    ) -> Result<IssuedCode> {
        let c = self.customer_of(&gk.customer_id).await?;
        self.issue_code_for(&c, gk, ttl).await
    }

    /// Deletes `customer` with its gatekeepers, services and grants.
    pub async fn delete_customer(&self, customer: &Customer) -> Result<()> {
        self.store.delete_customer(&customer.id).await?;
        self.record(
            "admin.customer.delete",
            Some(customer),
            json!({ "customer": customer.name }),
        )
        .await
    }

    /// Deletes gatekeeper `gk` with its registration codes and the profile
    /// keys bound to it. The caller revokes its link, the connections of
    /// those keys and its live sessions
    /// ([`Revocation::gatekeeper`](crate::events::Revocation::gatekeeper)).
    pub async fn delete_gatekeeper(&self, gk: &Gatekeeper) -> Result<()> {
        let c = self.customer_of(&gk.customer_id).await?;
        self.store.delete_gatekeeper(&gk.id).await?;
        self.record(
            "admin.gatekeeper.delete",
            Some(&c),
            json!({ "gatekeeper": gk.name, "id": gk.id }),
        )
        .await
    }

    /// Deletes `service` and its grants.
    pub async fn delete_service(&self, service: &Service) -> Result<()> {
        let c = self.customer_of(&service.customer_id).await?;
        self.store.delete_service(&service.id).await?;
        self.record(
            "admin.service.delete",
            Some(&c),
            json!({ "service": service.name, "id": service.id }),
        )
        .await
    }

    /// Creates a user with roles, customer memberships and an IP Connect mode.
    pub async fn create_user(&self, new: NewUser) -> Result<User> {
        validate_name("user", &new.name)?;
        self.check_roles(&new.roles).await?;
        self.check_customers(&new.customers).await?;
        self.cap_roles(None, &new.roles).await?;
        self.cap_customers(None, &new.customers).await?;
        let hash = match new.password {
            Some(p) if p.expose().is_empty() => return Err(Error::invalid("password is empty")),
            Some(p) => Some(crate::password::hash(p).await?),
            None => None,
        };
        let user = self
            .store
            .create_user(&new.name, hash.as_deref(), Timestamp::now())
            .await?;
        self.store.set_user_roles(&user.id, &new.roles).await?;
        self.store
            .set_user_customers(&user.id, &new.customers)
            .await?;
        self.store
            .set_user_ip_connect_mode(&user.id, new.ip_connect_mode)
            .await?;
        self.record(
            "admin.user.add",
            None,
            json!({
                "user": new.name,
                "roles": new.roles,
                "customers": new.customers,
                "ip_connect_mode": new.ip_connect_mode,
                "password": hash.is_some(),
            }),
        )
        .await?;
        Ok(user)
    }

    /// Applies `update` to `user`. Disabling a user or changing a password
    /// ends the user's console sessions; disabling also deletes their API
    /// tokens (the caller revokes their SSH connections and live sessions:
    /// [`crate::session::SessionEngine::revoke`]).
    pub async fn update_user(&self, user: &User, update: UserUpdate) -> Result<User> {
        self.cap_account(user).await?;
        if let Some(roles) = &update.roles {
            self.check_roles(roles).await?;
            self.cap_roles(Some(user), roles).await?;
        }
        if let Some(customers) = &update.customers {
            self.check_customers(customers).await?;
            self.cap_customers(Some(user), customers).await?;
        }
        let hash = match &update.password {
            Some(p) if p.expose().is_empty() => return Err(Error::invalid("password is empty")),
            Some(p) => Some(crate::password::hash(p.clone()).await?),
            None => None,
        };
        if let Some(d) = update.disabled {
            self.store.set_user_disabled(&user.id, d).await?;
        }
        if let Some(roles) = &update.roles {
            self.store.set_user_roles(&user.id, roles).await?;
        }
        if let Some(customers) = &update.customers {
            self.store.set_user_customers(&user.id, customers).await?;
        }
        if let Some(mode) = update.ip_connect_mode {
            self.store.set_user_ip_connect_mode(&user.id, mode).await?;
        }
        if let Some(h) = &hash {
            self.store.set_password_hash(&user.id, Some(h)).await?;
        }
        if update.disabled == Some(true) || hash.is_some() {
            self.store.delete_user_web_sessions(&user.id).await?;
        }
        if update.disabled == Some(true) {
            // A disabled user's API tokens stop working for good: enabling
            // them again does not bring the tokens back.
            for t in self.store.list_api_tokens(&user.id).await? {
                self.store.delete_api_token(&t.id).await?;
            }
        }
        self.record(
            "admin.user.update",
            None,
            json!({
                "user": user.name,
                "disabled": update.disabled,
                "roles": update.roles,
                "customers": update.customers,
                "ip_connect_mode": update.ip_connect_mode,
                "password_changed": hash.is_some(),
            }),
        )
        .await?;
        self.store
            .user(&user.id)
            .await?
            .ok_or_else(|| Error::not_found(format!("no user `{}`", user.name)))
    }

    /// Deletes `user`'s key `key` (its id or `SHA256:` fingerprint); another
    /// user's key is `NotFound`. Returns the deleted key.
    pub async fn delete_key_of(&self, user: &User, key: &str) -> Result<UserKey> {
        self.cap_account(user).await?;
        let found = self
            .store
            .user_keys(&user.id)
            .await?
            .into_iter()
            .find(|k| k.id.as_str() == key || k.fingerprint == key)
            .ok_or_else(|| Error::not_found(format!("user `{}` has no key `{key}`", user.name)))?;
        if !self.store.delete_user_key(&user.id, &found.id).await? {
            return Err(Error::not_found(format!(
                "user `{}` has no key `{key}`",
                user.name
            )));
        }
        self.record(
            "admin.user.key_delete",
            None,
            json!({ "user": user.name, "key": found.id, "fingerprint": found.fingerprint,
                    "label": found.label, "gatekeeper": found.gatekeeper_id }),
        )
        .await?;
        Ok(found)
    }

    /// Replaces the permissions of custom role `name`; built-in roles are read-only.
    pub async fn update_role(&self, name: &str, permissions: &[Permission]) -> Result<Role> {
        let role = self
            .store
            .list_roles()
            .await?
            .into_iter()
            .find(|r| r.name == name)
            .ok_or_else(|| Error::not_found(format!("no role `{name}`")))?;
        if role.builtin {
            return Err(Error::conflict(format!(
                "role `{name}` is built in and read-only"
            )));
        }
        if permissions.is_empty() {
            return Err(Error::invalid("a role needs at least one permission"));
        }
        self.cap_role_edit(name).await?;
        self.cap_permissions(permissions)?;
        self.store.set_role_permissions(name, permissions).await?;
        self.record(
            "admin.role.update",
            None,
            json!({ "role": name, "permissions": permissions }),
        )
        .await?;
        let mut permissions = permissions.to_vec();
        permissions.sort();
        permissions.dedup();
        Ok(Role {
            name: name.to_string(),
            permissions,
            builtin: false,
        })
    }

    /// Deletes custom role `name` and its assignments.
    pub async fn delete_role(&self, name: &str) -> Result<()> {
        self.store.delete_role(name).await?;
        self.record("admin.role.delete", None, json!({ "role": name }))
            .await
    }

    /// Grants `user` the `service` from `not_before` to `not_after`.
    pub async fn grant_service(
        &self,
        user: &User,
        service: &Service,
        not_before: Timestamp,
        not_after: Option<Timestamp>,
    ) -> Result<Grant> {
        self.grant_with_schedule(user, service, not_before, not_after, None)
            .await
    }

    /// Grants `user` the `service` from `not_before` to `not_after`, only
    /// within `schedule` if set.
    pub async fn grant_with_schedule(
        &self,
        user: &User,
        service: &Service,
        not_before: Timestamp,
        not_after: Option<Timestamp>,
        schedule: Option<Schedule>,
    ) -> Result<Grant> {
        if let Some(end) = not_after
            && end <= not_before
        {
            return Err(Error::invalid("the grant ends before it starts"));
        }
        self.cap_grant(user)?;
        let c = self.customer_of(&service.customer_id).await?;
        let g = self
            .store
            .create_grant(
                &NewGrant {
                    user_id: user.id.clone(),
                    service_id: service.id.clone(),
                    not_before,
                    not_after,
                    schedule,
                    created_by: self.actor.clone(),
                },
                Timestamp::now(),
            )
            .await?;
        self.record(
            "admin.grant.add",
            Some(&c),
            json!({ "grant": g.id, "user": user.name, "service": service.name,
                    "from": not_before.to_rfc3339(), "until": not_after.map(|t| t.to_rfc3339()) }),
        )
        .await?;
        Ok(g)
    }

    /// Revokes `grant` of `service` (the caller rechecks live sessions).
    pub async fn revoke_grant_of(&self, grant: &Grant, service: &Service) -> Result<()> {
        let c = self.customer_of(&service.customer_id).await?;
        if !self.store.revoke_grant(&grant.id, Timestamp::now()).await? {
            return Err(Error::conflict(format!(
                "grant `{}` is already revoked",
                grant.id
            )));
        }
        self.record(
            "admin.grant.revoke",
            Some(&c),
            json!({ "grant": grant.id, "service": service.name }),
        )
        .await
    }

    /// The server-wide IP Connect mode.
    pub async fn ip_connect_mode(&self) -> Result<IpConnectMode> {
        server_ip_connect_mode(self.store.as_ref()).await
    }

    /// Sets the server-wide IP Connect mode (`global` is a per-user value only).
    pub async fn set_ip_connect_mode(&self, mode: IpConnectMode) -> Result<()> {
        if mode == IpConnectMode::Global {
            return Err(Error::invalid(
                "the server-wide IP Connect mode must be legacy, driver, driver-with-legacy-fallback or off",
            ));
        }
        self.store
            .put_setting(IP_CONNECT_MODE_SETTING, mode.as_str())
            .await?;
        self.record(
            "admin.settings.update",
            None,
            json!({ "ip_connect_mode": mode }),
        )
        .await
    }

    /// Creates an API token for `user`; the token itself is returned once.
    pub async fn create_token(
        &self,
        user: &User,
        name: &str,
        expires_at: Option<Timestamp>,
    ) -> Result<(ApiToken, Secret<String>)> {
        if name.trim().is_empty() || name.len() > 100 {
            return Err(Error::invalid("token name must be 1-100 characters"));
        }
        let secret = Secret::new(format!("cpam_tok_{}", crate::model::random_token(32)));
        let token = ApiToken {
            id: TokenId::generate(),
            user_id: user.id.clone(),
            name: name.to_string(),
            token_hash: token_hash(secret.expose()),
            created_at: Timestamp::now(),
            expires_at,
            last_used_at: None,
        };
        self.store.create_api_token(&token).await?;
        self.record(
            "admin.token.create",
            None,
            json!({ "user": user.name, "token": token.id, "name": name,
                    "expires_at": expires_at.map(|t| t.to_rfc3339()) }),
        )
        .await?;
        Ok((token, secret))
    }

    /// Revokes `user`'s token `id`; someone else's token is `NotFound`.
    pub async fn revoke_token(&self, user: &User, id: &TokenId) -> Result<()> {
        let own = self.store.list_api_tokens(&user.id).await?;
        if !own.iter().any(|t| &t.id == id) || !self.store.delete_api_token(id).await? {
            return Err(Error::not_found(format!("no token `{id}`")));
        }
        self.record(
            "admin.token.revoke",
            None,
            json!({ "user": user.name, "token": id }),
        )
        .await
    }

    /// Ends live `session` through `engine` with `reason` (required).
    pub async fn terminate_session(
        &self,
        engine: &SessionEngine,
        session: &Session,
        reason: &str,
    ) -> Result<()> {
        if reason.trim().is_empty() {
            return Err(Error::invalid(
                "a reason is required to terminate a session",
            ));
        }
        if !engine.terminate_anywhere(session, &self.actor, Some(reason)) {
            return Err(Error::conflict(format!(
                "session `{}` is not live",
                session.id
            )));
        }
        let c = self.customer_of(&session.customer_id).await.ok();
        self.record(
            "admin.session.terminate",
            c.as_ref(),
            json!({ "session": session.id, "user": session.user_name, "reason": reason }),
        )
        .await
    }
}
