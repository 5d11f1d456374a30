//! The C callbacks under way on a hub: `cpam_hub_free` closes the gate and
//! returns only once the last call has returned, and no call starts after.

use std::sync::{Arc, Condvar, Mutex};

#[derive(Debug, Default)]
struct State {
    closed: bool,
    running: usize,
}

/// Counts the callbacks running; closed once by `cpam_hub_free`.
#[derive(Debug, Default)]
pub(crate) struct CallbackGate {
    state: Mutex<State>,
    idle: Condvar,
}

/// One callback under way; dropping it lets a waiting `close` go on.
#[derive(Debug)]
pub(crate) struct Pass(Arc<CallbackGate>);

impl CallbackGate {
    /// A pass for one call, or `None` once the gate is closed (the call must
    /// not be made).
    pub(crate) fn enter(self: &Arc<Self>) -> Option<Pass> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.closed {
            return None;
        }
        s.running += 1;
        Some(Pass(self.clone()))
    }

    /// Lets no new call start and waits for the ones under way.
    pub(crate) fn close(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.closed = true;
        while s.running > 0 {
            s = self.idle.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        let mut s = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
        s.running -= 1;
        if s.running == 0 {
            self.0.idle.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn close_waits_for_calls_under_way_and_lets_none_start_after() {
        let gate = Arc::new(CallbackGate::default());
        let pass = gate.enter().expect("open");
        let g = gate.clone();
        let closer = std::thread::spawn(move || g.close());
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !closer.is_finished(),
            "close returned with a call under way"
        );
        drop(pass);
        closer.join().expect("close returns");
        assert!(gate.enter().is_none());
    }
}
