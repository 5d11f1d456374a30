//! `cpam-connect`: the vendor's Connection Manager. Thin: clap, wiring, run.
// Output goes through `cpam_core::outln!`: a closed pipe ends the program
// quietly instead of a `println!` panic.
#![deny(clippy::print_stdout)]

mod desktop;
mod ipconnect;
mod transfer;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cpam_core::Secret;
use cpam_core::tunnel::connect::ConnectClient;
use cpam_core::tunnel::profile::Profile;
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(
    name = "cpam-connect",
    version,
    about = "cpam Connection Manager: reach a customer's services through its gatekeeper"
)]
struct Cli {
    /// The profile downloaded for one gatekeeper.
    #[arg(long, global = true)]
    profile: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List the services you may use now.
    Services {
        #[arg(long)]
        json: bool,
    },
    /// Check out the credential of SERVICE (an ssh service) for a while.
    Checkout {
        service: String,
        /// How long (e.g. 30m, 2h); default: the service's longest.
        #[arg(long = "for")]
        for_: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Check in your checkout of SERVICE; your sessions on it end.
    Checkin {
        service: String,
        #[arg(long)]
        json: bool,
    },
    /// List your checkouts.
    Checkouts {
        #[arg(long)]
        json: bool,
    },
    /// Your master password, asked before a privileged session starts.
    #[command(subcommand)]
    MasterPassword(MasterPasswordCmd),
    /// Listen locally; every connection is one audited session to SERVICE.
    Forward {
        service: String,
        /// Local ADDR:PORT (port 0 picks a free one).
        #[arg(long)]
        listen: String,
    },
    /// A one-time credential for your next RDP session to SERVICE (an rdp
    /// service): type it at the RDP client's login. Asks for your master
    /// password on the terminal, or reads it as one line of stdin.
    RdpCredential {
        service: String,
        #[arg(long)]
        json: bool,
    },
    /// Desktop Sharing: forward a local port to SERVICE and launch the
    /// native remote desktop client (xfreerdp, mstsc, open rdp://) on it.
    Desktop(desktop::DesktopArgs),
    /// One session to SERVICE on standard input and output, for
    /// `ssh -o ProxyCommand='cpam-connect --profile P pipe SERVICE'`.
    Pipe { service: String },
    /// Upload LOCAL to SERVICE (an ssh service) over SFTP, audited with its
    /// SHA-256. Asks for your master password on the terminal, or reads it
    /// as one line of stdin.
    Put(transfer::PutArgs),
    /// Download REMOTE from SERVICE (an ssh service) over SFTP, audited
    /// with its SHA-256. The master password as for `put`.
    Get(transfer::GetArgs),
    /// IP Connect: a customer's services at local addresses and names.
    #[command(subcommand)]
    Ipconnect(ipconnect::IpconnectCmd),
    /// Print the known_hosts line that lets `ssh` verify the server's
    /// privileged-session host key (use with `-o HostKeyAlias=ALIAS`).
    KnownHosts {
        #[arg(long, default_value = "cpam")]
        alias: String,
    },
}

#[derive(Subcommand, Debug)]
enum MasterPasswordCmd {
    /// Set it: asks for your login password (or current master password)
    /// and the new one on the terminal, or reads them as two lines of stdin.
    Set,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CPAM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt.block_on(run(cli)),
        Err(e) => Err(anyhow::anyhow!("cannot start the runtime: {e}")),
    };
    match result {
        Ok(0) => ExitCode::SUCCESS,
        // The desktop client's own exit status.
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the command; the exit code (a launched desktop client's).
async fn run(cli: Cli) -> anyhow::Result<i32> {
    if let Command::Ipconnect(cmd) = cli.command {
        ipconnect::run(cli.profile, cmd).await?;
        return Ok(0);
    }
    let path = cli
        .profile
        .ok_or_else(|| anyhow::anyhow!("--profile FILE is required"))?;
    let profile = Profile::load(&path)?;
    if let Command::KnownHosts { alias } = &cli.command {
        cpam_core::outln!("{alias} {}", profile.server_key);
        return Ok(0);
    }
    let client = ConnectClient::new(profile)?;
    match cli.command {
        Command::KnownHosts { .. } | Command::Ipconnect(_) => {}
        Command::Desktop(args) => return desktop::run(client, args).await,
        Command::Put(args) => return transfer::put(client, args).await,
        Command::Get(args) => return transfer::get(client, args).await,
        Command::Pipe { service } => {
            let stop = CancellationToken::new();
            client.connect_with_retry(&stop).await?;
            let local = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
            let mut stream = client.open_stream(&service, local).await?;
            let mut stdio = tokio::io::join(tokio::io::stdin(), tokio::io::stdout());
            tokio::io::copy_bidirectional(&mut stdio, &mut stream).await?;
        }
        Command::Services { json } => {
            let s = client.services().await?;
            if json {
                cpam_core::outln!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::to_value(&s)?)?
                );
            } else {
                cpam_core::outln!(
                    "gatekeeper {} ({})",
                    s.gatekeeper,
                    if s.online { "online" } else { "offline" }
                );
                if s.services.is_empty() {
                    cpam_core::outln!("no services are granted to you right now");
                }
                for x in &s.services {
                    let until = x
                        .until
                        .as_deref()
                        .map(|u| format!(" until {u}"))
                        .unwrap_or_default();
                    cpam_core::outln!("  {:<24} {:<16} {}{until}", x.name, x.kind, x.target);
                }
            }
        }
        Command::Checkout {
            service,
            for_,
            json,
        } => {
            let duration = for_
                .as_deref()
                .map(cpam_core::policy::parse_duration)
                .transpose()?;
            let v = client.checkout(&service, duration).await?;
            show(json, &v, || {
                format!(
                    "checked out {service} until {} ({})",
                    time(&v["expires_at"]),
                    v["id"].as_str().unwrap_or("")
                )
            })?;
        }
        Command::Checkin { service, json } => {
            let v = client.checkin(&service).await?;
            show(json, &v, || format!("checked in {service}"))?;
        }
        Command::Checkouts { json } => {
            let v = client.checkouts().await?;
            show(json, &v, || {
                let list = v["checkouts"].as_array().cloned().unwrap_or_default();
                if list.is_empty() {
                    return "you have no checkouts".to_string();
                }
                list.iter()
                    .map(|c| {
                        format!(
                            "  {:<24} {:<10} until {}  {}",
                            c["service_name"].as_str().unwrap_or(""),
                            c["status"].as_str().unwrap_or(""),
                            time(&c["expires_at"]),
                            c["id"].as_str().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })?;
        }
        Command::RdpCredential { service, json } => {
            let master = read_master_password()?;
            let v = client.rdp_credential(&service, &master).await?;
            show(json, &v, || {
                format!(
                    "username: {}\npassword: {}\nvalid for {} s, for one session",
                    v["username"].as_str().unwrap_or(""),
                    v["password"].as_str().unwrap_or(""),
                    v["valid_secs"]
                )
            })?;
        }
        Command::MasterPassword(MasterPasswordCmd::Set) => {
            let (current, new) = read_master_passwords()?;
            client.set_master_password(&current, &new).await?;
            cpam_core::outln!("master password set");
        }
        Command::Forward { service, listen } => {
            let addr: std::net::SocketAddr = listen
                .parse()
                .map_err(|_| anyhow::anyhow!("--listen `{listen}` must be ADDR:PORT"))?;
            let listener = cpam_core::tunnel::bind_listener(addr)?;
            let stop = CancellationToken::new();
            {
                let stop = stop.clone();
                tokio::spawn(async move {
                    cpam_core::signal::shutdown().await;
                    stop.cancel();
                });
            }
            client.connect_with_retry(&stop).await?;
            cpam_core::outln!(
                "cpam-connect forwarding {service} on {}",
                listener.local_addr()?
            );
            client.forward(service, listener, stop).await?;
        }
    }
    Ok(0)
}

/// Prints `v` as JSON, or `human` text.
fn show(json: bool, v: &serde_json::Value, human: impl FnOnce() -> String) -> anyhow::Result<()> {
    if json {
        cpam_core::outln!("{}", serde_json::to_string_pretty(v)?);
    } else {
        cpam_core::outln!("{}", human());
    }
    Ok(())
}

/// A stored time (milliseconds) as RFC 3339.
fn time(v: &serde_json::Value) -> String {
    v.as_i64()
        .map(|ms| cpam_core::model::Timestamp(ms).to_rfc3339())
        .unwrap_or_default()
}

/// The master password: asked on the terminal, or one line of stdin.
fn read_master_password() -> anyhow::Result<Secret<String>> {
    use std::io::{BufRead as _, IsTerminal as _};
    if std::io::stdin().is_terminal() {
        return Ok(Secret::new(rpassword::prompt_password(
            "master password: ",
        )?));
    }
    match std::io::stdin().lock().lines().next() {
        Some(line) => Ok(Secret::new(line?)),
        None => anyhow::bail!("standard input ended before the master password"),
    }
}

/// The current and the new master password: asked on the terminal (the new
/// one twice), or two lines of stdin.
fn read_master_passwords() -> anyhow::Result<(Secret<String>, Secret<String>)> {
    use std::io::{BufRead as _, IsTerminal as _};
    if std::io::stdin().is_terminal() {
        let current = Secret::new(rpassword::prompt_password(
            "login password (or current master password): ",
        )?);
        let new = Secret::new(rpassword::prompt_password("new master password: ")?);
        let again = Secret::new(rpassword::prompt_password("new master password again: ")?);
        if new.expose() != again.expose() {
            anyhow::bail!("the two new master passwords differ");
        }
        return Ok((current, new));
    }
    let mut lines = std::io::stdin().lock().lines();
    let mut next = |what: &str| -> anyhow::Result<Secret<String>> {
        match lines.next() {
            Some(line) => Ok(Secret::new(line?)),
            None => anyhow::bail!("standard input ended before the {what}"),
        }
    };
    let current = next("current password")?;
    let new = next("new master password")?;
    Ok((current, new))
}
