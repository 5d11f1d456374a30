//! End-to-end test harness: network namespaces, child processes with captured
//! logs, a stock OpenSSH `sshd` target and a whole cpam deployment
//! (`cpam-server`, `cpam-gatekeeper`, `cpam-connect`) wired between them.
//!
//! Every e2e test builds its own pair of network namespaces, "vendor" and
//! "customer", joined by one veth pair; the target `sshd` listens on
//! 127.0.0.1 inside the customer namespace, so only the tunnel reaches it.
//! A missing peer or missing privilege is a test failure, never a skip.

pub mod bins;
pub mod browser;
pub mod cc;
pub mod console;
pub mod console_api;
pub mod cpam;
pub mod ipconnect;
pub mod netns;
pub mod postgres;
pub mod process;
pub mod psm;
pub mod rdp;
pub mod rdp_psm;
pub mod recording;
pub mod s3;
pub mod sftp;
pub mod sshd;
pub mod stream;
pub mod web;

use std::time::{Duration, Instant};

/// Polls `check` every 50 ms until it returns `Some`, or fails after `timeout`
/// with `what` in the message.
pub fn wait_until<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Milliseconds since the Unix epoch (the unit of cpam timestamps).
pub fn now_millis() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The files under `dir` (recursively) that hold any of `needles`, for
/// "this secret is stored nowhere" checks. A file or directory the running
/// server removes between the listing and the read (a database journal, a
/// finished spool) is skipped: it holds nothing any more.
pub fn files_holding(
    dir: &std::path::Path,
    needles: &[&[u8]],
) -> anyhow::Result<Vec<std::path::PathBuf>> {
    use anyhow::Context as _;
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Err(e) if gone(&e) => return Ok(found),
        entries => entries.with_context(|| format!("listing {}", dir.display()))?,
    };
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            found.extend(files_holding(&path, needles)?);
            continue;
        }
        if !path.is_file() {
            continue; // a socket (the control socket), a dangling link
        }
        let bytes = match std::fs::read(&path) {
            Err(e) if gone(&e) => continue,
            read => read.with_context(|| format!("reading {}", path.display()))?,
        };
        if needles
            .iter()
            .any(|n| !n.is_empty() && bytes.windows(n.len()).any(|w| w == *n))
        {
            found.push(path);
        }
    }
    Ok(found)
}

static CLUSTERS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Held by each test that runs a cluster of nodes: their timed assertions
/// (a terminate within 1 s, a failover within 10 s) run one cluster at a
/// time.
pub fn one_cluster_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    CLUSTERS.lock().unwrap_or_else(|e| e.into_inner())
}
