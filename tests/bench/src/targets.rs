//! The target servers every path ends at: an echo server and a byte sink,
//! which is also the byte source: a connection that opens with
//! [`SOURCE_REQUEST`] gets bytes without end instead (the stalled-reader
//! downloads), so every path reaches the source through its sink forward.
//!
//! Both run on their own tokio runtime, so the load generator and the
//! targets do not queue behind each other on one scheduler. Listeners use a
//! backlog of 4096 and accepted sockets get TCP_NODELAY.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::runtime::Runtime;

const BACKLOG: u32 = 4096;
/// The first bytes of a connection to the sink that asks for a download.
/// No upload starts with them (the bulk load writes 0x5a, probes `probe`).
pub const SOURCE_REQUEST: &[u8] = b"SOURCE\n";
/// What the source sends, 256 KiB at a time.
const SOURCE_BYTE: u8 = 0xa5;

/// The running targets; dropping this stops them.
#[derive(Debug)]
pub struct Targets {
    pub echo: SocketAddr,
    pub sink: SocketAddr,
    /// Bytes the sink has received since the last [`Targets::reset_sink`].
    sink_bytes: Arc<AtomicU64>,
    runtime: Option<Runtime>,
}

impl Targets {
    pub fn start() -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("bench-target")
            .enable_all()
            .build()
            .context("cannot build the target runtime")?;
        let sink_bytes = Arc::new(AtomicU64::new(0));
        let (echo, sink) = runtime.block_on(async {
            let echo = listen()?;
            let sink = listen()?;
            let echo_addr = echo.local_addr()?;
            let sink_addr = sink.local_addr()?;
            tokio::spawn(serve(echo, |s| Box::pin(echo_conn(s))));
            let counter = sink_bytes.clone();
            tokio::spawn(serve(sink, move |s| {
                Box::pin(sink_conn(s, counter.clone()))
            }));
            anyhow::Ok((echo_addr, sink_addr))
        })?;
        Ok(Self {
            echo,
            sink,
            sink_bytes,
            runtime: Some(runtime),
        })
    }

    pub fn reset_sink(&self) {
        self.sink_bytes.store(0, Ordering::SeqCst);
    }

    pub fn sink_received(&self) -> u64 {
        self.sink_bytes.load(Ordering::SeqCst)
    }
}

impl Drop for Targets {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn listen() -> Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    Ok(socket.listen(BACKLOG)?)
}

type ConnFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

async fn serve<F>(listener: TcpListener, handler: F)
where
    F: Fn(TcpStream) -> ConnFuture + Send + 'static,
{
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(handler(stream));
            }
            // Out of file descriptors and the like: back off, keep serving.
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
        }
    }
}

async fn echo_conn(mut stream: TcpStream) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn sink_conn(mut stream: TcpStream, counter: Arc<AtomicU64>) {
    let mut buf = vec![0u8; 256 * 1024];
    // How much of SOURCE_REQUEST the connection has sent so far; `None`
    // once it sent something else (an upload: every byte counts).
    let mut request = Some(0usize);
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if let Some(matched) = request {
            let take = n.min(SOURCE_REQUEST.len() - matched);
            if buf[..take] == SOURCE_REQUEST[matched..matched + take] {
                if matched + take == SOURCE_REQUEST.len() {
                    return source(stream).await;
                }
                request = Some(matched + take);
                continue;
            }
            request = None;
            counter.fetch_add(matched as u64, Ordering::Relaxed);
        }
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Sends bytes until the reader goes away.
async fn source(mut stream: TcpStream) {
    let chunk = vec![SOURCE_BYTE; 256 * 1024];
    while stream.write_all(&chunk).await.is_ok() {}
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream as StdTcpStream;
    use std::time::{Duration, Instant};

    use super::{SOURCE_BYTE, SOURCE_REQUEST, Targets};

    fn wait_received(t: &Targets, n: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(5);
        while t.sink_received() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        t.sink_received()
    }

    #[test]
    fn the_sink_serves_a_download_when_asked_and_counts_every_other_byte() {
        let t = Targets::start().unwrap();
        // The request split over two writes still asks for a download.
        let mut s = StdTcpStream::connect(t.sink).unwrap();
        s.set_nodelay(true).unwrap();
        s.write_all(&SOURCE_REQUEST[..3]).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        s.write_all(&SOURCE_REQUEST[3..]).unwrap();
        let mut got = vec![0u8; 1 << 20];
        s.read_exact(&mut got).unwrap();
        assert!(got.iter().all(|b| *b == SOURCE_BYTE));
        assert_eq!(t.sink_received(), 0, "a download is no upload");

        // An upload that starts like the request counts all its bytes.
        let mut up = StdTcpStream::connect(t.sink).unwrap();
        up.write_all(&SOURCE_REQUEST[..2]).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        up.write_all(b"xyz").unwrap();
        assert_eq!(wait_received(&t, 5), 5);
        t.reset_sink();
        let mut probe = StdTcpStream::connect(t.sink).unwrap();
        probe.write_all(b"probe").unwrap();
        assert_eq!(wait_received(&t, 5), 5);
    }
}
