//! cpam-core: customer privileged access management as a library.
//!
//! A gatekeeper inside a customer network dials out to a central server and
//! holds an SSH tunnel; vendors reach customer hosts through it, each
//! connection a [`session`] that is authorized by [`policy`], audited in a
//! hash-chained [`audit`] log, and stoppable at any moment.
//!
//! See `ARCHITECTURE.md` for the map of modules.

pub mod access;
pub mod admin;
pub mod audit;
pub mod clock;
pub mod error;
pub mod events;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
pub mod hooks;
pub mod ipmap;
pub mod model;
pub mod password;
pub mod policy;
#[cfg(test)]
mod proptests;
pub mod proxy;
pub mod record;
pub mod secret;
pub mod server;
pub mod session;
pub mod signal;
pub mod store;
pub mod throttle;
pub mod transfer;
pub mod tunnel;
pub mod vault;
#[cfg(feature = "web")]
pub mod web;

pub use error::{Error, ErrorKind, Result};
pub use secret::Secret;
