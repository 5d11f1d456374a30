//! The target servers every path ends at: an echo server and a byte sink.
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
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                counter.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    }
}
