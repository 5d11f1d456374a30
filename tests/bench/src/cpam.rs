//! Path (c): cpam itself, driven through the CLI of `docs/cli.md`.
//!
//! `cpam-connect forward` (local listener) → SSH → `cpam-server run` (splices
//! the channels in-process) → SSH dialed out by the gatekeeper →
//! `cpam-gatekeeper run` → target. One server, one gatekeeper, one
//! `cpam-connect` per service (`echo` and `sink`).

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::RunningPath;
use super::load::{wait_echo, wait_sink};
use super::procs::{ChildGuard, run_checked};
use super::targets::Targets;

const BINS: [&str; 3] = ["cpam-server", "cpam-gatekeeper", "cpam-connect"];
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Checks that the three binaries are in `bin_dir`.
pub fn check_bins(bin_dir: &Path) -> Result<()> {
    let missing: Vec<&str> = BINS
        .iter()
        .copied()
        .filter(|b| !bin_dir.join(b).is_file())
        .collect();
    if !missing.is_empty() {
        bail!(
            "{} not found in {}: run `cargo build --release --workspace` \
             (or pass --bin-dir DIR)",
            missing.join(", "),
            bin_dir.display()
        );
    }
    Ok(())
}

struct Cli<'a> {
    bin_dir: &'a Path,
    data_dir: PathBuf,
}

impl Cli<'_> {
    fn bin(&self, name: &str) -> Command {
        Command::new(self.bin_dir.join(name))
    }

    /// `cpam-server ARGS --data-dir D`, checked; returns stdout.
    fn admin(&self, args: &[&str]) -> Result<String> {
        let what = format!("cpam-server {}", args.join(" "));
        let out = run_checked(
            &what,
            self.bin("cpam-server")
                .args(args)
                .arg("--data-dir")
                .arg(&self.data_dir),
            ADMIN_TIMEOUT,
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

fn parse_addr(what: &str, text: &str) -> Result<SocketAddr> {
    text.parse()
        .with_context(|| format!("{what} printed an address that does not parse: {text:?}"))
}

fn log_tail(path: &Path) -> String {
    fs::read_to_string(path)
        .map(|s| {
            s.trim()
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .unwrap_or_default()
}

/// Waits for `needle` in a log file, while `guard` keeps running.
fn wait_log(guard: &mut ChildGuard, log: &Path, needle: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if fs::read_to_string(log).is_ok_and(|s| s.contains(needle)) {
            return Ok(());
        }
        guard
            .check_running()
            .with_context(|| format!("log: {}", log_tail(log)))?;
        if Instant::now() > deadline {
            bail!(
                "{} did not log `{needle}` within {timeout:?}; log: {}",
                guard.name,
                log_tail(log)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sets up a server, a gatekeeper and two forwards; returns when an echo
/// and a sink transfer work end to end.
pub fn start(targets: &Targets, bin_dir: &Path) -> Result<RunningPath> {
    check_bins(bin_dir)?;
    let tmp = tempfile::Builder::new()
        .prefix("cpam-bench-cpam")
        .tempdir()?;
    let dir = tmp.path().to_path_buf();
    let mut path = RunningPath::new("cpam", tmp);
    let cli = Cli {
        bin_dir,
        data_dir: dir.join("server"),
    };

    cli.admin(&["init", "--listen", "127.0.0.1:0"])?;
    let server_log = dir.join("server.log");
    let mut server = ChildGuard::spawn(
        "cpam-server",
        cli.bin("cpam-server")
            .arg("run")
            .arg("--data-dir")
            .arg(&cli.data_dir)
            .args(["--listen", "127.0.0.1:0", "--web-listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&server_log)?),
    )?;
    let printed = server
        .wait_stdout_line("cpam-server listening on", READY_TIMEOUT)
        .with_context(|| format!("server log: {}", log_tail(&server_log)))?;
    let server_addr = parse_addr("cpam-server run", &printed)?;
    let server_addr_s = server_addr.to_string();
    path.guards.push(server);

    cli.admin(&["customer", "add", "bench"])?;
    let gk_json = cli.admin(&["gatekeeper", "add", "--customer", "bench", "gk1", "--json"])?;
    let gk: serde_json::Value = serde_json::from_str(gk_json.trim())
        .with_context(|| format!("`gatekeeper add --json` printed no JSON: {gk_json:?}"))?;
    let code = gk
        .get("code")
        .and_then(serde_json::Value::as_str)
        .context("`gatekeeper add --json` has no \"code\"")?
        .to_owned();
    cli.admin(&["user", "add", "vendor"])?;
    for (service, target) in [("echo", targets.echo), ("sink", targets.sink)] {
        let target = target.to_string();
        cli.admin(&[
            "service",
            "add",
            "--customer",
            "bench",
            service,
            "--target",
            &target,
        ])?;
        cli.admin(&[
            "grant",
            "add",
            "--user",
            "vendor",
            "--customer",
            "bench",
            "--service",
            service,
        ])?;
    }

    let gk_dir = dir.join("gatekeeper");
    run_checked(
        "cpam-gatekeeper register",
        cli.bin("cpam-gatekeeper")
            .args(["register", "--server", &server_addr_s, "--code", &code])
            .arg("--state-dir")
            .arg(&gk_dir),
        ADMIN_TIMEOUT,
    )?;
    let gk_log = dir.join("gatekeeper.log");
    let mut gatekeeper = ChildGuard::spawn(
        "cpam-gatekeeper",
        cli.bin("cpam-gatekeeper")
            .arg("run")
            .arg("--state-dir")
            .arg(&gk_dir)
            .args(["--allow", "127.0.0.0/8:*"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&gk_log)?),
    )?;
    wait_log(&mut gatekeeper, &gk_log, "gatekeeper online", READY_TIMEOUT)?;
    path.guards.insert(0, gatekeeper);

    let profile = dir.join("vendor.profile");
    let profile_s = profile.to_string_lossy().into_owned();
    cli.admin(&[
        "profile",
        "export",
        "--user",
        "vendor",
        "--gatekeeper",
        "gk1",
        "--out",
        &profile_s,
        "--server-address",
        &server_addr_s,
    ])?;

    for service in ["sink", "echo"] {
        let log = dir.join(format!("connect-{service}.log"));
        let mut connect = ChildGuard::spawn(
            &format!("cpam-connect-{service}"),
            cli.bin("cpam-connect")
                .arg("--profile")
                .arg(&profile)
                .args(["forward", service, "--listen", "127.0.0.1:0"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(fs::File::create(&log)?),
        )?;
        let printed = connect
            .wait_stdout_line(
                &format!("cpam-connect forwarding {service} on"),
                READY_TIMEOUT,
            )
            .with_context(|| format!("connect log: {}", log_tail(&log)))?;
        let addr = parse_addr("cpam-connect forward", &printed)?;
        if service == "echo" {
            path.echo = addr;
        } else {
            path.sink = addr;
        }
        path.guards.insert(0, connect);
    }

    let up = wait_echo(path.echo, READY_TIMEOUT);
    let alive = path
        .guards
        .iter_mut()
        .try_for_each(ChildGuard::check_running);
    alive.and(up).with_context(|| {
        format!(
            "logs: server: {} / gatekeeper: {} / connect: {}",
            log_tail(&server_log),
            log_tail(&gk_log),
            log_tail(&dir.join("connect-echo.log"))
        )
    })?;
    wait_sink(path.sink, targets, READY_TIMEOUT)?;
    Ok(path)
}
