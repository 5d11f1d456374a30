//! The OpenAPI 3.1 document, generated from the policy table and the
//! schemas below; served at `/api/v1/openapi.json` and committed as
//! `docs/openapi.json` (a test fails when they drift).

use axum::Json;
use axum::extract::State;
use serde_json::{Map, Value, json};

use super::AppState;
use super::error::CODES;
use super::rbac::{Access, Body, POLICY, Route, Scope};
use crate::model::{CheckoutEnd, CredentialKind, EndReason, ServiceKind, SessionProtocol};
use crate::record::{RecordingKind, SealState};

/// The document as served: its server URL is the mount's base path (the
/// committed copy says `/`).
pub async fn serve(State(state): State<AppState>) -> Json<Value> {
    let mut doc = document();
    doc["servers"] = json!([{ "url": state.mount().base_path() }]);
    Json(doc)
}

fn obj(required: &[&str], props: Value) -> Value {
    json!({ "type": "object", "required": required, "properties": props })
}

fn s() -> Value {
    json!({ "type": "string" })
}
fn ns() -> Value {
    json!({ "type": ["string", "null"] })
}
fn time() -> Value {
    json!({ "type": "string", "format": "date-time" })
}
fn ntime() -> Value {
    json!({ "type": ["string", "null"], "format": "date-time" })
}
fn b() -> Value {
    json!({ "type": "boolean" })
}
fn int() -> Value {
    json!({ "type": "integer" })
}
fn strings() -> Value {
    json!({ "type": "array", "items": { "type": "string" } })
}
fn service_kinds() -> Value {
    let kinds: Vec<&str> = ServiceKind::ALL.iter().map(|k| k.as_str()).collect();
    json!({ "type": "string", "enum": kinds })
}
fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// Every named schema the policy table refers to.
pub fn schemas() -> Map<String, Value> {
    let mode = json!({ "type": "string", "enum": ["global", "legacy", "driver", "driver-with-legacy-fallback", "off"] });
    let gatekeeper = obj(
        &["id", "name", "customer_id", "registered", "online"],
        json!({ "id": s(), "name": s(), "customer_id": s(), "customer_name": s(), "registered": b(),
                "registered_at": ntime(), "fingerprint": ns(), "online": b(), "last_contact": ntime(),
                "customer_disabled": b(),
                "customer_schedule": { "type": ["string", "null"], "description": "the customer's opening hours, UTC (`mon-fri 08:00-18:00`); null = open whenever switched on" },
                "created_at": time() }),
    );
    let user = obj(
        &[
            "id",
            "name",
            "disabled",
            "roles",
            "customers",
            "ip_connect_mode",
        ],
        json!({ "id": s(), "name": s(), "disabled": b(), "roles": strings(), "customers": strings(),
                "ip_connect_mode": mode, "created_at": time() }),
    );
    let pairs = [
        (
            "Error",
            obj(
                &["error"],
                json!({ "error": obj(&["code", "message"], json!({
            "code": { "type": "string", "enum": CODES.iter().map(|c| c.0).collect::<Vec<_>>() },
            "message": s() })) }),
            ),
        ),
        (
            "Login",
            obj(
                &["username", "password"],
                json!({ "username": s(), "password": s() }),
            ),
        ),
        (
            "Me",
            obj(
                &["user", "permissions"],
                json!({ "user": reference("User"), "permissions": strings(),
            "csrf_token": { "type": ["string", "null"], "description": "echo in X-CSRF-Token on changes (null for bearer callers)" } }),
            ),
        ),
        ("User", user),
        (
            "UserKey",
            obj(
                &["id", "fingerprint", "kind", "label", "created_at"],
                json!({ "id": s(), "fingerprint": s(), "public_key": s(),
                        "kind": { "type": "string", "enum": ["key", "profile"], "description": "`profile`: the key of a downloaded Connection Manager profile, bound to its gatekeeper" },
                        "label": s(), "gatekeeper_id": ns(), "created_at": time() }),
            ),
        ),
        (
            "NewUser",
            obj(
                &["name"],
                json!({ "name": s(), "password": s(), "roles": strings(), "customers": strings(), "ip_connect_mode": mode }),
            ),
        ),
        (
            "UserUpdate",
            obj(
                &[],
                json!({ "disabled": b(), "roles": strings(), "customers": strings(), "ip_connect_mode": mode, "password": s() }),
            ),
        ),
        (
            "Token",
            obj(
                &["id", "name", "created_at"],
                json!({ "id": s(), "name": s(), "created_at": time(), "expires_at": ntime(), "last_used_at": ntime() }),
            ),
        ),
        (
            "NewToken",
            obj(&["name"], json!({ "name": s(), "expires_in_days": int() })),
        ),
        (
            "IssuedToken",
            obj(
                &["id", "name", "token"],
                json!({ "id": s(), "name": s(), "token": { "type": "string", "description": "shown once; send as `Authorization: Bearer TOKEN`" }, "created_at": time(), "expires_at": ntime() }),
            ),
        ),
        (
            "PermissionInfo",
            obj(
                &["name", "description"],
                json!({ "name": s(), "description": s() }),
            ),
        ),
        (
            "CustomerSummary",
            obj(
                &["id", "name", "gatekeeper"],
                json!({ "id": s(), "name": s(), "created_at": time(),
            "gatekeeper": { "oneOf": [ { "type": "null" }, obj(&["id", "name", "registered", "online"], json!({ "id": s(), "name": s(), "registered": b(), "online": b() })) ] } }),
            ),
        ),
        ("NewCustomer", obj(&["name"], json!({ "name": s() }))),
        (
            "Customer",
            obj(
                &["id", "name", "gatekeepers"],
                json!({ "id": s(), "name": s(), "created_at": time(), "gatekeepers": { "type": "array", "items": reference("Gatekeeper") } }),
            ),
        ),
        ("NewGatekeeper", obj(&["name"], json!({ "name": s() }))),
        (
            "Node",
            obj(
                &[
                    "id",
                    "peer_address",
                    "version",
                    "started_at",
                    "heartbeat_at",
                    "state",
                ],
                json!({ "id": s(), "peer_address": s(), "version": s(), "started_at": time(),
                        "heartbeat_at": time(), "state": { "type": "string", "enum": ["live", "lost"] } }),
            ),
        ),
        ("Gatekeeper", gatekeeper),
        (
            "NewCode",
            obj(
                &[],
                json!({ "ttl_minutes": { "type": "integer", "default": 60 } }),
            ),
        ),
        (
            "RegistrationCode",
            obj(
                &["code", "expires_at"],
                json!({
                    "gatekeeper_id": s(),
                    "code": { "type": "string", "description": "shown once" },
                    "expires_at": time(),
                    "server_address": { "type": "string", "description": "the SSH address the gatekeeper dials (`cpam-gatekeeper register --server`)" },
                    "server_fingerprint": { "type": "string", "description": "the server key's fingerprint (`--server-fingerprint`)" },
                }),
            ),
        ),
        (
            "Profile",
            json!({ "type": "object", "description": "a Connection Manager profile (cpam-connect --profile FILE)" }),
        ),
        (
            "Service",
            obj(
                &["id", "name", "kind", "host", "port"],
                json!({ "id": s(), "customer_id": s(), "gatekeeper_id": { "type": ["string", "null"], "description": "the gatekeeper whose network holds the target; only sessions through it reach the service (null: any of the customer's, a service made before services had a gatekeeper)" }, "name": s(),
            "kind": service_kinds(), "host": s(), "port": int(), "target": s(), "created_at": time() }),
            ),
        ),
        (
            "NewService",
            obj(
                &["name", "kind", "host"],
                json!({ "name": s(), "kind": service_kinds(),
            "host": s(), "port": { "type": "integer", "description": "default 5900 for desktop-sharing, 22 for file-transfer and ssh, 3389 for rdp" } }),
            ),
        ),
        (
            "FilePolicy",
            obj(
                &[],
                json!({
                    "upload": { "type": "boolean", "description": "files may be written (and changed); default true" },
                    "download": { "type": "boolean", "description": "files may be read; default true" },
                    "prefixes": { "type": "array", "items": s(), "description": "absolute directories files may be in; empty: anywhere" },
                    "max_size": { "type": ["integer", "null"], "description": "the largest file in bytes" },
                    "blocked_extensions": { "type": "array", "items": s(), "description": "file name extensions that may not move" },
                }),
            ),
        ),
        (
            "Role",
            obj(
                &["name", "permissions", "builtin"],
                json!({ "name": s(), "permissions": strings(), "builtin": b() }),
            ),
        ),
        (
            "NewRole",
            obj(
                &["name", "permissions"],
                json!({ "name": s(), "permissions": strings() }),
            ),
        ),
        (
            "RoleUpdate",
            obj(&["permissions"], json!({ "permissions": strings() })),
        ),
        (
            "Grant",
            obj(
                &["id", "user", "service_id", "not_before"],
                json!({ "id": s(), "user_id": s(), "user": s(), "service_id": s(), "service": s(), "customer_id": s(),
            "not_before": time(), "not_after": ntime(), "created_at": time(), "created_by": s(), "revoked_at": ntime() }),
            ),
        ),
        (
            "NewGrant",
            obj(
                &["user", "service_id"],
                json!({ "user": { "type": "string", "description": "user name or id" }, "service_id": s(),
            "not_before": time(), "not_after": time(), "days": int(), "hours": int() }),
            ),
        ),
        (
            "Settings",
            obj(
                &["ip_connect_mode"],
                json!({ "ip_connect_mode": { "type": "string", "enum": ["legacy", "driver", "driver-with-legacy-fallback", "off"] } }),
            ),
        ),
        (
            "Session",
            obj(
                &[
                    "id",
                    "user",
                    "customer_id",
                    "service",
                    "target",
                    "started_at",
                    "live",
                ],
                json!({ "id": s(), "user": s(), "user_id": s(),
            "customer_id": s(), "customer_name": ns(), "gatekeeper_id": ns(),
            "protocol": { "type": "string", "enum": SessionProtocol::ALL.map(SessionProtocol::as_str) },
            "node_id": ns(), "service": s(), "service_id": s(), "target": s(),
            "started_at": time(), "ended_at": ntime(), "bytes_up": int(), "bytes_down": int(),
            "end_reason": { "type": ["string", "null"], "enum": std::iter::once(Value::Null)
                .chain(EndReason::ALL.map(|r| Value::from(r.as_str())))
                .collect::<Vec<_>>() },
            "end_detail": ns(), "live": b() }),
            ),
        ),
        (
            "Recording",
            obj(
                &["id", "session_id", "channel", "kind", "size", "state"],
                json!({ "id": s(), "session_id": s(), "channel": int(),
            "kind": { "type": "string", "enum": RecordingKind::ALL.map(RecordingKind::as_str) },
            "started_at": ntime(), "ended_at": ntime(), "size": int(),
            "state": { "type": "string", "enum": std::iter::once("open")
                .chain(SealState::ALL.map(SealState::as_str))
                .collect::<Vec<_>>() } }),
            ),
        ),
        (
            "FileRecord",
            obj(
                &["seq", "at", "path", "direction", "size", "sha256", "result"],
                json!({ "seq": int(), "at": time(), "session_id": ns(), "path": s(),
            "direction": { "type": "string", "enum": ["upload", "download"] },
            "size": int(), "offset": int(), "sha256": s(), "non_sequential": b(),
            "result": { "type": "string", "enum": ["complete", "incomplete", "refused", "failed"] },
            "reason": ns(), "started_at": s(), "ended_at": s() }),
            ),
        ),
        (
            "InputTrack",
            obj(
                &["events", "pdus", "skipped"],
                json!({
                    "events": { "type": "array", "items": obj(
                        &["t", "type"],
                        json!({
                            "t": { "type": "number", "description": "seconds from the recording's start" },
                            "type": { "type": "string", "enum": ["key", "unicode", "pointer", "button", "wheel", "relative_pointer", "relative_button", "sync"] },
                            "scancode": { "type": "integer", "description": "set-1 scancode; 0xE0xx extended, 0xE1xx the Pause prefix" },
                            "code": { "type": "integer", "description": "a UTF-16 code unit" },
                            "down": b(), "x": int(), "y": int(), "dx": int(), "dy": int(),
                            "button": { "type": "string", "enum": ["left", "right", "middle", "x1", "x2"] },
                            "delta": { "type": "integer", "description": "wheel units, 120 a notch" },
                            "horizontal": b(),
                            "scroll_lock": b(), "num_lock": b(), "caps_lock": b(), "kana_lock": b(),
                        }),
                    ) },
                    "pdus": int(), "skipped": int(), "last_error": ns(),
                }),
            ),
        ),
        (
            "RecordingVerification",
            obj(
                &["id", "ok"],
                json!({ "id": s(), "ok": b(),
            "state": { "type": ["string", "null"], "enum": std::iter::once(Value::Null)
                .chain(SealState::ALL.map(|x| Value::from(x.as_str())))
                .collect::<Vec<_>>() },
            "size": { "type": ["integer", "null"] }, "chunks": { "type": ["integer", "null"] },
            "signer": ns(), "error": ns() }),
            ),
        ),
        (
            "Terminate",
            obj(
                &["reason"],
                json!({ "reason": { "type": "string", "minLength": 1 } }),
            ),
        ),
        (
            "AuditEntry",
            obj(
                &["seq", "at", "category", "action", "actor"],
                json!({ "seq": int(), "at": time(),
            "category": { "type": "string", "enum": ["user-activity", "system-messages"] }, "action": s(), "actor": s(),
            "customer_id": ns(), "session_id": ns(), "detail": {}, "hash": s() }),
            ),
        ),
        (
            "AuditVerification",
            obj(
                &["intact", "records"],
                json!({ "intact": b(), "records": int(),
            "first_broken": { "oneOf": [ { "type": "null" }, obj(&["seq", "problem"], json!({ "seq": int(), "problem": s() })) ] },
            "checkpoint": { "type": ["integer", "null"], "description": "the record of the signed checkpoint the chain was checked against" } }),
            ),
        ),
        (
            "AuditCheckpoint",
            obj(
                &["seq", "hash", "at", "signer", "signature"],
                json!({ "seq": int(), "hash": s(), "at": { "type": "integer", "description": "signed at, milliseconds since the Unix epoch" }, "signer": s(), "signature": s() }),
            ),
        ),
        (
            "Download",
            obj(
                &["os", "arch", "file", "size"],
                json!({ "os": s(), "arch": s(), "file": s(), "size": int() }),
            ),
        ),
        (
            "Credential",
            obj(
                &[
                    "service_id",
                    "service",
                    "username",
                    "credential_kind",
                    "max_checkout_secs",
                ],
                json!({ "service_id": s(), "service": s(), "customer_id": s(), "customer_name": ns(),
            "kind": service_kinds(), "target": s(), "username": s(),
            "credential_kind": { "type": "string", "enum": CredentialKind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>() },
            "max_checkout_secs": int(), "grant_until": ntime(),
            "checkout": { "oneOf": [ { "type": "null" }, reference("Checkout") ] } }),
            ),
        ),
        (
            "Checkout",
            obj(
                &[
                    "id",
                    "user",
                    "service_id",
                    "status",
                    "started_at",
                    "expires_at",
                ],
                json!({ "id": s(), "user": s(), "user_id": s(), "customer_id": s(), "service": s(), "service_id": s(),
            "status": { "type": "string", "enum": std::iter::once("active").chain(std::iter::once("expired"))
                .chain(CheckoutEnd::ALL.iter().map(|e| e.as_str())).collect::<Vec<_>>() },
            "started_at": time(), "expires_at": time(), "ended_at": ntime(),
            "end_reason": { "type": ["string", "null"], "enum": std::iter::once(Value::Null)
                .chain(CheckoutEnd::ALL.iter().map(|e| Value::from(e.as_str())))
                .collect::<Vec<_>>() },
            "ended_by": ns() }),
            ),
        ),
        (
            "NewCheckout",
            obj(
                &["service_id"],
                json!({ "service_id": s(), "duration_secs": { "type": "integer", "description": "default: the service's longest checkout" } }),
            ),
        ),
        (
            "MasterPassword",
            obj(
                &["current", "new"],
                json!({ "current": { "type": "string", "description": "the caller's login password or current master password" },
            "new": { "type": "string", "minLength": crate::vault::MIN_MASTER_PASSWORD } }),
            ),
        ),
        (
            "OpenApi",
            json!({ "type": "object", "description": "this document" }),
        ),
    ];
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn content(body: &Body) -> Option<Value> {
    Some(match body {
        Body::Empty => return None,
        Body::Json(name) => json!({ "application/json": { "schema": reference(name) } }),
        Body::List(name) => {
            json!({ "application/json": { "schema": { "type": "array", "items": reference(name) } } })
        }
        Body::Html => json!({ "text/html": { "schema": s() } }),
        Body::Text => json!({ "text/plain": { "schema": s() } }),
        Body::EventStream => json!({ "text/event-stream": { "schema": s() } }),
        Body::Binary => {
            json!({ "application/octet-stream": { "schema": { "type": "string", "contentEncoding": "binary" } } })
        }
        Body::WebSocket => return None,
    })
}

fn error(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": reference("Error") } } })
}

/// `get_api_v1_customers_id` for `GET /api/v1/customers/{id}`.
fn operation_id(r: &Route) -> String {
    let path: String = r
        .path
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let mut id = r.method.to_lowercase();
    for part in path.split('_').filter(|p| !p.is_empty()) {
        id.push('_');
        id.push_str(part);
    }
    if r.path == "/" {
        id.push_str("_root");
    }
    id
}

fn operation(r: &Route) -> Value {
    let mut responses = Map::new();
    let mut ok = json!({ "description": "success" });
    if let Some(c) = content(&r.response) {
        ok["content"] = c;
    }
    responses.insert(r.status.to_string(), ok);
    if r.request.is_some() || !r.query.is_empty() {
        responses.insert("400".into(), error("invalid_argument"));
    }
    let (access, permissions) = match &r.access {
        Access::Public => ("public", vec![]),
        Access::Authenticated => ("authenticated", vec![]),
        Access::AnyOf(ps) => ("any_of", ps.iter().map(|p| p.as_str()).collect()),
        Access::AllOf(ps) => ("all_of", ps.iter().map(|p| p.as_str()).collect()),
    };
    if r.access != Access::Public {
        responses.insert("401".into(), error("unauthenticated"));
        responses.insert("403".into(), error("permission_denied or csrf_failed"));
    }
    if matches!(
        r.scope,
        Scope::Customer | Scope::Session | Scope::Own | Scope::SelfOrManager
    ) || r.path.contains('{')
    {
        responses.insert(
            "404".into(),
            error("not_found (missing or outside the caller's scope)"),
        );
    }
    let mut params: Vec<Value> = r
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            let name = name.trim_start_matches('*');
            json!({ "name": name, "in": "path", "required": true, "schema": s() })
        })
        .collect();
    params.extend(r.query.iter().map(|(name, desc)| {
        json!({ "name": name, "in": "query", "required": false, "description": desc, "schema": s() })
    }));
    let mut op = json!({
        "summary": r.summary,
        "operationId": operation_id(r),
        "tags": [r.tag],
        "responses": responses,
        "x-cpam-access": access,
        "x-cpam-permissions": permissions,
        "x-cpam-scope": r.scope,
    });
    if !params.is_empty() {
        op["parameters"] = Value::Array(params);
    }
    if let Some(req) = r.request {
        op["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": reference(req) } } });
    }
    if r.access == Access::Public {
        op["security"] = json!([]);
    }
    op
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for r in POLICY {
        let openapi_path = r.path.replace("{*", "{");
        let entry = paths
            .entry(openapi_path)
            .or_insert_with(|| Value::Object(Map::new()));
        entry[r.method.to_lowercase()] = operation(r);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "cpam REST API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Every console action as a REST call. Authenticate with the session cookie from \
                POST /api/v1/auth/login (changes then need X-CSRF-Token) or with `Authorization: Bearer TOKEN` \
                (tokens from /api/v1/tokens). Errors are {\"error\": {\"code\", \"message\"}}. A foreign object \
                (outside the caller's customers) answers 404 like a missing one. See docs/api.md.",
        },
        "servers": [{ "url": "/" }],
        "security": [{ "cookie": [] }, { "bearer": [] }],
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "cookie": { "type": "apiKey", "in": "cookie", "name": super::auth::COOKIE },
                "bearer": { "type": "http", "scheme": "bearer" },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_ids_are_unique_identifiers() {
        let ids: Vec<String> = POLICY.iter().map(operation_id).collect();
        for (i, id) in ids.iter().enumerate() {
            assert!(
                id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{id}"
            );
            assert!(!ids[..i].contains(id), "duplicate operationId {id}");
        }
        assert_eq!(operation_id(&POLICY[0]), "get_root");
    }

    #[test]
    fn every_referenced_schema_exists() {
        let doc = document().to_string();
        let schemas = schemas();
        for part in doc.split("#/components/schemas/").skip(1) {
            let name: String = part
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            assert!(
                schemas.contains_key(&name),
                "schema {name} is referenced but not defined"
            );
        }
    }
}
