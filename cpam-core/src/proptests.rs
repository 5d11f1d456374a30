//! Property tests for every parser of untrusted input: none panics on
//! arbitrary input (nor on input shaped like its format, which reaches the
//! deeper branches), and what a printer writes parses back to the same
//! value. `CASES` cases per property; `docs/security.md` records the count.

use proptest::prelude::*;

use crate::audit::{self, Checkpoint};
use crate::model::{
    AuditCategory, AuditEvent, AuditRecord, CustomerId, Schedule, SessionId, Target, Timestamp,
};
use crate::policy::{parse_days, parse_duration, parse_hours, parse_schedule};
use crate::record::{EventKind, Header, RecordingEvent, RecordingId};
use crate::tunnel::allow::{AllowList, Rule};
use crate::tunnel::profile::Profile;

/// Cases per property: enough to find the shallow panics, small enough
/// that `cargo test` stays quick.
pub(crate) const CASES: u32 = 256;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// One SFTP packet with a valid frame and a known type: an id, then a
/// string shaped like a path (often inside or just outside `/data/in`),
/// then arbitrary bytes.
fn sftp_packet() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec![
            1u8, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 101, 102, 103,
            104, 105, 200, 201,
        ]),
        0u32..8,
        "(/data/in|/data/inbox|/etc|\\.\\.|\\.|/|x\\.exe|a){0,6}",
        prop::collection::vec(any::<u8>(), 0..48),
    )
        .prop_map(|(kind, id, path, tail)| {
            let mut body = vec![kind];
            body.extend_from_slice(&id.to_be_bytes());
            body.extend_from_slice(&(path.len() as u32).to_be_bytes());
            body.extend_from_slice(path.as_bytes());
            body.extend_from_slice(&tail);
            let mut packet = (body.len() as u32).to_be_bytes().to_vec();
            packet.extend_from_slice(&body);
            packet
        })
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Any JSON value a few levels deep.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        ".{0,20}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn profile_field() -> impl Strategy<Value = (String, serde_json::Value)> {
    (
        prop::sample::select(vec![
            "cpam_profile",
            "server",
            "server_key",
            "customer",
            "gatekeeper",
            "user",
            "key",
            "created_at",
            "extra",
        ]),
        json_value(),
    )
        .prop_map(|(k, v)| (k.to_string(), v))
}

fn audit_event() -> impl Strategy<Value = AuditEvent> {
    (
        any::<i64>(),
        prop::sample::select(vec![
            AuditCategory::UserActivity,
            AuditCategory::SystemMessages,
        ]),
        "[a-z.]{1,20}",
        ".{0,30}",
        prop::option::of("cus_[a-z0-9]{1,16}"),
        json_value(),
    )
        .prop_map(
            |(at, category, action, actor, customer, detail)| AuditEvent {
                at: Timestamp(at),
                category,
                action,
                actor,
                customer_id: customer.map(CustomerId),
                session_id: None,
                detail,
            },
        )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn profile_parse_never_panics(text in ".{0,300}") {
        let _ = Profile::parse(&text, "fuzz");
    }

    #[test]
    fn profile_parse_never_panics_on_profile_shaped_objects(
        fields in prop::collection::vec(profile_field(), 0..10)
    ) {
        let obj: serde_json::Map<_, _> = fields.into_iter().collect();
        let text = serde_json::Value::Object(obj).to_string();
        prop_assert!(Profile::parse(&text, "fuzz").is_err() || text.contains("cpam_profile"));
    }

    #[test]
    fn allow_rule_parse_never_panics(text in ".{0,60}", shaped in "[0-9a-f.:\\[\\]/,*-]{0,40}") {
        let _ = text.parse::<Rule>();
        let _ = shaped.parse::<Rule>();
        let _ = AllowList::parse(&[text, shaped]);
    }

    #[test]
    fn allow_rules_round_trip_and_allow_what_they_name(
        a in any::<[u8; 4]>(), prefix in 0u8..=32, lo in 1u16..=u16::MAX, span in 0u16..100,
    ) {
        let hi = lo.saturating_add(span);
        let text = format!("{}.{}.{}.{}/{prefix}:{lo}-{hi}", a[0], a[1], a[2], a[3]);
        let rule: Rule = text.parse().expect("a well-formed rule");
        prop_assert_eq!(rule.to_string(), text.clone());
        prop_assert_eq!(rule.to_string().parse::<Rule>().expect("reparses"), rule);
        let list = AllowList::parse(&[text.as_str()]).expect("a well-formed list");
        let ip = std::net::Ipv4Addr::from(a);
        // A special address only through a rule at least as narrow as its range.
        let needed = if ip.is_loopback() {
            8
        } else if ip.is_link_local() {
            16
        } else if ip.is_unspecified() {
            32
        } else {
            0
        };
        prop_assert_eq!(list.allows(ip.into(), lo), prefix >= needed);
        prop_assert!(!list.allows(ip.into(), 0));
    }

    #[test]
    fn schedule_and_duration_parsers_never_panic(text in ".{0,40}", shaped in "[a-z0-9:, -]{0,30}") {
        for s in [&text, &shaped] {
            let _ = parse_days(s);
            let _ = parse_hours(s);
            let _ = parse_schedule(s);
            let _ = parse_duration(s);
        }
    }

    #[test]
    fn schedules_round_trip(days in 1u8..0x80, start in 0u16..1440, end in 0u16..1440) {
        let names: Vec<&str> = (0..7).filter(|i| days & (1 << i) != 0).map(|i| DAYS[i]).collect();
        let text = format!(
            "{} {:02}:{:02}-{:02}:{:02}",
            names.join(","), start / 60, start % 60, end / 60, end % 60
        );
        let parsed = parse_schedule(&text).expect("a well-formed schedule");
        prop_assert_eq!(parsed, Schedule { days, start_minute: start, end_minute: end });
    }

    #[test]
    fn durations_round_trip(n in 0u64..(u64::MAX / 86_400), unit in prop::sample::select(vec![("s", 1u64), ("m", 60), ("h", 3600), ("d", 86_400)])) {
        let d = parse_duration(&format!("{n}{}", unit.0)).expect("a well-formed duration");
        prop_assert_eq!(d.as_secs(), n * unit.1);
    }

    #[test]
    fn durations_past_the_range_are_refused_not_wrapped(n in (u64::MAX / 60 + 1)..=u64::MAX) {
        let text = format!("{n}m");
        prop_assert!(parse_duration(&text).is_err());
    }

    #[test]
    fn audit_record_json_never_panics(text in ".{0,200}") {
        let _ = serde_json::from_str::<AuditRecord>(&text);
        let _ = serde_json::from_str::<AuditEvent>(&text);
        let _ = Checkpoint::parse(&text);
    }

    #[test]
    fn audit_records_round_trip_through_json_and_verify(events in prop::collection::vec(audit_event(), 1..6)) {
        let mut chain: Vec<AuditRecord> = Vec::new();
        for e in events {
            let prev = chain.last().map(|r| (r.seq, r.hash.as_str()));
            chain.push(audit::seal(prev, e));
        }
        let text = serde_json::to_string(&chain).expect("encodes");
        let back: Vec<AuditRecord> = serde_json::from_str(&text).expect("decodes");
        prop_assert!(audit::verify(&back).is_intact(), "{:?}", audit::verify(&back));
        prop_assert_eq!(back.len(), chain.len());
    }

    #[test]
    fn asciicast_parsers_never_panic(text in ".{0,120}", shaped in "\\[[0-9.e+-]{0,12}, \"[oirm]\", \".{0,10}\"\\]") {
        let _ = Header::parse(&text);
        let _ = RecordingEvent::parse(&text);
        let _ = RecordingEvent::parse(&shaped);
    }

    #[test]
    fn asciicast_headers_round_trip(
        width in any::<u16>(), height in any::<u16>(), timestamp in any::<Option<i64>>(),
        command in prop::option::of(".{0,20}"), title in prop::option::of(".{0,20}"),
        term in prop::option::of("[a-z0-9-]{1,16}"),
    ) {
        let mut h = Header::new(width, height);
        h.timestamp = timestamp;
        h.command = command;
        h.title = title;
        h.env.term = term;
        prop_assert_eq!(Header::parse(h.to_line().trim_end()).expect("reparses"), h);
    }

    #[test]
    fn asciicast_events_round_trip(
        micros in 0u64..10_000_000_000_000, kind in prop::sample::select(EventKind::ALL.to_vec()), data in ".{0,40}",
    ) {
        let t = micros as f64 / 1e6;
        let e = RecordingEvent { t, kind, data };
        let back = RecordingEvent::parse(e.to_line().trim_end()).expect("reparses");
        prop_assert_eq!(&back.data, &e.data);
        prop_assert_eq!(back.kind, e.kind);
        prop_assert!((back.t - e.t).abs() <= 1e-6 * e.t.max(1.0), "{} vs {}", back.t, e.t);
    }

    #[test]
    fn recording_ids_never_panic_and_round_trip(text in ".{0,80}", token in "[a-z0-9]{1,64}", channel in any::<u32>()) {
        let _ = RecordingId::parse(&text);
        let id = RecordingId::new(&SessionId(format!("ses_{token}")), channel).expect("a well-formed id");
        let back = RecordingId::parse(&id.to_string()).expect("reparses");
        prop_assert_eq!(back.channel(), channel);
        prop_assert_eq!(back.session(), SessionId(format!("ses_{token}")));
        prop_assert_eq!(back, id);
    }

    #[test]
    fn targets_and_times_never_panic_and_round_trip(
        text in ".{0,60}", host in "[a-z0-9][a-z0-9.-]{0,30}", port in 1u16..,
        millis in -62_135_596_800_000i64..253_402_300_799_000,
    ) {
        let _ = text.parse::<Target>();
        let _ = Timestamp::parse_rfc3339(&text);
        let target = Target { host, port };
        prop_assert_eq!(target.to_string().parse::<Target>().expect("reparses"), target);
        let t = Timestamp(millis);
        prop_assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()).expect("reparses"), t);
    }

    #[test]
    fn recording_chain_files_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = crate::record::parse_chain(&bytes);
    }

    #[test]
    fn every_fuzz_target_takes_arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..600)) {
        for (_, target) in crate::fuzz::TARGETS {
            target(&data);
        }
    }

    #[test]
    fn the_sftp_tracker_takes_any_sequence_of_well_framed_packets(
        packets in prop::collection::vec((any::<bool>(), sftp_packet()), 0..24)
    ) {
        for (_, packet) in &packets {
            crate::fuzz::sftp_packets(&[7].into_iter().chain(packet.iter().copied()).collect::<Vec<_>>());
        }
        let pieces: Vec<(bool, &[u8])> = packets.iter().map(|(t, p)| (*t, p.as_slice())).collect();
        let session = crate::fuzz::sftp_session_input(&pieces);
        crate::fuzz::sftp_session(&session);
    }
}
