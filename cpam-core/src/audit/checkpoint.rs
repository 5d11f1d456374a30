//! Checkpoints: the audit chain's head (seq and hash) signed with the
//! server's Ed25519 key and kept outside the database.
//!
//! The chain alone cannot tell a log whose last records were deleted from a
//! shorter one, nor a log rebuilt from scratch (every hash recomputed) from
//! the original. A checkpoint can: [`verify_anchored`] reports a log that
//! ends before the last checkpoint's record (tail truncation) or whose
//! record at that position has another hash (rebuilt or rewritten).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Verification, Verifier};
use crate::error::{Error, Result};
use crate::model::{AuditRecord, Timestamp};
use crate::record::RecordingKey;
use crate::store::{AuditFilter, Store};

/// The checkpoint file in a server's data dir.
pub const CHECKPOINTS_FILE: &str = "audit-checkpoints.jsonl";

/// How often a server signs a checkpoint while records are appended,
/// unless its `config.json` says otherwise (`audit_checkpoint_secs`).
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);

const DOMAIN: &[u8] = b"cpam-audit-checkpoint-v1\n";

/// The audit chain's head at one moment, signed by the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// The sequence number of the last record covered.
    pub seq: i64,
    /// That record's hash (it covers every record before it).
    pub hash: String,
    /// When it was signed.
    pub at: Timestamp,
    /// The signer's Ed25519 public key, hex.
    pub signer: String,
    /// Ed25519 signature over the fields above, hex.
    pub signature: String,
}

#[derive(Serialize)]
struct Signed<'a> {
    seq: i64,
    hash: &'a str,
    at: i64,
    signer: &'a str,
}

fn signed_bytes(seq: i64, hash: &str, at: Timestamp, signer: &str) -> Vec<u8> {
    let mut v = DOMAIN.to_vec();
    let fields = Signed {
        seq,
        hash,
        at: at.millis(),
        signer,
    };
    v.extend(serde_json::to_vec(&fields).unwrap_or_default());
    v
}

impl Checkpoint {
    /// Signs the head `record` with `key` at `at`.
    pub fn sign(key: &RecordingKey, record: &AuditRecord, at: Timestamp) -> Result<Checkpoint> {
        let signer = key.public_hex();
        let signature = key.sign_bytes(&signed_bytes(record.seq, &record.hash, at, &signer))?;
        Ok(Checkpoint {
            seq: record.seq,
            hash: record.hash.clone(),
            at,
            signer,
            signature,
        })
    }

    /// Checks that `key` signed this checkpoint as it is.
    pub fn verify(&self, key: &RecordingKey) -> Result<()> {
        let bytes = signed_bytes(self.seq, &self.hash, self.at, &self.signer);
        if self.signer == key.public_hex() && key.verifies(&bytes, &self.signature) {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "the {} is not signed by this server's key: the checkpoint was edited or forged",
                self.label()
            )))
        }
    }

    /// Parses one JSON line.
    pub fn parse(line: &str) -> Result<Checkpoint> {
        serde_json::from_str(line)
            .map_err(|e| Error::invalid(format!("not an audit checkpoint: {e}")))
    }

    /// One JSON line, without its newline.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// How messages name it: `checkpoint of record 12 signed 2026-…Z`.
    pub fn label(&self) -> String {
        format!(
            "checkpoint of record {} signed {}",
            self.seq,
            self.at.to_rfc3339()
        )
    }
}

/// A file of checkpoints, one JSON line each, oldest first.
#[derive(Debug, Clone)]
pub struct CheckpointLog {
    path: PathBuf,
}

impl CheckpointLog {
    /// The checkpoints at `path` (the file need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> CheckpointLog {
        CheckpointLog { path: path.into() }
    }

    /// `<dir>/audit-checkpoints.jsonl`.
    pub fn in_dir(dir: &Path) -> CheckpointLog {
        CheckpointLog::new(dir.join(CHECKPOINTS_FILE))
    }

    /// Where the checkpoints are.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `checkpoint` and flushes it to disk.
    pub fn append(&self, checkpoint: &Checkpoint) -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        let mut line = checkpoint.to_line();
        line.push('\n');
        f.write_all(line.as_bytes())?;
        f.sync_data()?;
        Ok(())
    }

    /// Every checkpoint, oldest first (none when the file does not exist).
    /// A last line cut short by a crash is skipped; any other line that is
    /// not a checkpoint is an error naming it.
    pub fn read(&self) -> Result<Vec<Checkpoint>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let complete = text.ends_with('\n');
        let lines: Vec<&str> = text.lines().collect();
        let mut out = Vec::with_capacity(lines.len());
        for (i, line) in lines.iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match Checkpoint::parse(line) {
                Ok(c) => out.push(c),
                Err(_) if i + 1 == lines.len() && !complete => {}
                Err(e) => {
                    return Err(Error::invalid(format!(
                        "{} line {}: {e}",
                        self.path.display(),
                        i + 1
                    )));
                }
            }
        }
        Ok(out)
    }

    /// The newest checkpoint.
    pub fn last(&self) -> Result<Option<Checkpoint>> {
        Ok(self.read()?.pop())
    }
}

/// Verifies the chain in `store` and, when there is one, against
/// `checkpoint` signed by `key`: a log ending before the checkpoint's
/// record, or holding another hash there, is broken at that record.
pub async fn verify_anchored(
    store: &dyn Store,
    checkpoint: Option<&Checkpoint>,
    key: &RecordingKey,
) -> Result<Verification> {
    let forged = checkpoint.and_then(|c| c.verify(key).err());
    let mut v = match (checkpoint, &forged) {
        (Some(c), None) => Verifier::anchored(c),
        _ => Verifier::default(),
    };
    let mut from = 1;
    loop {
        let page = page(store, from).await?;
        let Some(last) = page.last() else { break };
        from = last.seq + 1;
        for r in &page {
            v.push(r);
        }
    }
    let mut out = v.finish();
    if let (Some(c), Some(e), true) = (checkpoint, forged, out.is_intact()) {
        out.first_broken = Some(super::Broken {
            expected_seq: c.seq,
            found_seq: c.seq,
            problem: e.message().to_string(),
        });
    }
    Ok(out)
}

async fn page(store: &dyn Store, from: i64) -> Result<Vec<AuditRecord>> {
    store
        .audit_records(&AuditFilter {
            from_seq: Some(from),
            limit: Some(1000),
            ..AuditFilter::default()
        })
        .await
}

/// Signs a store's chain head into a [`CheckpointLog`]: at intervals with
/// [`Anchor::every`], on demand with [`Anchor::checkpoint`].
#[derive(Debug)]
pub struct Anchor {
    store: Arc<dyn Store>,
    key: RecordingKey,
    log: CheckpointLog,
    busy: tokio::sync::Mutex<()>,
}

impl Anchor {
    /// Anchors `store`'s chain with `key` (it must be able to sign) into `log`.
    pub fn new(store: Arc<dyn Store>, key: RecordingKey, log: CheckpointLog) -> Anchor {
        Anchor {
            store,
            key,
            log,
            busy: tokio::sync::Mutex::new(()),
        }
    }

    /// The checkpoint file.
    pub fn log(&self) -> &CheckpointLog {
        &self.log
    }

    /// The signing key.
    pub fn key(&self) -> &RecordingKey {
        &self.key
    }

    /// Signs and appends the chain's head if records were appended since
    /// the last checkpoint; returns the new checkpoint, if any.
    pub async fn checkpoint(&self) -> Result<Option<Checkpoint>> {
        let _one_at_a_time = self.busy.lock().await;
        let last = self.log.last()?;
        let mut from = last.as_ref().map_or(1, |c| c.seq + 1);
        let mut head = None;
        loop {
            let page = page(self.store.as_ref(), from).await?;
            let Some(r) = page.into_iter().last() else {
                break;
            };
            from = r.seq + 1;
            head = Some(r);
        }
        let Some(head) = head else { return Ok(None) };
        let checkpoint = Checkpoint::sign(&self.key, &head, Timestamp::now())?;
        self.log.append(&checkpoint)?;
        tracing::debug!(seq = checkpoint.seq, "audit checkpoint signed");
        Ok(Some(checkpoint))
    }

    /// Verifies the store's chain against the newest checkpoint.
    pub async fn verify(&self) -> Result<Verification> {
        let last = self.log.last()?;
        verify_anchored(self.store.as_ref(), last.as_ref(), &self.key).await
    }

    /// Signs a checkpoint every `period` while records are appended, until
    /// the returned task is aborted. Failures are logged, not fatal.
    pub fn every(self: &Arc<Self>, period: Duration) -> tokio::task::JoinHandle<()> {
        let anchor = self.clone();
        let period = period.max(Duration::from_secs(1));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                if let Err(error) = anchor.checkpoint().await {
                    tracing::error!(%error, "cannot sign an audit checkpoint");
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditSink, StoreAuditSink, seal};
    use crate::model::{AuditCategory, AuditEvent};
    use crate::store::SqlStore;

    fn key(n: u8) -> RecordingKey {
        RecordingKey::from_seed(&[n; 32])
    }

    fn event(n: i64) -> AuditEvent {
        AuditEvent {
            at: Timestamp(1_700_000_000_000 + n),
            category: AuditCategory::UserActivity,
            action: "user.create".into(),
            actor: format!("admin{n}"),
            customer_id: None,
            session_id: None,
            detail: serde_json::json!({ "n": n }),
        }
    }

    fn chain(n: i64, salt: i64) -> Vec<AuditRecord> {
        let mut out: Vec<AuditRecord> = Vec::new();
        for i in 0..n {
            let prev = out.last().map(|r| (r.seq, r.hash.as_str()));
            out.push(seal(prev, event(i * 1000 + salt)));
        }
        out
    }

    fn anchored(records: &[AuditRecord], c: &Checkpoint) -> Verification {
        let mut v = Verifier::anchored(c);
        for r in records {
            v.push(r);
        }
        v.finish()
    }

    #[test]
    fn a_checkpoint_verifies_with_its_key_only() {
        let c = chain(3, 0);
        let cp = Checkpoint::sign(&key(1), &c[2], Timestamp(1_800_000_000_000)).unwrap();
        assert_eq!((cp.seq, cp.hash.as_str()), (3, c[2].hash.as_str()));
        cp.verify(&key(1)).expect("signed by key 1");
        let public = RecordingKey::verify_only(&key(1).public_hex()).unwrap();
        cp.verify(&public).expect("the public key suffices");
        let e = cp.verify(&key(2)).expect_err("another key");
        assert!(e.message().contains("checkpoint of record 3"), "{e}");
        let mut edited = cp.clone();
        edited.seq = 2;
        edited.verify(&key(1)).expect_err("an edited seq");
        let mut edited = cp.clone();
        edited.hash = c[1].hash.clone();
        edited.verify(&key(1)).expect_err("an edited hash");
        assert_eq!(Checkpoint::parse(&cp.to_line()).unwrap(), cp);
        Checkpoint::sign(&public, &c[2], Timestamp(0)).expect_err("a public key cannot sign");
    }

    #[test]
    fn tail_truncation_is_caught_naming_the_checkpoint() {
        let c = chain(10, 0);
        let cp = Checkpoint::sign(&key(1), &c[7], Timestamp(1_800_000_000_000)).unwrap();
        assert!(
            anchored(&c, &cp).is_intact(),
            "records after the checkpoint are fine"
        );
        assert!(anchored(&c[..8], &cp).is_intact());
        let v = anchored(&c[..6], &cp);
        let b = v.first_broken.expect("truncation");
        assert_eq!((b.expected_seq, b.found_seq), (7, 6), "{b:?}");
        assert!(b.problem.contains("tail truncation"), "{b:?}");
        assert!(b.problem.contains("checkpoint of record 8 signed"), "{b:?}");
        assert_eq!(v.checkpoint, Some(8));
        let b = anchored(&[], &cp).first_broken.expect("an emptied log");
        assert!(b.problem.contains("records 1..=8"), "{b:?}");
    }

    #[test]
    fn a_rebuilt_log_is_caught_naming_the_checkpoint() {
        let original = chain(10, 0);
        let cp = Checkpoint::sign(&key(1), &original[4], Timestamp(1_800_000_000_000)).unwrap();
        // Every record re-sealed: a chain intact on its own.
        let rebuilt = chain(10, 1);
        assert!(crate::audit::verify(&rebuilt).is_intact());
        let b = anchored(&rebuilt, &cp).first_broken.expect("rebuilt");
        assert_eq!((b.expected_seq, b.found_seq), (5, 5), "{b:?}");
        assert!(b.problem.contains("rebuilt"), "{b:?}");
        assert!(b.problem.contains("checkpoint of record 5"), "{b:?}");
    }

    #[test]
    fn the_log_file_appends_and_survives_a_cut_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = CheckpointLog::in_dir(dir.path());
        assert!(log.read().unwrap().is_empty(), "no file yet");
        let c = chain(3, 0);
        let a = Checkpoint::sign(&key(1), &c[0], Timestamp(1)).unwrap();
        let b = Checkpoint::sign(&key(1), &c[2], Timestamp(2)).unwrap();
        log.append(&a).unwrap();
        log.append(&b).unwrap();
        assert_eq!(log.read().unwrap(), vec![a.clone(), b.clone()]);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(log.path())
            .unwrap();
        f.write_all(b"{\"seq\":4,\"ha").unwrap();
        assert_eq!(log.last().unwrap(), Some(b), "a crash-cut line is skipped");
        std::fs::write(log.path(), "garbage\n").unwrap();
        let e = log.read().expect_err("a bad line");
        assert!(e.message().contains("line 1"), "{e}");
    }

    #[tokio::test]
    async fn the_anchor_signs_the_head_only_when_it_moved_and_verifies_against_it() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqlStore::connect("sqlite::memory:").await.unwrap());
        let anchor = Anchor::new(store.clone(), key(1), CheckpointLog::in_dir(dir.path()));
        assert_eq!(anchor.checkpoint().await.unwrap(), None, "an empty log");
        let sink = StoreAuditSink::new(store.clone());
        for i in 0..5 {
            sink.record(event(i)).await.unwrap();
        }
        let first = anchor.checkpoint().await.unwrap().expect("head moved");
        assert_eq!(first.seq, 5);
        assert_eq!(anchor.checkpoint().await.unwrap(), None, "nothing new");
        sink.record(event(5)).await.unwrap();
        let second = anchor.checkpoint().await.unwrap().expect("head moved");
        assert_eq!(second.seq, 6);
        assert_eq!(anchor.log().read().unwrap(), vec![first, second]);
        let v = anchor.verify().await.unwrap();
        assert!(v.is_intact(), "{v:?}");
        assert_eq!((v.checked, v.checkpoint), (6, Some(6)));
        // Checked against another server's key, the checkpoint is refused.
        let last = anchor.log().last().unwrap();
        let v = verify_anchored(store.as_ref(), last.as_ref(), &key(2))
            .await
            .unwrap();
        let b = v.first_broken.expect("a foreign checkpoint");
        assert!(
            b.problem.contains("not signed by this server's key"),
            "{b:?}"
        );
    }
}
