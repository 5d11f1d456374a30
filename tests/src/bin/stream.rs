//! Both ends of a big deterministic stream (`cpam_tests::stream`), for the
//! head-of-line blocking test.
//!
//! `stream serve --listen ADDR`: every connection asks for N bytes with a
//! line `N\n` and gets the stream's first N bytes, then end of stream;
//! prints `stream listening <addr>`.
//!
//! `stream read --connect ADDR --bytes N [--rate MIB_PER_S]`: asks for N
//! bytes and reads to end of stream (no faster than the rate, if given),
//! printing
//! `progress <ms> <bytes>` every 100 ms while data comes, then `done
//! <bytes> <sha256>`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sha2::{Digest, Sha256};

fn arg(args: &[String], name: &str) -> anyhow::Result<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .with_context(|| format!("missing {name}"))
}

fn serve(args: &[String]) -> anyhow::Result<()> {
    let listener = TcpListener::bind(arg(args, "--listen")?)?;
    println!("stream listening {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let block = std::sync::Arc::new(cpam_tests::stream::block());
    for conn in listener.incoming() {
        let mut conn = conn?;
        let block = block.clone();
        std::thread::spawn(move || {
            let mut line = Vec::new();
            let mut byte = [0u8; 1];
            while conn.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
                line.push(byte[0]);
            }
            let Some(bytes) = std::str::from_utf8(&line)
                .ok()
                .and_then(|l| l.trim().parse::<u64>().ok())
            else {
                eprintln!("stream: bad request {line:?}");
                return;
            };
            let mut failed = None;
            cpam_tests::stream::for_each_slice(&block, bytes, |s| {
                if failed.is_none()
                    && let Err(e) = conn.write_all(s)
                {
                    failed = Some(e);
                }
            });
            match failed {
                Some(e) => eprintln!("stream write failed: {e}"),
                None => {
                    let _ = conn.shutdown(std::net::Shutdown::Write);
                    // Wait for the reader to close so nothing is cut short.
                    let _ = conn.read(&mut [0u8; 1]);
                }
            }
        });
    }
    Ok(())
}

fn read(args: &[String]) -> anyhow::Result<()> {
    let mut conn = TcpStream::connect(arg(args, "--connect")?)?;
    let bytes: u64 = arg(args, "--bytes")?.parse()?;
    conn.write_all(format!("{bytes}\n").as_bytes())?;
    let rate: Option<f64> = arg(args, "--rate").ok().map(|r| r.parse()).transpose()?;
    let started = Instant::now();
    let mut next = Duration::from_millis(100);
    let mut buf = vec![0u8; 256 * 1024];
    let mut total: u64 = 0;
    let mut hash = Sha256::new();
    let mut out = std::io::stdout();
    loop {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        total += n as u64;
        if let Some(rate) = rate {
            let due = Duration::from_secs_f64(total as f64 / (rate * f64::from(1 << 20)));
            std::thread::sleep(due.saturating_sub(started.elapsed()));
        }
        let now = started.elapsed();
        if now >= next {
            writeln!(out, "progress {} {total}", now.as_millis())?;
            out.flush()?;
            next = now + Duration::from_millis(100);
        }
    }
    writeln!(out, "done {total} {}", hex::encode(hash.finalize()))?;
    out.flush()?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => serve(&args),
        Some("read") => read(&args),
        _ => anyhow::bail!(
            "usage: stream serve --listen ADDR | stream read --connect ADDR --bytes N"
        ),
    }
}
