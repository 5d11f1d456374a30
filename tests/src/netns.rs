//! Network namespaces: a "vendor" and a "customer" namespace per test, joined
//! by one veth pair, deleted (after killing every process inside) on drop.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip").args(args).output().map_err(|e| {
        anyhow::anyhow!(
            "cannot run `ip {}` ({e}): e2e tests need iproute2 and root to create \
             network namespaces; run them as root through `bash tests/run.sh`",
            args.join(" ")
        )
    })?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}; e2e tests need root (CAP_SYS_ADMIN, CAP_NET_ADMIN) \
             to create network namespaces; run them as root through `bash tests/run.sh`",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The outcome of [`Netns::probe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Connected,
    /// The address answered with a reset: reachable, nothing listening.
    Refused,
    /// Unreachable, timed out, or another error.
    Failed(String),
}

/// One network namespace. Dropping it kills every process inside and deletes it.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates namespace `name` with `lo` up.
    pub fn create(name: &str) -> anyhow::Result<Netns> {
        ip(&["netns", "add", name])?;
        let ns = Netns {
            name: name.to_string(),
        };
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec NAME program` — a command that runs inside the namespace.
    /// `ip` execs the program, so the child's pid is the program's pid.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Tries a TCP connection to `addr:port` from inside this namespace
    /// (bash `/dev/tcp`, 3 s limit).
    pub fn probe(&self, addr: &str, port: u16) -> Probe {
        let out = self
            .command("timeout")
            .args([
                "3",
                "bash",
                "-c",
                &format!("exec 3<>/dev/tcp/{addr}/{port}"),
            ])
            .output();
        match out {
            Ok(o) if o.status.success() => Probe::Connected,
            Ok(o) if String::from_utf8_lossy(&o.stderr).contains("Connection refused") => {
                Probe::Refused
            }
            Ok(o) => Probe::Failed(String::from_utf8_lossy(&o.stderr).trim().to_string()),
            Err(e) => Probe::Failed(e.to_string()),
        }
    }

    /// Whether a TCP connection to `addr:port` from inside this namespace succeeds.
    pub fn can_connect(&self, addr: &str, port: u16) -> bool {
        self.probe(addr, port) == Probe::Connected
    }

    /// Sends `bytes` random bytes to `addr:port` from inside the namespace and
    /// closes; the peer hanging up early is not an error.
    pub fn send_random(&self, addr: &str, port: u16, bytes: usize) -> anyhow::Result<()> {
        self.command("timeout")
            .args([
                "10",
                "bash",
                "-c",
                &format!("head -c {bytes} /dev/urandom >/dev/tcp/{addr}/{port}"),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .context("sending random bytes")?;
        Ok(())
    }

    fn pids(&self) -> Vec<String> {
        Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for _ in 0..50 {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            let _ = Command::new("kill").arg("-9").args(&pids).status();
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Deletes namespaces left by test processes that no longer exist (killed
/// before their guards ran). Names are `cpam-[vcw]-PID-N`; deleting a
/// namespace also deletes the veth pairs with an end inside it.
pub(crate) fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name
            .strip_prefix("cpam-v-")
            .or_else(|| name.strip_prefix("cpam-c-"))
            .or_else(|| name.strip_prefix("cpam-w-"))
        else {
            continue;
        };
        let Some(pid) = rest.split('-').next() else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            drop(Netns {
                name: name.to_string(),
            });
        }
    }
}

/// The standard two-namespace layout.
///
/// ```text
///  vendor ns  [vendor_addr]/30 ===veth=== [customer_addr]/30  customer ns
/// ```
#[derive(Debug)]
pub struct Topology {
    pub vendor: Netns,
    pub customer: Netns,
    pub vendor_addr: Ipv4Addr,
    pub customer_addr: Ipv4Addr,
}

impl Topology {
    /// Creates both namespaces and the veth pair between them. Names and the
    /// /30 inside 10.213.0.0/16 are unique per process and call.
    pub fn create() -> anyhow::Result<Topology> {
        remove_stale();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let tag = format!("{pid}-{n}");
        let vendor = Netns::create(&format!("cpam-v-{tag}"))?;
        let customer = Netns::create(&format!("cpam-c-{tag}"))?;
        // Interface names are at most 15 bytes; they live in their own
        // namespaces, so they only need to be unique during creation.
        let slot = (pid.wrapping_mul(64).wrapping_add(n)) % 16384;
        let base = u32::from(Ipv4Addr::new(10, 213, 0, 0)) + slot * 4;
        let vendor_addr = Ipv4Addr::from(base + 1);
        let customer_addr = Ipv4Addr::from(base + 2);
        let vif = format!("cv{:x}", pid * 256 + n % 256);
        let cif = format!("cc{:x}", pid * 256 + n % 256);
        ip(&[
            "link",
            "add",
            &vif,
            "netns",
            vendor.name(),
            "type",
            "veth",
            "peer",
            "name",
            &cif,
            "netns",
            customer.name(),
        ])?;
        ip(&[
            "-n",
            vendor.name(),
            "addr",
            "add",
            &format!("{vendor_addr}/30"),
            "dev",
            &vif,
        ])?;
        ip(&[
            "-n",
            customer.name(),
            "addr",
            "add",
            &format!("{customer_addr}/30"),
            "dev",
            &cif,
        ])?;
        ip(&["-n", vendor.name(), "link", "set", &vif, "up"])?;
        ip(&["-n", customer.name(), "link", "set", &cif, "up"])?;
        Ok(Topology {
            vendor,
            customer,
            vendor_addr,
            customer_addr,
        })
    }
}
