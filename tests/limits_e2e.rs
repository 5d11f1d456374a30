//! Bounded resources per client on the hub's SSH port, through the real
//! server: a signed-in client without grants cannot grow the server's
//! memory with channels, channels past the caps are refused, and a flood of
//! connections stuck in key exchange keeps no gatekeeper or vendor out.

use std::time::{Duration, Instant};

use cpam_tests::bins::bin_path;
use cpam_tests::cpam::{Deployment, Options};
use cpam_tests::process::Child;

/// Resident memory of process `pid`, in bytes (`VmRSS` of /proc/PID/status).
fn rss(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS for pid {pid}"))?;
    Ok(kb * 1024)
}

fn server_pid(d: &Deployment) -> anyhow::Result<u32> {
    Ok(d.server
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("no server"))?
        .pid())
}

/// `flood channels` as the deployment's vendor; returns the process (held
/// open) and (opened, refused).
fn flood_channels(
    d: &Deployment,
    count: usize,
    bytes: usize,
) -> anyhow::Result<(Child, usize, usize)> {
    let mut c = d.topo.vendor.command(bin_path("flood")?);
    c.args(["channels", "--profile"]).arg(&d.profile).args([
        "--count",
        &count.to_string(),
        "--bytes",
        &bytes.to_string(),
    ]);
    let mut flood = Child::spawn("flood-channels", c, d.path())?;
    let line = flood.wait_for_line("flooded ", Duration::from_secs(180))?;
    let mut parts = line.split_whitespace().map(str::parse::<usize>);
    let (Some(Ok(opened)), Some(Ok(refused))) = (parts.next(), parts.next()) else {
        anyhow::bail!("flood printed `{line}`");
    };
    Ok((flood, opened, refused))
}

#[test]
fn a_client_without_grants_flooding_channels_leaves_server_memory_bounded() -> anyhow::Result<()> {
    let d = Deployment::start_with(Options {
        grant: false,
        ..Options::default()
    })?;
    let pid = server_pid(&d)?;
    let before = rss(pid)?;
    // 1,000 session channels that never make a request, 256 KiB on each:
    // 250 MiB the server must not keep.
    let (mut flood, opened, refused) = flood_channels(&d, 1000, 256 * 1024)?;
    std::thread::sleep(Duration::from_millis(500));
    let after = rss(pid)?;
    let grown = after.saturating_sub(before);
    eprintln!(
        "server RSS {} MiB -> {} MiB (+{} MiB) after {opened} channels x 256 KiB ({refused} refused)",
        before >> 20,
        after >> 20,
        grown >> 20
    );
    assert_eq!(opened, 1000, "the default caps allow 1,000 channels");
    assert!(
        grown < 64 << 20,
        "server RSS grew by {} MiB (bound 64 MiB)\n{}",
        grown >> 20,
        d.logs()
    );
    flood.kill()?;
    // The server still signs vendors in.
    let out = d.run("connect-services", d.connect_cmd(&["services", "--json"])?)?;
    out.ok("cpam-connect services after the flood")?;
    Ok(())
}

#[test]
fn channels_past_the_per_connection_and_per_user_caps_are_refused() -> anyhow::Result<()> {
    let d = Deployment::start_with(Options {
        grant: false,
        hub_limits: Some(serde_json::json!({
            "max_channels_per_connection": 10,
            "max_channels_per_user": 15,
            "channel_request_timeout_secs": 5,
        })),
        ..Options::default()
    })?;
    let (_first, opened, refused) = flood_channels(&d, 20, 0)?;
    assert_eq!((opened, refused), (10, 10), "per connection");
    let (_second, opened, refused) = flood_channels(&d, 20, 0)?;
    assert_eq!(
        (opened, refused),
        (5, 15),
        "per user, over both connections"
    );
    // Channels that never made their request are closed, and their places
    // freed.
    let (_third, opened, _) = cpam_tests::wait_until(
        Duration::from_secs(30),
        "the idle channels closed and their places freed",
        || {
            let f = flood_channels(&d, 10, 0).ok()?;
            (f.1 == 10).then_some(f)
        },
    )?;
    assert_eq!(opened, 10);
    Ok(())
}

/// Nearest-rank percentile of `samples` (sorted here).
fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

#[test]
fn connections_stuck_in_key_exchange_keep_no_gatekeeper_or_vendor_out() -> anyhow::Result<()> {
    let mut d = Deployment::start()?;
    // 2,000 connections from the vendor's own address that send their
    // version line and then nothing.
    let mut c = d.topo.vendor.command(bin_path("flood")?);
    c.args([
        "stall",
        "--server",
        &d.server_addr.to_string(),
        "--count",
        "2000",
    ]);
    let mut stall = Child::spawn("flood-stall", c, d.path())?;
    let stalled: usize = stall
        .wait_for_line("stalled ", Duration::from_secs(120))?
        .parse()?;
    eprintln!("{stalled} connections stuck in key exchange");

    let mut vendor = Vec::new();
    for i in 0..30 {
        let started = Instant::now();
        d.run(
            &format!("connect-services-{i}"),
            d.connect_cmd(&["services", "--json"])?,
        )?
        .ok("cpam-connect services during the flood")?;
        vendor.push(started.elapsed());
    }
    let mut gatekeeper = Vec::new();
    for _ in 0..5 {
        d.gatekeeper.kill()?;
        let mut run = d.gatekeeper_cmd(&["run", "--allow", cpam_tests::cpam::ALLOW])?;
        run.env("RUST_LOG", "info");
        let started = Instant::now();
        let mut gk = Child::spawn("gatekeeper-again", run, d.path())?;
        gk.wait_for_stderr("gatekeeper online", Duration::from_secs(30))?;
        gatekeeper.push(started.elapsed());
        d.gatekeeper = gk;
    }
    stall.signal(15)?;
    let closed: usize = stall
        .wait_for_line("closed ", Duration::from_secs(30))?
        .parse()?;
    let (v50, v99) = (percentile(&mut vendor, 50.0), percentile(&mut vendor, 99.0));
    let g99 = percentile(&mut gatekeeper, 99.0);
    eprintln!(
        "during the flood: vendor login p50 {v50:?} p99 {v99:?} (30); gatekeeper login p99 {g99:?} (5); \
         the server closed {closed} of {stalled} stuck connections"
    );
    assert!(
        v99 <= Duration::from_secs(2),
        "vendor login p99 {v99:?}\n{}",
        d.logs()
    );
    assert!(
        g99 <= Duration::from_secs(2),
        "gatekeeper login p99 {g99:?}\n{}",
        d.logs()
    );
    // One address holds at most 256 connections that have not signed in.
    assert!(
        closed >= stalled.saturating_sub(256),
        "the server closed only {closed} of {stalled} stuck connections"
    );
    d.expect_still_serving()?;
    Ok(())
}
