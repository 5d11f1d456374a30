//! The screen of a terminal channel as a viewer would see it now, for live
//! watchers that join mid-session: a `vt100` terminal fed with the output.

use std::num::NonZeroU16;

use crate::session::TerminalFrame;

/// A terminal screen model fed with a channel's output and resizes.
pub struct Screen {
    parser: vt100::Parser,
}

impl std::fmt::Debug for Screen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (rows, cols) = self.size();
        f.debug_struct("Screen")
            .field("rows", &rows)
            .field("cols", &cols)
            .finish_non_exhaustive()
    }
}

fn dim(n: u16) -> NonZeroU16 {
    NonZeroU16::new(n).unwrap_or(NonZeroU16::MIN)
}

impl Screen {
    /// A blank `cols`×`rows` screen (a zero size counts as 1).
    pub fn new(cols: u16, rows: u16) -> Screen {
        Screen {
            parser: vt100::Parser::new(dim(rows), dim(cols), 0),
        }
    }

    /// Feeds what the terminal showed.
    pub fn process(&mut self, output: &[u8]) {
        self.parser.process(output);
    }

    /// Resizes the screen.
    pub fn resize(&mut self, cols: u16, rows: u16) {
        self.parser.set_size(dim(rows), dim(cols));
    }

    /// Applies a frame of the channel: output is drawn, a resize resizes,
    /// an open starts a blank screen of its size; input and close change
    /// nothing.
    pub fn apply(&mut self, frame: &TerminalFrame) {
        match frame {
            TerminalFrame::Open { cols, rows, .. } => *self = Screen::new(*cols, *rows),
            TerminalFrame::Output { data, .. } => self.process(data),
            TerminalFrame::Resize { cols, rows, .. } => self.resize(*cols, *rows),
            TerminalFrame::Input { .. } | TerminalFrame::Close { .. } => {}
        }
    }

    /// `(rows, cols)`.
    pub fn size(&self) -> (u16, u16) {
        let (rows, cols) = self.parser.screen().size();
        (rows.get(), cols.get())
    }

    /// The visible text, rows joined by newlines, without attributes.
    pub fn contents(&self) -> String {
        self.parser.screen().contents()
    }

    /// Bytes that redraw the current screen on a fresh terminal of the
    /// same size: a reset, the contents with their attributes, the cursor
    /// where it is, and the input modes (cursor keys, bracketed paste).
    pub fn snapshot(&self) -> Vec<u8> {
        let screen = self.parser.screen();
        let mut out = b"\x1b[0m\x1b[H\x1b[2J".to_vec();
        out.extend_from_slice(screen.state_formatted().as_bytes());
        out
    }
}
