//! A recording's integrity, sans I/O: the chunk chain, the signed manifest
//! and the check of a file against both.
//!
//! A recording is written in chunks. Each chunk gets a line in the chain
//! (offset, length, SHA-256 of its bytes, and the chain hash
//! `SHA-256(previous chain hash || chunk hash)`, starting from
//! `SHA-256("cpam-recording-chain-v1" || recording id)`, so a chain cannot
//! be moved to another recording). At the end the manifest (sizes, the
//! file's SHA-256, the chain head, the session, start and end, complete or
//! not) is signed with Ed25519 by the server's key.

use std::io::Read;

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::asciicast::{FORMAT, recording_error};
use super::id::RecordingId;
use crate::error::Result;
use crate::model::{SessionId, Timestamp};

/// One chunk of a recording file, as its chain line records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkRecord {
    pub index: u64,
    pub offset: u64,
    pub len: u64,
    /// Hex SHA-256 of the chunk's bytes.
    pub sha256: String,
    /// Hex chain hash after this chunk.
    pub chain: String,
}

impl ChunkRecord {
    /// The record as one chain line, newline included.
    pub fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// The running chain of a recording being written or checked.
#[derive(Debug, Clone)]
pub struct Chain {
    head: [u8; 32],
    next_index: u64,
    next_offset: u64,
}

impl Chain {
    /// The chain of an empty recording `id`.
    pub fn new(id: &RecordingId) -> Chain {
        let mut h = Sha256::new();
        h.update(b"cpam-recording-chain-v1");
        h.update(id.as_str().as_bytes());
        Chain {
            head: h.finalize().into(),
            next_index: 0,
            next_offset: 0,
        }
    }

    /// Adds the chunk `bytes` (written right after the previous one) and
    /// returns its record.
    pub fn push(&mut self, bytes: &[u8]) -> ChunkRecord {
        self.push_hash(Sha256::digest(bytes).into(), bytes.len() as u64)
    }

    /// Adds a chunk of `len` bytes whose SHA-256 is `hash`.
    fn push_hash(&mut self, hash: [u8; 32], len: u64) -> ChunkRecord {
        let mut h = Sha256::new();
        h.update(self.head);
        h.update(hash);
        self.head = h.finalize().into();
        let record = ChunkRecord {
            index: self.next_index,
            offset: self.next_offset,
            len,
            sha256: hex::encode(hash),
            chain: hex::encode(self.head),
        };
        self.next_index += 1;
        self.next_offset += len;
        record
    }

    /// The hex chain head.
    pub fn head(&self) -> String {
        hex::encode(self.head)
    }

    /// Chunks so far.
    pub fn chunks(&self) -> u64 {
        self.next_index
    }

    /// Bytes covered so far.
    pub fn size(&self) -> u64 {
        self.next_offset
    }
}

/// Whether a recording ran to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SealState {
    /// Sealed when its channel closed.
    Complete,
    /// Sealed at the next start after the server stopped mid-recording, by
    /// the survivor of a lost node from what the object store held (see
    /// `RecordingStore::seal_lost`), or after the recording could not be
    /// written: it holds what was written (or uploaded).
    Incomplete,
}

impl SealState {
    /// Every state, in declaration order.
    pub const ALL: [SealState; 2] = [SealState::Complete, SealState::Incomplete];

    /// The name used in manifests and listings.
    pub fn as_str(self) -> &'static str {
        match self {
            SealState::Complete => "complete",
            SealState::Incomplete => "incomplete",
        }
    }
}

/// What a recording's signature covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The file's format, [`FORMAT`].
    pub format: String,
    pub recording_id: RecordingId,
    pub session_id: SessionId,
    pub channel: u32,
    pub started_at: Timestamp,
    pub ended_at: Timestamp,
    pub state: SealState,
    /// The file's length in bytes.
    pub size: u64,
    /// Hex SHA-256 of the whole file.
    pub sha256: String,
    /// The chain head after the last chunk.
    pub chain_head: String,
    pub chunks: u64,
    /// Hex Ed25519 public key that signed the manifest.
    pub signer: String,
}

/// A manifest and its Ed25519 signature over the manifest's JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedManifest {
    pub manifest: Manifest,
    /// Hex signature.
    pub signature: String,
}

impl SignedManifest {
    /// Parses a manifest file.
    pub fn parse(bytes: &[u8]) -> Result<SignedManifest> {
        serde_json::from_slice(bytes)
            .map_err(|e| recording_error(format!("the manifest is not valid: {e}")))
    }

    /// The manifest file's contents.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }
}

/// The key that signs and checks recordings: the server's Ed25519 host key.
#[derive(Clone)]
pub struct RecordingKey {
    signing: Option<SigningKey>,
    verifying: VerifyingKey,
}

impl std::fmt::Debug for RecordingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingKey")
            .field("public", &hex::encode(self.verifying.to_bytes()))
            .field("can_sign", &self.signing.is_some())
            .finish()
    }
}

impl RecordingKey {
    /// The signing key of the server's host key (it must be Ed25519).
    pub fn from_host_key(key: &russh::keys::PrivateKey) -> Result<RecordingKey> {
        let pair = key.key_data().ed25519().ok_or_else(|| {
            recording_error(format!(
                "recordings are signed with an Ed25519 host key; this one is {}",
                key.algorithm()
            ))
        })?;
        let seed = zeroize::Zeroizing::new(pair.private.to_bytes());
        Ok(RecordingKey::from_seed(&seed))
    }

    /// A signing key from its 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> RecordingKey {
        let signing = SigningKey::from_bytes(seed);
        RecordingKey {
            verifying: signing.verifying_key(),
            signing: Some(signing),
        }
    }

    /// A key that only checks signatures (hex Ed25519 public key).
    pub fn verify_only(public_hex: &str) -> Result<RecordingKey> {
        let bytes: [u8; 32] = hex::decode(public_hex)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| recording_error("a public key is 32 bytes in hex"))?;
        let verifying = VerifyingKey::from_bytes(&bytes)
            .map_err(|_| recording_error("not an Ed25519 public key"))?;
        Ok(RecordingKey {
            signing: None,
            verifying,
        })
    }

    /// The hex public key.
    pub fn public_hex(&self) -> String {
        hex::encode(self.verifying.to_bytes())
    }

    /// Signs `manifest` (its `signer` set to this key).
    pub fn sign(&self, mut manifest: Manifest) -> Result<SignedManifest> {
        let signing = self
            .signing
            .as_ref()
            .ok_or_else(|| recording_error("this key can only check recordings, not sign them"))?;
        manifest.signer = self.public_hex();
        let sig = signing.sign(&signed_bytes(&manifest));
        Ok(SignedManifest {
            manifest,
            signature: hex::encode(sig.to_bytes()),
        })
    }

    /// Signs `bytes` (already domain-tagged by the caller); hex signature.
    pub(crate) fn sign_bytes(&self, bytes: &[u8]) -> Result<String> {
        let signing = self
            .signing
            .as_ref()
            .ok_or_else(|| recording_error("this key can only check signatures, not sign"))?;
        Ok(hex::encode(signing.sign(bytes).to_bytes()))
    }

    /// Whether `signature` (hex) is this key's over `bytes`.
    pub(crate) fn verifies(&self, bytes: &[u8], signature: &str) -> bool {
        let Some(sig) = hex::decode(signature)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
        else {
            return false;
        };
        let sig = ed25519_dalek::Signature::from_bytes(&sig);
        self.verifying.verify_strict(bytes, &sig).is_ok()
    }

    /// Checks the signature of `signed` against this key.
    pub fn check(&self, signed: &SignedManifest) -> Result<()> {
        let bytes: [u8; 64] = hex::decode(&signed.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| recording_error("the manifest's signature is not 64 bytes of hex"))?;
        let sig = ed25519_dalek::Signature::from_bytes(&bytes);
        self.verifying
            .verify_strict(&signed_bytes(&signed.manifest), &sig)
            .map_err(|_| {
                recording_error(
                    "the manifest's signature does not match: the manifest was edited or signed by another key",
                )
            })
    }
}

/// The bytes a signature covers: a domain tag and the manifest's JSON.
fn signed_bytes(m: &Manifest) -> Vec<u8> {
    let mut v = b"cpam-recording-manifest-v1\n".to_vec();
    v.extend(serde_json::to_vec(m).unwrap_or_default());
    v
}

/// Parses a chain file; `Err` names the first line that is not a record.
/// A last line without its newline (cut by a crash) is reported apart.
pub fn parse_chain(text: &[u8]) -> (Vec<ChunkRecord>, Option<String>) {
    let mut out = Vec::new();
    let mut rest = text;
    let mut n = 0;
    while !rest.is_empty() {
        n += 1;
        let (line, next, whole) = match rest.iter().position(|b| *b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..], true),
            None => (rest, &rest[rest.len()..], false),
        };
        rest = next;
        if !whole {
            return (out, Some(format!("chain line {n} is cut short")));
        }
        match serde_json::from_slice::<ChunkRecord>(line) {
            Ok(r) => out.push(r),
            Err(_) => return (out, Some(format!("chain line {n} is not a chunk record"))),
        }
    }
    (out, None)
}

/// The longest prefix of `records` that is a valid chain of `id` over
/// `file` (read from its start, in bounded memory): indexes and offsets in
/// sequence, each chunk's hash matching the file's bytes and each chain
/// hash following from the last. Returns the good chain, the file's SHA-256
/// over what the chain covers, and, if it stopped early, why.
pub fn check_chain(
    id: &RecordingId,
    records: &[ChunkRecord],
    file: &mut dyn Read,
) -> (Chain, Sha256, Option<String>) {
    let mut chain = Chain::new(id);
    let mut whole = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    for r in records {
        let i = chain.chunks();
        if r.index != i || r.offset != chain.size() {
            let why = format!(
                "chain record {i} is out of sequence (index {}, offset {})",
                r.index, r.offset
            );
            return (chain, whole, Some(why));
        }
        let end = r.offset.saturating_add(r.len);
        let mut chunk = Sha256::new();
        let mut left = r.len;
        while left > 0 {
            let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
            let n = match file.read(&mut buf[..want]) {
                Ok(0) => {
                    let why = format!(
                        "chunk {i} (bytes {}..{end}) is missing: the file was cut to {} bytes",
                        r.offset,
                        end - left
                    );
                    return (chain, whole, Some(why));
                }
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let why = format!("cannot read chunk {i}: {e}");
                    return (chain, whole, Some(why));
                }
            };
            chunk.update(&buf[..n]);
            whole.update(&buf[..n]);
            left -= n as u64;
        }
        let hash: [u8; 32] = chunk.finalize().into();
        if hex::encode(hash) != r.sha256 {
            let why = format!(
                "chunk {i} (bytes {}..{end}) was edited: its SHA-256 does not match the chain",
                r.offset
            );
            return (chain, whole, Some(why));
        }
        let mut next = chain.clone();
        next.push_hash(hash, r.len);
        if next.head() != r.chain {
            let why = format!("chain record {i} does not follow from the one before");
            return (chain, whole, Some(why));
        }
        chain = next;
    }
    (chain, whole, None)
}

/// What a check of a sealed recording found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verified {
    pub id: RecordingId,
    pub state: SealState,
    pub size: u64,
    pub chunks: u64,
    pub signer: String,
}

/// Checks a sealed recording: the manifest's signature against `key`, the
/// manifest against `id`, the chain against the file, the manifest against
/// the chain and the file. The error names the first thing wrong.
/// `file` is read from its start once, in bounded memory; `file_len` is
/// its length.
pub fn verify(
    key: &RecordingKey,
    id: &RecordingId,
    file: &mut dyn Read,
    file_len: u64,
    chain_text: &[u8],
    signed: &SignedManifest,
) -> Result<Verified> {
    key.check(signed)?;
    let m = &signed.manifest;
    if &m.recording_id != id {
        return Err(recording_error(format!(
            "the manifest is recording {}'s, not {id}'s",
            m.recording_id
        )));
    }
    if m.format != FORMAT {
        return Err(recording_error(format!(
            "the manifest names format `{}`",
            m.format
        )));
    }
    let (records, problem) = parse_chain(chain_text);
    if let Some(p) = problem {
        return Err(recording_error(format!("the chain file was edited: {p}")));
    }
    let (chain, whole, problem) = check_chain(id, &records, file);
    if let Some(p) = problem {
        return Err(recording_error(p));
    }
    if chain.chunks() != m.chunks || chain.head() != m.chain_head {
        return Err(recording_error(format!(
            "the chain file does not match the manifest ({} chunks, manifest says {}): chunks were added or removed",
            chain.chunks(),
            m.chunks
        )));
    }
    let len = file_len;
    if len != m.size || chain.size() != m.size {
        let what = if len > m.size {
            "bytes were appended"
        } else {
            "bytes were removed"
        };
        return Err(recording_error(format!(
            "the file is {len} bytes, the manifest says {}: {what}",
            m.size
        )));
    }
    if hex::encode(whole.finalize()) != m.sha256 {
        return Err(recording_error(
            "the file's SHA-256 does not match the manifest",
        ));
    }
    Ok(Verified {
        id: id.clone(),
        state: m.state,
        size: m.size,
        chunks: m.chunks,
        signer: m.signer.clone(),
    })
}
