//! Pulled events: each top-level handle keeps a bounded queue that C drains
//! with `cpam_<noun>_next_event(handle, timeout_ms, &event)`. No library
//! thread ever calls into C to deliver an event.

use std::collections::VecDeque;
use std::ffi::{CString, c_char};
use std::sync::Mutex;

use tokio::sync::Notify;

use crate::boundary::{
    FfiResult, Rt, arg_out, arg_ref, boundary_or, into_handle, put, take_handle,
};
use crate::status::{Failure, cpam_status};

/// How many undelivered events a handle keeps; older ones are dropped first
/// and reported by one `CPAM_EVENT_KIND_EVENTS_LOST` event.
pub(crate) const QUEUE_CAPACITY: usize = 4096;

/// What an event is about. Its JSON (`cpam_event_get_json`) has a `type` field
/// with the same name in snake_case (`"gatekeeper_online"`, ...).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum cpam_event_kind {
    /// A gatekeeper's tunnel came up. JSON: `gatekeeper`, `at` (ms since the epoch), and `customer` on a hub.
    GatekeeperOnline = 1,
    /// A gatekeeper's tunnel went down.
    GatekeeperOffline = 2,
    /// The customer's switch changed. JSON: `disabled` (bool).
    GatekeeperSwitch = 3,
    /// A session started (hub). JSON: `session` (id, user_name, service_name, target, ...).
    SessionStarted = 4,
    /// A session ended (hub). JSON: `session` with `end_reason`, byte counts.
    SessionEnded = 5,
    /// A session was refused (hub). JSON: `user`, `service`, `kind` (the error kind name), `reason`.
    SessionRefused = 6,
    /// Events were dropped because nobody pulled them. JSON: `lost` (count).
    EventsLost = 7,
    /// IP Connect: a profile's running mode changed. JSON: `customer`, `gatekeeper`, `mode`, `note`.
    IpConnectMode = 8,
    /// IP Connect: a mapping appeared. JSON: `mapping` (`customer`, `service`, `local`, `hostnames`, `mode`, ...).
    IpConnectMappingAdded = 9,
    /// IP Connect: a mapping went away. JSON: `mapping`.
    IpConnectMappingRemoved = 10,
    /// IP Connect: the driver started or stopped. JSON: `running` (range and device, or null), `error`.
    IpConnectDriver = 11,
    /// Something the user did in a live session (hub), as the Admin Log
    /// records it. JSON: `session_id`, `customer`, `user`, `action` (e.g.
    /// `session.file`: a file moved, with `path`, `direction`, `size`,
    /// `sha256`, `result` in `detail`), `detail`, `at`.
    SessionActivity = 12,
}

/// One event, owned by the caller until `cpam_event_free`.
#[derive(Debug)]
pub struct cpam_event {
    kind: cpam_event_kind,
    json: CString,
}

impl cpam_event {
    pub(crate) fn new(kind: cpam_event_kind, json: &serde_json::Value) -> cpam_event {
        // serde_json never emits a NUL byte unescaped.
        let json = CString::new(json.to_string()).unwrap_or_default();
        cpam_event { kind, json }
    }

    /// The kind (for Rust tests).
    pub fn kind(&self) -> cpam_event_kind {
        self.kind
    }

    /// The JSON text (for Rust tests).
    pub fn json(&self) -> &str {
        self.json.to_str().unwrap_or_default()
    }
}

#[derive(Debug, Default)]
struct QueueState {
    events: VecDeque<cpam_event>,
    lost: u64,
    closed: bool,
}

/// A bounded queue of events with an async, time-limited pull.
#[derive(Debug, Default)]
pub(crate) struct EventQueue {
    state: Mutex<QueueState>,
    notify: Notify,
}

impl EventQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an event, dropping the oldest when full.
    pub(crate) fn push(&self, kind: cpam_event_kind, json: serde_json::Value) {
        {
            let mut state = self.lock();
            if state.closed {
                return;
            }
            if state.events.len() >= QUEUE_CAPACITY {
                state.events.pop_front();
                state.lost += 1;
            }
            state.events.push_back(cpam_event::new(kind, &json));
        }
        self.notify.notify_one();
    }

    /// Records events lost upstream (e.g. a lagging broadcast receiver).
    pub(crate) fn lost(&self, n: u64) {
        self.lock().lost += n;
        self.notify.notify_one();
    }

    /// No more events will be pushed; pulls drain what is left, then end.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_waiters();
        self.notify.notify_one();
    }

    /// Accepts events again after [`EventQueue::close`].
    pub(crate) fn reopen(&self) {
        self.lock().closed = false;
    }

    /// The next event; `None` once closed and drained.
    pub(crate) async fn next(&self) -> Option<cpam_event> {
        loop {
            {
                let mut state = self.lock();
                if state.lost > 0 {
                    let lost = std::mem::take(&mut state.lost);
                    return Some(cpam_event::new(
                        cpam_event_kind::EventsLost,
                        &serde_json::json!({ "type": "events_lost", "lost": lost }),
                    ));
                }
                if let Some(ev) = state.events.pop_front() {
                    return Some(ev);
                }
                if state.closed {
                    return None;
                }
            }
            self.notify.notified().await;
        }
    }
}

/// The body of every `cpam_<noun>_next_event`.
pub(crate) fn pull(
    rt: &Rt,
    queue: &EventQueue,
    timeout_ms: u32,
    out: *mut *mut cpam_event,
) -> FfiResult {
    let out = arg_out(out, "event")?;
    let event = rt
        .block_on_timeout(
            crate::boundary::timeout(timeout_ms),
            "waiting for an event",
            queue.next(),
        )?
        .ok_or_else(|| {
            Failure::new(
                cpam_status::CPAM_CLOSED,
                "the handle was stopped; no more events",
            )
        })?;
    // SAFETY: `out` was checked by `arg_out`.
    unsafe { put(out, into_handle(event)) };
    Ok(())
}

/// The kind of `event` (`CPAM_EVENT_KIND_EVENTS_LOST` if `event` is NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_event_get_kind(event: *const cpam_event) -> cpam_event_kind {
    boundary_or(cpam_event_kind::EventsLost, || {
        // SAFETY: NULL or a live event from `*_next_event`.
        unsafe { arg_ref(event, "event") }.map_or(cpam_event_kind::EventsLost, |e| e.kind)
    })
}

/// The event as a NUL-terminated JSON object, valid until `cpam_event_free`;
/// NULL if `event` is NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_event_get_json(event: *const cpam_event) -> *const c_char {
    boundary_or(std::ptr::null(), || {
        // SAFETY: NULL or a live event from `*_next_event`.
        unsafe { arg_ref(event, "event") }.map_or(std::ptr::null(), |e| e.json.as_ptr())
    })
}

/// Frees an event. NULL is ignored.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_event_free(event: *mut cpam_event) {
    boundary_or((), || {
        // SAFETY: NULL or an event from `*_next_event`, freed once.
        drop(unsafe { take_handle(event) });
    })
}
