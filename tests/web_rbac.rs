//! The RBAC matrix, generated from the policy table: every route x every
//! built-in role x an own and a foreign object -> the status the table and
//! the scope rules say, against a real `cpam-server run`. A route in the
//! router without a table entry (or the reverse) fails.
//!
//! "Own" objects belong to customer A, which every role user is a member of
//! (and, for tokens, sessions and users, to the role user); "foreign" ones
//! to customer B (and another user).

use std::collections::{BTreeMap, BTreeSet};

use cpam_core::model::{Permission, Session, SessionId, Target, Timestamp};
use cpam_core::store::{Directory, SessionLog, SqlStore, VaultStore};
use cpam_core::web::rbac::{Access, Body, POLICY, Route, Scope};
use cpam_tests::web::{WebClient, WebOptions, WebServer};
use serde_json::{Value, json};

const ROLES: &[&str] = &[
    "System Administrator",
    "Vendor",
    "Customer Administrator",
    "Auditor",
];
const PASSWORD: &str = "role-user-password";

#[test]
fn every_route_has_a_policy_entry_and_every_entry_a_route() {
    let routes = cpam_core::web::routes();
    let registered: BTreeSet<(&str, &str)> = routes.registered().iter().copied().collect();
    let table: BTreeSet<(&str, &str)> = POLICY.iter().map(|r| (r.method, r.path)).collect();
    let unlisted: Vec<_> = registered.difference(&table).collect();
    let unrouted: Vec<_> = table.difference(&registered).collect();
    assert!(
        unlisted.is_empty(),
        "routes without a policy entry: {unlisted:?}"
    );
    assert!(
        unrouted.is_empty(),
        "policy entries without a route: {unrouted:?}"
    );
    // Registering a route the table does not list cannot happen unnoticed.
    let attempt = std::panic::catch_unwind(|| {
        cpam_core::web::ApiRoutes::default().add("GET", "/api/v1/unlisted", || async { "x" })
    });
    assert!(
        attempt.is_err(),
        "a route without a policy entry was accepted"
    );
}

struct Ctx {
    web: WebServer,
    admin: WebClient,
    store: SqlStore,
    a: String,
    b: String,
    outsider: WebClient,
    outsider_id: String,
    admin_id: String,
    n: std::cell::Cell<u32>,
}

impl Ctx {
    fn unique(&self, prefix: &str) -> String {
        self.n.set(self.n.get() + 1);
        format!("{prefix}-{}", self.n.get())
    }

    fn id(v: &Value) -> String {
        v["id"].as_str().unwrap_or_default().to_string()
    }

    fn gatekeeper(&self, customer: &str) -> anyhow::Result<String> {
        let body = json!({ "name": self.unique("gk") });
        Ok(Self::id(&self.admin.post(
            &format!("/api/v1/customers/{customer}/gatekeepers"),
            &body,
        )?))
    }

    fn service(&self, customer: &str) -> anyhow::Result<String> {
        let gk = self.gatekeeper(customer)?;
        let body =
            json!({ "name": self.unique("svc"), "kind": "custom", "host": "10.0.0.5", "port": 22 });
        Ok(Self::id(&self.admin.post(
            &format!("/api/v1/gatekeepers/{gk}/services"),
            &body,
        )?))
    }

    fn grant(&self, customer: &str) -> anyhow::Result<String> {
        let service = self.service(customer)?;
        let body = json!({ "user": "outsider", "service_id": service, "days": 1 });
        Ok(Self::id(&self.admin.post("/api/v1/grants", &body)?))
    }

    /// A fresh key of user `user_id`, straight into the store; its id.
    fn key(&self, user_id: &str) -> anyhow::Result<String> {
        let token = cpam_core::model::random_token(20);
        let key = cpam_core::model::UserKey {
            id: cpam_core::model::KeyId::generate(),
            user_id: cpam_core::model::UserId(user_id.into()),
            public_key: format!("ssh-ed25519 AAAA{token} matrix"),
            fingerprint: format!("SHA256:{token}"),
            label: "matrix".into(),
            gatekeeper_id: None,
            created_at: Timestamp::now(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(self.store.add_user_key(&key))?;
        Ok(key.id.0)
    }

    fn session(&self, user_id: &str, user: &str, customer: &str) -> anyhow::Result<String> {
        let now = Timestamp::now();
        let s = Session {
            id: SessionId::generate(),
            user_id: cpam_core::model::UserId(user_id.into()),
            user_name: user.into(),
            customer_id: cpam_core::model::CustomerId(customer.into()),
            gatekeeper_id: Some(cpam_core::model::GatekeeperId("gk_matrix".into())),
            service_id: cpam_core::model::ServiceId("svc_matrix".into()),
            service_name: "matrix".into(),
            target: Target {
                host: "10.0.0.5".into(),
                port: 22,
            },
            grant_id: None,
            protocol: cpam_core::model::SessionProtocol::Tcp,
            node_id: None,
            started_at: now,
            ended_at: Some(now),
            bytes_up: 1,
            bytes_down: 1,
            end_reason: Some(cpam_core::model::EndReason::Completed),
            end_detail: None,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(self.store.insert_session(&s))?;
        Ok(s.id.0)
    }
}

impl Ctx {
    /// A sealed recording of channel 0 of `session`, in the server's store.
    fn recording(&self, session: &str) -> anyhow::Result<String> {
        use cpam_core::record::{RecordingId, RecordingStore as _, SealState};
        let store = cpam_core::server::DataDir::open(&self.web.data_dir)?.recordings()?;
        let id = RecordingId::new(&SessionId(session.into()), 0)?;
        let mut w = store.create(&id, Timestamp::now())?;
        w.append(b"{\"version\":2,\"width\":80,\"height\":24}\n")?;
        w.seal(Timestamp::now(), SealState::Complete)?;
        Ok(id.to_string())
    }

    /// An ssh service of customer A with a stored credential, granted to `user`.
    fn credential(&self, user: &str) -> anyhow::Result<String> {
        let gk = self.gatekeeper(&self.a)?;
        let body = json!({ "name": self.unique("ssh"), "kind": "ssh", "host": "10.0.0.7" });
        let service = Self::id(
            &self
                .admin
                .post(&format!("/api/v1/gatekeepers/{gk}/services"), &body)?,
        );
        let grant = json!({ "user": user, "service_id": service, "hours": 1 });
        self.admin.post("/api/v1/grants", &grant)?;
        // The ciphertext is never read here: a checkout needs the row only.
        let stored = cpam_core::model::StoredCredential {
            service_id: cpam_core::model::ServiceId(service.clone()),
            username: "root".into(),
            kind: cpam_core::model::CredentialKind::Password,
            key_version: 1,
            ciphertext: "00".into(),
            updated_at: Timestamp::now(),
            updated_by: "matrix".into(),
        };
        self.block_on(self.store.put_credential(&stored))?;
        Ok(service)
    }

    /// An active checkout of `user` in `customer`.
    fn checkout(&self, user_id: &str, user: &str, customer: &str) -> anyhow::Result<String> {
        let now = Timestamp::now();
        let c = cpam_core::model::Checkout {
            id: cpam_core::model::CheckoutId::generate(),
            user_id: cpam_core::model::UserId(user_id.into()),
            user_name: user.into(),
            customer_id: cpam_core::model::CustomerId(customer.into()),
            service_id: cpam_core::model::ServiceId("svc_matrix".into()),
            service_name: "matrix".into(),
            started_at: now,
            expires_at: now.add(std::time::Duration::from_secs(3600)),
            ended_at: None,
            end_reason: None,
            ended_by: None,
        };
        self.block_on(self.store.insert_checkout(&c))?;
        Ok(c.id.0)
    }

    fn block_on<T>(
        &self,
        f: impl std::future::Future<Output = cpam_core::Result<T>>,
    ) -> anyhow::Result<T> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(rt.block_on(f)?)
    }
}

/// A signed-in user holding one built-in role, member of customer A.
struct RoleUser {
    role: &'static str,
    id: String,
    name: String,
    perms: BTreeSet<Permission>,
    client: WebClient,
}

impl RoleUser {
    fn has(&self, p: Permission) -> bool {
        self.perms.contains(&p)
    }
}

/// What a case must answer.
#[derive(Debug, PartialEq)]
enum Expect {
    Status(u16),
    /// Public asset routes: anything but an authentication or permission refusal.
    NotRefused,
}

fn expected(route: &Route, user: &RoleUser, own: bool) -> Expect {
    if !route.access.allows(|p| user.has(p)) {
        return Expect::Status(403);
    }
    let all = user.has(Permission::ACCESS_ALL_CUSTOMERS);
    let hidden = match route.scope {
        Scope::Customer => !own && !all,
        Scope::Session => {
            let sees = (user.has(Permission::VIEW_SESSIONS) && (own || all))
                || (user.has(Permission::VIEW_OWN_SESSIONS) && own);
            !sees
        }
        Scope::Own => !own,
        Scope::SelfOrManager if !own && !user.has(Permission::MANAGE_USERS) => {
            return Expect::Status(403);
        }
        _ => false,
    };
    if hidden {
        return Expect::Status(404);
    }
    match (route.method, route.path) {
        // Allowed, but the object's state refuses: an unregistered gatekeeper, an ended session.
        // (The watch answers 409 before it looks at the WebSocket upgrade.)
        ("GET", "/api/v1/gatekeepers/{id}/profile")
        | ("GET", "/api/v1/sessions/{id}/watch")
        | ("POST", "/api/v1/sessions/{id}/terminate") => Expect::Status(409),
        // The matrix's services are neither privileged SSH nor RDP services.
        ("GET", "/api/v1/services/{id}/terminal") | ("GET", "/api/v1/services/{id}/desktop") => {
            Expect::Status(400)
        }
        // The matrix's recordings are terminal recordings, not RDP ones.
        ("GET", "/api/v1/recordings/{id}/frame") | ("GET", "/api/v1/recordings/{id}/input") => {
            Expect::Status(400)
        }
        ("GET", "/assets/{*path}") => Expect::NotRefused,
        _ => Expect::Status(route.status),
    }
}

/// The concrete path and body for `route`, creating the objects it names.
fn prepare(
    ctx: &Ctx,
    route: &Route,
    user: &RoleUser,
    own: bool,
) -> anyhow::Result<(String, Option<Value>)> {
    let customer = if own { ctx.a.clone() } else { ctx.b.clone() };
    let mut path = route.path.to_string();
    let param = |path: &mut String, name: &str, value: String| {
        *path = path.replace(name, &value);
    };
    match route.path {
        p if p.starts_with("/api/v1/customers/{id}") && route.method == "DELETE" => {
            let c = Ctx::id(
                &ctx.admin
                    .post("/api/v1/customers", &json!({ "name": ctx.unique("co") }))?,
            );
            if own {
                ctx.admin.expect(
                    "PATCH",
                    &format!("/api/v1/users/{}", user.id),
                    Some(&json!({ "customers": [ctx.a, c] })),
                    200,
                )?;
            }
            param(&mut path, "{id}", c);
        }
        p if p.starts_with("/api/v1/customers/{id}") => param(&mut path, "{id}", customer.clone()),
        p if p.starts_with("/api/v1/gatekeepers/{id}") => {
            param(&mut path, "{id}", ctx.gatekeeper(&customer)?)
        }
        p if p.starts_with("/api/v1/services/{id}") => {
            param(&mut path, "{id}", ctx.service(&customer)?)
        }
        p if p.starts_with("/api/v1/grants/{id}") => {
            param(&mut path, "{id}", ctx.grant(&customer)?)
        }
        p if p.starts_with("/api/v1/sessions/{id}") => {
            let id = if own {
                ctx.session(&user.id, &user.name, &ctx.a)?
            } else {
                ctx.session(&ctx.outsider_id, "outsider", &ctx.b)?
            };
            param(&mut path, "{id}", id);
        }
        p if p.starts_with("/api/v1/recordings/{id}") => {
            let session = if own {
                ctx.session(&user.id, &user.name, &ctx.a)?
            } else {
                ctx.session(&ctx.outsider_id, "outsider", &ctx.b)?
            };
            param(&mut path, "{id}", ctx.recording(&session)?);
        }
        "/api/v1/tokens/{id}" => {
            let owner = if own { &user.client } else { &ctx.outsider };
            param(
                &mut path,
                "{id}",
                Ctx::id(&owner.post("/api/v1/tokens", &json!({ "name": "t" }))?),
            );
        }
        "/api/v1/users/{id}/keys" => param(
            &mut path,
            "{id}",
            if own {
                user.id.clone()
            } else {
                ctx.admin_id.clone()
            },
        ),
        "/api/v1/users/{id}/keys/{key}" => {
            let owner = if own { &user.id } else { &ctx.admin_id };
            param(&mut path, "{id}", owner.clone());
            param(&mut path, "{key}", ctx.key(owner)?);
        }
        "/api/v1/users/{id}" => param(
            &mut path,
            "{id}",
            if own {
                user.id.clone()
            } else {
                ctx.admin_id.clone()
            },
        ),
        "/api/v1/roles/{name}" => {
            let name = ctx.unique("custom-role");
            ctx.admin.post(
                "/api/v1/roles",
                &json!({ "name": name, "permissions": ["VIEW_SESSIONS"] }),
            )?;
            param(&mut path, "{name}", name);
        }
        "/api/v1/downloads/ipconnect/{file}" => param(
            &mut path,
            "{file}",
            format!(
                "cpam-connect-{}-{}",
                std::env::consts::OS,
                std::env::consts::ARCH
            ),
        ),
        "/api/v1/checkouts/{id}" => {
            let id = if own {
                ctx.checkout(&user.id, &user.name, &ctx.a)?
            } else {
                ctx.checkout(&ctx.outsider_id, "outsider", &ctx.b)?
            };
            param(&mut path, "{id}", id);
        }
        "/api/v1/users/{id}/master-password" => {
            // The user sets one with their login password; a manager clears it.
            user.client.expect(
                "PUT",
                "/api/v1/me/master-password",
                Some(&json!({ "current": PASSWORD, "new": "matrix-master-1" })),
                204,
            )?;
            param(&mut path, "{id}", user.id.clone());
        }
        "/ui/{*path}" => param(&mut path, "{*path}", "customers".into()),
        "/assets/{*path}" => param(&mut path, "{*path}", "app.js".into()),
        p => assert!(
            !p.contains('{'),
            "no fixture for the parameter of {} {p}",
            route.method
        ),
    }
    let body = match (route.method, route.path) {
        (_, _) if route.request.is_none() => None,
        // Login runs through WebClient::login in run_case.
        ("POST", "/api/v1/auth/login") => None,
        ("POST", "/api/v1/tokens") => Some(json!({ "name": "matrix" })),
        ("POST", "/api/v1/customers") => Some(json!({ "name": ctx.unique("new-co") })),
        ("POST", "/api/v1/customers/{id}/gatekeepers") => {
            Some(json!({ "name": ctx.unique("new-gk") }))
        }
        ("POST", "/api/v1/gatekeepers/{id}/registration-code") => Some(json!({ "ttl_minutes": 5 })),
        ("POST", "/api/v1/gatekeepers/{id}/services") => Some(
            json!({ "name": ctx.unique("new-svc"), "kind": "desktop-sharing", "host": "10.0.0.9" }),
        ),
        ("POST", "/api/v1/users") => {
            Some(json!({ "name": ctx.unique("new-user"), "roles": ["Vendor"] }))
        }
        ("PATCH", "/api/v1/users/{id}") => Some(json!({ "ip_connect_mode": "legacy" })),
        ("POST", "/api/v1/roles") => {
            Some(json!({ "name": ctx.unique("new-role"), "permissions": ["VIEW_SESSIONS"] }))
        }
        ("PUT", "/api/v1/roles/{name}") => {
            Some(json!({ "permissions": ["VIEW_SESSIONS", "VERIFY_AUDIT_LOG"] }))
        }
        ("POST", "/api/v1/grants") => {
            Some(json!({ "user": "outsider", "service_id": ctx.service(&customer)?, "hours": 1 }))
        }
        ("PUT", "/api/v1/settings") => Some(json!({ "ip_connect_mode": "driver" })),
        ("PUT", "/api/v1/services/{id}/file-policy") => {
            Some(json!({ "prefixes": ["/data/in"], "blocked_extensions": ["exe"] }))
        }
        ("POST", "/api/v1/sessions/{id}/terminate") => Some(json!({ "reason": "matrix" })),
        ("POST", "/api/v1/checkouts") => {
            Some(json!({ "service_id": ctx.credential(&user.name)?, "duration_secs": 600 }))
        }
        ("PUT", "/api/v1/me/master-password") => {
            Some(json!({ "current": PASSWORD, "new": "matrix-master-2" }))
        }
        (m, p) => panic!("no request body fixture for {m} {p}"),
    };
    Ok((path, body))
}

/// Listings show own objects and hide foreign ones unless the role sees all customers.
fn check_listing(ctx: &Ctx, route: &Route, user: &RoleUser, body: &str) -> anyhow::Result<()> {
    let all = user.has(Permission::ACCESS_ALL_CUSTOMERS);
    let (own, foreign, own_visible, foreign_visible) = match route.path {
        "/api/v1/customers" => (ctx.a.clone(), ctx.b.clone(), true, all),
        "/api/v1/gatekeepers" => (ctx.gatekeeper(&ctx.a)?, ctx.gatekeeper(&ctx.b)?, true, all),
        "/api/v1/grants" => (ctx.grant(&ctx.a)?, ctx.grant(&ctx.b)?, true, all),
        "/api/v1/sessions" => (
            ctx.session(&user.id, &user.name, &ctx.a)?,
            ctx.session(&ctx.outsider_id, "outsider", &ctx.b)?,
            true,
            all && user.has(Permission::VIEW_SESSIONS),
        ),
        _ => return Ok(()),
    };
    // Objects made after the first request: ask again.
    let body = if route.path == "/api/v1/customers" {
        body.to_string()
    } else {
        user.client.send("GET", route.path, None)?.body
    };
    assert_eq!(
        body.contains(&own),
        own_visible,
        "{} as {}: own {own} in {body}",
        route.path,
        user.role
    );
    assert_eq!(
        body.contains(&foreign),
        foreign_visible,
        "{} as {}: foreign {foreign} in {body}",
        route.path,
        user.role
    );
    Ok(())
}

#[test]
fn rbac_matrix_from_the_policy_table() -> anyhow::Result<()> {
    rbac_matrix(WebOptions::default())
}

/// The same matrix against a console served below `/pam`.
#[test]
fn rbac_matrix_under_a_base_path() -> anyhow::Result<()> {
    rbac_matrix(WebOptions {
        base_path: Some("/pam".into()),
        ..WebOptions::default()
    })
}

fn rbac_matrix(opts: WebOptions) -> anyhow::Result<()> {
    let web = WebServer::start(opts)?;
    let admin = web.admin()?;
    let a = Ctx::id(&admin.post("/api/v1/customers", &json!({ "name": "own-co" }))?);
    let b = Ctx::id(&admin.post("/api/v1/customers", &json!({ "name": "foreign-co" }))?);
    let roles: BTreeMap<String, BTreeSet<Permission>> = admin
        .get("/api/v1/roles")?
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let perms = r["permissions"].as_array().into_iter().flatten();
            let perms = perms.filter_map(|p| p.as_str()?.parse().ok()).collect();
            (r["name"].as_str().unwrap_or_default().to_string(), perms)
        })
        .collect();
    let new_user = |name: &str,
                    role: &str,
                    customer: &str|
     -> anyhow::Result<(String, WebClient)> {
        let body =
            json!({ "name": name, "password": PASSWORD, "roles": [role], "customers": [customer] });
        let id = Ctx::id(&admin.post("/api/v1/users", &body)?);
        let mut c = web.client()?;
        c.login(name, PASSWORD)?
            .expect(200, &format!("login {name}"))?;
        Ok((id, c))
    };
    let (outsider_id, outsider) = new_user("outsider", "Vendor", &b)?;
    let mut users = Vec::new();
    for (i, role) in ROLES.iter().enumerate() {
        let name = format!("role-user-{i}");
        let (id, client) = new_user(&name, role, &a)?;
        let perms = roles.get(*role).cloned().unwrap_or_default();
        assert!(!perms.is_empty(), "built-in role {role} missing");
        users.push(RoleUser {
            role,
            id,
            name,
            perms,
            client,
        });
    }
    let admin_id = admin.get("/api/v1/auth/me")?["user"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let store = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(SqlStore::connect(&format!(
            "sqlite://{}",
            web.data_dir.join("cpam.db").display()
        )))?;
    let ctx = Ctx {
        web,
        admin,
        store,
        a,
        b,
        outsider,
        outsider_id,
        admin_id,
        n: Default::default(),
    };

    let mut cases = 0;
    let mut tally: BTreeMap<u16, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for route in POLICY {
        let objects: &[bool] = if route.path.contains('{') && route.scope != Scope::None {
            &[true, false]
        } else {
            &[true]
        };
        for user in &users {
            for &own in objects {
                cases += 1;
                let want = expected(route, user, own);
                let status = run_case(&ctx, route, user, own)?;
                *tally.entry(status.0).or_default() += 1;
                let ok = match want {
                    Expect::Status(s) => status.0 == s,
                    Expect::NotRefused => !matches!(status.0, 401 | 403),
                };
                if !ok {
                    failures.push(format!(
                        "{} {} as {} ({}): expected {want:?}, got {} {}",
                        route.method,
                        route.path,
                        user.role,
                        if own { "own" } else { "foreign" },
                        status.0,
                        status.1
                    ));
                } else if status.0 == 200
                    && route.scope == Scope::Filtered
                    && route.response != Body::EventStream
                {
                    check_listing(&ctx, route, user, &status.1)?;
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cases} cases failed:\n{}\n{}",
        failures.len(),
        failures.join("\n"),
        ctx.web.logs()
    );
    assert!(cases > 4 * POLICY.len(), "{cases} cases");
    eprintln!("{cases} cases by status: {tally:?}");
    for status in [200, 201, 204, 403, 404, 409] {
        assert!(
            tally.contains_key(&status),
            "no case answered {status}: {tally:?}"
        );
    }
    Ok(())
}

fn run_case(ctx: &Ctx, route: &Route, user: &RoleUser, own: bool) -> anyhow::Result<(u16, String)> {
    let (path, body) = prepare(ctx, route, user, own)?;
    match (route.method, route.path) {
        ("POST", "/api/v1/auth/login") => {
            let r = ctx.web.client()?.login(&user.name, PASSWORD)?;
            Ok((r.status, r.body))
        }
        ("POST", "/api/v1/auth/logout") => {
            let mut c = ctx.web.client()?;
            c.login(&user.name, PASSWORD)?
                .expect(200, "login for logout")?;
            let r = c.send("POST", &path, None)?;
            Ok((r.status, r.body))
        }
        _ if route.response == Body::EventStream => {
            // Only the status: the stream itself never ends.
            let resp = user.client.request("GET", &path, None, true)?.send()?;
            Ok((resp.status().as_u16(), String::new()))
        }
        _ => {
            let r = user.client.send(route.method, &path, body.as_ref())?;
            Ok((r.status, r.body))
        }
    }
}

#[test]
fn public_routes_answer_without_a_session() -> anyhow::Result<()> {
    let web = WebServer::start(WebOptions::default())?;
    let anon = web.client()?;
    for route in POLICY {
        let path = route.path.replace("{*path}", "x");
        let r = anon.send(route.method, &path, None)?;
        match route.access {
            Access::Public => assert!(
                !matches!(r.status, 401 | 403) || route.path == "/api/v1/auth/login",
                "{path}: {r:?}"
            ),
            _ => assert_eq!(
                (r.status, r.code().as_deref()),
                (401, Some("unauthenticated")),
                "{} {path}",
                route.method
            ),
        }
    }
    Ok(())
}
