//! Child processes whose stdout and stderr go to files in the test's
//! directory, killed and reaped on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A spawned process with its output captured to `<dir>/<name>.stdout` and
/// `<dir>/<name>.stderr`. Dropping it sends SIGKILL and waits for it.
#[derive(Debug)]
pub struct Child {
    name: String,
    inner: std::process::Child,
    stdout: PathBuf,
    stderr: PathBuf,
    status: Option<ExitStatus>,
}

/// The outcome of a command run to completion by [`run`].
#[derive(Debug, Clone)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Whether it exited 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Fails with the command's output unless it exited 0.
    pub fn ok(self, what: &str) -> anyhow::Result<Self> {
        if !self.status.success() {
            bail!(
                "{what} failed ({}):\nstdout: {}\nstderr: {}",
                self.status,
                self.stdout.trim_end(),
                self.stderr.trim_end()
            );
        }
        Ok(self)
    }
}

fn unique_log_base(dir: &Path, name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    let mut n = 0u32;
    loop {
        let base = if n == 0 {
            safe.clone()
        } else {
            format!("{safe}.{n}")
        };
        if !dir.join(format!("{base}.stderr")).exists() {
            return base;
        }
        n += 1;
    }
}

impl Child {
    /// Spawns `cmd` with stdin closed and output captured in `dir`.
    pub fn spawn(name: &str, cmd: Command, dir: &Path) -> anyhow::Result<Child> {
        Self::spawn_with_stdin(name, cmd, dir, Stdio::null())
    }

    /// Spawns `cmd` reading `input` (written to a file in `dir` first) on
    /// its stdin, output captured in `dir`.
    pub fn spawn_with_input(
        name: &str,
        cmd: Command,
        dir: &Path,
        input: &[u8],
    ) -> anyhow::Result<Child> {
        let path = dir.join(format!("{}.stdin", unique_log_base(dir, name)));
        std::fs::write(&path, input).with_context(|| format!("writing {}", path.display()))?;
        let file =
            std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        Self::spawn_with_stdin(name, cmd, dir, Stdio::from(file))
    }

    fn spawn_with_stdin(
        name: &str,
        mut cmd: Command,
        dir: &Path,
        stdin: Stdio,
    ) -> anyhow::Result<Child> {
        let base = unique_log_base(dir, name);
        let stdout = dir.join(format!("{base}.stdout"));
        let stderr = dir.join(format!("{base}.stderr"));
        let out = std::fs::File::create(&stdout)
            .with_context(|| format!("creating {}", stdout.display()))?;
        let err = std::fs::File::create(&stderr)
            .with_context(|| format!("creating {}", stderr.display()))?;
        cmd.stdin(stdin).stdout(out).stderr(err);
        let inner = cmd
            .spawn()
            .with_context(|| format!("spawning {name}: {cmd:?}"))?;
        Ok(Child {
            name: name.to_string(),
            inner,
            stdout,
            stderr,
            status: None,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.inner.id()
    }

    /// The name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Captured stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// Captured stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Both captured streams, labelled, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "----- {} (pid {}) stdout -----\n{}\n----- {} stderr -----\n{}",
            self.name,
            self.pid(),
            self.stdout().trim_end(),
            self.name,
            self.stderr().trim_end()
        )
    }

    /// The exit status if it has exited, without blocking.
    pub fn try_status(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self
                .inner
                .try_wait()
                .with_context(|| format!("waiting for {}", self.name))?;
        }
        Ok(self.status)
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.try_status(), Ok(None))
    }

    /// Waits up to `timeout` for it to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> anyhow::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_status()? {
                return Ok(Some(s));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for a stdout line starting with `prefix` and returns the rest of
    /// that line, trimmed. Fails with the logs if the process exits first or
    /// `timeout` passes.
    pub fn wait_for_line(&mut self, prefix: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.stdout();
            if let Some(rest) = out.lines().find_map(|l| l.strip_prefix(prefix)) {
                return Ok(rest.trim().to_string());
            }
            if let Some(s) = self.try_status()? {
                bail!(
                    "{} exited ({s}) before printing `{prefix}...`\n{}",
                    self.name,
                    self.logs()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not print `{prefix}...` within {timeout:?}\n{}",
                    self.name,
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for `needle` to appear anywhere in stderr.
    pub fn wait_for_stderr(&mut self, needle: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.stderr().contains(needle) {
                return Ok(());
            }
            if let Some(s) = self.try_status()? {
                bail!(
                    "{} exited ({s}) before logging `{needle}`\n{}",
                    self.name,
                    self.logs()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not log `{needle}` within {timeout:?}\n{}",
                    self.name,
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal by number through `kill(1)` (e.g. 15 for SIGTERM).
    pub fn signal(&self, sig: i32) -> anyhow::Result<()> {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .context("running kill")?;
        if !st.success() {
            bail!("kill -{sig} {} failed", self.pid());
        }
        Ok(())
    }

    /// SIGKILL and reap. Returns the exit status.
    pub fn kill(&mut self) -> anyhow::Result<ExitStatus> {
        if let Some(s) = self.try_status()? {
            return Ok(s);
        }
        // Ignore the error: it only means the process already exited.
        let _ = self.inner.kill();
        let s = self
            .inner
            .wait()
            .with_context(|| format!("reaping {}", self.name))?;
        self.status = Some(s);
        Ok(s)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// Runs `cmd` to completion (killing it after `timeout`), output captured
/// through files in `dir`.
pub fn run(name: &str, cmd: Command, dir: &Path, timeout: Duration) -> anyhow::Result<Output> {
    finish(name, Child::spawn(name, cmd, dir)?, timeout)
}

/// [`run`] with `input` on stdin.
pub fn run_with_input(
    name: &str,
    cmd: Command,
    dir: &Path,
    timeout: Duration,
    input: &[u8],
) -> anyhow::Result<Output> {
    finish(
        name,
        Child::spawn_with_input(name, cmd, dir, input)?,
        timeout,
    )
}

fn finish(name: &str, mut child: Child, timeout: Duration) -> anyhow::Result<Output> {
    match child.wait_timeout(timeout)? {
        Some(status) => Ok(Output {
            status,
            stdout: child.stdout(),
            stderr: child.stderr(),
        }),
        None => {
            child.kill()?;
            bail!("{name} did not finish within {timeout:?}\n{}", child.logs())
        }
    }
}
