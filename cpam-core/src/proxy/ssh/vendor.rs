//! The vendor's side: an SSH server on the session's channel that asks for
//! the master password, then relays every session channel to the target.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use russh::server::{Auth, Msg, Response, Session};
use russh::{Channel, ChannelId, ChannelWriteHalf, MethodKind, MethodSet, Pty};
use serde_json::json;
use tokio::sync::OnceCell;

use super::relay::{InputGate, Replies};
use super::target::{self, TargetLink};
use super::{HostKeyPins, MasterPasswords, SshProxyOptions};
use crate::error::{Error, ErrorKind, Result};
use crate::hooks::Credential;
use crate::model::{Service, User};
use crate::proxy::sftp::SftpHook;
use crate::secret::Secret;
use crate::session::{Direction, Meter, SessionControl, TerminalFrame, Upstream};

/// Channels one vendor connection may hold open at once.
const MAX_CHANNELS: usize = 16;

/// What the vendor's connection, the relays and the session's runner share.
#[derive(Debug)]
pub(super) struct Context {
    pub(super) control: SessionControl,
    pub(super) service: Service,
    pub(super) user: User,
    pub(super) masters: Arc<dyn MasterPasswords>,
    pub(super) pins: Arc<dyn HostKeyPins>,
    pub(super) options: SshProxyOptions,
    pub(super) files: Arc<dyn crate::proxy::sftp::FilePolicies>,
    /// The `sftp` channels, to close their open files when the session ends.
    pub(super) sftp: Mutex<Vec<Arc<SftpHook>>>,
    /// The credential to inject, taken once when the target is reached.
    pub(super) credential: tokio::sync::Mutex<Option<Result<Option<Credential>>>>,
    /// The target's connection, taken once.
    pub(super) upstream: tokio::sync::Mutex<Option<Upstream>>,
    /// The logged-in target, or why it could not be reached.
    pub(super) link: OnceCell<Result<TargetLink>>,
    /// The vendor's open channels, to tell them why the session ended.
    pub(super) open: Mutex<Vec<Arc<ChannelWriteHalf<Msg>>>>,
    /// The vendor's connection, once it runs (for exit signals).
    pub(super) vendor: Arc<std::sync::OnceLock<russh::server::Handle>>,
}

impl Context {
    /// Writes `message` to every open channel of the vendor and closes it.
    pub(super) async fn say_to_all(&self, message: &str) {
        let open: Vec<_> = self.open.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for channel in open {
            let _ = tokio::time::timeout(std::time::Duration::from_millis(300), async {
                let _ = channel
                    .extended_data_bytes(1, bytes::Bytes::from(message.to_string()))
                    .await;
                let _ = channel.exit_status(255).await;
                let _ = channel.eof().await;
                let _ = channel.close().await;
            })
            .await;
        }
    }

    /// Logs in to the target with the vault's credential (once).
    async fn reach_target(&self) -> &Result<TargetLink> {
        self.link
            .get_or_init(|| async {
                let upstream = self.upstream.lock().await.take();
                let credential = self.credential.lock().await.take();
                let result = match (upstream, credential) {
                    (Some(upstream), Some(Ok(Some(credential)))) => {
                        target::connect(upstream, credential, self).await
                    }
                    (_, Some(Ok(None))) => Err(Error::not_found(format!(
                        "no credential is stored for service `{}`",
                        self.service.name
                    ))),
                    (_, Some(Err(e))) => Err(e),
                    _ => Err(Error::new(
                        ErrorKind::Internal,
                        "the target was already taken",
                    )),
                };
                if let Err(e) = &result {
                    let _ = self
                        .control_event(
                            "ssh.target_refused",
                            json!({ "kind": e.kind(), "message": e.message() }),
                        )
                        .await;
                }
                result
            })
            .await
    }

    pub(super) async fn control_event(
        &self,
        action: &str,
        detail: serde_json::Value,
    ) -> Result<()> {
        self.control.record_event(action, detail).await
    }
}

/// One of the vendor's session channels.
#[derive(Debug)]
struct VendorChannel {
    to_vendor: Arc<ChannelWriteHalf<Msg>>,
    /// The target's side; `None` when the target could not be reached (the
    /// channel then only carries the reason).
    to_target: Option<Arc<ChannelWriteHalf<russh::client::Msg>>>,
    replies: Replies,
    gate: Arc<Mutex<InputGate>>,
    pty: Option<(String, u16, u16)>,
    /// The terminal number once a shell or command runs on it (shared
    /// with the channel's relay).
    terminal: Arc<Mutex<Option<u32>>>,
    /// The SFTP observer once the `sftp` subsystem runs (shared with the
    /// channel's relay), and the queue its own replies go through.
    sftp: Arc<std::sync::OnceLock<Arc<SftpHook>>>,
    replies_to_vendor: tokio::sync::mpsc::UnboundedSender<bytes::Bytes>,
}

/// The vendor's connection, as a russh server handler.
pub(super) struct Vendor {
    context: Arc<Context>,
    channels: HashMap<ChannelId, VendorChannel>,
    terminals: u32,
}

impl Vendor {
    pub(super) fn new(context: Arc<Context>) -> Self {
        Self {
            context,
            channels: HashMap::new(),
            terminals: 0,
        }
    }

    fn prompt() -> Auth {
        Auth::Partial {
            name: Cow::Borrowed("cpam privileged session"),
            instructions: Cow::Borrowed(""),
            prompts: Cow::Owned(vec![(Cow::Borrowed("Master password: "), false)]),
        }
    }

    fn reject() -> Auth {
        Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(&[MethodKind::KeyboardInteractive][..])),
            partial_success: false,
        }
    }

    /// Sends a request to the target and answers the vendor with the
    /// target's reply.
    async fn relay_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
        send: impl AsyncFnOnce(
            &ChannelWriteHalf<russh::client::Msg>,
        ) -> std::result::Result<(), russh::Error>,
    ) -> Result<()> {
        let ok = match self.channels.get(&channel) {
            Some(VendorChannel {
                to_target: Some(target),
                replies,
                ..
            }) => {
                let reply = replies.expect();
                match send(target).await {
                    Ok(()) => reply.await.unwrap_or(false),
                    Err(_) => false,
                }
            }
            _ => false,
        };
        if ok {
            session.channel_success(channel)?;
        } else {
            session.channel_failure(channel)?;
        }
        Ok(())
    }

    /// Starts a shell, a command or a subsystem on the target, or tells the
    /// vendor why there is no target.
    async fn start(
        &mut self,
        channel: ChannelId,
        what: Start,
        session: &mut Session,
    ) -> Result<()> {
        let Some(ch) = self.channels.get_mut(&channel) else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        if ch.to_target.is_none() {
            let why = match self.context.link.get() {
                Some(Err(e)) => e.message().to_string(),
                _ => "the target is not reachable".into(),
            };
            session.channel_success(channel)?;
            let to_vendor = ch.to_vendor.clone();
            tokio::spawn(async move {
                let text = format!("[cpam] cannot open the session: {why}\r\n");
                let _ = to_vendor
                    .extended_data_bytes(1, bytes::Bytes::from(text))
                    .await;
                let _ = to_vendor.exit_status(255).await;
                let _ = to_vendor.eof().await;
                let _ = to_vendor.close().await;
            });
            return Ok(());
        }
        let (action, detail) = match &what {
            Start::Shell => ("ssh.shell", json!({})),
            Start::Exec(command) => ("ssh.exec", json!({ "command": command })),
            Start::Subsystem(name) => ("ssh.subsystem", json!({ "name": name })),
        };
        if let (Start::Subsystem(name), Some(target)) = (&what, &ch.to_target)
            && name == "sftp"
        {
            let policy = match self.context.files.policy(&self.context.service).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(service = %self.context.service.name, error = %e, "file policy unavailable; sftp refused");
                    session.channel_failure(channel)?;
                    return Ok(());
                }
            };
            let hook = Arc::new(SftpHook::new(
                policy,
                self.context.control.clone(),
                target.clone(),
                ch.replies_to_vendor.clone(),
            ));
            let _ = ch.sftp.set(hook.clone());
            self.context
                .sftp
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(hook);
        }
        if !matches!(what, Start::Subsystem(_)) {
            let index = self.terminals;
            self.terminals += 1;
            *ch.terminal.lock().unwrap_or_else(|p| p.into_inner()) = Some(index);
            let (term, cols, rows) = ch.pty.clone().unwrap_or((String::new(), 80, 24));
            ch.gate
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .set_terminal(index, ch.pty.is_some());
            self.context.control.terminal(&TerminalFrame::Open {
                channel: index,
                cols,
                rows,
                term,
                command: match &what {
                    Start::Exec(c) => Some(c.clone()),
                    _ => None,
                },
            });
        }
        self.context.control_event(action, detail).await?;
        self.relay_request(channel, session, async move |t| match what {
            Start::Shell => t.request_shell(true).await,
            Start::Exec(command) => t.exec(true, command.into_bytes()).await,
            Start::Subsystem(name) => t.request_subsystem(true, name).await,
        })
        .await
    }

    async fn refuse_forwarding(&self, what: &str) -> Result<bool> {
        self.context
            .control_event("ssh.forwarding_refused", json!({ "kind": what }))
            .await?;
        Ok(false)
    }
}

enum Start {
    Shell,
    Exec(String),
    Subsystem(String),
}

impl russh::server::Handler for Vendor {
    type Error = Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth> {
        Ok(Self::reject())
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        _user: &str,
        _submethods: &str,
        response: Option<Response<'a>>,
    ) -> Result<Auth> {
        let Some(mut response) = response else {
            return Ok(Self::prompt());
        };
        let Some(answer) = response.next() else {
            return Ok(Self::prompt());
        };
        let password = Secret::new(String::from_utf8_lossy(&answer).into_owned());
        drop(answer);
        match self
            .context
            .masters
            .verify(&self.context.user, &password)
            .await
        {
            Ok(()) => {
                // Reach the target before the vendor's first channel, so a
                // refusal reads as a message on that channel.
                let _ = self.context.reach_target().await;
                Ok(Auth::Accept)
            }
            Err(e) => {
                tracing::info!(user = %self.context.user.name, error = %e, "master password refused");
                Ok(Self::reject())
            }
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<()> {
        if self.channels.len() >= MAX_CHANNELS {
            reply
                .reject(russh::ChannelOpenFailure::ResourceShortage)
                .await;
            return Ok(());
        }
        let id = channel.id();
        // Bytes from the vendor arrive through `data`; the read half is not
        // needed and must not fill up.
        let (_, to_vendor) = channel.split();
        let to_vendor = Arc::new(to_vendor);
        let replies = Replies::default();
        let gate = Arc::new(Mutex::new(InputGate::new(
            self.context.options.record_input,
        )));
        let terminal = Arc::new(Mutex::new(None));
        let sftp = Arc::new(std::sync::OnceLock::new());
        let (replies_to_vendor, sftp_replies) = tokio::sync::mpsc::unbounded_channel();
        let to_target = match self.context.reach_target().await {
            Ok(link) => {
                let target = link.open_session().await?;
                let (from_target, to_target) = target.split();
                let relay = super::relay::Relay {
                    from_target,
                    to_vendor: to_vendor.clone(),
                    control: self.context.control.clone(),
                    replies: replies.clone(),
                    gate: gate.clone(),
                    terminal: terminal.clone(),
                    vendor: self.context.vendor.clone(),
                    sftp: sftp.clone(),
                    sftp_replies,
                };
                tokio::spawn(relay.run());
                Some(Arc::new(to_target))
            }
            Err(_) => None,
        };
        self.context
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(to_vendor.clone());
        self.channels.insert(
            id,
            VendorChannel {
                to_vendor,
                to_target,
                replies,
                gate,
                pty: None,
                terminal,
                sftp,
                replies_to_vendor,
            },
        );
        reply.accept().await;
        Ok(())
    }

    #[allow(clippy::too_many_arguments, reason = "russh's signature")]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        col_width: u32,
        row_height: u32,
        pix_width: u32,
        pix_height: u32,
        modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<()> {
        if let Some(ch) = self.channels.get_mut(&channel) {
            ch.pty = Some((
                term.to_string(),
                clamp(col_width, 80),
                clamp(row_height, 24),
            ));
        }
        let term = term.to_string();
        let modes = modes.to_vec();
        self.relay_request(channel, session, async move |t| {
            t.request_pty(
                true, &term, col_width, row_height, pix_width, pix_height, &modes,
            )
            .await
        })
        .await
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        value: &str,
        session: &mut Session,
    ) -> Result<()> {
        let (name, value) = (name.to_string(), value.to_string());
        self.relay_request(channel, session, async move |t| {
            t.set_env(true, name, value).await
        })
        .await
    }

    async fn shell_request(&mut self, channel: ChannelId, session: &mut Session) -> Result<()> {
        self.start(channel, Start::Shell, session).await
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<()> {
        let command = String::from_utf8_lossy(data).into_owned();
        self.start(channel, Start::Exec(command), session).await
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<()> {
        self.start(channel, Start::Subsystem(name.to_string()), session)
            .await
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        col_width: u32,
        row_height: u32,
        pix_width: u32,
        pix_height: u32,
        _session: &mut Session,
    ) -> Result<()> {
        let Some(ch) = self.channels.get_mut(&channel) else {
            return Ok(());
        };
        let (cols, rows) = (clamp(col_width, 80), clamp(row_height, 24));
        if let Some(pty) = ch.pty.as_mut() {
            if (pty.1, pty.2) == (cols, rows) {
                return Ok(());
            }
            (pty.1, pty.2) = (cols, rows);
        }
        if let Some(index) = *ch.terminal.lock().unwrap_or_else(|p| p.into_inner()) {
            self.context.control.terminal(&TerminalFrame::Resize {
                channel: index,
                cols,
                rows,
            });
        }
        if let Some(t) = &ch.to_target {
            let _ = t
                .window_change(col_width, row_height, pix_width, pix_height)
                .await;
        }
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<()> {
        let Some(ch) = self.channels.get(&channel) else {
            return Ok(());
        };
        let Some(t) = &ch.to_target else {
            return Ok(());
        };
        self.context.control.moved(Direction::Up, data);
        if let Some(index) = *ch.terminal.lock().unwrap_or_else(|p| p.into_inner()) {
            let show = ch
                .gate
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .input(data);
            if show {
                self.context.control.terminal(&TerminalFrame::Input {
                    channel: index,
                    data: bytes::Bytes::copy_from_slice(data),
                });
            }
        }
        if let Some(hook) = ch.sftp.get() {
            if !hook.up(data).await {
                tracing::debug!(session = %self.context.control.id(), "sftp channel ending");
            }
            return Ok(());
        }
        // Waits for the target's window: a target that stops reading slows
        // this vendor only.
        t.data_bytes(bytes::Bytes::copy_from_slice(data)).await?;
        Ok(())
    }

    async fn signal(
        &mut self,
        channel: ChannelId,
        signal: russh::Sig,
        _session: &mut Session,
    ) -> Result<()> {
        if let Some(Some(t)) = self.channels.get(&channel).map(|c| &c.to_target) {
            let _ = t.signal(signal).await;
        }
        Ok(())
    }

    async fn channel_eof(&mut self, channel: ChannelId, _session: &mut Session) -> Result<()> {
        if let Some(Some(t)) = self.channels.get(&channel).map(|c| &c.to_target) {
            let _ = t.eof().await;
        }
        Ok(())
    }

    async fn channel_close(&mut self, channel: ChannelId, _session: &mut Session) -> Result<()> {
        if let Some(ch) = self.channels.remove(&channel) {
            if let Some(t) = ch.to_target {
                let _ = t.close().await;
            }
            self.context
                .open
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|c| !Arc::ptr_eq(c, &ch.to_vendor));
        }
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        _host_to_connect: &str,
        _port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        _reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<()> {
        self.refuse_forwarding("direct-tcpip").await?;
        // Dropping the reply refuses the channel.
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        _address: &str,
        _port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool> {
        self.refuse_forwarding("tcpip-forward").await
    }

    async fn agent_request(&mut self, _channel: ChannelId, _session: &mut Session) -> Result<bool> {
        self.refuse_forwarding("agent").await
    }

    #[allow(clippy::too_many_arguments, reason = "russh's signature")]
    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<()> {
        self.refuse_forwarding("x11").await?;
        session.channel_failure(channel)?;
        Ok(())
    }
}

/// A terminal dimension as the recorder and watchers take it: a client
/// without a terminal of its own (`ssh -tt` from a script) sends 0, which
/// counts as `unknown`, the size programs then assume.
fn clamp(v: u32, unknown: u16) -> u16 {
    if v == 0 {
        return unknown;
    }
    v.min(u32::from(u16::MAX)) as u16
}
