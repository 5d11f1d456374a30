//! The console's transport limits against a real `cpam-server run`: HSTS
//! over HTTPS, and a deadline for a request's headers.

use std::io::{Read, Write};
use std::time::Duration;

use cpam_tests::web::{WebOptions, WebServer};

#[test]
fn the_console_asks_browsers_for_https_only_when_it_serves_https() -> anyhow::Result<()> {
    let web = WebServer::start(WebOptions::default())?;
    let r = web.client()?.send("GET", "/api/v1/me", None)?;
    assert_eq!(
        r.header("strict-transport-security").as_deref(),
        Some("max-age=31536000"),
        "{r:?}"
    );
    let plain = WebServer::start(WebOptions {
        insecure_http: true,
        ..WebOptions::default()
    })?;
    let r = plain.client()?.send("GET", "/api/v1/me", None)?;
    assert_eq!(r.header("strict-transport-security"), None, "{r:?}");
    Ok(())
}

#[test]
fn a_client_that_never_finishes_its_headers_is_closed() -> anyhow::Result<()> {
    let web = WebServer::start(WebOptions {
        insecure_http: true,
        ..WebOptions::default()
    })?;
    let addr = web
        .url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("url {}", web.url))?;
    let mut s = std::net::TcpStream::connect(addr)?;
    s.write_all(b"GET /api/v1/me HTTP/1.1\r\nHost: console\r\n")?;
    // The deadline is 10 s; a connection still open after 60 s is the bug.
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut got = Vec::new();
    let read = s.read_to_end(&mut got);
    assert!(
        read.is_ok(),
        "the console kept a connection with unfinished headers open: {read:?}\n{}",
        web.logs()
    );
    Ok(())
}
