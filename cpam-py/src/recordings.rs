//! A server's session recordings: listed, read event by event, searched and
//! verified against their signed manifests, and an RDP recording's desktop
//! at a time as a PNG. Every function takes the server's data dir; each has
//! an `_async` twin for asyncio.

use std::path::Path;

use cpam_core::model::SessionId;
use cpam_core::record::{RecordingFilter, RecordingId, RecordingStore, rdp_frame_png, rdp_input};
use cpam_core::server::DataDir;
use cpam_core::{Error, Result};
use pyo3::prelude::*;

use crate::rt::{Bytes, Json, awaitable, wait};

fn store(data_dir: &str) -> Result<impl RecordingStore> {
    DataDir::open(Path::new(data_dir))?.recordings()
}

fn filter(session: Option<String>) -> RecordingFilter {
    RecordingFilter {
        session: session.map(SessionId),
        ..RecordingFilter::default()
    }
}

async fn list(data_dir: String, session: Option<String>) -> Result<Json> {
    tokio::task::spawn_blocking(move || Json::of(&store(&data_dir)?.list(&filter(session))?))
        .await
        .map_err(|e| Error::new(cpam_core::ErrorKind::Internal, e.to_string()))?
}

async fn read(data_dir: String, id: String) -> Result<Json> {
    tokio::task::spawn_blocking(move || {
        Ok(Json(cpam_core::record::read_recording(
            &store(&data_dir)?,
            &RecordingId::parse(&id)?,
        )?))
    })
    .await
    .map_err(|e| Error::new(cpam_core::ErrorKind::Internal, e.to_string()))?
}

async fn frame(data_dir: String, id: String, at: f64) -> Result<Bytes> {
    tokio::task::spawn_blocking(move || {
        Ok(Bytes(rdp_frame_png(
            &store(&data_dir)?,
            &RecordingId::parse(&id)?,
            at,
        )?))
    })
    .await
    .map_err(|e| Error::new(cpam_core::ErrorKind::Internal, e.to_string()))?
}

async fn input(data_dir: String, id: String) -> Result<Json> {
    tokio::task::spawn_blocking(move || {
        Json::of(&rdp_input(&store(&data_dir)?, &RecordingId::parse(&id)?)?)
    })
    .await
    .map_err(|e| Error::new(cpam_core::ErrorKind::Internal, e.to_string()))?
}

async fn verify(data_dir: String, id: String) -> Result<Json> {
    tokio::task::spawn_blocking(move || {
        Json::of(&store(&data_dir)?.verify(&RecordingId::parse(&id)?)?)
    })
    .await
    .map_err(|e| Error::new(cpam_core::ErrorKind::Internal, e.to_string()))?
}

async fn search(data_dir: String, text: String, session: Option<String>) -> Result<Json> {
    tokio::task::spawn_blocking(move || {
        Json::of(&store(&data_dir)?.search(&text, &filter(session))?)
    })
    .await
    .map_err(|e| Error::new(cpam_core::ErrorKind::Internal, e.to_string()))?
}

/// The recordings of a server's data dir (of one `session` if given), as
/// dicts: `id`, `session_id`, `channel`, `started_at`, `ended_at`, `size`,
/// `state` (`complete`, `incomplete`, or None while being written).
#[pyfunction]
#[pyo3(signature = (data_dir, session = None))]
pub fn list_recordings(
    py: Python<'_>,
    data_dir: String,
    session: Option<String>,
) -> PyResult<Json> {
    wait(py, list(data_dir, session))
}

/// `list_recordings()` for asyncio.
#[pyfunction]
#[pyo3(signature = (data_dir, session = None))]
pub fn list_recordings_async(
    py: Python<'_>,
    data_dir: String,
    session: Option<String>,
) -> PyResult<Bound<'_, PyAny>> {
    awaitable(py, list(data_dir, session))
}

/// One recording: `{"header": {...asciicast v2 header}, "events": [{"t",
/// "kind", "data"}, ...], "desktop": None}` with `kind` one of `output`,
/// `input`, `resize` (`COLSxROWS`), `marker`. An RDP recording has no
/// events: its `desktop` is `{"width", "height", "duration", "pdus"}`.
#[pyfunction]
pub fn read_recording(py: Python<'_>, data_dir: String, id: String) -> PyResult<Json> {
    wait(py, read(data_dir, id))
}

/// `read_recording()` for asyncio.
#[pyfunction]
pub fn read_recording_async(
    py: Python<'_>,
    data_dir: String,
    id: String,
) -> PyResult<Bound<'_, PyAny>> {
    awaitable(py, read(data_dir, id))
}

/// The desktop of RDP recording `id` at `at` seconds from its start, as PNG
/// bytes. Raises `cpam.NotFoundError` for an unknown recording and
/// `cpam.InvalidArgumentError` for a terminal recording or a time outside
/// it (the message gives its length).
#[pyfunction]
pub fn recording_frame(py: Python<'_>, data_dir: String, id: String, at: f64) -> PyResult<Bytes> {
    wait(py, frame(data_dir, id, at))
}

/// `recording_frame()` for asyncio.
#[pyfunction]
pub fn recording_frame_async(
    py: Python<'_>,
    data_dir: String,
    id: String,
    at: f64,
) -> PyResult<Bound<'_, PyAny>> {
    awaitable(py, frame(data_dir, id, at))
}

/// The keys and mouse of RDP recording `id`'s client, decoded from its
/// input PDUs: `{"events": [{"t", "type", ...}], "pdus", "skipped",
/// "last_error"}` (docs/rdp.md). Raises `cpam.NotFoundError` for an
/// unknown recording and `cpam.InvalidArgumentError` for a terminal one.
#[pyfunction]
pub fn recording_input(py: Python<'_>, data_dir: String, id: String) -> PyResult<Json> {
    wait(py, input(data_dir, id))
}

/// `recording_input()` for asyncio.
#[pyfunction]
pub fn recording_input_async(
    py: Python<'_>,
    data_dir: String,
    id: String,
) -> PyResult<Bound<'_, PyAny>> {
    awaitable(py, input(data_dir, id))
}

/// Checks a recording's file, chunk chain and signed manifest; raises
/// `cpam.Error` (kind `recording`) naming what was edited, removed or
/// appended.
#[pyfunction]
pub fn verify_recording(py: Python<'_>, data_dir: String, id: String) -> PyResult<Json> {
    wait(py, verify(data_dir, id))
}

/// `verify_recording()` for asyncio.
#[pyfunction]
pub fn verify_recording_async(
    py: Python<'_>,
    data_dir: String,
    id: String,
) -> PyResult<Bound<'_, PyAny>> {
    awaitable(py, verify(data_dir, id))
}

/// The recordings whose output contains `text`, with the times it appeared.
#[pyfunction]
#[pyo3(signature = (data_dir, text, session = None))]
pub fn search_recordings(
    py: Python<'_>,
    data_dir: String,
    text: String,
    session: Option<String>,
) -> PyResult<Json> {
    wait(py, search(data_dir, text, session))
}

/// `search_recordings()` for asyncio.
#[pyfunction]
#[pyo3(signature = (data_dir, text, session = None))]
pub fn search_recordings_async(
    py: Python<'_>,
    data_dir: String,
    text: String,
    session: Option<String>,
) -> PyResult<Bound<'_, PyAny>> {
    awaitable(py, search(data_dir, text, session))
}
