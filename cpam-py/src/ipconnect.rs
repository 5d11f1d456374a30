//! IP Connect in a Python program: every service of a set of profiles at a
//! local address and name (loopback listeners or the TUN driver, as the
//! server's mode says), with its status and change events.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cpam_core::ipmap::service::{STATUS_FILE, Status, load_or_create_key};
use cpam_core::ipmap::{HostsFile, IpConnect as Service, IpConnectConfig, NoNames, Resolver};
use cpam_core::tunnel::connect::ConnectClient;
use cpam_core::tunnel::profile::Profile;
use cpam_core::{Error, Result};
use pyo3::prelude::*;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::errors::to_py;
use crate::rt::{EventQueue, Json, awaitable, next_event, runtime, wait};

#[derive(Debug)]
struct Running {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<()>>,
}

/// The IP Connect service over one or more profiles, run in the background
/// of this process.
#[pyclass(module = "cpam", frozen)]
#[derive(Debug)]
pub struct IpConnect {
    service: Arc<Service>,
    running: Mutex<Option<Running>>,
    events_tx: mpsc::UnboundedSender<Json>,
    events: EventQueue,
}

/// Turns status changes into events until the service ends.
async fn watch_status(mut status: watch::Receiver<Status>, tx: mpsc::UnboundedSender<Json>) {
    let mut before = Status::default();
    while status.changed().await.is_ok() {
        let now = status.borrow_and_update().clone();
        for e in now.events_since(&before) {
            if let Ok(j) = Json::of(&e) {
                let _ = tx.send(j);
            }
        }
        before = now;
    }
}

impl IpConnect {
    fn stop_task(&self) -> Option<Running> {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()?;
        running.stop.cancel();
        Some(running)
    }
}

async fn join(running: Option<Running>) -> Result<()> {
    if let Some(r) = running {
        r.task
            .await
            .map_err(|e| Error::internal(format!("the IP Connect task failed: {e}")))??;
    }
    Ok(())
}

#[pymethods]
impl IpConnect {
    /// `profiles`: profile files (one per customer or gatekeeper).
    /// `state_dir` keeps the address key (stable addresses) and the status;
    /// `hosts_file` gets the names (none by default); `range`,
    /// `driver_range`, `device` and `poll` (seconds) as `cpam-connect
    /// ipconnect run` takes them.
    #[new]
    #[pyo3(signature = (profiles, state_dir, hosts_file = None, range = None, driver_range = None, device = None, poll = 5.0))]
    fn new(
        profiles: Vec<PathBuf>,
        state_dir: PathBuf,
        hosts_file: Option<PathBuf>,
        range: Option<String>,
        driver_range: Option<String>,
        device: Option<String>,
        poll: f64,
    ) -> PyResult<Self> {
        let build = || -> Result<Self> {
            if profiles.is_empty() {
                return Err(Error::invalid("give at least one profile"));
            }
            let mut clients = Vec::new();
            for p in &profiles {
                clients.push(ConnectClient::new(Profile::load(p)?)?);
            }
            let resolver: Arc<dyn Resolver> = match hosts_file {
                Some(path) => Arc::new(HostsFile::new(path)),
                None => Arc::new(NoNames),
            };
            let mut config = IpConnectConfig::new(load_or_create_key(&state_dir)?, resolver);
            config.status_file = Some(state_dir.join(STATUS_FILE));
            if let Some(r) = range {
                config.range = r.parse()?;
            }
            if let Some(r) = driver_range {
                config.driver_range = r.parse()?;
            }
            if let Some(d) = device {
                config.device = d;
            }
            if !(0.1..=3600.0).contains(&poll) {
                return Err(Error::invalid("poll must be between 0.1 and 3600 seconds"));
            }
            config.poll = Duration::from_secs_f64(poll);
            let (events_tx, rx) = mpsc::unbounded_channel();
            Ok(Self {
                service: Arc::new(Service::new(clients, config)),
                running: Mutex::new(None),
                events_tx,
                events: Arc::new(tokio::sync::Mutex::new(rx)),
            })
        };
        build().map_err(to_py)
    }

    /// Starts the service in the background. Starting it twice is an error.
    fn start(&self) -> PyResult<()> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if running.as_ref().is_some_and(|r| !r.task.is_finished()) {
            return Err(to_py(Error::invalid("IP Connect is already running")));
        }
        let stop = CancellationToken::new();
        let rt = runtime()?;
        rt.spawn(watch_status(
            self.service.subscribe(),
            self.events_tx.clone(),
        ));
        let service = self.service.clone();
        let token = stop.clone();
        let task = rt.spawn(async move { service.run(token).await });
        *running = Some(Running { stop, task });
        Ok(())
    }

    /// The status: `driver`, `driver_error`, `profiles` (each with its
    /// `mode`), `mappings` (`customer`, `service`, `local`, `hostnames`,
    /// `mode`, ...) and `skipped`.
    fn status(&self) -> PyResult<Json> {
        Json::of(&*self.service.subscribe().borrow()).map_err(to_py)
    }

    /// The mappings alone (the status's `mappings`).
    fn mappings(&self) -> PyResult<Json> {
        Json::of(&self.service.subscribe().borrow().mappings).map_err(to_py)
    }

    /// The next event (`mode`, `mapping_added`, `mapping_removed`,
    /// `driver`), or `None` after `timeout` seconds.
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

    /// Stops: listeners and the driver close, live sessions end, the names
    /// and the status file are removed.
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        let running = self.stop_task();
        wait(py, join(running))
    }

    /// `stop()` for asyncio.
    fn stop_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let running = self.stop_task();
        awaitable(py, join(running))
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

    fn __repr__(&self) -> String {
        format!("IpConnect({:?})", self.service)
    }
}

impl Drop for IpConnect {
    fn drop(&mut self) {
        if let Some(r) = self.running.get_mut().ok().and_then(Option::take) {
            r.stop.cancel();
        }
    }
}
