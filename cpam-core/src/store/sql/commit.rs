//! Group commit for SQLite: the writes of a session's start and end (the
//! session row, its audit records) that arrive while a commit is under way
//! wait and share the next one, in one `BEGIN IMMEDIATE` transaction.
//!
//! SQLite has one writer at a time. Without this, concurrent session starts
//! each take the write lock on their own pool connection; the losers sleep
//! in SQLite's busy handler (1, 2, 5, 10 ms ...), which is what made a burst
//! of new connections wait hundreds of milliseconds. With it, one task
//! writes: it takes every queued write (up to [`MAX_BATCH`]), runs them
//! (each under its own savepoint once one has failed, so a failing write is
//! rolled back alone and answered with its error), commits once and answers
//! every caller.
//!
//! Durability: a write is answered only after its transaction committed, so
//! a session the engine reports as started is in the database before the
//! user's first byte is forwarded. The database runs in WAL mode with
//! `synchronous = NORMAL`: a commit is in the WAL file (in the operating
//! system's cache) at once and survives a crash of the server process; it
//! reaches the disk at the next WAL checkpoint, so only an operating system
//! crash or a power cut can lose the last commits. No session start waits
//! for an fsync.
//!
//! Checkpoints: SQLite would run one on the committing connection whenever
//! the WAL passes 1,000 pages, so every sixtieth session start or so waited
//! for the checkpoint's fsyncs (about 4 ms). For a database file, a task on
//! another connection checkpoints instead (`PASSIVE`: it never blocks the
//! writer) after every [`CHECKPOINT_EVERY`] commits, one at a time; the
//! writers' own automatic checkpoint stays as a bound, at
//! [`super::WAL_AUTOCHECKPOINT_PAGES`].
//!
//! The writer task is started on the runtime of the first write and again
//! on the current runtime if the one it ran on has shut down (a store
//! outliving a runtime, as in the Python and C bindings).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sqlx::{AnyConnection, AnyPool};
use tokio::sync::{mpsc, oneshot};

use super::activity::{append_audit_in, finish_session_in, insert_audit_in, insert_session_in};
use super::{is_conflict, storage, write_error};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{AuditEvent, AuditRecord, EndReason, Session, SessionId, Timestamp};

/// Most writes one commit takes.
pub(super) const MAX_BATCH: usize = 512;
/// Commits between two background checkpoints.
pub(super) const CHECKPOINT_EVERY: u64 = 32;
/// How often a batch whose `BEGIN IMMEDIATE` found the database locked by
/// another process (the admin CLI) is retried; each try waits up to the busy timeout.
const BEGIN_ATTEMPTS: u32 = 3;

/// One write of the session lifecycle.
#[derive(Debug)]
pub(super) enum Write {
    /// A new session row.
    Session(Session),
    /// The end of a session; answers how many rows changed.
    Finish {
        id: SessionId,
        ended_at: Timestamp,
        bytes_up: u64,
        bytes_down: u64,
        reason: EndReason,
        detail: Option<String>,
    },
    /// An audit event, sealed into the chain; `detail` is its JSON text.
    Audit { event: AuditEvent, detail: String },
}

/// What a write answers.
#[derive(Debug)]
pub(super) enum Written {
    Session,
    Finished { rows: u64 },
    Audit(AuditRecord),
}

struct Job {
    write: Write,
    reply: oneshot::Sender<Result<Written>>,
}

/// The queue in front of the writer task, shared by a store's clones.
pub(super) struct GroupCommit {
    pool: AnyPool,
    queue: Mutex<Option<mpsc::UnboundedSender<Job>>>,
    commits: Arc<AtomicU64>,
    /// Checkpoints in the background (a database file), else `None`.
    checkpoints: Option<Arc<Checkpoints>>,
}

/// The background checkpoints of a database file.
#[derive(Debug, Default)]
struct Checkpoints {
    running: AtomicBool,
    done: AtomicU64,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("commits", &self.commits.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl GroupCommit {
    /// The group commit of `pool`; `file`: a database file, whose WAL
    /// is checkpointed in the background.
    pub(super) fn new(pool: AnyPool, file: bool) -> Self {
        Self {
            pool,
            queue: Mutex::new(None),
            commits: Arc::default(),
            checkpoints: file.then(Arc::default),
        }
    }

    /// Background checkpoints finished so far.
    pub(super) fn checkpoints(&self) -> u64 {
        self.checkpoints
            .as_ref()
            .map_or(0, |c| c.done.load(Ordering::Relaxed))
    }

    /// Transactions committed so far.
    pub(super) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Queues `write` for the next commit and waits until it committed.
    pub(super) async fn write(&self, write: Write) -> Result<Written> {
        let (reply, answer) = oneshot::channel();
        let mut job = Job { write, reply };
        {
            let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            let mut started = false;
            loop {
                if let Some(sender) = queue.as_ref() {
                    match sender.send(job) {
                        Ok(()) => break,
                        // The writer's runtime has shut down: start another,
                        // once. A writer gone at once means this runtime is
                        // shutting down too (its new tasks are dropped).
                        Err(mpsc::error::SendError(back)) => job = back,
                    }
                    if started {
                        return Err(Error::new(
                            ErrorKind::Storage,
                            "the database writer cannot run: the runtime is shutting down",
                        ));
                    }
                }
                let (sender, receiver) = mpsc::unbounded_channel();
                tokio::spawn(writer(
                    self.pool.clone(),
                    receiver,
                    self.commits.clone(),
                    self.checkpoints.clone(),
                ));
                *queue = Some(sender);
                started = true;
            }
        }
        answer.await.map_err(|_| {
            Error::new(
                ErrorKind::Storage,
                "the database writer stopped before the write committed",
            )
        })?
    }
}

async fn writer(
    pool: AnyPool,
    mut queue: mpsc::UnboundedReceiver<Job>,
    commits: Arc<AtomicU64>,
    checkpoints: Option<Arc<Checkpoints>>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut since_checkpoint = 0;
    let mut head = Head::Unknown;
    while let Some(first) = queue.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit(&pool, &mut batch, &commits, &mut head).await;
        since_checkpoint += 1;
        if let Some(c) = &checkpoints
            && since_checkpoint >= CHECKPOINT_EVERY
            && !c.running.swap(true, Ordering::AcqRel)
        {
            since_checkpoint = 0;
            tokio::spawn(checkpoint(pool.clone(), c.clone()));
        }
    }
}

/// Copies the WAL into the database file on a connection of its own,
/// while the writer goes on.
async fn checkpoint(pool: AnyPool, c: Arc<Checkpoints>) {
    match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_optional(&pool)
        .await
    {
        Ok(_) => {
            c.done.fetch_add(1, Ordering::Relaxed);
        }
        Err(error) => tracing::warn!(%error, "background checkpoint failed"),
    }
    c.running.store(false, Ordering::Release);
}

/// The audit chain's head as the writer last committed it. It saves the
/// head's read on the next append; another process that appended meanwhile
/// (the admin CLI) makes that insert fail on the sequence number, and the
/// head is read again. Anything rolled back makes it unknown.
#[derive(Debug, Clone)]
enum Head {
    Unknown,
    Known(Option<(i64, String)>),
}

/// Runs `batch` in one transaction and answers every job. A transaction
/// dropped before its commit (the runtime shutting down) rolls back.
///
/// Writes rarely fail, so a batch first runs without savepoints (fewer
/// statements on a session's start path). If a write fails there, the
/// transaction rolls back and the batch runs again with a savepoint per
/// write, so only the failing one is refused; a batch of one just answers
/// its error.
async fn commit(pool: &AnyPool, batch: &mut Vec<Job>, commits: &AtomicU64, head: &mut Head) {
    let known = std::mem::replace(head, Head::Unknown);
    let mut ran = run(pool, batch, false, known).await;
    if matches!(ran, Ok(Ran::Failed(_))) && batch.len() > 1 {
        ran = run(pool, batch, true, Head::Unknown).await;
    }
    let outcome = match ran {
        Ok(Ran::Committed(results, last)) => {
            *head = last;
            Ok(results)
        }
        Ok(Ran::Failed(error)) if batch.len() == 1 => Ok(vec![Err(error)]),
        Ok(Ran::Failed(error)) => Err(error),
        Err(e) => Err(storage("cannot commit to the database", e)),
    };
    match outcome {
        Ok(results) => {
            commits.fetch_add(1, Ordering::Relaxed);
            for (job, result) in batch.drain(..).zip(results) {
                let _ = job.reply.send(result);
            }
        }
        Err(e) => fail_all(batch, &e),
    }
}

/// What one run of a batch did.
enum Ran {
    /// Committed; each write's answer, and the chain's head after them.
    Committed(Vec<Result<Written>>, Head),
    /// A write failed without a savepoint: everything rolled back.
    Failed(Error),
}

async fn run(pool: &AnyPool, batch: &[Job], savepoints: bool, mut head: Head) -> sqlx::Result<Ran> {
    let mut tx = begin(pool).await?;
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        if !savepoints {
            match apply(&mut tx, &job.write, &mut head).await {
                Ok(written) => results.push(Ok(written)),
                Err(e) => {
                    tx.rollback().await?;
                    return Ok(Ran::Failed(e));
                }
            }
            continue;
        }
        let mut savepoint = sqlx::Acquire::begin(&mut tx).await?;
        let result = apply(&mut savepoint, &job.write, &mut head).await;
        if result.is_ok() {
            savepoint.commit().await?;
        } else {
            savepoint.rollback().await?;
        }
        results.push(result);
    }
    tx.commit().await?;
    Ok(Ran::Committed(results, head))
}

async fn begin(pool: &AnyPool) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Any>> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match pool.begin_with("BEGIN IMMEDIATE").await {
            Ok(tx) => return Ok(tx),
            Err(e) if attempt < BEGIN_ATTEMPTS && is_conflict(&e) => continue,
            Err(e) => return Err(e),
        }
    }
}

async fn apply(conn: &mut AnyConnection, write: &Write, head: &mut Head) -> Result<Written> {
    match write {
        Write::Session(s) => insert_session_in(&mut *conn, s)
            .await
            .map(|()| Written::Session)
            .map_err(|e| {
                write_error(
                    e,
                    || format!("session `{}` already exists", s.id),
                    String::new,
                )
            }),
        Write::Finish {
            id,
            ended_at,
            bytes_up,
            bytes_down,
            reason,
            detail,
        } => finish_session_in(
            &mut *conn,
            id,
            *ended_at,
            (*bytes_up, *bytes_down),
            *reason,
            detail.as_deref(),
        )
        .await
        .map(|rows| Written::Finished { rows })
        .map_err(Error::from),
        Write::Audit { event, detail } => {
            append_after(conn, std::mem::replace(head, Head::Unknown), event, detail)
                .await
                .inspect(|r| *head = Head::Known(Some((r.seq, r.hash.clone()))))
                .map(Written::Audit)
                .map_err(|e| storage("cannot append audit record", e))
        }
    }
}

/// Appends `event` after `head` if known, else after the head read now.
async fn append_after(
    conn: &mut AnyConnection,
    head: Head,
    event: &AuditEvent,
    detail: &str,
) -> sqlx::Result<AuditRecord> {
    if let Head::Known(head) = head {
        match insert_audit_in(&mut *conn, head.as_ref(), event, detail).await {
            // Another process appended since: read the head.
            Err(sqlx::Error::Database(ref db))
                if db.kind() == sqlx::error::ErrorKind::UniqueViolation => {}
            other => return other,
        }
    }
    append_audit_in(conn, event, detail).await
}

fn fail_all(batch: &mut Vec<Job>, error: &Error) {
    for job in batch.drain(..) {
        let _ = job
            .reply
            .send(Err(Error::new(error.kind(), error.message().to_string())));
    }
}

impl super::SqlStore {
    /// Transactions the group commit has committed (SQLite only; `0` on
    /// PostgreSQL, whose writers commit on their own).
    pub fn group_commits(&self) -> u64 {
        self.group.as_ref().map_or(0, |g| g.commits())
    }

    /// Checkpoints run in the background (SQLite files only).
    pub fn background_checkpoints(&self) -> u64 {
        self.group.as_ref().map_or(0, |g| g.checkpoints())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::error::ErrorKind;
    use crate::model::{
        AuditCategory, AuditEvent, CustomerId, ServiceId, Session, SessionId, SessionProtocol,
        Timestamp, UserId,
    };
    use crate::store::sql::SqlStore;
    use crate::store::{AuditFilter, AuditLog as _, SessionFilter, SessionLog as _};

    fn event(n: usize) -> AuditEvent {
        AuditEvent {
            at: Timestamp(1_700_000_000_000 + n as i64),
            category: AuditCategory::UserActivity,
            action: "session.start".into(),
            actor: format!("group-commit-{n}"),
            customer_id: None,
            session_id: None,
            detail: serde_json::json!({ "n": n }),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_audit_appends_share_commits_and_keep_one_chain() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("cpam.db").display());
        let store = Arc::new(SqlStore::connect(&url).await.expect("open"));
        let before = store.group_commits();
        let n = 200;
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move { store.append_audit(&event(i)).await })
            })
            .collect();
        let mut seqs = Vec::new();
        for t in tasks {
            seqs.push(t.await.expect("join").expect("append").seq);
        }
        let commits = store.group_commits() - before;
        assert!(
            commits < n as u64 / 2,
            "{n} concurrent appends took {commits} commits; they should share them"
        );
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(seqs.len(), n, "every append has its own place in the chain");
        let records = store
            .audit_records(&AuditFilter::default())
            .await
            .expect("records");
        let ours = records
            .iter()
            .filter(|r| r.event.actor.starts_with("group-commit-"))
            .count();
        assert_eq!(ours, n);
        let verified = crate::audit::verify(&records);
        assert!(verified.first_broken.is_none(), "{verified:?}");
    }

    fn session(id: &str) -> Session {
        Session {
            id: SessionId(id.into()),
            user_id: UserId("usr_gc".into()),
            user_name: "gc".into(),
            customer_id: CustomerId("cus_gc".into()),
            gatekeeper_id: None,
            service_id: ServiceId("svc_gc".into()),
            service_name: "db".into(),
            target: "10.0.0.9:5432".parse().expect("target"),
            grant_id: None,
            protocol: SessionProtocol::Tcp,
            node_id: None,
            started_at: Timestamp(1_700_000_000_000),
            ended_at: None,
            bytes_up: 0,
            bytes_down: 0,
            end_reason: None,
            end_detail: None,
        }
    }

    /// Batches run without savepoints until a write fails: then only that
    /// write is refused, and every other write of its batch still commits.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_write_is_refused_alone_and_its_batch_commits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("cpam.db").display());
        let store = Arc::new(SqlStore::connect(&url).await.expect("open"));
        store
            .insert_session(&session("ses_taken"))
            .await
            .expect("first insert");
        let n = 120;
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    match i % 3 {
                        0 => store.insert_session(&session("ses_taken")).await.err(),
                        1 => store
                            .insert_session(&session(&format!("ses_{i}")))
                            .await
                            .err(),
                        _ => store.append_audit(&event(i)).await.err(),
                    }
                })
            })
            .collect();
        for (i, t) in tasks.into_iter().enumerate() {
            let error = t.await.expect("join");
            if i % 3 == 0 {
                let e = error.expect("a second session `ses_taken` is refused");
                assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
                assert!(e.message().contains("ses_taken"), "{e}");
            } else {
                assert!(error.is_none(), "write {i} failed: {error:?}");
            }
        }
        let sessions = store
            .list_sessions(&SessionFilter::default())
            .await
            .expect("sessions");
        assert_eq!(sessions.len(), 1 + n / 3, "ses_taken once, and every ses_N");
        let records = store
            .audit_records(&AuditFilter::default())
            .await
            .expect("records");
        assert_eq!(records.len(), n / 3, "every audit append committed");
        let verified = crate::audit::verify(&records);
        assert!(verified.first_broken.is_none(), "{verified:?}");
    }

    /// A database file's WAL is checkpointed by a background task, not by
    /// the writer on the session's start path; nothing is lost doing so.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_database_file_is_checkpointed_in_the_background() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("cpam.db").display());
        let store = SqlStore::connect(&url).await.expect("open");
        let bound: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
            .fetch_one(&store.pool)
            .await
            .expect("pragma");
        assert_eq!(
            bound,
            i64::from(super::super::WAL_AUTOCHECKPOINT_PAGES),
            "writers checkpoint themselves only past the bound"
        );
        let n = 4 * super::CHECKPOINT_EVERY as usize;
        for i in 0..n {
            store.append_audit(&event(i)).await.expect("append");
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while store.background_checkpoints() == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "no background checkpoint after {n} commits"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let records = store
            .audit_records(&AuditFilter::default())
            .await
            .expect("records");
        assert_eq!(records.len(), n);
        assert!(crate::audit::verify(&records).first_broken.is_none());
        let memory = SqlStore::connect("sqlite::memory:").await.expect("memory");
        for i in 0..n {
            memory.append_audit(&event(i)).await.expect("append");
        }
        assert_eq!(memory.background_checkpoints(), 0, "no WAL in memory");
    }

    /// The writer keeps the chain's head between commits; another process
    /// appending to the same file meanwhile (the admin CLI) neither forks
    /// the chain nor makes an append fail.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appends_from_another_process_between_commits_keep_one_chain() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("cpam.db").display());
        let server = SqlStore::connect(&url).await.expect("open");
        let cli = SqlStore::connect(&url).await.expect("open again");
        let mut seqs = Vec::new();
        for i in 0..30 {
            seqs.push(server.append_audit(&event(i)).await.expect("server").seq);
            if i % 3 == 0 {
                seqs.push(cli.append_audit(&event(1000 + i)).await.expect("cli").seq);
            }
        }
        let expected: Vec<i64> = (1..=seqs.len() as i64).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, expected, "one dense sequence");
        let records = server
            .audit_records(&AuditFilter::default())
            .await
            .expect("records");
        assert_eq!(records.len(), 40);
        let verified = crate::audit::verify(&records);
        assert!(verified.first_broken.is_none(), "{verified:?}");
    }
}
