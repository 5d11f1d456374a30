//! The policy table: every route the web server answers, the permission it
//! needs and how its objects are scoped. The router is built from this table
//! ([`super::ApiRoutes::add`] refuses a route without an entry) and the
//! policy middleware enforces it on every request, failing closed; the
//! OpenAPI document and the RBAC matrix test are generated from it.

use crate::model::Permission;
use serde::Serialize;

use Permission as P;

/// What a caller needs to reach a route at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "permissions", rename_all = "snake_case")]
pub enum Access {
    /// No authentication (console shell, login, health, metrics, OpenAPI).
    Public,
    /// Any signed-in user.
    Authenticated,
    /// At least one of these permissions.
    AnyOf(&'static [Permission]),
    /// Every one of these permissions.
    AllOf(&'static [Permission]),
}

impl Access {
    /// Whether a caller holding `has` passes.
    pub fn allows(&self, has: impl Fn(Permission) -> bool) -> bool {
        match self {
            Access::Public | Access::Authenticated => true,
            Access::AnyOf(ps) => ps.iter().any(|p| has(*p)),
            Access::AllOf(ps) => ps.iter().all(|p| has(*p)),
        }
    }
}

/// How the objects a route touches are limited to the caller (see
/// `crate::access`). A foreign object answers 404 like a missing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// No object, or a server-wide one (users, roles, settings).
    None,
    /// A listing filtered to the caller's customers (or own sessions).
    Filtered,
    /// The object in the path belongs to a customer that must be in scope.
    Customer,
    /// A session: in-scope customer with `VIEW_SESSIONS`, or the caller's own
    /// with `VIEW_OWN_SESSIONS`.
    Session,
    /// The caller's own object (API tokens).
    Own,
    /// A user: the caller themself, or anyone with `MANAGE_USERS`.
    SelfOrManager,
}

/// What a route answers with on success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "schema", rename_all = "snake_case")]
pub enum Body {
    /// No body (204).
    Empty,
    /// A JSON object of the named schema.
    Json(&'static str),
    /// A JSON array of the named schema.
    List(&'static str),
    /// `text/html`.
    Html,
    /// `text/plain`.
    Text,
    /// `text/event-stream`.
    EventStream,
    /// A file download.
    Binary,
    /// A WebSocket (`101 Switching Protocols`).
    WebSocket,
}

/// One row of the policy table.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Route {
    pub method: &'static str,
    /// axum path syntax: `{id}` for a parameter, `{*path}` for the rest.
    pub path: &'static str,
    pub access: Access,
    pub scope: Scope,
    /// The HTTP status on success.
    pub status: u16,
    pub request: Option<&'static str>,
    pub response: Body,
    pub query: &'static [(&'static str, &'static str)],
    pub tag: &'static str,
    pub summary: &'static str,
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call per table row keeps the policy table readable"
)]
const fn route(
    method: &'static str,
    path: &'static str,
    access: Access,
    scope: Scope,
    status: u16,
    request: Option<&'static str>,
    response: Body,
    tag: &'static str,
    summary: &'static str,
) -> Route {
    Route {
        method,
        path,
        access,
        scope,
        status,
        request,
        response,
        query: &[],
        tag,
        summary,
    }
}

const fn with_query(mut r: Route, query: &'static [(&'static str, &'static str)]) -> Route {
    r.query = query;
    r
}

use Access::{AllOf, AnyOf, Authenticated, Public};
use Body::{Binary, Empty, EventStream, Html, Json, List, Text, WebSocket};

/// Every route of the web server.
#[rustfmt::skip]
pub static POLICY: &[Route] = &[
    // console shell (the single-page app; it calls /auth/me itself)
    route("GET", "/", Public, Scope::None, 200, None, Html, "console", "the console"),
    route("GET", "/ui/{*path}", Public, Scope::None, 200, None, Html, "console", "the console at a page"),
    route("GET", "/assets/{*path}", Public, Scope::None, 200, None, Binary, "console", "console scripts and styles"),
    // operations
    route("GET", "/healthz", Public, Scope::None, 200, None, Text, "operations", "liveness: always `ok`"),
    route("GET", "/readyz", Public, Scope::None, 200, None, Text, "operations", "readiness: database reachable and SSH hub listening (503 naming what is not otherwise)"),
    route("GET", "/metrics", Public, Scope::None, 200, None, Text, "operations", "Prometheus metrics"),
    route("GET", "/api/v1/openapi.json", Public, Scope::None, 200, None, Json("OpenApi"), "operations", "this API's OpenAPI 3.1 document"),
    // authentication
    route("POST", "/api/v1/auth/login", Public, Scope::None, 200, Some("Login"), Json("Me"), "auth", "sign in; sets the `cpam_session` cookie (needs header `X-Requested-With: cpam`)"),
    route("POST", "/api/v1/auth/logout", Authenticated, Scope::None, 204, None, Empty, "auth", "sign out; the session id stops working"),
    route("GET", "/api/v1/auth/me", Authenticated, Scope::None, 200, None, Json("Me"), "auth", "the caller, their permissions and CSRF token"),
    route("GET", "/api/v1/tokens", Authenticated, Scope::Own, 200, None, List("Token"), "auth", "the caller's API tokens"),
    route("POST", "/api/v1/tokens", Authenticated, Scope::Own, 201, Some("NewToken"), Json("IssuedToken"), "auth", "create an API token (shown once)"),
    route("DELETE", "/api/v1/tokens/{id}", Authenticated, Scope::Own, 204, None, Empty, "auth", "revoke one of the caller's API tokens"),
    route("GET", "/api/v1/permissions", Authenticated, Scope::None, 200, None, List("PermissionInfo"), "roles", "every permission with its description"),
    // customers and gatekeepers
    route("GET", "/api/v1/customers", Authenticated, Scope::Filtered, 200, None, List("CustomerSummary"), "customers", "customers in the caller's scope"),
    route("POST", "/api/v1/customers", AnyOf(&[P::MANAGE_CUSTOMERS]), Scope::None, 201, Some("NewCustomer"), Json("Customer"), "customers", "create a customer"),
    route("GET", "/api/v1/customers/{id}", Authenticated, Scope::Customer, 200, None, Json("Customer"), "customers", "a customer with its gatekeepers"),
    route("DELETE", "/api/v1/customers/{id}", AnyOf(&[P::MANAGE_CUSTOMERS]), Scope::Customer, 204, None, Empty, "customers", "delete a customer (refused while one of its sessions is live)"),
    route("POST", "/api/v1/customers/{id}/gatekeepers", AnyOf(&[P::MANAGE_GATEKEEPERS]), Scope::Customer, 201, Some("NewGatekeeper"), Json("Gatekeeper"), "gatekeepers", "create a gatekeeper of a customer"),
    route("GET", "/api/v1/gatekeepers", Authenticated, Scope::Filtered, 200, None, List("Gatekeeper"), "gatekeepers", "gatekeepers in the caller's scope"),
    route("GET", "/api/v1/nodes", AnyOf(&[P::VIEW_ADMIN_LOG_SYSTEM_MESSAGES, P::MANAGE_SETTINGS]), Scope::None, 200, None, List("Node"), "operations", "the server nodes sharing the database: address, version, heartbeat, live or lost"),
    route("GET", "/api/v1/gatekeepers/{id}", Authenticated, Scope::Customer, 200, None, Json("Gatekeeper"), "gatekeepers", "a gatekeeper and its live state"),
    route("DELETE", "/api/v1/gatekeepers/{id}", AnyOf(&[P::MANAGE_GATEKEEPERS]), Scope::Customer, 204, None, Empty, "gatekeepers", "delete a gatekeeper with its codes and profile keys; its link, those profiles' connections and its live sessions end"),
    route("POST", "/api/v1/gatekeepers/{id}/registration-code", AnyOf(&[P::MANAGE_GATEKEEPERS]), Scope::Customer, 201, Some("NewCode"), Json("RegistrationCode"), "gatekeepers", "issue a one-time registration code (shown once)"),
    route("GET", "/api/v1/gatekeepers/{id}/profile", AllOf(&[P::DOWNLOAD_CONNECTION_MANAGER, P::USE_CONNECTION_MANAGER]), Scope::Customer, 200, None, Json("Profile"), "gatekeepers", "the caller's Connection Manager profile for this gatekeeper (409 while unregistered)"),
    route("GET", "/api/v1/gatekeepers/{id}/services", Authenticated, Scope::Customer, 200, None, List("Service"), "services", "the services behind a gatekeeper"),
    route("POST", "/api/v1/gatekeepers/{id}/services", AnyOf(&[P::MANAGE_SERVICES]), Scope::Customer, 201, Some("NewService"), Json("Service"), "services", "create a service behind a gatekeeper"),
    route("GET", "/api/v1/services/{id}/terminal", AnyOf(&[P::USE_CONNECTION_MANAGER]), Scope::Customer, 101, None, WebSocket, "vault", "the browser terminal: a privileged SSH session on this service over a WebSocket from the console's own origin (400 unless the service is kind `ssh`)"),
    route("GET", "/api/v1/services/{id}/desktop", AnyOf(&[P::USE_CONNECTION_MANAGER]), Scope::Customer, 101, None, WebSocket, "vault", "the browser desktop: a privileged RDP session on this service over a WebSocket from the console's own origin (400 unless the service is kind `rdp`)"),
    route("GET", "/api/v1/services/{id}/file-policy", AnyOf(&[P::MANAGE_SERVICES]), Scope::Customer, 200, None, Json("FilePolicy"), "services", "the service's file-transfer policy (SFTP through the SSH proxy)"),
    route("PUT", "/api/v1/services/{id}/file-policy", AnyOf(&[P::MANAGE_SERVICES]), Scope::Customer, 200, Some("FilePolicy"), Json("FilePolicy"), "services", "replace the service's file-transfer policy (absent fields: their defaults); answers it normalized"),
    route("DELETE", "/api/v1/services/{id}/pin", AnyOf(&[P::MANAGE_SERVICES]), Scope::Customer, 204, None, Empty, "services", "forget the target key pinned on first use (SSH host key, RDP certificate key) after it changed on purpose; the next session pins anew; audited"),
    route("DELETE", "/api/v1/services/{id}", AnyOf(&[P::MANAGE_SERVICES]), Scope::Customer, 204, None, Empty, "services", "delete a service and its grants"),
    // users and roles
    route("GET", "/api/v1/users", AnyOf(&[P::MANAGE_USERS]), Scope::None, 200, None, List("User"), "users", "every user"),
    route("POST", "/api/v1/users", AnyOf(&[P::MANAGE_USERS]), Scope::None, 201, Some("NewUser"), Json("User"), "users", "create a user"),
    route("GET", "/api/v1/users/{id}", Authenticated, Scope::SelfOrManager, 200, None, Json("User"), "users", "a user (the caller themself, or anyone with MANAGE_USERS)"),
    route("PATCH", "/api/v1/users/{id}", AnyOf(&[P::MANAGE_USERS]), Scope::None, 200, Some("UserUpdate"), Json("User"), "users", "change a user"),
    route("GET", "/api/v1/users/{id}/keys", Authenticated, Scope::SelfOrManager, 200, None, List("UserKey"), "users", "a user's SSH keys, profile keys (`kind: profile`, bound to a gatekeeper) included"),
    route("DELETE", "/api/v1/users/{id}/keys/{key}", Authenticated, Scope::SelfOrManager, 204, None, Empty, "users", "delete a user's key (id or fingerprint); the connections it signed in close"),
    route("GET", "/api/v1/roles", AnyOf(&[P::MANAGE_ROLES, P::MANAGE_USERS]), Scope::None, 200, None, List("Role"), "roles", "every role"),
    route("POST", "/api/v1/roles", AnyOf(&[P::MANAGE_ROLES]), Scope::None, 201, Some("NewRole"), Json("Role"), "roles", "create a custom role"),
    route("PUT", "/api/v1/roles/{name}", AnyOf(&[P::MANAGE_ROLES]), Scope::None, 200, Some("RoleUpdate"), Json("Role"), "roles", "replace a custom role's permissions (built-in roles: 409)"),
    route("DELETE", "/api/v1/roles/{name}", AnyOf(&[P::MANAGE_ROLES]), Scope::None, 204, None, Empty, "roles", "delete a custom role (built-in roles: 409)"),
    // grants and settings
    route("GET", "/api/v1/grants", AnyOf(&[P::MANAGE_GRANTS]), Scope::Filtered, 200, None, List("Grant"), "grants", "grants of services in the caller's scope"),
    route("POST", "/api/v1/grants", AnyOf(&[P::MANAGE_GRANTS]), Scope::Customer, 201, Some("NewGrant"), Json("Grant"), "grants", "grant a user a service for a time window"),
    route("DELETE", "/api/v1/grants/{id}", AnyOf(&[P::MANAGE_GRANTS]), Scope::Customer, 204, None, Empty, "grants", "revoke a grant; its live sessions end"),
    route("GET", "/api/v1/settings", AnyOf(&[P::MANAGE_SETTINGS]), Scope::None, 200, None, Json("Settings"), "settings", "server-wide settings"),
    route("PUT", "/api/v1/settings", AnyOf(&[P::MANAGE_SETTINGS]), Scope::None, 200, Some("Settings"), Json("Settings"), "settings", "change server-wide settings"),
    // sessions
    with_query(
        route("GET", "/api/v1/sessions", AnyOf(&[P::VIEW_SESSIONS, P::VIEW_OWN_SESSIONS]), Scope::Filtered, 200, None, List("Session"), "sessions", "sessions in the caller's scope, newest first"),
        &[("state", "`active`, `ended` or `all` (default)"), ("limit", "at most this many (default 500)")],
    ),
    route("GET", "/api/v1/sessions/{id}", AnyOf(&[P::VIEW_SESSIONS, P::VIEW_OWN_SESSIONS]), Scope::Session, 200, None, Json("Session"), "sessions", "one session"),
    route("GET", "/api/v1/sessions/{id}/recordings", AnyOf(&[P::VIEW_SESSIONS]), Scope::Session, 200, None, List("Recording"), "recordings", "the recordings of a session's terminal channels"),
    with_query(
        route("GET", "/api/v1/sessions/{id}/files", AnyOf(&[P::VIEW_SESSIONS]), Scope::Session, 200, None, List("FileRecord"), "sessions", "the files a session moved or was refused (its `session.file` records), oldest first"),
        &[("format", "`json` (default) or `csv` (a download, cells that would run as formulas neutralised)")],
    ),
    route("GET", "/api/v1/recordings/{id}/cast", AnyOf(&[P::VIEW_SESSIONS]), Scope::Session, 200, None, Binary, "recordings", "download a recording (asciicast v2, `<id>.cast`)"),
    route("GET", "/api/v1/recordings/{id}/verify", AnyOf(&[P::VIEW_SESSIONS]), Scope::Session, 200, None, Json("RecordingVerification"), "recordings", "check a recording's file, chunk chain and signed manifest"),
    with_query(
        route("GET", "/api/v1/recordings/{id}/frame", AnyOf(&[P::VIEW_SESSIONS]), Scope::Session, 200, None, Binary, "recordings", "the desktop of an RDP recording at `t` as a PNG (`x-recording-duration`: its length in seconds)"),
        &[("t", "seconds from the recording's start (default 0; past the end: the last frame)")],
    ),
    route("GET", "/api/v1/recordings/{id}/input", AnyOf(&[P::VIEW_SESSIONS]), Scope::Session, 200, None, Json("InputTrack"), "recordings", "the keystroke and mouse track of an RDP recording's client, decoded from its input PDUs"),
    route("GET", "/api/v1/sessions/{id}/watch", AnyOf(&[P::MONITOR_SESSIONS]), Scope::Customer, 101, None, WebSocket, "sessions", "watch a live terminal or desktop session (WebSocket from the console's own origin; 409 when not live)"),
    route("POST", "/api/v1/sessions/{id}/terminate", AnyOf(&[P::TERMINATE_SESSIONS]), Scope::Customer, 204, Some("Terminate"), Empty, "sessions", "end a live session with a reason (409 when not live)"),
    // admin log
    with_query(
        route("GET", "/api/v1/audit", AnyOf(&[P::VIEW_ADMIN_LOG_USER_ACTIVITY, P::VIEW_ADMIN_LOG_SYSTEM_MESSAGES]), Scope::Filtered, 200, None, List("AuditEntry"), "audit", "admin log entries the caller may read, oldest first"),
        &[
            ("from", "RFC 3339: entries at or after"),
            ("to", "RFC 3339: entries before"),
            ("user", "the acting user"),
            ("category", "`user-activity` or `system-messages` (403 without its permission)"),
            ("customer", "a customer id"),
            ("action", "comma-separated action names, e.g. `session.file,session.file.op,session.sftp.malformed` for file events"),
            ("limit", "at most this many (default 1000)"),
            ("format", "`json` (default), `csv` or `jsonl`"),
        ],
    ),
    route("GET", "/api/v1/audit/verify", AnyOf(&[P::VERIFY_AUDIT_LOG]), Scope::None, 200, None, Json("AuditVerification"), "audit", "verify the admin log's hash chain, and against the last signed checkpoint its length and head"),
    route("GET", "/api/v1/audit/checkpoints", AnyOf(&[P::VERIFY_AUDIT_LOG]), Scope::None, 200, None, List("AuditCheckpoint"), "audit", "the signed checkpoints of the audit chain's head, oldest first, for an external log"),
    // credentials, checkouts and master passwords
    route("GET", "/api/v1/credentials", Authenticated, Scope::Filtered, 200, None, List("Credential"), "vault", "services with a stored credential a grant allows the caller now (never the secret), with the caller's checkout"),
    with_query(
        route("GET", "/api/v1/checkouts", AnyOf(&[P::USE_CONNECTION_MANAGER, P::MANAGE_GRANTS]), Scope::Filtered, 200, None, List("Checkout"), "vault", "the caller's checkouts, or with MANAGE_GRANTS those of the customers in scope, newest first"),
        &[("state", "`active` or `all` (default)"), ("limit", "at most this many (default 500)")],
    ),
    route("POST", "/api/v1/checkouts", AnyOf(&[P::USE_CONNECTION_MANAGER]), Scope::Own, 201, Some("NewCheckout"), Json("Checkout"), "vault", "check a credential out for a while (at most the service's limit, never past the grant)"),
    route("DELETE", "/api/v1/checkouts/{id}", AnyOf(&[P::USE_CONNECTION_MANAGER, P::MANAGE_GRANTS]), Scope::Customer, 204, None, Empty, "vault", "check one's own checkout in, or revoke one in scope (MANAGE_GRANTS); live sessions on the service end"),
    route("PUT", "/api/v1/me/master-password", Authenticated, Scope::Own, 204, Some("MasterPassword"), Empty, "vault", "set the caller's master password (proven with the login or current master password)"),
    route("DELETE", "/api/v1/users/{id}/master-password", AnyOf(&[P::MANAGE_USERS]), Scope::None, 204, None, Empty, "users", "clear a user's master password (409 when none is set)"),
    // downloads and live events
    route("GET", "/api/v1/downloads/ipconnect", AnyOf(&[P::DOWNLOAD_IPCONNECT]), Scope::None, 200, None, List("Download"), "downloads", "the IP Connect programs available"),
    route("GET", "/api/v1/downloads/ipconnect/{file}", AnyOf(&[P::DOWNLOAD_IPCONNECT]), Scope::None, 200, None, Binary, "downloads", "download an IP Connect program"),
    route("GET", "/api/v1/events", Authenticated, Scope::Filtered, 200, None, EventStream, "events", "server-sent events: `gatekeeper` and `session`, filtered to the caller's scope"),
];

/// The entry for `method` on the matched `path`, if any.
pub fn lookup(method: &str, path: &str) -> Option<&'static Route> {
    POLICY.iter().find(|r| r.method == method && r.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_unique_and_well_formed() {
        for (i, r) in POLICY.iter().enumerate() {
            assert!(
                !POLICY[..i]
                    .iter()
                    .any(|o| o.method == r.method && o.path == r.path),
                "duplicate policy entry {} {}",
                r.method,
                r.path
            );
            assert!(r.path.starts_with('/'), "{}", r.path);
            let changes = matches!(r.method, "POST" | "PUT" | "PATCH" | "DELETE");
            assert!(
                changes || r.request.is_none(),
                "{} {} has a body",
                r.method,
                r.path
            );
            assert_eq!(
                r.status == 204,
                r.response == Body::Empty,
                "{} {}",
                r.method,
                r.path
            );
        }
    }
}
