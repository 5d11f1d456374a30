//! HTTPS for the console: the certificate `init` generates (rcgen), or the
//! one configured, and a listener that completes TLS handshakes off the
//! accept loop so a slow client never stalls others.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::{Error, ErrorKind, Result};

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// TLS handshakes under way at once; a client past it is closed at once.
const MAX_HANDSHAKES: usize = 256;

/// Writes a self-signed certificate for `hosts` (plus localhost, 127.0.0.1
/// and ::1) to `cert` and its key to `key` (mode 0600).
pub fn generate(cert: &Path, key: &Path, hosts: &[String]) -> Result<()> {
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    for h in hosts {
        if !names.contains(h) {
            names.push(h.clone());
        }
    }
    let certified = rcgen::generate_simple_self_signed(names).map_err(|e| {
        Error::internal("cannot generate the console's TLS certificate").with_source(e)
    })?;
    std::fs::write(cert, certified.cert.pem())
        .map_err(|e| Error::from(e).context(&format!("cannot write {}", cert.display())))?;
    crate::tunnel::keys::write_private_file(key, certified.signing_key.serialize_pem().as_bytes())?;
    Ok(())
}

/// The rustls configuration serving `cert` (PEM chain) with `key` (PEM).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let bad = |what: String| {
        move |e: rustls::pki_types::pem::Error| {
            Error::new(ErrorKind::InvalidArgument, what).with_source(e)
        }
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(bad(format!("cannot read certificate {}", cert.display())))?
        .collect::<std::result::Result<_, _>>()
        .map_err(bad(format!(
            "{}: malformed PEM certificate",
            cert.display()
        )))?;
    if chain.is_empty() {
        return Err(Error::invalid(format!(
            "{}: no certificate found",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(bad(format!(
        "{}: no readable PEM private key",
        key.display()
    )))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::internal("TLS protocol versions").with_source(e))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            Error::invalid("the console certificate and key do not match").with_source(e)
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A listener handing out established TLS streams.
#[derive(Debug)]
pub struct TlsListener {
    streams: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accept_task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Accepts on `tcp` and completes handshakes with `config`.
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, streams) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(config);
        let accept_task = tokio::spawn(async move {
            let mut handshakes = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = tcp.accept() => {
                        let (stream, peer) = match accepted {
                            Ok(a) => a,
                            Err(error) => {
                                tracing::debug!(%error, "console accept failed");
                                tokio::time::sleep(Duration::from_millis(50)).await;
                                continue;
                            }
                        };
                        if handshakes.len() >= MAX_HANDSHAKES {
                            tracing::warn!(%peer, "console connection refused: {MAX_HANDSHAKES} TLS handshakes under way");
                            continue;
                        }
                        let _ = stream.set_nodelay(true);
                        let acceptor = acceptor.clone();
                        let tx = tx.clone();
                        handshakes.spawn(async move {
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(tls)) => {
                                    let _ = tx.send((tls, peer)).await;
                                }
                                Ok(Err(error)) => tracing::debug!(%error, %peer, "console TLS handshake failed"),
                                Err(_) => tracing::debug!(%peer, "console TLS handshake timed out"),
                            }
                        });
                    }
                    Some(_) = handshakes.join_next(), if !handshakes.is_empty() => {}
                }
            }
        });
        Ok(TlsListener {
            streams,
            local,
            accept_task,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.streams.recv().await {
            Some(s) => s,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
