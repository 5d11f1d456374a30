//! Several `cpam-server` nodes on one PostgreSQL, as real processes: node
//! registration (a live id refused), controls issued on one node reaching a
//! session another node holds, a node killed with `kill -9` (its gatekeeper
//! moves, its sessions end as "node lost"), and PostgreSQL stopped and
//! started again under running nodes (`/readyz`, the audit chain).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use cpam_tests::bins::bin_path;
use cpam_tests::cpam::{ALLOW, Deployment, Options, as_list, parse_json};
use cpam_tests::postgres::PgFixture;
use cpam_tests::process::{Child, run};
use cpam_tests::wait_until;
use serde_json::Value;

fn timed() -> std::sync::MutexGuard<'static, ()> {
    cpam_tests::one_cluster_at_a_time()
}

/// Two nodes on one database: the standard deployment as `node-a` (its
/// gatekeeper and the vendor's Connection Manager attached to it) and
/// `node-b` with its own data dir, the same vault key and host key.
struct Cluster {
    // Dropped before the database.
    d: Deployment,
    b_dir: PathBuf,
    b_addr: SocketAddr,
    pg: PgFixture,
}

impl Cluster {
    fn start() -> anyhow::Result<Cluster> {
        let pg = PgFixture::start()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let db = pg.socket_url(&rt.block_on(pg.fresh_database())?)?;
        let mut d = Deployment::start_with(Options {
            database: Some(db.clone()),
            node_id: Some("node-a".into()),
            ..Options::default()
        })?;
        let (b_dir, b_addr) = d.add_node("node-b", &db)?;
        Ok(Cluster {
            d,
            b_dir,
            b_addr,
            pg,
        })
    }

    /// `cpam-server ARGS --json` on node-b's data dir, parsed.
    fn b_json(&self, args: &[&str]) -> anyhow::Result<Value> {
        let mut all = args.to_vec();
        all.push("--json");
        parse_json(&self.d.admin_of(&self.b_dir, &all)?)
    }

    fn nodes(&self) -> anyhow::Result<Vec<Value>> {
        as_list(self.b_json(&["nodes"])?)
    }

    /// gk1 as node-b reads it from the database.
    fn gk1(&self) -> anyhow::Result<Value> {
        as_list(self.b_json(&["gatekeeper", "list"])?)?
            .into_iter()
            .find(|g| g["name"] == "gk1")
            .context("gk1 is not listed")
    }

    /// Replaces the deployment's gatekeeper with one that knows both nodes,
    /// node-a first.
    fn gatekeeper_on_both(&mut self) -> anyhow::Result<()> {
        self.d.gatekeeper.kill()?;
        let (a, b) = (self.d.server_addr.to_string(), self.b_addr.to_string());
        let mut cmd = self
            .d
            .gatekeeper_cmd(&["run", "--allow", ALLOW, "--server", &a, "--server", &b])?;
        cmd.env("RUST_LOG", "info");
        let mut gk = Child::spawn("gatekeeper-cluster", cmd, self.d.path())?;
        gk.wait_for_stderr("gatekeeper online", Duration::from_secs(30))?;
        self.d.extra.push(gk);
        wait_until(Duration::from_secs(10), "gk1 online on node-a", || {
            self.gk1()
                .ok()
                .filter(|g| g["online"] == true && g["node_id"] == "node-a")
        })?;
        Ok(())
    }
}

#[test]
fn a_second_process_with_a_live_node_id_refuses_to_start() -> anyhow::Result<()> {
    let _t = timed();
    let c = Cluster::start()?;
    let nodes = c.nodes()?;
    for id in ["node-a", "node-b"] {
        assert!(
            nodes.iter().any(|n| n["id"] == id && n["state"] == "live"),
            "{id} is not listed live: {nodes:#?}"
        );
    }
    let mut dup = c.d.topo.vendor.command(bin_path("cpam-server")?);
    dup.args(["run", "--listen", "127.0.0.1:0", "--node-id", "node-a"])
        .arg("--data-dir")
        .arg(&c.b_dir);
    let out = run(
        "server-duplicate-id",
        dup,
        c.d.path(),
        Duration::from_secs(60),
    )?;
    assert!(
        !out.success(),
        "a second node-a started: {}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.stderr.contains("node id `node-a` is already running"),
        "the refusal does not name the id: {}",
        out.stderr
    );
    // The live node-a kept its work.
    c.d.expect_ssh_works_on(c.d.connect_port)?;
    assert!(
        c.nodes()?
            .iter()
            .any(|n| n["id"] == "node-a" && n["peer_address"] == c.d.server_addr.to_string()),
        "node-a's row was taken over by the refused process"
    );
    Ok(())
}

#[test]
fn terminate_and_disable_on_node_b_end_a_session_node_a_holds() -> anyhow::Result<()> {
    let _t = timed();
    let c = Cluster::start()?;
    let mut ssh = c.d.spawn("ssh-sleep", c.d.ssh(&["sleep", "600"]))?;
    let id = c.d.wait_live_session()?;
    let row = c.d.session(&id)?.context("the live session has no row")?;
    assert_eq!(row["node_id"], "node-a", "{row:#}");

    c.d.admin_of(
        &c.b_dir,
        &["sessions", "terminate", &id, "--reason", "from node-b"],
    )?;
    let issued = Instant::now();
    let status = ssh.wait_timeout(Duration::from_secs(1))?;
    assert!(
        status.is_some(),
        "ssh through node-a still running 1 s after node-b's terminate returned\n{}",
        c.d.logs()
    );
    eprintln!(
        "ssh on node-a ended {:?} after terminate on node-b",
        issued.elapsed()
    );
    let ended = c.d.wait_session_ended(&id)?;
    assert_eq!(ended["end_reason"], "terminated_by", "{ended:#}");

    let mut ssh = c.d.spawn("ssh-sleep-2", c.d.ssh(&["sleep", "600"]))?;
    let id = wait_until(Duration::from_secs(20), "a second live session", || {
        c.d.live_sessions()
            .ok()?
            .into_iter()
            .find(|s| s["id"] != ended["id"])
            .and_then(|s| s["id"].as_str().map(str::to_string))
    })?;
    c.d.admin_of(&c.b_dir, &["user", "disable", "vendor"])?;
    let issued = Instant::now();
    let status = ssh.wait_timeout(Duration::from_secs(1))?;
    assert!(
        status.is_some(),
        "ssh through node-a still running 1 s after node-b disabled the user\n{}",
        c.d.logs()
    );
    eprintln!(
        "ssh on node-a ended {:?} after user disable on node-b",
        issued.elapsed()
    );
    let ended = c.d.wait_session_ended(&id)?;
    assert_eq!(ended["end_reason"], "revoked", "{ended:#}");
    c.d.expect_audit_intact()?;
    Ok(())
}

#[test]
fn killing_a_node_moves_its_gatekeeper_and_ends_its_sessions_as_node_lost() -> anyhow::Result<()> {
    let _t = timed();
    let mut c = Cluster::start()?;
    c.gatekeeper_on_both()?;
    let _ssh = c.d.spawn("ssh-sleep", c.d.ssh(&["sleep", "600"]))?;
    let id = c.d.wait_live_session()?;

    c.d.kill_server()?;
    let killed = Instant::now();
    let gk = wait_until(
        Duration::from_secs(10),
        "gk1 to reconnect to node-b within 10 s",
        || {
            c.gk1()
                .ok()
                .filter(|g| g["online"] == true && g["node_id"] == "node-b")
        },
    )?;
    eprintln!("gk1 online on node-b {:?} after kill -9", killed.elapsed());
    assert_eq!(gk["online"], true);

    let ended = wait_until(Duration::from_secs(20), "node-a's session to end", || {
        c.d.session(&id)
            .ok()
            .flatten()
            .filter(|s| !s["end_reason"].is_null())
    })?;
    eprintln!(
        "node-a's session ended {:?} after kill -9",
        killed.elapsed()
    );
    assert_eq!(
        (ended["end_reason"].as_str(), ended["end_detail"].as_str()),
        (Some("error"), Some("node lost")),
        "{ended:#}"
    );
    let live = as_list(c.b_json(&["sessions", "list", "--live"])?)?;
    assert!(
        live.iter().all(|s| s["id"] != id.as_str()),
        "the dead node's session is still listed live: {live:#?}"
    );
    let nodes = c.nodes()?;
    assert!(
        nodes.iter().all(|n| n["id"] != "node-a"),
        "node-a is still listed after it was cleaned up: {nodes:#?}"
    );
    let audit = as_list(c.b_json(&["audit", "list"])?)?;
    let lost = audit
        .iter()
        .find(|r| r["action"] == "node.lost" && r["detail"]["node"] == "node-a")
        .with_context(|| format!("no node.lost record: {audit:#?}"))?;
    assert_eq!(lost["detail"]["cleaned_up_by"], "node-b", "{lost:#}");

    // A vendor on node-b reaches the gatekeeper that moved there.
    let profile = c.d.path().join("vendor-profile-b.json");
    let (p, b) = (profile.to_string_lossy().to_string(), c.b_addr.to_string());
    c.d.admin_of(
        &c.b_dir,
        &[
            "profile",
            "export",
            "--user",
            "vendor",
            "--gatekeeper",
            "gk1",
            "--out",
            &p,
            "--server-address",
            &b,
        ],
    )?;
    let port = c.d.forward(&profile, "ssh")?;
    c.d.expect_ssh_works_on(port)?;
    c.d.expect_audit_intact()?;
    Ok(())
}

#[test]
fn postgres_down_fails_readyz_and_the_nodes_recover_after() -> anyhow::Result<()> {
    let _t = timed();
    let mut c = Cluster::start()?;
    let consoles = {
        let a = c.d.server.as_mut().context("node-a is not running")?;
        let a = a.wait_for_line("cpam-server console on ", Duration::from_secs(30))?;
        let b = c.d.extra.last_mut().context("node-b is not running")?;
        let b = b.wait_for_line("cpam-server console on ", Duration::from_secs(30))?;
        [a, b]
    };
    for url in &consoles {
        let (code, body) = c.d.readyz(url)?;
        assert_eq!((code, body.trim()), (200, "ready"), "{url}");
    }
    let before = c.d.audit_seq()?;
    c.pg.stop()?;
    for url in &consoles {
        let (code, body) = wait_until(
            Duration::from_secs(10),
            "/readyz to fail while PostgreSQL is down",
            || c.d.readyz(url).ok().filter(|(code, _)| *code == 503),
        )?;
        assert_eq!((code, body.trim()), (503, "database unreachable"), "{url}");
    }
    // Longer than the node timeout: every heartbeat is stale meanwhile.
    std::thread::sleep(Duration::from_secs(8));
    c.pg.restart()?;
    for url in &consoles {
        wait_until(
            Duration::from_secs(30),
            "/readyz to pass again once PostgreSQL is back",
            || c.d.readyz(url).ok().filter(|(code, _)| *code == 200),
        )?;
    }
    // Past another node timeout: neither node declared the other lost.
    std::thread::sleep(Duration::from_secs(8));
    let nodes = c.nodes()?;
    for id in ["node-a", "node-b"] {
        assert!(
            nodes.iter().any(|n| n["id"] == id && n["state"] == "live"),
            "{id} is not live after PostgreSQL came back: {nodes:#?}"
        );
    }
    c.d.expect_ssh_works_on(c.d.connect_port)?;
    let records = as_list(c.b_json(&["audit", "list"])?)?;
    let mut seqs: Vec<i64> = records.iter().filter_map(|r| r["seq"].as_i64()).collect();
    seqs.sort_unstable();
    let n = seqs.len();
    seqs.dedup();
    if seqs.len() != n || seqs.first() != Some(&1) || seqs.last() != Some(&(n as i64)) {
        bail!("audit seqs have a gap or a duplicate: {seqs:?}");
    }
    assert!(
        c.d.audit_seq()? > before,
        "nothing was audited after PostgreSQL came back"
    );
    c.d.expect_audit_intact()?;
    Ok(())
}
