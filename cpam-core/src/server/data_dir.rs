//! A server's data dir: `config.json`, the host key, the vault's key file,
//! the SQLite database, the console's certificate and the session
//! recordings.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::record::{FileRecordingStore, RecordingKey, RecordingStorage, RecordingStore};
use crate::store::{SqlStore, Store};
use crate::tunnel::keys;
use crate::vault::UnsealSecret;

const CONFIG_FILE: &str = "config.json";
const HOST_KEY_FILE: &str = "host_key";
const CONTROL_SOCKET: &str = "control.sock";
const RECORDINGS_DIR: &str = "recordings";
/// The vault's key file in the data dir.
pub const VAULT_KEY_FILE: &str = "vault.key";

/// `DIR/config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Where the SSH port listens.
    pub listen: String,
    /// `sqlite://...` or `postgres://...`.
    pub database: String,
    /// The address written into exported profiles (defaults to `listen`).
    #[serde(default)]
    pub public_address: Option<String>,
    /// Where the web console listens.
    #[serde(default = "default_web_listen")]
    pub web_listen: String,
    /// The console's TLS certificate (PEM); default `web_cert.pem` in the data dir.
    #[serde(default)]
    pub web_cert: Option<PathBuf>,
    /// The console's TLS key (PEM); default `web_key.pem` in the data dir.
    #[serde(default)]
    pub web_key: Option<PathBuf>,
    /// A console session ends after this long without a request.
    #[serde(default = "default_web_idle_timeout_secs")]
    pub web_idle_timeout_secs: u64,
    /// This server's name among the nodes sharing one database (`init`
    /// generates one; a data dir made before nodes existed is `default`).
    #[serde(default)]
    pub node_id: Option<String>,
    /// Record what users type in terminal sessions (`"i"` events; never
    /// while the target has echo off).
    #[serde(default)]
    pub record_input: bool,
    /// Seconds between signed checkpoints of the audit chain's head
    /// (`audit-checkpoints.jsonl`), taken while records are appended.
    #[serde(default = "default_audit_checkpoint_secs")]
    pub audit_checkpoint_secs: u64,
    /// What one client may hold on the SSH port (connections not signed in
    /// yet, channels, timeouts); every field has a default.
    #[serde(default)]
    pub hub_limits: crate::tunnel::hub::HubLimits,
    /// Let users sign in over SSH with their console password (off: only
    /// keys, a profile's key bound to its gatekeeper).
    #[serde(default)]
    pub ssh_password_login: bool,
}

/// The console's default listen address.
pub const DEFAULT_WEB_LISTEN: &str = "127.0.0.1:8443";

fn default_web_listen() -> String {
    DEFAULT_WEB_LISTEN.to_string()
}

fn default_audit_checkpoint_secs() -> u64 {
    crate::audit::checkpoint::DEFAULT_CHECKPOINT_INTERVAL.as_secs()
}

fn default_web_idle_timeout_secs() -> u64 {
    30 * 60
}

/// An opened data dir.
#[derive(Debug)]
pub struct DataDir {
    pub path: PathBuf,
    pub config: ServerConfig,
}

impl DataDir {
    /// Creates a new data dir; refuses an existing one that holds a config.
    pub async fn init(path: &Path, listen: &str, database: Option<&str>) -> Result<DataDir> {
        if path.join(CONFIG_FILE).exists() {
            return Err(Error::invalid(format!(
                "{} already holds a cpam server; refusing to overwrite it",
                path.display()
            )));
        }
        listen
            .parse::<std::net::SocketAddr>()
            .map_err(|_| Error::invalid(format!("listen address `{listen}` must be IP:PORT")))?;
        std::fs::create_dir_all(path)
            .map_err(|e| Error::from(e).context(&format!("cannot create {}", path.display())))?;
        set_mode(path, 0o700)?;
        let database = match database {
            Some(url) => url.to_string(),
            None => format!("sqlite://{}", path.join("cpam.db").display()),
        };
        let config = ServerConfig {
            listen: listen.to_string(),
            database,
            public_address: None,
            web_listen: default_web_listen(),
            web_cert: None,
            web_key: None,
            web_idle_timeout_secs: default_web_idle_timeout_secs(),
            node_id: Some(super::generate_node_id()),
            record_input: false,
            audit_checkpoint_secs: default_audit_checkpoint_secs(),
            hub_limits: Default::default(),
            ssh_password_login: false,
        };
        let store: Arc<dyn Store> = Arc::new(SqlStore::connect(&config.database).await?);
        super::ensure_builtin_roles(&store).await?;
        let key = keys::generate()?;
        keys::save_private(&key, &path.join(HOST_KEY_FILE))?;
        // The vault's key file, unless the passphrase variable unseals it or
        // the database's vault is sealed already (another node's database):
        // then this node needs that node's key file, copied in.
        let sealed = !store.vault_keys().await?.is_empty();
        if std::env::var_os(crate::vault::PASSPHRASE_ENV).is_none() && !sealed {
            crate::vault::create_key_file(&path.join(VAULT_KEY_FILE))?;
        } else if sealed {
            tracing::warn!(
                file = %path.join(VAULT_KEY_FILE).display(),
                "the database's vault is sealed already: copy vault.key from a node that shares it (or set {})",
                crate::vault::PASSPHRASE_ENV
            );
        }
        let text =
            serde_json::to_string_pretty(&config).map_err(|e| Error::internal(e.to_string()))?;
        keys::write_private_file(&path.join(CONFIG_FILE), text.as_bytes())?;
        Ok(DataDir {
            path: path.to_path_buf(),
            config,
        })
    }

    /// Opens an existing data dir; errors name the file and field.
    pub fn open(path: &Path) -> Result<DataDir> {
        let file = path.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&file).map_err(|e| {
            Error::from(e).context(&format!(
                "cannot read {} (run `cpam-server init --data-dir {}` first)",
                file.display(),
                path.display()
            ))
        })?;
        let config: ServerConfig = serde_json::from_str(&text)
            .map_err(|e| Error::invalid(format!("{}: {e}", file.display())))?;
        config.listen.parse::<std::net::SocketAddr>().map_err(|_| {
            Error::invalid(format!(
                "{}: field `listen` must be IP:PORT",
                file.display()
            ))
        })?;
        Ok(DataDir {
            path: path.to_path_buf(),
            config,
        })
    }

    /// Writes `config` back to `config.json`.
    pub fn save_config(&self) -> Result<()> {
        let text = serde_json::to_string_pretty(&self.config)
            .map_err(|e| Error::internal(e.to_string()))?;
        keys::write_private_file(&self.path.join(CONFIG_FILE), text.as_bytes())
    }

    /// The console's certificate file.
    pub fn web_cert_path(&self) -> PathBuf {
        self.config
            .web_cert
            .clone()
            .unwrap_or_else(|| self.path.join("web_cert.pem"))
    }

    /// The console's private key file.
    pub fn web_key_path(&self) -> PathBuf {
        self.config
            .web_key
            .clone()
            .unwrap_or_else(|| self.path.join("web_key.pem"))
    }

    /// The database.
    pub async fn store(&self) -> Result<Arc<dyn Store>> {
        Ok(Arc::new(SqlStore::connect(&self.config.database).await?))
    }

    /// The server's host key.
    pub fn host_key(&self) -> Result<russh::keys::PrivateKey> {
        keys::load_private(&self.path.join(HOST_KEY_FILE))
    }

    /// The recordings (`DIR/recordings/`), signed and checked with the
    /// host key.
    pub fn recordings(&self) -> Result<FileRecordingStore> {
        let key = RecordingKey::from_host_key(&self.host_key()?)?;
        FileRecordingStore::open(&self.recordings_dir(), key)
    }

    /// The recordings where `at` says: `DIR/recordings/`, or an object
    /// store spooled there (its reachability checked now, the error naming
    /// it).
    pub fn recording_store(&self, at: &RecordingStorage) -> Result<Arc<dyn RecordingStore>> {
        match at {
            RecordingStorage::DataDir => Ok(Arc::new(self.recordings()?)),
            #[cfg(feature = "s3")]
            RecordingStorage::ObjectStore(config) => {
                let key = RecordingKey::from_host_key(&self.host_key()?)?;
                Ok(Arc::new(crate::record::ObjectRecordingStore::connect(
                    self.recordings()?,
                    config,
                    key,
                    crate::record::UploadOptions::default(),
                )?))
            }
        }
    }

    /// `DIR/recordings/`.
    pub fn recordings_dir(&self) -> PathBuf {
        self.path.join(RECORDINGS_DIR)
    }

    /// Verifies every sealed recording of the data dir, and that every seal
    /// its audit log names is still there (see [`crate::record::verify_all`]).
    pub async fn verify_recordings(&self) -> Result<crate::record::VerifyAll> {
        self.verify_recordings_in(&RecordingStorage::DataDir).await
    }

    /// [`DataDir::verify_recordings`] of the recordings where `at` says.
    pub async fn verify_recordings_in(
        &self,
        at: &RecordingStorage,
    ) -> Result<crate::record::VerifyAll> {
        let store = self.store().await?;
        let audited = store
            .audit_records(&crate::store::AuditFilter {
                actor: Some(crate::record::RECORDER_ACTOR.into()),
                ..crate::store::AuditFilter::default()
            })
            .await?;
        let recordings = self.recording_store(at)?;
        crate::record::verify_all(recordings.as_ref(), &audited)
    }

    /// The vault's key file.
    pub fn vault_key_path(&self) -> PathBuf {
        self.path.join(VAULT_KEY_FILE)
    }

    /// What unseals the vault of `store`: the passphrase in
    /// `CPAM_VAULT_PASSPHRASE` when set, else the key file. A data dir made
    /// before the vault existed gets its key file now, but only while the
    /// vault holds no data key; once it does, a missing key file is an error
    /// naming it, and nothing is created or overwritten.
    pub async fn unseal_secret(&self, store: &Arc<dyn Store>) -> Result<UnsealSecret> {
        if let Some(secret) = UnsealSecret::from_env() {
            return secret;
        }
        let path = self.vault_key_path();
        if !path.exists() {
            if store.vault_keys().await?.is_empty() {
                crate::vault::create_key_file(&path)?;
                tracing::info!(file = %path.display(), "created the vault key file");
            } else {
                return Err(Error::not_found(format!(
                    "the vault key file {} is missing; restore it from a backup (or set {} if the vault is sealed with a passphrase)",
                    path.display(),
                    crate::vault::PASSPHRASE_ENV
                )));
            }
        }
        UnsealSecret::key_file(&path)
    }

    /// The control socket path.
    pub fn control_socket(&self) -> PathBuf {
        self.path.join(CONTROL_SOCKET)
    }
}

pub(super) fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| {
        Error::from(e).context(&format!("cannot set permissions of {}", path.display()))
    })
}
