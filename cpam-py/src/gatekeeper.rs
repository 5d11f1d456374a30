//! The embedded gatekeeper: register with a one-time code, run the tunnel in
//! the background, report its state and events, and flip the customer switch.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cpam_core::model::Timestamp;
use cpam_core::tunnel::allow::AllowList;
use cpam_core::tunnel::gatekeeper::{self, Agent, GatekeeperState};
use cpam_core::{Error, Result};
use pyo3::prelude::*;
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::errors::to_py;
use crate::rt::{EventQueue, Json, awaitable, next_event, runtime, wait};

/// How often the customer switch file is looked at for events.
const SWITCH_POLL: Duration = Duration::from_millis(100);

/// Redeems the one-time `code` at `server` and writes the gatekeeper's key
/// and state into `state_dir`; returns the registration state.
#[pyfunction]
#[pyo3(signature = (server, code, state_dir, server_fingerprint = None))]
pub fn register_gatekeeper(
    py: Python<'_>,
    server: String,
    code: String,
    state_dir: PathBuf,
    server_fingerprint: Option<String>,
) -> PyResult<Json> {
    wait(py, register(server, code, state_dir, server_fingerprint))
}

/// `register_gatekeeper()` for asyncio.
#[pyfunction]
#[pyo3(signature = (server, code, state_dir, server_fingerprint = None))]
pub fn register_gatekeeper_async(
    py: Python<'_>,
    server: String,
    code: String,
    state_dir: PathBuf,
    server_fingerprint: Option<String>,
) -> PyResult<Bound<'_, PyAny>> {
    awaitable(py, register(server, code, state_dir, server_fingerprint))
}

async fn register(
    server: String,
    code: String,
    dir: PathBuf,
    fingerprint: Option<String>,
) -> Result<Json> {
    let state = gatekeeper::register(&server, &code, &dir, fingerprint.as_deref()).await?;
    Json::of(&state)
}

#[derive(Debug)]
struct Running {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// A registered gatekeeper, run in the background of this process.
#[pyclass(module = "cpam", frozen)]
#[derive(Debug)]
pub struct Gatekeeper {
    dir: PathBuf,
    allow: AllowList,
    state: GatekeeperState,
    running: Mutex<Option<Running>>,
    online: Mutex<Option<watch::Receiver<bool>>>,
    events_tx: mpsc::UnboundedSender<Json>,
    events: EventQueue,
}

/// An event as the C ABI reports it: `type`, `gatekeeper` (id), `name`, `at`.
fn event(state: &GatekeeperState, kind: &str, extra: serde_json::Value) -> Json {
    let mut v = json!({
        "type": kind,
        "gatekeeper": state.gatekeeper_id,
        "name": state.name,
        "at": Timestamp::now().millis(),
    });
    if let (Some(map), serde_json::Value::Object(extra)) = (v.as_object_mut(), extra) {
        map.extend(extra);
    }
    Json(v)
}

impl Gatekeeper {
    fn stop_task(&self) -> Option<tokio::task::JoinHandle<()>> {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()?;
        running.stop.cancel();
        Some(running.task)
    }

    fn is_running(&self) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|r| !r.task.is_finished())
    }
}

async fn join(task: Option<tokio::task::JoinHandle<()>>) -> Result<()> {
    if let Some(task) = task {
        task.await
            .map_err(|e| Error::internal(format!("the gatekeeper's task failed: {e}")))?;
    }
    Ok(())
}

/// Reports online/offline and switch changes until the agent is gone (its
/// last online/offline change included).
async fn watch_agent(
    dir: PathBuf,
    state: GatekeeperState,
    mut online: watch::Receiver<bool>,
    tx: mpsc::UnboundedSender<Json>,
) {
    let mut was = gatekeeper::Switch::read(&dir, Timestamp::now());
    let mut poll = tokio::time::interval(SWITCH_POLL);
    loop {
        tokio::select! {
            changed = online.changed() => {
                if changed.is_err() { return; }
                let up = *online.borrow_and_update();
                let kind = if up { "gatekeeper_online" } else { "gatekeeper_offline" };
                let _ = tx.send(event(&state, kind, json!({})));
            }
            _ = poll.tick() => {
                let now = gatekeeper::Switch::read(&dir, Timestamp::now());
                if now != was {
                    // `disabled`: sessions are refused now (switched off, or
                    // outside the customer's opening hours).
                    let fields = json!({
                        "disabled": now.closed,
                        "switched_off": now.switched_off,
                        "schedule": now.schedule,
                    });
                    let _ = tx.send(event(&state, "gatekeeper_switch", fields));
                    was = now;
                }
            }
        }
    }
}

#[pymethods]
impl Gatekeeper {
    /// Opens the state dir written by `register_gatekeeper`; `allow` is the
    /// allow-list (`CIDR:PORTS` rules, e.g. `"10.1.0.0/16:22,3389"`).
    #[new]
    #[pyo3(signature = (state_dir, allow))]
    fn new(state_dir: PathBuf, allow: Vec<String>) -> PyResult<Self> {
        let allow = AllowList::parse(&allow).map_err(to_py)?;
        let state = GatekeeperState::load(&state_dir).map_err(to_py)?;
        let (events_tx, rx) = mpsc::unbounded_channel();
        Ok(Self {
            dir: state_dir,
            allow,
            state,
            running: Mutex::new(None),
            online: Mutex::new(None),
            events_tx,
            events: Arc::new(tokio::sync::Mutex::new(rx)),
        })
    }

    /// The gatekeeper's id (`gk_...`).
    #[getter]
    fn id(&self) -> String {
        self.state.gatekeeper_id.0.clone()
    }

    /// The gatekeeper's name.
    #[getter]
    fn name(&self) -> String {
        self.state.name.clone()
    }

    /// Starts holding the tunnel in the background (reconnecting with
    /// backoff). Starting a running gatekeeper is an error.
    fn start(&self) -> PyResult<()> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if running.as_ref().is_some_and(|r| !r.task.is_finished()) {
            return Err(to_py(Error::invalid("the gatekeeper is already running")));
        }
        let agent = Agent::open(&self.dir, self.allow.clone()).map_err(to_py)?;
        let online = agent.online();
        *self.online.lock().unwrap_or_else(|p| p.into_inner()) = Some(online.clone());
        let stop = CancellationToken::new();
        let tx = self.events_tx.clone();
        let dir = self.dir.clone();
        let state = self.state.clone();
        let task = runtime()?.spawn({
            let stop = stop.clone();
            async move {
                let watcher = tokio::spawn(watch_agent(dir, state.clone(), online, tx.clone()));
                let result = agent.run(stop).await;
                let _ = watcher.await;
                let error = result.err().map(|e| e.to_string());
                let _ = tx.send(event(
                    &state,
                    "gatekeeper_stopped",
                    json!({ "error": error }),
                ));
            }
        });
        *running = Some(Running { stop, task });
        Ok(())
    }

    /// Id, name, server, whether it runs, is online, and is disabled.
    fn status(&self) -> Json {
        let online = self
            .online
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|rx| *rx.borrow());
        Json(json!({
            "id": self.state.gatekeeper_id,
            "name": self.state.name,
            "server": self.state.server,
            "registered_at": self.state.registered_at,
            "running": self.is_running(),
            "online": online,
            "disabled": gatekeeper::is_disabled(&self.dir),
        }))
    }

    /// The customer's switch on: refuse new sessions and close live ones.
    fn disable(&self) -> PyResult<()> {
        gatekeeper::set_disabled(&self.dir, true).map_err(to_py)
    }

    /// The customer's switch off: accept sessions again.
    fn enable(&self) -> PyResult<()> {
        gatekeeper::set_disabled(&self.dir, false).map_err(to_py)
    }

    /// The next event (`gatekeeper_online`, `gatekeeper_offline`,
    /// `gatekeeper_switch`, `gatekeeper_stopped`), or `None`
    /// after `timeout` seconds (`None`: wait as long as it takes).
    #[pyo3(signature = (timeout = None))]
    fn next_event(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Json>> {
        wait(py, next_event(self.events.clone(), timeout))
    }

    /// `next_event()` for asyncio.
    #[pyo3(signature = (timeout = None))]
    fn next_event_async<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        awaitable(py, next_event(self.events.clone(), timeout))
    }

    /// Closes the tunnel and its sessions and waits for the agent to stop.
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        let task = self.stop_task();
        wait(py, join(task))
    }

    /// `stop()` for asyncio.
    fn stop_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let task = self.stop_task();
        awaitable(py, join(task))
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _ty: Option<Bound<'_, PyAny>>,
        _value: Option<Bound<'_, PyAny>>,
        _tb: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        self.stop(py)
    }

    fn __aenter__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let me = slf.unbind();
        awaitable(py, async move { Ok(me) })
    }

    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _ty: Option<Bound<'py, PyAny>>,
        _value: Option<Bound<'py, PyAny>>,
        _tb: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.stop_async(py)
    }

    fn __repr__(&self) -> String {
        format!(
            "Gatekeeper(name={:?}, id={:?}, server={:?})",
            self.state.name, self.state.gatekeeper_id.0, self.state.server
        )
    }
}

impl Drop for Gatekeeper {
    fn drop(&mut self) {
        if let Some(r) = self.running.get_mut().ok().and_then(Option::take) {
            r.stop.cancel();
        }
    }
}
