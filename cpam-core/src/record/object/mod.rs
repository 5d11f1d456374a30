//! [`ObjectRecordingStore`]: recordings on an S3-compatible object store
//! (feature `s3`), spooled on the node's disk.
//!
//! A recording is written to the spool (a [`FileRecordingStore`] under the
//! data dir, durable as before) and uploaded by the uploader
//! (`uploader.rs`) in parts of whole chain chunks as they fill and at
//! least every [`UploadOptions::interval`], then its manifest; only then
//! are its spooled files removed. While the store is down the uploader
//! retries with backoff and the spool keeps everything; at start-up
//! ([`RecordingStore::seal_abandoned`]) it finishes the uploads a stop or
//! crash left. A recording whose node was lost is sealed from the parts
//! in the store by the survivor (`seal.rs`). Reads (list, open, manifest, verify, search) take the spool
//! for what is still there and the store for the rest, so a recording
//! reads the same on every node. `layout.rs` names the objects,
//! `config.rs` reaches the store.

mod config;
mod layout;
mod reader;
mod seal;
#[cfg(test)]
mod tests;
mod uploader;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufReader, Read};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use object_store::{ObjectStore, ObjectStoreExt as _};

pub use config::{ENDPOINT_VARS, ObjectStoreConfig, REGION_VARS};
use layout::{Layout, Uploaded};
use reader::{Blocking, PartsReader};
use uploader::Uploader;

use super::asciicast::{Reader, recording_error};
use super::id::RecordingId;
use super::integrity::{RecordingKey, SealState, SignedManifest, Verified, verify};
use super::store::{
    FileRecordingStore, RecordingFilter, RecordingInfo, RecordingKind, RecordingStore,
    RecordingWriter,
};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{SessionId, Timestamp};

/// How the uploader uploads.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// The longest a spooled chunk waits for its upload while the store is
    /// up (kept between 100 ms and 2 s).
    pub interval: Duration,
    /// A part is uploaded as soon as this many bytes wait, and holds at
    /// most this many (unless one chain chunk is larger).
    pub max_part: usize,
    /// The longest wait between tries while the store is down.
    pub max_backoff: Duration,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            interval: Duration::from_secs(1),
            max_part: 8 << 20,
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// Recordings on an object store, spooled in a [`FileRecordingStore`]. The
/// store's blocking methods run its requests on a small runtime of its own,
/// so they may be called from any thread.
#[derive(Debug, Clone)]
pub struct ObjectRecordingStore {
    shared: Arc<Shared>,
    rt: Arc<Blocking>,
}

/// What the store's methods and the uploader share.
#[derive(Debug)]
struct Shared {
    spool: FileRecordingStore,
    remote: Arc<dyn ObjectStore>,
    layout: Layout,
    key: RecordingKey,
    /// For messages: the URL and endpoint.
    name: String,
    uploader: Uploader,
    /// Listings of sealed recordings read from the store (they no longer
    /// change).
    sealed: Mutex<HashMap<RecordingId, RecordingInfo>>,
}

impl ObjectRecordingStore {
    /// The store `config` names, spooling in `spool` and signing with
    /// `key`. Fails with an error naming the store when the URL is not
    /// valid or the store cannot be listed (unreachable, no such bucket,
    /// refused credentials).
    pub fn connect(
        spool: FileRecordingStore,
        config: &ObjectStoreConfig,
        key: RecordingKey,
        options: UploadOptions,
    ) -> Result<ObjectRecordingStore> {
        let (remote, prefix) = config.build()?;
        let store =
            ObjectRecordingStore::named(spool, remote, &prefix, key, options, config.describe())?;
        let (remote, layout) = (store.shared.remote.clone(), store.shared.layout.clone());
        store
            .rt
            .run(async move { remote.list_with_delimiter(Some(layout.prefix())).await })?
            .map_err(|e| {
                recording_error(format!(
                    "cannot reach the recording store {}: {e}",
                    config.describe()
                ))
            })?;
        Ok(store)
    }

    /// Lists the store's prefix, at most `timeout`; the error names the store.
    fn reach(&self, timeout: std::time::Duration) -> Result<()> {
        let (remote, layout) = (self.shared.remote.clone(), self.shared.layout.clone());
        let listed = self.rt.run(async move {
            tokio::time::timeout(timeout, remote.list_with_delimiter(Some(layout.prefix()))).await
        })?;
        match listed {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(recording_error(format!(
                "cannot reach the recording store {}: {e}",
                self.shared.name
            ))),
            Err(_) => Err(recording_error(format!(
                "the recording store {} did not answer within {timeout:?}",
                self.shared.name
            ))),
        }
    }

    /// Recordings in `remote` under `prefix`, spooled in `spool`.
    pub fn new(
        spool: FileRecordingStore,
        remote: Arc<dyn ObjectStore>,
        prefix: &str,
        key: RecordingKey,
        options: UploadOptions,
    ) -> Result<ObjectRecordingStore> {
        let name = format!("{remote}");
        ObjectRecordingStore::named(spool, remote, prefix, key, options, name)
    }

    fn named(
        spool: FileRecordingStore,
        remote: Arc<dyn ObjectStore>,
        prefix: &str,
        key: RecordingKey,
        options: UploadOptions,
        name: String,
    ) -> Result<ObjectRecordingStore> {
        let rt = Arc::new(Blocking::new()?);
        let shared = Arc::new(Shared {
            spool,
            remote,
            layout: Layout::new(prefix),
            key,
            name,
            uploader: Uploader::new(options),
            sealed: Mutex::default(),
        });
        Ok(ObjectRecordingStore { shared, rt })
    }

    /// The spool.
    pub fn spool(&self) -> &FileRecordingStore {
        &self.shared.spool
    }

    /// Recordings whose upload is not finished.
    pub fn pending(&self) -> usize {
        self.shared.uploader.pending()
    }

    /// What is in the store for `id`.
    fn uploaded(&self, id: &RecordingId) -> Result<Uploaded> {
        let (remote, dir) = (self.shared.remote.clone(), self.shared.layout.dir(id));
        let list = self
            .rt
            .run(async move { remote.list_with_delimiter(Some(&dir)).await })?
            .map_err(|e| self.shared.failed("list", id, &e))?;
        Ok(layout::uploaded(
            list.objects
                .iter()
                .filter_map(|o| Some((o.location.filename()?, o.size))),
        ))
    }

    /// Reads a small object whole; `None` if it is not there.
    fn get(&self, id: &RecordingId, path: object_store::path::Path) -> Result<Option<Vec<u8>>> {
        let remote = self.shared.remote.clone();
        let got = self
            .rt
            .run(async move {
                match remote.get(&path).await {
                    Ok(r) => r.bytes().await.map(Some),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            })?
            .map_err(|e| self.shared.failed("read", id, &e))?;
        Ok(got.map(|b| b.to_vec()))
    }

    fn remote_manifest(&self, id: &RecordingId) -> Result<Option<SignedManifest>> {
        self.get(id, self.shared.layout.manifest(id))?
            .map(|b| SignedManifest::parse(&b))
            .transpose()
    }

    fn remote_reader(&self, id: &RecordingId, up: &Uploaded) -> PartsReader {
        let paths = (1..=up.parts.len() as u64)
            .map(|n| self.shared.layout.chunk(id, n))
            .collect();
        PartsReader::new(self.rt.clone(), self.shared.remote.clone(), paths)
    }

    /// A recording as the store lists it.
    fn remote_info(&self, id: &RecordingId) -> Result<Option<RecordingInfo>> {
        if let Some(info) = self.shared.sealed_info(id) {
            return Ok(Some(info));
        }
        let up = self.uploaded(id)?;
        if up.parts.is_empty() && !up.manifest {
            return Ok(None);
        }
        let header = Reader::new(BufReader::new(self.remote_reader(id, &up)))
            .ok()
            .map(|r| r.header().clone());
        let rdp = header
            .as_ref()
            .is_some_and(|h| h.format.as_deref() == Some(super::RDP_FORMAT));
        let mut info = RecordingInfo {
            id: id.clone(),
            session_id: id.session(),
            channel: id.channel(),
            kind: if rdp {
                RecordingKind::Rdp
            } else {
                RecordingKind::Terminal
            },
            started_at: header
                .and_then(|h| h.timestamp)
                .map(|s| Timestamp(s * 1000)),
            ended_at: None,
            size: up.size(),
            state: None,
        };
        // A manifest that does not parse lists as unsealed; `verify` says
        // what is wrong with it.
        if up.manifest
            && let Ok(Some(s)) = self.remote_manifest(id)
        {
            info.started_at = Some(s.manifest.started_at);
            info.ended_at = Some(s.manifest.ended_at);
            info.state = Some(s.manifest.state);
            info.size = s.manifest.size;
            let mut sealed = self.shared.sealed.lock().unwrap_or_else(|p| p.into_inner());
            sealed.insert(id.clone(), info.clone());
        }
        Ok(Some(info))
    }

    fn remote_verify(&self, id: &RecordingId) -> Result<Verified> {
        let up = self.uploaded(id)?;
        if up.parts.is_empty() && !up.manifest {
            return Err(Error::not_found(format!("no recording {id}")));
        }
        let signed = self.remote_manifest(id)?.ok_or_else(|| {
            recording_error(format!(
                "recording {id} is not sealed (still being written or uploaded, or its node has not restarted since it stopped)"
            ))
        })?;
        let mut chain = Vec::new();
        for n in 1..=up.parts.len() as u64 {
            let part = self.get(id, self.shared.layout.chain(id, n))?;
            chain.extend(part.ok_or_else(|| {
                recording_error(format!("recording {id}: part {n}'s chain was removed"))
            })?);
        }
        let mut file = BufReader::new(self.remote_reader(id, &up));
        verify(&self.shared.key, id, &mut file, up.size(), &chain, &signed)
            .map_err(|e| recording_error(format!("recording {id}: {}", e.message())))
    }
}

impl Shared {
    fn failed(&self, what: &str, id: &RecordingId, e: &object_store::Error) -> Error {
        recording_error(format!(
            "cannot {what} recording {id} in the recording store {}: {e}",
            self.name
        ))
    }

    /// Forgets the cached listing of `id` (sealed again).
    fn forget(&self, id: &RecordingId) {
        let mut sealed = self.sealed.lock().unwrap_or_else(|p| p.into_inner());
        sealed.remove(id);
    }

    fn sealed_info(&self, id: &RecordingId) -> Option<RecordingInfo> {
        let sealed = self.sealed.lock().unwrap_or_else(|p| p.into_inner());
        sealed.get(id).cloned()
    }
}

impl RecordingStore for ObjectRecordingStore {
    fn ready(&self, timeout: std::time::Duration) -> Result<()> {
        self.reach(timeout)
    }

    fn create(&self, id: &RecordingId, started_at: Timestamp) -> Result<Box<dyn RecordingWriter>> {
        // Only the spool is asked: a recording starts while the store is
        // down too (ids are random; the spool refuses one it holds).
        let spooled = self.shared.spool.create(id, started_at)?;
        self.shared.uploader.track(id.clone(), true);
        self.shared.uploader.start(&self.rt, &self.shared);
        Ok(Box::new(ObjectWriter {
            spooled,
            shared: self.shared.clone(),
            waiting: 0,
        }))
    }

    fn list(&self, filter: &RecordingFilter) -> Result<Vec<RecordingInfo>> {
        let mut all = BTreeMap::new();
        let spooled = RecordingFilter {
            session: filter.session.clone(),
            ..RecordingFilter::default()
        };
        for info in self.shared.spool.list(&spooled)? {
            all.insert(info.id.clone(), info);
        }
        let (remote, prefix) = (
            self.shared.remote.clone(),
            self.shared.layout.prefix().clone(),
        );
        let dirs = self
            .rt
            .run(async move { remote.list_with_delimiter(Some(&prefix)).await })?
            .map_err(|e| {
                recording_error(format!(
                    "cannot list the recording store {}: {e}",
                    self.shared.name
                ))
            })?
            .common_prefixes;
        for id in dirs.iter().filter_map(|d| self.shared.layout.id_of(d)) {
            if all.contains_key(&id) || filter.session.as_ref().is_some_and(|s| &id.session() != s)
            {
                continue;
            }
            // Uploaded while we listed: the store has it now.
            if let Some(info) = self.remote_info(&id)? {
                all.insert(id, info);
            }
        }
        let mut out: Vec<_> = all.into_values().filter(|i| filter.admits(i)).collect();
        out.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
        Ok(out)
    }

    fn open(&self, id: &RecordingId) -> Result<Box<dyn Read + Send>> {
        // An open spooled file stays readable when the uploader removes it.
        match self.shared.spool.open(id) {
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            other => return other,
        }
        let up = self.uploaded(id)?;
        if up.parts.is_empty() && !up.manifest {
            return Err(Error::not_found(format!("no recording {id}")));
        }
        Ok(Box::new(self.remote_reader(id, &up)))
    }

    fn manifest(&self, id: &RecordingId) -> Result<Option<SignedManifest>> {
        match self.shared.spool.manifest(id)? {
            Some(m) => Ok(Some(m)),
            None => self.remote_manifest(id),
        }
    }

    fn verify(&self, id: &RecordingId) -> Result<Verified> {
        if self.shared.spool.cast_path(id).exists() {
            match self.shared.spool.verify(id) {
                Ok(v) => return Ok(v),
                // Uploaded and removed while it was read: the store has it.
                Err(_) if !self.shared.spool.cast_path(id).exists() => {}
                Err(e) => return Err(e),
            }
        }
        self.remote_verify(id)
    }

    fn seal_abandoned(&self) -> Result<Vec<RecordingId>> {
        let sealed = self.shared.spool.seal_abandoned()?;
        // Every spooled recording is sealed now: finish their uploads.
        for info in self.shared.spool.list(&RecordingFilter::default())? {
            self.shared.uploader.track(info.id, false);
        }
        self.shared.uploader.start(&self.rt, &self.shared);
        Ok(sealed)
    }

    fn seal_lost(&self, session: &SessionId) -> Result<Vec<SignedManifest>> {
        self.seal_lost_session(session)
    }

    fn flush(&self, timeout: Duration) -> bool {
        self.shared.uploader.wait_idle(timeout)
    }
}

/// A recording being written: to the spool, the uploader woken when a
/// part's worth waits and at the seal.
#[derive(Debug)]
struct ObjectWriter {
    spooled: Box<dyn RecordingWriter>,
    shared: Arc<Shared>,
    waiting: usize,
}

impl RecordingWriter for ObjectWriter {
    fn id(&self) -> &RecordingId {
        self.spooled.id()
    }

    fn append(&mut self, chunk: &[u8]) -> Result<()> {
        self.spooled.append(chunk)?;
        self.waiting += chunk.len();
        if self.waiting >= self.shared.uploader.max_part() {
            self.waiting = 0;
            self.shared.uploader.wake();
        }
        Ok(())
    }

    fn seal(self: Box<Self>, ended_at: Timestamp, state: SealState) -> Result<SignedManifest> {
        let signed = self.spooled.seal(ended_at, state)?;
        self.shared.uploader.wake();
        Ok(signed)
    }
}
