//! The hub's side of the peer relay (see [`crate::tunnel::peer`]): another
//! node of the cluster signs in with its node key, and each `direct-tcpip`
//! channel it opens is dialed through a gatekeeper linked here and spliced
//! to it. The node that opened the channel authorized the session and
//! records it; this side only carries bytes.

use std::sync::Arc;

use russh::Channel;
use russh::ChannelOpenFailure;
use russh::keys::PublicKey;
use russh::server::{ChannelOpenHandle, Msg};
use serde_json::json;

use super::Hub;
use super::limits::ChannelSlot;
use crate::error::{ErrorKind, Result};
use crate::model::SessionId;
use crate::model::{AuditCategory, Target, Timestamp};
use crate::proxy::tcp::{halves, splice};
use crate::record::{Watch, WatchFrame, live_wire};
use crate::server::NODE_TIMEOUT;
use crate::session::Counters;
use crate::tunnel::dialer::{Connection, DialTarget, Dialer};
use crate::tunnel::keys;
use crate::tunnel::peer::split_relay_host;

impl Hub {
    /// Whether `key` is the node key of live node `id`, another node than
    /// this one.
    pub(super) async fn node_key_holds(&self, id: &str, key: &PublicKey) -> Result<bool> {
        if self.engine.node().as_deref() == Some(id) {
            return Ok(false);
        }
        let stale_before =
            Timestamp::now().0 - i64::try_from(NODE_TIMEOUT.as_millis()).unwrap_or(i64::MAX);
        let row = self
            .engine
            .store()
            .list_nodes()
            .await?
            .into_iter()
            .find(|n| n.id == id && n.heartbeat_at.0 >= stale_before);
        Ok(row.is_some_and(|n| {
            keys::parse_public(&n.node_key, "node key")
                .is_ok_and(|k| k.key_data() == key.key_data())
        }))
    }

    /// Audits a peer link refused: `claimed` is the node id it signed in as.
    pub(super) async fn node_refused(&self, claimed: &str, key: &PublicKey, peer: &str) {
        tracing::warn!(node = %claimed, %peer, "peer link refused: not a live node's key");
        self.audit(
            AuditCategory::SystemMessages,
            "node.refused",
            "anonymous",
            None,
            json!({
                "node": claimed,
                "fingerprint": keys::fingerprint(key),
                "peer": peer,
                "reason": "not the key of a live node",
            }),
        )
        .await;
    }

    /// Carries one relayed channel of node `node`: dials `GATEKEEPER/HOST`
    /// `port` through the gatekeeper linked here and splices the two until
    /// either side ends or the hub shuts down.
    pub(super) async fn relay_channel(
        self: Arc<Self>,
        node: String,
        channel: Channel<Msg>,
        host: String,
        port: u32,
        originator: (String, u32),
        reply: ChannelOpenHandle,
    ) {
        let (Some((gatekeeper, host)), Ok(port)) = (split_relay_host(&host), u16::try_from(port))
        else {
            tracing::warn!(%node, %host, port, "relayed channel refused: malformed target");
            reply.reject(ChannelOpenFailure::UnknownChannelType).await;
            return;
        };
        if !self.gatekeepers.is_online(&gatekeeper) {
            // Not (or no longer) linked here: the other node reads the
            // store again.
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return;
        }
        let target = DialTarget {
            gatekeeper: Some(gatekeeper.clone()),
            target: Target {
                host: host.to_string(),
                port,
            },
            originator,
        };
        let upstream = match self.gatekeepers.dial(&target).await {
            Ok(c) => c,
            Err(e) => {
                tracing::info!(%node, gatekeeper = %gatekeeper, error = %e, "relayed channel refused");
                reply
                    .reject(if e.kind() == ErrorKind::PermissionDenied {
                        ChannelOpenFailure::AdministrativelyProhibited
                    } else {
                        ChannelOpenFailure::ConnectFailed
                    })
                    .await;
                return;
            }
        };
        reply.accept().await;
        let (mut peer_rx, mut peer_tx) = halves(Connection::Channel(channel));
        let (mut gk_rx, mut gk_tx) = halves(upstream);
        splice(
            &mut peer_rx,
            &mut peer_tx,
            &mut gk_rx,
            &mut gk_tx,
            Counters::default(),
            self.shutdown.child_token(),
        )
        .await;
        gk_tx.close().await;
        peer_tx.close().await;
    }

    /// Sends node `node` the live view of session `session` (`cpam-watch`)
    /// until it ends, the watcher leaves or the hub shuts down.
    pub(super) async fn watch_channel(
        self: Arc<Self>,
        node: String,
        session: SessionId,
        mut watch: Watch,
        channel: Channel<Msg>,
        slot: ChannelSlot,
    ) {
        tracing::info!(%node, %session, "watched from another node");
        let (mut rx, tx) = channel.split();
        loop {
            tokio::select! {
                frame = watch.next() => {
                    let Some(frame) = frame else { break };
                    let last = matches!(frame, WatchFrame::End(_));
                    if tx.data_bytes(live_wire::encode(&frame)).await.is_err() || last {
                        break;
                    }
                }
                msg = rx.wait() => match msg {
                    None | Some(russh::ChannelMsg::Eof | russh::ChannelMsg::Close) => break,
                    Some(_) => {}
                },
                _ = self.shutdown.cancelled() => break,
            }
        }
        let _ = tx.eof().await;
        let _ = tx.close().await;
        drop(slot);
    }
}
