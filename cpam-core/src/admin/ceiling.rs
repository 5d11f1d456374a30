//! Privilege ceilings: an operator acting through the console (an
//! [`Admin::for_principal`]) never hands out more than they hold.
//!
//! - A role given to anyone (themselves included) or written into a role
//!   carries only permissions the operator holds.
//! - A role the operator holds is not theirs to edit.
//! - No operator grants themselves a service or widens their own customer
//!   memberships (unless they see every customer anyway); customers they
//!   give others are ones in their own scope.
//! - A System Administrator's account is changed only by a System
//!   Administrator.
//!
//! The server's own operator (no principal: the CLI on the server's
//! machine) is not capped.

use std::collections::BTreeSet;

use super::Admin;
use crate::access::Principal;
use crate::error::{Error, ErrorKind, Result};
use crate::model::{CustomerId, Permission, SYSTEM_ADMINISTRATOR, User};

fn denied(message: String) -> Error {
    Error::new(ErrorKind::PermissionDenied, message)
}

impl Admin {
    fn capped(&self) -> Option<&Principal> {
        self.principal.as_ref()
    }

    async fn is_system_administrator(&self, user: &User) -> Result<bool> {
        Ok(self
            .store
            .user_roles(&user.id)
            .await?
            .iter()
            .any(|r| r == SYSTEM_ADMINISTRATOR))
    }

    /// Permissions in `permissions` the operator does not hold.
    fn beyond(p: &Principal, permissions: &[Permission]) -> Vec<&'static str> {
        let mut out: Vec<_> = permissions
            .iter()
            .filter(|x| !p.has(**x))
            .map(|x| x.as_str())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Refuses permissions the operator lacks (for a role they write).
    pub(super) fn cap_permissions(&self, permissions: &[Permission]) -> Result<()> {
        let Some(p) = self.capped() else {
            return Ok(());
        };
        let beyond = Self::beyond(p, permissions);
        if beyond.is_empty() {
            return Ok(());
        }
        Err(denied(format!(
            "you cannot hand out permissions you do not hold: {}",
            beyond.join(", ")
        )))
    }

    /// Refuses giving `target` (none: a user being created) the roles of
    /// `roles` it does not hold yet when they carry permissions the operator
    /// lacks.
    pub(super) async fn cap_roles(&self, target: Option<&User>, roles: &[String]) -> Result<()> {
        let Some(p) = self.capped() else {
            return Ok(());
        };
        let held: BTreeSet<String> = match target {
            Some(u) => self.store.user_roles(&u.id).await?.into_iter().collect(),
            None => BTreeSet::new(),
        };
        let all = self.store.list_roles().await?;
        for name in roles.iter().filter(|r| !held.contains(*r)) {
            let Some(role) = all.iter().find(|r| &r.name == name) else {
                continue; // unknown roles are the caller's NotFound
            };
            let beyond = Self::beyond(p, &role.permissions);
            if !beyond.is_empty() {
                return Err(denied(format!(
                    "you cannot give the role `{name}`: it carries permissions you do not hold ({})",
                    beyond.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// Refuses changing `target`'s customers to `customers` beyond the
    /// operator's scope, or widening the operator's own.
    pub(super) async fn cap_customers(
        &self,
        target: Option<&User>,
        customers: &[CustomerId],
    ) -> Result<()> {
        let Some(p) = self.capped() else {
            return Ok(());
        };
        let held: BTreeSet<CustomerId> = match target {
            Some(u) => self
                .store
                .user_customers(&u.id)
                .await?
                .into_iter()
                .collect(),
            None => BTreeSet::new(),
        };
        let added: Vec<_> = customers.iter().filter(|c| !held.contains(*c)).collect();
        if added.is_empty() || p.all_customers() {
            return Ok(());
        }
        if target.is_some_and(|u| u.id == p.user.id) {
            return Err(denied("you cannot add yourself to customers".to_string()));
        }
        match added.iter().find(|c| !p.in_scope(c)) {
            Some(c) => Err(denied(format!("customer `{c}` is not in your scope"))),
            None => Ok(()),
        }
    }

    /// Refuses changing a System Administrator's account unless the
    /// operator is one.
    pub(super) async fn cap_account(&self, target: &User) -> Result<()> {
        let Some(p) = self.capped() else {
            return Ok(());
        };
        if p.user.id == target.id || !self.is_system_administrator(target).await? {
            return Ok(());
        }
        if self.is_system_administrator(&p.user).await? {
            return Ok(());
        }
        Err(denied(format!(
            "only a {SYSTEM_ADMINISTRATOR} may change the account of `{}`",
            target.name
        )))
    }

    /// Refuses editing a role the operator holds.
    pub(super) async fn cap_role_edit(&self, role: &str) -> Result<()> {
        let Some(p) = self.capped() else {
            return Ok(());
        };
        if self
            .store
            .user_roles(&p.user.id)
            .await?
            .iter()
            .any(|r| r == role)
        {
            return Err(denied(format!(
                "you cannot edit the role `{role}`: you hold it"
            )));
        }
        Ok(())
    }

    /// Refuses the operator granting themselves a service.
    pub(super) fn cap_grant(&self, user: &User) -> Result<()> {
        match self.capped() {
            Some(p) if p.user.id == user.id => Err(denied(
                "you cannot grant yourself access; another operator must".to_string(),
            )),
            _ => Ok(()),
        }
    }
}
