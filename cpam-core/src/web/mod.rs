//! The web console and REST API (`/api/v1`) as an axum router (feature
//! `web`), served by `cpam-server run` or mounted by an integrator under a
//! base path of their own app with [`router`].
//!
//! Every route is registered through [`ApiRoutes::add`], which refuses a
//! route that has no entry in the policy table ([`rbac::POLICY`]) and wraps
//! the route in the policy middleware ([`auth::policy`]) with that entry;
//! anything unlisted is a 404 (the console shell routes of [`ui`] included).
//! Who the caller is comes from the mount's [`Authenticator`] ([`BuiltIn`]:
//! session cookie or bearer token). Handlers are thin: they resolve objects
//! through `crate::access` (a foreign object is a 404) and act through
//! `crate::admin::Admin`, which audits.
//!
//! Nothing assumes the console sits at `/`: routes are relative to the base
//! path, the session cookie's `Path` is the base path, and the shell tells
//! the scripts where they are (`<base href>`), so every URL they build
//! (the API, the event stream, downloads, page links) starts there.

pub mod api;
pub mod auth;
pub mod authenticator;
pub mod error;
pub mod events;
pub mod metrics;
pub mod openapi;
pub mod rbac;
pub mod serve;
pub mod tls;
pub mod ui;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::admin::Admin;
use crate::audit::AuditSink;
use crate::session::SessionEngine;
use crate::store::Store;
use axum::Extension;
use axum::Router;
use axum::extract::Request;
use axum::handler::Handler;
use axum::http::{HeaderValue, header};
use axum::middleware::{Next, from_fn};
use axum::routing::{MethodFilter, on};

pub use self::auth::{Caller, Via};
pub use self::authenticator::{AuthRequest, Authenticator, BuiltIn, Identity};
use self::error::ApiError;
pub use self::serve::serve_app;

/// Where and how the console is mounted (see [`router`]).
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// The path the console lives under in the integrator's app: `/` (the
    /// whole host, as `cpam-server run` serves it) or e.g. `/pam`.
    /// Normalized by [`WebConfig::with_base_path`].
    base_path: String,
    /// Who signs callers in; [`BuiltIn`] by default.
    pub authenticator: Arc<dyn Authenticator>,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            base_path: "/".to_string(),
            authenticator: Arc::new(BuiltIn),
        }
    }
}

impl WebConfig {
    /// Mounts the console under `path` (`/pam`, `/pam/` and `pam` are the
    /// same). Refused: anything but plain path segments of letters, digits,
    /// `-`, `_`, `.` and `~` (no `..`, no query, no `{`).
    pub fn with_base_path(mut self, path: &str) -> crate::Result<Self> {
        let trimmed = path.trim_matches('/');
        if trimmed.is_empty() {
            self.base_path = "/".to_string();
            return Ok(self);
        }
        for segment in trimmed.split('/') {
            let plain = segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~'));
            if segment.is_empty() || segment == "." || segment == ".." || !plain {
                return Err(crate::Error::invalid(format!(
                    "console base path `{path}`: segment `{segment}` must be letters, digits, `-`, `_`, `.` or `~`"
                )));
            }
        }
        self.base_path = format!("/{trimmed}");
        Ok(self)
    }

    /// Signs callers in with `authenticator` instead of [`BuiltIn`].
    pub fn with_authenticator(mut self, authenticator: Arc<dyn Authenticator>) -> Self {
        self.authenticator = authenticator;
        self
    }

    /// `/` or the base path without a trailing slash (`/pam`).
    pub fn base_path(&self) -> &str {
        &self.base_path
    }

    /// The base path with a trailing slash (`/`, `/pam/`): the shell's
    /// `<base href>`.
    pub fn base_href(&self) -> String {
        if self.base_path == "/" {
            "/".to_string()
        } else {
            format!("{}/", self.base_path)
        }
    }
}

/// What the web server needs to know besides the store and the engine.
#[derive(Debug, Clone)]
pub struct WebOptions {
    /// Mark the cookie `Secure` (served over TLS).
    pub secure_cookies: bool,
    pub idle_timeout: Duration,
    pub absolute_timeout: Duration,
    /// The SSH address written into downloaded Connection Manager profiles.
    pub ssh_address: String,
    /// The server's SSH host key (OpenSSH public form) for profiles.
    pub server_key: String,
    /// The fingerprint of that key, shown with registration codes so the
    /// gatekeeper pins it on first contact.
    pub server_fingerprint: String,
    /// Where the `cpam-connect` executable is looked for (IP Connect downloads).
    pub downloads_dir: PathBuf,
}

/// Shared state of every handler: the server's parts and the mount
/// ([`WebConfig`]) the request came through.
#[derive(Debug, Clone)]
pub struct AppState {
    shared: Arc<Shared>,
    mount: Arc<WebConfig>,
}

/// See [`AppState`].
#[derive(Debug)]
pub struct Shared {
    pub store: Arc<dyn Store>,
    pub audit: Arc<dyn AuditSink>,
    pub engine: Arc<SessionEngine>,
    pub options: WebOptions,
    /// Failed logins; share it with the SSH hub so both count together.
    pub throttle: Arc<crate::throttle::Throttle>,
    pub metrics: metrics::Metrics,
    /// Whether the SSH hub is listening (for `/readyz`).
    pub hub_ready: Arc<AtomicBool>,
    /// Where session recordings are read (see [`AppState::set_recordings`]).
    recordings: std::sync::OnceLock<Arc<dyn crate::record::RecordingStore>>,
    /// The live view for watchers (see [`AppState::set_live`]).
    live: std::sync::OnceLock<Arc<crate::record::LiveHub>>,
    /// Live views of sessions other nodes run (see [`AppState::set_peers`]).
    peers: std::sync::OnceLock<Arc<crate::tunnel::PeerDialer>>,
    /// Runs browser terminals (see [`AppState::set_terminal`]).
    terminal: std::sync::OnceLock<crate::proxy::ssh::BrowserTerminal>,
    /// Runs browser desktops (see [`AppState::set_desktop`]).
    #[cfg(feature = "rdp")]
    desktop: std::sync::OnceLock<crate::proxy::rdp::BrowserDesktop>,
    /// Signs and keeps the audit checkpoints (see [`AppState::set_anchor`]).
    anchor: std::sync::OnceLock<Arc<crate::audit::Anchor>>,
    /// RDP recordings' players kept for replay (seeking without decoding
    /// the recording again).
    #[cfg(feature = "rdp")]
    rdp_players: crate::record::RdpPlayers,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.shared
    }
}

impl AppState {
    pub fn new(
        store: Arc<dyn Store>,
        audit: Arc<dyn AuditSink>,
        engine: Arc<SessionEngine>,
        options: WebOptions,
        hub_ready: Arc<AtomicBool>,
    ) -> Self {
        let throttle = Arc::default();
        Self::with_throttle(store, audit, engine, options, hub_ready, throttle)
    }

    /// [`AppState::new`] counting failed logins in `throttle`, e.g. the one
    /// the SSH hub counts password failures in.
    pub fn with_throttle(
        store: Arc<dyn Store>,
        audit: Arc<dyn AuditSink>,
        engine: Arc<SessionEngine>,
        options: WebOptions,
        hub_ready: Arc<AtomicBool>,
        throttle: Arc<crate::throttle::Throttle>,
    ) -> Self {
        AppState {
            shared: Arc::new(Shared {
                store,
                audit,
                engine,
                options,
                throttle,
                metrics: metrics::Metrics::default(),
                hub_ready,
                recordings: std::sync::OnceLock::new(),
                live: std::sync::OnceLock::new(),
                peers: std::sync::OnceLock::new(),
                terminal: std::sync::OnceLock::new(),
                #[cfg(feature = "rdp")]
                desktop: std::sync::OnceLock::new(),
                anchor: std::sync::OnceLock::new(),
                #[cfg(feature = "rdp")]
                rdp_players: crate::record::RdpPlayers::default(),
            }),
            mount: Arc::new(WebConfig::default()),
        }
    }

    /// The console's state for a started [`Server`](crate::server::Server)
    /// opened from a data dir: its store, audit sink and engine, the console
    /// settings of `config.json`, and the hub's key and address (or
    /// `public_address`) for downloaded profiles. `downloads_dir` is where
    /// the `cpam-connect` program for IP Connect downloads is looked for.
    pub fn for_server(
        server: &crate::server::Server,
        secure_cookies: bool,
        downloads_dir: PathBuf,
    ) -> crate::Result<AppState> {
        let data = server.data_dir().ok_or_else(|| {
            crate::Error::invalid("the console needs a server opened from a data dir")
        })?;
        let hub_addr = server.local_addr().ok_or_else(|| {
            crate::Error::new(
                crate::ErrorKind::Conflict,
                "start the server before its console",
            )
        })?;
        let key = data.host_key()?;
        let options = WebOptions {
            secure_cookies,
            idle_timeout: Duration::from_secs(data.config.web_idle_timeout_secs.max(1)),
            absolute_timeout: Duration::from_secs(12 * 3600),
            ssh_address: data
                .config
                .public_address
                .clone()
                .unwrap_or_else(|| hub_addr.to_string()),
            server_key: crate::tunnel::keys::public_openssh(key.public_key()),
            server_fingerprint: crate::tunnel::keys::fingerprint(key.public_key()),
            downloads_dir,
        };
        let engine = server.engine().clone();
        // One lockout for both password front doors: the console's sign-in
        // and the hub's SSH password logins.
        let state = AppState::with_throttle(
            engine.store().clone(),
            engine.audit().clone(),
            engine,
            options,
            server.ready().clone(),
            server.hub().throttle().clone(),
        );
        if let Some(recordings) = server.recordings() {
            state.set_recordings(recordings.clone());
        }
        state.set_live(server.live().clone());
        state.set_peers(server.peers().clone());
        state.set_terminal(server.browser_terminal().clone());
        #[cfg(feature = "rdp")]
        state.set_desktop(server.browser_desktop().clone());
        if let Some(anchor) = server.anchor() {
            state.set_anchor(anchor.clone());
        }
        Ok(state)
    }

    /// Serves session recordings from `store` (`/api/v1/recordings/...`);
    /// set once (later calls change nothing). Without it a session has no
    /// recordings.
    pub fn set_recordings(&self, store: Arc<dyn crate::record::RecordingStore>) {
        let _ = self.shared.recordings.set(store);
    }

    /// Checks the audit chain against `anchor`'s last checkpoint and lists
    /// its checkpoints (`/api/v1/audit/checkpoints`); set once. Without it
    /// the chain is verified on its own and there are no checkpoints.
    pub fn set_anchor(&self, anchor: Arc<crate::audit::Anchor>) {
        let _ = self.shared.anchor.set(anchor);
    }

    /// The audit anchor, if set.
    pub fn anchor(&self) -> Option<Arc<crate::audit::Anchor>> {
        self.shared.anchor.get().cloned()
    }

    /// The RDP players kept for replay.
    #[cfg(feature = "rdp")]
    pub fn rdp_players(&self) -> &crate::record::RdpPlayers {
        &self.shared.rdp_players
    }

    /// The recording store, if set.
    pub fn recordings(&self) -> Option<Arc<dyn crate::record::RecordingStore>> {
        self.shared.recordings.get().cloned()
    }

    /// Lets watchers see live sessions through `hub` (`/api/v1/sessions/{id}/watch`);
    /// set once. Without it no session can be watched.
    pub fn set_live(&self, hub: Arc<crate::record::LiveHub>) {
        let _ = self.shared.live.set(hub);
    }

    /// The live view, if set.
    pub fn live(&self) -> Option<Arc<crate::record::LiveHub>> {
        self.shared.live.get().cloned()
    }

    /// Lets watchers see sessions other nodes of the cluster run, over
    /// `peers`; set once. Without it only this node's sessions can be
    /// watched.
    pub fn set_peers(&self, peers: Arc<crate::tunnel::PeerDialer>) {
        let _ = self.shared.peers.set(peers);
    }

    /// The links to other nodes, if set.
    pub fn peers(&self) -> Option<Arc<crate::tunnel::PeerDialer>> {
        self.shared.peers.get().cloned()
    }

    /// Runs browser terminals with `terminal`
    /// (`/api/v1/services/{id}/terminal`); set once. Without it the route
    /// answers 409.
    pub fn set_terminal(&self, terminal: crate::proxy::ssh::BrowserTerminal) {
        let _ = self.shared.terminal.set(terminal);
    }

    /// The browser terminal runner, if set.
    pub fn terminal(&self) -> Option<crate::proxy::ssh::BrowserTerminal> {
        self.shared.terminal.get().cloned()
    }

    /// Runs browser desktops with `desktop`
    /// (`/api/v1/services/{id}/desktop`); set once. Without it the route
    /// answers 409.
    #[cfg(feature = "rdp")]
    pub fn set_desktop(&self, desktop: crate::proxy::rdp::BrowserDesktop) {
        let _ = self.shared.desktop.set(desktop);
    }

    /// The browser desktop runner, if set.
    #[cfg(feature = "rdp")]
    pub fn desktop(&self) -> Option<crate::proxy::rdp::BrowserDesktop> {
        self.shared.desktop.get().cloned()
    }

    /// The same server parts behind another mount.
    pub fn mounted(&self, config: WebConfig) -> AppState {
        AppState {
            shared: self.shared.clone(),
            mount: Arc::new(config),
        }
    }

    /// How this console is mounted.
    pub fn mount(&self) -> &WebConfig {
        &self.mount
    }

    /// Who signs callers in on this mount.
    pub fn authenticator(&self) -> &dyn Authenticator {
        self.mount.authenticator.as_ref()
    }

    /// The session cookie's `Path`: the base path.
    pub fn cookie_path(&self) -> &str {
        self.mount.base_path()
    }

    /// An [`Admin`] acting for `caller`: their name goes into the audit
    /// log and their privileges cap what they may hand out.
    pub fn admin(&self, caller: &Caller) -> Admin {
        Admin::for_principal(
            self.store.clone(),
            self.audit.clone(),
            caller.principal.clone(),
        )
    }

    /// Whether the hub is listening.
    pub fn hub_is_ready(&self) -> bool {
        self.hub_ready.load(Ordering::Relaxed)
    }
}

/// The router's routes as registered, each checked against the policy table.
#[derive(Debug, Default)]
pub struct ApiRoutes {
    router: Router<AppState>,
    registered: Vec<(&'static str, &'static str)>,
}

impl ApiRoutes {
    /// Registers `handler` for `method` on `path`.
    ///
    /// The route carries its policy table entry: the policy middleware
    /// applies it to every request of the route (a `HEAD` is its `GET`).
    ///
    /// # Panics
    /// When the policy table has no entry for the route: a route without a
    /// policy cannot exist (the server refuses to start, tests fail).
    pub fn add<H, T>(mut self, method: &'static str, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let Some(entry) = rbac::lookup(method, path) else {
            panic!("route {method} {path} has no entry in the policy table (web/rbac.rs)");
        };
        let filter = match method {
            "GET" => MethodFilter::GET,
            "POST" => MethodFilter::POST,
            "PUT" => MethodFilter::PUT,
            "PATCH" => MethodFilter::PATCH,
            "DELETE" => MethodFilter::DELETE,
            other => panic!("unsupported method {other} for {path}"),
        };
        let guarded = on(filter, handler).route_layer(from_fn(move |req: Request, next: Next| {
            auth::policy(entry, req, next)
        }));
        self.router = self.router.route(path, guarded);
        self.registered.push((method, path));
        self
    }

    /// Adds routes that register themselves (the console shell).
    pub fn merge(mut self, routes: ApiRoutes) -> Self {
        self.router = self.router.merge(routes.router);
        self.registered.extend(routes.registered);
        self
    }

    /// `(method, path)` of every registered route.
    pub fn registered(&self) -> &[(&'static str, &'static str)] {
        &self.registered
    }
}

/// Every route of the web server: the API, operations, and the console shell.
pub fn routes() -> ApiRoutes {
    api::routes()
        .add("GET", "/healthz", metrics::healthz)
        .add("GET", "/readyz", metrics::readyz)
        .add("GET", "/metrics", metrics::metrics)
        .add("GET", "/api/v1/openapi.json", openapi::serve)
        .add("GET", "/api/v1/events", events::events)
        .merge(ui::routes())
}

/// The console and API as served at `/` with the built-in sign-in (what
/// `cpam-server run` serves).
pub fn app(state: AppState) -> Router {
    router(state, WebConfig::default())
}

/// The console and API mounted as `config` says, ready to merge into an
/// integrator's app (`Router::merge`): with a base path (`/pam`) every
/// route, the 404 answer for unknown paths and the security headers stay
/// below `/pam/`, `/pam` redirects there, and the app's own routes and
/// fallback are left alone. Serve the app with
/// `into_make_service_with_connect_info::<SocketAddr>()` so login throttling
/// and the audit log see client addresses.
pub fn router(state: AppState, config: WebConfig) -> Router {
    let (base, href) = (config.base_path().to_string(), config.base_href());
    let state = state.mounted(config);
    let console = routes()
        .router
        .fallback(fallback)
        .layer(from_fn(security_headers))
        .layer(Extension(state.clone()))
        .with_state(state);
    if base == "/" {
        return console;
    }
    // `/pam/...` is the console; `/pam` itself goes to `/pam/`, so relative
    // URLs resolve below the base path.
    let to_shell = axum::response::Redirect::permanent(&href);
    Router::new()
        .route(&base, axum::routing::get(move || async move { to_shell }))
        .nest(&href, console)
}

async fn fallback() -> ApiError {
    ApiError::not_found("no such route")
}

async fn security_headers(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let api = req.uri().path().starts_with("/api/");
    let hsts = req
        .extensions()
        .get::<AppState>()
        .is_some_and(|s| s.options.secure_cookies);
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k: header::HeaderName, v: &'static str| {
        h.entry(k).or_insert(HeaderValue::from_static(v));
    };
    // The replay player runs WebAssembly (`'wasm-unsafe-eval'` allows
    // compiling it, not `eval`). xterm.js and the player write `<style>`
    // elements and style attributes for the terminal's cell grid and
    // theme, so styles may be inline; scripts may not.
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
    );
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    if hsts {
        // Served over HTTPS: browsers refuse plain HTTP to this host for a year.
        set(h, header::STRICT_TRANSPORT_SECURITY, "max-age=31536000");
    }
    if api {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    r
}

/// Where the console listens and how.
#[derive(Debug)]
pub enum Listener {
    Tls(tls::TlsListener),
    Plain(tokio::net::TcpListener),
}

impl Listener {
    /// Binds `addr`: TLS with `config`, or plain HTTP when `config` is
    /// `None`, which is refused unless `addr` is loopback.
    pub async fn bind(
        addr: SocketAddr,
        config: Option<Arc<rustls::ServerConfig>>,
    ) -> crate::Result<Listener> {
        if config.is_none() && !addr.ip().is_loopback() {
            return Err(crate::Error::invalid(format!(
                "plain HTTP (--web-insecure-http) is served only on a loopback address, not {addr}"
            )));
        }
        let tcp = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            crate::Error::from(e).context(&format!("cannot listen for the console on {addr}"))
        })?;
        Ok(match config {
            Some(c) => Listener::Tls(tls::TlsListener::new(tcp, c)?),
            None => Listener::Plain(tcp),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            Listener::Tls(l) => axum::serve::Listener::local_addr(l),
            Listener::Plain(l) => l.local_addr(),
        }
    }

    /// `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        match self {
            Listener::Tls(_) => "https",
            Listener::Plain(_) => "http",
        }
    }
}

/// Serves the console as `config` mounts it until the returned tasks are
/// aborted: the HTTP server and the [`housekeeping`] tasks.
pub fn serve(
    listener: Listener,
    state: AppState,
    config: WebConfig,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = vec![serve::serve_app(listener, router(state.clone(), config))];
    tasks.extend(housekeeping(state));
    tasks
}

/// What a console needs running beside its router, for an app that serves
/// [`router`] itself: the sweeper of expired console sessions and the
/// metrics event feed. Abort the tasks to stop them.
pub fn housekeeping(state: AppState) -> Vec<tokio::task::JoinHandle<()>> {
    let sweeper = {
        let state = state.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                let now = crate::model::Timestamp::now();
                let idle_before = crate::model::Timestamp(
                    now.millis() - state.options.idle_timeout.as_millis() as i64,
                );
                if let Err(error) = state.store.purge_web_sessions(idle_before, now).await {
                    tracing::warn!(%error, "cannot purge expired console sessions");
                }
            }
        })
    };
    let feed = tokio::spawn(metrics::feed(state));
    vec![sweeper, feed]
}
