//! The SSH sign-in of a transfer: one session to the service through the
//! Connection Manager's link, the proxy's host key checked against the
//! profile's, keyboard-interactive with the master password, `sftp`.

use std::net::SocketAddr;

use russh::client::{self, KeyboardInteractiveAuthResponse, Msg};
use russh::keys::PublicKey;
use russh::{ChannelMsg, ChannelStream};

use super::client::Sftp;
use crate::error::{Error, ErrorKind, Result};
use crate::secret::Secret;
use crate::tunnel::connect::ConnectClient;
use crate::tunnel::keys;

struct Pinned(PublicKey);

impl client::Handler for Pinned {
    type Error = Error;

    async fn check_server_key(
        &mut self,
        offered: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool> {
        Ok(match offered {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => {
                key.key_data() == self.0.key_data()
            }
            russh::keys::PublicKeyOrCertificate::Certificate(_) => false,
        })
    }
}

/// A signed-in SFTP session; the session ends when it is dropped.
pub struct Connection {
    pub sftp: Sftp<ChannelStream<Msg>>,
    handle: client::Handle<Pinned>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").finish_non_exhaustive()
    }
}

impl Connection {
    /// Ends the session cleanly.
    pub async fn close(mut self) {
        let _ = self.sftp.shutdown().await;
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }
}

/// Opens an SFTP session to `service` (an `ssh` service) as the profile's
/// user, answering the proxy's master password prompt with `master`.
pub async fn connect(
    client: &ConnectClient,
    service: &str,
    master: &Secret<String>,
) -> Result<Connection> {
    let profile = client.profile();
    let server_key = keys::parse_public(&profile.server_key, "profile server_key")?;
    let local = SocketAddr::from(([127, 0, 0, 1], 0));
    let stream = client.open_stream(service, local).await?;
    let mut handle =
        client::connect_stream(crate::tunnel::client_config(), stream, Pinned(server_key))
            .await
            .map_err(|e| e.context("the privileged session did not start"))?;
    let sign_in = |e: russh::Error| Error::new(ErrorKind::Protocol, format!("signing in: {e}"));
    let mut answer = handle
        .authenticate_keyboard_interactive_start(profile.user.clone(), None)
        .await
        .map_err(sign_in)?;
    loop {
        match answer {
            KeyboardInteractiveAuthResponse::Success => break,
            KeyboardInteractiveAuthResponse::Failure { .. } => {
                return Err(Error::new(
                    ErrorKind::Unauthenticated,
                    "wrong master password (or none is set)",
                ));
            }
            KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. } => {
                let responses = prompts.iter().map(|_| master.expose().clone()).collect();
                answer = handle
                    .authenticate_keyboard_interactive_respond(responses)
                    .await
                    .map_err(sign_in)?;
            }
        }
    }
    let protocol = |e: russh::Error| Error::new(ErrorKind::Protocol, format!("sftp channel: {e}"));
    let mut channel = handle.channel_open_session().await.map_err(protocol)?;
    channel
        .request_subsystem(true, "sftp")
        .await
        .map_err(protocol)?;
    let mut said = String::new();
    loop {
        match channel.wait().await {
            Some(ChannelMsg::Success) => break,
            Some(ChannelMsg::ExtendedData { data, .. }) | Some(ChannelMsg::Data { data }) => {
                said.push_str(&String::from_utf8_lossy(&data));
            }
            Some(ChannelMsg::Failure) | Some(ChannelMsg::Close) | Some(ChannelMsg::Eof) | None => {
                let said = said.trim();
                return Err(Error::new(
                    ErrorKind::TunnelUnavailable,
                    if said.is_empty() {
                        "the target refused the sftp subsystem".to_string()
                    } else {
                        format!("the target refused the sftp subsystem: {said}")
                    },
                ));
            }
            Some(_) => {}
        }
    }
    let sftp = Sftp::start(channel.into_stream()).await?;
    Ok(Connection { sftp, handle })
}
