//! The browser terminal: a privileged SSH session whose user is a web page.
//!
//! The page is not an SSH client, so this runs one in-process: the
//! session is approved and run by the engine through the same [`SshProxy`]
//! as a vendor's stock `ssh` (so recording, the live view, terminate,
//! expiry and audit are the one path), with an in-memory duplex as the
//! user's stream. On the other end of the duplex a russh client checks the
//! proxy's host key, answers the master password prompt with the password
//! the page sent, opens a pty and a shell, and relays bytes to and from the
//! page. The credential stays between the proxy and the target.

use std::sync::Arc;

use bytes::Bytes;
use russh::ChannelMsg;
use russh::client;
use russh::keys::PublicKey;
use tokio::sync::mpsc;

use super::SshProxy;
use crate::error::{Error, ErrorKind, Result};
use crate::model::{Service, User};
use crate::secret::Secret;
use crate::session::{Originator, SessionEngine};
use crate::tunnel::dialer::{Connection, Dialer};

/// What the page sends once the terminal runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TerminalInput {
    /// Typed bytes.
    Data(Bytes),
    /// The page's terminal is now `cols`×`rows`.
    Resize(u16, u16),
}

/// Runs browser terminals (see the module docs).
#[derive(Debug, Clone)]
pub struct BrowserTerminal {
    pub engine: Arc<SessionEngine>,
    pub proxy: Arc<SshProxy>,
    /// How targets are reached (the hub's gatekeeper dialer).
    pub dialer: Arc<dyn Dialer>,
    /// The proxy's host key, which the in-process client pins.
    pub host_key: PublicKey,
}

/// What the page asked for.
#[derive(Debug)]
pub struct TerminalRequest {
    pub user: User,
    pub service: Service,
    pub originator: Originator,
    pub master_password: Secret<String>,
    pub cols: u16,
    pub rows: u16,
}

struct Pinned(PublicKey);

impl client::Handler for Pinned {
    type Error = Error;

    async fn check_server_key(
        &mut self,
        offered: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool> {
        Ok(match offered {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => *key == self.0,
            russh::keys::PublicKeyOrCertificate::Certificate(_) => false,
        })
    }
}

impl BrowserTerminal {
    /// Runs a terminal for `req` until the session ends or the page goes:
    /// output goes to `output`, `input` feeds the target. Refusals (no
    /// online gatekeeper, no grant or checkout, a wrong master password)
    /// come back as errors whose message the page shows.
    pub async fn run(
        &self,
        req: TerminalRequest,
        mut input: mpsc::Receiver<TerminalInput>,
        output: mpsc::Sender<Bytes>,
    ) -> Result<()> {
        if req.service.kind != crate::model::ServiceKind::Ssh {
            return Err(Error::invalid(format!(
                "service `{}` is not a privileged SSH service",
                req.service.name
            )));
        }
        let approval = self
            .engine
            .approve_in_server(&req.user, &req.service, &req.originator)
            .await?;
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let session = {
            let (engine, proxy, dialer) =
                (self.engine.clone(), self.proxy.clone(), self.dialer.clone());
            tokio::spawn(async move {
                engine
                    .run(
                        approval,
                        Box::new(Connection::stream(theirs)),
                        dialer,
                        proxy.as_ref(),
                    )
                    .await
            })
        };
        let result = self.client(ours, req, &mut input, &output).await;
        // The proxy ends the session once the client is gone.
        let _ = session.await;
        result
    }

    async fn client(
        &self,
        stream: tokio::io::DuplexStream,
        req: TerminalRequest,
        input: &mut mpsc::Receiver<TerminalInput>,
        output: &mpsc::Sender<Bytes>,
    ) -> Result<()> {
        let config = crate::tunnel::client_config();
        let mut handle = client::connect_stream(config, stream, Pinned(self.host_key.clone()))
            .await
            .map_err(|e| e.context("the privileged session did not start"))?;
        let mut answer = handle
            .authenticate_keyboard_interactive_start(req.user.name.clone(), None)
            .await
            .map_err(|e| Error::new(ErrorKind::Protocol, format!("signing in: {e}")))?;
        loop {
            match answer {
                client::KeyboardInteractiveAuthResponse::Success => break,
                client::KeyboardInteractiveAuthResponse::Failure { .. } => {
                    return Err(Error::new(
                        ErrorKind::Unauthenticated,
                        "wrong master password (or none is set)",
                    ));
                }
                client::KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. } => {
                    let responses = prompts
                        .iter()
                        .map(|_| req.master_password.expose().clone())
                        .collect();
                    answer = handle
                        .authenticate_keyboard_interactive_respond(responses)
                        .await
                        .map_err(|e| Error::new(ErrorKind::Protocol, format!("signing in: {e}")))?;
                }
            }
        }
        let protocol = |e: russh::Error| Error::new(ErrorKind::Protocol, e.to_string());
        let mut channel = handle.channel_open_session().await.map_err(protocol)?;
        channel
            .request_pty(
                false,
                "xterm-256color",
                u32::from(req.cols),
                u32::from(req.rows),
                0,
                0,
                &[],
            )
            .await
            .map_err(protocol)?;
        channel.request_shell(false).await.map_err(protocol)?;
        loop {
            tokio::select! {
                msg = channel.wait() => match msg {
                    Some(ChannelMsg::Data { data }) | Some(ChannelMsg::ExtendedData { data, .. }) => {
                        if output.send(Bytes::copy_from_slice(&data)).await.is_err() {
                            break;
                        }
                    }
                    Some(ChannelMsg::Close) | None => break,
                    Some(_) => {}
                },
                typed = input.recv() => match typed {
                    Some(TerminalInput::Data(data)) => {
                        channel.data(&data[..]).await.map_err(protocol)?;
                    }
                    Some(TerminalInput::Resize(cols, rows)) => {
                        channel
                            .window_change(u32::from(cols), u32::from(rows), 0, 0)
                            .await
                            .map_err(protocol)?;
                    }
                    None => break,
                },
            }
        }
        let _ = channel.close().await;
        let _ = handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
        Ok(())
    }
}
