//! `cpam-server`: the reference server. Thin: clap, configuration, wiring.
// Output goes through `cpam_core::outln!`: a closed pipe ends the program
// quietly instead of a `println!` panic.
#![deny(clippy::print_stdout)]

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod admin;
mod admin_args;
mod demo;
mod nodes;
mod recordings;
mod run;
mod vault;

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
        /// Where the web console listens (default 127.0.0.1:8443).
        #[arg(long)]
        web_listen: Option<String>,
        /// Another name or address for the console certificate (repeatable);
        /// localhost, 127.0.0.1 and ::1 are always in it.
        #[arg(long)]
        web_host: Vec<String>,
        /// Create this user as System Administrator; the password comes from
        /// CPAM_ADMIN_PASSWORD or --admin-password-stdin.
        #[arg(long)]
        admin_user: Option<String>,
        /// Read the administrator password from the first line of stdin.
        #[arg(long, requires = "admin_user")]
        admin_password_stdin: bool,
    },
    /// Serve gatekeepers, Connection Managers and the web console.
    Run {
        #[arg(long)]
        data_dir: PathBuf,
        /// Overrides the configured listen address.
        #[arg(long)]
        listen: Option<String>,
        /// Overrides the console address of config.json (`web_listen`).
        #[arg(long)]
        web_listen: Option<String>,
        /// Serve the console over plain HTTP (only on a loopback address).
        #[arg(long)]
        web_insecure_http: bool,
        /// Serve the console below this path (e.g. `/pam` behind a reverse
        /// proxy) instead of at `/`.
        #[arg(long)]
        web_base_path: Option<String>,
        #[command(flatten)]
        node: run::NodeArgs,
        #[command(flatten)]
        storage: recordings::StorageArgs,
    },
    /// Server, gatekeeper, web console and a demo SSH target in one process.
    Demo {
        /// Where the vendor-side forward listens.
        #[arg(long, default_value = "127.0.0.1:2200")]
        listen: String,
        /// Where the console listens (another free port if taken).
        #[arg(long, default_value = "127.0.0.1:8443")]
        web_listen: String,
    },
    #[command(flatten)]
    Admin(admin::AdminCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CPAM_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(cpam_core::tunnel::LOG_FILTER)
            }),
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
                web_listen,
                web_host,
                admin_user,
                admin_password_stdin,
            } => {
                let web = run::InitWeb {
                    web_listen,
                    web_hosts: web_host,
                    admin_user,
                    admin_password_stdin,
                };
                run::init(&data_dir, &listen, database.as_deref(), web).await
            }
            Command::Run {
                data_dir,
                listen,
                web_listen,
                web_insecure_http,
                web_base_path,
                node,
                storage,
            } => {
                let web = cpam_core::server::ConsoleOptions {
                    listen: web_listen,
                    insecure_http: web_insecure_http,
                    base_path: web_base_path,
                    downloads_dir: None,
                };
                let recordings = storage.storage()?;
                run::run(&data_dir, node, listen.as_deref(), web, recordings).await
            }
            Command::Demo { listen, web_listen } => demo::demo(&listen, &web_listen).await,
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
