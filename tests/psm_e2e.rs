//! Privileged SSH sessions end to end: stock `ssh` through `cpam-connect
//! forward` to a service whose password only the vault knows, on a stock
//! `sshd` in the customer namespace.

use std::time::{Duration, Instant};

use cpam_tests::psm::{MASTER, Psm};

/// Everything a secret could leak into: the data dir's files (the SQLite
/// database among them), every process's logs, and what the vendor saw.
fn assert_nowhere(p: &Psm, seen_by_vendor: &str) -> anyhow::Result<()> {
    assert!(
        !seen_by_vendor.contains(&p.canary),
        "the vendor's ssh received the credential"
    );
    assert!(
        !p.d.logs().contains(&p.canary),
        "a log holds the credential"
    );
    let holding = cpam_tests::files_holding(&p.d.data_dir, &[p.canary.as_bytes()])?;
    assert!(
        holding.is_empty(),
        "{holding:?} hold the credential in plaintext"
    );
    Ok(())
}

#[test]
fn a_vendor_works_on_the_target_without_ever_holding_its_password() -> anyhow::Result<()> {
    let p = Psm::start()?;
    // A command: runs as the vault's account.
    let out = p.ssh_run(MASTER, &["-vvv"], &["whoami"], "")?;
    assert!(
        out.success(),
        "ssh whoami failed\n{}\n{}",
        out.stderr,
        p.d.logs()
    );
    assert_eq!(out.stdout.trim(), p.account);
    let mut seen = format!("{}{}", out.stdout, out.stderr);
    // A shell on a pty, typed into.
    let out = p.ssh_run(
        MASTER,
        &["-tt"],
        &[],
        "echo psm-$((6*7))\rstty size\rexit 7\r",
    )?;
    seen.push_str(&out.stdout);
    seen.push_str(&out.stderr);
    assert!(
        out.stdout.contains("psm-42"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    assert_eq!(
        out.status.code(),
        Some(7),
        "the shell's exit status reaches ssh"
    );
    // Both sessions are recorded as privileged SSH sessions that completed.
    let sessions = p.d.sessions()?;
    let psm: Vec<_> = sessions
        .iter()
        .filter(|s| s["service_name"] == "db1")
        .collect();
    assert_eq!(psm.len(), 2, "{sessions:#?}");
    for s in &psm {
        assert_eq!(s["protocol"], "ssh");
        assert_eq!(s["end_reason"], "completed");
    }
    // Every terminal channel is recorded: each recording verifies, and
    // stock asciinema plays what the vendor typed and saw.
    let mut played = String::new();
    for s in &psm {
        let id = s["id"].as_str().unwrap_or_default();
        let recordings =
            cpam_tests::wait_until(Duration::from_secs(10), "sealed recordings", || {
                let list =
                    p.d.admin_json(&["recordings", "list", "--session", id])
                        .ok()?;
                let list = list.as_array()?.clone();
                (!list.is_empty() && list.iter().all(|r| r["state"] == "complete")).then_some(list)
            })?;
        for r in &recordings {
            let rid = r["id"].as_str().unwrap_or_default();
            let verified = p.d.admin_ok(&["recordings", "verify", rid])?;
            assert!(verified.contains("verified: complete"), "{verified}");
            let file = p.d.data_dir.join("recordings").join(format!("{rid}.cast"));
            played.push_str(&cpam_tests::recording::asciinema_cat(&file, p.d.path())?);
        }
    }
    assert!(
        played.contains(&p.account),
        "the exec's output is recorded:\n{played}"
    );
    assert!(
        played.contains("psm-42"),
        "the shell's output is recorded:\n{played}"
    );
    let audit = p.d.audit()?;
    assert!(
        audit
            .iter()
            .any(|r| r["action"] == "session.ssh.exec" && r["detail"]["command"] == "whoami"),
        "the command is audited"
    );
    assert!(
        audit
            .iter()
            .any(|r| r["action"] == "session.ssh.host_key_pinned"),
        "the target's key was pinned on first use"
    );
    // The shell's recording verifies, plays in stock asciinema with what
    // was typed and seen, and a one-byte edit breaks it.
    let shell = psm
        .iter()
        .find(|s| {
            s["bytes_up"].as_u64().unwrap_or(0) > 0 && {
                let id = s["id"].as_str().unwrap_or("");
                p.d.audit().is_ok_and(|a| {
                    a.iter()
                        .any(|r| r["action"] == "session.ssh.shell" && r["session_id"] == id)
                })
            }
        })
        .ok_or_else(|| anyhow::anyhow!("no shell session among {psm:#?}"))?;
    let sid = shell["id"].as_str().unwrap_or_default().to_string();
    let recordings = p.d.admin_json(&["recordings", "list", "--session", &sid])?;
    let rec = recordings[0]["id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no recording of {sid}: {recordings}"))?
        .to_string();
    cpam_tests::wait_until(
        Duration::from_secs(10),
        "the recording to be sealed",
        || {
            p.d.admin(&["recordings", "verify", &rec])
                .ok()?
                .success()
                .then_some(())
        },
    )?;
    let cast = p.d.data_dir.join("recordings").join(format!("{rec}.cast"));
    let played = cpam_tests::recording::asciinema_cat(&cast, p.d.path())?;
    assert!(
        played.contains("echo psm-$((6*7))"),
        "typed input: {played}"
    );
    assert!(played.contains("psm-42"), "output: {played}");
    let mut bytes = std::fs::read(&cast)?;
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    std::fs::write(&cast, &bytes)?;
    let verify = p.d.admin(&["recordings", "verify", &rec])?;
    assert!(!verify.success(), "an edited recording verified");
    bytes[at] ^= 0x20;
    std::fs::write(&cast, &bytes)?;
    assert_nowhere(&p, &seen)?;
    p.d.expect_audit_intact()
}

#[test]
fn a_wrong_master_password_is_refused_before_the_target_is_touched() -> anyhow::Result<()> {
    let p = Psm::start()?;
    let out = p.ssh_run("not the master password", &[], &["whoami"], "")?;
    assert!(!out.success(), "ssh got in with a wrong master password");
    assert!(!out.stdout.contains(&p.account));
    let audit = p.d.audit()?;
    assert!(
        !audit
            .iter()
            .any(|r| r["action"] == "session.ssh.target_login"),
        "the proxy logged in to the target"
    );
    assert!(
        audit.iter().any(|r| r["action"]
            .as_str()
            .is_some_and(|a| a.contains("master_password"))),
        "the failure is audited: {audit:#?}"
    );
    Ok(())
}

#[test]
fn terminate_reaches_the_vendors_terminal_within_a_second() -> anyhow::Result<()> {
    let p = Psm::start()?;
    let ssh = p.ssh(MASTER, &[], &["sleep", "60"])?;
    let mut child = p.d.spawn("vendor-sleep", ssh)?;
    let id = p.d.wait_live_session()?;
    // The session is live once the target runs the command.
    cpam_tests::wait_until(Duration::from_secs(20), "the command to start", || {
        p.d.audit()
            .ok()?
            .iter()
            .any(|r| r["action"] == "session.ssh.exec")
            .then_some(())
    })?;
    let at = Instant::now();
    p.d.admin_ok(&["sessions", "terminate", &id])?;
    let status = child
        .wait_timeout(Duration::from_secs(5))?
        .ok_or_else(|| anyhow::anyhow!("ssh still runs 5 s after terminate"))?;
    let took = at.elapsed();
    assert!(!status.success());
    assert!(
        child.stderr().contains("[cpam] session terminated by"),
        "the vendor reads why: {}",
        child.stderr()
    );
    assert!(
        took < Duration::from_secs(2),
        "ssh ended {took:?} after terminate"
    );
    let ended = p.d.wait_session_ended(&id)?;
    assert_eq!(ended["end_reason"], "terminated_by");
    Ok(())
}

#[test]
fn a_target_whose_host_key_changed_is_refused_until_an_operator_forgets_the_pin()
-> anyhow::Result<()> {
    let p = Psm::start()?;
    let out = p.ssh_run(MASTER, &[], &["whoami"], "")?;
    assert!(out.success(), "{}\n{}", out.stderr, p.d.logs());
    // The target gets a new host key (sshd re-reads it on SIGHUP, same pid).
    let host_key = p.d.path().join("sshd").join("host_ed25519");
    std::fs::remove_file(&host_key)?;
    std::fs::remove_file(host_key.with_extension("pub"))?;
    cpam_tests::sshd::keygen(&host_key)?;
    p.d.sshd.child.signal(1)?;
    let refused = cpam_tests::wait_until(Duration::from_secs(20), "sshd's new key", || {
        let out = p.ssh_run(MASTER, &[], &["whoami"], "").ok()?;
        out.stderr.contains("changed").then_some(out)
    })?;
    assert!(!refused.success());
    assert!(
        refused.stderr.contains("the host key of `db1` changed"),
        "{}",
        refused.stderr
    );
    assert!(
        !refused.stdout.contains(&p.account),
        "the changed target got the credential"
    );
    let audit = p.d.audit()?;
    assert!(
        audit
            .iter()
            .any(|r| r["action"] == "session.ssh.host_key_refused"),
        "the refusal is audited"
    );
    // An operator confirms the change; the next session pins the new key.
    let forgot = p.d.admin_ok(&["service", "forget-host-key", "db1@acme"])?;
    assert!(forgot.contains("forgot the host key SHA256:"), "{forgot}");
    let out = p.ssh_run(MASTER, &[], &["whoami"], "")?;
    assert!(out.success(), "{}\n{}", out.stderr, p.d.logs());
    assert_eq!(out.stdout.trim(), p.account);
    assert!(
        p.d.audit()?
            .iter()
            .any(|r| r["action"] == "admin.service.host_key_forgotten"),
        "the operator's change is audited"
    );
    Ok(())
}

/// A checkout that runs out mid-session ends the proxied session then (a
/// privileged session lasts until the earlier of its grant's and its
/// checkout's end), the vendor reads why, and the next session is refused.
#[test]
fn a_checkout_that_runs_out_ends_the_session_and_says_so() -> anyhow::Result<()> {
    let p = Psm::start()?;
    p.d.run("checkin", p.d.connect_cmd(&["checkin", "db1"])?)?
        .ok("cpam-connect checkin")?;
    p.d.run(
        "checkout-short",
        p.d.connect_cmd(&["checkout", "db1", "--for", "6s"])?,
    )?
    .ok("cpam-connect checkout --for 6s")?;
    let checked_out = Instant::now();
    let ssh = p.ssh(MASTER, &[], &["echo started; sleep 60"])?;
    let mut child = p.d.spawn("vendor-expiry", ssh)?;
    let id = p.d.wait_live_session()?;
    let status = child
        .wait_timeout(Duration::from_secs(30))?
        .ok_or_else(|| anyhow::anyhow!("ssh still runs 30 s after the checkout was taken"))?;
    let took = checked_out.elapsed();
    assert!(!status.success());
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(9),
        "the session ended {took:?} after a 6 s checkout"
    );
    assert!(
        child.stdout().contains("started"),
        "the command ran: {}",
        child.stdout()
    );
    assert!(
        child.stderr().contains("[cpam] access expired"),
        "the vendor reads why: {}",
        child.stderr()
    );
    let ended = p.d.wait_session_ended(&id)?;
    assert_eq!(ended["end_reason"], "expired", "{ended:#}");
    let again = p.ssh_run(MASTER, &[], &["true"], "")?;
    assert!(!again.success(), "a session without a checkout ran");
    let refused = p.d.audit()?.into_iter().any(|r| {
        r["action"] == "session.refused" && r.to_string().contains("no active checkout of `db1`")
    });
    assert!(refused, "the refusal is audited with why");
    Ok(())
}
