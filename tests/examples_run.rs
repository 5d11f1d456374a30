//! The tutorials in `examples/` build and do what they say.

use std::process::Command;
use std::time::Duration;

use cpam_tests::bins::bin_path;
use cpam_tests::process::run;

#[test]
fn in_process_tunnel_example_echoes_and_audits() -> anyhow::Result<()> {
    let exe = bin_path("examples/in_process_tunnel").map_err(|e| {
        anyhow::anyhow!("{e}; build it with `cargo build --workspace --all-targets`")
    })?;
    let dir = tempfile::tempdir()?;
    let out = run(
        "in_process_tunnel",
        Command::new(exe),
        dir.path(),
        Duration::from_secs(60),
    )?
    .ok("the example")?;
    for expected in [
        "gatekeeper gk1 is online",
        "services: [\"echo\"]",
        "echoed: hello through the tunnel",
        "vendor -> 127.0.0.1:",
        "audit chain intact: true",
    ] {
        assert!(
            out.stdout.contains(expected),
            "missing `{expected}` in:\n{}",
            out.stdout
        );
    }
    Ok(())
}

/// Runs the example `name` and fails unless its stdout has every line of `expected`.
fn run_example(name: &str, expected: &[&str]) -> anyhow::Result<String> {
    let exe = bin_path(&format!("examples/{name}")).map_err(|e| {
        anyhow::anyhow!("{e}; build it with `cargo build --workspace --all-targets`")
    })?;
    let dir = tempfile::tempdir()?;
    let out =
        run(name, Command::new(exe), dir.path(), Duration::from_secs(60))?.ok("the example")?;
    for needle in expected {
        assert!(
            out.stdout.contains(needle),
            "{name}: missing `{needle}` in:\n{}",
            out.stdout
        );
    }
    Ok(out.stdout)
}

#[test]
fn gatekeeper_appliance_example_registers_runs_and_switches() -> anyhow::Result<()> {
    run_example(
        "gatekeeper_appliance",
        &[
            "registered as appliance-7 (gk_",
            "display: registered=true online=true disabled=false",
            "vendor session echoed: status?",
            "live session closed by the switch: true",
            "display: registered=true online=true disabled=true",
            "while disabled: refused (permission_denied)",
            "enabled again, echoed: again!!",
            "after shutdown, online=false",
        ],
    )?;
    Ok(())
}

#[test]
fn ip_connect_example_maps_echoes_and_follows_the_mode() -> anyhow::Result<()> {
    run_example(
        "ip_connect",
        &[
            "event: {\"type\":\"mode\",\"customer\":\"acme\",\"gatekeeper\":\"gk1\",\"mode\":\"legacy\"",
            "\"type\":\"mapping_added\"",
            "mapped acme/echo at 127.79.",
            "(legacy), names [\"echo.acme.cpam\"]",
            "echoed through 127.79.",
            "\"type\":\"mapping_removed\"",
            "after off: 0 mappings",
            "stopped",
        ],
    )?;
    Ok(())
}

#[test]
fn custom_store_audit_example_forwards_records_and_applies_its_hook() -> anyhow::Result<()> {
    let out = run_example(
        "custom_store_audit",
        &[
            "syslog: <110>1 ",
            "cpam - session.start - [cpam seq=\"",
            "event: session started: vendor -> staging-db",
            "staging-db echoed: select 1",
            "session.refused - [cpam seq=",
            "change freeze on prod-db until the release is out",
            "event: session refused: prod-db (permission_denied)",
            "prod-db refused (permission_denied)",
            "audit chain intact: true",
        ],
    )?;
    // Every record of the verified chain was forwarded (records written
    // after the count, e.g. the gatekeeper going offline, come on top).
    let checked: usize = out
        .lines()
        .find_map(|l| l.strip_prefix("audit chain intact: true ("))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no record count in:\n{out}"))?;
    let forwarded = out.lines().filter(|l| l.starts_with("syslog: ")).count();
    assert!(
        forwarded >= checked,
        "{forwarded} lines forwarded for {checked} records:\n{out}"
    );
    Ok(())
}

#[test]
fn console_mount_example_serves_the_console_below_pam_next_to_its_own_routes() -> anyhow::Result<()>
{
    run_example(
        "console_mount",
        &[
            "GET / -> 200 the product's home page",
            "GET /pam -> 308 to /pam/",
            "GET /pam/ -> 200, the shell with <base href=\"/pam/\">: true",
            "POST /pam/api/v1/auth/login -> 200, session cookie Path=/pam",
            "GET /pam/api/v1/customers -> 200 []",
            "GET /api/v1/customers -> 404 not a page of the product",
        ],
    )?;
    Ok(())
}
