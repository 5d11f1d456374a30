//! `cpam-bench gatekeepers N`: one `cpam-server` holding N gatekeeper
//! tunnels, simulated in this process.
//!
//! Every simulated gatekeeper is a real one: a key registered with a
//! one-time code through the server's SSH port (`tunnel::gatekeeper::register`),
//! then a [`cpam_core::tunnel::gatekeeper::Agent`], the same code
//! `cpam-gatekeeper run` runs, holding its tunnel with keepalives. Only the
//! process is shared, so the figures are the server's: memory per idle
//! tunnel, CPU while N tunnels idle (keepalives both ways), and a reconnect
//! storm after a server restart, with a vendor's sessions through
//! `cpam-connect forward` probed meanwhile.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Semaphore, watch};
use tokio::task::block_in_place;
use tokio_util::sync::CancellationToken;

use cpam_core::admin::Admin;
use cpam_core::audit::StoreAuditSink;
use cpam_core::server::DataDir;
use cpam_core::tunnel::allow::AllowList;
use cpam_core::tunnel::gatekeeper::{Agent, register};

use crate::cpam::Cli;
use crate::procs::{ChildGuard, clock_ticks, cpu_ticks, free_port, rss_kib};
use crate::targets::Targets;

const START_TIMEOUT: Duration = Duration::from_secs(60);
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
const PROBE_BYTES: usize = 64;

/// Memory, CPU and a reconnect storm for N gatekeepers on one server.
#[derive(Debug, Parser)]
#[command(name = "cpam-bench gatekeepers")]
pub struct Args {
    /// How many gatekeepers.
    count: usize,
    /// Seconds of idle measured once all are online (server CPU, keepalives).
    #[arg(long, default_value_t = 60)]
    idle: u64,
    /// Registrations in flight at once.
    #[arg(long, default_value_t = 64)]
    register_concurrency: usize,
    /// Longest wait for all gatekeepers to be online, in seconds.
    #[arg(long, default_value_t = 600)]
    online_timeout: u64,
    /// How often each simulated gatekeeper re-reads its switch file, in
    /// seconds (an appliance reads it every 100 ms; thousands of them in one
    /// process would spend the CPU this bench measures on the server).
    #[arg(long, default_value_t = 5)]
    switch_poll: u64,
    /// Worker threads of this process's runtime (the simulated gatekeepers).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Directory with cpam-server and cpam-connect (default: the directory
    /// of this executable).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/cpam-bench-gatekeepers.json")]
    json: PathBuf,
}

/// What one run measured.
#[derive(Debug, Default, Serialize)]
pub struct Figures {
    pub gatekeepers: usize,
    /// Creating the gatekeepers and their codes in the store.
    pub add_secs: f64,
    /// Redeeming every code through the SSH port.
    pub register_secs: f64,
    /// From the first agent started to all online.
    pub first_online_secs: f64,
    pub server_rss_before_kib: u64,
    pub server_rss_idle_kib: u64,
    pub server_kib_per_tunnel: f64,
    /// Server CPU while all tunnels idle, in % of one core.
    pub server_idle_cpu_pct: f64,
    /// This process (the N simulated gatekeepers), in % of one core.
    pub gatekeepers_idle_cpu_pct: f64,
    /// Vendor sessions while all are online and idle.
    pub idle_probe_p50_ms: f64,
    pub idle_probe_p99_ms: f64,
    /// The restart: server stopped (SIGTERM) and started on the same address.
    pub stop_secs: f64,
    /// From the new server's first listening line to all online again.
    pub restart_all_online_secs: f64,
    /// CPU seconds the restarted server and this process (the gatekeepers'
    /// side of every handshake) spent from the restart to all online.
    pub storm_server_cpu_secs: f64,
    pub storm_gatekeepers_cpu_secs: f64,
    /// Server RSS once all are back.
    pub server_rss_after_restart_kib: u64,
    /// Vendor sessions probed during the storm, one every 250 ms.
    pub storm_probes_ok: usize,
    pub storm_probes_failed: usize,
    /// From the new server listening to the vendor's first working session.
    pub storm_first_session_secs: Option<f64>,
    pub storm_probe_p50_ms: Option<f64>,
    pub storm_probe_p99_ms: Option<f64>,
}

/// Runs `cpam-bench gatekeepers ARGS` (`argv` without the program name).
pub fn main(argv: Vec<String>) -> Result<()> {
    let args = Args::parse_from(std::iter::once("cpam-bench gatekeepers".into()).chain(argv));
    if args.count == 0 {
        bail!("the gatekeeper count must be at least 1");
    }
    let bin_dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("the bench executable has no directory")?
            .to_path_buf(),
    };
    for bin in ["cpam-server", "cpam-connect"] {
        if !bin_dir.join(bin).is_file() {
            bail!(
                "{bin} not found in {}: run `cargo build --release -p cpam-server -p cpam-connect` \
                 (or pass --bin-dir DIR)",
                bin_dir.display()
            );
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .thread_name("bench-gatekeepers")
        .enable_all()
        .build()?;
    let targets = Targets::start()?;
    let figures = runtime.block_on(run(&args, &bin_dir, &targets))?;
    print!("{}", table(&figures));
    if let Some(dir) = args.json.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(&args.json, serde_json::to_string_pretty(&figures)?)
        .with_context(|| format!("cannot write {}", args.json.display()))?;
    println!("results: {}", args.json.display());
    Ok(())
}

async fn run(args: &Args, bin_dir: &Path, targets: &Targets) -> Result<Figures> {
    let n = args.count;
    let mut f = Figures {
        gatekeepers: n,
        ..Figures::default()
    };
    let tmp = tempfile::Builder::new()
        .prefix("cpam-bench-gatekeepers")
        .tempdir()?;
    let dir = tmp.path().to_path_buf();
    let cli = Cli::new(bin_dir, &dir.join("server"));
    let listen = format!("127.0.0.1:{}", free_port()?);
    cli.admin(&["init", "--listen", &listen])?;
    // Every simulated gatekeeper dials from 127.0.0.1: a fleet's come from
    // as many addresses. The per-address cap on connections not signed in
    // yet is raised to the global one so the storm meets the global cap only.
    let mut data = DataDir::open(&dir.join("server"))?;
    data.config.hub_limits.max_unauthenticated_per_address =
        data.config.hub_limits.max_unauthenticated;
    data.save_config()?;
    cli.admin(&["customer", "add", "bench"])?;
    cli.admin_input(
        &["user", "add", "vendor", "--password-stdin"],
        Some(b"bench-vendor-login-1\n"),
    )?;

    let started = Instant::now();
    let codes = {
        let store = data.store().await?;
        let admin = Admin::new(store.clone(), Arc::new(StoreAuditSink::new(store)), "bench");
        let mut codes = Vec::with_capacity(n);
        for i in 0..n {
            let issued = admin
                .add_gatekeeper("bench", &gk_name(i), Duration::from_secs(3600))
                .await?;
            codes.push(issued.code);
        }
        codes
    };
    f.add_secs = started.elapsed().as_secs_f64();
    eprintln!("{n} gatekeepers added in {:.1} s", f.add_secs);

    let mut server = start_server(&cli, &dir, &listen, "server")?;
    f.server_rss_before_kib = rss_kib(server.pid()).unwrap_or(0);

    let started = Instant::now();
    let gates = Arc::new(Semaphore::new(args.register_concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, code) in codes.into_iter().enumerate() {
        let (gates, listen, state) = (gates.clone(), listen.clone(), dir.join(gk_name(i)));
        tasks.spawn(async move {
            let _permit = gates.acquire_owned().await?;
            register(&listen, &code, &state, None)
                .await
                .with_context(|| format!("registering {}", gk_name(i)))?;
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    f.register_secs = started.elapsed().as_secs_f64();
    eprintln!("registered in {:.1} s", f.register_secs);

    cli.admin(&[
        "service",
        "add",
        "--customer",
        "bench",
        "echo",
        "--target",
        &targets.echo.to_string(),
        "--gatekeeper",
        &gk_name(0),
    ])?;
    cli.admin(&[
        "grant",
        "add",
        "--user",
        "vendor",
        "--customer",
        "bench",
        "--service",
        "echo",
    ])?;
    let profile = dir.join("vendor.profile");
    cli.admin(&[
        "profile",
        "export",
        "--user",
        "vendor",
        "--gatekeeper",
        &gk_name(0),
        "--out",
        &profile.to_string_lossy(),
        "--server-address",
        &listen,
    ])?;

    let shutdown = CancellationToken::new();
    let allow = AllowList::parse(&["127.0.0.0/8:*"])?;
    let mut online = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        let agent = Agent::open(&dir.join(gk_name(i)), allow.clone())?
            .with_switch_poll(Duration::from_secs(args.switch_poll.max(1)));
        online.push(agent.online());
        tokio::spawn(agent.run(shutdown.child_token()));
    }
    let timeout = Duration::from_secs(args.online_timeout);
    wait_all_online(&online, timeout, &mut server).await?;
    f.first_online_secs = started.elapsed().as_secs_f64();
    eprintln!("all online in {:.1} s", f.first_online_secs);

    let forward = block_in_place(|| forward(&cli, &profile, &dir))?;
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(
            probe(forward.1)
                .await
                .context("a vendor session with all online")?,
        );
    }
    (f.idle_probe_p50_ms, f.idle_probe_p99_ms) =
        (quantile(&mut idle, 0.5), quantile(&mut idle, 0.99));

    // Let the start-up settle, then measure a quiet interval.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let me = std::process::id();
    let (s0, g0, t0) = (cpu_ticks(server.pid()), cpu_ticks(me), Instant::now());
    tokio::time::sleep(Duration::from_secs(args.idle.max(1))).await;
    let (s1, g1, secs) = (
        cpu_ticks(server.pid()),
        cpu_ticks(me),
        t0.elapsed().as_secs_f64(),
    );
    let pct = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => b.saturating_sub(a) as f64 / clock_ticks() / secs * 100.0,
        _ => f64::NAN,
    };
    f.server_idle_cpu_pct = pct(s0, s1);
    f.gatekeepers_idle_cpu_pct = pct(g0, g1);
    f.server_rss_idle_kib = rss_kib(server.pid()).unwrap_or(0);
    f.server_kib_per_tunnel = f
        .server_rss_idle_kib
        .saturating_sub(f.server_rss_before_kib) as f64
        / n as f64;
    eprintln!(
        "idle: server {:.2} % of a core, {} KiB",
        f.server_idle_cpu_pct, f.server_rss_idle_kib
    );

    let stopping = Instant::now();
    block_in_place(|| server.terminate(Duration::from_secs(30)))?;
    f.stop_secs = stopping.elapsed().as_secs_f64();
    let storm = Instant::now();
    let mut server = block_in_place(|| start_server(&cli, &dir, &listen, "server-restarted"))?;
    let restarted = storm.elapsed();
    let (s0, g0) = (cpu_ticks(server.pid()), cpu_ticks(me));
    let probes_stop = CancellationToken::new();
    let prober = tokio::spawn(probe_storm(forward.1, storm, probes_stop.clone()));
    let back = wait_all_online(&online, timeout, &mut server).await;
    f.restart_all_online_secs = storm.elapsed().saturating_sub(restarted).as_secs_f64();
    let secs = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => b.saturating_sub(a) as f64 / clock_ticks(),
        _ => f64::NAN,
    };
    f.storm_server_cpu_secs = secs(s0, cpu_ticks(server.pid()));
    f.storm_gatekeepers_cpu_secs = secs(g0, cpu_ticks(me));
    // A few more probes after the storm, so a first session that only works
    // once the storm is over is still seen.
    tokio::time::sleep(Duration::from_secs(2)).await;
    probes_stop.cancel();
    let (mut ok, failed) = prober.await?;
    back?;
    f.server_rss_after_restart_kib = rss_kib(server.pid()).unwrap_or(0);
    f.storm_probes_ok = ok.len();
    f.storm_probes_failed = failed;
    f.storm_first_session_secs = ok
        .iter()
        .map(|(at, _)| at.saturating_sub(restarted).as_secs_f64())
        .reduce(f64::min);
    let mut latencies: Vec<f64> = ok.drain(..).map(|(_, ms)| ms).collect();
    if !latencies.is_empty() {
        f.storm_probe_p50_ms = Some(quantile(&mut latencies, 0.5));
        f.storm_probe_p99_ms = Some(quantile(&mut latencies, 0.99));
    }
    shutdown.cancel();
    drop(forward);
    Ok(f)
}

fn gk_name(i: usize) -> String {
    format!("gk{i:05}")
}

fn start_server(cli: &Cli, dir: &Path, listen: &str, name: &str) -> Result<ChildGuard> {
    let log = dir.join(format!("{name}.log"));
    let mut server = ChildGuard::spawn(
        name,
        cli.bin("cpam-server")
            .arg("run")
            .arg("--data-dir")
            .arg(cli.data_dir())
            .args(["--listen", listen, "--web-listen", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&log)?),
    )?;
    server
        .wait_stdout_line("cpam-server listening on", START_TIMEOUT)
        .with_context(|| format!("see {}", log.display()))?;
    Ok(server)
}

/// `cpam-connect forward echo` on a free port, as the vendor.
fn forward(cli: &Cli, profile: &Path, dir: &Path) -> Result<(ChildGuard, SocketAddr)> {
    let mut connect = ChildGuard::spawn(
        "cpam-connect",
        Command::new(cli.bin_path("cpam-connect"))
            .arg("--profile")
            .arg(profile)
            .args(["forward", "echo", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(dir.join("connect.log"))?),
    )?;
    let printed = connect.wait_stdout_line("cpam-connect forwarding echo on", START_TIMEOUT)?;
    let addr = printed
        .parse()
        .with_context(|| format!("cpam-connect printed {printed:?}"))?;
    Ok((connect, addr))
}

async fn wait_all_online(
    online: &[watch::Receiver<bool>],
    timeout: Duration,
    server: &mut ChildGuard,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last_report = Instant::now();
    loop {
        let up = online.iter().filter(|o| *o.borrow()).count();
        if up == online.len() {
            return Ok(());
        }
        server.check_running()?;
        if Instant::now() > deadline {
            bail!(
                "{up} of {} gatekeepers online after {timeout:?}",
                online.len()
            );
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            eprintln!("{up} of {} online", online.len());
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One vendor session through the forward: connect, echo 64 bytes; its
/// time in milliseconds.
async fn probe(forward: SocketAddr) -> Result<f64> {
    let started = Instant::now();
    let session = async {
        let mut s = tokio::net::TcpStream::connect(forward).await?;
        s.set_nodelay(true)?;
        let sent = [0x5a_u8; PROBE_BYTES];
        s.write_all(&sent).await?;
        let mut back = [0_u8; PROBE_BYTES];
        s.read_exact(&mut back).await?;
        if back != sent {
            bail!("the echo came back changed");
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(PROBE_TIMEOUT, session)
        .await
        .context("no echo within 10 s")??;
    Ok(started.elapsed().as_secs_f64() * 1000.0)
}

/// Probes every 250 ms until `stop`; the working sessions (when, ms) and
/// the count of failed ones.
async fn probe_storm(
    forward: SocketAddr,
    from: Instant,
    stop: CancellationToken,
) -> (Vec<(Duration, f64)>, usize) {
    let (mut ok, mut failed) = (Vec::new(), 0);
    while !stop.is_cancelled() {
        let at = from.elapsed();
        match probe(forward).await {
            Ok(ms) => ok.push((at, ms)),
            Err(_) => failed += 1,
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    (ok, failed)
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i.min(v.len() - 1)]
}

fn table(f: &Figures) -> String {
    let opt = |v: Option<f64>, unit: &str| v.map_or("-".to_string(), |v| format!("{v:.1} {unit}"));
    let rows = [
        ("gatekeepers", f.gatekeepers.to_string()),
        ("added to the store", format!("{:.1} s", f.add_secs)),
        (
            "registered (one-time codes)",
            format!("{:.1} s", f.register_secs),
        ),
        (
            "all online after start",
            format!("{:.1} s", f.first_online_secs),
        ),
        (
            "server RSS before",
            format!("{} KiB", f.server_rss_before_kib),
        ),
        (
            "server RSS, all idle",
            format!("{} KiB", f.server_rss_idle_kib),
        ),
        (
            "server memory per tunnel",
            format!("{:.1} KiB", f.server_kib_per_tunnel),
        ),
        (
            "server CPU, all idle",
            format!("{:.2} % of a core", f.server_idle_cpu_pct),
        ),
        (
            "gatekeepers' CPU, all idle",
            format!("{:.2} % of a core", f.gatekeepers_idle_cpu_pct),
        ),
        (
            "vendor session, idle p50 / p99",
            format!("{:.1} / {:.1} ms", f.idle_probe_p50_ms, f.idle_probe_p99_ms),
        ),
        ("server stop (SIGTERM)", format!("{:.1} s", f.stop_secs)),
        (
            "all online after restart",
            format!("{:.1} s", f.restart_all_online_secs),
        ),
        (
            "server RSS after restart",
            format!("{} KiB", f.server_rss_after_restart_kib),
        ),
        (
            "storm: first vendor session",
            opt(f.storm_first_session_secs, "s"),
        ),
        (
            "storm: sessions ok / failed",
            format!("{} / {}", f.storm_probes_ok, f.storm_probes_failed),
        ),
        (
            "storm: session p50 / p99",
            format!(
                "{} / {}",
                opt(f.storm_probe_p50_ms, "ms"),
                opt(f.storm_probe_p99_ms, "ms")
            ),
        ),
    ];
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k:<width$}  {v}\n"))
        .collect()
}
