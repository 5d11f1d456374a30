//! The console as a library part: `cpam_core::web::router` mounted under
//! `/pam` in an app with routes and a fallback of its own, signing callers
//! in with the built-in password + cookie sign-in or with an embedding
//! product's own [`Authenticator`] (here: one that trusts a header).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::routing::get;
use cpam_core::admin::Admin;
use cpam_core::audit::{AuditSink, StoreAuditSink};
use cpam_core::session::SessionEngine;
use cpam_core::store::{SqlStore, Store};
use cpam_core::web::error::{ApiError, ApiResult};
use cpam_core::web::{self, AppState, AuthRequest, Authenticator, Identity, WebConfig};
use reqwest::StatusCode;
use serde_json::{Value, json};

const PASSWORD: &str = "mount test password";

/// Trusts `X-Test-User` (as a product's sign-in proxy would set it) and
/// offers no password sign-in.
#[derive(Debug)]
struct HeaderAuth;

#[async_trait::async_trait]
impl Authenticator for HeaderAuth {
    async fn authenticate(
        &self,
        state: &AppState,
        request: &AuthRequest<'_>,
    ) -> ApiResult<Option<Identity>> {
        let Some(name) = request.headers.get("x-test-user") else {
            return Ok(None);
        };
        let name = name
            .to_str()
            .map_err(|_| ApiError::unauthenticated("X-Test-User is not text"))?;
        let user = state
            .store
            .user_by_name(name)
            .await?
            .ok_or_else(|| ApiError::unauthenticated(format!("no cpam user `{name}`")))?;
        Ok(Some(Identity::external(user, "test-header", None)))
    }

    fn password_login(&self) -> bool {
        false
    }
}

/// The console's state over an in-memory store with `alice` (System
/// Administrator) and `vera` (Vendor).
async fn state() -> anyhow::Result<AppState> {
    let store: Arc<dyn Store> = Arc::new(SqlStore::connect("sqlite::memory:").await?);
    let audit: Arc<dyn AuditSink> = Arc::new(StoreAuditSink::new(store.clone()));
    let admin = Admin::new(store.clone(), audit.clone(), "test");
    admin.ensure_builtin_roles().await?;
    for (name, role) in [("alice", "System Administrator"), ("vera", "Vendor")] {
        let password = Some(cpam_core::Secret::new(PASSWORD.to_string()));
        admin
            .add_user(name, password, &[], &[role.to_string()])
            .await?;
    }
    let engine = SessionEngine::new(store.clone(), audit.clone());
    let options = web::WebOptions {
        secure_cookies: false,
        idle_timeout: Duration::from_secs(600),
        absolute_timeout: Duration::from_secs(3600),
        ssh_address: "127.0.0.1:2222".into(),
        server_key: String::new(),
        server_fingerprint: String::new(),
        downloads_dir: PathBuf::new(),
    };
    Ok(AppState::new(
        store,
        audit,
        engine,
        options,
        Arc::new(AtomicBool::new(true)),
    ))
}

/// The embedding app: its own `/` and fallback, the console under `/pam`.
async fn serve(config: WebConfig) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let app = Router::new()
        .route("/", get(|| async { "the product's home" }))
        .merge(web::router(state().await?, config))
        .fallback(|| async { (StatusCode::NOT_FOUND, "the product's own 404") });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let task = tokio::spawn(async move {
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, task))
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

async fn call(
    req: reqwest::RequestBuilder,
    want: StatusCode,
    what: &str,
) -> anyhow::Result<(reqwest::header::HeaderMap, Value)> {
    let r = req.send().await.with_context(|| what.to_string())?;
    let status = r.status();
    let headers = r.headers().clone();
    let text = r.text().await?;
    anyhow::ensure!(status == want, "{what}: {status} (wanted {want}): {text}");
    Ok((
        headers,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

#[tokio::test]
async fn a_custom_authenticator_signs_callers_in_below_the_base_path() -> anyhow::Result<()> {
    let config = WebConfig::default()
        .with_base_path("/pam/")?
        .with_authenticator(Arc::new(HeaderAuth));
    let (url, _server) = serve(config).await?;
    let http = client()?;
    let as_user = |method: reqwest::Method, path: &str, user: &str| {
        http.request(method, format!("{url}/pam{path}"))
            .header("x-test-user", user)
    };

    // The product's own routes are untouched; the console stays below /pam/.
    let (_, home) = call(http.get(format!("{url}/")), StatusCode::OK, "home").await?;
    assert_eq!(home, "the product's home");
    let (_, other) = call(
        http.get(format!("{url}/api/v1/auth/me")),
        StatusCode::NOT_FOUND,
        "the API outside the base path",
    )
    .await?;
    assert_eq!(other, "the product's own 404");
    let (h, _) = call(
        http.get(format!("{url}/pam")),
        StatusCode::PERMANENT_REDIRECT,
        "/pam",
    )
    .await?;
    assert_eq!(h["location"], "/pam/");
    let (h, shell) = call(http.get(format!("{url}/pam/")), StatusCode::OK, "the shell").await?;
    let shell = shell.as_str().unwrap_or_default();
    assert!(shell.contains("<base href=\"/pam/\">"), "{shell}");
    assert!(h.contains_key("content-security-policy"), "{h:?}");
    call(
        http.get(format!("{url}/pam/assets/app.js")),
        StatusCode::OK,
        "a console script",
    )
    .await?;
    let (_, doc) = call(
        http.get(format!("{url}/pam/api/v1/openapi.json")),
        StatusCode::OK,
        "the OpenAPI document",
    )
    .await?;
    assert_eq!(
        doc["servers"],
        json!([{ "url": "/pam" }]),
        "{}",
        doc["servers"]
    );
    let (_, unknown) = call(
        http.get(format!("{url}/pam/api/v1/nothing-here")),
        StatusCode::NOT_FOUND,
        "an unknown console route",
    )
    .await?;
    assert_eq!(unknown["error"]["code"], "not_found", "{unknown}");

    // The header signs alice in: no password, no cookie, no CSRF token.
    let (_, me) = call(
        as_user(reqwest::Method::GET, "/api/v1/auth/me", "alice"),
        StatusCode::OK,
        "alice's /auth/me",
    )
    .await?;
    assert_eq!(me["user"]["name"], "alice", "{me}");
    assert_eq!(me["csrf_token"], Value::Null, "{me}");
    let (_, created) = call(
        as_user(reqwest::Method::POST, "/api/v1/customers", "alice").json(&json!({"name": "Acme"})),
        StatusCode::CREATED,
        "alice creates a customer",
    )
    .await?;
    assert_eq!(created["name"], "Acme", "{created}");

    // The policy table still decides what a signed-in caller may do.
    call(
        as_user(reqwest::Method::GET, "/api/v1/customers", "vera"),
        StatusCode::OK,
        "vera lists customers",
    )
    .await?;
    let (_, denied) = call(
        as_user(reqwest::Method::GET, "/api/v1/users", "vera"),
        StatusCode::FORBIDDEN,
        "vera lists users",
    )
    .await?;
    assert_eq!(denied["error"]["code"], "permission_denied", "{denied}");

    // Refusals: an unknown user, no header at all, and the password sign-in
    // this product does not offer.
    let (_, unknown) = call(
        as_user(reqwest::Method::GET, "/api/v1/auth/me", "mallory"),
        StatusCode::UNAUTHORIZED,
        "an unknown user",
    )
    .await?;
    assert!(
        unknown["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("mallory")),
        "{unknown}"
    );
    let (_, anonymous) = call(
        http.get(format!("{url}/pam/api/v1/customers")),
        StatusCode::UNAUTHORIZED,
        "no header",
    )
    .await?;
    assert_eq!(anonymous["error"]["code"], "unauthenticated");
    let (_, login) = call(
        http.post(format!("{url}/pam/api/v1/auth/login"))
            .header("x-requested-with", "cpam")
            .json(&json!({"username": "alice", "password": PASSWORD})),
        StatusCode::FORBIDDEN,
        "password sign-in",
    )
    .await?;
    assert_eq!(login["error"]["code"], "permission_denied", "{login}");
    Ok(())
}

#[tokio::test]
async fn the_built_in_sign_in_keeps_its_cookie_below_the_base_path() -> anyhow::Result<()> {
    let (url, _server) = serve(WebConfig::default().with_base_path("pam")?).await?;
    let http = client()?;
    let (h, me) = call(
        http.post(format!("{url}/pam/api/v1/auth/login"))
            .header("x-requested-with", "cpam")
            .json(&json!({"username": "alice", "password": PASSWORD})),
        StatusCode::OK,
        "password sign-in",
    )
    .await?;
    let set_cookie = h["set-cookie"].to_str()?;
    assert!(set_cookie.contains("; Path=/pam;"), "{set_cookie}");
    let cookie = set_cookie
        .split(';')
        .next()
        .context("Set-Cookie without a value")?
        .to_string();
    let csrf = me["csrf_token"].as_str().context("no CSRF token")?;
    let body = json!({"name": "Acme"});
    let (_, refused) = call(
        http.post(format!("{url}/pam/api/v1/customers"))
            .header("cookie", &cookie)
            .json(&body),
        StatusCode::FORBIDDEN,
        "a change without the CSRF token",
    )
    .await?;
    assert_eq!(refused["error"]["code"], "csrf_failed", "{refused}");
    call(
        http.post(format!("{url}/pam/api/v1/customers"))
            .header("cookie", &cookie)
            .header("x-csrf-token", csrf)
            .json(&body),
        StatusCode::CREATED,
        "a change with it",
    )
    .await?;
    Ok(())
}

#[test]
fn base_paths_are_normalized_and_checked() -> anyhow::Result<()> {
    for (given, base, href) in [
        ("/", "/", "/"),
        ("", "/", "/"),
        ("/pam", "/pam", "/pam/"),
        ("pam/", "/pam", "/pam/"),
        ("/tools/pam-1.0/", "/tools/pam-1.0", "/tools/pam-1.0/"),
    ] {
        let c = WebConfig::default().with_base_path(given)?;
        assert_eq!(
            (c.base_path(), c.base_href().as_str()),
            (base, href),
            "{given}"
        );
    }
    for bad in ["/pam/../etc", "/a//b", "/{id}", "/pam?x=1", "/p am"] {
        let e = WebConfig::default().with_base_path(bad).expect_err(bad);
        assert_eq!(e.kind(), cpam_core::ErrorKind::InvalidArgument, "{bad}");
        assert!(e.message().contains("base path"), "{bad}: {e}");
    }
    Ok(())
}
