//! Vault, checkout and master password operations; each change audited,
//! never with a secret in the record.

use std::time::Duration;

use serde_json::json;

use super::Admin;
use crate::error::{Error, Result};
use crate::model::{Checkout, CheckoutId, Service, Timestamp, User};
use crate::store::CheckoutFilter;
use crate::vault::{self, CredentialInfo, CredentialSecret, Rotation, Vault};

impl Admin {
    /// The service `SERVICE@CUSTOMER` names.
    pub async fn service_spec(&self, spec: &str) -> Result<Service> {
        let (service, customer) = spec.rsplit_once('@').ok_or_else(|| {
            Error::invalid(format!("`{spec}` must name a service as SERVICE@CUSTOMER"))
        })?;
        let c = self.customer(customer).await?;
        self.store
            .service_by_name(&c.id, service)
            .await?
            .ok_or_else(|| {
                Error::not_found(format!("no service `{service}` for customer `{customer}`"))
            })
    }

    /// Stores (or replaces) the credential of `service` in `vault`.
    pub async fn set_credential(
        &self,
        vault: &Vault,
        service: &Service,
        username: &str,
        secret: CredentialSecret,
    ) -> Result<CredentialInfo> {
        let c = self.customer_of(&service.customer_id).await?;
        let info = vault
            .set_credential(service, username, secret, &self.actor)
            .await?;
        self.record(
            "admin.vault.set",
            Some(&c),
            json!({ "service": service.name, "username": info.username, "kind": info.kind,
                    "key_version": info.key_version }),
        )
        .await?;
        Ok(info)
    }

    /// Removes the credential of `service`; `NotFound` when it has none.
    pub async fn remove_credential(&self, vault: &Vault, service: &Service) -> Result<()> {
        let c = self.customer_of(&service.customer_id).await?;
        vault.remove_credential(service).await?;
        self.record(
            "admin.vault.remove",
            Some(&c),
            json!({ "service": service.name }),
        )
        .await
    }

    /// Forgets the target host key (an `ssh` service) or certificate key
    /// (an `rdp` service) pinned for `service`, after the operator checked
    /// that the target's key changed on purpose: the next privileged
    /// session pins the key the target then presents. Returns the
    /// fingerprint that was pinned, if any.
    pub async fn forget_host_key(&self, service: &Service) -> Result<Option<String>> {
        let c = self.customer_of(&service.customer_id).await?;
        #[cfg(feature = "rdp")]
        if service.kind == crate::model::ServiceKind::Rdp {
            let pins = crate::proxy::rdp::StoreCertificatePins::new(self.store.clone());
            let was = pins.pinned(&service.id).await?;
            pins.forget(&service.id).await?;
            let fingerprint = was.map(|k| format!("SHA256:{k}"));
            self.record(
                "admin.service.certificate_forgotten",
                Some(&c),
                json!({ "service": service.name, "fingerprint": fingerprint }),
            )
            .await?;
            return Ok(fingerprint);
        }
        let pins = crate::proxy::ssh::StorePins::new(self.store.clone());
        let was = pins.pinned(&service.id).await?;
        pins.forget(&service.id).await?;
        let fingerprint = was.as_deref().and_then(|k| {
            russh::keys::PublicKey::from_openssh(k)
                .ok()
                .map(|k| crate::proxy::ssh::fingerprint(&k))
        });
        self.record(
            "admin.service.host_key_forgotten",
            Some(&c),
            json!({ "service": service.name, "fingerprint": fingerprint }),
        )
        .await?;
        Ok(fingerprint)
    }

    /// Rotates the vault's data key ([`Vault::rotate_data_key`]).
    pub async fn rotate_vault(&self, vault: &Vault) -> Result<Rotation> {
        let rotation = vault.rotate_data_key().await?;
        self.record(
            "admin.vault.rotate",
            None,
            json!({ "version": rotation.version, "reencrypted": rotation.reencrypted,
                    "retired": rotation.retired }),
        )
        .await?;
        Ok(rotation)
    }

    /// Sets the longest checkout of `service` (`None`: back to the default).
    pub async fn set_checkout_limit(
        &self,
        service: &Service,
        limit: Option<Duration>,
    ) -> Result<()> {
        let secs = match limit {
            None => None,
            Some(d) if d.is_zero() => {
                return Err(Error::invalid("a checkout limit must be longer than zero"));
            }
            Some(d) => Some(
                i64::try_from(d.as_secs())
                    .map_err(|_| Error::invalid("the checkout limit is too long"))?,
            ),
        };
        let c = self.customer_of(&service.customer_id).await?;
        self.store.set_checkout_limit(&service.id, secs).await?;
        self.record(
            "admin.vault.checkout_limit",
            Some(&c),
            json!({ "service": service.name, "max_secs": secs }),
        )
        .await
    }

    /// Checkouts, newest first.
    pub async fn list_checkouts(&self, filter: &CheckoutFilter) -> Result<Vec<Checkout>> {
        self.store.list_checkouts(filter).await
    }

    /// Revokes checkout `id` (the caller re-checks live sessions).
    pub async fn revoke_checkout(&self, id: &str, reason: Option<&str>) -> Result<Checkout> {
        vault::revoke_checkout(
            &self.store,
            &self.audit,
            &self.actor,
            &CheckoutId(id.to_string()),
            reason,
            Timestamp::now(),
        )
        .await
    }

    /// Clears `user`'s master password, so they must set a new one (with
    /// their login password); `Conflict` when they have none.
    pub async fn reset_master_password(&self, user: &User) -> Result<()> {
        if self.store.master_password_hash(&user.id).await?.is_none() {
            return Err(Error::conflict(format!(
                "user `{}` has no master password",
                user.name
            )));
        }
        self.store
            .set_master_password_hash(&user.id, None, Timestamp::now())
            .await?;
        self.record(
            "admin.master_password.reset",
            None,
            json!({ "user": user.name }),
        )
        .await
    }
}
