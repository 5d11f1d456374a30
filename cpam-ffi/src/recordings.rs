//! A server's session recordings from C: listed, read, searched and
//! verified against their signed manifests, and an RDP recording's desktop
//! at a time as a PNG and its client's input track. Every function takes the server's data dir and
//! answers JSON (free it with `cpam_string_free`), the frame PNG bytes
//! (free them with `cpam_bytes_free`).

use std::ffi::c_char;
use std::path::Path;

use cpam_core::model::SessionId;
use cpam_core::record::{
    RecordingFilter, RecordingId, RecordingStore, rdp_frame_png, rdp_input, read_recording,
};
use cpam_core::server::DataDir;

use crate::boundary::{FfiResult, arg_opt_str, arg_out, arg_str, boundary, c_string, put};
use crate::status::{Failure, cpam_status};

fn store(data_dir: &str) -> FfiResult<impl RecordingStore> {
    Ok(DataDir::open(Path::new(data_dir))?.recordings()?)
}

fn filter(session: Option<&str>) -> RecordingFilter {
    RecordingFilter {
        session: session.map(|s| SessionId(s.to_string())),
        ..RecordingFilter::default()
    }
}

/// Serializes `value` into a new C string at `*out`.
///
/// # Safety
/// `out` was checked by `arg_out`.
unsafe fn answer(out: *mut *mut c_char, value: &impl serde::Serialize) -> FfiResult {
    let text = serde_json::to_string(value)
        .map_err(|e| Failure::new(cpam_status::CPAM_INTERNAL, e.to_string()))?;
    let text = c_string(text)?;
    // SAFETY: per this function's contract.
    unsafe { put(out, text) };
    Ok(())
}

/// The recordings under `data_dir` (of one `session` when not NULL): a JSON
/// array of `{"id", "session_id", "channel", "kind", "started_at",
/// "ended_at", "size", "state"}` (`kind`: `"terminal"` or `"rdp"`; `state`:
/// `"complete"`, `"incomplete"`, or null while being written).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_recordings_list(
    data_dir: *const c_char,
    session: *const c_char,
    json_out: *mut *mut c_char,
) -> cpam_status {
    boundary(|| {
        // SAFETY: C strings per the header's contract (`session` may be NULL).
        let (dir, session) = unsafe {
            (
                arg_str(data_dir, "data_dir")?,
                arg_opt_str(session, "session")?,
            )
        };
        let out = arg_out(json_out, "json_out")?;
        let list = store(dir)?.list(&filter(session))?;
        // SAFETY: checked by `arg_out`.
        unsafe { answer(out, &list) }
    })
}

/// One recording: `{"header": {asciicast v2 header}, "events": [{"t",
/// "kind", "data"}...], "desktop": null}`, `kind` one of `output`, `input`,
/// `resize`, `marker`. An RDP recording has no events to show as text:
/// `"events"` is empty and `"desktop"` is `{"width", "height", "duration",
/// "pdus"}` (its frames: `cpam_recording_frame`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_recording_read(
    data_dir: *const c_char,
    id: *const c_char,
    json_out: *mut *mut c_char,
) -> cpam_status {
    boundary(|| {
        // SAFETY: C strings per the header's contract.
        let (dir, id) = unsafe { (arg_str(data_dir, "data_dir")?, arg_str(id, "id")?) };
        let out = arg_out(json_out, "json_out")?;
        let recording = read_recording(&store(dir)?, &RecordingId::parse(id)?)?;
        // SAFETY: checked by `arg_out`.
        unsafe { answer(out, &recording) }
    })
}

/// The desktop of RDP recording `id` at `at_seconds` from its start, as a
/// PNG file: `*out_bytes` points to `*out_len` bytes, freed with
/// `cpam_bytes_free(*out_bytes, *out_len)`. `CPAM_NOT_FOUND` for an unknown
/// recording; `CPAM_INVALID_ARGUMENT` for a terminal recording or a time
/// outside it (`cpam_last_error_message` gives its length).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_recording_frame(
    data_dir: *const c_char,
    id: *const c_char,
    at_seconds: f64,
    out_bytes: *mut *mut u8,
    out_len: *mut usize,
) -> cpam_status {
    boundary(|| {
        // SAFETY: C strings per the header's contract.
        let (dir, id) = unsafe { (arg_str(data_dir, "data_dir")?, arg_str(id, "id")?) };
        let out_bytes = arg_out(out_bytes, "out_bytes")?;
        let out_len = arg_out(out_len, "out_len")?;
        let png = rdp_frame_png(&store(dir)?, &RecordingId::parse(id)?, at_seconds)?;
        let (ptr, len) = crate::bytes::into_c(png);
        // SAFETY: both checked by `arg_out`.
        unsafe {
            put(out_bytes, ptr);
            put(out_len, len);
        }
        Ok(())
    })
}

/// The keys and the mouse of RDP recording `id`'s client, decoded from its
/// input PDUs: `{"events": [{"t", "type", ...}], "pdus", "skipped",
/// "last_error"}`, `type` one of `key` (`scancode`, `down`), `unicode`
/// (`code`, `down`), `pointer` (`x`, `y`), `button` (`x`, `y`, `button`,
/// `down`), `wheel` (`x`, `y`, `delta`, `horizontal`), `relative_pointer`
/// (`dx`, `dy`), `relative_button` (`button`, `down`), `sync` (the lock
/// keys); input PDUs that do not decode are counted in `skipped`.
/// `CPAM_NOT_FOUND` for an unknown recording, `CPAM_INVALID_ARGUMENT` for a
/// terminal recording.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_recording_input(
    data_dir: *const c_char,
    id: *const c_char,
    json_out: *mut *mut c_char,
) -> cpam_status {
    boundary(|| {
        // SAFETY: C strings per the header's contract.
        let (dir, id) = unsafe { (arg_str(data_dir, "data_dir")?, arg_str(id, "id")?) };
        let out = arg_out(json_out, "json_out")?;
        let track = rdp_input(&store(dir)?, &RecordingId::parse(id)?)?;
        // SAFETY: checked by `arg_out`.
        unsafe { answer(out, &track) }
    })
}

/// Checks a recording's file, chunk chain and signed manifest. On success
/// `*json_out` is `{"id", "state", "size", "chunks", "signer"}`; a recording
/// edited, cut or appended to fails with `CPAM_RECORDING` and
/// `cpam_last_error_message` names what is wrong.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_recording_verify(
    data_dir: *const c_char,
    id: *const c_char,
    json_out: *mut *mut c_char,
) -> cpam_status {
    boundary(|| {
        // SAFETY: C strings per the header's contract.
        let (dir, id) = unsafe { (arg_str(data_dir, "data_dir")?, arg_str(id, "id")?) };
        let out = arg_out(json_out, "json_out")?;
        let verified = store(dir)?.verify(&RecordingId::parse(id)?)?;
        // SAFETY: checked by `arg_out`.
        unsafe { answer(out, &verified) }
    })
}

/// The recordings whose output shows `text`: a JSON array of `{"id",
/// "session_id", "times"}` (seconds into the recording).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_recordings_search(
    data_dir: *const c_char,
    text: *const c_char,
    json_out: *mut *mut c_char,
) -> cpam_status {
    boundary(|| {
        // SAFETY: C strings per the header's contract.
        let (dir, text) = unsafe { (arg_str(data_dir, "data_dir")?, arg_str(text, "text")?) };
        let out = arg_out(json_out, "json_out")?;
        let hits = store(dir)?.search(text, &RecordingFilter::default())?;
        // SAFETY: checked by `arg_out`.
        unsafe { answer(out, &hits) }
    })
}
