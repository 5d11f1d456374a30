use ironrdp_core::encode_vec;
use ironrdp_pdu::bitmap::{BitmapData, BitmapUpdateData, Compression};
use ironrdp_pdu::fast_path::{
    EncryptionFlags, FastPathHeader, FastPathUpdatePdu, Fragmentation, UpdateCode,
};
use ironrdp_pdu::geometry::InclusiveRectangle;

use std::sync::Arc;

use super::*;
use crate::model::Timestamp;
use crate::record::{
    FileRecordingStore, MAX_DESKTOP, RecordingKey, SealState, pdu_line, rdp_header,
};

/// The body of a fast-path bitmap update: one uncompressed 32 bpp
/// rectangle of `w`x`h` at (`x`, `y`), every pixel `bgrx`.
fn bitmap(x: u16, y: u16, w: u16, h: u16, bgrx: [u8; 4]) -> Vec<u8> {
    let data: Vec<u8> = (0..usize::from(w) * usize::from(h))
        .flat_map(|_| bgrx)
        .collect();
    let update = BitmapUpdateData {
        rectangles: vec![BitmapData {
            rectangle: InclusiveRectangle {
                left: x,
                top: y,
                right: x + w - 1,
                bottom: y + h - 1,
            },
            width: w,
            height: h,
            bits_per_pixel: 32,
            compression_flags: Compression::empty(),
            compressed_data_header: None,
            bitmap_data: &data,
        }],
    };
    encode_vec(&update).expect("bitmap update")
}

/// A fast-path PDU holding `data` as one bitmap update's `fragmentation`.
fn pdu(fragmentation: Fragmentation, data: &[u8]) -> Vec<u8> {
    let update = encode_vec(&FastPathUpdatePdu {
        fragmentation,
        update_code: UpdateCode::Bitmap,
        compression_flags: None,
        compression_type: None,
        data,
    })
    .expect("update");
    let mut out =
        encode_vec(&FastPathHeader::new(EncryptionFlags::empty(), update.len())).expect("header");
    out.extend_from_slice(&update);
    out
}

fn down(t: f64, pdu: Vec<u8>) -> RdpEvent {
    RdpEvent { t, up: false, pdu }
}

/// 40 s of a 64x48 desktop: a rectangle every quarter second, in a colour
/// and place of its own, every other one sent in two fragments 0.2 s
/// apart (a keyframe must not fall between them).
fn recording() -> Vec<RdpEvent> {
    let mut events = Vec::new();
    for i in 0..160u16 {
        let t = f64::from(i) * 0.25;
        let c = (i * 37 % 251) as u8;
        let (x, y) = (i * 7 % 56, i * 5 % 40);
        let body = bitmap(x, y, 8, 8, [c, 255 - c, c / 2, 0]);
        if i % 2 == 1 {
            let (a, b) = body.split_at(body.len() / 2);
            events.push(down(t, pdu(Fragmentation::First, a)));
            events.push(down(t + 0.2, pdu(Fragmentation::Last, b)));
        } else {
            events.push(down(t, pdu(Fragmentation::Single, &body)));
        }
    }
    events.sort_by(|a, b| a.t.total_cmp(&b.t));
    events
}

#[test]
fn seeking_from_keyframes_gives_the_pixels_of_decoding_from_the_start() {
    let player = RdpPlayer::with_desktop(recording(), 64, 48).expect("player");
    let times = player.keyframe_times();
    assert!(times.len() >= 10, "keyframes at {times:?}");
    assert!(times.len() <= MAX_KEYFRAMES);
    for w in times.windows(2) {
        assert!(w[1] - w[0] >= KEYFRAME_MIN_GAP, "{times:?}");
    }
    // None between a first fragment and its last.
    for i in (0..160u16).filter(|i| i % 2 == 1) {
        let first = f64::from(i) * 0.25;
        assert!(
            !times.iter().any(|t| *t >= first && *t < first + 0.2),
            "a keyframe inside the fragmented update at {first}: {times:?}"
        );
    }
    let mut t = -0.5;
    while t < 42.0 {
        let seek = player.frame_at(t);
        let start = player.desktop_from_start(t).frame().expect("a frame");
        assert_eq!(seek, start, "at {t} s");
        t += 0.05;
    }
    // The last frame shows the rectangles drawn.
    let last = player.frame_at(player.duration());
    assert!(last.updates > 150 && last.skipped == 0, "{last:?}");
    assert!(last.rgba.chunks_exact(4).any(|p| p[..3] != [0, 0, 0]));
}

#[test]
fn the_desktop_starts_opaque_black() {
    let player = RdpPlayer::with_desktop(recording(), 64, 48).expect("player");
    let first = player.frame_at(0.0);
    // Before the first update nothing is drawn: black, alpha 255.
    let blank = player.frame_at(-1.0);
    assert!(blank.rgba.chunks_exact(4).all(|p| p == [0, 0, 0, 255]));
    assert!(first.rgba.chunks_exact(4).all(|p| p[3] == 255));
}

#[test]
fn keyframes_stay_within_their_count_gap_and_memory_bounds() {
    // A 2048x2048 desktop is 16 MiB a frame: four fit in 64 MiB.
    let events: Vec<_> = (0..100u16)
        .map(|i| {
            down(
                f64::from(i),
                pdu(Fragmentation::Single, &bitmap(i, i, 4, 4, [1, 2, 3, 0])),
            )
        })
        .collect();
    let player = RdpPlayer::with_desktop(events, 2048, 2048).expect("player");
    assert_eq!(
        player.keyframe_times().len(),
        KEYFRAME_BUDGET / (2048 * 2048 * 4)
    );
    assert!(player.keyframe_bytes() <= KEYFRAME_BUDGET);
    // A short recording: at least a second between keyframes.
    let events: Vec<_> = (0..30u16)
        .map(|i| {
            down(
                f64::from(i) / 10.0,
                pdu(Fragmentation::Single, &bitmap(i, 0, 2, 2, [9, 9, 9, 0])),
            )
        })
        .collect();
    let player = RdpPlayer::with_desktop(events, 64, 48).expect("player");
    let times = player.keyframe_times();
    assert!(!times.is_empty() && times.len() <= 3, "{times:?}");
    // A long one: never more than 32.
    let events: Vec<_> = (0..2000u16)
        .map(|i| {
            down(
                f64::from(i),
                pdu(
                    Fragmentation::Single,
                    &bitmap(i % 60, 0, 2, 2, [9, 9, 9, 0]),
                ),
            )
        })
        .collect();
    let player = RdpPlayer::with_desktop(events, 64, 48).expect("player");
    assert_eq!(player.keyframe_times().len(), MAX_KEYFRAMES);
}

/// The MCS Connect Initial of a real `xfreerdp /size:1024x768`.
const CONNECT_INITIAL: &str = include_str!("testdata/connect_initial_1024x768.hex");

/// Writes RDP recording `id` ([`recording`], after a client's Connect
/// Initial) into `store`, sealed if `seal`.
fn write(store: &FileRecordingStore, id: &RecordingId, seal: bool) {
    let mut w = store
        .create(id, Timestamp(1_800_000_000_000))
        .expect("create");
    let mut text = rdp_header(format!("{} rdp", id.session()), 1_800_000_000).to_line();
    let ci = hex::decode(CONNECT_INITIAL.trim()).expect("hex");
    text.push_str(&pdu_line(0.0, true, &ci));
    for e in recording() {
        text.push_str(&pdu_line(e.t, e.up, &e.pdu));
    }
    w.append(text.as_bytes()).expect("append");
    if seal {
        w.seal(Timestamp(1_800_000_040_000), SealState::Complete)
            .expect("seal");
    } else {
        std::mem::forget(w);
    }
}

/// A store holding two sealed RDP recordings, an unsealed one and a
/// terminal recording.
fn store() -> (tempfile::TempDir, FileRecordingStore, [RecordingId; 4]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        FileRecordingStore::open(dir.path(), RecordingKey::from_seed(&[7; 32])).expect("store");
    let id = |s: &str| RecordingId::parse(s).expect("id");
    let ids = [
        id("ses_a.0"),
        id("ses_b.0"),
        id("ses_open.0"),
        id("ses_term.0"),
    ];
    write(&store, &ids[0], true);
    write(&store, &ids[1], true);
    write(&store, &ids[2], false);
    let mut w = store
        .create(&ids[3], Timestamp(1_800_000_000_000))
        .expect("create");
    w.append(crate::record::Header::new(80, 24).to_line().as_bytes())
        .expect("append");
    w.seal(Timestamp(1_800_000_001_000), SealState::Complete)
        .expect("seal");
    (dir, store, ids)
}

#[test]
fn a_stored_recordings_frame_is_a_png_and_bad_requests_say_why() {
    let (_dir, store, [rdp, _, _, term]) = store();
    let player = RdpPlayer::load(&store, &rdp).expect("player");
    assert_eq!(player.size(), (1024, 768));
    let png = rdp_frame_png(&store, &rdp, 10.0).expect("png");
    assert!(png.starts_with(b"\x89PNG"));
    assert_eq!(png, player.frame_at(10.0).to_png().expect("png"));
    let err = rdp_frame_png(&store, &rdp, 99.0).expect_err("beyond the end");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("lasts 39.950 s"), "{err}");
    assert!(rdp_frame_png(&store, &rdp, f64::NAN).is_err());
    assert!(rdp_frame_png(&store, &rdp, -1.0).is_err());
    let err = rdp_frame_png(&store, &term, 1.0).expect_err("a terminal recording");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("not an RDP recording"), "{err}");
    let missing = RecordingId::parse("ses_none.0").expect("id");
    let err = rdp_frame_png(&store, &missing, 1.0).expect_err("unknown");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    // Reading it gives its desktop, not events; listing says it is RDP.
    let read = crate::record::read_recording(&store, &rdp).expect("read");
    assert_eq!(read["events"], serde_json::json!([]));
    assert_eq!(read["desktop"]["width"], 1024);
    assert_eq!(read["desktop"]["pdus"], 241);
    let read = crate::record::read_recording(&store, &term).expect("read");
    assert!(read["desktop"].is_null());
    let kinds: Vec<_> = store
        .list(&crate::record::RecordingFilter::default())
        .expect("list")
        .into_iter()
        .map(|r| (r.id.to_string(), r.kind.as_str()))
        .collect();
    assert!(kinds.contains(&("ses_a.0".into(), "rdp")), "{kinds:?}");
    assert!(
        kinds.contains(&("ses_term.0".into(), "terminal")),
        "{kinds:?}"
    );
}

#[test]
fn the_cache_keeps_the_last_sealed_players_built() {
    let (_dir, store, [a, b, open, term]) = store();
    let players = RdpPlayers::new(1);
    let first = players.get(&store, &a).expect("a");
    assert!(Arc::ptr_eq(&first, &players.get(&store, &a).expect("a")));
    assert_eq!(players.len(), 1);
    // One entry: b evicts a.
    let other = players.get(&store, &b).expect("b");
    assert!(Arc::ptr_eq(&other, &players.get(&store, &b).expect("b")));
    assert!(!Arc::ptr_eq(&first, &players.get(&store, &a).expect("a")));
    assert_eq!(players.len(), 1);
    // A recording still being written is built anew each time.
    let p = players.get(&store, &open).expect("open");
    assert!(!Arc::ptr_eq(&p, &players.get(&store, &open).expect("open")));
    assert!(players.get(&store, &term).is_err());
    assert_eq!(players.len(), 1);
}

#[test]
fn a_desktop_larger_than_rdp_allows_is_refused_not_allocated() {
    // 65535 x 65535 at four bytes a pixel would be 16 GiB per frame.
    let err = RdpPlayer::with_desktop(Vec::new(), u16::MAX, 768).expect_err("too wide");
    assert!(err.to_string().contains("65535x768"), "{err}");
    assert!(RdpPlayer::with_desktop(Vec::new(), 1024, 0).is_err());
    let player = RdpPlayer::with_desktop(Vec::new(), MAX_DESKTOP, 16).expect("the largest");
    assert_eq!(
        player.frame_at(0.0).rgba.len(),
        usize::from(MAX_DESKTOP) * 16 * 4
    );
}

#[test]
fn an_update_that_makes_the_decoder_panic_is_skipped() {
    // From `fuzz_rdp_decoder`: a fast-path surface command whose
    // rectangle's right edge is 0 overflows inside IronRDP's decoder.
    const PDU: &[u8] = &[
        0x00, 0xc5, 0x00, 0x04, 0x27, 0x00, 0x01, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x01, 0x00,
        0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x04, 0x04, 0x00, 0x01, 0x00,
    ];
    let events = vec![down(0.5, PDU.to_vec())];
    let frame = RdpPlayer::with_desktop(events, 1, 1)
        .expect("a player")
        .frame_at(1.0);
    assert_eq!((frame.updates, frame.skipped), (1, 1), "{frame:?}");
}
