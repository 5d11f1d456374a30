//! [`Desktop`]: a remote desktop rebuilt from an RDP session's PDUs
//! (feature `rdp`), for the live view and the recordings' player.
//!
//! IronRDP's fast-path decoder draws into its own image; every region it
//! reports changed is copied into the desktop's framebuffer, which starts
//! opaque black. The decoder's output does not depend on what its image
//! held before (bitmaps overwrite, the pointer is not drawn), so a desktop
//! can restart from a copy of that framebuffer ([`Snapshot`]) with a fresh
//! decoder, as long as the decoder holds no state across PDUs at that point
//! ([`Desktop::at_rest`]).

use ironrdp_core::{Decode as _, ReadCursor};
use ironrdp_graphics::image_processing::PixelFormat;
use ironrdp_pdu::fast_path::{FastPathHeader, FastPathUpdatePdu, Fragmentation, UpdateCode};
use ironrdp_pdu::{Action, mcs, x224};
use ironrdp_session::fast_path::{self, UpdateKind};
use ironrdp_session::image::DecodedImage;

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
        encode_png(self.width, self.height, &self.rgba)
    }
}

/// The largest desktop width or height decoded (the RDP limit for a
/// client's requested desktop, MS-RDPBCGR 2.2.1.3.2).
pub const MAX_DESKTOP: u16 = 8192;

/// A region of the desktop, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: u16,
    pub y: u16,
    pub width: u16,
    pub height: u16,
}

impl Rect {
    /// The smallest region holding both.
    pub fn union(self, o: Rect) -> Rect {
        let right = (self.x + self.width).max(o.x + o.width);
        let bottom = (self.y + self.height).max(o.y + o.height);
        let (x, y) = (self.x.min(o.x), self.y.min(o.y));
        Rect {
            x,
            y,
            width: right - x,
            height: bottom - y,
        }
    }
}

/// A copy of a [`Desktop`]'s pixels and counters, to restart from.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub(crate) width: u16,
    pub(crate) height: u16,
    pub(crate) rgba: Vec<u8>,
    updates: usize,
    skipped: usize,
    last_error: Option<String>,
}

/// The decoder's image and the framebuffer shown.
struct Screen {
    image: DecodedImage,
    /// RGBA, row by row; starts opaque black.
    rgba: Vec<u8>,
}

impl Screen {
    fn new(width: u16, height: u16) -> Screen {
        let mut rgba = vec![0u8; usize::from(width) * usize::from(height) * 4];
        for p in rgba.chunks_exact_mut(4) {
            p[3] = 0xff;
        }
        Screen {
            image: DecodedImage::new(PixelFormat::RgbA32, width, height),
            rgba,
        }
    }

    /// Copies region `r` (already clipped) of the decoder's image.
    fn take(&mut self, r: Rect) {
        let stride = usize::from(self.image.width()) * 4;
        let data = self.image.data();
        for y in r.y..r.y + r.height {
            let start = usize::from(y) * stride + usize::from(r.x) * 4;
            let end = start + usize::from(r.width) * 4;
            if let (Some(to), Some(from)) = (self.rgba.get_mut(start..end), data.get(start..end)) {
                to.copy_from_slice(from);
            }
        }
    }
}

/// A desktop rebuilt from an RDP session's PDUs, fed one at a time
/// as they pass or as they were recorded (sans-IO): the client's
/// Connect Initial gives its size, the target's fast-path updates its
/// pixels, through IronRDP's decoder (its answers are dropped).
pub struct Desktop {
    screen: Option<Screen>,
    processor: fast_path::Processor,
    answers: ironrdp_core::WriteBuf,
    updates: usize,
    skipped: usize,
    last_error: Option<String>,
    /// An update was fragmented over PDUs and its last piece has not come.
    mid_update: bool,
    /// The decoder has kept state a fresh one would not have (a palette,
    /// surface commands' codec contexts, compression) or met a PDU it
    /// could not frame: restarting from a snapshot could differ.
    stateful: bool,
}

impl std::fmt::Debug for Desktop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Desktop")
            .field("size", &self.size())
            .field("updates", &self.updates)
            .field("skipped", &self.skipped)
            .finish_non_exhaustive()
    }
}

impl Default for Desktop {
    fn default() -> Self {
        Self::new()
    }
}

impl Desktop {
    /// A desktop of no size yet.
    pub fn new() -> Self {
        Self {
            screen: None,
            processor: fast_path::ProcessorBuilder {
                io_channel_id: 1003,
                user_channel_id: 1007,
                share_id: 0x0001_03ea,
                enable_server_pointer: false,
                pointer_software_rendering: false,
            }
            .build(),
            answers: ironrdp_core::WriteBuf::new(),
            updates: 0,
            skipped: 0,
            last_error: None,
            mid_update: false,
            stateful: false,
        }
    }

    /// A desktop of `width` x `height` pixels (each 1 to
    /// [`MAX_DESKTOP`]: the size comes from the vendor's client, and
    /// the framebuffer costs eight bytes per pixel), opaque black.
    pub fn with_size(width: u16, height: u16) -> Result<Self> {
        if !fits(width) || !fits(height) {
            return Err(Error::new(
                ErrorKind::Recording,
                format!(
                    "the RDP desktop of {width}x{height} pixels is outside 1x1 to \
                     {MAX_DESKTOP}x{MAX_DESKTOP}"
                ),
            ));
        }
        let mut d = Self::new();
        d.screen = Some(Screen::new(width, height));
        Ok(d)
    }

    /// A desktop showing `s`, with a fresh decoder.
    pub(crate) fn restore(s: &Snapshot) -> Result<Self> {
        let mut d = Self::with_size(s.width, s.height)?;
        if let Some(screen) = d.screen.as_mut() {
            screen.rgba.copy_from_slice(&s.rgba);
        }
        d.updates = s.updates;
        d.skipped = s.skipped;
        d.last_error = s.last_error.clone();
        Ok(d)
    }

    /// Its pixels and counters, if it has a size.
    pub(crate) fn snapshot(&self) -> Option<Snapshot> {
        let screen = self.screen.as_ref()?;
        Some(Snapshot {
            width: screen.image.width(),
            height: screen.image.height(),
            rgba: screen.rgba.clone(),
            updates: self.updates,
            skipped: self.skipped,
            last_error: self.last_error.clone(),
        })
    }

    /// Whether a fresh decoder restarted from [`Desktop::snapshot`] now
    /// would decode what follows exactly as this one.
    pub(crate) fn at_rest(&self) -> bool {
        !self.mid_update && !self.stateful
    }

    /// Its size, once the client's Connect Initial passed.
    pub fn size(&self) -> Option<(u16, u16)> {
        self.screen
            .as_ref()
            .map(|s| (s.image.width(), s.image.height()))
    }

    /// Feeds one PDU (`up`: from the client); returns the region it
    /// changed, if any. What the decoder cannot read is skipped.
    pub fn feed(&mut self, up: bool, pdu: &[u8]) -> Option<Rect> {
        if up {
            if self.screen.is_none()
                && let Some((w, h)) = desktop_size(pdu)
                && fits(w)
                && fits(h)
            {
                self.screen = Some(Screen::new(w, h));
            }
            return None;
        }
        let screen = self.screen.as_mut()?;
        if ironrdp_pdu::find_size(pdu).ok().flatten().map(|i| i.action) != Some(Action::FastPath) {
            return None;
        }
        match fragments(pdu) {
            Some((mid_update, stateful)) => {
                self.mid_update = mid_update;
                self.stateful |= stateful;
            }
            None => self.stateful = true,
        }
        self.answers.clear();
        self.updates += 1;
        let mut bulk = None;
        // The PDUs are the target's: IronRDP's decoder panics on some
        // malformed ones (an arithmetic overflow on a surface command's
        // empty rectangle, found by `fuzz_rdp_decoder`), so a panic is
        // one more update it cannot decode.
        let processor = &mut self.processor;
        let answers = &mut self.answers;
        let image = &mut screen.image;
        let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            processor.process(image, pdu, answers, &mut bulk)
        }));
        let decoded = match decoded {
            Ok(r) => r.map_err(|e| format!("{e:?}")),
            Err(_) => Err("the decoder failed on a malformed update".to_string()),
        };
        match decoded {
            Ok(kinds) => {
                let (w, h) = (screen.image.width(), screen.image.height());
                kinds
                    .into_iter()
                    .filter_map(|k| match k {
                        UpdateKind::Region(r) => Some(Rect {
                            x: r.left,
                            y: r.top,
                            width: r.right.saturating_sub(r.left) + 1,
                            height: r.bottom.saturating_sub(r.top) + 1,
                        }),
                        _ => None,
                    })
                    .map(|r| clip(r, w, h))
                    .inspect(|r| screen.take(*r))
                    .reduce(Rect::union)
            }
            Err(error) => {
                tracing::debug!(%error, "an RDP update the decoder cannot read");
                self.skipped += 1;
                self.last_error = Some(error);
                None
            }
        }
    }

    /// The whole desktop now (`None` before its size is known).
    pub fn frame(&self) -> Option<Frame> {
        let screen = self.screen.as_ref()?;
        Some(Frame {
            width: screen.image.width(),
            height: screen.image.height(),
            rgba: screen.rgba.clone(),
            updates: self.updates,
            skipped: self.skipped,
            last_error: self.last_error.clone(),
        })
    }

    /// Region `r` of the desktop as a PNG file.
    pub fn png(&self, r: Rect) -> Result<Vec<u8>> {
        let screen = self
            .screen
            .as_ref()
            .ok_or_else(|| Error::new(ErrorKind::Conflict, "the desktop has no size yet"))?;
        let r = clip(r, screen.image.width(), screen.image.height());
        let stride = usize::from(screen.image.width()) * 4;
        let mut rgba = Vec::with_capacity(usize::from(r.width) * usize::from(r.height) * 4);
        for y in r.y..r.y + r.height {
            let start = usize::from(y) * stride + usize::from(r.x) * 4;
            rgba.extend_from_slice(&screen.rgba[start..start + usize::from(r.width) * 4]);
        }
        encode_png(r.width, r.height, &rgba)
    }
}

/// What a fast-path PDU leaves in the decoder: whether its last update is
/// fragmented and not finished, and whether any of its updates keeps
/// state across PDUs (palette, surface commands, compression). `None`
/// when the PDU does not frame.
fn fragments(pdu: &[u8]) -> Option<(bool, bool)> {
    let mut src = ReadCursor::new(pdu);
    let header = FastPathHeader::decode(&mut src).ok()?;
    let body = src.read_slice(header.data_length.min(src.len()));
    let mut src = ReadCursor::new(body);
    let (mut mid, mut stateful) = (false, false);
    while !src.is_empty() {
        let u = FastPathUpdatePdu::decode(&mut src).ok()?;
        mid = matches!(u.fragmentation, Fragmentation::First | Fragmentation::Next);
        stateful |= u.compression_flags.is_some()
            || matches!(
                u.update_code,
                UpdateCode::Palette | UpdateCode::SurfaceCommands
            );
    }
    Some((mid, stateful))
}

fn fits(n: u16) -> bool {
    (1..=MAX_DESKTOP).contains(&n)
}

/// `r` cut to a `width`×`height` desktop.
fn clip(r: Rect, width: u16, height: u16) -> Rect {
    let x = r.x.min(width);
    let y = r.y.min(height);
    Rect {
        x,
        y,
        width: r.width.min(width - x),
        height: r.height.min(height - y),
    }
}

fn encode_png(width: u16, height: u16, rgba: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, u32::from(width), u32::from(height));
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Fast);
    let fail = |e: png::EncodingError| Error::new(ErrorKind::Internal, format!("PNG: {e}"));
    enc.write_header()
        .map_err(fail)?
        .write_image_data(rgba)
        .map_err(fail)?;
    Ok(out)
}

/// The desktop size the client asked for in its MCS Connect Initial.
pub(crate) fn desktop_size(pdu: &[u8]) -> Option<(u16, u16)> {
    let x: x224::X224<x224::X224Data<'_>> = ironrdp_core::decode(pdu).ok()?;
    let ci: mcs::ConnectInitial = ironrdp_core::decode(&x.0.data).ok()?;
    let core = &ci.conference_create_request.gcc_blocks().core;
    Some((core.desktop_width, core.desktop_height))
}
