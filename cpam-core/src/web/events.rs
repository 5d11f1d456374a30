//! `/api/v1/events`: the engine's events as server-sent events, each one
//! filtered to the caller's scope (the scope as it was when the stream
//! opened).
//!
//! - `gatekeeper`: `{id, customer_id, online, last_contact, customer_disabled,
//!   customer_schedule}`
//! - `session`: `{id, live, ...session}` (as `GET /api/v1/sessions/{id}`)
//! - `lagged`: the stream fell behind and lost events; reload.

use std::convert::Infallible;

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
use super::auth::Caller;

pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = state.engine.subscribe();
    let stream = futures_util::stream::unfold(
        (rx, state, caller.principal),
        |(mut rx, state, p)| async move {
            loop {
                let event = match rx.recv().await {
                    Ok(e) => render(&state, &p, e).await,
                    Err(RecvError::Lagged(n)) => {
                        Some(Event::default().event("lagged").data(n.to_string()))
                    }
                    Err(RecvError::Closed) => return None,
                };
                if let Some(e) = event {
                    return Some((Ok(e), (rx, state, p)));
                }
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
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
