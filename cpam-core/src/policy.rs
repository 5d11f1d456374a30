//! Pure access decisions: request + grants + `now` -> [`Decision`].
//!
//! No I/O and no clock. The session engine calls [`decide`] when a session
//! opens, and again whenever grants change; the `until` of an allow is when
//! the engine must end the session with reason `expired`.

use serde::Serialize;

use crate::error::{Error, ErrorKind};
use crate::model::{Gatekeeper, GatekeeperId, Grant, GrantId, Schedule, Service, Timestamp, User};

const DAY_MS: i64 = 86_400_000;
const MINUTE_MS: i64 = 60_000;

/// What is being asked for.
#[derive(Debug, Clone, Copy)]
pub struct AccessRequest<'a> {
    pub user: &'a User,
    pub service: &'a Service,
    pub gatekeeper: &'a Gatekeeper,
    /// The gatekeeper the user's credential is bound to (a profile key), if any.
    pub credential_gatekeeper: Option<&'a GatekeeperId>,
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Allowed by `grant_id` until `until` (`None`: no end).
    Allow {
        grant_id: GrantId,
        until: Option<Timestamp>,
    },
    /// Refused.
    Deny { reason: Denial },
}

/// Why access was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Denial {
    UserDisabled,
    WrongCustomer,
    WrongGatekeeper,
    GatekeeperNotRegistered,
    NoGrant,
    Revoked,
    NotYetValid,
    Expired,
    OutsideSchedule,
}

impl Denial {
    /// A lowercase explanation for logs and clients.
    pub fn message(self) -> &'static str {
        match self {
            Denial::UserDisabled => "user is disabled",
            Denial::WrongCustomer => "service belongs to another customer",
            Denial::WrongGatekeeper => "credential is linked to another gatekeeper",
            Denial::GatekeeperNotRegistered => "gatekeeper is not registered",
            Denial::NoGrant => "no grant for this service",
            Denial::Revoked => "grant was revoked",
            Denial::NotYetValid => "grant is not yet valid",
            Denial::Expired => "grant has expired",
            Denial::OutsideSchedule => "outside the grant's time window",
        }
    }

    /// The stable error kind of this denial.
    pub fn kind(self) -> ErrorKind {
        match self {
            Denial::Expired | Denial::OutsideSchedule | Denial::NotYetValid => {
                ErrorKind::AccessExpired
            }
            _ => ErrorKind::PermissionDenied,
        }
    }

    /// The denial as an [`Error`].
    pub fn into_error(self) -> Error {
        Error::new(self.kind(), self.message())
    }
}

/// Decides whether `req` is allowed at `now` by any of `grants`.
///
/// Among several valid grants the one that lasts longest wins. When none is
/// valid, the denial names the most specific reason (a grant that exists but
/// expired says `expired`, not `no_grant`).
pub fn decide(req: &AccessRequest<'_>, grants: &[Grant], now: Timestamp) -> Decision {
    let deny = |reason| Decision::Deny { reason };
    if req.user.disabled {
        return deny(Denial::UserDisabled);
    }
    if req.service.customer_id != req.gatekeeper.customer_id {
        return deny(Denial::WrongCustomer);
    }
    if let Some(bound) = req.credential_gatekeeper
        && *bound != req.gatekeeper.id
    {
        return deny(Denial::WrongGatekeeper);
    }
    // A service is reached only through the gatekeeper of its network.
    if let Some(home) = &req.service.gatekeeper_id
        && *home != req.gatekeeper.id
    {
        return deny(Denial::WrongGatekeeper);
    }
    if !req.gatekeeper.is_registered() {
        return deny(Denial::GatekeeperNotRegistered);
    }
    decide_grants(req.user, req.service, grants, now)
}

/// The grant half of [`decide`], for what needs no gatekeeper (a checkout
/// of a service's credential): the user is enabled and one of `grants`
/// allows `service` at `now`.
pub fn decide_grants(user: &User, service: &Service, grants: &[Grant], now: Timestamp) -> Decision {
    let deny = |reason| Decision::Deny { reason };
    if user.disabled {
        return deny(Denial::UserDisabled);
    }
    let mut best: Option<(GrantId, Option<Timestamp>)> = None;
    let mut reason = Denial::NoGrant;
    for g in grants
        .iter()
        .filter(|g| g.user_id == user.id && g.service_id == service.id)
    {
        match grant_window(g, now) {
            Ok(until) => {
                let better = match &best {
                    None => true,
                    Some((_, None)) => false,
                    Some((_, Some(b))) => until.is_none_or(|u| u > *b),
                };
                if better {
                    best = Some((g.id.clone(), until));
                }
            }
            Err(r) => reason = more_specific(reason, r),
        }
    }
    match best {
        Some((grant_id, until)) => Decision::Allow { grant_id, until },
        None => deny(reason),
    }
}

fn more_specific(a: Denial, b: Denial) -> Denial {
    let rank = |d: Denial| match d {
        Denial::NoGrant => 0,
        Denial::Revoked => 1,
        Denial::NotYetValid => 2,
        Denial::Expired => 3,
        Denial::OutsideSchedule => 4,
        _ => 5,
    };
    if rank(b) > rank(a) { b } else { a }
}

/// When one grant stops allowing access, if it allows access at `now`.
pub fn grant_window(g: &Grant, now: Timestamp) -> Result<Option<Timestamp>, Denial> {
    if g.revoked_at.is_some_and(|r| r <= now) {
        return Err(Denial::Revoked);
    }
    if now < g.not_before {
        return Err(Denial::NotYetValid);
    }
    if g.not_after.is_some_and(|end| now >= end) {
        return Err(Denial::Expired);
    }
    let schedule_end = match &g.schedule {
        None => None,
        Some(s) => schedule_end(s, now).ok_or(Denial::OutsideSchedule)?,
    };
    Ok(match (g.not_after, schedule_end) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}

/// If `now` falls inside `s`, when the schedule stops allowing access:
/// `Some(None)` when it never does (whole days, every day). Whole days run on
/// into the next day when it is on too, so a session is not cut at midnight.
pub fn schedule_end(s: &Schedule, now: Timestamp) -> Option<Option<Timestamp>> {
    let day = now.0.div_euclid(DAY_MS);
    let minute = now.0.rem_euclid(DAY_MS) / MINUTE_MS;
    // 1970-01-01 was a Thursday; Monday = 0.
    let weekday = |d: i64| (d + 3).rem_euclid(7) as u8;
    let on = |d: i64| s.days & (1 << weekday(d)) != 0;
    let (start, end) = (i64::from(s.start_minute), i64::from(s.end_minute));
    let at = |d: i64, m: i64| Timestamp(d * DAY_MS + m * MINUTE_MS);
    if start < end {
        (on(day) && minute >= start && minute < end).then(|| Some(at(day, end)))
    } else if start > end {
        if minute >= start && on(day) {
            Some(Some(at(day + 1, end)))
        } else if minute < end && on(day - 1) {
            Some(Some(at(day, end)))
        } else {
            None
        }
    } else {
        // start == end: whole days, up to the first day that is off.
        if !on(day) {
            return None;
        }
        Some((1..7).map(|n| day + n).find(|d| !on(*d)).map(|d| at(d, 0)))
    }
}

/// Parses `mon-fri`, `sat,sun`, `mon,wed-fri` or `all` into a day mask.
pub fn parse_days(s: &str) -> Result<u8, Error> {
    const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let idx = |n: &str| {
        NAMES
            .iter()
            .position(|d| *d == n.trim().to_ascii_lowercase())
            .ok_or_else(|| Error::invalid(format!("unknown day `{n}` in `{s}` (use mon..sun)")))
    };
    if s.trim() == "all" {
        return Ok(0x7f);
    }
    let mut mask = 0u8;
    for part in s.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (idx(a)?, idx(b)?);
                let mut i = a;
                loop {
                    mask |= 1 << i;
                    if i == b {
                        break;
                    }
                    i = (i + 1) % 7;
                }
            }
            None => mask |= 1 << idx(part)?,
        }
    }
    Ok(mask)
}

/// Parses `08:00-18:00` into minutes after midnight.
pub fn parse_hours(s: &str) -> Result<(u16, u16), Error> {
    let bad = || Error::invalid(format!("hours `{s}` must look like 08:00-18:00"));
    let minute = |t: &str| -> Result<u16, Error> {
        let (h, m) = t.trim().split_once(':').ok_or_else(bad)?;
        let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if h > 24 || m > 59 || (h == 24 && m != 0) {
            return Err(bad());
        }
        Ok((h * 60 + m) % 1440)
    };
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    Ok((minute(a)?, minute(b)?))
}

/// Parses opening hours `DAYS HH:MM-HH:MM` in UTC: `mon-fri 08:00-18:00`,
/// `sat,sun 22:00-06:00` (overnight), `all 00:00-00:00` (whole days).
pub fn parse_schedule(s: &str) -> Result<Schedule, Error> {
    let (days, hours) = s.trim().split_once(' ').ok_or_else(|| {
        Error::invalid(format!(
            "schedule `{s}` must look like `mon-fri 08:00-18:00` (days, a space, hours)"
        ))
    })?;
    let (start_minute, end_minute) = parse_hours(hours.trim())?;
    Ok(Schedule {
        days: parse_days(days)?,
        start_minute,
        end_minute,
    })
}

/// Parses `90s`, `15m`, `8h`, `7d` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, Error> {
    let bad = || Error::invalid(format!("duration `{s}` must look like 90s, 15m, 8h or 7d"));
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60).ok_or_else(bad)?,
        "h" => n.checked_mul(3600).ok_or_else(bad)?,
        "d" => n.checked_mul(86_400).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    Ok(std::time::Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    // 2026-11-23 is a Monday.
    fn t(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).expect("valid time")
    }

    fn fixture() -> (User, Service, Gatekeeper) {
        let customer = CustomerId("cus_a".into());
        let user = User {
            id: UserId("usr_a".into()),
            name: "alice".into(),
            password_hash: None,
            disabled: false,
            created_at: Timestamp(0),
        };
        let service = Service {
            id: ServiceId("svc_a".into()),
            customer_id: customer.clone(),
            gatekeeper_id: None,
            name: "ssh".into(),
            kind: ServiceKind::Custom,
            target: Target {
                host: "10.0.0.5".into(),
                port: 22,
            },
            created_at: Timestamp(0),
        };
        let gk = Gatekeeper {
            id: GatekeeperId("gk_a".into()),
            customer_id: customer,
            name: "gk".into(),
            public_key: Some("ssh-ed25519 AAAA".into()),
            fingerprint: Some("SHA256:x".into()),
            registered_at: Some(Timestamp(0)),
            created_at: Timestamp(0),
            last_contact: None,
            online: true,
            customer_disabled: false,
            customer_schedule: None,
            node_id: None,
        };
        (user, service, gk)
    }

    fn grant(id: &str, from: &str, to: Option<&str>, schedule: Option<Schedule>) -> Grant {
        Grant {
            id: GrantId(id.into()),
            user_id: UserId("usr_a".into()),
            service_id: ServiceId("svc_a".into()),
            not_before: t(from),
            not_after: to.map(t),
            schedule,
            created_at: Timestamp(0),
            created_by: "admin".into(),
            revoked_at: None,
        }
    }

    fn check(grants: &[Grant], now: &str, expect: Result<Option<&str>, Denial>) {
        let (user, service, gk) = fixture();
        let req = AccessRequest {
            user: &user,
            service: &service,
            gatekeeper: &gk,
            credential_gatekeeper: None,
        };
        let got = decide(&req, grants, t(now));
        match expect {
            Ok(until) => assert!(
                matches!(&got, Decision::Allow { until: u, .. } if *u == until.map(t)),
                "at {now}: expected allow until {until:?}, got {got:?}"
            ),
            Err(d) => assert_eq!(got, Decision::Deny { reason: d }, "at {now}"),
        }
    }

    #[test]
    fn time_windows() {
        let g = grant(
            "g1",
            "2026-11-23T08:00:00Z",
            Some("2026-11-23T18:00:00Z"),
            None,
        );
        check(
            std::slice::from_ref(&g),
            "2026-11-23T07:59:59Z",
            Err(Denial::NotYetValid),
        );
        check(
            std::slice::from_ref(&g),
            "2026-11-23T08:00:00Z",
            Ok(Some("2026-11-23T18:00:00Z")),
        );
        check(
            std::slice::from_ref(&g),
            "2026-11-23T17:59:59.999Z",
            Ok(Some("2026-11-23T18:00:00Z")),
        );
        check(
            std::slice::from_ref(&g),
            "2026-11-23T18:00:00Z",
            Err(Denial::Expired),
        );
        check(&[], "2026-11-23T12:00:00Z", Err(Denial::NoGrant));
        let open = grant("g2", "2026-01-01T00:00:00Z", None, None);
        check(&[g, open], "2026-11-23T12:00:00Z", Ok(None));
    }

    #[test]
    fn revoked_and_longest_grant() {
        let mut a = grant(
            "g1",
            "2026-11-23T08:00:00Z",
            Some("2026-11-23T10:00:00Z"),
            None,
        );
        let b = grant(
            "g2",
            "2026-11-23T08:00:00Z",
            Some("2026-11-23T12:00:00Z"),
            None,
        );
        check(
            &[a.clone(), b.clone()],
            "2026-11-23T09:00:00Z",
            Ok(Some("2026-11-23T12:00:00Z")),
        );
        a.revoked_at = Some(t("2026-11-23T08:30:00Z"));
        check(&[a.clone()], "2026-11-23T09:00:00Z", Err(Denial::Revoked));
        check(
            &[a],
            "2026-11-23T08:29:00Z",
            Ok(Some("2026-11-23T10:00:00Z")),
        );
    }

    #[test]
    fn whole_day_schedules_run_on_through_midnight() {
        let whole = |days: &str| {
            let (start_minute, end_minute) = parse_hours("00:00-24:00").expect("hours");
            Schedule {
                days: parse_days(days).expect("days"),
                start_minute,
                end_minute,
            }
        };
        // Every day: no end at all.
        let g = grant("g1", "2026-01-01T00:00:00Z", None, Some(whole("all")));
        check(std::slice::from_ref(&g), "2026-11-23T23:59:00Z", Ok(None));
        // Monday to Wednesday, from Monday: until Thursday 00:00.
        let g = grant("g1", "2026-01-01T00:00:00Z", None, Some(whole("mon-wed")));
        check(
            std::slice::from_ref(&g),
            "2026-11-23T10:00:00Z",
            Ok(Some("2026-11-26T00:00:00Z")),
        );
        // Over the week's end: Saturday, Sunday, Monday.
        let g = grant("g1", "2026-01-01T00:00:00Z", None, Some(whole("sat-mon")));
        check(
            std::slice::from_ref(&g),
            "2026-11-22T23:00:00Z",
            Ok(Some("2026-11-24T00:00:00Z")),
        );
        // The grant's own end still applies.
        let g = grant(
            "g1",
            "2026-01-01T00:00:00Z",
            Some("2026-11-24T12:00:00Z"),
            Some(whole("all")),
        );
        check(
            std::slice::from_ref(&g),
            "2026-11-23T10:00:00Z",
            Ok(Some("2026-11-24T12:00:00Z")),
        );
    }

    #[test]
    fn schedules() {
        let office = Schedule {
            days: parse_days("mon-fri").expect("days"),
            start_minute: 8 * 60,
            end_minute: 18 * 60,
        };
        let g = grant(
            "g1",
            "2026-01-01T00:00:00Z",
            Some("2026-11-23T17:00:00Z"),
            Some(office),
        );
        check(
            std::slice::from_ref(&g),
            "2026-11-23T09:00:00Z",
            Ok(Some("2026-11-23T17:00:00Z")),
        );
        let g = grant("g1", "2026-01-01T00:00:00Z", None, Some(office));
        check(
            std::slice::from_ref(&g),
            "2026-11-23T09:00:00Z",
            Ok(Some("2026-11-23T18:00:00Z")),
        );
        check(
            std::slice::from_ref(&g),
            "2026-11-23T07:00:00Z",
            Err(Denial::OutsideSchedule),
        );
        check(
            std::slice::from_ref(&g),
            "2026-11-22T09:00:00Z",
            Err(Denial::OutsideSchedule),
        ); // Sunday
        let night = Schedule {
            days: parse_days("mon").expect("days"),
            start_minute: 22 * 60,
            end_minute: 6 * 60,
        };
        let g = grant("g1", "2026-01-01T00:00:00Z", None, Some(night));
        check(
            std::slice::from_ref(&g),
            "2026-11-23T23:00:00Z",
            Ok(Some("2026-11-24T06:00:00Z")),
        );
        check(
            std::slice::from_ref(&g),
            "2026-11-24T05:00:00Z",
            Ok(Some("2026-11-24T06:00:00Z")),
        );
        check(&[g], "2026-11-25T05:00:00Z", Err(Denial::OutsideSchedule));
    }

    #[test]
    fn a_service_is_reached_only_through_its_own_gatekeeper() {
        let (user, mut service, gk) = fixture();
        let g = grant("g1", "2026-01-01T00:00:00Z", None, None);
        let now = t("2026-11-23T12:00:00Z");
        let decide_for = |service: &Service| {
            let req = AccessRequest {
                user: &user,
                service,
                gatekeeper: &gk,
                credential_gatekeeper: Some(&gk.id),
            };
            decide(&req, std::slice::from_ref(&g), now)
        };
        service.gatekeeper_id = Some(GatekeeperId("gk_other".into()));
        assert_eq!(
            decide_for(&service),
            Decision::Deny {
                reason: Denial::WrongGatekeeper
            }
        );
        service.gatekeeper_id = Some(gk.id.clone());
        assert!(matches!(decide_for(&service), Decision::Allow { .. }));
        service.gatekeeper_id = None;
        assert!(matches!(decide_for(&service), Decision::Allow { .. }));
    }

    #[test]
    fn request_checks() {
        let (mut user, service, mut gk) = fixture();
        let g = grant("g1", "2026-01-01T00:00:00Z", None, None);
        let now = t("2026-11-23T12:00:00Z");
        let other = GatekeeperId("gk_other".into());
        let req = AccessRequest {
            user: &user,
            service: &service,
            gatekeeper: &gk,
            credential_gatekeeper: Some(&other),
        };
        assert_eq!(
            decide(&req, std::slice::from_ref(&g), now),
            Decision::Deny {
                reason: Denial::WrongGatekeeper
            }
        );
        gk.public_key = None;
        let req = AccessRequest {
            user: &user,
            service: &service,
            gatekeeper: &gk,
            credential_gatekeeper: None,
        };
        assert_eq!(
            decide(&req, std::slice::from_ref(&g), now),
            Decision::Deny {
                reason: Denial::GatekeeperNotRegistered
            }
        );
        user.disabled = true;
        let req = AccessRequest {
            user: &user,
            service: &service,
            gatekeeper: &gk,
            credential_gatekeeper: None,
        };
        assert_eq!(
            decide(&req, &[g], now),
            Decision::Deny {
                reason: Denial::UserDisabled
            }
        );
    }

    #[test]
    fn parsers() {
        assert_eq!(parse_days("mon-fri").expect("ok"), 0b0011111);
        assert_eq!(parse_days("sat,sun").expect("ok"), 0b1100000);
        assert_eq!(parse_days("fri-mon").expect("ok"), 0b1110001);
        assert!(parse_days("funday").is_err());
        assert_eq!(parse_hours("08:00-18:30").expect("ok"), (480, 1110));
        assert!(parse_hours("8-18").is_err());
        assert_eq!(parse_duration("15m").expect("ok").as_secs(), 900);
        assert_eq!(parse_duration("3").expect("ok").as_secs(), 3);
        assert!(parse_duration("3w").is_err());
    }
}
