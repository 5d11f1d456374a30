//! The blocking side of the object store: [`Blocking`], a small runtime
//! of the store's own that the blocking [`RecordingStore`](super::RecordingStore)
//! methods wait on from any thread (also a runtime's, where
//! `Handle::block_on` would panic), and [`PartsReader`], a recording's
//! uploaded parts read in order as one file.

use std::future::Future;
use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _};

use crate::error::{Error, Result};
use crate::record::asciicast::recording_error;

/// A multi-threaded runtime (two workers) owned by one store, shut down
/// without waiting when the store is dropped (also inside a runtime).
#[derive(Debug)]
pub(super) struct Blocking {
    rt: Option<tokio::runtime::Runtime>,
}

impl Blocking {
    pub fn new() -> Result<Blocking> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cpam-recordings-s3")
            .enable_all()
            .build()
            .map_err(|e| {
                Error::internal(format!("cannot start the recording store's runtime: {e}"))
            })?;
        Ok(Blocking { rt: Some(rt) })
    }

    /// The runtime's handle.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        match &self.rt {
            Some(rt) => rt.handle(),
            None => unreachable!("the runtime is taken only when dropped"),
        }
    }

    /// Runs `f` on the runtime and waits for it (blocking this thread).
    pub fn run<T: Send + 'static>(&self, f: impl Future<Output = T> + Send + 'static) -> Result<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle().spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv()
            .map_err(|_| Error::internal("the recording store's runtime stopped"))
    }
}

impl Drop for Blocking {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Objects read one after the other as one stream, each fetched whole
/// when the one before is used up.
#[derive(Debug)]
pub(super) struct PartsReader {
    rt: Arc<Blocking>,
    remote: Arc<dyn ObjectStore>,
    paths: std::vec::IntoIter<Path>,
    current: Bytes,
}

impl PartsReader {
    pub fn new(rt: Arc<Blocking>, remote: Arc<dyn ObjectStore>, paths: Vec<Path>) -> PartsReader {
        PartsReader {
            rt,
            remote,
            paths: paths.into_iter(),
            current: Bytes::new(),
        }
    }
}

impl Read for PartsReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            let Some(path) = self.paths.next() else {
                return Ok(0);
            };
            let remote = self.remote.clone();
            let what = path.to_string();
            let got = self
                .rt
                .run(async move { remote.get(&path).await?.bytes().await })
                .and_then(|r| {
                    r.map_err(|e| {
                        recording_error(format!("cannot read {what} from the recording store: {e}"))
                    })
                });
            self.current = got.map_err(std::io::Error::other)?;
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}
