//! Sessions (live and history, terminate) and grants.

use std::time::Duration;

use crate::access;
use crate::model::{GrantId, ServiceId, Session, SessionId, Timestamp, UserId};
use crate::store::SessionFilter;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Body, GrantJson, Query, grant_json, opt_ts, ts, with_live_counters};
use crate::web::AppState;
use crate::web::auth::Caller;
use crate::web::error::{ApiError, ApiResult};

/// A session as the API shows it; `customer_name` is looked up by the caller.
pub fn session_json(s: &Session, customer_name: Option<&str>, live: bool) -> Value {
    json!({
        "id": s.id,
        "user": s.user_name,
        "user_id": s.user_id,
        "customer_id": s.customer_id,
        "customer_name": customer_name,
        "gatekeeper_id": s.gatekeeper_id,
        "protocol": s.protocol,
        "node_id": s.node_id,
        "service": s.service_name,
        "service_id": s.service_id,
        "target": s.target.to_string(),
        "started_at": ts(s.started_at),
        "ended_at": opt_ts(s.ended_at),
        "bytes_up": s.bytes_up,
        "bytes_down": s.bytes_down,
        "end_reason": s.end_reason.map(|r| r.as_str()),
        "end_detail": s.end_detail,
        "live": live,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionQuery {
    state: Option<String>,
    limit: Option<i64>,
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<SessionQuery>,
) -> ApiResult<Json<Value>> {
    let live_only = match q.state.as_deref() {
        None | Some("all") => None,
        Some("active") => Some(true),
        Some("ended") => Some(false),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "state `{other}` must be active, ended or all"
            )));
        }
    };
    let limit = q.limit.unwrap_or(500).clamp(1, 10_000);
    let p = &caller.principal;
    // Narrow in the database where the scope allows it, filter exactly after.
    let user_id = (!p.has(crate::model::Permission::VIEW_SESSIONS)).then(|| p.user.id.clone());
    let sessions = state
        .store
        .list_sessions(&SessionFilter {
            live_only: live_only == Some(true),
            user_id,
            customer_id: None,
            limit: None,
        })
        .await?;
    let live = state.engine.live();
    let customers = state.store.list_customers().await?;
    let mut out = Vec::new();
    for s in sessions.into_iter().filter(|s| p.sees_session(s)) {
        let (s, is_live) = with_live_counters(s, &live);
        if live_only == Some(false) && is_live {
            continue;
        }
        let name = customers
            .iter()
            .find(|c| c.id == s.customer_id)
            .map(|c| c.name.as_str());
        out.push(session_json(&s, name, is_live));
        if out.len() as i64 >= limit {
            break;
        }
    }
    Ok(Json(Value::Array(out)))
}

async fn customer_name(state: &AppState, s: &Session) -> ApiResult<Option<String>> {
    Ok(state.store.customer(&s.customer_id).await?.map(|c| c.name))
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let s = access::session(state.store.as_ref(), &caller.principal, &SessionId(id)).await?;
    let (s, live) = with_live_counters(s, &state.engine.live());
    let name = customer_name(&state, &s).await?;
    Ok(Json(session_json(&s, name.as_deref(), live)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Terminate {
    reason: String,
}

pub async fn terminate(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<Terminate>,
) -> ApiResult<StatusCode> {
    let p = &caller.principal;
    let s = match state.store.session(&SessionId(id.clone())).await? {
        Some(s) if p.may_terminate(&s) => s,
        _ => return Err(ApiError::not_found(format!("no session `{id}`"))),
    };
    state
        .admin(&caller)
        .terminate_session(&state.engine, &s, &body.reason)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_grants(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<GrantJson>>> {
    let services = state.store.list_services(None).await?;
    let users = state.store.list_users().await?;
    let mut out = Vec::new();
    for g in state.store.list_grants(None).await? {
        let Some(s) = services.iter().find(|s| s.id == g.service_id) else {
            continue;
        };
        if !caller.principal.in_scope(&s.customer_id) {
            continue;
        }
        let user = users
            .iter()
            .find(|u| u.id == g.user_id)
            .map_or("", |u| u.name.as_str());
        out.push(grant_json(&g, user, s));
    }
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewGrant {
    /// A user name or id.
    user: String,
    service_id: String,
    not_before: Option<String>,
    not_after: Option<String>,
    days: Option<u32>,
    hours: Option<u32>,
}

pub async fn create_grant(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<NewGrant>,
) -> ApiResult<(StatusCode, Json<GrantJson>)> {
    let service = access::service(
        state.store.as_ref(),
        &caller.principal,
        &ServiceId(body.service_id),
    )
    .await?;
    let user = match state.store.user_by_name(&body.user).await? {
        Some(u) => u,
        None => state
            .store
            .user(&UserId(body.user.clone()))
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no user `{}`", body.user)))?,
    };
    let not_before = match body.not_before {
        Some(t) => Timestamp::parse_rfc3339(&t)?,
        None => Timestamp::now(),
    };
    let span =
        u64::from(body.days.unwrap_or(0)) * 86_400 + u64::from(body.hours.unwrap_or(0)) * 3600;
    let not_after = match (body.not_after, span) {
        (Some(_), s) if s > 0 => {
            return Err(ApiError::invalid(
                "give either not_after or days/hours, not both",
            ));
        }
        (Some(t), _) => Some(Timestamp::parse_rfc3339(&t)?),
        (None, 0) => None,
        (None, s) => Some(not_before.add(Duration::from_secs(s))),
    };
    let g = state
        .admin(&caller)
        .grant_service(&user, &service, not_before, not_after)
        .await?;
    // A longer grant extends the user's live sessions of the service.
    if let Err(error) = state.engine.recheck().await {
        tracing::warn!(%error, "cannot recheck live sessions after a grant was added");
    }
    Ok((
        StatusCode::CREATED,
        Json(grant_json(&g, &user.name, &service)),
    ))
}

pub async fn revoke_grant(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let (g, s) = access::grant(state.store.as_ref(), &caller.principal, &GrantId(id)).await?;
    state.admin(&caller).revoke_grant_of(&g, &s).await?;
    if let Err(error) = state.engine.recheck().await {
        tracing::warn!(%error, "cannot recheck live sessions after a grant was revoked");
    }
    Ok(StatusCode::NO_CONTENT)
}
