//! The IP Connect driver: a TUN device carrying the driver range into the
//! userspace stack ([`stack`]). Any TCP port of a mapped service's address
//! becomes a session, ICMP echo to a mapped host answers, a port with no
//! service gets a reset.
//!
//! The device gets the range's first address (the allocator never hands it
//! out), so the kernel routes the whole range to it: only inside the
//! namespace the service runs in.

pub mod stack;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tun_rs::{AsyncDevice, DeviceBuilder};

pub use stack::{Accepted, Stack, TunSink, TunSource};

use super::alloc::Range;
use crate::error::{Error, ErrorKind, Result};

/// The TUN device's name when none is given.
pub const DEFAULT_DEVICE: &str = "cpam0";

/// The address the device itself takes in `range` (never mapped).
pub fn device_address(range: Range) -> Ipv4Addr {
    super::service::device_address(range)
}

/// A running driver; stops when dropped.
pub struct Driver<T> {
    name: String,
    ports: watch::Sender<HashMap<SocketAddrV4, T>>,
    stop: CancellationToken,
    failure: Arc<Mutex<Option<String>>>,
}

impl<T> std::fmt::Debug for Driver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver").field("name", &self.name).finish()
    }
}

impl<T: Clone + Send + Sync + 'static> Driver<T> {
    /// Creates the TUN device `name` for `range` and runs the stack on it;
    /// every established connection goes to `accept`. Fails without
    /// `/dev/net/tun` or without `CAP_NET_ADMIN`.
    pub fn start(
        name: &str,
        range: Range,
        accept: impl Fn(Accepted<T>) + Send + 'static,
    ) -> Result<Self> {
        let address = device_address(range);
        let dev = DeviceBuilder::new()
            .name(name)
            .ipv4(address, range.prefix(), None)
            .mtu(stack::MTU as u16)
            .packet_information(false)
            .build_async()
            .map_err(|e| {
                let why = match e.kind() {
                    std::io::ErrorKind::NotFound => {
                        "no /dev/net/tun on this machine (or in this container)".to_string()
                    }
                    std::io::ErrorKind::PermissionDenied => {
                        "no privilege to create it (root or CAP_NET_ADMIN is needed)".to_string()
                    }
                    _ => e.to_string(),
                };
                let kind = match e.kind() {
                    std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
                    _ => ErrorKind::Io,
                };
                Error::new(
                    kind,
                    format!("cannot create the TUN device `{name}` for {range}: {why}"),
                )
            })?;
        let (ports, ports_rx) = watch::channel(HashMap::new());
        let stop = CancellationToken::new();
        let failure = Arc::new(Mutex::new(None));
        let driver = Driver {
            name: name.to_string(),
            ports,
            stop: stop.clone(),
            failure: failure.clone(),
        };
        let name = name.to_string();
        tokio::spawn(async move {
            let end = run(dev, ports_rx, stop, accept).await;
            if let Err(e) = end {
                let why = format!("the TUN device `{name}` failed: {e}");
                tracing::warn!(device = %name, error = %e, "ip connect driver stopped");
                if let Ok(mut f) = failure.lock() {
                    *f = Some(why);
                }
            }
        });
        Ok(driver)
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Replaces the mapped addresses and ports.
    pub fn set_ports(&self, ports: HashMap<SocketAddrV4, T>) {
        self.ports.send_replace(ports);
    }

    /// Why the driver stopped on its own (the device went away), if it did.
    pub fn failure(&self) -> Option<String> {
        if let Some(f) = self.failure.lock().ok().and_then(|f| f.clone()) {
            return Some(f);
        }
        // A deleted device does not always wake a reader: look for it in
        // this network namespace's list (`/sys/class/net` may show another
        // namespace's devices).
        let list = std::fs::read_to_string("/proc/net/dev").ok()?;
        let present = list
            .lines()
            .filter_map(|l| l.split_once(':'))
            .any(|(name, _)| name.trim() == self.name);
        (!present).then(|| format!("the TUN device `{}` was deleted", self.name))
    }
}

impl<T> Drop for Driver<T> {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn run<T: Clone>(
    dev: AsyncDevice,
    mut ports: watch::Receiver<HashMap<SocketAddrV4, T>>,
    stop: CancellationToken,
    accept: impl Fn(Accepted<T>),
) -> std::io::Result<()> {
    let wake = Arc::new(Notify::new());
    let mut stack = Stack::new(wake.clone());
    let mut buf = vec![0u8; 65_536];
    loop {
        for a in stack.poll() {
            accept(a);
        }
        while let Some(p) = stack.output() {
            dev.send(&p).await?;
        }
        let delay = stack
            .poll_delay()
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            r = dev.recv(&mut buf) => {
                let n = r?;
                if n == 0 {
                    return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the device closed"));
                }
                stack.input(&buf[..n]);
                // Whatever else is queued, without waiting.
                for _ in 0..64 {
                    match dev.try_recv(&mut buf) {
                        Ok(n) if n > 0 => stack.input(&buf[..n]),
                        Ok(_) => break,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
            }
            _ = wake.notified() => {}
            r = ports.changed() => {
                if r.is_err() {
                    return Ok(());
                }
                let table = ports.borrow_and_update().clone();
                stack.set_ports(table);
            }
            _ = tokio::time::sleep(delay) => {}
        }
    }
}
