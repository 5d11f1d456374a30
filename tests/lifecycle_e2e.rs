//! Sessions ending for the reasons cpam promises: an operator's terminate,
//! grant expiry, the customer's switch; and the server restarting.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use cpam_tests::cpam::{Deployment, Options, as_list, json_millis};
use cpam_tests::postgres::PgFixture;
use cpam_tests::{now_millis, wait_until};
use serde_json::Value;

/// The timed assertions below run one at a time so that parallel
/// deployments do not eat into their margins.
static TIMED: Mutex<()> = Mutex::new(());

fn timed() -> std::sync::MutexGuard<'static, ()> {
    TIMED.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn terminate_ends_a_live_session_within_a_second() -> anyhow::Result<()> {
    let _t = timed();
    let d = Deployment::start()?;
    let mut ssh = d.spawn("ssh-sleep", d.ssh(&["sleep", "600"]))?;
    let id = d.wait_live_session()?;
    d.admin_ok(&["sessions", "terminate", &id, "--reason", "test"])?;
    let returned = Instant::now();
    let status = ssh.wait_timeout(Duration::from_secs(1))?;
    assert!(
        status.is_some(),
        "ssh still running 1 s after `sessions terminate` returned\n{}",
        d.logs()
    );
    eprintln!(
        "ssh ended {:?} after terminate returned",
        returned.elapsed()
    );
    let s = d.wait_session_ended(&id)?;
    assert_eq!(s["end_reason"], "terminated_by", "{s:#}");
    d.expect_audit_intact()?;
    Ok(())
}

/// The grant object in `grant add --json` output (bare or wrapped).
fn grant_of(v: Value) -> Value {
    if v.get("not_after").is_some() {
        return v;
    }
    v.get("grant").cloned().unwrap_or(v)
}

#[test]
fn grant_expiry_ends_the_live_session_and_refuses_new_ones() -> anyhow::Result<()> {
    let _t = timed();
    let d = Deployment::start_with(Options {
        grant: false,
        ..Options::default()
    })?;
    let g = grant_of(d.admin_json(&[
        "grant",
        "add",
        "--user",
        "vendor",
        "--customer",
        "acme",
        "--service",
        "ssh",
        "--for",
        "6s",
    ])?);
    let expiry = json_millis(&g, "not_after")?;
    let mut ssh = d.spawn("ssh-sleep", d.ssh(&["sleep", "600"]))?;
    let id = d.wait_live_session()?;
    let wait = u64::try_from(expiry - now_millis()).unwrap_or(0) + 5_000;
    let status = ssh.wait_timeout(Duration::from_millis(wait))?;
    let ended = now_millis();
    assert!(
        status.is_some(),
        "ssh still running 5 s after the grant expired\n{}",
        d.logs()
    );
    let off = ended - expiry;
    assert!(
        (-1_000..=2_000).contains(&off),
        "ssh ended {off} ms from the grant's expiry (allowed: -1000..=2000)\n{}",
        d.logs()
    );
    let s = d.wait_session_ended(&id)?;
    assert_eq!(s["end_reason"], "expired", "{s:#}");

    let seq = d.audit_seq()?;
    d.expect_ssh_refused_on(d.connect_port, "after the grant expired")?;
    d.expect_refusal_audited(seq, "a session after the grant expired")?;
    Ok(())
}

fn gk1_online(d: &Deployment) -> Option<Value> {
    let list = as_list(d.admin_json(&["gatekeeper", "list"]).ok()?).ok()?;
    list.into_iter()
        .find(|g| g["name"] == "gk1" && g["online"] == true)
}

#[test]
fn server_restart_is_recovered_within_ten_seconds() -> anyhow::Result<()> {
    let _t = timed();
    let mut d = Deployment::start()?;
    d.expect_ssh_works_on(d.connect_port)?;
    d.restart_server()?;
    let started = Instant::now();
    let deadline = Duration::from_secs(10);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let out = d.run("ssh-after-restart", d.ssh(&["true"]))?;
        if out.success() {
            break;
        }
        assert!(
            started.elapsed() < deadline,
            "no working session {deadline:?} after the server restarted ({attempts} attempts)\n{}",
            d.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("session works {:?} after restart", started.elapsed());
    assert!(
        started.elapsed() < deadline,
        "first working session only after {:?}",
        started.elapsed()
    );
    let gk = gk1_online(&d);
    assert!(
        gk.is_some(),
        "gk1 not online after restart: {:#}",
        d.admin_json(&["gatekeeper", "list"])?
    );
    Ok(())
}

/// Two `cpam-server run` processes (nodes `node-a` and `node-b`, each with
/// its own data dir) on one PostgreSQL database: starting the second leaves
/// the first one's live session and gatekeeper link alone, and a restart of
/// `node-b` does too.
#[test]
fn a_second_node_on_one_database_leaves_the_first_nodes_work_alone() -> anyhow::Result<()> {
    let _t = timed();
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
    let mut ssh = d.spawn("ssh-sleep", d.ssh(&["sleep", "600"]))?;
    let id = d.wait_live_session()?;
    let session = d.session(&id)?.context("the live session has no row")?;
    assert_eq!(session["node_id"], "node-a", "{session:#}");

    let b_dir = d.path().join("server-b");
    d.admin_of(
        &b_dir,
        &["init", "--listen", "127.0.0.1:0", "--database", &db],
    )?;
    // Nodes sharing a database share the vault's key file.
    assert!(
        !b_dir.join("vault.key").exists(),
        "init made a second vault key for a sealed vault"
    );
    std::fs::copy(d.data_dir.join("vault.key"), b_dir.join("vault.key"))?;
    for round in ["start", "restart"] {
        let b_addr = d.spawn_node(&b_dir, "node-b")?;
        eprintln!("node-b {round}ed on {b_addr}");
        let row = d.session(&id)?.context("the session row is gone")?;
        assert!(
            row["ended_at"].is_null(),
            "node-b's {round} closed node-a's session: {row:#}\n{}",
            d.logs()
        );
        assert!(
            gk1_online(&d).is_some(),
            "node-b's {round} marked node-a's gatekeeper offline: {:#}",
            d.admin_json(&["gatekeeper", "list"])?
        );
        let live = d.live_sessions()?;
        assert!(
            live.iter().any(|s| s["id"] == id.as_str()),
            "node-a no longer lists its session as live after node-b's {round}: {live:#?}"
        );
        if let Some(mut b) = d.extra.pop() {
            b.kill()?;
            d.extra.push(b);
        }
    }
    assert!(
        ssh.try_status()?.is_none(),
        "the vendor's ssh ended while node-b came and went\n{}",
        d.logs()
    );
    d.expect_ssh_works_on(d.connect_port)?;
    // node-a's own restart still closes what node-a left open.
    d.restart_server()?;
    let ended = d.wait_session_ended(&id)?;
    assert_eq!(ended["end_reason"], "error", "{ended:#}");
    d.expect_audit_intact()?;
    Ok(())
}

/// Disabling a user reaches a Connection Manager that stays connected: its
/// next session is refused at once (the user is read afresh for every
/// session, not kept from sign-in), and the refusal is audited.
#[test]
fn disabling_a_user_refuses_the_next_session_of_a_running_connection_manager() -> anyhow::Result<()>
{
    let d = Deployment::start()?;
    d.expect_ssh_works_on(d.connect_port)?;
    let seq = d.audit_seq()?;
    d.admin_ok(&["user", "disable", "vendor"])?;
    let disabled = Instant::now();
    d.expect_ssh_refused_on(
        d.connect_port,
        "the first session after the user was disabled",
    )?;
    eprintln!(
        "refused {:?} after `user disable` returned",
        disabled.elapsed()
    );
    let refusal = d.expect_refusal_audited(seq, "a session after the user was disabled")?;
    // Disabling closed the Connection Manager's connection, so its next one
    // is refused at sign-in; a session opened before the close was refused
    // by the approval, which reads the user afresh.
    let by = (
        refusal["action"].as_str(),
        refusal["detail"]["reason"].as_str(),
    );
    assert!(
        matches!(
            by,
            (Some("login.failure"), Some("user disabled"))
                | (Some("session.refused"), Some("user_disabled"))
        ),
        "{refusal:#}"
    );
    d.admin_ok(&["user", "enable", "vendor"])?;
    d.expect_ssh_works_on(d.connect_port)?;
    Ok(())
}

#[test]
fn customer_switch_closes_live_sessions_and_refuses_new_ones() -> anyhow::Result<()> {
    let _t = timed();
    let d = Deployment::start()?;
    let mut ssh = d.spawn("ssh-sleep", d.ssh(&["sleep", "600"]))?;
    let id = d.wait_live_session()?;
    d.run("gatekeeper-disable", d.gatekeeper_cmd(&["disable"])?)?
        .ok("cpam-gatekeeper disable")?;
    let disabled = Instant::now();
    let status = ssh.wait_timeout(Duration::from_secs(2))?;
    assert!(
        status.is_some(),
        "ssh still running 2 s after `cpam-gatekeeper disable`\n{}",
        d.logs()
    );
    eprintln!("ssh ended {:?} after disable", disabled.elapsed());
    let s = d.wait_session_ended(&id)?;
    // cpam-core EndReason: `revoked` covers "the customer disabled the gatekeeper".
    assert_eq!(s["end_reason"], "revoked", "{s:#}");
    wait_until(
        Duration::from_secs(5),
        "gk1 reported customer_disabled",
        || {
            let list = as_list(d.admin_json(&["gatekeeper", "list"]).ok()?).ok()?;
            list.into_iter()
                .find(|g| g["name"] == "gk1" && g["customer_disabled"] == true)
        },
    )?;
    d.expect_ssh_refused_on(d.connect_port, "while the gatekeeper is disabled")?;

    d.run("gatekeeper-enable", d.gatekeeper_cmd(&["enable"])?)?
        .ok("cpam-gatekeeper enable")?;
    wait_until(Duration::from_secs(10), "a session after enable", || {
        d.run("ssh-after-enable", d.ssh(&["true"]))
            .ok()
            .filter(|o| o.success())
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}", d.logs()))?;

    // Opening hours that exclude now close the gatekeeper the same way: a
    // whole day two days from today (UTC; Monday = 0, 1970-01-01 a Thursday).
    let mut ssh = d.spawn("ssh-sleep-hours", d.ssh(&["sleep", "600"]))?;
    d.wait_live_session()?;
    let today = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        / 86_400;
    let days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let other = days[usize::try_from((today + 3 + 2) % 7)?];
    let hours = d.gatekeeper_cmd(&["schedule", "--days", other, "--hours", "00:00-00:00"])?;
    d.run("gatekeeper-schedule", hours)?
        .ok("cpam-gatekeeper schedule")?;
    assert!(
        ssh.wait_timeout(Duration::from_secs(2))?.is_some(),
        "ssh still running 2 s after the opening hours closed the gatekeeper\n{}",
        d.logs()
    );
    let expected = format!("{other} 00:00-00:00");
    wait_until(
        Duration::from_secs(5),
        "gk1 reported its opening hours, closed",
        || {
            let list = as_list(d.admin_json(&["gatekeeper", "list"]).ok()?).ok()?;
            list.into_iter().find(|g| {
                g["name"] == "gk1"
                    && g["customer_disabled"] == true
                    && g["customer_schedule"] == expected.as_str()
            })
        },
    )?;
    d.expect_ssh_refused_on(d.connect_port, "outside the opening hours")?;
    let always = d.gatekeeper_cmd(&["schedule", "--always"])?;
    d.run("gatekeeper-always", always)?
        .ok("cpam-gatekeeper schedule --always")?;
    wait_until(Duration::from_secs(10), "a session once open again", || {
        d.run("ssh-after-hours", d.ssh(&["true"]))
            .ok()
            .filter(|o| o.success())
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}", d.logs()))?;
    Ok(())
}

/// Sets the customer namespace's veth link up or down.
fn customer_link(d: &Deployment, up: bool) -> anyhow::Result<()> {
    let out = std::process::Command::new("ip")
        .args([
            "-n",
            d.topo.customer.name(),
            "-o",
            "link",
            "show",
            "type",
            "veth",
        ])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let name = text
        .split(": ")
        .nth(1)
        .and_then(|n| n.split('@').next())
        .ok_or_else(|| anyhow::anyhow!("no veth in the customer namespace: {text}"))?
        .to_string();
    let state = if up { "up" } else { "down" };
    let st = std::process::Command::new("ip")
        .args([
            "-n",
            d.topo.customer.name(),
            "link",
            "set",
            "dev",
            &name,
            state,
        ])
        .status()?;
    anyhow::ensure!(st.success(), "ip link set {name} {state} failed");
    Ok(())
}

#[test]
fn dead_link_is_detected_within_thirty_seconds_and_recovered() -> anyhow::Result<()> {
    let mut d = Deployment::start()?;
    d.expect_ssh_works_on(d.connect_port)?;
    customer_link(&d, false)?;
    let cut = Instant::now();
    // Both ends notice by keepalive alone: nothing is sent on the link.
    d.gatekeeper
        .wait_for_stderr("gatekeeper offline", Duration::from_secs(35))?;
    let gk_noticed = cut.elapsed();
    wait_until(
        Duration::from_secs(35).saturating_sub(cut.elapsed()),
        "the server marking gk1 offline",
        || {
            let list = as_list(d.admin_json(&["gatekeeper", "list"]).ok()?).ok()?;
            list.into_iter()
                .find(|g| g["name"] == "gk1" && g["online"] == false)
        },
    )?;
    let server_noticed = cut.elapsed();
    eprintln!(
        "dead link noticed by the gatekeeper after {gk_noticed:?}, by the server after {server_noticed:?}"
    );
    assert!(
        gk_noticed <= Duration::from_secs(31),
        "gatekeeper took {gk_noticed:?}"
    );
    assert!(
        server_noticed <= Duration::from_secs(31),
        "server took {server_noticed:?}"
    );
    customer_link(&d, true)?;
    wait_until(
        Duration::from_secs(25),
        "gk1 online again after the link came back",
        || gk1_online(&d),
    )?;
    d.expect_still_serving()
}

#[test]
fn connection_manager_waits_for_an_unreachable_server() -> anyhow::Result<()> {
    let mut d = Deployment::start()?;
    d.kill_server()?;
    let mut c = d
        .topo
        .vendor
        .command(cpam_tests::bins::bin_path("cpam-connect")?);
    c.arg("--profile")
        .arg(&d.profile)
        .args(["forward", "ssh", "--listen", "127.0.0.1:0"]);
    let mut connect = d.spawn("connect-retry", c)?;
    connect.wait_for_stderr("server unreachable, retrying", Duration::from_secs(15))?;
    assert!(
        connect.is_running(),
        "cpam-connect gave up\n{}",
        connect.logs()
    );
    d.restart_server()?;
    let addr = connect.wait_for_line("cpam-connect forwarding ssh on ", Duration::from_secs(20))?;
    let port: u16 = addr.rsplit(':').next().unwrap_or_default().parse()?;
    // The gatekeeper reconnects on its own backoff; sessions need it online.
    wait_until(
        Duration::from_secs(15),
        "gk1 online after the restart",
        || gk1_online(&d),
    )?;
    d.expect_ssh_works_on(port)?;
    d.extra.push(connect);
    Ok(())
}

#[test]
fn revoking_the_grant_ends_the_live_session() -> anyhow::Result<()> {
    let _t = timed();
    let mut d = Deployment::start()?;
    let mut ssh = d.spawn("ssh-sleep", d.ssh(&["sleep", "600"]))?;
    let id = d.wait_live_session()?;
    let grants = as_list(d.admin_json(&["grant", "list"])?)?;
    let grant = grants
        .first()
        .and_then(|g| g["id"].as_str())
        .ok_or_else(|| anyhow::anyhow!("no grant listed: {grants:?}"))?
        .to_string();
    d.admin_ok(&["grant", "revoke", &grant])?;
    let status = ssh.wait_timeout(Duration::from_secs(2))?;
    assert!(
        status.is_some(),
        "ssh still running after the grant was revoked\n{}",
        d.logs()
    );
    let s = d.wait_session_ended(&id)?;
    assert_eq!(s["end_reason"], "revoked", "{s:#}");
    let seq = d.audit_seq()?;
    d.expect_ssh_refused_on(d.connect_port, "a session after the grant was revoked")?;
    d.expect_refusal_audited(seq, "a session after the grant was revoked")?;
    d.extra.push(ssh);
    d.expect_audit_intact()
}
