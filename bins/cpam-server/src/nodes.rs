//! `cpam-server nodes`: the server nodes sharing the database.

use std::process::ExitCode;

use cpam_core::model::Timestamp;
use serde_json::json;

use crate::admin::{Common, ctx, print, table};

/// Lists the nodes with their state (`live`, `lost`) and heartbeat.
pub(crate) async fn nodes(c: &Common) -> anyhow::Result<ExitCode> {
    let x = ctx(c).await?;
    let list = cpam_core::server::list_nodes(&x.store, Timestamp::now()).await?;
    Ok(print(x.json, json!(list), || {
        table(
            &list,
            &[
                ("NODE", &|n| n.node.id.clone()),
                ("STATE", &|n| n.state.to_string()),
                ("ADDRESS", &|n| n.node.peer_address.clone()),
                ("VERSION", &|n| n.node.version.clone()),
                ("STARTED", &|n| n.node.started_at.to_rfc3339()),
                ("HEARTBEAT", &|n| n.node.heartbeat_at.to_rfc3339()),
            ],
        )
    }))
}
