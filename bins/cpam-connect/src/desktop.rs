//! `cpam-connect desktop SERVICE`: Desktop Sharing. Forwards a local port to
//! SERVICE (one audited session per connection, as `forward` does) and
//! launches the platform's native remote desktop client on it: `xfreerdp`
//! (Linux and BSDs), `mstsc` (Windows) or `open rdp://...` (macOS). Without a
//! client it prints the address to connect one to and forwards until
//! interrupted.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use cpam_core::tunnel::connect::ConnectClient;
use tokio_util::sync::CancellationToken;

/// What `desktop` was asked to do.
#[derive(clap::Args, Debug)]
pub struct DesktopArgs {
    /// The desktop sharing (or rdp) service.
    pub service: String,
    /// Local ADDR:PORT to forward (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// The client program to launch instead of the platform's; `{addr}` in
    /// its arguments is replaced by the forwarded address, else `/v:ADDR`
    /// is passed first.
    #[arg(long)]
    pub client: Option<PathBuf>,
    /// Only forward and print the address; launch nothing.
    #[arg(long)]
    pub no_launch: bool,
    /// Arguments passed on to the client (after `--`), e.g.
    /// `-- /u:alice /cert:ignore`.
    #[arg(last = true)]
    pub client_args: Vec<String>,
}

/// One way of starting a client on an address.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Launch {
    program: PathBuf,
    args: Vec<OsString>,
}

/// The client to launch: `--client`, else the first native one found in
/// `path` (`None` when there is none).
fn choose(args: &DesktopArgs, addr: SocketAddr, path: Option<&std::ffi::OsStr>) -> Option<Launch> {
    let extra = |first: Vec<OsString>| -> Vec<OsString> {
        first
            .into_iter()
            .chain(args.client_args.iter().map(OsString::from))
            .collect()
    };
    if let Some(program) = &args.client {
        let has_placeholder = args.client_args.iter().any(|a| a.contains("{addr}"));
        let rest = args
            .client_args
            .iter()
            .map(|a| OsString::from(a.replace("{addr}", &addr.to_string())));
        let args = if has_placeholder {
            rest.collect()
        } else {
            std::iter::once(OsString::from(format!("/v:{addr}")))
                .chain(rest)
                .collect()
        };
        return Some(Launch {
            program: program.clone(),
            args,
        });
    }
    let v = OsString::from(format!("/v:{addr}"));
    if cfg!(windows) {
        let program = find("mstsc.exe", path)?;
        return Some(Launch {
            program,
            args: extra(vec![v]),
        });
    }
    if cfg!(target_os = "macos") {
        let program = find("open", path)?;
        let url = format!("rdp://full%20address=s:{addr}");
        return Some(Launch {
            program,
            args: vec![OsString::from(url)],
        });
    }
    ["xfreerdp", "xfreerdp3", "sdl-freerdp", "wlfreerdp"]
        .iter()
        .find_map(|name| find(name, path))
        .map(|program| Launch {
            program,
            args: extra(vec![v]),
        })
}

/// `name` in the directories of `path` (a `PATH` value).
fn find(name: &str, path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
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

/// Runs `desktop`: returns the client's exit code (0 when none was
/// launched and the forward was interrupted).
pub async fn run(client: std::sync::Arc<ConnectClient>, args: DesktopArgs) -> anyhow::Result<i32> {
    let addr: SocketAddr = args
        .listen
        .parse()
        .map_err(|_| anyhow::anyhow!("--listen `{}` must be ADDR:PORT", args.listen))?;
    let listener = cpam_core::tunnel::bind_listener(addr)?;
    let local = listener.local_addr()?;
    let stop = CancellationToken::new();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            cpam_core::signal::shutdown().await;
            stop.cancel();
        });
    }
    client.connect_with_retry(&stop).await?;
    cpam_core::outln!("cpam-connect forwarding {} on {local}", args.service);
    let forward = tokio::spawn(client.forward(args.service.clone(), listener, stop.clone()));
    let launch = if args.no_launch {
        None
    } else {
        choose(&args, local, std::env::var_os("PATH").as_deref())
    };
    let code = match launch {
        None => {
            if !args.no_launch {
                cpam_core::outln!(
                    "no remote desktop client found (xfreerdp, mstsc, open); connect yours to {local}"
                );
            }
            stop.cancelled().await;
            0
        }
        Some(launch) => {
            tracing::info!(program = %launch.program.display(), "launching the desktop client");
            let mut child = tokio::process::Command::new(&launch.program)
                .args(&launch.args)
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", launch.program.display()))?;
            let status = tokio::select! {
                s = child.wait() => s?,
                () = stop.cancelled() => {
                    let _ = child.kill().await;
                    child.wait().await?
                }
            };
            status.code().unwrap_or(1)
        }
    };
    stop.cancel();
    forward.await??;
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(client: Option<&str>, extra: &[&str]) -> DesktopArgs {
        DesktopArgs {
            service: "desk".into(),
            listen: "127.0.0.1:0".into(),
            client: client.map(PathBuf::from),
            no_launch: false,
            client_args: extra.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn addr() -> SocketAddr {
        "127.0.0.1:4000".parse().expect("address")
    }

    #[test]
    fn a_chosen_client_gets_the_address_first_or_in_its_placeholder() {
        let l = choose(&args(Some("/opt/rdp"), &["/u:a"]), addr(), None).expect("launch");
        assert_eq!(
            l.args,
            vec![OsString::from("/v:127.0.0.1:4000"), "/u:a".into()]
        );
        let l = choose(&args(Some("vnc"), &["{addr}", "-x"]), addr(), None).expect("launch");
        assert_eq!(l.args, vec![OsString::from("127.0.0.1:4000"), "-x".into()]);
    }

    #[test]
    #[cfg(unix)]
    fn the_native_client_is_found_on_the_path_or_none_is() -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir()?;
        assert_eq!(
            choose(&args(None, &[]), addr(), Some(dir.path().as_os_str())),
            None
        );
        let bin = dir.path().join("xfreerdp");
        std::fs::write(&bin, "#!/bin/sh\n")?;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))?;
        let l = choose(
            &args(None, &["/cert:ignore"]),
            addr(),
            Some(dir.path().as_os_str()),
        )
        .expect("xfreerdp found");
        assert_eq!(l.program, bin);
        assert_eq!(
            l.args,
            vec![OsString::from("/v:127.0.0.1:4000"), "/cert:ignore".into()]
        );
        Ok(())
    }
}
