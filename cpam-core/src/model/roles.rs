//! Named permissions and the roles that bundle them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A named permission. The seed documents' names are used verbatim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[expect(
    non_camel_case_types,
    reason = "permission names are the seed documents' own, verbatim"
)]
#[non_exhaustive]
pub enum Permission {
    VIEW_ADMIN_LOG_USER_ACTIVITY,
    VIEW_ADMIN_LOG_SYSTEM_MESSAGES,
    DOWNLOAD_IPCONNECT,
    MANAGE_CUSTOMERS,
    MANAGE_GATEKEEPERS,
    MANAGE_SERVICES,
    MANAGE_USERS,
    MANAGE_ROLES,
    MANAGE_GRANTS,
    USE_CONNECTION_MANAGER,
    DOWNLOAD_CONNECTION_MANAGER,
    VIEW_SESSIONS,
    TERMINATE_SESSIONS,
    MONITOR_SESSIONS,
    VERIFY_AUDIT_LOG,
    ACCESS_ALL_CUSTOMERS,
    VIEW_OWN_SESSIONS,
    MANAGE_SETTINGS,
}

impl Permission {
    /// Every permission, in declaration order.
    pub const ALL: &'static [Permission] = &[
        Permission::VIEW_ADMIN_LOG_USER_ACTIVITY,
        Permission::VIEW_ADMIN_LOG_SYSTEM_MESSAGES,
        Permission::DOWNLOAD_IPCONNECT,
        Permission::MANAGE_CUSTOMERS,
        Permission::MANAGE_GATEKEEPERS,
        Permission::MANAGE_SERVICES,
        Permission::MANAGE_USERS,
        Permission::MANAGE_ROLES,
        Permission::MANAGE_GRANTS,
        Permission::USE_CONNECTION_MANAGER,
        Permission::DOWNLOAD_CONNECTION_MANAGER,
        Permission::VIEW_SESSIONS,
        Permission::TERMINATE_SESSIONS,
        Permission::MONITOR_SESSIONS,
        Permission::VERIFY_AUDIT_LOG,
        Permission::ACCESS_ALL_CUSTOMERS,
        Permission::VIEW_OWN_SESSIONS,
        Permission::MANAGE_SETTINGS,
    ];

    /// The permission's name as written in roles and the seeds.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::VIEW_ADMIN_LOG_USER_ACTIVITY => "VIEW_ADMIN_LOG_USER_ACTIVITY",
            Permission::VIEW_ADMIN_LOG_SYSTEM_MESSAGES => "VIEW_ADMIN_LOG_SYSTEM_MESSAGES",
            Permission::DOWNLOAD_IPCONNECT => "DOWNLOAD_IPCONNECT",
            Permission::MANAGE_CUSTOMERS => "MANAGE_CUSTOMERS",
            Permission::MANAGE_GATEKEEPERS => "MANAGE_GATEKEEPERS",
            Permission::MANAGE_SERVICES => "MANAGE_SERVICES",
            Permission::MANAGE_USERS => "MANAGE_USERS",
            Permission::MANAGE_ROLES => "MANAGE_ROLES",
            Permission::MANAGE_GRANTS => "MANAGE_GRANTS",
            Permission::USE_CONNECTION_MANAGER => "USE_CONNECTION_MANAGER",
            Permission::DOWNLOAD_CONNECTION_MANAGER => "DOWNLOAD_CONNECTION_MANAGER",
            Permission::VIEW_SESSIONS => "VIEW_SESSIONS",
            Permission::TERMINATE_SESSIONS => "TERMINATE_SESSIONS",
            Permission::MONITOR_SESSIONS => "MONITOR_SESSIONS",
            Permission::VERIFY_AUDIT_LOG => "VERIFY_AUDIT_LOG",
            Permission::ACCESS_ALL_CUSTOMERS => "ACCESS_ALL_CUSTOMERS",
            Permission::VIEW_OWN_SESSIONS => "VIEW_OWN_SESSIONS",
            Permission::MANAGE_SETTINGS => "MANAGE_SETTINGS",
        }
    }

    /// What the permission allows, in one sentence for people.
    pub fn description(self) -> &'static str {
        match self {
            Permission::VIEW_ADMIN_LOG_USER_ACTIVITY => {
                "read user-activity entries of the admin log (logins, sessions, changes)"
            }
            Permission::VIEW_ADMIN_LOG_SYSTEM_MESSAGES => {
                "read system-message entries of the admin log (gatekeepers online/offline, server)"
            }
            Permission::DOWNLOAD_IPCONNECT => "download the IP Connect program",
            Permission::MANAGE_CUSTOMERS => "create and delete customers",
            Permission::MANAGE_GATEKEEPERS => {
                "create gatekeepers and issue their registration codes"
            }
            Permission::MANAGE_SERVICES => "create and delete services behind a gatekeeper",
            Permission::MANAGE_USERS => "create, edit and disable users",
            Permission::MANAGE_ROLES => "create, edit and delete custom roles",
            Permission::MANAGE_GRANTS => "grant users services for a time window, and revoke",
            Permission::USE_CONNECTION_MANAGER => "connect to services with the Connection Manager",
            Permission::DOWNLOAD_CONNECTION_MANAGER => {
                "download a Connection Manager profile for a gatekeeper"
            }
            Permission::VIEW_SESSIONS => "see every session of the customers in scope",
            Permission::TERMINATE_SESSIONS => "terminate live sessions of the customers in scope",
            Permission::MONITOR_SESSIONS => {
                "watch live terminal sessions of the customers in scope"
            }
            Permission::VERIFY_AUDIT_LOG => "verify the admin log's hash chain",
            Permission::ACCESS_ALL_CUSTOMERS => {
                "see every customer, not only those the user is a member of"
            }
            Permission::VIEW_OWN_SESSIONS => "see one's own sessions",
            Permission::MANAGE_SETTINGS => "change server-wide settings",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Permission {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Permission::ALL
            .iter()
            .copied()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| Error::invalid(format!("unknown permission `{s}`")))
    }
}

/// A role: a named set of permissions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    pub name: String,
    pub permissions: Vec<Permission>,
    pub builtin: bool,
}

/// The built-in role holding every permission; only its holders may change
/// an account that holds it.
pub const SYSTEM_ADMINISTRATOR: &str = "System Administrator";

/// The built-in roles created by `init`.
pub fn builtin_roles() -> Vec<Role> {
    use Permission as P;
    let role = |name: &str, permissions: Vec<Permission>| Role {
        name: name.to_string(),
        permissions,
        builtin: true,
    };
    vec![
        role(SYSTEM_ADMINISTRATOR, P::ALL.to_vec()),
        role(
            "Vendor",
            vec![
                P::USE_CONNECTION_MANAGER,
                P::DOWNLOAD_CONNECTION_MANAGER,
                P::DOWNLOAD_IPCONNECT,
                P::VIEW_OWN_SESSIONS,
            ],
        ),
        role(
            "Customer Administrator",
            vec![
                P::MANAGE_GATEKEEPERS,
                P::MANAGE_SERVICES,
                P::MANAGE_GRANTS,
                P::VIEW_SESSIONS,
                P::TERMINATE_SESSIONS,
                P::MONITOR_SESSIONS,
                P::VIEW_ADMIN_LOG_USER_ACTIVITY,
            ],
        ),
        role(
            "Auditor",
            vec![
                P::ACCESS_ALL_CUSTOMERS,
                P::VIEW_ADMIN_LOG_USER_ACTIVITY,
                P::VIEW_ADMIN_LOG_SYSTEM_MESSAGES,
                P::VIEW_SESSIONS,
                P::VERIFY_AUDIT_LOG,
            ],
        ),
    ]
}
