//! A conformance suite for [`Store`] implementations: a test kit.
//!
//! Run [`run_all`] against a fresh, migrated store; each check panics with a
//! message naming the broken promise. The checks create their own objects
//! with unique names, but some (orphan sessions, the audit chain) look at the
//! whole store, so run them one after another, not in parallel on one store.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use crate::error::{ErrorKind, Result};
use crate::model::{Customer, Timestamp, random_token};
use crate::store::Store;

mod activity;
mod cluster;
mod console;
mod directory;
mod nodes;
mod vault;

pub use activity::{audit_log, concurrent_audit_appends, grants, sessions};
pub use cluster::{control_bus, node_registry};
pub use console::{deletions, membership_and_settings, role_edits, web_sessions_and_tokens};
pub use directory::{
    concurrent_redemption, customers, gatekeepers, registration_codes, roles_and_permissions,
    services, users_and_keys,
};
pub use nodes::{node_gatekeepers, node_sessions};
pub use vault::{checkouts, master_passwords, vault_keys_and_credentials};

pub(crate) const T0: Timestamp = Timestamp(1_700_000_000_000);

/// Runs every check, in order.
pub async fn run_all(store: &dyn Store) {
    customers(store).await;
    gatekeepers(store).await;
    registration_codes(store).await;
    concurrent_redemption(store).await;
    users_and_keys(store).await;
    roles_and_permissions(store).await;
    services(store).await;
    membership_and_settings(store).await;
    role_edits(store).await;
    deletions(store).await;
    web_sessions_and_tokens(store).await;
    grants(store).await;
    sessions(store).await;
    node_sessions(store).await;
    node_gatekeepers(store).await;
    node_registry(store).await;
    control_bus(store).await;
    vault_keys_and_credentials(store).await;
    checkouts(store).await;
    master_passwords(store).await;
    audit_log(store).await;
    concurrent_audit_appends(&[store], 8, 25).await;
}

/// A name no other check uses.
pub(crate) fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", random_token(5))
}

#[track_caller]
pub(crate) fn ok<T>(r: Result<T>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("store conformance: {what} failed: {e} (kind {})", e.kind()),
    }
}

/// Checks that `r` failed with `kind`; the message is free text and not checked.
#[track_caller]
pub(crate) fn expect_error<T: std::fmt::Debug>(r: Result<T>, kind: ErrorKind, what: &str) {
    match r {
        Err(e) if e.kind() == kind => {}
        Err(e) => panic!(
            "store conformance: {what}: expected a `{kind}` error, got `{}` error: {e}",
            e.kind()
        ),
        Ok(v) => panic!("store conformance: {what}: expected a `{kind}` error, got Ok({v:?})"),
    }
}

/// Polls all `futures` concurrently on the current task.
pub async fn join_all<'a, T>(futures: Vec<Pin<Box<dyn Future<Output = T> + Send + 'a>>>) -> Vec<T> {
    let mut futures: Vec<_> = futures.into_iter().map(Some).collect();
    let mut out: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, result) in futures.iter_mut().zip(out.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => {
                        *result = Some(v);
                        *slot = None;
                    }
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

pub(crate) async fn new_customer(store: &dyn Store) -> Customer {
    ok(
        store.create_customer(&unique("cus"), T0).await,
        "create_customer",
    )
}
