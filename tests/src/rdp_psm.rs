//! A deployment with an RDP privileged service (`rdp1`, kind `rdp`): the
//! vault holds a canary password, the vendor has a master password, a
//! checkout and `cpam-connect forward rdp1`; a real NLA target
//! ([`RdpTarget`]) behind the gatekeeper and a display for `xfreerdp`.

use std::process::Command;
use std::time::Duration;

use crate::bins::bin_path;
use crate::cpam::{Deployment, Options, RDP_PORT, parse_json};
use crate::process::{Child, Output, run_with_input};
use crate::psm::{LOGIN, MASTER};
use crate::rdp::{Display, RdpTarget, xfreerdp};

const CMD: Duration = Duration::from_secs(60);

/// A deployment with an RDP service `rdp1` (kind `rdp`) whose password
/// only the vault holds, a vendor with a master password and a checkout,
/// and `cpam-connect forward rdp1`.
#[derive(Debug)]
pub struct Rdp {
    pub d: Deployment,
    pub target: RdpTarget,
    pub screen: Display,
    pub canary: String,
    pub port: u16,
}

impl Rdp {
    pub fn start() -> anyhow::Result<Rdp> {
        let mut d = Deployment::start_with(Options {
            vendor_password: Some(LOGIN.into()),
            ..Options::default()
        })?;
        let canary = format!("Rdp-canary-{}", crate::now_millis());
        let target = RdpTarget::start(&d.topo.customer, d.path(), RDP_PORT, "alice", &canary)?;
        let addr = format!("127.0.0.1:{RDP_PORT}");
        d.admin_ok(&[
            "service",
            "add",
            "--customer",
            "acme",
            "rdp1",
            "--target",
            &addr,
            "--kind",
            "rdp",
        ])?;
        d.admin_ok(&[
            "grant",
            "add",
            "--user",
            "vendor",
            "--customer",
            "acme",
            "--service",
            "rdp1",
        ])?;
        let mut set = Command::new(bin_path("cpam-server")?);
        set.args([
            "vault",
            "set",
            "rdp1@acme",
            "--username",
            "alice",
            "--password-stdin",
            "--data-dir",
        ])
        .arg(&d.data_dir);
        run_with_input("vault-set", set, d.path(), CMD, canary.as_bytes())?.ok("vault set")?;
        let master = d.connect_cmd(&["master-password", "set"])?;
        run_with_input(
            "master-set",
            master,
            d.path(),
            CMD,
            format!("{LOGIN}\n{MASTER}\n").as_bytes(),
        )?
        .ok("cpam-connect master-password set")?;
        d.run(
            "checkout",
            d.connect_cmd(&["checkout", "rdp1", "--for", "1h"])?,
        )?
        .ok("cpam-connect checkout")?;
        let profile = d.profile.clone();
        let port = d.forward(&profile, "rdp1")?;
        let screen = Display::start(Some(&d.topo.vendor), d.path(), "vendor")?;
        Ok(Rdp {
            d,
            target,
            screen,
            canary,
            port,
        })
    }

    /// A one-time proxy credential (username, password), asked with `master`.
    pub fn credential(&self, master: &str) -> anyhow::Result<Output> {
        let c = self.d.connect_cmd(&["rdp-credential", "rdp1", "--json"])?;
        run_with_input(
            "rdp-credential",
            c,
            self.d.path(),
            CMD,
            format!("{master}\n").as_bytes(),
        )
    }

    pub fn credential_ok(&self) -> anyhow::Result<(String, String)> {
        let out = self.credential(MASTER)?.ok("cpam-connect rdp-credential")?;
        let v = parse_json(&out.stdout)?;
        Ok((
            v["username"].as_str().unwrap_or_default().to_string(),
            v["password"].as_str().unwrap_or_default().to_string(),
        ))
    }

    /// `xfreerdp` through the forward with `user`/`password`.
    pub fn xfreerdp(&self, user: &str, password: &str, args: &[&str]) -> anyhow::Result<Command> {
        let u = format!("/u:{user}");
        let p = format!("/p:{password}");
        let mut all = vec![u.as_str(), p.as_str()];
        all.extend_from_slice(args);
        xfreerdp(&self.d.topo.vendor, &self.screen, self.port, &all)
    }

    /// Stores `password` as the vault's credential of `rdp1`.
    pub fn set_vault_password(&self, password: &str) -> anyhow::Result<()> {
        let mut set = Command::new(bin_path("cpam-server")?);
        set.args([
            "vault",
            "set",
            "rdp1@acme",
            "--username",
            "alice",
            "--password-stdin",
            "--data-dir",
        ])
        .arg(&self.d.data_dir);
        run_with_input("vault-set", set, self.d.path(), CMD, password.as_bytes())?
            .ok("vault set")?;
        Ok(())
    }

    /// A full-screen `xfreerdp` session through the proxy, once the target
    /// logged it in: the client and the session's id.
    pub fn full_session(&self) -> anyhow::Result<(Child, String)> {
        let (user, password) = self.credential_ok()?;
        let client = self.d.spawn(
            "xfreerdp-full",
            self.xfreerdp(&user, &password, &["/gdi:sw", "/size:1024x768"])?,
        )?;
        let id = self.d.wait_live_session()?;
        crate::wait_until(Duration::from_secs(20), "the target login", || {
            self.d
                .audit()
                .ok()?
                .iter()
                .any(|x| {
                    x["action"] == "session.rdp.target_login"
                        && (x["session_id"] == id.as_str() || x.to_string().contains(&id))
                })
                .then_some(())
        })
        .map_err(|e| anyhow::anyhow!("{e}\n{}", self.logs()))?;
        Ok((client, id))
    }

    /// Waits until no session of `rdp1` is live.
    pub fn wait_none_live(&self) -> anyhow::Result<()> {
        crate::wait_until(Duration::from_secs(20), "every RDP session to end", || {
            self.d.live_sessions().ok()?.is_empty().then_some(())
        })
        .map_err(|e| anyhow::anyhow!("{e}: {:?}\n{}", self.d.live_sessions(), self.logs()))
    }

    pub fn logs(&self) -> String {
        format!("{}\n{}", self.target.logs(), self.d.logs())
    }

    /// The canary is in no file of the data dir and no process's log.
    pub fn assert_canary_nowhere(&self, seen_by_vendor: &str) -> anyhow::Result<()> {
        assert!(
            !seen_by_vendor.contains(&self.canary),
            "the vendor saw the credential"
        );
        assert!(
            !self.d.logs().contains(&self.canary),
            "a log holds the credential"
        );
        let utf16: Vec<u8> = self
            .canary
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let holding = crate::files_holding(
            &self.d.data_dir,
            &[self.canary.as_bytes(), utf16.as_slice()],
        )?;
        assert!(
            holding.is_empty(),
            "{holding:?} hold the credential in plaintext"
        );
        Ok(())
    }
}
