//! Privilege ceilings through the REST API of a real `cpam-server run`:
//! the RBAC matrix (`web_rbac.rs`) checks who reaches a route, these check
//! what an operator who reaches it may hand out.

use cpam_core::model::Timestamp;
use cpam_core::store::{Directory, SqlStore};
use cpam_tests::web::{WebOptions, WebServer};
use serde_json::{Value, json};

const PASSWORD: &str = "ceiling-user-password";

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap_or_default().to_string()
}

/// Privilege ceilings: an operator who may manage users, roles and grants
/// but is not a System Administrator hands out nothing they do not hold,
/// edits no role they hold, grants themselves nothing, widens their own
/// customers not, and leaves System Administrator accounts alone.
#[test]
fn operators_hand_out_no_more_than_they_hold() -> anyhow::Result<()> {
    let web = WebServer::start(WebOptions::default())?;
    let admin = web.admin()?;
    let a = id(&admin.post("/api/v1/customers", &json!({ "name": "own-co" }))?);
    let b = id(&admin.post("/api/v1/customers", &json!({ "name": "other-co" }))?);
    let admin_id = admin.get("/api/v1/auth/me")?["user"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let held = [
        "MANAGE_USERS",
        "MANAGE_ROLES",
        "MANAGE_GRANTS",
        "MANAGE_GATEKEEPERS",
        "MANAGE_SERVICES",
        "VIEW_SESSIONS",
    ];
    admin.post(
        "/api/v1/roles",
        &json!({ "name": "user-manager", "permissions": held }),
    )?;
    let manager_id = id(&admin.post(
        "/api/v1/users",
        &json!({ "name": "manager", "password": PASSWORD, "roles": ["user-manager"], "customers": [a] }),
    )?);
    let mut m = web.client()?;
    m.login("manager", PASSWORD)?.expect(200, "login manager")?;
    let user = |id: &str| format!("/api/v1/users/{id}");

    // Roles: only permissions the manager holds, never a role they hold.
    m.expect(
        "POST",
        "/api/v1/roles",
        Some(&json!({ "name": "viewer", "permissions": ["VIEW_SESSIONS"] })),
        201,
    )?;
    m.expect(
        "POST",
        "/api/v1/roles",
        Some(&json!({ "name": "verifier", "permissions": ["VERIFY_AUDIT_LOG"] })),
        403,
    )?;
    m.expect(
        "PUT",
        "/api/v1/roles/viewer",
        Some(&json!({ "permissions": ["VIEW_SESSIONS", "MANAGE_GRANTS"] })),
        200,
    )?;
    m.expect(
        "PUT",
        "/api/v1/roles/viewer",
        Some(&json!({ "permissions": ["VERIFY_AUDIT_LOG"] })),
        403,
    )?;
    m.expect(
        "PUT",
        "/api/v1/roles/user-manager",
        Some(&json!({ "permissions": held })),
        403,
    )?;
    let mut more = held.to_vec();
    more.push("ACCESS_ALL_CUSTOMERS");
    m.expect(
        "PUT",
        "/api/v1/roles/user-manager",
        Some(&json!({ "permissions": more })),
        403,
    )?;

    // Users: no role beyond the manager's permissions, for others or themselves.
    let new_user =
        |name: &str, roles: Value| json!({ "name": name, "roles": roles, "customers": [a] });
    let viewer = m.expect(
        "POST",
        "/api/v1/users",
        Some(&new_user("viewer-1", json!(["viewer"]))),
        201,
    )?;
    let viewer_id = id(&viewer.json()?);
    for role in ["Vendor", "Auditor", "System Administrator"] {
        m.expect(
            "POST",
            "/api/v1/users",
            Some(&new_user("nope", json!([role]))),
            403,
        )?;
        m.expect(
            "PATCH",
            &user(&viewer_id),
            Some(&json!({ "roles": ["viewer", role] })),
            403,
        )?;
        m.expect(
            "PATCH",
            &user(&manager_id),
            Some(&json!({ "roles": ["user-manager", role] })),
            403,
        )?;
    }
    m.expect(
        "PATCH",
        &user(&manager_id),
        Some(&json!({ "roles": ["user-manager", "viewer"] })),
        200,
    )?;

    // Customers: the manager's own scope only, and never widening their own.
    m.expect(
        "PATCH",
        &user(&viewer_id),
        Some(&json!({ "customers": [b] })),
        403,
    )?;
    m.expect(
        "PATCH",
        &user(&manager_id),
        Some(&json!({ "customers": [a, b] })),
        403,
    )?;
    m.expect(
        "PATCH",
        &user(&viewer_id),
        Some(&json!({ "customers": [a] })),
        200,
    )?;

    // Grants: to others, never to themselves.
    let gk = id(&m.post(
        &format!("/api/v1/customers/{a}/gatekeepers"),
        &json!({ "name": "gk" }),
    )?);
    let svc = id(&m.post(
        &format!("/api/v1/gatekeepers/{gk}/services"),
        &json!({ "name": "db", "kind": "custom", "host": "10.0.0.5", "port": 5432 }),
    )?);
    m.expect(
        "POST",
        "/api/v1/grants",
        Some(&json!({ "user": "manager", "service_id": svc, "hours": 1 })),
        403,
    )?;
    m.expect(
        "POST",
        "/api/v1/grants",
        Some(&json!({ "user": "viewer-1", "service_id": svc, "hours": 1 })),
        201,
    )?;

    // A System Administrator's account: not the manager's to change.
    for body in [
        json!({ "disabled": true }),
        json!({ "password": "taken-over-password" }),
        json!({ "ip_connect_mode": "legacy" }),
    ] {
        m.expect("PATCH", &user(&admin_id), Some(&body), 403)?;
    }
    let store = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(SqlStore::connect(&format!(
            "sqlite://{}",
            web.data_dir.join("cpam.db").display()
        )))?;
    let ctx_key = |owner: &str| -> anyhow::Result<String> {
        let token = cpam_core::model::random_token(20);
        let key = cpam_core::model::UserKey {
            id: cpam_core::model::KeyId::generate(),
            user_id: cpam_core::model::UserId(owner.into()),
            public_key: format!("ssh-ed25519 AAAA{token} ceiling"),
            fingerprint: format!("SHA256:{token}"),
            label: "ceiling".into(),
            gatekeeper_id: None,
            created_at: Timestamp::now(),
        };
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(store.add_user_key(&key))?;
        Ok(key.id.0)
    };
    let admin_key = ctx_key(&admin_id)?;
    m.expect(
        "DELETE",
        &format!("{}/keys/{admin_key}", user(&admin_id)),
        None,
        403,
    )?;
    let viewer_key = ctx_key(&viewer_id)?;
    let keys = m.get(&format!("{}/keys", user(&viewer_id)))?;
    assert_eq!(keys[0]["kind"], "key", "{keys}");
    m.expect(
        "DELETE",
        &format!("{}/keys/{viewer_key}", user(&viewer_id)),
        None,
        204,
    )?;

    // The System Administrator still may.
    admin.expect(
        "PATCH",
        &user(&viewer_id),
        Some(&json!({ "roles": ["Auditor"] })),
        200,
    )?;
    admin.expect(
        "DELETE",
        &format!("{}/keys/{admin_key}", user(&admin_id)),
        None,
        204,
    )?;
    Ok(())
}
