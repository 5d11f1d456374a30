//! The server engine and its SSH hub run inside Python, with the
//! integrator's callbacks plugged in and engine events pulled.

use std::sync::Arc;
use std::time::Duration;

use cpam_core::audit::AuditTap;
use cpam_core::events::EngineEvent;
use cpam_core::hooks::{AccessHook, CredentialRequest, CredentialSource};
use cpam_core::model::SessionId;
use cpam_core::server::{Server as CoreServer, ServerOptions, Source};
use cpam_core::{Error, Result};
use pyo3::prelude::*;
use pyo3::types::PyType;
use serde_json::json;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::errors::to_py;
use crate::hooks::{Credential, PyAccessHook, PyAuditTap, PyCredentialSource};
use crate::live::{self, LiveWatch};
use crate::rt::{EventQueue, Json, awaitable, next_event, runtime, wait};

/// How long `stop` lets live sessions write their end records.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// The server over `source`.
async fn open(source: String) -> Result<Arc<CoreServer>> {
    let options = ServerOptions {
        embedded: true,
        ..ServerOptions::default()
    };
    Ok(Arc::new(
        CoreServer::open(&Source::parse(&source), options).await?,
    ))
}

/// Moves engine events into the handle's queue until `closed`, then what
/// is left; a watcher that fell behind gets an `events_lost` event with the
/// count (`lost`). The queue closes when this returns.
async fn forward_events(
    mut rx: tokio::sync::broadcast::Receiver<EngineEvent>,
    tx: mpsc::UnboundedSender<Json>,
    closed: CancellationToken,
) {
    let as_json = |got: std::result::Result<EngineEvent, u64>| match got {
        Ok(event) => Json::of(&event).unwrap_or_else(|e| {
            Json(json!({ "type": "events_lost", "lost": 1, "error": e.to_string() }))
        }),
        Err(n) => Json(json!({ "type": "events_lost", "lost": n })),
    };
    loop {
        let got = tokio::select! {
            biased;
            got = rx.recv() => got,
            _ = closed.cancelled() => break,
        };
        let got = match got {
            Ok(event) => Ok(event),
            Err(RecvError::Lagged(n)) => Err(n),
            Err(RecvError::Closed) => return,
        };
        if tx.send(as_json(got)).is_err() {
            return;
        }
    }
    loop {
        let got = match rx.try_recv() {
            Ok(event) => Ok(event),
            Err(TryRecvError::Lagged(n)) => Err(n),
            Err(_) => return,
        };
        if tx.send(as_json(got)).is_err() {
            return;
        }
    }
}

/// A cpam server engine and its SSH port, run in the background of this
/// process, with Python callables as audit sink, access hook and
/// credential source.
#[pyclass(module = "cpam", frozen)]
#[derive(Debug)]
pub struct Server {
    core: Arc<CoreServer>,
    /// Closes the event queue (after `stop`).
    closed: CancellationToken,
    forwarder: tokio::task::JoinHandle<()>,
    events: EventQueue,
}

/// Stops serving, then closes the event queue once the last events are in.
async fn stop(core: Arc<CoreServer>, closed: CancellationToken) -> Result<()> {
    core.stop(STOP_GRACE).await;
    closed.cancel();
    Ok(())
}

async fn credential(
    core: Arc<CoreServer>,
    customer: String,
    service: String,
    user: String,
) -> Result<Option<Credential>> {
    let engine = core.engine();
    let store = engine.store();
    let customer = store
        .customer_by_name(&customer)
        .await?
        .ok_or_else(|| Error::not_found(format!("no customer `{customer}`")))?;
    let service = store
        .service_by_name(&customer.id, &service)
        .await?
        .ok_or_else(|| {
            Error::not_found(format!(
                "no service `{service}` for customer `{}`",
                customer.name
            ))
        })?;
    let request = CredentialRequest {
        session: SessionId::generate(),
        user,
        customer: customer.id,
        service,
    };
    Ok(engine
        .credential(&request)
        .await?
        .map(|inner| Credential { inner }))
}

fn callable(py: Python<'_>, f: Option<Py<PyAny>>, what: &str) -> PyResult<Option<Arc<Py<PyAny>>>> {
    match f {
        Some(f) if !f.bind(py).is_callable() => Err(to_py(Error::invalid(format!(
            "the {what} must be callable"
        )))),
        f => Ok(f.map(Arc::new)),
    }
}

/// The callables a `Server` is created with, checked.
struct Callbacks {
    audit_sink: Option<Arc<Py<PyAny>>>,
    access_hook: Option<Arc<Py<PyAny>>>,
    credential_source: Option<Arc<Py<PyAny>>>,
}

impl Callbacks {
    fn check(
        py: Python<'_>,
        audit_sink: Option<Py<PyAny>>,
        access_hook: Option<Py<PyAny>>,
        credential_source: Option<Py<PyAny>>,
    ) -> PyResult<Callbacks> {
        Ok(Callbacks {
            audit_sink: callable(py, audit_sink, "audit sink")?,
            access_hook: callable(py, access_hook, "access hook")?,
            credential_source: callable(py, credential_source, "credential source")?,
        })
    }
}

impl Server {
    /// The server over what [`open`] opened; its event forwarder runs on `rt`.
    fn build(core: Arc<CoreServer>, callbacks: Callbacks, rt: &tokio::runtime::Handle) -> Server {
        let (tx, rx) = mpsc::unbounded_channel();
        let closed = CancellationToken::new();
        let forwarder = rt.spawn(forward_events(
            core.engine().subscribe(),
            tx,
            closed.clone(),
        ));
        let server = Server {
            core,
            closed,
            forwarder,
            events: Arc::new(tokio::sync::Mutex::new(rx)),
        };
        server.install_audit_sink(callbacks.audit_sink);
        server.install_access_hook(callbacks.access_hook);
        server.install_credential_source(callbacks.credential_source);
        server
    }

    fn install_audit_sink(&self, sink: Option<Arc<Py<PyAny>>>) {
        let tap = sink.map(|s| Arc::new(PyAuditTap(s)) as Arc<dyn AuditTap>);
        // The server was opened with its default (tapped) audit sink.
        if let Err(error) = self.core.set_audit_tap(tap) {
            tracing::error!(%error, "the audit sink callback was not installed");
        }
    }

    fn install_access_hook(&self, hook: Option<Arc<Py<PyAny>>>) {
        self.core
            .engine()
            .set_access_hook(hook.map(|h| Arc::new(PyAccessHook(h)) as Arc<dyn AccessHook>));
    }

    fn install_credential_source(&self, source: Option<Arc<Py<PyAny>>>) {
        // `None` goes back to the server's own vault, when it has one.
        self.core.set_credential_source(
            source.map(|s| Arc::new(PyCredentialSource(s)) as Arc<dyn CredentialSource>),
        );
    }
}

#[pymethods]
impl Server {
    /// A server over `source`: a data dir made by `cpam-server init` (its
    /// database, host key and listen address; administer it with
    /// `cpam-server ... --data-dir` as usual), or a database URL with a fresh
    /// host key. Nothing listens until `start`; events are queued from now.
    #[new]
    #[pyo3(signature = (source, *, audit_sink = None, access_hook = None, credential_source = None))]
    fn new(
        py: Python<'_>,
        source: String,
        audit_sink: Option<Py<PyAny>>,
        access_hook: Option<Py<PyAny>>,
        credential_source: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let callbacks = Callbacks::check(py, audit_sink, access_hook, credential_source)?;
        let opened = wait(py, open(source))?;
        Ok(Server::build(opened, callbacks, runtime()?.handle()))
    }

    /// `Server(...)` for asyncio: opening the database is awaited.
    #[classmethod]
    #[pyo3(signature = (source, *, audit_sink = None, access_hook = None, credential_source = None))]
    fn open_async<'py>(
        _cls: &Bound<'py, PyType>,
        py: Python<'py>,
        source: String,
        audit_sink: Option<Py<PyAny>>,
        access_hook: Option<Py<PyAny>>,
        credential_source: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let callbacks = Callbacks::check(py, audit_sink, access_hook, credential_source)?;
        awaitable(py, async move {
            let opened = open(source).await?;
            Ok(Server::build(
                opened,
                callbacks,
                &tokio::runtime::Handle::current(),
            ))
        })
    }

    /// Sets (or with `None`, removes) the callable that receives each audit
    /// record as a dict once it is sealed and stored.
    fn set_audit_sink(&self, py: Python<'_>, sink: Option<Py<PyAny>>) -> PyResult<()> {
        self.install_audit_sink(callable(py, sink, "audit sink")?);
        Ok(())
    }

    /// Sets (or removes) the callable deciding on each session the policy
    /// allowed: `hook(check) -> bool | (bool, reason)`.
    fn set_access_hook(&self, py: Python<'_>, hook: Option<Py<PyAny>>) -> PyResult<()> {
        self.install_access_hook(callable(py, hook, "access hook")?);
        Ok(())
    }

    /// Sets the callable supplying injected credentials:
    /// `source(request) -> Credential | None`; `None` goes back to the
    /// server's own vault (when the data dir's vault is unsealed).
    fn set_credential_source(&self, py: Python<'_>, source: Option<Py<PyAny>>) -> PyResult<()> {
        self.install_credential_source(callable(py, source, "credential source")?);
        Ok(())
    }

    /// Starts serving gatekeepers and Connection Managers on `listen`
    /// (`IP:PORT`, port 0 for a free one; `None`: the data dir's address) in
    /// the background; returns the address it listens on. Over a data dir it
    /// also serves the control socket, so `cpam-server sessions terminate`
    /// and grant revocations reach it. A stopped server cannot start again.
    #[pyo3(signature = (listen = None))]
    fn start(&self, py: Python<'_>, listen: Option<String>) -> PyResult<String> {
        let core = self.core.clone();
        let address = wait(py, async move { core.start(listen.as_deref()).await })?;
        Ok(address.to_string())
    }

    /// `IP:PORT` it listens on, or `None` when not started.
    #[getter]
    fn address(&self) -> Option<String> {
        self.core.local_addr().map(|a| a.to_string())
    }

    /// The next engine event as a dict (`type`: `gatekeeper_online`,
    /// `gatekeeper_offline`, `gatekeeper_switch`, `session_started`,
    /// `session_ended`, `session_refused`, or `events_lost`), or `None` after
    /// `timeout` seconds (`None`: no limit) or, after `stop`, once the
    /// remaining events were read.
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

    /// Asks the credential source, as the engine does for a session of
    /// `user` to `service` of `customer`.
    fn credential(
        &self,
        py: Python<'_>,
        customer: String,
        service: String,
        user: String,
    ) -> PyResult<Option<Credential>> {
        wait(py, credential(self.core.clone(), customer, service, user))
    }

    /// `credential()` for asyncio.
    fn credential_async<'py>(
        &self,
        py: Python<'py>,
        customer: String,
        service: String,
        user: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        awaitable(py, credential(self.core.clone(), customer, service, user))
    }

    /// The sessions live on this server, as dicts (`id`, `user_name`,
    /// `customer_id`, `service_name`, `protocol`, `started_at`, `until`,
    /// `bytes_up`, `bytes_down`, ...).
    fn live_sessions(&self) -> PyResult<Json> {
        Json::of(&self.core.live_sessions()).map_err(to_py)
    }

    /// Watches live terminal session `session_id` as `actor` (audited):
    /// a `LiveWatch` whose `next()` gives the current screen, then what it
    /// shows, then an `end` frame.
    fn watch(&self, py: Python<'_>, session_id: String, actor: String) -> PyResult<LiveWatch> {
        wait(py, live::watch(self.core.clone(), session_id, actor))
    }

    /// `watch()` for asyncio.
    fn watch_async<'py>(
        &self,
        py: Python<'py>,
        session_id: String,
        actor: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        awaitable(py, live::watch(self.core.clone(), session_id, actor))
    }

    /// Ends live session `session_id` now; `actor` and `reason` are audited
    /// and the reason is shown to the user.
    fn terminate(
        &self,
        py: Python<'_>,
        session_id: String,
        actor: String,
        reason: String,
    ) -> PyResult<()> {
        wait(
            py,
            live::terminate(self.core.clone(), session_id, actor, reason),
        )
    }

    /// `terminate()` for asyncio.
    fn terminate_async<'py>(
        &self,
        py: Python<'py>,
        session_id: String,
        actor: String,
        reason: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        awaitable(
            py,
            live::terminate(self.core.clone(), session_id, actor, reason),
        )
    }

    /// Stores (or replaces) the credential of `service`
    /// (`SERVICE@CUSTOMER`) in the vault as `actor`: a `password` or an
    /// OpenSSH `private_key`. Returns what was stored, never the secret.
    #[pyo3(signature = (service, username, *, actor, password = None, private_key = None))]
    fn set_credential(
        &self,
        py: Python<'_>,
        service: String,
        username: String,
        actor: String,
        password: Option<String>,
        private_key: Option<String>,
    ) -> PyResult<Json> {
        let secret = live::secret(password, private_key).map_err(to_py)?;
        wait(
            py,
            live::set_credential(self.core.clone(), service, username, secret, actor),
        )
    }

    /// `set_credential()` for asyncio.
    #[pyo3(signature = (service, username, *, actor, password = None, private_key = None))]
    fn set_credential_async<'py>(
        &self,
        py: Python<'py>,
        service: String,
        username: String,
        actor: String,
        password: Option<String>,
        private_key: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let secret = live::secret(password, private_key).map_err(to_py)?;
        awaitable(
            py,
            live::set_credential(self.core.clone(), service, username, secret, actor),
        )
    }

    /// Removes the credential of `service` (`SERVICE@CUSTOMER`) as `actor`.
    #[pyo3(signature = (service, *, actor))]
    fn remove_credential(&self, py: Python<'_>, service: String, actor: String) -> PyResult<()> {
        wait(
            py,
            live::remove_credential(self.core.clone(), service, actor),
        )
    }

    /// `remove_credential()` for asyncio.
    #[pyo3(signature = (service, *, actor))]
    fn remove_credential_async<'py>(
        &self,
        py: Python<'py>,
        service: String,
        actor: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        awaitable(
            py,
            live::remove_credential(self.core.clone(), service, actor),
        )
    }

    /// What the vault holds, never a secret: per credential `service`,
    /// `username`, `kind`, `key_version`, `updated_at`, `updated_by`,
    /// `max_checkout_secs`.
    fn credentials(&self, py: Python<'_>) -> PyResult<Json> {
        wait(py, live::credentials(self.core.clone()))
    }

    /// `credentials()` for asyncio.
    fn credentials_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        awaitable(py, live::credentials(self.core.clone()))
    }

    /// Stops listening and ends live sessions (their end records are
    /// written, at most 3 s). Stopping twice is fine.
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        wait(py, stop(self.core.clone(), self.closed.clone()))
    }

    /// `stop()` for asyncio.
    fn stop_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        awaitable(py, stop(self.core.clone(), self.closed.clone()))
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
        format!("Server(address={:?})", self.address())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.forwarder.abort();
        if let (Some(_), Ok(rt)) = (self.core.local_addr(), runtime()) {
            rt.spawn(stop(self.core.clone(), self.closed.clone()));
        }
    }
}
