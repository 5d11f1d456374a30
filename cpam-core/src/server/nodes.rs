//! The nodes of a cluster: registration at start (a live id is refused),
//! the heartbeat, and the survivors' clean-up after a lost node.
//!
//! A node's gatekeeper links and sessions are leases on its heartbeat: while
//! it is fresh (younger than [`NODE_TIMEOUT`]) they are the node's; once it
//! is stale, the first survivor to claim the node (one `DELETE`, so exactly
//! one) marks its gatekeepers offline and ends its open sessions as `error`
//! with the detail [`NODE_LOST`], audited as `node.lost`; their recordings
//! that a shared store holds unsealed it then seals `incomplete`
//! ([`LostRecordings`]), each seal audited. A node reaps
//! others only after its own heartbeat has succeeded for a whole timeout, so
//! after a database outage every node gets to write its heartbeat again
//! before anyone judges the others.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::task::{JoinHandle, JoinSet};

use crate::error::{ErrorKind, Result};
use crate::model::{AuditCategory, AuditEvent, EndReason, Node, SessionId, Timestamp};
use crate::record::RecordingStore;
use crate::session::SessionEngine;
use crate::store::{SessionFilter, Store};
use crate::tunnel::GatekeeperDialer;

/// How often a node writes its heartbeat.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
/// A node whose heartbeat is older than this is lost.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(6);
/// The end detail of the sessions a lost node held.
pub const NODE_LOST: &str = "node lost";

/// This version, as nodes register it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// One node as listed: its row and whether its heartbeat is fresh at `now`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeStatus {
    #[serde(flatten)]
    pub node: Node,
    /// `live` or `lost` (stale heartbeat, not yet cleaned up).
    pub state: &'static str,
}

/// Every node of the store with its state at `now`.
pub async fn list(store: &Arc<dyn Store>, now: Timestamp) -> Result<Vec<NodeStatus>> {
    let stale_before = before(now, NODE_TIMEOUT);
    Ok(store
        .list_nodes()
        .await?
        .into_iter()
        .map(|node| NodeStatus {
            state: if node.heartbeat_at < stale_before {
                "lost"
            } else {
                "live"
            },
            node,
        })
        .collect())
}

fn before(now: Timestamp, d: Duration) -> Timestamp {
    Timestamp(now.0 - i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// This node's row at `now`.
pub(crate) fn row(id: &str, peer_address: &str, node_key: &str, now: Timestamp) -> Node {
    Node {
        id: id.to_string(),
        peer_address: peer_address.to_string(),
        version: VERSION.to_string(),
        started_at: now,
        heartbeat_at: now,
        node_key: node_key.to_string(),
    }
}

/// Registers `id` at `peer_address` with its `node_key`. A row of the same
/// id with a fresh heartbeat is watched for two heartbeat periods: if the
/// heartbeat moves, another process runs with this id and the start is
/// refused (`Conflict`, naming the id); if it stands still, that process
/// died and this one takes the row over.
pub async fn register(
    store: &Arc<dyn Store>,
    id: &str,
    peer_address: &str,
    node_key: &str,
) -> Result<()> {
    let row = |now: Timestamp| row(id, peer_address, node_key, now);
    let now = Timestamp::now();
    let first = match store
        .register_node(&row(now), before(now, NODE_TIMEOUT))
        .await
    {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == ErrorKind::Conflict => e,
        Err(e) => return Err(e),
    };
    let heartbeat = || async {
        Ok::<_, crate::Error>(
            store
                .list_nodes()
                .await?
                .into_iter()
                .find(|n| n.id == id)
                .map(|n| n.heartbeat_at),
        )
    };
    let seen = heartbeat().await?;
    tracing::info!(node = %id, "a node with this id registered recently; checking whether it is alive");
    let deadline = Instant::now() + HEARTBEAT_EVERY * 2 + Duration::from_millis(500);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now_seen = heartbeat().await?;
        if now_seen.is_some() && now_seen != seen {
            return Err(first);
        }
        if now_seen.is_none() {
            break;
        }
    }
    // Still the same heartbeat: the process that wrote it is gone.
    let live_after = Timestamp(seen.map_or(i64::MAX, |t| t.0 + 1));
    store
        .register_node(&row(Timestamp::now()), live_after)
        .await
}

/// Writes the heartbeat of node `me` every [`HEARTBEAT_EVERY`] and cleans
/// up after lost nodes (sealing their recordings in `recordings`), until
/// the task is aborted. `db_ok` follows whether the last heartbeat reached
/// the database; `gatekeepers` are this node's links, dropped if another
/// node declares this one lost.
pub fn spawn_heartbeat(
    engine: Arc<SessionEngine>,
    me: Node,
    gatekeepers: Arc<GatekeeperDialer>,
    db_ok: Arc<AtomicBool>,
    recordings: Option<Arc<dyn RecordingStore>>,
) -> JoinHandle<()> {
    let id = me.id.clone();
    tokio::spawn(async move {
        let store = engine.store().clone();
        let mut sealer = recordings.map(LostRecordings::new);
        let mut healthy_since: Option<Instant> = Some(Instant::now());
        let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = Timestamp::now();
            match store.heartbeat_node(&id, now).await {
                Ok(()) => {
                    db_ok.store(true, Ordering::SeqCst);
                    healthy_since.get_or_insert_with(Instant::now);
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    db_ok.store(true, Ordering::SeqCst);
                    healthy_since = None;
                    rejoin(&engine, &me, &gatekeepers, now).await;
                    continue;
                }
                Err(error) => {
                    if db_ok.swap(false, Ordering::SeqCst) {
                        tracing::error!(%error, "cannot write this node's heartbeat");
                    }
                    healthy_since = None;
                    continue;
                }
            }
            if healthy_since.is_some_and(|t| t.elapsed() >= NODE_TIMEOUT)
                && let Err(error) = reap(&engine, &id, now, sealer.as_mut()).await
            {
                tracing::warn!(%error, "cannot clean up after lost nodes");
            }
        }
    })
}

/// Another node declared this one lost (its heartbeat could not be written
/// for a whole timeout), ended its sessions and marked its gatekeepers
/// offline in the store: end the sessions here too, so what runs matches
/// the store, register again, and drop the gatekeeper links, which
/// reconnect (to this node or another) and so come back online.
async fn rejoin(
    engine: &Arc<SessionEngine>,
    me: &Node,
    gatekeepers: &GatekeeperDialer,
    now: Timestamp,
) {
    tracing::error!(node = %me.id, "another node declared this node lost; ending its sessions and registering again");
    engine.end_all(EndReason::Error, NODE_LOST);
    let row = row(&me.id, &me.peer_address, &me.node_key, now);
    if let Err(error) = engine
        .store()
        .register_node(&row, Timestamp(i64::MAX))
        .await
    {
        tracing::error!(%error, "cannot register this node again");
    }
    let dropped = gatekeepers
        .disconnect_all("this server node was declared lost; connect again")
        .await;
    if dropped > 0 {
        tracing::warn!(
            gatekeepers = dropped,
            "dropped the gatekeeper links so they reconnect"
        );
    }
}

/// Cleans up after every node whose heartbeat is stale at `now` and that
/// this node is the first to claim, and has `sealer` seal the recordings
/// of the sessions it ends. Returns how many it cleaned up.
pub async fn reap(
    engine: &Arc<SessionEngine>,
    me: &str,
    now: Timestamp,
    sealer: Option<&mut LostRecordings>,
) -> Result<usize> {
    let mut sealer = sealer;
    let store = engine.store();
    let stale_before = before(now, NODE_TIMEOUT);
    let mut n = 0;
    for lost in store.list_nodes().await? {
        if lost.id == me
            || lost.heartbeat_at >= stale_before
            || !store.claim_lost_node(&lost.id, stale_before).await?
        {
            continue;
        }
        let live = store
            .list_sessions(&SessionFilter {
                live_only: true,
                ..SessionFilter::default()
            })
            .await?;
        let sessions: Vec<_> = live
            .iter()
            .filter(|s| s.node_id.as_deref() == Some(lost.id.as_str()))
            .map(|s| s.id.clone())
            .collect();
        let released = store.release_node_gatekeepers(&lost.id).await?;
        let closed = store.close_node_sessions(&lost.id, now, NODE_LOST).await?;
        if let Some(sealer) = sealer.as_deref_mut() {
            sealer.seal(engine, sessions.clone());
        }
        tracing::warn!(node = %lost.id, sessions = closed, gatekeepers = released.len(), "node lost: its heartbeat stopped");
        for g in &released {
            engine.publish(crate::events::EngineEvent::GatekeeperOffline {
                gatekeeper: g.id.clone(),
                customer: g.customer_id.clone(),
                at: now,
            });
        }
        engine
            .record(AuditEvent {
                at: now,
                category: AuditCategory::SystemMessages,
                action: "node.lost".into(),
                actor: "system".into(),
                customer_id: None,
                session_id: None,
                detail: json!({
                    "node": lost.id,
                    "peer_address": lost.peer_address,
                    "last_heartbeat": lost.heartbeat_at.to_rfc3339(),
                    "cleaned_up_by": me,
                    "sessions_ended": sessions,
                    "sessions_closed": closed,
                    "gatekeepers_released": released.iter().map(|g| g.id.to_string()).collect::<Vec<_>>(),
                }),
            })
            .await;
        n += 1;
    }
    Ok(n)
}

/// Seals the recordings a lost node left unsealed in a shared store
/// ([`RecordingStore::seal_lost`]), each seal audited. A long recording is
/// read back whole to be sealed, so each reap's sealing runs in a task of
/// its own, never holding up the heartbeat; the tasks are the heartbeat
/// task's, aborted with it.
#[derive(Debug)]
pub struct LostRecordings {
    store: Arc<dyn RecordingStore>,
    tasks: JoinSet<()>,
}

impl LostRecordings {
    pub fn new(store: Arc<dyn RecordingStore>) -> LostRecordings {
        LostRecordings {
            store,
            tasks: JoinSet::new(),
        }
    }

    /// Starts sealing the recordings of `sessions`. A failure is logged:
    /// the sessions are ended all the same.
    pub fn seal(&mut self, engine: &Arc<SessionEngine>, sessions: Vec<SessionId>) {
        while self.tasks.try_join_next().is_some() {}
        let (engine, store) = (engine.clone(), self.store.clone());
        self.tasks.spawn(async move {
            for session in sessions {
                let store = store.clone();
                let id = session.clone();
                let sealed = match tokio::task::spawn_blocking(move || store.seal_lost(&id)).await {
                    Ok(Ok(sealed)) => sealed,
                    Ok(Err(error)) => {
                        tracing::error!(session = %session, %error, "cannot seal a lost node's recordings");
                        continue;
                    }
                    Err(error) => {
                        tracing::error!(session = %session, %error, "sealing a lost node's recordings stopped");
                        continue;
                    }
                };
                for m in &sealed {
                    tracing::warn!(recording = %m.manifest.recording_id, "sealed a lost node's recording as incomplete");
                    engine.record(crate::record::sealed_event(m)).await;
                }
            }
        });
    }
}
