//! Administration: every change an operator makes, each one audited.
//!
//! One set of operations for every front end. The operations work on
//! objects (`console.rs`: `create_gatekeeper(&Customer, ..)`,
//! `revoke_grant_of(&Grant, &Service)`, `update_user(&User, ..)`); the web
//! console resolves objects through [`crate::access`] and calls them. The
//! CLI's name-based methods here (`add_gatekeeper("acme", ..)`,
//! `revoke_grant("grt_..")`) only look the names up and call the same
//! operations, so both front ends validate, audit and fail alike (an
//! unknown object is `NotFound`, a change already made is `Conflict`). The
//! front ends hold no policy of their own.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::audit::AuditSink;
use crate::error::{Error, Result};
use crate::model::{
    AuditCategory, AuditEvent, Customer, Gatekeeper, Grant, GrantId, IpConnectMode, KeyId, Role,
    Service, ServiceKind, Target, Timestamp, User, UserKey, validate_name,
};
use crate::secret::Secret;
use crate::store::Store;
use crate::tunnel::keys;
use crate::tunnel::profile::Profile;

mod ceiling;
mod console;
mod vault;

pub use console::{NewUser, UserUpdate};

/// An operator acting on a store; `actor` is recorded with every change.
#[derive(Debug, Clone)]
pub struct Admin {
    store: Arc<dyn Store>,
    audit: Arc<dyn AuditSink>,
    actor: String,
    /// The signed-in operator whose privileges cap what this admin may
    /// hand out (see `ceiling.rs`); none for the server's own operator
    /// (the CLI on the server's machine, start-up).
    principal: Option<crate::access::Principal>,
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
            principal: None,
        }
    }

    /// An admin acting for signed-in `principal`: recorded as them, and
    /// never handing out more than they hold. They cannot give anyone a
    /// role with a permission they lack, edit a role they hold, grant
    /// themselves a service, widen their own customers, and, unless they
    /// are a System Administrator, change a System Administrator's account.
    pub fn for_principal(
        store: Arc<dyn Store>,
        audit: Arc<dyn AuditSink>,
        principal: crate::access::Principal,
    ) -> Self {
        Self {
            store,
            audit,
            actor: principal.user.name.clone(),
            principal: Some(principal),
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
        let c = self.customer(customer).await?;
        let gk = self.create_gatekeeper(&c, name).await?;
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

    /// Creates a user, optionally with a password and keys, and roles
    /// ([`Admin::create_user`], then one audited key enrollment per key).
    pub async fn add_user(
        &self,
        name: &str,
        password: Option<Secret<String>>,
        keys_text: &[String],
        roles: &[String],
    ) -> Result<User> {
        // Every key is checked before anything is stored.
        let parsed: Vec<_> = keys_text
            .iter()
            .map(|k| keys::parse_public(k, "user key"))
            .collect::<Result<_>>()?;
        let user = self
            .create_user(NewUser {
                name: name.to_string(),
                password,
                roles: roles.to_vec(),
                customers: Vec::new(),
                ip_connect_mode: IpConnectMode::Global,
            })
            .await?;
        for (i, k) in parsed.iter().enumerate() {
            self.add_key(&user, k, &format!("key {}", i + 1)).await?;
        }
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
        self.add_key(&user, &key, "added key").await
    }

    async fn add_key(
        &self,
        user: &User,
        key: &russh::keys::PublicKey,
        label: &str,
    ) -> Result<UserKey> {
        let k = self.enroll_key(user, key, label, None).await?;
        self.record(
            "admin.user.key_add",
            None,
            json!({ "user": user.name, "fingerprint": k.fingerprint }),
        )
        .await?;
        Ok(k)
    }

    /// The keys of user `name`: added keys and the keys of exported
    /// profiles (bound to a gatekeeper, labelled `profile for GATEKEEPER`).
    pub async fn user_keys(&self, name: &str) -> Result<Vec<UserKey>> {
        let user = self.user(name).await?;
        self.store.user_keys(&user.id).await
    }

    /// Deletes key `key` (its id or `SHA256:` fingerprint) of user `name`
    /// ([`Admin::delete_key_of`]); returns it, so the caller can close the
    /// connections it signed in.
    pub async fn delete_user_key(&self, name: &str, key: &str) -> Result<UserKey> {
        let user = self.user(name).await?;
        self.delete_key_of(&user, key).await
    }

    /// Enables or disables user `name` ([`Admin::update_user`]: disabling
    /// also ends the user's console sessions).
    pub async fn set_user_disabled(&self, name: &str, disabled: bool) -> Result<()> {
        let user = self.user(name).await?;
        let update = UserUpdate {
            disabled: Some(disabled),
            ..UserUpdate::default()
        };
        self.update_user(&user, update).await.map(drop)
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
        self.cap_permissions(&perms)?;
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

    /// Gives user `user` the role `role` too ([`Admin::update_user`]).
    pub async fn assign_role(&self, user: &str, role: &str) -> Result<()> {
        let u = self.user(user).await?;
        let mut roles = self.store.user_roles(&u.id).await?;
        if !roles.iter().any(|r| r == role) {
            roles.push(role.to_string());
        }
        let update = UserUpdate {
            roles: Some(roles),
            ..UserUpdate::default()
        };
        self.update_user(&u, update).await.map(drop)
    }

    /// Adds service `name` of `customer`, reached through the customer's
    /// gatekeeper (see [`Admin::add_service_on`]).
    pub async fn add_service(
        &self,
        customer: &str,
        name: &str,
        target: &str,
        kind: ServiceKind,
    ) -> Result<Service> {
        self.add_service_on(customer, None, name, target, kind)
            .await
    }

    /// Adds service `name` of `customer` whose target is in the network of
    /// `gatekeeper` (a name or id of one of the customer's gatekeepers):
    /// only sessions through it reach the service. Without one, the
    /// customer's only gatekeeper; a customer with several must name one,
    /// and one with none yet gets a service any of its gatekeepers reaches.
    pub async fn add_service_on(
        &self,
        customer: &str,
        gatekeeper: Option<&str>,
        name: &str,
        target: &str,
        kind: ServiceKind,
    ) -> Result<Service> {
        validate_name("service", name)?;
        let c = self.customer(customer).await?;
        let target: Target = target.parse()?;
        let gks = self.store.list_gatekeepers(Some(&c.id)).await?;
        let gk = match gatekeeper {
            Some(g) => Some(
                gks.iter()
                    .find(|k| k.name == g || k.id.as_str() == g)
                    .ok_or_else(|| {
                        Error::not_found(format!("customer `{}` has no gatekeeper `{g}`", c.name))
                    })?,
            ),
            None if gks.len() > 1 => {
                return Err(Error::invalid(format!(
                    "customer `{}` has {} gatekeepers: name the one whose network holds the service's target",
                    c.name,
                    gks.len()
                )));
            }
            None => gks.first(),
        };
        let s = self
            .store
            .create_service(
                &c.id,
                name,
                kind,
                &target,
                Timestamp::now(),
                gk.map(|g| &g.id),
            )
            .await?;
        self.record(
            "admin.service.add",
            Some(&c),
            json!({ "service": name, "target": target.to_string(), "kind": kind,
                    "gatekeeper": gk.map(|g| g.name.clone()) }),
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
        self.grant_with_schedule(&u, &s, not_before, not_after, schedule)
            .await
    }

    /// Revokes grant `id` ([`Admin::revoke_grant_of`]): `NotFound` for an
    /// unknown grant, `Conflict` for one already revoked.
    pub async fn revoke_grant(&self, id: &str) -> Result<()> {
        let grant = self
            .store
            .grant(&GrantId(id.to_string()))
            .await?
            .ok_or_else(|| Error::not_found(format!("grant `{id}` not found")))?;
        let service = self
            .store
            .service(&grant.service_id)
            .await?
            .ok_or_else(|| Error::internal(format!("grant `{id}` without its service")))?;
        self.revoke_grant_of(&grant, &service).await
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::StoreAuditSink;
    use crate::error::ErrorKind;
    use crate::model::WebSession;
    use crate::store::{AuditFilter, SqlStore};

    async fn admin() -> Admin {
        let store: Arc<dyn Store> = Arc::new(
            SqlStore::connect("sqlite::memory:")
                .await
                .expect("in-memory store"),
        );
        let audit = Arc::new(StoreAuditSink::new(store.clone()));
        let admin = Admin::new(store, audit, "tester");
        admin.ensure_builtin_roles().await.expect("built-in roles");
        admin
    }

    async fn granted(admin: &Admin) -> Grant {
        admin.add_customer("acme").await.expect("customer");
        admin.add_user("vera", None, &[], &[]).await.expect("user");
        admin
            .add_service("acme", "db", "10.0.0.5:5432", ServiceKind::Custom)
            .await
            .expect("service");
        admin
            .add_grant("vera", "acme", "db", Timestamp(1), None, None)
            .await
            .expect("grant")
    }

    fn kind<T: std::fmt::Debug>(r: Result<T>) -> ErrorKind {
        r.expect_err("the operation is refused").kind()
    }

    #[tokio::test]
    async fn the_cli_and_the_console_revoke_a_grant_alike() {
        let admin = admin().await;
        let g = granted(&admin).await;
        let s = admin
            .store()
            .service(&g.service_id)
            .await
            .expect("lookup")
            .expect("service");
        assert_eq!(
            kind(admin.revoke_grant("grt_missing").await),
            ErrorKind::NotFound
        );

        admin
            .revoke_grant(g.id.as_str())
            .await
            .expect("first revoke");
        let g = admin
            .store()
            .grant(&g.id)
            .await
            .expect("lookup")
            .expect("grant");
        assert!(g.revoked_at.is_some(), "{g:?}");
        assert_eq!(
            kind(admin.revoke_grant(g.id.as_str()).await),
            ErrorKind::Conflict
        );
        assert_eq!(
            kind(admin.revoke_grant_of(&g, &s).await),
            ErrorKind::Conflict
        );

        let revokes = admin
            .store()
            .audit_records(&AuditFilter::default())
            .await
            .expect("audit")
            .into_iter()
            .filter(|r| r.event.action == "admin.grant.revoke")
            .collect::<Vec<_>>();
        assert_eq!(revokes.len(), 1, "one audited revocation: {revokes:?}");
        assert_eq!(revokes[0].event.customer_id.as_ref(), Some(&s.customer_id));
    }

    #[tokio::test]
    async fn disabling_a_user_by_name_ends_their_console_sessions_and_api_tokens() {
        let admin = admin().await;
        let user = admin.add_user("wes", None, &[], &[]).await.expect("user");
        let web = WebSession {
            id_hash: "ab".repeat(32),
            user_id: user.id.clone(),
            csrf_token: "csrf".into(),
            created_at: Timestamp(1),
            last_seen: Timestamp(1),
            expires_at: Timestamp(i64::MAX),
        };
        admin
            .store()
            .create_web_session(&web)
            .await
            .expect("web session");
        let (token, _secret) = admin.create_token(&user, "ci", None).await.expect("token");
        admin.set_user_disabled("wes", true).await.expect("disable");
        assert_eq!(
            admin
                .store()
                .list_api_tokens(&user.id)
                .await
                .expect("tokens"),
            Vec::new(),
            "a disabled user's API token {} still exists",
            token.id
        );
        let user = admin.user("wes").await.expect("user");
        assert!(user.disabled);
        assert_eq!(
            admin
                .store()
                .web_session(&web.id_hash)
                .await
                .expect("lookup"),
            None,
            "a disabled user keeps no console session, whichever front end disabled them"
        );
    }

    #[tokio::test]
    async fn names_that_do_not_resolve_change_nothing() {
        let admin = admin().await;
        assert_eq!(
            kind(
                admin
                    .add_user("xan", None, &[], &["No Such Role".into()])
                    .await
            ),
            ErrorKind::NotFound
        );
        assert_eq!(
            kind(
                admin
                    .add_user("xan", None, &["not a key".into()], &[])
                    .await
            ),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            admin.store().user_by_name("xan").await.expect("lookup"),
            None
        );
        assert_eq!(
            kind(
                admin
                    .add_gatekeeper("nobody", "gk", Duration::from_secs(60))
                    .await
            ),
            ErrorKind::NotFound
        );
        admin.add_user("yara", None, &[], &[]).await.expect("user");
        admin.assign_role("yara", "Auditor").await.expect("role");
        admin
            .assign_role("yara", "Auditor")
            .await
            .expect("same role again");
        let yara = admin.user("yara").await.expect("user");
        assert_eq!(
            admin.store().user_roles(&yara.id).await.expect("roles"),
            vec!["Auditor".to_string()]
        );
        assert_eq!(
            kind(admin.assign_role("yara", "Nope").await),
            ErrorKind::NotFound
        );
    }
}
