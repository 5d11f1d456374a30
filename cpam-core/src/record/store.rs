//! Where recordings live: the [`RecordingStore`] trait and
//! [`FileRecordingStore`], files under `<data dir>/recordings/`.
//!
//! A store's methods block (file or network I/O): the recorder calls them
//! from its own writer threads, async callers through `spawn_blocking`.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::asciicast::{EventKind, FORMAT, Header, Reader, recording_error};
use super::id::RecordingId;
use super::integrity::{
    Chain, Manifest, RecordingKey, SealState, SignedManifest, Verified, check_chain, parse_chain,
    verify,
};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{SessionId, Timestamp};

/// Where a server keeps its recordings.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum RecordingStorage {
    /// Files under `<data dir>/recordings/` (the default).
    #[default]
    DataDir,
    /// An S3-compatible object store, spooled in `<data dir>/recordings/`
    /// ([`ObjectRecordingStore`](super::ObjectRecordingStore)).
    #[cfg(feature = "s3")]
    ObjectStore(super::ObjectStoreConfig),
}

/// A recording as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordingInfo {
    pub id: RecordingId,
    pub session_id: SessionId,
    pub channel: u32,
    /// What was recorded: a terminal (asciicast) or a remote desktop.
    pub kind: RecordingKind,
    /// From the manifest, else the file's header (to the second).
    pub started_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    /// Bytes written so far.
    pub size: u64,
    /// `None` while it is being written (or until a crashed server's next
    /// start, or the survivor of its lost node, seals it).
    pub state: Option<SealState>,
}

/// What a recording holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordingKind {
    /// A terminal channel, asciicast v2.
    Terminal,
    /// A remote desktop's PDUs ([`RDP_FORMAT`](super::RDP_FORMAT)).
    Rdp,
}

impl RecordingKind {
    /// Every kind.
    pub const ALL: [RecordingKind; 2] = [RecordingKind::Terminal, RecordingKind::Rdp];

    /// `terminal` or `rdp`, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingKind::Terminal => "terminal",
            RecordingKind::Rdp => "rdp",
        }
    }
}

/// Which recordings [`RecordingStore::list`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordingFilter {
    pub session: Option<SessionId>,
    /// Started at or after.
    pub since: Option<Timestamp>,
    /// Started before.
    pub until: Option<Timestamp>,
}

impl RecordingFilter {
    /// The recordings of one session.
    pub fn session(id: &SessionId) -> RecordingFilter {
        RecordingFilter {
            session: Some(id.clone()),
            ..RecordingFilter::default()
        }
    }

    pub(crate) fn admits(&self, info: &RecordingInfo) -> bool {
        let started = info.started_at.unwrap_or(Timestamp(0));
        self.session.as_ref().is_none_or(|s| &info.session_id == s)
            && self.since.is_none_or(|t| started >= t)
            && self.until.is_none_or(|t| started < t)
    }
}

/// A recording whose output contains a searched text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchHit {
    pub id: RecordingId,
    pub session_id: SessionId,
    /// Seconds into the recording of the output events where the text
    /// shows (ends), at most [`SEARCH_MAX_TIMES`].
    pub times: Vec<f64>,
}

/// How many times of one recording a search reports.
pub const SEARCH_MAX_TIMES: usize = 100;

/// One recording being written; every call is durable when it returns.
pub trait RecordingWriter: Send + std::fmt::Debug {
    /// The recording.
    fn id(&self) -> &RecordingId;

    /// Appends one chunk (whole asciicast lines) and records it in the chain.
    fn append(&mut self, chunk: &[u8]) -> Result<()>;

    /// Signs the manifest; nothing can be appended afterwards.
    fn seal(self: Box<Self>, ended_at: Timestamp, state: SealState) -> Result<SignedManifest>;
}

/// Where recordings are written, sealed, listed, read and checked (files,
/// or with feature `s3` an object store). Methods block.
pub trait RecordingStore: Send + Sync + std::fmt::Debug {
    /// Starts recording `id`; `Conflict` if it exists.
    fn create(&self, id: &RecordingId, started_at: Timestamp) -> Result<Box<dyn RecordingWriter>>;

    /// The recordings `filter` admits, oldest first.
    fn list(&self, filter: &RecordingFilter) -> Result<Vec<RecordingInfo>>;

    /// The `.cast` bytes (also of a recording being written).
    fn open(&self, id: &RecordingId) -> Result<Box<dyn Read + Send>>;

    /// The signed manifest, `None` while unsealed.
    fn manifest(&self, id: &RecordingId) -> Result<Option<SignedManifest>>;

    /// Checks a sealed recording (see [`integrity::verify`](super::integrity::verify));
    /// the error names what is wrong, and an unsealed one is an error too.
    fn verify(&self, id: &RecordingId) -> Result<Verified>;

    /// Seals every recording left unsealed (its writer gone: the server
    /// stopped mid-recording) as `incomplete`, keeping the chained chunks
    /// and the whole lines written after them. Run at start-up, before any
    /// recording starts.
    fn seal_abandoned(&self) -> Result<Vec<RecordingId>>;

    /// Seals, as `incomplete`, the unsealed recordings of `session`, which
    /// another node was writing when it was lost (see `server::nodes`):
    /// what this store already holds of them. Returns the manifests it
    /// signed; a recording already sealed is left as it is. A store whose
    /// recordings only the writing node reaches (files on its disk) seals
    /// nothing here: that node seals them when it starts again.
    fn seal_lost(&self, session: &SessionId) -> Result<Vec<SignedManifest>> {
        let _ = session;
        Ok(Vec::new())
    }

    /// Waits, at most `timeout`, until every sealed recording is where it
    /// stays (an object store's uploads); returns whether it is. Files are
    /// there when sealed.
    fn flush(&self, timeout: std::time::Duration) -> bool {
        let _ = timeout;
        true
    }

    /// Whether the store answers now, within `timeout` (`/readyz`); the
    /// error names the store. Files under the data dir always do.
    fn ready(&self, timeout: std::time::Duration) -> Result<()> {
        let _ = timeout;
        Ok(())
    }

    /// The header and events of a recording.
    fn events(&self, id: &RecordingId) -> Result<Reader<BufReader<Box<dyn Read + Send>>>> {
        Reader::new(BufReader::new(self.open(id)?))
    }

    /// The recordings `filter` admits whose output shows `query`.
    fn search(&self, query: &str, filter: &RecordingFilter) -> Result<Vec<SearchHit>> {
        if query.is_empty() {
            return Err(Error::invalid("the search text is empty"));
        }
        let mut hits = Vec::new();
        for info in self.list(filter)? {
            let events = self.events(&info.id)?;
            if events.header().format.is_some() {
                // Not a terminal's: no text to search.
                continue;
            }
            let times = search_output(events, query)?;
            if !times.is_empty() {
                hits.push(SearchHit {
                    id: info.id,
                    session_id: info.session_id,
                    times,
                });
            }
        }
        Ok(hits)
    }
}

/// The times of the output events where `query` ends, also across events.
fn search_output<R: std::io::BufRead>(events: Reader<R>, query: &str) -> Result<Vec<f64>> {
    let keep = query.chars().count().saturating_sub(1);
    let mut tail = String::new();
    let mut times = Vec::new();
    for event in events {
        let event = event?;
        if event.kind != EventKind::Output {
            continue;
        }
        let text = format!("{tail}{}", event.data);
        if text.contains(query) && times.len() < SEARCH_MAX_TIMES {
            times.push(event.t);
        }
        let n = text.chars().count();
        tail = text.chars().skip(n.saturating_sub(keep)).collect();
    }
    Ok(times)
}

/// Recordings as files in one directory: `<id>.cast` (asciicast v2),
/// `<id>.chain` (one chunk record a line) and, once sealed,
/// `<id>.manifest.json`.
#[derive(Debug, Clone)]
pub struct FileRecordingStore {
    dir: PathBuf,
    key: RecordingKey,
}

impl FileRecordingStore {
    /// The store in `dir` (created, mode 0700), signing with `key`.
    pub fn open(dir: &Path, key: RecordingKey) -> Result<FileRecordingStore> {
        fs::create_dir_all(dir)
            .map_err(|e| Error::from(e).context(&format!("cannot create {}", dir.display())))?;
        set_mode(dir, 0o700)?;
        Ok(FileRecordingStore {
            dir: dir.to_path_buf(),
            key,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The `.cast` file of `id`.
    pub fn cast_path(&self, id: &RecordingId) -> PathBuf {
        self.dir.join(format!("{id}.cast"))
    }

    pub(crate) fn chain_path(&self, id: &RecordingId) -> PathBuf {
        self.dir.join(format!("{id}.chain"))
    }

    pub(crate) fn manifest_path(&self, id: &RecordingId) -> PathBuf {
        self.dir.join(format!("{id}.manifest.json"))
    }

    /// Removes `id`'s files (once an object store has them), the recording
    /// file first so nothing half-removed lists as a recording.
    pub fn remove(&self, id: &RecordingId) -> Result<()> {
        for path in [
            self.cast_path(id),
            self.chain_path(id),
            self.manifest_path(id),
        ] {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(
                        Error::from(e).context(&format!("cannot remove {}", path.display()))
                    );
                }
            }
        }
        sync_dir(&self.dir)
    }

    fn ids(&self) -> Result<Vec<RecordingId>> {
        let entries = fs::read_dir(&self.dir)
            .map_err(|e| Error::from(e).context(&format!("cannot list {}", self.dir.display())))?;
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".cast")) else {
                continue;
            };
            if let Ok(id) = RecordingId::parse(stem) {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    fn info(&self, id: &RecordingId) -> Result<RecordingInfo> {
        let size = fs::metadata(self.cast_path(id))?.len();
        // A manifest that does not parse lists as unsealed; `verify` says
        // what is wrong with it.
        let (started_at, ended_at, state) = match self.manifest(id) {
            Ok(Some(s)) => (
                Some(s.manifest.started_at),
                Some(s.manifest.ended_at),
                Some(s.manifest.state),
            ),
            Ok(None) | Err(_) => (header_start(&self.cast_path(id)), None, None),
        };
        let rdp = header(&self.cast_path(id))
            .is_some_and(|h| h.format.as_deref() == Some(super::RDP_FORMAT));
        Ok(RecordingInfo {
            id: id.clone(),
            session_id: id.session(),
            channel: id.channel(),
            kind: if rdp {
                RecordingKind::Rdp
            } else {
                RecordingKind::Terminal
            },
            started_at,
            ended_at,
            size,
            state,
        })
    }

    /// Seals one abandoned recording as `incomplete`.
    fn seal_one(&self, id: &RecordingId) -> Result<()> {
        let cast_path = self.cast_path(id);
        let mut file = OpenOptions::new().read(true).write(true).open(&cast_path)?;
        let len = file.metadata()?.len();
        let chain_text = fs::read(self.chain_path(id)).unwrap_or_default();
        let (records, cut) = parse_chain(&chain_text);
        let (mut chain, mut whole, broken) =
            check_chain(id, &records, &mut BufReader::new(&mut file));
        if let Some(p) = cut.iter().chain(broken.iter()).next() {
            tracing::warn!(recording = %id, problem = %p, "sealing what the chain covers");
        }
        let mut records: Vec<_> = records.into_iter().take(chain.chunks() as usize).collect();
        let covered = chain.size();
        // Whole lines written after the last chained chunk (the crash came
        // between the two writes) become the last chunk; a cut line is
        // dropped so the file stays playable.
        let mut end = covered;
        if broken.is_none() && len > covered {
            let mut tail = Vec::new();
            file.seek(SeekFrom::Start(covered))?;
            (&mut file).take(len - covered).read_to_end(&mut tail)?;
            if let Some(i) = tail.iter().rposition(|b| *b == b'\n') {
                let tail = &tail[..=i];
                whole.update(tail);
                records.push(chain.push(tail));
                end = chain.size();
            }
        }
        if len > end {
            tracing::warn!(recording = %id, dropped = len - end, "dropping bytes no chunk covers");
            file.set_len(end)?;
            file.sync_all()?;
        }
        drop(file);
        let chain_lines: String = records.iter().map(|r| r.to_line()).collect();
        write_atomic(&self.chain_path(id), chain_lines.as_bytes())?;
        let mtime = fs::metadata(&cast_path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or_else(Timestamp::now, |d| {
                Timestamp(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            });
        let started_at = header_start(&cast_path).unwrap_or(mtime);
        let signed = self.key.sign(Manifest {
            format: FORMAT.into(),
            recording_id: id.clone(),
            session_id: id.session(),
            channel: id.channel(),
            started_at,
            ended_at: mtime.max(started_at),
            state: SealState::Incomplete,
            size: chain.size(),
            sha256: hex::encode(whole.finalize()),
            chain_head: chain.head(),
            chunks: chain.chunks(),
            signer: String::new(),
        })?;
        write_atomic(&self.manifest_path(id), &signed.to_bytes())
    }
}

/// The header of a `.cast` file.
fn header(path: &Path) -> Option<Header> {
    let file = File::open(path).ok()?;
    Some(Reader::new(BufReader::new(file)).ok()?.header().clone())
}

/// The start time in a `.cast` header, to the second.
fn header_start(path: &Path) -> Option<Timestamp> {
    header(path)?.timestamp.map(|s| Timestamp(s * 1000))
}

/// Recording `id` as the SDKs read it: `{"header", "events", "desktop"}`.
/// A terminal recording's `events` are `{"t", "kind", "data"}` and its
/// `desktop` null; an RDP recording has no events to show as text: its
/// `desktop` is `{"width", "height", "duration", "pdus"}` (its frames are
/// [`rdp_frame_png`](super::rdp_frame_png)'s).
pub fn read_recording(store: &dyn RecordingStore, id: &RecordingId) -> Result<serde_json::Value> {
    let events = store.events(id)?;
    let header = serde_json::to_value(events.header())
        .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
    if events.header().format.as_deref() == Some(super::RDP_FORMAT) {
        drop(events);
        return Ok(serde_json::json!({
            "header": header, "events": [], "desktop": rdp_desktop(store, id)?,
        }));
    }
    let events = events.collect::<Result<Vec<_>>>()?;
    Ok(serde_json::json!({ "header": header, "events": events, "desktop": null }))
}

#[cfg(feature = "rdp")]
fn rdp_desktop(store: &dyn RecordingStore, id: &RecordingId) -> Result<serde_json::Value> {
    super::player::rdp_summary(store, id)
}

#[cfg(not(feature = "rdp"))]
fn rdp_desktop(store: &dyn RecordingStore, id: &RecordingId) -> Result<serde_json::Value> {
    let (_, events) = super::read_rdp(BufReader::new(store.open(id)?))?;
    Ok(serde_json::json!({
        "width": null,
        "height": null,
        "duration": events.last().map_or(0.0, |e| e.t),
        "pdus": events.len(),
    }))
}

impl RecordingStore for FileRecordingStore {
    fn create(&self, id: &RecordingId, started_at: Timestamp) -> Result<Box<dyn RecordingWriter>> {
        let path = self.cast_path(id);
        let cast = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    Error::conflict(format!("recording {id} exists"))
                } else {
                    Error::from(e).context(&format!("cannot create {}", path.display()))
                }
            })?;
        let chain_file = OpenOptions::new()
            .append(true)
            .create(true)
            .truncate(false)
            .open(self.chain_path(id))?;
        sync_dir(&self.dir)?;
        Ok(Box::new(FileWriter {
            id: id.clone(),
            cast,
            chain_file,
            chain: Chain::new(id),
            hash: Sha256::new(),
            started_at,
            manifest_path: self.manifest_path(id),
            key: self.key.clone(),
        }))
    }

    fn list(&self, filter: &RecordingFilter) -> Result<Vec<RecordingInfo>> {
        let mut out = Vec::new();
        for id in self.ids()? {
            if filter.session.as_ref().is_some_and(|s| &id.session() != s) {
                continue;
            }
            let info = self.info(&id)?;
            if filter.admits(&info) {
                out.push(info);
            }
        }
        out.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
        Ok(out)
    }

    fn open(&self, id: &RecordingId) -> Result<Box<dyn Read + Send>> {
        let path = self.cast_path(id);
        match File::open(&path) {
            Ok(f) => Ok(Box::new(f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(Error::not_found(format!("no recording {id}")))
            }
            Err(e) => Err(Error::from(e).context(&format!("cannot open {}", path.display()))),
        }
    }

    fn manifest(&self, id: &RecordingId) -> Result<Option<SignedManifest>> {
        match fs::read(self.manifest_path(id)) {
            Ok(bytes) => SignedManifest::parse(&bytes).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn verify(&self, id: &RecordingId) -> Result<Verified> {
        let file = match self.open(id) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                if self.manifest_path(id).exists() {
                    return Err(recording_error(format!(
                        "recording {id}: the .cast file was removed"
                    )));
                }
                return Err(Error::not_found(format!("no recording {id}")));
            }
            Err(e) => return Err(e),
        };
        let signed = self.manifest(id)?.ok_or_else(|| {
            recording_error(format!(
                "recording {id} is not sealed (still being written, or the server has not restarted since it stopped)"
            ))
        })?;
        let chain = fs::read(self.chain_path(id)).map_err(|e| {
            recording_error(format!("recording {id}: cannot read its chain file: {e}"))
        })?;
        let len = fs::metadata(self.cast_path(id))?.len();
        verify(
            &self.key,
            id,
            &mut BufReader::new(file),
            len,
            &chain,
            &signed,
        )
        .map_err(|e| recording_error(format!("recording {id}: {}", e.message())))
    }

    fn seal_abandoned(&self) -> Result<Vec<RecordingId>> {
        let mut sealed = Vec::new();
        for id in self.ids()? {
            if self.manifest_path(&id).exists() {
                continue;
            }
            match self.seal_one(&id) {
                Ok(()) => sealed.push(id),
                Err(error) => {
                    tracing::error!(recording = %id, %error, "cannot seal an abandoned recording")
                }
            }
        }
        Ok(sealed)
    }
}

/// A recording being written to files.
#[derive(Debug)]
struct FileWriter {
    id: RecordingId,
    cast: File,
    chain_file: File,
    chain: Chain,
    hash: Sha256,
    started_at: Timestamp,
    manifest_path: PathBuf,
    key: RecordingKey,
}

impl RecordingWriter for FileWriter {
    fn id(&self) -> &RecordingId {
        &self.id
    }

    fn append(&mut self, chunk: &[u8]) -> Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        // The bytes are durable before the chain names them.
        self.cast.write_all(chunk)?;
        self.cast.sync_data()?;
        let record = self.chain.push(chunk);
        self.hash.update(chunk);
        self.chain_file.write_all(record.to_line().as_bytes())?;
        self.chain_file.sync_data()?;
        Ok(())
    }

    fn seal(self: Box<Self>, ended_at: Timestamp, state: SealState) -> Result<SignedManifest> {
        let m = Manifest {
            format: FORMAT.into(),
            recording_id: self.id.clone(),
            session_id: self.id.session(),
            channel: self.id.channel(),
            started_at: self.started_at,
            ended_at: ended_at.max(self.started_at),
            state,
            size: self.chain.size(),
            sha256: hex::encode(self.hash.clone().finalize()),
            chain_head: self.chain.head(),
            chunks: self.chain.chunks(),
            signer: String::new(),
        };
        let signed = self.key.sign(m)?;
        write_atomic(&self.manifest_path, &signed.to_bytes())?;
        Ok(signed)
    }
}

/// Writes `path` through a temporary file and a rename, synced.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| {
        Error::from(e).context(&format!("cannot set permissions of {}", path.display()))
    })
}
