//! File Transfer: the SFTP stream of an SSH privileged session, understood.
//!
//! When the vendor opens the `sftp` subsystem through the SSH proxy
//! ([`crate::proxy::ssh`]), both directions of that channel pass through a
//! [`Tracker`]: it frames SFTP version 3 packets, applies the service's
//! [`FilePolicy`] (a refused request is answered `SSH_FX_PERMISSION_DENIED`
//! by the proxy and never reaches the target), follows each file handle
//! (path, open flags, bytes read and written, SHA-256 of the bytes that
//! crossed) and emits one audit event per file and per changing
//! operation. A malformed or oversized packet ends the channel.
//!
//! - `codec.rs`: the packets, sans I/O.
//! - `policy.rs`: [`FilePolicy`] and path normalization, pure.
//! - `digest.rs`: the per-file hash in offset order.
//! - `tracker.rs`: [`Tracker`], the per-channel state machine.
//! - `hook.rs`: [`SftpHook`], a tracker wired to one SSH channel pair.
//! - `store.rs`: [`StoreFilePolicies`], policies kept in the store.

pub mod codec;
mod digest;
mod hook;
mod policy;
mod store;
mod tracker;

pub use hook::SftpHook;
pub use policy::{FilePolicy, MAX_PATH, PathError, normalize};
pub use store::StoreFilePolicies;
pub use tracker::{Event, Fatal, Output, Tracker};

use async_trait::async_trait;

use crate::error::Result;
use crate::model::Service;

/// The session event actions of file transfer (audited as
/// `session.<action>`, category `user-activity`), declared once here.
pub mod events {
    /// One file opened through SFTP: path, direction, size, SHA-256,
    /// result (`complete`, `incomplete`, `refused`, `failed`).
    pub const FILE: &str = "file";
    /// A change other than file content: remove, rename, mkdir, rmdir,
    /// setstat, symlink, hardlink (result `ok`, `failed`, `refused`).
    pub const FILE_OP: &str = "file.op";
    /// The SFTP stream could not be followed; the channel was ended.
    pub const MALFORMED: &str = "sftp.malformed";
    /// Every action above, for filters and documentation.
    pub const ALL: &[&str] = &[FILE, FILE_OP, MALFORMED];
}

/// Where the proxy finds a service's file-transfer policy.
#[async_trait]
pub trait FilePolicies: Send + Sync + std::fmt::Debug {
    /// The policy of `service` (the default when none is set).
    async fn policy(&self, service: &Service) -> Result<FilePolicy>;
}

/// Every service allows everything.
#[derive(Debug, Default)]
pub struct AllowAll;

#[async_trait]
impl FilePolicies for AllowAll {
    async fn policy(&self, _service: &Service) -> Result<FilePolicy> {
        Ok(FilePolicy::default())
    }
}
