//! `put` and `get`: one file, pipelined requests, both hashes, resume.

use std::collections::VecDeque;
use std::path::Path;

use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncSeekExt as _, AsyncWrite, AsyncWriteExt as _};

use super::client::{Reply, Request, Sftp, status_error};
use super::{Audited, CHUNK, Direction, IN_FLIGHT, Options, Outcome, Pace, Progress, RESUME_CHECK};
use crate::error::{Error, ErrorKind, Result};
use crate::proxy::sftp::codec;

fn protocol(what: &str) -> Error {
    Error::new(ErrorKind::Protocol, format!("sftp: {what}"))
}

fn text(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

/// Reads exactly `len` bytes of `file` from `offset`, hashing nothing.
async fn read_local(file: &mut tokio::fs::File, offset: u64, len: u64) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; usize::try_from(len).map_err(|_| Error::invalid("length"))?];
    file.seek(std::io::SeekFrom::Start(offset)).await?;
    file.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Feeds `hasher` with `file`'s bytes `[0, len)`.
async fn hash_local(file: &mut tokio::fs::File, len: u64, hasher: &mut Sha256) -> Result<()> {
    file.seek(std::io::SeekFrom::Start(0)).await?;
    let mut left = len;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        file.read_exact(&mut buf[..want]).await?;
        hasher.update(&buf[..want]);
        left -= want as u64;
    }
    Ok(())
}

/// Reads the remote bytes `[from, to)` of `handle` one request at a time.
async fn read_remote<S: AsyncRead + AsyncWrite + Unpin + Send>(
    sftp: &mut Sftp<S>,
    handle: &[u8],
    from: u64,
    to: u64,
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = from;
    while at < to {
        let len = u32::try_from((to - at).min(u64::from(CHUNK))).unwrap_or(CHUNK);
        match sftp
            .call(Request::Read {
                handle,
                offset: at,
                len,
            })
            .await?
        {
            Reply::Data { packet, data, .. } if !data.is_empty() => {
                at += data.len() as u64;
                out.extend_from_slice(&packet[data]);
            }
            Reply::Status { code, message, .. } if code != codec::FX_EOF => {
                return Err(status_error(code, &message, "reading the remote file"));
            }
            _ => break,
        }
    }
    Ok(out)
}

fn differ(what: &str, at: u64) -> Error {
    Error::new(
        ErrorKind::Conflict,
        format!(
            "cannot resume: the {what}'s bytes before offset {at} differ from the source's (not a partial copy of it); transfer it again without --resume"
        ),
    )
}

/// Uploads `local` to `remote`.
pub async fn put<S: AsyncRead + AsyncWrite + Unpin + Send>(
    sftp: &mut Sftp<S>,
    local: &Path,
    remote: &[u8],
    options: Options,
    progress: &mut dyn Progress,
) -> Result<Outcome> {
    let mut file = tokio::fs::File::open(local)
        .await
        .map_err(|e| Error::from(e).context(&format!("opening {}", local.display())))?;
    let size = file.metadata().await?.len();
    let start = if options.resume {
        sftp.stat_size(remote).await?.unwrap_or(0)
    } else {
        0
    };
    if start > size {
        return Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "cannot resume: the remote {} ({start} bytes) is larger than {} ({size} bytes)",
                text(remote),
                local.display()
            ),
        ));
    }
    let pflags = if start > 0 {
        codec::FXF_READ | codec::FXF_WRITE
    } else {
        codec::FXF_WRITE | codec::FXF_CREAT | codec::FXF_TRUNC
    };
    let what = format!("opening the remote {}", text(remote));
    let handle = sftp.open(remote, pflags, &what).await?;
    let pace = Pace::new(options.limit);
    let result = send(sftp, &handle, &mut file, start, size, pace, progress).await;
    let closed = sftp.close(&handle).await;
    let (file_sha256, sha256) = result?;
    closed?;
    Ok(Outcome {
        direction: Direction::Upload,
        remote: remote.to_vec(),
        local: local.to_path_buf(),
        file_size: size,
        file_sha256,
        resumed_from: (start > 0).then_some(start),
        audited: Audited {
            offset: start,
            size: size - start,
            sha256,
        },
    })
}

/// Checks the remote's tail before `start`, then writes `[start, size)`;
/// the whole file's hash and the sent bytes' hash.
async fn send<S: AsyncRead + AsyncWrite + Unpin + Send>(
    sftp: &mut Sftp<S>,
    handle: &[u8],
    file: &mut tokio::fs::File,
    start: u64,
    size: u64,
    mut pace: Pace,
    progress: &mut dyn Progress,
) -> Result<(String, String)> {
    let mut whole = Sha256::new();
    if start > 0 {
        let from = start - start.min(RESUME_CHECK);
        let theirs = read_remote(sftp, handle, from, start).await?;
        if theirs != read_local(file, from, start - from).await? {
            return Err(differ("remote file", start));
        }
        hash_local(file, start, &mut whole).await?;
    }
    file.seek(std::io::SeekFrom::Start(start)).await?;
    let mut sent = Sha256::new();
    progress.begin(size, start);
    let mut in_flight: VecDeque<(u32, u64)> = VecDeque::new();
    let mut at = start;
    let mut buf = vec![0u8; CHUNK as usize];
    loop {
        while at < size && in_flight.len() < IN_FLIGHT {
            let want = usize::try_from((size - at).min(u64::from(CHUNK))).unwrap_or(0);
            pace.take(want as u64).await;
            file.read_exact(&mut buf[..want]).await?;
            whole.update(&buf[..want]);
            sent.update(&buf[..want]);
            let id = sftp
                .send(Request::Write {
                    handle,
                    offset: at,
                    data: &buf[..want],
                })
                .await?;
            in_flight.push_back((id, want as u64));
            at += want as u64;
        }
        let Some((id, len)) = in_flight.pop_front() else {
            break;
        };
        match sftp.recv().await? {
            Reply::Status {
                id: got,
                code: codec::FX_OK,
                ..
            } if got == id => progress.advance(len),
            Reply::Status {
                id: got,
                code,
                message,
            } if got == id => {
                return Err(status_error(code, &message, "writing the remote file"));
            }
            _ => return Err(protocol("unexpected reply to a write")),
        }
    }
    Ok((hex::encode(whole.finalize()), hex::encode(sent.finalize())))
}

/// Downloads `remote` to `local`.
pub async fn get<S: AsyncRead + AsyncWrite + Unpin + Send>(
    sftp: &mut Sftp<S>,
    remote: &[u8],
    local: &Path,
    options: Options,
    progress: &mut dyn Progress,
) -> Result<Outcome> {
    let what = format!("opening the remote {}", text(remote));
    let handle = sftp.open(remote, codec::FXF_READ, &what).await?;
    let result = async {
        let size = sftp.fstat_size(&handle).await?;
        let have = if options.resume {
            match tokio::fs::metadata(local).await {
                Ok(m) => m.len(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
                Err(e) => return Err(e.into()),
            }
        } else {
            0
        };
        if let Some(size) = size.filter(|s| have > *s) {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "cannot resume: {} ({have} bytes) is larger than the remote {} ({size} bytes)",
                    local.display(),
                    text(remote)
                ),
            ));
        }
        let mut file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(!options.resume)
            .open(local)
            .await
            .map_err(|e| Error::from(e).context(&format!("opening {}", local.display())))?;
        let pace = Pace::new(options.limit);
        receive(sftp, &handle, &mut file, have, size, pace, progress).await
    }
    .await;
    let closed = sftp.close(&handle).await;
    let (have, file_size, file_sha256, audited) = result?;
    closed?;
    Ok(Outcome {
        direction: Direction::Download,
        remote: remote.to_vec(),
        local: local.to_path_buf(),
        file_size,
        file_sha256,
        resumed_from: (have > 0).then_some(have),
        audited,
    })
}

/// Reads from `have - RESUME_CHECK` to the end, checking the overlap and
/// writing the rest; the file's size and hash and the received run.
async fn receive<S: AsyncRead + AsyncWrite + Unpin + Send>(
    sftp: &mut Sftp<S>,
    handle: &[u8],
    file: &mut tokio::fs::File,
    have: u64,
    size: Option<u64>,
    mut pace: Pace,
    progress: &mut dyn Progress,
) -> Result<(u64, u64, String, Audited)> {
    let from = have - have.min(RESUME_CHECK);
    let ours = read_local(file, from, have - from).await?;
    let mut whole = Sha256::new();
    hash_local(file, from, &mut whole).await?;
    file.seek(std::io::SeekFrom::Start(have)).await?;
    let mut got = Sha256::new();
    progress.begin(size.unwrap_or(0), have);
    let mut in_flight: VecDeque<(u32, u64)> = VecDeque::new();
    let mut next = from;
    // Where the next byte lands; a short read that is not at the end
    // leaves a gap the next reply shows.
    let mut pos = from;
    let mut eof = false;
    loop {
        while !eof && in_flight.len() < IN_FLIGHT {
            pace.take(u64::from(CHUNK)).await;
            let id = sftp
                .send(Request::Read {
                    handle,
                    offset: next,
                    len: CHUNK,
                })
                .await?;
            in_flight.push_back((id, next));
            next += u64::from(CHUNK);
        }
        let Some((id, offset)) = in_flight.pop_front() else {
            break;
        };
        match sftp.recv().await? {
            Reply::Data {
                id: r,
                packet,
                data,
            } if r == id => {
                if eof || offset != pos {
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        "the remote file changed during the transfer",
                    ));
                }
                let bytes = &packet[data];
                got.update(bytes);
                whole.update(bytes);
                let end = pos + bytes.len() as u64;
                if pos < have {
                    let upto = usize::try_from(end.min(have) - pos).unwrap_or(0);
                    let at = usize::try_from(pos - from).unwrap_or(0);
                    if bytes[..upto] != ours[at..at + upto] {
                        return Err(differ("local file", have));
                    }
                    file.write_all(&bytes[upto..]).await?;
                    progress.advance((bytes.len() - upto) as u64);
                } else {
                    file.write_all(bytes).await?;
                    progress.advance(bytes.len() as u64);
                }
                pos = end;
            }
            Reply::Status {
                id: r,
                code: codec::FX_EOF,
                ..
            } if r == id => eof = true,
            Reply::Status {
                id: r,
                code,
                message,
            } if r == id => {
                return Err(status_error(code, &message, "reading the remote file"));
            }
            _ => return Err(protocol("unexpected reply to a read")),
        }
    }
    if pos < have {
        return Err(differ("local file", have));
    }
    file.flush().await?;
    file.sync_all().await?;
    Ok((
        have,
        pos,
        hex::encode(whole.finalize()),
        Audited {
            offset: from,
            size: pos - from,
            sha256: hex::encode(got.finalize()),
        },
    ))
}
