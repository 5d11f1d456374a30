//! The IP Connect background service: one process for all of a user's
//! profiles. Every `poll` it asks each profile's server for the mode
//! ([`super::resolve`]) and the services the user may use now, maps them
//! ([`Allocator`]), keeps one loopback listener per mapped address and port
//! and publishes the names ([`Resolver`]). Every accepted connection is one
//! session through that profile's tunnel, audited with the local address.

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::alloc::{Allocator, Mapping, Range, ServiceTarget, Skipped};
use super::hosts::Resolver;
use super::mode::{Effective, Resolved, resolve};
use crate::error::{Error, Result};
use crate::tunnel::connect::ConnectClient;

/// The key file in the state directory: the allocator's hash key, so
/// addresses stay the same across restarts.
pub const KEY_FILE: &str = "ipconnect.key";
/// The status file in the state directory, read by `ipconnect status`.
pub const STATUS_FILE: &str = "ipconnect-status.json";

/// How the service runs.
#[derive(Clone)]
pub struct IpConnectConfig {
    /// Where local addresses come from.
    pub range: Range,
    /// The allocator's key ([`load_or_create_key`]).
    pub key: [u8; 32],
    /// How often the mode and the services are read from each server.
    pub poll: Duration,
    /// Where names are published.
    pub resolver: Arc<dyn Resolver>,
    /// Where the status is written for `ipconnect status` (removed on stop).
    pub status_file: Option<PathBuf>,
}

impl std::fmt::Debug for IpConnectConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpConnectConfig")
            .field("range", &self.range)
            .field("poll", &self.poll)
            .field("resolver", &self.resolver.describe())
            .finish_non_exhaustive()
    }
}

/// One profile's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileStatus {
    pub customer: String,
    pub gatekeeper: String,
    pub server: String,
    /// The mode asked for (the user's, or the server's for `global`).
    pub requested: Option<String>,
    /// The mode running: `legacy` or `off`.
    pub mode: String,
    pub note: Option<String>,
    /// Why the server could not be read (the last mappings are kept).
    pub error: Option<String>,
}

/// One mapping and its listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingStatus {
    pub customer: String,
    pub service: String,
    pub kind: String,
    pub target: String,
    pub local: SocketAddrV4,
    pub hostnames: Vec<String>,
    /// Why its listener is not up (a port taken locally, no privilege).
    pub error: Option<String>,
}

/// What the service is doing; `ipconnect status` prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub pid: u32,
    pub range: String,
    pub names: String,
    /// Why names could not be published (listeners still work by address).
    pub names_error: Option<String>,
    pub profiles: Vec<ProfileStatus>,
    pub mappings: Vec<MappingStatus>,
    pub skipped: Vec<SkippedStatus>,
}

/// A service not mapped, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedStatus {
    pub customer: String,
    pub service: String,
    pub reason: String,
}

impl From<Skipped> for SkippedStatus {
    fn from(s: Skipped) -> Self {
        SkippedStatus {
            customer: s.customer,
            service: s.service,
            reason: s.reason,
        }
    }
}

/// Reads the allocator key from `dir/ipconnect.key`, creating it (random,
/// mode 0600) on first use.
pub fn load_or_create_key(dir: &Path) -> Result<[u8; 32]> {
    let path = dir.join(KEY_FILE);
    let what = path.display().to_string();
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let bytes = hex::decode(text.trim())
                .map_err(|_| Error::invalid(format!("{what}: not a hex key")))?;
            bytes
                .try_into()
                .map_err(|_| Error::invalid(format!("{what}: the key must be 32 bytes")))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::from(e).context(&format!("cannot create {}", dir.display())))?;
            let key: [u8; 32] = rand::random();
            write_private(&path, format!("{}\n", hex::encode(key)).as_bytes())
                .map_err(|e| Error::from(e).context(&format!("cannot write {what}")))?;
            Ok(key)
        }
        Err(e) => Err(Error::from(e).context(&format!("cannot read {what}"))),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Reads the status a running service wrote; `None` when no service runs.
pub fn read_status(path: &Path) -> Result<Option<Status>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::from(e).context(&format!("cannot read {}", path.display())));
        }
    };
    let status: Status = serde_json::from_str(&text)
        .map_err(|e| Error::invalid(format!("{}: not a status file: {e}", path.display())))?;
    // A service killed without its cleanup left the file: no process, no status.
    if !Path::new(&format!("/proc/{}", status.pid)).exists() {
        return Ok(None);
    }
    Ok(Some(status))
}

struct Listener {
    client: usize,
    service: String,
    stop: CancellationToken,
}

/// What one profile contributed last time its server answered.
#[derive(Default)]
struct ProfileState {
    resolved: Option<Resolved>,
    targets: Vec<ServiceTarget>,
    error: Option<String>,
}

/// The service over a set of profiles' clients.
pub struct IpConnect {
    clients: Vec<Arc<ConnectClient>>,
    config: IpConnectConfig,
    status: watch::Sender<Status>,
}

impl std::fmt::Debug for IpConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpConnect")
            .field("profiles", &self.clients.len())
            .field("config", &self.config)
            .finish()
    }
}

impl IpConnect {
    pub fn new(clients: Vec<Arc<ConnectClient>>, config: IpConnectConfig) -> Self {
        IpConnect {
            clients,
            config,
            status: watch::Sender::new(Status::default()),
        }
    }

    /// The status, updated after every round.
    pub fn subscribe(&self) -> watch::Receiver<Status> {
        self.status.subscribe()
    }

    /// Runs until `shutdown`: then the listeners close, live sessions end,
    /// the names and the status file are removed.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<()> {
        let resolver = &self.config.resolver;
        // A block a crash left behind goes first.
        if let Err(error) = resolver.clear() {
            tracing::warn!(names = %resolver.describe(), %error, "cannot clean the names left behind");
        }
        let mut alloc = Allocator::new(self.config.range, self.config.key);
        let mut states: Vec<ProfileState> = self
            .clients
            .iter()
            .map(|_| ProfileState::default())
            .collect();
        let mut listeners: HashMap<SocketAddrV4, Listener> = HashMap::new();
        let mut bind_errors: HashMap<SocketAddrV4, String> = HashMap::new();
        let mut published: Option<Vec<(std::net::Ipv4Addr, Vec<String>)>> = None;
        let mut names_error: Option<String> = None;
        let sessions = TaskTracker::new();
        loop {
            for (i, client) in self.clients.iter().enumerate() {
                self.refresh(client, &mut states[i]).await;
            }
            // The first profile listing a service of a customer serves it.
            let mut owner: BTreeMap<(String, String), usize> = BTreeMap::new();
            let mut targets = Vec::new();
            for (i, s) in states.iter().enumerate() {
                for t in &s.targets {
                    let key = (t.customer.clone(), t.service.clone());
                    if let std::collections::btree_map::Entry::Vacant(e) = owner.entry(key) {
                        e.insert(i);
                        targets.push(t.clone());
                    }
                }
            }
            let plan = alloc.map(&targets);
            let wanted: HashMap<SocketAddrV4, (usize, &Mapping)> = plan
                .mappings
                .iter()
                .map(|m| {
                    (
                        m.local,
                        (owner[&(m.customer.clone(), m.service.clone())], m),
                    )
                })
                .collect();
            listeners.retain(|local, l| {
                let keep = wanted
                    .get(local)
                    .is_some_and(|(c, m)| *c == l.client && m.service == l.service);
                if !keep {
                    tracing::info!(%local, service = %l.service, "mapping removed");
                    l.stop.cancel();
                }
                keep
            });
            bind_errors.retain(|local, _| wanted.contains_key(local));
            for (local, (client, m)) in &wanted {
                if listeners.contains_key(local) {
                    continue;
                }
                match crate::tunnel::bind_listener(SocketAddr::V4(*local)) {
                    Ok(listener) => {
                        bind_errors.remove(local);
                        let stop = shutdown.child_token();
                        tracing::info!(
                            %local, customer = %m.customer, service = %m.service,
                            target = %m.target, hostnames = ?m.hostnames, "mapping listening"
                        );
                        tokio::spawn(accept_loop(
                            self.clients[*client].clone(),
                            m.service.clone(),
                            *local,
                            listener,
                            stop.clone(),
                            shutdown.clone(),
                            sessions.clone(),
                        ));
                        listeners.insert(
                            *local,
                            Listener {
                                client: *client,
                                service: m.service.clone(),
                                stop,
                            },
                        );
                    }
                    Err(e) => {
                        if bind_errors.get(local) != Some(&e.to_string()) {
                            tracing::warn!(%local, service = %m.service, error = %e, "cannot listen for a mapping; retrying");
                        }
                        bind_errors.insert(*local, e.to_string());
                    }
                }
            }
            let names = plan.names();
            if published.as_ref() != Some(&names) {
                match resolver.publish(&names) {
                    Ok(()) => {
                        names_error = None;
                        published = Some(names);
                    }
                    Err(e) => {
                        if names_error.as_deref() != Some(&e.to_string()) {
                            tracing::warn!(names = %resolver.describe(), error = %e, "cannot publish names; mappings work by address");
                        }
                        names_error = Some(e.to_string());
                    }
                }
            }
            let status = Status {
                pid: std::process::id(),
                range: self.config.range.to_string(),
                names: resolver.describe(),
                names_error: names_error.clone(),
                profiles: self
                    .clients
                    .iter()
                    .zip(&states)
                    .map(|(c, s)| ProfileStatus {
                        customer: c.profile().customer.clone(),
                        gatekeeper: c.profile().gatekeeper_name.clone(),
                        server: c.profile().server.clone(),
                        requested: s.resolved.as_ref().map(|r| r.requested.clone()),
                        mode: match s.resolved.as_ref().map(|r| r.effective) {
                            Some(Effective::Legacy) => "legacy".into(),
                            _ => "off".into(),
                        },
                        note: s.resolved.as_ref().and_then(|r| r.note.clone()),
                        error: s.error.clone(),
                    })
                    .collect(),
                mappings: plan
                    .mappings
                    .iter()
                    .map(|m| MappingStatus {
                        customer: m.customer.clone(),
                        service: m.service.clone(),
                        kind: m.kind.clone(),
                        target: m.target.clone(),
                        local: m.local,
                        hostnames: m.hostnames.clone(),
                        error: bind_errors.get(&m.local).cloned(),
                    })
                    .collect(),
                skipped: plan
                    .skipped
                    .iter()
                    .cloned()
                    .map(SkippedStatus::from)
                    .collect(),
            };
            if let Some(path) = &self.config.status_file
                && *self.status.borrow() != status
                && let Err(error) = serde_json::to_vec_pretty(&status)
                    .map_err(std::io::Error::other)
                    .and_then(|b| write_private(path, &b))
            {
                tracing::warn!(path = %path.display(), %error, "cannot write the status file");
            }
            self.status.send_replace(status);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.config.poll) => {}
            }
        }
        for l in listeners.values() {
            l.stop.cancel();
        }
        sessions.close();
        sessions.wait().await;
        if let Some(path) = &self.config.status_file {
            let _ = std::fs::remove_file(path);
        }
        resolver.clear()?;
        tracing::info!("ip connect stopped; names removed");
        Ok(())
    }

    /// Reads one profile's mode and services; a server that does not answer
    /// keeps the profile's last mappings.
    async fn refresh(&self, client: &ConnectClient, state: &mut ProfileState) {
        let customer = client.profile().customer.clone();
        let mode = match client.ip_connect_mode().await {
            Ok((user, server)) => resolve(&user, &server),
            Err(e) => {
                if state.error.as_deref() != Some(&e.to_string()) {
                    tracing::warn!(%customer, error = %e, "cannot read the IP Connect mode; keeping the last mappings");
                }
                state.error = Some(e.to_string());
                return;
            }
        };
        if state.resolved.as_ref() != Some(&mode) {
            match &mode.note {
                Some(note) => {
                    tracing::warn!(%customer, requested = %mode.requested, mode = ?mode.effective, %note, "ip connect mode in use")
                }
                None => {
                    tracing::info!(%customer, requested = %mode.requested, mode = ?mode.effective, "ip connect mode in use")
                }
            }
        }
        let effective = mode.effective;
        state.resolved = Some(mode);
        if effective == Effective::Off {
            state.targets.clear();
            state.error = None;
            return;
        }
        match client.services().await {
            Ok(list) => {
                state.error = None;
                state.targets = list
                    .services
                    .iter()
                    .filter_map(|s| {
                        ServiceTarget::parse(&customer, &s.name, &s.kind, &s.target)
                            .map_err(
                                |error| tracing::warn!(%customer, %error, "service not mapped"),
                            )
                            .ok()
                    })
                    .collect();
            }
            Err(e) => {
                if state.error.as_deref() != Some(&e.to_string()) {
                    tracing::warn!(%customer, error = %e, "cannot list services; keeping the last mappings");
                }
                state.error = Some(e.to_string());
            }
        }
    }
}

/// Accepts on one mapping until `stop`; sessions run until `shutdown` (a
/// mapping that goes away leaves its live sessions to the engine's rules).
async fn accept_loop(
    client: Arc<ConnectClient>,
    service: String,
    local: SocketAddrV4,
    listener: tokio::net::TcpListener,
    stop: CancellationToken,
    shutdown: CancellationToken,
    sessions: TaskTracker,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!(%local, %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let client = client.clone();
        let service = service.clone();
        let end = shutdown.clone();
        sessions.spawn(async move {
            if let Err(e) = client
                .serve_one(&service, tcp, peer, Some(SocketAddr::V4(local)), end)
                .await
            {
                tracing::warn!(%peer, %local, %service, kind = %e.kind(), error = %e, "ip connect session refused");
            }
        });
    }
}
