//! File Transfer's bad input through `cpam-connect put` / `get`: names that
//! are not UTF-8 or too long, a symlink out of the allowed prefix, the same
//! file uploaded twice at once, and a file past 4 GiB (offsets beyond 32
//! bits), each checked on the target's filesystem and in the audit.

use std::ffi::OsStr;
use std::io::{Seek as _, Write as _};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::time::Duration;

use cpam_tests::process::{Child, Output, run_with_input};
use cpam_tests::psm::{MASTER, Psm};
use cpam_tests::sftp::{TargetDir, file_records, random_file, sha256_file};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// `cpam-connect ARGS RAW...` (RAW passed as bytes, not UTF-8 checked).
fn command(p: &Psm, args: &[&str], raw: &[&[u8]]) -> anyhow::Result<std::process::Command> {
    let mut c = p.d.connect_cmd(args)?;
    for r in raw {
        c.arg(OsStr::from_bytes(r));
    }
    Ok(c)
}

fn run(p: &Psm, name: &str, args: &[&str], raw: &[&[u8]]) -> anyhow::Result<Output> {
    run_with_input(
        name,
        command(p, args, raw)?,
        p.d.path(),
        Duration::from_secs(300),
        format!("{MASTER}\n").as_bytes(),
    )
}

fn json(out: Output, what: &str) -> anyhow::Result<Value> {
    Ok(serde_json::from_str(&out.ok(what)?.stdout)?)
}

#[test]
fn odd_names_symlinks_out_and_concurrent_uploads_are_handled() -> anyhow::Result<()> {
    let p = Psm::start()?;
    let dir = TargetDir::new(&p)?;
    let base = dir.path.display().to_string();
    dir.mkdir(&p, "in")?;
    let outside = dir.mkdir(&p, "outside")?;
    std::fs::write(outside.join("secret.txt"), "not for the vendor\n")?;
    std::os::unix::fs::symlink(&outside, dir.path.join("in/escape"))?;
    std::os::unix::fs::symlink(outside.join("secret.txt"), dir.path.join("in/secret.txt"))?;
    p.d.admin_ok(&[
        "service",
        "file-policy",
        "db1@acme",
        "--set",
        "--prefix",
        &format!("{base}/in"),
    ])?;
    let local = p.d.path().join("note.bin");
    random_file(&local, 200_000, 31)?;
    let sha = sha256_file(&local)?;
    let l = local.display().to_string();

    // A name that is not UTF-8, inside the prefix: it lands, byte for byte.
    let mut odd = format!("{base}/in/").into_bytes();
    odd.extend_from_slice(b"caf\xe9-\xff.bin");
    let v = json(
        run(&p, "put-non-utf8", &["put", "db1", &l, "--json"], &[&odd])?,
        "put of a non-UTF-8 name",
    )?;
    assert_eq!(v["sha256"], sha.as_str());
    let landed = Path::new(OsStr::from_bytes(&odd));
    assert_eq!(sha256_file(landed)?, sha, "the target has the odd name");

    // Too long, through a symlink out, downloading through a symlink out.
    let long = format!("{base}/in/{}", "d/".repeat(2100));
    for (name, args, raw) in [
        ("put-long", vec!["put", "db1", &l], long.as_bytes().to_vec()),
        (
            "put-symlink-out",
            vec!["put", "db1", &l],
            format!("{base}/in/escape/x.bin").into_bytes(),
        ),
    ] {
        let out = run(&p, name, &args, &[&raw])?;
        assert!(!out.success(), "{name} refused");
        assert!(
            out.stderr.contains("permission denied"),
            "{name}: {}",
            out.stderr
        );
    }
    let stolen = p.d.path().join("stolen.txt");
    let out = run(
        &p,
        "get-symlink-out",
        &[
            "get",
            "db1",
            &format!("{base}/in/secret.txt"),
            &stolen.display().to_string(),
        ],
        &[],
    )?;
    assert!(!out.success());
    assert!(out.stderr.contains("permission denied"), "{}", out.stderr);
    assert!(!stolen.exists(), "nothing written for a refused download");
    let mut tree = dir.tree();
    tree.retain(|p| !p.starts_with("in/caf"));
    assert_eq!(
        tree,
        [
            "in",
            "in/escape",
            "in/secret.txt",
            "outside",
            "outside/secret.txt"
        ],
        "nothing else changed on the target"
    );

    // The same file uploaded twice at once: two records, each right.
    let remote = format!("{base}/in/twice.bin");
    let mut both = Vec::new();
    for n in 0..2 {
        both.push(Child::spawn_with_input(
            &format!("put-twice-{n}"),
            command(&p, &["put", "db1", &l, &remote], &[])?,
            p.d.path(),
            format!("{MASTER}\n").as_bytes(),
        )?);
    }
    for mut child in both {
        let status = child
            .wait_timeout(Duration::from_secs(120))?
            .ok_or_else(|| anyhow::anyhow!("a concurrent put did not finish"))?;
        assert!(status.success(), "{}", child.stderr());
    }
    assert_eq!(sha256_file(Path::new(&remote))?, sha);

    let files = file_records(&p)?;
    let twice: Vec<_> = files
        .iter()
        .filter(|r| r["detail"]["path"] == remote.as_str())
        .collect();
    assert_eq!(twice.len(), 2, "one record per upload: {files:#?}");
    for r in &twice {
        assert_eq!(r["detail"]["sha256"], sha.as_str());
        assert_eq!(r["detail"]["result"], "complete");
    }
    assert_ne!(twice[0]["session_id"], twice[1]["session_id"]);
    let refused: Vec<_> = files
        .iter()
        .filter(|r| r["detail"]["result"] == "refused")
        .collect();
    assert!(
        refused.len() >= 3,
        "the long name, the symlinked upload and download are refused on record: {files:#?}"
    );
    // The odd name is recorded (lossily as text) with the file's hash.
    assert!(files.iter().any(|r| {
        r["detail"]["sha256"] == sha.as_str()
            && r["detail"]["path"]
                .as_str()
                .is_some_and(|s| s.contains("caf\u{fffd}-\u{fffd}.bin"))
    }));
    p.d.expect_audit_intact()
}

/// Stock `sha256sum` of a (large) file.
fn sha256sum(path: &Path) -> anyhow::Result<String> {
    let out = std::process::Command::new("sha256sum").arg(path).output()?;
    anyhow::ensure!(out.status.success(), "sha256sum {} failed", path.display());
    let text = String::from_utf8(out.stdout)?;
    Ok(text.split_whitespace().next().unwrap_or("").to_string())
}

/// A sparse file of `prefix` zero bytes then `tail`.
fn sparse(path: &Path, prefix: u64, tail: &[u8]) -> anyhow::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.set_len(prefix)?;
    f.seek(std::io::SeekFrom::Start(prefix))?;
    f.write_all(tail)?;
    Ok(())
}

#[test]
fn a_file_past_4_gib_moves_at_offsets_beyond_32_bits() -> anyhow::Result<()> {
    const G4: u64 = 1 << 32;
    let p = Psm::start()?;
    let dir = TargetDir::new(&p)?;
    let tail_path = p.d.path().join("tail.bin");
    random_file(&tail_path, 1024 * 1024 + 3, 41)?;
    let tail = std::fs::read(&tail_path)?;
    let tail_sha = hex::encode(Sha256::digest(&tail));
    let local = p.d.path().join("huge.bin");
    sparse(&local, G4, &tail)?;
    let whole = sha256sum(&local)?;
    // The target holds the first 4 GiB (a cut upload); the rest is resumed.
    let remote_path = dir.path.join("huge.bin");
    sparse(&remote_path, G4, &[])?;
    std::process::Command::new("chown")
        .arg(format!("{0}:{0}", p.account))
        .arg(&remote_path)
        .status()?;
    let remote = remote_path.display().to_string();
    let l = local.display().to_string();
    let v = json(
        run(
            &p,
            "put-huge",
            &["put", "db1", &l, &remote, "--resume", "--json"],
            &[],
        )?,
        "put past 4 GiB",
    )?;
    assert_eq!(v["resumed_from"], G4, "{v:#}");
    assert_eq!(v["sha256"], whole.as_str());
    assert_eq!(v["audited"]["offset"], G4);
    assert_eq!(v["audited"]["sha256"], tail_sha.as_str());
    assert_eq!(
        std::fs::metadata(&remote_path)?.len(),
        G4 + tail.len() as u64
    );
    let mut f = std::fs::File::open(&remote_path)?;
    f.seek(std::io::SeekFrom::Start(G4))?;
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut got)?;
    assert_eq!(got, tail, "the bytes past 4 GiB on the target");

    let back = p.d.path().join("back.bin");
    sparse(&back, G4, &[])?;
    let v = json(
        run(
            &p,
            "get-huge",
            &[
                "get",
                "db1",
                &remote,
                &back.display().to_string(),
                "--resume",
                "--json",
            ],
            &[],
        )?,
        "get past 4 GiB",
    )?;
    assert_eq!(v["sha256"], whole.as_str(), "the vendor's copy is the file");
    assert_eq!(v["audited"]["offset"], G4 - 64 * 1024);

    let files = file_records(&p)?;
    let up = files
        .iter()
        .find(|r| r["detail"]["path"] == remote.as_str() && r["detail"]["direction"] == "upload")
        .ok_or_else(|| anyhow::anyhow!("no upload record: {files:#?}"))?;
    assert_eq!(up["detail"]["offset"], G4);
    assert_eq!(up["detail"]["size"], tail.len());
    assert_eq!(up["detail"]["sha256"], tail_sha.as_str());
    assert_eq!(up["detail"]["result"], "complete");
    let down = files
        .iter()
        .find(|r| r["detail"]["path"] == remote.as_str() && r["detail"]["direction"] == "download")
        .ok_or_else(|| anyhow::anyhow!("no download record: {files:#?}"))?;
    assert_eq!(down["detail"]["offset"], G4 - 64 * 1024);
    assert_eq!(down["detail"]["size"], 64 * 1024 + tail.len() as u64);
    assert_eq!(down["detail"]["result"], "complete");
    assert_eq!(down["detail"]["sha256"], v["audited"]["sha256"]);
    Ok(())
}
