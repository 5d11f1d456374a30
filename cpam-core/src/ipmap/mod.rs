//! IP Connect: a customer's service targets at local addresses and names
//! on the vendor's machine.
//!
//! [`alloc`] (sans I/O) decides which local address and names each target
//! gets; [`mode`] which mode runs for a profile; [`hosts`] publishes the
//! names through the [`hosts::Resolver`] seam; [`service`] is the
//! background service that keeps one loopback listener per mapped address
//! and port, each accepted connection one session through the profile's
//! tunnel.

pub mod alloc;
#[cfg(feature = "driver")]
pub mod driver;
pub mod hosts;
pub mod mode;
pub mod service;

pub use alloc::{Allocator, Mapping, Plan, Range, ServiceTarget, Skipped};
pub use hosts::{HostsFile, NoNames, Resolver};
pub use mode::{Effective, Resolved, resolve};
pub use service::{IpConnect, IpConnectConfig, Status};
