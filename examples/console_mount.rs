//! The cpam web console and REST API mounted under `/pam/` in your own axum
//! app, next to your own routes.
//!
//! `cpam_core::web` (cargo feature `web`) is the console `cpam-server`
//! serves, as a library part: [`web::router`] gives an axum `Router` that
//! keeps every route below its base path (`/pam/`: the shell, `assets/`,
//! `api/v1/`, the event stream), so you `merge` it into your app and your
//! own routes and fallback stay yours. The pieces:
//!
//! 1. The server parts the console works on: a store (here SQLite in
//!    memory; `SqlStore::connect("postgres://…")` for PostgreSQL), the audit
//!    sink, the session engine and the SSH hub gatekeepers and Connection
//!    Managers connect to.
//! 2. [`web::AppState`]: those parts plus the console's options (cookie
//!    flags, timeouts, the SSH address written into downloaded profiles).
//! 3. [`web::WebConfig`]: the base path and the authenticator. The default,
//!    [`web::BuiltIn`], is the console's own sign-in (user name and password,
//!    then a session cookie whose `Path` is the base path; or an API token).
//!    Implement [`web::Authenticator`] to sign your users in with your own
//!    identity provider instead (see its documentation for one that trusts a
//!    header your sign-in proxy sets).
//! 4. [`web::housekeeping`]: the tasks a console needs beside its router
//!    (expired console sessions are swept, metrics follow engine events).
//!
//! Serve the app with `into_make_service_with_connect_info::<SocketAddr>()`
//! so the login throttle and the audit log see client addresses. Serve it
//! over HTTPS in production (`web::tls` and `web::Listener` do that for
//! `cpam-server`; cookies are marked `Secure` with `secure_cookies`).
//!
//! Run it with `cargo run -p cpam-examples --example console_mount`: it
//! starts, walks through a few requests and exits. With
//! `-- --serve 127.0.0.1:8080` it keeps serving; open
//! `http://127.0.0.1:8080/pam/` and sign in as `admin` with the password
//! from `CPAM_ADMIN_PASSWORD` (or the one it prints).
//!
//! A real deployment starts from a data dir (`cpam-server init`) instead:
//! `-- --data-dir DIR [--web-listen IP:PORT]` opens it with
//! `cpam_core::server::Server` (store, engine, hub, control socket, node
//! recovery), builds the console's state with `AppState::for_server`, and
//! serves your app over HTTPS with the data dir's certificate
//! (`web::serve_app`). The browser test drives that mode.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use cpam_core::admin::Admin;
use cpam_core::audit::{AuditSink, StoreAuditSink};
use cpam_core::server::{Server, ServerOptions, Source};
use cpam_core::session::SessionEngine;
use cpam_core::store::{SqlStore, Store};
use cpam_core::tunnel::{self, hub::Hub, keys};
use cpam_core::web::{self, WebConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("--data-dir") {
        return serve_data_dir().await;
    }
    let serve_at = match std::env::args().nth(1).as_deref() {
        Some("--serve") => Some(
            std::env::args()
                .nth(2)
                .ok_or_else(|| anyhow::anyhow!("--serve needs an address such as 127.0.0.1:8080"))?
                .parse::<SocketAddr>()?,
        ),
        Some(other) => anyhow::bail!("unknown argument `{other}` (only --serve ADDR)"),
        None => None,
    };

    // 1. The server parts: store, audit, engine, and the SSH hub.
    let store: Arc<dyn Store> = Arc::new(SqlStore::connect("sqlite::memory:").await?);
    let audit: Arc<dyn AuditSink> = Arc::new(StoreAuditSink::new(store.clone()));
    let admin = Admin::new(store.clone(), audit.clone(), "example");
    admin.ensure_builtin_roles().await?;
    let password = std::env::var("CPAM_ADMIN_PASSWORD").unwrap_or_else(|_| {
        let p = cpam_core::model::random_token(12);
        println!("administrator password: {p}");
        p
    });
    admin
        .add_user(
            "admin",
            Some(cpam_core::Secret::new(password.clone())),
            &[],
            &["System Administrator".into()],
        )
        .await?;
    let engine = SessionEngine::new(store.clone(), audit.clone());
    let host_key = keys::generate()?;
    let options = web::WebOptions {
        secure_cookies: false, // plain HTTP on loopback in this example
        idle_timeout: Duration::from_secs(30 * 60),
        absolute_timeout: Duration::from_secs(12 * 3600),
        ssh_address: String::new(), // set below, once the hub listens
        server_key: keys::public_openssh(host_key.public_key()),
        server_fingerprint: keys::fingerprint(host_key.public_key()),
        downloads_dir: std::env::current_dir()?,
    };
    let hub = Hub::new(engine.clone(), host_key);
    let ssh = tunnel::bind_listener("127.0.0.1:0".parse()?)?;
    let ssh_addr = ssh.local_addr()?;
    tokio::spawn({
        let hub = hub.clone();
        async move { hub.serve(ssh).await }
    });
    println!("hub listening on {ssh_addr}");

    // 2. The console's state, and 3. its mount: below /pam/, built-in sign-in.
    let state = web::AppState::new(
        store,
        audit,
        engine,
        web::WebOptions {
            ssh_address: ssh_addr.to_string(),
            ..options
        },
        Arc::new(AtomicBool::new(true)),
    );
    let console = web::router(state.clone(), WebConfig::default().with_base_path("/pam/")?);
    let _housekeeping = web::housekeeping(state); // 4.

    let app = product_app(console);

    let listener =
        tokio::net::TcpListener::bind(serve_at.unwrap_or(([127, 0, 0, 1], 0).into())).await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, app).await
    });
    println!("console on http://{addr}/pam/");
    if serve_at.is_some() {
        tokio::signal::ctrl_c().await?;
        return Ok(());
    }

    // A short tour through the mount, as a browser would take it.
    let (status, _, body) = http(addr, "GET", "/", &[], "").await?;
    println!("GET / -> {status} {body}");
    let (status, head, _) = http(addr, "GET", "/pam", &[], "").await?;
    println!("GET /pam -> {status} to {}", header(&head, "location"));
    let (status, _, body) = http(addr, "GET", "/pam/", &[], "").await?;
    let base = body.contains("<base href=\"/pam/\">");
    println!("GET /pam/ -> {status}, the shell with <base href=\"/pam/\">: {base}");
    let login = format!(r#"{{"username":"admin","password":"{password}"}}"#);
    let (status, head, _) = http(
        addr,
        "POST",
        "/pam/api/v1/auth/login",
        &[
            ("content-type", "application/json"),
            ("x-requested-with", "cpam"),
        ],
        &login,
    )
    .await?;
    let cookie = header(&head, "set-cookie");
    let path = cookie
        .split("; ")
        .find(|p| p.starts_with("Path="))
        .unwrap_or("no Path");
    println!("POST /pam/api/v1/auth/login -> {status}, session cookie {path}");
    let session = cookie.split(';').next().unwrap_or_default();
    let (status, _, body) = http(
        addr,
        "GET",
        "/pam/api/v1/customers",
        &[("cookie", session)],
        "",
    )
    .await?;
    println!("GET /pam/api/v1/customers -> {status} {body}");
    let (status, _, body) = http(addr, "GET", "/api/v1/customers", &[], "").await?;
    println!("GET /api/v1/customers -> {status} {body}");
    server.abort();
    Ok(())
}

/// Your app: its own pages, the console merged in, its own fallback.
fn product_app(console: Router) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { "the product's home page; the access console is at /pam/" }),
        )
        .route("/status", get(|| async { "ok" }))
        .merge(console)
        .fallback(|| async {
            (
                axum::http::StatusCode::NOT_FOUND,
                "not a page of the product",
            )
        })
}

/// `--data-dir DIR [--web-listen IP:PORT]`: the server a data dir describes,
/// with the console under `/pam/` of the product's HTTPS app.
async fn serve_data_dir() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let dir = value("--data-dir").ok_or_else(|| anyhow::anyhow!("--data-dir needs a path"))?;
    let source = Source::DataDir(dir.into());
    let server = Server::open(&source, ServerOptions::default()).await?;
    let ssh_addr = server.start(None).await?;
    println!("hub listening on {ssh_addr}");
    let data = server
        .data_dir()
        .ok_or_else(|| anyhow::anyhow!("opened without a data dir"))?;
    let listen = value("--web-listen").unwrap_or_else(|| data.config.web_listen.clone());
    let tls = web::tls::server_config(&data.web_cert_path(), &data.web_key_path())?;
    let listener = web::Listener::bind(listen.parse()?, Some(tls)).await?;
    let addr = listener.local_addr()?;
    let state = web::AppState::for_server(&server, true, std::env::current_dir()?)?;
    let console = web::router(state.clone(), WebConfig::default().with_base_path("/pam/")?);
    server.adopt(web::serve_app(listener, product_app(console)))?;
    for task in web::housekeeping(state) {
        server.adopt(task)?;
    }
    println!("console on https://{addr}/pam/");
    cpam_core::signal::shutdown().await;
    server.stop(Duration::from_secs(3)).await;
    Ok(())
}

/// One HTTP/1.1 request on a fresh connection: status, head, body.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> anyhow::Result<(u16, String, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).await?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).await?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no HTTP status in `{head}`"))?;
    Ok((status, head.to_string(), body.to_string()))
}

/// A header's value from a response head ("" when absent).
fn header<'a>(head: &'a str, name: &str) -> &'a str {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .unwrap_or("")
}
