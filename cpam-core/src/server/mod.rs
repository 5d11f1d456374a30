//! The server as one library type: [`Server::open`] opens its state (a data
//! dir or a database URL), recovers what this node left behind and builds
//! the engine and the SSH hub; [`Server::start`] serves. The reference
//! binary, the C ABI and the Python package all run a server through it.
//!
//! Several servers (nodes) may share one PostgreSQL database. Each has a
//! node id; at start-up a node closes only the sessions *it* left open and
//! marks offline only the gatekeepers whose link *it* held, so starting a
//! second node never ends the first one's work. Nodes register in the
//! store's node list and write a heartbeat; a survivor cleans up after a
//! node whose heartbeat stopped (`nodes.rs`).

#[cfg(feature = "web")]
mod console;
mod control;
mod data_dir;
mod limits;
mod manage;
mod nodes;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::task::JoinHandle;

#[cfg(feature = "web")]
pub use console::ConsoleOptions;
pub use control::{ControlRequest, control, serve_control};
pub use data_dir::{DEFAULT_WEB_LISTEN, DataDir, ServerConfig, VAULT_KEY_FILE};
pub use limits::raise_open_files_limit;
pub use manage::LiveWatch;
#[cfg(feature = "web")]
pub(crate) use manage::audit_watch;
pub use nodes::{
    HEARTBEAT_EVERY, NODE_LOST, NODE_TIMEOUT, NodeStatus, list as list_nodes,
    reap as reap_lost_nodes,
};

use crate::admin::Admin;
use crate::audit::{Anchor, AuditSink, AuditTap, CheckpointLog, StoreAuditSink, TappedAuditSink};
use crate::error::{Error, Result};
use crate::model::{AuditCategory, AuditEvent, Timestamp};
use crate::proxy::ssh::{BrowserTerminal, SshProxy, SshProxyOptions, StorePins};
use crate::record::{
    self, LiveHub, Recorder, RecorderOptions, RecordingStorage, RecordingStore, SealHook,
    SignedManifest,
};
use crate::session::SessionEngine;
use crate::store::{SqlStore, Store};
use crate::tunnel::hub::{Hub, HubConfig};
use crate::tunnel::{self, PeerDialer, keys};
use crate::vault::{StoreMasterPasswords, UnsealSecret, Vault, VaultCredentialSource};

/// The node id of a server whose data dir names none (made before nodes
/// existed) and of servers over a bare database URL.
pub const DEFAULT_NODE_ID: &str = "default";

/// Where a server keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A data dir made by `cpam-server init`: database, host key, listen
    /// address, control socket.
    DataDir(PathBuf),
    /// A database URL (`sqlite:///path/cpam.db`, `sqlite::memory:`,
    /// `postgres://...`): a fresh host key each time, `127.0.0.1:0`, no
    /// control socket.
    Database(String),
}

impl Source {
    /// A database URL when `text` looks like one, else a data dir path.
    pub fn parse(text: &str) -> Source {
        if text.contains("://") || text.starts_with("sqlite:") {
            Source::Database(text.to_string())
        } else {
            Source::DataDir(PathBuf::from(text))
        }
    }
}

/// Builds the audit sink the engine writes to from the opened store, for a
/// product that keeps its audit log elsewhere. To see the records while the
/// store keeps them, set an [`AuditTap`] instead ([`Server::set_audit_tap`]).
pub type AuditSinkFactory = Box<dyn FnOnce(Arc<dyn Store>) -> Arc<dyn AuditSink> + Send>;

/// How [`Server::open`] sets a server up.
#[derive(Default)]
pub struct ServerOptions {
    /// This node's id; default: the data dir's `node_id`, else
    /// [`DEFAULT_NODE_ID`].
    pub node_id: Option<String>,
    /// The audit sink; default: the store's own audit log, with a tap
    /// ([`Server::set_audit_tap`]).
    pub audit: Option<AuditSinkFactory>,
    /// Marks the `server.start` audit record as an embedded server's.
    pub embedded: bool,
    /// How terminal sessions are recorded (a data dir's server only; where
    /// to, see `recordings`); default: the data
    /// dir's `record_input`, mandatory recordings.
    pub recording: Option<RecorderOptions>,
    /// Where recordings are kept (a data dir's server); default: files
    /// under `<data dir>/recordings/`.
    pub recordings: RecordingStorage,
    /// What unseals the vault; default: over a data dir, its key file (or
    /// `CPAM_VAULT_PASSPHRASE`); over a database URL, the passphrase
    /// variable if set, else the vault stays sealed.
    pub vault: Option<UnsealSecret>,
    /// Where the other nodes reach this one (`HOST:PORT` of its hub, as
    /// they can dial it); default: the address the hub is bound to, right
    /// only when that is a specific address.
    pub peer_address: Option<String>,
}

impl std::fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerOptions")
            .field("node_id", &self.node_id)
            .field("audit", &self.audit.as_ref().map(|_| "custom"))
            .field("embedded", &self.embedded)
            .field("recording", &self.recording)
            .field("recordings", &self.recordings)
            .field("vault", &self.vault.as_ref().map(UnsealSecret::kind))
            .field("peer_address", &self.peer_address)
            .finish()
    }
}

/// A server: store, session engine and SSH hub, and what it serves once
/// started (the hub's port, the control socket, tasks added with
/// [`Server::spawn`]).
#[derive(Debug)]
pub struct Server {
    data: Option<DataDir>,
    hub: Arc<Hub>,
    /// The unsealed vault, when the server has an unseal secret.
    vault: Option<Arc<Vault>>,
    /// The default audit sink, whose tap [`Server::set_audit_tap`] sets.
    tapped: Option<Arc<TappedAuditSink>>,
    node_id: String,
    /// The key this node signs in to other nodes with (made at each start).
    node_key: Arc<russh::keys::PrivateKey>,
    peer_address: Option<String>,
    /// The links to the other nodes (the peer relay, live views).
    peers: Arc<PeerDialer>,
    listen: String,
    embedded: bool,
    recovered: Recovered,
    /// Writes every terminal session's recordings (a data dir's server).
    recorder: Option<Arc<Recorder>>,
    /// Every live terminal session's screen, for watchers.
    live: Arc<LiveHub>,
    /// Runs browser terminals through the SSH proxy.
    terminal: BrowserTerminal,
    /// Runs browser desktops through the RDP proxy.
    #[cfg(feature = "rdp")]
    desktop: crate::proxy::rdp::BrowserDesktop,
    /// Signs checkpoints of the audit chain (a data dir's server).
    anchor: Option<Arc<Anchor>>,
    serving: Mutex<Option<Serving>>,
    /// A stopped server cannot start again.
    stopped: AtomicBool,
    /// Set while the hub accepts connections (`/readyz`).
    ready: Arc<AtomicBool>,
    /// Whether this node's last heartbeat reached the database.
    db_ok: Arc<AtomicBool>,
}

#[derive(Debug)]
struct Serving {
    addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

/// What start-up recovery did (also in the `server.start` audit record).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Sessions this node left open, now closed with reason `error`.
    pub sessions_closed: u64,
    /// Gatekeepers whose link this node held, now marked offline.
    pub gatekeepers_offline: u64,
    /// Recordings a stop cut short, now sealed `incomplete`.
    pub recordings_sealed: u64,
}

impl Server {
    /// Opens `source`, brings the built-in roles up to date, recovers what
    /// this node left behind (see [`recover`]) and builds the engine and hub.
    /// Nothing listens until [`Server::start`].
    pub async fn open(source: &Source, options: ServerOptions) -> Result<Server> {
        let (data, store, key, listen) = match source {
            Source::DataDir(path) => {
                let data = DataDir::open(path)?;
                let store = data.store().await?;
                let key = data.host_key()?;
                let listen = data.config.listen.clone();
                (Some(data), store, key, listen)
            }
            Source::Database(url) => {
                let store: Arc<dyn Store> = Arc::new(SqlStore::connect(url).await?);
                (None, store, keys::generate()?, "127.0.0.1:0".to_string())
            }
        };
        let node_id = options
            .node_id
            .or_else(|| data.as_ref().and_then(|d| d.config.node_id.clone()))
            .unwrap_or_else(|| DEFAULT_NODE_ID.to_string());
        validate_node_id(&node_id)?;
        // Before anything else changes: a wrong or missing vault key refuses
        // the start with an error naming it.
        let secret = match (options.vault, &data) {
            (Some(secret), _) => Some(secret),
            (None, Some(data)) => Some(data.unseal_secret(&store).await?),
            (None, None) => UnsealSecret::from_env().transpose()?,
        };
        let vault = match secret {
            Some(secret) => Some(Vault::unseal(store.clone(), secret).await?),
            None => None,
        };
        // Before recovery: a second process with a live node's id must not
        // close that node's sessions.
        let node_key = Arc::new(keys::generate()?);
        let node_public = keys::public_openssh(node_key.public_key());
        let peer_address = options.peer_address.clone();
        nodes::register(
            &store,
            &node_id,
            peer_address.as_deref().unwrap_or(&listen),
            &node_public,
        )
        .await?;
        ensure_builtin_roles(&store).await?;
        let mut recovered = recover(&store, &node_id, Timestamp::now()).await?;
        let mut sealed_now = Vec::new();
        let recordings = match &data {
            Some(data) => {
                let recordings = data.recording_store(&options.recordings)?;
                let r = recordings.clone();
                let sealed = tokio::task::spawn_blocking(move || r.seal_abandoned())
                    .await
                    .map_err(|e| Error::internal(format!("sealing recordings: {e}")))??;
                for id in &sealed {
                    tracing::warn!(recording = %id, "sealed a recording cut short as incomplete");
                }
                recovered.recordings_sealed = sealed.len() as u64;
                for id in sealed {
                    if let Some(m) = recordings.manifest(&id)? {
                        sealed_now.push(m);
                    }
                }
                Some(recordings)
            }
            None => None,
        };
        if recovered != Recovered::default() {
            tracing::info!(
                node = %node_id,
                sessions = recovered.sessions_closed,
                gatekeepers = recovered.gatekeepers_offline,
                recordings = recovered.recordings_sealed,
                "recovered what this node left behind"
            );
        }
        let (audit, tapped): (Arc<dyn AuditSink>, _) = match options.audit {
            Some(make) => (make(store.clone()), None),
            None => {
                let sink = Arc::new(TappedAuditSink::new(store.clone()));
                (sink.clone(), Some(sink))
            }
        };
        let engine = SessionEngine::new(store, audit);
        engine.set_node(&node_id)?;
        let recorder = recordings.map(|store| {
            let options = options.recording.unwrap_or_else(|| RecorderOptions {
                record_input: data.as_ref().is_some_and(|d| d.config.record_input),
                ..RecorderOptions::default()
            });
            // Every seal is audited; the engine is held weakly (it holds
            // the recorder).
            let weak = Arc::downgrade(&engine);
            let mut recorder = Recorder::new(store, options);
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                recorder = recorder.on_sealed(SealHook(Arc::new(move |m: &SignedManifest| {
                    if let Some(engine) = weak.upgrade() {
                        let event = record::sealed_event(m);
                        rt.spawn(async move { engine.record(event).await });
                    }
                })));
            }
            let recorder = Arc::new(recorder);
            engine.add_observer_factory(recorder.clone());
            recorder
        });
        let live = LiveHub::new();
        engine.add_observer_factory(live.clone());
        for m in &sealed_now {
            engine.record(record::sealed_event(m)).await;
        }
        if let Some(vault) = &vault {
            engine.set_credential_source(Some(Arc::new(VaultCredentialSource::new(vault.clone()))));
        }
        let mut config = HubConfig::new(key.clone());
        let peers = Arc::new(PeerDialer::new(
            config.gatekeepers.clone(),
            engine.store().clone(),
            &node_id,
            node_key.clone(),
            key.public_key().clone(),
            NODE_TIMEOUT,
        ));
        config.dialer = peers.clone();
        config.live = Some(live.clone());
        if let Some(data) = &data {
            config.limits = data.config.hub_limits.clone();
            config.ssh_passwords = data.config.ssh_password_login;
        }
        let masters = StoreMasterPasswords::new(
            engine.store().clone(),
            engine.audit().clone(),
            config.throttle.clone(),
        );
        let proxy = Arc::new(
            SshProxy::new(
                key.clone(),
                Arc::new(masters),
                Arc::new(StorePins::new(engine.store().clone())),
                SshProxyOptions::default(),
            )
            .with_file_policies(Arc::new(crate::proxy::sftp::StoreFilePolicies::new(
                engine.store().clone(),
            ))),
        );
        config.privileged_ssh = Some(proxy.clone());
        #[cfg(feature = "rdp")]
        let desktop = {
            let proxy = Arc::new(rdp_proxy(data.as_ref(), engine.store())?);
            config.privileged_rdp = Some(crate::tunnel::hub::PrivilegedRdp {
                proxy: proxy.clone(),
                credentials: proxy.credentials().clone(),
            });
            crate::proxy::rdp::BrowserDesktop {
                engine: engine.clone(),
                proxy,
                dialer: config.dialer.clone(),
                live: live.clone(),
                throttle: config.throttle.clone(),
            }
        };
        let terminal = BrowserTerminal {
            engine: engine.clone(),
            proxy,
            dialer: config.dialer.clone(),
            host_key: key.public_key().clone(),
        };
        let anchor = match &data {
            Some(data) => Some(Arc::new(Anchor::new(
                engine.store().clone(),
                record::RecordingKey::from_host_key(&data.host_key()?)?,
                CheckpointLog::in_dir(&data.path),
            ))),
            None => None,
        };
        let hub = Hub::with_config(engine, config);
        Ok(Server {
            anchor,
            data,
            hub,
            vault,
            tapped,
            node_id,
            node_key,
            peer_address,
            peers,
            listen,
            embedded: options.embedded,
            recovered,
            recorder,
            live,
            terminal,
            #[cfg(feature = "rdp")]
            desktop,
            serving: Mutex::new(None),
            stopped: AtomicBool::new(false),
            ready: Arc::new(AtomicBool::new(false)),
            db_ok: Arc::new(AtomicBool::new(true)),
        })
    }

    /// Starts serving gatekeepers and Connection Managers on `listen`
    /// (`IP:PORT`, port 0 for a free one; `None`: the configured address) in
    /// the background, and over a data dir the control socket. Returns the
    /// bound address. A stopped server cannot start again.
    pub async fn start(&self, listen: Option<&str>) -> Result<SocketAddr> {
        let listen = listen.unwrap_or(&self.listen);
        let addr: SocketAddr = listen
            .parse()
            .map_err(|_| Error::invalid(format!("listen address `{listen}` must be IP:PORT")))?;
        if self.stopped.load(Ordering::SeqCst) {
            return Err(Error::invalid("the server was stopped; open a new one"));
        }
        if self.lock().is_some() {
            return Err(Error::invalid("the server is already running"));
        }
        let listener = tunnel::bind_listener(addr)?;
        let addr = listener.local_addr()?;
        // Before the first connection is accepted (they queue meanwhile).
        let mut detail = json!({
            "listen": addr.to_string(),
            "node": self.node_id,
            "embedded": self.embedded,
            "orphan_sessions_closed": self.recovered.sessions_closed,
            "gatekeepers_marked_offline": self.recovered.gatekeepers_offline,
        });
        if self.recorder.is_some() {
            detail["recordings_sealed_incomplete"] = json!(self.recovered.recordings_sealed);
        }
        self.engine()
            .record(AuditEvent {
                at: Timestamp::now(),
                category: AuditCategory::SystemMessages,
                action: "server.start".into(),
                actor: "system".into(),
                customer_id: None,
                session_id: None,
                detail,
            })
            .await;
        // The bound address is where peers reach this node.
        let me = nodes::row(
            &self.node_id,
            &self
                .peer_address
                .clone()
                .unwrap_or_else(|| addr.to_string()),
            &keys::public_openssh(self.node_key.public_key()),
            Timestamp::now(),
        );
        self.store().register_node(&me, Timestamp(i64::MAX)).await?;
        let cluster = self
            .engine()
            .join_cluster(self.store().control_bus())
            .await?;
        let heartbeat = nodes::spawn_heartbeat(
            self.engine().clone(),
            me,
            self.hub.gatekeepers().clone(),
            self.db_ok.clone(),
            self.recordings().cloned(),
        );
        self.ready.store(true, Ordering::SeqCst);
        let mut tasks = vec![cluster, heartbeat, {
            let hub = self.hub.clone();
            let ready = self.ready.clone();
            tokio::spawn(async move {
                if let Err(error) = hub.serve(listener).await {
                    tracing::error!(%error, "the hub stopped");
                }
                ready.store(false, Ordering::SeqCst);
            })
        }];
        if let (Some(anchor), Some(data)) = (&self.anchor, &self.data) {
            let every = Duration::from_secs(data.config.audit_checkpoint_secs);
            tasks.push(anchor.every(every));
        }
        if let Some(path) = self.control_socket() {
            let engine = self.engine().clone();
            tasks.push(tokio::spawn(async move {
                if let Err(error) = serve_control(&path, engine).await {
                    tracing::error!(%error, "the control socket stopped");
                }
            }));
        }
        let mut serving = self.lock();
        if serving.is_some() {
            for task in tasks {
                task.abort();
            }
            return Err(Error::invalid("the server is already running"));
        }
        *serving = Some(Serving { addr, tasks });
        Ok(addr)
    }

    /// The links to the other nodes of the cluster: the server's dialer,
    /// and live views of sessions other nodes run.
    pub fn peers(&self) -> &Arc<PeerDialer> {
        &self.peers
    }

    /// Runs `task` until the server stops (e.g. the console next to the hub).
    pub fn spawn<F>(&self, task: F) -> Result<()>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let mut serving = self.lock();
        let serving = serving
            .as_mut()
            .ok_or_else(|| Error::new(crate::ErrorKind::Conflict, "the server is not running"))?;
        serving.tasks.push(tokio::spawn(task));
        Ok(())
    }

    /// Sets (or with `None`, removes) the tap that sees every audit record
    /// once it is sealed and stored. Fails with `Conflict` on a server
    /// opened with an audit sink of its own ([`ServerOptions::audit`]).
    pub fn set_audit_tap(&self, tap: Option<Arc<dyn AuditTap>>) -> Result<()> {
        let sink = self.tapped.as_ref().ok_or_else(|| {
            Error::new(
                crate::ErrorKind::Conflict,
                "this server writes to an audit sink of its own; tap that one",
            )
        })?;
        sink.set_tap(tap);
        Ok(())
    }

    /// Stops `task` (already spawned) when the server stops.
    pub fn adopt(&self, task: JoinHandle<()>) -> Result<()> {
        let mut serving = self.lock();
        match serving.as_mut() {
            Some(serving) => {
                serving.tasks.push(task);
                Ok(())
            }
            None => {
                task.abort();
                Err(Error::new(
                    crate::ErrorKind::Conflict,
                    "the server is not running",
                ))
            }
        }
    }

    /// Stops listening and ends live sessions, letting them write their end
    /// records for at most `grace`. The server cannot start again.
    pub async fn stop(&self, grace: Duration) {
        self.stopped.store(true, Ordering::SeqCst);
        let serving = self.lock().take();
        if serving.is_some() {
            self.ready.store(false, Ordering::SeqCst);
            self.hub.shutdown(grace).await;
        }
        if let Some(recorder) = self.recorder.clone() {
            // The ended sessions' recordings are sealed before the process
            // may exit, also those of sessions run through the engine
            // without the hub serving.
            // Then uploaded, if they go to an object store (what is not
            // stays spooled for the next start).
            let _ = tokio::task::spawn_blocking(move || {
                recorder.wait_sealed(grace) && recorder.store().flush(grace)
            })
            .await;
        }
        if let Some(serving) = serving {
            for task in serving.tasks {
                task.abort();
                let _ = tokio::time::timeout(grace, task).await;
            }
            if let Some(path) = self.control_socket() {
                let _ = std::fs::remove_file(path);
            }
        }
        // A clean stop leaves no lease behind: the id is free at once.
        if let Err(error) = self.store().remove_node(&self.node_id).await {
            tracing::warn!(%error, "cannot remove this node from the node list");
        }
        // The head as it is at shutdown, after the last sessions' ends.
        if let Some(anchor) = &self.anchor
            && let Err(error) = anchor.checkpoint().await
        {
            tracing::error!(%error, "cannot sign the audit checkpoint at shutdown");
        }
    }

    /// What signs checkpoints of the audit chain into
    /// `<data dir>/audit-checkpoints.jsonl` (a data dir's server).
    pub fn anchor(&self) -> Option<&Arc<Anchor>> {
        self.anchor.as_ref()
    }

    /// True once [`Server::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// The address the hub listens on, while it runs.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.lock().as_ref().map(|s| s.addr)
    }

    /// The session engine.
    pub fn engine(&self) -> &Arc<SessionEngine> {
        self.hub.engine()
    }

    /// The SSH hub.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        self.engine().store()
    }

    /// Where terminal sessions are recorded (a data dir's server).
    pub fn recordings(&self) -> Option<&Arc<dyn RecordingStore>> {
        self.recorder.as_ref().map(|r| r.store())
    }

    /// The recorder registered on the engine (a data dir's server).
    pub fn recorder(&self) -> Option<&Arc<Recorder>> {
        self.recorder.as_ref()
    }

    /// The live view of terminal sessions (see [`LiveHub::watch`]).
    pub fn live(&self) -> &Arc<LiveHub> {
        &self.live
    }

    /// Runs browser terminals: privileged SSH sessions whose user is a
    /// web page, through the same proxy and dialer as the hub's.
    pub fn browser_terminal(&self) -> &BrowserTerminal {
        &self.terminal
    }

    /// Runs browser desktops: privileged RDP sessions whose user is a web
    /// page, through the same proxy and dialer as the hub's.
    #[cfg(feature = "rdp")]
    pub fn browser_desktop(&self) -> &crate::proxy::rdp::BrowserDesktop {
        &self.desktop
    }

    /// The unsealed vault, when the server has an unseal secret (the
    /// engine's credential source is then the vault's, gated by checkouts,
    /// until the integrator sets another).
    pub fn vault(&self) -> Option<&Arc<Vault>> {
        self.vault.as_ref()
    }

    /// The data dir, when opened from one.
    pub fn data_dir(&self) -> Option<&DataDir> {
        self.data.as_ref()
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// What start-up recovery did.
    pub fn recovered(&self) -> Recovered {
        self.recovered
    }

    /// The configured listen address.
    pub fn listen(&self) -> &str {
        &self.listen
    }

    /// True while the hub accepts connections.
    pub fn ready(&self) -> &Arc<AtomicBool> {
        &self.ready
    }

    /// Whether this node's last heartbeat reached the database.
    pub fn database_reachable(&self) -> bool {
        self.db_ok.load(Ordering::SeqCst)
    }

    /// The nodes sharing this server's store, with their state now.
    pub async fn nodes(&self) -> Result<Vec<NodeStatus>> {
        nodes::list(self.store(), Timestamp::now()).await
    }

    fn control_socket(&self) -> Option<PathBuf> {
        self.data.as_ref().map(DataDir::control_socket)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Serving>> {
        self.serving.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Creates the built-in roles that are missing and brings the permissions
/// of existing ones up to date with this version.
pub async fn ensure_builtin_roles(store: &Arc<dyn Store>) -> Result<()> {
    let audit = Arc::new(StoreAuditSink::new(store.clone()));
    Admin::new(store.clone(), audit, "system")
        .ensure_builtin_roles()
        .await
}

/// Start-up recovery for `node`: a server that stopped without saying so
/// left its sessions open and its gatekeepers marked online (they reconnect,
/// and are marked online again, within seconds). Only what this node held
/// (and what was recorded before nodes were named) is touched: other nodes'
/// sessions and gatekeeper links are theirs.
pub async fn recover(store: &Arc<dyn Store>, node: &str, now: Timestamp) -> Result<Recovered> {
    let released = store.release_node_gatekeepers(node).await?;
    let sessions_closed = store
        .close_node_sessions(node, now, "server stopped while the session was live")
        .await?;
    Ok(Recovered {
        sessions_closed,
        gatekeepers_offline: released.len() as u64,
        recordings_sealed: 0,
    })
}

/// A fresh node id (`node-` and 8 random base32 characters).
pub fn generate_node_id() -> String {
    format!("node-{}", crate::model::random_token(5))
}

fn validate_node_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "node id `{id}` must be 1 to 64 letters, digits, `-`, `_` or `.`"
        )))
    }
}

/// The RDP proxy: the console's certificate from the data dir when there is
/// one (clients that trust the console trust it), else a self-signed one.
#[cfg(feature = "rdp")]
fn rdp_proxy(
    data: Option<&DataDir>,
    store: &Arc<dyn Store>,
) -> Result<crate::proxy::rdp::RdpProxy> {
    use crate::proxy::rdp::{ProxyCredentials, ProxyTls, RdpProxy, StoreCertificatePins};
    let files = data.map(|d| (d.web_cert_path(), d.web_key_path()));
    let tls = match files {
        Some((cert, key)) if cert.is_file() && key.is_file() => {
            let read = |p: &std::path::Path| {
                std::fs::read(p).map_err(|e| {
                    Error::new(
                        crate::error::ErrorKind::Io,
                        format!("reading {}: {e}", p.display()),
                    )
                })
            };
            ProxyTls::from_pem(&read(&cert)?, &read(&key)?)?
        }
        _ => ProxyTls::self_signed()?,
    };
    Ok(RdpProxy::new(
        tls,
        Arc::new(ProxyCredentials::new()),
        Arc::new(StoreCertificatePins::new(store.clone())),
        Default::default(),
    ))
}
