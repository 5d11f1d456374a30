//! Python callables plugged into the session engine: an audit sink, an
//! access hook and a credential source.
//!
//! The engine calls them from its tokio threads. Each call moves to a
//! blocking thread, attaches to the interpreter there (taking the GIL) and
//! converts the argument to plain Python objects. A callback that raises
//! never takes the server down: its traceback goes to `sys.unraisablehook`,
//! an access hook's exception refuses the session, a credential source's
//! fails the session's start with the exception's kind, and an audit sink's
//! is logged (the record is already sealed into the store's chain).

use std::sync::Arc;

use cpam_core::audit::AuditTap;
use cpam_core::hooks::{
    AccessCheck, AccessHook, Credential as CoreCredential, CredentialKind, CredentialRequest,
    CredentialSource, HookDecision,
};
use cpam_core::model::AuditRecord;
use cpam_core::{Error, ErrorKind, Result, Secret};
use pyo3::prelude::*;

use crate::errors::{kind_of, to_py};
use crate::rt::Json;

/// A credential for the engine to inject: a password or an OpenSSH private
/// key, with the username it belongs to. Its secret never shows in `repr`.
#[pyclass(module = "cpam", frozen)]
#[derive(Debug, Clone)]
pub struct Credential {
    pub(crate) inner: CoreCredential,
}

#[pymethods]
impl Credential {
    /// Exactly one of `password` and `private_key`.
    #[new]
    #[pyo3(signature = (username, *, password = None, private_key = None))]
    fn new(
        username: String,
        password: Option<String>,
        private_key: Option<String>,
    ) -> PyResult<Self> {
        let (kind, secret) = match (password, private_key) {
            (Some(p), None) => (CredentialKind::Password, p),
            (None, Some(k)) => (CredentialKind::PrivateKey, k),
            _ => {
                return Err(to_py(Error::invalid(
                    "a credential needs exactly one of `password` and `private_key`",
                )));
            }
        };
        Ok(Self {
            inner: CoreCredential {
                username,
                kind,
                secret: Secret::new(secret),
            },
        })
    }

    /// The account the secret belongs to.
    #[getter]
    fn username(&self) -> String {
        self.inner.username.clone()
    }

    /// `"password"` or `"private_key"`.
    #[getter]
    fn kind(&self) -> &'static str {
        match self.inner.kind {
            CredentialKind::Password => "password",
            CredentialKind::PrivateKey => "private_key",
        }
    }

    /// The secret itself.
    fn expose_secret(&self) -> String {
        self.inner.secret.expose().clone()
    }

    fn __repr__(&self) -> String {
        format!(
            "Credential(username={:?}, kind={:?}, secret=<redacted>)",
            self.inner.username,
            self.kind()
        )
    }
}

/// Runs `f` with the GIL on a blocking thread, so the engine's async
/// threads never wait for the interpreter.
async fn call_python<T, F>(f: F) -> Result<T>
where
    F: FnOnce(Python<'_>) -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(move || Python::attach(f))
        .await
        .map_err(|e| Error::internal(format!("a Python callback panicked: {e}")))
}

/// Reports a callback's exception like Python reports errors in callbacks
/// it cannot raise to anyone, and returns its kind and text.
fn report(py: Python<'_>, callback: &Py<PyAny>, err: PyErr) -> (ErrorKind, String) {
    let kind = kind_of(py, &err);
    let text = err.to_string();
    err.write_unraisable(py, Some(callback.bind(py)));
    (kind, text)
}

/// The Python audit sink callable, handed each record once it is sealed
/// into the store's chain.
#[derive(Debug)]
pub struct PyAuditTap(pub Arc<Py<PyAny>>);

#[async_trait::async_trait]
impl AuditTap for PyAuditTap {
    async fn sealed(&self, record: &AuditRecord) -> Result<()> {
        let callback = self.0.clone();
        let record = Json::of(record)?;
        call_python(move |py| {
            callback
                .call1(py, (record,))
                .map(drop)
                .map_err(|e| report(py, &callback, e))
        })
        .await?
        .map_err(|(kind, text)| Error::new(kind, format!("the audit sink raised: {text}")))
    }
}

fn repr(value: &Bound<'_, PyAny>) -> String {
    value
        .repr()
        .map_or_else(|_| "an object without repr".into(), |r| r.to_string())
}

/// An access hook in Python: `hook(check) -> bool | tuple[bool, str]`.
#[derive(Debug)]
pub struct PyAccessHook(pub Arc<Py<PyAny>>);

fn decision(answer: &Bound<'_, PyAny>) -> HookDecision {
    const REFUSED: &str = "refused by the integrator's access hook";
    if let Ok(allow) = answer.extract::<bool>() {
        return if allow {
            HookDecision::Allow
        } else {
            HookDecision::Deny {
                reason: REFUSED.into(),
            }
        };
    }
    match answer.extract::<(bool, String)>() {
        Ok((true, _)) => HookDecision::Allow,
        Ok((false, reason)) if !reason.is_empty() => HookDecision::Deny { reason },
        Ok((false, _)) => HookDecision::Deny {
            reason: REFUSED.into(),
        },
        Err(_) => HookDecision::Deny {
            reason: format!(
                "the access hook returned {}, not a bool or (bool, reason)",
                repr(answer)
            ),
        },
    }
}

#[async_trait::async_trait]
impl AccessHook for PyAccessHook {
    async fn check(&self, check: &AccessCheck) -> HookDecision {
        let check = match Json::of(check) {
            Ok(c) => c,
            Err(e) => {
                return HookDecision::Deny {
                    reason: format!("cannot hand the check to the access hook: {e}"),
                };
            }
        };
        let hook = self.0.clone();
        let decided = call_python(move |py| match hook.call1(py, (check,)) {
            Ok(answer) => decision(answer.bind(py)),
            Err(e) => {
                let (_, text) = report(py, &hook, e);
                HookDecision::Deny {
                    reason: format!("the access hook raised: {text}"),
                }
            }
        })
        .await;
        decided.unwrap_or_else(|e| HookDecision::Deny {
            reason: e.to_string(),
        })
    }
}

/// A credential source in Python: `source(request) -> Credential | None`.
#[derive(Debug)]
pub struct PyCredentialSource(pub Arc<Py<PyAny>>);

#[async_trait::async_trait]
impl CredentialSource for PyCredentialSource {
    async fn credential(&self, request: &CredentialRequest) -> Result<Option<CoreCredential>> {
        let request = Json::of(request)?;
        let source = self.0.clone();
        call_python(move |py| match source.call1(py, (request,)) {
            Ok(answer) => {
                let answer = answer.bind(py);
                if answer.is_none() {
                    return Ok(None);
                }
                answer
                    .cast::<Credential>()
                    .map(|c| Some(c.get().inner.clone()))
                    .map_err(|_| {
                        Error::internal(format!(
                            "the credential source returned {}, not a Credential or None",
                            repr(answer)
                        ))
                    })
            }
            Err(e) => {
                let (kind, text) = report(py, &source, e);
                Err(Error::new(
                    kind,
                    format!("the credential source raised: {text}"),
                ))
            }
        })
        .await?
    }
}
