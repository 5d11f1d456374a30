//! The file-transfer policy of a service.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::Body;
use crate::access;
use crate::model::ServiceId;
use crate::proxy::sftp::FilePolicy;
use crate::web::AppState;
use crate::web::auth::Caller;
use crate::web::error::ApiResult;

/// `GET /api/v1/services/{id}/file-policy`.
pub async fn get_file_policy(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let s = access::service(state.store.as_ref(), &caller.principal, &ServiceId(id)).await?;
    let policy = state.admin(&caller).file_policy(&s).await?;
    Ok(Json(json!(policy)))
}

/// `PUT /api/v1/services/{id}/file-policy`: replaces the policy (absent
/// fields take their defaults); answers it as stored, normalized.
pub async fn set_file_policy(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<FilePolicy>,
) -> ApiResult<Json<Value>> {
    let s = access::service(state.store.as_ref(), &caller.principal, &ServiceId(id)).await?;
    let policy = state.admin(&caller).set_file_policy(&s, body).await?;
    Ok(Json(json!(policy)))
}
