//! A hub's live sessions from C: listed, watched frame by frame and
//! terminated; and the vault's credentials kept. Every change and every
//! watch is audited with the `actor` the caller names (the name of the
//! person or process acting in the integrator's product).

use std::ffi::{CString, c_char};

use cpam_core::Secret;
use cpam_core::record::WatchFrame;
use cpam_core::server::LiveWatch;
use cpam_core::vault::CredentialSecret;

use crate::boundary::{
    FfiResult, Rt, arg_out, arg_ref, arg_str, boundary, boundary_or, c_string, into_handle, put,
    take_handle,
};
use crate::hub::cpam_hub;
use crate::status::{Failure, cpam_status};

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

/// The sessions live on the hub: a JSON array of sessions (`id`,
/// `user_name`, `customer_id`, `service_name`, `protocol`, `started_at`,
/// `until`, `bytes_up`, `bytes_down`, ...). Free it with `cpam_string_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_hub_sessions(
    hub: *const cpam_hub,
    json_out: *mut *mut c_char,
) -> cpam_status {
    boundary(|| {
        // SAFETY: handle per the header's contract.
        let hub = unsafe { arg_ref(hub, "hub") }?;
        let out = arg_out(json_out, "json_out")?;
        // SAFETY: checked by `arg_out`.
        unsafe { answer(out, &hub.server().live_sessions()) }
    })
}

/// Ends live session `session_id` now. `actor` and `reason` (required) are
/// audited (`admin.session.terminate`) and the reason is shown to the user.
/// `CPAM_NOT_FOUND` when the session is not live on this hub.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_hub_terminate(
    hub: *const cpam_hub,
    session_id: *const c_char,
    actor: *const c_char,
    reason: *const c_char,
) -> cpam_status {
    boundary(|| {
        // SAFETY: handle and C strings per the header's contract.
        let (hub, id, actor, reason) = unsafe {
            (
                arg_ref(hub, "hub")?,
                arg_str(session_id, "session_id")?,
                arg_str(actor, "actor")?,
                arg_str(reason, "reason")?,
            )
        };
        hub.rt()
            .block_on(hub.server().terminate(id, actor, reason))?;
        Ok(())
    })
}

/// A live session being watched; see `cpam_hub_watch`.
#[derive(Debug)]
pub struct cpam_watch {
    rt: Rt,
    watch: tokio::sync::Mutex<LiveWatch>,
}

/// What a `cpam_watch_frame` is.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum cpam_watch_frame_kind {
    /// Redraw everything: the terminal's size, and bytes that paint the
    /// current screen on a blank one (sent first, and again after the
    /// watcher fell behind).
    Snapshot = 1,
    /// Bytes the target wrote to the terminal.
    Output = 2,
    /// The terminal was resized.
    Resize = 3,
    /// The session ended; `cpam_watch_frame_reason` says why.
    End = 4,
    /// A remote desktop, all of it: `cols`×`rows` is its size in pixels,
    /// the data a PNG (sent first, and again after the watcher fell
    /// behind).
    Desktop = 5,
    /// A region of a remote desktop changed: the data is a PNG whose top
    /// left corner is at (`cols`, `rows`) in pixels.
    Tile = 6,
}

/// One frame of a watched session; free it with `cpam_watch_frame_free`.
#[derive(Debug)]
pub struct cpam_watch_frame {
    kind: cpam_watch_frame_kind,
    cols: u16,
    rows: u16,
    data: Vec<u8>,
    reason: Option<CString>,
}

impl From<WatchFrame> for cpam_watch_frame {
    fn from(frame: WatchFrame) -> Self {
        use cpam_watch_frame_kind::*;
        let blank = |kind| cpam_watch_frame {
            kind,
            cols: 0,
            rows: 0,
            data: Vec::new(),
            reason: None,
        };
        match frame {
            WatchFrame::Snapshot { cols, rows, data } => cpam_watch_frame {
                cols,
                rows,
                data,
                ..blank(Snapshot)
            },
            WatchFrame::Output(data) => cpam_watch_frame {
                data: data.to_vec(),
                ..blank(Output)
            },
            WatchFrame::Resize { cols, rows } => cpam_watch_frame {
                cols,
                rows,
                ..blank(Resize)
            },
            WatchFrame::Desktop { width, height, png } => cpam_watch_frame {
                cols: width,
                rows: height,
                data: png.to_vec(),
                ..blank(Desktop)
            },
            WatchFrame::Tile { x, y, png } => cpam_watch_frame {
                cols: x,
                rows: y,
                data: png.to_vec(),
                ..blank(Tile)
            },
            WatchFrame::End(reason) => cpam_watch_frame {
                reason: Some(CString::new(reason.replace('\0', " ")).unwrap_or_default()),
                ..blank(End)
            },
        }
    }
}

/// Starts watching live terminal session `session_id` as `actor` (audited
/// as `session.watch.start`, and `session.watch.stop` when the watch ends
/// or is freed). What the user types is never shown; the target's output
/// is. `CPAM_NOT_FOUND` when the session is not live on this hub,
/// `CPAM_CONFLICT` when it has no terminal open. Free it with
/// `cpam_watch_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_hub_watch(
    hub: *const cpam_hub,
    session_id: *const c_char,
    actor: *const c_char,
    out: *mut *mut cpam_watch,
) -> cpam_status {
    boundary(|| {
        // SAFETY: handle and C strings per the header's contract.
        let (hub, id, actor) = unsafe {
            (
                arg_ref(hub, "hub")?,
                arg_str(session_id, "session_id")?,
                arg_str(actor, "actor")?,
            )
        };
        let out = arg_out(out, "out")?;
        let watch = hub.rt().block_on(hub.server().watch(id, actor))?;
        let handle = cpam_watch {
            rt: hub.rt().clone(),
            watch: tokio::sync::Mutex::new(watch),
        };
        // SAFETY: checked by `arg_out`.
        unsafe { put(out, into_handle(handle)) };
        Ok(())
    })
}

/// Waits up to `timeout_ms` (`CPAM_TIMEOUT_INFINITE`: no limit) for the
/// next frame: first a snapshot, then output and resizes, and a
/// `CPAM_WATCH_FRAME_KIND_END` frame when the session ends. `CPAM_TIMEOUT` when none
/// came; `CPAM_CLOSED` after the end frame. Calls on one watch from
/// several threads take turns.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_watch_next(
    watch: *const cpam_watch,
    timeout_ms: u32,
    frame: *mut *mut cpam_watch_frame,
) -> cpam_status {
    boundary(|| {
        // SAFETY: handle per the header's contract.
        let watch = unsafe { arg_ref(watch, "watch") }?;
        let out = arg_out(frame, "frame")?;
        let next = watch.rt.block_on_timeout(
            crate::boundary::timeout(timeout_ms),
            "waiting for a frame",
            async { watch.watch.lock().await.next().await },
        )?;
        let next = next.ok_or_else(|| {
            Failure::new(
                cpam_status::CPAM_CLOSED,
                "the session ended; no more frames",
            )
        })?;
        // SAFETY: checked by `arg_out`.
        unsafe { put(out, into_handle(cpam_watch_frame::from(next))) };
        Ok(())
    })
}

/// Stops watching (audited) and frees the watch. NULL is ignored.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_watch_free(watch: *mut cpam_watch) {
    boundary_or((), || {
        // SAFETY: NULL or a handle from `cpam_hub_watch`, freed once.
        if let Some(watch) = unsafe { take_handle(watch) } {
            let rt = watch.rt.clone();
            // The stop record is written on the hub's runtime.
            let _guard = rt.handle().enter();
            drop(watch);
        }
    })
}

/// The kind of `frame` (`CPAM_WATCH_FRAME_KIND_END` if `frame` is NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_watch_frame_get_kind(
    frame: *const cpam_watch_frame,
) -> cpam_watch_frame_kind {
    // SAFETY: NULL or a frame from `cpam_watch_next`.
    unsafe { frame.as_ref() }.map_or(cpam_watch_frame_kind::End, |f| f.kind)
}

/// The bytes of a snapshot or output frame: `*data` points into the frame
/// (valid until it is freed) and `*len` is their count (0 for other kinds).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_watch_frame_get_data(
    frame: *const cpam_watch_frame,
    data: *mut *const u8,
    len: *mut usize,
) -> cpam_status {
    boundary(|| {
        // SAFETY: handle per the header's contract.
        let frame = unsafe { arg_ref(frame, "frame") }?;
        let (data, len) = (arg_out(data, "data")?, arg_out(len, "len")?);
        // SAFETY: both checked by `arg_out`.
        unsafe {
            put(data, frame.data.as_ptr());
            put(len, frame.data.len());
        }
        Ok(())
    })
}

/// The terminal size a snapshot or resize frame carries (0×0 for others).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_watch_frame_get_size(
    frame: *const cpam_watch_frame,
    cols: *mut u16,
    rows: *mut u16,
) -> cpam_status {
    boundary(|| {
        // SAFETY: handle per the header's contract.
        let frame = unsafe { arg_ref(frame, "frame") }?;
        let (cols, rows) = (arg_out(cols, "cols")?, arg_out(rows, "rows")?);
        // SAFETY: both checked by `arg_out`.
        unsafe {
            put(cols, frame.cols);
            put(rows, frame.rows);
        }
        Ok(())
    })
}

/// Why the session ended (`terminated: <reason>`, `closed`, `expired`,
/// ...) for an end frame, NUL-terminated and owned by the frame; NULL for
/// other kinds.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_watch_frame_get_reason(
    frame: *const cpam_watch_frame,
) -> *const c_char {
    // SAFETY: NULL or a frame from `cpam_watch_next`.
    unsafe { frame.as_ref() }
        .and_then(|f| f.reason.as_ref())
        .map_or(std::ptr::null(), |r| r.as_ptr())
}

/// Frees a frame. NULL is ignored.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_watch_frame_free(frame: *mut cpam_watch_frame) {
    boundary_or((), || {
        // SAFETY: NULL or a frame from `cpam_watch_next`, freed once.
        drop(unsafe { take_handle(frame) });
    })
}

/// Stores (or replaces) the credential of service `service`
/// (`SERVICE@CUSTOMER`) in the hub's vault as `actor` (audited, never with
/// the secret): `kind` is a `cpam_credential_kind`, `secret` the password
/// or the OpenSSH private key (PEM text). The hub must have been opened
/// over a data dir whose vault it can unseal (`vault.key`, or
/// `CPAM_VAULT_PASSPHRASE`); otherwise `CPAM_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_hub_vault_set(
    hub: *const cpam_hub,
    service: *const c_char,
    username: *const c_char,
    kind: u32,
    secret: *const c_char,
    actor: *const c_char,
) -> cpam_status {
    boundary(|| {
        // SAFETY: handle and C strings per the header's contract.
        let (hub, service, username, secret, actor) = unsafe {
            (
                arg_ref(hub, "hub")?,
                arg_str(service, "service")?,
                arg_str(username, "username")?,
                arg_str(secret, "secret")?,
                arg_str(actor, "actor")?,
            )
        };
        let secret = Secret::new(secret.to_string());
        let secret = match kind {
            k if k == crate::hub::cpam_credential_kind::Password as u32 => {
                CredentialSecret::Password(secret)
            }
            k if k == crate::hub::cpam_credential_kind::PrivateKey as u32 => {
                CredentialSecret::PrivateKey(secret)
            }
            other => {
                return Err(Failure::new(
                    cpam_status::CPAM_INVALID_ARGUMENT,
                    format!("credential kind {other} is not a cpam_credential_kind"),
                ));
            }
        };
        hub.rt().block_on(
            hub.server()
                .set_credential(service, username, secret, actor),
        )?;
        Ok(())
    })
}

/// Removes the credential of service `service` (`SERVICE@CUSTOMER`) from
/// the hub's vault as `actor` (audited). `CPAM_NOT_FOUND` when it has none.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_hub_vault_remove(
    hub: *const cpam_hub,
    service: *const c_char,
    actor: *const c_char,
) -> cpam_status {
    boundary(|| {
        // SAFETY: handle and C strings per the header's contract.
        let (hub, service, actor) = unsafe {
            (
                arg_ref(hub, "hub")?,
                arg_str(service, "service")?,
                arg_str(actor, "actor")?,
            )
        };
        hub.rt()
            .block_on(hub.server().remove_credential(service, actor))?;
        Ok(())
    })
}

/// What the hub's vault holds, never a secret: a JSON array of `{"service"
/// (SERVICE@CUSTOMER), "username", "kind", "key_version", "updated_at",
/// "updated_by", "max_checkout_secs"}`. Free it with `cpam_string_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_hub_vault_list(
    hub: *const cpam_hub,
    json_out: *mut *mut c_char,
) -> cpam_status {
    boundary(|| {
        // SAFETY: handle per the header's contract.
        let hub = unsafe { arg_ref(hub, "hub") }?;
        let out = arg_out(json_out, "json_out")?;
        let list = hub.rt().block_on(hub.server().credentials())?;
        // SAFETY: checked by `arg_out`.
        unsafe { answer(out, &list) }
    })
}
