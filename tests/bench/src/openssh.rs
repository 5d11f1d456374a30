//! Path (b): the OpenSSH two-hop chain that mirrors cpam's data path.
//!
//! A private `sshd` on a free loopback port; a "gatekeeper" `ssh -R` that
//! publishes the targets on the sshd side; a "vendor" `ssh -L` that reaches
//! them through the sshd. Data goes vendor ssh → sshd session A → loopback
//! TCP → sshd session B → gatekeeper ssh → target: four relaying processes
//! and four AES-GCM passes.
//!
//! With `-N` OpenSSH leaves Nagle on (it sets TCP_NODELAY only for sessions
//! with a pty), which costs ~40 ms per new connection. The `nodelay` variant
//! runs both legs as `ssh -tt ... sleep 3600` sessions so OpenSSH sets it.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::RunningPath;
use super::load::{wait_echo, wait_sink};
use super::procs::{ChildGuard, ensure_dir, free_port, run_checked, wait_listening};
use super::targets::Targets;

const SSHD: &str = "/usr/sbin/sshd";
const SSHD_MISSING: &str = "install openssh-server (bash tests/run.sh installs it)";

/// Which OpenSSH flavour to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `ssh -N` forwards, OpenSSH defaults (Nagle on).
    Plain,
    /// `ssh -tt ... sleep 3600` sessions: OpenSSH sets TCP_NODELAY.
    Tty,
}

fn keygen(path: &Path) -> Result<()> {
    run_checked(
        "ssh-keygen",
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "cpam-bench", "-f"])
            .arg(path),
        Duration::from_secs(10),
    )
    .context("ssh-keygen failed; install openssh-client")?;
    Ok(())
}

fn sshd_config(dir: &Path, port: u16) -> String {
    let d = dir.display();
    format!(
        "Port {port}
ListenAddress 127.0.0.1
HostKey {d}/hostkey_ed25519
PidFile {d}/sshd.pid
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile {d}/authorized_keys
StrictModes no
UsePAM no
AllowTcpForwarding yes
GatewayPorts no
X11Forwarding no
Subsystem sftp internal-sftp
PrintMotd no
PrintLastLog no
UseDNS no
MaxStartups 2000:30:4000
MaxSessions 1000
LogLevel ERROR
"
    )
}

/// The user the ssh clients log in as: root when we are root, else ourselves.
pub(crate) fn login_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "root".to_owned())
}

fn ssh_command(dir: &Path, sshd_port: u16, flavor: Flavor, forwards: &[String]) -> Command {
    let key: PathBuf = dir.join("id_ed25519");
    let mut cmd = Command::new("ssh");
    if flavor == Flavor::Tty {
        cmd.arg("-tt");
    } else {
        cmd.arg("-N");
    }
    cmd.args(["-c", "aes128-gcm@openssh.com"])
        .args(["-o", "KexAlgorithms=curve25519-sha256"])
        .args(["-F", "/dev/null", "-i"])
        .arg(&key)
        .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"])
        .args(["-o", "StrictHostKeyChecking=no"])
        .args(["-o", "UserKnownHostsFile=/dev/null"])
        .args(["-o", "ExitOnForwardFailure=yes", "-o", "LogLevel=ERROR"])
        .args(["-p", &sshd_port.to_string()])
        .args(forwards)
        .arg(format!("{}@127.0.0.1", login_user()));
    if flavor == Flavor::Tty {
        cmd.args(["sleep", "3600"]);
    }
    cmd.stdout(Stdio::null());
    cmd
}

fn spawn_ssh(name: &str, cmd: &mut Command, flavor: Flavor, log: &Path) -> Result<ChildGuard> {
    let log = fs::File::create(log)?;
    cmd.stderr(log);
    match flavor {
        Flavor::Plain => ChildGuard::spawn(name, cmd.stdin(Stdio::null())),
        Flavor::Tty => ChildGuard::spawn_with_open_stdin(name, cmd),
    }
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

/// Starts a private `sshd` on a free loopback port in `dir` (host key,
/// client key `dir/id_ed25519` authorized for [`login_user`]); returns the
/// running listener and its port.
pub(crate) fn start_sshd(dir: &Path) -> Result<(ChildGuard, u16)> {
    if !Path::new(SSHD).exists() {
        bail!("{SSHD} not found: {SSHD_MISSING}");
    }
    // sshd's privilege-separation directory.
    ensure_dir(Path::new("/run/sshd"))?;
    keygen(&dir.join("hostkey_ed25519"))?;
    keygen(&dir.join("id_ed25519"))?;
    fs::copy(dir.join("id_ed25519.pub"), dir.join("authorized_keys"))?;
    let sshd_port = free_port()?;
    let config = dir.join("sshd_config");
    fs::write(&config, sshd_config(dir, sshd_port))?;
    let sshd_log = dir.join("sshd.log");
    let mut sshd = ChildGuard::spawn(
        "sshd (listener)",
        Command::new(SSHD)
            .args(["-D", "-f"])
            .arg(&config)
            .args(["-p", &sshd_port.to_string(), "-E"])
            .arg(&sshd_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    let sshd_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, sshd_port));
    let up = wait_listening(sshd_addr, Duration::from_secs(10));
    if let Err(e) = sshd.check_running().and(up) {
        bail!("sshd did not start: {e:#}; log: {}", log_tail(&sshd_log));
    }
    Ok((sshd, sshd_port))
}

/// Starts sshd and both ssh legs; returns when an echo works end to end.
pub fn start(targets: &Targets, flavor: Flavor) -> Result<RunningPath> {
    let tmp = tempfile::Builder::new()
        .prefix("cpam-bench-ssh")
        .tempdir()?;
    let dir = tmp.path().to_path_buf();
    let mut path = RunningPath::new(
        match flavor {
            Flavor::Plain => "openssh",
            Flavor::Tty => "openssh-tty",
        },
        tmp,
    );
    let (sshd, sshd_port) = start_sshd(&dir)?;
    path.tree_root = Some(sshd.pid());
    path.guards.push(sshd);

    // Gatekeeper leg: publish both targets on the sshd side.
    let (r_echo, r_sink) = (free_port()?, free_port()?);
    let gk_log = dir.join("gatekeeper-ssh.log");
    let forwards = [
        "-R".to_owned(),
        format!("127.0.0.1:{r_echo}:{}", targets.echo),
        "-R".to_owned(),
        format!("127.0.0.1:{r_sink}:{}", targets.sink),
    ];
    let mut gk = spawn_ssh(
        "gatekeeper-ssh",
        &mut ssh_command(&dir, sshd_port, flavor, &forwards),
        flavor,
        &gk_log,
    )?;
    for port in [r_echo, r_sink] {
        let up = wait_listening((Ipv4Addr::LOCALHOST, port).into(), Duration::from_secs(15));
        if let Err(e) = gk.check_running().and(up) {
            bail!("ssh -R did not come up: {e:#}; log: {}", log_tail(&gk_log));
        }
    }
    path.guards.insert(0, gk);

    // Vendor leg: local listeners that reach the published ports.
    let (l_echo, l_sink) = (free_port()?, free_port()?);
    let vendor_log = dir.join("vendor-ssh.log");
    let forwards = [
        "-L".to_owned(),
        format!("127.0.0.1:{l_echo}:127.0.0.1:{r_echo}"),
        "-L".to_owned(),
        format!("127.0.0.1:{l_sink}:127.0.0.1:{r_sink}"),
    ];
    let mut vendor = spawn_ssh(
        "vendor-ssh",
        &mut ssh_command(&dir, sshd_port, flavor, &forwards),
        flavor,
        &vendor_log,
    )?;
    path.echo = SocketAddr::from((Ipv4Addr::LOCALHOST, l_echo));
    path.sink = SocketAddr::from((Ipv4Addr::LOCALHOST, l_sink));
    let up = wait_echo(path.echo, Duration::from_secs(15))
        .and_then(|()| wait_sink(path.sink, targets, Duration::from_secs(15)));
    if let Err(e) = vendor.check_running().and(up) {
        bail!(
            "ssh -L did not come up: {e:#}; log: {}",
            log_tail(&vendor_log)
        );
    }
    path.guards.insert(0, vendor);
    if flavor == Flavor::Plain {
        path.notes.push(
            "OpenSSH `-N` forwards run without TCP_NODELAY (Nagle + delayed ACK: ~40 ms first byte)"
                .to_owned(),
        );
    } else {
        path.notes.push(
            "OpenSSH legs run as `ssh -tt ... sleep 3600`, so OpenSSH sets TCP_NODELAY".to_owned(),
        );
    }
    Ok(path)
}
