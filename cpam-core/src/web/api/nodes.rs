//! The server nodes sharing the store (`GET /api/v1/nodes`).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::ts;
use crate::model::Timestamp;
use crate::web::AppState;
use crate::web::auth::Caller;
use crate::web::error::ApiResult;

/// Every registered node, its heartbeat and whether it is live or lost.
pub async fn list(State(state): State<AppState>, _caller: Caller) -> ApiResult<Json<Vec<Value>>> {
    let nodes = crate::server::list_nodes(&state.store, Timestamp::now()).await?;
    Ok(Json(
        nodes
            .into_iter()
            .map(|n| {
                json!({
                    "id": n.node.id,
                    "peer_address": n.node.peer_address,
                    "version": n.node.version,
                    "started_at": ts(n.node.started_at),
                    "heartbeat_at": ts(n.node.heartbeat_at),
                    "state": n.state,
                })
            })
            .collect(),
    ))
}
