//! A deployment for the web console tests: `cpam-server run` in the test's
//! own network namespace (so the browser, `cpam-connect` and `ssh` reach it
//! on loopback), and a customer namespace joined to it by a veth pair,
//! holding a stock `sshd` target and, once a test registers it, the
//! `cpam-gatekeeper`:
//!
//! ```text
//! test ns:     chromium -> https://127.0.0.1:WEB (console)
//!              ssh -> cpam-connect forward -> cpam-server [host_addr]:SSH
//! customer ns: cpam-gatekeeper (dials host_addr) -> sshd 127.0.0.1:2022
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::bins::bin_path;
use crate::cpam::{ALLOW, SSHD_PORT};
use crate::process::{Child, Output, run};
use crate::sshd::Sshd;
use crate::web::HostLink;

const CMD_TIMEOUT: Duration = Duration::from_secs(60);
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The first administrator every console deployment has.
pub const ADMIN: &str = "admin";
/// Their password (test-only).
pub const ADMIN_PASSWORD: &str = "correct horse battery staple";

/// A running server with its console, and the customer namespace.
#[derive(Debug)]
pub struct Console {
    pub server: Child,
    /// `https://127.0.0.1:PORT`, or `https://127.0.0.1:PORT/pam` below a base path.
    pub url: String,
    /// The console's base path, if not `/`.
    pub base_path: Option<String>,
    /// What serves it, for screenshot names: `""`, `"pam"` (below `/pam`)
    /// or `"mount"` (the mount example).
    pub served_by: &'static str,
    /// The server's SSH address as the gatekeeper dials it.
    pub ssh_addr: SocketAddr,
    /// The console's TLS certificate (PEM).
    pub cert: PathBuf,
    pub data_dir: PathBuf,
    pub gk_state: PathBuf,
    pub sshd: Sshd,
    /// Processes a test started (gatekeeper, cpam-connect, ssh), killed with it.
    pub extra: Vec<Child>,
    /// The customer namespace, joined to the test's own.
    pub link: HostLink,
    pub dir: tempfile::TempDir,
}

/// What serves the console in a [`Console`].
#[derive(Debug)]
enum Served {
    /// `cpam-server run`, console at `/`.
    Root,
    /// `cpam-server run --web-base-path`.
    BasePath(String),
    /// `examples/console_mount --data-dir`, console under `/pam/`.
    MountExample,
}

impl Console {
    /// `cpam-server init --admin-user admin`, then `run` with the console on
    /// 127.0.0.1 and SSH on the host side of the customer veth.
    pub fn start() -> anyhow::Result<Console> {
        Console::start_at(None)
    }

    /// [`Console::start`] with the console below `base_path` (`/pam`).
    pub fn start_at(base_path: Option<&str>) -> anyhow::Result<Console> {
        Console::start_served(match base_path {
            Some(base) => Served::BasePath(base.to_string()),
            None => Served::Root,
        })
    }

    /// [`Console::start`] with the server and its console served by
    /// `examples/console_mount --data-dir` instead of `cpam-server run`: the
    /// console under `/pam/` of an app with routes of its own.
    pub fn start_mount_example() -> anyhow::Result<Console> {
        Console::start_served(Served::MountExample)
    }

    /// [`Console::start`] with the target `sshd` also accepting password
    /// logins (for accounts made with [`crate::sshd::password_account`]),
    /// as the privileged SSH service's vault credential needs.
    pub fn start_with_passwords() -> anyhow::Result<Console> {
        Console::start_served_with(Served::Root, true)
    }

    fn start_served(served: Served) -> anyhow::Result<Console> {
        Console::start_served_with(served, false)
    }

    fn start_served_with(served: Served, passwords: bool) -> anyhow::Result<Console> {
        for b in ["cpam-server", "cpam-gatekeeper", "cpam-connect"] {
            bin_path(b)?;
        }
        let dir = tempfile::Builder::new().prefix("cpam-console-").tempdir()?;
        let link = HostLink::create()?;
        let host_addr = link.host_addr;
        let sshd = Sshd::start_with(&link.ns, dir.path(), &[SSHD_PORT], passwords)?;
        let data_dir = dir.path().join("server");
        let gk_state = dir.path().join("gatekeeper");
        let mut init = Command::new(bin_path("cpam-server")?);
        init.args([
            "init",
            "--listen",
            &format!("{host_addr}:0"),
            "--admin-user",
            ADMIN,
        ])
        .arg("--data-dir")
        .arg(&data_dir)
        .env("CPAM_ADMIN_PASSWORD", ADMIN_PASSWORD);
        run("server-init", init, dir.path(), CMD_TIMEOUT)?.ok("cpam-server init")?;

        // The command, the prefixes of the lines naming its SSH and console
        // addresses, and the base path.
        let (mut c, [ssh_line, console_line], base_path) = match &served {
            Served::MountExample => {
                let exe = bin_path("examples/console_mount").map_err(|e| {
                    anyhow::anyhow!("{e}; build it with `cargo build --workspace --all-targets`")
                })?;
                let mut c = Command::new(exe);
                c.args(["--data-dir"]).arg(&data_dir);
                c.args(["--web-listen", "127.0.0.1:0"]);
                (
                    c,
                    ["hub listening on ", "console on "],
                    Some("/pam".to_string()),
                )
            }
            Served::Root | Served::BasePath(_) => {
                let mut c = Command::new(bin_path("cpam-server")?);
                c.args(["run", "--web-listen", "127.0.0.1:0", "--data-dir"])
                    .arg(&data_dir);
                let base = match &served {
                    Served::BasePath(base) => {
                        c.args(["--web-base-path", base]);
                        Some(base.clone())
                    }
                    _ => None,
                };
                let lines = ["cpam-server listening on ", "cpam-server console on "];
                (c, lines, base)
            }
        };
        c.env("RUST_LOG", "info");
        let mut server = Child::spawn("server", c, dir.path())?;
        let ssh = server.wait_for_line(ssh_line, START_TIMEOUT)?;
        let ssh_addr: SocketAddr = ssh
            .parse()
            .with_context(|| format!("server printed a bad SSH address `{ssh}`"))?;
        let url = server
            .wait_for_line(console_line, START_TIMEOUT)?
            .trim_end_matches('/')
            .to_string();
        if !url.starts_with("https://") {
            bail!("the console is not served over HTTPS: {url}");
        }
        let cert = data_dir.join("web_cert.pem");
        if !cert.is_file() {
            bail!("cpam-server init wrote no {}", cert.display());
        }
        Ok(Console {
            server,
            url,
            base_path,
            served_by: match served {
                Served::Root => "",
                Served::BasePath(_) => "pam",
                Served::MountExample => "mount",
            },
            ssh_addr,
            cert,
            data_dir,
            gk_state,
            sshd,
            extra: Vec::new(),
            link,
            dir,
        })
    }

    /// The test's temporary directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `cmd` to completion with output captured in the test directory.
    pub fn run(&self, name: &str, cmd: Command) -> anyhow::Result<Output> {
        run(name, cmd, self.path(), CMD_TIMEOUT)
    }

    /// `cpam-server ARGS --data-dir D`, failing unless it exits 0.
    pub fn admin(&self, args: &[&str], stdin_line: Option<&str>) -> anyhow::Result<String> {
        let mut c = Command::new(bin_path("cpam-server")?);
        c.args(args).arg("--data-dir").arg(&self.data_dir);
        if let Some(line) = stdin_line {
            // `Child` closes stdin; feed the line through a pipe from the shell.
            let mut sh = Command::new("sh");
            sh.arg("-c")
                .arg("printf '%s\\n' \"$CPAM_LINE\" | \"$@\"")
                .arg("sh")
                .arg(c.get_program())
                .args(c.get_args())
                .env("CPAM_LINE", line);
            c = sh;
        }
        Ok(self
            .run(&format!("admin-{}", args.join("-")), c)?
            .ok(&format!("cpam-server {}", args.join(" ")))?
            .stdout)
    }

    /// `cpam-gatekeeper register --server SSH --code CODE` in the customer ns.
    pub fn register_gatekeeper(&self, code: &str) -> anyhow::Result<Output> {
        let mut c = self.link.ns.command(bin_path("cpam-gatekeeper")?);
        c.args([
            "register",
            "--server",
            &self.ssh_addr.to_string(),
            "--code",
            code,
        ])
        .arg("--state-dir")
        .arg(&self.gk_state);
        self.run("gatekeeper-register", c)?
            .ok("cpam-gatekeeper register")
    }

    /// Starts `cpam-gatekeeper run` in the customer ns (kept in `extra`).
    pub fn run_gatekeeper(&mut self) -> anyhow::Result<()> {
        let mut c = self.link.ns.command(bin_path("cpam-gatekeeper")?);
        c.args(["run", "--allow", ALLOW, "--state-dir"])
            .arg(&self.gk_state)
            .env("RUST_LOG", "info");
        let mut gk = Child::spawn("gatekeeper", c, self.dir.path())?;
        gk.wait_for_stderr("gatekeeper online", START_TIMEOUT)
            .map_err(|e| anyhow::anyhow!("{e}\n{}", self.server.logs()))?;
        self.extra.push(gk);
        Ok(())
    }

    /// The customer's switch: `cpam-gatekeeper enable|disable`.
    pub fn gatekeeper_switch(&self, enable: bool) -> anyhow::Result<()> {
        let verb = if enable { "enable" } else { "disable" };
        let mut c = Command::new(bin_path("cpam-gatekeeper")?);
        c.arg(verb).arg("--state-dir").arg(&self.gk_state);
        self.run(&format!("gatekeeper-{verb}"), c)?
            .ok(&format!("cpam-gatekeeper {verb}"))?;
        Ok(())
    }

    /// `cpam-gatekeeper schedule ARGS` on the customer side.
    pub fn gatekeeper_schedule(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut c = Command::new(bin_path("cpam-gatekeeper")?);
        c.arg("schedule")
            .arg("--state-dir")
            .arg(&self.gk_state)
            .args(args);
        self.run("gatekeeper-schedule", c)?
            .ok("cpam-gatekeeper schedule")?;
        Ok(())
    }

    /// Starts `cpam-connect --profile P forward SERVICE` on a free loopback
    /// port (kept in `extra`) and returns the port.
    pub fn forward(&mut self, profile: &Path, service: &str) -> anyhow::Result<u16> {
        let mut c = Command::new(bin_path("cpam-connect")?);
        c.arg("--profile")
            .arg(profile)
            .args(["forward", service, "--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "info");
        let mut child = Child::spawn(&format!("connect-{service}"), c, self.dir.path())?;
        let prefix = format!("cpam-connect forwarding {service} on ");
        let addr = child
            .wait_for_line(&prefix, START_TIMEOUT)
            .map_err(|e| anyhow::anyhow!("{e}\n{}", self.server.logs()))?;
        let addr: SocketAddr = addr
            .parse()
            .with_context(|| format!("cpam-connect printed a bad address `{addr}`"))?;
        self.extra.push(child);
        Ok(addr.port())
    }

    /// Stock `ssh` to the target through `cpam-connect`'s listener on `port`.
    pub fn ssh(&self, port: u16, remote: &[&str]) -> Command {
        crate::sshd::local_ssh_cmd(&self.sshd.client_key, port, remote)
    }

    /// Every process's captured output.
    pub fn logs(&self) -> String {
        let mut all = vec![&self.server, &self.sshd.child];
        all.extend(self.extra.iter());
        all.iter().map(|c| c.logs()).collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        eprintln!("{}", self.logs());
    }
}
