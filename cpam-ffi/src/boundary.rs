//! The one boundary every exported function goes through: it catches panics,
//! turns errors into a status plus the thread's last error, and the argument
//! helpers check pointers for NULL and strings for UTF-8.

use std::ffi::{CStr, CString, c_char};
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use crate::status::{Failure, cpam_status, set_last_error};

/// What an exported body returns.
pub(crate) type FfiResult<T = ()> = Result<T, Failure>;

/// Runs `body` behind the C boundary: a panic becomes `CPAM_PANIC`, an error
/// its status; both leave a message for `cpam_last_error_message`.
pub(crate) fn boundary(body: impl FnOnce() -> FfiResult) -> cpam_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => cpam_status::CPAM_OK,
        Ok(Err(failure)) => {
            let status = failure.status;
            set_last_error(failure);
            status
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            set_last_error(Failure::new(
                cpam_status::CPAM_PANIC,
                format!("internal panic: {what}"),
            ));
            cpam_status::CPAM_PANIC
        }
    }
}

/// [`boundary`] for functions without a status (accessors, `_free`): a panic
/// yields `fallback`.
pub(crate) fn boundary_or<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

pub(crate) fn null(name: &str) -> Failure {
    Failure::new(
        cpam_status::CPAM_NULL_ARGUMENT,
        format!("argument `{name}` is NULL"),
    )
}

/// A required C string argument.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string valid for `'a`.
pub(crate) unsafe fn arg_str<'a>(ptr: *const c_char, name: &str) -> FfiResult<&'a str> {
    if ptr.is_null() {
        return Err(null(name));
    }
    // SAFETY: non-NULL, and the caller guarantees NUL termination.
    let cstr = unsafe { CStr::from_ptr(ptr) };
    cstr.to_str().map_err(|_| {
        Failure::new(
            cpam_status::CPAM_INVALID_UTF8,
            format!("argument `{name}` is not valid UTF-8"),
        )
    })
}

/// An optional C string argument (NULL means absent).
///
/// # Safety
/// As [`arg_str`].
pub(crate) unsafe fn arg_opt_str<'a>(ptr: *const c_char, name: &str) -> FfiResult<Option<&'a str>> {
    if ptr.is_null() {
        Ok(None)
    } else {
        // SAFETY: forwarded contract.
        unsafe { arg_str(ptr, name) }.map(Some)
    }
}

/// A required handle argument.
///
/// # Safety
/// `ptr` is NULL or a live handle of type `T` made by this library.
pub(crate) unsafe fn arg_ref<'a, T>(ptr: *const T, name: &str) -> FfiResult<&'a T> {
    // SAFETY: the caller guarantees a live handle when non-NULL.
    unsafe { ptr.as_ref() }.ok_or_else(|| null(name))
}

/// Checks an out-parameter; the value is written with [`put`] on success only.
pub(crate) fn arg_out<T>(ptr: *mut T, name: &str) -> FfiResult<*mut T> {
    if ptr.is_null() {
        Err(null(name))
    } else {
        Ok(ptr)
    }
}

/// Writes `value` to a checked out-parameter.
///
/// # Safety
/// `out` came from [`arg_out`] and is valid for writes of `T`.
pub(crate) unsafe fn put<T>(out: *mut T, value: T) {
    // SAFETY: checked non-NULL by `arg_out`; the caller guarantees validity.
    // `write` does not drop the (possibly uninitialised) old value.
    unsafe { out.write(value) }
}

/// Moves `value` to the heap and hands it to C as a handle.
pub(crate) fn into_handle<T>(value: T) -> *mut T {
    Box::into_raw(Box::new(value))
}

/// Takes back a handle made by [`into_handle`]; NULL yields `None`.
///
/// # Safety
/// `ptr` is NULL or a handle from [`into_handle`] not yet taken back.
pub(crate) unsafe fn take_handle<T>(ptr: *mut T) -> Option<Box<T>> {
    if ptr.is_null() {
        None
    } else {
        // SAFETY: the caller guarantees it came from `Box::into_raw` once.
        Some(unsafe { Box::from_raw(ptr) })
    }
}

/// A string handed to C, freed with `cpam_string_free`.
pub(crate) fn c_string(text: String) -> FfiResult<*mut c_char> {
    CString::new(text)
        .map(CString::into_raw)
        .map_err(|_| Failure::new(cpam_status::CPAM_INTERNAL, "string contains a NUL byte"))
}

/// Copies `text` NUL-terminated into the caller's buffer, or fails with
/// `CPAM_BUFFER_TOO_SMALL` without writing anything.
///
/// # Safety
/// `buf` is valid for `len` bytes and `written` (checked) for one `usize`.
pub(crate) unsafe fn copy_out(
    text: &str,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> FfiResult {
    if buf.is_null() {
        return Err(null("buf"));
    }
    let written = arg_out(written, "written")?;
    if text.len() >= len {
        return Err(Failure::new(
            cpam_status::CPAM_BUFFER_TOO_SMALL,
            format!(
                "the answer needs {} bytes, the buffer has {len}",
                text.len() + 1
            ),
        ));
    }
    // SAFETY: `text.len() + 1 <= len` bytes fit in `buf`.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len());
        *buf.add(text.len()) = 0;
        put(written, text.len());
    }
    Ok(())
}

/// `timeout_ms` as a duration; `CPAM_TIMEOUT_INFINITE` is none.
pub(crate) fn timeout(timeout_ms: u32) -> Option<Duration> {
    (timeout_ms != crate::CPAM_TIMEOUT_INFINITE)
        .then(|| Duration::from_millis(u64::from(timeout_ms)))
}

/// A tokio runtime owned by one top-level handle and shared (by `Arc`) with
/// the handles made from it, so a stream outlives the profile it came from.
#[derive(Debug, Clone)]
pub(crate) struct Rt(Arc<RtInner>);

#[derive(Debug)]
struct RtInner(Option<tokio::runtime::Runtime>);

impl Drop for RtInner {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

impl Rt {
    /// A runtime with two worker threads named `cpam-<what>`.
    pub(crate) fn new(what: &str) -> FfiResult<Rt> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("cpam-{what}"))
            .enable_all()
            .build()
            .map_err(|e| {
                Failure::new(
                    cpam_status::CPAM_IO,
                    format!("cannot start the {what} runtime: {e}"),
                )
            })?;
        Ok(Rt(Arc::new(RtInner(Some(rt)))))
    }

    pub(crate) fn handle(&self) -> &tokio::runtime::Handle {
        match &self.0.0 {
            Some(rt) => rt.handle(),
            None => unreachable!("the runtime lives until the last handle is freed"),
        }
    }

    /// Runs `fut` to completion on the calling (C) thread.
    pub(crate) fn block_on<F: Future>(&self, fut: F) -> F::Output {
        self.handle().block_on(fut)
    }

    /// Runs `fut` with an optional time limit; `CPAM_TIMEOUT` when it runs out.
    pub(crate) fn block_on_timeout<F: Future>(
        &self,
        limit: Option<Duration>,
        what: &str,
        fut: F,
    ) -> FfiResult<F::Output> {
        match limit {
            None => Ok(self.block_on(fut)),
            Some(limit) => self
                .block_on(async { tokio::time::timeout(limit, fut).await })
                .map_err(|_| {
                    Failure::new(
                        cpam_status::CPAM_TIMEOUT,
                        format!("{what} timed out after {} ms", limit.as_millis()),
                    )
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_cpam_panic_with_a_message() {
        let st = boundary(|| panic!("boom"));
        assert_eq!(st, cpam_status::CPAM_PANIC);
        let last = crate::status::last_error().expect("a last error");
        assert_eq!(last.message, "internal panic: boom");
        assert_eq!(boundary_or(7, || panic!("again")), 7);
    }

    #[test]
    fn copy_out_writes_nothing_when_the_buffer_is_too_small() {
        let mut buf = [1 as c_char; 4];
        let mut written = 99;
        // SAFETY: a 4-byte buffer and a valid usize.
        let r = unsafe { copy_out("abcd", buf.as_mut_ptr(), buf.len(), &mut written) };
        assert_eq!(
            r.map_err(|f| f.status).err(),
            Some(cpam_status::CPAM_BUFFER_TOO_SMALL)
        );
        assert_eq!((buf, written), ([1; 4], 99));
        // SAFETY: as above.
        unsafe { copy_out("abc", buf.as_mut_ptr(), buf.len(), &mut written) }.unwrap();
        assert_eq!((buf, written), ([97, 98, 99, 0], 3));
    }
}
