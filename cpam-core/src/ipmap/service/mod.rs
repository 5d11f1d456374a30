//! The IP Connect background service: one process for all of a user's
//! profiles. Every `poll` it asks each profile's server for the mode
//! ([`super::resolve`]) and the services the user may use now, maps them
//! ([`Allocator`]), keeps one loopback listener per mapped address and port
//! (legacy) or the TUN driver ([`super::driver`]) and publishes the names
//! ([`Resolver`]). Every accepted connection is one session through that
//! profile's tunnel, audited with the local address.

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod status;

pub use status::*;

use super::alloc::{Allocator, Mapping, Plan, Range, ServiceTarget};
use super::hosts::Resolver;
use super::mode::{Effective, Resolved, resolve};
use crate::error::Result;
use crate::tunnel::connect::ConnectClient;

/// How the service runs.
#[derive(Clone)]
pub struct IpConnectConfig {
    /// Where local addresses come from in the legacy mode (127/8).
    pub range: Range,
    /// Where local addresses come from in the driver mode (routed to the TUN).
    pub driver_range: Range,
    /// The driver's TUN device name.
    pub device: String,
    /// The allocator's key ([`load_or_create_key`]).
    pub key: [u8; 32],
    /// How often the mode and the services are read from each server.
    pub poll: Duration,
    /// Where names are published.
    pub resolver: Arc<dyn Resolver>,
    /// Where the status is written for `ipconnect status` (removed on stop).
    pub status_file: Option<PathBuf>,
}

impl IpConnectConfig {
    /// The defaults: the legacy and driver ranges, device `cpam0`, a 5 s
    /// poll, no status file.
    pub fn new(key: [u8; 32], resolver: Arc<dyn Resolver>) -> Self {
        IpConnectConfig {
            range: super::alloc::LEGACY_RANGE.parse().expect("a valid range"),
            driver_range: super::alloc::DRIVER_RANGE.parse().expect("a valid range"),
            device: "cpam0".into(),
            key,
            poll: Duration::from_secs(5),
            resolver,
            status_file: None,
        }
    }
}

impl std::fmt::Debug for IpConnectConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpConnectConfig")
            .field("range", &self.range)
            .field("driver_range", &self.driver_range)
            .field("device", &self.device)
            .field("poll", &self.poll)
            .field("resolver", &self.resolver.describe())
            .finish_non_exhaustive()
    }
}

struct Listener {
    client: usize,
    service: String,
    stop: CancellationToken,
}

/// What one profile contributed last time its server answered.
#[derive(Default)]
struct ProfileState {
    /// The mode asked for (before the driver's availability).
    asked: Option<Resolved>,
    /// The mode running.
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

/// The driver while it runs, and why it does not when it cannot.
#[derive(Default)]
struct DriverState {
    #[cfg(feature = "driver")]
    running: Option<super::driver::Driver<(usize, String)>>,
    error: Option<String>,
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

    /// Runs until `shutdown`: then the listeners and the driver close, live
    /// sessions end, the names and the status file are removed.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<()> {
        let resolver = &self.config.resolver;
        // A block a crash left behind goes first.
        if let Err(error) = resolver.clear() {
            tracing::warn!(names = %resolver.describe(), %error, "cannot clean the names left behind");
        }
        let mut alloc = Allocator::new(self.config.range, self.config.key);
        let mut driver_alloc = Allocator::new(self.config.driver_range, self.config.key)
            .reserve(device_address(self.config.driver_range));
        let mut states: Vec<ProfileState> = self
            .clients
            .iter()
            .map(|_| ProfileState::default())
            .collect();
        let mut driver = DriverState::default();
        let mut listeners: HashMap<SocketAddrV4, Listener> = HashMap::new();
        let mut bind_errors: HashMap<SocketAddrV4, String> = HashMap::new();
        let mut published: Option<Vec<(std::net::Ipv4Addr, Vec<String>)>> = None;
        let mut names_error: Option<String> = None;
        let sessions = TaskTracker::new();
        loop {
            for (i, client) in self.clients.iter().enumerate() {
                self.refresh(client, &mut states[i]).await;
            }
            let wants_driver = states.iter().any(|s| {
                s.asked
                    .as_ref()
                    .is_some_and(|r| r.effective == Effective::Driver)
            });
            self.drive(&mut driver, wants_driver, &sessions, &shutdown);
            for (client, s) in self.clients.iter().zip(states.iter_mut()) {
                let Some(asked) = s.asked.clone() else {
                    continue;
                };
                let mode = asked.with_driver(driver.error.as_deref());
                if s.resolved.as_ref() != Some(&mode) {
                    log_mode(&client.profile().customer, &mode);
                }
                s.resolved = Some(mode);
            }
            // The first profile listing a service of a customer serves it.
            let mut owner: BTreeMap<(String, String), usize> = BTreeMap::new();
            let (mut legacy_targets, mut driver_targets) = (Vec::new(), Vec::new());
            for (i, s) in states.iter().enumerate() {
                let mode = s.resolved.as_ref().map_or(Effective::Off, |r| r.effective);
                for t in &s.targets {
                    let key = (t.customer.clone(), t.service.clone());
                    if let std::collections::btree_map::Entry::Vacant(e) = owner.entry(key) {
                        e.insert(i);
                        match mode {
                            Effective::Legacy => legacy_targets.push(t.clone()),
                            Effective::Driver => driver_targets.push(t.clone()),
                            Effective::Off => {}
                        }
                    }
                }
            }
            let plan = alloc.map(&legacy_targets);
            let driver_plan = driver_alloc.map(&driver_targets);
            let owner_of = |m: &Mapping| owner[&(m.customer.clone(), m.service.clone())];
            #[cfg(feature = "driver")]
            if let Some(d) = &driver.running {
                d.set_ports(
                    driver_plan
                        .mappings
                        .iter()
                        .map(|m| (m.local, (owner_of(m), m.service.clone())))
                        .collect(),
                );
            }
            let wanted: HashMap<SocketAddrV4, (usize, &Mapping)> = plan
                .mappings
                .iter()
                .map(|m| (m.local, (owner_of(m), m)))
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
            let names = merged_names(&plan, &driver_plan);
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
            let mapping_status = |m: &Mapping, mode: Effective| MappingStatus {
                customer: m.customer.clone(),
                service: m.service.clone(),
                kind: m.kind.clone(),
                target: m.target.clone(),
                local: m.local,
                hostnames: m.hostnames.clone(),
                mode: mode.as_str().into(),
                error: bind_errors.get(&m.local).cloned(),
            };
            let status = Status {
                pid: std::process::id(),
                range: self.config.range.to_string(),
                names: resolver.describe(),
                names_error: names_error.clone(),
                driver: driver_running(&driver)
                    .then(|| format!("{} on {}", self.config.driver_range, self.config.device)),
                driver_error: wants_driver.then(|| driver.error.clone()).flatten(),
                profiles: self
                    .clients
                    .iter()
                    .zip(&states)
                    .map(|(c, s)| ProfileStatus {
                        customer: c.profile().customer.clone(),
                        gatekeeper: c.profile().gatekeeper_name.clone(),
                        server: c.profile().server.clone(),
                        requested: s.resolved.as_ref().map(|r| r.requested.clone()),
                        mode: s
                            .resolved
                            .as_ref()
                            .map_or(Effective::Off, |r| r.effective)
                            .as_str()
                            .into(),
                        note: s.resolved.as_ref().and_then(|r| r.note.clone()),
                        error: s.error.clone(),
                    })
                    .collect(),
                mappings: driver_plan
                    .mappings
                    .iter()
                    .map(|m| mapping_status(m, Effective::Driver))
                    .chain(
                        plan.mappings
                            .iter()
                            .map(|m| mapping_status(m, Effective::Legacy)),
                    )
                    .collect(),
                skipped: plan
                    .skipped
                    .iter()
                    .chain(&driver_plan.skipped)
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
        drop(driver);
        sessions.close();
        sessions.wait().await;
        if let Some(path) = &self.config.status_file {
            let _ = std::fs::remove_file(path);
        }
        resolver.clear()?;
        tracing::info!("ip connect stopped; names removed");
        Ok(())
    }

    /// Starts the driver when a profile wants it (again, after its device
    /// went away), stops it when none does; says why it cannot start once.
    #[cfg(feature = "driver")]
    fn drive(
        &self,
        driver: &mut DriverState,
        wanted: bool,
        sessions: &TaskTracker,
        shutdown: &CancellationToken,
    ) {
        use super::driver::Driver;
        if !wanted {
            if driver.running.take().is_some() {
                tracing::info!(device = %self.config.device, "ip connect driver stopped: no profile uses it");
            }
            driver.error = None;
            return;
        }
        if let Some(why) = driver.running.as_ref().and_then(|d| d.failure()) {
            tracing::warn!(device = %self.config.device, error = %why, "ip connect driver lost its device; starting it again");
            driver.running = None;
        }
        if driver.running.is_some() {
            return;
        }
        let clients = self.clients.clone();
        let sessions = sessions.clone();
        let end = shutdown.clone();
        let accept = move |a: super::driver::Accepted<(usize, String)>| {
            let (client, service) = a.target.clone();
            let client = clients[client].clone();
            let end = end.clone();
            sessions.spawn(async move {
                let (peer, local) = (SocketAddr::V4(a.peer), SocketAddr::V4(a.local));
                let sink = a.sink.clone();
                if let Err(e) = client
                    .serve_split(&service, a.source, a.sink, peer, Some(local), end)
                    .await
                {
                    sink.reset().await;
                    tracing::warn!(%peer, %local, %service, kind = %e.kind(), error = %e, "ip connect session refused");
                }
            });
        };
        match Driver::start(&self.config.device, self.config.driver_range, accept) {
            Ok(d) => {
                tracing::info!(device = %self.config.device, range = %self.config.driver_range, "ip connect driver started");
                driver.running = Some(d);
                driver.error = None;
            }
            Err(e) => {
                if driver.error.as_deref() != Some(&e.to_string()) {
                    tracing::warn!(device = %self.config.device, error = %e, "ip connect driver cannot start");
                }
                driver.error = Some(e.to_string());
            }
        }
    }

    #[cfg(not(feature = "driver"))]
    fn drive(
        &self,
        driver: &mut DriverState,
        wanted: bool,
        _: &TaskTracker,
        _: &CancellationToken,
    ) {
        driver.error = wanted.then(|| super::mode::DRIVER_UNAVAILABLE.to_string());
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
        let effective = mode.effective;
        state.asked = Some(mode);
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

#[cfg(feature = "driver")]
fn driver_running(d: &DriverState) -> bool {
    d.running.is_some()
}

#[cfg(not(feature = "driver"))]
fn driver_running(_: &DriverState) -> bool {
    false
}

/// The driver device's own address in `range` (never handed out).
pub fn device_address(range: Range) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from(u32::from(range.network()) + 1)
}

fn log_mode(customer: &str, mode: &Resolved) {
    let effective = mode.effective.as_str();
    match &mode.note {
        Some(note) => {
            tracing::warn!(%customer, requested = %mode.requested, mode = effective, %note, "ip connect mode in use")
        }
        None => {
            tracing::info!(%customer, requested = %mode.requested, mode = effective, "ip connect mode in use")
        }
    }
}

/// Both plans' names (the ranges differ, so the addresses never collide).
fn merged_names(a: &Plan, b: &Plan) -> Vec<(std::net::Ipv4Addr, Vec<String>)> {
    let mut names = a.names();
    names.extend(b.names());
    names.sort();
    names
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
