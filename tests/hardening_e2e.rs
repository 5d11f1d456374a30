//! Revocation that reaches open connections, and the registration code kept
//! out of logs and process arguments: through the real binaries.

use std::time::{Duration, Instant};

use cpam_tests::cpam::{Deployment, as_list, json_str};
use cpam_tests::wait_until;
use serde_json::Value;

/// The audit records after `since` with `action`.
fn audited(d: &Deployment, since: i64, action: &str) -> anyhow::Result<Vec<Value>> {
    Ok(d.audit()?
        .into_iter()
        .filter(|r| r["seq"].as_i64().unwrap_or(0) > since && r["action"] == action)
        .collect())
}

/// Waits for the hub to audit closing a connection of `actor`.
fn expect_connection_closed(d: &Deployment, since: i64, actor: &str) -> anyhow::Result<Value> {
    wait_until(
        Duration::from_secs(5),
        "the revoked connection closed and audited",
        || {
            audited(d, since, "login.revoked")
                .ok()?
                .into_iter()
                .find(|r| r["actor"] == actor)
        },
    )
    .map_err(|e| anyhow::anyhow!("{e}\n{}", d.logs()))
}

#[test]
fn disabling_a_user_closes_their_connection_and_live_session_at_once() -> anyhow::Result<()> {
    let d = Deployment::start()?;
    let mut ssh = d.spawn("ssh-sleep", d.ssh(&["sleep", "600"]))?;
    let id = d.wait_live_session()?;
    let seq = d.audit_seq()?;
    d.admin_ok(&["user", "disable", "vendor"])?;
    let disabled = Instant::now();
    assert!(
        ssh.wait_timeout(Duration::from_secs(1))?.is_some(),
        "ssh still running 1 s after `user disable`\n{}",
        d.logs()
    );
    eprintln!("ssh ended {:?} after disable", disabled.elapsed());
    let s = d.wait_session_ended(&id)?;
    assert_eq!(s["end_reason"], "revoked", "{s:#}");
    // The Connection Manager's own SSH connection is closed too, not only
    // its sessions, and the next connection is refused.
    let closed = expect_connection_closed(&d, seq, "vendor")?;
    assert!(
        closed["detail"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("disabled")),
        "{closed:#}"
    );
    d.expect_ssh_refused_on(d.connect_port, "a connection after the user was disabled")?;
    Ok(())
}

#[test]
fn deleting_a_profile_key_closes_the_connection_it_signed_in() -> anyhow::Result<()> {
    let d = Deployment::start()?;
    let keys = as_list(d.admin_json(&["user", "key", "list", "vendor"])?)?;
    let profile = keys
        .iter()
        .find(|k| k["gatekeeper_id"].is_string())
        .ok_or_else(|| anyhow::anyhow!("no profile key listed: {keys:#?}"))?;
    assert_eq!(profile["label"], "profile for gk1", "{profile:#}");
    let listed = d.admin_ok(&["user", "key", "list", "vendor"])?;
    assert!(listed.contains("profile"), "{listed}");
    let key_id = json_str(profile, "id")?;

    let mut ssh = d.spawn("ssh-sleep", d.ssh(&["sleep", "600"]))?;
    d.wait_live_session()?;
    let seq = d.audit_seq()?;
    d.admin_ok(&["user", "key", "delete", "vendor", &key_id])?;
    assert!(
        ssh.wait_timeout(Duration::from_secs(1))?.is_some(),
        "ssh still running 1 s after its key was deleted\n{}",
        d.logs()
    );
    expect_connection_closed(&d, seq, "vendor")?;
    assert_eq!(audited(&d, seq, "admin.user.key_delete")?.len(), 1);
    d.expect_ssh_refused_on(d.connect_port, "a connection after its key was deleted")?;
    let keys = as_list(d.admin_json(&["user", "key", "list", "vendor"])?)?;
    assert!(keys.iter().all(|k| k["id"] != key_id.as_str()), "{keys:#?}");
    // Deleting it again names what is missing.
    let again = d.admin(&["user", "key", "delete", "vendor", &key_id])?;
    assert!(
        !again.success() && again.stderr.contains(&key_id),
        "{again:?}"
    );
    Ok(())
}

#[test]
fn the_registration_code_never_appears_in_logs_or_arguments() -> anyhow::Result<()> {
    let d = Deployment::start()?;
    let added = d.admin_json(&["gatekeeper", "add", "--customer", "acme", "gk2"])?;
    let code = json_str(&added, "code")?;
    let file = d.path().join("gk2.code");
    std::fs::write(&file, format!("{code}\n"))?;
    let state = d.path().join("gk2-state");
    let mut reg = d
        .topo
        .customer
        .command(cpam_tests::bins::bin_path("cpam-gatekeeper")?);
    reg.args(["register", "--server", &d.server_addr.to_string()])
        .arg("--code-file")
        .arg(&file)
        .arg("--state-dir")
        .arg(&state)
        .env("CPAM_LOG", "debug");
    let args = format!("{reg:?}");
    let out = d
        .run("register-gk2", reg)?
        .ok("register with --code-file")?;
    assert!(
        !args.contains(&code),
        "the code is in the arguments: {args}"
    );
    let mut seen = vec![
        ("register output", format!("{}{}", out.stdout, out.stderr)),
        ("logs", d.logs()),
        ("audit log", serde_json::to_string(&d.audit()?)?),
    ];
    for entry in std::fs::read_dir(&state)? {
        let path = entry?.path();
        if let Ok(text) = std::fs::read_to_string(&path) {
            seen.push(("gatekeeper state", text));
        }
    }
    for (what, text) in seen {
        assert!(
            !text.contains(&code),
            "the registration code is in the {what}"
        );
    }
    // The code from a file is used up like any other.
    let registered = d.admin_json(&["gatekeeper", "list"])?;
    let gk2 = as_list(registered)?
        .into_iter()
        .find(|g| g["name"] == "gk2")
        .ok_or_else(|| anyhow::anyhow!("gk2 not listed"))?;
    assert_eq!(gk2["registered"], true, "{gk2:#}");
    Ok(())
}

#[test]
fn deleting_a_gatekeeper_closes_its_link_and_the_profile_connections_bound_to_it()
-> anyhow::Result<()> {
    let d = Deployment::start()?;
    let mut ssh = d.spawn("ssh-sleep", d.ssh(&["sleep", "600"]))?;
    let id = d.wait_live_session()?;
    let seq = d.audit_seq()?;
    d.admin_ok(&["gatekeeper", "delete", "gk1"])?;
    assert!(
        ssh.wait_timeout(Duration::from_secs(1))?.is_some(),
        "ssh still running 1 s after its gatekeeper was deleted\n{}",
        d.logs()
    );
    let s = d.wait_session_ended(&id)?;
    assert_eq!(s["end_reason"], "revoked", "{s:#}");
    expect_connection_closed(&d, seq, "gatekeeper:gk1")?;
    expect_connection_closed(&d, seq, "vendor")?;
    let keys = as_list(d.admin_json(&["user", "key", "list", "vendor"])?)?;
    assert!(
        keys.is_empty(),
        "the profile key outlived its gatekeeper: {keys:#?}"
    );
    let gks = as_list(d.admin_json(&["gatekeeper", "list"])?)?;
    assert!(gks.iter().all(|g| g["name"] != "gk1"), "{gks:#?}");
    d.expect_ssh_refused_on(
        d.connect_port,
        "a connection after the gatekeeper was deleted",
    )?;
    Ok(())
}
