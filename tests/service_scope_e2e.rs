//! A service belongs to the gatekeeper whose network holds its target: a
//! profile of another gatekeeper of the same customer does not reach it,
//! even with a grant and an allow-list that would let it through.

use std::time::Duration;

use cpam_tests::bins::bin_path;
use cpam_tests::cpam::{ALLOW, Deployment, json_str};
use cpam_tests::process::Child;

/// Adds, registers and runs gatekeeper `gk2` of `acme` in the customer
/// namespace (the same network, the same allow-list as `gk1`).
fn second_gatekeeper(d: &mut Deployment) -> anyhow::Result<()> {
    let added = d.admin_json(&["gatekeeper", "add", "--customer", "acme", "gk2"])?;
    let code_file = d.path().join("gk2.code");
    std::fs::write(&code_file, format!("{}\n", json_str(&added, "code")?))?;
    let state = d.path().join("gk2-state");
    let mut reg = d.topo.customer.command(bin_path("cpam-gatekeeper")?);
    reg.args(["register", "--server", &d.server_addr.to_string()])
        .arg("--code-file")
        .arg(&code_file)
        .arg("--state-dir")
        .arg(&state);
    d.run("register-gk2", reg)?
        .ok("cpam-gatekeeper register gk2")?;
    let mut run = d.topo.customer.command(bin_path("cpam-gatekeeper")?);
    run.args(["run", "--allow", ALLOW, "--state-dir"])
        .arg(&state)
        .env("RUST_LOG", "info");
    let mut gk2 = Child::spawn("gatekeeper-gk2", run, d.path())?;
    gk2.wait_for_stderr("gatekeeper online", Duration::from_secs(30))?;
    d.extra.push(gk2);
    Ok(())
}

#[test]
fn a_profile_of_another_gatekeeper_does_not_reach_a_service_of_the_first() -> anyhow::Result<()> {
    let mut d = Deployment::start()?;
    second_gatekeeper(&mut d)?;
    // The standard service `ssh` was made while gk1 was acme's only
    // gatekeeper: it is gk1's. Naming no gatekeeper is refused now.
    let ambiguous = d.admin(&[
        "service",
        "add",
        "--customer",
        "acme",
        "other",
        "--target",
        "127.0.0.1:22",
    ])?;
    assert!(
        !ambiguous.success() && ambiguous.stderr.contains("gatekeeper"),
        "{ambiguous:?}"
    );
    d.admin_ok(&[
        "service",
        "add",
        "--customer",
        "acme",
        "--gatekeeper",
        "gk2",
        "ssh-gk2",
        "--target",
        &format!("127.0.0.1:{}", cpam_tests::cpam::SSHD_PORT),
    ])?;
    d.admin_ok(&[
        "grant",
        "add",
        "--user",
        "vendor",
        "--customer",
        "acme",
        "--service",
        "ssh-gk2",
    ])?;
    let services = d.admin_json(&["service", "list", "--customer", "acme"])?;
    let gk_of = |name: &str| {
        services
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["name"] == name)
            .map(|s| s["gatekeeper_id"].clone())
    };
    assert_ne!(gk_of("ssh"), gk_of("ssh-gk2"), "{services:#}");

    let profile2 = d.path().join("vendor-gk2.json");
    d.admin_ok(&[
        "profile",
        "export",
        "--user",
        "vendor",
        "--gatekeeper",
        "gk2",
        "--out",
        &profile2.to_string_lossy(),
        "--server-address",
        &d.server_addr.to_string(),
    ])?;
    // gk2's profile lists gk2's service only.
    let mut list = d.topo.vendor.command(bin_path("cpam-connect")?);
    list.arg("--profile")
        .arg(&profile2)
        .args(["services", "--json"]);
    let listed = d
        .run("connect-services-gk2", list)?
        .ok("cpam-connect services")?;
    let listed: serde_json::Value = serde_json::from_str(listed.stdout.trim())?;
    let names: Vec<&str> = listed["services"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["ssh-gk2"], "{listed:#}");

    // gk1's service through gk2 is refused and the refusal audited...
    let since = d.audit_seq()?;
    let port = d.forward(&profile2, "ssh")?;
    d.expect_ssh_refused_on(port, "gk1's service through a gk2 profile")?;
    let refusal = d.expect_refusal_audited(since, "gk1's service through gk2")?;
    assert!(
        refusal.to_string().contains("wrong_gatekeeper"),
        "{refusal:#}"
    );
    // ...while gk2's own service works through it, and gk1's through gk1.
    let port = d.forward(&profile2, "ssh-gk2")?;
    d.expect_ssh_works_on(port)?;
    d.expect_ssh_works_on(d.connect_port)?;
    Ok(())
}
