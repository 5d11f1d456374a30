//! `cpam-server`: the reference server. Thin: clap, configuration, wiring.

mod admin;
mod admin_args;
mod demo;
mod run;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "cpam-server",
    version,
    about = "cpam reference server: gatekeeper hub, sessions, audit"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a data dir: config, host key, database, built-in roles.
    Init {
        #[arg(long)]
        data_dir: PathBuf,
        /// SSH address gatekeepers and Connection Managers connect to.
        #[arg(long, default_value = "0.0.0.0:2222")]
        listen: String,
        /// Database URL (`postgres://...`); default: SQLite in the data dir.
        #[arg(long, env = "CPAM_DATABASE_URL")]
        database: Option<String>,
    },
    /// Serve gatekeepers and Connection Managers.
    Run {
        #[arg(long)]
        data_dir: PathBuf,
        /// Overrides the configured listen address.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Server, gatekeeper and a demo SSH target in one process.
    Demo {
        /// Where the vendor-side forward listens.
        #[arg(long, default_value = "127.0.0.1:2200")]
        listen: String,
    },
    #[command(flatten)]
    Admin(admin::AdminCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CPAM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Init {
                data_dir,
                listen,
                database,
            } => run::init(&data_dir, &listen, database.as_deref()).await,
            Command::Run { data_dir, listen } => run::run(&data_dir, listen.as_deref()).await,
            Command::Demo { listen } => demo::demo(&listen).await,
            Command::Admin(cmd) => admin::dispatch(cmd).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
