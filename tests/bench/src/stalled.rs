//! The stalled reader: two downloads from the byte source through one
//! path (the same tunnel, the same vendor-side process); the bench stops
//! reading one of them and watches the other.
//!
//! The other download's throughput is measured alone (before the second
//! download starts and again after it is closed; the mean of the two
//! windows is "alone", so a drift of the machine's speed does not pass for
//! an effect), and for `--stalled-seconds` while the stopped one's
//! buffers are full. With
//! per-channel flow control it keeps its throughput and the server holds
//! at most one window of the stopped channel; a tunnel whose flow control
//! is per connection stops both. The figures: the other download's
//! throughput alone and during the stall, the server's RSS growth
//! (`cpam-server`; for OpenSSH the `sshd` listener and its sessions), and
//! whether the tunnel is still up afterwards (every process running, an
//! echo goes through, the stopped download goes on once read again).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use super::load::echo_probe;
use super::procs::rss_kib;
use super::targets::SOURCE_REQUEST;
use super::{CpuWindow, Plan, RunningPath};

/// What each download reads before it counts as under way.
const UNDER_WAY: u64 = 16 << 20;
/// Time after the stop for the stopped channel's buffers to fill; not
/// counted in the stalled window.
const SETTLE: Duration = Duration::from_secs(2);
/// How often the server's RSS is sampled during the stall.
const RSS_EVERY: Duration = Duration::from_millis(250);
/// What the stopped download must read once resumed to count as going on.
const RESUMED: u64 = 1 << 20;

/// The stalled-reader figures of one path.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stalled {
    /// Seconds the other download was measured alone (each of the two
    /// windows), and during the stall.
    pub alone_s: f64,
    pub stalled_s: f64,
    /// The mean of `alone_before_mib_s` and `alone_after_mib_s`.
    pub alone_mib_s: f64,
    pub alone_before_mib_s: f64,
    pub alone_after_mib_s: f64,
    pub during_mib_s: f64,
    /// `during_mib_s / alone_mib_s`.
    pub ratio: f64,
    /// Bytes the stopped download had read when it stopped.
    pub stopped_at_mib: f64,
    /// The processes counted as the server, with their RSS summed.
    pub server: Vec<String>,
    pub server_rss_before_kib: u64,
    pub server_rss_max_kib: u64,
    /// Every process of the path still running, and an echo through it
    /// worked, after the stall.
    pub tunnel_up: bool,
    /// The stopped download read again within 10 s once resumed.
    pub resumed: bool,
    pub resume_ms: Option<f64>,
    /// CPU of processes outside the bench and the path during the stall,
    /// in cores.
    pub foreign_cores: f64,
}

impl Stalled {
    pub fn server_rss_growth_mib(&self) -> f64 {
        self.server_rss_max_kib
            .saturating_sub(self.server_rss_before_kib) as f64
            / 1024.0
    }
}

/// One download from the byte source, read by a task of the bench while
/// `reading` is set.
struct Download {
    read: Arc<AtomicU64>,
    reading: Arc<AtomicBool>,
    task: JoinHandle<Result<()>>,
}

impl Download {
    async fn start(addr: SocketAddr) -> Result<Self> {
        let mut s = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        s.set_nodelay(true)?;
        s.write_all(SOURCE_REQUEST).await?;
        let read = Arc::new(AtomicU64::new(0));
        let reading = Arc::new(AtomicBool::new(true));
        let task = tokio::spawn({
            let (read, reading) = (read.clone(), reading.clone());
            async move {
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    if !reading.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                    let n = s.read(&mut buf).await.context("download")?;
                    if n == 0 {
                        bail!("the source closed the download");
                    }
                    read.fetch_add(n as u64, Ordering::SeqCst);
                }
            }
        });
        Ok(Self {
            read,
            reading,
            task,
        })
    }

    fn bytes(&self) -> u64 {
        self.read.load(Ordering::SeqCst)
    }

    fn set_reading(&self, on: bool) {
        self.reading.store(on, Ordering::SeqCst);
    }

    /// Waits until `total` bytes were read, at most `timeout`; returns the
    /// time it took.
    async fn wait_for(&self, total: u64, timeout: Duration) -> Result<Duration> {
        let t0 = Instant::now();
        while self.bytes() < total {
            if self.task.is_finished() {
                bail!("the download ended after {} bytes", self.bytes());
            }
            if t0.elapsed() > timeout {
                bail!(
                    "the download read {} of {total} bytes in {timeout:?}",
                    self.bytes()
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(t0.elapsed())
    }

    /// Bytes per second over `window`.
    async fn rate(&self, window: Duration) -> (f64, f64) {
        let (b0, t0) = (self.bytes(), Instant::now());
        tokio::time::sleep(window).await;
        let s = t0.elapsed().as_secs_f64();
        (self.bytes().saturating_sub(b0) as f64 / s, s)
    }
}

impl Drop for Download {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The path's server processes: `cpam-server`, or OpenSSH's `sshd`
/// listener and its sessions.
fn server_processes(path: &RunningPath) -> Vec<(String, u32)> {
    path.processes()
        .into_iter()
        .filter(|(name, _)| name == "cpam-server" || name.contains("sshd"))
        .collect()
}

fn rss_sum(procs: &[(String, u32)]) -> u64 {
    procs.iter().filter_map(|(_, pid)| rss_kib(*pid)).sum()
}

fn mib_s(bytes_per_s: f64) -> f64 {
    bytes_per_s / f64::from(1u32 << 20)
}

/// Measures the stalled reader through `path` for `plan.stalled`.
pub fn measure(rt: &Runtime, path: &RunningPath, plan: &Plan) -> Result<Stalled> {
    let stall = plan.stalled;
    let alone_window = (stall / 2).clamp(Duration::from_secs(2), Duration::from_secs(10));
    let mut f = Stalled::default();
    rt.block_on(async {
        let other = Download::start(path.sink).await?;
        other
            .wait_for(UNDER_WAY, Duration::from_secs(30))
            .await
            .context("the first download")?;
        let (alone, s) = other.rate(alone_window).await;
        (f.alone_before_mib_s, f.alone_s) = (mib_s(alone), s);

        let server = server_processes(path);
        f.server = server.iter().map(|(n, _)| n.clone()).collect();
        f.server_rss_before_kib = rss_sum(&server);
        let stopped = Download::start(path.sink).await?;
        stopped
            .wait_for(UNDER_WAY, Duration::from_secs(30))
            .await
            .context("the second download")?;
        stopped.set_reading(false);
        tokio::time::sleep(SETTLE).await;
        let stopped_at = stopped.bytes();
        f.stopped_at_mib = stopped_at as f64 / f64::from(1u32 << 20);

        let window = CpuWindow::start(path);
        let (b0, t0) = (other.bytes(), Instant::now());
        let mut rss_max = rss_sum(&server).max(f.server_rss_before_kib);
        while t0.elapsed() < stall {
            tokio::time::sleep(RSS_EVERY).await;
            // The sshd sessions of the tunnel can change; read them again.
            rss_max = rss_max.max(rss_sum(&server_processes(path)));
        }
        f.stalled_s = t0.elapsed().as_secs_f64();
        f.during_mib_s = mib_s(other.bytes().saturating_sub(b0) as f64 / f.stalled_s);
        f.foreign_cores = window.end(plan.clk_tck, f.stalled_s).foreign_cores;
        f.server_rss_max_kib = rss_max;
        if stopped.bytes() != stopped_at {
            bail!("the stopped download read on while stopped");
        }

        let running = path
            .processes()
            .iter()
            .all(|(_, pid)| rss_kib(*pid).is_some());
        let echo = path.echo;
        let echoed = tokio::task::spawn_blocking(move || {
            echo_probe(echo, 1024, Duration::from_secs(5)).is_ok()
        })
        .await
        .unwrap_or(false);
        f.tunnel_up = running && echoed;
        stopped.set_reading(true);
        match stopped
            .wait_for(stopped_at + RESUMED, Duration::from_secs(10))
            .await
        {
            Ok(t) => (f.resumed, f.resume_ms) = (true, Some(t.as_secs_f64() * 1e3)),
            Err(_) => f.resumed = false,
        }
        drop(stopped);
        tokio::time::sleep(SETTLE).await;
        f.alone_after_mib_s = mib_s(other.rate(alone_window).await.0);
        f.alone_mib_s = (f.alone_before_mib_s + f.alone_after_mib_s) / 2.0;
        f.ratio = if f.alone_mib_s > 0.0 {
            f.during_mib_s / f.alone_mib_s
        } else {
            0.0
        };
        anyhow::Ok(())
    })?;
    Ok(f)
}
