//! `GET /api/v1/terminal?service=ID`: the browser terminal, a WebSocket
//! from the console's own origin for a user who may connect
//! (`USE_CONNECTION_MANAGER`) to a privileged SSH service in scope. The
//! page's first message is text `{"master_password":"...","cols":C,"rows":R}`;
//! then binary frames are typed input and text `{"resize":[C,R]}` resizes.
//! The server sends the terminal's output as binary frames and, at the
//! end, why it ended (a refusal in words, e.g. a wrong master password) as
//! a text `{"end":"..."}`. The session itself runs through the SSH proxy
//! ([`crate::proxy::ssh::BrowserTerminal`]): recorded, watchable,
//! terminable and audited like any other.

use axum::extract::ws::{
    Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use std::net::SocketAddr;

use axum::extract::rejection::ExtensionRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;

use super::watch::same_origin;
use crate::model::ServiceId;
use crate::proxy::ssh::{TerminalInput, TerminalRequest};
use crate::secret::Secret;
use crate::session::Originator;
use crate::web::AppState;
use crate::web::auth::Caller;
use crate::web::error::{ApiError, ApiResult};

#[derive(Deserialize)]
struct Start {
    master_password: String,
    #[serde(default)]
    cols: u16,
    #[serde(default)]
    rows: u16,
}

#[derive(Deserialize)]
struct Resize {
    resize: (u16, u16),
}

/// Service `id`, which the caller may open a console session to (the
/// browser terminal, the browser desktop): a vendor reaches a service
/// through a grant, not a membership of its customer, and either lets the
/// caller see it; anyone else gets a 404. A service of another kind than
/// `kind` (`what` names it) is refused.
pub(super) async fn openable_service(
    state: &AppState,
    caller: &Caller,
    id: &str,
    kind: crate::model::ServiceKind,
    what: &str,
) -> ApiResult<crate::model::Service> {
    let p = &caller.principal;
    let service = match state.store.service(&ServiceId(id.to_string())).await? {
        Some(s) if p.in_scope(&s.customer_id) => s,
        Some(s) if !state.store.grants_for(&p.user.id, &s.id).await?.is_empty() => s,
        _ => return Err(ApiError::not_found(format!("no service `{id}`"))),
    };
    if service.kind != kind {
        return Err(ApiError::invalid(format!(
            "service `{}` is not {what}",
            service.name
        )));
    }
    Ok(service)
}

pub async fn terminal(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    peer: Result<ConnectInfo<SocketAddr>, ExtensionRejection>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let service = openable_service(
        &state,
        &caller,
        &id,
        crate::model::ServiceKind::Ssh,
        "a privileged SSH service",
    )
    .await?;
    let terminals = state.terminal().ok_or_else(|| {
        ApiError::from(crate::Error::conflict(
            "this server runs no browser terminals",
        ))
    })?;
    if !same_origin(&headers) {
        return Err(ApiError::denied(
            "the browser terminal is opened only from the console's own pages (Origin)",
        ));
    }
    let ws = ws.map_err(|e| ApiError::invalid(format!("a WebSocket upgrade is required: {e}")))?;
    let user = caller.user().clone();
    let (ip, port) = peer.map_or(("0.0.0.0".to_string(), 0), |p| {
        (p.0.ip().to_string(), u32::from(p.0.port()))
    });
    Ok(ws.on_upgrade(move |mut socket| async move {
        let Some(start) = first_message(&mut socket).await else {
            let _ = end(&mut socket, "the page sent no master password").await;
            return;
        };
        let req = TerminalRequest {
            user,
            service,
            originator: Originator::new(ip, port),
            master_password: Secret::new(start.master_password),
            cols: if start.cols == 0 { 80 } else { start.cols },
            rows: if start.rows == 0 { 24 } else { start.rows },
        };
        let (in_tx, in_rx) = mpsc::channel(64);
        let (out_tx, out_rx) = mpsc::channel(64);
        let run = tokio::spawn(async move { terminals.run(req, in_rx, out_tx).await });
        relay(&mut socket, in_tx, out_rx).await;
        let why = match run.await {
            Ok(Ok(())) => "the session ended".to_string(),
            Ok(Err(e)) => e.message().to_string(),
            Err(e) => format!("the terminal failed: {e}"),
        };
        let _ = end(&mut socket, &why).await;
    }))
}

async fn first_message(socket: &mut WebSocket) -> Option<Start> {
    while let Some(Ok(msg)) = socket.recv().await {
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).ok(),
            Message::Close(_) => return None,
            _ => {}
        }
    }
    None
}

async fn end(socket: &mut WebSocket, why: &str) -> Result<(), axum::Error> {
    socket
        .send(Message::Text(json!({ "end": why }).to_string().into()))
        .await?;
    socket.send(Message::Close(None)).await
}

/// Page input to the terminal, terminal output to the page, until either
/// side ends.
async fn relay(
    socket: &mut WebSocket,
    input: mpsc::Sender<TerminalInput>,
    mut output: mpsc::Receiver<bytes::Bytes>,
) {
    loop {
        tokio::select! {
            out = output.recv() => match out {
                Some(data) => {
                    if socket.send(Message::Binary(data)).await.is_err() {
                        return;
                    }
                }
                None => return,
            },
            msg = socket.recv() => {
                let typed = match msg {
                    Some(Ok(Message::Binary(data))) => TerminalInput::Data(data),
                    Some(Ok(Message::Text(t))) => match serde_json::from_str::<Resize>(t.as_str()) {
                        Ok(Resize { resize: (c, r) }) => TerminalInput::Resize(c, r),
                        Err(_) => continue,
                    },
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                    Some(Ok(_)) => continue,
                };
                if input.send(typed).await.is_err() {
                    return;
                }
            }
        }
    }
}
