//! RDP with credential injection: the privileged-session path for RDP
//! services (kind `rdp`), feature `rdp`.
//!
//! The vendor's native client (`xfreerdp`, `mstsc`) reaches the server
//! through its Connection Manager's channel as usual; on that channel the
//! proxy is the RDP **server** up to the end of NLA and then an RDP
//! **client** to the target, reached through the session's `Dialer`, which
//! it authenticates to with the vault's credential. The steps
//! (`handshake.rs`), as Devolutions Gateway does them:
//!
//! 1. X.224: the client's connection request must offer CredSSP (a client
//!    without NLA is refused with `HYBRID_REQUIRED_BY_SERVER`); the target
//!    gets the client's protocol flags and a cookie naming the vault's
//!    username, and must select CredSSP too.
//! 2. TLS on both legs: the server's certificate to the client (the
//!    console's, from the data dir); the target's certificate pinned per
//!    service on first use ([`CertificatePins`]) before any credential
//!    leaves the server.
//! 3. CredSSP on both legs at once: as server to the client with the
//!    one-time proxy credential ([`ProxyCredentials`]) of the session's
//!    user, as client to the target with the vault's credential.
//! 4. The client's MCS Connect Initial, its selected protocol set to what
//!    the target chose.
//!
//! Then PDUs pass both ways (`relay.rs`), every one counted and shown to
//! the session's observers as data
//! ([`SessionObserver::on_data`](crate::session::SessionObserver::on_data),
//! the recorder's input: `record/rdp.rs`); terminate, expiry and revoke
//! send the client a disconnect PDU and close both legs within a second.
//!
//! - `browser.rs`: [`BrowserDesktop`], the same session with an in-process
//!   IronRDP client whose user is a web page (the console's desktop).
//! - `filter.rs`: the client's capabilities narrowed to what the decoder
//!   reads (no orders, codecs, compression or graphics pipeline).
//! - `credentials.rs`: [`ProxyCredentials`], the one-time proxy credentials.
//! - `io.rs`: a stream made `Sync` for IronRDP's framing.
//! - `pins.rs`: [`StoreCertificatePins`], target certificates pinned in the store.

#[cfg(feature = "rdp")]
mod browser;
mod credentials;
#[cfg(feature = "rdp")]
pub(crate) mod filter;
#[cfg(feature = "rdp")]
mod handshake;
#[cfg(feature = "rdp")]
mod io;
#[cfg(feature = "rdp")]
mod pins;
#[cfg(feature = "rdp")]
mod relay;
#[cfg(feature = "rdp")]
mod tls;

#[cfg(feature = "rdp")]
pub use browser::{BrowserDesktop, DesktopInput, DesktopRequest, MouseButton};
pub use credentials::{PROXY_CREDENTIAL_TTL, ProxyCredentials};
#[cfg(feature = "rdp")]
pub use pins::StoreCertificatePins;
#[cfg(feature = "rdp")]
pub use tls::{ProxyTls, ensure_tls_provider};

#[cfg(feature = "rdp")]
pub use proxy::{RdpProxy, RdpProxyOptions};

use async_trait::async_trait;

use crate::error::Result;
use crate::model::Service;
use crate::proxy::ssh::PinCheck;

/// The target certificates the proxy accepts, one per service, pinned on
/// first use by the SHA-256 of their public key.
#[async_trait]
pub trait CertificatePins: Send + Sync + std::fmt::Debug {
    /// Accepts `spki_sha256` (hex) for `service` when it is the pinned one,
    /// or pins it when none is; fails with `PermissionDenied`, naming both,
    /// when another is pinned.
    async fn check(&self, service: &Service, spki_sha256: &str) -> Result<PinCheck>;
}

#[cfg(feature = "rdp")]
mod proxy {
    use std::sync::Arc;
    use std::time::Duration;

    use async_trait::async_trait;
    use serde_json::json;

    use super::{CertificatePins, ProxyCredentials, ProxyTls, handshake, relay};
    use crate::error::{Error, ErrorKind, Result};
    use crate::hooks::CredentialKind;
    use crate::model::SessionProtocol;
    use crate::session::{LiveSession, Protocol, Upstream};
    use crate::tunnel::dialer::Connection;

    /// How the RDP proxy runs.
    #[derive(Debug, Clone)]
    pub struct RdpProxyOptions {
        /// How long the client and the target may take from the first
        /// byte to the end of NLA.
        pub login_timeout: Duration,
    }

    impl Default for RdpProxyOptions {
        fn default() -> Self {
            Self {
                login_timeout: Duration::from_secs(20),
            }
        }
    }

    /// The RDP privileged-session [`Protocol`].
    #[derive(Debug)]
    pub struct RdpProxy {
        tls: ProxyTls,
        credentials: Arc<ProxyCredentials>,
        pins: Arc<dyn CertificatePins>,
        options: RdpProxyOptions,
    }

    impl RdpProxy {
        /// A proxy presenting `tls` to clients, checking their one-time
        /// `credentials` and the targets' certificates with `pins`.
        pub fn new(
            tls: ProxyTls,
            credentials: Arc<ProxyCredentials>,
            pins: Arc<dyn CertificatePins>,
            options: RdpProxyOptions,
        ) -> Self {
            Self {
                tls,
                credentials,
                pins,
                options,
            }
        }

        /// The one-time proxy credentials this proxy accepts.
        pub fn credentials(&self) -> &Arc<ProxyCredentials> {
            &self.credentials
        }

        /// What the proxy shows its clients.
        pub(super) fn tls(&self) -> &ProxyTls {
            &self.tls
        }
    }

    fn gone() -> Error {
        Error::new(ErrorKind::Conflict, "the session is no longer live")
    }

    #[async_trait]
    impl Protocol for RdpProxy {
        fn kind(&self) -> SessionProtocol {
            SessionProtocol::Rdp
        }

        async fn run(
            &self,
            user: Connection,
            upstream: Upstream,
            live: &LiveSession,
        ) -> Result<()> {
            let account = live.user().ok_or_else(gone)?;
            let service = live.service().ok_or_else(gone)?;
            let proxy_secret = self.credentials.take(&account.id, &service.id);
            let credential = live.credential().await?.ok_or_else(|| {
                Error::new(
                    ErrorKind::PermissionDenied,
                    format!("no credential is stored for `{}`", service.name),
                )
            })?;
            if credential.kind != CredentialKind::Password {
                return Err(Error::invalid(format!(
                    "the credential of `{}` is a private key; RDP needs a password",
                    service.name
                )));
            }
            let setup = handshake::Setup {
                tls: &self.tls,
                pins: self.pins.as_ref(),
                service: &service,
                user_name: &account.name,
                proxy_secret,
                credential,
                control: live.control(),
            };
            let timeout = self.options.login_timeout;
            let cancel = live.cancel().clone();
            let linked = tokio::select! {
                r = tokio::time::timeout(timeout, handshake::run(setup, user, upstream)) => match r {
                    Ok(r) => r?,
                    Err(_) => {
                        return Err(Error::new(
                            ErrorKind::Timeout,
                            format!("the RDP connection was not set up within {timeout:?}"),
                        ))
                    }
                },
                () = cancel.cancelled() => return Ok(()),
            };
            live.record_event(
                "rdp.target_login",
                json!({ "username": linked.target_user, "client_protocol": linked.client_protocol,
                        "target_protocol": linked.target_protocol }),
            )
            .await?;
            relay::run(linked, live).await
        }
    }
}
