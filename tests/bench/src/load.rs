//! The load generators: bulk transfer, first-byte latency and the
//! concurrency burst. Each one only knows a loopback address to hit.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::targets::Targets;

/// Value at percentile `p` (0..=100) of an already sorted slice.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let k = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted.get(k.min(sorted.len() - 1)).copied()
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// One echo round trip of `size` bytes on a fresh connection; used to check
/// that a path is up.
pub fn echo_probe(addr: SocketAddr, size: usize, timeout: Duration) -> Result<()> {
    let mut s = StdTcpStream::connect_timeout(&addr, timeout)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let msg = vec![b'p'; size];
    s.write_all(&msg)?;
    let mut got = vec![0u8; size];
    s.read_exact(&mut got)?;
    if got != msg {
        bail!("echo through {addr} returned different bytes");
    }
    Ok(())
}

/// Retries [`echo_probe`] until it works or `timeout` passes.
pub fn wait_echo(addr: SocketAddr, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match echo_probe(addr, 1024, Duration::from_secs(2)) {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(e.context(format!("no echo through {addr} within {timeout:?}")));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Sends a few bytes to the sink through `addr` and waits for them to land.
pub fn wait_sink(addr: SocketAddr, targets: &Targets, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    targets.reset_sink();
    loop {
        if let Ok(mut s) = StdTcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            let _ = s.write_all(b"probe");
            let until = Instant::now() + Duration::from_secs(2);
            while Instant::now() < until {
                if targets.sink_received() >= 5 {
                    targets.reset_sink();
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        if Instant::now() > deadline {
            bail!("bytes sent to {addr} never reached the sink within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Bulk {
    pub streams: usize,
    pub bytes: u64,
    pub seconds: f64,
    pub gbit_per_s: f64,
}

/// Writes `bytes` in total over `streams` parallel connections to `addr` and
/// times until the sink has received every byte.
pub async fn bulk(addr: SocketAddr, targets: &Targets, bytes: u64, streams: usize) -> Result<Bulk> {
    let streams = streams.max(1);
    targets.reset_sink();
    let timeout = Duration::from_secs(30) + Duration::from_secs_f64(bytes as f64 / 20e6);
    let chunk = Arc::new(vec![0x5au8; 256 * 1024]);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..streams {
        let share = bytes / streams as u64 + u64::from((i as u64) < bytes % streams as u64);
        let chunk = chunk.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            let mut left = share;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                s.write_all(&chunk[..n]).await?;
                left -= n as u64;
            }
            s.shutdown().await?;
            // Hold the socket until the sink has everything: some tunnels
            // drop buffered data when the client closes early.
            let mut b = [0u8; 1];
            let _ = s.read(&mut b).await;
            anyhow::Ok(())
        }));
    }
    let deadline = start + timeout;
    let result = loop {
        if targets.sink_received() >= bytes {
            break Ok(start.elapsed());
        }
        let mut failure = None;
        let mut i = 0;
        while i < tasks.len() {
            if !tasks[i].is_finished() {
                i += 1;
                continue;
            }
            match tasks.swap_remove(i).await {
                Ok(Err(e)) => failure = Some(e.context("bulk writer failed")),
                Err(e) => failure = Some(anyhow::anyhow!("bulk writer panicked: {e}")),
                Ok(Ok(())) => {}
            }
        }
        if let Some(e) = failure {
            break Err(e);
        }
        if Instant::now() > deadline {
            break Err(anyhow::anyhow!(
                "bulk transfer timed out after {timeout:?}: sink got {} of {bytes} bytes",
                targets.sink_received()
            ));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    for t in &tasks {
        t.abort();
    }
    let elapsed = result?.as_secs_f64();
    Ok(Bulk {
        streams,
        bytes,
        seconds: elapsed,
        gbit_per_s: bytes as f64 * 8.0 / elapsed / 1e9,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct FirstByte {
    pub samples: usize,
    pub failed: usize,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub min_ms: Option<f64>,
}

/// `samples` sequential new connections: connect, NODELAY, send 1 byte, read
/// the echo, close. Stops early after 20 failures.
pub fn first_byte(addr: SocketAddr, samples: usize) -> FirstByte {
    let timeout = Duration::from_secs(5);
    let one = |addr: SocketAddr| -> Result<f64> {
        let t0 = Instant::now();
        let mut s = StdTcpStream::connect_timeout(&addr, timeout)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(timeout))?;
        s.write_all(b"x")?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b)?;
        let dt = t0.elapsed().as_secs_f64() * 1e3;
        if b != *b"x" {
            bail!("wrong byte echoed");
        }
        Ok(dt)
    };
    // A few warm-up connections that are not counted.
    for _ in 0..5 {
        let _ = one(addr);
    }
    let mut v = Vec::with_capacity(samples);
    let mut errors = 0;
    for _ in 0..samples {
        match one(addr) {
            Ok(ms) => v.push(ms),
            Err(_) => {
                errors += 1;
                if errors >= 20 {
                    break;
                }
            }
        }
    }
    // Samples never tried after the early stop count as failed too.
    let failed = samples - v.len();
    let v = sorted(v);
    FirstByte {
        samples: v.len(),
        failed,
        p50_ms: percentile(&v, 50.0),
        p99_ms: percentile(&v, 99.0),
        min_ms: v.first().copied(),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Concurrency {
    pub connections: usize,
    pub round_trips: usize,
    pub size: usize,
    pub completed: usize,
    pub failed: usize,
    pub total_s: f64,
    pub rtt_p50_ms: Option<f64>,
    pub rtt_p99_ms: Option<f64>,
    pub connect_p50_ms: Option<f64>,
    pub connect_p99_ms: Option<f64>,
    pub errors: Vec<String>,
}

struct ConnResult {
    connect_ms: Option<f64>,
    rtts_ms: Vec<f64>,
    error: Option<String>,
}

/// `connections` connections opened at once (spread round robin over
/// `addrs`), each doing `round_trips` sequential echo round trips of `size`
/// bytes. When every connection has
/// finished its round trips (or failed), `while_open` runs while the
/// successful ones are still open, then all are closed.
pub async fn concurrency<F: FnOnce()>(
    addrs: &[SocketAddr],
    connections: usize,
    round_trips: usize,
    size: usize,
    timeout: Duration,
    while_open: F,
) -> Concurrency {
    let (release_tx, release_rx) = watch::channel(false);
    let done = Arc::new(AtomicUsize::new(0));
    let (start_tx, start_rx) = watch::channel(false);
    let mut tasks = Vec::with_capacity(connections);
    for i in 0..connections {
        let addr = addrs[i % addrs.len()];
        let mut start_rx = start_rx.clone();
        let mut release_rx = release_rx.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let _ = start_rx.wait_for(|s| *s).await;
            let mut r = ConnResult {
                connect_ms: None,
                rtts_ms: Vec::with_capacity(round_trips),
                error: None,
            };
            let io = async {
                let t0 = Instant::now();
                let mut s = TcpStream::connect(addr).await.context("connect")?;
                r.connect_ms = Some(t0.elapsed().as_secs_f64() * 1e3);
                s.set_nodelay(true)?;
                let msg = vec![b'c'; size];
                let mut got = vec![0u8; size];
                for _ in 0..round_trips {
                    let t = Instant::now();
                    s.write_all(&msg).await.context("write")?;
                    s.read_exact(&mut got).await.context("read")?;
                    r.rtts_ms.push(t.elapsed().as_secs_f64() * 1e3);
                    if got != msg {
                        bail!("payload mismatch");
                    }
                }
                anyhow::Ok(s)
            };
            let stream = match tokio::time::timeout(timeout, io).await {
                Ok(Ok(s)) => Some(s),
                Ok(Err(e)) => {
                    r.error = Some(format!("{e:#}"));
                    None
                }
                Err(_) => {
                    r.error = Some(format!("timed out after {timeout:?}"));
                    None
                }
            };
            done.fetch_add(1, Ordering::SeqCst);
            if stream.is_some() {
                let _ = tokio::time::timeout(timeout, release_rx.wait_for(|s| *s)).await;
            }
            drop(stream);
            r
        }));
    }
    tokio::task::yield_now().await;
    let t0 = Instant::now();
    let _ = start_tx.send(true);
    let deadline = t0 + timeout + Duration::from_secs(1);
    while done.load(Ordering::SeqCst) < connections && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let total_s = t0.elapsed().as_secs_f64();
    while_open();
    let _ = release_tx.send(true);

    let mut rtts = Vec::new();
    let mut connects = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let mut completed = 0;
    for t in tasks {
        match t.await {
            Ok(r) => {
                if let Some(c) = r.connect_ms {
                    connects.push(c);
                }
                rtts.extend(r.rtts_ms);
                match r.error {
                    None => completed += 1,
                    Some(e) => errors.push(e),
                }
            }
            Err(e) => errors.push(format!("task failed: {e}")),
        }
    }
    let failed = connections - completed;
    errors.sort();
    errors.dedup();
    errors.truncate(5);
    let rtts = sorted(rtts);
    let connects = sorted(connects);
    Concurrency {
        connections,
        round_trips,
        size,
        completed,
        failed,
        total_s,
        rtt_p50_ms: percentile(&rtts, 50.0),
        rtt_p99_ms: percentile(&rtts, 99.0),
        connect_p50_ms: percentile(&connects, 50.0),
        connect_p99_ms: percentile(&connects, 99.0),
        errors,
    }
}
