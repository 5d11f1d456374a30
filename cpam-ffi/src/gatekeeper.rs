//! `cpam_gatekeeper`: a gatekeeper embedded in the integrator's appliance.

use std::ffi::c_char;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cpam_core::model::Timestamp;
use cpam_core::tunnel::allow::AllowList;
use cpam_core::tunnel::gatekeeper::{self, Agent, GatekeeperState};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::boundary::{
    FfiResult, Rt, arg_opt_str, arg_out, arg_ref, arg_str, boundary, boundary_or, c_string,
    into_handle, put, take_handle,
};
use crate::event::{EventQueue, cpam_event, cpam_event_kind, pull};
use crate::status::{Failure, cpam_status};

/// How long `cpam_gatekeeper_stop` waits for the tunnel to close.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How often the switch file is checked for events.
const SWITCH_POLL: Duration = Duration::from_millis(100);

/// An embedded gatekeeper bound to one state dir. Owns its runtime.
#[derive(Debug)]
pub struct cpam_gatekeeper {
    rt: Rt,
    dir: PathBuf,
    running: Mutex<Option<Running>>,
    events: Arc<EventQueue>,
}

#[derive(Debug)]
struct Running {
    stop: CancellationToken,
    agent: JoinHandle<cpam_core::Result<()>>,
    watcher: JoinHandle<()>,
    online: watch::Receiver<bool>,
}

/// What `cpam_gatekeeper_status` reports (the tunnel and switch state).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct cpam_gatekeeper_state {
    /// The state dir holds a registration.
    pub registered: bool,
    /// `cpam_gatekeeper_run` was called and `cpam_gatekeeper_stop` was not.
    pub running: bool,
    /// The tunnel to the server is up now.
    pub online: bool,
    /// The customer's switch is off: sessions are refused and closed.
    pub disabled: bool,
    /// Space for fields added later (the struct's size stays the same); zero.
    pub _reserved: [u8; 12],
}

impl cpam_gatekeeper {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stop(&self) -> FfiResult {
        let Some(running) = self.lock().take() else {
            return Ok(());
        };
        running.stop.cancel();
        let result = self.rt.block_on(async {
            let agent = tokio::time::timeout(STOP_GRACE, running.agent).await;
            let _ = tokio::time::timeout(STOP_GRACE, running.watcher).await;
            agent
        });
        self.events.close();
        match result {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(e.into()),
            Ok(Err(join)) => Err(Failure::new(
                cpam_status::CPAM_INTERNAL,
                format!("the gatekeeper task failed: {join}"),
            )),
            Err(_) => Err(Failure::new(
                cpam_status::CPAM_TIMEOUT,
                "the gatekeeper did not stop within 5 s",
            )),
        }
    }
}

/// Reports online/offline and switch changes as events until the agent ends.
async fn watch_agent(
    dir: PathBuf,
    state: GatekeeperState,
    mut online: watch::Receiver<bool>,
    events: Arc<EventQueue>,
) {
    let id = state.gatekeeper_id.to_string();
    let emit = |kind: cpam_event_kind, name: &str, extra: serde_json::Value| {
        let mut ev = json!({ "type": name, "gatekeeper": id, "name": state.name,
                             "at": Timestamp::now().millis() });
        if let (Some(ev), Some(extra)) = (ev.as_object_mut(), extra.as_object()) {
            ev.extend(extra.clone());
        }
        events.push(kind, ev);
    };
    let mut was_online = false;
    let mut was = gatekeeper::Switch::read(&dir, Timestamp::now());
    let mut tick = tokio::time::interval(SWITCH_POLL);
    loop {
        tokio::select! {
            changed = online.changed() => {
                let now = changed.is_ok() && *online.borrow_and_update();
                if now != was_online {
                    was_online = now;
                    if now {
                        emit(cpam_event_kind::GatekeeperOnline, "gatekeeper_online", json!({}));
                    } else {
                        emit(cpam_event_kind::GatekeeperOffline, "gatekeeper_offline", json!({}));
                    }
                }
                if changed.is_err() {
                    return;
                }
            }
            _ = tick.tick() => {
                let now = gatekeeper::Switch::read(&dir, Timestamp::now());
                if now != was {
                    emit(cpam_event_kind::GatekeeperSwitch, "gatekeeper_switch", switch_json(&now));
                    was = now;
                }
            }
        }
    }
}

/// A switch event's fields: `disabled` (sessions refused now: switched off
/// or outside the opening hours), `switched_off`, `schedule`.
fn switch_json(switch: &gatekeeper::Switch) -> serde_json::Value {
    json!({
        "disabled": switch.closed,
        "switched_off": switch.switched_off,
        "schedule": switch.schedule,
    })
}

/// Creates a gatekeeper handle for `state_dir` (created on registration if
/// missing). Nothing is dialed until `cpam_gatekeeper_register` or
/// `cpam_gatekeeper_run`. Free it with `cpam_gatekeeper_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_gatekeeper_new(
    state_dir: *const c_char,
    out: *mut *mut cpam_gatekeeper,
) -> cpam_status {
    boundary(|| {
        // SAFETY: C strings and out-pointer per the header's contract.
        let dir = unsafe { arg_str(state_dir, "state_dir") }?;
        let out = arg_out(out, "out")?;
        if dir.is_empty() {
            return Err(Failure::new(
                cpam_status::CPAM_INVALID_ARGUMENT,
                "state_dir is empty",
            ));
        }
        let gk = cpam_gatekeeper {
            rt: Rt::new("gatekeeper")?,
            dir: PathBuf::from(dir),
            running: Mutex::new(None),
            events: Arc::new(EventQueue::default()),
        };
        // SAFETY: checked by `arg_out`.
        unsafe { put(out, into_handle(gk)) };
        Ok(())
    })
}

/// Registers with the one-time `code` an administrator issued
/// (`cpam-server gatekeeper add`), at `server` (`HOST:PORT`). With
/// `server_fingerprint` (`SHA256:...`, or NULL to trust on first use) the
/// server's key must match it. The key is pinned in the state dir. Blocks
/// until the server answered. A refused code is `CPAM_UNAUTHENTICATED`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_gatekeeper_register(
    gatekeeper: *const cpam_gatekeeper,
    server: *const c_char,
    code: *const c_char,
    server_fingerprint: *const c_char,
) -> cpam_status {
    boundary(|| {
        // SAFETY: handle and C strings per the header's contract.
        let (gk, server, code, fp) = unsafe {
            (
                arg_ref(gatekeeper, "gatekeeper")?,
                arg_str(server, "server")?,
                arg_str(code, "code")?,
                arg_opt_str(server_fingerprint, "server_fingerprint")?,
            )
        };
        gk.rt
            .block_on(gatekeeper::register(server, code, &gk.dir, fp))
            .map(|_| ())
            .map_err(Failure::from)
    })
}

/// Starts holding the tunnel in the background (on the handle's own
/// threads), reconnecting with backoff until `cpam_gatekeeper_stop`.
/// `allow` lists the targets the server may ask for, as space-separated
/// `CIDR:PORTS` rules (`"10.1.0.0/16:22,3389 192.168.1.5/32:443"`); an
/// empty list refuses every session. Returns once started; watch
/// `CPAM_EVENT_KIND_GATEKEEPER_ONLINE` or `cpam_gatekeeper_status`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_gatekeeper_run(
    gatekeeper: *const cpam_gatekeeper,
    allow: *const c_char,
) -> cpam_status {
    boundary(|| {
        // SAFETY: handle and C string per the header's contract.
        let (gk, allow) = unsafe { (arg_ref(gatekeeper, "gatekeeper")?, arg_str(allow, "allow")?) };
        let rules: Vec<&str> = allow.split_whitespace().collect();
        let allow = AllowList::parse(&rules)?;
        let mut running = gk.lock();
        if running.is_some() {
            return Err(Failure::new(
                cpam_status::CPAM_INVALID_ARGUMENT,
                "the gatekeeper is already running",
            ));
        }
        let agent = Agent::open(&gk.dir, allow)?;
        let online = agent.online();
        let state = agent.state().clone();
        let stop = CancellationToken::new();
        gk.events.reopen();
        let handle = gk.rt.handle();
        let watcher = handle.spawn(watch_agent(
            gk.dir.clone(),
            state,
            online.clone(),
            gk.events.clone(),
        ));
        let agent = handle.spawn(agent.run(stop.clone()));
        *running = Some(Running {
            stop,
            agent,
            watcher,
            online,
        });
        Ok(())
    })
}

/// Writes the gatekeeper's state to `*out`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_gatekeeper_status(
    gatekeeper: *const cpam_gatekeeper,
    out: *mut cpam_gatekeeper_state,
) -> cpam_status {
    boundary(|| {
        // SAFETY: handle per the header's contract.
        let gk = unsafe { arg_ref(gatekeeper, "gatekeeper") }?;
        let out = arg_out(out, "out")?;
        let running = gk.lock();
        let status = cpam_gatekeeper_state {
            registered: GatekeeperState::load(&gk.dir).is_ok(),
            running: running.is_some(),
            online: running.as_ref().is_some_and(|r| *r.online.borrow()),
            disabled: gatekeeper::is_disabled(&gk.dir),
            _reserved: [0; 12],
        };
        // SAFETY: checked by `arg_out`.
        unsafe { put(out, status) };
        Ok(())
    })
}

/// Writes to `*json_out` the registration kept in the state dir, as a JSON
/// object (`server`, `server_key`, `gatekeeper_id`, `name`,
/// `registered_at`); free it with `cpam_string_free`. `CPAM_NOT_FOUND` when
/// the gatekeeper is not registered.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_gatekeeper_info(
    gatekeeper: *const cpam_gatekeeper,
    json_out: *mut *mut c_char,
) -> cpam_status {
    boundary(|| {
        // SAFETY: handle per the header's contract.
        let gk = unsafe { arg_ref(gatekeeper, "gatekeeper") }?;
        let out = arg_out(json_out, "json_out")?;
        let state = GatekeeperState::load(&gk.dir)?;
        let text = serde_json::to_string(&state)
            .map_err(|e| Failure::new(cpam_status::CPAM_INTERNAL, e.to_string()))?;
        let text = c_string(text)?;
        // SAFETY: checked by `arg_out`.
        unsafe { put(out, text) };
        Ok(())
    })
}

/// The customer's switch: refuse new sessions and close the live ones. The
/// server learns it at once; it persists in the state dir.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_gatekeeper_disable(
    gatekeeper: *const cpam_gatekeeper,
) -> cpam_status {
    boundary(|| {
        // SAFETY: handle per the header's contract.
        let gk = unsafe { arg_ref(gatekeeper, "gatekeeper") }?;
        Ok(gatekeeper::set_disabled(&gk.dir, true)?)
    })
}

/// Turns the customer's switch back on: sessions are allowed again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_gatekeeper_enable(gatekeeper: *const cpam_gatekeeper) -> cpam_status {
    boundary(|| {
        // SAFETY: handle per the header's contract.
        let gk = unsafe { arg_ref(gatekeeper, "gatekeeper") }?;
        Ok(gatekeeper::set_disabled(&gk.dir, false)?)
    })
}

/// Waits up to `timeout_ms` (`CPAM_TIMEOUT_INFINITE`: no limit) for the next
/// event (online, offline, switch) and writes it to `*event`; free it with
/// `cpam_event_free`. `CPAM_TIMEOUT` when none came; `CPAM_CLOSED` once the
/// gatekeeper was stopped and every event was pulled.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_gatekeeper_next_event(
    gatekeeper: *const cpam_gatekeeper,
    timeout_ms: u32,
    event: *mut *mut cpam_event,
) -> cpam_status {
    boundary(|| {
        // SAFETY: handle per the header's contract.
        let gk = unsafe { arg_ref(gatekeeper, "gatekeeper") }?;
        pull(&gk.rt, &gk.events, timeout_ms, event)
    })
}

/// Closes the tunnel and stops reconnecting; blocks until done (at most 5 s).
/// Live sessions through this gatekeeper end. Stopping a gatekeeper that is
/// not running does nothing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_gatekeeper_stop(gatekeeper: *const cpam_gatekeeper) -> cpam_status {
    boundary(|| {
        // SAFETY: handle per the header's contract.
        unsafe { arg_ref(gatekeeper, "gatekeeper") }?.stop()
    })
}

/// Stops the gatekeeper if running and frees the handle. NULL is ignored.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_gatekeeper_free(gatekeeper: *mut cpam_gatekeeper) {
    boundary_or((), || {
        // SAFETY: NULL or a handle from `cpam_gatekeeper_new`, freed once.
        if let Some(gk) = unsafe { take_handle(gatekeeper) } {
            let _ = gk.stop();
        }
    })
}
