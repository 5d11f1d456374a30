//! Recordings of a node that dies and never comes back: two `cpam-server`
//! nodes on one PostgreSQL recording to one S3 store (moto); node-a is
//! killed with `kill -9` mid-session and not restarted; node-b, reaping
//! it, seals its recording in the store as `incomplete`, holding what
//! node-a uploaded up to 2 s before the kill, and nothing is left `open`.
//! When node-a does start again later, its spool completes the recording.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use cpam_tests::bins::bin_path;
use cpam_tests::cpam::{Deployment, Options, as_list, json_str, parse_json};
use cpam_tests::postgres::PgFixture;
use cpam_tests::process::{Output, run};
use cpam_tests::psm::{MASTER, Psm};
use cpam_tests::wait_until;
use serde_json::Value;

const CMD: Duration = Duration::from_secs(90);
const PREFIX: &str = "cpam/rec";

/// `cpam-server ARGS --data-dir DATA` in the vendor namespace (where the
/// store is), with the deployment's store settings.
fn cli(d: &Deployment, data: &Path, args: &[&str]) -> anyhow::Result<Output> {
    let mut c = d.topo.vendor.command(bin_path("cpam-server")?);
    c.args(args)
        .arg("--data-dir")
        .arg(data)
        .envs(d.server_env.iter().map(|(k, v)| (k, v)));
    run("cpam-server-cli", c, d.path(), CMD)
}

fn cli_json(d: &Deployment, data: &Path, args: &[&str]) -> anyhow::Result<Value> {
    let mut all = args.to_vec();
    all.push("--json");
    parse_json(
        &cli(d, data, &all)?
            .ok(&format!("cpam-server {}", args.join(" ")))?
            .stdout,
    )
}

/// The ticks a recording shows, `(n, epoch ms)` from `tick-N-MS` lines.
fn ticks(cast: &str) -> anyhow::Result<Vec<(u64, i64)>> {
    let reader = cpam_core::record::Reader::new(std::io::Cursor::new(cast.as_bytes()))?;
    let mut text = String::new();
    for event in reader {
        let event = event?;
        if event.kind == cpam_core::record::EventKind::Output {
            text.push_str(&event.data);
        }
    }
    Ok(text
        .lines()
        .filter_map(|l| {
            let (n, ms) = l.trim().strip_prefix("tick-")?.split_once('-')?;
            Some((n.parse().ok()?, ms.parse().ok()?))
        })
        .collect())
}

#[test]
fn a_dead_nodes_recording_is_sealed_incomplete_in_the_store_by_the_survivor() -> anyhow::Result<()>
{
    let _one = cpam_tests::one_cluster_at_a_time();
    let pg = PgFixture::start()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let db = pg.socket_url(&rt.block_on(pg.fresh_database())?)?;
    let mut p = Psm::start_with(Options {
        database: Some(db.clone()),
        node_id: Some("node-a".into()),
        recordings_s3: Some(PREFIX.into()),
        ..Options::default()
    })?;
    let (b_dir, _) = p.d.add_node("node-b", &db)?;

    // A privileged session on node-a printing a numbered line with the
    // target's clock in ms every 100 ms.
    let script = "i=0; while :; do echo tick-$i-$(date +%s%3N); i=$((i+1)); sleep 0.1; done";
    let ssh = p.ssh(MASTER, &["-tt"], &[script])?;
    let ssh = p.d.spawn("vendor-ssh-ticks", ssh)?;
    let session = wait_until(Duration::from_secs(30), "the PSM session", || {
        p.d.live_sessions()
            .ok()?
            .into_iter()
            .find(|s| s["protocol"] == "ssh")
    })?;
    let sid = json_str(&session, "id")?;
    assert_eq!(session["node_id"], "node-a", "{session:#}");
    wait_until(Duration::from_secs(30), "4 s of ticks", || {
        (ssh.stdout().matches("tick-").count() >= 40).then_some(())
    })
    .with_context(|| p.d.logs())?;
    let s3 = p.d.s3.as_ref().context("the deployment's store")?;
    // node-a uploads while the session runs.
    wait_until(Duration::from_secs(10), "a first part in the store", || {
        s3.objects(&format!("{PREFIX}/"))
            .ok()?
            .iter()
            .any(|(k, _)| k.contains(&sid) && k.ends_with("chain-000001"))
            .then_some(())
    })?;

    let kill_ms = cpam_tests::now_millis();
    p.d.kill_server()?;
    let killed = Instant::now();

    // node-b reaps node-a and seals the recording from the store.
    let recording = wait_until(
        Duration::from_secs(20),
        "node-a's recording sealed by node-b",
        || {
            as_list(cli_json(&p.d, &b_dir, &["recordings", "list", "--session", &sid]).ok()?)
                .ok()?
                .into_iter()
                .find(|r| r["state"] == "incomplete")
        },
    )
    .with_context(|| p.d.logs())?;
    eprintln!(
        "node-a's recording sealed incomplete by node-b {:?} after kill -9",
        killed.elapsed()
    );
    let id = json_str(&recording, "id")?;
    let ended = p.d.session(&sid)?.context("the session's row")?;
    assert_eq!(
        (ended["end_reason"].as_str(), ended["end_detail"].as_str()),
        (Some("error"), Some("node lost")),
        "{ended:#}"
    );

    let verified = cli(&p.d, &b_dir, &["recordings", "verify", &id])?.ok("recordings verify")?;
    assert!(
        verified.stdout.contains("verified: incomplete"),
        "{}",
        verified.stdout
    );
    let all =
        cli(&p.d, &b_dir, &["recordings", "verify", "--all"])?.ok("recordings verify --all")?;
    assert!(
        all.stdout.contains("0 open, 0 failed"),
        "something is left open: {}",
        all.stdout
    );
    let listed = as_list(cli_json(&p.d, &b_dir, &["recordings", "list"])?)?;
    assert!(
        listed.iter().all(|r| !r["state"].is_null()),
        "recordings left open: {listed:#?}"
    );

    // Everything up to 2 s before the kill, in order, nothing skipped.
    let cat = cli(&p.d, &b_dir, &["recordings", "cat", &id])?.ok("recordings cat")?;
    let before = ticks(&cat.stdout)?;
    let (last, last_ms) = *before.last().context("no tick was recorded")?;
    for (i, (n, _)) in before.iter().enumerate() {
        assert_eq!(*n, i as u64, "tick {i} is missing from the recording");
    }
    eprintln!(
        "last recorded tick {last} was printed {} ms before the kill",
        kill_ms - last_ms
    );
    assert!(
        last_ms >= kill_ms - 2000,
        "the recording ends {} ms before the kill (tick {last})",
        kill_ms - last_ms
    );

    // Both audited: the node lost, and the seal, with the session.
    let audit = as_list(cli_json(&p.d, &b_dir, &["audit", "list"])?)?;
    let lost = audit
        .iter()
        .find(|r| r["action"] == "node.lost" && r["detail"]["node"] == "node-a")
        .with_context(|| format!("no node.lost record: {audit:#?}"))?;
    assert_eq!(lost["detail"]["cleaned_up_by"], "node-b", "{lost:#}");
    let seal = audit
        .iter()
        .find(|r| r["action"] == "recording.sealed" && r["detail"]["recording"] == id.as_str())
        .with_context(|| format!("the seal is not audited: {audit:#?}"))?;
    assert_eq!(
        (
            seal["session_id"].as_str(),
            seal["detail"]["state"].as_str()
        ),
        (Some(sid.as_str()), Some("incomplete")),
        "{seal:#}"
    );
    cli(&p.d, &b_dir, &["audit", "verify"])?.ok("audit verify against the store")?;

    // If node-a does come back, its spool completes the recording: the
    // rest is uploaded after the store's parts and its seal replaces
    // node-b's, still `incomplete`, nothing lost.
    let spooled = p.d.data_dir.join("recordings").join(format!("{id}.cast"));
    assert!(spooled.exists(), "node-a's spool holds the recording");
    p.d.restart_server()?;
    wait_until(Duration::from_secs(30), "node-a's spool uploaded", || {
        (!spooled.exists()).then_some(())
    })
    .with_context(|| p.d.logs())?;
    let completed = cli(&p.d, &b_dir, &["recordings", "verify", &id])?.ok("recordings verify")?;
    assert!(
        completed.stdout.contains("verified: incomplete"),
        "{}",
        completed.stdout
    );
    let cat = cli(&p.d, &b_dir, &["recordings", "cat", &id])?.ok("recordings cat")?;
    let after = ticks(&cat.stdout)?;
    for (i, (n, _)) in after.iter().enumerate() {
        assert_eq!(*n, i as u64, "tick {i} is missing after node-a's upload");
    }
    assert!(
        after.len() >= before.len(),
        "node-a's seal holds {} ticks, node-b's held {}",
        after.len(),
        before.len()
    );
    eprintln!(
        "node-a back: the recording holds {} ticks (node-b's seal: {})",
        after.len(),
        before.len()
    );
    let all = cli(&p.d, &b_dir, &["recordings", "verify", "--all"])?
        .ok("recordings verify --all, sealed twice")?;
    assert!(all.stdout.contains("0 open, 0 failed"), "{}", all.stdout);
    Ok(())
}
