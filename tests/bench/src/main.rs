//! `cpam-bench`: measures cpam's data path next to direct TCP and the
//! equivalent OpenSSH two-hop chain, on loopback, in one run, and prints the
//! figures with within-run ratios. See `docs/benchmark.md`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;

use cpam_bench::openssh::Flavor;
use cpam_bench::psm::{PsmFigures, PsmPaths, PsmPlan};
use cpam_bench::rdp::RdpPlan;
use cpam_bench::sftp::SftpPlan;
use cpam_bench::targets::Targets;
use cpam_bench::{PathResult, Plan, RunningPath, procs};

const ALL_PATHS: [&str; 13] = [
    "direct",
    "openssh",
    "openssh-tty",
    "cpam",
    "cpam-pg",
    "cpam-relay",
    "cpam-3nodes",
    "cluster-audit",
    "ipconnect-legacy",
    "ipconnect-driver",
    "psm",
    "sftp",
    "rdp",
];

/// Throughput, CPU per byte, first-byte latency and a connection burst
/// through direct TCP, OpenSSH (-R + -L through one sshd) and cpam.
///
/// `cpam-bench gatekeepers N` measures one server holding N gatekeeper
/// tunnels instead (see `cpam-bench gatekeepers --help`).
#[derive(Debug, Parser)]
#[command(name = "cpam-bench", version)]
struct Args {
    /// Bytes for the bulk transfer, and the size of the sftp file: a
    /// number, or with KiB/MiB/GiB (or K/M/G, KB/MB/GB) suffix.
    #[arg(long, default_value = "1GiB", value_parser = parse_bytes)]
    bytes: u64,
    /// Parallel connections for the bulk transfer, as a list: each entry is
    /// one run moving --bytes in total (`0` alone skips the bulk runs).
    #[arg(long, default_value = "1,4", value_delimiter = ',')]
    streams: Vec<usize>,
    /// Sequential new connections for the first-byte latency (0 skips it).
    #[arg(long, default_value_t = 1000)]
    latency_samples: usize,
    /// Concurrent connections for the burst (0 skips it).
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Seconds the stalled reader is watched: two downloads through the
    /// path, one reader stopped, the other's throughput compared with its
    /// throughput alone (0 skips it).
    #[arg(long, default_value_t = 20)]
    stalled_seconds: u64,
    /// Echo round trips per burst connection.
    #[arg(long, default_value_t = 10)]
    round_trips: usize,
    /// Bytes per burst round trip.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Paths to measure: direct, openssh, openssh-tty (OpenSSH with NODELAY
    /// via -tt sessions), cpam, psm (privileged SSH sessions vs the raw
    /// tunnel, a table of its own), sftp (File Transfer: stock sftp direct,
    /// through the raw tunnel and through the auditing proxy, and
    /// cpam-connect put/get, of one --bytes file each way; a table of its
    /// own), rdp (remote desktops: a repainted 1024x768 desktop watched
    /// through the raw tunnel and the recording proxy; a table of its
    /// own), ipconnect-legacy and ipconnect-driver
    /// (IP Connect's loopback listeners and TUN driver; the driver needs
    /// root and runs the bench in a network namespace of its own);
    /// `ipconnect` is short for cpam,ipconnect-legacy,ipconnect-driver;
    /// cpam-pg, cpam-relay, cpam-3nodes and cluster-audit are the cluster
    /// (nodes on one PostgreSQL the bench starts: one node, a session
    /// relayed between two, the burst spread over three; audit appends of
    /// one and of three writer processes), `cluster` short for all four.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "direct,openssh,openssh-tty,cpam,psm"
    )]
    only: Vec<String>,
    /// psm: bytes of output per bulk run.
    #[arg(long, default_value = "1GiB", value_parser = parse_bytes)]
    psm_bytes: u64,
    /// psm: sequential one-byte echoes through an interactive session.
    #[arg(long, default_value_t = 1000)]
    psm_echo_samples: usize,
    /// psm: concurrent interactive sessions held open for the RSS figure.
    #[arg(long, default_value_t = 100)]
    psm_sessions: usize,
    /// rdp: seconds each path is watched.
    #[arg(long, default_value_t = 30)]
    rdp_seconds: u64,
    /// rdp: whole-desktop repaints per second.
    #[arg(long, default_value_t = 10.0)]
    rdp_rate: f64,
    /// rdp: concurrent sessions held open for the RSS figure.
    #[arg(long, default_value_t = 8)]
    rdp_sessions: usize,
    /// Directory with cpam-server, cpam-gatekeeper and cpam-connect
    /// (default: the directory of this executable).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Also measure the binaries in this directory, as path `cpam-b` right
    /// after `cpam` (e.g. another allocator or an older build), with a
    /// `cpam-b/cpam` ratio column.
    #[arg(long)]
    compare_bin_dir: Option<PathBuf>,
    /// cluster-audit: audit appends per writer process.
    #[arg(long, default_value_t = 5000)]
    audit_records: usize,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/cpam-bench.json")]
    json: PathBuf,
    /// Longest wait for an idle CPU before each measurement, in seconds.
    #[arg(long, default_value_t = 10)]
    idle_wait: u64,
    /// Bound on the whole connection burst, in seconds.
    #[arg(long, default_value_t = 60)]
    burst_timeout: u64,
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid byte count {s:?}: expected e.g. 268435456 or 256MiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?}: use KiB, MiB, GiB, KB, MB or GB"
            ));
        }
    };
    match n.checked_mul(mult) {
        Some(0) | None => Err(format!("byte count {s:?} must be between 1 and 2^64")),
        Some(v) => Ok(v),
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}

fn run() -> Result<()> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().is_some_and(|a| a == "gatekeepers") {
        return cpam_bench::gatekeepers::main(argv[1..].to_vec());
    }
    if argv.first().is_some_and(|a| a == "audit-writer") {
        return cpam_bench::cluster::audit_writer(&argv[1..]);
    }
    let mut args = Args::parse();
    if args.only.iter().any(|p| p == "cluster") {
        args.only.retain(|p| p != "cluster");
        for p in cpam_bench::cluster::PATHS
            .iter()
            .chain(["cluster-audit"].iter())
        {
            if !args.only.iter().any(|o| o == p) {
                args.only.push((*p).into());
            }
        }
    }
    if args.only.iter().any(|p| p == "ipconnect") {
        args.only.retain(|p| p != "ipconnect");
        for p in ["cpam", "ipconnect-legacy", "ipconnect-driver"] {
            if !args.only.iter().any(|o| o == p) {
                args.only.push(p.into());
            }
        }
    }
    if cpam_bench::ipconnect::needs_netns(&args.only)
        && let Some(code) = cpam_bench::ipconnect::enter_netns()?
    {
        std::process::exit(code);
    }
    for p in &args.only {
        if !ALL_PATHS.contains(&p.as_str()) {
            bail!("unknown path {p:?} in --only: use {}", ALL_PATHS.join(","));
        }
    }
    if args.streams == [0] {
        args.streams.clear();
    } else if args.streams.is_empty() || args.streams.contains(&0) {
        bail!("--streams needs positive counts, e.g. 1,4 (or 0 alone to skip the bulk runs)");
    }
    let bin_dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("the bench executable has no parent directory")?
            .to_path_buf(),
    };
    let plan = Plan {
        bytes: args.bytes,
        streams: args.streams.clone(),
        latency_samples: args.latency_samples,
        connections: args.connections,
        round_trips: args.round_trips,
        size: args.size,
        conc_timeout: Duration::from_secs(args.burst_timeout),
        stalled: Duration::from_secs(args.stalled_seconds),
        idle_cap: Duration::from_secs(args.idle_wait),
        clk_tck: procs::clock_ticks(),
    };

    let targets = Targets::start()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-client")
        .enable_all()
        .build()?;
    // Interrupted (Ctrl-C, SIGTERM): stop what we started, then exit.
    rt.spawn(async {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        eprintln!("cpam-bench: interrupted, stopping the processes it started");
        procs::kill_all_started();
        std::process::exit(130);
    });

    let pg = args
        .only
        .iter()
        .any(|o| cpam_bench::cluster::PATHS.contains(&o.as_str()) || o == "cluster-audit")
        .then(cpam_tests::postgres::PgFixture::start)
        .transpose()
        .context("the cluster paths need PostgreSQL")?;
    let mut results: Vec<PathResult> = Vec::new();
    let mut paths: Vec<&str> = Vec::new();
    for name in ALL_PATHS.iter().filter(|p| {
        !matches!(**p, "psm" | "sftp" | "rdp" | "cluster-audit")
            && args.only.iter().any(|o| o == *p)
    }) {
        paths.push(name);
        if *name == "cpam" && args.compare_bin_dir.is_some() {
            paths.push("cpam-b");
        }
    }
    for name in paths {
        eprintln!("cpam-bench: setting up {name}");
        let started: Result<RunningPath> = match name {
            "direct" => Ok(RunningPath::direct(&targets)),
            "openssh" => cpam_bench::openssh::start(&targets, Flavor::Plain),
            "openssh-tty" => cpam_bench::openssh::start(&targets, Flavor::Tty),
            "cpam-b" => match &args.compare_bin_dir {
                Some(dir) => cpam_bench::cpam::start("cpam-b", &targets, dir),
                None => unreachable!("cpam-b is measured only with --compare-bin-dir"),
            },
            "ipconnect-legacy" => cpam_bench::ipconnect::start(&targets, &bin_dir, "legacy"),
            "ipconnect-driver" => cpam_bench::ipconnect::start(&targets, &bin_dir, "driver"),
            "cpam-pg" | "cpam-relay" | "cpam-3nodes" => match &pg {
                Some(pg) => cpam_bench::cluster::start(name, &targets, &bin_dir, pg),
                None => unreachable!("PostgreSQL is started for the cluster paths"),
            },
            _ => cpam_bench::cpam::start("cpam", &targets, &bin_dir),
        };
        match started {
            Ok(path) => {
                eprintln!("cpam-bench: measuring {name}");
                let r = cpam_bench::measure(&rt, &path, &targets, &plan);
                for e in &r.errors {
                    eprintln!("cpam-bench: {name}: {e}");
                }
                results.push(r);
                // Stops the path's processes before the next one starts.
                drop(path);
            }
            Err(e) => {
                eprintln!("cpam-bench: {name} could not be set up: {e:#}");
                results.push(PathResult::failed(name, format!("setup: {e:#}")));
            }
        }
    }
    drop(rt);

    let psm_plan = PsmPlan {
        bytes: args.psm_bytes,
        echo_samples: args.psm_echo_samples,
        sessions: args.psm_sessions,
        idle_wait: Duration::from_secs(args.idle_wait),
    };
    let psm = args
        .only
        .iter()
        .any(|o| o == "psm")
        .then(|| run_psm(&bin_dir, &psm_plan));
    let sftp_plan = SftpPlan {
        bytes: args.bytes,
        idle_wait: Duration::from_secs(args.idle_wait),
    };
    let sftp = args
        .only
        .iter()
        .any(|o| o == "sftp")
        .then(|| cpam_bench::sftp::run(&bin_dir, &sftp_plan));

    let rdp_plan = RdpPlan {
        seconds: args.rdp_seconds,
        rate_hz: args.rdp_rate,
        sessions: args.rdp_sessions,
        idle_wait: Duration::from_secs(args.idle_wait),
    };
    let rdp = args
        .only
        .iter()
        .any(|o| o == "rdp")
        .then(|| cpam_bench::rdp::run(&bin_dir, &rdp_plan));

    let audit = match (&pg, args.only.iter().any(|o| o == "cluster-audit")) {
        (Some(pg), true) => {
            eprintln!("cpam-bench: measuring audit appends with one and three writers");
            Some(cpam_bench::cluster::audit_rates(pg, args.audit_records))
        }
        _ => None,
    };

    if !results.is_empty() {
        print!("{}", cpam_bench::report::table(&results, &plan));
    }
    let mut doc = cpam_bench::report::json(&results, &plan);
    let mut failed = results.iter().any(|r| !r.errors.is_empty());
    if let Some(figures) = &psm {
        print!("{}", cpam_bench::psm::table(figures, &psm_plan));
        failed |= figures.iter().any(|f| !f.errors.is_empty());
        doc["psm"] = serde_json::json!({ "plan": psm_plan, "paths": figures });
    }
    if let Some(figures) = &sftp {
        print!("{}", cpam_bench::report::sftp_table(figures));
        failed |= figures.failed();
        doc["sftp"] = serde_json::json!({
            "plan": sftp_plan,
            "figures": figures,
            "summary": figures.summary(),
        });
    }
    if let Some(figures) = &rdp {
        print!("{}", cpam_bench::rdp::table(figures, &rdp_plan));
        failed |= figures.failed();
        doc["rdp"] = serde_json::json!({ "plan": rdp_plan, "figures": figures });
    }
    match &audit {
        Some(Ok(rates)) => {
            print!("{}", cpam_bench::cluster::audit_table(rates));
            failed |= rates.iter().any(|r| !r.intact);
            doc["cluster_audit"] = serde_json::json!(rates);
        }
        Some(Err(e)) => {
            println!("ERROR (cluster-audit): {e:#}");
            failed = true;
        }
        None => {}
    }
    if let Some(parent) = args.json.parent().filter(|p| !p.as_os_str().is_empty()) {
        procs::ensure_dir(parent)?;
    }
    std::fs::write(&args.json, serde_json::to_string_pretty(&doc)? + "\n")
        .with_context(|| format!("cannot write {}", args.json.display()))?;
    println!("JSON written to {}", args.json.display());
    if failed {
        bail!("some measurements failed (see ERROR lines above)");
    }
    Ok(())
}

/// Sets up the raw-tunnel and PSM paths and measures both.
fn run_psm(bin_dir: &std::path::Path, plan: &PsmPlan) -> Vec<PsmFigures> {
    eprintln!("cpam-bench: setting up psm");
    match PsmPaths::start(bin_dir) {
        Ok(paths) => {
            eprintln!("cpam-bench: measuring psm");
            paths.measure(plan)
        }
        Err(e) => {
            eprintln!("cpam-bench: psm could not be set up: {e:#}");
            vec![PsmFigures {
                path: "psm",
                errors: vec![format!("setup: {e:#}")],
                ..PsmFigures::default()
            }]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;
    use cpam_bench::load::percentile;

    #[test]
    fn byte_counts() {
        let check = |input: &str, expect: Option<u64>| {
            assert_eq!(parse_bytes(input).ok(), expect, "input {input:?}");
        };
        check("268435456", Some(268_435_456));
        check("256MiB", Some(256 << 20));
        check("256M", Some(256 << 20));
        check("1GiB", Some(1 << 30));
        check("1gb", Some(1_000_000_000));
        check("4 KiB", Some(4096));
        check("0", None);
        check("MiB", None);
        check("12XB", None);
        check("99999999999999999999", None);
    }

    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(51.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
