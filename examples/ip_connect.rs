//! IP Connect embedded in your own program: every service a vendor may use
//! gets a local address and a name, the mode follows the server, and the
//! program watches the mappings change.
//!
//! `IpConnect` (from `cpam_core::ipmap`) is the whole service; the program
//! only builds its configuration, runs it and reads its status. So that
//! the tutorial runs on its own, `main` first starts a stand-in for the
//! vendor's cpam server (a hub on loopback), a gatekeeper and a TCP echo
//! server as the customer's service. It uses the legacy mode (loopback
//! listeners: no privilege needed); with `driver` or
//! `driver-with-legacy-fallback` and `CAP_NET_ADMIN` the same program gets
//! a TUN device instead (see docs/ipconnect.md).
//!
//! Run it with `cargo run -p cpam-examples --example ip_connect`.

use std::sync::Arc;
use std::time::Duration;

use cpam_core::admin::Admin;
use cpam_core::audit::StoreAuditSink;
use cpam_core::ipmap::service::Status;
use cpam_core::ipmap::{IpConnect, IpConnectConfig, NoNames};
use cpam_core::model::{ServiceKind, Timestamp};
use cpam_core::session::SessionEngine;
use cpam_core::store::{SqlStore, Store};
use cpam_core::tunnel::allow::AllowList;
use cpam_core::tunnel::connect::ConnectClient;
use cpam_core::tunnel::gatekeeper::{self, Agent};
use cpam_core::tunnel::{self, hub::Hub, keys};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Waits until the status satisfies `want`, printing every change on the way.
async fn wait_status(
    status: &mut watch::Receiver<Status>,
    seen: &mut Status,
    want: impl Fn(&Status) -> bool,
) -> anyhow::Result<Status> {
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let now = status.borrow_and_update().clone();
            for event in now.events_since(seen) {
                println!("event: {}", serde_json::to_string(&event)?);
            }
            *seen = now.clone();
            if want(&now) {
                return anyhow::Ok(now);
            }
            status.changed().await?;
        }
    })
    .await??;
    Ok(found)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The customer's service: a TCP echo server.
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

    // Stand-in for the vendor's cpam server and the customer's gatekeeper.
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
        .add_gatekeeper("acme", "gk1", Duration::from_secs(600))
        .await?;
    let dir = std::env::temp_dir().join(format!("cpam-ip-connect-{}", std::process::id()));
    gatekeeper::register(&server, &code.code, &dir.join("gk"), Some(&fingerprint)).await?;
    let allow = AllowList::parse(&[format!("127.0.0.1/32:{}", service_addr.port())])?;
    let stop_gk = CancellationToken::new();
    tokio::spawn(Agent::open(&dir.join("gk"), allow)?.run(stop_gk.clone()));
    admin
        .add_user("vendor", None, &[], &["Vendor".into()])
        .await?;
    admin
        .add_service(
            "acme",
            "echo",
            &service_addr.to_string(),
            ServiceKind::Custom,
        )
        .await?;
    admin
        .add_grant("vendor", "acme", "echo", Timestamp::now(), None, None)
        .await?;
    admin.set_user_ip_connect_mode("vendor", "legacy").await?;
    let profile = admin
        .export_profile("vendor", "gk1", &server, &server_key)
        .await?;

    // The vendor's side: IP Connect over the profile. The key keeps the
    // addresses the same across restarts; names are left out here (a
    // `HostsFile` would write them into a hosts file's managed block).
    let key = cpam_core::ipmap::service::load_or_create_key(&dir)?;
    let mut config = IpConnectConfig::new(key, Arc::new(NoNames));
    config.range = "127.79.0.0/16".parse()?;
    config.poll = Duration::from_millis(200);
    let ipc = Arc::new(IpConnect::new(vec![ConnectClient::new(profile)?], config));
    let mut status = ipc.subscribe();
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let (ipc, stop) = (ipc.clone(), stop.clone());
        async move { ipc.run(stop).await }
    });
    let mut seen = Status::default();
    let now = wait_status(&mut status, &mut seen, |s| {
        s.mappings.first().is_some_and(|m| m.error.is_none())
    })
    .await?;
    let m = &now.mappings[0];
    println!(
        "mapped {}/{} at {} ({}), names {:?}",
        m.customer, m.service, m.local, m.mode, m.hostnames
    );

    // Any program now reaches the service at the mapped address.
    let mut tcp = tokio::net::TcpStream::connect(m.local).await?;
    tcp.write_all(b"hello").await?;
    let mut buf = [0u8; 5];
    tcp.read_exact(&mut buf).await?;
    println!(
        "echoed through {}: {}",
        m.local,
        String::from_utf8_lossy(&buf)
    );
    drop(tcp);

    // The operator turns IP Connect off for the vendor: the mapping goes.
    admin.set_user_ip_connect_mode("vendor", "off").await?;
    wait_status(&mut status, &mut seen, |s| s.mappings.is_empty()).await?;
    println!("after off: {} mappings", seen.mappings.len());

    stop.cancel();
    task.await??;
    stop_gk.cancel();
    println!("stopped");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
