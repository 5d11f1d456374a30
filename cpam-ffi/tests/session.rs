//! A whole deployment built from the C ABI alone, in one process: a hub over
//! an in-memory database, an embedded gatekeeper registered to it, and a
//! profile whose stream is written by one thread while another reads the
//! echo back (the documented concurrent use of a stream).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::ffi::{CStr, CString, c_char};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::ptr;
use std::time::Duration;

use cpam::connect::*;
use cpam::event::*;
use cpam::gatekeeper::*;
use cpam::hub::*;
use cpam::status::*;
use cpam::{CPAM_TIMEOUT_INFINITE, cpam_string_free};
use cpam_core::admin::Admin;
use cpam_core::model::{ServiceKind, Timestamp};

/// A raw pointer the test hands to another thread; the handle is documented
/// as usable from several threads.
struct Shared<T>(*const T);
impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Shared<T> {}
// SAFETY: cpam handles may be used from several threads at once.
unsafe impl<T> Send for Shared<T> {}

impl<T> Shared<T> {
    fn get(self) -> *const T {
        self.0
    }
}

fn ok(st: cpam_status) {
    assert_eq!(st, cpam_status::CPAM_OK, "{:?}", last_error());
}

fn cstring(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// Pulls hub events until one of `kind` arrives.
fn wait_hub_event(hub: *const cpam_hub, kind: cpam_event_kind) -> String {
    loop {
        let mut ev = ptr::null_mut();
        // SAFETY: a live hub and a valid out-pointer; the event is freed.
        unsafe {
            ok(cpam_hub_next_event(hub, 20_000, &mut ev));
            let json = CStr::from_ptr(cpam_event_get_json(ev))
                .to_string_lossy()
                .into_owned();
            let got = cpam_event_get_kind(ev);
            cpam_event_free(ev);
            if got == kind {
                return json;
            }
        }
    }
}

#[test]
fn a_stream_carries_a_megabyte_each_way_while_read_and_written_from_two_threads() {
    // The customer's target: a TCP echo server.
    let target = TcpListener::bind("127.0.0.1:0").unwrap();
    let target_addr = target.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in target.incoming() {
            let mut conn = conn.unwrap();
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();

    // The hub, and an operator working on its store.
    let mut hub = ptr::null_mut();
    let mut addr = [0 as c_char; 64];
    let mut n = 0;
    // SAFETY: valid strings and out-pointers.
    unsafe {
        ok(cpam_hub_new(c"sqlite::memory:".as_ptr(), &mut hub));
        ok(cpam_hub_run(hub, c"127.0.0.1:0".as_ptr()));
        ok(cpam_hub_local_addr(
            hub,
            addr.as_mut_ptr(),
            addr.len(),
            &mut n,
        ));
    }
    // SAFETY: NUL-terminated by the call above.
    let server = unsafe { CStr::from_ptr(addr.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: the hub is live until freed at the end.
    let engine = unsafe { &*hub }.engine().clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let admin = Admin::new(engine.store().clone(), engine.audit().clone(), "test");
    let code = rt
        .block_on(async {
            admin.ensure_builtin_roles().await?;
            admin.add_customer("acme").await?;
            admin
                .add_gatekeeper("acme", "gk1", Duration::from_secs(60))
                .await
        })
        .unwrap();

    // The gatekeeper registers and comes online; the hub reports it.
    let state = cstring(&dir.path().join("gk").to_string_lossy());
    let allow = cstring(&format!("127.0.0.1/32:{}", target_addr.port()));
    let mut gk = ptr::null_mut();
    let mut info = ptr::null_mut();
    // SAFETY: valid strings and out-pointers.
    let info = unsafe {
        ok(cpam_gatekeeper_new(state.as_ptr(), &mut gk));
        ok(cpam_gatekeeper_register(
            gk,
            cstring(&server).as_ptr(),
            cstring(&code.code).as_ptr(),
            ptr::null(),
        ));
        ok(cpam_gatekeeper_run(gk, allow.as_ptr()));
        ok(cpam_gatekeeper_info(gk, &mut info));
        let text = CStr::from_ptr(info).to_string_lossy().into_owned();
        cpam_string_free(info);
        text
    };
    let online = wait_hub_event(hub, cpam_event_kind::GatekeeperOnline);
    assert!(
        online.contains("\"type\":\"gatekeeper_online\""),
        "{online}"
    );
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    let server_key = info["server_key"].as_str().unwrap().to_string();

    // A vendor with a grant, and the profile.
    let profile_path = dir.path().join("vendor.profile");
    rt.block_on(async {
        admin.add_user("vendor", None, &[], &[]).await?;
        admin
            .add_service(
                "acme",
                "echo",
                &target_addr.to_string(),
                ServiceKind::Custom,
            )
            .await?;
        admin
            .add_grant("vendor", "acme", "echo", Timestamp::now(), None, None)
            .await?;
        admin
            .export_profile("vendor", "gk1", &server, &server_key)
            .await?
            .save(&profile_path)
    })
    .unwrap();

    let mut profile = ptr::null_mut();
    let mut stream = ptr::null_mut();
    // SAFETY: valid strings and out-pointers.
    unsafe {
        ok(cpam_profile_load(
            cstring(&profile_path.to_string_lossy()).as_ptr(),
            &mut profile,
        ));
        ok(cpam_profile_open_stream(
            profile,
            c"echo".as_ptr(),
            &mut stream,
        ));
        // The stream outlives its profile.
        cpam_profile_free(profile);
    }
    let started = wait_hub_event(hub, cpam_event_kind::SessionStarted);
    assert!(started.contains("\"service_name\":\"echo\""), "{started}");

    const TOTAL: usize = 1 << 20;
    let data: Vec<u8> = (0..TOTAL).map(|i| (i * 7 % 251) as u8).collect();
    let writer = {
        let (s, data) = (Shared(stream.cast_const()), data.clone());
        std::thread::spawn(move || {
            for chunk in data.chunks(10_000) {
                // SAFETY: a live stream, and a buffer valid for its length.
                let st = unsafe { cpam_stream_write(s.get(), chunk.as_ptr(), chunk.len(), 10_000) };
                ok(st);
            }
            // SAFETY: a live stream.
            ok(unsafe { cpam_stream_shutdown(s.get()) });
        })
    };
    let mut back = Vec::with_capacity(TOTAL);
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let mut got = 0;
        // SAFETY: a live stream, and a buffer valid for its length.
        let st = unsafe {
            cpam_stream_read(
                stream,
                buf.as_mut_ptr(),
                buf.len(),
                CPAM_TIMEOUT_INFINITE,
                &mut got,
            )
        };
        ok(st);
        if got == 0 {
            break;
        }
        back.extend_from_slice(&buf[..got]);
    }
    writer.join().unwrap();
    assert_eq!(back.len(), TOTAL);
    assert!(back == data, "the echo differs from what was sent");

    // Ending the session is seen by the hub with the byte counts.
    // SAFETY: the stream from `cpam_profile_open_stream`, freed once.
    unsafe { cpam_stream_free(stream) };
    let ended = wait_hub_event(hub, cpam_event_kind::SessionEnded);
    let ended: serde_json::Value = serde_json::from_str(&ended).unwrap();
    assert_eq!(ended["session"]["bytes_up"], TOTAL as u64);
    assert_eq!(ended["session"]["bytes_down"], TOTAL as u64);

    // Stopping the gatekeeper drains its queue and then closes it.
    // SAFETY: live handles, freed once below.
    unsafe {
        ok(cpam_gatekeeper_stop(gk));
        let mut kinds = Vec::new();
        loop {
            let mut ev = ptr::null_mut();
            match cpam_gatekeeper_next_event(gk, 5_000, &mut ev) {
                cpam_status::CPAM_OK => {
                    kinds.push(cpam_event_get_kind(ev));
                    cpam_event_free(ev);
                }
                st => {
                    assert_eq!(st, cpam_status::CPAM_CLOSED);
                    break;
                }
            }
        }
        assert_eq!(
            kinds,
            [
                cpam_event_kind::GatekeeperOnline,
                cpam_event_kind::GatekeeperOffline
            ]
        );
        wait_hub_event(hub, cpam_event_kind::GatekeeperOffline);
        cpam_gatekeeper_free(gk);
        ok(cpam_hub_stop(hub));
        assert_eq!(
            cpam_hub_run(hub, c"127.0.0.1:0".as_ptr()),
            cpam_status::CPAM_CLOSED
        );
        drop((rt, engine));
        cpam_hub_free(hub);
    }
}
