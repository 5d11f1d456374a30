//! The server side of the tunnel: one SSH port for gatekeepers and
//! Connection Managers.
//!
//! A thin front door: every connection is handled by a
//! [`russh::server::Handler`] whose callbacks authenticate, parse channel
//! requests and hand work to owned tasks. A vendor's channel becomes a
//! request to the session engine, which approves it and runs it
//! ([`SessionEngine::run`]) with the configured [`Dialer`].

mod conn;
mod killable;
mod limits;
mod peer;
mod rdp;
mod vault;

pub use limits::HubLimits;
pub use rdp::PrivilegedRdp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use russh::server::{ChannelOpenHandle, Msg};
use russh::{Channel, ChannelOpenFailure};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::dialer::{Connection, Dialer, GatekeeperDialer};
use crate::error::{Error, ErrorKind, Result};
use crate::events::{EngineEvent, Revocation};
use crate::model::{
    AuditCategory, AuditEvent, EndReason, Gatekeeper, GatekeeperId, ServiceKind, User,
};
use crate::policy::{self, AccessRequest, Decision};
use crate::proxy::ssh::SshProxy;
use crate::proxy::tcp::TcpSplice;
use crate::session::{Originator, Protocol, SessionEngine, UserIo};
use crate::throttle::Throttle;
use conn::Conn;
use killable::Killable;
use limits::{ChannelSlots, PreAuth};

/// How a hub is set up.
pub struct HubConfig {
    /// The key the hub presents; gatekeepers and Connection Managers pin it.
    pub host_key: russh::keys::PrivateKey,
    /// Where connected gatekeepers' links are registered.
    pub gatekeepers: Arc<GatekeeperDialer>,
    /// How sessions reach their targets: by default through `gatekeepers`;
    /// an integrator may dial directly, or through its own routing.
    pub dialer: Arc<dyn Dialer>,
    /// Failed password sign-ins; share it with the console so both front
    /// doors lock out alike.
    pub throttle: Arc<Throttle>,
    /// Runs sessions to services whose credential is injected (kind
    /// `ssh`); without it the hub refuses them.
    pub privileged_ssh: Option<Arc<SshProxy>>,
    /// Runs sessions to RDP services whose credential is injected (kind
    /// `rdp`) and issues their one-time proxy credentials; without it the
    /// hub refuses them.
    pub privileged_rdp: Option<PrivilegedRdp>,
    /// What one client may hold: connections not signed in yet, channels,
    /// and how long each may wait.
    pub limits: HubLimits,
    /// Whether users may sign in with a password over SSH (off by default:
    /// a Connection Manager signs in with its profile's key, bound to one
    /// gatekeeper; a password is not).
    pub ssh_passwords: bool,
    /// The live view of this node's sessions, for watchers on other nodes
    /// (`cpam-watch` over a peer link); without it they get none.
    pub live: Option<Arc<crate::record::LiveHub>>,
}

impl HubConfig {
    /// Presents `host_key` and dials through the gatekeepers that connect.
    pub fn new(host_key: russh::keys::PrivateKey) -> Self {
        let gatekeepers = Arc::new(GatekeeperDialer::new());
        Self {
            host_key,
            dialer: gatekeepers.clone(),
            gatekeepers,
            throttle: Arc::default(),
            privileged_ssh: None,
            privileged_rdp: None,
            limits: HubLimits::default(),
            ssh_passwords: false,
            live: None,
        }
    }
}

impl std::fmt::Debug for HubConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubConfig")
            .field("host_key", &"<redacted>")
            .field("gatekeepers", &self.gatekeepers)
            .field("dialer", &self.dialer)
            .field("limits", &self.limits)
            .finish()
    }
}

/// The server hub.
#[derive(Debug)]
pub struct Hub {
    engine: Arc<SessionEngine>,
    gatekeepers: Arc<GatekeeperDialer>,
    dialer: Arc<dyn Dialer>,
    throttle: Arc<Throttle>,
    privileged_ssh: Option<Arc<SshProxy>>,
    privileged_rdp: Option<PrivilegedRdp>,
    config: Arc<russh::server::Config>,
    limits: HubLimits,
    ssh_passwords: bool,
    live: Option<Arc<crate::record::LiveHub>>,
    /// Connections that have not signed in yet.
    preauth: Arc<PreAuth>,
    /// Open channels per connection and per user.
    channels: Arc<ChannelSlots>,
    next_conn: AtomicU64,
    /// Signed-in connections, by connection number: what a revocation closes.
    links: Mutex<HashMap<u64, Link>>,
    watching_revocations: AtomicBool,
    connections: TaskTracker,
    sessions: TaskTracker,
    shutdown: CancellationToken,
}

/// Who a connection authenticated as.
#[derive(Debug, Clone, Default)]
enum Principal {
    #[default]
    Anonymous,
    /// Just redeemed a registration code; may only ask who it is.
    Registered(Gatekeeper),
    Gatekeeper(Gatekeeper),
    User {
        user: User,
        bound: Option<GatekeeperId>,
        /// The fingerprint of the key it signed in with (none: a password).
        key: Option<String>,
    },
    /// Another node of the cluster (the peer relay), by its id.
    Node(String),
}

/// A signed-in connection, as a revocation matches it.
struct Link {
    principal: Principal,
    peer: SocketAddr,
    handle: russh::server::Handle,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("principal", &self.principal)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl Link {
    fn revoked_by(&self, r: &Revocation) -> bool {
        match &self.principal {
            Principal::User { user, bound, key } => {
                r.user.as_ref() == Some(&user.id)
                    || (r.key.is_some() && r.key == *key)
                    || (r.gatekeeper.is_some() && r.gatekeeper == *bound)
            }
            Principal::Gatekeeper(gk) => r.gatekeeper.as_ref() == Some(&gk.id),
            Principal::Anonymous | Principal::Registered(_) | Principal::Node(_) => false,
        }
    }
}

impl Hub {
    /// A hub using `engine`, presenting `host_key`, dialing through the
    /// gatekeepers that connect to it.
    pub fn new(engine: Arc<SessionEngine>, host_key: russh::keys::PrivateKey) -> Arc<Hub> {
        Self::with_config(engine, HubConfig::new(host_key))
    }

    /// A hub using `engine`, set up by `config`.
    pub fn with_config(engine: Arc<SessionEngine>, config: HubConfig) -> Arc<Hub> {
        Arc::new(Hub {
            engine,
            gatekeepers: config.gatekeepers,
            dialer: config.dialer,
            throttle: config.throttle,
            privileged_ssh: config.privileged_ssh,
            privileged_rdp: config.privileged_rdp,
            config: {
                let mut c = super::base_server_config(config.host_key);
                // Every peer of the hub is a cpam program; larger packets
                // are only offered, a stock client keeps its own size.
                c.maximum_packet_size = super::PEER_MAX_PACKET;
                if !config.ssh_passwords {
                    c.methods = russh::MethodSet::from(&[russh::MethodKind::PublicKey][..]);
                }
                Arc::new(c)
            },
            ssh_passwords: config.ssh_passwords,
            live: config.live,
            preauth: PreAuth::new(&config.limits),
            channels: ChannelSlots::new(&config.limits),
            limits: config.limits,
            next_conn: AtomicU64::new(1),
            links: Mutex::default(),
            watching_revocations: AtomicBool::new(false),
            connections: TaskTracker::new(),
            sessions: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        })
    }

    /// The session engine.
    pub fn engine(&self) -> &Arc<SessionEngine> {
        &self.engine
    }

    /// Failed password sign-ins over SSH (shared with the console when the
    /// server starts one).
    pub fn throttle(&self) -> &Arc<Throttle> {
        &self.throttle
    }

    /// The registry of connected gatekeepers.
    pub fn gatekeepers(&self) -> &Arc<GatekeeperDialer> {
        &self.gatekeepers
    }

    /// Accepts connections on `listener` until [`Hub::shutdown`].
    pub async fn serve(self: &Arc<Self>, listener: TcpListener) -> Result<()> {
        self.watch_revocations();
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return Ok(()),
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let hub = self.clone();
                        self.connections.spawn(async move { hub.connection(stream, peer).await });
                    }
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                },
            }
        }
    }

    /// Stops accepting, ends live sessions with reason `error`, and waits
    /// (at most `grace`) for their records to be written.
    pub async fn shutdown(&self, grace: Duration) {
        self.shutdown.cancel();
        self.engine
            .end_all(EndReason::Error, "server shutting down");
        self.sessions.close();
        let _ = tokio::time::timeout(grace, self.sessions.wait()).await;
    }

    /// Closes the connections every revocation names, from the first
    /// [`Hub::serve`] on until the hub goes away.
    fn watch_revocations(self: &Arc<Self>) {
        if self.watching_revocations.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut rx = self.engine.subscribe_revocations();
        let hub: Weak<Hub> = Arc::downgrade(self);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let revocation = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = rx.recv() => r,
                };
                let Some(hub) = hub.upgrade() else { return };
                match revocation {
                    Ok(r) => drop(hub.close_revoked(&r).await),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::error!(
                            lost = n,
                            "revocations lost; closing every user connection"
                        );
                        hub.close_revoked_all().await;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }

    /// Closes every signed-in connection `r` covers, each one audited.
    pub async fn close_revoked(&self, r: &Revocation) -> usize {
        self.close_links(|l| l.revoked_by(r), &r.reason).await
    }

    async fn close_revoked_all(&self) {
        self.close_links(
            |l| matches!(l.principal, Principal::User { .. }),
            "revocations lost",
        )
        .await;
    }

    async fn close_links(&self, matches: impl Fn(&Link) -> bool, reason: &str) -> usize {
        let closing: Vec<(Principal, SocketAddr, russh::server::Handle)> = {
            let links = self.links.lock().unwrap_or_else(|p| p.into_inner());
            links
                .values()
                .filter(|l| matches(l))
                .map(|l| (l.principal.clone(), l.peer, l.handle.clone()))
                .collect()
        };
        for (principal, peer, handle) in &closing {
            let (actor, gk) = match principal {
                Principal::User { user, .. } => (user.name.clone(), None),
                Principal::Gatekeeper(gk) => (format!("gatekeeper:{}", gk.name), Some(gk)),
                _ => continue,
            };
            tracing::info!(%actor, %peer, reason, "closing a revoked connection");
            let _ = handle
                .disconnect(
                    russh::Disconnect::ByApplication,
                    format!("access revoked: {reason}"),
                    "en".into(),
                )
                .await;
            self.audit(
                AuditCategory::UserActivity,
                "login.revoked",
                &actor,
                gk,
                json!({ "reason": reason, "peer": peer.to_string() }),
            )
            .await;
        }
        closing.len()
    }

    fn link(
        &self,
        conn: u64,
        principal: Principal,
        peer: SocketAddr,
        handle: russh::server::Handle,
    ) {
        self.links.lock().unwrap_or_else(|p| p.into_inner()).insert(
            conn,
            Link {
                principal,
                peer,
                handle,
            },
        );
    }

    async fn connection(self: Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        // Until it signs in, a connection holds a place among the waiting
        // ones (a newer one may take it) and has one deadline for the
        // version line, key exchange and authentication together.
        let slot = self.preauth.admit(conn, peer.ip());
        let evicted = slot.evicted.clone();
        let deadline = tokio::time::Instant::now() + self.limits.login_timeout();
        let signed_in = CancellationToken::new();
        let kill = CancellationToken::new();
        let principal = Arc::new(Mutex::new(Principal::Anonymous));
        let handler = Conn {
            hub: self.clone(),
            conn,
            peer,
            principal: principal.clone(),
            pending: Arc::default(),
            open_channels: Arc::default(),
            preauth: Some(slot),
            signed_in: signed_in.clone(),
            handle: None,
            offer_refusal_audited: false,
        };
        let stream = Killable::new(stream, kill.clone());
        let running = tokio::select! {
            r = tokio::time::timeout_at(
                deadline,
                russh::server::run_stream(self.config.clone(), stream, handler),
            ) => match r {
                Ok(Ok(running)) => running,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, ?error, "ssh handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "ssh handshake timed out");
                    return;
                }
            },
            _ = evicted.cancelled() => {
                tracing::debug!(%peer, "closed for a newer connection before it signed in");
                return;
            }
        };
        // Ends the connection if it has not signed in by the deadline or a
        // newer one took its place meanwhile.
        let watchdog = {
            let (kill, signed_in) = (kill.clone(), signed_in.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = signed_in.cancelled() => return,
                    _ = evicted.cancelled() => {
                        tracing::debug!(%peer, "closed for a newer connection before it signed in");
                    }
                    _ = tokio::time::sleep_until(deadline) => {
                        tracing::debug!(%peer, "closed: no sign-in before the login timeout");
                    }
                }
                kill.cancel();
            })
        };
        let _watchdog = AbortOnDrop(watchdog);
        let handle = running.handle();
        let result = tokio::select! {
            r = running => r.map_err(|e| format!("{e:?}")),
            _ = self.shutdown.cancelled() => {
                let _ = handle.disconnect(russh::Disconnect::ByApplication, "server shutting down".into(), "en".into()).await;
                Ok(())
            }
        };
        if let Err(error) = result {
            tracing::debug!(%peer, %error, "connection ended with an error");
        }
        self.links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&conn);
        let who = principal.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Principal::Gatekeeper(gk) = who
            && self.gatekeepers.detach(&gk.id, conn)
        {
            self.engine.end_gatekeeper_sessions(
                &gk.id,
                EndReason::Error,
                "the gatekeeper's link to the server closed",
            );
            let disabled = match self.engine.store().gatekeeper(&gk.id).await {
                Ok(Some(now)) => now.customer_disabled,
                _ => gk.customer_disabled,
            };
            self.gatekeeper_state(&gk, false, disabled, "gatekeeper.offline")
                .await;
        }
    }

    async fn gatekeeper_state(&self, gk: &Gatekeeper, online: bool, disabled: bool, action: &str) {
        let now = self.engine.clock().now();
        if let Err(error) = self
            .engine
            .store()
            .set_gatekeeper_state(&gk.id, online, disabled, self.engine.node().as_deref(), now)
            .await
        {
            tracing::error!(%error, gatekeeper = %gk.id, "cannot record gatekeeper state");
        }
        tracing::info!(gatekeeper = %gk.name, online, disabled, "{action}");
        let (gatekeeper, customer, at) = (gk.id.clone(), gk.customer_id.clone(), now);
        self.engine.publish(match action {
            "gatekeeper.online" => EngineEvent::GatekeeperOnline {
                gatekeeper,
                customer,
                at,
            },
            "gatekeeper.offline" => EngineEvent::GatekeeperOffline {
                gatekeeper,
                customer,
                at,
            },
            _ => EngineEvent::GatekeeperSwitch {
                gatekeeper,
                customer,
                disabled,
                at,
            },
        });
        self.engine
            .record(AuditEvent {
                at: now,
                category: AuditCategory::SystemMessages,
                action: action.into(),
                actor: format!("gatekeeper:{}", gk.name),
                customer_id: Some(gk.customer_id.clone()),
                session_id: None,
                detail: json!({ "gatekeeper": gk.name, "gatekeeper_id": gk.id }),
            })
            .await;
    }

    async fn audit(
        &self,
        category: AuditCategory,
        action: &str,
        actor: &str,
        gk: Option<&Gatekeeper>,
        detail: serde_json::Value,
    ) {
        self.engine
            .record(AuditEvent {
                at: self.engine.clock().now(),
                category,
                action: action.into(),
                actor: actor.into(),
                customer_id: gk.map(|g| g.customer_id.clone()),
                session_id: None,
                detail,
            })
            .await;
    }

    /// Whether `user`'s key `fingerprint` is still theirs (within the
    /// authorization cache's bound); a refusal is audited
    /// (`session.refused`, reason `key_deleted`).
    async fn key_holds(
        &self,
        user: &User,
        fingerprint: &str,
        spec: &str,
        originator: &Originator,
    ) -> bool {
        let holds = match self.engine.key_holds(&user.id, fingerprint).await {
            Ok(holds) => holds,
            Err(error) => {
                tracing::error!(%error, "cannot check a session's key");
                false
            }
        };
        if !holds {
            tracing::info!(user = %user.name, %spec, "session refused: its key was deleted");
            self.audit(
                AuditCategory::UserActivity,
                "session.refused",
                &user.name,
                None,
                json!({ "reason": "key_deleted", "fingerprint": fingerprint,
                        "channel": spec, "originator": originator.to_string() }),
            )
            .await;
        }
        holds
    }

    /// Runs one vendor connection: `spec` is `SERVICE@GATEKEEPER_ID`. The
    /// engine approves it and its runner runs it as a TCP splice, or through
    /// the SSH proxy for services whose credential is injected.
    async fn open_session(
        self: Arc<Self>,
        user: User,
        bound: Option<GatekeeperId>,
        spec: String,
        originator: Originator,
        pending: PendingChannel,
    ) {
        let asked = std::time::Instant::now();
        let approval = match spec.rsplit_once('@') {
            Some((service, gatekeeper)) => {
                self.engine
                    .approve_named(&user, bound.as_ref(), gatekeeper, service, &originator)
                    .await
            }
            None => Err(Error::invalid(format!(
                "channel target `{spec}` must be SERVICE@GATEKEEPER"
            ))),
        };
        let approval = match approval {
            Ok(a) => a,
            Err(e) => {
                tracing::info!(user = %user.name, %spec, error = %e, "session refused");
                pending.reply.reject(open_failure(e.kind())).await;
                return;
            }
        };
        tracing::debug!(
            user = %user.name,
            %spec,
            // From the channel's arrival: the key check and the task's start.
            checked_us = asked.duration_since(pending.received).as_micros() as u64,
            approved_us = asked.elapsed().as_micros() as u64,
            "session approved"
        );
        let kind = approval.service().kind;
        let protocol: Option<&dyn Protocol> = match kind {
            ServiceKind::Ssh => self.privileged_ssh.as_deref().map(|p| p as &dyn Protocol),
            ServiceKind::Rdp => self.privileged_rdp.as_ref().map(|r| r.proxy.as_ref()),
            _ => Some(&TcpSplice),
        };
        let Some(protocol) = protocol else {
            tracing::warn!(%spec, kind = kind.as_str(), "privileged sessions of this kind are not set up on this server");
            pending
                .reply
                .reject(open_failure(ErrorKind::Conflict))
                .await;
            return;
        };
        if let Err(e) = self
            .engine
            .run(approval, Box::new(pending), self.dialer.clone(), protocol)
            .await
        {
            tracing::info!(user = %user.name, %spec, error = %e, "session did not run");
        }
    }

    /// The user's IP Connect preference (read afresh) and the server-wide setting.
    async fn ip_connect_mode_for(&self, user: &User) -> Result<serde_json::Value> {
        let store = self.engine.store();
        let mine = store.user_ip_connect_mode(&user.id).await?;
        let server = crate::admin::server_ip_connect_mode(store.as_ref()).await?;
        Ok(json!({ "user": mine, "server": server }))
    }

    async fn services_for(
        &self,
        user: &User,
        bound: Option<&GatekeeperId>,
        gk_id: &str,
    ) -> Result<serde_json::Value> {
        let store = self.engine.store();
        let gk = store
            .gatekeeper(&GatekeeperId(gk_id.to_string()))
            .await?
            .ok_or_else(|| Error::not_found(format!("no gatekeeper `{gk_id}`")))?;
        let now = self.engine.clock().now();
        let mut out = Vec::new();
        for service in store.list_services(Some(&gk.customer_id)).await? {
            let grants = store.grants_for(&user.id, &service.id).await?;
            let req = AccessRequest {
                user,
                service: &service,
                gatekeeper: &gk,
                credential_gatekeeper: bound,
            };
            if let Decision::Allow { until, .. } = policy::decide(&req, &grants, now) {
                out.push(json!({
                    "name": service.name,
                    "kind": service.kind,
                    "target": service.target.to_string(),
                    "until": until.map(|u| u.to_rfc3339()),
                }));
            }
        }
        Ok(json!({ "gatekeeper": gk.name, "online": gk.online, "services": out }))
    }

    /// Reads the status lines a gatekeeper sends up its control channel.
    async fn control_channel(self: Arc<Self>, gk: Gatekeeper, mut channel: Channel<Msg>) {
        let mut buf = Vec::new();
        let mut disabled = gk.customer_disabled;
        let mut schedule = gk.customer_schedule.clone();
        while let Some(msg) = channel.wait().await {
            let russh::ChannelMsg::Data { data } = msg else {
                continue;
            };
            buf.extend_from_slice(&data);
            if buf.len() > 64 * 1024 {
                tracing::warn!(gatekeeper = %gk.name, "control line too long, closing");
                break;
            }
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                let Ok(status) = serde_json::from_slice::<serde_json::Value>(&line) else {
                    tracing::warn!(gatekeeper = %gk.name, "malformed control line");
                    continue;
                };
                let now_disabled = status
                    .get("disabled")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false);
                let now_schedule = status
                    .get("schedule")
                    .and_then(|v| v.as_str())
                    .map(|s| s.chars().take(200).collect::<String>());
                if now_schedule != schedule {
                    schedule = now_schedule;
                    if let Err(error) = self
                        .engine
                        .store()
                        .set_gatekeeper_schedule(&gk.id, schedule.as_deref())
                        .await
                    {
                        tracing::error!(%error, gatekeeper = %gk.id, "cannot record the customer's schedule");
                    }
                    self.audit(
                        AuditCategory::SystemMessages,
                        "gatekeeper.schedule_changed",
                        &format!("gatekeeper:{}", gk.name),
                        Some(&gk),
                        json!({ "gatekeeper": gk.name, "schedule": schedule }),
                    )
                    .await;
                    if now_disabled == disabled {
                        self.engine.publish(EngineEvent::GatekeeperSwitch {
                            gatekeeper: gk.id.clone(),
                            customer: gk.customer_id.clone(),
                            disabled,
                            at: self.engine.clock().now(),
                        });
                    }
                }
                if now_disabled != disabled {
                    disabled = now_disabled;
                    let action = if disabled {
                        "gatekeeper.disabled_by_customer"
                    } else {
                        "gatekeeper.enabled_by_customer"
                    };
                    self.gatekeeper_state(&gk, true, disabled, action).await;
                    if disabled {
                        self.engine.end_gatekeeper_sessions(
                            &gk.id,
                            EndReason::Revoked,
                            "customer disabled the gatekeeper",
                        );
                    }
                } else {
                    let _ = self
                        .engine
                        .store()
                        .set_gatekeeper_state(
                            &gk.id,
                            true,
                            disabled,
                            self.engine.node().as_deref(),
                            self.engine.clock().now(),
                        )
                        .await;
                }
            }
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A vendor's `direct-tcpip` channel waiting for the runner's answer.
struct PendingChannel {
    channel: Channel<Msg>,
    reply: ChannelOpenHandle,
    /// When the channel's request arrived.
    received: std::time::Instant,
}

#[async_trait::async_trait]
impl UserIo for PendingChannel {
    async fn accept(self: Box<Self>) -> Result<Connection> {
        self.reply.accept().await;
        tracing::debug!(
            answered_us = self.received.elapsed().as_micros() as u64,
            "channel answered"
        );
        Ok(Connection::Channel(self.channel))
    }

    async fn refuse(self: Box<Self>, error: &Error) {
        self.reply.reject(open_failure(error.kind())).await;
    }
}

fn open_failure(kind: ErrorKind) -> ChannelOpenFailure {
    match kind {
        ErrorKind::Storage | ErrorKind::Internal => ChannelOpenFailure::ResourceShortage,
        ErrorKind::TunnelUnavailable | ErrorKind::Timeout | ErrorKind::Io => {
            ChannelOpenFailure::ConnectFailed
        }
        ErrorKind::NotFound | ErrorKind::InvalidArgument => ChannelOpenFailure::UnknownChannelType,
        ErrorKind::PermissionDenied
        | ErrorKind::AccessExpired
        | ErrorKind::Unauthenticated
        | ErrorKind::Protocol
        | ErrorKind::Recording
        | ErrorKind::Cancelled
        | ErrorKind::Conflict => ChannelOpenFailure::AdministrativelyProhibited,
    }
}

#[cfg(test)]
mod peer_tests;
#[cfg(test)]
mod tests;
