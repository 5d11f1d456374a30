//! [`WatchFrame`]s as bytes, for a watcher on another node of the cluster
//! (the node running the session sends them over the peer link).
//!
//! Each frame is a tag byte, a big-endian `u32` length and that many bytes
//! of body: `0` snapshot (`cols`, `rows` as `u16`s, then the screen), `1`
//! output, `2` resize (`cols`, `rows`), `3` desktop (`width`, `height`,
//! then the PNG), `4` tile (`x`, `y`, then the PNG), `5` end (UTF-8 reason).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::WatchFrame;
use crate::error::{Error, Result};

/// The largest frame body accepted (a whole desktop's PNG fits).
pub const MAX_FRAME: usize = 32 << 20;

const HEADER: usize = 5;

fn pair(a: u16, b: u16, rest: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + rest.len());
    v.extend_from_slice(&a.to_be_bytes());
    v.extend_from_slice(&b.to_be_bytes());
    v.extend_from_slice(rest);
    v
}

/// `frame` as tag, length and body.
pub fn encode(frame: &WatchFrame) -> Bytes {
    let (tag, body): (u8, Vec<u8>) = match frame {
        WatchFrame::Snapshot { cols, rows, data } => (0, pair(*cols, *rows, data)),
        WatchFrame::Output(data) => (1, data.to_vec()),
        WatchFrame::Resize { cols, rows } => (2, pair(*cols, *rows, &[])),
        WatchFrame::Desktop { width, height, png } => (3, pair(*width, *height, png)),
        WatchFrame::Tile { x, y, png } => (4, pair(*x, *y, png)),
        WatchFrame::End(reason) => (5, reason.as_bytes().to_vec()),
    };
    let mut out = BytesMut::with_capacity(HEADER + body.len());
    out.put_u8(tag);
    out.put_u32(u32::try_from(body.len()).unwrap_or(u32::MAX));
    out.put_slice(&body);
    out.freeze()
}

/// Cuts frames out of the bytes as they arrive.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: BytesMut,
}

impl Decoder {
    /// Adds received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole frame, `None` until one has arrived, or an error
    /// naming what is wrong with it.
    pub fn next_frame(&mut self) -> Result<Option<WatchFrame>> {
        if self.buf.len() < HEADER {
            return Ok(None);
        }
        let tag = self.buf[0];
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > MAX_FRAME {
            return Err(Error::new(
                crate::ErrorKind::Protocol,
                format!("live view frame of {len} bytes is larger than {MAX_FRAME}"),
            ));
        }
        if self.buf.len() < HEADER + len {
            return Ok(None);
        }
        self.buf.advance(HEADER);
        let mut body = self.buf.split_to(len).freeze();
        let short = || {
            Error::new(
                crate::ErrorKind::Protocol,
                format!("live view frame (tag {tag}) of {len} bytes is too short"),
            )
        };
        let two = |body: &mut Bytes| -> Result<(u16, u16)> {
            if body.len() < 4 {
                return Err(short());
            }
            Ok((body.get_u16(), body.get_u16()))
        };
        Ok(Some(match tag {
            0 => {
                let (cols, rows) = two(&mut body)?;
                WatchFrame::Snapshot {
                    cols,
                    rows,
                    data: body.to_vec(),
                }
            }
            1 => WatchFrame::Output(body),
            2 => {
                let (cols, rows) = two(&mut body)?;
                WatchFrame::Resize { cols, rows }
            }
            3 => {
                let (width, height) = two(&mut body)?;
                WatchFrame::Desktop {
                    width,
                    height,
                    png: body,
                }
            }
            4 => {
                let (x, y) = two(&mut body)?;
                WatchFrame::Tile { x, y, png: body }
            }
            5 => WatchFrame::End(String::from_utf8_lossy(&body).into_owned()),
            other => {
                return Err(Error::new(
                    crate::ErrorKind::Protocol,
                    format!("unknown live view frame tag {other}"),
                ));
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_frame_survives_the_wire_even_cut_into_single_bytes() {
        let frames = vec![
            WatchFrame::Snapshot {
                cols: 80,
                rows: 24,
                data: b"\x1b[2Jhello".to_vec(),
            },
            WatchFrame::Output(Bytes::from_static(b"world")),
            WatchFrame::Resize {
                cols: 120,
                rows: 40,
            },
            WatchFrame::Desktop {
                width: 1024,
                height: 768,
                png: Bytes::from_static(b"\x89PNG..."),
            },
            WatchFrame::Tile {
                x: 3,
                y: 4,
                png: Bytes::from_static(b"\x89PNG."),
            },
            WatchFrame::End("terminated: by admin".into()),
        ];
        let wire: Vec<u8> = frames.iter().flat_map(|f| encode(f).to_vec()).collect();
        let mut d = Decoder::default();
        let mut got = Vec::new();
        for b in wire {
            d.push(&[b]);
            while let Some(f) = d.next_frame().expect("a well-formed frame") {
                got.push(f);
            }
        }
        assert_eq!(got, frames);
    }

    #[test]
    fn bad_frames_are_refused_naming_what_is_wrong() {
        let mut d = Decoder::default();
        d.push(&[9, 0, 0, 0, 0]);
        let e = d.next_frame().expect_err("unknown tag");
        assert!(e.message().contains("unknown live view frame tag 9"), "{e}");
        let mut d = Decoder::default();
        d.push(&[2, 0, 0, 0, 1, 7]);
        let e = d.next_frame().expect_err("short resize");
        assert!(e.message().contains("too short"), "{e}");
        let mut d = Decoder::default();
        d.push(&[1, 0xff, 0xff, 0xff, 0xff]);
        let e = d.next_frame().expect_err("huge");
        assert!(e.message().contains("larger than"), "{e}");
    }
}
