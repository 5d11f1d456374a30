//! Who may see what: a caller's permissions and customer scope, and scoped
//! lookups that treat a foreign object exactly like a missing one.
//!
//! Route-level permissions are the web layer's policy table; this module is
//! the object-level half (ownership), kept here so it is tested without HTTP.
//!
//! Scope rules:
//! - `ACCESS_ALL_CUSTOMERS` sees every customer; everyone else only the
//!   customers they are a member of, and only those customers' gatekeepers,
//!   services, grants, sessions and audit entries.
//! - `VIEW_SESSIONS` shows every session of in-scope customers;
//!   `VIEW_OWN_SESSIONS` only the caller's own sessions.
//! - Audit entries of a category need that category's permission; entries
//!   without a customer are visible only with `ACCESS_ALL_CUSTOMERS`.

use std::collections::BTreeSet;

use crate::error::{Error, Result};
use crate::model::{
    AuditCategory, AuditEvent, Customer, CustomerId, Gatekeeper, GatekeeperId, Grant, GrantId,
    Permission, Service, ServiceId, Session, SessionId, User,
};
use crate::store::Store;

/// The name of the server-wide IP Connect mode setting.
pub const IP_CONNECT_MODE_SETTING: &str = "ip_connect_mode";

/// A signed-in caller: the user, their permissions and their customers.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: User,
    pub permissions: BTreeSet<Permission>,
    /// Customers the user is a member of.
    pub customers: BTreeSet<CustomerId>,
}

impl Principal {
    /// Loads the permissions and memberships of `user`.
    pub async fn load(store: &dyn Store, user: User) -> Result<Principal> {
        let permissions = store
            .user_permissions(&user.id)
            .await?
            .into_iter()
            .collect();
        let customers = store.user_customers(&user.id).await?.into_iter().collect();
        Ok(Principal {
            user,
            permissions,
            customers,
        })
    }

    /// Whether the caller holds `p`.
    pub fn has(&self, p: Permission) -> bool {
        self.permissions.contains(&p)
    }

    /// Whether the caller holds at least one of `ps`.
    pub fn has_any(&self, ps: &[Permission]) -> bool {
        ps.iter().any(|p| self.has(*p))
    }

    /// Whether the caller sees every customer.
    pub fn all_customers(&self) -> bool {
        self.has(Permission::ACCESS_ALL_CUSTOMERS)
    }

    /// Whether customer `c` is in the caller's scope.
    pub fn in_scope(&self, c: &CustomerId) -> bool {
        self.all_customers() || self.customers.contains(c)
    }

    /// Whether the caller may see session `s`.
    pub fn sees_session(&self, s: &Session) -> bool {
        (self.has(Permission::VIEW_SESSIONS) && self.in_scope(&s.customer_id))
            || (self.has(Permission::VIEW_OWN_SESSIONS) && s.user_id == self.user.id)
    }

    /// Whether the caller may terminate session `s`.
    pub fn may_terminate(&self, s: &Session) -> bool {
        self.has(Permission::TERMINATE_SESSIONS) && self.in_scope(&s.customer_id)
    }

    /// The audit categories the caller may read.
    pub fn readable_categories(&self) -> Vec<AuditCategory> {
        [AuditCategory::UserActivity, AuditCategory::SystemMessages]
            .into_iter()
            .filter(|c| self.has(c.permission()))
            .collect()
    }

    /// Whether the caller may read audit event `e`.
    pub fn sees_audit(&self, e: &AuditEvent) -> bool {
        self.has(e.category.permission())
            && match &e.customer_id {
                Some(c) => self.in_scope(c),
                None => self.all_customers(),
            }
    }

    /// The customers of `all` in the caller's scope.
    pub fn visible_customers(&self, all: Vec<Customer>) -> Vec<Customer> {
        all.into_iter().filter(|c| self.in_scope(&c.id)).collect()
    }
}

/// Hex SHA-256 of a bearer secret (API token, console session id): what the
/// store keeps instead of the secret.
pub fn token_hash(secret: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

fn missing(what: &str, id: &str) -> Error {
    Error::not_found(format!("no {what} `{id}`"))
}

/// Customer `id` if it is in scope; `NotFound` otherwise.
pub async fn customer(store: &dyn Store, p: &Principal, id: &CustomerId) -> Result<Customer> {
    match store.customer(id).await? {
        Some(c) if p.in_scope(&c.id) => Ok(c),
        _ => Err(missing("customer", id.as_str())),
    }
}

/// Gatekeeper `id` if its customer is in scope; `NotFound` otherwise.
pub async fn gatekeeper(store: &dyn Store, p: &Principal, id: &GatekeeperId) -> Result<Gatekeeper> {
    match store.gatekeeper(id).await? {
        Some(g) if p.in_scope(&g.customer_id) => Ok(g),
        _ => Err(missing("gatekeeper", id.as_str())),
    }
}

/// Service `id` if its customer is in scope; `NotFound` otherwise.
pub async fn service(store: &dyn Store, p: &Principal, id: &ServiceId) -> Result<Service> {
    match store.service(id).await? {
        Some(s) if p.in_scope(&s.customer_id) => Ok(s),
        _ => Err(missing("service", id.as_str())),
    }
}

/// Grant `id` and its service if the service's customer is in scope.
pub async fn grant(store: &dyn Store, p: &Principal, id: &GrantId) -> Result<(Grant, Service)> {
    let Some(g) = store.grant(id).await? else {
        return Err(missing("grant", id.as_str()));
    };
    match store.service(&g.service_id).await? {
        Some(s) if p.in_scope(&s.customer_id) => Ok((g, s)),
        _ => Err(missing("grant", id.as_str())),
    }
}

/// Session `id` if the caller may see it; `NotFound` otherwise.
pub async fn session(store: &dyn Store, p: &Principal, id: &SessionId) -> Result<Session> {
    match store.session(id).await? {
        Some(s) if p.sees_session(&s) => Ok(s),
        _ => Err(missing("session", id.as_str())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Timestamp, UserId};

    fn principal(perms: &[Permission], customers: &[&str]) -> Principal {
        Principal {
            user: User {
                id: UserId("usr_me".into()),
                name: "me".into(),
                password_hash: None,
                disabled: false,
                created_at: Timestamp(0),
            },
            permissions: perms.iter().copied().collect(),
            customers: customers
                .iter()
                .map(|c| CustomerId(c.to_string()))
                .collect(),
        }
    }

    fn session(user: &str, customer: &str) -> Session {
        Session {
            id: SessionId("ses_1".into()),
            user_id: UserId(user.into()),
            user_name: user.into(),
            customer_id: CustomerId(customer.into()),
            gatekeeper_id: Some(GatekeeperId("gk_1".into())),
            service_id: ServiceId("svc_1".into()),
            service_name: "s".into(),
            target: crate::model::Target {
                host: "h".into(),
                port: 22,
            },
            grant_id: None,
            protocol: crate::model::SessionProtocol::Tcp,
            node_id: None,
            started_at: Timestamp(0),
            ended_at: None,
            bytes_up: 0,
            bytes_down: 0,
            end_reason: None,
            end_detail: None,
        }
    }

    fn event(category: AuditCategory, customer: Option<&str>) -> AuditEvent {
        AuditEvent {
            at: Timestamp(0),
            category,
            action: "x".into(),
            actor: "a".into(),
            customer_id: customer.map(|c| CustomerId(c.into())),
            session_id: None,
            detail: serde_json::Value::Null,
        }
    }

    #[test]
    fn customer_scope() {
        use Permission as P;
        let member = principal(&[], &["cus_a"]);
        assert!(member.in_scope(&CustomerId("cus_a".into())));
        assert!(!member.in_scope(&CustomerId("cus_b".into())));
        let all = principal(&[P::ACCESS_ALL_CUSTOMERS], &[]);
        assert!(all.in_scope(&CustomerId("cus_b".into())));
    }

    #[test]
    fn session_visibility() {
        use Permission as P;
        // (permissions, member of, session user, session customer, sees, may terminate)
        type Case<'a> = (
            &'a [Permission],
            &'a [&'a str],
            &'a str,
            &'a str,
            bool,
            bool,
        );
        let cases: &[Case] = &[
            (&[P::VIEW_OWN_SESSIONS], &[], "usr_me", "cus_a", true, false),
            (
                &[P::VIEW_OWN_SESSIONS],
                &["cus_a"],
                "usr_x",
                "cus_a",
                false,
                false,
            ),
            (
                &[P::VIEW_SESSIONS],
                &["cus_a"],
                "usr_x",
                "cus_a",
                true,
                false,
            ),
            (
                &[P::VIEW_SESSIONS],
                &["cus_a"],
                "usr_x",
                "cus_b",
                false,
                false,
            ),
            (
                &[P::VIEW_SESSIONS, P::TERMINATE_SESSIONS],
                &["cus_a"],
                "usr_x",
                "cus_a",
                true,
                true,
            ),
            (
                &[P::TERMINATE_SESSIONS],
                &["cus_a"],
                "usr_x",
                "cus_b",
                false,
                false,
            ),
            (
                &[P::VIEW_SESSIONS, P::ACCESS_ALL_CUSTOMERS],
                &[],
                "usr_x",
                "cus_b",
                true,
                false,
            ),
        ];
        for (perms, member, user, customer, sees, terminates) in cases {
            let p = principal(perms, member);
            let s = session(user, customer);
            assert_eq!(
                p.sees_session(&s),
                *sees,
                "{perms:?} {member:?} {user} {customer}"
            );
            assert_eq!(
                p.may_terminate(&s),
                *terminates,
                "{perms:?} {member:?} {user} {customer}"
            );
        }
    }

    #[test]
    fn audit_visibility() {
        use AuditCategory as C;
        use Permission as P;
        let ua = principal(&[P::VIEW_ADMIN_LOG_USER_ACTIVITY], &["cus_a"]);
        assert!(ua.sees_audit(&event(C::UserActivity, Some("cus_a"))));
        assert!(!ua.sees_audit(&event(C::UserActivity, Some("cus_b"))));
        assert!(!ua.sees_audit(&event(C::UserActivity, None)));
        assert!(!ua.sees_audit(&event(C::SystemMessages, Some("cus_a"))));
        assert_eq!(ua.readable_categories(), vec![C::UserActivity]);
        let auditor = principal(
            &[
                P::ACCESS_ALL_CUSTOMERS,
                P::VIEW_ADMIN_LOG_USER_ACTIVITY,
                P::VIEW_ADMIN_LOG_SYSTEM_MESSAGES,
            ],
            &[],
        );
        assert!(auditor.sees_audit(&event(C::SystemMessages, None)));
        assert!(auditor.sees_audit(&event(C::UserActivity, Some("cus_b"))));
    }
}
