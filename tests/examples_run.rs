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
