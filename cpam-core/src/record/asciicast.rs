//! asciicast v2, sans I/O: the header line, event lines, a UTF-8 decoder
//! that keeps a code point split across chunks whole, and a reader that
//! turns a `.cast` back into typed events.
//!
//! The format is NDJSON: one header object
//! (`{"version":2,"width":80,"height":24,"timestamp":..,"env":{"TERM":..}}`),
//! then one `[t, code, data]` array per event, `t` in seconds since the
//! start, `code` `"o"` (output), `"i"` (input), `"r"` (resize, `"COLSxROWS"`)
//! or `"m"` (marker).

use std::io::BufRead;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};

/// The `format` a manifest names for these files.
pub const FORMAT: &str = "asciicast-v2";

/// The header of a recording: the first line of the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub version: u8,
    pub width: u16,
    pub height: u16,
    /// Unix seconds of the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Env::is_empty")]
    pub env: Env,
    /// What the events are when they are not a terminal's (an RDP
    /// recording: [`RDP_FORMAT`](super::RDP_FORMAT)); `None` for asciicast.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

/// The header's `env` object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Env {
    #[serde(rename = "TERM", default, skip_serializing_if = "Option::is_none")]
    pub term: Option<String>,
}

impl Env {
    fn is_empty(&self) -> bool {
        self.term.is_none()
    }
}

impl Header {
    /// A version 2 header.
    pub fn new(width: u16, height: u16) -> Header {
        Header {
            version: 2,
            width,
            height,
            timestamp: None,
            command: None,
            title: None,
            env: Env::default(),
            format: None,
        }
    }

    /// The header as one line, newline included.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).unwrap_or_else(|_| {
            format!(
                "{{\"version\":2,\"width\":{},\"height\":{}}}",
                self.width, self.height
            )
        });
        line.push('\n');
        line
    }

    /// Parses a header line; only version 2 is read.
    pub fn parse(line: &str) -> Result<Header> {
        let h: Header = serde_json::from_str(line)
            .map_err(|e| recording_error(format!("the asciicast header is not valid: {e}")))?;
        if h.version != 2 {
            return Err(recording_error(format!(
                "asciicast version {} is not supported (only 2)",
                h.version
            )));
        }
        Ok(h)
    }
}

/// What an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// The terminal showed `data` (`"o"`).
    Output,
    /// The user typed `data` (`"i"`).
    Input,
    /// The terminal was resized to `data`, `"COLSxROWS"` (`"r"`).
    Resize,
    /// A marker named `data` (`"m"`).
    Marker,
}

impl EventKind {
    /// Every kind, in declaration order.
    pub const ALL: [EventKind; 4] = [
        EventKind::Output,
        EventKind::Input,
        EventKind::Resize,
        EventKind::Marker,
    ];

    /// The code in the file.
    pub fn code(self) -> &'static str {
        match self {
            EventKind::Output => "o",
            EventKind::Input => "i",
            EventKind::Resize => "r",
            EventKind::Marker => "m",
        }
    }

    /// The kind of a code in the file.
    pub fn from_code(code: &str) -> Option<EventKind> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }
}

/// One event of a recording.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordingEvent {
    /// Seconds since the recording started.
    pub t: f64,
    pub kind: EventKind,
    pub data: String,
}

impl RecordingEvent {
    /// The event as one line, newline included.
    pub fn to_line(&self) -> String {
        event_line(self.t, self.kind, &self.data)
    }

    /// Parses an event line.
    pub fn parse(line: &str) -> Result<RecordingEvent> {
        let (t, code, data): (f64, String, String) = serde_json::from_str(line)
            .map_err(|e| recording_error(format!("an asciicast event is not valid: {e}")))?;
        let kind = EventKind::from_code(&code)
            .ok_or_else(|| recording_error(format!("unknown asciicast event code `{code}`")))?;
        if !t.is_finite() || t < 0.0 {
            return Err(recording_error(format!("event time {t} is not valid")));
        }
        Ok(RecordingEvent { t, kind, data })
    }
}

/// `[t, "code", "data"]` and a newline; `t` with microsecond precision.
pub fn event_line(t: f64, kind: EventKind, data: &str) -> String {
    let data = serde_json::to_string(data).unwrap_or_else(|_| "\"\"".into());
    format!("[{t:.6}, \"{}\", {data}]\n", kind.code())
}

/// The data of a resize event.
pub fn resize_data(cols: u16, rows: u16) -> String {
    format!("{cols}x{rows}")
}

/// Decodes a byte stream arriving in chunks as UTF-8: a code point split
/// between two chunks is kept until it is whole, and invalid bytes become
/// U+FFFD, so the text of every event is valid and nothing is split.
#[derive(Debug, Default)]
pub struct Utf8Decoder {
    pending: Vec<u8>,
}

impl Utf8Decoder {
    /// The text of `chunk` (with what was pending before it) that is
    /// complete; an incomplete sequence at the end is kept for the next call.
    pub fn decode(&mut self, chunk: &[u8]) -> String {
        let owned;
        let mut input: &[u8] = if self.pending.is_empty() {
            chunk
        } else {
            self.pending.extend_from_slice(chunk);
            owned = std::mem::take(&mut self.pending);
            &owned
        };
        let mut out = String::with_capacity(input.len());
        loop {
            match std::str::from_utf8(input) {
                Ok(s) => {
                    out.push_str(s);
                    break;
                }
                Err(e) => {
                    let (good, rest) = input.split_at(e.valid_up_to());
                    // Valid by construction; the fallback never runs.
                    out.push_str(std::str::from_utf8(good).unwrap_or_default());
                    match e.error_len() {
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            input = &rest[n..];
                        }
                        None => {
                            self.pending.extend_from_slice(rest);
                            break;
                        }
                    }
                }
            }
        }
        out
    }

    /// What is left at the end of the stream: U+FFFD for a sequence that
    /// never completed, else nothing.
    pub fn finish(&mut self) -> String {
        if self.pending.is_empty() {
            String::new()
        } else {
            self.pending.clear();
            char::REPLACEMENT_CHARACTER.to_string()
        }
    }
}

/// Reads a `.cast`: the header, then the events in order.
#[derive(Debug)]
pub struct Reader<R> {
    input: R,
    header: Header,
    line: String,
    number: usize,
}

impl<R: BufRead> Reader<R> {
    /// Reads the header.
    pub fn new(mut input: R) -> Result<Reader<R>> {
        let mut line = String::new();
        input
            .read_line(&mut line)
            .map_err(|e| recording_error(format!("cannot read the recording: {e}")))?;
        if line.trim().is_empty() {
            return Err(recording_error("the recording is empty (no header)"));
        }
        let header = Header::parse(line.trim_end())?;
        Ok(Reader {
            input,
            header,
            line: String::new(),
            number: 1,
        })
    }

    /// The recording's header.
    pub fn header(&self) -> &Header {
        &self.header
    }
}

impl<R: BufRead> Iterator for Reader<R> {
    type Item = Result<RecordingEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.line.clear();
            self.number += 1;
            match self.input.read_line(&mut self.line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => {
                    return Some(Err(recording_error(format!(
                        "cannot read line {} of the recording: {e}",
                        self.number
                    ))));
                }
            }
            let whole = self.line.ends_with('\n');
            let text = self.line.trim_end();
            if text.is_empty() {
                continue;
            }
            return match RecordingEvent::parse(text) {
                Ok(event) => Some(Ok(event)),
                // The last line of a recording being written, cut mid-way.
                Err(_) if !whole => None,
                Err(e) => Some(Err(recording_error(format!(
                    "line {}: {}",
                    self.number,
                    e.message()
                )))),
            };
        }
    }
}

pub(crate) fn recording_error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Recording, message)
}
