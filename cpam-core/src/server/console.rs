//! The web console next to a running server (feature `web`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Server;
use crate::error::{Error, ErrorKind, Result};
use crate::tunnel::keys;
use crate::web;

/// How [`Server::start_console`] serves the console.
#[derive(Debug, Clone, Default)]
pub struct ConsoleOptions {
    /// `IP:PORT`; default: `web_listen` of the data dir's `config.json`.
    pub listen: Option<String>,
    /// Plain HTTP instead of HTTPS (only on a loopback address).
    pub insecure_http: bool,
    /// Serve the console below this path (default `/`).
    pub base_path: Option<String>,
    /// Where the IP Connect downloads are (default: the directory of the
    /// running program).
    pub downloads_dir: Option<PathBuf>,
}

impl Server {
    /// Serves the web console and REST API next to the started hub, with
    /// the data dir's certificate (HTTPS) and settings, until the server
    /// stops. Returns the console's URL.
    pub async fn start_console(&self, options: &ConsoleOptions) -> Result<String> {
        let data = self
            .data_dir()
            .ok_or_else(|| Error::invalid("the console needs a server opened from a data dir"))?;
        let hub_addr = self.local_addr().ok_or_else(|| {
            Error::new(ErrorKind::Conflict, "start the server before its console")
        })?;
        let listen = options.listen.as_deref().unwrap_or(&data.config.web_listen);
        let addr: std::net::SocketAddr = listen
            .parse()
            .map_err(|_| Error::invalid(format!("console address `{listen}` must be IP:PORT")))?;
        let config = match &options.base_path {
            Some(p) => web::WebConfig::default().with_base_path(p)?,
            None => web::WebConfig::default(),
        };
        let tls = if options.insecure_http {
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
        let downloads_dir = options.downloads_dir.clone().unwrap_or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf))
                .unwrap_or_default()
        });
        let key = data.host_key()?;
        let web_options = web::WebOptions {
            secure_cookies: !options.insecure_http,
            idle_timeout: Duration::from_secs(data.config.web_idle_timeout_secs.max(1)),
            absolute_timeout: Duration::from_secs(12 * 3600),
            ssh_address: data
                .config
                .public_address
                .clone()
                .unwrap_or_else(|| hub_addr.to_string()),
            server_key: keys::public_openssh(key.public_key()),
            server_fingerprint: keys::fingerprint(key.public_key()),
            downloads_dir,
        };
        let engine = self.engine().clone();
        // One lockout for both password front doors.
        let state = web::AppState::with_throttle(
            engine.store().clone(),
            engine.audit().clone(),
            engine,
            web_options,
            self.ready().clone(),
            self.hub().throttle().clone(),
        );
        for task in web::serve(listener, state, config) {
            self.adopt(task)?;
        }
        Ok(url)
    }
}
