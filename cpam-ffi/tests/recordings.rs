//! `cpam_recording_frame` and `cpam_bytes_free` from Rust: what a request
//! for a frame that cannot be made answers, outputs untouched. The frames
//! of a real RDP session are checked from C by `tests/rdp_sdk_e2e.rs`.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::ffi::{CStr, CString, c_char};
use std::ptr;

use cpam::bytes::cpam_bytes_free;
use cpam::recordings::cpam_recording_frame;
use cpam::status::*;
use cpam_core::model::Timestamp;
use cpam_core::record::{Header, RecordingId, RecordingStore, SealState};
use cpam_core::server::DataDir;

fn last_message() -> String {
    let mut buf = [0 as c_char; 512];
    let mut n = 0;
    // SAFETY: a 512-byte buffer and a valid `usize`.
    let st = unsafe { cpam_last_error_message(buf.as_mut_ptr(), buf.len(), &mut n) };
    assert_eq!(st, cpam_status::CPAM_OK);
    // SAFETY: NUL-terminated by the call.
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// `cpam_recording_frame` of `id` at `at`: its status, and whether the
/// outputs were left alone.
fn frame(dir: &CString, id: &str, at: f64) -> (cpam_status, bool) {
    let id = CString::new(id).unwrap();
    let sentinel = ptr::dangling_mut::<u8>();
    let (mut bytes, mut len) = (sentinel, 7usize);
    // SAFETY: C strings and valid out-parameters.
    let st = unsafe { cpam_recording_frame(dir.as_ptr(), id.as_ptr(), at, &mut bytes, &mut len) };
    (st, bytes == sentinel && len == 7)
}

#[test]
fn a_frame_that_cannot_be_made_says_why_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let data = rt
        .block_on(DataDir::init(tmp.path(), "127.0.0.1:0", None))
        .unwrap();
    let store = data.recordings().unwrap();
    let term = RecordingId::parse("ses_term.0").unwrap();
    let mut w = store.create(&term, Timestamp(1_800_000_000_000)).unwrap();
    w.append(Header::new(80, 24).to_line().as_bytes()).unwrap();
    w.seal(Timestamp(1_800_000_001_000), SealState::Complete)
        .unwrap();
    let dir = CString::new(tmp.path().to_str().unwrap()).unwrap();

    assert_eq!(
        frame(&dir, "ses_term.0", 0.0),
        (cpam_status::CPAM_INVALID_ARGUMENT, true)
    );
    assert!(
        last_message().contains("not an RDP recording"),
        "{}",
        last_message()
    );
    assert_eq!(
        frame(&dir, "ses_none.0", 0.0),
        (cpam_status::CPAM_NOT_FOUND, true)
    );
    assert_eq!(
        frame(&dir, "not an id", 0.0),
        (cpam_status::CPAM_INVALID_ARGUMENT, true)
    );
    let id = CString::new("ses_term.0").unwrap();
    let mut len = 0usize;
    // SAFETY: a NULL out-parameter is what is being tested.
    let st =
        unsafe { cpam_recording_frame(dir.as_ptr(), id.as_ptr(), 0.0, ptr::null_mut(), &mut len) };
    assert_eq!(st, cpam_status::CPAM_NULL_ARGUMENT);
    // SAFETY: NULL is ignored.
    unsafe { cpam_bytes_free(ptr::null_mut(), 0) };
}
