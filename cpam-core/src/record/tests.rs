//! Recordings without a server: the format, the chain and its signature,
//! every kind of tamper, crash sealing, search and the screen model.

use std::io::Read as _;

use super::*;
use crate::error::ErrorKind;
use crate::model::{SessionId, Timestamp};

fn key() -> RecordingKey {
    RecordingKey::from_seed(&[7; 32])
}

fn rid(s: &str) -> RecordingId {
    RecordingId::parse(s).expect("a valid id")
}

fn header_line() -> String {
    let mut h = Header::new(80, 24);
    h.timestamp = Some(1_800_000_000);
    h.env.term = Some("xterm-256color".into());
    h.to_line()
}

/// A store in a fresh directory with one sealed recording of three chunks.
fn sealed() -> (tempfile::TempDir, FileRecordingStore, RecordingId) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FileRecordingStore::open(&dir.path().join("recordings"), key()).expect("store");
    let id = rid("ses_abc.0");
    let mut w = store
        .create(&id, Timestamp(1_800_000_000_000))
        .expect("create");
    w.append(header_line().as_bytes()).expect("append");
    w.append(event_line(0.5, EventKind::Output, "hello world\r\n").as_bytes())
        .expect("append");
    w.append(
        format!(
            "{}{}",
            event_line(1.0, EventKind::Resize, "100x30"),
            event_line(1.25, EventKind::Output, "bye\r\n")
        )
        .as_bytes(),
    )
    .expect("append");
    let m = w
        .seal(Timestamp(1_800_000_002_000), SealState::Complete)
        .expect("seal");
    assert_eq!(m.manifest.chunks, 3);
    (dir, store, id)
}

fn cat(store: &FileRecordingStore, id: &RecordingId) -> String {
    let mut s = String::new();
    store
        .open(id)
        .expect("open")
        .read_to_string(&mut s)
        .expect("utf-8");
    s
}

/// `verify` fails with a `Recording` error whose message contains `says`.
fn check_fails(store: &FileRecordingStore, id: &RecordingId, says: &str) {
    let e = store.verify(id).expect_err("tampering must be detected");
    assert_eq!(e.kind(), ErrorKind::Recording, "{e}");
    assert!(e.message().contains(says), "`{e}` should say `{says}`");
}

#[test]
fn written_lines_parse_as_asciicast_v2() {
    let (_dir, store, id) = sealed();
    let text = cat(&store, &id);
    let mut lines = text.lines();
    let header: serde_json::Value =
        serde_json::from_str(lines.next().expect("header")).expect("json");
    assert_eq!(header["version"], 2);
    assert_eq!(header["width"], 80);
    assert_eq!(header["height"], 24);
    assert_eq!(header["env"]["TERM"], "xterm-256color");
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(line).expect("event json");
        let a = v.as_array().expect("event array");
        assert_eq!(a.len(), 3);
        assert!(a[0].is_f64());
        assert!(["o", "i", "r", "m"].contains(&a[1].as_str().expect("code")));
    }
    let events: Vec<_> = store
        .events(&id)
        .expect("events")
        .collect::<crate::Result<_>>()
        .expect("parse");
    assert_eq!(
        events,
        vec![
            RecordingEvent {
                t: 0.5,
                kind: EventKind::Output,
                data: "hello world\r\n".into()
            },
            RecordingEvent {
                t: 1.0,
                kind: EventKind::Resize,
                data: "100x30".into()
            },
            RecordingEvent {
                t: 1.25,
                kind: EventKind::Output,
                data: "bye\r\n".into()
            },
        ]
    );
}

#[test]
fn a_reader_stops_at_a_last_line_cut_mid_way() {
    let text = format!(
        "{}{}[0.9, \"o\", \"half",
        header_line(),
        event_line(0.5, EventKind::Output, "whole")
    );
    let events: Vec<_> = Reader::new(text.as_bytes())
        .expect("header")
        .collect::<crate::Result<_>>()
        .expect("the cut line is not an error");
    assert_eq!(events.len(), 1);
    let broken = format!("{}[0.9, \"o\", \"half\n", header_line());
    let mut r = Reader::new(broken.as_bytes()).expect("header");
    assert!(
        r.next().expect("an item").is_err(),
        "a bad whole line is an error"
    );
}

#[test]
fn event_data_is_escaped_json() {
    let line = event_line(0.1, EventKind::Output, "\x1b[1m\"q\"\\\u{7}\n");
    let back = RecordingEvent::parse(line.trim_end()).expect("parses");
    assert_eq!(back.data, "\x1b[1m\"q\"\\\u{7}\n");
    assert!(line.ends_with("]\n") && !line[..line.len() - 1].contains('\n'));
}

#[test]
fn utf8_split_across_chunks_stays_whole() {
    let text = "é€😀";
    let bytes = text.as_bytes();
    // Every split point of the byte string, in two chunks and byte by byte.
    for cut in 0..=bytes.len() {
        let mut d = Utf8Decoder::default();
        let mut out = d.decode(&bytes[..cut]);
        out += &d.decode(&bytes[cut..]);
        out += &d.finish();
        assert_eq!(out, text, "cut at {cut}");
    }
    let mut d = Utf8Decoder::default();
    let mut out = String::new();
    for b in bytes {
        let part = d.decode(std::slice::from_ref(b));
        assert!(part.chars().all(|c| c != char::REPLACEMENT_CHARACTER));
        out += &part;
    }
    assert_eq!(out, text);
}

#[test]
fn invalid_utf8_becomes_replacement_characters() {
    let mut d = Utf8Decoder::default();
    assert_eq!(d.decode(b"a\xffb\xc3("), "a\u{fffd}b\u{fffd}(");
    // A sequence cut by the end of the stream.
    assert_eq!(d.decode(b"ok\xe2\x82"), "ok");
    assert_eq!(d.finish(), "\u{fffd}");
    assert_eq!(d.finish(), "");
}

#[test]
fn a_sealed_recording_verifies() {
    let (_dir, store, id) = sealed();
    let v = store.verify(&id).expect("verifies");
    assert_eq!(v.state, SealState::Complete);
    assert_eq!(v.chunks, 3);
    assert_eq!(v.signer, key().public_hex());
    let m = store.manifest(&id).expect("read").expect("sealed");
    assert_eq!(m.manifest.session_id, SessionId("ses_abc".into()));
    assert_eq!(m.manifest.size, cat(&store, &id).len() as u64);
}

#[test]
fn a_one_byte_edit_is_detected() {
    let (_dir, store, id) = sealed();
    let path = store.cast_path(&id);
    let mut bytes = std::fs::read(&path).expect("read");
    let at = bytes
        .windows(5)
        .position(|w| w == b"hello")
        .expect("text present");
    bytes[at] = b'j';
    std::fs::write(&path, &bytes).expect("write");
    check_fails(&store, &id, "chunk 1");
    check_fails(&store, &id, "edited");
}

#[test]
fn truncation_is_detected() {
    let (_dir, store, id) = sealed();
    let path = store.cast_path(&id);
    let bytes = std::fs::read(&path).expect("read");
    std::fs::write(&path, &bytes[..bytes.len() - 3]).expect("write");
    check_fails(&store, &id, "cut to");
}

#[test]
fn appended_bytes_are_detected() {
    let (_dir, store, id) = sealed();
    let path = store.cast_path(&id);
    let mut bytes = std::fs::read(&path).expect("read");
    bytes.extend_from_slice(event_line(9.0, EventKind::Output, "forged").as_bytes());
    std::fs::write(&path, &bytes).expect("write");
    check_fails(&store, &id, "appended");
}

#[test]
fn a_removed_chunk_with_its_chain_line_is_detected() {
    let (_dir, store, id) = sealed();
    let chain_path = store.dir().join(format!("{id}.chain"));
    let chain = std::fs::read_to_string(&chain_path).expect("read");
    let kept: Vec<&str> = chain.lines().take(2).collect();
    std::fs::write(&chain_path, format!("{}\n", kept.join("\n"))).expect("write");
    let path = store.cast_path(&id);
    let records = parse_chain(chain.as_bytes()).0;
    let bytes = std::fs::read(&path).expect("read");
    std::fs::write(&path, &bytes[..records[2].offset as usize]).expect("write");
    check_fails(&store, &id, "chunks were added or removed");
}

#[test]
fn a_manifest_edit_breaks_the_signature() {
    let (_dir, store, id) = sealed();
    let path = store.dir().join(format!("{id}.manifest.json"));
    let mut m = store.manifest(&id).expect("read").expect("sealed");
    m.manifest.ended_at = Timestamp(m.manifest.ended_at.0 + 60_000);
    std::fs::write(&path, m.to_bytes()).expect("write");
    check_fails(&store, &id, "signature does not match");
}

#[test]
fn a_manifest_signed_by_another_key_is_refused() {
    let (_dir, store, id) = sealed();
    let path = store.dir().join(format!("{id}.manifest.json"));
    let m = store.manifest(&id).expect("read").expect("sealed");
    let forged = RecordingKey::from_seed(&[9; 32])
        .sign(m.manifest)
        .expect("sign");
    std::fs::write(&path, forged.to_bytes()).expect("write");
    check_fails(&store, &id, "signed by another key");
}

#[test]
fn an_edited_chain_line_is_detected() {
    let (_dir, store, id) = sealed();
    let chain_path = store.dir().join(format!("{id}.chain"));
    let chain = std::fs::read_to_string(&chain_path).expect("read");
    let edited = chain.replacen("\"len\":", "\"len\":1", 1);
    std::fs::write(&chain_path, edited).expect("write");
    assert!(store.verify(&id).is_err());
}

#[test]
fn a_recording_cut_by_a_crash_is_sealed_incomplete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FileRecordingStore::open(dir.path(), key()).expect("store");
    let id = rid("ses_crash.2");
    let mut w = store.create(&id, Timestamp::now()).expect("create");
    w.append(header_line().as_bytes()).expect("append");
    w.append(event_line(0.1, EventKind::Output, "before").as_bytes())
        .expect("append");
    // The writer dies: its last line reached the file but not the chain,
    // and the one after it was cut mid-line.
    drop(w);
    let path = store.cast_path(&id);
    let mut bytes = std::fs::read(&path).expect("read");
    bytes.extend_from_slice(event_line(0.2, EventKind::Output, "unchained").as_bytes());
    bytes.extend_from_slice(b"[0.3, \"o\", \"cut sh");
    std::fs::write(&path, &bytes).expect("write");
    assert_eq!(
        store.list(&RecordingFilter::default()).expect("list")[0].state,
        None
    );
    check_fails(&store, &id, "not sealed");

    let sealed = store.seal_abandoned().expect("seal");
    assert_eq!(sealed, vec![id.clone()]);
    let v = store.verify(&id).expect("verifies");
    assert_eq!(v.state, SealState::Incomplete);
    assert_eq!(v.chunks, 3);
    let text = cat(&store, &id);
    assert!(text.contains("before") && text.contains("unchained"));
    assert!(!text.contains("cut sh") && text.ends_with("]\n"));
    let events: Vec<_> = store
        .events(&id)
        .expect("events")
        .collect::<crate::Result<_>>()
        .expect("all lines parse");
    assert_eq!(events.len(), 2);
    // Sealing is done once.
    assert!(store.seal_abandoned().expect("again").is_empty());
    // And an edit after the sealing is detected like any other.
    let mut bytes = std::fs::read(&path).expect("read");
    let at = bytes.windows(6).position(|w| w == b"before").expect("text");
    bytes[at] = b'B';
    std::fs::write(&path, &bytes).expect("write");
    check_fails(&store, &id, "edited");
}

#[test]
fn a_recording_that_never_wrote_seals_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FileRecordingStore::open(dir.path(), key()).expect("store");
    let id = rid("ses_empty.0");
    drop(store.create(&id, Timestamp::now()).expect("create"));
    assert_eq!(store.seal_abandoned().expect("seal"), vec![id.clone()]);
    let v = store.verify(&id).expect("verifies");
    assert_eq!((v.state, v.size, v.chunks), (SealState::Incomplete, 0, 0));
}

#[test]
fn listing_filters_by_session_and_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FileRecordingStore::open(dir.path(), key()).expect("store");
    for (id, at) in [("ses_a.0", 1_000), ("ses_a.1", 2_000), ("ses_b.0", 3_000)] {
        let w = store.create(&rid(id), Timestamp(at)).expect("create");
        w.seal(Timestamp(at + 10), SealState::Complete)
            .expect("seal");
    }
    let all = store.list(&RecordingFilter::default()).expect("list");
    let ids: Vec<_> = all.iter().map(|i| i.id.to_string()).collect();
    assert_eq!(ids, ["ses_a.0", "ses_a.1", "ses_b.0"]);
    let a = store
        .list(&RecordingFilter::session(&SessionId("ses_a".into())))
        .expect("list");
    assert_eq!(a.len(), 2);
    let late = store
        .list(&RecordingFilter {
            since: Some(Timestamp(1_500)),
            until: Some(Timestamp(3_000)),
            ..RecordingFilter::default()
        })
        .expect("list");
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].id.as_str(), "ses_a.1");
    assert_eq!(late[0].channel, 1);
    assert!(matches!(
        store.create(&rid("ses_a.0"), Timestamp(1)).map(|_| ()),
        Err(e) if e.kind() == ErrorKind::Conflict
    ));
}

#[test]
fn search_finds_text_across_output_events() {
    let (_dir, store, id) = sealed();
    let hits = store
        .search("world\r\nbye", &RecordingFilter::default())
        .expect("search");
    // Split over two events ("hello world\r\n", then "bye\r\n").
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].id, id);
    assert_eq!(hits[0].times, vec![1.25]);
    assert_eq!(
        store
            .search("hello", &RecordingFilter::default())
            .expect("search")[0]
            .times,
        vec![0.5]
    );
    assert!(
        store
            .search("100x30", &RecordingFilter::default())
            .expect("search")
            .is_empty(),
        "resize data is not output"
    );
    assert!(store.search("", &RecordingFilter::default()).is_err());
}

#[test]
fn recording_ids_are_session_dot_channel_only() {
    let id = rid("ses_abc234.17");
    assert_eq!(id.session(), SessionId("ses_abc234".into()));
    assert_eq!(id.channel(), 17);
    assert_eq!(
        RecordingId::new(&SessionId("ses_x".into()), 3)
            .expect("id")
            .as_str(),
        "ses_x.3"
    );
    for bad in [
        "",
        "ses_abc",
        "ses_abc.",
        "ses_.0",
        "usr_abc.0",
        "ses_abc.01",
        "ses_abc.-1",
        "ses_abc.99999999999",
        "ses_../x.0",
        "ses_ABC.0",
        "ses_a/b.0",
    ] {
        let e = RecordingId::parse(bad).expect_err(bad);
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    }
}

#[test]
fn the_key_comes_from_an_ed25519_host_key() {
    let host = crate::tunnel::keys::generate().expect("key");
    let k = RecordingKey::from_host_key(&host).expect("ed25519");
    let m = Manifest {
        format: FORMAT.into(),
        recording_id: rid("ses_k.0"),
        session_id: SessionId("ses_k".into()),
        channel: 0,
        started_at: Timestamp(1),
        ended_at: Timestamp(2),
        state: SealState::Complete,
        size: 0,
        sha256: String::new(),
        chain_head: String::new(),
        chunks: 0,
        signer: String::new(),
    };
    let signed = k.sign(m).expect("sign");
    k.check(&signed).expect("own signature");
    let public = RecordingKey::verify_only(&k.public_hex()).expect("public");
    public
        .check(&signed)
        .expect("checks with the public key alone");
    assert!(public.sign(signed.manifest.clone()).is_err());
    assert!(RecordingKey::from_seed(&[1; 32]).check(&signed).is_err());
}

#[test]
fn a_screen_snapshot_redraws_the_screen() {
    let mut live = Screen::new(20, 5);
    live.process(b"\x1b[31mred\x1b[0m plain\r\nline two\r\n\x1b[2;3H*");
    live.resize(30, 6);
    live.process(b"\x1b[5;10Hhere");
    let mut fresh = Screen::new(30, 6);
    fresh.process(b"garbage that the snapshot clears\r\n\x1b[7m");
    fresh.process(&live.snapshot());
    assert_eq!(fresh.contents(), live.contents());
    assert!(live.contents().contains("red plain"));
    assert!(live.contents().contains("li*e two"));
    // The cursor is where it was: the next byte lands in the same cell.
    live.process(b"X");
    fresh.process(b"X");
    assert_eq!(fresh.contents(), live.contents());
    assert!(fresh.contents().contains("hereX"));
}

#[test]
fn a_screen_follows_terminal_frames() {
    use crate::session::TerminalFrame;
    let mut s = Screen::new(1, 1);
    s.apply(&TerminalFrame::Open {
        channel: 0,
        cols: 40,
        rows: 10,
        term: "xterm".into(),
        command: None,
    });
    assert_eq!(s.size(), (10, 40));
    s.apply(&TerminalFrame::Output {
        channel: 0,
        data: bytes::Bytes::from_static("héllo".as_bytes()),
    });
    s.apply(&TerminalFrame::Input {
        channel: 0,
        data: bytes::Bytes::from_static(b"typed"),
    });
    s.apply(&TerminalFrame::Resize {
        channel: 0,
        cols: 50,
        rows: 12,
    });
    assert_eq!(s.size(), (12, 50));
    assert!(s.contents().starts_with("héllo"));
    assert!(!s.contents().contains("typed"));
}

#[test]
fn an_unknown_event_code_or_version_is_an_error() {
    assert!(RecordingEvent::parse("[0.1, \"x\", \"a\"]").is_err());
    assert!(RecordingEvent::parse("[-1, \"o\", \"a\"]").is_err());
    assert!(Header::parse("{\"version\":3,\"width\":1,\"height\":1}").is_err());
    assert_eq!(
        EventKind::ALL.map(EventKind::code),
        ["o", "i", "r", "m"],
        "the asciicast v2 codes"
    );
    for k in EventKind::ALL {
        assert_eq!(EventKind::from_code(k.code()), Some(k));
    }
}

#[test]
fn verify_all_finds_a_recording_the_audit_log_names_but_the_store_lost() {
    let (_dir, store, id) = sealed();
    let signed = store.manifest(&id).expect("read").expect("sealed");
    let audited = vec![crate::model::AuditRecord {
        seq: 7,
        event: sealed_event(&signed),
        prev_hash: String::new(),
        hash: String::new(),
    }];
    let report = verify_all(&store, &audited).expect("checks");
    assert_eq!((report.verified, report.open), (1, 0));
    assert!(report.failed.is_empty(), "{report:?}");

    // Re-sealed by the same key over other bytes: valid alone, not the seal
    // the audit log names.
    let mut other = signed.manifest.clone();
    other.sha256 = "00".repeat(32);
    let forged = key().sign(other).expect("sign");
    let manifest_path = store.dir().join(format!("{id}.manifest.json"));
    std::fs::write(&manifest_path, forged.to_bytes()).expect("write");
    let report = verify_all(&store, &audited).expect("checks");
    assert!(
        report
            .failed
            .iter()
            .any(|f| f.contains("not the one sealed") && f.contains("record 7")),
        "{report:?}"
    );

    // A manifest that is not JSON any more fails, it does not list as open.
    std::fs::write(&manifest_path, b"{ not json").expect("write");
    let report = verify_all(&store, &audited).expect("checks");
    assert_eq!(report.open, 0, "{report:?}");
    assert!(
        report.failed[0].contains("the manifest is not valid"),
        "{report:?}"
    );

    for ext in ["cast", "chain", "manifest.json"] {
        std::fs::remove_file(store.dir().join(format!("{id}.{ext}"))).expect("remove");
    }
    let report = verify_all(&store, &audited).expect("checks");
    assert_eq!(report.verified, 0);
    assert_eq!(
        report.failed,
        vec![format!(
            "recording {id}, sealed in audit record 7, was removed"
        )]
    );
    assert!(report.to_text().contains("1 failed"));
}

#[test]
fn verify_all_takes_the_seal_with_the_most_chunks_of_a_recording_sealed_twice() {
    let (_dir, store, id) = sealed();
    let signed = store.manifest(&id).expect("read").expect("sealed");
    let record = |seq: i64, m: &crate::record::Manifest| crate::model::AuditRecord {
        seq,
        event: sealed_event(&key().sign(m.clone()).expect("sign")),
        prev_hash: String::new(),
        hash: String::new(),
    };
    // A survivor sealed fewer chunks, then the node completed it: the store's
    // manifest is the later, longer seal.
    let mut shorter = signed.manifest.clone();
    shorter.chunks -= 1;
    shorter.sha256 = "11".repeat(32);
    shorter.chain_head = "22".repeat(32);
    let audited = vec![record(3, &shorter), record(8, &signed.manifest)];
    let report = verify_all(&store, &audited).expect("checks");
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(report.verified, 1);

    // An audited seal covers more than the store's manifest: cut back.
    let mut longer = signed.manifest.clone();
    longer.chunks += 1;
    longer.chain_head = "33".repeat(32);
    let audited = vec![record(3, &signed.manifest), record(8, &longer)];
    let report = verify_all(&store, &audited).expect("checks");
    assert!(
        report
            .failed
            .iter()
            .any(|f| f.contains("not the one sealed") && f.contains("record 8")),
        "{report:?}"
    );
}
