//! Decoding rows into model types, and the column lists that go with them.

use sqlx::Row as _;
use sqlx::any::AnyRow;

use crate::error::{Error, ErrorKind, Result};
use crate::model::{
    AuditCategory, AuditEvent, AuditRecord, Customer, CustomerId, Gatekeeper, GatekeeperId, Grant,
    GrantId, KeyId, Schedule, Service, ServiceId, Session, SessionId, Target, Timestamp, User,
    UserId, UserKey,
};

pub(super) const CUSTOMER: &str = "id, name, created_at";
pub(super) const GATEKEEPER: &str = "id, customer_id, name, public_key, fingerprint, registered_at, \
     created_at, last_contact, online, customer_disabled, customer_schedule, node_id";
pub(super) const USER: &str = "id, name, password_hash, disabled, created_at";
pub(super) const USER_KEY: &str =
    "id, user_id, public_key, fingerprint, label, gatekeeper_id, created_at";
pub(super) const SERVICE: &str =
    "id, customer_id, gatekeeper_id, name, kind, target_host, target_port, created_at";
pub(super) const GRANT: &str = "id, user_id, service_id, not_before, not_after, schedule_days, \
     schedule_start_minute, schedule_end_minute, created_at, created_by, revoked_at";
pub(super) const SESSION: &str = "id, user_id, user_name, customer_id, gatekeeper_id, service_id, \
     service_name, target_host, target_port, grant_id, started_at, ended_at, bytes_up, bytes_down, \
     end_reason, end_detail, protocol, node_id";
pub(super) const AUDIT: &str =
    "seq, at, category, action, actor, customer_id, session_id, detail, prev_hash, hash";

fn corrupt(what: &str, detail: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Storage,
        format!("stored {what} is invalid: {detail}"),
    )
}

fn text(row: &AnyRow, col: &str) -> Result<String> {
    Ok(row.try_get::<String, _>(col)?)
}

fn opt_text(row: &AnyRow, col: &str) -> Result<Option<String>> {
    Ok(row.try_get::<Option<String>, _>(col)?)
}

fn int(row: &AnyRow, col: &str) -> Result<i64> {
    Ok(row.try_get::<i64, _>(col)?)
}

fn opt_int(row: &AnyRow, col: &str) -> Result<Option<i64>> {
    Ok(row.try_get::<Option<i64>, _>(col)?)
}

fn time(row: &AnyRow, col: &str) -> Result<Timestamp> {
    int(row, col).map(Timestamp)
}

fn opt_time(row: &AnyRow, col: &str) -> Result<Option<Timestamp>> {
    opt_int(row, col).map(|t| t.map(Timestamp))
}

fn flag(row: &AnyRow, col: &str) -> Result<bool> {
    int(row, col).map(|v| v != 0)
}

fn target(row: &AnyRow) -> Result<Target> {
    let host = text(row, "target_host")?;
    let port = int(row, "target_port")?;
    let port = u16::try_from(port).map_err(|_| corrupt("target port", port))?;
    Ok(Target { host, port })
}

/// Stores a byte counter as `BIGINT`, saturating at `i64::MAX`.
pub(super) fn counter_to_db(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn counter(row: &AnyRow, col: &str) -> Result<u64> {
    let v = int(row, col)?;
    u64::try_from(v).map_err(|_| corrupt("byte counter", v))
}

pub(super) fn customer(row: &AnyRow) -> Result<Customer> {
    Ok(Customer {
        id: CustomerId(text(row, "id")?),
        name: text(row, "name")?,
        created_at: time(row, "created_at")?,
    })
}

pub(super) fn gatekeeper(row: &AnyRow) -> Result<Gatekeeper> {
    Ok(Gatekeeper {
        id: GatekeeperId(text(row, "id")?),
        customer_id: CustomerId(text(row, "customer_id")?),
        name: text(row, "name")?,
        public_key: opt_text(row, "public_key")?,
        fingerprint: opt_text(row, "fingerprint")?,
        registered_at: opt_time(row, "registered_at")?,
        created_at: time(row, "created_at")?,
        last_contact: opt_time(row, "last_contact")?,
        online: flag(row, "online")?,
        customer_disabled: flag(row, "customer_disabled")?,
        customer_schedule: opt_text(row, "customer_schedule")?,
        node_id: opt_text(row, "node_id")?,
    })
}

pub(super) fn user(row: &AnyRow) -> Result<User> {
    Ok(User {
        id: UserId(text(row, "id")?),
        name: text(row, "name")?,
        password_hash: opt_text(row, "password_hash")?,
        disabled: flag(row, "disabled")?,
        created_at: time(row, "created_at")?,
    })
}

pub(super) fn user_key(row: &AnyRow) -> Result<UserKey> {
    Ok(UserKey {
        id: KeyId(text(row, "id")?),
        user_id: UserId(text(row, "user_id")?),
        public_key: text(row, "public_key")?,
        fingerprint: text(row, "fingerprint")?,
        label: text(row, "label")?,
        gatekeeper_id: opt_text(row, "gatekeeper_id")?.map(GatekeeperId),
        created_at: time(row, "created_at")?,
    })
}

pub(super) fn service(row: &AnyRow) -> Result<Service> {
    let kind = text(row, "kind")?;
    Ok(Service {
        id: ServiceId(text(row, "id")?),
        customer_id: CustomerId(text(row, "customer_id")?),
        gatekeeper_id: opt_text(row, "gatekeeper_id")?.map(GatekeeperId),
        name: text(row, "name")?,
        kind: kind.parse().map_err(|e| corrupt("service kind", e))?,
        target: target(row)?,
        created_at: time(row, "created_at")?,
    })
}

pub(super) fn grant(row: &AnyRow) -> Result<Grant> {
    let schedule = match (
        opt_int(row, "schedule_days")?,
        opt_int(row, "schedule_start_minute")?,
        opt_int(row, "schedule_end_minute")?,
    ) {
        (Some(days), Some(start), Some(end)) => Some(Schedule {
            days: u8::try_from(days).map_err(|_| corrupt("schedule days", days))?,
            start_minute: u16::try_from(start).map_err(|_| corrupt("schedule start", start))?,
            end_minute: u16::try_from(end).map_err(|_| corrupt("schedule end", end))?,
        }),
        _ => None,
    };
    Ok(Grant {
        id: GrantId(text(row, "id")?),
        user_id: UserId(text(row, "user_id")?),
        service_id: ServiceId(text(row, "service_id")?),
        not_before: time(row, "not_before")?,
        not_after: opt_time(row, "not_after")?,
        schedule,
        created_at: time(row, "created_at")?,
        created_by: text(row, "created_by")?,
        revoked_at: opt_time(row, "revoked_at")?,
    })
}

pub(super) fn session(row: &AnyRow) -> Result<Session> {
    Ok(Session {
        id: SessionId(text(row, "id")?),
        user_id: UserId(text(row, "user_id")?),
        user_name: text(row, "user_name")?,
        customer_id: CustomerId(text(row, "customer_id")?),
        gatekeeper_id: opt_text(row, "gatekeeper_id")?.map(GatekeeperId),
        service_id: ServiceId(text(row, "service_id")?),
        service_name: text(row, "service_name")?,
        target: target(row)?,
        grant_id: opt_text(row, "grant_id")?.map(GrantId),
        protocol: text(row, "protocol")?
            .parse()
            .map_err(|e| corrupt("session protocol", e))?,
        node_id: opt_text(row, "node_id")?,
        started_at: time(row, "started_at")?,
        ended_at: opt_time(row, "ended_at")?,
        bytes_up: counter(row, "bytes_up")?,
        bytes_down: counter(row, "bytes_down")?,
        end_reason: opt_text(row, "end_reason")?
            .map(|r| r.parse())
            .transpose()
            .map_err(|e| corrupt("end reason", e))?,
        end_detail: opt_text(row, "end_detail")?,
    })
}

pub(super) fn audit_record(row: &AnyRow) -> Result<AuditRecord> {
    let category: AuditCategory = text(row, "category")?
        .parse()
        .map_err(|e| corrupt("audit category", e))?;
    let detail = text(row, "detail")?;
    let detail = serde_json::from_str(&detail).map_err(|e| corrupt("audit detail", e))?;
    Ok(AuditRecord {
        seq: int(row, "seq")?,
        event: AuditEvent {
            at: time(row, "at")?,
            category,
            action: text(row, "action")?,
            actor: text(row, "actor")?,
            customer_id: opt_text(row, "customer_id")?.map(CustomerId),
            session_id: opt_text(row, "session_id")?.map(SessionId),
            detail,
        },
        prev_hash: text(row, "prev_hash")?,
        hash: text(row, "hash")?,
    })
}
