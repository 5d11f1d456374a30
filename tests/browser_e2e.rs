//! The web console in real headless Chromium (Debian's `chromium` driven by
//! `chromedriver` over WebDriver), against a real `cpam-server run`, a real
//! `cpam-gatekeeper` in a customer namespace with a stock `sshd` target, and
//! a real `cpam-connect` + stock `ssh` using the profile the console
//! downloaded. Screenshots of every step go to
//! `<target>/test-artifacts/browser/`. Each flow runs twice: with the
//! console at `/`, and below the base path `/pam` (screenshots `pam-*`);
//! the main flow a third time in `examples/console_mount`'s own app
//! (screenshots `mount-*`).

use std::time::Duration;

use cpam_tests::browser::{Browser, BrowserOptions};
use cpam_tests::console::{ADMIN, ADMIN_PASSWORD, Console};
use cpam_tests::cpam::SSHD_PORT;
use cpam_tests::process::Child;
use serde_json::{Value, json};

mod browser_psm;
mod browser_rdp;
mod browser_rdp_web;

const LIVE: Duration = Duration::from_secs(30);
const VENDOR: &str = "vendor1";
const VENDOR_PASSWORD: &str = "vendor password 1";

fn t(name: &str) -> String {
    format!("[data-test=\"{name}\"]")
}

fn browser(c: &Console, prefix: &str) -> anyhow::Result<Browser> {
    let prefix = match c.served_by {
        "" => prefix.to_string(),
        served => format!("{served}-{prefix}"),
    };
    Browser::start(BrowserOptions {
        shot_prefix: prefix,
        trust_cert_pem: Some(c.cert.clone()),
    })
}

fn sign_in(b: &Browser, url: &str, user: &str, password: &str) -> anyhow::Result<()> {
    b.open_console(url, &t("login-username"))?;
    b.fill(&t("login-username"), user)?;
    b.fill(&t("login-password"), password)?;
    b.click(&t("login-submit"))?;
    b.wait_text(&t("signed-in-user"), user, LIVE)?;
    Ok(())
}

fn sign_out(b: &Browser) -> anyhow::Result<()> {
    b.click(&t("user-menu"))?;
    b.click(&t("logout"))?;
    b.find(&t("login-username"))?;
    Ok(())
}

/// Marks the current document; [`same_document`] fails after a reload.
fn mark_document(b: &Browser) -> anyhow::Result<()> {
    b.execute("window.__cpamNoReload = 'kept';", json!([]))?;
    Ok(())
}

fn same_document(b: &Browser) -> anyhow::Result<bool> {
    Ok(b.execute("return window.__cpamNoReload === 'kept';", json!([]))? == json!(true))
}

/// `fetch` from the page (with the page's cookie): `[status, body]`.
fn page_fetch(b: &Browser, method: &str, path: &str) -> anyhow::Result<(u64, Value)> {
    let v = b.execute_async(
        "const done = arguments[arguments.length - 1];\
         fetch(new URL(arguments[1].replace(/^\\//, ''), document.baseURI),\
               {method: arguments[0], credentials: 'same-origin'})\
           .then(async r => done([r.status, await r.text()]))\
           .catch(e => done([0, String(e)]));",
        json!([method, path]),
    )?;
    let status = v[0].as_u64().unwrap_or(0);
    let body = v[1].as_str().unwrap_or_default();
    Ok((
        status,
        serde_json::from_str(body).unwrap_or(Value::String(body.into())),
    ))
}

/// Every `data-action` in the Admin Log table now on the page.
fn audit_actions(b: &Browser) -> anyhow::Result<Vec<String>> {
    let v = b.execute(
        "return [...document.querySelectorAll('[data-test=audit-row]')].map(r => r.dataset.action);",
        json!([]),
    )?;
    Ok(v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

#[test]
fn console_flow_from_customer_to_terminated_session() -> anyhow::Result<()> {
    console_flow_from_customer_to_terminated_session_in(Console::start()?)
}

#[test]
fn console_flow_from_customer_to_terminated_session_below_pam() -> anyhow::Result<()> {
    console_flow_from_customer_to_terminated_session_in(Console::start_at(Some("/pam"))?)
}

/// The same flow in `examples/console_mount`'s own app, the console under `/pam/`.
#[test]
fn console_flow_from_customer_to_terminated_session_in_the_mount_example() -> anyhow::Result<()> {
    console_flow_from_customer_to_terminated_session_in(Console::start_mount_example()?)
}

fn console_flow_from_customer_to_terminated_session_in(mut c: Console) -> anyhow::Result<()> {
    let mut b = browser(&c, "")?;
    let url = c.url.clone();

    // Sign-in page; a wrong password is refused in the page.
    b.open_console(&url, &t("login-username"))?;
    b.screenshot("login")?;
    b.fill(&t("login-username"), ADMIN)?;
    b.fill(&t("login-password"), "not the password")?;
    b.click(&t("login-submit"))?;
    b.wait_text(&t("login-error"), "Wrong username or password", LIVE)?;
    b.screenshot("login-refused")?;
    sign_in(&b, &url, ADMIN, ADMIN_PASSWORD)?;
    b.find(&t("customers-table-empty"))?;
    b.screenshot("customers-empty")?;

    // A customer, its gatekeeper, a registration code.
    b.click(&t("new-customer"))?;
    b.fill(&t("customer-name"), "acme")?;
    b.screenshot("new-customer")?;
    b.click(&t("customer-create"))?;
    b.wait_text(&t("customer-title"), "acme", LIVE)?;
    b.click(&t("add-gatekeeper"))?;
    b.fill(&t("gatekeeper-name"), "gk1")?;
    b.click(&t("gatekeeper-create"))?;
    b.wait_text(&t("gatekeeper-status"), "Unregistered", LIVE)?;
    assert_eq!(
        b.property(&t("connect"), "disabled")?,
        json!(true),
        "Connect must be disabled while unregistered"
    );
    b.screenshot("gatekeeper-unregistered")?;
    b.click(&t("issue-code"))?;
    let code = b.text(&t("registration-code"))?.trim().to_string();
    assert!(!code.is_empty(), "no registration code on the page");
    let command = b.text(&t("registration-command"))?;
    assert!(
        command.contains("cpam-gatekeeper register")
            && command.contains(&code)
            && command.contains("--server-fingerprint SHA256:"),
        "{command}"
    );
    b.screenshot("registration-code")?;

    // The real gatekeeper registers and connects; the page turns Online by itself.
    mark_document(&b)?;
    c.register_gatekeeper(&code)?;
    c.run_gatekeeper()?;
    b.wait_text(&t("gatekeeper-status"), "Online", LIVE)
        .map_err(|e| anyhow::anyhow!("{e}\n{}", c.logs()))?;
    assert!(
        same_document(&b)?,
        "the page reloaded; the status must arrive live"
    );
    assert_ne!(b.text(&t("gatekeeper-last-contact"))?, "Never");
    b.wait_text(&t("gatekeeper-switch"), "Enabled by the customer", LIVE)?;
    assert_eq!(b.property(&t("connect"), "disabled")?, json!(false));
    b.screenshot("gatekeeper-online")?;

    // The customer switches the gatekeeper off and on; the page mirrors it live.
    c.gatekeeper_switch(false)?;
    b.wait_text(&t("gatekeeper-switch"), "Disabled by the customer", LIVE)
        .map_err(|e| anyhow::anyhow!("{e}\n{}", c.logs()))?;
    b.find(&t("gatekeeper-disabled-notice"))?;
    b.screenshot("customer-switched-off")?;
    c.gatekeeper_switch(true)?;
    b.wait_text(&t("gatekeeper-switch"), "Enabled by the customer", LIVE)?;
    assert!(
        same_document(&b)?,
        "the page reloaded; the switch must arrive live"
    );

    // Opening hours set on the customer side (a whole day that is not today)
    // close the gatekeeper now; the page shows them live, then reopens.
    let days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let today = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        / 86_400
        + 3)
        % 7;
    let other = days[usize::try_from((today + 2) % 7)?];
    c.gatekeeper_schedule(&["--days", other, "--hours", "00:00-00:00"])?;
    b.wait_text(&t("gatekeeper-switch"), "Closed by the customer", LIVE)
        .map_err(|e| anyhow::anyhow!("{e}\n{}", c.logs()))?;
    b.wait_text(
        &t("gatekeeper-schedule"),
        &format!("{other} 00:00-00:00"),
        LIVE,
    )?;
    b.screenshot("customer-opening-hours")?;
    c.gatekeeper_schedule(&["--always"])?;
    b.wait_text(&t("gatekeeper-switch"), "Enabled by the customer", LIVE)?;
    b.wait_text(&t("gatekeeper-schedule"), "Always", LIVE)?;

    // The customer list shows the gatekeeper's state too.
    b.click(&t("nav-customers"))?;
    b.wait_text(
        "[data-test=customer-row][data-name=acme] [data-test=customer-gk-status]",
        "Online",
        LIVE,
    )?;
    b.screenshot("customers")?;
    b.click("[data-test=customer-link][data-name=acme]")?;
    b.find(&t("gatekeeper-card"))?;

    // A service to the customer's sshd.
    b.click(&t("add-service"))?;
    b.fill(&t("service-name"), "ssh")?;
    b.select(&t("service-kind"), "custom")?;
    b.fill(&t("service-host"), "127.0.0.1")?;
    b.fill(&t("service-port"), &SSHD_PORT.to_string())?;
    b.click(&t("service-create"))?;
    b.find("[data-test=service-row][data-name=ssh]")?;
    b.screenshot("service-added")?;

    // A vendor user for acme, with an IP Connect Mode preference.
    b.click(&t("nav-users"))?;
    b.click(&t("new-user"))?;
    b.fill(&t("user-name"), VENDOR)?;
    b.fill(&t("user-password"), VENDOR_PASSWORD)?;
    b.click("[data-test=user-customer][data-name=acme]")?;
    b.screenshot("new-user")?;
    b.click(&t("user-create"))?;
    b.click(&format!("[data-test=user-link][data-name={VENDOR}]"))?;
    b.wait_text(&t("user-roles"), "Vendor", LIVE)?;
    b.click(&t("user-edit"))?;
    b.select(&t("ip-connect-mode"), "driver-with-legacy-fallback")?;
    b.screenshot("user-edit")?;
    b.click(&t("user-save"))?;
    b.wait_text(
        &t("user-mode"),
        "IP Connect Driver with Legacy fallback",
        LIVE,
    )?;
    b.screenshot("user-details")?;

    // Grant the vendor the service.
    b.click(&t("nav-customers"))?;
    b.click("[data-test=customer-link][data-name=acme]")?;
    b.click(&t("add-grant"))?;
    b.fill(&t("grant-user"), VENDOR)?;
    b.click(&t("grant-create"))?;
    b.find(&format!("[data-test=grant-row][data-user={VENDOR}]"))?;
    b.screenshot("grant-added")?;

    // The vendor signs in, sees only their menus, and clicks Connect.
    sign_out(&b)?;
    sign_in(&b, &url, VENDOR, VENDOR_PASSWORD)?;
    for hidden in ["nav-users", "nav-roles", "nav-admin-log", "nav-settings"] {
        assert!(!b.visible(&t(hidden)), "a vendor sees {hidden}");
    }
    b.click("[data-test=customer-link][data-name=acme]")?;
    b.wait_text(&t("gatekeeper-status"), "Online", LIVE)?;
    b.click(&t("connect"))?;
    let profile = b.wait_download(".cpam-profile.json", LIVE)?;
    b.wait_text(&t("connect-command"), "cpam-connect --profile", LIVE)?;
    b.screenshot("vendor-connect")?;
    sign_out(&b)?;

    // The admin watches Sessions while the vendor connects with stock ssh.
    sign_in(&b, &url, ADMIN, ADMIN_PASSWORD)?;
    b.click(&t("nav-sessions"))?;
    b.find(&t("sessions-active-empty"))?;
    // The server nodes: this one, live, with no session yet.
    b.find("[data-test=node-row][data-state=live]")?;
    b.wait_text(&t("node-sessions"), "0", LIVE)?;
    mark_document(&b)?;
    let port = c.forward(&profile, "ssh")?;
    let mut ssh = Child::spawn(
        "ssh-session",
        c.ssh(port, &["echo ready; exec sleep 600"]),
        c.path(),
    )?;
    cpam_tests::wait_until(LIVE, "ssh through the tunnel", || {
        ssh.stdout().contains("ready").then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}\n{}", ssh.logs(), c.logs()))?;
    b.find_within(
        &format!("[data-test=session-row][data-user={VENDOR}]"),
        LIVE,
    )?;
    assert!(
        same_document(&b)?,
        "the page reloaded; sessions must arrive live"
    );
    // The session's node, counted on its row of the nodes table.
    b.wait_text(&t("node-sessions"), "1", LIVE)?;
    b.screenshot("session-live")?;

    // Terminate with a reason: required, then given; ssh ends.
    b.click(&t("session-terminate"))?;
    b.find(&t("confirm-dialog"))?;
    b.click(&t("confirm-ok"))?;
    b.wait_text(&t("confirm-error"), "required", LIVE)?;
    b.fill(&t("confirm-reason"), "maintenance window over")?;
    b.screenshot("terminate-confirm")?;
    b.click(&t("confirm-ok"))?;
    let ended = ssh.wait_timeout(LIVE)?;
    assert!(
        ended.is_some(),
        "ssh still running after terminate\n{}",
        c.logs()
    );
    b.find_within(&t("sessions-active-empty"), LIVE)?;
    b.wait_text(&t("history-reason"), "maintenance window over", LIVE)?;
    b.screenshot("session-terminated")?;
    c.extra.push(ssh);

    // The Admin Log has all of it, and the chain verifies.
    b.click(&t("nav-admin-log"))?;
    b.wait_text(&t("audit-verify-status"), "records intact", LIVE)?;
    b.find(&t("audit-table"))?;
    let actions = audit_actions(&b)?;
    for want in [
        "web.login",
        "web.login.failed",
        "admin.gatekeeper.code",
        "gatekeeper.registered",
        "session.start",
        "admin.session.terminate",
        "session.end",
    ] {
        assert!(
            actions.iter().any(|a| a == want),
            "no {want} in the Admin Log: {actions:?}"
        );
    }
    b.screenshot("admin-log")?;
    b.select(&t("audit-category"), "system-messages")?;
    b.click(&t("audit-apply"))?;
    b.find(&t("audit-table"))?;
    let system = audit_actions(&b)?;
    assert!(
        system.iter().any(|a| a == "gatekeeper.registered"),
        "{system:?}"
    );
    assert!(
        !system.iter().any(|a| a == "web.login"),
        "user activity under system messages: {system:?}"
    );
    b.select(&t("audit-category"), "")?;
    b.fill(&t("audit-user"), VENDOR)?;
    b.click(&t("audit-apply"))?;
    b.wait_text(&t("audit-count"), "entries", LIVE)?;
    b.click(&t("audit-download-csv"))?;
    let csv = std::fs::read_to_string(b.wait_download(".csv", LIVE)?)?;
    assert!(
        csv.contains("session.start") && csv.contains(VENDOR),
        "{csv}"
    );
    b.click(&t("audit-download-jsonl"))?;
    let jsonl = std::fs::read_to_string(b.wait_download(".jsonl", LIVE)?)?;
    for line in jsonl.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)?;
        assert!(v.get("action").is_some(), "{line}");
    }
    assert!(jsonl.contains("session.start"), "{jsonl}");
    b.screenshot("admin-log-filtered")?;

    // The vendor's profile key (from Connect) is on their page; deleting it
    // leaves none.
    b.click(&t("nav-users"))?;
    b.click(&format!("[data-test=user-link][data-name={VENDOR}]"))?;
    b.wait_text(&t("user-keys"), "Profile", LIVE)?;
    b.screenshot("user-keys")?;
    b.click(&t("key-delete"))?;
    b.find(&t("confirm-dialog"))?;
    b.click(&t("confirm-ok"))?;
    b.find_within(&t("keys-table-empty"), LIVE)?;
    Ok(())
}

#[test]
fn vendor_sees_no_admin_menus_and_the_api_refuses_them() -> anyhow::Result<()> {
    vendor_sees_no_admin_menus_and_the_api_refuses_them_in(Console::start()?)
}

#[test]
fn vendor_sees_no_admin_menus_and_the_api_refuses_them_below_pam() -> anyhow::Result<()> {
    vendor_sees_no_admin_menus_and_the_api_refuses_them_in(Console::start_at(Some("/pam"))?)
}

fn vendor_sees_no_admin_menus_and_the_api_refuses_them_in(c: Console) -> anyhow::Result<()> {
    c.admin(
        &[
            "user",
            "add",
            "vera",
            "--role",
            "Vendor",
            "--password-stdin",
        ],
        Some("vera password 1"),
    )?;
    let mut b = browser(&c, "vendor")?;
    sign_in(&b, &c.url, "vera", "vera password 1")?;
    b.find(&t("customers-table-empty"))?;
    for shown in ["nav-customers", "nav-sessions", "nav-download-ipconnect"] {
        assert!(b.visible(&t(shown)), "a vendor does not see {shown}");
    }
    for hidden in [
        "nav-users",
        "nav-roles",
        "nav-admin-log",
        "nav-settings",
        "nav-system-admin",
        "new-customer",
    ] {
        assert!(!b.visible(&t(hidden)), "a vendor sees {hidden}");
    }
    b.screenshot("menus")?;
    for path in [
        "/api/v1/audit",
        "/api/v1/users",
        "/api/v1/audit/verify",
        "/api/v1/settings",
    ] {
        let (status, body) = page_fetch(&b, "GET", path)?;
        assert_eq!(status, 403, "GET {path} as a vendor: {body}");
        assert_eq!(
            body["error"]["code"], "permission_denied",
            "GET {path}: {body}"
        );
    }
    // Typing the Admin Log's address explains the refusal instead of showing the log.
    b.goto(&format!("{}/ui/admin-log", c.url))?;
    b.wait_text(&t("page-forbidden"), "VIEW_ADMIN_LOG_USER_ACTIVITY", LIVE)?;
    assert!(!b.visible(&t("audit-table")));
    b.screenshot("admin-log-refused")?;

    // Repeated failed sign-ins lock the name out, and the form says so.
    sign_out(&b)?;
    let mut locked = false;
    for _ in 0..8 {
        b.fill(&t("login-username"), "mallory")?;
        b.fill(&t("login-password"), "guess")?;
        b.click(&t("login-submit"))?;
        let msg = b.wait_text(&t("login-error"), "", LIVE)?;
        if msg.contains("locked") {
            locked = true;
            break;
        }
        assert!(msg.contains("Wrong username or password"), "{msg}");
    }
    assert!(locked, "no lockout message after 8 failed sign-ins");
    b.screenshot("sign-in-locked")?;
    Ok(())
}

/// `fetch` from the page with a bearer token and no cookie: the status.
fn token_fetch(b: &Browser, path: &str, token: &str) -> anyhow::Result<u64> {
    let v = b.execute_async(
        "const done = arguments[arguments.length - 1];\
         fetch(new URL(arguments[0].replace(/^\\//, ''), document.baseURI),\
               {credentials: 'omit', headers: {Authorization: 'Bearer ' + arguments[1]}})\
           .then(r => done(r.status)).catch(() => done(0));",
        json!([path, token]),
    )?;
    Ok(v.as_u64().unwrap_or(0))
}

#[test]
fn roles_settings_tokens_and_ip_connect_download() -> anyhow::Result<()> {
    roles_settings_tokens_and_ip_connect_download_in(Console::start()?)
}

#[test]
fn roles_settings_tokens_and_ip_connect_download_below_pam() -> anyhow::Result<()> {
    roles_settings_tokens_and_ip_connect_download_in(Console::start_at(Some("/pam"))?)
}

fn roles_settings_tokens_and_ip_connect_download_in(c: Console) -> anyhow::Result<()> {
    let mut b = browser(&c, "admin")?;
    sign_in(&b, &c.url, ADMIN, ADMIN_PASSWORD)?;

    // Roles: built-in ones are read-only; a custom role is created and deleted.
    b.click(&t("nav-roles"))?;
    b.find("[data-test=role-row][data-name=Vendor]")?;
    assert!(
        !b.visible("[data-test=role-row][data-name=Vendor] [data-test=role-edit]"),
        "a built-in role offers Edit"
    );
    b.click(&t("new-role"))?;
    b.fill(&t("role-name"), "Log Reader")?;
    b.click("[data-test=role-perm][value=VIEW_ADMIN_LOG_USER_ACTIVITY]")?;
    b.click("[data-test=role-perm][value=VERIFY_AUDIT_LOG]")?;
    b.screenshot("new-role")?;
    b.click(&t("role-create"))?;
    let row = "[data-test=role-row][data-name='Log Reader']";
    b.wait_text(row, "VERIFY_AUDIT_LOG", LIVE)?;
    b.screenshot("roles")?;
    b.click(&format!("{row} [data-test=role-delete]"))?;
    b.click(&t("confirm-ok"))?;
    crate_wait(|| !b.visible(row), "the deleted role to disappear")?;

    // Settings: the server-wide IP Connect mode is saved.
    b.click(&t("nav-settings"))?;
    b.select(&t("settings-ip-connect-mode"), "driver")?;
    b.click(&t("settings-save"))?;
    b.wait_text(&t("toast"), "saved", LIVE)?;
    b.refresh()?;
    b.find(&t("settings-ip-connect-mode"))?;
    assert_eq!(
        b.property(&t("settings-ip-connect-mode"), "value")?,
        json!("driver")
    );
    b.screenshot("settings")?;

    // API tokens: shown once, work as a bearer token, stop working when revoked.
    b.click(&t("user-menu"))?;
    b.click(&t("menu-tokens"))?;
    b.fill(&t("token-name"), "nightly export")?;
    b.click(&t("token-create"))?;
    let token = b.text(&t("token-value"))?.trim().to_string();
    assert!(token.starts_with("cpam_tok_"), "{token}");
    assert_eq!(token_fetch(&b, "/api/v1/auth/me", &token)?, 200);
    b.screenshot("token-created")?;
    b.click("[data-test=token-row][data-name=\"nightly export\"] [data-test=token-revoke]")?;
    b.click(&t("confirm-ok"))?;
    b.find(&t("tokens-table-empty"))?;
    assert_eq!(token_fetch(&b, "/api/v1/auth/me", &token)?, 401);

    // Help -> Download IP Connect: the listed file downloads whole.
    b.click(&t("nav-download-ipconnect"))?;
    b.find(&t("ipconnect-row"))?;
    let file = b
        .execute(
            "return document.querySelector('[data-test=ipconnect-row]').dataset.file;",
            json!([]),
        )?
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(file.starts_with("cpam-connect"), "{file}");
    b.screenshot("download-ip-connect")?;
    b.click(&t("ipconnect-download"))?;
    let got = b.wait_download(&file, Duration::from_secs(120))?;
    let (_, list) = page_fetch(&b, "GET", "/api/v1/downloads/ipconnect")?;
    let size = list
        .as_array()
        .and_then(|a| a.iter().find(|d| d["file"] == json!(file)))
        .and_then(|d| d["size"].as_u64())
        .unwrap_or(0);
    cpam_tests::wait_until(Duration::from_secs(60), "the whole download", || {
        (std::fs::metadata(&got).ok()?.len() == size).then_some(())
    })?;
    Ok(())
}

fn crate_wait(mut f: impl FnMut() -> bool, what: &str) -> anyhow::Result<()> {
    cpam_tests::wait_until(LIVE, what, || f().then_some(()))
}

/// The harness itself: a page loads, a script runs on click, a screenshot
/// is a PNG in the artifacts directory.
#[test]
fn browser_drives_a_page_and_saves_screenshots() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("page.html"),
        "<!doctype html><title>probe</title><h1 data-test=\"h\">before</h1>\
         <button data-test=\"b\">go</button><script src=\"page.js\"></script>",
    )?;
    std::fs::write(
        dir.path().join("page.js"),
        "document.querySelector('[data-test=b]').addEventListener('click', () => {\
         document.querySelector('[data-test=h]').textContent = 'after'; });",
    )?;
    let mut b = Browser::start(BrowserOptions {
        shot_prefix: "harness".into(),
        ..Default::default()
    })?;
    b.goto(&format!("file://{}/page.html", dir.path().display()))?;
    assert_eq!(b.text("[data-test=h]")?, "before");
    b.click("[data-test=b]")?;
    b.wait_text("[data-test=h]", "after", Duration::from_secs(5))?;
    let shot = b.screenshot("probe")?;
    assert!(std::fs::metadata(&shot)?.len() > 100, "{}", shot.display());
    Ok(())
}

#[test]
fn a_vendor_checks_a_credential_out_and_in_on_the_credentials_page() -> anyhow::Result<()> {
    const CANARY: &str = "canary-Br0wser-4e2a";
    let c = Console::start()?;
    c.admin(&["customer", "add", "acme"], None)?;
    c.admin(
        &[
            "service",
            "add",
            "--customer",
            "acme",
            "box",
            "--target",
            "10.0.0.7:22",
            "--kind",
            "ssh",
        ],
        None,
    )?;
    c.admin(
        &[
            "user",
            "add",
            "vera",
            "--role",
            "Vendor",
            "--password-stdin",
        ],
        Some("vera password 1"),
    )?;
    c.admin(
        &[
            "grant",
            "add",
            "--user",
            "vera",
            "--customer",
            "acme",
            "--service",
            "box",
            "--for",
            "8h",
        ],
        None,
    )?;
    c.admin(
        &[
            "vault",
            "set",
            "box@acme",
            "--username",
            "root",
            "--password-stdin",
        ],
        Some(CANARY),
    )?;
    let mut b = browser(&c, "credentials")?;
    sign_in(&b, &c.url, "vera", "vera password 1")?;
    b.click(&t("nav-credentials"))?;
    b.wait_text(&t("credentials-table"), "root", LIVE)?;
    b.screenshot("list")?;
    b.select(&t("checkout-length"), "1800")?;
    b.click(&t("checkout"))?;
    b.wait_text(&t("checkout-status"), "checked out", LIVE)?;
    b.screenshot("checked-out")?;
    let listed: Value = serde_json::from_str(&c.admin(&["checkouts", "list", "--json"], None)?)?;
    assert_eq!(listed[0]["status"], "active", "{listed}");
    assert_eq!(listed[0]["user_name"], "vera", "{listed}");
    b.click(&t("checkin"))?;
    b.find_within(&t("checkout"), LIVE)?;
    let listed: Value = serde_json::from_str(&c.admin(&["checkouts", "list", "--json"], None)?)?;
    assert_eq!(listed[0]["status"], "checked_in", "{listed}");

    b.fill(&t("master-current"), "vera password 1")?;
    b.fill(&t("master-new"), "vera master 1")?;
    b.fill(&t("master-again"), "vera master 1")?;
    b.click(&t("master-save"))?;
    b.wait_text(&t("toast"), "Master password set", LIVE)?;
    b.screenshot("master-password")?;
    assert!(!b.page_text().contains(CANARY), "the page shows the secret");
    let audit = c.admin(&["audit", "list", "--json"], None)?;
    for action in ["checkout.start", "checkout.end", "master_password.set"] {
        assert!(audit.contains(action), "{action} not audited");
    }
    Ok(())
}
