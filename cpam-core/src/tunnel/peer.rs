//! The peer relay: a session authorized on this node reaches a gatekeeper
//! held by another node of the cluster.
//!
//! [`PeerDialer`] is the server's [`Dialer`]. A gatekeeper linked here is
//! dialed through the local registry, as on a single node. Otherwise the
//! dialer reads which live node holds the gatekeeper's link and opens a
//! `direct-tcpip` channel on an SSH link to that node's hub, one link per
//! peer, shared by every relayed session. Both ends authenticate: this node
//! signs in as `cpam-node:ID` with the key it made at start (its public half
//! is in its `nodes` row, which the peer checks, together with the row's
//! heartbeat), and the peer must present the cluster's hub key, the key
//! every gatekeeper pins. The channel's host is `GATEKEEPER_ID/HOST`; the
//! peer dials it through its gatekeeper link and splices the two channels.
//! This node keeps authorizing, recording and auditing the session, so the
//! session engine does not know the difference beyond the extra hop.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use russh::{ChannelMsg, ChannelOpenFailure, client};

use super::connect::PinnedServer;
use super::dialer::{Connection, DIAL_TIMEOUT, DialTarget, Dialer, GatekeeperDialer, refusal};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{GatekeeperId, SessionId, Timestamp};
use crate::record::{WatchFrame, live_wire};
use crate::store::Store;
use crate::tunnel::WATCH_COMMAND;

/// Prefix of the SSH user name a node signs in to another node's hub with:
/// `cpam-node:NODE_ID`.
pub const NODE_USER_PREFIX: &str = "cpam-node:";

/// The host of a relayed `direct-tcpip` channel: `GATEKEEPER_ID/HOST`.
pub fn relay_host(gatekeeper: &GatekeeperId, host: &str) -> String {
    format!("{}/{host}", gatekeeper.0)
}

/// Splits a relayed channel's host into the gatekeeper and the target host.
pub fn split_relay_host(host: &str) -> Option<(GatekeeperId, &str)> {
    let (gk, host) = host.split_once('/')?;
    (!gk.is_empty() && !host.is_empty()).then(|| (GatekeeperId(gk.to_string()), host))
}

/// Dials gatekeepers linked to this node directly and the others through
/// the node that holds them.
pub struct PeerDialer {
    local: Arc<GatekeeperDialer>,
    store: Arc<dyn Store>,
    node_id: String,
    key: Arc<PrivateKey>,
    hub_key: PublicKey,
    /// How old a peer's heartbeat may be for it to count as live.
    node_timeout: Duration,
    /// One slot per peer, each behind its own lock: signing in to a slow
    /// peer holds only that peer's slot, never the dials to the others.
    links: std::sync::Mutex<HashMap<String, Arc<PeerSlot>>>,
    /// Which node holds each gatekeeper, and where it is, as last read.
    holders: tokio::sync::Mutex<HashMap<GatekeeperId, (Instant, Holder)>>,
}

/// The node holding a gatekeeper's link: its id and peer address.
type Holder = (String, String);

/// The link to one peer, if signed in.
type PeerSlot = tokio::sync::Mutex<Option<Arc<client::Handle<PinnedServer>>>>;

/// How long a gatekeeper's holder, once read, is used without reading the
/// store again.
const HOLDER_TTL: Duration = Duration::from_secs(1);

impl std::fmt::Debug for PeerDialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerDialer")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl PeerDialer {
    /// The dialer of node `node_id`, which signs in to peers with `key` and
    /// expects them to present `hub_key`.
    pub fn new(
        local: Arc<GatekeeperDialer>,
        store: Arc<dyn Store>,
        node_id: &str,
        key: Arc<PrivateKey>,
        hub_key: PublicKey,
        node_timeout: Duration,
    ) -> Self {
        Self {
            local,
            store,
            node_id: node_id.to_string(),
            key,
            hub_key,
            node_timeout,
            links: std::sync::Mutex::default(),
            holders: tokio::sync::Mutex::default(),
        }
    }

    /// The live node that holds gatekeeper `gk`'s link and where to reach
    /// it, or why the gatekeeper cannot be reached.
    async fn holder(&self, gk: &GatekeeperId) -> Result<(String, String)> {
        let offline = || {
            Error::new(
                ErrorKind::TunnelUnavailable,
                format!("gatekeeper {gk} is offline"),
            )
        };
        let row = self.store.gatekeeper(gk).await?.ok_or_else(offline)?;
        let holder = match row.node_id {
            Some(n) if row.online && n != self.node_id => n,
            _ => return Err(offline()),
        };
        let address = self.live_node(&holder).await?.ok_or_else(|| {
            Error::new(
                ErrorKind::TunnelUnavailable,
                format!("gatekeeper {gk} is held by node {holder}, which is not live"),
            )
        })?;
        Ok((holder, address))
    }

    /// The link to node `id` at `address`, signing in if there is none or
    /// it died.
    async fn link(&self, id: &str, address: &str) -> Result<Arc<client::Handle<PinnedServer>>> {
        let slot = self.slot(id);
        let mut link = slot.lock().await;
        if let Some(h) = link.as_ref().filter(|h| !h.is_closed()) {
            return Ok(h.clone());
        }
        let sign_in = async {
            let handler = PinnedServer::new(self.hub_key.clone());
            let mut handle = super::gatekeeper::dial(address, handler).await?;
            let auth = handle
                .authenticate_publickey(
                    format!("{NODE_USER_PREFIX}{}", self.node_id),
                    PrivateKeyWithHashAlg::new(self.key.clone(), None),
                )
                .await
                .map_err(Error::from)?;
            if !auth.success() {
                return Err(Error::new(
                    ErrorKind::Unauthenticated,
                    format!("node {id} at {address} refused this node's key"),
                ));
            }
            Ok(handle)
        };
        let handle = tokio::time::timeout(DIAL_TIMEOUT, sign_in)
            .await
            .map_err(|_| {
                Error::new(
                    ErrorKind::Timeout,
                    format!("node {id} at {address} did not answer in time"),
                )
            })?
            .map_err(|e| e.context(&format!("peer link to node {id}")))?;
        let handle = Arc::new(handle);
        *link = Some(handle.clone());
        tracing::info!(peer = %id, %address, "peer link up");
        Ok(handle)
    }

    /// Peer `id`'s slot, made on first use.
    fn slot(&self, id: &str) -> Arc<PeerSlot> {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        links.entry(id.to_string()).or_default().clone()
    }

    /// Forgets the link to peer `id` (it died or its node is gone), closing
    /// it if it is still up.
    async fn forget(&self, id: &str) {
        let slot = self
            .links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        if let Some(slot) = slot
            && let Some(h) = slot.lock().await.take()
        {
            let _ = h
                .disconnect(russh::Disconnect::ByApplication, "peer gone", "en")
                .await;
        }
    }

    /// The live view of `session`, which live node `node` runs, over the
    /// peer link: `Conflict` when that node has nothing to show for it.
    pub async fn watch(&self, node: &str, session: &SessionId) -> Result<RemoteWatch> {
        let address = self.live_node(node).await?.ok_or_else(|| {
            Error::new(
                ErrorKind::TunnelUnavailable,
                format!("node {node}, which runs session `{session}`, is not live"),
            )
        })?;
        let link = self.link(node, &address).await?;
        let open = async {
            let mut channel = link.channel_open_session().await?;
            channel
                .exec(true, format!("{WATCH_COMMAND} {session}"))
                .await?;
            loop {
                match channel.wait().await {
                    Some(ChannelMsg::Success) => return Ok(Some(channel)),
                    Some(ChannelMsg::Failure) | None => return Ok(None),
                    Some(_) => {}
                }
            }
        };
        let channel = tokio::time::timeout(DIAL_TIMEOUT, open)
            .await
            .map_err(|_| {
                Error::new(
                    ErrorKind::Timeout,
                    format!("node {node} did not answer a live view in time"),
                )
            })?
            .map_err(|e: russh::Error| {
                Error::from(e).context(&format!("peer link to node {node}"))
            })?
            .ok_or_else(|| {
                Error::conflict(format!(
                    "session `{session}` has no live terminal or desktop on node {node}"
                ))
            })?;
        Ok(RemoteWatch {
            channel,
            decoder: live_wire::Decoder::default(),
        })
    }

    /// The peer address of `node` if its heartbeat is fresh.
    async fn live_node(&self, node: &str) -> Result<Option<String>> {
        let stale_before =
            Timestamp::now().0 - i64::try_from(self.node_timeout.as_millis()).unwrap_or(i64::MAX);
        Ok(self
            .store
            .list_nodes()
            .await?
            .into_iter()
            .find(|n| n.id == node && n.heartbeat_at.0 >= stale_before)
            .map(|n| n.peer_address))
    }

    /// [`PeerDialer::holder`] as read within the last [`HOLDER_TTL`]: a
    /// burst of sessions to one gatekeeper reads the store once. A stale
    /// answer costs one refused channel, after which the store is read
    /// again.
    async fn cached_holder(&self, gk: &GatekeeperId) -> Result<(String, String)> {
        if let Some((at, holder)) = self.holders.lock().await.get(gk)
            && at.elapsed() < HOLDER_TTL
        {
            return Ok(holder.clone());
        }
        let holder = self.holder(gk).await?;
        self.holders
            .lock()
            .await
            .insert(gk.clone(), (Instant::now(), holder.clone()));
        Ok(holder)
    }

    async fn relay(&self, gk: &GatekeeperId, t: &DialTarget) -> Result<Connection> {
        let mut fresh = false;
        let (mut holder, mut address) = self.cached_holder(gk).await?;
        let mut retried = false;
        loop {
            let link = match self.link(&holder, &address).await {
                Ok(link) => link,
                // The node is gone (the gatekeeper may have moved): read
                // the store again, once.
                Err(e) if !retried => {
                    retried = true;
                    tracing::info!(peer = %holder, error = %e, "peer unreachable; looking up the gatekeeper again");
                    self.holders.lock().await.remove(gk);
                    (holder, address) = self.cached_holder(gk).await?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let open = link.channel_open_direct_tcpip(
                relay_host(gk, &t.target.host),
                u32::from(t.target.port),
                t.originator.0.clone(),
                t.originator.1,
            );
            match tokio::time::timeout(DIAL_TIMEOUT, open).await {
                Err(_) => {
                    return Err(Error::new(
                        ErrorKind::Timeout,
                        format!("node {holder} did not open a channel to gatekeeper {gk} in time"),
                    ));
                }
                Ok(Ok(channel)) => return Ok(Connection::PeerChannel(channel)),
                // The gatekeeper moved since it was looked up: look again.
                Ok(Err(russh::Error::ChannelOpenFailure(ChannelOpenFailure::ResourceShortage)))
                    if !fresh =>
                {
                    fresh = true;
                    self.holders.lock().await.remove(gk);
                    (holder, address) = self.cached_holder(gk).await?;
                }
                Ok(Err(russh::Error::ChannelOpenFailure(ChannelOpenFailure::ResourceShortage))) => {
                    return Err(Error::new(
                        ErrorKind::TunnelUnavailable,
                        format!("gatekeeper {gk} is no longer linked to node {holder}"),
                    ));
                }
                Ok(Err(russh::Error::ChannelOpenFailure(reason))) => {
                    return Err(refusal(gk, &t.target, reason));
                }
                // The link died under us: sign in again (or find the
                // gatekeeper's new node), once.
                Ok(Err(e)) if !retried => {
                    retried = true;
                    tracing::info!(peer = %holder, error = %e, "peer link lost; signing in again");
                    self.forget(&holder).await;
                    self.holders.lock().await.remove(gk);
                    (holder, address) = self.cached_holder(gk).await?;
                }
                Ok(Err(e)) => {
                    return Err(Error::from(e).context(&format!("peer link to node {holder}")));
                }
            }
        }
    }
}

/// A live view of a session another node runs (see [`PeerDialer::watch`]).
#[derive(Debug)]
pub struct RemoteWatch {
    channel: russh::Channel<client::Msg>,
    decoder: live_wire::Decoder,
}

impl RemoteWatch {
    /// The next frame, as [`Watch::next`](crate::record::Watch::next);
    /// `None` once the other node stopped sending.
    pub async fn next(&mut self) -> Option<WatchFrame> {
        loop {
            match self.decoder.next_frame() {
                Ok(Some(frame)) => return Some(frame),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%error, "ending a live view from another node");
                    return None;
                }
            }
            match self.channel.wait().await? {
                ChannelMsg::Data { data } => self.decoder.push(&data),
                ChannelMsg::Eof | ChannelMsg::Close => return None,
                _ => {}
            }
        }
    }
}

#[async_trait]
impl Dialer for PeerDialer {
    async fn dial(&self, t: &DialTarget) -> Result<Connection> {
        match &t.gatekeeper {
            Some(gk) if !self.local.is_online(gk) => self.relay(gk, t).await,
            _ => self.local.dial(t).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_hosts_round_trip_and_malformed_ones_are_refused() {
        let gk = GatekeeperId("gk_1".into());
        let host = relay_host(&gk, "10.0.0.5");
        assert_eq!(host, "gk_1/10.0.0.5");
        assert_eq!(split_relay_host(&host), Some((gk, "10.0.0.5")));
        for bad in ["10.0.0.5", "/10.0.0.5", "gk_1/", ""] {
            assert_eq!(split_relay_host(bad), None, "{bad}");
        }
    }
}
