//! A whole cpam deployment across the two namespaces, driven through the
//! documented CLI (`docs/cli.md`):
//!
//! ```text
//! vendor ns:   ssh/scp -> cpam-connect forward ssh -> cpam-server run
//!                                                        ^ (gatekeeper dials out)
//! customer ns: cpam-gatekeeper run -> sshd 127.0.0.1:2022 (and :2023, not allowed)
//! ```
//!
//! Admin commands (`cpam-server ... --data-dir D`) need no network and run
//! directly.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::bins::bin_path;
use crate::netns::Topology;
use crate::process::{Child, Output, run};
use crate::sshd::{Sshd, scp_cmd, ssh_cmd};
use crate::wait_until;

/// The target sshd's port, allowed by the gatekeeper.
pub const SSHD_PORT: u16 = 2022;
/// A second port the same sshd serves, outside the gatekeeper's allow-list.
pub const SSHD_DENIED_PORT: u16 = 2023;
/// The port an RDP target listens on in the customer namespace (`rdp.rs`).
pub const RDP_PORT: u16 = 3389;
/// The gatekeeper's allow-list in every deployment.
pub const ALLOW: &str = "127.0.0.0/8:22,2022,3389";

const CMD_TIMEOUT: Duration = Duration::from_secs(60);
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How [`Deployment::start_with`] sets things up.
#[derive(Debug, Clone)]
pub struct Options {
    /// Add the standard grant (vendor -> acme/ssh, no end).
    pub grant: bool,
    /// The database URL given to `init` (default: SQLite in the data dir).
    pub database: Option<String>,
    /// The server's `--node-id`.
    pub node_id: Option<String>,
    /// The target sshd also takes password logins.
    pub sshd_passwords: bool,
    /// The login password of user `vendor` (none by default).
    pub vendor_password: Option<String>,
    /// Written as `hub_limits` into the server's `config.json` before it starts.
    pub hub_limits: Option<serde_json::Value>,
    /// Rules the gatekeeper allows beside [`ALLOW`].
    pub extra_allow: Vec<String>,
    /// Record to an S3 store (moto, started in the vendor ns) under this
    /// prefix instead of the data dir.
    pub recordings_s3: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            grant: true,
            database: None,
            node_id: None,
            sshd_passwords: false,
            vendor_password: None,
            hub_limits: None,
            extra_allow: Vec::new(),
            recordings_s3: None,
        }
    }
}

/// A running deployment. Drop order kills processes first, then deletes the
/// namespaces, then the temporary directory. On drop it prints every
/// process's logs to stderr, which the test runner shows only for failures.
#[derive(Debug)]
pub struct Deployment {
    pub connect: Child,
    /// The local port `cpam-connect forward ssh` listens on (vendor ns).
    pub connect_port: u16,
    pub gatekeeper: Child,
    pub server: Option<Child>,
    pub sshd: Sshd,
    /// The server's SSH address on the vendor veth (`10.213.x.1:PORT`).
    pub server_addr: SocketAddr,
    /// The server's `--node-id`, if the test gave one.
    pub node_id: Option<String>,
    pub data_dir: PathBuf,
    pub gk_state: PathBuf,
    pub profile: PathBuf,
    /// Extra processes started by a test, killed with the deployment.
    pub extra: Vec<Child>,
    /// The object store recordings go to ([`Options::recordings_s3`]).
    pub s3: Option<crate::s3::S3>,
    /// The environment every `cpam-server run` of the deployment gets.
    pub server_env: Vec<(String, String)>,
    pub topo: Topology,
    pub dir: tempfile::TempDir,
}

impl Deployment {
    /// The standard deployment, with the standard grant.
    pub fn start() -> anyhow::Result<Deployment> {
        Deployment::start_with(Options::default())
    }

    /// The standard deployment: server, registered gatekeeper `gk1` of
    /// customer `acme`, user `vendor`, service `ssh` -> the target sshd,
    /// an exported profile and `cpam-connect forward ssh`.
    pub fn start_with(opts: Options) -> anyhow::Result<Deployment> {
        for b in ["cpam-server", "cpam-gatekeeper", "cpam-connect"] {
            bin_path(b)?;
        }
        let dir = tempfile::Builder::new().prefix("cpam-e2e-").tempdir()?;
        let topo = Topology::create()?;
        let sshd = Sshd::start_with(
            &topo.customer,
            dir.path(),
            &[SSHD_PORT, SSHD_DENIED_PORT],
            opts.sshd_passwords,
        )?;
        let data_dir = dir.path().join("server");
        let gk_state = dir.path().join("gatekeeper");
        let profile = dir.path().join("vendor-profile.json");
        let d = dir.path().to_path_buf();

        let server_cmd = |args: &[&str]| -> anyhow::Result<Command> {
            let mut c = Command::new(bin_path("cpam-server")?);
            c.args(args).arg("--data-dir").arg(&data_dir);
            Ok(c)
        };
        let listen = format!("{}:0", topo.vendor_addr);
        let mut init = vec!["init", "--listen", &listen];
        if let Some(url) = &opts.database {
            init.extend(["--database", url]);
        }
        run("server-init", server_cmd(&init)?, &d, CMD_TIMEOUT)?.ok("cpam-server init")?;
        if let Some(limits) = &opts.hub_limits {
            let path = data_dir.join("config.json");
            let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
            config["hub_limits"] = limits.clone();
            std::fs::write(&path, serde_json::to_string_pretty(&config)?)?;
        }
        let s3 = match &opts.recordings_s3 {
            Some(_) => Some(crate::s3::S3::start(Some(&topo.vendor), &d)?),
            None => None,
        };
        let server_env = match (&s3, &opts.recordings_s3) {
            (Some(s3), Some(prefix)) => s3.env(prefix),
            _ => Vec::new(),
        };
        let node = opts.node_id.as_deref();
        let (server, server_addr) = spawn_server(&topo, &d, &data_dir, &listen, node, &server_env)?;
        let admin = |args: &[&str]| -> anyhow::Result<Output> {
            run(
                &format!("admin-{}", args.join("-")),
                server_cmd(args)?,
                &d,
                CMD_TIMEOUT,
            )?
            .ok(&format!("cpam-server {}", args.join(" ")))
        };
        admin(&["customer", "add", "acme"])?;
        let gk = admin(&["gatekeeper", "add", "--customer", "acme", "gk1", "--json"])?;
        let code = json_str(&parse_json(&gk.stdout)?, "code")?;

        // The code goes through a file, never the process arguments.
        let code_file = d.join("gk1.code");
        std::fs::write(&code_file, format!("{code}\n"))?;
        let mut reg = topo.customer.command(bin_path("cpam-gatekeeper")?);
        reg.args(["register", "--server", &server_addr.to_string()])
            .arg("--code-file")
            .arg(&code_file)
            .arg("--state-dir")
            .arg(&gk_state);
        run("gatekeeper-register", reg, &d, CMD_TIMEOUT)?.ok("cpam-gatekeeper register")?;
        let mut gkrun = topo.customer.command(bin_path("cpam-gatekeeper")?);
        gkrun
            .args(["run", "--allow", ALLOW, "--state-dir"])
            .arg(&gk_state)
            .env("RUST_LOG", "info");
        for rule in &opts.extra_allow {
            gkrun.args(["--allow", rule]);
        }
        let mut gatekeeper = Child::spawn("gatekeeper", gkrun, &d)?;
        gatekeeper
            .wait_for_stderr("gatekeeper online", START_TIMEOUT)
            .map_err(|e| anyhow::anyhow!("{e}\n{}", server.logs()))?;

        match &opts.vendor_password {
            None => {
                admin(&["user", "add", "vendor"])?;
            }
            Some(password) => {
                let add = server_cmd(&["user", "add", "vendor", "--password-stdin"])?;
                crate::process::run_with_input(
                    "admin-user-add-vendor",
                    add,
                    &d,
                    CMD_TIMEOUT,
                    format!("{password}\n").as_bytes(),
                )?
                .ok("cpam-server user add vendor --password-stdin")?;
            }
        }
        let target = format!("127.0.0.1:{SSHD_PORT}");
        admin(&[
            "service",
            "add",
            "--customer",
            "acme",
            "ssh",
            "--target",
            &target,
        ])?;
        if opts.grant {
            admin(&[
                "grant",
                "add",
                "--user",
                "vendor",
                "--customer",
                "acme",
                "--service",
                "ssh",
            ])?;
        }
        let profile_s = profile.to_string_lossy().to_string();
        admin(&[
            "profile",
            "export",
            "--user",
            "vendor",
            "--gatekeeper",
            "gk1",
            "--out",
            &profile_s,
            "--server-address",
            &server_addr.to_string(),
        ])?;
        let (connect, connect_port) = spawn_forward(&topo, &d, &profile, "ssh")
            .map_err(|e| anyhow::anyhow!("{e}\n{}\n{}", server.logs(), gatekeeper.logs()))?;
        Ok(Deployment {
            connect,
            connect_port,
            gatekeeper,
            server: Some(server),
            sshd,
            server_addr,
            node_id: opts.node_id,
            data_dir,
            gk_state,
            profile,
            extra: Vec::new(),
            s3,
            server_env,
            topo,
            dir,
        })
    }

    /// The test's temporary directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The client key the target sshd authorises.
    pub fn key(&self) -> &Path {
        &self.sshd.client_key
    }

    /// Runs `cmd` to completion, output captured in the test directory.
    pub fn run(&self, name: &str, cmd: Command) -> anyhow::Result<Output> {
        run(name, cmd, self.path(), CMD_TIMEOUT)
    }

    /// Spawns `cmd` with output captured in the test directory.
    pub fn spawn(&self, name: &str, cmd: Command) -> anyhow::Result<Child> {
        Child::spawn(name, cmd, self.path())
    }

    /// `cpam-server ARGS --data-dir D`, run directly (no network needed).
    pub fn admin(&self, args: &[&str]) -> anyhow::Result<Output> {
        let mut c = Command::new(bin_path("cpam-server")?);
        c.args(args).arg("--data-dir").arg(&self.data_dir);
        self.run(&format!("admin-{}", args.join("-")), c)
    }

    /// Like [`Deployment::admin`], failing unless it exits 0; returns stdout.
    pub fn admin_ok(&self, args: &[&str]) -> anyhow::Result<String> {
        Ok(self
            .admin(args)?
            .ok(&format!("cpam-server {}", args.join(" ")))?
            .stdout)
    }

    /// `cpam-server ARGS --json`, parsed.
    pub fn admin_json(&self, args: &[&str]) -> anyhow::Result<Value> {
        let mut a = args.to_vec();
        a.push("--json");
        parse_json(&self.admin_ok(&a)?)
    }

    /// All sessions (`sessions list --json`).
    pub fn sessions(&self) -> anyhow::Result<Vec<Value>> {
        as_list(self.admin_json(&["sessions", "list", "--limit", "100000"])?)
    }

    /// Live sessions (`sessions list --live --json`).
    pub fn live_sessions(&self) -> anyhow::Result<Vec<Value>> {
        as_list(self.admin_json(&["sessions", "list", "--live", "--limit", "100000"])?)
    }

    /// One session by id.
    pub fn session(&self, id: &str) -> anyhow::Result<Option<Value>> {
        Ok(self
            .sessions()?
            .into_iter()
            .find(|s| s.get("id").and_then(Value::as_str) == Some(id)))
    }

    /// Waits for the one live session there should be and returns its id.
    pub fn wait_live_session(&self) -> anyhow::Result<String> {
        wait_until(Duration::from_secs(20), "a live session", || {
            let live = self.live_sessions().ok()?;
            live.first()
                .and_then(|s| s.get("id"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .with_context(|| self.logs())
    }

    /// Waits until session `id` has ended and returns it.
    pub fn wait_session_ended(&self, id: &str) -> anyhow::Result<Value> {
        wait_until(
            Duration::from_secs(20),
            "the session to be recorded as ended",
            || {
                self.session(id)
                    .ok()
                    .flatten()
                    .filter(|s| s.get("end_reason").is_some_and(|r| !r.is_null()))
            },
        )
        .with_context(|| self.logs())
    }

    /// The audit log (`audit list --json`).
    pub fn audit(&self) -> anyhow::Result<Vec<Value>> {
        as_list(self.admin_json(&["audit", "list", "--limit", "100000"])?)
    }

    /// The highest audit sequence number so far (0 if empty).
    pub fn audit_seq(&self) -> anyhow::Result<i64> {
        Ok(self
            .audit()?
            .iter()
            .filter_map(|r| r.get("seq").and_then(Value::as_i64))
            .max()
            .unwrap_or(0))
    }

    /// Fails unless an audit record after `since` records a refusal (`what`
    /// names the attempt in the message).
    pub fn expect_refusal_audited(&self, since: i64, what: &str) -> anyhow::Result<Value> {
        wait_until(
            Duration::from_secs(10),
            &format!("a refusal audit record for {what}"),
            || {
                self.audit()
                    .ok()?
                    .into_iter()
                    .filter(|r| r.get("seq").and_then(Value::as_i64).unwrap_or(0) > since)
                    .find(is_refusal)
            },
        )
        .with_context(|| format!("audit log: {:#?}", self.audit().unwrap_or_default()))
    }

    /// `audit verify` exits 0 and reports an intact chain.
    pub fn expect_audit_intact(&self) -> anyhow::Result<()> {
        let out = self.admin(&["audit", "verify"])?;
        if !out.success() || !out.stdout.contains("audit chain intact") {
            bail!(
                "audit verify: {} / {} / {}",
                out.status,
                out.stdout.trim(),
                out.stderr.trim()
            );
        }
        Ok(())
    }

    /// `ssh` through `cpam-connect`'s listener on `port` (vendor ns).
    pub fn ssh_on(&self, port: u16, args: &[&str]) -> Command {
        ssh_cmd(&self.topo.vendor, self.key(), port, args)
    }

    /// `ssh` through the standard forward (vendor ns).
    pub fn ssh(&self, args: &[&str]) -> Command {
        self.ssh_on(self.connect_port, args)
    }

    /// `scp FROM TO` through the standard forward (vendor ns).
    pub fn scp(&self, from: &str, to: &str) -> Command {
        scp_cmd(&self.topo.vendor, self.key(), self.connect_port, from, to)
    }

    /// Fails unless `ssh ... echo hello` through `port` prints `hello`.
    pub fn expect_ssh_works_on(&self, port: u16) -> anyhow::Result<()> {
        let out = self.run("ssh-echo", self.ssh_on(port, &["echo", "hello"]))?;
        if !out.success() || out.stdout.trim() != "hello" {
            bail!(
                "ssh through the tunnel failed ({}): {}\n{}",
                out.status,
                out.stderr.trim(),
                self.logs()
            );
        }
        Ok(())
    }

    /// Fails unless a normal session works and the server is still running.
    pub fn expect_still_serving(&mut self) -> anyhow::Result<()> {
        if let Some(s) = self.server.as_mut()
            && !s.is_running()
        {
            bail!("cpam-server exited\n{}", s.logs());
        }
        self.expect_ssh_works_on(self.connect_port)
    }

    /// Fails unless `ssh ... true` through `port` fails.
    pub fn expect_ssh_refused_on(&self, port: u16, what: &str) -> anyhow::Result<Output> {
        let out = self.run("ssh-refused", self.ssh_on(port, &["echo", "hello"]))?;
        if out.success() || out.stdout.contains("hello") {
            bail!("{what}: ssh got through the tunnel\n{}", self.logs());
        }
        Ok(out)
    }

    /// `cpam-connect --profile PROFILE ARGS` in the vendor ns.
    pub fn connect_cmd(&self, args: &[&str]) -> anyhow::Result<Command> {
        let mut c = self.topo.vendor.command(bin_path("cpam-connect")?);
        c.arg("--profile").arg(&self.profile).args(args);
        Ok(c)
    }

    /// `cpam-gatekeeper ARGS --state-dir G` in the customer ns.
    pub fn gatekeeper_cmd(&self, args: &[&str]) -> anyhow::Result<Command> {
        let mut c = self.topo.customer.command(bin_path("cpam-gatekeeper")?);
        c.args(args).arg("--state-dir").arg(&self.gk_state);
        Ok(c)
    }

    /// Starts `cpam-connect --profile PROFILE forward SERVICE` on a free
    /// port in the vendor ns; the child is kept in `extra`.
    /// `/readyz` of the console at `console` (a URL the server printed),
    /// fetched inside the vendor namespace: (status, body).
    pub fn readyz(&self, console: &str) -> anyhow::Result<(u16, String)> {
        let url = format!("{}/readyz", console.trim_end_matches('/'));
        let out = self
            .topo
            .vendor
            .command("curl")
            .args(["-k", "-s", "-m", "10", "-w", "\n%{http_code}", &url])
            .output()
            .context("running curl")?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
        Ok((code.trim().parse().unwrap_or(0), body.to_string()))
    }

    pub fn forward(&mut self, profile: &Path, service: &str) -> anyhow::Result<u16> {
        let (child, port) = spawn_forward(&self.topo, self.dir.path(), profile, service)?;
        self.extra.push(child);
        Ok(port)
    }

    /// Kills `cpam-server` (SIGKILL by pid) and reaps it.
    pub fn kill_server(&mut self) -> anyhow::Result<()> {
        if let Some(mut s) = self.server.take() {
            s.kill()?;
            self.extra.push(s);
        }
        Ok(())
    }

    /// Starts `cpam-server run` again on the same data dir and address.
    pub fn restart_server(&mut self) -> anyhow::Result<()> {
        self.kill_server()?;
        let (server, addr) = spawn_server(
            &self.topo,
            self.dir.path(),
            &self.data_dir,
            &self.server_addr.to_string(),
            self.node_id.as_deref(),
            &self.server_env,
        )?;
        if addr != self.server_addr {
            bail!(
                "restarted server listens on {addr}, asked for {}",
                self.server_addr
            );
        }
        self.server = Some(server);
        Ok(())
    }

    /// Starts another `cpam-server run` (a second node, `--node-id NODE`)
    /// over `data_dir` on a free port in the vendor ns, with the
    /// deployment's server environment (its recording store); the child is
    /// kept in `extra`. Returns its SSH address.
    pub fn spawn_node(&mut self, data_dir: &Path, node: &str) -> anyhow::Result<SocketAddr> {
        let listen = format!("{}:0", self.topo.vendor_addr);
        let (child, addr) = spawn_server(
            &self.topo,
            self.dir.path(),
            data_dir,
            &listen,
            Some(node),
            &self.server_env,
        )?;
        self.extra.push(child);
        Ok(addr)
    }

    /// Adds node `node` to a deployment on the shared database `db`: a data
    /// dir of its own (`cpam-server init`, console on a free port), the
    /// deployment's vault key and hub host key (every node of a cluster
    /// shares both: gatekeepers and profiles pin the host key), and
    /// [`Deployment::spawn_node`]. Returns its data dir and SSH address.
    pub fn add_node(&mut self, node: &str, db: &str) -> anyhow::Result<(PathBuf, SocketAddr)> {
        let dir = self.path().join(format!("server-{node}"));
        self.admin_of(
            &dir,
            &[
                "init",
                "--listen",
                "127.0.0.1:0",
                "--database",
                db,
                "--web-listen",
                "127.0.0.1:0",
            ],
        )?;
        for file in ["vault.key", "host_key"] {
            std::fs::copy(self.data_dir.join(file), dir.join(file))
                .with_context(|| format!("copying {file} to {node}"))?;
        }
        let addr = self.spawn_node(&dir, node)?;
        Ok((dir, addr))
    }

    /// `cpam-server ARGS --data-dir DATA_DIR` for another node's data dir.
    pub fn admin_of(&self, data_dir: &Path, args: &[&str]) -> anyhow::Result<String> {
        let mut c = Command::new(bin_path("cpam-server")?);
        c.args(args).arg("--data-dir").arg(data_dir);
        let name = format!("admin-{}", args.join("-"));
        Ok(run(&name, c, self.dir.path(), CMD_TIMEOUT)?
            .ok(&format!("cpam-server {}", args.join(" ")))?
            .stdout)
    }

    /// Every process's captured output.
    pub fn logs(&self) -> String {
        let mut all = vec![&self.sshd.child, &self.gatekeeper, &self.connect];
        all.extend(self.server.iter());
        all.extend(self.extra.iter());
        all.iter().map(|c| c.logs()).collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        eprintln!("{}", self.logs());
    }
}

fn spawn_server(
    topo: &Topology,
    dir: &Path,
    data_dir: &Path,
    listen: &str,
    node: Option<&str>,
    env: &[(String, String)],
) -> anyhow::Result<(Child, SocketAddr)> {
    let mut c = topo.vendor.command(bin_path("cpam-server")?);
    c.args(["run", "--listen", listen, "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "info")
        .envs(env.iter().map(|(k, v)| (k, v)));
    if let Some(node) = node {
        c.args(["--node-id", node]);
    }
    let mut server = Child::spawn("server", c, dir)?;
    let addr = server.wait_for_line("cpam-server listening on ", START_TIMEOUT)?;
    let addr: SocketAddr = addr
        .parse()
        .with_context(|| format!("server printed a bad address `{addr}`"))?;
    Ok((server, addr))
}

fn spawn_forward(
    topo: &Topology,
    dir: &Path,
    profile: &Path,
    service: &str,
) -> anyhow::Result<(Child, u16)> {
    let mut c = topo.vendor.command(bin_path("cpam-connect")?);
    c.arg("--profile")
        .arg(profile)
        .args(["forward", service, "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info");
    let mut child = Child::spawn(&format!("connect-{service}"), c, dir)?;
    let prefix = format!("cpam-connect forwarding {service} on ");
    let addr = child.wait_for_line(&prefix, START_TIMEOUT)?;
    let addr: SocketAddr = addr
        .parse()
        .with_context(|| format!("cpam-connect printed a bad address `{addr}`"))?;
    Ok((child, addr.port()))
}

/// Parses one JSON document.
pub fn parse_json(s: &str) -> anyhow::Result<Value> {
    serde_json::from_str(s.trim()).with_context(|| format!("not one JSON document: {s}"))
}

/// A string field of a JSON object.
pub fn json_str(v: &Value, field: &str) -> anyhow::Result<String> {
    v.get(field)
        .and_then(Value::as_str)
        .map(str::to_string)
        .with_context(|| format!("no string `{field}` in {v}"))
}

/// A list document: an array, or an object holding one array.
pub fn as_list(v: Value) -> anyhow::Result<Vec<Value>> {
    match v {
        Value::Array(a) => Ok(a),
        Value::Object(o) => o
            .into_iter()
            .find_map(|(_, v)| match v {
                Value::Array(a) => Some(a),
                _ => None,
            })
            .context("JSON object holds no list"),
        other => bail!("expected a JSON list, got {other}"),
    }
}

/// A timestamp field as milliseconds since the epoch (number, or RFC 3339).
pub fn json_millis(v: &Value, field: &str) -> anyhow::Result<i64> {
    match v.get(field) {
        Some(Value::Number(n)) => n.as_i64().context("timestamp out of range"),
        Some(Value::String(s)) => Ok(cpam_core::model::Timestamp::parse_rfc3339(s)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .millis()),
        _ => bail!("no timestamp `{field}` in {v}"),
    }
}

/// A session's target as `HOST:PORT` (object or string form).
pub fn target_str(session: &Value) -> String {
    match session.get("target") {
        Some(Value::String(s)) => s.clone(),
        Some(t) => format!(
            "{}:{}",
            t.get("host").and_then(Value::as_str).unwrap_or_default(),
            t.get("port").and_then(Value::as_u64).unwrap_or_default()
        ),
        None => String::new(),
    }
}

/// Whether an audit record records something refused: a refusal, denial or
/// failure in its action, or a session that ended `refused`.
pub fn is_refusal(r: &Value) -> bool {
    let action = r
        .get("action")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_ascii_lowercase();
    let detail = r.get("detail").map(Value::to_string).unwrap_or_default();
    [
        "refus", "denied", "deny", "fail", "reject", "invalid", "error",
    ]
    .iter()
    .any(|k| action.contains(k))
        || detail.contains("\"refused\"")
}
