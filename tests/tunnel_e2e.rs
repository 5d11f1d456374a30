//! The path itself: stock ssh/scp -> cpam-connect -> cpam-server ->
//! cpam-gatekeeper -> stock sshd, with the session recorded and audited.

use std::io::Read;
use std::path::Path;

use cpam_tests::cpam::{Deployment, SSHD_PORT, json_str, target_str};
use cpam_tests::netns::Probe;
use cpam_tests::sshd::remote;
use serde_json::Value;
use sha2::{Digest, Sha256};

#[test]
fn command_through_the_tunnel_is_recorded_and_audited() -> anyhow::Result<()> {
    let d = Deployment::start()?;
    let out = d.run("ssh-echo", d.ssh(&["echo", "hello"]))?;
    assert!(out.success(), "ssh failed: {}\n{}", out.stderr, d.logs());
    assert_eq!(out.stdout.trim(), "hello");

    let sessions = d.sessions()?;
    assert_eq!(sessions.len(), 1, "sessions: {sessions:#?}");
    let id = json_str(&sessions[0], "id")?;
    let s = d.wait_session_ended(&id)?;
    assert_eq!(s["user_name"], "vendor", "{s:#}");
    assert_eq!(s["service_name"], "ssh", "{s:#}");
    assert_eq!(target_str(&s), format!("127.0.0.1:{SSHD_PORT}"), "{s:#}");
    assert!(
        s["bytes_up"].as_u64().unwrap_or(0) > 0,
        "no bytes up: {s:#}"
    );
    assert!(
        s["bytes_down"].as_u64().unwrap_or(0) > 0,
        "no bytes down: {s:#}"
    );
    assert_eq!(s["end_reason"], "completed", "{s:#}");

    let audit = d.audit()?;
    let of_session = |action: &str| {
        audit.iter().any(|r| {
            r["session_id"].as_str() == Some(id.as_str())
                && r["action"].as_str().is_some_and(|a| a.starts_with(action))
        })
    };
    assert!(of_session("session.start"), "no session.start: {audit:#?}");
    assert!(of_session("session.end"), "no session.end: {audit:#?}");
    d.expect_audit_intact()?;
    Ok(())
}

#[test]
fn target_is_unreachable_from_the_vendor_namespace() -> anyhow::Result<()> {
    let d = Deployment::start()?;
    // The target is up: the tunnel reaches it.
    d.expect_ssh_works_on(d.connect_port)?;
    // The customer veth answers (closed port -> reset), so the link is up...
    assert_eq!(
        d.topo.vendor.probe(&d.topo.customer_addr.to_string(), 9),
        Probe::Refused
    );
    // ...but nothing reaches the sshd except the tunnel.
    for addr in [d.topo.customer_addr.to_string(), "127.0.0.1".to_string()] {
        let p = d.topo.vendor.probe(&addr, SSHD_PORT);
        assert_ne!(
            p,
            Probe::Connected,
            "sshd reachable from the vendor ns at {addr}"
        );
    }
    let direct = d.run(
        "ssh-direct",
        cpam_tests::sshd::ssh_cmd(&d.topo.vendor, d.key(), SSHD_PORT, &["true"]),
    )?;
    assert!(
        !direct.success(),
        "ssh from the vendor ns reached the target directly"
    );
    Ok(())
}

fn sha256_file(p: &Path) -> anyhow::Result<String> {
    let mut f = std::fs::File::open(p)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

#[test]
fn scp_64_mib_both_ways_keeps_content() -> anyhow::Result<()> {
    let d = Deployment::start()?;
    let src = d.path().join("random.bin");
    let mut urandom = std::fs::File::open("/dev/urandom")?.take(64 << 20);
    std::io::copy(&mut urandom, &mut std::fs::File::create(&src)?)?;
    let want = sha256_file(&src)?;

    // Upload: the sshd (customer ns) writes it; both share the filesystem.
    let up = d.path().join("uploaded.bin");
    let out = d.run("scp-up", d.scp(&src.to_string_lossy(), &remote(&up)))?;
    assert!(
        out.success(),
        "scp upload failed: {}\n{}",
        out.stderr,
        d.logs()
    );
    assert_eq!(sha256_file(&up)?, want, "uploaded file differs");

    // Download.
    let down = d.path().join("downloaded.bin");
    let out = d.run("scp-down", d.scp(&remote(&src), &down.to_string_lossy()))?;
    assert!(
        out.success(),
        "scp download failed: {}\n{}",
        out.stderr,
        d.logs()
    );
    assert_eq!(sha256_file(&down)?, want, "downloaded file differs");

    let mut sessions = Vec::new();
    for s in d.sessions()? {
        sessions.push(d.wait_session_ended(&json_str(&s, "id")?)?);
    }
    let bytes = |f: &str| -> u64 { sessions.iter().filter_map(|s: &Value| s[f].as_u64()).sum() };
    assert!(
        bytes("bytes_up") >= 64 << 20,
        "bytes_up too small: {sessions:#?}"
    );
    assert!(
        bytes("bytes_down") >= 64 << 20,
        "bytes_down too small: {sessions:#?}"
    );
    Ok(())
}

#[test]
fn services_listing_and_audit_categories() -> anyhow::Result<()> {
    let d = Deployment::start()?;
    let mut c = d
        .topo
        .vendor
        .command(cpam_tests::bins::bin_path("cpam-connect")?);
    c.arg("--profile")
        .arg(&d.profile)
        .args(["services", "--json"]);
    let out = d.run("connect-services", c)?.ok("cpam-connect services")?;
    let v: Value = serde_json::from_str(&out.stdout)?;
    assert_eq!(v["gatekeeper"], "gk1", "{v:#}");
    assert_eq!(v["online"], true, "{v:#}");
    let names: Vec<&str> = v["services"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["ssh"], "{v:#}");

    // System messages and user activity are kept apart, as the admin log needs.
    let system = d.admin_json(&["audit", "list", "--category", "system-messages"])?;
    let user = d.admin_json(&["audit", "list", "--category", "user-activity"])?;
    let actions = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| r["action"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (system, user) = (actions(&system), actions(&user));
    for a in ["server.start", "gatekeeper.registered", "gatekeeper.online"] {
        assert!(
            system.contains(&a.to_string()),
            "{a} missing from system messages: {system:?}"
        );
    }
    for a in ["admin.customer.add", "admin.grant.add", "login.success"] {
        assert!(
            user.contains(&a.to_string()),
            "{a} missing from user activity: {user:?}"
        );
    }
    assert!(
        !system.iter().any(|a| a.starts_with("admin.")),
        "{system:?}"
    );
    Ok(())
}
