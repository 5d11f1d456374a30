//! The file-transfer policy of a service, and a session's transfer list
//! (its `session.file` records, as JSON or CSV).

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse as _, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::audit::{attachment, csv_field};
use super::{Body, Query, ts};
use crate::access;
use crate::model::{AuditCategory, AuditRecord, ServiceId, SessionId};
use crate::proxy::sftp::{FilePolicy, events};
use crate::store::AuditFilter;
use crate::web::AppState;
use crate::web::auth::Caller;
use crate::web::error::{ApiError, ApiResult};

/// `GET /api/v1/services/{id}/file-policy`.
pub async fn get_file_policy(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let s = access::service(state.store.as_ref(), &caller.principal, &ServiceId(id)).await?;
    let policy = state.admin(&caller).file_policy(&s).await?;
    Ok(Json(json!(policy)))
}

/// `PUT /api/v1/services/{id}/file-policy`: replaces the policy (absent
/// fields take their defaults); answers it as stored, normalized.
pub async fn set_file_policy(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<FilePolicy>,
) -> ApiResult<Json<Value>> {
    let s = access::service(state.store.as_ref(), &caller.principal, &ServiceId(id)).await?;
    let policy = state.admin(&caller).set_file_policy(&s, body).await?;
    Ok(Json(json!(policy)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesQuery {
    format: Option<String>,
}

/// The audit action of one file's record (`session.file`).
fn file_action() -> String {
    format!("session.{}", events::FILE)
}

/// A `session.file` record as the transfer list shows it.
fn file_row(r: &AuditRecord) -> Value {
    let d = &r.event.detail;
    json!({
        "seq": r.seq,
        "at": ts(r.event.at),
        "session_id": r.event.session_id,
        "path": d["path"],
        "direction": d["direction"],
        "size": d["size"],
        "offset": d["offset"],
        "sha256": d["sha256"],
        "non_sequential": d["non_sequential"],
        "result": d["result"],
        "reason": d.get("reason"),
        "started_at": d["started_at"],
        "ended_at": d["ended_at"],
    })
}

const CSV_COLUMNS: &[&str] = &[
    "session_id",
    "at",
    "path",
    "direction",
    "size",
    "offset",
    "sha256",
    "non_sequential",
    "result",
    "reason",
    "started_at",
    "ended_at",
];

/// The transfer list as CSV (cells neutralised like the admin log's).
fn files_csv(rows: &[Value]) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push('\n');
    for row in rows {
        let cells: Vec<String> = CSV_COLUMNS
            .iter()
            .map(|c| match &row[*c] {
                Value::Null => String::new(),
                Value::String(s) => csv_field(s),
                other => csv_field(&other.to_string()),
            })
            .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

/// `GET /api/v1/sessions/{id}/files`: every file the session moved or was
/// refused, oldest first (`?format=csv` for a download).
pub async fn session_files(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<FilesQuery>,
) -> ApiResult<Response> {
    let s = access::session(state.store.as_ref(), &caller.principal, &SessionId(id)).await?;
    let filter = AuditFilter {
        from_seq: None,
        category: Some(AuditCategory::UserActivity),
        customer_id: Some(s.customer_id.clone()),
        actor: None,
        since: Some(s.started_at),
        until: None,
        limit: None,
    };
    let action = file_action();
    let rows: Vec<Value> = state
        .store
        .audit_records(&filter)
        .await?
        .iter()
        .filter(|r| r.event.action == action && r.event.session_id.as_ref() == Some(&s.id))
        .map(file_row)
        .collect();
    match q.format.as_deref().unwrap_or("json") {
        "json" => Ok(Json(Value::Array(rows)).into_response()),
        "csv" => Ok(attachment(
            "text/csv; charset=utf-8",
            &format!("cpam-files-{}.csv", s.id.0),
            files_csv(&rows),
        )),
        other => Err(ApiError::invalid(format!(
            "format `{other}` must be json or csv"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transfer_list_csv_neutralises_formulas_and_quotes() {
        let rows = vec![json!({
            "session_id": "ses_1", "at": "2026-01-01T00:00:00Z",
            "path": "/data/in/=cmd|' /C calc'!A0,x.csv", "direction": "upload",
            "size": 5, "offset": 0, "sha256": "ab", "non_sequential": false,
            "result": "refused", "reason": "-bad", "started_at": "s", "ended_at": "e",
        })];
        let csv = files_csv(&rows);
        let mut lines = csv.lines();
        assert_eq!(lines.next(), Some(CSV_COLUMNS.join(",").as_str()));
        assert_eq!(
            lines.next(),
            Some(
                "ses_1,2026-01-01T00:00:00Z,/data/in/=cmd|' /C calc'!A0,x.csv,upload,5,0,ab,false,refused,'-bad,s,e"
                    .replace("/data/in/=cmd|' /C calc'!A0,x.csv", "\"/data/in/=cmd|' /C calc'!A0,x.csv\"")
                    .as_str()
            )
        );
    }
}
