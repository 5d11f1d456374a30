//! Users, roles and server-wide settings.

use crate::Secret;
use crate::admin::{NewUser, UserUpdate};
use crate::events::Revocation;
use crate::model::{CustomerId, IpConnectMode, Permission, Role, User, UserId, UserKey};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Body, UserJson, user_json};
use crate::web::AppState;
use crate::web::auth::Caller;
use crate::web::error::{ApiError, ApiResult};

pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Vec<UserJson>>> {
    let mut out = Vec::new();
    for u in state.store.list_users().await? {
        out.push(user_json(state.store.as_ref(), &u).await?);
    }
    Ok(Json(out))
}

fn customers(ids: Vec<String>) -> Vec<CustomerId> {
    ids.into_iter().map(CustomerId).collect()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUserBody {
    name: String,
    password: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    customers: Vec<String>,
    ip_connect_mode: Option<String>,
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<NewUserBody>,
) -> ApiResult<(StatusCode, Json<UserJson>)> {
    let mode = match body.ip_connect_mode {
        Some(m) => m.parse()?,
        None => IpConnectMode::Global,
    };
    let user = state
        .admin(&caller)
        .create_user(NewUser {
            name: body.name,
            password: body.password.map(Secret::new),
            roles: body.roles,
            customers: customers(body.customers),
            ip_connect_mode: mode,
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(user_json(state.store.as_ref(), &user).await?),
    ))
}

async fn find_user(state: &AppState, id: String) -> ApiResult<crate::model::User> {
    state
        .store
        .user(&UserId(id.clone()))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no user `{id}`")))
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<UserJson>> {
    let own = caller.user().id.0 == id;
    if !own && !caller.principal.has(Permission::MANAGE_USERS) {
        return Err(ApiError::denied("only MANAGE_USERS may read other users"));
    }
    let user = find_user(&state, id).await?;
    Ok(Json(user_json(state.store.as_ref(), &user).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserUpdateBody {
    disabled: Option<bool>,
    roles: Option<Vec<String>>,
    customers: Option<Vec<String>>,
    ip_connect_mode: Option<String>,
    password: Option<String>,
}

pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<UserUpdateBody>,
) -> ApiResult<Json<UserJson>> {
    let user = find_user(&state, id).await?;
    if user.id == caller.user().id && body.disabled == Some(true) {
        return Err(crate::Error::conflict("you cannot disable yourself").into());
    }
    let update = UserUpdate {
        disabled: body.disabled,
        roles: body.roles,
        customers: body.customers.map(customers),
        ip_connect_mode: body.ip_connect_mode.map(|m| m.parse()).transpose()?,
        password: body.password.map(Secret::new),
    };
    let disabled = update.disabled == Some(true);
    let user = state.admin(&caller).update_user(&user, update).await?;
    if disabled {
        state.engine.revoke(&Revocation::user(
            &user.id,
            format!("user {} disabled by {}", user.name, caller.user().name),
        ));
    }
    if let Err(error) = state.engine.recheck().await {
        tracing::warn!(%error, "cannot recheck live sessions after a user changed");
    }
    Ok(Json(user_json(state.store.as_ref(), &user).await?))
}

/// Who may see or delete `id`'s keys: the user themself or a user manager.
async fn key_owner(state: &AppState, caller: &Caller, id: String) -> ApiResult<User> {
    let own = caller.user().id.0 == id;
    if !own && !caller.principal.has(Permission::MANAGE_USERS) {
        return Err(ApiError::denied(
            "only MANAGE_USERS may see or delete other users' keys",
        ));
    }
    find_user(state, id).await
}

fn key_json(k: &UserKey) -> Value {
    json!({
        "id": k.id,
        "fingerprint": k.fingerprint,
        "public_key": k.public_key,
        "kind": if k.gatekeeper_id.is_some() { "profile" } else { "key" },
        "label": k.label,
        "gatekeeper_id": k.gatekeeper_id,
        "created_at": k.created_at.to_rfc3339(),
    })
}

pub async fn keys(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let user = key_owner(&state, &caller, id).await?;
    let keys = state.store.user_keys(&user.id).await?;
    Ok(Json(Value::Array(keys.iter().map(key_json).collect())))
}

pub async fn delete_key(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, key)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let user = key_owner(&state, &caller, id).await?;
    let k = state.admin(&caller).delete_key_of(&user, &key).await?;
    state.engine.revoke(&Revocation::key(
        &k.fingerprint,
        format!(
            "key {} of {} deleted by {}",
            k.id,
            user.name,
            caller.user().name
        ),
    ));
    Ok(StatusCode::NO_CONTENT)
}

fn role_json(r: &Role) -> Value {
    json!({
        "name": r.name,
        "permissions": r.permissions.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
        "builtin": r.builtin,
    })
}

pub async fn list_roles(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let roles = state.store.list_roles().await?;
    Ok(Json(Value::Array(roles.iter().map(role_json).collect())))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRole {
    name: String,
    permissions: Vec<String>,
}

pub async fn create_role(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<NewRole>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    crate::model::validate_role_name(&body.name)?;
    if state
        .store
        .list_roles()
        .await?
        .iter()
        .any(|r| r.name == body.name)
    {
        return Err(crate::Error::conflict(format!("role `{}` already exists", body.name)).into());
    }
    let role = state
        .admin(&caller)
        .add_role(&body.name, &body.permissions)
        .await?;
    Ok((StatusCode::CREATED, Json(role_json(&role))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleUpdate {
    permissions: Vec<String>,
}

pub async fn update_role(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Body(body): Body<RoleUpdate>,
) -> ApiResult<Json<Value>> {
    let perms = body
        .permissions
        .iter()
        .map(|p| p.parse())
        .collect::<crate::Result<Vec<Permission>>>()?;
    let role = state.admin(&caller).update_role(&name, &perms).await?;
    if let Err(error) = state.engine.recheck().await {
        tracing::warn!(%error, "cannot recheck live sessions after a role changed");
    }
    Ok(Json(role_json(&role)))
}

pub async fn delete_role(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    state.admin(&caller).delete_role(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    ip_connect_mode: String,
}

pub async fn settings(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    let mode = state.admin(&caller).ip_connect_mode().await?;
    Ok(Json(json!({ "ip_connect_mode": mode })))
}

pub async fn put_settings(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<Settings>,
) -> ApiResult<Json<Value>> {
    let admin = state.admin(&caller);
    admin
        .set_ip_connect_mode(body.ip_connect_mode.parse()?)
        .await?;
    Ok(Json(
        json!({ "ip_connect_mode": admin.ip_connect_mode().await? }),
    ))
}
