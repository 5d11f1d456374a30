//! A stock OpenSSH `sshd` as the target, and `ssh`/`scp` command builders.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::netns::Netns;
use crate::process::Child;

const SSHD: &str = "/usr/sbin/sshd";

fn missing_peer(what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{what} not found: the e2e tests need OpenSSH; run them through `bash tests/run.sh` \
         or `apt-get install openssh-server openssh-client`"
    )
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Generates an unencrypted Ed25519 key pair at `path` / `path.pub`.
pub fn keygen(path: &Path) -> anyhow::Result<()> {
    which("ssh-keygen").ok_or_else(|| missing_peer("ssh-keygen"))?;
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "cpam-e2e", "-f"])
        .arg(path)
        .output()
        .context("running ssh-keygen")?;
    if !out.status.success() {
        bail!(
            "ssh-keygen failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A running `sshd -D -e` inside a namespace, listening on 127.0.0.1.
#[derive(Debug)]
pub struct Sshd {
    pub child: Child,
    /// Ports it listens on (127.0.0.1 inside its namespace).
    pub ports: Vec<u16>,
    /// The client private key authorised for `root`.
    pub client_key: PathBuf,
    pub config: PathBuf,
}

impl Sshd {
    /// Writes keys and config into `dir` and starts sshd in `ns` on `ports`,
    /// returning once the first port accepts connections.
    pub fn start(ns: &Netns, dir: &Path, ports: &[u16]) -> anyhow::Result<Sshd> {
        Self::start_with(ns, dir, ports, false)
    }

    /// [`Sshd::start`], also accepting password logins when `passwords`
    /// (for accounts made with [`password_account`]).
    pub fn start_with(
        ns: &Netns,
        dir: &Path,
        ports: &[u16],
        passwords: bool,
    ) -> anyhow::Result<Sshd> {
        if !Path::new(SSHD).is_file() {
            return Err(missing_peer(SSHD));
        }
        which("ssh").ok_or_else(|| missing_peer("ssh"))?;
        which("scp").ok_or_else(|| missing_peer("scp"))?;
        let sdir = dir.join("sshd");
        std::fs::create_dir_all(&sdir).context("creating the sshd directory")?;
        let host_key = sdir.join("host_ed25519");
        let client_key = dir.join("client_ed25519");
        keygen(&host_key)?;
        keygen(&client_key)?;
        let authorized = sdir.join("authorized_keys");
        std::fs::copy(client_key.with_extension("pub"), &authorized)
            .context("writing authorized_keys")?;
        let mut cfg = String::from("ListenAddress 127.0.0.1\n");
        for p in ports {
            cfg.push_str(&format!("Port {p}\n"));
        }
        cfg.push_str(&format!(
            "HostKey {}\nPidFile none\nAuthorizedKeysFile {}\nPermitRootLogin prohibit-password\n\
             UsePAM no\nStrictModes no\nPasswordAuthentication {}\nKbdInteractiveAuthentication no\n\
             LogLevel VERBOSE\nSubsystem sftp internal-sftp\n",
            host_key.display(),
            authorized.display(),
            if passwords { "yes" } else { "no" }
        ));
        let config = sdir.join("sshd_config");
        std::fs::write(&config, cfg).context("writing sshd_config")?;
        std::fs::create_dir_all("/run/sshd").context("creating /run/sshd")?;
        let mut cmd = ns.command(SSHD);
        cmd.arg("-D").arg("-e").arg("-f").arg(&config);
        let mut child = Child::spawn("sshd", cmd, dir)?;
        let first = *ports.first().context("sshd needs at least one port")?;
        let ready = crate::wait_until(Duration::from_secs(10), "sshd to accept", || {
            if !child.is_running() {
                return Some(false);
            }
            ns.can_connect("127.0.0.1", first).then_some(true)
        });
        match ready {
            Ok(true) => {}
            Ok(false) => bail!("sshd exited at start\n{}", child.logs()),
            Err(e) => bail!("{e}\n{}", child.logs()),
        }
        Ok(Sshd {
            child,
            ports: ports.to_vec(),
            client_key,
            config,
        })
    }
}

/// Makes sure the local account `name` exists (no home, no login shell
/// beyond `/bin/sh`) and sets its password: the target account of the
/// password-credential tests. The account stays on the machine; its password
/// is new on every call.
pub fn password_account(name: &str, password: &str) -> anyhow::Result<()> {
    // useradd and chpasswd lock /etc/passwd and /etc/shadow: one at a time.
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let exists = Command::new("id")
        .arg(name)
        .output()
        .context("running id")?
        .status
        .success();
    if !exists {
        let out = Command::new("useradd")
            .args([
                "--no-create-home",
                "--home-dir",
                "/tmp",
                "--shell",
                "/bin/sh",
                name,
            ])
            .output()
            .context("running useradd")?;
        if !out.status.success() {
            bail!(
                "useradd {name} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    let mut child = Command::new("chpasswd")
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running chpasswd")?;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().context("chpasswd's stdin")?;
        writeln!(stdin, "{name}:{password}").context("writing to chpasswd")?;
    }
    let out = child.wait_with_output().context("waiting for chpasswd")?;
    if !out.status.success() {
        bail!(
            "chpasswd failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// `ssh` to `root@127.0.0.1:port` inside `ns` with `key`, non-interactive,
/// followed by `args` (the remote command).
pub fn ssh_cmd(ns: &Netns, key: &Path, port: u16, args: &[&str]) -> Command {
    ssh_args(ns.command("ssh"), key, port, args)
}

/// [`ssh_cmd`] in the test's own network namespace.
pub fn local_ssh_cmd(key: &Path, port: u16, args: &[&str]) -> Command {
    ssh_args(Command::new("ssh"), key, port, args)
}

fn ssh_args(mut c: Command, key: &Path, port: u16, args: &[&str]) -> Command {
    c.args(["-F", "/dev/null", "-i"])
        .arg(key)
        .args(common_opts())
        .args(["-p", &port.to_string(), "root@127.0.0.1"])
        .args(args);
    c
}

/// `scp` through `127.0.0.1:port` inside `ns`; `remote:` paths are written
/// `root@127.0.0.1:PATH` by the caller via [`remote`].
pub fn scp_cmd(ns: &Netns, key: &Path, port: u16, from: &str, to: &str) -> Command {
    let mut c = ns.command("scp");
    c.args(["-q", "-F", "/dev/null", "-i"])
        .arg(key)
        .args(common_opts())
        .args(["-P", &port.to_string(), from, to]);
    c
}

/// `root@127.0.0.1:PATH` for [`scp_cmd`].
pub fn remote(path: &Path) -> String {
    format!("root@127.0.0.1:{}", path.display())
}

fn common_opts() -> [&'static str; 12] {
    [
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
    ]
}
