//! IP Connect in the driver mode, end to end: the service's TUN device
//! lives in the vendor namespace the test created (the driver range is
//! routed nowhere else). Stock `ssh`, `curl` and `ping` reach the mapped
//! hosts by address and by name, two customers with the same 10.x address
//! side by side, a port with no service is reset, the driver denied falls
//! back to the legacy mode, a deleted device comes back, and the mode is
//! followed live through all five modes, changed with the CLI and through
//! the console's API.

use std::time::Duration;

use anyhow::{Context, ensure};
use cpam_tests::console_api::ConsoleApi;
use cpam_tests::cpam::{Deployment, Options, SSHD_PORT};
use cpam_tests::ipconnect::{
    HTTP_PORT, IpConnectRun, OtherCustomer, SHARED_ADDR, add_shared_addr, http_server,
};
use cpam_tests::process::run;
use cpam_tests::wait_until;

const OTHER_LINES: &str = "127.0.0.1\tlocalhost\n# the administrator's own line\n";
const TIMEOUT: Duration = Duration::from_secs(30);

fn ip_of(local: &str) -> String {
    local
        .rsplit_once(':')
        .map(|x| x.0.to_string())
        .unwrap_or_default()
}

/// `acme` gets service `web` on the shared address beside `ssh`.
fn acme_web(d: &Deployment) -> anyhow::Result<cpam_tests::process::Child> {
    add_shared_addr(&d.topo.customer)?;
    let http = http_server(&d.topo.customer, d.path(), "acme", "acme")?;
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
    Ok(http)
}

/// `ping -c 1` from the vendor namespace: whether an echo reply came.
fn ping(d: &Deployment, addr: &str) -> anyhow::Result<bool> {
    let mut c = d.topo.vendor.command("ping");
    c.args(["-c", "1", "-W", "5", addr]);
    let out = run("ping", c, d.path(), TIMEOUT).context("running ping (package iputils-ping)")?;
    Ok(out.success())
}

/// The TUN device exists in the vendor namespace.
fn device_exists(d: &Deployment) -> bool {
    let mut c = d.topo.vendor.command("ip");
    c.args(["link", "show", "cpam0"]);
    run("ip-link", c, d.path(), TIMEOUT).is_ok_and(|o| o.success())
}

#[test]
fn driver_mode_reaches_two_customers_answers_ping_and_resets_unserved_ports() -> anyhow::Result<()>
{
    let d = Deployment::start_with(Options {
        extra_allow: vec![format!("{SHARED_ADDR}/32:{HTTP_PORT}")],
        ..Options::default()
    })?;
    let _acme_http = acme_web(&d)?;
    let mut globex = OtherCustomer::attach(&d, "globex")?;
    d.admin_ok(&["user", "ip-connect-mode", "vendor", "driver"])?;

    let hosts = d.path().join("hosts");
    std::fs::write(&hosts, OTHER_LINES)?;
    let state = d.path().join("ipconnect");
    let mut ipc = IpConnectRun::start(&d, &[&d.profile, &globex.profile], &state, &hosts)?;
    let maps = ipc.wait_mappings(&d, 3)?;
    for m in &maps {
        ensure!(m["mode"] == "driver", "not a driver mapping: {m}");
        let local = m["local"].as_str().unwrap_or_default();
        ensure!(
            local.starts_with("100.100."),
            "{local} outside the driver range"
        );
        ensure!(
            local != "100.100.0.1:22",
            "the device's own address was handed out"
        );
    }
    let ssh = IpConnectRun::local_of(&maps, "acme", "ssh")?;
    let acme = IpConnectRun::local_of(&maps, "acme", "web")?;
    let globex_web = IpConnectRun::local_of(&maps, "globex", "web")?;
    ensure!(
        ip_of(&acme) != ip_of(&globex_web),
        "10.77.0.5 at two customers must map to two addresses: {maps:?}"
    );
    ensure!(
        device_exists(&d),
        "no TUN device cpam0 in the vendor namespace"
    );
    let status = ipc.status_text(&d)?.context("status says nothing runs")?;
    ensure!(
        status.contains("driver running") && status.contains("mode driver"),
        "{status}"
    );

    // Stock clients by address and by name, both customers side by side.
    ipc.ssh_echo(&d, &ip_of(&ssh), SSHD_PORT)?;
    ipc.ssh_echo(&d, "ssh.acme.cpam", SSHD_PORT)?;
    for (url, body) in [
        (format!("http://{acme}/"), "acme"),
        (format!("http://{globex_web}/"), "globex"),
        ("http://web.acme.cpam:8080/".to_string(), "acme"),
        ("http://web.globex.cpam:8080/".to_string(), "globex"),
    ] {
        let (code, out, err) = ipc.curl(&d, &url)?;
        ensure!(code == 0 && out == body, "curl {url}: {code} {out:?} {err}");
    }
    // A larger body both ways crosses many segments and windows.
    let big = "x".repeat(3 * 1024 * 1024);
    std::fs::write(d.path().join("www-acme").join("big.txt"), &big)?;
    let (code, out, err) = ipc.curl(&d, &format!("http://{acme}/big.txt"))?;
    ensure!(
        code == 0 && out.len() == big.len(),
        "big download: {code} {} bytes {err}",
        out.len()
    );

    // Each connection is a session audited with the mapped address used.
    let audit = d.audit()?;
    for local in [&ssh, &acme, &globex_web] {
        ensure!(
            audit
                .iter()
                .any(|r| r["action"] == "session.start" && r["detail"]["local_address"] == *local),
            "no session.start with local_address {local}"
        );
    }

    // ICMP echo answers for mapped hosts.
    ensure!(ping(&d, &ip_of(&acme))?, "no echo reply from {acme}");
    ensure!(
        ping(&d, &ip_of(&globex_web))?,
        "no echo reply from {globex_web}"
    );

    // A port with no service: a reset (connection refused), not a hang
    // (curl's 28 would be its 10 s limit).
    let (code, _, err) = ipc.curl(&d, &format!("http://{}:8081/", ip_of(&acme)))?;
    let err = err.to_ascii_lowercase();
    ensure!(
        code == 7 && (err.contains("refused") || err.contains("couldn't connect")),
        "expected a refusal, got curl exit {code}: {err}"
    );

    // A refused session (the target went away) is a reset too: curl's 56
    // ("connection reset"), or its 7 when the reset arrives before curl has
    // looked at the connection it just opened; never a hang (28) or a clean
    // close (52).
    globex.http.kill()?;
    let (code, _, err) = ipc.curl(&d, "http://web.globex.cpam:8080/")?;
    let err = err.to_ascii_lowercase();
    ensure!(
        (code == 56 && err.contains("reset")) || (code == 7 && err.contains("couldn't connect")),
        "expected a reset, got curl exit {code}: {err}"
    );
    ipc.child
        .wait_for_stderr("ip connect session refused", Duration::from_secs(10))?;

    // Stop: the device and the names go.
    ipc.stop()?;
    ensure!(ipc.hosts_text()? == OTHER_LINES, "{}", ipc.hosts_text()?);
    ensure!(!device_exists(&d), "the TUN device outlived the service");
    Ok(())
}

#[test]
fn the_driver_denied_falls_back_and_a_deleted_device_comes_back() -> anyhow::Result<()> {
    let d = Deployment::start()?;
    d.admin_ok(&[
        "user",
        "ip-connect-mode",
        "vendor",
        "driver-with-legacy-fallback",
    ])?;
    let hosts = d.path().join("hosts");
    std::fs::write(&hosts, OTHER_LINES)?;
    let state = d.path().join("ipconnect");

    // Root without CAP_NET_ADMIN cannot create a TUN device: legacy, said once.
    let denied = ["setpriv", "--bounding-set=-net_admin", "--"];
    let mut ipc = IpConnectRun::start_with(&d, &[&d.profile], &state, &hosts, &denied)?;
    let maps = ipc.wait_mappings(&d, 1)?;
    let local = IpConnectRun::local_of(&maps, "acme", "ssh")?;
    ensure!(
        local.starts_with("127.77.") && maps[0]["mode"] == "legacy",
        "{maps:?}"
    );
    ipc.ssh_echo(&d, "ssh.acme.cpam", SSHD_PORT)?;
    ipc.child
        .wait_for_stderr("falling back to legacy", Duration::from_secs(10))?;
    // Several polls later the reason is still logged once.
    std::thread::sleep(Duration::from_secs(3));
    let logs = ipc.child.logs();
    ensure!(
        logs.matches("ip connect driver cannot start").count() == 1
            && logs.contains("CAP_NET_ADMIN"),
        "the reason must be logged once, naming the privilege:\n{logs}"
    );
    let status = ipc.status_text(&d)?.context("status")?;
    ensure!(status.contains("driver not running"), "{status}");
    ipc.stop()?;

    // A machine (or container) without /dev/net/tun: an empty, read-only
    // /dev/net in a mount namespace of the service's own (read-only, as the
    // TUN library creates the node when it may). Legacy, with that reason.
    let no_tun = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        "mount -t tmpfs -o ro cpam-no-tun /dev/net && exec \"$0\" \"$@\"",
    ];
    let mut ipc = IpConnectRun::start_with(&d, &[&d.profile], &state, &hosts, &no_tun)?;
    let maps = ipc.wait_mappings(&d, 1)?;
    ensure!(maps[0]["mode"] == "legacy", "{maps:?}");
    ipc.ssh_echo(&d, "ssh.acme.cpam", SSHD_PORT)?;
    ipc.child
        .wait_for_stderr("falling back to legacy", Duration::from_secs(10))?;
    let logs = ipc.child.logs();
    ensure!(
        logs.matches("ip connect driver cannot start").count() == 1
            && logs.contains("no /dev/net/tun"),
        "the reason must be logged once, naming the missing device:\n{logs}"
    );
    ipc.stop()?;
    ensure!(
        ipc.hosts_text()? == OTHER_LINES,
        "the hosts block was left behind"
    );

    // With the privilege: the driver.
    let mut ipc = IpConnectRun::start(&d, &[&d.profile], &state, &hosts)?;
    let maps = wait_mode(&mut ipc, &d, "driver")?;
    let driver_local = IpConnectRun::local_of(&maps, "acme", "ssh")?;
    ipc.ssh_echo(&d, "ssh.acme.cpam", SSHD_PORT)?;

    // The device deleted under the service: logged, started again.
    let mut del = d.topo.vendor.command("ip");
    del.args(["link", "del", "cpam0"]);
    run("ip-link-del", del, d.path(), TIMEOUT)?.ok("ip link del cpam0")?;
    ipc.child
        .wait_for_stderr("ip connect driver lost its device", TIMEOUT)?;
    wait_until(TIMEOUT, "the device to come back", || {
        device_exists(&d).then_some(())
    })?;
    ipc.ssh_echo(&d, "ssh.acme.cpam", SSHD_PORT)?;
    let again = ipc.wait_mappings(&d, 1)?;
    ensure!(
        IpConnectRun::local_of(&again, "acme", "ssh")? == driver_local,
        "the address changed after the restart"
    );

    // Live through the modes: driver -> legacy -> off -> global -> driver.
    d.admin_ok(&["user", "ip-connect-mode", "vendor", "legacy"])?;
    wait_mode(&mut ipc, &d, "legacy")?;
    ipc.ssh_echo(&d, "ssh.acme.cpam", SSHD_PORT)?;
    wait_until(TIMEOUT, "the device to go with the driver mode", || {
        (!device_exists(&d)).then_some(())
    })?;
    d.admin_ok(&["user", "ip-connect-mode", "vendor", "off"])?;
    ipc.wait_mappings(&d, 0)?;
    wait_until(TIMEOUT, "the names to go", || {
        (ipc.hosts_text().ok()? == OTHER_LINES).then_some(())
    })?;
    d.admin_ok(&["user", "ip-connect-mode", "vendor", "global"])?;
    wait_mode(&mut ipc, &d, "driver")?;
    ipc.ssh_echo(&d, "ssh.acme.cpam", SSHD_PORT)?;
    d.admin_ok(&["user", "ip-connect-mode", "vendor", "driver"])?;
    let maps = wait_mode(&mut ipc, &d, "driver")?;
    ipc.ssh_echo(
        &d,
        &ip_of(&IpConnectRun::local_of(&maps, "acme", "ssh")?),
        SSHD_PORT,
    )?;
    ipc.stop()?;
    ensure!(ipc.hosts_text()? == OTHER_LINES);
    Ok(())
}

/// An administrator changes the vendor's IP Connect Mode in the console
/// (the user's page sends `PATCH /api/v1/users/{id}`, the Settings page
/// `PUT /api/v1/settings`) while `ipconnect run` is running: the service
/// follows every change live, stock `ssh` reaches the target by name in
/// each mode that maps, an unknown mode is refused with a message naming
/// it and changes nothing, and every change is in the Admin Log under the
/// administrator's name.
#[test]
fn the_console_switches_a_running_service_through_every_mode() -> anyhow::Result<()> {
    let d = Deployment::start()?;
    let api = ConsoleApi::admin(&d, "boss")?;
    let vendor = format!("/api/v1/users/{}", api.user_id(&d, "vendor")?);
    let set_user = |mode: &str| -> anyhow::Result<()> {
        let body = serde_json::json!({ "ip_connect_mode": mode });
        let user = api.expect(&d, "PATCH", &vendor, Some(&body), 200)?;
        ensure!(user["ip_connect_mode"] == mode, "{user}");
        Ok(())
    };
    let set_server = |mode: &str| -> anyhow::Result<()> {
        let body = serde_json::json!({ "ip_connect_mode": mode });
        api.expect(&d, "PUT", "/api/v1/settings", Some(&body), 200)?;
        Ok(())
    };
    set_user("off")?;
    let hosts = d.path().join("hosts");
    std::fs::write(&hosts, OTHER_LINES)?;
    let state = d.path().join("ipconnect");
    let mut ipc = IpConnectRun::start(&d, &[&d.profile], &state, &hosts)?;
    ipc.wait_mappings(&d, 0)?;

    set_user("legacy")?;
    let maps = wait_mode(&mut ipc, &d, "legacy")?;
    let legacy = IpConnectRun::local_of(&maps, "acme", "ssh")?;
    ipc.ssh_echo(&d, "ssh.acme.cpam", SSHD_PORT)?;

    set_user("driver")?;
    let maps = wait_mode(&mut ipc, &d, "driver")?;
    ensure!(device_exists(&d), "no TUN device in the driver mode");
    ipc.ssh_echo(&d, "ssh.acme.cpam", SSHD_PORT)?;
    ipc.ssh_echo(
        &d,
        &ip_of(&IpConnectRun::local_of(&maps, "acme", "ssh")?),
        SSHD_PORT,
    )?;

    // A mode the server does not know: refused by name, nothing changes.
    let bad = serde_json::json!({ "ip_connect_mode": "turbo" });
    let (status, reply) = api.send(&d, "PATCH", &vendor, Some(&bad))?;
    ensure!(
        status == 400 && reply.to_string().contains("turbo"),
        "an unknown mode must be a 400 naming it: {status} {reply}"
    );
    std::thread::sleep(Duration::from_secs(2));
    wait_mode(&mut ipc, &d, "driver")?;

    set_user("off")?;
    ipc.wait_mappings(&d, 0)?;
    wait_until(TIMEOUT, "the device and the names to go", || {
        (!device_exists(&d) && ipc.hosts_text().ok()? == OTHER_LINES).then_some(())
    })?;

    set_user("driver-with-legacy-fallback")?;
    wait_mode(&mut ipc, &d, "driver")?;
    ipc.ssh_echo(&d, "ssh.acme.cpam", SSHD_PORT)?;

    // "global": the server-wide setting decides, and changing it on the
    // Settings page moves a running service of a `global` user.
    set_server("legacy")?;
    set_user("global")?;
    let maps = wait_mode(&mut ipc, &d, "legacy")?;
    ensure!(
        IpConnectRun::local_of(&maps, "acme", "ssh")? == legacy,
        "the legacy address changed between modes"
    );
    ipc.ssh_echo(&d, "ssh.acme.cpam", SSHD_PORT)?;
    set_server("off")?;
    ipc.wait_mappings(&d, 0)?;
    set_server("driver")?;
    wait_mode(&mut ipc, &d, "driver")?;
    ipc.ssh_echo(&d, "ssh.acme.cpam", SSHD_PORT)?;
    ipc.stop()?;
    ensure!(ipc.hosts_text()? == OTHER_LINES);

    let audit = d.audit()?;
    let by_boss = |action: &str| {
        audit
            .iter()
            .filter(|r| r["action"] == action && r["actor"] == "boss")
            .count()
    };
    ensure!(
        by_boss("admin.user.update") == 6 && by_boss("admin.settings.update") == 3,
        "every change must be audited once under the administrator: {} user updates, {} settings updates",
        by_boss("admin.user.update"),
        by_boss("admin.settings.update")
    );
    d.expect_audit_intact()?;
    Ok(())
}

/// Waits until the one mapping is served in `mode`.
fn wait_mode(
    ipc: &mut IpConnectRun,
    d: &Deployment,
    mode: &str,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let found = wait_until(TIMEOUT, &format!("a {mode} mapping"), || {
        let s = ipc.status(d).ok()??;
        let m = s["mappings"].as_array()?.clone();
        (m.len() == 1 && m[0]["mode"] == mode && m[0]["error"].is_null()).then_some(m)
    });
    found.with_context(|| ipc.child.logs())
}
