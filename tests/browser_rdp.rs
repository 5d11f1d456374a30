//! RDP sessions in the console: an administrator watches a live RDP
//! session (`xfreerdp` through the injecting proxy to `freerdp-shadow-cli`)
//! on a canvas in Chromium, sees the desktop change, a watcher outside the
//! customer's scope is refused, the session is terminated from the
//! console, and its recording replays on a canvas; pixel checks of the
//! known picture, screenshots under `target/test-artifacts/browser/`.

use std::process::Command;

use cpam_tests::bins::bin_path;
use cpam_tests::browser::Browser;
use cpam_tests::console::{ADMIN, ADMIN_PASSWORD, Console};
use cpam_tests::cpam::RDP_PORT;
use cpam_tests::process::{Child, run_with_input};
use cpam_tests::rdp::{DESKTOP_RGB, Display, RdpTarget, paint, xfreerdp_here};
use cpam_tests::web::WebClient;
use serde_json::{Value, json};

use super::{LIVE, browser, sign_in, t};

pub(super) const VENDOR: &str = "rita";
pub(super) const LOGIN: &str = "rita login password 1";
pub(super) const MASTER: &str = "rita master password 1";
/// The colour the desktop is painted mid-session.
const REPAINT: &str = "#22aa33";
const REPAINT_RGB: [u8; 3] = [0x22, 0xaa, 0x33];

/// Records, in the page, every WebSocket message it receives as text.
pub(super) const COLLECT_FRAMES: &str = "\
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

/// A console deployment with the RDP service `rdp1` (kind `rdp`): the
/// target's password (the canary) only in the vault, a vendor with a
/// grant, a master password and a checkout, `cpam-connect forward rdp1`.
/// Returns the target, the forward's port, the vendor's profile and the
/// canary.
pub(super) fn rdp_console(
    c: &mut Console,
) -> anyhow::Result<(RdpTarget, u16, std::path::PathBuf, String)> {
    let canary = format!("Rdp-web-canary-{}", cpam_tests::now_millis());
    c.admin(&["customer", "add", "acme"], None)?;
    let gk: Value = serde_json::from_str(&c.admin(
        &["gatekeeper", "add", "--customer", "acme", "gk1", "--json"],
        None,
    )?)?;
    let code = gk["code"].as_str().unwrap_or_default().to_string();
    c.register_gatekeeper(&code)?;
    c.run_gatekeeper()?;
    let target = RdpTarget::start(&c.link.ns, c.path(), RDP_PORT, "alice", &canary)?;
    let addr = format!("127.0.0.1:{RDP_PORT}");
    c.admin(
        &[
            "service",
            "add",
            "--customer",
            "acme",
            "rdp1",
            "--target",
            &addr,
            "--kind",
            "rdp",
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
            "rdp1",
        ],
        None,
    )?;
    c.admin(
        &[
            "vault",
            "set",
            "rdp1@acme",
            "--username",
            "alice",
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
    let profile = c.path().join("rita.cpam-profile.json");
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
    let port = c.forward(&profile, "rdp1")?;
    Ok((target, port, profile, canary))
}

/// A one-time proxy credential's password from `cpam-connect rdp-credential`.
fn one_time_password(c: &Console, profile: &std::path::Path) -> anyhow::Result<String> {
    let mut cmd = Command::new(bin_path("cpam-connect")?);
    cmd.arg("--profile")
        .arg(profile)
        .args(["rdp-credential", "rdp1", "--json"]);
    let out = run_with_input(
        "rdp-credential",
        cmd,
        c.path(),
        LIVE,
        format!("{MASTER}\n").as_bytes(),
    )?
    .ok("cpam-connect rdp-credential")?;
    let v: Value = serde_json::from_str(&out.stdout)?;
    Ok(v["password"].as_str().unwrap_or_default().to_string())
}

/// The canvas `test`'s pixel at (x, y) and how many images it drew.
fn pixel(b: &Browser, test: &str, x: u32, y: u32) -> anyhow::Result<([u8; 3], u64)> {
    let v = b.execute(
        "const c = document.querySelector(`[data-test=${arguments[0]}]`);\
         if (!c || c.width <= arguments[1] || c.height <= arguments[2]) return null;\
         const d = c.getContext('2d').getImageData(arguments[1], arguments[2], 1, 1).data;\
         return [d[0], d[1], d[2], Number(c.dataset.drawn || 0)];",
        json!([test, x, y]),
    )?;
    let n = |i: usize| v[i].as_u64().unwrap_or(0);
    let c = |i: usize| u8::try_from(n(i)).unwrap_or(0);
    Ok(([c(0), c(1), c(2)], n(3)))
}

fn close(p: [u8; 3], want: [u8; 3]) -> bool {
    p.iter().zip(want).all(|(a, b)| a.abs_diff(b) <= 8)
}

/// Waits until the canvas `test` shows `want` at a few points.
pub(super) fn wait_canvas(
    b: &Browser,
    test: &str,
    want: [u8; 3],
    what: &str,
) -> anyhow::Result<()> {
    wait_canvas_within(b, test, want, what, LIVE)
}

/// Replay decodes the whole recording once, for its first frame (later
/// seeks start from keyframes), which in a debug build next to the rest of
/// the suite can take far longer than a live repaint.
const REPLAY: std::time::Duration = std::time::Duration::from_secs(120);

fn wait_canvas_within(
    b: &Browser,
    test: &str,
    want: [u8; 3],
    what: &str,
    within: std::time::Duration,
) -> anyhow::Result<()> {
    let mut last = ([0; 3], 0);
    let r = cpam_tests::wait_until(within, what, || {
        let points = [(100, 100), (512, 384), (900, 700)];
        for (x, y) in points {
            last = pixel(b, test, x, y).ok()?;
            if !close(last.0, want) {
                return None;
            }
        }
        Some(())
    });
    r.map_err(|e| {
        let page = b
            .execute(
                "const c = document.querySelector(`[data-test=${arguments[0]}]`);\
                 const s = document.querySelector('[data-test$=-status]');\
                 return [c ? JSON.stringify(c.dataset) : 'no canvas', s ? s.textContent : 'no status',\
                         JSON.stringify((window.__cpamFrames || []).map((f) => f.slice(0, 80)).slice(0, 5))];",
                json!([test]),
            )
            .unwrap_or_default();
        anyhow::anyhow!(
            "{e}: the canvas shows {:?} after {} images; {page}\n{}",
            last.0,
            last.1,
            b.logs()
        )
    })
}

pub(super) fn watch_upgrade(
    c: &Console,
    who: &WebClient,
    id: &str,
    origin: &str,
) -> anyhow::Result<u16> {
    let r = who
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
fn an_admin_watches_an_rdp_session_on_a_canvas_and_replays_its_recording() -> anyhow::Result<()> {
    let mut c = Console::start_with_passwords()?;
    let (target, port, profile, canary) = rdp_console(&mut c)?;
    let password = one_time_password(&c, &profile)?;
    let screen = Display::start(None, c.path(), "vendor")?;
    let client = xfreerdp_here(
        &screen,
        port,
        &[
            &format!("/u:{VENDOR}"),
            &format!("/p:{password}"),
            "/gdi:sw",
            "/size:1024x768",
        ],
    )?;
    let mut client = Child::spawn("xfreerdp", client, c.path())?;

    let mut admin = WebClient::new(&c.url, &std::fs::read(&c.cert)?)?;
    admin
        .login(ADMIN, ADMIN_PASSWORD)?
        .expect(200, "admin login")?;
    let id = cpam_tests::wait_until(LIVE, "the RDP session", || {
        let live = admin.get("/api/v1/sessions?state=active").ok()?;
        live.as_array()?
            .iter()
            .find(|s| s["protocol"] == "rdp")
            .and_then(|s| s["id"].as_str().map(str::to_string))
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}\n{}", client.logs(), c.logs()))?;

    // The live desktop is there to watch once the desktop is up (a plain
    // GET is then told to upgrade; until the RDP handshake is done the
    // session has no desktop yet and the answer is 409).
    let probe = || -> anyhow::Result<(u16, String)> {
        let r = admin
            .request("GET", &format!("/api/v1/sessions/{id}/watch"), None, false)?
            .header("Origin", &c.url)
            .send()?;
        Ok((r.status().as_u16(), r.text().unwrap_or_default()))
    };
    let mut last = (0, String::new());
    let ready = cpam_tests::wait_until(LIVE, "the live desktop", || {
        last = probe().ok()?;
        (last.0 != 409).then_some(())
    });
    assert!(ready.is_ok(), "watch: {last:?}\n{}", c.logs());
    assert_eq!(last.0, 400, "watch: {}\n{}", last.1, c.logs());

    let mut b = browser(&c, "rdp-watch")?;
    sign_in(&b, &c.url, ADMIN, ADMIN_PASSWORD)?;
    b.execute(COLLECT_FRAMES, json!([]))?;
    b.click(&t("nav-sessions"))?;
    b.find_within(&format!("[data-test=session-row][data-id=\"{id}\"]"), LIVE)?;
    b.click(&format!(
        "[data-test=session-row][data-id=\"{id}\"] [data-test=session-watch]"
    ))?;
    // Joining mid-session: the desktop as it is now.
    wait_canvas(&b, "watch-canvas", DESKTOP_RGB, "the desktop on the canvas")
        .map_err(|e| anyhow::anyhow!("{e}\n{}\n{}", target.logs(), c.logs()))?;
    b.screenshot("joined")?;
    // What changes next arrives live.
    paint(&target.display, REPAINT)?;
    wait_canvas(&b, "watch-canvas", REPAINT_RGB, "the repainted desktop")?;
    b.screenshot("live")?;

    // The watch socket: from the console's own origin, for a watcher in
    // the customer's scope only.
    assert_eq!(watch_upgrade(&c, &admin, &id, "https://evil.example")?, 403);
    let other = admin.post("/api/v1/customers", &json!({ "name": "other" }))?;
    let acme = admin
        .get("/api/v1/customers")?
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == "acme").cloned())
        .unwrap_or_default();
    for (name, customer) in [("outsider", &other), ("insider", &acme)] {
        let body = json!({ "name": name, "password": "watcher password 1",
                           "roles": ["Customer Administrator"], "customers": [customer["id"]] });
        admin.post("/api/v1/users", &body)?;
    }
    let mut outsider = WebClient::new(&c.url, &std::fs::read(&c.cert)?)?;
    outsider
        .login("outsider", "watcher password 1")?
        .expect(200, "outsider login")?;
    assert_eq!(
        watch_upgrade(&c, &outsider, &id, &c.url)?,
        404,
        "a watcher outside the customer's scope"
    );
    let mut insider = WebClient::new(&c.url, &std::fs::read(&c.cert)?)?;
    insider
        .login("insider", "watcher password 1")?
        .expect(200, "insider login")?;
    assert_eq!(watch_upgrade(&c, &insider, &id, &c.url)?, 101);

    // Terminated from the console's API: the live view says why.
    admin
        .send(
            "POST",
            &format!("/api/v1/sessions/{id}/terminate"),
            Some(&json!({ "reason": "watched enough" })),
        )?
        .expect(204, "terminate")?;
    b.wait_text(&t("watch-status"), "watched enough", LIVE)?;
    b.screenshot("ended")?;
    client.wait_timeout(LIVE)?;
    c.extra.push(client);

    // The recording replays on a canvas: its last frame is the repainted
    // desktop.
    let recordings = cpam_tests::wait_until(LIVE, "the sealed recording", || {
        let list = admin
            .get(&format!("/api/v1/sessions/{id}/recordings"))
            .ok()?;
        let sealed = list.as_array()?.iter().any(|r| r["state"] == "complete");
        sealed.then_some(list)
    })?;
    let rec = recordings[0]["id"].as_str().unwrap_or_default().to_string();
    let (status, _) = {
        let r = outsider
            .request(
                "GET",
                &format!("/api/v1/recordings/{rec}/frame?t=1"),
                None,
                false,
            )?
            .send()?;
        (r.status().as_u16(), ())
    };
    assert_eq!(status, 404, "an outsider read a frame");
    b.click(&t("nav-sessions"))?;
    b.click(&format!(
        "[data-test=history-row][data-id=\"{id}\"] [data-test=session-recordings]"
    ))?;
    b.find_within(&t("recording-row"), LIVE)?;
    b.click(&t("recording-replay"))?;
    wait_canvas_within(
        &b,
        "replay-canvas",
        REPAINT_RGB,
        "the replayed desktop",
        REPLAY,
    )?;
    // Next to it, the client's input decoded from the recording.
    b.find_within("[data-test=replay-input][data-count]", LIVE)?;
    b.screenshot("replay")?;
    b.execute(
        "document.querySelector('[data-test=replay-input]').scrollIntoView();",
        json!([]),
    )?;
    b.screenshot("replay-input")?;

    // The target's password reached no frame or page the browser got.
    let frames = b.execute("return window.__cpamFrames || [];", json!([]))?;
    let frames = frames.as_array().cloned().unwrap_or_default();
    assert!(
        frames.len() > 2,
        "the page received {} frames",
        frames.len()
    );
    assert!(
        !frames
            .iter()
            .any(|f| f.as_str().unwrap_or_default().contains(&canary)),
        "a WebSocket frame carried the target's password"
    );
    let html = b.execute("return document.documentElement.outerHTML;", json!([]))?;
    assert!(!html.as_str().unwrap_or_default().contains(&canary));
    let audit = c.admin(&["audit", "list", "--json"], None)?;
    for action in ["session.watch.start", "session.watch.stop"] {
        assert!(audit.contains(action), "{action} not audited");
    }
    assert!(!audit.contains(&canary));
    drop(target);
    Ok(())
}
