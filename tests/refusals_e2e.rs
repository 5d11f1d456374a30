//! What cpam must refuse. Each case: the attempt fails, it is audited, and
//! the server keeps serving (a normal session works afterwards).

use std::path::Path;
use std::time::Duration;

use cpam_tests::cpam::{Deployment, SSHD_DENIED_PORT, json_str, parse_json};
use cpam_tests::sshd::{keygen, ssh_cmd};
use serde_json::Value;

/// `cpam-gatekeeper register` with `code` into a fresh state dir `name`.
fn register(d: &Deployment, name: &str, code: &str) -> anyhow::Result<cpam_tests::process::Output> {
    let mut c = d
        .topo
        .customer
        .command(cpam_tests::bins::bin_path("cpam-gatekeeper")?);
    c.args([
        "register",
        "--server",
        &d.server_addr.to_string(),
        "--code",
        code,
    ])
    .arg("--state-dir")
    .arg(d.path().join(name));
    d.run(&format!("register-{name}"), c)
}

fn new_code(d: &Deployment, gk: &str, extra: &[&str]) -> anyhow::Result<String> {
    let mut args = vec!["gatekeeper", "add", "--customer", "acme", gk];
    args.extend_from_slice(extra);
    json_str(&d.admin_json(&args)?, "code")
}

fn expect_register_refused(
    d: &Deployment,
    name: &str,
    code: &str,
    what: &str,
) -> anyhow::Result<()> {
    let seq = d.audit_seq()?;
    let out = register(d, name, code)?;
    assert!(
        !out.success(),
        "{what}: registration succeeded: {}",
        out.stdout
    );
    assert!(
        out.stderr.contains("error"),
        "{what}: no error on stderr: {}",
        out.stderr
    );
    d.expect_refusal_audited(seq, what)?;
    Ok(())
}

#[test]
fn wrong_registration_code_is_refused() -> anyhow::Result<()> {
    let mut d = Deployment::start()?;
    new_code(&d, "gk2", &[])?;
    expect_register_refused(
        &d,
        "gk-wrong",
        "not-a-valid-registration-code",
        "a wrong code",
    )?;
    d.expect_still_serving()
}

#[test]
fn reused_registration_code_is_refused() -> anyhow::Result<()> {
    let mut d = Deployment::start()?;
    let code = new_code(&d, "gk2", &[])?;
    register(&d, "gk2-first", &code)?.ok("first registration with a fresh code")?;
    expect_register_refused(&d, "gk2-again", &code, "a reused code")?;
    d.expect_still_serving()
}

#[test]
fn expired_registration_code_is_refused() -> anyhow::Result<()> {
    let mut d = Deployment::start()?;
    let code = new_code(&d, "gk3", &["--code-ttl", "1s"])?;
    std::thread::sleep(Duration::from_millis(2_500));
    expect_register_refused(&d, "gk3", &code, "an expired code")?;
    d.expect_still_serving()
}

/// Replaces every OpenSSH key in the profile JSON with `fresh` (private key
/// text) / `fresh_pub`; returns how many values were replaced.
fn read_profile(p: &Path) -> anyhow::Result<Value> {
    parse_json(&std::fs::read_to_string(p)?)
}

#[test]
fn unknown_key_is_refused() -> anyhow::Result<()> {
    let mut d = Deployment::start()?;
    let key = d.path().join("never-enrolled");
    keygen(&key)?;
    let fresh = std::fs::read_to_string(&key)?;
    let mut profile = read_profile(&d.profile)?;
    profile["key"] = Value::from(fresh);
    let forged = d.path().join("forged-profile.json");
    std::fs::write(&forged, serde_json::to_vec_pretty(&profile)?)?;
    let seq = d.audit_seq()?;
    let mut c = d
        .topo
        .vendor
        .command(cpam_tests::bins::bin_path("cpam-connect")?);
    c.arg("--profile").arg(&forged).arg("services");
    let out = d.run("connect-unknown-key", c)?;
    assert!(!out.success(), "a profile with an unknown key was accepted");
    assert!(
        out.stderr.contains("refused the profile's key"),
        "the error does not say the key was refused: {}",
        out.stderr
    );
    d.expect_refusal_audited(seq, "an unknown key")?;
    d.expect_still_serving()
}

#[test]
fn wrong_server_key_is_refused_by_the_connection_manager() -> anyhow::Result<()> {
    let mut d = Deployment::start()?;
    let key = d.path().join("impostor");
    keygen(&key)?;
    let impostor = std::fs::read_to_string(key.with_extension("pub"))?;
    let mut profile = read_profile(&d.profile)?;
    profile["server_key"] = Value::from(impostor.trim());
    let pinned = d.path().join("other-server-profile.json");
    std::fs::write(&pinned, serde_json::to_vec_pretty(&profile)?)?;
    let mut c = d
        .topo
        .vendor
        .command(cpam_tests::bins::bin_path("cpam-connect")?);
    c.arg("--profile").arg(&pinned).arg("services");
    let out = d.run("connect-wrong-server-key", c)?;
    assert!(!out.success(), "a server with another key was trusted");
    assert!(
        out.stderr.contains("does not match the pinned one"),
        "the error does not name the key mismatch: {}",
        out.stderr
    );
    d.expect_still_serving()
}

#[test]
fn service_without_grant_is_refused() -> anyhow::Result<()> {
    let mut d = Deployment::start()?;
    d.admin_ok(&[
        "service",
        "add",
        "--customer",
        "acme",
        "nogrant",
        "--target",
        "127.0.0.1:2022",
    ])?;
    let seq = d.audit_seq()?;
    let profile = d.profile.clone();
    let port = d.forward(&profile, "nogrant")?;
    d.expect_ssh_refused_on(port, "a service without a grant")?;
    d.expect_refusal_audited(seq, "a service without a grant")?;
    d.expect_still_serving()
}

#[test]
fn target_outside_the_allow_list_is_refused() -> anyhow::Result<()> {
    let mut d = Deployment::start()?;
    // The sshd does serve that port inside the customer ns: only the
    // gatekeeper's allow-list can stop the session.
    let direct = d.run(
        "ssh-denied-port-direct",
        ssh_cmd(&d.topo.customer, d.key(), SSHD_DENIED_PORT, &["true"]),
    )?;
    assert!(
        direct.success(),
        "sshd does not serve {SSHD_DENIED_PORT}: {}",
        direct.stderr
    );
    let target = format!("127.0.0.1:{SSHD_DENIED_PORT}");
    d.admin_ok(&[
        "service",
        "add",
        "--customer",
        "acme",
        "denied",
        "--target",
        &target,
    ])?;
    d.admin_ok(&[
        "grant",
        "add",
        "--user",
        "vendor",
        "--customer",
        "acme",
        "--service",
        "denied",
    ])?;
    let seq = d.audit_seq()?;
    let profile = d.profile.clone();
    let port = d.forward(&profile, "denied")?;
    d.expect_ssh_refused_on(port, "a target outside the allow-list")?;
    d.expect_refusal_audited(seq, "a target outside the allow-list")?;
    d.expect_still_serving()
}

#[test]
fn garbage_on_the_server_port_does_not_break_it() -> anyhow::Result<()> {
    let mut d = Deployment::start()?;
    let ip = d.server_addr.ip().to_string();
    for _ in 0..3 {
        d.topo
            .vendor
            .send_random(&ip, d.server_addr.port(), 64 << 10)?;
    }
    d.expect_still_serving()?;
    d.expect_audit_intact()
}

#[test]
fn garbage_on_the_connect_listener_does_not_break_it() -> anyhow::Result<()> {
    let mut d = Deployment::start()?;
    d.topo
        .vendor
        .send_random("127.0.0.1", d.connect_port, 64 << 10)?;
    // The bytes went through the tunnel as a session the sshd rejected; the
    // session is recorded and ends.
    let sessions = d.sessions()?;
    for s in &sessions {
        d.wait_session_ended(&json_str(s, "id")?)?;
    }
    assert!(
        d.connect.is_running(),
        "cpam-connect exited\n{}",
        d.connect.logs()
    );
    d.expect_still_serving()?;
    d.expect_audit_intact()
}

#[test]
fn malformed_profile_names_the_file_and_the_field() -> anyhow::Result<()> {
    let mut d = Deployment::start()?;
    let mut profile = read_profile(&d.profile)?;
    let obj = profile
        .as_object_mut()
        .expect("the profile is a JSON object");
    let field = obj
        .iter()
        .filter(|(_, v)| v.is_string())
        .map(|(k, _)| k.clone())
        .min_by_key(|k| !(k.contains("server") || k.contains("address")))
        .expect("the profile has a string field");
    obj.insert(field.clone(), Value::from(12345));
    let bad = d.path().join("malformed-profile.json");
    std::fs::write(&bad, serde_json::to_vec_pretty(&profile)?)?;

    let mut c = d
        .topo
        .vendor
        .command(cpam_tests::bins::bin_path("cpam-connect")?);
    c.arg("--profile")
        .arg(&bad)
        .args(["forward", "ssh", "--listen", "127.0.0.1:0"]);
    let out = d.run("connect-malformed", c)?;
    assert!(!out.success(), "cpam-connect accepted a malformed profile");
    assert!(
        out.stderr.contains("malformed-profile.json"),
        "error does not name the file: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&field),
        "error does not name the field `{field}`: {}",
        out.stderr
    );
    d.expect_still_serving()
}
