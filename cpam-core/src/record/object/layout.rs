//! Where a recording's objects are, sans I/O: `PREFIX/ID/chunk-000001`,
//! `PREFIX/ID/chain-000001`, ..., `PREFIX/ID/manifest`.
//!
//! Part `n` is a run of whole chain chunks: `chunk-n` holds their bytes of
//! the recording file (consecutive from the end of part `n - 1`) and
//! `chain-n` their chain lines. A part counts once both objects are there
//! and every part before it does (the uploader puts `chunk-n` before
//! `chain-n`, and part `n` only after part `n - 1`); the manifest is put
//! last, so its presence means the whole recording is in the store.

use object_store::path::Path;

use crate::record::RecordingId;

/// Names the objects of recordings under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    prefix: Path,
}

/// A recording's uploaded parts, as a listing shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Uploaded {
    /// The size of `chunk-1`, `chunk-2`, ... (only whole parts, in order).
    pub parts: Vec<u64>,
    /// Whether the manifest is there.
    pub manifest: bool,
}

impl Uploaded {
    /// Bytes of the recording file the parts hold.
    pub fn size(&self) -> u64 {
        self.parts.iter().sum()
    }
}

impl Layout {
    /// Recordings under `prefix` (`a/b`, no leading or trailing slash; empty:
    /// the bucket's root).
    pub fn new(prefix: &str) -> Layout {
        Layout {
            prefix: Path::from_iter(prefix.split('/').filter(|s| !s.is_empty())),
        }
    }

    /// The prefix every recording's folder is under.
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// `PREFIX/ID`.
    pub fn dir(&self, id: &RecordingId) -> Path {
        self.prefix.clone().join(id.as_str())
    }

    /// `PREFIX/ID/chunk-NNNNNN`: part `n`'s bytes (from 1).
    pub fn chunk(&self, id: &RecordingId, n: u64) -> Path {
        self.dir(id).join(format!("chunk-{n:06}"))
    }

    /// `PREFIX/ID/chain-NNNNNN`: part `n`'s chain lines.
    pub fn chain(&self, id: &RecordingId, n: u64) -> Path {
        self.dir(id).join(format!("chain-{n:06}"))
    }

    /// `PREFIX/ID/manifest`: the signed manifest, put last.
    pub fn manifest(&self, id: &RecordingId) -> Path {
        self.dir(id).join("manifest")
    }

    /// The recording whose folder is `dir` (a listing's common prefix).
    pub fn id_of(&self, dir: &Path) -> Option<RecordingId> {
        RecordingId::parse(dir.filename()?).ok()
    }
}

/// What a listing of `PREFIX/ID/` (object names and sizes) holds: the
/// parts from 1 on for which both objects are there, up to the first gap.
pub(crate) fn uploaded<'a>(objects: impl IntoIterator<Item = (&'a str, u64)>) -> Uploaded {
    let mut chunks = std::collections::BTreeMap::new();
    let mut chains = std::collections::BTreeSet::new();
    let mut manifest = false;
    for (name, size) in objects {
        if name == "manifest" {
            manifest = true;
        } else if let Some(n) = number(name, "chunk-") {
            chunks.insert(n, size);
        } else if let Some(n) = number(name, "chain-") {
            chains.insert(n);
        }
    }
    let mut parts = Vec::new();
    for n in 1.. {
        match chunks.get(&n) {
            Some(size) if chains.contains(&n) => parts.push(*size),
            _ => break,
        }
    }
    Uploaded { parts, manifest }
}

/// `n` of `{kind}n` (at least six digits).
fn number(name: &str, kind: &str) -> Option<u64> {
    let digits = name.strip_prefix(kind)?;
    if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|n| *n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> RecordingId {
        RecordingId::parse("ses_abc.0").expect("id")
    }

    #[test]
    fn names() {
        let l = Layout::new("/rec/node-a/");
        assert_eq!(
            l.chunk(&id(), 1).as_ref(),
            "rec/node-a/ses_abc.0/chunk-000001"
        );
        assert_eq!(
            l.chain(&id(), 12).as_ref(),
            "rec/node-a/ses_abc.0/chain-000012"
        );
        assert_eq!(l.manifest(&id()).as_ref(), "rec/node-a/ses_abc.0/manifest");
        assert_eq!(
            Layout::new("").manifest(&id()).as_ref(),
            "ses_abc.0/manifest"
        );
        assert_eq!(l.id_of(&l.dir(&id())), Some(id()));
        assert_eq!(l.id_of(&Path::from("rec/not-an-id")), None);
        // Past a million parts the number widens and still sorts by value.
        assert_eq!(number("chunk-1000000", "chunk-"), Some(1_000_000));
    }

    #[test]
    fn whole_parts_only() {
        let check = |objects: &[(&str, u64)], parts: &[u64], manifest: bool| {
            let got = uploaded(objects.iter().copied());
            assert_eq!(
                got,
                Uploaded {
                    parts: parts.to_vec(),
                    manifest
                },
                "{objects:?}"
            );
        };
        check(&[], &[], false);
        check(
            &[("chunk-000001", 10), ("chain-000001", 1), ("manifest", 5)],
            &[10],
            true,
        );
        // A chunk whose chain line is not there yet (a crash between the two).
        check(
            &[
                ("chunk-000001", 10),
                ("chain-000001", 1),
                ("chunk-000002", 7),
            ],
            &[10],
            false,
        );
        // A gap ends the parts; unknown names are ignored.
        check(
            &[
                ("chain-000002", 1),
                ("chunk-000002", 7),
                ("chunk-000001", 3),
                ("chain-000001", 1),
                ("chunk-000004", 9),
                ("chain-000004", 1),
                ("chunk-1", 1),
                ("notes", 1),
            ],
            &[3, 7],
            false,
        );
        check(&[("chunk-000000", 1), ("chain-000000", 1)], &[], false);
    }
}
