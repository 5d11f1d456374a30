//! Byte buffers handed to C (`uint8_t *` and a length), freed with
//! `cpam_bytes_free`.

use crate::boundary::boundary_or;

/// Hands `bytes` to C: a pointer to exactly `len` bytes (a boxed slice, so
/// its capacity is its length), taken back by [`cpam_bytes_free`].
pub(crate) fn into_c(bytes: Vec<u8>) -> (*mut u8, usize) {
    let boxed = bytes.into_boxed_slice();
    let len = boxed.len();
    (Box::into_raw(boxed).cast::<u8>(), len)
}

/// Frees bytes the library returned through a `uint8_t **` out-parameter,
/// with the length it returned with them. NULL is ignored.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_bytes_free(bytes: *mut u8, len: usize) {
    boundary_or((), || {
        if !bytes.is_null() {
            // SAFETY: the caller passes a pointer and length this library
            // made with `into_c`, freed once.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(bytes, len)) });
        }
    })
}
