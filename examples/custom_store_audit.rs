//! Plugging your own parts into the session engine:
//!
//! * an [`AuditSink`] that keeps cpam's hash-chained log in the store *and*
//!   forwards every sealed record to a syslog-style collector (your SIEM),
//! * an [`AccessHook`] with the last word on sessions the policy allowed
//!   (here: a change freeze on production services),
//! * a watcher of the engine's events (what a console's live page shows).
//!
//! The rest (hub, gatekeeper, vendor) is the in-process path of the
//! `in_process_tunnel` tutorial, so the example runs on its own.
//!
//! Run it with `cargo run -p cpam-examples --example custom_store_audit`.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cpam_core::admin::Admin;
use cpam_core::audit::{self, AuditSink};
use cpam_core::events::EngineEvent;
use cpam_core::hooks::{AccessCheck, AccessHook, HookDecision};
use cpam_core::model::{AuditEvent, ServiceKind, Timestamp};
use cpam_core::session::SessionEngine;
use cpam_core::store::{SqlStore, Store};
use cpam_core::tunnel::allow::AllowList;
use cpam_core::tunnel::connect::ConnectClient;
use cpam_core::tunnel::gatekeeper::{self, Agent};
use cpam_core::tunnel::{self, hub::Hub, keys};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// Seals each event into the store's chain, then writes it as an RFC 5424
/// line to `out` (a socket to your collector in production; stdout here).
#[derive(Debug)]
struct SyslogAuditSink<W: Write + Send + std::fmt::Debug> {
    store: Arc<dyn Store>,
    out: Mutex<W>,
}

#[async_trait]
impl<W: Write + Send + std::fmt::Debug> AuditSink for SyslogAuditSink<W> {
    async fn record(&self, event: AuditEvent) -> cpam_core::Result<()> {
        // The store assigns the sequence number and hash: the chain stays
        // verifiable whatever happens to the forwarded copy.
        let record = self.store.append_audit(&event).await?;
        // PRI 110 = facility 13 (log audit) * 8 + severity 6 (informational).
        let line = format!(
            "<110>1 {} cpam - {} - [cpam seq=\"{}\" actor=\"{}\" hash=\"{}\"] {}",
            record.event.at.to_rfc3339(),
            record.event.action,
            record.seq,
            record.event.actor,
            &record.hash[..16],
            record.event.detail
        );
        // Forwarding is best effort: the record is already durable.
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(out, "syslog: {line}");
        Ok(())
    }
}

/// Refuses sessions to frozen services, whatever the grants say.
#[derive(Debug)]
struct ChangeFreeze {
    frozen: Vec<String>,
}

#[async_trait]
impl AccessHook for ChangeFreeze {
    async fn check(&self, check: &AccessCheck) -> HookDecision {
        if self.frozen.contains(&check.service.name) {
            HookDecision::Deny {
                reason: format!(
                    "change freeze on {} until the release is out",
                    check.service.name
                ),
            }
        } else {
            HookDecision::Allow
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The customer's hosts: one TCP echo server stands in for both services.
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

    // 1. The engine with our sink and hook. Admin changes go through the
    //    same sink, so they reach the collector too.
    let store: Arc<dyn Store> = Arc::new(SqlStore::connect("sqlite::memory:").await?);
    let sink = Arc::new(SyslogAuditSink {
        store: store.clone(),
        out: Mutex::new(std::io::stdout()),
    });
    let engine = SessionEngine::new(store.clone(), sink.clone());
    engine.set_access_hook(Some(Arc::new(ChangeFreeze {
        frozen: vec!["prod-db".into()],
    })));

    // 2. A watcher of engine events.
    let mut events = engine.subscribe();
    tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            let line = match &event {
                EngineEvent::SessionStarted { session } => {
                    format!(
                        "session started: {} -> {}",
                        session.user_name, session.service_name
                    )
                }
                EngineEvent::SessionRefused {
                    service,
                    kind,
                    reason,
                    ..
                } => {
                    format!("session refused: {service} ({kind}): {reason}")
                }
                other => serde_json::to_string(other).unwrap_or_default(),
            };
            println!("event: {line}");
        }
    });

    // 3. Hub, gatekeeper, vendor: as in `in_process_tunnel`.
    let host_key = keys::generate()?;
    let server_key = keys::public_openssh(host_key.public_key());
    let hub = Hub::new(engine, host_key);
    let listener = tunnel::bind_listener("127.0.0.1:0".parse()?)?;
    let server = listener.local_addr()?.to_string();
    tokio::spawn({
        let hub = hub.clone();
        async move { hub.serve(listener).await }
    });
    let admin = Admin::new(store.clone(), sink, "example");
    admin.ensure_builtin_roles().await?;
    admin.add_customer("acme").await?;
    let code = admin
        .add_gatekeeper("acme", "gk1", Duration::from_secs(600))
        .await?;
    let state_dir = std::env::temp_dir().join(format!("cpam-audit-example-{}", std::process::id()));
    gatekeeper::register(&server, &code.code, &state_dir, None).await?;
    let allow = AllowList::parse(&[format!("127.0.0.1/32:{}", target_addr.port())])?;
    let stop = CancellationToken::new();
    let agent = Agent::open(&state_dir, allow)?;
    let mut online = agent.online();
    tokio::spawn(agent.run(stop.clone()));
    tokio::time::timeout(Duration::from_secs(20), online.wait_for(|up| *up)).await??;
    admin
        .add_user("vendor", None, &[], &["Vendor".into()])
        .await?;
    for service in ["staging-db", "prod-db"] {
        admin
            .add_service(
                "acme",
                service,
                &target_addr.to_string(),
                ServiceKind::Custom,
            )
            .await?;
        admin
            .add_grant("vendor", "acme", service, Timestamp::now(), None, None)
            .await?;
    }
    let profile = admin
        .export_profile("vendor", "gk1", &server, &server_key)
        .await?;
    let vendor = ConnectClient::new(profile)?;
    let originator = "127.0.0.1:1".parse()?;

    // 4. Staging is allowed; production is frozen by the hook even though
    //    the vendor holds a grant for it.
    let mut stream = vendor.open_stream("staging-db", originator).await?;
    stream.write_all(b"select 1").await?;
    let mut buf = [0u8; 8];
    stream.read_exact(&mut buf).await?;
    println!("staging-db echoed: {}", String::from_utf8_lossy(&buf));
    drop(stream);
    match vendor.open_stream("prod-db", originator).await {
        Ok(_) => anyhow::bail!("the change freeze let a session through"),
        Err(e) => println!("prod-db refused ({}): {e}", e.kind()),
    }

    // 5. The chain in the store verifies, forwarded copies or not.
    tokio::time::sleep(Duration::from_millis(300)).await;
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
