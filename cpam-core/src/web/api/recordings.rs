//! A session's recordings: list, download (`.cast`), verify, and for a
//! remote desktop recording the desktop at a moment (PNG) and the
//! client's keystroke and mouse track. Scoped like
//! the session they belong to: a foreign session's recording answers 404
//! exactly like a missing one.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::{Value, json};

use crate::access;
use crate::model::SessionId;
use crate::record::{RecordingFilter, RecordingId, RecordingInfo, RecordingStore};
use crate::web::AppState;
use crate::web::auth::Caller;
use crate::web::error::{ApiError, ApiResult};

use super::{opt_ts, ts};

/// A recording as the API shows it.
fn recording_json(r: &RecordingInfo) -> Value {
    json!({
        "id": r.id,
        "session_id": r.session_id,
        "channel": r.channel,
        "kind": r.kind.as_str(),
        "started_at": r.started_at.map(ts),
        "ended_at": opt_ts(r.ended_at),
        "size": r.size,
        "state": r.state.map_or("open", |s| s.as_str()),
    })
}

/// The store, or a 404 on a server that keeps no recordings.
fn store(state: &AppState) -> ApiResult<Arc<dyn RecordingStore>> {
    state
        .recordings()
        .ok_or_else(|| ApiError::not_found("this server keeps no recordings"))
}

/// Runs blocking store work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> crate::Result<T> + Send + 'static,
) -> ApiResult<T> {
    Ok(tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| crate::Error::internal(format!("recording task: {e}")))??)
}

/// The recording `id` if the caller sees its session (else 404, also for
/// an id that is not a recording id).
async fn scoped(state: &AppState, caller: &Caller, id: &str) -> ApiResult<RecordingId> {
    let id =
        RecordingId::parse(id).map_err(|_| ApiError::not_found(format!("no recording `{id}`")))?;
    access::session(state.store.as_ref(), &caller.principal, &id.session()).await?;
    Ok(id)
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let s = access::session(state.store.as_ref(), &caller.principal, &SessionId(id)).await?;
    let Some(store) = state.recordings() else {
        return Ok(Json(json!([])));
    };
    let list = blocking(move || store.list(&RecordingFilter::session(&s.id))).await?;
    Ok(Json(Value::Array(
        list.iter().map(recording_json).collect(),
    )))
}

pub async fn download(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = scoped(&state, &caller, &id).await?;
    let store = store(&state)?;
    let rid = id.clone();
    // Opened first, so a missing recording is a 404 and not a cut body.
    let reader = blocking(move || store.open(&rid)).await?;
    tracing::info!(user = %caller.user().name, recording = %id, "recording downloaded");
    Ok(super::audit::attachment(
        "application/x-asciicast",
        &format!("{id}.cast"),
        axum::body::Body::from_stream(stream(reader)),
    ))
}

/// The bytes of `reader`, read in 64 KiB pieces on a blocking thread as the
/// client takes them.
fn stream(
    mut reader: Box<dyn std::io::Read + Send>,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        loop {
            let mut buf = vec![0u8; 64 * 1024];
            let item = match reader.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    Ok(bytes::Bytes::from(buf))
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
            let last = item.is_err();
            if tx.blocking_send(item).is_err() || last {
                return;
            }
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

pub async fn verify(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = scoped(&state, &caller, &id).await?;
    let store = store(&state)?;
    let rid = id.clone();
    let result = tokio::task::spawn_blocking(move || store.verify(&rid))
        .await
        .map_err(|e| crate::Error::internal(format!("recording task: {e}")))?;
    Ok(Json(match result {
        Ok(v) => json!({
            "id": id, "ok": true, "state": v.state.as_str(), "size": v.size,
            "chunks": v.chunks, "signer": v.signer, "error": null,
        }),
        Err(e) if e.kind() == crate::ErrorKind::NotFound => return Err(e.into()),
        Err(e) => json!({
            "id": id, "ok": false, "state": null, "size": null,
            "chunks": null, "signer": null, "error": e.message(),
        }),
    }))
}

/// `?t=SECONDS` of a frame request.
#[derive(Debug, serde::Deserialize)]
pub struct FrameQuery {
    #[serde(default)]
    t: f64,
}

/// `GET /api/v1/recordings/{id}/frame?t=SECONDS`: the desktop of an RDP
/// recording at `t` seconds from its start (past the end: its last
/// frame), as a PNG; `x-recording-duration` gives the recording's length
/// in seconds, rounded up to the millisecond.
pub async fn frame(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<FrameQuery>,
) -> ApiResult<Response> {
    let id = scoped(&state, &caller, &id).await?;
    let store = store(&state)?;
    let t = if q.t.is_finite() { q.t.max(0.0) } else { 0.0 };
    let players = state.clone();
    let (duration, png) = blocking(move || desktop_at(&players, store.as_ref(), &id, t)).await?;
    let mut r = Response::new(axum::body::Body::from(png));
    let h = r.headers_mut();
    h.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("image/png"),
    );
    // Rounded up to the millisecond: asking for that time gives the last
    // frame, also when the last PDUs came within the last millisecond.
    let shown = (duration * 1000.0).ceil() / 1000.0;
    if let Ok(v) = axum::http::HeaderValue::from_str(&format!("{shown:.3}")) {
        h.insert("x-recording-duration", v);
    }
    Ok(r)
}

/// The recording's length and its desktop at `t` (past the end: the last
/// frame), from the players the console keeps.
#[cfg(feature = "rdp")]
fn desktop_at(
    state: &AppState,
    store: &dyn RecordingStore,
    id: &RecordingId,
    t: f64,
) -> crate::Result<(f64, Vec<u8>)> {
    let player = state.rdp_players().get(store, id)?;
    let duration = player.duration();
    Ok((duration, player.frame_at(t.min(duration)).to_png()?))
}

#[cfg(not(feature = "rdp"))]
fn desktop_at(
    _: &AppState,
    _: &dyn RecordingStore,
    id: &RecordingId,
    _: f64,
) -> crate::Result<(f64, Vec<u8>)> {
    Err(crate::Error::invalid(format!(
        "`{id}` cannot be shown: this server is built without RDP"
    )))
}

/// `GET /api/v1/recordings/{id}/input`: the keystroke and mouse track of
/// an RDP recording's client (`invalid_argument` for a terminal's).
pub async fn input(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = scoped(&state, &caller, &id).await?;
    let store = store(&state)?;
    blocking(move || input_track(store.as_ref(), &id))
        .await
        .map(Json)
}

#[cfg(feature = "rdp")]
fn input_track(store: &dyn RecordingStore, id: &RecordingId) -> crate::Result<Value> {
    let track = crate::record::rdp_input(store, id)?;
    serde_json::to_value(&track).map_err(|e| crate::Error::internal(format!("input track: {e}")))
}

#[cfg(not(feature = "rdp"))]
fn input_track(_: &dyn RecordingStore, id: &RecordingId) -> crate::Result<Value> {
    Err(crate::Error::invalid(format!(
        "the input of `{id}` cannot be read: this server is built without RDP"
    )))
}
