//! The append-only, hash-chained audit log.
//!
//! Each [`AuditRecord`] carries the SHA-256 of its predecessor, and its own
//! hash covers its position, its event and that predecessor hash. Any edit,
//! deletion, insertion or reordering breaks the chain at a position
//! [`verify`] reports. Deleting the newest records, or rebuilding the
//! whole log, is caught against a signed [`Checkpoint`] of the chain's head
//! kept outside the database ([`checkpoint`]).

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::model::{AuditEvent, AuditRecord};
use crate::store::{AuditFilter, Store};

pub mod checkpoint;

pub use checkpoint::{Anchor, Checkpoint, CheckpointLog, verify_anchored};

/// The `prev_hash` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Where audit events go. The engine only ever appends.
#[async_trait]
pub trait AuditSink: Send + Sync + std::fmt::Debug {
    /// Appends one event; returns once it is durable.
    async fn record(&self, event: AuditEvent) -> Result<()>;
}

/// An [`AuditSink`] that seals events into a [`Store`]'s chain.
#[derive(Debug, Clone)]
pub struct StoreAuditSink {
    store: Arc<dyn Store>,
}

impl StoreAuditSink {
    /// Wraps `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl AuditSink for StoreAuditSink {
    async fn record(&self, event: AuditEvent) -> Result<()> {
        self.store.append_audit(&event).await.map(|_| ())
    }
}

/// Sees each audit record once it is sealed into the chain and stored: an
/// embedding product's log shipper or SIEM forwarder. An error is the
/// engine's to log; the record is stored either way.
#[async_trait]
pub trait AuditTap: Send + Sync + std::fmt::Debug {
    /// Called once per record, after it is durable.
    async fn sealed(&self, record: &AuditRecord) -> Result<()>;
}

/// A [`StoreAuditSink`] that also hands every sealed record to an
/// [`AuditTap`], which can be set, replaced or removed at any time.
#[derive(Debug)]
pub struct TappedAuditSink {
    store: Arc<dyn Store>,
    tap: std::sync::RwLock<Option<Arc<dyn AuditTap>>>,
}

impl TappedAuditSink {
    /// Seals into `store`, with no tap yet.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            tap: std::sync::RwLock::new(None),
        }
    }

    /// Sets (or with `None`, removes) the tap; a record under way may
    /// still reach the one replaced.
    pub fn set_tap(&self, tap: Option<Arc<dyn AuditTap>>) {
        *self.tap.write().unwrap_or_else(|p| p.into_inner()) = tap;
    }
}

#[async_trait]
impl AuditSink for TappedAuditSink {
    async fn record(&self, event: AuditEvent) -> Result<()> {
        let record = self.store.append_audit(&event).await?;
        let tap = self.tap.read().unwrap_or_else(|p| p.into_inner()).clone();
        match tap {
            Some(tap) => tap.sealed(&record).await,
            None => Ok(()),
        }
    }
}

#[derive(Serialize)]
struct Canonical<'a> {
    seq: i64,
    at: i64,
    category: &'a str,
    action: &'a str,
    actor: &'a str,
    customer_id: Option<&'a str>,
    session_id: Option<&'a str>,
    detail: &'a serde_json::Value,
    prev_hash: &'a str,
}

/// The hash of a record at `seq` holding `event` after `prev_hash`.
pub fn record_hash(seq: i64, event: &AuditEvent, prev_hash: &str) -> String {
    let canonical = Canonical {
        seq,
        at: event.at.millis(),
        category: event.category.as_str(),
        action: &event.action,
        actor: &event.actor,
        customer_id: event.customer_id.as_ref().map(|c| c.as_str()),
        session_id: event.session_id.as_ref().map(|s| s.as_str()),
        detail: &event.detail,
        prev_hash,
    };
    // serde_json writes struct fields in declaration order and object keys of
    // `detail` sorted (no `preserve_order`), so the encoding is canonical.
    let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

/// Seals `event` as the record after `prev` (`None` for the first record).
pub fn seal(prev: Option<(i64, &str)>, event: AuditEvent) -> AuditRecord {
    let (seq, prev_hash) = match prev {
        Some((seq, hash)) => (seq + 1, hash.to_string()),
        None => (1, GENESIS.to_string()),
    };
    let hash = record_hash(seq, &event, &prev_hash);
    AuditRecord {
        seq,
        event,
        prev_hash,
        hash,
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// Records checked.
    pub checked: u64,
    /// The first broken record, if any.
    pub first_broken: Option<Broken>,
    /// The record of the checkpoint the chain was checked against, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<i64>,
}

impl Verification {
    /// Whether the whole chain is intact.
    pub fn is_intact(&self) -> bool {
        self.first_broken.is_none()
    }
}

/// The first place the chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Broken {
    /// The sequence number expected at this position.
    pub expected_seq: i64,
    /// The sequence number found there (differs when records were deleted or reordered).
    pub found_seq: i64,
    /// What is wrong.
    pub problem: String,
}

/// Incremental chain verifier: feed records in storage order.
#[derive(Debug, Clone)]
pub struct Verifier {
    expected_seq: i64,
    prev_hash: String,
    checked: u64,
    broken: Option<Broken>,
    /// A signed head the chain must reach and match: seq, hash, label.
    anchor: Option<(i64, String, String)>,
}

impl Default for Verifier {
    fn default() -> Self {
        Self {
            expected_seq: 1,
            prev_hash: GENESIS.to_string(),
            checked: 0,
            broken: None,
            anchor: None,
        }
    }
}

impl Verifier {
    /// A verifier that also holds the chain to `checkpoint` (whose
    /// signature the caller checked): the chain must reach its record and
    /// have its hash there.
    pub fn anchored(checkpoint: &Checkpoint) -> Self {
        Self {
            anchor: Some((checkpoint.seq, checkpoint.hash.clone(), checkpoint.label())),
            ..Self::default()
        }
    }

    /// Checks the next record; after the first break, further records are ignored.
    pub fn push(&mut self, r: &AuditRecord) {
        if self.broken.is_some() {
            return;
        }
        self.checked += 1;
        let problem = if r.seq != self.expected_seq {
            Some(if r.seq > self.expected_seq {
                format!("record {} is missing (deleted)", self.expected_seq)
            } else {
                format!("record {} appears out of order", r.seq)
            })
        } else if r.prev_hash != self.prev_hash {
            Some(
                "previous-hash link does not match (record removed, inserted or reordered)"
                    .to_string(),
            )
        } else if record_hash(r.seq, &r.event, &r.prev_hash) != r.hash {
            Some("content does not match its hash (record edited)".to_string())
        } else if let Some((_, _, label)) = self
            .anchor
            .as_ref()
            .filter(|(seq, hash, _)| *seq == r.seq && *hash != r.hash)
        {
            Some(format!(
                "the record's hash differs from the {label}: the log was rebuilt or rewritten"
            ))
        } else {
            None
        };
        match problem {
            Some(problem) => {
                self.broken = Some(Broken {
                    expected_seq: self.expected_seq,
                    found_seq: r.seq,
                    problem,
                })
            }
            None => {
                self.expected_seq += 1;
                self.prev_hash.clone_from(&r.hash);
            }
        }
    }

    /// The result so far.
    pub fn finish(self) -> Verification {
        let last = self.expected_seq - 1;
        let broken = match (self.broken, &self.anchor) {
            (None, Some((seq, _, label))) if *seq > last => Some(Broken {
                expected_seq: last + 1,
                found_seq: last,
                problem: format!(
                    "the log ends at record {last} but the {label} covers record {seq}: \
                     records {}..={seq} were removed (tail truncation)",
                    last + 1
                ),
            }),
            (broken, _) => broken,
        };
        Verification {
            checked: self.checked,
            first_broken: broken,
            checkpoint: self.anchor.map(|(seq, _, _)| seq),
        }
    }
}

/// Verifies a whole chain given in storage order.
pub fn verify<'a>(records: impl IntoIterator<Item = &'a AuditRecord>) -> Verification {
    let mut v = Verifier::default();
    for r in records {
        v.push(r);
    }
    v.finish()
}

/// Verifies the chain held in `store`, reading it in pages.
pub async fn verify_store(store: &dyn Store) -> Result<Verification> {
    let mut v = Verifier::default();
    let mut from = 1;
    loop {
        let page = store
            .audit_records(&AuditFilter {
                from_seq: Some(from),
                limit: Some(1000),
                ..AuditFilter::default()
            })
            .await?;
        let Some(last) = page.last() else { break };
        from = last.seq + 1;
        for r in &page {
            v.push(r);
        }
    }
    Ok(v.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AuditCategory, Timestamp};

    fn event(n: i64) -> AuditEvent {
        AuditEvent {
            at: Timestamp(1_700_000_000_000 + n),
            category: AuditCategory::UserActivity,
            action: "session.start".into(),
            actor: format!("user{n}"),
            customer_id: None,
            session_id: None,
            detail: serde_json::json!({"n": n, "b": "x", "a": [1, 2]}),
        }
    }

    fn chain(n: i64) -> Vec<AuditRecord> {
        let mut out: Vec<AuditRecord> = Vec::new();
        for i in 0..n {
            let prev = out.last().map(|r| (r.seq, r.hash.as_str()));
            let r = seal(prev, event(i));
            out.push(r);
        }
        out
    }

    fn check(records: &[AuditRecord], expect: Option<(i64, i64, &str)>) {
        let v = verify(records);
        match expect {
            None => assert!(v.is_intact(), "{v:?}"),
            Some((expected_seq, found_seq, needle)) => {
                let b = v.first_broken.expect("chain should be broken");
                assert_eq!(
                    (b.expected_seq, b.found_seq),
                    (expected_seq, found_seq),
                    "{b:?}"
                );
                assert!(b.problem.contains(needle), "{b:?}");
            }
        }
    }

    #[test]
    fn intact_chain_verifies() {
        check(&chain(10), None);
        check(&[], None);
    }

    #[test]
    fn edit_is_pinpointed() {
        let mut c = chain(10);
        c[4].event.actor = "mallory".into();
        check(&c, Some((5, 5, "edited")));
    }

    #[test]
    fn edit_of_detail_is_pinpointed() {
        let mut c = chain(10);
        c[6].event.detail = serde_json::json!({"n": 6, "b": "y", "a": [1, 2]});
        check(&c, Some((7, 7, "edited")));
    }

    #[test]
    fn deletion_is_pinpointed() {
        let mut c = chain(10);
        c.remove(3);
        check(&c, Some((4, 5, "missing")));
    }

    #[test]
    fn deleting_the_last_records_is_undetectable_without_an_anchor() {
        let mut c = chain(10);
        c.truncate(8);
        check(&c, None);
    }

    #[test]
    fn reordering_is_pinpointed() {
        let mut c = chain(10);
        c.swap(2, 3);
        check(&c, Some((3, 4, "missing")));
    }

    #[test]
    fn rewritten_seq_and_rehash_is_caught_by_the_link() {
        let mut c = chain(10);
        c.remove(3);
        for (i, r) in c.iter_mut().enumerate().skip(3) {
            r.seq = i as i64 + 1;
            r.hash = record_hash(r.seq, &r.event, &r.prev_hash);
        }
        check(&c, Some((4, 4, "link")));
    }

    #[test]
    fn hash_is_stable() {
        let r = seal(None, event(1));
        assert_eq!(r.prev_hash, GENESIS);
        assert_eq!(r.hash, record_hash(1, &event(1), GENESIS));
        assert_eq!(r.hash.len(), 64);
    }
}
