//! File-transfer policies kept in the store's server-wide settings
//! (`sftp.policy.<service id>`, JSON), so every node sharing the database
//! applies the same one.

use std::sync::Arc;

use async_trait::async_trait;

use super::{FilePolicies, FilePolicy};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{Service, ServiceId};
use crate::store::Store;

/// [`FilePolicies`] in a [`Store`].
#[derive(Debug, Clone)]
pub struct StoreFilePolicies {
    store: Arc<dyn Store>,
}

impl StoreFilePolicies {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    fn setting(service: &ServiceId) -> String {
        format!("sftp.policy.{}", service.as_str())
    }

    /// The policy set for `service`, or the default.
    pub async fn get(&self, service: &ServiceId) -> Result<FilePolicy> {
        match self
            .store
            .setting(&Self::setting(service))
            .await?
            .filter(|v| !v.is_empty())
        {
            None => Ok(FilePolicy::default()),
            Some(json) => serde_json::from_str(&json).map_err(|e| {
                Error::new(
                    ErrorKind::Storage,
                    format!(
                        "stored file policy of `{}` is unreadable: {e}",
                        service.as_str()
                    ),
                )
            }),
        }
    }

    /// Sets the policy of `service` (normalized first); returns what was stored.
    pub async fn set(&self, service: &ServiceId, policy: FilePolicy) -> Result<FilePolicy> {
        let policy = policy.normalized()?;
        let json = serde_json::to_string(&policy)
            .map_err(|e| Error::new(ErrorKind::Internal, format!("file policy: {e}")))?;
        self.store
            .put_setting(&Self::setting(service), &json)
            .await?;
        Ok(policy)
    }
}

#[async_trait]
impl FilePolicies for StoreFilePolicies {
    async fn policy(&self, service: &Service) -> Result<FilePolicy> {
        self.get(&service.id).await
    }
}
