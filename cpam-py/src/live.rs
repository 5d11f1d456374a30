//! A running server's live sessions from Python: watched frame by frame
//! and terminated; and its vault's credentials kept (the `Server` methods
//! call these). Every change and every watch is audited with the `actor`
//! the caller names.

use std::sync::Arc;
use std::time::Duration;

use cpam_core::record::WatchFrame;
use cpam_core::server::{LiveWatch as CoreWatch, Server as CoreServer};
use cpam_core::vault::CredentialSecret;
use cpam_core::{Error, Result, Secret};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::rt::{Json, awaitable, wait};

type Shared = Arc<tokio::sync::Mutex<CoreWatch>>;

/// A live terminal session being watched (`Server.watch`). What the user
/// types is never shown; what the target shows is. Dropping it (or the
/// session's end) ends the watch, audited as `session.watch.stop`.
#[pyclass(module = "cpam", frozen)]
#[derive(Debug)]
pub struct LiveWatch {
    inner: Shared,
}

/// One frame as a dict: `{"type": "snapshot", "cols", "rows", "data"}`
/// (bytes painting the current screen on a blank one), `{"type": "output",
/// "data"}`, `{"type": "resize", "cols", "rows"}`, for a remote desktop
/// `{"type": "desktop", "width", "height", "png"}` (all of it) and
/// `{"type": "tile", "x", "y", "png"}` (a region that changed),
/// `{"type": "end", "reason"}`; `None` when there is none.
#[derive(Debug)]
pub struct Frame(Option<WatchFrame>);

impl<'py> IntoPyObject<'py> for Frame {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let Some(frame) = self.0 else {
            return Ok(py.None().into_bound(py));
        };
        let d = PyDict::new(py);
        match frame {
            WatchFrame::Snapshot { cols, rows, data } => {
                d.set_item("type", "snapshot")?;
                d.set_item("cols", cols)?;
                d.set_item("rows", rows)?;
                d.set_item("data", PyBytes::new(py, &data))?;
            }
            WatchFrame::Output(data) => {
                d.set_item("type", "output")?;
                d.set_item("data", PyBytes::new(py, &data))?;
            }
            WatchFrame::Resize { cols, rows } => {
                d.set_item("type", "resize")?;
                d.set_item("cols", cols)?;
                d.set_item("rows", rows)?;
            }
            WatchFrame::Desktop { width, height, png } => {
                d.set_item("type", "desktop")?;
                d.set_item("width", width)?;
                d.set_item("height", height)?;
                d.set_item("png", PyBytes::new(py, &png))?;
            }
            WatchFrame::Tile { x, y, png } => {
                d.set_item("type", "tile")?;
                d.set_item("x", x)?;
                d.set_item("y", y)?;
                d.set_item("png", PyBytes::new(py, &png))?;
            }
            WatchFrame::End(reason) => {
                d.set_item("type", "end")?;
                d.set_item("reason", reason)?;
            }
        }
        Ok(d.into_any())
    }
}

fn duration(timeout: Option<f64>) -> Result<Option<Duration>> {
    timeout
        .map(|secs| {
            Duration::try_from_secs_f64(secs.max(0.0))
                .map_err(|_| Error::invalid(format!("timeout {secs} is not a duration")))
        })
        .transpose()
}

async fn next(inner: Shared, timeout: Option<f64>) -> Result<Frame> {
    let limit = duration(timeout)?;
    let mut watch = inner.lock().await;
    Ok(Frame(match limit {
        None => watch.next().await,
        Some(d) => tokio::time::timeout(d, watch.next()).await.ok().flatten(),
    }))
}

#[pymethods]
impl LiveWatch {
    /// The next frame, or `None` after `timeout` seconds (`None`: no limit)
    /// or once the `end` frame was read.
    #[pyo3(signature = (timeout = None))]
    fn next(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Frame> {
        wait(py, next(self.inner.clone(), timeout))
    }

    /// `next()` for asyncio.
    #[pyo3(signature = (timeout = None))]
    fn next_async<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        awaitable(py, next(self.inner.clone(), timeout))
    }
}

pub async fn watch(core: Arc<CoreServer>, session: String, actor: String) -> Result<LiveWatch> {
    let w = core.watch(&session, &actor).await?;
    Ok(LiveWatch {
        inner: Arc::new(tokio::sync::Mutex::new(w)),
    })
}

pub async fn terminate(
    core: Arc<CoreServer>,
    session: String,
    actor: String,
    reason: String,
) -> Result<()> {
    core.terminate(&session, &actor, &reason).await
}

/// The secret of `set_credential`: exactly one of a password and a key.
pub fn secret(password: Option<String>, private_key: Option<String>) -> Result<CredentialSecret> {
    match (password, private_key) {
        (Some(p), None) => Ok(CredentialSecret::Password(Secret::new(p))),
        (None, Some(k)) => Ok(CredentialSecret::PrivateKey(Secret::new(k))),
        _ => Err(Error::invalid(
            "give exactly one of password= and private_key= (an OpenSSH private key)",
        )),
    }
}

pub async fn set_credential(
    core: Arc<CoreServer>,
    service: String,
    username: String,
    secret: CredentialSecret,
    actor: String,
) -> Result<Json> {
    let info = core
        .set_credential(&service, &username, secret, &actor)
        .await?;
    Json::of(&info)
}

pub async fn remove_credential(
    core: Arc<CoreServer>,
    service: String,
    actor: String,
) -> Result<()> {
    core.remove_credential(&service, &actor).await
}

pub async fn credentials(core: Arc<CoreServer>) -> Result<Json> {
    Ok(Json(core.credentials().await?))
}
