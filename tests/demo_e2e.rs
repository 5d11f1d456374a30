//! The README's first command: `cpam-server demo` must come up and let stock
//! `ssh` through, with every connection recorded as a session.

use std::process::Command;
use std::time::Duration;

use cpam_tests::bins::bin_path;
use cpam_tests::process::{Child, run};

#[test]
fn demo_lets_stock_ssh_through_and_records_the_session() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let sshpass = which("sshpass")?;
    let mut demo_cmd = Command::new(bin_path("cpam-server")?);
    demo_cmd.args(["demo", "--listen", "127.0.0.1:0"]);
    let mut demo = Child::spawn("demo", demo_cmd, dir.path())?;
    demo.wait_for_line("Ctrl-C stops the demo", Duration::from_secs(30))?;
    let out = demo.stdout();
    let ssh_line = out
        .lines()
        .find(|l| l.trim_start().starts_with("ssh -p "))
        .ok_or_else(|| anyhow::anyhow!("the demo printed no ssh command:\n{out}"))?;
    let data_dir = out
        .split_whitespace()
        .skip_while(|w| *w != "--data-dir")
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("the demo printed no data dir:\n{out}"))?
        .to_string();

    let mut ssh = Command::new(sshpass);
    ssh.args(["-p", "demo"]);
    ssh.args(ssh_line.split_whitespace());
    ssh.args(["-o", "LogLevel=ERROR", "echo", "through the tunnel"]);
    let res = run("ssh", ssh, dir.path(), Duration::from_secs(30))?;
    assert!(
        res.success() && res.stdout.contains("through the tunnel"),
        "ssh through the demo failed: {res:?}\n{}",
        demo.logs()
    );

    let mut list = Command::new(bin_path("cpam-server")?);
    list.args(["sessions", "list", "--json", "--data-dir", &data_dir]);
    let sessions =
        run("sessions", list, dir.path(), Duration::from_secs(30))?.ok("sessions list")?;
    let v: serde_json::Value = serde_json::from_str(&sessions.stdout)?;
    let first = &v[0];
    assert_eq!(first["user_name"], "vendor", "{v:#}");
    assert_eq!(first["service_name"], "demo-ssh", "{v:#}");
    assert!(first["bytes_down"].as_u64().unwrap_or(0) > 0, "{v:#}");

    // Ctrl-C stops the demo and removes its temporary directory.
    demo.signal(2)?;
    assert!(
        demo.wait_timeout(Duration::from_secs(10))?.is_some(),
        "the demo did not stop on SIGINT"
    );
    let tmp = std::path::Path::new(&data_dir)
        .parent()
        .map(|p| p.to_path_buf());
    assert!(
        tmp.is_some_and(|t| !t.exists()),
        "the demo left {data_dir} behind"
    );
    Ok(())
}

fn which(name: &str) -> anyhow::Result<String> {
    for dir in ["/usr/bin", "/usr/local/bin", "/bin"] {
        let p = format!("{dir}/{name}");
        if std::path::Path::new(&p).exists() {
            return Ok(p);
        }
    }
    anyhow::bail!(
        "`{name}` is missing: run `bash tests/run.sh` (it installs it) or `apt-get install {name}`"
    )
}
