//! The input track of an RDP recording (feature `rdp`): the keys and the
//! mouse of the vendor's client, decoded from the client's recorded
//! input PDUs (fast-path input and slow-path Input Event PDUs,
//! MS-RDPBCGR 2.2.8.1) with IronRDP's decoders, each with its time.
//!
//! Sans I/O: [`input_track`] takes a recording's PDUs; what is not an
//! input PDU (the connection sequence, virtual channels, the target's
//! PDUs) is passed over, an input PDU that does not decode is counted in
//! [`InputTrack::skipped`] with the last reason, never a panic.

use ironrdp_core::{Decode as _, ReadCursor};
use ironrdp_pdu::input::fast_path::{
    FastPathInput, FastPathInputEvent, KeyboardFlags as FastKeyFlags, SynchronizeFlags,
};
use ironrdp_pdu::input::mouse::PointerFlags;
use ironrdp_pdu::input::mouse_rel::PointerRelFlags;
use ironrdp_pdu::input::mouse_x::PointerXFlags;
use ironrdp_pdu::input::scan_code::KeyboardFlags as SlowKeyFlags;
use ironrdp_pdu::input::sync::SyncToggleFlags;
use ironrdp_pdu::input::unicode::KeyboardFlags as UnicodeFlags;
use ironrdp_pdu::input::{InputEvent as SlowInput, MousePdu, MouseRelPdu, MouseXPdu};
use ironrdp_pdu::rdp::headers::{ShareControlHeader, ShareControlPdu, ShareDataPdu};
use ironrdp_pdu::{mcs, x224};
use serde::Serialize;

use super::rdp::RdpEvent;
use crate::error::{Error, ErrorKind, Result};

/// A mouse button.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PointerButton {
    Left,
    Right,
    Middle,
    /// The first extended button (back).
    X1,
    /// The second extended button (forward).
    X2,
}

impl PointerButton {
    /// `left`, `right`, `middle`, `x1` or `x2`.
    pub fn as_str(self) -> &'static str {
        match self {
            PointerButton::Left => "left",
            PointerButton::Right => "right",
            PointerButton::Middle => "middle",
            PointerButton::X1 => "x1",
            PointerButton::X2 => "x2",
        }
    }
}

/// One input of the vendor's client, as the target received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum InputEvent {
    /// A key pressed or released: its set-1 scancode, `0xE0xx` for an
    /// extended key, `0xE1xx` for the Pause key's prefix.
    Key { scancode: u16, down: bool },
    /// A Unicode key pressed or released (one UTF-16 code unit).
    Unicode { code: u16, down: bool },
    /// The pointer moved to (`x`, `y`).
    Pointer { x: u16, y: u16 },
    /// A button pressed or released at (`x`, `y`).
    Button {
        x: u16,
        y: u16,
        button: PointerButton,
        down: bool,
    },
    /// The wheel turned at (`x`, `y`): positive away from the user (or
    /// to the right), in wheel units (120 a notch).
    Wheel {
        x: u16,
        y: u16,
        delta: i16,
        horizontal: bool,
    },
    /// The pointer moved by (`dx`, `dy`) (relative mouse mode).
    RelativePointer { dx: i16, dy: i16 },
    /// A button pressed or released in relative mouse mode.
    RelativeButton { button: PointerButton, down: bool },
    /// The toggle keys' states (sent when the client gains the focus).
    Sync {
        scroll_lock: bool,
        num_lock: bool,
        caps_lock: bool,
        kana_lock: bool,
    },
}

impl InputEvent {
    /// A short human line: `key 0x1e down`, `pointer 10,20`, …
    pub fn describe(&self) -> String {
        let updown = |down: bool| if down { "down" } else { "up" };
        match *self {
            InputEvent::Key { scancode, down } => format!("key 0x{scancode:02x} {}", updown(down)),
            InputEvent::Unicode { code, down } => {
                let c =
                    char::from_u32(u32::from(code)).map_or(String::new(), |c| format!(" {c:?}"));
                format!("unicode U+{code:04X}{c} {}", updown(down))
            }
            InputEvent::Pointer { x, y } => format!("pointer {x},{y}"),
            InputEvent::Button { x, y, button, down } => {
                format!("button {} {} at {x},{y}", button.as_str(), updown(down))
            }
            InputEvent::Wheel {
                x,
                y,
                delta,
                horizontal,
            } => format!(
                "{} {delta:+} at {x},{y}",
                if horizontal { "hwheel" } else { "wheel" }
            ),
            InputEvent::RelativePointer { dx, dy } => format!("pointer {dx:+},{dy:+}"),
            InputEvent::RelativeButton { button, down } => {
                format!("button {} {}", button.as_str(), updown(down))
            }
            InputEvent::Sync {
                scroll_lock,
                num_lock,
                caps_lock,
                kana_lock,
            } => {
                let on: Vec<&str> = [
                    (scroll_lock, "scroll"),
                    (num_lock, "num"),
                    (caps_lock, "caps"),
                    (kana_lock, "kana"),
                ]
                .iter()
                .filter(|(b, _)| *b)
                .map(|(_, n)| *n)
                .collect();
                format!("sync locks [{}]", on.join(","))
            }
        }
    }
}

/// An input and when it passed, in seconds from the recording's start.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TimedInput {
    pub t: f64,
    #[serde(flatten)]
    pub event: InputEvent,
}

/// A recording's keystroke and mouse track.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct InputTrack {
    /// The inputs, in the order the client sent them.
    pub events: Vec<TimedInput>,
    /// The client's input PDUs read.
    pub pdus: usize,
    /// The input PDUs that could not be decoded, and the last reason.
    pub skipped: usize,
    pub last_error: Option<String>,
}

/// The input track of a recording's PDUs (see the module docs).
pub fn input_track(events: &[RdpEvent]) -> InputTrack {
    let mut track = InputTrack::default();
    for e in events.iter().filter(|e| e.up) {
        match decode_input(&e.pdu) {
            Ok(None) => {}
            Ok(Some(inputs)) => {
                track.pdus += 1;
                track
                    .events
                    .extend(inputs.into_iter().map(|event| TimedInput { t: e.t, event }));
            }
            Err(error) => {
                track.pdus += 1;
                track.skipped += 1;
                track.last_error = Some(error.message().to_string());
            }
        }
    }
    track
}

/// The inputs of one client PDU: `None` when it is no input PDU, an
/// error naming what is wrong when it is one that does not decode.
pub fn decode_input(pdu: &[u8]) -> Result<Option<Vec<InputEvent>>> {
    let Some(first) = pdu.first() else {
        return Ok(None);
    };
    // The action bits: 0 fast-path, 3 X.224 (TPKT version 3).
    match first & 0x03 {
        0 => fast_path(pdu).map(Some),
        3 => slow_path(pdu),
        _ => Ok(None),
    }
}

fn bad(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Protocol,
        format!("a client {what} that does not decode: {e}"),
    )
}

fn fast_path(pdu: &[u8]) -> Result<Vec<InputEvent>> {
    // IronRDP's header decoder subtracts lengths it has not checked (an
    // overflow on a length field shorter than the header): checked
    // first, and a panic is one more PDU it cannot decode.
    header_fits(pdu).ok_or_else(|| {
        bad(
            "fast-path input PDU",
            "its length is shorter than its header",
        )
    })?;
    let decoded = std::panic::catch_unwind(|| FastPathInput::decode(&mut ReadCursor::new(pdu)))
        .map_err(|_| {
            bad(
                "fast-path input PDU",
                "its length is shorter than its header",
            )
        })?
        .map_err(|e| bad("fast-path input PDU", e))?;
    let mut out = Vec::new();
    for e in decoded.input_events() {
        match *e {
            FastPathInputEvent::KeyboardEvent(flags, code) => out.push(InputEvent::Key {
                scancode: scancode(
                    u16::from(code),
                    flags.contains(FastKeyFlags::EXTENDED),
                    flags.contains(FastKeyFlags::EXTENDED1),
                ),
                down: !flags.contains(FastKeyFlags::RELEASE),
            }),
            FastPathInputEvent::UnicodeKeyboardEvent(flags, code) => {
                out.push(InputEvent::Unicode {
                    code,
                    down: !flags.contains(FastKeyFlags::RELEASE),
                })
            }
            FastPathInputEvent::MouseEvent(m) => mouse(&m, &mut out),
            FastPathInputEvent::MouseEventEx(m) => mouse_x(&m, &mut out),
            FastPathInputEvent::MouseEventRel(m) => mouse_rel(&m, &mut out),
            FastPathInputEvent::SyncEvent(f) => out.push(InputEvent::Sync {
                scroll_lock: f.contains(SynchronizeFlags::SCROLL_LOCK),
                num_lock: f.contains(SynchronizeFlags::NUM_LOCK),
                caps_lock: f.contains(SynchronizeFlags::CAPS_LOCK),
                kana_lock: f.contains(SynchronizeFlags::KANA_LOCK),
            }),
            // A quality-of-experience timestamp is no input of the user.
            FastPathInputEvent::QoeEvent(_) => {}
        }
    }
    Ok(out)
}

/// Whether a fast-path input header's length covers the header itself.
fn header_fits(pdu: &[u8]) -> Option<()> {
    let (length, size) = match *pdu.get(1)? {
        b if b & 0x80 != 0 => ((u16::from(b & 0x7f) << 8) | u16::from(*pdu.get(2)?), 2),
        b => (u16::from(b), 1),
    };
    let count_byte = usize::from((pdu[0] >> 2) & 0x0f == 0);
    (usize::from(length) >= 1 + size + count_byte).then_some(())
}

/// The offset of `pduType2` in a Share Data PDU (MS-RDPBCGR 2.2.8.1.1.1.2)
/// and its value for an Input Event PDU.
const PDU_TYPE2_AT: usize = 14;
const PDU_TYPE2_INPUT: u8 = 0x1c;
/// `pduType` of a Share Data PDU (the low four bits).
const PDU_TYPE_DATA: u16 = 0x7;

fn slow_path(pdu: &[u8]) -> Result<Option<Vec<InputEvent>>> {
    // Any other X.224 PDU (the connection sequence) is no input.
    let Ok(x) = ironrdp_core::decode::<x224::X224<mcs::SendDataRequest<'_>>>(pdu) else {
        return Ok(None);
    };
    let data: &[u8] = &x.0.user_data;
    let is_input = data.len() > PDU_TYPE2_AT
        && u16::from_le_bytes([data[2], data[3]]) & 0x0f == PDU_TYPE_DATA
        && data[PDU_TYPE2_AT] == PDU_TYPE2_INPUT;
    if !is_input {
        // Other share data (focus, suppress output, …) or a virtual
        // channel's data.
        return Ok(None);
    }
    let header = ShareControlHeader::decode(&mut ReadCursor::new(data))
        .map_err(|e| bad("Input Event PDU", e))?;
    let ShareControlPdu::Data(d) = header.share_control_pdu else {
        return Ok(None);
    };
    let ShareDataPdu::Input(input) = d.share_data_pdu else {
        return Err(bad("Input Event PDU", "compressed or of another type"));
    };
    let mut out = Vec::new();
    for e in &input.0 {
        match e {
            SlowInput::ScanCode(k) => out.push(InputEvent::Key {
                scancode: scancode(
                    k.key_code & 0xff,
                    k.flags.contains(SlowKeyFlags::EXTENDED),
                    k.flags.contains(SlowKeyFlags::EXTENDED_1),
                ),
                down: !k.flags.contains(SlowKeyFlags::RELEASE),
            }),
            SlowInput::Unicode(u) => out.push(InputEvent::Unicode {
                code: u.unicode_code,
                down: !u.flags.contains(UnicodeFlags::RELEASE),
            }),
            SlowInput::Mouse(m) => mouse(m, &mut out),
            SlowInput::MouseX(m) => mouse_x(m, &mut out),
            SlowInput::MouseRel(m) => mouse_rel(m, &mut out),
            SlowInput::Sync(s) => out.push(InputEvent::Sync {
                scroll_lock: s.flags.contains(SyncToggleFlags::SCROLL_LOCK),
                num_lock: s.flags.contains(SyncToggleFlags::NUM_LOCK),
                caps_lock: s.flags.contains(SyncToggleFlags::CAPS_LOCK),
                kana_lock: s.flags.contains(SyncToggleFlags::KANA_LOCK),
            }),
            SlowInput::Unused(_) => {}
        }
    }
    Ok(Some(out))
}

/// A set-1 scancode with its prefix: `0xE0xx` extended, `0xE1xx` the
/// Pause key's.
fn scancode(code: u16, extended: bool, extended1: bool) -> u16 {
    if extended {
        0xE000 | code
    } else if extended1 {
        0xE100 | code
    } else {
        code
    }
}

fn mouse(m: &MousePdu, out: &mut Vec<InputEvent>) {
    let (x, y, f) = (m.x_position, m.y_position, m.flags);
    let wheel = f.intersects(PointerFlags::VERTICAL_WHEEL | PointerFlags::HORIZONTAL_WHEEL);
    if wheel {
        out.push(InputEvent::Wheel {
            x,
            y,
            delta: m.number_of_wheel_rotation_units,
            horizontal: f.contains(PointerFlags::HORIZONTAL_WHEEL),
        });
        return;
    }
    let buttons = [
        (PointerFlags::LEFT_BUTTON, PointerButton::Left),
        (PointerFlags::RIGHT_BUTTON, PointerButton::Right),
        (PointerFlags::MIDDLE_BUTTON_OR_WHEEL, PointerButton::Middle),
    ];
    let pressed: Vec<PointerButton> = buttons
        .iter()
        .filter(|(flag, _)| f.contains(*flag))
        .map(|(_, b)| *b)
        .collect();
    if f.contains(PointerFlags::MOVE) || pressed.is_empty() {
        out.push(InputEvent::Pointer { x, y });
    }
    let down = f.contains(PointerFlags::DOWN);
    out.extend(
        pressed
            .into_iter()
            .map(|button| InputEvent::Button { x, y, button, down }),
    );
}

fn mouse_x(m: &MouseXPdu, out: &mut Vec<InputEvent>) {
    let down = m.flags.contains(PointerXFlags::DOWN);
    for (flag, button) in [
        (PointerXFlags::BUTTON1, PointerButton::X1),
        (PointerXFlags::BUTTON2, PointerButton::X2),
    ] {
        if m.flags.contains(flag) {
            out.push(InputEvent::Button {
                x: m.x_position,
                y: m.y_position,
                button,
                down,
            });
        }
    }
}

fn mouse_rel(m: &MouseRelPdu, out: &mut Vec<InputEvent>) {
    let f = m.flags;
    if f.contains(PointerRelFlags::MOVE) {
        out.push(InputEvent::RelativePointer {
            dx: m.x_delta,
            dy: m.y_delta,
        });
    }
    let down = f.contains(PointerRelFlags::DOWN);
    for (flag, button) in [
        (PointerRelFlags::BUTTON1, PointerButton::Left),
        (PointerRelFlags::BUTTON2, PointerButton::Right),
        (PointerRelFlags::BUTTON3, PointerButton::Middle),
        (PointerRelFlags::XBUTTON1, PointerButton::X1),
        (PointerRelFlags::XBUTTON2, PointerButton::X2),
    ] {
        if f.contains(flag) {
            out.push(InputEvent::RelativeButton { button, down });
        }
    }
}

#[cfg(test)]
#[path = "input_tests.rs"]
mod tests;
