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
pub mod sftp;
pub mod sshd;
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
