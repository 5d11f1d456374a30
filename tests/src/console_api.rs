//! The console's REST API, from inside a [`Deployment`]'s vendor namespace
//! (where `cpam-server run` serves the console on loopback): stock `curl`
//! trusting the console's own certificate, signed in as an administrator
//! with the session cookie and CSRF token the console's pages send.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::bins::bin_path;
use crate::cpam::Deployment;
use crate::process::run_with_input;

const TIMEOUT: Duration = Duration::from_secs(60);
/// The role every console administrator made here gets.
const ADMIN_ROLE: &str = "System Administrator";

/// An administrator signed in to a deployment's console.
#[derive(Debug)]
pub struct ConsoleApi {
    /// `https://127.0.0.1:PORT` as the server printed it.
    pub base: String,
    cert: PathBuf,
    jar: PathBuf,
    csrf: String,
}

impl ConsoleApi {
    /// Adds `name` as a System Administrator (through the CLI, as an
    /// operator would for the first one) and signs in as them.
    pub fn admin(d: &Deployment, name: &str) -> anyhow::Result<ConsoleApi> {
        let password = format!("{name} console password");
        let mut add = Command::new(bin_path("cpam-server")?);
        add.args([
            "user",
            "add",
            name,
            "--password-stdin",
            "--role",
            ADMIN_ROLE,
        ])
        .arg("--data-dir")
        .arg(&d.data_dir);
        run_with_input(
            &format!("admin-user-add-{name}"),
            add,
            d.path(),
            TIMEOUT,
            format!("{password}\n").as_bytes(),
        )?
        .ok(&format!("cpam-server user add {name}"))?;
        let server = d.server.as_ref().context("the server is not running")?;
        let stdout = server.stdout();
        let base = stdout
            .lines()
            .find_map(|l| l.split_once("cpam-server console on "))
            .map(|(_, url)| url.trim().trim_end_matches('/').to_string())
            .with_context(|| format!("the server printed no console address:\n{stdout}"))?;
        let mut api = ConsoleApi {
            base,
            cert: d.data_dir.join("web_cert.pem"),
            jar: d.path().join(format!("console-{name}.cookies")),
            csrf: String::new(),
        };
        let login = serde_json::json!({ "username": name, "password": password });
        let (status, reply) = api.send(d, "POST", "/api/v1/auth/login", Some(&login))?;
        if status != 200 {
            bail!("console sign-in as {name}: HTTP {status} {reply}");
        }
        api.csrf = reply["csrf_token"]
            .as_str()
            .context("the sign-in returned no CSRF token")?
            .to_string();
        Ok(api)
    }

    /// One request: its HTTP status and JSON body (`null` when empty).
    pub fn send(
        &self,
        d: &Deployment,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut c = d.topo.vendor.command("curl");
        c.args(["-sS", "--max-time", "30", "-X", method, "--cacert"])
            .arg(&self.cert)
            .arg("-b")
            .arg(&self.jar)
            .arg("-c")
            .arg(&self.jar)
            .args(["-H", "X-Requested-With: cpam", "-w", "\n%{http_code}"]);
        if !self.csrf.is_empty() {
            c.args(["-H", &format!("X-CSRF-Token: {}", self.csrf)]);
        }
        let input = match body {
            Some(b) => {
                c.args([
                    "-H",
                    "Content-Type: application/json",
                    "--data-binary",
                    "@-",
                ]);
                serde_json::to_vec(b)?
            }
            None => Vec::new(),
        };
        c.arg(format!("{}{path}", self.base));
        let out = run_with_input("console-api", c, d.path(), TIMEOUT, &input)?;
        if !out.success() {
            bail!("curl {method} {path} failed: {}", out.stderr.trim());
        }
        let (text, code) = out
            .stdout
            .trim_end()
            .rsplit_once('\n')
            .unwrap_or(("", out.stdout.trim()));
        let status: u16 = code
            .parse()
            .with_context(|| format!("curl printed no status: {}", out.stdout))?;
        let json = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(text)
                .with_context(|| format!("{method} {path}: not JSON: {text}"))?
        };
        Ok((status, json))
    }

    /// A request that must answer `expect`; returns its body.
    pub fn expect(
        &self,
        d: &Deployment,
        method: &str,
        path: &str,
        body: Option<&Value>,
        expect: u16,
    ) -> anyhow::Result<Value> {
        let (status, reply) = self.send(d, method, path, body)?;
        if status != expect {
            bail!("{method} {path}: HTTP {status} (expected {expect}): {reply}");
        }
        Ok(reply)
    }

    /// The id of the user called `name`.
    pub fn user_id(&self, d: &Deployment, name: &str) -> anyhow::Result<String> {
        let users = self.expect(d, "GET", "/api/v1/users", None, 200)?;
        users
            .as_array()
            .and_then(|l| l.iter().find(|u| u["name"] == name))
            .and_then(|u| u["id"].as_str())
            .map(str::to_string)
            .with_context(|| format!("no user {name} in {users}"))
    }
}
