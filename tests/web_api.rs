//! The whole console flow through the REST API against a real
//! `cpam-server run` over TLS (its generated certificate trusted
//! explicitly): a customer and gatekeeper made through the API, a real
//! `cpam-gatekeeper` registered with a code issued by the API (in a network
//! namespace with a stock `sshd` behind it), the online event pushed over
//! SSE, the Connection Manager profile downloaded, `cpam-connect` and stock
//! `ssh` through it, the live session listed and terminated with a reason,
//! the admin log filtered and exported, the chain verified, metrics moved.
//! Also: the committed OpenAPI document matches the served one.

use std::io::BufRead as _;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use cpam_tests::bins::bin_path;
use cpam_tests::process::{Child, run};
use cpam_tests::sshd::Sshd;
use cpam_tests::wait_until;
use cpam_tests::web::{HostLink, WebClient, WebOptions, WebServer};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(30);
const SSHD_PORT: u16 = 2022;

/// Reads `event:`/`data:` pairs of an SSE stream on a thread.
fn sse(client: &WebClient) -> anyhow::Result<mpsc::Receiver<(String, Value)>> {
    let resp = client
        .request("GET", "/api/v1/events", None, false)?
        .send()?;
    anyhow::ensure!(resp.status().as_u16() == 200, "events: {}", resp.status());
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    anyhow::ensure!(
        ct.starts_with("text/event-stream"),
        "events content type {ct}"
    );
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut event = String::new();
        for line in std::io::BufReader::new(resp).lines() {
            let Ok(line) = line else { return };
            if let Some(e) = line.strip_prefix("event:") {
                event = e.trim().to_string();
            } else if let Some(d) = line.strip_prefix("data:") {
                let v = serde_json::from_str(d.trim()).unwrap_or(Value::Null);
                if tx.send((event.clone(), v)).is_err() {
                    return;
                }
            }
        }
    });
    Ok(rx)
}

fn next_event(
    rx: &mpsc::Receiver<(String, Value)>,
    what: &str,
    pred: impl Fn(&str, &Value) -> bool,
) -> anyhow::Result<Value> {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok((e, v)) if pred(&e, &v) => return Ok(v),
            Ok(_) => continue,
            Err(_) => anyhow::bail!("no SSE event: {what}"),
        }
    }
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap_or_default().to_string()
}

fn metric(body: &str, name: &str) -> u64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn console_flow_through_the_api() -> anyhow::Result<()> {
    let link = HostLink::create()?;
    let web = WebServer::start(WebOptions {
        ssh_listen: format!("{}:0", link.host_addr),
        ..WebOptions::default()
    })?;
    let d = web.path().to_path_buf();
    let sshd = Sshd::start(&link.ns, &d, &[SSHD_PORT])?;
    let admin = web.admin()?;

    let acme = admin.post("/api/v1/customers", &json!({ "name": "acme" }))?;
    let cid = id(&acme);
    let gk = admin.post(
        &format!("/api/v1/customers/{cid}/gatekeepers"),
        &json!({ "name": "gk1" }),
    )?;
    let gid = id(&gk);
    assert_eq!(
        (gk["registered"].as_bool(), gk["online"].as_bool()),
        (Some(false), Some(false)),
        "{gk}"
    );
    let code = admin.post(
        &format!("/api/v1/gatekeepers/{gid}/registration-code"),
        &json!({ "ttl_minutes": 10 }),
    )?;
    let fingerprint = code["server_fingerprint"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(fingerprint.starts_with("SHA256:"), "{code}");
    assert!(
        code["server_address"]
            .as_str()
            .is_some_and(|a| a.ends_with(&format!(
                ":{}",
                web.ssh_addr.rsplit(':').next().unwrap_or("")
            ))),
        "{code}"
    );
    let code = code["code"].as_str().unwrap_or_default().to_string();
    let svc = admin.post(
        &format!("/api/v1/gatekeepers/{gid}/services"),
        &json!({ "name": "ssh", "kind": "custom", "host": "127.0.0.1", "port": SSHD_PORT }),
    )?;
    admin.post(
        "/api/v1/users",
        &json!({ "name": "vendor", "password": "vendor-password", "roles": ["Vendor"], "customers": [cid] }),
    )?;
    let grant = admin.post(
        "/api/v1/grants",
        &json!({ "user": "vendor", "service_id": id(&svc), "hours": 2 }),
    )?;
    assert_eq!(grant["user"], "vendor", "{grant}");
    assert!(grant["not_after"].is_string(), "{grant}");
    let mut vendor = web.client()?;
    vendor
        .login("vendor", "vendor-password")?
        .expect(200, "vendor login")?;
    let r = vendor.send("GET", &format!("/api/v1/gatekeepers/{gid}/profile"), None)?;
    assert_eq!(
        (r.status, r.code().as_deref()),
        (409, Some("conflict")),
        "profile before registration: {r:?}"
    );

    // Register a real gatekeeper with the API's code and watch it come online.
    let events = sse(&admin)?;
    let state = d.join("gatekeeper");
    let mut reg = link.ns.command(bin_path("cpam-gatekeeper")?);
    // The gatekeeper pins the server key the console showed with the code.
    reg.args(["register", "--server", &web.ssh_addr, "--code", &code])
        .args(["--server-fingerprint", &fingerprint])
        .arg("--state-dir")
        .arg(&state);
    run("gatekeeper-register", reg, &d, TIMEOUT)?.ok("cpam-gatekeeper register")?;
    let mut gkrun = link.ns.command(bin_path("cpam-gatekeeper")?);
    gkrun
        .args(["run", "--allow", "127.0.0.0/8:2022", "--state-dir"])
        .arg(&state);
    let _gatekeeper = Child::spawn("gatekeeper", gkrun, &d)?;
    let online = next_event(&events, "gatekeeper online", |e, v| {
        e == "gatekeeper" && v["id"] == gid.as_str() && v["online"] == true
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}", web.logs()))?;
    assert!(online["last_contact"].is_string(), "{online}");
    let now = admin.get(&format!("/api/v1/gatekeepers/{gid}"))?;
    assert_eq!(
        (now["registered"].as_bool(), now["online"].as_bool()),
        (Some(true), Some(true)),
        "{now}"
    );

    // The vendor downloads the profile and connects with it.
    let r = vendor.expect(
        "GET",
        &format!("/api/v1/gatekeepers/{gid}/profile"),
        None,
        200,
    )?;
    let disposition = r.header("content-disposition").unwrap_or_default();
    assert!(
        disposition.contains("cpam-acme-gk1.cpam-profile.json"),
        "{disposition}"
    );
    let profile = d.join("vendor.cpam-profile.json");
    std::fs::write(&profile, &r.body)?;
    let mut fwd = Command::new(bin_path("cpam-connect")?);
    fwd.arg("--profile")
        .arg(&profile)
        .args(["forward", "ssh", "--listen", "127.0.0.1:0"]);
    let mut connect = Child::spawn("connect", fwd, &d)?;
    let local = connect.wait_for_line("cpam-connect forwarding ssh on ", TIMEOUT)?;
    let port = local.rsplit(':').next().unwrap_or_default().to_string();
    let ssh = cpam_tests::sshd::local_ssh_cmd(
        &sshd.client_key,
        port.parse()?,
        &["echo through-the-console-flow; sleep 60"],
    );
    let mut ssh = Child::spawn("ssh", ssh, &d)?;
    ssh.wait_for_line("through-the-console-flow", TIMEOUT)?;

    let started = next_event(&events, "session started", |e, v| {
        e == "session" && v["live"] == true
    })?;
    let sid = id(&started);
    let active = admin.get("/api/v1/sessions?state=active")?;
    let listed = active
        .as_array()
        .and_then(|a| a.iter().find(|s| s["id"] == sid.as_str()))
        .cloned()
        .unwrap_or_default();
    assert_eq!(listed["user"], "vendor", "{active}");
    assert_eq!(listed["customer_name"], "acme", "{active}");
    assert_eq!(listed["target"], "127.0.0.1:2022", "{active}");
    let own = vendor.get("/api/v1/sessions")?;
    assert!(
        own.as_array()
            .is_some_and(|a| a.iter().any(|s| s["id"] == sid.as_str())),
        "the vendor sees its own session: {own}"
    );

    let r = admin.send("DELETE", &format!("/api/v1/customers/{cid}"), None)?;
    assert_eq!(
        (r.status, r.code().as_deref()),
        (409, Some("conflict")),
        "delete with a live session: {r:?}"
    );
    let r = vendor.send(
        "POST",
        &format!("/api/v1/sessions/{sid}/terminate"),
        Some(&json!({ "reason": "mine" })),
    )?;
    assert_eq!(
        r.code().as_deref(),
        Some("permission_denied"),
        "a vendor cannot terminate: {r:?}"
    );

    // Terminate with a reason; the session ends and says who and why.
    let r = admin.send(
        "POST",
        &format!("/api/v1/sessions/{sid}/terminate"),
        Some(&json!({ "reason": "" })),
    )?;
    assert_eq!(
        r.code().as_deref(),
        Some("invalid_argument"),
        "a reason is required: {r:?}"
    );
    admin.expect(
        "POST",
        &format!("/api/v1/sessions/{sid}/terminate"),
        Some(&json!({ "reason": "change window closed" })),
        204,
    )?;
    let ended = next_event(&events, "session ended", |e, v| {
        e == "session" && v["id"] == sid.as_str() && v["live"] == false
    })?;
    assert_eq!(ended["end_reason"], "terminated_by", "{ended}");
    assert!(
        ssh.wait_timeout(TIMEOUT)?.is_some(),
        "ssh did not end after terminate"
    );
    let s = wait_until(TIMEOUT, "the ended session", || {
        let s = admin.get(&format!("/api/v1/sessions/{sid}")).ok()?;
        (s["live"] == false && s["ended_at"].is_string()).then_some(s)
    })?;
    let detail = s["end_detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("admin") && detail.contains("change window closed"),
        "{s}"
    );
    assert!(s["bytes_down"].as_u64().unwrap_or(0) > 0, "{s}");
    let again = admin.send(
        "POST",
        &format!("/api/v1/sessions/{sid}/terminate"),
        Some(&json!({ "reason": "again" })),
    )?;
    assert_eq!(
        (again.status, again.code().as_deref()),
        (409, Some("conflict"))
    );
    assert_eq!(
        admin
            .get("/api/v1/sessions?state=ended")?
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // Revoking the grant through the API: the next connection is refused.
    admin.expect(
        "DELETE",
        &format!("/api/v1/grants/{}", id(&grant)),
        None,
        204,
    )?;
    let revoked = admin.get("/api/v1/grants")?;
    assert!(revoked[0]["revoked_at"].is_string(), "{revoked}");
    let retry = cpam_tests::sshd::local_ssh_cmd(&sshd.client_key, port.parse()?, &["true"]);
    let out = run("ssh-after-revoke", retry, &d, TIMEOUT)?;
    assert!(!out.success(), "ssh after the grant was revoked: {out:?}");

    // The admin log: filters, exports, verification.
    let mine = admin.get("/api/v1/audit?user=admin")?;
    let actions: Vec<&str> = mine
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for a in [
        "web.login",
        "admin.customer.add",
        "admin.gatekeeper.add",
        "admin.gatekeeper.code",
        "admin.session.terminate",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    assert!(
        mine.as_array()
            .into_iter()
            .flatten()
            .all(|e| e["actor"] == "admin")
    );
    let system = admin.get("/api/v1/audit?category=system-messages")?;
    assert!(
        system
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["action"] == "gatekeeper.online"),
        "{system}"
    );
    assert!(
        system
            .as_array()
            .into_iter()
            .flatten()
            .all(|e| e["category"] == "system-messages")
    );
    let of_acme = admin.get(&format!("/api/v1/audit?customer={cid}"))?;
    assert!(
        of_acme
            .as_array()
            .into_iter()
            .flatten()
            .all(|e| e["customer_id"] == cid.as_str())
    );
    assert!(
        of_acme
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["action"] == "session.start" || e["action"] == "session.end"),
        "{of_acme}"
    );
    assert_eq!(
        admin.get("/api/v1/audit?from=2999-01-01T00:00:00Z")?,
        json!([])
    );
    let csv = admin.expect("GET", "/api/v1/audit?format=csv", None, 200)?;
    assert!(
        csv.header("content-type")
            .unwrap_or_default()
            .starts_with("text/csv")
    );
    assert!(
        csv.body
            .starts_with("seq,at,category,action,actor,customer_id,session_id,detail,hash\n"),
        "{}",
        csv.body
    );
    assert!(csv.body.contains("admin.session.terminate"));
    let jsonl = admin.expect("GET", "/api/v1/audit?format=jsonl", None, 200)?;
    let lines: Vec<Value> = jsonl
        .body
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(
        lines.len(),
        csv.body.lines().count() - 1,
        "one JSON line per CSV row"
    );
    let r = vendor.send("GET", "/api/v1/audit", None)?;
    assert_eq!(r.code().as_deref(), Some("permission_denied"), "{r:?}");
    let verify = admin.get("/api/v1/audit/verify")?;
    assert_eq!(verify["intact"], true, "{verify}");
    assert!(verify["records"].as_u64().unwrap_or(0) >= lines.len() as u64);
    // A signed checkpoint of the head: listed, and verified against.
    let cp = web.cli_json(&["audit", "checkpoint"])?;
    let seq = cp["seq"].as_i64().expect("a checkpoint of the head");
    let list = admin.get("/api/v1/audit/checkpoints")?;
    let last = list.as_array().and_then(|l| l.last()).cloned();
    assert_eq!(last.map(|c| c["seq"].clone()), Some(json!(seq)), "{list}");
    let verify = admin.get("/api/v1/audit/verify")?;
    assert_eq!(verify["intact"], true, "{verify}");
    assert_eq!(verify["checkpoint"], json!(seq), "{verify}");
    let r = vendor.send("GET", "/api/v1/audit/checkpoints", None)?;
    assert_eq!(r.code().as_deref(), Some("permission_denied"), "{r:?}");

    // Metrics moved.
    let m = web.client()?.send("GET", "/metrics", None)?.body;
    assert_eq!(metric(&m, "cpam_sessions_total"), 1, "{m}");
    assert_eq!(metric(&m, "cpam_gatekeepers_online"), 1, "{m}");
    assert_eq!(metric(&m, "cpam_sessions_live"), 0, "{m}");
    assert!(
        metric(&m, "cpam_bytes_total{direction=\"down\"}") > 0,
        "{m}"
    );
    assert!(metric(&m, "cpam_logins_total{result=\"ok\"}") >= 2, "{m}");
    let refusals: u64 = m
        .lines()
        .filter(|l| l.starts_with("cpam_refusals_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(refusals, 1, "{m}");

    // IP Connect: the cpam-connect next to the server, for this platform.
    let list = vendor.get("/api/v1/downloads/ipconnect")?;
    let file = list[0]["file"].as_str().unwrap_or_default().to_string();
    assert_eq!(list[0]["os"], std::env::consts::OS, "{list}");
    let size = std::fs::metadata(bin_path("cpam-connect")?)?.len();
    assert_eq!(list[0]["size"].as_u64(), Some(size), "{list}");
    let bin = vendor
        .request(
            "GET",
            &format!("/api/v1/downloads/ipconnect/{file}"),
            None,
            true,
        )?
        .send()?;
    assert_eq!(bin.status().as_u16(), 200);
    assert_eq!(bin.bytes()?.len() as u64, size);
    drop(connect);
    Ok(())
}

#[test]
fn openapi_document_is_committed_and_served() -> anyhow::Result<()> {
    let doc = cpam_core::web::openapi::document();
    let text = format!("{}\n", serde_json::to_string_pretty(&doc)?);
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    if std::env::var_os("CPAM_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &text)?;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == text,
        "docs/openapi.json is stale; refresh it with \
         `CPAM_UPDATE_OPENAPI=1 cargo test -p cpam-tests --test integration openapi` and commit it"
    );
    let web = WebServer::start(WebOptions::default())?;
    let served = web.client()?.get("/api/v1/openapi.json")?;
    assert_eq!(
        served, doc,
        "the served document differs from the generated one"
    );
    assert_eq!(served["openapi"], "3.1.0");
    assert!(served["paths"]["/api/v1/sessions/{id}/terminate"]["post"].is_object());
    Ok(())
}

#[test]
fn users_roles_settings_and_scope_through_the_api() -> anyhow::Result<()> {
    let web = WebServer::start(WebOptions::default())?;
    let admin = web.admin()?;
    let acme = id(&admin.post("/api/v1/customers", &json!({ "name": "acme" }))?);
    let globex = id(&admin.post("/api/v1/customers", &json!({ "name": "globex" }))?);

    // Settings: the server-wide IP Connect mode; `global` is a per-user value only.
    assert_eq!(
        admin.get("/api/v1/settings")?["ip_connect_mode"],
        "driver-with-legacy-fallback"
    );
    let put = admin.send(
        "PUT",
        "/api/v1/settings",
        Some(&json!({ "ip_connect_mode": "legacy" })),
    )?;
    assert_eq!(
        put.expect(200, "settings")?.json()?["ip_connect_mode"],
        "legacy"
    );
    let r = admin.send(
        "PUT",
        "/api/v1/settings",
        Some(&json!({ "ip_connect_mode": "global" })),
    )?;
    assert_eq!(r.code().as_deref(), Some("invalid_argument"), "{r:?}");

    // A user with a membership, an IP Connect preference and a custom role.
    admin.post(
        "/api/v1/roles",
        &json!({ "name": "Session Viewer", "permissions": ["VIEW_SESSIONS"] }),
    )?;
    let r = admin.send(
        "POST",
        "/api/v1/roles",
        Some(&json!({ "name": " Viewer", "permissions": ["VIEW_SESSIONS"] })),
    )?;
    assert_eq!(r.code().as_deref(), Some("invalid_argument"), "{r:?}");
    let u = admin.post(
        "/api/v1/users",
        &json!({ "name": "carol", "password": "carol-pw-1", "roles": ["Session Viewer"], "customers": [acme], "ip_connect_mode": "driver" }),
    )?;
    let uid = id(&u);
    assert_eq!(
        (u["ip_connect_mode"].as_str(), u["roles"][0].as_str()),
        (Some("driver"), Some("Session Viewer")),
        "{u}"
    );
    let r = admin.send(
        "POST",
        "/api/v1/users",
        Some(&json!({ "name": "bad", "ip_connect_mode": "warp" })),
    )?;
    assert_eq!(r.code().as_deref(), Some("invalid_argument"), "{r:?}");
    let r = admin.send(
        "POST",
        "/api/v1/users",
        Some(&json!({ "name": "bad", "roles": ["Nope"] })),
    )?;
    assert_eq!(r.code().as_deref(), Some("not_found"), "{r:?}");
    assert!(
        admin
            .get("/api/v1/users")?
            .as_array()
            .is_some_and(|a| !a.iter().any(|u| u["name"] == "bad")),
        "a refused user is not created"
    );

    let mut carol = web.client()?;
    carol
        .login("carol", "carol-pw-1")?
        .expect(200, "carol login")?;
    assert_eq!(
        carol.get(&format!("/api/v1/users/{uid}"))?["name"],
        "carol",
        "a user reads themself"
    );
    let names = |v: Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(names(carol.get("/api/v1/customers")?), ["acme"]);
    let r = carol.send("GET", &format!("/api/v1/customers/{globex}"), None)?;
    assert_eq!(
        (r.status, r.code().as_deref()),
        (404, Some("not_found")),
        "a foreign customer is not found"
    );
    let r = carol.send("GET", "/api/v1/customers/cus_doesnotexist", None)?;
    assert_eq!((r.status, r.code().as_deref()), (404, Some("not_found")));

    // A name that is taken is a conflict (409), not a malformed request.
    for (path, body) in [
        ("/api/v1/customers", json!({ "name": "acme" })),
        ("/api/v1/users", json!({ "name": "carol" })),
    ] {
        let r = admin.send("POST", path, Some(&body))?;
        assert_eq!(
            (r.status, r.code().as_deref()),
            (409, Some("conflict")),
            "a second {body} at {path}: {r:?}"
        );
    }

    // Membership and role edits take effect on the next request.
    admin.expect(
        "PATCH",
        &format!("/api/v1/users/{uid}"),
        Some(&json!({ "customers": [acme, globex] })),
        200,
    )?;
    assert_eq!(names(carol.get("/api/v1/customers")?), ["acme", "globex"]);
    assert_eq!(
        carol
            .send("GET", "/api/v1/audit/verify", None)?
            .code()
            .as_deref(),
        Some("permission_denied")
    );
    let role = admin.send(
        "PUT",
        "/api/v1/roles/Session%20Viewer",
        Some(&json!({ "permissions": ["VIEW_SESSIONS", "VERIFY_AUDIT_LOG"] })),
    )?;
    assert_eq!(
        role.expect(200, "role update")?.json()?["permissions"],
        json!(["VIEW_SESSIONS", "VERIFY_AUDIT_LOG"])
    );
    assert_eq!(carol.get("/api/v1/audit/verify")?["intact"], true);
    for (method, body) in [
        ("PUT", Some(json!({ "permissions": ["VIEW_SESSIONS"] }))),
        ("DELETE", None),
    ] {
        let r = admin.send(method, "/api/v1/roles/Vendor", body.as_ref())?;
        assert_eq!(
            (r.status, r.code().as_deref()),
            (409, Some("conflict")),
            "{method} a built-in role: {r:?}"
        );
    }
    let vendor = admin.get("/api/v1/roles")?;
    let vendor = vendor
        .as_array()
        .and_then(|a| a.iter().find(|r| r["name"] == "Vendor"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        vendor["permissions"],
        json!([
            "DOWNLOAD_IPCONNECT",
            "USE_CONNECTION_MANAGER",
            "DOWNLOAD_CONNECTION_MANAGER",
            "VIEW_OWN_SESSIONS"
        ]),
        "{vendor}"
    );

    // A password change and disabling end the user's console sessions.
    admin.expect(
        "PATCH",
        &format!("/api/v1/users/{uid}"),
        Some(&json!({ "password": "carol-pw-2" })),
        200,
    )?;
    assert_eq!(carol.send("GET", "/api/v1/auth/me", None)?.status, 401);
    assert_eq!(carol.login("carol", "carol-pw-1")?.status, 401);
    carol
        .login("carol", "carol-pw-2")?
        .expect(200, "login with the new password")?;
    let disabled = admin.send(
        "PATCH",
        &format!("/api/v1/users/{uid}"),
        Some(&json!({ "disabled": true, "ip_connect_mode": "off" })),
    )?;
    let disabled = disabled.expect(200, "disable")?.json()?;
    assert_eq!(
        (
            disabled["disabled"].as_bool(),
            disabled["ip_connect_mode"].as_str()
        ),
        (Some(true), Some("off"))
    );
    assert_eq!(carol.send("GET", "/api/v1/auth/me", None)?.status, 401);
    assert_eq!(carol.login("carol", "carol-pw-2")?.status, 401);

    // Deleting the custom role unassigns it; every change is in the admin log.
    admin.expect("DELETE", "/api/v1/roles/Session%20Viewer", None, 204)?;
    assert_eq!(
        admin.get(&format!("/api/v1/users/{uid}"))?["roles"],
        json!([])
    );
    let log = admin.get("/api/v1/audit?user=admin")?;
    let actions: Vec<&str> = log
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for a in [
        "admin.settings.update",
        "admin.role.add",
        "admin.user.add",
        "admin.user.update",
        "admin.role.update",
        "admin.role.delete",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    let r = admin.send("DELETE", &format!("/api/v1/customers/{globex}"), None)?;
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(names(admin.get("/api/v1/customers")?), ["acme"]);
    Ok(())
}
