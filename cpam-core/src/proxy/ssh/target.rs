//! The target's side: an SSH client over the session's dialed connection,
//! checking the target's host key against the service's pin and logging in
//! with the injected credential.

use std::sync::{Arc, Mutex};

use russh::client::{self, AuthResult, Handle};
use russh::keys::PrivateKeyWithHashAlg;
use serde_json::json;

use super::vendor::Context;
use super::{PinCheck, fingerprint};
use crate::error::{Error, ErrorKind, Result};
use crate::hooks::{Credential, CredentialKind};
use crate::model::Service;
use crate::session::Upstream;

/// A logged-in connection to the target.
pub(super) struct TargetLink {
    handle: Handle<TargetHandler>,
}

impl std::fmt::Debug for TargetLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TargetLink")
    }
}

impl TargetLink {
    /// A new session channel on the target.
    pub(super) async fn open_session(&self) -> Result<russh::Channel<client::Msg>> {
        self.handle
            .channel_open_session()
            .await
            .map_err(|e| Error::from(e).context("opening a channel on the target"))
    }

    pub(super) async fn disconnect(&self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "session ended", "")
            .await;
    }
}

/// What the host key check found: the pin outcome and the key's
/// fingerprint, or why the key was refused.
type Verdict = Arc<Mutex<Option<Result<(PinCheck, String)>>>>;

/// Checks the target's host key; keeps why it refused one.
struct TargetHandler {
    service: Service,
    pins: Arc<dyn super::HostKeyPins>,
    verdict: Verdict,
}

impl client::Handler for TargetHandler {
    type Error = Error;

    async fn check_server_key(
        &mut self,
        offered: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool> {
        let result = match offered {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => self
                .pins
                .check(&self.service, key)
                .await
                .map(|c| (c, fingerprint(key))),
            russh::keys::PublicKeyOrCertificate::Certificate(_) => Err(Error::new(
                ErrorKind::PermissionDenied,
                "the target presented a host certificate; pin its plain host key instead",
            )),
        };
        let ok = result.is_ok();
        *self.verdict.lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
        Ok(ok)
    }
}

/// Reaches and logs in to the target with `credential`; the result says
/// what went wrong in words the vendor reads (never the credential).
pub(super) async fn connect(
    upstream: Upstream,
    credential: Credential,
    context: &Context,
) -> Result<TargetLink> {
    let verdict = Arc::new(Mutex::new(None));
    let handler = TargetHandler {
        service: context.service.clone(),
        pins: context.pins.clone(),
        verdict: verdict.clone(),
    };
    let timeout = context.options.login_timeout;
    let login = async {
        let stream = upstream.connect().await?.into_stream();
        let connected =
            client::connect_stream(crate::tunnel::client_config(), stream, handler).await;
        let taken = verdict.lock().unwrap_or_else(|p| p.into_inner()).take();
        let mut handle = match (connected, taken) {
            (Ok(h), Some(Ok((check, fp)))) => {
                if check == PinCheck::Pinned {
                    context
                        .control_event("ssh.host_key_pinned", json!({ "fingerprint": fp }))
                        .await?;
                }
                h
            }
            (_, Some(Err(e))) => {
                context
                    .control_event("ssh.host_key_refused", json!({ "message": e.message() }))
                    .await?;
                return Err(e);
            }
            (Err(e), _) => return Err(e.context("SSH with the target")),
            (Ok(_), None) => {
                return Err(Error::new(
                    ErrorKind::Protocol,
                    "the target's host key was never checked",
                ));
            }
        };
        let username = credential.username.clone();
        let result = login(&mut handle, &credential).await?;
        drop(credential);
        if !result.success() {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                format!("the target refused the stored credential for `{username}`"),
            ));
        }
        context
            .control_event("ssh.target_login", json!({ "username": username }))
            .await?;
        Ok(TargetLink { handle })
    };
    tokio::time::timeout(timeout, login).await.map_err(|_| {
        Error::new(
            ErrorKind::Timeout,
            format!("the target did not accept the login within {timeout:?}"),
        )
    })?
}

async fn login(handle: &mut Handle<TargetHandler>, credential: &Credential) -> Result<AuthResult> {
    let user = credential.username.clone();
    Ok(match credential.kind {
        CredentialKind::Password => {
            handle
                .authenticate_password(user, credential.secret.expose().as_str())
                .await?
        }
        CredentialKind::PrivateKey => {
            let key =
                russh::keys::decode_secret_key(credential.secret.expose(), None).map_err(|e| {
                    Error::invalid(format!("the stored private key cannot be read: {e}"))
                })?;
            let hash = handle.best_supported_rsa_hash().await?.flatten();
            handle
                .authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
                .await?
        }
    })
}
