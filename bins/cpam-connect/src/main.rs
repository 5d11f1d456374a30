//! `cpam-connect`: the vendor's Connection Manager. Thin: clap, wiring, run.
// Output goes through `cpam_core::outln!`: a closed pipe ends the program
// quietly instead of a `println!` panic.
#![deny(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
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
    /// Listen locally; every connection is one audited session to SERVICE.
    Forward {
        service: String,
        /// Local ADDR:PORT (port 0 picks a free one).
        #[arg(long)]
        listen: String,
    },
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
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let path = cli
        .profile
        .ok_or_else(|| anyhow::anyhow!("--profile FILE is required"))?;
    let profile = Profile::load(&path)?;
    let client = ConnectClient::new(profile)?;
    match cli.command {
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
    Ok(())
}
