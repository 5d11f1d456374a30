//! Session recordings: every terminal channel of a session written as an
//! asciicast v2 file, crash-safe and signed.
//!
//! - `asciicast.rs`: the format, sans I/O (header, event lines, the UTF-8
//!   decoder that never splits a code point, the typed [`Reader`]).
//! - `integrity.rs`: the chunk chain, the Ed25519-signed [`Manifest`] and
//!   [`verify`], which names what was edited, removed or appended.
//! - `store.rs`: the [`RecordingStore`] trait and [`FileRecordingStore`]
//!   (`<data dir>/recordings/`), listing, reading, search, and the sealing
//!   of recordings a crash left open.
//! - `object/` (feature `s3`): [`ObjectRecordingStore`], recordings on an
//!   S3-compatible object store, spooled in a [`FileRecordingStore`] and
//!   uploaded as they are written (`object/layout.rs` names the objects).
//! - `recorder.rs`: [`Recorder`], the observer factory the server registers
//!   on its engine; one writer thread per channel, flushed and fsync'd at
//!   least every second.
//! - `check.rs`: [`verify_all`], every recording against the store and the
//!   `recording.sealed` audit records, so a removed recording is found.
//! - `rdp.rs`: RDP recordings (every PDU both ways, [`read_rdp`]).
//! - `desktop.rs` (feature `rdp`): [`Desktop`], a remote desktop rebuilt
//!   from its PDUs through IronRDP's decoder, for the live view and replay.
//! - `player.rs` (feature `rdp`): [`RdpPlayer`], which seeks in an RDP
//!   recording from periodic keyframes, [`RdpPlayers`], a small cache of
//!   them, [`rdp_frame_png`], the desktop at a time as a PNG, and
//!   [`rdp_input`], the recording's input track.
//! - `input.rs` (feature `rdp`): [`input_track`], the keys and the mouse
//!   of the vendor's client decoded from its recorded input PDUs.
//! - `screen.rs`: [`Screen`], the current screen for viewers that join late.
//! - `live.rs`: [`LiveHub`], the live view: each live session's screen and
//!   a broadcast of what it shows, for watchers ([`LiveHub::watch`]).

mod asciicast;
mod check;
#[cfg(feature = "rdp")]
mod desktop;
#[cfg(test)]
mod engine_tests;
mod id;
#[cfg(feature = "rdp")]
mod input;
mod integrity;
mod live;
pub(crate) mod live_wire;
#[cfg(feature = "s3")]
mod object;
#[cfg(feature = "rdp")]
mod player;
mod rdp;
mod recorder;
mod screen;
mod store;
#[cfg(test)]
mod tests;
#[cfg(feature = "rdp")]
mod video;

pub use asciicast::{
    Env, EventKind, FORMAT, Header, Reader, RecordingEvent, Utf8Decoder, event_line, resize_data,
};
pub use check::{RECORDER_ACTOR, SEALED_ACTION, VerifyAll, sealed_event, verify_all};
#[cfg(feature = "rdp")]
pub use desktop::{Desktop, Frame, MAX_DESKTOP, Rect};
pub use id::RecordingId;
#[cfg(feature = "rdp")]
pub use input::{InputEvent, InputTrack, PointerButton, TimedInput, decode_input, input_track};
pub use integrity::{
    Chain, ChunkRecord, Manifest, RecordingKey, SealState, SignedManifest, Verified, check_chain,
    parse_chain, verify,
};
pub use live::{LiveHub, Watch, WatchFrame};
#[cfg(feature = "s3")]
pub use object::{
    ENDPOINT_VARS, ObjectRecordingStore, ObjectStoreConfig, REGION_VARS, UploadOptions,
};
#[cfg(feature = "rdp")]
pub use player::{
    KEYFRAME_BUDGET, KEYFRAME_MIN_GAP, MAX_KEYFRAMES, RdpPlayer, RdpPlayers, Sampler, frame_png,
    rdp_frame_png, rdp_input,
};
pub use rdp::{RDP_FORMAT, RdpEvent, pdu_line, rdp_header, read_rdp};
pub use recorder::{Recorder, RecorderOptions, SealHook, SessionRecorder};
pub use screen::Screen;
pub use store::{
    FileRecordingStore, RecordingFilter, RecordingInfo, RecordingKind, RecordingStorage,
    RecordingStore, RecordingWriter, SEARCH_MAX_TIMES, SearchHit, read_recording,
};
#[cfg(feature = "rdp")]
pub use video::{MAX_FPS, VideoOptions, VideoSummary, rdp_video};
