//! Persistence behind the [`Store`] trait.
//!
//! [`SqlStore`] implements it with sqlx for SQLite (the embedded default) and
//! PostgreSQL (several server nodes sharing one database). Integrators may
//! bring their own implementation: the six role traits [`Directory`],
//! [`SessionLog`], [`AuditLog`], [`ConsoleStore`], [`VaultStore`] and
//! [`Cluster`], which together make a [`Store`]. The same conformance suite (`store::conformance`, behind the
//! `conformance` feature) runs against each.

mod bus;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod sql;

pub use bus::{ControlBus, ControlSubscription, LocalBus};
pub use sql::{SqlStore, redact_url};

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{
    ApiToken, AuditEvent, AuditRecord, Checkout, CheckoutEnd, CheckoutId, CodeRefusal, Customer,
    CustomerId, EndReason, Gatekeeper, GatekeeperId, Grant, GrantId, IpConnectMode, KeyId, Node,
    Permission, Role, Service, ServiceId, ServiceKind, Session, SessionId, StoredCredential,
    Target, Timestamp, TokenId, User, UserId, UserKey, VaultKeyRecord, WebSession,
};

/// Which sessions to list.
#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    /// Only sessions that have not ended.
    pub live_only: bool,
    pub user_id: Option<UserId>,
    pub customer_id: Option<CustomerId>,
    /// At most this many, newest first (`None`: all).
    pub limit: Option<i64>,
}

/// Which audit records to read.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Records with `seq >= from_seq` (1 when `None`).
    pub from_seq: Option<i64>,
    pub category: Option<crate::model::AuditCategory>,
    pub customer_id: Option<CustomerId>,
    pub actor: Option<String>,
    /// Records with `at >= since`.
    pub since: Option<Timestamp>,
    /// Records with `at < until`.
    pub until: Option<Timestamp>,
    pub limit: Option<i64>,
}

/// A new grant.
#[derive(Debug, Clone)]
pub struct NewGrant {
    pub user_id: UserId,
    pub service_id: ServiceId,
    pub not_before: Timestamp,
    pub not_after: Option<Timestamp>,
    pub schedule: Option<crate::model::Schedule>,
    pub created_by: String,
}

/// Customers, gatekeepers, users and their keys, roles, services and grants:
/// who may reach what. Name lookups are exact and case-sensitive.
#[async_trait]
pub trait Directory: Send + Sync + std::fmt::Debug {
    // customers
    async fn create_customer(&self, name: &str, now: Timestamp) -> Result<Customer>;
    async fn list_customers(&self) -> Result<Vec<Customer>>;
    async fn customer_by_name(&self, name: &str) -> Result<Option<Customer>>;
    async fn customer(&self, id: &CustomerId) -> Result<Option<Customer>>;

    // gatekeepers
    async fn create_gatekeeper(
        &self,
        customer: &CustomerId,
        name: &str,
        now: Timestamp,
    ) -> Result<Gatekeeper>;
    async fn list_gatekeepers(&self, customer: Option<&CustomerId>) -> Result<Vec<Gatekeeper>>;
    async fn gatekeeper(&self, id: &GatekeeperId) -> Result<Option<Gatekeeper>>;
    async fn gatekeeper_by_name(&self, name: &str) -> Result<Option<Gatekeeper>>;
    async fn gatekeeper_by_fingerprint(&self, fingerprint: &str) -> Result<Option<Gatekeeper>>;
    /// Records the live state the hub observed (pushed, never polled).
    /// Online, the gatekeeper's link is held by `node_id` (`None`: a node
    /// that was not named); offline, no node holds it. Offline from a named
    /// node changes nothing while another node holds the link (the
    /// gatekeeper moved there).
    async fn set_gatekeeper_state(
        &self,
        id: &GatekeeperId,
        online: bool,
        customer_disabled: bool,
        node_id: Option<&str>,
        at: Timestamp,
    ) -> Result<()>;
    /// Marks offline the gatekeepers whose link `node_id` held, or whose
    /// holder was not named, and returns them (now offline). Run when that
    /// node starts: whatever it held died with its previous process. Links
    /// other nodes hold are left alone.
    async fn release_node_gatekeepers(&self, node_id: &str) -> Result<Vec<Gatekeeper>>;
    /// Records the opening hours the gatekeeper's customer set (`None`: always open).
    async fn set_gatekeeper_schedule(
        &self,
        id: &GatekeeperId,
        schedule: Option<&str>,
    ) -> Result<()>;
    /// Stores a new one-time code (its SHA-256 hex) for `id`, replacing any unused one.
    async fn put_registration_code(
        &self,
        id: &GatekeeperId,
        code_hash: &str,
        expires_at: Timestamp,
    ) -> Result<()>;
    /// Atomically consumes the code and enrolls the key. A refused code changes nothing.
    async fn redeem_registration_code(
        &self,
        code_hash: &str,
        public_key: &str,
        fingerprint: &str,
        now: Timestamp,
    ) -> Result<std::result::Result<Gatekeeper, CodeRefusal>>;

    // users, keys, roles
    async fn create_user(
        &self,
        name: &str,
        password_hash: Option<&str>,
        now: Timestamp,
    ) -> Result<User>;
    async fn list_users(&self) -> Result<Vec<User>>;
    async fn user(&self, id: &UserId) -> Result<Option<User>>;
    async fn user_by_name(&self, name: &str) -> Result<Option<User>>;
    async fn set_password_hash(&self, id: &UserId, password_hash: Option<&str>) -> Result<()>;
    async fn set_user_disabled(&self, id: &UserId, disabled: bool) -> Result<()>;
    async fn add_user_key(&self, key: &UserKey) -> Result<()>;
    async fn user_keys(&self, id: &UserId) -> Result<Vec<UserKey>>;
    async fn user_key_by_fingerprint(&self, fingerprint: &str) -> Result<Option<UserKey>>;
    /// Deletes key `id` of `user`; false when the user has no such key.
    async fn delete_user_key(&self, user: &UserId, id: &KeyId) -> Result<bool>;
    /// Creates or replaces a role (built-in roles cannot be replaced).
    async fn put_role(&self, role: &Role) -> Result<()>;
    async fn list_roles(&self) -> Result<Vec<Role>>;
    async fn assign_role(&self, user: &UserId, role: &str) -> Result<()>;
    async fn user_roles(&self, user: &UserId) -> Result<Vec<String>>;
    async fn user_permissions(&self, user: &UserId) -> Result<Vec<Permission>>;

    // services
    /// Creates a service of `customer`, reached only through `gatekeeper`
    /// (`None`: any gatekeeper of the customer).
    async fn create_service(
        &self,
        customer: &CustomerId,
        name: &str,
        kind: ServiceKind,
        target: &Target,
        now: Timestamp,
        gatekeeper: Option<&GatekeeperId>,
    ) -> Result<Service>;
    async fn list_services(&self, customer: Option<&CustomerId>) -> Result<Vec<Service>>;
    async fn service(&self, id: &ServiceId) -> Result<Option<Service>>;
    async fn service_by_name(&self, customer: &CustomerId, name: &str) -> Result<Option<Service>>;

    // grants
    async fn create_grant(&self, grant: &NewGrant, now: Timestamp) -> Result<Grant>;
    async fn list_grants(&self, user: Option<&UserId>) -> Result<Vec<Grant>>;
    async fn grant(&self, id: &GrantId) -> Result<Option<Grant>>;
    /// Grants of `user` for `service`, revoked ones included (policy decides).
    async fn grants_for(&self, user: &UserId, service: &ServiceId) -> Result<Vec<Grant>>;
    /// `true` when this call revoked the grant, `false` when it already was;
    /// `NotFound` for an unknown grant.
    async fn revoke_grant(&self, id: &GrantId, now: Timestamp) -> Result<bool>;

    // deletions and replacements made from the console
    /// Deletes a customer with its gatekeepers, services, grants, codes,
    /// gatekeeper-bound keys and memberships; session history stays.
    /// `NotFound` for an unknown customer.
    async fn delete_customer(&self, id: &CustomerId) -> Result<()>;
    /// Deletes gatekeeper `id` with its registration codes and the profile
    /// keys bound to it; session history stays. `NotFound` if missing.
    async fn delete_gatekeeper(&self, id: &GatekeeperId) -> Result<()>;
    /// Deletes a service and its grants. `NotFound` for an unknown service.
    async fn delete_service(&self, id: &ServiceId) -> Result<()>;
    /// Replaces the permissions of an existing role, built-in ones included
    /// (callers keep built-in roles read-only for people). `NotFound` if missing.
    async fn set_role_permissions(&self, name: &str, permissions: &[Permission]) -> Result<()>;
    /// Deletes a custom role and its assignments; `Conflict` for a built-in
    /// role, `NotFound` for an unknown one.
    async fn delete_role(&self, name: &str) -> Result<()>;
    /// Replaces the roles of `user` (every role must exist).
    async fn set_user_roles(&self, user: &UserId, roles: &[String]) -> Result<()>;

    // membership and preferences
    /// Replaces the customers `user` is a member of.
    async fn set_user_customers(&self, user: &UserId, customers: &[CustomerId]) -> Result<()>;
    /// The customers `user` is a member of, sorted by id.
    async fn user_customers(&self, user: &UserId) -> Result<Vec<CustomerId>>;
    async fn set_user_ip_connect_mode(&self, user: &UserId, mode: IpConnectMode) -> Result<()>;
    /// The user's IP Connect mode (`global` unless set). `NotFound` for an unknown user.
    async fn user_ip_connect_mode(&self, user: &UserId) -> Result<IpConnectMode>;
}

/// The record of sessions: opened, ended, listed, and closed after a node
/// stopped without ending them.
#[async_trait]
pub trait SessionLog: Send + Sync + std::fmt::Debug {
    async fn insert_session(&self, session: &Session) -> Result<()>;
    /// Ends an open session; on an already ended one it changes nothing (the
    /// first end wins). `NotFound` for an unknown session.
    async fn finish_session(
        &self,
        id: &SessionId,
        ended_at: Timestamp,
        bytes_up: u64,
        bytes_down: u64,
        reason: EndReason,
        detail: Option<&str>,
    ) -> Result<()>;
    async fn session(&self, id: &SessionId) -> Result<Option<Session>>;
    async fn list_sessions(&self, filter: &SessionFilter) -> Result<Vec<Session>>;
    /// Ends the sessions still open on `node_id`, and those without a node
    /// (recorded before nodes were named), with reason `error` and `detail`
    /// (e.g. "server restarted"); returns how many. Run when that node
    /// starts. Sessions of other nodes are left alone.
    async fn close_node_sessions(&self, node_id: &str, now: Timestamp, detail: &str)
    -> Result<u64>;
}

/// The append-only, hash-chained audit log.
#[async_trait]
pub trait AuditLog: Send + Sync + std::fmt::Debug {
    /// Seals `event` into the hash chain (see [`crate::audit::seal`]) and stores it.
    async fn append_audit(&self, event: &AuditEvent) -> Result<AuditRecord>;
    async fn audit_records(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>>;
}

/// What the web console keeps: server-wide settings, console sessions and
/// API tokens (only hashes are stored).
#[async_trait]
pub trait ConsoleStore: Send + Sync + std::fmt::Debug {
    // server-wide settings
    /// A server-wide setting.
    async fn setting(&self, key: &str) -> Result<Option<String>>;
    /// Creates or replaces a server-wide setting.
    async fn put_setting(&self, key: &str, value: &str) -> Result<()>;

    // console sessions and API tokens (only hashes are stored)
    async fn create_web_session(&self, session: &WebSession) -> Result<()>;
    async fn web_session(&self, id_hash: &str) -> Result<Option<WebSession>>;
    async fn touch_web_session(&self, id_hash: &str, at: Timestamp) -> Result<()>;
    async fn delete_web_session(&self, id_hash: &str) -> Result<()>;
    /// Ends every console session of `user`; returns how many.
    async fn delete_user_web_sessions(&self, user: &UserId) -> Result<u64>;
    /// Deletes sessions idle since before `idle_before` or past their absolute end at `now`.
    async fn purge_web_sessions(&self, idle_before: Timestamp, now: Timestamp) -> Result<u64>;
    async fn create_api_token(&self, token: &ApiToken) -> Result<()>;
    /// The tokens of `user`, oldest first.
    async fn list_api_tokens(&self, user: &UserId) -> Result<Vec<ApiToken>>;
    async fn api_token_by_hash(&self, token_hash: &str) -> Result<Option<ApiToken>>;
    async fn touch_api_token(&self, id: &TokenId, at: Timestamp) -> Result<()>;
    /// `true` when the token existed.
    async fn delete_api_token(&self, id: &TokenId) -> Result<bool>;
}

/// Which checkouts to list.
#[derive(Debug, Clone, Default)]
pub struct CheckoutFilter {
    pub user_id: Option<UserId>,
    pub service_id: Option<ServiceId>,
    /// Only checkouts neither ended nor expired at this time.
    pub active_at: Option<Timestamp>,
    /// At most this many, newest first (`None`: all).
    pub limit: Option<i64>,
}

/// The vault's rows (data keys only wrapped, credentials only encrypted),
/// checkouts, checkout limits and master password hashes. The store never
/// sees a secret in clear: [`crate::vault::Vault`] encrypts before it writes.
#[async_trait]
pub trait VaultStore: Send + Sync + std::fmt::Debug {
    /// Every data key version, retired ones included, oldest first.
    async fn vault_keys(&self) -> Result<Vec<VaultKeyRecord>>;
    /// Adds a data key version; `Conflict` when the version exists (another
    /// node rotated at the same time).
    async fn insert_vault_key(&self, key: &VaultKeyRecord) -> Result<()>;
    /// Retires `version` at `at`, erasing its wrapped key; `Conflict` while
    /// a credential is still encrypted under it, `NotFound` for an unknown one.
    async fn retire_vault_key(&self, version: i64, at: Timestamp) -> Result<()>;

    /// Creates or replaces the credential of its service (`NotFound` for an
    /// unknown service or key version).
    async fn put_credential(&self, credential: &StoredCredential) -> Result<()>;
    async fn credential(&self, service: &ServiceId) -> Result<Option<StoredCredential>>;
    /// Every stored credential, by service id.
    async fn list_credentials(&self) -> Result<Vec<StoredCredential>>;
    /// Replaces a credential's ciphertext if it is still encrypted under
    /// `from_version` with `old_ciphertext` (a rotation's compare-and-swap);
    /// `false` when it changed meanwhile.
    async fn reencrypt_credential(
        &self,
        service: &ServiceId,
        from_version: i64,
        old_ciphertext: &str,
        to_version: i64,
        new_ciphertext: &str,
    ) -> Result<bool>;
    /// `true` when there was one to delete.
    async fn delete_credential(&self, service: &ServiceId) -> Result<bool>;

    /// The longest checkout `service` allows, in seconds (`None`: the default).
    async fn checkout_limit(&self, service: &ServiceId) -> Result<Option<i64>>;
    /// Sets (or with `None` clears) the longest checkout of `service`.
    async fn set_checkout_limit(&self, service: &ServiceId, max_secs: Option<i64>) -> Result<()>;
    async fn insert_checkout(&self, checkout: &Checkout) -> Result<()>;
    async fn checkout(&self, id: &CheckoutId) -> Result<Option<Checkout>>;
    async fn list_checkouts(&self, filter: &CheckoutFilter) -> Result<Vec<Checkout>>;
    /// Ends a checkout that has not ended yet; `false` when it already had
    /// (the first end wins), `NotFound` for an unknown one.
    async fn end_checkout(
        &self,
        id: &CheckoutId,
        at: Timestamp,
        reason: CheckoutEnd,
        by: &str,
    ) -> Result<bool>;

    /// The user's master password hash (PHC string), if set.
    async fn master_password_hash(&self, user: &UserId) -> Result<Option<String>>;
    /// Sets (or with `None` clears) the user's master password hash;
    /// `NotFound` for an unknown user.
    async fn set_master_password_hash(
        &self,
        user: &UserId,
        hash: Option<&str>,
        at: Timestamp,
    ) -> Result<()>;
}

/// The server nodes sharing the store, and how they reach each other. On
/// one node (SQLite) the table holds that node alone and the control bus is
/// in-process.
#[async_trait]
pub trait Cluster: Send + Sync + std::fmt::Debug {
    /// Registers `node`, or takes over the row of a node with its id whose
    /// heartbeat is older than `live_after` (a previous process of it).
    /// `Conflict`, naming the id, while that row's heartbeat is fresh:
    /// another process runs with this id.
    async fn register_node(&self, node: &Node, live_after: Timestamp) -> Result<()>;
    /// Writes node `id`'s heartbeat; `NotFound` when its row is gone (a
    /// survivor declared it lost).
    async fn heartbeat_node(&self, id: &str, at: Timestamp) -> Result<()>;
    /// Removes node `id` (a clean stop); `false` when it was not there.
    async fn remove_node(&self, id: &str) -> Result<bool>;
    /// Every registered node, by id.
    async fn list_nodes(&self) -> Result<Vec<Node>>;
    /// Removes node `id` if its heartbeat is older than `stale_before`;
    /// `true` for the one caller that removed it, which then cleans up after
    /// the lost node (two survivors never both do).
    async fn claim_lost_node(&self, id: &str, stale_before: Timestamp) -> Result<bool>;
    /// One round trip to the database (readiness).
    async fn ping(&self) -> Result<()>;
    /// The bus control messages (terminate, revoke, re-check) travel on to
    /// the node that holds a session.
    fn control_bus(&self) -> std::sync::Arc<dyn ControlBus>;
}

/// Everything cpam persists: the six roles together. Implement the six
/// role traits and `Store` comes with them; code that needs only one role
/// takes that trait. All methods are safe to call concurrently.
pub trait Store: Directory + SessionLog + AuditLog + ConsoleStore + VaultStore + Cluster {}

impl<T: Directory + SessionLog + AuditLog + ConsoleStore + VaultStore + Cluster + ?Sized> Store
    for T
{
}
