//! An RDP recording as a video file (feature `rdp`): the desktop sampled
//! at a fixed rate from the recording's start and encoded by `ffmpeg`
//! (WebM with VP8, or MP4 with H.264 by the file's extension). `ffmpeg` is
//! an optional peer: without it the export fails with an error that says
//! so, and single frames stay available as PNG ([`rdp_frame_png`]).
//!
//! [`rdp_frame_png`]: super::rdp_frame_png

use std::ffi::OsString;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::desktop::{Desktop, Frame};
use super::id::RecordingId;
use super::player::RdpPlayer;
use super::store::RecordingStore;
use crate::error::{Error, ErrorKind, Result};

/// The highest frame rate exported.
pub const MAX_FPS: u32 = 60;

/// How a video is made.
#[derive(Debug, Clone)]
pub struct VideoOptions {
    /// Frames per second, 1 to [`MAX_FPS`].
    pub fps: u32,
    /// The `ffmpeg` program (default: `ffmpeg` on `PATH`).
    pub ffmpeg: PathBuf,
}

impl Default for VideoOptions {
    fn default() -> Self {
        Self {
            fps: 10,
            ffmpeg: PathBuf::from("ffmpeg"),
        }
    }
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VideoSummary {
    pub path: PathBuf,
    pub width: u16,
    pub height: u16,
    pub fps: u32,
    pub frames: u64,
    pub duration: f64,
    pub bytes: u64,
}

/// The container a file name asks for, with ffmpeg's encoder arguments.
fn encoder(out: &Path) -> Result<&'static [&'static str]> {
    let ext = out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("webm") => Ok(&[
            "-c:v",
            "libvpx",
            "-b:v",
            "2M",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            "-pix_fmt",
            "yuv420p",
        ]),
        Some("mp4") => Ok(&[
            "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
        ]),
        _ => Err(Error::invalid(format!(
            "{}: a video export is written as .webm or .mp4",
            out.display()
        ))),
    }
}

/// Writes stored RDP recording `id` to `out` as a video (see the module
/// docs). Fails with `invalid_argument` for a terminal recording, a rate
/// out of range or another extension, `not_found` when `ffmpeg` is not
/// installed, and with ffmpeg's own message when it fails.
pub fn rdp_video(
    store: &dyn RecordingStore,
    id: &RecordingId,
    out: &Path,
    options: &VideoOptions,
) -> Result<VideoSummary> {
    if !(1..=MAX_FPS).contains(&options.fps) {
        return Err(Error::invalid(format!(
            "{} frames per second: a video export takes 1 to {MAX_FPS}",
            options.fps
        )));
    }
    let args = encoder(out)?;
    let player = RdpPlayer::load(store, id)?;
    let (width, height) = player.size();
    // Even sizes: what the encoders' 4:2:0 sampling needs.
    let (w, h) = (width & !1, height & !1);
    let mut cmd = Command::new(&options.ffmpeg);
    cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(["-f", "rawvideo", "-pix_fmt", "rgba"])
        .arg("-s")
        .arg(format!("{w}x{h}"))
        .arg("-r")
        .arg(options.fps.to_string())
        .args(["-i", "pipe:0"])
        .args(args)
        .arg(OsString::from(out))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::not_found(format!(
                "{} is not installed: a video export needs ffmpeg (single frames: \
                 `recordings frame`, a PNG)",
                options.ffmpeg.display()
            ))
        } else {
            Error::new(
                ErrorKind::Io,
                format!("cannot start {}: {e}", options.ffmpeg.display()),
            )
        }
    })?;
    let mut stderr = child.stderr.take();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_string(&mut text);
        }
        text
    });
    let written = match child.stdin.take() {
        Some(mut stdin) => write_frames(&player, options.fps, (w, h), &mut stdin),
        None => Err(Error::internal("ffmpeg has no stdin")),
    };
    let status = child.wait()?;
    let errors = errors.join().unwrap_or_default();
    if !status.success() {
        return Err(Error::new(
            ErrorKind::Io,
            format!(
                "ffmpeg could not write {} ({status}): {}",
                out.display(),
                errors.trim()
            ),
        ));
    }
    let frames = written?;
    Ok(VideoSummary {
        path: out.to_path_buf(),
        width: w,
        height: h,
        fps: options.fps,
        frames,
        duration: player.duration(),
        bytes: std::fs::metadata(out)?.len(),
    })
}

/// Feeds the desktop at every `1/fps` step into `sink` as `w`x`h` RGBA,
/// the last one at the recording's end (its last PDU); returns the frames
/// written. The recording is decoded once, in order.
fn write_frames(
    player: &RdpPlayer,
    fps: u32,
    (w, h): (u16, u16),
    sink: &mut impl std::io::Write,
) -> Result<u64> {
    let mut sampler = player.sampler();
    let duration = player.duration();
    let frames = (duration * f64::from(fps)).ceil() as u64 + 1;
    let mut buf = Vec::new();
    for i in 0..frames {
        let desktop = sampler.at((i as f64 / f64::from(fps)).min(duration));
        fit(desktop, (w, h), &mut buf);
        sink.write_all(&buf)?;
    }
    sink.flush()?;
    Ok(frames)
}

/// The desktop cropped or padded (opaque black) to `w`x`h`, into `buf`.
fn fit(desktop: &Desktop, (w, h): (u16, u16), buf: &mut Vec<u8>) {
    let (w, h) = (usize::from(w), usize::from(h));
    buf.clear();
    buf.resize(w * h * 4, 0);
    for px in buf.chunks_exact_mut(4) {
        px[3] = 0xff;
    }
    let Some(Frame {
        width,
        height,
        rgba,
        ..
    }) = desktop.frame()
    else {
        return;
    };
    let (fw, fh) = (usize::from(width), usize::from(height));
    let row = w.min(fw) * 4;
    for y in 0..h.min(fh) {
        buf[y * w * 4..y * w * 4 + row].copy_from_slice(&rgba[y * fw * 4..y * fw * 4 + row]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_container_follows_the_extension() {
        assert!(encoder(Path::new("a.webm")).is_ok());
        assert!(encoder(Path::new("a.MP4")).is_ok());
        let e = encoder(Path::new("a.gif")).expect_err("not a video container");
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.message().contains("a.gif"), "{e}");
    }

    #[test]
    fn a_smaller_desktop_is_padded_black_and_a_larger_one_cropped() {
        let mut buf = Vec::new();
        fit(&Desktop::new(), (4, 2), &mut buf);
        assert_eq!(buf.len(), 4 * 2 * 4);
        assert!(buf.chunks_exact(4).all(|p| p == [0, 0, 0, 0xff]));
    }
}
