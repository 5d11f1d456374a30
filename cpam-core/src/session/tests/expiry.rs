//! When a live session ends on its own: its grant window closes, a new
//! grant moves the end, and which of expiry, terminate and revoke wins.

use super::*;

#[tokio::test]
async fn the_grant_window_closing_on_the_clock_expires_the_session() {
    let w = world().await;
    let (id, task, _user, _dialer) = w.spawn(Arc::new(Hold)).await;
    w.clock.advance(HOUR - Duration::from_secs(1));
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(w.is_live(&id), "ended a second early");
    w.clock.advance(Duration::from_secs(1));
    let s = tokio::time::timeout(SOON, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(s.end_reason, Some(EndReason::Expired));
    assert_eq!(s.ended_at, Some(w.clock.now()));
    assert_eq!(w.row(&id).await.end_reason, Some(EndReason::Expired));
}

#[tokio::test]
async fn a_new_longer_grant_extends_a_live_session() {
    let w = world().await;
    let (id, task, _user, _dialer) = w.spawn(Arc::new(Hold)).await;
    let start = w.clock.now();
    // A second grant, valid for three hours, then a re-check (what adding
    // a grant through the CLI or the console triggers).
    w.admin
        .add_grant(
            "vera",
            "acme",
            "ssh",
            start,
            Some(start.add(3 * HOUR)),
            None,
        )
        .await
        .unwrap();
    assert_eq!(w.engine.recheck().await.unwrap(), 0);
    w.clock.advance(HOUR + Duration::from_secs(60));
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(w.is_live(&id), "ended at the first grant's end");
    w.clock.advance(2 * HOUR);
    let s = tokio::time::timeout(SOON, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(s.end_reason, Some(EndReason::Expired));
    assert_eq!(s.ended_at, Some(w.clock.now()));
}

#[tokio::test]
async fn a_shorter_grant_brings_a_live_session_s_end_forward() {
    let w = world().await;
    let (id, task, _user, _dialer) = w.spawn(Arc::new(Hold)).await;
    let start = w.clock.now();
    let short = w
        .admin
        .add_grant(
            "vera",
            "acme",
            "ssh",
            start,
            Some(start.add(Duration::from_secs(600))),
            None,
        )
        .await
        .unwrap();
    // The hour-long grant revoked (stamped with the wall clock: the manual
    // one moves past it first).
    w.admin.revoke_grant(&w.grant).await.unwrap();
    w.clock.advance(Duration::from_secs(1));
    assert_eq!(w.engine.recheck().await.unwrap(), 0);
    assert!(w.is_live(&id), "the ten-minute grant still allows it");
    assert_ne!(short.id.0, w.grant);
    w.clock.advance(Duration::from_secs(599));
    let s = tokio::time::timeout(SOON, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(s.end_reason, Some(EndReason::Expired));
}

#[tokio::test]
async fn terminate_first_wins_over_expiry_and_revoke() {
    let w = world().await;
    let (id, task, _user, _dialer) = w.spawn(Arc::new(Stall)).await;
    // The protocol ignores cancellation, so every reason arrives while live.
    assert!(w.engine.terminate(&id, "ops", Some("maintenance")));
    w.clock.advance(HOUR);
    w.admin.revoke_grant(&w.grant).await.unwrap();
    assert_eq!(w.engine.recheck().await.unwrap(), 1);
    task.abort();
    let _ = task.await;
    w.engine.close().await;
    let row = w.row(&id).await;
    assert_eq!(row.end_reason, Some(EndReason::TerminatedBy));
    assert_eq!(row.end_detail.as_deref(), Some("ops: maintenance"));
}

#[tokio::test]
async fn expiry_first_wins_over_terminate() {
    let w = world().await;
    let (id, task, _user, _dialer) = w.spawn(Arc::new(Stall)).await;
    w.clock.advance(HOUR);
    // The expiry timer runs on its own task: wait for its cancellation.
    let (tx, rx) = tokio::sync::oneshot::channel();
    assert!(
        w.engine
            .watch(&id, Arc::new(Cancelled(Mutex::new(Some(tx)))))
    );
    tokio::time::timeout(SOON, rx).await.unwrap().unwrap();
    assert!(w.engine.terminate(&id, "ops", None));
    task.abort();
    let _ = task.await;
    w.engine.close().await;
    assert_eq!(w.row(&id).await.end_reason, Some(EndReason::Expired));
}

/// Tells when its session's cancellation fires.
#[derive(Debug)]
struct Cancelled(Mutex<Option<tokio::sync::oneshot::Sender<()>>>);

impl SessionObserver for Cancelled {
    fn on_start(&self, _session: &Session, control: &SessionControl) {
        let token = control.cancelled().clone();
        let tx = self.0.lock().unwrap().take();
        tokio::spawn(async move {
            token.cancelled().await;
            if let Some(tx) = tx {
                let _ = tx.send(());
            }
        });
    }
}

#[tokio::test]
async fn revoke_first_wins_over_terminate_and_expiry() {
    let w = world().await;
    let (id, task, _user, _dialer) = w.spawn(Arc::new(Hold)).await;
    w.admin.revoke_grant(&w.grant).await.unwrap();
    // The revocation is stamped with the wall clock: step past it.
    w.clock.advance(Duration::from_secs(1));
    assert_eq!(w.engine.recheck().await.unwrap(), 1);
    w.engine.terminate(&id, "ops", None);
    w.clock.advance(HOUR);
    let s = task.await.unwrap().unwrap();
    assert_eq!(s.end_reason, Some(EndReason::Revoked));
    assert_eq!(w.row(&id).await.end_reason, Some(EndReason::Revoked));
}
