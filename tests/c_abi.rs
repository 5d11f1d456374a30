//! The C tutorials in `examples/c/`, compiled with `-Wall -Wextra -Werror`
//! under AddressSanitizer (with LeakSanitizer) and UndefinedBehaviorSanitizer
//! against the built `libcpam.so` and `include/cpam.h`, driving real sessions:
//! `embed_gatekeeper.c` is the gatekeeper, a TCP echo server on loopback is
//! the customer's target, `forward_service.c` is the vendor, and the server
//! is either `cpam-server run` or `hub_hooks.c` (the engine embedded in C
//! with an audit sink and an access hook). Any sanitizer report fails.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cpam_tests::bins::bin_path;
use cpam_tests::cc::{compile, compile_file, no_sanitizer_reports, sanitize, sanitized};
use cpam_tests::process::{Child, run};
use cpam_tests::psm::{MASTER, Psm};
use cpam_tests::sftp::{TargetDir, random_file, sftp_run, sha256_file};

const TIMEOUT: Duration = Duration::from_secs(60);

/// A TCP echo server on loopback: the customer's target.
fn echo_server() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(addr)
}

fn admin(dir: &Path, data: &Path, args: &[&str]) -> anyhow::Result<String> {
    let mut c = Command::new(bin_path("cpam-server")?);
    c.args(args).arg("--data-dir").arg(data);
    Ok(run(&format!("admin-{}", args.join("-")), c, dir, TIMEOUT)?
        .ok(&format!("cpam-server {}", args.join(" ")))?
        .stdout)
}

/// Which server the C gatekeeper and vendor talk to.
enum Server {
    /// `cpam-server run`.
    Binary,
    /// `hub_hooks.c`, whose access hook refuses this service.
    EmbeddedHub { denied: &'static str },
}

struct Outcome {
    server: String,
    forward: String,
    gatekeeper: String,
}

/// A stand-in for `xfreerdp` on the example's `PATH`.
const FAKE_XFREERDP: &str = r#"#!/usr/bin/env python3
import socket, sys
args = sys.argv[1:]
if len(args) != 2 or not args[0].startswith("/v:") or args[1] != "/cert:ignore":
    sys.exit(f"unexpected arguments {args}")
host, port = args[0][3:].rsplit(":", 1)
with socket.create_connection((host, int(port)), timeout=30) as s:
    s.sendall(b"desktop ping\n")
    got = b""
    while len(got) < 13:
        chunk = s.recv(64)
        if not chunk:
            break
        got += chunk
sys.exit(0 if got == b"desktop ping\n" else f"echo came back as {got!r}")
"#;

/// Runs the whole path and returns each program's stdout.
fn drive(server: Server, denied: &[&str]) -> anyhow::Result<Outcome> {
    let dir = tempfile::Builder::new().prefix("cpam-c-abi-").tempdir()?;
    let d = dir.path();
    let data = d.join("server");
    let stop = d.join("stop");
    let echo = echo_server()?.to_string();
    admin(d, &data, &["init", "--listen", "127.0.0.1:0"])?;

    let (mut server_child, addr) = match server {
        Server::Binary => {
            let mut c = Command::new(bin_path("cpam-server")?);
            c.args([
                "run",
                "--listen",
                "127.0.0.1:0",
                "--web-listen",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(&data);
            let mut child = Child::spawn("server", c, d)?;
            let addr = child.wait_for_line("cpam-server listening on ", TIMEOUT)?;
            (child, addr)
        }
        Server::EmbeddedHub { denied } => {
            let exe = compile("hub_hooks", d)?;
            let mut c = sanitized(&exe);
            c.arg(&data).arg(denied).arg(&stop);
            let mut child = Child::spawn("hub_hooks", c, d)?;
            let addr = child.wait_for_line("hub listening on ", TIMEOUT)?;
            (child, addr)
        }
    };
    admin(d, &data, &["customer", "add", "acme"])?;
    let gk = admin(
        d,
        &data,
        &["gatekeeper", "add", "gk1", "--customer", "acme", "--json"],
    )?;
    let gk: serde_json::Value = serde_json::from_str(&gk)?;
    let code = gk["code"].as_str().context("no code")?.to_string();

    let exe = compile("embed_gatekeeper", d)?;
    let mut c = sanitized(&exe);
    c.args([addr.as_str(), code.as_str()])
        .arg(d.join("gatekeeper"))
        .arg("127.0.0.0/8:1-65535")
        .arg(&stop);
    let mut gatekeeper = Child::spawn("embed_gatekeeper", c, d)?;
    gatekeeper
        .wait_for_line("ready", TIMEOUT)
        .map_err(|e| anyhow::anyhow!("{e}\n{}", server_child.logs()))?;

    admin(d, &data, &["user", "add", "vendor"])?;
    for service in ["echo"].iter().chain(denied) {
        admin(
            d,
            &data,
            &[
                "service",
                "add",
                service,
                "--customer",
                "acme",
                "--target",
                &echo,
            ],
        )?;
    }
    for service in ["echo"].iter().chain(denied).filter(|s| **s != "secret") {
        admin(
            d,
            &data,
            &[
                "grant",
                "add",
                "--user",
                "vendor",
                "--customer",
                "acme",
                "--service",
                service,
            ],
        )?;
    }
    let profile = d.join("vendor.profile");
    admin(
        d,
        &data,
        &[
            "profile",
            "export",
            "--user",
            "vendor",
            "--gatekeeper",
            "gk1",
            "--out",
            &profile.to_string_lossy(),
            "--server-address",
            &addr,
        ],
    )?;

    let exe = compile("forward_service", d)?;
    let mut c = sanitized(&exe);
    c.arg(&profile).arg("echo").args(denied);
    // The "native desktop client" the example launches on its forward: it
    // must get `/v:ADDR` and the example's argument, and reach the echo
    // service through the forward.
    let clients = d.join("bin");
    std::fs::create_dir(&clients)?;
    let fake = clients.join("xfreerdp");
    std::fs::write(&fake, FAKE_XFREERDP)?;
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let path = std::env::var("PATH").unwrap_or_default();
    c.env("PATH", format!("{}:{path}", clients.display()));
    let forward = run("forward_service", c, d, TIMEOUT)?;
    no_sanitizer_reports("forward_service", &forward.stderr)?;
    let forward = forward
        .ok("forward_service")
        .map_err(|e| anyhow::anyhow!("{e}\n{}\n{}", gatekeeper.logs(), server_child.logs()))?;

    std::fs::write(&stop, b"")?;
    let mut outcome = Outcome {
        server: String::new(),
        forward: forward.stdout,
        gatekeeper: String::new(),
    };
    for (child, is_c) in [
        (&mut gatekeeper, true),
        (
            &mut server_child,
            matches!(server, Server::EmbeddedHub { .. }),
        ),
    ] {
        if !is_c {
            child.kill()?;
            outcome.server = child.stdout();
            continue;
        }
        let status = child
            .wait_timeout(TIMEOUT)?
            .with_context(|| format!("{} did not stop\n{}", child.name(), child.logs()))?;
        no_sanitizer_reports(child.name(), &child.stderr())?;
        if !status.success() {
            bail!("{} exited with {status}\n{}", child.name(), child.logs());
        }
        if child.name() == "embed_gatekeeper" {
            outcome.gatekeeper = child.stdout();
        } else {
            outcome.server = child.stdout();
        }
    }
    Ok(outcome)
}

fn expect(what: &str, out: &str, needles: &[&str]) {
    for needle in needles {
        assert!(
            out.contains(needle),
            "{what}: missing `{needle}` in:\n{out}"
        );
    }
}

#[test]
fn c_gatekeeper_and_vendor_through_cpam_server() -> anyhow::Result<()> {
    let out = drive(Server::Binary, &["secret"])?;
    expect(
        "embed_gatekeeper",
        &out.gatekeeper,
        &[
            "registered",
            "info: {\"server\":\"127.0.0.1:",
            "\"gatekeeper_id\":\"gk_",
            "\"type\":\"gatekeeper_online\"",
            "status: registered=1 running=1 online=1 disabled=1",
            "status: registered=1 running=1 online=1 disabled=0",
            "\"type\":\"gatekeeper_offline\"",
            "stopped: closed",
        ],
    );
    expect(
        "forward_service",
        &out.forward,
        &[
            "\"name\":\"echo\"",
            "stream echoed: hello through cpam",
            "stream closed by the target",
            "refused: permission_denied (102): the server refused `secret`",
            "forward echoed: ping over a forward",
            "desktop client exited with 0",
            "all good",
        ],
    );
    Ok(())
}

#[test]
fn c_hub_with_an_access_hook_and_an_audit_sink() -> anyhow::Result<()> {
    let out = drive(
        Server::EmbeddedHub {
            denied: "after-hours",
        },
        &["secret", "after-hours"],
    )?;
    expect(
        "forward_service",
        &out.forward,
        &[
            "stream echoed: hello through cpam",
            "refused: permission_denied (102): the server refused `secret`",
            "refused: permission_denied (102): the server refused `after-hours`",
            "forward echoed: ping over a forward",
            "desktop client exited with 0",
            "all good",
        ],
    );
    expect(
        "hub_hooks",
        &out.server,
        &[
            "access hook: allow",
            "access hook: deny after-hours",
            "\"action\":\"server.start\"",
            "\"action\":\"gatekeeper.registered\"",
            "\"action\":\"session.start\"",
            "change window closed for after-hours",
            "\"type\":\"gatekeeper_online\"",
            "\"type\":\"session_started\"",
            "\"type\":\"session_ended\"",
            "\"type\":\"session_refused\"",
            "audit chain intact",
        ],
    );
    Ok(())
}

#[test]
fn the_sanitizers_do_report_under_these_conditions() -> anyhow::Result<()> {
    // The control for the tests above: "no report" only means something if
    // a leak and undefined behaviour are reported here.
    let dir = tempfile::tempdir()?;
    let source = dir.path().join("faulty.c");
    std::fs::write(
        &source,
        "#include <stdlib.h>\n#include <limits.h>\n#include \"cpam.h\"\n\
         int main(int argc, char **argv) {\n\
             (void)argv;\n\
             char *leak = malloc(64); leak[0] = (char)argc;\n\
             int big = INT_MAX - 1 + argc; /* argc is 1: no overflow yet */\n\
             if (argc > 1) { big += argc; } /* overflow only when asked */\n\
             return cpam_version()[0] == 0 || big < 0 || leak == NULL;\n\
         }\n",
    )?;
    let exe = compile_file(&source, dir.path())?;
    let leak = sanitized(&exe).output()?;
    let stderr = String::from_utf8_lossy(&leak.stderr);
    assert!(
        stderr.contains("LeakSanitizer") && !leak.status.success(),
        "a leak was not reported ({}):\n{stderr}",
        leak.status
    );
    let ub = sanitized(&exe).arg("overflow").output()?;
    let stderr = String::from_utf8_lossy(&ub.stderr);
    assert!(
        stderr.contains("runtime error:") && !ub.status.success(),
        "signed overflow was not reported ({}):\n{stderr}",
        ub.status
    );
    Ok(())
}

#[test]
fn c_reviews_recordings_and_names_a_tampered_one() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("server");
    admin(dir.path(), &data, &["init", "--listen", "127.0.0.1:0"])?;
    // One recorded terminal session, run through the core API.
    let mut driver = Command::new(bin_path("record-driver")?);
    driver
        .arg("--data-dir")
        .arg(&data)
        .args(["--lines", "5", "--interval-ms", "10"]);
    let out = run("record-driver", driver, dir.path(), TIMEOUT)?.ok("record-driver")?;
    let session = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("session "))
        .context("record-driver printed no session")?
        .trim()
        .to_string();
    let exe = compile("review_recordings", dir.path())?;
    let mut c = sanitized(&exe);
    c.arg(&data).arg("ticker");
    let out = run("review_recordings", c, dir.path(), TIMEOUT)?;
    no_sanitizer_reports("review_recordings", &out.stderr)?;
    let out = out.ok("review_recordings")?;
    let id = format!("{session}.0");
    expect(
        "review_recordings",
        &out.stdout,
        &[
            &format!("{id}: {{\"id\":\"{id}\",\"state\":\"complete\""),
            &format!("{id} events: {{\"desktop\":null,\"events\":[{{"),
            "line 00004",
            &format!("search ticker: [{{\"id\":\"{id}\""),
        ],
    );
    // One byte changed: the tutorial names the recording and exits 1.
    let cast = data.join("recordings").join(format!("{id}.cast"));
    let mut bytes = std::fs::read(&cast)?;
    let at = bytes.len() - 10;
    bytes[at] ^= 0x20;
    std::fs::write(&cast, &bytes)?;
    let mut c = sanitized(&exe);
    c.arg(&data);
    let out = run("review_recordings-tampered", c, dir.path(), TIMEOUT)?;
    no_sanitizer_reports("review_recordings", &out.stderr)?;
    assert_eq!(out.status.code(), Some(1), "{}\n{}", out.stdout, out.stderr);
    expect(
        "review_recordings (tampered)",
        &out.stdout,
        &[&format!("{id}: DOES NOT VERIFY: ")],
    );
    Ok(())
}

/// `supervise_sessions.c` embeds the hub over a privileged-session
/// deployment's data dir (in place of `cpam-server run`): it stores the
/// target's password in the vault, prints the file a vendor sends with
/// stock `sftp` as it arrives in the event stream, watches the vendor's
/// session through stock `ssh` and ends it when the forbidden text shows;
/// the vendor is told why, and every step is audited with the supervisor
/// as the actor.
#[test]
fn c_supervisor_watches_and_terminates_a_privileged_session() -> anyhow::Result<()> {
    let mut p = Psm::start()?;
    p.d.kill_server()?;
    let dir = p.d.path().to_path_buf();
    let exe = compile("supervise_sessions", &dir)?;
    let stop = dir.join("stop-supervisor");
    let password = dir.join("target-password");
    std::fs::write(&password, format!("{}\n", p.canary))?;
    let mut c = p.d.topo.vendor.command(&exe);
    sanitize(&mut c);
    c.arg(&p.d.data_dir)
        .arg(p.d.server_addr.to_string())
        .arg("forbidden-42")
        .arg(&stop)
        .arg("db1@acme")
        .arg(&p.account)
        .arg(&password);
    let mut sup = Child::spawn("supervise_sessions", c, &dir)?;
    sup.wait_for_line("hub listening on ", TIMEOUT)?;
    std::fs::remove_file(&password)?;
    // The gatekeeper and the forward find the hub by themselves.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !p.ssh_run(MASTER, &[], &["true"], "")?.success() {
        if Instant::now() > deadline {
            bail!("no session through the C hub\n{}", sup.logs());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    // A file sent with stock sftp reaches the C program as an activity
    // event, with the SHA-256 of the bytes that crossed.
    let target = TargetDir::new(&p)?;
    let local = dir.join("fix.bin");
    random_file(&local, 300 * 1024 + 7, 42)?;
    let sha = sha256_file(&local)?;
    let remote = target.path.join("fix.bin");
    let put = sftp_run(
        &p,
        &[],
        &format!("put {} {}\n", local.display(), remote.display()),
    )?;
    assert!(put.success(), "sftp put failed: {put:?}\n{}", sup.logs());
    assert_eq!(sha256_file(&remote)?, sha, "the target's copy differs");
    let activity = cpam_tests::wait_until(TIMEOUT, "the file event in C", || {
        sup.stdout()
            .lines()
            .filter_map(|l| l.strip_prefix("activity: "))
            .filter_map(|j| serde_json::from_str::<serde_json::Value>(j).ok())
            .find(|e| e["action"] == "session.file")
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}", sup.logs()))?;
    let detail = &activity["detail"];
    assert_eq!(detail["sha256"], sha.as_str(), "{activity}");
    assert_eq!(detail["size"], 300 * 1024 + 7, "{activity}");
    assert_eq!(detail["direction"], "upload", "{activity}");
    assert_eq!(
        detail["path"],
        remote.to_string_lossy().as_ref(),
        "{activity}"
    );
    assert_eq!(activity["user"], "vendor", "{activity}");

    let started = Instant::now();
    let out = p.ssh_run(
        MASTER,
        &[],
        &["echo hello-$((20+22)); sleep 1; echo forbidden-$((6*7)); sleep 60"],
        "",
    )?;
    let took = started.elapsed();
    assert!(!out.success(), "the session was not ended: {out:?}");
    assert!(took < Duration::from_secs(30), "the session ran {took:?}");
    let seen = format!("{}{}", out.stdout, out.stderr);
    assert!(
        seen.contains("[cpam] session terminated by supervisor"),
        "the vendor is not told why: {seen}"
    );
    let deadline = Instant::now() + TIMEOUT;
    while !sup.stdout().contains("] ended: terminated") {
        if Instant::now() > deadline {
            bail!("the supervisor did not see the end\n{}", sup.logs());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::write(&stop, b"")?;
    let status = sup
        .wait_timeout(TIMEOUT)?
        .with_context(|| format!("supervise_sessions did not stop\n{}", sup.logs()))?;
    no_sanitizer_reports("supervise_sessions", &sup.stderr())?;
    assert!(status.success(), "{status}\n{}", sup.logs());
    let stdout = sup.stdout();
    expect(
        "supervise_sessions",
        &stdout,
        &[
            "stored the credential of db1@acme",
            "\"service\":\"db1@acme\"",
            "hello-42",
            "terminated: the output showed 'forbidden-42'",
        ],
    );
    assert!(!stdout.contains(&p.canary), "the password was printed");
    let audit = p.d.admin_json(&["audit", "list"])?;
    let actions: Vec<(String, String)> = audit
        .as_array()
        .context("audit list is not an array")?
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap_or("").to_string(),
                r["actor"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    for action in [
        "admin.vault.set",
        "session.watch.start",
        "admin.session.terminate",
        "session.watch.stop",
    ] {
        assert!(
            actions.contains(&(action.to_string(), "supervisor".to_string())),
            "no {action} by supervisor in {actions:?}"
        );
    }
    p.d.expect_audit_intact()?;
    Ok(())
}
