//! [`SqlStore`]'s implementation of the four store roles. Each method is
//! the SQL of one topic file (`directory.rs`, `activity.rs`, `console.rs`).

use async_trait::async_trait;

use super::SqlStore;
use crate::error::Result;
use crate::model::{
    ApiToken, AuditEvent, AuditRecord, CodeRefusal, Customer, CustomerId, EndReason, Gatekeeper,
    GatekeeperId, Grant, GrantId, IpConnectMode, Permission, Role, Service, ServiceId, ServiceKind,
    Session, SessionId, Target, Timestamp, TokenId, User, UserId, UserKey, WebSession,
};
use crate::store::{
    AuditFilter, AuditLog, ConsoleStore, Directory, NewGrant, SessionFilter, SessionLog,
};

#[async_trait]
impl Directory for SqlStore {
    async fn create_customer(&self, name: &str, now: Timestamp) -> Result<Customer> {
        self.create_customer_impl(name, now).await
    }
    async fn list_customers(&self) -> Result<Vec<Customer>> {
        self.list_customers_impl().await
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
        self.create_gatekeeper_impl(customer, name, now).await
    }
    async fn list_gatekeepers(&self, customer: Option<&CustomerId>) -> Result<Vec<Gatekeeper>> {
        self.list_gatekeepers_impl(customer).await
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
        self.set_gatekeeper_state_impl(id, online, customer_disabled, node_id, at)
            .await
    }
    async fn release_node_gatekeepers(&self, node_id: &str) -> Result<Vec<Gatekeeper>> {
        self.release_node_gatekeepers_impl(node_id).await
    }
    async fn set_gatekeeper_schedule(
        &self,
        id: &GatekeeperId,
        schedule: Option<&str>,
    ) -> Result<()> {
        self.set_gatekeeper_schedule_impl(id, schedule).await
    }
    async fn put_registration_code(
        &self,
        id: &GatekeeperId,
        code_hash: &str,
        expires_at: Timestamp,
    ) -> Result<()> {
        self.put_registration_code_impl(id, code_hash, expires_at)
            .await
    }
    async fn redeem_registration_code(
        &self,
        code_hash: &str,
        public_key: &str,
        fingerprint: &str,
        now: Timestamp,
    ) -> Result<std::result::Result<Gatekeeper, CodeRefusal>> {
        self.redeem_registration_code_impl(code_hash, public_key, fingerprint, now)
            .await
    }
    async fn create_user(
        &self,
        name: &str,
        password_hash: Option<&str>,
        now: Timestamp,
    ) -> Result<User> {
        self.create_user_impl(name, password_hash, now).await
    }
    async fn list_users(&self) -> Result<Vec<User>> {
        self.list_users_impl().await
    }
    async fn user(&self, id: &UserId) -> Result<Option<User>> {
        self.user_where("id", id.as_str()).await
    }
    async fn user_by_name(&self, name: &str) -> Result<Option<User>> {
        self.user_where("name", name).await
    }
    async fn set_password_hash(&self, id: &UserId, password_hash: Option<&str>) -> Result<()> {
        self.set_password_hash_impl(id, password_hash).await
    }
    async fn set_user_disabled(&self, id: &UserId, disabled: bool) -> Result<()> {
        self.set_user_disabled_impl(id, disabled).await
    }
    async fn add_user_key(&self, key: &UserKey) -> Result<()> {
        self.add_user_key_impl(key).await
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
    async fn put_role(&self, role: &Role) -> Result<()> {
        self.put_role_impl(role).await
    }
    async fn list_roles(&self) -> Result<Vec<Role>> {
        self.list_roles_impl().await
    }
    async fn assign_role(&self, user: &UserId, role: &str) -> Result<()> {
        self.assign_role_impl(user, role).await
    }
    async fn user_roles(&self, user: &UserId) -> Result<Vec<String>> {
        self.user_roles_impl(user).await
    }
    async fn user_permissions(&self, user: &UserId) -> Result<Vec<Permission>> {
        self.user_permissions_impl(user).await
    }
    async fn create_service(
        &self,
        customer: &CustomerId,
        name: &str,
        kind: ServiceKind,
        target: &Target,
        now: Timestamp,
    ) -> Result<Service> {
        self.create_service_impl(customer, name, kind, target, now)
            .await
    }
    async fn list_services(&self, customer: Option<&CustomerId>) -> Result<Vec<Service>> {
        self.list_services_impl(customer).await
    }
    async fn service(&self, id: &ServiceId) -> Result<Option<Service>> {
        self.service_impl(id).await
    }
    async fn service_by_name(&self, customer: &CustomerId, name: &str) -> Result<Option<Service>> {
        self.service_by_name_impl(customer, name).await
    }
    async fn create_grant(&self, grant: &NewGrant, now: Timestamp) -> Result<Grant> {
        self.create_grant_impl(grant, now).await
    }
    async fn list_grants(&self, user: Option<&UserId>) -> Result<Vec<Grant>> {
        self.list_grants_impl(user).await
    }
    async fn grant(&self, id: &GrantId) -> Result<Option<Grant>> {
        self.grant_impl(id).await
    }
    async fn grants_for(&self, user: &UserId, service: &ServiceId) -> Result<Vec<Grant>> {
        self.grants_for_impl(user, service).await
    }
    async fn revoke_grant(&self, id: &GrantId, now: Timestamp) -> Result<bool> {
        self.revoke_grant_impl(id, now).await
    }
    async fn delete_customer(&self, id: &CustomerId) -> Result<()> {
        self.delete_customer_impl(id).await
    }
    async fn delete_service(&self, id: &ServiceId) -> Result<()> {
        self.delete_service_impl(id).await
    }
    async fn set_role_permissions(&self, name: &str, permissions: &[Permission]) -> Result<()> {
        self.set_role_permissions_impl(name, permissions).await
    }
    async fn delete_role(&self, name: &str) -> Result<()> {
        self.delete_role_impl(name).await
    }
    async fn set_user_roles(&self, user: &UserId, roles: &[String]) -> Result<()> {
        self.set_user_roles_impl(user, roles).await
    }
    async fn set_user_customers(&self, user: &UserId, customers: &[CustomerId]) -> Result<()> {
        self.set_user_customers_impl(user, customers).await
    }
    async fn user_customers(&self, user: &UserId) -> Result<Vec<CustomerId>> {
        self.user_customers_impl(user).await
    }
    async fn set_user_ip_connect_mode(&self, user: &UserId, mode: IpConnectMode) -> Result<()> {
        self.set_user_ip_connect_mode_impl(user, mode).await
    }
    async fn user_ip_connect_mode(&self, user: &UserId) -> Result<IpConnectMode> {
        self.user_ip_connect_mode_impl(user).await
    }
}

#[async_trait]
impl SessionLog for SqlStore {
    async fn insert_session(&self, session: &Session) -> Result<()> {
        self.insert_session_impl(session).await
    }
    async fn finish_session(
        &self,
        id: &SessionId,
        ended_at: Timestamp,
        bytes_up: u64,
        bytes_down: u64,
        reason: EndReason,
        detail: Option<&str>,
    ) -> Result<()> {
        self.finish_session_impl(id, ended_at, bytes_up, bytes_down, reason, detail)
            .await
    }
    async fn session(&self, id: &SessionId) -> Result<Option<Session>> {
        self.session_impl(id).await
    }
    async fn list_sessions(&self, filter: &SessionFilter) -> Result<Vec<Session>> {
        self.list_sessions_impl(filter).await
    }
    async fn close_node_sessions(
        &self,
        node_id: &str,
        now: Timestamp,
        detail: &str,
    ) -> Result<u64> {
        self.close_node_sessions_impl(node_id, now, detail).await
    }
}

#[async_trait]
impl AuditLog for SqlStore {
    async fn append_audit(&self, event: &AuditEvent) -> Result<AuditRecord> {
        self.append_audit_impl(event).await
    }
    async fn audit_records(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>> {
        self.audit_records_impl(filter).await
    }
}

#[async_trait]
impl ConsoleStore for SqlStore {
    async fn setting(&self, key: &str) -> Result<Option<String>> {
        self.setting_impl(key).await
    }
    async fn put_setting(&self, key: &str, value: &str) -> Result<()> {
        self.put_setting_impl(key, value).await
    }
    async fn create_web_session(&self, session: &WebSession) -> Result<()> {
        self.create_web_session_impl(session).await
    }
    async fn web_session(&self, id_hash: &str) -> Result<Option<WebSession>> {
        self.web_session_impl(id_hash).await
    }
    async fn touch_web_session(&self, id_hash: &str, at: Timestamp) -> Result<()> {
        self.touch_web_session_impl(id_hash, at).await
    }
    async fn delete_web_session(&self, id_hash: &str) -> Result<()> {
        self.delete_web_session_impl(id_hash).await
    }
    async fn delete_user_web_sessions(&self, user: &UserId) -> Result<u64> {
        self.delete_user_web_sessions_impl(user).await
    }
    async fn purge_web_sessions(&self, idle_before: Timestamp, now: Timestamp) -> Result<u64> {
        self.purge_web_sessions_impl(idle_before, now).await
    }
    async fn create_api_token(&self, token: &ApiToken) -> Result<()> {
        self.create_api_token_impl(token).await
    }
    async fn list_api_tokens(&self, user: &UserId) -> Result<Vec<ApiToken>> {
        self.list_api_tokens_impl(user).await
    }
    async fn api_token_by_hash(&self, token_hash: &str) -> Result<Option<ApiToken>> {
        self.api_token_by_hash_impl(token_hash).await
    }
    async fn touch_api_token(&self, id: &TokenId, at: Timestamp) -> Result<()> {
        self.touch_api_token_impl(id, at).await
    }
    async fn delete_api_token(&self, id: &TokenId) -> Result<bool> {
        self.delete_api_token_impl(id).await
    }
}
