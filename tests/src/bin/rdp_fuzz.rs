//! A misbehaving RDP peer, for the fault tests of the RDP proxy: it sends
//! garbage and oversized PDUs where the proxy expects RDP.
//!
//! `rdp-fuzz client ADDR ROUNDS SEED`: ROUNDS connections to ADDR (the
//! proxy's side a vendor's client uses), each sending one bad payload and
//! closing its side, then reading until the proxy closes (5 s at most);
//! prints `closed <n>`: how many the proxy closed.
//!
//! `rdp-fuzz target ADDR SEED`: a fake RDP target on ADDR answering every
//! connection (after its first bytes) with one bad payload and closing;
//! prints `listening`, then `served <n>` per connection, until killed.
//!
//! With `nla` after SEED, a client's payloads start with a valid X.224
//! connection request offering NLA (so the proxy goes on to its target).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// TPKT + X.224 Connection Request + RDP_NEG_REQ (TLS | HYBRID | HYBRID_EX).
const REQUEST: [u8; 19] = [
    0x03, 0x00, 0x00, 0x13, 0x0e, 0xe0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x08, 0x00, 0x0b,
    0x00, 0x00, 0x00,
];
/// TPKT + X.224 Connection Confirm + RDP_NEG_RSP (HYBRID selected).
const CONFIRM: [u8; 19] = [
    0x03, 0x00, 0x00, 0x13, 0x0e, 0xd0, 0x00, 0x00, 0x12, 0x34, 0x00, 0x02, 0x00, 0x08, 0x00, 0x02,
    0x00, 0x00, 0x00,
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    fn below(&mut self, n: u64) -> usize {
        usize::try_from(self.next() % n).unwrap_or(0)
    }
}

/// Bad payload number `i`; `valid` (a request or a confirm) comes first
/// in the kinds that start like RDP.
fn payload(i: usize, rng: &mut Rng, valid: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    match i % 9 {
        // Random bytes.
        0 => {
            let n = 1 + rng.below(4096);
            p = rng.bytes(n);
        }
        // A TPKT header announcing 65535 bytes, then a few and the end.
        1 => {
            p.extend_from_slice(&[0x03, 0x00, 0xff, 0xff]);
            p.extend(rng.bytes(100));
        }
        // A TPKT shorter than its own header.
        2 => p.extend_from_slice(&[0x03, 0x00, 0x00, 0x02, 0x0e, 0xe0]),
        // A fast-path PDU announcing 32 KiB.
        3 => {
            p.extend_from_slice(&[0x00, 0xff, 0xff]);
            p.extend(rng.bytes(64));
        }
        // A valid start, then garbage where TLS should begin.
        4 => {
            p.extend_from_slice(valid);
            let n = 1 + rng.below(2048);
            p.extend(rng.bytes(n));
        }
        // 256 KiB of random bytes (oversized).
        5 => p = rng.bytes(256 << 10),
        // An X.224 header whose length indicator exceeds the packet.
        6 => p.extend_from_slice(&[
            0x03, 0x00, 0x00, 0x0b, 0xfe, 0xe0, 0x00, 0x00, 0x00, 0x00, 0x00,
        ]),
        // A wrong TPKT version.
        7 => {
            p.extend_from_slice(&[0x04, 0x00, 0x00, 0x13]);
            p.extend(rng.bytes(15));
        }
        // A valid start, then a TLS record header announcing 16 MiB.
        _ => {
            p.extend_from_slice(valid);
            p.extend_from_slice(&[0x16, 0x03, 0x01, 0xff, 0xff, 0x01, 0xff, 0xff, 0xff]);
            p.extend(rng.bytes(32));
        }
    }
    p
}

/// Reads until the peer closes; whether it did within `limit`.
async fn drain(s: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = vec![0u8; 64 << 10];
    tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: rdp-fuzz client ADDR ROUNDS SEED [nla] | rdp-fuzz target ADDR SEED";
    let mode = args.get(1).map(String::as_str);
    let addr = args.get(2).ok_or_else(|| anyhow::anyhow!(usage))?.clone();
    match mode {
        Some("client") => {
            let rounds: usize = args.get(3).ok_or_else(|| anyhow::anyhow!(usage))?.parse()?;
            let seed: u64 = args.get(4).ok_or_else(|| anyhow::anyhow!(usage))?.parse()?;
            let nla = args.get(5).is_some_and(|a| a == "nla");
            let mut rng = Rng(seed | 1);
            let mut closed = 0;
            for i in 0..rounds {
                let mut s = TcpStream::connect(&addr).await?;
                let mut p = if nla { REQUEST.to_vec() } else { Vec::new() };
                p.extend(payload(i, &mut rng, &REQUEST));
                // The proxy may close before reading everything. The
                // client leaves then (mid-PDU for the truncated ones).
                let _ = s.write_all(&p).await;
                let _ = s.shutdown().await;
                if drain(&mut s, Duration::from_secs(5)).await {
                    closed += 1;
                }
            }
            println!("closed {closed}");
        }
        Some("target") => {
            let seed: u64 = args.get(3).ok_or_else(|| anyhow::anyhow!(usage))?.parse()?;
            let mut rng = Rng(seed | 1);
            let listener = TcpListener::bind(&addr).await?;
            println!("listening");
            let mut served = 0usize;
            loop {
                let (mut s, _) = listener.accept().await?;
                let mut first = vec![0u8; 4096];
                let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut first)).await;
                let p = payload(served, &mut rng, &CONFIRM);
                let _ = s.write_all(&p).await;
                let _ = s.shutdown().await;
                drain(&mut s, Duration::from_secs(2)).await;
                served += 1;
                println!("served {served}");
            }
        }
        _ => anyhow::bail!(usage),
    }
    Ok(())
}
