//! A misbehaving client of the hub, for the resource-limit tests.
//!
//! `flood channels --profile P --count N --bytes B`: signs in with the
//! profile's key, opens N session channels and sends B bytes on each
//! without ever making a request; prints `flooded <opened> <refused>`, then
//! holds the connection until SIGTERM.
//!
//! `flood stall --server ADDR --count N [--from IP]`: opens N TCP
//! connections that send their version line and then nothing (stuck in key
//! exchange); prints `stalled <n>`, then holds them until SIGTERM and
//! prints `closed <n>`: how many the server closed meanwhile.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context as _;
use cpam_core::tunnel::keys;
use cpam_core::tunnel::profile::Profile;
use russh::keys::PrivateKeyWithHashAlg;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

struct Trusting;

impl russh::client::Handler for Trusting {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

async fn terminated() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    term.recv().await;
    Ok(())
}

async fn channels(args: &[String]) -> anyhow::Result<()> {
    let profile = Profile::load(arg(args, "--profile").context("--profile")?.as_ref())?;
    let count: usize = arg(args, "--count").context("--count")?.parse()?;
    let bytes: usize = arg(args, "--bytes").context("--bytes")?.parse()?;
    let key = keys::parse_private(profile.key.expose(), "profile key")?;
    let mut handle = russh::client::connect(
        cpam_core::tunnel::client_config(),
        &profile.server,
        Trusting,
    )
    .await?;
    let auth = handle
        .authenticate_publickey(
            profile.user.clone(),
            PrivateKeyWithHashAlg::new(Arc::new(key), None),
        )
        .await?;
    anyhow::ensure!(auth.success(), "the server refused the profile's key");
    let (mut opened, mut refused) = (Vec::new(), 0usize);
    for _ in 0..count {
        match handle.channel_open_session().await {
            Ok(ch) => opened.push(ch),
            Err(_) => refused += 1,
        }
    }
    let chunk = vec![0x5a_u8; 32 * 1024];
    let mut tasks = tokio::task::JoinSet::new();
    for ch in &opened {
        let writer = ch.make_writer();
        let chunk = chunk.clone();
        tasks.spawn(async move {
            let mut writer = writer;
            let mut left = bytes;
            while left > 0 {
                let n = left.min(chunk.len());
                if writer.write_all(&chunk[..n]).await.is_err() {
                    break;
                }
                left -= n;
            }
        });
    }
    // Whatever the server does with it: the data is out (or refused).
    let _ = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    println!("flooded {} {refused}", opened.len());
    use std::io::Write as _;
    std::io::stdout().flush()?;
    terminated().await?;
    drop(opened);
    Ok(())
}

async fn stall(args: &[String]) -> anyhow::Result<()> {
    let server: SocketAddr = arg(args, "--server").context("--server")?.parse()?;
    let count: usize = arg(args, "--count").context("--count")?.parse()?;
    let from = arg(args, "--from")
        .map(|f| f.parse::<std::net::IpAddr>())
        .transpose()?;
    let closed = Arc::new(AtomicUsize::new(0));
    let mut held = tokio::task::JoinSet::new();
    let mut stalled = 0;
    for _ in 0..count {
        let socket = tokio::net::TcpSocket::new_v4()?;
        if let Some(ip) = from {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        let Ok(mut stream) = socket.connect(server).await else {
            closed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        if stream.write_all(b"SSH-2.0-stalled\r\n").await.is_err() {
            closed.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        stalled += 1;
        let closed = closed.clone();
        // Reads what the server sends (its version and key exchange offer)
        // and never answers; counts the server closing it.
        held.spawn(async move {
            let mut buf = [0u8; 4096];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        closed.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    Ok(_) => {}
                }
            }
        });
    }
    println!("stalled {stalled}");
    use std::io::Write as _;
    std::io::stdout().flush()?;
    terminated().await?;
    println!("closed {}", closed.load(Ordering::Relaxed));
    held.abort_all();
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("channels") => channels(&args).await,
        Some("stall") => stall(&args).await,
        _ => anyhow::bail!("usage: flood channels|stall ..."),
    }
}
