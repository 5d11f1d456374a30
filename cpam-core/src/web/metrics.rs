//! `/healthz`, `/readyz` and Prometheus `/metrics`.
//!
//! Counters count since the process started and are fed by the engine's
//! events ([`feed`]) and the login handler; gauges are read when scraped.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::events::EngineEvent;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::broadcast::error::RecvError;

use super::AppState;

/// Counters since start.
#[derive(Debug, Default)]
pub struct Metrics {
    sessions: AtomicU64,
    ended_up: AtomicU64,
    ended_down: AtomicU64,
    refusals: Mutex<BTreeMap<String, u64>>,
    logins: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    /// Counts a login attempt: `ok`, `failed` or `throttled`.
    pub fn login(&self, result: &'static str) {
        *self
            .logins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(result)
            .or_default() += 1;
    }

    fn observe(&self, event: &EngineEvent) {
        match event {
            EngineEvent::SessionStarted { .. } => {
                self.sessions.fetch_add(1, Ordering::Relaxed);
            }
            EngineEvent::SessionEnded { session } => {
                self.ended_up.fetch_add(session.bytes_up, Ordering::Relaxed);
                self.ended_down
                    .fetch_add(session.bytes_down, Ordering::Relaxed);
            }
            EngineEvent::SessionRefused { kind, .. } => {
                *self
                    .refusals
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(kind.as_str().to_string())
                    .or_default() += 1;
            }
            _ => {}
        }
    }
}

/// Feeds [`Metrics`] from the engine's events until aborted.
pub async fn feed(state: AppState) {
    let mut events = state.engine.subscribe();
    loop {
        match events.recv().await {
            Ok(e) => state.metrics.observe(&e),
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "metrics fell behind the engine's events");
            }
            Err(RecvError::Closed) => return,
        }
    }
}

pub async fn healthz() -> &'static str {
    "ok\n"
}

/// How long `/readyz` waits for the database before calling it unreachable.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

pub async fn readyz(State(state): State<AppState>) -> Response {
    let store = match tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await {
        Ok(r) => r,
        Err(_) => Err(crate::Error::new(
            crate::ErrorKind::Timeout,
            format!("no answer within {READY_TIMEOUT:?}"),
        )),
    };
    let recordings = match state.recordings() {
        None => Ok(()),
        Some(r) => tokio::task::spawn_blocking(move || r.ready(READY_TIMEOUT))
            .await
            .unwrap_or_else(|e| Err(crate::Error::internal(e.to_string()))),
    };
    if let (Ok(()), Err(error)) = (&store, &recordings) {
        tracing::warn!(%error, "readiness: recording store unreachable");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "recording store unreachable\n",
        )
            .into_response();
    }
    match (store, state.hub_is_ready()) {
        (Ok(()), true) => (StatusCode::OK, "ready\n").into_response(),
        (Err(error), _) => {
            tracing::warn!(%error, "readiness: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n").into_response()
        }
        (Ok(_), false) => {
            (StatusCode::SERVICE_UNAVAILABLE, "ssh hub not listening\n").into_response()
        }
    }
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    let live = state.engine.live();
    let online = match state.store.list_gatekeepers(None).await {
        Ok(gks) => gks.iter().filter(|g| g.online).count(),
        Err(error) => {
            tracing::warn!(%error, "metrics: cannot list gatekeepers");
            0
        }
    };
    let m = &state.metrics;
    let (live_up, live_down) = live.iter().fold((0, 0), |(u, d), l| {
        (u + l.session.bytes_up, d + l.session.bytes_down)
    });
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, rows: Vec<(String, u64)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in rows {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    metric(
        "cpam_sessions_live",
        "gauge",
        "Sessions open right now.",
        vec![(String::new(), live.len() as u64)],
    );
    metric(
        "cpam_gatekeepers_online",
        "gauge",
        "Gatekeepers whose tunnel is up.",
        vec![(String::new(), online as u64)],
    );
    metric(
        "cpam_sessions_total",
        "counter",
        "Sessions started since the server started.",
        vec![(String::new(), m.sessions.load(Ordering::Relaxed))],
    );
    metric(
        "cpam_bytes_total",
        "counter",
        "Bytes moved through sessions since the server started (up: user to target).",
        vec![
            (
                "{direction=\"up\"}".into(),
                m.ended_up.load(Ordering::Relaxed) + live_up,
            ),
            (
                "{direction=\"down\"}".into(),
                m.ended_down.load(Ordering::Relaxed) + live_down,
            ),
        ],
    );
    let refusals = m
        .refusals
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(k, v)| (format!("{{reason=\"{k}\"}}"), *v))
        .collect();
    metric(
        "cpam_refusals_total",
        "counter",
        "Sessions refused since the server started, by error kind.",
        refusals,
    );
    let mut logins: BTreeMap<&str, u64> = ["ok", "failed", "throttled"]
        .into_iter()
        .map(|k| (k, 0))
        .collect();
    logins.extend(
        m.logins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (*k, *v)),
    );
    metric(
        "cpam_logins_total",
        "counter",
        "Console logins since the server started, by result.",
        logins
            .into_iter()
            .map(|(k, v)| (format!("{{result=\"{k}\"}}"), v))
            .collect(),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
