//! Checking every recording at once, against the store and the audit log.
//!
//! Each seal is audited (`recording.sealed`, actor `recorder`, with the
//! manifest's hashes), so a recording removed with its chain and manifest,
//! or replaced by another validly signed one, is found by
//! [`verify_all`] through the audit log it cannot be cut out of. A lost
//! node's recording may be sealed twice (by the survivor, then completed
//! by the node when it starts again): the manifest must be one of its
//! audited seals, the one with the most chunks.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::json;

use super::id::RecordingId;
use super::integrity::SignedManifest;
use super::store::{RecordingFilter, RecordingStore};
use crate::error::Result;
use crate::model::{AuditCategory, AuditEvent, AuditRecord, Timestamp};

/// The audit action of a sealed recording.
pub const SEALED_ACTION: &str = "recording.sealed";
/// The actor of [`SEALED_ACTION`] records.
pub const RECORDER_ACTOR: &str = "recorder";

/// The audit event that records a seal.
pub fn sealed_event(signed: &SignedManifest) -> AuditEvent {
    let m = &signed.manifest;
    AuditEvent {
        at: Timestamp::now(),
        category: AuditCategory::SystemMessages,
        action: SEALED_ACTION.into(),
        actor: RECORDER_ACTOR.into(),
        customer_id: None,
        session_id: Some(m.session_id.clone()),
        detail: json!({
            "recording": m.recording_id,
            "state": m.state.as_str(),
            "size": m.size,
            "sha256": m.sha256,
            "chain_head": m.chain_head,
            "chunks": m.chunks,
        }),
    }
}

/// What checking every recording found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyAll {
    /// Sealed recordings that verified.
    pub verified: u64,
    /// Recordings still being written.
    pub open: u64,
    /// What failed, one message per recording, naming it.
    pub failed: Vec<String>,
}

impl VerifyAll {
    /// One line, then one per failure.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "recordings: {} verified, {} open, {} failed",
            self.verified,
            self.open,
            self.failed.len()
        );
        for why in &self.failed {
            s.push_str(&format!("\nrecording FAILED: {why}"));
        }
        s
    }
}

/// Verifies every sealed recording of `store`, and checks that each seal
/// in `audit` (the audit log's records; others are skipped) names a
/// recording that is there with the same hashes.
pub fn verify_all(store: &dyn RecordingStore, audit: &[AuditRecord]) -> Result<VerifyAll> {
    let mut report = VerifyAll::default();
    for info in store.list(&RecordingFilter::default())? {
        if info.state.is_none() {
            match store.manifest(&info.id) {
                Ok(None) => {
                    report.open += 1;
                    continue;
                }
                Ok(Some(_)) => {}
                Err(e) => {
                    report
                        .failed
                        .push(format!("recording {}: {}", info.id, e.message()));
                    continue;
                }
            }
        }
        match store.verify(&info.id) {
            Ok(_) => report.verified += 1,
            Err(e) => report.failed.push(e.message().to_string()),
        }
    }
    // A recording may be sealed twice: by the survivor of its lost node
    // from what the store held, then by that node completing it. The
    // manifest there must be one of the audited seals, and cover no fewer
    // chunks than any of them.
    let mut seals: BTreeMap<RecordingId, Vec<&AuditRecord>> = BTreeMap::new();
    for r in audit {
        let e = &r.event;
        if e.action != SEALED_ACTION || e.actor != RECORDER_ACTOR {
            continue;
        }
        if let Some(id) = e.detail["recording"]
            .as_str()
            .and_then(|s| RecordingId::parse(s).ok())
        {
            seals.entry(id).or_default().push(r);
        }
    }
    for (id, records) in seals {
        let Some(r) = records.last() else { continue };
        let problem = if store.open(&id).is_err() {
            Some(format!(
                "recording {id}, sealed in audit record {}, was removed",
                r.seq
            ))
        } else {
            match store.manifest(&id) {
                Ok(Some(m)) => {
                    let m = &m.manifest;
                    let one_of = records.iter().any(|r| {
                        r.event.detail["sha256"] == m.sha256
                            && r.event.detail["chain_head"] == m.chain_head
                    });
                    let most = records
                        .iter()
                        .filter_map(|r| r.event.detail["chunks"].as_u64())
                        .max()
                        .unwrap_or(0);
                    (!one_of || m.chunks < most).then(|| {
                        format!(
                            "recording {id}: its manifest is not the one sealed (audit record {})",
                            r.seq
                        )
                    })
                }
                Ok(None) => Some(format!(
                    "recording {id}: its manifest, sealed in audit record {}, was removed",
                    r.seq
                )),
                Err(err) => Some(format!("recording {id}: {}", err.message())),
            }
        };
        if let Some(p) = problem
            && !report.failed.contains(&p)
        {
            report.failed.push(p);
        }
    }
    Ok(report)
}
