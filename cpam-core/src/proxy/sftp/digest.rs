//! The SHA-256 of the bytes that crossed for one file, in offset order.

use std::collections::BTreeMap;

use bytes::Bytes;
use sha2::{Digest as _, Sha256};

/// How many bytes may wait for an earlier offset before the hash gives up
/// on order (pipelined reads and writes arrive a little out of order).
const REORDER: usize = 8 * 1024 * 1024;

/// Bytes moved for one file and their hash, taken in offset order from
/// the first offset seen; when the bytes do not form one run (a seek, a
/// rewrite, a gap) the hash covers them in the order they moved and
/// `non_sequential` says so.
#[derive(Debug, Default)]
pub struct Digest {
    hasher: Sha256,
    first: Option<u64>,
    next: u64,
    bytes: u64,
    non_sequential: bool,
    waiting: BTreeMap<u64, Bytes>,
    waiting_bytes: usize,
}

impl Digest {
    /// `data` moved at `offset`.
    pub fn feed(&mut self, offset: u64, data: Bytes) {
        if data.is_empty() {
            return;
        }
        self.bytes += data.len() as u64;
        if self.first.is_none() {
            self.first = Some(offset);
            self.next = offset;
        }
        if self.non_sequential {
            self.hasher.update(&data);
            return;
        }
        if offset == self.next {
            self.take(data);
            while let Some(d) = self.waiting.remove(&self.next) {
                self.waiting_bytes -= d.len();
                self.take(d);
            }
        } else if offset > self.next
            && self.waiting_bytes + data.len() <= REORDER
            && !self.waiting.contains_key(&offset)
        {
            self.waiting_bytes += data.len();
            self.waiting.insert(offset, data);
        } else {
            self.give_up_order();
            self.hasher.update(&data);
        }
    }

    fn take(&mut self, data: Bytes) {
        self.next += data.len() as u64;
        self.hasher.update(&data);
    }

    fn give_up_order(&mut self) {
        self.non_sequential = true;
        for (_, d) in std::mem::take(&mut self.waiting) {
            self.hasher.update(&d);
        }
        self.waiting_bytes = 0;
    }

    /// Bytes moved so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The first offset that moved.
    pub fn first_offset(&self) -> Option<u64> {
        self.first
    }

    /// The hash (hex) and whether the bytes were not one run.
    pub fn finish(&mut self) -> (String, bool) {
        if !self.waiting.is_empty() {
            self.give_up_order();
        }
        let hash = hex::encode(self.hasher.clone().finalize());
        (hash, self.non_sequential)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    #[test]
    fn in_order_and_slightly_reordered_chunks_hash_like_the_file() {
        let mut d = Digest::default();
        d.feed(0, Bytes::from_static(b"hello "));
        d.feed(11, Bytes::from_static(b"!"));
        d.feed(6, Bytes::from_static(b"world"));
        assert_eq!(d.finish(), (sha(b"hello world!"), false));
        assert_eq!(d.bytes(), 12);
    }

    #[test]
    fn a_resumed_transfer_hashes_from_its_first_offset() {
        let mut d = Digest::default();
        d.feed(1 << 33, Bytes::from_static(b"tail"));
        assert_eq!(d.finish(), (sha(b"tail"), false));
        assert_eq!(d.first_offset(), Some(1 << 33));
    }

    #[test]
    fn a_rewrite_or_a_gap_is_flagged() {
        let mut d = Digest::default();
        d.feed(0, Bytes::from_static(b"abc"));
        d.feed(0, Bytes::from_static(b"xyz"));
        assert_eq!(d.finish(), (sha(b"abcxyz"), true));
        let mut d = Digest::default();
        d.feed(0, Bytes::from_static(b"abc"));
        d.feed(10, Bytes::from_static(b"xyz"));
        assert_eq!(d.finish(), (sha(b"abcxyz"), true));
    }
}
