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
use std::time::Duration;

use async_trait::async_trait;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use russh::{ChannelOpenFailure, client};

use super::connect::PinnedServer;
use super::dialer::{Connection, DIAL_TIMEOUT, DialTarget, Dialer, GatekeeperDialer, refusal};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{GatekeeperId, Timestamp};
use crate::store::Store;

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
    links: tokio::sync::Mutex<HashMap<String, Arc<client::Handle<PinnedServer>>>>,
}

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
            links: tokio::sync::Mutex::default(),
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
        let stale_before =
            Timestamp::now().0 - i64::try_from(self.node_timeout.as_millis()).unwrap_or(i64::MAX);
        let node = self
            .store
            .list_nodes()
            .await?
            .into_iter()
            .find(|n| n.id == holder && n.heartbeat_at.0 >= stale_before)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::TunnelUnavailable,
                    format!("gatekeeper {gk} is held by node {holder}, which is not live"),
                )
            })?;
        Ok((holder, node.peer_address))
    }

    /// The link to node `id` at `address`, signing in if there is none or
    /// it died.
    async fn link(&self, id: &str, address: &str) -> Result<Arc<client::Handle<PinnedServer>>> {
        let mut links = self.links.lock().await;
        if let Some(h) = links.get(id).filter(|h| !h.is_closed()) {
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
        links.insert(id.to_string(), handle.clone());
        tracing::info!(peer = %id, %address, "peer link up");
        Ok(handle)
    }

    async fn relay(&self, gk: &GatekeeperId, t: &DialTarget) -> Result<Connection> {
        let (holder, address) = self.holder(gk).await?;
        let mut retried = false;
        loop {
            let link = self.link(&holder, &address).await?;
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
                Ok(Err(russh::Error::ChannelOpenFailure(ChannelOpenFailure::ResourceShortage))) => {
                    return Err(Error::new(
                        ErrorKind::TunnelUnavailable,
                        format!("gatekeeper {gk} is no longer linked to node {holder}"),
                    ));
                }
                Ok(Err(russh::Error::ChannelOpenFailure(reason))) => {
                    return Err(refusal(gk, &t.target, reason));
                }
                // The link died under us: sign in again, once.
                Ok(Err(e)) if !retried => {
                    retried = true;
                    tracing::info!(peer = %holder, error = %e, "peer link lost; signing in again");
                    self.links.lock().await.remove(&holder);
                }
                Ok(Err(e)) => {
                    return Err(Error::from(e).context(&format!("peer link to node {holder}")));
                }
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
