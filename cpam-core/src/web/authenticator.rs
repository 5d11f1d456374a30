//! The authenticator seam: who a request comes from.
//!
//! The policy middleware asks the mount's [`Authenticator`] for the caller of
//! every route that is not public, then checks CSRF and the route's
//! permission itself. [`BuiltIn`] is the default: the console's session
//! cookie (made by `POST /api/v1/auth/login` with a user name and password)
//! or a bearer API token. An embedding product implements the trait to sign
//! its own users in (a header set by its reverse proxy, its own session
//! cookie, a client certificate) and maps them to a cpam [`User`]; it may
//! fall back to [`BuiltIn`] for API tokens.
//!
//! ```
//! use cpam_core::web::{AppState, AuthRequest, Authenticator, BuiltIn, Identity, Via};
//! use cpam_core::web::error::{ApiError, ApiResult};
//!
//! /// Trusts `X-Remote-User`, set by the product's own sign-in proxy.
//! #[derive(Debug)]
//! struct RemoteUser;
//!
//! #[async_trait::async_trait]
//! impl Authenticator for RemoteUser {
//!     async fn authenticate(
//!         &self,
//!         state: &AppState,
//!         request: &AuthRequest<'_>,
//!     ) -> ApiResult<Option<Identity>> {
//!         let Some(name) = request.headers.get("x-remote-user") else {
//!             // No header: API tokens still work.
//!             return BuiltIn.authenticate(state, request).await;
//!         };
//!         let name = name.to_str().map_err(|_| ApiError::unauthenticated("bad X-Remote-User"))?;
//!         let user = state
//!             .store
//!             .user_by_name(name)
//!             .await?
//!             .ok_or_else(|| ApiError::unauthenticated(format!("no cpam user `{name}`")))?;
//!         Ok(Some(Identity::external(user, "remote-user", None)))
//!     }
//!
//!     fn password_login(&self) -> bool {
//!         false
//!     }
//! }
//! ```

use std::net::IpAddr;

use async_trait::async_trait;
use axum::http::{HeaderMap, Method, Uri};

use super::AppState;
use super::auth::{self, Via};
use super::error::ApiResult;
use crate::model::User;

/// What an [`Authenticator`] sees of a request: its head and the client's
/// address, never its body.
#[derive(Debug)]
pub struct AuthRequest<'a> {
    pub method: &'a Method,
    /// The URI as the console router sees it (below the base path).
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    /// The client's address on the socket (`0.0.0.0` when the server was
    /// not started with connect info).
    pub peer: IpAddr,
}

/// A signed-in caller: the cpam user and how they signed in.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user: User,
    pub via: Via,
}

impl Identity {
    /// A caller an embedding product signed in. `scheme` names its method
    /// (logged, shown nowhere else); `csrf` is the token the console must
    /// send with every change (`X-CSRF-Token`, handed out by
    /// `GET /api/v1/auth/me`): give one whenever the browser sends the
    /// credential by itself (a cookie), `None` for a credential it does not
    /// (a header the product's own client or proxy adds).
    pub fn external(user: User, scheme: &'static str, csrf: Option<String>) -> Identity {
        Identity {
            user,
            via: Via::External { scheme, csrf },
        }
    }
}

/// Signs callers in. The policy middleware calls it for every route that
/// is not public; a disabled user is refused afterwards whatever it says.
#[async_trait]
pub trait Authenticator: Send + Sync + std::fmt::Debug + 'static {
    /// The caller of `request`: `Ok(Some(_))` signs them in, `Ok(None)` means
    /// the request carries no credential (the answer is 401 "sign in
    /// first"), `Err` refuses with that error (use
    /// [`ApiError::unauthenticated`](super::error::ApiError::unauthenticated)
    /// for a credential that is wrong or expired).
    async fn authenticate(
        &self,
        state: &AppState,
        request: &AuthRequest<'_>,
    ) -> ApiResult<Option<Identity>>;

    /// Whether `POST /api/v1/auth/login` (user name and password, then the
    /// console's session cookie) is offered. When it is not, the login route
    /// answers 403 and the product signs its users in itself.
    fn password_login(&self) -> bool {
        true
    }
}

/// The console's own sign-in: the session cookie `cpam_session` (from a
/// password login) or `Authorization: Bearer TOKEN` (an API token).
#[derive(Debug, Default, Clone, Copy)]
pub struct BuiltIn;

#[async_trait]
impl Authenticator for BuiltIn {
    async fn authenticate(
        &self,
        state: &AppState,
        request: &AuthRequest<'_>,
    ) -> ApiResult<Option<Identity>> {
        auth::built_in(state, request.headers).await
    }
}
