//! `cpam-connect ipconnect`: the IP Connect background service and its status.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Subcommand;
use cpam_core::ipmap::service::{STATUS_FILE, load_or_create_key, read_status};
use cpam_core::ipmap::{HostsFile, IpConnect, IpConnectConfig, NoNames, Resolver};
use cpam_core::tunnel::connect::ConnectClient;
use cpam_core::tunnel::profile::Profile;
use tokio_util::sync::CancellationToken;

/// The state directory when none is given.
const DEFAULT_STATE_DIR: &str = "/var/lib/cpam-ipconnect";

#[derive(Subcommand, Debug)]
pub enum IpconnectCmd {
    /// Map every service of every profile to a local address and name, in
    /// the mode the server sets for you; runs until stopped.
    Run {
        /// More profiles (other customers or gatekeepers), beside --profile.
        profiles: Vec<PathBuf>,
        /// Keeps the address key (stable addresses) and the status.
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// The hosts file whose `# BEGIN cpam` block names the mappings.
        #[arg(long, default_value = "/etc/hosts")]
        hosts_file: PathBuf,
        /// Publish no names (reach mappings by address).
        #[arg(long, conflicts_with = "hosts_file")]
        no_hosts: bool,
        /// The local address range of the legacy mode (a 127/8 sub-range).
        #[arg(long, default_value = cpam_core::ipmap::alloc::LEGACY_RANGE)]
        range: String,
        /// The address range the driver mode routes to its TUN device.
        #[arg(long, default_value = cpam_core::ipmap::alloc::DRIVER_RANGE)]
        driver_range: String,
        /// The driver's TUN device name.
        #[arg(long, default_value = "cpam0")]
        device: String,
        /// How often the mode and the services are read again (e.g. 5s, 1m).
        #[arg(long, default_value = "5s")]
        poll: String,
    },
    /// Print the running service's mappings.
    Status {
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(profile: Option<PathBuf>, cmd: IpconnectCmd) -> anyhow::Result<()> {
    match cmd {
        IpconnectCmd::Status { state_dir, json } => status(&state_dir, json),
        IpconnectCmd::Run {
            profiles,
            state_dir,
            hosts_file,
            no_hosts,
            range,
            driver_range,
            device,
            poll,
        } => {
            let paths: Vec<PathBuf> = profile.into_iter().chain(profiles).collect();
            if paths.is_empty() {
                anyhow::bail!("give at least one profile (--profile FILE, or FILE arguments)");
            }
            let mut clients = Vec::new();
            for p in &paths {
                clients.push(ConnectClient::new(Profile::load(p)?)?);
            }
            let resolver: Arc<dyn Resolver> = if no_hosts {
                Arc::new(NoNames)
            } else {
                Arc::new(HostsFile::new(hosts_file))
            };
            let config = IpConnectConfig {
                range: range.parse()?,
                driver_range: driver_range.parse()?,
                device,
                key: load_or_create_key(&state_dir)?,
                poll: cpam_core::policy::parse_duration(&poll)?,
                resolver,
                status_file: Some(state_dir.join(STATUS_FILE)),
            };
            let stop = CancellationToken::new();
            {
                let stop = stop.clone();
                tokio::spawn(async move {
                    cpam_core::signal::shutdown().await;
                    stop.cancel();
                });
            }
            let service = IpConnect::new(clients, config);
            cpam_core::outln!(
                "cpam-connect ipconnect running for {} profile(s)",
                paths.len()
            );
            service.run(stop).await?;
            Ok(())
        }
    }
}

fn status(state_dir: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let Some(s) = read_status(&state_dir.join(STATUS_FILE))? else {
        anyhow::bail!(
            "no IP Connect service is running with state directory {}",
            state_dir.display()
        );
    };
    if json {
        cpam_core::outln!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    cpam_core::outln!(
        "ip connect (pid {}), range {}, names: {}",
        s.pid,
        s.range,
        s.names
    );
    if let Some(d) = &s.driver {
        cpam_core::outln!("  driver running: {d}");
    }
    if let Some(e) = &s.driver_error {
        cpam_core::outln!("  driver not running: {e}");
    }
    if let Some(e) = &s.names_error {
        cpam_core::outln!("  names not published: {e}");
    }
    for p in &s.profiles {
        let requested = p.requested.as_deref().unwrap_or("unknown");
        cpam_core::outln!(
            "profile {} / {} on {}: mode {} (requested {requested})",
            p.customer,
            p.gatekeeper,
            p.server,
            p.mode
        );
        for line in [&p.note, &p.error].into_iter().flatten() {
            cpam_core::outln!("  {line}");
        }
    }
    if s.mappings.is_empty() {
        cpam_core::outln!("no mappings");
    }
    for m in &s.mappings {
        let state = m
            .error
            .as_deref()
            .map(|e| format!("  NOT LISTENING: {e}"))
            .unwrap_or_default();
        cpam_core::outln!(
            "  {:<21} {:<40} {:<7} -> {}/{} {}{state}",
            m.local.to_string(),
            m.hostnames.join(" "),
            m.mode,
            m.customer,
            m.service,
            m.target
        );
    }
    for k in &s.skipped {
        cpam_core::outln!("  skipped {}/{}: {}", k.customer, k.service, k.reason);
    }
    Ok(())
}
