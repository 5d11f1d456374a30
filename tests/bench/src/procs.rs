//! Processes the benchmark starts, and what `/proc` says about them.
//!
//! Every process is held by a [`ChildGuard`] that kills it by PID and reaps it
//! on drop, so an early `?` never leaves a tunnel running. Nothing here ever
//! signals a process by name.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// PIDs of every live [`ChildGuard`], so a signal handler can stop them
/// when the bench is interrupted before the guards drop.
static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Kills (SIGKILL, by PID) every process the bench started and has not
/// stopped yet. For signal handlers; normal teardown is the guards' drop.
pub fn kill_all_started() {
    let pids: Vec<String> = LIVE
        .lock()
        .map(|v| v.iter().map(u32::to_string).collect())
        .unwrap_or_default();
    if !pids.is_empty() {
        let _ = Command::new("kill")
            .arg("-KILL")
            .args(&pids)
            .stderr(Stdio::null())
            .status();
    }
}

/// A started process, killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    /// Short role name, e.g. `vendor-ssh`, used in reports.
    pub name: String,
    child: Child,
    /// Kept open so a `-tt` session never sees end of input.
    _stdin: Option<ChildStdin>,
}

impl ChildGuard {
    pub fn spawn(name: &str, cmd: &mut Command) -> Result<Self> {
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name} ({:?})", cmd.get_program()))?;
        if let Ok(mut live) = LIVE.lock() {
            live.push(child.id());
        }
        Ok(Self {
            name: name.to_owned(),
            child,
            _stdin: None,
        })
    }

    /// Like [`ChildGuard::spawn`], with stdin a pipe that stays open.
    pub fn spawn_with_open_stdin(name: &str, cmd: &mut Command) -> Result<Self> {
        let mut guard = Self::spawn(name, cmd.stdin(Stdio::piped()))?;
        guard._stdin = guard.child.stdin.take();
        Ok(guard)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the process the way a service manager does (SIGTERM, by PID)
    /// and waits up to `timeout` for it to exit; SIGKILL after that.
    pub fn terminate(&mut self, timeout: Duration) -> Result<()> {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .with_context(|| format!("cannot signal {}", self.name))?;
        let deadline = Instant::now() + timeout;
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("{} did not stop within {timeout:?} of SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Fails if the process has already exited.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited early with {status}", self.name);
        }
        Ok(())
    }

    /// Reads stdout lines until one starts with `prefix`; returns the rest of
    /// that line. Later output is drained by a thread so the pipe never fills.
    pub fn wait_stdout_line(&mut self, prefix: &str, timeout: Duration) -> Result<String> {
        let stdout = self
            .child
            .stdout
            .take()
            .with_context(|| format!("{}: stdout is not piped", self.name))?;
        let (tx, rx) = mpsc::channel();
        let prefix_owned = prefix.to_owned();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let mut sent = false;
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if !sent && let Some(rest) = line.trim_end().strip_prefix(&prefix_owned) {
                            sent = tx.send(rest.trim().to_owned()).is_ok();
                        }
                    }
                }
            }
        });
        let deadline = Instant::now() + timeout;
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(rest) => return Ok(rest),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!(
                        "{} closed stdout without printing `{prefix} ...`",
                        self.name
                    )
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            self.check_running()?;
            if Instant::now() > deadline {
                bail!(
                    "{} did not print `{prefix} ...` within {timeout:?}",
                    self.name
                );
            }
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let pid = self.child.id();
        if let Ok(mut live) = LIVE.lock() {
            live.retain(|p| *p != pid);
        }
    }
}

/// Runs a command to completion with a timeout; fails with its stderr when it
/// exits non-zero.
pub fn run_checked(what: &str, cmd: &mut Command, timeout: Duration) -> Result<Output> {
    run_input(what, cmd, None, timeout)
}

/// [`run_checked`] with `input` written to the command's standard input
/// (closed after it).
pub fn run_input(
    what: &str,
    cmd: &mut Command,
    input: Option<&[u8]>,
    timeout: Duration,
) -> Result<Output> {
    let mut child = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {what}"))?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(input)
            .with_context(|| format!("writing the standard input of {what}"))?;
    }
    let mut out_pipe = child.stdout.take();
    let mut err_pipe = child.stderr.take();
    let out_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(p) = out_pipe.as_mut() {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    });
    let err_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(p) = err_pipe.as_mut() {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = out_thread.join().unwrap_or_default();
    let stderr = err_thread.join().unwrap_or_default();
    if !status.success() {
        bail!(
            "{what} failed ({status}): {}",
            String::from_utf8_lossy(&stderr).trim()
        );
    }
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot bind 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Waits until `addr` accepts a TCP connection.
pub fn wait_listening(addr: SocketAddr, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("nothing listens on {addr} after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Clock ticks per second for `/proc/PID/stat`. Linux fixes USER_HZ at 100
/// on every architecture cpam targets; `getconf CLK_TCK` confirms it.
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|v| *v > 0.0)
        .unwrap_or(100.0)
}

/// Fields of `/proc/PID/stat` after the command name (field 3 onwards).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// utime + stime of a process (all its threads), in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let f = stat_fields(pid)?;
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// utime + stime of a process plus cutime + cstime, the CPU of the
/// children it has waited for (sshd's finished sessions, a client's `ssh`),
/// in clock ticks.
pub fn cpu_ticks_with_children(pid: u32) -> Option<u64> {
    let f = stat_fields(pid)?;
    (11..=14).map(|i| f.get(i)?.parse::<u64>().ok()).sum()
}

/// CPU time of the calling thread in nanoseconds (the first field of
/// `/proc/thread-self/schedstat`), for timing in-process work finer than
/// clock ticks.
pub fn thread_cpu_ns() -> Option<u64> {
    fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// All descendants of `root` (children, grandchildren, ...), found by ppid.
pub fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of: HashMap<u32, u32> = HashMap::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(ppid) = stat_fields(pid).and_then(|f| f.get(1)?.parse::<u32>().ok()) {
                parent_of.insert(pid, ppid);
            }
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        let mut kids: Vec<u32> = parent_of
            .iter()
            .filter(|&(_, &pp)| pp == p)
            .map(|(&c, _)| c)
            .collect();
        kids.sort_unstable();
        found.extend(kids);
        i += 1;
    }
    found.remove(0);
    found
}

/// Resident set size in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// (total, idle) jiffies from the first line of `/proc/stat`.
fn cpu_totals() -> Option<(u64, u64)> {
    let s = fs::read_to_string("/proc/stat").ok()?;
    let v: Vec<u64> = s
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 5 {
        return None;
    }
    Some((v.iter().sum(), v[3] + v[4]))
}

/// Busy jiffies of the whole machine (user, nice, system, irq, softirq,
/// steal) from the first line of `/proc/stat`.
pub fn machine_busy_ticks() -> Option<u64> {
    let s = fs::read_to_string("/proc/stat").ok()?;
    let v: Vec<u64> = s
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 8 {
        return None;
    }
    Some(v[0] + v[1] + v[2] + v[5] + v[6] + v[7])
}

/// Waits until the machine has been at least `min_idle` idle for two
/// consecutive half-second samples, at most `cap`. Returns the last idle
/// fraction seen and whether the wait succeeded.
pub fn wait_idle(min_idle: f64, cap: Duration) -> (f64, bool) {
    let deadline = Instant::now() + cap;
    let mut good = 0;
    let mut last = 0.0;
    let Some(mut prev) = cpu_totals() else {
        return (0.0, false);
    };
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        let Some(now) = cpu_totals() else {
            return (0.0, false);
        };
        let total = now.0.saturating_sub(prev.0).max(1);
        last = now.1.saturating_sub(prev.1) as f64 / total as f64;
        prev = now;
        good = if last >= min_idle { good + 1 } else { 0 };
        if good >= 2 {
            return (last, true);
        }
    }
    (last, false)
}

/// Creates a directory (and parents) if it does not exist.
pub fn ensure_dir(path: &Path) -> Result<()> {
    fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))
}
