//! The uploader: one task that moves spooled recordings to the object
//! store, part by part, then their manifests, then removes them from the
//! spool.
//!
//! Each pass takes every tracked recording, reads the chain lines added to
//! its spool since the last part and uploads them as parts (`chunk-n`, then
//! `chain-n`) of at most [`UploadOptions::max_part`] bytes; a sealed
//! recording (its manifest spooled before its chain was read) then gets
//! its manifest uploaded and its spooled files removed. Passes run every
//! [`UploadOptions::interval`], sooner when a writer has a part's worth or
//! seals. When the store fails, the pass stops and the next one waits
//! twice as long as the last, up to [`UploadOptions::max_backoff`]: nothing
//! is removed from the spool that the store does not have. A part once tried keeps its bounds until it is in the store (a put that
//! timed out may still land later, and must land the same bytes). A
//! recording tracked at start-up is resumed from what its listing shows is uploaded
//! (the last part's chain line must match the spool's, or its objects are
//! uploaded anew). A recording the store holds sealed already is done,
//! unless the spool holds more chunks than that seal covers: a survivor
//! sealed what it found while this node was lost (`seal.rs`), and the
//! rest is uploaded after it, the spool's manifest replacing that seal.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use object_store::{ObjectStoreExt as _, PutPayload};

use super::layout;
use super::reader::Blocking;
use super::{Shared, UploadOptions};
use crate::error::{Error, Result};
use crate::record::RecordingId;
use crate::record::integrity::{ChunkRecord, SignedManifest};

/// The uploads still to do, and the task doing them.
#[derive(Debug)]
pub(super) struct Uploader {
    options: UploadOptions,
    state: Mutex<HashMap<RecordingId, Progress>>,
    idle: Condvar,
    wake: tokio::sync::Notify,
    started: AtomicBool,
}

/// How far one recording's upload got.
#[derive(Debug, Clone, Default)]
struct Progress {
    /// Whether the counts below are known (else: read from the store).
    known: bool,
    parts: u64,
    records: u64,
    bytes: u64,
    /// Bytes of the spooled chain file uploaded.
    chain_offset: u64,
    /// The chunk count part `parts + 1` ends at, once tried: a retry puts
    /// the same bytes, so a put that timed out here but reaches the store
    /// late cannot leave a part that disagrees with its chain.
    next_end: Option<u64>,
    /// A spool problem was logged (not again each pass).
    reported: bool,
}

/// Why a pass stopped: the store failed (back off), or one recording's
/// spool cannot be uploaded (logged, the others go on).
enum Failed {
    Store(Error),
    Spool(Error),
}

fn store_err(e: object_store::Error) -> Failed {
    Failed::Store(Error::new(crate::ErrorKind::Recording, e.to_string()))
}

fn spool_err(e: impl Into<Error>) -> Failed {
    Failed::Spool(e.into())
}

impl Uploader {
    pub fn new(mut options: UploadOptions) -> Uploader {
        options.interval = options
            .interval
            .clamp(Duration::from_millis(100), Duration::from_secs(2));
        options.max_part = options.max_part.max(1);
        options.max_backoff = options.max_backoff.max(options.interval);
        Uploader {
            options,
            state: Mutex::default(),
            idle: Condvar::new(),
            wake: tokio::sync::Notify::new(),
            started: AtomicBool::new(false),
        }
    }

    pub fn max_part(&self) -> usize {
        self.options.max_part
    }

    /// Uploads `id` (`new`: nothing of it is in the store yet).
    pub fn track(&self, id: RecordingId, new: bool) {
        self.lock().entry(id).or_insert(Progress {
            known: new,
            ..Progress::default()
        });
    }

    /// Starts the task (once).
    pub fn start(&self, rt: &Blocking, shared: &Arc<Shared>) {
        if !self.started.swap(true, Ordering::AcqRel) {
            rt.handle().spawn(run(shared.clone()));
        }
    }

    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub fn pending(&self) -> usize {
        self.lock().len()
    }

    /// Waits until nothing is left to upload, at most `timeout`.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        self.wake();
        let state = self.lock();
        let (state, _) = self
            .idle
            .wait_timeout_while(state, timeout, |s| !s.is_empty())
            .unwrap_or_else(|p| p.into_inner());
        state.is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RecordingId, Progress>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn done(&self, id: &RecordingId) {
        let mut state = self.lock();
        state.remove(id);
        self.idle.notify_all();
    }

    fn save(&self, id: &RecordingId, p: &Progress) {
        if let Some(slot) = self.lock().get_mut(id) {
            *slot = p.clone();
        }
    }
}

/// The task: a pass every interval (or when woken), backing off while the
/// store fails.
async fn run(s: Arc<Shared>) {
    let options = s.uploader.options.clone();
    let mut backoff: Option<Duration> = None;
    loop {
        match backoff {
            Some(wait) => tokio::time::sleep(wait).await,
            None => {
                let _ = tokio::time::timeout(options.interval, s.uploader.wake.notified()).await;
            }
        }
        match pass(&s).await {
            Ok(()) => {
                if backoff.take().is_some() {
                    tracing::info!(store = %s.name, "the recording store is back; spooled recordings uploaded");
                }
            }
            Err(error) => {
                let next = match backoff {
                    None => {
                        tracing::warn!(store = %s.name, %error, "cannot upload recordings; they stay in the spool and are uploaded when the store is back");
                        options.interval
                    }
                    Some(wait) => (wait * 2).min(options.max_backoff),
                };
                tracing::debug!(store = %s.name, %error, retry_in = ?next, "upload failed");
                backoff = Some(next);
            }
        }
    }
}

/// One pass over every tracked recording; the store's first error ends it.
async fn pass(s: &Arc<Shared>) -> Result<()> {
    let ids: Vec<_> = s.uploader.lock().keys().cloned().collect();
    for id in ids {
        let Some(mut p) = s.uploader.lock().get(&id).cloned() else {
            continue;
        };
        match upload(s, &id, &mut p).await {
            Ok(true) => s.uploader.done(&id),
            Ok(false) => s.uploader.save(&id, &p),
            Err(Failed::Store(e)) => {
                s.uploader.save(&id, &p);
                return Err(e);
            }
            Err(Failed::Spool(error)) => {
                if !p.reported {
                    tracing::error!(recording = %id, %error, "cannot upload a spooled recording");
                    p.reported = true;
                }
                s.uploader.save(&id, &p);
            }
        }
    }
    Ok(())
}

/// Uploads what `id`'s spool has beyond `p`; `true` once it is all in the
/// store and removed from the spool.
async fn upload(
    s: &Shared,
    id: &RecordingId,
    p: &mut Progress,
) -> std::result::Result<bool, Failed> {
    if !p.known && resume(s, id, p).await? {
        s.spool.remove(id).map_err(spool_err)?;
        return Ok(true);
    }
    // The manifest is spooled after the last chain line: seen first, the
    // chain read next is whole.
    let manifest = s.spool.manifest_path(id);
    let sealed = manifest.exists();
    let (records, lines) = spooled_chain(s, id, p.chain_offset).map_err(spool_err)?;
    let mut from = 0;
    while from < records.len() {
        let mut to = from + 1;
        let mut size = records[from].len;
        match p.next_end {
            Some(end) => {
                let n = usize::try_from(end.saturating_sub(p.records)).unwrap_or(usize::MAX);
                to = (from + n).clamp(from + 1, records.len());
            }
            None => {
                let max = s.uploader.options.max_part as u64;
                while to < records.len() && size + records[to].len <= max {
                    size += records[to].len;
                    to += 1;
                }
            }
        }
        let (first, last) = (&records[from], &records[to - 1]);
        if first.index != p.records || first.offset != p.bytes {
            return Err(spool_err(Error::internal(format!(
                "its chain goes on at chunk {} (byte {}), the upload at chunk {} (byte {})",
                first.index, first.offset, p.records, p.bytes
            ))));
        }
        let end = last.offset + last.len;
        let bytes = read_range(&s.spool.cast_path(id), first.offset, end).map_err(spool_err)?;
        let chain: Vec<u8> = lines[from..to].concat();
        let n = p.parts + 1;
        p.next_end = Some(last.index + 1);
        s.remote
            .put(&s.layout.chunk(id, n), PutPayload::from(bytes))
            .await
            .map_err(store_err)?;
        s.remote
            .put(&s.layout.chain(id, n), PutPayload::from(chain.clone()))
            .await
            .map_err(store_err)?;
        p.parts = n;
        p.records = last.index + 1;
        p.bytes = end;
        p.chain_offset += chain.len() as u64;
        p.next_end = None;
        from = to;
    }
    if !sealed {
        return Ok(false);
    }
    let signed = std::fs::read(&manifest).map_err(spool_err)?;
    s.remote
        .put(&s.layout.manifest(id), PutPayload::from(signed))
        .await
        .map_err(store_err)?;
    s.spool.remove(id).map_err(spool_err)?;
    Ok(true)
}

/// Reads how far a recording tracked at start-up was uploaded into `p`;
/// `true` when the store has all of it (its manifest). Parts that do not
/// match the spool are removed to be uploaded anew.
async fn resume(
    s: &Shared,
    id: &RecordingId,
    p: &mut Progress,
) -> std::result::Result<bool, Failed> {
    let listed = s
        .remote
        .list_with_delimiter(Some(&s.layout.dir(id)))
        .await
        .map_err(store_err)?;
    let up = layout::uploaded(
        listed
            .objects
            .iter()
            .filter_map(|o| Some((o.location.filename()?, o.size))),
    );
    if up.manifest {
        // Sealed by a survivor while this node was lost (`seal.rs`), over
        // the parts it had: the spool may hold more, uploaded after them,
        // and its manifest then replaces that seal.
        let stored = s
            .remote
            .get(&s.layout.manifest(id))
            .await
            .map_err(store_err)?
            .bytes()
            .await
            .map_err(store_err)?;
        let covered = SignedManifest::parse(&stored).map(|m| m.manifest.chunks);
        let (records, _) = spooled_chain(s, id, 0).map_err(spool_err)?;
        if covered.is_ok_and(|c| records.len() as u64 <= c) {
            return Ok(true);
        }
        tracing::info!(recording = %id, "the store holds less than the spool under its seal; completing it from the spool");
    }
    *p = Progress {
        known: true,
        ..Progress::default()
    };
    let n = up.parts.len() as u64;
    if n == 0 {
        return Ok(false);
    }
    let last_chain = s
        .remote
        .get(&s.layout.chain(id, n))
        .await
        .map_err(store_err)?
        .bytes()
        .await
        .map_err(store_err)?;
    let last: Option<ChunkRecord> = last_chain
        .split(|b| *b == b'\n')
        .rfind(|l| !l.is_empty())
        .and_then(|l| serde_json::from_slice(l).ok());
    let (records, lines) = spooled_chain(s, id, 0).map_err(spool_err)?;
    let matched = last.filter(|r| {
        r.offset + r.len == up.size() && records.get(r.index as usize).is_some_and(|mine| mine == r)
    });
    match matched {
        Some(r) => {
            let upto = r.index as usize + 1;
            p.parts = n;
            p.records = upto as u64;
            p.bytes = up.size();
            p.chain_offset = lines[..upto].iter().map(|l| l.len() as u64).sum();
            tracing::info!(recording = %id, parts = n, bytes = p.bytes, "resuming a recording's upload");
        }
        None => {
            tracing::warn!(recording = %id, "the store's parts do not match the spool; uploading it anew");
            for o in &listed.objects {
                s.remote.delete(&o.location).await.map_err(store_err)?;
            }
        }
    }
    Ok(false)
}

/// The whole chain lines of `id`'s spooled chain file from `offset`, parsed
/// and as written (newline included).
fn spooled_chain(
    s: &Shared,
    id: &RecordingId,
    offset: u64,
) -> Result<(Vec<ChunkRecord>, Vec<Vec<u8>>)> {
    let mut file = File::open(s.spool.chain_path(id))?;
    file.seek(SeekFrom::Start(offset))?;
    let mut text = Vec::new();
    file.read_to_end(&mut text)?;
    let whole = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let (mut records, mut lines) = (Vec::new(), Vec::new());
    for line in text[..whole].split_inclusive(|b| *b == b'\n') {
        let record: ChunkRecord = serde_json::from_slice(line).map_err(|e| {
            Error::new(
                crate::ErrorKind::Recording,
                format!("its chain file has a line that is not a chunk record: {e}"),
            )
        })?;
        records.push(record);
        lines.push(line.to_vec());
    }
    Ok((records, lines))
}

/// Bytes `from..to` of a spooled file.
fn read_range(path: &std::path::Path, from: u64, to: u64) -> Result<Vec<u8>> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(from))?;
    let mut buf = vec![0; usize::try_from(to - from).unwrap_or(usize::MAX)];
    file.read_exact(&mut buf)?;
    Ok(buf)
}
