//! Who is calling: console sessions (cookie + CSRF token), bearer API
//! tokens (together the [`BuiltIn`](super::BuiltIn) authenticator), and
//! the policy middleware that applies each route's policy table entry to
//! its requests.
//!
//! - The cookie `cpam_session` holds 32 random bytes (base64url); the store
//!   keeps only their SHA-256. Its `Path` is the console's base path. A
//!   login always makes a new id and discards any presented one (no
//!   fixation). Idle and absolute timeouts end a session.
//! - Cookie-authenticated POST/PUT/PATCH/DELETE need `X-CSRF-Token` equal to
//!   the session's token; bearer requests need none (no ambient credential).
//! - After [`USER_FAILURES`] failures for one user name (or
//!   [`ADDRESS_FAILURES`] from one address) within [`WINDOW`], logins are
//!   refused with 429 for [`LOCKOUT`], even with the right password
//!   ([`crate::throttle`]).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::access::{Principal, token_hash};
use crate::model::{AuditCategory, AuditEvent, Timestamp, TokenId, User, WebSession};
use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use serde_json::json;

pub use crate::throttle::{ADDRESS_FAILURES, LOCKOUT, Throttle, USER_FAILURES, WINDOW};

use super::AppState;
use super::authenticator::{AuthRequest, Identity};
use super::error::{ApiError, ApiResult};
use super::rbac::{Access, Route};

/// The session cookie's name.
pub const COOKIE: &str = "cpam_session";
/// The header carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// A session's last-seen time is written at most this often.
const TOUCH_EVERY: Duration = Duration::from_secs(5);

/// How a request authenticated.
#[derive(Debug, Clone)]
pub enum Via {
    /// The session cookie; `csrf` is the session's token.
    Cookie { id_hash: String, csrf: String },
    /// A bearer API token.
    Bearer { token: TokenId },
    /// An embedding product's own sign-in (a custom
    /// [`Authenticator`](super::Authenticator)); changes need `csrf` in
    /// `X-CSRF-Token` when it is set.
    External {
        scheme: &'static str,
        csrf: Option<String>,
    },
}

impl Via {
    /// The token changes must carry in `X-CSRF-Token`, if any.
    pub fn csrf(&self) -> Option<&str> {
        match self {
            Via::Cookie { csrf, .. } => Some(csrf),
            Via::External { csrf, .. } => csrf.as_deref(),
            Via::Bearer { .. } => None,
        }
    }
}

/// The authenticated caller, put into request extensions by [`policy`].
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub via: Via,
}

impl Caller {
    pub fn user(&self) -> &User {
        &self.principal.user
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> ApiResult<Self> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::unauthenticated("sign in first"))
    }
}

/// 32 random bytes, base64url without padding.
pub fn random_secret() -> String {
    use rand::RngExt as _;
    let bytes: [u8; 32] = rand::rng().random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Compares without an early exit.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The `cpam_session` cookie's value, if presented.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// The `Set-Cookie` value for a new session id, sent back only below `path`
/// (the console's base path).
pub fn set_cookie(value: &str, path: &str, secure: bool, max_age: Duration) -> String {
    format!(
        "{COOKIE}={value}; Path={path}; HttpOnly; SameSite=Strict; Max-Age={}{}",
        max_age.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that removes the cookie.
pub fn clear_cookie(path: &str, secure: bool) -> String {
    set_cookie("", path, secure, Duration::ZERO)
}

/// Creates a console session for `user`; returns the cookie value and the session.
pub async fn open_session(state: &AppState, user: &User) -> ApiResult<(String, WebSession)> {
    let id = random_secret();
    let now = Timestamp::now();
    let session = WebSession {
        id_hash: token_hash(&id),
        user_id: user.id.clone(),
        csrf_token: random_secret(),
        created_at: now,
        last_seen: now,
        expires_at: now.add(state.options.absolute_timeout),
    };
    state.store.create_web_session(&session).await?;
    Ok((id, session))
}

/// Records a login-related audit event (failures and lockouts are system
/// messages, successes user activity).
pub async fn audit_login(
    state: &AppState,
    action: &str,
    category: AuditCategory,
    user: &str,
    address: IpAddr,
    detail: serde_json::Value,
) {
    // The name as typed, bounded: it is caller input.
    let user: String = user.chars().take(100).collect();
    let user = user.as_str();
    let mut d = json!({ "user": user, "address": address.to_string() });
    if let (Some(obj), serde_json::Value::Object(extra)) = (d.as_object_mut(), detail) {
        obj.extend(extra);
    }
    let event = AuditEvent {
        at: Timestamp::now(),
        category,
        action: action.into(),
        actor: if category == AuditCategory::UserActivity {
            user.to_string()
        } else {
            "system".to_string()
        },
        customer_id: None,
        session_id: None,
        detail: d,
    };
    if let Err(error) = state.audit.record(event).await {
        tracing::error!(%error, "audit sink failed");
    }
}

/// The built-in sign-in: a bearer token, else the session cookie; `None`
/// when the request carries neither.
pub(super) async fn built_in(state: &AppState, headers: &HeaderMap) -> ApiResult<Option<Identity>> {
    let now = Timestamp::now();
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        let value = auth
            .to_str()
            .map_err(|_| ApiError::unauthenticated("malformed Authorization header"))?;
        let token = value
            .strip_prefix("Bearer ")
            .ok_or_else(|| ApiError::unauthenticated("Authorization must be `Bearer TOKEN`"))?;
        let t = state
            .store
            .api_token_by_hash(&token_hash(token.trim()))
            .await?
            .ok_or_else(|| ApiError::unauthenticated("unknown or revoked API token"))?;
        if t.expires_at.is_some_and(|e| e <= now) {
            return Err(ApiError::unauthenticated("API token expired"));
        }
        let user = active_user(state, &t.user_id).await?;
        if t.last_used_at.is_none_or(|l| l.until(now) >= TOUCH_EVERY) {
            state.store.touch_api_token(&t.id, now).await?;
        }
        return Ok(Some(Identity {
            user,
            via: Via::Bearer { token: t.id },
        }));
    }
    let Some(cookie) = session_cookie(headers) else {
        return Ok(None);
    };
    let id_hash = token_hash(&cookie);
    let s = state
        .store
        .web_session(&id_hash)
        .await?
        .ok_or_else(|| ApiError::unauthenticated("session ended; sign in again"))?;
    let idle = s.last_seen.until(now) > state.options.idle_timeout;
    if idle || s.expires_at <= now {
        state.store.delete_web_session(&id_hash).await?;
        return Err(ApiError::unauthenticated("session expired; sign in again"));
    }
    let user = active_user(state, &s.user_id).await?;
    if s.last_seen.until(now) >= TOUCH_EVERY.min(state.options.idle_timeout / 4) {
        state.store.touch_web_session(&id_hash, now).await?;
    }
    Ok(Some(Identity {
        user,
        via: Via::Cookie {
            id_hash,
            csrf: s.csrf_token,
        },
    }))
}

async fn active_user(state: &AppState, id: &crate::model::UserId) -> ApiResult<User> {
    match state.store.user(id).await? {
        Some(u) if !u.disabled => Ok(u),
        _ => Err(ApiError::unauthenticated("user is disabled or gone")),
    }
}

/// The client's address as seen on the socket.
pub fn client_ip(parts: &axum::http::Extensions) -> IpAddr {
    parts
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// Applies `entry` of the policy table to a request of its route (each
/// route carries its own entry from [`ApiRoutes::add`](super::ApiRoutes::add),
/// so no path is looked up and the base path does not matter):
/// authenticates through the mount's authenticator, checks CSRF and the
/// route's permission, and hands the [`Caller`] to the handler. Without the
/// mount's state in the request it fails closed.
pub async fn policy(entry: &'static Route, mut req: Request, next: Next) -> Response {
    let Some(state) = req.extensions().get::<AppState>().cloned() else {
        tracing::error!(
            method = entry.method,
            path = entry.path,
            "console state missing; refusing"
        );
        return axum::response::IntoResponse::into_response(ApiError::internal(
            "the console router is not mounted with its state",
        ));
    };
    match admit(&state, entry, &mut req).await {
        Ok(()) => next.run(req).await,
        Err(e) => axum::response::IntoResponse::into_response(e),
    }
}

async fn admit(state: &AppState, entry: &'static Route, req: &mut Request) -> ApiResult<()> {
    if entry.access == Access::Public {
        return Ok(());
    }
    let method = req.method().clone();
    let request = AuthRequest {
        method: &method,
        uri: req.uri(),
        headers: req.headers(),
        peer: client_ip(req.extensions()),
    };
    let identity = state
        .authenticator()
        .authenticate(state, &request)
        .await?
        .ok_or_else(|| ApiError::unauthenticated("sign in first"))?;
    let via = identity.via;
    let user = match via {
        // Loaded (and checked) just now.
        Via::Cookie { .. } | Via::Bearer { .. } => identity.user,
        // Whatever the product's sign-in says, a disabled or deleted user is out.
        Via::External { .. } => active_user(state, &identity.user.id).await?,
    };
    let changes = matches!(
        method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    if let (true, Some(csrf)) = (changes, via.csrf()) {
        let sent = req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !same(sent, csrf) {
            return Err(ApiError::csrf(
                "missing or wrong X-CSRF-Token header (GET /api/v1/auth/me returns it)",
            ));
        }
    }
    let principal = Principal::load(state.store.as_ref(), user).await?;
    if !entry.access.allows(|p| principal.has(p)) {
        return Err(ApiError::denied(format!(
            "{} {} needs {}",
            entry.method,
            entry.path,
            describe(&entry.access)
        )));
    }
    req.extensions_mut().insert(Caller { principal, via });
    Ok(())
}

fn describe(access: &Access) -> String {
    let names = |ps: &[crate::model::Permission]| ps.iter().map(|p| p.as_str()).collect::<Vec<_>>();
    match access {
        Access::Public | Access::Authenticated => "a signed-in user".to_string(),
        Access::AnyOf(ps) => format!("one of {}", names(ps).join(", ")),
        Access::AllOf(ps) => format!("all of {}", names(ps).join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; cpam_session=abc; b=2".parse().expect("header"),
        );
        assert_eq!(session_cookie(&h).as_deref(), Some("abc"));
        let c = set_cookie("v", "/", true, Duration::from_secs(60));
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.ends_with("Secure"));
        assert!(c.contains("; Path=/;"), "{c}");
        assert!(!set_cookie("v", "/", false, Duration::ZERO).contains("Secure"));
        assert!(set_cookie("v", "/pam", false, Duration::ZERO).contains("; Path=/pam;"));
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
