//! Protocol proxies. Each takes already-established endpoints and never binds:
//! listeners live in the engine and the bins.

mod pinned;
pub mod rdp;
pub mod sftp;
pub mod ssh;
pub mod tcp;
