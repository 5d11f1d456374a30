//! [`RdpPlayer`] (feature `rdp`): an RDP recording replayed into a
//! [`Desktop`], seeking from periodic keyframes; [`RdpPlayers`], a small
//! cache of built players; [`rdp_frame_png`], the desktop of a stored
//! recording at a time, which the CLI and the C and Python SDKs call;
//! [`rdp_input`], its keystroke and mouse track.
//!
//! Building a player decodes the recording once from its start and keeps
//! a copy of the desktop at most every second ([`KEYFRAME_MIN_GAP`]), at
//! most [`MAX_KEYFRAMES`] of them and at most [`KEYFRAME_BUDGET`] bytes in
//! all, each taken where the decoder holds no state across PDUs. A frame
//! at `t` then decodes only from the last keyframe at or before `t`, and
//! is the same, pixel for pixel, as one decoded from the start.

use std::collections::VecDeque;
use std::io::BufReader;
use std::sync::{Arc, Mutex};

use super::desktop::{Desktop, Frame, Snapshot};
use super::id::RecordingId;
use super::input::{InputTrack, input_track};
use super::rdp::{RdpEvent, read_rdp};
use super::store::RecordingStore;
use crate::error::{Error, ErrorKind, Result};

/// The most keyframes a player keeps.
pub const MAX_KEYFRAMES: usize = 32;
/// The least time between two keyframes, in seconds.
pub const KEYFRAME_MIN_GAP: f64 = 1.0;
/// The most bytes a player's keyframes take together.
pub const KEYFRAME_BUDGET: usize = 64 << 20;

/// The desktop after the events before `next`.
#[derive(Debug)]
struct Keyframe {
    /// The time of the last event fed.
    t: f64,
    /// How many events were fed.
    next: usize,
    snapshot: Snapshot,
}

/// Replays an RDP recording's PDUs into a framebuffer.
#[derive(Debug)]
pub struct RdpPlayer {
    events: Vec<RdpEvent>,
    width: u16,
    height: u16,
    keyframes: Vec<Keyframe>,
}

impl RdpPlayer {
    /// A player over a recording's PDUs; the desktop size is the one
    /// the client's Connect Initial asked for.
    pub fn new(events: Vec<RdpEvent>) -> Result<Self> {
        let (width, height) = events
            .iter()
            .filter(|e| e.up)
            .find_map(|e| super::desktop::desktop_size(&e.pdu))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Recording,
                    "the RDP recording holds no connect initial (no desktop size)",
                )
            })?;
        Self::with_desktop(events, width, height)
    }

    /// A player over PDUs for a desktop of `width` x `height` pixels
    /// (each 1 to [`MAX_DESKTOP`](super::MAX_DESKTOP)).
    pub fn with_desktop(events: Vec<RdpEvent>, width: u16, height: u16) -> Result<Self> {
        let mut desktop = Desktop::with_size(width, height)?;
        let frame_bytes = usize::from(width) * usize::from(height) * 4;
        let most = MAX_KEYFRAMES.min(KEYFRAME_BUDGET / frame_bytes);
        let duration = events.last().map_or(0.0, |e| e.t);
        let gap = KEYFRAME_MIN_GAP.max(duration / (most as f64 + 1.0));
        let mut keyframes = Vec::new();
        let mut last_t = 0.0;
        let mut in_order = true;
        for (i, e) in events.iter().enumerate() {
            if keyframes.len() >= most {
                break;
            }
            // A time going back would make "every event up to t" differ
            // from "every event before this one, then up to t".
            in_order &= e.t >= last_t && e.t.is_finite();
            if !in_order {
                break;
            }
            last_t = e.t;
            desktop.feed(e.up, &e.pdu);
            let since = keyframes.last().map_or(0.0, |k: &Keyframe| k.t);
            if e.t - since >= gap
                && desktop.at_rest()
                && let Some(snapshot) = desktop.snapshot()
            {
                keyframes.push(Keyframe {
                    t: e.t,
                    next: i + 1,
                    snapshot,
                });
            }
        }
        Ok(Self {
            events,
            width,
            height,
            keyframes,
        })
    }

    /// The recording `id` of `store`; refused when it is not an RDP one.
    pub fn load(store: &dyn RecordingStore, id: &RecordingId) -> Result<Self> {
        Self::new(load_events(store, id)?)
    }

    /// The keystroke and mouse track of the recording's client.
    pub fn input_track(&self) -> InputTrack {
        input_track(&self.events)
    }

    /// The recording's length in seconds.
    pub fn duration(&self) -> f64 {
        self.events.last().map_or(0.0, |e| e.t)
    }

    /// The desktop's size in pixels.
    pub fn size(&self) -> (u16, u16) {
        (self.width, self.height)
    }

    /// How many PDUs the recording holds.
    pub fn pdus(&self) -> usize {
        self.events.len()
    }

    /// The times of the keyframes seeks start from.
    pub fn keyframe_times(&self) -> Vec<f64> {
        self.keyframes.iter().map(|k| k.t).collect()
    }

    /// The bytes the keyframes take.
    pub fn keyframe_bytes(&self) -> usize {
        self.keyframes.iter().map(|k| k.snapshot.rgba.len()).sum()
    }

    /// The desktop as the target had drawn it at `t` seconds: every
    /// fast-path update up to then decoded; what the decoder cannot
    /// read is skipped.
    pub fn frame_at(&self, t: f64) -> Frame {
        self.desktop_at(t).frame().unwrap_or(Frame {
            width: 0,
            height: 0,
            rgba: Vec::new(),
            updates: 0,
            skipped: 0,
            last_error: None,
        })
    }

    /// The [`Desktop`] fed every PDU up to `t` seconds, from the last
    /// keyframe at or before `t`.
    pub fn desktop_at(&self, t: f64) -> Desktop {
        let from = self.keyframes.iter().rev().find(|k| k.t <= t);
        let (mut desktop, next) = match from.map(|k| (Desktop::restore(&k.snapshot), k.next)) {
            Some((Ok(d), next)) => (d, next),
            _ => (self.blank(), 0),
        };
        for e in self.events[next..].iter().take_while(|e| e.t <= t) {
            desktop.feed(e.up, &e.pdu);
        }
        desktop
    }

    /// [`RdpPlayer::desktop_at`] decoding from the recording's start.
    pub fn desktop_from_start(&self, t: f64) -> Desktop {
        let mut desktop = self.blank();
        for e in self.events.iter().take_while(|e| e.t <= t) {
            desktop.feed(e.up, &e.pdu);
        }
        desktop
    }

    /// Desktops at increasing times, each PDU decoded once (a video).
    pub fn sampler(&self) -> Sampler<'_> {
        Sampler {
            player: self,
            desktop: self.blank(),
            next: 0,
        }
    }

    /// Its size is known from the start (a blank desktop before the first
    /// update).
    fn blank(&self) -> Desktop {
        Desktop::with_size(self.width, self.height).unwrap_or_else(|_| Desktop::new())
    }
}

/// [`RdpPlayer::sampler`]: the desktop at increasing times.
pub struct Sampler<'a> {
    player: &'a RdpPlayer,
    desktop: Desktop,
    next: usize,
}

impl std::fmt::Debug for Sampler<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl Sampler<'_> {
    /// The desktop at `t` seconds; a `t` before the last one asked gives
    /// the desktop at that last one.
    pub fn at(&mut self, t: f64) -> &Desktop {
        while let Some(e) = self.player.events.get(self.next).filter(|e| e.t <= t) {
            self.desktop.feed(e.up, &e.pdu);
            self.next += 1;
        }
        &self.desktop
    }
}

/// The desktop of stored RDP recording `id` at `t` seconds from its start,
/// as a PNG. Fails with `not_found` for an unknown recording,
/// `invalid_argument` for a terminal recording or a time outside the
/// recording (the message gives its length).
pub fn rdp_frame_png(store: &dyn RecordingStore, id: &RecordingId, t: f64) -> Result<Vec<u8>> {
    let player = RdpPlayer::load(store, id)?;
    frame_png(&player, id, t)
}

/// The PDUs of stored recording `id`; refused when it is not an RDP one.
fn load_events(store: &dyn RecordingStore, id: &RecordingId) -> Result<Vec<RdpEvent>> {
    let reader = store.open(id)?;
    let (_, events) = read_rdp(BufReader::new(reader)).map_err(|e| {
        if e.kind() == ErrorKind::InvalidArgument {
            Error::invalid(format!(
                "recording {id} is not an RDP recording (a terminal's: read its events)"
            ))
        } else {
            e
        }
    })?;
    Ok(events)
}

/// The keystroke and mouse track of stored RDP recording `id` (its
/// frames are not decoded). Fails with `not_found` for an unknown
/// recording, `invalid_argument` for a terminal recording; input PDUs
/// that do not decode are counted in [`InputTrack::skipped`].
pub fn rdp_input(store: &dyn RecordingStore, id: &RecordingId) -> Result<InputTrack> {
    Ok(input_track(&load_events(store, id)?))
}

/// The PNG of `player` at `t`, checked against its length.
pub fn frame_png(player: &RdpPlayer, id: &RecordingId, t: f64) -> Result<Vec<u8>> {
    let duration = player.duration();
    if !t.is_finite() || t < 0.0 {
        return Err(Error::invalid(format!(
            "{t} s is no time in recording {id} (0 to {duration:.3} s)"
        )));
    }
    if t > duration {
        return Err(Error::invalid(format!(
            "{t} s is beyond the end of recording {id}, which lasts {duration:.3} s"
        )));
    }
    player.frame_at(t).to_png()
}

/// What [`read_recording`](super::read_recording) says of an RDP recording.
pub(crate) fn rdp_summary(
    store: &dyn RecordingStore,
    id: &RecordingId,
) -> Result<serde_json::Value> {
    let player = RdpPlayer::load(store, id)?;
    let (width, height) = player.size();
    Ok(serde_json::json!({
        "width": width,
        "height": height,
        "duration": player.duration(),
        "pdus": player.pdus(),
    }))
}

/// A few built players, the most recently used kept, so seeking in a
/// sealed recording does not decode it again. An unsealed recording (still
/// being written) is built anew each time.
#[derive(Debug)]
pub struct RdpPlayers {
    capacity: usize,
    entries: Mutex<VecDeque<(RecordingId, Arc<RdpPlayer>)>>,
}

impl Default for RdpPlayers {
    fn default() -> Self {
        Self::new(4)
    }
}

impl RdpPlayers {
    /// A cache of at most `capacity` players.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::new(VecDeque::new()),
        }
    }

    /// The player of recording `id` of `store`, built if it is not kept.
    pub fn get(&self, store: &dyn RecordingStore, id: &RecordingId) -> Result<Arc<RdpPlayer>> {
        if let Some(p) = self.take(id) {
            return Ok(p);
        }
        let sealed = store.manifest(id).ok().flatten().is_some();
        let player = Arc::new(RdpPlayer::load(store, id)?);
        if sealed && self.capacity > 0 {
            let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            entries.retain(|(k, _)| k != id);
            entries.push_front((id.clone(), player.clone()));
            entries.truncate(self.capacity);
        }
        Ok(player)
    }

    /// How many players are kept.
    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The kept player of `id`, moved to the front.
    fn take(&self, id: &RecordingId) -> Option<Arc<RdpPlayer>> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let i = entries.iter().position(|(k, _)| k == id)?;
        let entry = entries.remove(i)?;
        let player = entry.1.clone();
        entries.push_front(entry);
        Some(player)
    }
}

#[cfg(test)]
#[path = "player_tests.rs"]
mod tests;
