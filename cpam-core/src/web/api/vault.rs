//! Credentials the caller may check out (never their secrets), checkouts,
//! and the caller's master password.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Body, Query, opt_ts, ts};
use crate::model::{Checkout, CheckoutId, Permission, ServiceId, Timestamp, UserId};
use crate::policy::{self, Decision};
use crate::secret::Secret;
use crate::store::CheckoutFilter;
use crate::vault;
use crate::web::AppState;
use crate::web::auth::Caller;
use crate::web::error::{ApiError, ApiResult};

/// A checkout as the API shows it.
pub fn checkout_json(c: &Checkout, now: Timestamp) -> Value {
    json!({
        "id": c.id,
        "user": c.user_name,
        "user_id": c.user_id,
        "customer_id": c.customer_id,
        "service": c.service_name,
        "service_id": c.service_id,
        "status": c.status(now),
        "started_at": ts(c.started_at),
        "expires_at": ts(c.expires_at),
        "ended_at": opt_ts(c.ended_at),
        "end_reason": c.end_reason.map(|e| e.as_str()),
        "ended_by": c.ended_by,
    })
}

/// `GET /api/v1/credentials`: every service with a stored credential that
/// a grant allows the caller now, with their active checkout if any.
pub async fn list_credentials(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Value>> {
    let user = caller.user();
    let now = state.engine.clock().now();
    let mut out = Vec::new();
    for stored in state.store.list_credentials().await? {
        let Some(service) = state.store.service(&stored.service_id).await? else {
            continue;
        };
        let grants = state.store.grants_for(&user.id, &service.id).await?;
        let Decision::Allow { until, .. } = policy::decide_grants(user, &service, &grants, now)
        else {
            continue;
        };
        let customer = state.store.customer(&service.customer_id).await?;
        let limit = vault::checkout_limit(&state.store, &service.id).await?;
        let active = vault::active_checkout(&state.store, &user.id, &service.id, now).await?;
        out.push(json!({
            "service_id": service.id,
            "service": service.name,
            "customer_id": service.customer_id,
            "customer_name": customer.map(|c| c.name),
            "kind": service.kind.as_str(),
            "target": service.target.to_string(),
            "username": stored.username,
            "credential_kind": stored.kind.as_str(),
            "max_checkout_secs": limit.as_secs(),
            "grant_until": opt_ts(until),
            "checkout": active.map(|c| checkout_json(&c, now)),
        }));
    }
    Ok(Json(Value::Array(out)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCheckout {
    service_id: String,
    /// Seconds; default: the service's longest checkout.
    duration_secs: Option<u64>,
}

/// `POST /api/v1/checkouts`: checks out a credential for the caller. A
/// service the caller holds no grant for answers 404 like a missing one.
pub async fn create_checkout(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<NewCheckout>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let user = caller.user();
    let missing = || ApiError::not_found(format!("no service `{}`", body.service_id));
    let service = state
        .store
        .service(&ServiceId(body.service_id.clone()))
        .await?
        .ok_or_else(missing)?;
    if state
        .store
        .grants_for(&user.id, &service.id)
        .await?
        .is_empty()
        && !caller.principal.in_scope(&service.customer_id)
    {
        return Err(missing());
    }
    let now = state.engine.clock().now();
    let checkout = vault::check_out(
        &state.store,
        &state.audit,
        vault::CheckoutRequest {
            user,
            service: &service,
            duration: body.duration_secs.map(Duration::from_secs),
            gatekeeper: None,
            credential_gatekeeper: None,
            origin: "console",
        },
        now,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(checkout_json(&checkout, now))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckoutQuery {
    state: Option<String>,
    limit: Option<i64>,
}

/// `GET /api/v1/checkouts`: the caller's own checkouts, or with
/// `MANAGE_GRANTS` every checkout of the customers in scope.
pub async fn list_checkouts(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<CheckoutQuery>,
) -> ApiResult<Json<Value>> {
    let now = state.engine.clock().now();
    let active_at = match q.state.as_deref() {
        None | Some("all") => None,
        Some("active") => Some(now),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "state `{other}` must be active or all"
            )));
        }
    };
    let p = &caller.principal;
    let manager = p.has(Permission::MANAGE_GRANTS);
    let user_id: Option<UserId> = (!manager).then(|| p.user.id.clone());
    let limit = q.limit.unwrap_or(500).clamp(1, 10_000);
    let list = state
        .store
        .list_checkouts(&CheckoutFilter {
            user_id,
            active_at,
            ..CheckoutFilter::default()
        })
        .await?;
    let out: Vec<Value> = list
        .iter()
        .filter(|c| c.user_id == p.user.id || p.in_scope(&c.customer_id))
        .take(usize::try_from(limit).unwrap_or(500))
        .map(|c| checkout_json(c, now))
        .collect();
    Ok(Json(Value::Array(out)))
}

/// `DELETE /api/v1/checkouts/{id}`: the caller checks their own checkout
/// in; with `MANAGE_GRANTS`, anyone's in scope is revoked. Live sessions on
/// the service end.
pub async fn end_checkout(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let p = &caller.principal;
    let id = CheckoutId(id);
    let checkout = state
        .store
        .checkout(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no checkout `{id}`")))?;
    let now = state.engine.clock().now();
    if checkout.user_id == p.user.id {
        vault::check_in(&state.store, &state.audit, &p.user, &id, now).await?;
    } else if p.has(Permission::MANAGE_GRANTS) && p.in_scope(&checkout.customer_id) {
        state
            .admin(&caller)
            .revoke_checkout(id.as_str(), None)
            .await?;
    } else {
        return Err(ApiError::not_found(format!("no checkout `{id}`")));
    }
    if let Err(error) = state.engine.recheck().await {
        tracing::warn!(%error, "cannot recheck live sessions after a checkout ended");
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MasterPassword {
    /// The caller's login password or current master password.
    current: String,
    new: String,
}

/// `PUT /api/v1/me/master-password`: sets the caller's master password.
pub async fn set_master_password(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<MasterPassword>,
) -> ApiResult<StatusCode> {
    let current = Secret::new(body.current);
    let new = Secret::new(body.new);
    vault::set_master_password(
        &state.store,
        &state.audit,
        &state.throttle,
        caller.user(),
        &current,
        new,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/v1/users/{id}/master-password`: clears a user's master password.
pub async fn reset_master_password(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let user = state
        .store
        .user(&UserId(id.clone()))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no user `{id}`")))?;
    state.admin(&caller).reset_master_password(&user).await?;
    Ok(StatusCode::NO_CONTENT)
}
