//! The runner: one path from an [`Approval`] to a session's end for every
//! protocol.
//!
//! `run` records the session while the dialer reaches the target (the two
//! overlap: first-byte latency), refuses the user if either failed or the
//! session was ended meanwhile, accepts the user's connection, hands both
//! ends to the [`Protocol`], and finishes the session with the first end
//! reason set (terminate, expiry, revoke, a failing recorder), else
//! `completed` or `error` from the protocol's result. A protocol that
//! panics or is dropped mid-way still ends the session (the [`LiveSession`]
//! drop guard).

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::approval::Approval;
use super::engine::SessionEngine;
use super::live::LiveSession;
use crate::error::{Error, ErrorKind, Result};
use crate::model::{EndReason, Session, SessionProtocol};
use crate::tunnel::dialer::{Connection, DialTarget, Dialer};

/// The user's side of a session before it runs: what a front door
/// received, accepted only once the session is recorded and the target
/// reached, or refused with the reason.
#[async_trait]
pub trait UserIo: Send {
    /// The session runs: the user's connection.
    async fn accept(self: Box<Self>) -> Result<Connection>;
    /// The session will not run.
    async fn refuse(self: Box<Self>, error: &Error);
}

/// A connection already accepted (a web socket, a test stream): refusing
/// it closes it.
#[async_trait]
impl UserIo for Connection {
    async fn accept(self: Box<Self>) -> Result<Connection> {
        Ok(*self)
    }

    async fn refuse(self: Box<Self>, _error: &Error) {
        self.close().await;
    }
}

/// How a protocol reaches the target.
#[derive(Debug)]
#[non_exhaustive]
pub enum Upstream {
    /// The runner dialed it.
    Connected(Connection),
    /// The protocol dials on its own ([`Protocol::dials_itself`]).
    Dialer {
        dialer: Arc<dyn Dialer>,
        target: DialTarget,
    },
}

impl Upstream {
    /// The dialed connection, dialing now if the runner did not.
    pub async fn connect(self) -> Result<Connection> {
        match self {
            Upstream::Connected(c) => Ok(c),
            Upstream::Dialer { dialer, target } => dialer.dial(&target).await,
        }
    }

    async fn close(self) {
        if let Upstream::Connected(c) = self {
            c.close().await;
        }
    }
}

/// One way of carrying a session's bytes: the TCP splice, SSH with
/// credential injection, SFTP, RDP. Object-safe; one value may run many
/// sessions at once.
#[async_trait]
pub trait Protocol: Send + Sync + std::fmt::Debug {
    /// What the session record says it carries.
    fn kind(&self) -> SessionProtocol;

    /// Whether the protocol dials the target itself (it gets
    /// [`Upstream::Dialer`]); by default the runner dials while it records
    /// the session.
    fn dials_itself(&self) -> bool {
        false
    }

    /// Runs the session until either side ends it or `live.cancel()` fires.
    /// An error ends the session with reason `error`.
    async fn run(&self, user: Connection, upstream: Upstream, live: &LiveSession) -> Result<()>;
}

impl SessionEngine {
    /// Runs an approved session from start to end with `protocol`, reaching
    /// the target through `dialer`, and returns its final record.
    ///
    /// Fails, after refusing `user`, when the session never ran: its row
    /// could not be stored (a `session.start` record written alongside is
    /// followed by `session.refused`), its `session.start` audit record
    /// could not be written (the row is closed as `refused`: no session
    /// runs unaudited), the target could not be reached (the row is closed
    /// as `refused`), or it was ended before it started (`PermissionDenied`,
    /// the row closed with that reason).
    ///
    /// ```no_run
    /// # async fn demo(
    /// #     engine: std::sync::Arc<cpam_core::session::SessionEngine>,
    /// #     user: cpam_core::model::User,
    /// #     gatekeeper: cpam_core::model::Gatekeeper,
    /// #     service: cpam_core::model::Service,
    /// #     client: tokio::net::TcpStream,
    /// # ) -> cpam_core::Result<()> {
    /// use std::sync::Arc;
    /// use cpam_core::proxy::tcp::TcpSplice;
    /// use cpam_core::session::Originator;
    /// use cpam_core::tunnel::dialer::{Connection, DirectDialer};
    ///
    /// let from = Originator::new("192.0.2.7", 50_000);
    /// let approval = engine.approve(&user, None, &gatekeeper, &service, &from).await?;
    /// let user_io = Box::new(Connection::stream(client));
    /// let ended = engine.run(approval, user_io, Arc::new(DirectDialer), &TcpSplice).await?;
    /// println!("{} ended: {:?}", ended.id, ended.end_reason);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn run(
        self: &Arc<Self>,
        approval: Approval,
        user: Box<dyn UserIo>,
        dialer: Arc<dyn Dialer>,
        protocol: &dyn Protocol,
    ) -> Result<Session> {
        let o = approval.originator();
        let target = DialTarget {
            gatekeeper: Some(approval.gatekeeper().id.clone()),
            target: approval.service().target.clone(),
            originator: (o.address.clone(), o.port),
        };
        let begun = Instant::now();
        let dial = async {
            let dialed = if protocol.dials_itself() {
                None
            } else {
                Some(dialer.dial(&target).await)
            };
            (dialed, begun.elapsed())
        };
        let record = async {
            let live = self.start(approval, protocol.kind()).await;
            (live, begun.elapsed())
        };
        // Recording the session and dialing the target overlap; the user is
        // accepted only once both are done.
        let ((live, recorded_in), (dialed, dialed_in)) = tokio::join!(record, dial);
        let live = match live {
            Ok(live) => live,
            Err(e) => {
                tracing::error!(error = %e, "cannot record a session, refusing it");
                user.refuse(&e).await;
                if let Some(Ok(c)) = dialed {
                    c.close().await;
                }
                return Err(e);
            }
        };
        let upstream = match dialed {
            None => Upstream::Dialer { dialer, target },
            Some(Ok(c)) => Upstream::Connected(c),
            Some(Err(e)) => {
                tracing::info!(session = %live.id(), error = %e, "target unreachable");
                user.refuse(&e).await;
                live.finish(EndReason::Refused, Some(e.message().to_string()))
                    .await;
                return Err(e);
            }
        };
        if live.cancel().is_cancelled() {
            // Terminated or revoked while it was being opened.
            let e = Error::new(
                ErrorKind::PermissionDenied,
                "the session was ended before it started",
            );
            user.refuse(&e).await;
            upstream.close().await;
            live.finish(EndReason::Completed, None).await;
            return Err(e);
        }
        let user = match user.accept().await {
            Ok(c) => c,
            Err(e) => {
                upstream.close().await;
                return Ok(live
                    .finish(EndReason::Error, Some(e.message().to_string()))
                    .await);
            }
        };
        // Where a session's opening time goes (the first-byte latency).
        tracing::debug!(
            session = %live.id(),
            recorded_us = recorded_in.as_micros() as u64,
            dialed_us = dialed_in.as_micros() as u64,
            accepted_us = begun.elapsed().as_micros() as u64,
            "session opened"
        );
        let ended = protocol.run(user, upstream, &live).await;
        Ok(match ended {
            Ok(()) => live.finish(EndReason::Completed, None).await,
            Err(e) => {
                tracing::info!(session = %live.id(), error = %e, "session failed");
                live.finish(EndReason::Error, Some(e.message().to_string()))
                    .await
            }
        })
    }
}
