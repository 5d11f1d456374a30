//! Remote desktops: a 1024×768 desktop (`Xvfb` shared by
//! `freerdp-shadow-cli` with NLA) repainted at a fixed rate, watched by a
//! headless IronRDP client (plain bitmaps, no codecs, no compression: what
//! the proxy asks of every target) through the raw tunnel and through the
//! injecting, recording proxy, in one run.
//!
//! ```text
//! raw:   IronRDP client -(target's account)-> cpam-connect forward desk -> cpam-server
//!        -> cpam-gatekeeper -> freerdp-shadow-cli                 (service kind desktop-sharing)
//! proxy: IronRDP client -(one-time proxy credential)-> cpam-connect forward rdp1 -> cpam-server
//!        (NLA both ways, PDUs recorded and decoded for the live view) -(vault password)->
//!        cpam-gatekeeper -> freerdp-shadow-cli                     (service kind rdp)
//! ```
//!
//! An `rdp` session is always recorded and decoded, so the proxy without
//! them is not run: its server CPU is estimated as the proxy's minus what
//! recording and decoding the same session costs, measured by running
//! its recording through the same code (`Desktop::feed`, `pdu_line`) in
//! this process.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ironrdp_connector::{ClientConnector, Credentials, DesktopSize, ServerName};
use ironrdp_tokio::TokioFramed;
use serde::Serialize;
use tokio::net::TcpStream;

use super::cpam::{Deployment, VENDOR_LOGIN};
use super::procs::{
    ChildGuard, clock_ticks, cpu_ticks, free_port, rss_kib, run_input, thread_cpu_ns, wait_idle,
};

const MASTER: &str = "bench master password 1";
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
const TARGET_USER: &str = "bench";
const TARGET_PASSWORD: &str = "Bench!rdp-target-1";
/// An idle gap this long between two updates ends a frame.
const FRAME_GAP: Duration = Duration::from_millis(20);
const WIDTH: u16 = 1024;
const HEIGHT: u16 = 768;

/// What to measure.
#[derive(Debug, Clone, Serialize)]
pub struct RdpPlan {
    /// Seconds each path is watched.
    pub seconds: u64,
    /// Repaints of the whole desktop per second.
    pub rate_hz: f64,
    /// Concurrent sessions for the memory figure.
    pub sessions: usize,
    pub idle_wait: Duration,
}

/// CPU seconds per minute of one session, per process.
#[derive(Debug, Default, Clone, Serialize)]
pub struct CpuPerMin {
    pub server: Option<f64>,
    pub gatekeeper: Option<f64>,
    pub forward: Option<f64>,
    /// `freerdp-shadow-cli` (encoding the desktop).
    pub target: Option<f64>,
}

/// One path's figures.
#[derive(Debug, Default, Clone, Serialize)]
pub struct RdpRow {
    pub path: &'static str,
    /// Measured (`false`: estimated, see the module docs).
    pub measured: bool,
    /// Fast-path update PDUs (bitmap updates) the client received a second.
    pub updates_per_s: Option<f64>,
    /// Bursts of updates (an idle gap of 20 ms ends one) a second.
    pub frames_per_s: Option<f64>,
    pub mb_per_s: Option<f64>,
    pub cpu_s_per_min: CpuPerMin,
    /// Recording growth during the window, per minute.
    pub recording_mb_per_min: Option<f64>,
    /// Server RSS with no session and with `sessions_up` sessions.
    pub rss_idle_mib: Option<f64>,
    pub rss_sessions_mib: Option<f64>,
    pub sessions_up: usize,
    pub errors: Vec<String>,
}

impl RdpRow {
    /// RSS the server adds per session.
    pub fn rss_per_session_mib(&self) -> Option<f64> {
        match (self.rss_idle_mib, self.rss_sessions_mib, self.sessions_up) {
            (Some(a), Some(b), n) if n > 0 => Some((b - a) / n as f64),
            _ => None,
        }
    }
}

/// The whole measurement.
#[derive(Debug, Default, Serialize)]
pub struct RdpFigures {
    pub rows: Vec<RdpRow>,
    /// CPU seconds this process spent recording and decoding the proxy
    /// session's recording, per minute of it.
    pub record_decode_cpu_s_per_min: Option<f64>,
}

impl RdpFigures {
    pub fn failed(&self) -> bool {
        self.rows.iter().any(|r| !r.errors.is_empty())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Raw,
    Proxy,
}

/// The target desktop, its repainter and both paths, up.
struct RdpPaths {
    d: Deployment,
    display: String,
    target_pid: u32,
    raw: SocketAddr,
    proxy: SocketAddr,
}

/// Sets up and measures both paths.
pub fn run(bin_dir: &Path, plan: &RdpPlan) -> RdpFigures {
    eprintln!("cpam-bench: setting up rdp");
    let failed = |e: anyhow::Error| RdpFigures {
        rows: vec![RdpRow {
            path: "rdp",
            errors: vec![format!("setup: {e:#}")],
            ..RdpRow::default()
        }],
        record_decode_cpu_s_per_min: None,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bench-rdp")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return failed(e.into()),
    };
    let paths = match RdpPaths::start(bin_dir) {
        Ok(p) => p,
        Err(e) => return failed(e),
    };
    eprintln!("cpam-bench: measuring rdp");
    let mut figures = RdpFigures::default();
    for route in [Route::Raw, Route::Proxy] {
        let mut row = RdpRow {
            path: match route {
                Route::Raw => "raw tunnel (desktop-sharing)",
                Route::Proxy => "proxy, recording and decoding",
            },
            measured: true,
            ..RdpRow::default()
        };
        if let Err(e) = paths.watch_one(&rt, route, plan, &mut row) {
            row.errors.push(format!("{e:#}"));
        }
        if let Err(e) = paths.hold_many(&rt, route, plan, &mut row) {
            row.errors.push(format!("sessions: {e:#}"));
        }
        if route == Route::Proxy {
            match paths.record_decode_cost() {
                Ok(c) => figures.record_decode_cpu_s_per_min = Some(c),
                Err(e) => row.errors.push(format!("recording cost: {e:#}")),
            }
        }
        figures.rows.push(row);
    }
    if let (Some(proxy), Some(cost)) = (figures.rows.get(1), figures.record_decode_cpu_s_per_min) {
        let estimate = RdpRow {
            path: "proxy without recording (est.)",
            measured: false,
            updates_per_s: proxy.updates_per_s,
            frames_per_s: proxy.frames_per_s,
            mb_per_s: proxy.mb_per_s,
            cpu_s_per_min: CpuPerMin {
                server: proxy.cpu_s_per_min.server.map(|s| (s - cost).max(0.0)),
                ..proxy.cpu_s_per_min.clone()
            },
            ..RdpRow::default()
        };
        figures.rows.insert(1, estimate);
    }
    figures
}

impl RdpPaths {
    fn start(bin_dir: &Path) -> Result<Self> {
        for tool in ["Xvfb", "freerdp-shadow-cli", "winpr-hash", "xsetroot"] {
            which(tool)?;
        }
        let mut d = Deployment::start("rdp", bin_dir)?;
        let dir = d.dir.join("target");
        fs::create_dir_all(&dir)?;
        let (xvfb, display) = start_display(&dir)?;
        d.path.guards.push(xvfb);
        paint(&display, "#1e90ff")?;
        let hash = run_input(
            "winpr-hash",
            Command::new("winpr-hash").args(["-u", TARGET_USER, "-p", TARGET_PASSWORD]),
            None,
            SETUP_TIMEOUT,
        )?;
        let sam = dir.join("target.sam");
        let hash = String::from_utf8_lossy(&hash.stdout).trim().to_owned();
        fs::write(&sam, format!("{TARGET_USER}:::{hash}:::\n"))?;
        let port = free_port()?;
        let home = dir.join("home");
        fs::create_dir_all(&home)?;
        let shadow = ChildGuard::spawn(
            "freerdp-shadow-cli",
            Command::new("freerdp-shadow-cli")
                .arg("/bind-address:127.0.0.1")
                .arg(format!("/port:{port}"))
                .args(["+auth", "/sec:nla"])
                .arg(format!("/sam-file:{}", sam.display()))
                .env("DISPLAY", &display)
                .env("HOME", &home)
                .env("XDG_CONFIG_HOME", home.join(".config"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(fs::File::create(dir.join("shadow.log"))?),
        )?;
        let target_pid = shadow.pid();
        d.path.guards.push(shadow);
        let target = SocketAddr::from(([127, 0, 0, 1], port));
        super::procs::wait_listening(target, Duration::from_secs(15))
            .context("freerdp-shadow-cli does not accept")?;
        d.service("desk", target, Some("desktop-sharing"))?;
        d.service("rdp1", target, Some("rdp"))?;
        d.cli.admin_input(
            &[
                "vault",
                "set",
                "rdp1@bench",
                "--username",
                TARGET_USER,
                "--password-stdin",
            ],
            Some(TARGET_PASSWORD.as_bytes()),
        )?;
        let input = format!("{VENDOR_LOGIN}\n{MASTER}\n");
        run_input(
            "cpam-connect master-password set",
            d.connect().args(["master-password", "set"]),
            Some(input.as_bytes()),
            SETUP_TIMEOUT,
        )?;
        run_input(
            "cpam-connect checkout",
            d.connect().args(["checkout", "rdp1", "--for", "8h"]),
            None,
            SETUP_TIMEOUT,
        )?;
        let raw = d.forward("desk")?;
        let proxy = d.forward("rdp1")?;
        Ok(Self {
            d,
            display,
            target_pid,
            raw,
            proxy,
        })
    }

    /// A login for one session of `route`: the target's account through
    /// the raw tunnel, a one-time proxy credential through the proxy.
    fn login(&self, route: Route) -> Result<(String, String)> {
        if route == Route::Raw {
            return Ok((TARGET_USER.into(), TARGET_PASSWORD.into()));
        }
        let out = run_input(
            "cpam-connect rdp-credential",
            self.d.connect().args(["rdp-credential", "rdp1", "--json"]),
            Some(format!("{MASTER}\n").as_bytes()),
            SETUP_TIMEOUT,
        )?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .context("`cpam-connect rdp-credential --json` printed no JSON")?;
        let field = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        Ok((field("username"), field("password")))
    }

    fn addr(&self, route: Route) -> SocketAddr {
        match route {
            Route::Raw => self.raw,
            Route::Proxy => self.proxy,
        }
    }

    fn pid(&self, name: &str) -> Option<u32> {
        self.d
            .path
            .guards
            .iter()
            .find(|g| g.name == name)
            .map(ChildGuard::pid)
    }

    fn recordings(&self) -> PathBuf {
        self.d.cli.data_dir().join("recordings")
    }

    /// One session watched for `plan.seconds` while the desktop repaints.
    fn watch_one(
        &self,
        rt: &tokio::runtime::Runtime,
        route: Route,
        plan: &RdpPlan,
        row: &mut RdpRow,
    ) -> Result<()> {
        wait_idle(0.9, plan.idle_wait);
        let (user, password) = self.login(route)?;
        let framed = rt
            .block_on(connect(self.addr(route), &user, &password))
            .with_context(|| {
                self.d
                    .logs(if route == Route::Raw { "desk" } else { "rdp1" })
            })?;
        let forward = format!(
            "cpam-connect-{}",
            if route == Route::Raw { "desk" } else { "rdp1" }
        );
        let pids = [
            self.pid("cpam-server"),
            self.pid("cpam-gatekeeper"),
            self.pid(&forward),
            Some(self.target_pid),
        ];
        let ticks = || pids.map(|p| p.and_then(cpu_ticks));
        let painter = Painter::start(&self.display, plan.rate_hz);
        let rec0 = dir_bytes(&self.recordings());
        let before = ticks();
        let window = Duration::from_secs(plan.seconds);
        let counts = rt.block_on(count(framed, window));
        let after = ticks();
        let rec1 = dir_bytes(&self.recordings());
        painter.stop();
        let counts = counts?;
        let secs = counts.seconds;
        let per_min = |i: usize| match (before[i], after[i]) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / clock_ticks() / secs * 60.0),
            _ => None,
        };
        row.updates_per_s = Some(counts.updates as f64 / secs);
        row.frames_per_s = Some(counts.frames as f64 / secs);
        row.mb_per_s = Some(counts.bytes as f64 / 1e6 / secs);
        row.cpu_s_per_min = CpuPerMin {
            server: per_min(0),
            gatekeeper: per_min(1),
            forward: per_min(2),
            target: per_min(3),
        };
        if route == Route::Proxy {
            row.recording_mb_per_min = Some(rec1.saturating_sub(rec0) as f64 / 1e6 / secs * 60.0);
        }
        if counts.updates == 0 {
            bail!("the client received no update in {secs:.1} s");
        }
        Ok(())
    }

    /// `plan.sessions` sessions at once: the server's RSS before and with
    /// them, all reading updates while the desktop repaints.
    fn hold_many(
        &self,
        rt: &tokio::runtime::Runtime,
        route: Route,
        plan: &RdpPlan,
        row: &mut RdpRow,
    ) -> Result<()> {
        let server = self.pid("cpam-server").context("no server")?;
        // The previous sessions' memory settles first.
        std::thread::sleep(Duration::from_secs(2));
        row.rss_idle_mib = rss_kib(server).map(|k| k as f64 / 1024.0);
        let addr = self.addr(route);
        let painter = Painter::start(&self.display, plan.rate_hz);
        // A proxy credential is issued for the next session: one at a time.
        let held = (0..plan.sessions).try_fold(Vec::new(), |mut tasks, _| {
            let (user, password) = self.login(route)?;
            let framed = rt.block_on(connect(addr, &user, &password))?;
            tasks.push(rt.spawn(count(framed, Duration::from_secs(3600))));
            anyhow::Ok(tasks)
        });
        let result = held.map(|tasks| {
            std::thread::sleep(Duration::from_secs(5));
            row.sessions_up = tasks.iter().filter(|t| !t.is_finished()).count();
            row.rss_sessions_mib = rss_kib(server).map(|k| k as f64 / 1024.0);
            for t in tasks {
                t.abort();
            }
        });
        painter.stop();
        result
    }

    /// CPU seconds per minute this process spends decoding the watched
    /// session's recording (the largest) into a desktop and writing it
    /// as recording lines.
    fn record_decode_cost(&self) -> Result<f64> {
        let newest = fs::read_dir(self.recordings())?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "cast"))
            .max_by_key(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
            .context("no recording")?;
        let file = fs::File::open(newest.path())?;
        let (_, events) = cpam_core::record::read_rdp(std::io::BufReader::new(file))?;
        let duration = events.last().map_or(0.0, |e| e.t);
        let mut desktop = cpam_core::record::Desktop::with_size(WIDTH, HEIGHT)?;
        let start = thread_cpu_ns().context("no thread CPU clock")?;
        let mut written = 0usize;
        for e in &events {
            written += cpam_core::record::pdu_line(e.t, e.up, &e.pdu).len();
            desktop.feed(e.up, &e.pdu);
        }
        let spent = thread_cpu_ns().unwrap_or(start).saturating_sub(start) as f64 / 1e9;
        if duration <= 0.0 || written == 0 {
            bail!("the recording {} is empty", newest.path().display());
        }
        Ok(spent / duration * 60.0)
    }
}

/// What a client counted.
struct Counts {
    updates: u64,
    frames: u64,
    bytes: u64,
    seconds: f64,
}

type Framed = TokioFramed<ironrdp_tls::TlsStream<TcpStream>>;

/// Connects and logs in, up to the active session.
async fn connect(addr: SocketAddr, user: &str, password: &str) -> Result<Framed> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut connector = ClientConnector::new(config(user, password), addr);
    let mut framed = TokioFramed::new(stream);
    let upgrade = ironrdp_tokio::connect_begin(&mut framed, &mut connector)
        .await
        .context("RDP negotiation")?;
    let (stream, _) = framed.into_inner();
    cpam_core::proxy::rdp::ensure_tls_provider();
    let (tls, cert) = ironrdp_tls::upgrade_with_certificate_validation(
        stream,
        "cpam",
        ironrdp_tls::CertificateValidation::DangerouslyAcceptInvalidCertificate,
    )
    .await
    .context("TLS")?;
    let key = ironrdp_tls::extract_tls_server_public_key(&cert)
        .context("no public key in the server's certificate")?
        .to_vec();
    let upgraded = ironrdp_tokio::mark_as_upgraded(upgrade, &mut connector);
    let mut framed = TokioFramed::new(tls);
    ironrdp_tokio::connect_finalize(
        upgraded,
        connector,
        &mut framed,
        &mut NoNetwork,
        ServerName::new("cpam"),
        key,
        None,
    )
    .await
    .context("the RDP connection")?
    .into_connected()
    .context("the RDP connection")?;
    Ok(framed)
}

/// Reads for `window` (or until the server closes), counting updates.
async fn count(mut framed: Framed, window: Duration) -> Result<Counts> {
    let start = tokio::time::Instant::now();
    let deadline = start + window;
    let (mut updates, mut frames, mut bytes) = (0u64, 0u64, 0u64);
    let mut last: Option<tokio::time::Instant> = None;
    loop {
        let pdu = tokio::select! {
            p = framed.read_pdu() => p,
            () = tokio::time::sleep_until(deadline) => break,
        };
        let (action, pdu) = pdu.context("reading the session")?;
        if action == ironrdp_pdu::Action::FastPath {
            let now = tokio::time::Instant::now();
            updates += 1;
            bytes += pdu.len() as u64;
            if last.is_none_or(|l| now - l >= FRAME_GAP) {
                frames += 1;
            }
            last = Some(now);
        }
    }
    Ok(Counts {
        updates,
        frames,
        bytes,
        seconds: start.elapsed().as_secs_f64(),
    })
}

struct NoNetwork;

impl ironrdp_tokio::NetworkClient for NoNetwork {
    async fn send(
        &mut self,
        _: &ironrdp_connector::sspi::generator::NetworkRequest,
    ) -> ironrdp_connector::ConnectorResult<Vec<u8>> {
        Err(ironrdp_connector::general_err!(
            "no network requests in the bench client"
        ))
    }
}

/// A client asking for plain bitmaps without compression, as the proxy
/// asks of targets, so every path carries the same pixels.
fn config(user: &str, password: &str) -> ironrdp_connector::Config {
    use ironrdp_pdu::gcc;
    use ironrdp_pdu::rdp::capability_sets::{MajorPlatformType, RailSupportLevel};
    ironrdp_connector::Config {
        desktop_size: DesktopSize {
            width: WIDTH,
            height: HEIGHT,
        },
        monitor_layout: None,
        desktop_scale_factor: 0,
        desktop_physical_size: None,
        desktop_orientation: None,
        device_scale_factor: None,
        monitor_extended_layout: None,
        relative_mouse_input: false,
        enable_tls: false,
        enable_credssp: true,
        enable_standard_rdp_security: false,
        credentials: Credentials::UsernamePassword {
            username: user.to_string(),
            password: password.to_string(),
        },
        domain: None,
        client_build: 0,
        client_name: "cpam-bench".into(),
        keyboard_type: gcc::KeyboardType::IBM_ENHANCED,
        keyboard_subtype: 0,
        keyboard_functional_keys_count: 12,
        keyboard_layout: 0,
        connection_type: gcc::ConnectionType::Lan,
        ime_file_name: String::new(),
        bitmap: None,
        dig_product_id: String::new(),
        client_dir: String::new(),
        alternate_shell: String::new(),
        work_dir: String::new(),
        remote_application_mode: false,
        rail_support_level: RailSupportLevel::empty(),
        platform: MajorPlatformType::UNIX,
        hardware_id: None,
        request_data: None,
        autologon: false,
        enable_audio_playback: false,
        enable_audio_capture: false,
        performance_flags: Default::default(),
        license_cache: None,
        timezone_info: Default::default(),
        compression_type: None,
        enable_server_pointer: false,
        pointer_software_rendering: false,
        multitransport_flags: None,
        support_dyn_vc_gfx_protocol: false,
    }
}

/// Repaints the whole desktop `rate_hz` times a second (`xsetroot`, two
/// colours in turn) until stopped.
struct Painter {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Painter {
    fn start(display: &str, rate_hz: f64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let display = display.to_owned();
        let period = Duration::from_secs_f64(1.0 / rate_hz.max(0.1));
        let thread = std::thread::spawn(move || {
            let mut next = Instant::now();
            let mut n = 0u64;
            while !flag.load(Ordering::Relaxed) {
                let colour = if n.is_multiple_of(2) {
                    "#e0a030"
                } else {
                    "#1e90ff"
                };
                let _ = paint(&display, colour);
                n += 1;
                next += period;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        });
        Self { stop, thread }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

fn paint(display: &str, colour: &str) -> Result<()> {
    let status = Command::new("xsetroot")
        .args(["-solid", colour])
        .env("DISPLAY", display)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("xsetroot on {display}: {status}");
    }
    Ok(())
}

/// `Xvfb` 1024x768x24 on a free display number.
fn start_display(dir: &Path) -> Result<(ChildGuard, String)> {
    let base = 600 + (std::process::id() % 300) * 4;
    for number in base..base + 200 {
        if Path::new(&format!("/tmp/.X{number}-lock")).exists()
            || Path::new(&format!("/tmp/.X11-unix/X{number}")).exists()
        {
            continue;
        }
        let mut xvfb = ChildGuard::spawn(
            "Xvfb",
            Command::new("Xvfb")
                .arg(format!(":{number}"))
                .args(["-screen", "0", "1024x768x24", "-nolisten", "tcp", "-ac"])
                .arg("-noreset")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(fs::File::create(dir.join(format!("xvfb-{number}.log")))?),
        )?;
        let socket = PathBuf::from(format!("/tmp/.X11-unix/X{number}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if socket.exists() {
                return Ok((xvfb, format!(":{number}")));
            }
            if xvfb.check_running().is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(xvfb);
    }
    bail!("no free X display number")
}

fn which(program: &str) -> Result<()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|d| d.join(program).is_file()) {
        return Ok(());
    }
    bail!(
        "{program} not found: the rdp bench needs xvfb, x11-xserver-utils, \
         freerdp2-shadow-x11 and winpr-utils"
    )
}

/// Bytes of the files in `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// The stdout table.
pub fn table(figures: &RdpFigures, plan: &RdpPlan) -> String {
    let mut out = format!(
        "\nRemote desktops: {WIDTH}x{HEIGHT}, repainted {} times a second (xsetroot), \
         {} s per path, headless IronRDP client (plain bitmaps)\n",
        plan.rate_hz, plan.seconds
    );
    let f = |v: Option<f64>, d: usize| v.map_or("-".into(), |v| format!("{v:.d$}"));
    out.push_str(&format!(
        "{:<32} {:>9} {:>8} {:>7} {:>10} {:>8} {:>8} {:>8} {:>9} {:>9} {:>11}\n",
        "path",
        "updates/s",
        "frames/s",
        "MB/s",
        "server",
        "gk",
        "forward",
        "target",
        "fps/raw",
        "cpu/raw",
        "MiB/session"
    ));
    out.push_str(&format!(
        "{:<32} {:>9} {:>8} {:>7} {:>10} {:>8} {:>8} {:>8}\n",
        "", "", "", "", "CPU-s/min", "", "", ""
    ));
    let raw = figures.rows.first();
    for r in &figures.rows {
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        let fps = ratio(r.frames_per_s, raw.and_then(|x| x.frames_per_s));
        let cpu = ratio(
            r.cpu_s_per_min.server,
            raw.and_then(|x| x.cpu_s_per_min.server),
        );
        out.push_str(&format!(
            "{:<32} {:>9} {:>8} {:>7} {:>10} {:>8} {:>8} {:>8} {:>9} {:>9} {:>11}\n",
            r.path,
            f(r.updates_per_s, 1),
            f(r.frames_per_s, 1),
            f(r.mb_per_s, 2),
            f(r.cpu_s_per_min.server, 2),
            f(r.cpu_s_per_min.gatekeeper, 2),
            f(r.cpu_s_per_min.forward, 2),
            f(r.cpu_s_per_min.target, 2),
            f(fps, 2),
            f(cpu, 2),
            f(r.rss_per_session_mib(), 1),
        ));
        for e in &r.errors {
            out.push_str(&format!("  ERROR {}: {e}\n", r.path));
        }
    }
    for r in figures.rows.iter().filter(|r| r.measured) {
        out.push_str(&format!(
            "{}: server RSS {} MiB idle, {} MiB with {} sessions\n",
            r.path,
            f(r.rss_idle_mib, 1),
            f(r.rss_sessions_mib, 1),
            r.sessions_up
        ));
    }
    if let Some(r) = figures.rows.iter().find_map(|r| r.recording_mb_per_min) {
        out.push_str(&format!("recording: {r:.2} MB per minute of session\n"));
    }
    if let Some(c) = figures.record_decode_cpu_s_per_min {
        out.push_str(&format!(
            "recording and decoding the session's PDUs in-process: {c:.2} CPU-s per minute \
             (subtracted for the estimate)\n"
        ));
    }
    out
}
