//! The process-wide tokio runtime and the two ways Python waits on it.
//!
//! Blocking calls ([`wait`]) run their future on the runtime and wait for
//! the result with the GIL released, in short slices between which they check
//! for signals, so Ctrl-C raises `KeyboardInterrupt` (and cancels the
//! future) within a tenth of a second. Their asyncio twins ([`awaitable`])
//! hand the same future to `pyo3-async-runtimes`, which completes an asyncio
//! future on the caller's event loop; cancelling that future drops ours.

use std::future::Future;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use tokio::runtime::Runtime;

use crate::errors::{InternalError, to_py};

/// How long a blocking call waits before it checks for signals again.
const SIGNAL_SLICE: Duration = Duration::from_millis(100);

/// The process the runtime's threads live in.
static RUNTIME_PID: OnceLock<u32> = OnceLock::new();

/// The runtime every handle's tasks run on (shared with the asyncio bridge).
///
/// A forked child inherits the runtime's state but not its threads, so
/// there it refuses (like obstore) instead of hanging.
pub fn runtime() -> PyResult<&'static Runtime> {
    let pid = *RUNTIME_PID.get_or_init(std::process::id);
    if pid != std::process::id() {
        return Err(to_py(cpam_core::Error::internal(
            "cpam was started before this process forked and its threads did not survive the \
             fork; use cpam only after forking (multiprocessing's `spawn` or `forkserver`)",
        )));
    }
    Ok(pyo3_async_runtimes::tokio::get_runtime())
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `fut` on the runtime and waits for it without the GIL, staying
/// interruptible: a pending signal's exception (e.g. `KeyboardInterrupt`)
/// cancels the future and is raised.
pub fn wait<F, T>(py: Python<'_>, fut: F) -> PyResult<T>
where
    F: Future<Output = cpam_core::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let (tx, mut rx) = mpsc::sync_channel(1);
    let _task = AbortOnDrop(runtime()?.spawn(async move {
        let _ = tx.send(fut.await);
    }));
    loop {
        let (back, got) = py.detach(move || {
            let got = rx.recv_timeout(SIGNAL_SLICE);
            (rx, got)
        });
        rx = back;
        match got {
            Ok(result) => return result.map_err(to_py),
            Err(RecvTimeoutError::Timeout) => py.check_signals()?,
            Err(RecvTimeoutError::Disconnected) => {
                return Err(InternalError::new_err(
                    "the operation's task ended without a result",
                ));
            }
        }
    }
}

/// The asyncio twin of [`wait`]: an awaitable resolving to `fut`'s result.
pub fn awaitable<'py, F, T>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = cpam_core::Result<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    runtime()?;
    pyo3_async_runtimes::tokio::future_into_py(py, async move { fut.await.map_err(to_py) })
}

/// A handle's queue of events, pulled by `next_event`.
pub type EventQueue = Arc<tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<Json>>>;

/// The next event of `events`, or `None` after `timeout` seconds (`None`:
/// no limit) or once the queue is closed and drained.
pub async fn next_event(
    events: EventQueue,
    timeout: Option<f64>,
) -> cpam_core::Result<Option<Json>> {
    let mut rx = events.lock().await;
    match timeout {
        None => Ok(rx.recv().await),
        Some(secs) => {
            let d = Duration::try_from_secs_f64(secs.max(0.0)).map_err(|_| {
                cpam_core::Error::invalid(format!("timeout {secs} is not a duration"))
            })?;
            Ok(tokio::time::timeout(d, rx.recv()).await.ok().flatten())
        }
    }
}

/// A JSON value handed to Python as plain objects (dict, list, str, int, float, bool, None).
#[derive(Debug, Clone)]
pub struct Json(pub serde_json::Value);

impl Json {
    /// Serializes `value` (a cpam type) to JSON first.
    pub fn of(value: &impl serde::Serialize) -> cpam_core::Result<Json> {
        serde_json::to_value(value)
            .map(Json)
            .map_err(|e| cpam_core::Error::internal(format!("cannot encode a value: {e}")))
    }
}

impl<'py> IntoPyObject<'py> for Json {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_object(py, &self.0)
    }
}

fn to_object<'py>(py: Python<'py>, v: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    use serde_json::Value;
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else {
                n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any()
            }
        }
        Value::String(s) => s.into_pyobject(py)?.into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_object(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (k, item) in map {
                dict.set_item(k, to_object(py, item)?)?;
            }
            dict.into_any()
        }
    })
}

/// Bytes handed to Python as `bytes` (a `Vec<u8>` would become a list).
#[derive(Debug, Clone)]
pub struct Bytes(pub Vec<u8>);

impl<'py> IntoPyObject<'py> for Bytes {
    type Target = PyBytes;
    type Output = Bound<'py, PyBytes>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, &self.0))
    }
}
