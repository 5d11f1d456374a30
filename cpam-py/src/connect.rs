//! The Connection Manager: a profile, its services, local forwards and
//! sessions used as byte streams.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use cpam_core::tunnel::connect::ConnectClient;
use cpam_core::tunnel::desktop::DesktopClient;
use cpam_core::tunnel::profile::Profile;
use cpam_core::{Error, ErrorKind, Result, Secret};
use pyo3::prelude::*;
use pyo3::types::PyType;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;

use crate::errors::to_py;
use crate::rt::{Bytes, Json, awaitable, wait};

/// The address sessions are reported as coming from (the caller's process).
const LOCAL_ORIGINATOR: &str = "127.0.0.1:0";

/// A Connection Manager bound to one profile, and so to one gatekeeper.
#[pyclass(module = "cpam", frozen)]
#[derive(Debug)]
pub struct ConnectionManager {
    client: Arc<ConnectClient>,
}

#[pymethods]
impl ConnectionManager {
    /// Loads the profile file at `profile`; nothing is dialed until first use.
    #[new]
    fn new(profile: PathBuf) -> PyResult<Self> {
        let profile = Profile::load(&profile).map_err(to_py)?;
        Ok(Self {
            client: ConnectClient::new(profile).map_err(to_py)?,
        })
    }

    /// A Connection Manager for profile text (the file's content).
    #[classmethod]
    fn from_text(_cls: &Bound<'_, PyType>, text: &str) -> PyResult<Self> {
        let profile = Profile::parse(text, "text").map_err(to_py)?;
        Ok(Self {
            client: ConnectClient::new(profile).map_err(to_py)?,
        })
    }

    /// The vendor user the profile belongs to.
    #[getter]
    fn user(&self) -> String {
        self.client.profile().user.clone()
    }

    /// The server's `HOST:PORT`.
    #[getter]
    fn server(&self) -> String {
        self.client.profile().server.clone()
    }

    /// The server's host key as the profile pins it (`ssh-ed25519 AAAA...`):
    /// what `ssh` checks on a privileged session (a known_hosts line is
    /// `ALIAS KEY`, with `-o HostKeyAlias=ALIAS`).
    #[getter]
    fn server_key(&self) -> String {
        self.client.profile().server_key.clone()
    }

    /// The customer's name.
    #[getter]
    fn customer(&self) -> String {
        self.client.profile().customer.clone()
    }

    /// The gatekeeper's name.
    #[getter]
    fn gatekeeper(&self) -> String {
        self.client.profile().gatekeeper_name.clone()
    }

    /// The services the user may use now, with the gatekeeper's state.
    fn services(&self, py: Python<'_>) -> PyResult<Json> {
        wait(py, services(self.client.clone()))
    }

    /// `services()` for asyncio.
    fn services_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        awaitable(py, services(self.client.clone()))
    }

    /// Opens one session to `service` as a byte stream.
    fn open_session(&self, py: Python<'_>, service: String) -> PyResult<Session> {
        wait(py, open_session(self.client.clone(), service))
    }

    /// `open_session()` for asyncio.
    fn open_session_async<'py>(
        &self,
        py: Python<'py>,
        service: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        awaitable(py, open_session(self.client.clone(), service))
    }

    /// Listens on `listen` (`IP:PORT`, port 0 picks one); every connection to
    /// it becomes one session to `service`.
    #[pyo3(signature = (service, listen = "127.0.0.1:0"))]
    fn forward(&self, py: Python<'_>, service: String, listen: &str) -> PyResult<Forward> {
        let listen = parse_addr(listen)?;
        wait(py, forward(self.client.clone(), service, listen))
    }

    /// `forward()` for asyncio.
    #[pyo3(signature = (service, listen = "127.0.0.1:0"))]
    fn forward_async<'py>(
        &self,
        py: Python<'py>,
        service: String,
        listen: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let listen = parse_addr(listen)?;
        awaitable(py, forward(self.client.clone(), service, listen))
    }

    /// Checks the credential of `service` (an `ssh` service) out for
    /// `seconds` (default: the service's longest checkout); the credential
    /// itself never leaves the server. Returns the checkout.
    #[pyo3(signature = (service, seconds = None))]
    fn checkout(&self, py: Python<'_>, service: String, seconds: Option<u64>) -> PyResult<Json> {
        wait(py, checkout(self.client.clone(), service, seconds))
    }

    /// `checkout()` for asyncio.
    #[pyo3(signature = (service, seconds = None))]
    fn checkout_async<'py>(
        &self,
        py: Python<'py>,
        service: String,
        seconds: Option<u64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        awaitable(py, checkout(self.client.clone(), service, seconds))
    }

    /// Checks the credential of `service` back in; the user's sessions on
    /// it end.
    fn checkin(&self, py: Python<'_>, service: String) -> PyResult<Json> {
        let client = self.client.clone();
        wait(py, async move { Ok(Json(client.checkin(&service).await?)) })
    }

    /// `checkin()` for asyncio.
    fn checkin_async<'py>(&self, py: Python<'py>, service: String) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client.clone();
        awaitable(py, async move { Ok(Json(client.checkin(&service).await?)) })
    }

    /// The user's checkouts, newest first.
    fn checkouts(&self, py: Python<'_>) -> PyResult<Json> {
        let client = self.client.clone();
        wait(py, async move { Ok(Json(client.checkouts().await?)) })
    }

    /// `checkouts()` for asyncio.
    fn checkouts_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client.clone();
        awaitable(py, async move { Ok(Json(client.checkouts().await?)) })
    }

    /// Sets the user's master password (asked before every privileged
    /// session); `current` is their login password or current master
    /// password.
    fn set_master_password(&self, py: Python<'_>, current: String, new: String) -> PyResult<Json> {
        let client = self.client.clone();
        let (current, new) = (Secret::new(current), Secret::new(new));
        wait(py, async move {
            Ok(Json(client.set_master_password(&current, &new).await?))
        })
    }

    /// `set_master_password()` for asyncio.
    fn set_master_password_async<'py>(
        &self,
        py: Python<'py>,
        current: String,
        new: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client.clone();
        let (current, new) = (Secret::new(current), Secret::new(new));
        awaitable(py, async move {
            Ok(Json(client.set_master_password(&current, &new).await?))
        })
    }

    fn __repr__(&self) -> String {
        let p = self.client.profile();
        format!(
            "ConnectionManager(user={:?}, server={:?}, gatekeeper={:?})",
            p.user, p.server, p.gatekeeper_name
        )
    }
}

fn parse_addr(listen: &str) -> PyResult<SocketAddr> {
    listen.parse().map_err(|_| {
        to_py(Error::invalid(format!(
            "listen address `{listen}` must be IP:PORT"
        )))
    })
}

async fn checkout(
    client: Arc<ConnectClient>,
    service: String,
    seconds: Option<u64>,
) -> Result<Json> {
    let duration = seconds.map(std::time::Duration::from_secs);
    Ok(Json(client.checkout(&service, duration).await?))
}

async fn services(client: Arc<ConnectClient>) -> Result<Json> {
    Json::of(&client.services().await?)
}

async fn open_session(client: Arc<ConnectClient>, service: String) -> Result<Session> {
    let originator: SocketAddr = LOCAL_ORIGINATOR
        .parse()
        .map_err(|_| Error::internal("bad originator address"))?;
    let stream = client.open_stream(&service, originator).await?;
    let (r, w) = tokio::io::split(stream);
    Ok(Session {
        service,
        reader: Arc::new(tokio::sync::Mutex::new(Some(Box::pin(r)))),
        writer: Arc::new(tokio::sync::Mutex::new(Some(Box::pin(w)))),
    })
}

async fn forward(
    client: Arc<ConnectClient>,
    service: String,
    listen: SocketAddr,
) -> Result<Forward> {
    let listener = cpam_core::tunnel::bind_listener(listen)?;
    let address = listener.local_addr()?;
    let stop = CancellationToken::new();
    let task = tokio::spawn(client.forward(service.clone(), listener, stop.clone()));
    Ok(Forward {
        service,
        address,
        stop,
        task: Mutex::new(Some(task)),
    })
}

/// A local listener forwarding each connection as a session. Closing it (or
/// leaving its `with` block) stops listening and ends its sessions.
#[pyclass(module = "cpam", frozen)]
#[derive(Debug)]
pub struct Forward {
    service: String,
    address: SocketAddr,
    stop: CancellationToken,
    task: Mutex<Option<tokio::task::JoinHandle<Result<()>>>>,
}

impl Forward {
    fn take_task(&self) -> Option<tokio::task::JoinHandle<Result<()>>> {
        self.stop.cancel();
        self.task.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

async fn join_forward(task: Option<tokio::task::JoinHandle<Result<()>>>) -> Result<()> {
    match task {
        None => Ok(()),
        Some(task) => task
            .await
            .map_err(|e| Error::internal(format!("the forward's task failed: {e}")))?,
    }
}

#[pymethods]
impl Forward {
    /// `IP:PORT` the forward listens on.
    #[getter]
    fn address(&self) -> String {
        self.address.to_string()
    }

    /// The listening IP.
    #[getter]
    fn host(&self) -> String {
        self.address.ip().to_string()
    }

    /// The listening port.
    #[getter]
    fn port(&self) -> u16 {
        self.address.port()
    }

    /// The service each connection opens.
    #[getter]
    fn service(&self) -> String {
        self.service.clone()
    }

    /// Desktop Sharing: starts a remote desktop client on this forward's
    /// address and waits for it to exit; returns its exit code (1 when a
    /// signal ended it). Without `program`, the platform's native client on
    /// `PATH` (`xfreerdp`, `mstsc`, `open rdp://`) gets `/v:ADDR` then
    /// `args`; a named `program` gets `{addr}` in `args` replaced by the
    /// address, or `/v:ADDR` first. No native client raises `NotFound`
    /// naming the address to connect one to by hand.
    #[pyo3(signature = (program=None, args=Vec::new()))]
    fn launch_desktop(
        &self,
        py: Python<'_>,
        program: Option<PathBuf>,
        args: Vec<String>,
    ) -> PyResult<i32> {
        let client =
            DesktopClient::choose(program.as_deref(), &args, self.address).map_err(to_py)?;
        let stop = self.stop.clone();
        wait(py, async move { client.run(&stop).await })
    }

    /// `launch_desktop()` for asyncio.
    #[pyo3(signature = (program=None, args=Vec::new()))]
    fn launch_desktop_async<'py>(
        &self,
        py: Python<'py>,
        program: Option<PathBuf>,
        args: Vec<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let client =
            DesktopClient::choose(program.as_deref(), &args, self.address).map_err(to_py)?;
        let stop = self.stop.clone();
        awaitable(py, async move { client.run(&stop).await })
    }

    /// Stops listening, ends the forward's sessions and waits for them.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let task = self.take_task();
        wait(py, join_forward(task))
    }

    /// `close()` for asyncio.
    fn close_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let task = self.take_task();
        awaitable(py, join_forward(task))
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
        self.close(py)
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
        self.close_async(py)
    }

    fn __repr__(&self) -> String {
        format!(
            "Forward(service={:?}, address={:?})",
            self.service,
            self.address.to_string()
        )
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

type Reader = Pin<Box<dyn AsyncRead + Send>>;
type Writer = Pin<Box<dyn AsyncWrite + Send>>;

/// One session through the tunnel as a byte stream. `read` returns `b""` at
/// the end of the stream; closing (or leaving its `with` block) ends the session.
#[pyclass(module = "cpam", frozen)]
pub struct Session {
    service: String,
    reader: Arc<tokio::sync::Mutex<Option<Reader>>>,
    writer: Arc<tokio::sync::Mutex<Option<Writer>>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

fn closed() -> Error {
    Error::new(ErrorKind::InvalidArgument, "the session is closed")
}

async fn read(reader: Arc<tokio::sync::Mutex<Option<Reader>>>, n: usize) -> Result<Bytes> {
    let mut guard = reader.lock().await;
    let r = guard.as_mut().ok_or_else(closed)?;
    if n == 0 {
        return Ok(Bytes(Vec::new()));
    }
    let mut buf = vec![0u8; n];
    let got = r.read(&mut buf).await?;
    buf.truncate(got);
    Ok(Bytes(buf))
}

async fn read_exactly(reader: Arc<tokio::sync::Mutex<Option<Reader>>>, n: usize) -> Result<Bytes> {
    let mut guard = reader.lock().await;
    let r = guard.as_mut().ok_or_else(closed)?;
    let mut buf = vec![0u8; n];
    r.read_exact(&mut buf).await?;
    Ok(Bytes(buf))
}

async fn write(writer: Arc<tokio::sync::Mutex<Option<Writer>>>, data: Vec<u8>) -> Result<()> {
    let mut guard = writer.lock().await;
    let w = guard.as_mut().ok_or_else(closed)?;
    w.write_all(&data).await?;
    w.flush().await?;
    Ok(())
}

async fn shutdown_write(writer: Arc<tokio::sync::Mutex<Option<Writer>>>) -> Result<()> {
    let mut guard = writer.lock().await;
    let w = guard.as_mut().ok_or_else(closed)?;
    w.shutdown().await?;
    Ok(())
}

async fn close(
    reader: Arc<tokio::sync::Mutex<Option<Reader>>>,
    writer: Arc<tokio::sync::Mutex<Option<Writer>>>,
) -> Result<()> {
    if let Some(mut w) = writer.lock().await.take() {
        // The peer may be gone already; closing is still complete.
        let _ = w.shutdown().await;
    }
    reader.lock().await.take();
    Ok(())
}

#[pymethods]
impl Session {
    /// The service this session reaches.
    #[getter]
    fn service(&self) -> String {
        self.service.clone()
    }

    /// Up to `n` bytes (64 KiB by default); `b""` once the target closed its side.
    #[pyo3(signature = (n = 65536))]
    fn read(&self, py: Python<'_>, n: usize) -> PyResult<Bytes> {
        wait(py, read(self.reader.clone(), n))
    }

    /// `read()` for asyncio.
    #[pyo3(signature = (n = 65536))]
    fn read_async<'py>(&self, py: Python<'py>, n: usize) -> PyResult<Bound<'py, PyAny>> {
        awaitable(py, read(self.reader.clone(), n))
    }

    /// Exactly `n` bytes; raises `CpamIoError` if the stream ends first.
    fn read_exactly(&self, py: Python<'_>, n: usize) -> PyResult<Bytes> {
        wait(py, read_exactly(self.reader.clone(), n))
    }

    /// `read_exactly()` for asyncio.
    fn read_exactly_async<'py>(&self, py: Python<'py>, n: usize) -> PyResult<Bound<'py, PyAny>> {
        awaitable(py, read_exactly(self.reader.clone(), n))
    }

    /// Sends all of `data`.
    fn write(&self, py: Python<'_>, data: Cow<'_, [u8]>) -> PyResult<()> {
        wait(py, write(self.writer.clone(), data.into_owned()))
    }

    /// `write()` for asyncio.
    fn write_async<'py>(
        &self,
        py: Python<'py>,
        data: Cow<'_, [u8]>,
    ) -> PyResult<Bound<'py, PyAny>> {
        awaitable(py, write(self.writer.clone(), data.into_owned()))
    }

    /// Signals the end of what this side sends; reading goes on.
    fn shutdown_write(&self, py: Python<'_>) -> PyResult<()> {
        wait(py, shutdown_write(self.writer.clone()))
    }

    /// `shutdown_write()` for asyncio.
    fn shutdown_write_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        awaitable(py, shutdown_write(self.writer.clone()))
    }

    /// Ends the session. Closing twice is fine.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        wait(py, close(self.reader.clone(), self.writer.clone()))
    }

    /// `close()` for asyncio.
    fn close_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        awaitable(py, close(self.reader.clone(), self.writer.clone()))
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
        self.close(py)
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
        self.close_async(py)
    }

    fn __repr__(&self) -> String {
        format!("Session(service={:?})", self.service)
    }
}
