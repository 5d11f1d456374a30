//! Privileged SSH sessions: stock `ssh` through the PSM proxy (the server
//! terminates the vendor's SSH, injects the vault's key for the target and
//! records every channel) next to the same `ssh` through the raw tunnel to
//! the same `sshd`, in one run.
//!
//! ```text
//! raw: ssh -(key)-> cpam-connect forward raw -> cpam-server -> cpam-gatekeeper -> sshd
//! psm: ssh -(master password)-> cpam-connect forward psm -> cpam-server (SSH proxy, recorder)
//!          -(vault key)-> cpam-gatekeeper -> sshd
//! ```
//!
//! Three measurements per path: bulk output (`yes | head -c N` on the
//! target, exec channel), interactive echo (one byte through a raw-mode pty
//! running `cat`, sequential), and N concurrent interactive sessions with
//! the RSS they add.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::cpam::{Deployment, VENDOR_LOGIN};
use super::load::percentile;
use super::openssh::{login_user, start_sshd};
use super::procs::{clock_ticks, cpu_ticks, descendants, rss_kib, run_input, wait_idle};

pub(crate) const MASTER: &str = "bench master password 1";
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
/// The line the interactive sessions print once the pty is in raw mode.
const READY: &str = "CPAM-BENCH-READY";

/// What to measure.
#[derive(Debug, Clone, Serialize)]
pub struct PsmPlan {
    pub bytes: u64,
    pub echo_samples: usize,
    pub sessions: usize,
    pub idle_wait: Duration,
}

/// One path's figures (`None` when the measurement was skipped or failed;
/// the error is in `errors`).
#[derive(Debug, Default, Serialize)]
pub struct PsmFigures {
    pub path: &'static str,
    pub bulk_gbit_s: Option<f64>,
    /// cpam's processes (server, gatekeeper, the forward) per GB.
    pub cpu_s_per_gb_cpam: Option<f64>,
    /// Every process of the path: the vendor's `ssh`, cpam's processes and
    /// the target's `sshd` session processes.
    pub cpu_s_per_gb_all: Option<f64>,
    pub echo_p50_ms: Option<f64>,
    pub echo_p99_ms: Option<f64>,
    pub rss_idle_mib: Option<f64>,
    pub rss_sessions_mib: Option<f64>,
    pub sessions_up: usize,
    pub errors: Vec<String>,
}

/// The raw tunnel and the PSM path to one private `sshd`, up; dropping it
/// stops everything. The File Transfer bench (`sftp`) uses the same set-up.
#[derive(Debug)]
pub struct PsmPaths {
    pub(crate) d: Deployment,
    pub(crate) sshd_pid: u32,
    /// The `sshd` itself (the direct route).
    target: SocketAddr,
    key: PathBuf,
    known_hosts: PathBuf,
    askpass: PathBuf,
    raw: SocketAddr,
    psm: SocketAddr,
}

impl PsmPaths {
    pub fn start(bin_dir: &Path) -> Result<Self> {
        let mut d = Deployment::start("psm", bin_dir)?;
        let target_dir = d.dir.join("target");
        fs::create_dir_all(&target_dir)?;
        let (sshd, port) = start_sshd(&target_dir)?;
        let sshd_pid = sshd.pid();
        d.path.guards.push(sshd);
        let target = SocketAddr::from(([127, 0, 0, 1], port));
        d.service("raw", target, None)?;
        d.service("psm", target, Some("ssh"))?;
        let key = target_dir.join("id_ed25519");
        let user = login_user();
        d.cli.admin(&[
            "vault",
            "set",
            "psm@bench",
            "--username",
            &user,
            "--key-file",
            &key.to_string_lossy(),
        ])?;
        let input = format!("{VENDOR_LOGIN}\n{MASTER}\n");
        run_input(
            "cpam-connect master-password set",
            d.connect().args(["master-password", "set"]),
            Some(input.as_bytes()),
            SETUP_TIMEOUT,
        )?;
        run_input(
            "cpam-connect checkout",
            d.connect().args(["checkout", "psm", "--for", "8h"]),
            None,
            SETUP_TIMEOUT,
        )?;
        let known = run_input(
            "cpam-connect known-hosts",
            d.connect().arg("known-hosts"),
            None,
            SETUP_TIMEOUT,
        )?;
        let known_hosts = d.dir.join("known_hosts");
        fs::write(&known_hosts, &known.stdout)?;
        let askpass = d.dir.join("askpass");
        fs::write(&askpass, format!("#!/bin/sh\nprintf '%s\\n' '{MASTER}'\n"))?;
        fs::set_permissions(&askpass, fs::Permissions::from_mode(0o700))?;
        let raw = d.forward("raw")?;
        let psm = d.forward("psm")?;
        let paths = Self {
            d,
            sshd_pid,
            target,
            key,
            known_hosts,
            askpass,
            raw,
            psm,
        };
        for which in [Route::Raw, Route::Psm] {
            let out = run_input(
                &format!("ssh through the {} path", which.name()),
                &mut paths.ssh(which, false, "echo up"),
                None,
                SETUP_TIMEOUT,
            )
            .with_context(|| paths.d.logs(which.name()))?;
            if !String::from_utf8_lossy(&out.stdout).contains("up") {
                bail!("ssh through the {} path printed no `up`", which.name());
            }
        }
        Ok(paths)
    }

    /// Stock `ssh` through `which`, running `command` (with a pty when `tty`).
    fn ssh(&self, which: Route, tty: bool, command: &str) -> Command {
        let mut c = Command::new("ssh");
        c.args(["-F", "/dev/null", "-e", "none"])
            .arg(if tty { "-tt" } else { "-T" })
            .args(["-o", "LogLevel=ERROR", "-o", "ConnectTimeout=20"]);
        self.login_options(which, &mut c);
        c.args(["-p", &self.port(which).to_string()])
            .arg(self.destination(which))
            .arg(command);
        c
    }

    /// The options and environment with which a stock OpenSSH client
    /// (`ssh`, `sftp`) logs in through `which`: the target's key for the
    /// direct route and the raw tunnel (where `sshd` authenticates the
    /// client itself), the server's pinned key and the master password
    /// through `SSH_ASKPASS` for the proxy. Port and destination are
    /// separate ([`PsmPaths::port`], [`PsmPaths::destination`]): `ssh` and
    /// `sftp` spell the port differently.
    pub(crate) fn login_options(&self, which: Route, c: &mut Command) {
        match which {
            Route::Direct | Route::Raw => {
                c.arg("-i")
                    .arg(&self.key)
                    .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"])
                    .args(["-o", "StrictHostKeyChecking=no"])
                    .args(["-o", "UserKnownHostsFile=/dev/null"]);
            }
            Route::Psm => {
                c.args(["-o", "HostKeyAlias=cpam", "-o", "StrictHostKeyChecking=yes"])
                    .arg("-o")
                    .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
                    .args(["-o", "PreferredAuthentications=keyboard-interactive"])
                    .args(["-o", "NumberOfPasswordPrompts=1"])
                    .env("SSH_ASKPASS", &self.askpass)
                    .env("SSH_ASKPASS_REQUIRE", "force")
                    .env("DISPLAY", ":0");
            }
        }
    }

    /// The loopback port a client connects to for `which`.
    pub(crate) fn port(&self, which: Route) -> u16 {
        match which {
            Route::Direct => self.target.port(),
            Route::Raw => self.raw.port(),
            Route::Psm => self.psm.port(),
        }
    }

    /// `user@127.0.0.1`: the target account, or the vendor for the proxy
    /// (the server logs in to the target with the vault's credential).
    pub(crate) fn destination(&self, which: Route) -> String {
        match which {
            Route::Direct | Route::Raw => format!("{}@127.0.0.1", login_user()),
            Route::Psm => "vendor@127.0.0.1".to_owned(),
        }
    }

    /// cpam's processes serving `which`: server, gatekeeper, its forward
    /// (none for the direct route).
    pub(crate) fn cpam_pids(&self, which: Route) -> Vec<u32> {
        if matches!(which, Route::Direct) {
            return Vec::new();
        }
        let forward = format!("cpam-connect-{}", which.name());
        self.d
            .path
            .guards
            .iter()
            .filter(|g| g.name == "cpam-server" || g.name == "cpam-gatekeeper" || g.name == forward)
            .map(|g| g.pid())
            .collect()
    }

    /// The target's `sshd` session processes (not the listener, not the
    /// commands they run).
    fn sshd_sessions(&self) -> Vec<u32> {
        descendants(self.sshd_pid)
            .into_iter()
            .filter(|pid| {
                fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sshd")
            })
            .collect()
    }

    /// Measures both paths.
    pub fn measure(&self, plan: &PsmPlan) -> Vec<PsmFigures> {
        [Route::Raw, Route::Psm]
            .into_iter()
            .map(|which| {
                let mut f = PsmFigures {
                    path: which.name(),
                    ..PsmFigures::default()
                };
                wait_idle(0.88, plan.idle_wait);
                if let Err(e) = self.bulk(which, plan.bytes, &mut f) {
                    f.errors
                        .push(format!("bulk: {e:#}; {}", self.d.logs(which.name())));
                }
                if plan.echo_samples > 0 {
                    wait_idle(0.88, plan.idle_wait);
                    if let Err(e) = self.echo(which, plan.echo_samples, &mut f) {
                        f.errors.push(format!("echo: {e:#}"));
                    }
                }
                if plan.sessions > 0 {
                    wait_idle(0.88, plan.idle_wait);
                    if let Err(e) = self.sessions(which, plan.sessions, &mut f) {
                        f.errors.push(format!("sessions: {e:#}"));
                    }
                }
                f
            })
            .collect()
    }

    fn bulk(&self, which: Route, bytes: u64, f: &mut PsmFigures) -> Result<()> {
        // The command keeps its session open after the output so its sshd
        // process and the ssh client are still there to be measured.
        let command = format!(
            "yes 'cpam bench 0123456789 abcdefghijklmnopqrstuvwxyz' | head -c {bytes}; exec sleep 600"
        );
        let mut child = Interactive::spawn(self.ssh(which, false, &command))?;
        let cpam = self.cpam_pids(which);
        let ticks = |pids: &[u32]| pids.iter().filter_map(|p| cpu_ticks(*p)).sum::<u64>();
        // The first byte starts the clock and the CPU count: logging in is
        // not part of the transfer.
        let mut buf = vec![0u8; 256 * 1024];
        let n = child.stdout.read(&mut buf)?;
        if n == 0 {
            bail!("ssh ended before any output");
        }
        let start = Instant::now();
        let mut all = cpam.clone();
        all.push(child.child.id());
        all.extend(self.sshd_sessions());
        let (cpam0, all0) = (ticks(&cpam), ticks(&all));
        let mut got = n as u64;
        while got < bytes {
            let n = child.stdout.read(&mut buf)?;
            if n == 0 {
                bail!("ssh ended after {got} of {bytes} bytes");
            }
            got += n as u64;
        }
        let secs = start.elapsed().as_secs_f64();
        let (cpam1, all1) = (ticks(&cpam), ticks(&all));
        let gb = bytes as f64 / 1e9;
        let hz = clock_ticks();
        f.bulk_gbit_s = Some(bytes as f64 * 8.0 / secs / 1e9);
        f.cpu_s_per_gb_cpam = Some(cpam1.saturating_sub(cpam0) as f64 / hz / gb);
        f.cpu_s_per_gb_all = Some(all1.saturating_sub(all0) as f64 / hz / gb);
        Ok(())
    }

    fn echo(&self, which: Route, samples: usize, f: &mut PsmFigures) -> Result<()> {
        let mut s = Interactive::start(self.ssh(which, true, &interactive_command()))?;
        let mut times = Vec::with_capacity(samples);
        for i in 0..samples + 5 {
            let t = Instant::now();
            s.round_trip()?;
            if i >= 5 {
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        times.sort_by(f64::total_cmp);
        f.echo_p50_ms = percentile(&times, 50.0);
        f.echo_p99_ms = percentile(&times, 99.0);
        Ok(())
    }

    fn sessions(&self, which: Route, count: usize, f: &mut PsmFigures) -> Result<()> {
        let cpam = self.cpam_pids(which);
        let rss = || cpam.iter().filter_map(|p| rss_kib(*p)).sum::<u64>() as f64 / 1024.0;
        f.rss_idle_mib = Some(rss());
        let mut open = Vec::with_capacity(count);
        for i in 0..count {
            let mut s = Interactive::start(self.ssh(which, true, &interactive_command()))
                .with_context(|| format!("session {} of {count}", i + 1))?;
            s.round_trip()?;
            open.push(s);
        }
        for s in &mut open {
            s.round_trip()?;
        }
        f.sessions_up = open.len();
        f.rss_sessions_mib = Some(rss());
        Ok(())
    }
}

/// How a client reaches the target `sshd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// Straight to the `sshd` port, no cpam (the File Transfer bench's
    /// baseline).
    Direct,
    /// `cpam-connect forward` of the `tcp` service `raw`: cpam carries the
    /// client's SSH bytes without reading them.
    Raw,
    /// `cpam-connect forward` of the `ssh` service `psm`: the server's SSH
    /// proxy.
    Psm,
}

impl Route {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Route::Direct => "direct",
            Route::Raw => "raw",
            Route::Psm => "psm",
        }
    }
}

/// A remote `cat` in a raw-mode pty: every byte sent comes back once.
fn interactive_command() -> String {
    format!("stty raw -echo; echo {READY}; exec cat")
}

/// An `ssh` child with its stdin and stdout, killed (by PID) on drop.
struct Interactive {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Interactive {
    fn spawn(mut cmd: Command) -> Result<Self> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start ssh (install openssh-client)")?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            bail!("ssh has no stdin/stdout pipes");
        };
        Ok(Self {
            child,
            stdin,
            stdout: BufReader::with_capacity(256 * 1024, stdout),
        })
    }

    /// Spawns and waits for the [`READY`] line.
    fn start(cmd: Command) -> Result<Self> {
        let mut s = Self::spawn(cmd)?;
        let mut line = String::new();
        loop {
            line.clear();
            if s.stdout.read_line(&mut line)? == 0 {
                bail!("ssh ended before the session was ready");
            }
            if line.contains(READY) {
                return Ok(s);
            }
        }
    }

    /// Sends one byte and waits for it to come back.
    fn round_trip(&mut self) -> Result<()> {
        self.stdin.write_all(b"x")?;
        self.stdin.flush()?;
        let mut b = [0u8; 1];
        self.stdout.read_exact(&mut b).context("reading the echo")?;
        if b[0] != b'x' {
            bail!("the echo returned {:?} instead of `x`", b[0] as char);
        }
        Ok(())
    }
}

impl Drop for Interactive {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The PSM table: one row per figure, `raw` and `psm` columns and their ratio.
pub fn table(figures: &[PsmFigures], plan: &PsmPlan) -> String {
    let get = |name: &str| figures.iter().find(|f| f.path == name);
    let (raw, psm) = (get("raw"), get("psm"));
    let mut out = format!(
        "\nPrivileged SSH sessions: stock ssh through the PSM proxy (recorded, vault key injected) vs the raw tunnel\n\
         ({} of output, {} echo samples, {} concurrent sessions)\n\n",
        human_bytes(plan.bytes),
        plan.echo_samples,
        plan.sessions
    );
    out += &format!(
        "| {:<44} | {:>10} | {:>10} | {:>9} |\n|{:-<46}|{:->12}|{:->12}|{:->11}|\n",
        "figure", "raw", "psm", "psm/raw", "", "", "", ""
    );
    type Pick = fn(&PsmFigures) -> Option<f64>;
    let rows: [(&str, Pick); 8] = [
        ("bulk output, Gbit/s ↑", |f| f.bulk_gbit_s),
        ("CPU-s/GB, cpam processes ↓", |f| f.cpu_s_per_gb_cpam),
        ("CPU-s/GB, all (ssh, cpam, sshd) ↓", |f| {
            f.cpu_s_per_gb_all
        }),
        ("echo p50, ms ↓", |f| f.echo_p50_ms),
        ("echo p99, ms ↓", |f| f.echo_p99_ms),
        ("RSS idle, MiB ↓", |f| f.rss_idle_mib),
        ("RSS with the sessions open, MiB ↓", |f| {
            f.rss_sessions_mib
        }),
        ("RSS per session, KiB ↓", |f| {
            let (idle, open) = (f.rss_idle_mib?, f.rss_sessions_mib?);
            (f.sessions_up > 0).then(|| (open - idle) * 1024.0 / f.sessions_up as f64)
        }),
    ];
    let cell = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), |v| format!("{v:.2}"));
    for (label, pick) in rows {
        let (r, p) = (raw.and_then(pick), psm.and_then(pick));
        let ratio = match (r, p) {
            (Some(r), Some(p)) if r > 0.0 => format!("{:.2}×", p / r),
            _ => "–".to_owned(),
        };
        out += &format!(
            "| {label:<44} | {:>10} | {:>10} | {ratio:>9} |\n",
            cell(r),
            cell(p)
        );
    }
    for f in figures {
        for e in &f.errors {
            out += &format!("ERROR {}: {e}\n", f.path);
        }
    }
    out
}

pub(crate) fn human_bytes(b: u64) -> String {
    if b.is_multiple_of(1 << 30) {
        format!("{} GiB", b >> 30)
    } else if b.is_multiple_of(1 << 20) {
        format!("{} MiB", b >> 20)
    } else {
        format!("{b} bytes")
    }
}
