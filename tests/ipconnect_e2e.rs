//! IP Connect in the legacy (loopback) mode, end to end: stock `ssh` and
//! `curl` in the vendor namespace reach `sshd` and HTTP servers in customer
//! namespaces by mapped address and by name, two customers with the same
//! 10.x address side by side, the mode followed live, and the hosts block
//! left clean after a stop and after a kill -9.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use cpam_tests::cpam::{Deployment, Options, SSHD_PORT};
use cpam_tests::ipconnect::{
    HTTP_PORT, IpConnectRun, OtherCustomer, SHARED_ADDR, add_shared_addr, http_server,
};
use cpam_tests::netns::Probe;
use cpam_tests::wait_until;

const OTHER_LINES: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n# the administrator's own line\n10.1.2.3 intranet.example\n";

#[test]
fn legacy_mode_maps_two_customers_with_the_same_address() -> anyhow::Result<()> {
    let d = Deployment::start_with(Options {
        extra_allow: vec![format!("{SHARED_ADDR}/32:{HTTP_PORT}")],
        ..Options::default()
    })?;
    d.admin_ok(&["user", "ip-connect-mode", "vendor", "legacy"])?;
    add_shared_addr(&d.topo.customer)?;
    let _acme_http = http_server(&d.topo.customer, d.path(), "acme", "acme")?;
    let target = format!("{SHARED_ADDR}:{HTTP_PORT}");
    d.admin_ok(&[
        "service",
        "add",
        "--customer",
        "acme",
        "web",
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
        "web",
    ])?;
    let mut globex = OtherCustomer::attach(&d, "globex")?;

    // A block a crashed run left behind.
    let hosts = d.path().join("hosts");
    std::fs::write(
        &hosts,
        format!("{OTHER_LINES}# BEGIN cpam\n127.77.9.9\tstale.acme.cpam\n# END cpam\n"),
    )?;
    let state = d.path().join("ipconnect");
    let mut ipc = IpConnectRun::start(&d, &[&d.profile, &globex.profile], &state, &hosts)?;
    let maps = ipc.wait_mappings(&d, 3)?;
    let ssh = IpConnectRun::local_of(&maps, "acme", "ssh")?;
    let acme_web = IpConnectRun::local_of(&maps, "acme", "web")?;
    let globex_web = IpConnectRun::local_of(&maps, "globex", "web")?;
    let ip = |a: &str| {
        a.rsplit_once(':')
            .map(|x| x.0.to_string())
            .unwrap_or_default()
    };
    ensure!(
        ip(&acme_web) != ip(&globex_web),
        "10.77.0.5 at two customers must map to two local addresses: {maps:?}"
    );
    ensure!(ssh.ends_with(&format!(":{SSHD_PORT}")) && acme_web.ends_with(":8080"));
    for a in [&ssh, &acme_web, &globex_web] {
        ensure!(a.starts_with("127.77."), "{a} is outside the default range");
    }

    // The names: the stale block replaced, every other line kept.
    let text = ipc.hosts_text()?;
    ensure!(
        text.starts_with(OTHER_LINES),
        "other lines changed:\n{text}"
    );
    ensure!(
        !text.contains("stale.acme.cpam"),
        "stale block kept:\n{text}"
    );
    for name in ["ssh.acme.cpam", "web.acme.cpam", "web.globex.cpam"] {
        ensure!(text.contains(name), "{name} missing:\n{text}");
    }
    let status = ipc.status_text(&d)?.context("status says nothing runs")?;
    ensure!(
        status.contains("web.globex.cpam") && status.contains("mode legacy"),
        "{status}"
    );

    // Stock clients by address and by name; both customers side by side.
    ipc.ssh_echo(&d, &ip(&ssh), SSHD_PORT)?;
    ipc.ssh_echo(&d, "ssh.acme.cpam", SSHD_PORT)?;
    for (url, body) in [
        (format!("http://{acme_web}/"), "acme"),
        (format!("http://{globex_web}/"), "globex"),
        ("http://web.acme.cpam:8080/".to_string(), "acme"),
        ("http://web.globex.cpam:8080/".to_string(), "globex"),
    ] {
        let (code, out, err) = ipc.curl(&d, &url)?;
        ensure!(code == 0 && out == body, "curl {url}: {code} {out:?} {err}");
    }

    // Each connection is a session audited with the local address used.
    let audited = |local: &str| -> anyhow::Result<bool> {
        Ok(d.audit()?
            .iter()
            .any(|r| r["action"] == "session.start" && r["detail"]["local_address"] == local))
    };
    for local in [&ssh, &acme_web, &globex_web] {
        ensure!(
            audited(local)?,
            "no session.start with local_address {local}"
        );
    }

    // A refusal (the target went away) reaches the client as a reset.
    globex.http.kill()?;
    let (code, _, err) = ipc.curl(&d, "http://web.globex.cpam:8080/")?;
    ensure!(
        code == 56 && err.to_ascii_lowercase().contains("reset"),
        "expected a reset, got curl exit {code}: {err}"
    );
    ipc.child
        .wait_for_stderr("ip connect session refused", Duration::from_secs(10))?;

    // Stop: the block goes, other lines stay, status says nothing runs.
    ipc.stop()?;
    ensure!(
        ipc.hosts_text()? == OTHER_LINES,
        "after stop:\n{}",
        ipc.hosts_text()?
    );
    ensure!(ipc.status_text(&d)?.is_none(), "status after stop");
    ensure!(
        d.topo.vendor.probe(&ip(&ssh), SSHD_PORT) == Probe::Refused,
        "listener left after stop"
    );
    Ok(())
}

#[test]
fn the_mode_is_followed_live_and_a_killed_run_leaves_nothing_after_restart() -> anyhow::Result<()> {
    let d = Deployment::start()?;
    d.admin_ok(&["user", "ip-connect-mode", "vendor", "off"])?;
    let hosts = d.path().join("hosts");
    std::fs::write(&hosts, OTHER_LINES)?;
    let state = d.path().join("ipconnect");
    let mut ipc = IpConnectRun::start(&d, &[&d.profile], &state, &hosts)?;
    ipc.child
        .wait_for_stderr("ip connect mode in use", Duration::from_secs(30))?;
    ipc.wait_mappings(&d, 0)?;
    ensure!(ipc.hosts_text()? == OTHER_LINES);

    // Off -> legacy, live.
    d.admin_ok(&["user", "ip-connect-mode", "vendor", "legacy"])?;
    let maps = ipc.wait_mappings(&d, 1)?;
    let local = IpConnectRun::local_of(&maps, "acme", "ssh")?;
    ipc.ssh_echo(&d, "ssh.acme.cpam", SSHD_PORT)?;

    // Legacy -> off: the listener and the names go.
    d.admin_ok(&["user", "ip-connect-mode", "vendor", "off"])?;
    ipc.wait_mappings(&d, 0)?;
    let (addr, port) = local.rsplit_once(':').context("local address")?;
    let port: u16 = port.parse()?;
    wait_until(Duration::from_secs(10), "the listener to close", || {
        (d.topo.vendor.probe(addr, port) == Probe::Refused).then_some(())
    })?;
    ensure!(ipc.hosts_text()? == OTHER_LINES, "{}", ipc.hosts_text()?);

    // "global" follows the server's setting (default: the driver with the
    // legacy fallback; the driver can run in this namespace).
    d.admin_ok(&["user", "ip-connect-mode", "vendor", "global"])?;
    wait_until(Duration::from_secs(30), "a driver mapping", || {
        let s = ipc.status(&d).ok()??;
        let m = s["mappings"].as_array()?.clone();
        (m.len() == 1 && m[0]["mode"] == "driver").then_some(())
    })?;
    ipc.ssh_echo(&d, "ssh.acme.cpam", SSHD_PORT)?;

    // kill -9 leaves the block; the next start removes it.
    ipc.child.kill()?;
    let left = ipc.hosts_text()?;
    if !left.contains("# BEGIN cpam") {
        bail!("expected the killed run's block to be left:\n{left}");
    }
    d.admin_ok(&["user", "ip-connect-mode", "vendor", "off"])?;
    let mut ipc = IpConnectRun::start(&d, &[&d.profile], &state, &hosts)?;
    wait_until(
        Duration::from_secs(30),
        "the stale block to be removed",
        || (ipc.hosts_text().ok()? == OTHER_LINES).then_some(()),
    )?;
    // Restarted with the same key, the same target maps to the same address.
    d.admin_ok(&["user", "ip-connect-mode", "vendor", "legacy"])?;
    let after = ipc.wait_mappings(&d, 1)?;
    ensure!(IpConnectRun::local_of(&after, "acme", "ssh")? == local);
    ipc.stop()?;
    ensure!(ipc.hosts_text()? == OTHER_LINES);
    Ok(())
}

#[test]
fn a_taken_port_and_an_unwritable_hosts_file_leave_the_rest_working() -> anyhow::Result<()> {
    let d = Deployment::start()?;
    d.admin_ok(&["user", "ip-connect-mode", "vendor", "legacy"])?;
    let state = d.path().join("ipconnect");
    let hosts = d.path().join("hosts");
    std::fs::write(&hosts, OTHER_LINES)?;
    // A first run fixes the address (the key stays in the state directory).
    let mut ipc = IpConnectRun::start(&d, &[&d.profile], &state, &hosts)?;
    let local = IpConnectRun::local_of(&ipc.wait_mappings(&d, 1)?, "acme", "ssh")?;
    ipc.stop()?;
    let (addr, _) = local.rsplit_once(':').context("local address")?;

    // Another program holds the port; the hosts file cannot be written.
    let mut holder = d.topo.vendor.command("python3");
    holder.args([
        "-c",
        &format!(
            "import socket,time\ns=socket.socket()\ns.bind(('{addr}',{SSHD_PORT}))\ns.listen()\nprint('bound',flush=True)\ntime.sleep(600)"
        ),
    ]);
    let mut holder = d.spawn("port-holder", holder)?;
    holder.wait_for_line("bound", Duration::from_secs(20))?;
    let unwritable = d.path().join("no-such-dir").join("hosts");
    let mut ipc = IpConnectRun::start(&d, &[&d.profile], &state, &unwritable)?;
    let status = wait_until(
        Duration::from_secs(30),
        "the taken port in the status",
        || {
            let s = ipc.status(&d).ok()??;
            let m = s["mappings"].as_array()?.first()?.clone();
            (m["error"].is_string() && s["names_error"].is_string()).then_some(s)
        },
    )?;
    ensure!(status["mappings"][0]["local"] == local.as_str(), "{status}");
    ensure!(
        ipc.status_text(&d)?
            .is_some_and(|t| t.contains("NOT LISTENING") && t.contains("names not published")),
        "status text"
    );

    // Once the port is free the mapping listens (retried every poll) and
    // works by address, names or not.
    holder.kill()?;
    ipc.wait_mappings(&d, 1)?;
    ipc.ssh_echo(&d, addr, SSHD_PORT)?;
    ipc.stop()?;
    Ok(())
}

#[test]
fn a_revoked_grant_removes_the_mapping_and_ends_its_live_session() -> anyhow::Result<()> {
    revoked_grant_ends_the_live_session("legacy")
}

#[test]
fn a_revoked_grant_ends_a_live_session_through_the_driver() -> anyhow::Result<()> {
    revoked_grant_ends_the_live_session("driver")
}

fn revoked_grant_ends_the_live_session(mode: &str) -> anyhow::Result<()> {
    let d = Deployment::start()?;
    d.admin_ok(&["user", "ip-connect-mode", "vendor", mode])?;
    let hosts = d.path().join("hosts");
    std::fs::write(&hosts, OTHER_LINES)?;
    let state = d.path().join("ipconnect");
    let mut ipc = IpConnectRun::start(&d, &[&d.profile], &state, &hosts)?;
    ipc.wait_mappings(&d, 1)?;
    let key = d.key().to_string_lossy().to_string();
    let port = SSHD_PORT.to_string();
    let args = [
        "-F",
        "/dev/null",
        "-i",
        &key,
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-p",
        &port,
        "root@ssh.acme.cpam",
        "sleep",
        "600",
    ];
    let mut ssh = d.spawn("ssh-sleep", ipc.client(&d, "ssh", &args))?;
    let id = d.wait_live_session()?;
    let grant = cpam_tests::cpam::as_list(d.admin_json(&["grant", "list"])?)?
        .first()
        .and_then(|g| g["id"].as_str().map(str::to_string))
        .context("no grant listed")?;
    d.admin_ok(&["grant", "revoke", &grant])?;
    // The engine ends the live session; the next poll removes the mapping and its name.
    ensure!(
        ssh.wait_timeout(Duration::from_secs(20))?.is_some(),
        "ssh still running after the grant was revoked"
    );
    ensure!(d.wait_session_ended(&id)?["end_reason"] == "revoked");
    ipc.wait_mappings(&d, 0)?;
    wait_until(Duration::from_secs(10), "the name to be removed", || {
        (ipc.hosts_text().ok()? == OTHER_LINES).then_some(())
    })?;
    ipc.stop()?;
    Ok(())
}
