//! Session recordings end to end: a session run through the core API on a
//! data dir's server is recorded, `cpam-server recordings` lists, verifies,
//! prints and searches it, stock `asciinema cat` plays it, a one-byte edit
//! fails `recordings verify` and `audit verify`; and a server killed with
//! SIGKILL mid-recording leaves a recording that the next start seals as
//! `incomplete`, holding the output up to a second before the kill.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use cpam_core::server::{Server, ServerOptions, Source};
use cpam_tests::bins::bin_path;
use cpam_tests::process::{Child, Output, run};
use cpam_tests::recording::{Ticker, line, run_session};

const CMD: Duration = Duration::from_secs(60);

struct DataDir {
    dir: tempfile::TempDir,
}

impl DataDir {
    fn init() -> anyhow::Result<DataDir> {
        let d = DataDir {
            dir: tempfile::tempdir()?,
        };
        d.cpam(&["init", "--listen", "127.0.0.1:0"])?
            .ok("cpam-server init")?;
        Ok(d)
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn cpam(&self, args: &[&str]) -> anyhow::Result<Output> {
        let mut c = Command::new(bin_path("cpam-server")?);
        c.args(args).arg("--data-dir").arg(self.path());
        run("cpam-server", c, self.dir.path(), CMD)
    }

    fn cast(&self, id: &str) -> PathBuf {
        self.path().join("recordings").join(format!("{id}.cast"))
    }

    fn asciinema_cat(&self, file: &Path) -> anyhow::Result<String> {
        cpam_tests::recording::asciinema_cat(file, self.dir.path())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_session_verifies_plays_and_detects_an_edit() -> anyhow::Result<()> {
    let d = DataDir::init()?;
    let server = Server::open(&Source::DataDir(d.path()), ServerOptions::default()).await?;
    let ticker = Ticker {
        lines: 6,
        interval: Duration::from_millis(20),
        announce: false,
    };
    let session = run_session(&server, &ticker, |_| {}).await?;
    server.stop(Duration::from_secs(10)).await;
    let recorder = server.recorder().context("a data dir's server records")?;
    assert!(recorder.wait_sealed(Duration::from_secs(10)));
    // The seal is audited, with the manifest's hashes.
    let deadline = Instant::now() + Duration::from_secs(10);
    let sealed = loop {
        let records = server
            .store()
            .audit_records(&cpam_core::store::AuditFilter {
                actor: Some(cpam_core::record::RECORDER_ACTOR.into()),
                ..Default::default()
            })
            .await?;
        if let Some(r) = records.into_iter().next() {
            break r;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no recording.sealed audit record"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(sealed.event.action, "recording.sealed");
    assert_eq!(sealed.event.session_id.as_ref(), Some(&session.id));
    assert_eq!(sealed.event.detail["state"], "complete");
    drop(server);
    let id = format!("{}.0", session.id);

    let list: serde_json::Value = serde_json::from_str(
        &d.cpam(&[
            "recordings",
            "list",
            "--session",
            session.id.as_str(),
            "--json",
        ])?
        .ok("recordings list")?
        .stdout,
    )?;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["state"], "complete");

    let verified = d
        .cpam(&["recordings", "verify", &id])?
        .ok("recordings verify")?;
    assert!(
        verified.stdout.contains("verified: complete"),
        "{}",
        verified.stdout
    );

    // Stock asciinema plays it: the text the session showed, whole.
    let played = d.asciinema_cat(&d.cast(&id))?;
    for i in 0..6 {
        assert!(
            played.contains(&line(i)),
            "line {i} missing from:\n{played}"
        );
    }
    let cat = d.cpam(&["recordings", "cat", &id])?.ok("recordings cat")?;
    assert_eq!(
        cat.stdout.as_bytes(),
        std::fs::read(d.cast(&id))?.as_slice()
    );
    assert!(
        cat.stdout.contains("\"r\", \"100x30\""),
        "the resize is recorded"
    );

    let hits: serde_json::Value = serde_json::from_str(
        &d.cpam(&["recordings", "search", &line(3), "--json"])?
            .ok("recordings search")?
            .stdout,
    )?;
    assert_eq!(hits[0]["id"], id.as_str(), "{hits}");
    let none = d.cpam(&["recordings", "search", "never shown", "--json"])?;
    assert_eq!(none.ok("search")?.stdout.trim(), "[]");

    d.cpam(&["audit", "verify"])?
        .ok("audit verify before the edit")?;

    // One byte edited: both checks fail and say what is wrong.
    let mut bytes = std::fs::read(d.cast(&id))?;
    let at = bytes
        .windows(10)
        .position(|w| w == line(4).as_bytes().get(..10).unwrap_or_default())
        .context("line 4 in the file")?;
    bytes[at] = b'L';
    std::fs::write(d.cast(&id), &bytes)?;
    let out = d.cpam(&["recordings", "verify", &id])?;
    assert!(!out.success(), "an edited recording verified");
    assert!(out.stderr.contains("was edited"), "{}", out.stderr);
    let out = d.cpam(&["recordings", "verify", "--all"])?;
    assert!(!out.success());
    assert!(out.stdout.contains("1 failed"), "{}", out.stdout);
    let out = d.cpam(&["audit", "verify"])?;
    assert!(!out.success(), "audit verify missed an edited recording");
    assert!(out.stdout.contains("recording FAILED"), "{}", out.stdout);

    // Removed with its chain and manifest, it is still missed: the audit
    // log names the seal.
    for ext in ["cast", "chain", "manifest.json"] {
        std::fs::remove_file(d.path().join("recordings").join(format!("{id}.{ext}")))?;
    }
    let out = d.cpam(&["audit", "verify"])?;
    assert!(!out.success(), "audit verify missed a removed recording");
    assert!(out.stdout.contains("was removed"), "{}", out.stdout);

    // A bad id is named, not looked up.
    let out = d.cpam(&["recordings", "verify", "../../etc/passwd"])?;
    assert!(!out.success() && out.stderr.contains("recording id"));
    Ok(())
}

#[test]
fn a_server_killed_mid_recording_leaves_an_incomplete_recording() -> anyhow::Result<()> {
    let d = DataDir::init()?;
    let driver = || -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_record-driver"));
        c.arg("--data-dir").arg(d.path());
        c
    };
    let mut cmd = driver();
    cmd.args(["--lines", "100000", "--interval-ms", "50"]);
    let mut child = Child::spawn("record-driver", cmd, d.dir.path())?;
    let session = child.wait_for_line("session ", Duration::from_secs(30))?;
    let id = format!("{session}.0");

    // When each line was seen emitted (it was emitted no later than that).
    let mut seen: Vec<Instant> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < 60 {
        let emitted = child
            .stdout()
            .lines()
            .filter(|l| l.starts_with("emitted "))
            .count();
        while seen.len() < emitted {
            seen.push(Instant::now());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the driver stopped emitting\n{}",
            child.logs()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill()?;
    let killed = Instant::now();
    let must_hold = seen
        .iter()
        .filter(|at| killed.duration_since(**at) > Duration::from_secs(1))
        .count();
    assert!(must_hold >= 30, "the kill came too soon to check anything");

    let out = d.cpam(&["recordings", "verify", &id])?;
    assert!(
        !out.success(),
        "a recording cut by SIGKILL verified before sealing"
    );
    assert!(out.stderr.contains("not sealed"), "{}", out.stderr);

    // The next start seals it.
    let mut cmd = driver();
    cmd.args(["--lines", "0"]);
    let restart = run("record-driver-restart", cmd, d.dir.path(), CMD)?.ok("restart")?;
    assert!(restart.stdout.contains("sealed 1"), "{}", restart.stdout);

    let verified = d
        .cpam(&["recordings", "verify", &id])?
        .ok("recordings verify")?;
    assert!(
        verified.stdout.contains("verified: incomplete"),
        "{}",
        verified.stdout
    );
    let audit = d.cpam(&["audit", "list", "--json"])?.ok("audit list")?;
    let audit: serde_json::Value = serde_json::from_str(&audit.stdout)?;
    let seal = audit
        .as_array()
        .and_then(|a| a.iter().find(|r| r["action"] == "recording.sealed"))
        .context("the incomplete seal is audited")?;
    assert_eq!(seal["detail"]["state"], "incomplete", "{seal}");
    d.cpam(&["audit", "verify"])?
        .ok("audit verify after the restart")?;
    let played = d.asciinema_cat(&d.cast(&id))?;
    for i in 0..must_hold as u64 {
        assert!(
            played.contains(&line(i)),
            "line {i}, emitted over a second before the kill, is missing"
        );
    }
    Ok(())
}

#[test]
fn the_rest_api_lists_downloads_and_verifies_a_sessions_recording() -> anyhow::Result<()> {
    use cpam_core::model::{EndReason, SessionId, SessionProtocol, Target};
    use cpam_core::record::{
        EventKind, Header, RecordingId, RecordingStore as _, SealState, event_line,
    };
    use cpam_core::store::{SessionLog as _, SqlStore};
    use cpam_tests::web::{WebOptions, WebServer};

    let web = WebServer::start(WebOptions::default())?;
    let admin = web.admin()?;
    let customer = admin.post("/api/v1/customers", &serde_json::json!({ "name": "acme" }))?;
    let me = admin.get("/api/v1/auth/me")?;
    let now = cpam_core::model::Timestamp::now();
    let session = cpam_core::model::Session {
        id: SessionId::generate(),
        user_id: cpam_core::model::UserId(me["user"]["id"].as_str().unwrap_or_default().into()),
        user_name: "admin".into(),
        customer_id: cpam_core::model::CustomerId(
            customer["id"].as_str().unwrap_or_default().into(),
        ),
        gatekeeper_id: None,
        service_id: cpam_core::model::ServiceId("svc_rec".into()),
        service_name: "shell".into(),
        target: Target {
            host: "10.0.0.5".into(),
            port: 22,
        },
        grant_id: None,
        protocol: SessionProtocol::Ssh,
        node_id: None,
        started_at: now,
        ended_at: Some(now),
        bytes_up: 0,
        bytes_down: 0,
        end_reason: Some(EndReason::Completed),
        end_detail: None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let store = rt.block_on(SqlStore::connect(&format!(
        "sqlite://{}",
        web.data_dir.join("cpam.db").display()
    )))?;
    rt.block_on(store.insert_session(&session))?;

    let recordings = cpam_core::server::DataDir::open(&web.data_dir)?.recordings()?;
    let id = RecordingId::new(&session.id, 0)?;
    let mut w = recordings.create(&id, now)?;
    w.append(Header::new(80, 24).to_line().as_bytes())?;
    w.append(event_line(0.2, EventKind::Output, "shown over REST\r\n").as_bytes())?;
    w.seal(now, SealState::Complete)?;
    let file = recordings.cast_path(&id);

    let list = admin.get(&format!("/api/v1/sessions/{}/recordings", session.id))?;
    assert_eq!(list[0]["id"], id.as_str(), "{list}");
    assert_eq!(list[0]["state"], "complete");
    let cast = admin
        .send("GET", &format!("/api/v1/recordings/{id}/cast"), None)?
        .expect(200, "download")?;
    assert_eq!(cast.body.as_bytes(), std::fs::read(&file)?.as_slice());
    assert!(
        cast.header("content-disposition")
            .unwrap_or_default()
            .contains(&format!("{id}.cast"))
    );
    let ok = admin.get(&format!("/api/v1/recordings/{id}/verify"))?;
    assert_eq!(
        (ok["ok"].clone(), ok["state"].clone()),
        (true.into(), "complete".into()),
        "{ok}"
    );

    let mut bytes = std::fs::read(&file)?;
    let at = bytes
        .windows(5)
        .position(|w| w == b"shown")
        .context("text")?;
    bytes[at] = b'S';
    std::fs::write(&file, bytes)?;
    let bad = admin.get(&format!("/api/v1/recordings/{id}/verify"))?;
    assert_eq!(bad["ok"], false, "{bad}");
    assert!(
        bad["error"].as_str().unwrap_or_default().contains("edited"),
        "{bad}"
    );

    // Missing and malformed ids answer 404 like a foreign session's.
    for path in [
        "/api/v1/recordings/ses_missing.0/verify",
        "/api/v1/recordings/not-an-id/cast",
    ] {
        admin.send("GET", path, None)?.expect(404, path)?;
    }
    Ok(())
}
