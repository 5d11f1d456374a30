//! A gatekeeper embedded in an appliance: the firmware registers it once
//! with the code the vendor's operator issued, keeps it running, shows its
//! state on the appliance's display, and gives the customer a switch that
//! refuses and closes remote sessions at once.
//!
//! The appliance part is `Appliance` below and uses only
//! `cpam_core::tunnel::gatekeeper`. So that the tutorial runs on its own,
//! `main` first starts a stand-in for the vendor's cpam server (a hub on
//! loopback) and a TCP echo server as the appliance's local service.
//!
//! Run it with `cargo run -p cpam-examples --example gatekeeper_appliance`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cpam_core::admin::Admin;
use cpam_core::audit::StoreAuditSink;
use cpam_core::model::{ServiceKind, Timestamp};
use cpam_core::session::SessionEngine;
use cpam_core::store::{SqlStore, Store};
use cpam_core::tunnel::allow::AllowList;
use cpam_core::tunnel::connect::ConnectClient;
use cpam_core::tunnel::gatekeeper::{self, Agent, GatekeeperState};
use cpam_core::tunnel::{self, hub::Hub, keys};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What the appliance's firmware keeps of its gatekeeper.
struct Appliance {
    state_dir: PathBuf,
    stop: CancellationToken,
    online: watch::Receiver<bool>,
    task: JoinHandle<cpam_core::Result<()>>,
}

impl Appliance {
    /// Registers on first boot (the state dir keeps the key and the pinned
    /// server key), then starts the tunnel in the background.
    async fn boot(
        state_dir: &Path,
        server: &str,
        code: &str,
        fingerprint: &str,
        allow: AllowList,
    ) -> cpam_core::Result<Appliance> {
        if GatekeeperState::load(state_dir).is_err() {
            // Pinning the fingerprint the operator read out guards the very
            // first connection; later ones use the pinned key.
            let state = gatekeeper::register(server, code, state_dir, Some(fingerprint)).await?;
            println!("registered as {} ({})", state.name, state.gatekeeper_id);
        }
        let agent = Agent::open(state_dir, allow)?;
        // The online flag is a watch channel: the display task can await
        // changes instead of polling.
        let online = agent.online();
        let stop = CancellationToken::new();
        let task = tokio::spawn(agent.run(stop.clone()));
        Ok(Appliance {
            state_dir: state_dir.to_path_buf(),
            stop,
            online,
            task,
        })
    }

    /// What the display shows.
    fn status(&self) -> String {
        format!(
            "registered={} online={} disabled={}",
            GatekeeperState::load(&self.state_dir).is_ok(),
            *self.online.borrow(),
            gatekeeper::is_disabled(&self.state_dir)
        )
    }

    /// Waits until the tunnel is up (or down).
    async fn wait_online(&mut self, want: bool) -> anyhow::Result<()> {
        tokio::time::timeout(
            Duration::from_secs(20),
            self.online.wait_for(|now| *now == want),
        )
        .await??;
        Ok(())
    }

    /// The customer's front-panel switch. Off refuses new sessions and
    /// closes live ones; the server hears of it at once.
    fn set_remote_access(&self, allowed: bool) -> cpam_core::Result<()> {
        gatekeeper::set_disabled(&self.state_dir, !allowed)
    }

    /// Shutdown: close the tunnel and wait for it.
    async fn shutdown(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.task.await??;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The appliance's local service: a TCP echo server.
    let service = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let service_addr = service.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = service.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });

    // Stand-in for the vendor's cpam server, with one operator's setup:
    // customer, gatekeeper code, vendor user, service, grant and profile.
    let store: Arc<dyn Store> = Arc::new(SqlStore::connect("sqlite::memory:").await?);
    let sink = Arc::new(StoreAuditSink::new(store.clone()));
    let host_key = keys::generate()?;
    let fingerprint = keys::fingerprint(host_key.public_key());
    let server_key = keys::public_openssh(host_key.public_key());
    let hub = Hub::new(SessionEngine::new(store.clone(), sink.clone()), host_key);
    let listener = tunnel::bind_listener("127.0.0.1:0".parse()?)?;
    let server = listener.local_addr()?.to_string();
    tokio::spawn({
        let hub = hub.clone();
        async move { hub.serve(listener).await }
    });
    let admin = Admin::new(store.clone(), sink, "operator");
    admin.ensure_builtin_roles().await?;
    admin.add_customer("acme").await?;
    let code = admin
        .add_gatekeeper("acme", "appliance-7", Duration::from_secs(600))
        .await?;

    // The appliance boots: this is all the firmware does.
    let state_dir = std::env::temp_dir().join(format!("cpam-appliance-{}", std::process::id()));
    let allow = AllowList::parse(&[format!("127.0.0.1/32:{}", service_addr.port())])?;
    let mut appliance =
        Appliance::boot(&state_dir, &server, &code.code, &fingerprint, allow).await?;
    appliance.wait_online(true).await?;
    println!("display: {}", appliance.status());

    // The vendor gets a grant and reaches the appliance's service.
    admin
        .add_user("vendor", None, &[], &["Vendor".into()])
        .await?;
    admin
        .add_service(
            "acme",
            "console",
            &service_addr.to_string(),
            ServiceKind::Custom,
        )
        .await?;
    admin
        .add_grant("vendor", "acme", "console", Timestamp::now(), None, None)
        .await?;
    let profile = admin
        .export_profile("vendor", "appliance-7", &server, &server_key)
        .await?;
    let vendor = ConnectClient::new(profile)?;
    let originator = "127.0.0.1:1".parse()?;
    let mut stream = vendor.open_stream("console", originator).await?;
    stream.write_all(b"status?").await?;
    let mut buf = [0u8; 7];
    stream.read_exact(&mut buf).await?;
    println!("vendor session echoed: {}", String::from_utf8_lossy(&buf));

    // The customer flips the switch off: the live session is closed and a
    // new one is refused.
    appliance.set_remote_access(false)?;
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
    println!("live session closed by the switch: {}", closed.is_ok());
    let gk = admin.gatekeeper("appliance-7").await?;
    while !store
        .gatekeeper(&gk.id)
        .await?
        .is_some_and(|g| g.customer_disabled)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("display: {}", appliance.status());
    match vendor.open_stream("console", originator).await {
        Ok(_) => anyhow::bail!("a session got through a disabled gatekeeper"),
        Err(e) => println!("while disabled: refused ({}): {e}", e.kind()),
    }

    // Back on: sessions work again.
    appliance.set_remote_access(true)?;
    while store
        .gatekeeper(&gk.id)
        .await?
        .is_some_and(|g| g.customer_disabled)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut stream = vendor.open_stream("console", originator).await?;
    stream.write_all(b"again!!").await?;
    stream.read_exact(&mut buf).await?;
    println!("enabled again, echoed: {}", String::from_utf8_lossy(&buf));
    drop(stream);

    let mut watcher = appliance.online.clone();
    appliance.shutdown().await?;
    println!("after shutdown, online={}", *watcher.borrow_and_update());
    let _ = std::fs::remove_dir_all(&state_dir);
    Ok(())
}
