//! What a file-transfer policy allows, decided on normalized paths: pure
//! functions, no I/O.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The longest path the proxy lets through (Linux's `PATH_MAX`).
pub const MAX_PATH: usize = 4096;

/// A service's file-transfer policy. The default allows everything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePolicy {
    /// Files may be written to the target.
    #[serde(default = "yes")]
    pub upload: bool,
    /// Files may be read from the target.
    #[serde(default = "yes")]
    pub download: bool,
    /// Absolute directories files may be read, written, listed or changed
    /// in (normalized when set); empty means anywhere.
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// The largest file, in bytes, that may move (no offset past it).
    #[serde(default)]
    pub max_size: Option<u64>,
    /// File name extensions that may not be opened, renamed to or
    /// linked (lowercase, without the dot).
    #[serde(default)]
    pub blocked_extensions: Vec<String>,
}

fn yes() -> bool {
    true
}

impl Default for FilePolicy {
    fn default() -> Self {
        Self {
            upload: true,
            download: true,
            prefixes: Vec::new(),
            max_size: None,
            blocked_extensions: Vec::new(),
        }
    }
}

impl FilePolicy {
    /// Checks and normalizes a policy an operator set: prefixes absolute,
    /// without `..`, stored without a trailing `/`; extensions lowercase
    /// without dots.
    pub fn normalized(mut self) -> Result<Self> {
        let mut prefixes = Vec::new();
        for p in &self.prefixes {
            if !p.starts_with('/') {
                return Err(Error::invalid(format!(
                    "path prefix `{p}` must be absolute"
                )));
            }
            let n = normalize(b"/", p.as_bytes())
                .map_err(|e| Error::invalid(format!("path prefix `{p}` is not usable: {e}")))?;
            prefixes.push(String::from_utf8_lossy(&n).into_owned());
        }
        prefixes.sort();
        prefixes.dedup();
        self.prefixes = prefixes;
        let mut exts = Vec::new();
        for e in &self.blocked_extensions {
            let e = e.trim().trim_start_matches('.').to_ascii_lowercase();
            if e.is_empty() || e.contains('/') {
                return Err(Error::invalid(format!(
                    "blocked extension `{e}` must be a name such as `exe`"
                )));
            }
            exts.push(e);
        }
        exts.sort();
        exts.dedup();
        self.blocked_extensions = exts;
        Ok(self)
    }

    /// Whether the policy restricts anything at all.
    pub fn restricts(&self) -> bool {
        *self != FilePolicy::default()
    }

    /// Whether the normalized `path` lies inside an allowed prefix (the
    /// prefix itself included; `/data/in` does not cover `/data/inbox`).
    pub fn path_allowed(&self, path: &[u8]) -> bool {
        self.prefixes.is_empty()
            || self.prefixes.iter().any(|p| {
                let p = p.as_bytes();
                p == b"/" || path == p || (path.starts_with(p) && path.get(p.len()) == Some(&b'/'))
            })
    }

    /// Whether `path`'s file name ends in a blocked extension.
    pub fn extension_blocked(&self, path: &[u8]) -> bool {
        let name = path.rsplit(|b| *b == b'/').next().unwrap_or(path);
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        self.blocked_extensions
            .iter()
            .any(|e| name.ends_with(&format!(".{e}")))
    }
}

/// Why a path cannot be checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    #[error("the path holds a NUL byte")]
    Nul,
    #[error("the path is longer than {MAX_PATH} bytes")]
    TooLong,
    #[error("the path climbs above the root with `..`")]
    Escapes,
    #[error("the path is empty")]
    Empty,
}

/// `path` made absolute against `cwd` (itself absolute) and lexically
/// normalized: no `.`, no `..`, no repeated or trailing `/`. A `..` above
/// the root is an error rather than clamped, so a traversal attempt is
/// refused outright. Bytes need not be UTF-8.
pub fn normalize(cwd: &[u8], path: &[u8]) -> std::result::Result<Vec<u8>, PathError> {
    if path.contains(&0) || cwd.contains(&0) {
        return Err(PathError::Nul);
    }
    if path.len() > MAX_PATH || cwd.len() + path.len() > 2 * MAX_PATH {
        return Err(PathError::TooLong);
    }
    let joined: Vec<u8> = if path.starts_with(b"/") {
        path.to_vec()
    } else if path.is_empty() {
        return Err(PathError::Empty);
    } else {
        [cwd, b"/", path].concat()
    };
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in joined.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                if parts.pop().is_none() {
                    return Err(PathError::Escapes);
                }
            }
            p => parts.push(p),
        }
    }
    let mut out = Vec::with_capacity(joined.len());
    for p in &parts {
        out.push(b'/');
        out.extend_from_slice(p);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    if out.len() > MAX_PATH {
        return Err(PathError::TooLong);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy(prefixes: &[&str]) -> FilePolicy {
        FilePolicy {
            prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
            blocked_extensions: vec!["EXE".into(), ".sh".into()],
            ..FilePolicy::default()
        }
        .normalized()
        .unwrap()
    }

    /// `path` from cwd `/home/v`, checked against prefix `/data/in`.
    fn check(path: &[u8], allowed: bool) {
        let p = policy(&["/data/in/"]);
        let got = normalize(b"/home/v", path).is_ok_and(|n| p.path_allowed(&n));
        assert_eq!(got, allowed, "{}", String::from_utf8_lossy(path));
    }

    #[test]
    fn the_traversal_corpus_is_refused_and_honest_paths_pass() {
        check(b"/data/in/a.txt", true);
        check(b"/data/in", true);
        check(b"/data/in/", true);
        check(b"//data//in//a", true);
        check(b"/data/./in/./a", true);
        check(b"/data/in/sub/../a", true);
        check(b"../../data/in/a", true);
        check(b"/data/inbox/a", false);
        check(b"/data/in/../inbox/a", false);
        check(b"/data/in/../../etc/passwd", false);
        check(b"/data/in/../../../../../etc/passwd", false);
        check(b"/../data/in/a", false);
        check(b"/data", false);
        check(b"/", false);
        check(b"a.txt", false);
        check(b"/data/in/a\0/../../etc", false);
        check(
            &[b"/data/in/".as_slice(), &vec![b'a'; 5000]].concat(),
            false,
        );
        check(b"/data/in/\xff\xfe", true);
        check(b"/data/in\xff/x", false);
        check(b"", false);
    }

    #[test]
    fn prefixes_are_normalized_and_must_be_absolute() {
        assert_eq!(policy(&["/data//in/./"]).prefixes, vec!["/data/in"]);
        assert!(
            FilePolicy {
                prefixes: vec!["data".into()],
                ..FilePolicy::default()
            }
            .normalized()
            .is_err()
        );
        assert!(
            FilePolicy {
                prefixes: vec!["/../x".into()],
                ..FilePolicy::default()
            }
            .normalized()
            .is_err()
        );
        assert!(policy(&["/"]).path_allowed(b"/etc"));
    }

    #[test]
    fn extensions_match_case_insensitively_on_the_file_name() {
        let p = policy(&[]);
        assert_eq!(p.blocked_extensions, vec!["exe", "sh"]);
        assert!(p.extension_blocked(b"/x/setup.EXE"));
        assert!(p.extension_blocked(b"run.sh"));
        assert!(!p.extension_blocked(b"/x.exe/readme"));
        assert!(!p.extension_blocked(b"/x/fresh"));
    }

    #[test]
    fn the_default_restricts_nothing_and_parses_from_empty_json() {
        let p: FilePolicy = serde_json::from_str("{}").unwrap();
        assert!(!p.restricts());
        assert!(p.path_allowed(b"/anything"));
    }

    proptest! {
        #[test]
        fn normalized_paths_never_escape_and_never_panic(path in proptest::collection::vec(any::<u8>(), 0..300)) {
            let p = policy(&["/data/in"]);
            if let Ok(n) = normalize(b"/home/v", &path) {
                prop_assert!(n.starts_with(b"/"));
                prop_assert!(!n.windows(3).any(|w| w == b"/..") || n.split(|b| *b == b'/').all(|c| c != b".."));
                if p.path_allowed(&n) {
                    prop_assert!(n == b"/data/in" || n.starts_with(b"/data/in/"));
                }
            }
        }
    }
}
