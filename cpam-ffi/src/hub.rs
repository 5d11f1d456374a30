//! `cpam_hub`: the server engine embedded in the integrator's product, with
//! its own parts plugged in through callbacks (audit sink, access hook,
//! credential source) and events pulled like every other handle's.

use std::ffi::{CStr, CString, c_char, c_void};
use std::sync::Arc;
use std::time::Duration;

use cpam_core::audit::AuditTap;
use cpam_core::events::EngineEvent;
use cpam_core::hooks::{
    AccessCheck, AccessHook, Credential, CredentialKind, CredentialRequest, CredentialSource,
    HookDecision,
};
use cpam_core::model::AuditRecord;
use cpam_core::server::{Server, ServerOptions, Source};
use cpam_core::session::SessionEngine;
use cpam_core::{Error, ErrorKind, Secret};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use crate::boundary::{
    Rt, arg_out, arg_ref, arg_str, boundary, boundary_or, copy_out, into_handle, put, take_handle,
};
use crate::event::{EventQueue, cpam_event, cpam_event_kind, pull};
use crate::gate::CallbackGate;
use crate::status::{Failure, cpam_status};

/// Bytes the access hook may write as its reason (including the NUL).
pub const CPAM_REASON_MAX: usize = 512;
/// How long `cpam_hub_stop` lets live sessions write their end records.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// Receives each audit record once it is sealed into the chain and stored,
/// as a NUL-terminated JSON object (`seq`, `at`, `category`, `action`,
/// `actor`, `customer_id`, `session_id`, `detail`, `prev_hash`, `hash`),
/// valid only during the call. Runs on one of the hub's threads, possibly
/// on several at once; it must not call `cpam_hub_stop`/`cpam_hub_free`.
pub type cpam_audit_sink_fn =
    Option<unsafe extern "C" fn(userdata: *mut c_void, record_json: *const c_char)>;

/// Decides on a session the built-in policy allowed. `check_json` is the
/// check (`user`, `customer`, `gatekeeper`, `service`, `grant`,
/// `originator`, `at`). Return true to allow; false to refuse, after
/// writing a NUL-terminated reason of at most `reason_len` bytes to `reason`
/// (it is audited and shown to the user). A refused session fails with
/// `CPAM_PERMISSION_DENIED` on the vendor's side. Runs on one of the hub's
/// threads, possibly on several at once, while that session waits.
pub type cpam_access_hook_fn = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        check_json: *const c_char,
        reason: *mut c_char,
        reason_len: usize,
    ) -> bool,
>;

/// Supplies the credential injected into a session. `request_json` has
/// `session`, `user`, `customer` and `service`. Call `cpam_credential_set`
/// on `credential` to supply one, or leave it unset when the service needs
/// none, and return true; return false to fail the session's start. Runs on
/// one of the hub's threads, possibly on several at once.
pub type cpam_credential_fn = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        request_json: *const c_char,
        credential: *mut cpam_credential,
    ) -> bool,
>;

/// What a credential carries, for `cpam_credential_set`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum cpam_credential_kind {
    /// A password.
    Password = 1,
    /// An OpenSSH private key (PEM text).
    PrivateKey = 2,
}

/// A credential being filled by a `cpam_credential_fn`.
#[derive(Debug, Default)]
pub struct cpam_credential {
    value: Option<Credential>,
}

/// The caller's `void *userdata`, handed back to its callback. The caller
/// promises it may be used from the hub's threads.
#[derive(Debug, Clone, Copy)]
struct UserData(*mut c_void);
// SAFETY: the header documents that callbacks run on the hub's threads; the
// caller guarantees `userdata` may be used there.
unsafe impl Send for UserData {}
// SAFETY: as above, for concurrent calls.
unsafe impl Sync for UserData {}

impl UserData {
    /// The pointer (a method, so closures capture the whole `Send` wrapper).
    fn get(self) -> *mut c_void {
        self.0
    }
}

/// The C audit sink callback, told of each record once it is stored.
#[derive(Debug)]
struct FfiAuditTap {
    callback: unsafe extern "C" fn(*mut c_void, *const c_char),
    userdata: UserData,
    gate: Arc<CallbackGate>,
}

#[async_trait::async_trait]
impl AuditTap for FfiAuditTap {
    async fn sealed(&self, record: &AuditRecord) -> cpam_core::Result<()> {
        let json =
            CString::new(serde_json::to_string(record).unwrap_or_default()).unwrap_or_default();
        let (f, ud, gate) = (self.callback, self.userdata, self.gate.clone());
        let call = move || {
            // Not once `cpam_hub_free` closed the gate.
            let Some(_pass) = gate.enter() else { return };
            // SAFETY: `f` is the caller's callback with its own userdata; the
            // string outlives the call.
            unsafe { f(ud.get(), json.as_ptr()) }
        };
        if let Err(error) = tokio::task::spawn_blocking(call).await {
            tracing::error!(%error, "the audit sink callback failed");
        }
        Ok(())
    }
}

#[derive(Debug)]
struct FfiAccessHook {
    f: unsafe extern "C" fn(*mut c_void, *const c_char, *mut c_char, usize) -> bool,
    ud: UserData,
    gate: Arc<CallbackGate>,
}

#[async_trait::async_trait]
impl AccessHook for FfiAccessHook {
    async fn check(&self, check: &AccessCheck) -> HookDecision {
        let json =
            CString::new(serde_json::to_string(check).unwrap_or_default()).unwrap_or_default();
        let (f, ud, gate) = (self.f, self.ud, self.gate.clone());
        let decided = tokio::task::spawn_blocking(move || {
            let Some(_pass) = gate.enter() else {
                return (false, "the hub is being freed".to_string());
            };
            let mut reason = vec![0 as c_char; CPAM_REASON_MAX];
            // SAFETY: the caller's callback; `json` and `reason` outlive the
            // call and `reason` holds `CPAM_REASON_MAX` bytes.
            let allow = unsafe {
                f(
                    ud.get(),
                    json.as_ptr(),
                    reason.as_mut_ptr(),
                    CPAM_REASON_MAX,
                )
            };
            reason[CPAM_REASON_MAX - 1] = 0;
            // SAFETY: NUL-terminated by the line above at the latest.
            let reason = unsafe { CStr::from_ptr(reason.as_ptr()) }
                .to_string_lossy()
                .into_owned();
            (allow, reason)
        })
        .await;
        match decided {
            Ok((true, _)) => HookDecision::Allow,
            Ok((false, reason)) if !reason.is_empty() => HookDecision::Deny { reason },
            Ok((false, _)) => HookDecision::Deny {
                reason: "refused by the integrator's access hook".into(),
            },
            Err(e) => HookDecision::Deny {
                reason: format!("the access hook failed: {e}"),
            },
        }
    }
}

#[derive(Debug)]
struct FfiCredentialSource {
    f: unsafe extern "C" fn(*mut c_void, *const c_char, *mut cpam_credential) -> bool,
    ud: UserData,
    gate: Arc<CallbackGate>,
}

#[async_trait::async_trait]
impl CredentialSource for FfiCredentialSource {
    async fn credential(
        &self,
        request: &CredentialRequest,
    ) -> cpam_core::Result<Option<Credential>> {
        let json =
            CString::new(serde_json::to_string(request).unwrap_or_default()).unwrap_or_default();
        let (f, ud, gate) = (self.f, self.ud, self.gate.clone());
        let answered = tokio::task::spawn_blocking(move || {
            let _pass = gate.enter()?;
            let mut cred = cpam_credential::default();
            // SAFETY: the caller's callback; `json` and `cred` outlive the call.
            let ok = unsafe { f(ud.get(), json.as_ptr(), &mut cred) };
            Some((ok, cred.value))
        })
        .await
        .map_err(|e| Error::internal(format!("the credential source failed: {e}")))?;
        match answered {
            None => Err(Error::new(ErrorKind::Cancelled, "the hub is being freed")),
            Some((true, value)) => Ok(value),
            Some((false, _)) => Err(Error::new(
                ErrorKind::NotFound,
                "the integrator's credential source has no credential for this session",
            )),
        }
    }
}

/// A server engine and its SSH hub. Owns its runtime.
#[derive(Debug)]
pub struct cpam_hub {
    rt: Rt,
    server: Server,
    events: Arc<EventQueue>,
    forwarder: JoinHandle<()>,
    /// The C callbacks under way; closed by `cpam_hub_free`.
    gate: Arc<CallbackGate>,
}

impl cpam_hub {
    pub(crate) fn server(&self) -> &Server {
        &self.server
    }

    pub(crate) fn rt(&self) -> &Rt {
        &self.rt
    }

    /// The session engine (for Rust callers and tests).
    pub fn engine(&self) -> &Arc<SessionEngine> {
        self.server.engine()
    }

    fn stop(&self) {
        self.rt.block_on(self.server.stop(STOP_GRACE));
    }
}

fn event_kind(event: &EngineEvent) -> cpam_event_kind {
    match event {
        EngineEvent::GatekeeperOnline { .. } => cpam_event_kind::GatekeeperOnline,
        EngineEvent::GatekeeperOffline { .. } => cpam_event_kind::GatekeeperOffline,
        EngineEvent::GatekeeperSwitch { .. } => cpam_event_kind::GatekeeperSwitch,
        EngineEvent::SessionStarted { .. } => cpam_event_kind::SessionStarted,
        EngineEvent::SessionEnded { .. } => cpam_event_kind::SessionEnded,
        EngineEvent::SessionRefused { .. } => cpam_event_kind::SessionRefused,
        _ => cpam_event_kind::SessionActivity,
    }
}

/// Moves engine events into the handle's queue.
async fn forward_events(
    mut rx: tokio::sync::broadcast::Receiver<EngineEvent>,
    events: Arc<EventQueue>,
) {
    loop {
        match rx.recv().await {
            Ok(event) => {
                let json = serde_json::to_value(&event).unwrap_or_default();
                events.push(event_kind(&event), json);
            }
            Err(RecvError::Lagged(n)) => events.lost(n),
            Err(RecvError::Closed) => return,
        }
    }
}

/// Creates a hub over `source`: a server data dir made by `cpam-server
/// init` (its database, host key and listen address), or a database URL
/// (`sqlite:///path/cpam.db`, `sqlite::memory:`, `postgres://...`) with a
/// fresh host key each time. Administer it with `cpam-server ... --data-dir`
/// as usual. Nothing listens until `cpam_hub_run`; events are queued from now.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_hub_new(
    source: *const c_char,
    out: *mut *mut cpam_hub,
) -> cpam_status {
    boundary(|| {
        // SAFETY: C string per the header's contract.
        let source = unsafe { arg_str(source, "source") }?;
        let out = arg_out(out, "out")?;
        let rt = Rt::new("hub")?;
        let options = ServerOptions {
            embedded: true,
            ..ServerOptions::default()
        };
        let server = rt.block_on(Server::open(&Source::parse(source), options))?;
        let events = Arc::new(EventQueue::default());
        let forwarder = rt
            .handle()
            .spawn(forward_events(server.engine().subscribe(), events.clone()));
        let handle = cpam_hub {
            rt,
            server,
            events,
            forwarder,
            gate: Arc::default(),
        };
        // SAFETY: checked by `arg_out`.
        unsafe { put(out, into_handle(handle)) };
        Ok(())
    })
}

/// Sets (or with a NULL `callback`, removes) the audit sink callback; see
/// `cpam_audit_sink_fn`. Records are stored in the hub's database either way.
/// `userdata` is passed to every call and must stay valid until the hub is
/// freed (a call already under way may still use a replaced one).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_hub_set_audit_sink(
    hub: *const cpam_hub,
    callback: cpam_audit_sink_fn,
    userdata: *mut c_void,
) -> cpam_status {
    boundary(|| {
        // SAFETY: handle per the header's contract.
        let hub = unsafe { arg_ref(hub, "hub") }?;
        let tap = callback.map(|callback| {
            Arc::new(FfiAuditTap {
                callback,
                userdata: UserData(userdata),
                gate: hub.gate.clone(),
            }) as Arc<dyn AuditTap>
        });
        hub.server.set_audit_tap(tap)?;
        Ok(())
    })
}

/// Sets (or with a NULL `callback`, removes) the access decision hook; see
/// `cpam_access_hook_fn`. `userdata` must stay valid until the hub is freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_hub_set_access_hook(
    hub: *const cpam_hub,
    callback: cpam_access_hook_fn,
    userdata: *mut c_void,
) -> cpam_status {
    boundary(|| {
        // SAFETY: handle per the header's contract.
        let hub = unsafe { arg_ref(hub, "hub") }?;
        hub.engine().set_access_hook(callback.map(|f| {
            Arc::new(FfiAccessHook {
                f,
                ud: UserData(userdata),
                gate: hub.gate.clone(),
            }) as Arc<dyn AccessHook>
        }));
        Ok(())
    })
}

/// Sets the credential source; see `cpam_credential_fn`. A NULL `callback`
/// goes back to the default: the hub's own vault when its data dir's vault
/// is unsealed, else none. `userdata` must stay valid until the hub is freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_hub_set_credential_source(
    hub: *const cpam_hub,
    callback: cpam_credential_fn,
    userdata: *mut c_void,
) -> cpam_status {
    boundary(|| {
        // SAFETY: handle per the header's contract.
        let hub = unsafe { arg_ref(hub, "hub") }?;
        hub.server.set_credential_source(callback.map(|f| {
            Arc::new(FfiCredentialSource {
                f,
                ud: UserData(userdata),
                gate: hub.gate.clone(),
            }) as Arc<dyn CredentialSource>
        }));
        Ok(())
    })
}

/// Fills the credential a `cpam_credential_fn` was asked for. `kind` is a
/// `cpam_credential_kind`; the strings are copied. Only valid inside the callback.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_credential_set(
    credential: *mut cpam_credential,
    kind: u32,
    username: *const c_char,
    secret: *const c_char,
) -> cpam_status {
    boundary(|| {
        let credential = arg_out(credential, "credential")?;
        // SAFETY: C strings per the header's contract.
        let (username, secret) =
            unsafe { (arg_str(username, "username")?, arg_str(secret, "secret")?) };
        let kind = match kind {
            k if k == cpam_credential_kind::Password as u32 => CredentialKind::Password,
            k if k == cpam_credential_kind::PrivateKey as u32 => CredentialKind::PrivateKey,
            other => {
                return Err(Failure::new(
                    cpam_status::CPAM_INVALID_ARGUMENT,
                    format!("credential kind {other} is not a cpam_credential_kind"),
                ));
            }
        };
        // SAFETY: non-NULL; the callback received it from the library and it
        // lives for the call.
        unsafe { &mut *credential }.value = Some(Credential {
            username: username.to_string(),
            kind,
            secret: Secret::new(secret.to_string()),
        });
        Ok(())
    })
}

/// Starts serving gatekeepers and Connection Managers on `listen` (`IP:PORT`,
/// port 0 for a free one; NULL for the data dir's configured address) in the
/// background. `cpam_hub_local_addr` tells the bound address. Over a data
/// dir it also serves the control socket, so `cpam-server sessions
/// terminate` and grant revocations reach the running hub. A stopped hub
/// cannot run again (`CPAM_CLOSED`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_hub_run(hub: *const cpam_hub, listen: *const c_char) -> cpam_status {
    boundary(|| {
        // SAFETY: handle and optional C string per the header's contract.
        let (hub, listen) = unsafe {
            (
                arg_ref(hub, "hub")?,
                crate::boundary::arg_opt_str(listen, "listen")?,
            )
        };
        if hub.server.is_stopped() {
            return Err(Failure::new(
                cpam_status::CPAM_CLOSED,
                "the hub was stopped; create a new one with cpam_hub_new",
            ));
        }
        hub.rt.block_on(hub.server.start(listen))?;
        Ok(())
    })
}

/// Copies the address the hub listens on (`IP:PORT`, NUL-terminated; 64
/// bytes always suffice) into `buf`. `CPAM_CLOSED` when it is not running.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_hub_local_addr(
    hub: *const cpam_hub,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> cpam_status {
    boundary(|| {
        // SAFETY: handle per the header's contract.
        let hub = unsafe { arg_ref(hub, "hub") }?;
        let addr = hub
            .server
            .local_addr()
            .ok_or_else(|| Failure::new(cpam_status::CPAM_CLOSED, "the hub is not running"))?;
        // SAFETY: buffer per the header's contract.
        unsafe { copy_out(&addr.to_string(), buf, len, written) }
    })
}

/// Waits up to `timeout_ms` (`CPAM_TIMEOUT_INFINITE`: no limit) for the next
/// engine event (gatekeepers online/offline/switch, sessions started, ended,
/// refused) and writes it to `*event`; free it with `cpam_event_free`.
/// `CPAM_TIMEOUT` when none came; `CPAM_CLOSED` after `cpam_hub_stop` once drained.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_hub_next_event(
    hub: *const cpam_hub,
    timeout_ms: u32,
    event: *mut *mut cpam_event,
) -> cpam_status {
    boundary(|| {
        // SAFETY: handle per the header's contract.
        let hub = unsafe { arg_ref(hub, "hub") }?;
        pull(&hub.rt, &hub.events, timeout_ms, event)
    })
}

/// Stops listening, ends live sessions (their end records are written, at
/// most 3 s) and closes the event queue. Blocks until done.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_hub_stop(hub: *const cpam_hub) -> cpam_status {
    boundary(|| {
        // SAFETY: handle per the header's contract.
        let hub = unsafe { arg_ref(hub, "hub") }?;
        hub.stop();
        hub.events.close();
        Ok(())
    })
}

/// Stops the hub if running and frees it. NULL is ignored. Once it returns,
/// no callback of the hub runs any more: it waits for the calls under way
/// (so it must not be called from a callback) and none starts after.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_hub_free(hub: *mut cpam_hub) {
    boundary_or((), || {
        // SAFETY: NULL or a handle from `cpam_hub_new`, freed once.
        if let Some(hub) = unsafe { take_handle(hub) } {
            hub.stop();
            hub.forwarder.abort();
            hub.rt.block_on(hub.engine().close());
            hub.gate.close();
        }
    })
}
