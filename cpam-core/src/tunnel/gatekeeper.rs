//! The customer-side agent: dials out to the server, holds the tunnel, and
//! dials the targets its allow-list permits when the server asks.
//!
//! The customer keeps control: the switch file `disabled` in the state dir,
//! or opening hours in the file `schedule` (`mon-fri 08:00-18:00`, UTC),
//! refuse new sessions and close live ones while the gatekeeper is closed,
//! and the agent reports every change to the server at once.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, ChannelOpenHandle, Msg};
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use russh::{Channel, ChannelOpenFailure};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::allow::AllowList;
use super::{
    Backoff, CONTROL_COMMAND, GATEKEEPER_USER, REGISTER_USER_PREFIX, WHOAMI_COMMAND, keys,
};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{GatekeeperId, Schedule, Timestamp};
use crate::policy;
use crate::proxy::tcp::{StreamSink, StreamSource, splice};
use crate::session::Counters;

const STATE_FILE: &str = "state.json";
const KEY_FILE: &str = "key";
const DISABLED_FILE: &str = "disabled";
const SCHEDULE_FILE: &str = "schedule";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a running gatekeeper re-reads its switch file and opening
/// hours: the customer's switch takes effect within this time.
pub const SWITCH_POLL: Duration = Duration::from_millis(100);

/// What a registered gatekeeper keeps in its state dir.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GatekeeperState {
    pub server: String,
    /// The server's host key, pinned at registration.
    pub server_key: String,
    pub gatekeeper_id: GatekeeperId,
    pub name: String,
    pub registered_at: Timestamp,
}

impl GatekeeperState {
    /// Reads `DIR/state.json`; errors name the file and the field.
    pub fn load(dir: &Path) -> Result<GatekeeperState> {
        let path = dir.join(STATE_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::from(e).context(&format!(
                "cannot read {} (is this gatekeeper registered?)",
                path.display()
            ))
        })?;
        let state: GatekeeperState = serde_json::from_str(&text)
            .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
        keys::parse_public(
            &state.server_key,
            &format!("{}: field `server_key`", path.display()),
        )?;
        Ok(state)
    }

    fn save(&self, dir: &Path) -> Result<()> {
        let text =
            serde_json::to_string_pretty(self).map_err(|e| Error::internal(e.to_string()))?;
        keys::write_private_file(&dir.join(STATE_FILE), text.as_bytes())
    }
}

/// Turns the customer-side switch on (`true`: refuse and close sessions) or off.
pub fn set_disabled(dir: &Path, disabled: bool) -> Result<()> {
    let path = dir.join(DISABLED_FILE);
    if disabled {
        std::fs::write(&path, b"disabled by the customer\n")
            .map_err(|e| Error::from(e).context(&format!("cannot write {}", path.display())))
    } else {
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::from(e).context(&format!("cannot remove {}", path.display()))),
        }
    }
}

/// Whether the customer-side switch is on.
pub fn is_disabled(dir: &Path) -> bool {
    dir.join(DISABLED_FILE).exists()
}

/// Sets the customer's opening hours (`mon-fri 08:00-18:00`, UTC), or
/// removes them with `None` (open whenever switched on).
pub fn set_schedule(dir: &Path, schedule: Option<&str>) -> Result<()> {
    let path = dir.join(SCHEDULE_FILE);
    match schedule {
        Some(text) => {
            policy::parse_schedule(text)?;
            std::fs::write(&path, format!("{}\n", text.trim()))
                .map_err(|e| Error::from(e).context(&format!("cannot write {}", path.display())))
        }
        None => match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::from(e).context(&format!("cannot remove {}", path.display()))),
        },
    }
}

/// The customer's opening hours, if set.
pub fn schedule(dir: &Path) -> Result<Option<(String, Schedule)>> {
    let path = dir.join(SCHEDULE_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::from(e).context(&format!("cannot read {}", path.display())));
        }
    };
    let parsed =
        policy::parse_schedule(&text).map_err(|e| e.context(&format!("{}", path.display())))?;
    Ok(Some((text, parsed)))
}

/// The customer's controls as the agent applies them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Switch {
    /// The switch file is there.
    pub switched_off: bool,
    /// The opening hours, as written (or the reason they cannot be read).
    pub schedule: Option<String>,
    /// Sessions are refused: switched off, outside the opening hours, or
    /// the schedule file is unreadable (fail closed).
    pub closed: bool,
}

impl Switch {
    /// Reads the switch and the opening hours in `dir` as they apply at `now`.
    pub fn read(dir: &Path, now: Timestamp) -> Switch {
        let switched_off = is_disabled(dir);
        let (schedule, open) = match schedule(dir) {
            Ok(None) => (None, true),
            Ok(Some((text, s))) => (Some(text), policy::schedule_end(&s, now).is_some()),
            Err(e) => (Some(format!("unreadable: {e}")), false),
        };
        Switch {
            switched_off,
            schedule,
            closed: switched_off || !open,
        }
    }
}

/// Creates a key, redeems the one-time `code` at `server`, and pins the
/// server's key. With `expected_fingerprint`, the server key must match it.
pub async fn register(
    server: &str,
    code: &str,
    dir: &Path,
    expected_fingerprint: Option<&str>,
) -> Result<GatekeeperState> {
    if dir.join(STATE_FILE).exists() {
        return Err(Error::invalid(format!(
            "{} is already registered; use a new state dir",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::from(e).context(&format!("cannot create {}", dir.display())))?;
    let key = keys::generate()?;
    let seen = Arc::new(Mutex::new(None));
    let handler = Handler {
        trust: Trust::FirstUse {
            expected: expected_fingerprint.map(str::to_string),
            seen: seen.clone(),
        },
        allow: Arc::new(AllowList::default()),
        live: Arc::new(Mutex::new(CancellationToken::new())),
        disabled: watch::channel(Switch {
            switched_off: true,
            schedule: None,
            closed: true,
        })
        .1,
    };
    let mut handle = dial(server, handler).await?;
    let user = format!("{REGISTER_USER_PREFIX}{}", code.trim());
    let auth = handle
        .authenticate_publickey(
            user,
            PrivateKeyWithHashAlg::new(Arc::new(key.clone()), None),
        )
        .await
        .map_err(Error::from)?;
    if !auth.success() {
        return Err(Error::new(
            ErrorKind::Unauthenticated,
            "registration refused: the code is unknown, already used or expired",
        ));
    }
    let who = exec_json(&handle, WHOAMI_COMMAND).await?;
    let server_key = seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .ok_or_else(|| Error::internal("server key was not seen"))?;
    let state = GatekeeperState {
        server: server.to_string(),
        server_key: keys::public_openssh(&server_key),
        gatekeeper_id: GatekeeperId(
            who["gatekeeper_id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        ),
        name: who["name"].as_str().unwrap_or_default().to_string(),
        registered_at: Timestamp::now(),
    };
    keys::save_private(&key, &dir.join(KEY_FILE))?;
    state.save(dir)?;
    let _ = handle
        .disconnect(russh::Disconnect::ByApplication, "registered", "en")
        .await;
    Ok(state)
}

/// Runs `command` on a session channel and parses its one-line JSON answer.
pub(crate) async fn exec_json<H: client::Handler>(
    handle: &client::Handle<H>,
    command: &str,
) -> Result<serde_json::Value> {
    let ch = handle.channel_open_session().await.map_err(Error::from)?;
    ch.exec(true, command).await.map_err(Error::from)?;
    read_json(ch, command).await
}

/// Reads an exec channel's JSON answer; a non-zero exit status is the
/// error the answer names.
pub(crate) async fn read_json(
    mut ch: russh::Channel<client::Msg>,
    command: &str,
) -> Result<serde_json::Value> {
    let mut out = Vec::new();
    let mut status = None;
    while let Some(msg) = ch.wait().await {
        match msg {
            russh::ChannelMsg::Data { data } => out.extend_from_slice(&data),
            russh::ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
            russh::ChannelMsg::Close => break,
            _ => {}
        }
    }
    let value: serde_json::Value = serde_json::from_slice(&out).map_err(|e| {
        Error::new(
            ErrorKind::Protocol,
            format!("server answered `{command}` with malformed JSON: {e}"),
        )
    })?;
    if status != Some(0) {
        let kind = value["error"]["kind"].clone();
        let kind: ErrorKind = serde_json::from_value(kind).unwrap_or(ErrorKind::Protocol);
        let message = value["error"]["message"]
            .as_str()
            .unwrap_or("command failed")
            .to_string();
        return Err(Error::new(kind, message));
    }
    Ok(value)
}

pub(crate) async fn dial<H>(server: &str, handler: H) -> Result<client::Handle<H>>
where
    H: client::Handler<Error = russh::Error> + 'static,
{
    let addrs = super::resolve(server).await?;
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addrs[..]))
        .await
        .map_err(|_| {
            Error::new(
                ErrorKind::Timeout,
                format!("cannot reach server {server}: timed out"),
            )
        })?
        .map_err(|e| {
            Error::new(
                ErrorKind::TunnelUnavailable,
                format!("cannot reach server {server}: {e}"),
            )
        })?;
    tcp.set_nodelay(true)?;
    client::connect_stream(super::peer_client_config(), tcp, handler)
        .await
        .map_err(|e| match e {
            russh::Error::UnknownKey => Error::new(
                ErrorKind::Unauthenticated,
                format!(
                    "the server at {server} presented a key that does not match the pinned one"
                ),
            ),
            other => Error::new(
                ErrorKind::TunnelUnavailable,
                format!("ssh handshake with {server} failed: {other}"),
            ),
        })
}

enum Trust {
    Pinned(PublicKey),
    FirstUse {
        expected: Option<String>,
        seen: Arc<Mutex<Option<PublicKey>>>,
    },
}

struct Handler {
    trust: Trust,
    allow: Arc<AllowList>,
    /// Cancelling it closes every live session; replaced after each disable.
    live: Arc<Mutex<CancellationToken>>,
    disabled: watch::Receiver<Switch>,
}

impl client::Handler for Handler {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return Ok(false);
        };
        Ok(match &self.trust {
            Trust::Pinned(pinned) => pinned.key_data() == key.key_data(),
            Trust::FirstUse { expected, seen } => {
                let ok = expected
                    .as_ref()
                    .is_none_or(|fp| *fp == keys::fingerprint(key));
                if ok {
                    *seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(key.clone());
                }
                ok
            }
        })
    }

    async fn server_channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host: &str,
        port: u32,
        originator_address: &str,
        originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        let allow = self.allow.clone();
        let disabled = self.disabled.borrow().closed;
        let cancel = self.live.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let target = format!("{host}:{port}");
        let originator = format!("{originator_address}:{originator_port}");
        tokio::spawn(async move {
            let asked = std::time::Instant::now();
            if disabled {
                tracing::info!(%target, %originator, "refused: closed by the customer");
                reply
                    .reject(ChannelOpenFailure::AdministrativelyProhibited)
                    .await;
                return;
            }
            let tcp = match dial_allowed(&allow, &target).await {
                Ok(tcp) => tcp,
                Err(e) => {
                    tracing::warn!(%target, %originator, error = %e, "refused");
                    let code = if e.kind() == ErrorKind::PermissionDenied {
                        ChannelOpenFailure::AdministrativelyProhibited
                    } else {
                        ChannelOpenFailure::ConnectFailed
                    };
                    reply.reject(code).await;
                    return;
                }
            };
            reply.accept().await;
            let opened_us = asked.elapsed().as_micros() as u64;
            tracing::info!(%target, %originator, opened_us, "session opened");
            let (mut ch_rx, mut ch_tx) = channel.split();
            let (r, w) = tcp.into_split();
            let (mut rx, mut tx) = (StreamSource::new(r), StreamSink(w));
            let end = splice(
                &mut ch_rx,
                &mut ch_tx,
                &mut rx,
                &mut tx,
                Arc::new(Counters::default()),
                cancel,
            )
            .await;
            let _ = ch_tx.close().await;
            tracing::info!(%target, ?end, "session closed");
        });
        Ok(())
    }
}

/// Resolves `target` and dials it if every address it resolves to is allowed.
async fn dial_allowed(allow: &AllowList, target: &str) -> Result<TcpStream> {
    let addrs = super::resolve(target).await?;
    if let Some(bad) = addrs.iter().find(|a| !allow.allows(a.ip(), a.port())) {
        return Err(Error::denied(format!(
            "{target} ({bad}) is not in the allow-list"
        )));
    }
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addrs[..]))
        .await
        .map_err(|_| Error::new(ErrorKind::Timeout, format!("dialing {target} timed out")))?
        .map_err(|e| {
            Error::new(
                ErrorKind::TunnelUnavailable,
                format!("cannot reach {target}: {e}"),
            )
        })?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// A registered gatekeeper, ready to run.
#[derive(Debug)]
pub struct Agent {
    dir: PathBuf,
    state: GatekeeperState,
    key: Arc<PrivateKey>,
    server_key: PublicKey,
    allow: Arc<AllowList>,
    online: watch::Sender<bool>,
    switch_poll: Duration,
    /// The hub addresses tried in turn (the nodes of one cluster).
    servers: Vec<String>,
}

impl Agent {
    /// Opens the state dir written by [`register`].
    pub fn open(dir: &Path, allow: AllowList) -> Result<Agent> {
        let state = GatekeeperState::load(dir)?;
        let key = keys::load_private(&dir.join(KEY_FILE))?;
        let server_key = keys::parse_public(&state.server_key, "state.json: server_key")?;
        Ok(Agent {
            dir: dir.to_path_buf(),
            servers: vec![state.server.clone()],
            state,
            key: Arc::new(key),
            server_key,
            allow: Arc::new(allow),
            online: watch::channel(false).0,
            switch_poll: SWITCH_POLL,
        })
    }

    /// Re-reads the switch file every `every` instead of [`SWITCH_POLL`].
    /// A process simulating thousands of gatekeepers (the benchmark) polls
    /// less often; an appliance keeps the default, so the customer's switch
    /// acts at once.
    pub fn with_switch_poll(mut self, every: Duration) -> Agent {
        self.switch_poll = every.max(Duration::from_millis(10));
        self
    }

    /// Tries these hub addresses in turn instead of the registered one: the
    /// nodes of one cluster, which present the same host key (the one
    /// pinned at registration). After a failed dial or a closed link the
    /// next address is tried, so the gatekeeper moves to a surviving node
    /// when its node dies. An empty list keeps the registered address.
    pub fn with_servers(mut self, servers: Vec<String>) -> Agent {
        if !servers.is_empty() {
            self.servers = servers;
        }
        self
    }

    /// Whether the tunnel is up: `true` from the moment the server accepted
    /// this gatekeeper until the link closes. Embedders watch it to show the
    /// gatekeeper's state; it keeps its last value after [`Agent::run`] returns.
    pub fn online(&self) -> watch::Receiver<bool> {
        self.online.subscribe()
    }

    /// The registration state.
    pub fn state(&self) -> &GatekeeperState {
        &self.state
    }

    /// Holds the tunnel until `shutdown`, reconnecting with backoff.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        if self.allow.is_empty() {
            tracing::warn!(
                "the allow-list is empty: every session will be refused (use --allow CIDR:PORTS)"
            );
        }
        let (disabled_tx, disabled_rx) = watch::channel(Switch::read(&self.dir, Timestamp::now()));
        let live = Arc::new(Mutex::new(CancellationToken::new()));
        let watcher = tokio::spawn(watch_switch(
            self.dir.clone(),
            self.switch_poll,
            disabled_tx,
            live.clone(),
        ));
        let mut backoff = Backoff::default();
        let mut turn = 0usize;
        while !shutdown.is_cancelled() {
            let server = &self.servers[turn % self.servers.len()];
            turn = turn.wrapping_add(1);
            match self
                .session(server, &disabled_rx, &live, &shutdown, &mut backoff)
                .await
            {
                Ok(()) => {
                    tracing::warn!(%server, "gatekeeper offline: link closed")
                }
                Err(e) => {
                    tracing::warn!(%server, error = %e, "gatekeeper offline")
                }
            }
            self.online.send_replace(false);
            let delay = backoff.next_delay();
            tracing::info!(?delay, "reconnecting");
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        watcher.abort();
        live.lock().unwrap_or_else(|p| p.into_inner()).cancel();
        Ok(())
    }

    async fn session(
        &self,
        server: &str,
        disabled: &watch::Receiver<Switch>,
        live: &Arc<Mutex<CancellationToken>>,
        shutdown: &CancellationToken,
        backoff: &mut Backoff,
    ) -> Result<()> {
        let handler = Handler {
            trust: Trust::Pinned(self.server_key.clone()),
            allow: self.allow.clone(),
            live: live.clone(),
            disabled: disabled.clone(),
        };
        let mut handle = dial(server, handler).await?;
        let auth = handle
            .authenticate_publickey(
                GATEKEEPER_USER,
                PrivateKeyWithHashAlg::new(self.key.clone(), None),
            )
            .await
            .map_err(Error::from)?;
        if !auth.success() {
            return Err(Error::new(
                ErrorKind::Unauthenticated,
                "the server refused this gatekeeper's key",
            ));
        }
        let mut control = handle.channel_open_session().await.map_err(Error::from)?;
        control
            .exec(true, CONTROL_COMMAND)
            .await
            .map_err(Error::from)?;
        let mut disabled = disabled.clone();
        let initial = disabled.borrow_and_update().clone();
        send_status(&control, initial).await?;
        tracing::info!(%server, gatekeeper = %self.state.name, "gatekeeper online");
        self.online.send_replace(true);
        backoff.reset();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    let _ = handle.disconnect(russh::Disconnect::ByApplication, "gatekeeper stopping", "en").await;
                    return Ok(());
                }
                changed = disabled.changed() => {
                    if changed.is_err() { return Ok(()); }
                    let now = disabled.borrow_and_update().clone();
                    tracing::info!(closed = now.closed, switched_off = now.switched_off, schedule = ?now.schedule, "customer switch changed");
                    send_status(&control, now).await?;
                }
                msg = control.wait() => if msg.is_none() { return Ok(()) },
            }
        }
    }
}

async fn send_status(control: &Channel<Msg>, switch: Switch) -> Result<()> {
    let line = format!(
        "{}\n",
        serde_json::json!({
            "disabled": switch.closed,
            "switched_off": switch.switched_off,
            "schedule": switch.schedule,
        })
    );
    control
        .data_bytes(bytes::Bytes::from(line))
        .await
        .map_err(Error::from)
}

/// Watches the switch file and the opening hours; when the gatekeeper
/// closes, closes every live session.
async fn watch_switch(
    dir: PathBuf,
    every: Duration,
    tx: watch::Sender<Switch>,
    live: Arc<Mutex<CancellationToken>>,
) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let now = Switch::read(&dir, Timestamp::now());
        if now != *tx.borrow() {
            let closes = now.closed && !tx.borrow().closed;
            let _ = tx.send(now);
            if closes {
                // Let the status line reach the server first, so it records why.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let mut guard = live.lock().unwrap_or_else(|p| p.into_inner());
                guard.cancel();
                *guard = CancellationToken::new();
            }
        }
    }
}
