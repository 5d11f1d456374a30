//! Sessions ending for the reasons cpam promises: an operator's terminate,
//! grant expiry, the customer's switch; and the server restarting.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use cpam_tests::cpam::{Deployment, Options, as_list, json_millis};
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
    let d = Deployment::start_with(Options { grant: false })?;
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
    Ok(())
}
