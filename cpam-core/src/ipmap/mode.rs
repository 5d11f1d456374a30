//! Which mode runs, from the user's preference and the server's setting
//! as the server reports them (text: a newer server may know more modes).

use serde::Serialize;

use crate::model::IpConnectMode;

/// What the service does for one profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Effective {
    /// Nothing mapped (`forward` still works).
    Off,
    /// Loopback listeners, one per mapped address and port.
    Legacy,
    /// The TUN device and its userspace stack.
    Driver,
}

impl Effective {
    /// The mode's name, as `ipconnect status` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Effective::Off => "off",
            Effective::Legacy => "legacy",
            Effective::Driver => "driver",
        }
    }
}

/// The outcome of [`resolve`]: the mode that runs, the mode asked for and,
/// when they differ, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolved {
    pub effective: Effective,
    /// The user's preference, or the server's setting it deferred to.
    pub requested: String,
    pub note: Option<String>,
    /// The driver was asked for with the legacy mode as its fallback.
    pub fallback: bool,
}

/// Why the driver cannot run in a build without it (feature `driver`).
pub const DRIVER_UNAVAILABLE: &str =
    "the IP Connect driver (TUN) is not part of this build of cpam-connect";

/// Resolves `user` (the per-user preference) and `server` (the server-wide
/// setting) to the mode asked for. `global` defers to the server; an
/// unknown value is Off (noted, so the caller logs it); both driver modes
/// resolve to [`Effective::Driver`] until [`Resolved::with_driver`] says
/// whether the driver runs.
pub fn resolve(user: &str, server: &str) -> Resolved {
    let parse = |s: &str| s.parse::<IpConnectMode>().ok();
    let (requested, mode) = match parse(user) {
        Some(IpConnectMode::Global) => (server.to_string(), parse(server)),
        Some(m) => (user.to_string(), Some(m)),
        None => (user.to_string(), None),
    };
    let (effective, note) = match mode {
        None | Some(IpConnectMode::Global) => (
            Effective::Off,
            Some(format!(
                "unknown IP Connect mode `{requested}`: nothing is mapped"
            )),
        ),
        Some(IpConnectMode::Off) => (Effective::Off, None),
        Some(IpConnectMode::Legacy) => (Effective::Legacy, None),
        Some(IpConnectMode::Driver | IpConnectMode::DriverWithLegacyFallback) => {
            (Effective::Driver, None)
        }
    };
    Resolved {
        effective,
        requested,
        note,
        fallback: mode == Some(IpConnectMode::DriverWithLegacyFallback),
    }
}

impl Resolved {
    /// The mode that runs given why the driver cannot (`None`: it runs):
    /// the legacy mode for `driver-with-legacy-fallback`, else nothing.
    pub fn with_driver(mut self, driver_error: Option<&str>) -> Resolved {
        if let (Effective::Driver, Some(why)) = (self.effective, driver_error) {
            if self.fallback {
                self.effective = Effective::Legacy;
                self.note = Some(format!("{why}: falling back to legacy"));
            } else {
                self.effective = Effective::Off;
                self.note = Some(format!("{why}: nothing is mapped"));
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(user: &str, server: &str, effective: Effective, requested: &str, noted: bool) {
        let r = resolve(user, server).with_driver(Some(DRIVER_UNAVAILABLE));
        assert_eq!(
            (r.effective, r.requested.as_str(), r.note.is_some()),
            (effective, requested, noted),
            "{user}/{server}: {r:?}"
        );
    }

    #[test]
    fn preferences_resolve() {
        use Effective::*;
        check("legacy", "off", Legacy, "legacy", false);
        check("off", "legacy", Off, "off", false);
        check("global", "legacy", Legacy, "legacy", false);
        check("global", "off", Off, "off", false);
        check(
            "global",
            "driver-with-legacy-fallback",
            Legacy,
            "driver-with-legacy-fallback",
            true,
        );
        check("driver", "legacy", Off, "driver", true);
        check("warp", "legacy", Off, "warp", true);
        check("global", "warp", Off, "warp", true);
        check("global", "global", Off, "global", true);
    }

    #[test]
    fn driver_modes_follow_the_driver() {
        let up = |u: &str| resolve(u, "off").with_driver(None);
        assert_eq!(up("driver").effective, Effective::Driver);
        assert_eq!(
            up("driver-with-legacy-fallback").effective,
            Effective::Driver
        );
        assert!(up("driver").note.is_none());
        let down = |u: &str| resolve(u, "off").with_driver(Some("no /dev/net/tun"));
        let fb = down("driver-with-legacy-fallback");
        assert_eq!(fb.effective, Effective::Legacy);
        assert!(fb.note.unwrap().starts_with("no /dev/net/tun"));
        assert_eq!(down("driver").effective, Effective::Off);
        assert_eq!(down("legacy").effective, Effective::Legacy);
    }
}
