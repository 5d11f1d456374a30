//! The vault, checkouts and master passwords through the real binaries:
//! `cpam-server vault set` stores a credential encrypted, a vendor checks
//! it out and in with `cpam-connect`, an administrator lists and revokes
//! checkouts, the canary password never reaches the database file or a
//! log, and a wrong or missing vault key file refuses the server's start
//! without touching the file.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use cpam_tests::bins::bin_path;
use cpam_tests::cpam::{Deployment, SSHD_PORT, as_list, json_str, parse_json};
use serde_json::Value;

const CANARY: &str = "canary-V4ult-9d1c7e";

/// Runs `cmd` with `input` on stdin; (exit success, stdout, stderr).
fn run_with_stdin(mut cmd: Command, input: &str) -> anyhow::Result<(bool, String, String)> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawn")?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(input.as_bytes())?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            child.kill()?;
            bail!("{cmd:?} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn server_cmd(d: &Deployment, args: &[&str]) -> anyhow::Result<Command> {
    let mut c = Command::new(bin_path("cpam-server")?);
    c.args(args).arg("--data-dir").arg(&d.data_dir);
    Ok(c)
}

/// `cpam-connect --profile PROFILE ARGS` in the vendor namespace.
fn connect(
    d: &Deployment,
    profile: &Path,
    args: &[&str],
) -> anyhow::Result<cpam_tests::process::Output> {
    let mut c = d.topo.vendor.command(bin_path("cpam-connect")?);
    c.arg("--profile").arg(profile).args(args);
    d.run(&format!("connect-{}", args.join("-")), c)
}

fn connect_json(d: &Deployment, profile: &Path, args: &[&str]) -> anyhow::Result<Value> {
    let mut args = args.to_vec();
    args.push("--json");
    let out = connect(d, profile, &args)?.ok(&format!("cpam-connect {}", args.join(" ")))?;
    parse_json(&out.stdout)
}

/// The checkouts `cpam-server checkouts list` shows for `user`.
fn checkouts(d: &Deployment, user: &str) -> anyhow::Result<Vec<Value>> {
    as_list(d.admin_json(&["checkouts", "list", "--user", user])?)
}

/// Every byte of the SQLite database (with its WAL) holds no `needle`.
fn assert_not_in_database(d: &Deployment, needle: &str) -> anyhow::Result<()> {
    for name in ["cpam.db", "cpam.db-wal", "cpam.db-shm"] {
        let path = d.data_dir.join(name);
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{} holds the canary",
            path.display()
        );
    }
    Ok(())
}

#[test]
fn a_vendor_checks_a_credential_out_and_in_and_the_secret_stays_sealed() -> anyhow::Result<()> {
    let mut d = Deployment::start()?;
    let target = format!("127.0.0.1:{SSHD_PORT}");
    d.admin_ok(&[
        "service",
        "add",
        "--customer",
        "acme",
        "box",
        "--target",
        &target,
        "--kind",
        "ssh",
    ])?;
    d.admin_ok(&[
        "grant",
        "add",
        "--user",
        "vendor",
        "--customer",
        "acme",
        "--service",
        "box",
    ])?;
    let key = std::fs::read(d.data_dir.join("vault.key"))?;
    assert_eq!(key.len(), 65, "init writes 32 bytes as hex and a newline");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(d.data_dir.join("vault.key"))?
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Without a checkout, a session to the service is refused and audited.
    let profile = d.profile.clone();
    let port = d.forward(&profile, "box")?;
    let seq = d.audit_seq()?;
    d.expect_ssh_refused_on(port, "a session without a checkout")?;
    let refusal = d.expect_refusal_audited(seq, "a session without a checkout")?;
    assert_eq!(refusal["detail"]["reason"], "no_checkout", "{refusal}");

    // A checkout of a service without a credential is refused.
    let out = connect(&d, &d.profile, &["checkout", "box"])?;
    assert!(!out.success(), "checked out a service without credential");
    assert!(out.stderr.contains("no credential"), "{}", out.stderr);

    // The operator stores the credential; only its description comes back.
    let cmd = server_cmd(
        &d,
        &[
            "vault",
            "set",
            "box@acme",
            "--username",
            "root",
            "--password-stdin",
            "--max-checkout",
            "2h",
            "--json",
        ],
    )?;
    let (ok, stdout, stderr) = run_with_stdin(cmd, &format!("{CANARY}\n"))?;
    assert!(ok, "vault set failed: {stderr}");
    assert!(!stdout.contains(CANARY) && !stderr.contains(CANARY));
    let info = parse_json(&stdout)?;
    assert_eq!(info["username"], "root");
    assert_eq!(info["kind"], "password");
    let shown = d.admin_json(&["vault", "info"])?;
    assert_eq!(shown["credentials"][0]["service"], "box");
    assert_eq!(shown["credentials"][0]["max_checkout_secs"], 7200);
    assert!(!shown.to_string().contains(CANARY));

    // Over the limit is refused; within it, the vendor holds a checkout.
    let out = connect(&d, &d.profile, &["checkout", "box", "--for", "3h"])?;
    assert!(!out.success());
    assert!(out.stderr.contains("at most 2h"), "{}", out.stderr);
    let c = connect_json(&d, &d.profile, &["checkout", "box", "--for", "30m"])?;
    assert_eq!(c["status"], "active");
    let id = json_str(&c, "id")?;
    let listed = checkouts(&d, "vendor")?;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["status"], "active");
    let mine = connect_json(&d, &d.profile, &["checkouts"])?;
    assert_eq!(mine["checkouts"][0]["id"], id.as_str());

    // Checked in, it ends; a second check-in finds nothing to end.
    let c = connect_json(&d, &d.profile, &["checkin", "box"])?;
    assert_eq!(c["status"], "checked_in");
    assert_eq!(checkouts(&d, "vendor")?[0]["status"], "checked_in");
    assert!(!connect(&d, &d.profile, &["checkin", "box"])?.success());

    // An administrator revokes the next one.
    let c = connect_json(&d, &d.profile, &["checkout", "box"])?;
    let id = json_str(&c, "id")?;
    d.admin_ok(&["checkouts", "revoke", &id, "--reason", "incident"])?;
    assert_eq!(checkouts(&d, "vendor")?[0]["status"], "revoked");

    // Rotation keeps the credential and moves it to a new data key.
    let r = d.admin_json(&["vault", "rotate"])?;
    assert_eq!(r["version"], 2);
    assert_eq!(r["reencrypted"], 1);
    assert_eq!(
        d.admin_json(&["vault", "info"])?["credentials"][0]["key_version"],
        2
    );

    let actions: Vec<String> = d
        .audit()?
        .iter()
        .filter_map(|r| r["action"].as_str().map(str::to_string))
        .collect();
    for a in [
        "admin.vault.set",
        "checkout.refused",
        "checkout.start",
        "checkout.end",
        "checkout.revoke",
        "admin.vault.rotate",
    ] {
        assert!(
            actions.iter().any(|x| x == a),
            "{a} not audited: {actions:?}"
        );
    }
    let audit = serde_json::to_string(&d.audit()?)?;
    assert!(!audit.contains(CANARY), "the canary reached the audit log");
    assert_not_in_database(&d, CANARY)?;
    assert!(!d.logs().contains(CANARY), "the canary reached a log");
    d.expect_audit_intact()?;
    Ok(())
}

#[test]
fn master_passwords_are_set_by_the_vendor_and_cleared_by_an_admin() -> anyhow::Result<()> {
    let d = Deployment::start()?;
    // `vendor` has no login password: nothing proves who sets it.
    let mut c = d.topo.vendor.command(bin_path("cpam-connect")?);
    c.arg("--profile")
        .arg(&d.profile)
        .args(["master-password", "set"]);
    let (ok, _, stderr) = run_with_stdin(c, "whatever\nmaster-pass-1\n")?;
    assert!(!ok);
    assert!(stderr.contains("neither a login password"), "{stderr}");

    // A vendor with a login password sets one with it.
    let cmd = server_cmd(&d, &["user", "add", "vera", "--password-stdin"])?;
    let (ok, _, stderr) = run_with_stdin(cmd, "vera login pass\n")?;
    assert!(ok, "{stderr}");
    let profile = d.path().join("vera.json");
    let addr = d.server_addr.to_string();
    d.admin_ok(&[
        "profile",
        "export",
        "--user",
        "vera",
        "--gatekeeper",
        "gk1",
        "--out",
        &profile.to_string_lossy(),
        "--server-address",
        &addr,
    ])?;
    let set = |input: &str| -> anyhow::Result<(bool, String)> {
        let mut c = d.topo.vendor.command(bin_path("cpam-connect")?);
        c.arg("--profile")
            .arg(&profile)
            .args(["master-password", "set"]);
        let (ok, stdout, stderr) = run_with_stdin(c, input)?;
        Ok((ok, format!("{stdout}{stderr}")))
    };
    let (ok, out) = set("wrong login\nmaster-pass-1\n")?;
    assert!(!ok && out.contains("wrong"), "{out}");
    let (ok, out) = set("vera login pass\nmaster-pass-1\n")?;
    assert!(ok, "{out}");
    assert!(out.contains("master password set"), "{out}");
    let (ok, out) = set("master-pass-1\nmaster-pass-2\n")?;
    assert!(ok, "the current master password proves the user too: {out}");

    d.admin_ok(&["user", "reset-master-password", "vera"])?;
    let out = d.admin(&["user", "reset-master-password", "vera"])?;
    assert!(!out.success(), "a second reset clears nothing");
    let actions = serde_json::to_string(&d.audit()?)?;
    for a in [
        "master_password.set",
        "master_password.set_refused",
        "admin.master_password.reset",
    ] {
        assert!(actions.contains(a), "{a} not audited");
    }
    assert!(
        !actions.contains("master-pass-"),
        "a password reached the audit log"
    );
    assert_not_in_database(&d, "master-pass-2")?;
    Ok(())
}

#[test]
fn a_wrong_or_missing_vault_key_refuses_the_start_and_the_file_stays() -> anyhow::Result<()> {
    let mut d = Deployment::start()?;
    let target = format!("127.0.0.1:{SSHD_PORT}");
    d.admin_ok(&[
        "service",
        "add",
        "--customer",
        "acme",
        "box",
        "--target",
        &target,
        "--kind",
        "ssh",
    ])?;
    let cmd = server_cmd(
        &d,
        &[
            "vault",
            "set",
            "box@acme",
            "--username",
            "root",
            "--password-stdin",
        ],
    )?;
    let (ok, _, stderr) = run_with_stdin(cmd, &format!("{CANARY}\n"))?;
    assert!(ok, "{stderr}");
    d.kill_server()?;

    let key_path = d.data_dir.join("vault.key");
    let good = std::fs::read(&key_path)?;
    let wrong = format!("{}\n", "ab".repeat(32));
    std::fs::write(&key_path, &wrong)?;
    let start = |name: &str| -> anyhow::Result<cpam_tests::process::Output> {
        let listen = format!("{}:0", d.topo.vendor_addr);
        let mut c = d.topo.vendor.command(bin_path("cpam-server")?);
        c.args(["run", "--listen", &listen, "--data-dir"])
            .arg(&d.data_dir);
        d.run(name, c)
    };
    let out = start("server-wrong-key")?;
    assert!(!out.success(), "started with a wrong vault key");
    assert!(out.stderr.contains("vault.key"), "{}", out.stderr);
    assert!(out.stderr.contains("does not unseal"), "{}", out.stderr);
    assert_eq!(
        std::fs::read(&key_path)?,
        wrong.as_bytes(),
        "the key file was changed"
    );

    std::fs::remove_file(&key_path)?;
    let out = start("server-missing-key")?;
    assert!(!out.success(), "started without its vault key");
    assert!(
        out.stderr.contains("vault.key") && out.stderr.contains("missing"),
        "{}",
        out.stderr
    );
    assert!(!key_path.exists(), "a missing key file was replaced");
    // Admin commands that need the vault refuse alike.
    let out = d.admin(&["vault", "info"])?;
    assert!(
        !out.success() && out.stderr.contains("vault.key"),
        "{}",
        out.stderr
    );

    std::fs::write(&key_path, &good)?;
    d.restart_server()?;
    let info = d.admin_json(&["vault", "info"])?;
    assert_eq!(info["credentials"][0]["username"], "root");
    assert_not_in_database(&d, CANARY)?;
    assert!(!d.logs().contains(CANARY));
    Ok(())
}

#[test]
fn credentials_and_checkouts_through_the_api() -> anyhow::Result<()> {
    use cpam_tests::web::{WebOptions, WebServer};
    use serde_json::json;

    let web = WebServer::start(WebOptions::default())?;
    let admin = web.admin()?;
    let customer = admin.post("/api/v1/customers", &json!({ "name": "acme" }))?;
    let cid = json_str(&customer, "id")?;
    let gk = admin.post(
        &format!("/api/v1/customers/{cid}/gatekeepers"),
        &json!({ "name": "gk" }),
    )?;
    let gk = json_str(&gk, "id")?;
    let svc = admin.post(
        &format!("/api/v1/gatekeepers/{gk}/services"),
        &json!({ "name": "box", "kind": "ssh", "host": "10.0.0.7" }),
    )?;
    assert_eq!(svc["port"], 22, "ssh services default to port 22");
    let sid = json_str(&svc, "id")?;
    let user = json!({ "name": "vera", "password": "vera login pass", "roles": ["Vendor"], "customers": [cid] });
    let vera_id = json_str(&admin.post("/api/v1/users", &user)?, "id")?;
    admin.post(
        "/api/v1/grants",
        &json!({ "user": "vera", "service_id": sid, "hours": 1 }),
    )?;
    let mut c = Command::new(bin_path("cpam-server")?);
    c.args([
        "vault",
        "set",
        "box@acme",
        "--username",
        "root",
        "--password-stdin",
        "--data-dir",
    ])
    .arg(&web.data_dir);
    let (ok, _, stderr) = run_with_stdin(c, &format!("{CANARY}\n"))?;
    assert!(ok, "{stderr}");

    let mut vera = web.client()?;
    vera.login("vera", "vera login pass")?
        .expect(200, "vera signs in")?;
    let creds = vera.get("/api/v1/credentials")?;
    assert_eq!(creds[0]["service"], "box");
    assert_eq!(creds[0]["username"], "root");
    assert!(creds[0]["checkout"].is_null());
    assert!(!creds.to_string().contains(CANARY));
    // Nobody else's listing shows it: the admin holds no grant.
    assert_eq!(admin.get("/api/v1/credentials")?, json!([]));

    let r = vera.send(
        "POST",
        "/api/v1/checkouts",
        Some(&json!({ "service_id": sid, "duration_secs": 100_000 })),
    )?;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = vera.send(
        "POST",
        "/api/v1/checkouts",
        Some(&json!({ "service_id": "svc_missing" })),
    )?;
    assert_eq!(r.status, 404, "{}", r.body);
    let c = vera.post(
        "/api/v1/checkouts",
        &json!({ "service_id": sid, "duration_secs": 600 }),
    )?;
    assert_eq!(c["status"], "active");
    let id = json_str(&c, "id")?;
    let r = vera.send(
        "POST",
        "/api/v1/checkouts",
        Some(&json!({ "service_id": sid })),
    )?;
    assert_eq!(
        r.status, 409,
        "a second checkout while one is active: {}",
        r.body
    );
    assert_eq!(
        vera.get("/api/v1/credentials")?[0]["checkout"]["id"],
        id.as_str()
    );
    assert_eq!(
        vera.get("/api/v1/checkouts?state=active")?[0]["id"],
        id.as_str()
    );
    assert_eq!(admin.get("/api/v1/checkouts")?[0]["user"], "vera");
    vera.expect("DELETE", &format!("/api/v1/checkouts/{id}"), None, 204)?;
    assert_eq!(vera.get("/api/v1/checkouts")?[0]["status"], "checked_in");
    assert_eq!(vera.get("/api/v1/checkouts?state=active")?, json!([]));
    let c = vera.post("/api/v1/checkouts", &json!({ "service_id": sid }))?;
    admin.expect(
        "DELETE",
        &format!("/api/v1/checkouts/{}", json_str(&c, "id")?),
        None,
        204,
    )?;
    assert_eq!(vera.get("/api/v1/checkouts")?[0]["status"], "revoked");

    // The master password: proven with the login password, cleared by an admin.
    let set = |current: &str, new: &str| -> anyhow::Result<u16> {
        let body = json!({ "current": current, "new": new });
        Ok(vera
            .send("PUT", "/api/v1/me/master-password", Some(&body))?
            .status)
    };
    assert_eq!(
        set("wrong", "master-pass-1")?,
        403,
        "a wrong proof, not a signed-out caller"
    );
    assert_eq!(set("vera login pass", "short")?, 400);
    assert_eq!(set("vera login pass", "master-pass-1")?, 204);
    admin.expect(
        "DELETE",
        &format!("/api/v1/users/{vera_id}/master-password"),
        None,
        204,
    )?;
    admin.expect(
        "DELETE",
        &format!("/api/v1/users/{vera_id}/master-password"),
        None,
        409,
    )?;
    assert!(!web.logs().contains(CANARY));
    Ok(())
}
