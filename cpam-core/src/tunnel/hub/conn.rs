//! One SSH connection's handler: authentication and channel requests.
//! Callbacks decide and hand work to owned tasks of the [`Hub`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use russh::keys::PublicKey;
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::limits::{ChannelLimit, ChannelSlot, PreAuthSlot};
use super::{Hub, Principal};
use crate::error::{Error, Result};
use crate::model::{AuditCategory, GatekeeperId, Permission, User};
use crate::session::Originator;
use crate::tunnel::{
    CHECKIN_COMMAND, CHECKOUT_COMMAND, CHECKOUTS_COMMAND, CONTROL_COMMAND, GATEKEEPER_USER,
    IPCONNECT_MODE_COMMAND, MASTER_PASSWORD_COMMAND, NODE_USER_PREFIX, RDP_CREDENTIAL_COMMAND,
    REGISTER_USER_PREFIX, SERVICES_COMMAND, WATCH_COMMAND, WHOAMI_COMMAND, keys,
};

/// Session channels waiting for their request, with their places.
pub(super) type Pending = HashMap<ChannelId, (Channel<Msg>, ChannelSlot)>;

/// One SSH connection's handler.
pub(super) struct Conn {
    pub(super) hub: Arc<Hub>,
    pub(super) conn: u64,
    pub(super) peer: SocketAddr,
    pub(super) principal: Arc<Mutex<Principal>>,
    /// Session channels waiting for their exec request.
    pub(super) pending: Arc<Mutex<Pending>>,
    /// This connection's open channels (what its cap counts).
    pub(super) open_channels: Arc<AtomicUsize>,
    /// Its place among the connections not signed in yet, until it signs in.
    pub(super) preauth: Option<PreAuthSlot>,
    /// Cancelled once it signed in (stops the login deadline).
    pub(super) signed_in: CancellationToken,
    pub(super) handle: Option<russh::server::Handle>,
    pub(super) offer_refusal_audited: bool,
}

impl Conn {
    fn principal(&self) -> Principal {
        self.principal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A place for one more channel, or the refusal (logged, not audited:
    /// a flood must not flood the log).
    fn channel_slot(&self, principal: &Principal) -> Option<ChannelSlot> {
        let user = match principal {
            Principal::User { user, .. } => Some(&user.id),
            _ => None,
        };
        match self.hub.channels.take(&self.open_channels, user) {
            Ok(slot) => Some(slot),
            Err(limit) => {
                let which = match limit {
                    ChannelLimit::Connection => "per connection",
                    ChannelLimit::User => "per user",
                };
                tracing::warn!(peer = %self.peer, limit = which, "channel refused: too many open channels");
                None
            }
        }
    }

    fn take_pending(&self, id: ChannelId) -> Option<(Channel<Msg>, ChannelSlot)> {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id)
    }

    /// Closes a session channel that sent something other than its `exec`
    /// request first; what it sent is dropped.
    fn refuse_pending(&self, id: ChannelId, what: &str, session: &mut Session) -> bool {
        if self.take_pending(id).is_none() {
            return false;
        }
        tracing::debug!(peer = %self.peer, what, "closing a channel: {what} before its request");
        let _ = session.channel_failure(id);
        let _ = session.close(id);
        true
    }

    fn set_principal(&self, p: Principal) {
        *self.principal.lock().unwrap_or_else(|p| p.into_inner()) = p;
    }

    async fn login_failure(&self, user: &str, method: &str, reason: &str) {
        self.hub
            .audit(
                AuditCategory::UserActivity,
                "login.failure",
                user,
                None,
                json!({ "method": method, "reason": reason, "peer": self.peer.to_string() }),
            )
            .await;
    }

    async fn login_success(&self, user: &User, method: &str) {
        self.hub
            .audit(
                AuditCategory::UserActivity,
                "login.success",
                &user.name,
                None,
                json!({ "method": method, "peer": self.peer.to_string() }),
            )
            .await;
    }

    /// Whether `user` may sign in with a Connection Manager: they hold
    /// `USE_CONNECTION_MANAGER`, or no role at all (users made before roles
    /// existed, and `user add` without `--role`, are Connection Manager
    /// users). A refusal is audited.
    async fn may_use_connection_manager(
        &self,
        user: &User,
        method: &str,
    ) -> Result<bool, russh::Error> {
        let store = self.hub.engine.store();
        let roles = store.user_roles(&user.id).await.map_err(|e| internal(&e))?;
        if roles.is_empty() {
            return Ok(true);
        }
        let permissions = store
            .user_permissions(&user.id)
            .await
            .map_err(|e| internal(&e))?;
        if permissions.contains(&Permission::USE_CONNECTION_MANAGER) {
            return Ok(true);
        }
        self.login_failure(&user.name, method, "lacks USE_CONNECTION_MANAGER")
            .await;
        Ok(false)
    }

    async fn register(&self, code: &str, key: &PublicKey) -> Result<Auth> {
        let code_hash = crate::tunnel::code_hash(code);
        let fp = keys::fingerprint(key);
        let store = self.hub.engine.store();
        match store
            .redeem_registration_code(
                &code_hash,
                &keys::public_openssh(key),
                &fp,
                self.hub.engine.clock().now(),
            )
            .await?
        {
            Ok(gk) => {
                self.hub
                    .audit(
                        AuditCategory::SystemMessages,
                        "gatekeeper.registered",
                        &format!("gatekeeper:{}", gk.name),
                        Some(&gk),
                        json!({ "gatekeeper": gk.name, "fingerprint": fp, "peer": self.peer.to_string() }),
                    )
                    .await;
                self.set_principal(Principal::Registered(gk));
                Ok(Auth::Accept)
            }
            Err(refusal) => {
                self.hub
                    .audit(
                        AuditCategory::SystemMessages,
                        "gatekeeper.registration_refused",
                        "anonymous",
                        None,
                        json!({ "reason": refusal, "message": refusal.to_string(), "peer": self.peer.to_string() }),
                    )
                    .await;
                Ok(Auth::reject())
            }
        }
    }

    /// Accepts `key` only as live node `node`'s key; a refusal is audited
    /// once per connection.
    async fn node_key(&mut self, node: &str, key: &PublicKey) -> Result<Auth, russh::Error> {
        if self
            .hub
            .node_key_holds(node, key)
            .await
            .map_err(|e| internal(&e))?
        {
            return Ok(Auth::Accept);
        }
        if !self.offer_refusal_audited {
            self.offer_refusal_audited = true;
            self.hub
                .node_refused(node, key, &self.peer.to_string())
                .await;
        }
        Ok(Auth::reject())
    }

    async fn user_key(
        &self,
        user: &str,
        key: &PublicKey,
    ) -> Result<Option<(User, Option<GatekeeperId>, String)>> {
        let store = self.hub.engine.store();
        let Some(u) = store.user_by_name(user).await? else {
            return Ok(None);
        };
        let Some(k) = store
            .user_key_by_fingerprint(&keys::fingerprint(key))
            .await?
        else {
            return Ok(None);
        };
        Ok((k.user_id == u.id).then_some((u, k.gatekeeper_id, k.fingerprint)))
    }
}

fn internal(e: &Error) -> russh::Error {
    tracing::error!(error = %e, "hub callback failed");
    russh::Error::Disconnect
}

impl russh::server::Handler for Conn {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        if user.starts_with(REGISTER_USER_PREFIX) {
            return Ok(Auth::Accept);
        }
        if let Some(node) = user.strip_prefix(NODE_USER_PREFIX) {
            return self.node_key(node, offer.public_key).await;
        }
        let store = self.hub.engine.store();
        let fp = keys::fingerprint(offer.public_key);
        let known = if user == GATEKEEPER_USER {
            store
                .gatekeeper_by_fingerprint(&fp)
                .await
                .map_err(|e| internal(&e))?
                .is_some()
        } else {
            self.user_key(user, offer.public_key)
                .await
                .map_err(|e| internal(&e))?
                .is_some()
        };
        if !known && !self.offer_refusal_audited {
            // Once per connection: a client may offer several keys in turn.
            self.offer_refusal_audited = true;
            if user == GATEKEEPER_USER {
                self.hub
                    .audit(
                        AuditCategory::SystemMessages,
                        "gatekeeper.unknown_key",
                        "anonymous",
                        None,
                        json!({ "fingerprint": fp, "peer": self.peer.to_string() }),
                    )
                    .await;
            } else {
                self.login_failure(user, "publickey", &format!("unknown key {fp}"))
                    .await;
            }
        }
        Ok(if known { Auth::Accept } else { Auth::reject() })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        if let Some(code) = user.strip_prefix(REGISTER_USER_PREFIX) {
            return self
                .register(code, key.public_key)
                .await
                .map_err(|e| internal(&e));
        }
        if let Some(node) = user.strip_prefix(NODE_USER_PREFIX) {
            let auth = self.node_key(node, key.public_key).await?;
            if matches!(auth, Auth::Accept) {
                tracing::info!(%node, peer = %self.peer, "peer link from another node");
                self.set_principal(Principal::Node(node.to_string()));
            }
            return Ok(auth);
        }
        let store = self.hub.engine.store();
        if user == GATEKEEPER_USER {
            let fp = keys::fingerprint(key.public_key);
            return Ok(
                match store
                    .gatekeeper_by_fingerprint(&fp)
                    .await
                    .map_err(|e| internal(&e))?
                {
                    Some(gk) => {
                        self.set_principal(Principal::Gatekeeper(gk));
                        Auth::Accept
                    }
                    None => {
                        self.hub
                            .audit(
                                AuditCategory::SystemMessages,
                                "gatekeeper.unknown_key",
                                "anonymous",
                                None,
                                json!({ "fingerprint": fp, "peer": self.peer.to_string() }),
                            )
                            .await;
                        Auth::reject()
                    }
                },
            );
        }
        match self
            .user_key(user, key.public_key)
            .await
            .map_err(|e| internal(&e))?
        {
            Some((u, _, _)) if u.disabled => {
                self.login_failure(user, "publickey", "user disabled").await;
                Ok(Auth::reject())
            }
            Some((u, bound, key)) => {
                if !self.may_use_connection_manager(&u, "publickey").await? {
                    return Ok(Auth::reject());
                }
                self.login_success(&u, "publickey").await;
                self.set_principal(Principal::User {
                    user: u,
                    bound,
                    key: Some(key),
                });
                Ok(Auth::Accept)
            }
            None => {
                self.login_failure(user, "publickey", "unknown user or key")
                    .await;
                Ok(Auth::reject())
            }
        }
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        if !self.hub.ssh_passwords {
            // Not offered; a client that tries anyway is refused unheard.
            return Ok(Auth::reject());
        }
        // The console's lockout, shared with it: per user name and per
        // address, counted before the password is checked.
        let throttle = self.hub.throttle.clone();
        let (user_key, addr_key) = (format!("user:{user}"), format!("addr:{}", self.peer.ip()));
        let attempt = match throttle.attempt(&[
            (&user_key, crate::throttle::USER_FAILURES),
            (&addr_key, crate::throttle::ADDRESS_FAILURES),
        ]) {
            Ok(a) => a,
            Err(_) => {
                self.login_failure(user, "password", "locked out").await;
                return Ok(Auth::reject());
            }
        };
        let store = self.hub.engine.store();
        let found = store.user_by_name(user).await.map_err(|e| internal(&e))?;
        let ok = match &found {
            Some(u) if !u.disabled => match &u.password_hash {
                Some(hash) => crate::password::verify(password, hash).await,
                None => false,
            },
            _ => false,
        };
        match found {
            Some(u) if ok => {
                attempt.succeeded();
                if !self.may_use_connection_manager(&u, "password").await? {
                    return Ok(Auth::reject());
                }
                self.login_success(&u, "password").await;
                self.set_principal(Principal::User {
                    user: u,
                    bound: None,
                    key: None,
                });
                Ok(Auth::Accept)
            }
            _ => {
                self.login_failure(user, "password", "wrong user or password")
                    .await;
                if let Some(locked) = attempt.failed() {
                    let what = if locked == user_key {
                        "user"
                    } else {
                        "address"
                    };
                    self.login_failure(user, "password", &format!("{what} locked out"))
                        .await;
                }
                Ok(Auth::reject())
            }
        }
    }

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        self.preauth = None;
        self.signed_in.cancel();
        self.handle = Some(session.handle());
        let principal = self.principal();
        if matches!(principal, Principal::User { .. } | Principal::Gatekeeper(_)) {
            self.hub
                .link(self.conn, principal.clone(), self.peer, session.handle());
        }
        if let Principal::Gatekeeper(gk) = principal {
            if let Some(old) = self
                .hub
                .gatekeepers
                .attach(&gk.id, self.conn, session.handle())
            {
                let _ = old
                    .disconnect(
                        russh::Disconnect::ByApplication,
                        "replaced by a new connection".into(),
                        "en".into(),
                    )
                    .await;
            }
            self.hub
                .gatekeeper_state(&gk, true, gk.customer_disabled, "gatekeeper.online")
                .await;
        }
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let principal = self.principal();
        if matches!(principal, Principal::Anonymous) {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        }
        let Some(slot) = self.channel_slot(&principal) else {
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        };
        let id = channel.id();
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, (channel, slot));
        reply.accept().await;
        // A channel that never gets its request is closed.
        if let Some(handle) = self.handle.clone() {
            let pending = Arc::downgrade(&self.pending);
            let wait = self.hub.limits.channel_request_timeout();
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                let Some(pending) = pending.upgrade() else {
                    return;
                };
                let expired = pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id)
                    .is_some();
                if expired {
                    tracing::debug!(channel = ?id, "closing a channel that sent no request");
                    let _ = handle.close(id).await;
                }
            });
        }
        Ok(())
    }

    async fn data(
        &mut self,
        id: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_pending(id, "data", session);
        Ok(())
    }

    async fn extended_data(
        &mut self,
        id: ChannelId,
        _code: u32,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_pending(id, "data", session);
        Ok(())
    }

    async fn shell_request(
        &mut self,
        id: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if !self.refuse_pending(id, "a shell request", session) {
            session.channel_failure(id)?;
        }
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        id: ChannelId,
        _name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if !self.refuse_pending(id, "a subsystem request", session) {
            session.channel_failure(id)?;
        }
        Ok(())
    }

    async fn exec_request(
        &mut self,
        id: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some((channel, slot)) = self.take_pending(id) else {
            session.channel_failure(id)?;
            return Ok(());
        };
        let command = String::from_utf8_lossy(data).to_string();
        let mut words = command.split_whitespace();
        let reply = match (self.principal(), words.next()) {
            (Principal::Registered(gk) | Principal::Gatekeeper(gk), Some(WHOAMI_COMMAND)) => {
                Ok(json!({
                    "gatekeeper_id": gk.id, "name": gk.name, "customer_id": gk.customer_id,
                }))
            }
            (Principal::Gatekeeper(gk), Some(CONTROL_COMMAND)) => {
                session.channel_success(id)?;
                let hub = self.hub.clone();
                tokio::spawn(async move {
                    hub.control_channel(gk, channel).await;
                    drop(slot);
                });
                return Ok(());
            }
            (Principal::User { user, bound, .. }, Some(SERVICES_COMMAND)) => {
                let gk = words
                    .next()
                    .map(str::to_string)
                    .or(bound.as_ref().map(|b| b.0.clone()))
                    .unwrap_or_default();
                self.hub.services_for(&user, bound.as_ref(), &gk).await
            }
            (Principal::User { user, bound, .. }, Some(CHECKOUT_COMMAND)) => {
                let args: Vec<&str> = words.collect();
                self.hub
                    .checkout_command(&user, bound.as_ref(), &args)
                    .await
            }
            (Principal::User { user, .. }, Some(CHECKIN_COMMAND)) => {
                let args: Vec<&str> = words.collect();
                self.hub.checkin_command(&user, &args).await
            }
            (Principal::User { user, .. }, Some(CHECKOUTS_COMMAND)) => {
                self.hub.checkouts_command(&user).await
            }
            (Principal::User { user, .. }, Some(IPCONNECT_MODE_COMMAND)) => {
                self.hub.ip_connect_mode_for(&user).await
            }
            (Principal::User { user, .. }, Some(RDP_CREDENTIAL_COMMAND)) => {
                let args: Vec<String> = words.map(str::to_string).collect();
                session.channel_success(id)?;
                tokio::spawn(self.hub.clone().rdp_credential_channel(user, args, channel));
                return Ok(());
            }
            (Principal::Node(node), Some(WATCH_COMMAND)) => {
                let session_id = crate::model::SessionId(words.next().unwrap_or_default().into());
                let Some(watch) = self.hub.live.as_ref().and_then(|l| l.watch(&session_id)) else {
                    session.channel_failure(id)?;
                    drop((channel, slot));
                    return Ok(());
                };
                session.channel_success(id)?;
                tokio::spawn(
                    self.hub
                        .clone()
                        .watch_channel(node, session_id, watch, channel, slot),
                );
                return Ok(());
            }
            (Principal::User { user, .. }, Some(MASTER_PASSWORD_COMMAND)) => {
                session.channel_success(id)?;
                let hub = self.hub.clone();
                tokio::spawn(async move {
                    hub.master_password_channel(user, channel).await;
                    drop(slot);
                });
                return Ok(());
            }
            (_, first) => Err(Error::denied(format!(
                "command `{}` is not available",
                first.unwrap_or("")
            ))),
        };
        session.channel_success(id)?;
        let (body, status) = match reply {
            Ok(v) => (v, 0),
            Err(e) => (
                json!({ "error": { "kind": e.kind(), "message": e.message() } }),
                1,
            ),
        };
        let mut text = body.to_string();
        text.push('\n');
        session.data(id, bytes::Bytes::from(text))?;
        session.exit_status_request(id, status)?;
        session.eof(id)?;
        session.close(id)?;
        drop((channel, slot));
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        originator_address: &str,
        originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let received = std::time::Instant::now();
        let principal = self.principal();
        if let Principal::Node(node) = principal {
            // Relayed sessions were authorized, and are capped, by the node
            // that opened them.
            let originator = (originator_address.to_string(), originator_port);
            self.hub.sessions.spawn(self.hub.clone().relay_channel(
                node,
                channel,
                host_to_connect.to_string(),
                port_to_connect,
                originator,
                reply,
            ));
            return Ok(());
        }
        let Principal::User { user, bound, key } = principal.clone() else {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        let Some(slot) = self.channel_slot(&principal) else {
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        };
        let hub = self.hub.clone();
        let (target, local) = super::super::split_channel_target(host_to_connect);
        let spec = target.to_string();
        let mut originator = Originator::new(originator_address, originator_port);
        originator.local = local.map(str::to_string);
        hub.clone().sessions.spawn(async move {
            // A key deleted since sign-in (on another node, or while its
            // revocation is on its way) opens nothing more.
            if let Some(fp) = &key
                && !hub.key_holds(&user, fp, &spec, &originator).await
            {
                reply
                    .reject(ChannelOpenFailure::AdministrativelyProhibited)
                    .await;
                return;
            }
            let pending = super::PendingChannel {
                channel,
                reply,
                received,
            };
            hub.open_session(user, bound, spec, originator, pending)
                .await;
            drop(slot);
        });
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.take_pending(channel);
        Ok(())
    }
}
