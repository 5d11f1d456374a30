//! Checkouts (seed 002): a user asks for a service's credential for a while
//! (at most the service's limit, and never past the grant that allows it);
//! while the checkout is active, sessions to the service get the credential
//! injected. The user checks it in, an administrator revokes it, or it
//! expires. Every start, end and refusal is audited.
//!
//! These functions only change the store and the audit log; the caller then
//! asks the engine to re-check live sessions ([`SessionEngine::recheck`]
//! in-process, the control socket's `recheck` from the CLI), which ends
//! those whose checkout ended.
//!
//! [`SessionEngine::recheck`]: crate::session::SessionEngine::recheck

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::audit::AuditSink;
use crate::error::{Error, ErrorKind, Result};
use crate::model::{
    AuditCategory, AuditEvent, Checkout, CheckoutEnd, CheckoutId, CustomerId, Gatekeeper,
    GatekeeperId, Service, ServiceId, Timestamp, User, UserId,
};
use crate::policy::{self, AccessRequest, Decision};
use crate::store::{CheckoutFilter, Store};

/// The longest checkout of a service that sets no limit of its own.
pub const DEFAULT_CHECKOUT_LIMIT: Duration = Duration::from_secs(8 * 3600);

/// What a user asks for.
#[derive(Debug, Clone, Copy)]
pub struct CheckoutRequest<'a> {
    pub user: &'a User,
    pub service: &'a Service,
    /// How long; `None`: the service's limit.
    pub duration: Option<Duration>,
    /// The gatekeeper the user asks through (the Connection Manager's),
    /// checked like a session's; `None` from the console.
    pub gatekeeper: Option<&'a Gatekeeper>,
    /// The gatekeeper the user's key is bound to, if any.
    pub credential_gatekeeper: Option<&'a GatekeeperId>,
    /// Where the request came from, for the audit log.
    pub origin: &'a str,
}

/// The longest checkout `service` allows.
pub async fn checkout_limit(store: &Arc<dyn Store>, service: &ServiceId) -> Result<Duration> {
    Ok(match store.checkout_limit(service).await? {
        Some(secs) => Duration::from_secs(u64::try_from(secs).unwrap_or(0)),
        None => DEFAULT_CHECKOUT_LIMIT,
    })
}

/// The user's active checkout of `service` at `now`, if any (the one that
/// lasts longest).
pub async fn active_checkout(
    store: &Arc<dyn Store>,
    user: &UserId,
    service: &ServiceId,
    now: Timestamp,
) -> Result<Option<Checkout>> {
    let active = store
        .list_checkouts(&CheckoutFilter {
            user_id: Some(user.clone()),
            service_id: Some(service.clone()),
            active_at: Some(now),
            limit: None,
        })
        .await?;
    Ok(active.into_iter().max_by_key(|c| c.expires_at))
}

async fn record(
    audit: &Arc<dyn AuditSink>,
    action: &str,
    actor: &str,
    customer: &CustomerId,
    at: Timestamp,
    detail: serde_json::Value,
) -> Result<()> {
    audit
        .record(AuditEvent {
            at,
            category: AuditCategory::UserActivity,
            action: action.into(),
            actor: actor.to_string(),
            customer_id: Some(customer.clone()),
            session_id: None,
            detail,
        })
        .await
}

/// Checks out the credential of `req.service` for `req.user`: the service
/// must hold a credential, a grant must allow the user the service now, and
/// the duration must be within the service's limit. The checkout ends at the
/// earliest of the duration and the grant's end. A refusal is audited
/// (`checkout.refused`) and stores nothing.
pub async fn check_out(
    store: &Arc<dyn Store>,
    audit: &Arc<dyn AuditSink>,
    req: CheckoutRequest<'_>,
    now: Timestamp,
) -> Result<Checkout> {
    let CheckoutRequest { user, service, .. } = req;
    let refuse = |error: Error, reason: &str| {
        let detail = json!({
            "service": service.name, "reason": reason, "message": error.message(), "origin": req.origin,
        });
        (error, detail)
    };
    let outcome = decide(store, req, now).await;
    let (expires_at, grant_until) = match outcome {
        Ok(v) => v,
        Err((error, reason)) => {
            let (error, detail) = refuse(error, &reason);
            record(
                audit,
                "checkout.refused",
                &user.name,
                &service.customer_id,
                now,
                detail,
            )
            .await?;
            return Err(error);
        }
    };
    let checkout = Checkout {
        id: CheckoutId::generate(),
        user_id: user.id.clone(),
        user_name: user.name.clone(),
        customer_id: service.customer_id.clone(),
        service_id: service.id.clone(),
        service_name: service.name.clone(),
        started_at: now,
        expires_at,
        ended_at: None,
        end_reason: None,
        ended_by: None,
    };
    store.insert_checkout(&checkout).await?;
    record(
        audit,
        "checkout.start",
        &user.name,
        &service.customer_id,
        now,
        json!({
            "checkout": checkout.id, "service": service.name, "user": user.name,
            "expires_at": expires_at.to_rfc3339(),
            "grant_until": grant_until.map(Timestamp::to_rfc3339), "origin": req.origin,
        }),
    )
    .await?;
    Ok(checkout)
}

/// Why a checkout is refused: the error and the audited reason.
type Refusal = (Error, String);

/// When the checkout would end, and when its grant ends.
async fn decide(
    store: &Arc<dyn Store>,
    req: CheckoutRequest<'_>,
    now: Timestamp,
) -> std::result::Result<(Timestamp, Option<Timestamp>), Refusal> {
    let CheckoutRequest { user, service, .. } = req;
    let fail = |e: Error| (e, "error".to_string());
    if !service.kind.injects_credentials() {
        return Err((
            Error::invalid(format!(
                "service `{}` is of kind {}, which gets no credential injected",
                service.name,
                service.kind.as_str()
            )),
            "not_injected".into(),
        ));
    }
    if store.credential(&service.id).await.map_err(fail)?.is_none() {
        return Err((
            Error::not_found(format!(
                "service `{}` has no credential in the vault",
                service.name
            )),
            "no_credential".into(),
        ));
    }
    let user = store
        .user(&user.id)
        .await
        .map_err(fail)?
        .unwrap_or_else(|| user.clone());
    let grants = store
        .grants_for(&user.id, &service.id)
        .await
        .map_err(fail)?;
    let decision = match req.gatekeeper {
        Some(gatekeeper) => policy::decide(
            &AccessRequest {
                user: &user,
                service,
                gatekeeper,
                credential_gatekeeper: req.credential_gatekeeper,
            },
            &grants,
            now,
        ),
        None => policy::decide_grants(&user, service, &grants, now),
    };
    let grant_until = match decision {
        Decision::Allow { until, .. } => until,
        Decision::Deny { reason } => {
            let name = serde_json::to_value(reason)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| "denied".into());
            return Err((reason.into_error(), name));
        }
    };
    let limit = checkout_limit(store, &service.id).await.map_err(fail)?;
    let duration = req.duration.unwrap_or(limit);
    if duration.is_zero() {
        return Err((
            Error::invalid("a checkout must last longer than zero seconds"),
            "invalid_duration".into(),
        ));
    }
    if duration > limit {
        return Err((
            Error::invalid(format!(
                "a checkout of `{}` lasts at most {} (asked for {})",
                service.name,
                human(limit),
                human(duration)
            )),
            "over_limit".into(),
        ));
    }
    if let Some(held) = active_checkout(store, &user.id, &service.id, now)
        .await
        .map_err(fail)?
    {
        return Err((
            Error::conflict(format!(
                "you already hold checkout `{}` of `{}` until {}; check it in first",
                held.id, service.name, held.expires_at
            )),
            "already_checked_out".into(),
        ));
    }
    let mut expires_at = now.add(duration);
    if let Some(end) = grant_until {
        expires_at = expires_at.min(end);
    }
    Ok((expires_at, grant_until))
}

/// Ends `user`'s own checkout `id` (checked in). Someone else's checkout
/// is `NotFound`, as a missing one; one already ended is `Conflict`.
pub async fn check_in(
    store: &Arc<dyn Store>,
    audit: &Arc<dyn AuditSink>,
    user: &User,
    id: &CheckoutId,
    now: Timestamp,
) -> Result<Checkout> {
    let checkout = store
        .checkout(id)
        .await?
        .filter(|c| c.user_id == user.id)
        .ok_or_else(|| Error::not_found(format!("no checkout `{id}`")))?;
    end(
        store,
        audit,
        checkout,
        CheckoutEnd::CheckedIn,
        &user.name,
        None,
        now,
    )
    .await
}

/// Revokes checkout `id` as `actor` (an administrator) with an optional reason.
pub async fn revoke_checkout(
    store: &Arc<dyn Store>,
    audit: &Arc<dyn AuditSink>,
    actor: &str,
    id: &CheckoutId,
    reason: Option<&str>,
    now: Timestamp,
) -> Result<Checkout> {
    let checkout = store
        .checkout(id)
        .await?
        .ok_or_else(|| Error::not_found(format!("no checkout `{id}`")))?;
    end(
        store,
        audit,
        checkout,
        CheckoutEnd::Revoked,
        actor,
        reason,
        now,
    )
    .await
}

async fn end(
    store: &Arc<dyn Store>,
    audit: &Arc<dyn AuditSink>,
    checkout: Checkout,
    how: CheckoutEnd,
    by: &str,
    reason: Option<&str>,
    now: Timestamp,
) -> Result<Checkout> {
    if !checkout.is_active(now) {
        return Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "checkout `{}` is no longer active ({})",
                checkout.id,
                checkout.status(now)
            ),
        ));
    }
    if !store.end_checkout(&checkout.id, now, how, by).await? {
        return Err(Error::conflict(format!(
            "checkout `{}` has already ended",
            checkout.id
        )));
    }
    let action = match how {
        CheckoutEnd::CheckedIn => "checkout.end",
        CheckoutEnd::Revoked => "checkout.revoke",
    };
    record(
        audit,
        action,
        by,
        &checkout.customer_id,
        now,
        json!({
            "checkout": checkout.id, "service": checkout.service_name, "user": checkout.user_name,
            "end": how.as_str(), "reason": reason,
        }),
    )
    .await?;
    store
        .checkout(&checkout.id)
        .await?
        .ok_or_else(|| Error::internal("an ended checkout vanished"))
}

/// `8h`, `90m`, `45s`: a duration as `parse_duration` reads it.
pub fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if secs > 0 && secs.is_multiple_of(86_400) {
        format!("{}d", secs / 86_400)
    } else if secs > 0 && secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs > 0 && secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}
