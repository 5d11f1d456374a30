//! RDP recordings: every PDU of a session both ways, with its time, in the
//! same store, chunk chain and signed manifest as terminal recordings.
//!
//! The file is NDJSON shaped like asciicast v2 so the store reads its start
//! the same way: a header whose `format` is [`RDP_FORMAT`], then one
//! `[t, code, hex]` array per PDU, `code` `"ru"` (client to target) or
//! `"rd"` (target to client). Asciicast readers skip it (its `format`).
//!
//! [`RdpPlayer`] (feature `rdp`) replays the target's PDUs through
//! IronRDP's fast-path decoder, passively (its answers are dropped), into
//! a framebuffer: the desktop at time T, saved as PNG.

use std::io::BufRead;

use super::asciicast::{Header, recording_error};
use crate::error::Result;

/// The `format` of an RDP recording's header.
pub const RDP_FORMAT: &str = "cpam-rdp-pdu-v1";

/// The header of a new RDP recording titled `title`, started at `unix_secs`.
pub fn rdp_header(title: String, unix_secs: i64) -> Header {
    let mut h = Header::new(0, 0);
    h.timestamp = Some(unix_secs);
    h.title = Some(title);
    h.format = Some(RDP_FORMAT.into());
    h
}

/// One PDU as a line, newline included.
pub fn pdu_line(t: f64, up: bool, pdu: &[u8]) -> String {
    format!(
        "[{t:.6},\"{}\",\"{}\"]\n",
        if up { "ru" } else { "rd" },
        hex::encode(pdu)
    )
}

/// One recorded PDU.
#[derive(Debug, Clone, PartialEq)]
pub struct RdpEvent {
    /// Seconds since the recording started.
    pub t: f64,
    /// From the client towards the target.
    pub up: bool,
    pub pdu: Vec<u8>,
}

/// Reads an RDP recording: its header and its PDUs. A last line cut
/// mid-way (a recording still written, or cut by a crash) ends it.
pub fn read_rdp(mut input: impl BufRead) -> Result<(Header, Vec<RdpEvent>)> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .map_err(|e| recording_error(format!("cannot read the recording: {e}")))?;
    let header = Header::parse(line.trim_end())?;
    if header.format.as_deref() != Some(RDP_FORMAT) {
        return Err(recording_error("the recording is not an RDP recording"));
    }
    let mut events = Vec::new();
    for (n, l) in input.lines().enumerate() {
        let l = l.map_err(|e| recording_error(format!("cannot read the recording: {e}")))?;
        if l.trim().is_empty() {
            continue;
        }
        let parsed: std::result::Result<(f64, String, String), _> = serde_json::from_str(&l);
        let Ok((t, code, data)) = parsed else {
            // Only the last line may be cut.
            break;
        };
        let up = match code.as_str() {
            "ru" => true,
            "rd" => false,
            other => {
                return Err(recording_error(format!(
                    "line {}: unknown RDP event code `{other}`",
                    n + 2
                )));
            }
        };
        let pdu =
            hex::decode(&data).map_err(|e| recording_error(format!("line {}: {e}", n + 2)))?;
        events.push(RdpEvent { t, up, pdu });
    }
    Ok((header, events))
}

#[cfg(feature = "rdp")]
pub use player::{Frame, MAX_DESKTOP, RdpPlayer};

#[cfg(feature = "rdp")]
mod player {
    use ironrdp_graphics::image_processing::PixelFormat;
    use ironrdp_pdu::{Action, mcs, x224};
    use ironrdp_session::fast_path;
    use ironrdp_session::image::DecodedImage;

    use super::RdpEvent;
    use crate::error::{Error, ErrorKind, Result};

    /// The desktop at one moment: RGBA pixels, row by row.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Frame {
        pub width: u16,
        pub height: u16,
        pub rgba: Vec<u8>,
        /// Target updates up to then, and how many of them the decoder
        /// could not read (with the last reason).
        pub updates: usize,
        pub skipped: usize,
        pub last_error: Option<String>,
    }

    impl Frame {
        /// The pixel at `(x, y)` as RGB.
        pub fn rgb(&self, x: u16, y: u16) -> Option<[u8; 3]> {
            let i = (usize::from(y) * usize::from(self.width) + usize::from(x)) * 4;
            let p = self.rgba.get(i..i + 3)?;
            Some([p[0], p[1], p[2]])
        }

        /// The frame as a PNG file.
        pub fn to_png(&self) -> Result<Vec<u8>> {
            let mut out = Vec::new();
            let mut enc =
                png::Encoder::new(&mut out, u32::from(self.width), u32::from(self.height));
            enc.set_color(png::ColorType::Rgba);
            enc.set_depth(png::BitDepth::Eight);
            let fail = |e: png::EncodingError| Error::new(ErrorKind::Internal, format!("PNG: {e}"));
            enc.write_header()
                .map_err(fail)?
                .write_image_data(&self.rgba)
                .map_err(fail)?;
            Ok(out)
        }
    }

    /// The largest desktop width or height a player decodes (the RDP
    /// limit for a client's requested desktop, MS-RDPBCGR 2.2.1.3.2).
    pub const MAX_DESKTOP: u16 = 8192;

    /// Replays an RDP recording's PDUs into a framebuffer.
    #[derive(Debug)]

    pub struct RdpPlayer {
        events: Vec<RdpEvent>,
        width: u16,
        height: u16,
    }

    /// The desktop size the client asked for in its MCS Connect Initial.
    fn desktop_size(pdu: &[u8]) -> Option<(u16, u16)> {
        let x: x224::X224<x224::X224Data<'_>> = ironrdp_core::decode(pdu).ok()?;
        let ci: mcs::ConnectInitial = ironrdp_core::decode(&x.0.data).ok()?;
        let core = &ci.conference_create_request.gcc_blocks().core;
        Some((core.desktop_width, core.desktop_height))
    }

    impl RdpPlayer {
        /// A player over a recording's PDUs; the desktop size is the one
        /// the client's Connect Initial asked for.
        pub fn new(events: Vec<RdpEvent>) -> Result<Self> {
            let (width, height) = events
                .iter()
                .filter(|e| e.up)
                .find_map(|e| desktop_size(&e.pdu))
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::Recording,
                        "the RDP recording holds no connect initial (no desktop size)",
                    )
                })?;
            Self::with_desktop(events, width, height)
        }

        /// A player over PDUs for a desktop of `width` x `height` pixels
        /// (each 1 to [`MAX_DESKTOP`]: the size comes from the vendor's
        /// client, and a frame costs four bytes per pixel).
        pub fn with_desktop(events: Vec<RdpEvent>, width: u16, height: u16) -> Result<Self> {
            let fits = |n: u16| (1..=MAX_DESKTOP).contains(&n);
            if !fits(width) || !fits(height) {
                return Err(Error::new(
                    ErrorKind::Recording,
                    format!(
                        "the RDP recording's desktop of {width}x{height} pixels is outside \
                         1x1 to {MAX_DESKTOP}x{MAX_DESKTOP}"
                    ),
                ));
            }
            Ok(Self {
                events,
                width,
                height,
            })
        }

        /// The recording's length in seconds.
        pub fn duration(&self) -> f64 {
            self.events.last().map_or(0.0, |e| e.t)
        }

        /// The desktop as the target had drawn it at `t` seconds: every
        /// fast-path update up to then decoded; what the decoder cannot
        /// read is skipped.
        pub fn frame_at(&self, t: f64) -> Frame {
            let mut image = DecodedImage::new(PixelFormat::RgbA32, self.width, self.height);
            let mut processor = fast_path::ProcessorBuilder {
                io_channel_id: 1003,
                user_channel_id: 1007,
                share_id: 0x0001_03ea,
                enable_server_pointer: false,
                pointer_software_rendering: false,
            }
            .build();
            let mut answers = ironrdp_core::WriteBuf::new();
            let mut bulk = None;
            let (mut updates, mut skipped, mut last_error) = (0, 0, None);
            for e in self.events.iter().take_while(|e| e.t <= t) {
                if e.up
                    || ironrdp_pdu::find_size(&e.pdu)
                        .ok()
                        .flatten()
                        .map(|i| i.action)
                        != Some(Action::FastPath)
                {
                    continue;
                }
                answers.clear();
                updates += 1;
                // The PDUs are the target's: IronRDP's decoder panics on
                // some malformed ones (an arithmetic overflow on a surface
                // command's empty rectangle, found by `fuzz_rdp_decoder`),
                // so a panic is one more update it cannot decode.
                let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    processor.process(&mut image, &e.pdu, &mut answers, &mut bulk)
                }));
                let error = match decoded {
                    Ok(Ok(_)) => continue,
                    Ok(Err(error)) => format!("{error:?}"),
                    Err(_) => "the decoder failed on a malformed update".to_string(),
                };
                tracing::debug!(%error, t = e.t, "an RDP update the player cannot decode");
                skipped += 1;
                last_error = Some(error);
            }
            Frame {
                width: image.width(),
                height: image.height(),
                rgba: image.data().to_vec(),
                updates,
                skipped,
                last_error,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pdus_read_back_as_written_and_a_cut_last_line_ends_the_recording() -> Result<()> {
        let mut text = rdp_header("ses_x rdp".into(), 1_700_000_000).to_line();
        text.push_str(&pdu_line(0.0, true, &[3, 0, 0, 4]));
        text.push_str(&pdu_line(0.25, false, &[0, 5, 1, 2, 3]));
        text.push_str("[0.5,\"rd\",\"00");
        let (header, events) = read_rdp(text.as_bytes())?;
        assert_eq!(header.format.as_deref(), Some(RDP_FORMAT));
        assert_eq!(
            events,
            vec![
                RdpEvent {
                    t: 0.0,
                    up: true,
                    pdu: vec![3, 0, 0, 4]
                },
                RdpEvent {
                    t: 0.25,
                    up: false,
                    pdu: vec![0, 5, 1, 2, 3]
                },
            ]
        );
        let terminal = super::super::asciicast::Header::new(80, 24).to_line();
        assert!(
            read_rdp(terminal.as_bytes()).is_err(),
            "a terminal recording is no RDP one"
        );
        Ok(())
    }
}

#[cfg(all(test, feature = "rdp"))]
mod player_tests {
    use super::*;

    #[test]
    fn a_desktop_larger_than_rdp_allows_is_refused_not_allocated() {
        // 65535 x 65535 at four bytes a pixel would be 16 GiB per frame.
        let err = RdpPlayer::with_desktop(Vec::new(), u16::MAX, 768).expect_err("too wide");
        assert!(err.to_string().contains("65535x768"), "{err}");
        assert!(RdpPlayer::with_desktop(Vec::new(), 1024, 0).is_err());
        let player = RdpPlayer::with_desktop(Vec::new(), MAX_DESKTOP, 16).expect("the largest");
        assert_eq!(
            player.frame_at(0.0).rgba.len(),
            usize::from(MAX_DESKTOP) * 16 * 4
        );
    }

    #[test]
    fn an_update_that_makes_the_decoder_panic_is_skipped() {
        // From `fuzz_rdp_decoder`: a fast-path surface command whose
        // rectangle's right edge is 0 overflows inside IronRDP's decoder.
        const PDU: &[u8] = &[
            0x00, 0xc5, 0x00, 0x04, 0x27, 0x00, 0x01, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x01,
            0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x04, 0x04, 0x00, 0x01, 0x00,
        ];
        let events = vec![RdpEvent {
            t: 0.5,
            up: false,
            pdu: PDU.to_vec(),
        }];
        let frame = RdpPlayer::with_desktop(events, 1, 1)
            .expect("a player")
            .frame_at(1.0);
        assert_eq!((frame.updates, frame.skipped), (1, 1), "{frame:?}");
    }
}
