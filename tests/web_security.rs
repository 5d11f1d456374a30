//! The console's security properties against a real `cpam-server run`:
//! CSRF, session fixation, cookie flags, idle timeout, the login throttle
//! and its audit trail, and secrets that never come back out.

use std::process::Command;
use std::time::Duration;

use cpam_tests::bins::bin_path;
use cpam_tests::process::run;
use cpam_tests::web::{ADMIN_PASSWORD, ADMIN_USER, WebOptions, WebServer};
use serde_json::{Value, json};

fn server() -> anyhow::Result<WebServer> {
    WebServer::start(WebOptions::default())
}

#[test]
fn changes_need_the_csrf_token_unless_bearer() -> anyhow::Result<()> {
    let web = server()?;
    let admin = web.admin()?;
    let body = json!({ "name": "acme" });

    let missing = admin.send_without_csrf("POST", "/api/v1/customers", Some(&body))?;
    assert_eq!(
        (missing.status, missing.code().as_deref()),
        (403, Some("csrf_failed")),
        "{missing:?}"
    );
    let mut wrong = admin.clone();
    wrong.csrf = Some("not-the-token".into());
    let r = wrong.send("POST", "/api/v1/customers", Some(&body))?;
    assert_eq!(
        (r.status, r.code().as_deref()),
        (403, Some("csrf_failed")),
        "{r:?}"
    );
    for (method, path) in [
        ("DELETE", "/api/v1/customers/cus_x"),
        ("PATCH", "/api/v1/users/usr_x"),
        ("PUT", "/api/v1/settings"),
    ] {
        let r = admin.send_without_csrf(method, path, Some(&json!({})))?;
        assert_eq!(
            r.code().as_deref(),
            Some("csrf_failed"),
            "{method} {path}: {r:?}"
        );
    }
    assert!(
        admin
            .get("/api/v1/customers")?
            .as_array()
            .is_some_and(Vec::is_empty),
        "a refused change changed nothing"
    );
    // Reads need no token; the right token passes.
    admin.expect("POST", "/api/v1/customers", Some(&body), 201)?;

    // A bearer token carries no ambient authority, so it needs no CSRF token.
    let token = admin.post("/api/v1/tokens", &json!({ "name": "script" }))?;
    let script = admin.with_bearer(token["token"].as_str().unwrap_or_default());
    let r = script.send_without_csrf(
        "POST",
        "/api/v1/customers",
        Some(&json!({ "name": "globex" })),
    )?;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(script.get("/api/v1/auth/me")?["user"]["name"], ADMIN_USER);

    // Login itself needs X-Requested-With, so a cross-site form cannot post it.
    let plain = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&web.cert_pem)?)
        .build()?;
    let r = plain
        .post(format!("{}/api/v1/auth/login", web.url))
        .json(&json!({ "username": ADMIN_USER, "password": ADMIN_PASSWORD }))
        .send()?;
    assert_eq!(r.status().as_u16(), 403);
    assert!(
        r.headers().get("set-cookie").is_none(),
        "no session without the header"
    );
    Ok(())
}

#[test]
fn a_login_never_adopts_a_presented_session_id() -> anyhow::Result<()> {
    let web = server()?;
    // A cookie planted before login (e.g. by an attacker) is not adopted.
    let mut c = web.client()?;
    c.cookie = Some("attacker-chosen-value".into());
    c.login(ADMIN_USER, ADMIN_PASSWORD)?.expect(200, "login")?;
    let first = c.cookie.clone().unwrap_or_default();
    assert!(!first.is_empty() && first != "attacker-chosen-value");
    assert_eq!(first.len(), 43, "32 random bytes, base64url: {first}");
    let mut planted = web.client()?;
    planted.cookie = Some("attacker-chosen-value".into());
    assert_eq!(planted.send("GET", "/api/v1/auth/me", None)?.status, 401);

    // Logging in again with a valid session yields a new id and kills the old one.
    let mut again = c.clone();
    again
        .login(ADMIN_USER, ADMIN_PASSWORD)?
        .expect(200, "second login")?;
    let second = again.cookie.clone().unwrap_or_default();
    assert_ne!(first, second, "a new id on every login");
    assert_eq!(
        c.send("GET", "/api/v1/auth/me", None)?.status,
        401,
        "the old id is dead"
    );
    again.expect("GET", "/api/v1/auth/me", None, 200)?;

    // After logout the id is dead even if replayed.
    let r = again.expect("POST", "/api/v1/auth/logout", None, 204)?;
    let cleared = r.header("set-cookie").unwrap_or_default();
    assert!(
        cleared.starts_with("cpam_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    let r = again.send("GET", "/api/v1/auth/me", None)?;
    assert_eq!(
        (r.status, r.code().as_deref()),
        (401, Some("unauthenticated"))
    );
    let log = web.admin()?.get("/api/v1/audit?user=admin")?;
    let actions: Vec<&str> = log
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(
        actions.iter().filter(|a| **a == "web.login").count(),
        3,
        "{actions:?}"
    );
    assert!(actions.contains(&"web.logout"), "{actions:?}");
    Ok(())
}

#[test]
fn cookie_flags_over_tls_and_plain_http_only_on_loopback() -> anyhow::Result<()> {
    let web = server()?;
    let mut c = web.client()?;
    let r = c.login(ADMIN_USER, ADMIN_PASSWORD)?.expect(200, "login")?;
    let cookie = r.header("set-cookie").unwrap_or_default();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Secure"] {
        assert!(
            cookie.split("; ").any(|f| f == flag),
            "{flag} missing: {cookie}"
        );
    }
    let me = c.send("GET", "/api/v1/auth/me", None)?;
    assert_eq!(me.header("cache-control").as_deref(), Some("no-store"));
    let shell = c.send("GET", "/", None)?;
    assert_eq!(
        shell.header("content-security-policy").as_deref(),
        Some(
            "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"
        )
    );
    assert_eq!(
        shell.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );

    let plain = WebServer::start(WebOptions {
        insecure_http: true,
        ..WebOptions::default()
    })?;
    assert!(plain.url.starts_with("http://127.0.0.1:"), "{}", plain.url);
    let mut p = plain.client()?;
    let r = p
        .login(ADMIN_USER, ADMIN_PASSWORD)?
        .expect(200, "plain login")?;
    let cookie = r.header("set-cookie").unwrap_or_default();
    assert!(
        cookie.contains("HttpOnly") && !cookie.contains("Secure"),
        "{cookie}"
    );

    let mut refused = Command::new(bin_path("cpam-server")?);
    refused
        .args([
            "run",
            "--web-insecure-http",
            "--web-listen",
            "0.0.0.0:0",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&plain.data_dir);
    let out = run(
        "insecure-public",
        refused,
        plain.path(),
        Duration::from_secs(30),
    )?;
    assert!(
        !out.success(),
        "plain HTTP on 0.0.0.0 must be refused: {out:?}"
    );
    assert!(out.stderr.contains("only on a loopback address"), "{out:?}");
    Ok(())
}

#[test]
fn an_idle_session_ends_and_activity_keeps_it() -> anyhow::Result<()> {
    let web = WebServer::start(WebOptions {
        idle_timeout_secs: Some(3),
        ..WebOptions::default()
    })?;
    // The idle one signs in first: the busy one's clock starts after both logins.
    let idle = web.admin()?;
    let busy = web.admin()?;
    busy.expect("GET", "/api/v1/auth/me", None, 200)?;
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(500));
        busy.expect("GET", "/api/v1/auth/me", None, 200)?;
    }
    let r = idle.send("GET", "/api/v1/auth/me", None)?;
    assert_eq!(
        (r.status, r.code().as_deref()),
        (401, Some("unauthenticated")),
        "{r:?}"
    );
    assert!(r.body.contains("expired"), "{r:?}");
    Ok(())
}

fn audit(admin: &cpam_tests::web::WebClient, action: &str) -> anyhow::Result<Vec<Value>> {
    let all = admin.get("/api/v1/audit?category=system-messages")?;
    Ok(all
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["action"] == action)
        .cloned()
        .collect())
}

#[test]
fn repeated_failures_lock_the_user_out_and_are_audited() -> anyhow::Result<()> {
    let web = server()?;
    let admin = web.admin()?;
    admin.post(
        "/api/v1/users",
        &json!({ "name": "mallory-target", "password": "right-password", "roles": ["Vendor"] }),
    )?;
    let mut c = web.client()?;
    for i in 0..5 {
        let r = c.login("mallory-target", &format!("guess-{i}"))?;
        assert_eq!(
            (r.status, r.code().as_deref()),
            (401, Some("unauthenticated")),
            "{r:?}"
        );
    }
    // Locked: even the right password is refused, with Retry-After.
    let r = c.login("mallory-target", "right-password")?;
    assert_eq!(
        (r.status, r.code().as_deref()),
        (429, Some("throttled")),
        "{r:?}"
    );
    let retry: u64 = r.header("retry-after").unwrap_or_default().parse()?;
    assert!(retry > 0 && retry <= 15 * 60, "Retry-After {retry}");
    // Another user is not affected.
    web.admin()?;

    let failed = audit(&admin, "web.login.failed")?;
    assert_eq!(
        failed.len(),
        6,
        "5 failures and 1 refused while locked: {failed:#?}"
    );
    assert!(
        failed
            .iter()
            .all(|e| e["detail"]["user"] == "mallory-target")
    );
    assert!(failed.iter().any(|e| e["detail"]["reason"] == "locked out"));
    let locked = audit(&admin, "web.login.locked")?;
    assert_eq!(locked.len(), 1, "{locked:#?}");
    assert_eq!(locked[0]["detail"]["locked"], "user");
    assert!(
        !admin
            .send("GET", "/api/v1/audit", None)?
            .body
            .contains("guess-"),
        "passwords never audited"
    );

    let metrics = web.client()?.send("GET", "/metrics", None)?.body;
    assert!(
        metrics.contains("cpam_logins_total{result=\"failed\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cpam_logins_total{result=\"throttled\"} 1"),
        "{metrics}"
    );
    Ok(())
}

#[test]
fn secrets_never_come_back_out() -> anyhow::Result<()> {
    let web = server()?;
    let admin = web.admin()?;
    let c = admin.post("/api/v1/customers", &json!({ "name": "acme" }))?;
    let cid = c["id"].as_str().unwrap_or_default().to_string();
    let gk = admin.post(
        &format!("/api/v1/customers/{cid}/gatekeepers"),
        &json!({ "name": "gk1" }),
    )?;
    let gid = gk["id"].as_str().unwrap_or_default().to_string();
    let code = admin.post(
        &format!("/api/v1/gatekeepers/{gid}/registration-code"),
        &json!({}),
    )?;
    let code = code["code"].as_str().unwrap_or_default().to_string();
    assert!(code.len() >= 20, "{code}");
    let token = admin.post("/api/v1/tokens", &json!({ "name": "ci" }))?;
    let token = token["token"].as_str().unwrap_or_default().to_string();
    assert!(token.starts_with("cpam_tok_"), "{token}");
    admin.post(
        "/api/v1/users",
        &json!({ "name": "vera", "password": "vera-secret-pw", "roles": ["Vendor"], "customers": [cid] }),
    )?;

    let users = admin.send("GET", "/api/v1/users", None)?.body;
    assert!(
        users.contains("vera") && !users.contains("argon2") && !users.contains("password"),
        "{users}"
    );
    let tokens = admin.send("GET", "/api/v1/tokens", None)?.body;
    assert!(
        tokens.contains("ci") && !tokens.contains(&token),
        "{tokens}"
    );
    let gk_now = admin
        .send("GET", &format!("/api/v1/gatekeepers/{gid}"), None)?
        .body;
    assert!(!gk_now.contains(&code), "{gk_now}");
    for format in ["json", "csv", "jsonl"] {
        let log = admin
            .send("GET", &format!("/api/v1/audit?format={format}"), None)?
            .body;
        assert!(
            log.contains("admin.gatekeeper.code"),
            "{format}: the code's issue is audited"
        );
        for secret in [
            &code,
            &token,
            &ADMIN_PASSWORD.to_string(),
            &"vera-secret-pw".to_string(),
        ] {
            assert!(
                !log.contains(secret.as_str()),
                "{format} audit export holds a secret"
            );
        }
    }
    let logs = web.logs();
    for secret in [&code, &token, &"vera-secret-pw".to_string()] {
        assert!(
            !logs.contains(secret.as_str()),
            "the server log holds a secret"
        );
    }
    Ok(())
}

/// Reads `resp` (an event stream) until it ends; tells `done` whether it
/// ended cleanly.
fn drain(mut resp: reqwest::blocking::Response) -> std::sync::mpsc::Receiver<bool> {
    let (done, ended) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::Read as _;
        let mut buf = [0u8; 4096];
        loop {
            match resp.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(_) => {
                    let _ = done.send(false);
                    return;
                }
            }
        }
        let _ = done.send(true);
    });
    ended
}

/// An open event stream stops when its caller's rights go: the console
/// session signed out, the user disabled, their role changed.
#[test]
fn event_streams_end_when_the_callers_rights_go() -> anyhow::Result<()> {
    let web = server()?;
    let admin = web.admin()?;
    let cid = admin.post("/api/v1/customers", &json!({ "name": "acme" }))?["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut opened = Vec::new();
    for name in ["lou", "dee", "rho"] {
        let id = admin.post(
            "/api/v1/users",
            &json!({ "name": name, "password": "stream-password", "roles": ["Auditor"], "customers": [cid] }),
        )?["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut c = web.client()?;
        c.login(name, "stream-password")?.expect(200, name)?;
        let resp = c.request("GET", "/api/v1/events", None, true)?.send()?;
        assert_eq!(resp.status().as_u16(), 200, "{name}");
        opened.push((name, id, c, drain(resp)));
    }
    // Nothing ends a stream while its caller's rights hold.
    for (name, _, _, ended) in &opened {
        assert!(
            ended.recv_timeout(Duration::from_secs(3)).is_err(),
            "{name}'s stream ended on its own"
        );
    }
    for (name, id, c, ended) in opened {
        let what = match name {
            "lou" => {
                c.send("POST", "/api/v1/auth/logout", None)?
                    .expect(204, "logout")?;
                "signing out"
            }
            "dee" => {
                admin.expect(
                    "PATCH",
                    &format!("/api/v1/users/{id}"),
                    Some(&json!({ "disabled": true })),
                    200,
                )?;
                "disabling the user"
            }
            _ => {
                admin.expect(
                    "PATCH",
                    &format!("/api/v1/users/{id}"),
                    Some(&json!({ "roles": ["Vendor"] })),
                    200,
                )?;
                "a role change"
            }
        };
        assert_eq!(
            ended.recv_timeout(Duration::from_secs(10)).ok(),
            Some(true),
            "{name}'s event stream still open 10 s after {what}"
        );
    }
    Ok(())
}
