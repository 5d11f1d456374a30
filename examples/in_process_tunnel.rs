//! The whole cpam path inside one program, built from `cpam-core` parts:
//! a hub (the server side), a gatekeeper that dials out to it, and a
//! Connection Manager that opens one audited session to a service.
//!
//! Run it with `cargo run -p cpam-examples --example in_process_tunnel`.

use std::sync::Arc;
use std::time::Duration;

use cpam_core::admin::Admin;
use cpam_core::audit::{self, StoreAuditSink};
use cpam_core::model::{ServiceKind, Timestamp};
use cpam_core::session::SessionEngine;
use cpam_core::store::{SessionFilter, SqlStore, Store};
use cpam_core::tunnel::allow::AllowList;
use cpam_core::tunnel::connect::ConnectClient;
use cpam_core::tunnel::gatekeeper::{self, Agent};
use cpam_core::tunnel::{self, hub::Hub, keys};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // 1. A target inside the "customer network": a TCP echo server.
    let target = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let target_addr = target.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = target.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });

    // 2. The server side: a store, the session engine and the SSH hub.
    let store: Arc<dyn Store> = Arc::new(SqlStore::connect("sqlite::memory:").await?);
    let sink = Arc::new(StoreAuditSink::new(store.clone()));
    let engine = SessionEngine::new(store.clone(), sink.clone());
    let host_key = keys::generate()?;
    let server_key = keys::public_openssh(host_key.public_key());
    let hub = Hub::new(engine, host_key);
    let listener = tunnel::bind_listener("127.0.0.1:0".parse()?)?;
    let server = listener.local_addr()?.to_string();
    tokio::spawn({
        let hub = hub.clone();
        async move { hub.serve(listener).await }
    });
    println!("hub listening on {server}");

    // 3. An operator sets up a customer and its gatekeeper.
    let admin = Admin::new(store.clone(), sink, "example");
    admin.ensure_builtin_roles().await?;
    admin.add_customer("acme").await?;
    let code = admin
        .add_gatekeeper("acme", "gk1", Duration::from_secs(600))
        .await?;

    // 4. The customer registers the gatekeeper and runs it with an allow-list.
    let state_dir = std::env::temp_dir().join(format!("cpam-example-{}", std::process::id()));
    gatekeeper::register(&server, &code.code, &state_dir, None).await?;
    let allow = AllowList::parse(&[format!("127.0.0.1:{}", target_addr.port())])?;
    let stop = CancellationToken::new();
    tokio::spawn(Agent::open(&state_dir, allow)?.run(stop.clone()));
    while !hub
        .gatekeepers()
        .is_online(&admin.gatekeeper("gk1").await?.id)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("gatekeeper gk1 is online");

    // 5. A vendor, a service, a one-hour grant and the vendor's profile.
    admin
        .add_user("vendor", None, &[], &["Vendor".into()])
        .await?;
    admin
        .add_service(
            "acme",
            "echo",
            &target_addr.to_string(),
            ServiceKind::Custom,
        )
        .await?;
    let now = Timestamp::now();
    admin
        .add_grant(
            "vendor",
            "acme",
            "echo",
            now,
            Some(now.add(Duration::from_secs(3600))),
            None,
        )
        .await?;
    let profile = admin
        .export_profile("vendor", "gk1", &server, &server_key)
        .await?;

    // 6. The Connection Manager opens one session and uses it as a byte stream.
    let client = ConnectClient::new(profile)?;
    println!(
        "services: {:?}",
        client
            .services()
            .await?
            .services
            .iter()
            .map(|s| &s.name)
            .collect::<Vec<_>>()
    );
    let channel = client.open("echo", "127.0.0.1:1".parse()?).await?;
    let mut stream = channel.into_stream();
    stream.write_all(b"hello through the tunnel").await?;
    let mut buf = [0u8; 24];
    stream.read_exact(&mut buf).await?;
    println!("echoed: {}", String::from_utf8_lossy(&buf));
    drop(stream);

    // 7. The session was recorded; the audit chain verifies.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for s in store.list_sessions(&SessionFilter::default()).await? {
        println!(
            "session {} {} -> {}: {} bytes up, {} down, {:?}",
            s.id, s.user_name, s.target, s.bytes_up, s.bytes_down, s.end_reason
        );
    }
    let verification = audit::verify_store(store.as_ref()).await?;
    println!(
        "audit chain intact: {} ({} records)",
        verification.is_intact(),
        verification.checked
    );

    stop.cancel();
    let _ = std::fs::remove_dir_all(&state_dir);
    Ok(())
}
