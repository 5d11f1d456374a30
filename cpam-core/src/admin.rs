//! Administration: every change an operator makes, each one audited.
//!
//! The reference CLI and (later) the web console call these; they hold no
//! policy of their own.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::audit::AuditSink;
use crate::error::{Error, Result};
use crate::model::{
    AuditCategory, AuditEvent, Customer, Gatekeeper, Grant, GrantId, KeyId, Role, Service,
    ServiceKind, Target, Timestamp, User, UserKey, validate_name,
};
use crate::secret::Secret;
use crate::store::{NewGrant, Store};
use crate::tunnel::keys;
use crate::tunnel::profile::Profile;

mod console;

pub use console::{NewUser, UserUpdate};

/// An operator acting on a store; `actor` is recorded with every change.
#[derive(Debug, Clone)]
pub struct Admin {
    store: Arc<dyn Store>,
    audit: Arc<dyn AuditSink>,
    actor: String,
}

/// A gatekeeper's fresh one-time registration code.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IssuedCode {
    pub id: String,
    pub name: String,
    pub code: String,
    pub expires_at: String,
}

impl Admin {
    /// An admin acting as `actor`.
    pub fn new(store: Arc<dyn Store>, audit: Arc<dyn AuditSink>, actor: impl Into<String>) -> Self {
        Self {
            store,
            audit,
            actor: actor.into(),
        }
    }

    /// Creates the built-in roles that are missing (System Administrator,
    /// Vendor, Customer Administrator, Auditor) and brings the permissions of
    /// existing ones up to date with this version.
    pub async fn ensure_builtin_roles(&self) -> Result<()> {
        let existing = self.store.list_roles().await?;
        for role in crate::model::builtin_roles() {
            match existing.iter().find(|r| r.name == role.name) {
                None => self.store.put_role(&role).await?,
                Some(old) => {
                    let mut want = role.permissions.clone();
                    want.sort();
                    if old.permissions != want {
                        self.store
                            .set_role_permissions(&role.name, &role.permissions)
                            .await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    async fn record(
        &self,
        action: &str,
        customer: Option<&Customer>,
        detail: serde_json::Value,
    ) -> Result<()> {
        self.audit
            .record(AuditEvent {
                at: Timestamp::now(),
                category: AuditCategory::UserActivity,
                action: action.into(),
                actor: self.actor.clone(),
                customer_id: customer.map(|c| c.id.clone()),
                session_id: None,
                detail,
            })
            .await
    }

    /// The customer named `name`.
    pub async fn customer(&self, name: &str) -> Result<Customer> {
        self.store
            .customer_by_name(name)
            .await?
            .ok_or_else(|| Error::not_found(format!("no customer `{name}`")))
    }

    /// The user named `name`.
    pub async fn user(&self, name: &str) -> Result<User> {
        self.store
            .user_by_name(name)
            .await?
            .ok_or_else(|| Error::not_found(format!("no user `{name}`")))
    }

    /// The gatekeeper named `name`.
    pub async fn gatekeeper(&self, name: &str) -> Result<Gatekeeper> {
        self.store
            .gatekeeper_by_name(name)
            .await?
            .ok_or_else(|| Error::not_found(format!("no gatekeeper `{name}`")))
    }

    pub async fn add_customer(&self, name: &str) -> Result<Customer> {
        validate_name("customer", name)?;
        let c = self.store.create_customer(name, Timestamp::now()).await?;
        self.record("admin.customer.add", Some(&c), json!({ "customer": name }))
            .await?;
        Ok(c)
    }

    /// Creates a gatekeeper and its first one-time registration code.
    pub async fn add_gatekeeper(
        &self,
        customer: &str,
        name: &str,
        ttl: Duration,
    ) -> Result<IssuedCode> {
        validate_name("gatekeeper", name)?;
        let c = self.customer(customer).await?;
        let gk = self
            .store
            .create_gatekeeper(&c.id, name, Timestamp::now())
            .await?;
        self.record(
            "admin.gatekeeper.add",
            Some(&c),
            json!({ "gatekeeper": name }),
        )
        .await?;
        self.issue_code_for(&c, &gk, ttl).await
    }

    /// A new one-time code for gatekeeper `name`; the previous unused one stops working.
    pub async fn issue_code(&self, name: &str, ttl: Duration) -> Result<IssuedCode> {
        let gk = self.gatekeeper(name).await?;
        let c = self
            .store
            .customer(&gk.customer_id)
            .await?
            .ok_or_else(|| Error::internal("gatekeeper without customer"))?;
        self.issue_code_for(&c, &gk, ttl).await
    }

    async fn issue_code_for(
        &self,
        c: &Customer,
        gk: &Gatekeeper,
        ttl: Duration,
    ) -> Result<IssuedCode> {
        let code = crate::model::random_token(20);
        let expires_at = Timestamp::now().add(ttl);
        self.store
            .put_registration_code(&gk.id, &crate::tunnel::code_hash(&code), expires_at)
            .await?;
        self.record(
            "admin.gatekeeper.code",
            Some(c),
            json!({ "gatekeeper": gk.name, "expires_at": expires_at.to_rfc3339() }),
        )
        .await?;
        Ok(IssuedCode {
            id: gk.id.0.clone(),
            name: gk.name.clone(),
            code,
            expires_at: expires_at.to_rfc3339(),
        })
    }

    /// Creates a user, optionally with a password and keys, and roles.
    pub async fn add_user(
        &self,
        name: &str,
        password: Option<Secret<String>>,
        keys_text: &[String],
        roles: &[String],
    ) -> Result<User> {
        validate_name("user", name)?;
        let known = self.store.list_roles().await?;
        for r in roles {
            if !known.iter().any(|k| &k.name == r) {
                return Err(Error::not_found(format!("no role `{r}`")));
            }
        }
        let parsed: Vec<_> = keys_text
            .iter()
            .map(|k| keys::parse_public(k, "user key"))
            .collect::<Result<_>>()?;
        let hash = match password {
            Some(p) if p.expose().is_empty() => return Err(Error::invalid("password is empty")),
            Some(p) => Some(crate::password::hash(p).await?),
            None => None,
        };
        let user = self
            .store
            .create_user(name, hash.as_deref(), Timestamp::now())
            .await?;
        for (i, k) in parsed.iter().enumerate() {
            self.enroll_key(&user, k, &format!("key {}", i + 1), None)
                .await?;
        }
        for r in roles {
            self.store.assign_role(&user.id, r).await?;
        }
        self.record("admin.user.add", None, json!({ "user": name, "roles": roles, "keys": parsed.len(), "password": hash.is_some() })).await?;
        Ok(user)
    }

    async fn enroll_key(
        &self,
        user: &User,
        key: &russh::keys::PublicKey,
        label: &str,
        gk: Option<&Gatekeeper>,
    ) -> Result<UserKey> {
        let k = UserKey {
            id: KeyId::generate(),
            user_id: user.id.clone(),
            public_key: keys::public_openssh(key),
            fingerprint: keys::fingerprint(key),
            label: label.to_string(),
            gatekeeper_id: gk.map(|g| g.id.clone()),
            created_at: Timestamp::now(),
        };
        self.store.add_user_key(&k).await?;
        Ok(k)
    }

    /// Adds a public key to user `name`.
    pub async fn add_user_key(&self, name: &str, key_text: &str) -> Result<UserKey> {
        let user = self.user(name).await?;
        let key = keys::parse_public(key_text, "user key")?;
        let k = self.enroll_key(&user, &key, "added key", None).await?;
        self.record(
            "admin.user.key_add",
            None,
            json!({ "user": name, "fingerprint": k.fingerprint }),
        )
        .await?;
        Ok(k)
    }

    /// Enables or disables user `name`.
    pub async fn set_user_disabled(&self, name: &str, disabled: bool) -> Result<()> {
        let user = self.user(name).await?;
        self.store.set_user_disabled(&user.id, disabled).await?;
        self.record(
            if disabled {
                "admin.user.disable"
            } else {
                "admin.user.enable"
            },
            None,
            json!({ "user": name }),
        )
        .await
    }

    pub async fn add_role(&self, name: &str, permissions: &[String]) -> Result<Role> {
        crate::model::validate_role_name(name)?;
        let perms = permissions
            .iter()
            .map(|p| p.parse())
            .collect::<Result<Vec<_>>>()?;
        if perms.is_empty() {
            return Err(Error::invalid("a role needs at least one --permission"));
        }
        let role = Role {
            name: name.to_string(),
            permissions: perms,
            builtin: false,
        };
        self.store.put_role(&role).await?;
        self.record(
            "admin.role.add",
            None,
            json!({ "role": name, "permissions": permissions }),
        )
        .await?;
        Ok(role)
    }

    pub async fn assign_role(&self, user: &str, role: &str) -> Result<()> {
        let u = self.user(user).await?;
        if !self
            .store
            .list_roles()
            .await?
            .iter()
            .any(|r| r.name == role)
        {
            return Err(Error::not_found(format!("no role `{role}`")));
        }
        self.store.assign_role(&u.id, role).await?;
        self.record(
            "admin.role.assign",
            None,
            json!({ "user": user, "role": role }),
        )
        .await
    }

    pub async fn add_service(
        &self,
        customer: &str,
        name: &str,
        target: &str,
        kind: ServiceKind,
    ) -> Result<Service> {
        validate_name("service", name)?;
        let c = self.customer(customer).await?;
        let target: Target = target.parse()?;
        let s = self
            .store
            .create_service(&c.id, name, kind, &target, Timestamp::now())
            .await?;
        self.record(
            "admin.service.add",
            Some(&c),
            json!({ "service": name, "target": target.to_string(), "kind": kind }),
        )
        .await?;
        Ok(s)
    }

    /// Grants `user` the `service` of `customer` from `not_before` to `not_after`.
    pub async fn add_grant(
        &self,
        user: &str,
        customer: &str,
        service: &str,
        not_before: Timestamp,
        not_after: Option<Timestamp>,
        schedule: Option<crate::model::Schedule>,
    ) -> Result<Grant> {
        let u = self.user(user).await?;
        let c = self.customer(customer).await?;
        let s = self
            .store
            .service_by_name(&c.id, service)
            .await?
            .ok_or_else(|| {
                Error::not_found(format!("no service `{service}` for customer `{customer}`"))
            })?;
        if let Some(end) = not_after
            && end <= not_before
        {
            return Err(Error::invalid("the grant ends before it starts"));
        }
        let g = self
            .store
            .create_grant(
                &NewGrant {
                    user_id: u.id,
                    service_id: s.id,
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
            json!({ "grant": g.id, "user": user, "service": service, "from": not_before.to_rfc3339(), "until": not_after.map(|t| t.to_rfc3339()) }),
        )
        .await?;
        Ok(g)
    }

    pub async fn revoke_grant(&self, id: &str) -> Result<()> {
        let gid = GrantId(id.to_string());
        if !self.store.revoke_grant(&gid, Timestamp::now()).await? {
            return Err(Error::not_found(format!("no active grant `{id}`")));
        }
        self.record("admin.grant.revoke", None, json!({ "grant": id }))
            .await
    }

    /// Writes a Connection Manager profile for `user` linked to gatekeeper
    /// `gatekeeper`, with a fresh key bound to that gatekeeper.
    pub async fn export_profile(
        &self,
        user: &str,
        gatekeeper: &str,
        server: &str,
        server_key: &str,
    ) -> Result<Profile> {
        let u = self.user(user).await?;
        let gk = self.gatekeeper(gatekeeper).await?;
        if !gk.is_registered() {
            return Err(Error::invalid(format!(
                "gatekeeper `{gatekeeper}` is not registered yet"
            )));
        }
        let c = self
            .store
            .customer(&gk.customer_id)
            .await?
            .ok_or_else(|| Error::internal("gatekeeper without customer"))?;
        let key = keys::generate()?;
        let k = self
            .enroll_key(
                &u,
                key.public_key(),
                &format!("profile for {}", gk.name),
                Some(&gk),
            )
            .await?;
        self.record(
            "admin.profile.export",
            Some(&c),
            json!({ "user": user, "gatekeeper": gk.name, "fingerprint": k.fingerprint }),
        )
        .await?;
        Ok(Profile {
            server: server.to_string(),
            server_key: server_key.to_string(),
            customer: c.name,
            gatekeeper_id: gk.id,
            gatekeeper_name: gk.name,
            user: u.name,
            key: keys::private_openssh(&key)?,
            created_at: Timestamp::now(),
        })
    }
}
