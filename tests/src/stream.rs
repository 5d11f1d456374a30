//! A deterministic byte stream for throughput tests (`stream` bin,
//! `hol_e2e.rs`): a fixed pseudo-random block of [`BLOCK`] bytes repeated,
//! a length no chunk size divides, so a lost, repeated or reordered chunk
//! changes the stream's SHA-256.

use sha2::{Digest, Sha256};

/// The length of the repeated block (a prime).
pub const BLOCK: usize = 1_000_003;

/// The repeated block: xorshift64* output from a fixed seed.
pub fn block() -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(BLOCK + 8);
    while out.len() < BLOCK {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(BLOCK);
    out
}

/// Calls `f` with the stream's first `len` bytes, in slices of the block.
pub fn for_each_slice(block: &[u8], len: u64, mut f: impl FnMut(&[u8])) {
    let mut left = len;
    let mut at = 0usize;
    while left > 0 {
        let n = (block.len() - at).min(usize::try_from(left).unwrap_or(usize::MAX));
        f(&block[at..at + n]);
        left -= n as u64;
        at = (at + n) % block.len();
    }
}

/// The hex SHA-256 of the stream's first `len` bytes.
pub fn sha256(len: u64) -> String {
    let block = block();
    let mut hash = Sha256::new();
    for_each_slice(&block, len, |s| hash.update(s));
    hex::encode(hash.finalize())
}
