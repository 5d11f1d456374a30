//! `init` and `run`.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use cpam_core::audit::StoreAuditSink;
use cpam_core::model::{AuditCategory, AuditEvent, Timestamp};
use cpam_core::server::DataDir;
use cpam_core::session::SessionEngine;
use cpam_core::tunnel::{self, hub::Hub, keys};
use cpam_core::web;
use std::sync::atomic::{AtomicBool, Ordering};

/// What `init` sets up besides the SSH side.
#[derive(Debug, Default)]
pub struct InitWeb {
    pub web_listen: Option<String>,
    /// Extra names and addresses for the console certificate.
    pub web_hosts: Vec<String>,
    /// The first administrator (System Administrator).
    pub admin_user: Option<String>,
    pub admin_password_stdin: bool,
}

pub async fn init(
    dir: &Path,
    listen: &str,
    database: Option<&str>,
    web: InitWeb,
) -> anyhow::Result<ExitCode> {
    let admin_password = match &web.admin_user {
        None => None,
        Some(name) => Some(admin_password(name, web.admin_password_stdin)?),
    };
    if let Some(l) = &web.web_listen {
        l.parse::<std::net::SocketAddr>()
            .with_context(|| format!("--web-listen `{l}` must be IP:PORT"))?;
    }
    let mut data = DataDir::init(dir, listen, database).await?;
    if let Some(l) = web.web_listen {
        data.config.web_listen = l;
        data.save_config()?;
    }
    cpam_core::web::tls::generate(&data.web_cert_path(), &data.web_key_path(), &web.web_hosts)?;
    if let (Some(name), Some(password)) = (&web.admin_user, admin_password) {
        let store = data.store().await?;
        let admin = cpam_core::admin::Admin::new(
            store.clone(),
            Arc::new(StoreAuditSink::new(store)),
            "init",
        );
        admin
            .add_user(
                name,
                Some(password),
                &[],
                &["System Administrator".to_string()],
            )
            .await?;
        println!("administrator: {name} (System Administrator)");
    }
    let key = data.host_key()?;
    println!("initialized {}", dir.display());
    println!(
        "server key fingerprint: {}",
        keys::fingerprint(key.public_key())
    );
    println!(
        "console certificate: {} (console on https://{})",
        data.web_cert_path().display(),
        data.config.web_listen
    );
    Ok(ExitCode::SUCCESS)
}

/// The first administrator's password: `CPAM_ADMIN_PASSWORD`, or one line on stdin.
fn admin_password(name: &str, stdin: bool) -> anyhow::Result<cpam_core::Secret<String>> {
    use std::io::IsTerminal as _;
    let read_line = || -> anyhow::Result<String> {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("cannot read the administrator password from stdin")?;
        Ok(line.trim_end_matches(['\n', '\r']).to_string())
    };
    let password = if stdin {
        read_line()?
    } else if let Ok(p) = std::env::var("CPAM_ADMIN_PASSWORD") {
        p
    } else if std::io::stdin().is_terminal() {
        // Prompt without echo (stty on the controlling terminal).
        eprint!("password for {name}: ");
        let stty = |arg: &str| {
            std::process::Command::new("stty")
                .arg(arg)
                .stdin(std::process::Stdio::inherit())
                .status()
                .is_ok_and(|s| s.success())
        };
        let hidden = stty("-echo");
        let line = read_line();
        if hidden {
            stty("echo");
        }
        eprintln!();
        line?
    } else {
        anyhow::bail!(
            "--admin-user {name} needs a password: set CPAM_ADMIN_PASSWORD or pass --admin-password-stdin"
        )
    };
    if password.is_empty() {
        anyhow::bail!("the administrator password is empty");
    }
    Ok(cpam_core::Secret::new(password))
}

/// Everything a running server holds.
pub struct Running {
    pub hub: Arc<Hub>,
    pub addr: std::net::SocketAddr,
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Set while the hub accepts connections (`/readyz`).
    pub hub_ready: Arc<AtomicBool>,
}

/// How the console is served.
#[derive(Debug, Default)]
pub struct WebArgs {
    /// Overrides `web_listen` of config.json.
    pub listen: Option<String>,
    /// Plain HTTP (loopback only).
    pub insecure_http: bool,
    /// Serve the console below this path (`/pam`) instead of at `/`.
    pub base_path: Option<String>,
}

/// Starts the console next to the hub; returns its URL.
pub async fn start_web(
    data: &DataDir,
    running: &mut Running,
    args: &WebArgs,
) -> anyhow::Result<String> {
    let listen = args.listen.as_deref().unwrap_or(&data.config.web_listen);
    let config = match &args.base_path {
        Some(p) => web::WebConfig::default().with_base_path(p)?,
        None => web::WebConfig::default(),
    };
    let addr: std::net::SocketAddr = listen
        .parse()
        .with_context(|| format!("console address `{listen}` must be IP:PORT"))?;
    let tls = if args.insecure_http {
        None
    } else {
        Some(web::tls::server_config(
            &data.web_cert_path(),
            &data.web_key_path(),
        )?)
    };
    let listener = web::Listener::bind(addr, tls).await?;
    let local = listener.local_addr()?;
    let url = match config.base_path() {
        "/" => format!("{}://{local}", listener.scheme()),
        _ => format!("{}://{local}{}", listener.scheme(), config.base_href()),
    };
    let engine = running.hub.engine().clone();
    let downloads_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let options = web::WebOptions {
        secure_cookies: !args.insecure_http,
        idle_timeout: Duration::from_secs(data.config.web_idle_timeout_secs.max(1)),
        absolute_timeout: Duration::from_secs(12 * 3600),
        ssh_address: data
            .config
            .public_address
            .clone()
            .unwrap_or_else(|| running.addr.to_string()),
        server_key: keys::public_openssh(data.host_key()?.public_key()),
        server_fingerprint: keys::fingerprint(data.host_key()?.public_key()),
        downloads_dir,
    };
    let state = web::AppState::new(
        engine.store().clone(),
        engine.audit().clone(),
        engine,
        options,
        running.hub_ready.clone(),
    );
    running.tasks.extend(web::serve(listener, state, config));
    Ok(url)
}

/// Opens the data dir, starts the hub and the control socket.
pub async fn start(data: &DataDir, listen: Option<&str>) -> anyhow::Result<Running> {
    let store = data.store().await?;
    let audit = Arc::new(StoreAuditSink::new(store.clone()));
    cpam_core::admin::Admin::new(store.clone(), audit.clone(), "system")
        .ensure_builtin_roles()
        .await?;
    // A server that stopped without saying so left its gatekeepers marked
    // online; they reconnect (and are marked online again) within seconds.
    for gk in store.list_gatekeepers(None).await? {
        if gk.online {
            store
                .set_gatekeeper_state(&gk.id, false, gk.customer_disabled, Timestamp::now())
                .await?;
        }
    }
    let closed = store
        .close_orphan_sessions(
            Timestamp::now(),
            "server stopped while the session was live",
        )
        .await?;
    let engine = SessionEngine::new(store.clone(), audit);
    let key = data.host_key()?;
    let hub = Hub::new(engine.clone(), key);
    let listen = listen.unwrap_or(&data.config.listen);
    let addr: std::net::SocketAddr = listen
        .parse()
        .with_context(|| format!("listen address `{listen}` must be IP:PORT"))?;
    let listener = tunnel::bind_listener(addr)?;
    let addr = listener.local_addr()?;
    engine
        .record(AuditEvent {
            at: Timestamp::now(),
            category: AuditCategory::SystemMessages,
            action: "server.start".into(),
            actor: "system".into(),
            customer_id: None,
            session_id: None,
            detail: serde_json::json!({ "listen": addr.to_string(), "orphan_sessions_closed": closed }),
        })
        .await;
    let hub_ready = Arc::new(AtomicBool::new(true));
    let serve = {
        let hub = hub.clone();
        let ready = hub_ready.clone();
        tokio::spawn(async move {
            if let Err(error) = hub.serve(listener).await {
                tracing::error!(%error, "hub stopped");
            }
            ready.store(false, Ordering::Relaxed);
        })
    };
    let control = {
        let path = data.control_socket();
        let engine = engine.clone();
        tokio::spawn(async move {
            if let Err(error) = cpam_core::server::serve_control(&path, engine).await {
                tracing::error!(%error, "control socket stopped");
            }
        })
    };
    Ok(Running {
        hub,
        addr,
        tasks: vec![serve, control],
        hub_ready,
    })
}

pub async fn run(dir: &Path, listen: Option<&str>, web_args: WebArgs) -> anyhow::Result<ExitCode> {
    let data = DataDir::open(dir)?;
    let mut running = start(&data, listen).await?;
    println!("cpam-server listening on {}", running.addr);
    let url = start_web(&data, &mut running, &web_args).await?;
    println!("cpam-server console on {url}");
    cpam_core::signal::shutdown().await;
    tracing::info!("shutting down");
    running.hub.shutdown(Duration::from_secs(3)).await;
    for t in running.tasks {
        t.abort();
    }
    let _ = std::fs::remove_file(data.control_socket());
    Ok(ExitCode::SUCCESS)
}
