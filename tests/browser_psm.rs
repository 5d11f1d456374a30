//! The privileged SSH session in the console: an administrator watches a
//! live session through the SSH proxy in Chromium (joining mid-session,
//! then seeing what follows), the watch socket refuses a foreign origin,
//! the session's recording replays in the console, and the target
//! account's password reaches none of the frames or pages the browser got;
//! a vendor runs the same privileged session in the browser terminal.

use cpam_tests::console::{ADMIN, ADMIN_PASSWORD, Console};
use cpam_tests::cpam::SSHD_PORT;
use cpam_tests::process::Child;
use cpam_tests::web::WebClient;
use serde_json::{Value, json};

use super::{LIVE, browser, sign_in, t};

const VENDOR: &str = "vera";
const LOGIN: &str = "vera login password 1";
const MASTER: &str = "vera master password 1";

/// A console deployment with the privileged SSH service `db1`: a target
/// account whose password (the canary) only the vault knows, a vendor
/// with a grant, a master password and a checkout, and `cpam-connect
/// forward db1`. Returns the forward's port and the canary.
fn privileged(c: &mut Console) -> anyhow::Result<(u16, String)> {
    let canary = format!("canary-web-{}", cpam_tests::now_millis());
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let account = format!("cpamweb{}x{n}", std::process::id() % 100_000);
    cpam_tests::sshd::password_account(&account, &canary)?;
    c.admin(&["customer", "add", "acme"], None)?;
    let gk: Value = serde_json::from_str(&c.admin(
        &["gatekeeper", "add", "--customer", "acme", "gk1", "--json"],
        None,
    )?)?;
    let code = gk["code"].as_str().unwrap_or_default().to_string();
    c.register_gatekeeper(&code)?;
    c.run_gatekeeper()?;
    let target = format!("127.0.0.1:{SSHD_PORT}");
    c.admin(
        &[
            "service",
            "add",
            "--customer",
            "acme",
            "db1",
            "--target",
            &target,
            "--kind",
            "ssh",
        ],
        None,
    )?;
    c.admin(
        &[
            "user",
            "add",
            VENDOR,
            "--role",
            "Vendor",
            "--password-stdin",
        ],
        Some(LOGIN),
    )?;
    c.admin(
        &[
            "grant",
            "add",
            "--user",
            VENDOR,
            "--customer",
            "acme",
            "--service",
            "db1",
        ],
        None,
    )?;
    c.admin(
        &[
            "vault",
            "set",
            "db1@acme",
            "--username",
            &account,
            "--password-stdin",
        ],
        Some(&canary),
    )?;
    let mut vendor = WebClient::new(&c.url, &std::fs::read(&c.cert)?)?;
    vendor.login(VENDOR, LOGIN)?.expect(200, "vendor login")?;
    vendor
        .send(
            "PUT",
            "/api/v1/me/master-password",
            Some(&json!({ "current": LOGIN, "new": MASTER })),
        )?
        .expect(204, "master password")?;
    let creds = vendor.get("/api/v1/credentials")?;
    let service_id = creds[0]["service_id"].as_str().unwrap_or_default();
    vendor
        .send(
            "POST",
            "/api/v1/checkouts",
            Some(&json!({ "service_id": service_id })),
        )?
        .expect(201, "checkout")?;
    let profile = c.path().join("vera.cpam-profile.json");
    c.admin(
        &[
            "profile",
            "export",
            "--user",
            VENDOR,
            "--gatekeeper",
            "gk1",
            "--out",
            &profile.to_string_lossy(),
            "--server-address",
            &c.ssh_addr.to_string(),
        ],
        None,
    )?;
    let port = c.forward(&profile, "db1")?;
    Ok((port, canary))
}

/// Stock `ssh -tt` through the forward, answering the master password
/// prompt through `SSH_ASKPASS`, running `remote` on the target.
fn ssh(c: &Console, port: u16, remote: &str) -> anyhow::Result<std::process::Command> {
    use std::os::unix::fs::PermissionsExt;
    let askpass = c.path().join("askpass");
    std::fs::write(&askpass, format!("#!/bin/sh\nprintf '%s\\n' '{MASTER}'\n"))?;
    std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700))?;
    let mut cmd = std::process::Command::new("ssh");
    cmd.args(["-tt", "-F", "/dev/null"])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args(["-o", "PreferredAuthentications=keyboard-interactive"])
        .args(["-o", "NumberOfPasswordPrompts=1", "-o", "ConnectTimeout=10"])
        .args(["-p", &port.to_string(), "anyone@127.0.0.1", remote])
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0");
    Ok(cmd)
}

/// Records, in the page, the text of every WebSocket message it receives.
const COLLECT_FRAMES: &str = "\
    if (!window.__cpamFrames) {\
      window.__cpamFrames = [];\
      const W = window.WebSocket;\
      window.WebSocket = class extends W {\
        constructor(...a) {\
          super(...a);\
          this.addEventListener('message', (e) => window.__cpamFrames.push(\
            typeof e.data === 'string' ? e.data : new TextDecoder().decode(e.data)));\
        }\
      };\
    }";

fn watch_upgrade(c: &Console, admin: &WebClient, id: &str, origin: &str) -> anyhow::Result<u16> {
    let r = admin
        .request("GET", &format!("/api/v1/sessions/{id}/watch"), None, false)?
        .header("Origin", origin)
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .map_err(|e| anyhow::anyhow!("{e}\n{}", c.logs()))?;
    Ok(r.status().as_u16())
}

#[test]
fn an_admin_watches_a_privileged_session_live_and_replays_its_recording() -> anyhow::Result<()> {
    let mut c = Console::start_with_passwords()?;
    let (port, canary) = privileged(&mut c)?;
    let go = std::path::PathBuf::from(format!("/tmp/cpam-watch-go-{}", cpam_tests::now_millis()));
    let remote = format!(
        "echo psm-$((6*7)); while [ ! -e {} ]; do sleep 0.2; done; echo after-$((5*5)); exec sleep 600",
        go.display()
    );
    let mut session = Child::spawn("vendor-ssh", ssh(&c, port, &remote)?, c.path())?;
    cpam_tests::wait_until(LIVE, "the privileged session to print", || {
        session.stdout().contains("psm-42").then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}\n{}", session.logs(), c.logs()))?;

    let mut b = browser(&c, "psm-watch")?;
    sign_in(&b, &c.url, ADMIN, ADMIN_PASSWORD)?;
    b.execute(COLLECT_FRAMES, json!([]))?;
    b.click(&t("nav-sessions"))?;
    b.find_within(
        &format!("[data-test=session-row][data-user={VENDOR}]"),
        LIVE,
    )?;
    let id = b.execute(
        "return document.querySelector('[data-test=session-row]').dataset.id;",
        json!([]),
    )?;
    let id = id.as_str().unwrap_or_default().to_string();

    // Joining mid-session: the screen already shows what was printed.
    b.click(&t("session-watch"))?;
    if let Err(e) = b.wait_text(&t("watch-screen"), "psm-42", LIVE) {
        let debug = b.execute(
            "const s = document.querySelector('[data-test=watch-screen]');\
             return [JSON.stringify(window.__cpamFrames || []), s ? s.outerHTML.slice(0, 3000) : ''];",
            json!([]),
        )?;
        anyhow::bail!("{e}\n{debug}\n{}", b.logs());
    }
    b.screenshot("joined")?;
    // What the session prints next arrives live.
    std::fs::write(&go, b"go")?;
    b.wait_text(&t("watch-screen"), "after-25", LIVE)?;
    b.screenshot("live")?;

    // The watch socket: only from the console's own origin.
    let mut admin = WebClient::new(&c.url, &std::fs::read(&c.cert)?)?;
    admin
        .login(ADMIN, ADMIN_PASSWORD)?
        .expect(200, "admin login")?;
    assert_eq!(watch_upgrade(&c, &admin, &id, "https://evil.example")?, 403);
    assert_eq!(watch_upgrade(&c, &admin, &id, &c.url)?, 101);

    // Terminated: the live view says why.
    admin
        .send(
            "POST",
            &format!("/api/v1/sessions/{id}/terminate"),
            Some(&json!({ "reason": "watched enough" })),
        )?
        .expect(204, "terminate")?;
    b.wait_text(&t("watch-status"), "watched enough", LIVE)?;
    b.screenshot("ended")?;
    session.wait_timeout(LIVE)?;
    c.extra.push(session);
    let _ = std::fs::remove_file(&go);

    // The recording replays in the console.
    b.click(&t("nav-sessions"))?;
    b.click(&format!(
        "[data-test=history-row][data-id=\"{id}\"] [data-test=session-recordings]"
    ))?;
    b.find_within(&t("recording-row"), LIVE)?;
    b.click(&t("recording-replay"))?;
    b.wait_text(&t("replay-screen"), "psm-42", LIVE)
        .map_err(|e| anyhow::anyhow!("{e}\n{}", b.logs()))?;
    b.screenshot("replay")?;

    let frames = b.execute("return window.__cpamFrames || [];", json!([]))?;
    let frames: Vec<String> = frames
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        frames.iter().any(|f| f.contains("psm-42")),
        "the page received no frame with the session's text: {frames:?}"
    );
    assert!(
        !frames.iter().any(|f| f.contains(&canary)),
        "a WebSocket frame carried the target's password"
    );
    let html = b.execute("return document.documentElement.outerHTML;", json!([]))?;
    assert!(!html.as_str().unwrap_or_default().contains(&canary));

    let audit = c.admin(&["audit", "list", "--json"], None)?;
    for action in ["session.watch.start", "session.watch.stop"] {
        assert!(audit.contains(action), "{action} not audited");
    }
    Ok(())
}

fn frames(b: &cpam_tests::browser::Browser) -> anyhow::Result<Vec<String>> {
    let v = b.execute("return window.__cpamFrames || [];", json!([]))?;
    Ok(v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

#[test]
fn a_vendor_runs_a_privileged_session_in_the_browser_terminal() -> anyhow::Result<()> {
    let mut c = Console::start_with_passwords()?;
    let (_port, canary) = privileged(&mut c)?;
    let mut b = browser(&c, "psm-terminal")?;
    sign_in(&b, &c.url, VENDOR, LOGIN)?;
    b.execute(COLLECT_FRAMES, json!([]))?;
    b.click(&t("nav-credentials"))?;
    b.wait_text(&t("credentials-table"), "db1", LIVE)?;

    // A wrong master password: said in the terminal, audited, no session.
    b.click(&t("connect-in-browser"))?;
    b.fill(&t("terminal-master"), "not the master password")?;
    b.click(&t("terminal-connect"))?;
    b.wait_text(&t("terminal-status"), "master password", LIVE)
        .map_err(|e| anyhow::anyhow!("{e}\n{}", c.logs()))?;
    b.screenshot("wrong-master")?;
    b.click(&t("terminal-close"))?;

    b.click(&t("connect-in-browser"))?;
    b.fill(&t("terminal-master"), MASTER)?;
    b.click(&t("terminal-connect"))?;
    b.wait_text(&t("terminal-status"), "Connected", LIVE)?;
    // Typed once the shell is up (its prompt ends in `$ `), as a person
    // types: into the terminal's focused input, then Enter.
    b.wait_text(&t("terminal-screen"), "$", LIVE)
        .map_err(|e| anyhow::anyhow!("{e}\n{}", c.logs()))?;
    b.execute(
        "document.querySelector('[data-test=terminal-screen] textarea').focus();",
        json!([]),
    )?;
    b.cdp("Input.insertText", json!({ "text": "echo web-$((6*7))" }))?;
    for kind in ["keyDown", "keyUp"] {
        b.cdp(
            "Input.dispatchKeyEvent",
            json!({ "type": kind, "key": "Enter", "code": "Enter",
                    "windowsVirtualKeyCode": 13, "text": if kind == "keyDown" { "\r" } else { "" } }),
        )?;
    }
    b.wait_text(&t("terminal-screen"), "web-42", LIVE)
        .map_err(|e| anyhow::anyhow!("{e}\n{}", c.logs()))?;
    b.screenshot("web-42")?;

    let mut admin = WebClient::new(&c.url, &std::fs::read(&c.cert)?)?;
    admin
        .login(ADMIN, ADMIN_PASSWORD)?
        .expect(200, "admin login")?;
    let live = admin.get("/api/v1/sessions?state=active")?;
    let id = live[0]["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(live[0]["user"], VENDOR, "{live}");
    admin
        .send(
            "POST",
            &format!("/api/v1/sessions/{id}/terminate"),
            Some(&json!({ "reason": "browser session over" })),
        )?
        .expect(204, "terminate")?;
    b.wait_text(&t("terminal-screen"), "browser session over", LIVE)?;
    b.screenshot("terminated")?;

    let frames = frames(&b)?;
    assert!(frames.iter().any(|f| f.contains("web-42")), "{frames:?}");
    assert!(
        !frames.iter().any(|f| f.contains(&canary)),
        "a WebSocket frame carried the target's password"
    );
    let html = b.execute("return document.documentElement.outerHTML;", json!([]))?;
    assert!(!html.as_str().unwrap_or_default().contains(&canary));
    let audit = c.admin(&["audit", "list", "--json"], None)?;
    assert!(audit.contains("session.start"), "no session audited");
    assert!(
        audit.contains("master_password.failure"),
        "the wrong master password was not audited"
    );
    Ok(())
}
