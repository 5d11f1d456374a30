//! One channel's way back: the target's output, replies and exit status to
//! the vendor, shown to the session's observers on the way; and the input
//! gate that keeps what the user types at a password prompt out of them.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use russh::server::Msg;
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use tokio::sync::oneshot;

use crate::session::{Direction, Meter, SessionControl, TerminalFrame};

/// The target's replies to requests, matched in order (SSH answers a
/// channel's requests in the order they were sent).
#[derive(Debug, Clone, Default)]
pub(super) struct Replies(Arc<Mutex<VecDeque<oneshot::Sender<bool>>>>);

impl Replies {
    /// Expects one more reply; the returned receiver gets it.
    pub(super) fn expect(&self) -> oneshot::Receiver<bool> {
        let (tx, rx) = oneshot::channel();
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(tx);
        rx
    }

    fn answer(&self, ok: bool) {
        let next = self.0.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
        if let Some(tx) = next {
            let _ = tx.send(ok);
        }
    }
}

/// How much of the target's latest output the gate keeps to spot a prompt.
const PROMPT_TAIL: usize = 96;

/// Decides which typed bytes observers may see: none while the target's
/// last output is a password prompt (`Password:`, `[sudo] password for
/// x:`, `Enter passphrase for key ...:`), until the user presses Enter.
///
/// SSH does not carry the target terminal's echo state, so the prompt is
/// what tells; a terminal without a pty (a command fed from a pipe) is
/// never shown.
#[derive(Debug)]
pub(super) struct InputGate {
    record: bool,
    tty: bool,
    tail: Vec<u8>,
    secret: bool,
}

impl InputGate {
    pub(super) fn new(record: bool) -> Self {
        Self {
            record,
            tty: false,
            tail: Vec::new(),
            secret: false,
        }
    }

    /// The channel now runs terminal `index`; `tty` when it has a pty.
    pub(super) fn set_terminal(&mut self, _index: u32, tty: bool) {
        self.tty = tty;
    }

    /// The target wrote `data`.
    pub(super) fn output(&mut self, data: &[u8]) {
        self.tail.extend_from_slice(data);
        if self.tail.len() > PROMPT_TAIL {
            self.tail.drain(..self.tail.len() - PROMPT_TAIL);
        }
        self.secret = is_secret_prompt(&self.tail);
    }

    /// The user typed `data`; returns whether observers may see it.
    pub(super) fn input(&mut self, data: &[u8]) -> bool {
        let show = self.record && self.tty && !self.secret;
        if self.secret && data.iter().any(|b| *b == b'\r' || *b == b'\n') {
            self.secret = false;
            self.tail.clear();
        }
        show
    }
}

/// Whether `tail` (the end of the output) is a prompt for a secret.
fn is_secret_prompt(tail: &[u8]) -> bool {
    let text = String::from_utf8_lossy(tail).to_lowercase();
    let line = text.rsplit(['\n', '\r']).next().unwrap_or("").trim_end();
    line.ends_with(':')
        && [
            "password",
            "passphrase",
            "passcode",
            "pin",
            "secret",
            "token",
        ]
        .iter()
        .any(|w| line.contains(w))
}

/// The target-to-vendor half of one channel.
pub(super) struct Relay {
    pub(super) from_target: ChannelReadHalf,
    pub(super) to_vendor: Arc<ChannelWriteHalf<Msg>>,
    pub(super) control: SessionControl,
    pub(super) replies: Replies,
    pub(super) gate: Arc<Mutex<InputGate>>,
    /// The terminal number, once known (shared with the vendor's side).
    pub(super) terminal: Arc<Mutex<Option<u32>>>,
    /// The vendor's connection, for exit signals.
    pub(super) vendor: Arc<std::sync::OnceLock<russh::server::Handle>>,
}

impl Relay {
    pub(super) async fn run(mut self) {
        let mut exit_status = None;
        while let Some(msg) = self.from_target.wait().await {
            let sent = match msg {
                ChannelMsg::Data { data } => self.output(None, data).await,
                ChannelMsg::ExtendedData { data, ext } => self.output(Some(ext), data).await,
                ChannelMsg::Success => {
                    self.replies.answer(true);
                    true
                }
                ChannelMsg::Failure => {
                    self.replies.answer(false);
                    true
                }
                ChannelMsg::ExitStatus { exit_status: s } => {
                    exit_status = Some(s);
                    self.to_vendor.exit_status(s).await.is_ok()
                }
                ChannelMsg::ExitSignal {
                    signal_name,
                    core_dumped,
                    error_message,
                    lang_tag,
                } => match self.vendor.get() {
                    Some(handle) => handle
                        .exit_signal_request(
                            self.to_vendor.id(),
                            signal_name,
                            core_dumped,
                            error_message,
                            lang_tag,
                        )
                        .await
                        .is_ok(),
                    None => true,
                },
                ChannelMsg::Eof => self.to_vendor.eof().await.is_ok(),
                ChannelMsg::Close => break,
                _ => true,
            };
            if !sent {
                break;
            }
        }
        // Requests still waiting get a failure.
        while !self
            .replies
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
        {
            self.replies.answer(false);
        }
        if let Some(index) = self.terminal() {
            self.control.terminal(&TerminalFrame::Close {
                channel: index,
                exit_status,
            });
        }
        let _ = self.to_vendor.close().await;
    }

    fn terminal(&self) -> Option<u32> {
        *self.terminal.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Passes output to the vendor, waiting for the vendor's window: a
    /// vendor that stops reading holds up this channel only. A recording
    /// behind on its disk holds up the session's output the same way.
    async fn output(&self, ext: Option<u32>, data: Bytes) -> bool {
        tokio::select! {
            () = self.control.backlog().room() => {}
            () = self.control.cancelled().cancelled() => return false,
        }
        self.control.moved(Direction::Down, &data);
        if let Some(index) = self.terminal() {
            self.gate
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .output(&data);
            self.control.terminal(&TerminalFrame::Output {
                channel: index,
                data: data.clone(),
            });
        }
        match ext {
            None => self.to_vendor.data_bytes(data).await.is_ok(),
            Some(ext) => self.to_vendor.extended_data_bytes(ext, data).await.is_ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_prompts_hide_input_until_enter() {
        let mut gate = InputGate::new(true);
        gate.set_terminal(0, true);
        gate.output(b"user@host:~$ ");
        assert!(gate.input(b"sudo -i\r"));
        gate.output(b"\r\n[sudo] password for user: ");
        assert!(!gate.input(b"hunter2"));
        assert!(!gate.input(b"\r"));
        gate.output(b"\r\nroot@host:~# ");
        assert!(gate.input(b"id\r"));
    }

    #[test]
    fn passphrase_and_plain_password_prompts_are_secret() {
        for prompt in [
            &b"Password: "[..],
            b"Enter passphrase for key '/root/.ssh/id_ed25519': ",
            b"mysql -p\r\nEnter password:",
        ] {
            let mut gate = InputGate::new(true);
            gate.set_terminal(0, true);
            gate.output(prompt);
            assert!(!gate.input(b"x"), "{}", String::from_utf8_lossy(prompt));
        }
    }

    #[test]
    fn no_input_without_a_pty_or_when_not_recorded() {
        let mut gate = InputGate::new(true);
        gate.set_terminal(0, false);
        assert!(!gate.input(b"ls\r"));
        let mut gate = InputGate::new(false);
        gate.set_terminal(0, true);
        assert!(!gate.input(b"ls\r"));
    }

    #[test]
    fn a_colon_in_ordinary_output_is_not_a_prompt() {
        let mut gate = InputGate::new(true);
        gate.set_terminal(0, true);
        gate.output(b"Listing:\r\n$ ");
        assert!(gate.input(b"x"));
        gate.output(b"time: ");
        assert!(gate.input(b"x"));
    }
}
