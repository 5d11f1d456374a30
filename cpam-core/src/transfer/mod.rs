//! File Transfer from the vendor's side: `put` and `get` one file through a
//! privileged SSH service, as `cpam-connect put` / `get` and embedders do.
//!
//! The transfer is one audited session: [`connect`] opens a session to the
//! service through the Connection Manager's link, signs in to the SSH proxy
//! with the master password (the target's credential stays in the vault),
//! starts the `sftp` subsystem and speaks SFTP version 3 ([`Sftp`]). The
//! proxy records the file with the SHA-256 of the bytes that crossed; the
//! [`Outcome`] says which run of bytes that record covers ([`Outcome::audited`])
//! and the hash of the whole file.
//!
//! **Resume** (`Options::resume`): the transfer continues from the size of
//! the destination (the remote file for `put`, the local one for `get`).
//! Before it does, the last [`RESUME_CHECK`] bytes of that partial copy are
//! compared with the source's bytes at the same offsets; a difference ends
//! the transfer with an error and changes nothing. Resume therefore
//! guarantees that the destination's last 64 KiB before the resume point
//! match and that every byte after it is the source's; bytes earlier in
//! the partial copy are trusted, not re-read. The whole-file hash is that of
//! the source (`put`) or of the local file as it ends up (`get`).
//!
//! - `client.rs`: [`Sftp`], the SFTP client over any byte stream.
//! - `login.rs`: [`connect`], the SSH sign-in over a session stream.
//! - `run.rs`: [`put`] and [`get`], pipelined, hashed, resumable.

mod client;
mod login;
mod run;

pub use client::{Reply, Request, Sftp, status_error};
pub use login::{Connection, connect};
pub use run::{get, put};

/// Bytes per read or write request.
pub const CHUNK: u32 = 64 * 1024;
/// Requests in flight at once.
pub const IN_FLIGHT: usize = 32;
/// How many bytes before the resume point are compared.
pub const RESUME_CHECK: u64 = 64 * 1024;

/// How a transfer runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Continue from the destination's size instead of starting over.
    pub resume: bool,
    /// At most this many bytes per second (like `sftp -l`), if set.
    pub limit: Option<u64>,
}

/// Keeps a transfer at or under [`Options::limit`].
#[derive(Debug)]
pub(crate) struct Pace {
    limit: Option<u64>,
    start: std::time::Instant,
    bytes: u64,
}

impl Pace {
    pub(crate) fn new(limit: Option<u64>) -> Pace {
        Pace {
            limit: limit.filter(|l| *l > 0),
            start: std::time::Instant::now(),
            bytes: 0,
        }
    }

    /// `bytes` more are about to move: waits until the average allows it.
    pub(crate) async fn take(&mut self, bytes: u64) {
        self.bytes += bytes;
        if let Some(limit) = self.limit {
            let due = std::time::Duration::from_secs_f64(self.bytes as f64 / limit as f64);
            let elapsed = self.start.elapsed();
            if due > elapsed {
                tokio::time::sleep(due - elapsed).await;
            }
        }
    }
}

/// Told how a transfer goes (a progress bar, or nothing).
pub trait Progress: Send {
    /// The file is `total` bytes; `done` of them are already there.
    fn begin(&mut self, total: u64, done: u64);
    /// `bytes` more moved.
    fn advance(&mut self, bytes: u64);
}

/// No progress shown.
#[derive(Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn begin(&mut self, _total: u64, _done: u64) {}
    fn advance(&mut self, _bytes: u64) {}
}

/// Which way the file went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Upload,
    Download,
}

impl Direction {
    /// The name the audit record's `direction` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Upload => "upload",
            Direction::Download => "download",
        }
    }
}

/// The run of bytes the server's `session.file` record covers: its
/// `offset`, `size` and `sha256`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audited {
    pub offset: u64,
    pub size: u64,
    pub sha256: String,
}

/// What a finished transfer moved.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub direction: Direction,
    /// The remote path as sent to the target.
    pub remote: Vec<u8>,
    pub local: std::path::PathBuf,
    /// The whole file's size and SHA-256 (hex).
    pub file_size: u64,
    pub file_sha256: String,
    /// Where the transfer resumed (the destination's size), if it did.
    pub resumed_from: Option<u64>,
    /// What the audit record says: for a transfer from offset 0 the whole
    /// file; for a resumed upload the bytes from the resume point; for a
    /// resumed download the bytes from the start of the compared run.
    pub audited: Audited,
}
