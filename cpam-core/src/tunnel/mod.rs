//! The SSH transport: the server [`hub`], the customer-side [`gatekeeper`]
//! agent, the vendor-side [`connect`] client (and its [`desktop`] launcher),
//! and the [`Dialer`] seam.
//!
//! One SSH port serves both kinds of peers. A gatekeeper dials out to the
//! server and authenticates with its enrolled key; the server reaches a
//! customer host by opening a `direct-tcpip` channel *to* the gatekeeper,
//! which checks its own allow-list before dialing. A Connection Manager opens
//! one `direct-tcpip` channel per local TCP connection, naming a service; the
//! server authorizes it as a session and splices the two channels in-process.

pub mod allow;
pub mod connect;
pub mod desktop;
pub mod dialer;
pub mod gatekeeper;
pub mod hub;
pub mod keys;
pub mod peer;
pub mod profile;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use russh::{Preferred, cipher, kex};
use tokio::net::{TcpListener, TcpSocket};

pub use dialer::{DialTarget, Dialer, DirectDialer, GatekeeperDialer};
pub use peer::{NODE_USER_PREFIX, PeerDialer};

use crate::error::{Error, Result};

/// SSH username a gatekeeper authenticates with once registered.
pub const GATEKEEPER_USER: &str = "cpam-gatekeeper";
/// Prefix of the SSH username that redeems a registration code: `cpam-register:CODE`.
pub const REGISTER_USER_PREFIX: &str = "cpam-register:";
/// Exec command of the gatekeeper's control channel (status lines flow up it).
pub const CONTROL_COMMAND: &str = "cpam-control";
/// Exec command a node runs on another to watch a session it runs: `cpam-watch SESSION_ID`.
pub const WATCH_COMMAND: &str = "cpam-watch";
/// Exec command that returns the gatekeeper's identity after registration.
pub const WHOAMI_COMMAND: &str = "cpam-whoami";
/// Exec command a Connection Manager runs to list its services: `cpam-services GATEKEEPER_ID`.
pub const SERVICES_COMMAND: &str = "cpam-services";
/// Exec command that checks a credential out: `cpam-checkout SERVICE GATEKEEPER_ID [SECONDS]`.
pub const CHECKOUT_COMMAND: &str = "cpam-checkout";
/// Exec command that checks the user's checkout of a service in: `cpam-checkin SERVICE GATEKEEPER_ID`.
pub const CHECKIN_COMMAND: &str = "cpam-checkin";
/// Exec command that lists the user's checkouts: `cpam-checkouts`.
pub const CHECKOUTS_COMMAND: &str = "cpam-checkouts";
/// Exec command that sets the user's master password; stdin carries
/// `{"current": .., "new": ..}` (login or current master password, and the new one).
pub const MASTER_PASSWORD_COMMAND: &str = "cpam-master-password";
/// Exec command that answers the user's IP Connect preference and the
/// server-wide setting: `{"user": MODE, "server": MODE}`.
pub const IPCONNECT_MODE_COMMAND: &str = "cpam-ipconnect-mode";
/// Separates a channel target (`SERVICE@GATEKEEPER_ID`) from the local
/// address an IP Connect client used: `SERVICE@GATEKEEPER_ID;local=ADDR:PORT`.
pub const LOCAL_ADDRESS_MARK: &str = ";local=";

/// Splits a vendor channel's target into `(SERVICE@GATEKEEPER_ID, local address)`.
pub fn split_channel_target(spec: &str) -> (&str, Option<&str>) {
    match spec.split_once(LOCAL_ADDRESS_MARK) {
        Some((target, local)) => (target, Some(local)),
        None => (spec, None),
    }
}
/// Exec command that issues a one-time RDP proxy credential:
/// `cpam-rdp-credential SERVICE GATEKEEPER_ID`; stdin carries `{"master": ..}`.
pub const RDP_CREDENTIAL_COMMAND: &str = "cpam-rdp-credential";

/// Interval between keepalives; with [`KEEPALIVE_MAX`] a dead link is noticed within 30 s.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Unanswered keepalives before the link is declared dead.
pub const KEEPALIVE_MAX: usize = 2;

/// Per-channel flow-control window. Bounds what one stalled reader can hold:
/// it re-opens only as the channel's reader takes the data (cpam's russh,
/// `third_party/russh/README.md`), so a stalled reader holds up its own
/// channel and no other.
pub const WINDOW_SIZE: u32 = 8 * 1024 * 1024;
/// Largest SSH data packet a stock SSH peer (OpenSSH on the privileged
/// session path) is offered.
pub const MAX_PACKET: u32 = 65_535;
/// Largest SSH data packet between cpam's own ends (connect client, hub,
/// gatekeeper): russh reads transport packets up to 256 KiB of payload, and
/// a quarter as many packets means a quarter of the per-packet work (MAC
/// setup, channel messages, wake-ups, write calls).
pub const PEER_MAX_PACKET: u32 = 256 * 1024;
/// Messages queued per channel for its reader; past it the connection's
/// loop parks them (bounded by [`WINDOW_SIZE`]) instead of waiting.
pub const CHANNEL_BUFFER: usize = 256;
/// Listen backlog: a burst of new connections is queued, not SYN-dropped.
pub const LISTEN_BACKLOG: u32 = 4096;

fn preferred() -> Preferred {
    Preferred {
        kex: std::borrow::Cow::Borrowed(&[
            kex::CURVE25519,
            kex::MLKEM768X25519_SHA256,
            kex::CURVE25519_PRE_RFC_8731,
            kex::EXTENSION_SUPPORT_AS_CLIENT,
            kex::EXTENSION_SUPPORT_AS_SERVER,
            kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
            kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
        ]),
        cipher: std::borrow::Cow::Borrowed(&[
            cipher::AES_128_GCM,
            cipher::AES_256_GCM,
            cipher::CHACHA20_POLY1305,
        ]),
        compression: std::borrow::Cow::Borrowed(&[russh::compression::NONE]),
        ..Preferred::default()
    }
}

/// The russh client configuration cpam uses on every outgoing link.
pub fn client_config() -> Arc<russh::client::Config> {
    Arc::new(base_client_config())
}

fn base_client_config() -> russh::client::Config {
    russh::client::Config {
        window_size: WINDOW_SIZE,
        maximum_packet_size: MAX_PACKET,
        channel_buffer_size: CHANNEL_BUFFER,
        preferred: preferred(),
        inactivity_timeout: None,
        keepalive_interval: Some(KEEPALIVE_INTERVAL),
        keepalive_max: KEEPALIVE_MAX,
        nodelay: true,
        ..Default::default()
    }
}

/// The russh client configuration of links to a cpam hub (gatekeeper,
/// connect client): like [`client_config`], with [`PEER_MAX_PACKET`]. russh
/// logs an error for a packet size above 64 KiB at connect, which
/// [`LOG_FILTER`] mutes; its transport accepts up to 256 KiB.
pub fn peer_client_config() -> Arc<russh::client::Config> {
    Arc::new(russh::client::Config {
        maximum_packet_size: PEER_MAX_PACKET,
        ..base_client_config()
    })
}

/// The default log filter of cpam's programs (`CPAM_LOG` replaces it):
/// `info`, without russh's connect-time warning that a packet size above
/// 64 KiB is unusual (see [`PEER_MAX_PACKET`]); russh's key exchange and
/// channel errors stay visible.
pub const LOG_FILTER: &str = "info,russh::client=off,russh::client::encrypted=info,\
                              russh::client::kex=info,russh::client::session=info";

/// The russh server configuration of the hub.
pub fn server_config(host_key: russh::keys::PrivateKey) -> Arc<russh::server::Config> {
    Arc::new(base_server_config(host_key))
}

/// The server settings every cpam SSH endpoint starts from.
pub(crate) fn base_server_config(host_key: russh::keys::PrivateKey) -> russh::server::Config {
    russh::server::Config {
        server_id: russh::SshId::Standard(std::borrow::Cow::Borrowed(concat!(
            "SSH-2.0-cpam_",
            env!("CARGO_PKG_VERSION")
        ))),
        methods: russh::MethodSet::from(
            &[russh::MethodKind::PublicKey, russh::MethodKind::Password][..],
        ),
        auth_rejection_time: Duration::from_millis(300),
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![host_key],
        window_size: WINDOW_SIZE,
        maximum_packet_size: MAX_PACKET,
        channel_buffer_size: CHANNEL_BUFFER,
        preferred: preferred(),
        max_auth_attempts: 6,
        inactivity_timeout: None,
        keepalive_interval: Some(KEEPALIVE_INTERVAL),
        keepalive_max: KEEPALIVE_MAX,
        nodelay: true,
        ..Default::default()
    }
}

/// Binds a TCP listener with a deep backlog and `SO_REUSEADDR`.
pub fn bind_listener(addr: SocketAddr) -> Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket
        .bind(addr)
        .map_err(|e| Error::from(e).context(&format!("cannot listen on {addr}")))?;
    Ok(socket.listen(LISTEN_BACKLOG)?)
}

/// Jittered exponential backoff: 250 ms doubling to a 10 s cap.
#[derive(Debug, Clone)]
pub struct Backoff {
    attempt: u32,
    cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            attempt: 0,
            cap: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// The next delay: full jitter between half and all of `min(cap, 250 ms * 2^n)`.
    pub fn next_delay(&mut self) -> Duration {
        use rand::RngExt as _;
        let base = Duration::from_millis(250).saturating_mul(1 << self.attempt.min(10));
        let ceiling = base.min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(ms / 2..=ms))
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Resolves `host:port` text to socket addresses.
pub async fn resolve(addr: &str) -> Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| Error::invalid(format!("cannot resolve `{addr}`: {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(Error::invalid(format!("`{addr}` resolves to no address")));
    }
    Ok(addrs)
}

/// The hex SHA-256 under which a registration code is stored.
pub fn code_hash(code: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(code.trim().as_bytes()))
}

#[cfg(test)]
mod flow_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_and_resets() {
        let mut b = Backoff::default();
        let first = b.next_delay();
        assert!(first <= Duration::from_millis(250) && first >= Duration::from_millis(125));
        let mut last = first;
        for _ in 0..20 {
            last = b.next_delay();
            assert!(last <= Duration::from_secs(10));
        }
        assert!(last >= Duration::from_secs(5));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(250));
    }
}
