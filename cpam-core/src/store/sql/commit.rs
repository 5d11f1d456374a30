//! Group commit for SQLite: the writes of a session's start and end (the
//! session row, its audit records) that arrive while a commit is under way
//! wait and share the next one, in one `BEGIN IMMEDIATE` transaction.
//!
//! SQLite has one writer at a time. Without this, concurrent session starts
//! each take the write lock on their own pool connection; the losers sleep
//! in SQLite's busy handler (1, 2, 5, 10 ms ...), which is what made a burst
//! of new connections wait hundreds of milliseconds. With it, one task
//! writes: it takes every queued write (up to [`MAX_BATCH`]), runs them,
//! commits once and answers every caller.
//!
//! A batch is one call to SQLite's connection thread: `BEGIN IMMEDIATE`,
//! every write and `COMMIT` as one statement list with its parameters bound
//! in order, the audit records sealed beforehand after the chain's head.
//! Each call to that thread costs a wake-up of it and of the writer (about
//! 0.1 ms on an idle 2-core VM), which statement by statement was most of a
//! session start's 0.6 ms. Once a write fails, the batch runs again one
//! write at a time, each under its own savepoint, so the failing write is
//! rolled back alone and answered with its error. (sqlx runs a statement
//! list with parameters only on SQLite and means to drop it, launchbadge/sqlx#3108;
//! the store's tests fail if it goes.)
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

use futures_util::StreamExt as _;
use sqlx::{AnyConnection, AnyPool, AssertSqlSafe, Either, Executor as _};
use tokio::sync::{mpsc, oneshot};

use super::activity::{
    AnyQuery, FINISH_SESSION, INSERT_AUDIT, INSERT_SESSION, append_audit_in, audit_head_in,
    bind_audit, bind_finish, bind_session, insert_audit_in,
};
use super::{is_conflict, storage, write_error};
use crate::audit;
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
        commit(
            &pool,
            &mut batch,
            &commits,
            &mut head,
            checkpoints.is_some(),
        )
        .await;
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
/// Writes rarely fail, so a batch first runs at once ([`run_at_once`]). If
/// a write fails there, the transaction rolls back and the batch runs again
/// with a savepoint per write ([`run_one_by_one`]), so only the failing
/// write is refused; a batch of one just answers its error. An audit
/// append after a stale head (another process appended) runs again the
/// same way, reading the head under the write lock.
async fn commit(
    pool: &AnyPool,
    batch: &mut Vec<Job>,
    commits: &AtomicU64,
    head: &mut Head,
    file: bool,
) {
    let known = std::mem::replace(head, Head::Unknown);
    let mut ran = run_at_once(pool, batch, known, file).await;
    if let Ok(Ran::Failed { again, .. }) = &ran
        && (batch.len() > 1 || *again)
    {
        ran = run_one_by_one(pool, batch).await;
    }
    let outcome = match ran {
        Ok(Ran::Committed(results, last)) => {
            *head = last;
            Ok(results)
        }
        Ok(Ran::Failed { error, .. }) if batch.len() == 1 => Ok(vec![Err(error)]),
        Ok(Ran::Failed { error, .. }) => Err(error),
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
    /// A write failed: everything rolled back. `again`: it may succeed
    /// when run again (an audit append after a stale head).
    Failed { error: Error, again: bool },
}

/// The statement of each kind of write, with positional parameters (`?`)
/// so that a batch's statements take their parameters in order.
static POSITIONAL: std::sync::LazyLock<[String; 3]> =
    std::sync::LazyLock::new(|| [INSERT_SESSION, FINISH_SESSION, INSERT_AUDIT].map(positional));

/// `sql` with its numbered parameters (`$1`, `$2`, ... in order) as `?`.
fn positional(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            while chars.peek().is_some_and(char::is_ascii_digit) {
                chars.next();
            }
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

/// Batches up to this many writes keep their prepared statement list
/// (most batches are a session start's two writes); larger ones are
/// prepared for one use.
const KEPT_BATCH: usize = 4;

/// Runs `batch` in one call to SQLite's connection thread: its writes as
/// one statement list, parameters bound in order, audit records sealed
/// here after the chain's head.
///
/// For a database file the list is `BEGIN IMMEDIATE; ...; COMMIT`, and a
/// call dropped mid-way (the runtime shutting down) closes its connection
/// instead of returning it to the pool with a transaction open. An
/// in-memory database, whose one connection cannot be replaced, runs the
/// list in a transaction the driver tracks (two calls more).
async fn run_at_once(pool: &AnyPool, batch: &[Job], head: Head, file: bool) -> sqlx::Result<Ran> {
    let mut conn = pool.acquire().await?;
    let audits = batch
        .iter()
        .any(|job| matches!(job.write, Write::Audit { .. }));
    let mut last = match head {
        Head::Unknown if audits => Head::Known(audit_head_in(&mut conn).await?),
        head => head,
    };
    let mut sealed = Vec::with_capacity(batch.len());
    let mut sql = String::from(if file { "BEGIN IMMEDIATE;\n" } else { "" });
    for job in batch {
        let (statement, record) = match &job.write {
            Write::Session(_) => (&POSITIONAL[0], None),
            Write::Finish { .. } => (&POSITIONAL[1], None),
            Write::Audit { event, .. } => {
                let Head::Known(after) = &last else {
                    return Err(unplanned("an append without the chain's head"));
                };
                let after = after.as_ref().map(|(s, h)| (*s, h.as_str()));
                let record = audit::seal(after, event.clone());
                last = Head::Known(Some((record.seq, record.hash.clone())));
                (&POSITIONAL[2], Some(record))
            }
        };
        sql.push_str(statement);
        sql.push_str(";\n");
        sealed.push(record);
    }
    if file {
        sql.push_str("COMMIT;");
    }
    let mut query: AnyQuery<'_> =
        sqlx::query(AssertSqlSafe(sql)).persistent(batch.len() <= KEPT_BATCH);
    for (job, record) in batch.iter().zip(&sealed) {
        if matches!(job.write, Write::Audit { .. }) && record.is_none() {
            return Err(unplanned("an unsealed append"));
        }
        query = bind_write(query, &job.write, record.as_ref());
    }

    let ran = if file {
        let mut open = Unfinished(Some(conn));
        let Some(conn) = open.0.as_mut() else {
            return Err(unplanned("a batch without its connection"));
        };
        let (changed, failed) = statement_list(conn, query).await;
        let outcome = match failed {
            None => Ok(changed.get(1..=batch.len()).map(<[u64]>::to_vec)),
            Some(e) => {
                // Whatever ran is undone; a failed `BEGIN` left nothing to undo.
                if !changed.is_empty() {
                    match conn.execute("ROLLBACK").await {
                        Ok(_) => {}
                        // SQLite rolled back on its own.
                        Err(e) if e.to_string().contains("no transaction is active") => {}
                        Err(_) => open.discard(),
                    }
                }
                Err((changed.len().checked_sub(1), e))
            }
        };
        open.release();
        outcome
    } else {
        let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?;
        let (changed, failed) = statement_list(&mut tx, query).await;
        match failed {
            None => {
                tx.commit().await?;
                Ok(Some(changed))
            }
            Some(e) => {
                tx.rollback().await?;
                Err((Some(changed.len()), e))
            }
        }
    };
    match ran {
        Ok(Some(changed)) if changed.len() == batch.len() => {
            let results = batch
                .iter()
                .zip(sealed)
                .zip(changed)
                .map(|((job, record), rows)| match (&job.write, record) {
                    (Write::Session(_), _) => Ok(Written::Session),
                    (Write::Finish { .. }, _) => Ok(Written::Finished { rows }),
                    (_, Some(record)) => Ok(Written::Audit(record)),
                    (Write::Audit { .. }, None) => Err(Error::internal("an unsealed append")),
                })
                .collect();
            Ok(Ran::Committed(results, last))
        }
        Ok(_) => Err(unplanned(
            "the database answered fewer statements than it was given",
        )),
        // The write at `i` failed.
        Err((Some(i), e)) if i < batch.len() => {
            let again = matches!(batch[i].write, Write::Audit { .. })
                && matches!(&e, sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::UniqueViolation);
            Ok(Ran::Failed {
                error: refused(&batch[i].write, e),
                again,
            })
        }
        // `BEGIN IMMEDIATE` (the database locked by another process) or
        // `COMMIT` failed: the batch may run again with the write lock
        // taken the careful way.
        Err((_, e)) if is_conflict(&e) => Ok(Ran::Failed {
            error: storage("cannot commit to the database", e),
            again: true,
        }),
        Err((_, e)) => Err(e),
    }
}

/// A batch that did not go as planned (a defect, not a database error).
fn unplanned(what: &str) -> sqlx::Error {
    sqlx::Error::Protocol(format!("group commit: {what}"))
}

/// Runs a statement list: the rows each statement changed, up to the
/// first failure.
async fn statement_list(
    conn: &mut AnyConnection,
    query: AnyQuery<'_>,
) -> (Vec<u64>, Option<sqlx::Error>) {
    let mut changed = Vec::new();
    let mut results = conn.fetch_many(query);
    while let Some(result) = results.next().await {
        match result {
            Ok(Either::Left(done)) => changed.push(done.rows_affected()),
            Ok(Either::Right(_row)) => {}
            Err(e) => return (changed, Some(e)),
        }
    }
    (changed, None)
}

/// A pool connection in the middle of a statement list of its own
/// transaction: dropped before [`Unfinished::release`], it is closed, not
/// returned to the pool with its transaction's state unknown.
pub(super) struct Unfinished(pub(super) Option<sqlx::pool::PoolConnection<sqlx::Any>>);

impl Unfinished {
    /// Back to the pool: the transaction is over.
    fn release(mut self) {
        self.0.take();
    }

    /// Closed when dropped: the transaction's state is unknown.
    fn discard(&mut self) {
        if let Some(conn) = self.0.as_mut() {
            conn.close_on_drop();
        }
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        self.discard();
    }
}

/// Runs `batch` in one transaction with a savepoint per write, each after
/// the previous one answered; a failing write is rolled back alone.
async fn run_one_by_one(pool: &AnyPool, batch: &[Job]) -> sqlx::Result<Ran> {
    let mut head = Head::Unknown;
    let mut tx = begin(pool).await?;
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
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

/// Binds `write`'s parameters to its statement (an append: to `record`,
/// the event sealed).
fn bind_write<'q>(
    query: AnyQuery<'q>,
    write: &Write,
    record: Option<&AuditRecord>,
) -> AnyQuery<'q> {
    match (write, record) {
        (Write::Session(s), _) => bind_session(query, s),
        (
            Write::Finish {
                id,
                ended_at,
                bytes_up,
                bytes_down,
                reason,
                detail,
            },
            _,
        ) => bind_finish(
            query,
            id,
            *ended_at,
            (*bytes_up, *bytes_down),
            *reason,
            detail.as_deref(),
        ),
        (Write::Audit { event, detail }, Some(record)) => bind_audit(query, record, event, detail),
        (Write::Audit { .. }, None) => query,
    }
}

async fn apply(conn: &mut AnyConnection, write: &Write, head: &mut Head) -> Result<Written> {
    let written = match write {
        Write::Session(_) => bind_write(sqlx::query(INSERT_SESSION), write, None)
            .execute(&mut *conn)
            .await
            .map(|_| Written::Session),
        Write::Finish { .. } => bind_write(sqlx::query(FINISH_SESSION), write, None)
            .execute(&mut *conn)
            .await
            .map(|done| Written::Finished {
                rows: done.rows_affected(),
            }),
        Write::Audit { event, detail } => {
            append_after(conn, std::mem::replace(head, Head::Unknown), event, detail)
                .await
                .inspect(|r| *head = Head::Known(Some((r.seq, r.hash.clone()))))
                .map(Written::Audit)
        }
    };
    written.map_err(|e| refused(write, e))
}

/// The error a write is answered with when it failed.
fn refused(write: &Write, e: sqlx::Error) -> Error {
    match write {
        Write::Session(s) => write_error(
            e,
            || format!("session `{}` already exists", s.id),
            String::new,
        ),
        Write::Finish { .. } => Error::from(e),
        Write::Audit { .. } => storage("cannot append audit record", e),
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
