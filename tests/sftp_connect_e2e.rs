//! `cpam-connect put` / `get` end to end: the vendor's own SFTP client
//! through an `ssh` service to stock `sshd`'s `internal-sftp`, the master
//! password on stdin, the SHA-256 it prints equal to `sha256sum` on both
//! ends and to the audit record; resume after a terminated session;
//! offsets past 32 bits.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::time::Duration;

use cpam_tests::process::{Child, Output, run_with_input};
use cpam_tests::psm::{MASTER, Psm};
use cpam_tests::sftp::{TargetDir, file_records, random_file};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// `cpam-connect ARGS REMOTE...` with the master password on stdin.
fn connect(p: &Psm, args: &[&str], raw: &[&[u8]]) -> anyhow::Result<std::process::Command> {
    let mut c = p.d.connect_cmd(args)?;
    for r in raw {
        c.arg(OsStr::from_bytes(r));
    }
    Ok(c)
}

fn run(p: &Psm, name: &str, args: &[&str]) -> anyhow::Result<Output> {
    let c = connect(p, args, &[])?;
    run_with_input(
        name,
        c,
        p.d.path(),
        Duration::from_secs(240),
        format!("{MASTER}\n").as_bytes(),
    )
}

fn run_json(p: &Psm, name: &str, args: &[&str]) -> anyhow::Result<Value> {
    let out = run(p, name, args)?.ok(name)?;
    Ok(serde_json::from_str(&out.stdout)?)
}

fn spawn(p: &Psm, name: &str, args: &[&str]) -> anyhow::Result<Child> {
    Child::spawn_with_input(
        name,
        connect(p, args, &[])?,
        p.d.path(),
        format!("{MASTER}\n").as_bytes(),
    )
}

/// Stock `sha256sum` of a file.
fn sha256sum(path: &Path) -> anyhow::Result<String> {
    let out = std::process::Command::new("sha256sum").arg(path).output()?;
    anyhow::ensure!(
        out.status.success(),
        "sha256sum {} failed (coreutils missing?)",
        path.display()
    );
    let text = String::from_utf8(out.stdout)?;
    Ok(text.split_whitespace().next().unwrap_or("").to_string())
}

fn sha_of(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn records<'a>(files: &'a [Value], path: &str, direction: &str) -> Vec<&'a Value> {
    files
        .iter()
        .filter(|r| r["detail"]["path"] == path && r["detail"]["direction"] == direction)
        .collect()
}

#[test]
fn put_and_get_print_the_hash_both_ends_and_the_audit_record_have() -> anyhow::Result<()> {
    let p = Psm::start()?;
    let dir = TargetDir::new(&p)?;
    let local = p.d.path().join("fix.bin");
    random_file(&local, 3 * 1024 * 1024 + 5, 11)?;
    let sha = sha256sum(&local)?;
    let remote = format!("{}/fix.bin", dir.path.display());
    let up = run_json(
        &p,
        "connect-put",
        &[
            "put",
            "db1",
            &local.display().to_string(),
            &remote,
            "--json",
        ],
    )?;
    assert_eq!(up["sha256"], sha.as_str(), "{up:#}");
    assert_eq!(up["audited"]["sha256"], sha.as_str());
    assert_eq!(up["audited"]["offset"], 0);
    assert_eq!(up["resumed_from"], Value::Null);
    assert_eq!(
        sha256sum(&dir.path.join("fix.bin"))?,
        sha,
        "the target has it"
    );

    let back = p.d.path().join("back.bin");
    let down = run(
        &p,
        "connect-get",
        &["get", "db1", &remote, &back.display().to_string()],
    )?
    .ok("cpam-connect get")?;
    assert!(
        down.stdout.contains(&format!("sha256 {sha}")),
        "the human summary prints the hash: {}",
        down.stdout
    );
    assert_eq!(sha256sum(&back)?, sha, "the vendor got it back");

    let files = file_records(&p)?;
    for direction in ["upload", "download"] {
        let r = records(&files, &remote, direction);
        assert_eq!(r.len(), 1, "one {direction} record: {files:#?}");
        let d = &r[0]["detail"];
        assert_eq!(d["sha256"], sha.as_str(), "{direction}");
        assert_eq!(d["size"], 3 * 1024 * 1024 + 5);
        assert_eq!(d["offset"], 0);
        assert_eq!(d["result"], "complete");
        assert_eq!(d["non_sequential"], false);
    }

    // A wrong master password moves nothing.
    let c = connect(
        &p,
        &["put", "db1", &local.display().to_string()],
        &[format!("{remote}.2").as_bytes()],
    )?;
    let out = run_with_input(
        "connect-put-wrong",
        c,
        p.d.path(),
        Duration::from_secs(60),
        b"not the master password\n",
    )?;
    assert!(!out.success());
    assert!(out.stderr.contains("master password"), "{}", out.stderr);
    assert!(!dir.path.join("fix.bin.2").exists());
    p.d.expect_audit_intact()
}

/// Waits until `path` holds more than `bytes`, then terminates the one live
/// session and waits for `child` and the session to end.
fn cut(p: &Psm, child: &mut Child, path: &Path, bytes: u64) -> anyhow::Result<()> {
    let id = p.d.wait_live_session()?;
    cpam_tests::wait_until(Duration::from_secs(60), "bytes moved", || {
        std::fs::metadata(path)
            .ok()
            .filter(|m| m.len() > bytes)
            .map(|_| ())
    })?;
    p.d.admin_ok(&["sessions", "terminate", &id])?;
    let status = child
        .wait_timeout(Duration::from_secs(30))?
        .ok_or_else(|| anyhow::anyhow!("the cut transfer did not end"))?;
    assert!(
        !status.success(),
        "a cut transfer fails: {}",
        child.stdout()
    );
    p.d.wait_session_ended(&id)?;
    Ok(())
}

#[test]
fn a_transfer_cut_by_terminate_resumes_and_ends_with_the_right_file() -> anyhow::Result<()> {
    let p = Psm::start()?;
    let dir = TargetDir::new(&p)?;
    let len = 6 * 1024 * 1024;
    let local = p.d.path().join("big.bin");
    random_file(&local, len, 21)?;
    let bytes = std::fs::read(&local)?;
    let sha = sha256sum(&local)?;
    let remote_path = dir.path.join("big.bin");
    let remote = remote_path.display().to_string();
    let l = local.display().to_string();

    // Upload at 4 Mbit/s, cut, resume.
    let mut child = spawn(
        &p,
        "connect-put-slow",
        &["put", "db1", &l, &remote, "--limit", "4000"],
    )?;
    cut(&p, &mut child, &remote_path, 512 * 1024)?;
    let at = std::fs::metadata(&remote_path)?.len();
    assert!(at < len as u64, "cut before the end ({at})");
    let v = run_json(
        &p,
        "connect-put-resume",
        &["put", "db1", &l, &remote, "--resume", "--json"],
    )?;
    assert_eq!(v["resumed_from"], at, "{v:#}");
    assert_eq!(v["sha256"], sha.as_str(), "the whole file's hash");
    assert_eq!(
        sha256sum(&remote_path)?,
        sha,
        "the target has the right file"
    );
    let tail = sha_of(&bytes[at as usize..]);
    assert_eq!(v["audited"]["offset"], at);
    assert_eq!(v["audited"]["sha256"], tail.as_str());
    let files = file_records(&p)?;
    let ups = records(&files, &remote, "upload");
    assert_eq!(ups.len(), 2, "the cut one and the resumed one: {files:#?}");
    assert_eq!(ups[0]["detail"]["result"], "incomplete");
    assert_eq!(ups[0]["detail"]["offset"], 0);
    let d = &ups[1]["detail"];
    assert_eq!(d["result"], "complete");
    assert_eq!(d["offset"], at);
    assert_eq!(d["size"], len as u64 - at);
    assert_eq!(
        d["sha256"],
        tail.as_str(),
        "the record covers the bytes sent"
    );

    // Download at 4 Mbit/s, cut, resume.
    let back_path = p.d.path().join("back.bin");
    let back = back_path.display().to_string();
    let mut child = spawn(
        &p,
        "connect-get-slow",
        &["get", "db1", &remote, &back, "--limit", "4000"],
    )?;
    cut(&p, &mut child, &back_path, 512 * 1024)?;
    let have = std::fs::metadata(&back_path)?.len();
    assert!(have < len as u64, "cut before the end ({have})");
    let v = run_json(
        &p,
        "connect-get-resume",
        &["get", "db1", &remote, &back, "--resume", "--json"],
    )?;
    assert_eq!(v["resumed_from"], have, "{v:#}");
    assert_eq!(sha256sum(&back_path)?, sha, "the vendor has the right file");
    assert_eq!(v["sha256"], sha.as_str());
    // The download record covers the compared run and what followed.
    let from = have - have.min(64 * 1024);
    let run_sha = sha_of(&bytes[from as usize..]);
    assert_eq!(v["audited"]["offset"], from);
    assert_eq!(v["audited"]["sha256"], run_sha.as_str());
    let files = file_records(&p)?;
    let downs = records(&files, &remote, "download");
    assert_eq!(downs.len(), 2, "{files:#?}");
    assert_eq!(downs[0]["detail"]["result"], "incomplete");
    let d = &downs[1]["detail"];
    assert_eq!(d["result"], "complete");
    assert_eq!(d["offset"], from);
    assert_eq!(d["sha256"], run_sha.as_str());

    // A destination that is not a partial copy is not resumed.
    std::fs::write(&back_path, b"something else entirely")?;
    let out = run(
        &p,
        "connect-get-not-partial",
        &["get", "db1", &remote, &back, "--resume"],
    )?;
    assert!(!out.success());
    assert!(out.stderr.contains("cannot resume"), "{}", out.stderr);
    assert_eq!(std::fs::read(&back_path)?, b"something else entirely");
    p.d.expect_audit_intact()
}
