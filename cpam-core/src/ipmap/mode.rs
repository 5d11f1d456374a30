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
}

/// The outcome of [`resolve`]: the mode that runs, the mode asked for and,
/// when they differ, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolved {
    pub effective: Effective,
    /// The user's preference, or the server's setting it deferred to.
    pub requested: String,
    pub note: Option<String>,
}

/// Why the driver cannot run, when it cannot; `None` when it can.
pub const DRIVER_UNAVAILABLE: &str =
    "the IP Connect driver (TUN) is not part of this build of cpam-connect";

/// Resolves `user` (the per-user preference) and `server` (the server-wide
/// setting) to the mode that runs. `global` defers to the server; an
/// unknown value is Off (noted, so the caller logs it); the driver modes
/// fall back or stop as the preference says, since the driver is not built.
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
        Some(IpConnectMode::Driver) => (
            Effective::Off,
            Some(format!("{DRIVER_UNAVAILABLE}: nothing is mapped")),
        ),
        Some(IpConnectMode::DriverWithLegacyFallback) => (
            Effective::Legacy,
            Some(format!("{DRIVER_UNAVAILABLE}: falling back to legacy")),
        ),
    };
    Resolved {
        effective,
        requested,
        note,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(user: &str, server: &str, effective: Effective, requested: &str, noted: bool) {
        let r = resolve(user, server);
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
}
