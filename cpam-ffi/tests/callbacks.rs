//! `cpam_hub_free` and the C callbacks: once it returns, no callback of the
//! hub runs any more (it waits for the ones under way, none starts after).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::ffi::{c_char, c_void};
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cpam::hub::*;
use cpam::status::*;
use cpam_core::admin::Admin;

static STARTED: AtomicUsize = AtomicUsize::new(0);
static FINISHED: AtomicUsize = AtomicUsize::new(0);

/// An audit sink slower than the hub runtime's shutdown grace (2 s).
unsafe extern "C" fn slow_sink(_userdata: *mut c_void, _record: *const c_char) {
    STARTED.fetch_add(1, Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(3));
    FINISHED.fetch_add(1, Ordering::SeqCst);
}

/// A hub handle another thread may use (the handle is thread-safe).
struct Hub(*mut cpam_hub);
// SAFETY: cpam handles may be used from several threads at once.
unsafe impl Send for Hub {}

#[test]
fn no_callback_runs_after_cpam_hub_free_returns() {
    let mut hub = ptr::null_mut();
    // SAFETY: valid strings and out-pointers.
    unsafe {
        assert_eq!(
            cpam_hub_new(c"sqlite::memory:".as_ptr(), &mut hub),
            cpam_status::CPAM_OK
        );
        assert_eq!(
            cpam_hub_set_audit_sink(hub, Some(slow_sink), ptr::null_mut()),
            cpam_status::CPAM_OK
        );
    }
    // SAFETY: the hub is live until freed below.
    let engine = unsafe { &*hub }.engine().clone();
    let admin = Admin::new(engine.store().clone(), engine.audit().clone(), "test");
    // A change whose audit record reaches the sink, from another thread.
    let writer = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(admin.add_customer("acme")).unwrap();
        rt.block_on(admin.add_customer("globex")).map(|_| ())
    });
    wait_for(|| STARTED.load(Ordering::SeqCst) == 1);

    let h = Hub(hub);
    // SAFETY: freed once; the callback under way is the test's own.
    unsafe { cpam_hub_free(h.0) };
    assert_eq!(
        FINISHED.load(Ordering::SeqCst),
        STARTED.load(Ordering::SeqCst),
        "cpam_hub_free returned while a callback was still running"
    );
    // The second change is audited without the freed hub's callback.
    let _ = writer.join().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        STARTED.load(Ordering::SeqCst),
        1,
        "a callback started after free"
    );
    drop(engine);
}

fn wait_for(done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "the sink was never called"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
