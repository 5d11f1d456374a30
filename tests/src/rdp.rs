//! RDP peers: an X display (`Xvfb`) painted a known colour, a real NLA
//! target on it (`freerdp-shadow-cli` with a SAM file made by
//! `winpr-hash`), and the vendor's client (`xfreerdp`, on a display of its
//! own). Installed by `tests/run.sh`; a missing one fails the test.
//!
//! ```text
//! vendor ns:   xfreerdp (DISPLAY :v) -> cpam-connect forward/desktop -> cpam-server
//! customer ns: cpam-gatekeeper -> freerdp-shadow-cli 127.0.0.1:3389 (DISPLAY :t, painted)
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::netns::Netns;
use crate::process::{Child, run};

/// The colour the target's desktop is painted (`xsetroot -solid`).
pub const DESKTOP_COLOUR: &str = "#1e90ff";
/// [`DESKTOP_COLOUR`] as RGB.
pub const DESKTOP_RGB: [u8; 3] = [0x1e, 0x90, 0xff];

fn which(program: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "{program} not found: the RDP tests need it; run them through `bash tests/run.sh` \
                 or `apt-get install xvfb x11-xserver-utils freerdp2-shadow-x11 winpr-utils freerdp2-x11 xdotool`"
            )
        })
}

/// A virtual X display.
#[derive(Debug)]
pub struct Display {
    pub number: u32,
    pub child: Child,
}

impl Display {
    /// `Xvfb :N` (1024x768x24) on a free display number, in `ns` (or on the
    /// host); returns once its socket exists.
    pub fn start(ns: Option<&Netns>, dir: &Path, name: &str) -> anyhow::Result<Display> {
        Self::start_with(ns, dir, name, &[])
    }

    /// [`Display::start`] with extra Xvfb arguments.
    pub fn start_with(
        ns: Option<&Netns>,
        dir: &Path,
        name: &str,
        extra: &[&str],
    ) -> anyhow::Result<Display> {
        let xvfb = which("Xvfb")?;
        // Displays of one test process never share a number; another
        // process's show as lock files.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let base = 100 + (std::process::id() % 500) * 8;
        loop {
            let number = base + NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if number > base + 400 {
                break;
            }
            let lock = PathBuf::from(format!("/tmp/.X{number}-lock"));
            let socket = PathBuf::from(format!("/tmp/.X11-unix/X{number}"));
            if lock.exists() || socket.exists() {
                continue;
            }
            let mut c = match ns {
                Some(ns) => ns.command(&xvfb),
                None => Command::new(&xvfb),
            };
            c.arg(format!(":{number}"))
                .args(["-screen", "0", "1024x768x24", "-nolisten", "tcp", "-ac"])
                // Without it the server resets when its last client leaves,
                // and the painted background is gone.
                .arg("-noreset")
                .args(extra);
            let mut child = Child::spawn(&format!("{name}-xvfb"), c, dir)?;
            let up = crate::wait_until(Duration::from_secs(10), "Xvfb to start", || {
                if !child.is_running() {
                    return Some(false);
                }
                socket.exists().then_some(true)
            })?;
            if up {
                return Ok(Display { number, child });
            }
            // Another display took the number meanwhile: try the next.
        }
        bail!("no free X display number")
    }

    /// The `DISPLAY` value.
    pub fn env(&self) -> String {
        format!(":{}", self.number)
    }
}

/// A real RDP target with NLA: `freerdp-shadow-cli` sharing a painted
/// display, one account in its SAM file.
#[derive(Debug)]
pub struct RdpTarget {
    pub shadow: Child,
    pub display: Display,
    pub sam: PathBuf,
    pub user: String,
    pub password: String,
    pub port: u16,
}

impl RdpTarget {
    /// Starts the target on 127.0.0.1:`port` in `ns` with account
    /// `user`/`password`, its desktop painted [`DESKTOP_COLOUR`].
    pub fn start(
        ns: &Netns,
        dir: &Path,
        port: u16,
        user: &str,
        password: &str,
    ) -> anyhow::Result<RdpTarget> {
        which("freerdp-shadow-cli")?;
        which("winpr-hash")?;
        which("xsetroot")?;
        let display = Display::start(Some(ns), dir, "target")?;
        let mut paint = Command::new("xsetroot");
        paint
            .args(["-solid", DESKTOP_COLOUR])
            .env("DISPLAY", display.env());
        run("xsetroot", paint, dir, Duration::from_secs(20))?.ok("xsetroot")?;
        let mut hash = Command::new("winpr-hash");
        hash.args(["-u", user, "-p", password]);
        let hash = run("winpr-hash", hash, dir, Duration::from_secs(20))?.ok("winpr-hash")?;
        let sam = dir.join("rdp-target.sam");
        std::fs::write(&sam, format!("{user}:::{}:::\n", hash.stdout.trim()))
            .context("writing the SAM file")?;
        let shadow = spawn_shadow(ns, dir, &display, &sam, port, &dir.join("rdp-target-home"))?;
        Ok(RdpTarget {
            shadow,
            display,
            sam,
            user: user.into(),
            password: password.into(),
            port,
        })
    }

    /// Stops the target and starts it again on the same display and port
    /// with its configuration (its TLS certificate, made on first start)
    /// in `home`: another `home` is another certificate.
    pub fn restart(&mut self, ns: &Netns, dir: &Path, home: &Path) -> anyhow::Result<()> {
        self.shadow.kill()?;
        let gone = crate::wait_until(Duration::from_secs(10), "the target to close", || {
            (!ns.can_connect("127.0.0.1", self.port)).then_some(())
        });
        gone?;
        self.shadow = spawn_shadow(ns, dir, &self.display, &self.sam, self.port, home)?;
        Ok(())
    }

    pub fn logs(&self) -> String {
        format!("{}\n{}", self.shadow.logs(), self.display.child.logs())
    }
}

/// `xfreerdp /v:127.0.0.1:PORT /cert:ignore ARGS` on `display` in `ns`.
pub fn xfreerdp(
    ns: &Netns,
    display: &Display,
    port: u16,
    args: &[&str],
) -> anyhow::Result<Command> {
    let bin = which("xfreerdp")?;
    let mut c = ns.command(bin);
    c.arg(format!("/v:127.0.0.1:{port}"))
        .arg("/cert:ignore")
        .args(args)
        .env("DISPLAY", display.env());
    Ok(c)
}

/// `xdotool ARGS` on `display` in `ns`: real X input (XTEST) to the
/// window under the pointer, as a person would type and click.
pub fn xdotool(ns: &Netns, display: &Display, args: &[&str]) -> anyhow::Result<Command> {
    let mut c = ns.command(which("xdotool")?);
    c.args(args).env("DISPLAY", display.env());
    Ok(c)
}

/// `freerdp-shadow-cli` on `display`, NLA against `sam`, its configuration
/// (and so its certificate) under `home`; returns once it accepts.
fn spawn_shadow(
    ns: &Netns,
    dir: &Path,
    display: &Display,
    sam: &Path,
    port: u16,
    home: &Path,
) -> anyhow::Result<Child> {
    let shadow_bin = which("freerdp-shadow-cli")?;
    std::fs::create_dir_all(home)?;
    let mut c = ns.command(shadow_bin);
    c.arg("/bind-address:127.0.0.1")
        .arg(format!("/port:{port}"))
        .args(["+auth", "/sec:nla"])
        .arg(format!("/sam-file:{}", sam.display()))
        .env("DISPLAY", display.env())
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"));
    let name = match home.file_name() {
        Some(n) => format!("rdp-target-{}", n.to_string_lossy()),
        None => "rdp-target".into(),
    };
    let mut shadow = Child::spawn(&name, c, dir)?;
    let ready = crate::wait_until(
        Duration::from_secs(15),
        "freerdp-shadow-cli to accept",
        || {
            if !shadow.is_running() {
                return Some(false);
            }
            ns.can_connect("127.0.0.1", port).then_some(true)
        },
    )?;
    if !ready {
        bail!(
            "freerdp-shadow-cli exited at start\n{}\n{}",
            shadow.logs(),
            display.child.logs()
        );
    }
    Ok(shadow)
}

/// [`xfreerdp`] on the test's own network (no namespace).
pub fn xfreerdp_here(display: &Display, port: u16, args: &[&str]) -> anyhow::Result<Command> {
    let mut c = Command::new(which("xfreerdp")?);
    c.arg(format!("/v:127.0.0.1:{port}"))
        .arg("/cert:ignore")
        .args(args)
        .env("DISPLAY", display.env());
    Ok(c)
}

/// Paints the desktop of `display` `colour` (`#rrggbb`).
pub fn paint(display: &Display, colour: &str) -> anyhow::Result<()> {
    let status = Command::new(which("xsetroot")?)
        .args(["-solid", colour])
        .env("DISPLAY", display.env())
        .status()
        .context("running xsetroot")?;
    anyhow::ensure!(status.success(), "xsetroot -solid {colour} failed");
    Ok(())
}

/// Where the RDP tests save frames: `<target>/test-artifacts/rdp`.
pub fn artifacts_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let target = exe
        .ancestors()
        .nth(3)
        .context("the test runs outside a cargo target directory")?;
    let dir = target.join("test-artifacts").join("rdp");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
