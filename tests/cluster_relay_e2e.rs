//! The peer relay, with real processes: three `cpam-server` nodes on one
//! PostgreSQL and one S3-compatible store, a gatekeeper attached to each
//! node, and vendors on every node reaching the gatekeepers the *other*
//! nodes hold (stock `ssh` and `sshd`, a TCP splice and a privileged
//! session); terminate issued on any node; a peer link with a key no live
//! node has; and the node holding a relayed gatekeeper killed with
//! `kill -9`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use cpam_tests::bins::bin_path;
use cpam_tests::cpam::{ALLOW, Deployment, Options, SSHD_PORT, as_list, json_str, parse_json};
use cpam_tests::postgres::PgFixture;
use cpam_tests::process::{Child, Output, run};
use cpam_tests::psm::{MASTER, Psm};
use cpam_tests::wait_until;
use serde_json::Value;

const CMD: Duration = Duration::from_secs(60);

/// Three nodes: `node-a` is the deployment's own server (with `gk1`, the
/// services `ssh` and `db1`), `node-b` and `node-c` share its database,
/// keys and recording store, each with a gatekeeper of its own (`gk2`
/// with service `ssh2`, `gk3` with `ssh3`).
struct Three {
    p: Psm,
    nodes: Vec<(String, PathBuf, SocketAddr)>,
    _pg: PgFixture,
}

impl Three {
    fn start(s3: bool) -> anyhow::Result<Three> {
        let pg = PgFixture::start()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let db = pg.socket_url(&rt.block_on(pg.fresh_database())?)?;
        let mut p = Psm::start_with(Options {
            database: Some(db.clone()),
            node_id: Some("node-a".into()),
            recordings_s3: s3.then(|| "cpam/rec".to_string()),
            ..Options::default()
        })?;
        let mut nodes = vec![("node-a".to_string(), p.d.data_dir.clone(), p.d.server_addr)];
        for (n, node) in ["node-b", "node-c"].into_iter().enumerate() {
            let (dir, addr) = p.d.add_node(node, &db)?;
            let (gk, service) = (format!("gk{}", n + 2), format!("ssh{}", n + 2));
            attach_gatekeeper(&mut p.d, &gk, addr)?;
            let target = format!("127.0.0.1:{SSHD_PORT}");
            for args in [
                vec![
                    "service",
                    "add",
                    "--customer",
                    "acme",
                    &service,
                    "--gatekeeper",
                    &gk,
                    "--target",
                    &target,
                ],
                vec![
                    "grant",
                    "add",
                    "--user",
                    "vendor",
                    "--customer",
                    "acme",
                    "--service",
                    &service,
                ],
            ] {
                p.d.admin_ok(&args)?;
            }
            nodes.push((node.to_string(), dir, addr));
        }
        let three = Three { p, nodes, _pg: pg };
        for (gk, node) in [("gk1", "node-a"), ("gk2", "node-b"), ("gk3", "node-c")] {
            wait_until(Duration::from_secs(20), "each gatekeeper online", || {
                three
                    .gatekeeper(gk)
                    .ok()
                    .filter(|g| g["online"] == true && g["node_id"] == node)
            })?;
        }
        Ok(three)
    }

    fn node(&self, id: &str) -> &(String, PathBuf, SocketAddr) {
        self.nodes
            .iter()
            .find(|n| n.0 == id)
            .expect("a node of the cluster")
    }

    /// `cpam-server ARGS` on `node`'s data dir in the vendor namespace,
    /// with the recording store's environment.
    fn cli(&self, node: &str, args: &[&str]) -> anyhow::Result<Output> {
        let d = &self.p.d;
        let mut c = d.topo.vendor.command(bin_path("cpam-server")?);
        c.args(args)
            .arg("--data-dir")
            .arg(&self.node(node).1)
            .envs(d.server_env.iter().map(|(k, v)| (k, v)));
        run(&format!("{node}-{}", args.join("-")), c, d.path(), CMD)
    }

    fn json(&self, node: &str, args: &[&str]) -> anyhow::Result<Value> {
        let mut all = args.to_vec();
        all.push("--json");
        parse_json(&self.cli(node, &all)?.ok(&all.join(" "))?.stdout)
    }

    fn gatekeeper(&self, name: &str) -> anyhow::Result<Value> {
        as_list(self.json("node-b", &["gatekeeper", "list"])?)?
            .into_iter()
            .find(|g| g["name"] == name)
            .with_context(|| format!("{name} is not listed"))
    }

    /// A profile of `vendor` for `gatekeeper` that signs in to `node`.
    fn profile(&self, gatekeeper: &str, node: &str) -> anyhow::Result<PathBuf> {
        let path = self
            .p
            .d
            .path()
            .join(format!("profile-{gatekeeper}-{node}.json"));
        let (p, addr) = (
            path.to_string_lossy().to_string(),
            self.node(node).2.to_string(),
        );
        self.p.d.admin_ok(&[
            "profile",
            "export",
            "--user",
            "vendor",
            "--gatekeeper",
            gatekeeper,
            "--out",
            &p,
            "--server-address",
            &addr,
        ])?;
        Ok(path)
    }

    /// The one live session, waited for.
    fn live_session(&self) -> anyhow::Result<Value> {
        wait_until(Duration::from_secs(20), "a live session", || {
            self.p.d.live_sessions().ok()?.into_iter().next()
        })
    }
}

/// Registers gatekeeper `name` of `acme` at `server` and runs it in the
/// customer namespace (its child kept in `extra`).
fn attach_gatekeeper(d: &mut Deployment, name: &str, server: SocketAddr) -> anyhow::Result<()> {
    let added = d.admin_json(&["gatekeeper", "add", "--customer", "acme", name])?;
    let code_file = d.path().join(format!("{name}.code"));
    std::fs::write(&code_file, format!("{}\n", json_str(&added, "code")?))?;
    let state = d.path().join(format!("state-{name}"));
    let server = server.to_string();
    let mut reg = d.topo.customer.command(bin_path("cpam-gatekeeper")?);
    reg.args(["register", "--server", &server, "--code-file"])
        .arg(&code_file)
        .arg("--state-dir")
        .arg(&state);
    run(&format!("register-{name}"), reg, d.path(), CMD)?.ok("cpam-gatekeeper register")?;
    let mut gk = d.topo.customer.command(bin_path("cpam-gatekeeper")?);
    gk.args(["run", "--allow", ALLOW, "--server", &server, "--state-dir"])
        .arg(&state)
        .env("RUST_LOG", "info");
    let mut child = Child::spawn(name, gk, d.path())?;
    child.wait_for_stderr("gatekeeper online", Duration::from_secs(30))?;
    d.extra.push(child);
    Ok(())
}

/// `ssh ... sleep 600` through the forward on `port`, its session live.
fn long_session(t: &Three, port: u16) -> anyhow::Result<(Child, String)> {
    let ssh =
        t.p.d
            .spawn("ssh-sleep", t.p.d.ssh_on(port, &["sleep", "600"]))?;
    let id = json_str(&t.live_session()?, "id")?;
    Ok((ssh, id))
}

#[test]
fn vendors_on_every_node_reach_the_gatekeepers_the_others_hold() -> anyhow::Result<()> {
    let _t = cpam_tests::one_cluster_at_a_time();
    let mut t = Three::start(true)?;

    // Each vendor signs in to one node and reaches a gatekeeper another
    // node holds: the session is that node's (authorized, audited there).
    let mut ports = Vec::new();
    for (gk, service, node) in [
        ("gk1", "ssh", "node-b"),
        ("gk2", "ssh2", "node-c"),
        ("gk3", "ssh3", "node-a"),
    ] {
        let profile = t.profile(gk, node)?;
        let port = t.p.d.forward(&profile, service)?;
        let started = Instant::now();
        t.p.d
            .expect_ssh_works_on(port)
            .with_context(|| format!("{service}@{gk} from {node}\n{}", t.p.d.logs()))?;
        eprintln!(
            "{service}@{gk} through {node}: ssh round trip {:?}",
            started.elapsed()
        );
        let sessions = t.p.d.sessions()?;
        let s = sessions
            .iter()
            .find(|s| s["service_name"] == service)
            .with_context(|| format!("no session for {service}: {sessions:#?}"))?;
        let gk_id = json_str(&t.gatekeeper(gk)?, "id")?;
        assert_eq!(
            (s["node_id"].as_str(), s["gatekeeper_id"].as_str()),
            (Some(node), Some(gk_id.as_str())),
            "{s:#}"
        );
        ports.push(port);
    }

    // A privileged session (credential from the vault) from node-c through
    // gk1, which node-a holds: recorded by node-c into the store.
    let profile = t.profile("gk1", "node-c")?;
    t.p.port = t.p.d.forward(&profile, "db1")?;
    let out =
        t.p.ssh_run(MASTER, &["-tt"], &[], "echo relay-$((6*7))\rexit\r")?;
    assert!(
        out.stdout.contains("relay-42"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    let psm =
        t.p.d
            .sessions()?
            .into_iter()
            .find(|s| s["protocol"] == "ssh")
            .context("the privileged session")?;
    assert_eq!(psm["node_id"], "node-c", "{psm:#}");
    let sid = json_str(&psm, "id")?;
    t.p.d.wait_session_ended(&sid)?;

    // Terminate from a third node, then from the gatekeeper's own node:
    // the relayed session on node-b ends within 1 s each time.
    for by in ["node-c", "node-a"] {
        let (mut ssh, id) = long_session(&t, ports[0])?;
        t.cli(by, &["sessions", "terminate", &id, "--reason", by])?
            .ok("sessions terminate")?;
        let issued = Instant::now();
        let ended = ssh.wait_timeout(Duration::from_secs(1))?;
        assert!(
            ended.is_some(),
            "the relayed ssh still runs 1 s after {by}'s terminate\n{}",
            t.p.d.logs()
        );
        eprintln!(
            "relayed session ended {:?} after terminate on {by}",
            issued.elapsed()
        );
        let row = t.p.d.wait_session_ended(&id)?;
        assert_eq!(row["end_reason"], "terminated_by", "{row:#}");
    }

    // Every recording of the run is in the object store and verifies from
    // any node.
    let recordings = as_list(t.json("node-a", &["recordings", "list"])?)?;
    let psm_recording = recordings
        .iter()
        .find(|r| r["session_id"] == sid.as_str())
        .with_context(|| format!("no recording of {sid}: {recordings:#?}"))?;
    for r in &recordings {
        let id = json_str(r, "id")?;
        let verified = wait_until(
            Duration::from_secs(30),
            "each recording complete in the store",
            || {
                t.cli("node-b", &["recordings", "verify", &id])
                    .ok()
                    .filter(|o| o.stdout.contains("verified: complete"))
            },
        )?;
        assert!(verified.success(), "{}", verified.stdout);
    }
    let rid = json_str(psm_recording, "id")?;
    let s3 = t.p.d.s3.as_ref().context("the store")?;
    let objects = s3.objects("cpam/rec")?;
    assert!(
        objects
            .iter()
            .any(|(name, _)| name.contains(&rid) && name.ends_with("manifest")),
        "the relayed session's recording is not in the store: {objects:?}"
    );
    let cat = t
        .cli("node-a", &["recordings", "cat", &rid])?
        .ok("recordings cat")?;
    assert!(cat.stdout.contains("relay-42"), "{}", cat.stdout);
    assert!(
        !cat.stdout.contains(&t.p.canary),
        "the vault's password reached a recording"
    );
    t.cli("node-c", &["audit", "verify"])?.ok("audit verify")?;
    Ok(())
}

/// `ssh -i KEY cpam-node:NODE@ADDR true` against a node's hub.
fn sign_in_as_node(
    d: &Deployment,
    key: &Path,
    node: &str,
    addr: SocketAddr,
) -> anyhow::Result<Output> {
    let mut c = d.topo.vendor.command("ssh");
    c.args([
        "-F",
        "/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
    ])
    .args([
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "IdentitiesOnly=yes",
        "-i",
    ])
    .arg(key)
    .args(["-p", &addr.port().to_string()])
    .arg(format!("cpam-node:{node}@{}", addr.ip()))
    .arg("true");
    run("ssh-as-node", c, d.path(), CMD)
}

#[test]
fn unknown_node_keys_are_refused_and_a_killed_holder_hands_its_gatekeeper_on() -> anyhow::Result<()>
{
    let _t = cpam_tests::one_cluster_at_a_time();
    let mut t = Three::start(false)?;
    let b_addr = t.node("node-b").2;

    // A key no live node registered, as an unknown node and as node-a.
    let key = t.p.d.path().join("not-a-node");
    let mut keygen = Command::new("ssh-keygen");
    keygen
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key);
    run("keygen", keygen, t.p.d.path(), CMD)?.ok("ssh-keygen")?;
    for claimed in ["node-x", "node-a"] {
        let out = sign_in_as_node(&t.p.d, &key, claimed, b_addr)?;
        assert!(
            !out.success(),
            "a stranger signed in as {claimed}: {}",
            out.stderr
        );
        assert!(out.stderr.contains("Permission denied"), "{}", out.stderr);
        let audit = as_list(t.json("node-b", &["audit", "list"])?)?;
        let refused = audit
            .iter()
            .find(|r| r["action"] == "node.refused" && r["detail"]["node"] == claimed)
            .with_context(|| format!("no node.refused record for {claimed}: {audit:#?}"))?;
        assert!(
            refused["detail"]["fingerprint"]
                .as_str()
                .is_some_and(|f| f.starts_with("SHA256:")),
            "{refused:#}"
        );
    }

    // gk1 knows node-a and node-b; a vendor on node-c reaches it through
    // node-a.
    t.p.d.gatekeeper.kill()?;
    let (a, b) = (t.p.d.server_addr.to_string(), b_addr.to_string());
    let mut cmd =
        t.p.d
            .gatekeeper_cmd(&["run", "--allow", ALLOW, "--server", &a, "--server", &b])?;
    cmd.env("RUST_LOG", "info");
    let mut gk = Child::spawn("gk1-both", cmd, t.p.d.path())?;
    gk.wait_for_stderr("gatekeeper online", Duration::from_secs(30))?;
    t.p.d.extra.push(gk);
    wait_until(Duration::from_secs(10), "gk1 on node-a", || {
        t.gatekeeper("gk1")
            .ok()
            .filter(|g| g["online"] == true && g["node_id"] == "node-a")
    })?;
    let profile = t.profile("gk1", "node-c")?;
    let port = t.p.d.forward(&profile, "ssh")?;
    let (mut ssh, id) = long_session(&t, port)?;
    assert_eq!(t.p.d.session(&id)?.context("row")?["node_id"], "node-c");

    t.p.d.kill_server()?;
    let killed = Instant::now();
    let status = ssh.wait_timeout(Duration::from_secs(10))?;
    assert!(
        status.is_some(),
        "the relayed ssh outlived node-a by 10 s\n{}",
        t.p.d.logs()
    );
    eprintln!(
        "relayed session through node-a ended {:?} after kill -9",
        killed.elapsed()
    );
    let moved = wait_until(Duration::from_secs(10), "gk1 on node-b within 10 s", || {
        t.gatekeeper("gk1")
            .ok()
            .filter(|g| g["online"] == true && g["node_id"] == "node-b")
    })?;
    eprintln!("gk1 online on node-b {:?} after kill -9", killed.elapsed());
    assert_eq!(moved["online"], true);
    let on_c = |t: &Three| -> anyhow::Result<Vec<Value>> {
        Ok(as_list(t.json("node-c", &["sessions", "list"])?)?
            .into_iter()
            .filter(|s| s["node_id"] == "node-c" && s["service_name"] == "ssh")
            .collect())
    };
    let before = on_c(&t)?;
    let ended = before
        .iter()
        .find(|s| s["id"] == id.as_str())
        .context("the relayed session's row")?;
    assert!(!ended["ended_at"].is_null(), "{ended:#}");

    // The same vendor, still signed in to node-c, now goes through node-b.
    t.p.d.expect_ssh_works_on(port)?;
    let after = on_c(&t)?;
    assert_eq!(after.len(), before.len() + 1, "{after:#?}");
    t.cli("node-b", &["audit", "verify"])?.ok("audit verify")?;
    Ok(())
}

#[test]
fn three_nodes_appending_at_once_keep_one_audit_chain() -> anyhow::Result<()> {
    let _t = cpam_tests::one_cluster_at_a_time();
    let mut t = Three::start(false)?;
    let before = t.p.d.audit_seq()?;
    // A vendor on each node, through the gatekeeper that node holds: every
    // session writes its start and end into the one chain.
    let mut ports = Vec::new();
    for (gk, service, node) in [
        ("gk1", "ssh", "node-a"),
        ("gk2", "ssh2", "node-b"),
        ("gk3", "ssh3", "node-c"),
    ] {
        let profile = t.profile(gk, node)?;
        ports.push(t.p.d.forward(&profile, service)?);
    }
    const PER_NODE: usize = 60;
    // Each client reads the target's banner through its forward, all of
    // them at once.
    let script = format!(
        "for p in {}; do for i in $(seq {PER_NODE}); do \
         (exec 3<>/dev/tcp/127.0.0.1/$p && head -c 4 <&3 >/dev/null) & done; done; wait",
        ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut load = t.p.d.topo.vendor.command("bash");
    load.args(["-c", &script]);
    let started = Instant::now();
    run("load", load, t.p.d.path(), CMD)?.ok("the load")?;
    eprintln!(
        "{} sessions over three nodes in {:?}",
        3 * PER_NODE,
        started.elapsed()
    );
    let want = 3 * PER_NODE;
    let records = wait_until(
        Duration::from_secs(30),
        "every session ended and audited",
        || {
            let records = as_list(
                t.json("node-b", &["audit", "list", "--limit", "100000"])
                    .ok()?,
            )
            .ok()?;
            let ends = records
                .iter()
                .filter(|r| r["seq"].as_i64() > Some(before) && r["action"] == "session.end")
                .count();
            (ends >= want).then_some(records)
        },
    )?;
    let mut writers = std::collections::BTreeMap::new();
    for r in records.iter().filter(|r| r["seq"].as_i64() > Some(before)) {
        if r["action"] == "session.start" {
            let service = r["detail"]["service"].as_str().unwrap_or("?").to_string();
            *writers.entry(service).or_insert(0) += 1;
        }
    }
    // ssh is node-a's, ssh2 node-b's, ssh3 node-c's.
    eprintln!("session.start records by service: {writers:?}");
    for service in ["ssh", "ssh2", "ssh3"] {
        assert_eq!(writers.get(service), Some(&PER_NODE), "{writers:?}");
    }
    let mut seqs: Vec<i64> = records.iter().filter_map(|r| r["seq"].as_i64()).collect();
    seqs.sort_unstable();
    let n = seqs.len();
    seqs.dedup();
    assert!(
        seqs.len() == n && seqs.first() == Some(&1) && seqs.last() == Some(&(n as i64)),
        "the audit seqs have a gap or a duplicate: {seqs:?}"
    );
    for node in ["node-a", "node-b", "node-c"] {
        let v = t.cli(node, &["audit", "verify"])?.ok("audit verify")?;
        assert!(v.stdout.contains("intact"), "{node}: {}", v.stdout);
    }
    Ok(())
}
