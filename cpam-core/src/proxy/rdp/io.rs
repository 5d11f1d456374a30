//! A stream made `Sync`, as IronRDP's tokio framing wants its streams:
//! the stream sits in a mutex that is never locked (every access is through
//! `&mut`, `Mutex::get_mut`), so this costs nothing.

use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::tunnel::dialer::Stream;

/// A boxed [`Stream`] that is also `Sync`.
pub(super) struct SyncStream(Mutex<Box<dyn Stream>>);

impl std::fmt::Debug for SyncStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SyncStream")
    }
}

impl SyncStream {
    pub(super) fn new(inner: Box<dyn Stream>) -> Self {
        Self(Mutex::new(inner))
    }

    fn inner(self: Pin<&mut Self>) -> Pin<&mut (dyn Stream + 'static)> {
        let boxed = self
            .get_mut()
            .0
            .get_mut()
            .unwrap_or_else(|p| p.into_inner());
        Pin::new(&mut **boxed)
    }
}

impl AsyncRead for SyncStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.inner().poll_read(cx, buf)
    }
}

impl AsyncWrite for SyncStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.inner().poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.inner().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.inner().poll_shutdown(cx)
    }
}
