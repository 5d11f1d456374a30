//! RDP with credential injection under bad input and faults, with the real
//! peers of `rdp_e2e.rs` (`xfreerdp`, `freerdp-shadow-cli` with NLA) and a
//! misbehaving one (`rdp-fuzz`, garbage where RDP is expected):
//!
//! - a target that refuses the vault's credential;
//! - a target whose certificate changed after it was pinned, and the
//!   operator forgetting the pin;
//! - a client leaving mid-handshake; garbage and oversized PDUs from the
//!   client's side and from the target's;
//! - a recording cut by `kill -9` of the server;
//! - a checkout running out mid-session.

use std::process::Command;
use std::time::Duration;

use cpam_tests::bins::bin_path;
use cpam_tests::cpam::{RDP_PORT, json_millis, parse_json};
use cpam_tests::process::Child;
use cpam_tests::rdp_psm::Rdp;
use serde_json::Value;

fn actions(r: &Rdp) -> anyhow::Result<Vec<String>> {
    Ok(r.d
        .audit()?
        .iter()
        .filter_map(|x| x["action"].as_str().map(str::to_string))
        .collect())
}

/// The server still runs and never panicked.
fn expect_server_fine(r: &mut Rdp) -> anyhow::Result<()> {
    let running = r.d.server.as_mut().is_some_and(Child::is_running);
    assert!(running, "the server died\n{}", r.logs());
    assert!(!r.d.logs().contains("panicked"), "a panic\n{}", r.logs());
    Ok(())
}

/// A fresh one-time credential gets `xfreerdp` through to the target.
fn expect_login_works(r: &Rdp, what: &str) -> anyhow::Result<()> {
    let (user, password) = r.credential_ok()?;
    let out = r.d.run(
        "xfreerdp-after",
        r.xfreerdp(&user, &password, &["+auth-only"])?,
    )?;
    assert!(
        out.success(),
        "xfreerdp failed {what} ({}): {}\n{}",
        out.status,
        out.stderr,
        r.logs()
    );
    Ok(())
}

#[test]
fn a_target_refusing_the_vaults_credential_ends_the_session_with_why() -> anyhow::Result<()> {
    let r = Rdp::start()?;
    r.set_vault_password("not-the-targets-password")?;
    let (user, password) = r.credential_ok()?;
    let out = r.d.run(
        "xfreerdp-refused",
        r.xfreerdp(&user, &password, &["+auth-only"])?,
    )?;
    assert!(!out.success(), "a refused credential got through");
    // The vendor's client reads a refused logon, not a dropped line.
    let said = format!("{}{}", out.stdout, out.stderr);
    assert!(said.contains("LOGON_FAILURE"), "xfreerdp said: {said}");
    let audit = r.d.audit()?;
    let failed = audit
        .iter()
        .find(|x| x["action"] == "session.rdp.target_login_failed")
        .unwrap_or_else(|| panic!("the refusal is not audited: {audit:#?}"));
    assert_eq!(failed["detail"]["username"], "alice", "{failed}");
    assert!(
        !audit
            .iter()
            .any(|x| x["action"] == "session.rdp.target_login")
    );
    let id = failed["session_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let ended = r.d.wait_session_ended(&id)?;
    let detail = ended["end_detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("refused the stored credential for `alice`"),
        "{ended:#}"
    );
    // The right password again: the next session gets through.
    r.set_vault_password(&r.canary)?;
    expect_login_works(&r, "with the right credential")?;
    r.assert_canary_nowhere(&said)?;
    Ok(())
}

#[test]
fn a_changed_target_certificate_is_refused_until_an_operator_forgets_the_pin() -> anyhow::Result<()>
{
    let mut r = Rdp::start()?;
    expect_login_works(&r, "pinning the certificate")?;
    let dir = r.d.path().to_path_buf();
    r.target
        .restart(&r.d.topo.customer, &dir, &dir.join("rdp-target-other-home"))?;
    let (user, password) = r.credential_ok()?;
    let out = r.d.run(
        "xfreerdp-changed",
        r.xfreerdp(&user, &password, &["+auth-only"])?,
    )?;
    assert!(!out.success(), "a changed certificate was accepted");
    let audit = r.d.audit()?;
    let refused = audit
        .iter()
        .find(|x| x["action"] == "session.rdp.certificate_refused")
        .unwrap_or_else(|| panic!("the refusal is not audited: {audit:#?}"));
    assert!(
        refused["detail"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("the certificate of `rdp1` changed"),
        "{refused}"
    );
    let logins = actions(&r)?
        .iter()
        .filter(|a| *a == "session.rdp.target_login")
        .count();
    assert_eq!(logins, 1, "the changed target was logged in to");
    // The operator confirms the change; the next session pins the new key.
    let forgot = r.d.admin_ok(&["service", "forget-host-key", "rdp1@acme"])?;
    assert!(
        forgot.contains("forgot the certificate key SHA256:"),
        "{forgot}"
    );
    expect_login_works(&r, "after the pin was forgotten")?;
    let actions = actions(&r)?;
    assert!(actions.contains(&"admin.service.certificate_forgotten".to_string()));
    let pinned = actions
        .iter()
        .filter(|a| *a == "session.rdp.certificate_pinned")
        .count();
    assert_eq!(pinned, 2, "{actions:#?}");
    Ok(())
}

/// `rdp-fuzz client` against the forward: `rounds` bad connections.
fn fuzz_client(r: &Rdp, rounds: usize, seed: u64, nla: bool) -> anyhow::Result<String> {
    let mut c = r.d.topo.vendor.command(bin_path("rdp-fuzz")?);
    c.args([
        "client",
        &format!("127.0.0.1:{}", r.port),
        &rounds.to_string(),
        &seed.to_string(),
    ]);
    if nla {
        c.arg("nla");
    }
    let out = r.d.run("rdp-fuzz-client", c)?.ok("rdp-fuzz client")?;
    Ok(out.stdout)
}

#[test]
fn a_client_leaving_mid_handshake_ends_its_session_and_the_next_one_works() -> anyhow::Result<()> {
    let mut r = Rdp::start()?;
    // A connection request offering NLA, then the client is gone: with a
    // credential issued the proxy has reached the target and awaits TLS.
    r.credential_ok()?;
    let request = "\\x03\\x00\\x00\\x13\\x0e\\xe0\\x00\\x00\\x00\\x00\\x00\\x01\\x00\\x08\\x00\\x0b\\x00\\x00\\x00";
    let mut c = r.d.topo.vendor.command("timeout");
    c.args([
        "10",
        "bash",
        "-c",
        &format!("printf '{request}' >/dev/tcp/127.0.0.1/{}", r.port),
    ]);
    r.d.run("half-handshake", c)?.ok("the half handshake")?;
    // An xfreerdp killed while it logs in.
    let (user, password) = r.credential_ok()?;
    let mut client = r.d.spawn(
        "xfreerdp-killed",
        r.xfreerdp(&user, &password, &["/gdi:sw"])?,
    )?;
    r.d.wait_live_session()?;
    client.kill()?;
    r.wait_none_live()?;
    let sessions: Vec<Value> =
        r.d.sessions()?
            .into_iter()
            .filter(|s| s["service_name"] == "rdp1")
            .collect();
    assert!(sessions.len() >= 2, "{sessions:#?}");
    assert!(sessions.iter().all(|s| !s["ended_at"].is_null()));
    expect_server_fine(&mut r)?;
    expect_login_works(&r, "after clients left mid-handshake")?;
    Ok(())
}

#[test]
fn garbage_and_oversized_pdus_from_either_side_end_the_session_and_the_server_carries_on()
-> anyhow::Result<()> {
    let mut r = Rdp::start()?;
    // The client's side: every kind of bad payload, twice, without and
    // with a credential issued (the proxy then goes on to the target).
    let out = fuzz_client(&r, 18, 7, false)?;
    assert_eq!(out.trim(), "closed 18", "the proxy left connections open");
    for seed in 1..=3 {
        r.credential_ok()?;
        let out = fuzz_client(&r, 9, seed, true)?;
        assert_eq!(out.trim(), "closed 9", "the proxy left connections open");
    }
    r.wait_none_live()?;
    expect_server_fine(&mut r)?;
    expect_login_works(&r, "after garbage from clients")?;

    // The target's side: a fake target answering garbage.
    r.target.shadow.kill()?;
    let mut fake = r.d.topo.customer.command(bin_path("rdp-fuzz")?);
    fake.args(["target", &format!("127.0.0.1:{RDP_PORT}"), "11"]);
    let mut fake = Child::spawn("rdp-fuzz-target", fake, r.d.path())?;
    fake.wait_for_line("listening", Duration::from_secs(20))?;
    for round in 0..9 {
        r.credential_ok()?;
        let out = fuzz_client(&r, 1, 100 + round, true)?;
        assert_eq!(
            out.trim(),
            "closed 1",
            "round {round}: the proxy kept it open"
        );
    }
    r.wait_none_live()?;
    let served = fake
        .stdout()
        .lines()
        .filter(|l| l.starts_with("served"))
        .count();
    assert_eq!(
        served, 9,
        "the proxy reached the fake target {served} times"
    );
    fake.kill()?;
    let ended: Vec<Value> =
        r.d.sessions()?
            .into_iter()
            .filter(|s| s["service_name"] == "rdp1")
            .collect();
    assert!(ended.iter().all(|s| !s["ended_at"].is_null()), "{ended:#?}");
    expect_server_fine(&mut r)?;
    let dir = r.d.path().to_path_buf();
    r.target
        .restart(&r.d.topo.customer, &dir, &dir.join("rdp-target-home"))?;
    expect_login_works(&r, "after garbage from the target")?;
    assert!(
        !actions(&r)?.contains(&"session.rdp.certificate_refused".to_string()),
        "garbage changed the pin"
    );
    Ok(())
}

/// The colours the desktop is painted, one after another.
fn colour(i: usize) -> [u8; 3] {
    let i = u8::try_from(i % 16).unwrap_or(0);
    [40 + i * 13, 220 - i * 11, 30 + i * 7]
}

#[test]
fn a_recording_cut_by_kill_9_verifies_incomplete_and_replays_up_to_a_second_before()
-> anyhow::Result<()> {
    use cpam_core::record::{RdpPlayer, read_rdp};
    let mut r = Rdp::start()?;
    let (mut client, id) = r.full_session()?;
    // The desktop changes colour every 200 ms.
    for i in 0..16 {
        let [red, green, blue] = colour(i);
        let mut paint = Command::new("xsetroot");
        paint
            .args(["-solid", &format!("#{red:02x}{green:02x}{blue:02x}")])
            .env("DISPLAY", r.target.display.env());
        let status = paint.status()?;
        anyhow::ensure!(status.success(), "xsetroot failed");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(client.is_running(), "xfreerdp left\n{}", r.logs());
    let started =
        r.d.session(&id)?
            .map(|s| json_millis(&s, "started_at"))
            .transpose()?
            .ok_or_else(|| anyhow::anyhow!("no session {id}"))?;
    r.d.kill_server()?;
    let killed = cpam_tests::now_millis();
    let rec = format!("{id}.0");
    // The next start seals what the killed server wrote.
    r.d.restart_server()?;
    let verified = cpam_tests::wait_until(Duration::from_secs(20), "the recording sealed", || {
        r.d.admin_ok(&["recordings", "verify", &rec]).ok()
    })?;
    assert!(verified.contains("verified: incomplete"), "{verified}");
    let file = r.d.data_dir.join("recordings").join(format!("{rec}.cast"));
    let (_, events) = read_rdp(std::io::BufReader::new(std::fs::File::open(&file)?))?;
    // The target drew all along: what passed the proxy up to a second
    // before the kill is in the recording.
    let last = events.last().map_or(0.0, |e| e.t);
    let cut = killed - started;
    assert!(
        (last * 1000.0) as i64 >= cut - 1000,
        "the recording ends at {last:.3} s; the server was killed at {:.3} s",
        cut as f64 / 1000.0
    );
    let player = RdpPlayer::new(events)?;
    let frame = player.frame_at(player.duration());
    std::fs::write(
        cpam_tests::rdp::artifacts_dir()?.join("killed-recording.png"),
        frame.to_png()?,
    )?;
    let p = frame.rgb(512, 384).unwrap_or_default();
    let shown = (0..16).rposition(|i| colour(i).iter().zip(p).all(|(a, b)| a.abs_diff(b) <= 10));
    assert!(
        shown.is_some(),
        "the last frame shows {p:?}, no painted colour ({} updates, {} not decoded)",
        frame.updates,
        frame.skipped
    );
    let _ = client.kill();
    Ok(())
}

#[test]
fn a_checkout_running_out_ends_the_rdp_session_within_a_second_with_why() -> anyhow::Result<()> {
    let r = Rdp::start()?;
    r.d.run("checkin", r.d.connect_cmd(&["checkin", "rdp1"])?)?
        .ok("cpam-connect checkin")?;
    let out =
        r.d.run(
            "checkout-short",
            r.d.connect_cmd(&["checkout", "rdp1", "--for", "12s", "--json"])?,
        )?
        .ok("cpam-connect checkout --for 12s")?;
    let checkout = parse_json(&out.stdout)?;
    let expires = json_millis(&checkout, "expires_at")?;
    let (mut client, id) = r.full_session()?;
    let ended = r.d.wait_session_ended(&id)?;
    assert_eq!(ended["end_reason"], "expired", "{ended:#}");
    let at = json_millis(&ended, "ended_at")?;
    assert!(
        (expires..=expires + 1000).contains(&at),
        "the session ended {} ms after the checkout's end",
        at - expires
    );
    let status = client.wait_timeout(Duration::from_secs(5))?;
    assert!(status.is_some(), "xfreerdp still runs after the expiry");
    // The vendor's client reads why: the session's time limit.
    assert!(
        client.logs().contains("ERRINFO_LOGON_TIMEOUT"),
        "xfreerdp did not say why: {}",
        client.logs()
    );
    let audit = r.d.audit()?;
    assert!(
        audit.iter().any(|x| x["action"] == "session.end"
            && x.to_string().contains(&id)
            && x.to_string().contains("expired")),
        "{audit:#?}"
    );
    r.assert_canary_nowhere(&client.logs())?;
    Ok(())
}
