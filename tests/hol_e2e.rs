//! No head-of-line blocking, through the real binaries: two downloads
//! through the same gatekeeper and the same Connection Manager (one SSH
//! connection each way); one reader (64 MiB/s until then) is stopped
//! (SIGSTOP) for 60 s with over half of its 1 GiB still to come. The other, reading at a steady 8 MiB/s, keeps its
//! throughput, the gatekeeper's link stays up, the server's memory stays
//! bounded, and the stopped download completes intact once its reader goes
//! on. On russh's own flow control the other download stops dead within a
//! second of the stop (0 MiB/s) and the server grows by some 200 MiB.

use std::time::{Duration, Instant};

use cpam_tests::bins::bin_path;
use cpam_tests::cpam::{Deployment, Options};
use cpam_tests::process::Child;

/// The stream server's port in the customer namespace.
const STREAM_PORT: u16 = 7070;
/// The stopped session's download: far more is still to come when it
/// stops than every buffer on the way holds.
const STALLED_BYTES: u64 = 1 << 30;
/// The other session's download: more than it can move in the test.
const RUNNING_BYTES: u64 = 1 << 40;
/// The other session's reader takes 8 MiB/s (a vendor on a slow link: its
/// own window re-opens only as fast as it reads), so its throughput does
/// not depend on what else the machine runs, only on whether the stopped
/// session holds it up.
const RUNNING_RATE_MIB_S: u32 = 8;
/// The stopped session's reader takes 64 MiB/s until it is stopped (and
/// catches up at full speed after), so much more than every buffer on the
/// way holds is still to come at the stop, however fast the machine.
const STALLED_RATE_MIB_S: u32 = 64;
/// How long the reader stays stopped.
const STALL: Duration = Duration::from_secs(60);
/// The server's RSS may grow by this much over its level before the stop:
/// the stopped channel holds at most one 8 MiB window on each of its two
/// legs (`tunnel::WINDOW_SIZE`), plus allocator slack.
const RSS_BOUND: u64 = 32 << 20;

/// Resident memory of process `pid`, in bytes.
fn rss(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS for pid {pid}"))?;
    Ok(kb * 1024)
}

/// The last `progress <ms> <bytes>` a reader printed: bytes read so far.
fn progress(reader: &Child) -> u64 {
    reader
        .stdout()
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("progress "))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// Bytes per second `reader` moves over `window`, sampled by this test's clock.
fn throughput(reader: &Child, window: Duration) -> f64 {
    let before = progress(reader);
    let started = Instant::now();
    std::thread::sleep(window);
    let moved = progress(reader).saturating_sub(before);
    moved as f64 / started.elapsed().as_secs_f64()
}

fn mib_s(bytes_per_s: f64) -> f64 {
    bytes_per_s / f64::from(1 << 20)
}

fn reader(
    d: &Deployment,
    name: &str,
    port: u16,
    bytes: u64,
    rate: Option<u32>,
) -> anyhow::Result<Child> {
    let mut c = d.topo.vendor.command(bin_path("stream")?);
    c.args([
        "read",
        "--connect",
        &format!("127.0.0.1:{port}"),
        "--bytes",
        &bytes.to_string(),
    ]);
    if let Some(rate) = rate {
        c.args(["--rate", &rate.to_string()]);
    }
    Child::spawn(name, c, d.path())
}

#[test]
fn a_stopped_reader_holds_up_only_its_own_session() -> anyhow::Result<()> {
    let mut d = Deployment::start_with(Options {
        extra_allow: vec![format!("127.0.0.1:{STREAM_PORT}")],
        ..Options::default()
    })?;
    let mut serve = d.topo.customer.command(bin_path("stream")?);
    serve.args(["serve", "--listen", &format!("127.0.0.1:{STREAM_PORT}")]);
    let mut stream_server = Child::spawn("stream-serve", serve, d.path())?;
    stream_server.wait_for_line("stream listening ", Duration::from_secs(10))?;
    d.extra.push(stream_server);
    let target = format!("127.0.0.1:{STREAM_PORT}");
    d.admin_ok(&[
        "service",
        "add",
        "--customer",
        "acme",
        "stream",
        "--target",
        &target,
    ])?;
    d.admin_ok(&[
        "grant",
        "add",
        "--user",
        "vendor",
        "--customer",
        "acme",
        "--service",
        "stream",
    ])?;
    // Both sessions through one Connection Manager (one SSH connection)
    // and one gatekeeper link.
    let profile = d.profile.clone();
    let port = d.forward(&profile, "stream")?;
    let server_pid = d
        .server
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("no server"))?
        .pid();

    let mut stalled = reader(
        &d,
        "reader-stalled",
        port,
        STALLED_BYTES,
        Some(STALLED_RATE_MIB_S),
    )?;
    let mut running = reader(
        &d,
        "reader-running",
        port,
        RUNNING_BYTES,
        Some(RUNNING_RATE_MIB_S),
    )?;
    cpam_tests::wait_until(Duration::from_secs(30), "both downloads under way", || {
        (progress(&stalled) >= 16 << 20 && progress(&running) >= 16 << 20).then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}\n{}", stalled.logs(), running.logs()))?;
    let before = throughput(&running, Duration::from_secs(5));

    stalled.signal(19)?; // SIGSTOP
    std::thread::sleep(Duration::from_millis(200));
    let stopped_at = progress(&stalled);
    let rss_before = rss(server_pid)?;
    // Let the stopped session's windows fill, then measure the other one
    // over the rest of the stall.
    std::thread::sleep(Duration::from_secs(5));
    let mut rss_max = rss(server_pid)?;
    let during = {
        let start = progress(&running);
        let started = Instant::now();
        while started.elapsed() < STALL - Duration::from_secs(5) {
            std::thread::sleep(Duration::from_secs(1));
            rss_max = rss_max.max(rss(server_pid)?);
        }
        progress(&running).saturating_sub(start) as f64 / started.elapsed().as_secs_f64()
    };
    let gatekeeper_alive = d.gatekeeper.is_running();
    assert_eq!(progress(&stalled), stopped_at, "the stopped reader read on");
    assert!(
        STALLED_BYTES - stopped_at >= 256 << 20,
        "only {} MiB were left at the stop",
        (STALLED_BYTES - stopped_at) >> 20
    );
    stalled.signal(18)?; // SIGCONT
    let resumed = Instant::now();
    // The longest time the resumed download went without a byte.
    let (mut pause, mut last, mut last_at) = (Duration::ZERO, progress(&stalled), Instant::now());
    while !stalled.stdout().contains("\ndone ") && resumed.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(100));
        let now = progress(&stalled);
        if now != last {
            (last, last_at) = (now, Instant::now());
        }
        pause = pause.max(last_at.elapsed());
    }
    let done = stalled.wait_for_line("done ", Duration::from_secs(1))?;
    let finish = resumed.elapsed();
    running.kill()?;

    let grown = rss_max.saturating_sub(rss_before);
    eprintln!(
        "stalled reader: other session {:.1} MiB/s before the stop, {:.1} MiB/s during it \
         ({:.0} %); server RSS {} MiB before, +{} MiB at most while stopped (bound {} MiB); \
         the stopped download ({} MiB read at the stop) finished {:.1} s after SIGCONT, \
         pausing {:.1} s at most",
        mib_s(before),
        mib_s(during),
        100.0 * during / before,
        rss_before >> 20,
        grown >> 20,
        RSS_BOUND >> 20,
        stopped_at >> 20,
        finish.as_secs_f64(),
        pause.as_secs_f64()
    );
    assert!(gatekeeper_alive, "the gatekeeper exited\n{}", d.logs());
    assert!(
        during >= 0.9 * before,
        "the other session fell to {:.1} MiB/s from {:.1} MiB/s\n{}",
        mib_s(during),
        mib_s(before),
        d.logs()
    );
    assert!(
        grown < RSS_BOUND,
        "server RSS grew by {} MiB while a reader was stopped (bound {} MiB)",
        grown >> 20,
        RSS_BOUND >> 20
    );
    let (bytes, hash) = done
        .split_once(' ')
        .ok_or_else(|| anyhow::anyhow!("reader printed `done {done}`"))?;
    assert_eq!(
        bytes,
        STALLED_BYTES.to_string(),
        "bytes of the stopped download"
    );
    assert_eq!(
        hash,
        cpam_tests::stream::sha256(STALLED_BYTES),
        "the stopped download's SHA-256"
    );
    // The gatekeeper's link never dropped: it came online once, the server
    // never saw it go offline, and it still serves.
    let gk_logs = d.gatekeeper.stderr();
    assert_eq!(
        gk_logs.matches("gatekeeper online").count(),
        1,
        "the gatekeeper reconnected\n{gk_logs}"
    );
    let offline: Vec<_> = d
        .audit()?
        .into_iter()
        .filter(|r| r["action"] == "gatekeeper.offline")
        .collect();
    assert!(
        offline.is_empty(),
        "the gatekeeper went offline: {offline:#?}"
    );
    d.expect_still_serving()?;
    Ok(())
}
