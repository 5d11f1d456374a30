//! `cpam-server` admin commands: every bad argument gets an error naming what
//! was wrong, a non-zero exit, and leaves stored data as it was.

use std::process::Command;
use std::time::Duration;

use cpam_tests::bins::bin_path;
use cpam_tests::process::{Output, run};

struct Server {
    dir: tempfile::TempDir,
}

impl Server {
    fn init() -> anyhow::Result<Server> {
        let dir = tempfile::tempdir()?;
        let s = Server { dir };
        s.cmd(&["init", "--listen", "127.0.0.1:0"])?.ok("init")?;
        Ok(s)
    }

    fn data_dir(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn cmd(&self, args: &[&str]) -> anyhow::Result<Output> {
        let mut c = Command::new(bin_path("cpam-server")?);
        c.args(args).args(["--data-dir", &self.data_dir()]);
        run("cpam-server", c, self.dir.path(), Duration::from_secs(30))
    }

    fn json(&self, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.cmd(&a)?.ok("admin command")?;
        Ok(serde_json::from_str(&out.stdout)?)
    }

    /// Runs `args`, expects failure with every `needles` in stderr.
    fn refused(&self, args: &[&str], needles: &[&str]) -> anyhow::Result<()> {
        let out = self.cmd(args)?;
        assert!(!out.success(), "{args:?} succeeded: {}", out.stdout);
        for n in needles {
            assert!(
                out.stderr.contains(n),
                "{args:?}: stderr does not name `{n}`: {}",
                out.stderr
            );
        }
        Ok(())
    }
}

#[test]
fn bad_arguments_are_named_and_change_nothing() -> anyhow::Result<()> {
    let s = Server::init()?;
    s.cmd(&["customer", "add", "acme"])?.ok("customer add")?;
    s.cmd(&["user", "add", "alice"])?.ok("user add")?;
    s.cmd(&[
        "service",
        "add",
        "ssh",
        "--customer",
        "acme",
        "--target",
        "10.0.0.5:22",
    ])?
    .ok("service add")?;

    s.refused(
        &["customer", "add", "acme"],
        &["customer `acme` already exists"],
    )?;
    s.refused(
        &["customer", "add", "bad name!"],
        &["customer name `bad name!`"],
    )?;
    s.refused(
        &["gatekeeper", "add", "gk", "--customer", "nobody"],
        &["no customer `nobody`"],
    )?;
    s.refused(
        &[
            "gatekeeper",
            "add",
            "gk",
            "--customer",
            "acme",
            "--code-ttl",
            "soon",
        ],
        &["duration `soon`"],
    )?;
    s.refused(
        &[
            "service",
            "add",
            "web",
            "--customer",
            "acme",
            "--target",
            "10.0.0.5",
        ],
        &["target `10.0.0.5` must be HOST:PORT"],
    )?;
    s.refused(
        &[
            "service",
            "add",
            "web",
            "--customer",
            "acme",
            "--target",
            "h:1",
            "--kind",
            "telnet",
        ],
        &["unknown service kind `telnet`"],
    )?;
    s.refused(
        &["user", "add", "bob", "--role", "Wizard"],
        &["no role `Wizard`"],
    )?;
    s.refused(
        &["role", "add", "ops", "--permission", "FLY"],
        &["unknown permission `FLY`"],
    )?;
    s.refused(
        &[
            "grant",
            "add",
            "--user",
            "alice",
            "--customer",
            "acme",
            "--service",
            "ssh",
            "--until",
            "tomorrow",
        ],
        &["time `tomorrow` is not RFC 3339"],
    )?;
    s.refused(
        &[
            "grant",
            "add",
            "--user",
            "alice",
            "--customer",
            "acme",
            "--service",
            "nope",
        ],
        &["no service `nope`"],
    )?;
    s.refused(
        &[
            "grant",
            "add",
            "--user",
            "alice",
            "--customer",
            "acme",
            "--service",
            "ssh",
            "--days",
            "funday",
            "--hours",
            "08:00-18:00",
        ],
        &["unknown day `funday`"],
    )?;
    s.refused(
        &[
            "grant",
            "add",
            "--user",
            "alice",
            "--customer",
            "acme",
            "--service",
            "ssh",
            "--from",
            "2026-01-02T00:00:00Z",
            "--until",
            "2026-01-01T00:00:00Z",
        ],
        &["ends before it starts"],
    )?;
    s.refused(
        &["grant", "revoke", "grt_missing"],
        &["grant `grt_missing` not found"],
    )?;
    s.refused(
        &["sessions", "terminate", "ses_missing"],
        &["no session `ses_missing`"],
    )?;
    s.refused(
        &[
            "profile",
            "export",
            "--user",
            "alice",
            "--gatekeeper",
            "nogk",
            "--out",
            "/tmp/x.profile",
            "--server-address",
            "127.0.0.1:1",
        ],
        &["no gatekeeper `nogk`"],
    )?;
    s.refused(
        &["audit", "list", "--category", "gossip"],
        &["unknown audit category `gossip`"],
    )?;

    // Roles with named permissions, assigned to users.
    s.cmd(&[
        "role",
        "add",
        "Log Reader",
        "--permission",
        "VIEW_ADMIN_LOG_USER_ACTIVITY",
        "--permission",
        "VIEW_ADMIN_LOG_SYSTEM_MESSAGES",
    ])?
    .ok("role add")?;
    s.cmd(&["role", "assign", "alice", "Log Reader"])?
        .ok("role assign")?;
    let roles = s.json(&["role", "list"])?;
    let reader = roles
        .as_array()
        .and_then(|a| a.iter().find(|r| r["name"] == "Log Reader"))
        .cloned();
    assert_eq!(
        reader.map(|r| r["permissions"].clone()),
        Some(serde_json::json!([
            "VIEW_ADMIN_LOG_USER_ACTIVITY",
            "VIEW_ADMIN_LOG_SYSTEM_MESSAGES"
        ])),
        "{roles:#}"
    );
    for builtin in [
        "System Administrator",
        "Vendor",
        "Customer Administrator",
        "Auditor",
    ] {
        assert!(
            roles.as_array().is_some_and(|a| a
                .iter()
                .any(|r| r["name"] == builtin && r["builtin"] == true)),
            "{builtin} missing: {roles:#}"
        );
    }
    s.refused(
        &["role", "add", "Vendor", "--permission", "MANAGE_USERS"],
        &["Vendor"],
    )?;
    let users = s.json(&["user", "list"])?;
    assert_eq!(
        users[0]["roles"],
        serde_json::json!(["Log Reader"]),
        "{users:#}"
    );
    let audit_before = s
        .json(&["audit", "list"])?
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);

    // Nothing a refused command touched was stored.
    let customers = s.json(&["customer", "list"])?;
    assert_eq!(customers.as_array().map(Vec::len), Some(1), "{customers:#}");
    let audit_after = s
        .json(&["audit", "list"])?
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    assert_eq!(
        audit_before, audit_after,
        "refused admin commands wrote audit records"
    );
    let verify = s.cmd(&["audit", "verify"])?.ok("audit verify")?;
    assert!(
        verify.stdout.contains("audit chain intact"),
        "{}",
        verify.stdout
    );
    Ok(())
}

#[test]
fn data_dir_errors_name_the_file() -> anyhow::Result<()> {
    let s = Server::init()?;
    s.refused(
        &["init", "--listen", "127.0.0.1:0"],
        &["already holds a cpam server"],
    )?;
    let config = s.dir.path().join("data/config.json");
    std::fs::write(&config, r#"{"listen": "127.0.0.1:0"}"#)?;
    s.refused(
        &["customer", "list"],
        &["config.json", "missing field `database`"],
    )?;
    std::fs::write(
        &config,
        r#"{"listen": "nowhere", "database": "sqlite::memory:"}"#,
    )?;
    s.refused(
        &["customer", "list"],
        &["config.json", "field `listen` must be IP:PORT"],
    )?;
    let mut c = Command::new(bin_path("cpam-server")?);
    c.args(["customer", "list", "--data-dir", "/nonexistent/cpam"]);
    let out = run("cpam-server", c, s.dir.path(), Duration::from_secs(30))?;
    assert!(
        !out.success() && out.stderr.contains("/nonexistent/cpam/config.json"),
        "{}",
        out.stderr
    );
    Ok(())
}

#[test]
fn audit_verify_pinpoints_an_edited_record() -> anyhow::Result<()> {
    let s = Server::init()?;
    for name in ["a1", "a2", "a3"] {
        s.cmd(&["customer", "add", name])?.ok("customer add")?;
    }
    // Tamper with the database behind cpam's back.
    let db = s.dir.path().join("data/cpam.db");
    let st = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(\"update audit_log set actor='mallory' where seq=3\"); c.commit()",
        ])
        .arg(&db)
        .status()?;
    anyhow::ensure!(st.success(), "could not edit the database");
    let out = s.cmd(&["audit", "verify"])?;
    assert!(!out.success(), "an edited chain verified: {}", out.stdout);
    assert!(out.stdout.contains("BROKEN at record 3"), "{}", out.stdout);
    Ok(())
}

/// `cpam-server audit list | head -1`: the reader goes away and the command
/// ends quietly with status 0, where a `println!` would panic (status 101).
#[test]
fn output_into_a_closed_pipe_exits_zero_without_a_panic() -> anyhow::Result<()> {
    let s = Server::init()?;
    for i in 0..50 {
        s.cmd(&["customer", "add", &format!("co-{i}")])?
            .ok("customer add")?;
    }
    for args in [
        &["audit", "list"][..],
        &["audit", "list", "--json"][..],
        &["customer", "list"][..],
    ] {
        let mut c = Command::new(bin_path("cpam-server")?);
        c.args(args)
            .args(["--data-dir", &s.data_dir()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn()?;
        // The reader is gone before the first line is written.
        drop(child.stdout.take());
        let out = child.wait_with_output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{args:?} into a closed pipe: {} / {stderr}",
            out.status
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    Ok(())
}
