//! `init` and `run`.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use cpam_core::audit::StoreAuditSink;
use cpam_core::record::RecordingStorage;
use cpam_core::server::{ConsoleOptions, DataDir, Server, ServerOptions, Source};
use cpam_core::tunnel::keys;

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
        cpam_core::outln!("administrator: {name} (System Administrator)");
    }
    let key = data.host_key()?;
    cpam_core::outln!("initialized {}", dir.display());
    cpam_core::outln!(
        "server key fingerprint: {}",
        keys::fingerprint(key.public_key())
    );
    cpam_core::outln!(
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
        rpassword::prompt_password(format!("password for {name}: "))
            .context("cannot read the administrator password from the terminal")?
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

/// Opens the data dir (recovering what this node left behind) and starts
/// the hub and the control socket.
pub async fn start(
    dir: &Path,
    node: NodeArgs,
    listen: Option<&str>,
    recordings: RecordingStorage,
) -> anyhow::Result<Server> {
    let options = ServerOptions {
        node_id: node.node_id,
        peer_address: node.peer_address,
        recordings,
        ..ServerOptions::default()
    };
    let server = Server::open(&Source::DataDir(dir.to_path_buf()), options).await?;
    server.start(listen).await?;
    Ok(server)
}

/// Who this node is among the nodes sharing one database.
#[derive(Debug, Default, clap::Args)]
pub struct NodeArgs {
    /// This server's name among nodes sharing one database (default:
    /// `node_id` of config.json).
    #[arg(long)]
    pub node_id: Option<String>,
    /// Where the other nodes reach this one's SSH port (`HOST:PORT`), for
    /// the peer relay (default: the address it listens on).
    #[arg(long)]
    pub peer_address: Option<String>,
}

pub async fn run(
    dir: &Path,
    node: NodeArgs,
    listen: Option<&str>,
    console: ConsoleOptions,
    recordings: RecordingStorage,
) -> anyhow::Result<ExitCode> {
    match cpam_core::server::raise_open_files_limit() {
        Ok(limit) => tracing::debug!(limit, "open files"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-files limit"),
    }
    // Bad console options are refused before the node registers and
    // recovers anything.
    if console.insecure_http {
        let configured = DataDir::open(dir)?.config.web_listen;
        let web = console.listen.as_deref().unwrap_or(&configured);
        if let Ok(addr) = web.parse::<std::net::SocketAddr>()
            && !addr.ip().is_loopback()
        {
            anyhow::bail!(
                "plain HTTP (--web-insecure-http) is served only on a loopback address, not {addr}"
            );
        }
    }
    let server = start(dir, node, listen, recordings).await?;
    let addr = server.local_addr().context("the server stopped at once")?;
    cpam_core::outln!("cpam-server listening on {addr}");
    cpam_core::outln!("cpam-server node {}", server.node_id());
    let url = server.start_console(&console).await?;
    cpam_core::outln!("cpam-server console on {url}");
    cpam_core::signal::shutdown().await;
    tracing::info!("shutting down");
    server.stop(Duration::from_secs(3)).await;
    Ok(ExitCode::SUCCESS)
}
