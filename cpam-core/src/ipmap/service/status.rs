//! What the IP Connect service reports (`ipconnect status`) and keeps in
//! its state directory.

use std::net::SocketAddrV4;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ipmap::alloc::Skipped;

/// The key file in the state directory: the allocator's hash key, so
/// addresses stay the same across restarts.
pub const KEY_FILE: &str = "ipconnect.key";
/// The status file in the state directory, read by `ipconnect status`.
pub const STATUS_FILE: &str = "ipconnect-status.json";

/// One profile's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileStatus {
    pub customer: String,
    pub gatekeeper: String,
    pub server: String,
    /// The mode asked for (the user's, or the server's for `global`).
    pub requested: Option<String>,
    /// The mode running: `driver`, `legacy` or `off`.
    pub mode: String,
    pub note: Option<String>,
    /// Why the server could not be read (the last mappings are kept).
    pub error: Option<String>,
}

/// One mapping and its listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingStatus {
    pub customer: String,
    pub service: String,
    pub kind: String,
    pub target: String,
    pub local: SocketAddrV4,
    pub hostnames: Vec<String>,
    /// How it is reached: `legacy` (a loopback listener) or `driver` (the TUN).
    #[serde(default)]
    pub mode: String,
    /// Why its listener is not up (a port taken locally, no privilege).
    pub error: Option<String>,
}

/// What the service is doing; `ipconnect status` prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub pid: u32,
    pub range: String,
    pub names: String,
    /// Why names could not be published (listeners still work by address).
    pub names_error: Option<String>,
    /// The driver's range and TUN device while the driver runs.
    #[serde(default)]
    pub driver: Option<String>,
    /// Why the driver cannot run, when a profile asked for it.
    #[serde(default)]
    pub driver_error: Option<String>,
    pub profiles: Vec<ProfileStatus>,
    pub mappings: Vec<MappingStatus>,
    pub skipped: Vec<SkippedStatus>,
}

/// A service not mapped, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedStatus {
    pub customer: String,
    pub service: String,
    pub reason: String,
}

impl From<Skipped> for SkippedStatus {
    fn from(s: Skipped) -> Self {
        SkippedStatus {
            customer: s.customer,
            service: s.service,
            reason: s.reason,
        }
    }
}

/// Reads the allocator key from `dir/ipconnect.key`, creating it (random,
/// mode 0600) on first use.
pub fn load_or_create_key(dir: &Path) -> Result<[u8; 32]> {
    let path = dir.join(KEY_FILE);
    let what = path.display().to_string();
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let bytes = hex::decode(text.trim())
                .map_err(|_| Error::invalid(format!("{what}: not a hex key")))?;
            bytes
                .try_into()
                .map_err(|_| Error::invalid(format!("{what}: the key must be 32 bytes")))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::from(e).context(&format!("cannot create {}", dir.display())))?;
            let key: [u8; 32] = rand::random();
            write_private(&path, format!("{}\n", hex::encode(key)).as_bytes())
                .map_err(|e| Error::from(e).context(&format!("cannot write {what}")))?;
            Ok(key)
        }
        Err(e) => Err(Error::from(e).context(&format!("cannot read {what}"))),
    }
}

pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Reads the status a running service wrote; `None` when no service runs.
pub fn read_status(path: &Path) -> Result<Option<Status>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::from(e).context(&format!("cannot read {}", path.display())));
        }
    };
    let status: Status = serde_json::from_str(&text)
        .map_err(|e| Error::invalid(format!("{}: not a status file: {e}", path.display())))?;
    // A service killed without its cleanup left the file: no process, no status.
    if !Path::new(&format!("/proc/{}", status.pid)).exists() {
        return Ok(None);
    }
    Ok(Some(status))
}

/// A change between two statuses: what SDK event streams report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A profile's running mode (or its note) changed.
    Mode {
        customer: String,
        gatekeeper: String,
        mode: String,
        note: Option<String>,
    },
    /// A mapping appeared (or moved to another address or mode).
    MappingAdded { mapping: MappingStatus },
    /// A mapping went away.
    MappingRemoved { mapping: MappingStatus },
    /// The driver started (`running`) or stopped; `error` says why it cannot run.
    Driver {
        running: Option<String>,
        error: Option<String>,
    },
}

impl Status {
    /// What changed from `before` to `self`, in a stable order.
    pub fn events_since(&self, before: &Status) -> Vec<Event> {
        let mut events = Vec::new();
        if (&self.driver, &self.driver_error) != (&before.driver, &before.driver_error) {
            events.push(Event::Driver {
                running: self.driver.clone(),
                error: self.driver_error.clone(),
            });
        }
        for p in &self.profiles {
            let old = before
                .profiles
                .iter()
                .find(|o| o.customer == p.customer && o.gatekeeper == p.gatekeeper);
            if old.is_none_or(|o| (&o.mode, &o.note) != (&p.mode, &p.note)) {
                events.push(Event::Mode {
                    customer: p.customer.clone(),
                    gatekeeper: p.gatekeeper.clone(),
                    mode: p.mode.clone(),
                    note: p.note.clone(),
                });
            }
        }
        let same = |a: &MappingStatus, b: &MappingStatus| {
            (&a.customer, &a.service, a.local, &a.mode)
                == (&b.customer, &b.service, b.local, &b.mode)
        };
        for m in &before.mappings {
            if !self.mappings.iter().any(|n| same(m, n)) {
                events.push(Event::MappingRemoved { mapping: m.clone() });
            }
        }
        for m in &self.mappings {
            if !before.mappings.iter().any(|o| same(m, o)) {
                events.push(Event::MappingAdded { mapping: m.clone() });
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(local: &str, mode: &str) -> MappingStatus {
        MappingStatus {
            customer: "acme".into(),
            service: "ssh".into(),
            kind: "ssh".into(),
            target: "10.0.0.5:22".into(),
            local: local.parse().unwrap(),
            hostnames: vec!["ssh.acme.cpam".into()],
            mode: mode.into(),
            error: None,
        }
    }

    #[test]
    fn a_mode_switch_is_a_mode_event_and_a_moved_mapping() {
        let profile = |mode: &str| ProfileStatus {
            customer: "acme".into(),
            gatekeeper: "gk".into(),
            server: "s".into(),
            requested: Some("legacy".into()),
            mode: mode.into(),
            note: None,
            error: None,
        };
        let before = Status {
            profiles: vec![profile("legacy")],
            mappings: vec![mapping("127.77.1.2:22", "legacy")],
            ..Status::default()
        };
        let after = Status {
            profiles: vec![profile("driver")],
            mappings: vec![mapping("100.100.1.2:22", "driver")],
            driver: Some("100.100.0.0/16 on cpam0".into()),
            ..Status::default()
        };
        let events = after.events_since(&before);
        assert!(matches!(
            &events[0],
            Event::Driver {
                running: Some(_),
                error: None
            }
        ));
        assert!(matches!(&events[1], Event::Mode { mode, .. } if mode == "driver"));
        assert!(
            matches!(&events[2], Event::MappingRemoved { mapping } if mapping.mode == "legacy")
        );
        assert!(matches!(&events[3], Event::MappingAdded { mapping } if mapping.mode == "driver"));
        assert_eq!(events.len(), 4);
        assert!(after.events_since(&after).is_empty());
    }
}
