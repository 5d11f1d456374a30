//! Customers, their gatekeepers and services, registration codes and the
//! Connection Manager profile.

use std::time::Duration;

use crate::access;
use crate::model::{Customer, CustomerId, GatekeeperId, ServiceId, ServiceKind, Target};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Body, GatekeeperJson, gatekeeper_json, service_json, ts};
use crate::web::AppState;
use crate::web::auth::Caller;
use crate::web::error::{ApiError, ApiResult};

async fn customer_json(state: &AppState, c: &Customer) -> ApiResult<Value> {
    let gks: Vec<GatekeeperJson> = state
        .store
        .list_gatekeepers(Some(&c.id))
        .await?
        .iter()
        .map(|g| gatekeeper_json(g, c))
        .collect();
    Ok(json!({ "id": c.id, "name": c.name, "created_at": ts(c.created_at), "gatekeepers": gks }))
}

pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    let customers = caller
        .principal
        .visible_customers(state.store.list_customers().await?);
    let gks = state.store.list_gatekeepers(None).await?;
    let out = customers
        .iter()
        .map(|c| {
            let gk = gks.iter().find(|g| g.customer_id == c.id).map(|g| {
                json!({ "id": g.id, "name": g.name, "registered": g.is_registered(), "online": g.online })
            });
            json!({ "id": c.id, "name": c.name, "created_at": ts(c.created_at), "gatekeeper": gk })
        })
        .collect();
    Ok(Json(Value::Array(out)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCustomer {
    name: String,
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<NewCustomer>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let c = state.admin(&caller).add_customer(&body.name).await?;
    Ok((StatusCode::CREATED, Json(customer_json(&state, &c).await?)))
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let c = access::customer(state.store.as_ref(), &caller.principal, &CustomerId(id)).await?;
    Ok(Json(customer_json(&state, &c).await?))
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let c = access::customer(state.store.as_ref(), &caller.principal, &CustomerId(id)).await?;
    if state
        .engine
        .live()
        .iter()
        .any(|l| l.session.customer_id == c.id)
    {
        return Err(crate::Error::conflict(format!(
            "customer `{}` has live sessions; terminate them first",
            c.name
        ))
        .into());
    }
    let gatekeepers = state.store.list_gatekeepers(Some(&c.id)).await?;
    state.admin(&caller).delete_customer(&c).await?;
    // Their links and the profile connections bound to them close.
    for gk in gatekeepers {
        state.engine.revoke(&crate::events::Revocation::gatekeeper(
            &gk.id,
            format!("gatekeeper {} deleted with customer {}", gk.name, c.name),
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewGatekeeper {
    name: String,
}

pub async fn create_gatekeeper(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<NewGatekeeper>,
) -> ApiResult<(StatusCode, Json<GatekeeperJson>)> {
    let c = access::customer(state.store.as_ref(), &caller.principal, &CustomerId(id)).await?;
    let gk = state
        .admin(&caller)
        .create_gatekeeper(&c, &body.name)
        .await?;
    Ok((StatusCode::CREATED, Json(gatekeeper_json(&gk, &c))))
}

pub async fn list_gatekeepers(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<GatekeeperJson>>> {
    let customers = caller
        .principal
        .visible_customers(state.store.list_customers().await?);
    let gks = state.store.list_gatekeepers(None).await?;
    Ok(Json(
        gks.iter()
            .filter_map(|g| {
                let c = customers.iter().find(|c| c.id == g.customer_id)?;
                Some(gatekeeper_json(g, c))
            })
            .collect(),
    ))
}

async fn scoped_gatekeeper(
    state: &AppState,
    caller: &Caller,
    id: String,
) -> ApiResult<(crate::model::Gatekeeper, Customer)> {
    let gk = access::gatekeeper(state.store.as_ref(), &caller.principal, &GatekeeperId(id)).await?;
    let c = state
        .store
        .customer(&gk.customer_id)
        .await?
        .ok_or_else(|| ApiError::internal("gatekeeper without customer"))?;
    Ok((gk, c))
}

pub async fn get_gatekeeper(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<GatekeeperJson>> {
    let (gk, c) = scoped_gatekeeper(&state, &caller, id).await?;
    Ok(Json(gatekeeper_json(&gk, &c)))
}

pub async fn delete_gatekeeper(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let (gk, _) = scoped_gatekeeper(&state, &caller, id).await?;
    state.admin(&caller).delete_gatekeeper(&gk).await?;
    state.engine.revoke(&crate::events::Revocation::gatekeeper(
        &gk.id,
        format!("gatekeeper {} deleted by {}", gk.name, caller.user().name),
    ));
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCode {
    ttl_minutes: Option<u64>,
}

pub async fn registration_code(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (gk, _) = scoped_gatekeeper(&state, &caller, id).await?;
    let body: NewCode = if body.iter().all(u8::is_ascii_whitespace) {
        NewCode::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid(format!("request body: {e}")))?
    };
    let ttl = body.ttl_minutes.unwrap_or(60);
    if !(1..=7 * 24 * 60).contains(&ttl) {
        return Err(ApiError::invalid("ttl_minutes must be between 1 and 10080"));
    }
    let code = state
        .admin(&caller)
        .issue_gatekeeper_code(&gk, Duration::from_secs(ttl * 60))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "gatekeeper_id": gk.id,
            "code": code.code,
            "expires_at": code.expires_at,
            "server_address": state.options.ssh_address,
            "server_fingerprint": state.options.server_fingerprint,
        })),
    ))
}

pub async fn profile(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let (gk, c) = scoped_gatekeeper(&state, &caller, id).await?;
    if !gk.is_registered() {
        return Err(crate::Error::conflict("gatekeeper is not registered yet").into());
    }
    let profile = state
        .admin(&caller)
        .export_profile(
            &caller.user().name,
            &gk.name,
            &state.options.ssh_address,
            &state.options.server_key,
        )
        .await?;
    let text = profile.to_text()?;
    let file = format!("cpam-{}-{}.cpam-profile.json", c.name, gk.name);
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
        ],
        text.expose().clone(),
    )
        .into_response())
}

pub async fn list_services(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (gk, _) = scoped_gatekeeper(&state, &caller, id).await?;
    let services = state.store.list_services(Some(&gk.customer_id)).await?;
    // The services reached through this gatekeeper.
    Ok(Json(json!(
        services
            .iter()
            .filter(|s| s.gatekeeper_id.as_ref().is_none_or(|g| *g == gk.id))
            .map(service_json)
            .collect::<Vec<_>>()
    )))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewService {
    name: String,
    kind: String,
    host: String,
    port: Option<u16>,
}

pub async fn create_service(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<NewService>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (gk, c) = scoped_gatekeeper(&state, &caller, id).await?;
    let kind: ServiceKind = body.kind.parse()?;
    let port = match body.port.or(kind.default_port()) {
        Some(p) => p,
        None => {
            return Err(ApiError::invalid(format!(
                "a {} service needs a port",
                kind.as_str()
            )));
        }
    };
    let target = Target {
        host: body.host.clone(),
        port,
    };
    // Validates host and port the same way the CLI does.
    let target: Target = target.to_string().parse()?;
    let s = state
        .admin(&caller)
        .add_service_on(
            &c.name,
            Some(gk.id.as_str()),
            &body.name,
            &target.to_string(),
            kind,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(json!(service_json(&s)))))
}

pub async fn delete_service(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let s = access::service(state.store.as_ref(), &caller.principal, &ServiceId(id)).await?;
    state.admin(&caller).delete_service(&s).await?;
    if let Err(error) = state.engine.recheck().await {
        tracing::warn!(%error, "cannot recheck live sessions after a service was deleted");
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/v1/services/{id}/pin`: forgets the target key pinned for a
/// privileged service (the SSH host key, the RDP certificate key), after the
/// operator checked that it changed on purpose; the next session pins anew.
pub async fn forget_pin(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let s = access::service(state.store.as_ref(), &caller.principal, &ServiceId(id)).await?;
    state.admin(&caller).forget_host_key(&s).await?;
    Ok(StatusCode::NO_CONTENT)
}
