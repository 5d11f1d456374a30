//! `cpam_ipconnect`: the IP Connect service embedded in the integrator's
//! program: every service of a set of profiles at a local address and name
//! (loopback listeners or the TUN driver, as the server's mode says).

use std::ffi::c_char;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cpam_core::ipmap::service::{STATUS_FILE, Status, load_or_create_key};
use cpam_core::ipmap::{HostsFile, IpConnect, IpConnectConfig, NoNames, Resolver};
use cpam_core::tunnel::connect::ConnectClient;
use cpam_core::tunnel::profile::Profile;
use serde::Deserialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::boundary::{
    FfiResult, Rt, arg_opt_str, arg_out, arg_ref, arg_str, boundary, boundary_or, c_string,
    into_handle, put, take_handle,
};
use crate::event::{EventQueue, cpam_event, cpam_event_kind, pull};
use crate::status::{Failure, cpam_status};

/// How long `cpam_ipconnect_stop` waits for listeners, the driver and live
/// sessions to end.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The options of `cpam_ipconnect_new`, as JSON.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    /// Keeps the address key (stable addresses) and the status file.
    state_dir: Option<PathBuf>,
    /// The hosts file whose `# BEGIN cpam` block names the mappings
    /// (default: no names).
    hosts_file: Option<PathBuf>,
    range: Option<String>,
    driver_range: Option<String>,
    device: Option<String>,
    poll_ms: Option<u64>,
}

/// The IP Connect service over one or more profiles. Owns its runtime.
#[derive(Debug)]
pub struct cpam_ipconnect {
    rt: Rt,
    service: Arc<IpConnect>,
    running: Mutex<Option<Running>>,
    events: Arc<EventQueue>,
}

#[derive(Debug)]
struct Running {
    stop: CancellationToken,
    task: JoinHandle<cpam_core::Result<()>>,
    watcher: JoinHandle<()>,
}

impl cpam_ipconnect {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stop(&self) -> FfiResult {
        let Some(running) = self.lock().take() else {
            return Ok(());
        };
        running.stop.cancel();
        let result = self.rt.block_on(async {
            let task = tokio::time::timeout(STOP_GRACE, running.task).await;
            let _ = tokio::time::timeout(STOP_GRACE, running.watcher).await;
            task
        });
        self.events.close();
        match result {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(e.into()),
            Ok(Err(join)) => Err(Failure::new(
                cpam_status::CPAM_INTERNAL,
                format!("the IP Connect task failed: {join}"),
            )),
            Err(_) => Err(Failure::new(
                cpam_status::CPAM_TIMEOUT,
                "IP Connect did not stop within 10 s",
            )),
        }
    }
}

/// Turns every status change into events until the service ends.
async fn watch_status(mut status: watch::Receiver<Status>, events: Arc<EventQueue>) {
    let mut before = Status::default();
    while status.changed().await.is_ok() {
        let now = status.borrow_and_update().clone();
        for e in now.events_since(&before) {
            let kind = match &e {
                cpam_core::ipmap::service::Event::Mode { .. } => cpam_event_kind::IpConnectMode,
                cpam_core::ipmap::service::Event::MappingAdded { .. } => {
                    cpam_event_kind::IpConnectMappingAdded
                }
                cpam_core::ipmap::service::Event::MappingRemoved { .. } => {
                    cpam_event_kind::IpConnectMappingRemoved
                }
                cpam_core::ipmap::service::Event::Driver { .. } => cpam_event_kind::IpConnectDriver,
            };
            events.push(kind, serde_json::to_value(&e).unwrap_or_default());
        }
        before = now;
    }
}

fn config(options: Options) -> cpam_core::Result<IpConnectConfig> {
    let state_dir = options
        .state_dir
        .unwrap_or_else(|| PathBuf::from("cpam-ipconnect"));
    let resolver: Arc<dyn Resolver> = match options.hosts_file {
        Some(path) => Arc::new(HostsFile::new(path)),
        None => Arc::new(NoNames),
    };
    let mut config = IpConnectConfig::new(load_or_create_key(&state_dir)?, resolver);
    config.status_file = Some(state_dir.join(STATUS_FILE));
    if let Some(r) = options.range {
        config.range = r.parse()?;
    }
    if let Some(r) = options.driver_range {
        config.driver_range = r.parse()?;
    }
    if let Some(d) = options.device {
        config.device = d;
    }
    if let Some(ms) = options.poll_ms {
        config.poll = Duration::from_millis(ms.max(100));
    }
    Ok(config)
}

/// Creates the service over the profile files listed in `profiles`
/// (newline-separated paths). `options_json` is NULL or a JSON object:
/// `state_dir` (the address key and status; default `./cpam-ipconnect`),
/// `hosts_file` (names in its `# BEGIN cpam` block; default: no names),
/// `range`, `driver_range`, `device` (the TUN device), `poll_ms`. Nothing
/// runs until `cpam_ipconnect_start`. Free it with `cpam_ipconnect_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_ipconnect_new(
    profiles: *const c_char,
    options_json: *const c_char,
    out: *mut *mut cpam_ipconnect,
) -> cpam_status {
    boundary(|| {
        // SAFETY: C strings and out-pointer per the header's contract.
        let (profiles, options) = unsafe {
            (
                arg_str(profiles, "profiles")?,
                arg_opt_str(options_json, "options_json")?,
            )
        };
        let out = arg_out(out, "out")?;
        let options: Options = match options {
            Some(text) => serde_json::from_str(text).map_err(|e| {
                Failure::new(
                    cpam_status::CPAM_INVALID_ARGUMENT,
                    format!("options_json: {e}"),
                )
            })?,
            None => Options::default(),
        };
        let mut clients = Vec::new();
        for path in profiles.lines().map(str::trim).filter(|l| !l.is_empty()) {
            clients.push(ConnectClient::new(Profile::load(Path::new(path))?)?);
        }
        if clients.is_empty() {
            return Err(Failure::new(
                cpam_status::CPAM_INVALID_ARGUMENT,
                "profiles lists no profile file",
            ));
        }
        let handle = cpam_ipconnect {
            rt: Rt::new("ipconnect")?,
            service: Arc::new(IpConnect::new(clients, config(options)?)),
            running: Mutex::new(None),
            events: Arc::new(EventQueue::default()),
        };
        // SAFETY: checked by `arg_out`.
        unsafe { put(out, into_handle(handle)) };
        Ok(())
    })
}

/// Starts the service in the background (on the handle's own threads).
/// Returns at once; watch the events or `cpam_ipconnect_status`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_ipconnect_start(ipconnect: *const cpam_ipconnect) -> cpam_status {
    boundary(|| {
        // SAFETY: handle per the header's contract.
        let ipc = unsafe { arg_ref(ipconnect, "ipconnect") }?;
        let mut running = ipc.lock();
        if running.is_some() {
            return Err(Failure::new(
                cpam_status::CPAM_INVALID_ARGUMENT,
                "IP Connect is already running",
            ));
        }
        let stop = CancellationToken::new();
        ipc.events.reopen();
        let handle = ipc.rt.handle();
        let watcher = handle.spawn(watch_status(ipc.service.subscribe(), ipc.events.clone()));
        let service = ipc.service.clone();
        let token = stop.clone();
        let task = handle.spawn(async move { service.run(token).await });
        *running = Some(Running {
            stop,
            task,
            watcher,
        });
        Ok(())
    })
}

/// Writes to `*json_out` the status as a JSON object: `range`, `driver`
/// (the driver's range and device while it runs), `driver_error`,
/// `profiles` (`customer`, `mode`, `note`, `error`), `mappings`
/// (`customer`, `service`, `target`, `local`, `hostnames`, `mode`,
/// `error`) and `skipped`. Free it with `cpam_string_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_ipconnect_status(
    ipconnect: *const cpam_ipconnect,
    json_out: *mut *mut c_char,
) -> cpam_status {
    boundary(|| {
        // SAFETY: handle per the header's contract.
        let ipc = unsafe { arg_ref(ipconnect, "ipconnect") }?;
        let out = arg_out(json_out, "json_out")?;
        let status = ipc.service.subscribe().borrow().clone();
        let text = serde_json::to_string(&status)
            .map_err(|e| Failure::new(cpam_status::CPAM_INTERNAL, e.to_string()))?;
        let text = c_string(text)?;
        // SAFETY: checked by `arg_out`.
        unsafe { put(out, text) };
        Ok(())
    })
}

/// Waits up to `timeout_ms` (`CPAM_TIMEOUT_INFINITE`: no limit) for the next
/// event (a profile's mode, a mapping added or removed, the driver) and
/// writes it to `*event`; free it with `cpam_event_free`. `CPAM_TIMEOUT`
/// when none came; `CPAM_CLOSED` once stopped and every event was pulled.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_ipconnect_next_event(
    ipconnect: *const cpam_ipconnect,
    timeout_ms: u32,
    event: *mut *mut cpam_event,
) -> cpam_status {
    boundary(|| {
        // SAFETY: handle per the header's contract.
        let ipc = unsafe { arg_ref(ipconnect, "ipconnect") }?;
        pull(&ipc.rt, &ipc.events, timeout_ms, event)
    })
}

/// Stops the service: listeners and the driver close, live sessions end,
/// the names and the status file are removed. Blocks until done (at most
/// 10 s). Stopping a service that is not running does nothing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_ipconnect_stop(ipconnect: *const cpam_ipconnect) -> cpam_status {
    boundary(|| {
        // SAFETY: handle per the header's contract.
        unsafe { arg_ref(ipconnect, "ipconnect") }?.stop()
    })
}

/// Stops the service if running and frees the handle. NULL is ignored.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_ipconnect_free(ipconnect: *mut cpam_ipconnect) {
    boundary_or((), || {
        // SAFETY: NULL or a handle from `cpam_ipconnect_new`, freed once.
        if let Some(ipc) = unsafe { take_handle(ipconnect) } {
            let _ = ipc.stop();
        }
    })
}
