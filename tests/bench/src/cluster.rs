//! Cluster paths, on a PostgreSQL server the bench starts (the tests'
//! `PgFixture`: PostgreSQL 15 from `/usr/lib/postgresql/15/bin`):
//!
//! - `cpam-pg`: the `cpam` path with its server as node `node-a` on
//!   PostgreSQL: the one-node baseline of the other two;
//! - `cpam-relay`: the vendor signs in to `node-b` while the gatekeeper is
//!   linked to `node-a`, so every session is authorized and recorded on
//!   node-b and relayed over the peer link to node-a (one extra hop);
//! - `cpam-3nodes`: three nodes, a gatekeeper and a forward on each, the
//!   connection burst spread over the three.
//!
//! And the audit append rate of one writer process against three writing
//! one chain at once ([`audit_rates`]), verified afterwards.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use cpam_core::model::{AuditCategory, AuditEvent, Timestamp};
use cpam_core::store::{SqlStore, Store};
use cpam_tests::postgres::PgFixture;
use serde::Serialize;

use super::RunningPath;
use super::cpam::{Deployment, ready};
use super::targets::Targets;

/// The cluster paths' names, in the order they are measured.
pub const PATHS: [&str; 3] = ["cpam-pg", "cpam-relay", "cpam-3nodes"];

/// A fresh database on `pg`.
fn fresh_database(pg: &PgFixture) -> Result<String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(pg.fresh_database())
}

/// Sets up cluster path `name` (one of [`PATHS`]) on a fresh database.
pub fn start(
    name: &'static str,
    targets: &Targets,
    bin_dir: &Path,
    pg: &PgFixture,
) -> Result<RunningPath> {
    let db = fresh_database(pg)?;
    let mut d = Deployment::start_on(name, bin_dir, Some(&db))?;
    match name {
        "cpam-pg" => {
            d.service("echo", targets.echo, None)?;
            d.service("sink", targets.sink, None)?;
            ready(d, targets)
        }
        "cpam-relay" => {
            d.service("echo", targets.echo, None)?;
            d.service("sink", targets.sink, None)?;
            let b = d.add_node("node-b")?;
            d.use_profile("gk1", b)?;
            d.path
                .notes
                .push(format!("vendor on node-b ({b}), gatekeeper on node-a"));
            ready(d, targets)
        }
        "cpam-3nodes" => {
            d.service_on("echo", Some("gk1"), targets.echo, None)?;
            d.service_on("sink", Some("gk1"), targets.sink, None)?;
            let mut spread: Vec<(String, SocketAddr)> = Vec::new();
            for (node, gk) in [("node-b", "gk2"), ("node-c", "gk3")] {
                let addr = d.add_node(node)?;
                d.add_gatekeeper(gk, addr)?;
                let service = format!("echo-{gk}");
                d.service_on(&service, Some(gk), targets.echo, None)?;
                spread.push((service, addr));
            }
            let first = d.profile.clone();
            for ((service, addr), gk) in spread.iter().zip(["gk2", "gk3"]) {
                d.use_profile(gk, *addr)?;
                let entry = d.forward(service)?;
                d.path.echo_spread.push(entry);
            }
            d.profile = first;
            d.path.notes.push(
                "burst spread over node-a, node-b and node-c, each with its own gatekeeper".into(),
            );
            let mut path = ready(d, targets)?;
            for entry in &path.echo_spread {
                super::load::wait_echo(*entry, std::time::Duration::from_secs(30))
                    .with_context(|| format!("echo through {entry}"))?;
            }
            path.notes
                .push(format!("entries: {} and {:?}", path.echo, path.echo_spread));
            Ok(path)
        }
        other => bail!("{other} is not a cluster path"),
    }
}

/// Audit appends of `writers` processes into one chain.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRate {
    pub writers: usize,
    /// Appends per writer (each writer runs 8 at a time).
    pub records_per_writer: usize,
    pub seconds: f64,
    pub appends_per_s: f64,
    /// Records `audit verify` checked, and whether the chain is intact.
    pub verified: u64,
    pub intact: bool,
}

/// Appends of one writer process at a time against three at once, each on
/// a fresh database, then the chain verified.
pub fn audit_rates(pg: &PgFixture, records: usize) -> Result<Vec<AuditRate>> {
    let exe = std::env::current_exe()?;
    let mut out = Vec::new();
    for writers in [1, 3] {
        let db = fresh_database(pg)?;
        // The schema, before the writers race to make it.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(SqlStore::connect(&db))?;
        let started = Instant::now();
        let children: Vec<_> = (0..writers)
            .map(|i| {
                Command::new(&exe)
                    .args([
                        "audit-writer",
                        &db,
                        &records.to_string(),
                        &format!("node-{i}"),
                    ])
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .spawn()
                    .context("starting an audit writer")
            })
            .collect::<Result<_>>()?;
        for c in children {
            let done = c.wait_with_output()?;
            if !done.status.success() {
                bail!(
                    "an audit writer failed: {}",
                    String::from_utf8_lossy(&done.stdout)
                );
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        let verification = rt.block_on(async {
            let store = SqlStore::connect(&db).await?;
            cpam_core::audit::verify_store(&store).await
        })?;
        out.push(AuditRate {
            writers,
            records_per_writer: records,
            seconds,
            appends_per_s: (writers * records) as f64 / seconds,
            verified: verification.checked,
            intact: verification.is_intact() && verification.checked == (writers * records) as u64,
        });
    }
    Ok(out)
}

/// `cpam-bench audit-writer URL N NAME`: appends N audit events as actor
/// NAME, 8 at a time, like a node's sessions do.
pub fn audit_writer(args: &[String]) -> Result<()> {
    let [url, n, name] = args else {
        bail!("usage: cpam-bench audit-writer DATABASE_URL RECORDS NAME");
    };
    let n: usize = n.parse().context("RECORDS must be a number")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let store: Arc<dyn Store> = Arc::new(SqlStore::connect(url).await?);
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (store, next, name) = (store.clone(), next.clone(), name.clone());
                tokio::spawn(async move {
                    while next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < n {
                        store
                            .append_audit(&AuditEvent {
                                at: Timestamp::now(),
                                category: AuditCategory::SystemMessages,
                                action: "bench.append".into(),
                                actor: name.clone(),
                                customer_id: None,
                                session_id: None,
                                detail: serde_json::json!({ "writer": name }),
                            })
                            .await?;
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        for t in tasks {
            t.await??;
        }
        anyhow::Ok(())
    })
}

/// The audit table.
pub fn audit_table(rates: &[AuditRate]) -> String {
    let mut out = String::from(
        "\nAudit appends into one hash chain on PostgreSQL (8 at a time per writer process):\n",
    );
    out.push_str("writers  appends  seconds  appends/s  verified\n");
    for r in rates {
        out.push_str(&format!(
            "{:>7}  {:>7}  {:>7.2}  {:>9.0}  {} {}\n",
            r.writers,
            r.writers * r.records_per_writer,
            r.seconds,
            r.appends_per_s,
            r.verified,
            if r.intact { "intact" } else { "BROKEN" }
        ));
    }
    if let [one, three] = rates {
        out.push_str(&format!(
            "three writers / one: {:.2}×\n",
            three.appends_per_s / one.appends_per_s
        ));
    }
    out
}
