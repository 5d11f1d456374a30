//! [`Cluster`] on SQL: the `nodes` table and the control bus (PostgreSQL
//! `LISTEN/NOTIFY`, or in process on SQLite).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row as _;
use tokio::sync::mpsc;

use super::{Backend, SqlStore};
use crate::error::{Error, Result};
use crate::model::{Node, Timestamp};
use crate::secret::Secret;
use crate::store::bus::BUS_BUFFER;
use crate::store::{Cluster, ControlBus, ControlSubscription};

/// The PostgreSQL channel control messages travel on.
const CHANNEL: &str = "cpam_control";

/// How long a lost listener connection waits before it tries again.
const RELISTEN: Duration = Duration::from_millis(500);

const NODE: &str = "id, peer_address, version, started_at, heartbeat_at, node_key";

fn node(row: &sqlx::any::AnyRow) -> Result<Node> {
    Ok(Node {
        id: row.try_get("id")?,
        peer_address: row.try_get("peer_address")?,
        version: row.try_get("version")?,
        started_at: Timestamp(row.try_get("started_at")?),
        heartbeat_at: Timestamp(row.try_get("heartbeat_at")?),
        node_key: row.try_get("node_key")?,
    })
}

#[async_trait]
impl Cluster for SqlStore {
    async fn register_node(&self, n: &Node, live_after: Timestamp) -> Result<()> {
        let done = sqlx::query(
            "INSERT INTO nodes (id, peer_address, version, started_at, heartbeat_at, node_key) \
             VALUES ($1, $2, $3, $4, $5, $7) ON CONFLICT (id) DO UPDATE SET \
             peer_address = excluded.peer_address, version = excluded.version, \
             started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, \
             node_key = excluded.node_key \
             WHERE nodes.heartbeat_at < $6",
        )
        .bind(&n.id)
        .bind(&n.peer_address)
        .bind(&n.version)
        .bind(n.started_at.millis())
        .bind(n.heartbeat_at.millis())
        .bind(live_after.millis())
        .bind(&n.node_key)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() > 0 {
            return Ok(());
        }
        let running = self.list_nodes().await?.into_iter().find(|x| x.id == n.id);
        let detail = running.map_or_else(String::new, |r| {
            format!(
                " at {} (last heartbeat {})",
                r.peer_address,
                r.heartbeat_at.to_rfc3339()
            )
        });
        Err(Error::conflict(format!(
            "node id `{}` is already running{detail}; stop that node or start this one with another --node-id",
            n.id
        )))
    }

    async fn heartbeat_node(&self, id: &str, at: Timestamp) -> Result<()> {
        let done = sqlx::query("UPDATE nodes SET heartbeat_at = $1 WHERE id = $2")
            .bind(at.millis())
            .bind(id)
            .execute(&self.pool)
            .await?;
        super::found(&done, "node", &id)
    }

    async fn remove_node(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM nodes WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_nodes(&self) -> Result<Vec<Node>> {
        let sql = format!("SELECT {NODE} FROM nodes ORDER BY id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(node).collect()
    }

    async fn claim_lost_node(&self, id: &str, stale_before: Timestamp) -> Result<bool> {
        let done = sqlx::query("DELETE FROM nodes WHERE id = $1 AND heartbeat_at < $2")
            .bind(id)
            .bind(stale_before.millis())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").fetch_one(&self.pool).await?;
        Ok(())
    }

    fn control_bus(&self) -> Arc<dyn ControlBus> {
        self.bus.clone()
    }
}

/// The bus a store of `backend` at `url` uses.
pub(super) fn bus_for(backend: Backend, pool: &sqlx::AnyPool, url: &str) -> Arc<dyn ControlBus> {
    match backend {
        Backend::Sqlite => Arc::new(crate::store::LocalBus::default()),
        Backend::Postgres => Arc::new(PgBus {
            pool: pool.clone(),
            url: Secret::new(url.to_string()),
        }),
    }
}

/// `NOTIFY cpam_control` to send, one `PgListener` per subscriber to receive.
#[derive(Debug)]
struct PgBus {
    pool: sqlx::AnyPool,
    url: Secret<String>,
}

#[async_trait]
impl ControlBus for PgBus {
    async fn publish(&self, message: &str) -> Result<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(message)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn subscribe(&self) -> Result<ControlSubscription> {
        let mut listener = sqlx::postgres::PgListener::connect(self.url.expose()).await?;
        listener.listen(CHANNEL).await?;
        let (tx, rx) = mpsc::channel(BUS_BUFFER);
        let feeder = tokio::spawn(async move {
            loop {
                match listener.recv().await {
                    Ok(n) => {
                        if tx.send(n.payload().to_string()).await.is_err() {
                            return;
                        }
                    }
                    Err(error) => {
                        // The listener reconnects (and listens again) on
                        // the next `recv`; what was sent meanwhile is lost.
                        tracing::warn!(%error, "control bus: lost the database, listening again");
                        tokio::time::sleep(RELISTEN).await;
                    }
                }
            }
        });
        Ok(ControlSubscription::new(rx, Some(feeder)))
    }
}
