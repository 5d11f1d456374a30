//! Stock `sftp` and `scp` through a privileged-session deployment
//! ([`Psm`]): the same strict host-key check and master password answer
//! as its `ssh`, a working directory on the target's filesystem owned by
//! the vault's account, and the audit's file records.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::process::{Output, run_with_input};
use crate::psm::{MASTER, Psm};

/// A directory on the target (the namespaces share the filesystem) that
/// the target account owns, removed at drop.
#[derive(Debug)]
pub struct TargetDir {
    pub path: PathBuf,
}

impl TargetDir {
    pub fn new(p: &Psm) -> anyhow::Result<TargetDir> {
        let path = PathBuf::from(format!(
            "/tmp/cpam-sftp-{}-{}",
            p.account,
            crate::now_millis()
        ));
        std::fs::create_dir_all(&path)?;
        let dir = TargetDir { path };
        dir.chown(p, &dir.path)?;
        Ok(dir)
    }

    /// Creates `rel` (a directory) owned by the target account.
    pub fn mkdir(&self, p: &Psm, rel: &str) -> anyhow::Result<PathBuf> {
        let path = self.path.join(rel);
        std::fs::create_dir_all(&path)?;
        self.chown(p, &path)?;
        Ok(path)
    }

    fn chown(&self, p: &Psm, path: &Path) -> anyhow::Result<()> {
        let out = Command::new("chown")
            .arg(format!("{0}:{0}", p.account))
            .arg(path)
            .output()
            .context("running chown")?;
        anyhow::ensure!(out.status.success(), "chown {} failed", path.display());
        Ok(())
    }

    /// Every path under the directory, relative, sorted (symlinks not
    /// followed).
    pub fn tree(&self) -> Vec<String> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = e.path();
                out.push(
                    path.strip_prefix(root)
                        .unwrap_or(&path)
                        .display()
                        .to_string(),
                );
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(root, &path, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.path, &self.path, &mut out);
        out.sort();
        out
    }
}

impl Drop for TargetDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The SHA-256 (hex) of a file.
pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex::encode(Sha256::digest(bytes)))
}

/// A file of `len` pseudo-random bytes.
pub fn random_file(path: &Path, len: usize, seed: u64) -> anyhow::Result<()> {
    let mut x = seed | 1;
    let bytes: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(path, bytes)?;
    Ok(())
}

fn askpass(p: &Psm) -> anyhow::Result<PathBuf> {
    let askpass =
        p.d.path()
            .join(format!("askpass-sftp-{}", crate::now_millis()));
    std::fs::write(&askpass, format!("#!/bin/sh\nprintf '%s\\n' '{MASTER}'\n"))
        .context("writing the askpass script")?;
    std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700))?;
    Ok(askpass)
}

/// `program` (`sftp` or `scp`) in the vendor ns through `cpam-connect
/// forward db1`, checking the server's key strictly and answering the
/// master password; `port_flag` is `-P` for both.
fn client(p: &Psm, program: &str, extra: &[&str]) -> anyhow::Result<Command> {
    let mut c = p.d.topo.vendor.command(program);
    c.args(["-F", "/dev/null"])
        .args(["-o", "HostKeyAlias=cpam", "-o", "StrictHostKeyChecking=yes"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", p.known_hosts.display()))
        .args(["-o", "PreferredAuthentications=keyboard-interactive"])
        .args(["-o", "NumberOfPasswordPrompts=1", "-o", "ConnectTimeout=10"])
        .args(["-P", &p.port.to_string()])
        .args(extra)
        .env("SSH_ASKPASS", askpass(p)?)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0");
    Ok(c)
}

/// Stock `sftp` reading `commands` from its stdin (not `-b`, which would
/// forbid the master password prompt): it goes on after a failed command.
pub fn sftp(p: &Psm, extra: &[&str]) -> anyhow::Result<Command> {
    let mut c = client(p, "sftp", extra)?;
    c.arg("anyone@127.0.0.1");
    Ok(c)
}

/// Runs [`sftp`] to the end.
pub fn sftp_run(p: &Psm, extra: &[&str], commands: &str) -> anyhow::Result<Output> {
    let c = sftp(p, extra)?;
    run_with_input("vendor-sftp", c, p.d.path(), CMD, commands.as_bytes())
}

/// Stock `scp` (SFTP mode, OpenSSH's default) copying `from` to `to`.
pub fn scp_run(p: &Psm, from: &str, to: &str) -> anyhow::Result<Output> {
    let mut c = client(p, "scp", &[])?;
    c.args([from, to]);
    run_with_input("vendor-scp", c, p.d.path(), CMD, b"")
}

/// The audit's `session.file` records.
pub fn file_records(p: &Psm) -> anyhow::Result<Vec<Value>> {
    Ok(p.d
        .audit()?
        .into_iter()
        .filter(|r| r["action"] == "session.file")
        .collect())
}

/// The audit's `session.file.op` records.
pub fn op_records(p: &Psm) -> anyhow::Result<Vec<Value>> {
    Ok(p.d
        .audit()?
        .into_iter()
        .filter(|r| r["action"] == "session.file.op")
        .collect())
}

const CMD: Duration = Duration::from_secs(90);
