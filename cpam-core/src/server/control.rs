//! The control socket through which admin commands (`cpam-server sessions
//! terminate`, grant revocations) reach a running server.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::data_dir::set_mode;
use crate::error::{Error, ErrorKind, Result};
use crate::events::Revocation;
use crate::model::SessionId;
use crate::session::SessionEngine;

/// A request on the control socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ControlRequest {
    /// End a live session (`terminated_by`).
    Terminate {
        session: SessionId,
        by: String,
        reason: Option<String>,
    },
    /// Re-decide live sessions after a grant or user changed.
    Recheck,
    /// Take access away at once: end the live sessions and close the SSH
    /// connections the revocation covers ([`SessionEngine::revoke`]).
    Revoke { revocation: Revocation },
    /// List live sessions with current byte counts.
    Live,
}

/// Serves the control socket for `engine` until the task is dropped.
pub async fn serve_control(path: &Path, engine: Arc<SessionEngine>) -> Result<()> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)
        .map_err(|e| Error::from(e).context(&format!("cannot listen on {}", path.display())))?;
    set_mode(path, 0o600)?;
    loop {
        let (stream, _) = listener.accept().await?;
        let engine = engine.clone();
        tokio::spawn(async move {
            if let Err(error) = control_connection(stream, engine).await {
                tracing::debug!(%error, "control connection failed");
            }
        });
    }
}

async fn control_connection(stream: UnixStream, engine: Arc<SessionEngine>) -> Result<()> {
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    while let Some(line) = lines.next_line().await? {
        let answer = match serde_json::from_str::<ControlRequest>(&line) {
            Err(e) => json!({ "error": format!("malformed request: {e}") }),
            Ok(ControlRequest::Terminate {
                session,
                by,
                reason,
            }) => {
                // Another node may hold it: the row says which.
                let ok = match engine.store().session(&session).await {
                    Ok(Some(row)) => engine.terminate_anywhere(&row, &by, reason.as_deref()),
                    _ => engine.terminate(&session, &by, reason.as_deref()),
                };
                json!({ "ok": ok })
            }
            Ok(ControlRequest::Recheck) => match engine.recheck().await {
                Ok(n) => json!({ "ok": true, "ended": n }),
                Err(e) => json!({ "error": e.to_string() }),
            },
            Ok(ControlRequest::Revoke { revocation }) => {
                json!({ "ok": true, "ended": engine.revoke(&revocation) })
            }
            Ok(ControlRequest::Live) => json!({ "ok": true, "sessions": engine.live() }),
        };
        w.write_all(format!("{answer}\n").as_bytes()).await?;
    }
    Ok(())
}

/// Sends one request to the running server behind `path`.
pub async fn control(path: &Path, request: &ControlRequest) -> Result<serde_json::Value> {
    let stream = UnixStream::connect(path).await.map_err(|e| {
        Error::new(
            ErrorKind::TunnelUnavailable,
            format!("the server is not running ({}: {e})", path.display()),
        )
    })?;
    let (r, mut w) = stream.into_split();
    let line = serde_json::to_string(request).map_err(|e| Error::internal(e.to_string()))?;
    w.write_all(format!("{line}\n").as_bytes()).await?;
    let answer = BufReader::new(r)
        .lines()
        .next_line()
        .await?
        .ok_or_else(|| Error::new(ErrorKind::Protocol, "the server closed the control socket"))?;
    let v: serde_json::Value = serde_json::from_str(&answer).map_err(|e| {
        Error::new(
            ErrorKind::Protocol,
            format!("malformed control answer: {e}"),
        )
    })?;
    if let Some(err) = v.get("error") {
        return Err(Error::internal(
            err.as_str().unwrap_or("control request failed").to_string(),
        ));
    }
    Ok(v)
}
