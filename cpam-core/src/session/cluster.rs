//! Controls across nodes: a terminate, revocation or re-check made on one
//! node reaches the node that holds the session, through the store's
//! [`ControlBus`] (PostgreSQL `LISTEN/NOTIFY`; in process on one node).
//!
//! Each node applies its own controls at once and announces them; every
//! node applies the others' announcements to the sessions it holds. A
//! message lost while the database is unreachable is covered by the
//! authorization cache's 1 s life (new sessions) and by the next re-check.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::SessionEngine;
use crate::error::Result;
use crate::events::Revocation;
use crate::model::{EndReason, GatekeeperId, Session, SessionId, Timestamp};
use crate::store::ControlBus;

/// A control one node sends the others.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(super) enum Control {
    Terminate {
        session: SessionId,
        by: String,
        reason: Option<String>,
    },
    Revoke {
        revocation: Revocation,
    },
    /// The sessions through a gatekeeper whose link ended, or that its
    /// customer switched off, started before `before`.
    EndGatekeeper {
        gatekeeper: GatekeeperId,
        reason: EndReason,
        detail: String,
        before: Timestamp,
    },
    Recheck,
}

/// A control with the node that sent it (nodes skip their own).
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    from: String,
    #[serde(flatten)]
    control: Control,
}

impl SessionEngine {
    /// Joins the nodes sharing `bus`: from now on this engine's terminate,
    /// revoke and re-check also reach the sessions other nodes hold, and
    /// theirs reach this node's. Returns the task carrying the messages;
    /// the caller owns it (the server stops it at `stop`).
    pub async fn join_cluster(
        self: &Arc<Self>,
        bus: Arc<dyn ControlBus>,
    ) -> Result<JoinHandle<()>> {
        let mut incoming = bus.subscribe().await?;
        let (tx, mut outgoing) = mpsc::unbounded_channel::<String>();
        *self.cluster.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
        let engine = Arc::downgrade(self);
        let me = self.node().unwrap_or_default();
        Ok(tokio::spawn(async move {
            loop {
                tokio::select! {
                    out = outgoing.recv() => {
                        let Some(message) = out else { return };
                        if let Err(error) = bus.publish(&message).await {
                            tracing::warn!(%error, "cannot send a control to the other nodes");
                        }
                    }
                    got = incoming.recv() => {
                        let Some(message) = got else { return };
                        let Some(engine) = engine.upgrade() else { return };
                        engine.apply_remote(&me, &message).await;
                    }
                }
            }
        }))
    }

    /// Ends live `session` with reason `terminated_by` wherever it runs:
    /// here at once, or, when another node holds it and this engine joined
    /// a cluster, by sending that node the terminate. Returns whether the
    /// session was live here or was sent on.
    pub fn terminate_anywhere(&self, session: &Session, by: &str, reason: Option<&str>) -> bool {
        if self.terminate(&session.id, by, reason) {
            return true;
        }
        let elsewhere = session.ended_at.is_none()
            && session.node_id.is_some()
            && session.node_id != self.node();
        if !elsewhere || !self.in_cluster() {
            return false;
        }
        self.announce(Control::Terminate {
            session: session.id.clone(),
            by: by.to_string(),
            reason: reason.map(str::to_string),
        });
        true
    }

    fn in_cluster(&self) -> bool {
        self.cluster
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Sends `control` to the other nodes, if this engine joined a cluster.
    pub(super) fn announce(&self, control: Control) {
        let guard = self.cluster.lock().unwrap_or_else(|p| p.into_inner());
        let Some(tx) = guard.as_ref() else { return };
        let envelope = Envelope {
            from: self.node().unwrap_or_default(),
            control,
        };
        match serde_json::to_string(&envelope) {
            Ok(text) => {
                let _ = tx.send(text);
            }
            Err(error) => tracing::error!(%error, "cannot encode a control message"),
        }
    }

    async fn apply_remote(&self, me: &str, message: &str) {
        let envelope: Envelope = match serde_json::from_str(message) {
            Ok(e) => e,
            Err(error) => {
                tracing::warn!(%error, "ignoring a malformed control message");
                return;
            }
        };
        if envelope.from == me {
            return;
        }
        match envelope.control {
            Control::Terminate {
                session,
                by,
                reason,
            } => {
                if self.terminate(&session, &by, reason.as_deref()) {
                    tracing::info!(%session, from = %envelope.from, "terminated at another node's request");
                }
            }
            Control::Revoke { revocation } => {
                self.revoke_here(&revocation);
            }
            Control::EndGatekeeper {
                gatekeeper,
                reason,
                detail,
                before,
            } => {
                let n = self.end_gatekeeper_sessions_here(&gatekeeper, reason, &detail, before);
                if n > 0 {
                    tracing::info!(%gatekeeper, sessions = n, from = %envelope.from, "ended sessions through another node's gatekeeper");
                }
            }
            Control::Recheck => {
                if let Err(error) = self.recheck_here().await {
                    tracing::warn!(%error, "re-check asked by another node failed");
                }
            }
        }
    }
}
