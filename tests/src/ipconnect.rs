//! IP Connect: a second customer namespace linked to the vendor's (so two
//! customers can use the same 10.x address), small HTTP servers, the
//! `cpam-connect ipconnect run` service and stock clients that resolve
//! names through the service's temporary hosts file (bind-mounted over
//! `/etc/hosts` in a private mount namespace: the real one is never touched).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::bins::bin_path;
use crate::cpam::{Deployment, json_str, parse_json};
use crate::netns::Netns;
use crate::process::{Child, run};
use crate::wait_until;

/// The address both customers' HTTP servers use inside their own networks.
pub const SHARED_ADDR: &str = "10.77.0.5";
/// The HTTP servers' port.
pub const HTTP_PORT: u16 = 8080;

static COUNTER: AtomicU32 = AtomicU32::new(0);
const TIMEOUT: Duration = Duration::from_secs(30);

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("running ip {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Gives `ns` the shared address on its loopback device.
pub fn add_shared_addr(ns: &Netns) -> anyhow::Result<()> {
    ip(&[
        "-n",
        ns.name(),
        "addr",
        "add",
        &format!("{SHARED_ADDR}/32"),
        "dev",
        "lo",
    ])
}

/// A `python3 -m http.server` on `SHARED_ADDR:HTTP_PORT` in `ns` whose
/// index page is `body`.
pub fn http_server(ns: &Netns, dir: &Path, name: &str, body: &str) -> anyhow::Result<Child> {
    let root = dir.join(format!("www-{name}"));
    std::fs::create_dir_all(&root)?;
    std::fs::write(root.join("index.html"), body)?;
    let mut c = ns.command("python3");
    c.args([
        "-m",
        "http.server",
        &HTTP_PORT.to_string(),
        "--bind",
        SHARED_ADDR,
    ])
    .arg("--directory")
    .arg(&root);
    let mut child = Child::spawn(&format!("http-{name}"), c, dir)
        .context("starting python3's http.server (the IP Connect tests need python3)")?;
    wait_until(TIMEOUT, "the HTTP server to accept", || {
        if !child.is_running() {
            return Some(false);
        }
        ns.can_connect(SHARED_ADDR, HTTP_PORT).then_some(true)
    })
    .and_then(|up| {
        if up {
            Ok(())
        } else {
            bail!("the HTTP server exited\n{}", child.logs())
        }
    })?;
    Ok(child)
}

/// A second customer: its own namespace (linked to the vendor's), a
/// gatekeeper, an HTTP server on [`SHARED_ADDR`] and service `web` granted
/// to `vendor`, with an exported profile.
#[derive(Debug)]
pub struct OtherCustomer {
    pub http: Child,
    pub gatekeeper: Child,
    pub profile: PathBuf,
    pub ns: Netns,
}

impl OtherCustomer {
    pub fn attach(d: &Deployment, customer: &str) -> anyhow::Result<OtherCustomer> {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let ns = Netns::create(&format!("cpam-c-{pid}-x{n}"))?;
        let slot = (pid.wrapping_mul(64).wrapping_add(n)) % 16384;
        let base = u32::from(Ipv4Addr::new(10, 214, 0, 0)) + slot * 4;
        let (vside, cside) = (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2));
        let (vif, cif) = (
            format!("xv{:x}", pid * 256 + n % 256),
            format!("xc{:x}", pid * 256 + n % 256),
        );
        let vendor = d.topo.vendor.name();
        ip(&[
            "link",
            "add",
            &vif,
            "netns",
            vendor,
            "type",
            "veth",
            "peer",
            "name",
            &cif,
            "netns",
            ns.name(),
        ])?;
        ip(&[
            "-n",
            vendor,
            "addr",
            "add",
            &format!("{vside}/30"),
            "dev",
            &vif,
        ])?;
        ip(&[
            "-n",
            ns.name(),
            "addr",
            "add",
            &format!("{cside}/30"),
            "dev",
            &cif,
        ])?;
        ip(&["-n", vendor, "link", "set", &vif, "up"])?;
        ip(&["-n", ns.name(), "link", "set", &cif, "up"])?;
        let server = d.server_addr.ip().to_string();
        ip(&[
            "-n",
            ns.name(),
            "route",
            "add",
            &format!("{server}/32"),
            "via",
            &vside.to_string(),
        ])?;
        add_shared_addr(&ns)?;
        let http = http_server(&ns, d.path(), customer, customer)?;

        d.admin_ok(&["customer", "add", customer])?;
        let gk = d.admin_json(&["gatekeeper", "add", "--customer", customer, "gk2"])?;
        let code_file = d.path().join("gk2.code");
        std::fs::write(&code_file, format!("{}\n", json_str(&gk, "code")?))?;
        let state = d.path().join("gatekeeper2");
        let mut reg = ns.command(bin_path("cpam-gatekeeper")?);
        reg.args(["register", "--server", &d.server_addr.to_string()])
            .arg("--code-file")
            .arg(&code_file)
            .arg("--state-dir")
            .arg(&state);
        d.run("gatekeeper2-register", reg)?
            .ok("cpam-gatekeeper register")?;
        let mut gkrun = ns.command(bin_path("cpam-gatekeeper")?);
        gkrun
            .args([
                "run",
                "--allow",
                &format!("{SHARED_ADDR}/32:{HTTP_PORT}"),
                "--state-dir",
            ])
            .arg(&state)
            .env("RUST_LOG", "info");
        let mut gatekeeper = Child::spawn("gatekeeper2", gkrun, d.path())?;
        gatekeeper.wait_for_stderr("gatekeeper online", TIMEOUT)?;
        let target = format!("{SHARED_ADDR}:{HTTP_PORT}");
        d.admin_ok(&[
            "service",
            "add",
            "--customer",
            customer,
            "web",
            "--target",
            &target,
        ])?;
        d.admin_ok(&[
            "grant",
            "add",
            "--user",
            "vendor",
            "--customer",
            customer,
            "--service",
            "web",
        ])?;
        let profile = d.path().join(format!("vendor-{customer}.json"));
        d.admin_ok(&[
            "profile",
            "export",
            "--user",
            "vendor",
            "--gatekeeper",
            "gk2",
            "--out",
            &profile.to_string_lossy(),
            "--server-address",
            &d.server_addr.to_string(),
        ])?;
        Ok(OtherCustomer {
            http,
            gatekeeper,
            profile,
            ns,
        })
    }
}

/// `cpam-connect ipconnect run` in the vendor namespace.
#[derive(Debug)]
pub struct IpConnectRun {
    pub child: Child,
    pub state: PathBuf,
    pub hosts: PathBuf,
}

impl IpConnectRun {
    /// Starts the service over `profiles` (polling every second) and waits
    /// until it runs.
    pub fn start(
        d: &Deployment,
        profiles: &[&Path],
        state: &Path,
        hosts: &Path,
    ) -> anyhow::Result<Self> {
        Self::start_with(d, profiles, state, hosts, &[])
    }

    /// [`IpConnectRun::start`] run through `wrapper` (e.g. `setpriv ...`,
    /// empty for none).
    pub fn start_with(
        d: &Deployment,
        profiles: &[&Path],
        state: &Path,
        hosts: &Path,
        wrapper: &[&str],
    ) -> anyhow::Result<Self> {
        let (first, rest) = profiles.split_first().context("at least one profile")?;
        let connect = bin_path("cpam-connect")?;
        let mut c = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = d.topo.vendor.command(program);
                c.args(args).arg(connect);
                c
            }
            None => d.topo.vendor.command(connect),
        };
        c.arg("--profile")
            .arg(first)
            .args(["ipconnect", "run"])
            .args(rest.iter())
            .arg("--state-dir")
            .arg(state)
            .arg("--hosts-file")
            .arg(hosts)
            .args(["--poll", "1s"])
            .env("RUST_LOG", "info");
        let mut child = d.spawn("ipconnect", c)?;
        child.wait_for_line("cpam-connect ipconnect running", TIMEOUT)?;
        Ok(IpConnectRun {
            child,
            state: state.to_path_buf(),
            hosts: hosts.to_path_buf(),
        })
    }

    /// `ipconnect status` (text, or `None` when it says nothing runs).
    pub fn status_text(&self, d: &Deployment) -> anyhow::Result<Option<String>> {
        let mut c = d.topo.vendor.command(bin_path("cpam-connect")?);
        c.args(["ipconnect", "status", "--state-dir"])
            .arg(&self.state);
        let out = d.run("ipconnect-status", c)?;
        Ok(out.success().then_some(out.stdout))
    }

    /// `ipconnect status --json`, `None` when nothing runs.
    pub fn status(&self, d: &Deployment) -> anyhow::Result<Option<Value>> {
        let mut c = d.topo.vendor.command(bin_path("cpam-connect")?);
        c.args(["ipconnect", "status", "--json", "--state-dir"])
            .arg(&self.state);
        let out = d.run("ipconnect-status", c)?;
        if !out.success() {
            return Ok(None);
        }
        Ok(Some(parse_json(&out.stdout)?))
    }

    /// Waits until exactly `n` mappings are listening; returns them.
    pub fn wait_mappings(&mut self, d: &Deployment, n: usize) -> anyhow::Result<Vec<Value>> {
        let found = wait_until(TIMEOUT, &format!("{n} listening mappings"), || {
            let s = self.status(d).ok()??;
            let m = s["mappings"].as_array()?.clone();
            (m.len() == n && m.iter().all(|x| x["error"].is_null())).then_some(m)
        });
        found.with_context(|| format!("{}\n{}", self.child.logs(), d.logs()))
    }

    /// The local `ADDR:PORT` of `customer`'s `service` among `mappings`.
    pub fn local_of(mappings: &[Value], customer: &str, service: &str) -> anyhow::Result<String> {
        mappings
            .iter()
            .find(|m| m["customer"] == customer && m["service"] == service)
            .and_then(|m| m["local"].as_str())
            .map(str::to_string)
            .with_context(|| format!("no mapping for {customer}/{service} in {mappings:?}"))
    }

    /// `program ARGS` in the vendor namespace, resolving names through the
    /// service's hosts file (when there is one).
    pub fn client(&self, d: &Deployment, program: &str, args: &[&str]) -> Command {
        if !self.hosts.is_file() {
            let mut c = d.topo.vendor.command(program);
            c.args(args);
            return c;
        }
        let mut c = d.topo.vendor.command("unshare");
        c.args([
            "-m",
            "sh",
            "-c",
            "mount --bind \"$0\" /etc/hosts && exec \"$@\"",
        ])
        .arg(&self.hosts)
        .arg(program)
        .args(args);
        c
    }

    /// `ssh -p PORT root@HOST echo hello` (through the hosts file).
    pub fn ssh_echo(&self, d: &Deployment, host: &str, port: u16) -> anyhow::Result<()> {
        let key = d.key().to_string_lossy().to_string();
        let dest = format!("root@{host}");
        let port = port.to_string();
        let args = [
            "-F",
            "/dev/null",
            "-i",
            &key,
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=10",
            "-p",
            &port,
            &dest,
            "echo",
            "hello",
        ];
        let out = d.run("ssh-ipconnect", self.client(d, "ssh", &args))?;
        if !out.success() || out.stdout.trim() != "hello" {
            bail!(
                "ssh to {dest}:{port} through IP Connect failed ({}): {}\n{}",
                out.status,
                out.stderr.trim(),
                self.child.logs()
            );
        }
        Ok(())
    }

    /// `curl URL` (through the hosts file): its exit code, body and stderr.
    pub fn curl(&self, d: &Deployment, url: &str) -> anyhow::Result<(i32, String, String)> {
        let out = run(
            "curl-ipconnect",
            self.client(d, "curl", &["-sS", "--max-time", "10", url]),
            d.path(),
            TIMEOUT,
        )?;
        Ok((out.status.code().unwrap_or(-1), out.stdout, out.stderr))
    }

    /// The hosts file's text.
    pub fn hosts_text(&self) -> anyhow::Result<String> {
        std::fs::read_to_string(&self.hosts).context("reading the test's hosts file")
    }

    /// SIGTERM, then waits for the exit.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        self.child.signal(15)?;
        match self.child.wait_timeout(TIMEOUT)? {
            Some(s) if s.success() => Ok(()),
            Some(s) => bail!("ipconnect exited with {s}\n{}", self.child.logs()),
            None => bail!("ipconnect did not stop\n{}", self.child.logs()),
        }
    }
}
