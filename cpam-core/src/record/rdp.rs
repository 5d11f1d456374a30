//! RDP recordings: every PDU of a session both ways, with its time, in the
//! same store, chunk chain and signed manifest as terminal recordings.
//!
//! The file is NDJSON shaped like asciicast v2 so the store reads its start
//! the same way: a header whose `format` is [`RDP_FORMAT`], then one
//! `[t, code, hex]` array per PDU, `code` `"ru"` (client to target) or
//! `"rd"` (target to client). Asciicast readers skip it (its `format`).
//!
//! [`RdpPlayer`] (feature `rdp`) replays the target's PDUs through
//! IronRDP's fast-path decoder, passively (its answers are dropped), into
//! a framebuffer: the desktop at time T, saved as PNG.

use std::io::BufRead;

use super::asciicast::{Header, recording_error};
use crate::error::Result;

/// The `format` of an RDP recording's header.
pub const RDP_FORMAT: &str = "cpam-rdp-pdu-v1";

/// The header of a new RDP recording titled `title`, started at `unix_secs`.
pub fn rdp_header(title: String, unix_secs: i64) -> Header {
    let mut h = Header::new(0, 0);
    h.timestamp = Some(unix_secs);
    h.title = Some(title);
    h.format = Some(RDP_FORMAT.into());
    h
}

/// One PDU as a line, newline included.
pub fn pdu_line(t: f64, up: bool, pdu: &[u8]) -> String {
    format!(
        "[{t:.6},\"{}\",\"{}\"]\n",
        if up { "ru" } else { "rd" },
        hex::encode(pdu)
    )
}

/// One recorded PDU.
#[derive(Debug, Clone, PartialEq)]
pub struct RdpEvent {
    /// Seconds since the recording started.
    pub t: f64,
    /// From the client towards the target.
    pub up: bool,
    pub pdu: Vec<u8>,
}

/// Reads an RDP recording: its header and its PDUs. A last line cut
/// mid-way (a recording still written, or cut by a crash) ends it.
pub fn read_rdp(mut input: impl BufRead) -> Result<(Header, Vec<RdpEvent>)> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .map_err(|e| recording_error(format!("cannot read the recording: {e}")))?;
    let header = Header::parse(line.trim_end())?;
    if header.format.as_deref() != Some(RDP_FORMAT) {
        return Err(crate::Error::invalid(
            "the recording is not an RDP recording",
        ));
    }
    let mut events = Vec::new();
    for (n, l) in input.lines().enumerate() {
        let l = l.map_err(|e| recording_error(format!("cannot read the recording: {e}")))?;
        if l.trim().is_empty() {
            continue;
        }
        let parsed: std::result::Result<(f64, String, String), _> = serde_json::from_str(&l);
        let Ok((t, code, data)) = parsed else {
            // Only the last line may be cut.
            break;
        };
        let up = match code.as_str() {
            "ru" => true,
            "rd" => false,
            other => {
                return Err(recording_error(format!(
                    "line {}: unknown RDP event code `{other}`",
                    n + 2
                )));
            }
        };
        let pdu =
            hex::decode(&data).map_err(|e| recording_error(format!("line {}: {e}", n + 2)))?;
        events.push(RdpEvent { t, up, pdu });
    }
    Ok((header, events))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pdus_read_back_as_written_and_a_cut_last_line_ends_the_recording() -> Result<()> {
        let mut text = rdp_header("ses_x rdp".into(), 1_700_000_000).to_line();
        text.push_str(&pdu_line(0.0, true, &[3, 0, 0, 4]));
        text.push_str(&pdu_line(0.25, false, &[0, 5, 1, 2, 3]));
        text.push_str("[0.5,\"rd\",\"00");
        let (header, events) = read_rdp(text.as_bytes())?;
        assert_eq!(header.format.as_deref(), Some(RDP_FORMAT));
        assert_eq!(
            events,
            vec![
                RdpEvent {
                    t: 0.0,
                    up: true,
                    pdu: vec![3, 0, 0, 4]
                },
                RdpEvent {
                    t: 0.25,
                    up: false,
                    pdu: vec![0, 5, 1, 2, 3]
                },
            ]
        );
        let terminal = super::super::asciicast::Header::new(80, 24).to_line();
        assert!(
            read_rdp(terminal.as_bytes()).is_err(),
            "a terminal recording is no RDP one"
        );
        Ok(())
    }
}
