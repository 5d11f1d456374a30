//! `cpam-connect desktop SERVICE`: Desktop Sharing. Forwards a local port to
//! SERVICE (one audited session per connection, as `forward` does) and
//! launches a remote desktop client on it ([`DesktopClient`]: the
//! platform's native one or `--client`). Without a client it prints the
//! address to connect one to and forwards until interrupted.

use std::net::SocketAddr;
use std::path::PathBuf;

use cpam_core::tunnel::connect::ConnectClient;
use cpam_core::tunnel::desktop::DesktopClient;
use tokio_util::sync::CancellationToken;

/// What `desktop` was asked to do.
#[derive(clap::Args, Debug)]
pub struct DesktopArgs {
    /// The desktop sharing (or rdp) service.
    pub service: String,
    /// Local ADDR:PORT to forward (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// The client program to launch instead of the platform's; `{addr}` in
    /// its arguments is replaced by the forwarded address, else `/v:ADDR`
    /// is passed first.
    #[arg(long)]
    pub client: Option<PathBuf>,
    /// Only forward and print the address; launch nothing.
    #[arg(long)]
    pub no_launch: bool,
    /// Arguments passed on to the client (after `--`), e.g.
    /// `-- /u:alice /cert:ignore`.
    #[arg(last = true)]
    pub client_args: Vec<String>,
}

/// Runs `desktop`: returns the client's exit code (0 when none was
/// launched and the forward was interrupted).
pub async fn run(client: std::sync::Arc<ConnectClient>, args: DesktopArgs) -> anyhow::Result<i32> {
    let addr: SocketAddr = args
        .listen
        .parse()
        .map_err(|_| anyhow::anyhow!("--listen `{}` must be ADDR:PORT", args.listen))?;
    let listener = cpam_core::tunnel::bind_listener(addr)?;
    let local = listener.local_addr()?;
    let stop = CancellationToken::new();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            cpam_core::signal::shutdown().await;
            stop.cancel();
        });
    }
    client.connect_with_retry(&stop).await?;
    cpam_core::outln!("cpam-connect forwarding {} on {local}", args.service);
    let forward = tokio::spawn(client.forward(args.service.clone(), listener, stop.clone()));
    let code = if args.no_launch {
        stop.cancelled().await;
        0
    } else {
        match DesktopClient::choose(args.client.as_deref(), &args.client_args, local) {
            Ok(launch) => launch.run(&stop).await?,
            Err(e) if e.kind() == cpam_core::ErrorKind::NotFound && args.client.is_none() => {
                cpam_core::outln!("{}", e.message());
                stop.cancelled().await;
                0
            }
            Err(e) => return Err(e.into()),
        }
    };
    stop.cancel();
    forward.await??;
    Ok(code)
}
