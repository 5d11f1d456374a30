//! `cpam-server recordings`: list, verify, cat and search the session
//! recordings of a data dir, and an RDP recording's desktop at a time as a
//! PNG and its client's keystroke and mouse track (`cpam_core::record`).

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use cpam_core::model::{SessionId, Timestamp};
use cpam_core::record::{
    FileRecordingStore, RecordingFilter, RecordingId, RecordingInfo, RecordingStore,
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
    },
    /// Writes the recording (asciicast v2) to stdout.
    Cat {
        id: String,
        #[command(flatten)]
        c: Common,
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
    },
    /// The keys and the mouse of an RDP recording's client, in order,
    /// with their times.
    Input {
        /// The recording (`<session id>.<channel>`).
        id: String,
        #[command(flatten)]
        c: Common,
    },
    /// The recordings whose output shows TEXT, with the times it shows.
    Search {
        text: String,
        #[arg(long)]
        session: Option<String>,
        #[command(flatten)]
        c: Common,
    },
}

fn store(c: &Common) -> anyhow::Result<FileRecordingStore> {
    let data = DataDir::open(&c.data_dir)?;
    Ok(data.recordings()?)
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
        } => {
            let filter = RecordingFilter {
                session: session.map(SessionId),
                since: time(since)?,
                until: time(until)?,
            };
            let list = store(&c)?.list(&filter)?;
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
        RecordingsCmd::Verify { id, all, c } => {
            if all {
                let report = DataDir::open(&c.data_dir)?.verify_recordings().await?;
                let ok = report.failed.is_empty();
                print(c.json, json!(report), || report.to_text());
                return Ok(if ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                });
            }
            let id = RecordingId::parse(id.as_deref().unwrap_or_default())?;
            match store(&c)?.verify(&id) {
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
        RecordingsCmd::Cat { id, c } => {
            let id = RecordingId::parse(&id)?;
            let mut reader = store(&c)?.open(&id)?;
            let mut out = std::io::stdout().lock();
            std::io::copy(&mut reader, &mut out).context("writing the recording")?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        RecordingsCmd::Frame { id, at, out, c } => {
            let id = RecordingId::parse(&id)?;
            let png = cpam_core::record::rdp_frame_png(&store(&c)?, &id, at)?;
            std::fs::write(&out, &png).with_context(|| format!("writing {}", out.display()))?;
            Ok(print(
                c.json,
                json!({ "id": id, "at": at, "out": out, "bytes": png.len() }),
                || format!("{id} at {at} s: {} ({} bytes)", out.display(), png.len()),
            ))
        }
        RecordingsCmd::Input { id, c } => {
            let id = RecordingId::parse(&id)?;
            let track = cpam_core::record::rdp_input(&store(&c)?, &id)?;
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
        RecordingsCmd::Search { text, session, c } => {
            let filter = RecordingFilter {
                session: session.map(SessionId),
                ..RecordingFilter::default()
            };
            let hits = store(&c)?.search(&text, &filter)?;
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
