//! Byte splicing between SSH channels and TCP streams, with backpressure.
//!
//! Data moves as `Bytes` from one side's read to the other side's write
//! without an intermediate copy; a pump only reads its next chunk after the
//! previous one was accepted by the other side, so a stalled reader holds
//! at most one chunk here plus the SSH channel window.

use std::io;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use russh::server::Msg;
use russh::{ChannelId, ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, ErrorKind, Result};
use crate::model::SessionProtocol;
use crate::session::{Direction, LiveSession, Meter, Protocol, Upstream};
use crate::tunnel::dialer::{Connection, Stream};

/// Largest chunk read from a TCP socket: one SSH packet between cpam's own
/// ends ([`PEER_MAX_PACKET`](crate::tunnel::PEER_MAX_PACKET)).
pub const READ_CHUNK: usize = crate::tunnel::PEER_MAX_PACKET as usize;
/// The first read of a stream: small, so an idle or interactive connection
/// holds little; a read that fills it doubles the next one up to [`READ_CHUNK`].
pub const FIRST_READ: usize = 16 * 1024;

/// Where a pump reads from.
pub trait Source: Send {
    /// The next chunk; `None` at end of stream.
    fn recv(&mut self) -> impl Future<Output = Option<io::Result<Bytes>>> + Send;
}

/// Where a pump writes to.
pub trait Sink: Send {
    /// Writes one chunk, waiting for flow control.
    fn send(&mut self, data: Bytes) -> impl Future<Output = io::Result<()>> + Send;
    /// Signals end of stream in this direction.
    fn finish(&mut self) -> impl Future<Output = ()> + Send;
}

impl Source for ChannelReadHalf {
    async fn recv(&mut self) -> Option<io::Result<Bytes>> {
        loop {
            match self.wait().await? {
                ChannelMsg::Data { data } => return Some(Ok(data)),
                ChannelMsg::Eof => return None,
                ChannelMsg::Close => return Some(Err(closed())),
                _ => continue,
            }
        }
    }
}

impl<S> Sink for ChannelWriteHalf<S>
where
    S: From<(ChannelId, ChannelMsg)> + Send + Sync + 'static,
{
    async fn send(&mut self, data: Bytes) -> io::Result<()> {
        self.data_bytes(data)
            .await
            .map_err(|e| io::Error::new(io::ErrorKind::BrokenPipe, e.to_string()))
    }

    async fn finish(&mut self) {
        let _ = self.eof().await;
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "channel closed by peer")
}

/// The read side of a byte stream as a [`Source`].
///
/// Reads go into one reused buffer, never zero-filled: a chunk is split off
/// it, and once the other side dropped that chunk the next `reserve` takes
/// the same allocation back instead of allocating (and faulting in) a new
/// one. Reads start at [`FIRST_READ`] and double while they come back full.
#[derive(Debug)]
pub struct StreamSource<R> {
    inner: R,
    buf: BytesMut,
    next: usize,
}

impl<R: AsyncRead + Unpin + Send> StreamSource<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            buf: BytesMut::new(),
            next: FIRST_READ,
        }
    }
}

impl<R: AsyncRead + Unpin + Send> Source for StreamSource<R> {
    async fn recv(&mut self) -> Option<io::Result<Bytes>> {
        let want = self.next;
        self.buf.reserve(want);
        let mut limited = (&mut self.inner).take(want as u64);
        match limited.read_buf(&mut self.buf).await {
            Ok(0) => None,
            Ok(n) => {
                if n == want {
                    self.next = (want * 2).min(READ_CHUNK);
                }
                Some(Ok(self.buf.split().freeze()))
            }
            Err(e) => Some(Err(e)),
        }
    }
}

/// The write side of a byte stream as a [`Sink`].
#[derive(Debug)]
pub struct StreamSink<W>(pub W);

impl<W: AsyncWrite + Unpin + Send> Sink for StreamSink<W> {
    async fn send(&mut self, data: Bytes) -> io::Result<()> {
        self.0.write_all(&data).await
    }

    async fn finish(&mut self) {
        let _ = self.0.shutdown().await;
    }
}

/// How a splice ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpliceEnd {
    /// Both directions reached end of stream.
    Completed,
    /// The cancellation token fired.
    Cancelled,
    /// A side failed.
    Failed(String),
}

/// Copies `src` to `dst` until end of stream, telling `meter` of each chunk.
pub async fn pump(
    src: &mut impl Source,
    dst: &mut impl Sink,
    meter: &impl Meter,
    direction: Direction,
) -> io::Result<()> {
    while let Some(chunk) = src.recv().await {
        let chunk = chunk?;
        meter.moved(direction, &chunk);
        dst.send(chunk).await?;
    }
    dst.finish().await;
    Ok(())
}

/// Splices the user side (`user_*`) with the target side (`target_*`) until
/// both directions end (half-closes pass through), a side closes the whole
/// channel, a side fails, or `cancel` fires. `meter` sees every chunk: plain
/// [`Counters`](crate::session::Counters), or a session's
/// [`SessionControl`](crate::session::SessionControl) (counters and data observers).
pub async fn splice(
    user_rx: &mut impl Source,
    user_tx: &mut impl Sink,
    target_rx: &mut impl Source,
    target_tx: &mut impl Sink,
    meter: impl Meter,
    cancel: CancellationToken,
) -> SpliceEnd {
    let up = pump(user_rx, target_tx, &meter, Direction::Up);
    let down = pump(target_rx, user_tx, &meter, Direction::Down);
    tokio::select! {
        _ = cancel.cancelled() => SpliceEnd::Cancelled,
        r = async { tokio::try_join!(up, down) } => match r {
            Ok(_) => SpliceEnd::Completed,
            // A side closed the whole channel: the connection is over.
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => SpliceEnd::Completed,
            Err(e) => SpliceEnd::Failed(e.to_string()),
        },
    }
}

/// The TCP splice as a session [`Protocol`]: bytes pass unchanged between
/// the user and the target.
///
/// Fast path: when a side is a russh channel it is read and written as
/// channel messages, so `Bytes` pass from one channel to the other without a
/// copy; only plain streams are read into a buffer.
#[derive(Debug, Default, Clone, Copy)]
pub struct TcpSplice;

#[async_trait]
impl Protocol for TcpSplice {
    fn kind(&self) -> SessionProtocol {
        SessionProtocol::Tcp
    }

    async fn run(&self, user: Connection, upstream: Upstream, live: &LiveSession) -> Result<()> {
        let target = upstream.connect().await?;
        let (mut user_rx, mut user_tx) = halves(user);
        let (mut target_rx, mut target_tx) = halves(target);
        let end = splice(
            &mut user_rx,
            &mut user_tx,
            &mut target_rx,
            &mut target_tx,
            live.control(),
            live.cancel().clone(),
        )
        .await;
        target_tx.close().await;
        user_tx.close().await;
        match end {
            SpliceEnd::Completed | SpliceEnd::Cancelled => Ok(()),
            SpliceEnd::Failed(e) => Err(Error::new(ErrorKind::Io, e)),
        }
    }
}

/// The read half of a [`Connection`].
pub(crate) enum ConnectionSource {
    Channel(ChannelReadHalf),
    Stream(StreamSource<ReadHalf<Box<dyn Stream>>>),
}

/// The write half of a [`Connection`].
pub(crate) enum ConnectionSink {
    Channel(ChannelWriteHalf<Msg>),
    PeerChannel(ChannelWriteHalf<russh::client::Msg>),
    Stream(StreamSink<WriteHalf<Box<dyn Stream>>>),
}

impl ConnectionSink {
    /// Closes a channel (streams were shut down by [`Sink::finish`] or close
    /// when dropped).
    pub(crate) async fn close(&mut self) {
        match self {
            ConnectionSink::Channel(tx) => {
                let _ = tx.close().await;
            }
            ConnectionSink::PeerChannel(tx) => {
                let _ = tx.close().await;
            }
            ConnectionSink::Stream(_) => {}
        }
    }
}

/// Splits a connection into a [`Source`] and a [`Sink`], keeping channels as
/// channels (no copy).
pub(crate) fn halves(connection: Connection) -> (ConnectionSource, ConnectionSink) {
    match connection {
        Connection::Channel(ch) => {
            let (rx, tx) = ch.split();
            (ConnectionSource::Channel(rx), ConnectionSink::Channel(tx))
        }
        Connection::PeerChannel(ch) => {
            let (rx, tx) = ch.split();
            (
                ConnectionSource::Channel(rx),
                ConnectionSink::PeerChannel(tx),
            )
        }
        other => {
            let (r, w) = tokio::io::split(other.into_stream());
            (
                ConnectionSource::Stream(StreamSource::new(r)),
                ConnectionSink::Stream(StreamSink(w)),
            )
        }
    }
}

impl Source for ConnectionSource {
    async fn recv(&mut self) -> Option<io::Result<Bytes>> {
        match self {
            ConnectionSource::Channel(rx) => rx.recv().await,
            ConnectionSource::Stream(rx) => rx.recv().await,
        }
    }
}

impl Sink for ConnectionSink {
    async fn send(&mut self, data: Bytes) -> io::Result<()> {
        match self {
            ConnectionSink::Channel(tx) => tx.send(data).await,
            ConnectionSink::PeerChannel(tx) => tx.send(data).await,
            ConnectionSink::Stream(tx) => tx.send(data).await,
        }
    }

    async fn finish(&mut self) {
        match self {
            ConnectionSink::Channel(tx) => tx.finish().await,
            ConnectionSink::PeerChannel(tx) => tx.finish().await,
            ConnectionSink::Stream(tx) => tx.finish().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::session::Counters;

    #[tokio::test]
    async fn splices_with_half_close_and_counts() {
        let (user, mut user_peer) = tokio::io::duplex(1024);
        let (target, mut target_peer) = tokio::io::duplex(1024);
        let (ur, uw) = tokio::io::split(user);
        let (tr, tw) = tokio::io::split(target);
        let counters = Arc::new(Counters::default());
        let c2 = counters.clone();
        let task = tokio::spawn(async move {
            let counters = c2;
            let (mut ur, mut uw, mut tr, mut tw) = (
                StreamSource::new(ur),
                StreamSink(uw),
                StreamSource::new(tr),
                StreamSink(tw),
            );
            splice(
                &mut ur,
                &mut uw,
                &mut tr,
                &mut tw,
                counters,
                CancellationToken::new(),
            )
            .await
        });
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let expected = payload.clone();
        let writer = tokio::spawn(async move {
            user_peer.write_all(&payload).await.expect("write");
            user_peer.shutdown().await.expect("shutdown");
            let mut back = Vec::new();
            user_peer.read_to_end(&mut back).await.expect("read back");
            back
        });
        let mut got = Vec::new();
        target_peer.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, expected);
        target_peer.write_all(b"done").await.expect("reply");
        target_peer.shutdown().await.expect("shutdown");
        assert_eq!(writer.await.expect("join"), b"done");
        assert_eq!(task.await.expect("join"), SpliceEnd::Completed);
        assert_eq!(counters.snapshot(), (200_000, 4));
    }

    #[tokio::test]
    async fn a_stream_source_reuses_its_read_buffer_and_grows_it_while_reads_come_back_full() {
        let (mut peer, ours) = tokio::io::duplex(4 * READ_CHUNK);
        let mut source = StreamSource::new(ours);
        peer.write_all(b"first").await.expect("write");
        let first = source.recv().await.expect("chunk").expect("read");
        assert_eq!(&first[..], b"first");
        let at = first.as_ptr();
        drop(first);
        peer.write_all(b"second").await.expect("write");
        let second = source.recv().await.expect("chunk").expect("read");
        assert_eq!(&second[..], b"second");
        assert_eq!(
            second.as_ptr(),
            at,
            "the next read lands in the allocation the dropped chunk used"
        );
        drop(second);
        // Full reads double the next one, up to one SSH packet.
        peer.write_all(&vec![7u8; 3 * READ_CHUNK])
            .await
            .expect("write");
        let mut sizes = Vec::new();
        let mut total = 0;
        while total < 3 * READ_CHUNK {
            let chunk = source.recv().await.expect("chunk").expect("read");
            total += chunk.len();
            sizes.push(chunk.len());
        }
        assert_eq!(sizes[0], FIRST_READ);
        assert_eq!(sizes.iter().max(), Some(&READ_CHUNK), "{sizes:?}");
    }

    #[tokio::test]
    async fn cancel_ends_a_stalled_splice() {
        let (user, _user_peer) = tokio::io::duplex(16);
        let (target, _target_peer) = tokio::io::duplex(16);
        let (ur, uw) = tokio::io::split(user);
        let (tr, tw) = tokio::io::split(target);
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        let task = tokio::spawn(async move {
            let (mut ur, mut uw, mut tr, mut tw) = (
                StreamSource::new(ur),
                StreamSink(uw),
                StreamSource::new(tr),
                StreamSink(tw),
            );
            splice(
                &mut ur,
                &mut uw,
                &mut tr,
                &mut tw,
                Arc::new(Counters::default()),
                c,
            )
            .await
        });
        cancel.cancel();
        assert_eq!(task.await.expect("join"), SpliceEnd::Cancelled);
    }
}
