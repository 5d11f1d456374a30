//! RDP privileged sessions at the hub: which protocol runs them, and the
//! one-time proxy credential a Connection Manager asks for
//! (`cpam-rdp-credential SERVICE GATEKEEPER_ID`, the master password on the
//! channel's stdin as `{"master": ..}`), answered with one JSON document.

use std::sync::Arc;

use russh::Channel;
use russh::server::Msg;
use serde::Deserialize;
use serde_json::json;

use super::Hub;
use crate::error::Error;
use crate::model::{AuditCategory, ServiceKind, User};
use crate::proxy::rdp::{PROXY_CREDENTIAL_TTL, ProxyCredentials};
use crate::secret::Secret;
use crate::session::Protocol;
use crate::vault;

/// How the hub runs RDP services (kind `rdp`).
#[derive(Debug, Clone)]
pub struct PrivilegedRdp {
    /// The RDP proxy (`cpam_core::proxy::rdp::RdpProxy`, feature `rdp`).
    pub proxy: Arc<dyn Protocol>,
    /// The one-time credentials it accepts; the hub issues them.
    pub credentials: Arc<ProxyCredentials>,
}

/// What `cpam-rdp-credential` reads from stdin.
#[derive(Deserialize)]
struct CredentialRequest {
    master: String,
}

impl Hub {
    /// Answers `cpam-rdp-credential`: after the master password, a
    /// one-time credential for the user's next session to the service.
    pub(super) async fn rdp_credential_channel(
        self: Arc<Self>,
        user: User,
        args: Vec<String>,
        mut channel: Channel<Msg>,
    ) {
        let reply = async {
            let [service, gk_id] = args.as_slice() else {
                return Err(Error::invalid(
                    "usage: cpam-rdp-credential SERVICE GATEKEEPER_ID",
                ));
            };
            let req: CredentialRequest =
                super::vault::read_secret_json(&mut channel, "{\"master\": ..}").await?;
            let master = Secret::new(req.master);
            let rdp = self
                .privileged_rdp
                .as_ref()
                .ok_or_else(|| Error::conflict("RDP sessions are not set up on this server"))?;
            let (_, service) = self.service_of(gk_id, service).await?;
            if service.kind != ServiceKind::Rdp {
                return Err(Error::invalid(format!(
                    "service `{}` is of kind {}, not rdp",
                    service.name,
                    service.kind.as_str()
                )));
            }
            vault::verify_master_password(
                self.engine.store(),
                self.engine.audit(),
                &self.throttle,
                &user,
                &master,
            )
            .await?;
            let password = rdp.credentials.issue(&user.id, &service.id);
            self.audit(
                AuditCategory::UserActivity,
                "rdp.credential_issued",
                &user.name,
                None,
                json!({ "service": service.name, "service_id": service.id }),
            )
            .await;
            Ok(json!({
                "service": service.name,
                "username": user.name,
                "password": password.expose(),
                "valid_secs": PROXY_CREDENTIAL_TTL.as_secs(),
            }))
        }
        .await;
        let (body, status) = match reply {
            Ok(v) => (Secret::new(v.to_string()), 0),
            Err(e) => (
                Secret::new(
                    json!({ "error": { "kind": e.kind(), "message": e.message() } }).to_string(),
                ),
                1,
            ),
        };
        let text = Secret::new(format!("{}\n", body.expose()));
        let _ = channel.data(text.expose().as_bytes()).await;
        let _ = channel.exit_status(status).await;
        let _ = channel.eof().await;
        let _ = channel.close().await;
    }
}
