//! `cpam-server recordings`: list, verify, cat and search the session
//! recordings of a data dir (`cpam_core::record`).

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

pub fn recordings(cmd: RecordingsCmd) -> anyhow::Result<ExitCode> {
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
            let store = store(&c)?;
            if all {
                let report = verify_all(&store)?;
                let ok = report.failed.is_empty();
                print(c.json, report.to_json(), || report.to_text());
                return Ok(if ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                });
            }
            let id = RecordingId::parse(id.as_deref().unwrap_or_default())?;
            match store.verify(&id) {
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

/// What checking every sealed recording found.
#[derive(Debug, Default)]
pub struct VerifyAll {
    pub verified: u64,
    /// Recordings still being written (not sealed).
    pub open: u64,
    /// The recordings that failed and why.
    pub failed: Vec<(RecordingId, String)>,
}

impl VerifyAll {
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "verified": self.verified,
            "open": self.open,
            "failed": self.failed.iter().map(|(id, why)| json!({"id": id, "error": why})).collect::<Vec<_>>(),
        })
    }

    pub fn to_text(&self) -> String {
        let mut s = format!(
            "recordings: {} verified, {} open, {} failed",
            self.verified,
            self.open,
            self.failed.len()
        );
        for (_, why) in &self.failed {
            s.push_str(&format!("\nrecording FAILED: {why}"));
        }
        s
    }
}

/// Checks every sealed recording of `store`.
pub fn verify_all(store: &dyn RecordingStore) -> anyhow::Result<VerifyAll> {
    let mut report = VerifyAll::default();
    for info in store.list(&RecordingFilter::default())? {
        if info.state.is_none() {
            report.open += 1;
            continue;
        }
        match store.verify(&info.id) {
            Ok(_) => report.verified += 1,
            Err(e) => report.failed.push((info.id, e.message().to_string())),
        }
    }
    Ok(report)
}
