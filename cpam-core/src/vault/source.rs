//! [`VaultCredentialSource`]: the engine's credential source backed by the
//! vault, gated by checkouts.

use std::sync::Arc;

use super::{Vault, active_checkout};
use crate::error::{Error, Result};
use crate::hooks::{Credential, CredentialRequest, CredentialSource};
use crate::model::Timestamp;

/// Hands out a service's credential only to a user who holds an active
/// checkout of that service; anyone else gets `PermissionDenied`.
#[derive(Debug, Clone)]
pub struct VaultCredentialSource {
    vault: Arc<Vault>,
}

impl VaultCredentialSource {
    /// A source over `vault` (and its store's checkouts).
    pub fn new(vault: Arc<Vault>) -> Self {
        Self { vault }
    }
}

#[async_trait::async_trait]
impl CredentialSource for VaultCredentialSource {
    async fn credential(&self, request: &CredentialRequest) -> Result<Option<Credential>> {
        let store = &self.vault.store;
        let user = store
            .user_by_name(&request.user)
            .await?
            .ok_or_else(|| Error::denied(format!("no user `{}`", request.user)))?;
        let service = &request.service;
        if active_checkout(store, &user.id, &service.id, Timestamp::now())
            .await?
            .is_none()
        {
            return Err(Error::denied(format!(
                "user `{}` holds no active checkout of `{}`; check the credential out first",
                user.name, service.name
            )));
        }
        self.vault.credential(service).await
    }
}
