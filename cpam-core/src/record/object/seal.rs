//! Sealing a lost node's recordings from the store alone
//! ([`RecordingStore::seal_lost`](super::RecordingStore::seal_lost)).
//!
//! The survivor that cleans up after a lost node reads what the store holds
//! of each unsealed recording of the sessions it ended (the parts the lost
//! node uploaded: whole chain chunks), checks the chain against the bytes
//! and puts a manifest sealing them as `incomplete`. Its spool is not
//! involved: the recording was never on this node.
//!
//! If the lost node starts again, its spool holds the same chunks and
//! maybe more (the last second, or what a store outage held back). Its
//! upload then goes on after the store's last part and puts its own
//! manifest, which replaces this one: the recording is completed again
//! with everything, never cut back (`uploader.rs`, `resume`). A seal that
//! lands after the node's own (the two raced) is noticed here by listing
//! again: the store then holds more parts than it covers, and the seal is
//! made again over all of them.

use std::io::BufReader;

use object_store::{ObjectStoreExt as _, PutPayload};

use super::layout;
use super::{ObjectRecordingStore, RecordingStore as _};
use crate::error::Result;
use crate::model::{SessionId, Timestamp};
use crate::record::asciicast::{FORMAT, Reader, recording_error};
use crate::record::id::RecordingId;
use crate::record::integrity::{Manifest, SealState, SignedManifest, check_chain, parse_chain};
use crate::record::store::RecordingFilter;

/// How many times a seal is made again over parts that kept arriving.
const MAX_ROUNDS: usize = 4;

impl ObjectRecordingStore {
    /// [`RecordingStore::seal_lost`](super::RecordingStore::seal_lost):
    /// every unsealed recording of `session` the store holds, sealed from
    /// its uploaded parts. A recording that cannot be sealed (its parts do
    /// not match their chain) is logged and left unsealed; the others are
    /// sealed.
    pub(super) fn seal_lost_session(&self, session: &SessionId) -> Result<Vec<SignedManifest>> {
        let mut sealed = Vec::new();
        for info in self.list(&RecordingFilter::session(session))? {
            // Sealed already, or this node's own (it seals it itself).
            if info.state.is_some() || self.shared.spool.cast_path(&info.id).exists() {
                continue;
            }
            match self.seal_remote(&info.id) {
                Ok(Some(signed)) => sealed.push(signed),
                Ok(None) => {}
                Err(error) => {
                    tracing::error!(recording = %info.id, %error, "cannot seal a lost node's recording");
                }
            }
        }
        Ok(sealed)
    }

    /// Seals `id` over the parts the store holds; `None` when it is sealed
    /// already or holds no whole part.
    fn seal_remote(&self, id: &RecordingId) -> Result<Option<SignedManifest>> {
        let mut last = None;
        for round in 0..MAX_ROUNDS {
            let (up, ended_at) = self.listed(id)?;
            let covered = last.as_ref().map(|s: &SignedManifest| s.manifest.size);
            if covered == Some(up.size()) {
                return Ok(last);
            }
            // A manifest there at first: another node sealed it (the lost
            // node came back, or another survivor did this).
            if up.parts.is_empty() || (round == 0 && up.manifest) {
                return Ok(None);
            }
            if round > 0 {
                tracing::info!(recording = %id, parts = up.parts.len(), "the store holds more parts than sealed: sealing again over all of them");
            }
            let signed = self.sign_parts(id, &up, ended_at)?;
            let (remote, path, bytes) = (
                self.shared.remote.clone(),
                self.shared.layout.manifest(id),
                signed.to_bytes(),
            );
            self.rt
                .run(async move { remote.put(&path, PutPayload::from(bytes)).await })?
                .map_err(|e| self.shared.failed("seal", id, &e))?;
            self.shared.forget(id);
            last = Some(signed);
        }
        Ok(last)
    }

    /// The parts of `id` in the store, and when the last one was stored.
    fn listed(&self, id: &RecordingId) -> Result<(layout::Uploaded, Option<Timestamp>)> {
        let (remote, dir) = (self.shared.remote.clone(), self.shared.layout.dir(id));
        let list = self
            .rt
            .run(async move { remote.list_with_delimiter(Some(&dir)).await })?
            .map_err(|e| self.shared.failed("list", id, &e))?;
        let up = layout::uploaded(
            list.objects
                .iter()
                .filter_map(|o| Some((o.location.filename()?, o.size))),
        );
        let last = list
            .objects
            .iter()
            .filter(|o| o.location.filename() != Some("manifest"))
            .map(|o| Timestamp(o.last_modified.timestamp_millis()))
            .max();
        Ok((up, last))
    }

    /// A manifest sealing the parts `up` lists as `incomplete`, after
    /// checking them against their chain.
    fn sign_parts(
        &self,
        id: &RecordingId,
        up: &layout::Uploaded,
        last_stored: Option<Timestamp>,
    ) -> Result<SignedManifest> {
        let mut chain_text = Vec::new();
        for n in 1..=up.parts.len() as u64 {
            let part = self.get(id, self.shared.layout.chain(id, n))?;
            chain_text.extend(part.ok_or_else(|| {
                recording_error(format!("recording {id}: part {n}'s chain was removed"))
            })?);
        }
        let (records, cut) = parse_chain(&chain_text);
        let mut file = BufReader::new(self.remote_reader(id, up));
        let (chain, whole, broken) = check_chain(id, &records, &mut file);
        if let Some(problem) = cut.or(broken) {
            return Err(recording_error(format!("recording {id}: {problem}")));
        }
        if chain.size() != up.size() {
            return Err(recording_error(format!(
                "recording {id}: its parts hold {} bytes, their chain covers {}",
                up.size(),
                chain.size()
            )));
        }
        let header = Reader::new(BufReader::new(self.remote_reader(id, up)))
            .ok()
            .and_then(|r| r.header().timestamp);
        let ended_at = last_stored.unwrap_or_else(Timestamp::now);
        let started_at = header.map_or(ended_at, |s| Timestamp(s * 1000));
        self.shared.key.sign(Manifest {
            format: FORMAT.into(),
            recording_id: id.clone(),
            session_id: id.session(),
            channel: id.channel(),
            started_at,
            ended_at: ended_at.max(started_at),
            state: SealState::Incomplete,
            size: chain.size(),
            sha256: hex::encode(sha2::Digest::finalize(whole)),
            chain_head: chain.head(),
            chunks: chain.chunks(),
            signer: String::new(),
        })
    }
}
