use ironrdp_pdu::input::fast_path::{
    FastPathInput, FastPathInputEvent, KeyboardFlags, SynchronizeFlags,
};
use ironrdp_pdu::input::mouse::{MousePdu, PointerFlags};
use ironrdp_pdu::input::mouse_x::{MouseXPdu, PointerXFlags};
use ironrdp_pdu::input::scan_code::{KeyboardFlags as SlowKeyFlags, ScanCodePdu};
use ironrdp_pdu::input::sync::{SyncPdu, SyncToggleFlags};
use ironrdp_pdu::input::unicode::{KeyboardFlags as UnicodeFlags, UnicodePdu};
use ironrdp_pdu::input::{InputEvent as SlowInput, InputEventPdu};
use ironrdp_pdu::rdp::client_info::CompressionType;
use ironrdp_pdu::rdp::headers::{
    CompressionFlags, ShareControlHeader, ShareControlPdu, ShareDataHeader, ShareDataPdu,
    StreamPriority,
};
use ironrdp_pdu::{mcs, x224};

use super::*;

fn fast(events: Vec<FastPathInputEvent>) -> Vec<u8> {
    ironrdp_core::encode_vec(&FastPathInput::new(events).expect("1 to 255 events"))
        .expect("encodes")
}

fn mouse_pdu(flags: PointerFlags, wheel: i16, x: u16, y: u16) -> MousePdu {
    MousePdu {
        flags,
        number_of_wheel_rotation_units: wheel,
        x_position: x,
        y_position: y,
    }
}

fn send_data(channel_id: u16, user_data: Vec<u8>) -> Vec<u8> {
    ironrdp_core::encode_vec(&x224::X224(mcs::SendDataRequest {
        initiator_id: 1007,
        channel_id,
        user_data: user_data.into(),
    }))
    .expect("encodes")
}

fn share_data(pdu: ShareDataPdu) -> Vec<u8> {
    ironrdp_core::encode_vec(&ShareControlHeader {
        share_id: 0x0001_03ea,
        pdu_source: 1007,
        share_control_pdu: ShareControlPdu::Data(ShareDataHeader {
            share_data_pdu: pdu,
            stream_priority: StreamPriority::Medium,
            compression_flags: CompressionFlags::empty(),
            compression_type: CompressionType::K8,
        }),
    })
    .expect("encodes")
}

fn slow(events: Vec<SlowInput>) -> Vec<u8> {
    send_data(1003, share_data(ShareDataPdu::Input(InputEventPdu(events))))
}

fn up(t: f64, pdu: Vec<u8>) -> RdpEvent {
    RdpEvent { t, up: true, pdu }
}

fn key(scancode: u16, down: bool) -> InputEvent {
    InputEvent::Key { scancode, down }
}

#[test]
fn a_recorded_session_gives_its_keys_and_mouse_in_order_with_their_times() {
    let events = vec![
        // The connection sequence and the target's PDUs are no input.
        up(0.0, vec![3, 0, 0, 11, 6, 0xe0, 0, 0, 0, 0, 0]),
        RdpEvent {
            t: 0.1,
            up: false,
            pdu: fast(vec![FastPathInputEvent::KeyboardEvent(
                KeyboardFlags::empty(),
                0x10,
            )]),
        },
        up(
            0.5,
            fast(vec![FastPathInputEvent::SyncEvent(
                SynchronizeFlags::NUM_LOCK,
            )]),
        ),
        up(
            1.0,
            fast(vec![
                FastPathInputEvent::KeyboardEvent(KeyboardFlags::empty(), 0x1e),
                FastPathInputEvent::KeyboardEvent(KeyboardFlags::RELEASE, 0x1e),
                FastPathInputEvent::KeyboardEvent(KeyboardFlags::EXTENDED, 0x4b),
            ]),
        ),
        up(
            1.5,
            fast(vec![
                FastPathInputEvent::MouseEvent(mouse_pdu(PointerFlags::MOVE, 0, 100, 200)),
                FastPathInputEvent::MouseEvent(mouse_pdu(
                    PointerFlags::LEFT_BUTTON | PointerFlags::DOWN,
                    0,
                    100,
                    200,
                )),
                FastPathInputEvent::MouseEvent(mouse_pdu(PointerFlags::LEFT_BUTTON, 0, 100, 200)),
                FastPathInputEvent::MouseEvent(mouse_pdu(
                    PointerFlags::VERTICAL_WHEEL,
                    -120,
                    100,
                    200,
                )),
                FastPathInputEvent::UnicodeKeyboardEvent(KeyboardFlags::empty(), 0x00e9),
                FastPathInputEvent::MouseEventEx(MouseXPdu {
                    flags: PointerXFlags::BUTTON1 | PointerXFlags::DOWN,
                    x_position: 3,
                    y_position: 4,
                }),
            ]),
        ),
        // A virtual channel's data and other share data are no input.
        up(
            1.7,
            send_data(1004, vec![4, 0, 0, 0, 3, 0, 0, 0, 1, 2, 3, 4]),
        ),
        up(
            1.8,
            send_data(1003, share_data(ShareDataPdu::ShutdownRequest)),
        ),
        up(
            2.0,
            slow(vec![
                SlowInput::ScanCode(ScanCodePdu {
                    flags: SlowKeyFlags::DOWN,
                    key_code: 0x2c,
                }),
                SlowInput::ScanCode(ScanCodePdu {
                    flags: SlowKeyFlags::RELEASE | SlowKeyFlags::EXTENDED,
                    key_code: 0x1d,
                }),
                SlowInput::Unicode(UnicodePdu {
                    flags: UnicodeFlags::RELEASE,
                    unicode_code: 0x41,
                }),
                SlowInput::Mouse(mouse_pdu(
                    PointerFlags::RIGHT_BUTTON | PointerFlags::DOWN,
                    0,
                    7,
                    8,
                )),
                SlowInput::Sync(SyncPdu {
                    flags: SyncToggleFlags::CAPS_LOCK,
                }),
            ]),
        ),
    ];
    let track = input_track(&events);
    let got: Vec<(f64, InputEvent)> = track.events.iter().map(|e| (e.t, e.event)).collect();
    let sync = |num_lock, caps_lock| InputEvent::Sync {
        scroll_lock: false,
        num_lock,
        caps_lock,
        kana_lock: false,
    };
    let button = |x, y, button, down| InputEvent::Button { x, y, button, down };
    assert_eq!(
        got,
        vec![
            (0.5, sync(true, false)),
            (1.0, key(0x1e, true)),
            (1.0, key(0x1e, false)),
            (1.0, key(0xe04b, true)),
            (1.5, InputEvent::Pointer { x: 100, y: 200 }),
            (1.5, button(100, 200, PointerButton::Left, true)),
            (1.5, button(100, 200, PointerButton::Left, false)),
            (
                1.5,
                InputEvent::Wheel {
                    x: 100,
                    y: 200,
                    delta: -120,
                    horizontal: false
                }
            ),
            (
                1.5,
                InputEvent::Unicode {
                    code: 0xe9,
                    down: true
                }
            ),
            (1.5, button(3, 4, PointerButton::X1, true)),
            (2.0, key(0x2c, true)),
            (2.0, key(0xe01d, false)),
            (
                2.0,
                InputEvent::Unicode {
                    code: 0x41,
                    down: false
                }
            ),
            (2.0, button(7, 8, PointerButton::Right, true)),
            (2.0, sync(false, true)),
        ]
    );
    assert_eq!((track.pdus, track.skipped), (4, 0), "{track:?}");
    let json = serde_json::to_value(track.events[1]).expect("serializes");
    assert_eq!(
        json,
        serde_json::json!({ "t": 1.0, "type": "key", "scancode": 0x1e, "down": true })
    );
    assert_eq!(track.events[3].event.describe(), "key 0xe04b down");
    assert_eq!(track.events[7].event.describe(), "wheel -120 at 100,200");
}

#[test]
fn garbage_input_pdus_are_counted_with_the_reason_and_never_panic() {
    let good = fast(vec![FastPathInputEvent::KeyboardEvent(
        KeyboardFlags::empty(),
        0x1e,
    )]);
    // An Input Event PDU cut short inside well-framed MCS data.
    let mut cut = share_data(ShareDataPdu::Input(InputEventPdu(vec![
        SlowInput::ScanCode(ScanCodePdu {
            flags: SlowKeyFlags::DOWN,
            key_code: 0x2c,
        }),
    ])));
    cut.truncate(cut.len() - 4);
    let truncated_slow = send_data(1003, cut);
    let events = vec![
        // Two events announced, one sent.
        up(0.1, vec![0x08, 0x04, 0x00, 0x1e]),
        // A length shorter than the header.
        up(0.2, vec![0x04, 0x00]),
        // An unknown event code (7).
        up(0.3, vec![0x04, 0x03, 0xe0]),
        // Encrypted.
        up(0.4, vec![0xc4, 0x05, 0, 0, 0]),
        up(0.5, good),
        up(0.6, truncated_slow),
        up(0.7, Vec::new()),
    ];
    let track = input_track(&events);
    assert_eq!(
        track.events,
        vec![TimedInput {
            t: 0.5,
            event: key(0x1e, true)
        }]
    );
    assert_eq!(track.skipped, 5, "{track:?}");
    let why = track.last_error.unwrap_or_default();
    assert!(why.contains("does not decode"), "{why}");
    assert!(
        decode_input(&[0x04, 0x03, 0xe0]).err().is_some_and(
            |e| e.kind() == ErrorKind::Protocol && e.message().contains("fast-path input PDU")
        ),
        "an unknown fast-path event is named"
    );

    // Random bytes, fast-path and X.224 shaped: no panic.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..20_000 {
        let len = (next() % 40) as usize;
        let mut pdu: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if let Some(b) = pdu.first_mut() {
            *b = if i % 2 == 0 { *b & !0x03 } else { 3 };
        }
        let _ = decode_input(&pdu);
    }
}
