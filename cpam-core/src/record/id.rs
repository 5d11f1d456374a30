//! Recording ids: `<session id>.<channel>`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, Result};
use crate::model::SessionId;

/// One terminal channel's recording: `<session id>.<channel>`, e.g.
/// `ses_abcd.0`. Parsing accepts nothing else, so an id is always safe as a
/// file name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct RecordingId(String);

impl RecordingId {
    /// The recording of `channel` of `session`.
    pub fn new(session: &SessionId, channel: u32) -> Result<RecordingId> {
        RecordingId::parse(&format!("{session}.{channel}"))
    }

    /// Parses `ses_<token>.<channel>`.
    pub fn parse(text: &str) -> Result<RecordingId> {
        let bad = || {
            Error::invalid(format!(
                "recording id `{}` must be a session id, a dot and a channel number (ses_abc.0)",
                text.chars().take(80).collect::<String>()
            ))
        };
        let (session, channel) = text.rsplit_once('.').ok_or_else(bad)?;
        let token = session
            .strip_prefix(SessionId::PREFIX)
            .and_then(|t| t.strip_prefix('_'))
            .ok_or_else(bad)?;
        let token_ok = !token.is_empty()
            && token.len() <= 64
            && token
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let channel_ok = !channel.is_empty()
            && channel.len() <= 10
            && channel.bytes().all(|b| b.is_ascii_digit())
            && channel.parse::<u32>().is_ok()
            && (channel == "0" || !channel.starts_with('0'));
        if token_ok && channel_ok {
            Ok(RecordingId(text.to_string()))
        } else {
            Err(bad())
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The session the recording belongs to.
    pub fn session(&self) -> SessionId {
        let (s, _) = self.0.rsplit_once('.').unwrap_or((&self.0, ""));
        SessionId(s.to_string())
    }

    /// The terminal channel it records.
    pub fn channel(&self) -> u32 {
        self.0
            .rsplit_once('.')
            .and_then(|(_, c)| c.parse().ok())
            .unwrap_or(0)
    }
}

impl fmt::Display for RecordingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for RecordingId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        RecordingId::parse(s)
    }
}

impl<'de> Deserialize<'de> for RecordingId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RecordingId::parse(&s).map_err(|e| serde::de::Error::custom(e.message()))
    }
}
