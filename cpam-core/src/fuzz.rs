//! Entry points for fuzzers: one function per parser of untrusted input,
//! taking arbitrary bytes. None may panic, whatever the bytes.
//!
//! [`TARGETS`] lists them once. The `cpam-fuzz` crate (`fuzz/`) makes each a
//! `cargo fuzz` target for libFuzzer (nightly), and the property tests run
//! every one of them on random and format-shaped bytes in each `cargo test`
//! (stable). `docs/security.md` records the cases run and what they found.
//!
//! Built with `cfg(test)` or the `fuzzing` feature; not part of the API.

use crate::model::{AuditEvent, AuditRecord, Target, Timestamp};
use crate::policy::{parse_days, parse_duration, parse_hours, parse_schedule};
use crate::proxy::sftp::{FilePolicy, Tracker, codec, normalize};
use crate::record::{Header, RecordingEvent, RecordingId, parse_chain, read_rdp};
use crate::tunnel::allow::{AllowList, Rule};
use crate::tunnel::profile::Profile;

/// A fuzz target: a parser of untrusted input fed arbitrary bytes.
pub type FuzzTarget = fn(&[u8]);

/// Every fuzz target by name (`fuzz_<name>` in `fuzz/fuzz_targets/`).
pub const TARGETS: &[(&str, FuzzTarget)] = &[
    ("profile", profile),
    ("allow_list", allow_list),
    ("policy", policy),
    ("audit", audit),
    ("recording", recording),
    ("target", target),
    ("sftp_packets", sftp_packets),
    ("sftp_session", sftp_session),
    ("rdp_recording", rdp_recording),
    #[cfg(feature = "rdp")]
    ("rdp_client_pdu", rdp_client_pdu),
    #[cfg(feature = "rdp")]
    ("rdp_decoder", rdp_decoder),
];

fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// A profile file as `cpam-connect` reads it.
pub fn profile(data: &[u8]) {
    let _ = Profile::parse(&text(data), "fuzz");
}

/// An allow-list, one rule per line.
pub fn allow_list(data: &[u8]) {
    let text = text(data);
    let lines: Vec<&str> = text.lines().collect();
    for line in &lines {
        let _ = line.parse::<Rule>();
    }
    if let Ok(list) = AllowList::parse(&lines) {
        let _ = list.allows(std::net::Ipv4Addr::LOCALHOST.into(), 22);
    }
}

/// Days, hours, schedules and durations as the CLI and REST take them.
pub fn policy(data: &[u8]) {
    let s = text(data);
    let _ = parse_days(&s);
    let _ = parse_hours(&s);
    let _ = parse_schedule(&s);
    let _ = parse_duration(&s);
}

/// Audit records, events and checkpoints as JSON (database rows, exports,
/// the checkpoint file).
pub fn audit(data: &[u8]) {
    let _ = serde_json::from_slice::<AuditRecord>(data);
    let _ = serde_json::from_slice::<AuditEvent>(data);
    let _ = crate::audit::Checkpoint::parse(&text(data));
    if let Ok(records) = serde_json::from_slice::<Vec<AuditRecord>>(data) {
        let _ = crate::audit::verify(&records);
    }
}

/// A recording: asciicast lines, recording ids, the chain file.
pub fn recording(data: &[u8]) {
    let s = text(data);
    let mut lines = s.lines();
    if let Some(first) = lines.next() {
        let _ = Header::parse(first);
    }
    for line in lines {
        let _ = RecordingEvent::parse(line);
    }
    let _ = RecordingId::parse(&s);
    let _ = parse_chain(data);
}

/// Service targets and RFC 3339 times.
pub fn target(data: &[u8]) {
    let s = text(data);
    let _ = s.parse::<Target>();
    let _ = Timestamp::parse_rfc3339(&s);
}

/// SFTP packets from either side: the framer in chunks the first byte
/// chooses, each packet parsed as a request and as a reply, each path
/// normalized.
pub fn sftp_packets(data: &[u8]) {
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let mut framer = codec::Framer::default();
    for piece in rest.chunks(usize::from(chunk.max(1))) {
        let Ok(packets) = framer.push(piece) else {
            return;
        };
        for packet in packets {
            let _ = codec::parse_request(&packet);
            let _ = codec::parse_reply(&packet);
        }
    }
    let _ = normalize(b"/data/in", rest);
}

/// A whole SFTP channel through the tracker under a restrictive policy.
/// The bytes are pieces, each two header bytes then its data: the top bit
/// says which side sent it (set: the target), the other 15 its length.
pub fn sftp_session(data: &[u8]) {
    let policy = FilePolicy {
        upload: true,
        download: false,
        prefixes: vec!["/data/in".into()],
        max_size: Some(1 << 20),
        blocked_extensions: vec!["exe".into()],
    };
    let mut tracker = Tracker::new(policy);
    let mut now = Timestamp(0);
    let mut rest = data;
    while let [a, b, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([a & 0x7f, *b]));
        let (piece, tail) = tail.split_at(len.min(tail.len()));
        now = Timestamp(now.0 + 1);
        let result = if a & 0x80 == 0 {
            tracker.up(piece, now)
        } else {
            tracker.down(piece, now)
        };
        if result.is_err() {
            break;
        }
        rest = tail;
    }
    let _ = tracker.finish(Timestamp(now.0 + 1));
}

/// Encodes `(from_target, bytes)` pieces for [`sftp_session`].
pub fn sftp_session_input(pieces: &[(bool, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (from_target, bytes) in pieces {
        for chunk in bytes.chunks(0x7fff) {
            let [hi, lo] = (chunk.len() as u16).to_be_bytes();
            out.push(if *from_target { hi | 0x80 } else { hi });
            out.push(lo);
            out.extend_from_slice(chunk);
        }
    }
    out
}

/// An RDP recording file (`cpam-rdp-pdu-v1`), read and, with feature
/// `rdp`, decoded at its start, middle and end.
pub fn rdp_recording(data: &[u8]) {
    let Ok((_, events)) = read_rdp(data) else {
        return;
    };
    #[cfg(feature = "rdp")]
    if let Ok(player) = crate::record::RdpPlayer::new(events) {
        let end = player.duration();
        for t in [0.0, end / 2.0, end] {
            let _ = player.frame_at(t);
        }
    }
    #[cfg(not(feature = "rdp"))]
    drop(events);
}

/// One client-to-target PDU through the proxy's capability filter.
#[cfg(feature = "rdp")]
pub fn rdp_client_pdu(data: &[u8]) {
    let mut frame = data.to_vec();
    let _ = crate::proxy::rdp::filter::patch_client_pdu(&mut frame);
    let _ = crate::proxy::rdp::filter::patch_client_pdu(&mut frame[..data.len() / 2]);
}

/// Target-to-client PDUs through the decoder of replay and live view: the
/// first two bytes choose a small desktop, the rest is cut into PDUs at
/// lengths it chooses (two bytes each).
#[cfg(feature = "rdp")]
pub fn rdp_decoder(data: &[u8]) {
    let [w, h, rest @ ..] = data else {
        return;
    };
    let mut events = Vec::new();
    let mut rest = rest;
    let mut t = 0.0;
    while let [a, b, tail @ ..] = rest {
        let len = usize::from(u16::from_le_bytes([*a, *b]));
        let (pdu, tail) = tail.split_at(len.min(tail.len()));
        t += 0.01;
        events.push(crate::record::RdpEvent {
            t,
            up: false,
            pdu: pdu.to_vec(),
        });
        rest = tail;
    }
    let size = |b: u8| u16::from(b) + 1;
    if let Ok(player) = crate::record::RdpPlayer::with_desktop(events, size(*w), size(*h)) {
        let _ = player.frame_at(player.duration());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_has_its_cargo_fuzz_file() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/fuzz_targets");
        for (name, _) in TARGETS {
            let file = dir.join(format!("fuzz_{name}.rs"));
            let text = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            assert!(
                text.contains(&format!("cpam_core::fuzz::{name}(")),
                "{} does not call cpam_core::fuzz::{name}",
                file.display()
            );
        }
    }
}
