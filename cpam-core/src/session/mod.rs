//! The session engine: every connection through cpam is a session here,
//! from approval to its end reason.
//!
//! - [`SessionEngine::approve`] checks policy and the access hook and is the
//!   only way to get an [`Approval`] (`approval.rs`).
//! - [`SessionEngine::run`] is the runner (`runner.rs`): it records the
//!   session while the caller's [`Dialer`](crate::tunnel::Dialer) reaches the
//!   target, then hands both ends to a [`Protocol`] and finishes the session
//!   with the first end reason.
//! - [`LiveSession`] (`live.rs`) is the running session a protocol gets: its
//!   cancellation token, its [`Counters`], its [`SessionObserver`]s and
//!   [`LiveSession::record_event`]. It is drop-guarded. Its [`Backlog`]
//!   (`backlog.rs`) counts the output observers still hold, for protocols
//!   to wait on before reading more.
//! - The engine (`engine.rs`) keeps the registry of live sessions, the
//!   integrator's hooks and observer factories, and ends sessions from
//!   outside (terminate, revoke, the customer's switch, shutdown). Time comes
//!   from its [`Clock`](crate::clock::Clock).

mod approval;
mod authz;
#[cfg(test)]
mod authz_tests;
mod backlog;
mod cluster;
mod counters;
mod engine;
mod live;
mod observer;
mod runner;
#[cfg(test)]
mod tests;

pub use approval::{Approval, Originator};
/// How long an approval may reuse what an earlier one read (see `session/authz.rs`).
pub use authz::TTL as AUTHORIZATION_TTL;
pub use backlog::Backlog;
pub use counters::{Counters, Direction, Meter};
pub use engine::{LiveInfo, SessionEngine};
pub use live::{LiveSession, SessionControl};
pub use observer::{ObserverFactory, SessionEvent, SessionObserver, TerminalFrame};
pub use runner::{Protocol, Upstream, UserIo};
