//! The audit chain anchored by signed checkpoints outside the database:
//! `cpam-server` signs the head at shutdown (and on `audit checkpoint`), and
//! `audit verify` catches a truncated tail and a rebuilt log against it.

use std::process::Command;
use std::time::Duration;

use cpam_tests::bins::bin_path;
use cpam_tests::process::{Child, Output, run};
use serde_json::Value;

struct DataDir {
    dir: tempfile::TempDir,
}

impl DataDir {
    fn init() -> anyhow::Result<DataDir> {
        let d = DataDir {
            dir: tempfile::tempdir()?,
        };
        d.cmd(&["init", "--listen", "127.0.0.1:0"])?.ok("init")?;
        Ok(d)
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    fn cmd(&self, args: &[&str]) -> anyhow::Result<Output> {
        let mut c = Command::new(bin_path("cpam-server")?);
        c.args(args).arg("--data-dir").arg(self.path());
        run("cpam-server", c, self.dir.path(), Duration::from_secs(30))
    }

    /// The sequence number of the newest audit record.
    fn head(&self) -> anyhow::Result<i64> {
        let out = self.cmd(&["audit", "list", "--json"])?.ok("audit list")?;
        let list: Value = serde_json::from_str(&out.stdout)?;
        Ok(list
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["seq"].as_i64())
            .max()
            .unwrap_or(0))
    }

    fn checkpoints(&self) -> anyhow::Result<Vec<Value>> {
        let text = std::fs::read_to_string(self.path().join("audit-checkpoints.jsonl"))?;
        text.lines().map(|l| Ok(serde_json::from_str(l)?)).collect()
    }

    /// Runs SQL on the stopped server's SQLite database, behind cpam's back.
    fn tamper(&self, sql: &str) -> anyhow::Result<()> {
        let st = Command::new("python3")
            .args([
                "-c",
                "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2]); c.commit()",
            ])
            .arg(self.path().join("cpam.db"))
            .arg(sql)
            .status()?;
        anyhow::ensure!(st.success(), "could not edit the database: {sql}");
        Ok(())
    }
}

#[test]
fn a_stopped_server_leaves_a_checkpoint_and_verify_catches_tail_truncation() -> anyhow::Result<()> {
    let d = DataDir::init()?;
    for name in ["a1", "a2", "a3"] {
        d.cmd(&["customer", "add", name])?.ok("customer add")?;
    }
    let mut c = Command::new(bin_path("cpam-server")?);
    c.args(["run", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(d.path())
        .env("RUST_LOG", "info");
    let mut server = Child::spawn("server", c, d.dir.path())?;
    server.wait_for_line("cpam-server listening on ", Duration::from_secs(30))?;
    d.cmd(&["customer", "add", "a4"])?.ok("customer add")?;
    server.signal(15)?;
    let status = server
        .wait_timeout(Duration::from_secs(30))?
        .ok_or_else(|| anyhow::anyhow!("the server did not stop on SIGTERM"))?;
    anyhow::ensure!(status.success(), "server: {status}\n{}", server.logs());

    let head = d.head()?;
    let checkpoints = d.checkpoints()?;
    let last = checkpoints.last().expect("a checkpoint at shutdown");
    assert_eq!(last["seq"].as_i64(), Some(head), "{checkpoints:?}");
    let ok = d.cmd(&["audit", "verify"])?.ok("audit verify")?;
    assert!(
        ok.stdout
            .contains(&format!("matching the signed checkpoint of record {head}")),
        "{}",
        ok.stdout
    );

    // The newest two records go: the chain alone still holds.
    d.tamper(&format!("delete from audit_log where seq > {}", head - 2))?;
    let out = d.cmd(&["audit", "verify"])?;
    assert!(!out.success(), "a truncated log verified: {}", out.stdout);
    assert!(out.stdout.contains("tail truncation"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains(&format!("checkpoint of record {head} signed")),
        "{}",
        out.stdout
    );
    Ok(())
}

#[test]
fn verify_catches_a_rebuilt_log_against_the_checkpoint() -> anyhow::Result<()> {
    let d = DataDir::init()?;
    for name in ["b1", "b2"] {
        d.cmd(&["customer", "add", name])?.ok("customer add")?;
    }
    let signed = d.cmd(&["audit", "checkpoint"])?.ok("audit checkpoint")?;
    let head = d.head()?;
    assert!(
        signed
            .stdout
            .contains(&format!("signed the checkpoint of record {head}")),
        "{}",
        signed.stdout
    );
    let again = d.cmd(&["audit", "checkpoint"])?.ok("audit checkpoint")?;
    assert!(
        again.stdout.contains("no records since"),
        "{}",
        again.stdout
    );

    // The whole log rebuilt: emptied and written anew, a chain that holds
    // on its own and reaches past the checkpoint.
    d.tamper("delete from audit_log")?;
    let mut n = 0;
    while d.head()? <= head + 1 {
        d.cmd(&["customer", "add", &format!("forged-{n}")])?
            .ok("customer add")?;
        n += 1;
        anyhow::ensure!(n < 50, "the log does not grow");
    }
    let out = d.cmd(&["audit", "verify"])?;
    assert!(!out.success(), "a rebuilt log verified: {}", out.stdout);
    assert!(
        out.stdout.contains(&format!("BROKEN at record {head}")),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("rebuilt"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains(&format!("checkpoint of record {head} signed")),
        "{}",
        out.stdout
    );
    Ok(())
}
