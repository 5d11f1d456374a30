//! Target host keys pinned on first use, kept in the store's server-wide
//! settings (`ssh.host_key.<service id>`, through `proxy::pinned`), so every
//! node sharing the database accepts the same key.

use std::sync::Arc;

use async_trait::async_trait;
use russh::keys::PublicKey;

use super::{HostKeyPins, PinCheck, fingerprint};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{Service, ServiceId};
use crate::proxy::pinned::SettingPins;
use crate::store::Store;

/// [`HostKeyPins`] in a [`Store`].
#[derive(Debug, Clone)]
pub struct StorePins {
    pins: SettingPins,
}

impl StorePins {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            pins: SettingPins::new(store, "ssh.host_key"),
        }
    }

    /// The key pinned for `service`, as an OpenSSH public key line.
    pub async fn pinned(&self, service: &ServiceId) -> Result<Option<String>> {
        self.pins.pinned(service).await
    }

    /// Forgets the pin of `service`: the next session pins the key the
    /// target then presents (after an operator checked a planned change).
    pub async fn forget(&self, service: &ServiceId) -> Result<()> {
        self.pins.forget(service).await
    }
}

#[async_trait]
impl HostKeyPins for StorePins {
    async fn check(&self, service: &Service, key: &PublicKey) -> Result<PinCheck> {
        let offered = key
            .to_openssh()
            .map_err(|e| Error::new(ErrorKind::Protocol, format!("target host key: {e}")))?;
        match self.pinned(&service.id).await? {
            Some(pinned) if same_key(&pinned, &offered) => Ok(PinCheck::Known),
            Some(pinned) => {
                let was = PublicKey::from_openssh(&pinned)
                    .map(|k| fingerprint(&k))
                    .unwrap_or_else(|_| "an unreadable key".into());
                Err(Error::new(
                    ErrorKind::PermissionDenied,
                    format!(
                        "the host key of `{}` changed: {} is pinned, the target offered {}; \
                         an administrator must confirm the change",
                        service.name,
                        was,
                        fingerprint(key)
                    ),
                ))
            }
            None => {
                self.pins.pin(&service.id, &offered).await?;
                Ok(PinCheck::Pinned)
            }
        }
    }
}

/// Compares two OpenSSH key lines by algorithm and key, ignoring comments.
fn same_key(a: &str, b: &str) -> bool {
    let parts = |s: &str| {
        let mut it = s.split_whitespace();
        (it.next().map(str::to_string), it.next().map(str::to_string))
    };
    parts(a) == parts(b)
}
