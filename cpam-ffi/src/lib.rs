//! The C ABI of cpam. `include/cpam.h` is generated from this crate by
//! cbindgen (see `cbindgen.toml`); `docs/c.md` is the tutorial.
//!
//! Every exported function runs its body through [`boundary`]'s one
//! boundary (panics caught, errors turned into a [`cpam_status`] and the
//! thread's last error, pointers checked for NULL, strings for UTF-8).
//! Top-level handles (gatekeeper, profile, hub, ipconnect) each own a tokio runtime;
//! calls block the calling C thread and events are pulled with a timeout.
//!
//! # Safety
//!
//! Every `unsafe extern "C"` function has the same contract, stated once in
//! the header: pointer arguments are NULL or valid (handles live, strings
//! NUL-terminated, buffers valid for the given length), and `_free` is
//! called once per handle and does not race with other calls on it.

#![allow(non_camel_case_types, clippy::missing_safety_doc)]

pub mod audit;
mod boundary;
pub mod bytes;
pub mod connect;
pub mod event;
mod gate;
pub mod gatekeeper;
pub mod hub;
pub mod ipconnect;
pub mod live;
pub mod recordings;
pub mod status;

use std::ffi::c_char;

pub use status::{cpam_status, last_error};

/// A `timeout_ms` that waits without limit.
pub const CPAM_TIMEOUT_INFINITE: u32 = u32::MAX;

/// The library version (`"0.1.0"`), a static string.
#[unsafe(no_mangle)]
pub extern "C" fn cpam_version() -> *const c_char {
    const VERSION: &std::ffi::CStr = match std::ffi::CStr::from_bytes_with_nul(
        concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes(),
    ) {
        Ok(v) => v,
        Err(_) => c"unknown",
    };
    boundary::boundary_or(c"unknown".as_ptr(), || VERSION.as_ptr())
}

/// Frees a string the library returned through a `char **` out-parameter.
/// NULL is ignored.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_string_free(s: *mut c_char) {
    boundary::boundary_or((), || {
        if !s.is_null() {
            // SAFETY: the caller passes a string this library made with
            // `CString::into_raw`, freed once.
            drop(unsafe { std::ffi::CString::from_raw(s) });
        }
    })
}
