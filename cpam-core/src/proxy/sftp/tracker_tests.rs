use bytes::Bytes;
use sha2::{Digest as _, Sha256};

use super::*;
use crate::proxy::sftp::codec::*;

fn s(x: &[u8]) -> Vec<u8> {
    let mut v = (x.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(x);
    v
}

fn packet(kind: u8, parts: &[&[u8]]) -> Vec<u8> {
    let body = parts.concat();
    let mut p = ((body.len() + 1) as u32).to_be_bytes().to_vec();
    p.push(kind);
    p.extend_from_slice(&body);
    p
}

fn id(n: u32) -> [u8; 4] {
    n.to_be_bytes()
}

const T: Timestamp = Timestamp(1_700_000_000_000);

/// A tracker past the handshake, with home `/home/v`.
fn started(policy: FilePolicy) -> Tracker {
    let mut t = Tracker::new(policy);
    let out = t.up(&packet(FXP_INIT, &[&3u32.to_be_bytes()]), T).unwrap();
    assert_eq!(out.to_target.len(), 2, "init and the home lookup");
    let own = match parse_request(&out.to_target[1]).unwrap() {
        Request::Other { id: Some(id), .. } => id,
        other => panic!("{other:?}"),
    };
    let out = t
        .down(&packet(FXP_VERSION, &[&3u32.to_be_bytes()]), T)
        .unwrap();
    assert!(out.to_vendor.is_empty(), "version held until home is known");
    let name = packet(
        FXP_NAME,
        &[
            &id(own),
            &1u32.to_be_bytes(),
            &s(b"/home/v"),
            &s(b"x"),
            &0u32.to_be_bytes(),
        ],
    );
    let out = t.down(&name, T).unwrap();
    assert_eq!(out.to_vendor.len(), 1, "version released, home swallowed");
    t
}

fn open(t: &mut Tracker, n: u32, path: &[u8], flags: u32) -> Output {
    t.up(
        &packet(
            FXP_OPEN,
            &[&id(n), &s(path), &flags.to_be_bytes(), &0u32.to_be_bytes()],
        ),
        T,
    )
    .unwrap()
}

fn status_of(p: &[u8]) -> (u32, u32, String) {
    match parse_reply(p).unwrap() {
        Reply::Status { id, code, message } => (id, code, message),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_upload_is_one_record_with_the_hash_of_its_bytes() {
    let mut t = started(FilePolicy::default());
    let out = open(&mut t, 1, b"up.bin", FXF_WRITE | FXF_CREAT | FXF_TRUNC);
    assert_eq!(out.to_target.len(), 1);
    let out = t.down(&packet(FXP_HANDLE, &[&id(1), &s(b"h")]), T).unwrap();
    assert_eq!(out.to_vendor.len(), 1);
    // Pipelined writes, the second answered first.
    for (n, off, data) in [(2u32, 0u64, &b"hello "[..]), (3, 6, b"world")] {
        t.up(
            &packet(FXP_WRITE, &[&id(n), &s(b"h"), &off.to_be_bytes(), &s(data)]),
            T,
        )
        .unwrap();
    }
    t.up(&packet(FXP_CLOSE, &[&id(4), &s(b"h")]), T).unwrap();
    let out = t
        .down(&status(4, FX_OK, ""), Timestamp(T.0 + 1000))
        .unwrap();
    assert_eq!(out.events.len(), 1);
    let d = &out.events[0].detail;
    assert_eq!(out.events[0].action, "file");
    assert_eq!(d["path"], "/home/v/up.bin");
    assert_eq!(d["direction"], "upload");
    assert_eq!(d["size"], 11);
    assert_eq!(d["result"], "complete");
    assert_eq!(d["non_sequential"], false);
    assert_eq!(d["sha256"], hex::encode(Sha256::digest(b"hello world")));
    assert!(t.finish(T).is_empty());
}

#[test]
fn a_download_cut_short_is_incomplete_with_the_bytes_so_far() {
    let mut t = started(FilePolicy::default());
    open(&mut t, 1, b"/srv/big", FXF_READ);
    t.down(&packet(FXP_HANDLE, &[&id(1), &s(b"h")]), T).unwrap();
    t.up(
        &packet(
            FXP_READ,
            &[&id(2), &s(b"h"), &0u64.to_be_bytes(), &4u32.to_be_bytes()],
        ),
        T,
    )
    .unwrap();
    t.down(&packet(FXP_DATA, &[&id(2), &s(b"abcd")]), T)
        .unwrap();
    let events = t.finish(T);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].detail["result"], "incomplete");
    assert_eq!(events[0].detail["size"], 4);
    assert_eq!(
        events[0].detail["sha256"],
        hex::encode(Sha256::digest(b"abcd"))
    );
}

fn restricted() -> FilePolicy {
    FilePolicy {
        prefixes: vec!["/data/in".into()],
        blocked_extensions: vec!["exe".into()],
        max_size: Some(8),
        ..FilePolicy::default()
    }
    .normalized()
    .unwrap()
}

#[test]
fn a_path_outside_the_prefixes_is_answered_by_the_proxy_and_audited() {
    let mut t = started(restricted());
    for (n, path) in [
        (1u32, &b"/data/inbox/x"[..]),
        (2, b"/data/in/../../etc/passwd"),
        (3, b"/data/in/setup.EXE"),
        (4, b"x\0y"),
    ] {
        let out = open(&mut t, n, path, FXF_WRITE | FXF_CREAT);
        assert!(
            out.to_target.is_empty(),
            "{}",
            String::from_utf8_lossy(path)
        );
        let (rid, code, msg) = status_of(&out.to_vendor[0]);
        assert_eq!((rid, code), (n, FX_PERMISSION_DENIED));
        assert!(msg.starts_with("cpam policy: "), "{msg}");
        assert_eq!(out.events[0].detail["result"], "refused");
    }
    let out = t
        .up(&packet(FXP_REMOVE, &[&id(9), &s(b"/etc/passwd")]), T)
        .unwrap();
    assert!(out.to_target.is_empty());
    assert_eq!(out.events[0].action, "file.op");
    assert_eq!(out.events[0].detail["result"], "refused");
}

#[test]
fn an_allowed_path_is_resolved_by_the_target_before_it_is_passed_on() {
    let mut t = started(restricted());
    let out = open(&mut t, 1, b"/data/in/link/passwd", FXF_READ);
    assert_eq!(out.to_target.len(), 1);
    let own = parse_request(&out.to_target[0]).unwrap().id().unwrap();
    assert!(own > 0xFFFF_0000, "the proxy's own realpath, not the open");
    let out = t
        .down(
            &packet(
                FXP_NAME,
                &[
                    &id(own),
                    &1u32.to_be_bytes(),
                    &s(b"/etc/passwd"),
                    &s(b""),
                    &0u32.to_be_bytes(),
                ],
            ),
            T,
        )
        .unwrap();
    assert!(out.to_target.is_empty());
    assert_eq!(status_of(&out.to_vendor[0]).1, FX_PERMISSION_DENIED);
    assert_eq!(out.events[0].detail["result"], "refused");

    let out = open(&mut t, 2, b"/data/in/ok", FXF_READ);
    let own = parse_request(&out.to_target[0]).unwrap().id().unwrap();
    let out = t
        .down(
            &packet(
                FXP_NAME,
                &[
                    &id(own),
                    &1u32.to_be_bytes(),
                    &s(b"/data/in/ok"),
                    &s(b""),
                    &0u32.to_be_bytes(),
                ],
            ),
            T,
        )
        .unwrap();
    assert_eq!(out.to_target.len(), 1);
    assert!(matches!(
        parse_request(&out.to_target[0]).unwrap(),
        Request::Open { id: 2, .. }
    ));
}

#[test]
fn reads_and_writes_past_the_size_limit_are_refused() {
    let policy = FilePolicy {
        max_size: Some(8),
        ..FilePolicy::default()
    };
    let mut t = started(policy);
    open(&mut t, 1, b"/f", FXF_WRITE);
    t.down(&packet(FXP_HANDLE, &[&id(1), &s(b"h")]), T).unwrap();
    let out = t
        .up(
            &packet(
                FXP_WRITE,
                &[&id(2), &s(b"h"), &4u64.to_be_bytes(), &s(b"12345")],
            ),
            T,
        )
        .unwrap();
    assert!(out.to_target.is_empty());
    assert_eq!(status_of(&out.to_vendor[0]).1, FX_PERMISSION_DENIED);
    t.up(&packet(FXP_CLOSE, &[&id(3), &s(b"h")]), T).unwrap();
    let out = t.down(&status(3, FX_OK, ""), T).unwrap();
    assert_eq!(out.events[0].detail["result"], "refused");

    open(&mut t, 4, b"/g", FXF_READ);
    t.down(&packet(FXP_HANDLE, &[&id(4), &s(b"g")]), T).unwrap();
    let out = t
        .up(
            &packet(
                FXP_READ,
                &[
                    &id(5),
                    &s(b"g"),
                    &0u64.to_be_bytes(),
                    &32768u32.to_be_bytes(),
                ],
            ),
            T,
        )
        .unwrap();
    match parse_request(&out.to_target[0]).unwrap() {
        Request::Read { len, .. } => assert_eq!(len, 8, "shortened to the limit"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_and_oversized_packets_are_fatal() {
    let mut t = Tracker::new(FilePolicy::default());
    assert!(t.up(&packet(FXP_OPEN, &[&id(1), &[0, 0, 9]]), T).is_err());
    let mut t = Tracker::new(FilePolicy::default());
    assert!(t.up(&u32::MAX.to_be_bytes(), T).is_err());
    let mut t = Tracker::new(FilePolicy::default());
    assert!(t.down(&[0, 0, 0, 0], T).is_err());
}

#[test]
fn uploads_can_be_forbidden_while_downloads_pass() {
    let mut t = started(FilePolicy {
        upload: false,
        ..FilePolicy::default()
    });
    let out = open(&mut t, 1, b"/x", FXF_WRITE | FXF_CREAT);
    assert!(out.to_target.is_empty());
    let out = t
        .up(
            &packet(FXP_MKDIR, &[&id(2), &s(b"/d"), &0u32.to_be_bytes()]),
            T,
        )
        .unwrap();
    assert!(out.to_target.is_empty());
    let out = open(&mut t, 3, b"/x", FXF_READ);
    assert_eq!(out.to_target.len(), 1);
    let _ = Bytes::new();
}
