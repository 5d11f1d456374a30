//! RDP in the browser: a vendor with a grant and a checkout opens the
//! desktop of an `rdp` service on a canvas in Chromium (the server is the
//! RDP client, through the injecting proxy and the gatekeeper, to
//! `freerdp-shadow-cli` with NLA), sees the known colour, clicks and types
//! on it and the target's X display gets the events, an administrator
//! terminates the session and the page says why, within a second; the
//! recording verifies, replays and holds the input PDUs; a second desktop ends
//! when its checkout runs out, said in the page within a second; the
//! target's password reaches nothing the browser got. Screenshots under
//! `target/test-artifacts/browser/`.

use std::process::Command;
use std::time::Duration;

use cpam_tests::console::{ADMIN, ADMIN_PASSWORD, Console};
use cpam_tests::process::Child;
use cpam_tests::rdp::DESKTOP_RGB;
use cpam_tests::web::WebClient;
use serde_json::{Value, json};

use super::browser_rdp::{
    COLLECT_FRAMES, LOGIN, MASTER, VENDOR, rdp_console, wait_canvas, watch_upgrade,
};
use super::{LIVE, browser, sign_in, t};

/// Why the administrator ends the session.
const REASON: &str = "desktop time is over";

/// The centre of the canvas `test` in CSS pixels of the viewport.
fn canvas_point(b: &cpam_tests::browser::Browser, test: &str) -> anyhow::Result<(f64, f64)> {
    let v = b.execute(
        "const r = document.querySelector(`[data-test=${arguments[0]}]`).getBoundingClientRect();\
         return [r.left + r.width / 2, r.top + r.height / 2];",
        json!([test]),
    )?;
    Ok((
        v[0].as_f64().unwrap_or_default(),
        v[1].as_f64().unwrap_or_default(),
    ))
}

/// Milliseconds since the epoch, as the page's `Date.now()`.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// When the page showed the session's end (`Date.now()`).
fn ended_at(b: &cpam_tests::browser::Browser) -> anyhow::Result<u64> {
    let v = b.execute(
        "return Number(document.querySelector('[data-test=desktop-canvas]').dataset.endedAt || 0);",
        json!([]),
    )?;
    Ok(v.as_u64().unwrap_or_default())
}

/// Fast-path input PDUs (the first byte's action bits 0) the client sent,
/// in an RDP recording.
fn input_pdus(file: &std::path::Path) -> anyhow::Result<usize> {
    let (_, events) =
        cpam_core::record::read_rdp(std::io::BufReader::new(std::fs::File::open(file)?))?;
    Ok(events
        .iter()
        .filter(|e| e.up && e.pdu.first().is_some_and(|b| b & 0x03 == 0))
        .count())
}

#[test]
fn a_vendor_opens_the_rdp_desktop_in_the_browser_and_an_admin_ends_it() -> anyhow::Result<()> {
    let mut c = Console::start_with_passwords()?;
    let (target, _port, _profile, canary) = rdp_console(&mut c)?;
    // What reaches the target's X display: the pointer and the keys the
    // shadow server injects.
    let mut xev = Command::new("xev");
    xev.args(["-root", "-event", "mouse", "-event", "keyboard"])
        .env("DISPLAY", target.display.env());
    let xev = Child::spawn("xev", xev, c.path())?;

    let mut b = browser(&c, "rdp-web")?;
    sign_in(&b, &c.url, VENDOR, LOGIN)?;
    b.execute(COLLECT_FRAMES, json!([]))?;
    b.click(&t("nav-credentials"))?;
    b.wait_text(&t("credentials-table"), "rdp1", LIVE)?;

    // A wrong master password: said in the page, no desktop.
    b.click(&t("desktop-in-browser"))?;
    b.fill(&t("desktop-master"), "not the master password")?;
    b.click(&t("desktop-connect"))?;
    b.wait_text(&t("desktop-status"), "master password", LIVE)
        .map_err(|e| anyhow::anyhow!("{e}\n{}", c.logs()))?;
    b.screenshot("wrong-master")?;
    b.click(&t("desktop-close"))?;

    b.click(&t("desktop-in-browser"))?;
    b.fill(&t("desktop-master"), MASTER)?;
    b.click(&t("desktop-connect"))?;
    wait_canvas(
        &b,
        "desktop-canvas",
        DESKTOP_RGB,
        "the desktop on the canvas",
    )
    .map_err(|e| anyhow::anyhow!("{e}\n{}\n{}", target.logs(), c.logs()))?;
    b.wait_text(&t("desktop-status"), "Connected", LIVE)?;
    b.screenshot("desktop")?;

    // The pointer and a key, as a person uses them: real input events on
    // the canvas.
    let (x, y) = canvas_point(&b, "desktop-canvas")?;
    for (kind, dx) in [("mouseMoved", 0.0), ("mouseMoved", 7.0)] {
        b.cdp(
            "Input.dispatchMouseEvent",
            json!({ "type": kind, "x": x + dx, "y": y }),
        )?;
    }
    for kind in ["mousePressed", "mouseReleased"] {
        b.cdp(
            "Input.dispatchMouseEvent",
            json!({ "type": kind, "x": x, "y": y, "button": "left", "clickCount": 1 }),
        )?;
    }
    for kind in ["keyDown", "keyUp"] {
        b.cdp(
            "Input.dispatchKeyEvent",
            json!({ "type": kind, "key": "a", "code": "KeyA", "windowsVirtualKeyCode": 65 }),
        )?;
    }
    let mut seen = String::new();
    let reached = cpam_tests::wait_until(LIVE, "the input on the target's display", || {
        seen = xev.logs();
        [
            "MotionNotify",
            "ButtonPress",
            "ButtonRelease",
            "KeyPress",
            "KeyRelease",
        ]
        .iter()
        .all(|e| seen.contains(e))
        .then_some(())
    });
    let sent = b.execute(
        "return document.querySelector('[data-test=desktop-canvas]').dataset.sent;",
        json!([]),
    )?;
    reached.map_err(|e| anyhow::anyhow!("{e}: the page sent {sent} events; xev: {seen}"))?;

    // An administrator ends it; the page says why within a second.
    let mut admin = WebClient::new(&c.url, &std::fs::read(&c.cert)?)?;
    admin
        .login(ADMIN, ADMIN_PASSWORD)?
        .expect(200, "admin login")?;
    let live = admin.get("/api/v1/sessions?state=active")?;
    let session = live
        .as_array()
        .and_then(|a| a.iter().find(|s| s["protocol"] == "rdp").cloned())
        .ok_or_else(|| anyhow::anyhow!("no live RDP session: {live}"))?;
    assert_eq!(session["user"], VENDOR, "{session}");
    let id = session["id"].as_str().unwrap_or_default().to_string();
    // Other administrators watch it as any live desktop.
    assert_eq!(watch_upgrade(&c, &admin, &id, &c.url)?, 101);
    let asked = now_ms();
    admin
        .send(
            "POST",
            &format!("/api/v1/sessions/{id}/terminate"),
            Some(&json!({ "reason": REASON })),
        )?
        .expect(204, "terminate")?;
    b.wait_text(&t("desktop-status"), REASON, LIVE)?;
    let shown = ended_at(&b)?.saturating_sub(asked);
    eprintln!("terminate to the reason in the page: {shown} ms");
    b.execute(
        "document.querySelector('[data-test=desktop-status]').scrollIntoView();",
        json!([]),
    )?;
    b.screenshot("terminated")?;
    assert!(shown < 1000, "the page said why after {shown} ms");

    // The recording verifies and holds the page's input.
    let rec = format!("{id}.0");
    let verified = cpam_tests::wait_until(LIVE, "the recording sealed", || {
        c.admin(&["recordings", "verify", &rec], None).ok()
    })?;
    assert!(verified.contains("verified: complete"), "{verified}");
    let file = c.data_dir.join("recordings").join(format!("{rec}.cast"));
    let inputs = input_pdus(&file)?;
    assert!(inputs >= 6, "{inputs} input PDUs recorded");
    // Its input track, through the API, is what the page sent, in order:
    // the pointer moved, the left button clicked where it was, then `a`.
    let listed = admin.get(&format!("/api/v1/sessions/{id}/recordings"))?;
    assert_eq!(listed[0]["kind"], "rdp", "{listed}");
    let track = admin.get(&format!("/api/v1/recordings/{rec}/input"))?;
    assert_eq!(track["skipped"], 0, "{track}");
    let events = track["events"].as_array().cloned().unwrap_or_default();
    let find = |want: &dyn Fn(&Value) -> bool| events.iter().position(want);
    let moved = find(&|e| e["type"] == "pointer");
    let pressed = find(&|e| e["type"] == "button" && e["button"] == "left" && e["down"] == true);
    let released = find(&|e| e["type"] == "button" && e["button"] == "left" && e["down"] == false);
    let key_down = find(&|e| e["type"] == "key" && e["scancode"] == 0x1e && e["down"] == true);
    let key_up = find(&|e| e["type"] == "key" && e["scancode"] == 0x1e && e["down"] == false);
    let order = [moved, pressed, released, key_down, key_up];
    assert!(
        order.iter().all(Option::is_some) && order.windows(2).all(|w| w[0] < w[1]),
        "the page's input {order:?} in {track}"
    );
    let times: Vec<f64> = events.iter().filter_map(|e| e["t"].as_f64()).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]) && times.iter().all(|t| *t > 0.0),
        "{track}"
    );
    // Someone who may not read the session's recordings gets a 404 or 403.
    let mut vendor_api = WebClient::new(&c.url, &std::fs::read(&c.cert)?)?;
    vendor_api
        .login(VENDOR, LOGIN)?
        .expect(200, "vendor login")?;
    let status = vendor_api
        .request(
            "GET",
            &format!("/api/v1/recordings/{rec}/input"),
            None,
            false,
        )?
        .send()?
        .status()
        .as_u16();
    assert!(
        status == 403 || status == 404,
        "the vendor read the input track: {status}"
    );
    // It replays like a native session's: the desktop at its end.
    let (_, events) =
        cpam_core::record::read_rdp(std::io::BufReader::new(std::fs::File::open(&file)?))?;
    let player = cpam_core::record::RdpPlayer::new(events)?;
    let frame = player.frame_at(player.duration());
    assert_eq!((frame.width, frame.height), (1024, 768));
    let p = frame.rgb(512, 384).unwrap_or_default();
    assert!(
        p.iter().zip(DESKTOP_RGB).all(|(a, b)| a.abs_diff(b) <= 8),
        "the replayed desktop is {p:?}"
    );

    // The checkout runs out mid-session: the page says so within a
    // second of its end.
    let mut vendor = WebClient::new(&c.url, &std::fs::read(&c.cert)?)?;
    vendor.login(VENDOR, LOGIN)?.expect(200, "vendor login")?;
    let creds = vendor.get("/api/v1/credentials")?;
    let checkout = creds[0]["checkout"]["id"].as_str().unwrap_or_default();
    vendor
        .send("DELETE", &format!("/api/v1/checkouts/{checkout}"), None)?
        .expect(204, "check in")?;
    let service_id = creds[0]["service_id"].as_str().unwrap_or_default();
    let lasts = 20;
    let expires = now_ms() + lasts * 1000;
    vendor
        .send(
            "POST",
            "/api/v1/checkouts",
            Some(&json!({ "service_id": service_id, "duration_secs": lasts })),
        )?
        .expect(201, "checkout")?;
    b.execute("window.scrollTo(0, 0);", json!([]))?;
    b.click(&t("desktop-close"))?;
    b.click(&t("nav-credentials"))?;
    b.wait_text(&t("credentials-table"), "rdp1", LIVE)?;
    b.click(&t("desktop-in-browser"))?;
    b.fill(&t("desktop-master"), MASTER)?;
    b.click(&t("desktop-connect"))?;
    wait_canvas(&b, "desktop-canvas", DESKTOP_RGB, "the desktop again")?;
    b.wait_text(
        &t("desktop-status"),
        "expired",
        LIVE + Duration::from_secs(lasts),
    )?;
    let late = ended_at(&b)?.saturating_sub(expires);
    eprintln!("checkout end to the reason in the page: {late} ms");
    b.execute(
        "document.querySelector('[data-test=desktop-status]').scrollIntoView();",
        json!([]),
    )?;
    b.screenshot("expired")?;
    assert!(
        late < 1000,
        "the page said why {late} ms after the checkout's end"
    );

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
    assert!(audit.contains("session.rdp.target_login"), "not audited");
    assert!(!audit.contains(&canary));
    c.extra.push(xev);
    drop(target);
    Ok(())
}
