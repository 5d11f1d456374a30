//! `/api/v1/events`: the engine's events as server-sent events, each one
//! filtered to the caller's scope.
//!
//! An open stream re-checks its caller every [`RECHECK_EVERY`]: it ends when
//! the console session was signed out or expired, the API token revoked or
//! expired, the user disabled or deleted, or their permissions or customers
//! changed (the console reconnects with its new rights, or signs in again).
//!
//! - `gatekeeper`: `{id, customer_id, online, last_contact, customer_disabled,
//!   customer_schedule}`
//! - `session`: `{id, live, ...session}` (as `GET /api/v1/sessions/{id}`)
//! - `lagged`: the stream fell behind and lost events; reload.

use std::convert::Infallible;
use std::time::Duration;

use crate::access::Principal;
use crate::events::EngineEvent;
use crate::model::{CustomerId, GatekeeperId, Timestamp};
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::AppState;
use super::api::{opt_ts, session_json};
use super::auth::{Caller, Via};

/// How often an open stream re-checks that its caller may still watch.
pub const RECHECK_EVERY: Duration = Duration::from_secs(2);

pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = state.engine.subscribe();
    let mut tick = tokio::time::interval(RECHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stream = futures_util::stream::unfold(
        (rx, state, caller, tick),
        |(mut rx, state, caller, mut tick)| async move {
            loop {
                let event = tokio::select! {
                    received = rx.recv() => match received {
                        Ok(e) => render(&state, &caller.principal, e).await,
                        Err(RecvError::Lagged(n)) => {
                            Some(Event::default().event("lagged").data(n.to_string()))
                        }
                        Err(RecvError::Closed) => return None,
                    },
                    _ = tick.tick() => {
                        if !still_admitted(&state, &caller).await {
                            tracing::info!(user = %caller.user().name, "event stream ended: the caller's rights changed");
                            return None;
                        }
                        None
                    }
                };
                if let Some(e) = event {
                    return Some((Ok(e), (rx, state, caller, tick)));
                }
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Whether `caller` may still watch as they opened the stream: their sign-in
/// still valid, the user enabled, their permissions and customers unchanged.
async fn still_admitted(state: &AppState, caller: &Caller) -> bool {
    let now = Timestamp::now();
    let user = &caller.user().id;
    let signed_in = match &caller.via {
        Via::Cookie { id_hash, .. } => matches!(
            state.store.web_session(id_hash).await,
            Ok(Some(s)) if s.expires_at > now && s.user_id == *user
        ),
        Via::Bearer { token } => match state.store.list_api_tokens(user).await {
            Ok(tokens) => tokens
                .iter()
                .any(|t| &t.id == token && t.expires_at.is_none_or(|e| e > now)),
            Err(_) => false,
        },
        Via::External { .. } => true,
    };
    if !signed_in {
        return false;
    }
    let fresh = match state.store.user(user).await {
        Ok(Some(u)) if !u.disabled => u,
        _ => return false,
    };
    match Principal::load(state.store.as_ref(), fresh).await {
        Ok(p) => {
            p.permissions == caller.principal.permissions
                && p.customers == caller.principal.customers
        }
        Err(_) => false,
    }
}

async fn gatekeeper_event(
    state: &AppState,
    id: &GatekeeperId,
    customer: &CustomerId,
    online: Option<bool>,
    at: Timestamp,
) -> Event {
    let stored = state.store.gatekeeper(id).await.ok().flatten();
    let data = match stored {
        Some(g) => json!({
            "id": g.id, "customer_id": g.customer_id,
            "online": online.unwrap_or(g.online),
            "last_contact": opt_ts(g.last_contact.or(Some(at))),
            "customer_disabled": g.customer_disabled,
            "customer_schedule": g.customer_schedule,
        }),
        None => json!({
            "id": id, "customer_id": customer, "online": online.unwrap_or(false),
            "last_contact": at.to_rfc3339(), "customer_disabled": false,
            "customer_schedule": null,
        }),
    };
    Event::default().event("gatekeeper").data(data.to_string())
}

async fn render(state: &AppState, p: &Principal, event: EngineEvent) -> Option<Event> {
    match event {
        EngineEvent::GatekeeperOnline {
            gatekeeper,
            customer,
            at,
        } if p.in_scope(&customer) => {
            Some(gatekeeper_event(state, &gatekeeper, &customer, Some(true), at).await)
        }
        EngineEvent::GatekeeperOffline {
            gatekeeper,
            customer,
            at,
        } if p.in_scope(&customer) => {
            Some(gatekeeper_event(state, &gatekeeper, &customer, Some(false), at).await)
        }
        EngineEvent::GatekeeperSwitch {
            gatekeeper,
            customer,
            at,
            ..
        } if p.in_scope(&customer) => {
            Some(gatekeeper_event(state, &gatekeeper, &customer, None, at).await)
        }
        EngineEvent::SessionStarted { session } if p.sees_session(&session) => {
            let name = state.store.customer(&session.customer_id).await.ok()?;
            let data = session_json(&session, name.as_ref().map(|c| c.name.as_str()), true);
            Some(Event::default().event("session").data(data.to_string()))
        }
        EngineEvent::SessionEnded { session } if p.sees_session(&session) => {
            let name = state.store.customer(&session.customer_id).await.ok()?;
            let data = session_json(&session, name.as_ref().map(|c| c.name.as_str()), false);
            Some(Event::default().event("session").data(data.to_string()))
        }
        _ => None,
    }
}
