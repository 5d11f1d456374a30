//! Per-channel flow control (cpam's russh, `third_party/russh/README.md`)
//! between an in-process russh server and client with cpam's settings: a
//! channel whose reader stops holds up no other channel, its peer may send
//! it one window and no more, and it gets everything once it reads again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use russh::keys::{Algorithm, PrivateKey, PrivateKeyWithHashAlg};
use russh::server::{Auth, ChannelOpenHandle, Msg as ServerMsg, Session};
use russh::{Channel, ChannelMsg};
use tokio::sync::mpsc;

use super::{WINDOW_SIZE, client_config, server_config};

struct Server {
    opened: mpsc::UnboundedSender<Channel<ServerMsg>>,
}

impl russh::server::Handler for Server {
    type Error = russh::Error;

    async fn auth_publickey(
        &mut self,
        _user: &str,
        _key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<ServerMsg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        let _ = self.opened.send(channel);
        Ok(())
    }
}

struct Client;

impl russh::client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

fn key() -> PrivateKey {
    PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).expect("a key")
}

/// Sends 16 KiB chunks on `channel` until it fails, counting what the
/// window let through: a window is 512 of them, twice what a channel's
/// queue takes (`CHANNEL_BUFFER`), so the rest is parked by the loop.
fn flood(channel: Channel<ServerMsg>, sent: Arc<AtomicU64>) {
    tokio::spawn(async move {
        let chunk = bytes::Bytes::from(vec![0x5a_u8; 16 * 1024]);
        while channel.data_bytes(chunk.clone()).await.is_ok() {
            sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        }
    });
}

/// Reads `channel` until it has `want` bytes.
async fn read(channel: &mut Channel<russh::client::Msg>, want: u64) -> u64 {
    let mut got = 0;
    while got < want {
        match channel.wait().await {
            Some(ChannelMsg::Data { data }) => got += data.len() as u64,
            Some(_) => {}
            None => break,
        }
    }
    got
}

#[tokio::test]
async fn a_channel_whose_reader_stops_holds_up_only_itself() {
    let (server_io, client_io) = tokio::io::duplex(256 * 1024);
    let (opened, mut accepted) = mpsc::unbounded_channel();
    let config = server_config(key());
    tokio::spawn(async move {
        if let Ok(running) = russh::server::run_stream(config, server_io, Server { opened }).await {
            let _ = running.await;
        }
    });
    let mut client = russh::client::connect_stream(client_config(), client_io, Client)
        .await
        .expect("connect");
    let auth = client
        .authenticate_publickey("anyone", PrivateKeyWithHashAlg::new(Arc::new(key()), None))
        .await
        .expect("sign in");
    assert!(auth.success());

    let mut stopped = client.channel_open_session().await.expect("channel");
    let mut running = client.channel_open_session().await.expect("channel");
    let (stopped_sent, running_sent) = (Arc::default(), Arc::default());
    let first = accepted.recv().await.expect("server channel");
    flood(first, Arc::clone(&stopped_sent));
    let second = accepted.recv().await.expect("server channel");
    flood(second, Arc::clone(&running_sent));

    // `stopped` is not read: the other channel moves many windows' worth
    // meanwhile, on the same connection.
    let moved = tokio::time::timeout(
        Duration::from_secs(60),
        read(&mut running, 8 * u64::from(WINDOW_SIZE)),
    )
    .await
    .expect("the running channel stalled behind the stopped one");
    assert!(moved >= 8 * u64::from(WINDOW_SIZE));
    // The connection still answers.
    tokio::time::timeout(Duration::from_secs(10), client.send_ping())
        .await
        .expect("the connection stalled")
        .expect("ping");
    // The stopped channel's peer got one window and no more.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let held = stopped_sent.load(Ordering::SeqCst);
    assert!(
        held <= u64::from(WINDOW_SIZE),
        "{held} bytes sent to a reader that took none (window {WINDOW_SIZE})"
    );
    assert!(held >= u64::from(WINDOW_SIZE) / 2, "only {held} bytes sent");

    // Once it reads again, it gets what was held and more, windows re-opened.
    let got = tokio::time::timeout(
        Duration::from_secs(60),
        read(&mut stopped, 4 * u64::from(WINDOW_SIZE)),
    )
    .await
    .expect("the stopped channel never resumed");
    assert!(got >= 4 * u64::from(WINDOW_SIZE));
    assert!(running_sent.load(Ordering::SeqCst) >= moved);
}
