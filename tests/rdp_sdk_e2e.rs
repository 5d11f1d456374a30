//! RDP recordings through the SDKs, from a real session: `xfreerdp` through
//! cpam to `freerdp-shadow-cli` on a desktop painted [`DESKTOP_RGB`], then
//! [`REPAINT_RGB`], is recorded; seeking from keyframes gives the frames
//! decoded from the start; then its last desktop is read as a PNG by
//! `cpam-server recordings frame`, by `examples/c/review_recordings.c`
//! (`cpam_recording_frame`, under ASan/UBSan) and by Python
//! (`cpam.recording_frame`, `cpam-py/tests/test_rdp_recording.py` and
//! `examples/python/review_recordings.py`), and
//! each PNG shows the repainted colour; `cpam-server recordings video`
//! writes it as a WebM that ffmpeg decodes to both colours.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use cpam_core::record::RdpPlayer;
use cpam_tests::bins::bin_path;
use cpam_tests::cc::{compile, no_sanitizer_reports, sanitized};
use cpam_tests::process::run;
use cpam_tests::rdp::{DESKTOP_RGB, paint};
use cpam_tests::rdp_psm::Rdp;

/// The colour the target's desktop is repainted mid-session.
const REPAINT: &str = "#22aa33";
const REPAINT_RGB: [u8; 3] = [0x22, 0xaa, 0x33];

/// Records a session of a few seconds; returns the recording's id and its
/// length in seconds, once it is sealed.
fn record(r: &Rdp) -> anyhow::Result<(String, f64)> {
    let (mut client, id) = r.full_session()?;
    // The desktop is drawn, repainted a few seconds later, then the vendor
    // leaves.
    std::thread::sleep(Duration::from_secs(3));
    paint(&r.target.display, REPAINT)?;
    std::thread::sleep(Duration::from_secs(3));
    client.kill()?;
    r.d.wait_session_ended(&id)?;
    let rec = format!("{id}.0");
    cpam_tests::wait_until(Duration::from_secs(10), "the recording sealed", || {
        r.d.admin_ok(&["recordings", "verify", &rec]).ok()
    })?;
    let file = r.d.data_dir.join("recordings").join(format!("{rec}.cast"));
    let (_, events) =
        cpam_core::record::read_rdp(std::io::BufReader::new(std::fs::File::open(&file)?))?;
    let duration = events.last().map_or(0.0, |e| e.t);
    // Seeking from keyframes gives the frames decoded from the start, and
    // the first colour is found before the repaint.
    let player = RdpPlayer::new(events)?;
    let keyframes = player.keyframe_times();
    assert!(!keyframes.is_empty(), "no keyframe in {duration} s");
    let (mut t, mut first_seen) = (0.0, false);
    while t <= duration + 0.5 {
        let frame = player.frame_at(t);
        let from_start = player.desktop_from_start(t).frame();
        assert!(
            Some(&frame) == from_start.as_ref(),
            "the frame at {t} s differs from the one decoded from the start \
             (keyframes at {keyframes:?})"
        );
        let p = frame.rgb(512, 384).unwrap_or_default();
        first_seen |= p.iter().zip(DESKTOP_RGB).all(|(a, b)| a.abs_diff(b) <= 8);
        t += 0.25;
    }
    assert!(first_seen, "no frame shows the first colour");
    Ok((rec, duration))
}

/// Checks that `png` is the 1024x768 desktop in the colour it was
/// repainted.
fn shows_the_desktop(what: &str, png: &[u8]) -> anyhow::Result<()> {
    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let mut reader = decoder
        .read_info()
        .with_context(|| format!("{what}: a PNG"))?;
    let mut rgba = vec![0; reader.output_buffer_size().context("PNG size")?];
    let info = reader.next_frame(&mut rgba)?;
    assert_eq!((info.width, info.height), (1024, 768), "{what}");
    assert_eq!(info.color_type, png::ColorType::Rgba, "{what}");
    for (x, y) in [(100usize, 100usize), (512, 384), (900, 700)] {
        let i = (y * 1024 + x) * 4;
        let p = &rgba[i..i + 4];
        let close = p.iter().zip(REPAINT_RGB).all(|(a, b)| a.abs_diff(b) <= 8);
        assert!(
            close && p[3] == 255,
            "{what}: pixel ({x}, {y}) is {p:?}, the desktop is {REPAINT_RGB:?}"
        );
    }
    Ok(())
}

/// `cpam-server recordings video`: a WebM whose first frame shows the
/// first colour and whose last shows the repaint, as ffmpeg decodes them;
/// clear refusals without ffmpeg and for another container.
fn video(r: &Rdp, rec: &str, duration: f64) -> anyhow::Result<()> {
    let webm = r.d.path().join("session.webm");
    let webm_arg = webm.to_str().context("path")?;
    let printed = r.d.admin_ok(&[
        "recordings",
        "video",
        rec,
        "--out",
        webm_arg,
        "--fps",
        "5",
        "--json",
    ])?;
    let v: serde_json::Value = serde_json::from_str(&printed)?;
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(1024), Some(768)),
        "{v}"
    );
    let frames = v["frames"].as_u64().context("frames")?;
    assert_eq!(frames, (duration * 5.0).ceil() as u64 + 1, "{v}");
    let frame = |args: &[&str], name: &str| -> anyhow::Result<Vec<u8>> {
        let png = r.d.path().join(name);
        let out = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y"])
            .arg("-i")
            .arg(&webm)
            .args(args)
            .args(["-frames:v", "1", "-pix_fmt", "rgba"])
            .arg(&png)
            .output()
            .context("ffmpeg (installed by tests/run.sh) decoding the video")?;
        if !out.status.success() {
            bail!("ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(std::fs::read(&png)?)
    };
    // The last frame, by its number.
    let last = format!("select=eq(n\\,{})", frames - 1);
    shows_the_desktop(
        "the video's last frame",
        &frame(&["-vf", &last], "last.png")?,
    )?;
    // Every frame, decoded: the first colour shows before the repaint.
    let raw = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(&webm)
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"])
        .output()
        .context("ffmpeg decoding the video")?;
    let size = 1024 * 768 * 3;
    let shows = |f: &[u8], rgb: [u8; 3]| {
        let i = (384 * 1024 + 512) * 3;
        f[i..i + 3].iter().zip(rgb).all(|(a, b)| a.abs_diff(b) <= 8)
    };
    let decoded: Vec<&[u8]> = raw.stdout.chunks_exact(size).collect();
    assert_eq!(
        decoded.len() as u64,
        frames,
        "frames decoded from the video"
    );
    let first = decoded.iter().position(|f| shows(f, DESKTOP_RGB));
    let repaint = decoded.iter().position(|f| shows(f, REPAINT_RGB));
    assert!(
        matches!((first, repaint), (Some(a), Some(b)) if a < b),
        "the first colour shows at frame {first:?}, the repaint at {repaint:?}"
    );
    let no_ffmpeg = r.d.admin(&[
        "recordings",
        "video",
        rec,
        "--out",
        webm_arg,
        "--ffmpeg",
        "/nonexistent/ffmpeg",
    ])?;
    assert!(!no_ffmpeg.success());
    assert!(
        no_ffmpeg
            .stderr
            .contains("/nonexistent/ffmpeg is not installed"),
        "{}",
        no_ffmpeg.stderr
    );
    let gif = r.d.admin(&["recordings", "video", rec, "--out", "x.gif"])?;
    assert!(!gif.success());
    assert!(gif.stderr.contains(".webm or .mp4"), "{}", gif.stderr);
    Ok(())
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn an_rdp_recordings_frame_shows_the_targets_desktop_from_the_cli_c_and_python()
-> anyhow::Result<()> {
    let r = Rdp::start()?;
    let (rec, duration) = record(&r)?;
    // Its length is the last PDU's time: a still desktop sends none.
    assert!(duration > 0.5, "the recording lasts {duration} s");
    let at = format!("{duration}");

    // The CLI.
    let out = r.d.path().join("cli.png");
    let printed = r.d.admin_ok(&[
        "recordings",
        "frame",
        &rec,
        "--at",
        &at,
        "--out",
        out.to_str().context("path")?,
    ])?;
    assert!(printed.contains(&rec), "{printed}");
    shows_the_desktop("cpam-server recordings frame", &std::fs::read(&out)?)?;
    video(&r, &rec, duration)?;
    let list = r.d.admin_ok(&["recordings", "list", "--json"])?;
    let list: serde_json::Value = serde_json::from_str(&list)?;
    let listed = list
        .as_array()
        .and_then(|l| l.iter().find(|x| x["id"] == rec.as_str()))
        .with_context(|| format!("{rec} not listed: {list}"))?;
    assert_eq!(listed["kind"], "rdp", "{listed}");
    // Clear refusals: past the end (saying how long it is), an unknown id.
    let late = r.d.admin(&[
        "recordings",
        "frame",
        &rec,
        "--at",
        &format!("{}", duration + 100.0),
        "--out",
        out.to_str().context("path")?,
    ])?;
    assert!(!late.success());
    assert!(
        late.stderr.contains("beyond the end") && late.stderr.contains(&format!("{duration:.3} s")),
        "{}",
        late.stderr
    );
    let unknown = r.d.admin(&[
        "recordings",
        "frame",
        "ses_unknown.0",
        "--at",
        "1",
        "--out",
        out.to_str().context("path")?,
    ])?;
    assert!(
        !unknown.success() && unknown.stderr.contains("no recording"),
        "{}",
        unknown.stderr
    );

    // C: the review tutorial writes the frame of each RDP recording.
    let frames = r.d.path().join("c-frames");
    std::fs::create_dir_all(&frames)?;
    let exe = compile("review_recordings", r.d.path())?;
    let mut c = sanitized(&exe);
    c.arg("--frame").arg(&at).arg(&frames).arg(&r.d.data_dir);
    let out = run(
        "review_recordings-rdp",
        c,
        r.d.path(),
        Duration::from_secs(120),
    )?;
    no_sanitizer_reports("review_recordings", &out.stderr)?;
    let out = out.ok("review_recordings")?;
    assert!(
        out.stdout.contains(&format!("{rec} frame at ")) && out.stdout.contains("\"desktop\":{"),
        "{}",
        out.stdout
    );
    shows_the_desktop(
        "cpam_recording_frame",
        &std::fs::read(frames.join(format!("{rec}.png")))?,
    )?;
    // And its input track, as the CLI gives it.
    let prefix = format!("{rec} input: ");
    let c_input = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .ok_or_else(|| anyhow::anyhow!("no input track printed: {}", out.stdout))?;
    let c_input: serde_json::Value = serde_json::from_str(c_input)?;
    let cli_input = r.d.admin_json(&["recordings", "input", &rec])?;
    assert_eq!(c_input, cli_input, "cpam_recording_input");
    assert_eq!(c_input["skipped"], 0, "{c_input}");

    // Python: the pytest module for RDP recordings, on this recording.
    let python = root().join("target/py-venv/bin/python");
    if !python.is_file() {
        bail!(
            "{} is missing: the Python tests need the venv with the cpam wheel; \
             run `bash tests/run.sh`, which makes it",
            python.display()
        );
    }
    let bin_dir = bin_path("cpam-server")?
        .parent()
        .context("cpam-server has no parent directory")?
        .to_path_buf();
    // The Python review tutorial writes the same frame (the time past the
    // end is cut to it).
    let frames = r.d.path().join("py-frames");
    std::fs::create_dir_all(&frames)?;
    let mut example = Command::new(&python);
    example
        .arg(root().join("examples/python/review_recordings.py"))
        .arg("--data-dir")
        .arg(&r.d.data_dir)
        .arg("--frame-dir")
        .arg(&frames)
        .args(["--frame-at", "1000"]);
    let out = run(
        "review_recordings.py",
        example,
        r.d.path(),
        Duration::from_secs(120),
    )?
    .ok("review_recordings.py")?;
    assert!(
        out.stdout.contains("remote desktop 1024x768"),
        "{}",
        out.stdout
    );
    shows_the_desktop(
        "review_recordings.py",
        &std::fs::read(frames.join(format!("{rec}.png")))?,
    )?;
    let rgb: String = REPAINT_RGB.iter().map(|b| format!("{b:02x}")).collect();
    let mut py = Command::new(&python);
    py.args([
        "-m",
        "pytest",
        "cpam-py/tests/test_rdp_recording.py",
        "-q",
        "-p",
        "no:cacheprovider",
    ])
    .current_dir(root())
    .env("CPAM_BIN_DIR", &bin_dir)
    .env("PYTHONDONTWRITEBYTECODE", "1")
    .env("CPAM_RDP_DATA_DIR", &r.d.data_dir)
    .env("CPAM_RDP_RECORDING", &rec)
    .env("CPAM_RDP_RGB", &rgb);
    let out = run("pytest-rdp", py, r.d.path(), Duration::from_secs(300))?;
    assert!(
        out.success() && out.stdout.contains("3 passed"),
        "pytest failed ({}):\n{}\n{}",
        out.status,
        out.stdout,
        out.stderr
    );
    Ok(())
}
