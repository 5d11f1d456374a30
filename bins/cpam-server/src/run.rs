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

pub async fn init(dir: &Path, listen: &str, database: Option<&str>) -> anyhow::Result<ExitCode> {
    let data = DataDir::init(dir, listen, database).await?;
    let key = data.host_key()?;
    println!("initialized {}", dir.display());
    println!(
        "server key fingerprint: {}",
        keys::fingerprint(key.public_key())
    );
    Ok(ExitCode::SUCCESS)
}

/// Everything a running server holds.
pub struct Running {
    pub hub: Arc<Hub>,
    pub addr: std::net::SocketAddr,
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
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
    let serve = {
        let hub = hub.clone();
        tokio::spawn(async move {
            if let Err(error) = hub.serve(listener).await {
                tracing::error!(%error, "hub stopped");
            }
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
    })
}

pub async fn run(dir: &Path, listen: Option<&str>) -> anyhow::Result<ExitCode> {
    let data = DataDir::open(dir)?;
    let running = start(&data, listen).await?;
    println!("cpam-server listening on {}", running.addr);
    cpam_core::signal::shutdown().await;
    tracing::info!("shutting down");
    running.hub.shutdown(Duration::from_secs(3)).await;
    for t in running.tasks {
        t.abort();
    }
    let _ = std::fs::remove_file(data.control_socket());
    Ok(ExitCode::SUCCESS)
}
