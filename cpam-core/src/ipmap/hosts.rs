//! Names for mapped addresses: the [`Resolver`] seam and its hosts-file
//! implementation, a managed block between `# BEGIN cpam` and `# END cpam`.
//!
//! The block is rewritten atomically (a temporary file renamed over the
//! hosts file), removed on stop, and a stale block a crash left behind is
//! replaced at the next start. Lines outside the block are kept byte for
//! byte.

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The first line of the managed block.
pub const BEGIN: &str = "# BEGIN cpam";
/// The last line of the managed block.
pub const END: &str = "# END cpam";

/// Publishes the names of mapped addresses where local programs look them up.
pub trait Resolver: Send + Sync {
    /// Makes exactly `entries` (address, names) resolvable, replacing what
    /// was published before.
    fn publish(&self, entries: &[(Ipv4Addr, Vec<String>)]) -> Result<()>;
    /// Removes everything published.
    fn clear(&self) -> Result<()>;
    /// Where names go, for logs and status.
    fn describe(&self) -> String;
}

/// No names: mapped services are reached by address only.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoNames;

impl Resolver for NoNames {
    fn publish(&self, _: &[(Ipv4Addr, Vec<String>)]) -> Result<()> {
        Ok(())
    }
    fn clear(&self) -> Result<()> {
        Ok(())
    }
    fn describe(&self) -> String {
        "no names".to_string()
    }
}

/// `text` without the managed block (and with nothing else changed). A
/// `BEGIN` line without its `END` is dropped alone: lines after it may be
/// the administrator's.
pub fn strip_block(text: &str) -> String {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let is = |l: &str, m: &str| l.trim_end() == m;
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < lines.len() {
        if is(lines[i], BEGIN) {
            if let Some(end) = lines[i..].iter().position(|l| is(l, END)) {
                i += end + 1;
            } else {
                i += 1;
            }
            continue;
        }
        if is(lines[i], END) {
            i += 1;
            continue;
        }
        out.push_str(lines[i]);
        i += 1;
    }
    out
}

/// `text` with its managed block replaced by one listing `entries` (none:
/// no block at all).
pub fn render(text: &str, entries: &[(Ipv4Addr, Vec<String>)]) -> String {
    let mut out = strip_block(text);
    let entries: Vec<_> = entries.iter().filter(|(_, n)| !n.is_empty()).collect();
    if entries.is_empty() {
        return out;
    }
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(BEGIN);
    out.push_str("\n# managed by cpam-connect ipconnect; rewritten on every change\n");
    for (ip, names) in entries {
        out.push_str(&format!("{ip}\t{}\n", names.join(" ")));
    }
    out.push_str(END);
    out.push('\n');
    out
}

/// A hosts file (`/etc/hosts`, or a test's temporary file) with a managed block.
#[derive(Debug, Clone)]
pub struct HostsFile {
    path: PathBuf,
}

impl HostsFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        HostsFile { path: path.into() }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn rewrite(&self, change: impl Fn(&str) -> String) -> Result<()> {
        let what = self.path.display();
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(Error::from(e).context(&format!("cannot read the hosts file {what}")));
            }
        };
        let new = change(&text);
        if new == text {
            return Ok(());
        }
        write_atomically(&self.path, new.as_bytes())
            .map_err(|e| Error::from(e).context(&format!("cannot write the hosts file {what}")))
    }
}

impl Resolver for HostsFile {
    fn publish(&self, entries: &[(Ipv4Addr, Vec<String>)]) -> Result<()> {
        self.rewrite(|t| render(t, entries))
    }
    fn clear(&self) -> Result<()> {
        self.rewrite(strip_block)
    }
    fn describe(&self) -> String {
        format!("hosts file {}", self.path.display())
    }
}

/// Writes `bytes` to a temporary file beside `path` and renames it over
/// `path`, keeping `path`'s permissions. A hosts file that is a mount point
/// (as in containers, where a rename over it fails) is rewritten in place.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.cpam-{}", std::process::id()));
    let perms = std::fs::metadata(path).ok().map(|m| m.permissions());
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        if let Some(p) = &perms {
            f.set_permissions(p.clone())?;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    match result {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(16 | 18)) => {
            // EBUSY / EXDEV: a bind-mounted file cannot be replaced.
            let _ = std::fs::remove_file(&tmp);
            tracing::debug!(path = %path.display(), "hosts file is a mount point; writing in place");
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(path)?;
            f.write_all(bytes)?;
            f.sync_all()
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(ip: [u8; 4], names: &[&str]) -> (Ipv4Addr, Vec<String>) {
        (
            Ipv4Addr::from(ip),
            names.iter().map(|s| s.to_string()).collect(),
        )
    }

    const OTHER: &str = "127.0.0.1\tlocalhost\n# keep me\n10.1.1.1 intranet\n";

    #[test]
    fn the_block_is_added_replaced_and_removed_leaving_other_lines() {
        let one = render(OTHER, &[e([127, 77, 0, 5], &["ssh.acme.cpam"])]);
        assert!(one.starts_with(OTHER));
        assert!(one.contains("127.77.0.5\tssh.acme.cpam\n"));
        let two = render(
            &one,
            &[e([127, 77, 0, 6], &["web.acme.cpam", "web.internal"])],
        );
        assert!(!two.contains("ssh.acme.cpam"));
        assert!(two.contains("127.77.0.6\tweb.acme.cpam web.internal\n"));
        assert_eq!(two.matches(BEGIN).count(), 1);
        assert_eq!(strip_block(&two), OTHER);
        assert_eq!(render(&two, &[]), OTHER);
    }

    #[test]
    fn a_block_in_the_middle_and_a_file_without_final_newline() {
        let text = format!("a\n{BEGIN}\n1.2.3.4 x\n{END}\nb");
        assert_eq!(strip_block(&text), "a\nb");
        let r = render("a", &[e([127, 77, 0, 5], &["x"])]);
        assert!(r.starts_with("a\n# BEGIN cpam\n"), "{r}");
    }

    #[test]
    fn a_lone_marker_drops_only_itself() {
        let text = format!("a\n{BEGIN}\nb\n");
        assert_eq!(strip_block(&text), "a\nb\n");
        let text = format!("a\n{END}\nb\n");
        assert_eq!(strip_block(&text), "a\nb\n");
    }

    #[test]
    fn the_file_is_rewritten_atomically_and_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        std::fs::write(&path, OTHER).unwrap();
        let h = HostsFile::new(&path);
        h.publish(&[e([127, 77, 0, 5], &["ssh.acme.cpam"])])
            .unwrap();
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .contains("ssh.acme.cpam")
        );
        h.clear().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), OTHER);
        // Only the hosts file is left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn an_unwritable_hosts_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let h = HostsFile::new(dir.path().join("missing-dir").join("hosts"));
        let err = h.publish(&[e([127, 77, 0, 5], &["x"])]).unwrap_err();
        assert!(
            err.to_string().contains("cannot write the hosts file"),
            "{err}"
        );
    }
}
