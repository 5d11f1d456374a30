//! What a proxy pinned of a target on first use (an SSH host key, an RDP
//! certificate's key hash), one value per service in the store's
//! server-wide settings, so every node sharing the database accepts the
//! same target.

use std::sync::Arc;

use crate::error::Result;
use crate::model::ServiceId;
use crate::store::Store;

/// Pins of one kind, under settings named `<prefix>.<service id>`.
#[derive(Debug, Clone)]
pub(crate) struct SettingPins {
    store: Arc<dyn Store>,
    prefix: &'static str,
}

impl SettingPins {
    pub(crate) fn new(store: Arc<dyn Store>, prefix: &'static str) -> Self {
        Self { store, prefix }
    }

    fn setting(&self, service: &ServiceId) -> String {
        format!("{}.{}", self.prefix, service.as_str())
    }

    /// The value pinned for `service`.
    pub(crate) async fn pinned(&self, service: &ServiceId) -> Result<Option<String>> {
        Ok(self
            .store
            .setting(&self.setting(service))
            .await?
            .filter(|k| !k.is_empty()))
    }

    /// Pins `value` for `service`.
    pub(crate) async fn pin(&self, service: &ServiceId, value: &str) -> Result<()> {
        self.store.put_setting(&self.setting(service), value).await
    }

    /// Forgets the pin of `service`: the next session pins what the target
    /// then presents.
    pub(crate) async fn forget(&self, service: &ServiceId) -> Result<()> {
        self.pin(service, "").await
    }
}
