//! `GET /api/v1/sessions/{id}/watch`: a live terminal or desktop session over a
//! WebSocket, for a caller with `MONITOR_SESSIONS` on the session's
//! customer (anyone else gets the 404 of a missing session). A session
//! another node of the cluster runs is watched through that node, over the
//! peer link ([`PeerDialer::watch`](crate::tunnel::PeerDialer::watch)). The socket
//! must come from the console's own origin (a page elsewhere cannot ride
//! the session cookie). Every start and stop is audited
//! (`session.watch.start` / `session.watch.stop`, actor = the watcher).
//!
//! Frames sent for a terminal: a text `{"resize":[cols,rows]}` then the
//! screen as binary (again after falling behind), then the output as
//! binary, resizes as text, and at the end a text `{"end":"<why>"}` before
//! the close. What the user types is never sent.
//!
//! For a remote desktop (RDP): a text `{"desktop":[width,height]}`, then
//! binary images, each 4 bytes (its x and y, big-endian `u16`s) and a PNG:
//! first the whole desktop (again after falling behind), then each region
//! that changed; the same `{"end":"<why>"}` at the end.

use axum::extract::ws::{
    Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use serde_json::json;

use crate::model::{Permission, SessionId};
use crate::record::{Watch, WatchFrame};
use crate::server::audit_watch;
use crate::tunnel::peer::RemoteWatch;
use crate::web::AppState;
use crate::web::auth::Caller;
use crate::web::error::{ApiError, ApiResult};

/// Whether the request's `Origin` is the console's own: its scheme and
/// the `Host` the request was sent to. A missing `Origin` is not.
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    let get = |h: header::HeaderName| headers.get(h).and_then(|v| v.to_str().ok());
    let (Some(origin), Some(host)) = (get(header::ORIGIN), get(header::HOST)) else {
        return false;
    };
    origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .is_some_and(|authority| authority.eq_ignore_ascii_case(host))
}

pub async fn watch(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let p = &caller.principal;
    let session = match state.store.session(&SessionId(id.clone())).await? {
        Some(s) if p.has(Permission::MONITOR_SESSIONS) && p.in_scope(&s.customer_id) => s,
        _ => return Err(ApiError::not_found(format!("no session `{id}`"))),
    };
    let not_live = || {
        ApiError::from(crate::Error::conflict(format!(
            "session `{id}` has no live terminal or desktop on this server"
        )))
    };
    // Here, or on the node that runs it (a live session of another node).
    let local = state.live().filter(|hub| hub.has_terminal(&session.id));
    let elsewhere = session
        .node_id
        .clone()
        .filter(|n| session.ended_at.is_none() && Some(n) != state.engine.node().as_ref());
    if local.is_none() && elsewhere.is_none() {
        return Err(not_live());
    }
    if !same_origin(&headers) {
        return Err(ApiError::denied(
            "a live view is opened only from the console's own pages (Origin)",
        ));
    }
    let ws = ws.map_err(|e| ApiError::invalid(format!("a WebSocket upgrade is required: {e}")))?;
    let watch = match (local, elsewhere, state.peers()) {
        (Some(hub), _, _) => Source::Here(hub.watch(&session.id).ok_or_else(not_live)?),
        (None, Some(node), Some(peers)) => Source::Node(peers.watch(&node, &session.id).await?),
        _ => return Err(not_live()),
    };
    let actor = caller.user().name.clone();
    audit_watch(&state.engine, &actor, &session, true).await;
    Ok(ws.on_upgrade(move |socket| async move {
        relay(socket, watch).await;
        audit_watch(&state.engine, &actor, &session, false).await;
    }))
}

fn resize(cols: u16, rows: u16) -> Message {
    Message::Text(json!({ "resize": [cols, rows] }).to_string().into())
}

/// A desktop image at (`x`, `y`): the position, then the PNG.
pub(crate) fn image(x: u16, y: u16, png: &[u8]) -> Message {
    let mut b = Vec::with_capacity(png.len() + 4);
    b.extend_from_slice(&x.to_be_bytes());
    b.extend_from_slice(&y.to_be_bytes());
    b.extend_from_slice(png);
    Message::Binary(b.into())
}

/// Where a live view comes from: this node's live hub, or the node that
/// runs the session.
enum Source {
    Here(Watch),
    Node(RemoteWatch),
}

impl Source {
    async fn next(&mut self) -> Option<WatchFrame> {
        match self {
            Source::Here(w) => w.next().await,
            Source::Node(w) => w.next().await,
        }
    }
}

/// Sends the watch's frames until the session ends or the watcher leaves.
async fn relay(mut socket: WebSocket, mut watch: Source) {
    loop {
        tokio::select! {
            frame = watch.next() => {
                let (messages, last) = match frame {
                    Some(WatchFrame::Snapshot { cols, rows, data }) => {
                        (vec![resize(cols, rows), Message::Binary(data.into())], false)
                    }
                    Some(WatchFrame::Output(data)) => (vec![Message::Binary(data)], false),
                    Some(WatchFrame::Resize { cols, rows }) => (vec![resize(cols, rows)], false),
                    Some(WatchFrame::Desktop { width, height, png }) => (
                        vec![
                            Message::Text(json!({ "desktop": [width, height] }).to_string().into()),
                            image(0, 0, &png),
                        ],
                        false,
                    ),
                    Some(WatchFrame::Tile { x, y, png }) => (vec![image(x, y, &png)], false),
                    Some(WatchFrame::End(reason)) => {
                        (vec![Message::Text(json!({ "end": reason }).to_string().into())], true)
                    }
                    None => (Vec::new(), true),
                };
                for m in messages {
                    if socket.send(m).await.is_err() {
                        return;
                    }
                }
                if last {
                    break;
                }
            }
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}
