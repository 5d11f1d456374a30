//! Remote desktops end to end with real peers: `xfreerdp` in the vendor
//! namespace, `freerdp-shadow-cli` (NLA, a SAM file) on a painted Xvfb in
//! the customer namespace.
//!
//! - Desktop Sharing: `cpam-connect desktop` forwards and launches
//!   `xfreerdp`, which logs in to the target with the target's own account
//!   (a raw tunnel, audited as a session).
//! - RDP with credential injection: `xfreerdp` through `cpam-connect
//!   forward` logs in with a one-time proxy credential; the server logs in
//!   to the target with the vault's password, which the vendor never sees.

use std::time::{Duration, Instant};

use cpam_tests::cpam::{Deployment, RDP_PORT};
use cpam_tests::rdp::{Display, RdpTarget};
use cpam_tests::rdp_psm::Rdp;
use serde_json::Value;

#[test]
fn desktop_sharing_launches_xfreerdp_through_the_tunnel_as_an_audited_session() -> anyhow::Result<()>
{
    let d = Deployment::start()?;
    let target = format!("127.0.0.1:{RDP_PORT}");
    d.admin_ok(&[
        "service",
        "add",
        "--customer",
        "acme",
        "desk",
        "--target",
        &target,
        "--kind",
        "desktop-sharing",
    ])?;
    d.admin_ok(&[
        "grant",
        "add",
        "--user",
        "vendor",
        "--customer",
        "acme",
        "--service",
        "desk",
    ])?;
    let rdp = RdpTarget::start(&d.topo.customer, d.path(), RDP_PORT, "alice", "Sh4red!desk")?;
    let screen = Display::start(Some(&d.topo.vendor), d.path(), "vendor")?;
    let mut desktop = d.connect_cmd(&[
        "desktop",
        "desk",
        "--",
        "/u:alice",
        "/p:Sh4red!desk",
        "/cert:ignore",
        "+auth-only",
    ])?;
    desktop.env("DISPLAY", screen.env());
    let out = d.run("connect-desktop", desktop)?;
    assert!(
        out.success(),
        "xfreerdp through `cpam-connect desktop` failed ({}): {}\n{}\n{}",
        out.status,
        out.stderr,
        rdp.logs(),
        d.logs()
    );
    assert!(
        out.stdout
            .contains("cpam-connect forwarding desk on 127.0.0.1:")
    );
    // A wrong password is the target's to refuse: the tunnel is raw.
    let mut wrong = d.connect_cmd(&[
        "desktop",
        "desk",
        "--",
        "/u:alice",
        "/p:nope",
        "/cert:ignore",
        "+auth-only",
    ])?;
    wrong.env("DISPLAY", screen.env());
    assert!(!d.run("connect-desktop-wrong", wrong)?.success());
    let sessions: Vec<Value> = d
        .sessions()?
        .into_iter()
        .filter(|s| s["service_name"] == "desk")
        .collect();
    assert!(sessions.len() >= 2, "{sessions:#?}");
    for s in &sessions {
        assert_eq!(s["protocol"], "tcp", "{s}");
    }
    let audit = d.audit()?;
    let starts = audit
        .iter()
        .filter(|r| r["action"] == "session.start" && r["detail"].to_string().contains("desk"))
        .count();
    assert!(starts >= 2, "audit: {audit:#?}");
    d.expect_audit_intact()?;
    drop(rdp);
    Ok(())
}

#[test]
fn xfreerdp_reaches_the_target_with_the_injected_credential_and_never_sees_it() -> anyhow::Result<()>
{
    let r = Rdp::start()?;
    let (user, password) = r.credential_ok()?;
    assert_eq!(user, "vendor");
    assert_ne!(password, r.canary);
    let out = r.d.run(
        "xfreerdp-auth",
        r.xfreerdp(&user, &password, &["+auth-only"])?,
    )?;
    assert!(
        out.success(),
        "xfreerdp through the RDP proxy failed ({}): {}\n{}",
        out.status,
        out.stderr,
        r.logs()
    );
    let audit = r.d.audit()?;
    let login = audit
        .iter()
        .find(|x| x["action"] == "session.rdp.target_login")
        .unwrap_or_else(|| panic!("no target login audited: {audit:#?}"));
    assert_eq!(login["detail"]["username"], "alice");
    assert!(
        audit
            .iter()
            .any(|x| x["action"] == "session.rdp.certificate_pinned")
    );
    // The credential was for one session.
    let again = r.d.run(
        "xfreerdp-reuse",
        r.xfreerdp(&user, &password, &["+auth-only"])?,
    )?;
    assert!(!again.success(), "a one-time credential worked twice");
    let sessions: Vec<Value> =
        r.d.sessions()?
            .into_iter()
            .filter(|s| s["service_name"] == "rdp1")
            .collect();
    assert!(
        sessions.iter().all(|s| s["protocol"] == "rdp"),
        "{sessions:#?}"
    );
    r.assert_canary_nowhere(&format!(
        "{}{}{}{}",
        out.stdout, out.stderr, again.stdout, again.stderr
    ))?;
    r.d.expect_audit_intact()?;
    Ok(())
}

#[test]
fn a_wrong_proxy_credential_a_wrong_master_password_and_a_non_nla_client_are_refused()
-> anyhow::Result<()> {
    let r = Rdp::start()?;
    // No credential without the master password.
    let out = r.credential("not the master password")?;
    assert!(
        !out.success(),
        "a wrong master password issued a credential"
    );
    // A wrong proxy password: NLA fails at the proxy, the target is never
    // logged in to.
    let (user, _password) = r.credential_ok()?;
    let out = r.d.run(
        "xfreerdp-wrong",
        r.xfreerdp(&user, "wrong-password", &["+auth-only"])?,
    )?;
    assert!(!out.success(), "a wrong proxy credential got through");
    let audit = r.d.audit()?;
    assert!(
        audit
            .iter()
            .any(|x| x["action"] == "session.rdp.proxy_login_failed"),
        "{audit:#?}"
    );
    assert!(
        !audit
            .iter()
            .any(|x| x["action"] == "session.rdp.target_login")
    );
    // A client without NLA (TLS security only) is refused before the target.
    let (user, password) = r.credential_ok()?;
    let out = r.d.run(
        "xfreerdp-tls",
        r.xfreerdp(&user, &password, &["/sec:tls", "+auth-only"])?,
    )?;
    assert!(!out.success(), "a client without NLA got through");
    let audit = r.d.audit()?;
    assert!(
        audit
            .iter()
            .any(|x| x["action"] == "session.rdp.client_refused"),
        "{audit:#?}"
    );
    r.assert_canary_nowhere(&format!("{}{}", out.stdout, out.stderr))?;
    Ok(())
}

#[test]
fn terminate_ends_a_running_rdp_session_within_a_second() -> anyhow::Result<()> {
    let r = Rdp::start()?;
    let (user, password) = r.credential_ok()?;
    let mut client = r.d.spawn(
        "xfreerdp-full",
        r.xfreerdp(&user, &password, &["/gdi:sw", "/size:1024x768"])?,
    )?;
    let id = r.d.wait_live_session()?;
    cpam_tests::wait_until(Duration::from_secs(20), "the target login", || {
        r.d.audit()
            .ok()?
            .iter()
            .any(|x| x["action"] == "session.rdp.target_login")
            .then_some(())
    })?;
    // The desktop flows for a moment; the client stays connected.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        client.is_running(),
        "xfreerdp left the session\n{}",
        r.logs()
    );
    let at = Instant::now();
    r.d.admin_ok(&["sessions", "terminate", &id])?;
    let ended = r.d.wait_session_ended(&id)?;
    let status = client
        .wait_timeout(Duration::from_secs(5))?
        .ok_or_else(|| anyhow::anyhow!("xfreerdp still runs 5 s after terminate"))?;
    let took = at.elapsed();
    assert_eq!(ended["end_reason"], "terminated_by");
    assert!(
        took < Duration::from_secs(2),
        "xfreerdp ended {took:?} after terminate"
    );
    let _ = status;
    r.assert_canary_nowhere(&client.logs())?;
    Ok(())
}

/// Where decoded frames are saved: `<target>/test-artifacts/rdp`.
fn artifacts_dir() -> anyhow::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    let target = exe
        .ancestors()
        .nth(3)
        .ok_or_else(|| anyhow::anyhow!("the test runs outside a cargo target directory"))?;
    let dir = target.join("test-artifacts").join("rdp");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[test]
fn the_targets_desktop_is_found_in_a_frame_decoded_from_the_recording() -> anyhow::Result<()> {
    use cpam_core::record::{RdpPlayer, read_rdp};
    let r = Rdp::start()?;
    let (user, password) = r.credential_ok()?;
    let mut client = r.d.spawn(
        "xfreerdp-full",
        r.xfreerdp(&user, &password, &["/gdi:sw", "/size:1024x768"])?,
    )?;
    let id = r.d.wait_live_session()?;
    cpam_tests::wait_until(Duration::from_secs(20), "the target login", || {
        r.d.audit()
            .ok()?
            .iter()
            .any(|x| x["action"] == "session.rdp.target_login")
            .then_some(())
    })?;
    // The desktop is drawn for a few seconds, then the vendor leaves.
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        client.is_running(),
        "xfreerdp left the session\n{}",
        r.logs()
    );
    client.kill()?;
    let ended = r.d.wait_session_ended(&id)?;
    assert_eq!(ended["end_reason"], "completed", "{ended}");
    let rec = format!("{id}.0");
    // The recorder seals it once the session ended.
    let verified = cpam_tests::wait_until(Duration::from_secs(10), "the recording sealed", || {
        r.d.admin_ok(&["recordings", "verify", &rec]).ok()
    })?;
    assert!(verified.contains("verified: complete"), "{verified}");
    let file = r.d.data_dir.join("recordings").join(format!("{rec}.cast"));
    let (_, events) = read_rdp(std::io::BufReader::new(std::fs::File::open(&file)?))?;
    let ups = events.iter().filter(|e| e.up).count();
    let downs = events.len() - ups;
    assert!(
        ups > 5 && downs > 5,
        "{ups} client PDUs, {downs} target PDUs recorded"
    );
    let player = RdpPlayer::new(events)?;
    let frame = player.frame_at(player.duration());
    let png = frame.to_png()?;
    std::fs::write(artifacts_dir()?.join("desktop-from-recording.png"), &png)?;
    assert_eq!((frame.width, frame.height), (1024, 768));
    let close = |p: [u8; 3]| {
        p.iter()
            .zip(cpam_tests::rdp::DESKTOP_RGB)
            .all(|(a, b)| a.abs_diff(b) <= 8)
    };
    let samples = [(100, 100), (512, 384), (900, 700)];
    for (x, y) in samples {
        let p = frame.rgb(x, y).unwrap_or_default();
        assert!(
            close(p),
            "pixel ({x}, {y}) is {p:?}, the desktop is {:?}; {} updates, {} not decoded ({:?})",
            cpam_tests::rdp::DESKTOP_RGB,
            frame.updates,
            frame.skipped,
            frame.last_error
        );
    }
    r.assert_canary_nowhere(&client.logs())?;
    Ok(())
}

#[test]
fn keys_and_clicks_typed_in_xfreerdp_are_the_recordings_input_track() -> anyhow::Result<()> {
    use cpam_core::record::{InputEvent, PointerButton, input_track, read_rdp};
    let r = Rdp::start()?;
    let (mut client, id) = r.full_session()?;
    // Let the client settle (its first synchronize and pointer PDUs).
    std::thread::sleep(Duration::from_secs(2));
    let xdotool = |args: &[&str]| -> anyhow::Result<()> {
        let cmd = cpam_tests::rdp::xdotool(&r.d.topo.vendor, &r.screen, args)?;
        r.d.run("xdotool", cmd)?
            .ok(&format!("xdotool {}", args.join(" ")))?;
        Ok(())
    };
    // No window manager: the window under the pointer has the focus.
    xdotool(&["mousemove", "300", "200"])?;
    std::thread::sleep(Duration::from_millis(300));
    let typed = Instant::now();
    // a, b, c: set-1 scancodes 0x1e, 0x30, 0x2e.
    xdotool(&["key", "--delay", "100", "a", "b", "c"])?;
    std::thread::sleep(Duration::from_millis(1500));
    let clicked = typed.elapsed().as_secs_f64();
    xdotool(&[
        "mousemove",
        "400",
        "250",
        "click",
        "1",
        "click",
        "3",
        "click",
        "4",
    ])?;
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        client.is_running(),
        "xfreerdp left the session\n{}",
        r.logs()
    );
    client.kill()?;
    r.d.wait_session_ended(&id)?;
    let rec = format!("{id}.0");
    cpam_tests::wait_until(Duration::from_secs(10), "the recording sealed", || {
        r.d.admin_ok(&["recordings", "verify", &rec]).ok()
    })?;

    let file = r.d.data_dir.join("recordings").join(format!("{rec}.cast"));
    let (_, pdus) = read_rdp(std::io::BufReader::new(std::fs::File::open(&file)?))?;
    let track = input_track(&pdus);
    let shown: Vec<String> = track
        .events
        .iter()
        .map(|e| format!("{:.3} {}", e.t, e.event.describe()))
        .collect();
    let shown = shown.join("\n");
    assert_eq!(track.skipped, 0, "{:?}\n{shown}", track.last_error);
    // In time order.
    assert!(track.events.windows(2).all(|w| w[0].t <= w[1].t), "{shown}");
    // The keys, each pressed then released, in the order typed.
    let keys: Vec<(u16, bool, f64)> = track
        .events
        .iter()
        .filter_map(|e| match e.event {
            InputEvent::Key { scancode, down } => Some((scancode, down, e.t)),
            _ => None,
        })
        .collect();
    let typed_keys: Vec<(u16, bool)> = keys
        .iter()
        .filter(|k| [0x1e, 0x30, 0x2e].contains(&k.0))
        .map(|k| (k.0, k.1))
        .collect();
    assert_eq!(
        typed_keys,
        vec![
            (0x1e, true),
            (0x1e, false),
            (0x30, true),
            (0x30, false),
            (0x2e, true),
            (0x2e, false)
        ],
        "{shown}"
    );
    let key_t = |code: u16| {
        keys.iter()
            .find(|k| k.0 == code && k.1)
            .map_or(f64::NAN, |k| k.2)
    };
    // 100 ms between the keys (xdotool's delay), give or take.
    let (ta, tc) = (key_t(0x1e), key_t(0x2e));
    assert!(
        (0.1..1.5).contains(&(tc - ta)),
        "a at {ta}, c at {tc}\n{shown}"
    );
    // The pointer reached (300, 200), then (400, 250) where it clicked.
    let at = |x: u16, y: u16| {
        track
            .events
            .iter()
            .find(|e| e.event == InputEvent::Pointer { x, y })
            .map(|e| e.t)
    };
    let moved = at(300, 200).ok_or_else(|| anyhow::anyhow!("no move to 300,200\n{shown}"))?;
    assert!(
        moved <= ta,
        "the pointer moved at {moved}, a at {ta}\n{shown}"
    );
    let buttons: Vec<(PointerButton, bool, f64)> = track
        .events
        .iter()
        .filter_map(|e| match e.event {
            InputEvent::Button {
                x: 400,
                y: 250,
                button,
                down,
            } => Some((button, down, e.t)),
            _ => None,
        })
        .collect();
    assert_eq!(
        buttons.iter().map(|b| (b.0, b.1)).collect::<Vec<_>>(),
        vec![
            (PointerButton::Left, true),
            (PointerButton::Left, false),
            (PointerButton::Right, true),
            (PointerButton::Right, false)
        ],
        "{shown}"
    );
    // The click came about as long after the keys as it did in the test.
    let gap = buttons[0].2 - ta;
    assert!(
        (clicked - 0.5..clicked + 1.0).contains(&gap),
        "the click {gap:.3} s after `a`, sent {clicked:.3} s after\n{shown}"
    );
    let wheel = track.events.iter().find_map(|e| match e.event {
        InputEvent::Wheel {
            delta, horizontal, ..
        } => Some((delta, horizontal, e.t)),
        _ => None,
    });
    let wheel = wheel.ok_or_else(|| anyhow::anyhow!("no wheel turn\n{shown}"))?;
    assert!(
        wheel.0 > 0 && !wheel.1 && wheel.2 >= buttons[3].2,
        "wheel {wheel:?}\n{shown}"
    );

    // The CLI gives the same track.
    let cli = r.d.admin_json(&["recordings", "input", &rec])?;
    assert_eq!(cli, serde_json::to_value(&track)?);
    let human = r.d.admin_ok(&["recordings", "input", &rec])?;
    assert!(
        human.contains("key 0x1e down") && human.contains("button left down at 400,250"),
        "{human}"
    );
    // A terminal recording or an unknown one is refused by name.
    let out = r.d.admin(&["recordings", "input", &format!("{id}.7")])?;
    assert!(
        !out.status.success() && out.stderr.contains(&format!("{id}.7")),
        "{}",
        out.stderr
    );
    Ok(())
}
