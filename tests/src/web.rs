//! The web console and REST API from a test's side: a `cpam-server run`
//! with its console on loopback ([`WebServer`]) and an HTTP client that
//! trusts exactly that server's generated certificate, signs in, keeps the
//! session cookie and CSRF token, and can act with a bearer token instead
//! ([`WebClient`]).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::blocking::{Client, RequestBuilder};
use reqwest::header::{HeaderMap, SET_COOKIE};
use serde_json::Value;

use crate::bins::bin_path;
use crate::process::{Child, run};

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How [`WebServer::start`] sets up the server.
#[derive(Debug, Clone)]
pub struct WebOptions {
    /// The SSH address (`init --listen`).
    pub ssh_listen: String,
    /// `web_idle_timeout_secs` in config.json.
    pub idle_timeout_secs: Option<u64>,
    /// Serve plain HTTP on loopback instead of TLS.
    pub insecure_http: bool,
    /// Runs `cpam-server run` in this network namespace (`ip netns exec`).
    pub netns: Option<String>,
    /// Serves the console below this path (`run --web-base-path`).
    pub base_path: Option<String>,
}

impl Default for WebOptions {
    fn default() -> Self {
        WebOptions {
            ssh_listen: "127.0.0.1:0".into(),
            idle_timeout_secs: None,
            insecure_http: false,
            netns: None,
            base_path: None,
        }
    }
}

/// The first administrator every [`WebServer`] is initialised with.
pub const ADMIN_USER: &str = "admin";
/// Its password.
pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";

/// A running `cpam-server run` with its console.
#[derive(Debug)]
pub struct WebServer {
    pub server: Child,
    /// `https://127.0.0.1:PORT` (or `http://` with `insecure_http`), with
    /// the base path if there is one (`https://127.0.0.1:PORT/pam`).
    pub url: String,
    /// The server's SSH address as printed.
    pub ssh_addr: String,
    pub data_dir: PathBuf,
    /// The console certificate (PEM) to trust.
    pub cert_pem: Vec<u8>,
    pub dir: tempfile::TempDir,
}

impl WebServer {
    /// `init --admin-user admin` then `run` with the console on 127.0.0.1:0.
    pub fn start(opts: WebOptions) -> anyhow::Result<WebServer> {
        let dir = tempfile::Builder::new().prefix("cpam-web-").tempdir()?;
        let data_dir = dir.path().join("server");
        let mut init = Command::new(bin_path("cpam-server")?);
        init.args([
            "init",
            "--listen",
            &opts.ssh_listen,
            "--admin-user",
            ADMIN_USER,
        ])
        .args(["--web-listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data_dir)
        .env("CPAM_ADMIN_PASSWORD", ADMIN_PASSWORD);
        run("server-init", init, dir.path(), START_TIMEOUT)?.ok("cpam-server init")?;
        if let Some(secs) = opts.idle_timeout_secs {
            let path = data_dir.join("config.json");
            let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
            config["web_idle_timeout_secs"] = Value::from(secs);
            std::fs::write(&path, serde_json::to_string_pretty(&config)?)?;
        }
        let mut cmd = match &opts.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin_path("cpam-server")?);
                c
            }
            None => Command::new(bin_path("cpam-server")?),
        };
        cmd.args(["run", "--data-dir"])
            .arg(&data_dir)
            .env("CPAM_LOG", "info");
        if opts.insecure_http {
            cmd.arg("--web-insecure-http");
        }
        if let Some(base) = &opts.base_path {
            cmd.args(["--web-base-path", base]);
        }
        let mut server = Child::spawn("server", cmd, dir.path())?;
        let ssh_addr = server.wait_for_line("cpam-server listening on ", START_TIMEOUT)?;
        let url = server
            .wait_for_line("cpam-server console on ", START_TIMEOUT)?
            .trim_end_matches('/')
            .to_string();
        let cert_pem = std::fs::read(data_dir.join("web_cert.pem"))
            .context("reading the console certificate init generated")?;
        Ok(WebServer {
            server,
            url,
            ssh_addr,
            data_dir,
            cert_pem,
            dir,
        })
    }

    /// A client for this server, not signed in.
    pub fn client(&self) -> anyhow::Result<WebClient> {
        WebClient::new(&self.url, &self.cert_pem)
    }

    /// A client signed in as the first administrator.
    pub fn admin(&self) -> anyhow::Result<WebClient> {
        let mut c = self.client()?;
        c.login(ADMIN_USER, ADMIN_PASSWORD)?
            .expect(200, "admin login")?;
        Ok(c)
    }

    /// The server's logs (for failure messages).
    pub fn logs(&self) -> String {
        self.server.logs()
    }

    /// Runs an admin CLI command against the data dir (`--json` added).
    pub fn cli_json(&self, args: &[&str]) -> anyhow::Result<Value> {
        let mut c = Command::new(bin_path("cpam-server")?);
        c.args(args)
            .arg("--json")
            .arg("--data-dir")
            .arg(&self.data_dir);
        let out = run("cli", c, self.dir.path(), START_TIMEOUT)?.ok(&args.join(" "))?;
        serde_json::from_str(out.stdout.trim()).with_context(|| format!("not JSON: {}", out.stdout))
    }

    /// The temporary directory of this server.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// One HTTP answer, body read in full.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_str(&self.body)
            .with_context(|| format!("status {}: body is not JSON: {}", self.status, self.body))
    }

    /// The stable error code of an error answer.
    pub fn code(&self) -> Option<String> {
        let v: Value = serde_json::from_str(&self.body).ok()?;
        v["error"]["code"].as_str().map(str::to_string)
    }

    /// Fails unless the status is `status`; returns self for chaining.
    pub fn expect(self, status: u16, what: &str) -> anyhow::Result<Reply> {
        if self.status != status {
            bail!(
                "{what}: expected {status}, got {}: {}",
                self.status,
                self.body
            );
        }
        Ok(self)
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

/// An API client. Signed in with a cookie (and the CSRF token), or with a
/// bearer token, or neither.
#[derive(Debug, Clone)]
pub struct WebClient {
    http: Client,
    pub base: String,
    /// The `cpam_session` cookie value.
    pub cookie: Option<String>,
    /// The session's CSRF token, sent on changes.
    pub csrf: Option<String>,
    pub bearer: Option<String>,
}

impl WebClient {
    /// A client for `base` that trusts only `cert_pem` (any scheme works for http).
    pub fn new(base: &str, cert_pem: &[u8]) -> anyhow::Result<WebClient> {
        let cert = reqwest::Certificate::from_pem(cert_pem).context("console certificate")?;
        let http = Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(cert)
            .https_only(base.starts_with("https://"))
            .timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the HTTP client")?;
        Ok(WebClient {
            http,
            base: base.trim_end_matches('/').to_string(),
            cookie: None,
            csrf: None,
            bearer: None,
        })
    }

    /// This client acting with bearer `token` and no cookie.
    pub fn with_bearer(&self, token: &str) -> WebClient {
        WebClient {
            cookie: None,
            csrf: None,
            bearer: Some(token.to_string()),
            ..self.clone()
        }
    }

    /// Signs in; on success keeps the new cookie and CSRF token.
    pub fn login(&mut self, user: &str, password: &str) -> anyhow::Result<Reply> {
        let body = serde_json::json!({ "username": user, "password": password });
        let mut req = self
            .http
            .post(format!("{}/api/v1/auth/login", self.base))
            .header("X-Requested-With", "cpam")
            .json(&body);
        if let Some(c) = &self.cookie {
            req = req.header("Cookie", format!("cpam_session={c}"));
        }
        let reply = finish(req)?;
        if reply.status == 200 {
            self.cookie = session_cookie(&reply.headers);
            self.csrf = reply.json()?["csrf_token"].as_str().map(str::to_string);
        }
        Ok(reply)
    }

    /// A request with this client's credentials (cookie + CSRF token on
    /// changes, or bearer).
    pub fn send(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Reply> {
        finish(self.request(method, path, body, true)?)
    }

    /// Like [`WebClient::send`] but without the CSRF header.
    pub fn send_without_csrf(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Reply> {
        finish(self.request(method, path, body, false)?)
    }

    /// The request [`WebClient::send`] would make, to add headers or stream.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        csrf: bool,
    ) -> anyhow::Result<RequestBuilder> {
        let method: reqwest::Method = method.parse().context("HTTP method")?;
        let changes = !matches!(method, reqwest::Method::GET | reqwest::Method::HEAD);
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.header("Cookie", format!("cpam_session={c}"));
        }
        if let (true, true, Some(t)) = (changes, csrf, &self.csrf) {
            req = req.header("X-CSRF-Token", t);
        }
        if let Some(t) = &self.bearer {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        Ok(req)
    }

    /// GET `path`, expecting 200 JSON.
    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send("GET", path, None)?
            .expect(200, &format!("GET {path}"))?
            .json()
    }

    /// POST `body` to `path`, expecting 200 or 201 JSON.
    pub fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let r = self.send("POST", path, Some(body))?;
        if r.status != 200 && r.status != 201 {
            bail!("POST {path}: {} {}", r.status, r.body);
        }
        r.json()
    }

    /// `method` on `path`, expecting `status`.
    pub fn expect(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        status: u16,
    ) -> anyhow::Result<Reply> {
        self.send(method, path, body)?
            .expect(status, &format!("{method} {path}"))
    }
}

fn finish(req: RequestBuilder) -> anyhow::Result<Reply> {
    let resp = req.send().context("HTTP request")?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.text().context("reading the HTTP body")?;
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// The `cpam_session` value a `Set-Cookie` header sets.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("cpam_session="))
        .map(|v| v.split(';').next().unwrap_or("").to_string())
        .filter(|v| !v.is_empty())
}

/// One network namespace joined to the host by a veth pair, so that a
/// server on the host (reachable by the test's HTTP client on loopback) and
/// a gatekeeper and target inside the namespace see each other only through
/// `host_addr`.
#[derive(Debug)]
pub struct HostLink {
    pub ns: crate::netns::Netns,
    /// The host's end (`10.214.x.1`).
    pub host_addr: std::net::Ipv4Addr,
    host_if: String,
}

impl HostLink {
    /// Creates the namespace and the link; unique per process and call.
    pub fn create() -> anyhow::Result<HostLink> {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        crate::netns::remove_stale();
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let pid = std::process::id();
        let ns = crate::netns::Netns::create(&format!("cpam-w-{pid}-{n}"))?;
        let slot = (pid.wrapping_mul(16).wrapping_add(n)) % 16384;
        let base = u32::from(std::net::Ipv4Addr::new(10, 214, 0, 0)) + slot * 4;
        let host_addr = std::net::Ipv4Addr::from(base + 1);
        let ns_addr = std::net::Ipv4Addr::from(base + 2);
        let host_if = format!("wh{:x}", (pid * 16 + n) % 0xfff_ffff);
        let ns_if = format!("wn{:x}", (pid * 16 + n) % 0xfff_ffff);
        let ip = |args: &[&str]| -> anyhow::Result<()> {
            let out = Command::new("ip").args(args).output().with_context(
                || "cannot run `ip`: the web e2e test needs iproute2 and root (bash tests/run.sh)",
            )?;
            if !out.status.success() {
                bail!(
                    "`ip {}` failed: {} (the web e2e test needs root)",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            Ok(())
        };
        ip(&[
            "link",
            "add",
            &host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns_if,
            "netns",
            ns.name(),
        ])?;
        let link = HostLink {
            ns,
            host_addr,
            host_if: host_if.clone(),
        };
        ip(&["addr", "add", &format!("{host_addr}/30"), "dev", &host_if])?;
        ip(&["link", "set", &host_if, "up"])?;
        let name = link.ns.name().to_string();
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("{ns_addr}/30"),
            "dev",
            &ns_if,
        ])?;
        ip(&["-n", &name, "link", "set", &ns_if, "up"])?;
        Ok(link)
    }
}

impl Drop for HostLink {
    fn drop(&mut self) {
        // Deleting the namespace removes the pair too; this covers the host end
        // if the namespace outlives us.
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
    }
}
