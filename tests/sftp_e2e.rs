//! File Transfer end to end: stock `sftp` and `scp` through `cpam-connect
//! forward` to an `ssh` service whose target is stock `sshd`'s
//! `internal-sftp`; every file audited with the hash of its bytes, the
//! service's file policy enforced on the target's real filesystem.

use std::time::Duration;

use anyhow::Context as _;
use cpam_tests::console_api::ConsoleApi;
use cpam_tests::psm::{MASTER, Psm};
use cpam_tests::sftp::{
    TargetDir, file_records, op_records, random_file, scp_run, sftp, sftp_run, sha256_file,
};
use serde_json::Value;

fn record<'a>(records: &'a [Value], path: &str, direction: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["detail"]["path"] == path && r["detail"]["direction"] == direction)
        .collect()
}

#[test]
fn stock_sftp_and_scp_transfers_are_audited_with_the_hash_of_the_file() -> anyhow::Result<()> {
    let p = Psm::start()?;
    let dir = TargetDir::new(&p)?;
    let remote = dir.path.display().to_string();
    let local = p.d.path().join("upload.bin");
    random_file(&local, 700 * 1024 + 17, 7)?;
    let back = p.d.path().join("download.bin");
    let out = sftp_run(
        &p,
        &[],
        &format!(
            "put {} {remote}/up.bin\nget {remote}/up.bin {}\nmkdir {remote}/sub\nrename {remote}/up.bin {remote}/sub/up.bin\nbye\n",
            local.display(),
            back.display()
        ),
    )?;
    assert!(out.success(), "sftp failed\n{}\n{}", out.stderr, p.d.logs());
    let sha = sha256_file(&local)?;
    assert_eq!(
        sha256_file(&dir.path.join("sub/up.bin"))?,
        sha,
        "the target has the file"
    );
    assert_eq!(sha256_file(&back)?, sha, "the vendor got it back");

    let scp_local = p.d.path().join("scp.bin");
    random_file(&scp_local, 123_457, 9)?;
    let out = scp_run(
        &p,
        &scp_local.display().to_string(),
        &format!("anyone@127.0.0.1:{remote}/scp.bin"),
    )?;
    assert!(out.success(), "scp failed\n{}\n{}", out.stderr, p.d.logs());
    let scp_sha = sha256_file(&scp_local)?;
    assert_eq!(sha256_file(&dir.path.join("scp.bin"))?, scp_sha);

    let files = file_records(&p)?;
    let up = record(&files, &format!("{remote}/up.bin"), "upload");
    assert_eq!(up.len(), 1, "one record for the upload: {files:#?}");
    let d = &up[0]["detail"];
    assert_eq!(d["sha256"], sha.as_str());
    assert_eq!(d["size"], 700 * 1024 + 17);
    assert_eq!(d["result"], "complete");
    assert_eq!(d["non_sequential"], false);
    assert_eq!(up[0]["category"], "user-activity");
    assert!(
        up[0]["session_id"]
            .as_str()
            .is_some_and(|s| s.starts_with("ses_"))
    );
    let down = record(&files, &format!("{remote}/up.bin"), "download");
    assert_eq!(down.len(), 1, "one record for the download: {files:#?}");
    assert_eq!(down[0]["detail"]["sha256"], sha.as_str());
    assert_eq!(down[0]["detail"]["result"], "complete");
    let scp = record(&files, &format!("{remote}/scp.bin"), "upload");
    assert_eq!(scp.len(), 1, "one record for scp: {files:#?}");
    assert_eq!(scp[0]["detail"]["sha256"], scp_sha.as_str());
    assert_eq!(scp[0]["detail"]["size"], 123_457);

    // The session's transfer list in the console's REST API, as the
    // session page shows it and as the CSV an administrator downloads.
    let api = ConsoleApi::admin(&p.d, "boss")?;
    let session = up[0]["session_id"].as_str().context("session id")?;
    let rows = api.expect(
        &p.d,
        "GET",
        &format!("/api/v1/sessions/{session}/files"),
        None,
        200,
    )?;
    let rows = rows.as_array().context("a JSON list")?;
    for direction in ["upload", "download"] {
        let listed: Vec<_> = rows
            .iter()
            .filter(|r| r["path"] == format!("{remote}/up.bin") && r["direction"] == direction)
            .collect();
        assert_eq!(listed.len(), 1, "one {direction} listed: {rows:#?}");
        assert_eq!(listed[0]["sha256"], sha.as_str());
        assert_eq!(listed[0]["size"], 700 * 1024 + 17);
    }
    assert!(
        rows.iter().all(|r| r["session_id"] == session),
        "only this session's files: {rows:#?}"
    );
    let (status, csv) = api.get_text(
        &p.d,
        &format!("/api/v1/sessions/{session}/files?format=csv"),
    )?;
    assert_eq!(status, 200, "{csv}");
    let mut lines = csv.lines();
    assert!(
        lines
            .next()
            .is_some_and(|h| h.starts_with("session_id,at,path,direction")),
        "{csv}"
    );
    assert_eq!(
        lines
            .filter(|l| l.contains(&sha) && l.contains("/up.bin"))
            .count(),
        2,
        "the upload and the download in the CSV: {csv}"
    );

    // The same file uploaded twice at once: two records, each with the hash.
    let twice = format!("put {} {remote}/twice.bin\nbye\n", scp_local.display());
    let mut both = Vec::new();
    for n in 0..2 {
        both.push(cpam_tests::process::Child::spawn_with_input(
            &format!("vendor-sftp-twice-{n}"),
            sftp(&p, &[])?,
            p.d.path(),
            twice.as_bytes(),
        )?);
    }
    for mut child in both {
        let status = child
            .wait_timeout(Duration::from_secs(90))?
            .ok_or_else(|| anyhow::anyhow!("a concurrent sftp did not finish"))?;
        assert!(status.success(), "{}", child.stderr());
    }
    let files = file_records(&p)?;
    let twice = record(&files, &format!("{remote}/twice.bin"), "upload");
    assert_eq!(twice.len(), 2, "one record per upload: {files:#?}");
    for r in twice {
        assert_eq!(r["detail"]["sha256"], scp_sha.as_str());
        assert_eq!(r["detail"]["result"], "complete");
    }
    assert_eq!(sha256_file(&dir.path.join("twice.bin"))?, scp_sha);

    let ops = op_records(&p)?;
    for (op, path) in [
        ("mkdir", format!("{remote}/sub")),
        ("rename", format!("{remote}/up.bin")),
    ] {
        assert!(
            ops.iter().any(|r| r["detail"]["op"] == op
                && r["detail"]["path"] == path.as_str()
                && r["detail"]["result"] == "ok"),
            "{op} audited: {ops:#?}"
        );
    }
    p.d.expect_audit_intact()
}

#[test]
fn the_policy_refuses_traversal_and_nothing_outside_the_prefix_is_touched() -> anyhow::Result<()> {
    let p = Psm::start()?;
    let dir = TargetDir::new(&p)?;
    let base = dir.path.display().to_string();
    dir.mkdir(&p, "in")?;
    dir.mkdir(&p, "inbox")?;
    dir.mkdir(&p, "outside")?;
    std::os::unix::fs::symlink(dir.path.join("outside"), dir.path.join("in/escape"))?;
    let before = dir.tree();
    p.d.admin_ok(&[
        "service",
        "file-policy",
        "db1@acme",
        "--set",
        "--prefix",
        &format!("{base}/in/"),
        "--block-ext",
        "EXE",
        "--max-size",
        "100000",
    ])?;
    let small = p.d.path().join("small.txt");
    std::fs::write(&small, "hello from the vendor\n")?;
    let big = p.d.path().join("big.bin");
    random_file(&big, 300_000, 3)?;
    let s = small.display();
    let corpus = [
        format!("{base}/inbox/a"),
        format!("{base}/in/../inbox/b"),
        format!("{base}/in/../../{}/inbox/c", base.trim_start_matches('/')),
        format!("{base}//in/..//inbox/d"),
        format!("{base}/in/./../outside/e"),
        format!("{base}/in/escape/f"),
        format!("{base}/in/setup.exe"),
        format!("{base}/in/{}", "x".repeat(1500)),
        "/etc/cpam-sftp-must-not-exist".to_string(),
        "../../etc/cpam-sftp-must-not-exist".to_string(),
    ];
    let mut commands = String::new();
    for target in &corpus {
        commands.push_str(&format!("put {s} {target}\n"));
    }
    commands.push_str(&format!("mkdir {base}/inbox/newdir\n"));
    commands.push_str(&format!("mkdir {base}/in/escape/newdir\n"));
    commands.push_str(&format!("ln -s {base}/outside {base}/in/link2\n"));
    commands.push_str(&format!("rm {base}/inbox/../outside/x\n"));
    commands.push_str(&format!("put {} {base}/in/big.bin\n", big.display()));
    // The session goes on after every refusal: this one lands.
    commands.push_str(&format!("put {s} {base}/in/ok.txt\n"));
    commands.push_str(&format!(
        "rename {base}/in/ok.txt {base}/inbox/ok.txt\nbye\n"
    ));
    let out = sftp_run(&p, &[], &commands)?;
    // OpenSSH's client shows the status code, not the proxy's message.
    assert!(
        out.stderr.matches("Permission denied").count() >= corpus.len(),
        "the vendor's sftp reads each refusal: {}",
        out.stderr
    );

    // Nothing outside the prefix was touched, on the target's filesystem.
    let after = dir.tree();
    let mut expected: Vec<String> = before.clone();
    expected.extend(["in/big.bin".to_string(), "in/ok.txt".to_string()]);
    expected.sort();
    assert_eq!(after, expected, "only the allowed directory changed");
    assert!(!std::path::Path::new("/etc/cpam-sftp-must-not-exist").exists());
    assert_eq!(
        sha256_file(&dir.path.join("in/ok.txt"))?,
        sha256_file(&small)?
    );
    assert!(std::fs::metadata(dir.path.join("in/big.bin"))?.len() <= 100_000);

    let files = file_records(&p)?;
    let refused: Vec<_> = files
        .iter()
        .filter(|r| r["detail"]["result"] == "refused")
        .collect();
    assert!(
        refused.len() >= corpus.len(),
        "every refused upload has a record ({} for {}; the long name fails on the target): {files:#?}",
        refused.len(),
        corpus.len()
    );
    assert!(refused.iter().all(|r| r["detail"]["reason"].is_string()));
    let ok = record(&files, &format!("{base}/in/ok.txt"), "upload");
    assert_eq!(ok.len(), 1, "{files:#?}");
    assert_eq!(ok[0]["detail"]["result"], "complete");
    assert_eq!(ok[0]["detail"]["sha256"], sha256_file(&small)?.as_str());
    let ops = op_records(&p)?;
    for op in ["mkdir", "symlink", "remove", "rename"] {
        assert!(
            ops.iter()
                .any(|r| r["detail"]["op"] == op && r["detail"]["result"] == "refused"),
            "refused {op} audited: {ops:#?}"
        );
    }
    p.d.expect_audit_intact()
}

#[test]
fn a_transfer_cut_by_terminate_is_recorded_incomplete_with_the_bytes_so_far() -> anyhow::Result<()>
{
    let p = Psm::start()?;
    let dir = TargetDir::new(&p)?;
    let local = p.d.path().join("slow.bin");
    random_file(&local, 8 * 1024 * 1024, 5)?;
    let remote = dir.path.join("slow.bin");
    // 4 Mbit/s: two seconds in, a quarter of the file has moved.
    let c = sftp(&p, &["-l", "4000"])?;
    let mut child = cpam_tests::process::Child::spawn_with_input(
        "vendor-sftp-slow",
        c,
        p.d.path(),
        format!("put {} {}\nbye\n", local.display(), remote.display()).as_bytes(),
    )?;
    let id = p.d.wait_live_session()?;
    cpam_tests::wait_until(Duration::from_secs(30), "bytes on the target", || {
        std::fs::metadata(&remote)
            .ok()
            .filter(|m| m.len() > 256 * 1024)
            .map(|_| ())
    })?;
    p.d.admin_ok(&["sessions", "terminate", &id])?;
    child.wait_timeout(Duration::from_secs(10))?;
    p.d.wait_session_ended(&id)?;
    let files = file_records(&p)?;
    let rec = record(&files, &remote.display().to_string(), "upload");
    assert_eq!(rec.len(), 1, "{files:#?}");
    let d = &rec[0]["detail"];
    assert_eq!(d["result"], "incomplete");
    let size = d["size"].as_u64().unwrap_or(0);
    assert!(
        size > 256 * 1024 && size < 8 * 1024 * 1024,
        "bytes so far: {size}"
    );
    let on_target = std::fs::read(&remote)?;
    if on_target.len() as u64 == size {
        use sha2::Digest as _;
        assert_eq!(d["sha256"], hex::encode(sha2::Sha256::digest(&on_target)));
    }
    // The record precedes the session's end.
    let audit = p.d.audit()?;
    let pos = |a: &str| {
        audit
            .iter()
            .position(|r| r["action"] == a && r["session_id"] == id.as_str())
    };
    assert!(
        pos("session.file") < pos("session.end"),
        "file record before the end"
    );
    Ok(())
}

#[test]
fn a_malformed_sftp_packet_ends_the_channel_and_the_server_goes_on() -> anyhow::Result<()> {
    let p = Psm::start()?;
    // An INIT, then a packet that claims 16 MiB.
    let mut input = vec![0, 0, 0, 5, 1, 0, 0, 0, 3];
    input.extend_from_slice(&[1, 0, 0, 0, 3, 0, 0, 0, 1]);
    let ssh = p.ssh(MASTER, &["-s"], &["sftp"])?;
    let out = cpam_tests::process::run_with_input(
        "vendor-sftp-raw",
        ssh,
        p.d.path(),
        Duration::from_secs(60),
        &input,
    )?;
    let _ = out;
    cpam_tests::wait_until(
        Duration::from_secs(20),
        "the malformed stream audited",
        || {
            p.d.audit()
                .ok()?
                .iter()
                .find(|r| r["action"] == "session.sftp.malformed")
                .cloned()
        },
    )?;
    // The server still serves: a stock sftp session works.
    let dir = TargetDir::new(&p)?;
    let local = p.d.path().join("after.txt");
    std::fs::write(&local, "still here\n")?;
    let out = sftp_run(
        &p,
        &[],
        &format!(
            "put {} {}/after.txt\nbye\n",
            local.display(),
            dir.path.display()
        ),
    )?;
    assert!(out.success(), "{}\n{}", out.stderr, p.d.logs());
    assert_eq!(
        std::fs::read_to_string(dir.path.join("after.txt"))?,
        "still here\n"
    );
    p.d.expect_audit_intact()
}
