//! Serving the console's connections: HTTP/1 with a deadline for each
//! request's headers and a cap on open connections, so slow or idle
//! clients cannot hold the console.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;

use super::Listener;

/// How long a client may take to send a request's headers (the first
/// request and every later one on a kept-alive connection).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Open console connections (after TLS); more are closed at once.
pub const MAX_CONNECTIONS: usize = 1024;

/// Serves `app` (an integrator's app with [`super::router`] merged in) on
/// `listener` until the task is aborted, with client addresses for the
/// login throttle and the audit log.
pub fn serve_app(listener: Listener, app: Router) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        match listener {
            Listener::Tls(mut l) => loop {
                let (io, peer) = axum::serve::Listener::accept(&mut l).await;
                connection(io, peer, &app, &slots);
            },
            Listener::Plain(mut l) => loop {
                let (io, peer) = axum::serve::Listener::accept(&mut l).await;
                let _ = io.set_nodelay(true);
                connection(io, peer, &app, &slots);
            },
        }
    })
}

fn connection<S>(io: S, peer: SocketAddr, app: &Router, slots: &Arc<Semaphore>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Ok(slot) = slots.clone().try_acquire_owned() else {
        tracing::warn!(%peer, "console connection refused: {MAX_CONNECTIONS} open");
        return;
    };
    let service = TowerToHyperService::new(app.clone().layer(axum::Extension(ConnectInfo(peer))));
    tokio::spawn(async move {
        let served = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades()
            .await;
        if let Err(error) = served {
            tracing::debug!(%peer, %error, "console connection ended");
        }
        drop(slot);
    });
}
