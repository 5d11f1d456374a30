//! Login, logout, the caller, API tokens and the permission list.

use std::time::Duration;

use crate::access::{Principal, token_hash};
use crate::model::{AuditCategory, Permission, Timestamp, TokenId};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Body, opt_ts, ts, user_json};
use crate::web::AppState;
use crate::web::auth::{
    ADDRESS_FAILURES, Caller, USER_FAILURES, Via, audit_login, clear_cookie, client_ip,
    open_session, session_cookie, set_cookie,
};
use crate::web::error::{ApiError, ApiResult};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    username: String,
    password: String,
}

/// An Argon2id hash of a random password, checked when the user name is
/// unknown so that both cases take as long.
async fn dummy_hash() -> String {
    static HASH: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    HASH.get_or_init(|| async {
        let random = crate::Secret::new(crate::model::random_token(16));
        crate::password::hash(random).await.unwrap_or_default()
    })
    .await
    .clone()
}

async fn me_json(state: &AppState, p: &Principal, csrf: Option<&str>) -> ApiResult<Value> {
    let user = user_json(state.store.as_ref(), &p.user).await?;
    let permissions: Vec<&str> = p.permissions.iter().map(|p| p.as_str()).collect();
    Ok(json!({ "user": user, "permissions": permissions, "csrf_token": csrf }))
}

pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    Body(body): Body<Login>,
) -> ApiResult<Response> {
    if !state.authenticator().password_login() {
        return Err(ApiError::denied(
            "password sign-in is not offered here; sign in through the product that hosts the console",
        ));
    }
    if headers
        .get("x-requested-with")
        .and_then(|v| v.to_str().ok())
        != Some("cpam")
    {
        return Err(ApiError::csrf(
            "login needs the header `X-Requested-With: cpam`",
        ));
    }
    let ip = client_ip(&ext);
    if body.username.is_empty() || body.username.len() > 64 {
        return Err(ApiError::invalid("username must be 1-64 characters"));
    }
    let (user_key, addr_key) = (format!("user:{}", body.username), format!("addr:{ip}"));
    let password = crate::Secret::new(body.password);
    // Counted before the password is checked: parallel guesses cannot all
    // slip under the limit.
    let attempt = match state
        .throttle
        .attempt(&[(&user_key, USER_FAILURES), (&addr_key, ADDRESS_FAILURES)])
    {
        Ok(a) => a,
        Err(wait) => {
            state.metrics.login("throttled");
            audit_login(
                &state,
                "web.login.failed",
                AuditCategory::SystemMessages,
                &body.username,
                ip,
                json!({ "reason": "locked out" }),
            )
            .await;
            return Err(ApiError::throttled(wait));
        }
    };
    let user = state.store.user_by_name(&body.username).await?;
    let hash = match user.as_ref().and_then(|u| u.password_hash.clone()) {
        Some(h) => h,
        None => dummy_hash().await,
    };
    let matches = crate::password::verify(password.expose(), &hash).await;
    let user = match user {
        Some(u) if matches && u.password_hash.is_some() && !u.disabled => u,
        other => {
            let reason = match other {
                None => "unknown user",
                Some(u) if u.disabled => "user disabled",
                Some(_) => "wrong password",
            };
            state.metrics.login("failed");
            audit_login(
                &state,
                "web.login.failed",
                AuditCategory::SystemMessages,
                &body.username,
                ip,
                json!({ "reason": reason }),
            )
            .await;
            if let Some(locked) = attempt.failed() {
                let locked_user = locked == user_key;
                audit_login(
                    &state,
                    "web.login.locked",
                    AuditCategory::SystemMessages,
                    &body.username,
                    ip,
                    json!({
                        "locked": if locked_user { "user" } else { "address" },
                        "minutes": crate::web::auth::LOCKOUT.as_secs() / 60,
                    }),
                )
                .await;
            }
            return Err(ApiError::unauthenticated("wrong user name or password"));
        }
    };
    attempt.succeeded();
    // Whatever session id the browser brought is never adopted.
    if let Some(old) = session_cookie(&headers) {
        state.store.delete_web_session(&token_hash(&old)).await?;
    }
    let (cookie, session) = open_session(&state, &user).await?;
    state.metrics.login("ok");
    audit_login(
        &state,
        "web.login",
        AuditCategory::UserActivity,
        &user.name,
        ip,
        json!({}),
    )
    .await;
    let principal = Principal::load(state.store.as_ref(), user).await?;
    let body = me_json(&state, &principal, Some(&session.csrf_token)).await?;
    let cookie = set_cookie(
        &cookie,
        state.cookie_path(),
        state.options.secure_cookies,
        state.options.absolute_timeout,
    );
    Ok(([(header::SET_COOKIE, cookie)], Json(body)).into_response())
}

pub async fn logout(
    State(state): State<AppState>,
    caller: Caller,
    ext: axum::http::Extensions,
) -> ApiResult<Response> {
    if let Via::Cookie { id_hash, .. } = &caller.via {
        state.store.delete_web_session(id_hash).await?;
        audit_login(
            &state,
            "web.logout",
            AuditCategory::UserActivity,
            &caller.user().name,
            client_ip(&ext),
            json!({}),
        )
        .await;
    }
    let clear = clear_cookie(state.cookie_path(), state.options.secure_cookies);
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear)]).into_response())
}

pub async fn me(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    let csrf = caller.via.csrf();
    Ok(Json(me_json(&state, &caller.principal, csrf).await?))
}

pub async fn list_tokens(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    let tokens = state.store.list_api_tokens(&caller.user().id).await?;
    Ok(Json(Value::Array(
        tokens
            .iter()
            .map(|t| {
                json!({
                    "id": t.id, "name": t.name, "created_at": ts(t.created_at),
                    "expires_at": opt_ts(t.expires_at), "last_used_at": opt_ts(t.last_used_at),
                })
            })
            .collect(),
    )))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    name: String,
    expires_in_days: Option<u32>,
}

pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<NewToken>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let expires = match body.expires_in_days {
        Some(0) => return Err(ApiError::invalid("expires_in_days must be at least 1")),
        Some(d) => Some(Timestamp::now().add(Duration::from_secs(u64::from(d) * 86_400))),
        None => None,
    };
    let (token, secret) = state
        .admin(&caller)
        .create_token(caller.user(), &body.name, expires)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": token.id, "name": token.name, "token": secret.expose(),
            "created_at": ts(token.created_at), "expires_at": opt_ts(token.expires_at),
        })),
    ))
}

pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state
        .admin(&caller)
        .revoke_token(caller.user(), &TokenId(id))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn permissions() -> Json<Value> {
    Json(Value::Array(
        Permission::ALL
            .iter()
            .map(|p| json!({ "name": p.as_str(), "description": p.description() }))
            .collect(),
    ))
}
