//! `cpam_audit_verify`: checks an audit log's hash chain.

use std::ffi::{CString, c_char};
use std::path::Path;
use std::sync::Arc;

use cpam_core::audit::{Verification, verify_store};
use cpam_core::server::DataDir;
use cpam_core::store::{SqlStore, Store};

use crate::boundary::{
    FfiResult, arg_out, arg_ref, arg_str, boundary, boundary_or, into_handle, put, take_handle,
};
use crate::status::{Failure, cpam_status};

/// The outcome of `cpam_audit_verify`.
#[derive(Debug)]
pub struct cpam_audit_report {
    verification: Verification,
    problem: Option<CString>,
}

/// Opens the store named by `source`: a database URL (`sqlite://...`,
/// `postgres://...`) or a server data dir.
pub(crate) async fn open_store(source: &str) -> cpam_core::Result<Arc<dyn Store>> {
    if source.contains("://") || source.starts_with("sqlite:") {
        Ok(Arc::new(SqlStore::connect(source).await?))
    } else {
        DataDir::open(Path::new(source))?.store().await
    }
}

fn verify(source: &str) -> FfiResult<Verification> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(cpam_status::CPAM_IO, format!("cannot start a runtime: {e}")))?;
    Ok(rt.block_on(async {
        let store = open_store(source).await?;
        verify_store(store.as_ref()).await
    })?)
}

/// Reads the whole audit log of `source` (a server data dir made by
/// `cpam-server init`, or a database URL) and checks its hash chain. A
/// broken chain is a successful call whose report says where it breaks;
/// free the report with `cpam_audit_report_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_audit_verify(
    source: *const c_char,
    out: *mut *mut cpam_audit_report,
) -> cpam_status {
    boundary(|| {
        // SAFETY: C string per the header's contract.
        let source = unsafe { arg_str(source, "source") }?;
        let out = arg_out(out, "out")?;
        let verification = verify(source)?;
        let problem = verification
            .first_broken
            .as_ref()
            .map(|b| CString::new(b.problem.replace('\0', " ")).unwrap_or_default());
        let report = cpam_audit_report {
            verification,
            problem,
        };
        // SAFETY: checked by `arg_out`.
        unsafe { put(out, into_handle(report)) };
        Ok(())
    })
}

/// Whether every record of the chain holds (false for NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_audit_report_is_intact(report: *const cpam_audit_report) -> bool {
    boundary_or(false, || {
        // SAFETY: NULL or a live report.
        unsafe { arg_ref(report, "report") }.is_ok_and(|r| r.verification.is_intact())
    })
}

/// How many records were checked (0 for NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_audit_report_checked(report: *const cpam_audit_report) -> u64 {
    boundary_or(0, || {
        // SAFETY: NULL or a live report.
        unsafe { arg_ref(report, "report") }.map_or(0, |r| r.verification.checked)
    })
}

/// The sequence number of the first broken record (0 when intact or NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_audit_report_broken_seq(report: *const cpam_audit_report) -> i64 {
    boundary_or(0, || {
        // SAFETY: NULL or a live report.
        unsafe { arg_ref(report, "report") }.map_or(0, |r| {
            r.verification
                .first_broken
                .as_ref()
                .map_or(0, |b| b.expected_seq)
        })
    })
}

/// What is wrong at the first broken record, NUL-terminated and valid until
/// the report is freed; NULL when the chain is intact.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_audit_report_problem(
    report: *const cpam_audit_report,
) -> *const c_char {
    boundary_or(std::ptr::null(), || {
        // SAFETY: NULL or a live report.
        unsafe { arg_ref(report, "report") }
            .ok()
            .and_then(|r| r.problem.as_ref())
            .map_or(std::ptr::null(), |p| p.as_ptr())
    })
}

/// Frees a report. NULL is ignored.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cpam_audit_report_free(report: *mut cpam_audit_report) {
    boundary_or((), || {
        // SAFETY: NULL or a report from `cpam_audit_verify`, freed once.
        drop(unsafe { take_handle(report) });
    })
}
