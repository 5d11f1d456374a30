//! `record-driver --data-dir D [--lines N] [--interval-ms M]`: opens the
//! data dir's server (which seals what a killed run left), runs one
//! recorded session of the test ticker through the core API, prints
//! `session <id>`, `emitted <n>` per line and `sealed <count>` at start,
//! then stops the server. With `--lines 0` it only opens and stops.
//! With `CPAM_RECORDINGS=s3://...` (and the AWS_* variables) it records to
//! that object store, as `cpam-server run` does.

use std::time::Duration;

use anyhow::Context as _;
use cpam_core::server::{Server, ServerOptions, Source};
use cpam_tests::recording::{Ticker, run_session};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = arg(&args, "--data-dir").context("--data-dir is required")?;
    let lines = arg(&args, "--lines").map_or(Ok(10), |v| v.parse())?;
    let interval = arg(&args, "--interval-ms").map_or(Ok(100), |v| v.parse())?;
    let mut options = ServerOptions::default();
    if let Ok(url) = std::env::var("CPAM_RECORDINGS") {
        options.recordings = cpam_core::record::RecordingStorage::ObjectStore(
            cpam_core::record::ObjectStoreConfig::from_env(&url),
        );
    }
    let server = Server::open(&Source::DataDir(dir.into()), options).await?;
    println!("sealed {}", server.recovered().recordings_sealed);
    if lines > 0 {
        let ticker = Ticker {
            lines,
            interval: Duration::from_millis(interval),
            announce: true,
        };
        let ended = run_session(&server, &ticker, |id| println!("session {id}")).await?;
        println!("ended {:?}", ended.end_reason);
    }
    // A loaded machine may take a while to fsync and seal the recording.
    server.stop(Duration::from_secs(30)).await;
    Ok(())
}
