//! `cpam-gatekeeper`: the customer-side agent. Thin: clap, wiring, run.
// Output goes through `cpam_core::outln!`: a closed pipe ends the program
// quietly instead of a `println!` panic.
#![deny(clippy::print_stdout)]

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cpam_core::Secret;
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
        /// Read the one-time registration code from this file (`-`: the
        /// first line of standard input), so it shows in no process list.
        #[arg(long, required_unless_present = "code", conflicts_with = "code")]
        code_file: Option<PathBuf>,
        /// The code on the command line. Unsafe: any local user sees process
        /// arguments, and shells keep them in history; use --code-file.
        #[arg(long)]
        code: Option<String>,
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
        /// HOST:PORT of a cpam server node (repeatable): the nodes of one
        /// cluster, tried in turn when a link fails or closes. They must
        /// present the host key pinned at registration. Default: the
        /// address registered with.
        #[arg(long = "server")]
        servers: Vec<String>,
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
            tracing_subscriber::EnvFilter::try_from_env("CPAM_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(cpam_core::tunnel::LOG_FILTER)
            }),
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
            code_file,
            code,
            state_dir,
            server_fingerprint,
        } => {
            let code = match (code_file, code) {
                (Some(file), _) => read_code(&file)?,
                (None, Some(code)) => Secret::new(code),
                (None, None) => anyhow::bail!("--code-file is required"),
            };
            let state = gatekeeper::register(
                &server,
                code.expose(),
                &state_dir,
                server_fingerprint.as_deref(),
            )
            .await?;
            cpam_core::outln!(
                "registered as gatekeeper {} ({})",
                state.name,
                state.gatekeeper_id
            );
            cpam_core::outln!("server key pinned: {}", state.server_key);
        }
        Command::Run {
            state_dir,
            allow,
            servers,
        } => {
            let allow = AllowList::parse(&allow)?;
            let agent = Agent::open(&state_dir, allow)?.with_servers(servers);
            let stop = CancellationToken::new();
            let task = tokio::spawn(agent.run(stop.clone()));
            cpam_core::signal::shutdown().await;
            stop.cancel();
            task.await??;
        }
        Command::Disable { state_dir } => {
            GatekeeperState::load(&state_dir)?;
            gatekeeper::set_disabled(&state_dir, true)?;
            cpam_core::outln!("gatekeeper disabled: new sessions are refused and live ones closed");
        }
        Command::Enable { state_dir } => {
            GatekeeperState::load(&state_dir)?;
            gatekeeper::set_disabled(&state_dir, false)?;
            cpam_core::outln!("gatekeeper enabled");
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
                    cpam_core::outln!("gatekeeper open {text} (UTC); closed outside these hours");
                }
                _ if always => {
                    gatekeeper::set_schedule(&state_dir, None)?;
                    cpam_core::outln!("gatekeeper open at all hours while enabled");
                }
                _ => anyhow::bail!("give --days and --hours, or --always"),
            }
        }
        Command::Status { state_dir, json } => {
            let state = GatekeeperState::load(&state_dir)?;
            let switch = gatekeeper::Switch::read(&state_dir, Timestamp::now());
            let status = Status {
                state: &state,
                disabled: switch.switched_off,
                schedule: switch.schedule.as_deref(),
                closed: switch.closed,
            };
            if json {
                cpam_core::outln!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                cpam_core::out!("{status}");
            }
        }
    }
    Ok(())
}

/// What `cpam-gatekeeper status` reports: the registration, the customer's
/// switch and opening hours, and whether sessions are refused now. `--json`
/// prints it as one object (the state file's fields, then these).
#[derive(Debug, serde::Serialize)]
struct Status<'a> {
    #[serde(flatten)]
    state: &'a GatekeeperState,
    /// The customer switched the gatekeeper off.
    disabled: bool,
    /// The opening hours as written (UTC), `None` for always.
    schedule: Option<&'a str>,
    /// Sessions are refused now (switched off or outside the hours).
    closed: bool,
}

impl std::fmt::Display for Status<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let on_off = |b: bool, yes: &'static str, no: &'static str| if b { yes } else { no };
        writeln!(
            f,
            "gatekeeper {} ({})",
            self.state.name, self.state.gatekeeper_id
        )?;
        writeln!(f, "server {}", self.state.server)?;
        writeln!(
            f,
            "customer switch: {}",
            on_off(self.disabled, "disabled", "enabled")
        )?;
        writeln!(f, "opening hours: {}", self.schedule.unwrap_or("always"))?;
        writeln!(f, "now: {}", on_off(self.closed, "closed", "open"))
    }
}

/// The registration code from `file` (`-`: standard input): its first
/// line, trimmed.
fn read_code(file: &std::path::Path) -> anyhow::Result<Secret<String>> {
    use anyhow::Context as _;
    let text = if file.as_os_str() == "-" {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("cannot read the registration code from standard input")?;
        line
    } else {
        std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the registration code from {}", file.display()))?
    };
    let code = text.lines().next().unwrap_or_default().trim().to_string();
    if code.is_empty() {
        anyhow::bail!("no registration code in {}", file.display());
    }
    Ok(Secret::new(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> GatekeeperState {
        GatekeeperState {
            server: "cpam.example.com:2222".into(),
            server_key: "ssh-ed25519 AAAA".into(),
            gatekeeper_id: cpam_core::model::GatekeeperId("gk_1".into()),
            name: "plant-a".into(),
            registered_at: Timestamp(1_700_000_000),
        }
    }

    #[test]
    fn status_json_is_the_state_and_the_switch() {
        let state = state();
        let status = Status {
            state: &state,
            disabled: true,
            schedule: Some("mon-fri 08:00-18:00"),
            closed: true,
        };
        let v = serde_json::to_value(&status).expect("status serializes");
        let mut expect = serde_json::to_value(&state).expect("state serializes");
        expect["disabled"] = true.into();
        expect["schedule"] = "mon-fri 08:00-18:00".into();
        expect["closed"] = true.into();
        assert_eq!(v, expect);
    }

    #[test]
    fn status_text_says_what_is_open() {
        let state = state();
        let status = Status {
            state: &state,
            disabled: false,
            schedule: None,
            closed: false,
        };
        assert_eq!(
            status.to_string(),
            "gatekeeper plant-a (gk_1)\nserver cpam.example.com:2222\n\
             customer switch: enabled\nopening hours: always\nnow: open\n"
        );
    }
}
