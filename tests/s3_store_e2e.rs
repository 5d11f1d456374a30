//! Recordings on an S3-compatible object store (moto, started by the
//! tests): a privileged SSH session's recording is uploaded and verifies
//! from the store; the store stopped for 30 s mid-recording loses nothing;
//! a server killed with SIGKILL mid-recording has its spool uploaded when
//! it starts again, the recording `incomplete` but holding what was shown
//! up to 2 s before the kill; a bad URL or an unreachable store refuses
//! the start with an error naming it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use cpam_tests::bins::bin_path;
use cpam_tests::cpam::{Deployment, Options};
use cpam_tests::process::{Child, Output, run};
use cpam_tests::psm::{MASTER, Psm};
use cpam_tests::recording::line;
use cpam_tests::s3::S3;
use cpam_tests::wait_until;

const CMD: Duration = Duration::from_secs(90);

/// The output a recording (asciicast text) shows, events joined.
fn shown(cast: &str) -> anyhow::Result<String> {
    let reader = cpam_core::record::Reader::new(std::io::Cursor::new(cast.as_bytes()))?;
    let mut text = String::new();
    for event in reader {
        let event = event?;
        if event.kind == cpam_core::record::EventKind::Output {
            text.push_str(&event.data);
        }
    }
    Ok(text)
}

/// The names under `PREFIX/ID/` (without the prefix).
fn names(s3: &S3, prefix: &str, id: &str) -> anyhow::Result<Vec<String>> {
    let dir = format!("{prefix}/{id}/");
    Ok(s3
        .objects(&dir)?
        .into_iter()
        .map(|(k, _)| k.trim_start_matches(&dir).to_string())
        .collect())
}

/// Whether the data dir's spool still holds `id`.
fn spooled(data: &Path, id: &str) -> bool {
    data.join("recordings").join(format!("{id}.cast")).exists()
}

/// `cpam-server ARGS --data-dir DATA` in the vendor namespace (where the
/// store is), recording to `prefix`.
fn cli_in_ns(d: &Deployment, args: &[&str]) -> anyhow::Result<Output> {
    let mut c = d.topo.vendor.command(bin_path("cpam-server")?);
    c.args(args)
        .arg("--data-dir")
        .arg(&d.data_dir)
        .envs(d.server_env.iter().map(|(k, v)| (k, v)));
    run("cpam-server-cli", c, d.path(), CMD)
}

#[test]
fn a_psm_session_is_recorded_in_the_object_store_and_verifies_from_it() -> anyhow::Result<()> {
    let mut p = Psm::start_with(Options {
        recordings_s3: Some("cpam/rec".into()),
        ..Options::default()
    })?;
    let console =
        p.d.server
            .as_mut()
            .context("the server is not running")?
            .wait_for_line("cpam-server console on ", Duration::from_secs(30))?;
    let s3 = p.d.s3.as_ref().context("the deployment's store")?;
    let out = p.ssh_run(MASTER, &["-tt"], &[], "echo s3-$((6*7))\rexit\r")?;
    assert!(
        out.stdout.contains("s3-42"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    let session =
        p.d.sessions()?
            .into_iter()
            .find(|s| s["protocol"] == "ssh")
            .context("the PSM session")?;
    let sid = cpam_tests::cpam::json_str(&session, "id")?;
    p.d.wait_session_ended(&sid)?;
    let list = cli_in_ns(&p.d, &["recordings", "list", "--session", &sid, "--json"])?
        .ok("recordings list")?;
    let list: serde_json::Value = serde_json::from_str(&list.stdout)?;
    let id = cpam_tests::cpam::json_str(&list[0], "id")?;

    // Uploaded within seconds of the seal, then gone from the spool.
    let objects = wait_until(Duration::from_secs(30), "the manifest in the store", || {
        names(s3, "cpam/rec", &id)
            .ok()
            .filter(|n| n.iter().any(|n| n == "manifest"))
    })
    .with_context(|| format!("{}\n{}", p.d.logs(), s3.logs()))?;
    assert!(
        objects.contains(&"chunk-000001".to_string())
            && objects.contains(&"chain-000001".to_string()),
        "{objects:?}"
    );
    wait_until(Duration::from_secs(10), "the spool emptied", || {
        (!spooled(&p.d.data_dir, &id)).then_some(())
    })?;

    // Read back from the store.
    let verified = cli_in_ns(&p.d, &["recordings", "verify", &id])?.ok("recordings verify")?;
    assert!(
        verified.stdout.contains("verified: complete"),
        "{}",
        verified.stdout
    );
    let cat = cli_in_ns(&p.d, &["recordings", "cat", &id])?.ok("recordings cat")?;
    assert!(cat.stdout.contains("s3-42"), "{}", cat.stdout);
    let listed: serde_json::Value = serde_json::from_str(
        &cli_in_ns(&p.d, &["recordings", "list", "--json"])?
            .ok("recordings list")?
            .stdout,
    )?;
    assert_eq!(listed[0]["state"], "complete", "{listed}");
    cli_in_ns(&p.d, &["audit", "verify"])?.ok("audit verify against the store")?;
    // The data dir alone no longer holds it: the audited seal is missed.
    let alone = p.d.admin(&["audit", "verify"])?;
    assert!(!alone.success(), "{}", alone.stdout);
    assert!(alone.stdout.contains(&id), "{}", alone.stdout);

    // The server is not ready while its recording store does not answer.
    assert_eq!(p.d.readyz(&console)?, (200, "ready\n".to_string()));
    s3.pause()?;
    let down = p.d.readyz(&console);
    s3.resume()?;
    assert_eq!(
        down?,
        (503, "recording store unreachable\n".to_string()),
        "/readyz with the store stopped"
    );
    wait_until(Duration::from_secs(10), "/readyz ready again", || {
        p.d.readyz(&console).ok().filter(|(code, _)| *code == 200)
    })?;
    Ok(())
}

/// A data dir (`cpam-server init`) and an S3 store in the root namespace.
struct Local {
    dir: tempfile::TempDir,
    s3: S3,
    prefix: &'static str,
}

impl Local {
    fn start(prefix: &'static str) -> anyhow::Result<Local> {
        let dir = tempfile::tempdir()?;
        let s3 = S3::start(None, dir.path())?;
        let l = Local { dir, s3, prefix };
        l.cpam(&["init", "--listen", "127.0.0.1:0"])?
            .ok("cpam-server init")?;
        Ok(l)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn cpam(&self, args: &[&str]) -> anyhow::Result<Output> {
        let mut c = Command::new(bin_path("cpam-server")?);
        c.args(args)
            .arg("--data-dir")
            .arg(self.data())
            .envs(self.s3.env(self.prefix));
        run("cpam-server", c, self.dir.path(), CMD)
    }

    /// `record-driver` (the server in a process of its own) recording to
    /// the store.
    fn driver(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_record-driver"));
        c.arg("--data-dir")
            .arg(self.data())
            .args(args)
            .envs(self.s3.env(self.prefix))
            .env("RUST_LOG", "info");
        c
    }

    /// Waits for `record-driver` to print its session; the recording id.
    fn recording(&self, child: &mut Child) -> anyhow::Result<String> {
        Ok(format!(
            "{}.0",
            child.wait_for_line("session ", Duration::from_secs(30))?
        ))
    }

    fn emitted(child: &Child) -> usize {
        child
            .stdout()
            .lines()
            .filter(|l| l.starts_with("emitted "))
            .count()
    }
}

#[test]
fn the_store_down_for_30_s_mid_recording_loses_nothing() -> anyhow::Result<()> {
    let l = Local::start("down")?;
    let lines = 450;
    let mut child = Child::spawn(
        "record-driver",
        l.driver(&["--lines", &lines.to_string(), "--interval-ms", "100"]),
        l.dir.path(),
    )?;
    let id = l.recording(&mut child)?;
    // Parts arrive while the session runs.
    wait_until(Duration::from_secs(20), "a first part", || {
        names(&l.s3, l.prefix, &id)
            .ok()
            .filter(|n| n.iter().any(|n| n == "chain-000001"))
    })?;
    l.s3.pause()?;
    let paused = Instant::now();
    let before = Local::emitted(&child);
    std::thread::sleep(Duration::from_secs(30));
    let during = Local::emitted(&child) - before;
    // The store sees nothing while stopped: resumed, it gets the rest.
    l.s3.resume()?;
    assert!(during > 200, "the session went on while the store was down");
    let status = child
        .wait_timeout(Duration::from_secs(120))?
        .with_context(|| format!("the driver did not finish\n{}", child.logs()))?;
    assert!(status.success(), "{}", child.logs());
    assert!(paused.elapsed() >= Duration::from_secs(30));
    let objects = names(&l.s3, l.prefix, &id)?;
    assert!(objects.iter().any(|n| n == "manifest"), "{objects:?}");
    assert!(!spooled(&l.data(), &id), "uploaded, the spool is emptied");

    let verified = l
        .cpam(&["recordings", "verify", &id])?
        .ok("recordings verify")?;
    assert!(
        verified.stdout.contains("verified: complete"),
        "{}",
        verified.stdout
    );
    let cat = l.cpam(&["recordings", "cat", &id])?.ok("recordings cat")?;
    let text = shown(&cat.stdout)?;
    for i in 0..lines {
        assert!(text.contains(&line(i)), "line {i} was lost");
    }
    l.cpam(&["audit", "verify"])?.ok("audit verify")?;
    Ok(())
}

#[test]
fn a_server_killed_mid_recording_uploads_its_spool_when_it_starts_again() -> anyhow::Result<()> {
    let l = Local::start("killed")?;
    let mut child = Child::spawn(
        "record-driver",
        l.driver(&["--lines", "100000", "--interval-ms", "50"]),
        l.dir.path(),
    )?;
    let id = l.recording(&mut child)?;
    // When each line was seen emitted (it was emitted no later than that).
    let mut seen: Vec<Instant> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < 100 {
        while seen.len() < Local::emitted(&child) {
            seen.push(Instant::now());
        }
        anyhow::ensure!(Instant::now() < deadline, "{}", child.logs());
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill()?;
    let killed = Instant::now();
    let must_hold = seen
        .iter()
        .filter(|at| killed.duration_since(**at) > Duration::from_secs(2))
        .count() as u64;
    assert!(must_hold >= 50, "the kill came too soon to check anything");
    assert!(spooled(&l.data(), &id), "the spool holds the cut recording");
    let before = names(&l.s3, l.prefix, &id)?;
    assert!(!before.iter().any(|n| n == "manifest"), "{before:?}");

    // The next start seals it and uploads the rest, then empties the spool.
    let restart = run(
        "record-driver-restart",
        l.driver(&["--lines", "0"]),
        l.dir.path(),
        CMD,
    )?
    .ok("restart")?;
    assert!(restart.stdout.contains("sealed 1"), "{}", restart.stdout);
    let after = names(&l.s3, l.prefix, &id)?;
    assert!(
        after.iter().any(|n| n == "manifest"),
        "{after:?}\n{}",
        restart.stderr
    );
    for n in &before {
        assert!(
            after.contains(n),
            "{n} was uploaded before the kill and kept"
        );
    }
    assert!(!spooled(&l.data(), &id));

    let verified = l
        .cpam(&["recordings", "verify", &id])?
        .ok("recordings verify")?;
    assert!(
        verified.stdout.contains("verified: incomplete"),
        "{}",
        verified.stdout
    );
    let cat = l.cpam(&["recordings", "cat", &id])?.ok("recordings cat")?;
    let text = shown(&cat.stdout)?;
    for i in 0..must_hold {
        assert!(
            text.contains(&line(i)),
            "line {i}, emitted over 2 s before the kill, is missing"
        );
    }
    l.cpam(&["audit", "verify"])?.ok("audit verify")?;
    Ok(())
}

#[test]
fn a_bad_url_or_an_unreachable_store_refuses_the_start_naming_it() -> anyhow::Result<()> {
    let l = Local::start("bad")?;
    let secret = format!("secret-{}", cpam_tests::now_millis());
    let start = |args: &[&str]| -> anyhow::Result<Output> {
        let mut c = Command::new(bin_path("cpam-server")?);
        c.args(["run", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(l.data())
            .args(args)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", &secret)
            .env_remove("CPAM_RECORDINGS")
            .env_remove("AWS_ENDPOINT_URL");
        run("cpam-server-run", c, l.dir.path(), CMD)
    };
    let refused = |args: &[&str], says: &str| -> anyhow::Result<()> {
        let out = start(args)?;
        assert!(!out.success(), "{args:?} started");
        assert!(
            out.stderr.contains(says),
            "{args:?}: `{}` should say `{says}`",
            out.stderr
        );
        assert!(!out.stderr.contains(&secret) && !out.stdout.contains(&secret));
        Ok(())
    };
    refused(&["--recordings", "ftp://bucket/x"], "`ftp://bucket/x`")?;
    refused(&["--recordings", "s3://"], "`s3://`")?;
    refused(
        &["--s3-endpoint", &l.s3.endpoint],
        "--s3-endpoint needs --recordings",
    )?;
    refused(
        &[
            "--recordings",
            "s3://b/p",
            "--s3-endpoint",
            "ftp://127.0.0.1:1",
        ],
        "`ftp://127.0.0.1:1`",
    )?;
    // Nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let endpoint = format!("http://{closed}");
    refused(
        &["--recordings", "s3://b/p", "--s3-endpoint", &endpoint],
        &format!("cannot reach the recording store s3://b/p at {endpoint}"),
    )?;
    // A store that answers but has no such bucket.
    refused(
        &[
            "--recordings",
            "s3://no-such-bucket/p",
            "--s3-endpoint",
            &l.s3.endpoint,
        ],
        "s3://no-such-bucket/p",
    )?;
    Ok(())
}
