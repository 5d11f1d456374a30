//! The credential vault, checkouts and master passwords.
//!
//! Each service may hold one credential (a username with a password or an
//! OpenSSH private key) that a protocol proxy injects, so the user never sees
//! it. Credentials are encrypted at rest with XChaCha20-Poly1305 under a
//! random 256-bit *data key*; each ciphertext's associated data binds it to
//! its service, its data key version, its kind and username, so no row's
//! ciphertext decrypts in another. The data key is stored only wrapped by a
//! *key-encryption key* derived from the server's unseal secret
//! ([`UnsealSecret`]): the key file `vault.key` of the data dir, or a
//! passphrase (`CPAM_VAULT_PASSPHRASE`, Argon2id with a stored salt).
//! [`Vault::rotate_data_key`] moves every credential to a new data key and
//! retires the old one while reads go on: every row records its version.
//!
//! A credential is injected only for a user who holds an active
//! [`checkout`] of its service ([`VaultCredentialSource`]); starting a
//! privileged session also asks for the user's [`master`] password.

pub mod checkout;
#[cfg(test)]
mod checkout_tests;
mod crypto;
pub mod master;
mod source;
#[cfg(test)]
mod tests;
mod unseal;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;

pub use checkout::human as format_duration;
pub use checkout::{
    CheckoutRequest, DEFAULT_CHECKOUT_LIMIT, active_checkout, check_in, check_out, checkout_limit,
    revoke_checkout,
};
pub use master::{
    MIN_MASTER_PASSWORD, StoreMasterPasswords, set_master_password, verify_master_password,
};
pub use source::VaultCredentialSource;
pub use unseal::{PASSPHRASE_ENV, UnsealSecret, create_key_file};

use crate::error::{Error, ErrorKind, Result};
use crate::hooks::Credential;
use crate::model::{
    CredentialKind, Service, ServiceId, StoredCredential, Timestamp, VaultKeyRecord,
};
use crate::secret::Secret;
use crate::store::Store;
use crypto::Key;

/// The longest username a credential may carry.
const MAX_USERNAME: usize = 256;
/// The largest secret (password or private key text) a credential may carry.
const MAX_SECRET: usize = 64 * 1024;

/// The secret half of a credential, as an operator hands it in.
#[derive(Debug, Clone)]
pub enum CredentialSecret {
    Password(Secret<String>),
    /// An unencrypted OpenSSH private key (`-----BEGIN OPENSSH PRIVATE KEY-----`).
    PrivateKey(Secret<String>),
}

impl CredentialSecret {
    /// Its kind.
    pub fn kind(&self) -> CredentialKind {
        match self {
            CredentialSecret::Password(_) => CredentialKind::Password,
            CredentialSecret::PrivateKey(_) => CredentialKind::PrivateKey,
        }
    }

    fn text(&self) -> &Secret<String> {
        match self {
            CredentialSecret::Password(s) | CredentialSecret::PrivateKey(s) => s,
        }
    }

    /// Checks the secret without ever quoting it.
    fn validate(&self) -> Result<()> {
        let text = self.text().expose();
        if text.is_empty() {
            return Err(Error::invalid("the credential's secret is empty"));
        }
        if text.len() > MAX_SECRET {
            return Err(Error::invalid(format!(
                "the credential's secret is longer than {MAX_SECRET} bytes"
            )));
        }
        if let CredentialSecret::PrivateKey(_) = self {
            let key = russh::keys::PrivateKey::from_openssh(text)
                .map_err(|_| Error::invalid("the private key is not an OpenSSH private key"))?;
            if key.is_encrypted() {
                return Err(Error::invalid(
                    "the private key is encrypted with a passphrase; store it unencrypted (the vault encrypts it)",
                ));
            }
        }
        Ok(())
    }
}

/// What may be shown about a stored credential: never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CredentialInfo {
    pub service_id: ServiceId,
    pub username: String,
    pub kind: CredentialKind,
    /// The data key version it is encrypted under.
    pub key_version: i64,
    pub updated_at: Timestamp,
    pub updated_by: String,
}

impl From<&StoredCredential> for CredentialInfo {
    fn from(c: &StoredCredential) -> Self {
        CredentialInfo {
            service_id: c.service_id.clone(),
            username: c.username.clone(),
            kind: c.kind,
            key_version: c.key_version,
            updated_at: c.updated_at,
            updated_by: c.updated_by.clone(),
        }
    }
}

/// What [`Vault::rotate_data_key`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rotation {
    /// The new data key version.
    pub version: i64,
    /// Credentials re-encrypted under it.
    pub reencrypted: usize,
    /// Versions retired (their wrapped keys erased).
    pub retired: Vec<i64>,
}

/// The data keys this process has unwrapped.
#[derive(Default)]
struct Keys {
    /// Unwrapped data keys by version (retired ones dropped).
    map: BTreeMap<i64, Arc<Key>>,
    /// The version new ciphertexts use.
    current: i64,
}

/// An unsealed vault over a store. Cheap to share (`Arc<Vault>`); several
/// server nodes may each hold one over the same database.
pub struct Vault {
    store: Arc<dyn Store>,
    secret: UnsealSecret,
    /// Key-encryption keys by salt (`""` for a key file).
    keks: Mutex<HashMap<String, Arc<Key>>>,
    keys: RwLock<Keys>,
    /// Serializes this process's writes (set, rotate, reload).
    writer: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("unsealed_by", &self.secret.kind())
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// Unseals the vault of `store` with `secret`: unwraps every data key in
    /// use, creating the first one when the vault is new. A secret that does
    /// not unwrap them fails with `InvalidArgument` naming the key file or
    /// passphrase variable, and changes nothing.
    pub async fn unseal(store: Arc<dyn Store>, secret: UnsealSecret) -> Result<Arc<Vault>> {
        let vault = Vault {
            store,
            secret,
            keks: Mutex::new(HashMap::new()),
            keys: RwLock::new(Keys::default()),
            writer: tokio::sync::Mutex::new(()),
        };
        {
            let _w = vault.writer.lock().await;
            if vault.store.vault_keys().await?.is_empty() {
                vault.add_version(1, None).await?;
            }
            vault.reload().await?;
        }
        Ok(Arc::new(vault))
    }

    /// How the vault was unsealed: `key_file` or `passphrase`.
    pub fn unsealed_by(&self) -> &'static str {
        self.secret.kind()
    }

    /// The data key version new ciphertexts use.
    pub fn current_version(&self) -> i64 {
        self.read_keys().current
    }

    fn read_keys(&self) -> std::sync::RwLockReadGuard<'_, Keys> {
        self.keys.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The key-encryption key for `salt` (`None`: a key file's).
    async fn kek(&self, salt: Option<&str>) -> Result<Arc<Key>> {
        let slot = salt.unwrap_or("").to_string();
        if let Some(k) = self
            .keks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&slot)
        {
            return Ok(k.clone());
        }
        let kek = Arc::new(self.secret.kek(salt).await?);
        self.keks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(slot, kek.clone());
        Ok(kek)
    }

    /// Creates data key `version`, wrapped like `like` (same salt) or fresh.
    async fn add_version(&self, version: i64, like: Option<&VaultKeyRecord>) -> Result<Arc<Key>> {
        let salt = match self.secret.kind() {
            unseal::KEY_FILE => None,
            _ => Some(
                like.and_then(|r| r.salt.clone())
                    .unwrap_or_else(crypto::random_salt),
            ),
        };
        let kek = self.kek(salt.as_deref()).await?;
        let key = crypto::random_key();
        let wrapped = crypto::seal(&kek, &crypto::data_key_aad(version), key.expose())?;
        self.store
            .insert_vault_key(&VaultKeyRecord {
                version,
                kek: self.secret.kind().to_string(),
                salt,
                wrapped: Some(wrapped),
                created_at: Timestamp::now(),
                retired_at: None,
            })
            .await?;
        Ok(Arc::new(key))
    }

    /// Unwraps the data keys in the store this process does not hold yet
    /// (another node rotated) and forgets retired ones.
    async fn reload(&self) -> Result<()> {
        let rows = self.store.vault_keys().await?;
        let mut fresh = BTreeMap::new();
        for row in rows.iter().filter(|r| r.retired_at.is_none()) {
            if let Some(k) = self.read_keys().map.get(&row.version) {
                fresh.insert(row.version, k.clone());
                continue;
            }
            let Some(wrapped) = &row.wrapped else {
                continue;
            };
            if row.kek != self.secret.kind() {
                return Err(Error::invalid(format!(
                    "the vault's data key v{} is sealed with a {} but this server has {}",
                    row.version,
                    row.kek.replace('_', " "),
                    self.secret.describe()
                )));
            }
            let kek = self.kek(row.salt.as_deref()).await?;
            let opened = crypto::open(&kek, &crypto::data_key_aad(row.version), wrapped, "")
                .map_err(|_| {
                    Error::invalid(format!(
                        "{} does not unseal the vault (data key v{}): wrong key file or passphrase",
                        self.secret.describe(),
                        row.version
                    ))
                })?;
            let what = format!("vault data key v{}", row.version);
            fresh.insert(row.version, Arc::new(crypto::key_from(&opened, &what)?));
        }
        let current =
            fresh.keys().next_back().copied().ok_or_else(|| {
                Error::new(ErrorKind::Storage, "the vault has no data key in use")
            })?;
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        keys.map = fresh;
        keys.current = current;
        Ok(())
    }

    /// The data key of `version`, reloading once if another node made it.
    async fn key(&self, version: i64) -> Result<Arc<Key>> {
        if let Some(k) = self.loaded_key(version) {
            return Ok(k);
        }
        {
            let _w = self.writer.lock().await;
            self.reload().await?;
        }
        self.loaded_key(version).ok_or_else(|| missing_key(version))
    }

    /// The data key of `version` if this process holds it.
    fn loaded_key(&self, version: i64) -> Option<Arc<Key>> {
        self.read_keys().map.get(&version).cloned()
    }

    /// Stores (or replaces) the credential of `service`, encrypted under the
    /// current data key; `by` is recorded with it. The secret is checked
    /// (an OpenSSH key must parse and be unencrypted) and never quoted.
    pub async fn set_credential(
        &self,
        service: &Service,
        username: &str,
        secret: CredentialSecret,
        by: &str,
    ) -> Result<CredentialInfo> {
        validate_username(username)?;
        secret.validate()?;
        let kind = secret.kind();
        let _w = self.writer.lock().await;
        self.reload().await?;
        let (version, key) = {
            let keys = self.read_keys();
            let key = keys
                .map
                .get(&keys.current)
                .cloned()
                .ok_or_else(|| Error::internal("the vault's current data key is not loaded"))?;
            (keys.current, key)
        };
        let aad = crypto::credential_aad(&service.id, version, kind, username);
        let ciphertext = crypto::seal(&key, &aad, secret.text().expose().as_bytes())?;
        let stored = StoredCredential {
            service_id: service.id.clone(),
            username: username.to_string(),
            kind,
            key_version: version,
            ciphertext,
            updated_at: Timestamp::now(),
            updated_by: by.to_string(),
        };
        self.store.put_credential(&stored).await?;
        Ok(CredentialInfo::from(&stored))
    }

    /// Removes the credential of `service`; `NotFound` when it has none.
    pub async fn remove_credential(&self, service: &Service) -> Result<()> {
        if self.store.delete_credential(&service.id).await? {
            Ok(())
        } else {
            Err(Error::not_found(format!(
                "service `{}` has no stored credential",
                service.name
            )))
        }
    }

    /// What may be shown about the credential of `service` (never the secret).
    pub async fn credential_info(&self, service: &Service) -> Result<Option<CredentialInfo>> {
        Ok(self
            .store
            .credential(&service.id)
            .await?
            .as_ref()
            .map(CredentialInfo::from))
    }

    /// The decrypted credential of `service`. Only the credential source
    /// (behind a checkout) and the vault's own rotation read it.
    pub(crate) async fn credential(&self, service: &Service) -> Result<Option<Credential>> {
        let Some(stored) = self.store.credential(&service.id).await? else {
            return Ok(None);
        };
        let plain = self.decrypt(&stored, &service.name).await?;
        let text = String::from_utf8(plain.expose().clone()).map_err(|_| {
            Error::new(
                ErrorKind::Storage,
                format!("stored credential of `{}` is not text", service.name),
            )
        })?;
        Ok(Some(Credential {
            username: stored.username,
            kind: stored.kind,
            secret: Secret::new(text),
        }))
    }

    async fn decrypt(&self, stored: &StoredCredential, name: &str) -> Result<Secret<Vec<u8>>> {
        let key = self.key(stored.key_version).await?;
        Self::decrypt_with(&key, stored, name)
    }

    fn decrypt_with(key: &Key, stored: &StoredCredential, name: &str) -> Result<Secret<Vec<u8>>> {
        let aad = crypto::credential_aad(
            &stored.service_id,
            stored.key_version,
            stored.kind,
            &stored.username,
        );
        crypto::open(
            key,
            &aad,
            &stored.ciphertext,
            &format!("stored credential of service `{name}`"),
        )
    }

    /// Rotates the data key: a new version encrypts every credential (each
    /// swapped only if unchanged meanwhile), then the old versions are
    /// retired and their wrapped keys erased. Reads go on throughout: a row
    /// names its version, and old keys stay loaded until no row uses them.
    pub async fn rotate_data_key(&self) -> Result<Rotation> {
        let _w = self.writer.lock().await;
        self.reload().await?;
        let rows = self.store.vault_keys().await?;
        let version = rows.iter().map(|r| r.version).max().unwrap_or(0) + 1;
        let like = rows.iter().rev().find(|r| r.retired_at.is_none());
        let key = self.add_version(version, like).await.map_err(|e| {
            if e.kind() == ErrorKind::Conflict {
                Error::conflict("another rotation of the vault's data key is under way; try again")
            } else {
                e
            }
        })?;
        {
            let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
            keys.map.insert(version, key.clone());
            keys.current = version;
        }
        let mut reencrypted = 0;
        for _pass in 0..3 {
            let stale: Vec<_> = self
                .store
                .list_credentials()
                .await?
                .into_iter()
                .filter(|c| c.key_version != version)
                .collect();
            if stale.is_empty() {
                break;
            }
            for c in stale {
                // The writer lock is held: load a version another node
                // made here, never through `key`.
                if self.loaded_key(c.key_version).is_none() {
                    self.reload().await?;
                }
                let old = self
                    .loaded_key(c.key_version)
                    .ok_or_else(|| missing_key(c.key_version))?;
                let plain = Self::decrypt_with(&old, &c, c.service_id.as_str())?;
                let aad = crypto::credential_aad(&c.service_id, version, c.kind, &c.username);
                let sealed = crypto::seal(&key, &aad, plain.expose())?;
                if self
                    .store
                    .reencrypt_credential(
                        &c.service_id,
                        c.key_version,
                        &c.ciphertext,
                        version,
                        &sealed,
                    )
                    .await?
                {
                    reencrypted += 1;
                }
            }
        }
        let mut retired = Vec::new();
        for old in rows
            .iter()
            .filter(|r| r.retired_at.is_none() && r.version != version)
        {
            match self
                .store
                .retire_vault_key(old.version, Timestamp::now())
                .await
            {
                Ok(()) => retired.push(old.version),
                Err(e) if e.kind() == ErrorKind::Conflict => {
                    tracing::warn!(
                        version = old.version,
                        "a vault data key stays in use after rotation"
                    );
                }
                Err(e) => return Err(e),
            }
        }
        self.reload().await?;
        Ok(Rotation {
            version,
            reencrypted,
            retired,
        })
    }
}

fn missing_key(version: i64) -> Error {
    Error::new(
        ErrorKind::Storage,
        format!("vault data key v{version} is retired or missing"),
    )
}

fn validate_username(username: &str) -> Result<()> {
    if username.is_empty() || username.len() > MAX_USERNAME {
        return Err(Error::invalid(format!(
            "the credential's username must be 1-{MAX_USERNAME} characters"
        )));
    }
    if username.chars().any(char::is_control) {
        return Err(Error::invalid(
            "the credential's username must not hold control characters",
        ));
    }
    Ok(())
}
