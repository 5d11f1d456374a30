//! The admin log (filters, CSV and JSON-lines export, chain verification)
//! and the IP Connect downloads.

use crate::model::{AuditCategory, AuditRecord, CustomerId, Timestamp};
use crate::store::AuditFilter;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Query, ts};
use crate::web::AppState;
use crate::web::auth::Caller;
use crate::web::error::{ApiError, ApiResult};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    from: Option<String>,
    to: Option<String>,
    user: Option<String>,
    category: Option<String>,
    customer: Option<String>,
    /// Comma-separated action names (`session.file,session.file.op`).
    action: Option<String>,
    limit: Option<usize>,
    format: Option<String>,
}

fn entry_json(r: &AuditRecord) -> Value {
    json!({
        "seq": r.seq,
        "at": ts(r.event.at),
        "category": r.event.category.as_str(),
        "action": r.event.action,
        "actor": r.event.actor,
        "customer_id": r.event.customer_id,
        "session_id": r.event.session_id,
        "detail": r.event.detail,
        "hash": r.hash,
    })
}

/// One CSV cell. A cell a spreadsheet would run as a formula (it starts
/// with `=`, `+`, `-`, `@`, a tab or a carriage return: an attacker's SSH
/// user name, say) is neutralised with a leading `'`, so opening the export
/// shows the text instead of evaluating it.
pub(super) fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn to_csv(records: &[AuditRecord]) -> String {
    let mut out = String::from("seq,at,category,action,actor,customer_id,session_id,detail,hash\n");
    for r in records {
        let e = &r.event;
        let row = [
            r.seq.to_string(),
            ts(e.at),
            e.category.as_str().to_string(),
            e.action.clone(),
            e.actor.clone(),
            e.customer_id
                .as_ref()
                .map(|c| c.0.clone())
                .unwrap_or_default(),
            e.session_id
                .as_ref()
                .map(|s| s.0.clone())
                .unwrap_or_default(),
            e.detail.to_string(),
            r.hash.clone(),
        ];
        let line: Vec<String> = row.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Response> {
    let p = &caller.principal;
    let category = match q.category.as_deref() {
        None | Some("") => None,
        Some(c) => {
            let c: AuditCategory = c.parse()?;
            if !p.has(c.permission()) {
                return Err(ApiError::denied(format!(
                    "reading {} entries needs {}",
                    c.as_str(),
                    c.permission()
                )));
            }
            Some(c)
        }
    };
    let time = |t: Option<String>| t.map(|t| Timestamp::parse_rfc3339(&t)).transpose();
    let filter = AuditFilter {
        from_seq: None,
        category,
        customer_id: q.customer.filter(|c| !c.is_empty()).map(CustomerId),
        actor: q.user.filter(|u| !u.is_empty()),
        since: time(q.from)?,
        until: time(q.to)?,
        limit: None,
    };
    let limit = q.limit.unwrap_or(1000).clamp(1, 100_000);
    let mut records: Vec<AuditRecord> = state
        .store
        .audit_records(&filter)
        .await?
        .into_iter()
        .filter(|r| p.sees_audit(&r.event))
        .filter(|r| {
            q.action
                .as_deref()
                .is_none_or(|a| a.is_empty() || a.split(',').any(|x| x.trim() == r.event.action))
        })
        .collect();
    if records.len() > limit {
        records.drain(..records.len() - limit);
    }
    match q.format.as_deref().unwrap_or("json") {
        "json" => Ok(Json(Value::Array(records.iter().map(entry_json).collect())).into_response()),
        "jsonl" => {
            let mut body = String::new();
            for r in &records {
                body.push_str(&entry_json(r).to_string());
                body.push('\n');
            }
            Ok(attachment("application/x-ndjson", "cpam-audit.jsonl", body))
        }
        "csv" => Ok(attachment(
            "text/csv; charset=utf-8",
            "cpam-audit.csv",
            to_csv(&records),
        )),
        other => Err(ApiError::invalid(format!(
            "format `{other}` must be json, csv or jsonl"
        ))),
    }
}

pub(super) fn attachment(
    content_type: &'static str,
    file: &str,
    body: impl IntoResponse,
) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
        ],
        body,
    )
        .into_response()
}

pub async fn verify(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let v = match state.anchor() {
        Some(anchor) => anchor.verify().await?,
        None => crate::audit::verify_store(state.store.as_ref()).await?,
    };
    let first_broken = v
        .first_broken
        .as_ref()
        .map(|b| json!({ "seq": b.expected_seq, "problem": b.problem }));
    Ok(Json(json!({
        "intact": v.is_intact(),
        "records": v.checked,
        "first_broken": first_broken,
        "checkpoint": v.checkpoint,
    })))
}

/// The signed checkpoints of the chain's head, oldest first, for an
/// external log to keep.
pub async fn checkpoints(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let list = match state.anchor() {
        Some(anchor) => tokio::task::spawn_blocking(move || anchor.log().read())
            .await
            .map_err(|e| crate::Error::internal(format!("reading checkpoints: {e}")))??,
        None => Vec::new(),
    };
    Ok(Json(json!(list)))
}

/// The IP Connect program this server offers: `cpam-connect` next to the
/// running server, for this server's platform.
fn ipconnect(state: &AppState) -> Option<(String, std::path::PathBuf, u64)> {
    let path = state.options.downloads_dir.join("cpam-connect");
    let meta = std::fs::metadata(&path).ok().filter(|m| m.is_file())?;
    let file = format!(
        "cpam-connect-{}-{}",
        std::env::consts::OS,
        std::env::consts::ARCH
    );
    Some((file, path, meta.len()))
}

pub async fn downloads(State(state): State<AppState>) -> Json<Value> {
    Json(Value::Array(
        ipconnect(&state)
            .map(|(file, _, size)| {
                json!({
                    "os": std::env::consts::OS,
                    "arch": std::env::consts::ARCH,
                    "file": file,
                    "size": size,
                })
            })
            .into_iter()
            .collect(),
    ))
}

pub async fn download(
    State(state): State<AppState>,
    caller: Caller,
    Path(file): Path<String>,
) -> ApiResult<Response> {
    let Some((name, path, _)) = ipconnect(&state).filter(|(name, _, _)| *name == file) else {
        return Err(ApiError::not_found(format!("no download `{file}`")));
    };
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|e| crate::Error::from(e).context("cannot read the IP Connect program"))?;
    tracing::info!(user = %caller.user().name, file = %name, "IP Connect downloaded");
    Ok(attachment("application/octet-stream", &name, bytes))
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_cells_that_would_run_as_formulas_are_neutralised() {
        for (cell, want) in [
            (
                "=HYPERLINK(\"http://x\")",
                "\"'=HYPERLINK(\"\"http://x\"\")\"",
            ),
            ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\t=1", "'\t=1"),
            ("\r=1", "\"'\r=1\""),
            ("vendor", "vendor"),
            ("a,b", "\"a,b\""),
            ("", ""),
        ] {
            assert_eq!(csv_field(cell), want, "{cell:?}");
        }
    }
}
