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
use super::procs::{ChildGuard, run_checked, run_input};
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

/// The admin CLI of one deployment's data dir.
#[derive(Debug)]
pub(crate) struct Cli {
    bin_dir: PathBuf,
    data_dir: PathBuf,
}

impl Cli {
    pub(crate) fn new(bin_dir: &Path, data_dir: &Path) -> Self {
        Self {
            bin_dir: bin_dir.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
        }
    }

    pub(crate) fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub(crate) fn bin(&self, name: &str) -> Command {
        Command::new(self.bin_path(name))
    }

    pub(crate) fn bin_path(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// `cpam-server ARGS --data-dir D`, checked; returns stdout.
    pub(crate) fn admin(&self, args: &[&str]) -> Result<String> {
        self.admin_input(args, None)
    }

    /// [`Cli::admin`] with `input` on standard input.
    pub(crate) fn admin_input(&self, args: &[&str], input: Option<&[u8]>) -> Result<String> {
        let what = format!("cpam-server {}", args.join(" "));
        let out = run_input(
            &what,
            self.bin("cpam-server")
                .args(args)
                .arg("--data-dir")
                .arg(&self.data_dir),
            input,
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

/// The vendor's login password (the PSM bench sets a master password with it).
pub(crate) const VENDOR_LOGIN: &str = "bench-vendor-login-1";

/// A server with customer `bench`, gatekeeper `gk1` online (allowing
/// 127.0.0.0/8) and user `vendor` with a profile; services are added with
/// [`Deployment::service`] and reached with [`Deployment::forward`].
#[derive(Debug)]
pub(crate) struct Deployment {
    pub path: RunningPath,
    pub cli: Cli,
    pub dir: PathBuf,
    pub profile: PathBuf,
    server_log: PathBuf,
    gk_log: PathBuf,
    /// The shared database of a cluster deployment.
    pub db: Option<String>,
}

impl Deployment {
    pub(crate) fn start(name: &'static str, bin_dir: &Path) -> Result<Self> {
        Self::start_on(name, bin_dir, None)
    }

    /// [`Deployment::start`] on database `db` (a PostgreSQL URL; the
    /// server is node `node-a`) or, with `None`, on the data dir's SQLite.
    pub(crate) fn start_on(name: &'static str, bin_dir: &Path, db: Option<&str>) -> Result<Self> {
        check_bins(bin_dir)?;
        let tmp = tempfile::Builder::new()
            .prefix(&format!("cpam-bench-{name}"))
            .tempdir()?;
        let dir = tmp.path().to_path_buf();
        let mut path = RunningPath::new(name, tmp);
        let cli = Cli {
            bin_dir: bin_dir.to_path_buf(),
            data_dir: dir.join("server"),
        };

        let mut init = vec!["init", "--listen", "127.0.0.1:0"];
        init.extend(db.iter().flat_map(|db| ["--database", *db]));
        cli.admin(&init)?;
        let server_log = dir.join("server.log");
        let (server, server_addr) = spawn_server(&cli, &server_log, db.map(|_| "node-a"))?;
        let server_addr = server_addr.to_string();
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
        cli.admin_input(
            &["user", "add", "vendor", "--password-stdin"],
            Some(format!("{VENDOR_LOGIN}\n").as_bytes()),
        )?;

        let gk_dir = dir.join("gatekeeper");
        run_checked(
            "cpam-gatekeeper register",
            cli.bin("cpam-gatekeeper")
                .args(["register", "--server", &server_addr, "--code", &code])
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
        cli.admin(&[
            "profile",
            "export",
            "--user",
            "vendor",
            "--gatekeeper",
            "gk1",
            "--out",
            &profile.to_string_lossy(),
            "--server-address",
            &server_addr,
        ])?;
        Ok(Self {
            path,
            cli,
            dir,
            profile,
            server_log,
            gk_log,
            db: db.map(str::to_string),
        })
    }

    /// Adds node `node` on the deployment's database: a data dir of its
    /// own with the first node's host key and vault key, and `cpam-server
    /// run --node-id NODE`. Returns its SSH address.
    pub(crate) fn add_node(&mut self, node: &str) -> Result<SocketAddr> {
        let db = self
            .db
            .clone()
            .context("a second node needs a shared database")?;
        let cli = Cli::new(&self.cli.bin_dir, &self.dir.join(format!("server-{node}")));
        cli.admin(&["init", "--listen", "127.0.0.1:0", "--database", &db])?;
        for file in ["host_key", "vault.key"] {
            fs::copy(self.cli.data_dir.join(file), cli.data_dir.join(file))
                .with_context(|| format!("copying {file} to {node}"))?;
        }
        let log = self.dir.join(format!("server-{node}.log"));
        let (server, addr) = spawn_server(&cli, &log, Some(node))?;
        self.path.guards.push(server);
        Ok(addr)
    }

    /// Registers gatekeeper `name` at `server` and runs it.
    pub(crate) fn add_gatekeeper(&mut self, name: &str, server: SocketAddr) -> Result<()> {
        let out = self
            .cli
            .admin(&["gatekeeper", "add", "--customer", "bench", name, "--json"])?;
        let gk: serde_json::Value = serde_json::from_str(out.trim())
            .with_context(|| format!("`gatekeeper add --json` printed no JSON: {out:?}"))?;
        let code = gk
            .get("code")
            .and_then(serde_json::Value::as_str)
            .context("`gatekeeper add --json` has no \"code\"")?;
        let state = self.dir.join(format!("gatekeeper-{name}"));
        let server = server.to_string();
        run_checked(
            "cpam-gatekeeper register",
            self.cli
                .bin("cpam-gatekeeper")
                .args(["register", "--server", &server, "--code", code])
                .arg("--state-dir")
                .arg(&state),
            ADMIN_TIMEOUT,
        )?;
        let log = self.dir.join(format!("gatekeeper-{name}.log"));
        let mut gatekeeper = ChildGuard::spawn(
            &format!("cpam-gatekeeper-{name}"),
            self.cli
                .bin("cpam-gatekeeper")
                .arg("run")
                .arg("--state-dir")
                .arg(&state)
                .args(["--allow", "127.0.0.0/8:*"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(fs::File::create(&log)?),
        )?;
        wait_log(&mut gatekeeper, &log, "gatekeeper online", READY_TIMEOUT)?;
        self.path.guards.insert(0, gatekeeper);
        Ok(())
    }

    /// Makes the vendor's profile one for `gatekeeper` that signs in to the
    /// node at `server` (later forwards use it).
    pub(crate) fn use_profile(&mut self, gatekeeper: &str, server: SocketAddr) -> Result<()> {
        let profile = self
            .dir
            .join(format!("vendor-{gatekeeper}-{server}.profile"));
        self.cli.admin(&[
            "profile",
            "export",
            "--user",
            "vendor",
            "--gatekeeper",
            gatekeeper,
            "--out",
            &profile.to_string_lossy(),
            "--server-address",
            &server.to_string(),
        ])?;
        self.profile = profile;
        Ok(())
    }

    /// Adds service `name` (of `kind`, `tcp` when `None`) at `target` and
    /// grants it to the vendor.
    pub(crate) fn service(&self, name: &str, target: SocketAddr, kind: Option<&str>) -> Result<()> {
        self.service_on(name, None, target, kind)
    }

    /// [`Deployment::service`] behind `gatekeeper` (needed once the
    /// customer has several).
    pub(crate) fn service_on(
        &self,
        name: &str,
        gatekeeper: Option<&str>,
        target: SocketAddr,
        kind: Option<&str>,
    ) -> Result<()> {
        let target = target.to_string();
        let mut args = vec![
            "service",
            "add",
            "--customer",
            "bench",
            name,
            "--target",
            &target,
        ];
        if let Some(kind) = kind {
            args.extend(["--kind", kind]);
        }
        if let Some(gk) = gatekeeper {
            args.extend(["--gatekeeper", gk]);
        }
        self.cli.admin(&args)?;
        self.cli.admin(&[
            "grant",
            "add",
            "--user",
            "vendor",
            "--customer",
            "bench",
            "--service",
            name,
        ])?;
        Ok(())
    }

    /// `cpam-connect --profile P` (the vendor).
    pub(crate) fn connect(&self) -> Command {
        let mut c = self.cli.bin("cpam-connect");
        c.arg("--profile").arg(&self.profile);
        c
    }

    /// Starts `cpam-connect forward SERVICE` on a free loopback port; its
    /// process is stopped with the path.
    pub(crate) fn forward(&mut self, service: &str) -> Result<SocketAddr> {
        let log = self.dir.join(format!("connect-{service}.log"));
        let mut connect = ChildGuard::spawn(
            &format!("cpam-connect-{service}"),
            self.connect()
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
        self.path.guards.insert(0, connect);
        parse_addr("cpam-connect forward", &printed)
    }

    /// The last lines of the server's, the gatekeeper's and `service`'s
    /// forward logs, for errors.
    pub(crate) fn logs(&self, service: &str) -> String {
        format!(
            "logs: server: {} / gatekeeper: {} / connect: {}",
            log_tail(&self.server_log),
            log_tail(&self.gk_log),
            log_tail(&self.dir.join(format!("connect-{service}.log")))
        )
    }
}

/// `cpam-server run` over `cli`'s data dir on free loopback ports (as
/// `--node-id NODE` when given), logging to `log`; returns it with its SSH
/// address.
fn spawn_server(cli: &Cli, log: &Path, node: Option<&str>) -> Result<(ChildGuard, SocketAddr)> {
    let mut cmd = cli.bin("cpam-server");
    cmd.arg("run").arg("--data-dir").arg(&cli.data_dir).args([
        "--listen",
        "127.0.0.1:0",
        "--web-listen",
        "127.0.0.1:0",
    ]);
    if let Some(node) = node {
        cmd.args(["--node-id", node]);
    }
    let mut server = ChildGuard::spawn(
        &format!(
            "cpam-server{}",
            node.map(|n| format!("-{n}")).unwrap_or_default()
        ),
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(log)?),
    )?;
    let printed = server
        .wait_stdout_line("cpam-server listening on", READY_TIMEOUT)
        .with_context(|| format!("server log: {}", log_tail(log)))?;
    let addr = parse_addr("cpam-server run", &printed)?;
    Ok((server, addr))
}

/// Sets up a server, a gatekeeper and two forwards; returns when an echo
/// and a sink transfer work end to end.
pub fn start(name: &'static str, targets: &Targets, bin_dir: &Path) -> Result<RunningPath> {
    let d = Deployment::start(name, bin_dir)?;
    d.service("echo", targets.echo, None)?;
    d.service("sink", targets.sink, None)?;
    ready(d, targets)
}

/// Forwards `echo` and `sink` with the deployment's profile; returns the
/// path once an echo and a sink transfer work end to end.
pub(crate) fn ready(mut d: Deployment, targets: &Targets) -> Result<RunningPath> {
    d.path.sink = d.forward("sink")?;
    d.path.echo = d.forward("echo")?;
    let up = wait_echo(d.path.echo, READY_TIMEOUT);
    let alive = d
        .path
        .guards
        .iter_mut()
        .try_for_each(ChildGuard::check_running);
    alive.and(up).with_context(|| d.logs("echo"))?;
    wait_sink(d.path.sink, targets, READY_TIMEOUT)?;
    Ok(d.path)
}
