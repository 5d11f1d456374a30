//! A small SFTP version 3 client over any byte stream: the requests a file
//! transfer needs (open, read, write, fstat, stat, close), pipelined by the
//! caller through [`Sftp::send`] and [`Sftp::recv`].

use std::collections::VecDeque;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use crate::error::{Error, ErrorKind, Result};
use crate::proxy::sftp::codec::{self, Framer};

const FXP_STAT: u8 = 17;
const FXP_FSTAT: u8 = 8;
const FXP_ATTRS: u8 = 105;
const FX_NO_SUCH_FILE: u32 = 2;

/// A reply, decoded for the client.
#[derive(Debug)]
pub enum Reply {
    Status {
        id: u32,
        code: u32,
        message: String,
    },
    Handle {
        id: u32,
        handle: Vec<u8>,
    },
    /// `DATA`: the packet and where its data sits in it.
    Data {
        id: u32,
        packet: Bytes,
        data: std::ops::Range<usize>,
    },
    /// `ATTRS` with its size, if the server gave one.
    Attrs {
        id: u32,
        size: Option<u64>,
    },
    Other {
        id: Option<u32>,
    },
}

impl Reply {
    pub fn id(&self) -> Option<u32> {
        match self {
            Reply::Status { id, .. }
            | Reply::Handle { id, .. }
            | Reply::Data { id, .. }
            | Reply::Attrs { id, .. } => Some(*id),
            Reply::Other { id } => *id,
        }
    }
}

/// The error a `STATUS` reply stands for, naming `what` was asked.
pub fn status_error(code: u32, message: &str, what: &str) -> Error {
    let kind = match code {
        codec::FX_PERMISSION_DENIED => ErrorKind::PermissionDenied,
        FX_NO_SUCH_FILE => ErrorKind::NotFound,
        _ => ErrorKind::Io,
    };
    let name = match code {
        codec::FX_PERMISSION_DENIED => "permission denied",
        FX_NO_SUCH_FILE => "no such file",
        codec::FX_EOF => "end of file",
        _ => "failure",
    };
    let message = if message.is_empty() {
        name.to_string()
    } else {
        format!("{name}: {message}")
    };
    Error::new(kind, format!("{what}: {message}"))
}

fn protocol(what: &str) -> Error {
    Error::new(ErrorKind::Protocol, format!("sftp: {what}"))
}

/// One SFTP connection (after `INIT`/`VERSION`).
#[derive(Debug)]
pub struct Sftp<S> {
    stream: S,
    framer: Framer,
    ready: VecDeque<Bytes>,
    next_id: u32,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Sftp<S> {
    /// Speaks `INIT` on `stream` and waits for the server's `VERSION`.
    pub async fn start(stream: S) -> Result<Self> {
        let mut s = Sftp {
            stream,
            framer: Framer::default(),
            ready: VecDeque::new(),
            next_id: 1,
        };
        s.write(frame(codec::FXP_INIT, &3u32.to_be_bytes())).await?;
        let p = s.packet().await?;
        if p.get(4) != Some(&codec::FXP_VERSION) {
            return Err(protocol("the server did not answer with its version"));
        }
        Ok(s)
    }

    fn id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    async fn write(&mut self, packet: Vec<u8>) -> Result<()> {
        self.stream.write_all(&packet).await?;
        Ok(())
    }

    async fn packet(&mut self) -> Result<Bytes> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some(p) = self.ready.pop_front() {
                return Ok(p);
            }
            let n = self.stream.read(&mut buf).await?;
            if n == 0 {
                return Err(Error::new(
                    ErrorKind::TunnelUnavailable,
                    "the sftp session ended (terminated, expired, or the target closed it)",
                ));
            }
            let packets = self
                .framer
                .push(&buf[..n])
                .map_err(|e| protocol(&e.to_string()))?;
            self.ready.extend(packets);
        }
    }

    /// The next reply.
    pub async fn recv(&mut self) -> Result<Reply> {
        let p = self.packet().await?;
        decode(p)
    }

    /// Sends a request built by one of the request functions; its id.
    pub async fn send(&mut self, request: Request<'_>) -> Result<u32> {
        let id = self.id();
        let mut body = id.to_be_bytes().to_vec();
        let kind = match request {
            Request::Open { path, pflags } => {
                put_string(&mut body, path);
                body.extend_from_slice(&pflags.to_be_bytes());
                body.extend_from_slice(&0u32.to_be_bytes());
                codec::FXP_OPEN
            }
            Request::Close { handle } => {
                put_string(&mut body, handle);
                codec::FXP_CLOSE
            }
            Request::Read {
                handle,
                offset,
                len,
            } => {
                put_string(&mut body, handle);
                body.extend_from_slice(&offset.to_be_bytes());
                body.extend_from_slice(&len.to_be_bytes());
                codec::FXP_READ
            }
            Request::Write {
                handle,
                offset,
                data,
            } => {
                put_string(&mut body, handle);
                body.extend_from_slice(&offset.to_be_bytes());
                put_string(&mut body, data);
                codec::FXP_WRITE
            }
            Request::Fstat { handle } => {
                put_string(&mut body, handle);
                FXP_FSTAT
            }
            Request::Stat { path } => {
                put_string(&mut body, path);
                FXP_STAT
            }
        };
        self.write(frame(kind, &body)).await?;
        Ok(id)
    }

    /// Sends `request` and waits for its reply (nothing else in flight).
    pub async fn call(&mut self, request: Request<'_>) -> Result<Reply> {
        let id = self.send(request).await?;
        let reply = self.recv().await?;
        if reply.id() != Some(id) {
            return Err(protocol("a reply to a request not in flight"));
        }
        Ok(reply)
    }

    /// Opens `path` with `pflags`; the handle.
    pub async fn open(&mut self, path: &[u8], pflags: u32, what: &str) -> Result<Vec<u8>> {
        match self.call(Request::Open { path, pflags }).await? {
            Reply::Handle { handle, .. } => Ok(handle),
            Reply::Status { code, message, .. } => Err(status_error(code, &message, what)),
            _ => Err(protocol("unexpected reply to open")),
        }
    }

    /// The size of an open file.
    pub async fn fstat_size(&mut self, handle: &[u8]) -> Result<Option<u64>> {
        match self.call(Request::Fstat { handle }).await? {
            Reply::Attrs { size, .. } => Ok(size),
            Reply::Status { code, message, .. } => Err(status_error(code, &message, "fstat")),
            _ => Err(protocol("unexpected reply to fstat")),
        }
    }

    /// The size of `path`, `None` when it does not exist.
    pub async fn stat_size(&mut self, path: &[u8]) -> Result<Option<u64>> {
        match self.call(Request::Stat { path }).await? {
            Reply::Attrs { size, .. } => Ok(Some(size.unwrap_or(0))),
            Reply::Status {
                code: FX_NO_SUCH_FILE,
                ..
            } => Ok(None),
            Reply::Status { code, message, .. } => Err(status_error(code, &message, "stat")),
            _ => Err(protocol("unexpected reply to stat")),
        }
    }

    /// Closes `handle`; an error when the server reports one (a failed
    /// close may mean data did not reach the disk).
    pub async fn close(&mut self, handle: &[u8]) -> Result<()> {
        match self.call(Request::Close { handle }).await? {
            Reply::Status {
                code: codec::FX_OK, ..
            } => Ok(()),
            Reply::Status { code, message, .. } => Err(status_error(code, &message, "close")),
            _ => Err(protocol("unexpected reply to close")),
        }
    }

    /// Shuts the write side down (EOF to the server).
    pub async fn shutdown(&mut self) -> Result<()> {
        self.stream.shutdown().await?;
        Ok(())
    }
}

/// The requests the client sends.
#[derive(Debug, Clone, Copy)]
pub enum Request<'a> {
    Open {
        path: &'a [u8],
        pflags: u32,
    },
    Close {
        handle: &'a [u8],
    },
    Read {
        handle: &'a [u8],
        offset: u64,
        len: u32,
    },
    Write {
        handle: &'a [u8],
        offset: u64,
        data: &'a [u8],
    },
    Fstat {
        handle: &'a [u8],
    },
    Stat {
        path: &'a [u8],
    },
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.extend_from_slice(&((body.len() + 1) as u32).to_be_bytes());
    out.push(kind);
    out.extend_from_slice(body);
    out
}

fn decode(p: Bytes) -> Result<Reply> {
    if p.get(4) == Some(&FXP_ATTRS) {
        let field = |at: usize, n: usize| p.get(at..at + n).ok_or_else(|| protocol("short attrs"));
        let id = u32::from_be_bytes(field(5, 4)?.try_into().map_err(|_| protocol("id"))?);
        let flags = u32::from_be_bytes(field(9, 4)?.try_into().map_err(|_| protocol("flags"))?);
        let size = if flags & 1 != 0 {
            Some(u64::from_be_bytes(
                field(13, 8)?.try_into().map_err(|_| protocol("size"))?,
            ))
        } else {
            None
        };
        return Ok(Reply::Attrs { id, size });
    }
    let reply = codec::parse_reply(&p).map_err(|e| protocol(&e.to_string()))?;
    Ok(match reply {
        codec::Reply::Status { id, code, message } => Reply::Status { id, code, message },
        codec::Reply::Handle { id, handle } => Reply::Handle { id, handle },
        codec::Reply::Data { id, data } => Reply::Data {
            id,
            packet: p,
            data,
        },
        other => Reply::Other { id: other.id() },
    })
}
