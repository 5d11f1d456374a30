//! Recorded terminal sessions without an SSH target: a data dir's server
//! (its recorder registered at open) runs a session through the core API
//! (`SessionEngine::approve` + `run`) with [`Ticker`], a protocol that
//! emits the terminal frames an SSH proxy would.
//!
//! `record-driver` (src/bin) runs the same in a process of its own, so a
//! test can `kill -9` it mid-recording.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use cpam_core::admin::Admin;
use cpam_core::audit::StoreAuditSink;
use cpam_core::model::{ServiceKind, Session, SessionProtocol, Timestamp};
use cpam_core::server::Server;
use cpam_core::session::{LiveSession, Originator, Protocol, TerminalFrame, Upstream};
use cpam_core::tunnel::dialer::{Connection, DirectDialer};

/// `asciinema cat FILE` (Debian's `asciinema`): what a player prints. It
/// wants a terminal, so it runs under `script` (util-linux) on a pty, with
/// its config under `dir`.
pub fn asciinema_cat(file: &std::path::Path, dir: &std::path::Path) -> anyhow::Result<String> {
    let file = file.to_str().context("a UTF-8 path")?;
    anyhow::ensure!(!file.contains('\''), "a path without quotes");
    let mut c = std::process::Command::new("script");
    c.args(["-qec", &format!("asciinema cat '{file}'"), "/dev/null"])
        .env("HOME", dir)
        .env("ASCIINEMA_CONFIG_HOME", dir.join("asciinema"));
    let out = crate::process::run("asciinema", c, dir, Duration::from_secs(60))
        .context("running asciinema (install the Debian package `asciinema`; tests/run.sh does)")?;
    Ok(out.ok("asciinema cat")?.stdout)
}

/// The text of output line `i`.
pub fn line(i: u64) -> String {
    format!("line {i:05} ✓ ticker")
}

/// Emits `lines` output lines (plus a resize after the first), one every
/// `interval`, then closes the channel; with `announce`, prints
/// `emitted N` on stdout (flushed) once line N was handed to the session.
#[derive(Debug, Clone)]
pub struct Ticker {
    pub lines: u64,
    pub interval: Duration,
    pub announce: bool,
}

#[async_trait]
impl Protocol for Ticker {
    fn kind(&self) -> SessionProtocol {
        SessionProtocol::Ssh
    }

    fn dials_itself(&self) -> bool {
        true
    }

    async fn run(
        &self,
        _user: Connection,
        _upstream: Upstream,
        live: &LiveSession,
    ) -> cpam_core::Result<()> {
        live.terminal(&TerminalFrame::Open {
            channel: 0,
            cols: 80,
            rows: 24,
            term: "xterm-256color".into(),
            command: None,
        });
        for i in 0..self.lines {
            let text = format!("{}\r\n", line(i));
            // A multi-byte character split between two frames.
            let bytes = text.into_bytes();
            let cut = bytes.iter().position(|b| *b == 0xe2).map_or(0, |p| p + 1);
            for part in [&bytes[..cut], &bytes[cut..]] {
                live.terminal(&TerminalFrame::Output {
                    channel: 0,
                    data: bytes::Bytes::copy_from_slice(part),
                });
            }
            if i == 0 {
                live.terminal(&TerminalFrame::Resize {
                    channel: 0,
                    cols: 100,
                    rows: 30,
                });
            }
            if self.announce {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "emitted {i}");
                let _ = out.flush();
            }
            tokio::select! {
                _ = live.cancel().cancelled() => break,
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
        live.terminal(&TerminalFrame::Close {
            channel: 0,
            exit_status: Some(0),
        });
        Ok(())
    }
}

/// Runs one session of `protocol` on `server` for user `vera` on
/// `acme/shell` (created on first use), returning its record once ended.
/// `started` sees the session id as soon as it runs.
pub async fn run_session(
    server: &Server,
    protocol: &dyn Protocol,
    started: impl FnOnce(&str),
) -> anyhow::Result<Session> {
    let store = server.store().clone();
    let admin = Admin::new(
        store.clone(),
        Arc::new(StoreAuditSink::new(store)),
        "recording-test",
    );
    let now = Timestamp::now();
    if admin.gatekeeper("gk").await.is_err() {
        admin.add_customer("acme").await?;
        admin
            .add_gatekeeper("acme", "gk", Duration::from_secs(3600))
            .await?;
        admin.add_user("vera", None, &[], &[]).await?;
        admin
            .add_service("acme", "shell", "127.0.0.1:22", ServiceKind::Custom)
            .await?;
        admin
            .add_grant("vera", "acme", "shell", now, None, None)
            .await?;
    }
    let mut gatekeeper = admin.gatekeeper("gk").await?;
    gatekeeper.public_key = Some("ssh-ed25519 AAAA".into());
    gatekeeper.registered_at = Some(now);
    let user = admin.user("vera").await?;
    let service = server
        .store()
        .service_by_name(&gatekeeper.customer_id, "shell")
        .await?
        .context("service shell")?;
    let engine = server.engine().clone();
    let approval = engine
        .approve(
            &user,
            None,
            &gatekeeper,
            &service,
            &Originator::new("127.0.0.1", 40000),
        )
        .await?;
    let mut events = engine.subscribe();
    let (user_end, _peer) = tokio::io::duplex(1024);
    let run = engine.run(
        approval,
        Box::new(Connection::stream(user_end)),
        Arc::new(DirectDialer),
        protocol,
    );
    let watch = async {
        while let Ok(e) = events.recv().await {
            if let cpam_core::events::EngineEvent::SessionStarted { session } = e {
                started(session.id.as_str());
                break;
            }
        }
        std::future::pending::<()>().await;
    };
    tokio::select! {
        ended = run => Ok(ended?),
        _ = watch => unreachable!("pending forever"),
    }
}
