//! `cpam-server recordings`: list, verify, cat and search the session
//! recordings of a data dir (or of the object store it records to), and an
//! RDP recording's desktop at a time as a PNG and its client's keystroke and
//! mouse track (`cpam_core::record`).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use cpam_core::Secret;
use cpam_core::model::{SessionId, Timestamp};
use cpam_core::record::{
    ObjectStoreConfig, RecordingFilter, RecordingId, RecordingInfo, RecordingStorage,
    RecordingStore,
};
use cpam_core::server::DataDir;
use serde_json::json;

use crate::admin::{Common, print, table};

#[derive(Subcommand, Debug)]
pub enum RecordingsCmd {
    /// Recordings, oldest first.
    List {
        /// Only this session's.
        #[arg(long)]
        session: Option<String>,
        /// Started at or after (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Started before (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        #[command(flatten)]
        c: Common,
        #[command(flatten)]
        s: StorageArgs,
    },
    /// Checks a sealed recording (file, chain, manifest, signature); exits
    /// non-zero with what is wrong.
    Verify {
        /// The recording (`<session id>.<channel>`).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<String>,
        /// Every sealed recording.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        c: Common,
        #[command(flatten)]
        s: StorageArgs,
    },
    /// Writes the recording (asciicast v2) to stdout.
    Cat {
        id: String,
        #[command(flatten)]
        c: Common,
        #[command(flatten)]
        s: StorageArgs,
    },
    /// Writes the desktop of an RDP recording at a time as a PNG file.
    Frame {
        /// The recording (`<session id>.<channel>`).
        id: String,
        /// Seconds from the recording's start.
        #[arg(long)]
        at: f64,
        /// The PNG file to write.
        #[arg(long)]
        out: std::path::PathBuf,
        #[command(flatten)]
        c: Common,
        #[command(flatten)]
        s: StorageArgs,
    },
    /// Writes an RDP recording as a video (.webm or .mp4) through ffmpeg.
    Video {
        /// The recording (`<session id>.<channel>`).
        id: String,
        /// The video file to write (`.webm`: VP8, `.mp4`: H.264).
        #[arg(long)]
        out: std::path::PathBuf,
        /// Frames per second (1 to 60).
        #[arg(long, default_value_t = 10)]
        fps: u32,
        /// The ffmpeg program.
        #[arg(long, default_value = "ffmpeg")]
        ffmpeg: std::path::PathBuf,
        #[command(flatten)]
        c: Common,
        #[command(flatten)]
        s: StorageArgs,
    },
    /// The keys and the mouse of an RDP recording's client, in order,
    /// with their times.
    Input {
        /// The recording (`<session id>.<channel>`).
        id: String,
        #[command(flatten)]
        c: Common,
        #[command(flatten)]
        s: StorageArgs,
    },
    /// The recordings whose output shows TEXT, with the times it shows.
    Search {
        text: String,
        #[arg(long)]
        session: Option<String>,
        #[command(flatten)]
        c: Common,
        #[command(flatten)]
        s: StorageArgs,
    },
}

/// Where recordings are kept, for `run` and `recordings`.
#[derive(Args, Debug, Clone, Default)]
pub struct StorageArgs {
    /// Keep recordings in an S3-compatible object store,
    /// `s3://BUCKET/PREFIX`, spooled under the data dir until uploaded
    /// (default: files under the data dir). The endpoint, region and
    /// credentials default to the standard AWS_* variables.
    #[arg(long, env = "CPAM_RECORDINGS", value_name = "URL")]
    pub recordings: Option<String>,
    /// The object store's endpoint, `http(s)://HOST:PORT` (default:
    /// AWS_ENDPOINT_URL, else AWS itself).
    #[arg(long, value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// The object store's region (default: AWS_REGION, else us-east-1).
    #[arg(long)]
    pub s3_region: Option<String>,
    /// The access key id (default: AWS_ACCESS_KEY_ID).
    #[arg(long)]
    pub s3_access_key_id: Option<String>,
    /// A file holding the secret access key (default:
    /// AWS_SECRET_ACCESS_KEY; never on the command line, where every local
    /// user can read it).
    #[arg(long, value_name = "FILE")]
    pub s3_secret_access_key_file: Option<PathBuf>,
}

impl StorageArgs {
    /// The storage these arguments name.
    pub fn storage(&self) -> anyhow::Result<RecordingStorage> {
        let Some(url) = &self.recordings else {
            let stray = [
                ("--s3-endpoint", self.s3_endpoint.is_some()),
                ("--s3-region", self.s3_region.is_some()),
                ("--s3-access-key-id", self.s3_access_key_id.is_some()),
                (
                    "--s3-secret-access-key-file",
                    self.s3_secret_access_key_file.is_some(),
                ),
            ];
            if let Some((flag, _)) = stray.iter().find(|(_, set)| *set) {
                anyhow::bail!("{flag} needs --recordings s3://BUCKET/PREFIX");
            }
            return Ok(RecordingStorage::DataDir);
        };
        let mut config = ObjectStoreConfig::from_env(url);
        config.bucket_and_prefix()?;
        if let Some(e) = &self.s3_endpoint {
            config.endpoint = Some(e.clone());
        }
        if let Some(r) = &self.s3_region {
            config.region = Some(r.clone());
        }
        if let Some(k) = &self.s3_access_key_id {
            config.access_key_id = Some(k.clone());
        }
        if let Some(path) = &self.s3_secret_access_key_file {
            let text = std::fs::read_to_string(path).with_context(|| {
                format!("cannot read the secret access key file {}", path.display())
            })?;
            config.secret_access_key = Some(Secret::new(text.trim().to_string()));
        }
        Ok(RecordingStorage::ObjectStore(config))
    }
}

fn store(c: &Common, s: &StorageArgs) -> anyhow::Result<Arc<dyn RecordingStore>> {
    let data = DataDir::open(&c.data_dir)?;
    Ok(data.recording_store(&s.storage()?)?)
}

fn time(text: Option<String>) -> anyhow::Result<Option<Timestamp>> {
    Ok(text.map(|t| Timestamp::parse_rfc3339(&t)).transpose()?)
}

fn state(info: &RecordingInfo) -> &'static str {
    info.state.map_or("open", |s| s.as_str())
}

pub async fn recordings(cmd: RecordingsCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        RecordingsCmd::List {
            session,
            since,
            until,
            c,
            s,
        } => {
            let filter = RecordingFilter {
                session: session.map(SessionId),
                since: time(since)?,
                until: time(until)?,
            };
            let list = store(&c, &s)?.list(&filter)?;
            Ok(print(c.json, json!(list), || {
                table(
                    &list,
                    &[
                        ("ID", &|r| r.id.to_string()),
                        ("SESSION", &|r| r.session_id.to_string()),
                        ("CHANNEL", &|r| r.channel.to_string()),
                        ("KIND", &|r| r.kind.as_str().into()),
                        ("STARTED", &|r| {
                            r.started_at.map(|t| t.to_rfc3339()).unwrap_or_default()
                        }),
                        ("ENDED", &|r| {
                            r.ended_at.map(|t| t.to_rfc3339()).unwrap_or_default()
                        }),
                        ("BYTES", &|r| r.size.to_string()),
                        ("STATE", &|r| state(r).into()),
                    ],
                )
            }))
        }
        RecordingsCmd::Verify { id, all, c, s } => {
            if all {
                let report = DataDir::open(&c.data_dir)?
                    .verify_recordings_in(&s.storage()?)
                    .await?;
                let ok = report.failed.is_empty();
                print(c.json, json!(report), || report.to_text());
                return Ok(if ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                });
            }
            let id = RecordingId::parse(id.as_deref().unwrap_or_default())?;
            match store(&c, &s)?.verify(&id) {
                Ok(v) => Ok(print(c.json, json!(v), || {
                    format!(
                        "recording {id} verified: {}, {} bytes in {} chunks, signed by {}",
                        v.state.as_str(),
                        v.size,
                        v.chunks,
                        v.signer
                    )
                })),
                Err(e) => {
                    print(
                        c.json,
                        json!({ "id": id, "error": e.message(), "kind": e.kind().as_str() }),
                        String::new,
                    );
                    eprintln!("error: {}", e.message());
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        RecordingsCmd::Cat { id, c, s } => {
            let id = RecordingId::parse(&id)?;
            let mut reader = store(&c, &s)?.open(&id)?;
            let mut out = std::io::stdout().lock();
            std::io::copy(&mut reader, &mut out).context("writing the recording")?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        RecordingsCmd::Frame { id, at, out, c, s } => {
            let id = RecordingId::parse(&id)?;
            let png = cpam_core::record::rdp_frame_png(store(&c, &s)?.as_ref(), &id, at)?;
            std::fs::write(&out, &png).with_context(|| format!("writing {}", out.display()))?;
            Ok(print(
                c.json,
                json!({ "id": id, "at": at, "out": out, "bytes": png.len() }),
                || format!("{id} at {at} s: {} ({} bytes)", out.display(), png.len()),
            ))
        }
        RecordingsCmd::Video {
            id,
            out,
            fps,
            ffmpeg,
            c,
            s,
        } => {
            let id = RecordingId::parse(&id)?;
            let options = cpam_core::record::VideoOptions { fps, ffmpeg };
            let v = cpam_core::record::rdp_video(store(&c, &s)?.as_ref(), &id, &out, &options)?;
            Ok(print(c.json, json!(v), || {
                format!(
                    "{id}: {} ({}x{}, {} frames at {} fps, {:.1} s, {} bytes)",
                    v.path.display(),
                    v.width,
                    v.height,
                    v.frames,
                    v.fps,
                    v.duration,
                    v.bytes
                )
            }))
        }
        RecordingsCmd::Input { id, c, s } => {
            let id = RecordingId::parse(&id)?;
            let track = cpam_core::record::rdp_input(store(&c, &s)?.as_ref(), &id)?;
            Ok(print(c.json, json!(track), || {
                let mut text = table(
                    &track.events,
                    &[
                        ("AT (s)", &|e| format!("{:.3}", e.t)),
                        ("INPUT", &|e| e.event.describe()),
                    ],
                );
                text.push_str(&format!(
                    "\n{} inputs in {} input PDUs, {} not decoded{}",
                    track.events.len(),
                    track.pdus,
                    track.skipped,
                    track
                        .last_error
                        .as_deref()
                        .map(|e| format!(" (last: {e})"))
                        .unwrap_or_default()
                ));
                text
            }))
        }
        RecordingsCmd::Search {
            text,
            session,
            c,
            s,
        } => {
            let filter = RecordingFilter {
                session: session.map(SessionId),
                ..RecordingFilter::default()
            };
            let hits = store(&c, &s)?.search(&text, &filter)?;
            Ok(print(c.json, json!(hits), || {
                table(
                    &hits,
                    &[
                        ("ID", &|h| h.id.to_string()),
                        ("SESSION", &|h| h.session_id.to_string()),
                        ("AT (s)", &|h| {
                            h.times
                                .iter()
                                .map(|t| format!("{t:.3}"))
                                .collect::<Vec<_>>()
                                .join(",")
                        }),
                    ],
                )
            }))
        }
    }
}
