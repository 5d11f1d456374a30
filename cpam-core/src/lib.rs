//! cpam-core: customer privileged access management as a library.
//!
//! A gatekeeper inside a customer network dials out to a central server and
//! holds an SSH tunnel; vendors reach customer hosts through it, each
//! connection a [`session`] that is authorized by [`policy`], audited in a
//! hash-chained [`audit`] log, and stoppable at any moment.
//!
//! See `ARCHITECTURE.md` for the map of modules.

pub mod audit;
pub mod error;
pub mod model;
pub mod policy;
pub mod store;

pub use error::{Error, ErrorKind, Result};
