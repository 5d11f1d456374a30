//! The [`Dialer`] seam: how the server reaches a target, directly or through
//! the customer's gatekeeper.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use russh::ChannelOpenFailure;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{Error, ErrorKind, Result};
use crate::model::{GatekeeperId, Target};

/// How long a dial may take.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// What to dial.
#[derive(Debug, Clone)]
pub struct DialTarget {
    /// The gatekeeper to go through; `None` to dial directly.
    pub gatekeeper: Option<GatekeeperId>,
    pub target: Target,
    /// Who is asking, for the gatekeeper's logs (`ADDR:PORT` of the user's client).
    pub originator: (String, u32),
}

/// A plain byte stream, what protocols (IronRDP, SFTP) want.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// An established connection: the user's side of a session or a dialed
/// target.
///
/// Protocols that want a plain stream call [`Connection::into_stream`]; the
/// TCP splice keeps russh channels as they are, passing their `Bytes`
/// without a copy.
#[non_exhaustive]
pub enum Connection {
    /// Any byte stream (a TCP socket, a web socket adapter, a test duplex).
    Stream(Box<dyn Stream>),
    /// An SSH channel of the server hub.
    Channel(russh::Channel<russh::server::Msg>),
    /// An SSH channel this node opened on a link to another node (the peer
    /// relay).
    PeerChannel(russh::Channel<russh::client::Msg>),
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Connection::Stream(_) => f.write_str("Connection::Stream"),
            Connection::Channel(c) => f.debug_tuple("Connection::Channel").field(c).finish(),
            Connection::PeerChannel(c) => {
                f.debug_tuple("Connection::PeerChannel").field(c).finish()
            }
        }
    }
}

impl Connection {
    /// Wraps any stream.
    pub fn stream(stream: impl Stream) -> Self {
        Connection::Stream(Box::new(stream))
    }

    /// The connection as a plain byte stream.
    pub fn into_stream(self) -> Box<dyn Stream> {
        match self {
            Connection::Stream(s) => s,
            Connection::Channel(c) => Box::new(c.into_stream()),
            Connection::PeerChannel(c) => Box::new(c.into_stream()),
        }
    }

    /// Closes the connection without using it.
    pub async fn close(self) {
        match self {
            Connection::Stream(mut s) => {
                let _ = s.shutdown().await;
            }
            Connection::Channel(c) => {
                let _ = c.close().await;
            }
            Connection::PeerChannel(c) => {
                let _ = c.close().await;
            }
        }
    }
}

/// Reaches targets. Implementations must be cheap to call concurrently.
///
/// The caller chooses the dialer of each session ([`SessionEngine::run`](crate::session::SessionEngine::run)):
/// [`DirectDialer`], [`GatekeeperDialer`], or the integrator's own.
#[async_trait]
pub trait Dialer: Send + Sync + std::fmt::Debug {
    async fn dial(&self, target: &DialTarget) -> Result<Connection>;
}

/// Dials targets straight from this process.
#[derive(Debug, Default, Clone)]
pub struct DirectDialer;

#[async_trait]
impl Dialer for DirectDialer {
    async fn dial(&self, t: &DialTarget) -> Result<Connection> {
        let addr = t.target.to_string();
        let stream = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(&addr))
            .await
            .map_err(|_| Error::new(ErrorKind::Timeout, format!("dialing {addr} timed out")))?
            .map_err(|e| Error::from(e).context(&format!("cannot reach {addr}")))?;
        stream.set_nodelay(true)?;
        Ok(Connection::stream(stream))
    }
}

/// Dials through connected gatekeepers: the server opens a `direct-tcpip`
/// channel to the gatekeeper, which dials inside the customer network.
#[derive(Debug, Default)]
pub struct GatekeeperDialer {
    links: Mutex<HashMap<GatekeeperId, (u64, russh::server::Handle)>>,
}

impl GatekeeperDialer {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the SSH link `conn` of gatekeeper `id`, replacing an older one,
    /// which is returned so the caller can close it.
    pub fn attach(
        &self,
        id: &GatekeeperId,
        conn: u64,
        handle: russh::server::Handle,
    ) -> Option<russh::server::Handle> {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        links.insert(id.clone(), (conn, handle)).map(|(_, h)| h)
    }

    /// Removes the link if it is still `conn`; returns whether it was.
    pub fn detach(&self, id: &GatekeeperId, conn: u64) -> bool {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        if links.get(id).is_some_and(|(c, _)| *c == conn) {
            links.remove(id);
            true
        } else {
            false
        }
    }

    /// Whether gatekeeper `id` holds a link now.
    pub fn is_online(&self, id: &GatekeeperId) -> bool {
        self.links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(id)
    }

    /// Disconnects every link, telling the gatekeepers `why`; returns how
    /// many there were. Each gatekeeper reconnects on its own.
    pub async fn disconnect_all(&self, why: &str) -> usize {
        let handles: Vec<_> = self
            .links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|(_, h)| h.clone())
            .collect();
        for h in &handles {
            let _ = h
                .disconnect(russh::Disconnect::ByApplication, why.into(), "en".into())
                .await;
        }
        handles.len()
    }

    fn handle(&self, id: &GatekeeperId) -> Option<russh::server::Handle> {
        self.links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .map(|(_, h)| h.clone())
    }
}

#[async_trait]
impl Dialer for GatekeeperDialer {
    async fn dial(&self, t: &DialTarget) -> Result<Connection> {
        let Some(gk) = &t.gatekeeper else {
            return DirectDialer.dial(t).await;
        };
        let handle = self.handle(gk).ok_or_else(|| {
            Error::new(
                ErrorKind::TunnelUnavailable,
                format!("gatekeeper {gk} is offline"),
            )
        })?;
        let open = handle.channel_open_direct_tcpip(
            t.target.host.clone(),
            u32::from(t.target.port),
            t.originator.0.clone(),
            t.originator.1,
        );
        match tokio::time::timeout(DIAL_TIMEOUT, open).await {
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!("gatekeeper {gk} did not answer in time"),
            )),
            Ok(Ok(channel)) => Ok(Connection::Channel(channel)),
            Ok(Err(russh::Error::ChannelOpenFailure(reason))) => {
                Err(refusal(gk, &t.target, reason))
            }
            Ok(Err(e)) => Err(Error::from(e).context(&format!("gatekeeper {gk}"))),
        }
    }
}

pub(crate) fn refusal(gk: &GatekeeperId, target: &Target, reason: ChannelOpenFailure) -> Error {
    match reason {
        ChannelOpenFailure::AdministrativelyProhibited => Error::denied(format!(
            "gatekeeper {gk} refused {target}: not in its allow-list, or disabled by the customer"
        )),
        ChannelOpenFailure::ConnectFailed => Error::new(
            ErrorKind::TunnelUnavailable,
            format!("gatekeeper {gk} cannot reach {target}"),
        ),
        other => Error::new(
            ErrorKind::TunnelUnavailable,
            format!("gatekeeper {gk} refused {target}: {other:?}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(port: u16, gatekeeper: Option<&str>) -> DialTarget {
        DialTarget {
            gatekeeper: gatekeeper.map(|g| GatekeeperId(g.into())),
            target: Target {
                host: "127.0.0.1".into(),
                port,
            },
            originator: ("127.0.0.1".into(), 1),
        }
    }

    #[tokio::test]
    async fn direct_dialer_connects_and_names_a_refusal() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let conn = DirectDialer.dial(&target(port, None)).await.expect("dial");
        let (mut accepted, _) = listener.accept().await.expect("accept");
        let mut stream = conn.into_stream();
        stream.write_all(b"hello").await.expect("write");
        let mut got = [0u8; 5];
        tokio::io::AsyncReadExt::read_exact(&mut accepted, &mut got)
            .await
            .expect("read");
        assert_eq!(&got, b"hello");
        drop(accepted);
        drop(listener);
        let e = DirectDialer
            .dial(&target(port, None))
            .await
            .expect_err("closed port");
        assert!(e.message().contains(&format!("127.0.0.1:{port}")), "{e}");
    }

    #[tokio::test]
    async fn gatekeeper_dialer_reports_an_offline_gatekeeper() {
        let d = GatekeeperDialer::new();
        assert!(!d.is_online(&GatekeeperId("gk_x".into())));
        let e = d
            .dial(&target(22, Some("gk_x")))
            .await
            .expect_err("offline");
        assert_eq!(e.kind(), ErrorKind::TunnelUnavailable);
        assert!(e.message().contains("gk_x is offline"), "{e}");
    }
}
