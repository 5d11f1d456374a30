//! File-transfer policies of services; each change audited.

use serde_json::json;

use super::Admin;
use crate::error::Result;
use crate::model::Service;
use crate::proxy::sftp::{FilePolicy, StoreFilePolicies};

impl Admin {
    /// The file-transfer policy of `service` (the default when none is set).
    pub async fn file_policy(&self, service: &Service) -> Result<FilePolicy> {
        StoreFilePolicies::new(self.store.clone())
            .get(&service.id)
            .await
    }

    /// Sets the file-transfer policy of `service`; returns it normalized,
    /// as stored and as the next `sftp` channel applies it.
    pub async fn set_file_policy(
        &self,
        service: &Service,
        policy: FilePolicy,
    ) -> Result<FilePolicy> {
        let c = self.customer_of(&service.customer_id).await?;
        let stored = StoreFilePolicies::new(self.store.clone())
            .set(&service.id, policy)
            .await?;
        self.record(
            "admin.service.file_policy",
            Some(&c),
            json!({ "service": service.name, "policy": stored }),
        )
        .await?;
        Ok(stored)
    }
}
