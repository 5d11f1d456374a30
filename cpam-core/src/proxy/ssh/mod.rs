//! SSH with credential injection: the privileged-session path for SSH
//! services (kind `ssh`).
//!
//! The vendor's stock `ssh` reaches the server through its Connection
//! Manager's channel as usual; on that channel the proxy is an SSH
//! **server** (the hub's host key, which the vendor's profile pins), asks
//! for the user's master password with keyboard-interactive, and then is an
//! SSH **client** to the target, reached through the session's `Dialer`,
//! logged in with the credential the engine's
//! [`CredentialSource`](crate::hooks::CredentialSource) gives (the vault by
//! default). The vendor never receives the credential.
//!
//! Every session channel is relayed request by request (`pty-req`, `env`,
//! `shell`, `exec`, `subsystem`, `window-change`, signals, exit status);
//! terminal channels are shown to the session's observers as
//! [`TerminalFrame`](crate::session::TerminalFrame)s, which the recorder
//! writes and live watchers render. Port, agent and X11 forwarding are
//! refused and audited. The target's host key is pinned per service on
//! first use ([`HostKeyPins`]); a changed key refuses the session.
//!
//! - `vendor.rs`: the server side (the vendor's `ssh`).
//! - `target.rs`: the client side (the target's `sshd`).
//! - `browser.rs`: [`BrowserTerminal`], the browser terminal: the proxy run
//!   with an in-process SSH client as the user.
//! - `pins.rs`: [`StorePins`], target host keys pinned in the store.
//! - `relay.rs`: one channel's bytes from the target to the vendor, and the
//!   input gate that keeps typed passwords out of recordings.
//!
//! `sftp` subsystem channels pass through [`crate::proxy::sftp`]'s
//! tracker, which audits every file and applies the service's file policy.

mod browser;
mod pins;
mod relay;
mod target;
#[cfg(test)]
mod tests;
mod vendor;

pub use browser::{BrowserTerminal, TerminalInput, TerminalRequest};
pub use pins::StorePins;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use russh::keys::{HashAlg, PrivateKey, PublicKey};

use crate::error::{Error, ErrorKind, Result};
use crate::model::{EndReason, Service, SessionProtocol, User};
use crate::secret::Secret;
use crate::session::{LiveSession, Protocol, Upstream};
use crate::tunnel::dialer::Connection;

/// Checks a user's master password, the second factor a privileged session
/// asks for (throttled and audited by the implementation).
#[async_trait]
pub trait MasterPasswords: Send + Sync + std::fmt::Debug {
    /// `Ok` when `password` is `user`'s master password; `Unauthenticated`
    /// (wrong or unset) or `PermissionDenied` (locked out) otherwise.
    async fn verify(&self, user: &User, password: &Secret<String>) -> Result<()>;
}

/// What a pin check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinCheck {
    /// The key is the one pinned for the service.
    Known,
    /// No key was pinned; this one is now.
    Pinned,
}

/// The target host keys the proxy accepts, one per service, pinned on
/// first use.
#[async_trait]
pub trait HostKeyPins: Send + Sync + std::fmt::Debug {
    /// Accepts `key` for `service` when it is the pinned one, or pins it
    /// when none is; fails with `PermissionDenied`, naming both
    /// fingerprints, when another key is pinned.
    async fn check(&self, service: &Service, key: &PublicKey) -> Result<PinCheck>;
}

/// How the proxy treats what the user types.
#[derive(Debug, Clone)]
pub struct SshProxyOptions {
    /// Show typed input to observers (recorded as `"i"` events), except
    /// while the target asks for a password.
    pub record_input: bool,
    /// How long the target may take to accept the connection and the
    /// credential.
    pub login_timeout: Duration,
}

impl Default for SshProxyOptions {
    fn default() -> Self {
        Self {
            record_input: true,
            login_timeout: Duration::from_secs(20),
        }
    }
}

/// The SSH privileged-session [`Protocol`].
#[derive(Debug)]
pub struct SshProxy {
    config: Arc<russh::server::Config>,
    masters: Arc<dyn MasterPasswords>,
    pins: Arc<dyn HostKeyPins>,
    options: SshProxyOptions,
    files: Arc<dyn crate::proxy::sftp::FilePolicies>,
}

impl SshProxy {
    /// A proxy presenting `host_key` to vendors, checking master passwords
    /// with `masters` and target keys with `pins`.
    pub fn new(
        host_key: PrivateKey,
        masters: Arc<dyn MasterPasswords>,
        pins: Arc<dyn HostKeyPins>,
        options: SshProxyOptions,
    ) -> Self {
        let mut config = crate::tunnel::base_server_config(host_key);
        config.methods = russh::MethodSet::from(&[russh::MethodKind::KeyboardInteractive][..]);
        config.max_auth_attempts = 3;
        config.auth_rejection_time = Duration::from_millis(500);
        config.inactivity_timeout = None;
        Self {
            config: Arc::new(config),
            masters,
            pins,
            options,
            files: Arc::new(crate::proxy::sftp::AllowAll),
        }
    }

    /// Applies the file-transfer policies `files` gives to `sftp`
    /// channels (every transfer is allowed and audited without).
    pub fn with_file_policies(mut self, files: Arc<dyn crate::proxy::sftp::FilePolicies>) -> Self {
        self.files = files;
        self
    }
}

/// What the user reads in their terminal when the session is ended from
/// outside.
fn end_message(live: &LiveSession) -> String {
    let text = match live.control().end_reason() {
        Some((EndReason::TerminatedBy, Some(by))) => format!("session terminated by {by}"),
        Some((EndReason::TerminatedBy, None)) => "session terminated by an administrator".into(),
        Some((EndReason::Expired, _)) => "access expired: the session has ended".into(),
        Some((EndReason::Revoked, _)) => "access revoked: the session has ended".into(),
        Some((EndReason::RecordingFailed, _)) => {
            "the session's recording failed: the session has ended".into()
        }
        Some((reason, Some(detail))) => format!("session ended ({reason:?}): {detail}"),
        Some((reason, None)) => format!("session ended ({reason:?})"),
        None => "session ended".into(),
    };
    format!("\r\n[cpam] {text}\r\n")
}

/// A short, stable fingerprint of a public key for messages and audit.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

#[async_trait]
impl Protocol for SshProxy {
    fn kind(&self) -> SessionProtocol {
        SessionProtocol::Ssh
    }

    async fn run(&self, user: Connection, upstream: Upstream, live: &LiveSession) -> Result<()> {
        let account = live
            .user()
            .ok_or_else(|| Error::new(ErrorKind::Conflict, "the session is no longer live"))?;
        let service_name = live.session().service_name.clone();
        let context = Arc::new(vendor::Context {
            control: live.control(),
            service: live
                .service()
                .ok_or_else(|| Error::new(ErrorKind::Conflict, "the session is no longer live"))?,
            user: account,
            masters: self.masters.clone(),
            pins: self.pins.clone(),
            options: self.options.clone(),
            files: self.files.clone(),
            sftp: std::sync::Mutex::new(Vec::new()),
            credential: tokio::sync::Mutex::new(Some(live.credential().await)),
            upstream: tokio::sync::Mutex::new(Some(upstream)),
            link: tokio::sync::OnceCell::new(),
            open: std::sync::Mutex::new(Vec::new()),
            vendor: Arc::new(std::sync::OnceLock::new()),
        });
        let handler = vendor::Vendor::new(context.clone());
        let running = russh::server::run_stream(self.config.clone(), user.into_stream(), handler)
            .await
            .map_err(|e| e.context(&format!("SSH with the vendor for `{service_name}`")))?;
        let handle = running.handle();
        let _ = context.vendor.set(handle.clone());
        tokio::pin!(running);
        let outcome = tokio::select! {
            ended = &mut running => ended,
            () = live.cancel().cancelled() => {
                let message = end_message(live);
                context.say_to_all(&message).await;
                let _ = handle
                    .disconnect(russh::Disconnect::ByApplication, message.trim().to_string(), String::new())
                    .await;
                // The vendor's side winds down; do not wait on a peer that
                // stopped reading.
                let _ = tokio::time::timeout(Duration::from_secs(1), &mut running).await;
                Ok(())
            }
        };
        if let Some(link) = context.link.get().and_then(|l| l.as_ref().ok()) {
            link.disconnect().await;
        }
        // Files still open when the session ends are recorded before it ends.
        let hooks: Vec<_> =
            std::mem::take(&mut *context.sftp.lock().unwrap_or_else(|p| p.into_inner()));
        for hook in hooks {
            hook.finish().await;
        }
        match outcome {
            Ok(()) => Ok(()),
            // The vendor hanging up is how sessions normally end.
            Err(e) if matches!(e.kind(), ErrorKind::Io | ErrorKind::TunnelUnavailable) => {
                tracing::debug!(session = %live.id(), error = %e, "vendor connection closed");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}
