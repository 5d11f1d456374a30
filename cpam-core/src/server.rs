//! A server's data dir (`config.json`, host key, SQLite database) and the
//! control socket through which admin commands reach a running server.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::error::{Error, ErrorKind, Result};
use crate::model::SessionId;
use crate::session::SessionEngine;
use crate::store::{Directory, SqlStore, Store};
use crate::tunnel::keys;

const CONFIG_FILE: &str = "config.json";
const HOST_KEY_FILE: &str = "host_key";
const CONTROL_SOCKET: &str = "control.sock";

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
}

/// The console's default listen address.
pub const DEFAULT_WEB_LISTEN: &str = "127.0.0.1:8443";

fn default_web_listen() -> String {
    DEFAULT_WEB_LISTEN.to_string()
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
        };
        let store = SqlStore::connect(&config.database).await?;
        for role in crate::model::builtin_roles() {
            if !store
                .list_roles()
                .await?
                .iter()
                .any(|r| r.name == role.name)
            {
                store.put_role(&role).await?;
            }
        }
        let key = keys::generate()?;
        keys::save_private(&key, &path.join(HOST_KEY_FILE))?;
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

    /// The control socket path.
    pub fn control_socket(&self) -> PathBuf {
        self.path.join(CONTROL_SOCKET)
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| {
        Error::from(e).context(&format!("cannot set permissions of {}", path.display()))
    })
}

/// A request on the control socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ControlRequest {
    /// End a live session (`terminated_by`).
    Terminate {
        session: SessionId,
        by: String,
        reason: Option<String>,
    },
    /// Re-decide live sessions after a grant or user changed.
    Recheck,
    /// List live sessions with current byte counts.
    Live,
}

/// Serves the control socket for `engine` until the task is dropped.
pub async fn serve_control(path: &Path, engine: Arc<SessionEngine>) -> Result<()> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)
        .map_err(|e| Error::from(e).context(&format!("cannot listen on {}", path.display())))?;
    set_mode(path, 0o600)?;
    loop {
        let (stream, _) = listener.accept().await?;
        let engine = engine.clone();
        tokio::spawn(async move {
            if let Err(error) = control_connection(stream, engine).await {
                tracing::debug!(%error, "control connection failed");
            }
        });
    }
}

async fn control_connection(stream: UnixStream, engine: Arc<SessionEngine>) -> Result<()> {
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    while let Some(line) = lines.next_line().await? {
        let answer = match serde_json::from_str::<ControlRequest>(&line) {
            Err(e) => json!({ "error": format!("malformed request: {e}") }),
            Ok(ControlRequest::Terminate {
                session,
                by,
                reason,
            }) => {
                json!({ "ok": engine.terminate(&session, &by, reason.as_deref()) })
            }
            Ok(ControlRequest::Recheck) => match engine.recheck().await {
                Ok(n) => json!({ "ok": true, "ended": n }),
                Err(e) => json!({ "error": e.to_string() }),
            },
            Ok(ControlRequest::Live) => json!({ "ok": true, "sessions": engine.live() }),
        };
        w.write_all(format!("{answer}\n").as_bytes()).await?;
    }
    Ok(())
}

/// Sends one request to the running server behind `path`.
pub async fn control(path: &Path, request: &ControlRequest) -> Result<serde_json::Value> {
    let stream = UnixStream::connect(path).await.map_err(|e| {
        Error::new(
            ErrorKind::TunnelUnavailable,
            format!("the server is not running ({}: {e})", path.display()),
        )
    })?;
    let (r, mut w) = stream.into_split();
    let line = serde_json::to_string(request).map_err(|e| Error::internal(e.to_string()))?;
    w.write_all(format!("{line}\n").as_bytes()).await?;
    let answer = BufReader::new(r)
        .lines()
        .next_line()
        .await?
        .ok_or_else(|| Error::new(ErrorKind::Protocol, "the server closed the control socket"))?;
    let v: serde_json::Value = serde_json::from_str(&answer).map_err(|e| {
        Error::new(
            ErrorKind::Protocol,
            format!("malformed control answer: {e}"),
        )
    })?;
    if let Some(err) = v.get("error") {
        return Err(Error::internal(
            err.as_str().unwrap_or("control request failed").to_string(),
        ));
    }
    Ok(v)
}
