//! `cpam-gatekeeper`: the customer-side agent. Thin: clap, wiring, run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cpam_core::model::Timestamp;
use cpam_core::tunnel::allow::AllowList;
use cpam_core::tunnel::gatekeeper::{self, Agent, GatekeeperState};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(
    name = "cpam-gatekeeper",
    version,
    about = "cpam gatekeeper: dials out to the server and opens only what the customer allows"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Enroll this gatekeeper with a one-time registration code.
    Register {
        /// HOST:PORT of the cpam server.
        #[arg(long)]
        server: String,
        #[arg(long)]
        code: String,
        #[arg(long)]
        state_dir: PathBuf,
        /// Expected server key fingerprint (`SHA256:...`), as the admin printed it.
        #[arg(long)]
        server_fingerprint: Option<String>,
    },
    /// Hold the tunnel to the server.
    Run {
        #[arg(long)]
        state_dir: PathBuf,
        /// Targets the server may ask for: CIDR:PORTS, e.g. 127.0.0.0/8:22,2222 (repeatable).
        #[arg(long)]
        allow: Vec<String>,
    },
    /// Refuse new sessions and close live ones.
    Disable {
        #[arg(long)]
        state_dir: PathBuf,
    },
    /// Allow sessions again.
    Enable {
        #[arg(long)]
        state_dir: PathBuf,
    },
    /// Open only during these hours (UTC), or always with --always.
    Schedule {
        #[arg(long)]
        state_dir: PathBuf,
        /// Days the gatekeeper is open: `mon-fri`, `sat,sun`, `all`.
        #[arg(long, requires = "hours", conflicts_with = "always")]
        days: Option<String>,
        /// Hours it is open on those days, UTC: `08:00-18:00` (overnight: `22:00-06:00`).
        #[arg(long, requires = "days", conflicts_with = "always")]
        hours: Option<String>,
        /// Remove the opening hours: open whenever enabled.
        #[arg(long)]
        always: bool,
    },
    /// Show registration and the customer switch.
    Status {
        #[arg(long)]
        state_dir: PathBuf,
        #[arg(long)]
        json: bool,
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
        Ok(rt) => rt.block_on(run(cli.command)),
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

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Register {
            server,
            code,
            state_dir,
            server_fingerprint,
        } => {
            let state =
                gatekeeper::register(&server, &code, &state_dir, server_fingerprint.as_deref())
                    .await?;
            println!(
                "registered as gatekeeper {} ({})",
                state.name, state.gatekeeper_id
            );
            println!("server key pinned: {}", state.server_key);
        }
        Command::Run { state_dir, allow } => {
            let allow = AllowList::parse(&allow)?;
            let agent = Agent::open(&state_dir, allow)?;
            let stop = CancellationToken::new();
            let task = tokio::spawn(agent.run(stop.clone()));
            cpam_core::signal::shutdown().await;
            stop.cancel();
            task.await??;
        }
        Command::Disable { state_dir } => {
            GatekeeperState::load(&state_dir)?;
            gatekeeper::set_disabled(&state_dir, true)?;
            println!("gatekeeper disabled: new sessions are refused and live ones closed");
        }
        Command::Enable { state_dir } => {
            GatekeeperState::load(&state_dir)?;
            gatekeeper::set_disabled(&state_dir, false)?;
            println!("gatekeeper enabled");
        }
        Command::Schedule {
            state_dir,
            days,
            hours,
            always,
        } => {
            GatekeeperState::load(&state_dir)?;
            match (days, hours) {
                (Some(days), Some(hours)) => {
                    let text = format!("{} {}", days.trim(), hours.trim());
                    gatekeeper::set_schedule(&state_dir, Some(&text))?;
                    println!("gatekeeper open {text} (UTC); closed outside these hours");
                }
                _ if always => {
                    gatekeeper::set_schedule(&state_dir, None)?;
                    println!("gatekeeper open at all hours while enabled");
                }
                _ => anyhow::bail!("give --days and --hours, or --always"),
            }
        }
        Command::Status { state_dir, json } => {
            let state = GatekeeperState::load(&state_dir)?;
            let switch = gatekeeper::Switch::read(&state_dir, Timestamp::now());
            if json {
                let mut v = serde_json::to_value(&state)?;
                v["disabled"] = serde_json::json!(switch.switched_off);
                v["schedule"] = serde_json::json!(switch.schedule);
                v["closed"] = serde_json::json!(switch.closed);
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("gatekeeper {} ({})", state.name, state.gatekeeper_id);
                println!("server {}", state.server);
                println!(
                    "customer switch: {}",
                    if switch.switched_off {
                        "disabled"
                    } else {
                        "enabled"
                    }
                );
                println!(
                    "opening hours: {}",
                    switch.schedule.as_deref().unwrap_or("always")
                );
                println!("now: {}", if switch.closed { "closed" } else { "open" });
            }
        }
    }
    Ok(())
}
