//! The Connection Manager profile: what the console's *Connect* button
//! downloads. One profile, one gatekeeper (seed 000: "Each Connection Manager
//! is linked to the Gatekeeper from which it was downloaded").

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{GatekeeperId, Timestamp};
use crate::secret::Secret;

/// The profile format version this build writes and reads.
pub const PROFILE_VERSION: u32 = 1;

/// A Connection Manager profile.
#[derive(Debug, Clone)]
pub struct Profile {
    /// `HOST:PORT` of the server's SSH port.
    pub server: String,
    /// The server's host key, pinned (`ssh-ed25519 AAAA...`).
    pub server_key: String,
    pub customer: String,
    pub gatekeeper_id: GatekeeperId,
    pub gatekeeper_name: String,
    pub user: String,
    /// OpenSSH private key bound to this profile's gatekeeper.
    pub key: Secret<String>,
    pub created_at: Timestamp,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    cpam_profile: u32,
    server: String,
    server_key: String,
    customer: String,
    gatekeeper: GatekeeperRef,
    user: String,
    key: String,
    created_at: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GatekeeperRef {
    id: String,
    name: String,
}

impl Profile {
    /// Reads and checks a profile file; errors name the file and the field.
    pub fn load(path: &Path) -> Result<Profile> {
        let what = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::from(e).context(&format!("cannot read profile {what}")))?;
        Profile::parse(&text, &what)
    }

    /// Parses profile text; `what` names its origin in errors.
    pub fn parse(text: &str, what: &str) -> Result<Profile> {
        let field =
            |name: &str, why: &str| Error::invalid(format!("profile {what}: field `{name}` {why}"));
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::invalid(format!("profile {what}: not JSON: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| Error::invalid(format!("profile {what}: not a JSON object")))?;
        for (name, is_string) in [
            ("server", true),
            ("server_key", true),
            ("customer", true),
            ("user", true),
            ("key", true),
            ("created_at", true),
            ("cpam_profile", false),
            ("gatekeeper", false),
        ] {
            match obj.get(name) {
                None => return Err(field(name, "is missing")),
                Some(v) if is_string && !v.is_string() => {
                    return Err(field(name, "must be a string"));
                }
                _ => {}
            }
        }
        let f: ProfileFile = serde_json::from_value(value)
            .map_err(|e| Error::invalid(format!("profile {what}: {e}")))?;
        if f.cpam_profile != PROFILE_VERSION {
            return Err(field(
                "cpam_profile",
                &format!(
                    "is {}, this build reads version {PROFILE_VERSION}",
                    f.cpam_profile
                ),
            ));
        }
        if f.server
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .is_none()
        {
            return Err(field("server", "must be HOST:PORT"));
        }
        super::keys::parse_public(&f.server_key, "server_key")
            .map_err(|e| field("server_key", &format!("is invalid: {}", e.message())))?;
        if !f.gatekeeper.id.starts_with("gk_") {
            return Err(field("gatekeeper.id", "is not a gatekeeper id"));
        }
        if f.user.is_empty() {
            return Err(field("user", "is empty"));
        }
        super::keys::parse_private(&f.key, "key")
            .map_err(|e| field("key", &format!("is invalid: {}", e.message())))?;
        let created_at = Timestamp::parse_rfc3339(&f.created_at)
            .map_err(|_| field("created_at", "is not an RFC 3339 time"))?;
        Ok(Profile {
            server: f.server,
            server_key: f.server_key,
            customer: f.customer,
            gatekeeper_id: GatekeeperId(f.gatekeeper.id),
            gatekeeper_name: f.gatekeeper.name,
            user: f.user,
            key: Secret::new(f.key),
            created_at,
        })
    }

    /// The profile as file text (contains the private key).
    pub fn to_text(&self) -> Result<Secret<String>> {
        let f = ProfileFile {
            cpam_profile: PROFILE_VERSION,
            server: self.server.clone(),
            server_key: self.server_key.clone(),
            customer: self.customer.clone(),
            gatekeeper: GatekeeperRef {
                id: self.gatekeeper_id.0.clone(),
                name: self.gatekeeper_name.clone(),
            },
            user: self.user.clone(),
            key: self.key.expose().clone(),
            created_at: self.created_at.to_rfc3339(),
        };
        serde_json::to_string_pretty(&f)
            .map(Secret::new)
            .map_err(|e| Error::internal(format!("cannot encode profile: {e}")))
    }

    /// Writes the profile with mode 0600.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = self.to_text()?;
        super::keys::write_private_file(path, text.expose().as_bytes())
    }
}
