//! `GET /api/v1/services/{id}/desktop`: the browser desktop, a WebSocket
//! from the console's own origin for a user who may connect
//! (`USE_CONNECTION_MANAGER`) to a privileged RDP service (kind `rdp`) in
//! scope or granted to them. The page's first message is text
//! `{"master_password":"...","width":W,"height":H}`; then text input
//! events: `{"key":[SCANCODE,DOWN]}` (set-1 scancode, `0xE0xx` extended),
//! `{"pointer":[X,Y]}`, `{"button":[X,Y,B,DOWN]}` (B: 0 left, 1 middle, 2
//! right) and `{"wheel":[X,Y,DELTA]}`. The server sends what a watcher of
//! the session gets (`/api/v1/sessions/{id}/watch`): a text
//! `{"desktop":[width,height]}`, binary images (x and y as big-endian
//! `u16`s, then a PNG), and at the end why it ended (a refusal in words,
//! a terminate with its reason) as a text `{"end":"..."}`. The session
//! itself runs through the RDP proxy
//! ([`crate::proxy::rdp::BrowserDesktop`]): recorded, watchable,
//! terminable and audited like any other.

use std::net::SocketAddr;

use axum::extract::rejection::ExtensionRejection;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::HeaderMap;
use axum::response::Response;

use crate::web::AppState;
use crate::web::auth::Caller;
use crate::web::error::{ApiError, ApiResult};

#[cfg(not(feature = "rdp"))]
pub async fn desktop(
    State(_state): State<AppState>,
    _caller: Caller,
    Path(_id): Path<String>,
    _headers: HeaderMap,
    _peer: Result<ConnectInfo<SocketAddr>, ExtensionRejection>,
    _ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    Err(ApiError::from(crate::Error::conflict(
        "this server runs no browser desktops (built without RDP)",
    )))
}

#[cfg(feature = "rdp")]
pub use imp::desktop;

#[cfg(feature = "rdp")]
mod imp {
    use super::*;
    use axum::extract::ws::{Message, WebSocket};
    use serde::Deserialize;
    use serde_json::json;
    use tokio::sync::mpsc;

    use super::super::watch::{image, same_origin};
    use crate::proxy::rdp::{DesktopInput, DesktopRequest, MouseButton};
    use crate::record::WatchFrame;
    use crate::secret::Secret;
    use crate::session::Originator;

    #[derive(Deserialize)]
    struct Start {
        master_password: String,
        #[serde(default)]
        width: u16,
        #[serde(default)]
        height: u16,
    }

    /// One input event of the page.
    #[derive(Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Event {
        Key(u16, bool),
        Pointer(u16, u16),
        Button(u16, u16, u8, bool),
        Wheel(u16, u16, i16),
    }

    impl Event {
        fn input(self) -> Option<DesktopInput> {
            Some(match self {
                Event::Key(scancode, down) => DesktopInput::Key { scancode, down },
                Event::Pointer(x, y) => DesktopInput::Pointer { x, y },
                Event::Button(x, y, b, down) => DesktopInput::Button {
                    x,
                    y,
                    button: match b {
                        0 => MouseButton::Left,
                        1 => MouseButton::Middle,
                        2 => MouseButton::Right,
                        _ => return None,
                    },
                    down,
                },
                Event::Wheel(x, y, delta) => DesktopInput::Wheel { x, y, delta },
            })
        }
    }

    /// The desktop size asked of the target: the page's, within reason.
    fn size(asked: u16, default: u16) -> u16 {
        if asked == 0 {
            default
        } else {
            asked.clamp(200, 4096)
        }
    }

    pub async fn desktop(
        State(state): State<AppState>,
        caller: Caller,
        Path(id): Path<String>,
        headers: HeaderMap,
        peer: Result<ConnectInfo<SocketAddr>, ExtensionRejection>,
        ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    ) -> ApiResult<Response> {
        let service = super::super::terminal::openable_service(
            &state,
            &caller,
            &id,
            crate::model::ServiceKind::Rdp,
            "an RDP service",
        )
        .await?;
        let desktops = state.desktop().ok_or_else(|| {
            ApiError::from(crate::Error::conflict(
                "this server runs no browser desktops",
            ))
        })?;
        if !same_origin(&headers) {
            return Err(ApiError::denied(
                "the browser desktop is opened only from the console's own pages (Origin)",
            ));
        }
        let ws =
            ws.map_err(|e| ApiError::invalid(format!("a WebSocket upgrade is required: {e}")))?;
        let user = caller.user().clone();
        let (ip, port) = peer.map_or(("0.0.0.0".to_string(), 0), |p| {
            (p.0.ip().to_string(), u32::from(p.0.port()))
        });
        Ok(ws.on_upgrade(move |mut socket| async move {
            let Some(start) = first_message(&mut socket).await else {
                let _ = end(&mut socket, "the page sent no master password").await;
                return;
            };
            let req = DesktopRequest {
                user,
                service,
                originator: Originator::new(ip, port),
                master_password: Secret::new(start.master_password),
                width: size(start.width, 1024),
                height: size(start.height, 768),
            };
            let (in_tx, in_rx) = mpsc::channel(256);
            let (out_tx, out_rx) = mpsc::channel(64);
            let run = tokio::spawn(async move { desktops.run(req, in_rx, out_tx).await });
            let told = relay(&mut socket, in_tx, out_rx).await;
            let why = match run.await {
                Ok(Ok(())) => "the session ended".to_string(),
                Ok(Err(e)) => e.message().to_string(),
                Err(e) => format!("the desktop failed: {e}"),
            };
            if told {
                let _ = socket.send(Message::Close(None)).await;
            } else {
                let _ = end(&mut socket, &why).await;
            }
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

    /// The desktop to the page, the page's input to the desktop, until
    /// either side ends; whether the page was told the end.
    async fn relay(
        socket: &mut WebSocket,
        input: mpsc::Sender<DesktopInput>,
        mut frames: mpsc::Receiver<WatchFrame>,
    ) -> bool {
        loop {
            tokio::select! {
                frame = frames.recv() => {
                    let (messages, last) = match frame {
                        Some(WatchFrame::Desktop { width, height, png }) => (
                            vec![
                                Message::Text(json!({ "desktop": [width, height] }).to_string().into()),
                                image(0, 0, &png),
                            ],
                            false,
                        ),
                        Some(WatchFrame::Tile { x, y, png }) => (vec![image(x, y, &png)], false),
                        Some(WatchFrame::End(reason)) => (
                            vec![Message::Text(json!({ "end": reason }).to_string().into())],
                            true,
                        ),
                        // A desktop session has no terminal.
                        Some(_) => continue,
                        None => return false,
                    };
                    for m in messages {
                        if socket.send(m).await.is_err() {
                            return false;
                        }
                    }
                    if last {
                        return true;
                    }
                }
                msg = socket.recv() => match msg {
                    Some(Ok(Message::Text(t))) => {
                        let Some(event) = serde_json::from_str::<Event>(t.as_str())
                            .ok()
                            .and_then(Event::input)
                        else {
                            continue;
                        };
                        if input.send(event).await.is_err() {
                            return false;
                        }
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return false,
                    Some(Ok(_)) => {}
                },
            }
        }
    }
}
