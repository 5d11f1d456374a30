//! `/api/v1`: thin handlers over `crate::access` and `crate::admin`,
//! and the JSON shapes they answer with (times as RFC 3339 strings).

mod audit;
mod auth;
mod customers;
mod desktop;
mod files;
mod nodes;
mod recordings;
mod sessions;
mod terminal;
mod users;
mod vault;
mod watch;

use crate::Result;
use crate::model::{Customer, Gatekeeper, Grant, Service, Session, Timestamp, User};
use crate::store::Store;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use self::sessions::session_json;
use super::ApiRoutes;
use super::error::{ApiError, ApiResult};

/// Every `/api/v1` route except OpenAPI and events.
pub fn routes() -> ApiRoutes {
    ApiRoutes::default()
        .add("POST", "/api/v1/auth/login", auth::login)
        .add("POST", "/api/v1/auth/logout", auth::logout)
        .add("GET", "/api/v1/auth/me", auth::me)
        .add("GET", "/api/v1/tokens", auth::list_tokens)
        .add("POST", "/api/v1/tokens", auth::create_token)
        .add("DELETE", "/api/v1/tokens/{id}", auth::revoke_token)
        .add("GET", "/api/v1/permissions", auth::permissions)
        .add("GET", "/api/v1/customers", customers::list)
        .add("POST", "/api/v1/customers", customers::create)
        .add("GET", "/api/v1/customers/{id}", customers::get)
        .add("DELETE", "/api/v1/customers/{id}", customers::delete)
        .add(
            "POST",
            "/api/v1/customers/{id}/gatekeepers",
            customers::create_gatekeeper,
        )
        .add("GET", "/api/v1/gatekeepers", customers::list_gatekeepers)
        .add("GET", "/api/v1/nodes", nodes::list)
        .add("GET", "/api/v1/gatekeepers/{id}", customers::get_gatekeeper)
        .add(
            "DELETE",
            "/api/v1/gatekeepers/{id}",
            customers::delete_gatekeeper,
        )
        .add(
            "POST",
            "/api/v1/gatekeepers/{id}/registration-code",
            customers::registration_code,
        )
        .add(
            "GET",
            "/api/v1/gatekeepers/{id}/profile",
            customers::profile,
        )
        .add(
            "GET",
            "/api/v1/gatekeepers/{id}/services",
            customers::list_services,
        )
        .add(
            "POST",
            "/api/v1/gatekeepers/{id}/services",
            customers::create_service,
        )
        .add("DELETE", "/api/v1/services/{id}", customers::delete_service)
        .add("DELETE", "/api/v1/services/{id}/pin", customers::forget_pin)
        .add("GET", "/api/v1/services/{id}/terminal", terminal::terminal)
        .add("GET", "/api/v1/services/{id}/desktop", desktop::desktop)
        .add(
            "GET",
            "/api/v1/services/{id}/file-policy",
            files::get_file_policy,
        )
        .add(
            "PUT",
            "/api/v1/services/{id}/file-policy",
            files::set_file_policy,
        )
        .add("GET", "/api/v1/users", users::list)
        .add("POST", "/api/v1/users", users::create)
        .add("GET", "/api/v1/users/{id}", users::get)
        .add("PATCH", "/api/v1/users/{id}", users::update)
        .add("GET", "/api/v1/users/{id}/keys", users::keys)
        .add("DELETE", "/api/v1/users/{id}/keys/{key}", users::delete_key)
        .add("GET", "/api/v1/roles", users::list_roles)
        .add("POST", "/api/v1/roles", users::create_role)
        .add("PUT", "/api/v1/roles/{name}", users::update_role)
        .add("DELETE", "/api/v1/roles/{name}", users::delete_role)
        .add("GET", "/api/v1/settings", users::settings)
        .add("PUT", "/api/v1/settings", users::put_settings)
        .add("GET", "/api/v1/grants", sessions::list_grants)
        .add("POST", "/api/v1/grants", sessions::create_grant)
        .add("DELETE", "/api/v1/grants/{id}", sessions::revoke_grant)
        .add("GET", "/api/v1/sessions", sessions::list)
        .add("GET", "/api/v1/sessions/{id}", sessions::get)
        .add("GET", "/api/v1/sessions/{id}/watch", watch::watch)
        .add(
            "POST",
            "/api/v1/sessions/{id}/terminate",
            sessions::terminate,
        )
        .add("GET", "/api/v1/sessions/{id}/recordings", recordings::list)
        .add("GET", "/api/v1/sessions/{id}/files", files::session_files)
        .add("GET", "/api/v1/recordings/{id}/cast", recordings::download)
        .add("GET", "/api/v1/recordings/{id}/verify", recordings::verify)
        .add("GET", "/api/v1/recordings/{id}/frame", recordings::frame)
        .add("GET", "/api/v1/recordings/{id}/input", recordings::input)
        .add("GET", "/api/v1/audit", audit::list)
        .add("GET", "/api/v1/audit/verify", audit::verify)
        .add("GET", "/api/v1/audit/checkpoints", audit::checkpoints)
        .add("GET", "/api/v1/downloads/ipconnect", audit::downloads)
        .add("GET", "/api/v1/downloads/ipconnect/{file}", audit::download)
        .add("GET", "/api/v1/credentials", vault::list_credentials)
        .add("GET", "/api/v1/checkouts", vault::list_checkouts)
        .add("POST", "/api/v1/checkouts", vault::create_checkout)
        .add("DELETE", "/api/v1/checkouts/{id}", vault::end_checkout)
        .add(
            "PUT",
            "/api/v1/me/master-password",
            vault::set_master_password,
        )
        .add(
            "DELETE",
            "/api/v1/users/{id}/master-password",
            vault::reset_master_password,
        )
}

/// A JSON body whose rejection is an [`ApiError`] (`invalid_argument`).
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> ApiResult<Self> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(e) => Err(ApiError::invalid(format!(
                "request body: {}",
                e.body_text()
            ))),
        }
    }
}

/// Query parameters whose rejection is an [`ApiError`] (`invalid_argument`).
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<Self> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(e) => Err(ApiError::invalid(format!("query: {}", e.body_text()))),
        }
    }
}

/// RFC 3339.
pub fn ts(t: Timestamp) -> String {
    t.to_rfc3339()
}

/// RFC 3339, or null.
pub fn opt_ts(t: Option<Timestamp>) -> Option<String> {
    t.map(Timestamp::to_rfc3339)
}

/// A user as the API shows it (never the password hash).
#[derive(Debug, Serialize)]
pub struct UserJson {
    pub id: String,
    pub name: String,
    pub disabled: bool,
    pub roles: Vec<String>,
    pub customers: Vec<String>,
    pub ip_connect_mode: String,
    pub created_at: String,
}

pub async fn user_json(store: &dyn Store, u: &User) -> Result<UserJson> {
    Ok(UserJson {
        id: u.id.0.clone(),
        name: u.name.clone(),
        disabled: u.disabled,
        roles: store.user_roles(&u.id).await?,
        customers: store
            .user_customers(&u.id)
            .await?
            .into_iter()
            .map(|c| c.0)
            .collect(),
        ip_connect_mode: store.user_ip_connect_mode(&u.id).await?.to_string(),
        created_at: ts(u.created_at),
    })
}

/// A gatekeeper with its live state.
#[derive(Debug, Serialize)]
pub struct GatekeeperJson {
    pub id: String,
    pub name: String,
    pub customer_id: String,
    pub customer_name: String,
    pub registered: bool,
    pub registered_at: Option<String>,
    pub fingerprint: Option<String>,
    pub online: bool,
    pub last_contact: Option<String>,
    pub customer_disabled: bool,
    /// The customer's opening hours (UTC) as the gatekeeper reported them.
    pub customer_schedule: Option<String>,
    pub created_at: String,
}

pub fn gatekeeper_json(g: &Gatekeeper, customer: &Customer) -> GatekeeperJson {
    GatekeeperJson {
        id: g.id.0.clone(),
        name: g.name.clone(),
        customer_id: g.customer_id.0.clone(),
        customer_name: customer.name.clone(),
        registered: g.is_registered(),
        registered_at: opt_ts(g.registered_at),
        fingerprint: g.fingerprint.clone(),
        online: g.online,
        last_contact: opt_ts(g.last_contact),
        customer_disabled: g.customer_disabled,
        customer_schedule: g.customer_schedule.clone(),
        created_at: ts(g.created_at),
    }
}

/// A service.
#[derive(Debug, Serialize)]
pub struct ServiceJson {
    pub id: String,
    pub customer_id: String,
    /// The gatekeeper whose network holds the target (none: any of the customer's).
    pub gatekeeper_id: Option<String>,
    pub name: String,
    pub kind: &'static str,
    pub host: String,
    pub port: u16,
    pub target: String,
    pub created_at: String,
}

pub fn service_json(s: &Service) -> ServiceJson {
    ServiceJson {
        id: s.id.0.clone(),
        customer_id: s.customer_id.0.clone(),
        gatekeeper_id: s.gatekeeper_id.as_ref().map(|g| g.0.clone()),
        name: s.name.clone(),
        kind: s.kind.as_str(),
        host: s.target.host.clone(),
        port: s.target.port,
        target: s.target.to_string(),
        created_at: ts(s.created_at),
    }
}

/// A grant.
#[derive(Debug, Serialize)]
pub struct GrantJson {
    pub id: String,
    pub user_id: String,
    pub user: String,
    pub service_id: String,
    pub service: String,
    pub customer_id: String,
    pub not_before: String,
    pub not_after: Option<String>,
    pub created_at: String,
    pub created_by: String,
    pub revoked_at: Option<String>,
}

pub fn grant_json(g: &Grant, user: &str, s: &Service) -> GrantJson {
    GrantJson {
        id: g.id.0.clone(),
        user_id: g.user_id.0.clone(),
        user: user.to_string(),
        service_id: s.id.0.clone(),
        service: s.name.clone(),
        customer_id: s.customer_id.0.clone(),
        not_before: ts(g.not_before),
        not_after: opt_ts(g.not_after),
        created_at: ts(g.created_at),
        created_by: g.created_by.clone(),
        revoked_at: opt_ts(g.revoked_at),
    }
}

/// Whether a session listing `s` is live right now, with its current counters.
pub fn with_live_counters(mut s: Session, live: &[crate::session::LiveInfo]) -> (Session, bool) {
    match live.iter().find(|l| l.session.id == s.id) {
        Some(l) => {
            s.bytes_up = l.session.bytes_up;
            s.bytes_down = l.session.bytes_down;
            (s, true)
        }
        None => (s, false),
    }
}
