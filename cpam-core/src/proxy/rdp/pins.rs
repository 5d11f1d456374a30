//! Target certificates pinned on first use, kept in the store's
//! server-wide settings (`rdp.certificate.<service id>`: the SHA-256 of the
//! certificate's public key), so every node sharing the database accepts
//! the same target.

use std::sync::Arc;

use async_trait::async_trait;

use super::CertificatePins;
use crate::error::{Error, ErrorKind, Result};
use crate::model::{Service, ServiceId};
use crate::proxy::pinned::SettingPins;
use crate::proxy::ssh::PinCheck;
use crate::store::Store;

/// [`CertificatePins`] in a [`Store`].
#[derive(Debug, Clone)]
pub struct StoreCertificatePins {
    pins: SettingPins,
}

impl StoreCertificatePins {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            pins: SettingPins::new(store, "rdp.certificate"),
        }
    }

    /// The public key hash pinned for `service`.
    pub async fn pinned(&self, service: &ServiceId) -> Result<Option<String>> {
        self.pins.pinned(service).await
    }

    /// Forgets the pin of `service`: the next session pins what the target
    /// then presents.
    pub async fn forget(&self, service: &ServiceId) -> Result<()> {
        self.pins.forget(service).await
    }
}

#[async_trait]
impl CertificatePins for StoreCertificatePins {
    async fn check(&self, service: &Service, spki_sha256: &str) -> Result<PinCheck> {
        match self.pinned(&service.id).await? {
            Some(pinned) if pinned == spki_sha256 => Ok(PinCheck::Known),
            Some(pinned) => Err(Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "the certificate of `{}` changed: key SHA256:{pinned} is pinned, the target \
                     offered SHA256:{spki_sha256}; an administrator must confirm the change",
                    service.name
                ),
            )),
            None => {
                self.pins.pin(&service.id, spki_sha256).await?;
                Ok(PinCheck::Pinned)
            }
        }
    }
}
