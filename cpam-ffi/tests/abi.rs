//! The C boundary's contract, exercised from Rust through the exported
//! functions themselves: NULL and UTF-8 checks, out-parameters untouched on
//! failure, statuses from error kinds, the credential source callback and
//! audit verification of an intact and a tampered chain.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::ffi::{CStr, CString, c_char, c_void};
use std::ptr;

use cpam::audit::*;
use cpam::connect::*;
use cpam::gatekeeper::*;
use cpam::hub::*;
use cpam::status::*;
use cpam_core::hooks::{CredentialKind, CredentialRequest};
use cpam_core::model::{
    AuditCategory, AuditEvent, CustomerId, Service, ServiceId, ServiceKind, SessionId, Timestamp,
};
use cpam_core::store::{AuditLog, SqlStore};

fn last_message() -> String {
    let mut buf = [0 as c_char; 512];
    let mut n = 0;
    // SAFETY: a 512-byte buffer and a valid `usize`.
    let st = unsafe { cpam_last_error_message(buf.as_mut_ptr(), buf.len(), &mut n) };
    assert_eq!(st, cpam_status::CPAM_OK);
    // SAFETY: NUL-terminated by the call.
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

#[test]
fn null_and_non_utf8_arguments_are_refused_and_outputs_stay_untouched() {
    let sentinel = ptr::dangling_mut::<cpam_gatekeeper>();
    let mut out = sentinel;
    // SAFETY: a NULL string is what is being tested; `out` is valid.
    let st = unsafe { cpam_gatekeeper_new(ptr::null(), &mut out) };
    assert_eq!(st, cpam_status::CPAM_NULL_ARGUMENT);
    assert_eq!(out, sentinel, "out-parameters are written only on success");
    assert!(
        last_message().contains("`state_dir` is NULL"),
        "{}",
        last_message()
    );

    let bad = [0xffu8, 0xfe, 0];
    let mut profile = ptr::null_mut();
    // SAFETY: a NUL-terminated (non-UTF-8) string and a valid out-pointer.
    let st = unsafe { cpam_profile_load(bad.as_ptr().cast(), &mut profile) };
    assert_eq!(st, cpam_status::CPAM_INVALID_UTF8);
    assert!(profile.is_null());
    assert!(last_message().contains("`path` is not valid UTF-8"));

    // SAFETY: NULL out-pointer is what is being tested.
    let st = unsafe { cpam_profile_load(c"/nonexistent".as_ptr(), ptr::null_mut()) };
    assert_eq!(st, cpam_status::CPAM_NULL_ARGUMENT);
    // SAFETY: both return static NUL-terminated strings.
    unsafe {
        assert_eq!(
            CStr::from_ptr(cpam::cpam_version()).to_str(),
            Ok(env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(
            CStr::from_ptr(cpam_status_name(cpam_status::CPAM_PERMISSION_DENIED)).to_str(),
            Ok("permission_denied")
        );
    }
    // SAFETY: freeing NULL is documented to be ignored.
    unsafe {
        cpam_gatekeeper_free(ptr::null_mut());
        cpam_profile_free(ptr::null_mut());
        cpam_hub_free(ptr::null_mut());
    }
}

#[test]
fn errors_carry_the_status_of_their_kind_and_a_message_naming_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let missing = CString::new(dir.path().join("nope.profile").to_string_lossy().as_ref()).unwrap();
    let mut profile = ptr::null_mut();
    // SAFETY: valid strings and out-pointer.
    let st = unsafe { cpam_profile_load(missing.as_ptr(), &mut profile) };
    assert_eq!(st, cpam_status::CPAM_NOT_FOUND);
    assert!(profile.is_null());
    assert!(
        last_message().contains("nope.profile"),
        "{}",
        last_message()
    );

    let bad = dir.path().join("bad.profile");
    std::fs::write(&bad, r#"{"cpam_profile": 1}"#).unwrap();
    let bad = CString::new(bad.to_string_lossy().as_ref()).unwrap();
    // SAFETY: valid strings and out-pointer.
    let st = unsafe { cpam_profile_load(bad.as_ptr(), &mut profile) };
    assert_eq!(st, cpam_status::CPAM_INVALID_ARGUMENT);
    assert!(
        last_message().contains("field `server` is missing"),
        "{}",
        last_message()
    );

    // A gatekeeper that is not registered cannot run.
    let state = CString::new(dir.path().join("gk").to_string_lossy().as_ref()).unwrap();
    let mut gk = ptr::null_mut();
    // SAFETY: valid strings and out-pointers; the handle is freed below.
    unsafe {
        assert_eq!(
            cpam_gatekeeper_new(state.as_ptr(), &mut gk),
            cpam_status::CPAM_OK
        );
        let mut status = cpam_gatekeeper_state {
            registered: true,
            running: true,
            online: true,
            disabled: true,
            _reserved: [7; 12],
        };
        assert_eq!(
            cpam_gatekeeper_status(gk, &mut status),
            cpam_status::CPAM_OK
        );
        assert_eq!(status, cpam_gatekeeper_state::default());
        let mut info = ptr::null_mut();
        assert_eq!(
            cpam_gatekeeper_info(gk, &mut info),
            cpam_status::CPAM_NOT_FOUND
        );
        assert!(info.is_null());
        assert_eq!(
            cpam_gatekeeper_run(gk, c"not-a-rule".as_ptr()),
            cpam_status::CPAM_INVALID_ARGUMENT
        );
        assert_eq!(
            cpam_gatekeeper_run(gk, c"127.0.0.0/8:22".as_ptr()),
            cpam_status::CPAM_NOT_FOUND,
            "{}",
            last_message()
        );
        assert!(last_message().contains("is this gatekeeper registered?"));
        let mut event = ptr::null_mut();
        assert_eq!(
            cpam_gatekeeper_next_event(gk, 10, &mut event),
            cpam_status::CPAM_TIMEOUT
        );
        assert!(event.is_null());
        cpam_gatekeeper_free(gk);
    }
}

unsafe extern "C" fn vault(
    userdata: *mut c_void,
    request_json: *const c_char,
    credential: *mut cpam_credential,
) -> bool {
    // SAFETY: the test passes a live `AtomicUsize` and the library a valid string.
    let (calls, request) = unsafe {
        (
            &*userdata.cast::<std::sync::atomic::AtomicUsize>(),
            CStr::from_ptr(request_json).to_string_lossy().into_owned(),
        )
    };
    calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let request: serde_json::Value = serde_json::from_str(&request).unwrap();
    match request["service"]["name"].as_str() {
        // SAFETY: `credential` is the one the library passed in.
        Some("db") => unsafe {
            cpam_credential_set(
                credential,
                cpam_credential_kind::Password as u32,
                c"svc".as_ptr(),
                c"s3cret".as_ptr(),
            ) == cpam_status::CPAM_OK
        },
        Some("plain") => true,
        _ => false,
    }
}

fn request(service: &str) -> CredentialRequest {
    let customer = CustomerId::generate();
    CredentialRequest {
        session: SessionId::generate(),
        user: "vera".into(),
        customer: customer.clone(),
        service: Service {
            id: ServiceId::generate(),
            customer_id: customer,
            gatekeeper_id: None,
            name: service.into(),
            kind: ServiceKind::Custom,
            target: "10.0.0.5:22".parse().unwrap(),
            created_at: Timestamp::now(),
        },
    }
}

#[test]
fn the_credential_source_callback_supplies_credentials_to_the_engine() {
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let mut hub = ptr::null_mut();
    // SAFETY: valid strings and out-pointer; `calls` outlives the hub.
    let hub = unsafe {
        assert_eq!(
            cpam_hub_new(c"sqlite::memory:".as_ptr(), &mut hub),
            cpam_status::CPAM_OK,
            "{}",
            last_message()
        );
        assert_eq!(
            cpam_hub_set_credential_source(hub, Some(vault), (&raw const calls).cast_mut().cast()),
            cpam_status::CPAM_OK
        );
        &mut *hub
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let engine = hub.engine().clone();
    let cred = rt
        .block_on(engine.credential(&request("db")))
        .unwrap()
        .unwrap();
    assert_eq!(cred.username, "svc");
    assert_eq!(cred.kind, CredentialKind::Password);
    assert_eq!(cred.secret.expose(), "s3cret");
    assert!(
        rt.block_on(engine.credential(&request("plain")))
            .unwrap()
            .is_none()
    );
    let e = rt
        .block_on(engine.credential(&request("other")))
        .unwrap_err();
    assert_eq!(e.kind(), cpam_core::ErrorKind::NotFound);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
    drop((rt, engine));
    // SAFETY: the handle from `cpam_hub_new`, freed once.
    unsafe { cpam_hub_free(hub) };
}

fn verify(source: &str) -> (bool, u64, i64, Option<String>) {
    let source = CString::new(source).unwrap();
    let mut report = ptr::null_mut();
    // SAFETY: valid string and out-pointer; the report is freed below.
    unsafe {
        assert_eq!(
            cpam_audit_verify(source.as_ptr(), &mut report),
            cpam_status::CPAM_OK,
            "{}",
            last_message()
        );
        let problem = cpam_audit_report_problem(report);
        let out = (
            cpam_audit_report_is_intact(report),
            cpam_audit_report_checked(report),
            cpam_audit_report_broken_seq(report),
            (!problem.is_null()).then(|| CStr::from_ptr(problem).to_string_lossy().into_owned()),
        );
        cpam_audit_report_free(report);
        out
    }
}

#[test]
fn audit_verify_finds_an_edited_record() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = SqlStore::connect(&url).await.unwrap();
        for i in 0..3 {
            store
                .append_audit(&AuditEvent {
                    at: Timestamp::now(),
                    category: AuditCategory::SystemMessages,
                    action: "test.event".into(),
                    actor: format!("actor{i}"),
                    customer_id: None,
                    session_id: None,
                    detail: serde_json::json!({ "i": i }),
                })
                .await
                .unwrap();
        }
    });
    assert_eq!(verify(&url), (true, 3, 0, None));
    rt.block_on(async {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::query("update audit_log set actor = 'mallory' where seq = 2")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    });
    let (intact, _, seq, problem) = verify(&url);
    assert!(!intact);
    assert_eq!(seq, 2);
    assert!(problem.is_some_and(|p| !p.is_empty()));

    let st = {
        let mut report = ptr::null_mut();
        // SAFETY: valid string and out-pointer.
        unsafe { cpam_audit_verify(c"/nonexistent/data-dir".as_ptr(), &mut report) }
    };
    assert_eq!(st, cpam_status::CPAM_NOT_FOUND, "{}", last_message());
}
