//! IP Connect through the C ABI: a hub and an embedded gatekeeper in this
//! process, then `cpam_ipconnect_*` maps the vendor's service to a loopback
//! address (the legacy mode), reports it as events and status, follows the
//! mode live and stops cleanly.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::ffi::{CStr, CString, c_char};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::ptr;
use std::time::Duration;

use cpam::cpam_string_free;
use cpam::event::*;
use cpam::gatekeeper::*;
use cpam::hub::*;
use cpam::ipconnect::*;
use cpam::status::*;
use cpam_core::admin::Admin;
use cpam_core::model::{ServiceKind, Timestamp};

fn ok(st: cpam_status) {
    assert_eq!(st, cpam_status::CPAM_OK, "{:?}", last_error());
}

fn cstring(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// Pulls IP Connect events until one of `kind` arrives; its JSON.
fn wait_event(ipc: *const cpam_ipconnect, kind: cpam_event_kind) -> serde_json::Value {
    loop {
        let mut ev = ptr::null_mut();
        // SAFETY: a live handle and a valid out-pointer; the event is freed.
        unsafe {
            ok(cpam_ipconnect_next_event(ipc, 20_000, &mut ev));
            let json = CStr::from_ptr(cpam_event_get_json(ev))
                .to_string_lossy()
                .into_owned();
            let got = cpam_event_get_kind(ev);
            cpam_event_free(ev);
            if got == kind {
                return serde_json::from_str(&json).unwrap();
            }
        }
    }
}

#[test]
fn ip_connect_maps_a_service_reports_it_and_follows_the_mode() {
    let target = TcpListener::bind("127.0.0.1:0").unwrap();
    let target_addr = target.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in target.incoming() {
            let mut conn = conn.unwrap();
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
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
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    let server_key = info["server_key"].as_str().unwrap().to_string();
    let profile = dir.path().join("vendor.profile");
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
        admin.set_user_ip_connect_mode("vendor", "legacy").await?;
        admin
            .export_profile("vendor", "gk1", &server, &server_key)
            .await?
            .save(&profile)
    })
    .unwrap();

    // Bad input is refused with a message naming it.
    let mut ipc = ptr::null_mut();
    // SAFETY: valid strings and out-pointers.
    unsafe {
        let st = cpam_ipconnect_new(c"".as_ptr(), ptr::null(), &mut ipc);
        assert_eq!(st, cpam_status::CPAM_INVALID_ARGUMENT);
        let st = cpam_ipconnect_new(
            cstring(&profile.to_string_lossy()).as_ptr(),
            c"{\"colour\": 1}".as_ptr(),
            &mut ipc,
        );
        assert_eq!(st, cpam_status::CPAM_INVALID_ARGUMENT);
        assert!(last_error().is_some_and(|f| f.message.contains("colour")));
        assert!(ipc.is_null());
    }

    let options = serde_json::json!({
        "state_dir": dir.path().join("ipc"),
        "range": "127.80.0.0/16",
        "poll_ms": 200,
    })
    .to_string();
    // SAFETY: valid strings and out-pointers.
    unsafe {
        ok(cpam_ipconnect_new(
            cstring(&profile.to_string_lossy()).as_ptr(),
            cstring(&options).as_ptr(),
            &mut ipc,
        ));
        ok(cpam_ipconnect_start(ipc));
    }
    let mode = wait_event(ipc, cpam_event_kind::IpConnectMode);
    assert_eq!(mode["mode"], "legacy", "{mode}");
    let added = wait_event(ipc, cpam_event_kind::IpConnectMappingAdded);
    let local = added["mapping"]["local"].as_str().unwrap().to_string();
    assert!(local.starts_with("127.80."), "{added}");
    assert_eq!(added["mapping"]["hostnames"][0], "echo.acme.cpam");

    // The mapped address reaches the service.
    let mut tcp = std::net::TcpStream::connect(&local).unwrap();
    tcp.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    tcp.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
    drop(tcp);

    let mut json = ptr::null_mut();
    // SAFETY: a live handle and a valid out-pointer; the string is freed.
    let status: serde_json::Value = unsafe {
        ok(cpam_ipconnect_status(ipc, &mut json));
        let text = CStr::from_ptr(json).to_string_lossy().into_owned();
        cpam_string_free(json);
        serde_json::from_str(&text).unwrap()
    };
    assert_eq!(status["mappings"][0]["local"], local.as_str(), "{status}");
    assert_eq!(status["profiles"][0]["mode"], "legacy", "{status}");

    // Off, live: the mapping goes.
    rt.block_on(admin.set_user_ip_connect_mode("vendor", "off"))
        .unwrap();
    let removed = wait_event(ipc, cpam_event_kind::IpConnectMappingRemoved);
    assert_eq!(removed["mapping"]["local"], local.as_str());

    // SAFETY: live handles, each freed once.
    unsafe {
        ok(cpam_ipconnect_stop(ipc));
        let mut ev = ptr::null_mut();
        let mut st = cpam_status::CPAM_OK;
        for _ in 0..100 {
            st = cpam_ipconnect_next_event(ipc, 1000, &mut ev);
            if st != cpam_status::CPAM_OK {
                break;
            }
            cpam_event_free(ev);
        }
        assert_eq!(st, cpam_status::CPAM_CLOSED);
        cpam_ipconnect_free(ipc);
        cpam_gatekeeper_free(gk);
        cpam_hub_free(hub);
    }
    assert!(
        std::net::TcpStream::connect(&local).is_err(),
        "still listening after stop"
    );
}
