//! Paths (d) and (e): IP Connect. `cpam-connect ipconnect run` maps the
//! `echo` and `sink` services to local addresses, in the legacy mode
//! (loopback listeners at 127.77.x.y) or the driver mode (a TUN device
//! carrying 100.100.0.0/16 into the userspace stack); the load goes to the
//! mapped addresses instead of a `forward`'s port. Everything else is the
//! `cpam` path's deployment.
//!
//! The driver routes a private range, so `cpam-bench` runs these paths (and
//! the ones measured beside them) in a network namespace of its own: see
//! [`enter_netns`].

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::RunningPath;
use super::cpam::Deployment;
use super::load::{wait_echo, wait_sink};
use super::procs::{ChildGuard, run_checked};
use super::targets::Targets;

const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Set in the re-executed bench that runs inside its own network namespace.
const NETNS_ENV: &str = "CPAM_BENCH_NETNS";

/// Whether a path of this list needs the bench's own network namespace.
pub fn needs_netns(paths: &[String]) -> bool {
    paths.iter().any(|p| p == "ipconnect-driver")
}

/// Runs this bench again inside a new network namespace (`unshare --net`,
/// root) with its loopback up, and returns its exit code; `None` when
/// already inside it.
pub fn enter_netns() -> Result<Option<i32>> {
    if std::env::var_os(NETNS_ENV).is_some() {
        run_checked(
            "ip link set lo up",
            Command::new("ip").args(["link", "set", "lo", "up"]),
            READY_TIMEOUT,
        )?;
        return Ok(None);
    }
    let exe = std::env::current_exe()?;
    let status = Command::new("unshare")
        .arg("--net")
        .arg("--")
        .arg(&exe)
        .args(std::env::args_os().skip(1))
        .env(NETNS_ENV, "1")
        .status()
        .context(
            "the IP Connect driver path runs in its own network namespace: \
             `unshare --net` (util-linux, as root) failed to start",
        )?;
    Ok(Some(status.code().unwrap_or(2)))
}

/// Sets up a deployment whose vendor runs IP Connect in `mode` (`legacy` or
/// `driver`); returns once both mappings carry an echo and a sink transfer.
pub fn start(targets: &Targets, bin_dir: &Path, mode: &'static str) -> Result<RunningPath> {
    let name = match mode {
        "driver" => "ipconnect-driver",
        _ => "ipconnect-legacy",
    };
    let mut d = Deployment::start(name, bin_dir)?;
    d.service("echo", targets.echo, None)?;
    d.service("sink", targets.sink, None)?;
    d.cli.admin(&["user", "ip-connect-mode", "vendor", mode])?;
    let state = d.dir.join("ipconnect");
    let log = d.dir.join("ipconnect.log");
    let mut run = ChildGuard::spawn(
        "cpam-connect-ipconnect",
        d.connect()
            .args(["ipconnect", "run", "--no-hosts", "--poll", "1s"])
            .arg("--state-dir")
            .arg(&state)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&log)?),
    )?;
    run.wait_stdout_line("cpam-connect ipconnect running", READY_TIMEOUT)?;
    d.path.guards.insert(0, run);
    let deadline = Instant::now() + READY_TIMEOUT;
    let (echo, sink) = loop {
        if let Some(pair) = mapped(&d, &state, mode)? {
            break pair;
        }
        if Instant::now() > deadline {
            bail!(
                "IP Connect did not map echo and sink in the {mode} mode within {READY_TIMEOUT:?}; log: {}",
                fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    d.path.echo = echo;
    d.path.sink = sink;
    wait_echo(echo, READY_TIMEOUT).with_context(|| fs::read_to_string(&log).unwrap_or_default())?;
    wait_sink(sink, targets, READY_TIMEOUT)?;
    d.path
        .notes
        .push(format!("{name}: echo at {echo}, sink at {sink}"));
    Ok(d.path)
}

/// The mapped echo and sink addresses once both are up in `mode`.
fn mapped(d: &Deployment, state: &Path, mode: &str) -> Result<Option<(SocketAddr, SocketAddr)>> {
    let out = Command::new(d.cli.bin_path("cpam-connect"))
        .args(["ipconnect", "status", "--json", "--state-dir"])
        .arg(state)
        .output()?;
    if !out.status.success() {
        return Ok(None);
    }
    let status: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let find = |service: &str| -> Option<SocketAddr> {
        status["mappings"]
            .as_array()?
            .iter()
            .find(|m| m["service"] == service && m["mode"] == mode && m["error"].is_null())?["local"]
            .as_str()?
            .parse()
            .ok()
    };
    Ok(find("echo").zip(find("sink")))
}
