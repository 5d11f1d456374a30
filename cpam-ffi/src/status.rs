//! `cpam_status`, derived from [`cpam_core::ErrorKind`], and the thread-local
//! last error behind `cpam_last_error_message`.

use std::cell::RefCell;
use std::ffi::c_char;

use cpam_core::ErrorKind;

use crate::boundary::boundary_or;

/// The result of every fallible call. `CPAM_OK` is 0; codes are never reused.
///
/// 1..99 are conditions of the C boundary itself; 100 and up mirror
/// cpam's `ErrorKind` one to one (the Python package's `CpamError`
/// subclasses derive from the same kinds), so a refused session is
/// `CPAM_PERMISSION_DENIED` here and the `permission_denied` kind in Python.
///
/// cbindgen:prefix-with-name=false
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum cpam_status {
    /// Success.
    CPAM_OK = 0,
    /// A required pointer argument was NULL.
    CPAM_NULL_ARGUMENT = 1,
    /// A string argument was not valid UTF-8.
    CPAM_INVALID_UTF8 = 2,
    /// A bug inside the library panicked; the call had no effect that can be relied on.
    CPAM_PANIC = 3,
    /// The caller's buffer is too small for the answer; nothing was written.
    CPAM_BUFFER_TOO_SMALL = 4,
    /// The handle was stopped: no more events or data will come.
    CPAM_CLOSED = 5,
    /// `ErrorKind::InvalidArgument`: a value is malformed or out of range.
    CPAM_INVALID_ARGUMENT = 100,
    /// `ErrorKind::NotFound`: the named object does not exist.
    CPAM_NOT_FOUND = 101,
    /// `ErrorKind::PermissionDenied`: known but not allowed (e.g. no grant now).
    CPAM_PERMISSION_DENIED = 102,
    /// `ErrorKind::AccessExpired`: the grant expired or is outside its window.
    CPAM_ACCESS_EXPIRED = 103,
    /// `ErrorKind::Unauthenticated`: the caller could not be authenticated.
    CPAM_UNAUTHENTICATED = 104,
    /// `ErrorKind::TunnelUnavailable`: the server or gatekeeper is not reachable.
    CPAM_TUNNEL_UNAVAILABLE = 105,
    /// `ErrorKind::Io`: an operating-system I/O error.
    CPAM_IO = 106,
    /// `ErrorKind::Protocol`: the peer violated the protocol.
    CPAM_PROTOCOL = 107,
    /// `ErrorKind::Storage`: the database failed.
    CPAM_STORAGE = 108,
    /// `ErrorKind::Recording`: the recording sink failed.
    CPAM_RECORDING = 109,
    /// `ErrorKind::Timeout`: the operation did not finish in time.
    CPAM_TIMEOUT = 110,
    /// `ErrorKind::Cancelled`: the operation was cancelled.
    CPAM_CANCELLED = 111,
    /// `ErrorKind::Internal`: an unexpected internal state.
    CPAM_INTERNAL = 112,
    /// `ErrorKind::Conflict`: the object's current state does not allow this
    /// (e.g. a name already taken, a gatekeeper not registered yet, a session
    /// no longer live).
    CPAM_CONFLICT = 113,
}

impl cpam_status {
    /// The status of an error kind: its stable code ([`ErrorKind::code`]).
    ///
    /// No catch-all arm: a kind added to cpam-core does not compile here
    /// until it has a status of its own.
    pub fn from_kind(kind: ErrorKind) -> cpam_status {
        match kind {
            ErrorKind::InvalidArgument => cpam_status::CPAM_INVALID_ARGUMENT,
            ErrorKind::NotFound => cpam_status::CPAM_NOT_FOUND,
            ErrorKind::PermissionDenied => cpam_status::CPAM_PERMISSION_DENIED,
            ErrorKind::AccessExpired => cpam_status::CPAM_ACCESS_EXPIRED,
            ErrorKind::Unauthenticated => cpam_status::CPAM_UNAUTHENTICATED,
            ErrorKind::TunnelUnavailable => cpam_status::CPAM_TUNNEL_UNAVAILABLE,
            ErrorKind::Io => cpam_status::CPAM_IO,
            ErrorKind::Protocol => cpam_status::CPAM_PROTOCOL,
            ErrorKind::Storage => cpam_status::CPAM_STORAGE,
            ErrorKind::Recording => cpam_status::CPAM_RECORDING,
            ErrorKind::Timeout => cpam_status::CPAM_TIMEOUT,
            ErrorKind::Cancelled => cpam_status::CPAM_CANCELLED,
            ErrorKind::Internal => cpam_status::CPAM_INTERNAL,
            ErrorKind::Conflict => cpam_status::CPAM_CONFLICT,
        }
    }

    /// The error kind of a status that mirrors one (100 and up).
    pub fn kind(self) -> Option<ErrorKind> {
        u16::try_from(self as u32)
            .ok()
            .and_then(ErrorKind::from_code)
    }

    /// The status's stable name: the `ErrorKind` name for mirrored kinds.
    pub fn name(self) -> &'static str {
        match self.kind() {
            Some(kind) => kind.as_str(),
            None => self
                .c_name()
                .to_str()
                .unwrap_or_else(|_| unreachable!("status names are ASCII")),
        }
    }

    fn c_name(self) -> &'static std::ffi::CStr {
        match self {
            cpam_status::CPAM_OK => c"ok",
            cpam_status::CPAM_NULL_ARGUMENT => c"null_argument",
            cpam_status::CPAM_INVALID_UTF8 => c"invalid_utf8",
            cpam_status::CPAM_PANIC => c"panic",
            cpam_status::CPAM_BUFFER_TOO_SMALL => c"buffer_too_small",
            cpam_status::CPAM_CLOSED => c"closed",
            cpam_status::CPAM_INVALID_ARGUMENT => c"invalid_argument",
            cpam_status::CPAM_NOT_FOUND => c"not_found",
            cpam_status::CPAM_PERMISSION_DENIED => c"permission_denied",
            cpam_status::CPAM_ACCESS_EXPIRED => c"access_expired",
            cpam_status::CPAM_UNAUTHENTICATED => c"unauthenticated",
            cpam_status::CPAM_TUNNEL_UNAVAILABLE => c"tunnel_unavailable",
            cpam_status::CPAM_IO => c"io",
            cpam_status::CPAM_PROTOCOL => c"protocol",
            cpam_status::CPAM_STORAGE => c"storage",
            cpam_status::CPAM_RECORDING => c"recording",
            cpam_status::CPAM_TIMEOUT => c"timeout",
            cpam_status::CPAM_CANCELLED => c"cancelled",
            cpam_status::CPAM_INTERNAL => c"internal",
            cpam_status::CPAM_CONFLICT => c"conflict",
        }
    }
}

/// A failed call: its status and message.
#[derive(Debug, Clone)]
pub struct Failure {
    pub status: cpam_status,
    pub message: String,
}

impl Failure {
    pub fn new(status: cpam_status, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }
}

impl From<cpam_core::Error> for Failure {
    fn from(e: cpam_core::Error) -> Failure {
        Failure::new(cpam_status::from_kind(e.kind()), e.to_string())
    }
}

thread_local! {
    static LAST_ERROR: RefCell<Option<Failure>> = const { RefCell::new(None) };
}

/// Remembers `failure` as this thread's last error.
pub(crate) fn set_last_error(failure: Failure) {
    LAST_ERROR.with(|slot| *slot.borrow_mut() = Some(failure));
}

/// This thread's last error.
pub fn last_error() -> Option<Failure> {
    LAST_ERROR.with(|slot| slot.borrow().clone())
}

/// The stable name of `status` (`"ok"`, `"permission_denied"`, ...), the
/// same names cpam uses for error kinds in JSON and Python. Never NULL; a
/// static string the caller must not free.
#[unsafe(no_mangle)]
pub extern "C" fn cpam_status_name(status: cpam_status) -> *const c_char {
    boundary_or(c"internal".as_ptr(), || status.c_name().as_ptr())
}

/// Copies the message of the last failed call on this thread into `buf` as a
/// NUL-terminated string, truncated (at a character boundary) to fit `len`
/// bytes, and writes its length without the NUL to `*written`. The message
/// is empty when no call failed on this thread. The message stays until the
/// next failure on the same thread; successful calls do not clear it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_last_error_message(
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> cpam_status {
    // `boundary_or`, not `boundary`: a failure here must not replace the
    // message the caller asks for.
    boundary_or(cpam_status::CPAM_PANIC, || {
        if buf.is_null() || written.is_null() {
            return cpam_status::CPAM_NULL_ARGUMENT;
        }
        if len == 0 {
            return cpam_status::CPAM_BUFFER_TOO_SMALL;
        }
        let message = last_error().map(|f| f.message).unwrap_or_default();
        let mut n = message.len().min(len - 1);
        while !message.is_char_boundary(n) {
            n -= 1;
        }
        // SAFETY: the caller guarantees `buf` is valid for `len` bytes and
        // `written` for one `size_t`; `n < len`, so `n + 1` bytes fit.
        unsafe {
            std::ptr::copy_nonoverlapping(message.as_ptr(), buf.cast::<u8>(), n);
            *buf.add(n) = 0;
            *written = n;
        }
        cpam_status::CPAM_OK
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every status the C header declares, boundary codes included.
    const STATUSES: [cpam_status; 20] = {
        use cpam_status::*;
        [
            CPAM_OK,
            CPAM_NULL_ARGUMENT,
            CPAM_INVALID_UTF8,
            CPAM_PANIC,
            CPAM_BUFFER_TOO_SMALL,
            CPAM_CLOSED,
            CPAM_INVALID_ARGUMENT,
            CPAM_NOT_FOUND,
            CPAM_PERMISSION_DENIED,
            CPAM_ACCESS_EXPIRED,
            CPAM_UNAUTHENTICATED,
            CPAM_TUNNEL_UNAVAILABLE,
            CPAM_IO,
            CPAM_PROTOCOL,
            CPAM_STORAGE,
            CPAM_RECORDING,
            CPAM_TIMEOUT,
            CPAM_CANCELLED,
            CPAM_INTERNAL,
            CPAM_CONFLICT,
        ]
    };

    #[test]
    fn every_kind_has_its_own_status_with_its_code_and_name() {
        let mut seen = std::collections::HashSet::new();
        for &kind in ErrorKind::ALL {
            let status = cpam_status::from_kind(kind);
            assert!(seen.insert(status as u32), "{kind} shares a status");
            assert_eq!(
                status as u32,
                u32::from(kind.code()),
                "{kind}: status number"
            );
            assert_eq!(status.kind(), Some(kind));
            assert_eq!(status.name(), kind.as_str());
            assert_eq!(status.c_name().to_str().ok(), Some(kind.as_str()));
        }
    }

    #[test]
    fn boundary_statuses_stay_below_the_kinds() {
        for status in STATUSES {
            match status.kind() {
                Some(kind) => assert_eq!(cpam_status::from_kind(kind), status),
                None => assert!((status as u32) < 100, "{status:?} mirrors no kind"),
            }
            assert_eq!(status.name().as_bytes(), status.c_name().to_bytes());
        }
        let mirrored = STATUSES.iter().filter(|s| s.kind().is_some()).count();
        assert_eq!(mirrored, ErrorKind::ALL.len(), "a status per kind, no more");
    }

    /// `include/cpam.h` declares every kind's status with its code (the
    /// `header` test checks the header is what cbindgen makes of this file).
    #[test]
    fn the_header_declares_every_kind_with_its_code() {
        let header = include_str!("../../include/cpam.h");
        for &kind in ErrorKind::ALL {
            let line = format!(
                "CPAM_{} = {},",
                kind.as_str().to_ascii_uppercase(),
                kind.code()
            );
            assert!(
                header.lines().any(|l| l.trim() == line),
                "include/cpam.h lacks `{line}`"
            );
        }
    }

    #[test]
    fn last_error_message_truncates_at_a_character_boundary() {
        set_last_error(Failure::new(cpam_status::CPAM_NOT_FOUND, "héllo"));
        let mut buf = [0x7f as c_char; 3];
        let mut written = 99;
        // SAFETY: `buf` holds 3 bytes and `written` is a valid usize.
        let status = unsafe { cpam_last_error_message(buf.as_mut_ptr(), 3, &mut written) };
        assert_eq!(status, cpam_status::CPAM_OK);
        assert_eq!(written, 1, "`é` is two bytes and does not fit after `h`");
        assert_eq!(buf[..2], [b'h' as c_char, 0]);
    }
}
