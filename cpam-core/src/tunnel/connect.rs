//! The vendor-side Connection Manager client: one SSH link to the server,
//! one channel per local TCP connection, each channel a session.

use std::net::SocketAddr;
use std::sync::Arc;

use russh::client::{self, Msg};
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use russh::{Channel, ChannelOpenFailure};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::gatekeeper::{dial, exec_json, read_json};
use super::profile::Profile;
use super::{
    Backoff, CHECKIN_COMMAND, CHECKOUT_COMMAND, CHECKOUTS_COMMAND, IPCONNECT_MODE_COMMAND,
    LOCAL_ADDRESS_MARK, MASTER_PASSWORD_COMMAND, RDP_CREDENTIAL_COMMAND, SERVICES_COMMAND, keys,
};
use crate::error::{Error, ErrorKind, Result};
use crate::proxy::tcp::{Sink, Source, StreamSink, StreamSource, splice};
use crate::secret::Secret;
use crate::session::Counters;

/// A session opened with [`ConnectClient::open_stream`].
pub type SessionStream = russh::ChannelStream<Msg>;

/// A service the profile's user may use now.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServiceInfo {
    pub name: String,
    pub kind: String,
    pub target: String,
    /// When the current grant ends (RFC 3339), if it does.
    pub until: Option<String>,
}

/// The services listing with the gatekeeper's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Services {
    pub gatekeeper: String,
    pub online: bool,
    pub services: Vec<ServiceInfo>,
}

/// A client handler that accepts only `server_key` (a hub's key: the
/// profile's pin, or the cluster's key between nodes).
pub(crate) struct PinnedServer {
    server_key: PublicKey,
}

impl PinnedServer {
    pub(crate) fn new(server_key: PublicKey) -> Self {
        Self { server_key }
    }
}

impl client::Handler for PinnedServer {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(match key {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => {
                key.key_data() == self.server_key.key_data()
            }
            _ => false,
        })
    }
}

/// A Connection Manager bound to one profile (and so to one gatekeeper).
pub struct ConnectClient {
    profile: Profile,
    key: Arc<PrivateKey>,
    server_key: PublicKey,
    link: tokio::sync::Mutex<Option<Arc<client::Handle<PinnedServer>>>>,
}

impl std::fmt::Debug for ConnectClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectClient")
            .field("server", &self.profile.server)
            .field("gatekeeper", &self.profile.gatekeeper_name)
            .finish_non_exhaustive()
    }
}

impl ConnectClient {
    /// A client for `profile`; nothing is dialed until first use.
    pub fn new(profile: Profile) -> Result<Arc<Self>> {
        let key = keys::parse_private(profile.key.expose(), "profile key")?;
        let server_key = keys::parse_public(&profile.server_key, "profile server_key")?;
        Ok(Arc::new(Self {
            profile,
            key: Arc::new(key),
            server_key,
            link: tokio::sync::Mutex::new(None),
        }))
    }

    /// The profile.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The SSH link, dialing (once) if there is none or it died.
    async fn link(&self) -> Result<Arc<client::Handle<PinnedServer>>> {
        let mut guard = self.link.lock().await;
        if let Some(h) = guard.as_ref().filter(|h| !h.is_closed()) {
            return Ok(h.clone());
        }
        let handler = PinnedServer::new(self.server_key.clone());
        let mut handle = dial(&self.profile.server, handler).await?;
        let auth = handle
            .authenticate_publickey(
                self.profile.user.clone(),
                PrivateKeyWithHashAlg::new(self.key.clone(), None),
            )
            .await
            .map_err(Error::from)?;
        if !auth.success() {
            return Err(Error::new(
                ErrorKind::Unauthenticated,
                format!(
                    "the server refused the profile's key for user `{}` (revoked, or a profile of another server)",
                    self.profile.user
                ),
            ));
        }
        let handle = Arc::new(handle);
        *guard = Some(handle.clone());
        Ok(handle)
    }

    /// Connects, retrying with backoff while the server is unreachable, until
    /// it answers or `shutdown`. Authentication failures are not retried.
    pub async fn connect_with_retry(&self, shutdown: &CancellationToken) -> Result<()> {
        let mut backoff = Backoff::default();
        loop {
            match self.link().await {
                Ok(_) => return Ok(()),
                Err(e) if matches!(e.kind(), ErrorKind::TunnelUnavailable | ErrorKind::Timeout) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(server = %self.profile.server, error = %e, ?delay, "server unreachable, retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Err(Error::new(ErrorKind::Cancelled, "stopped")),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The services the user may use now through the profile's gatekeeper.
    pub async fn services(&self) -> Result<Services> {
        let link = self.link().await?;
        let v = exec_json(
            &link,
            &format!("{SERVICES_COMMAND} {}", self.profile.gatekeeper_id),
        )
        .await?;
        serde_json::from_value(v).map_err(|e| {
            Error::new(
                ErrorKind::Protocol,
                format!("malformed services answer: {e}"),
            )
        })
    }

    /// Checks out the credential of `service` (of the profile's
    /// gatekeeper's customer) for `duration` (`None`: the service's
    /// longest); answers the checkout as JSON.
    pub async fn checkout(
        &self,
        service: &str,
        duration: Option<std::time::Duration>,
    ) -> Result<serde_json::Value> {
        let link = self.link().await?;
        let mut command = format!(
            "{CHECKOUT_COMMAND} {service} {}",
            self.profile.gatekeeper_id
        );
        if let Some(d) = duration {
            command.push_str(&format!(" {}", d.as_secs()));
        }
        exec_json(&link, &command).await
    }

    /// Checks in the user's active checkout of `service`.
    pub async fn checkin(&self, service: &str) -> Result<serde_json::Value> {
        let link = self.link().await?;
        let command = format!("{CHECKIN_COMMAND} {service} {}", self.profile.gatekeeper_id);
        exec_json(&link, &command).await
    }

    /// The user's checkouts, newest first.
    pub async fn checkouts(&self) -> Result<serde_json::Value> {
        let link = self.link().await?;
        exec_json(&link, CHECKOUTS_COMMAND).await
    }

    /// Sets the user's master password; `current` is their login password
    /// or current master password. Both travel on the channel, never on a
    /// command line.
    pub async fn set_master_password(
        &self,
        current: &Secret<String>,
        new: &Secret<String>,
    ) -> Result<serde_json::Value> {
        let link = self.link().await?;
        let body = Secret::new(
            serde_json::json!({ "current": current.expose(), "new": new.expose() }).to_string(),
        );
        let ch = link.channel_open_session().await.map_err(Error::from)?;
        ch.exec(true, MASTER_PASSWORD_COMMAND)
            .await
            .map_err(Error::from)?;
        ch.data(body.expose().as_bytes())
            .await
            .map_err(Error::from)?;
        ch.eof().await.map_err(Error::from)?;
        read_json(ch, MASTER_PASSWORD_COMMAND).await
    }

    /// The user's IP Connect preference and the server-wide setting, as the
    /// server names them: `(user, server)`.
    pub async fn ip_connect_mode(&self) -> Result<(String, String)> {
        let link = self.link().await?;
        let v = exec_json(&link, IPCONNECT_MODE_COMMAND).await?;
        let field = |name: &str| {
            v.get(name)
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::Protocol,
                        format!("malformed IP Connect mode answer: no `{name}`"),
                    )
                })
        };
        Ok((field("user")?, field("server")?))
    }

    /// A one-time credential for the user's next RDP session to `service`
    /// (kind `rdp`), issued after `master`, the user's master password:
    /// `{"username", "password", "valid_secs"}`. The RDP client types it
    /// at the proxy's NLA login; the target's own credential stays in the
    /// vault.
    pub async fn rdp_credential(
        &self,
        service: &str,
        master: &Secret<String>,
    ) -> Result<serde_json::Value> {
        let link = self.link().await?;
        let body = Secret::new(serde_json::json!({ "master": master.expose() }).to_string());
        let command = format!(
            "{RDP_CREDENTIAL_COMMAND} {service} {}",
            self.profile.gatekeeper_id
        );
        let ch = link.channel_open_session().await.map_err(Error::from)?;
        ch.exec(true, command.as_str()).await.map_err(Error::from)?;
        ch.data(body.expose().as_bytes())
            .await
            .map_err(Error::from)?;
        ch.eof().await.map_err(Error::from)?;
        read_json(ch, RDP_CREDENTIAL_COMMAND).await
    }

    /// Opens one session to `service` as a channel; `originator` is the local client.
    pub async fn open(&self, service: &str, originator: SocketAddr) -> Result<Channel<Msg>> {
        self.open_via(service, originator, None).await
    }

    /// Like [`ConnectClient::open`]; `local` is the local address the client
    /// connected to (an IP Connect mapping), audited with the session.
    pub async fn open_via(
        &self,
        service: &str,
        originator: SocketAddr,
        local: Option<SocketAddr>,
    ) -> Result<Channel<Msg>> {
        let link = self.link().await?;
        let mut spec = format!("{service}@{}", self.profile.gatekeeper_id);
        if let Some(local) = local {
            spec.push_str(&format!("{LOCAL_ADDRESS_MARK}{local}"));
        }
        match link
            .channel_open_direct_tcpip(
                spec,
                0,
                originator.ip().to_string(),
                u32::from(originator.port()),
            )
            .await
        {
            Ok(ch) => Ok(ch),
            Err(russh::Error::ChannelOpenFailure(reason)) => Err(refusal(service, reason)),
            Err(e) => Err(Error::from(e)),
        }
    }

    /// Opens one session to `service` as a byte stream (`AsyncRead` +
    /// `AsyncWrite`): what embedders read and write instead of a local socket.
    /// Shutting down its write side sends EOF towards the target.
    pub async fn open_stream(
        &self,
        service: &str,
        originator: SocketAddr,
    ) -> Result<SessionStream> {
        Ok(self.open(service, originator).await?.into_stream())
    }

    /// Serves `listener`: every accepted connection becomes one session to `service`.
    pub async fn forward(
        self: Arc<Self>,
        service: String,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<()> {
        let tasks = TaskTracker::new();
        loop {
            let (tcp, peer) = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = listener.accept() => match r {
                    Ok(pair) => pair,
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        continue;
                    }
                },
            };
            let client = self.clone();
            let service = service.clone();
            let stop = shutdown.clone();
            tasks.spawn(async move {
                if let Err(e) = client.serve_one(&service, tcp, peer, None, stop).await {
                    tracing::warn!(%peer, %service, kind = %e.kind(), error = %e, "session refused");
                }
            });
        }
        tasks.close();
        tasks.wait().await;
        Ok(())
    }

    /// Runs one accepted connection as a session to `service`; `local`
    /// (IP Connect) is the address it was accepted on, and a refusal
    /// reaches the client as a TCP reset.
    pub(crate) async fn serve_one(
        &self,
        service: &str,
        tcp: TcpStream,
        peer: SocketAddr,
        local: Option<SocketAddr>,
        stop: CancellationToken,
    ) -> Result<()> {
        tcp.set_nodelay(true)?;
        let asked = std::time::Instant::now();
        let channel = match self.open_via(service, peer, local).await {
            Ok(c) => {
                tracing::debug!(%peer, %service, opened_us = asked.elapsed().as_micros() as u64, "channel opened");
                c
            }
            Err(e) => {
                if local.is_some() {
                    // Dropped with a zero linger: a reset, never a hang or a clean close.
                    let _ = tcp.set_zero_linger();
                }
                return Err(e);
            }
        };
        let (r, w) = tcp.into_split();
        self.splice_session(
            service,
            channel,
            StreamSource::new(r),
            StreamSink(w),
            peer,
            stop,
        )
        .await
    }

    /// Runs one connection given as a [`Source`] and a [`Sink`] (the IP
    /// Connect driver's) as a session to `service`. A refusal returns
    /// before anything moved, so the caller can reset the connection.
    pub async fn serve_split(
        &self,
        service: &str,
        rx: impl Source,
        tx: impl Sink,
        peer: SocketAddr,
        local: Option<SocketAddr>,
        stop: CancellationToken,
    ) -> Result<()> {
        let channel = self.open_via(service, peer, local).await?;
        self.splice_session(service, channel, rx, tx, peer, stop)
            .await
    }

    async fn splice_session(
        &self,
        service: &str,
        channel: Channel<Msg>,
        mut rx: impl Source,
        mut tx: impl Sink,
        peer: SocketAddr,
        stop: CancellationToken,
    ) -> Result<()> {
        tracing::info!(%peer, %service, "session open");
        let (mut ch_rx, mut ch_tx) = channel.split();
        let counters = Arc::new(Counters::default());
        let end = splice(
            &mut rx,
            &mut tx,
            &mut ch_rx,
            &mut ch_tx,
            counters.clone(),
            stop,
        )
        .await;
        let _ = ch_tx.close().await;
        let (up, down) = counters.snapshot();
        tracing::info!(%peer, %service, ?end, up, down, "session closed");
        Ok(())
    }
}

fn refusal(service: &str, reason: ChannelOpenFailure) -> Error {
    match reason {
        ChannelOpenFailure::AdministrativelyProhibited => Error::denied(format!(
            "the server refused `{service}`: no valid grant now, or the customer's gatekeeper refused it (see the admin log)"
        )),
        ChannelOpenFailure::UnknownChannelType => Error::not_found(format!(
            "no service `{service}` for this profile's customer"
        )),
        _ => Error::new(
            ErrorKind::TunnelUnavailable,
            format!(
                "`{service}` is unreachable: the gatekeeper is offline or cannot reach the target"
            ),
        ),
    }
}
