//! Reading and verifying a server's hash-chained audit log.

use std::path::Path;
use std::sync::Arc;

use cpam_core::audit;
use cpam_core::model::AuditCategory;
use cpam_core::server::DataDir;
use cpam_core::store::{AuditFilter, SqlStore, Store};
use cpam_core::{Error, Result};
use pyo3::prelude::*;
use serde_json::json;

use crate::errors::to_py;
use crate::rt::{Json, awaitable, wait};

/// `source` is a database URL (`sqlite:///PATH`, `postgres://...`) or a
/// server data dir.
pub async fn open_store(source: &str) -> Result<Arc<dyn Store>> {
    if source.contains("://") || source.starts_with("sqlite:") {
        // Reading an audit log must not create an empty database.
        if let Some(path) = source.strip_prefix("sqlite://") {
            let path = path.split('?').next().unwrap_or_default();
            if !path.contains(":memory:") && !Path::new(path).is_file() {
                return Err(Error::not_found(format!("no database at {path}")));
            }
        }
        Ok(Arc::new(SqlStore::connect(source).await?))
    } else {
        DataDir::open(Path::new(source))?.store().await
    }
}

async fn verify(source: String) -> Result<Json> {
    let store = open_store(&source).await?;
    let v = audit::verify_store(store.as_ref()).await?;
    Ok(Json(json!({
        "intact": v.is_intact(),
        "checked": v.checked,
        "first_broken": v.first_broken,
    })))
}

async fn read(
    source: String,
    from_seq: Option<i64>,
    limit: Option<i64>,
    category: Option<AuditCategory>,
) -> Result<Json> {
    let store = open_store(&source).await?;
    let records = store
        .audit_records(&AuditFilter {
            from_seq,
            limit,
            category,
            ..AuditFilter::default()
        })
        .await?;
    Json::of(&records)
}

/// Checks the whole audit chain of `source` (a database URL or a server data
/// dir): `{"intact": bool, "checked": int, "first_broken": {...} | None}`.
#[pyfunction]
pub fn verify_audit(py: Python<'_>, source: String) -> PyResult<Json> {
    wait(py, verify(source))
}

/// `verify_audit()` for asyncio.
#[pyfunction]
pub fn verify_audit_async(py: Python<'_>, source: String) -> PyResult<Bound<'_, PyAny>> {
    awaitable(py, verify(source))
}

fn category(category: Option<&str>) -> PyResult<Option<AuditCategory>> {
    category.map(|c| c.parse().map_err(to_py)).transpose()
}

/// Audit records of `source` in chain order, from `from_seq` (1 by default),
/// at most `limit`, optionally of one `category` (`user-activity` or
/// `system-messages`).
#[pyfunction]
#[pyo3(signature = (source, from_seq = None, limit = None, category = None))]
pub fn read_audit(
    py: Python<'_>,
    source: String,
    from_seq: Option<i64>,
    limit: Option<i64>,
    category: Option<&str>,
) -> PyResult<Json> {
    let category = self::category(category)?;
    wait(py, read(source, from_seq, limit, category))
}

/// `read_audit()` for asyncio.
#[pyfunction]
#[pyo3(signature = (source, from_seq = None, limit = None, category = None))]
pub fn read_audit_async<'py>(
    py: Python<'py>,
    source: String,
    from_seq: Option<i64>,
    limit: Option<i64>,
    category: Option<&str>,
) -> PyResult<Bound<'py, PyAny>> {
    let category = self::category(category)?;
    awaitable(py, read(source, from_seq, limit, category))
}
