//! The object store against an in-memory one: parts as they fill, the
//! manifest last, the spool emptied only then, reads from the store on a
//! node with an empty spool, and a crashed node's spool finished at start.

use std::io::Read as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::ObjectStore;
use object_store::memory::InMemory;

use super::*;
use crate::record::{EventKind, Header, event_line};

fn key() -> RecordingKey {
    RecordingKey::from_seed(&[9; 32])
}

fn options() -> UploadOptions {
    UploadOptions {
        interval: Duration::from_millis(100),
        max_part: 200,
        max_backoff: Duration::from_millis(500),
    }
}

fn node(dir: &std::path::Path, remote: &Arc<InMemory>) -> ObjectRecordingStore {
    let spool = FileRecordingStore::open(dir, key()).expect("spool");
    let remote: Arc<dyn ObjectStore> = remote.clone();
    ObjectRecordingStore::new(spool, remote, "rec/p", key(), options()).expect("store")
}

fn names(remote: &Arc<InMemory>, id: &RecordingId) -> Vec<String> {
    let spool = tempfile::tempdir().expect("dir");
    let store = node(spool.path(), remote);
    let (r, dir) = (store.shared.remote.clone(), store.shared.layout.dir(id));
    let list = store
        .rt
        .run(async move { r.list_with_delimiter(Some(&dir)).await })
        .expect("run")
        .expect("list");
    let mut names: Vec<_> = list
        .objects
        .iter()
        .map(|o| o.location.to_string())
        .collect();
    names.sort();
    names
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn write(w: &mut dyn RecordingWriter, lines: usize, from: usize) -> Vec<u8> {
    let mut all = Vec::new();
    for i in from..from + lines {
        let line = event_line(
            i as f64 / 10.0,
            EventKind::Output,
            &format!("line {i} ......\r\n"),
        );
        w.append(line.as_bytes()).expect("append");
        all.extend_from_slice(line.as_bytes());
    }
    all
}

fn read_all(store: &ObjectRecordingStore, id: &RecordingId) -> Vec<u8> {
    let mut v = Vec::new();
    store
        .open(id)
        .expect("open")
        .read_to_end(&mut v)
        .expect("read");
    v
}

#[test]
fn parts_as_they_fill_then_the_manifest_then_the_spool_is_emptied() {
    let remote = Arc::new(InMemory::new());
    let dir = tempfile::tempdir().expect("dir");
    let store = node(dir.path(), &remote);
    let id = RecordingId::parse("ses_up.0").expect("id");
    let mut w = store.create(&id, Timestamp::now()).expect("create");
    let mut expect = Header::new(80, 24).to_line().into_bytes();
    w.append(&expect).expect("header");
    expect.extend(write(w.as_mut(), 12, 0));
    // Uploaded while it is written, without waiting for the seal.
    wait_for("the first parts", || {
        names(&remote, &id)
            .iter()
            .any(|n| n.ends_with("chain-000002"))
    });
    let other = tempfile::tempdir().expect("dir");
    let elsewhere = node(other.path(), &remote);
    let open = elsewhere.list(&RecordingFilter::default()).expect("list");
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].state, None);
    let e = elsewhere.verify(&id).expect_err("not sealed yet");
    assert!(e.message().contains("not sealed"), "{e}");

    expect.extend(write(w.as_mut(), 5, 12));
    w.seal(Timestamp::now(), SealState::Complete).expect("seal");
    assert!(store.flush(Duration::from_secs(10)), "uploads finish");
    assert_eq!(store.pending(), 0);
    let left: Vec<_> = std::fs::read_dir(dir.path()).expect("spool").collect();
    assert!(
        left.is_empty(),
        "the spool keeps nothing uploaded: {left:?}"
    );

    let all = names(&remote, &id);
    assert!(
        all.contains(&"rec/p/ses_up.0/manifest".to_string()),
        "{all:?}"
    );
    // Two parts before the seal (waited for above), then at least one for
    // the lines written after them; how the writer's chunks group into
    // parts of at most 200 bytes depends on timing.
    let parts = all.iter().filter(|n| n.contains("/chunk-")).count();
    assert!(parts >= 3, "parts as they fill, then the rest: {all:?}");
    assert_eq!(all.iter().filter(|n| n.contains("/chain-")).count(), parts);

    // Read back on this node (spool empty) and on another.
    for s in [&store, &elsewhere] {
        let v = s.verify(&id).expect("verifies from the store");
        assert_eq!(
            (v.state, v.size),
            (SealState::Complete, expect.len() as u64)
        );
        assert_eq!(read_all(s, &id), expect);
        let list = s.list(&RecordingFilter::default()).expect("list");
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].state, Some(SealState::Complete));
        assert_eq!(list[0].kind, RecordingKind::Terminal);
        assert!(s.manifest(&id).expect("manifest").is_some());
        let hits = s
            .search("line 15", &RecordingFilter::default())
            .expect("search");
        assert_eq!(hits.len(), 1);
    }
    let missing = RecordingId::parse("ses_none.0").expect("id");
    assert_eq!(
        store.open(&missing).err().map(|e| e.kind()),
        Some(ErrorKind::NotFound)
    );
}

#[test]
fn a_crashed_nodes_spool_is_uploaded_when_it_starts_again() {
    let remote = Arc::new(InMemory::new());
    let dir = tempfile::tempdir().expect("dir");
    let id = RecordingId::parse("ses_crash.1").expect("id");
    let mut expect = Header::new(80, 24).to_line().into_bytes();
    {
        let store = node(dir.path(), &remote);
        let mut w = store.create(&id, Timestamp::now()).expect("create");
        w.append(&expect).expect("header");
        expect.extend(write(w.as_mut(), 6, 0));
        wait_for("a part", || {
            names(&remote, &id)
                .iter()
                .any(|n| n.ends_with("chain-000001"))
        });
        // More than the store has, then the node dies: no seal, and its
        // uploader stops with the store.
        expect.extend(write(w.as_mut(), 6, 6));
        drop(w);
        drop(store);
    }
    let uploaded_before = names(&remote, &id);
    assert!(!uploaded_before.iter().any(|n| n.ends_with("manifest")));

    let store = node(dir.path(), &remote);
    assert_eq!(store.seal_abandoned().expect("seal"), vec![id.clone()]);
    assert!(
        store.flush(Duration::from_secs(10)),
        "the spool is uploaded"
    );
    let other = tempfile::tempdir().expect("dir");
    let elsewhere = node(other.path(), &remote);
    let v = elsewhere.verify(&id).expect("verifies from the store");
    assert_eq!(v.state, SealState::Incomplete);
    assert_eq!(v.size, expect.len() as u64);
    assert_eq!(read_all(&elsewhere, &id), expect);
    // Parts already uploaded were kept, not uploaded again from the start.
    for n in &uploaded_before {
        assert!(names(&remote, &id).contains(n));
    }
}

#[test]
fn a_lost_nodes_recording_is_sealed_by_a_survivor_and_completed_if_it_returns() {
    let remote = Arc::new(InMemory::new());
    let dir = tempfile::tempdir().expect("dir");
    let id = RecordingId::parse("ses_lost.0").expect("id");
    let mut expect = Header::new(80, 24).to_line().into_bytes();
    {
        let store = node(dir.path(), &remote);
        let mut w = store.create(&id, Timestamp::now()).expect("create");
        w.append(&expect).expect("header");
        expect.extend(write(w.as_mut(), 8, 0));
        wait_for("parts", || {
            names(&remote, &id)
                .iter()
                .any(|n| n.ends_with("chain-000002"))
        });
        // Its uploader stops, a line goes to the spool only, and it dies.
        drop(store);
        expect.extend(write(w.as_mut(), 1, 8));
        drop(w);
    }
    // A survivor seals what the store holds.
    let other = tempfile::tempdir().expect("dir");
    let survivor = node(other.path(), &remote);
    let sealed = survivor.seal_lost(&id.session()).expect("seal lost");
    assert_eq!(sealed.len(), 1);
    assert_eq!(sealed[0].manifest.state, SealState::Incomplete);
    let v = survivor.verify(&id).expect("verifies from the store");
    assert_eq!(v.state, SealState::Incomplete);
    assert!(v.size > 0 && v.size < expect.len() as u64, "{v:?}");
    let held = read_all(&survivor, &id);
    assert_eq!(held, expect[..held.len()], "a prefix of what was written");
    let listed = survivor.list(&RecordingFilter::default()).expect("list");
    assert_eq!(listed[0].state, Some(SealState::Incomplete));
    // Sealed once: a second survivor (or a second call) leaves it.
    assert!(survivor.seal_lost(&id.session()).expect("again").is_empty());
    let unrelated = SessionId("ses_other".into());
    assert!(survivor.seal_lost(&unrelated).expect("none").is_empty());

    // The lost node starts again: its spool completes the recording.
    let store = node(dir.path(), &remote);
    assert_eq!(store.seal_abandoned().expect("seal"), vec![id.clone()]);
    assert!(
        store.flush(Duration::from_secs(10)),
        "the spool is uploaded"
    );
    let third = tempfile::tempdir().expect("dir");
    let elsewhere = node(third.path(), &remote);
    let v = elsewhere
        .verify(&id)
        .expect("verifies after the node's upload");
    assert_eq!(
        (v.state, v.size),
        (SealState::Incomplete, expect.len() as u64)
    );
    assert_eq!(read_all(&elsewhere, &id), expect);
    assert!(
        !dir.path().join("ses_lost.0.cast").exists(),
        "spool emptied"
    );
}
