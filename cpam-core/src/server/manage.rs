//! What a product embedding a [`Server`] does with it while it runs: list,
//! watch and end its live sessions, and keep the vault's credentials. The
//! C ABI and the Python bindings call these; each change and each watch is
//! audited with the caller's name as the actor, like the CLI and console.

use std::sync::Arc;

use serde_json::json;

use super::Server;
use crate::admin::Admin;
use crate::error::{Error, Result};
use crate::hooks::CredentialSource;
use crate::model::{AuditCategory, AuditEvent, Session, SessionId, Timestamp};
use crate::record::{Watch, WatchFrame};
use crate::session::{LiveInfo, SessionEngine};
use crate::vault::{
    CredentialInfo, CredentialSecret, Vault, VaultCredentialSource, checkout_limit,
};

/// A live session being watched through [`Server::watch`]; its end (or a
/// drop) is audited as `session.watch.stop`.
#[derive(Debug)]
pub struct LiveWatch {
    watch: Watch,
    stop: Option<WatchStop>,
}

#[derive(Debug)]
struct WatchStop {
    engine: Arc<SessionEngine>,
    actor: String,
    session: Session,
}

impl LiveWatch {
    /// The next frame (see [`Watch::next`]): the current screen first, then
    /// what it shows; `None` after [`WatchFrame::End`].
    pub async fn next(&mut self) -> Option<WatchFrame> {
        let frame = self.watch.next().await;
        if matches!(frame, None | Some(WatchFrame::End(_)))
            && let Some(stop) = self.stop.take()
        {
            audit_watch(&stop.engine, &stop.actor, &stop.session, false).await;
        }
        frame
    }
}

impl Drop for LiveWatch {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                audit_watch(&stop.engine, &stop.actor, &stop.session, false).await;
            });
        }
    }
}

/// Records `session.watch.start` (or `.stop`) for `actor` watching
/// `session`: the one place every live view (console, SDK) is audited.
pub(crate) async fn audit_watch(
    engine: &SessionEngine,
    actor: &str,
    session: &Session,
    start: bool,
) {
    engine
        .record(AuditEvent {
            at: Timestamp::now(),
            category: AuditCategory::UserActivity,
            action: if start {
                "session.watch.start"
            } else {
                "session.watch.stop"
            }
            .into(),
            actor: actor.into(),
            customer_id: Some(session.customer_id.clone()),
            session_id: Some(session.id.clone()),
            detail: json!({ "user": session.user_name, "service": session.service_name }),
        })
        .await;
}

impl Server {
    fn admin(&self, actor: &str) -> Result<Admin> {
        if actor.trim().is_empty() {
            return Err(Error::invalid(
                "an actor name is required: it is the audit record's actor",
            ));
        }
        Ok(Admin::new(
            self.store().clone(),
            self.engine().audit().clone(),
            actor,
        ))
    }

    fn unsealed(&self) -> Result<&Vault> {
        self.vault().map(|v| &**v).ok_or_else(|| {
            Error::invalid(
                "the vault is sealed: open the server over a data dir with its vault.key, \
                 or set CPAM_VAULT_PASSPHRASE",
            )
        })
    }

    /// Sets the credential source sessions get injected credentials from
    /// (the integrator's own vault), or with `None` goes back to the
    /// default: this server's vault when it is unsealed, else none.
    pub fn set_credential_source(&self, source: Option<Arc<dyn CredentialSource>>) {
        let source = source.or_else(|| {
            self.vault().map(|v| {
                Arc::new(VaultCredentialSource::new(v.clone())) as Arc<dyn CredentialSource>
            })
        });
        self.engine().set_credential_source(source);
    }

    /// The sessions live on this server, with their byte counts so far.
    pub fn live_sessions(&self) -> Vec<LiveInfo> {
        self.engine().live()
    }

    fn live_session(&self, id: &str) -> Result<Session> {
        self.engine()
            .live()
            .into_iter()
            .map(|l| l.session)
            .find(|s| s.id.0 == id)
            .ok_or_else(|| Error::not_found(format!("no live session `{id}` on this server")))
    }

    /// Watches live terminal session `id` as `actor` (audited as
    /// `session.watch.start`, and `.stop` when the watch ends).
    pub async fn watch(&self, id: &str, actor: &str) -> Result<LiveWatch> {
        self.admin(actor)?;
        let session = self.live_session(id)?;
        let watch = self.live().watch(&SessionId(id.into())).ok_or_else(|| {
            Error::conflict(format!("session `{id}` has no terminal open to watch"))
        })?;
        audit_watch(self.engine(), actor, &session, true).await;
        Ok(LiveWatch {
            watch,
            stop: Some(WatchStop {
                engine: self.engine().clone(),
                actor: actor.into(),
                session,
            }),
        })
    }

    /// Ends live session `id` now: `actor` and `reason` (required) are
    /// audited and shown to the user.
    pub async fn terminate(&self, id: &str, actor: &str, reason: &str) -> Result<()> {
        let admin = self.admin(actor)?;
        let session = self.live_session(id)?;
        admin
            .terminate_session(self.engine(), &session, reason)
            .await
    }

    /// Stores (or replaces) the credential of service `SERVICE@CUSTOMER`
    /// in the vault, as `actor`.
    pub async fn set_credential(
        &self,
        service: &str,
        username: &str,
        secret: CredentialSecret,
        actor: &str,
    ) -> Result<CredentialInfo> {
        let admin = self.admin(actor)?;
        let vault = self.unsealed()?;
        let s = admin.service_spec(service).await?;
        admin.set_credential(vault, &s, username, secret).await
    }

    /// Removes the credential of service `SERVICE@CUSTOMER`, as `actor`.
    pub async fn remove_credential(&self, service: &str, actor: &str) -> Result<()> {
        let admin = self.admin(actor)?;
        let vault = self.unsealed()?;
        let s = admin.service_spec(service).await?;
        admin.remove_credential(vault, &s).await
    }

    /// What the vault holds, never a secret: per service with a credential,
    /// `service` (`SERVICE@CUSTOMER`), `username`, `kind`, `key_version`,
    /// `updated_at`, `updated_by` and `max_checkout_secs`.
    pub async fn credentials(&self) -> Result<serde_json::Value> {
        let vault = self.unsealed()?;
        let customers = self.store().list_customers().await?;
        let mut rows = Vec::new();
        for s in self.store().list_services(None).await? {
            let Some(info) = vault.credential_info(&s).await? else {
                continue;
            };
            let customer = customers
                .iter()
                .find(|c| c.id == s.customer_id)
                .map_or_else(|| s.customer_id.0.clone(), |c| c.name.clone());
            let limit = checkout_limit(self.store(), &s.id).await?;
            let mut v = json!(info);
            v["service"] = json!(format!("{}@{customer}", s.name));
            v["max_checkout_secs"] = json!(limit.as_secs());
            rows.push(v);
        }
        Ok(json!(rows))
    }
}
