//! Master passwords: a second secret per user, apart from the login
//! password (own table, own Argon2id hash), asked before a privileged
//! session starts. The user sets it (proving themselves with their login
//! password or their current master password); an administrator can only
//! clear it ([`crate::admin::Admin::reset_master_password`]). Checks are
//! throttled and locked out like logins, with the shared [`Throttle`].

use std::sync::Arc;

use serde_json::json;

use crate::audit::AuditSink;
use crate::error::{Error, ErrorKind, Result};
use crate::model::{AuditCategory, AuditEvent, Timestamp, User};
use crate::password;
use crate::secret::Secret;
use crate::store::Store;
use crate::throttle::{self, Throttle};

/// The shortest master password accepted.
pub const MIN_MASTER_PASSWORD: usize = 8;
/// The longest master password accepted (Argon2 input stays small).
const MAX_MASTER_PASSWORD: usize = 1024;

/// The throttle key of `user`'s master password checks.
pub fn throttle_key(user: &str) -> String {
    format!("master:{user}")
}

async fn record(
    audit: &Arc<dyn AuditSink>,
    action: &str,
    user: &User,
    category: AuditCategory,
    detail: serde_json::Value,
) {
    let event = AuditEvent {
        at: Timestamp::now(),
        category,
        action: action.into(),
        actor: user.name.clone(),
        customer_id: None,
        session_id: None,
        detail,
    };
    if let Err(error) = audit.record(event).await {
        tracing::error!(%error, "audit sink failed");
    }
}

/// Refuses (with `kind`) while `user`'s master password checks are locked out.
fn check_lock(throttle: &Throttle, user: &User, kind: ErrorKind) -> Result<()> {
    match throttle.locked(&[&throttle_key(&user.name)]) {
        Some(secs) => Err(Error::new(
            kind,
            format!(
                "too many wrong master passwords for `{}`; try again in {secs} s",
                user.name
            ),
        )),
        None => Ok(()),
    }
}

/// Counts a failure; audits it, and the lockout it may start.
async fn fail(
    audit: &Arc<dyn AuditSink>,
    throttle: &Throttle,
    user: &User,
    action: &str,
    reason: &str,
) {
    record(
        audit,
        action,
        user,
        AuditCategory::UserActivity,
        json!({ "reason": reason }),
    )
    .await;
    if throttle.fail(&throttle_key(&user.name), throttle::USER_FAILURES) {
        record(
            audit,
            "master_password.lockout",
            user,
            AuditCategory::SystemMessages,
            json!({ "seconds": throttle::LOCKOUT.as_secs() }),
        )
        .await;
    }
}

/// Checks `password` against `user`'s master password. Wrong passwords are
/// audited (`master_password.failure`) and counted; after
/// [`throttle::USER_FAILURES`] of them checks are refused for
/// [`throttle::LOCKOUT`], even with the right one. A user without a master
/// password is refused (`PermissionDenied`, saying how to set one).
pub async fn verify_master_password(
    store: &Arc<dyn Store>,
    audit: &Arc<dyn AuditSink>,
    throttle: &Throttle,
    user: &User,
    password: &Secret<String>,
) -> Result<()> {
    check_lock(throttle, user, ErrorKind::Unauthenticated)?;
    let Some(hash) = store.master_password_hash(&user.id).await? else {
        record(
            audit,
            "master_password.failure",
            user,
            AuditCategory::UserActivity,
            json!({ "reason": "not_set" }),
        )
        .await;
        return Err(Error::denied(format!(
            "user `{}` has no master password; set one with `cpam-connect master-password set` or in the console",
            user.name
        )));
    };
    if password.expose().len() <= MAX_MASTER_PASSWORD
        && password::verify(password.expose(), &hash).await
    {
        throttle.clear(&throttle_key(&user.name));
        return Ok(());
    }
    fail(
        audit,
        throttle,
        user,
        "master_password.failure",
        "wrong_password",
    )
    .await;
    Err(Error::new(
        ErrorKind::Unauthenticated,
        "wrong master password",
    ))
}

/// Sets `user`'s master password to `new`. `current` must be the user's
/// login password or current master password; a wrong one is audited and
/// throttled like a wrong master password. A user with neither cannot set
/// one until an administrator gives them a login password.
pub async fn set_master_password(
    store: &Arc<dyn Store>,
    audit: &Arc<dyn AuditSink>,
    throttle: &Throttle,
    user: &User,
    current: &Secret<String>,
    new: Secret<String>,
) -> Result<()> {
    let n = new.expose().chars().count();
    if n < MIN_MASTER_PASSWORD || new.expose().len() > MAX_MASTER_PASSWORD {
        return Err(Error::invalid(format!(
            "a master password must be {MIN_MASTER_PASSWORD} to {MAX_MASTER_PASSWORD} characters"
        )));
    }
    // Refusals here are `PermissionDenied`: the caller is signed in; only
    // their proof for this change is wrong.
    check_lock(throttle, user, ErrorKind::PermissionDenied)?;
    let fresh = store
        .user(&user.id)
        .await?
        .ok_or_else(|| Error::not_found(format!("no user `{}`", user.name)))?;
    let master = store.master_password_hash(&user.id).await?;
    if fresh.password_hash.is_none() && master.is_none() {
        return Err(Error::denied(format!(
            "user `{}` has neither a login password nor a master password to prove who they are; ask an administrator to set a login password",
            user.name
        )));
    }
    let mut proven = false;
    if current.expose().len() <= MAX_MASTER_PASSWORD {
        for hash in fresh.password_hash.iter().chain(master.iter()) {
            if password::verify(current.expose(), hash).await {
                proven = true;
                break;
            }
        }
    }
    if !proven {
        fail(
            audit,
            throttle,
            user,
            "master_password.set_refused",
            "wrong_current_password",
        )
        .await;
        return Err(Error::denied(
            "the current password (login or master) is wrong",
        ));
    }
    throttle.clear(&throttle_key(&user.name));
    let hash = password::hash(new).await?;
    store
        .set_master_password_hash(&user.id, Some(&hash), Timestamp::now())
        .await?;
    record(
        audit,
        "master_password.set",
        user,
        AuditCategory::UserActivity,
        json!({ "user": user.name, "replaced": master.is_some() }),
    )
    .await;
    Ok(())
}

/// The master password check the SSH proxy asks for
/// ([`MasterPasswords`](crate::proxy::ssh::MasterPasswords)), over
/// [`verify_master_password`]: throttled with the sign-in throttle and
/// audited.
#[derive(Debug)]
pub struct StoreMasterPasswords {
    store: Arc<dyn Store>,
    audit: Arc<dyn AuditSink>,
    throttle: Arc<Throttle>,
}

impl StoreMasterPasswords {
    pub fn new(store: Arc<dyn Store>, audit: Arc<dyn AuditSink>, throttle: Arc<Throttle>) -> Self {
        Self {
            store,
            audit,
            throttle,
        }
    }
}

#[async_trait::async_trait]
impl crate::proxy::ssh::MasterPasswords for StoreMasterPasswords {
    async fn verify(&self, user: &User, password: &Secret<String>) -> Result<()> {
        verify_master_password(&self.store, &self.audit, &self.throttle, user, password).await
    }
}
