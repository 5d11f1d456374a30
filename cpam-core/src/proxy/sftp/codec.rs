//! SFTP version 3 packets (draft-ietf-secsh-filexfer-02, as OpenSSH speaks
//! it), sans I/O: a [`Framer`] that cuts a byte stream into packets, the
//! requests and replies the tracker needs decoded, and the status reply the
//! proxy writes itself. Everything else passes as opaque bytes.

use bytes::{Buf, Bytes, BytesMut};

/// The largest packet either side may send (OpenSSH's `SFTP_MAX_MSG_LENGTH`
/// is 256 KiB; a little room on top for its headers).
pub const MAX_PACKET: usize = 256 * 1024 + 1024;

pub const FXP_INIT: u8 = 1;
pub const FXP_VERSION: u8 = 2;
pub const FXP_OPEN: u8 = 3;
pub const FXP_CLOSE: u8 = 4;
pub const FXP_READ: u8 = 5;
pub const FXP_WRITE: u8 = 6;
pub const FXP_FSETSTAT: u8 = 10;
pub const FXP_SETSTAT: u8 = 9;
pub const FXP_OPENDIR: u8 = 11;
pub const FXP_REMOVE: u8 = 13;
pub const FXP_MKDIR: u8 = 14;
pub const FXP_RMDIR: u8 = 15;
pub const FXP_REALPATH: u8 = 16;
pub const FXP_RENAME: u8 = 18;
pub const FXP_READLINK: u8 = 19;
pub const FXP_SYMLINK: u8 = 20;
pub const FXP_STATUS: u8 = 101;
pub const FXP_HANDLE: u8 = 102;
pub const FXP_DATA: u8 = 103;
pub const FXP_NAME: u8 = 104;
pub const FXP_EXTENDED: u8 = 200;

/// `SSH_FXF_*` open flags.
pub const FXF_READ: u32 = 0x01;
pub const FXF_WRITE: u32 = 0x02;
pub const FXF_APPEND: u32 = 0x04;
pub const FXF_CREAT: u32 = 0x08;
pub const FXF_TRUNC: u32 = 0x10;
pub const FXF_EXCL: u32 = 0x20;

/// `SSH_FX_*` status codes.
pub const FX_OK: u32 = 0;
pub const FX_EOF: u32 = 1;
pub const FX_PERMISSION_DENIED: u32 = 3;
pub const FX_FAILURE: u32 = 4;

/// Why a stream could not be cut into packets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("sftp packet of {0} bytes exceeds the limit of {MAX_PACKET}")]
    Oversized(usize),
    #[error("empty sftp packet")]
    Empty,
}

/// Cuts one direction's bytes into whole packets (length prefix included).
#[derive(Debug, Default)]
pub struct Framer {
    buf: BytesMut,
}

impl Framer {
    /// Adds `data`; returns the packets it completed.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<Bytes>, FrameError> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        loop {
            if self.buf.len() < 4 {
                return Ok(out);
            }
            let len =
                u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
            if len > MAX_PACKET {
                return Err(FrameError::Oversized(len));
            }
            if len == 0 {
                return Err(FrameError::Empty);
            }
            if self.buf.len() < 4 + len {
                return Ok(out);
            }
            out.push(self.buf.split_to(4 + len).freeze());
        }
    }

    /// Bytes held back waiting for the rest of a packet.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

/// A packet body field could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed sftp packet (type {kind}): {what}")]
pub struct Malformed {
    pub kind: u8,
    pub what: &'static str,
}

/// A reader over one packet's body.
struct Reader<'a> {
    kind: u8,
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn fail(&self, what: &'static str) -> Malformed {
        Malformed {
            kind: self.kind,
            what,
        }
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, Malformed> {
        if self.buf.remaining() < 4 {
            return Err(self.fail(what));
        }
        Ok(self.buf.get_u32())
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, Malformed> {
        if self.buf.remaining() < 8 {
            return Err(self.fail(what));
        }
        Ok(self.buf.get_u64())
    }

    fn string(&mut self, what: &'static str) -> Result<&'a [u8], Malformed> {
        let len = self.u32(what)? as usize;
        if self.buf.len() < len {
            return Err(self.fail(what));
        }
        let (s, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(s)
    }

    /// Skips an `ATTRS` block, returning its size field if present.
    fn attrs(&mut self) -> Result<Option<u64>, Malformed> {
        let flags = self.u32("attribute flags")?;
        let mut size = None;
        if flags & 0x1 != 0 {
            size = Some(self.u64("attribute size")?);
        }
        if flags & 0x2 != 0 {
            self.u32("uid")?;
            self.u32("gid")?;
        }
        if flags & 0x4 != 0 {
            self.u32("permissions")?;
        }
        if flags & 0x8 != 0 {
            self.u32("atime")?;
            self.u32("mtime")?;
        }
        if flags & 0x8000_0000 != 0 {
            let n = self.u32("extended count")?;
            for _ in 0..n {
                self.string("extended name")?;
                self.string("extended value")?;
            }
        }
        Ok(size)
    }
}

/// A request from the client, as far as the tracker and policy care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Init,
    Open {
        id: u32,
        path: Vec<u8>,
        pflags: u32,
    },
    Close {
        id: u32,
        handle: Vec<u8>,
    },
    Read {
        id: u32,
        handle: Vec<u8>,
        offset: u64,
        len: u32,
    },
    Write {
        id: u32,
        handle: Vec<u8>,
        offset: u64,
        /// Where the data starts inside the packet.
        data: std::ops::Range<usize>,
    },
    /// `remove`, `mkdir`, `rmdir`, `setstat`, `opendir`: one path.
    Path {
        id: u32,
        op: PathOp,
        path: Vec<u8>,
    },
    /// `fsetstat`: a handle.
    HandleSetstat {
        id: u32,
        handle: Vec<u8>,
    },
    /// `rename`, `symlink`, `posix-rename@openssh.com`,
    /// `hardlink@openssh.com`: two paths in the order they are sent.
    TwoPaths {
        id: u32,
        op: PathOp,
        first: Vec<u8>,
        second: Vec<u8>,
    },
    /// An extension this proxy does not know; refused when a policy
    /// restricts anything, since it could move or change files.
    UnknownExtended {
        id: u32,
        name: String,
    },
    /// Anything else (stat, lstat, realpath, readdir, readlink...), passed on.
    Other {
        id: Option<u32>,
        kind: u8,
    },
}

/// The path operations the audit names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathOp {
    Remove,
    Mkdir,
    Rmdir,
    Setstat,
    Opendir,
    Rename,
    Symlink,
    Hardlink,
}

impl PathOp {
    pub fn as_str(self) -> &'static str {
        match self {
            PathOp::Remove => "remove",
            PathOp::Mkdir => "mkdir",
            PathOp::Rmdir => "rmdir",
            PathOp::Setstat => "setstat",
            PathOp::Opendir => "opendir",
            PathOp::Rename => "rename",
            PathOp::Symlink => "symlink",
            PathOp::Hardlink => "hardlink",
        }
    }

    /// Whether the operation changes the target's filesystem.
    pub fn modifies(self) -> bool {
        !matches!(self, PathOp::Opendir)
    }
}

impl Request {
    /// The request id, when the packet has one.
    pub fn id(&self) -> Option<u32> {
        match self {
            Request::Init => None,
            Request::Open { id, .. }
            | Request::Close { id, .. }
            | Request::Read { id, .. }
            | Request::Write { id, .. }
            | Request::Path { id, .. }
            | Request::HandleSetstat { id, .. }
            | Request::TwoPaths { id, .. }
            | Request::UnknownExtended { id, .. } => Some(*id),
            Request::Other { id, .. } => *id,
        }
    }
}

/// Decodes one whole packet (length prefix included) from the client.
pub fn parse_request(packet: &[u8]) -> Result<Request, Malformed> {
    let kind = packet.get(4).copied().unwrap_or(0);
    let mut r = Reader {
        kind,
        buf: packet.get(5..).unwrap_or(&[]),
    };
    let body_start = 5;
    Ok(match kind {
        FXP_INIT => Request::Init,
        FXP_OPEN => {
            let id = r.u32("id")?;
            let path = r.string("path")?.to_vec();
            let pflags = r.u32("open flags")?;
            r.attrs()?;
            Request::Open { id, path, pflags }
        }
        FXP_CLOSE => Request::Close {
            id: r.u32("id")?,
            handle: r.string("handle")?.to_vec(),
        },
        FXP_READ => Request::Read {
            id: r.u32("id")?,
            handle: r.string("handle")?.to_vec(),
            offset: r.u64("offset")?,
            len: r.u32("length")?,
        },
        FXP_WRITE => {
            let id = r.u32("id")?;
            let handle = r.string("handle")?.to_vec();
            let offset = r.u64("offset")?;
            let before = r.buf.len();
            let data = r.string("data")?;
            let start = body_start + (packet.len() - body_start - before) + 4;
            Request::Write {
                id,
                handle,
                offset,
                data: start..start + data.len(),
            }
        }
        FXP_REMOVE | FXP_MKDIR | FXP_RMDIR | FXP_SETSTAT | FXP_OPENDIR => {
            let id = r.u32("id")?;
            let path = r.string("path")?.to_vec();
            let op = match kind {
                FXP_REMOVE => PathOp::Remove,
                FXP_MKDIR => PathOp::Mkdir,
                FXP_RMDIR => PathOp::Rmdir,
                FXP_SETSTAT => PathOp::Setstat,
                _ => PathOp::Opendir,
            };
            if matches!(op, PathOp::Mkdir | PathOp::Setstat) {
                r.attrs()?;
            }
            Request::Path { id, op, path }
        }
        FXP_FSETSTAT => {
            let id = r.u32("id")?;
            let handle = r.string("handle")?.to_vec();
            r.attrs()?;
            Request::HandleSetstat { id, handle }
        }
        FXP_RENAME | FXP_SYMLINK => Request::TwoPaths {
            id: r.u32("id")?,
            op: if kind == FXP_RENAME {
                PathOp::Rename
            } else {
                PathOp::Symlink
            },
            first: r.string("first path")?.to_vec(),
            second: r.string("second path")?.to_vec(),
        },
        FXP_EXTENDED => {
            let id = r.u32("id")?;
            let name = r.string("extension name")?;
            match name {
                b"posix-rename@openssh.com" | b"hardlink@openssh.com" => Request::TwoPaths {
                    id,
                    op: if name == b"hardlink@openssh.com" {
                        PathOp::Hardlink
                    } else {
                        PathOp::Rename
                    },
                    first: r.string("first path")?.to_vec(),
                    second: r.string("second path")?.to_vec(),
                },
                b"lsetstat@openssh.com" => {
                    let path = r.string("path")?.to_vec();
                    r.attrs()?;
                    Request::Path {
                        id,
                        op: PathOp::Setstat,
                        path,
                    }
                }
                b"statvfs@openssh.com"
                | b"fstatvfs@openssh.com"
                | b"fsync@openssh.com"
                | b"limits@openssh.com"
                | b"expand-path@openssh.com"
                | b"home-directory"
                | b"users-groups-by-id@openssh.com" => Request::Other { id: Some(id), kind },
                other => Request::UnknownExtended {
                    id,
                    name: String::from_utf8_lossy(other).into_owned(),
                },
            }
        }
        0 => return Err(r.fail("packet type")),
        _ => Request::Other {
            id: r.u32("id").ok(),
            kind,
        },
    })
}

/// A reply from the server, as far as the tracker cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Version,
    Status {
        id: u32,
        code: u32,
        message: String,
    },
    Handle {
        id: u32,
        handle: Vec<u8>,
    },
    /// `DATA`: where the data sits inside the packet.
    Data {
        id: u32,
        data: std::ops::Range<usize>,
    },
    /// `NAME` with its first file name (the answer to `realpath`).
    Name {
        id: u32,
        first: Option<Vec<u8>>,
    },
    Other {
        id: Option<u32>,
    },
}

impl Reply {
    pub fn id(&self) -> Option<u32> {
        match self {
            Reply::Version => None,
            Reply::Status { id, .. }
            | Reply::Handle { id, .. }
            | Reply::Data { id, .. }
            | Reply::Name { id, .. } => Some(*id),
            Reply::Other { id } => *id,
        }
    }
}

/// Decodes one whole packet (length prefix included) from the server.
pub fn parse_reply(packet: &[u8]) -> Result<Reply, Malformed> {
    let kind = packet.get(4).copied().unwrap_or(0);
    let mut r = Reader {
        kind,
        buf: packet.get(5..).unwrap_or(&[]),
    };
    Ok(match kind {
        FXP_VERSION => Reply::Version,
        FXP_STATUS => {
            let id = r.u32("id")?;
            let code = r.u32("status code")?;
            // OpenSSH before 2.x and some servers omit the message.
            let message = r
                .string("message")
                .map(|m| String::from_utf8_lossy(m).into_owned())
                .unwrap_or_default();
            Reply::Status { id, code, message }
        }
        FXP_HANDLE => Reply::Handle {
            id: r.u32("id")?,
            handle: r.string("handle")?.to_vec(),
        },
        FXP_DATA => {
            let id = r.u32("id")?;
            let len = r.string("data")?.len();
            let start = 5 + 4 + 4;
            Reply::Data {
                id,
                data: start..start + len,
            }
        }
        FXP_NAME => {
            let id = r.u32("id")?;
            let count = r.u32("name count")?;
            let first = if count > 0 {
                Some(r.string("file name")?.to_vec())
            } else {
                None
            };
            Reply::Name { id, first }
        }
        _ => Reply::Other {
            id: r.u32("id").ok(),
        },
    })
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// A `STATUS` reply.
pub fn status(id: u32, code: u32, message: &str) -> Bytes {
    let mut body = vec![FXP_STATUS];
    body.extend_from_slice(&id.to_be_bytes());
    body.extend_from_slice(&code.to_be_bytes());
    put_string(&mut body, message.as_bytes());
    put_string(&mut body, b"en");
    frame(body)
}

/// A `REALPATH` request.
pub fn realpath(id: u32, path: &[u8]) -> Bytes {
    let mut body = vec![FXP_REALPATH];
    body.extend_from_slice(&id.to_be_bytes());
    put_string(&mut body, path);
    frame(body)
}

/// A `READ` request (a request rewritten with a shorter length).
pub fn read(id: u32, handle: &[u8], offset: u64, len: u32) -> Bytes {
    let mut body = vec![FXP_READ];
    body.extend_from_slice(&id.to_be_bytes());
    put_string(&mut body, handle);
    body.extend_from_slice(&offset.to_be_bytes());
    body.extend_from_slice(&len.to_be_bytes());
    frame(body)
}

fn frame(body: Vec<u8>) -> Bytes {
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn packet(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut p = ((body.len() + 1) as u32).to_be_bytes().to_vec();
        p.push(kind);
        p.extend_from_slice(body);
        p
    }

    fn s(x: &[u8]) -> Vec<u8> {
        let mut v = (x.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(x);
        v
    }

    #[test]
    fn framer_joins_split_packets_and_splits_joined_ones() {
        let a = packet(FXP_INIT, &3u32.to_be_bytes());
        let b = packet(FXP_REALPATH, &[&7u32.to_be_bytes()[..], &s(b".")].concat());
        let all = [a.clone(), b.clone()].concat();
        let mut f = Framer::default();
        assert!(f.push(&all[..3]).unwrap().is_empty());
        let got = f.push(&all[3..a.len() + 2]).unwrap();
        assert_eq!(got, vec![Bytes::from(a.clone())]);
        let got = f.push(&all[a.len() + 2..]).unwrap();
        assert_eq!(got, vec![Bytes::from(b)]);
        assert_eq!(f.pending(), 0);
    }

    #[test]
    fn an_oversized_or_empty_packet_is_an_error() {
        let mut f = Framer::default();
        assert_eq!(
            f.push(&u32::MAX.to_be_bytes()),
            Err(FrameError::Oversized(u32::MAX as usize))
        );
        let mut f = Framer::default();
        assert_eq!(f.push(&[0, 0, 0, 0]), Err(FrameError::Empty));
    }

    #[test]
    fn write_data_is_located_inside_the_packet() {
        let body = [
            &9u32.to_be_bytes()[..],
            &s(b"h1"),
            &(1u64 << 33).to_be_bytes(),
            &s(b"hello"),
        ]
        .concat();
        let p = packet(FXP_WRITE, &body);
        match parse_request(&p).unwrap() {
            Request::Write {
                id,
                handle,
                offset,
                data,
            } => {
                assert_eq!((id, handle.as_slice(), offset), (9, &b"h1"[..], 1u64 << 33));
                assert_eq!(&p[data], b"hello");
            }
            other => panic!("{other:?}"),
        }
        let p = packet(FXP_DATA, &[&9u32.to_be_bytes()[..], &s(b"world")].concat());
        match parse_reply(&p).unwrap() {
            Reply::Data { id: 9, data } => assert_eq!(&p[data], b"world"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn open_rename_and_extensions_decode() {
        let p = packet(
            FXP_OPEN,
            &[
                &1u32.to_be_bytes()[..],
                &s(b"/data/in/a.txt"),
                &(FXF_WRITE | FXF_CREAT).to_be_bytes(),
                &1u32.to_be_bytes(),
                &5u64.to_be_bytes(),
            ]
            .concat(),
        );
        assert_eq!(
            parse_request(&p).unwrap(),
            Request::Open {
                id: 1,
                path: b"/data/in/a.txt".to_vec(),
                pflags: FXF_WRITE | FXF_CREAT
            }
        );
        let p = packet(
            FXP_EXTENDED,
            &[
                &2u32.to_be_bytes()[..],
                &s(b"posix-rename@openssh.com"),
                &s(b"/a"),
                &s(b"/b"),
            ]
            .concat(),
        );
        assert!(matches!(
            parse_request(&p).unwrap(),
            Request::TwoPaths {
                op: PathOp::Rename,
                ..
            }
        ));
        let p = packet(
            FXP_EXTENDED,
            &[&2u32.to_be_bytes()[..], &s(b"x@y")].concat(),
        );
        assert!(matches!(
            parse_request(&p).unwrap(),
            Request::UnknownExtended { .. }
        ));
    }

    #[test]
    fn truncated_fields_are_malformed_not_panics() {
        let p = packet(FXP_OPEN, &[&1u32.to_be_bytes()[..], &[0, 0, 1, 0]].concat());
        assert!(parse_request(&p).is_err());
        assert!(parse_request(&[0, 0, 0, 1]).is_err());
    }

    #[test]
    fn status_round_trips() {
        let p = status(4, FX_PERMISSION_DENIED, "no");
        assert_eq!(
            parse_reply(&p).unwrap(),
            Reply::Status {
                id: 4,
                code: FX_PERMISSION_DENIED,
                message: "no".into()
            }
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048), cut in 0usize..2048) {
            let mut f = Framer::default();
            let cut = cut.min(data.len());
            for part in [&data[..cut], &data[cut..]] {
                match f.push(part) {
                    Ok(packets) => for p in packets {
                        let _ = parse_request(&p);
                        let _ = parse_reply(&p);
                    },
                    Err(_) => break,
                }
            }
        }

        #[test]
        fn arbitrary_bodies_never_panic(kind in any::<u8>(), body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let p = packet(kind, &body);
            if let Ok(Request::Write { data, .. }) = parse_request(&p) {
                prop_assert!(data.end <= p.len());
            }
            if let Ok(Reply::Data { data, .. }) = parse_reply(&p) {
                prop_assert!(data.end <= p.len());
            }
        }
    }
}
