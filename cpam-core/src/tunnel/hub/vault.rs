//! The Connection Manager's checkout commands (`cpam-checkout`,
//! `cpam-checkin`, `cpam-checkouts`) and master password setting
//! (`cpam-master-password`, the passwords on the channel's stdin as JSON,
//! never on the command line). Each answers one JSON document.

use std::time::Duration;

use russh::Channel;
use russh::server::Msg;
use serde::Deserialize;
use serde_json::json;

use super::Hub;
use crate::error::{Error, ErrorKind, Result};
use crate::model::{Checkout, GatekeeperId, Service, User};
use crate::secret::Secret;
use crate::store::CheckoutFilter;
use crate::vault;

/// The most a `cpam-master-password` request may send.
const MAX_REQUEST: usize = 8 * 1024;
/// How long the server waits for that request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What `cpam-master-password` reads from stdin.
#[derive(Deserialize)]
struct MasterPasswordRequest {
    current: String,
    new: String,
}

fn checkout_json(c: &Checkout, now: crate::model::Timestamp) -> serde_json::Value {
    let mut v = json!(c);
    v["status"] = json!(c.status(now));
    v
}

impl Hub {
    /// The service `name` of gatekeeper `gk_id`'s customer, with the gatekeeper.
    pub(super) async fn service_of(
        &self,
        gk_id: &str,
        name: &str,
    ) -> Result<(crate::model::Gatekeeper, Service)> {
        let store = self.engine.store();
        let gk = store
            .gatekeeper(&GatekeeperId(gk_id.to_string()))
            .await?
            .ok_or_else(|| Error::not_found(format!("no gatekeeper `{gk_id}`")))?;
        let service = store
            .service_by_name(&gk.customer_id, name)
            .await?
            .ok_or_else(|| Error::not_found(format!("no service `{name}` for this customer")))?;
        Ok((gk, service))
    }

    /// `cpam-checkout SERVICE GATEKEEPER_ID [SECONDS]`.
    pub(super) async fn checkout_command(
        &self,
        user: &User,
        bound: Option<&GatekeeperId>,
        args: &[&str],
    ) -> Result<serde_json::Value> {
        let (name, gk_id, secs) = match args {
            [name, gk] => (*name, *gk, None),
            [name, gk, secs] => {
                let secs: u64 = secs.parse().map_err(|_| {
                    Error::invalid(format!("checkout length `{secs}` must be seconds"))
                })?;
                (*name, *gk, Some(Duration::from_secs(secs)))
            }
            _ => {
                return Err(Error::invalid(
                    "usage: cpam-checkout SERVICE GATEKEEPER_ID [SECONDS]",
                ));
            }
        };
        let (gk, service) = self.service_of(gk_id, name).await?;
        let now = self.engine.clock().now();
        let checkout = vault::check_out(
            self.engine.store(),
            self.engine.audit(),
            vault::CheckoutRequest {
                user,
                service: &service,
                duration: secs,
                gatekeeper: Some(&gk),
                credential_gatekeeper: bound,
                origin: "connection-manager",
            },
            now,
        )
        .await?;
        Ok(checkout_json(&checkout, now))
    }

    /// `cpam-checkin SERVICE GATEKEEPER_ID`: checks in the user's active
    /// checkout of the service; their live sessions on it end.
    pub(super) async fn checkin_command(
        &self,
        user: &User,
        args: &[&str],
    ) -> Result<serde_json::Value> {
        let [name, gk_id] = args else {
            return Err(Error::invalid("usage: cpam-checkin SERVICE GATEKEEPER_ID"));
        };
        let (_, service) = self.service_of(gk_id, name).await?;
        let store = self.engine.store();
        let now = self.engine.clock().now();
        let active = vault::active_checkout(store, &user.id, &service.id, now)
            .await?
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::NotFound,
                    format!("you hold no active checkout of `{name}`"),
                )
            })?;
        let ended = vault::check_in(store, self.engine.audit(), user, &active.id, now).await?;
        if let Err(error) = self.engine.recheck().await {
            tracing::error!(%error, "re-checking live sessions after a check-in failed");
        }
        Ok(checkout_json(&ended, now))
    }

    /// `cpam-checkouts`: the user's own checkouts, newest first.
    pub(super) async fn checkouts_command(&self, user: &User) -> Result<serde_json::Value> {
        let now = self.engine.clock().now();
        let list = self
            .engine
            .store()
            .list_checkouts(&CheckoutFilter {
                user_id: Some(user.id.clone()),
                limit: Some(100),
                ..CheckoutFilter::default()
            })
            .await?;
        let list: Vec<_> = list.iter().map(|c| checkout_json(c, now)).collect();
        Ok(json!({ "checkouts": list }))
    }

    /// `cpam-master-password`: reads `{"current": .., "new": ..}` from the
    /// channel, sets the user's master password, answers JSON.
    pub(super) async fn master_password_channel(
        self: std::sync::Arc<Self>,
        user: User,
        mut channel: Channel<Msg>,
    ) {
        let reply = match read_request(&mut channel).await {
            Ok(req) => {
                let current = Secret::new(req.current);
                let new = Secret::new(req.new);
                vault::set_master_password(
                    self.engine.store(),
                    self.engine.audit(),
                    &self.throttle,
                    &user,
                    &current,
                    new,
                )
                .await
                .map(|()| json!({ "user": user.name, "master_password": "set" }))
            }
            Err(e) => Err(e),
        };
        let (body, status) = match reply {
            Ok(v) => (v, 0),
            Err(e) => (
                json!({ "error": { "kind": e.kind(), "message": e.message() } }),
                1,
            ),
        };
        let text = format!("{body}\n");
        let _ = channel.data(text.as_bytes()).await;
        let _ = channel.exit_status(status).await;
        let _ = channel.eof().await;
        let _ = channel.close().await;
    }
}

/// Reads the request (up to EOF) from the channel, bounded in size and time.
async fn read_request(channel: &mut Channel<Msg>) -> Result<MasterPasswordRequest> {
    read_secret_json(channel, "{\"current\": .., \"new\": ..}").await
}

/// Reads a JSON request holding a secret (up to EOF) from the channel,
/// bounded in size and time; `shape` names what it must look like.
pub(super) async fn read_secret_json<T: serde::de::DeserializeOwned>(
    channel: &mut Channel<Msg>,
    shape: &str,
) -> Result<T> {
    let read = async {
        let mut bytes = Vec::new();
        while let Some(msg) = channel.wait().await {
            match msg {
                russh::ChannelMsg::Data { data } => {
                    bytes.extend_from_slice(&data);
                    if bytes.len() > MAX_REQUEST {
                        return Err(Error::invalid("the master password request is too large"));
                    }
                }
                russh::ChannelMsg::Eof | russh::ChannelMsg::Close => break,
                _ => {}
            }
        }
        Ok(bytes)
    };
    let bytes = tokio::time::timeout(REQUEST_TIMEOUT, read)
        .await
        .map_err(|_| Error::new(ErrorKind::Timeout, "no master password request arrived"))??;
    let buf = Secret::new(bytes);
    serde_json::from_slice(buf.expose())
        .map_err(|_| Error::invalid(format!("the master password request must be JSON {shape}")))
}
