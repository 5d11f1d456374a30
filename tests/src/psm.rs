//! A privileged-session deployment: the standard [`Deployment`] plus an
//! SSH service `db1` (kind `ssh`) whose password lives only in the vault, a
//! vendor with a master password and a checkout, `cpam-connect forward db1`,
//! and stock `ssh` set up to verify the server's host key and to answer the
//! master password prompt (through `SSH_ASKPASS`, as a script would).
//!
//! ```text
//! vendor ns:   ssh -tt -> cpam-connect forward db1 -> cpam-server (SSH proxy: master password)
//! customer ns: cpam-gatekeeper -> sshd 127.0.0.1:2022, account `cpampsmN` (password from the vault)
//! ```

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use crate::bins::bin_path;
use crate::cpam::{Deployment, Options, SSHD_PORT};
use crate::process::{Output, run_with_input};
use crate::sshd::password_account;

/// The prefix of the target accounts whose password only the vault knows:
/// one per deployment of a test process (`cpampsm0`, `cpampsm1`, ...), so
/// tests running at once never reset each other's password.
pub const ACCOUNT_PREFIX: &str = "cpampsm";

static ACCOUNTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
/// The vendor's master password.
pub const MASTER: &str = "correct horse battery staple";
/// The vendor's login password (console and SSH), not the master password.
pub const LOGIN: &str = "vendor-login-password-1";

/// A deployment with a privileged SSH service.
#[derive(Debug)]
pub struct Psm {
    pub d: Deployment,
    /// The target account's password: stored in the vault, and looked for
    /// everywhere it must not be.
    pub canary: String,
    /// The target account (`cpampsmN`).
    pub account: String,
    /// `cpam-connect forward db1` listens here (vendor ns).
    pub port: u16,
    /// The server's key, as `ssh` checks it (`HostKeyAlias=cpam`).
    pub known_hosts: PathBuf,
}

impl Psm {
    pub fn start() -> anyhow::Result<Psm> {
        Psm::start_with(Options::default())
    }

    /// [`Psm::start`] on a deployment set up with `opts` (the target's
    /// password logins and the vendor's password are always on).
    pub fn start_with(opts: Options) -> anyhow::Result<Psm> {
        let mut d = Deployment::start_with(Options {
            sshd_passwords: true,
            vendor_password: Some(LOGIN.into()),
            ..opts
        })?;
        let canary = format!("canary-{}", crate::now_millis());
        let n = ACCOUNTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let account = format!("{ACCOUNT_PREFIX}{n}");
        password_account(&account, &canary)?;
        let target = format!("127.0.0.1:{SSHD_PORT}");
        d.admin_ok(&[
            "service",
            "add",
            "--customer",
            "acme",
            "db1",
            "--target",
            &target,
            "--kind",
            "ssh",
        ])?;
        d.admin_ok(&[
            "grant",
            "add",
            "--user",
            "vendor",
            "--customer",
            "acme",
            "--service",
            "db1",
        ])?;
        let mut set = Command::new(bin_path("cpam-server")?);
        set.args([
            "vault",
            "set",
            "db1@acme",
            "--username",
            &account,
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
            d.connect_cmd(&["checkout", "db1", "--for", "1h"])?,
        )?
        .ok("cpam-connect checkout")?;
        let profile = d.profile.clone();
        let port = d.forward(&profile, "db1")?;
        let known = d
            .run("known-hosts", d.connect_cmd(&["known-hosts"])?)?
            .ok("known-hosts")?;
        let known_hosts = d.path().join("known_hosts");
        std::fs::write(&known_hosts, known.stdout).context("writing known_hosts")?;
        Ok(Psm {
            d,
            canary,
            account,
            port,
            known_hosts,
        })
    }

    /// Stock `ssh` in the vendor ns through `cpam-connect forward db1`,
    /// answering the master password prompt with `master`, checking the
    /// server's key strictly; `args` follow the destination.
    pub fn ssh(&self, master: &str, extra: &[&str], args: &[&str]) -> anyhow::Result<Command> {
        let askpass = self
            .d
            .path()
            .join(format!("askpass-{}", crate::now_millis()));
        std::fs::write(&askpass, format!("#!/bin/sh\nprintf '%s\\n' '{master}'\n"))
            .context("writing the askpass script")?;
        std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700))?;
        let mut c = self.d.topo.vendor.command("ssh");
        c.args(["-F", "/dev/null"])
            .args(["-o", "HostKeyAlias=cpam", "-o", "StrictHostKeyChecking=yes"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args(["-o", "PreferredAuthentications=keyboard-interactive"])
            .args(["-o", "NumberOfPasswordPrompts=1", "-o", "ConnectTimeout=10"])
            .args(extra)
            .args(["-p", &self.port.to_string(), "anyone@127.0.0.1"])
            .args(args)
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", ":0");
        Ok(c)
    }

    /// Runs [`Psm::ssh`] with `input` typed on its stdin.
    pub fn ssh_run(
        &self,
        master: &str,
        extra: &[&str],
        args: &[&str],
        input: &str,
    ) -> anyhow::Result<Output> {
        let c = self.ssh(master, extra, args)?;
        run_with_input("vendor-ssh", c, self.d.path(), CMD, input.as_bytes())
    }
}

const CMD: Duration = Duration::from_secs(60);
