//! `cpam-connect put` / `get`: arguments, the progress bar and the summary;
//! the transfer itself is `cpam_core::transfer`.

use std::ffi::OsString;
use std::io::IsTerminal as _;
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use cpam_core::transfer::{self, Options, Outcome, Progress};
use cpam_core::tunnel::connect::ConnectClient;
use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

/// `put SERVICE LOCAL [REMOTE]`.
#[derive(Args, Debug)]
pub struct PutArgs {
    service: String,
    /// The file to upload.
    local: PathBuf,
    /// Where on the target (default: LOCAL's file name, in the target
    /// account's home directory).
    remote: Option<OsString>,
    /// Continue an interrupted upload from the remote file's size.
    #[arg(long)]
    resume: bool,
    /// At most this many Kbit/s (like `sftp -l`).
    #[arg(long, value_name = "KBIT")]
    limit: Option<u64>,
    #[arg(long)]
    json: bool,
}

/// `get SERVICE REMOTE [LOCAL]`.
#[derive(Args, Debug)]
pub struct GetArgs {
    service: String,
    /// The file on the target.
    remote: OsString,
    /// Where to write it (default: REMOTE's file name, here).
    local: Option<PathBuf>,
    /// Continue an interrupted download from the local file's size.
    #[arg(long)]
    resume: bool,
    /// At most this many Kbit/s (like `sftp -l`).
    #[arg(long, value_name = "KBIT")]
    limit: Option<u64>,
    #[arg(long)]
    json: bool,
}

/// An `indicatif` bar on stderr, hidden unless stdout and stderr are
/// terminals.
struct Bar(ProgressBar);

impl Bar {
    fn new() -> Bar {
        if !(std::io::stdout().is_terminal() && std::io::stderr().is_terminal()) {
            return Bar(ProgressBar::hidden());
        }
        let bar = ProgressBar::new(0);
        if let Ok(style) = ProgressStyle::with_template(
            "{wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
        ) {
            bar.set_style(style);
        }
        Bar(bar)
    }
}

impl Progress for Bar {
    fn begin(&mut self, total: u64, done: u64) {
        self.0.set_length(total);
        self.0.set_position(done);
        self.0.reset_eta();
    }

    fn advance(&mut self, bytes: u64) {
        self.0.inc(bytes);
    }
}

async fn session(
    client: &Arc<ConnectClient>,
    service: &str,
) -> anyhow::Result<transfer::Connection> {
    let master = crate::read_master_password()?;
    let stop = CancellationToken::new();
    client.connect_with_retry(&stop).await?;
    Ok(transfer::connect(client, service, &master).await?)
}

pub async fn put(client: Arc<ConnectClient>, args: PutArgs) -> anyhow::Result<i32> {
    let remote = match args.remote {
        Some(r) => r.into_vec(),
        None => args
            .local
            .file_name()
            .ok_or_else(|| anyhow::anyhow!("`{}` names no file", args.local.display()))?
            .as_bytes()
            .to_vec(),
    };
    let mut conn = session(&client, &args.service).await?;
    let mut bar = Bar::new();
    let options = Options {
        resume: args.resume,
        limit: args.limit.map(|k| k * 1000 / 8),
    };
    let result = transfer::put(&mut conn.sftp, &args.local, &remote, options, &mut bar).await;
    bar.0.finish_and_clear();
    conn.close().await;
    show(&result?, args.json)
}

pub async fn get(client: Arc<ConnectClient>, args: GetArgs) -> anyhow::Result<i32> {
    let local = match args.local {
        Some(l) => l,
        None => Path::new(&args.remote)
            .file_name()
            .map(PathBuf::from)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "`{}` names no file; give LOCAL",
                    args.remote.to_string_lossy()
                )
            })?,
    };
    let remote = args.remote.into_vec();
    let mut conn = session(&client, &args.service).await?;
    let mut bar = Bar::new();
    let options = Options {
        resume: args.resume,
        limit: args.limit.map(|k| k * 1000 / 8),
    };
    let result = transfer::get(&mut conn.sftp, &remote, &local, options, &mut bar).await;
    bar.0.finish_and_clear();
    conn.close().await;
    show(&result?, args.json)
}

fn show(o: &Outcome, json: bool) -> anyhow::Result<i32> {
    let remote = String::from_utf8_lossy(&o.remote);
    if json {
        let v = serde_json::json!({
            "direction": o.direction.as_str(),
            "remote": remote,
            "local": o.local.display().to_string(),
            "size": o.file_size,
            "sha256": o.file_sha256,
            "resumed_from": o.resumed_from,
            "audited": {
                "offset": o.audited.offset,
                "size": o.audited.size,
                "sha256": o.audited.sha256,
            },
        });
        cpam_core::outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    let (from, to) = match o.direction {
        transfer::Direction::Upload => (o.local.display().to_string(), remote.into_owned()),
        transfer::Direction::Download => (remote.into_owned(), o.local.display().to_string()),
    };
    cpam_core::outln!("{from} -> {to}: {} bytes", o.file_size);
    match o.resumed_from {
        None => cpam_core::outln!(
            "sha256 {} (the file; the audit record's too)",
            o.file_sha256
        ),
        Some(at) => {
            cpam_core::outln!("resumed at byte {at}");
            cpam_core::outln!("sha256 {} (the whole file)", o.file_sha256);
            cpam_core::outln!(
                "audit record: offset {}, {} bytes, sha256 {}",
                o.audited.offset,
                o.audited.size,
                o.audited.sha256
            );
        }
    }
    Ok(0)
}
