//! Desktop Sharing on the vendor's machine: the remote desktop client to
//! start on a forwarded local address, and running it.
//!
//! A Desktop Sharing service is a raw tunnel to the RDP (or VNC) port of a
//! customer's computer: the vendor's own client logs in with the
//! computer's account. cpam forwards a local port to the service (one
//! audited session per connection, see [`ConnectClient::forward`]) and
//! starts the platform's native client on it: `xfreerdp` (Linux and BSDs),
//! `mstsc` (Windows) or `open rdp://...` (macOS), or a program the caller
//! names. `cpam-connect desktop`, the C ABI's
//! `cpam_forward_launch_desktop` and Python's `Forward.launch_desktop` are
//! this module.
//!
//! [`ConnectClient::forward`]: super::connect::ConnectClient::forward

use std::ffi::{OsStr, OsString};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use crate::error::{Error, ErrorKind, Result};

/// The native clients looked for on `PATH` on Linux and the BSDs, in order.
pub const FREERDP_CLIENTS: [&str; 4] = ["xfreerdp", "xfreerdp3", "sdl-freerdp", "wlfreerdp"];

/// Where the address goes in a named client's arguments; without it,
/// `/v:ADDR` (FreeRDP's and mstsc's syntax) is passed first.
pub const ADDRESS_PLACEHOLDER: &str = "{addr}";

/// A remote desktop client to start on a forwarded address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesktopClient {
    program: PathBuf,
    args: Vec<OsString>,
}

impl DesktopClient {
    /// `program` on `addr`: [`ADDRESS_PLACEHOLDER`] in `args` is replaced
    /// by the address, else `/v:ADDR` goes before them.
    pub fn named(program: impl Into<PathBuf>, args: &[String], addr: SocketAddr) -> Self {
        let addr = addr.to_string();
        let has_placeholder = args.iter().any(|a| a.contains(ADDRESS_PLACEHOLDER));
        let rest = args
            .iter()
            .map(|a| OsString::from(a.replace(ADDRESS_PLACEHOLDER, &addr)));
        let args = if has_placeholder {
            rest.collect()
        } else {
            std::iter::once(OsString::from(format!("/v:{addr}")))
                .chain(rest)
                .collect()
        };
        Self {
            program: program.into(),
            args,
        }
    }

    /// The platform's native client on `addr`, found on this process's
    /// `PATH`, with `extra` arguments after the address (macOS's `open`
    /// takes none); `None` when there is none.
    pub fn native(addr: SocketAddr, extra: &[String]) -> Option<Self> {
        Self::native_in(addr, extra, std::env::var_os("PATH").as_deref())
    }

    /// [`DesktopClient::native`] on the directories of `path` (a `PATH` value).
    pub fn native_in(addr: SocketAddr, extra: &[String], path: Option<&OsStr>) -> Option<Self> {
        let with_address = |program: PathBuf| Self {
            program,
            args: std::iter::once(OsString::from(format!("/v:{addr}")))
                .chain(extra.iter().map(OsString::from))
                .collect(),
        };
        if cfg!(windows) {
            return find("mstsc.exe", path).map(with_address);
        }
        if cfg!(target_os = "macos") {
            return find("open", path).map(|program| Self {
                program,
                args: vec![OsString::from(format!("rdp://full%20address=s:{addr}"))],
            });
        }
        FREERDP_CLIENTS
            .iter()
            .find_map(|name| find(name, path))
            .map(with_address)
    }

    /// `named` when a program is given, else `native`; the error says
    /// where to connect a client by hand when none is found.
    pub fn choose(program: Option<&Path>, args: &[String], addr: SocketAddr) -> Result<Self> {
        match program {
            Some(p) => Ok(Self::named(p, args, addr)),
            None => Self::native(addr, args).ok_or_else(|| {
                Error::not_found(format!(
                    "no remote desktop client found (xfreerdp, mstsc, open); connect yours to {addr}"
                ))
            }),
        }
    }

    /// The program started.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Its arguments.
    pub fn args(&self) -> &[OsString] {
        &self.args
    }

    /// Starts the client and waits for it to exit; when `stop` fires
    /// first, the client is killed. Returns its exit code (1 when a signal
    /// ended it). A program that cannot be started is an error naming it.
    pub async fn run(&self, stop: &CancellationToken) -> Result<i32> {
        tracing::info!(program = %self.program.display(), "launching the desktop client");
        let mut child = tokio::process::Command::new(&self.program)
            .args(&self.args)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                Error::new(
                    ErrorKind::NotFound,
                    format!("cannot start {}: {e}", self.program.display()),
                )
            })?;
        let status = tokio::select! {
            s = child.wait() => s?,
            () = stop.cancelled() => {
                let _ = child.kill().await;
                child.wait().await?
            }
        };
        Ok(status.code().unwrap_or(1))
    }
}

/// `name` in the directories of `path` (a `PATH` value).
fn find(name: &str, path: Option<&OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path?)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        p.is_file()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        "127.0.0.1:4000".parse().expect("address")
    }

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_named_client_gets_the_address_first_or_in_its_placeholder() {
        let l = DesktopClient::named("/opt/rdp", &strings(&["/u:a"]), addr());
        assert_eq!(
            l.args(),
            [OsString::from("/v:127.0.0.1:4000"), "/u:a".into()]
        );
        let l = DesktopClient::named("vnc", &strings(&["{addr}", "-x"]), addr());
        assert_eq!(l.args(), [OsString::from("127.0.0.1:4000"), "-x".into()]);
    }

    #[test]
    #[cfg(all(unix, not(target_os = "macos")))]
    fn the_native_client_is_found_on_the_path_or_none_is() -> Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir()?;
        let path = Some(dir.path().as_os_str());
        assert_eq!(DesktopClient::native_in(addr(), &[], path), None);
        let bin = dir.path().join("xfreerdp");
        std::fs::write(&bin, "#!/bin/sh\n")?;
        // Not executable: not a client.
        assert_eq!(DesktopClient::native_in(addr(), &[], path), None);
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))?;
        let l = DesktopClient::native_in(addr(), &strings(&["/cert:ignore"]), path)
            .expect("xfreerdp found");
        assert_eq!(l.program(), bin);
        assert_eq!(
            l.args(),
            [OsString::from("/v:127.0.0.1:4000"), "/cert:ignore".into()]
        );
        Ok(())
    }

    #[tokio::test]
    #[cfg(unix)]
    async fn the_client_runs_to_its_exit_code_or_is_killed_on_stop() -> Result<()> {
        let stop = CancellationToken::new();
        let exits = DesktopClient::named("/bin/sh", &strings(&["-c", "exit 7", "{addr}"]), addr());
        assert_eq!(exits.run(&stop).await?, 7);
        let sleeps =
            DesktopClient::named("/bin/sh", &strings(&["-c", "sleep 30", "{addr}"]), addr());
        let started = std::time::Instant::now();
        let stopper = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            stopper.cancel();
        });
        sleeps.run(&stop).await?;
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        let missing = DesktopClient::named("/nonexistent/rdp", &[], addr());
        let e = missing
            .run(&CancellationToken::new())
            .await
            .expect_err("no such program");
        assert!(e.message().contains("/nonexistent/rdp"), "{e}");
        Ok(())
    }
}
